//! The sidecar as OPA clients see it: path canonicalisation, OPA's query parameters,
//! `GET /v1/data` with the input in the query, error shapes, and a real OPA client
//! library from PyPI (`opa-python-client`) driving the `serve` binary.

use std::path::{Path, PathBuf};

use axum::http::{header, Method, StatusCode};
use promo_policy::server::Server;
use serde_json::{json, Value};

use crate::server::{config, post_json, query_server, send, server};
use crate::support::{bundle_copy, request, spawn_serve, stop_serve, write, ALLOWED, AT};

/// `text` percent-encoded for a query string (every byte but unreserved ones).
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET /v1/data/{path}?input=<request>&{extra}`.
fn get_with_input(path: &str, input: &Value, extra: &str) -> String {
    format!(
        "/v1/data/{path}?input={}{extra}",
        encode(&input.to_string())
    )
}

// ------------------------------------------------------------- paths and methods

#[tokio::test]
async fn non_canonical_paths_redirect_like_opa_with_the_query_kept() {
    let s = server(None);
    for (from, to) in [
        ("/v1/policies/", "/v1/policies"),
        ("/v1/data/", "/v1/data"),
        (
            "/v1/data//promo/config/?pretty",
            "/v1/data/promo/config?pretty",
        ),
        ("/v1/data/promo/./config/../config", "/v1/data/promo/config"),
    ] {
        let r = send(&s, Method::GET, from, None).await;
        assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY, "{from}");
        assert_eq!(r.headers[header::LOCATION], to, "{from}");
    }
}

#[tokio::test]
async fn methods_a_route_lacks_are_405_with_allow_in_opa_error_shape() {
    let s = server(None);
    for (method, uri, allow) in [
        (Method::POST, "/v1/policies", "GET"),
        (
            Method::PATCH,
            "/v1/policies/promo/decision.rego",
            "GET, PUT, DELETE",
        ),
        (Method::DELETE, "/v1/query", "GET, POST"),
        (Method::PUT, "/v0/data/promo/config", "POST"),
        (Method::GET, "/v1/promotions/evaluate", "POST"),
    ] {
        let r = send(&s, method.clone(), uri, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.headers[header::ALLOW], allow, "{method} {uri}");
        let body = r.json();
        assert_eq!(body["code"], "invalid_operation", "{method} {uri}");
        assert!(
            body["message"].as_str().unwrap().contains(method.as_str()),
            "{}",
            r.text
        );
    }
}

#[tokio::test]
async fn a_compressed_or_yaml_body_is_415_naming_what_was_sent() {
    let s = server(None);
    let body = json!({"input": request()}).to_string().into_bytes();
    for (name, value, named) in [
        (header::CONTENT_ENCODING, "gzip", "`gzip`"),
        (
            header::CONTENT_TYPE,
            "application/x-yaml",
            "`application/x-yaml`",
        ),
    ] {
        let req = axum::http::Request::post("/v1/data/promo/decision")
            .header(name, value)
            .body(axum::body::Body::from(body.clone()))
            .unwrap();
        let r = tower::ServiceExt::oneshot(s.router(), req).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{value}");
        let bytes = http_body_util::BodyExt::collect(r.into_body())
            .await
            .unwrap();
        let body: Value = serde_json::from_slice(&bytes.to_bytes()).unwrap();
        assert_eq!(body["code"], "invalid_parameter", "{body}");
        assert!(body["message"].as_str().unwrap().contains(named), "{body}");
    }
}

// ------------------------------------------------------------- query parameters

#[tokio::test]
async fn pretty_indents_as_opa_reads_the_flag() {
    let s = server(None);
    for uri in [
        "/v1/policies?pretty",
        "/v1/data/promo/config/order?pretty=true",
        "/v1/data/promo/config/order?pretty=TRUE",
    ] {
        let r = send(&s, Method::GET, uri, None).await;
        assert!(r.text.contains("\n  "), "{uri}: {}", r.text);
    }
    let r = send(
        &s,
        Method::GET,
        "/v1/data/promo/config/order?pretty=no",
        None,
    )
    .await;
    assert!(!r.text.contains('\n'), "{}", r.text);
}

/// Every timer is a measured, positive duration; the handler's covers the rest.
fn assert_timers(metrics: &Value, names: &[&str]) {
    let handler = metrics["timer_server_handler_ns"].as_u64().unwrap();
    for name in names {
        let ns = metrics[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {metrics}"));
        assert!(ns > 0 && ns <= handler, "{name}: {metrics}");
    }
}

#[tokio::test]
async fn metrics_are_measured_timers_under_opas_names() {
    let s = server(None);
    let body = json!({"input": request()});
    let r = post_json(&s, "/v1/data/promo/decision?metrics", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let m = &r.json()["metrics"];
    assert_timers(
        m,
        &[
            "timer_rego_input_parse_ns",
            "timer_promo_verify_facts_ns",
            "timer_rego_query_eval_ns",
        ],
    );
    // Not asked for: not there.
    let r = post_json(&s, "/v1/data/promo/decision", &body).await;
    assert!(r.json().get("metrics").is_none(), "{}", r.text);
    // A document read without input has no input to parse and no facts to verify.
    let r = send(&s, Method::GET, "/v1/data/promo/config?instrument", None).await;
    let m = &r.json()["metrics"];
    assert_timers(m, &["timer_rego_query_eval_ns"]);
    assert!(m.get("timer_rego_input_parse_ns").is_none(), "{m}");
    // An undefined document still reports its timers, as OPA does.
    let r = post_json(&s, "/v1/data/promo/nope?metrics=true", &body).await;
    assert!(
        r.json()["metrics"]["timer_rego_query_eval_ns"].is_u64(),
        "{}",
        r.text
    );
    // The Query API too.
    let q = query_server();
    let r = send(&q, Method::GET, "/v1/query?q=x%20%3A%3D%201&metrics", None).await;
    assert_eq!(r.json()["result"], json!([{"x": 1}]), "{}", r.text);
    assert_timers(&r.json()["metrics"], &["timer_rego_query_eval_ns"]);
}

#[tokio::test]
async fn provenance_names_the_version_and_the_bundle_evaluated() {
    let s = server(None);
    let body = json!({"input": request()});
    let r = post_json(&s, "/v1/data/promo/decision?provenance", &body).await;
    let p = &r.json()["provenance"];
    assert_eq!(p["version"], env!("CARGO_PKG_VERSION"), "{p}");
    let digest = s.loaded().engine.bundle().digest().hex();
    assert_eq!(p["bundles"]["promo"]["digest"]["sha256"], digest, "{p}");
    assert!(p["bundles"]["promo"]["revision"].is_string(), "{p}");
    let r = send(
        &s,
        Method::GET,
        "/v1/data/promo/config/order?provenance",
        None,
    )
    .await;
    assert_eq!(
        r.json()["provenance"]["bundles"]["promo"]["digest"]["sha256"],
        digest
    );
}

#[tokio::test]
async fn explain_is_refused_with_400_rather_than_answered_with_another_trace() {
    let s = server(None);
    let body = json!({"input": request()});
    for mode in ["notes", "fails", "full", "debug"] {
        let r = post_json(
            &s,
            &format!("/v1/data/promo/decision?explain={mode}"),
            &body,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{mode}: {}", r.text);
        assert_eq!(r.json()["code"], "invalid_parameter");
        assert!(r.json()["message"].as_str().unwrap().contains(mode));
        let r = send(
            &s,
            Method::GET,
            &format!("/v1/data/promo?explain={mode}"),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{mode}: {}", r.text);
    }
    // OPA ignores a value that is not a mode.
    let r = post_json(&s, "/v1/data/promo/decision?explain=off", &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let q = query_server();
    let r = send(
        &q,
        Method::GET,
        "/v1/query?q=x%20%3A%3D%201&explain=full",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
}

/// A bundle with one more module whose rule calls a builtin with a bad argument.
fn bundle_with_a_builtin_error() -> tempfile::TempDir {
    let dir = bundle_copy();
    write(
        dir.path(),
        "promo/compat_probe.rego",
        "package promo.compat_probe\n\nbad := to_number(\"not a number\")\n",
    );
    dir
}

#[tokio::test]
async fn strict_builtin_errors_fail_the_query_and_do_not_leak_into_the_next() {
    let bundle = bundle_with_a_builtin_error();
    let s = Server::new(config(bundle.path(), None)).unwrap();
    let body = json!({"input": request()});
    for _ in 0..2 {
        // Lenient by default, as OPA: the builtin error makes the rule undefined.
        let r = post_json(&s, "/v1/data/promo/compat_probe/bad", &body).await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::OK, json!({})),
            "{}",
            r.text
        );
        let r = send(&s, Method::GET, "/v1/data/promo/compat_probe/bad", None).await;
        assert_eq!(
            (r.status, r.json()),
            (StatusCode::OK, json!({})),
            "{}",
            r.text
        );
        // Strict: the query fails, 500 internal_error, naming the builtin.
        let uri = "/v1/data/promo/compat_probe/bad?strict-builtin-errors";
        let r = post_json(&s, uri, &body).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
        assert_eq!(r.json()["code"], "internal_error");
        assert!(r.text.contains("to_number"), "{}", r.text);
        let r = send(&s, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
        let r = send(
            &s,
            Method::GET,
            &get_with_input(
                "promo/compat_probe/bad",
                &request(),
                "&strict-builtin-errors=true",
            ),
            None,
        )
        .await;
        assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    }
    // Strictness changes nothing for a policy without builtin errors.
    let r = post_json(&s, "/v1/data/promo/decision?strict-builtin-errors", &body).await;
    assert_eq!(r.json()["result"]["allow"], true, "{}", r.text);
}

// ------------------------------------------------------------- GET with input

#[tokio::test]
async fn get_with_input_in_the_query_decides_as_the_post_does() {
    let s = server(None);
    let posted = post_json(&s, "/v1/data/promo/decision", &json!({"input": request()})).await;
    let got = send(
        &s,
        Method::GET,
        &get_with_input("promo/decision", &request(), ""),
        None,
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text);
    assert_eq!(got.json()["result"], posted.json()["result"]);
    assert!(got.json()["decision_id"].is_string(), "{}", got.text);
    // The last `input` wins, as in OPA.
    let uri = format!(
        "/v1/data/promo/decision/allow?input=%7B%7D&input={}",
        encode(&crate::support::without_approvals().to_string())
    );
    let r = send(&s, Method::GET, &uri, None).await;
    assert_eq!(r.json()["result"], false, "{}", r.text);
    // Undefined is `{}`.
    let r = send(
        &s,
        Method::GET,
        &get_with_input("promo/nope", &request(), ""),
        None,
    )
    .await;
    assert_eq!(r.json(), json!({}));
}

#[tokio::test]
async fn get_input_that_is_malformed_or_breaks_the_schema_is_400_naming_where() {
    let s = server(None);
    let r = send(
        &s,
        Method::GET,
        "/v1/data/promo/decision?input=%7Bnot%20json",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let body = r.json();
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["errors"][0]["code"], "invalid_json", "{body}");
    assert_eq!(body["errors"][0]["location"]["column"], 2, "{body}");

    let mut bad = request();
    bad["to"] = json!(7);
    let r = send(
        &s,
        Method::GET,
        &get_with_input("promo/decision", &bad, ""),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["pointer"], "/to", "{}", r.text);
}

#[tokio::test]
async fn a_query_string_past_the_limit_is_400_not_a_decision() {
    let s = server(None);
    let limit = promo_policy::server::MAX_QUERY_STRING_BYTES;
    let mut big = request();
    big["padding"] = json!("x".repeat(limit));
    let r = send(
        &s,
        Method::GET,
        &get_with_input("promo/decision", &big, ""),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(r.json()["code"], "invalid_parameter");
    assert!(r.text.contains(&limit.to_string()), "{}", r.text);
    // The server keeps serving.
    let r = send(
        &s,
        Method::GET,
        &get_with_input("promo/decision", &request(), ""),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

// ------------------------------------------------------------- a real OPA client

/// The Python of the venv `.ci/run` makes, with PyPI's `opa-python-client` installed;
/// `PROMO_OPA_CLIENT_PYTHON` names another.
const VENV_PYTHON: &str = "target/opa-client-venv/bin/python";

/// Under CI the client must be there; elsewhere its absence skips the test, saying so.
fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: .ci/run installs it, and CI must run this test");
    }
    eprintln!("skipping the OPA client test: {what} (see .ci/run's opa-python-client step)");
}

#[test]
fn an_opa_client_library_from_pypi_works_against_the_serve_binary() {
    let python = std::env::var_os("PROMO_OPA_CLIENT_PYTHON")
        .map_or_else(|| PathBuf::from(VENV_PYTHON), PathBuf::from);
    if !python.exists() {
        return missing(&format!("no Python at `{}`", python.display()));
    }
    let args = ["--environment", "prod", "--watch-interval", "0", "--at", AT];
    let sidecar = spawn_serve(args.into_iter().chain(["--allow-query"]));
    let base = sidecar.base.clone();
    let output = std::process::Command::new(&python)
        .arg(Path::new("tests/opa_client/check.py"))
        .args([base.as_str(), ALLOWED])
        .output()
        .unwrap();
    stop_serve(sidecar);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.code() == Some(2) {
        return missing(stdout.trim());
    }
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for check in [
        "connection",
        "list_policies",
        "missing_policy",
        "query_rule_post",
        "query_rule_metrics_provenance",
        "get_data_with_input",
        "get_data_without_input",
        "undefined_document",
        "malformed_input",
        "explain_refused",
        "writes_refused",
        "ad_hoc_query",
        "async_client",
    ] {
        assert!(
            stdout.lines().any(|l| l == format!("ok {check}")),
            "check `{check}` did not pass:\n{stdout}\n{stderr}"
        );
    }
}

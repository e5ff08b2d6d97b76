//! The sidecar: every route in-process (`tower::ServiceExt::oneshot`), admission reviews
//! for each workload kind, reload, load shedding, and the real socket (ureq), including a
//! drain on shutdown and the `serve` binary itself.

use crate::support::{request, without_approvals, AT};
use std::io::{Read, Write};
use std::path::Path;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use base64::Engine as _;
use http_body_util::BodyExt;
use promo_policy::server::{DecisionClock, Server, ServerConfig, DECISIONS_ANNOTATION};
use promo_policy::EngineConfig;
use serde_json::{json, Value};
use tower::ServiceExt;

const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn at() -> time::OffsetDateTime {
    promo_policy::input::parse_time(AT).unwrap()
}

pub(crate) fn config(policies: &Path, environment: Option<&str>) -> ServerConfig {
    ServerConfig {
        environment: environment.map(str::to_string),
        clock: DecisionClock::Fixed(at()),
        ..ServerConfig::new(EngineConfig::with_policies(policies))
    }
}

pub(crate) fn server(environment: Option<&str>) -> Server {
    Server::new(config(Path::new("policies"), environment)).unwrap()
}

fn digest() -> String {
    request()["artifact"]["digest"]["sha256"]
        .as_str()
        .unwrap()
        .to_string()
}

pub(crate) fn pinned_image() -> String {
    format!("registry.example.com/payments/api@sha256:{}", digest())
}

/// A real signed decision for `request` at the pinned time, from the shipped engine.
pub(crate) fn envelope_for(request: &Value) -> Value {
    let engine = promo_policy::Engine::load(&EngineConfig::with_policies("policies")).unwrap();
    let req = promo_policy::PromotionRequest::from_value(request.clone()).unwrap();
    engine.evaluator().decide(&req, at()).unwrap().envelope
}

pub(crate) fn allowed_envelope() -> Value {
    envelope_for(&request())
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) text: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub(crate) async fn send(
    server: &Server,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
) -> Reply {
    send_with(server, method, uri, body, Some("application/json")).await
}

async fn send_with(
    server: &Server,
    method: Method,
    uri: &str,
    body: Option<Vec<u8>>,
    content_type: Option<&str>,
) -> Reply {
    let mut builder = Request::builder().method(method).uri(uri);
    if let Some(ct) = content_type {
        builder = builder.header(header::CONTENT_TYPE, ct);
    }
    let req = builder
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let response = server.router().oneshot(req).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        text: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub(crate) async fn post_json(server: &Server, uri: &str, body: &Value) -> Reply {
    send(
        server,
        Method::POST,
        uri,
        Some(body.to_string().into_bytes()),
    )
    .await
}

// ---------------------------------------------------------------- evaluate

#[tokio::test]
async fn evaluate_returns_the_decision_and_a_verifiable_envelope() {
    let s = server(Some("prod"));
    let r = post_json(&s, "/v1/promotions/evaluate", &request()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["decision"]["allowed"], true);
    assert_eq!(body["decision"]["evaluatedAt"], AT);
    assert_eq!(body["decision"]["to"], "prod");
    let keys: Vec<_> = s
        .loaded()
        .engine
        .trust()
        .keys()
        .iter()
        .map(|k| k.key.clone())
        .collect();
    let statement =
        promo_policy::sign::verify_decision_statement(&body["envelope"], &keys).unwrap();
    assert_eq!(
        statement["predicate"]["decisionId"],
        body["decision"]["decisionId"]
    );
}

#[tokio::test]
async fn evaluate_a_denied_request_is_200_with_the_violation() {
    let req = without_approvals();
    let r = post_json(&server(None), "/v1/promotions/evaluate", &req).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["decision"]["allowed"], false);
    assert!(r.text.contains("approvals.min_count"), "{}", r.text);
}

#[tokio::test]
async fn evaluate_bad_json_is_400_naming_line_and_column() {
    let r = send(
        &server(None),
        Method::POST,
        "/v1/promotions/evaluate",
        Some(b"{\n  \"id\": 1,\n}".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body = r.json();
    assert_eq!(body["code"], "invalid_parameter");
    assert_eq!(body["errors"][0]["location"]["line"], 3);
    assert_eq!(body["errors"][0]["location"]["column"], 1);
    assert!(body["message"].as_str().unwrap().contains("line 3"));
}

#[tokio::test]
async fn evaluate_duplicate_keys_are_400() {
    let r = send(
        &server(None),
        Method::POST,
        "/v1/promotions/evaluate",
        Some(br#"{"id": "a", "id": "b"}"#.to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("duplicate key"), "{}", r.text);
}

#[tokio::test]
async fn evaluate_schema_error_is_400_naming_the_pointer() {
    let mut req = request();
    req["change"]["emergency"] = json!("yes");
    let r = post_json(&server(None), "/v1/promotions/evaluate", &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let body = r.json();
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/change/emergency"), "{}", r.text);
}

#[tokio::test]
async fn evaluate_wrong_content_type_is_415() {
    let r = send_with(
        &server(None),
        Method::POST,
        "/v1/promotions/evaluate",
        Some(request().to_string().into_bytes()),
        Some("text/plain"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.text.contains("text/plain"));
}

#[tokio::test]
async fn evaluate_without_content_type_is_accepted() {
    let r = send_with(
        &server(None),
        Method::POST,
        "/v1/promotions/evaluate",
        Some(request().to_string().into_bytes()),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn evaluate_an_oversized_body_is_413_and_the_server_keeps_serving() {
    let s = server(None);
    let big = vec![b' '; 3 * 1024 * 1024];
    let r = send(&s, Method::POST, "/v1/promotions/evaluate", Some(big)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    // Just over the request limit but inside the transport slack: the parser's message.
    let mut body = request().to_string().into_bytes();
    body.resize(promo_policy::request::MAX_BODY_BYTES + 10, b' ');
    let r = send(&s, Method::POST, "/v1/promotions/evaluate", Some(body)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    let r = post_json(&s, "/v1/promotions/evaluate", &request()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn evaluate_get_is_405() {
    let r = send(&server(None), Method::GET, "/v1/promotions/evaluate", None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}

// ---------------------------------------------------------------- OPA Data API

#[tokio::test]
async fn data_v1_returns_the_decision_document() {
    let r = post_json(
        &server(None),
        "/v1/data/promo/decision",
        &json!({"input": request()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["result"]["allow"], true);
    assert_eq!(body["result"]["deny"], json!([]));
    assert!(body["decision_id"].is_string());
}

#[tokio::test]
async fn data_v1_reads_any_rule_over_the_same_input() {
    let req = without_approvals();
    let r = post_json(
        &server(None),
        "/v1/data/promo/decision/allow",
        &json!({"input": req}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["result"], false);
}

#[tokio::test]
async fn data_v1_pretty_true_indents() {
    let r = post_json(
        &server(None),
        "/v1/data/promo/decision?pretty=true",
        &json!({"input": request()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("\n  \"result\": {\n"), "{}", r.text);
    assert_eq!(r.json()["result"]["allow"], true);
}

#[tokio::test]
async fn data_v1_undefined_path_is_200_empty_object() {
    let r = post_json(
        &server(None),
        "/v1/data/promo/no/such/rule",
        &json!({"input": request()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({}));
}

#[tokio::test]
async fn data_v1_schema_error_names_the_pointer_inside_input() {
    let mut req = request();
    req["artifact"]["digest"] = json!("sha256:abc");
    let r = post_json(
        &server(None),
        "/v1/data/promo/decision",
        &json!({"input": req}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.text.contains("\"pointer\":\"/input/artifact/digest"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn data_v1_without_input_is_400() {
    let s = server(None);
    let r = post_json(&s, "/v1/data/promo/decision", &json!({"inputs": {}})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["pointer"], "/input");
    let r = post_json(&s, "/v1/data/promo/decision", &json!([1, 2])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("must be a JSON object"));
}

#[tokio::test]
async fn data_v1_bad_json_is_400() {
    let r = send(
        &server(None),
        Method::POST,
        "/v1/data/promo/decision",
        Some(b"{\"input\": nope}".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["location"]["line"], 1);
}

#[tokio::test]
async fn data_v1_get_reads_configuration_without_input() {
    let s = server(None);
    let r = send(&s, Method::GET, "/v1/data/promo/config/order", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!({"result": ["dev", "staging", "prod"]}));
    let r = send(&s, Method::GET, "/v1/data/promo/config/nope", None).await;
    assert_eq!(r.json(), json!({}));
}

#[tokio::test]
async fn data_v0_returns_the_bare_value_and_404_when_undefined() {
    let s = server(None);
    let r = post_json(&s, "/v0/data/promo/decision/allow", &request()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json(), json!(true));
    let r = post_json(&s, "/v0/data/promo/nothing", &request()).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "undefined_document");
    let mut req = request();
    req["to"] = json!(5);
    let r = post_json(&s, "/v0/data/promo/decision", &req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.contains("\"pointer\":\"/to\""), "{}", r.text);
}

/// OPA answers a write to a path a bundle owns with `400 invalid_parameter`; here the
/// one signed bundle owns every path.
#[tokio::test]
async fn writes_to_data_and_policies_are_refused_as_opa_refuses_bundle_paths() {
    let s = server(None);
    for (method, uri) in [
        (Method::PUT, "/v1/data/promo/config"),
        (Method::PATCH, "/v1/data/promo/config"),
        (Method::DELETE, "/v1/data/promo/config"),
        (Method::PUT, "/v1/data"),
        (Method::PUT, "/v1/policies/promo/decision.rego"),
        (Method::DELETE, "/v1/policies/promo/decision.rego"),
    ] {
        let r = send(&s, method.clone(), uri, Some(b"{}".to_vec())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{method} {uri}");
        assert_eq!(r.json()["code"], "invalid_parameter", "{method} {uri}");
        assert!(
            r.json()["message"].as_str().unwrap().contains("read-only"),
            "{}",
            r.text
        );
    }
    // Still there.
    let r = send(&s, Method::GET, "/v1/policies/promo/decision.rego", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn policies_are_listed_in_opa_shape() {
    let s = server(None);
    let r = send(&s, Method::GET, "/v1/policies", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let body = r.json();
    let list = body["result"].as_array().unwrap();
    assert!(!list.is_empty());
    let ids: Vec<&str> = list.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&"promo/decision.rego"), "{ids:?}");
    assert!(list.iter().all(|p| p["raw"].is_string()));
    assert!(!ids.iter().any(|id| id.ends_with("_test.rego")));

    let r = send(&s, Method::GET, "/v1/policies/promo/decision.rego", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["result"]["id"], "promo/decision.rego");
    assert!(r.json()["result"]["raw"]
        .as_str()
        .unwrap()
        .contains("package promo"));

    let r = send(&s, Method::GET, "/v1/policies/nope.rego", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_data_path_of_hundreds_of_segments_is_a_400_not_a_500() {
    let s = server(None);
    let long = format!("/v1/data/{}", vec!["a"; 300].join("/"));
    let r = send(&s, Method::GET, &long, None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("the limits are 32"), "{}", r.text);
    let r = post_json(&s, &long, &json!({"input": request()})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    let v0 = format!("/v0/data/{}", vec!["a"; 300].join("/"));
    let r = post_json(&s, &v0, &request()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Within the limit, an undefined document is still 200 {} (OPA's answer).
    let r = send(
        &s,
        Method::GET,
        &format!("/v1/data/{}", vec!["a"; 32].join("/")),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// A sidecar started with `--allow-query`.
pub(crate) fn query_server() -> Server {
    Server::new(ServerConfig {
        allow_query: true,
        ..config(Path::new("policies"), None)
    })
    .unwrap()
}

#[tokio::test]
async fn query_api_is_off_unless_allowed() {
    let s = server(None);
    let r = send(&s, Method::GET, "/v1/query?q=x%20%3A%3D%201", None).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("--allow-query"), "{}", r.text);
    let r = post_json(&s, "/v1/query", &json!({"query": "x := 1"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
}

#[tokio::test]
async fn a_query_asking_for_a_huge_range_is_refused_not_computed() {
    let s = query_server();
    for q in [
        "x := count(numbers.range(1, 1000000000))",
        "x := count(numbers.range_step(0, 9000000000000000000, 3))",
    ] {
        let r = post_json(&s, "/v1/query", &json!({"query": q})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert!(r.text.contains("the limit is 100000"), "{q}: {}", r.text);
    }
    for q in [
        "x := time.now_ns()",
        "x := time[\"now_ns\"]()",
        "x := rand.intn(\"a\", 9)",
    ] {
        let r = post_json(&s, "/v1/query", &json!({"query": q})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert!(r.text.contains("is refused"), "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn query_api_returns_bindings() {
    let s = query_server();
    let r = send(
        &s,
        Method::GET,
        "/v1/query?q=x%20%3A%3D%20data.promo.config.order",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"result": [{"x": ["dev", "staging", "prod"]}]})
    );

    let r = post_json(
        &s,
        "/v1/query",
        &json!({"query": "env := data.promo.config.order[_]"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["result"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn query_api_refuses_input_and_bad_queries() {
    let s = query_server();
    let r = post_json(
        &s,
        "/v1/query",
        &json!({"query": "x := input.request.id", "input": request()}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["pointer"], "/input");

    let r = post_json(&s, "/v1/query", &json!({"query": "x := := 1"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);

    let r = post_json(&s, "/v1/query", &json!({"q": "x := 1"})).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["pointer"], "/query");

    let r = send(&s, Method::GET, "/v1/query", None).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

// ---------------------------------------------------------------- health, metrics

#[tokio::test]
async fn health_live_and_ready_are_200_empty() {
    let s = server(None);
    for uri in ["/health", "/health/live", "/health/ready"] {
        let r = send(&s, Method::GET, uri, None).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
        assert_eq!(r.json(), json!({}), "{uri}");
    }
    s.begin_drain();
    let r = send(&s, Method::GET, "/health/ready", None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let r = send(&s, Method::GET, "/health/live", None).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_count_decisions_errors_and_name_the_bundle() {
    let s = server(Some("prod"));
    post_json(&s, "/v1/promotions/evaluate", &request()).await;
    send(
        &s,
        Method::POST,
        "/v1/promotions/evaluate",
        Some(b"{".to_vec()),
    )
    .await;
    let r = send(&s, Method::GET, "/metrics", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let t = &r.text;
    assert!(
        t.contains(
            r#"promo_decisions_total{route="evaluate",result="allow",environment="prod"} 1"#
        ),
        "{t}"
    );
    assert!(
        t.contains(r#"promo_request_errors_total{route="evaluate",cause="malformed_json"} 1"#),
        "{t}"
    );
    assert!(t.contains("promo_decision_duration_seconds_bucket"), "{t}");
    let digest = s.loaded().engine.bundle().digest().hex();
    assert!(
        t.contains(&format!(r#"promo_bundle_info{{digest="{digest}"}} 1"#)),
        "{t}"
    );
    assert!(t.contains("promo_requests_in_flight"), "{t}");
}

#[tokio::test]
async fn promotion_attempts_and_denials_by_violation_move() {
    let s = server(Some("prod"));
    let metric = |t: &str, name: &str| -> Option<f64> {
        t.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
    };
    post_json(&s, "/v1/promotions/evaluate", &request()).await;
    post_json(&s, "/v1/promotions/evaluate", &without_approvals()).await;
    let t = send(&s, Method::GET, "/metrics", None).await.text;
    assert_eq!(
        metric(&t, r#"promo_promotion_attempts_total{environment="prod"}"#),
        Some(2.0),
        "{t}"
    );
    assert_eq!(
        metric(
            &t,
            r#"promo_promotion_denials_by_violation_total{environment="prod",violation="approvals.min_count"}"#
        ),
        Some(1.0),
        "{t}"
    );
    // Only catalog ids (or `other`) ever become label values.
    let catalog: Vec<String> = s
        .loaded()
        .engine
        .bundle()
        .catalog()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    for line in t
        .lines()
        .filter(|l| l.starts_with("promo_promotion_denials_by_violation_total{"))
    {
        let violation = line
            .split("violation=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        assert!(
            violation == "other" || catalog.iter().any(|c| c == violation),
            "{line}"
        );
    }
}

#[tokio::test]
async fn environment_labels_are_bounded_to_configured_environments() {
    let s = server(None);
    let mut req = request();
    req["to"] = json!("an-attacker-chosen-label");
    post_json(&s, "/v1/promotions/evaluate", &req).await;
    let t = send(&s, Method::GET, "/metrics", None).await.text;
    assert!(!t.contains("an-attacker-chosen-label"), "{t}");
    assert!(t.contains(r#"environment="other""#), "{t}");
}

#[tokio::test]
async fn unknown_routes_are_404_json() {
    let r = send(&server(None), Method::GET, "/v2/nothing", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["code"], "resource_not_found");
}

// ---------------------------------------------------------------- admission

/// Every workload kind: (API group, kind).
const KINDS: &[(&str, &str)] = &[
    ("", "Pod"),
    ("apps", "Deployment"),
    ("apps", "StatefulSet"),
    ("apps", "DaemonSet"),
    ("apps", "ReplicaSet"),
    ("batch", "Job"),
    ("batch", "CronJob"),
];

pub(crate) fn pod_spec(images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("app{i}"), "image": image}))
        .collect();
    json!({ "containers": containers })
}

pub(crate) fn annotations(envelopes: &[Value]) -> Value {
    json!({ DECISIONS_ANNOTATION: Value::Array(envelopes.to_vec()).to_string() })
}

/// An object of `kind` with `spec` as its pod spec and `annotations` on its metadata.
pub(crate) fn object(group: &str, kind: &str, spec: Value, annotations: Value) -> Value {
    let api_version = if group.is_empty() {
        "v1".to_string()
    } else {
        format!("{group}/v1")
    };
    let template = json!({"metadata": {"labels": {"app": "web"}}, "spec": spec});
    let body = match kind {
        "Pod" => template["spec"].clone(),
        "CronJob" => {
            json!({"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}})
        }
        _ => json!({"template": template}),
    };
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": "web", "namespace": "shop", "annotations": annotations},
        "spec": body,
    })
}

pub(crate) fn review(group: &str, kind: &str, operation: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": UID,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": format!("{}s", kind.to_lowercase())},
            "namespace": "shop",
            "name": "web",
            "operation": operation,
            "userInfo": {"username": "deployer"},
            "object": object,
            "oldObject": null,
            "dryRun": false,
        }
    })
}

async fn admit(server: &Server, review: &Value) -> Value {
    let r = post_json(server, "/v1/admission", review).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let body = r.json();
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], UID, "uid must be echoed");
    body["response"].clone()
}

fn message(response: &Value) -> String {
    response["status"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn admission_allows_every_workload_kind_with_a_decided_pinned_image() {
    let s = server(Some("prod"));
    let envelope = allowed_envelope();
    let image = pinned_image();
    for (group, kind) in KINDS {
        let obj = object(
            group,
            kind,
            pod_spec(&[&image]),
            annotations(std::slice::from_ref(&envelope)),
        );
        let response = admit(&s, &review(group, kind, "CREATE", obj)).await;
        assert_eq!(response["allowed"], true, "{kind}: {response}");
        assert!(
            response["auditAnnotations"]["decisions"].is_string(),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn admission_refuses_every_workload_kind_with_an_unpinned_image() {
    let s = server(Some("prod"));
    let envelope = allowed_envelope();
    for (group, kind) in KINDS {
        let obj = object(
            group,
            kind,
            pod_spec(&[&pinned_image(), "registry.example.com/payments/api:1.42.0"]),
            annotations(std::slice::from_ref(&envelope)),
        );
        let response = admit(&s, &review(group, kind, "UPDATE", obj)).await;
        assert_eq!(response["allowed"], false, "{kind}");
        assert_eq!(response["status"]["code"], 403);
        let msg = message(&response);
        assert!(msg.contains("container `app1`"), "{kind}: {msg}");
        assert!(msg.contains("not pinned by digest"), "{kind}: {msg}");
        assert!(!msg.contains("container `app0`"), "{kind}: {msg}");
    }
}

#[tokio::test]
async fn admission_refuses_references_the_distribution_grammar_does_not_parse() {
    let s = server(Some("prod"));
    let envelope = allowed_envelope();
    let allowed = pinned_image();
    let digest = allowed.rsplit_once('@').unwrap().1.to_string();
    let (name, _) = allowed.rsplit_once('@').unwrap();
    for bad in [
        // A decided digest at the end of something that is not one reference.
        format!("{name}@sha256:{}@{digest}", "1".repeat(64)),
        format!("{name} evil@{digest}"),
        format!("{}@{digest}", name.to_uppercase()),
        format!("{name}@@{digest}"),
        format!("{name}\n@{digest}"),
    ] {
        let obj = object(
            "",
            "Pod",
            pod_spec(&[&bad]),
            annotations(std::slice::from_ref(&envelope)),
        );
        let response = admit(&s, &review("", "Pod", "CREATE", obj)).await;
        assert_eq!(response["allowed"], false, "{bad:?}: {response}");
        assert!(
            message(&response).contains("is not a valid image reference"),
            "{bad:?}: {}",
            message(&response)
        );
    }
}

#[tokio::test]
async fn admission_refuses_a_pinned_image_without_a_decision() {
    let s = server(Some("prod"));
    let other = format!("registry.example.com/other@sha256:{}", "a".repeat(64));
    let obj = object("apps", "Deployment", pod_spec(&[&other]), json!({}));
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    let msg = message(&response);
    assert!(
        msg.contains("no verified decision allowed `sha256:aaaaaaaaaaaa`"),
        "{msg}"
    );
    assert!(msg.contains("into `prod`"), "{msg}");
    assert!(msg.contains("Deployment `shop/web`"), "{msg}");
}

#[tokio::test]
async fn admission_checks_init_and_ephemeral_containers() {
    let s = server(Some("prod"));
    let envelope = allowed_envelope();
    let mut spec = pod_spec(&[&pinned_image()]);
    spec["initContainers"] = json!([{"name": "migrate", "image": "busybox:1.36"}]);
    spec["ephemeralContainers"] =
        json!([{"name": "debugger", "image": "debug@sha256:".to_string() + &"b".repeat(64)}]);
    let obj = object("", "Pod", spec, annotations(&[envelope]));
    let response = admit(&s, &review("", "Pod", "UPDATE", obj)).await;
    assert_eq!(response["allowed"], false);
    let msg = message(&response);
    assert!(msg.contains("initContainer `migrate`"), "{msg}");
    assert!(msg.contains("ephemeralContainer `debugger`"), "{msg}");
}

#[tokio::test]
async fn admission_refuses_a_tampered_decision() {
    let s = server(Some("prod"));
    let mut envelope = allowed_envelope();
    // Re-point the signed decision at another digest, keeping the signature.
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let mut statement: Value = serde_json::from_slice(&payload).unwrap();
    let other = "c".repeat(64);
    statement["subject"][0]["digest"]["sha256"] = json!(other);
    statement["predicate"]["artifact"]["digest"]["sha256"] = json!(other);
    envelope["payload"] = json!(b64.encode(serde_json::to_vec(&statement).unwrap()));
    let image = format!("registry.example.com/payments/api@sha256:{other}");
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&image]),
        annotations(&[envelope]),
    );
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    let msg = message(&response);
    assert!(msg.contains("no signature verifies"), "{msg}");
}

#[tokio::test]
async fn admission_refuses_a_decision_signed_by_an_untrusted_key() {
    let s = server(Some("prod"));
    let envelope = allowed_envelope();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let statement: Value = serde_json::from_slice(&payload).unwrap();
    let forger = promo_policy::attest::SigningKey::generate();
    let forged = promo_policy::sign::sign_statement(&forger, &statement).unwrap();
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        annotations(&[forged]),
    );
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("no signature verifies"));
}

/// One rule for what a signed decision's subject must match (its artifact's name and
/// every digest), the same through `verify` and through admission.
#[tokio::test]
async fn a_decision_whose_subject_names_another_artifact_is_refused_by_verify_and_admission() {
    let envelope = allowed_envelope();
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(envelope["payload"].as_str().unwrap()).unwrap();
    let mut statement: Value = serde_json::from_slice(&payload).unwrap();
    // Same sha256, another name: admission once matched on the digest alone.
    statement["subject"][0]["name"] = "registry.example.com/other/app".into();
    let key = promo_policy::attest::SigningKey::from_pkcs8_pem(
        &std::fs::read_to_string("corpus/keys/decisions-dev.key").unwrap(),
    )
    .unwrap();
    let resigned = promo_policy::sign::sign_statement(&key, &statement).unwrap();

    let s = server(Some("prod"));
    let obj = object(
        "",
        "Pod",
        pod_spec(&[&pinned_image()]),
        annotations(std::slice::from_ref(&resigned)),
    );
    let response = admit(&s, &review("", "Pod", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false, "{response}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.json");
    std::fs::write(&file, resigned.to_string()).unwrap();
    crate::support::bin()
        .args(["verify", file.to_str().unwrap()])
        .assert()
        .code(1)
        .stdout(predicates::str::contains(
            "subject is not the decision's artifact",
        ));
    // The untouched decision passes both.
    let obj = object(
        "",
        "Pod",
        pod_spec(&[&pinned_image()]),
        annotations(&[envelope]),
    );
    assert_eq!(
        admit(&s, &review("", "Pod", "CREATE", obj)).await["allowed"],
        true
    );
}

#[tokio::test]
async fn admission_refuses_a_decision_for_another_environment() {
    let s = server(Some("staging"));
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        annotations(&[allowed_envelope()]),
    );
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    let msg = message(&response);
    assert!(msg.contains("into `prod`, not `staging`"), "{msg}");
}

#[tokio::test]
async fn admission_refuses_a_signed_deny() {
    let s = server(Some("prod"));
    let req = without_approvals();
    let denied = envelope_for(&req);
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        annotations(&[denied]),
    );
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("did not allow the promotion"));
}

#[tokio::test]
async fn admission_reads_decisions_from_the_pod_template_annotations() {
    let s = server(Some("prod"));
    let mut obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        json!({}),
    );
    obj["spec"]["template"]["metadata"]["annotations"] = annotations(&[allowed_envelope()]);
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], true, "{response}");
}

/// A wrong method on the webhook routes is the 405 every other route gives: `Allow`
/// and the JSON `{"code", "message"}` body, counted on the admission route.
#[tokio::test]
async fn admission_routes_answer_a_wrong_method_with_a_json_405_and_allow() {
    let s = server(Some("prod"));
    for (method, uri) in [
        (Method::GET, "/v1/admission"),
        (Method::PUT, "/v1/admission"),
        (Method::GET, "/v1/admission/enforce"),
        (Method::DELETE, "/v1/admission/dry-run"),
    ] {
        let r = send(&s, method.clone(), uri, None).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.headers[header::ALLOW], "POST", "{method} {uri}");
        assert_eq!(
            r.headers[header::CONTENT_TYPE],
            "application/json",
            "{method} {uri}"
        );
        let body = r.json();
        assert_eq!(body["code"], "invalid_operation", "{method} {uri}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{method}`")) && message.contains(uri),
            "{message}"
        );
    }
    let t = send(&s, Method::GET, "/metrics", None).await.text;
    assert!(
        t.contains(r#"promo_request_errors_total{route="admission",cause="method"} 4"#),
        "{t}"
    );
}

#[tokio::test]
async fn admission_refuses_a_malformed_annotation() {
    let s = server(Some("prod"));
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        json!({ DECISIONS_ANNOTATION: "not json" }),
    );
    let response = admit(&s, &review("apps", "Deployment", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("is not a JSON array of DSSE envelopes"));
}

#[tokio::test]
async fn admission_uses_the_decision_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("api.json"),
        serde_json::to_vec_pretty(&allowed_envelope()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("junk.json"), b"{ not json").unwrap();
    let mut cfg = config(Path::new("policies"), Some("prod"));
    cfg.decisions = Some(dir.path().to_path_buf());
    let s = Server::new(cfg).unwrap();
    let loaded = s.loaded();
    let environments: Vec<&String> = loaded.admission_environments.keys().collect();
    assert_eq!(environments, ["prod"], "one index per environment in use");
    assert_eq!(loaded.admission_environments["prod"].index.len(), 1);
    let obj = object("", "Pod", pod_spec(&[&pinned_image()]), json!({}));
    let response = admit(&s, &review("", "Pod", "CREATE", obj)).await;
    assert_eq!(response["allowed"], true, "{response}");
}

/// One read of `--decisions DIR` fills one index per environment in use, each decision
/// under the environment it allowed into, verified with that environment's keys; a
/// decision into an environment no namespace uses goes nowhere.
#[tokio::test]
async fn the_decision_directory_is_indexed_per_environment_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let staging: Value = serde_json::from_slice(
        &std::fs::read("corpus/cases/staging-allow-baseline/request.json").unwrap(),
    )
    .unwrap();
    let both = json!([allowed_envelope(), envelope_for(&staging)]);
    std::fs::write(dir.path().join("both.json"), both.to_string()).unwrap();
    let config = dir.path().join("admission.yaml");
    std::fs::write(
        &config,
        "namespaces: [{name: web-staging, environment: staging}]\n",
    )
    .unwrap();
    let mut cfg = crate::server::config(Path::new("policies"), Some("prod"));
    cfg.decisions = Some(dir.path().to_path_buf());
    cfg.admission_config = Some(config.clone());
    let s = Server::new(cfg.clone()).unwrap();
    let loaded = s.loaded();
    let sizes: Vec<(&str, usize)> = loaded
        .admission_environments
        .iter()
        .map(|(env, d)| (env.as_str(), d.index.len()))
        .collect();
    assert_eq!(sizes, [("prod", 1), ("staging", 1)]);

    // Only staging in use: the prod decision is indexed nowhere.
    std::fs::write(&config, "environment: staging\n").unwrap();
    let s = Server::new(cfg).unwrap();
    let loaded = s.loaded();
    let sizes: Vec<(&str, usize)> = loaded
        .admission_environments
        .iter()
        .map(|(env, d)| (env.as_str(), d.index.len()))
        .collect();
    assert_eq!(sizes, [("staging", 1)]);
}

#[tokio::test]
async fn admission_refuses_a_decision_older_than_the_maximum_age() {
    let envelope = allowed_envelope(); // made at AT
    let obj = || {
        object(
            "",
            "Pod",
            pod_spec(&[&pinned_image()]),
            annotations(std::slice::from_ref(&envelope)),
        )
    };
    let sidecar_at = |later: time::Duration| {
        let mut cfg = config(Path::new("policies"), Some("prod"));
        cfg.clock = DecisionClock::Fixed(at() + later);
        cfg.max_decision_age = Some(std::time::Duration::from_secs(3600));
        Server::new(cfg).unwrap()
    };
    let fresh = sidecar_at(time::Duration::minutes(30));
    let response = admit(&fresh, &review("", "Pod", "CREATE", obj())).await;
    assert_eq!(response["allowed"], true, "{response}");
    let later = sidecar_at(time::Duration::hours(2));
    let response = admit(&later, &review("", "Pod", "CREATE", obj())).await;
    assert_eq!(response["allowed"], false, "{response}");
    let msg = message(&response);
    assert!(
        msg.contains("more than the maximum decision age (1h) ago: promote the artifact again"),
        "{msg}"
    );
}

#[tokio::test]
async fn admission_lets_delete_and_connect_through() {
    let s = server(Some("prod"));
    for op in ["DELETE", "CONNECT"] {
        let mut rv = review("apps", "Deployment", op, Value::Null);
        rv["request"]["oldObject"] = object("apps", "Deployment", pod_spec(&["nginx"]), json!({}));
        let response = admit(&s, &rv).await;
        assert_eq!(response["allowed"], true, "{op}");
    }
}

#[tokio::test]
async fn admission_dry_run_gets_the_same_answer_without_being_counted() {
    let s = server(Some("prod"));
    let obj = object("", "Pod", pod_spec(&["nginx:latest"]), json!({}));
    let mut rv = review("", "Pod", "CREATE", obj);
    rv["request"]["dryRun"] = json!(true);
    let response = admit(&s, &rv).await;
    assert_eq!(response["allowed"], false);
    let t = send(&s, Method::GET, "/metrics", None).await.text;
    assert!(!t.contains(r#"route="admission""#), "{t}");
}

#[tokio::test]
async fn admission_refuses_unknown_kinds_and_objects_without_a_pod_template() {
    let s = server(Some("prod"));
    let cm =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}});
    let response = admit(&s, &review("", "ConfigMap", "CREATE", cm)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("kind `ConfigMap`"));

    let no_template = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}});
    let response = admit(&s, &review("apps", "Deployment", "CREATE", no_template)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("no pod template at `/spec/template/spec`"));

    let no_object = review("apps", "Deployment", "CREATE", Value::Null);
    let response = admit(&s, &no_object).await;
    assert_eq!(response["allowed"], false);

    let empty = object("", "Pod", json!({"containers": []}), json!({}));
    let response = admit(&s, &review("", "Pod", "CREATE", empty)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("no containers"));
}

#[tokio::test]
async fn admission_without_environment_refuses() {
    let s = server(None);
    let obj = object(
        "",
        "Pod",
        pod_spec(&[&pinned_image()]),
        annotations(&[allowed_envelope()]),
    );
    let response = admit(&s, &review("", "Pod", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    assert!(message(&response).contains("--environment"));
}

#[tokio::test]
async fn admission_reviews_that_cannot_be_answered_are_400() {
    let s = server(Some("prod"));
    let r = send(
        &s,
        Method::POST,
        "/v1/admission",
        Some(b"not json".to_vec()),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["location"]["line"], 1);

    let r = post_json(
        &s,
        "/v1/admission",
        &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["pointer"], "/request");

    let mut no_uid = review("", "Pod", "CREATE", json!({}));
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    let r = post_json(&s, "/v1/admission", &no_uid).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["pointer"], "/request/uid");

    let mut v1beta1 = review("", "Pod", "CREATE", json!({}));
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let r = post_json(&s, "/v1/admission", &v1beta1).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let r = send(
        &s,
        Method::POST,
        "/v1/admission",
        Some(vec![b' '; 5 * 1024 * 1024]),
    )
    .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A copy of the shipped bundle in a temp dir, to change without touching the repo.
use crate::support::bundle_copy;

#[tokio::test]
async fn admission_rego_rules_add_reasons() {
    let bundle = bundle_copy();
    std::fs::write(
        bundle.path().join("promo/admission.rego"),
        r#"package promo.admission

deny contains {"id": "namespace.reserved", "msg": sprintf("namespace %q is reserved", [input.request.namespace])} if {
	input.request.namespace == "shop"
}
"#,
    )
    .unwrap();
    let s = Server::new(config(bundle.path(), Some("prod"))).unwrap();
    assert!(s.loaded().admission_rules);
    let obj = object(
        "",
        "Pod",
        pod_spec(&[&pinned_image()]),
        annotations(&[allowed_envelope()]),
    );
    let response = admit(&s, &review("", "Pod", "CREATE", obj)).await;
    assert_eq!(response["allowed"], false);
    let msg = message(&response);
    assert!(
        msg.contains(r#"policy namespace.reserved: namespace "shop" is reserved"#),
        "{msg}"
    );
}

// ---------------------------------------------------------------- reload

fn touch_policy(bundle: &Path, comment: &str) {
    let p = bundle.join("promo/lib.rego");
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str(&format!("\n# {comment}\n"));
    std::fs::write(p, text).unwrap();
}

#[tokio::test]
async fn reload_swaps_a_good_bundle_and_keeps_serving_on_a_broken_one() {
    let bundle = bundle_copy();
    let s = Server::new(config(bundle.path(), Some("prod"))).unwrap();
    let first = s.loaded().engine.bundle().digest().hex();

    touch_policy(bundle.path(), "changed");
    s.reload().await.unwrap();
    let second = s.loaded().engine.bundle().digest().hex();
    assert_ne!(first, second);

    std::fs::write(
        bundle.path().join("promo/broken.rego"),
        "package promo.broken\n\ndeny contains {",
    )
    .unwrap();
    assert!(s.reload().await.is_err());
    assert_eq!(s.loaded().engine.bundle().digest().hex(), second);

    let health = send(&s, Method::GET, "/health", None).await;
    assert_eq!(health.status, StatusCode::OK);
    let body = health.json();
    assert_eq!(body["reload"]["ok"], false);
    assert!(
        body["reload"]["error"]
            .as_str()
            .unwrap()
            .contains("broken.rego"),
        "{body}"
    );
    assert_eq!(body["reload"]["serving"]["sha256"], second.as_str());

    let r = post_json(&s, "/v1/promotions/evaluate", &request()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.json()["decision"]["policy"]["digest"]["sha256"],
        second.as_str()
    );

    let t = send(&s, Method::GET, "/metrics", None).await.text;
    assert!(t.contains(r#"promo_reloads_total{result="ok"} 1"#), "{t}");
    assert!(
        t.contains(r#"promo_reloads_total{result="error"} 1"#),
        "{t}"
    );
    assert!(
        t.contains(&format!(r#"promo_bundle_info{{digest="{second}"}} 1"#)),
        "{t}"
    );
    assert!(!t.contains(&first), "{t}");

    std::fs::remove_file(bundle.path().join("promo/broken.rego")).unwrap();
    s.reload().await.unwrap();
    assert_eq!(
        send(&s, Method::GET, "/health", None).await.json(),
        json!({})
    );
}

// ---------------------------------------------------------------- real socket

/// A server on 127.0.0.1:0 in a background runtime; dropping the handle shuts it down
/// and waits for it to finish.
struct Running {
    base: String,
    server: Server,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn start(config: ServerConfig) -> Running {
        let server = Server::new(config).unwrap();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", std_listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let s = server.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
                s.serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            });
        });
        Running {
            base,
            server,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let text = ureq::get(&self.url("/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[test]
fn real_socket_evaluate_data_admission_and_health() {
    let mut running = Running::start(config(Path::new("policies"), Some("prod")));

    let health: Value = ureq::get(&running.url("/health"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(health, json!({}));

    let signed: Value = ureq::post(&running.url("/v1/promotions/evaluate"))
        .send_json(request())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(signed["decision"]["allowed"], true);

    let data: Value = ureq::post(&running.url("/v1/data/promo/decision"))
        .send_json(json!({"input": request()}))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(data["result"]["allow"], true);

    // The envelope the sidecar just signed admits the image.
    let obj = object(
        "apps",
        "Deployment",
        pod_spec(&[&pinned_image()]),
        annotations(&[signed["envelope"].clone()]),
    );
    let answer: Value = ureq::post(&running.url("/v1/admission"))
        .send_json(review("apps", "Deployment", "CREATE", obj))
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(answer["response"]["uid"], UID);
    assert_eq!(answer["response"]["allowed"], true);

    // Bad input over the wire: a 4xx, and the server keeps serving.
    match ureq::post(&running.url("/v1/promotions/evaluate"))
        .set("Content-Type", "application/json")
        .send_string("{")
    {
        Err(ureq::Error::Status(400, _)) => {}
        other => panic!("expected 400, got {other:?}"),
    }
    let ready = ureq::get(&running.url("/health/ready")).call().unwrap();
    assert_eq!(ready.status(), 200);
    running.shutdown();
    assert!(running.server.is_draining());
}

#[test]
fn shutdown_lets_an_in_flight_request_finish() {
    let mut running = Running::start(config(Path::new("policies"), Some("prod")));
    let body = request().to_string();
    let addr = running.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/promotions/evaluate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.split_at(body.len() / 2);
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(first.as_bytes()).unwrap();
    stream.flush().unwrap();

    // Wait (bounded) until the server counts the half-sent request as in flight; the
    // metrics request itself is the other one.
    let mut seen = false;
    for _ in 0..500 {
        if running
            .metric("promo_requests_in_flight ")
            .is_some_and(|n| n >= 2.0)
        {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(seen, "the half-sent request never showed as in flight");

    // Begin shutdown while the request is in flight, then finish sending it.
    let stop = running.stop.take().unwrap();
    stop.send(()).unwrap();
    stream.write_all(rest.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("\"allowed\":true"), "{response}");
    running.shutdown();
}

#[test]
fn a_slow_client_gets_408_and_the_server_keeps_serving() {
    let mut cfg = config(Path::new("policies"), Some("prod"));
    cfg.limits.body_read_timeout = std::time::Duration::from_millis(200);
    let running = Running::start(cfg);
    let addr = running.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    let head = format!(
        "POST /v1/promotions/evaluate HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":"
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.flush().unwrap();
    // Never send the rest: the server must answer on its own.
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("did not arrive"), "{response}");
    let health = ureq::get(&running.url("/health")).call().unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() {
    let mut cfg = config(Path::new("policies"), Some("prod"));
    cfg.limits.header_read_timeout = std::time::Duration::from_millis(200);
    let running = Running::start(cfg);
    let addr = running.base.trim_start_matches("http://").to_string();
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    stream.flush().unwrap();
    // Never finish the headers: the server must close the connection on its own.
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(!response.contains("200 OK"), "{response}");
    let health = ureq::get(&running.url("/health")).call().unwrap();
    assert_eq!(health.status(), 200);
}

#[test]
fn at_the_connection_cap_the_oldest_idle_connection_makes_room() {
    let mut cfg = config(Path::new("policies"), Some("prod"));
    cfg.limits.max_connections = 1;
    let running = Running::start(cfg);
    let addr = running.base.trim_start_matches("http://").to_string();
    // Hold the only connection, idle after a keep-alive request.
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    held.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = held.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle for longer than a response takes to leave.
    std::thread::sleep(std::time::Duration::from_millis(300));
    // A new connection is served at once (well before the 5 s header timeout would
    // have closed the idle one); the idle one is closed to make room.
    let started = std::time::Instant::now();
    let mut next = std::net::TcpStream::connect(&addr).unwrap();
    next.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    next.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    held.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    assert_eq!(
        held.read(&mut buf).unwrap(),
        0,
        "the idle connection was closed"
    );
    assert_eq!(running.metric("promo_connections_evicted_total"), Some(1.0));
}

#[test]
fn slowloris_connections_cannot_keep_health_from_answering() {
    let mut cfg = config(Path::new("policies"), Some("prod"));
    // Few slots and a long header timeout: only eviction can make room.
    cfg.limits.max_connections = 8;
    cfg.limits.header_read_timeout = std::time::Duration::from_secs(60);
    let running = Running::start(cfg);
    let addr = running.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for _ in 0..64 {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        slow.push(s);
    }
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let health = ureq::get(&running.url("/health"))
            .timeout(std::time::Duration::from_secs(10))
            .call()
            .unwrap();
        assert_eq!(health.status(), 200);
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
    assert!(running.metric("promo_connections_evicted_total").unwrap() >= 56.0);
    drop(slow);
}

#[test]
fn bodies_past_the_in_flight_budget_get_503_not_memory() {
    let mut cfg = config(Path::new("policies"), Some("prod"));
    cfg.limits.max_body_bytes_in_flight = 64 * 1024;
    let running = Running::start(cfg);
    let addr = running.base.trim_start_matches("http://").to_string();
    // One client declares 60 KB and sends nothing: its share is reserved.
    let mut holder = std::net::TcpStream::connect(&addr).unwrap();
    holder
        .write_all(
            b"POST /v1/promotions/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // Another's 10 KB does not fit beside it: 503 with Retry-After, not a queue of bytes.
    let body = format!("{{\"pad\": \"{}\"}}", "x".repeat(10_000));
    let err = ureq::post(&running.url("/v1/promotions/evaluate"))
        .set("Content-Type", "application/json")
        .send_string(&body)
        .unwrap_err();
    match err {
        ureq::Error::Status(code, response) => {
            assert_eq!(code, 503);
            assert_eq!(response.header("Retry-After"), Some("1"));
            assert!(response.into_string().unwrap().contains("request bodies"));
        }
        other => panic!("{other}"),
    }
    // Small requests still fit, and the budget comes back when the holder goes.
    drop(holder);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = ureq::post(&running.url("/v1/promotions/evaluate"))
        .set("Content-Type", "application/json")
        .send_string(&request().to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn the_watcher_reloads_a_changed_bundle() {
    let bundle = bundle_copy();
    let mut cfg = config(bundle.path(), Some("prod"));
    cfg.watch_interval = Some(std::time::Duration::from_millis(50));
    let running = Running::start(cfg);
    let first = running.server.loaded().engine.bundle().digest().hex();
    // Give the watcher its baseline, then change a file.
    let _ = ureq::get(&running.url("/health")).call().unwrap();
    let mut reloaded = false;
    for i in 0..400 {
        if i % 50 == 0 {
            touch_policy(bundle.path(), &format!("edit {i}"));
        }
        if running.server.loaded().engine.bundle().digest().hex() != first {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    assert!(reloaded, "the bundle change was never picked up");
    // The counter is bumped just after the swap: wait for it rather than race it.
    let counted = (0..400).any(|_| {
        let seen = running
            .metric("promo_reloads_total{result=\"ok\"}")
            .is_some();
        if !seen {
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        seen
    });
    assert!(counted, "the reload was not counted in /metrics");
}

#[test]
fn the_serve_binary_answers_reloads_on_sighup_and_stops_on_sigterm() {
    let bundle = bundle_copy();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("promo-policy"))
        .args(["serve", "--addr", "127.0.0.1:0", "--environment", "prod"])
        .args(["--watch-interval", "0", "--at", AT, "--policies"])
        .arg(bundle.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut base = None;
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0 {
        if let Some(rest) = line.split("serving on ").nth(1) {
            base = rest.split_whitespace().next().map(str::to_string);
            break;
        }
        line.clear();
    }
    let base = base.expect("the serve line");
    let health = ureq::get(&format!("{base}/health")).call().unwrap();
    assert_eq!(health.status(), 200);
    let signed: Value = ureq::post(&format!("{base}/v1/promotions/evaluate"))
        .send_json(request())
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(signed["decision"]["evaluatedAt"], AT);
    let first = signed["decision"]["policy"]["digest"]["sha256"].clone();

    // The shell's builtin `kill`: no dependency on procps being installed.
    let kill = |signal: &str| {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill {signal} {}", child.id()))
            .status()
            .unwrap();
        assert!(status.success());
    };
    touch_policy(bundle.path(), "reload me");
    kill("-HUP");
    let mut reloaded = false;
    for _ in 0..500 {
        let signed: Value = ureq::post(&format!("{base}/v1/promotions/evaluate"))
            .send_json(request())
            .unwrap()
            .into_json()
            .unwrap();
        if signed["decision"]["policy"]["digest"]["sha256"] != first {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(reloaded, "SIGHUP did not reload the bundle");

    kill("-TERM");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("stopped"), "{rest}");
}

/// A SIGHUP right after the "serving on" line (a config-reloader sidecar does this when
/// the pod starts) must not kill the sidecar: the handler is in place before the line,
/// as SIGTERM's is. Before, the default action (terminate) applied until the reload
/// trigger started inside `serve`.
#[test]
fn a_sighup_right_after_start_does_not_kill_the_sidecar() {
    for _ in 0..5 {
        let sidecar = crate::support::spawn_serve([
            "--environment",
            "prod",
            "--watch-interval",
            "0",
            "--at",
            AT,
        ]);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -HUP {}", sidecar.id()))
            .status()
            .unwrap();
        assert!(status.success());
        let health = ureq::get(&format!("{}/health", sidecar.base)).call();
        assert!(
            health.is_ok_and(|h| h.status() == 200),
            "the sidecar died of an early SIGHUP"
        );
        crate::support::stop_serve(sidecar);
    }
}

/// The guard `spawn_serve` returns kills its sidecar when dropped (a test that panics
/// before `stop_serve` must not leave one running), and `stop_serve` still sees a clean
/// exit on SIGTERM.
#[test]
fn a_dropped_sidecar_guard_kills_the_sidecar() {
    let args = ["--environment", "prod", "--watch-interval", "0", "--at", AT];
    let sidecar = crate::support::spawn_serve(args);
    let health = format!("{}/health", sidecar.base);
    assert_eq!(ureq::get(&health).call().unwrap().status(), 200);
    let pid = sidecar.id();
    let alive = || {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("kill -0 {pid} 2>/dev/null"))
            .status()
            .unwrap()
            .success()
    };
    assert!(alive());
    drop(sidecar);
    // Dropped means killed and reaped: the pid is gone, and nothing answers.
    assert!(!alive(), "the sidecar {pid} outlived its guard");
    assert!(ureq::get(&health).call().is_err());

    let sidecar = crate::support::spawn_serve(args);
    crate::support::stop_serve(sidecar);
}

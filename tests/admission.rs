//! Admission rollout through the real `serve` binary: modes (config and route), break-glass
//! where allowed and nowhere else, the signer threshold and allowed bundle digests, and a
//! bad admission config at startup and on reload.

use std::path::Path;

use serde_json::{json, Value};

use crate::audit::{metrics, query, verify};
use crate::server::{allowed_envelope, annotations, object, pinned_image, pod_spec, review};
use crate::support::{bin, spawn_serve, stop_serve, write, Sidecar, AT};

const UNPINNED: &str = "registry.example.com/shop/web:1.27";

/// `serve --environment prod --at AT --watch-interval 0 --admission-config CONFIG EXTRA...`.
fn serve(config: &Path, extra: &[&std::ffi::OsStr]) -> crate::support::Sidecar {
    let mut args: Vec<std::ffi::OsString> = [
        "--environment",
        "prod",
        "--at",
        AT,
        "--watch-interval",
        "0",
        "--admission-config",
    ]
    .iter()
    .map(Into::into)
    .collect();
    args.push(config.into());
    args.extend(extra.iter().map(Into::into));
    spawn_serve(args)
}

/// A Deployment review in `namespace` with `images` and these annotations.
fn deployment(namespace: &str, images: &[&str], annotations: Value) -> Value {
    let mut obj = object("apps", "Deployment", pod_spec(images), annotations);
    obj["metadata"]["namespace"] = json!(namespace);
    let mut r = review("apps", "Deployment", "CREATE", obj);
    r["request"]["namespace"] = json!(namespace);
    r
}

/// POST a review to `base` + `route`; the AdmissionReview `response`.
fn admit(base: &str, route: &str, review: &Value) -> Value {
    let body: Value = ureq::post(&format!("{base}{route}"))
        .send_json(review.clone())
        .unwrap()
        .into_json()
        .unwrap();
    body["response"].clone()
}

fn break_glass(reason: &str, ticket: &str) -> Value {
    json!({"promo-policy.dev/break-glass": json!({"reason": reason, "ticket": ticket}).to_string()})
}

fn text(v: &Value) -> String {
    v.to_string()
}

#[test]
fn break_glass_admits_only_where_the_config_allows_it_and_is_audited_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "admission.yaml",
        "mode: enforce\nnamespaces:\n  - name: shop\n    breakGlass: {allowed: true}\n  - name: locked\n",
    );
    let db = dir.path().join("audit.db");
    let sidecar = serve(&config, &["--audit".as_ref(), db.as_os_str()]);
    let base = sidecar.base.clone();
    let glass = break_glass("checkout is down", "INC-123");

    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop", &[UNPINNED], glass.clone()),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = text(&r["warnings"]);
    assert!(
        warnings.contains("break-glass") && warnings.contains("INC-123"),
        "{r}"
    );
    assert!(warnings.contains("is not pinned by digest"), "{r}");
    assert_eq!(r["auditAnnotations"]["breakGlassTicket"], "INC-123", "{r}");

    // Where the config does not allow it, break-glass never applies.
    for ns in ["locked", "elsewhere"] {
        let r = admit(
            &base,
            "/v1/admission",
            &deployment(ns, &[UNPINNED], glass.clone()),
        );
        assert_eq!(r["allowed"], false, "{ns}: {r}");
        let message = r["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("break-glass is not allowed in this namespace"),
            "{message}"
        );
        assert!(message.contains("is not pinned by digest"), "{message}");
    }
    // A malformed or incomplete annotation is no break-glass, and says why.
    for bad in [
        json!({"promo-policy.dev/break-glass": "{\"reason\": \"x\"}"}),
        break_glass("", "INC-1"),
        json!({"promo-policy.dev/break-glass": "please"}),
    ] {
        let r = admit(
            &base,
            "/v1/admission",
            &deployment("shop", &[UNPINNED], bad),
        );
        assert_eq!(r["allowed"], false, "{r}");
        assert!(text(&r).contains("does not count"), "{r}");
    }
    // Nothing to break: a clean pass is not a break-glass admission.
    let good = deployment(
        "shop",
        &[&pinned_image()],
        annotations(&[allowed_envelope()]),
    );
    let mut good_with_glass = good.clone();
    good_with_glass["request"]["object"]["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .extend(glass.as_object().unwrap().clone());
    let r = admit(&base, "/v1/admission", &good_with_glass);
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "{r}");

    let m = metrics(&base);
    assert!(
        m.contains(r#"promo_break_glass_admissions_total{namespace="shop"} 1"#),
        "{m}"
    );
    assert!(
        !m.contains(r#"promo_break_glass_admissions_total{namespace="locked"}"#),
        "{m}"
    );
    stop_serve(sidecar);

    let records = query(&db, &["--violation", "admission.break_glass"]);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(
        record["allowed"], false,
        "a break-glass record allows nothing: {record}"
    );
    assert_eq!(record["to"], "prod");
    assert_eq!(
        record["request"]["admission"]["breakGlass"]["ticket"],
        "INC-123"
    );
    assert_eq!(record["request"]["admission"]["namespace"], "shop");
    verify(&db).code(0);
}

#[test]
fn break_glass_without_an_audit_log_is_not_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "a.yaml", "breakGlass: {allowed: true}\n");
    let sidecar = serve(&config, &[]);
    let base = sidecar.base.clone();
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop", &[UNPINNED], break_glass("x", "INC-9")),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(text(&r).contains("needs an audit log"), "{r}");
    stop_serve(sidecar);
}

#[test]
fn warn_admits_with_warnings_naming_the_violation_and_a_stricter_route_wins() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "a.json", r#"{"mode": "warn"}"#);
    let sidecar = serve(&config, &[]);
    let base = sidecar.base.clone();
    let unpinned = deployment("shop", &[UNPINNED], json!({}));
    let r = admit(&base, "/v1/admission", &unpinned);
    assert_eq!(r["allowed"], true, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert!(warnings[0].as_str().unwrap().contains("warn mode"), "{r}");
    assert!(
        text(&r["warnings"]).contains(UNPINNED) && text(&r["warnings"]).contains("pin it as"),
        "{r}"
    );
    assert!(
        warnings
            .iter()
            .all(|w| w.as_str().unwrap().chars().count() <= 256),
        "{r}"
    );
    assert_eq!(r["auditAnnotations"]["mode"], "warn");
    // The route can tighten the config, never loosen it.
    let r = admit(&base, "/v1/admission/enforce", &unpinned);
    assert_eq!(r["allowed"], false, "{r}");
    assert_eq!(r["auditAnnotations"]["mode"], "enforce");
    let r = admit(&base, "/v1/admission/dry-run", &unpinned);
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["auditAnnotations"]["mode"], "warn", "{r}");
    // An unknown mode is an error, never a weaker mode.
    let e = ureq::post(&format!("{base}/v1/admission/audit")).send_json(unpinned.clone());
    match e {
        Err(ureq::Error::Status(400, resp)) => {
            let body = resp.into_string().unwrap();
            assert!(body.contains("unknown admission mode `audit`"), "{body}");
        }
        other => panic!("expected a 400, got {other:?}"),
    }
    stop_serve(sidecar);
}

#[test]
fn dry_run_admits_silently_and_counts_and_audits_what_enforce_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(
        dir.path(),
        "a.yaml",
        "mode: dry-run\nnamespaces: [{name: team-*}]\n",
    );
    let db = dir.path().join("audit.db");
    let sidecar = serve(&config, &["--audit".as_ref(), db.as_os_str()]);
    let base = sidecar.base.clone();
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("team-a", &[UNPINNED], json!({})),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(r.get("warnings").is_none(), "dry-run is silent: {r}");
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop", &[UNPINNED], json!({})),
    );
    assert_eq!(r["allowed"], true, "{r}");
    // A clean pass is no would-be denial.
    let good = deployment(
        "shop",
        &[&pinned_image()],
        annotations(&[allowed_envelope()]),
    );
    assert_eq!(admit(&base, "/v1/admission", &good)["allowed"], true);
    // Kubernetes' own dry run has no side effects.
    let mut k8s_dry = deployment("shop", &[UNPINNED], json!({}));
    k8s_dry["request"]["dryRun"] = json!(true);
    assert_eq!(admit(&base, "/v1/admission", &k8s_dry)["allowed"], true);
    // The enforce route overrides a dry-run config.
    let r = admit(
        &base,
        "/v1/admission/enforce",
        &deployment("shop", &[UNPINNED], json!({})),
    );
    assert_eq!(r["allowed"], false, "{r}");

    let m = metrics(&base);
    assert!(
        m.contains(r#"promo_admission_dry_run_denials_total{namespace="team-*"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(r#"promo_admission_dry_run_denials_total{namespace="other"} 1"#),
        "{m}"
    );
    stop_serve(sidecar);
    let records = query(&db, &["--violation", "admission.dry_run"]);
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(records.iter().all(|r| r["allowed"] == false));
    assert!(
        text(&records[0]).contains("is not pinned by digest"),
        "{}",
        records[0]
    );
    verify(&db).code(0);
}

#[test]
fn a_signer_threshold_and_allowed_bundle_digests_are_enforced() {
    let envelope = allowed_envelope();
    let statement = crate::support::statement_of(&envelope);
    let bundle = statement["predicate"]["policy"]["digest"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let good = deployment("shop", &[&pinned_image()], annotations(&[envelope]));
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "decisions: {threshold: 2}",
            Some("the admission config asks for 2"),
        ),
        (
            &*format!(
                "decisions: {{allowedBundleDigests: ['sha256:{}']}}",
                "0".repeat(64)
            ),
            Some("not among the allowed bundle digests"),
        ),
        (
            &*format!("decisions: {{threshold: 1, allowedBundleDigests: ['{bundle}']}}"),
            None,
        ),
    ];
    for (i, (yaml, refusal)) in cases.iter().enumerate() {
        let config = write(dir.path(), &format!("c{i}.yaml"), yaml);
        let sidecar = serve(&config, &[]);
        let base = sidecar.base.clone();
        let r = admit(&base, "/v1/admission", &good);
        match refusal {
            Some(needle) => {
                assert_eq!(r["allowed"], false, "{yaml}: {r}");
                assert!(text(&r).contains(needle), "{yaml}: {r}");
            }
            None => {
                assert_eq!(r["allowed"], true, "{yaml}: {r}");
                assert!(
                    text(&r["auditAnnotations"]["images"]).contains("allowed by decision"),
                    "{r}"
                );
            }
        }
        stop_serve(sidecar);
    }
}

#[test]
fn a_bad_admission_config_stops_serve_with_exit_2_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, needle) in [
        (
            "namespaces: [{name: shop, breakglass: {allowed: true}}]",
            "unknown field `breakglass`",
        ),
        ("mode: audit", "unknown variant `audit`"),
        ("decisions: {threshold: 0}", "decisions.threshold"),
    ] {
        let config = write(dir.path(), "bad.yaml", yaml);
        let a = bin()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--environment",
                "prod",
                "--admission-config",
            ])
            .arg(&config)
            .assert()
            .code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(
            err.contains("admission config") && err.contains(needle),
            "{yaml}: {err}"
        );
    }
}

#[test]
fn a_bad_config_on_reload_keeps_the_last_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write(dir.path(), "a.yaml", "mode: warn\n");
    let sidecar = serve(&config, &[]);
    let base = sidecar.base.clone();
    let unpinned = deployment("shop", &[UNPINNED], json!({}));
    assert_eq!(admit(&base, "/v1/admission", &unpinned)["allowed"], true);
    write(
        dir.path(),
        "a.yaml",
        "mode: warn\nnamespaces: [{nmae: shop}]\n",
    );
    std::process::Command::new("kill")
        .args(["-HUP", &sidecar.id().to_string()])
        .status()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        let h: Value = ureq::get(&format!("{base}/health"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if h.get("reload").is_some() || std::time::Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        text(&health["reload"]["error"]).contains("unknown field `nmae`"),
        "{health}"
    );
    let r = admit(&base, "/v1/admission", &unpinned);
    assert_eq!(
        r["allowed"], true,
        "the last good config (warn) still serves: {r}"
    );
    stop_serve(sidecar);
}

/// The allowed dev -> staging baseline, for the same artifact as the prod baseline.
const STAGING_ALLOWED: &str = "corpus/cases/staging-allow-baseline/request.json";

/// A `--decisions` directory holding one signed decision that allowed the pinned image
/// into staging (and nothing into prod).
fn staging_decisions(dir: &Path) -> std::path::PathBuf {
    let request: Value = serde_json::from_slice(&std::fs::read(STAGING_ALLOWED).unwrap()).unwrap();
    let envelope = crate::server::envelope_for(&request);
    let statement = crate::support::statement_of(&envelope);
    assert_eq!(statement["predicate"]["to"], "staging");
    assert_eq!(statement["predicate"]["allowed"], true);
    let decisions = dir.join("decisions");
    write(&decisions, "staging.json", envelope.to_string());
    decisions
}

/// `serve --at AT --watch-interval 0 --admission-config CONFIG --decisions DIR EXTRA...`,
/// with no `--environment`: every environment comes from the config.
fn serve_envs(config: &Path, decisions: &Path, extra: &[&std::ffi::OsStr]) -> Sidecar {
    let mut args: Vec<std::ffi::OsString> = ["--at", AT, "--watch-interval", "0"]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(["--admission-config".into(), config.into()]);
    args.extend(["--decisions".into(), decisions.into()]);
    args.extend(extra.iter().map(Into::into));
    spawn_serve(args)
}

#[test]
fn each_namespace_is_admitted_against_its_own_environment() {
    let dir = tempfile::tempdir().unwrap();
    let decisions = staging_decisions(dir.path());
    let config = write(
        dir.path(),
        "admission.yaml",
        "namespaces:\n  - name: shop-staging\n    environment: staging\n  - name: shop-prod\n    environment: prod\n  - name: canary\n    environment: staging\n    mode: dry-run\n",
    );
    let db = dir.path().join("audit.db");
    let sidecar = serve_envs(&config, &decisions, &["--audit".as_ref(), db.as_os_str()]);
    let base = sidecar.base.clone();
    let image = pinned_image();

    // The staging decision admits the digest where the namespace's environment is staging...
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop-staging", &[&image], json!({})),
    );
    assert_eq!(r["allowed"], true, "{r}");
    assert!(
        text(&r["auditAnnotations"]["images"]).contains("allowed by decision"),
        "{r}"
    );
    // ...and not where it is prod, saying so.
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop-prod", &[&image], json!({})),
    );
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(message.contains("for environment `prod`"), "{message}");
    assert!(message.contains("into `prod`"), "{message}");
    // The staging decision presented in the annotation does not count in prod either.
    let request: Value = serde_json::from_slice(&std::fs::read(STAGING_ALLOWED).unwrap()).unwrap();
    let annotated = annotations(&[crate::server::envelope_for(&request)]);
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop-prod", &[&image], annotated),
    );
    assert_eq!(r["allowed"], false, "{r}");
    assert!(text(&r).contains("into `staging`, not `prod`"), "{r}");
    // No rule, no default, no --environment: refused, saying how to configure one.
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("elsewhere", &[&image], json!({})),
    );
    assert_eq!(r["allowed"], false, "{r}");
    let message = r["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("no environment is configured for namespace `elsewhere`")
            && message.contains("`--environment`"),
        "{message}"
    );
    // A dry-run admission is recorded against the environment it was judged in.
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("canary", &[UNPINNED], json!({})),
    );
    assert_eq!(r["allowed"], true, "{r}");

    let m = metrics(&base);
    for line in [
        r#"promo_decisions_total{route="admission",result="allow",environment="staging"} 2"#,
        r#"promo_decisions_total{route="admission",result="deny",environment="prod"} 2"#,
        r#"promo_decisions_total{route="admission",result="deny",environment="none"} 1"#,
    ] {
        assert!(m.contains(line), "{line}\n{m}");
    }
    stop_serve(sidecar);
    let records = query(&db, &["--violation", "admission.dry_run"]);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["to"], "staging");
    assert_eq!(records[0]["request"]["admission"]["environment"], "staging");
    verify(&db).code(0);
}

#[test]
fn an_environment_the_bundle_does_not_configure_stops_serve_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    for (yaml, flag, needle) in [
        (
            Some("namespaces: [{name: shop, environment: prod}, {name: qa, environment: qa}]"),
            None,
            "`namespaces[1].environment`: `qa` is not an environment of the bundle",
        ),
        (
            Some("environment: production"),
            Some("prod"),
            "`environment`: `production` is not an environment of the bundle",
        ),
        (
            None,
            Some("qa"),
            "`--environment`: `qa` is not an environment of the bundle",
        ),
    ] {
        let mut cmd = bin();
        cmd.args(["serve", "--addr", "127.0.0.1:0"]);
        if let Some(yaml) = yaml {
            let config = write(dir.path(), "envs.yaml", yaml);
            cmd.arg("--admission-config").arg(config);
        }
        if let Some(flag) = flag {
            cmd.args(["--environment", flag]);
        }
        let a = cmd.assert().code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
        assert!(err.contains(needle), "{yaml:?} {flag:?}: {err}");
        assert!(
            err.contains("the bundle configures dev, prod, staging"),
            "{err}"
        );
        if yaml.is_some() {
            assert!(err.contains("admission config"), "{err}");
        }
    }
}

#[test]
fn a_reload_switches_a_namespaces_environment_and_a_bad_one_keeps_the_last_good() {
    let dir = tempfile::tempdir().unwrap();
    let decisions = staging_decisions(dir.path());
    let config = write(
        dir.path(),
        "admission.yaml",
        "namespaces: [{name: shop, environment: prod}]\n",
    );
    let sidecar = serve_envs(&config, &decisions, &[]);
    let base = sidecar.base.clone();
    let review = deployment("shop", &[&pinned_image()], json!({}));
    let r = admit(&base, "/v1/admission", &review);
    assert_eq!(r["allowed"], false, "{r}");
    assert!(text(&r).contains("for environment `prod`"), "{r}");

    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &sidecar.id().to_string()])
            .status()
            .unwrap()
    };
    let deadline = || std::time::Instant::now() + std::time::Duration::from_secs(30);
    write(
        dir.path(),
        "admission.yaml",
        "namespaces: [{name: shop, environment: staging}]\n",
    );
    hup();
    let until = deadline();
    let r = loop {
        let r = admit(&base, "/v1/admission", &review);
        if r["allowed"] == true || std::time::Instant::now() > until {
            break r;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        r["allowed"], true,
        "the reload did not switch to staging: {r}"
    );

    // An environment the bundle does not know: the reload fails, naming the field, and
    // the last good config and its decision indexes keep serving.
    write(
        dir.path(),
        "admission.yaml",
        "namespaces: [{name: shop, environment: qa}]\n",
    );
    hup();
    let until = deadline();
    let health = loop {
        let h: Value = ureq::get(&format!("{base}/health"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        if h.get("reload").is_some() || std::time::Instant::now() > until {
            break h;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let error = text(&health["reload"]["error"]);
    assert!(
        error.contains("`namespaces[0].environment`: `qa` is not an environment"),
        "{health}"
    );
    let r = admit(&base, "/v1/admission", &review);
    assert_eq!(r["allowed"], true, "the last good config still serves: {r}");
    stop_serve(sidecar);
}

/// A log with one allowed promotion and two admission records (a break-glass and a
/// dry-run) made by the sidecar; its export.
fn log_with_admission_records(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = write(
        dir,
        "admission.yaml",
        "namespaces:\n  - name: shop\n    breakGlass: {allowed: true}\n  - name: team-a\n    mode: dry-run\n",
    );
    let db = dir.join("audit.db");
    let sidecar = serve(&config, &["--audit".as_ref(), db.as_os_str()]);
    let base = sidecar.base.clone();
    let request: Value =
        serde_json::from_slice(&std::fs::read(crate::support::ALLOWED).unwrap()).unwrap();
    let signed: Value = ureq::post(&format!("{base}/v1/promotions/evaluate"))
        .send_json(request)
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(signed["decision"]["allowed"], true);
    let glass = break_glass("checkout is down", "INC-7");
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("shop", &[UNPINNED], glass),
    );
    assert_eq!(r["allowed"], true, "{r}");
    let r = admit(
        &base,
        "/v1/admission",
        &deployment("team-a", &[UNPINNED], json!({})),
    );
    assert_eq!(r["allowed"], true, "{r}");
    stop_serve(sidecar);
    let export = dir.join("export.jsonl");
    bin()
        .args(["audit", "export"])
        .arg(&db)
        .arg("--out")
        .arg(&export)
        .assert()
        .code(0);
    (db, export)
}

#[test]
fn admission_records_are_never_replayed_or_counted_as_promotions() {
    let dir = tempfile::tempdir().unwrap();
    let (db, export) = log_with_admission_records(dir.path());
    verify(&db).code(0);
    verify(&export).code(0);
    assert_eq!(
        query(&db, &[]).len(),
        3,
        "they stay in the log and the export"
    );

    // eval --batch: one result per line; the admission records are skipped rows that
    // allow nothing, neither denials nor invalid, so the replay exits 0.
    let a = bin()
        .args(["eval", "--batch"])
        .arg(&export)
        .args(["--summary-json"])
        .arg(dir.path().join("summary.json"))
        .assert()
        .code(0);
    let out = String::from_utf8_lossy(&a.get_output().stdout).to_string();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["allowed"], true, "{}", lines[0]);
    for line in &lines[1..] {
        assert_eq!(line["allowed"], false, "{line}");
        assert_eq!(line["skipped"]["id"], "audit.admission_record", "{line}");
        assert!(
            line.get("decision").is_none() && line.get("error").is_none(),
            "{line}"
        );
    }
    let summary: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        (
            &summary["allowed"],
            &summary["denied"],
            &summary["invalid"],
            &summary["admissionRecords"]
        ),
        (&json!(1), &json!(0), &json!(0), &json!(2)),
        "{summary}"
    );
    let err = String::from_utf8_lossy(&a.get_output().stderr).to_string();
    assert!(err.contains("2 admission records skipped"), "{err}");

    // diff: neither a change nor an error row.
    let a = bin()
        .args(["diff", "--base", "policies", "--format", "json"])
        .arg(&export)
        .assert()
        .code(0);
    let diff: Value = serde_json::from_slice(&a.get_output().stdout).unwrap();
    assert_eq!(diff["summary"]["evaluated"], 1, "{diff}");
    assert_eq!(diff["summary"]["errors"], 0, "{diff}");
    assert_eq!(diff["summary"]["admissionRecords"], 2, "{diff}");
    assert_eq!(diff["errors"], json!([]), "{diff}");

    // report: one promotion attempt, allowed; the admission records in no metric.
    let out = bin()
        .arg("report")
        .arg(&db)
        .args(["--format", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["admissionRecords"], 2, "{report}");
    assert_eq!(report["summary"]["attempts"], 1, "{}", report["summary"]);
    assert_eq!(
        report["summary"]["successRate"], 1.0,
        "{}",
        report["summary"]
    );
    assert_eq!(
        report["completeness"]["records"], 1,
        "{}",
        report["completeness"]
    );
    assert_eq!(report["blockers"], json!([]), "{}", report["blockers"]);
    let text = bin().arg("report").arg(&db).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    assert!(
        text.contains("2 admission records (break-glass, dry-run) are not promotions"),
        "{text}"
    );
}

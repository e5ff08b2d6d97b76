//! Every corpus case through the real engine: its decision must match the case's own
//! `expect` and the reviewed insta snapshot in `corpus/snapshots/`.

use promo_policy::testing::{
    evaluate_case, evaluate_case_with, load_cases, read_attestation_sources,
    sign_attestation_sources, Expectation,
};
use promo_policy::{Engine, EngineConfig};

/// A case's decision. On a loaded machine (CI's two cores running every test at once) a
/// plugin can miss its 100 ms wall-time budget, which is a `plugin.timeout` deny: the
/// corpus is about policy, so such a case runs again (at most twice more) and must then
/// match. A plugin that always times out still fails.
fn evaluate_unhurried(
    engine: &std::sync::Arc<Engine>,
    case: &promo_policy::testing::Case,
) -> promo_policy::decision::Decision {
    let mut tries = 0;
    loop {
        let d = evaluate_case(engine, case).unwrap_or_else(|e| panic!("case `{}`: {e}", case.name));
        tries += 1;
        if tries == 3 || !d.violations.iter().any(|v| v.id == "plugin.timeout") {
            return d;
        }
    }
}

#[test]
fn corpus_cases_match_expectations_and_snapshots() {
    // Relative paths, so decisions (policy.uri) are the same on every machine;
    // cargo runs integration tests from the package root.
    let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
    let cases = load_cases("corpus/cases".as_ref()).unwrap();
    assert!(
        cases.len() >= 40,
        "the corpus must hold at least 40 cases, found {}",
        cases.len()
    );
    let mut mismatches = Vec::new();
    for case in &cases {
        let decision = evaluate_unhurried(&engine, case);
        let want = case
            .spec
            .expect
            .clone()
            .unwrap_or_else(|| panic!("case `{}` has no expect", case.name));
        let got = Expectation::of(&decision);
        if got != want {
            mismatches.push(format!("{}: expected {want:?}, got {got:?}", case.name));
        }
        insta::with_settings!({
            snapshot_path => "../corpus/snapshots",
            prepend_module_to_snapshot => false,
            description => case.spec.description.clone(),
            omit_expression => true,
        }, {
            // The decision id is random by design, the bundle digest moves with any
            // policy edit, and a C plugin's module digest with the compiler that built
            // it; everything else must hold still.
            insta::assert_json_snapshot!(case.name.clone(), decision, {
                ".decisionId" => "[uuid]",
                ".policy.digest.sha256" => "[bundle-digest]",
                ".plugins[].digest.sha256" => "[module-digest]",
            });
        });
    }
    assert!(
        mismatches.is_empty(),
        "cases whose decision differs from case.json:\n{}",
        mismatches.join("\n")
    );
}

/// Decisions run on regorus's register VM; the interpreter runs the Rego tests and
/// coverage. Both must decide every corpus case identically, messages and facts included.
#[test]
fn the_vm_and_the_interpreter_decide_every_case_alike() {
    let engine = Engine::load(&EngineConfig::with_policies("policies")).unwrap();
    assert_eq!(
        engine.bundle().vm_status(),
        Ok(()),
        "the default bundle runs on the VM"
    );
    let mut vm = engine.evaluator();
    let mut interpreter = engine.evaluator();
    interpreter.use_interpreter(true);
    assert!(vm.uses_vm() && !interpreter.uses_vm());
    let strip = |mut d: promo_policy::Decision| {
        d.decision_id.clear();
        serde_json::to_value(d).unwrap()
    };
    for case in load_cases("corpus/cases".as_ref()).unwrap() {
        let a = strip(evaluate_case_with(&mut vm, &case).unwrap());
        let b = strip(evaluate_case_with(&mut interpreter, &case).unwrap());
        assert_eq!(a, b, "case `{}` decided differently", case.name);
        // The Data API's `promo/decision` (VM) and any other path (interpreter) agree too.
        let request = promo_policy::PromotionRequest::from_slice(
            &std::fs::read(case.dir.join("request.json")).unwrap(),
        )
        .unwrap();
        let at = promo_policy::input::parse_time(&case.spec.at).unwrap();
        let on_vm = vm.query_data(&request, at, "promo/decision").unwrap();
        let on_interpreter = interpreter
            .query_data(&request, at, "promo/decision")
            .unwrap();
        assert_eq!(
            on_vm, on_interpreter,
            "case `{}`: Data API differs",
            case.name
        );
    }
}

#[test]
fn every_violation_id_is_shown_both_ways() {
    // Each id of the default bundle must be produced by at least one case, and the
    // rule family it belongs to must have at least one allowed case.
    let ids = [
        "path.skipped_environment",
        "path.unknown_environment",
        "approvals.min_count",
        "approvals.self_approval",
        "approvals.stale",
        "approvals.rejected",
        "slo.fast_burn",
        "slo.slow_burn",
        "slo.budget_exhausted",
        "slo.inconclusive",
        "freeze.active",
        "freeze.break_glass",
        "soak.too_short",
        "checks.missing",
        "checks.failed",
        "digest.unpinned",
        "provenance.missing",
        "provenance.digest_mismatch",
        "provenance.untrusted_builder",
        "provenance.source_not_allowed",
        "attestation.invalid",
    ];
    let cases = load_cases("corpus/cases".as_ref()).unwrap();
    for id in ids {
        let shown = cases.iter().any(|c| {
            let e = c.spec.expect.as_ref().unwrap();
            e.deny.iter().chain(&e.warn).any(|d| d == id)
        });
        assert!(shown, "no corpus case produces `{id}`");
        let family = id.split('.').next().unwrap();
        let allowed = cases.iter().any(|c| {
            let e = c.spec.expect.as_ref().unwrap();
            e.allowed && c.name.starts_with(family)
        });
        assert!(
            allowed,
            "no allowed corpus case named `{family}-*` exercises the passing side of `{id}`"
        );
    }
}

#[test]
fn signed_envelopes_match_their_readable_sources() {
    // A reviewer reads attestations.src.json; this proves request.json carries exactly
    // those statements, signed as stated (run `cargo run --example sign_corpus`).
    let mut checked = 0;
    for case in load_cases("corpus/cases".as_ref()).unwrap() {
        let Some(sources) = read_attestation_sources(&case.dir).unwrap() else {
            continue;
        };
        let envelopes = sign_attestation_sources(&sources, "corpus/keys".as_ref()).unwrap();
        let request: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.dir.join("request.json")).unwrap()).unwrap();
        assert_eq!(
            request["attestations"],
            serde_json::Value::Array(envelopes),
            "case `{}`: request.json is out of date with attestations.src.json; run `cargo run --example sign_corpus`",
            case.name
        );
        checked += 1;
    }
    assert!(
        checked >= 50,
        "expected most cases to carry signed provenance, found {checked}"
    );
}

/// A request at the schema's maxima (256 approvals, 1 024 checks), every extra entry
/// as valid as the baseline's, is decided as the baseline is, alike on both engines.
/// regorus's default VM instruction limit (25 000) once turned 100 approvals into a
/// `policy.error` denial that the interpreter did not make.
#[test]
fn a_request_at_the_schema_maxima_is_decided_on_its_merits_on_both_engines() {
    let engine = Engine::load(&EngineConfig {
        // Plugins are not what this is about, and a loaded machine can time them out.
        plugins: "no-plugins-here".into(),
        ..EngineConfig::with_policies("policies")
    })
    .unwrap();
    let baseline_path = "corpus/cases/prod-allow-baseline/request.json";
    let mut request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(baseline_path).unwrap()).unwrap();
    let approval = request["approvals"][0].clone();
    let approvals: Vec<serde_json::Value> = (0..256)
        .map(|i| {
            let mut a = approval.clone();
            a["approver"] = format!("approver-{i}").into();
            a
        })
        .collect();
    request["approvals"] = approvals.into();
    let checks = request["checks"].as_array_mut().unwrap();
    let check = checks[0].clone();
    while checks.len() < 1024 {
        let mut c = check.clone();
        c["name"] = format!("extra-check-{}", checks.len()).into();
        checks.push(c);
    }
    let at = promo_policy::input::parse_time("2026-11-26T18:00:00Z").unwrap();
    let ids = |d: &promo_policy::Decision| {
        let mut ids: Vec<String> = d.violations.iter().map(|v| v.id.clone()).collect();
        ids.sort();
        ids
    };
    let mut vm = engine.evaluator();
    let mut interpreter = engine.evaluator();
    interpreter.use_interpreter(true);
    let baseline = vm
        .evaluate_bytes(&std::fs::read(baseline_path).unwrap(), at)
        .unwrap()
        .decision;
    let bytes = serde_json::to_vec(&request).unwrap();
    let on_vm = vm.evaluate_bytes(&bytes, at).unwrap().decision;
    let on_interpreter = interpreter.evaluate_bytes(&bytes, at).unwrap().decision;
    assert_eq!(
        (on_vm.allowed, ids(&on_vm)),
        (baseline.allowed, ids(&baseline)),
        "the VM decided the maximal request otherwise than the baseline: {:?}",
        on_vm.violations
    );
    assert_eq!(
        (on_interpreter.allowed, ids(&on_interpreter)),
        (baseline.allowed, ids(&baseline)),
        "the interpreter decided the maximal request otherwise than the baseline: {:?}",
        on_interpreter.violations
    );
}

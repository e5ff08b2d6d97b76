//! Checks a bundle's `data.promo.config` at load against the config schema and the rule
//! that every environment in `order` has its settings, naming the data file and pointer.
//!
//! A gate whose setting is missing does not fire, and a request the gates never looked at
//! is allowed: so a config that leaves a setting out is refused here, before any decision.

use std::sync::OnceLock;

use serde_json::Value;

use super::PolicyError;

const SCHEMA_JSON: &str = include_str!("../schema/config.v1.json");

/// The compiled config schema, built once per process.
fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| crate::request::compile_schema(SCHEMA_JSON))
        .as_ref()
        .map_err(|e| format!("the shipped config schema does not compile: {e}"))
}

/// Checks the merged `data` of a bundle. `files` are the data files as mounted, to name
/// the one that holds `promo.config`. A bundle without `promo.config` passes: its rules
/// read no settings (the shipped rules deny `path.unknown_environment` without one).
pub fn check(data: &Value, files: &[(String, Value)]) -> Result<(), PolicyError> {
    let Some(config) = data.pointer("/promo/config") else {
        return Ok(());
    };
    let file = files
        .iter()
        .find(|(_, v)| v.pointer("/promo/config").is_some())
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| "data".into());
    let fail = |pointer: &str, reason: String| PolicyError::Data {
        path: file.clone(),
        reason: format!("`data.promo.config` at `{pointer}`: {reason}"),
    };
    let validator = validator().map_err(|e| fail("", e))?;
    let errors: Vec<_> = validator.iter_errors(config).collect();
    if let Some(first) = errors.first() {
        let more = errors.len() - 1;
        let pointer = first.instance_path().to_string();
        let mut reason = first.to_string();
        if more > 0 {
            reason.push_str(&format!(" (and {more} more)"));
        }
        return Err(fail(
            if pointer.is_empty() { "/" } else { &pointer },
            reason,
        ));
    }
    // The schema cannot relate one value to another: `order` names the environments, and
    // each must have its block, with nothing renamed or cased differently beside them.
    let order: Vec<&str> = config["order"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let environments = config["environments"].as_object();
    for env in &order {
        if !environments.is_some_and(|m| m.contains_key(*env)) {
            return Err(fail(
                "/environments",
                format!("`{env}` is in /order but has no settings block here; every gate would be silent for it"),
            ));
        }
    }
    for name in environments.into_iter().flat_map(|m| m.keys()) {
        if !order.contains(&name.as_str()) {
            return Err(fail(
                &format!("/environments/{name}"),
                format!(
                    "`{name}` is not in /order ({}); a block for an environment nobody can promote to is a typo or a rename",
                    order.join(" -> ")
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    fn shipped() -> Value {
        serde_json::from_str(&std::fs::read_to_string("policies/data.json").unwrap()).unwrap()
    }

    fn err(data: &Value) -> String {
        check(data, &[("data.json".into(), data.clone())])
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_shipped_config_passes_and_no_config_passes() {
        let data = shipped();
        check(&data, &[]).unwrap();
        check(&serde_json::json!({"other": 1}), &[]).unwrap();
    }

    #[test]
    fn a_target_block_missing_empty_renamed_or_recased_is_refused_with_its_pointer() {
        let env = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
            let mut data = shipped();
            f(data["promo"]["config"]["environments"]
                .as_object_mut()
                .unwrap());
            err(&data)
        };
        let missing = env(&|m| {
            m.remove("prod");
        });
        assert!(
            missing.starts_with("data file `data.json`: `data.promo.config` at `/environments`: `prod` is in /order"),
            "{missing}"
        );
        let empty = env(&|m| {
            m.insert("prod".into(), serde_json::json!({}));
        });
        assert!(empty.contains("at `/environments/prod`"), "{empty}");
        assert!(
            empty.contains("\"approvals\" is a required property"),
            "{empty}"
        );
        let recased = env(&|m| {
            let p = m.remove("prod").unwrap();
            m.insert("Prod".into(), p);
        });
        assert!(recased.contains("/environments"), "{recased}");
        let renamed = env(&|m| {
            let p = m.remove("prod").unwrap();
            m.insert("production".into(), p);
        });
        assert!(renamed.contains("`prod` is in /order"), "{renamed}");
    }

    #[test]
    fn every_gate_setting_is_required_and_typed() {
        for (block, key) in [
            ("approvals", "minCount"),
            ("approvals", "maxAgeHours"),
            ("approvals", "requiredRoles"),
            ("slo", "fastBurn"),
            ("freeze", "windows"),
            ("soak", "minHours"),
            ("checks", "required"),
            ("provenance", "builders"),
            ("attestations", "denyInvalid"),
        ] {
            let mut data = shipped();
            let b = &mut data["promo"]["config"]["environments"]["prod"][block];
            b.as_object_mut().unwrap().remove(key);
            let e = err(&data);
            assert!(
                e.contains(&format!("at `/environments/prod/{block}`")) && e.contains(key),
                "{block}.{key}: {e}"
            );
            let mut data = shipped();
            data["promo"]["config"]["environments"]["prod"][block][key] = "2".into();
            let e = err(&data);
            assert!(
                e.contains(&format!("/environments/prod/{block}/{key}")),
                "{block}.{key}: {e}"
            );
        }
        let mut data = shipped();
        data["promo"]["config"]["environments"]["prod"]["approvals"]["minCuont"] = 2.into();
        assert!(err(&data).contains("minCuont"), "a typo is refused");
        let mut data = shipped();
        data["promo"]["config"]["environments"]["prod"]["freeze"]["windows"][0]["start"] =
            "2026-12-32T00:00:00Z".into();
        assert!(err(&data).contains("/freeze/windows/0/start"));
    }
}

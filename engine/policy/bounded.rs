//! Bounded replacements for the builtins whose output size the policy picks with one
//! number (`numbers.range`, `numbers.range_step`), so a limit holds inside them.
//!
//! regorus checks its time limit between expressions, never inside a builtin, and
//! `numbers.range(1, 1e10)` allocates its whole array up front: one call can outlast the
//! limit by seconds and take gigabytes, or abort the process on a failed allocation.
//! These versions refuse more than [`MAX_RANGE_ELEMENTS`] numbers with an error (the
//! decision is `policy.error`), and otherwise answer exactly as regorus's non-strict
//! builtins do (a non-integer bound or a step that is not a positive integer is
//! undefined). A bundle that calls them runs on the interpreter, where they are installed.

use regorus::Value;

/// Most numbers one range may hold: a promotion policy counts approvals and checks,
/// not millions of anything; 100 000 numbers is ~3 MB and under a millisecond.
pub const MAX_RANGE_ELEMENTS: u64 = 100_000;

/// The builtins replaced here, with their arity.
pub const BOUNDED_BUILTINS: &[(&str, u8)] = &[("numbers.range", 2), ("numbers.range_step", 3)];

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) if n.is_integer() => n.as_i64(),
        _ => None,
    }
}

/// `numbers.range_step(from, to, step)`; `numbers.range` is the step-1 case.
pub fn range(name: &str, args: &[Value]) -> anyhow::Result<Value> {
    let (Some(from), Some(to)) = (args.first().and_then(int), args.get(1).and_then(int)) else {
        return Ok(Value::Undefined);
    };
    let step = match args.get(2) {
        None => 1,
        Some(v) => match int(v) {
            Some(s) if s > 0 => s,
            _ => return Ok(Value::Undefined),
        },
    };
    let span = (i128::from(to) - i128::from(from)).unsigned_abs();
    let count = span / step as u128 + 1;
    if count > u128::from(MAX_RANGE_ELEMENTS) {
        anyhow::bail!(
            "`{name}({from}, {to}{})` would make {count} numbers; the limit is {MAX_RANGE_ELEMENTS}",
            if args.len() > 2 {
                format!(", {step}")
            } else {
                String::new()
            }
        );
    }
    let dir: i64 = if to >= from { 1 } else { -1 };
    // INVARIANT: every value lies between `from` and `to`, so nothing overflows.
    let values: Vec<Value> = (0..count as i64)
        .map(|i| Value::from(from + dir * i * step))
        .collect();
    Ok(Value::from(values))
}

/// Installs the bounded versions on an interpreter engine (extensions resolve before
/// builtins there).
pub fn install(engine: &mut regorus::Engine) -> anyhow::Result<()> {
    for (name, arity) in BOUNDED_BUILTINS {
        engine.add_extension(
            (*name).to_string(),
            *arity,
            Box::new(move |args: Vec<Value>| range(name, &args)),
        )?;
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

    fn eval(q: &str) -> anyhow::Result<Value> {
        let mut e = regorus::Engine::new();
        e.set_strict_builtin_errors(false);
        install(&mut e).unwrap();
        e.add_policy("t.rego".into(), format!("package t\nx := {q}\n"))?;
        e.eval_rule("data.t.x".into())
    }

    fn json(v: anyhow::Result<Value>) -> serde_json::Value {
        serde_json::to_value(v.unwrap()).unwrap()
    }

    #[test]
    fn answers_like_opa_within_the_limit() {
        assert_eq!(
            json(eval("numbers.range(1, 4)")),
            serde_json::json!([1, 2, 3, 4])
        );
        assert_eq!(
            json(eval("numbers.range(2, -1)")),
            serde_json::json!([2, 1, 0, -1])
        );
        assert_eq!(json(eval("numbers.range(3, 3)")), serde_json::json!([3]));
        assert_eq!(
            json(eval("numbers.range_step(0, 10, 4)")),
            serde_json::json!([0, 4, 8])
        );
        assert_eq!(
            json(eval("numbers.range_step(10, 0, 4)")),
            serde_json::json!([10, 6, 2])
        );
        let n = json(eval(&format!(
            "count(numbers.range(1, {MAX_RANGE_ELEMENTS}))"
        )));
        assert_eq!(n, serde_json::json!(MAX_RANGE_ELEMENTS));
    }

    #[test]
    fn non_integers_and_bad_steps_are_undefined_not_a_panic() {
        for q in [
            "numbers.range(1.5, 4)",
            "numbers.range(\"1\", 4)",
            "numbers.range_step(1, 4, 0)",
            "numbers.range_step(1, 4, -1)",
            "numbers.range_step(1, 4, 0.5)",
        ] {
            assert!(matches!(eval(q), Ok(Value::Undefined)), "{q}");
        }
    }

    #[test]
    fn past_the_limit_is_an_error_naming_the_call_without_allocating() {
        for q in [
            format!("numbers.range(0, {MAX_RANGE_ELEMENTS})"),
            "numbers.range(1, 10000000000)".into(),
            "numbers.range(-9223372036854775807, 9223372036854775807)".into(),
            "numbers.range_step(0, 9223372036854775807, 2)".into(),
        ] {
            let err = eval(&q).unwrap_err().to_string();
            assert!(err.contains("the limit is 100000"), "{q}: {err}");
        }
    }
}

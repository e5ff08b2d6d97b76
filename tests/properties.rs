//! Property tests over hostile input (issue 12): random bytes and random mutations of valid
//! documents into every parser a client or a bundle author reaches, and the fail-closed
//! invariants that must hold for each. Run longer with `PROPTEST_CASES=N` (see
//! `fuzz/run.sh`); a failing case is shrunk and saved under `tests/properties.proptest-regressions`.

use std::path::Path;
use std::sync::OnceLock;

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::Value;

use crate::support::{ALLOWED, AT};
use promo_policy::attest::{Envelope, TrustStore};
use promo_policy::{Engine, EngineConfig, PromotionRequest};

fn engine() -> &'static std::sync::Arc<Engine> {
    static ENGINE: OnceLock<std::sync::Arc<Engine>> = OnceLock::new();
    ENGINE.get_or_init(|| Engine::load(&EngineConfig::with_policies("policies")).unwrap())
}

fn baseline() -> &'static Value {
    static REQUEST: OnceLock<Value> = OnceLock::new();
    REQUEST.get_or_init(|| serde_json::from_slice(&std::fs::read(ALLOWED).unwrap()).unwrap())
}

fn allowed(request: &Value) -> Option<bool> {
    let request = PromotionRequest::from_slice(request.to_string().as_bytes()).ok()?;
    let now = promo_policy::input::parse_time(AT).unwrap();
    Some(
        engine()
            .evaluator()
            .evaluate(&request, now)
            .decision
            .allowed,
    )
}

/// Valid JSON documents of any shape, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A mutation of a byte string: flip, insert, delete or truncate at a position.
fn mutate(bytes: &[u8], op: u8, at: usize, byte: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if out.is_empty() {
        return vec![byte];
    }
    let i = at % out.len();
    match op % 4 {
        0 => out[i] ^= byte.max(1),
        1 => out.insert(i, byte),
        2 => {
            out.remove(i);
        }
        _ => out.truncate(i),
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The request parser and schema never panic, on bytes or on mutated valid requests.
    #[test]
    fn request_parser_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512),
                                   op: u8, at: usize, byte: u8) {
        let _ = PromotionRequest::from_slice(&bytes);
        let valid = baseline().to_string();
        let _ = PromotionRequest::from_slice(&mutate(valid.as_bytes(), op, at, byte));
    }

    /// A request with a random value at a random top-level field is refused or decided,
    /// never a panic; schema-valid ones still get a decision.
    #[test]
    fn any_field_value_is_refused_or_decided(field in prop::sample::select(vec![
        "id", "requestedAt", "artifact", "from", "to", "change", "approvals", "checks",
        "slo", "attestations", "currentVersion", "deployedToSourceAt", "labels",
    ]), value in json_value()) {
        let mut r = baseline().clone();
        r[field] = value;
        let _ = allowed(&r);
    }

    /// DSSE envelopes and statements: random JSON never panics the readers.
    #[test]
    fn envelope_and_statement_readers_never_panic(v in json_value(),
                                                  bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Envelope::from_json(&v);
        let _ = promo_policy::attest::statement::Statement::from_slice(&bytes);
        let _ = promo_policy::attest::statement::Statement::from_slice(v.to_string().as_bytes());
    }

    /// Trust files: random documents are refused with a reason or load; never a panic.
    #[test]
    fn trust_file_reader_never_panics(v in json_value()) {
        let _ = TrustStore::from_json(&v, Path::new("/nonexistent"));
        let wrapped = serde_json::json!({"keys": [v], "threshold": 1});
        let _ = TrustStore::from_json(&wrapped, Path::new("/nonexistent"));
    }

    /// No change to a signed byte of the baseline's attestations (payload or signature,
    /// as decoded) leaves it allowed: a forged or damaged statement never passes as one.
    #[test]
    fn tampering_with_signed_bytes_never_keeps_an_allow(which in 0usize..4, field in 0usize..2,
                                                        op: u8, at: usize, byte: u8) {
        let mut r = baseline().clone();
        let n = r["attestations"].as_array().unwrap().len();
        let env = &mut r["attestations"][which % n];
        let (key, holder) = if field == 0 {
            ("payload", &mut *env)
        } else {
            ("sig", &mut env["signatures"][0])
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let before = b64.decode(holder[key].as_str().unwrap()).unwrap();
        let after = mutate(&before, op, at, byte);
        prop_assume!(after != before);
        holder[key] = b64.encode(&after).into();
        prop_assert_ne!(allowed(&r), Some(true));
    }

    /// Names under any spelling: an approver named like the author never counts.
    #[test]
    fn an_author_never_approves_under_another_spelling(pad in prop::sample::select(vec![
        "\u{200b}", "\u{200d}", "\u{feff}", "\u{a0}", " ", "\u{ad}", "\u{301}", "\u{34f}",
    ]), upper: bool, at in 0usize..4) {
        let mut r = baseline().clone();
        let author = r["change"]["author"].as_str().unwrap().to_string();
        let mut name: String = if upper { author.to_uppercase() } else { author.clone() };
        let cut = name.char_indices().nth(at.min(author.len())).map_or(name.len(), |(i, _)| i);
        name.insert_str(cut, pad);
        r["approvals"][0]["approver"] = name.into();
        prop_assert_ne!(allowed(&r), Some(true), "self-approval passed as someone else");
    }
}

#[test]
fn the_baseline_is_allowed_so_the_properties_mean_something() {
    assert_eq!(allowed(baseline()), Some(true));
}

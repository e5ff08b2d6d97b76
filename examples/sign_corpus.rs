//! Re-sign the corpus: for every case with an `attestations.src.json`, sign its
//! statements with the test keys in `corpus/keys/` and write the envelopes into the
//! case's `request.json` (`attestations`). Run after editing a source:
//! `cargo run --example sign_corpus`. Keyless sources are signed by the test Sigstore
//! instance, whose root it writes to `policies/roots/example-ci-test.json`.

use std::path::Path;

use promo_policy::testing::sigstore::TestSigstore;
use promo_policy::testing::{
    load_cases, read_attestation_sources, sign_attestation_sources, CORPUS_SIGSTORE_SEED,
};

fn main() -> Result<(), String> {
    let keys = Path::new("corpus/keys");
    // The trusted root of the test Sigstore instance keyless sources are signed by.
    let root = TestSigstore::new(CORPUS_SIGSTORE_SEED)?.trusted_root(false);
    let body = serde_json::to_string_pretty(&root).map_err(|e| e.to_string())? + "\n";
    std::fs::write("policies/roots/example-ci-test.json", body).map_err(|e| e.to_string())?;
    let mut changed = 0;
    for case in load_cases(Path::new("corpus/cases"))? {
        let Some(sources) = read_attestation_sources(&case.dir)? else {
            continue;
        };
        let envelopes = sign_attestation_sources(&sources, keys)?;
        let path = case.dir.join("request.json");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let mut request: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if request["attestations"] == serde_json::Value::Array(envelopes.clone()) {
            continue;
        }
        request["attestations"] = envelopes.into();
        let body = serde_json::to_string_pretty(&request).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&path, body).map_err(|e| e.to_string())?;
        println!("signed {}", case.name);
        changed += 1;
    }
    println!("{changed} case(s) re-signed");
    Ok(())
}

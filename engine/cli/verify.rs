//! `promo-policy verify`: check a signed decision's signature and shape, and with
//! `--replay` re-evaluate its request under the current bundle at its recorded time.

use std::path::PathBuf;

use anyhow::Context;
use promo_policy::attest::keys::PublicKey;
use promo_policy::decision::canonical_json;
use promo_policy::digest::DigestSet;
use promo_policy::fsio;
use promo_policy::input::parse_time;
use promo_policy::sign::{
    verify_decision_envelope, DECISION_PREDICATE_TYPE, MAX_DECISION_FILE_BYTES,
};
use promo_policy::testing::Expectation;
use promo_policy::PromotionRequest;

use super::{CommonArgs, Exit};

/// Arguments of `verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The signed decision: a DSSE envelope, or `eval --format json` output (`{"decision","envelope"}`).
    #[arg(value_name = "DECISION.json")]
    decision: PathBuf,
    /// Public key (SPKI PEM) the decision must be signed with [default: the keys the trust file trusts for decisions].
    #[arg(long = "key", value_name = "PUB.pem")]
    public_key: Option<PathBuf>,
    /// Re-evaluate this request at the decision's recorded time and compare outcomes.
    #[arg(long, value_name = "REQUEST.json")]
    replay: Option<PathBuf>,
    /// The attestation files `eval --attestations` added to the request (the same paths,
    /// in the same order), for --replay.
    #[arg(long, value_name = "PATH", requires = "replay")]
    attestations: Vec<PathBuf>,
    /// The bundle for --replay.
    #[arg(long, value_name = "DIR", default_value = "policies")]
    policies: PathBuf,
    /// The plugins for --replay.
    #[arg(long, value_name = "DIR", default_value = "plugins")]
    plugins: PathBuf,
    /// Trust file (decision keys when --key is absent; attestation keys for --replay).
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
}

/// The keys a signed decision must verify with: the `--key` file, or else every key the
/// trust file trusts for decisions (`audit verify` checks its records the same way).
pub(super) fn decision_keys(
    public_key: Option<&std::path::Path>,
    common: &CommonArgs,
) -> anyhow::Result<Vec<PublicKey>> {
    Ok(match public_key {
        Some(path) => {
            let pem = fsio::read_capped_string(path, fsio::MAX_KEY_FILE_BYTES)?;
            vec![PublicKey::from_pem(&pem)
                .with_context(|| format!("`{}` is not a public key", path.display()))?]
        }
        None => {
            // The trust file alone: no bundle needs compiling to read keys.
            let trust = common.engine_config().load_trust()?;
            let keys = trusted_decision_keys(&trust);
            anyhow::ensure!(
                !keys.is_empty(),
                "no --key given and the trust file trusts no key for `{DECISION_PREDICATE_TYPE}`"
            );
            keys
        }
    })
}

/// The keys `trust` trusts to sign promotion decisions.
pub(super) fn trusted_decision_keys(trust: &promo_policy::attest::TrustStore) -> Vec<PublicKey> {
    trust
        .keys()
        .iter()
        .filter(|k| k.grants.trusts_predicate_type(DECISION_PREDICATE_TYPE))
        .map(|k| k.key.clone())
        .collect()
}

pub fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let text = fsio::read_capped_string(&args.decision, MAX_DECISION_FILE_BYTES)?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not JSON", args.decision.display()))?;
    let envelope = doc.get("envelope").unwrap_or(&doc);

    let common = CommonArgs {
        policies: args.policies.clone(),
        plugins: args.plugins.clone(),
        trust: args.trust.clone(),
        key: None,
        interpreter: false,
    };
    let keys = decision_keys(args.public_key.as_deref(), &common)?;
    let decision = match verify_decision_envelope(envelope, &keys) {
        Ok(d) => d,
        Err(e) => {
            println!("INVALID  {e}");
            return Ok(Exit::Deny);
        }
    };
    println!(
        "VALID  decision {} {} {} -> {} ({}) at {}",
        decision.decision_id,
        if decision.allowed {
            "ALLOWED"
        } else {
            "DENIED"
        },
        decision.from,
        decision.to,
        decision.artifact.name,
        decision.evaluated_at
    );

    let Some(replay) = &args.replay else {
        return Ok(Exit::Ok);
    };
    let mut bytes = fsio::read_capped(replay, promo_policy::request::MAX_BODY_BYTES as u64)?;
    if !args.attestations.is_empty() {
        bytes = promo_policy::attest::files::request_with_attestations(&bytes, &args.attestations)
            .with_context(|| format!("cannot add --attestations to `{}`", replay.display()))?;
    }
    let request = PromotionRequest::from_slice(&bytes)
        .with_context(|| format!("invalid request `{}`", replay.display()))?;
    if DigestSet::sha256_of(&canonical_json(&request.raw)) != decision.input_digest {
        println!(
            "MISMATCH  `{}` is not the request this decision was made on (inputDigest differs)",
            replay.display()
        );
        return Ok(Exit::Deny);
    }
    let engine = common.load_engine()?;
    let at = parse_time(&decision.evaluated_at)?;
    let replayed = engine.evaluator().evaluate(&request, at).decision;
    let same_bundle = replayed.policy.digest == decision.policy.digest;
    let (was, now) = (Expectation::of(&decision), Expectation::of(&replayed));
    println!(
        "bundle: {}",
        if same_bundle {
            "same digest as when decided"
        } else {
            "DIFFERENT digest from when decided"
        }
    );
    if was == now {
        println!(
            "REPLAYED  same outcome: allowed={} deny={:?} warn={:?}",
            now.allowed, now.deny, now.warn
        );
        Ok(Exit::Ok)
    } else {
        println!(
            "DIFFERS  recorded allowed={} deny={:?} warn={:?}; replayed allowed={} deny={:?} warn={:?}",
            was.allowed, was.deny, was.warn, now.allowed, now.deny, now.warn
        );
        Ok(Exit::Deny)
    }
}

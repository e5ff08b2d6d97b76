//! The trust store (CONTRACT §2b): which keys may vouch for which predicate types, builders and
//! environments; it must never widen a key's permissions beyond what the file lists, and never
//! accept a file it does not fully understand.
//!
//! Unknown fields are errors here (unlike in attestations): in a trust file a typo such as
//! `enviroments` would otherwise silently mean "every environment".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::digest::Sha256;
use serde_json::{json, Value};

use crate::attest::keyless::{roots_from_json, SubjectMatch, TrustedIdentity};
use crate::attest::keys::PublicKey;
use crate::attest::roots::Root;
use crate::attest::AttestError;

const KEY_FIELDS: &[&str] = &[
    "id",
    "publicKey",
    "publicKeyFile",
    "predicateTypes",
    "builders",
    "environments",
    "approvers",
];
const TOP_FIELDS: &[&str] = &[
    "$schema",
    "keys",
    "threshold",
    "trustedRoots",
    "identities",
    "requireSignedBundle",
];

/// What a signer (a key or a keyless identity) may vouch for: the same lists bind both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    /// `predicateTypes`, matched exactly. Empty (or omitted) means the signer vouches for
    /// nothing.
    pub predicate_types: Vec<String>,
    /// `builders`: exact builder ids, or prefixes when an entry ends in `*`. Empty (or
    /// omitted) means no builder, so the signer cannot vouch for provenance.
    pub builders: Vec<String>,
    /// `environments`; `None` (omitted) means any environment, `Some(vec![])` none.
    pub environments: Option<Vec<String>>,
    /// `approvers`: for approval statements, the people the signer may speak for, compared
    /// by identity key (see `identity`); `None` (omitted) means anyone, `Some(vec![])`
    /// no one.
    pub approvers: Option<Vec<String>>,
}

impl Grants {
    /// Whether the signer may vouch for statements of this predicate type.
    pub fn trusts_predicate_type(&self, predicate_type: &str) -> bool {
        self.predicate_types.iter().any(|p| p == predicate_type)
    }

    /// Whether the signer may vouch for provenance produced by this builder id.
    pub fn trusts_builder(&self, builder_id: &str) -> bool {
        self.builders.iter().any(|b| match b.strip_suffix('*') {
            Some(prefix) => builder_id.starts_with(prefix),
            None => b == builder_id,
        })
    }

    /// Whether the signer may vouch for promotions into this environment.
    pub fn trusts_environment(&self, environment: &str) -> bool {
        match &self.environments {
            None => true,
            Some(envs) => envs.iter().any(|e| e == environment),
        }
    }

    /// Whether the signer may speak for this approver (by identity key, so a look-alike
    /// spelling of a granted name is the granted person and nobody else).
    pub fn trusts_approver(&self, approver: &str) -> bool {
        match &self.approvers {
            None => true,
            Some(people) => {
                let wanted = crate::identity::key(approver);
                people.iter().any(|p| crate::identity::key(p) == wanted)
            }
        }
    }

    /// The first grant the signer (`kind` `id`, e.g. "key `x`") lacks for this statement,
    /// as a sentence; `None` if permitted.
    pub(crate) fn denial(
        &self,
        kind: &str,
        id: &str,
        statement: &crate::attest::verify::SignedStatement,
        environment: &str,
    ) -> Option<String> {
        let predicate_type = statement.statement.predicate_type.as_str();
        if !self.trusts_predicate_type(predicate_type) {
            return Some(format!(
                "{kind} `{id}` is not trusted for predicate type `{predicate_type}`"
            ));
        }
        if !self.trusts_environment(environment) {
            return Some(format!(
                "{kind} `{id}` is not trusted for environment `{environment}`"
            ));
        }
        if let Some(p) = &statement.provenance {
            if !self.trusts_builder(&p.builder_id) {
                return Some(format!(
                    "{kind} `{id}` is not trusted for builder `{}`",
                    p.builder_id
                ));
            }
        }
        if let Some(approver) = statement.approver() {
            if !self.trusts_approver(approver) {
                return Some(format!(
                    "{kind} `{id}` is not trusted to speak for approver `{approver}`"
                ));
            }
        }
        None
    }

    /// Reads `predicateTypes`, `builders`, `environments` and `approvers` from a trust file entry;
    /// `err` names the entry.
    pub(crate) fn from_json(
        obj: &serde_json::Map<String, Value>,
        err: &dyn Fn(String) -> AttestError,
    ) -> Result<Grants, AttestError> {
        let list = |field: &str| -> Result<Option<Vec<String>>, AttestError> {
            match obj.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| match v {
                        Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        _ => Err(err(format!(
                            "`{field}` entries must be non-empty strings, got `{v}`"
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some),
                Some(_) => Err(err(format!("`{field}` must be an array of strings"))),
            }
        };
        Ok(Grants {
            predicate_types: list("predicateTypes")?.unwrap_or_default(),
            builders: list("builders")?.unwrap_or_default(),
            environments: list("environments")?,
            approvers: list("approvers")?,
        })
    }

    /// A canonical JSON form, order-insensitive, for trust digests.
    fn canonical(&self) -> Value {
        fn sorted(list: &[String]) -> Vec<&String> {
            list.iter().collect::<BTreeSet<_>>().into_iter().collect()
        }
        let mut out = json!({
            "predicateTypes": sorted(&self.predicate_types),
            "builders": sorted(&self.builders),
            "environments": self.environments.as_deref().map(sorted),
        });
        // Only when set, so the digest of a file without `approvers` is unchanged.
        if let Some(approvers) = &self.approvers {
            out["approvers"] = json!(sorted(approvers));
        }
        out
    }
}

/// One key of the trust file and what it may vouch for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    /// The trust file's `id` for the key: what `signer.id` reports.
    pub id: String,
    /// The key.
    pub key: PublicKey,
    /// What it may vouch for.
    pub grants: Grants,
}

/// The loaded trust file: immutable, cheap to share, with a digest for cache keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustStore {
    keys: Vec<TrustedKey>,
    threshold: usize,
    roots: BTreeMap<String, Root>,
    identities: Vec<TrustedIdentity>,
    digest: Sha256,
    require_signed_bundle: bool,
}

impl TrustStore {
    /// The threshold when the file does not give one.
    pub const DEFAULT_THRESHOLD: usize = 1;

    /// Reads a trust file: YAML when the name ends in `.yaml`/`.yml`, JSON otherwise.
    /// `publicKeyFile` paths are relative to the file's directory.
    pub fn load(path: &Path) -> Result<TrustStore, AttestError> {
        let shown = path.display().to_string();
        let text =
            crate::fsio::read_capped_string(path, crate::fsio::MAX_CONFIG_BYTES).map_err(|e| {
                AttestError::TrustFileRead {
                    path: shown.clone(),
                    reason: e.reason(),
                }
            })?;
        let is_yaml = matches!(
            path.extension()
                .and_then(|e| e.to_str())
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("yaml" | "yml")
        );
        let value: Value = if is_yaml {
            serde_yaml::from_str(&text).map_err(|e| AttestError::TrustFileParse {
                path: shown.clone(),
                format: "YAML",
                reason: e.to_string(),
            })?
        } else {
            serde_json::from_str(&text).map_err(|e| AttestError::TrustFileParse {
                path: shown.clone(),
                format: "JSON",
                reason: e.to_string(),
            })?
        };
        let base_dir = path.parent().unwrap_or_else(|| Path::new("."));
        TrustStore::from_json(&value, base_dir)
    }

    /// Reads a trust file already parsed to JSON; `publicKeyFile` resolves against `base_dir`.
    pub fn from_json(value: &Value, base_dir: &Path) -> Result<TrustStore, AttestError> {
        let top = value.as_object().ok_or_else(|| AttestError::TrustFile {
            reason: "the document is not an object".into(),
        })?;
        if let Some(unknown) = top.keys().find(|k| !TOP_FIELDS.contains(&k.as_str())) {
            return Err(AttestError::TrustFile {
                reason: format!(
                    "unknown field `{unknown}` (expected `keys`, `threshold`, `trustedRoots`, `identities`, `requireSignedBundle`)"
                ),
            });
        }
        let threshold = match top.get("threshold") {
            None | Some(Value::Null) => TrustStore::DEFAULT_THRESHOLD,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => usize::try_from(n).unwrap_or(usize::MAX),
                _ => {
                    return Err(AttestError::TrustFile {
                        reason: format!("`threshold` must be an integer >= 1, got `{v}`"),
                    })
                }
            },
        };
        let array = |field: &str| -> Result<&[Value], AttestError> {
            match top.get(field) {
                Some(Value::Array(a)) => Ok(a),
                None => Ok(&[]),
                Some(_) => Err(AttestError::TrustFile {
                    reason: format!("`{field}` must be an array"),
                }),
            }
        };
        if !top.contains_key("keys") && !top.contains_key("identities") {
            return Err(AttestError::TrustFile {
                reason: "`keys` is missing (and there are no `identities`)".into(),
            });
        }
        let keys = array("keys")?
            .iter()
            .enumerate()
            .map(|(i, entry)| parse_key(i, entry, base_dir))
            .collect::<Result<Vec<_>, _>>()?;
        // Keys are checked whole before any root is read: their errors come first.
        let store = TrustStore::new(keys, threshold)?;
        let roots = roots_from_json(top.get("trustedRoots"), base_dir)?;
        let identities = array("identities")?
            .iter()
            .enumerate()
            .map(|(i, entry)| TrustedIdentity::from_json(i, entry, &roots))
            .collect::<Result<Vec<_>, _>>()?;
        let require_signed_bundle = match top.get("requireSignedBundle") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(v) => {
                return Err(AttestError::TrustFile {
                    reason: format!("`requireSignedBundle` must be true or false, got `{v}`"),
                })
            }
        };
        let mut store = store.with_keyless(roots, identities)?;
        store.require_signed_bundle = require_signed_bundle;
        Ok(store)
    }

    /// Adds keyless trust: the named roots and the identities bound to them. Identity
    /// ids share one namespace with key ids.
    pub fn with_keyless(
        mut self,
        roots: BTreeMap<String, Root>,
        identities: Vec<TrustedIdentity>,
    ) -> Result<TrustStore, AttestError> {
        for (i, identity) in identities.iter().enumerate() {
            let clash = self.keys.iter().any(|k| k.id == identity.id)
                || identities[..i].iter().any(|o| o.id == identity.id);
            if clash {
                return Err(AttestError::TrustFile {
                    reason: format!("identity `{}`: the id is listed twice", identity.id),
                });
            }
            if !roots.contains_key(&identity.trusted_root) {
                return Err(AttestError::TrustFile {
                    reason: format!(
                        "identity `{}`: `trustedRoot` `{}` is not listed under `trustedRoots`",
                        identity.id, identity.trusted_root
                    ),
                });
            }
        }
        self.roots = roots;
        self.identities = identities;
        self.digest = digest_of(&self.keys, self.threshold, &self.roots, &self.identities);
        Ok(self)
    }

    /// Builds a store from keys already in hand (tests, benches, embedding).
    ///
    /// Rejects duplicate ids and the same public key under two ids: thresholds count
    /// distinct keys, so one key must not be able to pass as two.
    pub fn new(keys: Vec<TrustedKey>, threshold: usize) -> Result<TrustStore, AttestError> {
        if threshold == 0 {
            return Err(AttestError::TrustFile {
                reason: "`threshold` must be an integer >= 1, got `0`".into(),
            });
        }
        if !keys.is_empty() && threshold > keys.len() {
            return Err(AttestError::TrustFile {
                reason: format!(
                    "`threshold` is {threshold} but only {} keys are listed, so nothing could verify",
                    keys.len()
                ),
            });
        }
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[..i] {
                if a.id == b.id {
                    return Err(AttestError::TrustKey {
                        id: a.id.clone(),
                        reason: "the id is listed twice".into(),
                    });
                }
                if a.key == b.key {
                    return Err(AttestError::TrustKey {
                        id: a.id.clone(),
                        reason: format!(
                            "same public key as `{}` (keyid `{}`); list each key once",
                            b.id,
                            a.key.keyid()
                        ),
                    });
                }
            }
        }
        let digest = digest_of(&keys, threshold, &BTreeMap::new(), &[]);
        Ok(TrustStore {
            keys,
            threshold,
            roots: BTreeMap::new(),
            identities: Vec::new(),
            digest,
            require_signed_bundle: false,
        })
    }

    /// A store that trusts nothing: every attestation is rejected.
    pub fn empty() -> TrustStore {
        TrustStore {
            keys: Vec::new(),
            threshold: TrustStore::DEFAULT_THRESHOLD,
            roots: BTreeMap::new(),
            identities: Vec::new(),
            digest: digest_of(&[], TrustStore::DEFAULT_THRESHOLD, &BTreeMap::new(), &[]),
            require_signed_bundle: false,
        }
    }

    /// Whether a policy bundle must carry a valid `.signatures.json` to load
    /// (`requireSignedBundle`); a signature that is there is checked either way.
    pub fn require_signed_bundle(&self) -> bool {
        self.require_signed_bundle
    }

    /// The keys that may sign policy bundles: those listing the bundle predicate type.
    pub fn bundle_keys(&self) -> Vec<&TrustedKey> {
        self.keys
            .iter()
            .filter(|k| {
                k.grants
                    .trusts_predicate_type(crate::policy::signature::BUNDLE_PREDICATE)
            })
            .collect()
    }

    /// The keys, in file order.
    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// The key with this trust-file id.
    pub fn get(&self, id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// How many distinct permitted keys must sign one envelope.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// Whether no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keyless identities, in file order.
    pub fn identities(&self) -> &[TrustedIdentity] {
        &self.identities
    }

    /// The trusted roots, by name.
    pub fn roots(&self) -> &BTreeMap<String, Root> {
        &self.roots
    }

    /// The trusted root with this name.
    pub fn root(&self, name: &str) -> Option<&Root> {
        self.roots.get(name)
    }

    /// SHA-256 over a canonical form of the keys (by keyid), their permissions and the
    /// threshold: equal for files that mean the same, whatever the order, format or
    /// key-file paths.
    pub fn digest(&self) -> Sha256 {
        self.digest
    }
}

fn digest_of(
    keys: &[TrustedKey],
    threshold: usize,
    roots: &BTreeMap<String, Root>,
    identities: &[TrustedIdentity],
) -> Sha256 {
    let mut canon: Vec<Value> = keys
        .iter()
        .map(|k| {
            // The grants sit beside the key's fields, as they always have: a key-only
            // store keeps its digest.
            let mut entry = json!({
                "id": k.id,
                "keyid": k.key.keyid(),
                "algorithm": k.key.algorithm().as_str(),
            });
            if let (Some(entry), Value::Object(grants)) =
                (entry.as_object_mut(), k.grants.canonical())
            {
                entry.extend(grants);
            }
            entry
        })
        .collect();
    canon.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    let mut doc = json!({"version": 1, "threshold": threshold, "keys": canon});
    // Keyless trust joins the digest only when present, so a key-only store keeps the
    // digest it always had (recorded decisions name it).
    if !roots.is_empty() || !identities.is_empty() {
        let mut ids: Vec<Value> = identities
            .iter()
            .map(|i| {
                let (how, subject) = match &i.subject {
                    SubjectMatch::Exact(s) => ("subject", s.as_str()),
                    SubjectMatch::Pattern(p, _) => ("subjectPattern", p.as_str()),
                };
                json!({
                    "id": i.id,
                    "trustedRoot": i.trusted_root,
                    "issuer": i.issuer,
                    how: subject,
                    "extensions": i.extensions,
                    "grants": i.grants.canonical(),
                })
            })
            .collect();
        ids.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        let roots: BTreeMap<&String, String> =
            roots.iter().map(|(n, r)| (n, r.digest.hex())).collect();
        doc["trustedRoots"] = json!(roots);
        doc["identities"] = json!(ids);
    }
    // Serialising a Value we built cannot fail; an empty input would still give a digest
    // that matches no real store.
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    Sha256::of(bytes)
}

fn parse_key(index: usize, entry: &Value, base_dir: &Path) -> Result<TrustedKey, AttestError> {
    let obj = entry.as_object().ok_or_else(|| AttestError::TrustKey {
        id: format!("keys[{index}]"),
        reason: "the entry is not an object".into(),
    })?;
    let id = match obj.get("id") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        _ => {
            return Err(AttestError::TrustKey {
                id: format!("keys[{index}]"),
                reason: "`id` is missing or not a non-empty string".into(),
            })
        }
    };
    let err = |reason: String| AttestError::TrustKey {
        id: id.clone(),
        reason,
    };
    if let Some(unknown) = obj.keys().find(|k| !KEY_FIELDS.contains(&k.as_str())) {
        return Err(err(format!(
            "unknown field `{unknown}` (expected one of {})",
            KEY_FIELDS.join(", ")
        )));
    }
    let key = match (obj.get("publicKey"), obj.get("publicKeyFile")) {
        (Some(_), Some(_)) => {
            return Err(err("give `publicKey` or `publicKeyFile`, not both".into()));
        }
        (Some(Value::String(pem)), None) => {
            PublicKey::from_pem(pem).map_err(|e| err(format!("`publicKey`: {e}")))?
        }
        (None, Some(Value::String(file))) => {
            let path = base_dir.join(file);
            let pem = crate::fsio::read_capped_string(&path, crate::fsio::MAX_KEY_FILE_BYTES)
                .map_err(|e| {
                    err(format!(
                        "cannot read `publicKeyFile` `{}`: {}",
                        path.display(),
                        e.reason()
                    ))
                })?;
            PublicKey::from_pem(&pem)
                .map_err(|e| err(format!("`publicKeyFile` `{}`: {e}", path.display())))?
        }
        (Some(_), None) => return Err(err("`publicKey` must be a PEM string".into())),
        (None, Some(_)) => return Err(err("`publicKeyFile` must be a path string".into())),
        (None, None) => return Err(err("needs `publicKey` or `publicKeyFile`".into())),
    };
    let grants = Grants::from_json(obj, &err)?;
    Ok(TrustedKey { id, key, grants })
}

impl TrustedKey {
    /// A key entry built in code (tests, benches); `environments: None` means any.
    pub fn new(
        id: impl Into<String>,
        key: PublicKey,
        predicate_types: &[&str],
        builders: &[&str],
        environments: Option<&[&str]>,
    ) -> TrustedKey {
        let owned = |l: &[&str]| l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        TrustedKey {
            id: id.into(),
            key,
            grants: Grants {
                predicate_types: owned(predicate_types),
                builders: owned(builders),
                environments: environments.map(owned),
                approvers: None,
            },
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
pub(crate) mod tests {
    use super::*;
    use crate::attest::keys::SigningKey;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir (no tempfile crate in the scratch build).
    pub(crate) fn temp_dir() -> PathBuf {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "promo-attest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn pem(seed: u8) -> String {
        SigningKey::ed25519_from_seed(&[seed; 32])
            .public_key()
            .to_pem()
    }

    #[test]
    fn loads_json_with_key_files_relative_to_the_trust_file_and_inline_keys() {
        let dir = temp_dir();
        std::fs::create_dir_all(dir.join("keys")).unwrap();
        std::fs::write(dir.join("keys/ci.pub.pem"), pem(1)).unwrap();
        let doc = json!({
            "keys": [
                {"id": "ci", "publicKeyFile": "keys/ci.pub.pem",
                 "predicateTypes": ["https://slsa.dev/provenance/v1"],
                 "builders": ["https://ci.example.com/builders/release@v2", "https://github.com/org/*"],
                 "environments": ["staging", "prod"]},
                {"id": "decisions", "publicKey": pem(2), "predicateTypes": ["https://promo-policy.dev/promotion-decision/v1"]}
            ],
            "threshold": 1
        });
        std::fs::write(dir.join("trust.json"), doc.to_string()).unwrap();
        let store = TrustStore::load(&dir.join("trust.json")).unwrap();
        assert_eq!(store.keys().len(), 2);
        assert_eq!(store.threshold(), 1);
        let ci = store.get("ci").unwrap();
        assert!(ci
            .grants
            .trusts_predicate_type("https://slsa.dev/provenance/v1"));
        assert!(!ci
            .grants
            .trusts_predicate_type("https://slsa.dev/provenance/v0.2"));
        assert!(ci
            .grants
            .trusts_builder("https://ci.example.com/builders/release@v2"));
        assert!(!ci
            .grants
            .trusts_builder("https://ci.example.com/builders/release@v3"));
        assert!(ci
            .grants
            .trusts_builder("https://github.com/org/any/workflow@refs/tags/v1"));
        assert!(!ci.grants.trusts_builder("https://github.com/orgx/w"));
        assert!(ci.grants.trusts_environment("prod"));
        assert!(!ci.grants.trusts_environment("dev"));
        let dec = store.get("decisions").unwrap();
        assert!(
            dec.grants.trusts_environment("anything"),
            "omitted environments = any"
        );
        assert!(
            !dec.grants
                .trusts_builder("https://ci.example.com/builders/release@v2"),
            "omitted builders = none"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn loads_yaml_and_the_same_meaning_gives_the_same_digest() {
        let dir = temp_dir();
        std::fs::write(dir.join("k.pem"), pem(3)).unwrap();
        let yaml = "keys:\n  - id: ci\n    publicKeyFile: k.pem\n    predicateTypes: [b, a]\n    builders: [x]\nthreshold: 1\n";
        std::fs::write(dir.join("trust.yaml"), yaml).unwrap();
        let from_yaml = TrustStore::load(&dir.join("trust.yaml")).unwrap();
        let from_json = TrustStore::from_json(
            &json!({"keys": [{"id": "ci", "publicKey": pem(3), "predicateTypes": ["a", "b", "a"], "builders": ["x"]}]}),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(from_yaml.digest(), from_json.digest());
        assert_eq!(from_yaml.digest().hex().len(), 64);
        let other = TrustStore::from_json(
            &json!({"keys": [{"id": "ci", "publicKey": pem(3), "predicateTypes": ["a", "b"], "builders": ["x"], "environments": []}]}),
            Path::new("."),
        )
        .unwrap();
        assert_ne!(
            other.digest(),
            from_json.digest(),
            "environments [] differs from omitted"
        );
        assert_ne!(TrustStore::empty().digest(), from_json.digest());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn missing_predicate_types_vouch_for_nothing() {
        let store = TrustStore::from_json(
            &json!({"keys": [{"id": "k", "publicKey": pem(4)}]}),
            Path::new("."),
        )
        .unwrap();
        assert!(!store.keys()[0]
            .grants
            .trusts_predicate_type("https://slsa.dev/provenance/v1"));
        assert!(store.keys()[0].grants.trusts_environment("prod"));
    }

    #[test]
    fn errors_name_the_file_key_and_field() {
        let base = Path::new("/nonexistent-dir");
        let cases: Vec<(Value, String)> = vec![
            (json!([]), "trust file: the document is not an object".into()),
            (json!({}), "trust file: `keys` is missing".into()),
            (json!({"keys": {}}), "trust file: `keys` must be an array".into()),
            (json!({"keys": [], "threshold": 0}), "trust file: `threshold` must be an integer >= 1, got `0`".into()),
            (json!({"keys": [], "threshold": 1.5}), "trust file: `threshold` must be an integer >= 1, got `1.5`".into()),
            (json!({"keys": [], "threshold": "2"}), "trust file: `threshold` must be an integer >= 1, got `\"2\"`".into()),
            (json!({"keys": [], "treshold": 2}), "trust file: unknown field `treshold` (expected `keys`, `threshold`, `trustedRoots`, `identities`, `requireSignedBundle`)".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1)}], "threshold": 2}), "trust file: `threshold` is 2 but only 1 keys are listed, so nothing could verify".into()),
            (json!({"keys": [7]}), "trust file key `keys[0]`: the entry is not an object".into()),
            (json!({"keys": [{"publicKey": pem(1)}]}), "trust file key `keys[0]`: `id` is missing or not a non-empty string".into()),
            (json!({"keys": [{"id": "a"}]}), "trust file key `a`: needs `publicKey` or `publicKeyFile`".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1), "publicKeyFile": "x"}]}), "trust file key `a`: give `publicKey` or `publicKeyFile`, not both".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1), "enviroments": ["prod"]}]}), "trust file key `a`: unknown field `enviroments` (expected one of id, publicKey, publicKeyFile, predicateTypes, builders, environments, approvers)".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1), "approvers": "alice"}]}), "trust file key `a`: `approvers` must be an array of strings".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1), "builders": "x"}]}), "trust file key `a`: `builders` must be an array of strings".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1), "environments": [""]}]}), "trust file key `a`: `environments` entries must be non-empty strings, got `\"\"`".into()),
            (json!({"keys": [{"id": "a", "publicKey": "garbage"}]}), "trust file key `a`: `publicKey`: invalid public key: not a PEM public key".into()),
            (json!({"keys": [{"id": "a", "publicKeyFile": "missing.pem"}]}), "trust file key `a`: cannot read `publicKeyFile` `/nonexistent-dir/missing.pem`".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1)}, {"id": "a", "publicKey": pem(2)}]}), "trust file key `a`: the id is listed twice".into()),
            (json!({"keys": [{"id": "a", "publicKey": pem(1)}, {"id": "b", "publicKey": pem(1)}]}),
                format!("trust file key `b`: same public key as `a` (keyid `{}`); list each key once",
                    SigningKey::ed25519_from_seed(&[1; 32]).keyid())),
        ];
        for (doc, want) in cases {
            let err = TrustStore::from_json(&doc, base).unwrap_err().to_string();
            assert!(err.starts_with(&want), "got: {err}\nwant: {want}");
        }
    }

    #[test]
    fn one_p256_key_under_two_encodings_is_refused_as_listed_twice() {
        let pk = SigningKey::generate_p256().public_key();
        let compressed = crate::attest::keys::tests::compressed_p256_pem(&pk);
        // PEM whitespace and line-length variants are the same DER, so the same key too.
        let reflowed = pk.to_pem().replace('\n', "\r\n");
        for other in [compressed, reflowed] {
            let doc = json!({"threshold": 2, "keys": [
                {"id": "a", "publicKey": pk.to_pem()},
                {"id": "b", "publicKey": other},
            ]});
            let err = TrustStore::from_json(&doc, Path::new("/"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("trust file key `b`: same public key as `a`"),
                "got: {err}"
            );
        }
    }

    #[test]
    fn unreadable_and_unparsable_files_are_named() {
        let dir = temp_dir();
        let err = TrustStore::load(&dir.join("nope.json"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!(
                "cannot read trust file `{}`",
                dir.join("nope.json").display()
            )),
            "{err}"
        );
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        let err = TrustStore::load(&dir.join("bad.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not valid JSON"), "{err}");
        std::fs::write(dir.join("bad.yml"), "keys: [").unwrap();
        let err = TrustStore::load(&dir.join("bad.yml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not valid YAML"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_fixture_trust_file_loads_the_corpus_keys() {
        // file!() is absolute in the scratch crate and relative to the package root in the
        // real one; tests run from the package root, so both resolve.
        let fixture = Path::new(file!())
            .parent()
            .unwrap()
            .join("../../tests/fixtures/attest/trust.json");
        let store = TrustStore::load(&fixture).unwrap();
        assert_eq!(store.keys().len(), 3);
        let p256 = store.get("ci-builder-p256").unwrap();
        assert_eq!(
            p256.key.algorithm(),
            crate::attest::keys::KeyAlgorithm::EcdsaP256
        );
    }
}

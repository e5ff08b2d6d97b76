//! Sigstore trusted roots (CONTRACT §2c): the pinned `builtin:` roots and `trusted_root.json`
//! files a trust file names, each read once into a ready verifier; nothing is ever fetched.
//!
//! A root lists the certificate authorities (Fulcio) a keyless signer's certificate must
//! chain to, the transparency logs (Rekor) and timestamp authorities whose signatures can
//! prove when it signed, and the CT logs whose SCTs the certificate must carry. The two
//! builtins are the snapshots `sigstore-trust-root` embeds, pinned by the exact crate
//! version in Cargo.toml: updating them is a reviewed dependency bump, never a download.

use std::path::Path;
use std::sync::Arc;

use crate::digest::Sha256;
use sigstore_verify::trust_root::{SigstoreInstance, TrustedRoot};
use sigstore_verify::Verifier;

use crate::attest::AttestError;

/// The trusted-root media type this build reads.
pub const TRUSTED_ROOT_MEDIA_TYPE: &str =
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1";

/// The roots that ship with the engine: (`builtin:` name, what it is, instance).
const BUILTINS: &[(&str, &str, SigstoreInstance)] = &[
    (
        "public-good",
        "Sigstore public-good production (Fulcio, Rekor v1/v2, CT logs, TSA)",
        SigstoreInstance::PublicGood,
    ),
    (
        "github",
        "GitHub's Sigstore instance for private-repository attestations (Fulcio, TSAs; no log, no CT)",
        SigstoreInstance::GitHub,
    ),
];

/// One trusted root, parsed and checked, with the verifier built from it.
#[derive(Clone)]
pub struct Root {
    /// The trust file's name for it (the key under `trustedRoots`).
    pub name: String,
    /// Where it came from: `builtin:public-good` or the path as the trust file gives it.
    pub source: String,
    /// SHA-256 of the root's JSON as read: what identifies it in digests.
    pub digest: Sha256,
    /// Whether it lists transparency logs: then a bundle must carry a verified log entry.
    pub has_tlogs: bool,
    /// Whether it lists CT logs: then the certificate's SCT must verify.
    pub has_ctlogs: bool,
    /// The newest `validFor.start` of any authority or log in it, as RFC 3339: how
    /// current the snapshot is, shown by `trust roots`.
    pub newest_entry: Option<String>,
    /// Certificate authorities, logs and timestamp authorities, counted for listings.
    pub counts: RootCounts,
    pub(crate) verifier: Arc<Verifier>,
    /// The DER subject names of the root's certificate-authority certificates: which
    /// issuers a leaf of this root can name.
    ca_subjects: Vec<Vec<u8>>,
}

/// How many of each kind of trust material a root lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RootCounts {
    /// Fulcio certificate authorities.
    pub certificate_authorities: usize,
    /// Rekor transparency logs.
    pub tlogs: usize,
    /// Certificate Transparency logs.
    pub ctlogs: usize,
    /// RFC 3161 timestamp authorities.
    pub timestamp_authorities: usize,
}

impl std::fmt::Debug for Root {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Root")
            .field("name", &self.name)
            .field("source", &self.source)
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl PartialEq for Root {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.digest == other.digest
    }
}

impl Eq for Root {}

impl Root {
    /// Reads a root named `name` from a trust file's `trustedRoots` value: `builtin:NAME`
    /// or a path relative to `base_dir`.
    pub fn load(name: &str, source: &str, base_dir: &Path) -> Result<Root, AttestError> {
        let err = |reason: String| AttestError::TrustFile {
            reason: format!("trusted root `{name}`: {reason}"),
        };
        let json: String = match source.strip_prefix("builtin:") {
            Some(builtin) => match BUILTINS.iter().find(|(n, _, _)| *n == builtin) {
                Some((_, _, instance)) => instance.embedded_trusted_root_json().to_owned(),
                None => {
                    return Err(err(format!(
                        "unknown builtin `{source}` (the builtins are {})",
                        BUILTINS
                            .iter()
                            .map(|(n, _, _)| format!("`builtin:{n}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )))
                }
            },
            None => {
                let path = base_dir.join(source);
                crate::fsio::read_capped_string(&path, crate::fsio::MAX_CONFIG_BYTES)
                    .map_err(|e| err(format!("cannot read `{}`: {}", path.display(), e.reason())))?
            }
        };
        Root::from_json(name, source, &json).map_err(err)
    }

    /// Parses and checks a `trusted_root.json` document.
    fn from_json(name: &str, source: &str, json: &str) -> Result<Root, String> {
        // The strict parser first: a duplicate key in a root could hide a second CA.
        let value = crate::request::parse_strict(json.as_bytes()).map_err(|e| e.to_string())?;
        let media_type = value.get("mediaType").and_then(|m| m.as_str());
        if media_type != Some(TRUSTED_ROOT_MEDIA_TYPE) {
            return Err(format!(
                "`mediaType` is {}, expected `{TRUSTED_ROOT_MEDIA_TYPE}`",
                media_type.map_or("missing".to_owned(), |m| format!("`{m}`"))
            ));
        }
        let root = TrustedRoot::from_json(json).map_err(|e| e.to_string())?;
        if root.certificate_authorities.is_empty() {
            return Err(
                "it lists no certificate authority, so no certificate can chain to it".into(),
            );
        }
        if root.tlogs.is_empty() && root.timestamp_authorities.is_empty() {
            return Err(
                "it lists neither a transparency log nor a timestamp authority, so no signing time could be proved"
                    .into(),
            );
        }
        let verifier = Verifier::new(&root).map_err(|e| e.to_string())?;
        let ca_subjects = root
            .certificate_authorities
            .iter()
            .flat_map(|ca| &ca.cert_chain.certificates)
            .map(|c| names_of(c.raw_bytes.as_bytes()).map(|(_, subject)| subject))
            .collect::<Result<Vec<_>, _>>()?;
        let starts = root
            .certificate_authorities
            .iter()
            .filter_map(|a| a.valid_for.map(|v| v.start))
            .chain(
                root.timestamp_authorities
                    .iter()
                    .filter_map(|a| a.valid_for.map(|v| v.start)),
            )
            .chain(
                root.tlogs
                    .iter()
                    .filter_map(|l| l.public_key.valid_for.map(|v| v.start)),
            )
            .chain(
                root.ctlogs
                    .iter()
                    .filter_map(|l| l.public_key.valid_for.map(|v| v.start)),
            );
        Ok(Root {
            name: name.to_owned(),
            source: source.to_owned(),
            digest: Sha256::of(json.as_bytes()),
            has_tlogs: !root.tlogs.is_empty(),
            has_ctlogs: !root.ctlogs.is_empty(),
            newest_entry: starts.max().map(|t| t.to_string()),
            counts: RootCounts {
                certificate_authorities: root.certificate_authorities.len(),
                tlogs: root.tlogs.len(),
                ctlogs: root.ctlogs.len(),
                timestamp_authorities: root.timestamp_authorities.len(),
            },
            verifier: Arc::new(verifier),
            ca_subjects,
        })
    }

    /// Whether a certificate issued by `issuer` (a DER name) could chain to this root: a
    /// CA of the root, or one of the `intermediates` the bundle ships, names it as its
    /// subject. Only a classification (the verifier builds and checks the real path);
    /// it lets a bundle of another root be refused as `root.unknown`.
    pub fn may_issue(&self, issuer: &[u8], intermediates: &[Vec<u8>]) -> bool {
        self.ca_subjects
            .iter()
            .chain(intermediates)
            .any(|subject| subject == issuer)
    }
}

/// The DER issuer and subject names of a DER certificate.
pub(crate) fn names_of(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    use x509_cert::der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(der)
        .map_err(|e| format!("the certificate does not parse: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let encode = |n: &x509_cert::name::Name| {
        n.to_der()
            .map_err(|e| format!("a name does not encode: {e}"))
    };
    Ok((encode(&tbs.issuer)?, encode(&tbs.subject)?))
}

/// The builtin roots, loaded: for `trust roots` and `--version`.
pub fn builtins() -> Vec<(Root, &'static str)> {
    BUILTINS
        .iter()
        .filter_map(|(name, about, _)| {
            Root::load(name, &format!("builtin:{name}"), Path::new("."))
                .ok()
                .map(|r| (r, *about))
        })
        .collect()
}

/// The version of the crate the builtin roots come from.
pub const BUILTIN_SOURCE: &str = "sigstore-trust-root 0.15.1 (embedded snapshots)";

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    #[test]
    fn both_builtins_load_and_say_what_they_hold() {
        let roots = builtins();
        assert_eq!(roots.len(), 2, "every builtin must load");
        let pg = &roots[0].0;
        assert_eq!(pg.name, "public-good");
        assert!(pg.has_tlogs && pg.has_ctlogs);
        let gh = &roots[1].0;
        assert_eq!(gh.name, "github");
        assert!(
            !gh.has_tlogs && !gh.has_ctlogs,
            "GitHub's root has no log and no CT"
        );
        assert!(gh.counts.timestamp_authorities > 0);
        assert_ne!(pg.digest, gh.digest);
    }

    #[test]
    fn bad_roots_are_refused_naming_the_root() {
        let dir = crate::attest::trust::tests::temp_dir();
        let e = Root::load("x", "builtin:nope", &dir)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trusted root `x`: unknown builtin `builtin:nope`"),
            "{e}"
        );
        let e = Root::load("x", "missing.json", &dir)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::write(
            dir.join("dup.json"),
            r#"{"mediaType": "a", "mediaType": "b"}"#,
        )
        .unwrap();
        let e = Root::load("x", "dup.json", &dir).unwrap_err().to_string();
        assert!(e.contains("duplicate"), "{e}");
        std::fs::write(dir.join("other.json"), r#"{"mediaType": "text/plain"}"#).unwrap();
        let e = Root::load("x", "other.json", &dir).unwrap_err().to_string();
        assert!(e.contains("`mediaType` is `text/plain`"), "{e}");
        // A root without any CA can verify nothing.
        let mut doc: serde_json::Value =
            serde_json::from_str(SigstoreInstance::GitHub.embedded_trusted_root_json()).unwrap();
        doc["certificateAuthorities"] = serde_json::json!([]);
        std::fs::write(dir.join("noca.json"), doc.to_string()).unwrap();
        let e = Root::load("x", "noca.json", &dir).unwrap_err().to_string();
        assert!(e.contains("no certificate authority"), "{e}");
    }
}

//! `collect`: pins an image reference to a digest and gathers the attestations attached to it in its OCI registry (referrers API, referrers tag schema, cosign's `.att`/`.sig` tags) into one JSONL evidence file, trusting nothing.

pub mod extract;
pub mod registry;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::digest::Sha256;
use oci_client::Reference;
use serde_json::Value;

use crate::attest::files::MAX_ATTESTATIONS;
use crate::request::parse_strict;
use extract::LayerKind;
pub use registry::Access;
use registry::Registry;

/// Largest manifest or referrers index read (the OCI distribution spec's 4 MiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Largest attestation blob read (the largest request `eval` reads).
pub const MAX_BLOB_BYTES: u64 = crate::request::MAX_BODY_BYTES as u64;
/// Most referrers one subject may list (beyond, the collection is refused).
pub const MAX_REFERRERS: usize = 256;
/// Most HTTP redirects followed per request (registries redirect blobs to storage).
pub const MAX_REDIRECTS: usize = 5;
/// Longest one HTTP request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a whole collection may take.
pub const TOTAL_TIME: Duration = Duration::from_secs(120);

/// Why nothing was collected. An underlying error (reqwest's, oci-client's, a parser's)
/// is the `source` and not repeated in the message, so a printed chain (see
/// [`crate::error_chain`]) says it once; `msg` and `String` fields are our own sentences.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The image reference does not parse.
    #[error("invalid image reference `{reference}`")]
    Reference {
        /// The reference given.
        reference: String,
        /// oci-client's parse error.
        #[source]
        source: oci_client::ParseError,
    },
    /// A tag was given without `--allow-tag`.
    #[error("`{0}` names a tag, which can move; pass IMAGE@sha256:<digest>, or --allow-tag to pin the tag's current digest")]
    Tag(String),
    /// The registry refused, or sent something over a limit or off its digest.
    #[error("registry {host}: {msg}")]
    Registry {
        /// The registry host.
        host: String,
        /// What happened.
        msg: String,
    },
    /// A request to the registry failed: connection, TLS, timeout, a body cut short.
    #[error("registry {host}: {what}")]
    Http {
        /// The registry host.
        host: String,
        /// What was being done (`cannot GET manifest app@sha256:...`).
        what: String,
        /// reqwest's error (its sources say why).
        #[source]
        source: reqwest::Error,
    },
    /// The HTTP client could not be set up (`--ca-file`, TLS).
    #[error("registry {host}: {what}")]
    Client {
        /// The registry host.
        host: String,
        /// What could not be done.
        what: &'static str,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// oci-client could not be set up, or could not authenticate.
    #[error("registry {host}: {what}")]
    Oci {
        /// The registry host.
        host: String,
        /// What could not be done.
        what: &'static str,
        /// oci-client's error (boxed: it is large).
        #[source]
        source: Box<oci_client::errors::OciDistributionError>,
    },
    /// The I/O runtime could not start.
    #[error("registry {host}: cannot start the I/O runtime")]
    Runtime {
        /// The registry host.
        host: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest or index is not JSON.
    #[error("registry {host}: {what} is not JSON")]
    NotJson {
        /// The registry host.
        host: String,
        /// The document (`manifest sha256:...`).
        what: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// An attestation blob is not strict JSON.
    #[error("registry {host}: {what}")]
    Blob {
        /// The registry host.
        host: String,
        /// Where it came from and its digest.
        what: String,
        /// The strict parser's refusal.
        #[source]
        source: crate::request::RequestError,
    },
    /// The whole collection ran out of time.
    #[error("registry {host}: collection took longer than {}s", TOTAL_TIME.as_secs())]
    Timeout {
        /// The registry host.
        host: String,
    },
    /// A flag is inconsistent with the reference.
    #[error("{0}")]
    Usage(String),
}

/// What to collect and how.
#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// The image reference (`registry/repo@sha256:...`, or a tag with `allow_tag`).
    pub reference: String,
    /// Accept a tag and pin its current digest.
    pub allow_tag: bool,
    /// For an index: the platform manifest (`os/arch[/variant]`) whose attestations
    /// are collected besides the index's.
    pub platform: Option<String>,
    /// How to reach the registry.
    pub access: Access,
}

/// One collected attestation and where it came from.
#[derive(Debug, Clone)]
pub struct CollectedItem {
    /// The envelope or bundle.
    pub document: Value,
    /// Where it was found, for stderr (e.g. `cosign .att of sha256:... (index)`).
    pub origin: String,
}

/// The result of a collection.
#[derive(Debug, Clone)]
pub struct Collected {
    /// The pinned image, `registry/repo@sha256:<hex>`.
    pub image: String,
    /// The pinned digest (of the index when the reference names one).
    pub digest: String,
    /// The platform manifest's digest, when `--platform` picked one.
    pub platform_digest: Option<String>,
    /// The attestations, de-duplicated by blob digest, in discovery order.
    pub items: Vec<CollectedItem>,
    /// Notes for stderr: what was skipped and why.
    pub notes: Vec<String>,
}

impl Collected {
    /// The evidence file: one attestation per line, as `eval --attestations` reads.
    pub fn jsonl(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.items {
            // A Value always serialises.
            out.extend_from_slice(item.document.to_string().as_bytes());
            out.push(b'\n');
        }
        out
    }

    /// The SHA-256 of [`Collected::jsonl`], recorded in decisions.
    pub fn jsonl_digest(&self) -> Sha256 {
        Sha256::of(self.jsonl())
    }
}

/// Parses an image reference with oci-client (Docker's rules: `docker.io` and
/// `library/` are implied).
pub fn parse_reference(reference: &str) -> Result<Reference, CollectError> {
    reference
        .parse::<Reference>()
        .map_err(|source| CollectError::Reference {
            reference: reference.to_string(),
            source,
        })
}

/// Whether `host` (`name[:port]`) is loopback, the only place plain HTTP is allowed.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// Collects in a runtime of its own, bounded by [`TOTAL_TIME`].
pub fn collect(options: &CollectOptions) -> Result<Collected, CollectError> {
    let reference = parse_reference(&options.reference)?;
    if reference.digest().is_none() && !options.allow_tag {
        return Err(CollectError::Tag(options.reference.clone()));
    }
    let host = reference.resolve_registry().to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| CollectError::Runtime {
            host: host.clone(),
            source,
        })?;
    runtime.block_on(async {
        tokio::time::timeout(TOTAL_TIME, collect_async(&reference, options))
            .await
            .map_err(|_| CollectError::Timeout { host })?
    })
}

async fn collect_async(
    reference: &Reference,
    options: &CollectOptions,
) -> Result<Collected, CollectError> {
    let reg = Registry::connect(reference, &options.access).await?;
    let (digest, top) = match reference.digest() {
        Some(digest) => {
            let top = reg
                .manifest(digest)
                .await?
                .ok_or_else(|| not_found(&reg, digest))?;
            (digest.to_string(), top)
        }
        None => {
            let tag = reference.tag().unwrap_or("latest");
            let top = reg
                .manifest(tag)
                .await?
                .ok_or_else(|| not_found(&reg, tag))?;
            (top.digest.clone(), top)
        }
    };
    let image = format!("{}/{}@{digest}", reg.host(), reg.repository());
    let top_doc = parse_manifest(&reg, &top.bytes, &format!("manifest {digest}"))?;
    let mut subjects = vec![(digest.clone(), "image".to_string())];
    let mut platform_digest = None;
    let mut notes = Vec::new();
    if extract::is_index(&top_doc) {
        subjects[0].1 = "index".into();
        match &options.platform {
            Some(platform) => {
                let entry = extract::platform_entry(&top_doc, platform).ok_or_else(|| {
                    registry_err(
                        &reg,
                        format!(
                            "index {digest} has no manifest for platform {platform} (it has: {})",
                            extract::platforms(&top_doc).join(", ")
                        ),
                    )
                })?;
                subjects.push((entry.clone(), format!("{platform} manifest")));
                platform_digest = Some(entry);
            }
            None => notes.push(format!(
                "{digest} is an index; only its own attestations were collected (pass --platform, one of: {})",
                extract::platforms(&top_doc).join(", ")
            )),
        }
    } else if let Some(platform) = &options.platform {
        return Err(CollectError::Usage(format!(
            "--platform {platform}: {digest} is a single-platform manifest, not an index"
        )));
    }

    let mut items = Vec::new();
    let mut seen = BTreeSet::new();
    for (subject, label) in &subjects {
        collect_subject(&reg, subject, label, &mut items, &mut seen, &mut notes).await?;
    }
    Ok(Collected {
        image,
        digest,
        platform_digest,
        items,
        notes,
    })
}

fn registry_err(reg: &Registry, msg: String) -> CollectError {
    CollectError::Registry {
        host: reg.host().to_string(),
        msg,
    }
}

/// A manifest or index (already capped at [`MAX_MANIFEST_BYTES`] and checked against its
/// digest): plain serde_json, whose nesting limit holds; attestation blobs go through the
/// request's strict parser instead.
fn parse_manifest(reg: &Registry, bytes: &[u8], what: &str) -> Result<Value, CollectError> {
    let doc: Value = serde_json::from_slice(bytes).map_err(|source| CollectError::NotJson {
        host: reg.host().to_string(),
        what: what.to_string(),
        source,
    })?;
    if !doc.is_object() {
        return Err(registry_err(reg, format!("{what} is not a JSON object")));
    }
    Ok(doc)
}

fn not_found(reg: &Registry, what: &str) -> CollectError {
    registry_err(
        reg,
        format!("manifest {}:{what} not found", reg.repository()),
    )
}

/// Every attestation attached to `subject`, by all three conventions.
async fn collect_subject(
    reg: &Registry,
    subject: &str,
    label: &str,
    items: &mut Vec<CollectedItem>,
    seen: &mut BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Result<(), CollectError> {
    let tag_base = subject.replace(':', "-");
    // 1. OCI 1.1 referrers: the API, or the tag-schema index when the API is absent.
    let (index, how) = match reg.referrers_api(subject).await? {
        Some(bytes) => (Some(bytes), "referrers API"),
        None => (
            reg.manifest(&tag_base).await?.map(|f| f.bytes),
            "referrers tag schema",
        ),
    };
    if let Some(bytes) = index {
        let doc = parse_manifest(reg, &bytes, &format!("{how} index of {subject}"))?;
        let entries = extract::manifests(&doc);
        if entries.len() > MAX_REFERRERS {
            return Err(registry_err(
                reg,
                format!(
                    "{subject} has {} referrers; the limit is {MAX_REFERRERS}",
                    entries.len()
                ),
            ));
        }
        for (_, entry, _) in entries {
            let origin = format!("{how} {entry} of {subject} ({label})");
            let manifest = reg.manifest(&entry).await?.ok_or_else(|| {
                registry_err(reg, format!("referrer {entry} of {subject} not found"))
            })?;
            read_layers(reg, &manifest.bytes, &origin, items, seen, notes).await?;
        }
    }
    // 2. cosign's tags: `.att` (attestations), `.sig` (signatures).
    for suffix in ["att", "sig"] {
        let tag = format!("{tag_base}.{suffix}");
        if let Some(manifest) = reg.manifest(&tag).await? {
            let origin = format!("cosign .{suffix} of {subject} ({label})");
            read_layers(reg, &manifest.bytes, &origin, items, seen, notes).await?;
        }
    }
    Ok(())
}

async fn read_layers(
    reg: &Registry,
    manifest: &[u8],
    origin: &str,
    items: &mut Vec<CollectedItem>,
    seen: &mut BTreeSet<String>,
    notes: &mut Vec<String>,
) -> Result<(), CollectError> {
    let doc = parse_manifest(reg, manifest, origin)?;
    let layers = extract::layers(&doc);
    if layers.len() > MAX_REFERRERS {
        return Err(registry_err(
            reg,
            format!(
                "{origin}: {} layers; the limit is {MAX_REFERRERS}",
                layers.len()
            ),
        ));
    }
    let mut signatures = 0;
    for (media_type, digest, size) in layers {
        match extract::kind(&media_type) {
            LayerKind::Envelope | LayerKind::Bundle => {
                let bytes = reg.blob(&digest, size).await?;
                if !seen.insert(digest.clone()) {
                    continue;
                }
                let document = parse_strict(&bytes).map_err(|source| CollectError::Blob {
                    host: reg.host().to_string(),
                    what: format!("{origin}: blob {digest}"),
                    source,
                })?;
                if !document.is_object() {
                    return Err(registry_err(
                        reg,
                        format!("{origin}: blob {digest} is not a JSON object"),
                    ));
                }
                items.push(CollectedItem {
                    document,
                    origin: origin.to_string(),
                });
                if items.len() > MAX_ATTESTATIONS {
                    return Err(registry_err(
                        reg,
                        format!("more than {MAX_ATTESTATIONS} attestations; a request carries at most {MAX_ATTESTATIONS}"),
                    ));
                }
            }
            LayerKind::SimpleSigning => signatures += 1,
            LayerKind::Other => notes.push(format!(
                "{origin}: skipped a {media_type} layer (not an attestation)"
            )),
        }
    }
    if signatures > 0 {
        notes.push(format!(
            "{origin}: skipped {signatures} simple-signing layer(s): image signatures, not attestations; nothing in them for eval to verify"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for host in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.0.0.1",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "10.0.0.1:5000",
            "registry.example:5000",
            "ghcr.io",
            "localhost.evil.com:5000",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_tag_is_refused_without_allow_tag() {
        let options = CollectOptions {
            reference: "127.0.0.1:9/app:latest".into(),
            allow_tag: false,
            platform: None,
            access: Access {
                insecure: true,
                ca_pem: None,
                auth: oci_client::secrets::RegistryAuth::Anonymous,
            },
        };
        let e = collect(&options).map(|_| ()).unwrap_err().to_string();
        assert!(e.contains("names a tag"), "{e}");
    }

    #[test]
    fn registry_and_parser_errors_are_kept_as_sources() {
        use crate::error_chain::ErrorChain;
        let err = parse_reference("UPPER/Case:x").unwrap_err();
        let parse = std::error::Error::source(&err).unwrap();
        assert!(
            parse.downcast_ref::<oci_client::ParseError>().is_some(),
            "{parse}"
        );
        assert_eq!(
            ErrorChain(&err).to_string(),
            format!("invalid image reference `UPPER/Case:x`: {parse}")
        );

        // Nothing listens: the client's error is the source, and the chain says why.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = CollectOptions {
            reference: format!("127.0.0.1:{port}/app:latest"),
            allow_tag: true,
            platform: None,
            access: Access {
                insecure: true,
                ca_pem: None,
                auth: oci_client::secrets::RegistryAuth::Anonymous,
            },
        };
        let err = collect(&options).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, CollectError::Oci { .. } | CollectError::Http { .. }),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.starts_with(&format!("registry 127.0.0.1:{port}: "))
                && chain.len() > err.to_string().len(),
            "{chain}"
        );
    }
}

//! Which manifest layers are attestations: DSSE envelopes and Sigstore bundles are kept, cosign's simple-signing payloads and anything else are named and skipped.

use serde_json::Value;

/// What to do with one layer, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerKind {
    /// A DSSE envelope (cosign `.att`, in-toto attestations).
    Envelope,
    /// A Sigstore bundle (GitHub artifact attestations, cosign v3).
    Bundle,
    /// cosign's simple-signing payload (`.sig`): an image signature over the digest,
    /// not an attestation; nothing in it for `eval` to verify.
    SimpleSigning,
    /// Anything else (SBOM files, images...): skipped.
    Other,
}

/// Classifies a layer by its media type.
pub fn kind(media_type: &str) -> LayerKind {
    match media_type {
        "application/vnd.dsse.envelope.v1+json" | "application/vnd.in-toto+json" => {
            LayerKind::Envelope
        }
        "application/vnd.dev.cosign.simplesigning.v1+json" => LayerKind::SimpleSigning,
        t if t.starts_with("application/vnd.dev.sigstore.bundle") && t.ends_with("+json") => {
            LayerKind::Bundle
        }
        _ => LayerKind::Other,
    }
}

/// The layer descriptors (`mediaType`, `digest`, `size`) of an image manifest.
pub fn layers(manifest: &Value) -> Vec<(String, String, u64)> {
    manifest
        .get("layers")
        .and_then(Value::as_array)
        .map(|layers| {
            layers
                .iter()
                .filter_map(descriptor)
                .collect::<Vec<(String, String, u64)>>()
        })
        .unwrap_or_default()
}

/// The entries of an index (`manifests`), as descriptors.
pub fn manifests(index: &Value) -> Vec<(String, String, u64)> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(descriptor).collect())
        .unwrap_or_default()
}

fn descriptor(d: &Value) -> Option<(String, String, u64)> {
    Some((
        d.get("mediaType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        d.get("digest")?.as_str()?.to_string(),
        d.get("size")?.as_u64()?,
    ))
}

/// Whether a manifest is an index (OCI image index or Docker manifest list).
pub fn is_index(manifest: &Value) -> bool {
    matches!(
        manifest.get("mediaType").and_then(Value::as_str),
        Some(
            "application/vnd.oci.image.index.v1+json"
                | "application/vnd.docker.distribution.manifest.list.v2+json"
        )
    ) || (manifest.get("mediaType").is_none() && manifest.get("manifests").is_some())
}

/// The digest of the index entry for `platform` (`os/arch` or `os/arch/variant`).
pub fn platform_entry(index: &Value, platform: &str) -> Option<String> {
    let mut parts = platform.split('/');
    let (os, arch, variant) = (parts.next()?, parts.next()?, parts.next());
    index
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            let p = m.get("platform");
            let field = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
            field("os") == Some(os)
                && field("architecture") == Some(arch)
                && (variant.is_none() || field("variant") == variant)
        })
        .and_then(|m| m.get("digest")?.as_str().map(str::to_string))
}

/// The platforms an index offers, for a message.
pub fn platforms(index: &Value) -> Vec<String> {
    manifests_raw(index)
        .iter()
        .filter_map(|m| {
            let p = m.get("platform")?;
            let os = p.get("os")?.as_str()?;
            let arch = p.get("architecture")?.as_str()?;
            Some(match p.get("variant").and_then(Value::as_str) {
                Some(v) => format!("{os}/{arch}/{v}"),
                None => format!("{os}/{arch}"),
            })
        })
        .collect()
}

fn manifests_raw(index: &Value) -> Vec<Value> {
    index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails loudly")]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_are_classified_by_media_type() {
        assert_eq!(
            kind("application/vnd.dsse.envelope.v1+json"),
            LayerKind::Envelope
        );
        assert_eq!(
            kind("application/vnd.dev.sigstore.bundle.v0.3+json"),
            LayerKind::Bundle
        );
        assert_eq!(
            kind("application/vnd.dev.cosign.simplesigning.v1+json"),
            LayerKind::SimpleSigning
        );
        assert_eq!(kind("application/spdx+json"), LayerKind::Other);
    }

    #[test]
    fn platform_entries_match_os_arch_and_variant() {
        let index = json!({"mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
            {"digest": "sha256:a", "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"digest": "sha256:b", "size": 1, "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}
        ]});
        assert!(is_index(&index));
        assert_eq!(
            platform_entry(&index, "linux/amd64").as_deref(),
            Some("sha256:a")
        );
        assert_eq!(
            platform_entry(&index, "linux/arm64/v8").as_deref(),
            Some("sha256:b")
        );
        assert_eq!(platform_entry(&index, "linux/arm64/v7"), None);
        assert_eq!(platform_entry(&index, "linux"), None);
        assert_eq!(platforms(&index), vec!["linux/amd64", "linux/arm64/v8"]);
    }
}

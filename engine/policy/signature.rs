//! OPA's signed-bundle format: `.signatures.json` holds one compact JWS whose payload lists
//! every bundle file with its SHA-256, signed and verified with the trust file's bundle keys.
//!
//! The JWS is three base64url parts; the signature is made and checked by the same
//! Ed25519 / P-256 code that signs decisions and verifies attestations (`EdDSA`, `ES256`
//! with raw r||s), and the algorithm is taken from the trusted key, never from the header
//! alone. File hashes follow OPA: JSON files (`*.json`, `.manifest`) are hashed over their
//! value with object keys sorted, everything else over its bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::archive::{RawFile, MANIFEST, SIGNATURES};
use crate::attest::keys::{KeyAlgorithm, SigningKey};
use crate::attest::trust::TrustedKey;

/// The predicate type a trust-file key must list to sign policy bundles.
pub const BUNDLE_PREDICATE: &str = "https://promo-policy.dev/policy-bundle/v1";

/// The only hash algorithm accepted in a signature's file list.
const SHA256: &str = "SHA-256";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignaturesFile {
    signatures: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kid: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileHash {
    name: String,
    hash: String,
    algorithm: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    files: Vec<FileHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    keyid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
}

/// Why a bundle cannot be signed, or its signature does not verify. A parser's or
/// decoder's error is the `source`, not repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A JSON bundle file (or the manifest) is not JSON, so it cannot be hashed as OPA
    /// hashes it.
    #[error("`{path}` is not JSON")]
    FileNotJson {
        /// The file, relative to the bundle root.
        path: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A part of the JWS could not be encoded.
    #[error("cannot encode the {what}")]
    Encode {
        /// `JWS header`, `JWS payload` or `signatures file`.
        what: &'static str,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A P-256 signature could not be read back from DER.
    #[error("ECDSA signature")]
    Ecdsa(#[source] p256::ecdsa::Error),
    /// `.signatures.json` is not `{"signatures": [JWS]}`.
    #[error("`.signatures.json` is not `{{\"signatures\": [JWS]}}`")]
    SignaturesFile(#[source] serde_json::Error),
    /// `.signatures.json` holds other than one signature.
    #[error("`.signatures.json` must hold exactly one signature, it holds {0}")]
    Count(usize),
    /// The signature is not `header.payload.signature`.
    #[error("the signature is not a compact JWS (three `.`-separated parts)")]
    NotCompact,
    /// A JWS part is not base64url.
    #[error("JWS {what} is not base64url")]
    Base64 {
        /// `header`, `payload` or `signature`.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: base64::DecodeError,
    },
    /// The JWS header or payload is not the JSON expected.
    #[error("JWS {what}")]
    Json {
        /// `header` or `payload`.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The header names a key the trust file does not trust for bundles.
    #[error("signed by key `{0}`, which the trust file does not trust for `{BUNDLE_PREDICATE}`")]
    UntrustedKey(String),
    /// The header names no key, and no key is trusted for bundles.
    #[error("no key in the trust file is trusted for `{BUNDLE_PREDICATE}`")]
    NoTrustedKey,
    /// No candidate key verifies the signature.
    #[error("the signature (alg `{alg}`) does not verify with {keys}")]
    DoesNotVerify {
        /// The header's `alg`.
        alg: String,
        /// The keys tried, in backticks.
        keys: String,
    },
    /// A file is listed with another hash algorithm.
    #[error("`{name}` is hashed with `{algorithm}`; only {SHA256} is accepted")]
    Algorithm {
        /// The file listed.
        name: String,
        /// Its algorithm.
        algorithm: String,
    },
    /// A file is listed twice.
    #[error("the signature lists `{0}` twice")]
    ListedTwice(String),
    /// A bundle file the signature does not list.
    #[error("`{0}` is in the bundle but not in the signed set")]
    NotSigned(String),
    /// A bundle file whose hash differs from the signed one.
    #[error("`{0}` does not match its signed hash (tampered)")]
    Tampered(String),
    /// A listed file the bundle lacks.
    #[error("`{0}` is signed but missing from the bundle")]
    Missing(String),
    /// No `.signatures.json` where the trust file requires one.
    #[error("the bundle has no `{SIGNATURES}` and the trust file sets `requireSignedBundle`")]
    Required,
}

fn jws_alg(algorithm: KeyAlgorithm) -> &'static str {
    match algorithm {
        KeyAlgorithm::Ed25519 => "EdDSA",
        KeyAlgorithm::EcdsaP256 => "ES256",
    }
}

/// The SHA-256 of one bundle file, hex, as OPA computes it.
pub fn file_hash(file: &RawFile) -> Result<String, SignatureError> {
    let name = file.path.rsplit('/').next().unwrap_or(&file.path);
    let mut h = Sha256::new();
    if name.ends_with(".json") || name == MANIFEST {
        let value: Value =
            serde_json::from_slice(&file.bytes).map_err(|source| SignatureError::FileNotJson {
                path: file.path.clone(),
                source,
            })?;
        // OPA's walk writes what our canonical JSON writes (sorted keys, no spaces, Go's
        // string escaping), except that Go also escapes U+2028 and U+2029.
        let canonical = String::from_utf8_lossy(&crate::decision::canonical_json(&value))
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029");
        h.update(canonical.as_bytes());
    } else {
        h.update(&file.bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// `.signatures.json` for `files` (every bundle file but the signatures), signed by `key`
/// under the trust-file id `keyid`.
pub fn sign(files: &[RawFile], key: &SigningKey, keyid: &str) -> Result<String, SignatureError> {
    let mut hashes = files
        .iter()
        .map(|f| {
            Ok(FileHash {
                name: f.path.clone(),
                hash: file_hash(f)?,
                algorithm: SHA256.into(),
            })
        })
        .collect::<Result<Vec<_>, SignatureError>>()?;
    hashes.sort_by(|a, b| a.name.cmp(&b.name));
    let header = Header {
        alg: jws_alg(key.algorithm()).into(),
        kid: Some(keyid.into()),
    };
    let claims = Claims {
        files: hashes,
        keyid: Some(keyid.into()),
        scope: None,
        iat: None,
        iss: Some("promo-policy".into()),
    };
    let signing_input = format!(
        "{}.{}",
        b64_json("JWS header", &header)?,
        b64_json("JWS payload", &claims)?
    );
    let mut sig = key.sign(signing_input.as_bytes());
    if key.algorithm() == KeyAlgorithm::EcdsaP256 {
        // JWS ES256 carries r||s, not DER.
        sig = p256::ecdsa::Signature::from_der(&sig)
            .map_err(SignatureError::Ecdsa)?
            .to_bytes()
            .to_vec();
    }
    let jws = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig));
    serde_json::to_string_pretty(&SignaturesFile {
        signatures: vec![jws],
    })
    .map_err(|source| SignatureError::Encode {
        what: "signatures file",
        source,
    })
}

/// One JWS part: the value's JSON, base64url without padding.
fn b64_json<T: Serialize>(what: &'static str, value: &T) -> Result<String, SignatureError> {
    let bytes =
        serde_json::to_vec(value).map_err(|source| SignatureError::Encode { what, source })?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks `.signatures.json` against `files` (every other bundle file) and the keys that
/// may sign bundles; returns the id of the key that signed. Every file must be listed with
/// its hash and every listed file must be there: nothing outside the signed set loads.
pub fn verify(
    signatures: &[u8],
    files: &[RawFile],
    keys: &[&TrustedKey],
) -> Result<String, SignatureError> {
    let parsed: SignaturesFile =
        serde_json::from_slice(signatures).map_err(SignatureError::SignaturesFile)?;
    let [jws] = parsed.signatures.as_slice() else {
        return Err(SignatureError::Count(parsed.signatures.len()));
    };
    let parts: Vec<&str> = jws.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts.as_slice() else {
        return Err(SignatureError::NotCompact);
    };
    let decode = |what: &'static str, s: &str| {
        URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|source| SignatureError::Base64 { what, source })
    };
    let json = |what: &'static str| move |source| SignatureError::Json { what, source };
    let header: Header =
        serde_json::from_slice(&decode("header", header_b64)?).map_err(json("header"))?;
    let claims: Claims =
        serde_json::from_slice(&decode("payload", claims_b64)?).map_err(json("payload"))?;
    let sig = decode("signature", sig_b64)?;
    let kid = header.kid.as_deref().or(claims.keyid.as_deref());
    let candidates: Vec<&&TrustedKey> = keys
        .iter()
        .filter(|k| kid.is_none_or(|id| id == k.id))
        .collect();
    if candidates.is_empty() {
        return Err(match kid {
            Some(id) => SignatureError::UntrustedKey(id.to_string()),
            None => SignatureError::NoTrustedKey,
        });
    }
    let signing_input = format!("{header_b64}.{claims_b64}");
    let signer = candidates
        .iter()
        .find(|k| {
            header.alg == jws_alg(k.key.algorithm()) && k.key.verify(signing_input.as_bytes(), &sig)
        })
        .ok_or_else(|| SignatureError::DoesNotVerify {
            alg: header.alg.clone(),
            keys: candidates
                .iter()
                .map(|k| format!("`{}`", k.id))
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    check_files(&claims.files, files)?;
    Ok(signer.id.clone())
}

/// The signed list and the bundle's files must be the same set with the same hashes.
fn check_files(listed: &[FileHash], files: &[RawFile]) -> Result<(), SignatureError> {
    let mut signed = BTreeMap::new();
    for f in listed {
        if f.algorithm != SHA256 {
            return Err(SignatureError::Algorithm {
                name: f.name.clone(),
                algorithm: f.algorithm.clone(),
            });
        }
        let name = f.name.trim_start_matches('/');
        if signed.insert(name, f.hash.as_str()).is_some() {
            return Err(SignatureError::ListedTwice(name.to_string()));
        }
    }
    for file in files {
        let Some(want) = signed.remove(file.path.as_str()) else {
            return Err(SignatureError::NotSigned(file.path.clone()));
        };
        if !file_hash(file)?.eq_ignore_ascii_case(want) {
            return Err(SignatureError::Tampered(file.path.clone()));
        }
    }
    if let Some(missing) = signed.keys().next() {
        return Err(SignatureError::Missing((*missing).to_string()));
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use crate::attest::trust::Grants;
    use crate::policy::archive::tests::file;

    fn trusted(id: &str, key: &SigningKey) -> TrustedKey {
        TrustedKey {
            id: id.into(),
            key: key.public_key(),
            grants: Grants::default(),
        }
    }

    fn bundle() -> Vec<RawFile> {
        vec![
            file("promo/x.rego", "package promo.x\n"),
            file("promo/data.json", r#"{"b": 1, "a": ["\u2028", "x"]}"#),
            file(MANIFEST, r#"{"revision": "r1", "roots": [""]}"#),
        ]
    }

    #[test]
    fn json_hashes_ignore_layout_and_key_order_as_opa_does() {
        let a = file_hash(&file("data.json", r#"{"b": 1, "a": [true, null, "é"]}"#)).unwrap();
        let b = file_hash(&file("data.json", "{\"a\":[true,null,\"é\"],\n \"b\":1}")).unwrap();
        assert_eq!(a, b);
        // The bytes OPA's walk hashes for that value.
        let want = hex::encode(Sha256::digest(r#"{"a":[true,null,"é"],"b":1}"#));
        assert_eq!(a, want);
        // Go escapes U+2028 where serde_json writes it raw.
        let sep = file_hash(&file("data.json", "{\"a\": \"\u{2028}\"}")).unwrap();
        assert_eq!(sep, hex::encode(Sha256::digest(r#"{"a":"\u2028"}"#)));
        let rego = file_hash(&file("x.rego", "package x\n")).unwrap();
        assert_eq!(rego, hex::encode(Sha256::digest("package x\n")));
    }

    #[test]
    fn both_key_kinds_sign_and_verify_and_name_the_signer() {
        for key in [SigningKey::generate(), SigningKey::generate_p256()] {
            let sigs = sign(&bundle(), &key, "bundles-2026").unwrap();
            let t = trusted("bundles-2026", &key);
            assert_eq!(
                verify(sigs.as_bytes(), &bundle(), &[&t]).unwrap(),
                "bundles-2026"
            );
        }
    }

    #[test]
    fn tampering_extra_missing_files_and_wrong_keys_are_refused() {
        let key = SigningKey::generate();
        let sigs = sign(&bundle(), &key, "k").unwrap();
        let t = trusted("k", &key);
        let mut files = bundle();
        files[0].bytes.extend_from_slice(b"allow := true\n");
        let e = verify(sigs.as_bytes(), &files, &[&t])
            .unwrap_err()
            .to_string();
        assert!(e.contains("tampered"), "{e}");
        let mut files = bundle();
        files.push(file("promo/extra.rego", "package promo.extra"));
        let e = verify(sigs.as_bytes(), &files, &[&t])
            .unwrap_err()
            .to_string();
        assert!(e.contains("not in the signed set"), "{e}");
        let e = verify(sigs.as_bytes(), &bundle()[..2], &[&t])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing from the bundle"), "{e}");
        let other = trusted("k", &SigningKey::generate());
        let e = verify(sigs.as_bytes(), &bundle(), &[&other])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not verify"), "{e}");
        let e = verify(sigs.as_bytes(), &bundle(), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not trust"), "{e}");
    }

    #[test]
    fn an_alg_the_key_does_not_have_is_refused() {
        // A P-256 trusted key and a token claiming EdDSA (alg confusion) must not verify.
        let p256 = SigningKey::generate_p256();
        let sigs = sign(&bundle(), &SigningKey::generate(), "k").unwrap();
        let e = verify(sigs.as_bytes(), &bundle(), &[&trusted("k", &p256)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not verify"), "{e}");
        let two = r#"{"signatures": ["a.b.c", "d.e.f"]}"#;
        let e = verify(two.as_bytes(), &bundle(), &[&trusted("k", &p256)])
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
    }

    #[test]
    fn a_parser_error_is_the_source_not_the_message() {
        let t = trusted("k", &SigningKey::generate());
        let err = verify(b"{\"signatures\": [", &bundle(), &[&t]).unwrap_err();
        assert!(matches!(err, SignatureError::SignaturesFile(_)), "{err:?}");
        let json = std::error::Error::source(&err).unwrap();
        assert!(json.downcast_ref::<serde_json::Error>().is_some(), "{json}");
        assert_eq!(
            crate::error_chain::ErrorChain(&err).to_string(),
            format!("{err}: {json}")
        );

        let bad = file("promo/data.json", "{not json");
        let err = sign(&[bad], &SigningKey::generate(), "k").unwrap_err();
        assert_eq!(err.to_string(), "`promo/data.json` is not JSON");
        assert!(std::error::Error::source(&err).is_some());

        let err = verify(br#"{"signatures": ["bm90.bm90.bm90"]}"#, &bundle(), &[&t]).unwrap_err();
        assert!(
            matches!(err, SignatureError::Json { what: "header", .. }),
            "{err:?}"
        );
    }
}

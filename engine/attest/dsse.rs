//! DSSE envelopes: parsing, serialising and the PAE that signatures cover; it must never treat
//! a signature as meaningful over anything but the PAE.
//!
//! Spec: <https://github.com/secure-systems-lab/dsse> (`protocol.md`, `envelope.md`).

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::attest::budget::{MAX_PAYLOAD_BYTES, MAX_SIGNATURES};
use crate::attest::AttestError;

/// The payloadType of an in-toto Statement, the only one promo-policy interprets.
pub const INTOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// DSSE says verifiers MUST accept both alphabets; real envelopes also drop the padding.
const PAD_INDIFFERENT: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, PAD_INDIFFERENT);
const URL_SAFE_ANY_PAD: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, PAD_INDIFFERENT);

/// A decoded DSSE envelope. Nothing in it is trusted until [`crate::attest::verify`] says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// `payloadType`: how to interpret `payload`; covered by the signature.
    pub payload_type: String,
    /// The decoded `payload` bytes (SERIALIZED_BODY).
    pub payload: Vec<u8>,
    /// The signatures, in envelope order.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One entry of an envelope's `signatures`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeSignature {
    /// `keyid`: an unauthenticated hint; only ever used to pick which key to try first.
    /// An empty string (as some signers write) reads as `None`.
    pub keyid: Option<String>,
    /// The decoded signature bytes.
    pub sig: Vec<u8>,
}

/// The Pre-Authentication Encoding of DSSE v1, the exact bytes every signature covers:
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal bytes.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = payload.len().to_string();
    let mut out = Vec::with_capacity(
        6 + 4 + type_len.len() + payload_type.len() + body_len.len() + payload.len(),
    );
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// Decodes base64 in the standard or the URL-safe alphabet, with or without padding.
///
/// A string that mixes both alphabets is rejected: no conforming encoder produces one.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    match STANDARD_ANY_PAD.decode(text) {
        Ok(bytes) => Ok(bytes),
        Err(standard_err) => URL_SAFE_ANY_PAD.decode(text).map_err(|url_err| {
            // Report the error of the alphabet the text looks like it was meant for.
            if text.contains(['-', '_']) {
                url_err.to_string()
            } else {
                standard_err.to_string()
            }
        }),
    }
}

/// Encodes in standard base64 with padding, as `envelope.md` recommends.
pub fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Envelope {
    /// Parses the JSON envelope, decoding `payload` and every `sig`.
    ///
    /// Unknown fields are ignored. Errors name the field (`signatures[1].sig`).
    pub fn from_json(value: &Value) -> Result<Envelope, AttestError> {
        let obj = value.as_object().ok_or(AttestError::EnvelopeNotObject)?;
        let payload_type = required_str(obj, "payloadType", "payloadType")?.to_owned();
        let payload_b64 = required_str(obj, "payload", "payload")?;
        // A cheap bound before decoding: base64 is 4 chars per 3 bytes.
        if payload_b64.len() / 4 * 3 > MAX_PAYLOAD_BYTES + 3 {
            return Err(AttestError::PayloadTooLarge {
                size: payload_b64.len() / 4 * 3,
                max: MAX_PAYLOAD_BYTES,
            });
        }
        let payload = decode_base64(payload_b64).map_err(|reason| AttestError::Base64 {
            field: "payload".into(),
            reason,
        })?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(AttestError::PayloadTooLarge {
                size: payload.len(),
                max: MAX_PAYLOAD_BYTES,
            });
        }

        let sigs = match obj.get("signatures") {
            None | Some(Value::Null) => {
                return Err(AttestError::MissingField {
                    field: "signatures".into(),
                })
            }
            Some(Value::Array(sigs)) => sigs,
            Some(_) => {
                return Err(AttestError::FieldType {
                    field: "signatures".into(),
                    expected: "an array",
                })
            }
        };
        if sigs.is_empty() {
            return Err(AttestError::NoSignatures);
        }
        if sigs.len() > MAX_SIGNATURES {
            return Err(AttestError::TooManySignatures {
                count: sigs.len(),
                max: MAX_SIGNATURES,
            });
        }
        let mut signatures = Vec::with_capacity(sigs.len());
        for (i, entry) in sigs.iter().enumerate() {
            let path = format!("signatures[{i}]");
            let entry = entry.as_object().ok_or_else(|| AttestError::FieldType {
                field: path.clone(),
                expected: "an object",
            })?;
            let sig_path = format!("{path}.sig");
            let sig_b64 = required_str(entry, "sig", &sig_path)?;
            let sig = decode_base64(sig_b64).map_err(|reason| AttestError::Base64 {
                field: sig_path,
                reason,
            })?;
            let keyid = match entry.get("keyid") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.is_empty() => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => {
                    return Err(AttestError::FieldType {
                        field: format!("{path}.keyid"),
                        expected: "a string",
                    })
                }
            };
            signatures.push(EnvelopeSignature { keyid, sig });
        }
        Ok(Envelope {
            payload_type,
            payload,
            signatures,
        })
    }

    /// The envelope as JSON, in standard padded base64, `keyid` omitted when `None`.
    pub fn to_json(&self) -> Value {
        let signatures: Vec<Value> = self
            .signatures
            .iter()
            .map(|s| {
                let mut m = Map::new();
                if let Some(keyid) = &s.keyid {
                    m.insert("keyid".into(), Value::String(keyid.clone()));
                }
                m.insert("sig".into(), Value::String(encode_base64(&s.sig)));
                Value::Object(m)
            })
            .collect();
        json!({
            "payloadType": self.payload_type,
            "payload": encode_base64(&self.payload),
            "signatures": signatures,
        })
    }

    /// The PAE of this envelope's payloadType and payload: what its signatures must cover.
    pub fn pae(&self) -> Vec<u8> {
        pae(&self.payload_type, &self.payload)
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a str, AttestError> {
    match obj.get(key) {
        None | Some(Value::Null) => Err(AttestError::MissingField { field: path.into() }),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(AttestError::FieldType {
            field: path.into(),
            expected: "a string",
        }),
    }
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
    use crate::attest::keys::PublicKey;

    /// From the DSSE spec, `protocol.md` "Test Vectors" and `implementation/signing_spec.py`
    /// (github.com/secure-systems-lab/dsse): ECDSA P-256/SHA-256, deterministic RFC 6979,
    /// raw r||s signature. The public point (X, Y given in decimal there) is written here
    /// as an SPKI PEM.
    const SPEC_P256_PUB: &str = "-----BEGIN PUBLIC KEY-----\n\
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEZ805D3eqNZywjCI19lInBJOp7YMr\n\
CrzAH3CVTAOQ0jgMeCvVTiaRJaRPRDOv8UMs6U4SvKc6pnrIDOoSYI3fdA==\n\
-----END PUBLIC KEY-----\n";
    const SPEC_ENVELOPE: &str = r#"{"payload": "aGVsbG8gd29ybGQ=",
 "payloadType": "http://example.com/HelloWorld",
 "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;

    #[test]
    fn pae_matches_the_spec_test_vector() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn pae_counts_bytes_not_chars_and_keeps_the_trailing_space_of_an_empty_body() {
        // "ä" is two bytes in UTF-8: LEN is 29, not 28.
        let p = pae("application/vnd.exämple+json", b"x");
        assert!(p.starts_with(b"DSSEv1 29 application/vnd.ex\xc3\xa4mple+json 1 x"));
        assert_eq!(pae("t", b""), b"DSSEv1 1 t 0 ".to_vec());
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn spec_envelope_parses_and_its_p256_raw_signature_verifies_over_the_pae() {
        let env = Envelope::from_json(&serde_json::from_str(SPEC_ENVELOPE).unwrap()).unwrap();
        assert_eq!(env.payload, b"hello world");
        assert_eq!(env.signatures.len(), 1);
        assert_eq!(
            env.signatures[0].sig.len(),
            64,
            "the spec's signature is raw r||s"
        );
        let key = PublicKey::from_pem(SPEC_P256_PUB).unwrap();
        assert!(key.verify(&env.pae(), &env.signatures[0].sig));
        // ... and not over the raw payload.
        assert!(!key.verify(&env.payload, &env.signatures[0].sig));
    }

    #[test]
    fn spec_signature_also_verifies_in_der_form() {
        let env = Envelope::from_json(&serde_json::from_str(SPEC_ENVELOPE).unwrap()).unwrap();
        let raw = p256::ecdsa::Signature::from_slice(&env.signatures[0].sig).unwrap();
        let der = raw.to_der().as_bytes().to_vec();
        assert_ne!(der.len(), 64);
        let key = PublicKey::from_pem(SPEC_P256_PUB).unwrap();
        assert!(key.verify(&env.pae(), &der));
    }

    /// Ed25519 vectors from github.com/secure-systems-lab/dsse `testvectors/vectors.json`
    /// (commit 82043adf78bb4e67c208f9ffa72b38804ea6a0c4), keys from RFC 8032 §7.1 TEST 1 (A)
    /// and TEST 2 (B). Checked here independently: the PAE hex given there equals ours.
    mod vectors {
        pub const SEED_A: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        pub const SEED_B: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
        pub const PUB_A: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        pub const STATEMENT_B64: &str =
            "eyJfdHlwZSI6Imh0dHBzOi8vaW4tdG90by5pby9TdGF0ZW1lbnQvdjEifQ==";
        pub const SIG_A: &str = "2WAfaHm5jluo0w+0rk8uVkluELJYWjSmU9x7EUzx+AyteDGJ4/nqyJXfmAUVFIAoQafWm7AxBZNw5M9ixNHiCA==";
        pub const SIG_B: &str = "c1+67/aT0yqEpwx8PsVY3MLHsj9D0CZ014/Fv/QlG59P+9CobUZ7xECJ/V3USG0Ob9CiE5LjReEZUzNF2l7eBw==";
        pub const PAE_HEX: &str = "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203433207b225f74797065223a2268747470733a2f2f696e2d746f746f2e696f2f53746174656d656e742f7631227d";
        pub const URLSAFE_PAYLOAD: &str = "-_-_Pj8=";
        pub const URLSAFE_SIG: &str = "P-_KHICeR7tI6S_YyejJTRtrXhcQyQ2LYPaL8h90KjC9qN8HU_svOQ6TuDOT1HIrsGW886DbWNWcCmX5twLrAw==";
        pub const URLSAFE_PAE_HEX: &str = "445353457631203238206170706c69636174696f6e2f766e642e696e2d746f746f2b6a736f6e203520fbffbf3e3f";
    }

    fn vector_key(seed_hex: &str) -> PublicKey {
        let seed: [u8; 32] = hex::decode(seed_hex).unwrap().try_into().unwrap();
        crate::attest::keys::SigningKey::ed25519_from_seed(&seed).public_key()
    }

    #[test]
    fn ed25519_vectors_verify_over_the_pae() {
        use vectors::*;
        let a = vector_key(SEED_A);
        let b = vector_key(SEED_B);
        assert_eq!(hex::encode(a.raw_public_bytes()), PUB_A);
        let env = Envelope::from_json(&json!({
            "payload": STATEMENT_B64, "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": SIG_A, "keyid": "A"}, {"sig": SIG_B}]
        }))
        .unwrap();
        assert_eq!(hex::encode(env.pae()), PAE_HEX);
        assert!(a.verify(&env.pae(), &env.signatures[0].sig));
        assert!(b.verify(&env.pae(), &env.signatures[1].sig));
        assert!(!a.verify(&env.pae(), &env.signatures[1].sig));
        assert_eq!(env.signatures[1].keyid, None);

        // The URL-safe vector: binary payload 0xfb 0xff 0xbf 0x3e 0x3f.
        let env = Envelope::from_json(&json!({
            "payload": URLSAFE_PAYLOAD, "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": URLSAFE_SIG}]
        }))
        .unwrap();
        assert_eq!(env.payload, vec![0xfb, 0xff, 0xbf, 0x3e, 0x3f]);
        assert_eq!(hex::encode(env.pae()), URLSAFE_PAE_HEX);
        assert!(a.verify(&env.pae(), &env.signatures[0].sig));

        // "payload-type-swapped": the same signature under another payloadType fails.
        let swapped = pae("application/vnd.example.other+json", &env.payload);
        assert!(!a.verify(&swapped, &env.signatures[0].sig));
    }

    #[test]
    fn base64_accepts_both_alphabets_with_and_without_padding() {
        let bytes = vec![0xfb, 0xff, 0xbf, 0x3e, 0x3f];
        for text in ["+/+/Pj8=", "+/+/Pj8", "-_-_Pj8=", "-_-_Pj8"] {
            assert_eq!(decode_base64(text).unwrap(), bytes, "{text}");
        }
        assert_eq!(decode_base64("aGk=").unwrap(), b"hi");
        assert_eq!(decode_base64("aGk").unwrap(), b"hi");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("+/-_").is_err(), "mixed alphabets");
        assert!(decode_base64("a").is_err());
        assert!(decode_base64("not base64!").is_err());
    }

    #[test]
    fn from_json_names_the_missing_or_broken_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!("a string"), "envelope is not a JSON object"),
            (
                json!({"payload": "", "signatures": []}),
                "envelope is missing `payloadType`",
            ),
            (
                json!({"payloadType": "t", "signatures": []}),
                "envelope is missing `payload`",
            ),
            (
                json!({"payloadType": 1, "payload": ""}),
                "envelope field `payloadType` must be a string",
            ),
            (
                json!({"payloadType": "t", "payload": ""}),
                "envelope is missing `signatures`",
            ),
            (
                json!({"payloadType": "t", "payload": "", "signatures": {}}),
                "envelope field `signatures` must be an array",
            ),
            (
                json!({"payloadType": "t", "payload": "", "signatures": []}),
                "envelope has no signatures",
            ),
            (
                json!({"payloadType": "t", "payload": "", "signatures": [7]}),
                "envelope field `signatures[0]` must be an object",
            ),
            (
                json!({"payloadType": "t", "payload": "", "signatures": [{"keyid": "k"}]}),
                "envelope is missing `signatures[0].sig`",
            ),
            (
                json!({"payloadType": "t", "payload": "", "signatures": [{"sig": "", "keyid": 3}]}),
                "envelope field `signatures[0].keyid` must be a string",
            ),
        ];
        for (value, want) in cases {
            let err = Envelope::from_json(&value).unwrap_err().to_string();
            assert_eq!(err, want, "{value}");
        }
    }

    #[test]
    fn from_json_reports_bad_base64_by_field() {
        let err = Envelope::from_json(&json!({
            "payloadType": "t", "payload": "%%%", "signatures": [{"sig": ""}]
        }))
        .unwrap_err();
        assert!(
            err.to_string().starts_with("bad base64 in `payload`: "),
            "{err}"
        );
        let err = Envelope::from_json(&json!({
            "payloadType": "t", "payload": "aGk=",
            "signatures": [{"sig": "aGk="}, {"sig": "a$b"}]
        }))
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad base64 in `signatures[1].sig`: "),
            "{err}"
        );
    }

    #[test]
    fn from_json_enforces_the_signature_budget() {
        let sigs: Vec<Value> = (0..=MAX_SIGNATURES)
            .map(|_| json!({"sig": "aGk="}))
            .collect();
        let err =
            Envelope::from_json(&json!({"payloadType": "t", "payload": "", "signatures": sigs}))
                .unwrap_err();
        assert!(
            matches!(err, AttestError::TooManySignatures { .. }),
            "{err}"
        );
    }

    #[test]
    fn empty_keyid_reads_as_none_and_to_json_round_trips() {
        let env = Envelope::from_json(&json!({
            "payloadType": "t", "payload": "-_-_", "signatures": [{"sig": "aGk", "keyid": ""}, {"sig": "aGk=", "keyid": "k1"}]
        }))
        .unwrap();
        assert_eq!(env.signatures[0].keyid, None);
        let out = env.to_json();
        assert_eq!(out["payload"], "+/+/");
        assert_eq!(out["signatures"][0], json!({"sig": "aGk="}));
        assert_eq!(out["signatures"][1], json!({"keyid": "k1", "sig": "aGk="}));
        assert_eq!(Envelope::from_json(&out).unwrap(), env);
    }
}

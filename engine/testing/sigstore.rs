//! A test Sigstore instance (test support only): a certificate authority issuing Fulcio-style
//! leaf certificates, a transparency log signing entries, inclusion proofs and checkpoints, and
//! the `trusted_root.json` naming both, so keyless verification can be tested offline against
//! bundles whose every part a test controls.
//!
//! Every key is derived from a seed, and ECDSA signatures are deterministic (RFC 6979):
//! the same inputs give byte-identical certificates and bundles, so corpus files signed
//! with it only change when their inputs do. Nothing here is trusted by a real root.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::EncodePublicKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use x509_cert::der::asn1::{BitString, Ia5String, OctetString, UtcTime, Utf8StringRef};
use x509_cert::der::oid::ObjectIdentifier as Oid;
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectAltName,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate, Version};

use crate::attest::keyless::BUNDLE_MEDIA_TYPES;
use crate::attest::INTOTO_PAYLOAD_TYPE;

const ECDSA_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
const CODE_SIGNING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.3");
/// Fulcio's OIDC issuer extension (v2, a DER UTF8String).
const FULCIO_ISSUER: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.8");
const SOURCE_REPOSITORY_URI: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.12");
const SOURCE_REPOSITORY_REF: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.14");
const BUILD_TRIGGER: Oid = Oid::new_unwrap("1.3.6.1.4.1.57264.1.20");
/// 2020-01-01T00:00:00Z: when the test CA and log begin.
const EPOCH: i64 = 1_577_836_800;
/// 2040-01-01T00:00:00Z: when the test CA ends.
const CA_END: i64 = 2_208_988_800;
const LOG_ORIGIN: &str = "rekor.test.promo-policy.invalid";

/// `../shared/fixtures/sigstore` beside the project (real bundles and roots from other
/// projects, read in place; see its README). Missing, it is a failure under `CI=true`
/// (CI has it) and a skip, said aloud with the folder named, elsewhere.
#[allow(
    clippy::panic,
    reason = "test support: a missing fixture folder in CI fails the test"
)]
pub fn shared_fixtures() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/sigstore");
    if dir.join("README.md").is_file() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "CI=true but the shared fixtures folder `{}` is missing",
            dir.display()
        );
    }
    eprintln!(
        "skipped: the shared fixtures folder `{}` is missing",
        dir.display()
    );
    None
}

/// What a leaf certificate says about the workload it was issued to.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// The SAN URI (for GitHub Actions, the workflow with its ref).
    pub subject: String,
    /// The OIDC issuer extension.
    pub issuer: String,
    /// `sourceRepositoryURI`, when set.
    pub source_repository: Option<String>,
    /// `sourceRepositoryRef`, when set.
    pub source_ref: Option<String>,
    /// `buildTrigger`, when set.
    pub build_trigger: Option<String>,
    /// Validity start, Unix seconds.
    pub not_before: i64,
    /// Validity end, Unix seconds (Fulcio issues ten-minute certificates).
    pub not_after: i64,
    /// Seed of the leaf's key.
    pub key_seed: u8,
}

impl LeafSpec {
    /// A GitHub Actions workflow of `repo` (e.g. `example/payments-api`) on `main`,
    /// valid for ten minutes from `not_before`.
    pub fn github_workflow(repo: &str, workflow: &str, not_before: i64) -> LeafSpec {
        LeafSpec {
            subject: format!(
                "https://github.com/{repo}/.github/workflows/{workflow}@refs/heads/main"
            ),
            issuer: "https://token.actions.githubusercontent.com".into(),
            source_repository: Some(format!("https://github.com/{repo}")),
            source_ref: Some("refs/heads/main".into()),
            build_trigger: Some("push".into()),
            not_before,
            not_after: not_before + 600,
            key_seed: 0x51,
        }
    }
}

/// A leaf certificate and its key.
pub struct Leaf {
    /// DER of the certificate.
    pub der: Vec<u8>,
    key: SigningKey,
}

/// One log entry as it goes into a bundle's `tlogEntries`.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The entry's `integratedTime`, Unix seconds.
    pub integrated_time: i64,
    /// The entry's index in the log.
    pub log_index: u64,
}

/// The test CA and log.
pub struct TestSigstore {
    ca_key: SigningKey,
    ca_der: Vec<u8>,
    ca_name: Name,
    log_key: SigningKey,
    log_spki: Vec<u8>,
    ct_spki: Vec<u8>,
}

/// Errors of test support, as text: a fixture that cannot be built is a broken test.
type R<T> = Result<T, String>;

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn key(seed: u8) -> R<SigningKey> {
    // Any 32 equal bytes from 1 to 0xfe is a valid P-256 scalar.
    let bytes = [seed.clamp(1, 0xfe); 32];
    SigningKey::from_bytes(&bytes.into()).map_err(err)
}

fn spki_der(key: &SigningKey) -> R<Vec<u8>> {
    key.verifying_key()
        .to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(err)
}

fn spki(key: &SigningKey) -> R<SubjectPublicKeyInfoOwned> {
    SubjectPublicKeyInfoOwned::from_der(&spki_der(key)?).map_err(err)
}

fn time(unix: i64) -> R<Time> {
    let secs = u64::try_from(unix).map_err(err)?;
    UtcTime::from_unix_duration(std::time::Duration::from_secs(secs))
        .map(Time::UtcTime)
        .map_err(err)
}

fn extension(oid: Oid, critical: bool, value: &impl Encode) -> R<Extension> {
    Ok(Extension {
        extn_id: oid,
        critical,
        extn_value: OctetString::new(value.to_der().map_err(err)?).map_err(err)?,
    })
}

fn utf8(oid: Oid, text: &str) -> R<Extension> {
    extension(oid, false, &Utf8StringRef::new(text).map_err(err)?)
}

/// Signs `tbs` with `key` into a certificate's DER.
fn certify(tbs: TbsCertificate, key: &SigningKey) -> R<Vec<u8>> {
    let sig: DerSignature = key.sign(&tbs.to_der().map_err(err)?);
    Certificate {
        tbs_certificate: tbs,
        signature_algorithm: AlgorithmIdentifierOwned {
            oid: ECDSA_SHA256,
            parameters: None,
        },
        signature: BitString::from_bytes(sig.as_bytes()).map_err(err)?,
    }
    .to_der()
    .map_err(err)
}

fn pem_certificate(der: &[u8]) -> String {
    let body = B64.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn leaf_hash(body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(body);
    h.finalize().into()
}

fn node_hash(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

impl TestSigstore {
    /// The instance whose keys derive from `seed` (another seed: another, untrusted,
    /// instance).
    pub fn new(seed: u8) -> R<TestSigstore> {
        let ca_key = key(seed)?;
        let log_key = key(seed.wrapping_add(1))?;
        let ct_key = key(seed.wrapping_add(2))?;
        let ca_name: Name = format!("CN=sigstore-test-ca-{seed},O=promo-policy test")
            .parse()
            .map_err(err)?;
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&[1]).map_err(err)?,
            signature: AlgorithmIdentifierOwned {
                oid: ECDSA_SHA256,
                parameters: None,
            },
            issuer: ca_name.clone(),
            validity: Validity {
                not_before: time(EPOCH)?,
                not_after: time(CA_END)?,
            },
            subject: ca_name.clone(),
            subject_public_key_info: spki(&ca_key)?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(vec![
                extension(
                    Oid::new_unwrap("2.5.29.19"),
                    true,
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: None,
                    },
                )?,
                extension(
                    Oid::new_unwrap("2.5.29.15"),
                    true,
                    &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
                )?,
            ]),
        };
        let ca_der = certify(tbs, &ca_key)?;
        Ok(TestSigstore {
            log_spki: spki_der(&log_key)?,
            ct_spki: spki_der(&ct_key)?,
            ca_key,
            ca_der,
            ca_name,
            log_key,
        })
    }

    /// The log's id: SHA-256 of its key's SPKI DER.
    pub fn log_id(&self) -> [u8; 32] {
        Sha256::digest(&self.log_spki).into()
    }

    /// The `trusted_root.json` of this instance: its CA and log, and with `ct_log` also a
    /// CT log (whose SCTs no test leaf carries).
    pub fn trusted_root(&self, ct_log: bool) -> Value {
        let start = "2020-01-01T00:00:00Z";
        let mut root = json!({
            "mediaType": crate::attest::roots::TRUSTED_ROOT_MEDIA_TYPE,
            "tlogs": [{
                "baseUrl": format!("https://{LOG_ORIGIN}"),
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(&self.log_spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}},
                "logId": {"keyId": B64.encode(self.log_id())},
            }],
            "certificateAuthorities": [{
                "subject": {"organization": "promo-policy test", "commonName": "sigstore-test-ca"},
                "uri": "https://fulcio.test.promo-policy.invalid",
                "certChain": {"certificates": [{"rawBytes": B64.encode(&self.ca_der)}]},
                "validFor": {"start": start},
            }],
            "ctlogs": [],
            "timestampAuthorities": [],
        });
        if ct_log {
            let id: [u8; 32] = Sha256::digest(&self.ct_spki).into();
            root["ctlogs"] = json!([{
                "baseUrl": "https://ctfe.test.promo-policy.invalid",
                "hashAlgorithm": "SHA2_256",
                "publicKey": {"rawBytes": B64.encode(&self.ct_spki), "keyDetails": "PKIX_ECDSA_P256_SHA_256", "validFor": {"start": start}},
                "logId": {"keyId": B64.encode(id)},
            }]);
        }
        root
    }

    /// Issues a Fulcio-style leaf: empty subject, the SAN critical, code-signing EKU,
    /// the issuer and the requested CI extensions.
    pub fn leaf(&self, spec: &LeafSpec) -> R<Leaf> {
        let key = key(spec.key_seed)?;
        let san = SubjectAltName(vec![GeneralName::UniformResourceIdentifier(
            Ia5String::new(&spec.subject).map_err(err)?,
        )]);
        let mut extensions = vec![
            extension(
                Oid::new_unwrap("2.5.29.15"),
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            )?,
            extension(
                Oid::new_unwrap("2.5.29.37"),
                false,
                &ExtendedKeyUsage(vec![CODE_SIGNING]),
            )?,
            extension(Oid::new_unwrap("2.5.29.17"), true, &san)?,
            utf8(FULCIO_ISSUER, &spec.issuer)?,
        ];
        for (oid, value) in [
            (SOURCE_REPOSITORY_URI, &spec.source_repository),
            (SOURCE_REPOSITORY_REF, &spec.source_ref),
            (BUILD_TRIGGER, &spec.build_trigger),
        ] {
            if let Some(v) = value {
                extensions.push(utf8(oid, v)?);
            }
        }
        // A positive serial derived from the spec: the same spec, the same certificate.
        let digest = Sha256::digest(format!("{spec:?}").as_bytes());
        let serial = [&[0x01][..], &digest[..8]].concat();
        let tbs = TbsCertificate {
            version: Version::V3,
            serial_number: SerialNumber::new(&serial).map_err(err)?,
            signature: AlgorithmIdentifierOwned {
                oid: ECDSA_SHA256,
                parameters: None,
            },
            issuer: self.ca_name.clone(),
            validity: Validity {
                not_before: time(spec.not_before)?,
                not_after: time(spec.not_after)?,
            },
            subject: Name::default(),
            subject_public_key_info: spki(&key)?,
            issuer_unique_id: None,
            subject_unique_id: None,
            extensions: Some(extensions),
        };
        Ok(Leaf {
            der: certify(tbs, &self.ca_key)?,
            key,
        })
    }

    /// A v0.3 bundle of `statement` signed by `leaf`, with a `dsse/0.0.1` entry in the
    /// test log: signed entry timestamp, and an inclusion proof in a two-leaf tree with a
    /// signed checkpoint.
    pub fn bundle(&self, statement: &Value, leaf: &Leaf, log: &LogOptions) -> R<Value> {
        let payload = serde_json::to_vec(statement).map_err(err)?;
        let pae = crate::attest::pae(INTOTO_PAYLOAD_TYPE, &payload);
        let sig: DerSignature = leaf.key.sign(&pae);
        let envelope = json!({
            "payload": B64.encode(&payload),
            "payloadType": INTOTO_PAYLOAD_TYPE,
            "signatures": [{"sig": B64.encode(sig.as_bytes())}],
        });
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(envelope.to_string()))},
                "payloadHash": {"algorithm": "sha256", "value": hex::encode(Sha256::digest(&payload))},
                "signatures": [{"signature": B64.encode(sig.as_bytes()), "verifier": B64.encode(pem_certificate(&leaf.der))}],
            }
        });
        let body = serde_json::to_vec(&body).map_err(err)?;
        Ok(json!({
            "mediaType": BUNDLE_MEDIA_TYPES[3],
            "verificationMaterial": {
                "certificate": {"rawBytes": B64.encode(&leaf.der)},
                "tlogEntries": [self.entry(&body, log)],
            },
            "dsseEnvelope": envelope,
        }))
    }

    /// A `tlogEntries` item for `body`.
    fn entry(&self, body: &[u8], log: &LogOptions) -> Value {
        let log_id = self.log_id();
        // RFC 8785 form of the SET payload: keys sorted, no spaces.
        let set_payload = format!(
            r#"{{"body":"{}","integratedTime":{},"logID":"{}","logIndex":{}}}"#,
            B64.encode(body),
            log.integrated_time,
            hex::encode(log_id),
            log.log_index
        );
        let set: DerSignature = self.log_key.sign(set_payload.as_bytes());
        // A two-leaf tree: this entry at index 0, a sibling at 1.
        let leaf = leaf_hash(body);
        let sibling = leaf_hash(b"another entry");
        let root = node_hash(&leaf, &sibling);
        let note = format!("{LOG_ORIGIN} - 1\n2\n{}\n", B64.encode(root));
        let note_sig: DerSignature = self.log_key.sign(note.as_bytes());
        let signed = [&log_id[..4], note_sig.as_bytes()].concat();
        let checkpoint = format!("{note}\n\u{2014} {LOG_ORIGIN} {}\n", B64.encode(signed));
        json!({
            "logIndex": log.log_index.to_string(),
            "logId": {"keyId": B64.encode(log_id)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": log.integrated_time.to_string(),
            "inclusionPromise": {"signedEntryTimestamp": B64.encode(set.as_bytes())},
            "inclusionProof": {
                "logIndex": "0",
                "rootHash": B64.encode(root),
                "treeSize": "2",
                "hashes": [B64.encode(sibling)],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": B64.encode(body),
        })
    }
}

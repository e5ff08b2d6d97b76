//! Public keys (SPKI PEM) and signing keys (PKCS#8 PEM) for Ed25519 and ECDSA P-256; it must
//! never panic on a malformed key or signature, and never verify anything but the exact bytes
//! it is given.
//!
//! A key's `keyid` is the lowercase hex SHA-256 of its SPKI DER (CONTRACT §3), the same
//! value `openssl pkey -pubin -outform DER | sha256sum` prints for the key file.

use std::fmt;

use ed25519_dalek::pkcs8::KeypairBytes;
// `p256::pkcs8` is the whole pkcs8 crate (with `der` and `spki`); ed25519-dalek shares it.
use p256::pkcs8::der::pem::LineEnding;
use p256::pkcs8::spki::SubjectPublicKeyInfoRef;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, Document, EncodePrivateKey, ObjectIdentifier,
    PrivateKeyInfo, SecretDocument,
};
use sha2::{Digest, Sha256};

use crate::attest::AttestError;

const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";
const OID_SECP256K1: &str = "1.3.132.0.10";
const OID_RSA: &str = "1.2.840.113549.1.1.1";

/// SPKI DER of an Ed25519 key is this fixed prefix and the 32 key bytes (RFC 8410 §4).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// SPKI DER of an uncompressed P-256 key is this fixed prefix and the 65-byte SEC1 point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The signature algorithms a key can be for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KeyAlgorithm {
    /// Ed25519 (RFC 8032), 64-byte signatures.
    Ed25519,
    /// ECDSA over NIST P-256 with SHA-256; signatures in ASN.1 DER or raw 64-byte r||s.
    EcdsaP256,
}

impl KeyAlgorithm {
    /// A stable lowercase name, used in the trust-store digest.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Ed25519 => "ed25519",
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyAlgorithm::Ed25519 => "Ed25519",
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256",
        })
    }
}

#[derive(Clone)]
enum PublicInner {
    Ed25519(ed25519_dalek::VerifyingKey),
    EcdsaP256(p256::ecdsa::VerifyingKey),
}

/// A public key that signatures can be checked against.
#[derive(Clone)]
pub struct PublicKey {
    inner: PublicInner,
    spki_der: Vec<u8>,
    keyid: String,
}

impl PublicKey {
    /// Reads an SPKI (`-----BEGIN PUBLIC KEY-----`) PEM; the algorithm comes from the key.
    pub fn from_pem(pem: &str) -> Result<PublicKey, AttestError> {
        let (label, doc) = Document::from_pem(pem.trim()).map_err(|e| AttestError::PublicKey {
            reason: format!("not a PEM public key ({e})"),
        })?;
        if label != "PUBLIC KEY" {
            return Err(AttestError::PublicKey {
                reason: format!("expected a `PUBLIC KEY` PEM block, found `{label}`"),
            });
        }
        PublicKey::from_spki_der(doc.as_bytes())
    }

    /// Reads a DER-encoded SubjectPublicKeyInfo.
    pub fn from_spki_der(der: &[u8]) -> Result<PublicKey, AttestError> {
        let spki = SubjectPublicKeyInfoRef::try_from(der).map_err(|e| AttestError::PublicKey {
            reason: format!("not a SubjectPublicKeyInfo ({e})"),
        })?;
        let oid = spki.algorithm.oid.to_string();
        let inner = match oid.as_str() {
            OID_ED25519 => PublicInner::Ed25519(
                ed25519_dalek::VerifyingKey::from_public_key_der(der).map_err(|e| {
                    AttestError::PublicKey {
                        reason: format!("bad Ed25519 key ({e})"),
                    }
                })?,
            ),
            OID_EC_PUBLIC_KEY => {
                let curve = spki
                    .algorithm
                    .parameters_oid()
                    .map(|c| c.to_string())
                    .unwrap_or_default();
                if curve != OID_P256 {
                    return Err(AttestError::UnsupportedAlgorithm {
                        algorithm: format!("ECDSA {}", oid_name(&curve)),
                    });
                }
                PublicInner::EcdsaP256(
                    p256::ecdsa::VerifyingKey::from_public_key_der(der).map_err(|e| {
                        AttestError::PublicKey {
                            reason: format!("bad ECDSA P-256 key ({e})"),
                        }
                    })?,
                )
            }
            other => {
                return Err(AttestError::UnsupportedAlgorithm {
                    algorithm: oid_name(other),
                })
            }
        };
        Ok(PublicKey::with_der(inner, der.to_vec()))
    }

    fn with_der(inner: PublicInner, spki_der: Vec<u8>) -> PublicKey {
        let keyid = hex::encode(Sha256::digest(&spki_der));
        PublicKey {
            inner,
            spki_der,
            keyid,
        }
    }

    /// Lowercase hex SHA-256 of the SPKI DER.
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The algorithm this key verifies.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            PublicInner::Ed25519(_) => KeyAlgorithm::Ed25519,
            PublicInner::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The SPKI DER bytes the keyid is computed from.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The key as an SPKI PEM with LF line endings.
    pub fn to_pem(&self) -> String {
        // Encoding a byte string we hold can only fail on absurd lengths; an empty string
        // then is still not a usable key, so nothing downstream can mistake it for one.
        p256::pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &self.spki_der)
            .unwrap_or_default()
    }

    /// The raw key: 32 bytes for Ed25519, the 65-byte uncompressed SEC1 point for P-256.
    pub fn raw_public_bytes(&self) -> Vec<u8> {
        match &self.inner {
            PublicInner::Ed25519(k) => k.to_bytes().to_vec(),
            PublicInner::EcdsaP256(k) => k.to_encoded_point(false).as_bytes().to_vec(),
        }
    }

    /// Whether `sig` has a shape this key's algorithm could have produced (used only to
    /// explain a rejection; [`PublicKey::verify`] does its own checks).
    pub fn signature_well_formed(&self, sig: &[u8]) -> bool {
        match self.inner {
            PublicInner::Ed25519(_) => sig.len() == ed25519_dalek::SIGNATURE_LENGTH,
            PublicInner::EcdsaP256(_) => {
                (sig.len() == 64 && p256::ecdsa::Signature::from_slice(sig).is_ok())
                    || p256::ecdsa::Signature::from_der(sig).is_ok()
            }
        }
    }

    /// Whether `sig` is a valid signature of exactly `msg` by this key. Any length of `sig`
    /// is safe to pass.
    ///
    /// Ed25519 uses `verify_strict` (rejects small-order keys and non-canonical `R`, which
    /// no honest signer produces). P-256 accepts raw 64-byte r||s and ASN.1 DER, both seen
    /// in real envelopes, and high-S values (Go's `crypto/ecdsa` does not normalise them).
    pub fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match &self.inner {
            PublicInner::Ed25519(key) => match ed25519_dalek::Signature::from_slice(sig) {
                Ok(sig) => key.verify_strict(msg, &sig).is_ok(),
                Err(_) => false,
            },
            PublicInner::EcdsaP256(key) => {
                use p256::ecdsa::signature::Verifier as _;
                // A DER signature is 8 to 72 bytes, so it can be exactly 64: try raw first
                // when the length fits, then DER, and accept either.
                let raw_ok = sig.len() == 64
                    && p256::ecdsa::Signature::from_slice(sig)
                        .map(|s| key.verify(msg, &s).is_ok())
                        .unwrap_or(false);
                raw_ok
                    || p256::ecdsa::Signature::from_der(sig)
                        .map(|s| key.verify(msg, &s).is_ok())
                        .unwrap_or(false)
            }
        }
    }
}

/// Two keys are equal when they verify the same signatures: same algorithm and same key,
/// whatever the encoding they were read from (a P-256 point compressed or not gives two
/// SPKI DERs, and two keyids, for one signer). Thresholds and the trust file's
/// "each key once" rule rest on this.
impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.algorithm() == other.algorithm() && self.raw_public_bytes() == other.raw_public_bytes()
    }
}

impl Eq for PublicKey {}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({}, {})", self.algorithm(), self.keyid)
    }
}

enum SigningInner {
    Ed25519(ed25519_dalek::SigningKey),
    EcdsaP256(p256::ecdsa::SigningKey),
}

/// A private key. Decisions are signed with Ed25519; P-256 exists so tests and corpus
/// tooling can produce the attestations real ECDSA builders emit.
pub struct SigningKey {
    inner: SigningInner,
}

impl SigningKey {
    /// A fresh Ed25519 key from the operating system's RNG.
    pub fn generate() -> SigningKey {
        SigningKey {
            inner: SigningInner::Ed25519(ed25519_dalek::SigningKey::generate(
                &mut rand_core::OsRng,
            )),
        }
    }

    /// A fresh ECDSA P-256 key from the operating system's RNG.
    pub fn generate_p256() -> SigningKey {
        SigningKey {
            inner: SigningInner::EcdsaP256(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng)),
        }
    }

    /// An Ed25519 key from a 32-byte seed (RFC 8032 secret key): deterministic, for tests.
    pub fn ed25519_from_seed(seed: &[u8; 32]) -> SigningKey {
        SigningKey {
            inner: SigningInner::Ed25519(ed25519_dalek::SigningKey::from_bytes(seed)),
        }
    }

    /// Reads an unencrypted PKCS#8 (`-----BEGIN PRIVATE KEY-----`) PEM, Ed25519 or P-256.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, AttestError> {
        let (label, doc) =
            SecretDocument::from_pem(pem.trim()).map_err(|e| AttestError::PrivateKey {
                reason: format!("not a PEM private key ({e})"),
            })?;
        if label == "ENCRYPTED PRIVATE KEY" {
            return Err(AttestError::PrivateKey {
                reason: "encrypted PKCS#8 keys are not supported".into(),
            });
        }
        if label != "PRIVATE KEY" {
            return Err(AttestError::PrivateKey {
                reason: format!("expected a PKCS#8 `PRIVATE KEY` PEM block, found `{label}`"),
            });
        }
        let der = doc.as_bytes();
        let info = PrivateKeyInfo::try_from(der).map_err(|e| AttestError::PrivateKey {
            reason: format!("not a PKCS#8 PrivateKeyInfo ({e})"),
        })?;
        let oid = info.algorithm.oid.to_string();
        let inner = match oid.as_str() {
            OID_ED25519 => {
                SigningInner::Ed25519(ed25519_dalek::SigningKey::from_pkcs8_der(der).map_err(
                    |e| AttestError::PrivateKey {
                        reason: format!("bad Ed25519 key ({e})"),
                    },
                )?)
            }
            OID_EC_PUBLIC_KEY => {
                let curve = info
                    .algorithm
                    .parameters_oid()
                    .map(|c: ObjectIdentifier| c.to_string())
                    .unwrap_or_default();
                if curve != OID_P256 {
                    return Err(AttestError::UnsupportedAlgorithm {
                        algorithm: format!("ECDSA {}", oid_name(&curve)),
                    });
                }
                SigningInner::EcdsaP256(p256::ecdsa::SigningKey::from_pkcs8_der(der).map_err(
                    |e| AttestError::PrivateKey {
                        reason: format!("bad ECDSA P-256 key ({e})"),
                    },
                )?)
            }
            other => {
                return Err(AttestError::UnsupportedAlgorithm {
                    algorithm: oid_name(other),
                })
            }
        };
        Ok(SigningKey { inner })
    }

    /// The key as an unencrypted PKCS#8 PEM with LF line endings.
    ///
    /// Ed25519 is written as PKCS#8 v1 (seed only), the form `openssl genpkey` writes and
    /// every toolchain (OpenSSL, Go, Python) reads.
    pub fn to_pkcs8_pem(&self) -> Result<String, AttestError> {
        let doc = match &self.inner {
            SigningInner::Ed25519(k) => KeypairBytes {
                secret_key: k.to_bytes(),
                public_key: None,
            }
            .to_pkcs8_der(),
            SigningInner::EcdsaP256(k) => k.to_pkcs8_der(),
        }
        .map_err(|e| AttestError::PrivateKey {
            reason: format!("cannot encode as PKCS#8 ({e})"),
        })?;
        let pem =
            doc.to_pem("PRIVATE KEY", LineEnding::LF)
                .map_err(|e| AttestError::PrivateKey {
                    reason: format!("cannot encode as PEM ({e})"),
                })?;
        Ok(pem.as_str().to_owned())
    }

    /// The algorithm of this key.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match self.inner {
            SigningInner::Ed25519(_) => KeyAlgorithm::Ed25519,
            SigningInner::EcdsaP256(_) => KeyAlgorithm::EcdsaP256,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        // INVARIANT: the SPKI is built from fixed prefixes, so this is infallible and equal
        // to what the pkcs8 encoders produce (checked in the tests).
        match &self.inner {
            SigningInner::Ed25519(k) => {
                let vk = k.verifying_key();
                let mut der = ED25519_SPKI_PREFIX.to_vec();
                der.extend_from_slice(vk.as_bytes());
                PublicKey::with_der(PublicInner::Ed25519(vk), der)
            }
            SigningInner::EcdsaP256(k) => {
                let vk = *k.verifying_key();
                let mut der = P256_SPKI_PREFIX.to_vec();
                der.extend_from_slice(vk.to_encoded_point(false).as_bytes());
                PublicKey::with_der(PublicInner::EcdsaP256(vk), der)
            }
        }
    }

    /// The keyid of the matching public key.
    pub fn keyid(&self) -> String {
        self.public_key().keyid().to_owned()
    }

    /// Signs exactly `msg`: a 64-byte Ed25519 signature, or an ASN.1 DER ECDSA P-256/SHA-256
    /// signature (deterministic, RFC 6979). Callers sign the DSSE PAE, never a raw payload.
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match &self.inner {
            SigningInner::Ed25519(k) => {
                use ed25519_dalek::Signer as _;
                k.sign(msg).to_bytes().to_vec()
            }
            SigningInner::EcdsaP256(k) => {
                use p256::ecdsa::signature::Signer as _;
                let sig: p256::ecdsa::Signature = k.sign(msg);
                sig.to_der().as_bytes().to_vec()
            }
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "SigningKey({}, {})", self.algorithm(), self.keyid())
    }
}

fn oid_name(oid: &str) -> String {
    match oid {
        OID_RSA => "RSA".into(),
        OID_ED448 => "Ed448".into(),
        OID_P384 => "P-384".into(),
        OID_P521 => "P-521".into(),
        OID_SECP256K1 => "secp256k1".into(),
        "" => "with unknown curve".into(),
        other => other.into(),
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
    use p256::pkcs8::EncodePublicKey;

    const RSA_PUB: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCy8NrV43vf8/hCrXr1J1HhVski
EAGxqzrgatDRi4lPsML706rKKvqat96/p2Sv203l9TD7CuI0PYaffcNssIJ6LO1b
Opnvojw25JQveBguBYbkJglaLS6XT4iBg98Nbky+mX9Oad2Q9s/vnB8IQ1owB1Am
Zb3gd7GAlc/JOEewqQIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn ed25519_round_trips_through_pem_and_keyid_is_sha256_of_spki_der() {
        let sk = SigningKey::ed25519_from_seed(&[7; 32]);
        let pk = sk.public_key();
        let der = match &sk.inner {
            SigningInner::Ed25519(k) => k.verifying_key().to_public_key_der().unwrap(),
            SigningInner::EcdsaP256(_) => unreachable!(),
        };
        assert_eq!(
            pk.spki_der(),
            der.as_bytes(),
            "fixed prefix equals the encoder's output"
        );
        assert_eq!(pk.keyid(), hex::encode(Sha256::digest(der.as_bytes())));
        let reread = PublicKey::from_pem(&pk.to_pem()).unwrap();
        assert_eq!(reread, pk);
        assert_eq!(reread.keyid(), pk.keyid());
        assert_eq!(reread.algorithm(), KeyAlgorithm::Ed25519);

        let pem = sk.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let sk2 = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(sk2.public_key(), pk);
    }

    /// The same P-256 key as a PEM of its SPKI with a compressed point (33 bytes, not 65):
    /// different DER, different keyid, same signer.
    pub(crate) fn compressed_p256_pem(pk: &PublicKey) -> String {
        let point = match &pk.inner {
            PublicInner::EcdsaP256(k) => k.to_encoded_point(true).as_bytes().to_vec(),
            PublicInner::Ed25519(_) => panic!("not a P-256 key"),
        };
        let mut der = vec![0x30, 0x39];
        der.extend_from_slice(&P256_SPKI_PREFIX[2..23]);
        der.extend_from_slice(&[0x03, 0x22, 0x00]);
        der.extend_from_slice(&point);
        p256::pkcs8::der::pem::encode_string("PUBLIC KEY", LineEnding::LF, &der).unwrap()
    }

    #[test]
    fn a_key_read_from_a_compressed_point_equals_the_uncompressed_one() {
        let pk = SigningKey::generate_p256().public_key();
        let compressed = PublicKey::from_pem(&compressed_p256_pem(&pk)).unwrap();
        assert_ne!(compressed.spki_der(), pk.spki_der(), "two encodings");
        assert_ne!(compressed.keyid(), pk.keyid());
        assert_eq!(compressed, pk, "one key");
        let other = SigningKey::generate_p256().public_key();
        assert_ne!(compressed, other);
        let sig = SigningKey::generate_p256().sign(b"m");
        assert!(!compressed.verify(b"m", &sig));
    }

    #[test]
    fn p256_round_trips_and_its_spki_prefix_is_right() {
        let sk = SigningKey::generate_p256();
        let pk = sk.public_key();
        let der = match &sk.inner {
            SigningInner::EcdsaP256(k) => k.verifying_key().to_public_key_der().unwrap(),
            SigningInner::Ed25519(_) => unreachable!(),
        };
        assert_eq!(pk.spki_der(), der.as_bytes());
        assert_eq!(PublicKey::from_pem(&pk.to_pem()).unwrap(), pk);
        let sk2 = SigningKey::from_pkcs8_pem(&sk.to_pkcs8_pem().unwrap()).unwrap();
        assert_eq!(sk2.public_key(), pk);
        assert_eq!(sk2.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn ed25519_sign_verify_and_rejects_every_malformed_signature_without_panicking() {
        let sk = SigningKey::generate();
        let pk = sk.public_key();
        let sig = sk.sign(b"msg");
        assert!(pk.verify(b"msg", &sig));
        assert!(!pk.verify(b"msh", &sig));
        for len in [0, 1, 32, 63, 65, 128, 1000] {
            assert!(!pk.verify(b"msg", &vec![0u8; len]), "len {len}");
            assert!(!pk.verify(b"msg", &vec![0xffu8; len]), "len {len}");
        }
        assert!(!pk.verify(b"msg", &[0u8; 64]));
        assert!(!pk.verify(b"msg", &[0xffu8; 64]));
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        assert!(!pk.verify(b"msg", &flipped));
        assert!(pk.signature_well_formed(&sig));
        assert!(!pk.signature_well_formed(&sig[..63]));
    }

    #[test]
    fn p256_accepts_der_and_raw_and_high_s_and_rejects_garbage_of_any_length() {
        let sk = SigningKey::generate_p256();
        let pk = sk.public_key();
        let der = sk.sign(b"msg");
        assert_eq!(der[0], 0x30, "DER SEQUENCE");
        assert!(pk.verify(b"msg", &der));
        let sig = p256::ecdsa::Signature::from_der(&der).unwrap();
        let raw = sig.to_bytes().to_vec();
        assert_eq!(raw.len(), 64);
        assert!(pk.verify(b"msg", &raw));
        assert!(!pk.verify(b"other", &raw));
        assert!(!pk.verify(b"other", &der));

        // The high-S twin (r, n - s) is equally valid ECDSA; Go emits such signatures.
        let (r, s) = sig.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(pk.verify(b"msg", &high.to_bytes()));
        assert!(pk.verify(b"msg", high.to_der().as_bytes()));

        for len in [0, 1, 8, 63, 64, 65, 70, 72, 73, 200] {
            assert!(!pk.verify(b"msg", &vec![0u8; len]), "zeros, len {len}");
            assert!(!pk.verify(b"msg", &vec![0xffu8; len]), "ones, len {len}");
            let mut fake_der = vec![0x30u8, (len as u8).wrapping_sub(2)];
            fake_der.resize(len.max(2), 0x02);
            assert!(!pk.verify(b"msg", &fake_der), "fake der, len {len}");
        }
        assert!(
            !pk.signature_well_formed(&[0u8; 64]),
            "r = s = 0 is not a signature"
        );
        assert!(pk.signature_well_formed(&raw));
        assert!(pk.signature_well_formed(&der));
        let mut truncated = der.clone();
        truncated.pop();
        assert!(!pk.verify(b"msg", &truncated));
    }

    #[test]
    fn an_ed25519_signature_never_verifies_under_a_p256_key_and_vice_versa() {
        let ed = SigningKey::generate();
        let ec = SigningKey::generate_p256();
        assert!(!ec.public_key().verify(b"m", &ed.sign(b"m")));
        assert!(!ed.public_key().verify(b"m", &ec.sign(b"m")));
    }

    #[test]
    fn public_key_errors_are_precise() {
        let err = PublicKey::from_pem("not pem").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid public key: not a PEM public key"),
            "{err}"
        );
        let sk = SigningKey::generate();
        let err = PublicKey::from_pem(&sk.to_pkcs8_pem().unwrap())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid public key: expected a `PUBLIC KEY` PEM block, found `PRIVATE KEY`"
        );
        let err = PublicKey::from_pem(RSA_PUB).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsupported key algorithm `RSA` (expected Ed25519 or ECDSA P-256)"
        );
        // A P-384 SPKI.
        let p384 = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEmF70rYatSEHn3bcpGy/EOcrRsZjwa7vM
rBGbKh44WLv9X9c6Rl7NDf1aGRXbnwwagHj8katgrpClo8TtPKwfMIzxPHBOOe0z
/VfYpZOteH9zXiNgM4aGbrNWDxDyi571
-----END PUBLIC KEY-----
";
        let err = PublicKey::from_pem(p384).unwrap_err().to_string();
        assert_eq!(
            err,
            "unsupported key algorithm `ECDSA P-384` (expected Ed25519 or ECDSA P-256)"
        );
        assert!(PublicKey::from_spki_der(&[]).is_err());
        assert!(PublicKey::from_spki_der(&[0x30, 0x00]).is_err());
        let mut bad_point = P256_SPKI_PREFIX.to_vec();
        bad_point.extend_from_slice(&[0x04; 65]);
        assert!(PublicKey::from_spki_der(&bad_point).is_err());
    }

    #[test]
    fn private_key_errors_are_precise() {
        let err = SigningKey::from_pkcs8_pem("").unwrap_err().to_string();
        assert!(
            err.starts_with("invalid private key: not a PEM private key"),
            "{err}"
        );
        let pk = SigningKey::generate().public_key();
        let err = SigningKey::from_pkcs8_pem(&pk.to_pem())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid private key: expected a PKCS#8 `PRIVATE KEY` PEM block, found `PUBLIC KEY`"
        );
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let sk = SigningKey::ed25519_from_seed(&[0x42; 32]);
        let dbg = format!("{sk:?}");
        assert!(!dbg.contains("4242"), "{dbg}");
        assert!(dbg.starts_with("SigningKey(Ed25519, "));
    }
}

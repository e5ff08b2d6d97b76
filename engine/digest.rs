//! Digests as types: an in-toto digest set, and one SHA-256 value with its two spellings.
//!
//! Three shapes used to travel as strings and maps: `{"sha256": "<hex>"}` (in-toto's
//! `DigestSet`, in requests, statements and decisions), bare hex (a bundle's, a plugin's and
//! a trust file's own digest) and `sha256:<hex>` (OCI image references and descriptors).
//! [`DigestSet`] is the first; [`Sha256`] is one computed or parsed SHA-256 that prints as
//! either of the other two, so a search for a digest finds these two types.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

/// An in-toto `DigestSet`: algorithm name -> hex value, as written (`sha256`, `sha512`,
/// `gitCommit`, ...). Serialises as the plain JSON object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DigestSet(BTreeMap<String, String>);

impl DigestSet {
    /// `{"sha256": <hex of SHA-256(bytes)>}`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        Sha256::of(bytes).into()
    }

    /// `{"sha256": hex}`, the value as given.
    pub fn sha256_hex(hex: impl Into<String>) -> Self {
        DigestSet(BTreeMap::from([("sha256".to_owned(), hex.into())]))
    }

    /// The value under `algorithm` (exact name), if any.
    pub fn get(&self, algorithm: &str) -> Option<&str> {
        self.0.get(algorithm).map(String::as_str)
    }

    /// The value under `sha256`, if any.
    pub fn sha256(&self) -> Option<&str> {
        self.get("sha256")
    }

    /// Adds or replaces the value under `algorithm`.
    pub fn insert(&mut self, algorithm: impl Into<String>, value: impl Into<String>) {
        self.0.insert(algorithm.into(), value.into());
    }

    /// (algorithm, value) pairs, ordered by algorithm.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(a, v)| (a.as_str(), v.as_str()))
    }

    /// How many algorithms the set names.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set names no algorithm.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether this set (a statement subject's) names the same artifact as `artifact`: they
    /// share at least one algorithm, and every shared algorithm has an equal, non-empty
    /// value (hex compared without case).
    ///
    /// Requiring *all* shared algorithms to agree stops a subject that pairs the right
    /// sha256 with a wrong sha512 from matching. Algorithm names are compared without case
    /// too, so `SHA256` cannot sneak a second, conflicting value past the check.
    pub fn matches(&self, artifact: &DigestSet) -> bool {
        let mut shared = 0usize;
        for (alg, value) in self.iter() {
            for (art_alg, art_value) in artifact.iter() {
                if alg.eq_ignore_ascii_case(art_alg) {
                    if !value.eq_ignore_ascii_case(art_value) || value.is_empty() {
                        return false;
                    }
                    shared += 1;
                }
            }
        }
        shared > 0
    }
}

impl From<Sha256> for DigestSet {
    fn from(digest: Sha256) -> Self {
        DigestSet::sha256_hex(digest.hex())
    }
}

impl<A: Into<String>, V: Into<String>> FromIterator<(A, V)> for DigestSet {
    fn from_iter<I: IntoIterator<Item = (A, V)>>(iter: I) -> Self {
        DigestSet(
            iter.into_iter()
                .map(|(a, v)| (a.into(), v.into()))
                .collect(),
        )
    }
}

/// Why a string is not a SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The `sha256:` prefix is missing where it is required.
    #[error("is not a `sha256:` digest")]
    NotSha256,
    /// The hex part is not 64 lowercase hex digits.
    #[error("is not 64 lowercase hex digits")]
    BadHex,
}

/// One SHA-256 value. [`Sha256::hex`] spells it as bare lowercase hex (our bundle, plugin and
/// trust digests), `Display` as `sha256:<hex>` (OCI references and descriptors).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256([u8; 32]);

impl Sha256 {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: impl AsRef<[u8]>) -> Self {
        Sha256(sha2::Sha256::digest(bytes).into())
    }

    /// The value a finished hasher holds.
    pub fn finish(hasher: sha2::Sha256) -> Self {
        Sha256(hasher.finalize().into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Bare lowercase hex, 64 digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lowercase hex digits (no prefix). Upper case is refused: digests are
    /// compared as strings elsewhere (indexes, logs), where two spellings of one value
    /// would be two values.
    pub fn parse_hex(hex: &str) -> Result<Self, DigestError> {
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(DigestError::BadHex);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).map_err(|_| DigestError::BadHex)?;
        Ok(Sha256(out))
    }

    /// Parses `sha256:<64 lowercase hex>`, the OCI spelling.
    pub fn parse_prefixed(digest: &str) -> Result<Self, DigestError> {
        let hex = digest
            .strip_prefix("sha256:")
            .ok_or(DigestError::NotSha256)?;
        Self::parse_hex(hex)
    }

    /// Parses either spelling: `sha256:<hex>` or bare hex.
    pub fn parse_either(digest: &str) -> Result<Self, DigestError> {
        Self::parse_hex(digest.strip_prefix("sha256:").unwrap_or(digest))
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> DigestSet {
        pairs.iter().copied().collect()
    }

    #[test]
    fn matching_needs_a_shared_algorithm_and_agreement_on_all_of_them() {
        let art = set(&[("sha256", "abcd"), ("sha512", "ef01")]);
        assert!(
            set(&[("sha256", "ABCD")]).matches(&art),
            "hex compares without case"
        );
        assert!(set(&[("sha256", "abcd"), ("gitCommit", "1234")]).matches(&art));
        assert!(set(&[("SHA256", "abcd")]).matches(&art));
        assert!(!set(&[("sha256", "abcd"), ("sha512", "ffff")]).matches(&art));
        assert!(!set(&[("sha256", "abce")]).matches(&art));
        assert!(!set(&[("sha1", "abcd")]).matches(&art), "nothing shared");
        assert!(!set(&[("sha256", "abcd"), ("SHA256", "ffff")]).matches(&art));
        assert!(!set(&[]).matches(&art));
        assert!(!set(&[("sha256", "abcd")]).matches(&set(&[])));
        assert!(!set(&[("sha256", "")]).matches(&set(&[("sha256", "")])));
    }

    #[test]
    fn sha256_spells_hex_and_prefixed_and_parses_both() {
        let d = Sha256::of(b"abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(d.hex(), hex);
        assert_eq!(d.to_string(), format!("sha256:{hex}"));
        assert_eq!(Sha256::parse_hex(hex), Ok(d));
        assert_eq!(Sha256::parse_prefixed(&format!("sha256:{hex}")), Ok(d));
        assert_eq!(Sha256::parse_either(hex), Ok(d));
        assert_eq!(Sha256::parse_prefixed(hex), Err(DigestError::NotSha256));
        assert_eq!(
            Sha256::parse_hex(&hex.to_uppercase()),
            Err(DigestError::BadHex)
        );
        assert_eq!(Sha256::parse_hex(&hex[1..]), Err(DigestError::BadHex));
        assert_eq!(
            DigestSet::sha256_of(b"abc"),
            set(&[("sha256", hex)]),
            "a set from a value is {{sha256: hex}}"
        );
    }

    #[test]
    fn a_digest_set_is_the_plain_json_object() {
        let s = set(&[("sha256", "ab"), ("gitCommit", "cd")]);
        let json = serde_json::to_string(&s).unwrap_or_default();
        assert_eq!(json, r#"{"gitCommit":"cd","sha256":"ab"}"#);
        assert_eq!(serde_json::from_str::<DigestSet>(&json).ok(), Some(s));
    }
}

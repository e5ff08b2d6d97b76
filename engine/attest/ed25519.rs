//! Ed25519 checks for one key that verifies many signatures (the audit walk): the key's
//! multiples in a precomputed table, accepting exactly the signatures ed25519-dalek's
//! `verify_strict` accepts and never one more.
//!
//! `verify_strict` (ed25519-dalek 2.2) accepts a signature `R || s` on `M` by the key
//! `A` when `s` is canonical (below ℓ), `R` decompresses to a point not of small order,
//! `A` is not of small order, and the encoding of `[s]B − [k]A`, `k = SHA-512(R || A ||
//! M) mod ℓ`, is the bytes `R`. This computes the same point from two fixed-base tables
//! (the basepoint's, static, and `−A`'s, built once per key) instead of a double-scalar
//! multiplication, about a fifth less time a signature, and it skips decompressing `R`:
//! when the canonical encoding of `P = [s]B − [k]A` equals `R`, `R` decompresses to `P`
//! and is of small order exactly when `P` is; when it does not, `verify_strict` rejects
//! too. Same rule, no randomness: the accepted set is `verify_strict`'s.
//!
//! Why not `ed25519_dalek::verify_batch` (about twice as fast): its equation is not
//! multiplied by the cofactor, so a signature whose `R` carries a small-order component
//! (which `verify_strict` rejects) passes a batch whenever the batch's coefficient for it
//! is a multiple of that component's order, and the coefficients are derived from the
//! batch's contents, so a signer can search for a batch that passes. Rejecting
//! small-order `R` and `A` per signature does not close that (such an `R` has mixed
//! order), and testing each `R` for a small-order component costs a scalar
//! multiplication, as much as the batch saves.

use curve25519_dalek::constants::ED25519_BASEPOINT_TABLE;
use curve25519_dalek::edwards::EdwardsBasepointTable;
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::BasepointTable;
use sha2::{Digest, Sha512};

/// `−A` of one Ed25519 key as a fixed-base table (about 30 KB), and whether `A` is of
/// small order (then nothing verifies).
pub(crate) struct Prepared {
    minus_a: EdwardsBasepointTable,
    weak: bool,
}

impl Prepared {
    /// The table of `key` (a few hundred point additions, once).
    pub(crate) fn new(key: &ed25519_dalek::VerifyingKey) -> Self {
        Self {
            minus_a: EdwardsBasepointTable::create(&-key.to_edwards()),
            weak: key.is_weak(),
        }
    }

    /// Whether `sig` is a signature of `msg` by `key` (the key this table was built
    /// from) that `key.verify_strict` accepts.
    pub(crate) fn verify(&self, key: &ed25519_dalek::VerifyingKey, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <&[u8; 64]>::try_from(sig) else {
            return false;
        };
        if self.weak {
            return false;
        }
        let mut r = [0u8; 32];
        let mut s = [0u8; 32];
        r.copy_from_slice(&sig[..32]);
        s.copy_from_slice(&sig[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)) else {
            return false;
        };
        // `A` as the key's bytes were given, as `verify_strict` hashes it.
        let k = Sha512::new()
            .chain_update(r)
            .chain_update(key.as_bytes())
            .chain_update(msg)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&k.into());
        let p = ED25519_BASEPOINT_TABLE.mul_base(&s) + self.minus_a.mul_base(&k);
        p.compress().to_bytes() == r && !p.is_small_order()
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
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
    use sha2::{Digest, Sha512};

    use crate::attest::PublicKey;

    /// SPKI DER of an Ed25519 key is this prefix and the 32 key bytes (RFC 8410).
    const PREFIX: [u8; 12] = [
        0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
    ];

    fn k_of(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
        let h = Sha512::new()
            .chain_update(r)
            .chain_update(a)
            .chain_update(msg)
            .finalize();
        Scalar::from_bytes_mod_order_wide(&h.into())
    }

    fn scalar(n: u64) -> Scalar {
        Scalar::from(n) * Scalar::from(0x9E37_79B9_7F4A_7C15u64) + Scalar::from(n * n + 7)
    }

    /// A key from its point, as a reader of a trust file would get it.
    fn key(a: &EdwardsPoint) -> (VerifyingKey, PublicKey, PublicKey) {
        let bytes = a.compress().to_bytes();
        let vk = VerifyingKey::from_bytes(&bytes).unwrap();
        let der = [PREFIX.as_slice(), &bytes].concat();
        let plain = PublicKey::from_spki_der(&der).unwrap();
        let prepared = plain.clone().prepared();
        (vk, plain, prepared)
    }

    fn sig(r: &[u8; 32], s: &[u8; 32]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out[..32].copy_from_slice(r);
        out[32..].copy_from_slice(s);
        out
    }

    /// Both of our paths give `verify_strict`'s answer, and it is `expected`.
    fn judged(a: &EdwardsPoint, msg: &[u8], signature: &[u8; 64], expected: bool, case: &str) {
        let (vk, plain, prepared) = key(a);
        let strict = vk
            .verify_strict(msg, &Signature::from_bytes(signature))
            .is_ok();
        assert_eq!(strict, expected, "{case}: verify_strict");
        assert_eq!(plain.verify(msg, signature), strict, "{case}: plain key");
        assert_eq!(
            prepared.verify(msg, signature),
            strict,
            "{case}: prepared key"
        );
    }

    /// `R || s` signing `msg` under the secret scalar `a` with nonce point `big_r`.
    fn forge(a: &Scalar, big_r: &EdwardsPoint, r: &Scalar, msg: &[u8]) -> [u8; 64] {
        let pa = (ED25519_BASEPOINT_POINT * a).compress().to_bytes();
        let rb = big_r.compress().to_bytes();
        let s = r + k_of(&rb, &pa, msg) * a;
        sig(&rb, &s.to_bytes())
    }

    #[test]
    fn signatures_verify_strict_rejects_stay_rejected() {
        let msg = b"DSSEv1 28 application/vnd.in-toto+json 2 {}";
        let a = scalar(1);
        let big_a = ED25519_BASEPOINT_POINT * a;
        let r = scalar(2);
        let honest = forge(&a, &(ED25519_BASEPOINT_POINT * r), &r, msg);
        judged(&big_a, msg, &honest, true, "an honest signature");

        // R with a small-order component (mixed order, not small order): what a batch
        // equation without the cofactor lets through about half the time (order 2) or an
        // eighth (order 8). `[s]B - [k]A` is `[r]B`, without it.
        for t in &EIGHT_TORSION[1..] {
            let mixed = forge(&a, &(ED25519_BASEPOINT_POINT * r + t), &r, msg);
            judged(&big_a, msg, &mixed, false, "R of mixed order");
        }

        // R the identity (small order) with s = k·a: `[s]B - [k]A` is the identity, so the
        // plain check accepts it; the strict one does not.
        let id = EdwardsPoint::default().compress().to_bytes();
        let k = k_of(&id, &big_a.compress().to_bytes(), msg);
        let small_r = sig(&id, &(k * a).to_bytes());
        let (vk, _, _) = key(&big_a);
        assert!(vk.verify(msg, &Signature::from_bytes(&small_r)).is_ok());
        judged(&big_a, msg, &small_r, false, "R of small order");

        // A weak key (the identity): `R = [s]B` verifies under the plain check.
        let weak = EdwardsPoint::default();
        let rb = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
        let weak_sig = sig(&rb, &r.to_bytes());
        let (vk, _, _) = key(&weak);
        assert!(vk.verify(msg, &Signature::from_bytes(&weak_sig)).is_ok());
        judged(&weak, msg, &weak_sig, false, "a key of small order");

        // s not reduced: s + ℓ encodes the same scalar.
        let mut s_big = [0u8; 32];
        s_big.copy_from_slice(&honest[32..]);
        let ell = Scalar::ZERO - Scalar::ONE; // ℓ - 1
        let mut carry = 1u16;
        for (i, byte) in s_big.iter_mut().enumerate() {
            let sum = u16::from(*byte) + u16::from(ell.as_bytes()[i]) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let mut r_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&honest[..32]);
        judged(&big_a, msg, &sig(&r_bytes, &s_big), false, "s + ℓ");

        // Every single-bit change of the signature, and of the message.
        for bit in 0..512 {
            let mut flipped = honest;
            flipped[bit / 8] ^= 1 << (bit % 8);
            judged(&big_a, msg, &flipped, false, &format!("bit {bit} flipped"));
        }
        judged(
            &big_a,
            b"another message",
            &honest,
            false,
            "another message",
        );
        // Short, long and empty signatures.
        let (_, plain, prepared) = key(&big_a);
        for bad in [
            &honest[..63],
            &[honest.as_slice(), &[0]].concat()[..],
            &[][..],
        ] {
            assert!(!plain.verify(msg, bad) && !prepared.verify(msg, bad));
        }
    }

    #[test]
    fn a_key_with_a_small_order_component_verifies_as_verify_strict_says() {
        // A = [a]B + T (order 8): not weak, so `verify_strict` accepts a signature whose
        // `[k]T` vanishes (k a multiple of 8) and rejects the others. Both answers must
        // match, in both directions.
        let msg = b"payload";
        let a = scalar(3);
        let big_a = ED25519_BASEPOINT_POINT * a + EIGHT_TORSION[1];
        let ab = big_a.compress().to_bytes();
        let (mut accepted, mut rejected) = (0, 0);
        for n in 0..64u64 {
            let r = scalar(100 + n);
            let rb = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
            let k = k_of(&rb, &ab, msg);
            let s = r + k * a;
            let fits = k.as_bytes()[0] % 8 == 0;
            judged(
                &big_a,
                msg,
                &sig(&rb, &s.to_bytes()),
                fits,
                "mixed-order key",
            );
            if fits {
                accepted += 1;
            } else {
                rejected += 1;
            }
        }
        assert!(accepted > 0 && rejected > 0, "{accepted} / {rejected}");
        // Non-canonical encodings of R as the signer might send them: y + p for small y.
        for y in 0u8..19 {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + y;
            bytes[31] = 0x7f;
            if CompressedEdwardsY(bytes).decompress().is_some() {
                judged(
                    &big_a,
                    msg,
                    &sig(&bytes, &[0; 32]),
                    false,
                    "R not canonical",
                );
            }
        }
    }
}

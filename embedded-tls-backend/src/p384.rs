//! ECDSA verification on P-384 (FIPS 186-5 §6.4.2, curve from SP 800-186 §3.2.1.4), on
//! `crypto-bigint`'s fixed-size Montgomery arithmetic, which `p256` already links.
//!
//! Why not RustCrypto's `p384`: its field arithmetic (fiat-crypto, fully unrolled for 32-bit
//! limbs) costs 102 KB of Cortex-M flash for verification alone (measured with opt-level
//! "z" and fat LTO), which the boards' 256 KiB budget cannot carry; this module costs a few
//! KB. Verification handles public data only, so nothing here needs to run in constant
//! time. Tests check it against `p384` on random keys, messages and altered signatures.

use crypto_bigint::modular::constant_mod::{Residue, ResidueParams};
use crypto_bigint::{impl_modulus, Encoding, U384};

use crate::signature::SignatureError;

impl_modulus!(
    FieldModulus,
    U384,
    "fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffeffffffff0000000000000000ffffffff"
);
impl_modulus!(
    OrderModulus,
    U384,
    "ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973"
);

/// An element of the base field.
type Fe = Residue<FieldModulus, { U384::LIMBS }>;
/// An integer modulo the group order.
type Scalar = Residue<OrderModulus, { U384::LIMBS }>;

const B: U384 = U384::from_be_hex(
    "b3312fa7e23ee7e4988e056be3f82d19181d9c6efe8141120314088f5013875ac656398d8a2ed19d2a85c8edd3ec2aef",
);
const GX: U384 = U384::from_be_hex(
    "aa87ca22be8b05378eb1c71ef320ad746e1d3b628ba79b9859f741e082542a385502f25dbf55296c3a545e3872760ab7",
);
const GY: U384 = U384::from_be_hex(
    "3617de4a96262c6f5d9e98bf9292dc29f8f41dbd289a147ce9da3113b5f0b8c00a60b1ce1d7e819d7a431d7c90ea0e5f",
);
const LEN: usize = 48;

/// A point in Jacobian coordinates (`x = X/Z²`, `y = Y/Z³`); `Z = 0` is the point at
/// infinity.
#[derive(Clone, Copy)]
struct Point {
    x: Fe,
    y: Fe,
    z: Fe,
}

impl Point {
    const INFINITY: Point = Point {
        x: Fe::ONE,
        y: Fe::ONE,
        z: Fe::ZERO,
    };

    fn affine(x: Fe, y: Fe) -> Point {
        Point { x, y, z: Fe::ONE }
    }

    fn is_infinity(&self) -> bool {
        self.z == Fe::ZERO
    }

    /// 2P ("dbl-2001-b", for a = −3).
    fn double(&self) -> Point {
        if self.is_infinity() || self.y == Fe::ZERO {
            return Point::INFINITY;
        }
        let delta = self.z.square();
        let gamma = self.y.square();
        let beta = self.x.mul(&gamma);
        let t = self.x.sub(&delta).mul(&self.x.add(&delta));
        let alpha = t.add(&t).add(&t);
        let beta4 = beta.add(&beta).add(&beta.add(&beta));
        let x3 = alpha.square().sub(&beta4.add(&beta4));
        let z3 = self.y.add(&self.z).square().sub(&gamma).sub(&delta);
        let gamma2 = gamma.square();
        let gamma8 = {
            let g2 = gamma2.add(&gamma2);
            let g4 = g2.add(&g2);
            g4.add(&g4)
        };
        let y3 = alpha.mul(&beta4.sub(&x3)).sub(&gamma8);
        Point {
            x: x3,
            y: y3,
            z: z3,
        }
    }

    /// P + Q ("add-1998-cmo-2"), with the cases the formula does not cover.
    fn add(&self, other: &Point) -> Point {
        if self.is_infinity() {
            return *other;
        }
        if other.is_infinity() {
            return *self;
        }
        let z1z1 = self.z.square();
        let z2z2 = other.z.square();
        let u1 = self.x.mul(&z2z2);
        let u2 = other.x.mul(&z1z1);
        let s1 = self.y.mul(&other.z).mul(&z2z2);
        let s2 = other.y.mul(&self.z).mul(&z1z1);
        let h = u2.sub(&u1);
        let r = s2.sub(&s1);
        if h == Fe::ZERO {
            return if r == Fe::ZERO {
                self.double()
            } else {
                Point::INFINITY
            };
        }
        let hh = h.square();
        let hhh = hh.mul(&h);
        let v = u1.mul(&hh);
        let x3 = r.square().sub(&hhh).sub(&v.add(&v));
        let y3 = r.mul(&v.sub(&x3)).sub(&s1.mul(&hhh));
        let z3 = self.z.mul(&other.z).mul(&h);
        Point {
            x: x3,
            y: y3,
            z: z3,
        }
    }
}

/// A field element from 48 big-endian bytes, if below the modulus.
fn field_element(bytes: &[u8]) -> Option<Fe> {
    if bytes.len() != LEN {
        return None;
    }
    let value = U384::from_be_slice(bytes);
    (value < FieldModulus::MODULUS).then(|| Fe::new(&value))
}

/// A scalar in `[1, n − 1]` from 48 big-endian bytes.
fn nonzero_scalar(bytes: &[u8]) -> Option<U384> {
    let value = U384::from_be_slice(bytes);
    (value != U384::ZERO && value < OrderModulus::MODULUS).then_some(value)
}

/// The public key: an uncompressed SEC1 point (`04 || x || y`, SEC 1 §2.3.3) on the curve
/// (`y² = x³ − 3x + b`), not the point at infinity.
fn public_key(sec1: &[u8]) -> Option<Point> {
    let (&[4], coordinates) = sec1.split_at_checked(1)? else {
        return None;
    };
    let (x, y) = coordinates.split_at_checked(LEN)?;
    let (x, y) = (field_element(x)?, field_element(y)?);
    let three_x = x.add(&x).add(&x);
    let rhs = x.square().mul(&x).sub(&three_x).add(&Fe::new(&B));
    (y.square() == rhs).then(|| Point::affine(x, y))
}

/// Verifies `signature` (`r || s`, 96 bytes) over `prehash` with the key `sec1` (FIPS
/// 186-5 §6.4.2). A hash longer than 48 bytes is truncated to its leftmost 384 bits.
pub(crate) fn verify(sec1: &[u8], prehash: &[u8], signature: &[u8]) -> Result<(), SignatureError> {
    let key = public_key(sec1).ok_or(SignatureError::Unsupported("P-384 public key"))?;
    let (r, s) = signature
        .split_at_checked(LEN)
        .filter(|(_, s)| s.len() == LEN)
        .ok_or(SignatureError::Invalid)?;
    let (Some(r), Some(s)) = (nonzero_scalar(r), nonzero_scalar(s)) else {
        return Err(SignatureError::Invalid);
    };
    // e: the leftmost min(384, hash length) bits of the hash, as an integer.
    let mut e = [0u8; LEN];
    let take = prehash.len().min(LEN);
    e[LEN - take..].copy_from_slice(&prehash[..take]);
    let e = Scalar::new(&U384::from_be_slice(&e));

    let (w, invertible) = Scalar::new(&s).invert();
    if !bool::from(invertible) {
        return Err(SignatureError::Invalid);
    }
    let u1 = e.mul(&w).retrieve();
    let u2 = Scalar::new(&r).mul(&w).retrieve();

    // R = u1·G + u2·Q, one pass over both scalars (Shamir's trick).
    let g = Point::affine(Fe::new(&GX), Fe::new(&GY));
    let g_plus_q = g.add(&key);
    let mut sum = Point::INFINITY;
    for bit in (0..384).rev() {
        sum = sum.double();
        match (u1.bit_vartime(bit), u2.bit_vartime(bit)) {
            (true, true) => sum = sum.add(&g_plus_q),
            (true, false) => sum = sum.add(&g),
            (false, true) => sum = sum.add(&key),
            (false, false) => {}
        }
    }
    if sum.is_infinity() {
        return Err(SignatureError::Invalid);
    }
    let (z_inverse, _) = sum.z.invert();
    let x = sum.x.mul(&z_inverse.square()).retrieve();
    // x mod n: x < p < 2n.
    let v = if x >= OrderModulus::MODULUS {
        x.wrapping_sub(&OrderModulus::MODULUS)
    } else {
        x
    };
    if v.to_be_bytes() == r.to_be_bytes() {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use p384::ecdsa::signature::hazmat::PrehashSigner;
    use p384::ecdsa::{Signature, SigningKey};

    use super::*;

    /// A deterministic byte source (xorshift), so failures reproduce.
    struct Bytes(u64);

    impl Bytes {
        fn fill(&mut self, out: &mut [u8]) {
            for b in out {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                *b = self.0 as u8;
            }
        }
    }

    #[test]
    fn agrees_with_rustcrypto_p384_on_random_keys_and_altered_signatures() {
        let mut bytes = Bytes(0x9e37_79b9_7f4a_7c15);
        for round in 0..24 {
            let mut secret = [0u8; 48];
            bytes.fill(&mut secret);
            let Ok(key) = SigningKey::from_slice(&secret) else {
                continue;
            };
            let point = key.verifying_key().to_encoded_point(false);
            // SHA-256, SHA-384 and SHA-512 sized hashes (ecdsa-with-SHA256 on a P-384 key
            // is allowed in certificates; SHA-512 is truncated).
            let mut prehash: Vec<u8> = alloc::vec![0; [32, 48, 64][round % 3]];
            bytes.fill(&mut prehash);
            let signature: Signature = key.sign_prehash(&prehash).expect("signs");
            let raw = signature.to_bytes();
            assert_eq!(
                verify(point.as_bytes(), &prehash, &raw),
                Ok(()),
                "round {round}"
            );

            let mut altered = raw.to_vec();
            altered[round % 96] ^= 1 << (round % 8);
            assert_eq!(
                verify(point.as_bytes(), &prehash, &altered),
                Err(SignatureError::Invalid)
            );
            let mut other = prehash.clone();
            other[0] ^= 0x80;
            assert_eq!(
                verify(point.as_bytes(), &other, &raw),
                Err(SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn keys_off_the_curve_and_out_of_range_scalars_are_refused() {
        let key = SigningKey::from_slice(&[7u8; 48]).expect("key");
        let point = key.verifying_key().to_encoded_point(false);
        let prehash = [1u8; 48];
        let signature: Signature = key.sign_prehash(&prehash).expect("signs");
        let raw = signature.to_bytes();

        let mut off_curve = point.as_bytes().to_vec();
        off_curve[96] ^= 1;
        assert!(matches!(
            verify(&off_curve, &prehash, &raw),
            Err(SignatureError::Unsupported(_))
        ));
        let compressed = key.verifying_key().to_encoded_point(true);
        assert!(verify(compressed.as_bytes(), &prehash, &raw).is_err());

        let mut zero_r = raw.to_vec();
        zero_r[..48].fill(0);
        assert_eq!(
            verify(point.as_bytes(), &prehash, &zero_r),
            Err(SignatureError::Invalid)
        );
        let mut big_s = raw.to_vec();
        big_s[48..].copy_from_slice(&OrderModulus::MODULUS.to_be_bytes());
        assert_eq!(
            verify(point.as_bytes(), &prehash, &big_s),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            verify(point.as_bytes(), &prehash, &raw[..95]),
            Err(SignatureError::Invalid)
        );
    }
}

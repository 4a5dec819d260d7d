//! The hash function of a SCRAM mechanism and what RFC 5802 §2.2 builds on it: `H`, `HMAC`,
//! `Hi` (PBKDF2 with HMAC-H, as long as H's output) and `XOR`. SHA-1 is RFC 5802's, SHA-256
//! RFC 7677's (§3), SHA-512 the same construction (feature `sha-512`).
//!
//! Also the constant-time comparison that proofs, signatures and channel bindings are
//! checked with, so that how long a check takes tells nothing about the expected bytes.

use alloc::vec::Vec;

use hmac::{Hmac, Mac};
use sha1::Sha1;
#[cfg(feature = "sha-512")]
use sha2::Sha512;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ScramHash {
    /// SHA-1 (RFC 5802).
    Sha1,
    /// SHA-256 (RFC 7677).
    Sha256,
    /// SHA-512 (feature `sha-512`).
    #[cfg(feature = "sha-512")]
    Sha512,
}

impl ScramHash {
    /// All hashes, weakest first.
    #[cfg(feature = "sha-512")]
    pub const ALL: [ScramHash; 3] = [ScramHash::Sha1, ScramHash::Sha256, ScramHash::Sha512];
    /// All hashes, weakest first.
    #[cfg(not(feature = "sha-512"))]
    pub const ALL: [ScramHash; 2] = [ScramHash::Sha1, ScramHash::Sha256];

    /// Output length in bytes (the length of every key, proof and signature).
    pub const fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => 64,
        }
    }

    /// The hash's byte in a serialised cache entry.
    pub(super) const fn id(self) -> u8 {
        match self {
            ScramHash::Sha1 => 1,
            ScramHash::Sha256 => 2,
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => 3,
        }
    }

    /// The hash [`ScramHash::id`] gives `id`.
    pub(super) fn from_id(id: u8) -> Option<Self> {
        ScramHash::ALL.into_iter().find(|h| h.id() == id)
    }

    /// H(data).
    pub(crate) fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC(key, data).
    pub(crate) fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        const ANY_KEY: &str = "HMAC accepts keys of any length";
        match self {
            ScramHash::Sha1 => {
                let mut m = Hmac::<Sha1>::new_from_slice(key).expect(ANY_KEY);
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha256 => {
                let mut m = Hmac::<Sha256>::new_from_slice(key).expect(ANY_KEY);
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => {
                let mut m = Hmac::<Sha512>::new_from_slice(key).expect(ANY_KEY);
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    /// Hi(password, salt, i) = PBKDF2-HMAC-H with output length = hash length.
    pub(super) fn hi(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = alloc::vec![0u8; self.output_len()];
        match self {
            ScramHash::Sha1 => pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out),
            ScramHash::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out)
            }
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out)
            }
        }
        out
    }
}

/// `a XOR b`, as long as the shorter of the two.
pub(super) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// `a == b` in time that depends on the lengths only.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

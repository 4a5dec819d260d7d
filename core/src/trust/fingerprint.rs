//! SHA-256 fingerprints, printed the way OpenSSL prints them
//! (`openssl x509 -noout -fingerprint -sha256`): uppercase hex pairs joined by colons.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha256};

/// A SHA-256 digest of a certificate or of its SubjectPublicKeyInfo.
///
/// `Display` gives the OpenSSL form `AB:CD:…:EF` (95 characters), which is what a user
/// compares against `openssl x509 -noout -fingerprint -sha256` or a server operator's note.
/// `FromStr` reads that form back, with or without colons, in either case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(Sha256::digest(bytes).into())
    }

    /// The 32 digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A string that is not a SHA-256 fingerprint (64 hex digits, colons optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidFingerprint;

impl fmt::Display for InvalidFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "not a SHA-256 fingerprint: expected 32 hex byte pairs such as `AB:CD:…` \
             (the output of `openssl x509 -noout -fingerprint -sha256`)",
        )
    }
}

impl core::error::Error for InvalidFingerprint {}

impl FromStr for Fingerprint {
    type Err = InvalidFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Tolerate the whole OpenSSL output line.
        let s = s.trim();
        let s = match s.split_once('=') {
            Some((label, rest)) if label.to_ascii_lowercase().contains("fingerprint") => rest,
            _ => s,
        };
        let mut out = [0u8; 32];
        let mut n = 0usize;
        let mut high: Option<u8> = None;
        for c in s.chars() {
            if c == ':' {
                if high.is_some() {
                    return Err(InvalidFingerprint);
                }
                continue;
            }
            let v = c.to_digit(16).ok_or(InvalidFingerprint)? as u8;
            match high.take() {
                None => high = Some(v),
                Some(h) => {
                    *out.get_mut(n).ok_or(InvalidFingerprint)? = (h << 4) | v;
                    n += 1;
                }
            }
        }
        if n != 32 || high.is_some() {
            return Err(InvalidFingerprint);
        }
        Ok(Fingerprint(out))
    }
}

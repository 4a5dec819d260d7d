//! The keys of RFC 5802 §3 and what each side keeps of them:
//!
//! ```text
//! SaltedPassword  = Hi(password, salt, i)
//! ClientKey       = HMAC(SaltedPassword, "Client Key")    StoredKey = H(ClientKey)
//! ServerKey       = HMAC(SaltedPassword, "Server Key")
//! ClientSignature = HMAC(StoredKey, AuthMessage)          ClientProof = ClientKey XOR ClientSignature
//! ServerSignature = HMAC(ServerKey, AuthMessage)
//! ```
//!
//! The client keeps ClientKey and ServerKey ([`ScramCacheEntry`]), so that a later login
//! with the same salt and count skips Hi; the server keeps StoredKey and ServerKey
//! ([`ScramCredentials`], RFC 5802 §2.1), never the password. SCRAM-SHA-256 is the same
//! with SHA-256 as H (RFC 7677 §3).

use alloc::vec::Vec;
use core::fmt;

use rand_core::{CryptoRng, RngCore};

use super::hash::{ct_eq, xor, ScramHash};
use crate::sasl::error::SaslError;

/// (ClientKey, ServerKey) from the password: one run of Hi, the PBKDF2 that is most of a
/// login's cost.
fn salted_keys(
    hash: ScramHash,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> (Vec<u8>, Vec<u8>) {
    let salted = hash.hi(password, salt, iterations);
    (
        hash.hmac(&salted, b"Client Key"),
        hash.hmac(&salted, b"Server Key"),
    )
}

/// Cached SCRAM keys for one (hash, salt, iterations): with them the client skips PBKDF2,
/// which is most of a login's cost on a microcontroller or in a browser.
///
/// The caller stores [`to_bytes`](Self::to_bytes) (flash, localStorage) after a *verified*
/// success ([`crate::sasl::ClientMechanism::cache_entry`]) and passes the entry back in
/// [`crate::sasl::Credentials::scram_cache`]. The entry is used only when the server's salt and
/// iteration count match; otherwise the password is needed and a new entry results.
///
/// ClientKey logs in to this account on its own: store the entry as carefully as the
/// password. `Debug` shows the hash, iteration count and salt length only.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCacheEntry {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    client_key: Vec<u8>,
    server_key: Vec<u8>,
}

const CACHE_FORMAT: u8 = 1;

impl ScramCacheEntry {
    /// Derives the entry from the password (one PBKDF2 run), e.g. to pre-compute it.
    pub fn from_password(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let (client_key, server_key) = salted_keys(hash, password.as_bytes(), salt, iterations);
        ScramCacheEntry {
            hash,
            salt: salt.to_vec(),
            iterations,
            client_key,
            server_key,
        }
    }

    /// The SCRAM hash the keys belong to.
    pub fn hash(&self) -> ScramHash {
        self.hash
    }

    /// The salt the keys were derived with.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The iteration count the keys were derived with.
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Whether the entry serves a server-first message with these parameters.
    pub fn matches(&self, hash: ScramHash, salt: &[u8], iterations: u32) -> bool {
        self.hash == hash && self.iterations == iterations && self.salt == salt
    }

    /// Serialises the entry: format byte, hash id, iterations (u32 BE), salt length (u16 BE),
    /// salt, ClientKey, ServerKey.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.salt.len() + 2 * self.hash.output_len());
        out.push(CACHE_FORMAT);
        out.push(self.hash.id());
        out.extend_from_slice(&self.iterations.to_be_bytes());
        out.extend_from_slice(&(self.salt.len() as u16).to_be_bytes());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.client_key);
        out.extend_from_slice(&self.server_key);
        out
    }

    /// Reads what [`to_bytes`](Self::to_bytes) wrote; any other input is
    /// [`SaslError::InvalidCacheEntry`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SaslError> {
        let bad = SaslError::InvalidCacheEntry;
        if bytes.len() < 8 || bytes[0] != CACHE_FORMAT {
            return Err(bad);
        }
        let hash = ScramHash::from_id(bytes[1]).ok_or(bad.clone())?;
        let iterations = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
        let salt_len = u16::from_be_bytes([bytes[6], bytes[7]]) as usize;
        let n = hash.output_len();
        if iterations == 0 || bytes.len() != 8 + salt_len + 2 * n {
            return Err(bad);
        }
        let (salt, keys) = bytes[8..].split_at(salt_len);
        Ok(ScramCacheEntry {
            hash,
            salt: salt.to_vec(),
            iterations,
            client_key: keys[..n].to_vec(),
            server_key: keys[n..].to_vec(),
        })
    }

    /// ClientProof = ClientKey XOR ClientSignature, ClientSignature = HMAC(StoredKey,
    /// AuthMessage), StoredKey = H(ClientKey).
    pub(super) fn client_proof(&self, auth_message: &str) -> Vec<u8> {
        let stored_key = self.hash.digest(&self.client_key);
        let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        xor(&self.client_key, &client_signature)
    }

    /// ServerSignature = HMAC(ServerKey, AuthMessage): what server-final's `v=` must be.
    pub(super) fn server_signature(&self, auth_message: &str) -> Vec<u8> {
        self.hash.hmac(&self.server_key, auth_message.as_bytes())
    }

    #[cfg(test)]
    pub(crate) fn with_keys(mut self, client_key: Vec<u8>, server_key: Vec<u8>) -> Self {
        self.client_key = client_key;
        self.server_key = server_key;
        self
    }

    /// (ClientKey, ServerKey), for tests that look for them where they must not be.
    #[cfg(test)]
    pub(super) fn keys(&self) -> (&[u8], &[u8]) {
        (&self.client_key, &self.server_key)
    }
}

impl fmt::Debug for ScramCacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCacheEntry")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

/// What a server stores per user and hash (RFC 5802 §2.1): salt, iteration count, StoredKey,
/// ServerKey. Never the password. `Debug` hides the keys.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// The hash these keys belong to.
    pub hash: ScramHash,
    /// The salt.
    pub salt: Vec<u8>,
    /// The iteration count.
    pub iterations: u32,
    /// StoredKey = H(ClientKey).
    pub stored_key: Vec<u8>,
    /// ServerKey = HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramCredentials {
    /// Derives the stored form from a password (e.g. `serve --user NAME:PASSWORD`).
    pub fn derive(hash: ScramHash, password: &str, salt: &[u8], iterations: u32) -> Self {
        let (client_key, server_key) = salted_keys(hash, password.as_bytes(), salt, iterations);
        ScramCredentials {
            hash,
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.digest(&client_key),
            server_key,
        }
    }

    /// [`derive`](Self::derive) with a fresh random 16-byte salt.
    pub fn generate<R: RngCore + CryptoRng>(
        hash: ScramHash,
        password: &str,
        iterations: u32,
        rng: &mut R,
    ) -> Self {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        ScramCredentials::derive(hash, password, &salt, iterations)
    }

    /// Checks a password against the stored key (PLAIN on the server): derives
    /// SaltedPassword with the stored salt and count, compares StoredKey in constant time.
    pub fn verify_password(&self, password: &str) -> bool {
        let (client_key, _) =
            salted_keys(self.hash, password.as_bytes(), &self.salt, self.iterations);
        ct_eq(&self.hash.digest(&client_key), &self.stored_key)
    }

    /// Whether `proof` is the ClientProof over `auth_message` (RFC 5802 §3): the server
    /// recovers ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage) and compares
    /// H(ClientKey) with StoredKey in constant time.
    pub(super) fn verify_proof(&self, auth_message: &str, proof: &[u8]) -> bool {
        let client_signature = self.hash.hmac(&self.stored_key, auth_message.as_bytes());
        let client_key = xor(proof, &client_signature);
        ct_eq(&self.hash.digest(&client_key), &self.stored_key)
    }

    /// ServerSignature = HMAC(ServerKey, AuthMessage), sent in server-final's `v=`.
    pub(super) fn server_signature(&self, auth_message: &str) -> Vec<u8> {
        self.hash.hmac(&self.server_key, auth_message.as_bytes())
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_entry_bytes_round_trip_and_reject_corruption() {
        let e = ScramCacheEntry::from_password(ScramHash::Sha256, "pw", b"salt", 4096);
        let b = e.to_bytes();
        assert_eq!(ScramCacheEntry::from_bytes(&b).unwrap(), e);
        assert_eq!(
            ScramCacheEntry::from_bytes(&b[..b.len() - 1]),
            Err(SaslError::InvalidCacheEntry)
        );
        let mut bad = b.clone();
        bad[1] = 9;
        assert_eq!(
            ScramCacheEntry::from_bytes(&bad),
            Err(SaslError::InvalidCacheEntry)
        );
        let mut bad = b.clone();
        bad[0] = 0;
        assert_eq!(
            ScramCacheEntry::from_bytes(&bad),
            Err(SaslError::InvalidCacheEntry)
        );
        assert_eq!(
            ScramCacheEntry::from_bytes(&[]),
            Err(SaslError::InvalidCacheEntry)
        );
    }

    #[test]
    fn plain_is_verified_against_stored_scram_keys() {
        let c = ScramCredentials::derive(ScramHash::Sha256, "pencil", b"salt", 4096);
        assert!(c.verify_password("pencil"));
        assert!(!c.verify_password("pencil "));
    }
}

//! SCRAM (RFC 5802; SHA-256 per RFC 7677): both roles, channel binding, the client key cache.
//!
//! Messages, in order (RFC 5802 §5, §7):
//!
//! ```text
//! client-first  = gs2-header client-first-bare       gs2-header = ("n" / "y" / "p=" type) "," [ "a=" saslname ] ","
//! client-first-bare = "n=" saslname ",r=" c-nonce
//! server-first  = "r=" c-nonce s-nonce ",s=" base64(salt) ",i=" iterations
//! client-final  = "c=" base64(gs2-header [cb-data]) ",r=" nonce ",p=" base64(ClientProof)
//! server-final  = "v=" base64(ServerSignature) / "e=" error
//! ```
//!
//! SaltedPassword = PBKDF2(password, salt, i); ClientKey = HMAC(SaltedPassword, "Client Key");
//! StoredKey = H(ClientKey); ServerKey = HMAC(SaltedPassword, "Server Key");
//! AuthMessage = client-first-bare "," server-first "," client-final-without-proof;
//! ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage);
//! ServerSignature = HMAC(ServerKey, AuthMessage).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha1::Sha1;
#[cfg(feature = "sha-512")]
use sha2::Sha512;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::base64::{decode_strict, encode};
use super::error::{SaslError, SaslFailure};
use super::select::Gs2CbFlag;
use super::server::CredentialStore;
use super::{ChannelBindingData, ChannelBindingType, Mechanism};

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

    const fn id(self) -> u8 {
        match self {
            ScramHash::Sha1 => 1,
            ScramHash::Sha256 => 2,
            #[cfg(feature = "sha-512")]
            ScramHash::Sha512 => 3,
        }
    }

    fn from_id(id: u8) -> Option<Self> {
        ScramHash::ALL.into_iter().find(|h| h.id() == id)
    }

    /// H(data).
    fn digest(self, data: &[u8]) -> Vec<u8> {
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
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
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

    /// (ClientKey, ServerKey) from the password: one PBKDF2 run.
    fn keys(self, password: &[u8], salt: &[u8], iterations: u32) -> (Vec<u8>, Vec<u8>) {
        let salted = self.salted_password(password, salt, iterations);
        (
            self.hmac(&salted, b"Client Key"),
            self.hmac(&salted, b"Server Key"),
        )
    }
}

fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// Escapes a name for SCRAM's `n=` and `a=` (RFC 5802 §5.1): `,` → `=2C`, `=` → `=3D`.
pub fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_saslname`]; `None` for `=` not followed by `2C` or `3D`, a raw `,`, or
/// NUL (RFC 5802 §7: such a name is invalid).
pub fn unescape_saslname(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(i) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `printable` of RFC 5802 §7: %x21-2B / %x2D-7E (no comma).
fn is_printable_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `a=value` attributes; `None` when one is not a single ASCII letter followed by `=`.
fn attributes(msg: &str) -> impl Iterator<Item = Option<(u8, &str)>> {
    msg.split(',').map(|part| {
        let b = part.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
            Some((b[0], &part[2..]))
        } else {
            None
        }
    })
}

fn parse_iterations(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.starts_with('0') {
        return None;
    }
    value.parse().ok()
}

fn gs2_header(flag: &Gs2CbFlag, authzid: Option<&str>) -> String {
    let mut h = String::new();
    match flag {
        Gs2CbFlag::NoSupport => h.push('n'),
        Gs2CbFlag::SupportedNotUsed => h.push('y'),
        Gs2CbFlag::Used(t) => {
            h.push_str("p=");
            h.push_str(t.name());
        }
    }
    h.push(',');
    if let Some(a) = authzid {
        h.push_str("a=");
        h.push_str(&escape_saslname(a));
    }
    h.push(',');
    h
}

// ---------------------------------------------------------------------------------------
// The client key cache.

/// Cached SCRAM keys for one (hash, salt, iterations): with them the client skips PBKDF2,
/// which is most of a login's cost on a microcontroller or in a browser.
///
/// The caller stores [`to_bytes`](Self::to_bytes) (flash, localStorage) after a *verified*
/// success ([`super::ClientMechanism::cache_entry`]) and passes the entry back in
/// [`super::Credentials::scram_cache`]. The entry is used only when the server's salt and
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
        let (client_key, server_key) = hash.keys(password.as_bytes(), salt, iterations);
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

    #[cfg(test)]
    pub(crate) fn with_keys(mut self, client_key: Vec<u8>, server_key: Vec<u8>) -> Self {
        self.client_key = client_key;
        self.server_key = server_key;
        self
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

// ---------------------------------------------------------------------------------------
// Server-side credentials.

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
        let (client_key, server_key) = hash.keys(password.as_bytes(), salt, iterations);
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
        let (client_key, _) = self
            .hash
            .keys(password.as_bytes(), &self.salt, self.iterations);
        ct_eq(&self.hash.digest(&client_key), &self.stored_key)
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

// ---------------------------------------------------------------------------------------
// Client.

enum ClientState {
    Initial,
    FirstSent {
        gs2_header: String,
        client_first_bare: String,
    },
    FinalSent {
        server_signature: Vec<u8>,
        entry: ScramCacheEntry,
    },
    Verified {
        server_signature: Vec<u8>,
        entry: ScramCacheEntry,
    },
    Done {
        entry: ScramCacheEntry,
    },
    Failed,
}

/// The SCRAM client (RFC 5802 §5, §7). Built by [`super::ClientMechanism`].
pub(crate) struct ScramClient {
    hash: ScramHash,
    flag: Gs2CbFlag,
    cb_data: Vec<u8>,
    username: String,
    authzid: Option<String>,
    password: Option<String>,
    cache: Option<ScramCacheEntry>,
    client_nonce: String,
    min_iterations: u32,
    max_iterations: u32,
    state: ClientState,
    /// PBKDF2 runs so far (a cache hit makes none).
    pub(crate) derivations: u32,
}

pub(crate) struct ScramClientParams {
    pub mechanism: Mechanism,
    pub flag: Gs2CbFlag,
    pub username: String,
    pub authzid: Option<String>,
    pub password: Option<String>,
    pub cache: Option<ScramCacheEntry>,
    pub client_nonce: String,
    pub min_iterations: u32,
    pub max_iterations: u32,
}

impl ScramClient {
    pub(crate) fn new(p: ScramClientParams, cb: &ChannelBindingData) -> Result<Self, SaslError> {
        let hash = p.mechanism.scram_hash().ok_or(SaslError::OutOfOrder)?;
        let cb_data = match (&p.flag, p.mechanism.is_plus()) {
            (Gs2CbFlag::Used(t), true) => cb
                .get(*t)
                .ok_or(SaslError::ChannelBindingUnavailable)?
                .to_vec(),
            (Gs2CbFlag::Used(_), false) | (_, true) => return Err(SaslError::OutOfOrder),
            _ => Vec::new(),
        };
        if p.username.is_empty() {
            return Err(SaslError::MissingCredentials("user name"));
        }
        if p.username.contains('\0') || p.authzid.as_deref().is_some_and(|a| a.contains('\0')) {
            return Err(SaslError::InvalidCredentials("user name or authzid"));
        }
        if !is_printable_nonce(&p.client_nonce) {
            return Err(SaslError::InvalidCredentials("client nonce"));
        }
        let cache = p.cache.filter(|c| c.hash == hash);
        if p.password.is_none() && cache.is_none() {
            return Err(SaslError::MissingCredentials(
                "password or cached SCRAM keys",
            ));
        }
        Ok(ScramClient {
            hash,
            flag: p.flag,
            cb_data,
            username: p.username,
            authzid: p.authzid.filter(|a| !a.is_empty()),
            password: p.password,
            cache,
            client_nonce: p.client_nonce,
            min_iterations: p.min_iterations,
            max_iterations: p.max_iterations,
            state: ClientState::Initial,
            derivations: 0,
        })
    }

    /// client-first-message.
    pub(crate) fn client_first(&mut self) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(SaslError::OutOfOrder);
        }
        let gs2_header = gs2_header(&self.flag, self.authzid.as_deref());
        let mut bare = String::from("n=");
        bare.push_str(&escape_saslname(&self.username));
        bare.push_str(",r=");
        bare.push_str(&self.client_nonce);
        let mut msg = gs2_header.clone();
        msg.push_str(&bare);
        self.state = ClientState::FirstSent {
            gs2_header,
            client_first_bare: bare,
        };
        Ok(msg.into_bytes())
    }

    pub(crate) fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        match core::mem::replace(&mut self.state, ClientState::Failed) {
            ClientState::Initial if data.is_empty() => {
                // §6.4.2: an empty challenge asks for the initial response.
                self.state = ClientState::Initial;
                self.client_first()
            }
            ClientState::FirstSent {
                gs2_header,
                client_first_bare,
            } => self.client_final(data, &gs2_header, &client_first_bare),
            ClientState::FinalSent {
                server_signature,
                entry,
            } => {
                // §6.3.10: the server may send server-final in a challenge; answer empty.
                self.verify_server_final(data, &server_signature)?;
                self.state = ClientState::Verified {
                    server_signature,
                    entry,
                };
                Ok(Vec::new())
            }
            _ => Err(SaslError::UnexpectedChallenge),
        }
    }

    fn client_final(
        &mut self,
        data: &[u8],
        gs2_header: &str,
        client_first_bare: &str,
    ) -> Result<Vec<u8>, SaslError> {
        let server_first =
            core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for (i, attr) in attributes(server_first).enumerate() {
            let (name, value) = attr.ok_or(SaslError::MalformedChallenge("attribute syntax"))?;
            match (i, name) {
                (0, b'm') => return Err(SaslError::MandatoryExtension),
                (0, b'r') => nonce = Some(value),
                (1, b's') => salt = Some(value),
                (2, b'i') => iterations = Some(value),
                (0..=2, _) => return Err(SaslError::MalformedChallenge("expected r=, s=, i=")),
                _ => {} // extensions: ignored (RFC 5802 §7)
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(SaslError::MalformedChallenge("expected r=, s=, i="));
        };
        if !is_printable_nonce(nonce) {
            return Err(SaslError::MalformedChallenge("nonce characters"));
        }
        if !nonce.starts_with(self.client_nonce.as_str()) || nonce.len() == self.client_nonce.len()
        {
            return Err(SaslError::NonceNotExtended);
        }
        let salt = decode_strict(salt)?;
        if salt.is_empty() {
            return Err(SaslError::MalformedChallenge("empty salt"));
        }
        let iterations =
            parse_iterations(iterations).ok_or(SaslError::MalformedChallenge("i= value"))?;
        if iterations < self.min_iterations {
            return Err(SaslError::IterationsTooLow {
                iterations,
                minimum: self.min_iterations,
            });
        }
        if iterations > self.max_iterations {
            return Err(SaslError::IterationsTooHigh {
                iterations,
                maximum: self.max_iterations,
            });
        }

        let entry = match &self.cache {
            Some(c) if c.matches(self.hash, &salt, iterations) => c.clone(),
            _ => {
                let password = self.password.as_deref().ok_or(SaslError::CachedKeysStale)?;
                self.derivations += 1;
                ScramCacheEntry::from_password(self.hash, password, &salt, iterations)
            }
        };

        let mut cbind = gs2_header.as_bytes().to_vec();
        cbind.extend_from_slice(&self.cb_data);
        let mut without_proof = String::from("c=");
        without_proof.push_str(&encode(&cbind));
        without_proof.push_str(",r=");
        without_proof.push_str(nonce);

        let auth_message = auth_message(client_first_bare, server_first, &without_proof);
        let stored_key = self.hash.digest(&entry.client_key);
        let client_signature = self.hash.hmac(&stored_key, auth_message.as_bytes());
        let proof = xor(&entry.client_key, &client_signature);
        let server_signature = self.hash.hmac(&entry.server_key, auth_message.as_bytes());

        let mut msg = without_proof;
        msg.push_str(",p=");
        msg.push_str(&encode(&proof));
        self.state = ClientState::FinalSent {
            server_signature,
            entry,
        };
        Ok(msg.into_bytes())
    }

    fn verify_server_final(&self, data: &[u8], expected: &[u8]) -> Result<(), SaslError> {
        let msg =
            core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
        let first = attributes(msg)
            .next()
            .flatten()
            .ok_or(SaslError::MalformedChallenge("server-final syntax"))?;
        match first {
            (b'e', value) => Err(SaslError::ServerError(String::from(value))),
            (b'v', value) => {
                let got = decode_strict(value)?;
                if ct_eq(&got, expected) {
                    Ok(())
                } else {
                    Err(SaslError::ServerSignatureMismatch)
                }
            }
            _ => Err(SaslError::MalformedChallenge(
                "server-final without v= or e=",
            )),
        }
    }

    pub(crate) fn success(&mut self, data: Option<&[u8]>) -> Result<(), SaslError> {
        match core::mem::replace(&mut self.state, ClientState::Failed) {
            ClientState::FinalSent {
                server_signature,
                entry,
            } => {
                let data = data.ok_or(SaslError::MissingServerSignature)?;
                if data.is_empty() {
                    return Err(SaslError::MissingServerSignature);
                }
                self.verify_server_final(data, &server_signature)?;
                self.state = ClientState::Done { entry };
                Ok(())
            }
            ClientState::Verified {
                server_signature,
                entry,
            } => {
                if let Some(d) = data.filter(|d| !d.is_empty()) {
                    self.verify_server_final(d, &server_signature)?;
                }
                self.state = ClientState::Done { entry };
                Ok(())
            }
            _ => Err(SaslError::UnexpectedSuccess),
        }
    }

    pub(crate) fn cache_entry(&self) -> Option<ScramCacheEntry> {
        match &self.state {
            ClientState::Done { entry } => Some(entry.clone()),
            _ => None,
        }
    }

    pub(crate) fn flag(&self) -> &Gs2CbFlag {
        &self.flag
    }
}

fn auth_message(client_first_bare: &str, server_first: &str, without_proof: &str) -> String {
    let mut m = String::with_capacity(
        client_first_bare.len() + server_first.len() + without_proof.len() + 2,
    );
    m.push_str(client_first_bare);
    m.push(',');
    m.push_str(server_first);
    m.push(',');
    m.push_str(without_proof);
    m
}

// ---------------------------------------------------------------------------------------
// Server.

/// Iteration count of the made-up credentials for unknown users.
const FAKE_ITERATIONS: u32 = 4096;

/// What the server remembers between server-first and client-final.
struct Pending {
    gs2_header: String,
    cb_data: Vec<u8>,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    authcid: String,
    authzid: Option<String>,
    creds: Option<ScramCredentials>,
}

enum ServerState {
    Initial { asked: bool },
    FirstSent(Box<Pending>),
    Done,
}

/// What the server's SCRAM step produced.
pub(crate) enum ScramServerStep {
    Challenge(Vec<u8>),
    Success {
        server_final: Vec<u8>,
        authcid: String,
        authzid: Option<String>,
    },
}

/// The SCRAM server (RFC 5802 §5, §7). Built by [`super::ServerMechanism`].
pub(crate) struct ScramServer {
    hash: ScramHash,
    plus: bool,
    server_offers_plus: bool,
    cb: ChannelBindingData,
    server_nonce: String,
    fake_salt: [u8; 16],
    state: ServerState,
    /// Why the last step failed, for logs and `<text/>`.
    pub(crate) reason: Option<&'static str>,
}

impl ScramServer {
    pub(crate) fn new<R: RngCore + CryptoRng>(
        mechanism: Mechanism,
        server_offers_plus: bool,
        cb: &ChannelBindingData,
        rng: &mut R,
    ) -> Self {
        let mut nonce = [0u8; 18];
        rng.fill_bytes(&mut nonce);
        let mut fake_salt = [0u8; 16];
        rng.fill_bytes(&mut fake_salt);
        ScramServer {
            hash: mechanism.scram_hash().unwrap_or(ScramHash::Sha1),
            plus: mechanism.is_plus(),
            server_offers_plus,
            cb: cb.clone(),
            server_nonce: encode(&nonce),
            fake_salt,
            state: ServerState::Initial { asked: false },
            reason: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        self.server_nonce = String::from(nonce);
    }

    fn fail(&mut self, condition: SaslFailure, reason: &'static str) -> SaslFailure {
        self.state = ServerState::Done;
        self.reason = Some(reason);
        condition
    }

    pub(crate) fn step<S: CredentialStore + ?Sized>(
        &mut self,
        store: &S,
        response: Option<&[u8]>,
    ) -> Result<ScramServerStep, SaslFailure> {
        match core::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Initial { asked } => match response {
                None | Some([]) if !asked => {
                    // No initial response: ask for it with an empty challenge (§6.4.2).
                    self.state = ServerState::Initial { asked: true };
                    Ok(ScramServerStep::Challenge(Vec::new()))
                }
                None | Some([]) => Err(self.fail(
                    SaslFailure::MalformedRequest,
                    "empty response where client-first was due",
                )),
                Some(data) => self.server_first(store, data),
            },
            ServerState::FirstSent(pending) => {
                self.server_final(store, response.unwrap_or_default(), *pending)
            }
            ServerState::Done => Err(self.fail(
                SaslFailure::MalformedRequest,
                "response after the exchange ended",
            )),
        }
    }

    fn server_first<S: CredentialStore + ?Sized>(
        &mut self,
        store: &S,
        data: &[u8],
    ) -> Result<ScramServerStep, SaslFailure> {
        use SaslFailure::{MalformedRequest, NotAuthorized};
        let Ok(msg) = core::str::from_utf8(data) else {
            return Err(self.fail(MalformedRequest, "client-first is not UTF-8"));
        };
        // gs2-header = flag "," [authzid] ","
        let mut parts = msg.splitn(3, ',');
        let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(self.fail(MalformedRequest, "client-first has no gs2 header"));
        };
        let cb_type = match flag {
            "n" | "y" => None,
            f => match f.strip_prefix("p=") {
                Some(name) => match ChannelBindingType::from_name(name) {
                    Some(t) => Some(t),
                    None => {
                        return Err(self.fail(NotAuthorized, "unsupported channel-binding type"))
                    }
                },
                None => return Err(self.fail(MalformedRequest, "bad gs2 channel-binding flag")),
            },
        };
        if self.plus && cb_type.is_none() {
            return Err(self.fail(
                MalformedRequest,
                "a -PLUS mechanism without the p= channel-binding flag",
            ));
        }
        if !self.plus && cb_type.is_some() {
            return Err(self.fail(
                MalformedRequest,
                "p= channel-binding flag with a mechanism that is not -PLUS",
            ));
        }
        if flag == "y" && self.server_offers_plus {
            // RFC 5802 §6: the client could bind and thinks we cannot; we offered -PLUS, so
            // the offer was changed on the way.
            return Err(self.fail(
                NotAuthorized,
                "channel-binding downgrade: client sent 'y' while -PLUS is offered",
            ));
        }
        let cb_data = match cb_type {
            Some(t) => match self.cb.get(t) {
                Some(d) => d.to_vec(),
                None => {
                    return Err(self.fail(NotAuthorized, "channel-binding type not available here"))
                }
            },
            None => Vec::new(),
        };
        let authzid = if authzid.is_empty() {
            None
        } else {
            match authzid.strip_prefix("a=").and_then(unescape_saslname) {
                Some(a) if !a.is_empty() => Some(a),
                _ => return Err(self.fail(MalformedRequest, "bad authzid in gs2 header")),
            }
        };

        let mut username = None;
        let mut client_nonce = None;
        for (i, attr) in attributes(bare).enumerate() {
            let Some((name, value)) = attr else {
                return Err(self.fail(MalformedRequest, "client-first attribute syntax"));
            };
            match (i, name) {
                (0, b'm') => {
                    return Err(self.fail(MalformedRequest, "unsupported mandatory extension m="))
                }
                (0, b'n') => username = Some(value),
                (1, b'r') => client_nonce = Some(value),
                (0..=1, _) => return Err(self.fail(MalformedRequest, "expected n=, r=")),
                _ => {}
            }
        }
        let (Some(username), Some(client_nonce)) = (username, client_nonce) else {
            return Err(self.fail(MalformedRequest, "expected n=, r="));
        };
        let Some(authcid) = unescape_saslname(username).filter(|u| !u.is_empty()) else {
            return Err(self.fail(MalformedRequest, "bad saslname in n="));
        };
        if !is_printable_nonce(client_nonce) {
            return Err(self.fail(MalformedRequest, "bad client nonce"));
        }

        let creds = match store.scram_credentials(&authcid, self.hash) {
            Ok(c) if c.hash == self.hash && c.iterations > 0 => Some(c),
            // Unknown user: go on with made-up parameters and fail at the proof, so the
            // first round trip does not tell which accounts exist.
            Ok(_) | Err(SaslFailure::NotAuthorized) => None,
            Err(other) => return Err(self.fail(other, "credential store refused the account")),
        };
        let fake_salt = match &creds {
            Some(_) => None,
            None => store.unknown_user_salt(&authcid),
        };
        let (salt, iterations) = match (&creds, &fake_salt) {
            (Some(c), _) => (c.salt.as_slice(), c.iterations),
            (None, Some(f)) => (f.as_slice(), FAKE_ITERATIONS),
            (None, None) => (&self.fake_salt[..], FAKE_ITERATIONS),
        };
        let mut nonce = String::from(client_nonce);
        nonce.push_str(&self.server_nonce);
        let server_first = alloc::format!("r={nonce},s={},i={iterations}", encode(salt));
        let out = server_first.clone().into_bytes();
        self.state = ServerState::FirstSent(Box::new(Pending {
            gs2_header: String::from(&msg[..msg.len() - bare.len()]),
            cb_data,
            client_first_bare: String::from(bare),
            server_first,
            nonce,
            authcid,
            authzid,
            creds,
        }));
        Ok(ScramServerStep::Challenge(out))
    }

    fn server_final<S: CredentialStore + ?Sized>(
        &mut self,
        store: &S,
        data: &[u8],
        p: Pending,
    ) -> Result<ScramServerStep, SaslFailure> {
        use SaslFailure::{MalformedRequest, NotAuthorized};
        let Ok(msg) = core::str::from_utf8(data) else {
            return Err(self.fail(MalformedRequest, "client-final is not UTF-8"));
        };
        // The proof is the last attribute; everything before it is signed.
        let Some(split) = msg.rfind(",p=") else {
            return Err(self.fail(MalformedRequest, "client-final without p="));
        };
        let (without_proof, proof) = (&msg[..split], &msg[split + 3..]);
        let mut cbind = None;
        let mut nonce = None;
        for (i, attr) in attributes(without_proof).enumerate() {
            let Some((name, value)) = attr else {
                return Err(self.fail(MalformedRequest, "client-final attribute syntax"));
            };
            match (i, name) {
                (0, b'c') => cbind = Some(value),
                (1, b'r') => nonce = Some(value),
                (0..=1, _) => return Err(self.fail(MalformedRequest, "expected c=, r=")),
                (_, b'm') => {
                    return Err(self.fail(MalformedRequest, "unsupported mandatory extension m="))
                }
                _ => {}
            }
        }
        let (Some(cbind), Some(nonce)) = (cbind, nonce) else {
            return Err(self.fail(MalformedRequest, "expected c=, r="));
        };
        let (Ok(cbind), Ok(proof)) = (decode_strict(cbind), decode_strict(proof)) else {
            return Err(self.fail(SaslFailure::IncorrectEncoding, "bad base64 in client-final"));
        };
        if nonce != p.nonce {
            return Err(self.fail(NotAuthorized, "client-final nonce differs"));
        }
        let mut expected_cbind = p.gs2_header.into_bytes();
        expected_cbind.extend_from_slice(&p.cb_data);
        if !ct_eq(&cbind, &expected_cbind) {
            return Err(self.fail(NotAuthorized, "channel bindings do not match"));
        }
        if proof.len() != self.hash.output_len() {
            return Err(self.fail(MalformedRequest, "proof has the wrong length"));
        }
        let Some(creds) = p.creds else {
            return Err(self.fail(NotAuthorized, "unknown user or wrong password"));
        };
        let auth_message = auth_message(&p.client_first_bare, &p.server_first, without_proof);
        let client_signature = self.hash.hmac(&creds.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !ct_eq(&self.hash.digest(&client_key), &creds.stored_key) {
            return Err(self.fail(NotAuthorized, "unknown user or wrong password"));
        }
        if let Some(authzid) = &p.authzid {
            if let Err(f) = store.authorize(&p.authcid, authzid) {
                return Err(self.fail(f, "authzid not allowed for this user"));
            }
        }
        let server_signature = self.hash.hmac(&creds.server_key, auth_message.as_bytes());
        let mut server_final = String::from("v=");
        server_final.push_str(&encode(&server_signature));
        self.state = ServerState::Done;
        Ok(ScramServerStep::Success {
            server_final: server_final.into_bytes(),
            authcid: p.authcid,
            authzid: p.authzid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::testutil::{exchange, rng, Outcome};
    use crate::sasl::{
        ClientMechanism, Credentials, MemoryStore, SaslPolicy, Selection, ServerContext,
        ServerMechanism, ServerStep,
    };
    use alloc::format;
    use alloc::vec;

    const RFC5802_CLIENT_NONCE: &str = "fyko+d2lbbFgONRv9qkxdawL";
    const RFC5802_SERVER_FIRST: &str =
        "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    const RFC5802_CLIENT_FINAL: &str =
        "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=";
    const RFC5802_SERVER_FINAL: &str = "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=";

    const RFC7677_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC7677_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC7677_CLIENT_FINAL: &str =
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC7677_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn client(mechanism: Mechanism, creds: Credentials, nonce: &str) -> ClientMechanism {
        ClientMechanism::with_nonce(
            &Selection::unbound(mechanism),
            creds,
            &ChannelBindingData::none(),
            &SaslPolicy::default(),
            nonce,
        )
        .unwrap()
    }

    fn rfc5802_client() -> ClientMechanism {
        client(
            Mechanism::ScramSha1,
            Credentials::password("user", "pencil"),
            RFC5802_CLIENT_NONCE,
        )
    }

    fn rfc5802_after_client_final() -> ClientMechanism {
        let mut c = rfc5802_client();
        c.initial_response().unwrap();
        assert_eq!(
            c.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap(),
            RFC5802_CLIENT_FINAL.as_bytes()
        );
        c
    }

    #[test]
    fn rfc5802_section5_scram_sha1_example_exact_bytes() {
        let mut c = rfc5802_client();
        assert_eq!(
            c.initial_response().unwrap().unwrap(),
            format!("n,,n=user,r={RFC5802_CLIENT_NONCE}").as_bytes()
        );
        assert_eq!(
            c.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap(),
            RFC5802_CLIENT_FINAL.as_bytes()
        );
        assert_eq!(c.cache_entry(), None, "no cache entry before verification");
        c.success(Some(RFC5802_SERVER_FINAL.as_bytes())).unwrap();
        let entry = c.cache_entry().unwrap();
        assert_eq!(entry.iterations(), 4096);
        assert_eq!(entry.salt(), decode_strict("QSXCR+Q6sek8bf92").unwrap());
    }

    #[test]
    fn rfc7677_section3_scram_sha256_example_exact_bytes() {
        let mut c = client(
            Mechanism::ScramSha256,
            Credentials::password("user", "pencil"),
            RFC7677_CLIENT_NONCE,
        );
        assert_eq!(
            c.initial_response().unwrap().unwrap(),
            format!("n,,n=user,r={RFC7677_CLIENT_NONCE}").as_bytes()
        );
        assert_eq!(
            c.challenge(RFC7677_SERVER_FIRST.as_bytes()).unwrap(),
            RFC7677_CLIENT_FINAL.as_bytes()
        );
        c.success(Some(RFC7677_SERVER_FINAL.as_bytes())).unwrap();
    }

    fn rfc_server(
        mechanism: Mechanism,
        salt_b64: &str,
        server_nonce: &str,
    ) -> (ServerMechanism, MemoryStore) {
        let hash = mechanism.scram_hash().unwrap();
        let mut store = MemoryStore::new();
        store.insert(
            "user",
            ScramCredentials::derive(hash, "pencil", &decode_strict(salt_b64).unwrap(), 4096),
        );
        let offered = [mechanism];
        let cb = ChannelBindingData::none();
        let ctx = ServerContext {
            offered: &offered,
            tls: true,
            channel_binding: &cb,
            external_identity: None,
        };
        let mut s = ServerMechanism::start(mechanism.name(), &ctx, &mut rng(1)).unwrap();
        s.set_scram_nonce(server_nonce);
        (s, store)
    }

    #[test]
    fn server_reproduces_rfc5802_and_rfc7677_exchanges() {
        let cases = [
            (
                Mechanism::ScramSha1,
                "QSXCR+Q6sek8bf92",
                "3rfcNHYJY1ZVvWVs7j",
                RFC5802_CLIENT_NONCE,
                RFC5802_SERVER_FIRST,
                RFC5802_CLIENT_FINAL,
                RFC5802_SERVER_FINAL,
            ),
            (
                Mechanism::ScramSha256,
                "W22ZaJ0SNY7soEsUEjb6gQ==",
                "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                RFC7677_CLIENT_NONCE,
                RFC7677_SERVER_FIRST,
                RFC7677_CLIENT_FINAL,
                RFC7677_SERVER_FINAL,
            ),
        ];
        for (m, salt, snonce, cnonce, sfirst, cfinal, sfinal) in cases {
            let (mut s, store) = rfc_server(m, salt, snonce);
            let cfirst = format!("n,,n=user,r={cnonce}");
            assert_eq!(
                s.step(&store, Some(cfirst.as_bytes())).unwrap(),
                ServerStep::Challenge(sfirst.as_bytes().to_vec())
            );
            assert_eq!(
                s.step(&store, Some(cfinal.as_bytes())).unwrap(),
                ServerStep::Success {
                    additional_data: Some(sfinal.as_bytes().to_vec()),
                    authcid: "user".into(),
                    authzid: None,
                }
            );
        }
    }

    #[test]
    fn wrong_server_signature_aborts() {
        let mut c = rfc5802_after_client_final();
        assert_eq!(
            c.success(Some(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA=")),
            Err(SaslError::ServerSignatureMismatch)
        );
        assert_eq!(
            c.cache_entry(),
            None,
            "nothing cached from an unverified server"
        );
        // The same through a server-final sent as a challenge (§6.3.10).
        let mut c = rfc5802_after_client_final();
        assert_eq!(
            c.challenge(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(SaslError::ServerSignatureMismatch)
        );
    }

    #[test]
    fn server_final_error_attribute_is_an_error() {
        let mut c = rfc5802_after_client_final();
        assert_eq!(
            c.success(Some(b"e=invalid-proof")),
            Err(SaslError::ServerError("invalid-proof".into()))
        );
    }

    #[test]
    fn success_without_server_signature_is_an_error() {
        let mut c = rfc5802_after_client_final();
        assert_eq!(c.success(None), Err(SaslError::MissingServerSignature));
        let mut c = rfc5802_after_client_final();
        assert_eq!(c.success(Some(b"")), Err(SaslError::MissingServerSignature));
    }

    #[test]
    fn success_before_client_final_is_an_error() {
        let mut c = rfc5802_client();
        c.initial_response().unwrap();
        assert_eq!(
            c.success(Some(RFC5802_SERVER_FINAL.as_bytes())),
            Err(SaslError::UnexpectedSuccess)
        );
    }

    #[test]
    fn server_final_in_challenge_then_success_without_data() {
        let mut c = rfc5802_after_client_final();
        assert_eq!(c.challenge(RFC5802_SERVER_FINAL.as_bytes()).unwrap(), b"");
        c.success(None).unwrap();
        assert!(c.cache_entry().is_some());
    }

    #[test]
    fn empty_first_challenge_asks_for_client_first() {
        let mut c = rfc5802_client();
        assert_eq!(
            c.challenge(b"").unwrap(),
            format!("n,,n=user,r={RFC5802_CLIENT_NONCE}").as_bytes()
        );
    }

    fn server_first_err(server_first: &str) -> SaslError {
        let mut c = rfc5802_client();
        c.initial_response().unwrap();
        c.challenge(server_first.as_bytes()).unwrap_err()
    }

    #[test]
    fn server_nonce_must_extend_client_nonce() {
        assert_eq!(
            server_first_err("r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096"),
            SaslError::NonceNotExtended
        );
        assert_eq!(
            server_first_err("r=XXXX+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096"),
            SaslError::NonceNotExtended
        );
    }

    #[test]
    fn iterations_below_policy_floor_refused() {
        assert_eq!(
            server_first_err(
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=1000"
            ),
            SaslError::IterationsTooLow {
                iterations: 1000,
                minimum: 4096
            }
        );
        assert_eq!(
            server_first_err(
                "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4000000000"
            ),
            SaslError::IterationsTooHigh {
                iterations: 4_000_000_000,
                maximum: 1_000_000
            }
        );
        for bad in ["i=0", "i=-1", "i=+4096", "i=04096", "i=", "i=99999999999"] {
            let msg =
                format!("r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,{bad}");
            assert!(
                matches!(server_first_err(&msg), SaslError::MalformedChallenge(_)),
                "{bad}"
            );
        }
    }

    #[test]
    fn mandatory_extension_m_is_refused() {
        assert_eq!(
            server_first_err("m=ext,r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=QSXCR+Q6sek8bf92,i=4096"),
            SaslError::MandatoryExtension
        );
    }

    #[test]
    fn server_first_base64_is_strict() {
        for salt in ["QSXCR+Q6sek8bf9", "QSXC R+Q6sek8bf92", "QSXCR+Q6sek8bf92="] {
            let msg = format!("r=fyko+d2lbbFgONRv9qkxdawL3rfc,s={salt},i=4096");
            assert_eq!(
                server_first_err(&msg),
                SaslError::IncorrectEncoding,
                "{salt}"
            );
        }
        assert!(matches!(
            server_first_err("r=fyko+d2lbbFgONRv9qkxdawL3rfc,s=,i=4096"),
            SaslError::MalformedChallenge(_)
        ));
        assert!(matches!(
            server_first_err("s=QSXCR+Q6sek8bf92,r=fyko+d2lbbFgONRv9qkxdawL3rfc,i=4096"),
            SaslError::MalformedChallenge(_)
        ));
        // Extensions after i= are allowed and ignored.
        let mut c = rfc5802_client();
        c.initial_response().unwrap();
        c.challenge(format!("{RFC5802_SERVER_FIRST},x=ext").as_bytes())
            .unwrap();
    }

    #[test]
    fn saslname_escaping_and_bad_escapes() {
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        for bad in ["=", "a=", "=2c", "=3d", "=41", "a,b", "a\0b", "=2"] {
            assert_eq!(unescape_saslname(bad), None, "{bad:?}");
        }
        let mut c = client(
            Mechanism::ScramSha1,
            Credentials::password("a,b=c", "pencil").with_authzid("x=y,z@example.com"),
            "nonce",
        );
        assert_eq!(
            c.initial_response().unwrap().unwrap(),
            b"n,a=x=3Dy=2Cz@example.com,n=a=2Cb=3Dc,r=nonce"
        );
    }

    fn store_with(user: &str, password: &str) -> MemoryStore {
        let mut store = MemoryStore::new();
        store.add_password(user, password, 4096, &mut rng(7));
        store
    }

    fn server(
        mechanism: Mechanism,
        offered: &[Mechanism],
        cb: &ChannelBindingData,
    ) -> ServerMechanism {
        let ctx = ServerContext {
            offered,
            tls: true,
            channel_binding: cb,
            external_identity: None,
        };
        ServerMechanism::start(mechanism.name(), &ctx, &mut rng(3)).unwrap()
    }

    fn client_with(
        selection: Selection,
        creds: Credentials,
        cb: &ChannelBindingData,
    ) -> ClientMechanism {
        ClientMechanism::new(&selection, creds, cb, &SaslPolicy::default(), &mut rng(5)).unwrap()
    }

    fn both_cb() -> ChannelBindingData {
        ChannelBindingData {
            exporter: Some([0x42; 32]),
            server_end_point: Some(vec![0x17; 32]),
            unique: Some(vec![0x99; 12]),
        }
    }

    #[test]
    fn own_server_accepts_own_client_for_every_scram_variant() {
        let store = store_with("juliet", "r0m30");
        let cb = both_cb();
        for hash in ScramHash::ALL {
            let plain = Mechanism::scram(hash, false);
            let plus = Mechanism::scram(hash, true);
            let offered = [plus, plain];
            let mut selections = vec![Selection::unbound(plain)];
            for t in ChannelBindingType::PREFERENCE {
                selections.push(Selection {
                    mechanism: plus,
                    cb_flag: Gs2CbFlag::Used(t),
                });
            }
            for sel in selections {
                let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
                let mut s = server(sel.mechanism, &offered, &cb);
                assert_eq!(
                    exchange(&mut c, &mut s, &store),
                    Outcome::Success {
                        authcid: "juliet".into(),
                        authzid: None
                    },
                    "{sel:?}"
                );
                assert!(c.cache_entry().is_some());
            }
        }
    }

    #[test]
    fn channel_binding_mismatch_fails_and_is_reported_as_binding_rejection() {
        // A man in the middle terminates TLS: each side sees different exporter bytes.
        let store = store_with("juliet", "r0m30");
        let client_cb = ChannelBindingData {
            exporter: Some([1; 32]),
            ..Default::default()
        };
        let server_cb = ChannelBindingData {
            exporter: Some([2; 32]),
            ..Default::default()
        };
        let sel = Selection {
            mechanism: Mechanism::ScramSha256Plus,
            cb_flag: Gs2CbFlag::Used(ChannelBindingType::TlsExporter),
        };
        let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &client_cb);
        let mut s = server(
            Mechanism::ScramSha256Plus,
            &[Mechanism::ScramSha256Plus, Mechanism::ScramSha256],
            &server_cb,
        );
        let out = exchange(&mut c, &mut s, &store);
        assert_eq!(out, Outcome::ServerFailed(SaslFailure::NotAuthorized));
        assert_eq!(s.failure_reason(), Some("channel bindings do not match"));
        assert_eq!(
            c.failure(SaslFailure::NotAuthorized),
            SaslError::ChannelBindingRejected {
                mechanism: Mechanism::ScramSha256Plus,
                cb_type: ChannelBindingType::TlsExporter
            }
        );
    }

    /// ejabberd 23.01 on TLS 1.3: offers -PLUS, cannot verify tls-exporter. Modelled as a
    /// server with no exporter data. The client reports the rejection and does not retry.
    #[test]
    fn ejabberd_tls13_plus_rejection_is_reported_not_retried() {
        let store = store_with("juliet", "r0m30");
        let client_cb = ChannelBindingData {
            exporter: Some([1; 32]),
            ..Default::default()
        };
        let server_cb = ChannelBindingData {
            unique: Some(vec![3; 12]),
            ..Default::default()
        };
        let offered_names: Vec<String> = ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "PLAIN"]
            .iter()
            .map(|s| String::from(*s))
            .collect();
        let creds = Credentials::password("juliet", "r0m30");
        let sel = crate::sasl::choose(
            &offered_names,
            None,
            true,
            &client_cb,
            creds.kind(),
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(sel.mechanism, Mechanism::ScramSha1Plus);
        let mut c = client_with(sel, creds, &client_cb);
        let mut s = server(
            Mechanism::ScramSha1Plus,
            &[
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ],
            &server_cb,
        );
        let Outcome::ServerFailed(cond) = exchange(&mut c, &mut s, &store) else {
            panic!("server must fail");
        };
        let err = c.failure(cond);
        assert!(matches!(err, SaslError::ChannelBindingRejected { .. }));
        assert!(format!("{err}").contains("CbPolicy::Off"));
        // The user's explicit per-server choice: CbPolicy::Off gives SCRAM with `n`.
        let off = SaslPolicy {
            channel_binding: crate::sasl::CbPolicy::Off,
            ..Default::default()
        };
        let creds = Credentials::password("juliet", "r0m30");
        let sel = crate::sasl::choose(&offered_names, None, true, &client_cb, creds.kind(), &off)
            .unwrap();
        assert_eq!(sel, Selection::unbound(Mechanism::ScramSha1));
        let mut c = client_with(sel, creds, &client_cb);
        let mut s = server(
            Mechanism::ScramSha1,
            &[
                Mechanism::ScramSha1Plus,
                Mechanism::ScramSha1,
                Mechanism::Plain,
            ],
            &server_cb,
        );
        assert!(matches!(
            exchange(&mut c, &mut s, &store),
            Outcome::Success { .. }
        ));
    }

    #[test]
    fn server_detects_y_flag_downgrade_when_it_offers_plus() {
        let store = store_with("juliet", "r0m30");
        let cb = both_cb();
        let sel = Selection {
            mechanism: Mechanism::ScramSha1,
            cb_flag: Gs2CbFlag::SupportedNotUsed,
        };
        // The attacker stripped SCRAM-SHA-1-PLUS from what the client saw; the server did offer it.
        let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
        let mut s = server(
            Mechanism::ScramSha1,
            &[Mechanism::ScramSha1Plus, Mechanism::ScramSha1],
            &cb,
        );
        assert_eq!(
            exchange(&mut c, &mut s, &store),
            Outcome::ServerFailed(SaslFailure::NotAuthorized)
        );
        assert!(s.failure_reason().unwrap().contains("downgrade"));
        // A server that really offers no -PLUS accepts `y`.
        let mut c = client_with(sel, Credentials::password("juliet", "r0m30"), &cb);
        let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
        assert!(matches!(
            exchange(&mut c, &mut s, &store),
            Outcome::Success { .. }
        ));
    }

    #[test]
    fn plus_mechanism_requires_p_flag_and_plain_scram_refuses_it() {
        let store = store_with("user", "pencil");
        let cb = both_cb();
        let offered = [Mechanism::ScramSha1Plus, Mechanism::ScramSha1];
        let mut s = server(Mechanism::ScramSha1Plus, &offered, &cb);
        assert_eq!(
            s.step(&store, Some(b"n,,n=user,r=abc")),
            Err(SaslFailure::MalformedRequest)
        );
        let mut s = server(Mechanism::ScramSha1, &offered, &cb);
        assert_eq!(
            s.step(&store, Some(b"p=tls-exporter,,n=user,r=abc")),
            Err(SaslFailure::MalformedRequest)
        );
        let mut s = server(Mechanism::ScramSha1Plus, &offered, &cb);
        assert_eq!(
            s.step(&store, Some(b"p=tls-foo,,n=user,r=abc")),
            Err(SaslFailure::NotAuthorized)
        );
    }

    #[test]
    fn server_refuses_bad_client_first() {
        let store = store_with("user", "pencil");
        let cb = ChannelBindingData::none();
        for bad in [
            &b"n,,m=ext,n=user,r=abc"[..],
            b"n,,n=us=er,r=abc",
            b"n,,n=,r=abc",
            b"n,,r=abc,n=user",
            b"x,,n=user,r=abc",
            b"n,b=x,n=user,r=abc",
            b"n,,n=user,r=a b",
            b"n,,n=user",
            b"\xff,,n=user,r=abc",
        ] {
            let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
            assert_eq!(
                s.step(&store, Some(bad)),
                Err(SaslFailure::MalformedRequest),
                "{:?}",
                core::str::from_utf8(bad)
            );
        }
    }

    #[test]
    fn wrong_password_and_unknown_user_fail_alike() {
        let store = store_with("juliet", "r0m30");
        let cb = ChannelBindingData::none();
        for creds in [
            Credentials::password("juliet", "wrong"),
            Credentials::password("romeo", "r0m30"),
        ] {
            let mut c = client_with(Selection::unbound(Mechanism::ScramSha256), creds, &cb);
            let mut s = server(Mechanism::ScramSha256, &[Mechanism::ScramSha256], &cb);
            assert_eq!(
                exchange(&mut c, &mut s, &store),
                Outcome::ServerFailed(SaslFailure::NotAuthorized)
            );
            assert_eq!(s.failure_reason(), Some("unknown user or wrong password"));
        }
    }

    #[test]
    fn client_final_nonce_and_proof_are_checked() {
        let (mut s, store) = rfc_server(
            Mechanism::ScramSha1,
            "QSXCR+Q6sek8bf92",
            "3rfcNHYJY1ZVvWVs7j",
        );
        s.step(
            &store,
            Some(format!("n,,n=user,r={RFC5802_CLIENT_NONCE}").as_bytes()),
        )
        .unwrap();
        let tampered = RFC5802_CLIENT_FINAL.replace("p=v0X8", "p=w0X8");
        assert_eq!(
            s.step(&store, Some(tampered.as_bytes())),
            Err(SaslFailure::NotAuthorized)
        );
        let (mut s, store) = rfc_server(Mechanism::ScramSha1, "QSXCR+Q6sek8bf92", "OTHER");
        s.step(
            &store,
            Some(format!("n,,n=user,r={RFC5802_CLIENT_NONCE}").as_bytes()),
        )
        .unwrap();
        assert_eq!(
            s.step(&store, Some(RFC5802_CLIENT_FINAL.as_bytes())),
            Err(SaslFailure::NotAuthorized)
        );
        assert_eq!(s.failure_reason(), Some("client-final nonce differs"));
    }

    #[test]
    fn authzid_is_checked_by_the_store() {
        let store = store_with("juliet", "r0m30");
        let cb = ChannelBindingData::none();
        let mut c = client_with(
            Selection::unbound(Mechanism::ScramSha1),
            Credentials::password("juliet", "r0m30").with_authzid("juliet@example.com"),
            &cb,
        );
        let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
        assert_eq!(
            exchange(&mut c, &mut s, &store),
            Outcome::Success {
                authcid: "juliet".into(),
                authzid: Some("juliet@example.com".into())
            }
        );
        let mut c = client_with(
            Selection::unbound(Mechanism::ScramSha1),
            Credentials::password("juliet", "r0m30").with_authzid("romeo@example.com"),
            &cb,
        );
        let mut s = server(Mechanism::ScramSha1, &[Mechanism::ScramSha1], &cb);
        assert_eq!(
            exchange(&mut c, &mut s, &store),
            Outcome::ServerFailed(SaslFailure::InvalidAuthzid)
        );
    }

    #[test]
    fn cache_hit_skips_pbkdf2() {
        // Deliberately wrong keys under the right (hash, salt, iterations): the proof comes
        // from them, which it could not if PBKDF2 had run on the password.
        let salt = decode_strict("QSXCR+Q6sek8bf92").unwrap();
        let wrong = ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", &salt, 4096)
            .with_keys(vec![1; 20], vec![2; 20]);
        let mut c = client(
            Mechanism::ScramSha1,
            Credentials::password("user", "pencil").with_scram_cache(wrong),
            RFC5802_CLIENT_NONCE,
        );
        c.initial_response().unwrap();
        let out = c.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap();
        assert_ne!(out, RFC5802_CLIENT_FINAL.as_bytes());
        assert_eq!(c.pbkdf2_runs(), 0);

        // The right cached keys give the RFC's bytes, still without PBKDF2.
        let mut first = rfc5802_client();
        first.initial_response().unwrap();
        first.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap();
        assert_eq!(first.pbkdf2_runs(), 1);
        first
            .success(Some(RFC5802_SERVER_FINAL.as_bytes()))
            .unwrap();
        let stored = first.cache_entry().unwrap().to_bytes();
        let entry = ScramCacheEntry::from_bytes(&stored).unwrap();
        let mut again = client(
            Mechanism::ScramSha1,
            Credentials::scram_keys("user", entry),
            RFC5802_CLIENT_NONCE,
        );
        again.initial_response().unwrap();
        assert_eq!(
            again.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap(),
            RFC5802_CLIENT_FINAL.as_bytes()
        );
        assert_eq!(again.pbkdf2_runs(), 0);
        again
            .success(Some(RFC5802_SERVER_FINAL.as_bytes()))
            .unwrap();
    }

    #[test]
    fn cache_miss_derives_again_or_needs_the_password() {
        let entry = ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", b"other salt", 4096);
        let mut c = client(
            Mechanism::ScramSha1,
            Credentials::password("user", "pencil").with_scram_cache(entry.clone()),
            RFC5802_CLIENT_NONCE,
        );
        c.initial_response().unwrap();
        assert_eq!(
            c.challenge(RFC5802_SERVER_FIRST.as_bytes()).unwrap(),
            RFC5802_CLIENT_FINAL.as_bytes()
        );
        assert_eq!(c.pbkdf2_runs(), 1);
        let mut c = client(
            Mechanism::ScramSha1,
            Credentials::scram_keys("user", entry),
            RFC5802_CLIENT_NONCE,
        );
        c.initial_response().unwrap();
        assert_eq!(
            c.challenge(RFC5802_SERVER_FIRST.as_bytes()),
            Err(SaslError::CachedKeysStale)
        );
    }

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

    #[test]
    fn debug_output_contains_no_secret() {
        let salt = decode_strict("QSXCR+Q6sek8bf92").unwrap();
        let entry = ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", &salt, 4096);
        let creds = ScramCredentials::derive(ScramHash::Sha1, "pencil", &salt, 4096);
        let secrets = [
            String::from("pencil"),
            format!("{:?}", entry.client_key),
            format!("{:?}", entry.server_key),
            format!("{:?}", creds.stored_key),
            encode(&entry.client_key),
        ];
        let mut c = rfc5802_after_client_final();
        let err = c
            .success(Some(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAA="))
            .unwrap_err();
        let outputs = [
            format!("{entry:?}"),
            format!("{creds:?}"),
            format!(
                "{:?}",
                Credentials::password("user", "pencil").with_scram_cache(entry.clone())
            ),
            format!("{:?}", rfc5802_after_client_final()),
            format!("{:?}", store_with("user", "pencil")),
            format!("{err:?} {err}"),
        ];
        for o in &outputs {
            for s in &secrets {
                assert!(!o.contains(s.as_str()), "{o} leaks {s}");
            }
        }
        assert!(outputs[2].contains("<redacted>"));
    }
}

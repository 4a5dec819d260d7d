//! Where the receiving entity finds what it checks passwords and proofs against (RFC 6120
//! §6.4, RFC 5802 §2.1): salted SCRAM keys per user and hash, never a password.
//!
//! Both the SCRAM server (`scram::server`) and the SASL server ([`super::server`], which
//! checks PLAIN against the same keys) look credentials up through [`CredentialStore`].
//! This module uses SCRAM's key types (`scram::keys`) and neither server, so each server
//! imports it and it imports neither.

use crate::jid::Jid;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::{CryptoRng, RngCore};

use super::error::SaslFailure;
use super::fast::FastTokens;
use super::scram::{ScramCredentials, ScramHash};

/// Where a server finds salted SCRAM credentials. It never sees a password; PLAIN is checked
/// against the same stored keys.
pub trait CredentialStore {
    /// The credentials of `authcid` for `hash`. `Err(NotAuthorized)` for an unknown user (the
    /// SCRAM server then continues with made-up parameters and fails at the proof);
    /// `AccountDisabled`, `CredentialsExpired` or `TemporaryAuthFailure` end the exchange
    /// with that condition.
    fn scram_credentials(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramCredentials, SaslFailure>;

    /// The salt to show an unknown user, so that repeated attempts see the same one and the
    /// first round trip does not reveal which accounts exist. `None` (the default): a fresh
    /// random salt per attempt, which hides less.
    fn unknown_user_salt(&self, authcid: &str) -> Option<Vec<u8>> {
        let _ = authcid;
        None
    }

    /// May `authcid` act as `authzid` (§6.3.8)? The default allows only the user's own
    /// identity: `authzid` equal to `authcid`, or `authcid@domain` without a resource. The
    /// caller still checks that the domain is its own (it is in `ServerStep::Success`).
    fn authorize(&self, authcid: &str, authzid: &str) -> Result<(), SaslFailure> {
        let own = authzid == authcid
            || Jid::parse(authzid).is_ok_and(|jid| jid.is_bare() && jid.local() == Some(authcid));
        if own {
            Ok(())
        } else {
            Err(SaslFailure::InvalidAuthzid)
        }
    }

    /// The FAST tokens this server issues (XEP-0484): runs `f` on the table with the
    /// current time (Unix seconds) and says `true`; `false` (the default) when this store
    /// issues none, and FAST is then not offered.
    fn fast_tokens(&self, f: &mut dyn FnMut(&mut FastTokens, u64)) -> bool {
        let _ = f;
        false
    }
}

impl<T: CredentialStore + ?Sized> CredentialStore for &T {
    fn scram_credentials(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramCredentials, SaslFailure> {
        (**self).scram_credentials(authcid, hash)
    }

    fn unknown_user_salt(&self, authcid: &str) -> Option<Vec<u8>> {
        (**self).unknown_user_salt(authcid)
    }

    fn authorize(&self, authcid: &str, authzid: &str) -> Result<(), SaslFailure> {
        (**self).authorize(authcid, authzid)
    }

    fn fast_tokens(&self, f: &mut dyn FnMut(&mut FastTokens, u64)) -> bool {
        (**self).fast_tokens(f)
    }
}

/// An in-memory [`CredentialStore`] (for `serve --user NAME:PASSWORD` and tests): the
/// password is turned into salted keys for every hash on insertion and then dropped.
#[derive(Default, Clone)]
pub struct MemoryStore {
    users: BTreeMap<String, Vec<ScramCredentials>>,
    /// Key for the stable fake salts of unknown users; drawn on the first `add_password`.
    fake_salt_key: Option<[u8; 32]>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// Adds (or replaces) a user: SHA-1, SHA-256 and SHA-512 credentials, each with its own
    /// random salt, `iterations` rounds.
    pub fn add_password<R: RngCore + CryptoRng>(
        &mut self,
        username: &str,
        password: &str,
        iterations: u32,
        rng: &mut R,
    ) {
        if self.fake_salt_key.is_none() {
            let mut key = [0u8; 32];
            rng.fill_bytes(&mut key);
            self.fake_salt_key = Some(key);
        }
        let creds = ScramHash::ALL
            .into_iter()
            .map(|h| ScramCredentials::generate(h, password, iterations, rng))
            .collect();
        self.users.insert(String::from(username), creds);
    }

    /// Adds one set of credentials (replacing any with the same hash).
    pub fn insert(&mut self, username: &str, credentials: ScramCredentials) {
        let list = self.users.entry(String::from(username)).or_default();
        list.retain(|c| c.hash != credentials.hash);
        list.push(credentials);
    }
}

impl CredentialStore for MemoryStore {
    fn scram_credentials(
        &self,
        authcid: &str,
        hash: ScramHash,
    ) -> Result<ScramCredentials, SaslFailure> {
        self.users
            .get(authcid)
            .and_then(|l| l.iter().find(|c| c.hash == hash))
            .cloned()
            .ok_or(SaslFailure::NotAuthorized)
    }

    fn unknown_user_salt(&self, authcid: &str) -> Option<Vec<u8>> {
        let key = self.fake_salt_key.as_ref()?;
        let mut salt = ScramHash::Sha256.hmac(key, authcid.as_bytes());
        salt.truncate(16);
        Some(salt)
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("users", &self.users.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::testutil::rng;

    fn store() -> MemoryStore {
        let mut s = MemoryStore::new();
        s.add_password("juliet", "r0m30", 4096, &mut rng(11));
        s
    }

    #[test]
    fn default_authorize_allows_only_own_bare_jid() {
        let s = store();
        assert!(s.authorize("juliet", "juliet@example.com").is_ok());
        assert!(s.authorize("juliet", "juliet").is_ok());
        for other in [
            "romeo@example.com",
            "juliet@example.com/balcony",
            "juliet@",
            "julietx@example.com",
            "juliet@a@b",
        ] {
            assert_eq!(
                s.authorize("juliet", other),
                Err(SaslFailure::InvalidAuthzid),
                "{other}"
            );
        }
    }
}

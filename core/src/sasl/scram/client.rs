//! The SCRAM client (RFC 5802 §5: the exchange as the client runs it; SCRAM-SHA-256: RFC
//! 7677 §3): client-first, then client-final with the proof, then the check of the server's
//! signature (`v=`, RFC 5802 §5.1). Only a verified login yields keys for the cache.

use alloc::string::String;
use alloc::vec::Vec;

use super::hash::{ct_eq, ScramHash};
use super::keys::ScramCacheEntry;
use super::message::{self, ServerFinal};
use crate::sasl::channel_binding::ChannelBindingData;
use crate::sasl::error::SaslError;
use crate::sasl::mechanism::Mechanism;
use crate::sasl::select::Gs2CbFlag;

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

/// The SCRAM client (RFC 5802 §5, §7). Built by [`crate::sasl::ClientMechanism`].
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
    /// XEP-0474: what the server advertised, as [`crate::sasl::ssdp::advertised`] joins it.
    pub(crate) ssdp: Option<Vec<u8>>,
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
        if !message::is_printable_nonce(&p.client_nonce) {
            return Err(SaslError::InvalidCredentials("client nonce"));
        }
        let cache = p.cache.filter(|c| c.hash() == hash);
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
            ssdp: None,
            derivations: 0,
        })
    }

    /// client-first-message.
    pub(crate) fn client_first(&mut self) -> Result<Vec<u8>, SaslError> {
        if !matches!(self.state, ClientState::Initial) {
            return Err(SaslError::OutOfOrder);
        }
        let gs2_header = message::gs2_header(&self.flag, self.authzid.as_deref());
        let bare = message::client_first_bare(&self.username, &self.client_nonce);
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
        let server_first = message::parse_server_first(data, &self.client_nonce)?;
        // XEP-0474 §5.2: the server's hash of its offer against ours of what arrived.
        if let (Some(theirs), Some(advertised)) = (server_first.ssdp, &self.ssdp) {
            let ours = super::super::base64::encode(&self.hash.digest(advertised));
            if !ct_eq(ours.as_bytes(), theirs.as_bytes()) {
                return Err(SaslError::DowngradeDetected);
            }
        }
        let (salt, iterations) = (&server_first.salt, server_first.iterations);
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
            Some(c) if c.matches(self.hash, salt, iterations) => c.clone(),
            _ => {
                let password = self.password.as_deref().ok_or(SaslError::CachedKeysStale)?;
                self.derivations += 1;
                ScramCacheEntry::from_password(self.hash, password, salt, iterations)
            }
        };

        let without_proof =
            message::client_final_without_proof(gs2_header, &self.cb_data, server_first.nonce);
        let auth_message =
            message::auth_message(client_first_bare, server_first.text, &without_proof);
        let proof = entry.client_proof(&auth_message);
        let server_signature = entry.server_signature(&auth_message);

        let msg = message::client_final(without_proof, &proof);
        self.state = ClientState::FinalSent {
            server_signature,
            entry,
        };
        Ok(msg.into_bytes())
    }

    fn verify_server_final(&self, data: &[u8], expected: &[u8]) -> Result<(), SaslError> {
        match message::parse_server_final(data)? {
            ServerFinal::Error(e) => Err(SaslError::ServerError(String::from(e))),
            ServerFinal::Verifier(got) if ct_eq(&got, expected) => Ok(()),
            ServerFinal::Verifier(_) => Err(SaslError::ServerSignatureMismatch),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::base64::decode_strict;
    use crate::sasl::scram::tests::{
        client, rfc5802_after_client_final, rfc5802_client, RFC5802_CLIENT_FINAL,
        RFC5802_CLIENT_NONCE, RFC5802_SERVER_FINAL, RFC5802_SERVER_FIRST, RFC7677_CLIENT_FINAL,
        RFC7677_CLIENT_NONCE, RFC7677_SERVER_FINAL, RFC7677_SERVER_FIRST,
    };
    use crate::sasl::Credentials;
    use alloc::format;
    use alloc::vec;

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
}

//! The SCRAM server (RFC 5802 §5: the exchange as the server runs it; SCRAM-SHA-256: RFC
//! 7677 §3): server-first with the stored salt and count, then the check of the client's
//! proof and channel binding (RFC 5802 §6), then server-final with its signature.
//!
//! An unknown user gets made-up parameters and fails at the proof, like a wrong password,
//! so the first round trip does not tell which accounts exist.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use rand_core::{CryptoRng, RngCore};

use super::hash::{ct_eq, ScramHash};
use super::keys::ScramCredentials;
use super::message::{self, ClientFinal, Refusal};
use crate::sasl::base64::encode;
use crate::sasl::channel_binding::ChannelBindingData;
use crate::sasl::credentials::CredentialStore;
use crate::sasl::error::SaslFailure;
use crate::sasl::mechanism::Mechanism;
use crate::sasl::select::Gs2CbFlag;

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

/// The SCRAM server (RFC 5802 §5, §7). Built by [`crate::sasl::ServerMechanism`].
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
    /// XEP-0474: what was advertised (mechanisms, binding types), hashed into `h=`.
    pub(crate) ssdp: Option<Vec<u8>>,
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
            ssdp: None,
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

    /// [`ScramServer::fail`] with what a message parse refused.
    fn refuse(&mut self, (condition, reason): Refusal) -> SaslFailure {
        self.fail(condition, reason)
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
        let client_first = message::parse_client_first(data).map_err(|r| self.refuse(r))?;
        let cb_type = match client_first.cb_flag {
            Gs2CbFlag::Used(t) => Some(t),
            Gs2CbFlag::NoSupport | Gs2CbFlag::SupportedNotUsed => None,
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
        if client_first.cb_flag == Gs2CbFlag::SupportedNotUsed && self.server_offers_plus {
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
        let authzid = client_first.authzid().map_err(|r| self.refuse(r))?;
        let bare = client_first.bare().map_err(|r| self.refuse(r))?;

        let creds = match store.scram_credentials(&bare.authcid, self.hash) {
            Ok(c) if c.hash == self.hash && c.iterations > 0 => Some(c),
            // Unknown user: go on with made-up parameters and fail at the proof, so the
            // first round trip does not tell which accounts exist.
            Ok(_) | Err(SaslFailure::NotAuthorized) => None,
            Err(other) => return Err(self.fail(other, "credential store refused the account")),
        };
        let fake_salt = match &creds {
            Some(_) => None,
            None => store.unknown_user_salt(&bare.authcid),
        };
        let (salt, iterations) = match (&creds, &fake_salt) {
            (Some(c), _) => (c.salt.as_slice(), c.iterations),
            (None, Some(f)) => (f.as_slice(), FAKE_ITERATIONS),
            (None, None) => (&self.fake_salt[..], FAKE_ITERATIONS),
        };
        let mut nonce = String::from(bare.nonce);
        nonce.push_str(&self.server_nonce);
        let mut server_first = message::server_first(&nonce, salt, iterations);
        // XEP-0474 §5.1: the hash of our offer, covered by both proofs.
        if let Some(advertised) = &self.ssdp {
            server_first.push_str(",h=");
            server_first.push_str(&encode(&self.hash.digest(advertised)));
        }
        let out = server_first.clone().into_bytes();
        self.state = ServerState::FirstSent(Box::new(Pending {
            gs2_header: String::from(client_first.gs2_header),
            cb_data,
            client_first_bare: String::from(bare.text),
            server_first,
            nonce,
            authcid: bare.authcid,
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
        let ClientFinal {
            without_proof,
            cbind,
            nonce,
            proof,
        } = message::parse_client_final(data).map_err(|r| self.refuse(r))?;
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
        let auth_message =
            message::auth_message(&p.client_first_bare, &p.server_first, without_proof);
        if !creds.verify_proof(&auth_message, &proof) {
            return Err(self.fail(NotAuthorized, "unknown user or wrong password"));
        }
        if let Some(authzid) = &p.authzid {
            if let Err(f) = store.authorize(&p.authcid, authzid) {
                return Err(self.fail(f, "authzid not allowed for this user"));
            }
        }
        let server_final = message::server_final(&creds.server_signature(&auth_message));
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
    use crate::sasl::base64::decode_strict;
    use crate::sasl::scram::tests::{
        both_cb, server, store_with, RFC5802_CLIENT_FINAL, RFC5802_CLIENT_NONCE,
        RFC5802_SERVER_FINAL, RFC5802_SERVER_FIRST, RFC7677_CLIENT_FINAL, RFC7677_CLIENT_NONCE,
        RFC7677_SERVER_FINAL, RFC7677_SERVER_FIRST,
    };
    use crate::sasl::testutil::rng;
    use crate::sasl::{MemoryStore, ServerContext, ServerMechanism, ServerStep};
    use alloc::format;

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
}

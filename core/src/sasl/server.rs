//! The receiving entity's side of SASL (RFC 6120 §6.4): offers, credential lookup, one
//! exchange per [`ServerMechanism`].

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::{CryptoRng, RngCore};

use super::channel_binding::{ChannelBindingData, ChannelBindingType};
use super::credentials::CredentialStore;
use super::error::SaslFailure;
use super::mechanism::Mechanism;
use super::scram::{ScramHash, ScramServer, ScramServerStep};
use super::simple::{parse_plain, valid_anonymous_trace};

/// What a server offers (§6.3.3). [`Default`]: SCRAM-SHA-256 and SCRAM-SHA-1 (with `-PLUS`
/// when binding data exists), PLAIN over TLS, EXTERNAL when the TLS layer authenticated a
/// client certificate; no ANONYMOUS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// SCRAM hashes to offer, strongest first; the store must have credentials for them.
    pub scram_hashes: Vec<ScramHash>,
    /// Offer `-PLUS` variants when the TLS layer gives binding data.
    pub channel_binding: bool,
    /// Offer PLAIN (only over TLS unless `plain_without_tls`).
    pub plain: bool,
    /// Offer PLAIN on an unencrypted stream (tests only).
    pub plain_without_tls: bool,
    /// Offer EXTERNAL when the TLS layer has an identity from a client certificate.
    pub external: bool,
    /// Offer ANONYMOUS.
    pub anonymous: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            scram_hashes: alloc::vec![ScramHash::Sha256, ScramHash::Sha1],
            channel_binding: true,
            plain: true,
            plain_without_tls: false,
            external: true,
            anonymous: false,
        }
    }
}

impl ServerOptions {
    /// The `<mechanisms/>` list for this stream, strongest first.
    pub fn offer(
        &self,
        tls: bool,
        cb: &ChannelBindingData,
        external_identity: Option<&str>,
    ) -> Vec<Mechanism> {
        let mut out = Vec::new();
        if self.external && tls && external_identity.is_some() {
            out.push(Mechanism::External);
        }
        if self.channel_binding && tls && !cb.is_empty() {
            out.extend(self.scram_hashes.iter().map(|h| Mechanism::scram(*h, true)));
        }
        out.extend(
            self.scram_hashes
                .iter()
                .map(|h| Mechanism::scram(*h, false)),
        );
        if self.plain && (tls || self.plain_without_tls) {
            out.push(Mechanism::Plain);
        }
        if self.anonymous {
            out.push(Mechanism::Anonymous);
        }
        out
    }

    /// The binding types to advertise with XEP-0440 (`<sasl-channel-binding/>`).
    pub fn channel_binding_types(
        &self,
        tls: bool,
        cb: &ChannelBindingData,
    ) -> Vec<ChannelBindingType> {
        if self.channel_binding && tls {
            cb.available().collect()
        } else {
            Vec::new()
        }
    }
}

/// What a [`ServerMechanism`] needs to know about the stream.
#[derive(Debug, Clone, Copy)]
pub struct ServerContext<'a> {
    /// What was offered on this stream ([`ServerOptions::offer`]).
    pub offered: &'a [Mechanism],
    /// The stream is encrypted.
    pub tls: bool,
    /// This side's channel-binding data (the same bytes the client computes).
    pub channel_binding: &'a ChannelBindingData,
    /// The identity the TLS layer verified from the client certificate, for EXTERNAL.
    pub external_identity: Option<&'a str>,
}

/// The server's answer to one client message.
#[derive(Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// Send `<challenge/>` with these bytes (empty → `=`).
    Challenge(Vec<u8>),
    /// Send `<success/>` (with `additional_data`, e.g. SCRAM's `v=`); the client is
    /// `authcid`, acting as `authzid` when given (already checked with
    /// [`CredentialStore::authorize`]).
    Success {
        /// Additional data with success (§6.3.10).
        additional_data: Option<Vec<u8>>,
        /// The authenticated identity (for ANONYMOUS: a fresh random name).
        authcid: String,
        /// The requested authorization identity.
        authzid: Option<String>,
    },
}

impl fmt::Debug for ServerStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerStep::Challenge(c) => f.debug_tuple("Challenge").field(&c.len()).finish(),
            ServerStep::Success {
                additional_data,
                authcid,
                authzid,
            } => f
                .debug_struct("Success")
                .field("additional_data", &additional_data.as_ref().map(Vec::len))
                .field("authcid", authcid)
                .field("authzid", authzid)
                .finish(),
        }
    }
}

enum Inner {
    Scram(Box<ScramServer>),
    Plain {
        asked: bool,
    },
    External {
        identity: Option<String>,
        asked: bool,
    },
    Anonymous {
        name: String,
        asked: bool,
    },
    Done,
}

/// One server-side SASL exchange, from `<auth/>` to `<success/>` or `<failure/>`.
pub struct ServerMechanism {
    mechanism: Mechanism,
    inner: Inner,
    reason: Option<&'static str>,
}

/// PLAIN tries the stored hashes in this order.
#[cfg(feature = "sha-512")]
const PLAIN_HASHES: [ScramHash; 3] = [ScramHash::Sha256, ScramHash::Sha1, ScramHash::Sha512];
/// PLAIN tries the stored hashes in this order.
#[cfg(not(feature = "sha-512"))]
const PLAIN_HASHES: [ScramHash; 2] = [ScramHash::Sha256, ScramHash::Sha1];

impl ServerMechanism {
    /// Starts an exchange for `<auth mechanism='name'>`. A name that was not offered is
    /// `invalid-mechanism` (§6.4.4), except PLAIN on an unencrypted stream, which is
    /// `encryption-required`. Nonces come from `rng`.
    pub fn start<R: RngCore + CryptoRng>(
        name: &str,
        ctx: &ServerContext<'_>,
        rng: &mut R,
    ) -> Result<Self, SaslFailure> {
        let mechanism = Mechanism::from_name(name).ok_or(SaslFailure::InvalidMechanism)?;
        if !ctx.offered.contains(&mechanism) {
            return Err(if mechanism == Mechanism::Plain && !ctx.tls {
                SaslFailure::EncryptionRequired
            } else {
                SaslFailure::InvalidMechanism
            });
        }
        let server_offers_plus = ctx.offered.iter().any(|m| m.is_plus());
        let inner = match mechanism {
            m if m.scram_hash().is_some() => Inner::Scram(Box::new(ScramServer::new(
                m,
                server_offers_plus,
                ctx.channel_binding,
                rng,
            ))),
            Mechanism::Plain => Inner::Plain { asked: false },
            Mechanism::External => Inner::External {
                identity: ctx.external_identity.map(String::from),
                asked: false,
            },
            Mechanism::Anonymous => {
                let mut raw = [0u8; 8];
                rng.fill_bytes(&mut raw);
                let mut name = String::from("anon-");
                name.push_str(&base16ct::lower::encode_string(&raw));
                Inner::Anonymous { name, asked: false }
            }
            _ => return Err(SaslFailure::InvalidMechanism),
        };
        Ok(ServerMechanism {
            mechanism,
            inner,
            reason: None,
        })
    }

    #[cfg(test)]
    pub(crate) fn set_scram_nonce(&mut self, nonce: &str) {
        if let Inner::Scram(s) = &mut self.inner {
            s.set_server_nonce(nonce);
        }
    }

    /// XEP-0474: put `h=`, the hash of `advertised` (what [`crate::sasl::ssdp::advertised`]
    /// makes of our offer), into SCRAM's server-first-message. No effect on other mechanisms.
    #[must_use]
    pub fn with_downgrade_protection(mut self, advertised: Vec<u8>) -> Self {
        if let Inner::Scram(s) = &mut self.inner {
            s.ssdp = Some(advertised);
        }
        self
    }

    /// The mechanism in use.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Why the last step failed (for logs or the `<text/>` of `<failure/>`); never secret.
    pub fn failure_reason(&self) -> Option<&'static str> {
        match &self.inner {
            Inner::Scram(s) => s.reason.or(self.reason),
            _ => self.reason,
        }
    }

    fn fail(&mut self, condition: SaslFailure, reason: &'static str) -> SaslFailure {
        self.inner = Inner::Done;
        self.reason = Some(reason);
        condition
    }

    /// Processes the initial response (`None` when `<auth/>` had no text) or a
    /// `<response/>`. After `Err`, send `<failure/>` with that condition; the exchange is over.
    pub fn step<S: CredentialStore + ?Sized>(
        &mut self,
        store: &S,
        response: Option<&[u8]>,
    ) -> Result<ServerStep, SaslFailure> {
        match &mut self.inner {
            Inner::Scram(s) => match s.step(store, response)? {
                ScramServerStep::Challenge(c) => Ok(ServerStep::Challenge(c)),
                ScramServerStep::Success {
                    server_final,
                    authcid,
                    authzid,
                } => Ok(ServerStep::Success {
                    additional_data: Some(server_final),
                    authcid,
                    authzid,
                }),
            },
            Inner::Plain { .. } => {
                let Some(message) = response.filter(|r| !r.is_empty()) else {
                    return self.ask_once();
                };
                let Some(parts) = parse_plain(message) else {
                    return Err(self.fail(SaslFailure::MalformedRequest, "PLAIN message syntax"));
                };
                let mut verified = Err(SaslFailure::NotAuthorized);
                for hash in PLAIN_HASHES {
                    match store.scram_credentials(&parts.authcid, hash) {
                        Ok(c) => {
                            verified = if c.verify_password(&parts.password) {
                                Ok(())
                            } else {
                                Err(SaslFailure::NotAuthorized)
                            };
                            break;
                        }
                        Err(SaslFailure::NotAuthorized) => {}
                        Err(other) => {
                            verified = Err(other);
                            break;
                        }
                    }
                }
                if let Err(f) = verified {
                    return Err(self.fail(f, "unknown user or wrong password"));
                }
                self.success(store, parts.authcid, parts.authzid)
            }
            Inner::External { identity, .. } => {
                let Some(message) = response else {
                    return self.ask_once();
                };
                let identity = identity.take();
                let Ok(authzid) = core::str::from_utf8(message) else {
                    return Err(self.fail(SaslFailure::MalformedRequest, "authzid is not UTF-8"));
                };
                let Some(identity) = identity else {
                    return Err(self.fail(
                        SaslFailure::NotAuthorized,
                        "no identity from a client certificate",
                    ));
                };
                let authzid = (!authzid.is_empty()).then(|| String::from(authzid));
                // The certificate may name the bare JID the client asks for.
                match authzid {
                    Some(a) if a == identity => self.success(store, identity, None),
                    other => self.success(store, identity, other),
                }
            }
            Inner::Anonymous { name, .. } => {
                let Some(message) = response else {
                    return self.ask_once();
                };
                if !valid_anonymous_trace(message) {
                    return Err(self.fail(SaslFailure::MalformedRequest, "bad ANONYMOUS trace"));
                }
                let name = core::mem::take(name);
                self.inner = Inner::Done;
                Ok(ServerStep::Success {
                    additional_data: None,
                    authcid: name,
                    authzid: None,
                })
            }
            Inner::Done => Err(self.fail(
                SaslFailure::MalformedRequest,
                "response after the exchange ended",
            )),
        }
    }

    /// No initial response: ask for it once with an empty challenge (§6.4.2).
    fn ask_once(&mut self) -> Result<ServerStep, SaslFailure> {
        let asked = match &mut self.inner {
            Inner::Plain { asked }
            | Inner::External { asked, .. }
            | Inner::Anonymous { asked, .. } => asked,
            _ => return Err(self.fail(SaslFailure::MalformedRequest, "unexpected step")),
        };
        if *asked {
            return Err(self.fail(SaslFailure::MalformedRequest, "empty response"));
        }
        *asked = true;
        Ok(ServerStep::Challenge(Vec::new()))
    }

    fn success<S: CredentialStore + ?Sized>(
        &mut self,
        store: &S,
        authcid: String,
        authzid: Option<String>,
    ) -> Result<ServerStep, SaslFailure> {
        if let Some(a) = &authzid {
            if let Err(f) = store.authorize(&authcid, a) {
                return Err(self.fail(f, "authzid not allowed for this user"));
            }
        }
        self.inner = Inner::Done;
        Ok(ServerStep::Success {
            additional_data: None,
            authcid,
            authzid,
        })
    }
}

impl fmt::Debug for ServerMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerMechanism")
            .field("mechanism", &self.mechanism)
            .field("reason", &self.failure_reason())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::testutil::{exchange, rng, Outcome};
    use crate::sasl::{
        choose, ClientMechanism, Credentials, MemoryStore, SaslPolicy, ScramCredentials, Selection,
    };

    fn store() -> MemoryStore {
        let mut s = MemoryStore::new();
        s.add_password("juliet", "r0m30", 4096, &mut rng(11));
        s
    }

    fn exporter() -> ChannelBindingData {
        ChannelBindingData {
            exporter: Some([5; 32]),
            ..Default::default()
        }
    }

    fn ctx<'a>(
        offered: &'a [Mechanism],
        tls: bool,
        cb: &'a ChannelBindingData,
        identity: Option<&'a str>,
    ) -> ServerContext<'a> {
        ServerContext {
            offered,
            tls,
            channel_binding: cb,
            external_identity: identity,
        }
    }

    fn client(sel: Selection, creds: Credentials, cb: &ChannelBindingData) -> ClientMechanism {
        ClientMechanism::new(&sel, creds, cb, &SaslPolicy::default(), &mut rng(2)).unwrap()
    }

    #[test]
    fn offer_lists_plus_only_with_binding_data_and_plain_only_over_tls() {
        let o = ServerOptions::default();
        use Mechanism::*;
        assert_eq!(
            o.offer(true, &exporter(), None),
            [
                ScramSha256Plus,
                ScramSha1Plus,
                ScramSha256,
                ScramSha1,
                Plain
            ]
        );
        assert_eq!(
            o.offer(
                true,
                &ChannelBindingData::none(),
                Some("juliet@example.com")
            ),
            [External, ScramSha256, ScramSha1, Plain]
        );
        assert_eq!(o.offer(false, &exporter(), None), [ScramSha256, ScramSha1]);
        assert_eq!(
            o.channel_binding_types(true, &exporter()),
            [ChannelBindingType::TlsExporter]
        );
        assert!(o.channel_binding_types(false, &exporter()).is_empty());
    }

    #[test]
    fn unoffered_mechanism_is_invalid_mechanism_and_plain_without_tls_encryption_required() {
        let cb = ChannelBindingData::none();
        let offered = ServerOptions::default().offer(false, &cb, None);
        let c = ctx(&offered, false, &cb, None);
        assert_eq!(
            ServerMechanism::start("PLAIN", &c, &mut rng(1)).unwrap_err(),
            SaslFailure::EncryptionRequired
        );
        assert_eq!(
            ServerMechanism::start("SCRAM-SHA-1-PLUS", &c, &mut rng(1)).unwrap_err(),
            SaslFailure::InvalidMechanism
        );
        assert_eq!(
            ServerMechanism::start("KERBEROS_V4", &c, &mut rng(1)).unwrap_err(),
            SaslFailure::InvalidMechanism
        );
        assert_eq!(
            ServerMechanism::start("DIGEST-MD5", &c, &mut rng(1)).unwrap_err(),
            SaslFailure::InvalidMechanism
        );
    }

    #[test]
    fn plain_server_checks_the_password_against_salted_keys() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::Plain];
        for (password, expected) in [
            (
                "r0m30",
                Outcome::Success {
                    authcid: "juliet".into(),
                    authzid: None,
                },
            ),
            ("wrong", Outcome::ServerFailed(SaslFailure::NotAuthorized)),
        ] {
            let mut c = client(
                Selection::unbound(Mechanism::Plain),
                Credentials::password("juliet", password),
                &cb,
            );
            let mut s =
                ServerMechanism::start("PLAIN", &ctx(&offered, true, &cb, None), &mut rng(1))
                    .unwrap();
            assert_eq!(exchange(&mut c, &mut s, &store()), expected);
        }
        let mut s =
            ServerMechanism::start("PLAIN", &ctx(&offered, true, &cb, None), &mut rng(1)).unwrap();
        assert_eq!(
            s.step(&store(), Some(b"juliet\0r0m30")),
            Err(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn missing_initial_response_gets_one_empty_challenge() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::Plain, Mechanism::ScramSha1];
        for name in ["PLAIN", "SCRAM-SHA-1"] {
            let mut s =
                ServerMechanism::start(name, &ctx(&offered, true, &cb, None), &mut rng(1)).unwrap();
            assert_eq!(
                s.step(&store(), None),
                Ok(ServerStep::Challenge(Vec::new()))
            );
            assert_eq!(s.step(&store(), None), Err(SaslFailure::MalformedRequest));
        }
        // The client answers an empty first challenge with its initial response.
        let mut c = client(
            Selection::unbound(Mechanism::ScramSha1),
            Credentials::password("juliet", "r0m30"),
            &cb,
        );
        let mut s =
            ServerMechanism::start("SCRAM-SHA-1", &ctx(&offered, true, &cb, None), &mut rng(1))
                .unwrap();
        let ServerStep::Challenge(empty) = s.step(&store(), None).unwrap() else {
            panic!()
        };
        let first = c.challenge(&empty).unwrap();
        assert!(first.starts_with(b"n,,n=juliet,r="));
        assert!(matches!(
            s.step(&store(), Some(&first)),
            Ok(ServerStep::Challenge(_))
        ));
    }

    #[test]
    fn external_uses_the_certificate_identity() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::External];
        let id = Some("juliet@example.com");
        // No authzid: the client sends `=` (empty).
        let mut c = client(
            Selection::unbound(Mechanism::External),
            Credentials::external(None),
            &cb,
        );
        let mut s =
            ServerMechanism::start("EXTERNAL", &ctx(&offered, true, &cb, id), &mut rng(1)).unwrap();
        assert_eq!(
            exchange(&mut c, &mut s, &store()),
            Outcome::Success {
                authcid: "juliet@example.com".into(),
                authzid: None
            }
        );
        // The authzid equal to the certificate's identity is fine; another is not.
        let mut s =
            ServerMechanism::start("EXTERNAL", &ctx(&offered, true, &cb, id), &mut rng(1)).unwrap();
        assert!(matches!(
            s.step(&store(), Some(b"juliet@example.com")),
            Ok(ServerStep::Success { .. })
        ));
        let mut s =
            ServerMechanism::start("EXTERNAL", &ctx(&offered, true, &cb, id), &mut rng(1)).unwrap();
        assert_eq!(
            s.step(&store(), Some(b"romeo@example.com")),
            Err(SaslFailure::InvalidAuthzid)
        );
        // No identity from TLS: not authorized.
        let mut s =
            ServerMechanism::start("EXTERNAL", &ctx(&offered, true, &cb, None), &mut rng(1))
                .unwrap();
        assert_eq!(s.step(&store(), Some(b"")), Err(SaslFailure::NotAuthorized));
    }

    #[test]
    fn anonymous_gets_a_fresh_name_and_trace_is_bounded() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::Anonymous];
        let mut c = client(
            Selection::unbound(Mechanism::Anonymous),
            Credentials::anonymous(Some("sirhc")),
            &cb,
        );
        let mut s =
            ServerMechanism::start("ANONYMOUS", &ctx(&offered, true, &cb, None), &mut rng(1))
                .unwrap();
        let Outcome::Success { authcid, .. } = exchange(&mut c, &mut s, &store()) else {
            panic!()
        };
        assert!(
            authcid.starts_with("anon-") && authcid.len() == 21,
            "{authcid}"
        );
        let mut s =
            ServerMechanism::start("ANONYMOUS", &ctx(&offered, true, &cb, None), &mut rng(1))
                .unwrap();
        assert_eq!(
            s.step(&store(), Some("x".repeat(256).as_bytes())),
            Err(SaslFailure::MalformedRequest)
        );
    }

    #[test]
    fn unknown_user_sees_a_stable_salt() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::ScramSha1];
        let first = |seed| {
            let mut s = ServerMechanism::start(
                "SCRAM-SHA-1",
                &ctx(&offered, true, &cb, None),
                &mut rng(seed),
            )
            .unwrap();
            let Ok(ServerStep::Challenge(c)) = s.step(&store(), Some(b"n,,n=romeo,r=abc")) else {
                panic!()
            };
            let c = String::from_utf8(c).unwrap();
            String::from(c.split(',').nth(1).unwrap())
        };
        assert_eq!(first(1), first(2));
        assert!(first(1).starts_with("s="));
    }

    struct Disabled;
    impl CredentialStore for Disabled {
        fn scram_credentials(
            &self,
            _: &str,
            _: ScramHash,
        ) -> Result<ScramCredentials, SaslFailure> {
            Err(SaslFailure::AccountDisabled)
        }
    }

    #[test]
    fn store_conditions_end_the_exchange() {
        let cb = ChannelBindingData::none();
        let offered = [Mechanism::ScramSha1, Mechanism::Plain];
        for (sel, name) in [
            (Mechanism::ScramSha1, "SCRAM-SHA-1"),
            (Mechanism::Plain, "PLAIN"),
        ] {
            let mut c = client(
                Selection::unbound(sel),
                Credentials::password("juliet", "r0m30"),
                &cb,
            );
            let mut s =
                ServerMechanism::start(name, &ctx(&offered, true, &cb, None), &mut rng(1)).unwrap();
            assert_eq!(
                exchange(&mut c, &mut s, &Disabled),
                Outcome::ServerFailed(SaslFailure::AccountDisabled)
            );
        }
    }

    /// The whole client path over the server's own offer: offer → names → choose → exchange.
    #[test]
    fn negotiated_selection_authenticates_against_own_server() {
        let cb = exporter();
        let offered = ServerOptions::default().offer(true, &cb, None);
        let names: Vec<String> = offered.iter().map(|m| String::from(m.name())).collect();
        let creds = Credentials::password("juliet", "r0m30");
        let sel = choose(
            &names,
            None,
            true,
            &cb,
            creds.kind(),
            &SaslPolicy::default(),
        )
        .unwrap();
        assert_eq!(sel.mechanism, Mechanism::ScramSha256Plus);
        let mut c = client(sel, creds, &cb);
        let mut s = ServerMechanism::start(
            sel.mechanism.name(),
            &ctx(&offered, true, &cb, None),
            &mut rng(1),
        )
        .unwrap();
        assert!(matches!(
            exchange(&mut c, &mut s, &store()),
            Outcome::Success { .. }
        ));
    }
}

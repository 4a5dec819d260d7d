//! The initiating entity's side of one SASL exchange (RFC 6120 §6.4).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::{CryptoRng, RngCore};

use super::base64::encode;
use super::channel_binding::ChannelBindingData;
#[cfg(feature = "digest-md5")]
use super::digest_md5::DigestMd5Client;
use super::error::{SaslError, SaslFailure};
use super::mechanism::Mechanism;
use super::scram::{ScramCacheEntry, ScramClient, ScramClientParams};
use super::select::{CredentialKind, Gs2CbFlag, SaslPolicy, Selection};
use super::simple::{external_message, plain_message, valid_anonymous_trace};

/// What the client authenticates with. `Debug` never shows the password or cached keys.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The authentication identity: for c2s the localpart of the JID (SCRAM `n=`, PLAIN
    /// authcid). SASLprep is not applied.
    pub username: String,
    /// The password, if known.
    pub password: Option<String>,
    /// The authorization identity (a bare JID), when it differs from the authenticated one.
    pub authzid: Option<String>,
    /// Cached SCRAM keys from an earlier verified login: skips PBKDF2 when the server's salt
    /// and iteration count still match; without a password they are the only secret.
    pub scram_cache: Option<ScramCacheEntry>,
    /// The TLS layer presented a client certificate (makes EXTERNAL a candidate).
    pub client_certificate: bool,
    /// Log in anonymously (makes ANONYMOUS a candidate).
    pub anonymous: bool,
    /// ANONYMOUS trace information (RFC 4505 §3), at most 255 characters.
    pub anonymous_trace: Option<String>,
    /// The server's domain: DIGEST-MD5's `digest-uri` is `xmpp/<domain>`.
    pub domain: Option<String>,
}

impl Credentials {
    /// User name and password.
    pub fn password(username: &str, password: &str) -> Self {
        Credentials {
            username: String::from(username),
            password: Some(String::from(password)),
            ..Default::default()
        }
    }

    /// User name and cached SCRAM keys only (no password kept on the device).
    pub fn scram_keys(username: &str, entry: ScramCacheEntry) -> Self {
        Credentials {
            username: String::from(username),
            scram_cache: Some(entry),
            ..Default::default()
        }
    }

    /// EXTERNAL with the TLS client certificate; `authzid` usually `None` (§6.3.8, XEP-0178).
    pub fn external(authzid: Option<&str>) -> Self {
        Credentials {
            client_certificate: true,
            authzid: authzid.map(String::from),
            ..Default::default()
        }
    }

    /// ANONYMOUS, with optional trace information.
    pub fn anonymous(trace: Option<&str>) -> Self {
        Credentials {
            anonymous: true,
            anonymous_trace: trace.map(String::from),
            ..Default::default()
        }
    }

    /// Sets the authorization identity.
    pub fn with_authzid(mut self, authzid: &str) -> Self {
        self.authzid = Some(String::from(authzid));
        self
    }

    /// Adds a SCRAM cache entry.
    pub fn with_scram_cache(mut self, entry: ScramCacheEntry) -> Self {
        self.scram_cache = Some(entry);
        self
    }

    /// Sets the server domain (needed by DIGEST-MD5 only).
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domain = Some(String::from(domain));
        self
    }

    /// What these credentials can authenticate with, for [`super::select()`].
    pub fn kind(&self) -> CredentialKind {
        let has_user = !self.username.is_empty();
        CredentialKind {
            password: has_user && self.password.is_some(),
            scram_keys: match (&self.password, &self.scram_cache) {
                (None, Some(c)) if has_user => Some(c.hash()),
                _ => None,
            },
            client_certificate: self.client_certificate,
            anonymous: self.anonymous,
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("authzid", &self.authzid)
            .field("scram_cache", &self.scram_cache)
            .field("client_certificate", &self.client_certificate)
            .field("anonymous", &self.anonymous)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SimpleState {
    Initial,
    Sent,
    Done,
}

enum Inner {
    Scram(Box<ScramClient>),
    /// PLAIN, EXTERNAL, ANONYMOUS: one message, then `<success/>` without data.
    Simple {
        message: Vec<u8>,
        state: SimpleState,
    },
    #[cfg(feature = "digest-md5")]
    DigestMd5(DigestMd5Client),
}

/// One client-side SASL exchange: feed it what the server sends, send what it returns.
///
/// ```text
/// <auth mechanism=M>  initial_response()      (None: send <auth/> without text)
/// <challenge>         challenge(data)   -> <response>
/// <success>           success(data)     -> Ok only once the mechanism is satisfied
/// <failure>           failure(condition) -> the error to report
/// ```
pub struct ClientMechanism {
    mechanism: Mechanism,
    inner: Inner,
    rounds: u32,
    max_rounds: u32,
}

impl ClientMechanism {
    /// Starts the exchange chosen by [`super::choose`]; nonces come from `rng`.
    pub fn new<R: RngCore + CryptoRng>(
        selection: &Selection,
        credentials: Credentials,
        cb: &ChannelBindingData,
        policy: &SaslPolicy,
        rng: &mut R,
    ) -> Result<Self, SaslError> {
        let mut raw = [0u8; 24];
        rng.fill_bytes(&mut raw);
        ClientMechanism::with_nonce(selection, credentials, cb, policy, &encode(&raw))
    }

    /// [`new`](Self::new) with a caller-provided nonce (SCRAM client nonce, DIGEST-MD5
    /// cnonce): for test vectors, or an RNG the caller drives. Printable ASCII without `,`.
    pub fn with_nonce(
        selection: &Selection,
        credentials: Credentials,
        cb: &ChannelBindingData,
        policy: &SaslPolicy,
        nonce: &str,
    ) -> Result<Self, SaslError> {
        let mechanism = selection.mechanism;
        let Credentials {
            username,
            password,
            authzid,
            scram_cache,
            anonymous_trace,
            domain,
            ..
        } = credentials;
        // `domain` is only read by DIGEST-MD5.
        let _ = &domain;
        let inner = match mechanism {
            m if m.scram_hash().is_some() => Inner::Scram(Box::new(ScramClient::new(
                ScramClientParams {
                    mechanism: m,
                    flag: selection.cb_flag,
                    username,
                    authzid,
                    password,
                    cache: scram_cache,
                    client_nonce: String::from(nonce),
                    min_iterations: policy.min_iterations,
                    max_iterations: policy.max_iterations,
                },
                cb,
            )?)),
            Mechanism::Plain => {
                let password = password.ok_or(SaslError::MissingCredentials("password"))?;
                Inner::Simple {
                    message: plain_message(authzid.as_deref(), &username, &password)?,
                    state: SimpleState::Initial,
                }
            }
            Mechanism::External => Inner::Simple {
                message: external_message(authzid.as_deref())?,
                state: SimpleState::Initial,
            },
            Mechanism::Anonymous => {
                let message = anonymous_trace.map(String::into_bytes).unwrap_or_default();
                if !valid_anonymous_trace(&message) {
                    return Err(SaslError::InvalidCredentials("anonymous trace"));
                }
                Inner::Simple {
                    message,
                    state: SimpleState::Initial,
                }
            }
            #[cfg(feature = "digest-md5")]
            Mechanism::DigestMd5 => Inner::DigestMd5(DigestMd5Client::new(
                username,
                password.ok_or(SaslError::MissingCredentials("password"))?,
                authzid,
                domain.ok_or(SaslError::MissingCredentials("server domain"))?,
                String::from(nonce),
            )?),
            other => return Err(SaslError::MechanismNotSupported(other)),
        };
        Ok(ClientMechanism {
            mechanism,
            inner,
            rounds: 0,
            max_rounds: policy.max_rounds,
        })
    }

    /// XEP-0474: check the SCRAM server's `h=` against `advertised` (what
    /// [`crate::sasl::ssdp::advertised`] makes of the offer received). No effect on other
    /// mechanisms.
    #[must_use]
    pub fn with_downgrade_protection(mut self, advertised: Vec<u8>) -> Self {
        if let Inner::Scram(s) = &mut self.inner {
            s.ssdp = Some(advertised);
        }
        self
    }

    /// The mechanism, for `<auth mechanism='...'>`.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The initial response to put in `<auth/>` (raw bytes; empty → `=`), or `None` for a
    /// mechanism that starts with a server challenge (DIGEST-MD5). Call once, first.
    pub fn initial_response(&mut self) -> Result<Option<Vec<u8>>, SaslError> {
        match &mut self.inner {
            Inner::Scram(s) => s.client_first().map(Some),
            Inner::Simple { message, state } => {
                if *state != SimpleState::Initial {
                    return Err(SaslError::OutOfOrder);
                }
                *state = SimpleState::Sent;
                Ok(Some(message.clone()))
            }
            #[cfg(feature = "digest-md5")]
            Inner::DigestMd5(_) => Ok(None),
        }
    }

    /// Answers a `<challenge/>` (decoded bytes) with the `<response/>` payload. An empty
    /// challenge before anything was sent asks for the initial response (§6.4.2).
    pub fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        self.rounds += 1;
        if self.rounds > self.max_rounds {
            return Err(SaslError::TooManyRounds);
        }
        match &mut self.inner {
            Inner::Scram(s) => s.challenge(data),
            Inner::Simple { message, state } => {
                if *state == SimpleState::Initial && data.is_empty() {
                    *state = SimpleState::Sent;
                    Ok(message.clone())
                } else {
                    Err(SaslError::UnexpectedChallenge)
                }
            }
            #[cfg(feature = "digest-md5")]
            Inner::DigestMd5(d) => d.challenge(data),
        }
    }

    /// Handles `<success/>` and its additional data (§6.3.10). `Ok` means the server is
    /// authenticated too where the mechanism can tell: SCRAM checks `v=` here (or in an
    /// earlier challenge) and refuses a success without it, or with `e=`.
    pub fn success(&mut self, additional_data: Option<&[u8]>) -> Result<(), SaslError> {
        match &mut self.inner {
            Inner::Scram(s) => s.success(additional_data),
            Inner::Simple { state, .. } => {
                if *state != SimpleState::Sent {
                    return Err(SaslError::UnexpectedSuccess);
                }
                if additional_data.is_some_and(|d| !d.is_empty()) {
                    return Err(SaslError::MalformedChallenge(
                        "additional data on <success/>",
                    ));
                }
                *state = SimpleState::Done;
                Ok(())
            }
            #[cfg(feature = "digest-md5")]
            Inner::DigestMd5(d) => d.success(additional_data),
        }
    }

    /// The error for a received `<failure/>`. A channel-bound exchange failed with
    /// `not-authorized` becomes [`SaslError::ChannelBindingRejected`] so the user learns that
    /// the binding may be the cause; nothing is retried here. Its `xep0440` is false: the
    /// negotiation, which saw the features, sets it.
    pub fn failure(&self, condition: SaslFailure) -> SaslError {
        match (&self.inner, condition) {
            (Inner::Scram(s), SaslFailure::NotAuthorized) => match s.flag() {
                Gs2CbFlag::Used(cb_type) => SaslError::ChannelBindingRejected {
                    mechanism: self.mechanism,
                    cb_type: *cb_type,
                    xep0440: false,
                },
                _ => SaslError::Failure(condition),
            },
            _ => SaslError::Failure(condition),
        }
    }

    /// After a verified SCRAM success: the keys to store for the next login (see
    /// [`ScramCacheEntry`]). `None` for other mechanisms or before success.
    pub fn cache_entry(&self) -> Option<ScramCacheEntry> {
        match &self.inner {
            Inner::Scram(s) => s.cache_entry(),
            _ => None,
        }
    }

    #[cfg(test)]
    pub(crate) fn pbkdf2_runs(&self) -> u32 {
        match &self.inner {
            Inner::Scram(s) => s.derivations,
            _ => 0,
        }
    }
}

impl fmt::Debug for ClientMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientMechanism")
            .field("mechanism", &self.mechanism)
            .field("rounds", &self.rounds)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::testutil::rng;

    fn new(sel: Mechanism, creds: Credentials) -> Result<ClientMechanism, SaslError> {
        ClientMechanism::new(
            &Selection::unbound(sel),
            creds,
            &ChannelBindingData::none(),
            &SaslPolicy::default(),
            &mut rng(9),
        )
    }

    #[test]
    fn plain_client_sends_one_message_and_accepts_bare_success() {
        let mut c = new(Mechanism::Plain, Credentials::password("juliet", "r0m30")).unwrap();
        assert_eq!(c.initial_response().unwrap().unwrap(), b"\0juliet\0r0m30");
        assert_eq!(c.initial_response(), Err(SaslError::OutOfOrder));
        assert_eq!(c.challenge(b"x"), Err(SaslError::UnexpectedChallenge));
        let mut c = new(Mechanism::Plain, Credentials::password("juliet", "r0m30")).unwrap();
        assert_eq!(c.success(None), Err(SaslError::UnexpectedSuccess));
        c.initial_response().unwrap();
        assert!(c.success(Some(b"junk")).is_err());
        let mut c = new(Mechanism::Plain, Credentials::password("juliet", "r0m30")).unwrap();
        c.initial_response().unwrap();
        c.success(Some(b"")).unwrap();
        assert_eq!(c.cache_entry(), None);
    }

    #[test]
    fn external_without_authzid_sends_empty_response() {
        let mut c = new(Mechanism::External, Credentials::external(None)).unwrap();
        let r = c.initial_response().unwrap().unwrap();
        assert!(r.is_empty());
        assert_eq!(crate::sasl::base64::encode_payload(Some(&r)), "=");
        let mut c = new(
            Mechanism::External,
            Credentials::external(Some("juliet@example.com")),
        )
        .unwrap();
        assert_eq!(
            c.initial_response().unwrap().unwrap(),
            b"juliet@example.com"
        );
    }

    #[test]
    fn anonymous_sends_trace_and_refuses_long_trace() {
        let mut c = new(Mechanism::Anonymous, Credentials::anonymous(Some("sirhc"))).unwrap();
        assert_eq!(c.initial_response().unwrap().unwrap(), b"sirhc");
        let long = "x".repeat(256);
        assert!(new(Mechanism::Anonymous, Credentials::anonymous(Some(&long))).is_err());
    }

    #[test]
    fn missing_credentials_are_reported() {
        assert_eq!(
            new(Mechanism::Plain, Credentials::external(None)).unwrap_err(),
            SaslError::MissingCredentials("password")
        );
        assert!(matches!(
            new(Mechanism::ScramSha1, Credentials::anonymous(None)).unwrap_err(),
            SaslError::MissingCredentials(_)
        ));
        // A -PLUS mechanism without binding data.
        let sel = Selection {
            mechanism: Mechanism::ScramSha1Plus,
            cb_flag: Gs2CbFlag::Used(super::super::ChannelBindingType::TlsExporter),
        };
        assert_eq!(
            ClientMechanism::new(
                &sel,
                Credentials::password("a", "b"),
                &ChannelBindingData::none(),
                &SaslPolicy::default(),
                &mut rng(1)
            )
            .unwrap_err(),
            SaslError::ChannelBindingUnavailable
        );
    }

    #[test]
    fn too_many_rounds_is_an_error() {
        let policy = SaslPolicy {
            max_rounds: 1,
            ..Default::default()
        };
        let mut c = ClientMechanism::with_nonce(
            &Selection::unbound(Mechanism::ScramSha1),
            Credentials::password("user", "pencil"),
            &ChannelBindingData::none(),
            &policy,
            "abc",
        )
        .unwrap();
        c.challenge(b"").unwrap();
        assert_eq!(
            c.challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096"),
            Err(SaslError::TooManyRounds)
        );
    }

    #[test]
    fn gs2_header_carries_the_channel_binding_flag() {
        let cb = ChannelBindingData {
            server_end_point: Some(alloc::vec![1, 2, 3]),
            ..Default::default()
        };
        let cases = [
            (Mechanism::ScramSha1, Gs2CbFlag::NoSupport, "n,,"),
            (Mechanism::ScramSha1, Gs2CbFlag::SupportedNotUsed, "y,,"),
            (
                Mechanism::ScramSha1Plus,
                Gs2CbFlag::Used(super::super::ChannelBindingType::TlsServerEndPoint),
                "p=tls-server-end-point,,",
            ),
        ];
        for (mechanism, cb_flag, header) in cases {
            let mut c = ClientMechanism::with_nonce(
                &Selection { mechanism, cb_flag },
                Credentials::password("user", "pencil"),
                &cb,
                &SaslPolicy::default(),
                "abc",
            )
            .unwrap();
            let first = c.initial_response().unwrap().unwrap();
            assert!(first.starts_with(header.as_bytes()), "{header}");
            // c= is base64(gs2-header + cb-data).
            let fin = c.challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=4096").unwrap();
            let mut cbind = header.as_bytes().to_vec();
            if mechanism.is_plus() {
                cbind.extend_from_slice(&[1, 2, 3]);
            }
            let expect = alloc::format!("c={},", encode(&cbind));
            assert!(fin.starts_with(expect.as_bytes()), "{header}");
        }
    }

    #[test]
    fn failure_maps_to_typed_errors() {
        let c = new(Mechanism::ScramSha1, Credentials::password("a", "b")).unwrap();
        assert_eq!(
            c.failure(SaslFailure::NotAuthorized),
            SaslError::Failure(SaslFailure::NotAuthorized)
        );
        assert_eq!(
            c.failure(SaslFailure::TemporaryAuthFailure),
            SaslError::Failure(SaslFailure::TemporaryAuthFailure)
        );
    }

    #[cfg(not(feature = "digest-md5"))]
    #[test]
    fn digest_md5_is_unsupported_without_the_feature() {
        assert_eq!(
            new(
                Mechanism::DigestMd5,
                Credentials::password("a", "b").with_domain("x")
            )
            .unwrap_err(),
            SaslError::MechanismNotSupported(Mechanism::DigestMd5)
        );
    }

    #[cfg(feature = "digest-md5")]
    #[test]
    fn digest_md5_client_has_no_initial_response_and_needs_the_domain() {
        let mut c = new(
            Mechanism::DigestMd5,
            Credentials::password("juliet", "r0m30").with_domain("example.com"),
        )
        .unwrap();
        assert_eq!(c.initial_response().unwrap(), None);
        let r = c
            .challenge(b"realm=\"example.com\",nonce=\"abc\",qop=\"auth\",charset=utf-8,algorithm=md5-sess")
            .unwrap();
        let r = alloc::string::String::from_utf8(r).unwrap();
        assert!(r.contains("digest-uri=\"xmpp/example.com\""), "{r}");
        assert_eq!(
            new(
                Mechanism::DigestMd5,
                Credentials::password("juliet", "r0m30")
            )
            .unwrap_err(),
            SaslError::MissingCredentials("server domain")
        );
    }
}

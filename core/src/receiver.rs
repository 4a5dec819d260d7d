//! The receiving entity (RFC 6120 §4–7): a server accepting a client, or the accepting
//! server on S2S.
//!
//! In the order of the RFC: [`ExpectHeader`] (§4.7; answer with a fresh id and features,
//! §4.3.2) → [`ExpectStartTls`] (§5.4.2; answer `<proceed/>`) → TLS (§5.4.3, done by the
//! driver) → [`ExpectHeader`] on the protected stream (a new id, features without
//! STARTTLS) → [`ExpectAuth`] / [`ExpectResponse`] (§6.4) → restart (§6.4.6) →
//! [`ExpectHeader`] → [`ExpectBind`] (§7.6).
//!
//! On S2S with [`ReceiverConfig::dialback`], Server Dialback (XEP-0220) is offered beside
//! SASL on the unauthenticated stream: `<db:verify/>` is answered at once as the
//! authoritative server (§2.1.3, [`dialback::answer_verify`]); a `<db:result/>` the policy
//! admits ([`dialback::ReceivingPolicy::admits`]: TLS, no certificate for another domain) waits in
//! [`AwaitDialback`] while the caller asks the authoritative server
//! ([`Event::DialbackRequested`]); its verdict either authenticates the stream (no restart)
//! or ends it with `<not-authorized/>`. Nothing else is accepted before authentication.
//!
//! With stream management configured, `<sm/>` is offered beside binding (XEP-0198 §3), and
//! `<resume/>` in place of the bind request waits in [`AwaitResume`] for the server's
//! session table ([`Event::ResumeRequested`]).
//!
//! With SASL2 (XEP-0388) the `<authenticate/>` may carry Bind 2 (XEP-0386) with
//! `<enable/>`, an inline `<resume/>` (XEP-0198 with SASL2, as Prosody's mod_sasl2_sm does
//! it: the same table and checks, the answer inside `<success/>`) and FAST (XEP-0484):
//! tokens issued from the store's [`FastTokens`](crate::sasl::fast::FastTokens), logins
//! with them checked there.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::mem;

use rand_core::{CryptoRng, RngCore};

use crate::bidi;
use crate::bind;
#[cfg(feature = "dialback")]
use crate::dialback::{self, Dialback, DialbackConfig, PeerCertificate, Verdict};
use crate::jid::{self, Jid};
use crate::negotiation::dispatch::{self, Inbound, Role};
use crate::negotiation::{qualified_name, Event, Negotiator, Outbox, Outcome, Step, TlsInfo};
use crate::sasl::base64::{decode_strict, encode};
use crate::sasl::element::{self as sasl_element, Received};
use crate::sasl::fast::{IssuedToken, TokenRefused};
use crate::sasl::{
    split_initial_response, ssdp, ChannelBindingData, CredentialStore, HtMechanism, Mechanism,
    SaslFailure, ServerContext, ServerMechanism, ServerOptions, ServerStep,
};
use crate::sm::{self, element::Nonza, SmConfig, SmStart, SmState};
use crate::starttls;
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::features::{StreamFeatures, NS_SASL};
use crate::stream::features::{NS_BIND2, NS_FAST, NS_SASL2, NS_SM};
use crate::stream::header::{closing_tag, ContentNamespace, Framing, HeaderOut, StreamHeader};
use crate::xml::escape::{escape_attr, escape_text};
use crate::xml::framer::{Framer, Limits};
use crate::Error;

/// What the receiving entity offers for TLS (§5.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsOffer {
    /// `<starttls><required/></starttls>` and nothing else before TLS (the default).
    #[default]
    Required,
    /// `<starttls/>` among the other features.
    Optional,
    /// No STARTTLS (e.g. the transport is already TLS).
    None,
}

/// How the receiving entity handles channel binding: as RFC 5802 and XEP-0440 say, or, to
/// test clients against servers seen in the wild, as those do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BindingQuirk {
    /// `-PLUS` offered with the XEP-0440 list of binding types, the binding verified, the
    /// gs2 flag `y` refused while `-PLUS` is offered (RFC 5802 §6).
    #[default]
    None,
    /// As [`BindingQuirk::None`] but without the XEP-0440 list (servers before XEP-0440):
    /// the binding is still verified.
    Unadvertised,
    /// ejabberd 23.01 on TLS 1.3: `-PLUS` offered without the XEP-0440 list, every `-PLUS`
    /// `<auth/>` answered `not-authorized` ("Invalid channel binding"), and SCRAM with the
    /// gs2 flag `y` accepted although `-PLUS` is offered (RFC 5802 §6 says to refuse it).
    /// For tests only.
    Unverifiable,
}

/// What the receiving entity is configured with.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    /// `jabber:client` or `jabber:server`.
    pub ns: ContentNamespace,
    /// TCP (RFC 6120) or WebSocket (RFC 7395) framing.
    pub framing: Framing,
    /// The domains we serve; a header whose `to` is not one of them gets `<host-unknown/>`.
    pub domains: Vec<String>,
    /// STARTTLS offer; [`TlsOffer::Required`] by default.
    pub tls: TlsOffer,
    /// The transport is already TLS (Direct TLS, XEP-0368).
    pub secure_transport: bool,
    /// Bounds on what the peer may make us hold.
    pub limits: Limits,
    /// SASL mechanisms to offer; `None` stops after the TLS-protected features (the
    /// caller negotiates the rest).
    pub sasl: Option<ServerOptions>,
    /// Failed authentications allowed on one stream before it is closed (§6.4.5).
    pub max_auth_failures: u32,
    /// Channel-binding behaviour ([`BindingQuirk::None`] unless testing clients).
    pub binding_quirk: BindingQuirk,
    /// Offer stream management (XEP-0198) with binding on C2S; `None`: not offered.
    /// Only in a build with the core's `stream-management` feature; ignored without it.
    pub stream_management: Option<SmConfig>,
    /// C2S: offer SASL2 (XEP-0388) beside RFC 6120 SASL, with Bind 2 (XEP-0386) and
    /// `<enable/>` inside it (XEP-0198) when [`ReceiverConfig::stream_management`] is set
    /// (with the crate feature `sasl2`).
    pub sasl2: bool,
    /// Put XEP-0474's `h=` (the hash of the mechanisms and binding types offered) into
    /// SCRAM's server-first-message, on both SASL profiles.
    pub downgrade_protection: bool,
    /// S2S: Server Dialback (XEP-0220) in the receiving and authoritative roles, with this
    /// key secret and policy; `None`: SASL only.
    #[cfg(feature = "dialback")]
    pub dialback: Option<DialbackConfig>,
    /// S2S: offer bidirectional streams (XEP-0288) on the TLS-protected unauthenticated
    /// stream and accept the initiating server's `<bidi/>` there.
    pub bidi: bool,
    /// C2S over Direct TLS: advertise `tls-0rtt` on FAST (XEP-0484 §3.1), for a transport
    /// that reads TLS 1.3 early data and hands it over with
    /// [`Connection::handle_early_data`](crate::connection::Connection::handle_early_data).
    pub fast_0rtt: bool,
}

impl ReceiverConfig {
    /// A C2S server for `domain` over TCP that requires TLS, offers the default SASL
    /// mechanisms ([`ServerOptions::default`]) and resource binding.
    pub fn client_to_server(domain: &str) -> Self {
        ReceiverConfig {
            ns: ContentNamespace::Client,
            framing: Framing::Tcp,
            domains: alloc::vec![String::from(domain)],
            tls: TlsOffer::Required,
            secure_transport: false,
            limits: Limits::default(),
            sasl: Some(ServerOptions::default()),
            max_auth_failures: 3,
            binding_quirk: BindingQuirk::None,
            stream_management: None,
            sasl2: false,
            downgrade_protection: false,
            #[cfg(feature = "dialback")]
            dialback: None,
            bidi: false,
            fast_0rtt: false,
        }
    }

    /// An S2S server for `domain` over TCP that requires TLS and offers SASL EXTERNAL to
    /// peers whose certificate names their domain (§13.7.2.3).
    pub fn server_to_server(domain: &str) -> Self {
        ReceiverConfig {
            ns: ContentNamespace::Server,
            sasl: Some(ServerOptions {
                scram_hashes: Vec::new(),
                channel_binding: false,
                plain: false,
                plain_without_tls: false,
                external: true,
                anonymous: false,
            }),
            ..ReceiverConfig::client_to_server(domain)
        }
    }

    /// Dialback, when configured on a server stream.
    #[cfg(feature = "dialback")]
    fn s2s_dialback(&self) -> Option<&DialbackConfig> {
        self.dialback
            .as_ref()
            .filter(|_| self.ns == ContentNamespace::Server)
    }

    /// [`ReceiverConfig::stream_management`], in a build with the `stream-management`
    /// feature; `None` without it.
    fn sm_config(&self) -> Option<SmConfig> {
        self.stream_management
            .filter(|_| cfg!(feature = "stream-management"))
    }
}

/// Which stream of the negotiation we are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The first stream, before TLS.
    Plain,
    /// A protected (or plaintext-by-policy) stream before authentication.
    Unauthenticated,
    /// The stream after SASL success (§6.4.6).
    Authenticated,
}

/// Waiting for the initiating entity's stream header (§4.7).
#[derive(Debug)]
pub struct ExpectHeader {
    phase: Phase,
}

/// Waiting for `<starttls/>` (§5.4.2) on a stream where TLS is still to come; with a
/// voluntary offer, `<auth/>` is accepted too.
#[derive(Debug)]
pub struct ExpectStartTls {
    domain: String,
    auth: Option<ExpectAuth>,
}

/// Waiting for `<auth/>` (§6.4.2), or SASL2's `<authenticate/>` (XEP-0388 §2.2) where
/// it is offered.
#[derive(Debug)]
pub struct ExpectAuth {
    domain: String,
    offered: Vec<Mechanism>,
    /// The XEP-0440 binding types offered, if any (for XEP-0474's hash).
    cb_types: Option<Vec<String>>,
    /// SASL2 was offered beside `<mechanisms/>`.
    sasl2: bool,
    /// The FAST mechanisms offered inside SASL2's `<inline/>` (XEP-0484 §3.1).
    fast: Vec<HtMechanism>,
    failures: u32,
    /// S2S: bidirectional streams (XEP-0288) were offered with these features.
    bidi_offered: bool,
}

/// What a SASL2 `<authenticate/>` asked for besides authentication.
#[derive(Debug, Default)]
struct Sasl2Request {
    /// Bind 2 (XEP-0386): `Some(tag)`.
    bind: Option<Option<String>>,
    /// `<enable/>` inside `<bind/>`, with its `resume`.
    enable: Option<bool>,
    /// `<user-agent id=…>` (XEP-0388 §2.2.1).
    user_agent: Option<String>,
    /// `<resume previd=… h=…/>` inline (XEP-0198 with SASL2).
    resume: Option<(String, u32)>,
    /// `<request-token mechanism=…/>` (XEP-0484 §3.2).
    request_token: Option<String>,
    /// `<fast/>` (XEP-0484 §3.4): this login uses a token.
    fast: Option<FastUse>,
}

/// `<fast count=… invalidate=…/>` (XEP-0484 §3.4, §3.5).
#[derive(Debug, Default)]
struct FastUse {
    /// The client's use counter (the replay rule for TLS 0-RTT).
    count: Option<u32>,
    /// Forget the token after this login.
    invalidate: bool,
}

/// Waiting for `<response/>` or `<abort/>` (§6.4.3, §6.4.4; XEP-0388 §2.4 on SASL2).
pub struct ExpectResponse {
    auth: ExpectAuth,
    mechanism: ServerMechanism,
    /// The exchange is SASL2's, and what came with its `<authenticate/>`.
    sasl2: Option<Sasl2Request>,
}

/// A `<db:result/>` was admitted (XEP-0220 §2.1.2): waiting for the authoritative
/// server's verdict ([`Event::DialbackRequested`]); `<db:verify/>` is still answered,
/// anything else refused. On an error verdict the stream goes back to `back`.
#[cfg(feature = "dialback")]
pub struct AwaitDialback {
    request: Dialback,
    back: alloc::boxed::Box<State>,
}

/// What [`Context::dialback_element`] made of an element.
#[cfg(feature = "dialback")]
enum Dialbacked {
    /// Not a dialback element, or dialback is off: the state it arrived in, untouched.
    Other(State),
    /// Handled: the next state, or the stream error sent.
    Handled(Result<State, Error>),
}

/// Waiting for the bind request (§7.6).
#[derive(Debug)]
pub struct ExpectBind {
    domain: String,
}

/// `<resume/>` arrived in place of the bind request (XEP-0198 §5): waiting for the server to
/// hand over the detached session ([`Connection::resume`]) or refuse.
///
/// [`Connection::resume`]: crate::connection::Connection::resume
#[derive(Debug)]
pub struct AwaitResume {
    bind: ExpectBind,
    previd: String,
    h: u32,
}

/// SASL2 authenticated the client and its `<authenticate/>` carried `<resume/>`: the
/// `<success/>` waits for the session table ([`Event::ResumeRequested`]), to carry
/// `<resumed/>`, or `<failed/>` and what Bind 2 binds instead.
#[derive(Debug)]
pub struct AwaitSasl2Resume {
    success: Sasl2Success,
    previd: String,
    h: u32,
}

/// A SASL2 `<success/>` to send (XEP-0388 §2.6.1), once it is known what rides in it.
#[derive(Debug)]
struct Sasl2Success {
    request: Sasl2Request,
    /// The authenticated bare JID.
    identity: String,
    additional_data: Option<Vec<u8>>,
    /// A FAST token issued on this login (XEP-0484 §3.3).
    token: Option<IssuedToken>,
    domain: String,
}

/// What happened to an inline `<resume/>`.
enum InlineResume {
    /// None was asked for.
    None,
    /// `<resumed previd=… h=…/>`: the session's full JID.
    Resumed {
        previd: String,
        h: u32,
        jid: Option<String>,
    },
    /// `<failed/>` with `<item-not-found/>`: Bind 2 goes on.
    Failed,
}

enum State {
    Header(ExpectHeader),
    StartTls(ExpectStartTls),
    /// `<starttls/>` read; `<proceed/>` goes out only if nothing followed it.
    StartTlsReceived(String),
    /// `<proceed/>` queued: nothing more is read or sent in plaintext (§5.4.2.3).
    AwaitTls,
    Auth(ExpectAuth),
    Response(ExpectResponse),
    #[cfg(feature = "dialback")]
    Dialback(AwaitDialback),
    /// `<success/>` sent: the initiating entity restarts the stream (§6.4.6).
    Restart,
    Bind(ExpectBind),
    Resume(AwaitResume),
    /// SASL2 authenticated with an inline `<resume/>`: waiting for the server's session
    /// table before `<success/>` goes out.
    Sasl2Resume(AwaitSasl2Resume),
    Negotiated,
    Failed,
}

/// What the negotiation learned that outlives a stream restart.
#[derive(Default)]
struct Learned {
    secure: bool,
    tls: TlsInfo,
    mechanism: Option<Mechanism>,
    /// The authenticated identity: a bare JID on C2S, a domain on S2S.
    identity: Option<String>,
    /// S2S: the `from` of the first header on the protected stream; every later header must
    /// carry the same (a changed one is `<improper-addressing/>`).
    peer_from: Option<String>,
    /// The session resumed (XEP-0198 §5) and the client's `h`.
    resumed: Option<(SmState, u32)>,
    /// SASL2 authenticated the stream.
    sasl2: bool,
    /// Stream management enabled inside Bind 2.
    sm_inline: Option<sm::InlineEnabled>,
    /// The id of the stream we opened last (§4.7.3): a dialback key is bound to it.
    stream_id: Option<String>,
    /// S2S: Server Dialback authenticated the stream.
    #[cfg(feature = "dialback")]
    dialback: bool,
    /// S2S: the initiating server asked for a bidirectional stream (XEP-0288 §2).
    bidi: bool,
}

struct Context<'a, R, S> {
    config: &'a ReceiverConfig,
    outbox: &'a mut Outbox,
    rng: &'a mut R,
    store: &'a S,
    learned: &'a mut Learned,
    header_sent: bool,
    /// What is being read came as TLS 1.3 early data (see [`ReceivingEntity::early`]).
    early: bool,
}

impl<R: RngCore + CryptoRng, S: CredentialStore> Context<'_, R, S> {
    /// A new, unpredictable stream id for every header (§4.7.3, §4.3.3).
    fn fresh_id(&mut self) -> String {
        random_hex(self.rng, 16)
    }

    fn send_header(&mut self, peer: &StreamHeader, from: Option<&str>) {
        let id = self.fresh_id();
        self.learned.stream_id = Some(id.clone());
        let mut s = String::new();
        HeaderOut {
            ns: self.config.ns,
            from,
            to: peer.from.as_deref(),
            id: Some(&id),
            lang: Some(peer.lang.as_deref().unwrap_or("en")),
        }
        .write(self.config.framing, &mut s);
        self.outbox.send(&s);
        self.outbox.step(Step::HeaderSent);
        self.header_sent = true;
    }

    /// An element that is not allowed before the stream is negotiated: a stanza gets
    /// `<not-authorized/>` (§4.9.3.12), anything else `<policy-violation/>`.
    /// XEP-0484 §3.4: something besides the header and a FAST `<authenticate/>` came as
    /// TLS 0-RTT early data.
    fn early_data_refused(&mut self) -> Error {
        self.stream_error(StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            "only the stream header and a FAST <authenticate/> may come in TLS 0-RTT early data",
        ))
    }

    fn not_yet(&mut self, node: roxmltree::Node<'_, '_>, waiting_for: &str) -> Error {
        let condition = if is_stanza(node, self.config.ns) {
            StreamErrorCondition::NotAuthorized
        } else {
            StreamErrorCondition::PolicyViolation
        };
        let text = format!("{waiting_for} first, not {}", qualified_name(node));
        self.stream_error(StreamError::with_text(condition, &text))
    }

    fn negotiated(&mut self, features: StreamFeatures, jid: Option<String>) -> State {
        self.outbox.event(Event::Negotiated(Outcome {
            features,
            stream_id: None,
            secure: self.learned.secure,
            mechanism: self.learned.mechanism,
            jid,
            scram_cache: None,
            sasl_offer: None,
            sasl2: self.learned.sasl2,
            sasl2_inline: None,
            fast_token: None,
            fast_token_rejected: false,
            #[cfg(feature = "dialback")]
            dialback: self.learned.dialback,
            bidi: self.learned.bidi,
        }));
        State::Negotiated
    }

    /// A dialback element on a stream not yet authenticated (XEP-0220 §2), where dialback
    /// is configured; `None` for anything else. `back` is the state it arrived in.
    #[cfg(feature = "dialback")]
    fn dialback_element(&mut self, node: roxmltree::Node<'_, '_>, back: State) -> Dialbacked {
        let Some(config) = self.config.s2s_dialback() else {
            return Dialbacked::Other(back);
        };
        let request = match Dialback::parse(node) {
            None => return Dialbacked::Other(back),
            Some(Err(e)) => return Dialbacked::Handled(Err(self.stream_error(e))),
            Some(Ok(request)) => request,
        };
        let domains = &self.config.domains;
        // §2.1.3: the authoritative role needs no state; answered on any stream.
        if let Some(answer) = dialback::answer_verify(&request, &config.secret, |d| {
            domains.iter().any(|o| eq_domain(o, d))
        }) {
            let mut out = String::new();
            answer.write(&mut out);
            self.outbox.send(&out);
            return Dialbacked::Handled(Ok(back));
        }
        if request.kind != dialback::Kind::Result || request.verdict.is_some() {
            return Dialbacked::Handled(Err(self.stream_error(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "only <db:result/> and <db:verify/> requests come to a receiving server",
            ))));
        }
        Dialbacked::Handled(self.admit_dialback(config.policy, request, back))
    }

    /// §2.1.2: whether the receiving server goes on to verify `request`: it names one of
    /// our domains (`<host-unknown/>`), the domain the stream's `from` gave
    /// (`<improper-addressing/>`), and the policy admits it.
    #[cfg(feature = "dialback")]
    fn admit_dialback(
        &mut self,
        policy: dialback::ReceivingPolicy,
        request: Dialback,
        back: State,
    ) -> Result<State, Error> {
        if !self
            .config
            .domains
            .iter()
            .any(|d| eq_domain(d, &request.to))
        {
            return Err(self.stream_error(StreamError::with_text(
                StreamErrorCondition::HostUnknown,
                "dialback for a domain not served here",
            )));
        }
        if self
            .learned
            .peer_from
            .as_deref()
            .is_some_and(|from| !eq_domain(from, &request.from))
        {
            return Err(self.stream_error(StreamError::with_text(
                StreamErrorCondition::ImproperAddressing,
                "dialback for another domain than the stream's 'from'",
            )));
        }
        let names = &self.learned.tls.peer_identities;
        let certificate = match names.iter().find(|n| eq_domain(n, &request.from)) {
            Some(name) => PeerCertificate::VerifiedFor(name),
            None => names.first().map_or(PeerCertificate::Unverified, |n| {
                PeerCertificate::VerifiedFor(n)
            }),
        };
        if let Err(e) = policy.admits(&request.from, self.learned.secure, certificate) {
            return Err(self.stream_error(e));
        }
        let Some(stream_id) = self.learned.stream_id.clone() else {
            return Err(
                self.stream_error(StreamError::new(StreamErrorCondition::InternalServerError))
            );
        };
        let verify = Dialback::verify_request(&request, &stream_id);
        self.outbox.event(Event::DialbackRequested { verify });
        Ok(State::Dialback(AwaitDialback {
            request,
            back: alloc::boxed::Box::new(back),
        }))
    }

    /// The `<mechanisms/>` feature for this stream, with the XEP-0440 binding types, and
    /// SASL2's `<authentication/>` when configured (C2S): the mechanisms and the binding
    /// types offered.
    fn sasl_features(
        &self,
        options: &ServerOptions,
        features: &mut String,
    ) -> (Vec<Mechanism>, Option<Vec<String>>, Vec<HtMechanism>) {
        let secure = self.learned.secure;
        let cb = &self.learned.tls.channel_binding;
        let offered = options.offer(secure, cb, external_identity(self.config, self.learned));
        if offered.is_empty() {
            return (offered, None, Vec::new());
        }
        features.push_str("<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>");
        for m in &offered {
            let _ = write!(features, "<mechanism>{}</mechanism>", m.name());
        }
        features.push_str("</mechanisms>");
        let types = match self.config.binding_quirk {
            BindingQuirk::None => options.channel_binding_types(secure, cb),
            BindingQuirk::Unadvertised | BindingQuirk::Unverifiable => Vec::new(),
        };
        if !types.is_empty() {
            features.push_str("<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>");
            for t in &types {
                let _ = write!(features, "<channel-binding type='{}'/>", t.name());
            }
            features.push_str("</sasl-channel-binding>");
        }
        let mut fast = Vec::new();
        if self.sasl2_offered() {
            features.push_str("<authentication xmlns='urn:xmpp:sasl:2'>");
            for m in &offered {
                let _ = write!(features, "<mechanism>{}</mechanism>", m.name());
            }
            features.push_str("<inline><bind xmlns='urn:xmpp:bind:0'>");
            let sm = self.config.sm_config().is_some();
            if sm {
                features.push_str("<inline><feature var='urn:xmpp:sm:3'/></inline>");
            }
            features.push_str("</bind>");
            if sm {
                // `<resume/>` may ride in `<authenticate/>`.
                features.push_str("<sm xmlns='urn:xmpp:sm:3'/>");
            }
            if secure && self.store.fast_tokens(&mut |_, _| {}) {
                fast = fast_offer(&types, cb);
                features.push_str(if self.config.fast_0rtt {
                    "<fast xmlns='urn:xmpp:fast:0' tls-0rtt='true'>"
                } else {
                    "<fast xmlns='urn:xmpp:fast:0'>"
                });
                for m in &fast {
                    let _ = write!(features, "<mechanism>{}</mechanism>", m.name());
                }
                features.push_str("</fast>");
            }
            features.push_str("</inline></authentication>");
        }
        let types =
            (!types.is_empty()).then(|| types.iter().map(|t| String::from(t.name())).collect());
        (offered, types, fast)
    }

    /// SASL2 is offered on this C2S stream (with the crate feature `sasl2`).
    fn sasl2_offered(&self) -> bool {
        cfg!(feature = "sasl2") && self.config.sasl2 && self.config.ns == ContentNamespace::Client
    }
}

/// The FAST mechanisms to offer (XEP-0484 §3.1): one bound to each channel-binding type
/// advertised, channel-bound first, and `HT-SHA-256-NONE`.
fn fast_offer(
    types: &[crate::sasl::ChannelBindingType],
    cb: &ChannelBindingData,
) -> Vec<HtMechanism> {
    HtMechanism::PREFERENCE
        .into_iter()
        .filter(|m| match m.channel_binding() {
            Some(t) => types.contains(&t) && cb.get(t).is_some(),
            None => true,
        })
        .collect()
}

fn random_hex<R: RngCore>(rng: &mut R, bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    let mut buf = [0u8; 32];
    let buf = &mut buf[..bytes.min(32)];
    rng.fill_bytes(buf);
    out.push_str(&base16ct::lower::encode_string(buf));
    out
}

/// The resource suffix Bind 2 gives a client that sent `<user-agent id>` (XEP-0388 §2.2,
/// XEP-0386 §4): the same for the same account and user agent, so a reconnecting client gets
/// its full JID back (and a stale session of its own is replaced, RFC 6120 §7.7.2.2), while two
/// devices on one account get different resources. Hashed, so the id (which the user agent
/// keeps stable and private) is not shown to contacts; the account is hashed in, so the
/// suffix does not link one device's accounts.
fn user_agent_suffix(account: &str, user_agent_id: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(account.as_bytes())
        .chain_update([0])
        .chain_update(user_agent_id.as_bytes())
        .finalize();
    base16ct::lower::encode_string(&digest[..6])
}

impl ExpectHeader {
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        header: &StreamHeader,
    ) -> Result<State, Error> {
        cx.outbox.step(Step::HeaderReceived);
        let domain = header
            .to
            .as_deref()
            .and_then(|to| cx.config.domains.iter().find(|d| eq_domain(d, to)))
            .cloned();
        let Some(domain) = domain else {
            return Err(cx.stream_error(StreamError::new(StreamErrorCondition::HostUnknown)));
        };
        cx.send_header(header, Some(&domain));
        if cx.config.framing == Framing::Tcp
            && header.default_ns.as_deref() != Some(cx.config.ns.as_str())
        {
            return Err(cx.stream_error(StreamError::new(StreamErrorCondition::InvalidNamespace)));
        }
        if header.version_numbers().is_none_or(|(major, _)| major != 1) {
            return Err(cx.stream_error(StreamError::new(StreamErrorCondition::UnsupportedVersion)));
        }
        // §4.7.1, §5.4.3.3: an initiating server names itself on the protected stream (what
        // came before TLS is forgotten) and keeps that name on every later header.
        if cx.config.ns == ContentNamespace::Server {
            match self.phase {
                Phase::Plain => {}
                Phase::Unauthenticated => cx.learned.peer_from = header.from.clone(),
                Phase::Authenticated => {
                    let same = match (&header.from, &cx.learned.peer_from) {
                        (Some(now), Some(before)) => eq_domain(now, before),
                        (None, None) => true,
                        _ => false,
                    };
                    if !same {
                        return Err(cx.stream_error(StreamError::with_text(
                            StreamErrorCondition::ImproperAddressing,
                            "'from' changed between headers",
                        )));
                    }
                }
            }
        }
        let mut features = String::from("<stream:features>");
        let state = self.offer(cx, domain, &mut features)?;
        features.push_str("</stream:features>");
        cx.outbox.send(&features);
        cx.outbox.step(Step::FeaturesSent);
        Ok(state)
    }

    /// The features of this stream, in the order of the RFC: STARTTLS (§5), SASL (§6),
    /// binding (§7).
    fn offer<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        domain: String,
        features: &mut String,
    ) -> Result<State, Error> {
        let tls_to_come = self.phase == Phase::Plain && cx.config.framing == Framing::Tcp;
        let starttls = match cx.config.tls {
            TlsOffer::Required if tls_to_come => Some(true),
            TlsOffer::Optional if tls_to_come => Some(false),
            _ => None,
        };
        if let Some(required) = starttls {
            features.push_str(if required {
                starttls::FEATURE_REQUIRED
            } else {
                starttls::FEATURE_OPTIONAL
            });
        }
        // §5.3.1: when TLS is mandatory, nothing else is offered before it.
        let sasl_now = starttls != Some(true) && self.phase != Phase::Authenticated;
        // XEP-0220 §2.1.1: dialback beside SASL, where the policy would admit it.
        #[cfg(feature = "dialback")]
        let dialback = sasl_now
            && cx
                .config
                .s2s_dialback()
                .is_some_and(|d| cx.learned.secure || d.policy.allow_without_tls);
        #[cfg(not(feature = "dialback"))]
        let dialback = false;
        let auth = match (&cx.config.sasl, sasl_now) {
            (sasl, true) if sasl.is_some() || dialback => {
                let (offered, cb_types, fast) = match sasl {
                    Some(options) => cx.sasl_features(options, features),
                    None => (Vec::new(), None, Vec::new()),
                };
                #[cfg(feature = "dialback")]
                if dialback {
                    features.push_str("<dialback xmlns='");
                    features.push_str(dialback::NS_FEATURE);
                    features.push_str("'><errors/></dialback>");
                }
                // XEP-0288 §2: before authentication, here only on a protected stream.
                let bidi =
                    cx.config.bidi && cx.config.ns == ContentNamespace::Server && cx.learned.secure;
                if bidi {
                    features.push_str(bidi::FEATURE);
                }
                Some(ExpectAuth {
                    offered,
                    cb_types,
                    sasl2: cx.sasl2_offered(),
                    fast,
                    domain: domain.clone(),
                    failures: 0,
                    bidi_offered: bidi,
                })
                .filter(|auth| !auth.offered.is_empty() || dialback)
            }
            _ => None,
        };
        Ok(match (starttls, auth) {
            (Some(_), auth) => State::StartTls(ExpectStartTls { domain, auth }),
            (None, Some(auth)) => State::Auth(auth),
            (None, None) if self.phase == Phase::Authenticated => {
                if cx.config.ns == ContentNamespace::Client {
                    features.push_str(bind::FEATURE);
                    if cx.config.sm_config().is_some() {
                        features.push_str("<sm xmlns='urn:xmpp:sm:3'/>");
                    }
                    State::Bind(ExpectBind { domain })
                } else {
                    // §7.1: no binding between servers.
                    let identity = cx.learned.identity.clone();
                    cx.negotiated(StreamFeatures::default(), identity)
                }
            }
            // SASL is required here and no mechanism could authenticate this peer (on S2S:
            // its certificate does not name the stream's `from`): the stream never goes on
            // unauthenticated (§4.9.3.12).
            (None, None) if cx.config.sasl.is_some() => {
                return Err(cx.stream_error(StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "no SASL mechanism can authenticate you here",
                )))
            }
            (None, None) => cx.negotiated(StreamFeatures::default(), None),
        })
    }
}

impl ExpectStartTls {
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if starttls::is_command(node) {
            cx.outbox.step(Step::StartTlsReceived);
            return Ok(State::StartTlsReceived(self.domain));
        }
        match self.auth {
            Some(auth) if is_sasl(node) => auth.handle(cx, node),
            _ => Err(cx.not_yet(node, "STARTTLS")),
        }
    }
}

impl ExpectAuth {
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if bidi::is_request(node) {
            return self.bidi_request(cx);
        }
        self.sasl_element(cx, node)
    }

    /// The initiating server's `<bidi/>` (XEP-0288 §2): recorded where it was offered;
    /// unoffered it is an element this stream does not support (§4.9.3.23), a second one
    /// a `<policy-violation/>`.
    fn bidi_request<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
    ) -> Result<State, Error> {
        if !self.bidi_offered {
            return Err(cx.stream_error(StreamError::with_text(
                StreamErrorCondition::UnsupportedStanzaType,
                "bidirectional streams (XEP-0288) were not offered",
            )));
        }
        if cx.learned.bidi {
            return Err(cx.stream_error(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "<bidi/> sent twice",
            )));
        }
        cx.learned.bidi = true;
        Ok(State::Auth(self))
    }

    /// An RFC 6120 `<auth/>` (or SASL2's `<authenticate/>`), or anything else, refused.
    fn sasl_element<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        let mut sasl2 = None;
        let (name, payload) = match sasl_element::parse(node) {
            Some(Ok(Received::Auth { mechanism, payload })) => (mechanism, payload),
            Some(Err(())) => return self.failed(cx, SaslFailure::IncorrectEncoding, None),
            Some(Ok(Received::Abort)) => return self.failed(cx, SaslFailure::Aborted, None),
            _ if self.sasl2 && is_sasl2(node, "authenticate") => {
                let Ok((name, payload, request)) = read_authenticate(node) else {
                    return self.failed_as(cx, SaslFailure::IncorrectEncoding, None, true);
                };
                if let Some(why) = cx.early.then(|| refused_early(&name, &request)).flatten() {
                    cx.outbox.step(Step::AuthStarted);
                    return self.failed_as(cx, SaslFailure::NotAuthorized, Some(why), true);
                }
                if let Some(mechanism) = HtMechanism::from_name(&name) {
                    cx.outbox.step(Step::AuthStarted);
                    return self.fast_login(cx, mechanism, payload.as_deref(), request);
                }
                sasl2 = Some(request);
                (name, payload)
            }
            _ => return Err(cx.not_yet(node, "authentication")),
        };
        let in_sasl2 = sasl2.is_some();
        cx.outbox.step(Step::AuthStarted);
        // BindingQuirk::Unverifiable: -PLUS refused at once; the others see an offer without
        // -PLUS, so that `y` passes.
        let unplussed: Vec<Mechanism>;
        let mut offered = &self.offered[..];
        if cx.config.binding_quirk == BindingQuirk::Unverifiable {
            if Mechanism::from_name(&name).is_some_and(|m| m.is_plus() && offered.contains(&m)) {
                return self.failed_as(
                    cx,
                    SaslFailure::NotAuthorized,
                    Some("Invalid channel binding"),
                    in_sasl2,
                );
            }
            unplussed = offered.iter().copied().filter(|m| !m.is_plus()).collect();
            offered = &unplussed;
        }
        let context = ServerContext {
            offered,
            tls: cx.learned.secure,
            channel_binding: &cx.learned.tls.channel_binding,
            external_identity: external_identity(cx.config, cx.learned),
        };
        match ServerMechanism::start(&name, &context, cx.rng) {
            Ok(mut mechanism) => {
                if cx.config.downgrade_protection {
                    let names = self.offered.iter().map(|m| m.name());
                    let advertised = ssdp::advertised(names, self.cb_types.as_deref());
                    mechanism = mechanism.with_downgrade_protection(advertised);
                }
                ExpectResponse {
                    auth: self,
                    mechanism,
                    sasl2,
                }
                .step(cx, payload.as_deref())
            }
            Err(failure) => self.failed_as(cx, failure, None, in_sasl2),
        }
    }

    /// A login with a FAST token (XEP-0484 §3.4): `mechanism` must be one offered under
    /// `<fast/>`; the proof is checked against the tokens of the account and user agent
    /// (constant time, the replay rule on `count`); the success carries the server's
    /// proof, and a new token when the one used is rotated (or asked for again).
    fn fast_login<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        mechanism: HtMechanism,
        payload: Option<&[u8]>,
        request: Sasl2Request,
    ) -> Result<State, Error> {
        if !self.fast.contains(&mechanism) {
            return self.failed_as(cx, SaslFailure::InvalidMechanism, None, true);
        }
        let Some((authcid, proof)) = payload.and_then(split_initial_response) else {
            return self.failed_as(cx, SaslFailure::MalformedRequest, None, true);
        };
        let Some(user_agent) = request.user_agent.as_deref() else {
            return self.failed_as(
                cx,
                SaslFailure::NotAuthorized,
                Some("a FAST token needs the <user-agent/> it was issued to"),
                true,
            );
        };
        let cb_data = match mechanism.channel_binding() {
            Some(t) => cx.learned.tls.channel_binding.get(t).unwrap_or_default(),
            None => &[],
        };
        let identity = match client_identity(authcid, None, &self.domain) {
            Ok(jid) => jid.into_string(),
            Err(why) => return self.failed_as(cx, SaslFailure::InvalidAuthzid, Some(why), true),
        };
        let early = cx.early;
        let count = request.fast.as_ref().and_then(|f| f.count);
        let invalidate = request.fast.as_ref().is_some_and(|f| f.invalidate);
        let mut verdict = Err(TokenRefused::Unknown);
        let mut issued = None;
        let (store, rng) = (cx.store, &mut *cx.rng);
        store.fast_tokens(&mut |tokens, now| {
            verdict = tokens.verify(&identity, user_agent, mechanism, cb_data, proof, count, now);
            match &verdict {
                Ok(_) if invalidate => tokens.invalidate(&identity, user_agent),
                // XEP-0484 §"Token rotation"; never on a login from early data, which an
                // attacker may replay to churn the client's tokens.
                Ok(used) if used.rotate && !early => {
                    issued = tokens.issue(&identity, user_agent, mechanism, rng, now)
                }
                _ => {}
            }
        });
        let used = match verdict {
            Ok(used) => used,
            Err(TokenRefused::Unknown) => {
                return self.failed_as(cx, SaslFailure::NotAuthorized, None, true)
            }
            Err(TokenRefused::CountReplayed) => {
                return self.failed_as(
                    cx,
                    SaslFailure::NotAuthorized,
                    Some("FAST count not above the last one seen (replay)"),
                    true,
                )
            }
        };
        cx.learned.mechanism = None;
        let mut success = Sasl2Success {
            request,
            identity,
            additional_data: Some(used.server_proof),
            token: issued,
            domain: self.domain,
        };
        // A token asked for beside a token login is the rotation's (or none, when
        // invalidated).
        success.request.request_token = None;
        success.send_or_await_resume(cx)
    }

    /// Sends `<failure/>` (§6.4.5) and waits for another attempt, up to the bound.
    fn failed<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        failure: SaslFailure,
        text: Option<&str>,
    ) -> Result<State, Error> {
        self.failed_as(cx, failure, text, false)
    }

    /// [`ExpectAuth::failed`], as SASL2's `<failure/>` (XEP-0388 §2.6.2) when `sasl2`.
    fn failed_as<R: RngCore + CryptoRng, S: CredentialStore>(
        mut self,
        cx: &mut Context<'_, R, S>,
        failure: SaslFailure,
        text: Option<&str>,
        sasl2: bool,
    ) -> Result<State, Error> {
        if sasl2 {
            let mut s = String::from("<failure xmlns='urn:xmpp:sasl:2'><");
            s.push_str(failure.name());
            s.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>");
            if let Some(text) = text {
                s.push_str("<text>");
                escape_text(text, &mut s);
                s.push_str("</text>");
            }
            s.push_str("</failure>");
            cx.outbox.send(&s);
        } else {
            cx.outbox.send(&sasl_element::failure(failure, text));
        }
        self.failures += 1;
        if self.failures >= cx.config.max_auth_failures {
            return Err(cx.stream_error(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many failed authentication attempts",
            )));
        }
        Ok(State::Auth(self))
    }
}

impl ExpectResponse {
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if self.sasl2.is_some() {
            return if is_sasl2(node, "response") {
                match sasl2_payload(node) {
                    Ok(payload) => self.step(cx, Some(&payload)),
                    Err(()) => self
                        .auth
                        .failed_as(cx, SaslFailure::IncorrectEncoding, None, true),
                }
            } else if is_sasl2(node, "abort") {
                self.auth.failed_as(cx, SaslFailure::Aborted, None, true)
            } else {
                Err(cx.not_yet(node, "the SASL2 response"))
            };
        }
        match sasl_element::parse(node) {
            Some(Ok(Received::Response(payload))) => {
                let payload = payload.unwrap_or_default();
                self.step(cx, Some(&payload))
            }
            Some(Ok(Received::Abort)) => self.auth.failed(cx, SaslFailure::Aborted, None),
            Some(Err(())) => self.auth.failed(cx, SaslFailure::IncorrectEncoding, None),
            _ => Err(cx.not_yet(node, "the SASL response")),
        }
    }

    fn step<R: RngCore + CryptoRng, S: CredentialStore>(
        mut self,
        cx: &mut Context<'_, R, S>,
        payload: Option<&[u8]>,
    ) -> Result<State, Error> {
        match self.mechanism.step(cx.store, payload) {
            Ok(ServerStep::Challenge(data)) => {
                if self.sasl2.is_some() {
                    cx.outbox.send(&format!(
                        "<challenge xmlns='urn:xmpp:sasl:2'>{}</challenge>",
                        encode(&data)
                    ));
                } else {
                    cx.outbox.send(&sasl_element::challenge(&data));
                }
                Ok(State::Response(self))
            }
            Ok(ServerStep::Success {
                additional_data,
                authcid,
                authzid,
            }) => {
                let identity = match cx.config.ns {
                    ContentNamespace::Client => {
                        match client_identity(&authcid, authzid.as_deref(), &self.auth.domain) {
                            Ok(jid) => jid.into_string(),
                            Err(why) => {
                                let sasl2 = self.sasl2.is_some();
                                return self.auth.failed_as(
                                    cx,
                                    SaslFailure::InvalidAuthzid,
                                    Some(why),
                                    sasl2,
                                );
                            }
                        }
                    }
                    // XEP-0178 §2: the authzid is empty or the domain authenticated.
                    ContentNamespace::Server => match authzid {
                        Some(authzid) if !eq_domain(&authzid, &authcid) => {
                            return self.auth.failed(
                                cx,
                                SaslFailure::InvalidAuthzid,
                                Some("the authzid names another domain than the certificate"),
                            )
                        }
                        _ => authcid,
                    },
                };
                cx.learned.mechanism = Some(self.mechanism.mechanism());
                if let Some(request) = self.sasl2 {
                    let token = issue_requested(cx, &self.auth.fast, &request, &identity);
                    return Sasl2Success {
                        request,
                        identity,
                        additional_data,
                        token,
                        domain: self.auth.domain,
                    }
                    .send_or_await_resume(cx);
                }
                cx.outbox
                    .send(&sasl_element::success(additional_data.as_deref()));
                cx.outbox.step(Step::Authenticated);
                cx.learned.identity = Some(identity);
                Ok(State::Restart)
            }
            Err(failure) => {
                let reason = self.mechanism.failure_reason();
                let sasl2 = self.sasl2.is_some();
                self.auth.failed_as(cx, failure, reason, sasl2)
            }
        }
    }
}

#[cfg(feature = "dialback")]
impl AwaitDialback {
    /// While the authoritative server is asked: `<db:verify/>` answered, nothing else.
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        // A second `<db:result/>` before the first is settled: one at a time.
        if node.tag_name().namespace() == Some(dialback::NS) && node.tag_name().name() == "result" {
            return Err(cx.stream_error(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "one dialback request at a time",
            )));
        }
        match cx.dialback_element(node, State::Dialback(self)) {
            Dialbacked::Handled(next) => next,
            Dialbacked::Other(_) => Err(cx.not_yet(node, "dialback verification")),
        }
    }

    /// The authoritative server's `verdict` (§2.1.4): passed on to the peer; `valid`
    /// authenticates the stream for the requested domain, `invalid` ends it with
    /// `<not-authorized/>`, an error leaves it as it was before the request.
    fn settle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        verdict: Verdict,
    ) -> Result<State, Error> {
        let mut out = String::new();
        Dialback::result_answer(&self.request, verdict.clone()).write(&mut out);
        cx.outbox.send(&out);
        match verdict {
            Verdict::Valid => {
                cx.outbox.step(Step::Authenticated);
                cx.learned.dialback = true;
                cx.learned.identity = Some(self.request.from.clone());
                Ok(cx.negotiated(StreamFeatures::default(), Some(self.request.from)))
            }
            Verdict::Invalid => Err(cx.stream_error(StreamError::with_text(
                StreamErrorCondition::NotAuthorized,
                "the dialback key did not verify",
            ))),
            Verdict::Error(_) => Ok(*self.back),
        }
    }
}

impl ExpectBind {
    fn handle<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if cx.config.sm_config().is_some() {
            match sm::element::parse(node) {
                Some(Ok(Nonza::Resume { previd, h })) => {
                    cx.outbox.event(Event::ResumeRequested {
                        previd: previd.clone(),
                        account: cx.learned.identity.clone(),
                        h,
                    });
                    return Ok(State::Resume(AwaitResume {
                        bind: self,
                        previd,
                        h,
                    }));
                }
                // XEP-0198 §3: `<enable/>` before binding (or anything else) is refused.
                Some(_) => {
                    cx.outbox
                        .send(&sm::element::failed("unexpected-request", None));
                    return Ok(State::Bind(self));
                }
                None => {}
            }
        }
        let Some((id, resource)) = bind::parse_request(node) else {
            return Err(cx.not_yet(node, "resource binding"));
        };
        let resource = match resource {
            // §7.6: the server MAY override; it generates one when none is requested.
            None => random_hex(cx.rng, 8),
            // RFC 7622 §3.4.
            Some(r) if jid::check_resource(&r).is_ok() => r,
            Some(_) => {
                cx.outbox.send(&bind::error(&id, "modify", "bad-request"));
                return Ok(State::Bind(self));
            }
        };
        let bare = cx.learned.identity.as_deref().unwrap_or(&self.domain);
        let Ok(jid) = Jid::parse(bare).and_then(|bare| bare.with_resource(&resource)) else {
            // Only a configured domain that is not a JID domainpart gets here.
            cx.outbox
                .send(&bind::error(&id, "cancel", "internal-server-error"));
            return Ok(State::Bind(self));
        };
        let jid = jid.into_string();
        cx.outbox.send(&bind::result(&id, &jid));
        cx.outbox.step(Step::Bound);
        let features = StreamFeatures {
            bind: true,
            ..StreamFeatures::default()
        };
        Ok(cx.negotiated(features, Some(jid)))
    }
}

/// A FAST token for `<request-token mechanism=…/>` (XEP-0484 §3.2), when the mechanism
/// was offered under `<fast/>` and the client named its user agent.
fn issue_requested<R: RngCore + CryptoRng, S: CredentialStore>(
    cx: &mut Context<'_, R, S>,
    offered: &[HtMechanism],
    request: &Sasl2Request,
    identity: &str,
) -> Option<IssuedToken> {
    let mechanism = request
        .request_token
        .as_deref()
        .and_then(HtMechanism::from_name)
        .filter(|m| offered.contains(m))?;
    let user_agent = request.user_agent.as_deref()?;
    let mut issued = None;
    let (store, rng) = (cx.store, &mut *cx.rng);
    store.fast_tokens(&mut |tokens, now| {
        issued = tokens.issue(identity, user_agent, mechanism, rng, now);
    });
    issued
}

impl Sasl2Success {
    /// Sends the success now, or, with an inline `<resume/>` (and stream management
    /// configured), asks the session table first ([`Event::ResumeRequested`]).
    fn send_or_await_resume<R: RngCore + CryptoRng, S: CredentialStore>(
        mut self,
        cx: &mut Context<'_, R, S>,
    ) -> Result<State, Error> {
        cx.learned.sasl2 = true;
        cx.learned.identity = Some(self.identity.clone());
        match self.request.resume.take() {
            Some((previd, h)) if cx.config.sm_config().is_some() => {
                cx.outbox.event(Event::ResumeRequested {
                    previd: previd.clone(),
                    account: Some(self.identity.clone()),
                    h,
                });
                Ok(State::Sasl2Resume(AwaitSasl2Resume {
                    success: self,
                    previd,
                    h,
                }))
            }
            _ => self.send(cx, InlineResume::None),
        }
    }

    /// SASL2 succeeded (XEP-0388 §2.6.1): `<success/>` with the server's additional data,
    /// the authorization identifier, the answer to an inline `<resume/>`, what Bind 2
    /// bound (with `<enabled/>` when asked) unless the session resumed, and a FAST token;
    /// then, without a restart, the features of the authenticated stream: none more when
    /// the session resumed or Bind 2 bound, binding and `<sm/>` otherwise.
    fn send<R: RngCore + CryptoRng, S: CredentialStore>(
        self,
        cx: &mut Context<'_, R, S>,
        resume: InlineResume,
    ) -> Result<State, Error> {
        let Sasl2Success {
            request,
            identity,
            additional_data,
            token,
            domain,
        } = self;
        let mut success = String::from("<success xmlns='urn:xmpp:sasl:2'>");
        if let Some(data) = additional_data {
            let _ = write!(
                success,
                "<additional-data>{}</additional-data>",
                encode(&data)
            );
        }
        let resumed_jid = match &resume {
            InlineResume::Resumed { previd, h, jid } => {
                success.push_str(&sm::element::resumed(previd, *h));
                Some(jid.clone())
            }
            InlineResume::Failed => {
                success.push_str(&sm::element::failed("item-not-found", None));
                None
            }
            InlineResume::None => None,
        };
        let bound = request.bind.filter(|_| resumed_jid.is_none()).map(|tag| {
            // XEP-0386 §4: the server makes the resource, from the tag when there is one.
            let suffix = match request.user_agent.as_deref() {
                Some(id) => user_agent_suffix(&identity, id),
                None => random_hex(cx.rng, 6),
            };
            let resource = match tag.filter(|t| jid::check_resource(t).is_ok()) {
                Some(tag) => format!("{tag}~{suffix}"),
                None => suffix,
            };
            let jid = Jid::parse(&identity)
                .and_then(|bare| bare.with_resource(&resource))
                .map(Jid::into_string);
            jid.unwrap_or_else(|_| identity.clone())
        });
        let authorized = resumed_jid.clone().flatten().or_else(|| bound.clone());
        success.push_str("<authorization-identifier>");
        escape_text(authorized.as_deref().unwrap_or(&identity), &mut success);
        success.push_str("</authorization-identifier>");
        if bound.is_some() {
            success.push_str("<bound xmlns='urn:xmpp:bind:0'>");
            if let (Some(resume), Some(config)) = (request.enable, cx.config.sm_config()) {
                let id = (resume && config.resume).then(|| random_hex(cx.rng, 16));
                let max = id.as_ref().and(config.max_resume);
                success.push_str(&sm::element::enabled(id.as_deref(), max));
                cx.learned.sm_inline = Some(sm::InlineEnabled {
                    id,
                    max,
                    location: None,
                });
            }
            success.push_str("</bound>");
        }
        if let Some(token) = token {
            success.push_str("<token xmlns='urn:xmpp:fast:0' expiry='");
            success.push_str(&crate::sasl2::format_datetime(token.expires));
            success.push_str("' token='");
            escape_attr(&token.token, &mut success);
            success.push_str("'/>");
        }
        success.push_str("</success>");
        cx.outbox.send(&success);
        cx.outbox.step(Step::Authenticated);
        let mut features = String::from("<stream:features>");
        let state = match (resumed_jid, bound) {
            (Some(jid), _) => {
                features.push_str("</stream:features>");
                cx.outbox.send(&features);
                let features = StreamFeatures {
                    bind: true,
                    ..StreamFeatures::default()
                };
                cx.negotiated(features, jid)
            }
            (None, Some(jid)) => {
                cx.outbox.step(Step::Bound);
                features.push_str("</stream:features>");
                cx.outbox.send(&features);
                cx.negotiated(StreamFeatures::default(), Some(jid))
            }
            (None, None) => {
                features.push_str(bind::FEATURE);
                if cx.config.sm_config().is_some() {
                    features.push_str("<sm xmlns='urn:xmpp:sm:3'/>");
                }
                features.push_str("</stream:features>");
                cx.outbox.send(&features);
                State::Bind(ExpectBind { domain })
            }
        };
        cx.outbox.step(Step::FeaturesSent);
        Ok(state)
    }
}

/// Why an `<authenticate/>` that came in TLS 0-RTT early data is refused (XEP-0484 §3.4:
/// replayable, so only a FAST token login carrying a `count`, which the token's replay
/// rule checks, and nothing that changes the tokens), if it is.
fn refused_early(mechanism: &str, request: &Sasl2Request) -> Option<&'static str> {
    if HtMechanism::from_name(mechanism).is_none() {
        return Some("only a FAST token login may come in TLS 0-RTT early data");
    }
    match &request.fast {
        Some(FastUse {
            count: Some(_),
            invalidate: false,
        }) if request.request_token.is_none() => None,
        Some(FastUse { count: None, .. }) | None => {
            Some("a FAST login in TLS 0-RTT early data needs a count (XEP-0484)")
        }
        Some(_) => Some("no token request or invalidation in TLS 0-RTT early data"),
    }
}

fn is_sasl2(node: roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.tag_name().namespace() == Some(NS_SASL2) && node.tag_name().name() == name
}

/// Base64 element text, whitespace ignored.
fn sasl2_payload(node: roxmltree::Node<'_, '_>) -> Result<Vec<u8>, ()> {
    let text: String = node
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    decode_strict(&text).map_err(|_| ())
}

/// `<authenticate mechanism=…>` (XEP-0388 §2.2): the mechanism, the initial response (`None`
/// without `<initial-response/>`), the Bind 2 request with its `<enable/>`, the user agent,
/// an inline `<resume/>` and FAST's elements (XEP-0484 §3.2, §3.4).
fn read_authenticate(
    node: roxmltree::Node<'_, '_>,
) -> Result<(String, Option<Vec<u8>>, Sasl2Request), ()> {
    let name = String::from(node.attribute("mechanism").unwrap_or_default());
    let mut payload = None;
    let mut request = Sasl2Request::default();
    for child in node.children().filter(|c| c.is_element()) {
        match (child.tag_name().namespace(), child.tag_name().name()) {
            (Some(NS_SASL2), "initial-response") => payload = Some(sasl2_payload(child)?),
            (Some(NS_SASL2), "user-agent") => {
                request.user_agent = child.attribute("id").map(String::from);
            }
            (Some(NS_SM), "resume") => {
                if let Some(Ok(Nonza::Resume { previd, h })) = sm::element::parse(child) {
                    request.resume = Some((previd, h));
                }
            }
            (Some(NS_FAST), "request-token") => {
                request.request_token = child.attribute("mechanism").map(String::from);
            }
            (Some(NS_FAST), "fast") => {
                let count = match child.attribute("count") {
                    Some(c) => Some(c.parse::<u32>().map_err(|_| ())?),
                    None => None,
                };
                request.fast = Some(FastUse {
                    count,
                    invalidate: matches!(child.attribute("invalidate"), Some("true" | "1")),
                });
            }
            (Some(NS_BIND2), "bind") => {
                let tag = child
                    .children()
                    .find(|c| c.is_element() && c.tag_name().name() == "tag")
                    .and_then(|t| t.text())
                    .map(|t| String::from(t.trim()));
                request.bind = Some(tag);
                request.enable = child
                    .children()
                    .find(|c| {
                        c.tag_name().namespace() == Some(NS_SM) && c.tag_name().name() == "enable"
                    })
                    .map(|e| matches!(e.attribute("resume"), Some("true" | "1")));
            }
            _ => {}
        }
    }
    Ok((name, payload, request))
}

/// The bare JID a client authenticated as (RFC 6120 §6.3.8): the authzid when it is a JID
/// (`user@domain`), else the authentication identity when it is one (EXTERNAL: the
/// certificate's XmppAddr), else `authcid@domain`. It must be a bare JID with a localpart
/// (RFC 7622), of this domain: `Err` says why not, for the `<failure/>`'s text.
fn client_identity(
    authcid: &str,
    authzid: Option<&str>,
    domain: &str,
) -> Result<Jid, &'static str> {
    // A user name has no '@'; an identity with one is a JID.
    let given = authzid
        .filter(|a| a.contains('@'))
        .or(Some(authcid).filter(|a| a.contains('@')));
    let jid = match given {
        Some(jid) => Jid::parse(jid),
        None => Jid::from_parts(Some(authcid), domain, None),
    }
    .map_err(|_| "identity is not a JID")?;
    if jid.local().is_none() || !jid.is_bare() {
        return Err("identity is not a bare JID user@domain");
    }
    // A client identity of another domain is not an account here.
    if !eq_domain(jid.domain(), domain) {
        return Err("identity of another domain");
    }
    Ok(jid)
}

/// Answers `<starttls/>` (§5.4.2.3), unless anything followed it: a ClientHello sent
/// before `<proceed/>`, or injected plaintext, is refused (§5.3.3).
fn proceed<R: RngCore + CryptoRng, S: CredentialStore>(
    cx: &mut Context<'_, R, S>,
    domain: String,
    pending: bool,
) -> Result<State, Error> {
    if pending {
        cx.stream_error(StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            "data after <starttls/> before <proceed/>",
        ));
        return Err(Error::PlaintextAfterStartTls);
    }
    cx.outbox.send(starttls::PROCEED);
    cx.outbox.step(Step::ProceedSent);
    cx.outbox.event(Event::StartTls {
        server_name: domain,
    });
    Ok(State::AwaitTls)
}

fn is_stanza(node: roxmltree::Node<'_, '_>, ns: ContentNamespace) -> bool {
    node.tag_name().namespace() == Some(ns.as_str())
        && matches!(node.tag_name().name(), "message" | "presence" | "iq")
}

fn is_sasl(node: roxmltree::Node<'_, '_>) -> bool {
    node.tag_name().namespace() == Some(NS_SASL) || node.tag_name().namespace() == Some(NS_SASL2)
}

/// Domain names compare case-insensitively, a trailing dot ignored (RFC 7622 §3.2).
/// Whom SASL EXTERNAL would authenticate (§6.3.4, §13.7.2.2): on C2S the bare JID the
/// client certificate names; on S2S the stream's `from`, if the certificate names that
/// domain (XEP-0178 §3, RFC 6125), else nobody (a certificate for another domain never
/// earns EXTERNAL).
fn external_identity<'a>(config: &ReceiverConfig, learned: &'a Learned) -> Option<&'a str> {
    let names = &learned.tls.peer_identities;
    match config.ns {
        ContentNamespace::Client => names.first().map(String::as_str),
        ContentNamespace::Server => learned
            .peer_from
            .as_deref()
            .filter(|from| names.iter().any(|n| eq_domain(n, from))),
    }
}

fn eq_domain(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The receiving entity. See the module docs.
pub struct ReceivingEntity<R, S> {
    config: ReceiverConfig,
    inbound: Inbound,
    outbox: Outbox,
    state: State,
    rng: R,
    store: S,
    learned: Learned,
    header_sent: bool,
    /// The bytes being read came as TLS 1.3 early data (0-RTT): replayable, so only the
    /// header and a FAST `<authenticate/>` with a `count` are admitted (XEP-0484 §3.4).
    early: bool,
}

impl<R: RngCore + CryptoRng, S: CredentialStore> ReceivingEntity<R, S> {
    /// Waits for the initiating entity's header; stream ids and nonces come from `rng`,
    /// SASL credentials from `store`.
    pub fn new(config: ReceiverConfig, rng: R, store: S) -> Self {
        Self::with_tls(config, rng, store, TlsInfo::default())
    }

    /// As [`ReceivingEntity::new`], on a transport that is already TLS (Direct TLS,
    /// XEP-0368, with `config.secure_transport`), which established `tls`.
    pub fn with_tls(config: ReceiverConfig, rng: R, store: S, tls: TlsInfo) -> Self {
        let secure = config.secure_transport || config.framing == Framing::WebSocket;
        ReceivingEntity {
            inbound: Inbound::new(Framer::new(config.framing, config.limits)),
            outbox: Outbox::default(),
            state: State::Header(ExpectHeader {
                phase: if secure {
                    Phase::Unauthenticated
                } else {
                    Phase::Plain
                },
            }),
            rng,
            store,
            learned: Learned {
                secure,
                tls: if config.secure_transport {
                    tls
                } else {
                    TlsInfo::default()
                },
                ..Learned::default()
            },
            header_sent: false,
            early: false,
            config,
        }
    }

    /// The initiating entity's current header (after TLS: the one sent over TLS only).
    pub fn peer_header(&self) -> &StreamHeader {
        &self.inbound.header
    }

    /// XEP-0198 §5: resumes the session `state` asked for with `<resume/>`: `<resumed/>`
    /// goes out and the negotiation is complete. `state` is given back when no `<resume/>`
    /// waits, or when it is not the session named, or not this client's (then `<failed/>`
    /// with `<item-not-found/>` went out, as for an unknown session: nothing is revealed).
    fn accept_resume(&mut self, state: SmState) -> Option<SmState> {
        let bare = state.jid().and_then(|jid| jid.split('/').next());
        let own = bare.is_some() && bare == self.learned.identity.as_deref();
        let wait = match mem::replace(&mut self.state, State::Failed) {
            State::Resume(wait) => wait,
            State::Sasl2Resume(wait) => {
                let named = state.previd() == Some(wait.previd.as_str());
                let (answer, back) = if own && named {
                    let answer = InlineResume::Resumed {
                        previd: wait.previd,
                        h: state.handled(),
                        jid: state.jid().map(String::from),
                    };
                    self.learned.resumed = Some((state, wait.h));
                    (answer, None)
                } else {
                    (InlineResume::Failed, Some(state))
                };
                self.finish_sasl2(wait.success, answer);
                return back;
            }
            other => {
                self.state = other;
                return Some(state);
            }
        };
        if !own || state.previd() != Some(wait.previd.as_str()) {
            self.outbox
                .send(&sm::element::failed("item-not-found", None));
            self.state = State::Bind(wait.bind);
            return Some(state);
        }
        self.outbox
            .send(&sm::element::resumed(&wait.previd, state.handled()));
        let jid = state.jid().map(String::from);
        self.learned.resumed = Some((state, wait.h));
        let features = StreamFeatures {
            bind: true,
            ..StreamFeatures::default()
        };
        self.with_context(|cx, state, _| *state = cx.negotiated(features, jid));
        None
    }

    /// XEP-0198 §5: the session `<resume/>` named is unknown or expired: `<failed/>` with
    /// `<item-not-found/>`; the client may bind instead. Whether a `<resume/>` waited.
    fn refuse_pending_resume(&mut self) -> bool {
        match mem::replace(&mut self.state, State::Failed) {
            State::Sasl2Resume(wait) => {
                self.finish_sasl2(wait.success, InlineResume::Failed);
                true
            }
            State::Resume(wait) => {
                self.outbox
                    .send(&sm::element::failed("item-not-found", None));
                self.state = State::Bind(wait.bind);
                true
            }
            other => {
                self.state = other;
                false
            }
        }
    }

    /// [`Context::early_data_refused`], outside a read; the stream is over.
    fn refuse_early_data(&mut self) -> Error {
        self.state = State::Failed;
        self.with_context(|cx, _, _| cx.early_data_refused())
    }

    /// Sends the SASL2 success that waited for the session table.
    fn finish_sasl2(&mut self, success: Sasl2Success, resume: InlineResume) {
        self.with_context(|cx, state, _| {
            *state = success.send(cx, resume).unwrap_or(State::Failed);
        });
    }

    fn process(&mut self) -> Result<(), Error> {
        self.with_context(|cx, state, inbound| {
            let config = cx.config;
            dispatch::run(cx, state, inbound, &config.limits)
        })
    }

    /// Runs `f` with what every handler shares ([`Context`]), the state and the unread
    /// input, and keeps whether it sent the header.
    fn with_context<T>(
        &mut self,
        f: impl FnOnce(&mut Context<'_, R, S>, &mut State, &mut Inbound) -> T,
    ) -> T {
        let mut cx = Context {
            config: &self.config,
            outbox: &mut self.outbox,
            rng: &mut self.rng,
            store: &self.store,
            learned: &mut self.learned,
            header_sent: self.header_sent,
            early: self.early,
        };
        let out = f(&mut cx, &mut self.state, &mut self.inbound);
        self.header_sent = cx.header_sent;
        out
    }
}

impl<R: RngCore + CryptoRng, S: CredentialStore> Role for Context<'_, R, S> {
    type State = State;
    const FAILED: State = State::Failed;

    fn between_frames(
        &mut self,
        state: &mut State,
        inbound: &mut Inbound,
    ) -> Option<Result<(), Error>> {
        match state {
            // The session table answers a `<resume/>` before anything more is read.
            State::AwaitTls
            | State::Negotiated
            | State::Failed
            | State::Resume(_)
            | State::Sasl2Resume(_) => Some(Ok(())),
            State::Restart => {
                // §6.4.6: the initiating entity opens a new stream; forget its header.
                inbound.restart();
                self.header_sent = false;
                self.outbox.step(Step::StreamRestarted);
                *state = State::Header(ExpectHeader {
                    phase: Phase::Authenticated,
                });
                None
            }
            State::StartTlsReceived(domain) => {
                let domain = mem::take(domain);
                match proceed(self, domain, !inbound.framer.pending().is_empty()) {
                    Ok(next) => {
                        *state = next;
                        None
                    }
                    Err(e) => {
                        *state = State::Failed;
                        Some(Err(e))
                    }
                }
            }
            _ => None,
        }
    }

    fn header(&mut self, state: State, header: &StreamHeader) -> Result<State, Error> {
        match state {
            State::Header(s) => s.handle(self, header),
            _ => Err(self.stream_error(dispatch::not_well_formed("unexpected data"))),
        }
    }

    fn element(&mut self, state: State, node: roxmltree::Node<'_, '_>) -> Result<State, Error> {
        // XEP-0484 §3.4: in TLS 0-RTT early data, nothing but a SASL2 `<authenticate/>`.
        if self.early && !(matches!(state, State::Auth(_)) && is_sasl2(node, "authenticate")) {
            return Err(self.early_data_refused());
        }
        // XEP-0220 §2: dialback on a stream not yet authenticated; before TLS the policy
        // decides (by default `<policy-violation/>`).
        #[cfg(feature = "dialback")]
        let state = match state {
            State::StartTls(_) | State::Auth(_) => match self.dialback_element(node, state) {
                Dialbacked::Handled(next) => return next,
                Dialbacked::Other(state) => state,
            },
            state => state,
        };
        match state {
            State::Header(_) => {
                Err(self.stream_error(dispatch::not_well_formed("unexpected data")))
            }
            State::StartTls(s) => s.handle(self, node),
            State::Auth(s) => s.handle(self, node),
            State::Response(s) => s.handle(self, node),
            #[cfg(feature = "dialback")]
            State::Dialback(s) => s.handle(self, node),
            State::Bind(s) => s.handle(self, node),
            _ => Err(self.not_yet(node, "negotiation")),
        }
    }

    fn end(&mut self) -> Error {
        self.outbox.send(closing_tag(self.config.framing));
        Error::PeerClosed
    }

    /// Sends a stream error (§4.9); while the stream is being set up our header goes
    /// first (§4.9.1.2).
    fn stream_error(&mut self, error: StreamError) -> Error {
        if !self.header_sent {
            let from = self.config.domains.first().cloned();
            self.send_header(&StreamHeader::default(), from.as_deref());
        }
        self.outbox.stream_error(self.config.framing, &error);
        Error::StreamErrorSent(error)
    }
}

impl<R: RngCore + CryptoRng, S: CredentialStore> Negotiator for ReceivingEntity<R, S> {
    fn receive_buffer(&mut self) -> &mut [u8] {
        self.inbound.framer.free_space()
    }

    fn received(&mut self, n: usize) -> Result<(), Error> {
        self.inbound.framer.commit(n);
        self.process()?;
        // Early data the negotiation stopped reading (at its end, or waiting for the
        // session table) would be read later as if it had not come early.
        let stopped = matches!(
            self.state,
            State::AwaitTls | State::Negotiated | State::Resume(_) | State::Sasl2Resume(_)
        );
        if self.early && stopped && !self.inbound.framer.pending().is_empty() {
            return Err(self.refuse_early_data());
        }
        Ok(())
    }

    fn early_data(&mut self, early: bool) -> Result<(), Error> {
        let was = mem::replace(&mut self.early, early);
        if was && !early && !self.inbound.framer.pending().is_empty() {
            return Err(self.refuse_early_data());
        }
        Ok(())
    }

    fn poll_transmit(&mut self) -> Option<String> {
        self.outbox.transmit()
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll()
    }

    fn into_parts(self) -> (Framer, StreamHeader) {
        (self.inbound.framer, self.inbound.header)
    }

    fn resume(&mut self, state: SmState) -> Option<SmState> {
        self.accept_resume(state)
    }

    fn refuse_resume(&mut self) -> bool {
        self.refuse_pending_resume()
    }

    #[cfg(feature = "dialback")]
    fn dialback_verdict(&mut self, verdict: Verdict) -> Result<bool, Error> {
        if !matches!(self.state, State::Dialback(_)) {
            return Ok(false);
        }
        let State::Dialback(wait) = mem::replace(&mut self.state, State::Failed) else {
            return Ok(false);
        };
        let next = self.with_context(|cx, _, _| wait.settle(cx, verdict))?;
        self.state = next;
        // Frames that came meanwhile are read in the state the verdict left.
        self.process().map(|()| true)
    }

    fn stream_management(&mut self) -> SmStart {
        let Some(config) = self.config.sm_config() else {
            return SmStart::Off;
        };
        if let Some(enabled) = self.learned.sm_inline.take() {
            return SmStart::Bound {
                config,
                offered: false,
                not_resumed: None,
                inline: Some(Ok(enabled)),
            };
        }
        match self.learned.resumed.take() {
            Some((state, h)) => SmStart::Resumed { config, state, h },
            // Offered only with binding, on C2S.
            None if self.config.ns == ContentNamespace::Client => SmStart::Offered {
                config,
                id: random_hex(&mut self.rng, 16),
            },
            None => SmStart::Off,
        }
    }

    /// §5.4.3.3: forget what the initiating entity said before TLS (its `from`, its
    /// header) and wait for a new header on the protected stream.
    fn tls_established(&mut self, info: TlsInfo) -> Result<(), Error> {
        if !matches!(self.state, State::AwaitTls) {
            return Err(Error::UnexpectedElement {
                expected: "TLS only after <proceed/>",
                got: String::from("tls_established"),
            });
        }
        self.inbound.restart();
        self.header_sent = false;
        self.learned.secure = true;
        self.learned.tls = info;
        self.outbox.step(Step::TlsEstablished);
        self.state = State::Header(ExpectHeader {
            phase: Phase::Unauthenticated,
        });
        self.process()
    }
}

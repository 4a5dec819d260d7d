//! The initiating entity (RFC 6120 §4–5): a client, or the connecting server on S2S.
//!
//! One struct per thing the machine waits for, in the order of the RFC:
//! [`ExpectHeader`] (§4.7) → [`ExpectFeaturesBeforeTls`] (§4.3.2) → [`ExpectProceed`]
//! (§5.4.2) → TLS (§5.4.3, done by the caller) → [`ExpectHeader`] again on the protected
//! stream → [`ExpectFeaturesAfterTls`] → [`ExpectSaslResult`] (§6.4) → restart (§6.4.6):
//! [`ExpectHeader`] → [`ExpectFeaturesAfterSasl`] → [`ExpectBindResult`] (§7.6).
//!
//! A step sent ahead of the features it depends on (pipelining) is a state of its own:
//! [`ExpectFeaturesAfterPipelinedAuth`] (`<auth/>` went out with the header after TLS) and
//! [`ExpectFeaturesAfterPipelinedBind`] (the bind request went out with the header after
//! SASL); `<starttls/>` sent with the first header is [`ExpectFeaturesBeforeTls`]'s
//! `starttls_sent`.
//!
//! With a session to resume (XEP-0198 §5, [`InitiatorConfig::resume`]) and `<sm/>` offered
//! after SASL, `<resume/>` replaces the bind request: [`ExpectResumeResult`]; on `<failed/>`
//! a resource is bound after all.
//!
//! On S2S with [`InitiatorConfig::dialback`], the originating server falls back to Server
//! Dialback (XEP-0220 §2.1.1) where SASL EXTERNAL is not offered or fails, and the policy
//! allows it (by default only on a TLS-protected stream) and the peer speaks it: it sends
//! `<db:result/>` with the XEP-0185 key for the stream id and waits for the verdict in
//! [`ExpectDialbackResult`]; `valid` authenticates the stream, without a restart.
//!
//! When the protected stream offers SASL2 (XEP-0388) and [`ClientSasl::sasl2`] allows it,
//! `<authenticate/>` replaces `<auth/>`, carrying what used to take round trips of its own:
//! Bind 2 (XEP-0386), `<enable/>` and `<resume/>` of XEP-0198, a FAST token request or
//! the token itself (XEP-0484): [`ExpectSasl2Result`]. No restart follows its `<success/>`;
//! the features of the authenticated stream come right behind it
//! ([`ExpectFeaturesAfterSasl2`]), and binding happens there only if Bind 2 did not.
//! The mechanism is chosen by the same rules as for `<auth/>` (§6.3.3,
//! [`sasl::choose_from`]); SCRAM checks XEP-0474's `h=` against the SASL2 offer.
//! With a FAST token and the shape of this server's last SASL2 offer in the login memory,
//! `<authenticate/>` goes out with the protected header, before the features
//! ([`ExpectFeaturesAfterPipelinedSasl2`] checks them when they come).

use alloc::string::String;

use rand_core::{CryptoRng, RngCore};

use crate::bidi;
use crate::bind;
#[cfg(feature = "dialback")]
use crate::dialback::{self, Dialback, DialbackConfig, Verdict};
use crate::login::FastToken;
use crate::negotiation::dispatch::{self, is_streams, received_stream_error, Inbound, Role};
use crate::negotiation::{qualified_name, Event, Negotiator, Outbox, Outcome, Step, TlsInfo};
use crate::sasl::element::{self as sasl_element, Received};
use crate::sasl::{
    self, CbPolicy, ClientMechanism, Credentials, Mechanism, MechanismSet, SaslError, SaslPolicy,
    ScramCacheEntry, Selection,
};
#[cfg(feature = "sasl2")]
use crate::sasl::{Gs2CbFlag, HtClient, HtMechanism};
#[cfg(feature = "sasl2")]
use crate::sasl2::{self, SmAnswer};
use crate::sm::{self, element::Nonza, NotResumed, SmConfig, SmError, SmStart, SmState};
use crate::stanza;
use crate::starttls::{self, Answer, TlsPolicy};
use crate::stream::error::{StreamError, StreamErrorCondition};
#[cfg(feature = "sasl2")]
use crate::stream::features::Sasl2Feature;
use crate::stream::features::{Sasl2Inline, StreamFeatures};
use crate::stream::header::{closing_tag, ContentNamespace, Framing, HeaderOut, StreamHeader};
#[cfg(feature = "sasl2")]
use crate::trust::UnixTime;
use crate::xml::framer::{Framer, Limits};
use crate::Error;

/// What the initiating entity is told by its user.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// `jabber:client` or `jabber:server`.
    pub ns: ContentNamespace,
    /// TCP (RFC 6120) or WebSocket (RFC 7395) framing.
    pub framing: Framing,
    /// The domain the user configured: `to`, TLS server name and the reference identity
    /// for the certificate (§13.7.2.1). Never replaced by anything learned from DNS or
    /// from the peer.
    pub domain: String,
    /// `from` (§4.7.1): the user's bare JID, or our server domain on S2S. A client's is sent
    /// only on a protected stream, so it never leaks in plaintext; a server's (public, and
    /// what the peer checks the certificate and EXTERNAL against) on every header, the
    /// same each time (a `from` that changes is `<improper-addressing/>` to the peer).
    pub from: Option<String>,
    /// `xml:lang` (§4.7.4)
    pub lang: Option<String>,
    /// STARTTLS policy; [`TlsPolicy::Required`] by default.
    pub tls: TlsPolicy,
    /// The transport is already TLS (Direct TLS, XEP-0368, or `wss://`): no STARTTLS.
    pub secure_transport: bool,
    /// Send `<starttls/>` together with the first header, before the features arrive,
    /// when TLS is required (saves a round trip; a server without STARTTLS still fails
    /// with [`Error::StartTlsNotOffered`] and nothing else is sent).
    pub pipeline_starttls: bool,
    /// Bounds on what the peer may make us hold.
    pub limits: Limits,
    /// Authentication and binding; `None` stops after the TLS-protected features (the
    /// caller negotiates the rest, e.g. dialback on S2S).
    pub sasl: Option<ClientSasl>,
    /// Enable stream management (XEP-0198) after binding when the server offers it.
    /// Only in a build with the core's `stream-management` feature; ignored without it
    /// (and so is [`InitiatorConfig::resume`]).
    pub stream_management: Option<SmConfig>,
    /// A session to resume (XEP-0198 §5): the state an earlier connection left
    /// ([`Connection::take_sm_state`](crate::connection::Connection::take_sm_state)). Used
    /// with [`InitiatorConfig::stream_management`] when the state has a session id and the
    /// server offers `<sm/>`; otherwise, or when the server refuses, a resource is bound and
    /// [`Event::ResumeFailed`] reports which of its stanzas are known delivered. The bind
    /// request is then never pipelined.
    pub resume: Option<SmState>,
    /// S2S: Server Dialback (XEP-0220) as the originating server, with this key secret,
    /// where EXTERNAL is not offered or fails; `None`: SASL only.
    #[cfg(feature = "dialback")]
    pub dialback: Option<DialbackConfig>,
    /// S2S: ask for a bidirectional stream (XEP-0288) where the receiving server offers it
    /// on the protected stream; [`Outcome::bidi`](crate::connection::Outcome::bidi) says
    /// whether it was asked for.
    pub bidi: bool,
}

/// What the initiating entity authenticates and binds with (§6, §7).
#[derive(Debug, Clone)]
pub struct ClientSasl {
    /// The credentials.
    pub credentials: Credentials,
    /// Which mechanisms are acceptable, and channel binding.
    pub policy: SaslPolicy,
    /// The resource to request (§7.6); `None` lets the server choose (§7.5).
    pub resource: Option<String>,
    /// Send `<auth/>` with this mechanism together with the header right after the TLS
    /// handshake, before the post-TLS features arrive (saves a round trip). It must come
    /// from the user's policy or from what this server offered after TLS on an earlier
    /// connection, never from a pre-TLS list; when the features arrive it is checked
    /// against them, and if it is not offered the server's `<failure/>` is awaited and
    /// SASL starts again from the real offer.
    pub pipeline_mechanism: Option<Mechanism>,
    /// What this server offered after TLS on an earlier connection
    /// ([`Outcome::sasl_offer`](crate::connection::Outcome::sasl_offer), e.g. kept with the
    /// SCRAM cache): when [`ClientSasl::pipeline_mechanism`] is `None`, the pipelined
    /// `<auth/>` names what [`sasl::choose_from`] picks from this list under [`ClientSasl::policy`],
    /// the same choice as from a live offer (§6.3.3). Checked against the post-TLS features
    /// as a named mechanism is.
    pub pipeline_offer: Option<MechanismSet>,
    /// Send the bind request together with the header after `<success/>` (saves a round
    /// trip; Prosody 0.12 and ejabberd 23.01 accept it).
    pub pipeline_bind: bool,
    /// SASL2 (XEP-0388) with Bind 2, inline stream management and FAST, when offered
    /// (boxed: a device that never uses it keeps a pointer).
    pub sasl2: alloc::boxed::Box<Sasl2Config>,
}

/// How the client uses SASL2 (XEP-0388) and what rides in it.
#[derive(Debug, Clone)]
pub struct Sasl2Config {
    /// Use SASL2 when the protected stream offers it (else RFC 6120 SASL and binding).
    /// Without the crate feature `sasl2` it is never used.
    pub enabled: bool,
    /// `<user-agent id=…>` (XEP-0388 §2.2.1): stable per device and account, a UUID. The
    /// server ties FAST tokens (and Bind 2 resource names) to it: without it no token is
    /// requested or used.
    pub user_agent_id: Option<String>,
    /// `<software/>` of the user agent.
    pub software: Option<String>,
    /// `<device/>` of the user agent.
    pub device: Option<String>,
    /// A FAST token from an earlier login (XEP-0484 §3.4): used when the server offers its
    /// mechanism; on `<failure/>` the password login follows on the same stream and
    /// [`Outcome::fast_token_rejected`](crate::connection::Outcome::fast_token_rejected)
    /// tells the caller to forget it.
    pub fast_token: Option<FastToken>,
    /// Ask for a FAST token when the server offers FAST (XEP-0484 §3.2).
    pub request_fast_token: bool,
    /// What this server's SASL2 offer carried inline at the last login (kept in the login
    /// memory). With [`Sasl2Config::fast_token`] and a user agent id, `<authenticate/>`
    /// goes out with the header right after TLS, shaped by it, before the features arrive
    /// (a round trip saved). They must then offer SASL2, the token's mechanism and every
    /// inline feature the request used, or the login ends with
    /// [`SaslError::PipelinedNotOffered`]: never a silent change of course.
    pub pipeline: Option<Sasl2Inline>,
    /// XEP-0484 §3.4's `count` for this attempt with [`Sasl2Config::fast_token`], sent on
    /// `<fast/>` when the server allows FAST in TLS 0-RTT early data (`tls-0rtt`), where it
    /// refuses a count not above the last it saw (replays). The caller raises it before
    /// every attempt ([`LoginMemory::next_fast_count`](crate::login::LoginMemory::next_fast_count)).
    pub fast_count: Option<u32>,
    /// Where the server allows FAST in TLS 0-RTT (`tls-0rtt`), ask for a token that can be
    /// used there: `HT-SHA-256-NONE`. Channel binding cannot come into early data:
    /// `tls-exporter` (RFC 9266) exists only once the handshake is done, and a
    /// resumed session is bound to the certificate that authenticated its first
    /// handshake already (RFC 8446 §2.2), which `tls-server-end-point` would repeat;
    /// what early data needs, replay protection, is XEP-0484's `count`. Off, or where
    /// the server does not allow 0-RTT, the token is channel-bound when the login is.
    pub zero_rtt_token: bool,
}

impl Default for Sasl2Config {
    /// SASL2 on, no user agent id (so no FAST), tokens requested once there is one.
    fn default() -> Self {
        Sasl2Config {
            enabled: true,
            user_agent_id: None,
            software: None,
            device: None,
            fast_token: None,
            request_fast_token: true,
            pipeline: None,
            fast_count: None,
            zero_rtt_token: false,
        }
    }
}

impl Sasl2Config {
    /// RFC 6120 SASL and binding only.
    pub fn off() -> Self {
        Sasl2Config {
            enabled: false,
            ..Sasl2Config::default()
        }
    }

    /// Whether the login this starts can go into TLS 1.3 early data (0-RTT, XEP-0484
    /// §3.4) on a Direct TLS transport: the server allowed it at the last login
    /// (`tls-0rtt` in the kept [`Sasl2Config::pipeline`]), and a token, a user agent id
    /// and that shape let `<authenticate/>` go before the features, with a mechanism that
    /// needs no channel binding (none exists before the handshake is done).
    pub fn early_data_ready(&self) -> bool {
        self.enabled
            && self.user_agent_id.is_some()
            && self.pipeline.is_some_and(|i| i.fast_0rtt)
            && self.fast_token.as_ref().is_some_and(|t| {
                sasl::HtMechanism::from_name(&t.mechanism)
                    .is_some_and(|m| m.channel_binding().is_none())
            })
    }
}

impl ClientSasl {
    /// Password login with the default policy, pipelined binding, no pipelined `<auth/>`.
    pub fn password(username: &str, password: &str, resource: Option<&str>) -> Self {
        ClientSasl {
            credentials: Credentials::password(username, password),
            policy: SaslPolicy::default(),
            resource: resource.map(String::from),
            pipeline_mechanism: None,
            pipeline_offer: None,
            pipeline_bind: true,
            sasl2: alloc::boxed::Box::default(),
        }
    }
}

impl InitiatorConfig {
    /// A client (`jabber:client`) connecting to `domain` over TCP, TLS required.
    pub fn client(domain: &str) -> Self {
        InitiatorConfig {
            ns: ContentNamespace::Client,
            framing: Framing::Tcp,
            domain: String::from(domain),
            from: None,
            lang: None,
            tls: TlsPolicy::Required,
            secure_transport: false,
            pipeline_starttls: true,
            limits: Limits::default(),
            sasl: None,
            stream_management: None,
            resume: None,
            #[cfg(feature = "dialback")]
            dialback: None,
            bidi: false,
        }
    }

    /// The session `<resume/>` names and our `h` for it (§5), when one is to be resumed.
    fn resumable(&self) -> Option<(&str, u32)> {
        if !cfg!(feature = "stream-management") {
            return None;
        }
        self.stream_management?;
        let state = self.resume.as_ref()?;
        Some((state.previd()?, state.handled()))
    }

    /// A server (`jabber:server`) named `from` connecting to the server `domain` (S2S).
    pub fn server(domain: &str, from: &str) -> Self {
        InitiatorConfig {
            ns: ContentNamespace::Server,
            from: Some(String::from(from)),
            ..InitiatorConfig::client(domain)
        }
    }
}

/// Waiting for the receiving entity's stream header (§4.7); `next` waits for the features
/// that follow it.
pub struct ExpectHeader {
    next: Features,
}

/// The features awaited after a header, by stream (§4.3.2).
enum Features {
    BeforeTls(ExpectFeaturesBeforeTls),
    AfterTls(ExpectFeaturesAfterTls),
    AfterPipelinedAuth(ExpectFeaturesAfterPipelinedAuth),
    AfterSasl(ExpectFeaturesAfterSasl),
    AfterPipelinedBind(ExpectFeaturesAfterPipelinedBind),
    #[cfg(feature = "sasl2")]
    AfterPipelinedSasl2(ExpectFeaturesAfterPipelinedSasl2),
    #[cfg(feature = "sasl2")]
    AfterSasl2(ExpectFeaturesAfterSasl2),
}

/// Waiting for the first stream's features (§5.4.2): STARTTLS is decided from them.
pub struct ExpectFeaturesBeforeTls {
    /// `<starttls/>` went out with the header (pipelined, when TLS is required).
    starttls_sent: bool,
    stream_id: Option<String>,
}

/// Waiting for the features of the TLS-protected stream (or of a plaintext one the policy
/// allows), to start SASL from them (§6.3.3).
pub struct ExpectFeaturesAfterTls {
    stream_id: Option<String>,
}

/// Waiting for the features of the TLS-protected stream, `<auth/>` already sent with the
/// header: they must offer the mechanism, and, when it was chosen from an offer kept from
/// an earlier connection, make the same choice (§6.3.4).
pub struct ExpectFeaturesAfterPipelinedAuth {
    sasl: ExpectSaslResult,
    kept_choice: Option<Selection>,
    stream_id: Option<String>,
}

/// Waiting for the features of the TLS-protected stream, SASL2's `<authenticate/>` with a
/// FAST token already sent with the header, shaped by the offer kept from the last login
/// (XEP-0388 §2.2, XEP-0484 §3.4): they must offer SASL2, the token's mechanism under
/// `<fast/>` and every inline feature the request used. A missing one is a kept choice
/// the live offer does not confirm: `<abort/>`, close, [`SaslError::PipelinedNotOffered`].
#[cfg(feature = "sasl2")]
pub struct ExpectFeaturesAfterPipelinedSasl2 {
    exchange: Sasl2Exchange,
    /// The inline features `<authenticate/>` used.
    sent: Sasl2Inline,
    stream_id: Option<String>,
}

/// Waiting for the features of the authenticated stream (§6.4.6), to bind from them (§7).
pub struct ExpectFeaturesAfterSasl {
    stream_id: Option<String>,
}

/// Waiting for the features of the authenticated stream, the bind request already sent
/// with the header: they must offer binding (§7.6).
pub struct ExpectFeaturesAfterPipelinedBind {
    stream_id: Option<String>,
}

/// A pipelined `<auth/>` named a mechanism the post-TLS features do not offer, or one the
/// policy would no longer choose from them: waiting for the server's `<failure/>` to it
/// (we answer a `<challenge/>` with `<abort/>`, §6.4.4) before starting SASL from the real
/// offer.
pub struct ExpectRefusedAuth {
    features: StreamFeatures,
    stream_id: Option<String>,
    challenged: bool,
}

/// Waiting for `<proceed/>` or `<failure/>` (§5.4.2).
#[derive(Debug)]
pub struct ExpectProceed;

/// Waiting for `<challenge/>`, `<success/>` or `<failure/>` (§6.4.3–§6.4.6).
pub struct ExpectSaslResult {
    mechanism: ClientMechanism,
    /// S2S: on `<failure/>`, dialback on this stream (its features and id; boxed: a
    /// client never has it).
    #[cfg(feature = "dialback")]
    dialback_after_failure: Option<alloc::boxed::Box<(StreamFeatures, Option<String>)>>,
}

/// S2S: `<db:result/>` sent with our key (XEP-0220 §2.1.1): waiting for the receiving
/// server's verdict (§2.1.4).
#[cfg(feature = "dialback")]
pub struct ExpectDialbackResult {
    features: StreamFeatures,
    stream_id: Option<String>,
}

/// Waiting for `<resumed/>` or `<failed/>` (XEP-0198 §5); on `<failed/>` a resource is bound.
#[derive(Debug)]
pub struct ExpectResumeResult {
    stream_id: Option<String>,
    features: StreamFeatures,
}

/// The exchange a SASL2 `<authenticate/>` started.
#[cfg(feature = "sasl2")]
enum Sasl2Exchange {
    /// A SASL mechanism (§6.3.3's choice), with the password or SCRAM keys.
    Sasl(ClientMechanism),
    /// A FAST token (XEP-0484 §3.4).
    Fast(HtClient),
}

/// Waiting for SASL2's `<challenge/>`, `<success/>`, `<failure/>` or `<continue/>`
/// (XEP-0388 §2.4–§2.6) to our `<authenticate/>`.
#[cfg(feature = "sasl2")]
pub struct ExpectSasl2Result {
    exchange: Sasl2Exchange,
    /// The features SASL2 started from: a refused FAST token falls back to the password
    /// on them (XEP-0484 §4.1; the stream is unchanged by a failure, XEP-0388 §2.6).
    features: StreamFeatures,
    stream_id: Option<String>,
    /// The FAST mechanism a token was requested for.
    token_requested: Option<HtMechanism>,
}

/// Waiting for the features that follow SASL2's `<success/>` (XEP-0388 §2.6.1, no
/// restart): the negotiation ends there if Bind 2 bound a resource or `<resume/>`
/// resumed; otherwise a resource is bound (§7) or a session resumed from them.
#[cfg(feature = "sasl2")]
pub struct ExpectFeaturesAfterSasl2 {
    stream_id: Option<String>,
    /// The full JID Bind 2 bound.
    bound: Option<String>,
    resumed: bool,
}

/// Waiting for the result of our bind request (§7.6).
#[derive(Debug)]
pub struct ExpectBindResult {
    stream_id: Option<String>,
    features: StreamFeatures,
}

enum State {
    Header(ExpectHeader),
    Features(Features),
    Proceed(ExpectProceed),
    /// `<proceed/>` read: nothing more may be read or sent in plaintext (§5.4.2.3).
    AwaitTls,
    Sasl(ExpectSaslResult),
    #[cfg(feature = "dialback")]
    Dialback(ExpectDialbackResult),
    #[cfg(feature = "sasl2")]
    Sasl2(ExpectSasl2Result),
    RefusedAuth(ExpectRefusedAuth),
    /// `<success/>` verified: restart the stream (§6.4.6).
    Restart,
    BindResult(ExpectBindResult),
    ResumeResult(ExpectResumeResult),
    Negotiated,
    Failed,
}

/// How the server answered `<resume/>` (XEP-0198 §5).
enum ResumeAnswer {
    Resumed {
        h: u32,
    },
    Failed {
        h: Option<u32>,
        condition: Option<String>,
    },
}

/// What the negotiation learned that outlives a stream restart.
#[derive(Default)]
struct Learned {
    secure: bool,
    channel_binding: sasl::ChannelBindingData,
    mechanism: Option<Mechanism>,
    scram_cache: Option<ScramCacheEntry>,
    sasl_offer: Option<MechanismSet>,
    /// The TLS-protected stream's SASL2 offer, inline features (XEP-0388 §2.1).
    sasl2_inline: Option<Sasl2Inline>,
    /// The TLS-protected stream's features listed binding types (XEP-0440).
    cb_types_advertised: bool,
    /// The final features listed `<sm/>` (XEP-0198 §3).
    sm_offered: bool,
    /// The answer to `<resume/>`, when one was sent.
    resume_answer: Option<ResumeAnswer>,
    /// What SASL2 settled, once it ran (boxed: firmware without SASL2 keeps a pointer).
    sasl2: Option<alloc::boxed::Box<Sasl2Learned>>,
    /// S2S: the peer's last header bound the dialback namespace (XEP-0220 §2.1.1).
    #[cfg(feature = "dialback")]
    peer_dialback: bool,
    /// S2S: Server Dialback authenticated the stream.
    #[cfg(feature = "dialback")]
    dialback: bool,
    /// S2S: we asked for a bidirectional stream (XEP-0288 §2).
    bidi: bool,
}

/// What a SASL2 negotiation learned (XEP-0388, XEP-0386, XEP-0484).
#[derive(Default)]
struct Sasl2Learned {
    /// SASL2 authenticated the stream.
    authenticated: bool,
    /// The answer to `<enable/>` inside Bind 2: `Ok` enabled, `Err` failed (its condition).
    sm_inline: Option<Result<sm::InlineEnabled, Option<String>>>,
    /// A FAST token the server issued on this login.
    fast_token: Option<FastToken>,
    /// The FAST token we authenticated with was refused.
    fast_token_rejected: bool,
}

impl Learned {
    #[cfg(feature = "sasl2")]
    fn sasl2(&mut self) -> &mut Sasl2Learned {
        self.sasl2.get_or_insert_with(Default::default)
    }
}

struct Context<'a, R> {
    config: &'a InitiatorConfig,
    outbox: &'a mut Outbox,
    rng: &'a mut R,
    learned: &'a mut Learned,
}

impl<R: RngCore + CryptoRng> Context<'_, R> {
    /// Whether the policy, choosing from the live `features` (§6.3.3), makes the choice
    /// `kept` that it made from an offer kept from an earlier connection.
    fn chooses(&self, features: &StreamFeatures, kept: Selection) -> bool {
        let Some(sasl) = &self.config.sasl else {
            return false;
        };
        let offered =
            MechanismSet::from_names(features.mechanisms.iter().flatten().map(String::as_str));
        self.choose(
            offered,
            features.channel_binding_types.as_deref(),
            &sasl.policy,
        )
        .is_ok_and(|live| live == kept)
    }

    /// What `policy` picks from `offered` with this stream's TLS state and our credentials
    /// (§6.3.3).
    fn choose(
        &self,
        offered: MechanismSet,
        cb_types: Option<&[String]>,
        policy: &SaslPolicy,
    ) -> Result<Selection, SaslError> {
        let Some(sasl) = &self.config.sasl else {
            return Err(SaslError::NoAcceptableMechanism);
        };
        sasl::choose_from(
            offered,
            cb_types,
            self.learned.secure,
            &self.learned.channel_binding,
            sasl.credentials.kind(),
            policy,
        )
    }

    fn send_header(&mut self, secure: bool) {
        let mut s = String::new();
        HeaderOut {
            ns: self.config.ns,
            from: if secure || self.config.ns == ContentNamespace::Server {
                self.config.from.as_deref()
            } else {
                None
            },
            to: Some(&self.config.domain),
            id: None,
            lang: self.config.lang.as_deref(),
        }
        .write(self.config.framing, &mut s);
        self.outbox.send(&s);
        self.outbox.step(Step::HeaderSent);
    }

    fn send_starttls(&mut self) {
        self.outbox.send(starttls::STARTTLS);
        self.outbox.step(Step::StartTlsSent);
    }

    /// Closes our side of the stream (§4.4) and reports `error`.
    fn close(&mut self, error: Error) -> Error {
        self.outbox.send(closing_tag(self.config.framing));
        error
    }

    fn negotiated(
        &mut self,
        features: StreamFeatures,
        stream_id: Option<String>,
        jid: Option<String>,
    ) -> State {
        self.learned.sm_offered = offers_sm(&features);
        self.outbox.event(Event::Negotiated(Outcome {
            features,
            stream_id,
            secure: self.learned.secure,
            mechanism: self.learned.mechanism,
            jid,
            scram_cache: self.learned.scram_cache.clone(),
            sasl_offer: self.learned.sasl_offer,
            sasl2: self.learned.sasl2.as_ref().is_some_and(|l| l.authenticated),
            sasl2_inline: self.learned.sasl2_inline,
            fast_token: self
                .learned
                .sasl2
                .as_ref()
                .and_then(|l| l.fast_token.clone())
                .map(alloc::boxed::Box::new),
            fast_token_rejected: self
                .learned
                .sasl2
                .as_ref()
                .is_some_and(|l| l.fast_token_rejected),
            #[cfg(feature = "dialback")]
            dialback: self.learned.dialback,
            bidi: self.learned.bidi,
        }));
        State::Negotiated
    }

    /// S2S: dialback may authenticate this stream: configured, the peer speaks it (its
    /// header binds the namespace, or its features list it) and the stream is protected
    /// unless the policy allows it without TLS.
    #[cfg(feature = "dialback")]
    fn dialback_allowed(&self, features: &StreamFeatures) -> bool {
        let offered = self.learned.peer_dialback || offers_dialback(features);
        self.config.ns == ContentNamespace::Server
            && offered
            && self
                .config
                .dialback
                .as_ref()
                .is_some_and(|d| self.learned.secure || d.policy.allow_without_tls)
    }

    /// XEP-0220 §2.1.1: `<db:result/>` with our key for this stream.
    #[cfg(feature = "dialback")]
    fn start_dialback(
        &mut self,
        features: StreamFeatures,
        stream_id: Option<String>,
    ) -> Result<State, Error> {
        let (Some(config), Some(from), Some(id)) =
            (&self.config.dialback, &self.config.from, &stream_id)
        else {
            return Err(self.close(Error::UnexpectedElement {
                expected: "a stream id to make the dialback key with",
                got: String::from("a header without id"),
            }));
        };
        let mut out = String::new();
        config
            .result_request(from, &self.config.domain, id)
            .write(&mut out);
        self.outbox.send(&out);
        self.outbox.step(Step::AuthStarted);
        Ok(State::Dialback(ExpectDialbackResult {
            features,
            stream_id,
        }))
    }

    /// A SASL2 error of ours: `<abort/>` (XEP-0388 §3.5), close, report.
    #[cfg(feature = "sasl2")]
    fn sasl2_abort(&mut self, error: SaslError) -> Error {
        self.outbox.send(sasl2::ABORT);
        self.close(Error::Sasl(error))
    }

    /// A SASL error of ours: abort the exchange (§6.4.4), close, report.
    fn abort(&mut self, error: SaslError) -> Error {
        self.outbox.send(sasl_element::ABORT);
        self.close(Error::Sasl(error))
    }
}

impl ExpectHeader {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        header: &StreamHeader,
    ) -> Result<State, Error> {
        if header.version_numbers().is_none_or(|(major, _)| major != 1) {
            // §4.7.5: we speak 1.0 only; a peer without version='1.0' cannot do STARTTLS.
            return Err(cx.stream_error(StreamError::new(StreamErrorCondition::UnsupportedVersion)));
        }
        if cx.config.framing == Framing::Tcp
            && header.default_ns.as_deref() != Some(cx.config.ns.as_str())
        {
            return Err(cx.stream_error(StreamError::new(StreamErrorCondition::InvalidNamespace)));
        }
        cx.outbox.step(Step::HeaderReceived);
        #[cfg(feature = "dialback")]
        {
            cx.learned.peer_dialback = header.prefixes.iter().any(|(_, ns)| ns == dialback::NS);
        }
        let id = header.id.clone();
        let mut next = self.next;
        match &mut next {
            Features::BeforeTls(f) => f.stream_id = id,
            Features::AfterTls(f) => f.stream_id = id,
            Features::AfterPipelinedAuth(f) => f.stream_id = id,
            Features::AfterSasl(f) => f.stream_id = id,
            Features::AfterPipelinedBind(f) => f.stream_id = id,
            #[cfg(feature = "sasl2")]
            Features::AfterPipelinedSasl2(f) => f.stream_id = id,
            #[cfg(feature = "sasl2")]
            Features::AfterSasl2(f) => f.stream_id = id,
        }
        Ok(State::Features(next))
    }
}

impl Features {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if !is_streams(node, "features") {
            return Err(unexpected("<stream:features/>", node));
        }
        let features = StreamFeatures::parse(node);
        cx.outbox.step(Step::FeaturesReceived);
        if !matches!(self, Features::BeforeTls(_)) {
            // §5.4.3.3: the protected stream MUST NOT offer STARTTLS again. RFC 7395
            // streams never negotiate it, so an offer there is ignored (xmpp.js#807).
            if features.starttls.is_some() && cx.config.framing == Framing::Tcp && cx.learned.secure
            {
                return Err(cx.close(Error::StartTlsAfterTls));
            }
        }
        match self {
            Features::BeforeTls(s) => s.handle(cx, features),
            Features::AfterTls(s) => s.handle(cx, features),
            Features::AfterPipelinedAuth(s) => s.handle(cx, features),
            Features::AfterSasl(s) => s.handle(cx, features),
            Features::AfterPipelinedBind(s) => s.handle(cx, features),
            #[cfg(feature = "sasl2")]
            Features::AfterPipelinedSasl2(s) => s.handle(cx, features),
            #[cfg(feature = "sasl2")]
            Features::AfterSasl2(s) => s.handle(cx, features),
        }
    }
}

impl ExpectFeaturesBeforeTls {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        match (features.starttls, cx.config.tls) {
            (Some(_), TlsPolicy::Required | TlsPolicy::Optional) => {
                if !self.starttls_sent {
                    cx.send_starttls();
                }
                Ok(State::Proceed(ExpectProceed))
            }
            // §5.3.1: refused before anything else is sent (STARTTLS stripping).
            (None, TlsPolicy::Required) => Err(cx.close(Error::StartTlsNotOffered)),
            (Some(_), TlsPolicy::Disabled) if features.starttls_mandatory() => {
                Err(cx.close(Error::TlsRequiredByPeer))
            }
            // A plaintext stream the policy allows: SASL from these features.
            (_, TlsPolicy::Optional | TlsPolicy::Disabled) => ExpectFeaturesAfterTls {
                stream_id: self.stream_id,
            }
            .handle(cx, features),
        }
    }
}

/// §6.3.4: only a protected stream's offer is worth keeping for a later login.
fn keep_offer<R>(cx: &mut Context<'_, R>, features: &StreamFeatures) {
    if cx.learned.secure {
        cx.learned.cb_types_advertised = features.channel_binding_types.is_some();
        cx.learned.sasl2_inline = features.sasl2.as_ref().map(|offer| offer.inline());
        cx.learned.sasl_offer = features
            .mechanisms
            .as_ref()
            .map(|names| MechanismSet::from_names(names.iter().map(String::as_str)));
    }
}

impl ExpectFeaturesAfterTls {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        keep_offer(cx, &features);
        #[cfg(feature = "sasl2")]
        if uses_sasl2(cx, &features) {
            return start_sasl2(cx, features, self.stream_id, true);
        }
        start_sasl_from(cx, features, self.stream_id)
    }
}

/// SASL2 is offered and the configuration allows it (XEP-0388 §2.1).
#[cfg(feature = "sasl2")]
fn uses_sasl2<R>(cx: &Context<'_, R>, features: &StreamFeatures) -> bool {
    cfg!(feature = "sasl2")
        && cx.config.ns == ContentNamespace::Client
        && features.sasl2.is_some()
        && cx.config.sasl.as_ref().is_some_and(|s| s.sasl2.enabled)
}

/// The FAST token to authenticate with on this offer: a token, a user agent id, and its
/// mechanism offered under `<fast/>` with the binding data it needs (XEP-0484 §3.4).
#[cfg(feature = "sasl2")]
fn fast_exchange(
    config: &Sasl2Config,
    offer: &Sasl2Feature,
    cb: &sasl::ChannelBindingData,
) -> Option<HtClient> {
    let token = config.fast_token.as_ref()?;
    config.user_agent_id.as_ref()?;
    let mechanism = HtMechanism::from_name(&token.mechanism)?;
    offer
        .fast
        .as_ref()?
        .iter()
        .any(|m| m == mechanism.name())
        .then(|| HtClient::new(mechanism, &token.token, cb).ok())?
}

/// Sends `<authenticate/>` (XEP-0388 §2.2) from the SASL2 offer in `features`: with a FAST
/// token when `try_fast` and one fits, otherwise with the mechanism the policy picks
/// (§6.3.3, as for `<auth/>`); Bind 2, inline `<enable/>`/`<resume/>` and a token request
/// as offered and configured.
#[cfg(feature = "sasl2")]
fn start_sasl2<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    features: StreamFeatures,
    stream_id: Option<String>,
    try_fast: bool,
) -> Result<State, Error> {
    let (Some(sasl), Some(offer)) = (&cx.config.sasl, &features.sasl2) else {
        return Err(cx.close(Error::Sasl(SaslError::NoAcceptableMechanism)));
    };
    let cb_types = features.channel_binding_types.as_deref();
    let fast = if try_fast {
        fast_exchange(&sasl.sasl2, offer, &cx.learned.channel_binding)
    } else {
        None
    };
    let (mut exchange, bound) = match fast {
        Some(ht) => (Sasl2Exchange::Fast(ht), false),
        None => {
            let offered = MechanismSet::from_names(offer.mechanisms.iter().map(String::as_str));
            let (mechanism, selection) = client_mechanism(cx, offered, cb_types, &sasl.policy)
                .map_err(|e| cx.close(Error::Sasl(e)))?;
            let mechanism = mechanism.with_downgrade_protection(sasl::ssdp::advertised(
                offer.mechanisms.iter().map(String::as_str),
                cb_types,
            ));
            let bound = matches!(selection.cb_flag, Gs2CbFlag::Used(_));
            (Sasl2Exchange::Sasl(mechanism), bound)
        }
    };
    let using_fast = matches!(exchange, Sasl2Exchange::Fast(_));
    // XEP-0484 §3.2: a token for the binding in use (HT-*-NONE when unbound); while a
    // token logs in, the server rotates it by itself.
    let token_requested = match (&offer.fast, &sasl.sasl2.user_agent_id) {
        (Some(fast), Some(_)) if sasl.sasl2.request_fast_token && !using_fast => {
            let zero_rtt = sasl.sasl2.zero_rtt_token && offer.fast_0rtt;
            HtMechanism::choose(
                fast.iter().map(String::as_str),
                &cx.learned.channel_binding,
                bound && !zero_rtt,
            )
        }
        _ => None,
    };
    send_authenticate(cx, &mut exchange, offer.inline(), token_requested)
        .map_err(|e| cx.close(Error::Sasl(e)))?;
    Ok(State::Sasl2(ExpectSasl2Result {
        exchange,
        features,
        stream_id,
        token_requested,
    }))
}

/// Sends `<authenticate/>` (XEP-0388 §2.2) for `exchange`, with what `inline` (the SASL2
/// offer, live or kept) lets ride in it: Bind 2 with `<enable/>`, `<resume/>` of a session
/// to resume, a token request. Returns the inline features used; on an error nothing has
/// been sent.
#[cfg(feature = "sasl2")]
fn send_authenticate<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    exchange: &mut Sasl2Exchange,
    inline: Sasl2Inline,
    token_requested: Option<HtMechanism>,
) -> Result<Sasl2Inline, SaslError> {
    let config = cx.config;
    let Some(sasl) = &config.sasl else {
        return Err(SaslError::NoAcceptableMechanism);
    };
    let (name, initial) = match exchange {
        Sasl2Exchange::Sasl(m) => (m.mechanism().name(), m.initial_response()?),
        Sasl2Exchange::Fast(ht) => (
            ht.mechanism().name(),
            Some(ht.initial_response(&sasl.credentials.username)?),
        ),
    };
    let resume = config.resumable().filter(|_| inline.sm);
    // A session to resume that cannot be resumed inline is resumed (or a resource bound)
    // from the features after the success, as after an RFC 6120 restart: Bind 2 would
    // bind a new resource instead.
    let bind2 = inline.bind2 && (resume.is_some() || config.resumable().is_none());
    let enable_sm = config
        .stream_management
        .filter(|_| bind2 && inline.bind2_sm);
    let user_agent = sasl
        .sasl2
        .user_agent_id
        .as_deref()
        .map(|id| sasl2::UserAgent {
            id,
            software: sasl.sasl2.software.as_deref(),
            device: sasl.sasl2.device.as_deref(),
        });
    let request = sasl2::Authenticate {
        initial_response: initial.as_deref(),
        user_agent,
        // XEP-0386 §4: the tag names the client (the server adds a suffix of its own);
        // a resource asked for is the best name there is, else the software's.
        bind: bind2.then_some(sasl.resource.as_deref().or(sasl.sasl2.software.as_deref())),
        enable_sm: enable_sm.map(|c| (c.resume, c.max_resume)),
        resume,
        request_token: token_requested.map(HtMechanism::name),
        fast: matches!(exchange, Sasl2Exchange::Fast(_)),
        fast_count: sasl.sasl2.fast_count.filter(|_| inline.fast_0rtt),
    };
    cx.outbox.send(&sasl2::authenticate(name, &request));
    cx.outbox.step(Step::AuthStarted);
    Ok(Sasl2Inline {
        bind2,
        bind2_sm: enable_sm.is_some(),
        sm: resume.is_some(),
        fast_0rtt: inline.fast_0rtt,
    })
}

/// `<authenticate/>` with the FAST token right behind the protected header, before the
/// features (XEP-0484 §3.4, a round trip saved): only with a token, a user agent id and
/// the shape of this server's SASL2 offer kept from the last login
/// ([`Sasl2Config::pipeline`]), never from anything seen before TLS. `None` when any is
/// missing (the features then decide, as without pipelining).
#[cfg(feature = "sasl2")]
fn pipelined_authenticate<R: RngCore + CryptoRng>(cx: &mut Context<'_, R>) -> Option<ExpectHeader> {
    let config = cx.config;
    let sasl = config.sasl.as_ref()?;
    if config.ns != ContentNamespace::Client || !sasl.sasl2.enabled {
        return None;
    }
    let kept = sasl.sasl2.pipeline?;
    let token = sasl.sasl2.fast_token.as_ref()?;
    sasl.sasl2.user_agent_id.as_ref()?;
    let mechanism = HtMechanism::from_name(&token.mechanism)?;
    let ht = HtClient::new(mechanism, &token.token, &cx.learned.channel_binding).ok()?;
    let mut exchange = Sasl2Exchange::Fast(ht);
    let sent = send_authenticate(cx, &mut exchange, kept, None).ok()?;
    Some(ExpectHeader {
        next: Features::AfterPipelinedSasl2(ExpectFeaturesAfterPipelinedSasl2 {
            exchange,
            sent,
            stream_id: None,
        }),
    })
}

#[cfg(feature = "sasl2")]
impl ExpectFeaturesAfterPipelinedSasl2 {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        keep_offer(cx, &features);
        if let Some(what) = self.not_offered(features.sasl2.as_deref()) {
            return Err(cx.sasl2_abort(SaslError::PipelinedNotOffered(what)));
        }
        Ok(State::Sasl2(ExpectSasl2Result {
            exchange: self.exchange,
            features,
            stream_id: self.stream_id,
            token_requested: None,
        }))
    }

    /// The first thing the request used that the live `offer` lacks.
    fn not_offered(&self, offer: Option<&Sasl2Feature>) -> Option<&'static str> {
        let Some(offer) = offer else {
            return Some("SASL2");
        };
        let fast = match &self.exchange {
            Sasl2Exchange::Fast(ht) => offer
                .fast
                .iter()
                .flatten()
                .any(|m| m == ht.mechanism().name()),
            Sasl2Exchange::Sasl(_) => false,
        };
        if !fast {
            Some("the FAST token's mechanism")
        } else if self.sent.bind2 && !offer.bind2 {
            Some("Bind 2")
        } else if self.sent.bind2_sm && !offer.bind2_sm {
            Some("stream management inside Bind 2")
        } else if self.sent.sm && !offer.sm {
            Some("resumption inside SASL2")
        } else {
            None
        }
    }
}

#[cfg(feature = "sasl2")]
impl ExpectSasl2Result {
    fn handle<R: RngCore + CryptoRng>(
        mut self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        let received = match sasl2::parse(node) {
            Some(Ok(r)) => r,
            Some(Err(_)) => return Err(cx.sasl2_abort(SaslError::IncorrectEncoding)),
            None => {
                return Err(unexpected(
                    "SASL2 <challenge/>, <success/>, <failure/> or <continue/>",
                    node,
                ))
            }
        };
        match received {
            sasl2::Received::Challenge(data) => {
                let response = match &mut self.exchange {
                    Sasl2Exchange::Sasl(m) => m.challenge(&data),
                    Sasl2Exchange::Fast(_) => Err(SaslError::UnexpectedChallenge),
                }
                .map_err(|e| cx.sasl2_abort(e))?;
                cx.outbox.send(&sasl2::response(&response));
                Ok(State::Sasl2(self))
            }
            sasl2::Received::Continue(tasks) => {
                let mut list = String::new();
                for (i, t) in tasks.iter().enumerate() {
                    if i > 0 {
                        list.push_str(", ");
                    }
                    list.push_str(t);
                }
                Err(cx.sasl2_abort(SaslError::ContinueRequired(list)))
            }
            sasl2::Received::Failure { condition, text } => match self.exchange {
                // XEP-0484 §4.1: discard the token and log in with the password, here:
                // a SASL2 failure leaves the stream as it was (XEP-0388 §2.6.2).
                Sasl2Exchange::Fast(_) => {
                    warn!("the FAST token was refused; logging in with the password");
                    cx.learned.sasl2().fast_token_rejected = true;
                    start_sasl2(cx, self.features, self.stream_id, false)
                }
                Sasl2Exchange::Sasl(m) => {
                    let mut error = m.failure(condition);
                    if let SaslError::ChannelBindingRejected { xep0440, .. } = &mut error {
                        *xep0440 = cx.learned.cb_types_advertised;
                    }
                    Err(cx.close(Error::AuthenticationFailed { error, text }))
                }
            },
            sasl2::Received::Success(success) => self.succeeded(cx, success),
        }
    }

    fn succeeded<R: RngCore + CryptoRng>(
        mut self,
        cx: &mut Context<'_, R>,
        success: sasl2::Success,
    ) -> Result<State, Error> {
        // The server proves itself before anything in the success is believed.
        let verified = match &mut self.exchange {
            Sasl2Exchange::Sasl(m) => m
                .success(success.additional_data.as_deref())
                .map(|()| m.cache_entry()),
            Sasl2Exchange::Fast(ht) => ht
                .success(success.additional_data.as_deref())
                .map(|()| None),
        };
        let exchange_cache = match verified {
            Ok(cache) => cache,
            Err(e) => return Err(cx.close(Error::Sasl(e))),
        };
        cx.learned.sasl2().authenticated = true;
        if let Sasl2Exchange::Sasl(m) = &self.exchange {
            cx.learned.mechanism = Some(m.mechanism());
            cx.learned.scram_cache = exchange_cache;
        }
        cx.outbox.step(Step::Authenticated);
        // XEP-0484 §3.3/§3.5: a token we asked for, or the rotation of the one we used.
        let token_mechanism = self.token_requested.or(match &self.exchange {
            Sasl2Exchange::Fast(ht) => Some(ht.mechanism()),
            Sasl2Exchange::Sasl(_) => None,
        });
        // A token longer than the login memory keeps is not kept (nor half kept).
        let grant = success
            .token
            .filter(|g| g.token.len() <= crate::login::MAX_FAST_TOKEN);
        if let (Some(grant), Some(mechanism)) = (grant, token_mechanism) {
            let expires = grant.expiry.as_deref().and_then(sasl2::parse_datetime);
            cx.learned.sasl2().fast_token = Some(FastToken {
                mechanism: String::from(mechanism.name()),
                token: grant.token.into_bytes(),
                expires: expires.map(UnixTime),
            });
        }
        let mut resumed = false;
        match success.resume {
            Some(SmAnswer::Resumed { previd, h }) => {
                let matches = cx
                    .config
                    .resume
                    .as_ref()
                    .is_some_and(|r| r.previd() == Some(previd.as_str()));
                if !matches {
                    return Err(cx.close(Error::StreamManagement(SmError::WrongPrevid)));
                }
                cx.learned.resume_answer = Some(ResumeAnswer::Resumed { h });
                resumed = true;
            }
            Some(SmAnswer::Failed { h, condition }) => {
                cx.learned.resume_answer = Some(ResumeAnswer::Failed { h, condition });
            }
            _ => {}
        }
        let mut bound = None;
        if !resumed {
            match success.bound {
                Some(Ok(sm_answer)) => {
                    let jid = success
                        .authorization_identifier
                        .as_deref()
                        .ok_or_else(|| Error::Bind(String::from("no authorization-identifier")))
                        .and_then(|t| {
                            crate::jid::Jid::parse(t)
                                .and_then(crate::jid::Jid::require_resource)
                                .map_err(Error::BoundJid)
                        })
                        .map_err(|e| cx.close(e))?;
                    cx.learned.sasl2().sm_inline = match sm_answer {
                        Some(SmAnswer::Enabled { id, max, location }) => {
                            Some(Ok(sm::InlineEnabled { id, max, location }))
                        }
                        Some(SmAnswer::Failed { condition, .. }) => Some(Err(condition)),
                        _ => None,
                    };
                    cx.outbox.step(Step::Bound);
                    bound = Some(jid.into_string());
                }
                Some(Err(condition)) => return Err(cx.close(Error::Bind(condition))),
                None => {}
            }
        }
        Ok(State::Features(Features::AfterSasl2(
            ExpectFeaturesAfterSasl2 {
                stream_id: self.stream_id,
                bound,
                resumed,
            },
        )))
    }
}

#[cfg(feature = "sasl2")]
impl ExpectFeaturesAfterSasl2 {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        if self.resumed {
            let jid = cx
                .config
                .resume
                .as_ref()
                .and_then(|r| r.jid())
                .map(String::from);
            return Ok(cx.negotiated(features, self.stream_id, jid));
        }
        if let Some(jid) = self.bound {
            return Ok(cx.negotiated(features, self.stream_id, Some(jid)));
        }
        // No Bind 2: bind (or resume) as after an RFC 6120 restart.
        ExpectFeaturesAfterSasl {
            stream_id: self.stream_id,
        }
        .handle(cx, features)
    }
}

impl ExpectFeaturesAfterPipelinedAuth {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        keep_offer(cx, &features);
        let offered = features.mechanisms.as_deref().unwrap_or(&[]);
        if sasl::check_offered(self.sasl.mechanism.mechanism(), offered).is_err() {
            warn!("pipelined SASL mechanism not offered; starting SASL again");
        } else if self
            .kept_choice
            .is_some_and(|kept| !cx.chooses(&features, kept))
        {
            // The offer changed since it was kept (say, -PLUS appeared, to which the gs2
            // flag `y` already sent is a downgrade the server refuses): end that exchange
            // and start again from this offer.
            warn!("the server's offer changed; ending the pipelined SASL");
        } else {
            return Ok(State::Sasl(self.sasl));
        }
        Ok(State::RefusedAuth(ExpectRefusedAuth {
            features,
            stream_id: self.stream_id,
            challenged: false,
        }))
    }
}

impl ExpectFeaturesAfterSasl {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        let Some(sasl) = &cx.config.sasl else {
            return Ok(cx.negotiated(features, self.stream_id, None));
        };
        // §6.4.6: SASL is not offered again on the authenticated stream.
        if features.mechanisms.is_some() {
            return Err(cx.close(Error::SaslAfterSuccess));
        }
        if cx.config.ns == ContentNamespace::Server {
            // §7.1: no resource binding between servers.
            return Ok(cx.negotiated(features, self.stream_id, None));
        }
        if let Some((previd, h)) = cx.config.resumable().filter(|_| offers_sm(&features)) {
            // XEP-0198 §5: `<resume/>` in place of binding.
            if features.mechanisms.is_some() {
                return Err(cx.close(Error::SaslAfterSuccess));
            }
            cx.outbox.send(&sm::element::resume(previd, h));
            return Ok(State::ResumeResult(ExpectResumeResult {
                stream_id: self.stream_id,
                features,
            }));
        }
        bind_offered(cx, &features)?;
        let request = bind::request(sasl.resource.as_deref());
        cx.outbox
            .send(&stanza::qualified(&request, cx.config.framing));
        Ok(State::BindResult(ExpectBindResult {
            stream_id: self.stream_id,
            features,
        }))
    }
}

/// The features list `<sm xmlns='urn:xmpp:sm:3'/>` (XEP-0198 §2).
fn offers_sm(features: &StreamFeatures) -> bool {
    features.other.iter().any(|f| f == "{urn:xmpp:sm:3}sm")
}

impl ExpectResumeResult {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        match sm::element::parse(node) {
            Some(Ok(Nonza::Resumed { previd, h })) => {
                let Some(resume) = &cx.config.resume else {
                    return Err(unexpected("<resumed/> or <failed/>", node));
                };
                if resume.previd() != Some(previd.as_str()) {
                    return Err(cx.close(Error::StreamManagement(SmError::WrongPrevid)));
                }
                let jid = resume.jid().map(String::from);
                cx.learned.resume_answer = Some(ResumeAnswer::Resumed { h });
                Ok(cx.negotiated(self.features, self.stream_id, jid))
            }
            Some(Ok(Nonza::Failed { h, condition })) => {
                // §5: the session is gone; bind a new resource (the stanzas it held are
                // reported to the application, never resent behind its back).
                cx.learned.resume_answer = Some(ResumeAnswer::Failed { h, condition });
                bind_offered(cx, &self.features)?;
                let resource = cx.config.sasl.as_ref().and_then(|s| s.resource.as_deref());
                let request = bind::request(resource);
                cx.outbox
                    .send(&stanza::qualified(&request, cx.config.framing));
                Ok(State::BindResult(ExpectBindResult {
                    stream_id: self.stream_id,
                    features: self.features,
                }))
            }
            Some(Err(sm::element::Malformed(what))) => {
                Err(cx.close(Error::StreamManagement(SmError::Malformed(what))))
            }
            _ => Err(unexpected("<resumed/> or <failed/>", node)),
        }
    }
}

impl ExpectFeaturesAfterPipelinedBind {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        features: StreamFeatures,
    ) -> Result<State, Error> {
        bind_offered(cx, &features)?;
        Ok(State::BindResult(ExpectBindResult {
            stream_id: self.stream_id,
            features,
        }))
    }
}

/// §6.4.6, §7: the authenticated stream offers binding, and never SASL again.
fn bind_offered<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    features: &StreamFeatures,
) -> Result<(), Error> {
    if features.mechanisms.is_some() {
        return Err(cx.close(Error::SaslAfterSuccess));
    }
    if !features.bind {
        return Err(cx.close(Error::Bind(String::from(
            "the server did not offer binding",
        ))));
    }
    Ok(())
}

impl ExpectProceed {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        match Answer::parse(node) {
            Some(Answer::Proceed) => {
                cx.outbox.step(Step::ProceedReceived);
                cx.outbox.event(Event::StartTls {
                    server_name: cx.config.domain.clone(),
                });
                Ok(State::AwaitTls)
            }
            // §5.4.2.2: the receiving entity closes the stream and the TCP connection.
            Some(Answer::Failure) => Err(cx.close(Error::StartTlsFailed)),
            None => Err(unexpected("<proceed/> or <failure/>", node)),
        }
    }
}

/// SASL from the features of a (protected) unauthenticated stream (§6); without SASL in
/// the configuration the negotiation ends here (the caller negotiates the rest).
fn start_sasl_from<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    features: StreamFeatures,
    stream_id: Option<String>,
) -> Result<State, Error> {
    // XEP-0220 §2.1.1, XEP-0178: a server tries EXTERNAL where offered (its certificate
    // proves more than DNS), dialback where not, or where EXTERNAL fails.
    #[cfg(feature = "dialback")]
    let dialback = cx.dialback_allowed(&features);
    #[cfg(not(feature = "dialback"))]
    let dialback = false;
    // XEP-0288 §2: `<bidi/>` before authenticating, on a protected stream that offers it.
    if cx.config.bidi
        && cx.config.ns == ContentNamespace::Server
        && cx.learned.secure
        && bidi::offered(&features)
        && (dialback || cx.config.sasl.is_some())
    {
        cx.outbox.send(bidi::REQUEST);
        cx.learned.bidi = true;
    }
    #[cfg(feature = "dialback")]
    if dialback && (cx.config.sasl.is_none() || !offers_external(&features)) {
        return cx.start_dialback(features, stream_id);
    }
    let Some(sasl) = &cx.config.sasl else {
        return Ok(cx.negotiated(features, stream_id, None));
    };
    // §6.3.4: only what this stream offers counts; nothing learned before TLS is used.
    let offered =
        MechanismSet::from_names(features.mechanisms.iter().flatten().map(String::as_str));
    let cb_types = features.channel_binding_types.as_deref();
    let policy = sasl.policy.clone();
    let (sasl, _) =
        start_sasl(cx, offered, cb_types, &policy).map_err(|e| cx.close(Error::Sasl(e)))?;
    #[cfg(feature = "dialback")]
    let sasl = ExpectSaslResult {
        dialback_after_failure: dialback.then(|| alloc::boxed::Box::new((features, stream_id))),
        ..sasl
    };
    Ok(State::Sasl(sasl))
}

/// The features offer SASL EXTERNAL (XEP-0178).
#[cfg(feature = "dialback")]
fn offers_external(features: &StreamFeatures) -> bool {
    features
        .mechanisms
        .iter()
        .flatten()
        .any(|m| m == Mechanism::External.name())
}

/// The features list `<dialback xmlns='urn:xmpp:features:dialback'/>` (XEP-0220 §2.1.1).
#[cfg(feature = "dialback")]
fn offers_dialback(features: &StreamFeatures) -> bool {
    features.other.iter().any(|f| {
        f.strip_prefix('{')
            .and_then(|f| f.strip_suffix("}dialback"))
            == Some(dialback::NS_FEATURE)
    })
}

/// The mechanism `policy` picks from `offered` (§6.3.3), started with the configured
/// credentials: one copy for `<auth/>` (RFC 6120) and `<authenticate/>` (XEP-0388).
fn client_mechanism<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    offered: MechanismSet,
    cb_types: Option<&[String]>,
    policy: &SaslPolicy,
) -> Result<(ClientMechanism, Selection), SaslError> {
    let selection = cx.choose(offered, cb_types, policy)?;
    let Some(sasl) = &cx.config.sasl else {
        return Err(SaslError::NoAcceptableMechanism);
    };
    let mut credentials = sasl.credentials.clone();
    // DIGEST-MD5's `digest-uri` names the server: the configured domain unless told otherwise.
    credentials
        .domain
        .get_or_insert_with(|| cx.config.domain.clone());
    let mechanism = ClientMechanism::new(
        &selection,
        credentials,
        &cx.learned.channel_binding,
        policy,
        cx.rng,
    )?;
    Ok((mechanism, selection))
}

/// Chooses a mechanism from `offered` and sends `<auth/>` (§6.4.2); returns the exchange
/// and the choice. On an error nothing has been sent; the caller decides whether that
/// ends the stream.
fn start_sasl<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
    offered: MechanismSet,
    cb_types: Option<&[String]>,
    policy: &SaslPolicy,
) -> Result<(ExpectSaslResult, Selection), SaslError> {
    let (mut mechanism, selection) = client_mechanism(cx, offered, cb_types, policy)?;
    let initial = mechanism.initial_response()?;
    cx.outbox.send(&sasl_element::auth(
        mechanism.mechanism(),
        initial.as_deref(),
    ));
    cx.outbox.step(Step::AuthStarted);
    Ok((
        ExpectSaslResult {
            mechanism,
            #[cfg(feature = "dialback")]
            dialback_after_failure: None,
        },
        selection,
    ))
}

/// The header of a protected, unauthenticated stream, with `<auth/>` right behind it when
/// the user named the mechanism in advance or gave this server's earlier post-TLS offer
/// (pipelining; checked when the features come). Nothing learned on this connection
/// before TLS is used (§6.3.4). A mechanism the policy or credentials do not allow is
/// simply not pipelined: the features then decide, and report the refusal.
fn protected_header<R: RngCore + CryptoRng>(cx: &mut Context<'_, R>) -> ExpectHeader {
    cx.send_header(true);
    let after_tls = ExpectHeader {
        next: Features::AfterTls(ExpectFeaturesAfterTls { stream_id: None }),
    };
    let pipelined = |(sasl, kept_choice)| ExpectHeader {
        next: Features::AfterPipelinedAuth(ExpectFeaturesAfterPipelinedAuth {
            sasl,
            kept_choice,
            stream_id: None,
        }),
    };
    let Some(sasl) = &cx.config.sasl else {
        return after_tls;
    };
    #[cfg(feature = "sasl2")]
    if let Some(pipelined) = pipelined_authenticate(cx) {
        return pipelined;
    }
    // A FAST token logs in through SASL2 (XEP-0484): no RFC 6120 `<auth/>` ahead of it.
    if sasl.sasl2.enabled && sasl.sasl2.fast_token.is_some() && sasl.sasl2.user_agent_id.is_some() {
        return after_tls;
    }
    let mut policy = sasl.policy.clone();
    match (sasl.pipeline_mechanism, sasl.pipeline_offer) {
        (Some(named), _) => {
            // A mechanism the user named, with no offer to go by: a plain SCRAM one goes
            // out with the gs2 flag `n`, not `y` (which a binding-capable server must
            // refuse as a downgrade); a policy that requires binding never pipelines it.
            if !named.is_plus() {
                if policy.channel_binding == CbPolicy::Required {
                    return after_tls;
                }
                policy.channel_binding = CbPolicy::Off;
            }
            let offered = MechanismSet::default().with(named);
            start_sasl(cx, offered, None, &policy).map_or(after_tls, |(s, _)| pipelined((s, None)))
        }
        // The server's offer from an earlier connection: the same choice as from a live
        // offer, gs2 flag included (`y` when the kept offer has no -PLUS and we could
        // bind), so that a stripped -PLUS is still caught. The live offer is checked again.
        (None, Some(offer)) => start_sasl(cx, offer, None, &policy)
            .map_or(after_tls, |(s, chosen)| pipelined((s, Some(chosen)))),
        (None, None) => after_tls,
    }
}

impl ExpectSaslResult {
    fn handle<R: RngCore + CryptoRng>(
        mut self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        match sasl_element::parse(node) {
            Some(Ok(Received::Challenge(data))) => {
                let response = self
                    .mechanism
                    .challenge(data.as_deref().unwrap_or_default())
                    .map_err(|e| cx.abort(e))?;
                cx.outbox.send(&sasl_element::response(&response));
                Ok(State::Sasl(self))
            }
            Some(Ok(Received::Success(data))) => {
                // §6.4.6 / RFC 5802 §9: the server signature is verified before the
                // success is trusted.
                if let Err(e) = self.mechanism.success(data.as_deref()) {
                    return Err(cx.close(Error::Sasl(e)));
                }
                cx.learned.mechanism = Some(self.mechanism.mechanism());
                cx.learned.scram_cache = self.mechanism.cache_entry();
                cx.outbox.step(Step::Authenticated);
                Ok(State::Restart)
            }
            // XEP-0220 §2.1.1: a failed EXTERNAL leaves the stream as it was; dialback next.
            #[cfg(feature = "dialback")]
            Some(Ok(Received::Failure { .. })) if self.dialback_after_failure.is_some() => {
                let Some(fallback) = self.dialback_after_failure else {
                    return Err(unexpected("<failure/>", node));
                };
                let (features, stream_id) = *fallback;
                cx.start_dialback(features, stream_id)
            }
            Some(Ok(Received::Failure { condition, text })) => {
                let mut error = self.mechanism.failure(condition);
                if let SaslError::ChannelBindingRejected { xep0440, .. } = &mut error {
                    *xep0440 = cx.learned.cb_types_advertised;
                }
                Err(cx.close(Error::AuthenticationFailed { error, text }))
            }
            Some(Err(())) => Err(cx.abort(SaslError::IncorrectEncoding)),
            _ => Err(unexpected("<challenge/>, <success/> or <failure/>", node)),
        }
    }
}

#[cfg(feature = "dialback")]
impl ExpectDialbackResult {
    /// §2.1.4: `<db:result type='valid'/>` from the receiving server to us authenticates
    /// the stream; `invalid` or an error ends it.
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        let answer = match Dialback::parse(node) {
            Some(Ok(answer)) => answer,
            Some(Err(e)) => return Err(cx.stream_error(e)),
            None => return Err(unexpected("<db:result/>", node)),
        };
        let ours = cx.config.from.as_deref().unwrap_or_default();
        let addressed = answer.kind == dialback::Kind::Result
            && answer.from.eq_ignore_ascii_case(&cx.config.domain)
            && answer.to.eq_ignore_ascii_case(ours);
        match answer.verdict {
            Some(Verdict::Valid) if addressed => {
                cx.outbox.step(Step::Authenticated);
                cx.learned.dialback = true;
                Ok(cx.negotiated(self.features, self.stream_id, None))
            }
            Some(verdict) if addressed => Err(cx.close(Error::DialbackRefused(verdict))),
            _ => Err(unexpected("<db:result/> with our verdict", node)),
        }
    }
}

impl ExpectRefusedAuth {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        match sasl_element::parse(node) {
            // The server refused the pipelined exchange (invalid-mechanism, or not-authorized
            // for a gs2 flag `y` where it offers -PLUS) or confirmed our `<abort/>`: choose
            // again from what this stream really offers.
            Some(Ok(Received::Failure { .. })) => {
                start_sasl_from(cx, self.features, self.stream_id)
            }
            // The server went on with the exchange: abort it (once; SCRAM's first challenge
            // is answered by nothing else).
            Some(Ok(Received::Challenge(_))) if !self.challenged => {
                cx.outbox.send(sasl_element::ABORT);
                Ok(State::RefusedAuth(ExpectRefusedAuth {
                    challenged: true,
                    ..self
                }))
            }
            _ => Err(unexpected("<failure/> to the pipelined <auth/>", node)),
        }
    }
}

impl ExpectBindResult {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        match bind::parse_response(node) {
            Some(Ok(jid)) => {
                cx.outbox.step(Step::Bound);
                Ok(cx.negotiated(self.features, self.stream_id, Some(jid.into_string())))
            }
            Some(Err(error)) => Err(cx.close(error)),
            None => Err(unexpected("the bind result", node)),
        }
    }
}

fn unexpected(expected: &'static str, node: roxmltree::Node<'_, '_>) -> Error {
    Error::UnexpectedElement {
        expected,
        got: qualified_name(node),
    }
}

/// The initiating entity. See the module docs.
pub struct InitiatingEntity<R> {
    config: InitiatorConfig,
    inbound: Inbound,
    outbox: Outbox,
    state: State,
    rng: R,
    learned: Learned,
}

impl<R: RngCore + CryptoRng> InitiatingEntity<R> {
    /// Starts a negotiation: the first header (and `<starttls/>` when pipelined) is
    /// queued for sending at once. SASL nonces come from `rng`.
    pub fn new(config: InitiatorConfig, rng: R) -> Self {
        Self::with_tls(config, rng, TlsInfo::default())
    }

    /// As [`InitiatingEntity::new`], on a transport that is already TLS (Direct TLS,
    /// XEP-0368, with `config.secure_transport`), whose channel binding is `tls`.
    pub fn with_tls(config: InitiatorConfig, mut rng: R, tls: TlsInfo) -> Self {
        let inbound = Inbound::new(Framer::new(config.framing, config.limits));
        let mut outbox = Outbox::default();
        let secure = config.secure_transport || config.framing == Framing::WebSocket;
        let mut learned = Learned {
            secure,
            channel_binding: if config.secure_transport {
                tls.channel_binding
            } else {
                sasl::ChannelBindingData::default()
            },
            ..Learned::default()
        };
        let pipeline = !secure
            && config.pipeline_starttls
            && config.tls == TlsPolicy::Required
            && config.framing == Framing::Tcp;
        let mut cx = Context {
            config: &config,
            outbox: &mut outbox,
            rng: &mut rng,
            learned: &mut learned,
        };
        let first = if secure {
            protected_header(&mut cx)
        } else {
            cx.send_header(false);
            if pipeline {
                cx.send_starttls();
            }
            ExpectHeader {
                next: Features::BeforeTls(ExpectFeaturesBeforeTls {
                    starttls_sent: pipeline,
                    stream_id: None,
                }),
            }
        };
        InitiatingEntity {
            inbound,
            outbox,
            state: State::Header(first),
            rng,
            learned,
            config,
        }
    }

    /// The configuration this entity runs with.
    pub fn config(&self) -> &InitiatorConfig {
        &self.config
    }

    fn process(&mut self) -> Result<(), Error> {
        let mut cx = Context {
            config: &self.config,
            outbox: &mut self.outbox,
            rng: &mut self.rng,
            learned: &mut self.learned,
        };
        dispatch::run(
            &mut cx,
            &mut self.state,
            &mut self.inbound,
            &self.config.limits,
        )
    }
}

impl<R: RngCore + CryptoRng> Role for Context<'_, R> {
    type State = State;
    const FAILED: State = State::Failed;

    fn between_frames(
        &mut self,
        state: &mut State,
        inbound: &mut Inbound,
    ) -> Option<Result<(), Error>> {
        match state {
            State::AwaitTls => {
                // §5.4.2.3: whatever followed `<proceed/>` was sent in plaintext and must
                // never reach the TLS-protected stream.
                if !inbound.framer.pending().is_empty() {
                    *state = State::Failed;
                    return Some(Err(Error::PlaintextAfterProceed));
                }
                Some(Ok(()))
            }
            State::Restart => {
                // §6.4.6: a new stream on the same transport, no closing tag first.
                inbound.restart();
                self.outbox.step(Step::StreamRestarted);
                self.send_header(self.learned.secure);
                let mut next = Features::AfterSasl(ExpectFeaturesAfterSasl { stream_id: None });
                // A session to resume waits for the features: `<resume/>` or bind.
                let resuming = self.config.resumable().is_some();
                if let Some(sasl) = self
                    .config
                    .sasl
                    .as_ref()
                    .filter(|s| s.pipeline_bind && !resuming)
                {
                    if self.config.ns == ContentNamespace::Client {
                        let request = bind::request(sasl.resource.as_deref());
                        self.outbox
                            .send(&stanza::qualified(&request, self.config.framing));
                        next = Features::AfterPipelinedBind(ExpectFeaturesAfterPipelinedBind {
                            stream_id: None,
                        });
                    }
                }
                *state = State::Header(ExpectHeader { next });
                None
            }
            State::Negotiated | State::Failed => Some(Ok(())),
            _ => None,
        }
    }

    fn header(&mut self, state: State, header: &StreamHeader) -> Result<State, Error> {
        match state {
            State::Header(s) => s.handle(self, header),
            _ => Err(self.stream_error(dispatch::not_well_formed("unexpected stream header"))),
        }
    }

    fn element(&mut self, state: State, node: roxmltree::Node<'_, '_>) -> Result<State, Error> {
        if let Some(e) = received_stream_error(node) {
            return Err(e);
        }
        match state {
            State::Features(s) => s.handle(self, node),
            State::Proceed(s) => s.handle(self, node),
            State::Sasl(s) => s.handle(self, node),
            #[cfg(feature = "dialback")]
            State::Dialback(s) => s.handle(self, node),
            #[cfg(feature = "sasl2")]
            State::Sasl2(s) => s.handle(self, node),
            State::RefusedAuth(s) => s.handle(self, node),
            State::BindResult(s) => s.handle(self, node),
            // Never entered without `stream-management` (no `<resume/>` is sent).
            State::ResumeResult(s) if cfg!(feature = "stream-management") => s.handle(self, node),
            _ => Err(unexpected("a stream header", node)),
        }
    }

    /// §5.3.3: no whitespace from `<starttls/>` to `<proceed/>`.
    fn keepalive(&mut self, state: State) -> Result<State, Error> {
        match state {
            State::Proceed(_) => Err(self.close(Error::WhitespaceDuringStartTls)),
            state => Ok(state),
        }
    }

    fn end(&mut self) -> Error {
        self.close(Error::PeerClosed)
    }

    fn stream_error(&mut self, error: StreamError) -> Error {
        self.outbox.stream_error(self.config.framing, &error);
        Error::StreamErrorSent(error)
    }
}

impl<R: RngCore + CryptoRng> Negotiator for InitiatingEntity<R> {
    fn receive_buffer(&mut self) -> &mut [u8] {
        self.inbound.framer.free_space()
    }

    fn received(&mut self, n: usize) -> Result<(), Error> {
        self.inbound.framer.commit(n);
        self.process()
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

    fn stream_management(&mut self) -> SmStart {
        if !cfg!(feature = "stream-management") {
            return SmStart::Off;
        }
        let resume = self.config.resume.take();
        let config = self.config.stream_management;
        match (self.learned.resume_answer.take(), resume) {
            (Some(ResumeAnswer::Resumed { h }), Some(state)) => SmStart::Resumed {
                config: config.unwrap_or_default(),
                state,
                h,
            },
            (answer, resume) => {
                let not_resumed = resume.map(|state| {
                    let (h, condition) = match answer {
                        Some(ResumeAnswer::Failed { h, condition }) => (h, condition),
                        _ => (None, None),
                    };
                    NotResumed {
                        state,
                        h,
                        condition,
                    }
                });
                let inline = self.learned.sasl2.as_mut().and_then(|l| l.sm_inline.take());
                if config.is_none() && not_resumed.is_none() && inline.is_none() {
                    return SmStart::Off;
                }
                SmStart::Bound {
                    config: config.unwrap_or_default(),
                    offered: config.is_some() && self.learned.sm_offered && inline.is_none(),
                    not_resumed,
                    inline,
                }
            }
        }
    }

    /// The binding data of a Direct TLS transport whose handshake finished after our
    /// first header and `<authenticate/>` went out as early data: used if the token is
    /// refused and a password login with channel binding follows.
    fn tls_confirmed(&mut self, info: TlsInfo) {
        if self.config.secure_transport {
            self.learned.channel_binding = info.channel_binding;
        }
    }

    /// §5.4.3.3: forget everything learned before TLS (stream id, `from`, features) and
    /// open a new stream on the protected transport, without `</stream:stream>` first.
    fn tls_established(&mut self, info: TlsInfo) -> Result<(), Error> {
        if !matches!(self.state, State::AwaitTls) {
            return Err(Error::UnexpectedElement {
                expected: "TLS only after <proceed/>",
                got: String::from("tls_established"),
            });
        }
        self.inbound.restart();
        self.learned.secure = true;
        self.learned.channel_binding = info.channel_binding;
        self.outbox.step(Step::TlsEstablished);
        let mut cx = Context {
            config: &self.config,
            outbox: &mut self.outbox,
            rng: &mut self.rng,
            learned: &mut self.learned,
        };
        self.state = State::Header(protected_header(&mut cx));
        self.process()
    }
}

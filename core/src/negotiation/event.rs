//! What a [`Connection`](crate::connection::Connection) reports: negotiation steps, the request to
//! start TLS, the outcome, received stanzas and the end of the stream.

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use crate::sasl::{ChannelBindingData, Mechanism, MechanismSet, ScramCacheEntry};
use crate::stream::features::StreamFeatures;
use crate::xml::element::Wrapped;
use crate::Error;

/// A negotiation step that happened, for transcripts and progress displays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// We sent a stream header (§4.7).
    HeaderSent,
    /// The peer's stream header arrived (§4.7).
    HeaderReceived,
    /// We sent `<stream:features/>` (§4.3.2).
    FeaturesSent,
    /// `<stream:features/>` arrived (§4.3.2).
    FeaturesReceived,
    /// We sent `<starttls/>` (§5.4.2).
    StartTlsSent,
    /// `<starttls/>` arrived (§5.4.2).
    StartTlsReceived,
    /// We sent `<proceed/>` (§5.4.2.3).
    ProceedSent,
    /// `<proceed/>` arrived (§5.4.2.3).
    ProceedReceived,
    /// The transport is TLS-protected (§5.4.3.3) and the old stream is forgotten.
    TlsEstablished,
    /// SASL started: `<auth/>` sent or received (§6.4.2).
    AuthStarted,
    /// SASL succeeded (§6.4.6); for the initiating entity, after the server signature
    /// was verified.
    Authenticated,
    /// The stream was restarted with a new header (§4.3.3).
    StreamRestarted,
    /// A resource was bound (§7.6.1).
    Bound,
}

/// What the driver must do next. Non-exhaustive: extensions (XEP-0198, ...) add events.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Informational: a step of the negotiation happened.
    Step(Step),
    /// Flush the output, then start TLS on the transport right away (§5.4.2.3) and call
    /// `tls_established` when it is done. `server_name` is, for the initiating entity, the
    /// domain the user configured (SNI and the reference identity, §13.7.2.1), never
    /// something learned from the network; for the receiving entity, the hosted domain the
    /// peer addressed in `to`, to choose the certificate by (§5.4.3.1).
    StartTls {
        /// See above.
        server_name: String,
    },
    /// The negotiation is complete (for a client: the resource is bound, §7.6.1): the
    /// stream now carries stanzas ([`Event::Stanza`]) and [`Connection::send_stanza`]
    /// sends them.
    ///
    /// [`Connection::send_stanza`]: crate::connection::Connection::send_stanza
    Negotiated(Outcome),
    /// A top-level element of the bound stream (§8): a stanza, or another element such as
    /// an XEP-0198 ack. Already checked well-formed and not a stream error.
    Stanza(Stanza),
    /// An element whose parse would need more heap than `Limits::max_parse_bytes` allows
    /// (§13.12) was skipped unparsed (an IQ in it goes unanswered, §8.2.3). The stream
    /// goes on; a server ends it with [`Connection::stream_error`] and
    /// [`too_costly`](crate::xml::element::too_costly) if that is its policy.
    ///
    /// [`Connection::stream_error`]: crate::connection::Connection::stream_error
    ElementSkipped {
        /// What [`crate::xml::element::parse_cost`] bounds its parse at, in bytes.
        cost: usize,
        /// `Limits::max_parse_bytes`.
        allowed: usize,
    },
    /// XEP-0198 §3: stream management is on. `id` is set when the session can be resumed
    /// (§5); `max` is how long the server keeps it (seconds); `location` where to
    /// reconnect to resume. From here on stanzas are numbered (see
    /// [`SmState`](crate::sm::SmState)).
    SmEnabled {
        /// The session id (`previd` of a later `<resume/>`).
        id: Option<String>,
        /// Seconds the session is kept after a drop.
        max: Option<u32>,
        /// Where to reconnect to resume (`host[:port]`), if the server said.
        location: Option<String>,
    },
    /// XEP-0198 §3: the server refused `<enable/>`. The stanzas sent since it went out are
    /// not acknowledged and never will be: here they are, with their numbers.
    SmFailed {
        /// The stanza error condition in `<failed/>`.
        condition: Option<String>,
        /// The stanzas sent meanwhile.
        not_acknowledged: Vec<(u64, String)>,
    },
    /// XEP-0198 §4: the peer acknowledged these stanzas (by number), `h` in all.
    Acked {
        /// The peer's count.
        h: u32,
        /// The numbers of the stanzas newly acknowledged.
        numbers: Range<u64>,
    },
    /// XEP-0198 §5: the session resumed on this connection (instead of binding). The
    /// stanzas `acked` reached the peer before the drop; `resent` are sent again now, in
    /// order (what was queued while no stream was up included).
    Resumed {
        /// The peer's count of our stanzas.
        h: u32,
        /// Numbers the peer's `h` acknowledged.
        acked: Range<u64>,
        /// Numbers sent again.
        resent: Range<u64>,
    },
    /// XEP-0198 §5: the session could not be resumed; a new resource was bound instead
    /// (stream management is enabled anew when offered). `delivered` are known to have
    /// reached the server (from its `h`, when it gave one); `not_delivered` are not known
    /// to have, and were NOT sent again: the application decides.
    ResumeFailed {
        /// The server's `h`, if it gave one.
        h: Option<u32>,
        /// The condition in `<failed/>`; `None` when `<sm/>` was not offered at all.
        condition: Option<String>,
        /// Numbers known delivered.
        delivered: Range<u64>,
        /// Stanzas not known delivered, with their numbers, oldest first.
        not_delivered: Vec<(u64, String)>,
    },
    /// Receiving entity (XEP-0198 §5): the client asks to resume `previd` instead of
    /// binding. Answer with
    /// [`Connection::resume`](crate::connection::Connection::resume) (the
    /// detached session's state) or `refuse_resume`; nothing else happens meanwhile.
    ResumeRequested {
        /// The session the client names.
        previd: String,
        /// The bare JID the client authenticated as: only a session of this account may
        /// be resumed (or taken over from a link not yet seen to die).
        account: Option<String>,
        /// How many of the session's stanzas the client handled.
        h: u32,
    },
    /// Receiving server (XEP-0220 §2.1.2): the peer asked to be authenticated by Server
    /// Dialback and the policy admits it. Send `verify` (a `<db:verify/>` with the key and
    /// this stream's id) to the authoritative server of `verify.to`, on a stream of our
    /// own, and hand its answer to
    /// [`Connection::dialback_verdict`](crate::connection::Connection::dialback_verdict);
    /// until then the peer's stanzas are refused.
    #[cfg(feature = "dialback")]
    DialbackRequested {
        /// The question for the authoritative server.
        verify: crate::dialback::Dialback,
    },
    /// The stream is over: send what [`Connection::poll_transmit`] still holds, then end
    /// TLS and the transport. Always the last event.
    ///
    /// [`Connection::poll_transmit`]: crate::connection::Connection::poll_transmit
    Closed(Closed),
}

/// How a stream ended (§4.4, §4.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// We closed the stream and the peer answered with its closing tag (§4.4): everything
    /// we sent before was processed.
    ByUs,
    /// The peer closed the bound stream first; our closing tag answers it (§4.4).
    ByPeer,
    /// It ended otherwise: a rule broken by either side (a stream error sent or received),
    /// a timeout, the transport's end, or a negotiation failure.
    Failed(Error),
}

impl Closed {
    /// The error, when the stream did not end with both closing tags.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Closed::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// One received top-level element: its raw text (as the peer sent it) and a parse of it
/// with the stream's namespaces in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stanza(pub(crate) Wrapped);

/// The element's text as received ([`Stanza::raw`]).
impl core::fmt::Display for Stanza {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.raw())
    }
}

impl Stanza {
    /// The element as the peer sent it.
    pub fn raw(&self) -> &str {
        self.0.raw()
    }

    /// Parses the element and calls `f` with it: the stream's default namespace and the
    /// stream prefix are in scope, as on the stream (§4.8). `None` cannot happen for an
    /// element the connection reported (it parsed it already), but a caller need not
    /// unwrap.
    pub fn parse<R>(&self, f: impl FnOnce(roxmltree::Node<'_, '_>) -> R) -> Option<R> {
        self.0.parse(f).ok()
    }

    /// The element's name, without namespace (`message`, `iq`, `presence`, `r`, ...).
    pub fn name(&self) -> &str {
        let raw = self.raw();
        let tag = raw.get(1..).unwrap_or_default();
        let end = tag
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .unwrap_or(tag.len());
        let qname = tag.get(..end).unwrap_or_default();
        qname.rsplit(':').next().unwrap_or(qname)
    }
}

/// How a negotiation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The features of the final stream (what the receiving entity offered last).
    pub features: StreamFeatures,
    /// The final stream id (§4.7.3).
    pub stream_id: Option<String>,
    /// Whether the stream is TLS-protected (STARTTLS, Direct TLS or `wss://`).
    pub secure: bool,
    /// The SASL mechanism that authenticated the stream, if SASL ran.
    pub mechanism: Option<Mechanism>,
    /// The authenticated identity: for the initiating entity the full JID the server bound
    /// (§7.6.1); for the receiving entity the client's full JID after binding, or the
    /// authenticated name on a stream without binding (S2S).
    pub jid: Option<String>,
    /// SCRAM keys to keep for the next login (initiating entity, after a verified success).
    pub scram_cache: Option<ScramCacheEntry>,
    /// Initiating entity: the SASL mechanisms (those this crate knows) offered on the TLS-protected stream before authentication (§6.3.3), `None`
    /// without TLS or SASL features. Kept with the SCRAM cache, it is
    /// [`ClientSasl::pipeline_offer`](crate::initiator::ClientSasl::pipeline_offer) of a
    /// later login; never a pre-TLS list (§6.3.4).
    pub sasl_offer: Option<MechanismSet>,
    /// Initiating entity: SASL2 (XEP-0388) authenticated the stream.
    pub sasl2: bool,
    /// Initiating entity: what the SASL2 offer on the protected stream carried inline
    /// (XEP-0388 §2.1), `None` where SASL2 was not offered. Kept with the login memory, it
    /// shapes the next login's `<authenticate/>` sent ahead of the features.
    pub sasl2_inline: Option<crate::stream::features::Sasl2Inline>,
    /// Initiating entity: a FAST token (XEP-0484) the server issued on this login, new or
    /// rotated: keep it (with the login memory) for the next.
    pub fast_token: Option<alloc::boxed::Box<crate::login::FastToken>>,
    /// Initiating entity: the FAST token we offered was refused (and the password logged
    /// in instead): forget it.
    pub fast_token_rejected: bool,
    /// S2S: Server Dialback (XEP-0220) authenticated the stream (not SASL).
    #[cfg(feature = "dialback")]
    pub dialback: bool,
    /// S2S: the stream is bidirectional (XEP-0288): the initiating server asked for it
    /// where the receiving one offered it, so stanzas travel both ways on it.
    pub bidi: bool,
}

/// What the TLS layer tells the connection once the handshake is done
/// ([`Connection::handle_tls_established`](crate::connection::Connection::handle_tls_established)).
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// The protocol version, as on the wire (`0x0304` is TLS 1.3), when the backend says.
    pub version: Option<u16>,
    /// The cipher suite's IANA code, when the backend says.
    pub cipher_suite: Option<u16>,
    /// Channel-binding data for SCRAM `-PLUS` (RFC 9266 `tls-exporter`, RFC 5929
    /// `tls-server-end-point`).
    pub channel_binding: ChannelBindingData,
    /// The identities verified from the peer's certificate (receiving entity, for SASL
    /// EXTERNAL, §6.3.4, §13.7.2.2, XEP-0178): a client's bare JID (its XmppAddr), or the
    /// domains a server's certificate names (its DNS-IDs), one of which must be the
    /// stream's `from`.
    pub peer_identities: alloc::vec::Vec<String>,
}

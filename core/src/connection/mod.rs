//! One XMPP connection per role, from the first byte to `</stream:stream>`, without I/O.
//!
//! The shape is quinn-proto's: a [`Connection`] never touches a transport or a clock.
//!
//! - In: [`Connection::handle_input`] (bytes read, plaintext side of TLS),
//!   [`Connection::handle_tls_established`] (after [`Event::StartTls`]),
//!   [`Connection::handle_timeout`] (the time has come), [`Connection::handle_eof`] (the
//!   transport ended).
//! - Out: [`Connection::poll_transmit`] (one unit to send: a header, one element, a
//!   closing tag; an RFC 7395 WebSocket sends each as one message), [`Connection::poll_event`],
//!   [`Connection::poll_timeout`] (when to call `handle_timeout` next).
//! - Commands: [`Connection::send_stanza`], [`Connection::close`],
//!   [`Connection::stream_error`].
//!
//! Stream management (XEP-0198, [`crate::sm`]) runs here too when the role's configuration
//! asks for it: acks are answered and requested, sent stanzas are kept until acknowledged,
//! and [`Connection::take_sm_state`] gives what a resumption needs once the stream is over.
//!
//! After every call that changes it, a driver sends everything `poll_transmit` returns,
//! then acts on every event: on [`Event::StartTls`] it starts TLS on the transport right
//! away (§5.4.2.3: nothing else is read or written in between) and reports it; on
//! [`Event::Closed`] it ends TLS and the transport. Time is a parameter (`now`): any
//! monotonic clock's reading as a [`Duration`] since an origin the caller keeps fixed.
//!
//! The negotiation is the role's state machine ([`crate::initiator::InitiatingEntity`] or
//! [`crate::receiver::ReceivingEntity`], in the order of RFC 6120 §4–§7); once it reports
//! [`Event::Negotiated`] the connection carries the bound stream (§8) with the same framer,
//! so nothing received is lost at the switch.

pub use crate::negotiation::{Closed, Event, Negotiator, Outcome, Stanza, Step, TlsInfo};

use alloc::collections::VecDeque;
use alloc::string::String;
use core::mem;
use core::time::Duration;

use rand_core::{CryptoRng, RngCore};

use crate::initiator::{InitiatingEntity, InitiatorConfig};
use crate::receiver::{ReceiverConfig, ReceivingEntity};
use crate::sasl::CredentialStore;
use crate::sm::{self, element::Nonza, Output, Session, SmError, SmStart, SmState};
use crate::stanza;
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{closing_tag, Framing, StreamHeader};
use crate::xml::element;
use crate::xml::framer::{Frame, Framer};
use crate::Error;

/// The client's or connecting server's connection (RFC 6120's initiating entity).
pub type InitiatingConnection<R> = Connection<InitiatingEntity<R>>;
/// The server's connection for one peer (RFC 6120's receiving entity).
pub type ReceivingConnection<R, S> = Connection<ReceivingEntity<R, S>>;

/// The timers a connection keeps (all of them in core, none in a wrapper).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// The whole negotiation, from the first byte to [`Event::Negotiated`] (TLS handshake
    /// included): past it the stream ends with `<connection-timeout/>` (§4.9.3.4) and
    /// [`Error::Timeout`].
    pub negotiation: Option<Duration>,
    /// On the bound stream: how long the peer may stay silent (no element, no whitespace
    /// keep-alive; a stanza dribbled without end does not count). Past it a ping (XEP-0199)
    /// is sent when [`Timeouts::ping_when_idle`] is set (with stream management on, an ack
    /// request `<r/>` instead: XEP-0198 counts a ping iq as a stanza), and after as long
    /// again without an answer the stream ends with `<connection-timeout/>` (§4.6.1,
    /// §4.9.3.4).
    pub idle: Option<Duration>,
    /// Ping a silent peer once before giving up on it (see [`Timeouts::idle`]).
    pub ping_when_idle: bool,
    /// On the bound stream over TCP: after this long without sending anything, send a
    /// whitespace keep-alive (§4.6.1), so that middleboxes and the peer's idle timer see
    /// the stream alive. RFC 7395 has no whitespace between messages: not sent there.
    pub keepalive: Option<Duration>,
    /// After our closing tag: how long to wait for the peer's before the stream is
    /// reported closed anyway (§4.4).
    pub close: Duration,
    /// How long one write to the transport may stay blocked: a peer that stops reading
    /// fills its receive window and then the write waits for ever. Past it the driver
    /// gives up on the connection ([`Error::Transport`] with `TimedOut`; no stream error
    /// can get through a blocked transport).
    pub write: Option<Duration>,
}

impl Default for Timeouts {
    /// 30 s to negotiate, 10 s to close, 30 s for a blocked write; no idle limit, no
    /// keep-alive.
    fn default() -> Self {
        Timeouts {
            negotiation: Some(Duration::from_secs(30)),
            idle: None,
            ping_when_idle: false,
            keepalive: None,
            close: Duration::from_secs(10),
            write: Some(Duration::from_secs(30)),
        }
    }
}

/// How a [`Connection`] runs besides its role's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// The timers.
    pub timeouts: Timeouts,
    /// Most bytes of stanzas queued by [`Connection::send_stanza`] and not yet taken by
    /// [`Connection::poll_transmit`]; a stanza beyond it is refused with
    /// [`SendError::QueueFull`], never queued.
    pub max_queued_bytes: usize,
    /// On the bound stream, an element too costly to parse (§13.12, the framer's
    /// [`Limits::max_parse_bytes`](crate::xml::limits::Limits)) ends the stream with
    /// `<policy-violation/>` instead of being skipped ([`Event::ElementSkipped`]): what a
    /// server does to a client over its limits.
    pub refuse_costly_elements: bool,
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        ConnectionOptions {
            timeouts: Timeouts::default(),
            max_queued_bytes: 256 * 1024,
            refuse_costly_elements: false,
        }
    }
}

/// Why [`Connection::send_stanza`] refused a stanza. Nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SendError {
    /// The stream is not bound yet ([`Event::Negotiated`] has not come).
    NotBound,
    /// The stream is closing or closed.
    Closed,
    /// [`ConnectionOptions::max_queued_bytes`] would be exceeded: send what
    /// [`Connection::poll_transmit`] holds first.
    QueueFull,
    /// Stream management's queue of unacknowledged stanzas is at its bound
    /// ([`SmConfig::max_unacked`](crate::sm::SmConfig)): wait for acknowledgements.
    UnackedFull,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            SendError::NotBound => "the stream is not bound yet: wait for the Negotiated event",
            SendError::Closed => "the stream is closed",
            SendError::QueueFull => {
                "the send queue is full: send what poll_transmit holds, then try again"
            }
            SendError::UnackedFull => {
                "too many stanzas are not acknowledged yet: wait for the peer's acks"
            }
        })
    }
}

impl core::error::Error for SendError {}

/// Where the connection is.
enum Phase<M> {
    /// The role's state machine negotiates (§4–§7).
    Negotiating(M),
    /// The bound stream (§8).
    Bound(Bound),
    /// We sent our closing tag; waiting for the peer's (§4.4).
    Closing(Bound),
    /// Over: [`Event::Closed`] was reported.
    Closed,
}

/// The bound stream: the negotiation's framer (with whatever it still holds) and the peer's
/// header, whose namespaces every element is parsed with.
struct Bound {
    framer: Framer,
    header: StreamHeader,
}

/// One XMPP stream of either role. See the module docs.
pub struct Connection<M> {
    phase: Phase<M>,
    framing: Framing,
    options: ConnectionOptions,
    /// Whom an idle ping goes to: the bound JID on a server, the domain on a client.
    ping_to: Option<String>,
    transmits: VecDeque<String>,
    queued_bytes: usize,
    events: VecDeque<Event>,
    /// When the negotiation must be done.
    negotiation_deadline: Option<Duration>,
    /// The last complete frame from the peer.
    last_heard: Duration,
    /// The last unit we queued.
    last_sent: Duration,
    /// An idle ping is out, unanswered.
    pinged: bool,
    /// When to stop waiting for the peer's closing tag.
    close_deadline: Option<Duration>,
    /// [`Event::Closed`] is queued.
    closed_reported: bool,
    /// The JID the negotiation bound (or authenticated).
    jid: Option<String>,
    /// Stream management (XEP-0198) on the bound stream.
    sm: Option<Session>,
}

impl<R: RngCore + CryptoRng> InitiatingConnection<R> {
    /// A client or connecting server: the first header (and `<starttls/>` when pipelined)
    /// is queued at once. SASL nonces come from `rng`.
    pub fn initiate(
        config: InitiatorConfig,
        rng: R,
        options: ConnectionOptions,
        now: Duration,
    ) -> Self {
        let framing = config.framing;
        let ping_to = Some(config.domain.clone());
        Connection::new(InitiatingEntity::new(config, rng), framing, options, now)
            .with_ping_to(ping_to)
    }

    /// As [`Connection::initiate`], on a transport that is already TLS (Direct TLS,
    /// XEP-0368, with `config.secure_transport`) which established `tls`.
    pub fn initiate_with_tls(
        config: InitiatorConfig,
        rng: R,
        tls: TlsInfo,
        options: ConnectionOptions,
        now: Duration,
    ) -> Self {
        let framing = config.framing;
        let ping_to = Some(config.domain.clone());
        Connection::new(
            InitiatingEntity::with_tls(config, rng, tls),
            framing,
            options,
            now,
        )
        .with_ping_to(ping_to)
    }
}

impl<R: RngCore + CryptoRng, S: CredentialStore> ReceivingConnection<R, S> {
    /// A server's side of one accepted connection: waits for the peer's header.
    pub fn accept(
        config: ReceiverConfig,
        rng: R,
        store: S,
        options: ConnectionOptions,
        now: Duration,
    ) -> Self {
        let framing = config.framing;
        Connection::new(
            ReceivingEntity::new(config, rng, store),
            framing,
            options,
            now,
        )
    }

    /// As [`Connection::accept`], on a transport that is already TLS (Direct TLS) which
    /// established `tls`.
    pub fn accept_with_tls(
        config: ReceiverConfig,
        rng: R,
        store: S,
        tls: TlsInfo,
        options: ConnectionOptions,
        now: Duration,
    ) -> Self {
        let framing = config.framing;
        Connection::new(
            ReceivingEntity::with_tls(config, rng, store, tls),
            framing,
            options,
            now,
        )
    }
}

impl<M: Negotiator> Connection<M> {
    /// Drives `machine` (a role's negotiation, started: its first output is already
    /// queued) over a stream with `framing`.
    pub fn new(machine: M, framing: Framing, options: ConnectionOptions, now: Duration) -> Self {
        let mut connection = Connection {
            phase: Phase::Negotiating(machine),
            framing,
            options,
            ping_to: None,
            transmits: VecDeque::new(),
            queued_bytes: 0,
            events: VecDeque::new(),
            negotiation_deadline: options.timeouts.negotiation.map(|t| now + t),
            last_heard: now,
            last_sent: now,
            pinged: false,
            close_deadline: None,
            closed_reported: false,
            jid: None,
            sm: None,
        };
        connection.drain_machine(now);
        connection
    }

    fn with_ping_to(mut self, to: Option<String>) -> Self {
        self.ping_to = to;
        self
    }

    /// `bytes` were read from the transport (the plaintext side of TLS).
    ///
    /// After [`Event::StartTls`] and before [`Connection::handle_tls_established`] nothing
    /// may arrive in plaintext: anything that does ends the stream
    /// ([`Error::PlaintextAfterProceed`], §5.4.2.3).
    pub fn handle_input(&mut self, bytes: &[u8], now: Duration) {
        let mut rest = bytes;
        while !rest.is_empty() {
            match &mut self.phase {
                Phase::Closed => return,
                Phase::Negotiating(_) => rest = self.negotiate(rest, now).unwrap_or_default(),
                Phase::Bound(bound) | Phase::Closing(bound) => {
                    let n = bound.framer.push(rest);
                    rest = rest.get(n..).unwrap_or_default();
                    let progressed = self.read_frames(now);
                    self.heard_between_elements(n, now);
                    if n == 0 && !progressed && !self.is_closed() {
                        // A full buffer without a frame, which the framer reports itself
                        // (§13.12); this only guards the loop.
                        self.stream_error(StreamError::new(StreamErrorCondition::PolicyViolation));
                    }
                }
            }
        }
    }

    /// Gives the negotiation what fits of `bytes` in its receive buffer and reads it; what
    /// is left, or `None` once the negotiation is over.
    fn negotiate<'b>(&mut self, bytes: &'b [u8], now: Duration) -> Option<&'b [u8]> {
        let Phase::Negotiating(machine) = &mut self.phase else {
            return None;
        };
        let buf = machine.receive_buffer();
        let n = buf.len().min(bytes.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), bytes.get(..n)) {
            to.copy_from_slice(from);
        }
        // `received(0)` on a full buffer reports the overrun.
        let result = machine.received(n);
        self.negotiation_step(result, now);
        Some(bytes.get(n..).unwrap_or_default())
    }

    /// `bytes` came as TLS 1.3 early data (0-RTT, RFC 8446 §2.3): data an attacker may have
    /// recorded and replayed. Only the negotiation may read it, and the receiving entity
    /// admits there no more than XEP-0484 allows (the stream header and a FAST
    /// `<authenticate/>` with a fresh `count`); early data that reaches past the
    /// negotiation (a stanza) or ends inside an element gets `<policy-violation/>`.
    pub fn handle_early_data(&mut self, bytes: &[u8], now: Duration) {
        if let Phase::Negotiating(machine) = &mut self.phase {
            // Only starts a mode: cannot fail.
            let _ = machine.early_data(true);
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            let Some(left) = self.negotiate(rest, now) else {
                self.early_data_refused();
                return;
            };
            rest = left;
        }
        if let Phase::Negotiating(machine) = &mut self.phase {
            let ended = machine.early_data(false);
            if ended.is_err() {
                self.negotiation_step(ended, now);
            }
        }
    }

    /// Takes the [`Event::ResumeRequested`] waiting among the events, if any (the others
    /// stay, in order): for a wrapper that answers it before it reads the rest, as when
    /// the `<resume/>` came in TLS 0-RTT early data and is answered in the same flight
    /// ([`driver::answer_resume`](crate::driver::answer_resume)). `(previd, account)`.
    pub fn take_resume_request(&mut self) -> Option<(String, Option<String>)> {
        let at = self
            .events
            .iter()
            .position(|e| matches!(e, Event::ResumeRequested { .. }))?;
        match self.events.remove(at)? {
            Event::ResumeRequested {
                previd, account, ..
            } => Some((previd, account)),
            _ => None,
        }
    }

    /// A stanza (or a partial element) in early data.
    fn early_data_refused(&mut self) {
        self.stream_error(StreamError::with_text(
            StreamErrorCondition::PolicyViolation,
            "only the stream header and a FAST <authenticate/> may come in TLS 0-RTT early data",
        ));
    }

    /// The TLS handshake of a transport that carried our early data (the first header
    /// and a FAST `<authenticate/>`, XEP-0484) finished: `info` is what it established,
    /// its channel-binding data among it.
    pub fn handle_tls_confirmed(&mut self, info: TlsInfo) {
        if let Phase::Negotiating(machine) = &mut self.phase {
            machine.tls_confirmed(info);
        }
    }

    /// Free space to read received bytes into, for a driver that reads in place (no copy):
    /// call [`Connection::handle_received`] with how many it wrote. Empty only when the
    /// peer overran the bound, which `handle_received(0, ..)` then reports.
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        match &mut self.phase {
            Phase::Negotiating(machine) => machine.receive_buffer(),
            Phase::Bound(bound) | Phase::Closing(bound) => bound.framer.free_space(),
            Phase::Closed => &mut [],
        }
    }

    /// `n` bytes were written into [`Connection::receive_buffer`]: as
    /// [`Connection::handle_input`] with them.
    pub fn handle_received(&mut self, n: usize, now: Duration) {
        match &mut self.phase {
            Phase::Closed => {}
            Phase::Negotiating(machine) => {
                let result = machine.received(n);
                self.negotiation_step(result, now);
            }
            Phase::Bound(bound) | Phase::Closing(bound) => {
                bound.framer.commit(n);
                if !self.read_frames(now) && n == 0 {
                    self.stream_error(StreamError::new(StreamErrorCondition::PolicyViolation));
                }
                self.heard_between_elements(n, now);
            }
        }
    }

    /// The TLS handshake asked for by [`Event::StartTls`] is done (§5.4.3.3): the old
    /// stream is forgotten and a new one starts on the protected transport.
    pub fn handle_tls_established(&mut self, info: TlsInfo, now: Duration) {
        if let Phase::Negotiating(machine) = &mut self.phase {
            let result = machine.tls_established(info);
            self.negotiation_step(result, now);
        }
    }

    /// The TLS handshake asked for by [`Event::StartTls`] failed (§5.4.3.2): the stream is
    /// over, and nothing more is sent on it (no closing tag: the TLS layer is broken).
    pub fn handle_tls_failed(&mut self, error: Error) {
        if let Phase::Negotiating(_) = self.phase {
            self.transmits.clear();
            self.queued_bytes = 0;
            self.finish(Closed::Failed(error));
        }
    }

    /// The transport ended (end of file, or an error the wrapper reports as `error`).
    pub fn handle_eof(&mut self, error: Option<Error>) {
        match self.phase {
            Phase::Closed => {}
            // Our closing tag was out: the peer went without its own, which ends the
            // stream as well (§4.4: "the connection may be closed").
            Phase::Closing(_) if error.is_none() => self.finish(Closed::ByUs),
            _ => {
                self.transmits.clear();
                self.queued_bytes = 0;
                self.finish(Closed::Failed(error.unwrap_or(Error::ConnectionClosed)));
            }
        }
    }

    /// Call when the time [`Connection::poll_timeout`] named has come (early or late calls
    /// are harmless).
    pub fn handle_timeout(&mut self, now: Duration) {
        let timeouts = self.options.timeouts;
        match &self.phase {
            Phase::Closed => {}
            Phase::Negotiating(_) => {
                if self.negotiation_deadline.is_some_and(|at| now >= at) {
                    self.stream_error_with(StreamError::with_text(
                        StreamErrorCondition::ConnectionTimeout,
                        "negotiation took too long",
                    ));
                    self.finish(Closed::Failed(Error::Timeout));
                }
            }
            Phase::Closing(_) => {
                if self.close_deadline.is_some_and(|at| now >= at) {
                    self.finish(Closed::Failed(Error::Timeout));
                }
            }
            Phase::Bound(_) => {
                if let Some(idle) = timeouts.idle {
                    if now >= self.last_heard + idle {
                        if timeouts.ping_when_idle && !self.pinged {
                            if self.sm.as_ref().is_some_and(Session::is_counting) {
                                // XEP-0198 §4: `<r/>` asks as well, and is not a stanza:
                                // a ping iq would be counted by the peer and not by us.
                                self.queue(String::from(sm::element::REQUEST), now);
                            } else {
                                // XEP-0199 §4.2: any answer, even an error, shows the peer
                                // alive.
                                let to = self.ping_to.clone();
                                let ping = stanza::iq(
                                    "get",
                                    "idle-ping",
                                    to.as_deref(),
                                    "<ping xmlns='urn:xmpp:ping'/>",
                                );
                                self.queue(
                                    stanza::qualified(&ping, self.framing).into_owned(),
                                    now,
                                );
                            }
                            self.pinged = true;
                            self.last_heard = now;
                        } else {
                            self.stream_error_with(StreamError::with_text(
                                StreamErrorCondition::ConnectionTimeout,
                                "idle for too long",
                            ));
                            self.finish(Closed::Failed(Error::Timeout));
                            return;
                        }
                    }
                }
                if let Some(request) = self.sm_mut().and_then(|sm| sm.handle_timeout(now)) {
                    self.queue(String::from(request), now);
                }
                if let Some(keepalive) = timeouts.keepalive {
                    if self.framing == Framing::Tcp && now >= self.last_sent + keepalive {
                        // §4.6.1: whitespace between top-level elements.
                        self.queue(String::from(" "), now);
                    }
                }
            }
        }
    }

    /// The next unit to send, oldest first: a stream header, one element, a whitespace
    /// keep-alive or a closing tag. Over TCP they may be written together; on an RFC 7395
    /// WebSocket each is one message.
    pub fn poll_transmit(&mut self) -> Option<String> {
        let unit = self.transmits.pop_front()?;
        self.queued_bytes = self.queued_bytes.saturating_sub(unit.len());
        Some(unit)
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Connection::handle_timeout`] must be called next; `None`: no timer runs.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let t = self.options.timeouts;
        match self.phase {
            Phase::Closed => None,
            Phase::Negotiating(_) => self.negotiation_deadline,
            Phase::Closing(_) => self.close_deadline,
            Phase::Bound(_) => {
                let idle = t.idle.map(|idle| self.last_heard + idle);
                let keepalive = t
                    .keepalive
                    .filter(|_| self.framing == Framing::Tcp)
                    .map(|k| self.last_sent + k);
                let ack_request = self.sm().and_then(Session::poll_timeout);
                [idle, keepalive, ack_request].into_iter().flatten().min()
            }
        }
    }

    /// Queues one stanza (or another top-level element) on the bound stream. On an RFC 7395
    /// stream it gets `xmlns='jabber:client'` unless it declares a default namespace
    /// ([`stanza::qualified`]). `element` is sent as it is: build it with [`crate::stanza`]
    /// or escape what goes in it.
    ///
    /// With stream management on (XEP-0198), a stanza (message, presence, iq) is kept
    /// until the peer acknowledges it and its number is returned ([`Event::Acked`] names
    /// it); `<r/>` follows per [`SmConfig`](crate::sm::SmConfig). `Ok(None)`: not tracked.
    pub fn send_stanza(&mut self, element: &str, now: Duration) -> Result<Option<u64>, SendError> {
        match self.phase {
            Phase::Bound(_) => {}
            Phase::Negotiating(_) => return Err(SendError::NotBound),
            Phase::Closing(_) | Phase::Closed => return Err(SendError::Closed),
        }
        let element = stanza::qualified(element, self.framing);
        if self.queued_bytes + element.len() > self.options.max_queued_bytes {
            return Err(SendError::QueueFull);
        }
        let (number, request) = match self.sm_mut() {
            Some(sm) => sm.sending(&element, now)?,
            None => (None, None),
        };
        self.queue(element.into_owned(), now);
        if let Some(request) = request {
            self.queue(String::from(request), now);
        }
        Ok(number)
    }

    /// Receiving entity, on [`Event::ResumeRequested`] (XEP-0198 §5): resumes the detached
    /// session `state` (the server's, kept from [`Connection::take_sm_state`]):
    /// `<resumed/>` goes out, the negotiation is complete ([`Event::Negotiated`]), and the
    /// stanzas the client's `h` does not cover are sent again ([`Event::Resumed`]).
    ///
    /// `state` is given back (`Some`), and `<failed/>` goes out, when it is not the session
    /// the client named or not its account's; it is also given back when no `<resume/>`
    /// waits. `None`: resumed.
    #[must_use = "a state given back is still a detached session"]
    pub fn resume(&mut self, state: SmState, now: Duration) -> Option<SmState> {
        let Phase::Negotiating(machine) = &mut self.phase else {
            return Some(state);
        };
        let back = machine.resume(state);
        self.negotiation_step(Ok(()), now);
        back
    }

    /// Receiving entity, on [`Event::ResumeRequested`]: the session is unknown or expired:
    /// `<failed/>` with `<item-not-found/>` (XEP-0198 §5); the client may bind instead.
    pub fn refuse_resume(&mut self, now: Duration) {
        if let Phase::Negotiating(machine) = &mut self.phase {
            if machine.refuse_resume() {
                self.negotiation_step(Ok(()), now);
            }
        }
    }

    /// Receiving server, on [`Event::DialbackRequested`]: the authoritative server's
    /// answer (XEP-0220 §2.1.3). `valid` authenticates the stream for the domain
    /// ([`Event::Negotiated`]); `invalid` ends it with `<not-authorized/>`; an error is
    /// passed on to the peer, which may try again.
    #[cfg(feature = "dialback")]
    pub fn dialback_verdict(&mut self, verdict: crate::dialback::Verdict, now: Duration) {
        if let Phase::Negotiating(machine) = &mut self.phase {
            match machine.dialback_verdict(verdict) {
                Ok(false) => {}
                result => self.negotiation_step(result.map(|_| ()), now),
            }
        }
    }

    /// Sends `<r/>` now (XEP-0198 §4), when stream management is on: say, before closing,
    /// to learn what arrived. Whether it was sent.
    pub fn request_ack(&mut self, now: Duration) -> bool {
        if !self.is_bound() || !self.sm().is_some_and(Session::is_counting) {
            return false;
        }
        self.queue(String::from(sm::element::REQUEST), now);
        true
    }

    /// The stream-management state of this connection's session (XEP-0198): what a
    /// resumption on a new connection needs (the session id, the counts, the stanzas not
    /// acknowledged), taken once, after [`Event::Closed`]. `None` when stream management
    /// was not on, or was already taken. A client passes it to the next connection
    /// ([`InitiatorConfig::resume`](crate::initiator::InitiatorConfig)); a server keeps it
    /// as a detached session (and may [`SmState::queue`] stanzas for it meanwhile).
    pub fn take_sm_state(&mut self) -> Option<SmState> {
        if !self.is_closed() {
            return None;
        }
        if !cfg!(feature = "stream-management") {
            return None;
        }
        self.sm.take().and_then(Session::into_state)
    }

    /// Closes the stream (§4.4): our closing tag is queued; [`Event::Closed`] comes when the
    /// peer's arrives (elements still arriving until then are reported), or when
    /// [`Timeouts::close`] has passed. During the negotiation it ends the stream at once.
    pub fn close(&mut self, now: Duration) {
        match mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Bound(bound) => {
                self.queue(String::from(closing_tag(self.framing)), now);
                self.close_deadline = Some(now + self.options.timeouts.close);
                self.phase = Phase::Closing(bound);
            }
            Phase::Negotiating(_) => {
                self.queue(String::from(closing_tag(self.framing)), now);
                self.finish(Closed::Failed(Error::Aborted));
            }
            other => self.phase = other,
        }
    }

    /// Ends the stream with `error` (§4.9.1.1): the `<stream:error/>` and our closing tag
    /// are queued, and the stream is closed ([`Error::StreamErrorSent`]).
    pub fn stream_error(&mut self, error: StreamError) {
        if matches!(self.phase, Phase::Closed) {
            return;
        }
        self.stream_error_with(error.clone());
        self.finish(Closed::Failed(Error::StreamErrorSent(error)));
    }

    /// Whether the stream is over ([`Event::Closed`] was queued).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the stream is bound (negotiated and not closing).
    pub fn is_bound(&self) -> bool {
        matches!(self.phase, Phase::Bound(_))
    }

    /// The timers this connection runs with.
    pub fn timeouts(&self) -> &Timeouts {
        &self.options.timeouts
    }

    /// How the stream is carried (TCP or RFC 7395 WebSocket).
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The peer's current stream header, once the stream is bound.
    pub fn peer_header(&self) -> Option<&StreamHeader> {
        match &self.phase {
            Phase::Bound(b) | Phase::Closing(b) => Some(&b.header),
            _ => None,
        }
    }

    /// The negotiation's state machine, while it runs (e.g. its configuration).
    pub fn negotiator(&self) -> Option<&M> {
        match &self.phase {
            Phase::Negotiating(m) => Some(m),
            _ => None,
        }
    }

    /// Takes the machine's output and events after it processed something; on `Err` the
    /// stream is over. On [`Event::Negotiated`] the stream becomes bound.
    fn negotiation_step(&mut self, result: Result<(), Error>, now: Duration) {
        let negotiated = self.drain_machine(now);
        if let Err(e) = result {
            // §5.4.2.3: after a failure the transport is never upgraded.
            self.events.retain(|e| !matches!(e, Event::StartTls { .. }));
            self.finish(Closed::Failed(e));
            return;
        }
        if negotiated {
            if let Phase::Negotiating(mut machine) = mem::replace(&mut self.phase, Phase::Closed) {
                let start = machine.stream_management();
                let (framer, header) = machine.into_parts();
                self.phase = Phase::Bound(Bound { framer, header });
                self.last_heard = now;
                self.start_sm(start, now);
                // Elements the peer pipelined behind the negotiation's last one.
                self.read_frames(now);
            }
        }
    }

    /// Stream management on the new bound stream (XEP-0198 §3, §5), as the negotiation
    /// settled it.
    fn start_sm(&mut self, start: SmStart, now: Duration) {
        if !cfg!(feature = "stream-management") {
            return;
        }
        match start {
            SmStart::Off => {}
            SmStart::Offered { config, id } => {
                self.sm = Some(Session::offered(config, id, self.jid.clone()));
            }
            SmStart::Bound {
                config,
                offered,
                not_resumed,
                inline,
            } => {
                let mut next_number = 1;
                if let Some(not_resumed) = not_resumed {
                    let report = sm::not_resumed_report(not_resumed);
                    if let Event::ResumeFailed {
                        delivered,
                        not_delivered,
                        ..
                    } = &report
                    {
                        next_number = not_delivered.last().map_or(delivered.end, |(n, _)| n + 1);
                    }
                    self.events.push_back(report);
                }
                match inline {
                    Some(Ok(enabled)) => {
                        let (session, event) =
                            Session::enabled_inline(config, self.jid.clone(), next_number, enabled);
                        self.sm = Some(session);
                        self.events.push_back(event);
                        return;
                    }
                    Some(Err(condition)) => {
                        self.events.push_back(Event::SmFailed {
                            condition,
                            not_acknowledged: alloc::vec::Vec::new(),
                        });
                        return;
                    }
                    None => {}
                }
                if offered {
                    let (session, enable) = Session::enable(config, self.jid.clone(), next_number);
                    self.sm = Some(session);
                    self.queue(enable, now);
                }
            }
            SmStart::Resumed {
                config,
                mut state,
                h,
            } => {
                let acked = match state.ack(h) {
                    Ok(acked) => acked,
                    Err(e) => {
                        self.sm = Some(Session::resumed(config, state));
                        return self.sm_error(e);
                    }
                };
                let (resent, units) = state.resend();
                let mut session = Session::resumed(config, state);
                let request = session.resent(units.len(), now);
                self.sm = Some(session);
                self.events.push_back(Event::Resumed { h, acked, resent });
                for unit in units {
                    self.queue(unit, now);
                }
                if let Some(request) = request {
                    self.queue(String::from(request), now);
                }
            }
        }
    }

    /// A stream-management element arrived on the bound stream.
    fn sm_element(&mut self, nonza: Nonza, now: Duration) {
        let Some(session) = self.sm_mut() else {
            return;
        };
        let mut out = VecDeque::new();
        let result = session.handle(nonza, &mut out);
        for output in out {
            match output {
                Output::Send(unit) => self.queue(unit, now),
                Output::Event(event) => self.events.push_back(event),
            }
        }
        if let Err(e) = result {
            self.sm_error(e);
        }
    }

    /// The peer broke a stream-management rule: the stream error (§4: for an `h` too high,
    /// `<undefined-condition/>` with `<handled-count-too-high/>`), our closing tag, the end.
    fn sm_error(&mut self, e: SmError) {
        let unit = match &e {
            SmError::HandledCountTooHigh { h, sent } => {
                sm::element::handled_count_too_high(*h, *sent)
            }
            SmError::WrongPrevid | SmError::Malformed(_) => {
                let mut s = String::new();
                StreamError::with_text(StreamErrorCondition::BadFormat, "stream management")
                    .write(&mut s);
                s
            }
        };
        self.queued_bytes += unit.len();
        self.transmits.push_back(unit);
        self.transmits
            .push_back(String::from(closing_tag(self.framing)));
        self.finish(Closed::Failed(Error::StreamManagement(e)));
    }

    /// Moves the machine's units and events over; whether it reported
    /// [`Event::Negotiated`].
    fn drain_machine(&mut self, now: Duration) -> bool {
        let Phase::Negotiating(machine) = &mut self.phase else {
            return false;
        };
        let mut negotiated = false;
        let mut sent = false;
        while let Some(unit) = machine.poll_transmit() {
            self.queued_bytes += unit.len();
            self.transmits.push_back(unit);
            sent = true;
        }
        while let Some(event) = machine.poll_event() {
            if let Event::Negotiated(outcome) = &event {
                negotiated = true;
                self.jid.clone_from(&outcome.jid);
                // A server pings the client's bound JID; a client its server's domain,
                // set when it was made.
                if self.ping_to.is_none() {
                    self.ping_to.clone_from(&outcome.jid);
                }
            }
            self.events.push_back(event);
        }
        if sent {
            self.last_sent = now;
        }
        negotiated
    }

    /// Reports every complete element of the bound stream; whether any frame came.
    fn read_frames(&mut self, now: Duration) -> bool {
        let mut progressed = false;
        loop {
            let (Phase::Bound(bound) | Phase::Closing(bound)) = &mut self.phase else {
                return progressed;
            };
            let limits = bound.framer.limits();
            let frame = match bound.framer.next_frame() {
                Ok(None) => return progressed,
                Err(e) => Err(e),
                Ok(Some(Frame::KeepAlive)) => Ok(Received::KeepAlive),
                Ok(Some(Frame::End)) => Ok(Received::End),
                Ok(Some(Frame::Header(_))) => Err(StreamError::with_text(
                    StreamErrorCondition::NotWellFormed,
                    "unexpected stream header",
                )),
                // §13.12: an element too costly to parse is skipped unparsed; the framer
                // is already past it, so the stream stays in step.
                Ok(Some(Frame::Element(raw))) => {
                    Ok(match element::wrap(raw, &bound.header, &limits) {
                        Ok(wrapped) => Received::Element(wrapped),
                        Err(cost) => Received::TooCostly(cost),
                    })
                }
            };
            progressed = true;
            self.last_heard = now;
            self.pinged = false;
            match frame {
                Err(e) => {
                    self.stream_error(e);
                    return true;
                }
                Ok(Received::KeepAlive) => {}
                Ok(Received::End) => {
                    // §4.4: the peer closed; answer with ours unless we closed first.
                    if let Phase::Bound(_) = self.phase {
                        self.queue(String::from(closing_tag(self.framing)), now);
                        self.finish(Closed::ByPeer);
                    } else {
                        self.finish(Closed::ByUs);
                    }
                    return true;
                }
                Ok(Received::TooCostly(_)) if self.options.refuse_costly_elements => {
                    self.stream_error(element::too_costly());
                    return true;
                }
                Ok(Received::TooCostly(cost)) => self.events.push_back(Event::ElementSkipped {
                    cost,
                    allowed: limits.max_parse_bytes,
                }),
                // §4.9: a stream error the peer sent ends the stream; one we must send for
                // a broken element too.
                Ok(Received::Element(wrapped)) => {
                    let sm_on = self.sm().is_some();
                    match wrapped.parse(|node| Inbound::classify(node, sm_on)) {
                        Ok(Inbound::Other) => self.events.push_back(Event::Stanza(Stanza(wrapped))),
                        Ok(Inbound::Stanza) => {
                            if let Some(sm) = self.sm_mut() {
                                sm.received_stanza();
                            }
                            self.events.push_back(Event::Stanza(Stanza(wrapped)));
                        }
                        Ok(Inbound::Sm(Ok(nonza))) => {
                            self.sm_element(nonza, now);
                            if self.is_closed() {
                                return true;
                            }
                        }
                        Ok(Inbound::Sm(Err(sm::element::Malformed(what)))) => {
                            self.sm_error(SmError::Malformed(what));
                            return true;
                        }
                        Ok(Inbound::StreamError(received)) => {
                            self.transmits.clear();
                            self.queued_bytes = 0;
                            self.finish(Closed::Failed(received));
                            return true;
                        }
                        Err(e) => {
                            self.stream_error(e);
                            return true;
                        }
                    }
                }
            }
        }
    }

    /// §4.6.1: bytes that leave the peer between elements (whitespace keep-alives: the
    /// framer reports a run of them once) are a sign of life; a stanza dribbled without end
    /// is not.
    fn heard_between_elements(&mut self, n: usize, now: Duration) {
        if let Phase::Bound(bound) | Phase::Closing(bound) = &self.phase {
            if n > 0 && bound.framer.pending().is_empty() {
                self.last_heard = now;
                self.pinged = false;
            }
        }
    }

    /// Stream management's session on the bound stream, when it is on. Never in a build
    /// without the `stream-management` feature: there every use of it is dead code, and
    /// the linker leaves XEP-0198 out.
    fn sm(&self) -> Option<&Session> {
        if cfg!(feature = "stream-management") {
            self.sm.as_ref()
        } else {
            None
        }
    }

    /// [`Connection::sm`], mutable.
    fn sm_mut(&mut self) -> Option<&mut Session> {
        if cfg!(feature = "stream-management") {
            self.sm.as_mut()
        } else {
            None
        }
    }

    fn queue(&mut self, unit: String, now: Duration) {
        self.queued_bytes += unit.len();
        self.transmits.push_back(unit);
        self.last_sent = now;
    }

    /// Queues `<stream:error/>` and the closing tag.
    fn stream_error_with(&mut self, error: StreamError) {
        let mut s = String::new();
        error.write(&mut s);
        self.queued_bytes += s.len();
        self.transmits.push_back(s);
        self.transmits
            .push_back(String::from(closing_tag(self.framing)));
    }

    /// The stream is over: reported once, as the last event.
    fn finish(&mut self, closed: Closed) {
        self.phase = Phase::Closed;
        self.close_deadline = None;
        if !self.closed_reported {
            self.closed_reported = true;
            self.events.push_back(Event::Closed(closed));
        }
    }
}

/// What a received element is, for the bound stream.
enum Inbound {
    /// A stream error (§4.9): the stream ends.
    StreamError(Error),
    /// A stream-management element, while stream management is on.
    Sm(Result<Nonza, sm::element::Malformed>),
    /// A stanza XEP-0198 counts (message, presence, iq).
    Stanza,
    /// Anything else.
    Other,
}

impl Inbound {
    fn classify(node: roxmltree::Node<'_, '_>, sm_on: bool) -> Self {
        if let Some(e) = crate::negotiation::received_stream_error(node) {
            return Inbound::StreamError(e);
        }
        if cfg!(feature = "stream-management") && sm_on {
            if let Some(nonza) = sm::element::parse(node) {
                return Inbound::Sm(nonza);
            }
        }
        if sm_on && sm::is_received_stanza(node) {
            Inbound::Stanza
        } else {
            Inbound::Other
        }
    }
}

/// What the framer gave on the bound stream, taken out of its buffer.
enum Received {
    KeepAlive,
    End,
    Element(element::Wrapped),
    TooCostly(usize),
}

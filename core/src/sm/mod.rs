//! XEP-0198 Stream Management (v1.6, `urn:xmpp:sm:3`), both roles, without I/O.
//!
//! - §3 enabling: the receiving entity lists `<sm/>` with resource binding; after binding
//!   the initiating entity sends `<enable resume='true'/>`, answered by `<enabled id=…/>`
//!   (resumable) or `<failed/>`.
//! - §4 acks: each side counts the stanzas (message, presence, iq; nothing else) it handled
//!   from the other, mod 2^32, and answers `<r/>` with `<a h=…/>`; an `h` above what was
//!   sent is a stream error. What was sent stays in a bounded queue until acknowledged.
//! - §5 resumption: on a new connection, after SASL, `<resume previd=… h=…/>` replaces
//!   binding; `<resumed h=…/>` tells which stanzas arrived, the others are sent again.
//!
//! The protocol lives in the [`Connection`](crate::connection::Connection) (the bound
//! stream) and, for `<resume/>` in place of binding, in the roles' negotiations. What one
//! session keeps across connections is an [`SmState`]. The session table of a server (which
//! detached sessions exist, for how long) is the server's: the core takes a state in
//! ([`Connection::resume`](crate::connection::Connection::resume)) and gives it
//! back when a stream ends ([`Connection::take_sm_state`](crate::connection::Connection::take_sm_state)).

pub(crate) mod element;
mod state;

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

pub use state::SmState;

use crate::connection::SendError;
use crate::negotiation::Event;
use element::Nonza;

/// `urn:xmpp:sm:3`
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// How stream management runs on a connection (either role).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmConfig {
    /// Ask for (initiator) or allow (receiver) resumption (§5).
    pub resume: bool,
    /// Seconds: the initiator's preferred resumption time (`max` on `<enable/>`), or how
    /// long the receiver keeps a detached session (`max` on `<enabled/>`, §3).
    pub max_resume: Option<u32>,
    /// Most stanzas sent and not yet acknowledged; one more is refused with
    /// [`SendError::UnackedFull`], never queued.
    pub max_unacked: usize,
    /// Send `<r/>` after this many stanzas since the last one (0: not by count).
    pub request_every: u32,
    /// Send `<r/>` when a stanza has gone this long without one.
    pub request_after: Option<Duration>,
}

impl Default for SmConfig {
    /// Resumption, 300 s, 256 unacknowledged stanzas, `<r/>` every 8 stanzas or after 5 s.
    fn default() -> Self {
        SmConfig {
            resume: true,
            max_resume: Some(300),
            max_unacked: 256,
            request_every: 8,
            request_after: Some(Duration::from_secs(5)),
        }
    }
}

/// A stream-management rule the peer broke; the stream ends.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SmError {
    /// The peer acknowledged more stanzas than we sent (§4): `<undefined-condition/>` with
    /// `<handled-count-too-high/>` was sent.
    HandledCountTooHigh {
        /// The peer's `h`.
        h: u32,
        /// What we sent (mod 2^32).
        sent: u32,
    },
    /// `<resumed/>` named another session than the one we asked for (§5).
    WrongPrevid,
    /// A stream-management element without a required attribute, or with a count that is
    /// not a 32-bit number.
    Malformed(&'static str),
}

impl fmt::Display for SmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the rule as a short name, its details.
            return match self {
                SmError::HandledCountTooHigh { h, sent } => {
                    write!(f, "handled-count-too-high h={h} sent={sent}")
                }
                SmError::WrongPrevid => f.write_str("wrong-previd"),
                SmError::Malformed(what) => write!(f, "malformed {what}"),
            };
        }
        match self {
            SmError::HandledCountTooHigh { h, sent } => write!(
                f,
                "the peer acknowledged {h} stanzas, but {sent} were sent (XEP-0198 §4); \
                 the stream was ended: report it to the peer's developers"
            ),
            SmError::WrongPrevid => f.write_str(
                "the server resumed another session than the one asked for (XEP-0198 §5): \
                 report it to its operator",
            ),
            SmError::Malformed(what) => {
                write!(
                    f,
                    "a malformed stream-management element ({what}): report it to the peer's \
                     developers"
                )
            }
        }
    }
}

/// A session that could not be resumed (§5): its state and what the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotResumed {
    /// The session's state as it was passed in.
    pub state: SmState,
    /// The server's `h` on `<failed/>`, when it gave one (v1.6).
    pub h: Option<u32>,
    /// The condition in `<failed/>`; `None` when the server did not offer `<sm/>`.
    pub condition: Option<String>,
}

/// What a negotiation settled about stream management, for the bound stream
/// ([`Negotiator::stream_management`](crate::connection::Negotiator::stream_management)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmStart {
    /// No stream management on this stream.
    Off,
    /// Receiving entity: `<sm/>` was offered with binding; `<enable/>` gets `id`.
    Offered {
        /// How it runs.
        config: SmConfig,
        /// The session id for `<enabled/>`, unpredictable (§5, §9).
        id: String,
    },
    /// Initiating entity: a resource was bound.
    Bound {
        /// How it runs.
        config: SmConfig,
        /// Whether the features listed `<sm/>` (then `<enable/>` is sent).
        offered: bool,
        /// The session that was to be resumed and was not.
        not_resumed: Option<NotResumed>,
        /// The answer to `<enable/>` sent inside Bind 2 (XEP-0386 with XEP-0198): `Ok`,
        /// stream management is on already; `Err`, refused (its condition).
        inline: Option<Result<InlineEnabled, Option<String>>>,
    },
    /// Either entity: the session resumed (§5).
    Resumed {
        /// How it runs.
        config: SmConfig,
        /// The session's state.
        state: SmState,
        /// The peer's `h`: how many of our stanzas it handled.
        h: u32,
    },
}

/// What `<enabled/>` said when it came inside SASL2's `<success/>` (Bind 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineEnabled {
    /// The session id, when resumable.
    pub id: Option<String>,
    /// Seconds the session is kept.
    pub max: Option<u32>,
    /// Where to reconnect to resume.
    pub location: Option<String>,
}

/// Where the session of one connection is.
enum Status {
    /// Receiving entity: `<sm/>` offered, no `<enable/>` yet.
    Offered { id: String },
    /// Initiating entity: `<enable/>` sent (both counts run from there, §4).
    Enabling,
    /// On.
    Enabled,
    /// Refused, or ended by `<failed/>`.
    Off,
}

/// Something the connection must do after the session handled an element or a send.
// Short-lived (made and drained within one call); boxing the event would cost an
// allocation per acknowledgement on a microcontroller.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Output {
    /// Send this unit.
    Send(String),
    /// Report this.
    Event(Event),
}

/// The protocol of one connection's session (§3, §4), driven by the connection.
pub(crate) struct Session {
    config: SmConfig,
    status: Status,
    state: SmState,
    /// Tracked stanzas sent since our last `<r/>`.
    unrequested: u32,
    /// When the first of them went out.
    unrequested_since: Option<Duration>,
}

impl Session {
    /// Receiving entity: `<sm/>` was offered to the client bound as `jid`.
    pub(crate) fn offered(config: SmConfig, id: String, jid: Option<String>) -> Self {
        let mut state = SmState::new(&config, 1);
        state.jid = jid;
        Session::with(config, Status::Offered { id }, state)
    }

    /// Initiating entity: `<enable/>` goes out now (returned), bound as `jid`; numbers go
    /// on from `next_number`.
    pub(crate) fn enable(
        config: SmConfig,
        jid: Option<String>,
        next_number: u64,
    ) -> (Self, String) {
        let mut state = SmState::new(&config, next_number);
        state.jid = jid;
        let unit = element::enable(config.resume, config.max_resume);
        (Session::with(config, Status::Enabling, state), unit)
    }

    /// Initiating entity: `<enable/>` went inside Bind 2 and `<enabled/>` came back in the
    /// SASL2 success (both counts ran from there: nothing was sent or received since).
    pub(crate) fn enabled_inline(
        config: SmConfig,
        jid: Option<String>,
        next_number: u64,
        enabled: InlineEnabled,
    ) -> (Self, Event) {
        let mut state = SmState::new(&config, next_number);
        state.jid = jid;
        state.id.clone_from(&enabled.id);
        state.max = enabled.max;
        state.location.clone_from(&enabled.location);
        let event = Event::SmEnabled {
            id: enabled.id,
            max: enabled.max,
            location: enabled.location,
        };
        (Session::with(config, Status::Enabled, state), event)
    }

    /// Either entity: a session resumed with `state`.
    pub(crate) fn resumed(config: SmConfig, state: SmState) -> Self {
        Session::with(config, Status::Enabled, state)
    }

    fn with(config: SmConfig, status: Status, state: SmState) -> Self {
        Session {
            config,
            status,
            state,
            unrequested: 0,
            unrequested_since: None,
        }
    }

    /// The state, for a later resumption or for the application, once the stream is over.
    pub(crate) fn into_state(self) -> Option<SmState> {
        match self.status {
            Status::Enabling | Status::Enabled => Some(self.state),
            Status::Offered { .. } | Status::Off => None,
        }
    }

    /// Both counts run (§4: from `<enable/>` sent, or `<enabled/>` sent).
    pub(crate) fn is_counting(&self) -> bool {
        matches!(self.status, Status::Enabling | Status::Enabled)
    }

    /// A stanza of the peer's was handled (§4).
    pub(crate) fn received_stanza(&mut self) {
        if self.is_counting() {
            self.state.count_handled();
        }
    }

    /// `element` goes out on the stream: a stanza is tracked (its number returned) and may
    /// be followed by `<r/>` (returned as well). Refused at the queue's bound.
    pub(crate) fn sending(
        &mut self,
        element: &str,
        now: Duration,
    ) -> Result<(Option<u64>, Option<&'static str>), SendError> {
        if !self.is_counting() || !is_stanza(element) {
            return Ok((None, None));
        }
        let number = self.state.track(element)?;
        self.unrequested += 1;
        self.unrequested_since.get_or_insert(now);
        let every = self.config.request_every;
        let request = (every > 0 && self.unrequested >= every).then(|| self.requested());
        Ok((Some(number), request))
    }

    fn requested(&mut self) -> &'static str {
        self.unrequested = 0;
        self.unrequested_since = None;
        element::REQUEST
    }

    /// When `<r/>` is due by time.
    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        let after = self.config.request_after?;
        self.unrequested_since.map(|since| since + after)
    }

    /// `<r/>` when it is due by time.
    pub(crate) fn handle_timeout(&mut self, now: Duration) -> Option<&'static str> {
        let due = self.poll_timeout()?;
        (now >= due).then(|| self.requested())
    }

    /// Stanzas resent after a resumption are tracked again: one `<r/>` covers them.
    pub(crate) fn resent(&mut self, count: usize, now: Duration) -> Option<&'static str> {
        if count == 0 {
            return None;
        }
        self.unrequested_since.get_or_insert(now);
        Some(self.requested())
    }

    /// A stream-management element arrived on the bound stream.
    pub(crate) fn handle(
        &mut self,
        nonza: Nonza,
        out: &mut VecDeque<Output>,
    ) -> Result<(), SmError> {
        match (nonza, &self.status) {
            (Nonza::Request, Status::Enabling | Status::Enabled) => {
                out.push_back(Output::Send(element::ack(self.state.handled)));
            }
            (Nonza::Ack { h }, Status::Enabling | Status::Enabled) => {
                let numbers = self.state.ack(h)?;
                if !numbers.is_empty() {
                    out.push_back(Output::Event(Event::Acked { h, numbers }));
                }
            }
            (Nonza::Enable { resume, .. }, Status::Offered { id }) => {
                // §3: both counts start now; §5: an id only for a resumable session.
                let id = (resume && self.config.resume).then(|| id.clone());
                let max = id.as_ref().and(self.config.max_resume);
                out.push_back(Output::Send(element::enabled(id.as_deref(), max)));
                self.state.id.clone_from(&id);
                self.state.max = max;
                self.status = Status::Enabled;
                out.push_back(Output::Event(Event::SmEnabled {
                    id,
                    max,
                    location: None,
                }));
            }
            (
                Nonza::Enabled {
                    id,
                    resume,
                    max,
                    location,
                },
                Status::Enabling,
            ) => {
                let id = id.filter(|_| resume);
                self.state.id.clone_from(&id);
                self.state.max = max;
                self.state.location.clone_from(&location);
                self.status = Status::Enabled;
                out.push_back(Output::Event(Event::SmEnabled { id, max, location }));
            }
            (Nonza::Failed { condition, .. }, Status::Enabling) => {
                // §3: no session. What went out since `<enable/>` is not acknowledged and
                // never will be: handed back.
                self.status = Status::Off;
                let next = self.state.next_number();
                let state = core::mem::replace(&mut self.state, SmState::new(&self.config, next));
                out.push_back(Output::Event(Event::SmFailed {
                    condition,
                    not_acknowledged: state.into_unacked(),
                }));
            }
            // §6: anything else is out of order (a second `<enable/>`, `<r/>` before
            // `<enable/>`, `<resume/>` on a bound stream).
            (Nonza::Enable { .. } | Nonza::Resume { .. } | Nonza::Request, _) => {
                out.push_back(Output::Send(element::failed("unexpected-request", None)));
            }
            // Answers we did not ask for: nothing to act on.
            (
                Nonza::Enabled { .. }
                | Nonza::Failed { .. }
                | Nonza::Resumed { .. }
                | Nonza::Ack { .. },
                _,
            ) => {
                warn!("an unexpected stream-management answer was ignored");
            }
        }
        Ok(())
    }
}

/// Whether `element` (as sent, unprefixed) is a stanza XEP-0198 counts: `<message/>`,
/// `<presence/>` or `<iq/>` (§4; nonzas and other elements are not counted).
pub(crate) fn is_stanza(element: &str) -> bool {
    let name = element
        .strip_prefix('<')
        .unwrap_or_default()
        .split(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
        .next()
        .unwrap_or_default();
    matches!(name, "message" | "presence" | "iq")
}

/// Whether `node` is a stanza the peer sent (§4): message, presence or iq in the stream's
/// content namespace.
pub(crate) fn is_received_stanza(node: roxmltree::Node<'_, '_>) -> bool {
    matches!(
        node.tag_name().namespace(),
        Some("jabber:client" | "jabber:server")
    ) && matches!(node.tag_name().name(), "message" | "presence" | "iq")
}

/// What [`crate::connection::Event::ResumeFailed`] reports for `not_resumed`: the stanzas
/// the server's `h` shows delivered, and the others with their texts.
pub(crate) fn not_resumed_report(not_resumed: NotResumed) -> Event {
    let NotResumed {
        mut state,
        h,
        condition,
    } = not_resumed;
    let next = state.next_number();
    // An `h` beyond what was sent proves nothing: then nothing is known delivered.
    let delivered = h.and_then(|h| state.ack(h).ok()).unwrap_or(next..next);
    let not_delivered: Vec<(u64, String)> = state.into_unacked();
    Event::ResumeFailed {
        h,
        condition,
        delivered,
        not_delivered,
    }
}

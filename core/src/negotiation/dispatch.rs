//! The outer loop both roles share: every frame the peer sends — a stream header (§4.7),
//! a top-level element parsed within the limits (§4.3.2 onward), whitespace (§4.6.1), the
//! closing tag (§4.4) — goes to the state that waits for it, and the state it returns
//! waits for the next. What each role does between frames (a restart, §6.4.6; the wait for
//! TLS, §5.4.2.3) and with each frame is its [`Role`].

use alloc::string::String;
use core::mem;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{StreamHeader, NS_STREAMS};
use crate::xml::element;
use crate::xml::framer::{Frame, Framer, Limits};
use crate::Error;

/// What the peer has sent on the current stream: the framer (with bytes not yet framed)
/// and the stream's header.
pub(crate) struct Inbound {
    pub(crate) framer: Framer,
    pub(crate) header: StreamHeader,
}

impl Inbound {
    pub(crate) fn new(framer: Framer) -> Self {
        Inbound {
            framer,
            header: StreamHeader::default(),
        }
    }

    /// A new stream on the same transport (§4.3.3, §5.4.3.3, §6.4.6): the old header is
    /// forgotten, a new one is awaited.
    pub(crate) fn restart(&mut self) {
        self.framer.restart();
        self.header = StreamHeader::default();
    }
}

/// One role's part in [`run`]: its states and what each does with a frame.
pub(crate) trait Role {
    /// The role's states, one per thing awaited.
    type State;
    /// The state after a failure: nothing more is read.
    const FAILED: Self::State;

    /// Before the next frame: what needs no input (a restart, the end of the
    /// negotiation, the wait for TLS). `Some` stops reading with that result.
    fn between_frames(
        &mut self,
        state: &mut Self::State,
        inbound: &mut Inbound,
    ) -> Option<Result<(), Error>>;

    /// The peer's stream header (§4.7).
    fn header(&mut self, state: Self::State, header: &StreamHeader) -> Result<Self::State, Error>;

    /// A top-level element, parsed.
    fn element(
        &mut self,
        state: Self::State,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<Self::State, Error>;

    /// Whitespace between elements (§4.6.1): allowed unless the state says otherwise.
    fn keepalive(&mut self, state: Self::State) -> Result<Self::State, Error> {
        Ok(state)
    }

    /// The peer's closing tag before the negotiation ended (§4.4): ours in answer.
    fn end(&mut self) -> Error;

    /// Answers a rule the peer broke with a stream error (§4.9) and reports it.
    fn stream_error(&mut self, error: StreamError) -> Error;
}

/// Feeds every complete frame in `inbound` to `role`, from `state` on, until the input
/// runs out (`Ok`), the role stops, or a frame fails (then `state` is [`Role::FAILED`]).
pub(crate) fn run<R: Role>(
    role: &mut R,
    state: &mut R::State,
    inbound: &mut Inbound,
    limits: &Limits,
) -> Result<(), Error> {
    loop {
        if let Some(done) = role.between_frames(state, inbound) {
            return done;
        }
        let current = mem::replace(state, R::FAILED);
        let frame = match inbound.framer.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                *state = current;
                return Ok(());
            }
            Err(e) => return Err(role.stream_error(e)),
        };
        *state = match frame {
            Frame::End => return Err(role.end()),
            Frame::KeepAlive => role.keepalive(current)?,
            Frame::Header(header) => {
                let next = role.header(current, &header);
                inbound.header = header;
                next?
            }
            Frame::Element(raw) => element::parse_within(raw, &inbound.header, limits, |node| {
                role.element(current, node)
            })
            .map_err(|e| role.stream_error(e))??,
        };
    }
}

/// A frame no state of the negotiation waits for: `<not-well-formed/>` (§4.9.3.13).
pub(crate) fn not_well_formed(text: &str) -> StreamError {
    StreamError::with_text(StreamErrorCondition::NotWellFormed, text)
}

/// `{namespace}name`, for error messages.
pub(crate) fn qualified_name(node: roxmltree::Node<'_, '_>) -> String {
    let mut s = String::new();
    if let Some(ns) = node.tag_name().namespace() {
        s.push('{');
        s.push_str(ns);
        s.push('}');
    }
    s.push_str(node.tag_name().name());
    s
}

/// Whether `node` is `<stream:name/>`.
pub(crate) fn is_streams(node: roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.tag_name().namespace() == Some(NS_STREAMS) && node.tag_name().name() == name
}

/// A stream error the peer sent, or its redirect (§4.9.3.19), which is never followed.
pub(crate) fn received_stream_error(node: roxmltree::Node<'_, '_>) -> Option<Error> {
    if !is_streams(node, "error") {
        return None;
    }
    let error = StreamError::parse(node);
    if error.condition == StreamErrorCondition::SeeOtherHost {
        let host = node
            .children()
            .find(|c| c.tag_name().name() == "see-other-host")
            .and_then(|c| c.text())
            .unwrap_or_default();
        return Some(Error::SeeOtherHost(String::from(host)));
    }
    Some(Error::StreamErrorReceived(error))
}

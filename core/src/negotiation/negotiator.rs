//! The negotiation phase of a [`Connection`](crate::connection::Connection): the trait both state
//! machines ([`crate::initiator`], [`crate::receiver`]) implement, and the outbox they write
//! into. A machine takes bytes and returns whole units to send (one header, one element, one
//! closing tag per item) and events; the connection drives it until
//! [`Event::Negotiated`], then carries the stream itself.

use alloc::collections::VecDeque;
use alloc::string::String;

use super::event::{Event, Step, TlsInfo};
use crate::sm::{SmStart, SmState};
use crate::stream::error::StreamError;
use crate::stream::header::{closing_tag, Framing, StreamHeader};
use crate::xml::framer::Framer;
use crate::Error;

/// The sans-IO surface of both roles.
pub trait Negotiator {
    /// Free space to read received bytes into; empty only when the peer overran the
    /// bound, which `received` then reports.
    fn receive_buffer(&mut self) -> &mut [u8];
    /// `n` bytes were written into [`Negotiator::receive_buffer`]: process what is complete.
    ///
    /// On `Err`, any stream error to send is already in the output: flush it, then close.
    fn received(&mut self, n: usize) -> Result<(), Error>;
    /// The next unit to send (a header, one element, a closing tag), oldest first.
    fn poll_transmit(&mut self) -> Option<String>;
    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Event>;
    /// The transport is now TLS (after [`Event::StartTls`]).
    fn tls_established(&mut self, info: TlsInfo) -> Result<(), Error>;
    /// The framer (with whatever it already holds) and the peer's current header, for
    /// the stanza phase once the negotiation is complete.
    fn into_parts(self) -> (Framer, StreamHeader);
    /// What the negotiation settled about stream management (XEP-0198), taken once it is
    /// complete, before [`Negotiator::into_parts`].
    fn stream_management(&mut self) -> SmStart;
    /// Receiving entity: resumes `state` for the `<resume/>` that waits (XEP-0198 §5), or
    /// gives it back (no `<resume/>` waits; not the session named, or not this peer's).
    /// An initiating entity never has one waiting.
    fn resume(&mut self, state: SmState) -> Option<SmState> {
        Some(state)
    }
    /// Receiving entity: refuses the `<resume/>` that waits; whether one waited.
    fn refuse_resume(&mut self) -> bool {
        false
    }
    /// Receiving entity: the bytes that follow came (`true`), or stopped coming (`false`),
    /// as TLS 1.3 early data (RFC 8446 §2.3), which an attacker may replay: only what
    /// XEP-0484 allows there is admitted. On `false`, early data that ended inside an
    /// element is an error (the rest of it would not be replay-protected).
    fn early_data(&mut self, _early: bool) -> Result<(), Error> {
        Ok(())
    }
    /// Initiating entity: the TLS handshake of a transport that carried our early data
    /// finished, and `info` (its channel-binding data among it) is known now.
    fn tls_confirmed(&mut self, _info: TlsInfo) {}
    /// Receiving server: the authoritative server's `verdict` on the dialback key that
    /// waits (XEP-0220 §2.1.4); whether one waited. An initiating entity never has one.
    #[cfg(feature = "dialback")]
    fn dialback_verdict(&mut self, _verdict: crate::dialback::Verdict) -> Result<bool, Error> {
        Ok(false)
    }
}

/// Units to send and events, waiting for the connection. Each `send` is one unit.
#[derive(Default)]
pub(crate) struct Outbox {
    out: VecDeque<String>,
    events: VecDeque<Event>,
}

impl Outbox {
    pub(crate) fn send(&mut self, s: &str) {
        self.out.push_back(String::from(s));
    }

    pub(crate) fn step(&mut self, step: Step) {
        debug!("step {:?}", step);
        self.events.push_back(Event::Step(step));
    }

    pub(crate) fn event(&mut self, event: Event) {
        self.events.push_back(event);
    }

    /// Sends `<stream:error>` and the closing tag (§4.9.1.1).
    pub(crate) fn stream_error(&mut self, framing: Framing, error: &StreamError) {
        let mut s = String::new();
        error.write(&mut s);
        self.out.push_back(s);
        self.send(closing_tag(framing));
    }

    pub(crate) fn transmit(&mut self) -> Option<String> {
        self.out.pop_front()
    }

    pub(crate) fn poll(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

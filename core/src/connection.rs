//! What both state machines share: the sans-IO surface a driver talks to (bytes in, bytes
//! and events out), and the outbox they write into.
//!
//! The shape follows quinn-proto: the machine never touches a transport. A driver copies
//! received bytes into [`Negotiator::receive_buffer`], calls [`Negotiator::received`],
//! writes [`Negotiator::pending_output`], and acts on [`Negotiator::poll_event`].

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use crate::sasl::{ChannelBindingData, Mechanism, MechanismSet, ScramCacheEntry};
use crate::stream::error::StreamError;
use crate::stream::features::StreamFeatures;
use crate::stream::header::{closing_tag, Framing, StreamHeader};
use crate::xml::framer::Framer;
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

/// What the driver must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The negotiation is complete: the stream is ready for what comes after the features
    /// handled so far.
    Negotiated(Outcome),
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
}

/// What the TLS layer tells the machine once the handshake is done.
#[derive(Debug, Clone, Default)]
pub struct TlsInfo {
    /// Channel-binding data for SCRAM `-PLUS` (RFC 9266 `tls-exporter`, RFC 5929
    /// `tls-server-end-point`).
    pub channel_binding: ChannelBindingData,
    /// The identity verified from the peer's certificate (receiving entity: for SASL
    /// EXTERNAL, §6.3.4 / §13.7.2.2).
    pub peer_identity: Option<String>,
}

/// The sans-IO surface of both roles.
pub trait Negotiator {
    /// Free space to read received bytes into; empty only when the peer overran the
    /// bound, which `received` then reports.
    fn receive_buffer(&mut self) -> &mut [u8];
    /// `n` bytes were written into [`Negotiator::receive_buffer`]: process what is complete.
    ///
    /// On `Err`, any stream error to send is already in the output: flush it, then close.
    fn received(&mut self, n: usize) -> Result<(), Error>;
    /// Bytes to send, oldest first.
    fn pending_output(&self) -> &[u8];
    /// `n` bytes of [`Negotiator::pending_output`] were sent.
    fn output_sent(&mut self, n: usize);
    /// The next event, if any.
    fn poll_event(&mut self) -> Option<Event>;
    /// The transport is now TLS (after [`Event::StartTls`]).
    fn tls_established(&mut self, info: TlsInfo) -> Result<(), Error>;
    /// The framer (with whatever it already holds) and the peer's current header, for
    /// the stanza phase once the negotiation is complete.
    fn into_parts(self) -> (Framer, StreamHeader);
}

/// Bytes and events waiting for the driver.
#[derive(Default)]
pub(crate) struct Outbox {
    out: Vec<u8>,
    sent: usize,
    events: VecDeque<Event>,
}

impl Outbox {
    pub(crate) fn send(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
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
        s.push_str(closing_tag(framing));
        self.send(&s);
    }

    pub(crate) fn pending(&self) -> &[u8] {
        &self.out[self.sent..]
    }

    pub(crate) fn consumed(&mut self, n: usize) {
        self.sent = (self.sent + n).min(self.out.len());
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
    }

    pub(crate) fn poll(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
}

//! The initiating entity (RFC 6120 §4–5): a client, or the connecting server on S2S.
//!
//! One struct per thing the machine waits for, in the order of the RFC:
//! [`ExpectHeader`] (§4.7) → [`ExpectFeatures`] (§4.3.2) → [`ExpectProceed`] (§5.4.2) →
//! TLS (§5.4.3, done by the driver) → [`ExpectHeader`] again on the protected stream →
//! [`ExpectFeatures`] → the next feature (SASL, §6).

use alloc::string::String;
use core::mem;

use crate::connection::{Event, Negotiator, Outbox, Outcome, Step};
use crate::starttls::{self, Answer, TlsPolicy};
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::features::StreamFeatures;
use crate::stream::header::{closing_tag, ContentNamespace, Framing, HeaderOut, StreamHeader};
use crate::xml::element;
use crate::xml::framer::{Frame, Framer, Limits};
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
    /// `from` (§4.7.1): the user's bare JID, or our server domain on S2S. Sent only on a
    /// protected stream, so it never leaks in plaintext.
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
        }
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

/// Waiting for the receiving entity's stream header (§4.7).
#[derive(Debug)]
pub struct ExpectHeader {
    secure: bool,
    starttls_sent: bool,
}

/// Waiting for `<stream:features/>` (§4.3.2).
#[derive(Debug)]
pub struct ExpectFeatures {
    secure: bool,
    starttls_sent: bool,
    stream_id: Option<String>,
}

/// Waiting for `<proceed/>` or `<failure/>` (§5.4.2).
#[derive(Debug)]
pub struct ExpectProceed;

#[derive(Debug)]
enum State {
    Header(ExpectHeader),
    Features(ExpectFeatures),
    Proceed(ExpectProceed),
    /// `<proceed/>` read: nothing more may be read or sent in plaintext (§5.4.2.3).
    AwaitTls,
    Negotiated,
    Failed,
}

struct Context<'a> {
    config: &'a InitiatorConfig,
    outbox: &'a mut Outbox,
}

impl Context<'_> {
    fn send_header(&mut self, secure: bool) {
        let mut s = String::new();
        HeaderOut {
            ns: self.config.ns,
            from: if secure {
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

    /// Sends a stream error for a rule the peer broke (§4.9) and reports it.
    fn stream_error(&mut self, error: StreamError) -> Error {
        self.outbox.stream_error(self.config.framing, &error);
        Error::StreamErrorSent(error)
    }
}

impl ExpectHeader {
    fn handle(self, cx: &mut Context<'_>, header: StreamHeader) -> Result<State, Error> {
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
        Ok(State::Features(ExpectFeatures {
            secure: self.secure,
            starttls_sent: self.starttls_sent,
            stream_id: header.id,
        }))
    }
}

impl ExpectFeatures {
    fn handle(self, cx: &mut Context<'_>, node: roxmltree::Node<'_, '_>) -> Result<State, Error> {
        if !is_streams(node, "features") {
            return Err(unexpected("<stream:features/>", node));
        }
        let features = StreamFeatures::parse(node);
        cx.outbox.step(Step::FeaturesReceived);
        if self.secure {
            // §5.4.3.3: the protected stream MUST NOT offer STARTTLS again. RFC 7395
            // streams never negotiate it, so an offer there is ignored (xmpp.js#807).
            if features.starttls.is_some() && cx.config.framing == Framing::Tcp {
                return Err(cx.close(Error::StartTlsAfterTls));
            }
            return Ok(next_feature(cx, features, self.stream_id, true));
        }
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
            (_, TlsPolicy::Optional | TlsPolicy::Disabled) => {
                Ok(next_feature(cx, features, self.stream_id, false))
            }
        }
    }
}

impl ExpectProceed {
    fn handle(self, cx: &mut Context<'_>, node: roxmltree::Node<'_, '_>) -> Result<State, Error> {
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

/// The seam after the features of a stream are known: the next feature to negotiate.
fn next_feature(
    cx: &mut Context<'_>,
    features: StreamFeatures,
    stream_id: Option<String>,
    secure: bool,
) -> State {
    cx.outbox.event(Event::Negotiated(Outcome {
        features,
        stream_id,
        secure,
    }));
    State::Negotiated
}

fn is_streams(node: roxmltree::Node<'_, '_>, name: &str) -> bool {
    node.tag_name().namespace() == Some(crate::stream::header::NS_STREAMS)
        && node.tag_name().name() == name
}

fn unexpected(expected: &'static str, node: roxmltree::Node<'_, '_>) -> Error {
    Error::UnexpectedElement {
        expected,
        got: qualified_name(node),
    }
}

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

/// The initiating entity. See the module docs.
pub struct InitiatingEntity {
    config: InitiatorConfig,
    framer: Framer,
    outbox: Outbox,
    state: State,
    peer_header: StreamHeader,
}

impl InitiatingEntity {
    /// Starts a negotiation: the first header (and `<starttls/>` when pipelined) is
    /// queued for sending at once.
    pub fn new(config: InitiatorConfig) -> Self {
        let framer = Framer::new(config.framing, config.limits);
        let mut outbox = Outbox::default();
        let secure = config.secure_transport || config.framing == Framing::WebSocket;
        let pipeline = !secure
            && config.pipeline_starttls
            && config.tls == TlsPolicy::Required
            && config.framing == Framing::Tcp;
        let mut cx = Context {
            config: &config,
            outbox: &mut outbox,
        };
        cx.send_header(secure);
        if pipeline {
            cx.send_starttls();
        }
        InitiatingEntity {
            framer,
            outbox,
            state: State::Header(ExpectHeader {
                secure,
                starttls_sent: pipeline,
            }),
            peer_header: StreamHeader::default(),
            config,
        }
    }

    /// The configuration this entity runs with.
    pub fn config(&self) -> &InitiatorConfig {
        &self.config
    }

    /// The framer, for the stanza phase after negotiation.
    pub fn into_parts(self) -> (Framer, StreamHeader) {
        (self.framer, self.peer_header)
    }

    fn process(&mut self) -> Result<(), Error> {
        loop {
            match self.state {
                State::AwaitTls => {
                    // §5.4.2.3: whatever followed `<proceed/>` was sent in plaintext
                    // and must never reach the TLS-protected stream.
                    if !self.framer.pending().is_empty() {
                        self.state = State::Failed;
                        return Err(Error::PlaintextAfterProceed);
                    }
                    return Ok(());
                }
                State::Negotiated | State::Failed => return Ok(()),
                _ => {}
            }
            let mut cx = Context {
                config: &self.config,
                outbox: &mut self.outbox,
            };
            let frame = match self.framer.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.state = State::Failed;
                    return Err(cx.stream_error(e));
                }
            };
            let state = mem::replace(&mut self.state, State::Failed);
            self.state = match (state, frame) {
                (_, Frame::End) => return Err(cx.close(Error::PeerClosed)),
                (State::Header(s), Frame::Header(h)) => {
                    self.peer_header = h.clone();
                    s.handle(&mut cx, h)?
                }
                // §5.3.3: no whitespace from `<starttls/>` to `<proceed/>`.
                (State::Proceed(_), Frame::KeepAlive) => {
                    return Err(cx.close(Error::WhitespaceDuringStartTls))
                }
                (state, Frame::KeepAlive) => state,
                (state, Frame::Element(raw)) => {
                    let header = &self.peer_header;
                    element::parse(raw, header, |node| {
                        if let Some(e) = received_stream_error(node) {
                            return Err(e);
                        }
                        match state {
                            State::Features(s) => s.handle(&mut cx, node),
                            State::Proceed(s) => s.handle(&mut cx, node),
                            _ => Err(unexpected("a stream header", node)),
                        }
                    })
                    .map_err(|e| cx.stream_error(e))??
                }
                (_, Frame::Header(_)) => {
                    return Err(cx.stream_error(StreamError::with_text(
                        StreamErrorCondition::NotWellFormed,
                        "unexpected stream header",
                    )))
                }
            };
        }
    }
}

impl Negotiator for InitiatingEntity {
    fn receive_buffer(&mut self) -> &mut [u8] {
        self.framer.free_space()
    }

    fn received(&mut self, n: usize) -> Result<(), Error> {
        self.framer.commit(n);
        self.process()
    }

    fn pending_output(&self) -> &[u8] {
        self.outbox.pending()
    }

    fn output_sent(&mut self, n: usize) {
        self.outbox.consumed(n);
    }

    fn poll_event(&mut self) -> Option<Event> {
        self.outbox.poll()
    }

    /// §5.4.3.3: forget everything learned before TLS (stream id, `from`, features) and
    /// open a new stream on the protected transport, without `</stream:stream>` first.
    fn tls_established(&mut self) -> Result<(), Error> {
        if !matches!(self.state, State::AwaitTls) {
            return Err(Error::UnexpectedElement {
                expected: "TLS only after <proceed/>",
                got: String::from("tls_established"),
            });
        }
        self.framer.restart();
        self.peer_header = StreamHeader::default();
        self.outbox.step(Step::TlsEstablished);
        let mut cx = Context {
            config: &self.config,
            outbox: &mut self.outbox,
        };
        cx.send_header(true);
        self.state = State::Header(ExpectHeader {
            secure: true,
            starttls_sent: false,
        });
        self.process()
    }
}

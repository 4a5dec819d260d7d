//! The receiving entity (RFC 6120 §4–5): a server accepting a client, or the accepting
//! server on S2S.
//!
//! In the order of the RFC: [`ExpectHeader`] (§4.7; answer with a fresh id and features,
//! §4.3.2) → [`ExpectStartTls`] (§5.4.2; answer `<proceed/>`) → TLS (§5.4.3, done by the
//! driver) → [`ExpectHeader`] on the protected stream (a new id, features without
//! STARTTLS) → the next feature (SASL, §6).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::mem;

use rand_core::{CryptoRng, RngCore};

use crate::connection::{Event, Negotiator, Outbox, Outcome, Step};
use crate::initiator::qualified_name;
use crate::starttls;
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::features::StreamFeatures;
use crate::stream::header::{closing_tag, ContentNamespace, Framing, HeaderOut, StreamHeader};
use crate::xml::element;
use crate::xml::framer::{Frame, Framer, Limits};
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
}

impl ReceiverConfig {
    /// A C2S server for `domain` over TCP that requires TLS.
    pub fn client_to_server(domain: &str) -> Self {
        ReceiverConfig {
            ns: ContentNamespace::Client,
            framing: Framing::Tcp,
            domains: alloc::vec![String::from(domain)],
            tls: TlsOffer::Required,
            secure_transport: false,
            limits: Limits::default(),
        }
    }

    /// An S2S server for `domain` over TCP that requires TLS.
    pub fn server_to_server(domain: &str) -> Self {
        ReceiverConfig {
            ns: ContentNamespace::Server,
            ..ReceiverConfig::client_to_server(domain)
        }
    }
}

/// Waiting for the initiating entity's stream header (§4.7).
#[derive(Debug)]
pub struct ExpectHeader {
    secure: bool,
}

/// Waiting for `<starttls/>` (§5.4.2) on a stream where TLS is still to come.
#[derive(Debug)]
pub struct ExpectStartTls {
    domain: String,
}

#[derive(Debug)]
enum State {
    Header(ExpectHeader),
    StartTls(ExpectStartTls),
    /// `<starttls/>` read; `<proceed/>` goes out only if nothing followed it.
    StartTlsReceived(String),
    /// `<proceed/>` queued: nothing more is read or sent in plaintext (§5.4.2.3).
    AwaitTls,
    Negotiated,
    Failed,
}

struct Context<'a, R> {
    config: &'a ReceiverConfig,
    outbox: &'a mut Outbox,
    rng: &'a mut R,
    header_sent: bool,
}

impl<R: RngCore + CryptoRng> Context<'_, R> {
    /// A new, unpredictable stream id for every header (§4.7.3, §4.3.3).
    fn fresh_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        let mut id = String::with_capacity(32);
        for b in bytes {
            let _ = write!(id, "{b:02x}");
        }
        id
    }

    fn send_header(&mut self, peer: &StreamHeader, from: Option<&str>) -> String {
        let id = self.fresh_id();
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
        id
    }

    /// Sends a stream error (§4.9); while the stream is being set up our header goes
    /// first (§4.9.1.2).
    fn stream_error(&mut self, error: StreamError) -> Error {
        if !self.header_sent {
            self.send_header(
                &StreamHeader::default(),
                self.config.domains.first().map(|d| d.as_str()),
            );
        }
        self.outbox.stream_error(self.config.framing, &error);
        Error::StreamErrorSent(error)
    }
}

impl ExpectHeader {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
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
        let tls_to_come = !self.secure && cx.config.framing == Framing::Tcp;
        let mut features = String::from("<stream:features>");
        let state = match (tls_to_come, cx.config.tls) {
            // §5.3.1: when TLS is mandatory, offer nothing else before it.
            (true, starttls_offer @ (TlsOffer::Required | TlsOffer::Optional)) => {
                features.push_str(if starttls_offer == TlsOffer::Required {
                    starttls::FEATURE_REQUIRED
                } else {
                    starttls::FEATURE_OPTIONAL
                });
                State::StartTls(ExpectStartTls { domain })
            }
            // §5.4.3.3: never STARTTLS on a protected stream.
            _ => {
                cx.outbox.event(Event::Negotiated(Outcome {
                    features: StreamFeatures::default(),
                    stream_id: None,
                    secure: self.secure,
                }));
                State::Negotiated
            }
        };
        features.push_str("</stream:features>");
        cx.outbox.send(&features);
        cx.outbox.step(Step::FeaturesSent);
        Ok(state)
    }
}

impl ExpectStartTls {
    fn handle<R: RngCore + CryptoRng>(
        self,
        cx: &mut Context<'_, R>,
        node: roxmltree::Node<'_, '_>,
    ) -> Result<State, Error> {
        if starttls::is_command(node) {
            cx.outbox.step(Step::StartTlsReceived);
            return Ok(State::StartTlsReceived(self.domain));
        }
        let condition = if is_stanza(node, cx.config.ns) {
            // §4.9.3.12: no stanzas before the stream is negotiated.
            StreamErrorCondition::NotAuthorized
        } else {
            // §5.3.1: TLS is mandatory before any other feature.
            StreamErrorCondition::PolicyViolation
        };
        let mut text = String::from("STARTTLS first, not ");
        text.push_str(&qualified_name(node));
        Err(cx.stream_error(StreamError::with_text(condition, &text)))
    }
}

/// Answers `<starttls/>` (§5.4.2.3), unless anything followed it: a ClientHello sent
/// before `<proceed/>`, or injected plaintext, is refused (§5.3.3).
fn proceed<R: RngCore + CryptoRng>(
    cx: &mut Context<'_, R>,
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

/// Domain names compare case-insensitively, a trailing dot ignored (RFC 7622 §3.2).
fn eq_domain(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// The receiving entity. See the module docs.
pub struct ReceivingEntity<R> {
    config: ReceiverConfig,
    framer: Framer,
    outbox: Outbox,
    state: State,
    rng: R,
    peer_header: StreamHeader,
    header_sent: bool,
}

impl<R: RngCore + CryptoRng> ReceivingEntity<R> {
    /// Waits for the initiating entity's header; stream ids come from `rng`.
    pub fn new(config: ReceiverConfig, rng: R) -> Self {
        let secure = config.secure_transport || config.framing == Framing::WebSocket;
        ReceivingEntity {
            framer: Framer::new(config.framing, config.limits),
            outbox: Outbox::default(),
            state: State::Header(ExpectHeader { secure }),
            rng,
            peer_header: StreamHeader::default(),
            header_sent: false,
            config,
        }
    }

    /// The initiating entity's current header (after TLS: the one sent over TLS only).
    pub fn peer_header(&self) -> &StreamHeader {
        &self.peer_header
    }

    fn process(&mut self) -> Result<(), Error> {
        loop {
            if matches!(
                self.state,
                State::AwaitTls | State::Negotiated | State::Failed
            ) {
                return Ok(());
            }
            let mut cx = Context {
                config: &self.config,
                outbox: &mut self.outbox,
                rng: &mut self.rng,
                header_sent: self.header_sent,
            };
            let result = match self.framer.next_frame() {
                Ok(None) => return Ok(()),
                Err(e) => Err(cx.stream_error(e)),
                Ok(Some(frame)) => {
                    let state = mem::replace(&mut self.state, State::Failed);
                    match (state, frame) {
                        (_, Frame::End) => {
                            cx.outbox.send(closing_tag(cx.config.framing));
                            Err(Error::PeerClosed)
                        }
                        (State::Header(s), Frame::Header(h)) => {
                            let r = s.handle(&mut cx, &h);
                            self.peer_header = h;
                            r
                        }
                        (state, Frame::KeepAlive) => Ok(state),
                        (State::StartTls(s), Frame::Element(raw)) => {
                            let header = &self.peer_header;
                            match element::parse(raw, header, |node| s.handle(&mut cx, node)) {
                                Ok(r) => r,
                                Err(e) => Err(cx.stream_error(e)),
                            }
                        }
                        _ => Err(cx.stream_error(StreamError::with_text(
                            StreamErrorCondition::NotWellFormed,
                            "unexpected data",
                        ))),
                    }
                }
            };
            let result = match result {
                Ok(State::StartTlsReceived(domain)) => {
                    proceed(&mut cx, domain, !self.framer.pending().is_empty())
                }
                other => other,
            };
            self.header_sent = cx.header_sent;
            match result {
                Ok(state) => self.state = state,
                Err(e) => {
                    self.state = State::Failed;
                    return Err(e);
                }
            }
        }
    }
}

impl<R: RngCore + CryptoRng> Negotiator for ReceivingEntity<R> {
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

    /// §5.4.3.3: forget what the initiating entity said before TLS (its `from`, its
    /// header) and wait for a new header on the protected stream.
    fn tls_established(&mut self) -> Result<(), Error> {
        if !matches!(self.state, State::AwaitTls) {
            return Err(Error::UnexpectedElement {
                expected: "TLS only after <proceed/>",
                got: String::from("tls_established"),
            });
        }
        self.framer.restart();
        self.peer_header = StreamHeader::default();
        self.header_sent = false;
        self.outbox.step(Step::TlsEstablished);
        self.state = State::Header(ExpectHeader { secure: true });
        self.process()
    }
}

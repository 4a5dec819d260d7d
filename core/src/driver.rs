//! An async driver that runs either role over an `embedded-io-async` transport, and the
//! trait through which a wrapper plugs in its TLS (rustls, embedded-tls, ...).
//!
//! The driver owns no policy: it moves bytes between the transport and a
//! [`Negotiator`], upgrades the transport when the machine says so (§5.4.2.3: right
//! after `<proceed/>`, with nothing read or written in between), and stops. Timeouts are
//! the wrapper's (wrap the future in its runtime's timeout), since core has no clock.

use alloc::string::ToString;
use core::fmt::Display;
use core::future::Future;
use core::mem;

use embedded_io::{ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};

use alloc::string::String;

use crate::connection::{Event, Negotiator, Outcome, Step, TlsInfo};
use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{closing_tag, Framing, StreamHeader};
use crate::xml::element;
use crate::xml::framer::{Frame, Framer};
use crate::Error;

/// Turns a plain transport into a TLS one (§5.4.3). The same trait serves both roles:
/// a client implementation connects as TLS client to `server_name` (SNI and the
/// reference identity), a server implementation accepts and picks its certificate for
/// `server_name` (the hosted domain the peer addressed).
#[allow(async_fn_in_trait)]
pub trait TlsUpgrade<T> {
    /// The protected transport.
    type Stream: Read + Write;
    /// Why a handshake failed.
    type Error: Display;
    /// Runs the TLS handshake over `transport`.
    async fn upgrade(
        &mut self,
        transport: T,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error>;

    /// The text of [`Error::TlsHandshake`] for a failed handshake: `error`'s `Display`
    /// text, unless the backend keeps it short (the embedded-tls backend with the
    /// `terse-errors` feature, where the typed error goes to the log instead).
    fn describe(error: &Self::Error) -> String {
        error.to_string()
    }

    /// What the handshake established: channel-binding data for SCRAM `-PLUS` and, on
    /// the server side, the identity of a verified client certificate (SASL EXTERNAL).
    /// The default offers neither.
    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        let _ = stream;
        TlsInfo::default()
    }
}

/// The [`TlsUpgrade`] of a transport that never starts TLS: RFC 7395 WebSocket streams
/// (TLS belongs to the WebSocket, `wss://`; the initiating entity never sends
/// `<starttls/>` there) and streams whose TLS was set up before the negotiation (Direct
/// TLS, XEP-0368, with `secure_transport`). An upgrade request is refused.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTls;

impl<T: Read + Write> TlsUpgrade<T> for NoTls {
    type Stream = T;
    type Error = &'static str;

    async fn upgrade(&mut self, _transport: T, _server_name: &str) -> Result<T, Self::Error> {
        Err("this transport does not start TLS")
    }
}

/// A transport that may have been upgraded to TLS.
pub enum MaybeTls<T, S> {
    /// Not (yet) protected.
    Plain(T),
    /// TLS-protected.
    Tls(S),
    /// Lost in a failed upgrade.
    Closed,
}

/// The error of a [`MaybeTls`]: the kind of the underlying error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportError(pub ErrorKind);

impl core::fmt::Display for TransportError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "transport error: {:?}", self.0)
    }
}

impl core::error::Error for TransportError {}

impl embedded_io::Error for TransportError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl<T: ErrorType, S: ErrorType> ErrorType for MaybeTls<T, S> {
    type Error = TransportError;
}

fn kind<E: embedded_io::Error>(e: E) -> TransportError {
    TransportError(e.kind())
}

impl<T: Read, S: Read> Read for MaybeTls<T, S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        match self {
            MaybeTls::Plain(t) => t.read(buf).await.map_err(kind),
            MaybeTls::Tls(s) => s.read(buf).await.map_err(kind),
            MaybeTls::Closed => Err(TransportError(ErrorKind::NotConnected)),
        }
    }
}

impl<T: Write, S: Write> Write for MaybeTls<T, S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        match self {
            MaybeTls::Plain(t) => t.write(buf).await.map_err(kind),
            MaybeTls::Tls(s) => s.write(buf).await.map_err(kind),
            MaybeTls::Closed => Err(TransportError(ErrorKind::NotConnected)),
        }
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        match self {
            MaybeTls::Plain(t) => t.flush().await.map_err(kind),
            MaybeTls::Tls(s) => s.flush().await.map_err(kind),
            MaybeTls::Closed => Err(TransportError(ErrorKind::NotConnected)),
        }
    }
}

/// Sees what the driver does, for transcripts and progress displays.
pub trait Observer {
    /// Bytes written to the transport (plaintext side of TLS).
    fn sent(&mut self, _bytes: &[u8]) {}
    /// Bytes read from the transport (plaintext side of TLS).
    fn received(&mut self, _bytes: &[u8]) {}
    /// A negotiation step happened.
    fn step(&mut self, _step: Step) {}
    /// The TLS handshake is done (before the restart).
    fn tls_established(&mut self) {}
}

impl Observer for () {}

/// A negotiated stream: the transport, the machine (for the stanza phase) and the outcome.
pub struct Negotiated<T, S, M> {
    /// The transport, TLS-protected unless the policy allowed plaintext.
    pub transport: MaybeTls<T, S>,
    /// The machine, holding the framer and anything it buffered.
    pub machine: M,
    /// How the negotiation ended.
    pub outcome: Outcome,
}

/// Runs `machine` over `transport` until the negotiation completes or fails.
///
/// On failure any stream error the machine queued is sent (best effort) before the
/// transport is dropped; a TLS failure sends nothing more (§5.4.3.2).
pub async fn negotiate<T, U, M, O>(
    transport: T,
    tls: &mut U,
    mut machine: M,
    observer: &mut O,
) -> Result<Negotiated<T, U::Stream, M>, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
{
    let mut io = MaybeTls::Plain(transport);
    let outcome = negotiate_in_place(&mut io, tls, &mut machine, observer).await?;
    Ok(Negotiated {
        transport: io,
        machine,
        outcome,
    })
}

/// [`negotiate`] on a transport and a machine the caller keeps where they are: the
/// future holds references only, and the TLS stream is written into `io` in place. On a
/// microcontroller every move of a large value inside an `async fn` (a future built and
/// then moved, a TLS stream returned through nested `Result`s) costs a stack copy; this
/// form avoids them. `io` starts as [`MaybeTls::Plain`]; afterwards it is the transport
/// for [`Session::new`] (as [`Negotiated::transport`]), or [`MaybeTls::Closed`] after a
/// failed TLS handshake.
pub async fn negotiate_in_place<T, U, M, O>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    machine: &mut M,
    observer: &mut O,
) -> Result<Outcome, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
{
    loop {
        flush(io, machine, observer).await?;
        if let Some(event) = machine.poll_event() {
            match event {
                Event::Step(step) => observer.step(step),
                Event::StartTls { server_name } => {
                    upgrade(io, tls, &server_name).await?;
                    observer.tls_established();
                    let info = match &*io {
                        MaybeTls::Tls(stream) => tls.tls_info(stream),
                        _ => TlsInfo::default(),
                    };
                    let result = machine.tls_established(info);
                    finish_step(io, machine, observer, result).await?;
                }
                Event::Negotiated(outcome) => return Ok(outcome),
            }
            continue;
        }
        let buf = machine.receive_buffer();
        let n = io.read(buf).await.map_err(|e| Error::Transport(e.0))?;
        if n == 0 {
            return Err(Error::ConnectionClosed);
        }
        observer.received(&buf[..n]);
        let result = machine.received(n);
        finish_step(io, machine, observer, result).await?;
    }
}

/// Replaces the plain transport in `io` with the TLS stream the handshake returns.
async fn upgrade<T, U>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    server_name: &str,
) -> Result<(), Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
{
    let MaybeTls::Plain(plain) = io.take() else {
        return Err(Error::StartTlsAfterTls);
    };
    match tls.upgrade(plain, server_name).await {
        Ok(stream) => {
            *io = MaybeTls::Tls(stream);
            Ok(())
        }
        Err(e) => Err(Error::TlsHandshake(U::describe(&e))),
    }
}

/// After the machine processed input: on error, send what it queued (a stream error) and
/// report the error; otherwise go on.
async fn finish_step<T, S, M, O>(
    io: &mut MaybeTls<T, S>,
    machine: &mut M,
    observer: &mut O,
    result: Result<(), Error>,
) -> Result<(), Error>
where
    T: Read + Write,
    S: Read + Write,
    M: Negotiator,
    O: Observer + ?Sized,
{
    if let Err(e) = result {
        while let Some(Event::Step(step)) = machine.poll_event() {
            observer.step(step);
        }
        let _ = flush(io, machine, observer).await;
        return Err(e);
    }
    Ok(())
}

async fn flush<T, S, M, O>(
    io: &mut MaybeTls<T, S>,
    machine: &mut M,
    observer: &mut O,
) -> Result<(), Error>
where
    T: Read + Write,
    S: Read + Write,
    M: Negotiator,
    O: Observer + ?Sized,
{
    let mut wrote = false;
    while !machine.pending_output().is_empty() {
        let out = machine.pending_output();
        let n = io.write(out).await.map_err(|e| Error::Transport(e.0))?;
        if n == 0 {
            return Err(Error::ConnectionClosed);
        }
        observer.sent(&out[..n]);
        machine.output_sent(n);
        wrote = true;
    }
    if wrote {
        io.flush().await.map_err(|e| Error::Transport(e.0))?;
    }
    Ok(())
}

impl<T, S> MaybeTls<T, S> {
    /// Whether the transport is TLS-protected.
    pub fn is_tls(&self) -> bool {
        matches!(self, MaybeTls::Tls(_))
    }

    /// Moves the transport out.
    pub fn take(&mut self) -> MaybeTls<T, S> {
        mem::replace(self, MaybeTls::Closed)
    }
}

/// A negotiated stream in its stanza phase (RFC 6120 §8): send and receive top-level
/// elements, then close (§4.4).
pub struct Session<T, S> {
    transport: MaybeTls<T, S>,
    framer: Framer,
    header: StreamHeader,
    framing: Framing,
    peer_closed: bool,
    bytes_received: u64,
    /// How the negotiation ended (bound JID, mechanism, ...).
    pub outcome: Outcome,
}

impl<T: Read + Write, S: Read + Write> Session<T, S> {
    /// Takes over a negotiated stream, with anything the machine already buffered.
    pub fn new<M: Negotiator>(negotiated: Negotiated<T, S, M>) -> Self {
        let (framer, header) = negotiated.machine.into_parts();
        Session {
            transport: negotiated.transport,
            framing: framer.framing(),
            framer,
            header,
            peer_closed: false,
            bytes_received: 0,
            outcome: negotiated.outcome,
        }
    }

    /// The transport (to read TLS details, or to close it).
    pub fn transport(&self) -> &MaybeTls<T, S> {
        &self.transport
    }

    /// The peer's stream header.
    pub fn peer_header(&self) -> &StreamHeader {
        &self.header
    }

    /// How the stream is carried (TCP or RFC 7395 WebSocket): what a closing tag or a
    /// stream error must end with ([`closing_tag`]).
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// Bytes read from the transport in the stanza phase so far.
    pub fn bytes_received(&self) -> u64 {
        self.bytes_received
    }

    /// Whether the peer is between top-level elements: nothing of an incomplete element
    /// is buffered. With [`Session::bytes_received`], a wrapper's idle timeout tells a
    /// whitespace keep-alive (§4.6.1) from a stanza dribbled byte by byte.
    pub fn between_elements(&self) -> bool {
        self.framer.pending().is_empty()
    }

    /// Sends one top-level element (a stanza built with [`crate::stanza`]).
    /// On an RFC 7395 stream it gets `xmlns='jabber:client'` unless it declares a default
    /// namespace ([`crate::stanza::qualified`]).
    pub async fn send(&mut self, element: &str) -> Result<(), Error> {
        let element = crate::stanza::qualified(element, self.framing);
        self.write(&element).await
    }

    /// Writes `text` as it is (stream errors, closing tags).
    async fn write(&mut self, text: &str) -> Result<(), Error> {
        let io = &mut self.transport;
        io.write_all(text.as_bytes())
            .await
            .map_err(|e| Error::Transport(e.0))?;
        io.flush().await.map_err(|e| Error::Transport(e.0))
    }

    /// The next top-level element, as raw text; `None` once the peer closed the stream
    /// (§4.4). Whitespace keep-alives are skipped. A rule the peer breaks is answered
    /// with a stream error and reported; a stream error it sends is reported.
    ///
    /// An element whose parse would need more than [`crate::xml::framer::Limits::max_parse_bytes`]
    /// ([`element::parse_cost`]) is skipped unparsed and reported as
    /// [`Error::ElementSkipped`]; the session stays usable (call again). Everything else
    /// that is an `Err` ends the session.
    pub async fn next_element(&mut self) -> Result<Option<String>, Error> {
        self.next_element_with(|raw, _| String::from(raw)).await
    }

    /// As [`Session::next_element`], but `f` gets the element where the framer holds it,
    /// as raw text and parsed (the parse that checks it for a stream error, §4.9), and
    /// what it returns is the result: no copy of the element, no second parse. On a
    /// device with a small heap that is the element's size less at the peak.
    pub async fn next_element_with<R>(
        &mut self,
        f: impl FnOnce(&str, roxmltree::Node<'_, '_>) -> R,
    ) -> Result<Option<R>, Error> {
        let Some(wrapped) = self.next_wrapped().await? else {
            return Ok(None);
        };
        let parsed = wrapped.parse(|node| match crate::initiator::received_stream_error(node) {
            Some(e) => Err(e),
            None => Ok(f(wrapped.raw(), node)),
        });
        match parsed {
            Ok(Ok(r)) => Ok(Some(r)),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(self.fail(e).await),
        }
    }

    /// The next top-level element for [`Session::next_element_with`], wrapped for its
    /// parse; `None` once the peer closed the stream. Not generic, unlike its caller: one
    /// copy of the read loop however many callers.
    async fn next_wrapped(&mut self) -> Result<Option<element::Wrapped>, Error> {
        if self.peer_closed {
            return Ok(None);
        }
        let limits = self.framer.limits();
        loop {
            match self.framer.next_frame() {
                Ok(Some(Frame::Element(raw))) => {
                    // §13.12: an element too costly to parse is skipped, not parsed; the
                    // framer is already past it, so the stream stays in step.
                    return match element::wrap(raw, &self.header, &limits) {
                        Ok(wrapped) => Ok(Some(wrapped)),
                        Err(cost) => Err(Error::ElementSkipped {
                            cost,
                            allowed: limits.max_parse_bytes,
                        }),
                    };
                }
                Ok(Some(Frame::End)) => {
                    self.peer_closed = true;
                    return Ok(None);
                }
                Ok(Some(Frame::KeepAlive)) => continue,
                Ok(Some(Frame::Header(_))) => {
                    let e = StreamError::with_text(
                        StreamErrorCondition::NotWellFormed,
                        "unexpected stream header",
                    );
                    return Err(self.fail(e).await);
                }
                Err(e) => return Err(self.fail(e).await),
                Ok(None) => {}
            }
            let n = self
                .transport
                .read(self.framer.free_space())
                .await
                .map_err(|e| Error::Transport(e.0))?;
            if n == 0 {
                return Err(Error::ConnectionClosed);
            }
            self.bytes_received += n as u64;
            self.framer.commit(n);
        }
    }

    async fn fail(&mut self, error: StreamError) -> Error {
        let mut out = String::new();
        error.write(&mut out);
        out.push_str(closing_tag(self.framing));
        let _ = self.write(&out).await;
        Error::StreamErrorSent(error)
    }

    /// Closes the stream (§4.4): sends our closing tag, then, unless the peer closed
    /// first, reads until its closing tag (elements still arriving are dropped), so
    /// everything we sent is known processed. Returns the transport for the wrapper to
    /// end TLS (close_notify) and the connection.
    ///
    /// Not an `async fn`: its by-value `self` would be held twice in the future (the
    /// argument and the local it is moved into); the `async move` block keeps one.
    #[allow(clippy::manual_async_fn)]
    pub fn close(mut self) -> impl Future<Output = Result<MaybeTls<T, S>, Error>> {
        async move {
            self.write(closing_tag(self.framing)).await?;
            loop {
                match self.next_element_with(|_, _| ()).await {
                    Ok(Some(())) | Err(Error::ElementSkipped { .. }) => {}
                    Ok(None) => break,
                    Err(e) => return Err(e),
                }
            }
            Ok(self.transport)
        }
    }
}

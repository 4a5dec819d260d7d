//! A thin async loop over a [`Connection`] for `embedded-io-async` transports, and the
//! trait through which a wrapper plugs in its TLS (rustls, embedded-tls, ...).
//!
//! The driver owns no policy: it moves bytes between the transport and the connection,
//! upgrades the transport when the connection says so (§5.4.2.3: right after
//! `<proceed/>`, with nothing read or written in between), and tells it the time from a
//! [`Clock`]. Every rule and every timer is the connection's.

use alloc::string::String;
use core::fmt::Display;
use core::future::{poll_fn, Future};
use core::mem;
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use embedded_io::{Error as _, ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};

use crate::connection::{Closed, Connection, Event, Negotiator, Outcome, Stanza, Step, TlsInfo};
#[cfg(feature = "dialback")]
use crate::dialback::{Dialback, Verdict};
use crate::sm::SmState;
use crate::{Error, TlsError};

/// Turns a plain transport into a TLS one (§5.4.3). The same trait serves both roles:
/// a client implementation connects as TLS client to `server_name` (SNI and the
/// reference identity), a server implementation accepts and picks its certificate for
/// `server_name` (the hosted domain the peer addressed).
#[allow(async_fn_in_trait)]
pub trait TlsUpgrade<T> {
    /// The protected transport.
    type Stream: Read + Write;
    /// Why a handshake failed, in the backend's terms ([`TlsUpgrade::classify`] maps it).
    type Error: Display;
    /// Runs the TLS handshake over `transport`.
    async fn upgrade(
        &mut self,
        transport: T,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error>;

    /// The typed failure of [`Error::Tls`] for a failed handshake: the certificate policy's
    /// refusal ([`TlsError::Certificate`], the verdict itself, not read back from the
    /// verifier afterwards), the peer's alert, an I/O failure, ... A backend that knows no
    /// better returns [`TlsError::Other`] with `error`'s text; a wrapper forwards to the
    /// upgrade it wraps. Required, so that no wrapper loses the type by forgetting it.
    fn classify(error: Self::Error) -> TlsError;

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
        Err("this transport does not start TLS; TLS belongs to the WebSocket or was set up before the stream")
    }

    fn classify(error: Self::Error) -> TlsError {
        TlsError::Config(error)
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

/// The wrapper's monotonic clock: `now` is what the connection's `now` parameters get.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The time since an origin that stays fixed for the connection's life.
    fn now(&self) -> Duration;
    /// Completes at `at` (as [`Clock::now`] counts), or at once if that has passed.
    async fn sleep_until(&self, at: Duration);
}

/// What a race between the transport, a timer and the application ended with.
enum Woke<R, C> {
    Read(R),
    Command(C),
    Timer,
}

/// Polls `read`, `command` and `timer` together; the first to complete wins. The others are
/// dropped: `command` and `timer` must be cancel-safe (a channel's receive, a sleep), and so
/// must `read` unless the caller keeps it (as [`run`] does).
async fn race<R, C>(
    mut read: core::pin::Pin<&mut impl Future<Output = R>>,
    command: impl Future<Output = C>,
    timer: impl Future<Output = ()>,
) -> Woke<R, C> {
    let mut command = pin!(command);
    let mut timer = pin!(timer);
    poll_fn(|cx| {
        if let Poll::Ready(r) = read.as_mut().poll(cx) {
            return Poll::Ready(Woke::Read(r));
        }
        if let Poll::Ready(c) = command.as_mut().poll(cx) {
            return Poll::Ready(Woke::Command(c));
        }
        if let Poll::Ready(()) = timer.as_mut().poll(cx) {
            return Poll::Ready(Woke::Timer);
        }
        Poll::Pending
    })
    .await
}

/// Sleeps until `at`, or forever when there is no timer.
async fn timer<C: Clock>(clock: &C, at: Option<Duration>) {
    match at {
        Some(at) => clock.sleep_until(at).await,
        None => core::future::pending().await,
    }
}

/// A server's detached stream-management sessions (XEP-0198 §5), for
/// [`negotiate_with_sessions`]: where `<resume/>` finds the session it names.
#[allow(async_fn_in_trait)]
pub trait SessionTable {
    /// Takes the detached session `previd` out of the table, if it is there and not
    /// expired. A server that has not yet seen the session's old link die may end that
    /// link and take the session from it (XEP-0198 §5; Prosody's mod_smacks closes the old
    /// connection), but only for `account`, the bare JID the client authenticated as.
    async fn take(&mut self, previd: &str, account: Option<&str>) -> Option<SmState>;
    /// A session taken that this peer may not resume (not its account): back it goes.
    fn put_back(&mut self, state: SmState);
}

/// No sessions: every `<resume/>` is answered `<failed/>` (`<item-not-found/>`).
impl SessionTable for () {
    async fn take(&mut self, _previd: &str, _account: Option<&str>) -> Option<SmState> {
        None
    }
    fn put_back(&mut self, _state: SmState) {}
}

/// A receiving server's way to the authoritative servers of other domains, for
/// [`negotiate_with_authority`]: Server Dialback's `<db:verify/>` (XEP-0220 §2.1.2).
#[cfg(feature = "dialback")]
#[allow(async_fn_in_trait)]
pub trait DialbackAuthority {
    /// Asks the authoritative server of `verify.to` (found as for any stanza to that
    /// domain) whether the key is its own; its answer, or an error verdict
    /// (`remote-server-not-found`, `remote-server-timeout`) when it could not be asked.
    async fn verify(&mut self, verify: &Dialback) -> Verdict;
}

/// No way out: every dialback key gets `remote-server-not-found` (a server that does not
/// configure dialback never asks).
#[cfg(feature = "dialback")]
impl DialbackAuthority for () {
    async fn verify(&mut self, _verify: &Dialback) -> Verdict {
        Verdict::Error(String::from("remote-server-not-found"))
    }
}

/// As [`negotiate_with_sessions`] without a session table (a client, or a server that
/// keeps no detached sessions).
pub async fn negotiate<T, U, M, O, C>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    connection: &mut Connection<M>,
    observer: &mut O,
    clock: &C,
) -> Result<Outcome, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
    C: Clock,
{
    negotiate_with_sessions(io, tls, connection, observer, clock, &mut ()).await
}

/// The authority `negotiation` asks about dialback keys: a [`DialbackAuthority`]; in a
/// build without the `dialback` feature, none (`()`), and nothing asks.
#[cfg(feature = "dialback")]
trait Authority: DialbackAuthority {}
#[cfg(feature = "dialback")]
impl<A: DialbackAuthority + ?Sized> Authority for A {}
#[cfg(not(feature = "dialback"))]
trait Authority {}
#[cfg(not(feature = "dialback"))]
impl Authority for () {}

/// Runs the negotiation of `connection` over `io` until it reports [`Event::Negotiated`]
/// (the outcome is returned; stanzas the peer pipelined behind it stay queued in the
/// connection) or the stream ends (the error is returned, after whatever the connection
/// queued, a stream error say, was sent).
///
/// `io` starts as [`MaybeTls::Plain`] (or as the TLS stream of a Direct TLS connection);
/// the TLS stream is written into it in place, so that on a microcontroller no large value
/// moves inside the future. After a failed TLS handshake it is [`MaybeTls::Closed`].
///
/// A receiving entity with stream management answers `<resume/>` (XEP-0198 §5) from
/// `sessions`.
pub async fn negotiate_with_sessions<T, U, M, O, C, S>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    connection: &mut Connection<M>,
    observer: &mut O,
    clock: &C,
    sessions: &mut S,
) -> Result<Outcome, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
    C: Clock,
    S: SessionTable + ?Sized,
{
    negotiation(io, tls, connection, observer, clock, sessions, &mut ()).await
}

/// As [`negotiate_with_sessions`]; a receiving server asks `authority` about dialback keys
/// (XEP-0220 §2.1.2), within the negotiation deadline (the stream is not read meanwhile).
#[cfg(feature = "dialback")]
pub async fn negotiate_with_authority<T, U, M, O, C, S, A>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    connection: &mut Connection<M>,
    observer: &mut O,
    clock: &C,
    sessions: &mut S,
    authority: &mut A,
) -> Result<Outcome, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
    C: Clock,
    S: SessionTable + ?Sized,
    A: DialbackAuthority + ?Sized,
{
    negotiation(io, tls, connection, observer, clock, sessions, authority).await
}

/// [`negotiate_with_sessions`], asking `authority` about dialback keys.
#[cfg_attr(not(feature = "dialback"), allow(unused_variables))]
async fn negotiation<T, U, M, O, C, S, A>(
    io: &mut MaybeTls<T, U::Stream>,
    tls: &mut U,
    connection: &mut Connection<M>,
    observer: &mut O,
    clock: &C,
    sessions: &mut S,
    authority: &mut A,
) -> Result<Outcome, Error>
where
    T: Read + Write,
    U: TlsUpgrade<T>,
    M: Negotiator,
    O: Observer + ?Sized,
    C: Clock,
    S: SessionTable + ?Sized,
    A: Authority + ?Sized,
{
    loop {
        flush(io, connection, observer, clock).await?;
        if let Some(event) = connection.poll_event() {
            match event {
                Event::Step(step) => observer.step(step),
                Event::StartTls { server_name } => {
                    let deadline = connection.poll_timeout();
                    let woke = {
                        let handshake = pin!(upgrade(io, tls, &server_name));
                        race(
                            handshake,
                            core::future::pending::<()>(),
                            timer(clock, deadline),
                        )
                        .await
                    };
                    match woke {
                        Woke::Read(Ok(())) => {
                            observer.tls_established();
                            let info = match &*io {
                                MaybeTls::Tls(stream) => tls.tls_info(stream),
                                _ => TlsInfo::default(),
                            };
                            connection.handle_tls_established(info, clock.now());
                        }
                        Woke::Read(Err(e)) => connection.handle_tls_failed(e),
                        Woke::Command(()) | Woke::Timer => {
                            connection.handle_tls_failed(Error::Timeout)
                        }
                    }
                }
                Event::Negotiated(outcome) => return Ok(outcome),
                // The error is moved out: no copy of `Error`'s clone in a small image.
                Event::Closed(Closed::Failed(e)) => return Err(e),
                Event::Closed(_) => return Err(Error::PeerClosed),
                Event::ResumeRequested {
                    previd, account, ..
                } => answer_resume(connection, sessions, &previd, account.as_deref(), clock).await,
                #[cfg(feature = "dialback")]
                Event::DialbackRequested { verify } => {
                    let deadline = connection.poll_timeout();
                    let woke = {
                        let asked = pin!(authority.verify(&verify));
                        race(asked, core::future::pending::<()>(), timer(clock, deadline)).await
                    };
                    match woke {
                        Woke::Read(verdict) => connection.dialback_verdict(verdict, clock.now()),
                        Woke::Command(()) | Woke::Timer => connection.handle_timeout(clock.now()),
                    }
                }
                // Not before `Negotiated`.
                Event::Stanza(_)
                | Event::ElementSkipped { .. }
                | Event::SmEnabled { .. }
                | Event::SmFailed { .. }
                | Event::Acked { .. }
                | Event::Resumed { .. }
                | Event::ResumeFailed { .. } => {}
            }
            continue;
        }
        let deadline = connection.poll_timeout();
        // A read cancelled by the deadline ends the stream: nothing is lost that matters.
        let woke = {
            let buf = connection.receive_buffer();
            let read = pin!(io.read(buf));
            race(read, core::future::pending::<()>(), timer(clock, deadline)).await
        };
        match woke {
            Woke::Read(Ok(0)) if !connection.receive_buffer().is_empty() => {
                connection.handle_eof(None)
            }
            Woke::Read(Ok(n)) => {
                // The bytes are where the read put them until `handle_received`.
                observer.received(connection.receive_buffer().get(..n).unwrap_or_default());
                connection.handle_received(n, clock.now());
            }
            Woke::Read(Err(e)) => connection.handle_eof(Some(Error::Transport(e.0))),
            Woke::Command(()) | Woke::Timer => connection.handle_timeout(clock.now()),
        }
    }
}

/// Answers a `<resume/>` (XEP-0198 §5) of `account` naming `previd` from `sessions`: the
/// session resumed, or given back when it is not this peer's, or `<failed/>` when it is
/// not there.
pub async fn answer_resume<M, S, C>(
    connection: &mut Connection<M>,
    sessions: &mut S,
    previd: &str,
    account: Option<&str>,
    clock: &C,
) where
    M: Negotiator,
    S: SessionTable + ?Sized,
    C: Clock,
{
    let taken = sessions.take(previd, account).await;
    let now = clock.now();
    match taken {
        Some(state) => {
            if let Some(state) = connection.resume(state, now) {
                sessions.put_back(state);
            }
        }
        None => {
            connection.refuse_resume(now);
        }
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
        Err(e) => Err(Error::Tls(U::classify(e))),
    }
}

/// Writes everything the connection has to send: over TCP in one write (pipelined units
/// leave together), on a message transport one write per unit. A write blocked longer than
/// [`Timeouts::write`](crate::connection::Timeouts) (the peer stopped reading) fails with
/// [`Error::Transport`] `TimedOut`.
async fn flush<W, M, O, C>(
    io: &mut W,
    connection: &mut Connection<M>,
    observer: &mut O,
    clock: &C,
) -> Result<(), Error>
where
    W: Write,
    M: Negotiator,
    O: Observer + ?Sized,
    C: Clock,
{
    let deadline = connection.timeouts().write.map(|limit| clock.now() + limit);
    let write = pin!(write_pending(io, connection, observer));
    match race(write, core::future::pending::<()>(), timer(clock, deadline)).await {
        Woke::Read(result) => result,
        Woke::Command(()) | Woke::Timer => Err(Error::Transport(ErrorKind::TimedOut)),
    }
}

async fn write_pending<W, M, O>(
    io: &mut W,
    connection: &mut Connection<M>,
    observer: &mut O,
) -> Result<(), Error>
where
    W: Write,
    M: Negotiator,
    O: Observer + ?Sized,
{
    let mut wrote = false;
    let tcp = connection.framing() == crate::stream::header::Framing::Tcp;
    let mut batch = String::new();
    while let Some(unit) = connection.poll_transmit() {
        if tcp {
            batch.push_str(&unit);
            continue;
        }
        write_all(io, unit.as_bytes(), observer).await?;
        wrote = true;
    }
    if !batch.is_empty() {
        write_all(io, batch.as_bytes(), observer).await?;
        wrote = true;
    }
    if wrote {
        io.flush().await.map_err(|e| Error::Transport(e.kind()))?;
    }
    Ok(())
}

async fn write_all<W: Write, O: Observer + ?Sized>(
    io: &mut W,
    mut data: &[u8],
    observer: &mut O,
) -> Result<(), Error> {
    while !data.is_empty() {
        let n = io
            .write(data)
            .await
            .map_err(|e| Error::Transport(e.kind()))?;
        if n == 0 {
            return Err(Error::ConnectionClosed);
        }
        observer.sent(data.get(..n).unwrap_or_default());
        data = data.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// What the application asks of a bound stream in [`run`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this stanza ([`Connection::send_stanza`]).
    Send(String),
    /// Close the stream (§4.4, [`Connection::close`]).
    Close,
    /// End the stream with this error (§4.9, [`Connection::stream_error`]): a server
    /// replacing a session (`<conflict/>`), say.
    StreamError(crate::stream::error::StreamError),
    /// Drop the link as if it broke: no closing tag, no stream error, the session stays
    /// resumable. A server whose client resumed the session on a new connection before
    /// this one was seen to die does this (XEP-0198 §5, as Prosody's mod_smacks closes
    /// the old connection).
    Abandon,
}

/// Where [`run`] gets the application's commands from: a channel, a queue. `next` must be
/// cancel-safe (a command it returned is never lost when the future is dropped before).
#[allow(async_fn_in_trait)]
pub trait Commands {
    /// The next command; `None` when the application is gone (the stream is then closed).
    async fn next(&mut self) -> Option<Command>;
}

/// Where [`run`] delivers what the bound stream brings.
pub trait Deliver {
    /// A stanza (or another top-level element) arrived.
    fn stanza(&mut self, stanza: Stanza);
    /// An element too costly to parse was skipped (§13.12).
    fn skipped(&mut self, cost: usize, allowed: usize) {
        let _ = (cost, allowed);
    }
    /// A stanza could not be queued ([`crate::connection::SendError`]); it was not sent.
    fn refused(&mut self, stanza: String, error: crate::connection::SendError) {
        let _ = (stanza, error);
    }
    /// The stanza of the last [`Command::Send`] was queued; `number` is the one stream
    /// management gave it ([`Connection::send_stanza`]), `None` when it is not tracked.
    fn sent(&mut self, number: Option<u64>) {
        let _ = number;
    }
    /// A stream-management event (XEP-0198): [`Event::SmEnabled`], [`Event::SmFailed`],
    /// [`Event::Acked`], [`Event::Resumed`], [`Event::ResumeFailed`]. The stanzas a
    /// `ResumeFailed` or `SmFailed` hands back are the application's to resend or give up:
    /// the default logs how many and drops them.
    fn stream_management(&mut self, event: Event) {
        if let Event::ResumeFailed { not_delivered, .. } = &event {
            warn!(
                "{} stanzas were not resumed and are not known delivered",
                not_delivered.len()
            );
        }
    }
    /// Whether the application's queue of received stanzas is full: [`run`] then ends the
    /// stream with `<resource-constraint/>` (§4.9.3.15) rather than drop a stanza.
    fn backlog_full(&self) -> bool {
        false
    }
    /// Whether [`run`] should stop reading until [`Deliver::room`] completes: the
    /// application is behind, and the transport's window holds the peer back meanwhile
    /// (commands and timers still run). The stanzas of one read still arrive.
    fn paused(&self) -> bool {
        false
    }
    /// Completes once the application takes stanzas again. Cancel-safe.
    #[allow(async_fn_in_trait)]
    async fn room(&mut self) {}
}

/// The bound stream (§8) over a transport split in two halves: reads, the application's
/// commands and the connection's timers are waited on together, and a read is never
/// cancelled (its future lives until it completes), so a TLS layer whose reads are not
/// cancel-safe (embedded-tls) is safe here. Returns how the stream ended; the caller then
/// ends TLS and the transport.
// Each argument is a separate borrow the loop needs at the same time.
#[allow(clippy::too_many_arguments)]
pub async fn run<R, W, M, Q, D, O, C>(
    reader: &mut R,
    writer: &mut W,
    connection: &mut Connection<M>,
    commands: &mut Q,
    deliver: &mut D,
    observer: &mut O,
    clock: &C,
    buf: &mut [u8],
) -> Closed
where
    R: Read,
    W: Write,
    M: Negotiator,
    Q: Commands,
    D: Deliver + ?Sized,
    O: Observer + ?Sized,
    C: Clock,
{
    loop {
        // Everything queued goes out, every event is handed over, before waiting again.
        if let Err(e) = flush(writer, connection, observer, clock).await {
            connection.handle_eof(Some(e));
        }
        while let Some(event) = connection.poll_event() {
            match event {
                Event::Stanza(stanza) => {
                    deliver.stanza(stanza);
                    if deliver.backlog_full() {
                        connection.stream_error(crate::stream::error::StreamError::with_text(
                            crate::stream::error::StreamErrorCondition::ResourceConstraint,
                            "the application is not taking stanzas",
                        ));
                    }
                }
                Event::ElementSkipped { cost, allowed } => deliver.skipped(cost, allowed),
                Event::Closed(closed) => {
                    let _ = flush(writer, connection, observer, clock).await;
                    return closed;
                }
                Event::Step(step) => observer.step(step),
                event @ (Event::SmEnabled { .. }
                | Event::SmFailed { .. }
                | Event::Acked { .. }
                | Event::Resumed { .. }
                | Event::ResumeFailed { .. }) => deliver.stream_management(event),
                Event::StartTls { .. } | Event::Negotiated(_) | Event::ResumeRequested { .. } => {}
                #[cfg(feature = "dialback")]
                Event::DialbackRequested { .. } => {}
            }
        }
        if deliver.paused() {
            // No read is pending here: none is cancelled.
            let deadline = connection.poll_timeout();
            let woke = {
                let room = pin!(deliver.room());
                race(room, commands.next(), timer(clock, deadline)).await
            };
            let now = clock.now();
            match woke {
                Woke::Read(()) => {}
                Woke::Command(command) => apply(command, connection, deliver, now),
                Woke::Timer => connection.handle_timeout(now),
            }
            continue;
        }
        let n = {
            let mut read = pin!(reader.read(&mut *buf));
            loop {
                let deadline = connection.poll_timeout();
                let woke = race(read.as_mut(), commands.next(), timer(clock, deadline)).await;
                let now = clock.now();
                match woke {
                    Woke::Read(r) => break r,
                    Woke::Command(command) => apply(command, connection, deliver, now),
                    Woke::Timer => connection.handle_timeout(now),
                }
                // The read stays pending; what the command or timer queued goes out now.
                if let Err(e) = flush(writer, connection, observer, clock).await {
                    connection.handle_eof(Some(e));
                }
                if connection.is_closed() {
                    break Ok(usize::MAX);
                }
            }
        };
        match n {
            Ok(usize::MAX) => {}
            Ok(0) => connection.handle_eof(None),
            Ok(n) => {
                let data = buf.get(..n).unwrap_or_default();
                observer.received(data);
                connection.handle_input(data, clock.now());
            }
            Err(e) => connection.handle_eof(Some(Error::Transport(e.kind()))),
        }
    }
}

/// Carries out the application's `command` (`None`: the application is gone, close).
fn apply<M: Negotiator, D: Deliver + ?Sized>(
    command: Option<Command>,
    connection: &mut Connection<M>,
    deliver: &mut D,
    now: Duration,
) {
    match command {
        Some(Command::Send(stanza)) => match connection.send_stanza(&stanza, now) {
            Ok(number) => deliver.sent(number),
            Err(e) => deliver.refused(stanza, e),
        },
        Some(Command::Close) | None => connection.close(now),
        Some(Command::StreamError(error)) => connection.stream_error(error),
        Some(Command::Abandon) => connection.handle_eof(Some(Error::ConnectionClosed)),
    }
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

//! The app: connect, negotiate, stay online, start over. See the crate docs.

use alloc::collections::VecDeque;
use alloc::string::String;
use core::cell::{Cell, RefCell};
use core::fmt::{self, Display};
use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::{Poll, Waker};

use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::connection::{
    Closed, ConnectionOptions, Event, InitiatingConnection, SendError, Stanza, Step, Timeouts,
};
use xmpp_handshake_core::driver::{
    self, Clock as _, Command, Commands, Deliver, MaybeTls, Observer,
};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatorConfig, Sasl2Config};
use xmpp_handshake_core::sasl::{Credentials, SaslPolicy};
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::xml::decimal::push_decimal;
use xmpp_handshake_core::{stanza, Error};

use crate::clock::EmbassyClock;
use crate::config::Config;
use crate::net::{self, ResolveFailure};
use crate::store::CacheStore;
use crate::tls::{EmbeddedTlsConnector, TlsSlot};
use crate::transport::Halves;
use crate::watchdog::{self, beat};
use xmpp_handshake_core::login::LoginMemory;

/// The TCP socket's buffers (see [`crate::Memory`]).
pub struct SocketBuffers<'a> {
    /// Receive window.
    pub rx: &'a mut [u8],
    /// Send buffer.
    pub tx: &'a mut [u8],
}

/// Why a connection ended. On boards (`defmt`) it is logged through `defmt::Format`, so
/// the core's long `Display` texts are not linked.
#[derive(Debug)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// The server's address was not found.
    Resolve(ResolveFailure),
    /// TCP connect failed.
    Connect(ConnectError),
    /// The TCP connect took longer than its timeout.
    Timeout(&'static str),
    /// The negotiation or the stream failed (the core's timers end it with
    /// [`Error::Timeout`]).
    Xmpp(Error),
}

impl Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Resolve(e) => write!(f, "no address for the server: {e}"),
            Failure::Connect(e) => write!(f, "TCP connect failed: {e:?}"),
            Failure::Timeout(what) => write!(f, "timed out: {what}"),
            Failure::Xmpp(e) => write!(f, "{e}"),
        }
    }
}

/// How the app is doing, for logs and tests.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Connection attempts.
    pub attempts: u32,
    /// Sessions that reached a bound resource.
    pub bound: u32,
    /// Logins served by the SCRAM cache (no PBKDF2).
    pub cache_hits: u32,
    /// Readings sent.
    pub readings: u32,
    /// Messages echoed.
    pub echoed: u32,
}

/// One RNG shared by the TLS handshake and SASL (both need it during one negotiation; each
/// call borrows it only for the call).
pub struct SharedRng<'r, R>(&'r RefCell<R>);

impl<R> Clone for SharedRng<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for SharedRng<'_, R> {}

impl<R: RngCore> RngCore for SharedRng<'_, R> {
    fn next_u32(&mut self) -> u32 {
        self.0.borrow_mut().next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.borrow_mut().next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.borrow_mut().fill_bytes(dest)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.0.borrow_mut().try_fill_bytes(dest)
    }
}

impl<R: CryptoRng> CryptoRng for SharedRng<'_, R> {}

/// Logs the negotiation's steps and counts its round trips after the TCP connect (what
/// was sent answered, the TLS handshake as one), as the host CLI's transcript does.
#[derive(Default)]
struct Progress {
    awaiting_answer: bool,
    round_trips: u32,
}

impl Observer for Progress {
    fn sent(&mut self, _bytes: &[u8]) {
        self.awaiting_answer = true;
    }
    fn received(&mut self, _bytes: &[u8]) {
        if core::mem::take(&mut self.awaiting_answer) {
            self.round_trips += 1;
        }
    }
    fn step(&mut self, step: Step) {
        debug!("negotiation: {:?}", step);
    }
    fn tls_established(&mut self) {
        self.awaiting_answer = false;
        self.round_trips += 1;
        info!("TLS established");
    }
}

/// Runs the app forever on `stack`: connect, negotiate, stay online, reconnect with backoff.
pub async fn run<S, R>(
    stack: Stack<'_>,
    config: &Config<'_>,
    mut buffers: SocketBuffers<'_>,
    tls: &mut EmbeddedTlsConnector<'_>,
    store: &mut S,
    rng: R,
) -> !
where
    S: CacheStore,
    R: RngCore + CryptoRng,
{
    let rng = RefCell::new(rng);
    let mut backoff = config.backoff;
    let mut stats = Stats::default();
    // The stream-management session of a link that was lost (XEP-0198 §5): resumed on the
    // next connection, with the readings it had not acknowledged.
    let mut session = None;
    loop {
        beat();
        if !stack.is_config_up() {
            info!("waiting for the network");
            stack.wait_config_up().await;
        }
        if let (None, Some(server)) = (crate::time::now(), config.ntp) {
            // The socket buffers are free until the TCP socket is made.
            match crate::time::sync(stack, server, &mut SharedRng(&rng), buffers.rx, buffers.tx)
                .await
            {
                Ok(now) => info!("time from SNTP ({}): {} s since the epoch", server, now.0),
                Err(e) => warn!(
                    "no time from SNTP ({}): {:?}; certificate dates are not checked until \
                     it answers",
                    server, e
                ),
            }
        }
        stats.attempts += 1;
        let bound_before = stats.bound;
        let endpoints = net::endpoints(
            stack,
            config.server,
            config.domain,
            &mut SharedRng(&rng),
            buffers.rx,
            buffers.tx,
        )
        .await
        .map_err(Failure::Resolve);
        let outcome = match endpoints {
            Ok(endpoints) => {
                connection(
                    stack,
                    config,
                    &endpoints,
                    &mut buffers,
                    tls,
                    store,
                    SharedRng(&rng),
                    &mut stats,
                    &mut session,
                )
                .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => info!("session ended"),
            Err(e) => warn!("connection failed: {}", e),
        }
        if stats.bound > bound_before {
            backoff.reset();
            if config.behaviour.soak {
                continue;
            }
        }
        let delay = backoff.next_delay(&mut *rng.borrow_mut());
        info!(
            "reconnecting in {} ms (attempt {}, sessions {}, cache hits {})",
            delay.as_millis(),
            stats.attempts + 1,
            stats.bound,
            stats.cache_hits
        );
        Timer::after(delay).await;
    }
}

/// Replies (echoes, IQ answers) waiting for the stream, oldest first: one per received
/// stanza at most, queued by [`Answers`] and taken by [`Outgoing`] a moment later.
#[derive(Default)]
struct Replies {
    queue: RefCell<VecDeque<String>>,
    /// Their bytes, on the heap.
    bytes: Cell<usize>,
    /// The task waiting in [`Outgoing`], woken when a reply is queued.
    waker: Cell<Option<Waker>>,
}

impl Replies {
    fn push(&self, reply: String) {
        self.bytes.set(self.bytes.get() + reply.len());
        self.queue.borrow_mut().push_back(reply);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The oldest reply, or `None` once `timer` (if any) has expired. Cancel-safe: a reply
    /// leaves the queue only when it is returned.
    fn next<'a>(&'a self, mut timer: Option<Timer>) -> impl Future<Output = Option<String>> + 'a {
        poll_fn(move |cx| {
            if let Some(reply) = self.queue.borrow_mut().pop_front() {
                self.bytes.set(self.bytes.get() - reply.len());
                return Poll::Ready(Some(reply));
            }
            self.waker.set(Some(cx.waker().clone()));
            match timer.as_mut().map(|timer| Pin::new(timer).poll(cx)) {
                Some(Poll::Ready(())) => Poll::Ready(None),
                _ => Poll::Pending,
            }
        })
    }
}

/// Bytes handed from TLS to the connection per read (the framer keeps the element).
const READ_CHUNK: usize = 256;

/// Most stanzas (readings, echoes) sent and not yet acknowledged (XEP-0198 §4): about
/// 150 bytes of heap each. A reading beyond it is not taken, and logged.
const MAX_UNACKED: usize = 16;

/// Stream management (XEP-0198) as the app runs it: resumable (the server's own resumption
/// time), every stanza followed by an ack request, so that a reading leaves the queue as
/// soon as the server has it.
fn stream_management() -> SmConfig {
    SmConfig {
        resume: true,
        max_resume: None,
        max_unacked: MAX_UNACKED,
        request_every: 1,
        request_after: None,
    }
}

fn core_duration(d: Duration) -> core::time::Duration {
    core::time::Duration::from_micros(d.as_micros())
}

/// The core's timers for this app: the negotiation bounded as configured (from the TCP
/// connect to the bound resource), the closing handshake as long; on the bound stream a
/// silent server is asked for an ack after [`Config::idle`] and given up on after as long
/// again, and a write blocked that long ends the stream too (the socket's own timeout and
/// TCP keep-alive stay as a backstop). Room for two elements in the connection's queue (a
/// reply and a reading; each goes out as soon as it is queued).
fn options(config: &Config<'_>) -> ConnectionOptions {
    let negotiate = core_duration(config.negotiate_timeout);
    let idle = core_duration(config.idle);
    ConnectionOptions {
        timeouts: Timeouts {
            negotiation: Some(negotiate),
            close: negotiate,
            idle: Some(idle),
            ping_when_idle: true,
            write: Some(idle),
            ..Timeouts::default()
        },
        max_queued_bytes: 2 * config.limits.max_element_bytes,
        ..ConnectionOptions::default()
    }
}

/// One connection: TCP to the first of `endpoints` that accepts, negotiation (resuming
/// `session` when there is one), the bound stream until it ends. A link lost on the bound
/// stream leaves its session in `session` for the next connection; a stream closed by
/// either side leaves none (the closing handshake confirms every stanza before it, RFC
/// 6120 §4.4).
#[allow(clippy::too_many_arguments)]
async fn connection<S, R>(
    stack: Stack<'_>,
    config: &Config<'_>,
    endpoints: &[IpEndpoint],
    buffers: &mut SocketBuffers<'_>,
    tls: &mut EmbeddedTlsConnector<'_>,
    store: &mut S,
    rng: SharedRng<'_, R>,
    stats: &mut Stats,
    session: &mut Option<SmState>,
) -> Result<(), Failure>
where
    S: CacheStore,
    R: RngCore + CryptoRng,
{
    let mut socket = TcpSocket::new(stack, &mut *buffers.rx, &mut *buffers.tx);
    socket.set_timeout(Some(Duration::from_secs(120)));
    socket.set_keep_alive(Some(Duration::from_secs(30)));
    let mut connected = Err(Failure::Resolve(ResolveFailure::NoAddress));
    for endpoint in endpoints {
        info!("connecting to {}", endpoint);
        connected = match with_timeout(config.connect_timeout, socket.connect(*endpoint)).await {
            Ok(Ok(())) => break,
            Ok(Err(e)) => Err(Failure::Connect(e)),
            Err(_) => Err(Failure::Timeout("TCP connect")),
        };
        socket.abort();
    }
    if socket.state() != embassy_net::tcp::State::Established {
        return connected;
    }
    beat();
    let started = Instant::now();
    let instructions_before = crate::meter::instructions();
    let clock = EmbassyClock;

    let mut bare = String::from(config.username);
    bare.push('@');
    bare.push_str(config.domain);
    let kept = store.load(&bare).unwrap_or_default();
    let cached = Some(&kept.memory).filter(|m| **m != LoginMemory::default());
    let halves = Halves::new(socket.split());
    let mut slot = TlsSlot::new();
    let mut io = MaybeTls::Plain(halves.duplex());
    // A copy: the session stays here until a negotiation has taken it over.
    let resuming = session.is_some();
    let mut initiator = initiator(config, &bare, cached);
    initiator.resume.clone_from(session);
    let mut connection =
        InitiatingConnection::initiate(initiator, rng, options(config), clock.now());
    let mut progress = Progress::default();
    // The upgrade (with the verifier's verdict) is needed for the negotiation only.
    {
        let mut upgrade = tls.upgrade(rng, &mut slot, kept.pin);
        let outcome = driver::negotiate(
            &mut io,
            &mut upgrade,
            &mut connection,
            &mut progress,
            &clock,
        )
        .await;
        // A key pinned on first use is kept whether or not the login succeeds, as the
        // CLI's pin store keeps it.
        let mut kept = kept.clone();
        if let Some(pin) = upgrade.recorded_pin().filter(|p| Some(*p) != kept.pin) {
            if kept.pin.is_none() {
                info!("pinned the server's key for the next connections (trust on first use)");
            }
            kept.pin = Some(pin);
            if let Err(e) = store.save(&bare, &kept) {
                warn!("could not store the server's pin: {:?}", e);
            }
        }
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(e) => {
                // A refused FAST token (expired, revoked): the core tried the password on
                // the same stream, which some servers refuse after a token (Prosody's
                // mod_sasl2). Forgotten, so that the next login uses the password and
                // gets a new one (XEP-0484 §4.1).
                let auth = cfg!(feature = "fast")
                    && matches!(e, Error::Sasl(_) | Error::AuthenticationFailed { .. });
                if auth && kept.memory.fast_token.take().is_some() {
                    warn!("the server refused the FAST token; the next login uses the password");
                    if let Err(e) = store.save(&bare, &kept) {
                        warn!("could not forget the FAST token: {:?}", e);
                    }
                }
                return Err(Failure::Xmpp(e));
            }
        };
        beat();
        // Resumed or reported ([`Event::Resumed`], [`Event::ResumeFailed`]): the
        // connection has the session now.
        *session = None;
        stats.bound += 1;
        info!(
            "bound as {} in {} ms, {} round trips ({}, TLS {})",
            outcome.jid.as_deref().unwrap_or_default(),
            started.elapsed().as_millis(),
            progress.round_trips,
            match (outcome.mechanism, outcome.sasl2) {
                (Some(m), _) => m.name(),
                (None, true) => "FAST token",
                (None, false) => "no SASL",
            },
            outcome.secure
        );
        if outcome.sasl2 {
            info!("logged in with SASL2 (XEP-0388)");
        }
        if let (Some(before), Some(now)) = (instructions_before, crate::meter::instructions()) {
            info!(
                "login: {} instructions from the TCP connect to the bound resource",
                now - before
            );
        }
        if outcome.mechanism.is_some() || outcome.sasl2 {
            // A verified login (SCRAM, or a FAST token whose server proof was checked): the
            // SCRAM keys and offer of the last password login, the FAST token the server
            // issued (or the one that logged in, until it is replaced), the user agent id
            // it is tied to.
            let mut keep = LoginMemory::from_outcome(&outcome, &SaslPolicy::default());
            if cfg!(feature = "fast") {
                keep = keep.remembering(cached, outcome.fast_token_rejected);
            }
            keep.user_agent_id = config.user_agent_id.map(String::from);
            if let Some(entry) = &outcome.scram_cache {
                if cached.is_some_and(|c| c.scram.as_ref() == Some(entry)) {
                    stats.cache_hits += 1;
                    info!("SCRAM keys came from the cache (no PBKDF2)");
                }
            }
            if outcome.fast_token_rejected {
                warn!("the server refused the FAST token; the password logged in");
            }
            if kept.memory != keep {
                let new_token =
                    keep.fast_token.is_some() && keep.fast_token != kept.memory.fast_token;
                kept.memory = keep;
                match store.save(&bare, &kept) {
                    Ok(()) if new_token => info!("FAST token stored for the next login"),
                    Ok(()) => info!("SCRAM keys and offer stored for the next login"),
                    Err(e) => warn!("could not store the login memory: {:?}", e),
                }
            }
        }
    }
    // STARTTLS is required (the initiator's default): a bound stream is a TLS one. `run`
    // reads through the reader taken out of it and writes through `io`, as the negotiation
    // did (one copy of the driver's writing code, with the same observer).
    let Some(mut reader) = (match &mut io {
        MaybeTls::Tls(stream) => stream.take_reader(),
        _ => None,
    }) else {
        return Err(Failure::Xmpp(Error::StartTlsNotOffered));
    };

    // Initial presence (RFC 6121 §4.2) on a new session (a resumed one has it; one that
    // could not be resumed sends it on `ResumeFailed`), then what the behaviour asks for.
    let now = clock.now();
    if !resuming {
        let _ = connection.send_stanza(&stanza::presence(None), now);
    }
    let behaviour = config.behaviour;
    if behaviour.soak {
        info!("soak: session {} closes", stats.bound);
        connection.close(now);
    }
    let replies = Replies::default();
    let mut answers = Answers {
        replies: &replies,
        // Two echoes of the largest element.
        max_backlog: 2 * config.limits.max_element_bytes,
        echo: behaviour.echo,
        echoed: &mut stats.echoed,
    };
    let mut outgoing = Outgoing {
        replies: &replies,
        readings: behaviour
            .report_to
            .filter(|_| !behaviour.soak)
            .map(|to| Readings {
                to,
                period: behaviour.period,
                next: Instant::now(),
                started,
            }),
        count: &mut stats.readings,
    };
    let mut buf = [0; READ_CHUNK];
    let closed = driver::run(
        &mut reader,
        &mut io,
        &mut connection,
        &mut outgoing,
        &mut answers,
        &mut progress,
        &clock,
        &mut buf,
    )
    .await;
    match closed {
        Closed::ByPeer => {
            info!("the server closed the stream");
            Ok(())
        }
        Closed::ByUs => Ok(()),
        Closed::Failed(e) => {
            *session = connection.take_sm_state();
            if let Some(kept) = session {
                info!(
                    "link lost: {} stanzas not acknowledged; resuming the session",
                    kept.unacked_len()
                );
            }
            Err(Failure::Xmpp(e))
        }
    }
}

/// Answers what arrives on the bound stream: the reply goes to [`Outgoing`] through
/// [`Replies`].
struct Answers<'a> {
    replies: &'a Replies,
    /// Heap the replies waiting at once may take: a peer that keeps sending faster than the
    /// replies leave has its stream ended with `<resource-constraint/>`
    /// ([`Deliver::backlog_full`]) instead of filling the heap. Until then every stanza
    /// that asks for an answer gets one (RFC 6120 §8.2.3).
    max_backlog: usize,
    echo: bool,
    echoed: &'a mut u32,
}

impl Deliver for Answers<'_> {
    fn stanza(&mut self, stanza: Stanza) {
        beat();
        let echo = self.echo;
        let Some(Some(reply)) = stanza.parse(|node| answer(node, echo)) else {
            return;
        };
        if reply.starts_with("<message") {
            *self.echoed += 1;
        }
        self.replies.push(reply);
    }

    fn backlog_full(&self) -> bool {
        self.replies.bytes.get() > self.max_backlog
    }

    // An element too costly to parse for this heap (`Memory::max_parse`): skipped
    // unparsed, the session goes on (RFC 6120 §13.12).
    fn skipped(&mut self, cost: usize, allowed: usize) {
        warn!(
            "skipped an element: parsing it could take {} bytes, {} allowed",
            cost, allowed
        );
    }

    fn refused(&mut self, stanza: String, error: SendError) {
        warn!("not sent ({}): {}", error, label(&stanza));
    }

    /// XEP-0198: what the server acknowledged, a resumption, or a session it lost: then
    /// what it is not known to have is sent again on the new session, after a new initial
    /// presence, and each is logged (the old presence is not: the new one replaces it).
    fn stream_management(&mut self, event: Event) {
        match event {
            Event::SmEnabled { id, .. } => info!(
                "stream management on ({})",
                if id.is_some() {
                    "resumable"
                } else {
                    "not resumable"
                }
            ),
            Event::SmFailed { condition, .. } => warn!(
                "the server refused stream management ({}): readings are not acknowledged",
                condition.as_deref().unwrap_or("no reason given")
            ),
            Event::Acked { h, .. } => debug!("the server acknowledged {} stanzas", h),
            Event::Resumed { h, acked, resent } => info!(
                "session resumed (the server had {} stanzas): {} acknowledged now, {} sent again",
                h,
                acked.end - acked.start,
                resent.end - resent.start
            ),
            Event::ResumeFailed {
                condition,
                not_delivered,
                ..
            } => {
                warn!(
                    "the server lost the session ({}); a new one was bound, {} stanzas not \
                     known delivered",
                    condition.as_deref().unwrap_or("not resumable"),
                    not_delivered.len()
                );
                self.replies.push(stanza::presence(None));
                for (_, stanza) in not_delivered {
                    if !stanza.starts_with("<presence") {
                        info!("not known delivered, sending again: {}", label(&stanza));
                        self.replies.push(stanza);
                    }
                }
            }
            _ => {}
        }
    }
}

/// What a log line names a stanza by: the text after its second tag up to the first `:`
/// or tag, which for the app's messages (`stanza::message`: `<message …><body>TEXT`) is
/// the body's start (`reading 7`, `echo`). Character patterns only: a substring search
/// would link core's two-way searcher (0.7 KB) for this.
fn label(stanza: &str) -> &str {
    stanza
        .split('>')
        .nth(2)
        .and_then(|text| text.split([':', '<']).next())
        .unwrap_or_default()
}

/// The periodic readings' schedule.
struct Readings<'a> {
    to: &'a str,
    period: Duration,
    next: Instant,
    started: Instant,
}

/// What the app sends on the bound stream: the replies [`Answers`] queued, and a reading
/// whenever one is due.
struct Outgoing<'a> {
    replies: &'a Replies,
    readings: Option<Readings<'a>>,
    count: &'a mut u32,
}

impl Commands for Outgoing<'_> {
    /// Cancel-safe: a reply stays in the queue until it is returned, and the schedule
    /// moves only when a reading is returned.
    async fn next(&mut self) -> Option<Command> {
        // The watchdog's tick: this loop is alive while it waits.
        let readings = loop {
            beat();
            let tick = Instant::now() + watchdog::TICK;
            let due = self.readings.as_ref().map_or(tick, |r| r.next.min(tick));
            if let Some(reply) = self.replies.next(Some(Timer::at(due))).await {
                beat();
                return Some(Command::Send(reply));
            }
            match self.readings.as_mut() {
                Some(readings) if readings.next <= Instant::now() => break readings,
                _ => continue,
            }
        };
        *self.count += 1;
        let n = *self.count;
        info!("reading {} to {}", n, readings.to);
        let body = reading(n, readings.started.elapsed());
        // After a long stall, the next reading is one period from now, not a burst.
        readings.next = (readings.next + readings.period).max(Instant::now());
        Some(Command::Send(stanza::message(readings.to, &body, None)))
    }
}

/// The negotiation's configuration: STARTTLS required (the default), SCRAM with the
/// cached keys if any, `<auth/>` pipelined after TLS with the mechanism the policy picks
/// from the cached post-TLS offer (as the host CLI does), resource `config.resource`, bind
/// pipelined with the SASL success. With the feature `fast` (the core's `sasl2`), SASL2
/// when offered, with the user agent id and the kept FAST token (XEP-0484 §3.4), sent
/// behind the first protected header in the shape of the kept SASL2 offer.
fn initiator(config: &Config<'_>, bare: &str, cached: Option<&LoginMemory>) -> InitiatorConfig {
    let mut initiator = InitiatorConfig::client(config.domain);
    initiator.from = Some(String::from(bare));
    initiator.limits = config.limits;
    initiator.stream_management = Some(stream_management());
    let sasl = ClientSasl {
        credentials: Credentials::password(config.username, config.password),
        policy: SaslPolicy::default(),
        resource: Some(String::from(config.resource)),
        pipeline_mechanism: None,
        pipeline_offer: None,
        pipeline_bind: true,
        // SASL2 with Bind 2 when offered; with the device's user agent id a FAST token is
        // requested, kept in the store and used by the next login (XEP-0484).
        sasl2: alloc::boxed::Box::new(Sasl2Config {
            user_agent_id: config.user_agent_id.map(String::from),
            ..Sasl2Config::default()
        }),
    };
    initiator.sasl = Some(match cached {
        Some(memory) => sasl.with_memory(memory),
        None => sasl,
    });
    initiator
}

/// A sensor-style reading (a stand-in for a real sensor: a counter and the uptime).
fn reading(n: u32, online: Duration) -> String {
    // The seconds as `u32` (136 years). Digits written by hand: the integers' `Display`
    // (and `Formatter::pad_integral`, ~0.9 KB of flash) were linked for this text alone.
    let online = u32::try_from(online.as_secs()).unwrap_or(u32::MAX);
    let mut body = String::from("reading ");
    push_decimal(&mut body, n);
    body.push_str(": online ");
    push_decimal(&mut body, online);
    body.push_str(" s, temperature ");
    push_decimal(&mut body, 20 + n % 5);
    body.push('.');
    push_decimal(&mut body, n % 10);
    body.push_str(" C");
    body
}

/// What to answer to one received top-level element, if anything.
fn answer(node: roxmltree::Node<'_, '_>, echo: bool) -> Option<String> {
    let from = node.attribute("from");
    let kind = node.attribute("type").unwrap_or("");
    match node.tag_name().name() {
        "message" if echo && matches!(kind, "" | "chat" | "normal") => {
            let body = node
                .children()
                .find(|c| c.tag_name().name() == "body")
                .and_then(|b| b.text())?;
            // Never answer another bot's echo: two echoing devices would loop.
            if body.starts_with("echo: ") {
                return None;
            }
            info!("message from {}: {}", from.unwrap_or("?"), body);
            let mut echo = String::from("echo: ");
            echo.push_str(body);
            Some(stanza::message(from?, &echo, None))
        }
        // RFC 6120 §8.2.3: every get/set is answered. XEP-0199 ping gets its result,
        // everything else service-unavailable (RFC 6120 §8.3.3.19).
        "iq" if matches!(kind, "get" | "set") => {
            let id = node.attribute("id")?;
            let ping = node
                .first_element_child()
                .is_some_and(|c| c.tag_name().namespace() == Some("urn:xmpp:ping"));
            Some(if ping {
                stanza::iq("result", id, from, "")
            } else {
                stanza::iq(
                    "error",
                    id,
                    from,
                    "<error type='cancel'><service-unavailable \
                     xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>",
                )
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::stream::header::StreamHeader;
    use xmpp_handshake_core::xml::element;

    fn answer_to(raw: &str, echo: bool) -> Option<String> {
        element::parse(raw, &StreamHeader::default(), |node| answer(node, echo))
            .expect("a well-formed element")
    }

    fn reply(raw: &str) -> Option<String> {
        answer_to(raw, true)
    }

    #[test]
    fn readings_say_what_format_would() {
        for (n, secs) in [(1, 0), (7, 59), (10, 3600), (u32::MAX, u64::from(u32::MAX))] {
            assert_eq!(
                reading(n, Duration::from_secs(secs)),
                alloc::format!(
                    "reading {n}: online {secs} s, temperature {}.{} C",
                    20 + n % 5,
                    n % 10
                )
            );
        }
        // Past 136 years the uptime stops at u32::MAX seconds.
        assert!(reading(1, Duration::from_secs(1 << 40)).contains("online 4294967295 s"));
    }

    #[test]
    fn echoes_chat_messages_to_their_sender() {
        let r =
            reply("<message from='bob@x.test/a' type='chat'><body>hi &amp; bye</body></message>");
        let r = r.expect("an echo");
        assert!(
            r.contains("to='bob@x.test/a'") && r.contains("echo: hi &amp; bye"),
            "{r}"
        );
        assert_eq!(
            answer_to(
                "<message from='b@x.test' type='chat'><body>hi</body></message>",
                false
            ),
            None,
            "echo off"
        );
    }

    #[test]
    fn never_answers_errors_echoes_or_bodiless_messages() {
        assert_eq!(
            reply("<message from='b@x.test' type='error'><body>x</body></message>"),
            None
        );
        assert_eq!(
            reply("<message from='b@x.test'><body>echo: x</body></message>"),
            None
        );
        assert_eq!(
            reply("<message from='b@x.test'><composing xmlns='urn:x'/></message>"),
            None
        );
    }

    #[test]
    fn answers_every_iq_get_or_set() {
        let ping = reply("<iq type='get' id='p1' from='x.test'><ping xmlns='urn:xmpp:ping'/></iq>");
        let ping = ping.expect("a pong");
        assert!(
            ping.contains("type='result'") && ping.contains("id='p1'"),
            "{ping}"
        );
        let other =
            reply("<iq type='set' id='q' from='x.test'><query xmlns='jabber:iq:roster'/></iq>");
        let other = other.expect("an error");
        assert!(
            other.contains("type='error'") && other.contains("service-unavailable"),
            "{other}"
        );
        assert_eq!(reply("<iq type='result' id='r'/>"), None);
        assert_eq!(reply("<presence from='b@x.test'/>"), None);
    }
}

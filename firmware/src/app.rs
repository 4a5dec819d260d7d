//! The app: connect, negotiate, stay online, start over. See the crate docs.

use alloc::format;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt::{self, Display};
use core::future::Future;

use embassy_net::tcp::{ConnectError, TcpSocket};
use embassy_net::Stack;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::{ErrorKind, Read, Write};
use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::driver::{negotiate_in_place, MaybeTls, Negotiated, Observer, Session};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::sasl::{Credentials, SaslPolicy};
use xmpp_handshake_core::{stanza, Error};

use crate::config::Config;
use crate::store::{CacheStore, CachedLogin};
use crate::tls::TlsConnector;
use crate::transport::{Deadline, Interruptible, Tracking};

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
    /// TCP connect failed.
    Connect(ConnectError),
    /// A step took longer than its timeout.
    Timeout(&'static str),
    /// The negotiation or the stream failed.
    Xmpp(Error),
}

impl Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
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
pub async fn run<C, S, R>(
    stack: Stack<'_>,
    config: &Config<'_>,
    mut buffers: SocketBuffers<'_>,
    tls: &mut C,
    store: &mut S,
    rng: R,
) -> !
where
    C: TlsConnector,
    S: CacheStore,
    R: RngCore + CryptoRng,
{
    let rng = RefCell::new(rng);
    let mut backoff = config.backoff;
    let mut stats = Stats::default();
    loop {
        if !stack.is_config_up() {
            info!("waiting for the network");
            stack.wait_config_up().await;
        }
        stats.attempts += 1;
        let bound_before = stats.bound;
        match connection(
            stack,
            config,
            &mut buffers,
            tls,
            store,
            SharedRng(&rng),
            &mut stats,
        )
        .await
        {
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

/// One connection: TCP, negotiation, the bound stream until it ends.
async fn connection<C, S, R>(
    stack: Stack<'_>,
    config: &Config<'_>,
    buffers: &mut SocketBuffers<'_>,
    tls: &mut C,
    store: &mut S,
    rng: SharedRng<'_, R>,
    stats: &mut Stats,
) -> Result<(), Failure>
where
    C: TlsConnector,
    S: CacheStore,
    R: RngCore + CryptoRng,
{
    let mut socket = TcpSocket::new(stack, &mut *buffers.rx, &mut *buffers.tx);
    socket.set_timeout(Some(Duration::from_secs(120)));
    socket.set_keep_alive(Some(Duration::from_secs(30)));
    info!("connecting to {}", config.server);
    with_timeout(config.connect_timeout, socket.connect(config.server))
        .await
        .map_err(|_| Failure::Timeout("TCP connect"))?
        .map_err(Failure::Connect)?;
    let started = Instant::now();

    let bare = format!("{}@{}", config.username, config.domain);
    let cached = store.load(&bare);
    let deadline = Deadline::new(None);
    // The negotiation's state lives in this block only: the locals of an `async fn` keep
    // their place in its future until their scope ends, even after they were moved; out
    // of scope, `online`'s future reuses their space.
    let session = {
        // Built where they stay: the negotiation borrows them (see `negotiate_in_place`).
        let mut io = MaybeTls::Plain(Interruptible::new(socket, &deadline));
        let mut upgrade = Tracking(tls.upgrade(rng));
        let mut machine = InitiatingEntity::new(initiator(config, &bare, cached.clone()), rng);
        let mut progress = Progress::default();
        let outcome = with_timeout(
            config.negotiate_timeout,
            negotiate_in_place(&mut io, &mut upgrade, &mut machine, &mut progress),
        )
        .await
        .map_err(|_| Failure::Timeout("negotiation"))?
        .map_err(Failure::Xmpp)?;
        stats.bound += 1;
        info!(
            "bound as {} in {} ms, {} round trips ({}, TLS {})",
            outcome.jid.as_deref().unwrap_or_default(),
            started.elapsed().as_millis(),
            progress.round_trips,
            outcome.mechanism.map(|m| m.name()).unwrap_or("no SASL"),
            outcome.secure
        );
        if let Some(entry) = &outcome.scram_cache {
            let keep = CachedLogin {
                entry: entry.clone(),
                offer: outcome.sasl_offer.unwrap_or_default(),
            };
            if cached.as_ref().is_some_and(|c| c.entry == *entry) {
                stats.cache_hits += 1;
                info!("SCRAM keys came from the cache (no PBKDF2)");
            }
            if cached.as_ref() != Some(&keep) {
                match store.save(&bare, &keep) {
                    Ok(()) => info!("SCRAM keys and offer stored for the next login"),
                    Err(e) => warn!("could not store the SCRAM keys: {:?}", e),
                }
            }
        }
        Session::new(Negotiated {
            transport: io,
            machine,
            outcome,
        })
    };
    // Never borrowed here, only moved: a borrowed local would keep its place in this
    // future while `online` runs.
    online(session, config, &deadline, stats, started).await
}

/// The bound stream until it ends: initial presence, then echoes, IQ answers and
/// readings.
///
/// Not an `async fn`, and the session moves in by value: as a local of `connection`
/// across `.await`s it would get a place of its own in that future, next to the
/// negotiation's; inside this future it shares the space with it. (An `async fn` would
/// hold the by-value `session` twice: the argument and the local it is moved into.)
#[allow(clippy::manual_async_fn)]
fn online<'a, T: Read + Write, S: Read + Write>(
    mut session: Session<T, S>,
    config: &'a Config<'_>,
    deadline: &'a Deadline,
    stats: &'a mut Stats,
    started: Instant,
) -> impl Future<Output = Result<(), Failure>> + 'a
where
    Session<T, S>: 'a,
{
    async move {
        session
            .send(&stanza::presence(None))
            .await
            .map_err(Failure::Xmpp)?;
        let behaviour = config.behaviour;
        if behaviour.soak {
            info!("soak: session {} closes", stats.bound);
            return with_timeout(config.negotiate_timeout, session.close())
                .await
                .map_err(|_| Failure::Timeout("closing"))?
                .map(|_| ())
                .map_err(Failure::Xmpp);
        }
        let mut next_reading = behaviour.report_to.map(|_| Instant::now());
        loop {
            deadline.set(next_reading);
            // The element is answered where the framer holds it, from the session's own
            // parse: no copy of it on the heap, no second parse.
            match session
                .next_element_with(|_, node| answer(node, behaviour.echo))
                .await
            {
                Ok(Some(reply)) => {
                    if let Some(reply) = reply {
                        if reply.starts_with("<message") {
                            stats.echoed += 1;
                        }
                        session.send(&reply).await.map_err(Failure::Xmpp)?;
                    }
                }
                Ok(None) => {
                    info!("the server closed the stream");
                    let _ = session.close().await;
                    return Ok(());
                }
                Err(Error::Transport(ErrorKind::TimedOut))
                    if next_reading.is_some_and(|at| Instant::now() >= at) =>
                {
                    stats.readings += 1;
                    let to = behaviour.report_to.unwrap_or_default();
                    let body = reading(stats.readings, started.elapsed());
                    info!("reading {} to {}", stats.readings, to);
                    session
                        .send(&stanza::message(to, &body, None))
                        .await
                        .map_err(Failure::Xmpp)?;
                    // After a long stall, the next reading is one period from now, not a burst.
                    next_reading =
                        next_reading.map(|at| (at + behaviour.period).max(Instant::now()));
                }
                // An element too costly to parse for this heap (`Memory::max_parse`):
                // skipped unparsed, the session goes on (RFC 6120 §13.12).
                Err(Error::ElementSkipped { cost, allowed }) => {
                    warn!(
                        "skipped an element: parsing it could take {} bytes, {} allowed",
                        cost, allowed
                    );
                }
                Err(e) => return Err(Failure::Xmpp(e)),
            }
        }
    }
}

/// The negotiation's configuration: STARTTLS required (the default), SCRAM with the
/// cached keys if any, `<auth/>` pipelined after TLS with the mechanism the policy picks
/// from the cached post-TLS offer (as the host CLI does), resource `config.resource`, bind
/// pipelined with the SASL success.
fn initiator(config: &Config<'_>, bare: &str, cached: Option<CachedLogin>) -> InitiatorConfig {
    let mut credentials = Credentials::password(config.username, config.password);
    let pipeline_offer = cached.as_ref().map(|c| c.offer);
    credentials.scram_cache = cached.map(|c| c.entry);
    let mut initiator = InitiatorConfig::client(config.domain);
    initiator.from = Some(String::from(bare));
    initiator.limits = config.limits;
    initiator.sasl = Some(ClientSasl {
        credentials,
        policy: SaslPolicy::default(),
        resource: Some(String::from(config.resource)),
        pipeline_mechanism: None,
        pipeline_offer,
        pipeline_bind: true,
    });
    initiator
}

/// A sensor-style reading (a stand-in for a real sensor: a counter and the uptime).
fn reading(n: u32, online: Duration) -> String {
    format!(
        "reading {n}: online {} s, temperature {}.{} C",
        online.as_secs(),
        20 + n % 5,
        n % 10
    )
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
            Some(stanza::message(from?, &format!("echo: {body}"), None))
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

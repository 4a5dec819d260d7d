//! Real negotiations of both sans-IO machines against each other in memory, and their
//! replay against one machine: for the property tests (core/tests/robustness.rs) and the
//! fuzz targets (fuzz/, which includes this file).
//!
//! TLS is simulated where the machines see it: when a machine asks for TLS
//! ([`Event::StartTls`]) it is told the handshake is done ([`Negotiator::tls_established`])
//! with the same channel-binding data on both sides. What each side sends is recorded per
//! transport "epoch": epoch 0 is the plaintext stream up to `<starttls/>` / `<proceed/>`,
//! epoch 1 what went inside TLS (RFC 6120 §5.4.3.3: nothing may cross that line in one read).
//! Everything is deterministic (counting RNGs), so a fresh machine fed the recorded peer
//! bytes follows the same negotiation: SCRAM nonces and proofs match.

use xmpp_handshake_core::connection::{Event, Negotiator, TlsInfo};
use xmpp_handshake_core::initiator::{ClientSasl, InitiatingEntity, InitiatorConfig};
use xmpp_handshake_core::receiver::{ReceiverConfig, ReceivingEntity};
use xmpp_handshake_core::sasl::{
    ChannelBindingData, Credentials, Mechanism, MemoryStore, SaslPolicy, ServerOptions,
};
use xmpp_handshake_core::stream::error::StreamError;
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::framer::Frame;
use xmpp_handshake_core::Error;

/// Takes every unit `m` wants to send, as the bytes of a TCP stream.
pub fn take_output<M: Negotiator>(m: &mut M) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(unit) = m.poll_transmit() {
        out.extend_from_slice(unit.as_bytes());
    }
    out
}

/// A deterministic RNG for stream ids and nonces (a counter: values differ on every call).
pub struct CountingRng(pub u64);

impl rand_core::RngCore for CountingRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }
    fn next_u64(&mut self) -> u64 {
        self.0 += 1;
        self.0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_core::CryptoRng for CountingRng {}

/// The served domain.
pub const DOMAIN: &str = "example.com";
/// The user's name and password.
pub const USER: (&str, &str) = ("juliet", "r0m30");
/// SCRAM iterations of the stored credentials (the client's floor is lowered to match:
/// the tests are about bytes, not about PBKDF2).
pub const ITERATIONS: u32 = 64;

/// A negotiation to record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// C2S as `connect` against `serve`: `<starttls/>` pipelined with the header,
    /// SCRAM-SHA-256-PLUS (`tls-exporter`), the bind request pipelined after `<success/>`.
    ScramPlus,
    /// C2S without pipelining: STARTTLS after the features, SCRAM-SHA-1 with the gs2
    /// flag `n`, a requested resource, the bind request after the features.
    ScramSha1,
    /// C2S with PLAIN only (the server offers nothing else) and `<auth/>` pipelined after
    /// the TLS handshake.
    Plain,
    /// S2S: SASL EXTERNAL from the peer's certificate identity, no binding.
    S2sExternal,
}

/// Every scenario.
pub const SCENARIOS: [Scenario; 4] = [
    Scenario::ScramPlus,
    Scenario::ScramSha1,
    Scenario::Plain,
    Scenario::S2sExternal,
];

impl Scenario {
    /// The initiating entity of this scenario.
    pub fn initiator(self) -> InitiatingEntity<CountingRng> {
        let mut policy = SaslPolicy {
            min_iterations: ITERATIONS,
            ..SaslPolicy::default()
        };
        let mut config = InitiatorConfig::client(DOMAIN);
        config.from = Some(format!("{}@{DOMAIN}", USER.0));
        let mut sasl = ClientSasl::password(USER.0, USER.1, None);
        match self {
            Scenario::ScramPlus => {}
            Scenario::ScramSha1 => {
                config.pipeline_starttls = false;
                policy.channel_binding = xmpp_handshake_core::sasl::CbPolicy::Off;
                sasl.resource = Some("balcony".into());
                sasl.pipeline_bind = false;
            }
            Scenario::Plain => sasl.pipeline_mechanism = Some(Mechanism::Plain),
            Scenario::S2sExternal => {
                config = InitiatorConfig::server(DOMAIN, "verona.example");
                sasl.credentials = Credentials::external(None);
                sasl.pipeline_bind = false;
            }
        }
        sasl.policy = policy;
        config.sasl = Some(sasl);
        InitiatingEntity::new(config, CountingRng(1))
    }

    /// The receiving entity of this scenario.
    pub fn receiver(self) -> ReceivingEntity<CountingRng, MemoryStore> {
        let mut config = match self {
            Scenario::S2sExternal => ReceiverConfig::server_to_server(DOMAIN),
            _ => ReceiverConfig::client_to_server(DOMAIN),
        };
        if self == Scenario::Plain {
            config.sasl = Some(ServerOptions {
                scram_hashes: Vec::new(),
                ..ServerOptions::default()
            });
        }
        let mut store = MemoryStore::new();
        store.add_password(USER.0, USER.1, ITERATIONS, &mut CountingRng(7));
        ReceivingEntity::new(config, CountingRng(1000), store)
    }

    /// What the simulated TLS handshake gives `initiator` (or the receiving entity).
    pub fn tls_info(self, initiator: bool) -> TlsInfo {
        TlsInfo {
            channel_binding: ChannelBindingData {
                exporter: Some([0x5a; 32]),
                ..ChannelBindingData::default()
            },
            peer_identities: (self == Scenario::S2sExternal && !initiator)
                .then(|| "verona.example".to_string())
                .into_iter()
                .collect(),
            ..TlsInfo::default()
        }
    }
}

/// What each side of a negotiation sent, per transport epoch (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    /// What the initiating entity sent.
    pub to_receiver: Vec<Vec<u8>>,
    /// What the receiving entity sent.
    pub to_initiator: Vec<Vec<u8>>,
}

/// One machine's side of a run: it moves output into `sent` (per epoch), and starts
/// (simulated) TLS when asked.
struct Side<M> {
    machine: M,
    sent: Vec<Vec<u8>>,
    tls: TlsInfo,
    done: bool,
}

impl<M: Negotiator> Side<M> {
    fn new(machine: M, tls: TlsInfo) -> Self {
        Side {
            machine,
            sent: vec![Vec::new()],
            tls,
            done: false,
        }
    }

    /// Takes output and events until nothing is left; returns the new output.
    fn settle(&mut self) -> Vec<u8> {
        let mut new = Vec::new();
        loop {
            let out = take_output(&mut self.machine);
            new.extend_from_slice(&out);
            self.sent
                .last_mut()
                .expect("an epoch")
                .extend_from_slice(&out);
            match self.machine.poll_event() {
                Some(Event::StartTls { .. }) => {
                    self.sent.push(Vec::new());
                    self.machine
                        .tls_established(self.tls.clone())
                        .expect("the real negotiation goes on after TLS");
                }
                Some(Event::Negotiated(_)) => self.done = true,
                Some(Event::Step(_)) => {}
                Some(e) => panic!("a machine does not report {e:?}"),
                None => return new,
            }
        }
    }

    fn deliver(&mut self, bytes: &[u8]) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let buf = self.machine.receive_buffer();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.machine
                .received(n)
                .expect("the real negotiation succeeds");
            rest = &rest[n..];
        }
    }
}

/// Runs `scenario` to the end on both sides and records what crossed.
pub fn negotiate(scenario: Scenario) -> Transcript {
    let mut i = Side::new(scenario.initiator(), scenario.tls_info(true));
    let mut r = Side::new(scenario.receiver(), scenario.tls_info(false));
    for _ in 0..64 {
        let out = i.settle();
        if i.done && r.done {
            return Transcript {
                to_receiver: i.sent,
                to_initiator: r.sent,
            };
        }
        r.deliver(&out);
        let out = r.settle();
        i.deliver(&out);
    }
    panic!(
        "{scenario:?} did not finish: i {} r {}\n{:?}\n{:?}",
        i.done,
        r.done,
        String::from_utf8_lossy(&i.sent.concat()),
        String::from_utf8_lossy(&r.sent.concat())
    );
}

/// What a machine did with what it was fed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Run {
    /// Every event, in order (steps included).
    pub events: Vec<Event>,
    /// Everything it sent.
    pub output: Vec<u8>,
    /// The error that stopped it.
    pub error: Option<Error>,
    /// Bytes fed after the negotiation completed that the stanza phase framed into
    /// elements (parsed with the final header), or the error it stopped with.
    pub after: Option<Result<usize, StreamError>>,
}

impl Run {
    /// The negotiation completed.
    pub fn negotiated(&self) -> bool {
        self.events
            .iter()
            .any(|e| matches!(e, Event::Negotiated(_)))
    }
}

/// A machine being fed, chunk by chunk, as a driver would: each chunk is one read.
pub struct Replay<M> {
    machine: Option<M>,
    tls: TlsInfo,
    run: Run,
    /// After the negotiation: the stanza phase's framer and the peer's header.
    session: Option<(
        xmpp_handshake_core::xml::framer::Framer,
        xmpp_handshake_core::stream::header::StreamHeader,
    )>,
}

impl<M: Negotiator> Replay<M> {
    /// Starts with the machine's first output taken.
    pub fn new(machine: M, tls: TlsInfo) -> Self {
        let mut replay = Replay {
            machine: Some(machine),
            tls,
            run: Run::default(),
            session: None,
        };
        replay.settle();
        replay
    }

    /// Whether it stopped (error, or the stanza phase failed).
    pub fn stopped(&self) -> bool {
        self.run.error.is_some() || matches!(self.run.after, Some(Err(_)))
    }

    fn settle(&mut self) {
        let Some(m) = self.machine.as_mut() else {
            return;
        };
        loop {
            let out = take_output(m);
            let wrote = !out.is_empty();
            self.run.output.extend_from_slice(&out);
            match m.poll_event() {
                Some(e @ Event::StartTls { .. }) => {
                    self.run.events.push(e);
                    if let Err(e) = m.tls_established(self.tls.clone()) {
                        self.run.error = Some(e);
                    }
                }
                Some(e @ Event::Negotiated(_)) => {
                    self.run.events.push(e);
                    let m = self.machine.take().expect("machine");
                    self.session = Some(m.into_parts());
                    self.run.after = Some(Ok(0));
                    return;
                }
                Some(e) => self.run.events.push(e),
                None if self.run.error.is_some() => return,
                None => {
                    if !wrote {
                        return;
                    }
                }
            }
        }
    }

    /// One read of `chunk`. After an error nothing more is fed.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.stopped() {
            if let Some((framer, header)) = self.session.as_mut() {
                let n = framer.push(rest);
                rest = &rest[n..];
                let mut elements = 0;
                let result = loop {
                    match framer.next_frame() {
                        Ok(Some(Frame::Element(raw))) => {
                            if let Err(e) = element::parse(raw, header, |_| ()) {
                                break Err(e);
                            }
                            elements += 1;
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => break Ok(elements),
                        Err(e) => break Err(e),
                    }
                };
                self.run.after = match (self.run.after.take(), result) {
                    (Some(Ok(a)), Ok(b)) => Some(Ok(a + b)),
                    (_, r) => Some(r),
                };
                continue;
            }
            let Some(m) = self.machine.as_mut() else {
                return;
            };
            let buf = m.receive_buffer();
            let n = buf.len().min(rest.len());
            buf[..n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            let result = m.received(n);
            if n == 0 && result.is_ok() {
                panic!("the receive buffer is full and no error was reported");
            }
            if let Err(e) = result {
                self.run.error = Some(e);
            }
            self.settle();
        }
    }

    /// What happened so far.
    pub fn finish(self) -> Run {
        let run = self.run;
        assert!(
            std::str::from_utf8(&run.output).is_ok(),
            "the machine sent bytes that are not UTF-8"
        );
        run
    }
}

/// Feeds `epochs` (one read per epoch) and then `tail`, cut into reads of `chunk` bytes.
pub fn replay_with_tail<M: Negotiator>(
    machine: M,
    tls: TlsInfo,
    epochs: &[&[u8]],
    tail: &[u8],
    chunk: usize,
) -> Run {
    let mut replay = Replay::new(machine, tls);
    for epoch in epochs {
        replay.feed(epoch);
    }
    for piece in tail.chunks(chunk.max(1)) {
        replay.feed(piece);
    }
    replay.finish()
}

/// The first `k` bytes of `epochs`, still cut at the epoch boundary.
pub fn prefix(epochs: &[Vec<u8>], k: usize) -> Vec<&[u8]> {
    let mut left = k;
    let mut out = Vec::new();
    for epoch in epochs {
        let n = left.min(epoch.len());
        out.push(&epoch[..n]);
        left -= n;
    }
    out
}

//! The negotiation as the RFC prints it: one `I:` (initiating entity) or `R:` (receiving
//! entity) line per stream header or top-level element, the TLS handshake as one annotated
//! line, credentials redacted.
//!
//! [`Transcript`] is a [`driver::Observer`](xmpp_handshake_core::driver::Observer): it sees
//! the plaintext side of every read and write, cuts it into elements with a small
//! depth-counting [`Splitter`] (from the core), and counts protocol round trips (a read that answers a
//! write; the TLS handshake counts as one for TLS 1.3, two for 1.2).

use std::io::Write as _;
use std::time::{Duration, Instant};

use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::driver::Observer;

pub use xmpp_handshake_core::transcript::{redact, REDACTED};
pub use xmpp_handshake_core::xml::splitter::Splitter;

use crate::progress::Progress;
use crate::tls_info::{read_cell, TlsCell, TlsSummary};

/// Which side the transcript is written from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We are the initiating entity: what we send is `I:`.
    Initiating,
    /// We are the receiving entity: what we send is `R:`.
    Receiving,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A header or element the initiating entity sent.
    Initiating(String),
    /// A header or element the receiving entity sent.
    Receiving(String),
    /// The TLS handshake.
    Tls(String),
}

impl Entry {
    /// The printed line.
    pub fn line(&self) -> String {
        match self {
            Entry::Initiating(s) => format!("I: {s}"),
            Entry::Receiving(s) => format!("R: {s}"),
            Entry::Tls(s) => s.clone(),
        }
    }
}

/// Records a negotiation (see the module docs); optionally prints each line as it comes.
pub struct Transcript {
    side: Side,
    entries: Vec<Entry>,
    ours: Splitter,
    theirs: Splitter,
    secrets: Vec<String>,
    tls: TlsCell,
    tls_summary: Option<TlsSummary>,
    awaiting_answer: bool,
    round_trips: u32,
    /// What we sent first went as TLS 1.3 early data, and the server took it.
    early_data: bool,
    live: bool,
    live_prefix: String,
    progress: Option<Progress>,
    started: Instant,
    steps: Vec<(Step, Duration)>,
}

impl Transcript {
    /// A transcript written from `side`; the TLS summary is read from `tls` when the
    /// handshake is done.
    pub fn new(side: Side, tls: TlsCell) -> Self {
        Transcript {
            side,
            entries: Vec::new(),
            ours: Splitter::default(),
            theirs: Splitter::default(),
            secrets: Vec::new(),
            tls,
            tls_summary: None,
            awaiting_answer: false,
            round_trips: 0,
            early_data: false,
            live: false,
            live_prefix: String::new(),
            progress: None,
            started: Instant::now(),
            steps: Vec::new(),
        }
    }

    /// Replace `secret` by `[redacted]` wherever it appears.
    pub fn redact_secret(&mut self, secret: &str) {
        self.secrets.push(secret.to_string());
    }

    /// Print each line on stderr as it is recorded (`--trace`).
    pub fn print_live(&mut self, live: bool) {
        self.live = live;
    }

    /// Put `prefix` before every live line (e.g. the peer's address on a server).
    pub fn live_prefix(&mut self, prefix: &str) {
        self.live_prefix = prefix.to_string();
    }

    /// Report steps on a progress display.
    pub fn with_progress(&mut self, progress: Progress) {
        self.progress = Some(progress);
    }

    /// The recorded lines.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The printed transcript, one line per entry.
    pub fn lines(&self) -> Vec<String> {
        self.entries.iter().map(Entry::line).collect()
    }

    /// Protocol round trips so far.
    pub fn round_trips(&self) -> u32 {
        self.round_trips
    }

    /// What the TLS handshake negotiated, once done.
    pub fn tls(&self) -> Option<&TlsSummary> {
        self.tls_summary.as_ref()
    }

    /// The steps seen, with the time since the transcript was created.
    pub fn steps(&self) -> &[(Step, Duration)] {
        &self.steps
    }

    /// Takes the progress display back (to finish it).
    pub fn take_progress(&mut self) -> Option<Progress> {
        self.progress.take()
    }

    fn push(&mut self, entry: Entry) {
        if self.live {
            let _ = writeln!(std::io::stderr(), "{}{}", self.live_prefix, entry.line());
        }
        self.entries.push(entry);
    }

    fn record(&mut self, ours: bool, bytes: &[u8]) {
        let splitter = if ours {
            &mut self.ours
        } else {
            &mut self.theirs
        };
        let items = splitter.feed(bytes);
        let initiating = ours == (self.side == Side::Initiating);
        for item in items {
            let text = redact(&item, &self.secrets);
            self.push(if initiating {
                Entry::Initiating(text)
            } else {
                Entry::Receiving(text)
            });
        }
    }
}

impl Observer for Transcript {
    fn sent(&mut self, bytes: &[u8]) {
        self.awaiting_answer = true;
        self.record(true, bytes);
    }

    fn received(&mut self, bytes: &[u8]) {
        if std::mem::take(&mut self.awaiting_answer) {
            self.round_trips += 1;
        }
        self.record(false, bytes);
    }

    fn step(&mut self, step: Step) {
        self.steps.push((step, self.started.elapsed()));
        if let Some(p) = &mut self.progress {
            p.step(step);
        }
    }

    fn tls_established(&mut self) {
        self.ours = Splitter::default();
        self.theirs = Splitter::default();
        self.awaiting_answer = false;
        let summary = read_cell(&self.tls);
        let line = match &summary {
            Some(s) => {
                self.round_trips += s.round_trips();
                s.transcript_line()
            }
            None => {
                self.round_trips += 1;
                "-- TLS handshake --".to_string()
            }
        };
        self.tls_summary = summary;
        self.push(Entry::Tls(line));
    }
}

/// Records the stanza phase (after negotiation) into the same transcript.
impl Transcript {
    /// We sent `bytes` as TLS 1.3 early data (0-RTT) and the server took them: recorded,
    /// but its answer came in the handshake's flight, a round trip counted with the TLS
    /// handshake already.
    pub fn early_data_sent(&mut self, bytes: &[u8]) {
        self.early_data = true;
        self.record(true, bytes);
    }

    /// Whether the server took what we sent as TLS 1.3 early data.
    pub fn early_data(&self) -> bool {
        self.early_data
    }

    /// We sent `text` after negotiation.
    pub fn stanza_sent(&mut self, text: &str) {
        self.sent(text.as_bytes());
    }

    /// We received `text` after negotiation.
    pub fn stanza_received(&mut self, text: &str) {
        self.received(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_round_trips_and_tls() {
        let cell = TlsCell::default();
        *cell.lock().unwrap() = Some(TlsSummary {
            version: "TLS 1.3".into(),
            cipher_suite: "TLS13_AES_128_GCM_SHA256".into(),
            server_certificate: None,
        });
        let mut t = Transcript::new(Side::Initiating, cell);
        t.sent(b"<stream:stream to='x' version='1.0'>");
        t.sent(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        t.received(b"<stream:stream from='x' version='1.0'><stream:features/>");
        t.received(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
        t.tls_established();
        t.sent(b"<stream:stream to='x' version='1.0'>");
        t.received(b"<stream:stream from='x' version='1.0'>");
        assert_eq!(t.round_trips(), 3);
        let lines = t.lines();
        assert_eq!(lines.len(), 8, "{lines:#?}");
        assert!(lines[0].starts_with("I: <stream:stream"));
        assert!(lines[2].starts_with("R: <stream:stream"));
        assert_eq!(
            lines[5],
            "-- TLS 1.3 handshake (TLS13_AES_128_GCM_SHA256) --"
        );
    }
}

//! The negotiation as the RFC prints it: one `I:` (initiating entity) or `R:` (receiving
//! entity) line per stream header or top-level element, the TLS handshake as one annotated
//! line, credentials redacted.
//!
//! [`Transcript`] is a [`driver::Observer`](xmpp_handshake_core::driver::Observer): it sees
//! the plaintext side of every read and write, cuts it into elements with a small
//! depth-counting [`Splitter`], and counts protocol round trips (a read that answers a
//! write; the TLS handshake counts as one for TLS 1.3, two for 1.2).

use std::io::Write as _;
use std::time::{Duration, Instant};

use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::driver::Observer;

use crate::progress::Progress;
use crate::tls_info::{read_cell, TlsCell, TlsSummary};

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

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

/// Cuts a byte stream into stream headers, top-level elements and closing tags.
///
/// Markup is ASCII, so bytes are scanned as they come; an element split across reads is
/// held until it is complete. Whitespace between elements (keepalives) is dropped.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: Vec<u8>,
    /// Nesting below the stream root.
    depth: u32,
    in_tag: bool,
    quote: Option<u8>,
    tag_start: usize,
}

impl Splitter {
    /// Feeds `bytes`; returns what became complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if !self.in_tag && self.depth == 0 && self.buf.is_empty() && b.is_ascii_whitespace() {
                continue;
            }
            self.buf.push(b);
            if self.in_tag {
                match (self.quote, b) {
                    (Some(q), _) if q == b => self.quote = None,
                    (Some(_), _) => {}
                    (None, b'\'' | b'"') => self.quote = Some(b),
                    (None, b'>') => {
                        self.in_tag = false;
                        if self.end_of_tag() {
                            out.push(String::from_utf8_lossy(&self.buf).into_owned());
                            self.buf.clear();
                        }
                    }
                    _ => {}
                }
            } else if b == b'<' {
                self.in_tag = true;
                self.tag_start = self.buf.len() - 1;
            }
        }
        out
    }

    /// A tag ended at the end of `buf`: adjusts the depth; true when an item is complete.
    fn end_of_tag(&mut self) -> bool {
        let tag = &self.buf[self.tag_start..];
        let inner = &tag[1..tag.len() - 1];
        if inner.starts_with(b"?") || inner.starts_with(b"!") {
            // XML declaration or comment: part of what follows.
            return false;
        }
        if let Some(name) = inner.strip_prefix(b"/") {
            if self.depth == 0 || is_stream_root(name) {
                // The closing tag of the stream.
                self.depth = 0;
                return true;
            }
            self.depth -= 1;
            return self.depth == 0;
        }
        if inner.ends_with(b"/") {
            return self.depth == 0;
        }
        if self.depth == 0 && is_stream_root(inner) {
            // The stream header (TCP framing): the root stays open.
            return true;
        }
        self.depth += 1;
        false
    }
}

fn is_stream_root(tag: &[u8]) -> bool {
    let name_end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || *b == b'/')
        .unwrap_or(tag.len());
    let name = &tag[..name_end];
    name == b"stream" || name.ends_with(b":stream")
}

/// Hides credentials: the payload of `<auth>` and `<response>` (SASL initial response and
/// responses: SCRAM proofs, PLAIN passwords) and every occurrence of a known secret.
pub fn redact(element: &str, secrets: &[String]) -> String {
    let mut s = element.to_string();
    let trimmed = s.trim_start();
    if trimmed.starts_with("<auth") || trimmed.starts_with("<response") {
        if let (Some(open_end), Some(close)) = (s.find('>'), s.rfind("</")) {
            if open_end + 1 < close && &s[open_end..open_end + 2] != "/>" {
                let payload = &s[open_end + 1..close];
                if !payload.is_empty() && payload != "=" {
                    s.replace_range(open_end + 1..close, REDACTED);
                }
            }
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret.as_str(), REDACTED);
    }
    s
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
    fn splits_header_elements_and_closing_tag() {
        let mut s = Splitter::default();
        let input = "<?xml version='1.0'?><stream:stream to='example.com' xmlns='jabber:client' \
                     xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\
                     <stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features> \
                     <proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
        let mut items = Vec::new();
        // Byte by byte: elements split across reads are held until complete.
        for b in input.as_bytes() {
            items.extend(s.feed(&[*b]));
        }
        assert_eq!(items.len(), 4, "{items:#?}");
        assert!(items[0].starts_with("<?xml version='1.0'?><stream:stream"));
        assert!(items[1].starts_with("<stream:features>"));
        assert!(items[1].ends_with("</stream:features>"));
        assert_eq!(
            items[2],
            "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        );
        assert_eq!(items[3], "</stream:stream>");
    }

    #[test]
    fn quoted_angle_brackets_do_not_end_a_tag() {
        let mut s = Splitter::default();
        let items = s.feed(b"<message to='a>b'><body>x</body></message>");
        assert_eq!(items, vec!["<message to='a>b'><body>x</body></message>"]);
    }

    #[test]
    fn auth_and_response_payloads_are_redacted() {
        let secrets = vec!["hunter2".to_string()];
        assert_eq!(
            redact(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1qdWxpZXQ=</auth>",
                &secrets
            ),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>[redacted]</auth>"
        );
        assert_eq!(
            redact(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdz</response>",
                &secrets
            ),
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</response>"
        );
        assert_eq!(
            redact(
                "<message><body>my password is hunter2</body></message>",
                &secrets
            ),
            "<message><body>my password is [redacted]</body></message>"
        );
        let challenge = "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtv</challenge>";
        assert_eq!(redact(challenge, &secrets), challenge);
    }

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

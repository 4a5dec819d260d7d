//! `connect` after the login: online until Ctrl-C, printing what arrives, or
//! `--send-lines TO`: one chat message to TO per line of standard input, done when the
//! server has acknowledged every one.
//!
//! Stream management (XEP-0198) is asked for after binding. When the link drops, the
//! client connects again (at once, then after 1, 2, 4 … 30 s, `--reconnect` attempts; the
//! count starts over once a connection got anywhere) with the login memory of the first
//! login (no PBKDF2 again) and resumes the session (§5): the server's `h` says which
//! stanzas it has, the core sends the rest again. When the server lost the session
//! (`<failed/>`), a new one is bound and exactly the lines not known delivered are sent
//! again, named on stderr: a line the server had taken without acknowledging it yet then
//! arrives twice (XEP-0198 cannot tell), which the same message `id` lets a recipient see.
//!
//! A line is confirmed by the server's `<a h=…/>` (§4) covering its number. Without stream
//! management (not offered, or `<enable/>` refused) lines cannot be confirmed one by one:
//! they are confirmed together when the server answers our closing tag (RFC 6120 §4.4: it
//! read everything before it), and a line sent on a link that dropped stays unconfirmed
//! (not sent again: it may have arrived). `--send-lines` exits 0 only when every line read
//! was confirmed, else 6 with how many were not and which.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, BufReader, Stdin};
use xmpp_handshake_core::connection::Event;
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sm::{SmConfig, SmState};
use xmpp_handshake_core::stanza;
use xmpp_handshake_core::stream::error::StreamErrorCondition;
use xmpp_handshake_core::Error;
use xmpp_handshake_tokio::bound::Sender;
use xmpp_handshake_tokio::client::Error as LibraryError;
use xmpp_handshake_tokio::Incoming;

use crate::cli::ConnectArgs;
use crate::client::{ClientSession, ClientTrust, LoggedIn, Login};
use crate::connect::{establish, CLOSE_TIMEOUT};
use crate::exit::{ExitCode, Failure};
use crate::resolve::{Security, Targets};
use crate::transcript::Transcript;

/// Lines sent and not acknowledged at most: below stream management's bound of
/// unacknowledged stanzas ([`SmConfig::max_unacked`], 256), so a send is never refused.
pub const WINDOW: usize = 128;

/// Longest wait between two reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Stream management as `connect` asks for it: resumable, `<r/>` after 8 stanzas or when
/// one went 250 ms without one (the last lines of a burst are confirmed at once).
pub fn sm_config() -> SmConfig {
    SmConfig {
        request_every: 8,
        request_after: Some(Duration::from_millis(250)),
        ..SmConfig::default()
    }
}

/// The wait before reconnection attempt `attempt` (from 1): none, then 1, 2, 4 … 30 s.
pub fn backoff(attempt: u32) -> Duration {
    match attempt {
        0 | 1 => Duration::ZERO,
        n => Duration::from_secs(1u64 << (n - 2).min(5)).min(MAX_BACKOFF),
    }
}

/// `3, 5-9, 12`: a set of line numbers, runs folded.
pub fn ranges(lines: &BTreeSet<usize>) -> String {
    let mut out = String::new();
    let mut iter = lines.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        let _ = if end == start {
            write!(out, "{start}")
        } else {
            write!(out, "{start}-{end}")
        };
    }
    out
}

/// A line as a message body: without its line ending, and with the characters XML 1.0
/// cannot carry (control characters but tab) replaced by U+FFFD.
fn body(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let text = text.strip_suffix('\n').unwrap_or(&text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    text.chars()
        .map(|c| {
            if (c.is_control() && c != '\t') || c == '\u{FFFE}' || c == '\u{FFFF}' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// What one stream-management number stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// Our initial presence (sent again on every new session, never resent as such).
    Presence,
    /// The line with this number (from 1).
    Line(usize),
}

/// The lines read and what became of them. Each line is in exactly one of: `to_send`,
/// `numbered` (sent, tracked, not acknowledged), `unconfirmed` (sent on this stream
/// without stream management), `lost` (sent without stream management on a stream that
/// dropped), or confirmed (then only counted).
#[derive(Debug, Default)]
struct Ledger {
    /// Bodies of the lines not confirmed yet.
    bodies: BTreeMap<usize, String>,
    /// Lines to send on the current stream, in order.
    to_send: BTreeSet<usize>,
    /// Sent and tracked: the number stream management gave each.
    numbered: BTreeMap<u64, Item>,
    /// Sent on the current stream without stream management.
    unconfirmed: BTreeSet<usize>,
    /// Sent without stream management on a stream that dropped: may or may not have
    /// arrived.
    lost: BTreeSet<usize>,
    /// Lines sent again after the server lost the session.
    resent: BTreeSet<usize>,
    /// Lines read.
    read: usize,
    /// Lines confirmed.
    confirmed: usize,
    /// Of them, confirmed by the closing handshake (no stream management).
    by_close: usize,
}

impl Ledger {
    fn push(&mut self, body: String) {
        self.read += 1;
        self.bodies.insert(self.read, body);
        self.to_send.insert(self.read);
    }

    fn lines_in_flight(&self) -> usize {
        self.numbered
            .values()
            .filter(|i| matches!(i, Item::Line(_)))
            .count()
    }

    fn confirm(&mut self, line: usize) {
        if self.bodies.remove(&line).is_some() {
            self.confirmed += 1;
        }
    }

    /// The peer acknowledged `numbers`.
    fn acked(&mut self, numbers: std::ops::Range<u64>) -> usize {
        let mut lines = 0;
        for n in numbers {
            if let Some(Item::Line(line)) = self.numbered.remove(&n) {
                self.confirm(line);
                lines += 1;
            }
        }
        lines
    }

    /// These numbers are not known delivered and will never be acknowledged: their lines
    /// go out again. Returns the lines.
    fn not_delivered(&mut self, numbers: impl IntoIterator<Item = u64>) -> BTreeSet<usize> {
        let mut lines = BTreeSet::new();
        for n in numbers {
            if let Some(Item::Line(line)) = self.numbered.remove(&n) {
                lines.insert(line);
            }
        }
        self.to_send.extend(&lines);
        self.resent.extend(&lines);
        lines
    }

    /// These numbers went out on a stream whose `<enable/>` was refused: sent, never to
    /// be acknowledged.
    fn unacknowledgeable(&mut self, numbers: impl IntoIterator<Item = u64>) {
        for n in numbers {
            if let Some(Item::Line(line)) = self.numbered.remove(&n) {
                self.unconfirmed.insert(line);
            }
        }
    }

    /// The stream dropped. With `state` (stream management was on) the numbered lines wait
    /// for the resumption; without, they are not known delivered (returned, to be sent
    /// again). Lines sent without stream management are lost track of.
    fn dropped(&mut self, state: bool) -> BTreeSet<usize> {
        self.lost.append(&mut self.unconfirmed);
        if state {
            return BTreeSet::new();
        }
        let numbers: Vec<u64> = self.numbered.keys().copied().collect();
        self.not_delivered(numbers)
    }

    /// Every line read was confirmed.
    fn all_confirmed(&self) -> bool {
        self.bodies.is_empty()
    }

    /// Nothing is waiting to go out or for an acknowledgement.
    fn settled(&self) -> bool {
        self.to_send.is_empty() && self.lines_in_flight() == 0
    }

    fn unconfirmed_lines(&self) -> BTreeSet<usize> {
        self.bodies.keys().copied().collect()
    }
}

/// Whether stream management runs on the current stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sm {
    /// Not known yet.
    Unknown,
    /// Enabled (or being enabled).
    On,
    /// Not offered, refused, or not asked for.
    Off,
}

/// One connection's bound stream.
struct Link {
    session: ClientSession,
    sender: Sender,
    transcript: Transcript,
    sm: Sm,
    /// A resumption was asked for: nothing is sent before its outcome is known (lines
    /// go out in order).
    resuming: bool,
    /// Stream management refused a send (its queue full): wait for an ack.
    full: bool,
    /// The connection got somewhere (a stanza or an ack arrived).
    progressed: bool,
}

impl Link {
    fn new(session: ClientSession, transcript: Transcript, resuming: bool) -> Self {
        Link {
            sender: session.sender(),
            session,
            transcript,
            sm: Sm::Unknown,
            resuming,
            full: false,
            progressed: false,
        }
    }
}

/// What `connect` needs to connect again.
pub struct Reconnect<'a> {
    /// The command line.
    pub args: &'a ConnectArgs,
    /// Where to connect.
    pub targets: &'a Targets,
    /// The login (its memory keeps the SCRAM keys of the first one).
    pub login: &'a mut Login,
    /// The certificate policy.
    pub trust: &'a ClientTrust,
    /// Keeps the login memory (the login cache) when an attempt changed it: the FAST
    /// `count` raised before it (XEP-0484 §3.4), so no count is ever sent twice, by this
    /// process or the next.
    pub keep_memory: &'a mut dyn FnMut(&LoginMemory),
}

/// How the stream ended, in words, and whether connecting again makes sense.
fn why_ended(end: &Result<(), Error>) -> (String, bool) {
    match end {
        Ok(()) => ("the server closed the stream".into(), true),
        Err(error @ Error::StreamErrorReceived(e))
            if e.condition == StreamErrorCondition::Conflict =>
        {
            (
                format!(
                    "{} (another client bound the same resource; not reconnecting, that \
                     would take it back)",
                    crate::exit::from_core(error).message
                ),
                false,
            )
        }
        Err(e) => (crate::exit::from_core(e).message, true),
    }
}

/// Runs the bound stream of the first login (see the module docs); `to` is `--send-lines`'
/// recipient.
pub async fn run(
    mut reconnect: Reconnect<'_>,
    session: ClientSession,
    transcript: Transcript,
    to: Option<&str>,
) -> Result<(), Failure> {
    let mut ledger = Ledger::default();
    let mut stdin: Option<BufReader<Stdin>> = to.map(|_| BufReader::new(tokio::io::stdin()));
    let mut partial = Vec::new();
    let mut stdin_done = false;
    // One id per run: a line keeps its id when sent again.
    let run_id = format!(
        "{:08x}",
        rand_core::RngCore::next_u32(&mut rand_core::OsRng)
    );
    let mut link = Link::new(session, transcript, false);
    let mut attempts_since_progress = 0u32;
    let mut reconnections = 0u32;
    let mut resumed = 0u32;
    let mut fresh = 0u32;
    let mut failure_reason: Option<String> = None;
    if to.is_none() {
        send_presence(&mut link, &mut ledger).await;
        eprintln!("xmpp-handshake: printing incoming stanzas; Ctrl-C to close");
    }
    'streams: loop {
        // What can go out now, in order.
        if let Some(to) = to {
            while !link.resuming && !link.full {
                let Some(line) = ledger.to_send.first().copied() else {
                    break;
                };
                if ledger.lines_in_flight() >= WINDOW {
                    break;
                }
                let body = ledger.bodies.get(&line).cloned().unwrap_or_default();
                let message = stanza::message(to, &body, Some(&format!("{run_id}-{line}")));
                link.transcript.stanza_sent(&message);
                match link.sender.send_tracked(&message).await {
                    Ok(Some(number)) => {
                        ledger.to_send.remove(&line);
                        ledger.numbered.insert(number, Item::Line(line));
                        link.sm = Sm::On;
                    }
                    Ok(None) => {
                        ledger.to_send.remove(&line);
                        ledger.unconfirmed.insert(line);
                        if link.sm == Sm::Unknown {
                            eprintln!(
                                "xmpp-handshake: the server does not offer stream management \
                                 (XEP-0198): lines cannot be acknowledged one by one, only \
                                 together by the closing handshake at the end"
                            );
                        }
                        link.sm = Sm::Off;
                    }
                    Err(LibraryError::Refused(e)) => {
                        eprintln!("xmpp-handshake: line {line} waits: {e}");
                        link.full = true;
                    }
                    // The stream is over: the line goes out on the next one; the end is
                    // read below.
                    Err(_) => break,
                }
            }
        }
        if to.is_some() && stdin_done && ledger.settled() && !link.resuming {
            // Everything read went out and, with stream management, was acknowledged.
            link.transcript.stanza_sent("</stream:stream>");
            let closed = tokio::time::timeout(CLOSE_TIMEOUT, link.session.close()).await;
            let clean = matches!(closed, Ok(Ok(())));
            if clean {
                for line in std::mem::take(&mut ledger.unconfirmed) {
                    ledger.confirm(line);
                    ledger.by_close += 1;
                }
            } else if !ledger.unconfirmed.is_empty() {
                failure_reason = Some("the server did not answer our closing tag".into());
            }
            break 'streams;
        }
        let can_read = stdin.is_some()
            && !stdin_done
            && !link.resuming
            && ledger.to_send.is_empty()
            && ledger.lines_in_flight() < WINDOW;
        let end = tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                link.transcript.stanza_sent("</stream:stream>");
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.session.close()).await;
                if to.is_none() {
                    eprintln!("xmpp-handshake: closed");
                    return Ok(());
                }
                failure_reason = Some("interrupted".into());
                break 'streams;
            }
            read = read_line(stdin.as_mut(), &mut partial), if can_read => {
                match read {
                    Ok(Some(raw)) => ledger.push(body(&raw)),
                    Ok(None) => stdin_done = true,
                    Err(e) => {
                        eprintln!("xmpp-handshake: reading standard input: {e}; no more lines");
                        stdin_done = true;
                    }
                }
                continue 'streams;
            }
            incoming = link.session.next_incoming() => match incoming {
                Ok(Some(Incoming::Stanza(stanza))) => {
                    link.progressed = true;
                    link.transcript.stanza_received(stanza.raw());
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{}", stanza.raw());
                    let _ = out.flush();
                    continue 'streams;
                }
                Ok(Some(Incoming::StreamManagement(event))) => {
                    let fresh_session = sm_event(event, &mut link, &mut ledger);
                    if fresh_session {
                        fresh += 1;
                        if to.is_none() {
                            send_presence(&mut link, &mut ledger).await;
                        }
                    }
                    continue 'streams;
                }
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
        };

        // The stream is over.
        let state = link.session.take_sm_state();
        let (why, again) = why_ended(&end);
        eprintln!("xmpp-handshake: the link was lost: {why}");
        let resend = ledger.dropped(state.is_some());
        if !resend.is_empty() {
            eprintln!(
                "xmpp-handshake: lines {} are not known delivered (no session to resume); \
                 they will be sent again",
                ranges(&resend)
            );
        }
        if link.progressed {
            attempts_since_progress = 0;
        }
        if !again || reconnect.args.reconnect == 0 {
            let reason = if again {
                format!("{why}; not reconnecting (--reconnect 0)")
            } else {
                why
            };
            if to.is_none() {
                return Err(Failure::protocol(reason));
            }
            failure_reason = Some(reason);
            break 'streams;
        }
        match connect_again(&mut reconnect, state, &mut attempts_since_progress).await {
            Ok(new_link) => {
                reconnections += 1;
                if new_link.resuming {
                    resumed += 1;
                } else if to.is_none() {
                    link = new_link;
                    send_presence(&mut link, &mut ledger).await;
                    continue 'streams;
                }
                link = new_link;
            }
            Err(f) => {
                if to.is_none() {
                    return Err(f);
                }
                failure_reason = Some(f.message);
                break 'streams;
            }
        }
    }
    // `--send-lines` is over: the verdict.
    let Some(to) = to else {
        return Ok(());
    };
    let resumptions = resumed.saturating_sub(fresh);
    let history = if reconnections == 0 {
        String::new()
    } else {
        format!(
            "; {reconnections} reconnection{}, {resumptions} resumed{}",
            if reconnections == 1 { "" } else { "s" },
            if ledger.resent.is_empty() {
                String::new()
            } else {
                format!(
                    ", lines {} sent again after the server lost the session",
                    ranges(&ledger.resent)
                )
            }
        )
    };
    if ledger.all_confirmed() && (stdin_done || ledger.read == 0) && failure_reason.is_none() {
        let how = if ledger.by_close == 0 {
            "every one acknowledged by the server (XEP-0198)".to_string()
        } else if ledger.by_close == ledger.read {
            "confirmed by the server's closing tag (no stream management)".to_string()
        } else {
            format!(
                "{} acknowledged by the server (XEP-0198), {} confirmed by its closing tag",
                ledger.read - ledger.by_close,
                ledger.by_close
            )
        };
        eprintln!(
            "xmpp-handshake: {} line{} sent to {to}, {how}{history}",
            ledger.read,
            if ledger.read == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    let missing = ledger.unconfirmed_lines();
    let mut message = format!(
        "{} of {} lines read not acknowledged by the server",
        missing.len(),
        ledger.read
    );
    if !missing.is_empty() {
        let _ = write!(message, ": lines {}", ranges(&missing));
    }
    if !ledger.lost.is_empty() {
        let _ = write!(
            message,
            " (lines {} were sent without stream management on a link that dropped: they \
             may or may not have arrived)",
            ranges(&ledger.lost)
        );
    }
    if !stdin_done {
        message.push_str("; standard input was not read to its end");
    }
    if let Some(reason) = failure_reason {
        let _ = write!(message, "; {reason}");
    }
    message.push_str(&history);
    Err(Failure::new(ExitCode::Protocol, message))
}

/// Reads one line (with its `\n`, if any) of `stdin`; `None` at the end. Cancel-safe:
/// what a cancelled read took stays in `partial`.
async fn read_line(
    stdin: Option<&mut BufReader<Stdin>>,
    partial: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let Some(stdin) = stdin else {
        return Ok(None);
    };
    let n = stdin.read_until(b'\n', partial).await?;
    if n == 0 && partial.is_empty() {
        return Ok(None);
    }
    Ok(Some(std::mem::take(partial)))
}

/// Our initial presence (RFC 6121 §4.2), on every new session.
async fn send_presence(link: &mut Link, ledger: &mut Ledger) {
    let presence = stanza::presence(None);
    link.transcript.stanza_sent(&presence);
    if let Ok(Some(number)) = link.sender.send_tracked(&presence).await {
        ledger.numbered.insert(number, Item::Presence);
    }
}

/// Acts on a stream-management event; whether a new session was bound in place of the
/// one asked for.
fn sm_event(event: Event, link: &mut Link, ledger: &mut Ledger) -> bool {
    match event {
        Event::SmEnabled { id, max, .. } => {
            link.sm = Sm::On;
            let resumable = match (id, max) {
                (Some(_), Some(max)) => format!("resumable for {max} s"),
                (Some(_), None) => "resumable".into(),
                (None, _) => "not resumable: a lost link loses the session".into(),
            };
            eprintln!("xmpp-handshake: stream management on (XEP-0198; {resumable})");
            false
        }
        Event::SmFailed {
            condition,
            not_acknowledged,
        } => {
            link.sm = Sm::Off;
            ledger.unacknowledgeable(not_acknowledged.into_iter().map(|(n, _)| n));
            eprintln!(
                "xmpp-handshake: the server refused stream management ({}): lines are \
                 confirmed only by the closing handshake",
                condition.as_deref().unwrap_or("no reason given")
            );
            false
        }
        Event::Acked { numbers, .. } => {
            link.progressed = true;
            link.full = false;
            ledger.acked(numbers);
            false
        }
        Event::Resumed { h, acked, resent } => {
            link.progressed = true;
            link.resuming = false;
            link.sm = Sm::On;
            ledger.acked(acked.clone());
            eprintln!(
                "xmpp-handshake: session resumed (XEP-0198; the server had {h} of our stanzas: \
                 {} acknowledged now, {} sent again)",
                acked.end - acked.start,
                resent.end - resent.start
            );
            false
        }
        Event::ResumeFailed {
            condition,
            delivered,
            not_delivered,
            ..
        } => {
            link.resuming = false;
            ledger.acked(delivered);
            let lines = ledger.not_delivered(not_delivered.into_iter().map(|(n, _)| n));
            let why = condition
                .as_deref()
                .unwrap_or("it was not resumable, or stream management is not offered now");
            if lines.is_empty() {
                eprintln!(
                    "xmpp-handshake: the server lost the session ({why}); a new one was bound, \
                     nothing was waiting for an acknowledgement"
                );
            } else {
                eprintln!(
                    "xmpp-handshake: the server lost the session ({why}); a new one was bound. \
                     Not acknowledged: lines {}; sending them again (a line the server took \
                     without acknowledging it arrives twice)",
                    ranges(&lines)
                );
            }
            true
        }
        _ => false,
    }
}

/// Connects again after a drop, resuming `state` when there is one: at most
/// `--reconnect` attempts since the last connection that got anywhere, the first at once,
/// then with [`backoff`]. An authentication or certificate failure ends it at once
/// (retrying cannot help). Ctrl-C during a wait ends it too.
async fn connect_again(
    reconnect: &mut Reconnect<'_>,
    state: Option<SmState>,
    attempts: &mut u32,
) -> Result<Link, Failure> {
    let limit = reconnect.args.reconnect;
    let resuming = state.is_some();
    reconnect.login.resume = state;
    let mut last = None;
    while *attempts < limit {
        *attempts += 1;
        let delay = backoff(*attempts);
        if delay.is_zero() {
            eprintln!(
                "xmpp-handshake: reconnecting (attempt {} of {limit})",
                *attempts
            );
        } else {
            eprintln!(
                "xmpp-handshake: reconnecting in {} s (attempt {} of {limit})",
                delay.as_secs(),
                *attempts
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = tokio::signal::ctrl_c() => {
                return Err(Failure::protocol("interrupted while reconnecting"));
            }
        }
        if let Some(memory) = &mut reconnect.login.memory {
            if memory.next_attempt_count().is_some() {
                (reconnect.keep_memory)(memory);
            }
        }
        match establish(
            reconnect.args,
            reconnect.targets,
            reconnect.login,
            reconnect.trust,
        )
        .await
        {
            Ok((logged_in, mut transcript, security)) => {
                if let Some(mut p) = transcript.take_progress() {
                    p.finish();
                }
                online_again(&logged_in, &transcript, security);
                return Ok(Link::new(logged_in.session, transcript, resuming));
            }
            Err(f) if matches!(f.code, ExitCode::Authentication | ExitCode::Certificate) => {
                return Err(f.context("reconnecting"));
            }
            Err(f) => {
                eprintln!("xmpp-handshake: attempt {} failed: {f}", *attempts);
                last = Some(f);
            }
        }
    }
    let reason = last.map(|f| f.message).unwrap_or_default();
    Err(Failure::protocol(format!(
        "gave up reconnecting after {limit} attempt{}{}",
        if limit == 1 { "" } else { "s" },
        if reason.is_empty() {
            String::new()
        } else {
            format!(" (last: {reason})")
        }
    )))
}

/// The line `connect` prints when it is online again.
fn online_again(logged_in: &LoggedIn, transcript: &Transcript, security: Security) {
    let outcome = logged_in.session.outcome();
    let mechanism = outcome.mechanism.map(|m| m.name()).unwrap_or("no SASL");
    let tls = transcript
        .tls()
        .map(|t| format!("{} {}", t.version, t.cipher_suite))
        .unwrap_or_else(|| "no TLS".into());
    let early = if transcript.early_data() {
        " with 0-RTT early data"
    } else {
        ""
    };
    eprintln!(
        "xmpp-handshake: online again as {} ({mechanism}, {}, {tls}{early}, {} round trips, {:.1} ms)",
        logged_in.jid,
        security.name(),
        transcript.round_trips(),
        logged_in.elapsed.as_secs_f64() * 1000.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_fold_runs() {
        let set: BTreeSet<usize> = [1, 2, 3, 5, 7, 8].into();
        assert_eq!(ranges(&set), "1-3, 5, 7-8");
        assert_eq!(ranges(&BTreeSet::new()), "");
    }

    #[test]
    fn backoff_starts_at_once_and_is_bounded() {
        let waits: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_line_loses_its_ending_and_what_xml_cannot_carry() {
        assert_eq!(body(b"hello\r\n"), "hello");
        assert_eq!(body(b"a\tb\x01c"), "a\tb\u{FFFD}c");
        assert_eq!(body(b"caf\xc3\xa9\n"), "café");
    }

    #[test]
    fn a_lost_session_resends_exactly_the_unacknowledged_lines() {
        let mut ledger = Ledger::default();
        for i in 1..=5 {
            ledger.push(format!("line {i}"));
        }
        for (n, line) in (1..=5u64).zip(1..=5usize) {
            ledger.to_send.remove(&line);
            ledger.numbered.insert(n, Item::Line(line));
        }
        assert_eq!(ledger.acked(1..3), 2);
        assert!(ledger.dropped(true).is_empty(), "with a state, lines wait");
        let again = ledger.not_delivered([4, 5]);
        assert_eq!(again, [4, 5].into());
        assert_eq!(ledger.to_send, [4, 5].into());
        assert_eq!(ledger.unconfirmed_lines(), [3, 4, 5].into());
        ledger.acked(3..4);
        assert_eq!(ledger.unconfirmed_lines(), [4, 5].into());
        assert!(!ledger.settled());
    }

    #[test]
    fn without_a_state_the_tracked_lines_go_out_again() {
        let mut ledger = Ledger::default();
        ledger.push("a".into());
        ledger.push("b".into());
        ledger.to_send.clear();
        ledger.numbered.insert(1, Item::Presence);
        ledger.numbered.insert(2, Item::Line(1));
        ledger.unconfirmed.insert(2);
        assert_eq!(ledger.dropped(false), [1].into());
        assert_eq!(ledger.lost, [2].into(), "sent without SM: unknown");
        assert!(ledger.numbered.is_empty());
    }
}

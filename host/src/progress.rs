//! Progress of a negotiation on stderr: one updating status line on a terminal, plain
//! lines (`xmpp-handshake: ...`) otherwise.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use xmpp_handshake_core::connection::Step;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// An updating line (stderr is a terminal).
    Terminal,
    /// One plain line per step.
    Lines,
    /// Nothing.
    Off,
}

/// A progress display.
#[derive(Debug)]
pub struct Progress {
    style: Style,
    started: Instant,
    count: usize,
}

impl Progress {
    /// Terminal style when stderr is a terminal, plain lines otherwise.
    pub fn auto() -> Self {
        Progress::new(if std::io::stderr().is_terminal() {
            Style::Terminal
        } else {
            Style::Lines
        })
    }

    /// A display in `style`.
    pub fn new(style: Style) -> Self {
        Progress {
            style,
            started: Instant::now(),
            count: 0,
        }
    }

    /// Shows a free-form status (connecting, resolving, ...).
    pub fn status(&mut self, text: &str) {
        self.count += 1;
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let mut err = std::io::stderr().lock();
        let _ = match self.style {
            Style::Terminal => write!(err, "\r\x1b[2K[{:>2}] {text} ({ms:.0} ms)", self.count),
            Style::Lines => writeln!(err, "xmpp-handshake: {text}"),
            Style::Off => Ok(()),
        };
        let _ = err.flush();
    }

    /// Shows a negotiation step, if it is one worth showing.
    pub fn step(&mut self, step: Step) {
        if let Some(text) = describe(step) {
            self.status(text);
        }
    }

    /// Clears the status line (terminal style) so that what follows starts clean.
    pub fn finish(&mut self) {
        if self.style == Style::Terminal && self.count > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A short description of a step; `None` for steps not worth a line.
pub fn describe(step: Step) -> Option<&'static str> {
    Some(match step {
        Step::HeaderSent => return None,
        Step::HeaderReceived => "stream opened",
        Step::FeaturesSent | Step::FeaturesReceived => return None,
        Step::StartTlsSent => "STARTTLS requested",
        Step::StartTlsReceived => "STARTTLS received",
        Step::ProceedSent | Step::ProceedReceived => "TLS handshake",
        Step::TlsEstablished => "TLS established",
        Step::AuthStarted => "authenticating (SASL)",
        Step::Authenticated => "authenticated",
        Step::StreamRestarted => return None,
        Step::Bound => "resource bound",
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

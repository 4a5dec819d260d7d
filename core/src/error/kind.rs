//! The groups of [`Error`](super::Error) a caller acts on ([`Error::kind`](super::Error::kind)):
//! retry later, ask for another password, show a certificate dialog, fix the
//! configuration, report a broken server.

use core::fmt;

use crate::stream::error::StreamErrorCondition;

/// What kind of thing ended a negotiation or a stream, for a caller that acts on the group
/// rather than on the exact rule ([`Error`](super::Error) keeps that).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ErrorKind {
    /// Authentication failed (SASL, §6): wrong credentials, a refused or broken exchange,
    /// a server that does not know the password. Ask for the credentials again; do not
    /// retry with the same ones in a loop.
    Auth,
    /// The peer's certificate was refused by the certificate policy, or the peer did not
    /// prove it holds the certificate's key (§13.7.2). Show the fingerprints; trust it
    /// only after an out-of-band check (add its CA, pin its key).
    Certificate,
    /// TLS is required and not available: the peer did not offer STARTTLS (possibly
    /// stripped on the way), or our policy disables TLS and the peer requires it (§5.3.1).
    /// Do not retry in plaintext.
    TlsRequired,
    /// STARTTLS was refused or the TLS handshake failed for a reason other than the
    /// certificate (no parameters in common, an alert, a broken transport).
    Tls,
    /// A stream error (§4.9) was sent or received; the condition says which.
    Stream(StreamErrorCondition),
    /// The peer broke a protocol rule and no stream error names it (an unexpected element,
    /// data injected around STARTTLS, SASL offered after success). A broken peer, or an
    /// attack on the path: report it, do not work around it.
    Protocol,
    /// Resource binding failed (§7): a conflict, or the server refused the resource.
    Bind,
    /// The transport failed or closed, or the peer did not answer in time. Retry later,
    /// with a backoff.
    Transport,
    /// Our policy refused what the peer offers: no acceptable SASL mechanism, a
    /// channel-binding downgrade, PLAIN without TLS, a SCRAM iteration count out of
    /// bounds. Do not relax the policy without knowing why the peer offers only that.
    Policy,
    /// The configuration cannot work: missing credentials, a mechanism this build lacks,
    /// a TLS backend set up wrong. Fix the configuration; retrying will not help.
    Config,
    /// This side closed the stream before the negotiation finished.
    Aborted,
}

impl ErrorKind {
    /// A short lowercase name (`auth`, `certificate`, `tls-required`, `stream`, ...): the
    /// same words a log line or a JS error's `kind` can use.
    pub const fn name(self) -> &'static str {
        match self {
            ErrorKind::Auth => "auth",
            ErrorKind::Certificate => "certificate",
            ErrorKind::TlsRequired => "tls-required",
            ErrorKind::Tls => "tls",
            ErrorKind::Stream(_) => "stream",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Bind => "bind",
            ErrorKind::Transport => "transport",
            ErrorKind::Policy => "policy",
            ErrorKind::Config => "config",
            ErrorKind::Aborted => "aborted",
        }
    }

    /// The stream error condition of [`ErrorKind::Stream`].
    pub const fn condition(self) -> Option<StreamErrorCondition> {
        match self {
            ErrorKind::Stream(c) => Some(c),
            _ => None,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Stream(c) => write!(f, "stream ({c})"),
            other => f.write_str(other.name()),
        }
    }
}

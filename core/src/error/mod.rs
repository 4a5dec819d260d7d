//! Everything that can end a negotiation, one variant per rule, so a caller (and a test)
//! can tell exactly which rule fired; [`Error::kind`] groups them by what a caller does
//! about them ([`ErrorKind`]). `Display` says what happened and what to do.
//!
//! A failed TLS handshake is [`Error::Tls`] with a typed [`TlsError`]: the certificate
//! policy's refusal ([`TlsError::Certificate`], the [`CertError`](crate::trust::CertError)
//! itself) travels in the error; no caller reads it back from a verifier afterwards.

mod kind;
#[cfg(test)]
mod tests;
mod tls;

use alloc::string::String;
use core::fmt;

use crate::sasl::SaslError;
use crate::stream::error::{StreamError, StreamErrorCondition};

pub use kind::ErrorKind;
pub use tls::{Alert, HandshakeFailure, TlsError};

/// Why a negotiation ended without a usable stream.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// The peer broke an XML or stream rule; we sent this stream error and closed (§4.9).
    StreamErrorSent(StreamError),
    /// The peer sent a stream error (§4.9) and closed the stream.
    StreamErrorReceived(StreamError),
    /// The peer sent `<see-other-host/>` (§4.9.3.19). Reported, never followed: a redirect
    /// learned over the network must not change whom we authenticate to.
    SeeOtherHost(String),
    /// The peer closed the stream (`</stream:stream>`, §4.4) before negotiation finished.
    PeerClosed,
    /// The transport ended (EOF) before negotiation finished.
    ConnectionClosed,
    /// The transport failed.
    Transport(embedded_io::ErrorKind),
    /// TLS is required by policy but the receiving entity did not offer STARTTLS (§5.3.1);
    /// nothing but the stream header (and, when pipelined, `<starttls/>`) was sent.
    StartTlsNotOffered,
    /// The receiving entity answered `<starttls/>` with `<failure/>` (§5.4.2.2).
    StartTlsFailed,
    /// The receiving entity offered STARTTLS again on a TLS-protected stream (§5.4.3.3).
    StartTlsAfterTls,
    /// Bytes arrived after `<proceed/>` in the plaintext phase (STARTTLS command
    /// injection, §5.4.2.3): closed without feeding them to the TLS-protected stream.
    PlaintextAfterProceed,
    /// Bytes arrived after `<starttls/>` before `<proceed/>` was sent (§5.3.3, §5.4.2.3).
    PlaintextAfterStartTls,
    /// Whitespace between `<starttls/>` and `<proceed/>` (§5.3.3).
    WhitespaceDuringStartTls,
    /// The TLS handshake failed (§5.4.3.2), typed (the certificate policy's refusal, an
    /// alert, ...); the transport was closed without `</stream:stream>`.
    Tls(TlsError),
    /// The peer sent an element the current step does not allow.
    UnexpectedElement {
        /// What this step waits for.
        expected: &'static str,
        /// `{namespace}name` of what came.
        got: String,
    },
    /// The receiving entity's header lacks `version='1.0'` (§4.7.5).
    UnsupportedVersion,
    /// The receiving entity answered with another content namespace (§4.8.2).
    WrongNamespace,
    /// TLS was disabled by policy and the receiving entity requires it (§5.3.1).
    TlsRequiredByPeer,
    /// A SASL exchange failed (§6.4.5).
    Sasl(crate::sasl::SaslError),
    /// The receiving entity answered `<failure/>` (§6.4.5), with its `<text/>` if any.
    AuthenticationFailed {
        /// The typed reason (the condition, or e.g. a rejected channel binding).
        error: crate::sasl::SaslError,
        /// The server's text.
        text: Option<String>,
    },
    /// The receiving entity offered SASL again after SASL succeeded (§6.4.6).
    SaslAfterSuccess,
    /// Resource binding failed (§7.6.2): the condition, or what was missing.
    Bind(String),
    /// The server's bind result names an address that is not a full JID (§7.6.1, RFC
    /// 7622): the rule it breaks.
    BoundJid(crate::jid::JidError),
    /// A step took longer than the configured bound.
    Timeout,
    /// This side closed the stream before the negotiation finished.
    Aborted,
    /// The peer broke a stream-management rule (XEP-0198); the stream ended.
    StreamManagement(crate::sm::SmError),
    /// S2S: the receiving server did not accept our Server Dialback key (XEP-0220 §2.1.4):
    /// `invalid`, or an error such as `remote-server-not-found` when it could not reach
    /// our authoritative server.
    #[cfg(feature = "dialback")]
    DialbackRefused(crate::dialback::Verdict),
}

impl Error {
    /// The group a caller acts on (see [`ErrorKind`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::StreamErrorSent(e) | Error::StreamErrorReceived(e) => {
                ErrorKind::Stream(e.condition)
            }
            Error::SeeOtherHost(_) => ErrorKind::Stream(StreamErrorCondition::SeeOtherHost),
            Error::PeerClosed | Error::ConnectionClosed | Error::Transport(_) | Error::Timeout => {
                ErrorKind::Transport
            }
            Error::StartTlsNotOffered | Error::TlsRequiredByPeer => ErrorKind::TlsRequired,
            Error::StartTlsFailed => ErrorKind::Tls,
            Error::Tls(e) => e.kind(),
            Error::StartTlsAfterTls
            | Error::PlaintextAfterProceed
            | Error::PlaintextAfterStartTls
            | Error::WhitespaceDuringStartTls
            | Error::UnexpectedElement { .. }
            | Error::UnsupportedVersion
            | Error::WrongNamespace
            | Error::SaslAfterSuccess => ErrorKind::Protocol,
            Error::Sasl(e) | Error::AuthenticationFailed { error: e, .. } => e.kind(),
            Error::Bind(_) | Error::BoundJid(_) => ErrorKind::Bind,
            Error::Aborted => ErrorKind::Aborted,
            Error::StreamManagement(_) => ErrorKind::Protocol,
            #[cfg(feature = "dialback")]
            Error::DialbackRefused(_) => ErrorKind::Auth,
        }
    }

    /// The TLS failure, if the TLS handshake failed.
    pub fn tls(&self) -> Option<&TlsError> {
        match self {
            Error::Tls(e) => Some(e),
            _ => None,
        }
    }
}

impl TlsError {
    /// The group a caller acts on: [`ErrorKind::Certificate`] for the peer's certificate
    /// or its proof of possession, [`ErrorKind::Transport`] for I/O, [`ErrorKind::Config`]
    /// for a backend set up wrong, [`ErrorKind::Tls`] otherwise.
    pub fn kind(&self) -> ErrorKind {
        match self {
            TlsError::Certificate(_) | TlsError::KeyNotProven | TlsError::NotVerified => {
                ErrorKind::Certificate
            }
            TlsError::Io(_) => ErrorKind::Transport,
            TlsError::Config(_) => ErrorKind::Config,
            TlsError::Alert(_) | TlsError::Handshake(_) | TlsError::Closed | TlsError::Other(_) => {
                ErrorKind::Tls
            }
        }
    }
}

impl SaslError {
    /// The group a caller acts on: [`ErrorKind::Auth`] for refused or unverifiable
    /// credentials, [`ErrorKind::Policy`] where our policy refused what the server offers,
    /// [`ErrorKind::Protocol`] for a server that broke the mechanism, [`ErrorKind::Config`]
    /// for what the configuration lacks.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SaslError::Failure(_)
            | SaslError::ChannelBindingRejected { .. }
            | SaslError::ServerSignatureMismatch
            | SaslError::ServerError(_)
            | SaslError::CachedKeysStale => ErrorKind::Auth,
            SaslError::NoAcceptableMechanism
            | SaslError::PlainRequiresTls
            | SaslError::ChannelBindingDowngrade
            | SaslError::DowngradeDetected
            | SaslError::ContinueRequired(_)
            | SaslError::PipelinedNotOffered(_)
            | SaslError::ChannelBindingUnavailable
            | SaslError::MechanismNotOffered(_)
            | SaslError::IterationsTooLow { .. }
            | SaslError::IterationsTooHigh { .. } => ErrorKind::Policy,
            SaslError::MissingServerSignature
            | SaslError::NonceNotExtended
            | SaslError::MandatoryExtension
            | SaslError::MalformedChallenge(_)
            | SaslError::IncorrectEncoding
            | SaslError::UnexpectedChallenge
            | SaslError::UnexpectedSuccess
            | SaslError::TooManyRounds => ErrorKind::Protocol,
            SaslError::MechanismNotSupported(_)
            | SaslError::MissingCredentials(_)
            | SaslError::InvalidCredentials(_)
            | SaslError::InvalidCacheEntry
            | SaslError::OutOfOrder => ErrorKind::Config,
        }
    }
}

/// What to do about a stream error the peer sent (§4.9.3).
fn stream_advice(condition: StreamErrorCondition) -> &'static str {
    use StreamErrorCondition as C;
    match condition {
        C::HostUnknown | C::HostGone => "check the configured domain: the server does not serve it",
        C::Conflict => {
            "another session took over this one (same resource): use another resource, or \
             stop the other client"
        }
        C::ConnectionTimeout => "the peer timed the stream out: reconnect",
        C::NotAuthorized => "authenticate before sending anything else: a client bug",
        C::PolicyViolation => {
            "the server's local policy refused something: see its text, or ask its operator"
        }
        C::SystemShutdown | C::ResourceConstraint | C::InternalServerError => {
            "a problem on the server's side: try again later, with a backoff"
        }
        C::RemoteConnectionFailed => "the server could not reach another server: try again later",
        C::Reset => "the server reset the stream (its security context changed): reconnect",
        C::SeeOtherHost => "the server redirects: configure that host explicitly if you trust it",
        C::UnsupportedVersion | C::UnsupportedEncoding | C::UnsupportedFeature => {
            "the server does not support what this side sent: check its version and configuration"
        }
        C::BadFormat
        | C::BadNamespacePrefix
        | C::ImproperAddressing
        | C::InvalidFrom
        | C::InvalidNamespace
        | C::InvalidXml
        | C::NotWellFormed
        | C::RestrictedXml
        | C::UnsupportedStanzaType => {
            "the server says this side broke the protocol: report it with a transcript"
        }
        C::UndefinedCondition => "see the server's text, or ask its operator",
    }
}

impl Error {
    /// The rule that fired, as a short name: what `Display` starts with in a build without
    /// the `error-text` feature.
    fn rule(&self) -> &'static str {
        match self {
            Error::StreamErrorSent(_) => "stream-error-sent",
            Error::StreamErrorReceived(_) => "stream-error-received",
            Error::SeeOtherHost(_) => "see-other-host",
            Error::PeerClosed => "peer-closed",
            Error::ConnectionClosed => "connection-closed",
            Error::Transport(_) => "transport",
            Error::StartTlsNotOffered => "starttls-not-offered",
            Error::StartTlsFailed => "starttls-failed",
            Error::StartTlsAfterTls => "starttls-after-tls",
            Error::PlaintextAfterProceed => "plaintext-after-proceed",
            Error::PlaintextAfterStartTls => "plaintext-after-starttls",
            Error::WhitespaceDuringStartTls => "whitespace-during-starttls",
            Error::Tls(_) => "tls",
            Error::UnexpectedElement { .. } => "unexpected-element",
            Error::UnsupportedVersion => "unsupported-version",
            Error::WrongNamespace => "wrong-namespace",
            Error::TlsRequiredByPeer => "tls-required-by-peer",
            Error::Sasl(_) => "sasl",
            Error::AuthenticationFailed { .. } => "authentication-failed",
            Error::SaslAfterSuccess => "sasl-after-success",
            Error::Bind(_) => "bind",
            Error::BoundJid(_) => "bound-jid",
            Error::Timeout => "timeout",
            Error::Aborted => "aborted",
            Error::StreamManagement(_) => "stream-management",
            #[cfg(feature = "dialback")]
            Error::DialbackRefused(_) => "dialback-refused",
        }
    }

    /// `Display` without the `error-text` feature: the rule and its details.
    fn fmt_short(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.rule())?;
        match self {
            Error::StreamErrorSent(e) | Error::StreamErrorReceived(e) => {
                write!(f, " <{}/>", e.condition)?;
                match &e.text {
                    Some(text) => write!(f, ": {text}"),
                    None => Ok(()),
                }
            }
            Error::SeeOtherHost(detail) | Error::Bind(detail) => write!(f, " {detail}"),
            Error::Transport(k) => write!(f, " {k:?}"),
            Error::Tls(e) => write!(f, ": {e}"),
            Error::UnexpectedElement { expected, got } => {
                write!(f, " {got} (expected {expected})")
            }
            Error::Sasl(e) => write!(f, ": {e}"),
            Error::AuthenticationFailed { error, text } => {
                write!(f, ": {error}")?;
                match text {
                    Some(text) => write!(f, " (server says: {text})"),
                    None => Ok(()),
                }
            }
            Error::BoundJid(e) => write!(f, ": {e}"),
            Error::StreamManagement(e) => write!(f, ": {e}"),
            #[cfg(feature = "dialback")]
            Error::DialbackRefused(verdict) => write!(f, " {verdict:?}"),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            return self.fmt_short(f);
        }
        match self {
            Error::StreamErrorSent(e) => write!(
                f,
                "the peer broke the protocol; sent stream error <{}/>{}: report it to the \
                 peer's operator with a transcript",
                e.condition,
                e.text.as_deref().map(|t| alloc::format!(" ({t})")).unwrap_or_default()
            ),
            Error::StreamErrorReceived(e) => write!(
                f,
                "the peer ended the stream with <{}/>{}; {}",
                e.condition,
                e.text.as_deref().map(|t| alloc::format!(": {t}")).unwrap_or_default(),
                stream_advice(e.condition)
            ),
            Error::SeeOtherHost(h) => write!(
                f,
                "the server redirects to {h}; not followed: configure that host explicitly if you trust it"
            ),
            Error::PeerClosed => f.write_str(
                "the peer closed the stream during negotiation; check the server's logs, then retry",
            ),
            Error::ConnectionClosed => f.write_str(
                "the connection closed during negotiation; check the network and the server, then retry",
            ),
            Error::Transport(k) => {
                write!(f, "transport error: {k:?}; check the network, then retry")
            }
            Error::StartTlsNotOffered => f.write_str(
                "TLS is required but the server did not offer STARTTLS (possible STARTTLS stripping); nothing was sent: do not connect over this path in plaintext",
            ),
            Error::StartTlsFailed => f.write_str(
                "the server refused STARTTLS (<failure/>); its TLS setup is broken: ask its operator",
            ),
            Error::StartTlsAfterTls => f.write_str(
                "the server offered STARTTLS again after TLS (protocol violation); closed: report it to its operator",
            ),
            Error::PlaintextAfterProceed => f.write_str(
                "plaintext data followed <proceed/> (STARTTLS injection); connection closed: do not trust this network path",
            ),
            Error::PlaintextAfterStartTls => f.write_str(
                "data followed <starttls/> before <proceed/>; connection closed: the peer is broken or the path injects data",
            ),
            Error::WhitespaceDuringStartTls => f.write_str(
                "whitespace between <starttls/> and <proceed/> (RFC 6120 §5.3.3); closed: report it to the peer's operator",
            ),
            Error::Tls(e) => fmt::Display::fmt(e, f),
            Error::UnexpectedElement { expected, got } => write!(
                f,
                "expected {expected}, received {got}; the peer broke the protocol: report it with a transcript"
            ),
            Error::UnsupportedVersion => f.write_str(
                "the peer does not speak XMPP 1.0 (no version='1.0' on its header); use a server that does",
            ),
            Error::WrongNamespace => f.write_str(
                "the peer answered with another stream namespace; check that the port is for this kind of stream (client or server)",
            ),
            Error::TlsRequiredByPeer => f.write_str(
                "the server requires TLS but TLS is disabled by policy; enable TLS",
            ),
            Error::Sasl(e) => write!(f, "authentication failed: {e}"),
            Error::AuthenticationFailed { error, text } => {
                write!(f, "authentication failed: {error}")?;
                if let Some(text) = text {
                    write!(f, " (server says: {text})")?;
                }
                Ok(())
            }
            Error::SaslAfterSuccess => f.write_str(
                "the server offered SASL again after authentication succeeded; closed: report it to its operator",
            ),
            Error::Bind(e) => write!(
                f,
                "resource binding failed: {e}; try another resource, or let the server choose one"
            ),
            Error::BoundJid(e) => write!(
                f,
                "the server bound an address that is not a full JID ({e}); report it to its operator"
            ),
            Error::Timeout => f.write_str(
                "the peer did not answer in time; check the network and the server, then retry",
            ),
            Error::Aborted => f.write_str(
                "closed by this side before the negotiation finished; nothing to do unless that was not meant",
            ),
            Error::StreamManagement(e) => fmt::Display::fmt(e, f),
            #[cfg(feature = "dialback")]
            Error::DialbackRefused(verdict) => {
                f.write_str("the receiving server did not accept our dialback key (")?;
                match verdict {
                    crate::dialback::Verdict::Error(condition) => write!(f, "error {condition}")?,
                    crate::dialback::Verdict::Invalid => f.write_str("invalid")?,
                    crate::dialback::Verdict::Valid => f.write_str("valid")?,
                }
                f.write_str(
                    "): it must reach this server for our domain (DNS SRV, or its static \
                     route) and get the same key back; check that route and the dialback secret",
                )
            }
        }
    }
}

impl From<SaslError> for Error {
    fn from(e: SaslError) -> Self {
        Error::Sasl(e)
    }
}

impl From<TlsError> for Error {
    fn from(e: TlsError) -> Self {
        Error::Tls(e)
    }
}

impl core::error::Error for Error {}

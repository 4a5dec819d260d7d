//! Everything that can end a negotiation, one variant per rule, so a caller (and a test)
//! can tell exactly which rule fired. `Display` says what happened and what to do.

use alloc::string::String;
use core::fmt;

use crate::stream::error::StreamError;

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
    /// TLS handshake failed (§5.4.3.2); the transport was closed without `</stream:stream>`.
    TlsHandshake(String),
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
    /// A step took longer than the configured bound.
    Timeout,
    /// This side closed the stream before the negotiation finished.
    Aborted,
    /// In the stanza phase ([`crate::driver::Session`]): the peer sent an element whose
    /// parse would need more heap than `Limits::max_parse_bytes` allows (§13.12). It was
    /// skipped unparsed (an IQ in it goes unanswered, §8.2.3); the session goes on.
    ElementSkipped {
        /// What [`crate::xml::element::parse_cost`] bounds its parse at, in bytes.
        cost: usize,
        /// `Limits::max_parse_bytes`.
        allowed: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::StreamErrorSent(e) => write!(
                f,
                "the peer broke the protocol; sent stream error <{}/>{}",
                e.condition,
                e.text.as_deref().map(|t| alloc::format!(" ({t})")).unwrap_or_default()
            ),
            Error::StreamErrorReceived(e) => write!(
                f,
                "the peer ended the stream with <{}/>{}",
                e.condition,
                e.text.as_deref().map(|t| alloc::format!(": {t}")).unwrap_or_default()
            ),
            Error::SeeOtherHost(h) => write!(
                f,
                "the server redirects to {h}; not followed: configure that host explicitly if you trust it"
            ),
            Error::PeerClosed => f.write_str("the peer closed the stream during negotiation"),
            Error::ConnectionClosed => f.write_str("the connection closed during negotiation"),
            Error::Transport(k) => write!(f, "transport error: {k:?}"),
            Error::StartTlsNotOffered => f.write_str(
                "TLS is required but the server did not offer STARTTLS (possible STARTTLS stripping); nothing was sent",
            ),
            Error::StartTlsFailed => f.write_str("the server refused STARTTLS (<failure/>)"),
            Error::StartTlsAfterTls => {
                f.write_str("the server offered STARTTLS again after TLS (protocol violation)")
            }
            Error::PlaintextAfterProceed => f.write_str(
                "plaintext data followed <proceed/> (STARTTLS injection); connection closed",
            ),
            Error::PlaintextAfterStartTls => {
                f.write_str("data followed <starttls/> before <proceed/>; connection closed")
            }
            Error::WhitespaceDuringStartTls => {
                f.write_str("whitespace between <starttls/> and <proceed/> (RFC 6120 §5.3.3)")
            }
            Error::TlsHandshake(e) => write!(f, "TLS handshake failed: {e}"),
            Error::UnexpectedElement { expected, got } => {
                write!(f, "expected {expected}, received {got}")
            }
            Error::UnsupportedVersion => {
                f.write_str("the peer does not speak XMPP 1.0 (no version='1.0' on its header)")
            }
            Error::WrongNamespace => f.write_str("the peer answered with another stream namespace"),
            Error::TlsRequiredByPeer => {
                f.write_str("the server requires TLS but TLS is disabled by policy")
            }
            Error::Sasl(e) => write!(f, "authentication failed: {e}"),
            Error::AuthenticationFailed { error, text } => {
                write!(f, "authentication failed: {error}")?;
                if let Some(text) = text {
                    write!(f, " (server says: {text})")?;
                }
                Ok(())
            }
            Error::SaslAfterSuccess => {
                f.write_str("the server offered SASL again after authentication succeeded")
            }
            Error::Bind(e) => write!(f, "resource binding failed: {e}"),
            Error::Timeout => f.write_str("the peer did not answer in time"),
            Error::Aborted => f.write_str("closed by this side before the negotiation finished"),
            Error::ElementSkipped { cost, allowed } => write!(
                f,
                "skipped an element that could take {cost} bytes to parse (more than the {allowed} allowed)"
            ),
        }
    }
}

impl From<crate::sasl::SaslError> for Error {
    fn from(e: crate::sasl::SaslError) -> Self {
        Error::Sasl(e)
    }
}

//! Exit codes of the `xmpp-handshake` CLI and the mapping from what went wrong.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: every step really happened |
//! | 2 | usage: bad arguments, unreadable file, bad JID |
//! | 3 | authentication: SASL failed (wrong password, mechanism refused, ...) |
//! | 4 | certificate / trust: the server's certificate was not accepted |
//! | 5 | TLS required but STARTTLS not offered, or STARTTLS / the TLS handshake failed |
//! | 6 | any other protocol or network error; `connect --send-lines`: lines not acknowledged |

use std::fmt;

use xmpp_handshake_core::sasl::{ChannelBindingType, Mechanism, SaslError};
use xmpp_handshake_core::{Error, ErrorKind, TlsError};

/// A documented exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0
    Success = 0,
    /// 2
    Usage = 2,
    /// 3
    Authentication = 3,
    /// 4
    Certificate = 4,
    /// 5
    TlsUnavailable = 5,
    /// 6
    Protocol = 6,
}

impl ExitCode {
    /// The process exit status.
    pub fn code(self) -> i32 {
        self as i32
    }
}

/// Why a command failed: one line for the user and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit status.
    pub code: ExitCode,
    /// One line, saying what happened and, where useful, what to do.
    pub message: String,
    /// The server refused the channel binding (`connect` decides from it whether to retry
    /// once without binding).
    pub cb_rejected: Option<CbRejection>,
    /// The server's SASL2 offer no longer has what a pipelined `<authenticate/>` used
    /// ([`SaslError::PipelinedNotOffered`]): `connect` forgets the kept offer and retries
    /// once, waiting for the features.
    pub offer_changed: bool,
}

/// A refused channel binding ([`SaslError::ChannelBindingRejected`]), kept with the
/// [`Failure`] it became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CbRejection {
    /// The `-PLUS` mechanism.
    pub mechanism: Mechanism,
    /// The binding type sent.
    pub cb_type: ChannelBindingType,
    /// The server had advertised its binding types (XEP-0440).
    pub xep0440: bool,
}

/// What `connect` prints (and says in its summary line) when it retries without binding.
pub const RETRIED_UNBOUND: &str = "channel binding refused by a server that never bound \
     before: retried once without binding (gs2 flag y)";

/// A server that completed a channel-bound login before (the login memory says so) refused
/// the binding now: exit 3, no retry.
pub fn refused_after_binding(rejection: &CbRejection, server_text: Option<&str>) -> Failure {
    Failure::new(
        ExitCode::Authentication,
        format!(
            "channel binding refused by a server that bound before: {} with {} was refused, \
             but this server completed a channel-bound login to this account earlier. This \
             can be an attack (a man in the middle cannot forward the binding); not retrying \
             without binding. If the password is right and the server was reconfigured on \
             purpose, connect once with --channel-binding off{}",
            rejection.mechanism,
            rejection.cb_type,
            server_text
                .map(|t| format!(" (server says: {t})"))
                .unwrap_or_default()
        ),
    )
}

impl Failure {
    /// A failure with `code`.
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            cb_rejected: None,
            offer_changed: false,
        }
    }

    /// A usage error (2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(ExitCode::Usage, message)
    }

    /// A protocol or network error (6).
    pub fn protocol(message: impl Into<String>) -> Self {
        Failure::new(ExitCode::Protocol, message)
    }

    /// Prefixes the message with what was being done.
    pub fn context(mut self, what: &str) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::protocol(e.to_string())
    }
}

/// The exit code for a negotiation error of the core: by its [`Error::kind`], except that
/// the codes predate the kinds and stay as they were: everything in SASL (§6) is 3
/// whatever its kind (a policy refusal, a broken exchange), and of the TLS failures only
/// the certificate policy's refusal ([`TlsError::Certificate`]) is 4, every other one 5.
pub fn code_for(error: &Error) -> ExitCode {
    match error {
        Error::Sasl(_) | Error::AuthenticationFailed { .. } | Error::SaslAfterSuccess => {
            ExitCode::Authentication
        }
        Error::Tls(TlsError::Certificate(_)) => ExitCode::Certificate,
        Error::Tls(_) => ExitCode::TlsUnavailable,
        other => match other.kind() {
            ErrorKind::Auth | ErrorKind::Policy => ExitCode::Authentication,
            ErrorKind::Certificate => ExitCode::Certificate,
            ErrorKind::TlsRequired | ErrorKind::Tls => ExitCode::TlsUnavailable,
            _ => ExitCode::Protocol,
        },
    }
}

/// An error of the library's bound stream as a [`Failure`]: the core's inside it, or the
/// stream being closed already.
pub fn from_library(error: &xmpp_handshake_tokio::client::Error) -> Failure {
    match error {
        xmpp_handshake_tokio::client::Error::Xmpp(e) => from_core(e),
        xmpp_handshake_tokio::client::Error::Refused(e) => {
            Failure::protocol(format!("the stanza was not sent: {e}"))
        }
        _ => from_core(&Error::ConnectionClosed),
    }
}

/// A core error as a [`Failure`], with a message that says what to do.
pub fn from_core(error: &Error) -> Failure {
    let mut cb_rejected = None;
    let message = match error {
        Error::AuthenticationFailed {
            error:
                SaslError::ChannelBindingRejected {
                    mechanism,
                    cb_type,
                    xep0440,
                },
            text,
        } => {
            cb_rejected = Some(CbRejection {
                mechanism: *mechanism,
                cb_type: *cb_type,
                xep0440: *xep0440,
            });
            let advertised = if *xep0440 {
                " although it advertised that type (XEP-0440)"
            } else {
                ""
            };
            format!(
                "authentication failed: wrong password, or the server cannot verify channel \
                 binding ({mechanism} with {cb_type} refused{advertised}; ejabberd 23.01 on TLS \
                 1.3 cannot). If the password is right and you trust the network path to this \
                 server, retry with --channel-binding off{}",
                text.as_deref()
                    .map(|t| format!(" (server says: {t})"))
                    .unwrap_or_default()
            )
        }
        Error::Sasl(SaslError::NoAcceptableMechanism) => {
            "authentication failed: the server offers no SASL mechanism this client accepts \
             (SCRAM, or PLAIN over TLS; --trace shows the offer). An old server that offers \
             only DIGEST-MD5 needs --allow-digest-md5"
                .to_string()
        }
        Error::Tls(TlsError::Certificate(cert)) => {
            format!("the server's certificate was not accepted: {cert}")
        }
        Error::PeerClosed => "the server closed the stream".to_string(),
        Error::ConnectionClosed => "the server closed the connection".to_string(),
        other => other.to_string(),
    };
    Failure {
        cb_rejected,
        offer_changed: matches!(error, Error::Sasl(SaslError::PipelinedNotOffered(_))),
        ..Failure::new(code_for(error), message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::error::{Alert, HandshakeFailure};
    use xmpp_handshake_core::sasl::SaslFailure;
    use xmpp_handshake_core::stream::error::{StreamError, StreamErrorCondition};
    use xmpp_handshake_core::trust::CertError;

    /// Every variant of the core's error (as of the typed TLS error) with the code it had
    /// before the codes were derived from [`Error::kind`]: they must not change.
    #[test]
    fn every_core_error_keeps_its_exit_code() {
        use ExitCode::*;
        let stream = StreamError::new(StreamErrorCondition::HostUnknown);
        let cases = [
            (Error::StreamErrorSent(stream.clone()), Protocol),
            (Error::StreamErrorReceived(stream), Protocol),
            (Error::SeeOtherHost("x".into()), Protocol),
            (Error::PeerClosed, Protocol),
            (Error::ConnectionClosed, Protocol),
            (Error::Transport(embedded_io::ErrorKind::Other), Protocol),
            (Error::StartTlsNotOffered, TlsUnavailable),
            (Error::StartTlsFailed, TlsUnavailable),
            (Error::StartTlsAfterTls, Protocol),
            (Error::PlaintextAfterProceed, Protocol),
            (Error::PlaintextAfterStartTls, Protocol),
            (Error::WhitespaceDuringStartTls, Protocol),
            (Error::Tls(TlsError::Closed), TlsUnavailable),
            (
                Error::UnexpectedElement {
                    expected: "x",
                    got: "y".into(),
                },
                Protocol,
            ),
            (Error::UnsupportedVersion, Protocol),
            (Error::WrongNamespace, Protocol),
            (Error::TlsRequiredByPeer, TlsUnavailable),
            (
                Error::Sasl(SaslError::NoAcceptableMechanism),
                Authentication,
            ),
            (
                Error::Sasl(SaslError::MissingCredentials("x")),
                Authentication,
            ),
            (Error::Sasl(SaslError::NonceNotExtended), Authentication),
            (
                Error::AuthenticationFailed {
                    error: SaslError::Failure(SaslFailure::NotAuthorized),
                    text: None,
                },
                Authentication,
            ),
            (Error::SaslAfterSuccess, Authentication),
            (Error::Bind("conflict".into()), Protocol),
            (Error::Timeout, Protocol),
            (Error::Aborted, Protocol),
        ];
        for (error, code) in cases {
            assert_eq!(code_for(&error), code, "{error:?}");
        }
    }

    #[test]
    fn documented_codes() {
        assert_eq!(ExitCode::Success.code(), 0);
        assert_eq!(ExitCode::Usage.code(), 2);
        assert_eq!(ExitCode::Authentication.code(), 3);
        assert_eq!(ExitCode::Certificate.code(), 4);
        assert_eq!(ExitCode::TlsUnavailable.code(), 5);
        assert_eq!(ExitCode::Protocol.code(), 6);
    }

    #[test]
    fn core_errors_map_to_codes() {
        assert_eq!(
            code_for(&Error::Sasl(SaslError::Failure(SaslFailure::NotAuthorized))),
            ExitCode::Authentication
        );
        assert_eq!(
            code_for(&Error::AuthenticationFailed {
                error: SaslError::Failure(SaslFailure::NotAuthorized),
                text: None
            }),
            ExitCode::Authentication
        );
        assert_eq!(
            code_for(&Error::StartTlsNotOffered),
            ExitCode::TlsUnavailable
        );
        assert_eq!(code_for(&Error::StartTlsFailed), ExitCode::TlsUnavailable);
        let cert = CertError::EmptyChain;
        assert_eq!(
            code_for(&Error::Tls(TlsError::Certificate(cert.clone()))),
            ExitCode::Certificate
        );
        assert!(from_core(&Error::Tls(TlsError::Certificate(cert.clone())))
            .message
            .starts_with(&format!(
                "the server's certificate was not accepted: {cert}"
            )));
        for other in [
            TlsError::KeyNotProven,
            TlsError::NotVerified,
            TlsError::Alert(Alert::HANDSHAKE_FAILURE),
            TlsError::Handshake(HandshakeFailure::Incompatible),
            TlsError::Closed,
            TlsError::Io(embedded_io::ErrorKind::ConnectionReset),
            TlsError::Config("x"),
            TlsError::Other("x".into()),
        ] {
            assert_eq!(
                code_for(&Error::Tls(other.clone())),
                ExitCode::TlsUnavailable,
                "{other:?}"
            );
        }
        assert_eq!(
            code_for(&Error::Bind("conflict".into())),
            ExitCode::Protocol
        );
        assert_eq!(code_for(&Error::PeerClosed), ExitCode::Protocol);
        let plus = from_core(&Error::AuthenticationFailed {
            error: SaslError::ChannelBindingRejected {
                mechanism: Mechanism::ScramSha1Plus,
                cb_type: ChannelBindingType::TlsExporter,
                xep0440: false,
            },
            text: None,
        });
        assert_eq!(
            plus.cb_rejected,
            Some(CbRejection {
                mechanism: Mechanism::ScramSha1Plus,
                cb_type: ChannelBindingType::TlsExporter,
                xep0440: false,
            })
        );
        assert_eq!(from_core(&Error::PeerClosed).cb_rejected, None);
        let loud =
            refused_after_binding(&plus.cb_rejected.unwrap(), Some("Invalid channel binding"));
        assert_eq!(loud.code, ExitCode::Authentication);
        assert!(loud.message.contains("bound before"), "{}", loud.message);
        assert!(loud.message.contains("attack"), "{}", loud.message);
        assert_eq!(plus.code, ExitCode::Authentication);
        assert!(
            plus.message.contains("--channel-binding off"),
            "{}",
            plus.message
        );
        assert_eq!(
            from_core(&Error::PeerClosed).message,
            "the server closed the stream"
        );
    }
}

//! The errors a page sees: a JS `Error` whose `kind` says which class of rule fired, with
//! the core's readable `message` and, where a UI needs them, typed fields.
//!
//! | `kind` | when | extra fields |
//! |---|---|---|
//! | `pin-changed` | the server's key differs from the one pinned for the domain | `domain`, `oldFingerprint`, `newFingerprint` (SHA-256 of the certificates), `oldKey`, `newKey` (of the keys) |
//! | `certificate` | the certificate policy refused the certificate (name, dates, unknown CA, first use not approved, proof of possession) | `fingerprint`, `key` when known |
//! | `auth` | SASL failed or no acceptable mechanism | |
//! | `tls-required` | TLS is required and the server did not offer STARTTLS | |
//! | `tls` | STARTTLS refused or the TLS handshake failed | |
//! | `stream` | a stream error sent or received, or a protocol violation | `condition` (RFC 6120 §4.9.3) or `null` |
//! | `transport` | the WebSocket failed or closed, or a timeout | |
//! | `config` | bad options | |

use js_sys::Reflect;
use wasm_bindgen::JsValue;
use xmpp_handshake_core::trust::CertError;
use xmpp_handshake_core::Error;
use xmpp_handshake_embedded_tls::EmbeddedTlsError;

/// A failure, before it becomes a JS `Error`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// One of the kinds in the module docs.
    pub kind: &'static str,
    /// Readable, says what to do where useful.
    pub message: String,
    /// Extra fields.
    pub fields: Vec<(&'static str, JsValue)>,
}

impl Failure {
    /// A failure without extra fields.
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
            fields: Vec::new(),
        }
    }

    /// Bad options.
    pub fn config(message: impl Into<String>) -> Self {
        Failure::new("config", message)
    }

    /// The WebSocket failed.
    pub fn transport(message: impl Into<String>) -> Self {
        Failure::new("transport", message)
    }

    /// A negotiation or stream error of the core. `tls` is the TLS backend's own error
    /// when the handshake failed (the core only keeps its text); `transport` why the
    /// WebSocket ended, if it did.
    pub fn from_core(e: &Error, tls: Option<&EmbeddedTlsError>, transport: Option<String>) -> Self {
        let message = e.to_string();
        match e {
            Error::TlsHandshake(_) => match tls {
                Some(t) => Failure::from_tls(t),
                None => Failure::new("tls", message),
            },
            Error::StreamErrorSent(s) | Error::StreamErrorReceived(s) => {
                let mut f = Failure::new("stream", message);
                f.fields.push(("condition", s.condition.to_string().into()));
                f
            }
            Error::SeeOtherHost(_) => {
                let mut f = Failure::new("stream", message);
                f.fields.push(("condition", "see-other-host".into()));
                f
            }
            Error::PeerClosed | Error::ConnectionClosed | Error::Transport(_) | Error::Timeout => {
                Failure::transport(match transport {
                    Some(why) => format!("{message}: {why}"),
                    None => message,
                })
            }
            Error::StartTlsNotOffered | Error::TlsRequiredByPeer => {
                Failure::new("tls-required", message)
            }
            Error::StartTlsFailed
            | Error::StartTlsAfterTls
            | Error::PlaintextAfterProceed
            | Error::PlaintextAfterStartTls
            | Error::WhitespaceDuringStartTls => Failure::new("tls", message),
            Error::Sasl(_) | Error::AuthenticationFailed { .. } => Failure::new("auth", message),
            _ => {
                let mut f = Failure::new("stream", message);
                f.fields.push(("condition", JsValue::NULL));
                f
            }
        }
    }

    /// A TLS handshake failure of the embedded-tls backend.
    pub fn from_tls(e: &EmbeddedTlsError) -> Self {
        let message = e.to_string();
        match e {
            EmbeddedTlsError::Certificate(CertError::PinChanged(change)) => {
                let mut f = Failure::new("pin-changed", message);
                f.fields = vec![
                    ("domain", change.domain.as_str().into()),
                    ("oldFingerprint", change.old_cert.to_string().into()),
                    ("newFingerprint", change.new_cert.to_string().into()),
                    ("oldKey", change.old_spki.to_string().into()),
                    ("newKey", change.new_spki.to_string().into()),
                ];
                f
            }
            EmbeddedTlsError::Certificate(c) => {
                let mut f = Failure::new("certificate", message);
                let seen = match c {
                    CertError::UnknownIssuer { spki, cert }
                    | CertError::SelfSigned { spki, cert }
                    | CertError::PinMismatch { spki, cert, .. }
                    | CertError::NotTrustedFirstUse { spki, cert, .. } => Some((spki, cert)),
                    _ => None,
                };
                if let Some((spki, cert)) = seen {
                    f.fields.push(("fingerprint", cert.to_string().into()));
                    f.fields.push(("key", spki.to_string().into()));
                }
                f
            }
            EmbeddedTlsError::HandshakeSignature | EmbeddedTlsError::NotVerified => {
                Failure::new("certificate", message)
            }
            _ => Failure::new("tls", message),
        }
    }

    /// The JS `Error`.
    pub fn to_js(&self) -> JsValue {
        let error = js_sys::Error::new(&self.message);
        let _ = Reflect::set(&error, &"kind".into(), &self.kind.into());
        for (name, value) in &self.fields {
            let _ = Reflect::set(&error, &JsValue::from_str(name), value);
        }
        error.into()
    }
}

//! The errors a page sees: a JS `Error` whose `kind` says which class of rule fired (the
//! core's `Error::kind`, see [`Failure::from_core`]), a `message` and, where a UI needs
//! them, typed fields. The core is built without its `error-text` feature here: `message`
//! names the rule that fired with its details (`tls: certificate: chain-invalid: a
//! signature in the chain does not verify`, `stream-error-received <conflict/>: ...`)
//! rather than sentences of advice, which were ~4 KiB of each gzipped package.
//!
//! | `kind` | when | extra fields |
//! |---|---|---|
//! | `pin-changed` | the server's key differs from the one pinned for the domain | `domain`, `oldFingerprint`, `newFingerprint` (SHA-256 of the certificates), `oldKey`, `newKey` (of the keys) |
//! | `certificate` | the certificate policy refused the certificate (name, dates, unknown CA, first use not approved, proof of possession) | `fingerprint`, `key` when known |
//! | `auth` | SASL failed (whatever the reason) or no acceptable mechanism | |
//! | `tls-required` | TLS is required and the server did not offer STARTTLS | |
//! | `tls` | STARTTLS refused or the TLS handshake failed (not for the certificate, not an I/O failure) | |
//! | `stream` | a stream error sent or received, or a protocol violation (data around STARTTLS included), a refused bind | `condition` (RFC 6120 §4.9.3) or `null` |
//! | `transport` | the WebSocket failed or closed (during the TLS handshake too), or a timeout | |
//! | `config` | bad options, or a TLS setup that cannot work | |

use js_sys::Reflect;
use wasm_bindgen::JsValue;
use xmpp_handshake_core::trust::CertError;
use xmpp_handshake_core::{Error, ErrorKind, TlsError};

/// A failure, before it becomes a JS `Error`.
#[derive(Debug, Clone)]
pub struct Failure {
    /// One of the kinds in the module docs.
    pub kind: &'static str,
    /// The rule that fired and its details (the core's short `Display`), or this
    /// crate's own text for options and the WebSocket.
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

    /// A negotiation or stream error of the core, by its [`Error::kind`] (see the module
    /// docs); `transport` is why the WebSocket ended, if it did. A refused certificate
    /// comes typed inside the error ([`TlsError::Certificate`]), with its fingerprints.
    pub fn from_core(e: &Error, transport: Option<String>) -> Self {
        let message = e.to_string();
        // Everything in SASL is `auth`, whatever its kind (a policy refusal, a broken
        // exchange, missing credentials), as before the kinds existed.
        if matches!(
            e,
            Error::Sasl(_) | Error::AuthenticationFailed { .. } | Error::SaslAfterSuccess
        ) {
            return Failure::new("auth", message);
        }
        match e.kind() {
            ErrorKind::Certificate => Failure::certificate(e.tls(), message),
            ErrorKind::Auth | ErrorKind::Policy => Failure::new("auth", message),
            ErrorKind::TlsRequired => Failure::new("tls-required", message),
            ErrorKind::Tls => Failure::new("tls", message),
            ErrorKind::Transport => Failure::transport(match transport {
                Some(why) => format!("{message}: {why}"),
                None => message,
            }),
            ErrorKind::Config => Failure::config(message),
            ErrorKind::Stream(condition) => {
                let mut f = Failure::new("stream", message);
                f.fields.push(("condition", condition.name().into()));
                f
            }
            // A protocol violation, a refused bind, a skipped element, our own close.
            _ => {
                let mut f = Failure::new("stream", message);
                f.fields.push(("condition", JsValue::NULL));
                f
            }
        }
    }

    /// The peer's certificate was refused (or it did not prove it holds the key):
    /// `pin-changed` with both fingerprints, or `certificate` with what was presented.
    fn certificate(tls: Option<&TlsError>, message: String) -> Self {
        match tls.and_then(TlsError::certificate) {
            Some(CertError::PinChanged(change)) => {
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
            Some(c) => {
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
            // The proof of possession failed, or the handshake ended unverified.
            None => Failure::new("certificate", message),
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

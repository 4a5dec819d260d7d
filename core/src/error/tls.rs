//! Why a TLS handshake failed (RFC 6120 §5.4.3.2), typed: the certificate policy's verdict
//! travels inside the error, so no caller reads it back from a verifier afterwards.
//!
//! Each [`TlsUpgrade`](crate::driver::TlsUpgrade) backend turns its own error into a
//! [`TlsError`] ([`TlsUpgrade::classify`](crate::driver::TlsUpgrade::classify)): the host's
//! rustls client and server, the embedded-tls backend of firmware and wasm.
//!
//! Not to be confused with `embedded_tls::TlsError` (re-exported by this crate's
//! `embedded_tls` module), the embedded-tls library's own error, which the embedded-tls
//! backend classifies into this one.

use alloc::string::String;
use core::fmt;

use crate::trust::CertError;

/// A TLS alert description (RFC 8446 §6, RFC 5246 §7.2), as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Alert(pub u8);

impl Alert {
    /// `handshake_failure` (40): no acceptable set of security parameters.
    pub const HANDSHAKE_FAILURE: Alert = Alert(40);
    /// `bad_certificate` (42).
    pub const BAD_CERTIFICATE: Alert = Alert(42);
    /// `unknown_ca` (48): the peer does not trust the issuer of our certificate.
    pub const UNKNOWN_CA: Alert = Alert(48);
    /// `protocol_version` (70): the peer does not speak a version we offered.
    pub const PROTOCOL_VERSION: Alert = Alert(70);
    /// `internal_error` (80).
    pub const INTERNAL_ERROR: Alert = Alert(80);
    /// `unrecognized_name` (112): the peer does not serve the name we sent in SNI.
    pub const UNRECOGNIZED_NAME: Alert = Alert(112);
    /// `certificate_required` (116): the peer wants a client certificate.
    pub const CERTIFICATE_REQUIRED: Alert = Alert(116);
    /// `no_application_protocol` (120): no ALPN protocol in common.
    pub const NO_APPLICATION_PROTOCOL: Alert = Alert(120);

    /// The registered name (`handshake_failure`), `None` for an unassigned value.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "close_notify",
            10 => "unexpected_message",
            20 => "bad_record_mac",
            21 => "decryption_failed",
            22 => "record_overflow",
            30 => "decompression_failure",
            40 => "handshake_failure",
            41 => "no_certificate",
            42 => "bad_certificate",
            43 => "unsupported_certificate",
            44 => "certificate_revoked",
            45 => "certificate_expired",
            46 => "certificate_unknown",
            47 => "illegal_parameter",
            48 => "unknown_ca",
            49 => "access_denied",
            50 => "decode_error",
            51 => "decrypt_error",
            60 => "export_restriction",
            70 => "protocol_version",
            71 => "insufficient_security",
            80 => "internal_error",
            86 => "inappropriate_fallback",
            90 => "user_canceled",
            100 => "no_renegotiation",
            109 => "missing_extension",
            110 => "unsupported_extension",
            111 => "certificate_unobtainable",
            112 => "unrecognized_name",
            113 => "bad_certificate_status_response",
            114 => "bad_certificate_hash_value",
            115 => "unknown_psk_identity",
            116 => "certificate_required",
            120 => "no_application_protocol",
            _ => return None,
        })
    }

    /// What to do about a handshake the peer ended with this alert.
    fn advice(self) -> &'static str {
        match self.0 {
            40 | 70 | 71 | 86 => {
                "the peer and this side share no TLS version, cipher suite or key exchange; \
                 check the peer's TLS settings against what this side's TLS backend supports"
            }
            41..=46 | 48 | 116 => {
                "the peer refused this side's certificate, or wants one: configure a \
                 certificate the peer trusts, or one at all"
            }
            112 => {
                "the peer does not serve this domain; check the configured domain (it is \
                 the name sent in SNI)"
            }
            120 => {
                "the peer does not speak XMPP on this port (no ALPN protocol in common); \
                 check the port and whether it expects Direct TLS or STARTTLS"
            }
            20 | 21 | 47 | 50 | 51 | 10 => {
                "the peer could not process this side's handshake; retry, and report it \
                 with a transcript if it persists"
            }
            _ => "check the peer's TLS configuration and its logs",
        }
    }
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "alert {}", self.0),
        }
    }
}

/// Why this side ended a TLS handshake, when it was not the certificate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// No TLS version, cipher suite, key-exchange group or signature scheme in common.
    Incompatible,
    /// The peer sent a malformed or unexpected handshake message, or something that is not
    /// TLS at all (a plaintext service on the port).
    PeerMisbehaved,
    /// A record failed to decrypt or authenticate.
    Decrypt,
    /// The peer chose something this backend does not implement (named).
    Unsupported(&'static str),
    /// This side aborted the handshake with this alert (a backend that reports only that).
    AlertSent(Alert),
    /// The TLS library failed internally (out of memory, a crypto engine error).
    Internal,
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the reason as a short name.
            return match self {
                HandshakeFailure::Incompatible => f.write_str("incompatible"),
                HandshakeFailure::PeerMisbehaved => f.write_str("peer-misbehaved"),
                HandshakeFailure::Decrypt => f.write_str("decrypt"),
                HandshakeFailure::Unsupported(what) => write!(f, "unsupported {what}"),
                HandshakeFailure::AlertSent(alert) => write!(f, "alert-sent {alert}"),
                HandshakeFailure::Internal => f.write_str("internal"),
            };
        }
        match self {
            HandshakeFailure::Incompatible => f.write_str(
                "no TLS version, cipher suite, group or signature scheme in common with the \
                 peer; check its TLS settings against what this side's TLS backend supports",
            ),
            HandshakeFailure::PeerMisbehaved => f.write_str(
                "the peer sent something that is not a valid TLS handshake; check that the \
                 port speaks TLS (Direct TLS or STARTTLS, as configured)",
            ),
            HandshakeFailure::Decrypt => f.write_str(
                "a TLS record failed to decrypt: the connection is being tampered with or is \
                 broken; retry, and do not trust this path if it persists",
            ),
            HandshakeFailure::Unsupported(what) => write!(
                f,
                "the peer chose {what}, which this side's TLS backend does not implement; \
                 configure the peer to offer what the backend supports"
            ),
            HandshakeFailure::AlertSent(alert) => write!(
                f,
                "this side aborted the handshake with {alert}; check the peer's TLS \
                 configuration"
            ),
            HandshakeFailure::Internal => f.write_str(
                "the TLS library failed internally (memory or crypto engine); retry, with \
                 more memory if this is a small device",
            ),
        }
    }
}

/// Why a TLS handshake failed (§5.4.3.2), one variant per thing a caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate policy refused the peer's certificate (RFC 6120 §13.7.2): the typed
    /// reason, e.g. a name mismatch, an unknown issuer, or a changed or unknown pin with
    /// both fingerprints ([`CertError::PinChanged`], [`CertError::PinMismatch`]).
    Certificate(CertError),
    /// The peer's handshake signature (TLS 1.3 CertificateVerify, TLS 1.2
    /// ServerKeyExchange) does not verify with the key of the certificate it presented: it
    /// does not hold that key (a replayed certificate).
    KeyNotProven,
    /// The handshake ended without a certificate the policy accepted and a verified
    /// handshake signature (a peer that skipped CertificateVerify). Refused.
    NotVerified,
    /// The peer ended the handshake with this fatal alert.
    Alert(Alert),
    /// This side ended the handshake, for this reason.
    Handshake(HandshakeFailure),
    /// The peer closed the connection during the handshake.
    Closed,
    /// The transport failed during the handshake.
    Io(embedded_io::ErrorKind),
    /// TLS cannot start here: the backend's setup is wrong (a buffer too small, a server
    /// name that is not a DNS name) or the transport does not start TLS.
    Config(&'static str),
    /// A backend's failure that fits none of the above, as it described it.
    Other(String),
}

impl TlsError {
    /// The certificate policy's refusal, if that is what this is.
    pub fn certificate(&self) -> Option<&CertError> {
        match self {
            TlsError::Certificate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CertError> for TlsError {
    fn from(e: CertError) -> Self {
        TlsError::Certificate(e)
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            // Without the `error-text` feature: the reason as a short name, its details.
            return match self {
                TlsError::Certificate(e) => write!(f, "certificate: {e}"),
                TlsError::KeyNotProven => f.write_str("key-not-proven"),
                TlsError::NotVerified => f.write_str("not-verified"),
                TlsError::Alert(alert) => write!(f, "alert {alert}"),
                TlsError::Handshake(reason) => write!(f, "handshake: {reason}"),
                TlsError::Closed => f.write_str("closed"),
                TlsError::Io(kind) => write!(f, "io {kind:?}"),
                TlsError::Config(what) => write!(f, "config: {what}"),
                TlsError::Other(what) => write!(f, "other: {what}"),
            };
        }
        match self {
            TlsError::Certificate(e) => write!(f, "the peer's certificate was not accepted: {e}"),
            TlsError::KeyNotProven => f.write_str(
                "the peer's TLS handshake signature does not verify with its certificate's \
                 key: it presented a certificate whose key it does not hold. Do not connect.",
            ),
            TlsError::NotVerified => f.write_str(
                "the TLS handshake ended without a verified certificate and handshake \
                 signature; refused. Do not connect.",
            ),
            TlsError::Alert(alert) => write!(
                f,
                "TLS handshake failed: the peer sent the alert {alert}; {}",
                alert.advice()
            ),
            TlsError::Handshake(reason) => write!(f, "TLS handshake failed: {reason}"),
            TlsError::Closed => f.write_str(
                "TLS handshake failed: the peer closed the connection; check that the port \
                 speaks TLS and that the peer accepts this side's TLS versions",
            ),
            TlsError::Io(kind) => write!(
                f,
                "TLS handshake failed: transport error ({kind:?}); check the network and retry"
            ),
            TlsError::Config(what) => {
                write!(f, "TLS cannot start: {what}; fix this side's TLS setup")
            }
            TlsError::Other(what) => write!(
                f,
                "TLS handshake failed: {what}; check the peer's TLS configuration and the network"
            ),
        }
    }
}

impl core::error::Error for TlsError {}

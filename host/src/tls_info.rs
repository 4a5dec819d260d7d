//! What a TLS handshake negotiated (version, cipher suite, the server's certificate), for the
//! transcript and the summary line: a [`TlsUpgrade`] wrapper that records it.

use std::sync::{Arc, Mutex, PoisonError};

use embedded_io_adapters::tokio_1::FromTokio;
use rustls::CommonState;
use sha2::{Digest, Sha256};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::TlsError;

/// SHA-256 of `der` as OpenSSL prints it: `AB:CD:...` (uppercase pairs, colons).
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut s = String::with_capacity(95);
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02X}"));
    }
    s
}

/// The outcome of one handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSummary {
    /// `TLS 1.3`, `TLS 1.2`.
    pub version: String,
    /// The IANA-style suite name, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// SHA-256 fingerprint of the server's (end-entity) certificate.
    pub server_certificate: Option<String>,
}

impl TlsSummary {
    fn of(state: &CommonState, server_leaf: Option<&[u8]>) -> Self {
        let version = match state.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_string(),
            Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_string(),
            Some(other) => format!("{other:?}"),
            None => "TLS".to_string(),
        };
        let cipher_suite = state
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_else(|| "unknown suite".into());
        TlsSummary {
            version,
            cipher_suite,
            server_certificate: server_leaf.map(fingerprint),
        }
    }

    /// Round trips the full handshake took: one for TLS 1.3, two for TLS 1.2.
    pub fn round_trips(&self) -> u32 {
        if self.version == "TLS 1.3" {
            1
        } else {
            2
        }
    }

    /// `-- TLS 1.3 handshake (TLS13_AES_256_GCM_SHA384), server certificate SHA-256 AB:.. --`
    pub fn transcript_line(&self) -> String {
        match &self.server_certificate {
            Some(fp) => format!(
                "-- {} handshake ({}), server certificate SHA-256 {} --",
                self.version, self.cipher_suite, fp
            ),
            None => format!("-- {} handshake ({}) --", self.version, self.cipher_suite),
        }
    }
}

/// Where a [`Recording`] upgrade leaves the summary of the last handshake.
pub type TlsCell = Arc<Mutex<Option<TlsSummary>>>;

/// Reads a [`TlsCell`].
pub fn read_cell(cell: &TlsCell) -> Option<TlsSummary> {
    cell.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// A TLS stream whose handshake state can be read.
pub trait HandshakeState {
    /// The summary of the negotiated session.
    fn summary(&self) -> TlsSummary;
}

impl<T> HandshakeState for FromTokio<tokio_rustls::client::TlsStream<T>> {
    fn summary(&self) -> TlsSummary {
        let conn = self.inner().get_ref().1;
        let leaf = conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.as_ref());
        TlsSummary::of(conn, leaf)
    }
}

impl TlsSummary {
    /// The summary of a server connection (its own certificate is the caller's to add).
    pub fn of_server(conn: &rustls::ServerConnection) -> Self {
        TlsSummary::of(conn, None)
    }
}

impl<T> HandshakeState for FromTokio<tokio_rustls::server::TlsStream<T>> {
    fn summary(&self) -> TlsSummary {
        let conn = self.inner().get_ref().1;
        TlsSummary::of(conn, None)
    }
}

/// Wraps a [`TlsUpgrade`] and records what each handshake negotiated in a [`TlsCell`].
pub struct Recording<U> {
    /// The wrapped upgrade.
    pub inner: U,
    /// Filled after each successful handshake.
    pub cell: TlsCell,
    /// On a server: the fingerprint of the certificate it presents, for the summary.
    pub own_certificate: Option<String>,
}

impl<U> Recording<U> {
    /// Fills the cell from `stream`, a handshake done (by `upgrade`, or by the caller
    /// driving `inner` itself).
    pub fn record(&self, stream: &impl HandshakeState) {
        let mut summary = stream.summary();
        if summary.server_certificate.is_none() {
            summary.server_certificate = self.own_certificate.clone();
        }
        *self.cell.lock().unwrap_or_else(PoisonError::into_inner) = Some(summary);
    }

    /// Wraps `inner`.
    pub fn new(inner: U) -> Self {
        Recording {
            inner,
            cell: TlsCell::default(),
            own_certificate: None,
        }
    }
}

impl<T, U> TlsUpgrade<T> for Recording<U>
where
    U: TlsUpgrade<T>,
    U::Stream: HandshakeState,
{
    type Stream = U::Stream;
    type Error = U::Error;

    async fn upgrade(&mut self, transport: T, server_name: &str) -> Result<U::Stream, U::Error> {
        let stream = self.inner.upgrade(transport, server_name).await?;
        self.record(&stream);
        Ok(stream)
    }

    fn classify(error: U::Error) -> TlsError {
        U::classify(error)
    }

    fn tls_info(&self, stream: &U::Stream) -> TlsInfo {
        self.inner.tls_info(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_openssl_form() {
        let fp = fingerprint(b"");
        assert_eq!(fp.len(), 95);
        assert!(fp.starts_with("E3:B0:C4:42"), "{fp}");
    }

    #[test]
    fn transcript_line_names_version_suite_and_certificate() {
        let s = TlsSummary {
            version: "TLS 1.3".into(),
            cipher_suite: "TLS13_AES_256_GCM_SHA384".into(),
            server_certificate: Some("AB:CD".into()),
        };
        assert_eq!(
            s.transcript_line(),
            "-- TLS 1.3 handshake (TLS13_AES_256_GCM_SHA384), server certificate SHA-256 AB:CD --"
        );
        assert_eq!(s.round_trips(), 1);
    }
}

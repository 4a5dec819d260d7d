//! STARTTLS inside the page (tunnel mode): the embedded-tls backend over the
//! WebSocket, with the core's certificate policy and a `localStorage` pin store.
//!
//! * `ca` given: PKIX to those anchors (`Trust::Anchors`), or with `trustFirstUse` also
//!   pinning what they vouched for (`Trust::TrustOnFirstUse`).
//! * no `ca`: trust on first use. With `trustFirstUse` the first key seen is pinned
//!   (`FirstUse::Record`); without it, a key never seen is refused (`certificate` error with
//!   its fingerprints, `FirstUse::AskUser`), while keys pinned earlier still verify.
//! * A key different from the pinned one is always refused with `pin-changed` (both
//!   fingerprints); only `acceptChangedKey` replaces the pin (the caller then reconnects).
//!
//! Validity dates use the browser's clock. TLS 1.3 with TLS_AES_128_GCM_SHA256 and P-256
//! only (embedded-tls 0.19, see the `xmpp_handshake_embedded_tls` docs); SCRAM `-PLUS`
//! binds with `tls-server-end-point` (RFC 5929).

use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::trust::{
    CertificatePolicy, FirstUse, ReferenceIdentity, TrustBasis, UnixTime,
};
use xmpp_handshake_embedded_tls::{
    Aes128GcmSha256, EmbeddedTls, EmbeddedTlsError, EmbeddedTlsStream, ServerVerifier,
};

use crate::events::{TlsCell, TlsDetail};
use crate::pins::LocalStoragePins;
use crate::rng::BrowserRng;
use crate::websocket::Socket;

/// TLS record buffers: a whole record without max_fragment_length (RFC 8446 §5.2), and
/// what we write per record.
pub const READ_BUFFER: usize = 16640;
/// See [`READ_BUFFER`].
pub const WRITE_BUFFER: usize = 4096;

/// The certificate policy for the options (see the module docs).
pub fn policy(has_anchors: bool, trust_first_use: bool) -> CertificatePolicy {
    match (has_anchors, trust_first_use) {
        (true, false) => CertificatePolicy::anchors(),
        (_, true) => CertificatePolicy::trust_on_first_use(FirstUse::Record),
        (false, false) => CertificatePolicy::trust_on_first_use(FirstUse::AskUser),
    }
}

/// The browser's clock.
pub fn now() -> UnixTime {
    UnixTime((js_sys::Date::now() / 1000.0) as u64)
}

/// The upgrade of one tunnel connection: the backend's [`EmbeddedTls`], telling the socket
/// that TLS records follow, keeping the typed error and the details for the `tls` event.
pub struct TunnelTls<'a> {
    inner: EmbeddedTls<'a, BrowserRng, &'a mut LocalStoragePins>,
    error: Option<EmbeddedTlsError>,
    detail: TlsCell,
}

impl<'a> TunnelTls<'a> {
    /// An upgrade for `domain` with these record buffers, anchors and pins.
    pub fn new(
        read: &'a mut [u8],
        write: &'a mut [u8],
        reference: ReferenceIdentity,
        policy: CertificatePolicy,
        anchors: &'a [&'a [u8]],
        pins: &'a mut LocalStoragePins,
        detail: TlsCell,
    ) -> Self {
        let verifier = ServerVerifier::new(reference, policy, anchors, pins).with_time(now());
        TunnelTls {
            inner: EmbeddedTls::new(read, write, BrowserRng, verifier),
            error: None,
            detail,
        }
    }

    /// Why the handshake failed, typed (the core's error keeps only its text).
    pub fn error(&self) -> Option<&EmbeddedTlsError> {
        self.error.as_ref()
    }

    /// The pin store (to accept a changed key).
    pub fn pins_mut(&mut self) -> &mut LocalStoragePins {
        self.inner.verifier_mut().pins_mut()
    }
}

impl<'a> TlsUpgrade<Socket> for TunnelTls<'a> {
    type Stream = EmbeddedTlsStream<'a, Socket, Aes128GcmSha256>;
    type Error = EmbeddedTlsError;

    async fn upgrade(
        &mut self,
        mut transport: Socket,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        transport.tls_started();
        let result = self.inner.upgrade(transport, server_name).await;
        match &result {
            Ok(_) => {
                if let Some(Ok(verdict)) = self.inner.verifier().verdict() {
                    *self.detail.borrow_mut() = Some(TlsDetail {
                        version: "TLS 1.3",
                        cipher: "TLS_AES_128_GCM_SHA256",
                        fingerprint: verdict.pin.cert_sha256.to_string(),
                        spki: verdict.pin.spki_sha256.to_string(),
                        trust: match verdict.basis {
                            TrustBasis::Anchors => "anchors",
                            TrustBasis::ConfiguredPin => "configured-pin",
                            TrustBasis::StoredPin => "stored-pin",
                            TrustBasis::FirstUse => "first-use",
                            _ => "other",
                        },
                        first_use: verdict.pinned_now,
                    });
                }
            }
            Err(e) => self.error = Some(e.clone()),
        }
        result
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        self.inner.tls_info(stream)
    }
}

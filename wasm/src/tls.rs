//! STARTTLS inside the page (tunnel mode): the embedded-tls backend over the
//! WebSocket, with the core's certificate policy and a `localStorage` pin store; and the
//! bound stream's halves for the core's `driver::run`, TLS or not.
//!
//! * `ca` given: PKIX to those anchors (`Trust::Anchors`), or with `trustFirstUse` also
//!   pinning what they vouched for (`Trust::TrustOnFirstUse`).
//! * no `ca`: trust on first use. With `trustFirstUse` the first key seen is pinned
//!   (`FirstUse::Record`); without it, a key never seen is refused (`certificate` error with
//!   its fingerprints, `FirstUse::AskUser`), while keys pinned earlier still verify.
//! * A key different from the pinned one is always refused with `pin-changed` (both
//!   fingerprints); only `acceptChangedKey` replaces the pin (the caller then reconnects).
//!
//! Validity dates use the browser's clock. TLS 1.3 with TLS_AES_128_GCM_SHA256 and a P-256
//! key exchange (embedded-tls 0.19, see the `xmpp_handshake_embedded_tls` docs); SCRAM
//! `-PLUS` binds with `tls-server-end-point` (RFC 5929).
//!
//! Signatures (the chain's links and the server's CertificateVerify, RFC 8446 §4.4.3) are
//! the browser's to verify: the backend's chain walk runs with its `Deferred` verifier,
//! which assumes each check it has no answer for and records it; when the handshake is
//! done, the upgrade has WebCrypto answer them ([`crate::webcrypto`]) and decides again,
//! until the verdict rests on answers only. Only then does it return the stream: a chain
//! that does not verify fails the upgrade with the same typed certificate error as a
//! synchronous check, and no XMPP byte is sent on that connection. So the page carries no
//! RSA or P-384 arithmetic and still accepts RSA 2048–4096 (PKCS #1 v1.5 in chains, PSS in
//! CertificateVerify) and ECDSA P-256/P-384 with SHA-256/384.

use embedded_io::{Error as _, ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::{MaybeTls, TlsUpgrade};
use xmpp_handshake_core::trust::{
    CertError, CertificatePolicy, FirstUse, ReferenceIdentity, TrustBasis, UnixTime,
};
use xmpp_handshake_core::TlsError as CoreTlsError;
use xmpp_handshake_embedded_tls::signature::Deferred;
use xmpp_handshake_embedded_tls::{
    Aes128GcmSha256, EmbeddedTls, EmbeddedTlsError, EmbeddedTlsReader, EmbeddedTlsStream,
    ServerVerifier, TlsError, TlsWriter,
};

use crate::events::{TlsCell, TlsDetail};
use crate::pins::{HeldPins, LocalStoragePins};
use crate::rng::BrowserRng;
use crate::webcrypto::WebCrypto;
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

/// The TLS upgrade of a connection in either mode (one type for both, so the core's
/// driver is in the bundle once): the backend's [`EmbeddedTls`] in a tunnel, keeping the
/// details for the `tls` event (a failure comes typed in the core's error); none on an
/// RFC 7395 stream, where TLS is the browser's and the core never asks for STARTTLS.
pub struct TunnelTls<'a> {
    inner: Option<EmbeddedTls<'a, BrowserRng, HeldPins<'a>, Aes128GcmSha256, Deferred<WebCrypto>>>,
    detail: TlsCell,
}

/// The TLS upgrade of a connection (the name the session uses in both builds).
pub type Upgrade<'a> = TunnelTls<'a>;

/// The upgrade of an RFC 7395 stream: none.
pub fn no_tls<'a>() -> Upgrade<'a> {
    TunnelTls::none()
}

/// The protected stream of a tunnel.
pub type TlsStream<'a> = EmbeddedTlsStream<'a, Socket, Aes128GcmSha256>;

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
        let verifier = ServerVerifier::new(reference, policy, anchors, HeldPins::new(pins))
            .with_signature_verifier(Deferred::new(WebCrypto))
            .with_time(now());
        TunnelTls {
            inner: Some(EmbeddedTls::new(read, write, BrowserRng, verifier)),
            detail,
        }
    }

    /// No TLS in the page (RFC 7395): an upgrade request is refused.
    fn none() -> Self {
        TunnelTls {
            inner: None,
            detail: TlsCell::default(),
        }
    }

    /// The pin store (to accept a changed key), in a tunnel.
    pub fn pins_mut(&mut self) -> Option<&mut LocalStoragePins> {
        Some(self.inner.as_mut()?.verifier_mut().pins_mut().store_mut())
    }
}

impl<'a> TlsUpgrade<Socket> for TunnelTls<'a> {
    type Stream = TlsStream<'a>;
    type Error = EmbeddedTlsError;

    async fn upgrade(
        &mut self,
        transport: Socket,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        let Some(inner) = &mut self.inner else {
            // Not TLS in the page on this transport.
            return Err(EmbeddedTlsError::Tls(TlsError::Unimplemented));
        };
        let mut result = inner.upgrade(transport, server_name).await;
        // The verdict is final now (the deferred checks answered): a pin the policy
        // recorded is written only for an accepted handshake (see `HeldPins`).
        let pins = inner.verifier_mut().pins_mut();
        match &result {
            Ok(_) => {
                if let Err(e) = pins.commit() {
                    result = Err(EmbeddedTlsError::Certificate(CertError::PinStore(e)));
                }
            }
            Err(_) => pins.discard(),
        }
        if result.is_ok() {
            if let Some(Ok(verdict)) = inner.verifier().verdict() {
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
        result
    }

    fn classify(error: EmbeddedTlsError) -> CoreTlsError {
        error.into()
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        match &self.inner {
            Some(inner) => inner.tls_info(stream),
            None => TlsInfo::default(),
        }
    }
}

/// The reading half of a bound stream: the socket itself, or TLS over it.
pub enum Reader<'s> {
    /// RFC 7395 (or a tunnel without TLS).
    Plain(Socket),
    /// A tunnel after STARTTLS.
    Tls(EmbeddedTlsReader<'s, Socket, Aes128GcmSha256>),
}

/// The writing half of a bound stream; see [`Reader`].
pub enum Writer<'s> {
    /// RFC 7395 (or a tunnel without TLS).
    Plain(Socket),
    /// A tunnel after STARTTLS.
    Tls(TlsWriter<'s, Socket, Aes128GcmSha256>),
}

/// The halves the core's `driver::run` reads and writes at the same time: a read is never
/// cancelled there, which embedded-tls's reads need.
pub fn split<'s>(
    io: &'s mut MaybeTls<Socket, TlsStream<'_>>,
    socket: &Socket,
) -> (Reader<'s>, Writer<'s>) {
    match io {
        MaybeTls::Tls(stream) => {
            let (reader, writer) = stream.split();
            (Reader::Tls(reader), Writer::Tls(writer))
        }
        _ => (Reader::Plain(socket.clone()), Writer::Plain(socket.clone())),
    }
}

impl ErrorType for Reader<'_> {
    type Error = ErrorKind;
}

impl ErrorType for Writer<'_> {
    type Error = ErrorKind;
}

impl Read for Reader<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        match self {
            Reader::Plain(socket) => socket.read(buf).await,
            Reader::Tls(tls) => tls.read(buf).await.map_err(|e| e.kind()),
        }
    }
}

impl Write for Writer<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        match self {
            Writer::Plain(socket) => socket.write(buf).await,
            Writer::Tls(tls) => tls.write(buf).await.map_err(|e| e.kind()),
        }
    }

    async fn flush(&mut self) -> Result<(), ErrorKind> {
        match self {
            Writer::Plain(socket) => socket.flush().await,
            Writer::Tls(tls) => tls.flush().await.map_err(|e| e.kind()),
        }
    }
}

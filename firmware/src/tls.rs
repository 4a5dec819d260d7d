//! How the app gets its TLS: an [`EmbeddedTlsConnector`] makes one core
//! [`TlsUpgrade`] per connection, lending it the TLS
//! record buffers for that connection only (an upgrade moves its buffers into the stream it
//! returns, so each reconnect needs a fresh one).
//!
//! The upgrade is the embedded-tls backend's [`EmbeddedTls`] (crate `xmpp-handshake-embedded-tls`): embedded-tls (TLS 1.3,
//! TLS_AES_128_GCM_SHA256, P-256) whose `TlsVerifier` is the core's certificate policy
//! (RFC 6120 §13.7.2: DNS-ID, SRV-ID or XmppAddr of the configured domain, a PKIX chain to
//! the configured trust anchors, proof of possession). It asks for max_fragment_length 2^12
//! (RFC 6066) so that a 4 KiB + 256 read buffer holds every record. There is no path that
//! skips verification unless the crate feature `insecure-skip-verify` is on.

use embedded_io_async::{ErrorType, Read, Write};
use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::trust::{
    CertificatePolicy, ClockPolicy, NoPins, ReferenceError, ReferenceIdentity, UnixTime,
};
use xmpp_handshake_embedded_tls::{
    Aes128GcmSha256, EmbeddedTls, EmbeddedTlsError, EmbeddedTlsReader, EmbeddedTlsStream,
    MaxFragmentLength, ServerVerifier, TlsError, TlsWriter,
};

/// Where the certificate check gets the time from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// A real-time source (SNTP, RTC; the host's clock): dates are checked.
    Now(fn() -> UnixTime),
    /// No clock on this device: validity dates are not checked (an explicit choice, logged
    /// by the core on every connection; an expired certificate then still verifies).
    None,
}

/// An [`EmbeddedTls`] for each connection. See the module docs.
pub struct EmbeddedTlsConnector<'a> {
    read: &'a mut [u8],
    write: &'a mut [u8],
    anchors: &'a [&'a [u8]],
    reference: ReferenceIdentity,
    policy: CertificatePolicy,
    clock: Clock,
}

impl<'a> EmbeddedTlsConnector<'a> {
    /// `read` and `write` are the TLS record buffers (see [`crate::Memory`]); `anchors` the
    /// DER trust anchors (CA certificates); `domain` the configured XMPP domain.
    pub fn new(
        read: &'a mut [u8],
        write: &'a mut [u8],
        anchors: &'a [&'a [u8]],
        domain: &str,
        clock: Clock,
    ) -> Result<Self, ReferenceError> {
        let mut policy = CertificatePolicy::anchors();
        if matches!(clock, Clock::None) {
            policy.clock = ClockPolicy::SkipValidityWithoutClock;
        }
        #[cfg(feature = "insecure-skip-verify")]
        {
            policy.trust = xmpp_handshake_core::trust::Trust::InsecureSkipVerify;
        }
        Ok(EmbeddedTlsConnector {
            read,
            write,
            anchors,
            reference: ReferenceIdentity::client_to_server(domain)?,
            policy,
            clock,
        })
    }
}

impl EmbeddedTlsConnector<'_> {
    /// A fresh upgrade for the next connection, borrowing the record buffers for it and
    /// drawing its randomness (key share, client random) from `rng`.
    pub fn upgrade<G: RngCore + CryptoRng>(&mut self, rng: G) -> Upgrade<'_, G> {
        let mut verifier = ServerVerifier::new(
            self.reference.clone(),
            self.policy.clone(),
            self.anchors,
            NoPins,
        );
        if let Clock::Now(now) = self.clock {
            verifier = verifier.with_time(now());
        }
        Upgrade(
            EmbeddedTls::new(&mut *self.read, &mut *self.write, rng, verifier)
                .with_max_fragment_length(MaxFragmentLength::Bits12),
        )
    }
}

/// The core's [`EmbeddedTls`] upgrade, returning a [`TlsStream`].
pub struct Upgrade<'b, G>(EmbeddedTls<'b, G, NoPins>);

impl<'b, T, G> TlsUpgrade<T> for Upgrade<'b, G>
where
    T: Read + Write + Clone + 'b,
    G: RngCore + CryptoRng,
{
    type Stream = TlsStream<'b, T>;
    type Error = EmbeddedTlsError;

    async fn upgrade(
        &mut self,
        transport: T,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        self.0.upgrade(transport, server_name).await.map(TlsStream)
    }

    fn classify(error: Self::Error) -> xmpp_handshake_core::TlsError {
        <EmbeddedTls<'b, G, NoPins> as TlsUpgrade<T>>::classify(error)
    }

    fn tls_info(&self, stream: &Self::Stream) -> TlsInfo {
        self.0.tls_info(&stream.0)
    }
}

/// The TLS stream. The negotiation reads and writes it through the halves the bound stream
/// uses ([`TlsStream::split`], for `driver::run`), so that embedded-tls's read and write
/// paths are linked once, not a second time for its whole connection (1.1 KB of flash on
/// the F767).
pub struct TlsStream<'b, T: Read + Write + 'b>(EmbeddedTlsStream<'b, T, Aes128GcmSha256>);

impl<'b, T: Read + Write + Clone + 'b> TlsStream<'b, T> {
    /// A reader and a writer usable at the same time.
    // One copy for the reads and writes below, not one inlined into each.
    #[inline(never)]
    pub fn split(
        &mut self,
    ) -> (
        EmbeddedTlsReader<'_, T, Aes128GcmSha256>,
        TlsWriter<'_, T, Aes128GcmSha256>,
    ) {
        self.0.split()
    }
}

impl<'b, T: Read + Write + 'b> ErrorType for TlsStream<'b, T> {
    type Error = TlsError;
}

impl<'b, T: Read + Write + Clone + 'b> Read for TlsStream<'b, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        self.split().0.read(buf).await
    }
}

impl<'b, T: Read + Write + Clone + 'b> Write for TlsStream<'b, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        self.split().1.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        self.split().1.flush().await
    }
}

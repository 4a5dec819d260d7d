//! How the app gets its TLS: an [`EmbeddedTlsConnector`] makes one core
//! [`TlsUpgrade`] per connection, lending it the TLS
//! record buffers for that connection only (an upgrade moves its buffers into the stream it
//! makes, so each reconnect needs a fresh one). The stream stays in the connection's
//! [`TlsSlot`]; the upgrade returns its halves ([`TlsHalves`]), through which the
//! negotiation reads and writes and the bound stream writes, so that the driver's writing
//! code is linked for one writer type (1 KB of flash on the F767).
//!
//! The upgrade is the embedded-tls backend's [`EmbeddedTls`] (crate `xmpp-handshake-embedded-tls`): embedded-tls (TLS 1.3,
//! TLS_AES_128_GCM_SHA256, P-256) whose `TlsVerifier` is the core's certificate policy
//! (RFC 6120 §13.7.2: DNS-ID, SRV-ID or XmppAddr of the configured domain, a PKIX chain to
//! the configured trust anchors, proof of possession). It asks for max_fragment_length 2^12
//! (RFC 6066) so that a 4 KiB + 256 read buffer holds every record. There is no path that
//! skips verification unless the crate feature `insecure-skip-verify` is on.

use core::cell::Cell;

use alloc::vec::Vec;
use embedded_io_async::{ErrorType, Read, Write};
use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::connection::TlsInfo;
use xmpp_handshake_core::driver::TlsUpgrade;
use xmpp_handshake_core::trust::{
    CertificatePolicy, ClockPolicy, Fingerprint, FirstUse, Pin, PinStore, PinStoreError,
    ReferenceError, ReferenceIdentity, UnixTime,
};
use xmpp_handshake_embedded_tls::{
    Aes128GcmSha256, EmbeddedTls, EmbeddedTlsError, EmbeddedTlsReader, EmbeddedTlsStream,
    MaxFragmentLength, ServerVerifier, TlsError, TlsWriter,
};

/// Where the certificate check gets the time from.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    /// A real-time source (an RTC; the host's clock): dates are checked.
    Now(fn() -> UnixTime),
    /// The time SNTP set ([`crate::time::now`]): dates are checked once it is known;
    /// before that they are not (an explicit choice, logged by the core on every
    /// connection: `ClockPolicy::SkipValidityWithoutClock`; an expired certificate then
    /// still verifies).
    Sntp,
}

/// How the device trusts the server's certificate (RFC 6120 §13.7.2; the settings
/// `XMPP_CA`, `XMPP_PIN`, `XMPP_TRUST_FIRST_USE`).
#[derive(Debug, Clone, Copy)]
pub enum TrustSetting<'a> {
    /// A chain to the trust anchors (`XMPP_CA`).
    Anchors,
    /// Only these keys (`XMPP_PIN`): SHA-256 of the SubjectPublicKeyInfo, 32 bytes each,
    /// as the build script wrote them. The chain is not consulted; the name, the dates
    /// and the proof of possession still are.
    Pins(&'a [u8]),
    /// Trust on first use (`XMPP_TRUST_FIRST_USE=1`), the policy of the CLI's
    /// `--trust-first-use` (`FirstUse::Record`): the first key seen is pinned in the
    /// store ([`PinSlot`]), a changed key is refused with both fingerprints; a first
    /// certificate that chains to the anchors (if any) is pinned as well.
    FirstUse,
}

impl TrustSetting<'_> {
    fn policy(self) -> CertificatePolicy {
        match self {
            TrustSetting::Anchors => CertificatePolicy::anchors(),
            TrustSetting::Pins(bytes) => CertificatePolicy::pinned(
                bytes
                    .chunks_exact(32)
                    .filter_map(|pin| pin.try_into().ok().map(Fingerprint))
                    .collect::<Vec<_>>(),
            ),
            TrustSetting::FirstUse => CertificatePolicy::trust_on_first_use(FirstUse::Record),
        }
    }
}

/// The pin store of one connection: the pin kept in the store's record
/// ([`crate::store::Kept::pin`], loaded before the handshake) and the pin the policy
/// recorded on first use or refreshed (saved to the store after it).
#[derive(Debug, Clone, Copy, Default)]
pub struct PinSlot {
    kept: Option<Pin>,
    recorded: Option<Pin>,
}

impl PinStore for PinSlot {
    fn load(&self, _domain: &str) -> Option<Pin> {
        // One verifier serves one reference domain: the record's pin is that domain's.
        self.recorded.or(self.kept)
    }

    fn store(&mut self, _domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        self.recorded = Some(pin);
        Ok(())
    }
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
    /// DER trust anchors (CA certificates); `trust` how they or pins are used; `domain` the
    /// configured XMPP domain.
    pub fn new(
        read: &'a mut [u8],
        write: &'a mut [u8],
        anchors: &'a [&'a [u8]],
        trust: TrustSetting<'_>,
        domain: &str,
        clock: Clock,
    ) -> Result<Self, ReferenceError> {
        let mut policy = trust.policy();
        if matches!(clock, Clock::Sntp) {
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
    /// drawing its randomness (key share, client random) from `rng`. The TLS stream it
    /// makes stays in `slot` for the connection's life; the connection reads and writes it
    /// through its halves ([`TlsHalves`]). `pin` is the key pinned on an earlier first use
    /// (trust on first use only).
    pub fn upgrade<'b, G, T>(
        &'b mut self,
        rng: G,
        slot: &'b mut TlsSlot<'b, T>,
        pin: Option<Pin>,
    ) -> Upgrade<'b, G, T>
    where
        G: RngCore + CryptoRng,
        T: Read + Write + 'b,
    {
        let mut verifier = ServerVerifier::new(
            self.reference.clone(),
            self.policy.clone(),
            self.anchors,
            PinSlot {
                kept: pin,
                recorded: None,
            },
        );
        let now = match self.clock {
            Clock::Now(now) => Some(now()),
            Clock::Sntp => crate::time::now(),
        };
        verifier.set_time(now);
        Upgrade {
            tls: EmbeddedTls::new(&mut *self.read, &mut *self.write, rng, verifier)
                .with_max_fragment_length(MaxFragmentLength::Bits12),
            slot: Some(slot),
            info: Cell::new(TlsInfo::default()),
        }
    }
}

/// Where one connection's TLS stream stays while it is used through its halves: a local
/// of the connection, made empty before its [`Upgrade`].
pub struct TlsSlot<'b, T: Read + Write + 'b>(Option<EmbeddedTlsStream<'b, T, Aes128GcmSha256>>);

impl<'b, T: Read + Write + 'b> TlsSlot<'b, T> {
    /// An empty slot.
    pub fn new() -> Self {
        TlsSlot(None)
    }
}

impl<'b, T: Read + Write + 'b> Default for TlsSlot<'b, T> {
    fn default() -> Self {
        Self::new()
    }
}

/// The core's [`TlsUpgrade`] with the embedded-tls backend's [`EmbeddedTls`]: the stream
/// goes into the [`TlsSlot`] and the upgrade returns its halves.
pub struct Upgrade<'b, G, T: Read + Write + 'b> {
    tls: EmbeddedTls<'b, G, PinSlot>,
    slot: Option<&'b mut TlsSlot<'b, T>>,
    /// What the handshake established, until the driver asks.
    info: Cell<TlsInfo>,
}

impl<'b, G, T: Read + Write + 'b> Upgrade<'b, G, T> {
    /// The pin the policy recorded during the handshake (a first use, or the same key in
    /// a renewed certificate), to keep in the store.
    pub fn recorded_pin(&mut self) -> Option<Pin> {
        self.tls.verifier_mut().pins_mut().recorded
    }
}

impl<'b, T, G> TlsUpgrade<T> for Upgrade<'b, G, T>
where
    T: Read + Write + Clone + 'b,
    G: RngCore + CryptoRng,
{
    type Stream = TlsHalves<'b, T>;
    type Error = EmbeddedTlsError;

    async fn upgrade(
        &mut self,
        transport: T,
        server_name: &str,
    ) -> Result<Self::Stream, Self::Error> {
        let slot = self.slot.take().ok_or(EmbeddedTlsError::AlreadyUsed)?;
        let stream = self.tls.upgrade(transport, server_name).await?;
        self.info
            .set(<EmbeddedTls<'b, G, PinSlot> as TlsUpgrade<T>>::tls_info(
                &self.tls, &stream,
            ));
        let (reader, writer) = slot.0.insert(stream).split();
        Ok(TlsHalves {
            reader: Some(reader),
            writer,
        })
    }

    fn classify(error: Self::Error) -> xmpp_handshake_core::TlsError {
        <EmbeddedTls<'b, G, PinSlot> as TlsUpgrade<T>>::classify(error)
    }

    fn tls_info(&self, _stream: &Self::Stream) -> TlsInfo {
        self.info.take()
    }
}

/// The TLS stream as its two halves. The negotiation reads and writes through them, and
/// the bound stream writes through the same `MaybeTls` (one copy of the driver's writing
/// code, not one per writer type) while `driver::run` reads through the reader taken out
/// ([`TlsHalves::take_reader`]).
pub struct TlsHalves<'b, T: 'b> {
    reader: Option<EmbeddedTlsReader<'b, T, Aes128GcmSha256>>,
    writer: TlsWriter<'b, T, Aes128GcmSha256>,
}

impl<'b, T: 'b> TlsHalves<'b, T> {
    /// The reader, for a loop that reads while it writes through `self`; reads through
    /// `self` fail afterwards.
    pub fn take_reader(&mut self) -> Option<EmbeddedTlsReader<'b, T, Aes128GcmSha256>> {
        self.reader.take()
    }
}

impl<'b, T: 'b> ErrorType for TlsHalves<'b, T> {
    type Error = TlsError;
}

impl<'b, T: Read + 'b> Read for TlsHalves<'b, T> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, TlsError> {
        match &mut self.reader {
            Some(reader) => reader.read(buf).await,
            None => Err(TlsError::InternalError),
        }
    }
}

impl<'b, T: Write + 'b> Write for TlsHalves<'b, T> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, TlsError> {
        self.writer.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), TlsError> {
        self.writer.flush().await
    }
}

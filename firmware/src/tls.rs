//! How the app gets its TLS: an [`EmbeddedTlsConnector`] makes one core
//! [`TlsUpgrade`](xmpp_handshake_core::driver::TlsUpgrade) per connection, lending it the TLS
//! record buffers for that connection only (an upgrade moves its buffers into the stream it
//! returns, so each reconnect needs a fresh one).
//!
//! The upgrade is the core's [`EmbeddedTls`]: embedded-tls (TLS 1.3,
//! TLS_AES_128_GCM_SHA256, P-256) whose `TlsVerifier` is the core's certificate policy
//! (RFC 6120 §13.7.2: DNS-ID, SRV-ID or XmppAddr of the configured domain, a PKIX chain to
//! the configured trust anchors, proof of possession). It asks for max_fragment_length 2^12
//! (RFC 6066) so that a 4 KiB + 256 read buffer holds every record. There is no path that
//! skips verification unless the crate feature `insecure-skip-verify` is on.

use rand_core::{CryptoRng, RngCore};
use xmpp_handshake_core::embedded_tls::{EmbeddedTls, MaxFragmentLength, ServerVerifier};
use xmpp_handshake_core::trust::{
    CertificatePolicy, ClockPolicy, NoPins, ReferenceError, ReferenceIdentity, UnixTime,
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

/// The core's [`EmbeddedTls`] for each connection. See the module docs.
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
    pub fn upgrade<G: RngCore + CryptoRng>(&mut self, rng: G) -> EmbeddedTls<'_, G, NoPins> {
        let mut verifier = ServerVerifier::new(
            self.reference.clone(),
            self.policy.clone(),
            self.anchors,
            NoPins,
        );
        if let Clock::Now(now) = self.clock {
            verifier = verifier.with_time(now());
        }
        EmbeddedTls::new(&mut *self.read, &mut *self.write, rng, verifier)
            .with_max_fragment_length(MaxFragmentLength::Bits12)
    }
}

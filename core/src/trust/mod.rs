//! Certificate identity, trust and pinning (RFC 6120 §13.7.2, RFC 6125).
//!
//! One policy for every TLS backend. A backend (rustls on the host, embedded-tls's
//! `TlsVerifier` on firmware and wasm) does the PKIX chain walk and all signature math with
//! its own well-kept code, **without** its name check, and hands the presented chain and
//! the outcome to [`CertificatePolicy::verify_server`], which decides:
//!
//! 1. **Identity** (RFC 6120 §13.7.2.1, RFC 6125 §6): the reference identity is the domain
//!    the user configured ([`ReferenceIdentity`]), never a DNS SRV target, a
//!    `<see-other-host/>` or anything else learned over the network. It matches
//!    * DNS-ID (SAN dNSName): exact, or `*` as the whole left-most label matching exactly
//!      one label (never the bare domain, never deeper);
//!    * SRV-ID (SAN otherName id-on-dnsSRV 1.3.6.1.5.5.7.8.7, IA5String):
//!      `_xmpp-client.DOMAIN` for C2S, `_xmpp-server.DOMAIN` for S2S;
//!    * XmppAddr (SAN otherName id-on-xmppAddr 1.3.6.1.5.5.7.8.5, UTF8String): the domain;
//!    * CN-ID only as an opt-in last resort ([`CertificatePolicy::allow_cn_fallback`]) and
//!      only when the certificate has no SAN identifiers.
//!
//!    Domains compare per RFC 7622 §3.2: ASCII case-insensitively, trailing dot ignored,
//!    internationalized labels as A-labels. U-label input needs the `idna` feature
//!    (off by default for its size); without it a non-ASCII reference is refused with
//!    [`ReferenceError::NotAscii`].
//! 2. **Dates**: checked when `now` is given; without a clock the [`ClockPolicy`] is an
//!    explicit, logged choice.
//! 3. **Trust** ([`Trust`]): PKIX to configured anchors; configured key pins; or trust on
//!    first use with a [`PinStore`] keyed by domain holding SHA-256 of the
//!    SubjectPublicKeyInfo and of the certificate. A changed key is
//!    [`CertError::PinChanged`] with both fingerprints (OpenSSL's `AB:CD:…` form), never a
//!    silent accept; interactive clients resolve it with [`accept_changed_certificate`].
//!
//! Pinning replaces the chain, not the proof of possession: the backend must still verify
//! the TLS 1.3 CertificateVerify (TLS 1.2 ServerKeyExchange) signature with the presented
//! key. The same decoded certificate yields `tls-server-end-point` channel-binding data
//! (RFC 5929, [`EndEntityCertificate::tls_server_end_point`], also in [`Verdict`]).
//!
//! On the receiving side, [`CertificatePolicy::verify_client`] returns the XmppAddr and
//! DNS-ID identities of a client certificate for SASL EXTERNAL; a connecting server is
//! verified with `verify_server` and its stream's domain as reference.

mod cert;
mod error;
mod fingerprint;
pub(crate) mod name;
mod pin;
mod policy;
pub mod x509;

#[cfg(test)]
mod tests;

pub use cert::{EndEntityCertificate, PresentedId, ID_ON_DNS_SRV, ID_ON_XMPP_ADDR};
pub use error::{CertError, PinChange};
pub use fingerprint::{Fingerprint, InvalidFingerprint};
pub use name::{ReferenceError, ReferenceIdentity, Service};
pub use pin::{
    accept_changed_certificate, approve_first_use, AcceptError, MemoryPinStore, NoPins, Pin,
    PinStore, PinStoreError,
};
pub use policy::{
    CertificatePolicy, ChainCheck, ClientCertificate, ClockPolicy, FirstUse, PkixOutcome, Trust,
    TrustBasis, Verdict,
};

/// Seconds since 1970-01-01T00:00:00Z. The core has no clock: the caller passes the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UnixTime(pub u64);

/// `tls-server-end-point` channel-binding data (RFC 5929 §4.1) for a DER end-entity
/// certificate: its hash with the hash function of its signature algorithm (SHA-256 for
/// MD5 and SHA-1).
pub fn tls_server_end_point(end_entity: &[u8]) -> Result<alloc::vec::Vec<u8>, CertError> {
    EndEntityCertificate::parse(end_entity)?.tls_server_end_point()
}

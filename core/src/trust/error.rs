//! Every way a certificate can fail the policy, one variant per rule, so a caller (and a
//! test) can tell exactly which rule fired. `Display` says what happened and what to do.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::cert::PresentedId;
use super::fingerprint::Fingerprint;
use super::pin::PinStoreError;
use super::policy::PkixOutcome;
use super::UnixTime;

/// The pinned and the presented key of a [`CertError::PinChanged`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PinChange {
    /// The domain the pin is for.
    pub domain: String,
    /// SHA-256 of the pinned key.
    pub old_spki: Fingerprint,
    /// SHA-256 of the presented key.
    pub new_spki: Fingerprint,
    /// SHA-256 of the certificate seen when pinning.
    pub old_cert: Fingerprint,
    /// SHA-256 of the presented certificate.
    pub new_cert: Fingerprint,
}

/// Why a certificate is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CertError {
    /// The peer presented no certificate.
    EmptyChain,
    /// The end-entity certificate is not well-formed DER X.509.
    BadEncoding,
    /// No presented identifier matches the reference identity (RFC 6125 §6, RFC 6120
    /// §13.7.2.1).
    NameMismatch {
        /// The configured domain.
        reference: String,
        /// Everything the certificate presents (CNs included, even when not consulted).
        presented: Vec<PresentedId>,
    },
    /// The chain does not lead to a configured trust anchor (unknown CA, or the server did
    /// not send its intermediate certificates).
    UnknownIssuer {
        /// SHA-256 of the presented key, for an out-of-band comparison.
        spki: Fingerprint,
        /// SHA-256 of the presented certificate.
        cert: Fingerprint,
    },
    /// A self-signed certificate where a CA-issued one is required.
    SelfSigned {
        /// SHA-256 of the presented key.
        spki: Fingerprint,
        /// SHA-256 of the presented certificate.
        cert: Fingerprint,
    },
    /// The end-entity certificate's notAfter has passed.
    Expired {
        /// notAfter, seconds since the epoch.
        not_after: UnixTime,
        /// The time used.
        now: UnixTime,
    },
    /// The end-entity certificate's notBefore is in the future.
    NotYetValid {
        /// notBefore, seconds since the epoch.
        not_before: UnixTime,
        /// The time used.
        now: UnixTime,
    },
    /// No clock, and the clock policy requires validity dates to be checked.
    NoClock,
    /// The backend's PKIX check failed for another reason (bad signature in the chain, an
    /// intermediate expired, wrong key usage, revoked, or no check was run).
    ChainInvalid {
        /// What the backend reported.
        outcome: PkixOutcome,
    },
    /// A different key than the one pinned for this domain on an earlier connection
    /// (boxed: four fingerprints would make every `Result<_, CertError>` large).
    PinChanged(Box<PinChange>),
    /// The presented key is not among the configured pins (`Trust::Pinned`).
    PinMismatch {
        /// The domain connected to.
        domain: String,
        /// The configured SPKI pins.
        expected: Vec<Fingerprint>,
        /// SHA-256 of the presented key.
        spki: Fingerprint,
        /// SHA-256 of the presented certificate.
        cert: Fingerprint,
    },
    /// First sight of a certificate that no trust anchor vouches for, and the policy asks
    /// the user (`FirstUse::AskUser`).
    NotTrustedFirstUse {
        /// The domain connected to.
        domain: String,
        /// SHA-256 of the presented key.
        spki: Fingerprint,
        /// SHA-256 of the presented certificate.
        cert: Fingerprint,
        /// Issuer equals subject: a self-signed certificate.
        self_signed: bool,
    },
    /// The pin store failed; nothing was accepted.
    PinStore(PinStoreError),
    /// A client certificate (SASL EXTERNAL, RFC 6120 §6.4 / XEP-0178) carries no XmppAddr
    /// and no DNS-ID to authenticate as.
    NoClientIdentity,
    /// `tls-server-end-point` (RFC 5929 §4.1) is undefined for this signature algorithm, or
    /// needs SHA-384/SHA-512, which a build without the `sha-512` feature leaves out.
    ChannelBindingUndefined {
        /// Dotted OID of the certificate's signatureAlgorithm.
        signature_algorithm: String,
    },
}

fn write_list<T: fmt::Display>(f: &mut fmt::Formatter<'_>, items: &[T]) -> fmt::Result {
    if items.is_empty() {
        return f.write_str("nothing");
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    Ok(())
}

impl CertError {
    /// `Display` without the `error-text` feature: the rule that fired as a short name,
    /// with the domain and the fingerprints a user compares.
    fn fmt_short(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::EmptyChain => f.write_str("empty-chain"),
            CertError::BadEncoding => f.write_str("bad-encoding"),
            CertError::NameMismatch {
                reference,
                presented,
            } => {
                write!(f, "name-mismatch {reference}: presents ")?;
                write_list(f, presented)
            }
            CertError::UnknownIssuer { spki, cert } => {
                write!(f, "unknown-issuer: key {spki}, certificate {cert}")
            }
            CertError::SelfSigned { spki, cert } => {
                write!(f, "self-signed: key {spki}, certificate {cert}")
            }
            CertError::Expired { not_after, now } => {
                write!(f, "expired {} (now {})", not_after.0, now.0)
            }
            CertError::NotYetValid { not_before, now } => {
                write!(f, "not-yet-valid {} (now {})", not_before.0, now.0)
            }
            CertError::NoClock => f.write_str("no-clock"),
            CertError::ChainInvalid { outcome } => write!(f, "chain-invalid: {outcome}"),
            CertError::PinChanged(change) => write!(
                f,
                "pin-changed {}: key {} -> {}, certificate {} -> {}",
                change.domain, change.old_spki, change.new_spki, change.old_cert, change.new_cert
            ),
            CertError::PinMismatch { domain, spki, .. } => {
                write!(f, "pin-mismatch {domain}: key {spki}")
            }
            CertError::NotTrustedFirstUse {
                domain, spki, cert, ..
            } => write!(
                f,
                "not-trusted-first-use {domain}: key {spki}, certificate {cert}"
            ),
            CertError::PinStore(e) => write!(f, "{e}"),
            CertError::NoClientIdentity => f.write_str("no-client-identity"),
            CertError::ChannelBindingUndefined {
                signature_algorithm,
            } => write!(f, "channel-binding-undefined {signature_algorithm}"),
        }
    }
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !cfg!(feature = "error-text") {
            return self.fmt_short(f);
        }
        match self {
            CertError::EmptyChain => {
                f.write_str("the peer presented no certificate; a TLS peer must present one")
            }
            CertError::BadEncoding => f.write_str(
                "the peer's certificate is not valid DER X.509; the server's certificate \
                 file is damaged or not a certificate",
            ),
            CertError::NameMismatch {
                reference,
                presented,
            } => {
                write!(f, "the certificate is not for `{reference}`: it presents ")?;
                write_list(f, presented)?;
                f.write_str(
                    ". Check the configured domain; otherwise the server is misconfigured or \
                     the connection is being intercepted. Do not connect.",
                )
            }
            CertError::UnknownIssuer { spki, cert } => write!(
                f,
                "the certificate is not issued by a trusted CA (or the server does not send \
                 its intermediate certificates). Add the CA to the trust anchors, fix the \
                 server's chain, or pin the key after checking it with the operator: key \
                 SHA-256 {spki}, certificate SHA-256 {cert}"
            ),
            CertError::SelfSigned { spki, cert } => write!(
                f,
                "the certificate is self-signed. Trust it only after comparing its \
                 fingerprint with the server operator, then pin it: key SHA-256 {spki}, \
                 certificate SHA-256 {cert}"
            ),
            CertError::Expired { not_after, now } => write!(
                f,
                "the certificate expired (notAfter {} s, now {} s since the epoch); the \
                 server must renew it, or check this device's clock",
                not_after.0, now.0
            ),
            CertError::NotYetValid { not_before, now } => write!(
                f,
                "the certificate is not valid yet (notBefore {} s, now {} s since the \
                 epoch); check this device's clock",
                not_before.0, now.0
            ),
            CertError::NoClock => f.write_str(
                "no clock to check certificate validity dates: provide the time, or choose \
                 `ClockPolicy::SkipValidityWithoutClock` explicitly",
            ),
            CertError::ChainInvalid { outcome } => write!(
                f,
                "the certificate chain failed verification: {outcome}; the server's chain \
                 is broken or the connection is being intercepted"
            ),
            CertError::PinChanged(change) => {
                let PinChange {
                    domain,
                    old_spki,
                    new_spki,
                    old_cert,
                    new_cert,
                } = &**change;
                write!(
                    f,
                    "SECURITY WARNING: the certificate key for `{domain}` HAS CHANGED since it \
                 was pinned. Pinned key SHA-256 {old_spki} (certificate {old_cert}); \
                 presented key SHA-256 {new_spki} (certificate {new_cert}). This is what \
                 an interception looks like. Do not connect unless the server operator \
                 confirms the new fingerprint; then accept it explicitly \
                 (`accept_changed_certificate`)."
                )
            }
            CertError::PinMismatch {
                domain,
                expected,
                spki,
                cert,
            } => {
                write!(
                    f,
                    "the key presented by `{domain}` (SHA-256 {spki}, certificate {cert}) is \
                     not a configured pin ("
                )?;
                write_list(f, expected)?;
                f.write_str("); update the configured pins only after the operator confirms")
            }
            CertError::NotTrustedFirstUse {
                domain,
                spki,
                cert,
                self_signed,
            } => write!(
                f,
                "first connection to `{domain}` and its {} certificate is not vouched for by \
                 a trusted CA. Compare key SHA-256 {spki} (certificate {cert}) with the \
                 server operator, then approve it (`approve_first_use`) to pin it",
                if *self_signed {
                    "self-signed"
                } else {
                    "CA-issued"
                }
            ),
            CertError::PinStore(e) => write!(f, "{e}; nothing was accepted"),
            CertError::NoClientIdentity => f.write_str(
                "the client certificate carries no XmppAddr or DNS-ID to authenticate as",
            ),
            CertError::ChannelBindingUndefined {
                signature_algorithm,
            } => write!(
                f,
                "tls-server-end-point is undefined for signature algorithm \
                 {signature_algorithm} (RFC 5929 §4.1) or its hash is not in this build; use \
                 another channel-binding type or none"
            ),
        }
    }
}

impl core::error::Error for CertError {}

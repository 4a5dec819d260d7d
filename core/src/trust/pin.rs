//! Trust-on-first-use and pinning: what was seen for a domain, and the explicit calls that
//! change it.

use alloc::collections::BTreeMap;
use alloc::string::String;
use core::fmt;

use super::fingerprint::Fingerprint;
use super::CertError;

/// What is remembered for a domain: SHA-256 of the certificate's SubjectPublicKeyInfo (the
/// key that must be presented again) and of the whole certificate (for display; a renewal
/// with the same key changes it without changing trust).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pin {
    /// SHA-256 of the DER SubjectPublicKeyInfo.
    pub spki_sha256: Fingerprint,
    /// SHA-256 of the DER certificate.
    pub cert_sha256: Fingerprint,
}

/// A pin store failed (a persistent store could not write). The policy fails closed on it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PinStoreError(pub String);

impl fmt::Display for PinStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pin store: {}", self.0)
    }
}

impl core::error::Error for PinStoreError {}

/// Pins keyed by XMPP domain (normalized: lowercase A-labels, no trailing dot, as
/// [`ReferenceIdentity::domain`](super::ReferenceIdentity::domain) gives it).
///
/// The policy only calls [`PinStore::store`] for a first use it is allowed to record and
/// for a same-key renewal; a changed key is never written by the policy, only by
/// [`accept_changed_certificate`].
pub trait PinStore {
    /// The pin for `domain`, if any.
    fn load(&self, domain: &str) -> Option<Pin>;
    /// Remember `pin` for `domain`, replacing what was there.
    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError>;
}

impl<T: PinStore + ?Sized> PinStore for &mut T {
    fn load(&self, domain: &str) -> Option<Pin> {
        (**self).load(domain)
    }
    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        (**self).store(domain, pin)
    }
}

/// A store that holds nothing and refuses writes: for policies that never pin
/// (`Trust::Anchors`, `Trust::Pinned`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoPins;

impl PinStore for NoPins {
    fn load(&self, _domain: &str) -> Option<Pin> {
        None
    }
    fn store(&mut self, _domain: &str, _pin: Pin) -> Result<(), PinStoreError> {
        Err(PinStoreError("no pin store configured".into()))
    }
}

/// Pins in memory (tests, or a caller that persists the map itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryPinStore {
    pins: BTreeMap<String, Pin>,
}

impl MemoryPinStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget the pin for `domain`.
    pub fn remove(&mut self, domain: &str) -> Option<Pin> {
        self.pins.remove(domain)
    }

    /// All pins, by domain.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Pin)> {
        self.pins.iter().map(|(d, p)| (d.as_str(), p))
    }

    /// Number of pinned domains.
    pub fn len(&self) -> usize {
        self.pins.len()
    }

    /// No pins.
    pub fn is_empty(&self) -> bool {
        self.pins.is_empty()
    }
}

impl PinStore for MemoryPinStore {
    fn load(&self, domain: &str) -> Option<Pin> {
        self.pins.get(domain).copied()
    }
    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        self.pins.insert(domain.into(), pin);
        Ok(())
    }
}

/// Why an explicit accept/approve call did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AcceptError {
    /// The error passed in is not one this call resolves (e.g. a `NameMismatch` cannot be
    /// accepted: a certificate for another domain is never pinned).
    NotApplicable,
    /// The store failed to write.
    Store(PinStoreError),
}

impl fmt::Display for AcceptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcceptError::NotApplicable => f.write_str(
                "this certificate error cannot be resolved by accepting the certificate",
            ),
            AcceptError::Store(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for AcceptError {}

/// Interactive clients only: the user, having compared the fingerprints in a
/// [`CertError::PinChanged`] with the server operator's, accepts the new key. Writes the
/// new pin for that domain; the next connection with that key verifies. Automatic clients
/// must not call this: they fail closed.
pub fn accept_changed_certificate<S: PinStore + ?Sized>(
    store: &mut S,
    error: &CertError,
) -> Result<Pin, AcceptError> {
    match error {
        CertError::PinChanged(change) => {
            let domain = &change.domain;
            let pin = Pin {
                spki_sha256: change.new_spki,
                cert_sha256: change.new_cert,
            };
            warn!(
                "user accepted a changed certificate key for {}",
                domain.as_str()
            );
            store.store(domain, pin).map_err(AcceptError::Store)?;
            Ok(pin)
        }
        _ => Err(AcceptError::NotApplicable),
    }
}

/// Interactive clients: the user approves a certificate seen for the first time
/// ([`CertError::NotTrustedFirstUse`], `FirstUse::AskUser`) after checking its fingerprint.
/// Writes the pin; the next connection presenting that key verifies.
pub fn approve_first_use<S: PinStore + ?Sized>(
    store: &mut S,
    error: &CertError,
) -> Result<Pin, AcceptError> {
    match error {
        CertError::NotTrustedFirstUse {
            domain, spki, cert, ..
        } => {
            let pin = Pin {
                spki_sha256: *spki,
                cert_sha256: *cert,
            };
            store.store(domain, pin).map_err(AcceptError::Store)?;
            Ok(pin)
        }
        _ => Err(AcceptError::NotApplicable),
    }
}

//! Trust-on-first-use pins in the page's `localStorage` (RFC 6120 §13.7.2 via the core's
//! [`PinStore`]): one item per XMPP domain, key `xmpp-handshake.pin.DOMAIN`, value the
//! SHA-256 of the SubjectPublicKeyInfo and of the certificate, as OpenSSL prints them:
//!
//! ```text
//! xmpp-handshake.pin.example.com = "AB:CD:… 01:23:…"
//! ```
//!
//! The origin's storage is the page's; pins are shared by every tab of that origin and
//! survive reloads. A corrupt item is an error before connecting (never a silent unpin).

use web_sys::Storage;
use xmpp_handshake_core::trust::{Pin, PinStore, PinStoreError};

/// The prefix of every pin item.
pub const KEY_PREFIX: &str = "xmpp-handshake.pin.";

/// Why nothing can be pinned.
const NO_STORAGE: &str = "this page has no localStorage";

/// Pins in `localStorage`. See the module docs.
pub struct LocalStoragePins {
    storage: Option<Storage>,
}

impl LocalStoragePins {
    /// The page's `localStorage`; `None` where the page has none (then nothing is
    /// remembered: first use cannot be recorded and fails closed).
    pub fn open() -> Self {
        let storage = web_sys::window().and_then(|w| w.local_storage().ok().flatten());
        LocalStoragePins { storage }
    }

    /// The pin for `domain`; an error when the stored item does not parse.
    pub fn get(&self, domain: &str) -> Result<Option<Pin>, String> {
        let Some(storage) = &self.storage else {
            return Ok(None);
        };
        let key = key(domain);
        let Some(value) = storage.get_item(&key).ok().flatten() else {
            return Ok(None);
        };
        parse(&value).map(Some).ok_or_else(|| {
            format!(
                "localStorage item '{key}' is not a pin (expected two SHA-256 fingerprints); \
                 remove it to pin {domain} again"
            )
        })
    }

    /// Forgets the pin for `domain`.
    pub fn remove(&self, domain: &str) -> Result<(), String> {
        match &self.storage {
            Some(storage) => storage
                .remove_item(&key(domain))
                .map_err(|e| crate::websocket::describe(&e)),
            None => Ok(()),
        }
    }
}

fn key(domain: &str) -> String {
    format!("{KEY_PREFIX}{domain}")
}

fn parse(value: &str) -> Option<Pin> {
    let mut fields = value.split_whitespace();
    let pin = Pin {
        spki_sha256: fields.next()?.parse().ok()?,
        cert_sha256: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(pin)
}

impl PinStore for LocalStoragePins {
    fn load(&self, domain: &str) -> Option<Pin> {
        // A corrupt item was refused before connecting (`get`); here it counts as none.
        self.get(domain).ok().flatten()
    }

    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        let storage = self
            .storage
            .as_ref()
            .ok_or_else(|| PinStoreError(NO_STORAGE.into()))?;
        let value = format!("{} {}", pin.spki_sha256, pin.cert_sha256);
        storage
            .set_item(&key(domain), &value)
            .map_err(|e| PinStoreError(crate::websocket::describe(&e)))
    }
}

/// The pins one tunnel handshake decides with. Reads go to the page's store; a pin the
/// policy records (first use, or a renewed certificate of the same key) is held back and
/// written only by [`HeldPins::commit`], once the verdict is final.
///
/// The signature checks are answered after the handshake (see `tls.rs`): the policy
/// decides first on checks it assumed valid and again on WebCrypto's answers. Were the pin
/// written at the first decision, a chain whose signatures turn out forged would leave its
/// key pinned, and a stored pin is trusted before any CA (RFC 6120 §13.7.2.2: the
/// connection fails, but the next one would accept that key). Every decision of one
/// handshake sees the same store, so a first use is reported as such each time.
pub struct HeldPins<'p> {
    pins: &'p mut LocalStoragePins,
    held: Option<(String, Pin)>,
}

impl<'p> HeldPins<'p> {
    /// Holds back what is stored into `pins`.
    pub fn new(pins: &'p mut LocalStoragePins) -> Self {
        HeldPins { pins, held: None }
    }

    /// The page's store itself (to accept a changed key: written at once).
    pub fn store_mut(&mut self) -> &mut LocalStoragePins {
        self.pins
    }

    /// After an accepted handshake: writes the pin held back, if any.
    pub fn commit(&mut self) -> Result<(), PinStoreError> {
        match self.held.take() {
            Some((domain, pin)) => self.pins.store(&domain, pin),
            None => Ok(()),
        }
    }

    /// After a refused handshake: forgets the pin held back.
    pub fn discard(&mut self) {
        self.held = None;
    }
}

impl PinStore for HeldPins<'_> {
    fn load(&self, domain: &str) -> Option<Pin> {
        self.pins.load(domain)
    }

    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        // Fails now, as the write would, where the page has no localStorage.
        if self.pins.storage.is_none() {
            return Err(PinStoreError(NO_STORAGE.into()));
        }
        self.held = Some((domain.into(), pin));
        Ok(())
    }
}

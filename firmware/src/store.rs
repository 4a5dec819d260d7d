//! Where the login memory lives between logins and across reboots.
//!
//! The core's [`LoginMemory`] holds what one login keeps for the next: the SCRAM keys
//! (ClientKey and ServerKey for one salt and iteration count: with them a login skips
//! PBKDF2, 10,000 HMAC-SHA-1 rounds against Prosody, the slowest part of a login on a
//! microcontroller) and the server's post-TLS mechanism offer (RFC 6120 §6.3.3), from which
//! the next login picks the `<auth/>` it pipelines behind the first protected header. The
//! keys are password-equivalent for this server: keep the store where the password is
//! (flash of the same device).
//!
//! With trust on first use (`XMPP_TRUST_FIRST_USE`) the same record keeps the server's
//! pinned key ([`Kept::pin`]: SHA-256 of its SubjectPublicKeyInfo and of the certificate
//! it came in), which the next connections must present (RFC 6120 §13.7.2, the core's
//! `Trust::TrustOnFirstUse`).
//!
//! One record per store: `"XSC4"`, JID length (u8), the bare JID the record belongs to,
//! a pin flag (u8: 0, or 1 followed by the key's and the certificate's SHA-256, 64
//! bytes), the memory's length (u16 BE), the memory ([`LoginMemory::to_bytes`], the
//! core's versioned format), FNV-1a-32 of everything before it (BE). Records of the
//! earlier formats read as what they held, without a pin (`"XSC3"`: no pin flag; `"XSC2"`:
//! offer bits and a SCRAM entry; `"XSC1"`: the entry only). A record for another JID, a
//! torn write or erased flash reads as empty.

use alloc::vec::Vec;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use xmpp_handshake_core::login::{self, LoginMemory};
use xmpp_handshake_core::sasl::{MechanismSet, ScramCacheEntry};
use xmpp_handshake_core::trust::{Fingerprint, Pin};

/// Longest record: JID up to 255 bytes, a pin, a memory up to [`login::MAX_LEN`].
pub const MAX_RECORD: usize = 4 + 1 + 255 + 1 + 64 + 2 + login::MAX_LEN + 4;

const MAGIC: &[u8; 4] = b"XSC4";
/// The format before the pin: read, never written.
const MAGIC_V3: &[u8; 4] = b"XSC3";
/// The formats before the core's login memory: read, never written.
const MAGIC_V2: &[u8; 4] = b"XSC2";
const MAGIC_V1: &[u8; 4] = b"XSC1";

/// What the store keeps for one JID.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kept {
    /// What one login keeps for the next (the SCRAM keys, the post-TLS offer).
    pub memory: LoginMemory,
    /// The server's key pinned on first use (trust on first use only).
    pub pin: Option<Pin>,
}

/// Why a store could not save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreError {
    /// The record does not fit the store.
    TooLarge,
    /// The medium failed (flash erase/write, file I/O).
    Medium,
}

/// Keeps the login memory and the pin of one JID.
pub trait CacheStore {
    /// The stored record, if there is one for `jid` and it reads back intact.
    fn load(&mut self, jid: &str) -> Option<Kept>;
    /// Replaces the stored record.
    fn save(&mut self, jid: &str, kept: &Kept) -> Result<(), StoreError>;
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The record for `jid` and `kept`.
pub fn encode(jid: &str, kept: &Kept) -> Result<Vec<u8>, StoreError> {
    let bytes = kept.memory.to_bytes().map_err(|_| StoreError::TooLarge)?;
    let jid_len = u8::try_from(jid.len()).map_err(|_| StoreError::TooLarge)?;
    let len = u16::try_from(bytes.len()).map_err(|_| StoreError::TooLarge)?;
    let mut out = Vec::with_capacity(76 + jid.len() + bytes.len());
    out.extend_from_slice(MAGIC);
    out.push(jid_len);
    out.extend_from_slice(jid.as_bytes());
    match &kept.pin {
        Some(pin) => {
            out.push(1);
            out.extend_from_slice(pin.spki_sha256.as_bytes());
            out.extend_from_slice(pin.cert_sha256.as_bytes());
        }
        None => out.push(0),
    }
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// What `record` keeps if it is intact and belongs to `jid`. Trailing bytes (erased
/// flash) are ignored.
pub fn decode(record: &[u8], jid: &str) -> Option<Kept> {
    // (format, rest after the magic)
    let (format, rest) = if let Some(rest) = record.strip_prefix(MAGIC) {
        (4, rest)
    } else if let Some(rest) = record.strip_prefix(MAGIC_V3) {
        (3, rest)
    } else if let Some(rest) = record.strip_prefix(MAGIC_V2) {
        (2, rest)
    } else {
        (1, record.strip_prefix(MAGIC_V1)?)
    };
    let (&jid_len, rest) = rest.split_first()?;
    let (stored_jid, rest) = rest.split_at_checked(usize::from(jid_len))?;
    // The pin (format 4) or the offer bits (format 2) between the JID and the length.
    let between = match format {
        4 => 1 + 64 * usize::from(*rest.first()? == 1),
        2 => 2,
        _ => 0,
    };
    let (extra, rest) = rest.split_at_checked(between)?;
    let (len, rest) = rest.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (body, rest) = rest.split_at_checked(len)?;
    let (sum, _) = rest.split_at_checked(4)?;
    let covered = 4 + 1 + usize::from(jid_len) + between + 2 + len;
    if fnv1a(&record[..covered]) != u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) {
        return None;
    }
    if stored_jid != jid.as_bytes() {
        return None;
    }
    if format >= 3 {
        let pin = match extra {
            [1, pin @ ..] => pin_from(pin),
            _ => None,
        };
        return Some(Kept {
            memory: LoginMemory::from_bytes(body).ok()?,
            pin,
        });
    }
    let offer = match extra {
        [a, b] => Some(MechanismSet::from_bits(u16::from_be_bytes([*a, *b]))),
        _ => None,
    };
    Some(Kept {
        memory: LoginMemory {
            scram: Some(ScramCacheEntry::from_bytes(body).ok()?),
            offer,
            ..LoginMemory::default()
        },
        pin: None,
    })
}

/// A pin from its 64 stored bytes: the key's SHA-256, then the certificate's.
fn pin_from(bytes: &[u8]) -> Option<Pin> {
    let (spki, cert) = bytes.split_at_checked(32)?;
    Some(Pin {
        spki_sha256: Fingerprint(spki.try_into().ok()?),
        cert_sha256: Fingerprint(cert.try_into().ok()?),
    })
}

/// Keeps the record in RAM (lost at reset): for boards without a spare flash sector.
#[derive(Debug, Default)]
pub struct RamStore {
    record: Option<Vec<u8>>,
}

impl CacheStore for RamStore {
    fn load(&mut self, jid: &str) -> Option<Kept> {
        decode(self.record.as_deref()?, jid)
    }

    fn save(&mut self, jid: &str, kept: &Kept) -> Result<(), StoreError> {
        self.record = Some(encode(jid, kept)?);
        Ok(())
    }
}

/// Keeps the record in a region of NOR flash (a sector the firmware image does not use):
/// erase, then write, padded to the flash's write size.
pub struct NorFlashStore<F> {
    flash: F,
    offset: u32,
    size: u32,
}

impl<F: NorFlash> NorFlashStore<F> {
    /// The region `offset..offset + size` (relative to the flash's start) must be aligned to
    /// erase sectors and reserved for this store.
    pub fn new(flash: F, offset: u32, size: u32) -> Self {
        NorFlashStore {
            flash,
            offset,
            size,
        }
    }
}

impl<F: NorFlash> CacheStore for NorFlashStore<F> {
    fn load(&mut self, jid: &str) -> Option<Kept> {
        // On the heap, not the stack: the record's bound (1.3 KB) would count against the
        // deepest task stack (docs/firmware-size.md, RAM on the F767).
        let n = MAX_RECORD.min(self.size as usize);
        let mut buf = alloc::vec![0u8; n];
        ReadNorFlash::read(&mut self.flash, self.offset, &mut buf).ok()?;
        decode(&buf, jid)
    }

    fn save(&mut self, jid: &str, kept: &Kept) -> Result<(), StoreError> {
        let mut record = encode(jid, kept)?;
        let w = F::WRITE_SIZE.max(1);
        record.resize(record.len().div_ceil(w) * w, 0xff);
        if record.len() > self.size as usize {
            return Err(StoreError::TooLarge);
        }
        self.flash
            .erase(self.offset, self.offset + self.size)
            .map_err(|_| StoreError::Medium)?;
        self.flash
            .write(self.offset, &record)
            .map_err(|_| StoreError::Medium)
    }
}

/// Keeps the record in a file (host build).
#[cfg(feature = "std")]
#[derive(Debug)]
pub struct FileStore {
    path: std::path::PathBuf,
}

#[cfg(feature = "std")]
impl FileStore {
    /// The record lives at `path` (created on first save).
    pub fn new(path: impl Into<std::path::PathBuf>) -> Self {
        FileStore { path: path.into() }
    }
}

#[cfg(feature = "std")]
impl CacheStore for FileStore {
    fn load(&mut self, jid: &str) -> Option<Kept> {
        decode(&std::fs::read(&self.path).ok()?, jid)
    }

    fn save(&mut self, jid: &str, kept: &Kept) -> Result<(), StoreError> {
        let record = encode(jid, kept)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, record).map_err(|_| StoreError::Medium)?;
        std::fs::rename(&tmp, &self.path).map_err(|_| StoreError::Medium)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::sasl::ScramHash;

    fn memory() -> LoginMemory {
        LoginMemory {
            scram: Some(ScramCacheEntry::from_password(
                ScramHash::Sha1,
                "pencil",
                b"salt-salt",
                64,
            )),
            offer: Some(MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"])),
            ..LoginMemory::default()
        }
    }

    fn entry() -> Kept {
        Kept {
            memory: memory(),
            pin: None,
        }
    }

    fn pinned() -> Kept {
        Kept {
            memory: memory(),
            pin: Some(Pin {
                spki_sha256: Fingerprint::of(b"key"),
                cert_sha256: Fingerprint::of(b"certificate"),
            }),
        }
    }

    #[test]
    fn record_round_trips_for_its_jid_only() {
        for kept in [entry(), pinned(), Kept::default()] {
            let record = encode("alice@example.test", &kept).unwrap();
            let back = decode(&record, "alice@example.test").unwrap();
            assert_eq!(back, kept);
            assert!(decode(&record, "bob@example.test").is_none());
        }
    }

    /// XEP-0484: the FAST token, its count and the user agent id it is tied to are kept
    /// in the same record as the SCRAM keys (the core's login memory format).
    #[test]
    fn a_fast_token_is_kept_with_the_scram_keys() {
        let kept = Kept {
            memory: LoginMemory {
                fast_token: Some(login::FastToken {
                    mechanism: "HT-SHA-256-NONE".into(),
                    token: b"secret-token:abc".to_vec(),
                    expires: Some(xmpp_handshake_core::trust::UnixTime(1_800_000_000)),
                }),
                fast_count: 7,
                user_agent_id: Some("8d0f0b4e-3c1a-8a2b-9c3d-4e5f60718293".into()),
                sasl2: true,
                ..memory()
            },
            ..pinned()
        };
        let record = encode("alice@example.test", &kept).unwrap();
        assert!(record.starts_with(b"XSC4"));
        assert_eq!(decode(&record, "alice@example.test"), Some(kept));
    }

    #[test]
    fn a_pin_is_kept_in_the_same_record_as_the_login_memory() {
        let with = encode("alice@example.test", &pinned()).unwrap();
        let without = encode("alice@example.test", &entry()).unwrap();
        assert_eq!(with.len(), without.len() + 64);
        assert!(with.starts_with(b"XSC4"));
    }

    /// A record of an earlier format: `offer` bits between the JID and the entry (XSC2).
    fn earlier(magic: &[u8; 4], offer: Option<MechanismSet>) -> Vec<u8> {
        let bytes = memory().scram.unwrap().to_bytes();
        let jid = "alice@example.test";
        let mut v = magic.to_vec();
        v.push(jid.len() as u8);
        v.extend_from_slice(jid.as_bytes());
        if let Some(offer) = offer {
            v.extend_from_slice(&offer.bits().to_be_bytes());
        }
        v.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        v.extend_from_slice(&bytes);
        let sum = fnv1a(&v);
        v.extend_from_slice(&sum.to_be_bytes());
        v
    }

    #[test]
    fn earlier_format_records_read_as_what_they_held() {
        let v1 = decode(&earlier(b"XSC1", None), "alice@example.test").unwrap();
        assert_eq!(v1.memory.scram, memory().scram);
        assert_eq!((v1.memory.offer, v1.pin), (None, None));
        let offer = MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"]);
        let v2 = decode(&earlier(b"XSC2", Some(offer)), "alice@example.test").unwrap();
        assert_eq!(v2.memory.scram, memory().scram);
        assert_eq!(v2.memory.offer, Some(offer));
        // XSC3: the login memory's bytes right after the JID, no pin flag.
        let bytes = memory().to_bytes().unwrap();
        let jid = "alice@example.test";
        let mut v3 = b"XSC3".to_vec();
        v3.push(jid.len() as u8);
        v3.extend_from_slice(jid.as_bytes());
        v3.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        v3.extend_from_slice(&bytes);
        let sum = fnv1a(&v3);
        v3.extend_from_slice(&sum.to_be_bytes());
        assert_eq!(decode(&v3, jid), Some(entry()));
    }

    #[test]
    fn torn_or_erased_records_read_as_empty() {
        let mut record = encode("alice@example.test", &entry()).unwrap();
        assert!(decode(&[0xff; 64], "alice@example.test").is_none());
        let n = record.len();
        record[n - 10] ^= 1;
        assert!(decode(&record, "alice@example.test").is_none());
        assert!(decode(&record[..n - 3], "alice@example.test").is_none());
    }

    /// 4 KiB of NOR flash, erase sets 0xff, write may only clear bits.
    struct Flash([u8; 4096]);
    impl embedded_storage::nor_flash::ErrorType for Flash {
        type Error = core::convert::Infallible;
    }
    impl ReadNorFlash for Flash {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), Self::Error> {
            let o = offset as usize;
            bytes.copy_from_slice(&self.0[o..o + bytes.len()]);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.0.len()
        }
    }
    impl NorFlash for Flash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = 1024;
        fn erase(&mut self, from: u32, to: u32) -> Result<(), Self::Error> {
            self.0[from as usize..to as usize].fill(0xff);
            Ok(())
        }
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), Self::Error> {
            assert_eq!(bytes.len() % Self::WRITE_SIZE, 0);
            for (i, b) in bytes.iter().enumerate() {
                self.0[offset as usize + i] &= b;
            }
            Ok(())
        }
    }

    #[test]
    fn flash_store_erases_before_writing() {
        let mut store = NorFlashStore::new(Flash([0xff; 4096]), 1024, 1024);
        assert!(store.load("alice@example.test").is_none());
        store.save("alice@example.test", &entry()).unwrap();
        let other = Kept {
            memory: LoginMemory {
                scram: Some(ScramCacheEntry::from_password(
                    ScramHash::Sha1,
                    "pencil",
                    b"other",
                    64,
                )),
                offer: Some(MechanismSet::from_names(["PLAIN"])),
                ..LoginMemory::default()
            },
            ..pinned()
        };
        store.save("alice@example.test", &other).unwrap();
        assert_eq!(store.load("alice@example.test"), Some(other));
    }
}

//! Where the SCRAM cache lives between logins and across reboots.
//!
//! A [`ScramCacheEntry`] holds ClientKey and ServerKey for one salt and iteration count: with
//! it a login skips PBKDF2 (10,000 HMAC-SHA-1 rounds against Prosody: the slowest part of a
//! login on a microcontroller). The keys are password-equivalent for this server: keep the
//! store where the password is (flash of the same device).
//!
//! With the keys goes the server's post-TLS mechanism offer (RFC 6120 §6.3.3), from which
//! the next login picks the `<auth/>` it pipelines behind the first protected header.
//!
//! One record per store: `"XSC2"`, JID length (u8), the bare JID the entry belongs to, the
//! offer ([`MechanismSet::bits`], u16 BE), entry length (u16 BE), the entry
//! ([`ScramCacheEntry::to_bytes`]), FNV-1a-32 of everything before it (BE). A record of
//! the first format (`"XSC1"`, no offer) reads with an empty offer. A record for another
//! JID, a torn write or erased flash reads as empty.

use alloc::vec::Vec;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use xmpp_handshake_core::sasl::{MechanismSet, ScramCacheEntry};

/// Longest record: JID up to 255 bytes, an entry up to 512 bytes.
pub const MAX_RECORD: usize = 4 + 1 + 255 + 2 + 2 + 512 + 4;

const MAGIC: &[u8; 4] = b"XSC2";
/// The format before the offer was kept: read, never written.
const MAGIC_V1: &[u8; 4] = b"XSC1";

/// What one login keeps for the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLogin {
    /// The SCRAM keys.
    pub entry: ScramCacheEntry,
    /// What the server offered after TLS (empty: unknown, nothing is pipelined).
    pub offer: MechanismSet,
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

/// Keeps one SCRAM cache entry for one JID.
pub trait CacheStore {
    /// The stored login, if there is one for `jid` and it reads back intact.
    fn load(&mut self, jid: &str) -> Option<CachedLogin>;
    /// Replaces the stored login.
    fn save(&mut self, jid: &str, login: &CachedLogin) -> Result<(), StoreError>;
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The record for `jid` and `login`.
pub fn encode(jid: &str, login: &CachedLogin) -> Result<Vec<u8>, StoreError> {
    let bytes = login.entry.to_bytes();
    let jid_len = u8::try_from(jid.len()).map_err(|_| StoreError::TooLarge)?;
    let len = u16::try_from(bytes.len()).map_err(|_| StoreError::TooLarge)?;
    let mut out = Vec::with_capacity(11 + jid.len() + bytes.len());
    out.extend_from_slice(MAGIC);
    out.push(jid_len);
    out.extend_from_slice(jid.as_bytes());
    out.extend_from_slice(&login.offer.bits().to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// The entry in `record` if it is intact and belongs to `jid`. Trailing bytes (erased
/// flash) are ignored.
pub fn decode(record: &[u8], jid: &str) -> Option<CachedLogin> {
    let (rest, offer_len) = match record.strip_prefix(MAGIC) {
        Some(rest) => (rest, 2),
        None => (record.strip_prefix(MAGIC_V1)?, 0),
    };
    let (&jid_len, rest) = rest.split_first()?;
    let (stored_jid, rest) = rest.split_at_checked(usize::from(jid_len))?;
    let (offer, rest) = rest.split_at_checked(offer_len)?;
    let offer = match offer {
        [a, b] => MechanismSet::from_bits(u16::from_be_bytes([*a, *b])),
        _ => MechanismSet::default(),
    };
    let (len, rest) = rest.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (entry, rest) = rest.split_at_checked(len)?;
    let (sum, _) = rest.split_at_checked(4)?;
    let covered = 4 + 1 + usize::from(jid_len) + offer_len + 2 + len;
    if fnv1a(&record[..covered]) != u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) {
        return None;
    }
    if stored_jid != jid.as_bytes() {
        return None;
    }
    let entry = ScramCacheEntry::from_bytes(entry).ok()?;
    Some(CachedLogin { entry, offer })
}

/// Keeps the record in RAM (lost at reset): for boards without a spare flash sector.
#[derive(Debug, Default)]
pub struct RamStore {
    record: Option<Vec<u8>>,
}

impl CacheStore for RamStore {
    fn load(&mut self, jid: &str) -> Option<CachedLogin> {
        decode(self.record.as_deref()?, jid)
    }

    fn save(&mut self, jid: &str, login: &CachedLogin) -> Result<(), StoreError> {
        self.record = Some(encode(jid, login)?);
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
    fn load(&mut self, jid: &str) -> Option<CachedLogin> {
        let mut buf = [0u8; MAX_RECORD];
        let n = buf.len().min(self.size as usize);
        ReadNorFlash::read(&mut self.flash, self.offset, &mut buf[..n]).ok()?;
        decode(&buf[..n], jid)
    }

    fn save(&mut self, jid: &str, login: &CachedLogin) -> Result<(), StoreError> {
        let mut record = encode(jid, login)?;
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
    fn load(&mut self, jid: &str) -> Option<CachedLogin> {
        decode(&std::fs::read(&self.path).ok()?, jid)
    }

    fn save(&mut self, jid: &str, login: &CachedLogin) -> Result<(), StoreError> {
        let record = encode(jid, login)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, record).map_err(|_| StoreError::Medium)?;
        std::fs::rename(&tmp, &self.path).map_err(|_| StoreError::Medium)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::sasl::ScramHash;

    fn entry() -> CachedLogin {
        CachedLogin {
            entry: ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", b"salt-salt", 64),
            offer: MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"]),
        }
    }

    #[test]
    fn record_round_trips_for_its_jid_only() {
        let record = encode("alice@example.test", &entry()).unwrap();
        let back = decode(&record, "alice@example.test").unwrap();
        assert_eq!(back, entry());
        assert!(decode(&record, "bob@example.test").is_none());
    }

    #[test]
    fn first_format_records_read_with_an_empty_offer() {
        let login = entry();
        let bytes = login.entry.to_bytes();
        let jid = "alice@example.test";
        let mut v1 = b"XSC1".to_vec();
        v1.push(jid.len() as u8);
        v1.extend_from_slice(jid.as_bytes());
        v1.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        v1.extend_from_slice(&bytes);
        let sum = fnv1a(&v1);
        v1.extend_from_slice(&sum.to_be_bytes());
        let back = decode(&v1, jid).unwrap();
        assert_eq!(back.entry, login.entry);
        assert_eq!(back.offer, MechanismSet::default());
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
        let other = CachedLogin {
            entry: ScramCacheEntry::from_password(ScramHash::Sha1, "pencil", b"other", 64),
            offer: MechanismSet::from_names(["PLAIN"]),
        };
        store.save("alice@example.test", &other).unwrap();
        assert_eq!(store.load("alice@example.test"), Some(other));
    }
}

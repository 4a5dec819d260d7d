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
//! One record per store: `"XSC3"`, JID length (u8), the bare JID the memory belongs to,
//! its length (u16 BE), the memory ([`LoginMemory::to_bytes`], the core's versioned
//! format), FNV-1a-32 of everything before it (BE). Records of the earlier formats
//! (`"XSC2"`: offer bits and a SCRAM entry; `"XSC1"`: the entry only) read as a memory of
//! what they held. A record for another JID, a torn write or erased flash reads as empty.

use alloc::vec::Vec;

use embedded_storage::nor_flash::{NorFlash, ReadNorFlash};
use xmpp_handshake_core::login::{self, LoginMemory};
use xmpp_handshake_core::sasl::{MechanismSet, ScramCacheEntry};

/// Longest record: JID up to 255 bytes, a memory up to [`login::MAX_LEN`].
pub const MAX_RECORD: usize = 4 + 1 + 255 + 2 + login::MAX_LEN + 4;

const MAGIC: &[u8; 4] = b"XSC3";
/// The formats before the core's login memory: read, never written.
const MAGIC_V2: &[u8; 4] = b"XSC2";
const MAGIC_V1: &[u8; 4] = b"XSC1";

/// Why a store could not save.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StoreError {
    /// The record does not fit the store.
    TooLarge,
    /// The medium failed (flash erase/write, file I/O).
    Medium,
}

/// Keeps the login memory of one JID.
pub trait CacheStore {
    /// The stored memory, if there is one for `jid` and it reads back intact.
    fn load(&mut self, jid: &str) -> Option<LoginMemory>;
    /// Replaces the stored memory.
    fn save(&mut self, jid: &str, memory: &LoginMemory) -> Result<(), StoreError>;
}

fn fnv1a(data: &[u8]) -> u32 {
    data.iter().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

/// The record for `jid` and `memory`.
pub fn encode(jid: &str, memory: &LoginMemory) -> Result<Vec<u8>, StoreError> {
    let bytes = memory.to_bytes().map_err(|_| StoreError::TooLarge)?;
    let jid_len = u8::try_from(jid.len()).map_err(|_| StoreError::TooLarge)?;
    let len = u16::try_from(bytes.len()).map_err(|_| StoreError::TooLarge)?;
    let mut out = Vec::with_capacity(11 + jid.len() + bytes.len());
    out.extend_from_slice(MAGIC);
    out.push(jid_len);
    out.extend_from_slice(jid.as_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes);
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_be_bytes());
    Ok(out)
}

/// The memory in `record` if it is intact and belongs to `jid`. Trailing bytes (erased
/// flash) are ignored.
pub fn decode(record: &[u8], jid: &str) -> Option<LoginMemory> {
    // (format, bytes of offer bits before the length)
    let (rest, format, offer_len) = if let Some(rest) = record.strip_prefix(MAGIC) {
        (rest, 3, 0)
    } else if let Some(rest) = record.strip_prefix(MAGIC_V2) {
        (rest, 2, 2)
    } else {
        (record.strip_prefix(MAGIC_V1)?, 1, 0)
    };
    let (&jid_len, rest) = rest.split_first()?;
    let (stored_jid, rest) = rest.split_at_checked(usize::from(jid_len))?;
    let (offer, rest) = rest.split_at_checked(offer_len)?;
    let (len, rest) = rest.split_at_checked(2)?;
    let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
    let (body, rest) = rest.split_at_checked(len)?;
    let (sum, _) = rest.split_at_checked(4)?;
    let covered = 4 + 1 + usize::from(jid_len) + offer_len + 2 + len;
    if fnv1a(&record[..covered]) != u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]]) {
        return None;
    }
    if stored_jid != jid.as_bytes() {
        return None;
    }
    if format == 3 {
        return LoginMemory::from_bytes(body).ok();
    }
    let offer = match offer {
        [a, b] => Some(MechanismSet::from_bits(u16::from_be_bytes([*a, *b]))),
        _ => None,
    };
    Some(LoginMemory {
        scram: Some(ScramCacheEntry::from_bytes(body).ok()?),
        offer,
        ..LoginMemory::default()
    })
}

/// Keeps the record in RAM (lost at reset): for boards without a spare flash sector.
#[derive(Debug, Default)]
pub struct RamStore {
    record: Option<Vec<u8>>,
}

impl CacheStore for RamStore {
    fn load(&mut self, jid: &str) -> Option<LoginMemory> {
        decode(self.record.as_deref()?, jid)
    }

    fn save(&mut self, jid: &str, memory: &LoginMemory) -> Result<(), StoreError> {
        self.record = Some(encode(jid, memory)?);
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
    fn load(&mut self, jid: &str) -> Option<LoginMemory> {
        // On the heap, not the stack: the record's bound (1.3 KB) would count against the
        // deepest task stack (docs/firmware-size.md, RAM on the F767).
        let n = MAX_RECORD.min(self.size as usize);
        let mut buf = alloc::vec![0u8; n];
        ReadNorFlash::read(&mut self.flash, self.offset, &mut buf).ok()?;
        decode(&buf, jid)
    }

    fn save(&mut self, jid: &str, memory: &LoginMemory) -> Result<(), StoreError> {
        let mut record = encode(jid, memory)?;
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
    fn load(&mut self, jid: &str) -> Option<LoginMemory> {
        decode(&std::fs::read(&self.path).ok()?, jid)
    }

    fn save(&mut self, jid: &str, memory: &LoginMemory) -> Result<(), StoreError> {
        let record = encode(jid, memory)?;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, record).map_err(|_| StoreError::Medium)?;
        std::fs::rename(&tmp, &self.path).map_err(|_| StoreError::Medium)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::sasl::ScramHash;

    fn entry() -> LoginMemory {
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

    #[test]
    fn record_round_trips_for_its_jid_only() {
        let record = encode("alice@example.test", &entry()).unwrap();
        let back = decode(&record, "alice@example.test").unwrap();
        assert_eq!(back, entry());
        assert!(decode(&record, "bob@example.test").is_none());
    }

    /// A record of an earlier format: `offer` bits between the JID and the entry (XSC2).
    fn earlier(magic: &[u8; 4], offer: Option<MechanismSet>) -> Vec<u8> {
        let bytes = entry().scram.unwrap().to_bytes();
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
        assert_eq!(v1.scram, entry().scram);
        assert_eq!(v1.offer, None);
        let offer = MechanismSet::from_names(["SCRAM-SHA-1", "PLAIN"]);
        let v2 = decode(&earlier(b"XSC2", Some(offer)), "alice@example.test").unwrap();
        assert_eq!(v2.scram, entry().scram);
        assert_eq!(v2.offer, Some(offer));
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
        let other = LoginMemory {
            scram: Some(ScramCacheEntry::from_password(
                ScramHash::Sha1,
                "pencil",
                b"other",
                64,
            )),
            offer: Some(MechanismSet::from_names(["PLAIN"])),
            ..LoginMemory::default()
        };
        store.save("alice@example.test", &other).unwrap();
        assert_eq!(store.load("alice@example.test"), Some(other));
    }
}

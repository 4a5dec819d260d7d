//! The SCRAM cache of `connect`, beside the pin store (`$XDG_CONFIG_HOME/xmpp-handshake/
//! scram-cache` on Linux): per server domain and user, the SCRAM keys of the last verified
//! login ([`ScramCacheEntry`]: hash, salt, iteration count, ClientKey, ServerKey; RFC 5802
//! §5.1 lets a client keep them), the mechanism that authenticated and the channel-binding
//! policy that chose it, and the mechanisms that server offered after TLS (RFC 6120
//! §6.3.3), so that the next login skips PBKDF2 and sends `<auth/>` right behind the first
//! header on the protected stream (one round trip less), the mechanism chosen from that
//! offer by the policy of the day.
//!
//! ```text
//! # domain  user  mechanism  channel-binding policy  post-TLS offer  nonce  entry (base64, or - -)
//! example.com juliet SCRAM-SHA-1 when-offered SCRAM-SHA-1,PLAIN 3q2+7w... AQEAACcQ...
//! ```
//!
//! Lines written before the offer was kept have no offer field (six fields): they are
//! read with no offer, and the mechanism alone stands for it under the same policy.
//! The entry is [`ScramCacheEntry::to_bytes`] with ClientKey and ServerKey XORed with an
//! HKDF-SHA-256 stream keyed by the password (salt: a fresh random nonce per write; info:
//! domain and user). ClientKey alone would log in to the account, so the file does not
//! hold it in the clear: without the password the keys are noise, and since they are
//! random-looking either way, guessing the password from the file still costs a PBKDF2 run
//! per guess, as with plain SCRAM keys. A wrong password unseals wrong keys, which the
//! server refuses; `connect` then retries once from the password (and fails as without a
//! cache). The file is created with mode 0600 (owner only) and replaced atomically (a temp
//! file renamed over it). A line that does not parse is dropped (the cache only saves
//! time; the next login rewrites it).

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use rand_core::RngCore as _;
use sha2::Sha256;
use xmpp_handshake_core::sasl::base64;
use xmpp_handshake_core::sasl::{Mechanism, MechanismSet, ScramCacheEntry};

/// Bytes of the random HKDF salt stored with each entry.
const NONCE_LEN: usize = 16;
/// HKDF info prefix (then domain, NUL, user).
const INFO: &[u8] = b"xmpp-handshake scram-cache 1\0";

/// What is kept for one account on one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedLogin {
    /// The mechanism that authenticated, chosen from the server's post-TLS offer.
    pub mechanism: Mechanism,
    /// The channel-binding policy it was chosen under (`when-offered`, `required`, `off`):
    /// the hint is used again only under the same policy.
    pub channel_binding: String,
    /// The mechanisms the server offered after TLS (those this client knows); `None` when
    /// unknown (a line of an older file).
    pub offer: Option<MechanismSet>,
    /// The SCRAM keys (none for a non-SCRAM mechanism).
    pub entry: Option<ScramCacheEntry>,
}

/// The default place: `<config dir>/xmpp-handshake/scram-cache`, beside the pins.
pub fn default_path() -> Option<PathBuf> {
    crate::pins::default_path().map(|p| p.with_file_name("scram-cache"))
}

/// One line as stored: the entry sealed (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    mechanism: Mechanism,
    channel_binding: String,
    offer: Option<MechanismSet>,
    /// `(nonce, sealed entry bytes)`.
    sealed: Option<([u8; NONCE_LEN], Vec<u8>)>,
}

/// The cache file, read into memory.
#[derive(Debug)]
pub struct ScramCache {
    path: PathBuf,
    logins: BTreeMap<(String, String), Stored>,
}

/// XORs the keys part of `bytes` (a [`ScramCacheEntry::to_bytes`]: 8 header bytes, the
/// salt, then ClientKey and ServerKey) with the password's stream; `None` if `bytes` is
/// too short to hold the header and salt. Sealing and unsealing are the same operation.
fn xor_keys(
    bytes: &mut [u8],
    password: &str,
    nonce: &[u8],
    domain: &str,
    user: &str,
) -> Option<()> {
    let salt_len = u16::from_be_bytes([*bytes.get(6)?, *bytes.get(7)?]) as usize;
    let keys = bytes.get_mut(8 + salt_len..)?;
    let mut info = INFO.to_vec();
    info.extend_from_slice(domain.as_bytes());
    info.push(0);
    info.extend_from_slice(user.as_bytes());
    let mut stream = vec![0u8; keys.len()];
    Hkdf::<Sha256>::new(Some(nonce), password.as_bytes())
        .expand(&info, &mut stream)
        .ok()?;
    for (k, s) in keys.iter_mut().zip(stream) {
        *k ^= s;
    }
    Some(())
}

impl ScramCache {
    /// Reads the cache at `path` (missing: empty).
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut logins = BTreeMap::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for line in text.lines() {
                    if let Some((key, login)) = parse_line(line) {
                        logins.insert(key, login);
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(ScramCache {
            path: path.to_path_buf(),
            logins,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What is kept for `user` at `domain`, the keys unsealed with `password` (wrong keys
    /// if it is not the password they were sealed with: the server then refuses them).
    pub fn get(&self, domain: &str, user: &str, password: &str) -> Option<CachedLogin> {
        let stored = self.logins.get(&key(domain, user))?;
        let entry = stored.sealed.as_ref().and_then(|(nonce, sealed)| {
            let mut bytes = sealed.clone();
            xor_keys(&mut bytes, password, nonce, &key(domain, user).0, user)?;
            ScramCacheEntry::from_bytes(&bytes).ok()
        });
        Some(CachedLogin {
            mechanism: stored.mechanism,
            channel_binding: stored.channel_binding.clone(),
            offer: stored.offer,
            entry,
        })
    }

    /// Keeps `login` for `user` at `domain`, the keys sealed with `password`, and rewrites
    /// the file.
    pub fn put(
        &mut self,
        domain: &str,
        user: &str,
        password: &str,
        login: CachedLogin,
    ) -> io::Result<()> {
        let key = key(domain, user);
        let sealed = login.entry.map(|entry| {
            let mut nonce = [0u8; NONCE_LEN];
            rand_core::OsRng.fill_bytes(&mut nonce);
            let mut bytes = entry.to_bytes();
            // to_bytes always holds the header and the salt.
            let _ = xor_keys(&mut bytes, password, &nonce, &key.0, user);
            (nonce, bytes)
        });
        self.logins.insert(
            key,
            Stored {
                mechanism: login.mechanism,
                channel_binding: login.channel_binding,
                offer: login.offer,
                sealed,
            },
        );
        self.write()
    }

    /// Forgets `user` at `domain` and rewrites the file.
    pub fn remove(&mut self, domain: &str, user: &str) -> io::Result<()> {
        if self.logins.remove(&key(domain, user)).is_some() {
            self.write()?;
        }
        Ok(())
    }

    fn write(&self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = String::from(
            "# xmpp-handshake SCRAM cache: domain, user, mechanism, channel-binding policy, \
             post-TLS offer, nonce, SCRAM keys sealed with the password (base64). Keep this \
             file private.\n",
        );
        for ((domain, user), stored) in &self.logins {
            let sealed = match &stored.sealed {
                Some((nonce, bytes)) => {
                    format!("{} {}", base64::encode(nonce), base64::encode(bytes))
                }
                None => "- -".into(),
            };
            let offer = match stored.offer {
                Some(set) if set != MechanismSet::default() => {
                    set.iter().map(|m| m.name()).collect::<Vec<_>>().join(",")
                }
                _ => "-".into(),
            };
            text.push_str(&format!(
                "{domain} {user} {} {} {offer} {sealed}\n",
                stored.mechanism.name(),
                stored.channel_binding
            ));
        }
        let tmp = self.path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut file = private_file(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

/// A new file only its owner can read (mode 0600 on Unix).
fn private_file(path: &Path) -> io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

fn key(domain: &str, user: &str) -> (String, String) {
    (domain.to_ascii_lowercase(), user.to_string())
}

fn parse_line(line: &str) -> Option<((String, String), Stored)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (domain, user, mechanism, channel_binding, offer, nonce, sealed) = match fields[..] {
        [domain, user, mechanism, channel_binding, offer, nonce, sealed] => (
            domain,
            user,
            mechanism,
            channel_binding,
            parse_offer(offer),
            nonce,
            sealed,
        ),
        // Written before the offer was kept.
        [domain, user, mechanism, channel_binding, nonce, sealed] => (
            domain,
            user,
            mechanism,
            channel_binding,
            None,
            nonce,
            sealed,
        ),
        _ => return None,
    };
    let sealed = match (nonce, sealed) {
        ("-", "-") => None,
        (nonce, sealed) => Some((
            base64::decode_strict(nonce).ok()?.try_into().ok()?,
            base64::decode_strict(sealed).ok()?,
        )),
    };
    Some((
        key(domain, user),
        Stored {
            mechanism: Mechanism::from_name(mechanism)?,
            channel_binding: channel_binding.to_string(),
            offer,
            sealed,
        },
    ))
}

/// A stored offer: mechanism names joined by commas (names this client does not know are
/// skipped, as in a live offer), or `-` for none.
fn parse_offer(field: &str) -> Option<MechanismSet> {
    if field == "-" {
        return None;
    }
    Some(MechanismSet::from_names(field.split(',')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::sasl::ScramHash;

    fn scram_login() -> CachedLogin {
        CachedLogin {
            mechanism: Mechanism::ScramSha1,
            channel_binding: "when-offered".into(),
            offer: Some(MechanismSet::from_names(["PLAIN", "SCRAM-SHA-1"])),
            entry: Some(ScramCacheEntry::from_password(
                ScramHash::Sha1,
                "pw",
                b"salt",
                4096,
            )),
        }
    }

    #[test]
    fn logins_survive_a_reopen_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        assert_eq!(cache.get("example.com", "juliet", "pw"), None);
        let login = scram_login();
        cache
            .put("Example.COM", "juliet", "pw", login.clone())
            .unwrap();
        let plain = CachedLogin {
            mechanism: Mechanism::Plain,
            channel_binding: "off".into(),
            offer: None,
            entry: None,
        };
        cache
            .put("example.org", "romeo", "x", plain.clone())
            .unwrap();
        let again = ScramCache::open(&path).unwrap();
        assert_eq!(again.get("example.com", "juliet", "pw"), Some(login));
        assert_eq!(again.get("example.org", "romeo", "x"), Some(plain));
        assert_eq!(again.get("example.com", "romeo", "pw"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let mut again = again;
        again.remove("example.com", "juliet").unwrap();
        let reopened = ScramCache::open(&path).unwrap();
        assert_eq!(reopened.get("example.com", "juliet", "pw"), None);
    }

    #[test]
    fn keys_are_sealed_with_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        let login = scram_login();
        let entry = login.entry.clone().unwrap();
        cache
            .put("example.com", "juliet", "pw", login.clone())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&base64::encode(&entry.to_bytes())), "{text}");
        // Another password unseals other keys (same salt and iterations: the server will
        // refuse them), never an error that would tell a right guess from a wrong one.
        let wrong = cache.get("example.com", "juliet", "not-pw").unwrap();
        let wrong = wrong.entry.unwrap();
        assert!(wrong.matches(ScramHash::Sha1, b"salt", 4096));
        assert_ne!(wrong, entry);
        // A fresh nonce per write: the same keys never give the same line twice.
        cache.put("example.com", "juliet", "pw", login).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn lines_that_do_not_parse_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        cache.put("example.com", "a", "pw", scram_login()).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            format!(
                "{good}example.com b SCRAM-SHA-1 off AAAA AAAA\n\
                 example.com c NO-SUCH-MECH off - -\nexample.com d\n"
            ),
        )
        .unwrap();
        let cache = ScramCache::open(&path).unwrap();
        assert!(cache.get("example.com", "a", "pw").unwrap().entry.is_some());
        for user in ["b", "c", "d"] {
            assert_eq!(cache.get("example.com", user, "pw"), None, "{user}");
        }
    }

    #[test]
    fn lines_of_the_format_without_offer_are_read_with_no_offer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        let login = scram_login();
        cache
            .put("example.com", "juliet", "pw", login.clone())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields.remove(4), "SCRAM-SHA-1,PLAIN");
        std::fs::write(&path, format!("{}\n", fields.join(" "))).unwrap();
        let old = ScramCache::open(&path).unwrap();
        let read = old.get("example.com", "juliet", "pw").unwrap();
        assert_eq!(
            read,
            CachedLogin {
                offer: None,
                ..login
            }
        );
    }

    #[test]
    fn unknown_names_in_a_stored_offer_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        std::fs::write(
            &path,
            "example.com a PLAIN off X-FUTURE,PLAIN,SCRAM-SHA-256 - -\n\
             example.com b PLAIN off - - -\n",
        )
        .unwrap();
        let cache = ScramCache::open(&path).unwrap();
        let a = cache.get("example.com", "a", "pw").unwrap();
        assert_eq!(
            a.offer,
            Some(MechanismSet::from_names(["PLAIN", "SCRAM-SHA-256"]))
        );
        assert_eq!(a.entry, None);
        assert_eq!(cache.get("example.com", "b", "pw").unwrap().offer, None);
    }
}

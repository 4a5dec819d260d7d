//! The login cache of `connect`, beside the pin store (`$XDG_CONFIG_HOME/xmpp-handshake/
//! scram-cache` on Linux): per server domain and user, the core's [`LoginMemory`] of the
//! last verified login: the SCRAM keys ([`ScramCacheEntry`]: hash, salt, iteration count,
//! ClientKey, ServerKey; RFC 5802 §5.1 lets a client keep them), the mechanisms that server
//! offered after TLS (RFC 6120 §6.3.3), the mechanism that authenticated and the
//! channel-binding policy that chose it. The next login skips PBKDF2 and sends `<auth/>`
//! right behind the first header on the protected stream (one round trip less), the
//! mechanism chosen from that offer by the policy of the day.
//!
//! ```text
//! # domain  user  nonce (base64, or -)  login memory (base64 of LoginMemory::to_bytes, secrets sealed)
//! example.com juliet 3q2+7w... AQMAAQEAQAIAGwEAAAAQ...
//! ```
//!
//! The memory is the core's versioned byte format, with its secrets sealed: ClientKey and
//! ServerKey (and a FAST token's bytes, once there are any) XORed with an HKDF-SHA-256
//! stream keyed by the password (salt: a fresh random nonce per write; info: domain and
//! user). ClientKey alone would log in to the account, so the file does not hold it in the
//! clear: without the password the keys are noise, and since they are random-looking either
//! way, guessing the password from the file still costs a PBKDF2 run per guess, as with
//! plain SCRAM keys. Only the secrets are sealed, not the whole memory: a stream cipher over
//! the format's known structure (version, flags, lengths) would let a guess be checked
//! without PBKDF2. What is not secret (mechanism, offer, policy) stays readable, as in the
//! earlier formats. A wrong password unseals wrong keys, which the server refuses; `connect`
//! then retries once from the password (and fails as without a cache).
//!
//! The file is created with mode 0600 (owner only) and replaced atomically (a temp file
//! renamed over it). A line that does not parse is dropped (the cache only saves time; the
//! next login rewrites it). So are the lines of the earlier formats (six or seven fields:
//! mechanism, policy, offer and the sealed keys in fields of their own, sealed with another
//! HKDF info): they are not read, that login derives its keys from the password again and
//! the line is written anew in this format.

use std::collections::BTreeMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use hkdf::Hkdf;
use rand_core::RngCore as _;
use sha2::Sha256;
use xmpp_handshake_core::login::LoginMemory;
use xmpp_handshake_core::sasl::base64;
use xmpp_handshake_core::sasl::ScramCacheEntry;

/// Bytes of the random HKDF salt stored with each entry.
const NONCE_LEN: usize = 16;
/// HKDF info prefix (then domain, NUL, user). The earlier formats used
/// `xmpp-handshake scram-cache 1`.
const INFO: &[u8] = b"xmpp-handshake login-cache 2\0";

/// The default place: `<config dir>/xmpp-handshake/scram-cache`, beside the pins.
pub fn default_path() -> Option<PathBuf> {
    crate::pins::default_path().map(|p| p.with_file_name("scram-cache"))
}

/// One line as stored: the memory with its secrets sealed, and the nonce they were sealed
/// with (`None` when it holds no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    nonce: Option<[u8; NONCE_LEN]>,
    sealed: LoginMemory,
}

/// The cache file, read into memory.
#[derive(Debug)]
pub struct ScramCache {
    path: PathBuf,
    logins: BTreeMap<(String, String), Stored>,
}

/// Whether `memory` holds anything [`xor_secrets`] seals.
fn has_secrets(memory: &LoginMemory) -> bool {
    memory.scram.is_some() || memory.fast_token.is_some()
}

/// XORs the secrets of `memory` (ClientKey and ServerKey of its SCRAM entry, a FAST token's
/// bytes) with the password's stream; `None` if the stream cannot be made. Sealing and
/// unsealing are the same operation.
fn xor_secrets(
    memory: &mut LoginMemory,
    password: &str,
    nonce: &[u8],
    domain: &str,
    user: &str,
) -> Option<()> {
    // ScramCacheEntry::to_bytes: 8 header bytes, the salt, then ClientKey and ServerKey.
    let mut entry = memory.scram.as_ref().map(ScramCacheEntry::to_bytes);
    let keys_at = match &entry {
        Some(bytes) => 8 + usize::from(u16::from_be_bytes([*bytes.get(6)?, *bytes.get(7)?])),
        None => 0,
    };
    let keys_len = entry
        .as_ref()
        .map_or(0, |bytes| bytes.len().saturating_sub(keys_at));
    let token_len = memory.fast_token.as_ref().map_or(0, |t| t.token.len());
    let mut info = INFO.to_vec();
    info.extend_from_slice(domain.as_bytes());
    info.push(0);
    info.extend_from_slice(user.as_bytes());
    let mut stream = vec![0u8; keys_len + token_len];
    Hkdf::<Sha256>::new(Some(nonce), password.as_bytes())
        .expand(&info, &mut stream)
        .ok()?;
    let (key_stream, token_stream) = stream.split_at(keys_len);
    if let Some(bytes) = &mut entry {
        for (k, s) in bytes.get_mut(keys_at..)?.iter_mut().zip(key_stream) {
            *k ^= s;
        }
        memory.scram = Some(ScramCacheEntry::from_bytes(bytes).ok()?);
    }
    if let Some(fast) = &mut memory.fast_token {
        for (t, s) in fast.token.iter_mut().zip(token_stream) {
            *t ^= s;
        }
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

    /// What is kept for `user` at `domain`, the secrets unsealed with `password` (wrong
    /// keys if it is not the password they were sealed with: the server then refuses them).
    pub fn get(&self, domain: &str, user: &str, password: &str) -> Option<LoginMemory> {
        let key = key(domain, user);
        let stored = self.logins.get(&key)?;
        let mut memory = stored.sealed.clone();
        if let Some(nonce) = &stored.nonce {
            xor_secrets(&mut memory, password, nonce, &key.0, user)?;
        }
        Some(memory)
    }

    /// Keeps `memory` for `user` at `domain`, its secrets sealed with `password`, and
    /// rewrites the file. A memory the core's format cannot hold (a server-chosen salt
    /// beyond its bound) is an `InvalidData` error and nothing is written.
    pub fn put(
        &mut self,
        domain: &str,
        user: &str,
        password: &str,
        memory: &LoginMemory,
    ) -> io::Result<()> {
        memory
            .to_bytes()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let key = key(domain, user);
        let mut sealed = memory.clone();
        let nonce = if has_secrets(memory) {
            let mut nonce = [0u8; NONCE_LEN];
            rand_core::OsRng.fill_bytes(&mut nonce);
            xor_secrets(&mut sealed, password, &nonce, &key.0, user).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "cannot seal the SCRAM keys")
            })?;
            Some(nonce)
        } else {
            None
        };
        self.logins.insert(key, Stored { nonce, sealed });
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
            "# xmpp-handshake login cache: domain, user, nonce, login memory (base64; SCRAM \
             keys sealed with the password). Keep this file private.\n",
        );
        for ((domain, user), stored) in &self.logins {
            let nonce = match &stored.nonce {
                Some(nonce) => base64::encode(nonce),
                None => "-".into(),
            };
            let Ok(bytes) = stored.sealed.to_bytes() else {
                continue;
            };
            text.push_str(&format!(
                "{domain} {user} {nonce} {}\n",
                base64::encode(&bytes)
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

/// A line of this format; `None` for a comment, a line of an earlier format (six or seven
/// fields) or one that does not parse.
fn parse_line(line: &str) -> Option<((String, String), Stored)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [domain, user, nonce, memory] = fields[..] else {
        return None;
    };
    let nonce = match nonce {
        "-" => None,
        nonce => Some(base64::decode_strict(nonce).ok()?.try_into().ok()?),
    };
    let sealed = LoginMemory::from_bytes(&base64::decode_strict(memory).ok()?).ok()?;
    if nonce.is_some() != has_secrets(&sealed) {
        return None;
    }
    Some((key(domain, user), Stored { nonce, sealed }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::login::FastToken;
    use xmpp_handshake_core::sasl::{CbPolicy, Mechanism, MechanismSet, ScramHash};

    fn scram_login() -> LoginMemory {
        LoginMemory {
            scram: Some(ScramCacheEntry::from_password(
                ScramHash::Sha1,
                "pw",
                b"salt",
                4096,
            )),
            offer: Some(MechanismSet::from_names(["PLAIN", "SCRAM-SHA-1"])),
            mechanism: Some(Mechanism::ScramSha1),
            channel_binding: Some(CbPolicy::WhenOffered),
            fast_token: None,
            fast_count: 0,
            bound_before: true,
            channel_bound: true,
            user_agent_id: Some(String::from("0b6c8a52-3f1e-4b8e-9a43-5d2f7e1c9a60")),
            sasl2: true,
            sasl2_inline: Some(xmpp_handshake_core::stream::features::Sasl2Inline {
                bind2: true,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn logins_survive_a_reopen_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        assert_eq!(cache.get("example.com", "juliet", "pw"), None);
        let login = scram_login();
        cache.put("Example.COM", "juliet", "pw", &login).unwrap();
        let plain = LoginMemory {
            mechanism: Some(Mechanism::Plain),
            channel_binding: Some(CbPolicy::Off),
            ..LoginMemory::default()
        };
        cache.put("example.org", "romeo", "x", &plain).unwrap();
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
    fn secrets_are_sealed_with_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        let login = LoginMemory {
            fast_token: Some(FastToken {
                mechanism: "HT-SHA-256-EXPR".into(),
                token: b"fast-secret".to_vec(),
                expires: None,
            }),
            ..scram_login()
        };
        let entry = login.scram.clone().unwrap();
        cache.put("example.com", "juliet", "pw", &login).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&base64::encode(&login.to_bytes().unwrap())),
            "{text}"
        );
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        let stored = base64::decode_strict(line.split(' ').nth(3).unwrap()).unwrap();
        let keys = &entry.to_bytes()[8 + 4..];
        assert!(!stored.windows(keys.len()).any(|w| w == keys), "{text}");
        assert!(!stored.windows(11).any(|w| w == b"fast-secret"), "{text}");
        // Another password unseals other secrets (same salt and iterations: the server will
        // refuse them), never an error that would tell a right guess from a wrong one.
        let wrong = cache.get("example.com", "juliet", "not-pw").unwrap();
        let wrong_entry = wrong.scram.unwrap();
        assert!(wrong_entry.matches(ScramHash::Sha1, b"salt", 4096));
        assert_ne!(wrong_entry, entry);
        assert_ne!(wrong.fast_token, login.fast_token);
        assert_eq!(wrong.offer, login.offer);
        assert_eq!(
            cache.get("example.com", "juliet", "pw"),
            Some(login.clone())
        );
        // A fresh nonce per write: the same keys never give the same line twice.
        cache.put("example.com", "juliet", "pw", &login).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), text);
    }

    #[test]
    fn lines_that_do_not_parse_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        cache.put("example.com", "a", "pw", &scram_login()).unwrap();
        let good = std::fs::read_to_string(&path).unwrap();
        let keys_without_nonce = base64::encode(&scram_login().to_bytes().unwrap());
        let nothing = base64::encode(&LoginMemory::default().to_bytes().unwrap());
        let other_version = base64::encode(&[xmpp_handshake_core::login::VERSION + 1, 0, 0]);
        // A line written with format version 1 (before the channel-bound flag) is read.
        let plain = LoginMemory {
            mechanism: Some(Mechanism::Plain),
            channel_binding: Some(CbPolicy::Off),
            bound_before: true,
            ..LoginMemory::default()
        };
        let mut v1 = plain.to_bytes().unwrap();
        v1[0] = xmpp_handshake_core::login::VERSION_1;
        // Version 3 added a second flags byte (empty here).
        assert_eq!(v1.remove(2), 0);
        let v1 = base64::encode(&v1);
        std::fs::write(
            &path,
            format!(
                "{good}example.com b - {keys_without_nonce}\n\
                 example.com c AAAA {nothing}\n\
                 example.com d - {other_version}\n\
                 example.com e - AQ\nexample.com f\n\
                 example.com g - {v1}\n"
            ),
        )
        .unwrap();
        let cache = ScramCache::open(&path).unwrap();
        assert!(cache.get("example.com", "a", "pw").unwrap().scram.is_some());
        for user in ["b", "c", "d", "e", "f"] {
            assert_eq!(cache.get("example.com", user, "pw"), None, "{user}");
        }
        assert_eq!(cache.get("example.com", "g", "pw"), Some(plain));
    }

    /// A cache of the earlier formats (its keys sealed field by field) is not read: that
    /// login starts from the password, and the next write leaves only this format.
    #[test]
    fn lines_of_the_earlier_formats_are_discarded_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let keys = base64::encode(&scram_login().scram.unwrap().to_bytes());
        std::fs::write(
            &path,
            format!(
                "# xmpp-handshake SCRAM cache: domain, user, mechanism, channel-binding \
                 policy, post-TLS offer, nonce, SCRAM keys sealed with the password (base64). \
                 Keep this file private.\n\
                 example.com juliet SCRAM-SHA-1 when-offered SCRAM-SHA-1,PLAIN AAAAAAAAAAAAAAAAAAAAAA== {keys}\n\
                 example.com romeo SCRAM-SHA-1 off AAAAAAAAAAAAAAAAAAAAAA== {keys}\n\
                 example.com tybalt PLAIN off - - -\n"
            ),
        )
        .unwrap();
        let mut cache = ScramCache::open(&path).unwrap();
        for user in ["juliet", "romeo", "tybalt"] {
            assert_eq!(cache.get("example.com", user, "pw"), None, "{user}");
        }
        cache
            .put("example.com", "juliet", "pw", &scram_login())
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0].split(' ').count(), 4, "{text}");
        assert_eq!(
            ScramCache::open(&path)
                .unwrap()
                .get("example.com", "juliet", "pw"),
            Some(scram_login())
        );
    }

    #[test]
    fn a_memory_the_format_cannot_hold_is_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scram-cache");
        let mut cache = ScramCache::open(&path).unwrap();
        let huge = LoginMemory {
            scram: Some(ScramCacheEntry::from_password(
                ScramHash::Sha1,
                "pw",
                &[1; 2000],
                1,
            )),
            ..LoginMemory::default()
        };
        let e = cache.put("example.com", "a", "pw", &huge).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!path.exists());
    }
}

//! The pin store of `connect --trust-first-use`: a text file in the user's config dir
//! (`$XDG_CONFIG_HOME/xmpp-handshake/pins` on Linux), one domain per line:
//!
//! ```text
//! # domain  SHA-256 of SubjectPublicKeyInfo  SHA-256 of the certificate
//! example.com AB:CD:... 01:23:...
//! ```
//!
//! Writes replace the file atomically (a temp file renamed over it).

use std::path::{Path, PathBuf};

use xmpp_handshake_core::trust::{MemoryPinStore, Pin, PinStore, PinStoreError};

/// Pins kept in a file.
#[derive(Debug)]
pub struct FilePinStore {
    path: PathBuf,
    pins: MemoryPinStore,
}

/// The default place: `<config dir>/xmpp-handshake/pins`.
pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "xmpp-handshake").map(|d| d.config_dir().join("pins"))
}

impl FilePinStore {
    /// Opens (or starts) the store at `path`. A missing file is an empty store; a line that
    /// does not parse is an error naming it (a corrupt pin file must not silently unpin).
    pub fn open(path: &Path) -> Result<Self, String> {
        let mut pins = MemoryPinStore::new();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                for (i, line) in text.lines().enumerate() {
                    let t = line.trim();
                    if t.is_empty() || t.starts_with('#') {
                        continue;
                    }
                    let fields: Vec<&str> = t.split_whitespace().collect();
                    let bad = || {
                        format!(
                            "{} line {}: expected DOMAIN SPKI CERT",
                            path.display(),
                            i + 1
                        )
                    };
                    let [domain, spki, cert] = fields[..] else {
                        return Err(bad());
                    };
                    let pin = Pin {
                        spki_sha256: spki.parse().map_err(|_| bad())?,
                        cert_sha256: cert.parse().map_err(|_| bad())?,
                    };
                    let _ = pins.store(domain, pin);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        Ok(FilePinStore {
            path: path.to_path_buf(),
            pins,
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> std::io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut text = String::from(
            "# xmpp-handshake pins: domain, SHA-256 of the SubjectPublicKeyInfo, SHA-256 of the certificate\n",
        );
        for (domain, pin) in self.pins.iter() {
            text.push_str(&format!(
                "{domain} {} {}\n",
                pin.spki_sha256, pin.cert_sha256
            ));
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &self.path)
    }
}

impl PinStore for FilePinStore {
    fn load(&self, domain: &str) -> Option<Pin> {
        self.pins.load(domain)
    }

    fn store(&mut self, domain: &str, pin: Pin) -> Result<(), PinStoreError> {
        let before = self.pins.load(domain);
        let _ = self.pins.store(domain, pin);
        self.write().map_err(|e| {
            // Keep memory and file in step.
            match before {
                Some(p) => {
                    let _ = self.pins.store(domain, p);
                }
                None => {
                    self.pins.remove(domain);
                }
            }
            PinStoreError(format!("writing {}: {e}", self.path.display()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmpp_handshake_core::trust::Fingerprint;

    #[test]
    fn pins_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("pins");
        let mut store = FilePinStore::open(&path).unwrap();
        assert_eq!(store.load("example.com"), None);
        let pin = Pin {
            spki_sha256: Fingerprint::of(b"spki"),
            cert_sha256: Fingerprint::of(b"cert"),
        };
        store.store("example.com", pin).unwrap();
        let again = FilePinStore::open(&path).unwrap();
        assert_eq!(again.load("example.com"), Some(pin));
        std::fs::write(&path, "example.com nonsense\n").unwrap();
        assert!(FilePinStore::open(&path).is_err());
    }
}

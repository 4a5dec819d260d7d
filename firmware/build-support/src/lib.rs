//! What every board's `build.rs` does, in one place: rebuild when the configuration in
//! the environment changes, and put the trust anchor named by `XMPP_CA` (a DER or PEM
//! certificate file) into `OUT_DIR/ca.der`, which the board includes in its image.

use std::path::{Path, PathBuf};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// The build-time configuration every board reads (see firmware/README.md).
pub const CONFIG_ENV: [&str; 6] = [
    "XMPP_JID",
    "XMPP_PASSWORD",
    "XMPP_SERVER",
    "XMPP_CA",
    "XMPP_REPORT_TO",
    "XMPP_PERIOD_MS",
];

/// Call from `build.rs`: `extra_env` names the board's own variables (e.g. Wi-Fi).
pub fn embed_config(extra_env: &[&str]) {
    for var in CONFIG_ENV.iter().chain(extra_env) {
        println!("cargo:rerun-if-env-changed={var}");
    }
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let der = match std::env::var("XMPP_CA") {
        Ok(path) => {
            println!("cargo:rerun-if-changed={path}");
            read_anchor(Path::new(&path)).unwrap_or_else(|e| panic!("XMPP_CA {path}: {e}"))
        }
        Err(_) => {
            println!(
                "cargo:warning=XMPP_CA is not set: no trust anchor, the device will refuse \
                 every server certificate"
            );
            Vec::new()
        }
    };
    std::fs::write(out.join("ca.der"), der).expect("OUT_DIR is writable");
}

/// The first certificate of a PEM file, or the file as it is when it is not PEM (DER).
pub fn read_anchor(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    anchor_der(bytes)
}

fn anchor_der(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Ok(bytes);
    }
    CertificateDer::from_pem_slice(&bytes)
        .map(|c| c.to_vec())
        .map_err(|e| format!("not a PEM certificate: {e}"))
}

#[cfg(test)]
mod tests {
    use super::anchor_der;

    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];

    #[test]
    fn der_is_kept_as_is() {
        assert_eq!(anchor_der(DER.to_vec()).unwrap(), DER);
    }

    #[test]
    fn pem_is_decoded_to_der() {
        let pem = "# comment\n-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n";
        assert_eq!(anchor_der(pem.as_bytes().to_vec()).unwrap(), DER);
    }

    #[test]
    fn broken_pem_is_an_error() {
        let pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(anchor_der(pem.as_bytes().to_vec()).is_err());
    }
}

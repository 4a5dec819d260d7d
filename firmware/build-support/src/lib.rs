//! What every board's `build.rs` does, in one place: rebuild when the configuration in
//! the environment changes, and put the trust anchors named by `XMPP_CA` (a PEM bundle of
//! one or more certificates, or DER) into `OUT_DIR/ca.der`, the certificates' DER one
//! after the other, which the board includes in its image and splits at run time
//! (`xmpp_handshake_core::trust::x509::concatenated`).

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
            read_anchors(Path::new(&path)).unwrap_or_else(|e| panic!("XMPP_CA {path}: {e}"))
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

/// Every certificate of a PEM file, as DER one after the other; a file that is not PEM is
/// taken as DER (one certificate, or several concatenated). Either way the result must
/// split into certificates.
pub fn read_anchors(path: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    anchors_der(bytes)
}

fn anchors_der(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let der = if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        let mut der = Vec::new();
        for certificate in CertificateDer::pem_slice_iter(&bytes) {
            der.extend_from_slice(
                &certificate.map_err(|e| format!("not a PEM certificate bundle: {e}"))?,
            );
        }
        if der.is_empty() {
            return Err("no CERTIFICATE block in the PEM file".into());
        }
        der
    } else {
        bytes
    };
    match xmpp_handshake_core::trust::x509::concatenated(&der) {
        Ok(certificates) if !certificates.is_empty() => Ok(der),
        _ => Err("not DER certificates".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::anchors_der;

    const DER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x05];
    const OTHER: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x07];

    #[test]
    fn der_is_kept_as_is() {
        assert_eq!(anchors_der(DER.to_vec()).unwrap(), DER);
    }

    #[test]
    fn every_certificate_of_a_pem_bundle_is_kept() {
        let pem = "# comment\n-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n\
                   other text\n-----BEGIN CERTIFICATE-----\nMAMCAQc=\n-----END CERTIFICATE-----\n";
        assert_eq!(
            anchors_der(pem.as_bytes().to_vec()).unwrap(),
            [DER, OTHER].concat()
        );
    }

    #[test]
    fn broken_pem_and_non_certificates_are_errors() {
        let pem = "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n";
        assert!(anchors_der(pem.as_bytes().to_vec()).is_err());
        let key = "-----BEGIN PRIVATE KEY-----\nMAMCAQU=\n-----END PRIVATE KEY-----\n";
        assert!(anchors_der(key.as_bytes().to_vec()).is_err());
        assert!(anchors_der(b"hello".to_vec()).is_err());
        assert!(anchors_der([DER, &[0x02]].concat()).is_err());
    }
}

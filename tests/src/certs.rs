//! A throw-away PKI for one test server: a P-256 test CA and a leaf signed by it.
//!
//! The leaf has `CA:FALSE` (rustls rejects a CA certificate used as an end entity),
//! SAN dNSName = the domain (no id-on-xmppAddr: see `generate_pki`), EKU serverAuth +
//! clientAuth (s2s), and a validity of yesterday .. +30 days.
//! Clients trust [`TestPki::ca_der`] (or the CA PEM file the servers write).

/// A test CA and one server certificate signed by it, all PEM/DER in memory.
#[derive(Clone)]
pub struct TestPki {
    /// The domain the leaf is issued for.
    pub domain: String,
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// CA certificate, DER (add it to a rustls `RootCertStore`).
    pub ca_der: Vec<u8>,
    /// Leaf (server) certificate, PEM.
    pub leaf_pem: String,
    /// Leaf certificate, DER (e.g. for `tls-server-end-point` or pinning tests).
    pub leaf_der: Vec<u8>,
    /// Leaf private key (P-256), PKCS#8 PEM.
    pub leaf_key_pem: String,
    /// Leaf private key, PKCS#8 DER.
    pub leaf_key_der: Vec<u8>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl TestPki {
    /// A fresh CA + leaf for `domain` (a DNS name such as `localhost` or `example.test`),
    /// made by the same generator `demo` and `serve` use.
    pub fn generate(domain: &str) -> Result<Self, rcgen::Error> {
        let g = xmpp_handshake_host::certs::generate_pki(domain)?;
        Ok(TestPki {
            domain: domain.to_string(),
            ca_pem: g.ca_pem,
            ca_der: g.ca_der,
            leaf_pem: g.leaf_pem,
            leaf_der: g.leaf_der,
            leaf_key_pem: g.leaf_key_pem,
            leaf_key_der: g.leaf_key_der,
        })
    }

    /// Leaf followed by the CA: what a server presents.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.leaf_pem, self.ca_pem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use std::sync::Arc;

    fn verify(pki: &TestPki, name: &str) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(pki.ca_der.clone())).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        verifier
            .verify_server_cert(
                &CertificateDer::from(pki.leaf_der.clone()),
                &[],
                &ServerName::try_from(name.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    #[test]
    fn leaf_verifies_against_the_ca_for_its_domain_only() {
        let pki = TestPki::generate("example.test").unwrap();
        verify(&pki, "example.test").expect("leaf valid for its domain");
        assert!(verify(&pki, "other.test").is_err(), "wrong name rejected");
        let other = TestPki::generate("example.test").unwrap();
        let mixed = TestPki {
            ca_der: other.ca_der.clone(),
            ..pki.clone()
        };
        assert!(verify(&mixed, "example.test").is_err(), "other CA rejected");
    }

    #[test]
    fn leaf_has_no_xmppaddr_and_ca_false_and_p256() {
        let pki = TestPki::generate("localhost").unwrap();
        let der = &pki.leaf_der;
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        // No OID 1.3.6.1.5.5.7.8.5 (id-on-xmppAddr): ejabberd 23.01's S2S receiver crashes
        // on one naming a bare domain.
        assert!(!has(&[
            0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x05
        ]));
        // basicConstraints present (rustls accepting the leaf as end entity = CA:FALSE).
        assert!(has(&[0x06, 0x03, 0x55, 0x1d, 0x13]));
        // id-ecPublicKey + prime256v1.
        assert!(has(&[
            0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
        ]));
        assert!(pki.chain_pem().matches("BEGIN CERTIFICATE").count() == 2);
        assert!(pki.leaf_key_pem.contains("BEGIN PRIVATE KEY"));
    }
}

//! Server certificates for `demo` and `serve`: generated on the spot (a P-256 CA and a leaf
//! for the domain, RFC 6120 §13.7.1.4 identities) or loaded from PEM files.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::exit::Failure;
use crate::tls_info::fingerprint;

/// A server identity: the chain it presents and its key.
#[derive(Clone)]
pub struct ServerIdentity {
    /// What the server presents.
    pub key: Arc<CertifiedKey>,
    /// The CA certificate (DER) when generated here: what a client trusts.
    pub ca_der: Option<CertificateDer<'static>>,
    /// The CA certificate (PEM) when generated here.
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("leaf_sha256", &self.leaf_fingerprint())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// SHA-256 of the leaf certificate, `AB:CD:...`.
    pub fn leaf_fingerprint(&self) -> String {
        self.key
            .cert
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }

    /// A fresh CA and a leaf for `domain` (SAN dNSName), valid for 30 days.
    pub fn generate(domain: &str) -> Result<Self, Failure> {
        generate(domain).map_err(|e| Failure::protocol(format!("generating a certificate: {e}")))
    }

    /// Loads a PEM chain and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, Failure> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| Failure::usage(format!("reading {}: {e}", p.display())))
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Failure::usage(format!("{}: {e}", cert.display())))?;
        if chain.is_empty() {
            return Err(Failure::usage(format!(
                "{}: no certificate in it",
                cert.display()
            )));
        }
        let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| Failure::usage(format!("{}: {e}", key.display())))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key_der, &provider)
            .map_err(|e| Failure::usage(format!("certificate and key: {e}")))?;
        Ok(ServerIdentity {
            key: Arc::new(certified),
            ca_der: None,
            ca_pem: None,
        })
    }
}

/// A CA and a leaf for one domain, generated on the spot, as PEM and DER: what `demo`
/// and `serve` present, and what the test servers (Prosody, ejabberd) are given.
///
/// P-256 keys; the CA is `pathLen:0`; the leaf has `CA:FALSE` (rustls rejects a CA
/// certificate used as an end entity), SAN dNSName = the domain (the DNS-ID of RFC 6120
/// §13.7.1.4), EKU serverAuth + clientAuth (S2S), and is valid from yesterday for 30
/// days. No id-on-xmppAddr (it MAY be there): ejabberd 23.01's S2S receiver (xmpp 1.6.1,
/// `xmpp_stream_pkix:get_domains_from_san`) returns a binary instead of a list for an
/// xmppAddr naming a bare domain inside `lists:flatmap`, crashes with `badarg` and drops
/// the connection at `<auth/>`.
#[derive(Clone)]
pub struct GeneratedPki {
    /// CA certificate, PEM.
    pub ca_pem: String,
    /// CA certificate, DER: what a client trusts.
    pub ca_der: Vec<u8>,
    /// Leaf certificate, PEM.
    pub leaf_pem: String,
    /// Leaf certificate, DER.
    pub leaf_der: Vec<u8>,
    /// Leaf private key, PKCS#8 PEM.
    pub leaf_key_pem: String,
    /// Leaf private key, PKCS#8 DER.
    pub leaf_key_der: Vec<u8>,
}

impl std::fmt::Debug for GeneratedPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedPki")
            .field("leaf_sha256", &fingerprint(&self.leaf_der))
            .finish_non_exhaustive()
    }
}

/// Generates a [`GeneratedPki`] for `domain`.
pub fn generate_pki(domain: &str) -> Result<GeneratedPki, rcgen::Error> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - time::Duration::days(1);
    let not_after = now + time::Duration::days(30);

    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name.push(
        DnType::CommonName,
        format!("xmpp-handshake CA for {domain}"),
    );
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(vec![domain.to_string()])?;
    leaf.distinguished_name.push(DnType::CommonName, domain);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = not_before;
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;

    Ok(GeneratedPki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        leaf_pem: leaf_cert.pem(),
        leaf_der: leaf_cert.der().to_vec(),
        leaf_key_pem: leaf_key.serialize_pem(),
        leaf_key_der: leaf_key.serialize_der(),
    })
}

fn generate(domain: &str) -> Result<ServerIdentity, String> {
    let pki = generate_pki(domain).map_err(|e| e.to_string())?;
    let provider = rustls::crypto::ring::default_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.leaf_key_der));
    let chain = vec![
        CertificateDer::from(pki.leaf_der),
        CertificateDer::from(pki.ca_der.clone()),
    ];
    let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| e.to_string())?;
    Ok(ServerIdentity {
        key: Arc::new(certified),
        ca_der: Some(CertificateDer::from(pki.ca_der)),
        ca_pem: Some(pki.ca_pem),
    })
}

/// A rustls server config template (TLS 1.2 + 1.3, ring) for [`crate::upgrade::RustlsServer`].
pub fn server_template() -> rustls::ServerConfig {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::server::ResolvesServerCertUsingSni::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_has_a_chain_and_a_ca() {
        let id = ServerIdentity::generate("example.com").unwrap();
        assert_eq!(id.key.cert.len(), 2);
        assert!(id.ca_der.is_some());
        assert!(id.ca_pem.as_deref().unwrap().contains("BEGIN CERTIFICATE"));
        assert_eq!(id.leaf_fingerprint().len(), 95);
    }
}

//! The certificate matrix's test PKI, shared by the rustls matrix (cert_matrix.rs), the
//! embedded-tls backend suite and the matrix against Prosody
//! (tests/tests/cert_matrix_prosody.rs, which includes this file): root CA → intermediate CA → leaves (P-256, `CA:FALSE`,
//! serverAuth), generated at test time with rcgen, and a rustls server that presents any
//! chain signed with any key. The SRV-ID certificate's subjectAltName is built by hand
//! (rcgen writes otherName values only as UTF8String; SRV-ID is an IA5String).
#![allow(dead_code)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, CustomExtension, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use xmpp_handshake_host::core::trust::{EndEntityCertificate, Pin};

const XMPP_ADDR: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 8, 5];

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub struct Pki {
    pub root: CertifiedIssuer<'static, KeyPair>,
    pub intermediate: CertifiedIssuer<'static, KeyPair>,
}

pub fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let root = CertifiedIssuer::self_signed(
            ca_params(&format!("{name} Root")),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca_params(&format!("{name} Intermediate")),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Pki { root, intermediate }
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.root.der().clone()).unwrap();
        Arc::new(roots)
    }

    /// The root certificate, DER: the trust anchor.
    pub fn root_der(&self) -> Vec<u8> {
        self.root.der().to_vec()
    }

    /// Leaf issued by the intermediate; the chain the server sends is leaf + intermediate.
    pub fn issue(&self, params: CertificateParams) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &self.intermediate).unwrap();
        ServerCert {
            chain: vec![leaf.der().clone(), self.intermediate.der().clone()],
            key,
        }
    }
}

pub struct ServerCert {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: KeyPair,
}

impl ServerCert {
    pub fn self_signed(params: CertificateParams) -> ServerCert {
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        ServerCert {
            chain: vec![cert.der().clone()],
            key,
        }
    }

    pub fn leaf_only(mut self) -> ServerCert {
        self.chain.truncate(1);
        self
    }

    pub fn pin(&self) -> Pin {
        EndEntityCertificate::parse(&self.chain[0]).unwrap().pin()
    }
}

pub fn leaf(sans: Vec<SanType>, cn: Option<&str>) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.subject_alt_names = sans;
    p.distinguished_name = DistinguishedName::new();
    if let Some(cn) = cn {
        p.distinguished_name.push(DnType::CommonName, cn);
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p
}

pub fn dns(name: &str) -> SanType {
    SanType::DnsName(name.try_into().unwrap())
}

pub fn xmpp_addr(jid: &str) -> SanType {
    SanType::OtherName((XMPP_ADDR.to_vec(), jid.into()))
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    assert!(content.len() < 0x80);
    let mut out = vec![tag, content.len() as u8];
    out.extend_from_slice(content);
    out
}

/// A leaf whose only subjectAltName entry is an SRV-ID (otherName id-on-dnsSRV,
/// IA5String), DER written by hand.
pub fn srv_only(srv_id: &str) -> CertificateParams {
    let oid = [0x2B, 0x06, 0x01, 0x05, 0x05, 0x07, 0x08, 0x07];
    let mut other = tlv(0x06, &oid);
    other.extend(tlv(0xA0, &tlv(0x16, srv_id.as_bytes())));
    let san = tlv(0x30, &tlv(0xA0, &other));
    let mut p = leaf(vec![], None);
    p.custom_extensions
        .push(CustomExtension::from_oid_content(&[2, 5, 29, 17], san));
    p
}

/// Serves `chain`, signing the handshake with `signer` (normally the chain's own key).
#[derive(Debug)]
pub struct FixedCert(pub Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// A server presenting `cert`'s chain and signing the handshake with `signer`.
pub fn server_config(cert: &ServerCert, signer: &KeyPair, tls12_only: bool) -> Arc<ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(signer.serialize_der()));
    let signing_key = provider().key_provider.load_private_key(key).unwrap();
    // `CertifiedKey::new` does not check that the key matches the certificate, so a test
    // can play a server that presents someone else's certificate.
    let certified = Arc::new(CertifiedKey::new(cert.chain.clone(), signing_key));
    let builder = ServerConfig::builder_with_provider(provider());
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    Arc::new(
        builder
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCert(certified))),
    )
}

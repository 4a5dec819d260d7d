//! Certificate chains shaped like the ones devices meet in the field (Let's Encrypt's two
//! hierarchies, see `shared` FACTS "Real-world certificate chains"), made at test time with
//! the `openssl` command line into a temp dir:
//!
//! - an RSA-4096 root ("X1"-like, self-signed, sha256WithRSAEncryption) → an RSA-2048
//!   intermediate ("R1x"-like: CA, pathlen 0, keyUsage digitalSignature + keyCertSign +
//!   cRLSign, EKU serverAuth + clientAuth) → RSA-2048 leaves;
//! - a P-384 root ("X2"-like, ecdsa-with-SHA384) → a P-384 intermediate ("E5"-like, the same
//!   extensions) → P-256 or P-384 leaves, everything signed ecdsa-with-SHA384;
//! - the P-384 root cross-signed by the RSA root: the same subject and key, issuer the RSA
//!   root, signed sha256WithRSAEncryption. A chain ending in it verifies to either root.
//!
//! Leaves are issued as Let's Encrypt issues them since 2026: `CA:FALSE`, EKU serverAuth
//! only, keyUsage digitalSignature (+ keyEncipherment for RSA), SAN dNSName = the domain
//! (critical where the subject is empty), the DV policy OID, 90 days. [`Shape`] names the
//! four served chains a test tries; [`FieldPki::serve`] issues a leaf for a domain in a
//! shape and returns what the server sends.
//!
//! The real ISRG Root X1 and X2, as the opt-in device bundle `firmware/trust/isrg-roots.pem`
//! carries them, are [`ISRG_ROOTS_PEM`]; their fingerprints [`ISRG_ROOT_X1_SHA256`] and
//! [`ISRG_ROOT_X2_SHA256`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sha2::{Digest, Sha256};

/// The opt-in trust bundle for devices: the real ISRG Root X1 (RSA-4096) and X2 (P-384).
pub const ISRG_ROOTS_PEM: &str = include_str!("../../firmware/trust/isrg-roots.pem");

/// SHA-256 of ISRG Root X1's DER (as Let's Encrypt and Mozilla's root store publish it).
pub const ISRG_ROOT_X1_SHA256: &str =
    "96bcec06264976f37460779acf28c5a7cfe8a3c0aae11a8ffcee05c0bddf08c6";
/// SHA-256 of ISRG Root X2's DER.
pub const ISRG_ROOT_X2_SHA256: &str =
    "69729b8e15a86efc177a57afb7171dfc64add28c2fca8cf1507e34453ccb1470";

/// Every certificate of a PEM text, DER, in order.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| e.to_string()))
        .collect()
}

/// Lower-case hex SHA-256 of `der`.
pub fn sha256_hex(der: &[u8]) -> String {
    Sha256::digest(der).iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// One certificate the generator wrote: PEM, DER, its file, and its key's file.
#[derive(Clone, Debug)]
pub struct Cert {
    /// PEM text.
    pub pem: String,
    /// DER.
    pub der: Vec<u8>,
    /// The PEM file.
    pub path: PathBuf,
    /// The private key's file (PKCS#8 PEM).
    pub key_path: PathBuf,
}

/// The chains a test tries, each as a server sends it (leaf first, then intermediates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// RSA-2048 leaf → RSA-2048 intermediate; anchor: the RSA-4096 root.
    Rsa,
    /// P-256 leaf → P-384 intermediate; anchor: the P-384 root.
    Ecdsa,
    /// P-256 leaf → P-384 intermediate → the P-384 root cross-signed by the RSA root;
    /// anchor: either root.
    CrossSigned,
    /// P-384 leaf → P-384 intermediate; anchor: the P-384 root.
    EcdsaP384Leaf,
}

impl Shape {
    /// All four, in the order above.
    pub const ALL: [Shape; 4] = [
        Shape::Rsa,
        Shape::Ecdsa,
        Shape::CrossSigned,
        Shape::EcdsaP384Leaf,
    ];

    /// A short name, usable as a DNS label (`rsa`, `ecdsa`, `cross`, `p384`).
    pub fn name(self) -> &'static str {
        match self {
            Shape::Rsa => "rsa",
            Shape::Ecdsa => "ecdsa",
            Shape::CrossSigned => "cross",
            Shape::EcdsaP384Leaf => "p384",
        }
    }

    /// The roots any of which must be accepted as the only anchor.
    pub fn anchors(self, pki: &FieldPki) -> Vec<&Cert> {
        match self {
            Shape::Rsa => vec![&pki.rsa_root],
            Shape::Ecdsa | Shape::EcdsaP384Leaf => vec![&pki.ecdsa_root],
            Shape::CrossSigned => vec![&pki.rsa_root, &pki.ecdsa_root],
        }
    }

    /// A root of the same test PKI the chain does not lead to (the other hierarchy's), or
    /// for the cross-signed chain a root of another PKI: must be refused as unknown issuer.
    pub fn wrong_anchor(self, pki: &FieldPki) -> &Cert {
        match self {
            Shape::Rsa => &pki.ecdsa_root,
            Shape::Ecdsa | Shape::EcdsaP384Leaf => &pki.rsa_root,
            Shape::CrossSigned => &pki.foreign_root,
        }
    }

    fn leaf_key(self) -> KeyType {
        match self {
            Shape::Rsa => KeyType::Rsa(2048),
            Shape::Ecdsa | Shape::CrossSigned => KeyType::Ec("P-256"),
            Shape::EcdsaP384Leaf => KeyType::Ec("P-384"),
        }
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Shape::Rsa => "RSA (RSA-4096 root, RSA-2048 intermediate and leaf)",
            Shape::Ecdsa => "ECDSA (P-384 root and intermediate, P-256 leaf)",
            Shape::CrossSigned => "cross-signed (P-256 leaf, P-384 intermediate, P-384 root cross-signed by the RSA root)",
            Shape::EcdsaP384Leaf => "ECDSA with a P-384 leaf",
        })
    }
}

/// What a server presents for one domain: its chain and the leaf's key.
#[derive(Clone, Debug)]
pub struct ServedChain {
    /// The domain the leaf is issued for.
    pub domain: String,
    /// The shape.
    pub shape: Shape,
    /// The leaf.
    pub leaf: Cert,
    /// Leaf, then the intermediates, PEM (what a server's certificate file holds).
    pub chain_pem: String,
    /// The leaf's private key, PKCS#8 PEM.
    pub key_pem: String,
}

impl ServedChain {
    /// The chain, DER, leaf first.
    pub fn chain_der(&self) -> Vec<Vec<u8>> {
        pem_certificates(&self.chain_pem).expect("the generator wrote PEM")
    }
}

#[derive(Clone, Copy)]
enum KeyType {
    Rsa(u32),
    Ec(&'static str),
}

/// The two hierarchies, the cross-sign, and a foreign root, in a temp dir kept while this
/// lives.
pub struct FieldPki {
    dir: tempfile::TempDir,
    /// RSA-4096 root, self-signed ("ISRG Root X1"-like).
    pub rsa_root: Cert,
    /// P-384 root, self-signed ("ISRG Root X2"-like).
    pub ecdsa_root: Cert,
    /// The P-384 root's subject and key, issued by the RSA root.
    pub ecdsa_root_cross: Cert,
    /// RSA-2048 intermediate under the RSA root.
    pub rsa_intermediate: Cert,
    /// P-384 intermediate under the P-384 root.
    pub ecdsa_intermediate: Cert,
    /// A P-256 root of no chain here (another PKI).
    pub foreign_root: Cert,
}

impl std::fmt::Debug for FieldPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldPki")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

const EXTENSIONS: &str = "\
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[cross]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.5.29.32.0
authorityInfoAccess = caIssuers;URI:http://x1.i.field.test/

[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, digitalSignature, keyCertSign, cRLSign
extendedKeyUsage = serverAuth, clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.23.140.1.2.1
authorityInfoAccess = caIssuers;URI:http://x1.i.field.test/
crlDistributionPoints = URI:http://x1.c.field.test/

[leaf_rsa]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.23.140.1.2.1
authorityInfoAccess = caIssuers;URI:http://r.i.field.test/
subjectAltName = DNS:${ENV::FIELD_DOMAIN}

[leaf_ec]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
certificatePolicies = 2.23.140.1.2.1
authorityInfoAccess = caIssuers;URI:http://e.i.field.test/
subjectAltName = critical, DNS:${ENV::FIELD_DOMAIN}
";

/// Runs `openssl ARGS` in `dir`; its stderr is the error.
fn openssl(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl (apt-get install openssl): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn serial() -> String {
    let mut bytes = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
    bytes[0] &= 0x7f; // positive, as CAs write them
    bytes[0] |= 0x01;
    format!(
        "0x{}",
        bytes.iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    )
}

impl FieldPki {
    /// Makes both hierarchies and the cross-sign (an RSA-4096 key: a second or two).
    pub fn generate() -> Result<Self, String> {
        let dir = tempfile::Builder::new()
            .prefix("xmpp-handshake-field-chains-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let d = dir.path();
        std::fs::write(d.join("ext.cnf"), EXTENSIONS).map_err(|e| e.to_string())?;
        let subject = |cn: &str| format!("/C=US/O=Field Test Security Research Group/CN={cn}");

        let rsa_root = self_signed(
            d,
            "x1",
            KeyType::Rsa(4096),
            &subject("Field Root X1"),
            "sha256",
        )?;
        let ecdsa_root = self_signed(
            d,
            "x2",
            KeyType::Ec("P-384"),
            &subject("Field Root X2"),
            "sha384",
        )?;
        // The same CSR (subject and key) as X2's, issued by X1.
        let ecdsa_root_cross = issue(d, "x2-cross", "x2", &rsa_root, "cross", "sha256", 1825, &[])?;
        let rsa_intermediate = intermediate(d, "r", KeyType::Rsa(2048), &rsa_root, "sha256")?;
        let ecdsa_intermediate = intermediate(d, "e", KeyType::Ec("P-384"), &ecdsa_root, "sha384")?;
        let foreign_root = self_signed(
            d,
            "foreign",
            KeyType::Ec("P-256"),
            "/O=Another Test PKI/CN=Another Root",
            "sha256",
        )?;
        Ok(FieldPki {
            dir,
            rsa_root,
            ecdsa_root,
            ecdsa_root_cross,
            rsa_intermediate,
            ecdsa_intermediate,
            foreign_root,
        })
    }

    /// The temp dir holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One set per test binary while any test holds it (the RSA-4096 key takes a while):
    /// the first caller generates it, the temp dir goes when the last drops it.
    pub fn shared() -> Result<Arc<FieldPki>, String> {
        static SHARED: Mutex<Weak<FieldPki>> = Mutex::new(Weak::new());
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pki) = shared.upgrade() {
            return Ok(pki);
        }
        let pki = Arc::new(FieldPki::generate()?);
        *shared = Arc::downgrade(&pki);
        Ok(pki)
    }

    /// Issues a leaf for `domain` in `shape` and returns what the server sends.
    pub fn serve(&self, shape: Shape, domain: &str) -> Result<ServedChain, String> {
        static LEAVES: AtomicUsize = AtomicUsize::new(0);
        let d = self.dir.path();
        let n = LEAVES.fetch_add(1, Ordering::Relaxed);
        let name = format!("leaf{n}-{}-{domain}", shape.name());
        let key = shape.leaf_key();
        genkey(d, &name, key)?;
        // The RSA leaf has the domain as CN as Let's Encrypt's used to; the ECDSA ones an
        // empty subject with a critical SAN, as its CN-less leaves have.
        let subject = match key {
            KeyType::Rsa(_) => format!("/CN={domain}"),
            KeyType::Ec(_) => "/".to_string(),
        };
        csr(d, &name, &subject)?;
        let (issuer, section, digest) = match key {
            KeyType::Rsa(_) => (&self.rsa_intermediate, "leaf_rsa", "sha256"),
            KeyType::Ec(_) => (&self.ecdsa_intermediate, "leaf_ec", "sha384"),
        };
        let leaf = issue(
            d,
            &name,
            &name,
            issuer,
            section,
            digest,
            90,
            &[("FIELD_DOMAIN", domain)],
        )?;
        let mut chain_pem = format!("{}{}", leaf.pem, issuer.pem);
        if shape == Shape::CrossSigned {
            chain_pem.push_str(&self.ecdsa_root_cross.pem);
        }
        let key_pem = std::fs::read_to_string(&leaf.key_path).map_err(|e| e.to_string())?;
        Ok(ServedChain {
            domain: domain.into(),
            shape,
            leaf,
            chain_pem,
            key_pem,
        })
    }

    /// Writes `certs` (PEM texts, in this order, after a comment line as bundles have)
    /// into one file in the temp dir, a trust bundle; its path.
    pub fn bundle(&self, name: &str, certs: &[&str]) -> Result<PathBuf, String> {
        static BUNDLES: AtomicUsize = AtomicUsize::new(0);
        let n = BUNDLES.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("bundle{n}-{name}"));
        let mut text = String::from("# test trust bundle\n");
        for pem in certs {
            text.push_str(pem);
        }
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok(path)
    }
}

fn genkey(d: &Path, name: &str, key: KeyType) -> Result<(), String> {
    let out = format!("{name}.key");
    match key {
        KeyType::Rsa(bits) => openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                &out,
            ],
            &[],
        ),
        KeyType::Ec(curve) => openssl(
            d,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &format!("ec_paramgen_curve:{curve}"),
                "-out",
                &out,
            ],
            &[],
        ),
    }
}

fn csr(d: &Path, name: &str, subject: &str) -> Result<(), String> {
    openssl(
        d,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &format!("{name}.csr"),
        ],
        &[],
    )
}

fn read_cert(d: &Path, name: &str, key_name: &str) -> Result<Cert, String> {
    let path = d.join(format!("{name}.pem"));
    let pem = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    let der = pem_certificates(&pem)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{name}.pem holds no certificate"))?;
    Ok(Cert {
        pem,
        der,
        path,
        key_path: d.join(format!("{key_name}.key")),
    })
}

fn self_signed(
    d: &Path,
    name: &str,
    key: KeyType,
    subject: &str,
    digest: &str,
) -> Result<Cert, String> {
    genkey(d, name, key)?;
    csr(d, name, subject)?;
    let serial = serial();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-key",
            &format!("{name}.key"),
            "-days",
            "3650",
            &format!("-{digest}"),
            "-set_serial",
            &serial,
            "-extfile",
            "ext.cnf",
            "-extensions",
            "root",
            "-out",
            &format!("{name}.pem"),
        ],
        &[("FIELD_DOMAIN", "unused.test")],
    )?;
    read_cert(d, name, name)
}

fn intermediate(
    d: &Path,
    name: &str,
    key: KeyType,
    issuer: &Cert,
    digest: &str,
) -> Result<Cert, String> {
    genkey(d, name, key)?;
    csr(
        d,
        name,
        &format!(
            "/C=US/O=Field Test Encrypt/CN={}",
            name.to_uppercase() + "11"
        ),
    )?;
    issue(d, name, name, issuer, "intermediate", digest, 1095, &[])
}

/// Signs `csr_name.csr` with `issuer`'s key into `name.pem`, extensions from `section`.
#[allow(clippy::too_many_arguments)]
fn issue(
    d: &Path,
    name: &str,
    csr_name: &str,
    issuer: &Cert,
    section: &str,
    digest: &str,
    days: u32,
    env: &[(&str, &str)],
) -> Result<Cert, String> {
    let serial = serial();
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| *k == "FIELD_DOMAIN") {
        env.push(("FIELD_DOMAIN", "unused.test"));
    }
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{csr_name}.csr"),
            "-CA",
            &issuer.path.display().to_string(),
            "-CAkey",
            &issuer.key_path.display().to_string(),
            "-days",
            &days.to_string(),
            &format!("-{digest}"),
            "-set_serial",
            &serial,
            "-extfile",
            "ext.cnf",
            "-extensions",
            section,
            "-out",
            &format!("{name}.pem"),
        ],
        &env,
    )?;
    read_cert(d, name, csr_name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::client::WebPkiServerVerifier;
    use rustls::pki_types::{ServerName, UnixTime};

    /// rustls/webpki's verdict on `chain` for `domain` with `anchors`.
    fn verify(chain: &[Vec<u8>], domain: &str, anchors: &[&Cert]) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        for a in anchors {
            roots.add(CertificateDer::from(a.der.clone())).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        verifier
            .verify_server_cert(
                &CertificateDer::from(chain[0].as_slice()),
                &intermediates,
                &ServerName::try_from(domain.to_string()).unwrap(),
                &[],
                UnixTime::now(),
            )
            .map(|_| ())
    }

    fn has(der: &[u8], needle: &[u8]) -> bool {
        der.windows(needle.len()).any(|w| w == needle)
    }

    const SHA256_WITH_RSA: &[u8] = &[
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b,
    ];
    const ECDSA_WITH_SHA384: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
    const SECP384R1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
    const PRIME256V1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    const CLIENT_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
    const SERVER_AUTH: &[u8] = &[0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

    #[test]
    fn every_shape_verifies_with_rustls_to_its_roots_only_and_has_its_algorithms() {
        let pki = FieldPki::generate().unwrap();
        for shape in Shape::ALL {
            let domain = format!("{}.field.test", shape.name());
            let served = pki.serve(shape, &domain).unwrap();
            let chain = served.chain_der();
            for anchor in shape.anchors(&pki) {
                verify(&chain, &domain, &[anchor]).unwrap_or_else(|e| panic!("{shape}: {e:?}"));
            }
            assert!(verify(&chain, "other.field.test", &shape.anchors(&pki)).is_err());
            assert!(
                verify(&chain, &domain, &[shape.wrong_anchor(&pki)]).is_err(),
                "{shape}: wrong anchor accepted"
            );
            let leaf = &chain[0];
            assert!(has(leaf, SERVER_AUTH) && !has(leaf, CLIENT_AUTH), "{shape}");
            match shape {
                Shape::Rsa => {
                    assert_eq!(chain.len(), 2);
                    assert!(has(leaf, SHA256_WITH_RSA));
                }
                Shape::Ecdsa | Shape::CrossSigned => {
                    assert!(has(leaf, ECDSA_WITH_SHA384) && has(leaf, PRIME256V1));
                }
                Shape::EcdsaP384Leaf => {
                    assert!(has(leaf, ECDSA_WITH_SHA384) && has(leaf, SECP384R1));
                }
            }
            // The intermediates carry serverAuth and clientAuth, as R10/E5 do.
            assert!(has(&chain[1], SERVER_AUTH) && has(&chain[1], CLIENT_AUTH));
            if shape == Shape::CrossSigned {
                assert_eq!(chain.len(), 3);
                assert!(has(&chain[2], SHA256_WITH_RSA) && has(&chain[2], SECP384R1));
            }
        }
        // Without the cross-sign, the ECDSA chain does not lead to the RSA root.
        let served = pki.serve(Shape::Ecdsa, "ecdsa.field.test").unwrap();
        assert!(verify(&served.chain_der(), "ecdsa.field.test", &[&pki.rsa_root]).is_err());
        // The roots' own signatures and sizes.
        assert!(has(&pki.rsa_root.der, SHA256_WITH_RSA));
        assert!(pki.rsa_root.der.len() > 1200, "RSA-4096 root");
        assert!(has(&pki.ecdsa_root.der, ECDSA_WITH_SHA384));
    }

    #[test]
    fn isrg_bundle_holds_x1_and_x2_with_their_published_fingerprints() {
        let certs = pem_certificates(ISRG_ROOTS_PEM).unwrap();
        let prints: Vec<String> = certs.iter().map(|c| sha256_hex(c)).collect();
        assert_eq!(prints, [ISRG_ROOT_X1_SHA256, ISRG_ROOT_X2_SHA256]);
        // The fingerprints are also written in the file's header for people.
        for p in &prints {
            let colons = p
                .as_bytes()
                .chunks(2)
                .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
                .collect::<Vec<_>>()
                .join(":");
            assert!(ISRG_ROOTS_PEM.contains(&colons), "header lacks {colons}");
        }
        // Both parse as certificates for rustls (a self-signed root is a usable anchor).
        let mut roots = rustls::RootCertStore::empty();
        let (added, ignored) =
            roots.add_parsable_certificates(certs.into_iter().map(CertificateDer::from));
        assert_eq!((added, ignored), (2, 0));
    }

    /// Where Debian's ca-certificates is installed (tests/run installs it), its copies
    /// of the two roots are the same certificates.
    #[test]
    fn isrg_bundle_matches_the_system_root_store_where_present() {
        let dir = Path::new("/usr/share/ca-certificates/mozilla");
        for (file, print) in [
            ("ISRG_Root_X1.crt", ISRG_ROOT_X1_SHA256),
            ("ISRG_Root_X2.crt", ISRG_ROOT_X2_SHA256),
        ] {
            let Ok(pem) = std::fs::read_to_string(dir.join(file)) else {
                eprintln!("SKIPPED: no {file} in the system's root store");
                continue;
            };
            let certs = pem_certificates(&pem).unwrap();
            assert_eq!(sha256_hex(&certs[0]), print, "{file}");
        }
    }
}

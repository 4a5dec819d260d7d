//! `xmpp-handshake s2s-check DOMAIN` against the server-to-server ports of a real Prosody
//! and ejabberd: the STARTTLS negotiation an originating server sees, each way it can end
//! here: a good certificate (exit 0, its fingerprint printed, what Prosody offers after TLS,
//! with and without its dialback module), a certificate from a CA we do not trust (exit 4),
//! a port where nothing listens (exit 6), and SASL EXTERNAL with our certificate, accepted
//! for the domain it names and refused for another; Server Dialback with and without an
//! authoritative listener for our domain.

use std::path::Path;
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use xmpp_handshake_tests::{
    cli_binary, Ejabberd, EjabberdOptions, Prosody, ProsodyOptions, TestPki,
};

fn s2s_check(domain: &str, port: u16, ca: &Path) -> Output {
    let port = port.to_string();
    let ca = ca.display().to_string();
    Command::new(cli_binary())
        .args([
            "s2s-check",
            domain,
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--ca",
            &ca,
            "--timeout",
            "20",
        ])
        .output()
        .expect("the binary runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `AB:CD:…` of the DER certificate, as the verifier prints fingerprints.
fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[test]
fn a_good_certificate_passes_with_its_fingerprint_and_the_offer() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let out = s2s_check(&p.domain, p.ports.s2s, &p.ca_path);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("(STARTTLS, --host)"), "{all}");
    assert!(all.contains("TLS: TLS 1."), "{all}");
    assert!(
        all.contains(&format!("certificate: trusted for {}", p.domain)),
        "{all}"
    );
    let expected = fingerprint(&p.pki.leaf_der);
    assert!(
        all.contains(&format!("certificate SHA-256: {expected}")),
        "expected {expected}: {all}"
    );
    // Without dialback and without a client certificate Prosody has nothing to offer.
    assert!(all.contains("offered: nothing"), "{all}");
}

#[test]
fn prosody_with_dialback_shows_dialback_offered() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        extra_global_config: "modules_enabled = { \"disco\"; \"roster\"; \"saslauth\"; \"tls\"; \"ping\"; \"websocket\"; \"dialback\" }".into(),
        ..Default::default()
    }) else {
        return;
    };
    let out = s2s_check(&p.domain, p.ports.s2s, &p.ca_path);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    assert!(all.contains("dialback (XEP-0220) true"), "{all}");
}

#[test]
fn a_certificate_from_another_ca_is_refused_with_exit_4_and_a_closed_port_is_6() {
    let Some(p) = Prosody::start_or_skip(ProsodyOptions::default()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-ca.pem");
    let pki = TestPki::generate(&p.domain).unwrap();
    std::fs::write(&other, pki.ca_pem).unwrap();
    let out = s2s_check(&p.domain, p.ports.s2s, &other);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(4), "{all}");
    assert!(
        all.contains(&format!("certificate: refused for {}", p.domain)),
        "{all}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = s2s_check(&p.domain, port, &p.ca_path);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
}

/// `--from MYDOMAIN --cert --key`: our certificate (issued by a CA Prosody's `s2s_ssl`
/// trusts, naming MYDOMAIN) is the TLS client certificate, and Prosody, which then offers
/// SASL EXTERNAL, authenticates the stream with it (exit 0). The same certificate for
/// another `from` earns nothing: Prosody offers no EXTERNAL for a domain the certificate does
/// not name, has no other feature (no dialback module) and ends the stream (exit 6, as
/// `connect` for a stream error).
/// Our server's certificate and its CA, in a directory the servers' own users (`prosody`,
/// `ejabberd`) can read: `verona.test` as its one SAN dNSName (as a public CA issues
/// them), EKU serverAuth + clientAuth. (With an id-on-xmppAddr SAN for the bare domain as
/// well, as `serve`'s generated certificates had, ejabberd 23.01's S2S receiver crashes on
/// `<auth/>` in `xmpp_stream_pkix:get_domains_from_san` and drops the connection.)
struct OurIdentity {
    dir: tempfile::TempDir,
}

/// A CA and a leaf naming `domain` by dNSName only.
fn dns_only_pki(domain: &str) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    // Distinct subjects: with rcgen's one default name the leaf would look self-signed.
    let name = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = name("verona.test test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![domain.to_string()]).unwrap();
    leaf.distinguished_name = name(domain);
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let leaf = leaf.signed_by(&key, &ca).unwrap();
    (ca.pem(), leaf.pem(), key.serialize_pem())
}

impl OurIdentity {
    fn new() -> Self {
        let (ca_pem, leaf_pem, key_pem) = dns_only_pki("verona.test");
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path, mode: u32| {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        mode(dir.path(), 0o755);
        for (name, text) in [
            ("our-ca.pem", &ca_pem),
            ("verona.pem", &leaf_pem),
            ("verona.key", &key_pem),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            mode(&path, 0o644);
        }
        OurIdentity { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `s2s-check DOMAIN --from FROM` with our certificate, to 127.0.0.1:`port`.
    fn check(&self, domain: &str, port: u16, ca: &Path, from: &str) -> Output {
        self.check_with(domain, port, ca, from, &[])
    }

    /// [`OurIdentity::check`] with `extra` arguments.
    fn check_with(&self, domain: &str, port: u16, ca: &Path, from: &str, extra: &[&str]) -> Output {
        let port = port.to_string();
        let ca = ca.display().to_string();
        let (cert, key) = (self.path("verona.pem"), self.path("verona.key"));
        Command::new(cli_binary())
            .args([
                "s2s-check",
                domain,
                "--host",
                "127.0.0.1",
                "--port",
                &port,
                "--ca",
                &ca,
                "--from",
                from,
                "--cert",
                &cert,
                "--key",
                &key,
                "--timeout",
                "20",
                "--trace",
            ])
            .args(extra)
            .output()
            .expect("the binary runs")
    }
}

#[test]
fn external_authenticates_as_the_domain_our_certificate_names() {
    let ours = OurIdentity::new();
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        extra_global_config: format!("s2s_ssl = {{ cafile = {:?} }}", ours.path("our-ca.pem")),
        ..Default::default()
    }) else {
        return;
    };
    let out = ours.check(&p.domain, p.ports.s2s, &p.ca_path, "verona.test");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}\n{}", p.log_tail(30));
    assert!(
        all.contains("authenticated as verona.test with EXTERNAL"),
        "{all}"
    );
    let out = ours.check(&p.domain, p.ports.s2s, &p.ca_path, "padua.test");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(6), "{all}\n{}", p.log_tail(30));
    assert!(all.contains("authentication: failed"), "{all}");
    assert!(all.contains("No stream features to offer"), "{all}");
    assert!(!all.contains("authenticated as"), "{all}");
}

/// ejabberd 23.01 offers EXTERNAL on every encrypted S2S stream and checks the certificate
/// (against `s2s_cafile`) when `<auth/>` arrives: accepted as the domain the certificate
/// names (exit 0), `<failure/>` for another (exit 3).
#[test]
fn ejabberd_accepts_external_only_for_the_domain_our_certificate_names() {
    let ours = OurIdentity::new();
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        extra_config: format!("s2s_cafile: {:?}\n", ours.path("our-ca.pem")),
        ..Default::default()
    }) else {
        return;
    };
    let out = ours.check(&e.domain, e.ports.s2s, &e.ca_path, "verona.test");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}\n{}", e.log_tail(60));
    assert!(
        all.contains("authenticated as verona.test with EXTERNAL"),
        "{all}"
    );
    let out = ours.check(&e.domain, e.ports.s2s, &e.ca_path, "padua.test");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}\n{}", e.log_tail(30));
    assert!(all.contains("authentication: failed"), "{all}");
}

/// Server Dialback against Prosody (`mod_dialback`, our CA not trusted: no EXTERNAL for
/// us). Without a listener dialback is reported not attempted and the check fails as
/// EXTERNAL did (exit 3). With `--dialback-listen` on the address Prosody's hosts file
/// gives verona.test, Prosody calls back (its own stream to us authenticated with EXTERNAL,
/// its certificate verifying against `--ca`), our listener vouches for the key, and the
/// check passes (exit 0). As padua.test, which Prosody cannot reach, it fails.
#[test]
fn dialback_reaches_a_verdict_with_an_authoritative_listener() {
    let ours = OurIdentity::new();
    let ip = xmpp_handshake_tests::own_loopback();
    let hosts = ours.dir.path().join("hosts");
    std::fs::write(&hosts, format!("{ip} verona.test\n")).unwrap();
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        domain: "a.test".into(),
        extra_global_config: format!("unbound = {{ hoststxt = {hosts:?} }}\n"),
        extra_host_config: "  modules_enabled = { \"dialback\" }\n".into(),
        ..Default::default()
    }) else {
        return;
    };
    let out = ours.check(&p.domain, p.ports.s2s, &p.ca_path, "verona.test");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(3), "{all}\n{}", p.log_tail(30));
    assert!(all.contains("authentication: failed"), "{all}");
    assert!(
        all.contains("dialback: not attempted: no authoritative listener"),
        "{all}"
    );

    let listen = format!("{ip}:5269");
    let out = ours.check_with(
        &p.domain,
        p.ports.s2s,
        &p.ca_path,
        "verona.test",
        &["--dialback-listen", &listen],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}\n{}", p.log_tail(40));
    assert!(
        all.contains("authentication: failed"),
        "EXTERNAL still fails: {all}"
    );
    assert!(
        all.contains("dialback: authenticated as verona.test"),
        "{all}"
    );
    assert!(
        all.contains("dialback answered"),
        "our listener vouched: {all}"
    );

    // padua.test is nowhere in Prosody's hosts file: it cannot call back and never
    // answers the key (Prosody sends no error verdict then); the check fails when its
    // time is up.
    let out = ours.check_with(
        &p.domain,
        p.ports.s2s,
        &p.ca_path,
        "padua.test",
        &["--dialback-listen", &listen],
    );
    let all = text(&out);
    assert_ne!(out.status.code(), Some(0), "{all}\n{}", p.log_tail(40));
    assert!(all.contains("no answer within 20 s"), "{all}");
    assert!(!all.contains("dialback: authenticated"), "{all}");
}

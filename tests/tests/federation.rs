//! `serve` federates (issue 17): our `serve` (domain `b.test`, the CLI binary) and a real
//! Prosody 0.12.3 (`a.test`) exchange messages both ways over server-to-server streams
//! authenticated with SASL EXTERNAL (Prosody `s2s_secure_auth = true`, our CA in its
//! `s2s_ssl`; Prosody's CA in `serve --s2s-ca`): Bob on serve writes to Alice on Prosody
//! (serve initiates), Alice answers (Prosody initiates), and the other way round.
//!
//! Prosody finds `b.test` through lua-unbound with a hosts file of the test's
//! (`unbound = { hoststxt = ... }`): `b.test` is a loopback address of its own on which
//! serve's S2S listener has port 5269 (no DNS, no network namespace). serve reaches
//! `a.test` through `--s2s-peer`.
//!
//! Hostile peers against serve's S2S listener (a scripted raw peer): a certificate for
//! another domain never earns EXTERNAL; a `from` that changes between headers is
//! `<improper-addressing/>`; an authzid naming another domain fails; stanzas before
//! authentication are `<not-authorized/>`; a stanza whose `from` is not the authenticated
//! domain is `<invalid-from/>`. And the bounces: a domain whose server cannot be reached
//! answers `<remote-server-not-found/>`, one that never answers `<remote-server-timeout/>`.

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use xmpp_handshake_core::sasl::{CbPolicy, SaslPolicy};
use xmpp_handshake_core::stanza;
use xmpp_handshake_tests::{cli_binary, Ejabberd, EjabberdOptions, Prosody, ProsodyOptions};
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

const LIMIT: Duration = Duration::from_secs(20);

/// A CA and a leaf naming each of `domains` by dNSName only (one leaf per domain), EKU
/// serverAuth + clientAuth: `(ca_pem, [(leaf_pem, key_pem)])`.
fn dns_only_pki(ca_name: &str, domains: &[&str]) -> (String, Vec<(String, String)>) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let name = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.distinguished_name = name(ca_name);
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let leaves = domains
        .iter()
        .map(|domain| {
            let key = KeyPair::generate().unwrap();
            let mut leaf = CertificateParams::new(vec![domain.to_string()]).unwrap();
            leaf.distinguished_name = name(domain);
            leaf.is_ca = IsCa::ExplicitNoCa;
            leaf.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            let leaf = leaf.signed_by(&key, &ca).unwrap();
            (leaf.pem(), key.serialize_pem())
        })
        .collect();
    (ca.pem(), leaves)
}

/// Files readable by the servers' own users.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let files = Files { dir };
        files.mode(files.dir.path(), 0o755);
        files
    }

    fn mode(&self, path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        self.mode(&path, 0o644);
        path.display().to_string()
    }
}

/// Our identity: `b.test`'s certificate (dNSName only) and, from the same CA, one for
/// `evil.test` (a peer with a good certificate for another domain).
struct Ours {
    files: Files,
    ca: String,
    cert: String,
    key: String,
    evil_cert: String,
    evil_key: String,
    ca_pem: String,
}

impl Ours {
    fn new() -> Self {
        Self::for_domain("b.test")
    }

    /// Our certificate for `domain`, and one for `evil.test`.
    fn for_domain(domain: &str) -> Self {
        let (ca_pem, leaves) = dns_only_pki("serve test CA", &[domain, "evil.test"]);
        let files = Files::new();
        let ca = files.write("our-ca.pem", &ca_pem);
        let cert = files.write("b.pem", &leaves[0].0);
        let key = files.write("b.key", &leaves[0].1);
        let evil_cert = files.write("evil.pem", &leaves[1].0);
        let evil_key = files.write("evil.key", &leaves[1].1);
        Ours {
            files,
            ca,
            cert,
            key,
            evil_cert,
            evil_key,
            ca_pem,
        }
    }
}

/// A loopback address of its own for `b.test` (port 5269 is free on it).
fn own_loopback() -> std::net::Ipv4Addr {
    let seed = std::process::id()
        ^ (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos());
    for i in 0..50u32 {
        let n = seed.wrapping_add(i.wrapping_mul(7919));
        let ip = std::net::Ipv4Addr::new(127, 77, (n >> 8) as u8, (n as u8).max(2));
        if StdListener::bind((ip, 5269)).is_ok() {
            return ip;
        }
    }
    panic!("no free 127.77.x.y:5269");
}

/// `xmpp-handshake serve` (killed on drop), user bob; its log is kept.
struct Serve {
    child: Child,
    c2s: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Serve {
    /// Serves `b.test`.
    fn start(args: &[String]) -> Serve {
        Self::start_for("b.test", args)
    }

    fn start_for(domain: &str, args: &[String]) -> Serve {
        let mut child = Command::new(cli_binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--domain", domain])
            .args(["--user", "bob:bob-pw", "--trace", "-v"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut addr = None;
        for line in lines.by_ref() {
            let line = line.expect("serve's banner");
            if let Some(rest) = line.strip_prefix(&format!("xmpp-handshake serve: {domain} on ")) {
                addr = rest.trim().parse().ok();
            }
            if line.contains("STARTTLS required") {
                break;
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Serve {
            child,
            c2s: addr.expect("serve prints its address"),
            log,
        }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits (`LIMIT` at most) until serve's log has `needle`.
    async fn wait_log(&self, needle: &str) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        while !self.log().contains(needle) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(self.log().contains(needle), "no {needle:?} in serve's log");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn options(ca_pem: &[u8], c2s: SocketAddr, resource: &str) -> ClientOptions {
    ClientOptions {
        trust: Trust::pem(ca_pem).expect("the test CA"),
        host: Some(c2s.ip().to_string()),
        port: Some(c2s.port()),
        sasl: SaslPolicy {
            channel_binding: CbPolicy::Off,
            ..SaslPolicy::default()
        },
        resource: Some(resource.into()),
        ..ClientOptions::default()
    }
}

/// The next `<message/>` with a body (other stanzas skipped): `(from, body)`.
async fn next_message(client: &mut Client) -> (String, String) {
    let found = tokio::time::timeout(LIMIT, async {
        loop {
            let stanza = client
                .next_stanza()
                .await
                .expect("the stream stays up")
                .expect("the stream stays open");
            if let Some((from, body)) = xmpp_handshake_host::router::message_body(stanza.raw()) {
                return (from.unwrap_or_default(), body);
            }
        }
    })
    .await;
    found.expect("a message in time")
}

/// The next stanza whose text contains `needle`.
async fn next_containing(client: &mut Client, needle: &str) -> String {
    let found = tokio::time::timeout(LIMIT, async {
        loop {
            let stanza = client
                .next_stanza()
                .await
                .expect("the stream stays up")
                .expect("the stream stays open");
            if stanza.raw().contains(needle) {
                return stanza.raw().to_string();
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no stanza with {needle:?} in time"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_prosody_federate_both_ways_with_external() {
    let ours = Ours::new();
    let ip = own_loopback();
    let hosts = ours.files.write("hosts", &format!("{ip} b.test\n"));
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        domain: "a.test".into(),
        extra_global_config: format!(
            "s2s_secure_auth = true\ns2s_ssl = {{ cafile = {:?} }}\nunbound = {{ hoststxt = {hosts:?} }}\n",
            ours.ca
        ),
        ..Default::default()
    }) else {
        return;
    };
    let serve = Serve::start(&[
        "--cert".into(),
        ours.cert.clone(),
        "--key".into(),
        ours.key.clone(),
        "--s2s-listen".into(),
        format!("{ip}:5269"),
        "--s2s-peer".into(),
        format!("a.test={}", p.s2s_addr()),
        "--s2s-ca".into(),
        p.ca_path.display().to_string(),
    ]);
    let mut bob = Client::connect(
        "bob@b.test",
        "bob-pw",
        options(ours.ca_pem.as_bytes(), serve.c2s, "phone"),
    )
    .await
    .expect("bob logs in to serve");
    // Bind 2 (XEP-0386) makes serve's resource from the one asked for.
    let bob_jid = bob.jid().to_string();
    let alice_user = p.user(0);
    let mut alice = Client::connect(
        &alice_user.jid("a.test"),
        &alice_user.password,
        options(p.ca_pem(), p.c2s_addr(), "laptop"),
    )
    .await
    .expect("alice logs in to prosody");
    alice.send(&stanza::presence(None)).await.unwrap();
    bob.send(&stanza::presence(None)).await.unwrap();

    // serve -> Prosody: serve's outgoing link authenticates with EXTERNAL.
    bob.send(&stanza::message(
        "alice@a.test/laptop",
        "hello from b.test",
        Some("m1"),
    ))
    .await
    .unwrap();
    let (from, body) = next_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob_jid.as_str(), "hello from b.test"),
        "{}\n{}",
        serve.log(),
        p.log_tail(40)
    );
    // Prosody -> serve: Prosody's outgoing stream, found through its hosts file.
    alice
        .send(&stanza::message(
            &from,
            "hello back from a.test",
            Some("m2"),
        ))
        .await
        .unwrap();
    let (from_alice, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut bob))
        .await
        .unwrap_or_else(|_| panic!("no reply\n{}\n{}", serve.log(), p.log_tail(60)));
    assert_eq!(from_alice, "alice@a.test/laptop");
    assert_eq!(body, "hello back from a.test");

    // And the other way round, on the links now up: Alice first, Bob answers.
    alice
        .send(&stanza::message("bob@b.test", "second round", Some("m3")))
        .await
        .unwrap();
    let (from_alice, body) = next_message(&mut bob).await;
    assert_eq!(
        (from_alice.as_str(), body.as_str()),
        ("alice@a.test/laptop", "second round")
    );
    bob.send(&stanza::message(&from_alice, "second answer", Some("m4")))
        .await
        .unwrap();
    let (from, body) = next_message(&mut alice).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob_jid.as_str(), "second answer")
    );

    // Both directions authenticated with EXTERNAL, as the trace shows.
    let log = serve.log();
    assert!(
        log.contains("s2s out a.test: authenticated (EXTERNAL)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated (EXTERNAL)"), "{log}");
    assert!(
        log.contains("serve: s2s out a.test: ") && log.contains("<auth"),
        "--trace shows S2S: {log}"
    );
    let _ = bob.close().await;
    let _ = alice.close().await;
}

/// ejabberd 23.01 (`a.test`) and serve federate both ways with EXTERNAL. ejabberd resolves
/// peers with the system's getaddrinfo (after DNS SRV), so serve is `localhost` here (the
/// one name that resolves to loopback everywhere) and ejabberd's `outgoing_s2s_port` is
/// serve's S2S port. Our certificate names `localhost` by dNSName only (ejabberd 23.01's
/// S2S receiver crashes on an id-on-xmppAddr SAN, see s2s_check.rs) and has EKU clientAuth,
/// which ejabberd requires of a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_ejabberd_federate_both_ways_with_external() {
    let ours = Ours::for_domain("localhost");
    let s2s_port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        domain: "a.test".into(),
        extra_config: format!(
            "s2s_cafile: {:?}\noutgoing_s2s_port: {s2s_port}\noutgoing_s2s_families: [ipv4]\ns2s_dns_timeout: 2\ns2s_dns_retries: 1\n",
            ours.ca
        ),
        ..Default::default()
    }) else {
        return;
    };
    let serve = Serve::start_for(
        "localhost",
        &[
            "--cert".into(),
            ours.cert.clone(),
            "--key".into(),
            ours.key.clone(),
            "--s2s-listen".into(),
            format!("127.0.0.1:{s2s_port}"),
            "--s2s-peer".into(),
            format!("a.test={}", e.s2s_addr()),
            "--s2s-ca".into(),
            e.ca_path.display().to_string(),
        ],
    );
    let mut bob = Client::connect(
        "bob@localhost",
        "bob-pw",
        options(ours.ca_pem.as_bytes(), serve.c2s, "phone"),
    )
    .await
    .expect("bob logs in to serve");
    // Bind 2 (XEP-0386) makes serve's resource from the one asked for.
    let bob_jid = bob.jid().to_string();
    let alice_user = e.user(0);
    let mut alice = Client::connect(
        &alice_user.jid("a.test"),
        &alice_user.password,
        options(e.ca_pem(), e.c2s_addr(), "laptop"),
    )
    .await
    .expect("alice logs in to ejabberd");
    alice.send(&stanza::presence(None)).await.unwrap();
    bob.send(&stanza::presence(None)).await.unwrap();

    // serve -> ejabberd.
    bob.send(&stanza::message(
        "alice@a.test/laptop",
        "hello from serve",
        Some("m1"),
    ))
    .await
    .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut alice))
        .await
        .unwrap_or_else(|_| panic!("nothing for alice\n{}\n{}", serve.log(), e.log_tail(60)));
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob_jid.as_str(), "hello from serve")
    );
    // ejabberd -> serve.
    alice
        .send(&stanza::message(
            &from,
            "hello back from ejabberd",
            Some("m2"),
        ))
        .await
        .unwrap();
    let (from_alice, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut bob))
        .await
        .unwrap_or_else(|_| panic!("no reply\n{}\n{}", serve.log(), e.log_tail(60)));
    assert_eq!(
        (from_alice.as_str(), body.as_str()),
        ("alice@a.test/laptop", "hello back from ejabberd")
    );
    // The other way round on the links now up.
    alice
        .send(&stanza::message(&bob_jid, "second round", Some("m3")))
        .await
        .unwrap();
    let (_, body) = next_message(&mut bob).await;
    assert_eq!(body, "second round");
    bob.send(&stanza::message(&from_alice, "second answer", Some("m4")))
        .await
        .unwrap();
    let (_, body) = next_message(&mut alice).await;
    assert_eq!(body, "second answer");
    let log = serve.log();
    assert!(
        log.contains("s2s out a.test: authenticated (EXTERNAL)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated (EXTERNAL)"), "{log}");
    let _ = bob.close().await;
    let _ = alice.close().await;
}

// ---- serve's S2S listener against a scripted raw peer ------------------------------------

const S2S_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
xmlns:stream='http://etherx.jabber.org/streams' version='1.0' to='b.test'";

/// Reads until `needle` appears or the peer closes; returns the text.
async fn read_until<S: AsyncRead + Unpin>(s: &mut S, needle: &str) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    let _ = tokio::time::timeout(LIMIT, async {
        loop {
            if text.contains(needle) {
                return;
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    })
    .await;
    text
}

/// A serve with an S2S listener trusting our own CA (the raw peers' certificates); `{s2s}`
/// in `extra` is that listener's address.
fn serve_with_listener(ours: &Ours, extra: &[&str]) -> (Serve, SocketAddr) {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut args: Vec<String> = vec![
        "--cert".into(),
        ours.cert.clone(),
        "--key".into(),
        ours.key.clone(),
        "--s2s-listen".into(),
        format!("127.0.0.1:{port}"),
        "--s2s-ca".into(),
        ours.ca.clone(),
    ];
    let listener = format!("127.0.0.1:{port}");
    args.extend(extra.iter().map(|s| s.replace("{s2s}", &listener)));
    let serve = Serve::start(&args);
    (serve, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// A raw peer: header with `from`, STARTTLS, TLS presenting `cert`/`key`; returns the TLS
/// stream and the post-TLS features (after a second header with `from2`).
async fn raw_peer(
    addr: SocketAddr,
    ours: &Ours,
    cert: &str,
    key: &str,
    from: &str,
    from2: &str,
) -> (tokio_rustls::client::TlsStream<TcpStream>, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("{S2S_HEADER} from='{from}'><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until(&mut tcp, "<proceed").await;
    assert!(text.contains("<proceed"), "{text}");
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ours.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls::pki_types::ServerName::try_from("b.test").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(format!("{S2S_HEADER} from='{from2}'>").as_bytes())
        .await
        .unwrap();
    let features = read_until(&mut tls, "</stream:features>").await;
    (tls, features)
}

fn b64(s: &str) -> String {
    xmpp_handshake_core::sasl::base64::encode(s.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_refused_with_the_named_error() {
    let ours = Ours::new();
    let (serve, addr) = serve_with_listener(&ours, &[]);
    let (evil_cert, evil_key) = (ours.evil_cert.clone(), ours.evil_key.clone());

    // A good certificate for evil.test, claiming to be a.test: EXTERNAL is not offered,
    // and with nothing else to offer the stream ends (<not-authorized/>).
    let (mut tls, features) =
        raw_peer(addr, &ours, &evil_cert, &evil_key, "a.test", "a.test").await;
    assert!(!features.contains("EXTERNAL"), "{features}");
    assert!(features.contains("<not-authorized"), "{features}");
    let mut rest = [0u8; 64];
    assert_eq!(tls.read(&mut rest).await.unwrap_or(0), 0, "closed");
    drop(tls);

    // The same certificate for its own domain: EXTERNAL offered; an authzid naming
    // another domain (XEP-0178 §2) fails with <invalid-authzid/>.
    let (mut tls, features) =
        raw_peer(addr, &ours, &evil_cert, &evil_key, "evil.test", "evil.test").await;
    assert!(
        features.contains("<mechanism>EXTERNAL</mechanism>"),
        "{features}"
    );
    tls.write_all(
        format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{}</auth>",
            b64("a.test")
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until(&mut tls, "</failure>").await;
    assert!(text.contains("<invalid-authzid/>"), "{text}");
    drop(tls);

    // Stanzas before authentication: <not-authorized/>.
    let (mut tls, _) = raw_peer(addr, &ours, &evil_cert, &evil_key, "evil.test", "evil.test").await;
    tls.write_all(b"<message from='x@evil.test' to='bob@b.test'><body>spam</body></message>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:stream>").await;
    assert!(text.contains("<not-authorized"), "{text}");
    drop(tls);

    // Authenticated; then a restart header with another `from`: <improper-addressing/>.
    let (mut tls, _) = raw_peer(addr, &ours, &evil_cert, &evil_key, "evil.test", "evil.test").await;
    tls.write_all(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "<success").await;
    assert!(text.contains("<success"), "{text}");
    tls.write_all(format!("{S2S_HEADER} from='a.test'>").as_bytes())
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:stream>").await;
    assert!(text.contains("<improper-addressing"), "{text}");
    drop(tls);

    // Authenticated as evil.test, then a stanza from a.test: <invalid-from/>.
    let (mut tls, _) = raw_peer(addr, &ours, &evil_cert, &evil_key, "evil.test", "evil.test").await;
    tls.write_all(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "<success").await;
    assert!(text.contains("<success"), "{text}");
    tls.write_all(format!("{S2S_HEADER} from='evil.test'>").as_bytes())
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:features>").await;
    assert!(text.contains("<stream:features"), "{text}");
    tls.write_all(b"<message from='alice@a.test/x' to='bob@b.test'><body>forged</body></message>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:stream>").await;
    assert!(text.contains("<invalid-from"), "{text}\n{}", serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stanza_reaches_a_local_session() {
    let ours = Ours::new();
    let (serve, addr) = serve_with_listener(&ours, &[]);
    let mut bob = Client::connect(
        "bob@b.test",
        "bob-pw",
        options(ours.ca_pem.as_bytes(), serve.c2s, "phone"),
    )
    .await
    .expect("bob logs in to serve");
    let (mut tls, _) = raw_peer(
        addr,
        &ours,
        &ours.evil_cert,
        &ours.evil_key,
        "evil.test",
        "evil.test",
    )
    .await;
    tls.write_all(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>")
        .await
        .unwrap();
    assert!(read_until(&mut tls, "<success").await.contains("<success"));
    tls.write_all(format!("{S2S_HEADER} from='evil.test'>").as_bytes())
        .await
        .unwrap();
    read_until(&mut tls, "</stream:features>").await;
    tls.write_all(
        b"<message from='mallory@evil.test/x' to='bob@b.test' type='chat'><body>hi bob</body></message>",
    )
    .await
    .unwrap();
    let (from, body) = next_message(&mut bob).await;
    assert_eq!(
        (from.as_str(), body.as_str()),
        ("mallory@evil.test/x", "hi bob")
    );
    serve.wait_log("evil.test authenticated (EXTERNAL)").await;
}

/// The bounces (§8.3.3.15, §8.3.3.16) and the bounds of outgoing links: a closed port is
/// `<remote-server-not-found/>`, and so is a peer whose certificate names another domain;
/// a peer that accepts and never answers `<remote-server-timeout/>` after `--s2s-timeout`; meanwhile its queue is bounded
/// (`--s2s-queue-bytes`) and so is the number of links (`--s2s-max-peers`), both refused
/// with `<resource-constraint/>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_slow_domains_bounce() {
    let ours = Ours::new();
    // A port where nothing listens, and one that accepts and never answers.
    let closed = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let silent = StdListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let wrong = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wrong_addr = wrong.local_addr().unwrap();
    tokio::spawn(peer_with_certificate(
        wrong,
        ours.cert.clone(),
        ours.key.clone(),
    ));
    let (serve, _) = serve_with_listener(
        &ours,
        &[
            "--s2s-peer",
            &format!("gone.test={closed}"),
            "--s2s-peer",
            &format!("slow.test={silent_addr}"),
            "--s2s-peer",
            &format!("wrong.test={wrong_addr}"),
            "--s2s-timeout",
            "2",
            "--s2s-max-peers",
            "1",
            "--s2s-queue-bytes",
            "300",
        ],
    );
    let mut bob = Client::connect(
        "bob@b.test",
        "bob-pw",
        options(ours.ca_pem.as_bytes(), serve.c2s, "phone"),
    )
    .await
    .expect("bob logs in to serve");
    bob.send(&stanza::message("x@gone.test", "anyone?", Some("g1")))
        .await
        .unwrap();
    let bounce = next_containing(&mut bob, "id='g1'").await;
    assert!(
        bounce.contains("type='error'") && bounce.contains("<remote-server-not-found"),
        "{bounce}"
    );
    bob.send(&stanza::message("x@slow.test", "hello?", Some("s1")))
        .await
        .unwrap();
    // While the link to slow.test waits: its queue holds 300 bytes (one more stanza
    // over it is refused), and it is the one link allowed (another domain is refused).
    bob.send(&stanza::message(
        "x@slow.test",
        &"x".repeat(200),
        Some("s2"),
    ))
    .await
    .unwrap();
    let refused = next_containing(&mut bob, "id='s2'").await;
    assert!(refused.contains("<resource-constraint"), "{refused}");
    bob.send(&stanza::message("x@third.test", "and you?", Some("t1")))
        .await
        .unwrap();
    let refused = next_containing(&mut bob, "id='t1'").await;
    assert!(refused.contains("<resource-constraint"), "{refused}");
    let bounce = next_containing(&mut bob, "id='s1'").await;
    assert!(
        bounce.contains("type='error'") && bounce.contains("<remote-server-timeout"),
        "{bounce}"
    );
    // A peer whose certificate does not name the domain: not found either.
    bob.send(&stanza::message("x@wrong.test", "who are you?", Some("w1")))
        .await
        .unwrap();
    let bounce = next_containing(&mut bob, "id='w1'").await;
    assert!(bounce.contains("<remote-server-not-found"), "{bounce}");
    assert!(
        serve.log().contains("not valid for wrong.test") || serve.log().contains("wrong.test"),
        "{}",
        serve.log()
    );
    drop(silent);
}

/// At most 4 authenticated streams of one peer domain at once: the fifth is closed with
/// `<resource-constraint/>`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_per_peer_domain_are_bounded() {
    let ours = Ours::new();
    let (serve, addr) = serve_with_listener(&ours, &[]);
    let mut open = Vec::new();
    for i in 0..5 {
        let (mut tls, _) = raw_peer(
            addr,
            &ours,
            &ours.evil_cert,
            &ours.evil_key,
            "evil.test",
            "evil.test",
        )
        .await;
        tls.write_all(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>",
        )
        .await
        .unwrap();
        assert!(read_until(&mut tls, "<success").await.contains("<success"));
        tls.write_all(format!("{S2S_HEADER} from='evil.test'>").as_bytes())
            .await
            .unwrap();
        let text = read_until(&mut tls, "</stream:features>").await;
        if i < 4 {
            assert!(!text.contains("<resource-constraint"), "{text}");
            open.push(tls);
        } else {
            let text = text + &read_until(&mut tls, "</stream:stream>").await;
            assert!(
                text.contains("<resource-constraint"),
                "{text}\n{}",
                serve.log()
            );
        }
    }
}

/// A peer for `wrong.test` that presents `cert` (b.test's) after STARTTLS.
async fn peer_with_certificate(listener: tokio::net::TcpListener, cert: String, key: String) {
    let chain: Vec<_> = CertificateDer::pem_file_iter(&cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(&key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    while let Ok((mut tcp, _)) = listener.accept().await {
        read_until(&mut tcp, "<starttls").await;
        let _ = tcp
            .write_all(
                b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
xmlns:stream='http://etherx.jabber.org/streams' version='1.0' from='wrong.test' id='w'>\
<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
</stream:features><proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>",
            )
            .await;
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            read_until(&mut tls, "never").await;
        }
    }
}

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
//! Bidirectional streams (XEP-0288) with Prosody's `mod_s2s_bidi`: the same round trips
//! on one connection, whether serve opens it or Prosody does.
//!
//! Server Dialback (XEP-0220) as well: with Prosody both ways when neither side's
//! certificate can do EXTERNAL, with ejabberd after it refuses our certificate at
//! `<auth/>`, and a key that does not verify ends with `<not-authorized/>`.
//!
//! Hostile peers against serve's S2S listener (a scripted raw peer): a certificate for
//! another domain never earns EXTERNAL (nor dialback for that domain); dialback over
//! plaintext is refused; a `from` that changes between headers is
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
use xmpp_handshake_tests::{
    cli_binary, Ejabberd, EjabberdOptions, Jabberd2, Jabberd2Options, Prosody, ProsodyOptions,
};
use xmpp_handshake_tokio::{Client, ClientOptions, Trust};

const LIMIT: Duration = Duration::from_secs(20);

/// A CA and a leaf naming each of `domains` by dNSName only (one leaf per domain), EKU
/// serverAuth + clientAuth, or serverAuth only for the domains in `server_only` (as public
/// CAs issue them since 2026: no use as a TLS client certificate, so no SASL EXTERNAL):
/// `(ca_pem, [(leaf_pem, key_pem)])`.
fn dns_only_pki(
    ca_name: &str,
    domains: &[&str],
    server_only: &[&str],
) -> (String, Vec<(String, String)>) {
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
            leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            if !server_only.contains(domain) {
                leaf.extended_key_usages
                    .push(ExtendedKeyUsagePurpose::ClientAuth);
            }
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
        let (ca_pem, leaves) = dns_only_pki("serve test CA", &[domain, "evil.test"], &[]);
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

    /// Serves `b.test` with `cert`/`key`, accepting servers on `listen`, reaching `peer`
    /// (`DOMAIN=HOST:PORT`) by `--s2s-peer` and checking peers against `ca`.
    fn federating(cert: &str, key: &str, listen: String, peer: String, ca: String) -> Serve {
        Self::start(&[
            "--cert".into(),
            cert.into(),
            "--key".into(),
            key.into(),
            "--s2s-listen".into(),
            listen,
            "--s2s-peer".into(),
            peer,
            "--s2s-ca".into(),
            ca,
        ])
    }

    /// Bob logs in to this serve, trusting `ca_pem`.
    async fn bob(&self, ca_pem: &str) -> Client {
        Client::connect(
            "bob@b.test",
            "bob-pw",
            options(ca_pem.as_bytes(), self.c2s, "phone"),
        )
        .await
        .expect("bob logs in to serve")
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
    prosody_external_round_trips(Bidi::Off).await;
}

/// XEP-0288 with Prosody's `mod_s2s_bidi`, serve opening: serve's link asks for a
/// bidirectional stream, and Prosody's messages travel on it too: serve's listener never
/// authenticates a stream from `a.test`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_prosody_share_serves_bidirectional_stream() {
    prosody_external_round_trips(Bidi::ServeOpens).await;
}

/// XEP-0288 with Prosody's `mod_s2s_bidi`, Prosody opening: serve offers bidi, Prosody asks
/// for it, and serve's answers go back on Prosody's stream: serve opens no link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_prosody_share_prosodys_bidirectional_stream() {
    prosody_external_round_trips(Bidi::ProsodyOpens).await;
}

/// Bidirectional streams in a Prosody round trip, and who writes first.
#[derive(PartialEq)]
enum Bidi {
    /// Prosody without `mod_s2s_bidi`: one stream each way; Bob writes first.
    Off,
    /// `mod_s2s_bidi`; Bob writes first, so serve opens the stream.
    ServeOpens,
    /// `mod_s2s_bidi`; Alice writes first, so Prosody opens the stream.
    ProsodyOpens,
}

/// Bob (serve) writes and Alice (Prosody) answers, and Alice writes and Bob answers, in the
/// order `bidi` says.
async fn prosody_external_round_trips(bidi: Bidi) {
    let ours = Ours::new();
    let ip = xmpp_handshake_tests::own_loopback();
    let hosts = ours.files.write("hosts", &format!("{ip} b.test\n"));
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        domain: "a.test".into(),
        extra_global_config: format!(
            "s2s_secure_auth = true\ns2s_ssl = {{ cafile = {:?} }}\nunbound = {{ hoststxt = {hosts:?} }}\n",
            ours.ca
        ),
        extra_host_config: if bidi != Bidi::Off {
            "  modules_enabled = { \"s2s_bidi\" }\n".into()
        } else {
            String::new()
        },
        ..Default::default()
    }) else {
        return;
    };
    let serve = Serve::federating(
        &ours.cert,
        &ours.key,
        format!("{ip}:5269"),
        format!("a.test={}", p.s2s_addr()),
        p.ca_path.display().to_string(),
    );
    let mut bob = serve.bob(&ours.ca_pem).await;
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

    let why = || format!("{}\n{}", serve.log(), p.log_tail(60));
    if bidi == Bidi::ProsodyOpens {
        alice_writes_bob_answers(&mut alice, &mut bob, &bob_jid, "first", why).await;
        bob_writes_alice_answers(&mut bob, &mut alice, &bob_jid, "second", why).await;
    } else {
        bob_writes_alice_answers(&mut bob, &mut alice, &bob_jid, "first", why).await;
        alice_writes_bob_answers(&mut alice, &mut bob, &bob_jid, "second", why).await;
    }

    // Every stream authenticated with EXTERNAL, as the trace shows; with bidi only one.
    let log = serve.log();
    let (out, incoming) = (
        log.contains("s2s out a.test: authenticated (EXTERNAL)"),
        log.contains("a.test authenticated (EXTERNAL)"),
    );
    // Who sent `<bidi/>`: serve on its link, Prosody on its stream to serve.
    let asked_on = |prefix: &str| {
        log.lines()
            .any(|l| l.starts_with(prefix) && l.contains("<bidi xmlns='urn:xmpp:bidi'/>"))
    };
    let asked = (
        asked_on("serve: s2s out a.test:"),
        asked_on("serve: s2s in "),
    );
    let adopted = log.contains("a.test: bidirectional, our stanzas to it go here too");
    let expected = match bidi {
        // Prosody without mod_s2s_bidi offers none: serve never asks; Prosody never asks.
        Bidi::Off => (true, true, (false, false), false),
        Bidi::ServeOpens => (true, false, (true, false), false),
        Bidi::ProsodyOpens => (false, true, (false, true), true),
    };
    assert_eq!((out, incoming, asked, adopted), expected, "{log}");
    assert!(
        log.contains("serve: s2s ") && log.contains("<auth"),
        "--trace shows S2S: {log}"
    );
    let _ = bob.close().await;
    let _ = alice.close().await;
}

/// Bob writes to Alice and she answers (`round` names the texts); `why` explains a timeout.
async fn bob_writes_alice_answers(
    bob: &mut Client,
    alice: &mut Client,
    bob_jid: &str,
    round: &str,
    why: impl Fn() -> String,
) {
    let text = format!("{round} from b.test");
    bob.send(&stanza::message("alice@a.test/laptop", &text, None))
        .await
        .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(alice))
        .await
        .unwrap_or_else(|_| panic!("Alice got nothing\n{}", why()));
    assert_eq!((from.as_str(), body.as_str()), (bob_jid, text.as_str()));
    let answer = format!("{round} answer from a.test");
    alice
        .send(&stanza::message(&from, &answer, None))
        .await
        .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(bob))
        .await
        .unwrap_or_else(|_| panic!("Bob got no answer\n{}", why()));
    assert_eq!(
        (from.as_str(), body.as_str()),
        ("alice@a.test/laptop", answer.as_str())
    );
}

/// Alice writes to Bob and he answers.
async fn alice_writes_bob_answers(
    alice: &mut Client,
    bob: &mut Client,
    bob_jid: &str,
    round: &str,
    why: impl Fn() -> String,
) {
    let text = format!("{round} from a.test");
    alice
        .send(&stanza::message("bob@b.test", &text, None))
        .await
        .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(bob))
        .await
        .unwrap_or_else(|_| panic!("Bob got nothing\n{}", why()));
    assert_eq!(
        (from.as_str(), body.as_str()),
        ("alice@a.test/laptop", text.as_str())
    );
    let answer = format!("{round} answer from b.test");
    bob.send(&stanza::message(&from, &answer, None))
        .await
        .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(alice))
        .await
        .unwrap_or_else(|_| panic!("Alice got no answer\n{}", why()));
    assert_eq!((from.as_str(), body.as_str()), (bob_jid, answer.as_str()));
}

/// Server Dialback (XEP-0220) both ways between serve (`b.test`) and Prosody (`a.test`,
/// `mod_dialback`, `s2s_secure_auth = false`): Prosody does not trust our CA, so it offers
/// serve no EXTERNAL; its own certificate (from the CA serve trusts) has EKU serverAuth
/// only, so serve offers it no EXTERNAL either. serve's link authenticates by dialback
/// (Prosody receiving, serve authoritative: Prosody asks on its own stream to b.test),
/// Prosody's stream to serve too (serve receiving: it asks Prosody on a verify stream of
/// its own, routed by `--s2s-peer`, Prosody's certificate checked as a server's). A
/// message each way and the reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_prosody_federate_both_ways_by_dialback() {
    let (ca_pem, leaves) = dns_only_pki("dialback test CA", &["b.test", "a.test"], &["a.test"]);
    let files = Files::new();
    let ca = files.write("ca.pem", &ca_pem);
    let cert = files.write("b.pem", &leaves[0].0);
    let key = files.write("b.key", &leaves[0].1);
    let a_chain = files.write("a.pem", &format!("{}{}", leaves[1].0, ca_pem));
    let a_key = files.write("a.key", &leaves[1].1);
    let ip = xmpp_handshake_tests::own_loopback();
    let hosts = files.write("hosts", &format!("{ip} b.test\n"));
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        domain: "a.test".into(),
        extra_global_config: format!("unbound = {{ hoststxt = {hosts:?} }}\n"),
        extra_host_config: format!(
            "  modules_enabled = {{ \"dialback\" }}\n  ssl = {{ certificate = {a_chain:?}; key = {a_key:?} }}\n"
        ),
        ..Default::default()
    }) else {
        return;
    };
    let serve = Serve::federating(
        &cert,
        &key,
        format!("{ip}:5269"),
        format!("a.test={}", p.s2s_addr()),
        ca,
    );
    let mut bob = serve.bob(&ca_pem).await;
    let alice_user = p.user(0);
    let mut alice = Client::connect(
        &alice_user.jid("a.test"),
        &alice_user.password,
        options(ca_pem.as_bytes(), p.c2s_addr(), "laptop"),
    )
    .await
    .expect("alice logs in to prosody");
    alice.send(&stanza::presence(None)).await.unwrap();
    bob.send(&stanza::presence(None)).await.unwrap();

    bob.send(&stanza::message(
        "alice@a.test/laptop",
        "hello by dialback",
        Some("d1"),
    ))
    .await
    .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut alice))
        .await
        .unwrap_or_else(|_| panic!("no message\n{}\n{}", serve.log(), p.log_tail(60)));
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob.jid().to_string().as_str(), "hello by dialback")
    );
    alice
        .send(&stanza::message(&from, "dialback answer", Some("d2")))
        .await
        .unwrap();
    let (from_alice, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut bob))
        .await
        .unwrap_or_else(|_| panic!("no reply\n{}\n{}", serve.log(), p.log_tail(60)));
    assert_eq!(
        (from_alice.as_str(), body.as_str()),
        ("alice@a.test/laptop", "dialback answer")
    );
    // Alice first on the links now up, Bob answers.
    alice
        .send(&stanza::message("bob@b.test", "again", Some("d3")))
        .await
        .unwrap();
    let (_, body) = next_message(&mut bob).await;
    assert_eq!(body, "again");
    bob.send(&stanza::message(&from_alice, "again back", Some("d4")))
        .await
        .unwrap();
    let (_, body) = next_message(&mut alice).await;
    assert_eq!(body, "again back");

    // Both streams by dialback, nothing by EXTERNAL: serve's link got Prosody's `valid`
    // (Prosody asked serve, the authoritative server, on its own stream to b.test, before
    // or after that stream authenticated as Prosody's timing has it: only the second is
    // logged), and serve asked Prosody about Prosody's key (receiving).
    let log = serve.log();
    assert!(
        log.contains("s2s out a.test: authenticated (dialback)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated (dialback)"), "{log}");
    assert!(!log.contains("authenticated (EXTERNAL)"), "{log}");
    assert!(
        log.contains("s2s dialback a.test: key verdict Valid"),
        "{log}"
    );
    let _ = bob.close().await;
    let _ = alice.close().await;
}

/// jabberd2 2.7.0, whose s2s knows no SASL, only dialback: serve (`b.test`) and jabberd2
/// (`jabberd2.test`) exchange a message each way and the replies, both streams by
/// dialback. jabberd2's s2s finds b.test through a hosts file of the test's (bind-mounted
/// over `/etc/hosts` for that process only), on a loopback address of its own with port
/// 5269; serve reaches jabberd2 through `--s2s-peer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_jabberd2_federate_both_ways_by_dialback() {
    let ours = Ours::new();
    let ip = xmpp_handshake_tests::own_loopback();
    let hosts = ours.files.write("hosts", &format!("{ip} b.test\n"));
    let Some(j) = Jabberd2::start_or_skip(Jabberd2Options {
        s2s_hosts: Some(hosts.into()),
        ..Default::default()
    }) else {
        return;
    };
    let serve = Serve::federating(
        &ours.cert,
        &ours.key,
        format!("{ip}:5269"),
        format!("jabberd2.test={}", j.s2s_addr()),
        j.ca_path.display().to_string(),
    );
    let mut bob = serve.bob(&ours.ca_pem).await;
    let alice_user = j.user(0);
    let mut alice = Client::connect(
        &alice_user.jid("jabberd2.test"),
        &alice_user.password,
        options(j.ca_pem(), j.c2s_addr(), "laptop"),
    )
    .await
    .expect("alice logs in to jabberd2");
    alice.send(&stanza::presence(None)).await.unwrap();
    bob.send(&stanza::presence(None)).await.unwrap();
    let alice_jid = format!("{}/laptop", alice_user.jid("jabberd2.test"));
    bob.send(&stanza::message(&alice_jid, "hello jabberd2", Some("j1")))
        .await
        .unwrap();
    let (from, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut alice))
        .await
        .unwrap_or_else(|_| panic!("no message\n{}\n{}", serve.log(), j.log_tail(60)));
    assert_eq!(
        (from.as_str(), body.as_str()),
        (bob.jid().to_string().as_str(), "hello jabberd2")
    );
    alice
        .send(&stanza::message(&from, "hello back", Some("j2")))
        .await
        .unwrap();
    let (from_alice, body) = tokio::time::timeout(LIMIT * 2, next_message(&mut bob))
        .await
        .unwrap_or_else(|_| panic!("no reply\n{}\n{}", serve.log(), j.log_tail(60)));
    assert_eq!(
        (from_alice.as_str(), body.as_str()),
        (alice_jid.as_str(), "hello back")
    );
    let log = serve.log();
    assert!(
        log.contains("s2s out jabberd2.test: authenticated (dialback)"),
        "{log}"
    );
    assert!(
        log.contains("jabberd2.test authenticated (dialback)"),
        "{log}"
    );
    let _ = bob.close().await;
    let _ = alice.close().await;
}

/// ejabberd 23.01 (`a.test`) and serve federate both ways with EXTERNAL. ejabberd resolves
/// peers with the system's getaddrinfo (after DNS SRV), so serve is `localhost` here (the
/// one name that resolves to loopback everywhere) and ejabberd's `outgoing_s2s_port` is
/// serve's S2S port. Our certificate names `localhost` by dNSName and has EKU clientAuth,
/// which ejabberd requires of a client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_ejabberd_federate_both_ways_with_external() {
    let log = serve_and_ejabberd_round_trip(EjabberdRun::External).await;
    assert!(
        log.contains("s2s out a.test: authenticated (EXTERNAL)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated (EXTERNAL)"), "{log}");
}

/// The same with ejabberd's `mod_s2s_dialback` and without our CA in its `s2s_cafile`:
/// ejabberd offers EXTERNAL on every encrypted stream and refuses our certificate when
/// `<auth/>` arrives, so serve's link falls back to dialback on the same stream; ejabberd
/// verifies the key on a stream of its own to serve (the authoritative server). ejabberd's
/// own stream to serve may use EXTERNAL (serve trusts its CA).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_ejabberd_federate_both_ways_with_dialback_after_external_fails() {
    let log = serve_and_ejabberd_round_trip(EjabberdRun::Dialback).await;
    assert!(
        log.contains("s2s out a.test: authenticated (dialback)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated ("), "{log}");
}

/// With the certificate `serve` generates for itself (the same generator, written to
/// files): it carried an id-on-xmppAddr SAN for the bare domain, on which ejabberd
/// 23.01's S2S receiver crashed at `<auth/>` (xmpp 1.6.1 `get_domains_from_san` returns a
/// binary inside `lists:flatmap`); without it EXTERNAL goes through both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_ejabberd_federate_with_serves_generated_certificate() {
    let log = serve_and_ejabberd_round_trip(EjabberdRun::GeneratedCertificate).await;
    assert!(
        log.contains("s2s out a.test: authenticated (EXTERNAL)"),
        "{log}"
    );
    assert!(log.contains("a.test authenticated (EXTERNAL)"), "{log}");
}

/// How ejabberd and serve are set up for [`serve_and_ejabberd_round_trip`].
#[derive(PartialEq)]
enum EjabberdRun {
    /// Our CA in ejabberd's `s2s_cafile`; our certificate by dNSName only.
    External,
    /// `mod_s2s_dialback`, our CA not trusted.
    Dialback,
    /// Our CA trusted; the certificate made by serve's own generator.
    GeneratedCertificate,
}

/// serve (`localhost`) and ejabberd (`a.test`) exchange a message each way and the
/// replies. Returns serve's log (empty when ejabberd is not available here).
async fn serve_and_ejabberd_round_trip(run: EjabberdRun) -> String {
    let mut ours = Ours::for_domain("localhost");
    if run == EjabberdRun::GeneratedCertificate {
        let generated = xmpp_handshake_tests::TestPki::generate("localhost").unwrap();
        ours.ca = ours.files.write("generated-ca.pem", &generated.ca_pem);
        ours.cert = ours.files.write("generated.pem", &generated.chain_pem());
        ours.key = ours.files.write("generated.key", &generated.leaf_key_pem);
        ours.ca_pem = generated.ca_pem;
    }
    let s2s_port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // ejabberd's `modules:` section is the last the harness writes: an indented first
    // line joins it.
    let trust_or_dialback = match run {
        EjabberdRun::Dialback => "  mod_s2s_dialback: {}\n".to_string(),
        _ => format!("s2s_cafile: {:?}\n", ours.ca),
    };
    let Some(e) = Ejabberd::start_or_skip(EjabberdOptions {
        domain: "a.test".into(),
        extra_config: format!(
            "{trust_or_dialback}outgoing_s2s_port: {s2s_port}\noutgoing_s2s_families: [ipv4]\ns2s_dns_timeout: 2\ns2s_dns_retries: 1\n"
        ),
        ..Default::default()
    }) else {
        return String::new();
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
    let _ = bob.close().await;
    let _ = alice.close().await;
    serve.log()
}

// ---- serve's S2S listener against a scripted raw peer ------------------------------------

/// A peer server's header, binding `db` for dialback as servers do (XEP-0220 §2.1.1).
const S2S_HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
version='1.0' to='b.test'";

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
    // dialback is; a dialback key for a.test is refused without asking a.test
    // (<not-authorized/>): the certificate contradicts the claim.
    let (mut tls, features) =
        raw_peer(addr, &ours, &evil_cert, &evil_key, "a.test", "a.test").await;
    assert!(!features.contains("EXTERNAL"), "{features}");
    assert!(
        features.contains("urn:xmpp:features:dialback"),
        "{features}"
    );
    tls.write_all(b"<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:stream>").await;
    assert!(text.contains("<not-authorized"), "{text}");
    assert!(text.contains("another domain"), "{text}");
    let mut rest = [0u8; 64];
    assert_eq!(tls.read(&mut rest).await.unwrap_or(0), 0, "closed");
    drop(tls);

    // Dialback without TLS: refused by default (<policy-violation/>), never verified.
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!(
            "{S2S_HEADER} from='a.test'><db:result from='a.test' to='b.test'>0123456789abcdef</db:result>"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let text = read_until(&mut tcp, "</stream:stream>").await;
    assert!(!text.contains("urn:xmpp:features:dialback"), "{text}");
    assert!(text.contains("<policy-violation"), "{text}");
    assert!(text.contains("dialback only over TLS"), "{text}");
    drop(tcp);

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
    assert!(!serve.log().contains("key verdict"), "nobody was asked");

    // With --s2s-no-dialback the same claim has nothing to try: the stream ends at once.
    let (_strict, addr) = serve_with_listener(&ours, &["--s2s-no-dialback"]);
    let (_, features) = raw_peer(addr, &ours, &evil_cert, &evil_key, "a.test", "a.test").await;
    assert!(
        !features.contains("urn:xmpp:features:dialback"),
        "{features}"
    );
    assert!(features.contains("<not-authorized"), "{features}");
}

/// A dialback key that does not verify ends with `<not-authorized/>`: a raw peer with a
/// certificate for a.test from a CA serve does not trust (TLS goes on, EXTERNAL is not
/// offered) claims a.test with a made-up key; serve asks a.test's authoritative server, a
/// real Prosody, which calls the key invalid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialback_key_that_does_not_verify_is_not_authorized() {
    let ours = Ours::new();
    let Some(p) = Prosody::start_or_skip(ProsodyOptions {
        domain: "a.test".into(),
        extra_host_config: "  modules_enabled = { \"dialback\" }\n".into(),
        ..Default::default()
    }) else {
        return;
    };
    let anchors = format!("{}{}", ours.ca_pem, String::from_utf8_lossy(p.ca_pem()));
    let anchors = ours.files.write("anchors.pem", &anchors);
    let addr = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let serve = Serve::start(&[
        "--cert".into(),
        ours.cert.clone(),
        "--key".into(),
        ours.key.clone(),
        "--s2s-listen".into(),
        addr.to_string(),
        "--s2s-ca".into(),
        anchors,
        "--s2s-peer".into(),
        format!("a.test={}", p.s2s_addr()),
    ]);
    let (_, stranger) = dns_only_pki("a CA nobody trusts", &["a.test"], &[]);
    let cert = ours.files.write("stranger.pem", &stranger[0].0);
    let key = ours.files.write("stranger.key", &stranger[0].1);
    let (mut tls, features) = raw_peer(addr, &ours, &cert, &key, "a.test", "a.test").await;
    assert!(!features.contains("EXTERNAL"), "{features}");
    assert!(
        features.contains("urn:xmpp:features:dialback"),
        "{features}"
    );
    tls.write_all(b"<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
        .await
        .unwrap();
    let text = read_until(&mut tls, "</stream:stream>").await;
    assert!(text.contains("type='invalid'"), "{text}\n{}", serve.log());
    assert!(text.contains("<not-authorized"), "{text}");
    assert!(
        serve
            .log()
            .contains("s2s dialback a.test: key verdict Invalid"),
        "{}",
        serve.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stanza_reaches_a_local_session() {
    let ours = Ours::new();
    let (serve, addr) = serve_with_listener(&ours, &[]);
    let mut bob = serve.bob(&ours.ca_pem).await;
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
    let mut bob = serve.bob(&ours.ca_pem).await;
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

//! The demo page (wasm/www + the built wasm package) in real headless Chromium, driven over
//! WebDriver, against real servers on loopback:
//!
//! (a) RFC 7395 WebSocket mode to Prosody's mod_websocket, with the full package and with
//!     the WebSocket-only one;
//! (b) tunnel mode through the bridge to Prosody's C2S port, STARTTLS and TLS inside the
//!     page, the harness CA as the pinned anchor;
//! (c) both modes against `serve --web` (the receiving entity in process), with the form as
//!     the page fills it from /config.json;
//! (d) trust on first use, then a server with another key: the changed-key error with both
//!     fingerprints, and "accept new key";
//! (e) tunnel mode to Prosody serving Let's Encrypt-shaped chains (RSA-4096 → RSA-2048 →
//!     RSA-2048 leaf; P-384 → P-384 → P-256 leaf), every signature verified by the
//!     browser's WebCrypto; a chain with an altered signature refused before any XMPP byte.
//!
//! (a) to (d) each log in and exchange a message both ways with a second client (our CLI's
//! client code over TCP + STARTTLS). Screenshots go to
//! `$CARGO_TARGET_DIR/artifacts/browser/`.
//!
//! The wasm packages come from `wasm/build` (tests/run builds them first) in `wasm/pkg` and
//! `wasm/pkg-websocket`, or from `XMPP_HANDSHAKE_WASM_PKG` and
//! `XMPP_HANDSHAKE_WASM_WEBSOCKET_PKG`. Without it, or without Chromium, the suite skips unless
//! `XMPP_HANDSHAKE_REQUIRE_SERVERS=1`.

#[path = "interop_support/mod.rs"]
mod interop_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use xmpp_handshake_core::stanza;
use xmpp_handshake_host::bridge::{Bridge, BridgeConfig, Target};
use xmpp_handshake_host::certs::ServerIdentity;
use xmpp_handshake_host::client::{self, ClientTrust, LoggedIn, Login};
use xmpp_handshake_host::router::message_body;
use xmpp_handshake_host::serve::{ServeConfig, Server};
use xmpp_handshake_host::tls_info::{fingerprint, TlsCell};
use xmpp_handshake_host::transcript::{Side, Transcript};
use xmpp_handshake_host::web::{self, WebConfig, WebServer, XmppEndpoint, PACKAGE_MODULE};
use xmpp_handshake_tests::browser::Browser;
use xmpp_handshake_tests::field_chains::{pem_certificates, FieldPki, Shape};
use xmpp_handshake_tests::{servers_required, ExtraHost, Prosody, ProsodyOptions, User};

use interop_support::How;

/// Each wait in the page (a login includes PBKDF2 in wasm, 4096–10000 iterations).
const STEP: Duration = Duration::from_secs(30);

/// One Chromium at a time: the machine has few cores and the logins are CPU-bound.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The built package, or `None` (skip) / a panic (required) when it is missing.
fn package() -> Option<PathBuf> {
    package_in("XMPP_HANDSHAKE_WASM_PKG", "wasm/pkg")
}

/// The WebSocket-only package (`wasm/build` writes it to `wasm/pkg-websocket`, or
/// `XMPP_HANDSHAKE_WASM_WEBSOCKET_PKG`): RFC 7395 only, no TLS code in the page.
fn websocket_only_package() -> Option<PathBuf> {
    package_in("XMPP_HANDSHAKE_WASM_WEBSOCKET_PKG", "wasm/pkg-websocket")
}

fn package_in(variable: &str, default: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(default));
    if dir.join(PACKAGE_MODULE).is_file() {
        return Some(dir);
    }
    let message = format!(
        "no {PACKAGE_MODULE} in {}: build it with wasm/build (tests/run does)",
        dir.display()
    );
    if servers_required() {
        panic!("{message}");
    }
    eprintln!("SKIPPED (browser test): {message}");
    None
}

/// The page and package over HTTP, with a bridge allowing `allow` and, if given, RFC 7395.
async fn web_server(pkg: &Path, allow: Vec<Target>, xmpp: Option<XmppEndpoint>) -> WebServer {
    let config = match xmpp {
        Some(x) => {
            let c2s = allow.first().map(|t| format!("{t}")).unwrap_or_default();
            let addr: SocketAddr = c2s.parse().expect("an IP target first");
            let mut c = WebConfig::for_serve(
                repo().join("wasm/www"),
                pkg.to_path_buf(),
                x,
                addr,
                &["alice".to_string(), "bob".to_string()],
            );
            c.bridge = Bridge::new(BridgeConfig::new(allow));
            c
        }
        None => WebConfig {
            page_dir: repo().join("wasm/www"),
            pkg_dir: pkg.to_path_buf(),
            bridge: Bridge::new(BridgeConfig::new(allow)),
            xmpp: None,
            page_config: json!({}),
        },
    };
    WebServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), config)
        .await
        .unwrap()
}

fn target(addr: SocketAddr) -> Target {
    Target::parse(&addr.to_string()).unwrap()
}

/// Opens the page and waits for the package.
async fn open_page(browser: &Browser, url: &str) {
    browser.client().goto(url).await.unwrap();
    let state = browser
        .wait_for("the wasm package", "document.body.dataset.wasm", STEP)
        .await;
    if state != json!("ready") {
        let why = browser
            .js(
                "return document.getElementById('package-info').textContent;",
                vec![],
            )
            .await;
        panic!("the page did not load the package: {why}");
    }
}

/// Clicks Connect and waits until the page is online; returns the bound JID.
async fn connect(browser: &Browser) -> String {
    browser.click("connect").await;
    browser
        .wait_for(
            "the login",
            "document.body.dataset.state === 'online' || document.body.dataset.state === 'error'",
            STEP,
        )
        .await;
    let state = browser
        .js("return document.body.dataset.state;", vec![])
        .await;
    if state != json!("online") {
        let error = browser
            .js(
                "return document.getElementById('error').innerText + ' / ' + [...document.querySelectorAll('#transcript li')].map(l => l.innerText).join('\\n');",
                vec![],
            )
            .await;
        browser.screenshot("login-failed").await;
        panic!(
            "login failed in the page: {}",
            error.as_str().unwrap_or_default()
        );
    }
    let jid = browser
        .js(
            "return document.getElementById('bound-jid').textContent;",
            vec![],
        )
        .await;
    jid.as_str().unwrap().to_string()
}

/// `step:state` of every timeline row.
async fn timeline(browser: &Browser) -> Vec<String> {
    let v = browser
        .js(
            "return [...document.querySelectorAll('#timeline li')].map(l => l.dataset.step + ':' + l.dataset.state);",
            vec![],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// The details a timeline row shows.
async fn row(browser: &Browser, step: &str) -> String {
    browser
        .js(
            "return document.querySelector(`#timeline li[data-step=${arguments[0]}] .detail`).innerText;",
            vec![json!(step)],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The TLS row's details (version, suite, certificate fingerprint, trust), as shown.
async fn tls_row(browser: &Browser) -> String {
    row(browser, "tls").await
}

/// The page sends to `peer`, `peer` answers; both arrive with the right sender.
async fn exchange_with(browser: &Browser, page_jid: &str, peer: &mut LoggedIn, tag: &str) {
    let to_peer = format!("from the browser ({tag})");
    browser.fill("msg-to", &peer.jid).await;
    browser.fill("msg-body", &to_peer).await;
    browser.click("send").await;
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let element = tokio::time::timeout_at(deadline, peer.session.next_stanza())
            .await
            .expect("the peer receives the page's message in time")
            .unwrap()
            .expect("the peer's stream is open");
        if let Some((from, body)) = message_body(element.raw()) {
            if body == to_peer {
                assert_eq!(from.as_deref(), Some(page_jid), "{element}");
                break;
            }
        }
    }
    let to_page = format!("to the browser ({tag}) <&> \u{2713}");
    peer.session
        .send(&stanza::message(page_jid, &to_page, Some("b1")))
        .await
        .unwrap();
    let arrived = format!(
        "[...document.querySelectorAll('#messages .msg.in')].some(m => m.querySelector('.body').textContent === {} && m.querySelector('.who').textContent === {})",
        json!(to_page),
        json!(peer.jid)
    );
    browser
        .wait_for("the peer's message in the page", &arrived, STEP)
        .await;
}

async fn disconnect(browser: &Browser) {
    browser.click("disconnect").await;
    browser
        .wait_for(
            "the page to disconnect",
            "document.body.dataset.state === 'closed'",
            STEP,
        )
        .await;
}

fn assert_steps(steps: &[String], expected: &[(&str, &str)]) {
    for (step, state) in expected {
        let want = format!("{step}:{state}");
        assert!(steps.contains(&want), "{want} not in {steps:?}");
    }
}

async fn prosody_peer(p: &Prosody, resource: &str) -> LoggedIn {
    let bob = p.user(1).clone();
    interop_support::login(p, &bob.name, &bob.password, resource, How::default())
        .await
        .ok()
}

#[tokio::test]
async fn a_websocket_mode_to_prosody_mod_websocket() {
    let Some(pkg) = package() else { return };
    websocket_mode_to_prosody(&pkg, "a-prosody-websocket", "a").await;
}

/// The WebSocket-only bundle (RFC 7395, TLS by the browser, no TLS code in the page) as
/// the demo page loads it: the same login and messages as with the full package.
#[tokio::test]
async fn a_websocket_only_package_to_prosody_mod_websocket() {
    let Some(pkg) = websocket_only_package() else {
        return;
    };
    websocket_mode_to_prosody(&pkg, "a-prosody-websocket-only", "a-ws-only").await;
}

/// The page in WebSocket mode with the package in `pkg` logs in to Prosody's
/// mod_websocket, exchanges a message with a second client, and disconnects.
async fn websocket_mode_to_prosody(pkg: &Path, screenshots: &str, tag: &str) {
    let Some(prosody) = Prosody::shared() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start_or_skip(screenshots, 1440, 1200).await else {
        return;
    };
    let web = web_server(pkg, Vec::new(), None).await;
    let alice = prosody.user(0).clone();
    let url = format!(
        "{}?mode=websocket&ws={}&jid={}",
        web.url(),
        prosody.websocket_url(),
        alice.jid(&prosody.domain)
    );
    open_page(&browser, &url).await;
    browser.fill("password", &alice.password).await;
    let jid = connect(&browser).await;
    assert!(
        jid.starts_with(&format!("{}/", alice.jid(&prosody.domain))),
        "{jid}"
    );
    let steps = timeline(&browser).await;
    assert_steps(
        &steps,
        &[
            ("connect", "done"),
            ("header", "done"),
            ("features", "done"),
            ("starttls", "skipped"),
            ("proceed", "skipped"),
            ("tls", "skipped"),
            ("sasl", "done"),
            ("bind", "done"),
        ],
    );
    let transcript = browser
        .js(
            "return document.getElementById('transcript').innerText;",
            vec![],
        )
        .await;
    let transcript = transcript.as_str().unwrap();
    assert!(!transcript.contains("starttls"), "{transcript}");
    assert!(
        !transcript.contains(&alice.password),
        "password in the transcript"
    );

    let mut bob = prosody_peer(prosody, &format!("cli-{tag}")).await;
    exchange_with(&browser, &jid, &mut bob, tag).await;
    browser.screenshot("online").await;
    disconnect(&browser).await;
    browser.close().await;
}

#[tokio::test]
async fn b_tunnel_mode_with_in_page_starttls_to_prosody_c2s() {
    let Some(pkg) = package() else { return };
    let Some(prosody) = Prosody::shared() else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start_or_skip("b-prosody-tunnel", 1440, 1200).await else {
        return;
    };
    let c2s = prosody.c2s_addr();
    let web = web_server(&pkg, vec![target(c2s)], None).await;
    let alice = prosody.user(0).clone();
    let url = format!(
        "{}?mode=tunnel&target={c2s}&jid={}",
        web.url(),
        alice.jid(&prosody.domain)
    );
    open_page(&browser, &url).await;
    browser.choose("trust-ca").await;
    browser
        .fill("ca-pem", std::str::from_utf8(prosody.ca_pem()).unwrap())
        .await;
    browser.fill("password", &alice.password).await;
    let jid = connect(&browser).await;
    assert!(
        jid.starts_with(&format!("{}/", alice.jid(&prosody.domain))),
        "{jid}"
    );
    let steps = timeline(&browser).await;
    assert_steps(
        &steps,
        &[
            ("connect", "done"),
            ("header", "done"),
            ("features", "done"),
            ("starttls", "done"),
            ("proceed", "done"),
            ("tls", "done"),
            ("restart", "done"),
            ("sasl", "done"),
            ("bind", "done"),
        ],
    );
    // The TLS row names the suite and the certificate Prosody really presented.
    let tls = tls_row(&browser).await;
    let leaf = fingerprint(&prosody.pki.leaf_der);
    assert!(
        tls.to_ascii_uppercase().contains(&leaf),
        "TLS row {tls:?} lacks the leaf fingerprint {leaf}"
    );
    assert!(tls.contains("TLS 1.3") || tls.contains("1.3"), "{tls}");
    assert!(tls.contains("AES"), "{tls}");

    let mut bob = prosody_peer(prosody, "cli-b").await;
    exchange_with(&browser, &jid, &mut bob, "b").await;
    browser.screenshot("online").await;
    disconnect(&browser).await;
    browser.close().await;
}

/// A receiving entity like `serve` (users alice and bob), with its own certificate.
async fn serve(identity: &ServerIdentity) -> (Server, ServeConfig) {
    let mut store = xmpp_handshake_core::sasl::MemoryStore::new();
    store.add_password("alice", "alice-pw", 4096, &mut rand_core::OsRng);
    store.add_password("bob", "bob-pw", 4096, &mut rand_core::OsRng);
    let config = ServeConfig {
        log_connections: true,
        ..ServeConfig::new("example.com", store, identity.clone())
    };
    let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)), config.clone())
        .await
        .unwrap();
    (server, config)
}

async fn serve_peer(server: &Server, identity: &ServerIdentity, resource: &str) -> LoggedIn {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(identity.ca_der.clone().unwrap()).unwrap();
    let trust = ClientTrust::anchors("example.com", roots).unwrap();
    let transport = client::connect_tcp("127.0.0.1", server.addr.port())
        .await
        .unwrap();
    let cell = TlsCell::default();
    let mut transcript = Transcript::new(Side::Initiating, cell.clone());
    let login = Login::new(&format!("bob@example.com/{resource}"), "bob-pw").unwrap();
    client::login(transport, &login, &trust, cell, &mut transcript)
        .await
        .unwrap()
}

#[tokio::test]
async fn c_both_modes_against_serve_web() {
    let Some(pkg) = package() else { return };
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start_or_skip("c-serve-web", 1440, 1200).await else {
        return;
    };
    let identity = ServerIdentity::generate("example.com").unwrap();
    let (server, config) = serve(&identity).await;
    let xmpp = XmppEndpoint {
        config,
        registry: server.registry.clone(),
    };
    let web = web_server(&pkg, web::own_targets(server.addr), Some(xmpp)).await;

    // What a newcomer does: open the page, type the password, connect. The rest of the
    // form (JID, endpoint, bridge target, CA) comes from /config.json.
    open_page(&browser, &web.url()).await;
    let jid_field = browser
        .js("return document.getElementById('jid').value;", vec![])
        .await;
    assert_eq!(jid_field, json!("alice@example.com"));
    browser.screenshot("start").await;
    browser.fill("password", "alice-pw").await;
    let jid = connect(&browser).await;
    assert!(jid.starts_with("alice@example.com/"), "{jid}");
    assert_steps(
        &timeline(&browser).await,
        &[("tls", "skipped"), ("sasl", "done"), ("bind", "done")],
    );
    let mut bob = serve_peer(&server, &identity, "cli-c").await;
    exchange_with(&browser, &jid, &mut bob, "c websocket").await;
    browser.screenshot("websocket").await;
    disconnect(&browser).await;

    // Tunnel mode: STARTTLS to serve's C2S port through /bridge, the generated CA pinned.
    browser.choose("mode-tunnel").await;
    let jid = connect(&browser).await;
    assert_steps(
        &timeline(&browser).await,
        &[
            ("starttls", "done"),
            ("proceed", "done"),
            ("tls", "done"),
            ("sasl", "done"),
            ("bind", "done"),
        ],
    );
    let tls = tls_row(&browser).await;
    assert!(
        tls.to_ascii_uppercase()
            .contains(&identity.leaf_fingerprint()),
        "{tls}"
    );
    // serve offers -PLUS: the page binds SCRAM to the TLS channel it negotiated itself.
    let sasl = row(&browser, "sasl").await;
    assert!(sasl.contains("-PLUS"), "{sasl}");
    exchange_with(&browser, &jid, &mut bob, "c tunnel").await;
    browser.screenshot("tunnel").await;
    disconnect(&browser).await;
    browser.close().await;
}

#[tokio::test]
async fn d_trust_on_first_use_then_a_changed_key() {
    let Some(pkg) = package() else { return };
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start_or_skip("d-tofu", 1440, 1200).await else {
        return;
    };
    // Two servers for the same domain with different keys: "the server got a new key".
    let first_id = ServerIdentity::generate("example.com").unwrap();
    let second_id = ServerIdentity::generate("example.com").unwrap();
    assert_ne!(first_id.leaf_fingerprint(), second_id.leaf_fingerprint());
    let (first, config) = serve(&first_id).await;
    let (second, _) = serve(&second_id).await;
    let xmpp = XmppEndpoint {
        config,
        registry: first.registry.clone(),
    };
    let web = web_server(
        &pkg,
        vec![target(first.addr), target(second.addr)],
        Some(xmpp),
    )
    .await;
    open_page(
        &browser,
        &format!("{}?mode=tunnel&trust=tofu&target={}", web.url(), first.addr),
    )
    .await;
    browser.choose("trust-tofu").await;
    browser.fill("password", "alice-pw").await;

    // First use: accepted and pinned.
    connect(&browser).await;
    let tls = tls_row(&browser).await;
    assert!(
        tls.to_ascii_uppercase()
            .contains(&first_id.leaf_fingerprint()),
        "{tls}"
    );
    assert!(tls.contains("first use"), "{tls}");
    browser.screenshot("first-use").await;
    disconnect(&browser).await;

    // Same key again: accepted silently.
    connect(&browser).await;
    let tls = tls_row(&browser).await;
    assert!(tls.contains("matches the pinned key"), "{tls}");
    disconnect(&browser).await;

    // Another key for the same domain: the changed-key error with both fingerprints.
    browser.fill("target", &second.addr.to_string()).await;
    browser.click("connect").await;
    browser
        .wait_for(
            "the changed-key error",
            "!document.getElementById('pin-changed').hidden",
            STEP,
        )
        .await;
    let shown = browser
        .js(
            "return [document.getElementById('pin-domain').textContent, document.getElementById('pin-old').textContent, document.getElementById('pin-new').textContent];",
            vec![],
        )
        .await;
    let shown: Vec<String> = serde_json::from_value(shown).unwrap();
    assert_eq!(shown[0], "example.com");
    assert_eq!(shown[1].to_ascii_uppercase(), first_id.leaf_fingerprint());
    assert_eq!(shown[2].to_ascii_uppercase(), second_id.leaf_fingerprint());
    assert_steps(
        &timeline(&browser).await,
        &[("tls", "failed"), ("sasl", "pending")],
    );
    assert!(
        second.registry.online().is_empty(),
        "nothing may log in past a changed key"
    );
    browser.screenshot("changed-key").await;

    // The user accepts the new key: connected, and the new key is the pin from now on.
    browser.click("accept-key").await;
    browser
        .wait_for(
            "the login with the accepted key",
            "document.body.dataset.state === 'online'",
            STEP,
        )
        .await;
    assert_eq!(second.registry.online().len(), 1);
    disconnect(&browser).await;
    connect(&browser).await;
    disconnect(&browser).await;
    browser.close().await;
}

// ---- (e) field-shaped chains: every signature through the browser's WebCrypto -----------

/// The page's transcript, `dir text` per line.
async fn transcript_lines(browser: &Browser) -> Vec<String> {
    let v = browser
        .js(
            "return [...document.querySelectorAll('#transcript li')].map(l => l.className + ' ' + l.querySelector('.text').textContent);",
            vec![],
        )
        .await;
    serde_json::from_value(v).unwrap()
}

/// `chain_pem` with the last byte of the first intermediate's signature flipped: a link
/// whose signature no longer verifies, everything else intact.
fn with_tampered_intermediate(chain_pem: &str) -> String {
    let mut chain = pem_certificates(chain_pem).expect("the generator wrote PEM");
    assert!(chain.len() >= 2, "leaf and intermediate");
    // A certificate ends with its signature BIT STRING.
    *chain[1].last_mut().unwrap() ^= 0x01;
    chain
        .iter()
        .map(|der| {
            let b64 = xmpp_handshake_core::sasl::base64::encode(der);
            let lines: Vec<&str> = b64
                .as_bytes()
                .chunks(64)
                .map(|l| std::str::from_utf8(l).unwrap())
                .collect();
            format!(
                "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
                lines.join("\n")
            )
        })
        .collect()
}

/// The tunnel against Prosody serving Let's Encrypt-shaped chains (made with openssl at
/// test time, `xmpp_handshake_tests::field_chains`), the root as the page's `ca`: an
/// RSA-2048 leaf under an RSA-2048 intermediate and an RSA-4096 root (TLS 1.3: RSA-PSS
/// CertificateVerify), and a P-256 leaf under a P-384 intermediate and root
/// (ecdsa-with-SHA384) log in; the ECDSA chain with its intermediate's signature altered is
/// refused with the typed certificate error, and the page sends no XMPP byte after the
/// TLS handshake. The page has no RSA or P-384 arithmetic: WebCrypto verifies.
#[tokio::test]
async fn e_tunnel_field_chains_verified_by_webcrypto() {
    let Some(pkg) = package() else { return };
    let pki = FieldPki::shared().expect("openssl makes the chains");
    let serve =
        |shape: Shape, domain: &str| pki.serve(shape, domain).expect("openssl issues a leaf");
    let rsa = serve(Shape::Rsa, "rsa.browser.test");
    let ecdsa = serve(Shape::Ecdsa, "ecdsa.browser.test");
    let mut tampered = serve(Shape::Ecdsa, "tampered.browser.test");
    tampered.chain_pem = with_tampered_intermediate(&tampered.chain_pem);
    let password = "field-browser-1";
    let hosts = [&rsa, &ecdsa, &tampered]
        .into_iter()
        .map(|s| ExtraHost {
            domain: s.domain.clone(),
            chain_pem: s.chain_pem.clone(),
            key_pem: s.key_pem.clone(),
            users: vec![User::new("alice", password)],
        })
        .collect();
    let Some(prosody) = Prosody::start_or_skip(ProsodyOptions {
        domain: "browser.test".into(),
        extra_hosts: hosts,
        ..ProsodyOptions::default()
    }) else {
        return;
    };
    let _one = ONE_BROWSER.lock().await;
    let Some(browser) = Browser::start_or_skip("e-field-chains", 1440, 1200).await else {
        return;
    };
    let c2s = prosody.c2s_addr();
    let web = web_server(&pkg, vec![target(c2s)], None).await;
    let open = |domain: &str, anchor: &str| {
        let url = format!("{}?mode=tunnel&target={c2s}&jid=alice@{domain}", web.url());
        let anchor = anchor.to_string();
        let browser = &browser;
        async move {
            open_page(browser, &url).await;
            browser.choose("trust-ca").await;
            browser.fill("ca-pem", &anchor).await;
            browser.fill("password", password).await;
        }
    };

    for (served, what) in [(&rsa, "rsa"), (&ecdsa, "ecdsa")] {
        let anchor = &served.shape.anchors(&pki)[0].pem;
        open(&served.domain, anchor).await;
        let jid = connect(&browser).await;
        assert!(
            jid.starts_with(&format!("alice@{}/", served.domain)),
            "{jid}"
        );
        let tls = tls_row(&browser).await;
        assert!(
            tls.to_ascii_uppercase()
                .contains(&fingerprint(&served.chain_der()[0])),
            "{what}: {tls}"
        );
        browser.screenshot(what).await;
        disconnect(&browser).await;
    }

    // The altered link: refused after the handshake, before any XMPP byte.
    open(&tampered.domain, &tampered.shape.anchors(&pki)[0].pem).await;
    browser.click("connect").await;
    browser
        .wait_for(
            "the refusal",
            "document.body.dataset.state === 'error' || document.body.dataset.state === 'online'",
            STEP,
        )
        .await;
    let (state, kind, message) = {
        let v = browser
            .js(
                "return [document.body.dataset.state, document.getElementById('error').dataset.kind, document.getElementById('error').innerText];",
                vec![],
            )
            .await;
        let v: Vec<String> = serde_json::from_value(v).unwrap();
        (v[0].clone(), v[1].clone(), v[2].clone())
    };
    browser.screenshot("tampered").await;
    assert_eq!(state, "error", "{message}");
    // The verdict a synchronous check gives for a link that does not verify
    // (`PkixOutcome::BadSignature`), typed as `certificate`.
    assert_eq!(kind, "certificate", "{message}");
    assert!(
        message.contains("a signature in the chain does not verify"),
        "{message}"
    );
    assert_steps(
        &timeline(&browser).await,
        &[("tls", "failed"), ("sasl", "pending")],
    );
    let lines = transcript_lines(&browser).await;
    let proceed = lines
        .iter()
        .position(|l| l.starts_with("in ") && l.contains("<proceed"))
        .unwrap_or_else(|| panic!("no <proceed/> in {lines:#?}"));
    assert!(
        lines[proceed..].iter().all(|l| !l.starts_with("out ")),
        "an XMPP byte after TLS: {lines:#?}"
    );
    browser.close().await;
    let log = prosody.log_tail(40);
    assert!(
        !log.contains("alice@tampered.browser.test"),
        "the server saw a login: {log}"
    );
}

//! The JS API in a real browser (wasm-bindgen-test in headless Chromium) against real
//! Prosodys and the host's bridge started by `wasm-test-servers` (tests crate; see
//! `tests/run`): websocket mode (RFC 7395 to mod_websocket) and tunnel mode (STARTTLS and
//! TLS in the page, through the bridge to the C2S port), the events and transcript the
//! page sees, messages between sessions, close, trust on first use with pins in
//! localStorage and the changed-key error, and the errors a page must tell apart; and
//! stream management (XEP-0198) against Prosody with `mod_smacks` through a proxy the test
//! cuts: `ack` events, and the session resumed (`resumed`) in both modes with every
//! message delivered exactly once.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use xmpp_handshake_wasm::{connect, ConnectOptions, Session};

wasm_bindgen_test_configure!(run_in_browser);

macro_rules! server {
    ($name:literal) => {{
        // Deliberate: without the servers these tests must fail, never pass vacuously.
        #[allow(clippy::option_env_unwrap)]
        let value = option_env!($name).expect(concat!(
            $name,
            " is not set: run the browser tests through wasm-test-servers (tests/run)"
        ));
        value
    }};
}

/// What the callbacks saw.
#[derive(Default)]
struct Seen {
    events: Vec<(String, JsValue)>,
    transcript: Vec<(String, String)>,
    stanzas: Vec<String>,
}

type SeenCell = Rc<RefCell<Seen>>;

fn prop(o: &JsValue, name: &str) -> JsValue {
    Reflect::get(o, &name.into()).unwrap_or(JsValue::UNDEFINED)
}

fn text(o: &JsValue, name: &str) -> String {
    prop(o, name).as_string().unwrap_or_default()
}

/// Options with callbacks that record into the returned cell. The closures are leaked:
/// the session may call them until the test ends.
fn options(pairs: &[(&str, JsValue)]) -> (ConnectOptions, SeenCell) {
    let seen: SeenCell = Rc::default();
    let o = Object::new();
    for (k, v) in pairs {
        Reflect::set(&o, &(*k).into(), v).unwrap();
    }
    let s = seen.clone();
    let on_event = Closure::<dyn FnMut(JsValue)>::new(move |ev: JsValue| {
        s.borrow_mut()
            .events
            .push((text(&ev, "step"), prop(&ev, "detail")));
    });
    let s = seen.clone();
    let on_transcript = Closure::<dyn FnMut(JsValue)>::new(move |line: JsValue| {
        s.borrow_mut()
            .transcript
            .push((text(&line, "dir"), text(&line, "text")));
    });
    let s = seen.clone();
    let on_stanza = Closure::<dyn FnMut(String)>::new(move |xml: String| {
        s.borrow_mut().stanzas.push(xml);
    });
    for (name, f) in [
        ("onEvent", on_event.into_js_value()),
        ("onTranscript", on_transcript.into_js_value()),
        ("onStanza", on_stanza.into_js_value()),
    ] {
        Reflect::set(&o, &name.into(), &f).unwrap();
    }
    (o.unchecked_into(), seen)
}

fn websocket_options(user: &str, password: &str) -> (ConnectOptions, SeenCell) {
    options(&[
        ("mode", "websocket".into()),
        ("url", server!("XH_WASM_WS_URL").into()),
        (
            "jid",
            format!("{user}@{}", server!("XH_WASM_DOMAIN")).into(),
        ),
        ("password", password.into()),
        ("resource", "browser".into()),
    ])
}

async fn sleep(ms: i32) {
    let p = js_sys::Promise::new(&mut |resolve: Function, _| {
        web_sys_window_timeout(&resolve, ms);
    });
    JsFuture::from(p).await.unwrap();
}

fn web_sys_window_timeout(f: &Function, ms: i32) {
    let set_timeout: Function = Reflect::get(&js_sys::global(), &"setTimeout".into())
        .unwrap()
        .unchecked_into();
    set_timeout
        .call2(&JsValue::NULL, f, &JsValue::from(ms))
        .unwrap();
}

async fn error_of(options: ConnectOptions) -> JsValue {
    match connect(options).await {
        Ok(_) => panic!("connect succeeded"),
        Err(e) => e,
    }
}

async fn done(p: js_sys::Promise) -> Result<JsValue, JsValue> {
    JsFuture::from(p).await
}

#[wasm_bindgen_test]
async fn websocket_mode_binds_exchanges_a_message_and_closes() {
    let password = server!("XH_WASM_PASSWORD");
    let (opts, alice_seen) = websocket_options(server!("XH_WASM_USER"), password);
    let alice: Session = connect(opts).await.expect("alice connects");
    let (opts, bob_seen) =
        websocket_options(server!("XH_WASM_USER2"), server!("XH_WASM_PASSWORD2"));
    let bob: Session = connect(opts).await.expect("bob connects");

    let domain = server!("XH_WASM_DOMAIN");
    assert_eq!(
        alice.jid(),
        format!("{}@{domain}/browser", server!("XH_WASM_USER"))
    );

    // The steps, in order, as they happened; no STARTTLS on an RFC 7395 stream.
    let steps: Vec<String> = alice_seen
        .borrow()
        .events
        .iter()
        .map(|(s, _)| s.clone())
        .collect();
    let expected = [
        "connect", "header", "header", "features", "sasl", "sasl", "restart", "header", "bind",
        "header", "features", "bound",
    ];
    assert_eq!(steps, expected, "{steps:?}");
    {
        let seen = alice_seen.borrow();
        let connect_detail = &seen.events[0].1;
        assert_eq!(
            prop(connect_detail, "secure").as_bool(),
            Some(false),
            "ws:// is reported unencrypted"
        );
        let features = &seen.events[3].1;
        assert_eq!(prop(features, "starttls").as_bool(), Some(false));
        let mechanisms: Array = prop(features, "mechanisms").unchecked_into();
        let mechanisms: Vec<String> = mechanisms.iter().filter_map(|m| m.as_string()).collect();
        assert!(
            mechanisms.iter().any(|m| m == "SCRAM-SHA-1"),
            "{mechanisms:?}"
        );
        let sasl = &seen.events[5].1;
        assert_eq!(text(sasl, "state"), "success");
        // No -PLUS: the page cannot see the browser's TLS channel (and ws:// has none).
        assert_eq!(text(sasl, "mechanism"), "SCRAM-SHA-1");
        let bound = &seen.events[11].1;
        assert_eq!(text(bound, "jid"), alice.jid());

        let transcript = &seen.transcript;
        assert!(transcript
            .iter()
            .any(|(d, t)| d == "out" && t.starts_with("<open ")));
        assert!(transcript
            .iter()
            .any(|(d, t)| d == "in" && t.contains("<success")));
        let auth = transcript
            .iter()
            .find(|(d, t)| d == "out" && t.starts_with("<auth"))
            .expect("the <auth/> line");
        assert!(auth.1.ends_with(">[redacted]</auth>"), "{auth:?}");
        for (_, t) in transcript {
            assert!(!t.contains(password), "password in the transcript: {t}");
            assert!(
                !t.contains("starttls"),
                "STARTTLS on a WebSocket stream: {t}"
            );
        }
    }

    // A message from alice to bob's bound resource arrives at bob's onStanza.
    let body = "hello from the browser <&>";
    let stanza = format!(
        "<message to='{}' type='chat' id='m1'><body>hello from the browser &lt;&amp;&gt;</body></message>",
        bob.jid()
    );
    done(alice.send(stanza)).await.expect("sent");
    let mut waited = 0;
    while !bob_seen
        .borrow()
        .stanzas
        .iter()
        .any(|s| s.contains("id='m1'") || s.contains("id=\"m1\""))
    {
        assert!(
            waited < 5000,
            "bob never got the message: {:?}",
            bob_seen.borrow().stanzas
        );
        sleep(20).await;
        waited += 20;
    }
    let got = bob_seen
        .borrow()
        .stanzas
        .iter()
        .find(|s| s.contains("m1"))
        .cloned()
        .unwrap_or_default();
    assert!(got.contains("&lt;&amp;&gt;") || got.contains(body), "{got}");
    assert!(
        bob_seen
            .borrow()
            .transcript
            .iter()
            .any(|(d, t)| d == "in" && t.contains("m1")),
        "received stanzas are in the transcript"
    );

    // Not one element: refused before anything is sent; the session goes on.
    let err = done(alice.send("<a/><b/>".into()))
        .await
        .expect_err("two elements");
    assert_eq!(text(&err, "kind"), "config");
    let err = done(alice.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>".into()))
        .await
        .expect_err("framing elements are not stanzas");
    assert_eq!(text(&err, "kind"), "config");
    done(alice.send("<presence/>".into()))
        .await
        .expect("still usable");

    done(alice.close()).await.expect("alice closes");
    done(bob.close()).await.expect("bob closes");
    assert!(alice_seen
        .borrow()
        .events
        .iter()
        .any(|(s, d)| s == "closed" && text(d, "by") == "client"));
    let err = done(alice.send("<presence/>".into()))
        .await
        .expect_err("closed");
    assert_eq!(text(&err, "kind"), "transport");
    done(alice.close()).await.expect("closing twice is fine");
}

#[wasm_bindgen_test]
async fn a_wrong_password_is_an_auth_error() {
    let (opts, seen) = websocket_options(server!("XH_WASM_USER"), "not-the-password");
    let err = error_of(opts).await;
    assert_eq!(text(&err, "kind"), "auth", "{:?}", text(&err, "message"));
    let seen = seen.borrow();
    assert!(seen
        .events
        .iter()
        .any(|(s, d)| s == "error" && text(d, "kind") == "auth"));
    assert!(seen
        .transcript
        .iter()
        .all(|(_, t)| !t.contains("not-the-password")));
}

#[wasm_bindgen_test]
async fn bad_options_are_config_errors_before_any_connection() {
    let (opts, seen) = options(&[
        ("mode", "websocket".into()),
        ("url", "ws://example.com/xmpp-websocket".into()),
        ("jid", "a@example.com".into()),
        ("password", "x".into()),
    ]);
    let err = error_of(opts).await;
    assert_eq!(text(&err, "kind"), "config");
    assert!(
        text(&err, "message").contains("loopback"),
        "{}",
        text(&err, "message")
    );
    assert!(seen.borrow().events.is_empty(), "nothing was opened");

    for (name, value) in [
        ("mode", JsValue::from("carrier-pigeon")),
        ("jid", JsValue::from("no-domain")),
        ("url", JsValue::from("http://127.0.0.1/")),
        ("channelBinding", JsValue::from("sometimes")),
        // The WebSocket-only package has no tunnel.
        #[cfg(not(feature = "tunnel"))]
        ("mode", JsValue::from("tunnel")),
    ] {
        let (opts, _) = websocket_options("a", "b");
        Reflect::set(&opts, &name.into(), &value).unwrap();
        let err = error_of(opts).await;
        assert_eq!(
            text(&err, "kind"),
            "config",
            "{name}: {}",
            text(&err, "message")
        );
    }
}

#[wasm_bindgen_test]
async fn no_server_is_a_transport_error() {
    // A loopback port nothing listens on (the discard port; nothing runs it here).
    let (opts, _) = options(&[
        ("mode", "websocket".into()),
        ("url", "ws://127.0.0.1:9/xmpp-websocket".into()),
        ("jid", "a@localhost".into()),
        ("password", "x".into()),
    ]);
    let err = error_of(opts).await;
    assert_eq!(text(&err, "kind"), "transport", "{}", text(&err, "message"));
}

// ---- stream management: a cut link resumed, in both modes ------------------------------

/// Waits (polling every 20 ms) until `done` holds; `false` after `limit_ms`.
async fn wait_until(limit_ms: i32, done: impl Fn() -> bool) -> bool {
    let mut waited = 0;
    while !done() {
        if waited >= limit_ms {
            return false;
        }
        sleep(20).await;
        waited += 20;
    }
    true
}

/// Cuts the proxy's newest connection (both sides closed at once, mid-stream): a
/// connection to its cut port does it (the WebSocket opened there then fails).
async fn cut(url: &str) {
    let before = web_sys::WebSocket::new(url).expect("the cut port's URL");
    // The proxy cuts when the connection is accepted; the handshake then fails.
    sleep(300).await;
    before.close().ok();
}

/// The details of `step` events seen so far.
fn details(seen: &SeenCell, step: &str) -> Vec<JsValue> {
    seen.borrow()
        .events
        .iter()
        .filter(|(s, _)| s == step)
        .map(|(_, d)| d.clone())
        .collect()
}

/// How many of the stanzas `seen` got contain `needle`.
fn received(seen: &SeenCell, needle: &str) -> usize {
    seen.borrow()
        .stanzas
        .iter()
        .filter(|s| s.contains(needle))
        .count()
}

/// alice (`opts`, through a proxy) sends bob (directly) 3 messages, each resolved with its
/// number and acknowledged (`ack`); the proxy cuts her link; 3 more are sent while she
/// reconnects; the session resumes (`resumed`, not a new one) and bob gets all 6 exactly
/// once.
async fn resumes_after_a_cut(opts: ConnectOptions, seen: SeenCell, cut_url: &str, tag: &str) {
    let alice: Session = connect(opts)
        .await
        .expect("alice connects through the proxy");
    let (bob_opts, bob_seen) = options(&[
        ("mode", "websocket".into()),
        ("url", server!("XH_WASM_SM_DIRECT_WS_URL").into()),
        (
            "jid",
            format!("{}@{}", server!("XH_WASM_USER2"), server!("XH_WASM_DOMAIN")).into(),
        ),
        ("password", server!("XH_WASM_SM_PASSWORD2").into()),
        ("resource", "observer".into()),
    ]);
    let bob: Session = connect(bob_opts).await.expect("bob connects");
    let message = |i: u32| {
        format!(
            "<message to='{}' type='chat'><body>{tag} {i}.</body></message>",
            bob.jid()
        )
    };
    let mut numbers = Vec::new();
    for i in 1..=3 {
        let number = done(alice.send(message(i))).await.expect("alice sends");
        numbers.push(
            number
                .as_f64()
                .expect("send() resolves with the stanza's number"),
        );
    }
    let last = numbers[2];
    assert!(
        numbers.windows(2).all(|w| w[1] == w[0] + 1.0),
        "numbers in order: {numbers:?}"
    );
    let acked_up_to = |seen: &SeenCell| {
        details(seen, "ack")
            .iter()
            .filter_map(|d| prop(d, "to").as_f64())
            .fold(0.0, f64::max)
    };
    assert!(
        wait_until(10_000, || acked_up_to(&seen) > last).await,
        "no ack event covers {last}: {:?}",
        details(&seen, "ack")
    );

    cut(cut_url).await;
    for i in 4..=6 {
        // Queued while the task reconnects, or written to the dead link and sent again.
        done(alice.send(message(i)))
            .await
            .expect("a send while the link is down is kept");
    }
    assert!(
        wait_until(20_000, || !details(&seen, "resumed").is_empty()).await,
        "not resumed; events: {:?}",
        seen.borrow()
            .events
            .iter()
            .map(|(s, _)| s.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        details(&seen, "resume-failed").is_empty(),
        "the session was lost instead of resumed"
    );
    let all_arrived = || (1..=6).all(|i| received(&bob_seen, &format!(">{tag} {i}.<")) >= 1);
    assert!(
        wait_until(10_000, all_arrived).await,
        "messages lost: {:?}",
        bob_seen.borrow().stanzas
    );
    // Late duplicates would come within the same round trip.
    sleep(500).await;
    for i in 1..=6 {
        assert_eq!(
            received(&bob_seen, &format!(">{tag} {i}.<")),
            1,
            "message {i} not exactly once: {:?}",
            bob_seen.borrow().stanzas
        );
    }
    assert!(
        wait_until(10_000, || acked_up_to(&seen) > last + 3.0).await,
        "the messages after the cut were not acknowledged: {:?}",
        details(&seen, "ack")
    );
    done(alice.close()).await.expect("alice closes");
    done(bob.close()).await.expect("bob closes");
}

#[wasm_bindgen_test]
async fn websocket_mode_resumes_after_a_cut_link() {
    let (opts, seen) = options(&[
        ("mode", "websocket".into()),
        ("url", server!("XH_WASM_SM_WS_URL").into()),
        (
            "jid",
            format!("{}@{}", server!("XH_WASM_USER"), server!("XH_WASM_DOMAIN")).into(),
        ),
        ("password", server!("XH_WASM_SM_PASSWORD").into()),
        ("resource", "resuming".into()),
    ]);
    resumes_after_a_cut(
        opts,
        seen,
        server!("XH_WASM_SM_CUT_WS_URL"),
        "over websocket",
    )
    .await;
}

// ---- tunnel mode: STARTTLS in the page through the bridge to Prosody's C2S port ----------

/// Tunnel mode, in the package with the `tunnel` feature (the default).
#[cfg(feature = "tunnel")]
mod tunnel {
    use super::*;
    use xmpp_handshake_wasm::{forget_pin, pin_for};

    fn tunnel_options(url: &str, extra: &[(&str, JsValue)]) -> (ConnectOptions, SeenCell) {
        let mut pairs = vec![
            ("mode", JsValue::from("tunnel")),
            ("url", url.into()),
            (
                "jid",
                format!("{}@{}", server!("XH_WASM_USER"), server!("XH_WASM_DOMAIN")).into(),
            ),
            ("password", server!("XH_WASM_PASSWORD").into()),
            ("resource", "tunnel".into()),
        ];
        pairs.extend(extra.iter().cloned());
        options(&pairs)
    }

    #[wasm_bindgen_test]
    async fn tunnel_mode_resumes_after_a_cut_link() {
        let (opts, seen) = options(&[
            ("mode", "tunnel".into()),
            ("url", server!("XH_WASM_SM_TUNNEL_URL").into()),
            (
                "jid",
                format!("{}@{}", server!("XH_WASM_USER"), server!("XH_WASM_DOMAIN")).into(),
            ),
            ("password", server!("XH_WASM_SM_PASSWORD").into()),
            ("resource", "resuming-tunnel".into()),
            ("ca", server!("XH_WASM_SM_CA_PEM").into()),
        ]);
        resumes_after_a_cut(
            opts,
            seen,
            server!("XH_WASM_SM_CUT_TUNNEL_URL"),
            "through the tunnel",
        )
        .await;
    }

    fn steps(seen: &SeenCell) -> Vec<String> {
        seen.borrow()
            .events
            .iter()
            .map(|(s, _)| s.clone())
            .collect()
    }

    fn event(seen: &SeenCell, step: &str) -> JsValue {
        seen.borrow()
            .events
            .iter()
            .find(|(s, _)| s == step)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {step} event"))
    }

    #[wasm_bindgen_test]
    async fn tunnel_mode_negotiates_starttls_in_the_page_with_a_ca() {
        let (opts, seen) = tunnel_options(
            server!("XH_WASM_TUNNEL_URL"),
            &[("ca", server!("XH_WASM_CA_PEM").into())],
        );
        let alice = connect(opts).await.expect("tunnel login");
        assert_eq!(
            alice.jid(),
            format!(
                "{}@{}/tunnel",
                server!("XH_WASM_USER"),
                server!("XH_WASM_DOMAIN")
            )
        );
        // The seed's order: header and <starttls/> (pipelined), the server's header and
        // features, <proceed/>, TLS, restart, SASL, restart, bind.
        let expected = [
            "connect", "header", "starttls", "header", "features", "proceed", "tls", "restart",
            "header", "header", "features", "sasl", "sasl", "restart", "header", "bind", "header",
            "features", "bound",
        ];
        assert_eq!(steps(&seen), expected);
        let features = event(&seen, "features");
        assert_eq!(prop(&features, "starttls").as_bool(), Some(true));
        assert_eq!(prop(&features, "starttlsRequired").as_bool(), Some(true));
        let tls = event(&seen, "tls");
        assert_eq!(text(&tls, "version"), "TLS 1.3");
        assert_eq!(text(&tls, "cipher"), "TLS_AES_128_GCM_SHA256");
        assert_eq!(text(&tls, "fingerprint"), server!("XH_WASM_LEAF_SHA256"));
        assert_eq!(text(&tls, "trust"), "anchors");
        assert_eq!(prop(&tls, "firstUse").as_bool(), Some(false));
        {
            let seen = seen.borrow();
            let transcript = &seen.transcript;
            // Plaintext before TLS, then the protected stream's plaintext side.
            let starttls = transcript
                .iter()
                .position(|(d, t)| d == "out" && t.starts_with("<starttls"))
                .expect("<starttls/> in the transcript");
            let handshake = transcript
                .iter()
                .position(|(d, t)| d == "info" && t.contains("TLS 1.3 handshake"))
                .expect("the handshake line");
            assert!(starttls < handshake);
            assert!(transcript[handshake..]
                .iter()
                .any(|(d, t)| d == "out" && t.starts_with("<auth")));
            for (_, t) in transcript {
                assert!(!t.contains(server!("XH_WASM_PASSWORD")), "{t}");
            }
        }

        // A message from a websocket-mode session to the tunnel session and back: reads give
        // way to sends between TLS records without losing a byte.
        let (opts, bob_seen) =
            websocket_options(server!("XH_WASM_USER2"), server!("XH_WASM_PASSWORD2"));
        let bob = connect(opts).await.expect("bob connects");
        for i in 0..5 {
            let to_alice = format!(
                "<message to='{}' type='chat' id='b{i}'><body>to the tunnel {i}</body></message>",
                alice.jid()
            );
            done(bob.send(to_alice)).await.expect("bob sends");
            let to_bob = format!(
                "<message to='{}' type='chat' id='a{i}'><body>from the tunnel {i}</body></message>",
                bob.jid()
            );
            done(alice.send(to_bob))
                .await
                .expect("alice sends through TLS");
        }
        let mut waited = 0;
        let arrived = |seen: &SeenCell, prefix: char| {
            (0..5)
                .filter(|i| {
                    seen.borrow().stanzas.iter().any(|s| {
                        s.contains(&format!("id='{prefix}{i}'"))
                            || s.contains(&format!("id=\"{prefix}{i}\""))
                    })
                })
                .count()
        };
        while arrived(&seen, 'b') < 5 || arrived(&bob_seen, 'a') < 5 {
            assert!(
                waited < 5000,
                "messages lost: {} to alice, {} to bob",
                arrived(&seen, 'b'),
                arrived(&bob_seen, 'a')
            );
            sleep(20).await;
            waited += 20;
        }
        done(alice.close())
            .await
            .expect("alice closes (close_notify)");
        done(bob.close()).await.expect("bob closes");
    }

    #[wasm_bindgen_test]
    async fn tunnel_trust_on_first_use_then_same_then_changed_key() {
        let domain = server!("XH_WASM_DOMAIN");
        forget_pin(domain).expect("forget");
        let first = server!("XH_WASM_LEAF_SHA256");
        let changed = server!("XH_WASM_OTHER_LEAF_SHA256");

        // No CA and no trustFirstUse: an unknown key is refused with its fingerprint.
        let (opts, _) = tunnel_options(server!("XH_WASM_TUNNEL_URL"), &[]);
        let err = error_of(opts).await;
        assert_eq!(
            text(&err, "kind"),
            "certificate",
            "{}",
            text(&err, "message")
        );
        assert_eq!(text(&err, "fingerprint"), first);
        assert!(pin_for(domain).expect("pinFor").is_null(), "nothing pinned");

        // First use: pinned and accepted.
        let tofu = [("trustFirstUse", JsValue::TRUE)];
        let (opts, seen) = tunnel_options(server!("XH_WASM_TUNNEL_URL"), &tofu);
        let session = connect(opts).await.expect("first use");
        let tls = event(&seen, "tls");
        assert_eq!(text(&tls, "trust"), "first-use");
        assert_eq!(prop(&tls, "firstUse").as_bool(), Some(true));
        assert_eq!(text(&tls, "fingerprint"), first);
        let pin = pin_for(domain).expect("pinFor");
        assert_eq!(text(&pin, "fingerprint"), first);
        assert_eq!(text(&pin, "key"), text(&tls, "spki"));
        done(session.close()).await.expect("close");

        // Same key: the stored pin.
        let (opts, seen) = tunnel_options(server!("XH_WASM_TUNNEL_URL"), &tofu);
        let session = connect(opts).await.expect("same key");
        let tls = event(&seen, "tls");
        assert_eq!(text(&tls, "trust"), "stored-pin");
        assert_eq!(prop(&tls, "firstUse").as_bool(), Some(false));
        done(session.close()).await.expect("close");

        // Another server for the same domain with another key: refused, both fingerprints.
        let (opts, seen) = tunnel_options(server!("XH_WASM_OTHER_TUNNEL_URL"), &tofu);
        let err = error_of(opts).await;
        assert_eq!(
            text(&err, "kind"),
            "pin-changed",
            "{}",
            text(&err, "message")
        );
        assert_eq!(text(&err, "domain"), domain);
        assert_eq!(text(&err, "oldFingerprint"), first);
        assert_eq!(text(&err, "newFingerprint"), changed);
        assert_ne!(text(&err, "oldKey"), text(&err, "newKey"));
        assert!(
            !steps(&seen).contains(&"sasl".to_string()),
            "no credentials after a refused key"
        );
        assert_eq!(
            text(&pin_for(domain).expect("pinFor"), "fingerprint"),
            first,
            "pin kept"
        );

        // Accepting another fingerprint than the one presented changes nothing.
        let (opts, _) = tunnel_options(
            server!("XH_WASM_OTHER_TUNNEL_URL"),
            &[
                ("trustFirstUse", JsValue::TRUE),
                ("acceptChangedKey", first.into()),
            ],
        );
        let err = error_of(opts).await;
        assert_eq!(text(&err, "kind"), "pin-changed");
        assert_eq!(
            text(&pin_for(domain).expect("pinFor"), "fingerprint"),
            first
        );

        // The user compared and accepts exactly the new fingerprint: re-pinned, logged in.
        let (opts, seen) = tunnel_options(
            server!("XH_WASM_OTHER_TUNNEL_URL"),
            &[
                ("trustFirstUse", JsValue::TRUE),
                ("acceptChangedKey", changed.into()),
            ],
        );
        let session = connect(opts).await.expect("accepted changed key");
        assert_eq!(text(&event(&seen, "tls"), "fingerprint"), changed);
        assert_eq!(text(&event(&seen, "tls"), "trust"), "stored-pin");
        assert_eq!(
            text(&pin_for(domain).expect("pinFor"), "fingerprint"),
            changed
        );
        assert!(seen
            .borrow()
            .transcript
            .iter()
            .any(|(d, t)| d == "info" && t.contains("changed certificate")));
        done(session.close()).await.expect("close");

        // Now the first server is the changed one.
        let (opts, _) = tunnel_options(server!("XH_WASM_TUNNEL_URL"), &tofu);
        let err = error_of(opts).await;
        assert_eq!(text(&err, "kind"), "pin-changed");
        assert_eq!(text(&err, "oldFingerprint"), changed);
        forget_pin(domain).expect("forget");
    }

    #[wasm_bindgen_test]
    async fn tunnel_with_the_wrong_ca_is_a_certificate_error() {
        // The other server's chain does not lead to the first server's CA.
        let (opts, seen) = tunnel_options(
            server!("XH_WASM_OTHER_TUNNEL_URL"),
            &[("ca", server!("XH_WASM_CA_PEM").into())],
        );
        let err = error_of(opts).await;
        assert_eq!(
            text(&err, "kind"),
            "certificate",
            "{}",
            text(&err, "message")
        );
        assert!(!steps(&seen).contains(&"sasl".to_string()));
    }

    #[wasm_bindgen_test]
    async fn tunnel_scram_plus_binds_to_the_certificate_with_our_server() {
        // Our receiving entity offers SCRAM -PLUS on TLS 1.3 and checks tls-server-end-point;
        // with binding required, nothing else would do.
        let (opts, seen) = tunnel_options(
            server!("XH_WASM_SERVE_TUNNEL_URL"),
            &[
                ("ca", server!("XH_WASM_SERVE_CA_PEM").into()),
                ("channelBinding", "required".into()),
            ],
        );
        let session = connect(opts)
            .await
            .expect("SCRAM -PLUS login through the tunnel");
        let bound = event(&seen, "bound");
        let mechanism = text(&bound, "mechanism");
        assert!(mechanism.ends_with("-PLUS"), "{mechanism}");
        done(session.close()).await.expect("close");
    }
}

//! Unit tests in a real browser (wasm-bindgen-test in headless Chromium, see `tests/run`):
//! the `localStorage` pin store under the core's policy, the transcript's redaction, and the
//! WebSocket transport against a real server. Server details come from `wasm-test-servers`
//! (tests crate) at compile time; without them the tests fail, they never pass vacuously.

use std::cell::RefCell;
use std::rc::Rc;

use embedded_io_async::{Read, Write};
use js_sys::{Function, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_test::*;
use xmpp_handshake_core::driver::Observer;

use crate::events::{Callbacks, Reporter};
use crate::websocket::{Carrying, Socket};

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

#[cfg(feature = "tunnel")]
#[wasm_bindgen_test]
fn pins_first_use_then_same_then_changed_key() {
    use crate::options::pem_certificates;
    use crate::pins::{LocalStoragePins, KEY_PREFIX};
    use xmpp_handshake_core::trust::{
        accept_changed_certificate, CertError, CertificatePolicy, FirstUse, PinStore, PkixOutcome,
        ReferenceIdentity, TrustBasis,
    };

    let domain = server!("XH_WASM_DOMAIN");
    let first = pem_certificates(server!("XH_WASM_LEAF_PEM")).expect("leaf PEM");
    let other = pem_certificates(server!("XH_WASM_OTHER_LEAF_PEM")).expect("other PEM");
    let reference = ReferenceIdentity::client_to_server(domain).expect("domain");
    let policy = CertificatePolicy::trust_on_first_use(FirstUse::Record);
    let now = crate::tls::now();
    let verify = |leaf: &[u8], pins: &mut LocalStoragePins| {
        // Self-issued test CA the policy does not know: no anchor vouches for it.
        policy.verify_server(
            &[leaf],
            &reference,
            || PkixOutcome::UnknownIssuer,
            Some(now),
            pins,
        )
    };
    let mut pins = LocalStoragePins::open();
    pins.remove(domain).expect("remove");

    let seen = verify(&first[0], &mut pins).expect("first use is recorded");
    assert_eq!(seen.basis, TrustBasis::FirstUse);
    assert!(seen.pinned_now);
    let storage = web_sys::window()
        .and_then(|w| w.local_storage().ok().flatten())
        .expect("localStorage");
    let item = storage
        .get_item(&format!("{KEY_PREFIX}{domain}"))
        .ok()
        .flatten()
        .expect("the pin is in localStorage");
    assert_eq!(
        item,
        format!("{} {}", seen.pin.spki_sha256, seen.pin.cert_sha256)
    );

    // As after a reload: a new store reads the same pin.
    let mut pins = LocalStoragePins::open();
    assert_eq!(pins.load(domain), Some(seen.pin));
    let again = verify(&first[0], &mut pins).expect("same key");
    assert_eq!(again.basis, TrustBasis::StoredPin);
    assert!(!again.pinned_now);

    let changed = verify(&other[0], &mut pins).expect_err("a changed key is refused");
    let CertError::PinChanged(change) = &changed else {
        panic!("expected PinChanged, got {changed:?}");
    };
    assert_eq!(change.domain, domain);
    assert_eq!(change.old_spki, seen.pin.spki_sha256);
    assert_eq!(change.old_cert, seen.pin.cert_sha256);
    assert_ne!(change.new_spki, change.old_spki);
    assert_eq!(
        pins.load(domain),
        Some(seen.pin),
        "a refused key is never stored"
    );
    // As the driver reports it: the embedded-tls backend's error, classified into the core's.
    let tls: xmpp_handshake_core::TlsError =
        xmpp_handshake_embedded_tls::EmbeddedTlsError::Certificate(changed.clone()).into();
    let error = crate::error::Failure::from_core(&xmpp_handshake_core::Error::Tls(tls), None);
    assert_eq!(error.kind, "pin-changed");
    let js = error.to_js();
    let field = |name: &str| {
        Reflect::get(&js, &name.into())
            .ok()
            .and_then(|v| v.as_string())
    };
    assert_eq!(field("oldFingerprint"), Some(change.old_cert.to_string()));
    assert_eq!(field("newFingerprint"), Some(change.new_cert.to_string()));
    assert_eq!(field("domain").as_deref(), Some(domain));

    // Explicit acceptance replaces the pin; the new key then verifies.
    accept_changed_certificate(&mut pins, &changed).expect("accepted");
    let after = verify(&other[0], &mut pins).expect("accepted key");
    assert_eq!(after.basis, TrustBasis::StoredPin);
    assert_eq!(after.pin.spki_sha256, change.new_spki);

    // A corrupt item is an error, never a silent unpin.
    storage
        .set_item(&format!("{KEY_PREFIX}{domain}"), "not a pin")
        .expect("set");
    assert!(LocalStoragePins::open().get(domain).is_err());
    pins.remove(domain).expect("remove");
    assert_eq!(LocalStoragePins::open().get(domain), Ok(None));
}

type Lines = Rc<RefCell<Vec<(String, String)>>>;

fn collect_transcript() -> (Lines, Closure<dyn FnMut(JsValue)>) {
    let lines: Lines = Rc::default();
    let sink = lines.clone();
    let f = Closure::<dyn FnMut(JsValue)>::new(move |line: JsValue| {
        let get = |name: &str| {
            Reflect::get(&line, &name.into())
                .ok()
                .and_then(|v| v.as_string())
                .unwrap_or_default()
        };
        sink.borrow_mut().push((get("dir"), get("text")));
    });
    (lines, f)
}

#[wasm_bindgen_test]
fn transcript_redacts_sasl_payloads_and_the_password() {
    let (lines, f) = collect_transcript();
    let callbacks = Callbacks {
        on_transcript: Some(f.as_ref().unchecked_ref::<Function>().clone()),
        ..Callbacks::default()
    };
    let mut reporter = Reporter::new(callbacks, vec!["s3cret-pw".into()], Rc::default());
    // PLAIN's initial response is base64 of "\0alice\0s3cret-pw"; split across writes.
    reporter.sent(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGFsaWNl");
    reporter.sent(b"AHMzY3JldC1wdw==</auth>");
    reporter.received(b"<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtv</challenge>");
    reporter.sent(b"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdzLHI9</response>");
    reporter.sent(b"<message to='b@x'><body>my password is s3cret-pw</body></message>");
    let lines = lines.borrow();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert_eq!(
        lines[0],
        (
            "out".into(),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>[redacted]</auth>"
                .into()
        )
    );
    assert_eq!(lines[1].0, "in");
    assert!(lines[1].1.contains("cj1meWtv"), "challenges are shown");
    assert!(
        lines[2].1.ends_with(">[redacted]</response>"),
        "{:?}",
        lines[2]
    );
    assert_eq!(
        lines[3].1,
        "<message to='b@x'><body>my password is [redacted]</body></message>"
    );
    for (_, text) in lines.iter() {
        assert!(
            !text.contains("s3cret") && !text.contains("AHMzY3JldC1wdw"),
            "{text}"
        );
    }
}

#[wasm_bindgen_test]
async fn websocket_transport_speaks_rfc7395_with_a_real_server() {
    let url = server!("XH_WASM_WS_URL");
    let domain = server!("XH_WASM_DOMAIN");
    let mut socket = Socket::open(url, Carrying::Elements)
        .await
        .expect("the xmpp subprotocol is accepted");
    // One write is one message (RFC 7395 §3.3.3: one element per message), as the core
    // writes one unit (header, element, closing tag) at a time.
    let open =
        format!("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='{domain}' version='1.0'/>");
    socket.write_all(open.as_bytes()).await.expect("write");
    let mut received = Vec::new();
    let mut buf = [0u8; 64]; // small reads: messages are handed over in pieces
    while !String::from_utf8_lossy(&received).contains("</stream:features>") {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed early: {}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&buf[..n]);
        assert!(received.len() < 16 * 1024);
    }
    let text = String::from_utf8(received).expect("UTF-8");
    assert!(text.starts_with("<open "), "{text}");
    assert!(text.contains("urn:ietf:params:xml:ns:xmpp-sasl"), "{text}");
    // Our <close/>; the server answers with its own and closes the WebSocket. Whether
    // that close handshake completes cleanly is a race between the server dropping the
    // TCP connection and the browser's reply (Prosody sometimes wins it): once its
    // <close/> has arrived, an unclean end is the end of the stream too.
    socket
        .write_all(b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
        .await
        .expect("close");
    let mut rest = Vec::new();
    loop {
        match socket.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
            Err(_) if String::from_utf8_lossy(&rest).contains("<close") => break,
            Err(e) => panic!("read after close, before the server's <close/>: {e:?}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("<close"),
        "{rest:?}"
    );
}

#[wasm_bindgen_test]
async fn a_websocket_without_the_xmpp_subprotocol_is_refused() {
    // Same server, a path that is no XMPP endpoint: the upgrade fails.
    let url = server!("XH_WASM_WS_URL").replace("/xmpp-websocket", "/not-xmpp");
    let err = Socket::open(&url, Carrying::Elements)
        .await
        .err()
        .expect("no XMPP endpoint there");
    assert!(err.0.contains("not-xmpp"), "{}", err.0);
}

/// The WebCrypto glue against signatures openssl made (`wasm/tests/fixtures/webcrypto/make`):
/// every algorithm verifies its known-good signature and refuses an altered message or
/// signature, the wrong hash or padding, a key of another type, curve or size; where the
/// page's software verifier also answers (P-256), both answer the same.
#[cfg(feature = "tunnel")]
mod webcrypto {
    use wasm_bindgen_test::*;
    use xmpp_handshake_embedded_tls::signature::{
        HashAlg, OwnedCheck, SignatureAlgorithm, SignatureError, SignatureVerifier, Software,
    };

    use crate::webcrypto::verify;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../tests/fixtures/webcrypto/", $name)).as_slice()
        };
    }

    const MESSAGE: &[u8] = fixture!("message.bin");
    const RSA2048: &[u8] = fixture!("rsa2048.spki.der");
    const RSA4096: &[u8] = fixture!("rsa4096.spki.der");
    const P256: &[u8] = fixture!("p256.spki.der");
    const P384: &[u8] = fixture!("p384.spki.der");

    use HashAlg::{Sha256, Sha384, Sha512};
    use SignatureAlgorithm::{Ecdsa, RsaPkcs1, RsaPss};

    fn check(algorithm: SignatureAlgorithm, spki: &[u8], signature: &[u8]) -> OwnedCheck {
        OwnedCheck {
            algorithm,
            spki: spki.to_vec(),
            message: MESSAGE.to_vec(),
            signature: signature.to_vec(),
        }
    }

    /// Every algorithm with a known-good signature.
    fn good() -> Vec<OwnedCheck> {
        vec![
            check(
                RsaPkcs1(Sha256),
                RSA2048,
                fixture!("rsa2048.pkcs1-sha256.sig"),
            ),
            check(
                RsaPkcs1(Sha384),
                RSA2048,
                fixture!("rsa2048.pkcs1-sha384.sig"),
            ),
            check(
                RsaPkcs1(Sha512),
                RSA2048,
                fixture!("rsa2048.pkcs1-sha512.sig"),
            ),
            check(RsaPss(Sha256), RSA2048, fixture!("rsa2048.pss-sha256.sig")),
            check(RsaPss(Sha384), RSA2048, fixture!("rsa2048.pss-sha384.sig")),
            check(RsaPss(Sha512), RSA2048, fixture!("rsa2048.pss-sha512.sig")),
            check(
                RsaPkcs1(Sha256),
                RSA4096,
                fixture!("rsa4096.pkcs1-sha256.sig"),
            ),
            check(RsaPss(Sha384), RSA4096, fixture!("rsa4096.pss-sha384.sig")),
            check(Ecdsa(Sha256), P256, fixture!("p256.ecdsa-sha256.sig")),
            check(Ecdsa(Sha384), P256, fixture!("p256.ecdsa-sha384.sig")),
            check(Ecdsa(Sha256), P384, fixture!("p384.ecdsa-sha256.sig")),
            check(Ecdsa(Sha384), P384, fixture!("p384.ecdsa-sha384.sig")),
        ]
    }

    #[wasm_bindgen_test]
    async fn every_algorithm_verifies_a_known_good_signature() {
        for c in good() {
            assert_eq!(verify(&c).await, Ok(()), "{:?}", c.algorithm);
        }
    }

    #[wasm_bindgen_test]
    async fn an_altered_message_or_signature_is_invalid() {
        for c in good() {
            let mut altered = c.clone();
            altered.message[0] ^= 1;
            assert_eq!(
                verify(&altered).await,
                Err(SignatureError::Invalid),
                "{:?}: altered message",
                c.algorithm
            );
            // The last byte: the end of RSA's signature, of ECDSA's s.
            let mut altered = c.clone();
            *altered.signature.last_mut().unwrap() ^= 1;
            assert_eq!(
                verify(&altered).await,
                Err(SignatureError::Invalid),
                "{:?}: altered signature",
                c.algorithm
            );
        }
    }

    #[wasm_bindgen_test]
    async fn the_wrong_hash_padding_or_key_type_is_invalid() {
        let pkcs1 = fixture!("rsa2048.pkcs1-sha256.sig");
        let pss = fixture!("rsa2048.pss-sha256.sig");
        let ecdsa = fixture!("p256.ecdsa-sha256.sig");
        for c in [
            check(RsaPss(Sha256), RSA2048, pkcs1),
            check(RsaPkcs1(Sha256), RSA2048, pss),
            check(RsaPkcs1(Sha384), RSA2048, pkcs1),
            check(Ecdsa(Sha384), P256, ecdsa),
            // An ECDSA signature with an RSA key, and the other way round.
            check(Ecdsa(Sha256), RSA2048, ecdsa),
            check(RsaPkcs1(Sha256), P256, pkcs1),
        ] {
            assert_eq!(
                verify(&c).await,
                Err(SignatureError::Invalid),
                "{:?}",
                c.algorithm
            );
        }
    }

    #[wasm_bindgen_test]
    async fn keys_webpki_refuses_are_unsupported() {
        for c in [
            // RSA under 2048 bits, even with its own good signature.
            check(
                RsaPkcs1(Sha256),
                fixture!("rsa1024.spki.der"),
                fixture!("rsa1024.pkcs1-sha256.sig"),
            ),
            // A P-384 signature with a P-256 key: r and s do not fit the curve.
            check(Ecdsa(Sha384), P256, fixture!("p384.ecdsa-sha384.sig")),
            // Not a SubjectPublicKeyInfo.
            check(
                Ecdsa(Sha256),
                b"\x30\x03\x02\x01\x01",
                fixture!("p256.ecdsa-sha256.sig"),
            ),
        ] {
            let answer = verify(&c).await;
            assert!(
                matches!(answer, Err(SignatureError::Unsupported(_))),
                "{:?}: {answer:?}",
                c.algorithm
            );
        }
    }

    #[wasm_bindgen_test]
    async fn webcrypto_answers_as_the_software_verifier_on_p256() {
        let ecdsa = fixture!("p256.ecdsa-sha256.sig");
        let mut altered = ecdsa.to_vec();
        *altered.last_mut().unwrap() ^= 1;
        for c in [
            check(Ecdsa(Sha256), P256, ecdsa),
            check(Ecdsa(Sha256), P256, &altered),
            check(Ecdsa(Sha384), P256, fixture!("p256.ecdsa-sha384.sig")),
            check(Ecdsa(Sha384), P256, ecdsa),
            check(RsaPkcs1(Sha256), P256, ecdsa),
        ] {
            let software = c.as_check().and_then(|check| Software.verify(&check));
            let browser = verify(&c).await;
            // The same answer; `Unsupported`'s text may differ.
            let kind = |r: &Result<(), SignatureError>| match r {
                Ok(()) => "valid",
                Err(SignatureError::Invalid) => "invalid",
                Err(SignatureError::Unsupported(_)) => "unsupported",
            };
            assert_eq!(
                kind(&browser),
                kind(&software),
                "{:?}: {browser:?} / {software:?}",
                c.algorithm
            );
        }
    }
}

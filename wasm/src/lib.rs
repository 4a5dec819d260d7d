//! # xmpp-handshake-wasm
//!
//! XMPP stream negotiation (RFC 6120) in a browser page, on the core's state machines and
//! driver, over the browser's WebSocket:
//!
//! * `mode: "websocket"`: RFC 7395 to a server's WebSocket endpoint (`xmpp` subprotocol,
//!   `<open/>`/`<close/>`, one element per message). TLS is the browser's (`wss://`);
//!   STARTTLS is never attempted on such a stream. SCRAM without `-PLUS` (the page cannot
//!   see the browser's TLS channel); PLAIN only with `allowPlain`.
//! * `mode: "tunnel"`: the raw stream over a WebSocket-to-TCP bridge (`xmpp-handshake
//!   bridge`), with STARTTLS negotiated inside the page by the embedded-tls backend (crate
//!   `xmpp-handshake-embedded-tls`): the core's certificate policy, a CA (`ca`) or trust on
//!   first use with pins in `localStorage`, a changed key reported with both fingerprints,
//!   and `tls-server-end-point` for SCRAM `-PLUS`. The bridge sees only TLS after STARTTLS.
//!   Signatures (RSA, ECDSA P-256/P-384) are verified by the browser's WebCrypto after the
//!   handshake and before any XMPP byte (`webcrypto.rs`, `tls.rs`). Needs the `tunnel`
//!   feature (the default); without it the package is RFC 7395 only and has no TLS code.
//!
//! ```js
//! import init, { connect } from "./pkg/xmpp_handshake_wasm.js";
//! await init();
//! const session = await connect({ mode: "websocket", url: "wss://example.com/xmpp-websocket",
//!   jid: "juliet@example.com", password: "…", onEvent: e => console.log(e.step, e.detail) });
//! await session.send("<message to='romeo@example.net'><body>hi</body></message>");
//! await session.close();
//! ```
//!
//! The crate is empty on targets other than `wasm32`.

#[cfg(target_arch = "wasm32")]
mod clock;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod events;
#[cfg(target_arch = "wasm32")]
mod options;
#[cfg(all(target_arch = "wasm32", feature = "tunnel"))]
mod pins;
#[cfg(all(target_arch = "wasm32", not(feature = "tunnel")))]
mod plain;
#[cfg(target_arch = "wasm32")]
mod rng;
#[cfg(target_arch = "wasm32")]
mod session;
#[cfg(all(test, target_arch = "wasm32"))]
mod tests;
#[cfg(all(target_arch = "wasm32", feature = "tunnel"))]
mod tls;
#[cfg(all(target_arch = "wasm32", feature = "tunnel"))]
mod webcrypto;
#[cfg(target_arch = "wasm32")]
mod websocket;

#[cfg(target_arch = "wasm32")]
pub use api::*;

/// The heap (a free list, see `lol_alloc`): smaller than the standard library's dlmalloc.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
// SAFETY: wasm32-unknown-unknown without the `atomics` target feature runs on one thread:
// the page's; the allocator is never reached from another.
static HEAP: lol_alloc::AssumeSingleThreaded<lol_alloc::FreeListAllocator> =
    unsafe { lol_alloc::AssumeSingleThreaded::new(lol_alloc::FreeListAllocator::new()) };

#[cfg(target_arch = "wasm32")]
mod api {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_channel::oneshot;
    use wasm_bindgen::prelude::*;

    use crate::error::Failure;
    #[cfg(feature = "tunnel")]
    use xmpp_handshake_core::trust::ReferenceIdentity;

    #[cfg(feature = "tunnel")]
    use crate::events::detail;
    use crate::events::Reporter;
    #[cfg(feature = "tunnel")]
    use crate::pins::LocalStoragePins;
    use crate::rng::BrowserRng;
    use crate::session::{self, ControlCell, Request};

    #[wasm_bindgen(typescript_custom_section)]
    const TYPES: &'static str = r#"
/** Options of {@link connect}. */
export interface ConnectOptions {
  /** "websocket": RFC 7395 to the server's endpoint; "tunnel": raw stream over a bridge, STARTTLS in the page. */
  mode: "websocket" | "tunnel";
  /** websocket: e.g. wss://example.com/xmpp-websocket; tunnel: ws://127.0.0.1:8080/bridge?target=localhost:5222. ws:// only to loopback. */
  url: string;
  jid: string;
  password: string;
  resource?: string;
  /** tunnel: PEM trust anchor(s); else trust on first use. */
  ca?: string;
  /** tunnel: pin the first key seen (kept in localStorage per domain). */
  trustFirstUse?: boolean;
  /** tunnel: accept a changed key (true) or only the certificate with this SHA-256 fingerprint; then the pin is replaced. */
  acceptChangedKey?: boolean | string;
  /** SCRAM -PLUS (tunnel only: tls-server-end-point). Default "when-offered". */
  channelBinding?: "when-offered" | "off" | "required";
  /** websocket: allow PLAIN (sends the password itself). */
  allowPlain?: boolean;
  /** Time limit for the whole negotiation, default 30000. */
  timeoutMs?: number;
  /**
   * Stream management (XEP-0198) when the server offers it, default true: every stanza is
   * kept until the server acknowledges it ("ack" events), and a lost link is resumed on a
   * new connection ("resumed"), what the server had not acknowledged sent again; if the
   * server lost the session, "resume-failed" lists what is not known delivered.
   */
  resume?: boolean;
  onEvent?: (ev: HandshakeEvent) => void;
  onTranscript?: (line: TranscriptLine) => void;
  onStanza?: (xml: string) => void;
}

/** A negotiation step, as it really happens. */
export interface HandshakeEvent {
  step: "connect" | "header" | "features" | "starttls" | "proceed" | "tls" | "restart" | "sasl" | "bind" | "bound" | "ack" | "resumed" | "resume-failed" | "closed" | "error";
  /**
   * connect: { url, mode, secure }; header: { dir: "out" | "in" };
   * features: { starttls, starttlsRequired, mechanisms, bind };
   * tls: { version, cipher, fingerprint, spki, trust, firstUse } (SHA-256, OpenSSL's AB:CD:… form);
   * restart: { after: "tls" | "sasl" }; sasl: { state: "started" | "success", mechanism };
   * bound: { jid, mechanism } (again after a resumption); closed: { by: "client" | "server" | "error" }; error: { kind, message }.
   * ack: { h, from, to }: the stanzas send() numbered from up to to (exclusive) reached the server.
   * resumed: { h, acked, resent }: the session resumed on a new connection after the link was lost; acked stanzas had arrived, resent are sent again.
   * resume-failed: { condition, h, notDelivered }: the server lost the session and a new one was bound; notDelivered (XML, oldest first) are not known to have arrived and were not sent again.
   */
  detail: any;
}

/** One transcript line; credentials are redacted. */
export interface TranscriptLine {
  dir: "out" | "in" | "info";
  text: string;
}

/** How connect(), send() and close() fail: an Error with a kind. */
export interface HandshakeError extends Error {
  kind: "pin-changed" | "certificate" | "auth" | "tls-required" | "tls" | "stream" | "transport" | "config";
  /** pin-changed */
  domain?: string;
  /** pin-changed: SHA-256 of the pinned and of the presented certificate. */
  oldFingerprint?: string;
  newFingerprint?: string;
  /** pin-changed: SHA-256 of the pinned and of the presented key. */
  oldKey?: string;
  newKey?: string;
  /** certificate: the presented certificate and key, when known. */
  fingerprint?: string;
  key?: string;
  /** stream: the RFC 6120 §4.9.3 condition, or null. */
  condition?: string | null;
}
"#;

    #[wasm_bindgen]
    extern "C" {
        /// The options object (see the TypeScript declaration).
        #[wasm_bindgen(typescript_type = "ConnectOptions")]
        pub type ConnectOptions;
    }

    /// A negotiated, bound stream.
    #[wasm_bindgen]
    pub struct Session {
        jid: String,
        control: ControlCell,
    }

    #[wasm_bindgen]
    impl Session {
        /// The full JID the server bound (RFC 6120 §7.6.1).
        #[wasm_bindgen(getter)]
        pub fn jid(&self) -> String {
            self.jid.clone()
        }

        /// Sends one stanza (one well-formed top-level element). Resolves once it was
        /// written, with its stream-management number (XEP-0198; `ack` events name it), or
        /// `undefined` when stream management is off.
        #[wasm_bindgen(unchecked_return_type = "Promise<number | undefined>")]
        pub fn send(&self, xml: String) -> js_sys::Promise {
            let (done, result) = oneshot::channel();
            session::submit(&self.control, Request::Send(xml, done));
            outcome(result)
        }

        /// Closes the stream (RFC 6120 §4.4: our closing element, then the server's) and the
        /// connection.
        #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
        pub fn close(&self) -> js_sys::Promise {
            let (done, result) = oneshot::channel();
            session::submit(&self.control, Request::Close(done));
            outcome(result)
        }
    }

    /// A session the page drops (`free()`, or garbage collection) without `close()` is
    /// closed, so its WebSocket does not stay open unseen.
    impl Drop for Session {
        fn drop(&mut self) {
            let (done, _) = oneshot::channel();
            session::submit(&self.control, Request::Close(done));
        }
    }

    fn outcome(result: oneshot::Receiver<Result<Option<u64>, Failure>>) -> js_sys::Promise {
        wasm_bindgen_futures::future_to_promise(async move {
            match result.await {
                Ok(Ok(None)) => Ok(JsValue::UNDEFINED),
                // The stanza's stream-management number (`ack` events name it).
                Ok(Ok(Some(number))) => Ok(JsValue::from(number as f64)),
                Ok(Err(f)) => Err(f.to_js()),
                Err(_) => Err(Failure::transport("the session ended").to_js()),
            }
        })
    }

    #[cfg(feature = "tunnel")]
    fn pin_domain(domain: &str) -> Result<String, JsValue> {
        ReferenceIdentity::client_to_server(domain)
            .map(|r| r.domain().to_string())
            .map_err(|e| Failure::config(format!("\"{domain}\": {e}")).to_js())
    }

    #[cfg(feature = "tunnel")]
    /// The pin kept in `localStorage` for `domain` (tunnel mode, trust on first use):
    /// `{ fingerprint, key }` (SHA-256 of the certificate and of its key), or `null`.
    #[wasm_bindgen(js_name = pinFor, unchecked_return_type = "{ fingerprint: string, key: string } | null")]
    pub fn pin_for(domain: &str) -> Result<JsValue, JsValue> {
        let pin = LocalStoragePins::open()
            .get(&pin_domain(domain)?)
            .map_err(|e| Failure::config(e).to_js())?;
        Ok(match pin {
            Some(pin) => detail(&[
                ("fingerprint", pin.cert_sha256.to_string().into()),
                ("key", pin.spki_sha256.to_string().into()),
            ])
            .into(),
            None => JsValue::NULL,
        })
    }

    #[cfg(feature = "tunnel")]
    /// Forgets the pin for `domain`: the next tunnel connection is a first use again.
    #[wasm_bindgen(js_name = forgetPin)]
    pub fn forget_pin(domain: &str) -> Result<(), JsValue> {
        LocalStoragePins::open()
            .remove(&pin_domain(domain)?)
            .map_err(|e| Failure::config(e).to_js())
    }

    /// Connects, negotiates (STARTTLS in tunnel mode, SASL, bind) and resolves with the
    /// bound session; rejects with a `HandshakeError`.
    #[wasm_bindgen]
    pub async fn connect(options: ConnectOptions) -> Result<Session, JsValue> {
        let options = crate::options::parse(&options).map_err(|f| f.to_js())?;
        BrowserRng::check().map_err(|e| {
            Failure::config(format!("the browser gives no random numbers: {e}")).to_js()
        })?;
        let tls_cell = Rc::new(RefCell::new(None));
        let reporter = Reporter::new(
            options.callbacks.clone(),
            vec![options.password.clone()],
            tls_cell.clone(),
        );
        let control: ControlCell = Rc::default();
        let (ready, bound) = oneshot::channel();
        wasm_bindgen_futures::spawn_local(session::run(
            options,
            reporter,
            tls_cell,
            ready,
            control.clone(),
        ));
        match bound.await {
            Ok(Ok(jid)) => Ok(Session { jid, control }),
            Ok(Err(f)) => Err(f.to_js()),
            Err(_) => Err(Failure::transport("the connection task ended").to_js()),
        }
    }
}

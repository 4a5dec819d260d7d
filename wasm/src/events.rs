//! What the page sees of a connection: `onEvent({ step, detail })` for each negotiation step,
//! `onTranscript({ dir, text })` for each header and element (credentials redacted with the
//! core's [`redact`]), `onStanza(xml)` for each stanza after binding.
//!
//! [`Reporter`] is the core driver's [`Observer`], in the negotiation and on the bound
//! stream: it sees the plaintext side of every read and write and cuts it into transcript
//! lines with the core's [`Splitter`] (a read may hold part of an element, or several).

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Function, Object, Reflect};
use wasm_bindgen::JsValue;
use xmpp_handshake_core::connection::Step;
use xmpp_handshake_core::driver::Observer;
use xmpp_handshake_core::stream::features::{StreamFeatures, NS_BIND};
use xmpp_handshake_core::stream::header::StreamHeader;
use xmpp_handshake_core::transcript::redact;
use xmpp_handshake_core::xml::element;
use xmpp_handshake_core::xml::splitter::Splitter;

/// What the TLS handshake established, for the `tls` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsDetail {
    /// "TLS 1.3".
    pub version: &'static str,
    /// IANA name of the cipher suite.
    pub cipher: &'static str,
    /// SHA-256 of the server certificate (OpenSSL's `AB:CD:…`).
    pub fingerprint: String,
    /// SHA-256 of its SubjectPublicKeyInfo (what is pinned).
    pub spki: String,
    /// Why the certificate was trusted: "anchors", "stored-pin", "first-use".
    pub trust: &'static str,
    /// The key was pinned on this connection.
    pub first_use: bool,
}

/// Where the TLS upgrade leaves its [`TlsDetail`] for the reporter.
pub type TlsCell = Rc<RefCell<Option<TlsDetail>>>;

/// The page's callbacks.
#[derive(Clone, Default)]
pub struct Callbacks {
    /// `onEvent`
    pub on_event: Option<Function>,
    /// `onTranscript`
    pub on_transcript: Option<Function>,
    /// `onStanza`
    pub on_stanza: Option<Function>,
}

impl Callbacks {
    /// Sends `{ step, detail }` to `onEvent`. A throwing callback is the page's problem:
    /// it is ignored, the connection goes on.
    pub fn event(&self, step: &str, detail: Object) {
        if let Some(f) = &self.on_event {
            let ev = Object::new();
            set(&ev, "step", step);
            set(&ev, "detail", detail);
            let _ = f.call1(&JsValue::NULL, &ev);
        }
    }
}

/// Reports a connection to the page. See the module docs.
pub struct Reporter {
    callbacks: Callbacks,
    secrets: Vec<String>,
    ours: Splitter,
    theirs: Splitter,
    /// The last `<stream:features/>` received, for the `features` event.
    features: Option<String>,
    mechanism: Option<String>,
    authenticated: bool,
    /// Our header on the authenticated stream went out: a bind request may follow.
    restarted_after_auth: bool,
    /// A bind request went out before the steps that precede it were reported
    /// (pipelined with the header after `<success/>`).
    bind_pending: bool,
    tls: TlsCell,
}

impl Reporter {
    /// A reporter that redacts `secrets` (the password) wherever they appear.
    pub fn new(callbacks: Callbacks, secrets: Vec<String>, tls: TlsCell) -> Self {
        Reporter {
            callbacks,
            secrets,
            ours: Splitter::default(),
            theirs: Splitter::default(),
            features: None,
            mechanism: None,
            authenticated: false,
            restarted_after_auth: false,
            bind_pending: false,
            tls,
        }
    }

    /// Sends `{ step, detail }` to `onEvent` ([`Callbacks::event`]).
    pub fn event(&self, step: &str, detail: Object) {
        self.callbacks.event(step, detail);
    }

    /// A new connection of the same session (a resumption): what the last one left half
    /// read or half reported is forgotten.
    pub fn new_connection(&mut self) {
        *self = Reporter::new(
            self.callbacks.clone(),
            core::mem::take(&mut self.secrets),
            self.tls.clone(),
        );
    }

    /// Sends `{ dir, text }` to `onTranscript`, redacted.
    pub fn transcript(&self, dir: &str, text: &str) {
        if let Some(f) = &self.callbacks.on_transcript {
            let line = Object::new();
            set(&line, "dir", dir);
            set(&line, "text", redact(text, &self.secrets));
            let _ = f.call1(&JsValue::NULL, &line);
        }
    }

    /// The page's callbacks.
    pub fn callbacks(&self) -> &Callbacks {
        &self.callbacks
    }

    /// `bind` once the steps before it (SASL success, restart, header) were reported.
    fn report_bind(&mut self) {
        if self.bind_pending && self.restarted_after_auth {
            self.bind_pending = false;
            self.event("bind", Object::new());
        }
    }

    fn features_detail(&self) -> Object {
        let detail = Object::new();
        let parsed = self.features.as_deref().and_then(|raw| {
            element::parse(raw, &StreamHeader::default(), StreamFeatures::parse).ok()
        });
        if let Some(f) = parsed {
            set(&detail, "starttls", f.starttls.is_some());
            set(
                &detail,
                "starttlsRequired",
                f.starttls.is_some_and(|s| s.required),
            );
            let mechanisms: Array = f
                .mechanisms
                .unwrap_or_default()
                .iter()
                .map(|m| JsValue::from_str(m))
                .collect();
            set(&detail, "mechanisms", mechanisms);
            set(&detail, "bind", f.bind);
        }
        detail
    }
}

/// `target[name] = value` (cannot fail on a fresh plain object).
pub fn set(target: &Object, name: &str, value: impl Into<JsValue>) {
    let _ = Reflect::set(target, &JsValue::from_str(name), &value.into());
}

/// `{ name: value }`.
pub fn detail(pairs: &[(&str, JsValue)]) -> Object {
    let o = Object::new();
    for (name, value) in pairs {
        set(&o, name, value.clone());
    }
    o
}

/// The value of attribute `name` in the start tag of `element`.
fn attribute<'e>(element: &'e str, name: &str) -> Option<&'e str> {
    let tag_end = element.find('>')?;
    let tag = &element[..tag_end];
    let at = tag.find(&format!(" {name}="))? + name.len() + 2;
    let quote = tag[at..].chars().next()?;
    let value = &tag[at + 1..];
    value.find(quote).map(|end| &value[..end])
}

impl Observer for Reporter {
    fn sent(&mut self, bytes: &[u8]) {
        for item in self.ours.feed(bytes) {
            self.transcript("out", &item);
            if item.starts_with("<auth") {
                self.mechanism = attribute(&item, "mechanism").map(String::from);
            }
            if item.starts_with("<iq") && item.contains(NS_BIND) {
                self.bind_pending = true;
            }
        }
        self.report_bind();
    }

    fn received(&mut self, bytes: &[u8]) {
        for item in self.theirs.feed(bytes) {
            self.transcript("in", &item);
            if item.starts_with("<stream:features") || item.starts_with("<features") {
                self.features = Some(item);
            }
        }
    }

    fn step(&mut self, step: Step) {
        let dir = |d: &str| detail(&[("dir", d.into())]);
        let mechanism = || -> JsValue {
            self.mechanism
                .as_deref()
                .map_or(JsValue::NULL, JsValue::from_str)
        };
        match step {
            Step::HeaderSent => {
                self.event("header", dir("out"));
                self.restarted_after_auth = self.authenticated;
                self.report_bind();
            }
            Step::HeaderReceived => self.event("header", dir("in")),
            Step::FeaturesReceived => self.event("features", self.features_detail()),
            Step::StartTlsSent => self.event("starttls", Object::new()),
            Step::ProceedReceived => self.event("proceed", Object::new()),
            Step::AuthStarted => self.event(
                "sasl",
                detail(&[("state", "started".into()), ("mechanism", mechanism())]),
            ),
            Step::Authenticated => {
                self.authenticated = true;
                self.event(
                    "sasl",
                    detail(&[("state", "success".into()), ("mechanism", mechanism())]),
                )
            }
            Step::StreamRestarted => self.event(
                "restart",
                detail(&[(
                    "after",
                    if self.authenticated { "sasl" } else { "tls" }.into(),
                )]),
            ),
            // The core counts the stream after TLS as a new one (§5.4.3.3) rather than a
            // restart step; for the page it is the seed's "restart" after TLS. (`tls`
            // itself is reported by `tls_established`, with the handshake's details.)
            Step::TlsEstablished => self.event("restart", detail(&[("after", "tls".into())])),
            // Reported once the bound JID is known.
            Step::Bound => {}
            // Receiving-entity steps.
            Step::FeaturesSent | Step::StartTlsReceived | Step::ProceedSent => {}
        }
    }

    fn tls_established(&mut self) {
        // A new stream starts inside TLS (RFC 6120 §5.4.3.3).
        self.ours = Splitter::default();
        self.theirs = Splitter::default();
        let tls = self.tls.borrow().clone();
        match tls {
            Some(t) => {
                self.transcript(
                    "info",
                    &format!(
                        "-- {} handshake ({}), certificate SHA-256 {} ({}) --",
                        t.version, t.cipher, t.fingerprint, t.trust
                    ),
                );
                self.event(
                    "tls",
                    detail(&[
                        ("version", t.version.into()),
                        ("cipher", t.cipher.into()),
                        ("fingerprint", t.fingerprint.into()),
                        ("spki", t.spki.into()),
                        ("trust", t.trust.into()),
                        ("firstUse", t.first_use.into()),
                    ]),
                );
            }
            None => self.transcript("info", "-- TLS handshake --"),
        }
    }
}

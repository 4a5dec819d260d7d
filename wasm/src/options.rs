//! The options of `connect()`, read from the page's object and checked before anything is
//! opened.
//!
//! `ws://` (no TLS) is accepted only to a loopback host (`localhost`, `127.0.0.0/8`,
//! `[::1]`): a local test server or a bridge on the same machine. Anything else must be
//! `wss://`. In `websocket` mode the stream is then reported as unencrypted (`connect`
//! event `secure: false`) and PLAIN still needs `allowPlain`; in `tunnel` mode the XMPP
//! stream is protected by STARTTLS inside the page whatever the WebSocket is.

use js_sys::{Function, Reflect};
use wasm_bindgen::{JsCast, JsValue};
use xmpp_handshake_core::jid::{check_resource, Jid};
use xmpp_handshake_core::sasl::CbPolicy;

use crate::error::Failure;
use crate::events::Callbacks;

/// How the stream travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 7395 to the server's WebSocket endpoint.
    WebSocket,
    /// The raw stream over a WebSocket-to-TCP bridge, STARTTLS in the page.
    #[cfg(feature = "tunnel")]
    Tunnel,
}

/// Checked options.
pub struct Options {
    /// `mode`
    pub mode: Mode,
    /// `url`
    pub url: String,
    /// Whether the WebSocket itself is TLS (`wss://`).
    pub wss: bool,
    /// The account's bare JID (`jid`, any resource dropped). Its localpart is the SASL
    /// user name; its domainpart the stream's `to`, the TLS server name and the
    /// certificate's reference identity (RFC 6120 §13.7.2.1).
    pub jid: Jid,
    /// `password`
    pub password: String,
    /// `resource`
    pub resource: Option<String>,
    /// `ca`: PEM trust anchors, as DER.
    #[cfg(feature = "tunnel")]
    pub anchors: Vec<Vec<u8>>,
    /// `trustFirstUse`
    #[cfg(feature = "tunnel")]
    pub trust_first_use: bool,
    /// `acceptChangedKey`
    #[cfg(feature = "tunnel")]
    pub accept_changed_key: AcceptChangedKey,
    /// `channelBinding`
    pub channel_binding: CbPolicy,
    /// `allowPlain`
    pub allow_plain: bool,
    /// `timeoutMs`: the whole negotiation.
    pub timeout_ms: u32,
    /// `resume` (default true): stream management (XEP-0198) when the server offers it,
    /// and a lost link resumed on a new connection.
    pub resume: bool,
    /// `onEvent`, `onTranscript`, `onStanza`
    pub callbacks: Callbacks,
}

#[cfg(feature = "tunnel")]
/// Whether a changed server key is accepted on this connection (interactive clients, after
/// the user compared the fingerprints of a `pin-changed` error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptChangedKey {
    /// Never (the default): a changed key fails with `pin-changed`.
    No,
    /// Any changed key (`true`).
    Any,
    /// Only a certificate with this SHA-256 (the `newFingerprint` the user saw).
    Only(String),
}

/// The default negotiation time limit.
pub const DEFAULT_TIMEOUT_MS: u32 = 30_000;

fn get(options: &JsValue, name: &str) -> JsValue {
    Reflect::get(options, &JsValue::from_str(name)).unwrap_or(JsValue::UNDEFINED)
}

fn string(options: &JsValue, name: &str, required: bool) -> Result<Option<String>, Failure> {
    let v = get(options, name);
    if v.is_undefined() || v.is_null() {
        return if required {
            Err(Failure::config(format!("option '{name}' is required")))
        } else {
            Ok(None)
        };
    }
    v.as_string()
        .map(Some)
        .ok_or_else(|| Failure::config(format!("option '{name}' must be a string")))
}

fn boolean(options: &JsValue, name: &str) -> Result<bool, Failure> {
    let v = get(options, name);
    if v.is_undefined() || v.is_null() {
        return Ok(false);
    }
    v.as_bool()
        .ok_or_else(|| Failure::config(format!("option '{name}' must be a boolean")))
}

fn callback(options: &JsValue, name: &str) -> Result<Option<Function>, Failure> {
    let v = get(options, name);
    if v.is_undefined() || v.is_null() {
        return Ok(None);
    }
    v.dyn_into::<Function>()
        .map(Some)
        .map_err(|_| Failure::config(format!("option '{name}' must be a function")))
}

/// Reads and checks the page's options.
pub fn parse(options: &JsValue) -> Result<Options, Failure> {
    if !options.is_object() {
        return Err(Failure::config("connect() takes an options object"));
    }
    let mode = match string(options, "mode", true)?.as_deref() {
        Some("websocket") => Mode::WebSocket,
        #[cfg(feature = "tunnel")]
        Some("tunnel") => Mode::Tunnel,
        #[cfg(not(feature = "tunnel"))]
        Some("tunnel") => {
            return Err(Failure::config(
                "this package is the WebSocket-only build (RFC 7395, no TLS in the page): \
                 mode \"tunnel\" needs the full package",
            ))
        }
        other => {
            return Err(Failure::config(format!(
                "mode must be \"websocket\" or \"tunnel\", not \"{}\"",
                other.unwrap_or_default()
            )))
        }
    };
    let url = string(options, "url", true)?.unwrap_or_default();
    let wss = check_url(&url)?;
    let jid = string(options, "jid", true)?.unwrap_or_default();
    let jid = account(&jid)?;
    let password = string(options, "password", true)?.unwrap_or_default();
    let resource = string(options, "resource", false)?.filter(|r| !r.is_empty());
    if let Some(r) = &resource {
        check_resource(r).map_err(|e| Failure::config(format!("resource: {e}")))?;
    }
    #[cfg(feature = "tunnel")]
    let (anchors, accept_changed_key) = tunnel_trust(options, mode)?;
    let channel_binding = match string(options, "channelBinding", false)?.as_deref() {
        None | Some("when-offered") => CbPolicy::WhenOffered,
        Some("off") => CbPolicy::Off,
        Some("required") => CbPolicy::Required,
        Some(other) => {
            return Err(Failure::config(format!(
                "channelBinding must be \"when-offered\", \"off\" or \"required\", not \"{other}\""
            )))
        }
    };
    let timeout = get(options, "timeoutMs");
    let timeout_ms = match timeout.as_f64() {
        None if timeout.is_undefined() || timeout.is_null() => DEFAULT_TIMEOUT_MS,
        Some(ms) if ms >= 1.0 && ms <= f64::from(i32::MAX) => ms as u32,
        _ => return Err(Failure::config("timeoutMs must be a positive number")),
    };
    let resume = get(options, "resume");
    let resume = if resume.is_undefined() || resume.is_null() {
        true
    } else {
        resume
            .as_bool()
            .ok_or_else(|| Failure::config("option 'resume' must be a boolean"))?
    };
    let has_ca = string(options, "ca", false)?.is_some_and(|ca| !ca.trim().is_empty());
    let trust_first_use = boolean(options, "trustFirstUse")?;
    let options = Options {
        mode,
        url,
        wss,
        jid,
        password,
        resource,
        #[cfg(feature = "tunnel")]
        anchors,
        #[cfg(feature = "tunnel")]
        trust_first_use,
        #[cfg(feature = "tunnel")]
        accept_changed_key,
        channel_binding,
        allow_plain: boolean(options, "allowPlain")?,
        timeout_ms,
        resume,
        callbacks: Callbacks {
            on_event: callback(options, "onEvent")?,
            on_transcript: callback(options, "onTranscript")?,
            on_stanza: callback(options, "onStanza")?,
        },
    };
    if options.mode == Mode::WebSocket && (has_ca || trust_first_use) {
        return Err(Failure::config(
            "ca and trustFirstUse apply to tunnel mode only: in websocket mode the browser \
             verifies the wss:// certificate",
        ));
    }
    Ok(options)
}

/// `ca` (PEM anchors, as DER) and `acceptChangedKey` of a tunnel.
#[cfg(feature = "tunnel")]
fn tunnel_trust(
    options: &JsValue,
    mode: Mode,
) -> Result<(Vec<Vec<u8>>, AcceptChangedKey), Failure> {
    if mode != Mode::Tunnel {
        return Ok((Vec::new(), AcceptChangedKey::No));
    }
    let anchors = match string(options, "ca", false)? {
        Some(pem) => pem_certificates(&pem)?,
        None => Vec::new(),
    };
    let accept = get(options, "acceptChangedKey");
    let accept_changed_key = if accept.is_undefined() || accept.is_null() {
        AcceptChangedKey::No
    } else if let Some(b) = accept.as_bool() {
        if b {
            AcceptChangedKey::Any
        } else {
            AcceptChangedKey::No
        }
    } else if let Some(fingerprint) = accept.as_string() {
        AcceptChangedKey::Only(fingerprint.trim().to_ascii_uppercase())
    } else {
        return Err(Failure::config(
            "acceptChangedKey must be a boolean or the new certificate fingerprint",
        ));
    };
    Ok((anchors, accept_changed_key))
}

/// `ws://` only to loopback; returns whether the URL is `wss://`.
pub fn check_url(url: &str) -> Result<bool, Failure> {
    let parsed = web_sys::Url::new(url)
        .map_err(|_| Failure::config(format!("url \"{url}\" is not a URL")))?;
    match parsed.protocol().as_str() {
        "wss:" => Ok(true),
        "ws:" if is_loopback(&parsed.hostname()) => Ok(false),
        "ws:" => Err(Failure::config(format!(
            "ws:// (no TLS) is allowed only to a loopback host; use wss:// for {}",
            parsed.hostname()
        ))),
        other => Err(Failure::config(format!(
            "url must be ws:// or wss://, not {other}//"
        ))),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]` (as the URL parser prints hosts).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "[::1]"
        || is_ipv4_loopback(&host)
}

/// A dotted-decimal IPv4 address in 127.0.0.0/8 (the URL parser prints IPv4 hosts so:
/// four decimal numbers up to 255, no leading zeros). By hand: `core::net`'s parser is
/// ~3 KB of the package.
fn is_ipv4_loopback(host: &str) -> bool {
    let octets: Vec<&str> = host.split('.').collect();
    octets.len() == 4
        && octets[0] == "127"
        && octets.iter().all(|o| {
            (1..=3).contains(&o.len())
                && o.bytes().all(|b| b.is_ascii_digit())
                && !(o.len() > 1 && o.starts_with('0'))
                && o.parse::<u8>().is_ok()
        })
}

/// The bare JID of `jid`, which must be `user@domain` (RFC 7622, parsed by core's [`Jid`]);
/// a resource in the JID is ignored: use the `resource` option.
fn account(jid: &str) -> Result<Jid, Failure> {
    Jid::parse(jid)
        .and_then(Jid::require_local)
        .map(|jid| jid.bare())
        .map_err(|e| Failure::config(format!("jid must be user@domain, not \"{jid}\": {e}")))
}

/// The DER certificates of every `CERTIFICATE` block in `pem`.
#[cfg(feature = "tunnel")]
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, Failure> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let body = &rest[start + BEGIN.len()..];
        let end = body
            .find(END)
            .ok_or_else(|| Failure::config("ca: a certificate block has no END line"))?;
        let b64: String = body[..end]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = xmpp_handshake_core::sasl::base64::decode_strict(&b64)
            .map_err(|_| Failure::config("ca: a certificate block is not valid base64"))?;
        out.push(der);
        rest = &body[end + END.len()..];
    }
    if out.is_empty() {
        return Err(Failure::config(
            "ca must hold PEM certificates (-----BEGIN CERTIFICATE-----)",
        ));
    }
    Ok(out)
}

//! Stream headers (RFC 6120 §4.7) and their RFC 7395 WebSocket equivalent, `<open/>`.

use alloc::string::String;
use core::fmt::Write as _;

use crate::xml::escape::escape_attr;

/// `http://etherx.jabber.org/streams`, the namespace of `<stream:stream>` (§4.8.1).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// `urn:ietf:params:xml:ns:xmpp-framing`, RFC 7395's `<open/>` and `<close/>`.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// The content namespace of a stream (§4.8.2): client-to-server or server-to-server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ContentNamespace {
    /// `jabber:client`
    Client,
    /// `jabber:server`
    Server,
}

impl ContentNamespace {
    /// The namespace name as it appears in `xmlns='…'`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ContentNamespace::Client => "jabber:client",
            ContentNamespace::Server => "jabber:server",
        }
    }

    /// Parses a namespace name; `None` for anything else.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "jabber:client" => Some(ContentNamespace::Client),
            "jabber:server" => Some(ContentNamespace::Server),
            _ => None,
        }
    }
}

/// How the stream is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Framing {
    /// RFC 6120 over TCP: one long `<stream:stream>` document, STARTTLS possible.
    Tcp,
    /// RFC 7395 over WebSocket: `<open/>`/`<close/>`, one element per message, TLS belongs
    /// to the WebSocket (`wss://`), so STARTTLS is never negotiated.
    WebSocket,
}

/// A parsed stream header (§4.7): the attributes of `<stream:stream>` or RFC 7395 `<open/>`.
///
/// Everything in it was sent by the peer and is untrusted; after TLS and after SASL it is
/// replaced, never merged (§4.3.3, §5.4.3.3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    /// `from` (§4.7.1)
    pub from: Option<String>,
    /// `to` (§4.7.2)
    pub to: Option<String>,
    /// `id` (§4.7.3): set by the receiving entity only.
    pub id: Option<String>,
    /// `version` (§4.7.5) as sent, e.g. `1.0`; `None` if absent.
    pub version: Option<String>,
    /// `xml:lang` (§4.7.4)
    pub lang: Option<String>,
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`, or
    /// anything else the peer put there, kept to report `invalid-namespace`).
    pub default_ns: Option<String>,
    /// The prefix bound to [`NS_STREAMS`] (almost always `stream`); empty for RFC 7395.
    pub stream_prefix: String,
}

impl StreamHeader {
    /// The major and minor version numbers, if `version` is present and well formed.
    pub fn version_numbers(&self) -> Option<(u32, u32)> {
        let v = self.version.as_deref()?;
        let (major, minor) = v.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }
}

/// What we put into a header we send.
#[derive(Debug, Clone, Copy)]
pub struct HeaderOut<'a> {
    /// Content namespace.
    pub ns: ContentNamespace,
    /// `from`, if any.
    pub from: Option<&'a str>,
    /// `to`, if any.
    pub to: Option<&'a str>,
    /// `id`: the receiving entity's fresh stream id.
    pub id: Option<&'a str>,
    /// `xml:lang`
    pub lang: Option<&'a str>,
}

impl HeaderOut<'_> {
    /// Serialises the header for `framing`, always with `version='1.0'` (§4.7.5).
    ///
    /// TCP framing gets `<?xml version='1.0'?>` first (§4.2: the XML declaration is allowed
    /// and what every server sends); WebSocket framing gets a self-closed `<open/>`.
    pub fn write(&self, framing: Framing, out: &mut String) {
        match framing {
            Framing::Tcp => out.push_str("<?xml version='1.0'?><stream:stream"),
            Framing::WebSocket => {
                let _ = write!(out, "<open xmlns='{NS_FRAMING}'");
            }
        }
        for (name, value) in [
            ("from", self.from),
            ("to", self.to),
            ("id", self.id),
            ("xml:lang", self.lang),
        ] {
            if let Some(value) = value {
                let _ = write!(out, " {name}='");
                escape_attr(value, out);
                out.push('\'');
            }
        }
        out.push_str(" version='1.0'");
        match framing {
            Framing::Tcp => {
                let _ = write!(
                    out,
                    " xmlns='{}' xmlns:stream='{NS_STREAMS}'>",
                    self.ns.as_str()
                );
            }
            Framing::WebSocket => out.push_str("/>"),
        }
    }
}

/// The stream's closing tag for `framing` (§4.4, RFC 7395 §3.6).
pub fn closing_tag(framing: Framing) -> &'static str {
    match framing {
        Framing::Tcp => "</stream:stream>",
        Framing::WebSocket => "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    }
}

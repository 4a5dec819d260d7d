//! Stream headers (RFC 6120 §4.7) and their RFC 7395 WebSocket equivalent, `<open/>`: the
//! peer's, parsed from the start tag the framer cut into a [`StreamHeader`], and ours,
//! written by [`HeaderOut::write`].

use alloc::string::String;
use alloc::vec::Vec;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::xml::document;
use crate::xml::escape::escape_attr;
use crate::xml::limits::{within_cost, Limits};

pub use crate::stream::namespaces::{NS_FRAMING, NS_STREAMS};

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
    /// The header's other prefixed namespace declarations, `(prefix, namespace)`: they are
    /// in scope for every element of the stream (XML namespaces §6.1; RFC 6120 §4.8.4 lets
    /// the header declare them). jabberd2 declares `xmlns:ack` there and sends
    /// `<ack:ack/>` in its features. At most [`MAX_HEADER_PREFIXES`].
    pub prefixes: Vec<(String, String)>,
}

/// The most prefixed namespace declarations (besides the stream prefix) a stream header may
/// carry; more is `policy-violation` (RFC 6120 §4.9.3.14): each is re-declared around
/// every element the stream carries.
pub const MAX_HEADER_PREFIXES: usize = 8;

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
        // Pieces pushed one by one: no `core::fmt` (`write!`) for the header.
        match framing {
            Framing::Tcp => out.push_str("<?xml version='1.0'?><stream:stream"),
            Framing::WebSocket => {
                out.push_str("<open xmlns='");
                out.push_str(NS_FRAMING);
                out.push('\'');
            }
        }
        for (name, value) in [
            (" from='", self.from),
            (" to='", self.to),
            (" id='", self.id),
            (" xml:lang='", self.lang),
        ] {
            if let Some(value) = value {
                out.push_str(name);
                escape_attr(value, out);
                out.push('\'');
            }
        }
        out.push_str(" version='1.0'");
        match framing {
            Framing::Tcp => {
                out.push_str(" xmlns='");
                out.push_str(self.ns.as_str());
                out.push_str("' xmlns:stream='");
                out.push_str(NS_STREAMS);
                // XEP-0220 §2.1.1: a server stream binds `db` for Server Dialback.
                #[cfg(feature = "dialback")]
                if self.ns == ContentNamespace::Server {
                    out.push_str("' xmlns:db='");
                    out.push_str(crate::dialback::NS);
                }
                out.push_str("'>");
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

/// Parses the peer's stream header (§4.7) from its start tag as the framer cut it, from `<`
/// to `>`, checking its namespaces (§4.8) and version (§4.7.5). The tag's parse is bounded
/// by `limits` like an element's ([`Limits::max_parse_bytes`]).
pub(crate) fn parse(tag: &str, limits: &Limits) -> Result<StreamHeader, StreamError> {
    // The tag is left open by the peer; close it so it parses as a document.
    let open = tag.strip_suffix('>').unwrap_or(tag);
    within_cost(open, 2, limits)?;
    let mut text = String::with_capacity(open.len() + 2);
    text.push_str(open);
    text.push_str("/>");
    let doc = document::parse(&text)?;
    let root = doc.root_element();
    let name = root.tag_name();
    if name.namespace() != Some(NS_STREAMS) || name.name() != "stream" {
        return Err(StreamError::with_text(
            StreamErrorCondition::InvalidNamespace,
            "the stream header must be <stream> in http://etherx.jabber.org/streams",
        ));
    }
    let default_ns = root.default_namespace();
    if default_ns.and_then(ContentNamespace::from_name).is_none() {
        return Err(StreamError::with_text(
            StreamErrorCondition::InvalidNamespace,
            "the default namespace must be jabber:client or jabber:server",
        ));
    }
    // The qualified name's prefix; the namespace check above proves it is bound to
    // NS_STREAMS (an unprefixed name would be in the default namespace).
    let qname = open
        .get(1..)
        .unwrap_or_default()
        .split(|c: char| c.is_ascii_whitespace())
        .next()
        .unwrap_or_default();
    let prefix = qname.split_once(':').map_or("", |(prefix, _)| prefix);
    let mut header = attributes(root, default_ns, prefix)?;
    header.prefixes = declared_prefixes(root, prefix)?;
    Ok(header)
}

/// The prefixed namespace declarations of the header other than the stream prefix (and
/// `xml`, bound by definition), bounded by [`MAX_HEADER_PREFIXES`].
fn declared_prefixes(
    root: roxmltree::Node<'_, '_>,
    stream_prefix: &str,
) -> Result<Vec<(String, String)>, StreamError> {
    let mut prefixes = Vec::new();
    for ns in root.namespaces() {
        let Some(name) = ns.name() else { continue };
        if name == stream_prefix || name == "xml" {
            continue;
        }
        if prefixes.len() == MAX_HEADER_PREFIXES {
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many namespace declarations on the stream header",
            ));
        }
        prefixes.push((String::from(name), String::from(ns.uri())));
    }
    Ok(prefixes)
}

/// The header in an RFC 7395 `<open/>` (§3.3), an element the framer parsed and found in
/// [`NS_FRAMING`]: its attributes as in a stream header; no content namespace or prefix.
pub(crate) fn from_open(open: roxmltree::Node<'_, '_>) -> Result<StreamHeader, StreamError> {
    attributes(open, None, "")
}

/// The header's attributes (§4.7.1 – §4.7.5); a version whose major number is not 1 is
/// `unsupported-version` (§4.7.5); an absent one is left to the state machines.
fn attributes(
    root: roxmltree::Node<'_, '_>,
    default_ns: Option<&str>,
    prefix: &str,
) -> Result<StreamHeader, StreamError> {
    let attribute = |name| root.attribute(name).map(String::from);
    let header = StreamHeader {
        from: attribute("from"),
        to: attribute("to"),
        id: attribute("id"),
        version: attribute("version"),
        lang: root
            .attribute((roxmltree::NS_XML_URI, "lang"))
            .map(String::from),
        default_ns: default_ns.map(String::from),
        stream_prefix: String::from(prefix),
        prefixes: Vec::new(),
    };
    if header.version.is_some() && !matches!(header.version_numbers(), Some((1, _))) {
        return Err(StreamError::with_text(
            StreamErrorCondition::UnsupportedVersion,
            "only XMPP version 1.x is supported",
        ));
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    use StreamErrorCondition as C;

    const HEADER: &str = "<stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";

    fn parsed(tag: &str) -> Result<StreamHeader, StreamError> {
        parse(tag, &Limits::default())
    }

    fn condition(tag: &str) -> Option<C> {
        parsed(tag).err().map(|e| e.condition)
    }

    #[test]
    fn header_fields_are_parsed() {
        assert_eq!(
            parsed(
                "<s:stream xmlns:s='http://etherx.jabber.org/streams' \
                 xmlns='jabber:server' from='a.example' to='b.example' id='x&apos;1' \
                 version='1.1' xml:lang='de'>"
            ),
            Ok(StreamHeader {
                from: Some("a.example".into()),
                to: Some("b.example".into()),
                id: Some("x'1".into()),
                version: Some("1.1".into()),
                lang: Some("de".into()),
                default_ns: Some("jabber:server".into()),
                stream_prefix: "s".into(),
                prefixes: Vec::new(),
            })
        );
    }

    #[test]
    fn header_without_version_is_left_to_the_machines() {
        let header = parsed(
            "<stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'>",
        );
        assert_eq!(header.map(|h| h.version), Ok(None));
    }

    #[test]
    fn header_in_wrong_namespace_is_invalid_namespace() {
        for header in [
            // Default namespace neither jabber:client nor jabber:server.
            "<stream:stream xmlns='jabber:foo' xmlns:stream='http://etherx.jabber.org/streams'>",
            "<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
            // Stream prefix bound to something else.
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://example.com/streams'>",
            // Right namespace, wrong element name.
            "<stream:foo xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
            // No prefix: the element is in jabber:client.
            "<stream xmlns='jabber:client'>",
        ] {
            assert_eq!(condition(header), Some(C::InvalidNamespace), "{header}");
        }
        assert_eq!(
            condition("<stream:stream xmlns='jabber:client'>"),
            Some(C::BadNamespacePrefix)
        );
    }

    #[test]
    fn version_2_is_unsupported_version() {
        for version in ["2.0", "0.9", "x"] {
            let header = HEADER.replace("1.0", version);
            assert_eq!(condition(&header), Some(C::UnsupportedVersion));
        }
    }

    #[test]
    fn other_prefixes_are_kept_and_bounded() {
        let tag = "<stream:stream xmlns='jabber:client' \
                   xmlns:stream='http://etherx.jabber.org/streams' \
                   xmlns:ack='http://www.xmpp.org/extensions/xep-0198.html#ns' version='1.0'>";
        let header = parsed(tag).unwrap();
        assert_eq!(
            header.prefixes,
            [(
                String::from("ack"),
                String::from("http://www.xmpp.org/extensions/xep-0198.html#ns")
            )]
        );
        assert_eq!(header.stream_prefix, "stream");
        let many: String = (0..=MAX_HEADER_PREFIXES)
            .map(|i| alloc::format!(" xmlns:p{i}='urn:x:{i}'"))
            .collect();
        let tag = alloc::format!(
            "<stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams'{many}>"
        );
        assert_eq!(condition(&tag), Some(C::PolicyViolation));
    }

    #[test]
    fn the_header_we_write_parses_back() {
        let ours = HeaderOut {
            ns: ContentNamespace::Server,
            from: Some("a.example"),
            to: Some("b'example"),
            id: Some("x<1"),
            lang: Some("en"),
        };
        let mut out = String::new();
        ours.write(Framing::Tcp, &mut out);
        let tag = out.strip_prefix("<?xml version='1.0'?>").unwrap();
        assert_eq!(
            parsed(tag),
            Ok(StreamHeader {
                from: Some("a.example".into()),
                to: Some("b'example".into()),
                id: Some("x<1".into()),
                version: Some("1.0".into()),
                lang: Some("en".into()),
                default_ns: Some("jabber:server".into()),
                stream_prefix: "stream".into(),
                // XEP-0220 §2.1.1: a server header binds the dialback prefix.
                #[cfg(feature = "dialback")]
                prefixes: alloc::vec![("db".into(), crate::dialback::NS.into())],
                #[cfg(not(feature = "dialback"))]
                prefixes: alloc::vec![],
            })
        );
    }
}

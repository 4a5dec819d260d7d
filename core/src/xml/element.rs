//! Parsing one top-level element with roxmltree, the stream's namespaces in scope.
//!
//! The framer hands out each top-level element as raw text (RFC 6120 §4.1, §11). On its own
//! that text is not a namespace-well-formed document: a stanza inherits the stream's default
//! namespace (`jabber:client` or `jabber:server`, §4.8.2) and may use the stream prefix
//! (`<stream:features/>`, §4.8.5). So [`parse`] wraps it in a synthetic root that re-declares
//! both, exactly as the stream header did, and parses that with DTDs refused (§11.1) and a
//! node count bounded by the element's size.
//!
//! roxmltree reserves its tree before it reads a byte: one node record per `<` and one
//! attribute record per `=` anywhere in the text, text included. So the memory a parse takes
//! depends on what the element contains, not only on its size (4 KiB of `=` in a message
//! body asks for ~96 KiB on a 32-bit device). [`parse_cost`] bounds that memory from counts
//! taken before parsing, and [`parse_within`] refuses an element whose bound exceeds
//! [`Limits::max_parse_bytes`] with `policy-violation` (§4.9.3.14, §13.12) instead of
//! parsing it.

use alloc::string::String;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{ContentNamespace, StreamHeader, NS_STREAMS};
use crate::xml::document;
use crate::xml::escape::escape_attr;
use crate::xml::limits::{document_cost, Limits};

// Their home was this module; the paths stay for the crates that use them.
pub use crate::xml::limits::{parse_cost_ceiling, too_costly};

/// [`parse_within`] with the default [`Limits`].
pub fn parse<R>(
    raw: &str,
    header: &StreamHeader,
    f: impl FnOnce(roxmltree::Node<'_, '_>) -> R,
) -> Result<R, StreamError> {
    parse_within(raw, header, &Limits::default(), f)
}

/// Parses `raw` (one complete top-level element from the framer) with the namespace
/// declarations of `header` in scope, and calls `f` with the element.
///
/// An element whose [`parse_cost`] exceeds `limits.max_parse_bytes` is not parsed: it is
/// `policy-violation` (§4.9.3.14, §13.12), see [`too_costly`].
///
/// For RFC 7395 framing (no stream prefix in `header`) the prefix `stream` is declared, and
/// the default namespace is `jabber:client` unless the header names one (RFC 7395 §3.3).
///
/// Errors: a prefix bound nowhere is `bad-namespace-prefix` (§4.9.3.2), a DTD or an entity
/// other than the five predefined ones is `restricted-xml` (§4.9.3.18), anything else that is
/// not one well-formed element is `not-well-formed` (§4.9.3.13).
pub fn parse_within<R>(
    raw: &str,
    header: &StreamHeader,
    limits: &Limits,
    f: impl FnOnce(roxmltree::Node<'_, '_>) -> R,
) -> Result<R, StreamError> {
    wrap(raw, header, limits)
        .map_err(|_| too_costly())?
        .parse(f)
}

/// One element inside the synthetic root, its parse within the bound: made by [`wrap`],
/// parsed by [`Wrapped::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wrapped {
    text: String,
    /// Where the element is in `text`.
    raw: core::ops::Range<usize>,
}

/// `raw` inside the synthetic root that declares `header`'s namespaces, or, when its
/// [`parse_cost`] exceeds `limits.max_parse_bytes`, that cost (nothing allocated).
pub fn wrap(raw: &str, header: &StreamHeader, limits: &Limits) -> Result<Wrapped, usize> {
    let (prefix, ns) = scope(header);
    let len = wrapped_len(raw, header);
    let cost = document_cost(raw, len - raw.len(), header.prefixes.len(), limits);
    if cost > limits.max_parse_bytes {
        return Err(cost);
    }
    // `<p:stream xmlns='ns' xmlns:p='NS_STREAMS' xmlns:q='…'…>` + raw + `</p:stream>`.
    let mut text = String::with_capacity(len);
    text.push('<');
    text.push_str(prefix);
    text.push_str(":stream xmlns='");
    escape_attr(ns, &mut text);
    text.push('\'');
    declare(prefix, NS_STREAMS, &mut text);
    for (other, uri) in &header.prefixes {
        declare(other, uri, &mut text);
    }
    text.push('>');
    let start = text.len();
    text.push_str(raw);
    let raw = start..text.len();
    text.push_str("</");
    text.push_str(prefix);
    text.push_str(":stream>");
    Ok(Wrapped { text, raw })
}

/// ` xmlns:prefix='uri'`, the namespace escaped.
fn declare(prefix: &str, uri: &str, text: &mut String) {
    text.push_str(" xmlns:");
    text.push_str(prefix);
    text.push_str("='");
    escape_attr(uri, text);
    text.push('\'');
}

impl Wrapped {
    /// Parses the element and calls `f` with it; errors as [`parse_within`].
    pub fn parse<R>(&self, f: impl FnOnce(roxmltree::Node<'_, '_>) -> R) -> Result<R, StreamError> {
        let doc = self.document()?;
        Ok(f(only_element(&doc)?))
    }

    /// The element as it was given to [`wrap`].
    pub fn raw(&self) -> &str {
        self.text.get(self.raw.clone()).unwrap_or_default()
    }

    /// The synthetic root's document. Not generic, unlike [`Wrapped::parse`]: one copy of
    /// the parse however many callers.
    fn document(&self) -> Result<roxmltree::Document<'_>, StreamError> {
        document::parse(&self.text)
    }
}

/// The one element inside the synthetic root of `doc`.
fn only_element<'a, 'input>(
    doc: &'a roxmltree::Document<'input>,
) -> Result<roxmltree::Node<'a, 'input>, StreamError> {
    let mut elements = doc.root_element().children().filter(|n| n.is_element());
    match (elements.next(), elements.next()) {
        (Some(element), None) => Ok(element),
        _ => Err(StreamError::with_text(
            StreamErrorCondition::NotWellFormed,
            "expected exactly one top-level element",
        )),
    }
}

/// The stream prefix and default namespace the synthetic root declares.
fn scope(header: &StreamHeader) -> (&str, &str) {
    let prefix = match header.stream_prefix.as_str() {
        "" => "stream",
        prefix => prefix,
    };
    let ns = header
        .default_ns
        .as_deref()
        .unwrap_or(ContentNamespace::Client.as_str());
    (prefix, ns)
}

/// Bytes [`wrap`] allocates for `raw`; namespaces are escaped, so they may take up to six
/// bytes per byte (`&apos;`).
fn wrapped_len(raw: &str, header: &StreamHeader) -> usize {
    let (prefix, ns) = scope(header);
    let declarations: usize = header
        .prefixes
        .iter()
        .map(|(other, uri)| other.len() + 6 * uri.len() + 10)
        .sum();
    raw.len() + 3 * prefix.len() + 6 * ns.len() + NS_STREAMS.len() + 40 + declarations
}

/// An upper bound of the heap [`parse_within`] takes to parse `raw` (RFC 6120 §13.12): the
/// wrapped copy; per `<` and per `=` in it, the node and attribute records roxmltree reserves
/// for them (`PER_LT`, `PER_EQ` in [`crate::xml::limits`]); per namespace declaration (each
/// has `xmlns` in its name) its record and the copy of the namespaces in scope the declaring
/// element gets (at most every declaration of the enclosing tags, bounded by `max_depth` and
/// `max_attributes`); the temporary attributes of one tag; and, when the element has
/// text roxmltree must decode (`&`, a CR, a tab or newline in an attribute value, CDATA), up to three
/// times its size for the decoded copies and the buffers they are built in.
///
/// Counting is one linear pass; the bound is checked by `core/tests/memory_bound.rs`
/// against a counting allocator on adversarial elements.
pub fn parse_cost(raw: &str, header: &StreamHeader, limits: &Limits) -> usize {
    document_cost(
        raw,
        wrapped_len(raw, header) - raw.len(),
        header.prefixes.len(),
        limits,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    fn client_header() -> StreamHeader {
        StreamHeader {
            default_ns: Some("jabber:client".into()),
            stream_prefix: "stream".into(),
            prefixes: Vec::new(),
            version: Some("1.0".into()),
            ..StreamHeader::default()
        }
    }

    #[test]
    fn stanza_inherits_the_stream_default_namespace() {
        let ns = parse(
            "<message to='a@b'><body>hi</body></message>",
            &client_header(),
            |n| {
                (
                    n.tag_name().namespace().map(ToString::to_string),
                    n.tag_name().name().to_string(),
                    n.attribute("to").map(ToString::to_string),
                )
            },
        )
        .unwrap();
        assert_eq!(
            ns,
            (
                Some("jabber:client".into()),
                "message".into(),
                Some("a@b".into())
            )
        );
    }

    #[test]
    fn stream_prefix_resolves_to_the_streams_namespace() {
        let raw = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>\
                   <required/></starttls></stream:features>";
        let (ns, children) = parse(raw, &client_header(), |n| {
            (
                n.tag_name().namespace().map(ToString::to_string),
                n.children().filter(|c| c.is_element()).count(),
            )
        })
        .unwrap();
        assert_eq!(ns.as_deref(), Some(NS_STREAMS));
        assert_eq!(children, 1);
    }

    #[test]
    fn other_stream_prefix_is_redeclared() {
        let header = StreamHeader {
            default_ns: Some("jabber:server".into()),
            stream_prefix: "s".into(),
            ..StreamHeader::default()
        };
        let names = parse("<s:features/>", &header, |n| {
            n.tag_name().namespace().map(ToString::to_string)
        })
        .unwrap();
        assert_eq!(names.as_deref(), Some(NS_STREAMS));
        let ns = parse("<iq/>", &header, |n| {
            n.tag_name().namespace().map(ToString::to_string)
        })
        .unwrap();
        assert_eq!(ns.as_deref(), Some("jabber:server"));
    }

    #[test]
    fn websocket_header_defaults_to_jabber_client() {
        let header = StreamHeader::default();
        let ns = parse("<iq type='get' id='1'/>", &header, |n| {
            n.tag_name().namespace().map(ToString::to_string)
        })
        .unwrap();
        assert_eq!(ns.as_deref(), Some("jabber:client"));
        let ns = parse("<stream:features/>", &header, |n| {
            n.tag_name().namespace().map(ToString::to_string)
        })
        .unwrap();
        assert_eq!(ns.as_deref(), Some(NS_STREAMS));
    }

    #[test]
    fn prefixes_declared_on_the_header_are_in_scope() {
        // jabberd2 2.7: `xmlns:ack` on the header, `<ack:ack/>` in the features.
        let header = StreamHeader {
            prefixes: alloc::vec![(
                "ack".into(),
                "http://www.xmpp.org/extensions/xep-0198.html#ns".into()
            )],
            ..client_header()
        };
        let raw = "<stream:features><ack:ack/><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>\
                   </stream:features>";
        let first = parse(raw, &header, |n| {
            let child = n.first_element_child().unwrap();
            child.tag_name().namespace().map(ToString::to_string)
        })
        .unwrap();
        assert_eq!(
            first.as_deref(),
            Some("http://www.xmpp.org/extensions/xep-0198.html#ns")
        );
        // Without the header's declaration the same element is refused.
        let e = parse(raw, &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::BadNamespacePrefix);
        // The declarations are counted in the parse's bound.
        let limits = Limits::default();
        assert!(parse_cost(raw, &header, &limits) > parse_cost(raw, &client_header(), &limits));
    }

    #[test]
    fn unknown_prefix_is_bad_namespace_prefix() {
        let e = parse("<foo:bar/>", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::BadNamespacePrefix);
    }

    #[test]
    fn mismatched_tags_are_not_well_formed() {
        let e = parse("<a><b></a></b>", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::NotWellFormed);
    }

    #[test]
    fn two_elements_are_not_well_formed() {
        let e = parse("<a/><b/>", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::NotWellFormed);
        let e = parse("text", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::NotWellFormed);
    }

    #[test]
    fn raw_cannot_close_the_synthetic_root() {
        let e = parse("<a/></stream:stream><b/>", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::NotWellFormed);
    }

    #[test]
    fn undefined_entity_is_restricted_xml() {
        let e = parse("<a>&foo;</a>", &client_header(), |_| ()).unwrap_err();
        assert_eq!(e.condition, StreamErrorCondition::RestrictedXml);
    }

    #[test]
    fn predefined_entities_and_character_references_are_decoded() {
        let text = parse(
            "<body>&lt;&amp;&#65;&#x42;<![CDATA[<c>]]></body>",
            &client_header(),
            |n| n.text().map(ToString::to_string),
        )
        .unwrap();
        assert_eq!(text.as_deref(), Some("<&AB<c>"));
    }

    #[test]
    fn node_count_is_bounded_by_size() {
        // Deep but small: accepted.
        let mut raw = String::new();
        let depth = 200;
        for _ in 0..depth {
            raw.push_str("<a>");
        }
        for _ in 0..depth {
            raw.push_str("</a>");
        }
        assert_eq!(parse(&raw, &client_header(), |_| ()), Ok(()));
        // Many nodes, each as small as it gets: still within the bound.
        let raw: String = core::iter::once("<a>")
            .chain(core::iter::repeat_n("<b/>x", 500))
            .chain(core::iter::once("</a>"))
            .collect::<Vec<_>>()
            .concat();
        assert_eq!(
            parse(&raw, &client_header(), |n| n.children().count()),
            Ok(1000)
        );
    }
}

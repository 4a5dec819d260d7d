//! Parsing one top-level element with roxmltree, the stream's namespaces in scope.
//!
//! The framer hands out each top-level element as raw text (RFC 6120 §4.1, §11). On its own
//! that text is not a namespace-well-formed document: a stanza inherits the stream's default
//! namespace (`jabber:client` or `jabber:server`, §4.8.2) and may use the stream prefix
//! (`<stream:features/>`, §4.8.5). So [`parse`] wraps it in a synthetic root that re-declares
//! both, exactly as the stream header did, and parses that with DTDs refused (§11.1) and a
//! node count bounded by the element's size.

use alloc::string::String;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{ContentNamespace, StreamHeader, NS_STREAMS};
use crate::xml::escape::escape_attr;

/// Parses `raw` (one complete top-level element from the framer) with the namespace
/// declarations of `header` in scope, and calls `f` with the element.
///
/// For RFC 7395 framing (no stream prefix in `header`) the prefix `stream` is declared, and
/// the default namespace is `jabber:client` unless the header names one (RFC 7395 §3.3).
///
/// Errors: a prefix bound nowhere is `bad-namespace-prefix` (§4.9.3.2), a DTD or an entity
/// other than the five predefined ones is `restricted-xml` (§4.9.3.18), anything else that is
/// not one well-formed element is `not-well-formed` (§4.9.3.13).
pub fn parse<R>(
    raw: &str,
    header: &StreamHeader,
    f: impl FnOnce(roxmltree::Node<'_, '_>) -> R,
) -> Result<R, StreamError> {
    let prefix = match header.stream_prefix.as_str() {
        "" => "stream",
        prefix => prefix,
    };
    let ns = header
        .default_ns
        .as_deref()
        .unwrap_or(ContentNamespace::Client.as_str());

    // `<p:stream xmlns='ns' xmlns:p='NS_STREAMS'>` + raw + `</p:stream>`; the namespace
    // is escaped, so it may take up to six bytes per byte (`&apos;`).
    let mut text =
        String::with_capacity(raw.len() + 3 * prefix.len() + 6 * ns.len() + NS_STREAMS.len() + 40);
    text.push('<');
    text.push_str(prefix);
    text.push_str(":stream xmlns='");
    escape_attr(ns, &mut text);
    text.push_str("' xmlns:");
    text.push_str(prefix);
    text.push_str("='");
    text.push_str(NS_STREAMS);
    text.push_str("'>");
    text.push_str(raw);
    text.push_str("</");
    text.push_str(prefix);
    text.push_str(":stream>");

    let doc = roxmltree::Document::parse_with_options(&text, parsing_options(text.len()))
        .map_err(xml_error)?;
    let mut elements = doc.root_element().children().filter(|n| n.is_element());
    match (elements.next(), elements.next()) {
        (Some(element), None) => Ok(f(element)),
        _ => Err(StreamError::with_text(
            StreamErrorCondition::NotWellFormed,
            "expected exactly one top-level element",
        )),
    }
}

/// roxmltree options for a document of `len` bytes: no DTD (§11.1), and at most one node per
/// two bytes (the smallest element, `<a/>`, takes four bytes; text between two elements at
/// least one), so a hostile element cannot make the tree larger than its own size implies.
pub(crate) fn parsing_options<'a>(len: usize) -> roxmltree::ParsingOptions<'a> {
    roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::try_from(len / 2 + 4).unwrap_or(u32::MAX),
        ..roxmltree::ParsingOptions::default()
    }
}

/// The stream error condition for a roxmltree error (§4.9.3).
pub(crate) fn xml_error(error: roxmltree::Error) -> StreamError {
    use roxmltree::Error as E;
    let (condition, text) = match error {
        E::UnknownNamespace(..) => (
            StreamErrorCondition::BadNamespacePrefix,
            "namespace prefix not declared",
        ),
        E::DtdDetected => (StreamErrorCondition::RestrictedXml, "DTD not allowed"),
        E::UnknownEntityReference(..) => (
            StreamErrorCondition::RestrictedXml,
            "entity reference other than the predefined ones",
        ),
        E::NodesLimitReached | E::AttributesLimitReached | E::NamespacesLimitReached => {
            (StreamErrorCondition::PolicyViolation, "element too complex")
        }
        E::UnexpectedCloseTag(..) => (StreamErrorCondition::NotWellFormed, "mismatched end tag"),
        E::DuplicatedAttribute(..) | E::DuplicatedNamespace(..) => {
            (StreamErrorCondition::NotWellFormed, "duplicated attribute")
        }
        _ => (StreamErrorCondition::NotWellFormed, "malformed XML"),
    };
    StreamError::with_text(condition, text)
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

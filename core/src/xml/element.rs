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

use crate::xml::framer::Limits;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{ContentNamespace, StreamHeader, NS_STREAMS};
use crate::xml::escape::escape_attr;

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
pub struct Wrapped {
    text: String,
    /// Where the element is in `text`.
    raw: core::ops::Range<usize>,
}

/// `raw` inside the synthetic root that declares `header`'s namespaces, or, when its
/// [`parse_cost`] exceeds `limits.max_parse_bytes`, that cost (nothing allocated).
pub fn wrap(raw: &str, header: &StreamHeader, limits: &Limits) -> Result<Wrapped, usize> {
    let (prefix, ns) = scope(header);
    let len = wrapped_len(raw, prefix, ns);
    let cost = document_cost(raw, len - raw.len(), limits);
    if cost > limits.max_parse_bytes {
        return Err(cost);
    }
    // `<p:stream xmlns='ns' xmlns:p='NS_STREAMS'>` + raw + `</p:stream>`.
    let mut text = String::with_capacity(len);
    text.push('<');
    text.push_str(prefix);
    text.push_str(":stream xmlns='");
    escape_attr(ns, &mut text);
    text.push_str("' xmlns:");
    text.push_str(prefix);
    text.push_str("='");
    text.push_str(NS_STREAMS);
    text.push_str("'>");
    let start = text.len();
    text.push_str(raw);
    let raw = start..text.len();
    text.push_str("</");
    text.push_str(prefix);
    text.push_str(":stream>");
    Ok(Wrapped { text, raw })
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
        let text = &self.text;
        roxmltree::Document::parse_with_options(text, parsing_options(text.len()))
            .map_err(xml_error)
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

/// The stream error for an element refused by [`Limits::max_parse_bytes`]:
/// `policy-violation` (§4.9.3.14), the peer sent more than we are willing to process (§13.12).
pub fn too_costly() -> StreamError {
    StreamError::with_text(
        StreamErrorCondition::PolicyViolation,
        "element needs more memory to parse than allowed",
    )
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

/// Bytes [`wrap`] allocates for `raw`; the namespace is escaped, so it may take up to six
/// bytes per byte (`&apos;`).
fn wrapped_len(raw: &str, prefix: &str, ns: &str) -> usize {
    raw.len() + 3 * prefix.len() + 6 * ns.len() + NS_STREAMS.len() + 40
}

/// One machine word.
const WORD: usize = core::mem::size_of::<usize>();
/// Upper bound of roxmltree 0.21's (private) node record: four `Option<NodeId>` (16 bytes),
/// the widest node kind (an element: namespace index, `&str` name, two `u32` ranges, plus
/// a tag: 28 + 3 words), and the `positions` feature's `Range<usize>` (2 words).
const NODE_RECORD: usize = 44 + 5 * WORD;
/// Upper bound of roxmltree's attribute record: a name (index and `&str`, 3 words), a value
/// (`&str` or `Arc<str>` with a tag, 3 words), and with `positions` a range and two small
/// lengths (3 words).
const ATTR_RECORD: usize = 9 * WORD;
/// Upper bound of roxmltree's temporary attribute record (prefix, local name, value, range
/// and lengths: 10 words), reserved 16 at a time, up to the most attributes of one tag.
const TEMP_ATTR_RECORD: usize = 10 * WORD;
/// Upper bound of roxmltree's namespace record (an optional `&str` prefix and a value, 5
/// words) plus its two `u16` indices.
const NS_RECORD: usize = 5 * WORD + 4;
/// A `Vec` grown by doubling holds at most 2× its length, and while it moves the old and
/// the new buffer both exist: at most 3× its length at the peak.
const GROWTH: usize = 3;
/// Per `<` (from which roxmltree reserves its nodes): the node records (at most two nodes
/// per `<`, an element and the text before it, so the vector grows at most once: 3× the
/// reservation, then `shrink_to_fit` copies: < 4×), the pending-subtree index (`u32`) and
/// the prefix and text-chunk stacks (2 and 3 words) with growth, and an `Arc` header (2
/// words) for a text that is decoded.
const PER_LT: usize = 4 * NODE_RECORD + GROWTH * (2 * 4 + 5 * WORD) + 2 * WORD;
/// Per `=` (from which roxmltree reserves its attributes, never more than one per `=`):
/// the record, once more while `shrink_to_fit` copies it, and an `Arc` header for a value
/// that is normalized.
const PER_EQ: usize = 2 * ATTR_RECORD + 2 * WORD;
/// Fixed: roxmltree's context and the first namespace records.
const FIXED: usize = 512;

/// An upper bound of the heap [`parse_within`] takes to parse `raw` (RFC 6120 §13.12): the
/// wrapped copy; per `<` and per `=` in it, the node and attribute records roxmltree reserves
/// for them (`PER_LT`, `PER_EQ`); per namespace declaration (each has `xmlns` in its
/// name) its record and the copy of the namespaces in scope the declaring element gets
/// (at most every declaration of the enclosing tags, bounded by `max_depth` and
/// `max_attributes`); the temporary attributes of one tag; and, when the element has
/// text roxmltree must decode (`&`, a CR, a tab or newline in an attribute value, CDATA), up to three
/// times its size for the decoded copies and the buffers they are built in.
///
/// Counting is one linear pass; the bound is checked by `core/tests/memory_bound.rs`
/// against a counting allocator on adversarial elements.
pub fn parse_cost(raw: &str, header: &StreamHeader, limits: &Limits) -> usize {
    let (prefix, ns) = scope(header);
    document_cost(raw, wrapped_len(raw, prefix, ns) - raw.len(), limits)
}

/// `Ok` when `text` (a whole document, with `extra` bytes as in [`document_cost`]) is within
/// `limits.max_parse_bytes`, else [`too_costly`].
#[inline(never)]
pub(crate) fn within_cost(text: &str, extra: usize, limits: &Limits) -> Result<(), StreamError> {
    if document_cost(text, extra, limits) > limits.max_parse_bytes {
        return Err(too_costly());
    }
    Ok(())
}

/// [`parse_cost`] of `text` with `extra` bytes around it that hold at most two `<`, two `=`
/// and two namespace declarations (the synthetic root, or `/>` closing a stream header).
pub(crate) fn document_cost(text: &str, extra: usize, limits: &Limits) -> usize {
    let bytes = text.as_bytes();
    let len = bytes.len().saturating_add(extra);
    // One pass (a loop is smaller on a device than one memchr search per byte value):
    // records per `<` and `=` (two of each around the text); `<!` inside is CDATA (the
    // framer refuses comments and DTDs), which roxmltree may copy when text runs into it;
    // `xmlns` may start a declaration (two around the text, and `xml`'s, which roxmltree
    // declares itself); a reference or CR anywhere, a tab or newline in an attribute value
    // (newlines in text are kept as they are) make it decode a copy.
    let (mut lt, mut eq, mut declarations) = (2usize, 2usize, 3usize);
    let mut decoded = false;
    // Inside a tag; the quote of the attribute value we are in (0: none). `<` cannot be
    // in a value (the framer refuses it); quotes in CDATA confuse this, but CDATA is
    // counted as decoded anyway.
    let (mut in_tag, mut quote) = (false, 0u8);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'<' => {
                lt += 1;
                decoded |= bytes.get(i + 1) == Some(&b'!');
                in_tag = true;
            }
            b'=' => eq += 1,
            b'x' if bytes.get(i..i + 5) == Some(b"xmlns") => declarations += 1,
            b'&' | b'\r' => decoded = true,
            b'\t' | b'\n' => decoded |= quote != 0,
            b'\'' | b'"' if in_tag && (quote == 0 || quote == b) => quote ^= b,
            b'>' if quote == 0 => in_tag = false,
            _ => {}
        }
    }
    let in_scope = declarations.min(
        limits
            .max_depth
            .saturating_add(1)
            .saturating_mul(limits.max_attributes),
    ) + 3;
    let tags = limits
        .max_attributes
        .max(16)
        .saturating_mul(GROWTH * TEMP_ATTR_RECORD);
    let per_declaration = in_scope.saturating_mul(GROWTH * 2) + GROWTH * NS_RECORD;
    // (count, bytes each); the root's namespace value is decoded when it has an escaped
    // quote or `&`, hence `extra` twice more.
    let terms = [
        (len, if decoded { 4 } else { 1 }),
        (extra, 2),
        (lt, PER_LT),
        (eq, PER_EQ),
        (declarations, per_declaration),
        (tags, 1),
        (FIXED, 1),
    ];
    terms.iter().fold(0usize, |sum, &(n, each)| {
        sum.saturating_add(n.saturating_mul(each))
    })
}

/// The largest [`parse_cost`] of any element `limits` let through (`max_parse_bytes`
/// aside): `max_element_bytes` of which every byte is a `<` or a `=` (CDATA full of `<`,
/// text full of `=`), text to decode, a declaration in every five bytes, under a header
/// namespace of `max_header_bytes`. As [`Limits::max_parse_bytes`] it refuses no element
/// the other limits allow.
pub const fn parse_cost_ceiling(limits: &Limits) -> usize {
    let max_attributes = limits.max_attributes;
    let max_depth = limits.max_depth;
    let len = limits.max_element_bytes + 6 * limits.max_header_bytes + NS_STREAMS.len() + 64;
    let per_byte = if PER_LT > PER_EQ { PER_LT } else { PER_EQ };
    let declarations = len / 5 + 3;
    let nesting = (max_depth + 1) * max_attributes;
    let in_scope = if declarations < nesting {
        declarations
    } else {
        nesting
    } + 3;
    let tags = GROWTH
        * if max_attributes > 16 {
            max_attributes
        } else {
            16
        }
        * TEMP_ATTR_RECORD;
    6 * len
        + len * per_byte
        + declarations * (GROWTH * NS_RECORD + GROWTH * 2 * in_scope)
        + tags
        + FIXED
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

//! Bounds on what a peer may make us hold (RFC 6120 §13.12: resource exhaustion), and the
//! bound on the memory one parse takes.
//!
//! [`Limits`] sizes the framer's buffer ([`crate::xml::framer::Framer`]) and bounds the stream
//! header, nesting, attributes and the heap of one element's parse. roxmltree reserves its
//! tree before it reads a byte, one record per `<` and per `=` of the text, so that heap
//! depends on what an element contains, not only on its size: `document_cost` bounds it
//! from counts taken before parsing ([`crate::xml::element::parse_cost`] for an element,
//! `within_cost` for the stream header and RFC 7395 `<open/>`), and a document over
//! [`Limits::max_parse_bytes`] is refused with [`too_costly`] instead of parsed.

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::namespaces::NS_STREAMS;

/// Bounds on what a peer may make us hold (RFC 6120 §13.12: resource exhaustion).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element, in bytes; also the framer's buffer size.
    pub max_element_bytes: usize,
    /// Largest stream header, in bytes.
    pub max_header_bytes: usize,
    /// Deepest element nesting inside a top-level element.
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
    /// Most heap one element's parse may take, as bounded by
    /// [`crate::xml::element::parse_cost`] before parsing: roxmltree reserves records per `<`
    /// and per `=` of the text, so a small element can cost far more than its size. A larger
    /// element is refused with `policy-violation` (§4.9.3.14, §13.12). The default,
    /// [`parse_cost_ceiling`] of the other defaults (~140 MB on 64-bit targets), refuses no
    /// element they allow; a device sets what its heap can spare.
    pub max_parse_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let limits = Limits {
            max_element_bytes: 64 * 1024,
            max_header_bytes: 2048,
            max_depth: 32,
            max_attributes: 32,
            max_parse_bytes: 0,
        };
        Limits {
            max_parse_bytes: parse_cost_ceiling(&limits),
            ..limits
        }
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

/// `Ok` when `text` (a whole document, with `extra` bytes as in [`document_cost`]) is within
/// `limits.max_parse_bytes`, else [`too_costly`].
#[inline(never)]
pub(crate) fn within_cost(text: &str, extra: usize, limits: &Limits) -> Result<(), StreamError> {
    if document_cost(text, extra, 0, limits) > limits.max_parse_bytes {
        return Err(too_costly());
    }
    Ok(())
}

/// [`crate::xml::element::parse_cost`] of `text` with `extra` bytes around it that hold at
/// most two `<`, and two namespace declarations besides `more_declarations` (the synthetic
/// root with the header's other prefixes, or `/>` closing a stream header).
pub(crate) fn document_cost(
    text: &str,
    extra: usize,
    more_declarations: usize,
    limits: &Limits,
) -> usize {
    let bytes = text.as_bytes();
    let len = bytes.len().saturating_add(extra);
    // One pass (a loop is smaller on a device than one memchr search per byte value):
    // records per `<` and `=` (two of each around the text); `<!` inside is CDATA (the
    // framer refuses comments and DTDs), which roxmltree may copy when text runs into it;
    // `xmlns` may start a declaration (two around the text, and `xml`'s, which roxmltree
    // declares itself); a reference or CR anywhere, a tab or newline in an attribute value
    // (newlines in text are kept as they are) make it decode a copy.
    let around = more_declarations.saturating_add(2);
    let (mut lt, mut eq, mut declarations) = (2usize, around, around.saturating_add(1));
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

/// The largest [`crate::xml::element::parse_cost`] of any element `limits` let through
/// (`max_parse_bytes` aside): `max_element_bytes` of which every byte is a `<` or a `=`
/// (CDATA full of `<`, text full of `=`), text to decode, a declaration in every five bytes,
/// under a header namespace of `max_header_bytes`. As [`Limits::max_parse_bytes`] it refuses
/// no element the other limits allow.
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

//! One XML document parsed with roxmltree under RFC 6120's rules: no DTD (§11.1), a node
//! count bounded by the document's size, and each roxmltree error mapped to its stream error
//! (§4.9.3).
//!
//! The stream header ([`crate::stream::header`]), RFC 7395 `<open/>` and `<close/>`
//! ([`crate::xml::framer`]) and every top-level element ([`crate::xml::element`]) go through
//! [`parse`]; the caller bounds the memory first (`Limits::max_parse_bytes`).

use crate::stream::error::{StreamError, StreamErrorCondition};

/// Parses `text` as one document, with [`parsing_options`] and errors mapped by
/// [`xml_error`].
pub(crate) fn parse(text: &str) -> Result<roxmltree::Document<'_>, StreamError> {
    roxmltree::Document::parse_with_options(text, parsing_options(text.len())).map_err(xml_error)
}

/// roxmltree options for a document of `len` bytes: no DTD (§11.1), and at most one node per
/// two bytes (the smallest element, `<a/>`, takes four bytes; text between two elements at
/// least one), so a hostile element cannot make the tree larger than its own size implies.
fn parsing_options<'a>(len: usize) -> roxmltree::ParsingOptions<'a> {
    roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: u32::try_from(len / 2 + 4).unwrap_or(u32::MAX),
        ..roxmltree::ParsingOptions::default()
    }
}

/// The stream error condition for a roxmltree error (§4.9.3).
fn xml_error(error: roxmltree::Error) -> StreamError {
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

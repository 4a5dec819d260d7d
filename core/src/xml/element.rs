//! Parsing one top-level element with roxmltree, the stream's namespaces in scope.
//!
//! PLACEHOLDER SIGNATURES: the implementation is being written.

use crate::stream::error::StreamError;
use crate::stream::header::StreamHeader;

/// Parses `raw` (one complete top-level element from the framer) with the namespace
/// declarations of `header` in scope, and calls `f` with the element.
pub fn parse<R>(
    _raw: &str,
    _header: &StreamHeader,
    _f: impl FnOnce(roxmltree::Node<'_, '_>) -> R,
) -> Result<R, StreamError> {
    unimplemented!()
}

//! Streaming framer (RFC 6120 §4, §11): cuts an XML stream into its header, top-level
//! elements, whitespace keep-alives and closing tag, in a buffer whose size the caller sets.
//!
//! PLACEHOLDER SIGNATURES: the implementation is being written.

use alloc::boxed::Box;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::stream::header::{Framing, StreamHeader};

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_element_bytes: 64 * 1024,
            max_header_bytes: 2048,
            max_depth: 32,
            max_attributes: 32,
        }
    }
}

/// One unit of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// The peer's stream header (§4.7) or RFC 7395 `<open/>`.
    Header(StreamHeader),
    /// One complete top-level element, as its raw text (UTF-8, restricted XML checked).
    Element(&'a str),
    /// Whitespace between top-level elements (§4.6.1 keep-alive).
    KeepAlive,
    /// `</stream:stream>` or RFC 7395 `<close/>` (§4.4).
    End,
}

/// The streaming framer. See the module docs.
pub struct Framer {
    _buf: Box<[u8]>,
}

impl Framer {
    /// A framer for `framing` whose buffer holds `limits.max_element_bytes`.
    pub fn new(_framing: Framing, _limits: Limits) -> Self {
        unimplemented!()
    }
    /// Free space at the end of the buffer to read into (compacts first).
    pub fn free_space(&mut self) -> &mut [u8] {
        unimplemented!()
    }
    /// Marks `n` bytes written into [`Framer::free_space`] as received.
    pub fn commit(&mut self, _n: usize) {
        unimplemented!()
    }
    /// Copies as much of `data` as fits; returns how many bytes were taken.
    pub fn push(&mut self, _data: &[u8]) -> usize {
        unimplemented!()
    }
    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Frame<'_>>, StreamError> {
        let _ = StreamErrorCondition::NotWellFormed;
        unimplemented!()
    }
    /// Bytes received but not yet returned in a frame.
    pub fn pending(&self) -> &[u8] {
        unimplemented!()
    }
    /// Expect a new stream header (restart after TLS or SASL, §4.3.3).
    pub fn restart(&mut self) {
        unimplemented!()
    }
}

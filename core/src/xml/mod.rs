//! XML for XMPP (RFC 6120 §11): the streaming framer, per-element parsing, escaping.
pub mod decimal;
pub(crate) mod document;
pub mod element;
pub mod escape;
pub mod framer;
pub mod limits;
pub mod splitter;

//! The XML stream itself (RFC 6120 §4): headers, features, errors.
pub mod error;
pub mod features;
pub mod header;
pub(crate) mod namespaces;

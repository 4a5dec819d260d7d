//! The namespaces of the stream's own framing: `<stream:stream>` (RFC 6120 §4.8.1) and
//! RFC 7395's `<open/>` and `<close/>` (§3.3). Re-exported by [`crate::stream::header`];
//! here, with nothing to import, so that the XML layer's cost bound can name them while
//! the header's parse depends on that layer.

/// `http://etherx.jabber.org/streams`, the namespace of `<stream:stream>` (§4.8.1).
pub const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
/// `urn:ietf:params:xml:ns:xmpp-framing`, RFC 7395's `<open/>` and `<close/>`.
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

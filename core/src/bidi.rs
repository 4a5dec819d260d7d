//! Bidirectional server-to-server streams (XEP-0288).
//!
//! Without it a stream between servers carries stanzas one way only, from the initiating
//! server to the receiving one, and each direction needs its own TCP connection. With it
//! (§2):
//!
//! 1. the receiving server lists `<bidi xmlns='urn:xmpp:features:bidi'/>` among the
//!    features of the unauthenticated stream ([`FEATURE`]); this crate offers it only once
//!    the stream is protected by TLS, as Prosody's `mod_s2s_bidi` does;
//! 2. the initiating server, if it wants the stream both ways, sends
//!    `<bidi xmlns='urn:xmpp:bidi'/>` ([`REQUEST`]) before it authenticates (SASL or
//!    dialback); nothing answers it;
//! 3. after authentication the receiving server may send stanzas from its own domain to
//!    the initiating server's on the same stream. Each side checks what it reads as on any
//!    stream between servers: `from` in the domain the *peer* authenticated as (on the
//!    receiving side: the initiator's; on the initiating side: the domain it connected to
//!    and verified), `to` in its own
//!    ([`check_server_addresses`](crate::stanza::check_server_addresses)).

use crate::stream::features::StreamFeatures;

/// The namespace of the request (XEP-0288 §2).
pub const NS: &str = "urn:xmpp:bidi";
/// The namespace of the stream feature (XEP-0288 §2).
pub const NS_FEATURE: &str = "urn:xmpp:features:bidi";
/// The stream feature, as the receiving server lists it.
pub const FEATURE: &str = "<bidi xmlns='urn:xmpp:features:bidi'/>";
/// The request the initiating server sends before authenticating.
pub const REQUEST: &str = "<bidi xmlns='urn:xmpp:bidi'/>";

/// The features offer bidirectional streams.
pub fn offered(features: &StreamFeatures) -> bool {
    features
        .other
        .iter()
        .any(|f| f.strip_prefix('{').and_then(|f| f.strip_suffix("}bidi")) == Some(NS_FEATURE))
}

/// `node` is the initiating server's request `<bidi xmlns='urn:xmpp:bidi'/>`.
pub fn is_request(node: roxmltree::Node<'_, '_>) -> bool {
    node.tag_name().namespace() == Some(NS) && node.tag_name().name() == "bidi"
}

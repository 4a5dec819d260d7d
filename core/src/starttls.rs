//! STARTTLS (RFC 6120 §5): the three elements of the `urn:ietf:params:xml:ns:xmpp-tls`
//! namespace and the TLS policy of the initiating entity.

use crate::stream::features::NS_TLS;

/// `<starttls/>` as the initiating entity sends it (§5.4.2).
pub const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
/// `<proceed/>` (§5.4.2.3): TLS starts right after its `>`.
pub const PROCEED: &str = "<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
/// `<failure/>` (§5.4.2.2): followed by `</stream:stream>` and closing TCP.
pub const FAILURE: &str = "<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";
/// `<starttls><required/></starttls>` offered as a feature when TLS is mandatory (§5.4.1).
pub const FEATURE_REQUIRED: &str =
    "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>";
/// `<starttls/>` offered as a voluntary feature (§5.4.1).
pub const FEATURE_OPTIONAL: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

/// Whether the initiating entity insists on TLS (§5.3.1, §13.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsPolicy {
    /// Refuse a server that does not offer STARTTLS (the default: stripping is refused).
    #[default]
    Required,
    /// Use STARTTLS when offered, continue in plaintext otherwise.
    Optional,
    /// Never negotiate TLS (explicit opt-in, e.g. a loopback test).
    Disabled,
}

/// The answer of the receiving entity to `<starttls/>` (§5.4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// `<proceed/>`
    Proceed,
    /// `<failure/>`
    Failure,
}

impl Answer {
    /// Reads `<proceed/>` or `<failure/>` in the TLS namespace; `None` for anything else.
    pub fn parse(node: roxmltree::Node<'_, '_>) -> Option<Self> {
        match (node.tag_name().namespace(), node.tag_name().name()) {
            (Some(NS_TLS), "proceed") => Some(Answer::Proceed),
            (Some(NS_TLS), "failure") => Some(Answer::Failure),
            _ => None,
        }
    }
}

/// True for the `<starttls/>` command (§5.4.2).
pub fn is_command(node: roxmltree::Node<'_, '_>) -> bool {
    node.tag_name().namespace() == Some(NS_TLS) && node.tag_name().name() == "starttls"
}

//! Stream errors (RFC 6120 §4.9): conditions, and the `<stream:error>` element.

use alloc::string::String;

use crate::xml::escape::escape_text;

/// `urn:ietf:params:xml:ns:xmpp-streams`
pub const NS_STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

macro_rules! conditions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// A defined stream error condition (§4.9.3).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum StreamErrorCondition {
            $($(#[$doc])* $variant,)*
        }

        impl StreamErrorCondition {
            /// The element name of the condition, e.g. `not-well-formed`.
            pub const fn name(self) -> &'static str {
                match self { $(StreamErrorCondition::$variant => $name,)* }
            }

            /// The condition for an element name; `None` for an undefined one. A search
            /// of the names [`StreamErrorCondition::name`] gives, not a `match` on strings
            /// (a comparison of each length and text: ~0.4 KB of flash on Cortex-M).
            pub fn from_name(name: &str) -> Option<Self> {
                const ALL: &[StreamErrorCondition] = &[$(StreamErrorCondition::$variant,)*];
                ALL.iter().copied().find(|c| c.name() == name)
            }
        }
    };
}

conditions! {
    /// §4.9.3.1
    BadFormat = "bad-format",
    /// §4.9.3.2
    BadNamespacePrefix = "bad-namespace-prefix",
    /// §4.9.3.3
    Conflict = "conflict",
    /// §4.9.3.4
    ConnectionTimeout = "connection-timeout",
    /// §4.9.3.5
    HostGone = "host-gone",
    /// §4.9.3.6
    HostUnknown = "host-unknown",
    /// §4.9.3.7
    ImproperAddressing = "improper-addressing",
    /// §4.9.3.8
    InternalServerError = "internal-server-error",
    /// §4.9.3.9
    InvalidFrom = "invalid-from",
    /// §4.9.3.10
    InvalidNamespace = "invalid-namespace",
    /// §4.9.3.11
    InvalidXml = "invalid-xml",
    /// §4.9.3.12
    NotAuthorized = "not-authorized",
    /// §4.9.3.13
    NotWellFormed = "not-well-formed",
    /// §4.9.3.14
    PolicyViolation = "policy-violation",
    /// §4.9.3.15
    RemoteConnectionFailed = "remote-connection-failed",
    /// §4.9.3.16
    Reset = "reset",
    /// §4.9.3.17
    ResourceConstraint = "resource-constraint",
    /// §4.9.3.18
    RestrictedXml = "restricted-xml",
    /// §4.9.3.19: never followed blindly; see [`crate::Error::SeeOtherHost`].
    SeeOtherHost = "see-other-host",
    /// §4.9.3.20
    SystemShutdown = "system-shutdown",
    /// §4.9.3.21
    UndefinedCondition = "undefined-condition",
    /// §4.9.3.22
    UnsupportedEncoding = "unsupported-encoding",
    /// §4.9.3.23
    UnsupportedFeature = "unsupported-feature",
    /// §4.9.3.24
    UnsupportedStanzaType = "unsupported-stanza-type",
    /// §4.9.3.25
    UnsupportedVersion = "unsupported-version",
}

impl core::fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A stream error as sent or received: condition plus optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamError {
    /// The defined condition.
    pub condition: StreamErrorCondition,
    /// `<text/>`, if any (§4.9.2).
    pub text: Option<String>,
}

impl StreamError {
    /// A stream error without text.
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
        }
    }

    /// A stream error with explanatory text. Without the `error-text` feature the text is
    /// left out (`<text/>` is OPTIONAL, RFC 6120 §4.9.2) and the condition alone is sent:
    /// the sentences are then not linked.
    #[inline]
    pub fn with_text(condition: StreamErrorCondition, text: &str) -> Self {
        StreamError {
            condition,
            text: if cfg!(feature = "error-text") {
                Some(String::from(text))
            } else {
                None
            },
        }
    }

    /// Serialises `<stream:error>` (§4.9.2). The closing stream tag is the caller's business.
    pub fn write(&self, out: &mut String) {
        out.push_str("<stream:error><");
        out.push_str(self.condition.name());
        out.push_str(" xmlns='");
        out.push_str(NS_STREAM_ERRORS);
        out.push_str("'/>");
        if let Some(text) = &self.text {
            out.push_str("<text xmlns='");
            out.push_str(NS_STREAM_ERRORS);
            out.push_str("' xml:lang='en'>");
            escape_text(text, out);
            out.push_str("</text>");
        }
        out.push_str("</stream:error>");
    }

    /// Reads a received `<stream:error>` element. An unknown or missing condition becomes
    /// `undefined-condition` (§4.9.3.21), so a peer's error is always reported.
    pub fn parse(node: roxmltree::Node<'_, '_>) -> Self {
        let mut condition = StreamErrorCondition::UndefinedCondition;
        let mut text = None;
        for child in node.children().filter(|c| c.is_element()) {
            if child.tag_name().namespace() != Some(NS_STREAM_ERRORS) {
                continue;
            }
            let name = child.tag_name().name();
            if name == "text" {
                text = child.text().map(String::from);
            } else if let Some(c) = StreamErrorCondition::from_name(name) {
                condition = c;
            }
        }
        StreamError { condition, text }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_name_reads_exactly_the_names_it_writes() {
        let c = StreamErrorCondition::from_name("not-well-formed");
        assert_eq!(c, Some(StreamErrorCondition::NotWellFormed));
        let c = StreamErrorCondition::from_name("unsupported-version");
        assert_eq!(
            c.map(StreamErrorCondition::name),
            Some("unsupported-version")
        );
        for unknown in ["", "Not-Well-Formed", "not-well-formed ", "text", "bad"] {
            assert_eq!(StreamErrorCondition::from_name(unknown), None, "{unknown}");
        }
    }
}

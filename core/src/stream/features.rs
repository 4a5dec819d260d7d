//! Stream features (RFC 6120 §4.3.2): what a receiving entity offers after each header.

use alloc::string::String;
use alloc::vec::Vec;

/// `urn:ietf:params:xml:ns:xmpp-tls` (§5)
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// `urn:ietf:params:xml:ns:xmpp-sasl` (§6)
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// `urn:ietf:params:xml:ns:xmpp-bind` (§7)
pub const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// `urn:xmpp:sasl-cb:0` (XEP-0440): the channel-binding types a server accepts.
pub const NS_SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// `urn:ietf:params:xml:ns:xmpp-session` (RFC 3921 session, optional in RFC 6121)
pub const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// `urn:xmpp:sasl:2` (XEP-0388, Extensible SASL Profile)
pub const NS_SASL2: &str = "urn:xmpp:sasl:2";
/// `urn:xmpp:bind:0` (XEP-0386, Bind 2)
pub const NS_BIND2: &str = "urn:xmpp:bind:0";
/// `urn:xmpp:fast:0` (XEP-0484, FAST)
pub const NS_FAST: &str = "urn:xmpp:fast:0";
/// `urn:xmpp:sm:3` (XEP-0198)
pub const NS_SM: &str = "urn:xmpp:sm:3";

/// The `<authentication xmlns='urn:xmpp:sasl:2'/>` feature (XEP-0388 §2.1) and what it
/// offers inline (`<inline/>`): Bind 2 (XEP-0386 §3), stream management (XEP-0198 inside
/// SASL2 and Bind 2) and FAST (XEP-0484 §3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sasl2Feature {
    /// `<mechanism/>` names, in the order offered.
    pub mechanisms: Vec<String>,
    /// `<bind xmlns='urn:xmpp:bind:0'/>` inline: a resource can be bound in `<authenticate/>`.
    pub bind2: bool,
    /// Bind 2 lists `<feature var='urn:xmpp:sm:3'/>`: `<enable/>` can go inside `<bind/>`.
    pub bind2_sm: bool,
    /// `<sm xmlns='urn:xmpp:sm:3'/>` inline: `<resume/>` can go inside `<authenticate/>`.
    pub sm: bool,
    /// `<fast xmlns='urn:xmpp:fast:0'/>`: its token mechanisms; `None` without FAST.
    pub fast: Option<Vec<String>>,
    /// `<fast tls-0rtt='true'/>` (XEP-0484 §3.1): a FAST `<authenticate/>` may ride in TLS
    /// 1.3 early data (0-RTT), with a `count` the server checks against replays.
    pub fast_0rtt: bool,
}

impl Sasl2Feature {
    fn parse(node: roxmltree::Node<'_, '_>) -> Self {
        let mut feature = Sasl2Feature::default();
        let mechanisms = |n: roxmltree::Node<'_, '_>| -> Vec<String> {
            n.children()
                .filter(|c| c.is_element() && c.tag_name().name() == "mechanism")
                .filter_map(|c| c.text())
                .map(|t| String::from(t.trim()))
                .collect()
        };
        feature.mechanisms = mechanisms(node);
        let inline = node.children().filter(|c| c.is_element()).filter(|c| {
            c.tag_name().name() == "inline" && c.tag_name().namespace() == Some(NS_SASL2)
        });
        for child in inline.flat_map(|i| i.children()).filter(|c| c.is_element()) {
            match (child.tag_name().namespace(), child.tag_name().name()) {
                (Some(NS_BIND2), "bind") => {
                    feature.bind2 = true;
                    feature.bind2_sm = child.descendants().any(|f| {
                        f.tag_name().name() == "feature" && f.attribute("var") == Some(NS_SM)
                    });
                }
                (Some(NS_SM), "sm") => feature.sm = true,
                (Some(NS_FAST), "fast") => {
                    feature.fast = Some(mechanisms(child));
                    feature.fast_0rtt = matches!(child.attribute("tls-0rtt"), Some("true" | "1"));
                }
                _ => {}
            }
        }
        feature
    }
}

/// What a SASL2 offer carries inline besides FAST's mechanisms (XEP-0388 §2.1): the shape an
/// `<authenticate/>` is built to. Kept with the login memory, it lets the next login send
/// `<authenticate/>` before the features arrive; the live offer is checked against it then.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sasl2Inline {
    /// Bind 2 (XEP-0386 §3).
    pub bind2: bool,
    /// `<enable/>` inside Bind 2 (XEP-0198 listed as a Bind 2 feature).
    pub bind2_sm: bool,
    /// `<resume/>` inside `<authenticate/>` (XEP-0198 inline).
    pub sm: bool,
    /// FAST in TLS 0-RTT early data (`tls-0rtt`, XEP-0484 §3.1).
    pub fast_0rtt: bool,
}

impl Sasl2Feature {
    /// The inline features of this offer, FAST aside.
    pub fn inline(&self) -> Sasl2Inline {
        Sasl2Inline {
            bind2: self.bind2,
            bind2_sm: self.bind2_sm,
            sm: self.sm,
            fast_0rtt: self.fast_0rtt,
        }
    }
}

/// The `<starttls/>` feature (§5.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTlsFeature {
    /// `<required/>` child present.
    pub required: bool,
}

/// A parsed `<stream:features/>` element. Unknown features are kept by name only and
/// never fatal (§4.3.2); unknown mechanisms are kept as offered and simply never chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamFeatures {
    /// `<starttls/>` (§5.4.1)
    pub starttls: Option<StartTlsFeature>,
    /// `<mechanisms/>` (§6.4.1), in the order offered; `None` when SASL is not offered.
    pub mechanisms: Option<Vec<String>>,
    /// XEP-0440 `<sasl-channel-binding/>` types, if advertised.
    pub channel_binding_types: Option<Vec<String>>,
    /// `<bind/>` (§7.2)
    pub bind: bool,
    /// XEP-0388 `<authentication/>` (SASL2), if offered.
    pub sasl2: Option<alloc::boxed::Box<Sasl2Feature>>,
    /// Any other feature, as `{namespace}name`.
    pub other: Vec<String>,
}

impl StreamFeatures {
    /// Reads `<stream:features/>`.
    pub fn parse(node: roxmltree::Node<'_, '_>) -> Self {
        let mut features = StreamFeatures::default();
        for child in node.children().filter(|c| c.is_element()) {
            let name = child.tag_name();
            match (name.namespace(), name.name()) {
                (Some(NS_TLS), "starttls") => {
                    features.starttls = Some(StartTlsFeature {
                        required: child
                            .children()
                            .any(|c| c.is_element() && c.tag_name().name() == "required"),
                    })
                }
                (Some(NS_SASL), "mechanisms") => {
                    features.mechanisms = Some(
                        child
                            .children()
                            .filter(|c| c.is_element() && c.tag_name().name() == "mechanism")
                            .filter_map(|c| c.text())
                            .map(|t| String::from(t.trim()))
                            .collect(),
                    )
                }
                (Some(NS_SASL_CB), "sasl-channel-binding") => {
                    features.channel_binding_types = Some(
                        child
                            .children()
                            .filter(|c| c.is_element() && c.tag_name().name() == "channel-binding")
                            .filter_map(|c| c.attribute("type"))
                            .map(String::from)
                            .collect(),
                    )
                }
                (Some(NS_BIND), "bind") => features.bind = true,
                (Some(NS_SASL2), "authentication") if cfg!(feature = "sasl2") => {
                    features.sasl2 = Some(alloc::boxed::Box::new(Sasl2Feature::parse(child)))
                }
                (ns, local) => {
                    let mut s = String::new();
                    if let Some(ns) = ns {
                        s.push('{');
                        s.push_str(ns);
                        s.push('}');
                    }
                    s.push_str(local);
                    features.other.push(s);
                }
            }
        }
        features
    }

    /// True when STARTTLS must be negotiated before anything else (§5.3.1): it is flagged
    /// `<required/>`, or it is the only feature offered.
    pub fn starttls_mandatory(&self) -> bool {
        match self.starttls {
            Some(StartTlsFeature { required: true }) => true,
            Some(_) => {
                self.mechanisms.is_none()
                    && self.sasl2.is_none()
                    && !self.bind
                    && self.other.is_empty()
            }
            None => false,
        }
    }
}

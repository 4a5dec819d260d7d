//! Server Dialback (XEP-0220), with keys generated as XEP-0185 recommends.
//!
//! Dialback proves that a server is authoritative for the domain it claims by asking that
//! domain's authoritative server, found in DNS, to vouch for a key. Three roles, each one
//! function here, in the order of XEP-0220 §2:
//!
//! 1. the **originating** server sends `<db:result from='originating' to='receiving'>KEY`
//!    on its stream to the receiving server ([`Dialback::result_request`], §2.1.1), the
//!    key made with [`key`] from its secret, both domains and the receiving server's stream
//!    id;
//! 2. the **receiving** server asks the originating domain's **authoritative** server
//!    over a stream of its own: `<db:verify from='receiving' to='originating' id='stream
//!    id'>KEY` ([`Dialback::verify_request`], §2.1.2), unless its policy refuses first
//!    ([`ReceivingPolicy::admits`]);
//! 3. the authoritative server recomputes the key with its secret and answers `valid` or
//!    `invalid` ([`answer_verify`], §2.1.3); the receiving server passes the verdict on as
//!    `<db:result type='…'/>` ([`Dialback::result_answer`], §2.1.4), and on `valid` accepts
//!    stanzas from that domain on that stream.
//!
//! The elements live in `jabber:server:dialback`, bound to the prefix `db` on the stream
//! header (§2.1.1); support is advertised with `<dialback xmlns='urn:xmpp:features:dialback'/>`
//! among the stream features (XEP-0220 §2.1.1, "Stream feature").

use alloc::string::String;
use alloc::vec::Vec;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::stream::error::{StreamError, StreamErrorCondition};
use crate::xml::escape::{escape_attr, escape_text};

/// The dialback namespace, bound to `db` on the stream header (XEP-0220 §2.1.1).
pub const NS: &str = "jabber:server:dialback";
/// The stream feature that advertises dialback (XEP-0220 §2.1.1).
pub const NS_FEATURE: &str = "urn:xmpp:features:dialback";

/// The longest key accepted: XEP-0185's keys are 64 hex digits; XEP-0220 puts no bound on
/// others, this does (a longer one is `policy-violation`).
pub const MAX_KEY_LEN: usize = 256;

/// The dialback key (XEP-0185 §3): the hex HMAC-SHA256, keyed with the hex SHA-256 of the
/// server's `secret`, of `receiving originating stream_id` (single spaces). Deterministic,
/// so the authoritative server needs no state to verify it.
pub fn key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    let hashed_secret = base16ct::lower::encode_string(&Sha256::digest(secret));
    // Any key length is valid for HMAC.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(hashed_secret.as_bytes()) else {
        return String::new();
    };
    for (i, part) in [receiving, originating, stream_id].iter().enumerate() {
        if i > 0 {
            mac.update(b" ");
        }
        mac.update(part.as_bytes());
    }
    base16ct::lower::encode_string(&mac.finalize().into_bytes())
}

/// Which dialback element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<db:result/>`: between the originating and the receiving server.
    Result,
    /// `<db:verify/>`: between the receiving and the authoritative server.
    Verify,
}

/// The `type` of an answer (XEP-0220 §2.1.3, §2.1.4, §2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// The key was vouched for.
    Valid,
    /// The key was not.
    Invalid,
    /// The request could not be handled (§2.4): the stanza error condition given, e.g.
    /// `item-not-found` for a domain the peer does not serve or `remote-server-not-found`
    /// for an authoritative server it could not reach.
    Error(String),
}

/// A dialback element: a request (a key, no `type`) or an answer (a `type`, no key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialback {
    /// `<db:result/>` or `<db:verify/>`.
    pub kind: Kind,
    /// `from`: the sender's domain.
    pub from: String,
    /// `to`: the recipient's domain.
    pub to: String,
    /// `id`: the receiving server's stream id (`<db:verify/>` only).
    pub id: Option<String>,
    /// The key (requests).
    pub key: Option<String>,
    /// The verdict (answers).
    pub verdict: Option<Verdict>,
}

impl Dialback {
    /// The originating server's request (§2.1.1): `<db:result from='originating'
    /// to='receiving'>KEY</db:result>`.
    pub fn result_request(originating: &str, receiving: &str, key: &str) -> Self {
        Dialback {
            kind: Kind::Result,
            from: originating.into(),
            to: receiving.into(),
            id: None,
            key: Some(key.into()),
            verdict: None,
        }
    }

    /// The receiving server's question to the authoritative server (§2.1.2), for a
    /// `result_request` it got on the stream it gave `stream_id`.
    pub fn verify_request(result_request: &Dialback, stream_id: &str) -> Self {
        Dialback {
            kind: Kind::Verify,
            from: result_request.to.clone(),
            to: result_request.from.clone(),
            id: Some(stream_id.into()),
            key: result_request.key.clone(),
            verdict: None,
        }
    }

    /// The receiving server's answer to the originating server (§2.1.4).
    pub fn result_answer(result_request: &Dialback, verdict: Verdict) -> Self {
        Dialback {
            kind: Kind::Result,
            from: result_request.to.clone(),
            to: result_request.from.clone(),
            id: None,
            key: None,
            verdict: Some(verdict),
        }
    }

    /// The element, or `None` when `node` is not in the dialback namespace. A dialback
    /// element without `from` or `to`, with an unknown `type`, a request without a key, or
    /// a `<db:verify/>` without `id` is `<invalid-xml/>`; a key over [`MAX_KEY_LEN`] is
    /// `<policy-violation/>`.
    pub fn parse(node: roxmltree::Node<'_, '_>) -> Option<Result<Self, StreamError>> {
        let name = node.tag_name();
        if name.namespace() != Some(NS) {
            return None;
        }
        let kind = match name.name() {
            "result" => Kind::Result,
            "verify" => Kind::Verify,
            _ => return Some(Err(invalid("an unknown dialback element"))),
        };
        Some(parse_fields(node, kind))
    }

    /// Appends the element, prefixed `db:` (the prefix the stream header binds, §2.1.1).
    pub fn write(&self, out: &mut String) {
        let name = match self.kind {
            Kind::Result => "db:result",
            Kind::Verify => "db:verify",
        };
        out.push('<');
        out.push_str(name);
        for (attr, value) in [("from", Some(&self.from)), ("to", Some(&self.to))]
            .into_iter()
            .chain([("id", self.id.as_ref())])
        {
            if let Some(value) = value {
                out.push(' ');
                out.push_str(attr);
                out.push_str("='");
                escape_attr(value, out);
                out.push('\'');
            }
        }
        match (&self.verdict, &self.key) {
            (Some(Verdict::Error(condition)), _) => {
                out.push_str(" type='error'><error type='cancel'><");
                out.push_str(condition);
                out.push_str(" xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></");
                out.push_str(name);
                out.push('>');
            }
            (Some(verdict), _) => {
                out.push_str(match verdict {
                    Verdict::Valid => " type='valid'/>",
                    _ => " type='invalid'/>",
                });
            }
            (None, Some(key)) => {
                out.push('>');
                escape_text(key, out);
                out.push_str("</");
                out.push_str(name);
                out.push('>');
            }
            (None, None) => out.push_str("/>"),
        }
    }
}

fn parse_fields(node: roxmltree::Node<'_, '_>, kind: Kind) -> Result<Dialback, StreamError> {
    let attr = |name| node.attribute(name).map(String::from);
    let (Some(from), Some(to)) = (attr("from"), attr("to")) else {
        return Err(invalid("a dialback element needs from and to"));
    };
    let id = attr("id");
    if kind == Kind::Verify && id.is_none() {
        return Err(invalid("<db:verify/> needs the stream id"));
    }
    let verdict = match node.attribute("type") {
        None => None,
        Some("valid") => Some(Verdict::Valid),
        Some("invalid") => Some(Verdict::Invalid),
        Some("error") => {
            let condition = node
                .children()
                .find(|c| c.has_tag_name("error"))
                .and_then(|e| e.children().find(|c| c.is_element()))
                .map(|c| String::from(c.tag_name().name()))
                .unwrap_or_else(|| String::from("undefined-condition"));
            Some(Verdict::Error(condition))
        }
        Some(_) => return Err(invalid("unknown dialback type")),
    };
    let text: String = node
        .children()
        .filter(|c| c.is_text())
        .filter_map(|c| c.text())
        .collect();
    let key = match (verdict.is_some(), text.trim()) {
        (true, _) => None,
        (false, "") => return Err(invalid("a dialback request without a key")),
        (false, key) if key.len() > MAX_KEY_LEN => {
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "dialback key too long",
            ))
        }
        (false, key) => Some(String::from(key)),
    };
    Ok(Dialback {
        kind,
        from,
        to,
        id,
        key,
        verdict,
    })
}

fn invalid(text: &'static str) -> StreamError {
    StreamError::with_text(StreamErrorCondition::InvalidXml, text)
}

/// The authoritative server's answer (§2.1.3) to a `<db:verify/>` request: `valid` when the
/// key is the one [`key`] makes from `secret` for (`from` = receiving, `to` = originating,
/// `id`), compared in constant time; `item-not-found` when `to` is not a domain in
/// `served` (we are not authoritative for it, §2.4.3). `None` for anything that is not a
/// verify request.
pub fn answer_verify(
    request: &Dialback,
    secret: &[u8],
    served: impl Fn(&str) -> bool,
) -> Option<Dialback> {
    let (Kind::Verify, None, Some(got), Some(id)) =
        (request.kind, &request.verdict, &request.key, &request.id)
    else {
        return None;
    };
    let verdict = if !served(&request.to) {
        Verdict::Error(String::from("item-not-found"))
    } else {
        let expected = key(secret, &request.from, &request.to, id);
        if bool::from(expected.as_bytes().ct_eq(got.as_bytes())) {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    };
    Some(Dialback {
        kind: Kind::Verify,
        from: request.to.clone(),
        to: request.from.clone(),
        id: Some(id.clone()),
        key: None,
        verdict: Some(verdict),
    })
}

/// Server Dialback for one server, in every role: the secret its keys are made from
/// (XEP-0185 §3; the same secret answers `<db:verify/>` for keys it gave out) and the
/// policy on when dialback is used (by default only over TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialbackConfig {
    /// The key secret: random per process unless the operator gives one (then keys stay
    /// valid across restarts and between several processes serving the domain).
    pub secret: Vec<u8>,
    /// When the receiving role accepts dialback; `allow_without_tls` also lets the
    /// originating role use it on a stream without TLS.
    pub policy: ReceivingPolicy,
}

impl DialbackConfig {
    /// Dialback with `secret`, only over TLS.
    pub fn new(secret: &[u8]) -> Self {
        DialbackConfig {
            secret: secret.to_vec(),
            policy: ReceivingPolicy::default(),
        }
    }

    /// The originating server's `<db:result/>` (§2.1.1) on a stream the receiving
    /// server gave `stream_id`.
    pub fn result_request(&self, originating: &str, receiving: &str, stream_id: &str) -> Dialback {
        let key = key(&self.secret, receiving, originating, stream_id);
        Dialback::result_request(originating, receiving, &key)
    }
}

/// When the receiving server may take a domain's word through dialback (XEP-0220 §2.1.2,
/// §5): by default only over TLS, and never for a domain a presented certificate
/// contradicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceivingPolicy {
    /// Accept dialback on a stream without TLS (off by default).
    pub allow_without_tls: bool,
}

/// What the peer showed at the TLS layer, as far as dialback cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerCertificate<'a> {
    /// No certificate, or one that does not verify (dialback is then the only proof).
    Unverified,
    /// A certificate that verifies for this domain (EXTERNAL would have done).
    VerifiedFor(&'a str),
}

impl ReceivingPolicy {
    /// Whether a `<db:result/>` request for `originating` may go on to verification: on a
    /// TLS stream (unless allowed without), and not when the peer's verified certificate
    /// names another domain (a valid certificate for `a.example` does not let the same
    /// peer claim `b.example` through DNS). `Err` is the stream error to answer with.
    pub fn admits(
        &self,
        originating: &str,
        tls: bool,
        certificate: PeerCertificate<'_>,
    ) -> Result<(), StreamError> {
        if !tls && !self.allow_without_tls {
            return Err(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "dialback only over TLS",
            ));
        }
        match certificate {
            PeerCertificate::VerifiedFor(domain) if !domain.eq_ignore_ascii_case(originating) => {
                Err(StreamError::with_text(
                    StreamErrorCondition::NotAuthorized,
                    "the presented certificate is for another domain",
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::header::StreamHeader;
    use crate::xml::element;

    const XEP0185_KEY: &str = "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643";

    /// XEP-0185 §3's worked example, and its `<db:verify/>` as the XEP prints it (the key
    /// between line breaks) verified by the authoritative role.
    #[test]
    fn key_is_xep0185s_example() {
        let secret = b"s3cr3tf0rd14lb4ck";
        assert_eq!(
            key(secret, "xmpp.example.com", "example.org", "D60000229F"),
            XEP0185_KEY
        );
        let raw = alloc::format!(
            "<db:verify to='example.org' from='xmpp.example.com' id='D60000229F'>\n    \
             {XEP0185_KEY}\n</db:verify>"
        );
        let request = parse(&raw).unwrap().unwrap();
        let answer = answer_verify(&request, secret, |d| d == "example.org").unwrap();
        assert_eq!(
            written(&answer),
            "<db:verify from='example.org' to='xmpp.example.com' id='D60000229F' type='valid'/>"
        );
    }

    fn header() -> StreamHeader {
        StreamHeader {
            default_ns: Some("jabber:server".into()),
            stream_prefix: "stream".into(),
            prefixes: alloc::vec![("db".into(), NS.into())],
            ..StreamHeader::default()
        }
    }

    fn parse(raw: &str) -> Option<Result<Dialback, StreamError>> {
        element::parse(raw, &header(), Dialback::parse).unwrap()
    }

    fn written(d: &Dialback) -> String {
        let mut out = String::new();
        d.write(&mut out);
        out
    }

    #[test]
    fn the_three_roles_round_trip() {
        let secret = b"authoritative secret";
        let k = key(secret, "receiving.example", "originating.example", "s1");
        // 1. originating -> receiving
        let request = Dialback::result_request("originating.example", "receiving.example", &k);
        let got = parse(&written(&request)).unwrap().unwrap();
        assert_eq!(got, request);
        // 2. receiving -> authoritative
        let verify = Dialback::verify_request(&got, "s1");
        let asked = parse(&written(&verify)).unwrap().unwrap();
        assert_eq!(asked.id.as_deref(), Some("s1"));
        // 3. authoritative: valid with its secret, invalid with another, unknown domain.
        let served = |d: &str| d == "originating.example";
        let answer = answer_verify(&asked, secret, served).unwrap();
        assert_eq!(answer.verdict, Some(Verdict::Valid));
        assert_eq!(parse(&written(&answer)).unwrap().unwrap(), answer);
        let wrong = answer_verify(&asked, b"another secret", served).unwrap();
        assert_eq!(wrong.verdict, Some(Verdict::Invalid));
        let unknown = answer_verify(&asked, secret, |_| false).unwrap();
        assert_eq!(
            unknown.verdict,
            Some(Verdict::Error("item-not-found".into()))
        );
        assert_eq!(parse(&written(&unknown)).unwrap().unwrap(), unknown);
        // 4. receiving -> originating
        let result = Dialback::result_answer(&got, Verdict::Valid);
        assert_eq!(
            written(&result),
            "<db:result from='receiving.example' to='originating.example' type='valid'/>"
        );
        // A key for another stream id does not verify.
        let replay = Dialback::verify_request(&got, "s2");
        assert_eq!(
            answer_verify(&replay, secret, served).unwrap().verdict,
            Some(Verdict::Invalid)
        );
    }

    #[test]
    fn malformed_elements_are_stream_errors() {
        let condition = |raw: &str| parse(raw).unwrap().unwrap_err().condition;
        use StreamErrorCondition as C;
        assert_eq!(condition("<db:result to='a'>k</db:result>"), C::InvalidXml);
        assert_eq!(
            condition("<db:verify from='a' to='b'>k</db:verify>"),
            C::InvalidXml
        );
        assert_eq!(condition("<db:result from='a' to='b'/>"), C::InvalidXml);
        assert_eq!(
            condition("<db:result from='a' to='b' type='maybe'/>"),
            C::InvalidXml
        );
        let long = alloc::format!("<db:result from='a' to='b'>{}</db:result>", "k".repeat(257));
        assert_eq!(condition(&long), C::PolicyViolation);
        assert!(parse("<message/>").is_none());
    }

    #[test]
    fn receiving_policy_wants_tls_and_a_consistent_certificate() {
        let policy = ReceivingPolicy::default();
        assert!(policy
            .admits("a.example", true, PeerCertificate::Unverified)
            .is_ok());
        assert!(policy
            .admits("a.example", true, PeerCertificate::VerifiedFor("A.example"))
            .is_ok());
        assert_eq!(
            policy
                .admits("a.example", false, PeerCertificate::Unverified)
                .unwrap_err()
                .condition,
            StreamErrorCondition::PolicyViolation
        );
        assert_eq!(
            policy
                .admits("a.example", true, PeerCertificate::VerifiedFor("b.example"))
                .unwrap_err()
                .condition,
            StreamErrorCondition::NotAuthorized
        );
        let lax = ReceivingPolicy {
            allow_without_tls: true,
        };
        assert!(lax
            .admits("a.example", false, PeerCertificate::Unverified)
            .is_ok());
    }
}

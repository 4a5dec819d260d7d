//! The elements of SASL2 (XEP-0388) and of what rides inside it: Bind 2 (XEP-0386),
//! stream management (XEP-0198 inline) and FAST tokens (XEP-0484), for the initiating
//! entity: building `<authenticate/>` and `<response/>`, reading `<challenge/>`,
//! `<success/>`, `<failure/>` and `<continue/>`.
//!
//! Payloads are base64 in element text, as in RFC 6120 SASL; an absent initial response is
//! an absent `<initial-response/>` (XEP-0388 §2.2: no `=` special case).

use alloc::string::String;
use alloc::vec::Vec;

use crate::sasl::base64::{decode_strict, encode};
use crate::sasl::SaslFailure;
use crate::sm::element::{self as sm_element, Nonza};
use crate::stream::features::{NS_BIND2, NS_FAST, NS_SASL2, NS_SM};
use crate::xml::decimal::push_decimal;
use crate::xml::escape::{escape_attr, escape_text};

/// The client's user agent (XEP-0388 §2.2.1): `id` is stable per device and account (a
/// UUID), and is what the server ties FAST tokens and Bind 2 resources to.
#[derive(Debug, Clone, Copy)]
pub struct UserAgent<'a> {
    /// `id` attribute.
    pub id: &'a str,
    /// `<software/>`.
    pub software: Option<&'a str>,
    /// `<device/>`.
    pub device: Option<&'a str>,
}

/// What goes into `<authenticate/>` besides the mechanism.
#[derive(Debug, Clone, Copy, Default)]
pub struct Authenticate<'a> {
    /// The mechanism's initial response, if it has one.
    pub initial_response: Option<&'a [u8]>,
    /// `<user-agent/>`.
    pub user_agent: Option<UserAgent<'a>>,
    /// Bind 2 (XEP-0386 §4): `Some(tag)` binds a resource, with `<tag/>` when given.
    pub bind: Option<Option<&'a str>>,
    /// `<enable/>` inside `<bind/>` (XEP-0198 with Bind 2): `(resume, max)`.
    pub enable_sm: Option<(bool, Option<u32>)>,
    /// `<resume/>` inline (XEP-0198 §5 with SASL2): `(previd, h)`.
    pub resume: Option<(&'a str, u32)>,
    /// XEP-0484 §3.2: `<request-token mechanism=…/>`.
    pub request_token: Option<&'a str>,
    /// XEP-0484 §3.4: `<fast/>`: this authentication uses a token.
    pub fast: bool,
    /// XEP-0484 §3.4: `<fast count=…/>`, the attempt's number with this token (required
    /// in TLS 0-RTT early data).
    pub fast_count: Option<u32>,
}

/// `<authenticate mechanism=…>` with everything `a` asks for (XEP-0388 §2.2).
pub fn authenticate(mechanism: &str, a: &Authenticate<'_>) -> String {
    let mut s = String::from("<authenticate xmlns='urn:xmpp:sasl:2' mechanism='");
    escape_attr(mechanism, &mut s);
    s.push_str("'>");
    if let Some(ir) = a.initial_response {
        s.push_str("<initial-response>");
        s.push_str(&encode(ir));
        s.push_str("</initial-response>");
    }
    if let Some(ua) = a.user_agent {
        s.push_str("<user-agent id='");
        escape_attr(ua.id, &mut s);
        s.push_str("'>");
        for (name, value) in [("software", ua.software), ("device", ua.device)] {
            if let Some(v) = value {
                s.push('<');
                s.push_str(name);
                s.push('>');
                escape_text(v, &mut s);
                s.push_str("</");
                s.push_str(name);
                s.push('>');
            }
        }
        s.push_str("</user-agent>");
    }
    if let Some(tag) = a.bind {
        s.push_str("<bind xmlns='urn:xmpp:bind:0'>");
        if let Some(tag) = tag {
            s.push_str("<tag>");
            escape_text(tag, &mut s);
            s.push_str("</tag>");
        }
        if let Some((resume, max)) = a.enable_sm {
            s.push_str(&sm_element::enable(resume, max));
        }
        s.push_str("</bind>");
    }
    if let Some((previd, h)) = a.resume {
        s.push_str(&sm_element::resume(previd, h));
    }
    if let Some(m) = a.request_token {
        s.push_str("<request-token xmlns='urn:xmpp:fast:0' mechanism='");
        escape_attr(m, &mut s);
        s.push_str("'/>");
    }
    if a.fast {
        s.push_str("<fast xmlns='urn:xmpp:fast:0'");
        if let Some(count) = a.fast_count {
            s.push_str(" count='");
            push_decimal(&mut s, count);
            s.push('\'');
        }
        s.push_str("/>");
    }
    s.push_str("</authenticate>");
    s
}

/// `<response/>` (XEP-0388 §2.4).
pub fn response(data: &[u8]) -> String {
    let mut s = String::from("<response xmlns='urn:xmpp:sasl:2'>");
    s.push_str(&encode(data));
    s.push_str("</response>");
    s
}

/// `<abort/>` (XEP-0388 §3.5).
pub const ABORT: &str = "<abort xmlns='urn:xmpp:sasl:2'/>";

/// How the server answered inline stream management.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmAnswer {
    /// `<enabled/>` (inside `<bound/>`).
    Enabled {
        /// The session id, when resumable.
        id: Option<String>,
        /// Seconds the session is kept.
        max: Option<u32>,
        /// Where to reconnect to resume.
        location: Option<String>,
    },
    /// `<resumed/>` (inside `<success/>`).
    Resumed {
        /// The session resumed.
        previd: String,
        /// How many of our stanzas the server handled.
        h: u32,
    },
    /// `<failed/>`: to `<enable/>` inside `<bound/>`, or to `<resume/>` inside `<success/>`.
    Failed {
        /// The server's `h`, to a `<resume/>`.
        h: Option<u32>,
        /// The condition.
        condition: Option<String>,
    },
}

/// A FAST token the server issued (XEP-0484 §3.3).
#[derive(Clone, PartialEq, Eq)]
pub struct TokenGrant {
    /// The secret.
    pub token: String,
    /// `expiry`, an XEP-0082 DateTime, as sent.
    pub expiry: Option<String>,
}

impl core::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

/// `<success/>` and what it carries (XEP-0388 §2.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Success {
    /// `<additional-data/>`, decoded.
    pub additional_data: Option<Vec<u8>>,
    /// `<authorization-identifier/>`: a full JID once a resource is bound.
    pub authorization_identifier: Option<String>,
    /// `<bound/>` (`Ok`, with stream management's answer inside) or Bind 2 `<failed/>`
    /// (`Err`, its condition); `None` when neither came.
    pub bound: Option<Result<Option<SmAnswer>, String>>,
    /// The answer to an inline `<resume/>`.
    pub resume: Option<SmAnswer>,
    /// A new FAST token.
    pub token: Option<TokenGrant>,
}

/// A SASL2 element the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// `<challenge/>`, decoded.
    Challenge(Vec<u8>),
    /// `<success/>`.
    Success(Success),
    /// `<failure/>`: the RFC 6120 condition (unknown ones read as `not-authorized`) and text.
    Failure {
        /// The condition.
        condition: SaslFailure,
        /// `<text/>`.
        text: Option<String>,
    },
    /// `<continue/>`: the tasks offered.
    Continue(Vec<String>),
}

/// Why a SASL2 element could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

fn payload(node: roxmltree::Node<'_, '_>) -> Result<Vec<u8>, Malformed> {
    let text: String = node
        .text()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    decode_strict(&text).map_err(|_| Malformed("base64"))
}

fn sm_answer(node: roxmltree::Node<'_, '_>) -> Result<Option<SmAnswer>, Malformed> {
    match sm_element::parse(node) {
        Some(Ok(Nonza::Enabled {
            id,
            resume,
            max,
            location,
        })) => Ok(Some(SmAnswer::Enabled {
            id: id.filter(|_| resume),
            max,
            location,
        })),
        Some(Ok(Nonza::Resumed { previd, h })) => Ok(Some(SmAnswer::Resumed { previd, h })),
        Some(Ok(Nonza::Failed { h, condition })) => Ok(Some(SmAnswer::Failed { h, condition })),
        Some(Err(sm_element::Malformed(what))) => Err(Malformed(what)),
        _ => Ok(None),
    }
}

/// Reads a SASL2 element: `None` when `node` is not one the client awaits.
pub fn parse(node: roxmltree::Node<'_, '_>) -> Option<Result<Received, Malformed>> {
    if node.tag_name().namespace() != Some(NS_SASL2) {
        return None;
    }
    let elements = || node.children().filter(|c| c.is_element());
    Some(match node.tag_name().name() {
        "challenge" => payload(node).map(Received::Challenge),
        "success" => (|| {
            let mut success = Success::default();
            for child in elements() {
                match (child.tag_name().namespace(), child.tag_name().name()) {
                    (Some(NS_SASL2), "additional-data") => {
                        success.additional_data = Some(payload(child)?)
                    }
                    // The XEP names it `-identifier`; some examples `-identity`.
                    (Some(NS_SASL2), "authorization-identifier" | "authorization-identity") => {
                        success.authorization_identifier =
                            child.text().map(|t| String::from(t.trim()))
                    }
                    (Some(NS_BIND2), "bound") => {
                        let mut sm = None;
                        for c in child.children().filter(|c| c.is_element()) {
                            if c.tag_name().namespace() == Some(NS_SM) {
                                sm = sm_answer(c)?;
                            }
                        }
                        success.bound = Some(Ok(sm));
                    }
                    (Some(NS_BIND2), "failed") => {
                        let condition = child
                            .descendants()
                            .find(|c| {
                                c.is_element()
                                    && c.tag_name().namespace()
                                        == Some("urn:ietf:params:xml:ns:xmpp-stanzas")
                                    && c.tag_name().name() != "text"
                            })
                            .map_or("undefined-condition", |c| c.tag_name().name());
                        success.bound = Some(Err(String::from(condition)));
                    }
                    (Some(NS_SM), _) => success.resume = sm_answer(child)?,
                    (Some(NS_FAST), "token") => {
                        let token = child.attribute("token").ok_or(Malformed("token"))?;
                        success.token = Some(TokenGrant {
                            token: String::from(token),
                            expiry: child.attribute("expiry").map(String::from),
                        });
                    }
                    _ => {}
                }
            }
            Ok(Received::Success(success))
        })(),
        "failure" => {
            let mut condition = SaslFailure::NotAuthorized;
            let mut text = None;
            for child in elements() {
                if child.tag_name().name() == "text" {
                    text = child.text().map(String::from);
                } else if let Some(c) = SaslFailure::from_name(child.tag_name().name()) {
                    condition = c;
                }
            }
            Ok(Received::Failure { condition, text })
        }
        "continue" => Ok(Received::Continue(
            node.descendants()
                .filter(|c| c.is_element() && c.tag_name().name() == "task")
                .filter_map(|c| c.text())
                .map(|t| String::from(t.trim()))
                .collect(),
        )),
        _ => return None,
    })
}

/// Seconds since the Unix epoch of an XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ss[.sss](Z|±hh:mm)`);
/// `None` when it is not one.
pub fn parse_datetime(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    // Two or four ASCII digits, read bytewise: no integer `FromStr` is linked for this.
    let num = |r: core::ops::Range<usize>| -> Option<i32> {
        b.get(r)?.iter().try_fold(0i32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i32::from(c - b'0'))
        })
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let digits = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        b"Z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let minutes = num(b.len() - 5..b.len() - 3)? * 60 + num(b.len() - 2..b.len())?;
            if *sign == b'+' {
                minutes * 60
            } else {
                -minutes * 60
            }
        }
        _ => return None,
    };
    // Days from the civil date (proleptic Gregorian); a four-digit year keeps the day count
    // in `i32`, so no 64-bit division is linked for it.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = i64::from(era * 146_097 + doe - 719_468);
    u64::try_from(days * 86_400 + i64::from(h * 3600 + mi * 60 + sec - offset)).ok()
}

/// The XEP-0082 DateTime (`CCYY-MM-DDThh:mm:ssZ`) of `secs` since the Unix epoch.
pub fn format_datetime(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    // The civil date of a day count (proleptic Gregorian), the inverse of `parse_datetime`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    alloc::format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(xml: &str) -> Received {
        let doc = roxmltree::Document::parse(xml).unwrap();
        parse(doc.root_element()).unwrap().unwrap()
    }

    #[test]
    fn reads_prosodys_success_with_bind2_inline_sm_and_token() {
        let r = parsed(
            "<success xmlns='urn:xmpp:sasl:2'><additional-data>dj1hYmM=</additional-data>\
             <bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='s1' resume='1' max='600'/></bound>\
             <token xmlns='urn:xmpp:fast:0' expiry='2026-12-28T21:15:20Z' token='secret-token:x'/>\
             <authorization-identifier>alice@localhost/probe~Uk5h</authorization-identifier></success>",
        );
        let Received::Success(s) = r else { panic!() };
        assert_eq!(s.additional_data.as_deref(), Some(&b"v=abc"[..]));
        assert_eq!(
            s.authorization_identifier.as_deref(),
            Some("alice@localhost/probe~Uk5h")
        );
        assert_eq!(
            s.bound,
            Some(Ok(Some(SmAnswer::Enabled {
                id: Some("s1".into()),
                max: Some(600),
                location: None
            })))
        );
        assert_eq!(s.token.unwrap().token, "secret-token:x");
    }

    #[test]
    fn reads_failure_and_continue() {
        assert_eq!(
            parsed("<failure xmlns='urn:xmpp:sasl:2'><credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/><text>old</text></failure>"),
            Received::Failure { condition: SaslFailure::CredentialsExpired, text: Some("old".into()) }
        );
        assert_eq!(
            parsed("<continue xmlns='urn:xmpp:sasl:2'><tasks><task>TOTP</task></tasks></continue>"),
            Received::Continue(alloc::vec!["TOTP".into()])
        );
    }

    #[test]
    fn authenticate_carries_what_was_asked() {
        let s = authenticate(
            "SCRAM-SHA-1",
            &Authenticate {
                initial_response: Some(b"n,,n=a,r=b"),
                user_agent: Some(UserAgent {
                    id: "u-1",
                    software: Some("x<y"),
                    device: None,
                }),
                bind: Some(Some("cli")),
                enable_sm: Some((true, None)),
                request_token: Some("HT-SHA-256-NONE"),
                ..Authenticate::default()
            },
        );
        roxmltree::Document::parse(&s).unwrap();
        assert!(
            s.contains("<initial-response>biwsbj1hLHI9Yg==</initial-response>"),
            "{s}"
        );
        assert!(s.contains("<software>x&lt;y</software>"), "{s}");
        assert!(
            s.contains("<bind xmlns='urn:xmpp:bind:0'><tag>cli</tag><enable xmlns='urn:xmpp:sm:3'"),
            "{s}"
        );
        assert!(
            s.contains("<request-token xmlns='urn:xmpp:fast:0' mechanism='HT-SHA-256-NONE'/>"),
            "{s}"
        );
    }

    #[test]
    fn datetimes_of_xep_0082() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_datetime("2026-12-28T21:15:20Z"), Some(1_798_492_520));
        assert_eq!(
            parse_datetime("2026-12-28T22:15:20.123+01:00"),
            Some(1_798_492_520)
        );
        assert_eq!(parse_datetime("2026-13-28T21:15:20Z"), None);
        for secs in [0, 951_782_400, 1_798_492_520, 4_107_542_399] {
            assert_eq!(parse_datetime(&format_datetime(secs)), Some(secs));
        }
        assert_eq!(format_datetime(1_798_492_520), "2026-12-28T21:15:20Z");
        assert_eq!(parse_datetime("yesterday"), None);
        assert_eq!(
            parse_datetime("2026-12-28T15:45:20-05:30"),
            Some(1_798_492_520)
        );
        for bad in [
            "2026-12-28T21:15:20",
            "2026-12-28T21:15:20.Z",
            "2026-12-28T21:15:20+1:000",
            "2026-12-28T21:15:20+01-00",
            "2026-12-28T21:15:20+0a:00",
            "+026-12-28T21:15:20Z",
            "2026-12-28T21:15:2\u{e9}",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }
}

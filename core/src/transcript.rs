//! What transcripts of a negotiation share across wrappers (the CLI's `I:`/`R:` lines, the
//! browser's transcript events): hiding credentials.

use alloc::string::{String, ToString};

/// What replaces a credential.
pub const REDACTED: &str = "[redacted]";

/// Hides credentials in one element (as cut by [`Splitter`](crate::xml::splitter::Splitter)):
/// the payload of `<auth>` and `<response>` (SASL initial response and responses, RFC 6120
/// §6.4.2 and §6.4.3: SCRAM proofs, PLAIN passwords; SASL2's `<authenticate>` too, XEP-0388),
/// the value of every `token` attribute (a FAST token in SASL2's `<success>`, XEP-0484
/// §3.3) and every occurrence of a known secret.
pub fn redact(element: &str, secrets: &[String]) -> String {
    let mut s = element.to_string();
    for quote in ['\'', '"'] {
        let key = alloc::format!(" token={quote}");
        let mut from = 0;
        while let Some(at) = s[from..].find(&key) {
            let start = from + at + key.len();
            let Some(len) = s[start..].find(quote) else {
                break;
            };
            s.replace_range(start..start + len, REDACTED);
            from = start + REDACTED.len();
        }
    }
    let trimmed = s.trim_start();
    if trimmed.starts_with("<auth") || trimmed.starts_with("<response") {
        if let (Some(open_end), Some(close)) = (s.find('>'), s.rfind("</")) {
            if open_end + 1 < close && &s[open_end..open_end + 2] != "/>" {
                let payload = &s[open_end + 1..close];
                if !payload.is_empty() && payload != "=" {
                    s.replace_range(open_end + 1..close, REDACTED);
                }
            }
        }
    }
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        s = s.replace(secret.as_str(), REDACTED);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn auth_and_response_payloads_are_redacted() {
        let secrets = vec!["hunter2".to_string()];
        assert_eq!(
            redact(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>biwsbj1qdWxpZXQ=</auth>",
                &secrets
            ),
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'>[redacted]</auth>"
        );
        assert_eq!(
            redact(
                "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>Yz1iaXdz</response>",
                &secrets
            ),
            "<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>[redacted]</response>"
        );
        assert_eq!(
            redact(
                "<message><body>my password is hunter2</body></message>",
                &secrets
            ),
            "<message><body>my password is [redacted]</body></message>"
        );
        assert_eq!(
            redact(
                "<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:xmpp:fast:0' expiry='x' token='secret-token:abc'/></success>",
                &[]
            ),
            "<success xmlns='urn:xmpp:sasl:2'><token xmlns='urn:xmpp:fast:0' expiry='x' token='[redacted]'/></success>"
        );
        let challenge = "<challenge xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>cj1meWtv</challenge>";
        assert_eq!(redact(challenge, &secrets), challenge);
        let empty = "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>";
        assert_eq!(redact(empty, &secrets), empty);
    }
}

//! DIGEST-MD5 client (RFC 2831), behind the `digest-md5` feature.
//!
//! **Deprecated**: RFC 6331 moved DIGEST-MD5 to Historic (weak MD5 construction, broken
//! integrity layer, interoperability problems) and RFC 6120 replaced it with SCRAM-SHA-1 as
//! mandatory to implement. It is here only for old servers, off unless both the feature and
//! `SaslPolicy::allow_digest_md5` are on. Authentication only (`qop=auth`); no integrity or
//! confidentiality layer; `algorithm=md5-sess`; UTF-8 names and passwords when the server
//! sends `charset=utf-8`, ASCII otherwise.

use alloc::string::String;
use alloc::vec::Vec;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::error::SaslError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    AwaitChallenge,
    ResponseSent { rspauth: String },
    Verified,
    Done,
    Failed,
}

pub(crate) struct DigestMd5Client {
    username: String,
    password: String,
    authzid: Option<String>,
    domain: String,
    service: &'static str,
    cnonce: String,
    state: State,
}

/// Parses `name=value` / `name="quoted"` directives, comma separated (RFC 2831 §7.1).
fn directives(text: &str) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    let skip_lws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_lws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_lws(&mut i);
        }
        if i >= b.len() {
            return Some(out);
        }
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'_') {
            i += 1;
        }
        let name = text[start..i].to_ascii_lowercase();
        if name.is_empty() {
            return None;
        }
        skip_lws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return None;
        }
        i += 1;
        skip_lws(&mut i);
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut closed = false;
            let mut seg = i;
            while i < b.len() {
                match b[i] {
                    b'\\' if i + 1 < b.len() => {
                        value.push_str(&text[seg..i]);
                        seg = i + 1;
                        i += 2;
                    }
                    b'"' => {
                        value.push_str(&text[seg..i]);
                        i += 1;
                        closed = true;
                        break;
                    }
                    _ => i += 1,
                }
            }
            if !closed {
                return None;
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' && !matches!(b[i], b' ' | b'\t') {
                i += 1;
            }
            value.push_str(&text[start..i]);
        }
        out.push((name, value));
        skip_lws(&mut i);
        if i < b.len() && b[i] != b',' {
            return None;
        }
    }
}

fn quote(value: &str, out: &mut String) {
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

impl DigestMd5Client {
    pub(crate) fn new(
        username: String,
        password: String,
        authzid: Option<String>,
        domain: String,
        cnonce: String,
    ) -> Result<Self, SaslError> {
        if username.is_empty() || password.is_empty() {
            return Err(SaslError::MissingCredentials("user name or password"));
        }
        Ok(DigestMd5Client {
            username,
            password,
            authzid: authzid.filter(|a| !a.is_empty()),
            domain,
            service: "xmpp",
            cnonce,
            state: State::AwaitChallenge,
        })
    }

    pub(crate) fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        match core::mem::replace(&mut self.state, State::Failed) {
            State::AwaitChallenge => self.respond(data),
            State::ResponseSent { rspauth } => {
                self.verify_rspauth(data, &rspauth)?;
                self.state = State::Verified;
                Ok(Vec::new())
            }
            _ => Err(SaslError::UnexpectedChallenge),
        }
    }

    pub(crate) fn success(&mut self, data: Option<&[u8]>) -> Result<(), SaslError> {
        match core::mem::replace(&mut self.state, State::Failed) {
            State::ResponseSent { rspauth } => {
                let data = data
                    .filter(|d| !d.is_empty())
                    .ok_or(SaslError::MissingServerSignature)?;
                self.verify_rspauth(data, &rspauth)?;
            }
            State::Verified => {}
            _ => return Err(SaslError::UnexpectedSuccess),
        }
        self.state = State::Done;
        Ok(())
    }

    fn verify_rspauth(&self, data: &[u8], expected: &str) -> Result<(), SaslError> {
        let text =
            core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
        let d = directives(text).ok_or(SaslError::MalformedChallenge("directive syntax"))?;
        let got = d
            .iter()
            .find(|(n, _)| n == "rspauth")
            .map(|(_, v)| v.as_str())
            .ok_or(SaslError::MalformedChallenge("no rspauth"))?;
        if bool::from(got.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(SaslError::ServerSignatureMismatch)
        }
    }

    fn respond(&mut self, data: &[u8]) -> Result<Vec<u8>, SaslError> {
        let text =
            core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
        let d = directives(text).ok_or(SaslError::MalformedChallenge("directive syntax"))?;
        fn get_all<'a>(
            d: &'a [(String, String)],
            name: &'a str,
        ) -> impl Iterator<Item = &'a String> + 'a {
            d.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
        }
        let mut nonces = get_all(&d, "nonce");
        let nonce = nonces
            .next()
            .ok_or(SaslError::MalformedChallenge("no nonce"))?;
        if nonces.next().is_some() {
            return Err(SaslError::MalformedChallenge("two nonces"));
        }
        if get_all(&d, "algorithm").next().map(String::as_str) != Some("md5-sess") {
            return Err(SaslError::MalformedChallenge("algorithm is not md5-sess"));
        }
        if let Some(qop) = get_all(&d, "qop").next() {
            if !qop.split(',').any(|q| q.trim() == "auth") {
                return Err(SaslError::MalformedChallenge("qop without auth"));
            }
        }
        let utf8 = get_all(&d, "charset").next().map(String::as_str) == Some("utf-8");
        let ascii = self.username.is_ascii() && self.password.is_ascii();
        if !utf8 && !ascii {
            return Err(SaslError::InvalidCredentials(
                "user name or password (non-ASCII without charset=utf-8)",
            ));
        }
        let realm = get_all(&d, "realm")
            .next()
            .cloned()
            .unwrap_or_else(|| self.domain.clone());
        let digest_uri = alloc::format!("{}/{}", self.service, self.domain);
        let nc = "00000001";
        let qop = "auth";

        let inner = md5(&[
            self.username.as_bytes(),
            b":",
            realm.as_bytes(),
            b":",
            self.password.as_bytes(),
        ]);
        let mut a1: Vec<&[u8]> =
            alloc::vec![&inner, b":", nonce.as_bytes(), b":", self.cnonce.as_bytes()];
        if let Some(a) = &self.authzid {
            a1.push(b":");
            a1.push(a.as_bytes());
        }
        let ha1 = hex(&md5(&a1));
        let kd = |a2: &str| {
            let ha2 = hex(&md5(&[a2.as_bytes()]));
            hex(&md5(&[
                ha1.as_bytes(),
                b":",
                nonce.as_bytes(),
                b":",
                nc.as_bytes(),
                b":",
                self.cnonce.as_bytes(),
                b":",
                qop.as_bytes(),
                b":",
                ha2.as_bytes(),
            ]))
        };
        let response = kd(&alloc::format!("AUTHENTICATE:{digest_uri}"));
        let rspauth = kd(&alloc::format!(":{digest_uri}"));

        let mut out = String::new();
        if utf8 {
            out.push_str("charset=utf-8,");
        }
        out.push_str("username=");
        quote(&self.username, &mut out);
        out.push_str(",realm=");
        quote(&realm, &mut out);
        out.push_str(",nonce=");
        quote(nonce, &mut out);
        out.push_str(",nc=");
        out.push_str(nc);
        out.push_str(",cnonce=");
        quote(&self.cnonce, &mut out);
        out.push_str(",digest-uri=");
        quote(&digest_uri, &mut out);
        out.push_str(",response=");
        out.push_str(&response);
        out.push_str(",qop=auth");
        if let Some(a) = &self.authzid {
            out.push_str(",authzid=");
            quote(a, &mut out);
        }
        self.state = State::ResponseSent { rspauth };
        Ok(out.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 2831 §4 example (IMAP service, so the test sets the service name).
    fn rfc2831_client() -> DigestMd5Client {
        let mut c = DigestMd5Client::new(
            "chris".into(),
            "secret".into(),
            None,
            "elwood.innosoft.com".into(),
            "OA6MHXh6VqTrRk".into(),
        )
        .unwrap();
        c.service = "imap";
        c
    }

    const RFC2831_CHALLENGE: &[u8] = b"realm=\"elwood.innosoft.com\",nonce=\"OA6MG9tEQGm2hh\",\
qop=\"auth\",algorithm=md5-sess,charset=utf-8";

    #[test]
    fn digest_md5_rfc2831_example_response_and_rspauth() {
        let mut c = rfc2831_client();
        let r = String::from_utf8(c.challenge(RFC2831_CHALLENGE).unwrap()).unwrap();
        assert!(
            r.contains("response=d388dad90d4bbd760a152321f2143af7"),
            "{r}"
        );
        assert!(r.contains("digest-uri=\"imap/elwood.innosoft.com\""), "{r}");
        assert!(r.contains("nc=00000001") && r.contains("qop=auth"), "{r}");
        assert_eq!(
            c.challenge(b"rspauth=ea40f60335c427b5527b84dbabcdfffd")
                .unwrap(),
            b""
        );
        c.success(None).unwrap();
    }

    #[test]
    fn digest_md5_rspauth_in_success_is_verified() {
        let mut c = rfc2831_client();
        c.challenge(RFC2831_CHALLENGE).unwrap();
        assert_eq!(
            c.success(Some(b"rspauth=00000000000000000000000000000000")),
            Err(SaslError::ServerSignatureMismatch)
        );
        let mut c = rfc2831_client();
        c.challenge(RFC2831_CHALLENGE).unwrap();
        assert_eq!(c.success(None), Err(SaslError::MissingServerSignature));
        let mut c = rfc2831_client();
        c.challenge(RFC2831_CHALLENGE).unwrap();
        c.success(Some(b"rspauth=ea40f60335c427b5527b84dbabcdfffd"))
            .unwrap();
    }

    #[test]
    fn digest_md5_refuses_other_algorithms_and_qops() {
        let mut c = rfc2831_client();
        assert!(c.challenge(b"nonce=\"x\",algorithm=md5").is_err());
        let mut c = rfc2831_client();
        assert!(c
            .challenge(b"nonce=\"x\",qop=\"auth-conf\",algorithm=md5-sess")
            .is_err());
        let mut c = rfc2831_client();
        assert!(c
            .challenge(b"nonce=\"unterminated,algorithm=md5-sess")
            .is_err());
    }

    #[test]
    fn digest_md5_directive_parser_unquotes() {
        let d = directives("a=\"x\\\"y\" , b=2,,c=\"\"").unwrap();
        assert_eq!(d[0], ("a".into(), "x\"y".into()));
        assert_eq!(d[1], ("b".into(), "2".into()));
        assert_eq!(d[2], ("c".into(), "".into()));
    }
}

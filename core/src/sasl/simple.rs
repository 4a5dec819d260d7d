//! The one-message mechanisms: PLAIN (RFC 4616), EXTERNAL (RFC 4422 appendix A),
//! ANONYMOUS (RFC 4505).

use alloc::string::String;
use alloc::vec::Vec;

use super::error::SaslError;

/// PLAIN: `[authzid] NUL authcid NUL passwd` (RFC 4616 §2), UTF-8, no NUL inside a field.
pub(crate) fn plain_message(
    authzid: Option<&str>,
    authcid: &str,
    password: &str,
) -> Result<Vec<u8>, SaslError> {
    let authzid = authzid.unwrap_or("");
    if authcid.is_empty() {
        return Err(SaslError::MissingCredentials("user name"));
    }
    if password.is_empty() {
        return Err(SaslError::MissingCredentials("password"));
    }
    if [authzid, authcid, password]
        .iter()
        .any(|f| f.contains('\0'))
    {
        return Err(SaslError::InvalidCredentials(
            "user name, authzid or password (NUL)",
        ));
    }
    let mut m = Vec::with_capacity(authzid.len() + authcid.len() + password.len() + 2);
    m.extend_from_slice(authzid.as_bytes());
    m.push(0);
    m.extend_from_slice(authcid.as_bytes());
    m.push(0);
    m.extend_from_slice(password.as_bytes());
    Ok(m)
}

/// The parts of a PLAIN message (server side); the password is dropped by the caller right
/// after the check.
pub(crate) struct PlainParts {
    pub authzid: Option<String>,
    pub authcid: String,
    pub password: String,
}

/// Parses a PLAIN message; `None` when it violates RFC 4616 §2 (three fields, UTF-8,
/// authcid and password 1..=255 octets... here: non-empty).
pub(crate) fn parse_plain(message: &[u8]) -> Option<PlainParts> {
    let text = core::str::from_utf8(message).ok()?;
    let mut fields = text.split('\0');
    let (authzid, authcid, password) = (fields.next()?, fields.next()?, fields.next()?);
    if fields.next().is_some() || authcid.is_empty() || password.is_empty() {
        return None;
    }
    Some(PlainParts {
        authzid: (!authzid.is_empty()).then(|| String::from(authzid)),
        authcid: String::from(authcid),
        password: String::from(password),
    })
}

/// ANONYMOUS trace (RFC 4505 §3): empty, or 1..=255 UTF-8 characters.
pub(crate) fn valid_anonymous_trace(message: &[u8]) -> bool {
    match core::str::from_utf8(message) {
        Ok(t) => t.chars().count() <= 255 && !t.contains('\0'),
        Err(_) => false,
    }
}

/// EXTERNAL message (RFC 4422 appendix A.1): the authzid, or empty (sent as `=`).
pub(crate) fn external_message(authzid: Option<&str>) -> Result<Vec<u8>, SaslError> {
    let a = authzid.unwrap_or("");
    if a.contains('\0') {
        return Err(SaslError::InvalidCredentials("authzid (NUL)"));
    }
    Ok(a.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_message_is_authzid_nul_authcid_nul_password() {
        assert_eq!(
            plain_message(None, "tim", "tanstaaftanstaaf").unwrap(),
            b"\0tim\0tanstaaftanstaaf"
        );
        assert_eq!(
            plain_message(Some("Ursel"), "Kurt", "xipj3plmq").unwrap(),
            b"Ursel\0Kurt\0xipj3plmq"
        );
        assert!(plain_message(None, "a\0b", "x").is_err());
        assert!(plain_message(None, "a", "").is_err());
    }

    #[test]
    fn plain_parse_rejects_wrong_field_count() {
        let p = parse_plain(b"Ursel\0Kurt\0xipj3plmq").unwrap();
        assert_eq!(p.authzid.as_deref(), Some("Ursel"));
        assert_eq!(p.authcid, "Kurt");
        assert!(parse_plain(b"\0Kurt").is_none());
        assert!(parse_plain(b"\0Kurt\0pw\0x").is_none());
        assert!(parse_plain(b"\0\0pw").is_none());
        assert!(parse_plain(b"\0Kurt\0").is_none());
        assert!(parse_plain(b"\0K\xffurt\0pw").is_none());
    }

    #[test]
    fn anonymous_trace_is_at_most_255_characters() {
        assert!(valid_anonymous_trace(b""));
        assert!(valid_anonymous_trace("sirhc@example.com".as_bytes()));
        assert!(valid_anonymous_trace("é".repeat(255).as_bytes()));
        assert!(!valid_anonymous_trace("a".repeat(256).as_bytes()));
        assert!(!valid_anonymous_trace(b"\xff"));
    }
}

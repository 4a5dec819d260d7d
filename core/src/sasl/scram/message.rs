//! The four SCRAM messages, built and parsed (RFC 5802 §5, formal syntax in §7; the same
//! for SCRAM-SHA-256, RFC 7677 §3):
//!
//! ```text
//! client-first      = gs2-header client-first-bare
//! gs2-header        = ("n" / "y" / "p=" cb-type) "," [ "a=" saslname ] ","
//! client-first-bare = "n=" saslname ",r=" c-nonce
//! server-first      = "r=" c-nonce s-nonce ",s=" base64(salt) ",i=" iterations
//! client-final      = "c=" base64(gs2-header [cb-data]) ",r=" nonce ",p=" base64(ClientProof)
//! server-final      = "v=" base64(ServerSignature) / "e=" error
//! AuthMessage       = client-first-bare "," server-first "," client-final-without-proof
//! ```
//!
//! Each message is parsed by the side that receives it; a client's errors are
//! [`SaslError`]s, a server's are a [`Refusal`]. What the checks need beyond the message
//! (the client's own nonce) is an argument; what depends on the side's state or policy
//! (channel binding, iteration bounds, credentials) is left to [`super::client`] and
//! [`super::server`].

use alloc::string::String;
use alloc::vec::Vec;

use crate::sasl::base64::{decode_strict, encode};
use crate::sasl::channel_binding::ChannelBindingType;
use crate::sasl::error::{SaslError, SaslFailure};
use crate::sasl::select::Gs2CbFlag;

/// What a server refuses a message with: the condition for `<failure/>` and why, for logs
/// and `<text/>`.
pub(super) type Refusal = (SaslFailure, &'static str);

/// Escapes a name for SCRAM's `n=` and `a=` (RFC 5802 §5.1): `,` → `=2C`, `=` → `=3D`.
pub fn escape_saslname(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
    out
}

/// Reverses [`escape_saslname`]; `None` for `=` not followed by `2C` or `3D`, a raw `,`, or
/// NUL (RFC 5802 §7: such a name is invalid).
pub fn unescape_saslname(escaped: &str) -> Option<String> {
    let mut out = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(i) = rest.find(['=', ',', '\0']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("=2C") {
            out.push(',');
        } else if tail.starts_with("=3D") {
            out.push('=');
        } else {
            return None;
        }
        rest = &tail[3..];
    }
    out.push_str(rest);
    Some(out)
}

/// `printable` of RFC 5802 §7: %x21-2B / %x2D-7E (no comma).
pub(super) fn is_printable_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `a=value` attributes; `None` when one is not a single ASCII letter followed by `=`.
fn attributes(msg: &str) -> impl Iterator<Item = Option<(u8, &str)>> {
    msg.split(',').map(|part| {
        let b = part.as_bytes();
        if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b'=' {
            Some((b[0], &part[2..]))
        } else {
            None
        }
    })
}

/// `posit-number` of RFC 5802 §7: digits without a leading zero.
fn parse_iterations(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) || value.starts_with('0') {
        return None;
    }
    value.parse().ok()
}

// ---------------------------------------------------------------------------------------
// client-first

/// gs2-header: the channel-binding flag and the authzid, each followed by `,`.
pub(super) fn gs2_header(flag: &Gs2CbFlag, authzid: Option<&str>) -> String {
    let mut h = String::new();
    match flag {
        Gs2CbFlag::NoSupport => h.push('n'),
        Gs2CbFlag::SupportedNotUsed => h.push('y'),
        Gs2CbFlag::Used(t) => {
            h.push_str("p=");
            h.push_str(t.name());
        }
    }
    h.push(',');
    if let Some(a) = authzid {
        h.push_str("a=");
        h.push_str(&escape_saslname(a));
    }
    h.push(',');
    h
}

/// client-first-bare: `n=` the escaped user name, `r=` the client nonce.
pub(super) fn client_first_bare(username: &str, client_nonce: &str) -> String {
    let mut bare = String::from("n=");
    bare.push_str(&escape_saslname(username));
    bare.push_str(",r=");
    bare.push_str(client_nonce);
    bare
}

/// client-first as the server reads it, a part at a time: the gs2 header's flag first
/// ([`parse_client_first`]), then, once the server has checked that flag against what it
/// offers, the authzid ([`ClientFirst::authzid`]) and the bare message
/// ([`ClientFirst::bare`]).
pub(super) struct ClientFirst<'a> {
    /// The gs2 header as sent: client-final's `c=` must repeat it.
    pub gs2_header: &'a str,
    /// The channel-binding flag.
    pub cb_flag: Gs2CbFlag,
    /// The authzid field, `a=` included; empty when absent.
    authzid: &'a str,
    /// client-first-bare.
    bare: &'a str,
}

/// client-first-bare as the server reads it.
pub(super) struct ClientFirstBare<'a> {
    /// The message, for AuthMessage.
    pub text: &'a str,
    /// The user name, unescaped.
    pub authcid: String,
    /// The client's nonce.
    pub nonce: &'a str,
}

/// Splits client-first into its gs2 header and bare message and reads the
/// channel-binding flag.
pub(super) fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, Refusal> {
    use SaslFailure::{MalformedRequest, NotAuthorized};
    let Ok(msg) = core::str::from_utf8(data) else {
        return Err((MalformedRequest, "client-first is not UTF-8"));
    };
    // gs2-header = flag "," [authzid] ","
    let mut parts = msg.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err((MalformedRequest, "client-first has no gs2 header"));
    };
    let cb_flag = match flag {
        "n" => Gs2CbFlag::NoSupport,
        "y" => Gs2CbFlag::SupportedNotUsed,
        f => match f.strip_prefix("p=") {
            Some(name) => match ChannelBindingType::from_name(name) {
                Some(t) => Gs2CbFlag::Used(t),
                None => return Err((NotAuthorized, "unsupported channel-binding type")),
            },
            None => return Err((MalformedRequest, "bad gs2 channel-binding flag")),
        },
    };
    Ok(ClientFirst {
        gs2_header: &msg[..msg.len() - bare.len()],
        cb_flag,
        authzid,
        bare,
    })
}

impl<'a> ClientFirst<'a> {
    /// The authzid of the gs2 header, unescaped; `None` when there is none.
    pub(super) fn authzid(&self) -> Result<Option<String>, Refusal> {
        if self.authzid.is_empty() {
            return Ok(None);
        }
        match self.authzid.strip_prefix("a=").and_then(unescape_saslname) {
            Some(a) if !a.is_empty() => Ok(Some(a)),
            _ => Err((SaslFailure::MalformedRequest, "bad authzid in gs2 header")),
        }
    }

    /// client-first-bare: `n=`, `r=`, then extensions, which are ignored; a mandatory
    /// extension (`m=`) is refused.
    pub(super) fn bare(&self) -> Result<ClientFirstBare<'a>, Refusal> {
        use SaslFailure::MalformedRequest;
        let mut username = None;
        let mut client_nonce = None;
        for (i, attr) in attributes(self.bare).enumerate() {
            let Some((name, value)) = attr else {
                return Err((MalformedRequest, "client-first attribute syntax"));
            };
            match (i, name) {
                (0, b'm') => return Err((MalformedRequest, "unsupported mandatory extension m=")),
                (0, b'n') => username = Some(value),
                (1, b'r') => client_nonce = Some(value),
                (0..=1, _) => return Err((MalformedRequest, "expected n=, r=")),
                _ => {}
            }
        }
        let (Some(username), Some(nonce)) = (username, client_nonce) else {
            return Err((MalformedRequest, "expected n=, r="));
        };
        let Some(authcid) = unescape_saslname(username).filter(|u| !u.is_empty()) else {
            return Err((MalformedRequest, "bad saslname in n="));
        };
        if !is_printable_nonce(nonce) {
            return Err((MalformedRequest, "bad client nonce"));
        }
        Ok(ClientFirstBare {
            text: self.bare,
            authcid,
            nonce,
        })
    }
}

// ---------------------------------------------------------------------------------------
// server-first

/// server-first: the combined nonce, the salt, the iteration count.
pub(super) fn server_first(nonce: &str, salt: &[u8], iterations: u32) -> String {
    alloc::format!("r={nonce},s={},i={iterations}", encode(salt))
}

/// server-first as the client reads it.
pub(super) struct ServerFirst<'a> {
    /// The message, for AuthMessage.
    pub text: &'a str,
    /// The client's nonce followed by the server's.
    pub nonce: &'a str,
    /// The salt, decoded, never empty.
    pub salt: Vec<u8>,
    /// The iteration count, at least 1.
    pub iterations: u32,
    /// XEP-0474 `h=`: the server's hash of what it advertised, base64, if it sent one.
    pub ssdp: Option<&'a str>,
}

/// Reads server-first: `r=`, `s=`, `i=`, then extensions, which are ignored; a mandatory
/// extension (`m=`) is refused. The nonce must extend `client_nonce` (RFC 5802 §5.1).
pub(super) fn parse_server_first<'a>(
    data: &'a [u8],
    client_nonce: &str,
) -> Result<ServerFirst<'a>, SaslError> {
    let text =
        core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
    let mut nonce = None;
    let mut salt = None;
    let mut iterations = None;
    let mut ssdp = None;
    for (i, attr) in attributes(text).enumerate() {
        let (name, value) = attr.ok_or(SaslError::MalformedChallenge("attribute syntax"))?;
        match (i, name) {
            (0, b'm') => return Err(SaslError::MandatoryExtension),
            (0, b'r') => nonce = Some(value),
            (1, b's') => salt = Some(value),
            (2, b'i') => iterations = Some(value),
            (0..=2, _) => return Err(SaslError::MalformedChallenge("expected r=, s=, i=")),
            (_, b'h') => ssdp = Some(value),
            _ => {} // other extensions: ignored (RFC 5802 §7)
        }
    }
    let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
        return Err(SaslError::MalformedChallenge("expected r=, s=, i="));
    };
    if !is_printable_nonce(nonce) {
        return Err(SaslError::MalformedChallenge("nonce characters"));
    }
    if !nonce.starts_with(client_nonce) || nonce.len() == client_nonce.len() {
        return Err(SaslError::NonceNotExtended);
    }
    let salt = decode_strict(salt)?;
    if salt.is_empty() {
        return Err(SaslError::MalformedChallenge("empty salt"));
    }
    let iterations =
        parse_iterations(iterations).ok_or(SaslError::MalformedChallenge("i= value"))?;
    Ok(ServerFirst {
        text,
        nonce,
        salt,
        iterations,
        ssdp,
    })
}

// ---------------------------------------------------------------------------------------
// client-final

/// client-final-message-without-proof: `c=` the gs2 header and the channel-binding data,
/// `r=` the combined nonce.
pub(super) fn client_final_without_proof(gs2_header: &str, cb_data: &[u8], nonce: &str) -> String {
    let mut cbind = gs2_header.as_bytes().to_vec();
    cbind.extend_from_slice(cb_data);
    let mut without_proof = String::from("c=");
    without_proof.push_str(&encode(&cbind));
    without_proof.push_str(",r=");
    without_proof.push_str(nonce);
    without_proof
}

/// client-final: `without_proof` and `p=` the proof.
pub(super) fn client_final(without_proof: String, proof: &[u8]) -> String {
    let mut msg = without_proof;
    msg.push_str(",p=");
    msg.push_str(&encode(proof));
    msg
}

/// client-final as the server reads it.
pub(super) struct ClientFinal<'a> {
    /// Everything before `,p=`, for AuthMessage.
    pub without_proof: &'a str,
    /// `c=`, decoded: the gs2 header and the channel-binding data.
    pub cbind: Vec<u8>,
    /// `r=`, the combined nonce.
    pub nonce: &'a str,
    /// `p=`, decoded: ClientProof.
    pub proof: Vec<u8>,
}

/// Reads client-final: `c=`, `r=`, extensions (a mandatory one, `m=`, is refused), and
/// `p=` last.
pub(super) fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, Refusal> {
    use SaslFailure::MalformedRequest;
    let Ok(msg) = core::str::from_utf8(data) else {
        return Err((MalformedRequest, "client-final is not UTF-8"));
    };
    // The proof is the last attribute; everything before it is signed.
    let Some(split) = msg.rfind(",p=") else {
        return Err((MalformedRequest, "client-final without p="));
    };
    let (without_proof, proof) = (&msg[..split], &msg[split + 3..]);
    let mut cbind = None;
    let mut nonce = None;
    for (i, attr) in attributes(without_proof).enumerate() {
        let Some((name, value)) = attr else {
            return Err((MalformedRequest, "client-final attribute syntax"));
        };
        match (i, name) {
            (0, b'c') => cbind = Some(value),
            (1, b'r') => nonce = Some(value),
            (0..=1, _) => return Err((MalformedRequest, "expected c=, r=")),
            (_, b'm') => return Err((MalformedRequest, "unsupported mandatory extension m=")),
            _ => {}
        }
    }
    let (Some(cbind), Some(nonce)) = (cbind, nonce) else {
        return Err((MalformedRequest, "expected c=, r="));
    };
    let (Ok(cbind), Ok(proof)) = (decode_strict(cbind), decode_strict(proof)) else {
        return Err((SaslFailure::IncorrectEncoding, "bad base64 in client-final"));
    };
    Ok(ClientFinal {
        without_proof,
        cbind,
        nonce,
        proof,
    })
}

// ---------------------------------------------------------------------------------------
// server-final

/// server-final with the server's signature.
pub(super) fn server_final(server_signature: &[u8]) -> String {
    let mut server_final = String::from("v=");
    server_final.push_str(&encode(server_signature));
    server_final
}

/// server-final as the client reads it.
pub(super) enum ServerFinal<'a> {
    /// `v=`, decoded: ServerSignature, still to be checked.
    Verifier(Vec<u8>),
    /// `e=`: the server's error.
    Error(&'a str),
}

/// Reads server-final: `v=` or `e=` first.
pub(super) fn parse_server_final(data: &[u8]) -> Result<ServerFinal<'_>, SaslError> {
    let msg = core::str::from_utf8(data).map_err(|_| SaslError::MalformedChallenge("not UTF-8"))?;
    let first = attributes(msg)
        .next()
        .flatten()
        .ok_or(SaslError::MalformedChallenge("server-final syntax"))?;
    match first {
        (b'e', value) => Ok(ServerFinal::Error(value)),
        (b'v', value) => Ok(ServerFinal::Verifier(decode_strict(value)?)),
        _ => Err(SaslError::MalformedChallenge(
            "server-final without v= or e=",
        )),
    }
}

// ---------------------------------------------------------------------------------------
// AuthMessage

/// AuthMessage (RFC 5802 §3): what ClientProof and ServerSignature are computed over.
pub(super) fn auth_message(
    client_first_bare: &str,
    server_first: &str,
    without_proof: &str,
) -> String {
    let mut m = String::with_capacity(
        client_first_bare.len() + server_first.len() + without_proof.len() + 2,
    );
    m.push_str(client_first_bare);
    m.push(',');
    m.push_str(server_first);
    m.push(',');
    m.push_str(without_proof);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::scram::tests::client;
    use crate::sasl::{Credentials, Mechanism};

    #[test]
    fn saslname_escaping_and_bad_escapes() {
        assert_eq!(escape_saslname("a,b=c"), "a=2Cb=3Dc");
        assert_eq!(unescape_saslname("a=2Cb=3Dc").as_deref(), Some("a,b=c"));
        for bad in ["=", "a=", "=2c", "=3d", "=41", "a,b", "a\0b", "=2"] {
            assert_eq!(unescape_saslname(bad), None, "{bad:?}");
        }
        let mut c = client(
            Mechanism::ScramSha1,
            Credentials::password("a,b=c", "pencil").with_authzid("x=y,z@example.com"),
            "nonce",
        );
        assert_eq!(
            c.initial_response().unwrap().unwrap(),
            b"n,a=x=3Dy=2Cz@example.com,n=a=2Cb=3Dc,r=nonce"
        );
    }
}

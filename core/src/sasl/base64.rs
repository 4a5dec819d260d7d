//! Strict base64 for SASL element text (RFC 6120 §6.4.2, RFC 4648 §4).
//!
//! An element with no text carries no data; the text `=` carries empty data (a zero-length
//! initial response or response). Padding must be canonical, trailing bits zero, and there is
//! no whitespace or line breaking: anything else is `incorrect-encoding` (§6.5.5).

use alloc::string::String;
use alloc::vec::Vec;
use base64ct::{Base64, Encoding};

pub use super::error::IncorrectEncoding;

/// Strict standard base64 of `data`; `""` for empty data (use [`encode_payload`] for
/// element text, which writes `=` for that).
pub fn encode(data: &[u8]) -> String {
    Base64::encode_string(data)
}

/// Decodes strict standard base64 (canonical padding, no whitespace). `=` alone decodes to
/// empty data (§6.4.2); the empty string is also empty data.
pub fn decode_strict(text: &str) -> Result<Vec<u8>, IncorrectEncoding> {
    if text == "=" {
        return Ok(Vec::new());
    }
    Base64::decode_vec(text).map_err(|_| IncorrectEncoding)
}

/// Element text for a SASL payload: `None` → no text, empty → `=`, else base64.
pub fn encode_payload(data: Option<&[u8]>) -> String {
    match data {
        None => String::new(),
        Some([]) => String::from("="),
        Some(d) => encode(d),
    }
}

/// The payload in an element's text: no text → `None`, `=` → empty, else strict base64.
pub fn decode_payload(text: &str) -> Result<Option<Vec<u8>>, IncorrectEncoding> {
    if text.is_empty() {
        Ok(None)
    } else {
        decode_strict(text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_response_is_a_single_equals_sign() {
        assert_eq!(encode_payload(Some(b"")), "=");
        assert_eq!(encode_payload(None), "");
        assert_eq!(decode_payload("=").unwrap(), Some(Vec::new()));
        assert_eq!(decode_payload("").unwrap(), None);
    }

    #[test]
    fn base64_is_strict() {
        assert_eq!(decode_strict("biws").unwrap(), b"n,,");
        assert_eq!(decode_strict("YQ==").unwrap(), b"a");
        for bad in [
            "YQ", "YQ=", "Y Q==", "YQ==\n", "YR==", "bi ws", "b!ws", "==", "YQ===", "YQ==YQ==",
        ] {
            assert_eq!(decode_strict(bad), Err(IncorrectEncoding), "{bad:?}");
        }
    }
}

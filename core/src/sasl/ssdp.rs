//! SASL SCRAM Downgrade Protection (XEP-0474 §5): the server puts `h=` in its
//! server-first-message, the hash (with the SCRAM mechanism's hash function, base64) of
//! what it advertised: its SASL mechanisms sorted (`i;octet`) and joined by `0x1E`, then,
//! when it advertised channel-binding types (XEP-0440), `0x1F` and those types sorted and
//! joined by `0x1E`. The client computes the same from what it received and fails the
//! authentication when the two differ: someone changed the offer on the way. The attribute
//! is covered by the SCRAM proofs, so a man in the middle cannot remove or change it
//! without the server failing the exchange.

use alloc::string::String;
use alloc::vec::Vec;

/// The string XEP-0474 §5.1 hashes, from the advertised `mechanisms` (of the SASL profile
/// in use) and `cb_types` (`None` without XEP-0440).
pub fn advertised<'a>(
    mechanisms: impl IntoIterator<Item = &'a str>,
    cb_types: Option<&[String]>,
) -> Vec<u8> {
    let mut out = Vec::new();
    join_sorted(&mut out, mechanisms);
    if let Some(types) = cb_types {
        out.push(0x1f);
        join_sorted(&mut out, types.iter().map(String::as_str));
    }
    out
}

fn join_sorted<'a>(out: &mut Vec<u8>, items: impl IntoIterator<Item = &'a str>) {
    let mut items: Vec<&str> = items.into_iter().collect();
    // `i;octet`: byte order, which is `str`'s order. An insertion sort: an offer holds a
    // few names (at most what one bounded element carries), and the standard library's
    // sort was ~1.9 KB of flash on Cortex-M for this one call.
    for i in 1..items.len() {
        let mut j = i;
        while j > 0 && items[j - 1] > items[j] {
            items.swap(j - 1, j);
            j -= 1;
        }
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(0x1e);
        }
        out.extend_from_slice(item.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sasl::base64::encode;
    use crate::sasl::ScramHash;

    #[test]
    fn the_xep_example_hash() {
        // XEP-0474 §5.3: SHA-1 of 'SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point'.
        let types = [
            String::from("tls-server-end-point"),
            String::from("tls-exporter"),
        ];
        let s = advertised(["SCRAM-SHA-1-PLUS", "SCRAM-SHA-1"], Some(&types));
        assert_eq!(
            s,
            b"SCRAM-SHA-1\x1eSCRAM-SHA-1-PLUS\x1ftls-exporter\x1etls-server-end-point"
        );
        assert_eq!(
            encode(&ScramHash::Sha1.digest(&s)),
            "G6k/rBLDqgOhRRaCuuatSDFkJ08="
        );
        assert_eq!(advertised(["B", "A"], None), b"A\x1eB");
    }
}

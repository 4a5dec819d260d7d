//! Numbers in attribute values and character data (XEP-0198's counts, a device's readings),
//! written without `core::fmt`: on a microcontroller the integers' `Display` and
//! `Formatter::pad_integral` cost ~0.7 KB of flash for these few digits.

use alloc::string::String;

/// Appends `n` in decimal.
pub fn push_decimal(out: &mut String, mut n: u32) {
    let mut digits = [0u8; 10];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(digit) = digits.get_mut(start) {
            // `n % 10` is below 10: the cast keeps it.
            *digit = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if let Ok(text) = core::str::from_utf8(digits.get(start..).unwrap_or_default()) {
        out.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_display_would() {
        for n in [0, 7, 10, 99, 4_294_967_295, 1_000_000] {
            let mut s = String::from("h=");
            push_decimal(&mut s, n);
            assert_eq!(s, alloc::format!("h={n}"));
        }
    }
}

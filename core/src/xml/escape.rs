//! Escaping of character data and attribute values (XML 1.0 §2.4, RFC 6120 §11.1).

use alloc::string::String;

/// Appends `s` escaped for use as character data.
pub fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

/// Appends `s` escaped for use inside a single- or double-quoted attribute value.
pub fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_predefined() {
        let mut out = String::new();
        escape_attr("<a&'\">", &mut out);
        assert_eq!(out, "&lt;a&amp;&apos;&quot;&gt;");
        let mut out = String::new();
        escape_text("x<y & z>'", &mut out);
        assert_eq!(out, "x&lt;y &amp; z&gt;'");
    }
}

//! XML text escaping.

use alloc::string::String;

/// Appends `s` escaped for XML text and attribute values.
pub(super) fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Control characters other than tab and newline are not allowed in XML 1.0.
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_controls_are_escaped() {
        let mut s = alloc::string::String::new();
        super::escape_into(&mut s, "a<b>&\"c'\u{1}");
        assert_eq!(s, "a&lt;b&gt;&amp;&quot;c&apos;\u{fffd}");
    }
}

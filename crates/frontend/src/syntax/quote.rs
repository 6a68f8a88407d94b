//! A quoter that writes strings exactly like Go's `strconv.Quote`, for BuildKit's AST dump.

use std::fmt::Write;

/// Appends `s` to `out` quoted the way Go's `strconv.Quote` does it.
///
/// `"` and `\` are backslash-escaped, `\a \b \f \n \r \t \v` use their short forms, other
/// control bytes below 0x20 and DEL become `\xNN`, other non-printable characters become
/// `\uNNNN` or `\UNNNNNNNN`, and printable characters (including non-ASCII ones) are kept.
pub(crate) fn go_quote_into(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            ' '..='~' => out.push(c),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_go_printable(c) => out.push(c),
            c if (c as u32) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
}

/// `s` quoted like Go's `strconv.Quote`.
pub fn go_quote(s: &str) -> String {
    let mut out = String::new();
    go_quote_into(&mut out, s);
    out
}

/// Go's `strconv.IsPrint` for non-ASCII characters: letters, marks, numbers, punctuation and
/// symbols are printable; other spaces, controls, format characters, private-use, surrogates
/// and unassigned code points are not.
///
/// The Rust standard library's `Debug` escaping uses exactly that set (it escapes the general
/// categories Cc, Cf, Cs, Co, Cn, Zl, Zp and Zs except U+0020), but only exposes it through
/// `escape_debug`. Escaping a character that follows another one skips the grapheme-extender
/// rule that applies to a string's first character, so what is left is the printability test.
fn is_go_printable(c: char) -> bool {
    let mut buf = [0u8; 8];
    buf[0] = b'a';
    let len = c.encode_utf8(&mut buf[1..]).len();
    let Ok(pair) = std::str::from_utf8(&buf[..=len]) else {
        return false;
    };
    pair.escape_debug().nth(1) == Some(c) && pair.escape_debug().count() == 2
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn matches_go_for_escapes() {
        assert_eq!(
            go_quote("\" \\ / \u{8} \u{c} \n \r \t \0"),
            r#""\" \\ / \b \f \n \r \t \x00""#
        );
        assert_eq!(go_quote("\u{7}\u{b}\u{1b}\u{7f}"), r#""\a\v\x1b\x7f""#);
    }

    #[test]
    fn keeps_printable_unicode_and_escapes_the_rest() {
        assert_eq!(go_quote("♥ é 한국어"), "\"♥ é 한국어\"");
        // combining acute accent alone is a mark (printable in Go)
        assert_eq!(go_quote("\u{301}"), "\"\u{301}\"");
        assert_eq!(
            go_quote("\u{a0}\u{85}\u{200b}\u{2028}"),
            r#""\u00a0\u0085\u200b\u2028""#
        );
        assert_eq!(go_quote("\u{e000}"), r#""\ue000""#);
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
        assert_eq!(go_quote("😀"), "\"😀\"");
    }
}

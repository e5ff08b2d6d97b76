//! Making strings from hostile inputs safe to print on a terminal or in a CI log: control
//! and bidirectional-override characters are shown escaped, never sent raw.
//!
//! A request's strings end up in violation messages, artifact names and case names. Sent
//! raw, an ESC sequence can recolour, hide or rewrite earlier output, a newline can forge
//! an extra `deny`/`ALLOWED` line, and a bidi override can reverse what a reader sees
//! (Trojan Source, CVE-2021-42574). JSON output needs none of this: serde escapes control
//! characters, and the bytes stay exact for machines.

use std::borrow::Cow;

/// Unicode's `Bidi_Control` characters (a closed set: PropList.txt lists exactly these).
const BIDI_CONTROLS: [char; 12] = [
    '\u{061C}', '\u{200E}', '\u{200F}', '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}',
    '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
];

fn needs_escape(c: char) -> bool {
    c.is_control() || BIDI_CONTROLS.contains(&c)
}

/// `s` with every control character (C0, DEL, C1, so newlines and ESC too) and every bidi
/// control written as `\u{..}`; borrowed unchanged when nothing needs escaping (the usual
/// case). A literal `\u{1b}` in the input prints the same way, and is as harmless.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        for s in ["", "alice", "ünïcödé ✓ 名前", "a\\b"] {
            assert!(matches!(printable(s), Cow::Borrowed(x) if x == s));
        }
    }

    #[test]
    fn every_control_and_bidi_character_is_escaped() {
        assert_eq!(printable("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(printable("x\nDENIED y\r"), "x\\u{a}DENIED y\\u{d}");
        assert_eq!(
            printable("\0\t\x7f\u{85}\u{9b}"),
            "\\u{0}\\u{9}\\u{7f}\\u{85}\\u{9b}"
        );
        assert_eq!(printable("ab\u{202e}cd\u{2066}"), "ab\\u{202e}cd\\u{2066}");
        for c in (0u32..0x110000).filter_map(char::from_u32) {
            let shown = printable(&c.to_string()).into_owned();
            assert!(
                !shown.chars().any(needs_escape),
                "U+{:04X} printed raw",
                c as u32
            );
        }
    }
}

//! One key per person however their name is spelt, so "the author approved" and "one
//! approver counted twice" cannot be dodged with another spelling of the same name.
//!
//! Names in a request are claims (signed evidence is issue 15's business), but the rules
//! comparing them must not be fooled by spellings a reader takes for the same name: a
//! trailing or non-breaking space, a zero-width or other invisible character, a fullwidth
//! form, a combining mark, a different case, or a letter from another script that looks
//! the same. The key folds all of those together:
//!
//! 1. NFKC (fullwidth and compatibility forms, NBSP -> space), then full lowercase;
//! 2. decomposed (NFD), dropping combining marks, whitespace and control characters;
//! 3. the confusable skeleton of Unicode TS #39 (which also drops default-ignorable code
//!    points such as U+200B), lowercased again.
//!
//! Folding only ever merges names, so an error here makes a rule stricter (two people
//! taken for one), never looser. `unicode-normalization` and `unicode-security` (the
//! unicode-rs crates, with Unicode's own tables) do the work.

use std::collections::BTreeMap;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;
use unicode_security::confusable_detection::skeleton;

/// The comparison key of a person's name.
pub fn key(name: &str) -> String {
    let folded: String = name.nfkc().flat_map(char::to_lowercase).collect();
    let stripped: String = folded
        .nfd()
        .filter(|c| !is_combining_mark(*c) && !c.is_whitespace() && !c.is_control())
        .collect();
    skeleton(&stripped).flat_map(char::to_lowercase).collect()
}

/// `{name: key}` for the author and every approver of a request, and every approver of
/// its signed approvals: the map policy reads as `input.identities` (names it does not
/// find there compare as themselves).
pub fn of_request(
    raw: &serde_json::Value,
    signed_approvals: &[serde_json::Value],
) -> BTreeMap<String, String> {
    let author = raw.pointer("/change/author").and_then(|v| v.as_str());
    let claimed = raw
        .get("approvals")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten();
    author
        .into_iter()
        .chain(
            claimed
                .chain(signed_approvals)
                .filter_map(|a| a.get("approver").and_then(|v| v.as_str())),
        )
        .map(|n| (n.to_string(), key(n)))
        .collect()
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
    fn every_spelling_of_one_name_has_one_key() {
        let alice = key("alice");
        for variant in [
            "Alice",
            "ALICE",
            "alice ",
            " alice",
            "alice\u{a0}",
            "al\u{200b}ice",
            "ali\u{200d}ce",
            "alice\u{feff}",
            "al\u{ad}ice",
            "ａｌｉｃｅ",
            "alic\u{0435}",
            "\u{0430}lice",
            "alice\u{301}",
            "a\u{34f}lice",
            "alice\u{0}",
            "alice\u{7}",
            "al ice",
            "al\tice",
        ] {
            assert_eq!(key(variant), alice, "{variant:?}");
        }
    }

    #[test]
    fn different_names_keep_different_keys() {
        for (a, b) in [
            ("alice", "bob"),
            ("alice", "alicia"),
            ("bob", "rob"),
            ("ann", "anna"),
        ] {
            assert_ne!(key(a), key(b), "{a} / {b}");
        }
    }

    #[test]
    fn the_request_map_covers_author_and_approvers() {
        let raw = serde_json::json!({
            "change": {"author": "Bob"},
            "approvals": [{"approver": "ｂｏｂ"}, {"approver": "carol"}, {"decision": "approved"}]
        });
        let m = of_request(&raw, &[]);
        assert_eq!(m.len(), 3);
        assert_eq!(m["Bob"], m["ｂｏｂ"]);
        assert_ne!(m["Bob"], m["carol"]);
        // Signed approvers are mapped too: the self-approval rule compares them.
        let signed = [serde_json::json!({"approver": "B\u{200b}ob"})];
        let m = of_request(&raw, &signed);
        assert_eq!(m["B\u{200b}ob"], m["Bob"]);
    }
}

//! One line for an error and its causes (`context: cause: root cause`), for every place
//! that prints an error as text; it never changes what an error says, only joins the chain.
//!
//! The rule for this crate's errors: an underlying error is the `source` and the message
//! does not repeat it, so a chain printed here says each thing once. A message from
//! before that rule or from a dependency (ureq's transport errors, `fsio::ReadError`)
//! that already ends with what its causes say is not followed by them a second time.

use std::error::Error;
use std::fmt;

/// `Display` of an error followed by each of its sources, `: `-separated.
///
/// Trailing whitespace of each part is dropped (some parsers end their message with a
/// newline), so the chain stays one line wherever the parts are.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each cause's words, and for a `ReadError` its words without the path.
        let mut causes = Vec::new();
        let mut next = self.0.source();
        while let Some(c) = next {
            let reason = c
                .downcast_ref::<crate::fsio::ReadError>()
                .map(|r| r.reason().trim_end().to_string());
            causes.push((c.to_string().trim_end().to_string(), reason));
            next = c.source();
        }
        let root = causes.last().map(|(t, _)| t.clone()).unwrap_or_default();
        let mut said = self.0.to_string().trim_end().to_string();
        for (text, reason) in &causes {
            // Said already, at the end of the message (an older-style message that
            // includes its cause), or a cause that ends with the root cause the
            // message already ends with, or a `ReadError` whose reason the message
            // ends with (a message that summarised it with `ReadError::reason`).
            let repeats = text.is_empty()
                || said.ends_with(text.as_str())
                || (!root.is_empty() && said.ends_with(&root) && text.ends_with(&root))
                || reason
                    .as_deref()
                    .is_some_and(|r| !r.is_empty() && said.ends_with(r));
            if !repeats {
                said.push_str(": ");
                said.push_str(text);
            }
        }
        f.write_str(&said)
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load `x`")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read `y`: {0}")]
    struct SaysItsCause(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key `z`: gone")]
    struct Summarised(#[source] SaysItsCause);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read key `k`: {}", .0.reason())]
    struct ReadKey(#[source] crate::fsio::ReadError);

    #[test]
    fn a_read_error_summarised_by_its_reason_is_said_once() {
        let dir = std::env::temp_dir();
        let e = crate::fsio::read_capped(&dir, 10).unwrap_err();
        let said = ErrorChain(&ReadKey(e)).to_string();
        assert_eq!(said, "cannot read key `k`: not a regular file (directory)");
    }

    #[test]
    fn each_cause_is_said_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone\n");
        assert_eq!(
            ErrorChain(&Outer(io())).to_string(),
            "cannot load `x`: gone"
        );
        assert_eq!(
            ErrorChain(&SaysItsCause(io())).to_string(),
            "cannot read `y`: gone"
        );
        assert_eq!(ErrorChain(&io()).to_string(), "gone");
        assert_eq!(
            ErrorChain(&Summarised(SaysItsCause(io()))).to_string(),
            "cannot read key `z`: gone"
        );
        // A cause that says more than the message is kept.
        assert_eq!(
            ErrorChain(&Outer(std::io::Error::other(SaysItsCause(io())))).to_string(),
            "cannot load `x`: cannot read `y`: gone"
        );
    }
}

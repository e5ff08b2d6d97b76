//! One line for an error and its causes (`context: cause: root cause`), for every place
//! that prints an error as text; it never changes what an error says, only joins the chain.
//!
//! The rule for this crate's errors: an underlying error is the `source` and the message
//! does not repeat it, so a chain printed here says each thing once. A message from
//! before that rule or from a dependency (ureq's transport errors, `fsio::ReadError`)
//! that already ends with its source's text is not followed by it a second time.

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
        let mut said = self.0.to_string().trim_end().to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            let text = text.trim_end();
            // An older-style message already says its cause at its end.
            if !text.is_empty() && !said.ends_with(text) {
                said.push_str(": ");
                said.push_str(text);
            }
            cause = c.source();
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
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot load `x`")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot read `y`: {0}")]
    struct SaysItsCause(#[source] std::io::Error);

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
    }
}

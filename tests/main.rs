//! The one integration-test binary: named modules drive the real binary, the corpus
//! and (as they land) the server and plugins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

mod batch;
mod cli;
mod corpus;

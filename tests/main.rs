//! The one integration-test binary: named modules drive the real binary, the corpus,
//! the plugins and the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail loudly on broken fixtures and document themselves by name"
)]

mod audit;
mod batch;
mod cli;
mod collect;
mod compliance;
mod corpus;
mod diff;
mod evidence;
mod hardening;
mod keyless;
mod plugins;
mod properties;
mod server;
mod support;

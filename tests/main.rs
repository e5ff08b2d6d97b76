//! The one integration-test binary: named modules drive the real binary, the corpus,
//! the plugins and the server.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    reason = "tests fail loudly on broken fixtures and document themselves by name"
)]
#![allow(
    clippy::too_many_lines,
    reason = "a scenario test reads top to bottom; splitting it hides the story"
)]

mod admission;
mod audit;
mod batch;
mod bundle_server;
mod bundles;
mod cli;
mod collect;
mod compliance;
mod corpus;
mod decision_log;
mod diff;
mod evidence;
mod hardening;
mod keyless;
mod manifests;
mod opa_compat;
mod plugins;
mod properties;
mod report;
mod server;
mod slo_collect;
mod support;
mod tls;
mod trace;

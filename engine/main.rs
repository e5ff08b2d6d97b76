//! The `promo-policy` binary: parse the command line, dispatch, and map the outcome to
//! the exit code (0 allow/pass, 1 deny/fail, 2 error); it holds no policy logic.

mod cli;

use std::process::ExitCode;

use clap::Parser;

/// glibc's malloc cost the sidecar about a fifth of its CPU under load; see the
/// `mimalloc` feature in Cargo.toml and BENCHMARKS.md.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose);
    match cli::run(args) {
        Ok(code) => code.into(),
        Err(err) => {
            // The whole chain on one line, each cause once (a message that already ends
            // with its cause, as `fsio::ReadError`'s does, is not followed by it again).
            let chain = promo_policy::error_chain::ErrorChain(err.as_ref());
            eprintln!("promo-policy: error: {chain}");
            cli::Exit::Error.into()
        }
    }
}

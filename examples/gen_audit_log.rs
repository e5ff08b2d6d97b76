//! Write a realistic, signed audit log (see `promo_policy::testing::auditgen`): weeks of
//! promotions of several services through dev, staging and prod, with retries, approvals,
//! freezes and break-glass, signed with the shipped dev decision key.
//!
//! ```text
//! cargo run --release --example gen_audit_log -- --records 20000 --out /tmp/audit.db
//! promo-policy report /tmp/audit.db --format html --out /tmp/report.html
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use promo_policy::testing::auditgen::{generate, GenOptions};

/// Generate an audit log for `promo-policy report`.
#[derive(Debug, Parser)]
struct Args {
    /// How many records.
    #[arg(long, default_value_t = 20_000)]
    records: u64,
    /// How many services (1-10).
    #[arg(long, default_value_t = 6)]
    services: usize,
    /// Builds per service per day, on average.
    #[arg(long, default_value_t = 4.0)]
    builds_per_day: f64,
    /// The seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The log to create (must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let opts = GenOptions {
        records: args.records,
        services: args.services,
        builds_per_day: args.builds_per_day,
        seed: args.seed,
        ..GenOptions::default()
    };
    match generate(&args.out, &opts) {
        Ok(n) => {
            eprintln!("wrote {n} records to {}", args.out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_audit_log: {e}");
            ExitCode::from(2)
        }
    }
}

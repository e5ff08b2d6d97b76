//! `promo-policy test`: run the Rego unit tests and the corpus cases, print one line
//! per failure (every test with -v) and close with `N passed, N failed`.

use std::path::PathBuf;

use anyhow::Context;
use promo_policy::testing::{self, Outcome, TestResult};

use super::{CommonArgs, Exit};

/// How to print results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A line per failure, then the tally.
    Text,
    /// One JSON document with every result.
    Json,
}

/// Arguments of `test`.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The corpus directory (cases are `<dir>/<name>/{request.json,case.json}`).
    #[arg(long, value_name = "DIR", default_value = "corpus/cases")]
    corpus: PathBuf,
    /// Only run tests whose name matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    run: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
    /// Skip the corpus; run only the Rego unit tests.
    #[arg(long)]
    no_corpus: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(args: TestArgs) -> anyhow::Result<Exit> {
    let filter = args
        .run
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("invalid --run pattern")?;
    let engine = args.common.load_engine()?;
    let mut results = testing::run_rego_tests(engine.bundle(), filter.as_ref())?;
    if !args.no_corpus {
        results.extend(
            testing::run_corpus(&engine, &args.corpus, filter.as_ref())
                .map_err(anyhow::Error::msg)?,
        );
    }
    let (passed, failed) = testing::tally(&results);
    match args.format {
        Format::Text => print_text(&results, tracing::enabled!(tracing::Level::INFO)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "passed": passed, "failed": failed, "results": results
            }))?
        ),
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 { Exit::Ok } else { Exit::Deny })
}

fn print_text(results: &[TestResult], verbose: bool) {
    for r in results {
        match &r.outcome {
            Outcome::Pass if verbose => println!("PASS  {} ({:?})", r.name, r.duration),
            Outcome::Pass => {}
            Outcome::Fail(why) => println!("FAIL  {}: {why}", r.name),
            Outcome::Error(why) => println!("ERROR {}: {why}", r.name),
        }
    }
}

//! Write a deterministic batch workload (see `promo_policy::batch::workload`): N requests
//! from the corpus cases, as JSONL or as one file per request, with their expected
//! decisions alongside if asked.
//!
//! ```text
//! cargo run --release --example gen_workload -- --count 10000 --seed 1 --out /tmp/w.jsonl
//! promo-policy eval --batch /tmp/w.jsonl --at 2026-11-26T18:00:00Z > /tmp/results.jsonl
//! ```

use std::io::{BufWriter, Write};
use std::path::PathBuf;

use clap::Parser;
use promo_policy::batch::workload::{Workload, DEFAULT_ARTIFACTS, WORKLOAD_AT};

/// Generate N promotion requests from the corpus, deterministic from a seed.
#[derive(Debug, Parser)]
#[command(after_help = "Evaluate the requests at the workload's time: --at 2026-11-26T18:00:00Z.")]
struct Args {
    /// How many requests.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// The seed: the same seed and count give the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Distinct artifacts per corpus case (requests for one artifact share envelopes).
    #[arg(long, default_value_t = DEFAULT_ARTIFACTS)]
    artifacts: u64,
    /// Write JSONL here (default: stdout).
    #[arg(long, value_name = "FILE", conflicts_with = "dir")]
    out: Option<PathBuf>,
    /// Write one file per request here instead (`req-00000000.json`, ...).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Also write each request's case and expected decision as JSONL here.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// The corpus cases directory.
    #[arg(long, default_value = "corpus/cases")]
    cases: PathBuf,
    /// The corpus keys directory.
    #[arg(long, default_value = "corpus/keys")]
    keys: PathBuf,
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    let mut workload = Workload::from_corpus(&args.cases, &args.keys, args.seed, args.artifacts)?;
    let create = |p: &PathBuf| {
        std::fs::File::create(p)
            .map(BufWriter::new)
            .map_err(|e| format!("cannot write `{}`: {e}", p.display()))
    };
    let mut jsonl: Option<Box<dyn Write>> = match (&args.out, &args.dir) {
        (_, Some(dir)) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
            None
        }
        (Some(path), None) => Some(Box::new(create(path)?)),
        (None, None) => Some(Box::new(BufWriter::new(std::io::stdout().lock()))),
    };
    let mut expect = args.expect.as_ref().map(create).transpose()?;
    let io = |e: std::io::Error| e.to_string();
    for i in 0..args.count {
        let g = workload.request(i)?;
        let line = serde_json::to_string(&g.request).map_err(|e| e.to_string())?;
        match (&mut jsonl, &args.dir) {
            (Some(w), _) => writeln!(w, "{line}").map_err(io)?,
            (None, Some(dir)) => {
                let path = dir.join(format!("req-{i:08}.json"));
                std::fs::write(&path, line + "\n")
                    .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
            }
            (None, None) => {}
        }
        if let Some(w) = &mut expect {
            let row = serde_json::json!({"index": i, "case": g.case, "expect": g.expect});
            writeln!(w, "{row}").map_err(io)?;
        }
    }
    if let Some(w) = &mut jsonl {
        w.flush().map_err(io)?;
    }
    if let Some(w) = &mut expect {
        w.flush().map_err(io)?;
    }
    eprintln!(
        "{} requests from {} cases (seed {}); evaluate them --at {WORKLOAD_AT}",
        args.count,
        workload.cases().count(),
        args.seed
    );
    Ok(())
}

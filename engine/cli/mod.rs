//! Command-line types (clap) and dispatch to one file per command; no command
//! decides anything itself, they all go through the shared `Evaluator`.

mod attest;
mod audit;
mod bundle;
mod collect;
mod diff;
mod eval;
mod keygen;
mod report;
mod serve;
mod slo;
mod test;
mod trust;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The process exit codes: interface, documented in `--help` and README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Allowed / all passed / valid.
    Ok = 0,
    /// Denied / a test failed / invalid.
    Deny = 1,
    /// Error: bad input, bad bundle, unreadable file.
    Error = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

const EXIT_CODES: &str = "Exit codes: 0 allowed / all passed, 1 denied / a test failed, 2 error (bad input, bad policy bundle, unreadable file).";

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nbuiltin Sigstore roots: builtin:public-good, builtin:github from sigstore-trust-root 0.15.1 \
     (embedded snapshots; `promo-policy trust roots` lists their digests and dates)"
);

/// promo-policy: a policy-as-code gate for environment promotion.
#[derive(Debug, Parser)]
#[command(name = "promo-policy", version, long_version = LONG_VERSION, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Log more (-v info, -vv debug) to stderr; RUST_LOG overrides.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decide one promotion request (exit 0 allowed, 1 denied, 2 error).
    Eval(eval::EvalArgs),
    /// Run the bundle's Rego unit tests and the corpus cases (exit 0 all pass, 1 any fail, 2 error).
    Test(test::TestArgs),
    /// Compare decisions under a base bundle and a new one (exit 0 none deny->allow, 1 any deny->allow, 2 error).
    Diff(diff::DiffArgs),
    /// Check a signed decision, optionally re-evaluating its request (exit 0 valid, 1 invalid, 2 error).
    Verify(verify::VerifyArgs),
    /// Write a new Ed25519 decision-signing key pair.
    Keygen(keygen::KeygenArgs),
    /// Serve decisions over HTTP: OPA's Data API, promotions, Kubernetes admission.
    Serve(serve::ServeArgs),
    /// Verify, checkpoint, query and export the audit log (verify: exit 0 intact, 1 tampered, 2 error).
    Audit(audit::AuditCmd),
    /// Promotion insights from the audit log: verify it, then success rate, time to promote, approval latency, blockers... as HTML, JSON, Markdown or text (exit 0, or 2 on error).
    Report(report::ReportArgs),
    /// Write signed process evidence: an approval, a check result or an SLO snapshot.
    #[command(subcommand)]
    Attest(attest::AttestCmd),
    /// SLO snapshots: `slo collect` reads the figures from Prometheus and signs them.
    #[command(subcommand)]
    Slo(slo::SloCmd),
    /// Pin an image and write the attestations attached to it in its registry as JSONL
    /// for `eval --attestations` (exit 0 written, 2 error; nothing is verified here).
    Collect(collect::CollectArgs),
    /// Show trust material: `trust roots` lists the Sigstore trusted roots.
    #[command(subcommand)]
    Trust(trust::TrustCmd),
    /// Build, sign and inspect OPA bundle archives of a policy directory.
    #[command(subcommand)]
    Bundle(bundle::BundleCmd),
}

/// Flags every command that builds an engine shares.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The Rego policy bundle: a directory, or an OPA bundle archive (`.tar.gz`; then give
    /// `--trust`, since a bundle cannot vouch for itself).
    #[arg(long, value_name = "DIR", default_value = "policies")]
    pub policies: PathBuf,
    /// WASM plugin checks: `<DIR>/<name>/plugin.toml` (a missing directory means none).
    #[arg(long, value_name = "DIR", default_value = "plugins")]
    pub plugins: PathBuf,
    /// The trust file: attestation keys, Sigstore roots and identities [default:
    /// <policies>/trust.json if present].
    #[arg(long, value_name = "FILE")]
    pub trust: Option<PathBuf>,
    /// Decision-signing key, PKCS#8 PEM [default: the shipped dev key, with a warning].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Decide on regorus's interpreter instead of its register VM (the same decisions,
    /// about 3x slower; an escape hatch). Also set by PROMO_POLICY_INTERPRETER=1.
    #[arg(long)]
    pub interpreter: bool,
}

impl CommonArgs {
    fn engine_config(&self) -> promo_policy::EngineConfig {
        promo_policy::EngineConfig {
            policies: self.policies.clone(),
            trust: self.trust.clone(),
            signing_key: self.key.clone(),
            plugins: self.plugins.clone(),
            plugin_cache: default_plugin_cache(),
            backend: if self.interpreter || interpreter_from_env() {
                promo_policy::policy::Backend::Interpreter
            } else {
                promo_policy::policy::Backend::Vm
            },
        }
    }

    /// Load the engine, naming what failed, and log the bundle's lint warnings.
    fn load_engine(&self) -> anyhow::Result<std::sync::Arc<promo_policy::Engine>> {
        let engine = self.load_engine_quiet()?;
        engine.log_lints();
        Ok(engine)
    }

    /// Load the engine without logging lints (for commands that report them).
    fn load_engine_quiet(&self) -> anyhow::Result<std::sync::Arc<promo_policy::Engine>> {
        use anyhow::Context;
        promo_policy::Engine::load(&self.engine_config())
            .with_context(|| format!("cannot load the engine from `{}`", self.policies.display()))
    }
}

/// `PROMO_POLICY_INTERPRETER` set to anything but empty or `0`: the one place the
/// backend is read from the environment.
fn interpreter_from_env() -> bool {
    std::env::var_os(promo_policy::policy::INTERPRETER_ENV)
        .is_some_and(|v| !v.is_empty() && v != "0")
}

/// Run the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    match cli.command {
        Command::Eval(args) => eval::run(args),
        Command::Test(args) => test::run(args),
        Command::Diff(args) => diff::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Trust(args) => trust::run(args),
        Command::Bundle(args) => bundle::run(args),
        Command::Attest(args) => attest::run(args),
        Command::Slo(args) => slo::run(args),
        Command::Report(args) => report::run(args),
        Command::Collect(args) => collect::run(args),
    }
}

/// Logs go to stderr so stdout stays machine-readable.
pub fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The CLI's plugin cache: `$PROMO_POLICY_CACHE_DIR`, else `$XDG_CACHE_HOME/promo-policy`,
/// else `$HOME/.cache/promo-policy`, so compiled plugins survive between runs. Resolved
/// here, where a reader of the CLI finds it; the library never reads these variables.
fn default_plugin_cache() -> Option<std::path::PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    var("PROMO_POLICY_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("promo-policy")))
        .or_else(|| var("HOME").map(|d| d.join(".cache").join("promo-policy")))
}

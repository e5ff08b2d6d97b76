//! `promo-policy trust roots`: lists the Sigstore trusted roots that ship with the engine and those the trust file names, with their digests and how current they are.

use serde_json::json;

use promo_policy::attest::roots::{builtins, Root, BUILTIN_SOURCE};

use super::{CommonArgs, Exit};

/// What `trust` can show.
#[derive(Debug, clap::Subcommand)]
pub enum TrustCmd {
    /// List the builtin Sigstore roots and the trust file's roots and identities.
    Roots(RootsArgs),
}

/// Arguments of `trust roots`.
#[derive(Debug, clap::Args)]
pub struct RootsArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

pub fn run(cmd: TrustCmd) -> anyhow::Result<Exit> {
    let TrustCmd::Roots(args) = cmd;
    let store = args.common.engine_config().load_trust()?;
    let describe = |root: &Root, about: &str| {
        json!({
            "name": root.name,
            "source": root.source,
            "about": about,
            "sha256": root.digest.hex(),
            "newestEntry": root.newest_entry,
            "counts": root.counts,
        })
    };
    let builtin: Vec<_> = builtins()
        .iter()
        .map(|(r, about)| describe(r, about))
        .collect();
    let configured: Vec<_> = store.roots().values().map(|r| describe(r, "")).collect();
    let identities: Vec<_> = store
        .identities()
        .iter()
        .map(|i| json!({"id": i.id, "trustedRoot": i.trusted_root, "issuer": i.issuer, "subject": i.subject.as_str()}))
        .collect();
    if args.json {
        let doc = json!({"builtinSource": BUILTIN_SOURCE, "builtin": builtin, "trustFile": {"roots": configured, "identities": identities}});
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(Exit::Ok);
    }
    println!("builtin roots ({BUILTIN_SOURCE}):");
    for r in &builtin {
        print_root(r);
    }
    println!("trust file roots:");
    if configured.is_empty() {
        println!("  (none: keyless bundles are rejected)");
    }
    for r in &configured {
        print_root(r);
    }
    for i in &identities {
        println!(
            "  identity {} -> root {}: issuer {}, subject {}",
            i["id"].as_str().unwrap_or(""),
            i["trustedRoot"].as_str().unwrap_or(""),
            i["issuer"].as_str().unwrap_or(""),
            i["subject"].as_str().unwrap_or("")
        );
    }
    Ok(Exit::Ok)
}

fn print_root(r: &serde_json::Value) {
    let c = &r["counts"];
    println!(
        "  {:<12} {}  sha256:{}  newest entry {}  CAs {} logs {} CT logs {} TSAs {}",
        r["name"].as_str().unwrap_or(""),
        r["source"].as_str().unwrap_or(""),
        r["sha256"].as_str().and_then(|s| s.get(..12)).unwrap_or(""),
        r["newestEntry"].as_str().unwrap_or("-"),
        c["certificateAuthorities"],
        c["tlogs"],
        c["ctlogs"],
        c["timestampAuthorities"],
    );
}

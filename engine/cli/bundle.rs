//! `promo-policy bundle build|sign|inspect`: OPA bundle archives and signatures made from a
//! policy directory, and what a bundle holds and whether its signature verifies.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use promo_policy::attest::keys::SigningKey;
use promo_policy::attest::trust::TrustStore;
use promo_policy::policy::{archive, signature, Backend, PolicyBundle, RawFile};

use super::Exit;

/// `bundle` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCmd {
    /// Write an OPA bundle archive (`.tar.gz`) of a policy directory: its `*.rego`, data
    /// files and a `.manifest`, reproducibly; signed with `--key`.
    Build(BuildArgs),
    /// Sign a policy directory in place: write `<DIR>/.signatures.json` (OPA's format).
    Sign(SignArgs),
    /// Show a bundle's digest, revision, files and signature (checked with `--trust`).
    Inspect(InspectArgs),
}

/// The signing flags `build` and `sign` share.
#[derive(Debug, clap::Args)]
pub struct BundleKeyArgs {
    /// Bundle-signing key, PKCS#8 PEM (Ed25519 or ECDSA P-256); the trust file must list
    /// its public key with predicate type `https://promo-policy.dev/policy-bundle/v1`.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// The key's id in the trust file (the JWS `kid`).
    #[arg(long, value_name = "ID", requires = "key")]
    keyid: Option<String>,
}

/// Arguments of `bundle build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The policy directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Where to write the archive.
    #[arg(short, long, value_name = "FILE")]
    out: PathBuf,
    /// The `.manifest` revision (recorded in every decision made under the bundle).
    #[arg(long, value_name = "REV")]
    revision: Option<String>,
    /// A data path the bundle owns (the `.manifest`'s `roots`, e.g. `promo`); repeat for
    /// several. Loading refuses packages or data outside them. Default: `""` (all).
    #[arg(long = "root", value_name = "PATH")]
    roots: Vec<String>,
    #[command(flatten)]
    key: BundleKeyArgs,
}

/// Arguments of `bundle sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The policy directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    #[command(flatten)]
    key: BundleKeyArgs,
}

/// Arguments of `bundle inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A policy directory or bundle archive.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Verify the signature against this trust file's bundle keys (and its
    /// `requireSignedBundle`).
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BundleCmd) -> anyhow::Result<Exit> {
    match cmd {
        BundleCmd::Build(args) => build(&args),
        BundleCmd::Sign(args) => sign_dir(&args),
        BundleCmd::Inspect(args) => inspect(&args),
    }
}

/// The directory's bundle files as the loader reads them (no signature), after checking
/// that they load: a bundle that would not load is not worth signing.
fn bundle_files(
    dir: &Path,
    revision: Option<&str>,
    roots: &[String],
) -> anyhow::Result<Vec<RawFile>> {
    if !dir.is_dir() {
        anyhow::bail!("`{}` is not a policy directory", dir.display());
    }
    PolicyBundle::load_with(dir, Backend::Interpreter)
        .with_context(|| format!("`{}` does not load as a bundle", dir.display()))?;
    let mut files = archive::read_directory(dir)?;
    files.retain(|f| f.path != archive::SIGNATURES);
    if revision.is_some() || !roots.is_empty() {
        files.retain(|f| f.path != archive::MANIFEST);
        let roots = if roots.is_empty() {
            vec![String::new()]
        } else {
            roots.to_vec()
        };
        let manifest = serde_json::json!({"revision": revision, "roots": roots});
        files.push(RawFile {
            path: archive::MANIFEST.into(),
            bytes: serde_json::to_vec_pretty(&manifest)?,
        });
    }
    Ok(files)
}

/// `.signatures.json` for `files`, when a key is given.
fn signatures(files: &[RawFile], key: &BundleKeyArgs) -> anyhow::Result<Option<RawFile>> {
    let Some(path) = &key.key else {
        return Ok(None);
    };
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read bundle-signing key `{}`", path.display()))?;
    let signing = SigningKey::from_pkcs8_pem(&pem)
        .with_context(|| format!("bundle-signing key `{}`", path.display()))?;
    let keyid = key.keyid.clone().unwrap_or_else(|| signing.keyid());
    let text = signature::sign(files, &signing, &keyid).context("cannot sign the bundle")?;
    Ok(Some(RawFile {
        path: archive::SIGNATURES.into(),
        bytes: text.into_bytes(),
    }))
}

fn build(args: &BuildArgs) -> anyhow::Result<Exit> {
    let mut files = bundle_files(&args.dir, args.revision.as_deref(), &args.roots)?;
    if let Some(sigs) = signatures(&files, &args.key)? {
        files.push(sigs);
    }
    let mut bytes = Vec::new();
    archive::write(&files, &mut bytes)?;
    let tmp = args.out.with_extension("tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    // The archive as written must load (its manifest roots included) before it replaces
    // anything at `--out`.
    let bundle = match PolicyBundle::load_with(&tmp, Backend::Interpreter) {
        Ok(bundle) => bundle,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).context("the built archive does not load; nothing was written");
        }
    };
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("cannot write `{}`", args.out.display()))?;
    eprintln!(
        "wrote {} ({} files, {} bytes); bundle digest {}{}",
        args.out.display(),
        files.len(),
        bytes.len(),
        bundle.digest(),
        if args.key.key.is_some() {
            ", signed"
        } else {
            ", unsigned"
        }
    );
    Ok(Exit::Ok)
}

fn sign_dir(args: &SignArgs) -> anyhow::Result<Exit> {
    if args.key.key.is_none() {
        anyhow::bail!("`bundle sign` needs `--key FILE`");
    }
    let files = bundle_files(&args.dir, None, &[])?;
    let sigs =
        signatures(&files, &args.key)?.ok_or_else(|| anyhow::anyhow!("no signature was made"))?;
    let out = args.dir.join(archive::SIGNATURES);
    std::fs::write(&out, &sigs.bytes)
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    eprintln!("wrote {} ({} files signed)", out.display(), files.len());
    Ok(Exit::Ok)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<Exit> {
    let bundle = match &args.trust {
        Some(t) => {
            PolicyBundle::load_trusted(&args.path, Backend::Interpreter, &TrustStore::load(t)?)?
        }
        None => PolicyBundle::load_with(&args.path, Backend::Interpreter)?,
    };
    let signature = match (&args.trust, bundle.signed_by()) {
        (None, _) => "not checked (no --trust)".to_string(),
        (Some(_), Some(id)) => format!("verified, signed by `{id}`"),
        (Some(_), None) => "unsigned (the trust file allows it)".to_string(),
    };
    let files: Vec<&str> = bundle
        .policies()
        .iter()
        .chain(bundle.tests())
        .map(|f| f.path.as_str())
        .collect();
    if args.json {
        let out = serde_json::json!({
            "uri": bundle.uri(),
            "digest": {"sha256": bundle.digest().hex()},
            "revision": bundle.revision(),
            "signedBy": bundle.signed_by(),
            "signature": signature,
            "files": files,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("bundle:    {}", bundle.uri());
        println!("digest:    {}", bundle.digest());
        println!("revision:  {}", bundle.revision().unwrap_or("(none)"));
        println!("signature: {signature}");
        println!("policies:  {} files", files.len());
    }
    Ok(Exit::Ok)
}

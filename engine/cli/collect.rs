//! `promo-policy collect`: pin an image reference and write the attestations attached to it in its registry to a JSONL evidence file for `eval --attestations`.

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use oci_client::secrets::RegistryAuth;
use promo_policy::collect::{self, Access, CollectOptions, Collected};

use super::Exit;

/// Registry flags shared by `collect` and `eval --collect`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Accept a tag and pin the digest it names now (printed on stderr).
    #[arg(long)]
    pub allow_tag: bool,
    /// For a multi-platform index: also collect the attestations of this platform's
    /// manifest (`os/arch` or `os/arch/variant`).
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// Speak plain HTTP to this registry (HOST:PORT, loopback only; warns).
    #[arg(long, value_name = "HOST:PORT")]
    pub insecure_registry: Option<String>,
    /// Also trust the CA certificates in this PEM file for the registry's TLS.
    #[arg(long, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// Registry user name (with --password-stdin) [default: Docker's config.json and
    /// credential helpers, else anonymous].
    #[arg(long, value_name = "NAME", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the registry password or token from stdin (with --username).
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
}

impl RegistryArgs {
    /// Collects `reference` as these flags say; every failure names the registry host.
    pub fn collect(&self, reference: &str) -> anyhow::Result<Collected> {
        let parsed = collect::parse_reference(reference)?;
        let host = parsed.resolve_registry().to_string();
        let insecure = match &self.insecure_registry {
            Some(flag) => {
                if !collect::is_loopback_host(flag) {
                    anyhow::bail!(
                        "--insecure-registry {flag}: plain HTTP is allowed to loopback registries only"
                    );
                }
                if *flag != host {
                    anyhow::bail!(
                        "--insecure-registry {flag} is not the registry of `{reference}` ({host})"
                    );
                }
                eprintln!(
                    "promo-policy: warning: registry {host}: plain HTTP (--insecure-registry); digests are still checked"
                );
                true
            }
            None => false,
        };
        let ca_pem = match &self.ca_file {
            Some(path) => Some(
                promo_policy::fsio::read_capped(path, 1024 * 1024)
                    .with_context(|| format!("cannot read --ca-file `{}`", path.display()))?,
            ),
            None => None,
        };
        let auth = self.auth(&host)?;
        let options = CollectOptions {
            reference: reference.to_string(),
            allow_tag: self.allow_tag,
            platform: self.platform.clone(),
            access: Access {
                insecure,
                ca_pem,
                auth,
            },
        };
        let collected = collect::collect(&options)?;
        if parsed.digest().is_none() {
            eprintln!(
                "promo-policy: pinned `{reference}` to {} (--allow-tag)",
                collected.image
            );
        }
        if let Some(platform_digest) = &collected.platform_digest {
            eprintln!(
                "promo-policy: index {} -> {} manifest {platform_digest}",
                collected.digest,
                self.platform.as_deref().unwrap_or_default()
            );
        }
        for item in &collected.items {
            eprintln!("promo-policy: collected from {}", item.origin);
        }
        for note in &collected.notes {
            eprintln!("promo-policy: note: {note}");
        }
        Ok(collected)
    }

    fn auth(&self, host: &str) -> anyhow::Result<RegistryAuth> {
        if let Some(user) = &self.username {
            let mut password = String::new();
            std::io::stdin()
                .take(64 * 1024)
                .read_to_string(&mut password)
                .context("cannot read --password-stdin")?;
            let password = password.trim_end_matches(['\r', '\n']).to_string();
            return Ok(RegistryAuth::Basic(user.clone(), password));
        }
        // Docker's lookup key for Docker Hub is its legacy index URL.
        let server = if host == "docker.io" {
            "https://index.docker.io/v1/"
        } else {
            host
        };
        // docker_credential reports a missing config.json and an unreadable one alike;
        // only the first means anonymous.
        let config_dir = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        if !config_dir.is_some_and(|d| d.join("config.json").exists()) {
            return Ok(RegistryAuth::Anonymous);
        }
        use docker_credential::{CredentialRetrievalError as E, DockerCredential};
        match docker_credential::get_credential(server) {
            Ok(DockerCredential::UsernamePassword(user, password)) => {
                Ok(RegistryAuth::Basic(user, password))
            }
            Ok(DockerCredential::IdentityToken(_)) => anyhow::bail!(
                "registry {host}: Docker's config holds an identity token, which is not supported; pass --username and --password-stdin"
            ),
            Err(E::NoCredentialConfigured | E::ConfigNotFound) => Ok(RegistryAuth::Anonymous),
            Err(e) => anyhow::bail!(
                "registry {host}: cannot read credentials from Docker's config.json or its credential helper: {e:?}"
            ),
        }
    }
}

/// Arguments of `collect`.
#[derive(Debug, clap::Args)]
pub struct CollectArgs {
    /// The image: `REGISTRY/REPO@sha256:<hex>` (a tag only with --allow-tag).
    #[arg(value_name = "IMAGE_REF")]
    image: String,
    /// Write the evidence here instead of stdout (JSONL, for `eval --attestations`).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    registry: RegistryArgs,
}

pub fn run(args: CollectArgs) -> anyhow::Result<Exit> {
    let collected = args.registry.collect(&args.image)?;
    let body = collected.jsonl();
    match &args.out {
        Some(out) => std::fs::write(out, &body)
            .with_context(|| format!("cannot write `{}`", out.display()))?,
        None => std::io::stdout().write_all(&body)?,
    }
    eprintln!(
        "promo-policy: {} attestation(s) for {} ({} {}); nothing verified yet: eval verifies",
        collected.items.len(),
        collected.image,
        collected.jsonl_digest(),
        args.out
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "stdout".into())
    );
    Ok(Exit::Ok)
}

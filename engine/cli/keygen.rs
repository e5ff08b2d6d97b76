//! `promo-policy keygen`: write a fresh Ed25519 decision-signing key pair and print
//! its keyid; it never overwrites an existing key.

use std::path::PathBuf;

use promo_policy::sign::write_keypair;

use super::Exit;

/// Arguments of `keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write `signing.key` (PKCS#8 PEM, mode 0600) and `signing.pub` (SPKI PEM) into.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<Exit> {
    std::fs::create_dir_all(&args.out)?;
    let (private, public, keyid) = write_keypair(&args.out)?;
    println!("private key: {}", private.display());
    println!("public key:  {}", public.display());
    println!("keyid:       {keyid}");
    Ok(Exit::Ok)
}

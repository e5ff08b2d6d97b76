//! On-disk cache of compiled plugin modules, keyed by the module's sha256 and the engine's
//! build; never hands wasmtime bytes it has not checked against their recorded digest, and
//! never fails a load (a bad or unwritable cache just means compiling).
//!
//! An entry is `<cache_dir>/<module sha256>-<engine key>.cwasm`:
//!
//! ```text
//! MAGIC (8 bytes) | module sha256 (32) | artifact sha256 (32) | artifact (Module::serialize)
//! ```
//!
//! The engine key hashes the wasmtime version and everything wasmtime itself checks for
//! compatibility (target, Cranelift flags, tunables such as fuel and epochs, wasm
//! features), so a different build or config looks up a different file. wasmtime
//! validates the artifact's ELF header and engine section on load, but not its code:
//! a flipped bit in machine code would run. The artifact digest is what catches torn
//! writes and corruption; entries are written to a temp file and renamed into place.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use crate::error_chain::ErrorChain;

/// The wasmtime release this host is built against (pinned with `=` in Cargo.toml).
pub(crate) const WASMTIME_VERSION: &str = "48.0.8";

const MAGIC: &[u8; 8] = b"PPCWASM1";
const HEADER_LEN: usize = 8 + 32 + 32;

/// Feeds `Hash` output into sha256, so the engine fingerprint is stable across runs
/// (std's `DefaultHasher` makes no such promise).
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Unused: the digest is taken with `finalize`.
        0
    }
}

/// A cache directory bound to one engine configuration.
#[derive(Debug)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// A cache in `dir` for modules compiled by `engine`. Nothing is touched on disk yet.
    pub fn new(dir: &Path, engine: &Engine) -> ModuleCache {
        let mut h = ShaHasher(Sha256::new());
        b"promo-policy plugin cache v1".hash(&mut h);
        WASMTIME_VERSION.hash(&mut h);
        engine.precompile_compatibility_hash().hash(&mut h);
        let digest = h.0.finalize();
        ModuleCache {
            dir: dir.to_path_buf(),
            engine_key: hex::encode(&digest[..8]),
        }
    }

    fn entry_path(&self, module_sha: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha}-{}.cwasm", self.engine_key))
    }

    /// The cached module for `module_sha`, if a sound entry exists. A corrupt or
    /// incompatible entry is removed and `None` returned, so the caller recompiles.
    pub fn load(&self, engine: &Engine, module_sha: &[u8; 32]) -> Option<Module> {
        let path = self.entry_path(&hex::encode(module_sha));
        // Compiled code is larger than the module it came from; a cache file past this
        // cap (or a FIFO planted under an entry's name) is not read, just recompiled.
        let cap = super::limits::MAX_MODULE_BYTES.saturating_mul(8);
        let bytes = match crate::fsio::read_capped(&path, cap) {
            Ok(b) => b,
            Err(crate::fsio::ReadError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read cached plugin module; recompiling");
                return None;
            }
        };
        let artifact = match verify_entry(&bytes, module_sha) {
            Ok(a) => a,
            Err(why) => {
                tracing::warn!(path = %path.display(), why, "discarding corrupt cached plugin module; recompiling");
                let _ = std::fs::remove_file(&path);
                return None;
            }
        };
        // SAFETY: `Module::deserialize` runs the artifact's machine code as-is, so it
        // must be an artifact wasmtime produced. These bytes are: the cache directory is
        // written only by `store` below, every entry is keyed by the module's sha256 and
        // by this wasmtime build and configuration, and `verify_entry` has just checked
        // the artifact against the sha256 recorded when it was serialized (catching torn
        // writes and bit rot). We deserialize from that checked in-memory copy, not with
        // `deserialize_file`, so the file cannot change between check and use. wasmtime
        // additionally refuses artifacts from another version or an incompatible config.
        // Like the binary itself, the cache directory must not be writable by anyone
        // the gate does not trust.
        #[allow(
            unsafe_code,
            reason = "wasmtime deserialisation is unsafe by API; the artifact is our own, checked and in a private directory"
        )]
        let module = unsafe { Module::deserialize(engine, artifact) };
        match module {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %ErrorChain(e.as_ref()), "cached plugin module refused by wasmtime; recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Writes `module` for `module_sha`; failures are logged, never returned.
    pub fn store(&self, module: &Module, module_sha: &[u8; 32]) {
        if let Err(e) = self.try_store(module, module_sha) {
            tracing::warn!(dir = %self.dir.display(), error = %ErrorChain(&e), "cannot write plugin module cache; the next run recompiles");
        }
    }

    fn try_store(&self, module: &Module, module_sha: &[u8; 32]) -> Result<(), StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let artifact = module.serialize().map_err(StoreError::Serialize)?;
        let artifact_sha = Sha256::digest(&artifact);
        std::fs::create_dir_all(&self.dir).map_err(StoreError::Write)?;
        let path = self.entry_path(&hex::encode(module_sha));
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            hex::encode(&module_sha[..8]),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(MAGIC)?;
            f.write_all(module_sha)?;
            f.write_all(&artifact_sha)?;
            f.write_all(&artifact)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            StoreError::Write(e)
        })
    }
}

/// Why an entry could not be written (logged, never returned from a load).
#[derive(Debug, thiserror::Error)]
enum StoreError {
    /// wasmtime could not serialise the compiled module.
    #[error("cannot serialise the compiled module")]
    Serialize(#[source] wasmtime::Error),
    /// The directory, the temporary file or the rename failed.
    #[error("cannot write the cache entry")]
    Write(#[source] std::io::Error),
}

/// Checks an entry's header and artifact digest; returns the artifact.
fn verify_entry<'a>(bytes: &'a [u8], module_sha: &[u8; 32]) -> Result<&'a [u8], &'static str> {
    if bytes.len() < HEADER_LEN {
        return Err("shorter than its header");
    }
    let (header, artifact) = bytes.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("bad magic");
    }
    if &header[8..40] != module_sha {
        return Err("written for another module");
    }
    if header[40..72] != Sha256::digest(artifact)[..] {
        return Err("artifact digest mismatch");
    }
    Ok(artifact)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_keeps_the_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "").unwrap();
        let engine = Engine::default();
        let module = Module::new(&engine, "(module)").unwrap();
        let err = ModuleCache::new(&file, &engine)
            .try_store(&module, &[0; 32])
            .unwrap_err();
        assert!(matches!(err, StoreError::Write(_)), "{err:?}");
        let io = std::error::Error::source(&err).unwrap();
        assert!(io.downcast_ref::<std::io::Error>().is_some(), "{io}");
        assert_eq!(
            ErrorChain(&err).to_string(),
            format!("cannot write the cache entry: {io}")
        );
    }
}

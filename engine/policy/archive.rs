//! OPA bundle archives (`.tar.gz`): read one into its files under the bundle's caps,
//! refusing what OPA itself learned to refuse, and write one reproducibly from a directory.
//!
//! Reading never touches the file system beyond the archive: entries are read into memory,
//! so a hostile name cannot escape anywhere, but it is still refused (`..`, absolute after
//! normalising, backslashes, duplicates), as are links, devices, files that are not part of
//! a bundle, and archives that inflate past [`MAX_BUNDLE_BYTES`] (size bombs).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use super::{PolicyError, MAX_BUNDLE_BYTES, MAX_BUNDLE_FILE_BYTES};

/// The most entries (files and directories) an archive may hold.
pub const MAX_ARCHIVE_ENTRIES: usize = 10_000;

/// Bytes the tar stream may inflate to beyond the files' own: one 512-byte header and up
/// to 511 bytes of padding per entry.
const TAR_OVERHEAD: u64 = MAX_ARCHIVE_ENTRIES as u64 * 1024;

/// Bytes an archive may inflate to: the bundle's files and their tar overhead.
pub const MAX_INFLATED_BYTES: u64 = MAX_BUNDLE_BYTES + TAR_OVERHEAD;

/// The manifest's name at the bundle root (`revision`, `roots`).
pub const MANIFEST: &str = ".manifest";

/// The signature file's name at the bundle root (OPA's signed-bundle format).
pub const SIGNATURES: &str = ".signatures.json";

/// One file of a bundle as read, path relative to the root with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFile {
    /// Normalised path (no leading `/` or `./`).
    pub path: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// Whether `path` (normalised) names a file a bundle is made of: Rego, a data file, and
/// at the root the manifest and the signatures.
pub fn is_bundle_file(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == MANIFEST || name == SIGNATURES {
        return name == path;
    }
    name.ends_with(".rego") || matches!(name, "data.json" | "data.yaml" | "data.yml")
}

/// Reads every file of the archive at `path`, in archive order.
pub fn read(path: &Path) -> Result<Vec<RawFile>, PolicyError> {
    let err = |reason: String| PolicyError::Archive {
        path: path.to_path_buf(),
        reason,
    };
    let file = crate::fsio::open_regular(path, MAX_BUNDLE_BYTES)?;
    let inflated = CappedReader {
        inner: GzDecoder::new(file),
        left: MAX_INFLATED_BYTES,
    };
    let mut archive = tar::Archive::new(inflated);
    let entries = archive.entries().map_err(|e| damaged(path, None, e))?;
    let mut files = Vec::new();
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    for (n, entry) in entries.enumerate() {
        if n >= MAX_ARCHIVE_ENTRIES {
            return Err(err(format!("more than {MAX_ARCHIVE_ENTRIES} entries")));
        }
        let mut entry = entry.map_err(|e| damaged(path, None, e))?;
        let raw_name = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| err(format!("entry {n} has a name that is not UTF-8")))?;
        let name = normalise(&raw_name).map_err(|why| err(format!("entry `{raw_name}`: {why}")))?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            continue;
        }
        if !(kind.is_file() || kind == tar::EntryType::Continuous) {
            return Err(err(format!(
                "entry `{raw_name}` is a {kind:?}, not a regular file (links and devices are refused)"
            )));
        }
        if !is_bundle_file(&name) {
            return Err(err(format!(
                "entry `{raw_name}` is not part of a bundle (only `*.rego`, `data.json`/`.yaml`, and `{MANIFEST}` and `{SIGNATURES}` at the root)"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(err(format!(
                "`{name}` appears twice (after normalising `{raw_name}`)"
            )));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| damaged(path, Some(&name), e))?;
        if size > MAX_BUNDLE_FILE_BYTES {
            return Err(err(format!(
                "`{name}` is {size} bytes; a bundle file may be at most {MAX_BUNDLE_FILE_BYTES}"
            )));
        }
        total += size;
        if total > MAX_BUNDLE_BYTES {
            return Err(err(format!(
                "the bundle's files exceed {MAX_BUNDLE_BYTES} bytes in all"
            )));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        (&mut entry)
            .take(size)
            .read_to_end(&mut bytes)
            .map_err(|e| damaged(path, Some(&name), e))?;
        files.push(RawFile { path: name, bytes });
    }
    Ok(files)
}

/// A directory's bundle files (see [`is_bundle_file`]), read within the caps.
pub fn read_directory(dir: &Path) -> Result<Vec<RawFile>, PolicyError> {
    let mut files = Vec::new();
    collect_files(dir, dir, &mut files)?;
    let mut out = Vec::new();
    let mut total = 0u64;
    for (rel, abs) in files {
        if !is_bundle_file(&rel) {
            continue;
        }
        let left = MAX_BUNDLE_BYTES.saturating_sub(total);
        let bytes = crate::fsio::read_capped(&abs, MAX_BUNDLE_FILE_BYTES.min(left)).map_err(
            |e| match e {
                crate::fsio::ReadError::TooLarge { .. } if left < MAX_BUNDLE_FILE_BYTES => {
                    PolicyError::TooLarge { path: abs.clone() }
                }
                e => PolicyError::Read(e),
            },
        )?;
        total += bytes.len() as u64;
        out.push(RawFile { path: rel, bytes });
    }
    Ok(out)
}

fn collect_files(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), PolicyError> {
    let io = |source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        let root_file = dir == root && (name == MANIFEST || name == SIGNATURES);
        if name.starts_with('.') && !root_file {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

/// `./a//b.rego` -> `a/b.rego`; refuses `..`, backslashes, NUL and an empty name.
fn normalise(name: &str) -> Result<String, &'static str> {
    if name.contains('\\') || name.contains('\0') {
        return Err("backslashes and NUL are refused in names");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("`..` is refused (path traversal)"),
            p => parts.push(p),
        }
    }
    if parts.is_empty() {
        return Err("the name is empty");
    }
    Ok(parts.join("/"))
}

/// The archive's bytes for `files`: sorted by path, each a regular file with mode 0644,
/// owner 0 and time 0, gzip without a name or time, so the same files give the same bytes.
pub fn write(files: &[RawFile], out: &mut impl Write) -> std::io::Result<()> {
    let mut sorted: Vec<&RawFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let gz = GzEncoder::new(out, flate2::Compression::default());
    let mut builder = tar::Builder::new(gz);
    builder.mode(tar::HeaderMode::Deterministic);
    for file in sorted {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(file.bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        builder.append_data(&mut header, &file.path, file.bytes.as_slice())?;
    }
    builder.into_inner()?.finish()?.flush()
}

/// The error for an archive the reader stopped on: over the inflation cap (the
/// [`CappedReader`]'s own error, not worth keeping), or damaged (the reader's error kept).
fn damaged(path: &Path, entry: Option<&str>, e: std::io::Error) -> PolicyError {
    let path = path.to_path_buf();
    let entry = entry.map(str::to_string);
    if e.kind() == std::io::ErrorKind::FileTooLarge {
        return PolicyError::Inflated { path, entry };
    }
    PolicyError::Damaged {
        path,
        entry,
        source: e,
    }
}

/// A reader that fails with `FileTooLarge` once more than `left` bytes have come through.
struct CappedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::FileTooLarge, "archive too large")
        })?;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
pub(super) mod tests {
    use super::*;

    /// A bundle file with `text` as its bytes.
    pub(crate) fn file(path: &str, text: &str) -> RawFile {
        RawFile {
            path: path.into(),
            bytes: text.as_bytes().to_vec(),
        }
    }

    /// A tar.gz with entries written raw (names and types as given, no checks).
    fn raw_archive(entries: &[(&str, tar::EntryType, &[u8])]) -> tempfile::NamedTempFile {
        let out = tempfile::NamedTempFile::new().unwrap();
        let gz = GzEncoder::new(out.reopen().unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            // Bypass the builder's own path checks: a hostile archive does not use them.
            let field = &mut h.as_old_mut().name;
            field[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_size(bytes.len() as u64);
            h.set_cksum();
            b.append(&h, *bytes).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        out
    }

    fn refusal(entries: &[(&str, tar::EntryType, &[u8])]) -> String {
        let f = raw_archive(entries);
        read(f.path()).unwrap_err().to_string()
    }

    #[test]
    fn write_then_read_gives_the_files_back_and_the_same_bytes_twice() {
        let files = vec![
            file("promo/b.rego", "package promo.b"),
            file(MANIFEST, r#"{"revision":"r1"}"#),
            file("promo/data.json", "{}"),
        ];
        let (mut one, mut two) = (Vec::new(), Vec::new());
        write(&files, &mut one).unwrap();
        let mut reversed = files.clone();
        reversed.reverse();
        write(&reversed, &mut two).unwrap();
        assert_eq!(one, two, "archives must be reproducible");
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &one).unwrap();
        let mut back = read(f.path()).unwrap();
        back.sort_by(|a, b| a.path.cmp(&b.path));
        let mut want = files;
        want.sort_by(|a, b| a.path.cmp(&b.path));
        assert_eq!(back, want);
    }

    #[test]
    fn traversal_links_duplicates_and_strangers_are_refused() {
        use tar::EntryType::{Regular, Symlink};
        let e = refusal(&[("../x.rego", Regular, b"package x")]);
        assert!(e.contains("path traversal"), "{e}");
        let e = refusal(&[("a/../../x.rego", Regular, b"package x")]);
        assert!(e.contains("path traversal"), "{e}");
        let e = refusal(&[("x.rego", Symlink, b"")]);
        assert!(e.contains("not a regular file"), "{e}");
        let e = refusal(&[
            ("./p/x.rego", Regular, b"package x"),
            ("p//x.rego", Regular, b"package y"),
        ]);
        assert!(e.contains("appears twice"), "{e}");
        let e = refusal(&[("run.sh", Regular, b"#!/bin/sh")]);
        assert!(e.contains("not part of a bundle"), "{e}");
        let e = refusal(&[("sub/.manifest", Regular, b"{}")]);
        assert!(e.contains("not part of a bundle"), "{e}");
        let e = refusal(&[("p\\x.rego", Regular, b"package x")]);
        assert!(e.contains("backslashes"), "{e}");
        // Leading slashes are normalised away, as OPA does, not refused.
        let f = raw_archive(&[("/p/x.rego", Regular, b"package x")]);
        assert_eq!(read(f.path()).unwrap()[0].path, "p/x.rego");
    }

    #[test]
    fn a_size_bomb_stops_at_the_caps() {
        // Zeros compress ~1000:1: a few KiB of archive that would inflate to 41 MiB.
        let zeros = vec![0u8; 7 << 20];
        let names: Vec<String> = (0..6).map(|i| format!("p{i}/x.rego")).collect();
        let entries: Vec<_> = names
            .iter()
            .map(|n| (n.as_str(), tar::EntryType::Regular, &zeros[..]))
            .collect();
        let e = refusal(&entries);
        assert!(e.contains("exceed"), "{e}");
        let big = vec![0u8; 9 << 20];
        let e = refusal(&[("big.rego", tar::EntryType::Regular, &big[..])]);
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b"not gzip at all").unwrap();
        let err = read(f.path()).unwrap_err();
        assert!(matches!(err, PolicyError::Damaged { .. }), "{err:?}");
        // The reader's error is the source, said once, after the message.
        let io = std::error::Error::source(&err)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .unwrap();
        let e = crate::error_chain::ErrorChain(&err).to_string();
        assert!(e.contains("not a gzip-compressed tar archive"), "{e}");
        assert_eq!(e, format!("{err}: {io}"));

        // An archive that cannot be opened: the reader's error, which names it.
        let gone = f.path().with_extension("gone");
        let err = read(&gone).unwrap_err();
        assert!(matches!(err, PolicyError::Read(_)), "{err:?}");
        assert!(err.to_string().starts_with("cannot read `"), "{err}");
    }
}

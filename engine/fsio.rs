//! Reading a file the tool was pointed at: regular files only, never more than a cap.
//!
//! Every path a user, a config file or a bundle names is hostile: it may be `/dev/zero`
//! (endless), a FIFO (an open blocks forever), a directory, or simply huge. This module is
//! the one place that reads such a path; it refuses what is not a regular file *before*
//! opening it, and reads at most `cap` bytes whatever the file claims to hold. It must never
//! read a file whole without a cap.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Cap for hand-written configuration (trust files, plugin manifests, case specs, audit
/// checkpoints): a real one is a few KiB; 1 MiB leaves room and still bounds a mistake.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// Cap for a PEM key file: an Ed25519 or P-256 key is under 300 bytes; 64 KiB allows
/// comments and stray text around the block.
pub const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path is a FIFO, a device, a socket or a directory.
    #[error("`{path}` is not a regular file ({kind})")]
    NotRegular {
        /// The path as given.
        path: PathBuf,
        /// What it is instead (`directory`, `FIFO`, `device`, ...).
        kind: &'static str,
    },
    /// The file holds more than the cap allows.
    #[error("`{path}` is {size} bytes; the limit is {limit}")]
    TooLarge {
        /// The path as given.
        path: PathBuf,
        /// Its size (at least; a growing file is cut at `limit + 1`).
        size: u64,
        /// The cap that applied.
        limit: u64,
    },
    /// The file could not be opened or read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path as given.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl ReadError {
    /// The reason without the path, for messages that already name the file.
    pub fn reason(&self) -> String {
        match self {
            ReadError::NotRegular { kind, .. } => format!("not a regular file ({kind})"),
            ReadError::TooLarge { size, limit, .. } => {
                format!("{size} bytes; the limit is {limit}")
            }
            ReadError::Io { source, .. } => source.to_string(),
        }
    }
}

/// What a non-regular file is, for the message.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if file_type.is_fifo() {
            return "FIFO";
        }
        if file_type.is_char_device() || file_type.is_block_device() {
            return "device";
        }
        if file_type.is_socket() {
            return "socket";
        }
    }
    if file_type.is_dir() {
        "directory"
    } else {
        "not a file"
    }
}

/// Refuses `path` unless it (after following symlinks) is a regular file; returns its size.
pub fn check_regular(path: &Path) -> Result<u64, ReadError> {
    let meta = std::fs::metadata(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(meta.len())
}

/// Opens `path` for reading if it is a regular file no larger than `cap`.
///
/// The type is checked before the open (so a FIFO never blocks) and again on the open
/// handle (so a path swapped in between is still refused).
pub fn open_regular(path: &Path, cap: u64) -> Result<File, ReadError> {
    let size = check_regular(path)?;
    if size > cap {
        return Err(ReadError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: cap,
        });
    }
    let io = |source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.file_type().is_file() {
        return Err(ReadError::NotRegular {
            path: path.to_path_buf(),
            kind: kind_of(meta.file_type()),
        });
    }
    Ok(file)
}

/// Reads a regular file of at most `cap` bytes.
pub fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path, cap)?;
    read_to_cap(file, cap).map_err(|e| match e {
        CapError::TooLarge(size) => ReadError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit: cap,
        },
        CapError::Io(source) => ReadError::Io {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Reads a regular UTF-8 text file of at most `cap` bytes.
pub fn read_capped_string(path: &Path, cap: u64) -> Result<String, ReadError> {
    let bytes = read_capped(path, cap)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })
}

/// Why [`read_to_cap`] stopped.
#[derive(Debug)]
pub enum CapError {
    /// More than the cap was there (the count read, at most `cap + 1`).
    TooLarge(u64),
    /// The reader failed.
    Io(io::Error),
}

/// Reads any reader (stdin, a pipe, an open file) to its end, refusing more than `cap` bytes;
/// never holds more than `cap + 1` bytes, whatever the source (a file may grow while read).
pub fn read_to_cap(reader: impl Read, cap: u64) -> Result<Vec<u8>, CapError> {
    let mut bytes = Vec::new();
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(CapError::Io)?;
    if bytes.len() as u64 > cap {
        return Err(CapError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// One line from [`read_line_capped`].
#[derive(Debug, PartialEq, Eq)]
pub enum CappedLine {
    /// A line (without its `\n`), now in the buffer.
    Line,
    /// A line longer than the cap: its length; its bytes were consumed and dropped.
    TooLong(u64),
    /// The end of the input.
    Eof,
}

/// Reads the next line of `reader` into `buf` (cleared first), holding at most `cap`
/// bytes of it: a longer line is consumed to its end and reported by length, so one
/// endless line cannot grow memory and the next line still starts in the right place.
pub fn read_line_capped(
    reader: &mut impl io::BufRead,
    buf: &mut Vec<u8>,
    cap: usize,
) -> io::Result<CappedLine> {
    buf.clear();
    let mut size: u64 = 0;
    let mut started = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        started = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        size += part.len() as u64;
        if size <= cap as u64 {
            buf.extend_from_slice(part);
        } else {
            buf.clear();
        }
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    Ok(match (started, size > cap as u64) {
        (false, _) => CappedLine::Eof,
        (true, true) => CappedLine::TooLong(size),
        (true, false) => CappedLine::Line,
    })
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_read_up_to_the_cap_and_a_long_one_is_skipped_whole() {
        let mut input = io::BufReader::with_capacity(4, &b"ab\nabcdefgh\n\nxyz"[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let r = read_line_capped(&mut input, &mut buf, 3).unwrap();
            if r == CappedLine::Eof {
                break;
            }
            got.push((format!("{r:?}"), String::from_utf8(buf.clone()).unwrap()));
        }
        let want = [
            ("Line", "ab"),
            ("TooLong(8)", ""),
            ("Line", ""),
            ("Line", "xyz"),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn an_endless_line_holds_no_more_than_the_cap() {
        let mut input = io::BufReader::new(io::repeat(b'x').take(10 << 20));
        let mut buf = Vec::new();
        let r = read_line_capped(&mut input, &mut buf, 1024).unwrap();
        assert_eq!(r, CappedLine::TooLong(10 << 20));
        assert!(buf.capacity() <= 64 << 10, "{}", buf.capacity());
    }

    #[test]
    fn a_regular_file_under_the_cap_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, b"{}").unwrap();
        assert_eq!(read_capped(&p, 2).unwrap(), b"{}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_with_both_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        std::fs::write(&p, b"{ }").unwrap();
        let e = read_capped(&p, 2).unwrap_err();
        assert!(
            matches!(
                e,
                ReadError::TooLarge {
                    size: 3,
                    limit: 2,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_capped(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_device_is_refused_before_any_read() {
        let e = read_capped(Path::new("/dev/zero"), 10).unwrap_err();
        assert!(e.to_string().contains("device"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        let status = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .unwrap();
        assert!(status.success());
        let e = read_capped(&p, 10).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }

    #[test]
    fn an_endless_reader_stops_at_the_cap() {
        let e = read_to_cap(std::io::repeat(0), 1000).unwrap_err();
        assert!(matches!(e, CapError::TooLarge(1001)));
    }
}

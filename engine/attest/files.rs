//! Attestation files for `eval --attestations` (CONTRACT §2c): reads DSSE envelopes and Sigstore bundles from a JSON file, a JSONL file or a directory of them, and appends them to a request before it is digested, so the decision names them like inline ones.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::request::{parse_strict, MAX_BODY_BYTES};

/// Most attestations one request may carry (the request schema's `maxItems`).
pub const MAX_ATTESTATIONS: usize = 64;

/// Why attestation files could not be added.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// A file or directory could not be read.
    #[error(transparent)]
    Read(#[from] crate::fsio::ReadError),
    /// A directory could not be listed.
    #[error("cannot list `{path}`: {source}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A document is not strict JSON (duplicate keys, limits, syntax).
    #[error("`{path}`{line}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// ` line N` for a JSONL file, empty otherwise.
        line: String,
        /// What the parser said.
        #[source]
        source: crate::request::RequestError,
    },
    /// A document is not an object (an attestation is an envelope or a bundle).
    #[error("`{path}`{line}: an attestation must be a JSON object")]
    NotObject {
        /// The file.
        path: PathBuf,
        /// ` line N` for a JSONL file, empty otherwise.
        line: String,
    },
    /// The request's `attestations` is not an array, or the request is not an object.
    #[error("the request's `attestations` must be an array to add to it")]
    RequestShape,
    /// More attestations than a request may carry.
    #[error("{count} attestations in all; a request carries at most {MAX_ATTESTATIONS}")]
    TooMany {
        /// How many there would be.
        count: usize,
    },
}

/// Reads every attestation under `paths`, in order: a file of one JSON document, a
/// `.jsonl` file (one per non-empty line, as `*.intoto.jsonl` and `gh attestation
/// download` write them), or a directory (its `.json` and `.jsonl` files in name order,
/// not recursing; other entries are skipped).
pub fn read_attestations(paths: &[PathBuf]) -> Result<Vec<Value>, FilesError> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| FilesError::List {
                    path: path.clone(),
                    source,
                })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_attestation_file(p))
                .collect();
            files.sort();
            for file in files {
                read_file(&file, &mut out)?;
            }
        } else {
            read_file(path, &mut out)?;
        }
        if out.len() > MAX_ATTESTATIONS {
            return Err(FilesError::TooMany { count: out.len() });
        }
    }
    Ok(out)
}

fn is_attestation_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "jsonl")
    )
}

fn read_file(path: &Path, out: &mut Vec<Value>) -> Result<(), FilesError> {
    let bytes = crate::fsio::read_capped(path, MAX_BODY_BYTES as u64)?;
    let jsonl = path.extension().and_then(|e| e.to_str()) == Some("jsonl");
    let docs: Vec<(String, &[u8])> = if jsonl {
        bytes
            .split(|&b| b == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
            .map(|(i, line)| (format!(" line {}", i + 1), line))
            .collect()
    } else {
        vec![(String::new(), &bytes[..])]
    };
    for (line, doc) in docs {
        let value = parse_strict(doc).map_err(|source| FilesError::Parse {
            path: path.to_path_buf(),
            line: line.clone(),
            source,
        })?;
        if !value.is_object() {
            return Err(FilesError::NotObject {
                path: path.to_path_buf(),
                line,
            });
        }
        out.push(value);
    }
    Ok(())
}

/// The request in `bytes` (strict JSON) with the attestations under `paths` appended,
/// serialised again: what `eval --attestations` evaluates and `verify --replay
/// --attestations` re-evaluates, so both digest the same request.
pub fn request_with_attestations(bytes: &[u8], paths: &[PathBuf]) -> Result<Vec<u8>, FilesError> {
    let extra = read_attestations(paths)?;
    let mut request = parse_strict(bytes).map_err(|source| FilesError::Parse {
        path: PathBuf::from("the request"),
        line: String::new(),
        source,
    })?;
    append_attestations(&mut request, extra)?;
    serde_json::to_vec(&request).map_err(|_| FilesError::RequestShape)
}

/// Appends `extra` to the request's `attestations` (creating it when absent).
pub fn append_attestations(request: &mut Value, extra: Vec<Value>) -> Result<(), FilesError> {
    let obj = request.as_object_mut().ok_or(FilesError::RequestShape)?;
    let list = obj
        .entry("attestations")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = list else {
        return Err(FilesError::RequestShape);
    };
    let count = list.len() + extra.len();
    if count > MAX_ATTESTATIONS {
        return Err(FilesError::TooMany { count });
    }
    list.extend(extra);
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn files_lines_and_directories_are_read_in_order() {
        let dir = crate::attest::trust::tests::temp_dir();
        std::fs::create_dir_all(dir.join("d")).unwrap();
        std::fs::write(dir.join("one.json"), r#"{"a": 1}"#).unwrap();
        std::fs::write(dir.join("d/b.jsonl"), "{\"b\": 1}\n\n{\"b\": 2}\n").unwrap();
        std::fs::write(dir.join("d/a.json"), r#"{"a": 2}"#).unwrap();
        std::fs::write(dir.join("d/notes.txt"), "skipped").unwrap();
        let got = read_attestations(&[dir.join("one.json"), dir.join("d")]).unwrap();
        assert_eq!(
            got,
            vec![
                json!({"a": 1}),
                json!({"a": 2}),
                json!({"b": 1}),
                json!({"b": 2})
            ]
        );
    }

    #[test]
    fn bad_documents_are_named_by_file_and_line() {
        let dir = crate::attest::trust::tests::temp_dir();
        std::fs::write(dir.join("x.jsonl"), "{\"a\": 1}\n{\"a\": 1, \"a\": 2}\n").unwrap();
        let e = read_attestations(&[dir.join("x.jsonl")])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("x.jsonl` line 2: ") && e.contains("duplicate"),
            "{e}"
        );
        std::fs::write(dir.join("y.json"), "[1]").unwrap();
        let e = read_attestations(&[dir.join("y.json")])
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("an attestation must be a JSON object"), "{e}");
        let e = read_attestations(&[dir.join("missing.json")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.json"), "{e}");
    }

    #[test]
    fn appending_keeps_inline_attestations_first_and_caps_the_count() {
        let mut req = json!({"attestations": [{"inline": true}]});
        append_attestations(&mut req, vec![json!({"file": true})]).unwrap();
        assert_eq!(
            req["attestations"],
            json!([{"inline": true}, {"file": true}])
        );
        let mut bare = json!({});
        append_attestations(&mut bare, vec![json!({})]).unwrap();
        assert_eq!(bare["attestations"].as_array().unwrap().len(), 1);
        let e = append_attestations(&mut bare, vec![json!({}); MAX_ATTESTATIONS]).unwrap_err();
        assert!(matches!(e, FilesError::TooMany { count: 65 }));
        let mut odd = json!({"attestations": {}});
        assert!(matches!(
            append_attestations(&mut odd, vec![]),
            Err(FilesError::RequestShape)
        ));
    }
}

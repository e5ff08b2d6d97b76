//! SLSA provenance (v1 and v0.2) normalised to the few facts policy compares; it must never
//! decide trust, and never guess a value that the provenance does not state.
//!
//! Specs: <https://slsa.dev/provenance/v1>, <https://slsa.dev/provenance/v0.2>, and the
//! GitHub Actions build type (<https://github.com/actions/buildtypes>, `workflow/v1`), whose
//! `externalParameters.workflow.repository` and `resolvedDependencies[0]` carry the source.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

use crate::attest::AttestError;

/// predicateType of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// predicateType of SLSA provenance v0.2.
pub const SLSA_PROVENANCE_V02: &str = "https://slsa.dev/provenance/v0.2";

/// Whether a predicateType is SLSA provenance this module reads (and so whether a key must
/// also be trusted for its builder).
pub fn is_provenance(predicate_type: &str) -> bool {
    predicate_type == SLSA_PROVENANCE_V1 || predicate_type == SLSA_PROVENANCE_V02
}

/// What policy needs from a provenance predicate, the same for both versions.
///
/// Serialised in camelCase; absent values are omitted (undefined in Rego).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// `runDetails.builder.id` (v1) or `builder.id` (v0.2).
    pub builder_id: String,
    /// `buildDefinition.buildType` (v1) or `buildType` (v0.2).
    pub build_type: String,
    /// The source repository as `https://host/org/repo`: no `git+`, no `@ref`, no `.git`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_repo: Option<String>,
    /// The source commit (`gitCommit` or `sha1` digest of the source), lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    /// Build start, RFC 3339 in UTC (sub-second digits kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    /// Build finish, RFC 3339 in UTC (sub-second digits kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

impl Provenance {
    /// Normalises `predicate` when `predicate_type` is SLSA provenance; `Ok(None)` for any
    /// other predicate type.
    pub fn from_predicate(
        predicate_type: &str,
        predicate: &Value,
    ) -> Result<Option<Provenance>, AttestError> {
        match predicate_type {
            SLSA_PROVENANCE_V1 => from_v1(predicate).map(Some),
            SLSA_PROVENANCE_V02 => from_v02(predicate).map(Some),
            // Any other type is not provenance: no builder to check and no provenance facts
            // for policy, which then reads it as "provenance missing". A key still needs the
            // type listed in its `predicateTypes` to vouch for it at all.
            _ => Ok(None),
        }
    }
}

fn bad(reason: String) -> AttestError {
    AttestError::Provenance { reason }
}

/// Follows a path of object keys; `None` when any step is missing or not an object.
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |cur, key| cur.as_object()?.get(*key))
}

/// A non-empty string at `path`; an empty string or `null` reads as absent.
fn opt_str(v: &Value, path: &[&str]) -> Result<Option<String>, AttestError> {
    match at(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(format!("`{}` is not a string", path.join(".")))),
    }
}

fn req_str(v: &Value, path: &[&str]) -> Result<String, AttestError> {
    opt_str(v, path)?.ok_or_else(|| bad(format!("`{}` is missing", path.join("."))))
}

fn timestamp(v: &Value, path: &[&str]) -> Result<Option<String>, AttestError> {
    let Some(text) = opt_str(v, path)? else {
        return Ok(None);
    };
    normalize_timestamp(&text).map(Some).ok_or_else(|| {
        bad(format!(
            "`{}` is not an RFC 3339 timestamp: `{text}`",
            path.join(".")
        ))
    })
}

/// Parses RFC 3339 (any number of fractional digits; nanoseconds are common) and writes it
/// back in UTC. `None` when it does not parse.
pub fn normalize_timestamp(text: &str) -> Option<String> {
    let t = OffsetDateTime::parse(text.trim(), &Rfc3339).ok()?;
    t.to_offset(UtcOffset::UTC).format(&Rfc3339).ok()
}

/// `git+https://github.com/org/repo.git@refs/heads/main` -> `https://github.com/org/repo`.
///
/// Strips a `git+` prefix, the first `@` after the host (the ref; refs may contain `@`, repo
/// paths in practice do not), a trailing `/` and `.git`. Case is kept: only some hosts
/// ignore it.
pub fn normalize_repo(uri: &str) -> String {
    let s = uri.trim();
    let s = s.strip_prefix("git+").unwrap_or(s);
    // Where the path starts: after `scheme://host`, or after `host:` in scp-like syntax
    // (`git@github.com:org/repo`), so a user@ in the authority is not read as a ref.
    let path_start = match s.find("://") {
        Some(i) => s[i + 3..].find('/').map_or(s.len(), |j| i + 3 + j),
        None => s.find(':').map_or(0, |i| i + 1),
    };
    let s = match s[path_start..].find('@') {
        Some(k) => &s[..path_start + k],
        None => s,
    };
    let s = s.trim_end_matches('/');
    let s = s.strip_suffix(".git").unwrap_or(s);
    s.to_owned()
}

/// The commit of a source digest set: `gitCommit` (SLSA v1) or `sha1` (v0.2, GitHub).
fn commit_of(digest: Option<&Value>) -> Result<Option<String>, AttestError> {
    let Some(digest) = digest else {
        return Ok(None);
    };
    for alg in ["gitCommit", "sha1"] {
        if let Some(c) = opt_str(digest, &[alg])? {
            return Ok(Some(c.to_ascii_lowercase()));
        }
    }
    Ok(None)
}

/// A resource descriptor (`resolvedDependencies[i]`, `materials[i]`) as (uri, digest).
fn descriptor(entry: &Value) -> Result<Option<(String, Option<&Value>)>, AttestError> {
    Ok(opt_str(entry, &["uri"])?.map(|uri| (uri, entry.get("digest"))))
}

/// The first dependency that looks like source: a `git+` uri or a git commit digest; else
/// the first with any uri. Empty entries (`{}`) are skipped, as real provenance has them.
fn first_source(list: Option<&Value>) -> Result<Option<(String, Option<&Value>)>, AttestError> {
    let Some(items) = list.and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut first_any = None;
    for entry in items {
        let Some((uri, digest)) = descriptor(entry)? else {
            continue;
        };
        if uri.starts_with("git+") || commit_of(digest)?.is_some() {
            return Ok(Some((uri, digest)));
        }
        if first_any.is_none() {
            first_any = Some((uri, digest));
        }
    }
    Ok(first_any)
}

/// The commit recorded for `repo` in a dependency list, if an entry names it.
fn commit_for(repo: &str, list: Option<&Value>) -> Result<Option<String>, AttestError> {
    let Some(items) = list.and_then(Value::as_array) else {
        return Ok(None);
    };
    for entry in items {
        if let Some((uri, digest)) = descriptor(entry)? {
            if normalize_repo(&uri) == repo {
                if let Some(c) = commit_of(digest)? {
                    return Ok(Some(c));
                }
            }
        }
    }
    Ok(None)
}

fn from_v1(p: &Value) -> Result<Provenance, AttestError> {
    if !p.is_object() {
        return Err(bad("`predicate` is missing".into()));
    }
    let builder_id = req_str(p, &["runDetails", "builder", "id"])?;
    let build_type = req_str(p, &["buildDefinition", "buildType"])?;
    let deps = at(p, &["buildDefinition", "resolvedDependencies"]);
    let ext = &["buildDefinition", "externalParameters"];

    let (source_repo, source_commit) =
        if let Some(repo) = opt_str(p, &[ext[0], ext[1], "workflow", "repository"])? {
            // GitHub Actions build type: the repository is external, the commit resolved.
            let repo = normalize_repo(&repo);
            let commit = commit_for(&repo, deps)?;
            (Some(repo), commit)
        } else if let Some(source) = at(p, &[ext[0], ext[1], "source"]) {
            // slsa-github-generator and others: a string uri, or a descriptor {uri, digest}.
            let (uri, digest) = match source {
                Value::String(s) if !s.trim().is_empty() => (Some(s.clone()), None),
                Value::Object(_) => (opt_str(source, &["uri"])?, source.get("digest")),
                _ => (None, None),
            };
            match uri {
                Some(uri) => {
                    let repo = normalize_repo(&uri);
                    let commit = match commit_of(digest)? {
                        Some(c) => Some(c),
                        None => commit_for(&repo, deps)?,
                    };
                    (Some(repo), commit)
                }
                None => source_from_list(deps)?,
            }
        } else {
            source_from_list(deps)?
        };

    Ok(Provenance {
        builder_id,
        build_type,
        source_repo,
        source_commit,
        started_on: timestamp(p, &["runDetails", "metadata", "startedOn"])?,
        finished_on: timestamp(p, &["runDetails", "metadata", "finishedOn"])?,
    })
}

fn source_from_list(list: Option<&Value>) -> Result<(Option<String>, Option<String>), AttestError> {
    Ok(match first_source(list)? {
        Some((uri, digest)) => (Some(normalize_repo(&uri)), commit_of(digest)?),
        None => (None, None),
    })
}

fn from_v02(p: &Value) -> Result<Provenance, AttestError> {
    if !p.is_object() {
        return Err(bad("`predicate` is missing".into()));
    }
    let builder_id = req_str(p, &["builder", "id"])?;
    let build_type = req_str(p, &["buildType"])?;
    let materials = p.get("materials");
    let (source_repo, source_commit) = match opt_str(p, &["invocation", "configSource", "uri"])? {
        Some(uri) => {
            let repo = normalize_repo(&uri);
            let commit = match commit_of(at(p, &["invocation", "configSource", "digest"]))? {
                Some(c) => Some(c),
                None => commit_for(&repo, materials)?,
            };
            (Some(repo), commit)
        }
        None => source_from_list(materials)?,
    };
    Ok(Provenance {
        builder_id,
        build_type,
        source_repo,
        source_commit,
        started_on: timestamp(p, &["metadata", "buildStartedOn"])?,
        finished_on: timestamp(p, &["metadata", "buildFinishedOn"])?,
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
    use serde_json::json;

    /// Shaped like actions/buildtypes `workflow/v1/example.json` (GitHub artifact
    /// attestations), plus a nanosecond timestamp and an empty byproduct entry.
    fn github_v1() -> Value {
        json!({
            "buildDefinition": {
                "buildType": "https://actions.github.io/buildtypes/workflow/v1",
                "externalParameters": {
                    "workflow": {
                        "ref": "refs/heads/main",
                        "repository": "https://github.com/octocat/hello-world",
                        "path": ".github/workflows/release.yml"
                    }
                },
                "internalParameters": {"github": {"event_name": "push"}},
                "resolvedDependencies": [{
                    "uri": "git+https://github.com/octocat/hello-world@refs/heads/main",
                    "digest": {"gitCommit": "C27D339EE6075C1F744C5D4B200F7901AAD2C369"}
                }]
            },
            "runDetails": {
                "builder": {"id": "https://github.com/actions/runner/github-hosted"},
                "metadata": {
                    "invocationId": "https://github.com/octocat/hello-world/actions/runs/1/attempts/1",
                    "startedOn": "2026-11-25T08:00:00.123456789Z",
                    "finishedOn": "2026-11-25T10:04:05.5+02:00"
                },
                "byproducts": [{}, {"name": "log"}]
            }
        })
    }

    #[test]
    fn v1_github_workflow_normalises_with_nanoseconds_and_empty_byproducts() {
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V1, &github_v1())
            .unwrap()
            .unwrap();
        assert_eq!(
            p.builder_id,
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(
            p.build_type,
            "https://actions.github.io/buildtypes/workflow/v1"
        );
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://github.com/octocat/hello-world")
        );
        assert_eq!(
            p.source_commit.as_deref(),
            Some("c27d339ee6075c1f744c5d4b200f7901aad2c369")
        );
        assert_eq!(
            p.started_on.as_deref(),
            Some("2026-11-25T08:00:00.123456789Z")
        );
        assert_eq!(
            p.finished_on.as_deref(),
            Some("2026-11-25T08:04:05.5Z"),
            "to UTC"
        );
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json["builderId"],
            "https://github.com/actions/runner/github-hosted"
        );
        assert_eq!(json["sourceRepo"], "https://github.com/octocat/hello-world");
    }

    #[test]
    fn v1_source_descriptor_as_slsa_github_generator_writes_it() {
        let pred = json!({
            "buildDefinition": {
                "buildType": "https://slsa-framework.github.io/container-based-build/v0.1?draft",
                "externalParameters": {
                    "source": {
                        "uri": "git+https://github.com/org/repo@refs/tags/v1.2.3",
                        "digest": {"sha1": "aaaabbbbccccddddeeeeffff0000111122223333"}
                    },
                    "builderImage": {"uri": "ghcr.io/x@sha256:00", "digest": {"sha256": "00"}}
                },
                "resolvedDependencies": [{}]
            },
            "runDetails": {"builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/builder_container-based_slsa3.yml@refs/tags/v1.9.0"}, "byproducts": [{}]}
        });
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V1, &pred)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://github.com/org/repo")
        );
        assert_eq!(
            p.source_commit.as_deref(),
            Some("aaaabbbbccccddddeeeeffff0000111122223333")
        );
        assert_eq!(p.started_on, None);
        let json = serde_json::to_value(&p).unwrap();
        assert!(json.get("startedOn").is_none(), "absent, not null");
    }

    #[test]
    fn v1_source_as_a_string_and_resolved_dependencies_fallback() {
        let pred = json!({
            "buildDefinition": {"buildType": "bt", "externalParameters": {"source": "git+https://git.example.com/a/b.git@main"},
                "resolvedDependencies": [{"uri": "git+https://git.example.com/a/b.git@main", "digest": {"gitCommit": "abc"}}]},
            "runDetails": {"builder": {"id": "B"}}
        });
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V1, &pred)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://git.example.com/a/b")
        );
        assert_eq!(p.source_commit.as_deref(), Some("abc"));

        // No external parameters naming a source: the first git dependency, skipping an
        // empty entry and a container image.
        let pred = json!({
            "buildDefinition": {"buildType": "bt", "externalParameters": {},
                "resolvedDependencies": [{}, {"uri": "pkg:docker/alpine@3.19", "digest": {"sha256": "00"}},
                    {"uri": "git+https://github.com/o/r@refs/heads/main", "digest": {"gitCommit": "def"}}]},
            "runDetails": {"builder": {"id": "B"}}
        });
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V1, &pred)
            .unwrap()
            .unwrap();
        assert_eq!(p.source_repo.as_deref(), Some("https://github.com/o/r"));
        assert_eq!(p.source_commit.as_deref(), Some("def"));

        let pred =
            json!({"buildDefinition": {"buildType": "bt"}, "runDetails": {"builder": {"id": "B"}}});
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V1, &pred)
            .unwrap()
            .unwrap();
        assert_eq!((p.source_repo, p.source_commit), (None, None));
    }

    #[test]
    fn v02_config_source_and_materials() {
        let pred = json!({
            "builder": {"id": "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/generator_generic_slsa3.yml@refs/tags/v1.9.0"},
            "buildType": "https://github.com/slsa-framework/slsa-github-generator/generic@v1",
            "invocation": {
                "configSource": {
                    "uri": "git+https://github.com/org/repo@refs/heads/main",
                    "digest": {"sha1": "1111111111111111111111111111111111111111"},
                    "entryPoint": ".github/workflows/release.yml"
                },
                "parameters": {}, "environment": {}
            },
            "metadata": {
                "buildInvocationID": "1-1",
                "buildStartedOn": "2023-01-02T03:04:05.000000001Z",
                "buildFinishedOn": "2023-01-02T03:14:05Z",
                "completeness": {"parameters": true}
            },
            "materials": [{"uri": "git+https://github.com/org/repo@refs/heads/main", "digest": {"sha1": "1111111111111111111111111111111111111111"}}]
        });
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V02, &pred)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://github.com/org/repo")
        );
        assert_eq!(
            p.source_commit.as_deref(),
            Some("1111111111111111111111111111111111111111")
        );
        assert_eq!(
            p.started_on.as_deref(),
            Some("2023-01-02T03:04:05.000000001Z")
        );
        assert_eq!(p.finished_on.as_deref(), Some("2023-01-02T03:14:05Z"));

        // Tekton Chains writes an empty configSource: fall back to materials, skipping `{}`.
        let pred = json!({
            "builder": {"id": "https://tekton.dev/chains/v2"}, "buildType": "tekton.dev/v1/PipelineRun",
            "invocation": {"configSource": {}},
            "materials": [{}, {"uri": "git+https://gitlab.example.com/g/p.git", "digest": {"sha1": "2222"}}]
        });
        let p = Provenance::from_predicate(SLSA_PROVENANCE_V02, &pred)
            .unwrap()
            .unwrap();
        assert_eq!(
            p.source_repo.as_deref(),
            Some("https://gitlab.example.com/g/p")
        );
        assert_eq!(p.source_commit.as_deref(), Some("2222"));
    }

    #[test]
    fn missing_required_fields_and_bad_timestamps_are_named() {
        let err = |pt: &str, v: Value| Provenance::from_predicate(pt, &v).unwrap_err().to_string();
        assert_eq!(
            err(
                SLSA_PROVENANCE_V1,
                json!({"buildDefinition": {"buildType": "b"}})
            ),
            "payload is not valid SLSA provenance: `runDetails.builder.id` is missing"
        );
        assert_eq!(
            err(
                SLSA_PROVENANCE_V1,
                json!({"runDetails": {"builder": {"id": "x"}}})
            ),
            "payload is not valid SLSA provenance: `buildDefinition.buildType` is missing"
        );
        assert_eq!(
            err(
                SLSA_PROVENANCE_V02,
                json!({"builder": {"id": 3}, "buildType": "b"})
            ),
            "payload is not valid SLSA provenance: `builder.id` is not a string"
        );
        assert_eq!(
            err(SLSA_PROVENANCE_V02, Value::Null),
            "payload is not valid SLSA provenance: `predicate` is missing"
        );
        assert_eq!(
            err(SLSA_PROVENANCE_V02, json!({"builder": {"id": "b"}, "buildType": "t", "metadata": {"buildStartedOn": "yesterday"}})),
            "payload is not valid SLSA provenance: `metadata.buildStartedOn` is not an RFC 3339 timestamp: `yesterday`"
        );
        assert_eq!(
            Provenance::from_predicate("https://example.com/other", &Value::Null),
            Ok(None)
        );
    }

    #[test]
    fn repo_normalisation() {
        for (input, want) in [
            (
                "git+https://github.com/org/repo@refs/heads/main",
                "https://github.com/org/repo",
            ),
            ("https://github.com/org/repo", "https://github.com/org/repo"),
            (
                "https://github.com/org/repo.git",
                "https://github.com/org/repo",
            ),
            (
                "git+https://github.com/org/repo.git@v1",
                "https://github.com/org/repo",
            ),
            (
                "https://github.com/org/repo/",
                "https://github.com/org/repo",
            ),
            (
                "git+https://github.com/org/repo@refs/heads/fe@ture",
                "https://github.com/org/repo",
            ),
            (
                "git+ssh://git@github.com/org/repo@main",
                "ssh://git@github.com/org/repo",
            ),
            ("git@github.com:org/repo.git", "git@github.com:org/repo"),
            ("", ""),
            ("@@@", ""),
            ("git+", ""),
            ("https://", "https:"),
        ] {
            assert_eq!(normalize_repo(input), want, "{input}");
        }
    }

    #[test]
    fn timestamps_with_many_fraction_digits_and_leap_seconds_do_not_fail() {
        assert_eq!(
            normalize_timestamp("2024-01-01T00:00:00.1234567891234Z").as_deref(),
            Some("2024-01-01T00:00:00.123456789Z")
        );
        assert!(normalize_timestamp("2016-12-31T23:59:60Z").is_some());
        assert!(normalize_timestamp("2024-13-01T00:00:00Z").is_none());
        assert!(normalize_timestamp("").is_none());
    }
}

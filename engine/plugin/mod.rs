//! WASM plugin checks: load manifests and modules once, run each check in a fresh capped
//! sandbox, and report typed outcomes; never decides allow/deny itself and never lets a plugin
//! failure read as a pass.
//!
//! The pieces:
//! - [`manifest`]: `plugins/<name>/plugin.toml`, validated field by field;
//! - [`abi`]: ABI v1 (exports, input, output) as written in `plugins/ABI.md`;
//! - [`limits`]: the budgets (wall time, memory, fuel, input and output size);
//! - `cache`: compiled modules on disk, keyed by module sha256 + wasmtime build;
//! - [`host`]: [`PluginHost`], the shared wasmtime `Engine` and the per-check `Store`.
//!
//! The decision stage turns each [`PluginOutcome`] into violations (source
//! `plugin:<name>`) and into `input.plugins` for Rego; this module only reports.

pub mod abi;
mod cache;
pub mod host;
pub mod limits;
pub mod manifest;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

use serde::Serialize;

pub use host::{HostOptions, PluginHost, PluginInfo};
pub use limits::PluginLimits;
pub use manifest::{Manifest, Mode};

/// Why a plugin could not be loaded at all: a problem with the plugin directory or a
/// manifest, which the CLI reports as a usage error (exit 2).
///
/// A module that fails to compile or does not follow the ABI is *not* a `PluginError`:
/// it loads as a failed plugin whose checks fail closed (see [`FailureKind`]).
///
/// An underlying error (I/O, TOML, wasmtime) is the `source` and not repeated in the
/// message, so a printed chain (see [`crate::error_chain`]) says it once.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The plugin directory exists but cannot be listed.
    #[error("cannot read plugin directory `{}`", .path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest file exists but cannot be read (its path is in the source's message).
    #[error("cannot read plugin manifest")]
    ReadManifest {
        /// The manifest file.
        path: PathBuf,
        /// Why: not a regular file, over the cap, or an I/O error.
        #[source]
        source: crate::fsio::ReadError,
    },
    /// A manifest is not valid TOML.
    #[error("cannot parse plugin manifest `{}`", .path.display())]
    ManifestSyntax {
        /// The manifest file.
        path: PathBuf,
        /// The TOML parser's error (with line and column).
        #[source]
        source: toml::de::Error,
    },
    /// A plugin directory holds a YAML manifest and no `plugin.toml`.
    #[error("cannot parse plugin manifest `{}`: YAML manifests are not supported; write `{}`", .path.display(), manifest::MANIFEST_FILE)]
    YamlManifest {
        /// The YAML file.
        path: PathBuf,
    },
    /// A manifest field is missing, unknown or has a bad value.
    #[error("invalid plugin manifest `{}`: field `{field}` {reason}", .path.display())]
    ManifestField {
        /// The manifest file.
        path: PathBuf,
        /// The field, dotted for nested tables (`limits.wall_ms`).
        field: String,
        /// What is wrong with it, as a sentence fragment of our own (no underlying
        /// error: the TOML parsed).
        reason: String,
    },
    /// The shared wasmtime engine could not be configured.
    #[error("cannot set up the wasm engine")]
    Engine(#[source] wasmtime::Error),
    /// The epoch ticker thread (wall-time limits) could not be started.
    #[error("cannot start the plugin epoch ticker thread")]
    Ticker(#[source] std::io::Error),
}

/// The cause of a failed plugin check; each maps to its own violation id.
///
/// Every variant fails closed: the decision stage denies for a required plugin and
/// warns for an advisory one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The wall-time limit (epoch deadline) or the fuel budget ran out.
    Timeout,
    /// Linear memory would have grown past the cap, or the input exceeded its cap.
    MemoryLimit,
    /// The guest trapped (out-of-bounds access, `unreachable`, stack overflow, ...).
    Trap,
    /// The guest returned something that is not a valid ABI v1 result.
    BadOutput,
    /// The module does not follow the ABI (exports, signatures, imports, version).
    AbiMismatch,
    /// The module could not be read, compiled or instantiated.
    LoadFailed,
}

impl FailureKind {
    /// The violation id the decision uses for this failure (`plugin.timeout`, ...).
    pub fn violation_id(&self) -> &'static str {
        match self {
            FailureKind::Timeout => "plugin.timeout",
            FailureKind::MemoryLimit => "plugin.memory_limit",
            FailureKind::Trap => "plugin.trap",
            FailureKind::BadOutput => "plugin.bad_output",
            FailureKind::AbiMismatch => "plugin.abi_mismatch",
            FailureKind::LoadFailed => "plugin.load_failed",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.violation_id())
    }
}

/// A failed check: its cause and a sentence a person can act on, naming the plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginFailure {
    /// The cause, which picks the violation id.
    pub kind: FailureKind,
    /// For example "plugin `loop` exceeded its wall-time limit of 100 ms".
    pub message: String,
}

impl fmt::Display for PluginFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// One violation reported by a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginViolation {
    /// A stable id chosen by the plugin, e.g. `ticket.format`.
    pub id: String,
    /// A message a person can act on.
    pub msg: String,
}

/// What a plugin that ran to completion said, validated against ABI v1.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginOutput {
    /// The plugin's verdict. `ok: false` with no violations still fails.
    pub ok: bool,
    /// Why it is not ok; empty when `ok` is true.
    pub violations: Vec<PluginViolation>,
    /// Facts for Rego (`input.plugins.<name>.facts`); always a JSON object.
    pub facts: serde_json::Value,
}

/// The result of running one plugin for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginOutcome {
    /// The plugin name from its manifest.
    pub name: String,
    /// SHA-256 of the module file's bytes; `None` when the file could not be read.
    pub digest: Option<crate::digest::Sha256>,
    /// Whether a failure or `ok: false` denies for this environment (else it warns).
    pub required: bool,
    /// The validated output, or why there is none.
    pub result: Result<PluginOutput, PluginFailure>,
}

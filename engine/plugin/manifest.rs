//! Parses and validates one plugin manifest (`plugin.toml`) field by field, naming the file and
//! the field in every error; never reads the module or runs anything.
//!
//! ```toml
//! name = "ticket-format"                 # required; must equal the directory name
//! description = "..."                    # optional
//! module = "ticket-format.wat"           # required; relative, .wasm or .wat
//! abi = 1                                # optional; the only ABI so far
//! environments = ["staging", "prod"]     # required; or ["*"]
//! mode = "required"                      # optional: "required" (default) | "advisory"
//! required_in = ["prod"]                 # optional, with mode = "advisory" only
//!
//! [config]                               # optional; handed to the plugin as JSON
//! prefixes = ["CHG-", "INC-"]
//!
//! [limits]                               # optional; each overrides a host default
//! wall_ms = 100
//! memory_mb = 64
//! fuel = 10_000_000
//! output_kb = 1024
//! input_kb = 8192
//! ```

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::limits::{
    PluginLimits, MAX_INPUT_BYTES, MAX_MEMORY_BYTES, MAX_OUTPUT_BYTES, MAX_WALL_TIME,
};
use super::PluginError;

/// The manifest's file name inside a plugin directory.
pub const MANIFEST_FILE: &str = "plugin.toml";

/// The environment pattern that matches every target environment.
pub const ANY_ENVIRONMENT: &str = "*";

/// How a plugin's failure or `ok: false` counts in the decision (and, in a decision's
/// `plugins[].mode`, how it counted there).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A failure or `ok: false` denies the promotion.
    Required,
    /// A failure or `ok: false` is a warning (except in `required_in` environments).
    Advisory,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::Required => "required",
            Mode::Advisory => "advisory",
        })
    }
}

/// The manifest's `[limits]`: each present value overrides the host default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LimitOverrides {
    /// `limits.wall_ms`.
    pub wall_ms: Option<u64>,
    /// `limits.memory_mb`.
    pub memory_mb: Option<u64>,
    /// `limits.fuel`.
    pub fuel: Option<u64>,
    /// `limits.output_kb`.
    pub output_kb: Option<u64>,
    /// `limits.input_kb`.
    pub input_kb: Option<u64>,
}

impl LimitOverrides {
    /// The effective limits: `defaults` with every override applied.
    pub fn apply(&self, defaults: &PluginLimits) -> PluginLimits {
        // INVARIANT: parse() bounded every value, so the casts below cannot truncate.
        PluginLimits {
            wall_time: self
                .wall_ms
                .map_or(defaults.wall_time, Duration::from_millis),
            memory_bytes: self
                .memory_mb
                .map_or(defaults.memory_bytes, |mb| (mb as usize) << 20),
            fuel: self.fuel.or(defaults.fuel),
            max_output_bytes: self
                .output_kb
                .map_or(defaults.max_output_bytes, |kb| (kb as usize) << 10),
            max_input_bytes: self
                .input_kb
                .map_or(defaults.max_input_bytes, |kb| (kb as usize) << 10),
        }
    }
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file it came from.
    pub path: PathBuf,
    /// The plugin name: lowercase letters, digits, `-` and `_`.
    pub name: String,
    /// A one-line description (empty when not given).
    pub description: String,
    /// The module file, resolved against the manifest's directory.
    pub module: PathBuf,
    /// The target environments it runs for; `["*"]` means all.
    pub environments: Vec<String>,
    /// Required or advisory.
    pub mode: Mode,
    /// Environments where an advisory plugin counts as required.
    pub required_in: Vec<String>,
    /// The `[config]` table as a JSON object.
    pub config: serde_json::Value,
    /// The `[limits]` table.
    pub limits: LimitOverrides,
}

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, PluginError> {
        let text = crate::fsio::read_capped_string(path, crate::fsio::MAX_CONFIG_BYTES).map_err(
            |source| PluginError::ReadManifest {
                path: path.to_path_buf(),
                source,
            },
        )?;
        Manifest::parse(path, &text)
    }

    /// Validates manifest `text`, reporting errors against `path`; the module path is
    /// resolved against `path`'s directory.
    #[expect(
        clippy::too_many_lines,
        reason = "one block per manifest field, each naming its own error; split up, the list of fields would no longer read as one"
    )]
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, PluginError> {
        let table: toml::Table =
            toml::from_str(text).map_err(|source| PluginError::ManifestSyntax {
                path: path.to_path_buf(),
                source,
            })?;
        let bad = |field: &str, reason: String| PluginError::ManifestField {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason,
        };

        for key in table.keys() {
            if !TOP_LEVEL_FIELDS.contains(&key.as_str()) {
                return Err(bad(
                    key,
                    format!(
                        "is not a manifest field (expected one of {})",
                        list(TOP_LEVEL_FIELDS)
                    ),
                ));
            }
        }

        let name = required_str(&table, "name").map_err(|r| bad("name", r))?;
        check_name(&name).map_err(|r| bad("name", r))?;

        let description = match table.get("description") {
            None => String::new(),
            Some(v) => v
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| bad("description", format!("must be a string, not {}", kind(v))))?,
        };

        let module_rel = required_str(&table, "module").map_err(|r| bad("module", r))?;
        check_module_path(&module_rel).map_err(|r| bad("module", r))?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        let module = base.join(&module_rel);

        if let Some(v) = table.get("abi") {
            match v.as_integer() {
                Some(1) => {}
                Some(n) => {
                    return Err(bad(
                        "abi",
                        format!(
                            "is `{n}`, but this host supports ABI `1` only (see plugins/ABI.md)"
                        ),
                    ))
                }
                None => return Err(bad("abi", format!("must be an integer, not {}", kind(v)))),
            }
        }

        let environments = match table.get("environments") {
            None => {
                return Err(bad(
                    "environments",
                    "is missing (e.g. `[\"staging\", \"prod\"]` or `[\"*\"]`)".into(),
                ))
            }
            Some(v) => env_list(v).map_err(|r| bad("environments", r))?,
        };
        if environments.is_empty() {
            return Err(bad(
                "environments",
                "must name at least one environment, or `*`".into(),
            ));
        }
        if environments.len() > 1 && environments.iter().any(|e| e == ANY_ENVIRONMENT) {
            return Err(bad(
                "environments",
                "lists `*` with other environments; use `[\"*\"]` alone".into(),
            ));
        }

        let mode = match table.get("mode") {
            None => Mode::Required,
            Some(v) => match v.as_str() {
                Some("required") => Mode::Required,
                Some("advisory") => Mode::Advisory,
                Some(other) => {
                    return Err(bad(
                        "mode",
                        format!("is `{other}`; expected `required` or `advisory`"),
                    ))
                }
                None => return Err(bad("mode", format!("must be a string, not {}", kind(v)))),
            },
        };

        let required_in = match table.get("required_in") {
            None => Vec::new(),
            Some(v) => env_list(v).map_err(|r| bad("required_in", r))?,
        };
        if !required_in.is_empty() && mode == Mode::Required {
            return Err(bad(
                "required_in",
                "only makes sense with `mode = \"advisory\"` (a required plugin is required everywhere)".into(),
            ));
        }
        let runs_everywhere = environments.iter().any(|e| e == ANY_ENVIRONMENT);
        for env in &required_in {
            if env == ANY_ENVIRONMENT {
                return Err(bad(
                    "required_in",
                    "cannot be `*`; use `mode = \"required\"`".into(),
                ));
            }
            if !runs_everywhere && !environments.contains(env) {
                return Err(bad(
                    "required_in",
                    format!("names `{env}`, which is not in `environments`"),
                ));
            }
        }

        let config = match table.get("config") {
            None => serde_json::Value::Object(serde_json::Map::new()),
            Some(toml::Value::Table(t)) => {
                toml_table_to_json(t, "config").map_err(|(f, r)| bad(&f, r))?
            }
            Some(v) => return Err(bad("config", format!("must be a table, not {}", kind(v)))),
        };

        let limits = match table.get("limits") {
            None => LimitOverrides::default(),
            Some(toml::Value::Table(t)) => parse_limits(t).map_err(|(f, r)| bad(&f, r))?,
            Some(v) => return Err(bad("limits", format!("must be a table, not {}", kind(v)))),
        };

        Ok(Manifest {
            path: path.to_path_buf(),
            name,
            description,
            module,
            environments,
            mode,
            required_in,
            config,
            limits,
        })
    }
}

const TOP_LEVEL_FIELDS: &[&str] = &[
    "name",
    "description",
    "module",
    "abi",
    "environments",
    "mode",
    "required_in",
    "config",
    "limits",
];

const LIMIT_FIELDS: &[&str] = &["wall_ms", "memory_mb", "fuel", "output_kb", "input_kb"];

/// Longest plugin or environment name; names end up in violation sources and logs.
const MAX_NAME_LEN: usize = 64;

fn list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

fn required_str(table: &toml::Table, field: &str) -> Result<String, String> {
    match table.get(field) {
        None => Err("is missing".into()),
        Some(toml::Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(format!("must be a string, not {}", kind(v))),
    }
}

/// Plugin and environment names: `[a-z0-9][a-z0-9_-]*`, at most [`MAX_NAME_LEN`].
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is `{name}`; use 1 to {MAX_NAME_LEN} lowercase letters, digits, `-` or `_`, starting with a letter or digit"
        ));
    }
    Ok(())
}

fn check_module_path(module: &str) -> Result<(), String> {
    let p = Path::new(module);
    let inside = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if module.is_empty() || !inside {
        return Err(format!(
            "is `{module}`; it must be a path inside the plugin's directory (relative, no `..`)"
        ));
    }
    match p.extension().and_then(|e| e.to_str()) {
        Some("wasm") | Some("wat") => Ok(()),
        _ => Err(format!("is `{module}`; it must end in `.wasm` or `.wat`")),
    }
}

fn env_list(v: &toml::Value) -> Result<Vec<String>, String> {
    let toml::Value::Array(items) = v else {
        return Err(format!(
            "must be an array of environment names, not {}",
            kind(v)
        ));
    };
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(s) = item.as_str() else {
            return Err(format!("[{i}] must be a string, not {}", kind(item)));
        };
        if s != ANY_ENVIRONMENT {
            check_name(s).map_err(|r| format!("[{i}] {r}"))?;
        }
        if out.iter().any(|e| e == s) {
            return Err(format!("lists `{s}` twice"));
        }
        out.push(s.to_string());
    }
    Ok(out)
}

fn parse_limits(t: &toml::Table) -> Result<LimitOverrides, (String, String)> {
    let mut out = LimitOverrides::default();
    for (key, v) in t {
        let field = format!("limits.{key}");
        if !LIMIT_FIELDS.contains(&key.as_str()) {
            return Err((
                field,
                format!("is not a limit (expected one of {})", list(LIMIT_FIELDS)),
            ));
        }
        let Some(n) = v.as_integer() else {
            return Err((field, format!("must be an integer, not {}", kind(v))));
        };
        let max: i64 = match key.as_str() {
            "wall_ms" => MAX_WALL_TIME.as_millis() as i64,
            "memory_mb" => (MAX_MEMORY_BYTES >> 20) as i64,
            "output_kb" => (MAX_OUTPUT_BYTES >> 10) as i64,
            "input_kb" => (MAX_INPUT_BYTES >> 10) as i64,
            // fuel: any positive budget; u64 fuel, and TOML integers stop at i64::MAX.
            _ => i64::MAX,
        };
        if !(1..=max).contains(&n) {
            return Err((field, format!("is `{n}`; it must be between 1 and {max}")));
        }
        let n = n as u64;
        match key.as_str() {
            "wall_ms" => out.wall_ms = Some(n),
            "memory_mb" => out.memory_mb = Some(n),
            "fuel" => out.fuel = Some(n),
            "output_kb" => out.output_kb = Some(n),
            _ => out.input_kb = Some(n),
        }
    }
    Ok(out)
}

/// TOML -> JSON for `[config]`. Datetimes become their RFC 3339 text; non-finite floats
/// are refused (JSON has no NaN).
fn toml_table_to_json(t: &toml::Table, at: &str) -> Result<serde_json::Value, (String, String)> {
    let mut map = serde_json::Map::with_capacity(t.len());
    for (k, v) in t {
        let field = format!("{at}.{k}");
        let json = toml_to_json(v, &field)?;
        map.insert(k.clone(), json);
    }
    Ok(serde_json::Value::Object(map))
}

fn toml_to_json(v: &toml::Value, at: &str) -> Result<serde_json::Value, (String, String)> {
    use serde_json::Value as J;
    Ok(match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => {
            serde_json::Number::from_f64(*f)
                .map(J::Number)
                .ok_or_else(|| {
                    (
                        at.to_string(),
                        format!("is `{f}`, which JSON cannot represent"),
                    )
                })?
        }
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(toml_to_json(item, &format!("{at}[{i}]"))?);
            }
            J::Array(out)
        }
        toml::Value::Table(t) => toml_table_to_json(t, at)?,
    })
}

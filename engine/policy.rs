//! The Rego bundle: load a policy directory, digest it, compile it once and evaluate
//! `data.promo.decision` with regorus (its register VM when the bundle compiles to it,
//! the interpreter otherwise); it never turns an evaluation error into an allow.

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regorus::rvm::program::Program;
use regorus::rvm::vm::RegoVM;

use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;
use sha2::Digest as _;

use crate::digest::Sha256;

pub mod archive;
mod bounded;
mod config;
mod lint;
mod recursion;
mod roots;
pub mod signature;
pub use archive::RawFile;
pub use lint::Lint;

/// The one entry point every bundle must define.
pub const ENTRY_POINT: &str = "data.promo.decision";

/// A slash-separated data path (the OPA Data API's, `Evaluator::query_data`'s) as a
/// Rego reference with every segment quoted
/// (`promo/config` -> `data["promo"]["config"]`), so no path can inject Rego.
pub fn data_ref(path: &str) -> String {
    let mut reference = String::from("data");
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        reference.push('[');
        reference.push_str(&serde_json::Value::String(segment.to_string()).to_string());
        reference.push(']');
    }
    reference
}

/// `promo/decision`, `/promo/decision`, `promo.decision` or `data.promo.decision` ->
/// `data.promo.decision`.
pub fn data_path(path: &str) -> String {
    let p = path.trim_matches('/').replace('/', ".");
    let p = p.strip_prefix("data.").unwrap_or(&p).to_string();
    if p.is_empty() || p == "data" {
        "data".to_string()
    } else {
        format!("data.{p}")
    }
}

/// The CLI's environment switch for [`Backend::Interpreter`] (`--interpreter` is the flag):
/// read by the CLI only, never here.
pub const INTERPRETER_ENV: &str = "PROMO_POLICY_INTERPRETER";

/// Which regorus engine decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// The register VM, with the entry point compiled once at load (the default; about
    /// 3x faster). A bundle the VM compiler refuses falls back to the interpreter with a
    /// lint saying why.
    #[default]
    Vm,
    /// The tree-walking interpreter: the same decisions (a test checks the corpus on
    /// both), an escape hatch should a bundle ever evaluate differently on the VM.
    Interpreter,
}

/// Where the engine lists the rule packages it loaded (`data.promo.engine.rulePackages`,
/// the names under `promo.rules`): `decision.rego` iterates this list instead of
/// enumerating `data.promo.rules`, which would evaluate every rule of every package to
/// find the keys (measured: 453 µs vs 225 µs for the shipped bundle on the VM). The path
/// is reserved: a bundle whose data defines `promo.engine` does not load.
pub const RULE_PACKAGES_KEY: [&str; 3] = ["promo", "engine", "rulePackages"];

/// How many VM instructions run between two reads of the clock for the evaluation
/// deadline. Reading it on every instruction cost a third of the shipped bundle's
/// evaluation (611 µs vs 459 µs without a deadline); every 256th instruction costs
/// nothing measurable, and a looping policy still stops within microseconds of the limit.
pub const VM_DEADLINE_CHECK_INTERVAL: u32 = 256;

/// How many instructions one VM evaluation may run: a backstop behind the deadline,
/// never the limit a real request meets. regorus's default (25 000) denied a valid
/// request with 100 approvals as `policy.error` while the interpreter allowed it; a
/// request at the schema's maxima (256 approvals, 1 024 checks) needs between 60 000 and
/// 120 000 as regorus counts them. [`POLICY_TIME_LIMIT`] is what stops a looping policy.
pub const VM_MAX_INSTRUCTIONS: usize = 200_000_000;

/// Wall-clock budget for one policy evaluation. The default bundle decides in well
/// under a millisecond; a policy that needs a second is looping, and a gate that
/// hangs is a gate people bypass.
pub const POLICY_TIME_LIMIT: Duration = Duration::from_secs(1);

/// Builtins a gate must not call: each either reaches the network (a decision must
/// not depend on it, and it is an exfiltration path) or reads the host clock or
/// randomness (a decision must be reproducible from its recorded input and time).
///
/// Refused three ways, so no spelling reaches them: the load-time token scan names the
/// file and line of a plain call; the VM program's builtin table is checked after
/// compiling (a computed reference such as `time["now_ns"]()` resolves there); and every
/// interpreter engine has them replaced by a function that fails the evaluation
/// (`policy.error`), which also covers ad-hoc queries and rules off the decision path.
pub const REFUSED_BUILTINS: &[(&str, &str)] = &[
    (
        "http.send",
        "a promotion gate must not depend on the network",
    ),
    (
        "net.lookup_ip_addr",
        "a promotion gate must not depend on the network",
    ),
    ("opa.runtime", "it exposes the host's environment to policy"),
    (
        "time.now_ns",
        "decisions must be reproducible: use `input.now`",
    ),
    ("rand.intn", "decisions must be reproducible"),
    ("uuid.rfc4122", "decisions must be reproducible"),
];

/// How many arguments each refused builtin takes (the interpreter matches the arity
/// when it resolves a call to the replacement).
fn refused_arity(name: &str) -> u8 {
    match name {
        "opa.runtime" | "time.now_ns" => 0,
        "rand.intn" => 2,
        _ => 1,
    }
}

/// Why a bundle could not be loaded or evaluated.
///
/// An underlying error (I/O, a parser's, regorus's) is the `source` and not repeated in
/// the message, so a printed chain (see [`crate::error_chain`]) says it once. A `reason`
/// is our own finding, with no error under it: it is in the message and not a source.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A bundle file or archive could not be read: not a regular file, over its cap, or
    /// an I/O error. The reader's message names the file.
    #[error(transparent)]
    Read(#[from] crate::fsio::ReadError),
    /// A directory could not be listed.
    #[error("cannot read `{path}`")]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A bundle file is not UTF-8 text.
    #[error("cannot read `{path}`: not UTF-8 text")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Where the bytes stop being UTF-8.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// The bundle directory's files together are over [`MAX_BUNDLE_BYTES`].
    #[error("cannot read `{path}`: the bundle's files exceed {MAX_BUNDLE_BYTES} bytes in all")]
    TooLarge {
        /// The file that went over.
        path: PathBuf,
    },
    /// A bundle archive is unusable or hostile.
    #[error("bundle `{path}`: {reason}")]
    Archive {
        /// The archive or directory.
        path: PathBuf,
        /// What is wrong (names the entry); our own sentence.
        reason: String,
    },
    /// A package or data file lies outside the manifest's roots, or the roots overlap.
    #[error("bundle `{path}`: {}{reason}", entry_prefix(.file.as_deref()))]
    Roots {
        /// The archive or directory.
        path: PathBuf,
        /// The data file, when data is outside the roots.
        file: Option<String>,
        /// What the roots refuse.
        reason: roots::RootsError,
    },
    /// The archive is not a gzip-compressed tar, or is damaged.
    #[error("bundle `{path}`: {}not a gzip-compressed tar archive, or a damaged one", entry_prefix(.entry.as_deref()))]
    Damaged {
        /// The archive.
        path: PathBuf,
        /// The entry being read, when the damage is inside one.
        entry: Option<String>,
        /// The decompressor's or tar reader's error.
        #[source]
        source: std::io::Error,
    },
    /// The archive inflates past the bundle's cap (a size bomb).
    #[error("bundle `{path}`: {}it inflates past {} bytes (a size bomb, or not a bundle)", entry_prefix(.entry.as_deref()), archive::MAX_INFLATED_BYTES)]
    Inflated {
        /// The archive.
        path: PathBuf,
        /// The entry being read when the cap was reached.
        entry: Option<String>,
    },
    /// The bundle's `.manifest` is unusable.
    #[error("bundle `{path}`")]
    Manifest {
        /// The archive or directory.
        path: PathBuf,
        /// What is wrong with the manifest.
        #[source]
        source: ManifestError,
    },
    /// regorus could not list the bundle's packages (for the manifest's roots).
    #[error("bundle `{path}`: cannot list packages")]
    Packages {
        /// The archive or directory.
        path: PathBuf,
        /// regorus's error.
        #[source]
        source: anyhow::Error,
    },
    /// The bundle's signature is missing where the trust file requires one, or does not
    /// verify; such a bundle never loads.
    #[error("bundle `{path}` signature")]
    Signature {
        /// The archive or directory.
        path: PathBuf,
        /// What failed.
        #[source]
        source: signature::SignatureError,
    },
    /// regorus refused a Rego file or the bundle (its message names file, line and
    /// column, with the source line).
    #[error(transparent)]
    Rego(anyhow::Error),
    /// The bundle does not compile into a decision for the VM (a refused builtin reached
    /// through a computed reference, recursion); our own sentence with the compiler's.
    #[error("{0}")]
    Parse(String),
    /// The bundle does not define [`ENTRY_POINT`].
    #[error("bundle `{path}` does not define `{ENTRY_POINT}`")]
    NoEntryPoint {
        /// The bundle.
        path: PathBuf,
        /// What regorus said when asked for it.
        #[source]
        source: anyhow::Error,
    },
    /// A rule or function of the bundle (or of its tests) depends on itself.
    #[error("bundle `{bundle}`: recursion {}is not allowed (it would exhaust the stack)", if *.in_tests { "in its tests " } else { "" })]
    Recursion {
        /// The bundle, as given.
        bundle: String,
        /// Whether the cycle is among the tests (`promo-policy test`).
        in_tests: bool,
        /// The cycle, or why the check could not run.
        #[source]
        source: recursion::RecursionError,
    },
    /// A data file is not valid JSON/YAML, or regorus refused to merge it.
    #[error("data file `{path}`")]
    DataParse {
        /// The data file.
        path: String,
        /// regorus's error.
        #[source]
        source: anyhow::Error,
    },
    /// Data could not be converted to JSON for the checks.
    #[error("data file `{path}`")]
    DataJson {
        /// The data file (`data` for the merged data).
        path: String,
        /// serde's error.
        #[source]
        source: serde_json::Error,
    },
    /// A data file is valid but refused: the config schema, a reserved path.
    #[error("data file `{path}`: {reason}")]
    Data {
        /// The data file.
        path: String,
        /// What is wrong with it; our own sentence (the schema validator's message
        /// included).
        reason: String,
    },
    /// A policy calls a builtin the gate refuses.
    #[error("{path}:{line}:{col}: `{builtin}` is refused: {why}")]
    RefusedBuiltin {
        /// File that calls it.
        path: String,
        /// Line of the call.
        line: u32,
        /// Column of the call.
        col: u32,
        /// The builtin.
        builtin: String,
        /// Why it is refused.
        why: String,
    },
    /// The bundle has no Rego at all, or no entry point.
    #[error(
        "bundle `{0}` has no policies (expected `*.rego` files defining `data.promo.decision`)"
    )]
    Empty(PathBuf),
    /// Evaluation failed at runtime. A string on purpose: it becomes the `policy.error`
    /// violation's message, and the evaluator builds it from regorus's message.
    #[error("policy evaluation failed: {0}")]
    Runtime(String),
    /// The entry point produced something other than a decision.
    #[error("`data.promo.decision` {0}")]
    Shape(String),
}

/// `` `name`: `` before an archive error inside an entry, nothing otherwise.
fn entry_prefix(entry: Option<&str>) -> String {
    entry.map(|e| format!("`{e}`: ")).unwrap_or_default()
}

/// What is wrong with a bundle's `.manifest`.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON.
    #[error("`{}` is not JSON", archive::MANIFEST)]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not an object.
    #[error("`{}` is not a JSON object", archive::MANIFEST)]
    NotObject,
    /// `revision` is not a string.
    #[error("`revision` must be a string, got `{0}`")]
    Revision(serde_json::Value),
    /// `roots` is not an array of strings.
    #[error("`roots` must be an array of strings, got `{0}`")]
    Roots(String),
}

/// One file of the bundle, path relative to the bundle root with `/` separators.
#[derive(Debug, Clone, Serialize)]
pub struct BundleFile {
    /// Path relative to the bundle root.
    pub path: String,
    /// File contents.
    pub contents: String,
}

/// A loaded, compiled and prepared policy bundle; immutable and shared.
#[derive(Clone)]
pub struct PolicyBundle {
    uri: String,
    digest: Sha256,
    revision: Option<String>,
    signed_by: Option<String>,
    policies: Vec<BundleFile>,
    tests: Vec<BundleFile>,
    data: Vec<(String, regorus::Value)>,
    prepared: regorus::Engine,
    vm: VmPlan,
    catalog: Vec<Check>,
    lints: Vec<Lint>,
}

/// How decisions run: the entry point compiled for regorus's register VM (about 3x
/// faster than the interpreter on the default bundle), or the interpreter with the
/// reason the compiler gave (it rejects `with` outside tests, among others).
#[derive(Clone)]
enum VmPlan {
    Compiled {
        program: Arc<Program>,
        data: regorus::Value,
    },
    Interpreter(String),
}

/// One check a rule package declares in its `catalog` (`{"<id>": "<what it checks>"}`),
/// listed by `eval --explain` as passed, denied or warned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// The package under `promo.rules`, e.g. `approvals`.
    pub package: String,
    /// The violation id the check reports when it fails.
    pub id: String,
    /// What it checks, in one sentence.
    pub what: String,
}

impl std::fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyBundle")
            .field("uri", &self.uri)
            .field("digest", &self.digest)
            .field("policies", &self.policies.len())
            .field("tests", &self.tests.len())
            .finish()
    }
}

/// What `data.promo.decision` said.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyOutcome {
    /// The policy's own verdict.
    pub allow: bool,
    /// Deny entries, in the policy's order.
    pub deny: Vec<RuleFinding>,
    /// Warn entries, in the policy's order.
    pub warn: Vec<RuleFinding>,
}

/// Cap on one bundle file (`.rego` or data): the shipped bundle's largest is ~40 KiB.
pub const MAX_BUNDLE_FILE_BYTES: u64 = 8 << 20;
/// Cap on all of a bundle's files together: a bundle is loaded whole into memory.
pub const MAX_BUNDLE_BYTES: u64 = 32 << 20;

/// One `{id, msg, facts}` entry of a `deny` or `warn` set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleFinding {
    /// Stable violation id.
    pub id: String,
    /// Sentence a person can act on.
    pub msg: String,
    /// The facts that caused it, when the rule gives them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub facts: Option<serde_json::Value>,
}

/// A bundle's files, sorted: policies, tests and data, with the digest over the policies
/// and data (not the tests), and the manifest and signatures when it has them.
struct BundleFiles {
    policies: Vec<BundleFile>,
    tests: Vec<BundleFile>,
    data_files: Vec<BundleFile>,
    digest: Sha256,
    manifest: Option<Manifest>,
    signatures: Option<Vec<u8>>,
}

impl BundleFiles {
    /// Every file the signature covers: all but `.signatures.json`.
    fn signed_set(&self) -> Vec<RawFile> {
        let mut set: Vec<RawFile> = [&self.policies, &self.tests, &self.data_files]
            .into_iter()
            .flatten()
            .map(|f| RawFile {
                path: f.path.clone(),
                bytes: f.contents.as_bytes().to_vec(),
            })
            .collect();
        if let Some(m) = &self.manifest {
            set.push(RawFile {
                path: archive::MANIFEST.into(),
                bytes: m.bytes.clone(),
            });
        }
        set
    }
}

/// The bundle's `.manifest` (OPA's): the revision is recorded in decisions.
struct Manifest {
    revision: Option<String>,
    /// The data paths the bundle owns (OPA's `roots`); `None` owns everything.
    roots: Option<Vec<String>>,
    bytes: Vec<u8>,
}

impl Manifest {
    fn parse(bytes: Vec<u8>) -> Result<Self, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(ManifestError::NotJson)?;
        let obj = value.as_object().ok_or(ManifestError::NotObject)?;
        let revision = match obj.get("revision") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(r)) => Some(r.clone()),
            Some(v) => return Err(ManifestError::Revision(v.clone())),
        };
        let roots = match obj.get("roots") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Array(roots)) => Some(
                roots
                    .iter()
                    .map(|r| r.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| ManifestError::Roots(format!("{roots:?}")))?,
            ),
            Some(v) => return Err(ManifestError::Roots(v.to_string())),
        };
        Ok(Self {
            revision,
            roots,
            bytes,
        })
    }
}

/// Reads a bundle: every `*.rego` and `data.json`/`data.yaml` (and `.manifest`,
/// `.signatures.json` at the root) of a directory, or the same from an OPA bundle archive
/// (`.tar.gz`), within the bundle's size budgets, hashing what decides.
fn read_bundle_files(path: &Path) -> Result<BundleFiles, PolicyError> {
    let mut raw = if path.is_file() {
        archive::read(path)?
    } else {
        archive::read_directory(path)?
    };
    raw.sort_by(|a, b| a.path.cmp(&b.path));
    let (mut policies, mut tests, mut data_files) = (Vec::new(), Vec::new(), Vec::new());
    let (mut manifest, mut signatures) = (None, None);
    let mut hasher = sha2::Sha256::new();
    for RawFile { path: rel, bytes } in raw {
        if rel == archive::SIGNATURES {
            signatures = Some(bytes);
            continue;
        }
        if rel == archive::MANIFEST {
            manifest = Some(
                Manifest::parse(bytes).map_err(|source| PolicyError::Manifest {
                    path: path.to_path_buf(),
                    source,
                })?,
            );
            continue;
        }
        let contents = String::from_utf8(bytes).map_err(|source| PolicyError::NotUtf8 {
            path: path.join(&rel),
            source,
        })?;
        let file = BundleFile {
            path: rel,
            contents,
        };
        if file.path.ends_with("_test.rego") {
            tests.push(file);
            continue;
        }
        // Length-prefixed pairs, so no two different bundles hash alike.
        hasher.update((file.path.len() as u64).to_be_bytes());
        hasher.update(file.path.as_bytes());
        hasher.update((file.contents.len() as u64).to_be_bytes());
        hasher.update(file.contents.as_bytes());
        if file.path.ends_with(".rego") {
            policies.push(file);
        } else {
            data_files.push(file);
        }
    }
    Ok(BundleFiles {
        policies,
        tests,
        data_files,
        digest: Sha256::finish(hasher),
        manifest,
        signatures,
    })
}

/// The bundle key that signed `files`, `None` for an unsigned bundle the trust file allows.
fn check_signature(
    path: &Path,
    files: &BundleFiles,
    trust: &crate::attest::trust::TrustStore,
) -> Result<Option<String>, PolicyError> {
    let err = |source| PolicyError::Signature {
        path: path.to_path_buf(),
        source,
    };
    match &files.signatures {
        Some(sigs) => signature::verify(sigs, &files.signed_set(), &trust.bundle_keys())
            .map(Some)
            .map_err(err),
        None if trust.require_signed_bundle() => Err(err(signature::SignatureError::Required)),
        None => Ok(None),
    }
}

/// Refuse a bundle whose packages or data lie outside its manifest's `roots`, or whose
/// roots overlap (see [`roots`]).
fn check_roots(
    dir: &Path,
    declared: &[String],
    engine: &regorus::Engine,
    mounted: &[(String, serde_json::Value)],
) -> Result<(), PolicyError> {
    let err = |file: Option<String>| {
        move |reason| PolicyError::Roots {
            path: dir.to_path_buf(),
            file,
            reason,
        }
    };
    let parsed = roots::parse(declared).map_err(err(None))?;
    let packages = engine
        .get_packages()
        .map_err(|source| PolicyError::Packages {
            path: dir.to_path_buf(),
            source,
        })?;
    for package in packages {
        roots::check_package(&parsed, &package).map_err(err(None))?;
    }
    for (file, value) in mounted {
        roots::check_data(&parsed, &[], value).map_err(|r| err(Some(file.clone()))(r))?;
    }
    Ok(())
}

/// The first evaluation prepares the engine (rule index, schedule); clones taken
/// afterwards keep that work. An empty input is enough, and the result does not matter
/// here, except that a bundle without the entry point is refused.
fn warm_up(engine: &mut regorus::Engine, dir: &Path) -> Result<(), PolicyError> {
    engine.set_input(regorus::Value::new_object());
    if let Err(e) = engine.eval_rule(ENTRY_POINT.to_string()) {
        let msg = e.to_string();
        if msg.contains("not a valid rule path") || msg.contains("not found") {
            return Err(PolicyError::NoEntryPoint {
                path: dir.to_path_buf(),
                source: e,
            });
        }
    }
    Ok(())
}

/// Where decisions run: the VM program, or the interpreter (chosen, or because the VM
/// compiler refused the bundle, which a lint then says).
fn plan_backend(
    backend: Backend,
    compiled: Result<(Arc<Program>, regorus::Value), VmRefusal>,
    lints: &mut Vec<Lint>,
) -> VmPlan {
    if backend == Backend::Interpreter {
        return VmPlan::Interpreter("the interpreter was chosen (`--interpreter`)".into());
    }
    match compiled {
        Ok((program, data)) => VmPlan::Compiled { program, data },
        Err(VmRefusal::Bundle(why) | VmRefusal::Unsupported(why)) => {
            let why = why.trim().replace('\n', " ");
            lints.push(Lint {
                path: ENTRY_POINT.to_string(),
                line: 0,
                message: format!(
                    "does not compile for regorus's register VM, so decisions run on the interpreter (about 3x slower): {why}"
                ),
            });
            VmPlan::Interpreter(why)
        }
    }
}

impl PolicyBundle {
    /// Load every `*.rego` (tests kept aside) and `data.json`/`data.yaml` under `dir`,
    /// refuse network and clock builtins, compile and prepare once.
    pub fn load(dir: &Path) -> Result<Self, PolicyError> {
        Self::load_with(dir, Backend::Vm)
    }

    /// [`PolicyBundle::load`] deciding on `backend`. A signature, if any, is not checked:
    /// this is for tooling (`test`, `diff`); the deciding engine uses
    /// [`PolicyBundle::load_trusted`].
    pub fn load_with(dir: &Path, backend: Backend) -> Result<Self, PolicyError> {
        Self::load_checked(dir, backend, None)
    }

    /// [`PolicyBundle::load_with`], refusing a bundle whose `.signatures.json` does not
    /// verify against the trust file's bundle keys, or that has none where the trust file
    /// says `requireSignedBundle`.
    pub fn load_trusted(
        dir: &Path,
        backend: Backend,
        trust: &crate::attest::trust::TrustStore,
    ) -> Result<Self, PolicyError> {
        Self::load_checked(dir, backend, Some(trust))
    }

    fn load_checked(
        dir: &Path,
        backend: Backend,
        trust: Option<&crate::attest::trust::TrustStore>,
    ) -> Result<Self, PolicyError> {
        let files = read_bundle_files(dir)?;
        let signed_by = match trust {
            Some(trust) => check_signature(dir, &files, trust)?,
            None => None,
        };
        let revision = files.manifest.as_ref().and_then(|m| m.revision.clone());
        let roots = files.manifest.as_ref().and_then(|m| m.roots.clone());
        let BundleFiles {
            policies,
            tests,
            data_files,
            digest,
            ..
        } = files;
        if policies.is_empty() {
            return Err(PolicyError::Empty(dir.to_path_buf()));
        }
        let data = data_files
            .iter()
            .map(|f| Ok((f.path.clone(), mount_data(f)?)))
            .collect::<Result<Vec<_>, PolicyError>>()?;

        let mut engine = new_engine(&policies, &data)?;
        let mounted = check_data(dir, roots.as_deref(), &engine, &data)?;
        // Before anything evaluates: both engines recurse on the native stack.
        recursion::check(&engine).map_err(|source| PolicyError::Recursion {
            bundle: dir.display().to_string(),
            in_tests: false,
            source,
        })?;
        // Compiled before anything evaluates on the interpreter, whichever runs the
        // decisions: recursion and computed references to refused builtins are refused
        // here, not found by an evaluation.
        let compiled = match compile_vm(&engine) {
            Err(VmRefusal::Bundle(why)) => {
                return Err(PolicyError::Parse(format!(
                    "bundle `{}`: {why}",
                    dir.display()
                )))
            }
            other => other,
        };
        let mut lints = Vec::new();
        let packages = lint::rule_packages(&mut engine, &mut lints);
        warm_up(&mut engine, dir)?;
        let vm = plan_backend(backend, compiled, &mut lints);
        let catalog = read_catalog(&engine, &packages, &mut lints);
        let words = lint::policy_words(&policies)?;
        // The data as mounted (already read as JSON above), keys from `data` down.
        for (path, value) in &mounted {
            lint::unread_data(path, value, &words, &mut lints);
        }

        Ok(Self {
            uri: dir.display().to_string(),
            digest,
            revision,
            signed_by,
            policies,
            tests,
            data,
            prepared: engine,
            vm,
            catalog,
            lints,
        })
    }

    /// A register VM ready to evaluate the entry point, or `None` when the bundle only
    /// runs on the interpreter (see [`PolicyBundle::vm_status`]).
    pub fn decision_vm(&self) -> Option<RegoVM> {
        let VmPlan::Compiled { program, data } = &self.vm else {
            return None;
        };
        let mut vm = RegoVM::new();
        vm.load_program(Arc::clone(program));
        // INVARIANT: `data` was accepted by the same call when the bundle loaded.
        vm.set_data(data.clone()).ok()?;
        vm.set_strict_builtin_errors(false);
        vm.set_execution_timer_config(Some(time_limit(VM_DEADLINE_CHECK_INTERVAL)));
        vm.set_max_instructions(VM_MAX_INSTRUCTIONS);
        Some(vm)
    }

    /// `Ok(())` when decisions run on the VM, else why they run on the interpreter.
    pub fn vm_status(&self) -> Result<(), &str> {
        match &self.vm {
            VmPlan::Compiled { .. } => Ok(()),
            VmPlan::Interpreter(why) => Err(why),
        }
    }

    /// The checks the rule packages declare, by package then id.
    pub fn catalog(&self) -> &[Check] {
        &self.catalog
    }

    /// Static warnings found while loading (see [`Lint`]); a bundle with lints still
    /// loads and decides.
    pub fn lints(&self) -> &[Lint] {
        &self.lints
    }

    /// Where the bundle came from, as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// SHA-256 over the sorted, length-prefixed (path, contents) pairs of the policy and
    /// data files (tests excluded: they do not change decisions).
    pub fn digest(&self) -> Sha256 {
        self.digest
    }

    /// The `.manifest`'s `revision`, when the bundle has one.
    pub fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// The trust-file id of the key whose `.signatures.json` verified, for a bundle loaded
    /// with [`PolicyBundle::load_trusted`] that carries one.
    pub fn signed_by(&self) -> Option<&str> {
        self.signed_by.as_deref()
    }

    /// The policy modules (no tests).
    pub fn policies(&self) -> &[BundleFile] {
        &self.policies
    }

    /// The `*_test.rego` modules.
    pub fn tests(&self) -> &[BundleFile] {
        &self.tests
    }

    /// A per-thread evaluator: a clone of the prepared engine (cheap).
    pub fn evaluator(&self) -> regorus::Engine {
        self.prepared.clone()
    }

    /// An engine with the test modules loaded too, for `promo-policy test`.
    ///
    /// The tests are checked for recursion like the policies: a recursive test would
    /// otherwise abort `promo-policy test` with a stack overflow.
    pub fn test_engine(&self) -> Result<regorus::Engine, PolicyError> {
        let mut all = self.policies.clone();
        all.extend(self.tests.iter().cloned());
        let engine = new_engine(&all, &self.data)?;
        recursion::check(&engine).map_err(|source| PolicyError::Recursion {
            bundle: self.uri.clone(),
            in_tests: true,
            source,
        })?;
        Ok(engine)
    }
}

/// Evaluate the entry point with `input` on a register VM and read the decision.
pub fn evaluate_vm(vm: &mut RegoVM, input: regorus::Value) -> Result<PolicyOutcome, PolicyError> {
    read_outcome(&execute_vm(vm, input)?)
}

/// The entry point's value for `input` on a register VM, as it is (the Data API
/// answers it; [`evaluate_vm`] reads it as a decision).
pub fn execute_vm(vm: &mut RegoVM, input: regorus::Value) -> Result<regorus::Value, PolicyError> {
    vm.set_input(input);
    vm.execute()
        .map_err(|e| PolicyError::Runtime(e.to_string()))
}

/// Each data file as JSON (what the bundle-config schema, the manifest roots and the
/// lints read), after checking the bundle's merged data against its config schema and,
/// where the manifest names `roots`, that everything lies under one of them.
fn check_data(
    dir: &Path,
    roots: Option<&[String]>,
    engine: &regorus::Engine,
    data: &[(String, regorus::Value)],
) -> Result<Vec<(String, serde_json::Value)>, PolicyError> {
    let as_json = |path: &str, v: &regorus::Value| {
        serde_json::to_value(v).map_err(|source| PolicyError::DataJson {
            path: path.to_string(),
            source,
        })
    };
    let mounted = data
        .iter()
        .map(|(p, v)| Ok((p.clone(), as_json(p, v)?)))
        .collect::<Result<Vec<_>, PolicyError>>()?;
    config::check(&as_json("data", &engine.get_data())?, &mounted)?;
    if let Some(roots) = roots {
        check_roots(dir, roots, engine, &mounted)?;
    }
    Ok(mounted)
}

/// Why the entry point did not compile for the VM.
enum VmRefusal {
    /// The bundle must not load at all (a refused builtin, recursion).
    Bundle(String),
    /// The VM cannot run it; the interpreter can.
    Unsupported(String),
}

/// Compile the entry point for the register VM, with the bundle's merged data.
fn compile_vm(engine: &regorus::Engine) -> Result<(Arc<Program>, regorus::Value), VmRefusal> {
    use regorus::languages::rego::compiler::Compiler;
    let mut engine = engine.clone();
    let entry: regorus::Rc<str> = regorus::Rc::from(ENTRY_POINT);
    let compiled = engine
        .compile_with_entrypoint(&entry)
        .map_err(|e| VmRefusal::Unsupported(e.to_string()))?;
    let program = Compiler::compile_from_policy(&compiled, &[ENTRY_POINT]).map_err(|e| {
        let msg = e.to_string();
        // OPA refuses recursion at compile time too; on the interpreter it would
        // exhaust the stack at the first evaluation that reaches it.
        if msg.contains("recursion detected") {
            VmRefusal::Bundle(format!("recursion is not allowed: {}", msg.trim()))
        } else {
            VmRefusal::Unsupported(msg)
        }
    })?;
    if let Some((builtin, why)) = program
        .builtin_info_table
        .iter()
        .find_map(|b| REFUSED_BUILTINS.iter().find(|(n, _)| *n == b.name))
    {
        return Err(VmRefusal::Bundle(format!(
            "`{builtin}` is refused: {why} (it is reached from `{ENTRY_POINT}` through a computed reference)"
        )));
    }
    if let Some((builtin, _)) = program
        .builtin_info_table
        .iter()
        .find_map(|b| bounded::BOUNDED_BUILTINS.iter().find(|(n, _)| *n == b.name))
    {
        return Err(VmRefusal::Unsupported(format!(
            "it calls `{builtin}`, whose size limit ({} numbers) only the interpreter enforces",
            bounded::MAX_RANGE_ELEMENTS
        )));
    }
    let data = engine.get_data();
    // Fail here, at load, rather than per evaluator.
    RegoVM::new()
        .set_data(data.clone())
        .map_err(|e| VmRefusal::Unsupported(e.to_string()))?;
    Ok((program, data))
}

/// The evaluation deadline, checked every `interval` units of work (the interpreter's
/// units are coarse, so it checks on each; see [`VM_DEADLINE_CHECK_INTERVAL`]).
fn time_limit(interval: u32) -> ExecutionTimerConfig {
    ExecutionTimerConfig {
        limit: POLICY_TIME_LIMIT,
        check_interval: NonZeroU32::new(interval).unwrap_or(NonZeroU32::MIN),
    }
}

/// Evaluate the entry point with `input` on a prepared engine and read the decision.
pub fn evaluate(
    engine: &mut regorus::Engine,
    input: regorus::Value,
) -> Result<PolicyOutcome, PolicyError> {
    engine.set_input(input);
    let value = engine
        .eval_rule(ENTRY_POINT.to_string())
        .map_err(|e| PolicyError::Runtime(e.to_string()))?;
    read_outcome(&value)
}

fn read_outcome(value: &regorus::Value) -> Result<PolicyOutcome, PolicyError> {
    if *value == regorus::Value::Undefined {
        return Err(PolicyError::Shape("is undefined for this input".into()));
    }
    let json: serde_json::Value = serde_json::to_value(value)
        .map_err(|e| PolicyError::Shape(format!("cannot be read: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| PolicyError::Shape(format!("must be an object, got `{json}`")))?;
    let allow = match obj.get("allow") {
        Some(serde_json::Value::Bool(b)) => *b,
        other => {
            return Err(PolicyError::Shape(format!(
                "`allow` must be a boolean, got `{}`",
                other.map_or("nothing".to_string(), |v| v.to_string())
            )))
        }
    };
    Ok(PolicyOutcome {
        allow,
        deny: read_findings(obj.get("deny"), "deny")?,
        warn: read_findings(obj.get("warn"), "warn")?,
    })
}

fn read_findings(
    v: Option<&serde_json::Value>,
    field: &str,
) -> Result<Vec<RuleFinding>, PolicyError> {
    let items = match v {
        None => return Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => {
            return Err(PolicyError::Shape(format!(
                "`{field}` must be an array, got `{other}`"
            )))
        }
    };
    items
        .iter()
        .map(|item| {
            let id = item.get("id").and_then(|v| v.as_str());
            let msg = item.get("msg").and_then(|v| v.as_str());
            match (id, msg) {
                (Some(id), Some(msg)) => Ok(RuleFinding {
                    id: id.to_string(),
                    msg: msg.to_string(),
                    facts: item.get("facts").cloned(),
                }),
                // A deny entry without an id is still a deny: keep it, name the gap.
                _ => Ok(RuleFinding {
                    id: "policy.malformed_violation".to_string(),
                    msg: format!("a `{field}` entry lacks a string `id` or `msg`: `{item}`"),
                    facts: None,
                }),
            }
        })
        .collect()
}

fn new_engine(
    policies: &[BundleFile],
    data: &[(String, regorus::Value)],
) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    // OPA's default: a builtin given bad arguments is undefined, not a hard error.
    // Strict mode would turn a missing optional field into `policy.error` denials
    // everywhere; our rules guard their inputs instead.
    engine.set_strict_builtin_errors(false);
    engine.set_execution_timer_config(time_limit(1));
    for (name, why) in REFUSED_BUILTINS {
        let message = format!("`{name}` is refused: {why}");
        engine
            .add_extension(
                (*name).to_string(),
                refused_arity(name),
                Box::new(
                    move |_: Vec<regorus::Value>| -> anyhow::Result<regorus::Value> {
                        Err(anyhow::anyhow!(message.clone()))
                    },
                ),
            )
            .map_err(|e| PolicyError::Rego(e.context(format!("cannot refuse `{name}`"))))?;
    }
    bounded::install(&mut engine)
        .map_err(|e| PolicyError::Rego(e.context("cannot bound builtins")))?;
    for file in policies {
        refuse_builtins(file)?;
        engine
            .add_policy(file.path.clone(), file.contents.clone())
            .map_err(PolicyError::Rego)?;
    }
    for (path, value) in data {
        engine
            .add_data(value.clone())
            .map_err(|source| PolicyError::DataParse {
                path: path.clone(),
                source,
            })?;
    }
    add_rule_packages(&mut engine)?;
    Ok(engine)
}

/// Add `data.promo.engine.rulePackages` (see [`RULE_PACKAGES_KEY`]): every name `n` for
/// which `data.promo.rules[n]` can exist, from the packages and the data, so iterating
/// the list finds every package enumerating `data.promo.rules` would. Where a name cannot
/// be read from a package path, nothing is added and the policy enumerates (slower, same
/// result).
fn add_rule_packages(engine: &mut regorus::Engine) -> Result<(), PolicyError> {
    let reserved = || PolicyError::Data {
        path: RULE_PACKAGES_KEY[..2].join("/"),
        reason: format!(
            "`data.{}` is reserved for the engine",
            RULE_PACKAGES_KEY[..2].join(".")
        ),
    };
    let data = engine.get_data();
    let promo = &data[RULE_PACKAGES_KEY[0]];
    if promo[RULE_PACKAGES_KEY[1]] != regorus::Value::Undefined {
        return Err(reserved());
    }
    let mut names = std::collections::BTreeSet::new();
    if let Ok(rules) = promo["rules"].as_object() {
        for key in rules.keys() {
            match key.as_string() {
                Ok(k) => names.insert(k.to_string()),
                Err(_) => return Ok(()),
            };
        }
    }
    for module in engine.get_modules().iter() {
        // Any spelling of the path (`promo.rules.x`, `promo["rules"].x`); one this cannot
        // read leaves the policy to enumerate, never a package out of the list.
        let Some(path) = package_segments(module.package.refr.span().text()) else {
            return Ok(());
        };
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        match path.as_slice() {
            // `package promo` with a rule `rules` (or `rules.x`) makes keys only
            // evaluation finds: leave the policy to enumerate.
            ["promo"] if module.policy.iter().any(|rule| defines_rules(rule)) => return Ok(()),
            // The `promo.rules` package's own rules are the keys.
            ["promo", "rules"] => return Ok(()),
            ["promo", "rules", name, ..] => {
                names.insert((*name).to_string());
            }
            _ => {}
        }
    }
    let list: Vec<regorus::Value> = names.into_iter().map(regorus::Value::from).collect();
    let mut value = regorus::Value::from(list);
    for key in RULE_PACKAGES_KEY.iter().rev() {
        let mut obj = regorus::Value::new_object();
        obj.as_object_mut()
            .map_err(PolicyError::Rego)?
            .insert(regorus::Value::from(*key), value);
        value = obj;
    }
    engine.add_data(value).map_err(|_| reserved())
}

/// Whether a rule of `package promo` is (or is under) `rules`.
fn defines_rules(rule: &regorus::unstable::Rule) -> bool {
    let regorus::unstable::Rule::Spec { head, .. } = rule else {
        return false;
    };
    let name = match head {
        regorus::unstable::RuleHead::Compr { refr, .. }
        | regorus::unstable::RuleHead::Set { refr, .. }
        | regorus::unstable::RuleHead::Func { refr, .. } => refr.span().text(),
    };
    name == "rules" || name.starts_with("rules.") || name.starts_with("rules[")
}

/// A package path's segments: `promo.rules.x` and `promo["rules"]["x"]` are both
/// `["promo", "rules", "x"]`; `None` for anything else (spaces, other quoting).
fn package_segments(text: &str) -> Option<Vec<String>> {
    let mut segments = Vec::new();
    let end = text.find(['.', '[']).unwrap_or(text.len());
    segments.push(text[..end].to_string());
    let mut rest = &text[end..];
    while !rest.is_empty() {
        if let Some(dotted) = rest.strip_prefix('.') {
            let end = dotted.find(['.', '[']).unwrap_or(dotted.len());
            segments.push(dotted[..end].to_string());
            rest = &dotted[end..];
        } else {
            let quoted = rest.strip_prefix("[\"")?;
            let end = quoted.find("\"]")?;
            segments.push(quoted[..end].to_string());
            rest = &quoted[end + 2..];
        }
    }
    let plain = |s: &String| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
    };
    segments.iter().all(plain).then_some(segments)
}

/// Evaluate each rule package's `catalog` (constant data, so no input is needed) and
/// lint one that is not `{"<id>": "<sentence>"}` or that misses an id its rules emit.
fn read_catalog(
    engine: &regorus::Engine,
    packages: &std::collections::BTreeMap<String, lint::RulePackage>,
    lints: &mut Vec<Lint>,
) -> Vec<Check> {
    let mut catalog = Vec::new();
    for (name, pkg) in packages {
        if !pkg.has_catalog {
            continue;
        }
        let mut e = engine.clone();
        e.set_input(regorus::Value::new_object());
        let value = e
            .eval_rule(format!("data.promo.rules.{name}.catalog"))
            .map_err(|e| e.to_string())
            .and_then(|v| serde_json::to_value(&v).map_err(|e| e.to_string()));
        let entries = match value {
            Ok(serde_json::Value::Object(map))
                if map.values().all(serde_json::Value::is_string) =>
            {
                map
            }
            other => {
                lints.push(Lint {
                    path: pkg.at.0.clone(),
                    line: pkg.at.1,
                    message: format!(
                        "promo.rules.{name}.catalog must be a constant object {{\"<id>\": \"<what it checks>\"}}, got {}",
                        match other {
                            Ok(v) => format!("`{v}`"),
                            Err(e) => format!("an error: {e}"),
                        }
                    ),
                });
                continue;
            }
        };
        for (id, path, line) in &pkg.literal_ids {
            if !entries.contains_key(id) {
                lints.push(Lint {
                    path: path.clone(),
                    line: *line,
                    message: format!(
                        "id `{id}` is emitted but not in promo.rules.{name}.catalog: add it, so `eval --explain` lists the check"
                    ),
                });
            }
        }
        for (id, what) in entries {
            catalog.push(Check {
                package: name.clone(),
                id,
                what: what.as_str().unwrap_or_default().to_string(),
            });
        }
    }
    catalog
}

/// Scan a module's tokens (so comments and strings never match) for refused builtins.
fn refuse_builtins(file: &BundleFile) -> Result<(), PolicyError> {
    use regorus::unstable::{Lexer, Source, TokenKind};
    let source = Source::from_contents(file.path.clone(), file.contents.clone())
        .map_err(PolicyError::Rego)?;
    let mut lexer = Lexer::new(&source);
    // A sliding window of the last three tokens: `http` `.` `send`.
    let mut window: Vec<(String, u32, u32)> = Vec::with_capacity(3);
    loop {
        let token = lexer.next_token().map_err(PolicyError::Rego)?;
        if matches!(token.0, TokenKind::Eof) {
            return Ok(());
        }
        let text = match token.0 {
            TokenKind::Ident | TokenKind::Symbol => token.1.text().to_string(),
            _ => String::new(),
        };
        if window.len() == 3 {
            window.remove(0);
        }
        window.push((text, token.1.line, token.1.col));
        if let [(a, line, col), (dot, _, _), (b, _, _)] = window.as_slice() {
            if dot == "." {
                let called = format!("{a}.{b}");
                if let Some((builtin, why)) = REFUSED_BUILTINS.iter().find(|(n, _)| *n == called) {
                    return Err(PolicyError::RefusedBuiltin {
                        path: file.path.clone(),
                        line: *line,
                        col: *col,
                        builtin: (*builtin).to_string(),
                        why: (*why).to_string(),
                    });
                }
            }
        }
    }
}

/// Parse a data file and nest it under its directory path (`promo/data.json` ->
/// `{"promo": <contents>}`), as OPA bundles do.
fn mount_data(file: &BundleFile) -> Result<regorus::Value, PolicyError> {
    let parse = |source| PolicyError::DataParse {
        path: file.path.clone(),
        source,
    };
    let mut value = if file.path.ends_with(".json") {
        regorus::Value::from_json_str(&file.contents).map_err(parse)?
    } else {
        regorus::Value::from_yaml_str(&file.contents).map_err(parse)?
    };
    if !matches!(value, regorus::Value::Object(_)) {
        return Err(PolicyError::Data {
            path: file.path.clone(),
            reason: "the top level must be an object".into(),
        });
    }
    let dirs: Vec<&str> = file.path.split('/').collect();
    for dir in dirs.iter().rev().skip(1) {
        let mut obj = regorus::Value::new_object();
        obj.as_object_mut()
            .map_err(parse)?
            .insert(regorus::Value::from(*dir), value);
        value = obj;
    }
    Ok(value)
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

    fn bundle(files: &[(&str, &str)]) -> (tempfile::TempDir, Result<PolicyBundle, PolicyError>) {
        let dir = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let path = dir.path().join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        }
        let b = PolicyBundle::load(dir.path());
        (dir, b)
    }

    const DECISION: &str = r#"package promo
deny contains v if { some name; some v in data.promo.rules[name].deny }
decision := {"allow": count(deny) == 0, "deny": [v | some v in deny], "warn": []}
"#;

    #[test]
    fn data_is_mounted_under_its_directory() {
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            (
                "promo/rules/x.rego",
                "package promo.rules.x\ndeny contains {\"id\": \"x\", \"msg\": data.promo.settings.m} if input.bad\n",
            ),
            ("promo/data.json", r#"{"settings": {"m": "configured"}}"#),
        ]);
        let b = b.unwrap();
        let mut e = b.evaluator();
        let input = regorus::Value::from_json_str(r#"{"bad": true}"#).unwrap();
        let out = evaluate(&mut e, input).unwrap();
        assert!(!out.allow);
        assert_eq!(out.deny[0].msg, "configured");
    }

    /// The listed names, as the policy sees them.
    fn rule_packages(b: &PolicyBundle) -> Option<Vec<String>> {
        let data = serde_json::to_value(b.evaluator().get_data()).unwrap();
        let list = data.pointer("/promo/engine/rulePackages")?;
        Some(serde_json::from_value(list.clone()).unwrap())
    }

    #[test]
    fn the_rule_package_list_is_every_key_enumeration_finds() {
        let b = PolicyBundle::load(Path::new("policies")).unwrap();
        let listed = rule_packages(&b).expect("the shipped bundle gets a list");
        let mut e = b.evaluator();
        e.set_input(regorus::Value::new_object());
        let results = e.eval_query("data.promo.rules".to_string(), false).unwrap();
        let rules = &results.result[0].expressions[0].value;
        let enumerated: Vec<String> = serde_json::to_value(rules)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(listed, enumerated);
        assert!(listed.contains(&"approvals".to_string()), "{listed:?}");

        // Rules given as data and quoted package names are listed too, and decide.
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            (
                "promo/rules/x.rego",
                "package promo.rules[\"my-rules\"]\ndeny contains {\"id\": \"q\", \"msg\": \"m\"} if input.bad\n",
            ),
            (
                "promo/rules/fixed/data.json",
                r#"{"deny": [{"id": "fixed.always", "msg": "static"}]}"#,
            ),
            (
                "promo/rules/z.rego",
                "package promo[\"rules\"].z\ndeny contains {\"id\": \"z\", \"msg\": \"m\"} if input.bad\n",
            ),
        ]);
        let b = b.unwrap();
        assert_eq!(
            rule_packages(&b).unwrap(),
            vec!["fixed".to_string(), "my-rules".to_string(), "z".to_string()]
        );
    }

    #[test]
    fn the_engine_namespace_is_reserved() {
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            ("promo/engine/data.json", r#"{"rulePackages": ["forged"]}"#),
        ]);
        let e = b.err().unwrap().to_string();
        assert!(e.contains("`data.promo.engine` is reserved"), "{e}");
    }

    #[test]
    fn load_errors_keep_their_cause() {
        use crate::error_chain::ErrorChain;
        use std::error::Error as _;

        // A data file regorus cannot parse: its error is the source, after the file.
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            ("promo/data.json", "{not json"),
        ]);
        let err = b.err().unwrap();
        assert!(matches!(err, PolicyError::DataParse { .. }), "{err:?}");
        assert_eq!(err.to_string(), "data file `promo/data.json`");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.starts_with("data file `promo/data.json`: "),
            "{chain}"
        );
        assert!(
            chain.len() > "data file `promo/data.json`: ".len(),
            "{chain}"
        );

        // A manifest that is not JSON: the manifest's error, then serde's.
        let (d, b) = bundle(&[("promo/decision.rego", DECISION), (".manifest", "{")]);
        let err = b.err().unwrap();
        let manifest = err.source().unwrap();
        assert!(matches!(
            manifest.downcast_ref::<ManifestError>(),
            Some(ManifestError::NotJson(_))
        ));
        let json = manifest.source().unwrap();
        assert!(json.downcast_ref::<serde_json::Error>().is_some(), "{json}");
        assert_eq!(
            ErrorChain(&err).to_string(),
            format!(
                "bundle `{}`: `.manifest` is not JSON: {json}",
                d.path().display()
            )
        );

        // Recursion: the cycle is the source, said once.
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            ("p/f.rego", "package p\nf(x) := f(x)\n"),
        ]);
        let err = b.err().unwrap();
        assert!(matches!(err, PolicyError::Recursion { .. }), "{err:?}");
        let chain = ErrorChain(&err).to_string();
        assert!(
            chain.ends_with(
                "recursion is not allowed (it would exhaust the stack): data.p.f -> data.p.f"
            ),
            "{chain}"
        );
    }

    #[test]
    fn package_paths_in_either_spelling() {
        let segs = |t: &str| package_segments(t).map(|v| v.join("/"));
        assert_eq!(segs("promo.rules.a").as_deref(), Some("promo/rules/a"));
        assert_eq!(segs("promo[\"rules\"].a").as_deref(), Some("promo/rules/a"));
        assert_eq!(
            segs("promo.rules[\"my-rules\"].x").as_deref(),
            Some("promo/rules/my-rules/x")
        );
        assert_eq!(segs("promo"), Some("promo".into()));
        assert_eq!(segs("promo.rules[ \"a\" ]"), None);
        assert_eq!(segs("promo..x"), None);
        assert_eq!(segs("promo[\"a b\"]"), None);
    }

    #[test]
    fn vm_and_interpreter_agree_and_both_read_data() {
        // The shape of the shipped entry point (the VM compiler refuses some others,
        // e.g. `some name; some v in data.promo.rules[name].deny` in one body).
        let decision = "package promo\ndeny contains v if {\n\tsome name\n\td := data.promo.rules[name].deny\n\tsome v in d\n}\ndecision := {\"allow\": count(deny) == 0, \"deny\": [v | some v in deny], \"warn\": []}\n";
        let (_d, b) = bundle(&[
            ("promo/decision.rego", decision),
            (
                "promo/rules/x.rego",
                "package promo.rules.x\ndeny contains {\"id\": \"x\", \"msg\": data.promo.settings.m} if input.bad\n",
            ),
            ("promo/data.json", r#"{"settings": {"m": "configured"}}"#),
        ]);
        let b = b.unwrap();
        assert_eq!(b.vm_status(), Ok(()));
        for bad in [true, false] {
            let input = regorus::Value::from_json_str(&format!(r#"{{"bad": {bad}}}"#)).unwrap();
            let on_vm = evaluate_vm(&mut b.decision_vm().unwrap(), input.clone()).unwrap();
            let on_interpreter = evaluate(&mut b.evaluator(), input).unwrap();
            assert_eq!(on_vm, on_interpreter);
            assert_eq!(on_vm.allow, !bad);
        }
    }

    #[test]
    fn a_bundle_the_vm_cannot_compile_runs_on_the_interpreter() {
        // `with` outside a test: the VM compiler refuses it, the interpreter does not.
        let (_d, b) = bundle(&[(
            "promo/decision.rego",
            "package promo\nd := input.x\ndecision := {\"allow\": v, \"deny\": [], \"warn\": []} if { v := d with input.x as true }\n",
        )]);
        let b = b.unwrap();
        let why = b.vm_status().unwrap_err();
        assert!(why.contains("with"), "{why}");
        assert!(
            b.lints()[0]
                .message
                .contains("decisions run on the interpreter"),
            "the fallback is visible: {:?}",
            b.lints()
        );
        assert!(b.decision_vm().is_none());
        let out = evaluate(&mut b.evaluator(), regorus::Value::new_object()).unwrap();
        assert!(out.allow);
    }

    #[test]
    fn a_policy_past_the_time_limit_is_an_error_on_the_vm_too() {
        // 2000^3 iterations: far past the limit on any machine.
        let slow = "package promo\nn := count([1 | some a in data.xs; some b in data.xs; some c in data.xs])\ndecision := {\"allow\": n > 0, \"deny\": [], \"warn\": []}\n";
        let xs = serde_json::json!({"xs": (0..2000).collect::<Vec<u32>>()}).to_string();
        let (_d, b) = bundle(&[("promo/decision.rego", slow), ("data.json", &xs)]);
        let b = b.unwrap();
        let mut vm = b.decision_vm().expect("compiles for the VM");
        let err = evaluate_vm(&mut vm, regorus::Value::new_object()).unwrap_err();
        assert!(matches!(err, PolicyError::Runtime(_)), "{err}");
        let err = evaluate(&mut b.evaluator(), regorus::Value::new_object()).unwrap_err();
        assert!(matches!(err, PolicyError::Runtime(_)), "{err}");
    }

    #[test]
    fn http_send_is_refused_with_file_and_line() {
        let (_d, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            (
                "promo/net.rego",
                "package promo.rules.net\n# http.send in a comment is fine\nx := http.send({\"url\": \"http://x\"})\n",
            ),
        ]);
        let err = b.unwrap_err().to_string();
        assert!(err.contains("promo/net.rego:3:"), "{err}");
        assert!(err.contains("`http.send` is refused"), "{err}");
    }

    #[test]
    fn parse_error_names_file_and_line() {
        let (_d, b) = bundle(&[("promo/decision.rego", "package promo\n\ndecision := {\n")]);
        let err = b.unwrap_err().to_string();
        assert!(err.contains("promo/decision.rego:"), "{err}");
    }

    #[test]
    fn digest_changes_with_content_but_not_with_tests() {
        let (_d1, a) = bundle(&[("promo/decision.rego", DECISION)]);
        let (_d2, b) = bundle(&[
            ("promo/decision.rego", DECISION),
            (
                "promo/decision_test.rego",
                "package promo_test\ntest_x if true\n",
            ),
        ]);
        let (_d3, c) = bundle(&[("promo/decision.rego", &format!("{DECISION}\n"))]);
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.digest(), b.digest());
        assert_ne!(a.digest(), c.digest());
        assert_eq!(b.tests().len(), 1);
    }

    #[test]
    fn runtime_error_is_an_error_not_an_allow() {
        let (_d, b) = bundle(&[(
            "promo/decision.rego",
            "package promo\ndecision := {\"allow\": true, \"deny\": [], \"warn\": []} if input.x == 1\ndecision := {\"allow\": false, \"deny\": [], \"warn\": []} if input.x == 1\n",
        )]);
        let b = b.unwrap();
        let mut e = b.evaluator();
        let input = regorus::Value::from_json_str(r#"{"x": 1}"#).unwrap();
        assert!(evaluate(&mut e, input).is_err());
    }

    #[test]
    fn undefined_decision_is_an_error() {
        let (_d, b) = bundle(&[(
            "promo/decision.rego",
            "package promo\ndecision := {\"allow\": true} if input.never\n",
        )]);
        let mut e = b.unwrap().evaluator();
        let err = evaluate(&mut e, regorus::Value::new_object()).unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
    }

    #[test]
    fn deny_entry_without_id_still_denies() {
        let out = read_outcome(
            &regorus::Value::from_json_str(r#"{"allow": true, "deny": [{"msg": "x"}]}"#).unwrap(),
        )
        .unwrap();
        assert_eq!(out.deny[0].id, "policy.malformed_violation");
    }
}

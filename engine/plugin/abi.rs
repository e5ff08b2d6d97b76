//! ABI v1 between host and plugin (see `plugins/ABI.md`): the exports a module must have, how
//! the input is laid out and how the result is validated; never runs wasm and never trusts a
//! value the guest produced.

use wasmtime::{ExternType, FuncType, Module, ModuleExport, ValType};

use super::{PluginOutput, PluginViolation};

/// The value `promo_abi_version()` must return for this ABI.
pub const ABI_VERSION: i32 = 1;

/// Export: the guest's linear memory.
pub const EXPORT_MEMORY: &str = "memory";
/// Export: `alloc(len: i32) -> i32`, room for the input.
pub const EXPORT_ALLOC: &str = "alloc";
/// Export: `dealloc(ptr: i32, len: i32)`; required, though v1 hosts drop the whole
/// instance instead of calling it.
pub const EXPORT_DEALLOC: &str = "dealloc";
/// Export: `check(ptr: i32, len: i32) -> i64`, result pointer high 32 bits, length low 32.
pub const EXPORT_CHECK: &str = "check";
/// Export: `promo_abi_version() -> i32`.
pub const EXPORT_ABI_VERSION: &str = "promo_abi_version";
/// Optional export: `_initialize()`, called once per instance before anything else.
pub const EXPORT_INITIALIZE: &str = "_initialize";

/// Export handles resolved once per module, so a check looks them up by index, not name.
#[derive(Clone)]
pub(crate) struct Exports {
    pub memory: ModuleExport,
    pub alloc: ModuleExport,
    pub check: ModuleExport,
    pub abi_version: ModuleExport,
    pub initialize: Option<ModuleExport>,
}

#[derive(Clone, Copy)]
enum Ty {
    I32,
    I64,
}

fn ty_matches(v: &ValType, t: Ty) -> bool {
    match t {
        Ty::I32 => matches!(v, ValType::I32),
        Ty::I64 => matches!(v, ValType::I64),
    }
}

fn sig_matches(f: &FuncType, params: &[Ty], results: &[Ty]) -> bool {
    f.params().len() == params.len()
        && f.results().len() == results.len()
        && f.params().zip(params).all(|(v, t)| ty_matches(&v, *t))
        && f.results().zip(results).all(|(v, t)| ty_matches(&v, *t))
}

fn sig_text(params: &[Ty], results: &[Ty]) -> String {
    let name = |t: &Ty| match t {
        Ty::I32 => "i32",
        Ty::I64 => "i64",
    };
    let p: Vec<_> = params.iter().map(name).collect();
    let r: Vec<_> = results.iter().map(name).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// Checks a compiled module against ABI v1: no imports, the required exports with the
/// right signatures. Returns the export handles, or a sentence saying what is wrong.
pub(crate) fn check_module(module: &Module) -> Result<Exports, String> {
    if let Some(import) = module.imports().next() {
        return Err(format!(
            "imports `{}.{}`, but plugins are granted no imports, WASI included",
            import.module(),
            import.name()
        ));
    }
    let func = |name: &str, params: &[Ty], results: &[Ty]| -> Result<ModuleExport, String> {
        match module.get_export(name) {
            None => Err(format!("does not export `{name}`")),
            Some(ExternType::Func(f)) if sig_matches(&f, params, results) => module
                .get_export_index(name)
                .ok_or_else(|| format!("does not export `{name}`")),
            Some(_) => Err(format!(
                "exports `{name}` with the wrong type (expected a function {})",
                sig_text(params, results)
            )),
        }
    };
    let memory = match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => module
            .get_export_index(EXPORT_MEMORY)
            .ok_or_else(|| format!("does not export `{EXPORT_MEMORY}`"))?,
        Some(ExternType::Memory(_)) => {
            return Err(format!("exports `{EXPORT_MEMORY}` as a 64-bit or shared memory; ABI v1 needs a plain 32-bit memory"))
        }
        Some(_) => return Err(format!("exports `{EXPORT_MEMORY}`, but not as a memory")),
        None => return Err(format!("does not export `{EXPORT_MEMORY}`")),
    };
    let alloc = func(EXPORT_ALLOC, &[Ty::I32], &[Ty::I32])?;
    func(EXPORT_DEALLOC, &[Ty::I32, Ty::I32], &[])?;
    let check = func(EXPORT_CHECK, &[Ty::I32, Ty::I32], &[Ty::I64])?;
    let abi_version = func(EXPORT_ABI_VERSION, &[], &[Ty::I32])?;
    let initialize = match module.get_export(EXPORT_INITIALIZE) {
        None => None,
        Some(_) => Some(func(EXPORT_INITIALIZE, &[], &[])?),
    };
    Ok(Exports {
        memory,
        alloc,
        check,
        abi_version,
        initialize,
    })
}

/// Splits `check`'s packed result into (pointer, length).
pub fn unpack_result(packed: i64) -> (u32, u32) {
    let bits = packed as u64;
    ((bits >> 32) as u32, bits as u32)
}

/// Packs (pointer, length) as `check` returns them.
pub fn pack_result(ptr: u32, len: u32) -> i64 {
    (((ptr as u64) << 32) | len as u64) as i64
}

/// The input's JSON text in pieces, so the request and verified facts are serialized
/// once per decision and copied straight into each plugin's memory.
///
/// Layout: `{"request":R,"verified":V,"config":C,"environment":E}`.
pub(crate) struct InputParts<'a> {
    pub request: &'a [u8],
    pub verified: &'a [u8],
    pub config: &'a [u8],
    pub environment: &'a [u8],
}

impl InputParts<'_> {
    fn pieces(&self) -> [&[u8]; 9] {
        [
            b"{\"request\":",
            self.request,
            b",\"verified\":",
            self.verified,
            b",\"config\":",
            self.config,
            b",\"environment\":",
            self.environment,
            b"}",
        ]
    }

    /// Total length in bytes.
    pub fn len(&self) -> usize {
        self.pieces().iter().map(|p| p.len()).sum()
    }

    /// Writes the input into `dst`, which must be exactly [`Self::len`] bytes.
    pub fn write_to(&self, dst: &mut [u8]) {
        let mut at = 0;
        for piece in self.pieces() {
            let end = at + piece.len();
            if let Some(slot) = dst.get_mut(at..end) {
                slot.copy_from_slice(piece);
            }
            at = end;
        }
    }
}

/// Why a plugin's result is not a valid ABI v1 result: a sentence fragment after
/// "plugin `<name>`". The JSON parser's error is the `source`, not in the message.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The bytes are not JSON.
    #[error("returned a result that is not JSON")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not `{"ok": bool, "violations": [...], "facts": {...}}` (our own words).
    #[error("returned {0}")]
    Shape(String),
}

/// Validates a result against ABI v1 and converts it.
///
/// `ok` is required and boolean; `violations`, when present, is an array of
/// `{"id": non-empty string, "msg": string}`; `facts`, when present, is an object.
/// Other fields are ignored. `ok: true` with violations is contradictory and refused.
pub fn parse_output(bytes: &[u8]) -> Result<PluginOutput, OutputError> {
    use serde_json::Value;
    let shape = |what: String| OutputError::Shape(what);
    let value: Value = serde_json::from_slice(bytes).map_err(OutputError::NotJson)?;
    let Value::Object(mut obj) = value else {
        return Err(shape("a result that is not a JSON object".into()));
    };
    let ok = match obj.get("ok") {
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(shape("a result whose `ok` is not a boolean".into())),
        None => return Err(shape("a result without `ok`".into())),
    };
    let violations = match obj.remove("violations") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let Value::Object(mut v) = item else {
                    return Err(shape(format!("`violations[{i}]` that is not an object")));
                };
                let id = match v.remove("id") {
                    Some(Value::String(s)) if !s.is_empty() => s,
                    _ => {
                        return Err(shape(format!(
                            "`violations[{i}].id` that is not a non-empty string"
                        )))
                    }
                };
                let msg = match v.remove("msg") {
                    Some(Value::String(s)) => s,
                    _ => return Err(shape(format!("`violations[{i}].msg` that is not a string"))),
                };
                out.push(PluginViolation { id, msg });
            }
            out
        }
        Some(_) => return Err(shape("`violations` that is not an array".into())),
    };
    let facts = match obj.remove("facts") {
        None => Value::Object(serde_json::Map::new()),
        Some(f @ Value::Object(_)) => f,
        Some(_) => return Err(shape("`facts` that is not an object".into())),
    };
    if ok && !violations.is_empty() {
        return Err(shape(format!(
            "`ok: true` together with {} violation(s)",
            violations.len()
        )));
    }
    Ok(PluginOutput {
        ok,
        violations,
        facts,
    })
}

//! The pipeline: `Engine` holds what is built once and shared, `Evaluator` runs one
//! request through the stages in order; this is the only module that knows the order.

use std::path::PathBuf;
use std::sync::Arc;

use time::OffsetDateTime;

use serde::{Deserialize, Serialize};

use crate::attest::cache::VerifyCache;
use crate::attest::keys::SigningKey;
use crate::attest::{AttestError, TrustStore, Verified};
use crate::decision::{
    canonical_json, combine, plugin_findings, Decision, EngineRef, PluginFindings, PolicyRef,
    StageResults,
};
use crate::digest::DigestSet;
use crate::input::time::{format_time, TimeError};
use crate::plugin::{HostOptions, PluginError, PluginHost, PluginOutcome};
use crate::policy::{self, data_path, data_ref, PolicyBundle, PolicyError};
use crate::request::{PromotionRequest, RequestError};
use crate::sign::{
    self, decision_statement, vsa_statement, SignError, Signer, DEV_SIGNING_KEY_PEM,
};

/// Any error that stops the engine from being built or a request from being read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused before evaluation.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The policy bundle could not be loaded.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The trust file could not be loaded. The reason is in the message and not also a
    /// `source`, so a printed error chain says it once.
    #[error("trust file `{path}`: {reason}")]
    Trust {
        /// The trust file.
        path: PathBuf,
        /// What the trust file loader refused (unreadable, a bad key, an unknown root).
        reason: AttestError,
    },
    /// The plugin directory or a manifest could not be loaded.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The signing key could not be loaded, or signing failed.
    #[error(transparent)]
    Sign(#[from] SignError),
    /// A time value could not be read.
    #[error(transparent)]
    Time(#[from] TimeError),
}

/// Where the engine's parts come from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The policy bundle directory.
    pub policies: PathBuf,
    /// The trust file; `None` means `<policies>/trust.json` (or `.yaml`) when it
    /// exists, else no trusted keys (every attestation is then rejected).
    pub trust: Option<PathBuf>,
    /// The decision-signing key (PKCS#8 PEM); `None` means the shipped dev key.
    pub signing_key: Option<PathBuf>,
    /// The plugin directory (`<dir>/<name>/plugin.toml`); a missing directory means
    /// no plugins.
    pub plugins: PathBuf,
    /// Where compiled plugin modules are cached between runs (`None`, the default: no
    /// disk cache).
    pub plugin_cache: Option<PathBuf>,
    /// Which regorus engine decides (the VM unless chosen otherwise).
    pub backend: policy::Backend,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            policies: PathBuf::from("policies"),
            trust: None,
            signing_key: None,
            plugins: PathBuf::from("plugins"),
            // No disk cache unless the caller names one: a library never reads HOME or
            // XDG on its own (the CLI resolves its default cache directory and passes it).
            plugin_cache: None,
            backend: policy::Backend::Vm,
        }
    }
}

impl EngineConfig {
    /// The trust file in use: `trust`, else `<policies>/trust.{json,yaml,yml}` if present.
    pub fn trust_path(&self) -> Option<PathBuf> {
        match &self.trust {
            Some(p) => Some(p.clone()),
            None => ["trust.json", "trust.yaml", "trust.yml"]
                .iter()
                .map(|n| self.policies.join(n))
                .find(|p| p.is_file()),
        }
    }

    /// The trust store alone (no bundle compiled): empty, with a warning, when there is
    /// no trust file.
    pub fn load_trust(&self) -> Result<TrustStore, Error> {
        match self.trust_path() {
            Some(p) => TrustStore::load(&p).map_err(|reason| Error::Trust { path: p, reason }),
            None => {
                tracing::warn!("no trust file: every attestation will be rejected");
                Ok(TrustStore::empty())
            }
        }
    }

    /// The config for a policy directory, with default trust and the dev key.
    pub fn with_policies(policies: impl Into<PathBuf>) -> Self {
        Self {
            policies: policies.into(),
            ..Self::default()
        }
    }
}

/// Everything built once and shared, immutable, across threads and requests.
#[derive(Debug)]
pub struct Engine {
    bundle: PolicyBundle,
    trust: TrustStore,
    trust_path: Option<PathBuf>,
    signer: Signer,
    plugins: PluginHost,
    /// Shared by every evaluator: an envelope carried by many requests (one
    /// provenance for one artifact across a batch) is verified once.
    verify_cache: VerifyCache,
}

impl Engine {
    /// Load and compile everything named in `config`; any failure here is an error
    /// (exit 2), never a decision.
    pub fn load(config: &EngineConfig) -> Result<Arc<Self>, Error> {
        let trust_path = config.trust_path();
        let trust = config.load_trust()?;
        let bundle = PolicyBundle::load_trusted(&config.policies, config.backend, &trust)?;
        let signer = match &config.signing_key {
            Some(p) => Signer::new(sign::load_signing_key(p)?, false),
            None => {
                let key = SigningKey::from_pkcs8_pem(DEV_SIGNING_KEY_PEM).map_err(|e| {
                    SignError::Key {
                        path: "<shipped dev key>".into(),
                        reason: e.to_string(),
                    }
                })?;
                Signer::new(key, true)
            }
        };
        let plugins = PluginHost::load(
            &config.plugins,
            &HostOptions {
                cache_dir: config.plugin_cache.clone(),
                ..HostOptions::default()
            },
        )?;
        Ok(Arc::new(Self {
            bundle,
            trust,
            trust_path,
            signer,
            plugins,
            verify_cache: VerifyCache::default(),
        }))
    }

    /// Log the bundle's lint warnings (faces that report them otherwise, like
    /// `test`, do not call this).
    pub fn log_lints(&self) {
        for lint in self.bundle.lints() {
            tracing::warn!("policy lint: {}/{lint}", self.bundle.uri());
        }
        match self.bundle.vm_status() {
            Ok(()) => tracing::debug!("decisions run on regorus's register VM"),
            Err(why) => tracing::debug!("decisions run on regorus's interpreter: {why}"),
        }
    }

    /// The loaded policy bundle.
    pub fn bundle(&self) -> &PolicyBundle {
        &self.bundle
    }

    /// The trust store attestations are verified against.
    pub fn trust(&self) -> &TrustStore {
        &self.trust
    }

    /// The trust file in use, if any.
    pub fn trust_path(&self) -> Option<&std::path::Path> {
        self.trust_path.as_deref()
    }

    /// The plugin host.
    pub fn plugins(&self) -> &PluginHost {
        &self.plugins
    }

    /// The attestation verification cache.
    pub fn verify_cache(&self) -> &VerifyCache {
        &self.verify_cache
    }

    /// The decision signer.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Sign the SLSA VSA v1 form of an evaluation ([`sign::vsa_statement`]) as a DSSE envelope.
    pub fn sign_vsa(&self, evaluation: &Evaluation) -> Result<serde_json::Value, SignError> {
        self.signer
            .sign_statement(&vsa_statement(&evaluation.decision, &evaluation.verified))
    }

    /// Sign an evaluation: the decision becomes the predicate of an in-toto Statement
    /// v1 (subject = the artifact) carrying the SLSA VSA fields, in a DSSE envelope.
    pub fn sign(&self, evaluation: &Evaluation) -> Result<SignedDecision, SignError> {
        let statement = decision_statement(&evaluation.decision, &evaluation.verified)?;
        let envelope = self.signer.sign_statement(&statement)?;
        Ok(SignedDecision {
            decision: evaluation.decision.clone(),
            envelope,
        })
    }

    /// A per-thread evaluator sharing this engine.
    pub fn evaluator(self: &Arc<Self>) -> Evaluator {
        Evaluator {
            engine: Arc::clone(self),
            rego: self.bundle.evaluator(),
            vm: self.bundle.decision_vm(),
            interpreter: false,
            coverage: false,
        }
    }
}

/// A decision and what was verified on the way to it.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The decision.
    pub decision: Decision,
    /// The attestation verification results policy saw as `input.verified`.
    pub verified: Verified,
}

/// A decision with its DSSE envelope: what `eval --format json` and the sidecar return.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedDecision {
    /// The decision, in the clear.
    pub decision: Decision,
    /// The DSSE envelope whose payload is the signed decision statement.
    pub envelope: serde_json::Value,
}

/// Per-thread evaluation state: a prepared clone of the Rego engine.
pub struct Evaluator {
    engine: Arc<Engine>,
    rego: regorus::Engine,
    /// The entry point on regorus's register VM, when the bundle compiles to it.
    vm: Option<regorus::rvm::vm::RegoVM>,
    /// Run decisions on the interpreter even when the VM is there (differential tests
    /// and benches compare the two).
    interpreter: bool,
    /// Collecting coverage, which only the interpreter does: decisions run there.
    coverage: bool,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("engine", &self.engine)
            .finish()
    }
}

impl Evaluator {
    /// The engine this evaluator belongs to.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Record which policy lines evaluations run (regorus line coverage, for
    /// `test --coverage`); off by default, as it slows evaluation down.
    pub fn set_coverage(&mut self, enable: bool) {
        self.rego.set_enable_coverage(enable);
        self.coverage = enable;
    }

    /// Decide on the regorus interpreter rather than the register VM (same results:
    /// a test checks every corpus case on both; the VM is about 3x faster).
    pub fn use_interpreter(&mut self, yes: bool) {
        self.interpreter = yes;
    }

    /// Whether decisions run on the register VM.
    pub fn uses_vm(&self) -> bool {
        self.vm.is_some() && !self.interpreter && !self.coverage
    }

    /// The lines covered so far, per policy file (see [`Evaluator::set_coverage`]).
    pub fn coverage_report(&self) -> Result<regorus::coverage::Report, PolicyError> {
        self.rego
            .get_coverage_report()
            .map_err(|e| PolicyError::Runtime(e.to_string()))
    }

    /// Parse, validate and evaluate request bytes.
    pub fn evaluate_bytes(
        &mut self,
        bytes: &[u8],
        now: OffsetDateTime,
    ) -> Result<Evaluation, RequestError> {
        let request = PromotionRequest::from_slice(bytes)?;
        Ok(self.evaluate(&request, now))
    }

    /// Evaluate and sign: the whole pipeline as the faces use it.
    pub fn decide(
        &mut self,
        request: &PromotionRequest,
        now: OffsetDateTime,
    ) -> Result<SignedDecision, SignError> {
        let evaluation = self.evaluate(request, now);
        self.engine.sign(&evaluation)
    }

    /// Run a validated request through every stage. Infallible by design: every
    /// failure past validation becomes a violation in a denied decision.
    pub fn evaluate(&mut self, request: &PromotionRequest, now: OffsetDateTime) -> Evaluation {
        let now_text = format_time(now);
        let Facts {
            verified,
            plugins,
            input,
        } = self.gather(request, &now_text);

        // Stage: policy.
        let input = regorus::Value::from(input);
        let uses_vm = self.uses_vm();
        let outcome = match &mut self.vm {
            Some(vm) if uses_vm => policy::evaluate_vm(vm, input),
            _ => policy::evaluate(&mut self.rego, input),
        };

        // Stage: decision.
        let PluginFindings {
            violations: plugin_violations,
            warnings: plugin_warnings,
            records: plugin_records,
        } = plugin_findings(&plugins);
        let verdict = combine(StageResults {
            policy: outcome,
            stage_violations: plugin_violations,
            stage_warnings: plugin_warnings,
        });
        let bundle = &self.engine.bundle;
        let decision = Decision {
            decision_id: uuid::Uuid::now_v7().to_string(),
            request_id: request.typed.id.clone(),
            artifact: request.typed.artifact.clone(),
            from: request.typed.from.clone(),
            to: request.typed.to.clone(),
            allowed: verdict.allowed,
            violations: verdict.violations,
            warnings: verdict.warnings,
            evaluated_at: now_text,
            input_digest: DigestSet::sha256_of(&canonical_json(&request.raw)),
            policy: PolicyRef {
                uri: bundle.uri().to_string(),
                digest: bundle.digest().into(),
                revision: bundle.revision().map(str::to_string),
                signed_by: bundle.signed_by().map(str::to_string),
            },
            plugins: plugin_records,
            engine: EngineRef::default(),
            // The schema admits only a well-formed `traceparent` here.
            trace: request
                .typed
                .trace
                .as_deref()
                .and_then(|t| crate::trace::TraceRef::from_traceparent(t).ok()),
            collected: None,
        };
        Evaluation { decision, verified }
    }
}

/// What the stages before policy established about a request.
struct Facts {
    verified: Verified,
    plugins: Vec<PluginOutcome>,
    /// The policy input: `{"request", "verified", "plugins", "now", "identities"}`.
    input: serde_json::Value,
}

impl Evaluator {
    /// The stages before policy: verify attestations, (run plugins,) build the input.
    fn gather(&mut self, request: &PromotionRequest, now_text: &str) -> Facts {
        // Stage: attestations. Claims become facts only here; what fails lands in
        // `rejected` with its reason, and policy decides what that means.
        let verified = self.engine.verify_cache.verify_attestations(
            &self.engine.trust,
            &request.typed.attestations,
            &request.typed.artifact.digest,
            &request.typed.to,
        );
        let verified_json = serde_json::to_value(&verified).unwrap_or_else(|e| {
            // INVARIANT: Verified is plain data and always serialises; if it ever did
            // not, policy sees a rejection rather than silently nothing.
            serde_json::json!({"attestations": [], "rejected": [{"index": 0, "reason": e.to_string()}]})
        });
        // Stage: plugins, each in a fresh sandbox; they see only verified facts.
        let plugins = self
            .engine
            .plugins
            .run(&request.typed.to, &request.raw, &verified_json);
        let plugins_json: serde_json::Map<String, serde_json::Value> = plugins
            .iter()
            .map(|o| (o.name.clone(), plugin_input(o)))
            .collect();
        let input = serde_json::json!({
            "request": request.raw,
            "verified": verified_json,
            "plugins": plugins_json,
            "now": now_text,
            // People's names as comparison keys (see `identity`): one person, one key.
            "identities": crate::identity::of_request(&request.raw, &verified.evidence.approvals),
        });
        Facts {
            verified,
            plugins,
            input,
        }
    }

    /// The policy input `evaluate` builds for `request` at `now` (attestations verified,
    /// plugins run): what benches and profiles hand to a bare regorus evaluation.
    pub fn policy_input(
        &mut self,
        request: &PromotionRequest,
        now: OffsetDateTime,
    ) -> serde_json::Value {
        self.gather(request, &format_time(now)).input
    }

    /// Evaluate any document of the bundle (`promo/decision`, `promo/decision/allow`,
    /// `promo/config`) over the same input `evaluate` builds: the OPA Data API.
    /// `Ok(None)` when the path is undefined for this input.
    pub fn query_data(
        &mut self,
        request: &PromotionRequest,
        now: OffsetDateTime,
        path: &str,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        self.query_data_with(request, now, path, QueryOptions::default())
            .map(|(value, _)| value)
    }

    /// [`Evaluator::query_data`] with OPA's per-query options, and where the time went.
    pub fn query_data_with(
        &mut self,
        request: &PromotionRequest,
        now: OffsetDateTime,
        path: &str,
        options: QueryOptions,
    ) -> Result<(Option<serde_json::Value>, QueryTimings), PolicyError> {
        let started = std::time::Instant::now();
        let Facts { input, .. } = self.gather(request, &format_time(now));
        let input = regorus::Value::from(input);
        let facts = started.elapsed();
        let started = std::time::Instant::now();
        self.set_strict_builtin_errors(options.strict_builtin_errors);
        let value = self.eval_path(input, path);
        // INVARIANT: pooled evaluators are lenient between calls (OPA's default), so a
        // strict query never leaks its strictness into the next request's evaluation.
        self.set_strict_builtin_errors(false);
        let timings = QueryTimings {
            facts,
            eval: started.elapsed(),
        };
        let value = value?;
        if value == regorus::Value::Undefined {
            return Ok((None, timings));
        }
        serde_json::to_value(&value)
            .map(|v| (Some(v), timings))
            .map_err(|e| PolicyError::Runtime(e.to_string()))
    }

    fn set_strict_builtin_errors(&mut self, strict: bool) {
        self.rego.set_strict_builtin_errors(strict);
        if let Some(vm) = &mut self.vm {
            vm.set_strict_builtin_errors(strict);
        }
    }

    /// `data.{path}` over `input`: undefined as `Value::Undefined`.
    fn eval_path(
        &mut self,
        input: regorus::Value,
        path: &str,
    ) -> Result<regorus::Value, PolicyError> {
        // The entry point itself (what admission controllers and OPA clients ask for
        // most) runs on the VM like every decision; any other path on the interpreter.
        let uses_vm = self.uses_vm();
        match &mut self.vm {
            Some(vm) if uses_vm && data_path(path) == policy::ENTRY_POINT => {
                policy::execute_vm(vm, input)
            }
            _ => {
                self.rego.set_input(input);
                let results = self
                    .rego
                    .eval_query(data_ref(path), false)
                    .map_err(|e| PolicyError::Runtime(e.to_string()))?;
                Ok(results
                    .result
                    .into_iter()
                    .next()
                    .and_then(|r| r.expressions.into_iter().next())
                    .map_or(regorus::Value::Undefined, |e| e.value))
            }
        }
    }
}

/// Per-query options of the Data API, as OPA's query parameters set them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// OPA's `?strict-builtin-errors`: a builtin given bad arguments fails the query
    /// instead of being undefined (the lenient default, as in OPA).
    pub strict_builtin_errors: bool,
}

/// Where a Data API query's time went, measured, for OPA's `?metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryTimings {
    /// Verifying attestations, running plugins and building the input.
    pub facts: std::time::Duration,
    /// Evaluating the document in Rego.
    pub eval: std::time::Duration,
}

/// `input.plugins.<name>` for Rego: what the plugin said, or its failure as a
/// violation (so a policy reading it never mistakes a crash for a pass).
fn plugin_input(o: &PluginOutcome) -> serde_json::Value {
    match &o.result {
        Ok(r) => serde_json::json!({"ok": r.ok, "violations": r.violations, "facts": r.facts}),
        Err(f) => serde_json::json!({
            "ok": false,
            "violations": [{"id": f.kind.violation_id(), "msg": f.message}],
            "facts": {},
            "error": f.message,
        }),
    }
}

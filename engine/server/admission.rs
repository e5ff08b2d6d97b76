//! The Kubernetes validating webhook: every image of a Pod or workload must be pinned by
//! digest and covered by a verified, signed decision that allowed that digest into the
//! environment the admission config gives its namespace; it never admits on a doubt, an
//! unknown kind, a namespace without an environment or a failed check.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use axum::extract::{Path as AxumPath, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::admission_config::{AdmissionConfig, DecisionRules, NamespacePolicy, RolloutMode};
use super::audit::Unrecorded;
use super::errors::{json_response, ApiError};
use super::rollout::{self, AdmissionEvent, GlassRule, Outcome};
use super::routes::{fail, pretty, read_body};
use super::{Loaded, Server, ServerError, MAX_ADMISSION_BODY_BYTES};
use crate::attest::PublicKey;
use crate::digest::{DigestError, Sha256};
use crate::evaluator::Engine;
use crate::request::RequestError;
use crate::sign::{verify_decision_envelope, DECISION_PREDICATE_TYPE, MAX_DECISION_FILE_BYTES};

/// The annotation that carries signed decisions: a JSON array of DSSE envelopes, on the
/// object or on its pod template.
pub const DECISIONS_ANNOTATION: &str = "promo-policy.dev/decisions";

/// The Rego package whose `deny` rules may add reasons to refuse an object.
pub const ADMISSION_PACKAGE: &str = "data.promo.admission";

/// The optional admission rule: a set of strings or `{"msg": ...}` objects.
const ADMISSION_DENY_RULE: &str = "data.promo.admission.deny";

/// The only AdmissionReview version served (what `admissionReviewVersions: ["v1"]` sends).
const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// Most decisions one object's annotations may carry. One per container is typical and a
/// pod rarely has more than a dozen; each costs a signature check, so a cap keeps one
/// review from buying unbounded CPU.
pub const MAX_ANNOTATION_DECISIONS: usize = 64;

/// Most files read from `--decisions DIR`. The indexes live in memory and are rebuilt on
/// every reload; ten thousand decisions is years of promotions for a few environments.
pub const MAX_DECISION_FILES: usize = 10_000;

/// The route label of `/v1/admission` and `/v1/admission/{mode}` in metrics.
pub(super) const ROUTE_ADMISSION: &str = "admission";

/// The keys trusted to sign promotion decisions into `environment`.
pub(super) fn decision_keys(engine: &Engine, environment: &str) -> Vec<PublicKey> {
    engine
        .trust()
        .keys()
        .iter()
        .filter(|k| k.grants.trusts_predicate_type(DECISION_PREDICATE_TYPE))
        .filter(|k| k.grants.trusts_environment(environment))
        .map(|k| k.key.clone())
        .collect()
}

/// What admission relies on in one environment: the keys trusted to sign decisions into
/// it, and the decisions from `--decisions DIR` that allowed a digest into it.
#[derive(Debug, Clone, Default)]
pub struct EnvironmentDecisions {
    /// Keys trusted to sign promotion decisions into the environment.
    pub keys: Vec<PublicKey>,
    /// Allowed decisions into the environment, verified at load.
    pub index: DecisionIndex,
}

/// A verified decision that allowed one digest into an environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedDecision {
    /// The decision's id.
    pub decision_id: String,
    /// The artifact name it was made for.
    pub name: String,
    /// Where it came from (a file, or the annotation).
    pub source: String,
    /// When it was made (`evaluatedAt`); `None` when absent or unreadable, which a
    /// sidecar with a maximum decision age refuses.
    pub evaluated_at: Option<time::OffsetDateTime>,
}

/// Check that `envelope` is a decision signed by one of `keys` (by `rules.threshold` of
/// them) that allowed an artifact into `environment`, made by an allowed bundle; returns
/// the artifact's sha256 (lowercase hex) and the decision.
pub fn verify_allowing_decision(
    envelope: &Value,
    keys: &[PublicKey],
    environment: &str,
    source: &str,
    rules: &DecisionRules,
) -> Result<(Sha256, AllowedDecision), String> {
    // The one verifier every reader of a signed decision uses (`verify`, `audit verify`,
    // admission): signature by a trusted key, decision predicate type, the predicate read
    // as a typed decision, and its artifact (name and every digest) among the subjects.
    let decision = verify_decision_envelope(envelope, keys).map_err(|e| e.to_string())?;
    let id = decision.decision_id;
    if !decision.allowed {
        return Err(format!("decision `{id}` did not allow the promotion"));
    }
    if decision.to != environment {
        return Err(format!(
            "decision `{id}` allowed a promotion into `{}`, not `{environment}`",
            decision.to
        ));
    }
    if rules.threshold > 1 {
        let signers = trusted_signers(envelope, keys);
        if signers < rules.threshold {
            return Err(format!(
                "decision `{id}` is signed by {signers} trusted decision key(s); the admission config asks for {}",
                rules.threshold
            ));
        }
    }
    let bundle = decision.policy.digest.sha256();
    if let Some(why) = rules.bundle_refusal(&id, bundle) {
        return Err(why);
    }
    let digest = decision
        .artifact
        .digest
        .sha256()
        .and_then(|h| Sha256::parse_hex(h).ok())
        .ok_or_else(|| format!("decision `{id}` carries no sha256 artifact digest"))?;
    Ok((
        digest,
        AllowedDecision {
            decision_id: id,
            name: decision.artifact.name,
            source: source.to_string(),
            evaluated_at: crate::input::parse_time(&decision.evaluated_at).ok(),
        },
    ))
}

/// How many distinct keys of `keys` made a valid signature over the envelope (0 when it
/// does not parse: the caller has verified it already).
fn trusted_signers(envelope: &Value, keys: &[PublicKey]) -> usize {
    let Ok(env) = crate::attest::dsse::Envelope::from_json(envelope) else {
        return 0;
    };
    let pae = env.pae();
    let mut signers: Vec<&str> = keys
        .iter()
        .filter(|k| env.signatures.iter().any(|s| k.verify(&pae, &s.sig)))
        .map(PublicKey::keyid)
        .collect();
    signers.sort();
    signers.dedup();
    signers.len()
}

/// Allowed decisions into one environment by artifact sha256, read from
/// `--decisions DIR` and verified once per load.
#[derive(Debug, Clone, Default)]
pub struct DecisionIndex {
    by_digest: HashMap<Sha256, AllowedDecision>,
}

impl DecisionIndex {
    /// Read every `*.json` file directly in `dir` (one envelope, or an array of them)
    /// once, and index each envelope under the environment its decision names, verified
    /// with that environment's keys (`keys_by_environment`: one entry per environment in
    /// use; each gets an index, empty or not). Envelopes that do not verify as an allow
    /// into an environment in use are logged and left out. An unreadable directory is an
    /// error; a bad file is not.
    pub fn load_per_environment(
        dir: &Path,
        keys_by_environment: &BTreeMap<String, Vec<PublicKey>>,
        rules: &DecisionRules,
    ) -> Result<BTreeMap<String, DecisionIndex>, ServerError> {
        let files = decision_files(dir)?;
        let mut indexes: BTreeMap<String, DecisionIndex> = keys_by_environment
            .keys()
            .map(|env| (env.clone(), DecisionIndex::default()))
            .collect();
        let mut rejected = 0usize;
        for file in &files {
            let shown = file.display().to_string();
            let envelopes = match read_envelopes(file) {
                Ok(v) => v,
                Err(reason) => {
                    tracing::warn!(file = %shown, %reason, "decision file skipped");
                    rejected += 1;
                    continue;
                }
            };
            for (i, envelope) in envelopes.iter().enumerate() {
                let source = format!("{shown}#{i}");
                match verify_into_its_environment(envelope, keys_by_environment, &source, rules) {
                    Ok((env, (digest, decision))) => {
                        if let Some(index) = indexes.get_mut(&env) {
                            index.by_digest.entry(digest).or_insert(decision);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(%source, %reason, "decision not accepted");
                        rejected += 1;
                    }
                }
            }
        }
        for (env, index) in &indexes {
            tracing::info!(
                dir = %dir.display(),
                environment = %env,
                accepted = index.by_digest.len(),
                "decision directory loaded"
            );
        }
        tracing::info!(dir = %dir.display(), rejected, "decisions not accepted into any environment");
        if indexes.is_empty() {
            tracing::warn!(dir = %dir.display(), rejected, "--decisions, but no namespace has an environment: no decision can apply");
        }
        Ok(indexes)
    }

    /// The allowing decision for an artifact sha256, if any.
    pub fn get(&self, sha256: &Sha256) -> Option<&AllowedDecision> {
        self.by_digest.get(sha256)
    }

    /// How many digests have an allowing decision.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// Whether no decision was accepted.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

/// The `*.json` files directly in `dir` (hidden ones left out), sorted, at most
/// [`MAX_DECISION_FILES`] of them.
fn decision_files(dir: &Path) -> Result<Vec<PathBuf>, ServerError> {
    let err = |reason: String| ServerError::Decisions {
        path: dir.to_path_buf(),
        reason,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| err(e.to_string()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            !hidden && p.extension().is_some_and(|e| e == "json") && p.is_file()
        })
        .collect();
    files.sort();
    if files.len() > MAX_DECISION_FILES {
        return Err(err(format!(
            "{} decision files; the limit is {MAX_DECISION_FILES}",
            files.len()
        )));
    }
    Ok(files)
}

/// Verify `envelope` as an allow into the environment its decision names, with that
/// environment's keys; the environment comes back with the digest and decision. The
/// unverified `to` only picks which keys verify the envelope; the verification then checks
/// `to` again, signed.
fn verify_into_its_environment(
    envelope: &Value,
    keys_by_environment: &BTreeMap<String, Vec<PublicKey>>,
    source: &str,
    rules: &DecisionRules,
) -> Result<(String, (Sha256, AllowedDecision)), String> {
    let target = claimed_environment(envelope);
    match target
        .as_deref()
        .and_then(|to| keys_by_environment.get_key_value(to))
    {
        Some((env, keys)) => verify_allowing_decision(envelope, keys, env, source, rules)
            .map(|allowed| (env.clone(), allowed)),
        None => Err(match target {
            Some(to) => format!(
                "it is a decision into `{}`, an environment no namespace is admitted against",
                crate::textsafe::printable(&to)
            ),
            None => "it is not a signed promotion decision (no readable `predicate.to`)".into(),
        }),
    }
}

/// The environment an envelope's decision claims to allow into (`predicate.to`), read
/// without verifying anything.
fn claimed_environment(envelope: &Value) -> Option<String> {
    let statement = crate::audit::envelope_statement(envelope)?;
    statement
        .pointer("/predicate/to")?
        .as_str()
        .map(str::to_string)
}

fn read_envelopes(file: &Path) -> Result<Vec<Value>, String> {
    let bytes = crate::fsio::read_capped(file, MAX_DECISION_FILE_BYTES).map_err(|e| e.reason())?;
    match serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string())? {
        Value::Array(items) => Ok(items),
        obj @ Value::Object(_) => Ok(vec![obj]),
        _ => Err("not a DSSE envelope or an array of them".into()),
    }
}

/// The parts of an AdmissionReview the webhook reads, checked for shape.
struct Review {
    uid: String,
    /// The whole review, the Rego input of `data.promo.admission.deny`.
    full: Value,
}

/// Parse and shape-check an AdmissionReview; a review the webhook cannot even answer
/// (no `request`, no `uid`) is a 400, which the API server treats as a failure.
fn parse_review(body: &[u8]) -> Result<Review, ApiError> {
    let full: Value = serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        let reason = match text.rfind(" at line ") {
            Some(i) => text[..i].to_string(),
            None => text,
        };
        ApiError::Request(RequestError::Malformed {
            line: e.line(),
            column: e.column(),
            reason,
        })
    })?;
    let invalid = |pointer: &str, message: String| ApiError::Invalid {
        pointer: pointer.to_string(),
        message,
    };
    let Some(obj) = full.as_object() else {
        return Err(invalid(
            "",
            "an AdmissionReview must be a JSON object".into(),
        ));
    };
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if api_version != REVIEW_API_VERSION {
        return Err(invalid(
            "/apiVersion",
            format!("`apiVersion` must be `{REVIEW_API_VERSION}`, got `{api_version}`"),
        ));
    }
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind != "AdmissionReview" {
        return Err(invalid(
            "/kind",
            format!("`kind` must be `AdmissionReview`, got `{kind}`"),
        ));
    }
    let Some(request) = obj.get("request").and_then(Value::as_object) else {
        return Err(invalid(
            "/request",
            "the AdmissionReview has no `request` object".into(),
        ));
    };
    let uid = match request.get("uid") {
        Some(Value::String(uid)) if !uid.is_empty() => uid.clone(),
        _ => {
            return Err(invalid(
                "/request/uid",
                "the AdmissionReview request has no `uid` to answer".into(),
            ))
        }
    };
    Ok(Review { uid, full })
}

/// The webhook's answer to one review.
#[derive(Debug)]
struct AdmissionVerdict {
    uid: String,
    allowed: bool,
    /// What the review was about, for messages: `Deployment shop/web`.
    subject: String,
    /// Why `enforce` refuses it (empty: nothing wrong).
    reasons: Vec<String>,
    /// Each image and what was found for it, in container order.
    images: Vec<String>,
    /// The decisions that vouched for the images.
    decision_ids: Vec<String>,
    /// Kubernetes' own dry run (`kubectl --dry-run=server`): no side effects.
    dry_run: bool,
    /// The review's namespace.
    namespace: Option<String>,
    /// What the admission config says for that namespace.
    policy: NamespacePolicy,
    /// The mode applied: the stricter of the route's and the config's.
    mode: RolloutMode,
    /// What the gate did.
    outcome: Outcome,
    /// The response's `warnings`.
    warnings: Vec<String>,
}

/// Longest `images` audit annotation, in bytes: the API server stores audit annotations
/// in every audit event, so a pod of hundreds of containers must not bloat them.
const MAX_IMAGES_ANNOTATION_BYTES: usize = 4096;

impl AdmissionVerdict {
    fn to_review(&self) -> Value {
        let mut response = Map::new();
        response.insert("uid".into(), Value::String(self.uid.clone()));
        response.insert("allowed".into(), Value::Bool(self.allowed));
        if !self.allowed {
            let message = format!(
                "promo-policy refused {} for environment `{}`: {}",
                self.subject,
                self.policy.environment.as_deref().unwrap_or("<none>"),
                self.reasons.join("; ")
            );
            response.insert(
                "status".into(),
                json!({"code": 403, "reason": "Forbidden", "message": message}),
            );
        }
        if !self.warnings.is_empty() {
            response.insert("warnings".into(), json!(self.warnings));
        }
        let mut audit = Map::new();
        audit.insert("mode".into(), json!(self.mode.as_str()));
        if !self.decision_ids.is_empty() {
            audit.insert("decisions".into(), json!(self.decision_ids.join(",")));
        }
        if !self.images.is_empty() {
            let mut images = self.images.join("; ");
            if images.len() > MAX_IMAGES_ANNOTATION_BYTES {
                let mut cut = MAX_IMAGES_ANNOTATION_BYTES - 3;
                while !images.is_char_boundary(cut) {
                    cut -= 1;
                }
                images.truncate(cut);
                images.push_str("...");
            }
            audit.insert("images".into(), json!(images));
        }
        if let Outcome::BreakGlass(glass) = &self.outcome {
            audit.insert("breakGlassTicket".into(), json!(glass.ticket));
        }
        response.insert("auditAnnotations".into(), Value::Object(audit));
        json!({
            "apiVersion": REVIEW_API_VERSION,
            "kind": "AdmissionReview",
            "response": response,
        })
    }
}

/// Where the pod spec sits in an object of this kind, or `None` for a kind the webhook
/// does not know (refused: the webhook's rules should not send it).
fn pod_spec_pointer(group: &str, kind: &str) -> Option<&'static str> {
    match (group, kind) {
        ("", "Pod") => Some("/spec"),
        ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
        | ("", "ReplicationController")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

/// The image's sha256 when it is pinned (`name@sha256:<64 lowercase hex>`, a tag before
/// the digest allowed and ignored), else why not.
///
/// The reference is parsed with the distribution grammar (`oci-spec`'s `Reference`, the
/// grammar of `distribution/reference` that the kubelet and containerd use): anything it
/// does not parse is refused (a space, two `@`, an upper-case repository), so the digest
/// checked is the one the runtime will pull, never a suffix of something else.
pub fn pinned_digest(image: &str) -> Result<Sha256, String> {
    const HOW: &str = "pin it as `registry/name@sha256:<64 hex>`";
    let reference = oci_spec::distribution::Reference::try_from(image)
        .map_err(|e| format!("is not a valid image reference ({e}); {HOW}"))?;
    let Some(digest) = reference.digest() else {
        return Err(format!("is not pinned by digest; {HOW}"));
    };
    Sha256::parse_prefixed(digest).map_err(|e| match e {
        DigestError::NotSha256 => format!("digest `{digest}` is not a sha256 digest; {HOW}"),
        DigestError::BadHex => {
            format!("digest `{digest}` is not `sha256:` and 64 lowercase hex digits")
        }
    })
}

/// One image to check: which container list, the container's name, the image.
struct ContainerImage {
    section: &'static str,
    name: String,
    image: Option<String>,
}

fn containers(spec: &Map<String, Value>) -> Result<Vec<ContainerImage>, String> {
    let mut out = Vec::new();
    for (field, section) in [
        ("initContainers", "initContainer"),
        ("containers", "container"),
        ("ephemeralContainers", "ephemeralContainer"),
    ] {
        let items = match spec.get(field) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(items)) => items,
            Some(_) => return Err(format!("`{field}` is not a list")),
        };
        for (i, item) in items.iter().enumerate() {
            let name = item
                .get("name")
                .and_then(Value::as_str)
                .map_or_else(|| format!("#{i}"), str::to_string);
            let image = item
                .get("image")
                .and_then(Value::as_str)
                .map(str::to_string);
            out.push(ContainerImage {
                section,
                name,
                image,
            });
        }
    }
    Ok(out)
}

/// The decision envelopes in the annotation at `pointer`, verified: allowed digests, and
/// notes on the envelopes that were not accepted.
fn annotated_decisions(
    object: &Value,
    metadata_pointers: &[String],
    keys: &[PublicKey],
    environment: &str,
    rules: &DecisionRules,
    allowed: &mut HashMap<Sha256, AllowedDecision>,
    notes: &mut Vec<String>,
) {
    let key = DECISIONS_ANNOTATION.replace('~', "~0").replace('/', "~1");
    let mut seen = 0usize;
    for metadata in metadata_pointers {
        let pointer = format!("{metadata}/annotations/{key}");
        let Some(value) = object.pointer(&pointer) else {
            continue;
        };
        let Some(text) = value.as_str() else {
            notes.push(format!(
                "annotation `{DECISIONS_ANNOTATION}` at `{metadata}` is not a string"
            ));
            continue;
        };
        let envelopes = match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            Ok(obj @ Value::Object(_)) => vec![obj],
            Ok(_) | Err(_) => {
                notes.push(format!(
                    "annotation `{DECISIONS_ANNOTATION}` at `{metadata}` is not a JSON array of DSSE envelopes"
                ));
                continue;
            }
        };
        for (i, envelope) in envelopes.iter().enumerate() {
            if seen == MAX_ANNOTATION_DECISIONS {
                notes.push(format!(
                    "only the first {MAX_ANNOTATION_DECISIONS} annotated decisions were checked"
                ));
                return;
            }
            seen += 1;
            let source = format!("annotation at `{metadata}` #{i}");
            match verify_allowing_decision(envelope, keys, environment, &source, rules) {
                Ok((digest, decision)) => {
                    allowed.entry(digest).or_insert(decision);
                }
                Err(reason) => notes.push(format!("{source} not accepted: {reason}")),
            }
        }
    }
}

/// The optional Rego rules: `data.promo.admission.deny` over the AdmissionReview.
fn policy_reasons(loaded: &Loaded, review: &Value) -> Vec<String> {
    let mut rego = loaded.engine.bundle().evaluator();
    rego.set_input(regorus::Value::from(review.clone()));
    let value = match rego.eval_rule(ADMISSION_DENY_RULE.to_string()) {
        Ok(v) => v,
        // The package exists but defines no `deny`: nothing to add.
        Err(e) if e.to_string().contains("not a valid rule path") => return Vec::new(),
        // Fail closed: a broken admission policy refuses, with its error.
        Err(e) => return vec![format!("admission policy failed: {e}")],
    };
    if value == regorus::Value::Undefined {
        return Vec::new();
    }
    let items = match serde_json::to_value(&value) {
        Ok(Value::Array(items)) => items,
        Ok(other) => {
            return vec![format!(
                "`{ADMISSION_DENY_RULE}` must be a set, got `{other}`"
            )]
        }
        Err(e) => return vec![format!("admission policy result unreadable: {e}")],
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(msg) => format!("policy: {msg}"),
            Value::Object(obj) => {
                let msg = obj
                    .get("msg")
                    .and_then(Value::as_str)
                    .map_or_else(|| Value::Object(obj.clone()).to_string(), str::to_string);
                match obj.get("id").and_then(Value::as_str) {
                    Some(id) => format!("policy {id}: {msg}"),
                    None => format!("policy: {msg}"),
                }
            }
            other => format!("policy: {other}"),
        })
        .collect()
}

/// Why a decision is too old to admit on, if it is: made longer than `max_age` before
/// `now`, made more than [`CLOCK_SKEW`] after it, or with no readable time at all.
fn stale(
    decision: &AllowedDecision,
    now: time::OffsetDateTime,
    max_age: Option<std::time::Duration>,
) -> Option<String> {
    let max_age = max_age?;
    let id = &decision.decision_id;
    let Some(made) = decision.evaluated_at else {
        return Some(format!(
            "decision `{id}` has no readable `evaluatedAt`, so its age cannot be checked"
        ));
    };
    let age = now - made;
    if age < -CLOCK_SKEW {
        return Some(format!(
            "decision `{id}` was made at {}, after the sidecar's clock ({}): check the clocks",
            crate::input::format_time(made),
            crate::input::format_time(now)
        ));
    }
    (age > max_age).then(|| {
        format!(
            "decision `{id}` was made at {}, more than the maximum decision age ({}) ago: promote the artifact again",
            crate::input::format_time(made),
            human_duration(max_age)
        )
    })
}

/// `30d`, `12h`, `90m`, `45s`: the largest unit that divides it exactly.
fn human_duration(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// How far in the future a decision's time may be (clocks of two machines differ).
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// The sidecar's state and settings one review is judged with.
struct Judge<'a> {
    loaded: &'a Loaded,
    now: time::OffsetDateTime,
    max_age: Option<std::time::Duration>,
    /// The mode the webhook route asks for (`/v1/admission/{mode}`), if any.
    route_mode: Option<RolloutMode>,
    /// How admissions are recorded, when they are (`serve --audit`): break-glass needs it.
    audit: Option<crate::audit::RecordOptions>,
}

/// Judge one review: every branch that is not a clean pass gives a reason, and the mode
/// (and a break-glass) settles what the reasons do.
fn decide(judge: &Judge<'_>, review: &Review) -> AdmissionVerdict {
    let loaded = judge.loaded;
    let request = review.full.get("request").unwrap_or(&Value::Null);
    let header = ReviewHeader::of(request);
    let config: &AdmissionConfig = &loaded.admission;
    let policy = config.for_namespace(header.namespace);
    let mode = judge
        .route_mode
        .map_or(policy.mode, |route| route.stricter(policy.mode));
    let mut verdict = AdmissionVerdict {
        uid: review.uid.clone(),
        allowed: false,
        subject: header.subject(),
        reasons: Vec::new(),
        images: Vec::new(),
        decision_ids: Vec::new(),
        dry_run: header.dry_run,
        namespace: header.namespace.map(str::to_string),
        policy,
        mode,
        outcome: Outcome::Denied,
        warnings: Vec::new(),
    };
    let mut glass = None;
    let checked = match header.operation {
        // Nothing runs because of a delete, and CONNECT (exec, attach, port-forward)
        // starts no new image: only creates and updates can bring an image in.
        Some("DELETE" | "CONNECT") => Ok(Vec::new()),
        // These can bring an image in: check them against the namespace's environment.
        Some("CREATE" | "UPDATE") => match verdict.policy.environment.clone() {
            Some(environment) => match loaded.admission_environments.get(&environment) {
                Some(decisions) => header.workload().map(|(object, spec_pointer, images)| {
                    let pointers = metadata_pointers(spec_pointer);
                    glass = rollout::read_break_glass(
                        object,
                        &pointers,
                        &config.break_glass.annotation,
                    );
                    let target = Target {
                        environment: &environment,
                        decisions,
                    };
                    judge_images(judge, &target, object, &pointers, &images, &mut verdict)
                }),
                // INVARIANT: a generation loads keys for every environment its config
                // names; should one be missing, nothing can vouch for an image there.
                None => Err(format!(
                    "no decision keys are loaded for environment `{environment}`"
                )),
            },
            // No rule, default or flag names an environment for this namespace.
            None => Err(format!(
                "no environment is configured for {}, so no image can be admitted there: name one with `environment` in its admission config rule or at the config's top level, or start the sidecar with `--environment`",
                header
                    .namespace
                    .map_or_else(|| "cluster-scoped objects".to_string(), |ns| format!("namespace `{ns}`"))
            )),
        },
        // An operation this webhook does not know: refuse rather than guess.
        Some(other) => Err(format!("operation `{other}` is not handled")),
        // The review does not say what it is: refuse.
        None => Err("the review has no `request.operation`".into()),
    };
    // The bundle's own rules run only on a review whose images could be judged.
    let (mut reasons, judged) = match checked {
        Ok(reasons) => (
            reasons,
            matches!(header.operation, Some("CREATE" | "UPDATE")),
        ),
        Err(reason) => (vec![reason], false),
    };
    if loaded.admission_rules && judged {
        reasons.extend(policy_reasons(loaded, &review.full));
    }
    let rule = GlassRule {
        allowed: verdict.policy.break_glass,
        audited: judge.audit.is_some(),
    };
    verdict.outcome = rollout::settle(mode, rule, glass, &mut reasons);
    verdict.allowed = verdict.outcome != Outcome::Denied;
    verdict.warnings = rollout::warnings(&verdict.outcome, &reasons);
    verdict.reasons = reasons;
    verdict
}

/// Where the object's own metadata is, and its pod template's (pods a controller
/// creates carry the template's annotations, not the workload's).
fn metadata_pointers(spec_pointer: &str) -> Vec<String> {
    let mut pointers = vec!["/metadata".to_string()];
    if spec_pointer != "/spec" {
        if let Some(template) = spec_pointer.strip_suffix("/spec") {
            pointers.push(format!("{template}/metadata"));
        }
    }
    pointers
}

/// What admission reads of an `AdmissionReview.request` before its object: the
/// operation, the kind and who the object is.
struct ReviewHeader<'a> {
    request: &'a Value,
    operation: Option<&'a str>,
    group: &'a str,
    kind: Option<&'a str>,
    name: &'a str,
    namespace: Option<&'a str>,
    dry_run: bool,
}

impl<'a> ReviewHeader<'a> {
    fn of(request: &'a Value) -> ReviewHeader<'a> {
        let text = |pointer: &str| request.pointer(pointer).and_then(Value::as_str);
        ReviewHeader {
            request,
            operation: text("/operation"),
            group: text("/kind/group").unwrap_or(""),
            kind: text("/kind/kind"),
            name: text("/name")
                .or_else(|| text("/object/metadata/name"))
                .or_else(|| text("/object/metadata/generateName"))
                .unwrap_or("<unnamed>"),
            namespace: text("/namespace").filter(|ns| !ns.is_empty()),
            dry_run: request.get("dryRun") == Some(&Value::Bool(true)),
        }
    }

    /// "Deployment `ns/name`", for the verdict.
    fn subject(&self) -> String {
        let kind = self.kind.unwrap_or("object");
        match self.namespace {
            Some(ns) => format!("{kind} `{ns}/{}`", self.name),
            None => format!("{kind} `{}`", self.name),
        }
    }

    /// The object, where its pod spec is, and its containers' images; or why the
    /// review cannot be judged.
    fn workload(&self) -> Result<(&'a Value, &'static str, Vec<ContainerImage>), String> {
        let kind = self.kind.ok_or("the review has no `request.kind.kind`")?;
        let Some(spec_pointer) = pod_spec_pointer(self.group, kind) else {
            let gk = if self.group.is_empty() {
                kind.to_string()
            } else {
                format!("{}/{kind}", self.group)
            };
            return Err(format!("kind `{gk}` is not a Pod or a workload with a pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Job, CronJob); send only those to this webhook"));
        };
        let object = self
            .request
            .get("object")
            .filter(|o| o.is_object())
            .ok_or("the review carries no `request.object`")?;
        let spec = object
            .pointer(spec_pointer)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("the {kind} has no pod template at `{spec_pointer}`"))?;
        match containers(spec) {
            Ok(images) if images.is_empty() => Err("the pod template has no containers".into()),
            Ok(images) => Ok((object, spec_pointer, images)),
            Err(reason) => Err(format!("the pod template is malformed: {reason}")),
        }
    }
}

/// The environment a review's images are judged against, and what vouches for them there.
struct Target<'a> {
    environment: &'a str,
    decisions: &'a EnvironmentDecisions,
}

/// Why each image may not run (empty: all may), recording each image's outcome and the
/// decisions that admit in `verdict`.
fn judge_images(
    judge: &Judge<'_>,
    target: &Target<'_>,
    object: &Value,
    metadata_pointers: &[String],
    images: &[ContainerImage],
    verdict: &mut AdmissionVerdict,
) -> Vec<String> {
    let environment = target.environment;
    let mut annotated = HashMap::new();
    let mut notes = Vec::new();
    annotated_decisions(
        object,
        metadata_pointers,
        &target.decisions.keys,
        environment,
        &judge.loaded.admission.decisions,
        &mut annotated,
        &mut notes,
    );
    let mut reasons = Vec::new();
    for c in images {
        let label = format!("{} `{}`", c.section, c.name);
        let Some(image) = &c.image else {
            reasons.push(format!("{label} has no image"));
            verdict.images.push(format!("{label}: refused (no image)"));
            continue;
        };
        let shown = crate::textsafe::printable(image);
        let digest = match pinned_digest(image) {
            Ok(d) => d,
            Err(why) => {
                reasons.push(format!("{label} image `{shown}` {why}"));
                verdict
                    .images
                    .push(format!("{label} `{shown}`: refused (not pinned)"));
                continue;
            }
        };
        let found = annotated
            .get(&digest)
            .or_else(|| target.decisions.index.get(&digest));
        if let Some(why) = found.and_then(|d| stale(d, judge.now, judge.max_age)) {
            reasons.push(format!("{label} image `{shown}`: {why}"));
            verdict
                .images
                .push(format!("{label} `{shown}`: refused (stale decision)"));
            continue;
        }
        match found {
            Some(decision) => {
                verdict.images.push(format!(
                    "{label} `{shown}`: allowed by decision `{}`",
                    decision.decision_id
                ));
                if !verdict.decision_ids.contains(&decision.decision_id) {
                    verdict.decision_ids.push(decision.decision_id.clone());
                }
            }
            None => {
                reasons.push(format!(
                    "{label} image `{shown}`: no verified decision allowed `sha256:{}` into `{environment}`",
                    &digest.hex()[..12]
                ));
                verdict
                    .images
                    .push(format!("{label} `{shown}`: refused (no decision)"));
            }
        }
    }
    if !reasons.is_empty() {
        // Say why annotated decisions did not count: that is usually the fix.
        reasons.extend(notes);
    }
    reasons
}

/// `POST /v1/admission`: a Kubernetes `admission.k8s.io/v1` AdmissionReview in, one out
/// with `response.uid` echoed, in the mode the admission config gives the namespace. A
/// review that cannot be answered (not JSON, no request, no uid) is a 400; every other
/// problem is `allowed: false` with the reason (or, in `warn` and `dry-run`, allowed and
/// reported).
pub(super) async fn handle(State(server): State<Server>, req: Request) -> Response {
    answer(server, None, req).await
}

/// `POST /v1/admission/{mode}`: [`handle`] with the route's mode (`enforce`, `warn`,
/// `dry-run`) as a floor: the stricter of it and the config's applies. An unknown mode
/// is a 400, which a `failurePolicy: Fail` webhook turns into a refusal.
pub(super) async fn handle_mode(
    State(server): State<Server>,
    AxumPath(mode): AxumPath<String>,
    req: Request,
) -> Response {
    match RolloutMode::parse(&mode) {
        Ok(mode) => answer(server, Some(mode), req).await,
        Err(message) => fail(
            &server,
            ROUTE_ADMISSION,
            ApiError::Invalid {
                pointer: String::new(),
                message,
            },
        ),
    }
}

async fn answer(server: Server, route_mode: Option<RolloutMode>, req: Request) -> Response {
    let started = Instant::now();
    let pretty = pretty(req.uri());
    let outcome = async {
        let body = read_body(&server, req, MAX_ADMISSION_BODY_BYTES).await?;
        let review = parse_review(&body)?;
        let loaded = server.loaded();
        let now = server.config().clock.now();
        let max_age = server.config().max_decision_age;
        let audit = server.inner.audit.as_ref().map(|a| a.options().clone());
        let (verdict, signed) = server
            .inner
            .gate
            .run(move || {
                let judge = Judge {
                    loaded: &loaded,
                    now,
                    max_age,
                    route_mode,
                    audit,
                };
                let verdict = decide(&judge, &review);
                let signed = audit_record(&judge, &review, &verdict);
                (verdict, signed)
            })
            .await?;
        record(&server, &verdict, signed).await?;
        Ok::<_, ApiError>(verdict)
    }
    .await;
    match outcome {
        Ok(verdict) => {
            count(&server, &verdict, started);
            json_response(StatusCode::OK, &verdict.to_review(), pretty)
        }
        Err(e) => fail(&server, ROUTE_ADMISSION, e),
    }
}

/// The signed audit record of a review that was admitted though `enforce` would refuse
/// it (break-glass, dry-run), when there is an audit log and this is no Kubernetes dry
/// run; `Err` when it could not be made.
fn audit_record(
    judge: &Judge<'_>,
    review: &Review,
    verdict: &AdmissionVerdict,
) -> Option<Result<crate::audit::Record, Unrecorded>> {
    let noteworthy = matches!(verdict.outcome, Outcome::BreakGlass(_) | Outcome::DryRun);
    let options = judge.audit.as_ref()?;
    if verdict.dry_run || !noteworthy {
        return None;
    }
    let request = review.full.get("request").unwrap_or(&Value::Null);
    let event = AdmissionEvent {
        uid: &verdict.uid,
        subject: &verdict.subject,
        namespace: verdict.namespace.as_deref(),
        environment: verdict.policy.environment.as_deref(),
        mode: verdict.mode,
        outcome: &verdict.outcome,
        reasons: &verdict.reasons,
        object: request.get("object").unwrap_or(&Value::Null),
        user: request
            .pointer("/userInfo/username")
            .and_then(Value::as_str),
    };
    Some(
        event
            .sign(&judge.loaded.engine, judge.now)
            .map_err(Unrecorded::Unsigned)
            .and_then(|signed| {
                options
                    .prepare(&signed.decision, &signed.envelope, &event.summary())
                    .map_err(Unrecorded::Unprepared)
            }),
    )
}

/// Commit an admission's audit record. A break-glass that cannot be recorded is not
/// honoured (the error refuses the review); a dry run that cannot be is still admitted,
/// since dry-run must never block, and the failure is logged.
async fn record(
    server: &Server,
    verdict: &AdmissionVerdict,
    signed: Option<Result<crate::audit::Record, Unrecorded>>,
) -> Result<(), ApiError> {
    let (Some(sink), Some(prepared)) = (server.inner.audit.as_ref(), signed) else {
        return Ok(());
    };
    let committed = match prepared {
        Ok(record) => sink.record(record).await,
        Err(unrecorded) => Err(ApiError::AuditUnavailable(unrecorded)),
    };
    match (&verdict.outcome, committed) {
        (_, Ok(_)) => Ok(()),
        (Outcome::DryRun, Err(e)) => {
            tracing::error!(uid = %verdict.uid, error = %e, "dry-run admission could not be audited");
            Ok(())
        }
        (_, Err(e)) => Err(e),
    }
}

/// Count and log one answered review (a Kubernetes dry run has no side effects: it is
/// answered the same but neither counted nor logged as an admission).
fn count(server: &Server, verdict: &AdmissionVerdict, started: Instant) {
    if verdict.dry_run {
        tracing::debug!(uid = %verdict.uid, allowed = verdict.allowed, "dry-run admission review");
        return;
    }
    let env_label = match &verdict.policy.environment {
        Some(env) => server.loaded().environment_label(env),
        None => "none".to_string(),
    };
    let result = if verdict.allowed { "allow" } else { "deny" };
    let metrics = server.metrics();
    metrics.decision(ROUTE_ADMISSION, result, &env_label);
    metrics.latency(ROUTE_ADMISSION, started.elapsed());
    match &verdict.outcome {
        Outcome::BreakGlass(glass) => {
            metrics.break_glass(&verdict.policy.label);
            tracing::warn!(
                uid = %verdict.uid,
                subject = %verdict.subject,
                environment = verdict.policy.environment.as_deref().unwrap_or("<none>"),
                ticket = %glass.ticket,
                reason = %glass.reason,
                refused_for = %verdict.reasons.join("; "),
                "break-glass admission"
            );
        }
        Outcome::DryRun => metrics.dry_run_denial(&verdict.policy.label),
        Outcome::Passed | Outcome::Denied | Outcome::Warned => {}
    }
    tracing::info!(
        uid = %verdict.uid,
        subject = %verdict.subject,
        environment = verdict.policy.environment.as_deref().unwrap_or("<none>"),
        mode = verdict.mode.as_str(),
        allowed = verdict.allowed,
        decisions = %verdict.decision_ids.join(","),
        reasons = %verdict.reasons.join("; "),
        "admission review"
    );
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

    const HEX: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn decision_age_is_checked_only_when_a_maximum_is_set() {
        let at = |t: &str| crate::input::parse_time(t).ok();
        let d = |made: Option<time::OffsetDateTime>| AllowedDecision {
            decision_id: "d1".into(),
            name: "img".into(),
            source: "annotation".into(),
            evaluated_at: made,
        };
        let now = at("2026-11-27T12:00:00Z").unwrap();
        let day = Some(std::time::Duration::from_secs(86_400));
        let fresh = d(at("2026-11-26T12:00:00Z"));
        assert_eq!(
            stale(&fresh, now, day),
            None,
            "exactly the maximum age is fine"
        );
        let old = d(at("2026-11-26T11:59:59Z"));
        let why = stale(&old, now, day).unwrap();
        assert!(
            why.contains("more than the maximum decision age (1d)"),
            "{why}"
        );
        assert_eq!(stale(&old, now, None), None, "no maximum: any age");
        let timeless = stale(&d(None), now, day).unwrap();
        assert!(timeless.contains("no readable `evaluatedAt`"), "{timeless}");
        let future = stale(&d(at("2026-11-27T12:06:00Z")), now, day).unwrap();
        assert!(future.contains("check the clocks"), "{future}");
        assert_eq!(
            stale(&d(at("2026-11-27T12:04:00Z")), now, day),
            None,
            "skew"
        );
        assert_eq!(human_duration(std::time::Duration::from_secs(5400)), "90m");
    }

    #[test]
    fn a_threshold_counts_distinct_trusted_signers() {
        use crate::attest::dsse::{pae, Envelope, EnvelopeSignature};
        use crate::attest::SigningKey;
        let keys: Vec<SigningKey> = (1u8..=3)
            .map(|i| SigningKey::ed25519_from_seed(&[i; 32]))
            .collect();
        let payload = br#"{"_type": "x"}"#.to_vec();
        let signed = pae("application/vnd.in-toto+json", &payload);
        let envelope = |by: &[usize]| {
            Envelope {
                payload_type: "application/vnd.in-toto+json".into(),
                payload: payload.clone(),
                signatures: by
                    .iter()
                    .map(|&i| EnvelopeSignature {
                        keyid: None,
                        sig: keys[i].sign(&signed),
                    })
                    .collect(),
            }
            .to_json()
        };
        let trusted: Vec<PublicKey> = keys[..2].iter().map(SigningKey::public_key).collect();
        assert_eq!(trusted_signers(&envelope(&[0, 1]), &trusted), 2);
        assert_eq!(
            trusted_signers(&envelope(&[0, 0]), &trusted),
            1,
            "one key twice is one signer"
        );
        assert_eq!(
            trusted_signers(&envelope(&[0, 2]), &trusted),
            1,
            "an untrusted key adds nothing"
        );
        let mut tampered = envelope(&[0, 1]);
        tampered["payload"] = json!("e30=");
        assert_eq!(trusted_signers(&tampered, &trusted), 0);
    }

    #[test]
    fn pinned_images_yield_their_digest() {
        let image = format!("registry.example.com/payments/api@sha256:{HEX}");
        assert_eq!(pinned_digest(&image).unwrap().hex(), HEX);
        let tagged = format!("registry.example.com:5000/api:1.2@sha256:{HEX}");
        assert_eq!(pinned_digest(&tagged).unwrap().hex(), HEX);
    }

    #[test]
    fn unpinned_or_odd_digests_are_refused() {
        assert!(pinned_digest("nginx:1.27").is_err());
        assert!(pinned_digest(&format!("@sha256:{HEX}")).is_err());
        assert!(pinned_digest(&format!("api@sha512:{HEX}")).is_err());
        assert!(pinned_digest(&format!("api@sha256:{}", HEX.to_uppercase())).is_err());
        assert!(pinned_digest(&format!("api@sha256:{}", &HEX[1..])).is_err());
        // Only the distribution grammar decides what the digest is.
        let other = "1".repeat(64);
        for bad in [
            format!("api@sha256:{other}@sha256:{HEX}"),
            format!("my api@sha256:{HEX}"),
            format!("API@sha256:{HEX}"),
            format!("api@sha256:{HEX} "),
            format!("api\n@sha256:{HEX}"),
            format!("api:@sha256:{HEX}"),
            format!("//api@sha256:{HEX}"),
            format!("api@@sha256:{HEX}"),
        ] {
            assert!(pinned_digest(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            pinned_digest(&format!("localhost:5000/a/b-c_d.e:v1.2@sha256:{HEX}"))
                .unwrap()
                .hex(),
            HEX
        );
    }

    #[test]
    fn pod_spec_pointers_cover_every_workload() {
        assert_eq!(pod_spec_pointer("", "Pod"), Some("/spec"));
        for kind in ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"] {
            assert_eq!(pod_spec_pointer("apps", kind), Some("/spec/template/spec"));
        }
        assert_eq!(
            pod_spec_pointer("batch", "Job"),
            Some("/spec/template/spec")
        );
        assert_eq!(
            pod_spec_pointer("batch", "CronJob"),
            Some("/spec/jobTemplate/spec/template/spec")
        );
        assert_eq!(pod_spec_pointer("", "ConfigMap"), None);
        assert_eq!(pod_spec_pointer("evil.example.com", "Deployment"), None);
    }
}

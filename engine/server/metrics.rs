//! The sidecar's Prometheus metrics (prometheus-client, text format); label values come
//! only from bounded sets (routes, results, configured environments), never raw input.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::decision::Decision;
use crate::policy::Check;

/// Decision latency buckets: 100 µs doubling to about 3.3 s, which spans a cached
/// decision on loopback up to the evaluation budget.
const LATENCY_BUCKETS: (f64, f64, u16) = (0.0001, 2.0, 16);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    route: String,
    result: String,
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    route: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnvironmentLabels {
    environment: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    environment: String,
    violation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NamespaceLabels {
    namespace: String,
}

/// The `violation` label for ids the bundle's catalog does not declare (plugin verdicts,
/// engine ids): the label set stays as small as the catalog.
pub const OTHER_VIOLATION: &str = "other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BundleLabels {
    digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabels {
    revision: String,
}

fn latency_histogram() -> Histogram {
    let (start, factor, count) = LATENCY_BUCKETS;
    Histogram::new(exponential_buckets(start, factor, count))
}

/// The metrics registry and handles to every metric in it.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
    plugin_failures: Family<PluginLabels, Counter>,
    reloads: Family<ResultLabels, Counter>,
    bundle: Family<BundleLabels, Gauge>,
    revision: Family<RevisionLabels, Gauge>,
    in_flight: Gauge,
    evictions: Counter,
    audit: AuditMetrics,
    attempts: Family<EnvironmentLabels, Counter>,
    denials_by_violation: Family<ViolationLabels, Counter>,
    break_glass: Family<NamespaceLabels, Counter>,
    dry_run_denials: Family<NamespaceLabels, Counter>,
    decision_log: DecisionLogMetrics,
}

/// The decision-log shipper's metrics, cloned into its thread.
#[derive(Debug, Clone, Default)]
pub struct DecisionLogMetrics {
    /// Events by result: sent (accepted by the collector) or dropped (buffer full).
    events: Family<ResultLabels, Counter>,
    /// Uploads that failed and will be retried.
    failed_uploads: Counter,
}

impl DecisionLogMetrics {
    /// Count `n` events `sent` or `dropped`.
    pub fn events(&self, result: &'static str, n: u64) {
        self.events
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc_by(n);
    }

    /// Count one failed upload.
    pub fn failed_upload(&self) {
        self.failed_uploads.inc();
    }
}

/// The audit writer's own metrics, cloned into its thread (the handles share their values).
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Records committed, by result (ok: in the log; error: refused, their decisions withheld).
    records: Family<ResultLabels, Counter>,
    /// Time for one append transaction (one fsync), whatever its size.
    pub(super) commit_seconds: Histogram,
    /// Records waiting for the writer after it took a batch.
    pub(super) queued: Gauge,
}

impl AuditMetrics {
    /// Count `n` records with `ok` or `error`.
    pub fn records(&self, ok: bool, n: usize) {
        self.records
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc_by(n as u64);
    }
}

/// Counts one request in flight for as long as it lives (dropped on cancellation too).
#[derive(Debug)]
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered and at zero.
    #[expect(
        clippy::too_many_lines,
        reason = "every metric registered with its help text, a flat list"
    )]
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("promo");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let latency =
            Family::<RouteLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> _);
        let errors = Family::<ErrorLabels, Counter>::default();
        let plugin_failures = Family::<PluginLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let bundle = Family::<BundleLabels, Gauge>::default();
        let in_flight = Gauge::default();
        let evictions = Counter::default();
        let audit = AuditMetrics {
            records: Family::default(),
            // 0.5 ms to ~1 s: an fsync on a quiet SSD up to a disk that is struggling.
            commit_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 12)),
            queued: Gauge::default(),
        };
        registry.register(
            "decisions",
            "Decisions made, by route, result (allow, deny, undefined) and target environment",
            decisions.clone(),
        );
        registry.register(
            "decision_duration_seconds",
            "Time to answer a decision request, body read to response, by route",
            latency.clone(),
        );
        registry.register(
            "request_errors",
            "Requests answered with an error instead of a decision, by route and cause",
            errors.clone(),
        );
        registry.register(
            "plugin_failures",
            "Required or advisory plugins that did not pass because they failed to run, by plugin and cause",
            plugin_failures.clone(),
        );
        registry.register(
            "reloads",
            "Bundle reloads, by result (ok, error)",
            reloads.clone(),
        );
        registry.register(
            "bundle_info",
            "The policy bundle serving decisions (value 1), by sha256 digest",
            bundle.clone(),
        );
        registry.register(
            "requests_in_flight",
            "HTTP requests being served now (a draining sidecar counts down to 0)",
            in_flight.clone(),
        );
        registry.register(
            "connections_evicted",
            "Idle or header-trickling connections closed to make room at the connection cap",
            evictions.clone(),
        );
        registry.register(
            "audit_records",
            "Decisions appended to the audit log (ok), or refused because the append failed (error)",
            audit.records.clone(),
        );
        registry.register(
            "audit_commit_duration_seconds",
            "Time for one audit-log append transaction (one fsync)",
            audit.commit_seconds.clone(),
        );
        registry.register(
            "audit_queue_depth",
            "Decisions waiting for the audit writer when it last took a batch",
            audit.queued.clone(),
        );
        let revision = Family::<RevisionLabels, Gauge>::default();
        registry.register(
            "bundle_revision_info",
            "The serving bundle's .manifest revision (value 1); absent for a bundle without one",
            revision.clone(),
        );
        let decision_log = DecisionLogMetrics::default();
        registry.register(
            "decision_log_events",
            "Decision-log events sent to the collector, or dropped because the buffer was full",
            decision_log.events.clone(),
        );
        registry.register(
            "decision_log_failed_uploads",
            "Decision-log uploads that failed (connection, timeout, non-2xx) and were retried",
            decision_log.failed_uploads.clone(),
        );
        let attempts = Family::<EnvironmentLabels, Counter>::default();
        let denials_by_violation = Family::<ViolationLabels, Counter>::default();
        let break_glass = Family::<NamespaceLabels, Counter>::default();
        let dry_run_denials = Family::<NamespaceLabels, Counter>::default();
        registry.register(
            "promotion_attempts",
            "Promotion requests decided (allowed or denied), by target environment",
            attempts.clone(),
        );
        registry.register(
            "promotion_denials_by_violation",
            "Denied promotions, once per distinct violation id in the decision, by target environment and violation (catalog ids; anything else is `other`)",
            denials_by_violation.clone(),
        );
        registry.register(
            "break_glass_admissions",
            "Admissions that would have been denied under enforce but were let through by a break-glass annotation, by namespace",
            break_glass.clone(),
        );
        registry.register(
            "admission_dry_run_denials",
            "Admissions allowed in dry-run mode that enforce would have denied, by namespace",
            dry_run_denials.clone(),
        );
        Self {
            registry,
            attempts,
            denials_by_violation,
            break_glass,
            dry_run_denials,
            decisions,
            latency,
            errors,
            plugin_failures,
            reloads,
            bundle,
            revision,
            in_flight,
            evictions,
            audit,
            decision_log,
        }
    }

    /// Count one connection evicted at the connection cap.
    pub fn connection_evicted(&self) {
        self.evictions.inc();
    }

    /// Handles for the decision-log shipper.
    pub fn decision_log(&self) -> DecisionLogMetrics {
        self.decision_log.clone()
    }

    /// Handles for the audit writer thread.
    pub fn audit(&self) -> AuditMetrics {
        self.audit.clone()
    }

    /// Count a request in flight until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.inc();
        InFlight(self.in_flight.clone())
    }

    /// Count one decision.
    pub fn decision(&self, route: &str, result: &str, environment: &str) {
        self.decisions
            .get_or_create(&DecisionLabels {
                route: route.to_string(),
                result: result.to_string(),
                environment: environment.to_string(),
            })
            .inc();
    }

    /// Count one promotion decided into `environment` and, when denied, each distinct
    /// violation id in it (ids outside `catalog` as `other`).
    pub fn promotion(&self, decision: &Decision, environment: &str, catalog: &[Check]) {
        self.attempts
            .get_or_create(&EnvironmentLabels {
                environment: environment.to_string(),
            })
            .inc();
        if decision.allowed {
            return;
        }
        let ids: std::collections::BTreeSet<&str> = decision
            .violations
            .iter()
            .map(|v| {
                if catalog.iter().any(|c| c.id == v.id) {
                    v.id.as_str()
                } else {
                    OTHER_VIOLATION
                }
            })
            .collect();
        for violation in ids {
            self.denials_by_violation
                .get_or_create(&ViolationLabels {
                    environment: environment.to_string(),
                    violation: violation.to_string(),
                })
                .inc();
        }
    }

    /// Count one break-glass admission in `namespace`.
    pub fn break_glass(&self, namespace: &str) {
        self.break_glass
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_string(),
            })
            .inc();
    }

    /// Count one admission that dry-run allowed and enforce would have denied.
    pub fn dry_run_denial(&self, namespace: &str) {
        self.dry_run_denials
            .get_or_create(&NamespaceLabels {
                namespace: namespace.to_string(),
            })
            .inc();
    }

    /// Count the plugin failures recorded in a decision: violations the engine raised
    /// (`source` `plugin:<name>`, id `plugin.*`) for a plugin that did not pass.
    pub fn plugin_failures(&self, decision: &Decision) {
        for v in &decision.violations {
            let Some(plugin) = v.source.plugin() else {
                continue;
            };
            // Only the engine's own failure ids (trap, timeout, bad result, cap hit):
            // a plugin's verdict is not a failure, and its own ids are unbounded.
            if !v.id.starts_with("plugin.") {
                continue;
            }
            if !decision.plugins.iter().any(|p| p.name == plugin && !p.ok) {
                continue;
            }
            self.plugin_failures
                .get_or_create(&PluginLabels {
                    plugin: plugin.to_string(),
                    cause: v.id.clone(),
                })
                .inc();
        }
    }

    /// Observe how long a decision request took.
    pub fn latency(&self, route: &str, elapsed: Duration) {
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Count one request answered with an error.
    pub fn error(&self, route: &str, cause: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                route: route.to_string(),
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Count one reload.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "error" }.to_string(),
            })
            .inc();
    }

    /// Record which bundle is serving.
    pub fn set_bundle(&self, digest: &str) {
        self.bundle.clear();
        self.bundle
            .get_or_create(&BundleLabels {
                digest: digest.to_string(),
            })
            .set(1);
    }

    /// Set the serving bundle's revision (cleared for a bundle without one).
    pub fn set_revision(&self, revision: Option<&str>) {
        self.revision.clear();
        if let Some(revision) = revision {
            self.revision
                .get_or_create(&RevisionLabels {
                    revision: revision.to_string(),
                })
                .set(1);
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

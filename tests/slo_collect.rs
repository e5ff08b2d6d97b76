//! `slo collect` against a real Prometheus (Debian's `prometheus` and `promtool`): a TSDB
//! backfilled with SLI recording-rule series, the server on loopback, the real binary
//! collecting and signing snapshots, and prod decisions over them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{bin, eval_json, request, statement_of, write};

const SLO: &str = "https://promo-policy.dev/slo-snapshot/v1";
const ARTIFACT: &str = "registry.example.com/payments/api@sha256:0d9d2f9cf3e9b5229f514b2a03365b0437cdd20cf875cf840b50996620fce5ef";
const KEY: &str = "corpus/keys/slo-bridge-ed25519.key";
/// When the bridge collects: a minute before the decision (`support::AT`), well within
/// prod's 30-minute `maxAgeMinutes`.
const COLLECT_AT: &str = "2026-11-26T17:59:00Z";
/// `COLLECT_AT` as Unix seconds.
const T: i64 = 1_795_715_940;

/// Where Prometheus's programs are, or `None` (after saying so) when they are not
/// installed; under CI they must be (`.ci/run` installs Debian's `prometheus`).
fn programs() -> Option<(PathBuf, PathBuf)> {
    let find = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
    };
    match (find("prometheus"), find("promtool")) {
        (Some(server), Some(tool)) => Some((server, tool)),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI=true but `prometheus`/`promtool` are not installed (Debian package `prometheus`)")
        }
        _ => {
            eprintln!("skipping: `prometheus` and `promtool` (Debian package `prometheus`) are not installed");
            None
        }
    }
}

/// The running server; killed (and reaped) when dropped, whatever the test did.
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One service's series: the error ratio per window (`None`: no series), the newest
/// sample's age in seconds, and whether the 1h series is duplicated across instances.
struct Service {
    name: &'static str,
    ratios: [(&'static str, Option<f64>); 6],
    age: i64,
    duplicate_1h: bool,
}

const WINDOWS: [&str; 6] = ["5m", "30m", "1h", "6h", "3d", "30d"];

fn service(name: &'static str, r: [Option<f64>; 6]) -> Service {
    Service {
        name,
        ratios: [
            (WINDOWS[0], r[0]),
            (WINDOWS[1], r[1]),
            (WINDOWS[2], r[2]),
            (WINDOWS[3], r[3]),
            (WINDOWS[4], r[4]),
            (WINDOWS[5], r[5]),
        ],
        age: 0,
        duplicate_1h: false,
    }
}

/// The scenarios, for an objective of 99.9 % (0.1 % errors allowed; burn = ratio / 0.001).
fn services() -> Vec<Service> {
    let healthy = [0.0002, 0.0002, 0.0002, 0.0002, 0.0002, 0.0003].map(Some);
    vec![
        // Burn 0.2 everywhere, 70 % of the budget left.
        service("healthy", healthy),
        // 20x over 5m and 16x over 1h: both ends of the 1h/5m pair above 14.4.
        service(
            "fast",
            [0.02, 0.0005, 0.016, 0.0005, 0.0005, 0.0004].map(Some),
        ),
        // 1.2x over 6h and 1.5x over 3d: the 3d/6h pair above 1, nothing fast.
        service(
            "slow",
            [0.0012, 0.0012, 0.0012, 0.0012, 0.0015, 0.0006].map(Some),
        ),
        // 1.1x over the 30-day period: the budget is overspent (-0.1).
        service(
            "exhausted",
            [0.0005, 0.0005, 0.0005, 0.0005, 0.0005, 0.0011].map(Some),
        ),
        // No 5m series at all.
        service(
            "missing",
            [
                None,
                Some(0.0002),
                Some(0.0002),
                Some(0.0002),
                Some(0.0002),
                Some(0.0003),
            ],
        ),
        // Healthy figures whose newest samples are 3 minutes old.
        Service {
            age: 180,
            ..service("stale", healthy)
        },
        // Two 1h series for one service (two instances recording the same rule).
        Service {
            duplicate_1h: true,
            ..service("dup", healthy)
        },
    ]
}

/// The backfill: every series sampled each minute for the half hour up to its newest
/// sample, as OpenMetrics text for `promtool tsdb create-blocks-from openmetrics`.
fn openmetrics(services: &[Service]) -> String {
    let mut out = String::new();
    let samples = |out: &mut String, metric: &str, labels: &str, value: f64, age: i64| {
        for t in (T - 1800..=T - age).step_by(60) {
            writeln!(out, "{metric}{{{labels}}} {value} {t}").unwrap();
        }
    };
    writeln!(out, "# TYPE slo:objective:ratio gauge").unwrap();
    for s in services {
        let labels = format!("service=\"{}\"", s.name);
        samples(&mut out, "slo:objective:ratio", &labels, 0.999, s.age);
    }
    for (i, w) in WINDOWS.iter().enumerate() {
        let metric = format!("slo:sli_error:ratio_rate{w}");
        writeln!(out, "# TYPE {metric} gauge").unwrap();
        for s in services {
            let Some(ratio) = s.ratios[i].1 else { continue };
            if *w == "1h" && s.duplicate_1h {
                for instance in ["a", "b"] {
                    let labels = format!("instance=\"{instance}\",service=\"{}\"", s.name);
                    samples(&mut out, &metric, &labels, ratio, s.age);
                }
            } else {
                let labels = format!("service=\"{}\"", s.name);
                samples(&mut out, &metric, &labels, ratio, s.age);
            }
        }
    }
    out.push_str("# EOF\n");
    out
}

/// Backfill a TSDB under `dir` and start Prometheus on it, on a free loopback port; waits
/// until it is ready.
fn start(dir: &Path, prometheus: &Path, promtool: &Path) -> Server {
    let input = write(dir, "backfill.om", openmetrics(&services()));
    let data = dir.join("data");
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&input)
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config = write(dir, "prometheus.yml", "global:\n  scrape_interval: 1m\n");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.join("prometheus.log");
    let child = Command::new(prometheus)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", data.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        // Retention counts back from the newest block, not the wall clock; be generous.
        .arg("--storage.tsdb.retention.time=100y")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "prometheus exited ({status}): {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        if ureq::get(&format!("{}/-/ready", server.url))
            .timeout(Duration::from_secs(2))
            .call()
            .is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "prometheus not ready within 60 s: {}",
            std::fs::read_to_string(&server.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// `slo collect` for `service`; its exit code, stderr and (on success) the envelope.
fn collect(server: &Server, dir: &Path, service: &str, extra: &[&str]) -> (i32, String, Value) {
    let out_file = dir.join(format!("slo-{service}.json"));
    let out = bin()
        .args(["slo", "collect", "--prometheus", &server.url])
        .args(["--service", service, "--artifact", ARTIFACT, "--key", KEY])
        .args(["--at", COLLECT_AT])
        .arg("--out")
        .arg(&out_file)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let envelope = std::fs::read(&out_file)
        .map(|b| serde_json::from_slice(&b).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code().unwrap_or(-1), stderr, envelope)
}

/// The baseline prod request with its own SLO claim and signed snapshot removed, decided
/// with `envelope` as the only SLO evidence.
fn decide(dir: &Path, name: &str, envelope: &Value) -> Value {
    let mut r = request();
    r.as_object_mut().unwrap().remove("slo");
    let kept: Vec<Value> = r["attestations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| statement_of(e)["predicateType"] != SLO)
        .cloned()
        .collect();
    r["attestations"] = kept.into();
    let req = write(dir, &format!("req-{name}.json"), r.to_string());
    let evidence = write(dir, &format!("ev-{name}.json"), envelope.to_string());
    let out = eval_json(req.to_str().unwrap())
        .arg("--attestations")
        .arg(&evidence)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("eval: {}", String::from_utf8_lossy(&out.stderr)))
}

fn ids(decision: &Value, list: &str) -> Vec<String> {
    decision["decision"][list]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn collected_snapshots_decide_prod_through_a_real_prometheus() {
    let Some((prometheus, promtool)) = programs() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server = start(d, &prometheus, &promtool);

    // Healthy: every figure read, signed, and the promotion allowed on it.
    let started = Instant::now();
    let (code, stderr, envelope) = collect(&server, d, "healthy", &[]);
    eprintln!("slo collect (healthy) took {:?}", started.elapsed());
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("left out"), "{stderr}");
    let statement = statement_of(&envelope);
    assert_eq!(statement["predicateType"], SLO);
    let p = &statement["predicate"];
    assert_eq!(p["service"], "healthy");
    assert_eq!(p["objective"], 0.999);
    assert_eq!(p["window"], "30d");
    assert_eq!(p["measuredAt"], COLLECT_AT);
    assert!(
        (p["errorBudgetRemaining"].as_f64().unwrap() - 0.7).abs() < 1e-9,
        "{p}"
    );
    // The prod bundle's windows, each read.
    let rates = p["burnRates"].as_object().unwrap();
    assert_eq!(
        rates.keys().collect::<Vec<_>>(),
        ["5m", "30m", "1h", "6h", "3d"]
    );
    assert!((rates["1h"].as_f64().unwrap() - 0.2).abs() < 1e-9, "{p}");
    assert_eq!(p["source"]["kind"], "prometheus");
    assert_eq!(p["source"]["url"], server.url.as_str());
    assert_eq!(p["source"]["evaluationTime"], COLLECT_AT);
    assert_eq!(
        p["source"]["queries"]["burnRates.5m"],
        r#"slo:sli_error:ratio_rate5m{service="healthy"}"#
    );
    let doc = decide(d, "healthy", &envelope);
    assert_eq!(doc["decision"]["allowed"], true, "{}", doc["decision"]);
    assert!(ids(&doc, "warnings").is_empty(), "{}", doc["decision"]);

    // Fast burn: denied.
    let (code, stderr, envelope) = collect(&server, d, "fast", &[]);
    assert_eq!(code, 0, "{stderr}");
    let doc = decide(d, "fast", &envelope);
    assert_eq!(doc["decision"]["allowed"], false);
    assert_eq!(
        ids(&doc, "violations"),
        ["slo.fast_burn"],
        "{}",
        doc["decision"]
    );
    let msg = doc["decision"]["violations"][0]["msg"].as_str().unwrap();
    assert!(msg.contains("burn rate 16 over 1h and 20 over 5m"), "{msg}");

    // Slow burn: allowed, with the bundle's warning.
    let (code, stderr, envelope) = collect(&server, d, "slow", &[]);
    assert_eq!(code, 0, "{stderr}");
    let doc = decide(d, "slow", &envelope);
    assert_eq!(doc["decision"]["allowed"], true, "{}", doc["decision"]);
    assert_eq!(
        ids(&doc, "warnings"),
        ["slo.slow_burn"],
        "{}",
        doc["decision"]
    );

    // Budget exhausted: denied.
    let (code, stderr, envelope) = collect(&server, d, "exhausted", &[]);
    assert_eq!(code, 0, "{stderr}");
    let doc = decide(d, "exhausted", &envelope);
    assert_eq!(
        ids(&doc, "violations"),
        ["slo.budget_exhausted"],
        "{}",
        doc["decision"]
    );

    // Missing, stale or ambiguous series: the figure is left out (said on stderr), and
    // prod reads the snapshot as inconclusive, never as a pass.
    for (service, extra, figure, why) in [
        ("missing", &[][..], "burnRates.5m", "no series"),
        (
            "stale",
            &["--max-staleness", "1m"][..],
            "burnRates.5m",
            "stale",
        ),
        ("dup", &[][..], "burnRates.1h", "ambiguous: 2 series"),
    ] {
        let (code, stderr, envelope) = collect(&server, d, service, extra);
        assert_eq!(code, 0, "{service}: {stderr}");
        assert!(
            stderr.contains(&format!("`{figure}` left out of the snapshot: {why}")),
            "{service}: {stderr}"
        );
        let p = &statement_of(&envelope)["predicate"];
        let short = figure.trim_start_matches("burnRates.");
        assert!(p["burnRates"].get(short).is_none(), "{service}: {p}");
        assert!(
            p["source"]["unavailable"][figure]
                .as_str()
                .unwrap()
                .starts_with(why),
            "{service}: {p}"
        );
        let doc = decide(d, service, &envelope);
        assert_eq!(doc["decision"]["allowed"], false, "{service}");
        assert_eq!(
            ids(&doc, "violations"),
            ["slo.inconclusive"],
            "{service}: {}",
            doc["decision"]
        );
        assert!(
            doc["decision"]["violations"][0]["msg"]
                .as_str()
                .unwrap()
                .contains(&format!("slo.{figure}")),
            "{service}: {}",
            doc["decision"]
        );
    }
    // The same stale series within the default 5 minutes: read.
    let (code, stderr, envelope) = collect(&server, d, "stale", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("left out"), "{stderr}");
    assert_eq!(
        decide(d, "stale-ok", &envelope)["decision"]["allowed"],
        true
    );

    // `--window` overrides the bundle's windows.
    let (code, stderr, envelope) = collect(&server, d, "healthy", &["--window", "6h"]);
    assert_eq!(code, 0, "{stderr}");
    let rates = statement_of(&envelope)["predicate"]["burnRates"].clone();
    assert_eq!(
        rates.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["6h"]
    );

    // A query Prometheus refuses: exit 2, naming the server and its reason; nothing signed.
    let queries = write(
        d,
        "bad-queries.json",
        r#"{"errorRatio": "slo:sli_error:ratio_rate${window}{service=\"${service}\""}"#,
    );
    let (code, stderr, envelope) =
        collect(&server, d, "bad", &["--queries", queries.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains(&format!("`{}/api/v1/query` answered HTTP 400", server.url)),
        "{stderr}"
    );
    assert!(stderr.contains("bad_data"), "{stderr}");
    assert_eq!(envelope, Value::Null);

    // A custom queries file: a fixed objective and raw error ratios.
    let queries = write(
        d,
        "queries.json",
        r#"{"objective": 0.999, "period": "30d",
            "errorRatio": "max(slo:sli_error:ratio_rate${window}{service=\"${service}\"})"}"#,
    );
    let (code, stderr, envelope) =
        collect(&server, d, "dup", &["--queries", queries.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("left out"), "{stderr}");
    let p = &statement_of(&envelope)["predicate"];
    assert!(p["source"]["queries"].get("objective").is_none(), "{p}");
    assert_eq!(decide(d, "custom", &envelope)["decision"]["allowed"], true);

    // README's queries file is accepted, and valid PromQL to the real server; nothing
    // here records its series, so every figure is left out (and said so).
    let readme = std::fs::read_to_string("README.md").unwrap();
    let section = &readme[readme.find("### SLO snapshots from Prometheus").unwrap()..];
    let example = section
        .split("```json")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    let queries = write(d, "readme-queries.json", example);
    let (code, stderr, envelope) = collect(
        &server,
        d,
        "payments-api",
        &["--queries", queries.to_str().unwrap()],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr
            .matches("left out of the snapshot: no series")
            .count(),
        6,
        "{stderr}"
    );
    assert_eq!(statement_of(&envelope)["predicate"]["objective"], 0.999);

    // An environment without burn-rate pairs, and no --window: nothing to collect.
    let (code, stderr, _) = collect(&server, d, "healthy", &["--env", "dev"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("environment `dev` configures no burn-rate windows"),
        "{stderr}"
    );
    let (code, stderr, _) = collect(&server, d, "healthy", &["--env", "qa"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("--env `qa` is not an environment of the bundle"),
        "{stderr}"
    );

    // The server gone: exit 2 naming it.
    let url = server.url.clone();
    drop(server);
    let out = bin()
        .args(["slo", "collect", "--prometheus", &url])
        .args(["--service", "healthy", "--artifact", ARTIFACT, "--key", KEY])
        .args(["--at", COLLECT_AT, "--timeout", "5s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "Prometheus at `{url}/api/v1/query` is unreachable"
        )),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

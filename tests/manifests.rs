//! README's Kubernetes manifests validated offline against the Kubernetes schemas by
//! `kubernetes-validate` (PyPI, which ships them), and its admission config example parsed
//! by the sidecar, so README cannot drift from what an API server or `serve` accepts.

use std::path::{Path, PathBuf};

/// The Kubernetes version the manifests are checked against.
const KUBERNETES_VERSION: &str = "1.30.0";

/// The ```yaml blocks under the heading `heading`, up to the next heading of the same or a
/// higher level.
fn yaml_blocks(readme: &str, heading: &str) -> Vec<String> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let mut lines = readme.lines().skip_while(|l| *l != heading);
    assert!(lines.next().is_some(), "README has no `{heading}`");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in lines {
        match &mut current {
            Some(block) if line.starts_with("```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line == "```yaml" => current = Some(String::new()),
            None => {
                let hashes = line.chars().take_while(|&c| c == '#').count();
                if hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
                    break;
                }
            }
        }
    }
    blocks
}

fn readme() -> String {
    std::fs::read_to_string("README.md").unwrap()
}

/// `kubernetes-validate`: `$KUBERNETES_VALIDATE`, the venv `.ci/run` makes under
/// `target/`, or one on `PATH`.
fn validator() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(path));
    }
    let venv = Path::new("target/kubeval-venv/bin/kubernetes-validate");
    if venv.is_file() {
        return Some(venv.to_path_buf());
    }
    let on_path = std::process::Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    on_path.then(|| PathBuf::from("kubernetes-validate"))
}

#[test]
fn readme_kubernetes_manifests_validate_against_the_schemas() {
    let blocks = yaml_blocks(&readme(), "#### Kubernetes manifests");
    let all = blocks.join("---\n");
    for kind in [
        "kind: Deployment",
        "kind: Service",
        "kind: PodDisruptionBudget",
        "kind: ValidatingWebhookConfiguration",
        "failurePolicy: Fail",
        "timeoutSeconds:",
        "readinessProbe:",
        "livenessProbe:",
        "values: [kube-system, promo-policy]",
    ] {
        assert!(all.contains(kind), "README's manifests lack `{kind}`");
    }
    let Some(validator) = validator() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kubernetes-validate is missing under CI: .ci/run must install it"
        );
        eprintln!(
            "skipped: kubernetes-validate is not installed (pip install kubernetes-validate)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = blocks
        .iter()
        .enumerate()
        .map(|(i, block)| crate::support::write(dir.path(), &format!("block{i}.yaml"), block))
        .collect();
    let out = std::process::Command::new(&validator)
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "README's manifests do not validate:\n{text}"
    );
    // Every document was checked (a block the validator skipped would pass silently).
    let documents = all.matches("\nkind: ").count() + usize::from(all.starts_with("kind: "));
    let passed = text.matches(" passed ").count();
    assert_eq!(passed, documents, "{text}");
}

#[test]
fn readme_admission_config_example_is_a_valid_config() {
    let blocks = yaml_blocks(
        &readme(),
        "#### Rollout modes and break-glass (`serve --admission-config FILE`)",
    );
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let config = promo_policy::server::admission_config::AdmissionConfig::parse(&blocks[0])
        .unwrap_or_else(|e| panic!("README's admission config: {e}"));
    let team = config.for_namespace(Some("team-a"));
    assert_eq!(team.mode.as_str(), "warn");
    assert!(config.for_namespace(Some("payments")).break_glass);
    // Its environments are the shipped bundle's, as `serve` checks them.
    let data: serde_json::Value =
        serde_json::from_slice(&std::fs::read("policies/data.json").unwrap()).unwrap();
    let configured: std::collections::BTreeSet<String> = data["promo"]["config"]["environments"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    config
        .check_environments(&configured)
        .unwrap_or_else(|e| panic!("README's admission config: {e}"));
    let env = |ns: &str| config.for_namespace(Some(ns)).environment;
    assert_eq!(env("payments-staging").as_deref(), Some("staging"));
    assert_eq!(env("team-a").as_deref(), Some("prod"));
}

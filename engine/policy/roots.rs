//! OPA manifest roots: every package and data path a bundle defines must lie under a root.
//!
//! A bundle's `.manifest` may declare `roots`, the data paths the bundle owns (`""` is
//! all of them). OPA refuses a bundle whose packages or data reach outside its roots, and
//! one whose roots overlap each other; so do we, so that a bundle signed for `promo/...`
//! cannot also define, say, `data.system` or a second copy of a package at another path.
//! A path is a list of segments (`promo/config` is `["promo", "config"]`).

use serde_json::Value;

/// Why a bundle's roots refuse it (our own findings; no error under them).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RootsError {
    /// Two roots overlap.
    #[error("manifest roots `{0}` and `{1}` overlap")]
    Overlap(String, String),
    /// A package outside every root.
    #[error("package `{package}` is outside the manifest roots {roots}")]
    Package {
        /// The package, as regorus names it.
        package: String,
        /// The roots, as a list.
        roots: String,
    },
    /// Data outside every root.
    #[error("data at `{path}` is outside the manifest roots {roots}")]
    Data {
        /// The data's path, `/`-separated.
        path: String,
        /// The roots, as a list.
        roots: String,
    },
}

/// Parse the manifest's `roots` (slash-separated paths) and refuse overlapping ones
/// (`promo` and `promo/config`), as OPA does.
pub fn parse(roots: &[String]) -> Result<Vec<Vec<String>>, RootsError> {
    let parsed: Vec<Vec<String>> = roots.iter().map(|r| segments(r)).collect();
    for (i, a) in parsed.iter().enumerate() {
        for (j, b) in parsed.iter().enumerate() {
            if i < j && (a.starts_with(b) || b.starts_with(a)) {
                return Err(RootsError::Overlap(roots[i].clone(), roots[j].clone()));
            }
        }
    }
    Ok(parsed)
}

fn segments(root: &str) -> Vec<String> {
    root.split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether some root is a prefix of `path` (the bundle owns it).
fn owned(roots: &[Vec<String>], path: &[String]) -> bool {
    roots.iter().any(|r| path.starts_with(r))
}

/// Refuse a package (regorus's `data.a.b` form) outside the roots.
pub fn check_package(roots: &[Vec<String>], package: &str) -> Result<(), RootsError> {
    let path: Vec<String> = package
        .strip_prefix("data.")
        .unwrap_or(package)
        .split('.')
        .map(|s| {
            s.trim_matches(|c| c == '[' || c == ']' || c == '"')
                .to_string()
        })
        .collect();
    if owned(roots, &path) {
        Ok(())
    } else {
        Err(RootsError::Package {
            package: package.to_string(),
            roots: show(roots),
        })
    }
}

/// Refuse data outside the roots: `value` is mounted at `dir` (the data file's directory,
/// empty for the bundle root). Where `dir` is not owned but leads to a root, the check
/// goes down into the object's keys, so a root `data.json` may hold `{"promo": ...}`
/// under root `promo`.
pub fn check_data(roots: &[Vec<String>], dir: &[String], value: &Value) -> Result<(), RootsError> {
    if owned(roots, dir) {
        return Ok(());
    }
    let leads_to_root = roots.iter().any(|r| r.starts_with(dir));
    match value {
        Value::Object(map) if leads_to_root => {
            let mut path = dir.to_vec();
            for (key, child) in map {
                path.push(key.clone());
                check_data(roots, &path, child)?;
                path.pop();
            }
            Ok(())
        }
        _ => Err(RootsError::Data {
            path: dir.join("/"),
            roots: show(roots),
        }),
    }
}

fn show(roots: &[Vec<String>]) -> String {
    let list: Vec<String> = roots
        .iter()
        .map(|r| format!("\"{}\"", r.join("/")))
        .collect();
    format!("[{}]", list.join(", "))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test fails loudly on a broken fixture"
)]
mod tests {
    use super::*;
    use serde_json::json;

    fn roots(r: &[&str]) -> Vec<Vec<String>> {
        parse(&r.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn path(p: &str) -> Vec<String> {
        segments(p)
    }

    #[test]
    fn the_empty_root_owns_everything() {
        let all = roots(&[""]);
        check_package(&all, "data.system.authz").unwrap();
        check_data(&all, &[], &json!({"anything": 1})).unwrap();
    }

    #[test]
    fn packages_must_lie_under_a_root() {
        let r = roots(&["promo", "extra/x"]);
        check_package(&r, "data.promo").unwrap();
        check_package(&r, "data.promo.rules.approvals").unwrap();
        check_package(&r, "data.extra.x.y").unwrap();
        let e = check_package(&r, "data.system.authz")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.system.authz") && e.contains("\"promo\""),
            "{e}"
        );
        // A prefix of a root is not owned: the bundle owns extra/x, not extra.
        check_package(&r, "data.extra").unwrap_err();
        // Segment-wise, not string-wise.
        check_package(&r, "data.promotion").unwrap_err();
    }

    #[test]
    fn data_may_lead_down_to_a_root_but_not_beside_it() {
        let r = roots(&["promo/config"]);
        check_data(&r, &path("promo/config"), &json!({"a": 1})).unwrap();
        check_data(&r, &[], &json!({"promo": {"config": {"a": 1}}})).unwrap();
        let e = check_data(&r, &[], &json!({"promo": {"config": {}, "rules": {}}}))
            .unwrap_err()
            .to_string();
        assert!(e.contains("`promo/rules`"), "{e}");
        check_data(&r, &path("promo"), &json!({"other": 1})).unwrap_err();
        // A scalar where a root was expected below is data the bundle does not own.
        check_data(&r, &[], &json!({"promo": 1})).unwrap_err();
    }

    #[test]
    fn overlapping_roots_are_refused() {
        let e = parse(&["promo".into(), "promo/config".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("overlap"), "{e}");
        parse(&["".into(), "promo".into()]).unwrap_err();
        parse(&["promo".into(), "promotion".into()]).unwrap();
    }
}

//! Refuses a bundle whose rules or functions depend on themselves, found on regorus's
//! parsed syntax tree at load, before anything evaluates.
//!
//! OPA refuses recursion at compile time; regorus does not for functions, and both its
//! interpreter and its VM recurse on the native stack, so `f(x) := f(x)` aborts the
//! process at the first evaluation that reaches it (a stack overflow cannot be caught).
//! The graph here is conservative in one direction only: a reference whose path is
//! computed (`data.promo.rules[name]`) depends on every rule under its literal prefix, so
//! a cycle through it is found; a local variable named like a rule is not a reference.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// The rule graph: rule path -> the rule paths its heads and bodies refer to.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// Why the recursion check refused a bundle.
#[derive(Debug, thiserror::Error)]
pub enum RecursionError {
    /// One cycle, `data.p.f -> data.p.f`.
    #[error("{0}")]
    Cycle(String),
    /// regorus could not give its syntax tree as JSON.
    #[error("cannot read the syntax tree")]
    Ast(#[source] anyhow::Error),
    /// The syntax tree regorus gave is not JSON.
    #[error("cannot read the syntax tree")]
    AstJson(#[source] serde_json::Error),
}

/// `Err` names one cycle (`data.p.f -> data.p.f`) when the bundle has any.
pub fn check(engine: &regorus::Engine) -> Result<(), RecursionError> {
    let json = engine.get_ast_as_json().map_err(RecursionError::Ast)?;
    let modules: Value = serde_json::from_str(&json).map_err(RecursionError::AstJson)?;
    let graph = build(modules.as_array().map(Vec::as_slice).unwrap_or_default());
    match find_cycle(&graph) {
        Some(cycle) => Err(RecursionError::Cycle(cycle.join(" -> "))),
        None => Ok(()),
    }
}

/// The literal path of a reference: `data.a["b"][x].c` -> `[data, a, b]` (stops at the
/// first computed step).
fn chain(expr: &Value) -> Option<Vec<String>> {
    if let Some(var) = expr.get("Var") {
        return Some(vec![var.get("value")?.as_str()?.to_string()]);
    }
    if let Some(dot) = expr.get("RefDot") {
        let mut c = chain(dot.get("refr")?)?;
        c.push(dot.get("field")?.get(1)?.as_str()?.to_string());
        return Some(c);
    }
    if let Some(brack) = expr.get("RefBrack") {
        let mut c = chain(brack.get("refr")?)?;
        let literal = brack
            .get("index")
            .and_then(|i| i.get("String").or_else(|| i.get("RawString")))
            .and_then(|s| s.get("value"))
            .and_then(Value::as_str);
        // A computed step ends the literal path ([`literal`] cuts at the marker).
        c.push(literal.unwrap_or("\u{0}").to_string());
        return Some(c);
    }
    None
}

fn literal(mut c: Vec<String>) -> Vec<String> {
    if let Some(i) = c.iter().position(|s| s == "\u{0}") {
        c.truncate(i);
    }
    c
}

/// The source text a span covers.
fn span_text<'a>(span: &Value, contents: &'a str) -> Option<&'a str> {
    let start = span.get("start")?.as_u64()? as usize;
    let end = span.get("end")?.as_u64()? as usize;
    contents.get(start..end)
}

/// Every reference (as a literal path) under `node`, and every name `node` declares
/// locally (`x := ...`, `some x`, `some x in ...`, function arguments).
fn collect(
    node: &Value,
    contents: &str,
    refs: &mut Vec<Vec<String>>,
    locals: &mut BTreeSet<String>,
) {
    match node {
        Value::Object(map) => {
            if let Some(c) = chain(node) {
                refs.push(literal(c));
                // Computed indexes hold references of their own.
                let mut inner = node;
                while let Some(next) = inner.get("RefDot").or_else(|| inner.get("RefBrack")) {
                    if let Some(index) = next.get("index") {
                        collect(index, contents, refs, locals);
                    }
                    match next.get("refr") {
                        Some(r) => inner = r,
                        None => break,
                    }
                }
                return;
            }
            if let Some(assign) = map.get("AssignExpr") {
                if assign.get("op").and_then(Value::as_str) == Some("ColEq") {
                    declare(assign.get("lhs"), locals);
                }
            }
            if let Some(some) = map.get("SomeVars") {
                for span in some
                    .get("vars")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(name) = span_text(span, contents) {
                        locals.insert(name.to_string());
                    }
                }
            }
            if let Some(some) = map.get("SomeIn") {
                declare(some.get("key"), locals);
                declare(some.get("value"), locals);
            }
            if let Some(func) = map.get("Func") {
                for arg in func
                    .get("args")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    declare(Some(arg), locals);
                }
            }
            for (key, child) in map {
                if key != "span" && key != "source" {
                    collect(child, contents, refs, locals);
                }
            }
        }
        Value::Array(items) => {
            for child in items {
                collect(child, contents, refs, locals);
            }
        }
        _ => {}
    }
}

/// The variables a pattern binds (`x`, `[x, y]`, `{"k": x}`).
fn declare(pattern: Option<&Value>, locals: &mut BTreeSet<String>) {
    let Some(p) = pattern else { return };
    if let Some(name) = p
        .get("Var")
        .and_then(|v| v.get("value"))
        .and_then(Value::as_str)
    {
        locals.insert(name.to_string());
        return;
    }
    if let Some(items) = p
        .get("Array")
        .and_then(|a| a.get("items"))
        .and_then(Value::as_array)
    {
        for item in items {
            declare(Some(item), locals);
        }
    }
    if let Some(fields) = p
        .get("Object")
        .and_then(|o| o.get("fields"))
        .and_then(Value::as_array)
    {
        for field in fields {
            declare(field.get(2), locals);
        }
    }
}

// Long by design: per module, its package, import aliases and rules' heads and bodies
// become nodes and edges in one pass; the pieces share the aliases and the module text.
fn build(modules: &[Value]) -> Graph {
    let mut graph = Graph::new();
    for module in modules {
        let ast = &module["ast"];
        let contents = module["source"]["contents"].as_str().unwrap_or_default();
        let Some(package) = chain(&ast["package"]["refr"]).map(literal) else {
            continue;
        };
        let package = format!("data.{}", package.join("."));
        let mut aliases: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for import in ast["imports"].as_array().into_iter().flatten() {
            let Some(path) = chain(&import["refr"]).map(literal) else {
                continue;
            };
            let name = span_text(&import["as"], contents)
                .map(str::to_string)
                .or_else(|| path.last().cloned());
            if let (Some(name), Some("data")) = (name, path.first().map(String::as_str)) {
                aliases.insert(name, path);
            }
        }
        let rules: Vec<&Value> = ast["rules"].as_array().into_iter().flatten().collect();
        let head_ref = |rule: &Value| -> Option<Vec<String>> {
            if let Some(spec) = rule.get("Spec") {
                let head = spec.get("head")?;
                let inner = head
                    .get("Compr")
                    .or_else(|| head.get("Set"))
                    .or_else(|| head.get("Func"))?;
                return chain(inner.get("refr")?).map(literal);
            }
            chain(rule.get("Default")?.get("refr")?).map(literal)
        };
        let names: BTreeSet<String> = rules
            .iter()
            .filter_map(|r| head_ref(r)?.first().cloned())
            .collect();
        for rule in rules {
            let Some(head) = head_ref(rule) else { continue };
            let node = format!("{package}.{}", head.join("."));
            let mut refs = Vec::new();
            let mut locals = BTreeSet::new();
            collect(rule, contents, &mut refs, &mut locals);
            let edges = graph.entry(node.clone()).or_default();
            for r in refs {
                let Some(root) = r.first() else { continue };
                let path = if root == "data" {
                    r.join(".")
                } else if let Some(alias) = aliases.get(root) {
                    alias
                        .iter()
                        .chain(&r[1..])
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(".")
                } else if names.contains(root) && !locals.contains(root) {
                    format!("{package}.{}", r.join("."))
                } else {
                    continue;
                };
                edges.insert(path);
            }
            // The rule's own head is not a reference to itself.
            edges.remove(&node);
            let own: Vec<String> = head
                .iter()
                .scan(package.clone(), |acc, part| {
                    acc.push('.');
                    acc.push_str(part);
                    Some(acc.clone())
                })
                .collect();
            for prefix in own {
                edges.remove(&prefix);
            }
            // ...but a call to itself is.
            if calls_itself(rule, &head, &locals) {
                edges.insert(node.clone());
            }
        }
    }
    graph
}

/// Whether a rule's bodies name its own head (`f(x) := y if { y := f(x) }`): the head
/// removal above would otherwise hide the plainest recursion.
fn calls_itself(rule: &Value, head: &[String], locals: &BTreeSet<String>) -> bool {
    let Some(first) = head.first() else {
        return false;
    };
    if locals.contains(first) {
        return false;
    }
    let Some(spec) = rule.get("Spec") else {
        return false;
    };
    let mut refs = Vec::new();
    let mut scratch = BTreeSet::new();
    collect(&spec["bodies"], "", &mut refs, &mut scratch);
    if let Some(assign) = spec["head"]
        .as_object()
        .and_then(|h| h.values().next())
        .and_then(|h| h.get("assign"))
    {
        collect(assign, "", &mut refs, &mut scratch);
    }
    refs.iter().any(|r| r.first() == Some(first))
}

/// The rules a referenced path can reach: the rule itself, every rule under it (a
/// package or a computed step), or the rule it points inside.
fn targets<'a>(graph: &'a Graph, path: &str) -> impl Iterator<Item = &'a String> + 'a {
    let path = path.to_string();
    graph.keys().filter(move |node| {
        *node == &path
            || node.starts_with(&format!("{path}."))
            || path.starts_with(&format!("{node}."))
    })
}

fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut marks: BTreeMap<&String, Mark> = graph.keys().map(|k| (k, Mark::New)).collect();
    // Iterative DFS: a hostile bundle must not overflow this check's stack either.
    for start in graph.keys() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut stack: Vec<(&String, Vec<&String>)> = Vec::new();
        let next_of = |n: &String| -> Vec<&String> {
            graph[n]
                .iter()
                .flat_map(|p| targets(graph, p))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        marks.insert(start, Mark::Open);
        stack.push((start, next_of(start)));
        while let Some((node, pending)) = stack.last_mut() {
            let node = *node;
            match pending.pop() {
                Some(next) => match marks[next] {
                    Mark::Open => {
                        let at = stack.iter().position(|(n, _)| *n == next).unwrap_or(0);
                        let mut cycle: Vec<String> =
                            stack[at..].iter().map(|(n, _)| (*n).clone()).collect();
                        cycle.push(next.clone());
                        return Some(cycle);
                    }
                    Mark::New => {
                        marks.insert(next, Mark::Open);
                        let n = next_of(next);
                        stack.push((next, n));
                    }
                    Mark::Done => {}
                },
                None => {
                    marks.insert(node, Mark::Done);
                    stack.pop();
                }
            }
        }
    }
    None
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

    fn engine(files: &[&str]) -> regorus::Engine {
        let mut e = regorus::Engine::new();
        for (i, f) in files.iter().enumerate() {
            e.add_policy(format!("p{i}.rego"), (*f).to_string())
                .unwrap();
        }
        e
    }

    #[test]
    fn the_shipped_bundle_has_no_cycle() {
        let mut e = regorus::Engine::new();
        let mut stack = vec![std::path::PathBuf::from("policies")];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "rego") {
                    let text = std::fs::read_to_string(&p).unwrap();
                    e.add_policy(p.display().to_string(), text).unwrap();
                }
            }
        }
        check(&e).unwrap();
    }

    #[test]
    fn direct_mutual_and_cross_package_recursion_are_found() {
        let cases: [(&[&str], &str); 6] = [
            (
                &["package p\nf(x) := y if { y := f(x) }"],
                "data.p.f -> data.p.f",
            ),
            (&["package p\nf(x) := f(x)"], "data.p.f -> data.p.f"),
            (
                &["package p\na if b\nb if a"],
                "data.p.a -> data.p.b -> data.p.a",
            ),
            (
                &["package p\na if data.q.b", "package q\nb if data.p.a"],
                "data.p.a -> data.q.b -> data.p.a",
            ),
            (
                &[
                    "package p\nimport data.q as other\na if other.b",
                    "package q\nb if data.p[\"a\"]",
                ],
                "data.p.a -> data.q.b -> data.p.a",
            ),
            // A computed step reaches every rule under its prefix, itself included.
            (
                &["package p.rules.x\ndeny contains 1 if { some n; data.p.rules[n].deny }"],
                "data.p.rules.x.deny -> data.p.rules.x.deny",
            ),
        ];
        for (files, want) in cases {
            match check(&engine(files)) {
                Err(RecursionError::Cycle(cycle)) => assert_eq!(cycle, want, "{files:?}"),
                other => panic!("{files:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn locals_named_like_rules_and_plain_dependencies_are_not_cycles() {
        for files in [
            &["package p\nx := 1\ny if { x := 2; x > 1 }\nz := x + 1"][..],
            &["package p\nf(x) := x + 1\ng(y) := f(y)\nh := g(1)"],
            &["package p\norder := [1]\nidx(e) := i if { some i, v in order; v == e }"],
            &["package p\nimport data.q\na if q.b", "package q\nb := true"],
            &["package p\ndefault a := false\na if input.x"],
        ] {
            assert!(check(&engine(files)).is_ok(), "{files:?}");
        }
    }
}

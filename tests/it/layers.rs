//! The crate's layering, checked: every `crate::` path in `src/` must point
//! to a module of the same layer or a lower one, and the modules must not
//! form a cycle. ARCHITECTURE.md explains the layers; this table is their
//! one definition, and a module that is not in it fails the test, so a new
//! module gets a place on purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Lowest first. A module may use modules of its own layer (without a
/// cycle) and of the layers below.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "wire types",
        &[
            "spec",
            "limits",
            "protocol",
            "secret",
            "job_error",
            "sse",
            "project",
        ],
    ),
    ("confinement", &["process", "sandbox", "runtime"]),
    (
        "rendering",
        &[
            "narration",
            "config",
            "doctor",
            "animcache",
            "render",
            "scenes",
            "pool",
            "hls",
            "llm",
            "generate",
        ],
    ),
    (
        "state",
        &[
            "jobs", "storage", "events", "metrics", "cache", "api", "blobs",
        ],
    ),
    (
        "orchestration",
        &["webhooks", "control", "components", "executor", "bus"],
    ),
    ("API domain", &["service"]),
    (
        "edges",
        &["server", "client", "mcp", "cli", "bench", "load", "folder"],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

/// The top-level modules that `code` names through `crate::` paths,
/// including those inside `use crate::{a, b::c}` groups. Comments are
/// skipped: a doc link is not a dependency.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    if let Some(name) = ident(item.trim()) {
                        found.insert(name);
                    }
                }
            } else if let Some(name) = ident(rest) {
                found.insert(name);
            }
        }
    }
    found
}

fn ident(s: &str) -> Option<String> {
    let name: String = s
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

/// Every module's dependencies on other modules of the crate.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel.components().next().unwrap().as_os_str();
            let module = top.to_str().unwrap().trim_end_matches(".rs").to_owned();
            if module == "lib" || module == "main" || path.extension() != Some("rs".as_ref()) {
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            let deps = graph.entry(module.clone()).or_default();
            deps.extend(crate_paths(&code).into_iter().filter(|d| *d != module));
        }
    }
    graph
}

/// A cycle in the graph, as the path that closes it.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(dep, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

#[test]
fn every_module_has_a_layer() {
    let unplaced: Vec<_> = graph()
        .into_keys()
        .filter(|m| layer_of(m).is_none())
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules without a layer (add them to LAYERS in tests/it/layers.rs and to ARCHITECTURE.md): {unplaced:?}"
    );
}

#[test]
fn no_dependency_runs_upward() {
    let mut upward = Vec::new();
    for (module, deps) in graph() {
        let Some(own) = layer_of(&module) else {
            continue;
        };
        for dep in deps {
            if let Some(theirs) = layer_of(&dep).filter(|l| *l > own) {
                upward.push(format!(
                    "{module} ({}) -> {dep} ({})",
                    LAYERS[own].0, LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "upward dependencies:\n{}",
        upward.join("\n")
    );
}

#[test]
fn modules_form_no_cycle() {
    if let Some(cycle) = find_cycle(&graph()) {
        panic!("module cycle: {}", cycle.join(" -> "));
    }
}

#[test]
fn the_path_reader_sees_groups_and_skips_comments() {
    let code = "use crate::{jobs::Store, spec};\n// crate::server in a comment\nlet x = crate::render::new();";
    let got: Vec<_> = crate_paths(code).into_iter().collect();
    assert_eq!(got, ["jobs", "render", "spec"]);
}

#[test]
fn a_cycle_is_found() {
    let mut g = BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(find_cycle(&g).unwrap(), ["a", "b", "c", "a"]);
    g.insert("c".to_owned(), BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}

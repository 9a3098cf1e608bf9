//! Tidy: the architecture invariants of ARCHITECTURE.md, enforced from `cargo metadata` and
//! the sources on every `cargo test`.
//!
//! - **One owner per dependency**: only `naac-net` uses libp2p, only `naac-sandbox` uses
//!   wasmtime, only the storage crates use SQL clients.
//! - **Wire types owned by proto, a network crate without databases or sandboxes**:
//!   `naac-proto` and `naac-net` link no rusqlite, postgres or wasmtime, not even
//!   transitively, and `naac-proto` does not depend on the ledger or the market.
//! - **Sans-IO cores**: `naac-types`, `naac-sched`, `naac-market`, `naac-ledger`,
//!   `naac-store` and the simulator that drives them, `naac-sim`, link no async runtime,
//!   network, sandbox or database.
//! - **Files a reader can hold**: no `src` file is over [`MAX_LINES`] lines before its
//!   `#[cfg(test)]` module (test-only files, `tests.rs` and `*_tests.rs`, are exempt).
//! - **Every module says what it is**: every `src` file starts with a `//!` doc.
//! - **Parts do not call back into their shell**: the requester's and the provider's parts
//!   import nothing from the session or node that drives them (the imports form no cycle).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Most lines a `src` file may have before its `#[cfg(test)]` module.
const MAX_LINES: usize = 800;

/// Crates that may not link these packages, directly or transitively (normal dependencies).
const FORBIDDEN: &[(&[&str], &[&str])] = &[
    (
        &["naac-proto", "naac-net"],
        &[
            "rusqlite",
            "libsqlite3-sys",
            "postgres",
            "tokio-postgres",
            "wasmtime",
        ],
    ),
    (
        &[
            "naac-types",
            "naac-sched",
            "naac-market",
            "naac-ledger",
            "naac-store",
            "naac-sim",
        ],
        &[
            "tokio",
            "libp2p",
            "wasmtime",
            "rusqlite",
            "libsqlite3-sys",
            "postgres",
            "naac-net",
            "naac-proto",
        ],
    ),
    (&["naac-proto"], &["naac-ledger", "naac-market"]),
];

/// Packages only these workspace crates may depend on directly (normal dependencies).
const OWNERS: &[(&str, &[&str])] = &[
    ("libp2p", &["naac-net"]),
    ("wasmtime", &["naac-sandbox"]),
    ("wasmtime-wasi", &["naac-sandbox"]),
    ("postgres", &["naac-bank"]),
    // The bank's ledger stores, the requester's reputation store and the job queue.
    ("rusqlite", &["naac-bank", "naac-node"]),
    // Only the API crate knows HTTP: the node's server and the CLI's client.
    ("axum", &["naac-api"]),
    ("reqwest", &["naac-api"]),
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The workspace's dependency graph: package names, and each package's normal
/// dependencies by name.
struct Graph {
    members: BTreeSet<String>,
    deps: BTreeMap<String, BTreeSet<String>>,
}

impl Graph {
    fn load() -> Self {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1"])
            .current_dir(root())
            .output()
            .expect("run cargo metadata");
        assert!(
            out.status.success(),
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
        Self::from_metadata(&v)
    }

    fn from_metadata(v: &Value) -> Self {
        let mut names = BTreeMap::new();
        for p in v["packages"].as_array().expect("packages") {
            names.insert(
                p["id"].as_str().expect("id").to_string(),
                p["name"].as_str().expect("name").to_string(),
            );
        }
        let members = v["workspace_members"]
            .as_array()
            .expect("workspace_members")
            .iter()
            .map(|id| names[id.as_str().expect("id")].clone())
            .collect();
        let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for node in v["resolve"]["nodes"].as_array().expect("resolve nodes") {
            let name = names[node["id"].as_str().expect("id")].clone();
            let entry = deps.entry(name).or_default();
            for d in node["deps"].as_array().expect("deps") {
                // Normal dependencies only: tests and build scripts may use anything.
                let normal = d["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].is_null());
                if normal {
                    entry.insert(names[d["pkg"].as_str().expect("pkg")].clone());
                }
            }
        }
        Self { members, deps }
    }

    /// Every package `name` links, transitively.
    fn closure(&self, name: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.to_string()];
        while let Some(n) = todo.pop() {
            for d in self.deps.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        seen
    }

    /// A path from `from` to `to` through normal dependencies, for the error message.
    fn path(&self, from: &str, to: &str) -> Vec<String> {
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut todo = std::collections::VecDeque::from([from.to_string()]);
        while let Some(n) = todo.pop_front() {
            if n == to {
                let mut path = vec![n.clone()];
                let mut at = n;
                while let Some(p) = prev.get(&at) {
                    path.push(p.clone());
                    at = p.clone();
                }
                path.reverse();
                return path;
            }
            for d in self.deps.get(&n).into_iter().flatten() {
                if d != from && !prev.contains_key(d) {
                    prev.insert(d.clone(), n.clone());
                    todo.push_back(d.clone());
                }
            }
        }
        Vec::new()
    }

    fn violations(&self) -> Vec<String> {
        let mut v = Vec::new();
        for (crates, banned) in FORBIDDEN {
            for c in *crates {
                if !self.members.contains(*c) {
                    continue;
                }
                let all = self.closure(c);
                for b in *banned {
                    if all.contains(*b) {
                        v.push(format!(
                            "{c} must not depend on {b}, but does: {}",
                            self.path(c, b).join(" -> ")
                        ));
                    }
                }
            }
        }
        for (dep, owners) in OWNERS {
            for m in &self.members {
                let direct = self.deps.get(m).is_some_and(|d| d.contains(*dep));
                if direct && !owners.contains(&m.as_str()) {
                    v.push(format!(
                        "{m} depends on {dep} directly; only {} may",
                        owners.join(", ")
                    ));
                }
            }
        }
        v
    }
}

/// Size and doc violations of one source file.
fn file_violations(path: &str, text: &str) -> Vec<String> {
    let mut v = Vec::new();
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if !first.starts_with("//!") {
        v.push(format!(
            "{path}: does not start with a `//!` doc saying what the module owns"
        ));
    }
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if name != "tests.rs" && !name.ends_with("_tests.rs") {
        let before = text
            .lines()
            .position(|l| l.trim_start().starts_with("#[cfg(test)]"))
            .unwrap_or_else(|| text.lines().count());
        if before > MAX_LINES {
            v.push(format!(
                "{path}: {before} lines before its #[cfg(test)] module; the limit is {MAX_LINES}: split it along its seams"
            ));
        }
    }
    v
}

/// The IO shells of `naac-node` and the modules that make them up; every other module of
/// the same directory is a part that must not import them.
const SHELLS: &[(&str, &[&str])] = &[
    (
        "crates/naac-node/src/requester",
        &[
            "mod.rs",
            "session.rs",
            "events.rs",
            "dispatch.rs",
            "accepted.rs",
            "asks.rs",
        ],
    ),
    (
        "crates/naac-node/src/provider",
        &[
            "mod.rs",
            "node.rs",
            "control.rs",
            "paid.rs",
            "services.rs",
            "replies.rs",
        ],
    ),
];

/// Imports of a shell module by a part.
fn cycle_violations(path: &str, text: &str, shell: &[&str]) -> Vec<String> {
    let name = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if shell.contains(&name) {
        return Vec::new();
    }
    // Every module named after `super::`, alone or in a `super::{a, b::c}` group.
    let mut named = Vec::new();
    for (i, _) in text.match_indices("super::") {
        let rest = &text[i + "super::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            named.extend(
                group
                    .split(',')
                    .map(|item| item.trim().split("::").next().unwrap_or("")),
            );
        } else {
            let end = rest
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            named.push(&rest[..end]);
        }
    }
    shell
        .iter()
        .filter(|m| **m != "mod.rs")
        .map(|m| m.trim_end_matches(".rs"))
        .filter(|module| named.contains(module))
        .map(|module| {
            format!(
                "{path}: a part imports its shell `{module}`; return what should happen instead"
            )
        })
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn crate_graph_keeps_its_rules() {
    let g = Graph::load();
    for c in ["naac-net", "naac-proto", "naac-sched", "naac-sandbox"] {
        assert!(g.members.contains(c), "{c} is a workspace member");
    }
    let v = g.violations();
    assert!(
        v.is_empty(),
        "crate graph rules broken:\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn source_files_are_small_and_documented() {
    let root = root();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(root.join("crates"))
        .expect("crates/")
        .flatten()
    {
        rust_files(&entry.path().join("src"), &mut files);
    }
    assert!(
        files.len() > 50,
        "found the sources ({} files)",
        files.len()
    );
    let mut v = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).expect("read a source file");
        let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
        v.extend(file_violations(&rel, &text));
    }
    for (dir, shell) in SHELLS {
        let mut parts = Vec::new();
        rust_files(&root.join(dir), &mut parts);
        assert!(parts.len() > 3, "found the parts of {dir}");
        for f in parts {
            let text = std::fs::read_to_string(&f).expect("read a source file");
            let rel = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
            v.extend(cycle_violations(&rel, &text, shell));
        }
    }
    v.sort();
    assert!(v.is_empty(), "source rules broken:\n  {}", v.join("\n  "));
}

#[test]
fn the_checks_catch_violations() {
    // A long file, counted up to its tests; an undocumented one.
    let long = format!(
        "//! doc\n{}#[cfg(test)]\nmod tests {{}}\n",
        "fn f() {}\n".repeat(800)
    );
    assert_eq!(file_violations("a.rs", &long).len(), 1);
    let ok = format!(
        "//! doc\n{}#[cfg(test)]\n{}",
        "x\n".repeat(700),
        "y\n".repeat(900)
    );
    assert!(file_violations("a.rs", &ok).is_empty());
    assert!(
        file_violations("tests.rs", &long).is_empty(),
        "test files are exempt"
    );
    assert_eq!(file_violations("b.rs", "\nuse x;\n").len(), 1);
    // A part that reaches back into its shell; the shell itself may use anything.
    let shell: &[&str] = &["mod.rs", "session.rs", "events.rs"];
    assert_eq!(
        cycle_violations("r/tally.rs", "use super::session::Session;", shell).len(),
        1
    );
    assert_eq!(
        cycle_violations("r/tally.rs", "use super::{events, session};", shell).len(),
        2
    );
    assert!(cycle_violations("r/events.rs", "use super::session::Session;", shell).is_empty());
    assert!(cycle_violations("r/tally.rs", "use super::writer::Write;", shell).is_empty());
    // A network crate that reaches a database through another crate; a second owner of
    // libp2p.
    let meta = serde_json::json!({
        "packages": [
            {"id": "net", "name": "naac-net"}, {"id": "proto", "name": "naac-proto"},
            {"id": "ledger", "name": "naac-ledger"}, {"id": "sql", "name": "rusqlite"},
            {"id": "p2p", "name": "libp2p"}, {"id": "node", "name": "naac-node"}
        ],
        "workspace_members": ["net", "proto", "ledger", "node"],
        "resolve": {"nodes": [
            {"id": "net", "deps": [{"pkg": "proto", "dep_kinds": [{"kind": null}]},
                                   {"pkg": "p2p", "dep_kinds": [{"kind": null}]}]},
            {"id": "proto", "deps": [{"pkg": "ledger", "dep_kinds": [{"kind": null}]}]},
            {"id": "ledger", "deps": [{"pkg": "sql", "dep_kinds": [{"kind": null}]},
                                      {"pkg": "p2p", "dep_kinds": [{"kind": "dev"}]}]},
            {"id": "node", "deps": [{"pkg": "p2p", "dep_kinds": [{"kind": null}]}]},
            {"id": "sql", "deps": []}, {"id": "p2p", "deps": []}
        ]}
    });
    let v = Graph::from_metadata(&meta).violations();
    assert!(
        v.contains(&"naac-net must not depend on rusqlite, but does: naac-net -> naac-proto -> naac-ledger -> rusqlite".to_string()),
        "{v:#?}"
    );
    assert!(
        v.iter()
            .any(|m| m.starts_with("naac-proto must not depend on naac-ledger"))
    );
    assert!(
        v.iter()
            .any(|m| m.starts_with("naac-ledger must not depend on rusqlite"))
    );
    assert!(v.contains(&"naac-node depends on libp2p directly; only naac-net may".to_string()));
    assert!(v.contains(
        &"naac-ledger depends on rusqlite directly; only naac-bank, naac-node may".to_string()
    ));
    assert!(
        !v.iter()
            .any(|m| m.starts_with("naac-ledger depends on libp2p")),
        "dev deps are free"
    );
}

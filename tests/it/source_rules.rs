//! Rules about the source itself that no compiler lint expresses.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The library code of a file: everything before its `#[cfg(test)]` module, which by the
/// house convention comes last.
fn library_lines(text: &str) -> Vec<(usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l))
        .collect()
}

/// A discarded result (`let _ = …`, or a statement ending in `.ok();`) is an error swallowed on
/// purpose, so it says why: a comment within the three lines above. Everything else is handled
/// or propagated (`?`). Clippy keeps `Result::unwrap_or_default` out (clippy.toml).
#[test]
fn every_discarded_result_says_why() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    rust_files(&root.join("contrib/portkey-sim/src"), &mut files);
    files.sort();
    let mut bare = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines = library_lines(&text);
        for (k, (n, line)) in lines.iter().enumerate() {
            let t = line.trim();
            let discards = t.starts_with("let _ =") || t.ends_with(".ok();");
            if !discards {
                continue;
            }
            let explained = lines[k.saturating_sub(3)..k]
                .iter()
                .any(|(_, l)| l.trim_start().starts_with("//"));
            if !explained {
                bare.push(format!(
                    "{}:{n}: {t}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "{} discarded result(s) without a comment saying why (handle or propagate them, or say \
         why dropping is right):\n{}",
        bare.len(),
        bare.join("\n")
    );
}

/// The library's modules from the bottom up (src/lib.rs, "Layout"). A module may use modules of
/// its own layer or below, never above; and no two modules use each other, directly or round a
/// longer loop. Doc links (`//` lines) are not uses.
const LAYERS: &[&[&str]] = &[
    &["email", "roles", "token", "metrics", "net"],
    &["config", "envfile"],
    &["scim", "fuzzing"],
    &["store"],
    &["portkey"],
    &["policy"],
    &["scheduler", "reconcile"],
    &["admin_api"],
    &["http"],
    &["app", "demo"],
    &["cli", "init", "preflight"],
];

/// The top-level modules a library module's code names: `crate::x…` and `crate::{x, …}`.
fn crate_uses(root: &Path, module: &str) -> std::collections::BTreeSet<String> {
    let mut files = Vec::new();
    let file = root.join(format!("src/{module}.rs"));
    if file.exists() {
        files.push(file);
    }
    let dir = root.join(format!("src/{module}"));
    if dir.is_dir() {
        rust_files(&dir, &mut files);
    }
    assert!(!files.is_empty(), "module {module} of LAYERS has no source");
    let mut uses = std::collections::BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (_, line) in library_lines(&text) {
            let code = line.split("//").next().unwrap_or("");
            for (i, _) in code.match_indices("crate::") {
                let rest = &code[i + "crate::".len()..];
                let names: Vec<&str> = match rest.strip_prefix('{') {
                    Some(group) => group.split([',', '}']).collect(),
                    None => vec![rest],
                };
                for name in names {
                    let name: String = name
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != module {
                        uses.insert(name);
                    }
                }
            }
        }
    }
    uses
}

#[test]
fn modules_use_only_their_layer_and_below_without_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let layer_of = |m: &str| LAYERS.iter().position(|l| l.contains(&m));
    // Every top-level module of the library has a place in the picture.
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    for line in lib.lines() {
        if let Some(m) = line.trim().strip_prefix("pub mod ") {
            let m = m.trim_end_matches(';');
            assert!(
                layer_of(m).is_some(),
                "src/lib.rs declares {m}, which LAYERS does not place"
            );
        }
    }
    let mut graph = std::collections::BTreeMap::new();
    let mut upward = Vec::new();
    for (level, layer) in LAYERS.iter().enumerate() {
        for &m in *layer {
            let uses = crate_uses(root, m);
            for u in &uses {
                match layer_of(u) {
                    Some(l) if l > level => upward.push(format!("{m} uses {u}, a layer above it")),
                    Some(_) => {}
                    None => upward.push(format!("{m} uses {u}, which LAYERS does not place")),
                }
            }
            graph.insert(m.to_string(), uses);
        }
    }
    assert!(upward.is_empty(), "{}", upward.join("\n"));
    // Depth-first search for a loop among the modules (within a layer, where the order allows it).
    fn visit(
        m: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("modules use each other: {}", cycle.join(" -> "));
        }
    }
    // The two the design names: storage and reconciling never reach into the HTTP servers.
    for m in ["store", "reconcile"] {
        assert!(!graph[m].contains("http"), "{m} uses http");
    }
}

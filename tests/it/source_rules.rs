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

//! Every snippet an operator copies from README.md and docs/*.md is checked against this build,
//! so the documentation cannot drift from the binary:
//!
//! - each ```toml block is a config, or a piece of one. A block with `[portkey] base_url` is a
//!   whole config and must load as one. Any other block is a fragment, and must give a config that
//!   loads when added to each shipped config (config/scim-sync.example.toml, contrib/config/okta.toml,
//!   contrib/config/entra.toml, contrib/container/scim-sync.toml): pasted at the end (the default;
//!   a table the file already has is then a duplicate-key error, as it is for the reader), or, after
//!   a `<!-- edit -->` comment, as new values for keys in the file's own tables.
//! - each `scim-sync …` command in a ```sh, ```bash, ```shell or ```console block parses with the
//!   binary's command line (`scim_sync::cli::Cli`).
//!
//! A block preceded by `<!-- not-tested: reason -->` is skipped (and the reason printed).

use crate::common::test_env;
use clap::Parser;
use scim_sync::cli::Cli;
use scim_sync::config::Config;
use std::path::{Path, PathBuf};

/// The configs a reader is told to start from; a fragment must fit each of them.
const SHIPPED_CONFIGS: [&str; 4] = [
    "config/scim-sync.example.toml",
    "contrib/config/okta.toml",
    "contrib/config/entra.toml",
    "contrib/container/scim-sync.toml",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Markdown files whose snippets are checked.
fn doc_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

#[derive(Debug)]
struct Block {
    /// `file:line` of the opening fence.
    at: String,
    lang: String,
    /// The HTML comment on the line before the fence (blank lines between allowed), trimmed of
    /// `<!--` and `-->`.
    marker: Option<String>,
    /// Line numbers (1-based, in the file) and text, fence indentation removed.
    lines: Vec<(usize, String)>,
}

impl Block {
    fn text(&self) -> String {
        let mut s = String::new();
        for (_, l) in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    fn skip_reason(&self) -> Option<&str> {
        self.marker
            .as_deref()
            .and_then(|m| m.strip_prefix("not-tested:"))
            .map(str::trim)
    }
}

/// The fenced code blocks of a Markdown file, with their info string's first word.
fn blocks(path: &Path) -> Vec<Block> {
    let text = std::fs::read_to_string(path).unwrap();
    let name = path
        .strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string();
    let mut out = Vec::new();
    let mut last_comment: Option<String> = None;
    let mut open: Option<(usize, usize, Block)> = None; // (indent, fence length, block)
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let fence_len = trimmed.chars().take_while(|&c| c == '`').count();
        if let Some((ind, len, mut block)) = open.take() {
            if fence_len >= len && trimmed[fence_len..].trim().is_empty() {
                out.push(block);
            } else {
                let strip = line
                    .char_indices()
                    .take_while(|&(j, c)| j < ind && c == ' ')
                    .count();
                block.lines.push((n, line[strip..].to_string()));
                open = Some((ind, len, block));
            }
            continue;
        }
        if fence_len >= 3 {
            let lang = trimmed[fence_len..]
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_lowercase();
            open = Some((
                indent,
                fence_len,
                Block {
                    at: format!("{name}:{n}"),
                    lang,
                    marker: last_comment.take(),
                    lines: Vec::new(),
                },
            ));
            continue;
        }
        if let Some(c) = trimmed
            .strip_prefix("<!--")
            .and_then(|r| r.trim_end().strip_suffix("-->"))
        {
            last_comment = Some(c.trim().to_string());
        } else if !trimmed.is_empty() {
            last_comment = None;
        }
    }
    assert!(open.is_none(), "{name}: a code fence is not closed");
    out
}

// ---- TOML ------------------------------------------------------------------------------------

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap()
}

/// Loads `table` as a config, with the store in `dir` (whether a store directory exists is a
/// property of the host, not of the snippet) and the secrets of the tests' environment.
fn load(mut table: toml::Table, dir: &Path) -> Result<Config, String> {
    let store = table
        .entry("store")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(t) = store {
        t.insert(
            "path".into(),
            toml::Value::String(dir.join("store.redb").display().to_string()),
        );
    }
    let text = toml::to_string(&table).map_err(|e| e.to_string())?;
    Config::from_toml(&text, Path::new("snippet.toml"), &test_env()).map_err(|e| e.to_string())
}

/// `fragment`'s keys replace or join those of `base`, table by table.
fn merge(base: &mut toml::Table, fragment: &toml::Table) {
    for (k, v) in fragment {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(f)) => merge(b, f),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn is_whole_config(t: &toml::Table) -> bool {
    t.get("portkey")
        .and_then(toml::Value::as_table)
        .is_some_and(|p| p.contains_key("base_url"))
}

/// What is wrong with a ```toml block, if anything.
fn check_toml(block: &Block, dir: &Path) -> Vec<String> {
    let text = block.text();
    let fragment: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return vec![format!("not valid TOML: {e}")],
    };
    if is_whole_config(&fragment) {
        return match load(fragment, dir) {
            Ok(_) => vec![],
            Err(e) => vec![format!("as a whole config: {e}")],
        };
    }
    let edit = block.marker.as_deref() == Some("edit");
    let mut problems = Vec::new();
    for base_file in SHIPPED_CONFIGS {
        let base = read(base_file);
        let merged: Result<toml::Table, String> = if edit {
            base.parse::<toml::Table>()
                .map(|mut t| {
                    merge(&mut t, &fragment);
                    t
                })
                .map_err(|e| e.to_string())
        } else {
            // What a reader gets by pasting the snippet at the end of the file.
            format!("{base}\n{text}")
                .parse::<toml::Table>()
                .map_err(|e| {
                    format!("{e} (a table the file already has: mark the block <!-- edit --> and say to change the keys there)")
                })
        };
        let how = if edit { "edited into" } else { "pasted into" };
        match merged.and_then(|t| load(t, dir).map(|_| ())) {
            Ok(()) => {}
            Err(e) => problems.push(format!("{how} {base_file}: {e}")),
        }
    }
    problems
}

// ---- commands --------------------------------------------------------------------------------

/// Shell words of one command line, split into simple commands at `|`, `&&`, `||`, `;` and `&`.
/// Quotes are removed, `$(…)` and backquotes stay inside their word, `# comment` ends the line.
fn simple_commands(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let end_word = |word: &mut String, in_word: &mut bool, cmds: &mut Vec<Vec<String>>| {
        if *in_word {
            cmds.last_mut().unwrap().push(std::mem::take(word));
            *in_word = false;
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(n) = chars.next() {
                                word.push(n);
                            }
                        }
                        _ => word.push(c),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    word.push(n);
                }
            }
            '$' if chars.peek() == Some(&'(') => {
                in_word = true;
                word.push('$');
                let mut depth = 0;
                for c in chars.by_ref() {
                    word.push(c);
                    match c {
                        '(' => depth += 1,
                        ')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
            }
            '`' => {
                in_word = true;
                word.push(c);
                for c in chars.by_ref() {
                    word.push(c);
                    if c == '`' {
                        break;
                    }
                }
            }
            '#' if !in_word => break,
            '|' | '&' | ';' => {
                end_word(&mut word, &mut in_word, &mut commands);
                if chars.peek() == Some(&c) {
                    chars.next();
                }
                commands.push(Vec::new());
            }
            c if c.is_whitespace() => end_word(&mut word, &mut in_word, &mut commands),
            _ => {
                in_word = true;
                word.push(c);
            }
        }
    }
    end_word(&mut word, &mut in_word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

/// The arguments after `scim-sync` (or `cargo run … --`) in a simple command, redirections removed.
fn scim_sync_args(words: &[String]) -> Option<Vec<String>> {
    let mut i = 0;
    while i < words.len() {
        let w = words[i].as_str();
        let assignment = w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if assignment || matches!(w, "sudo" | "env" | "exec" | "time" | "export") {
            i += 1;
        } else {
            break;
        }
    }
    let command = words.get(i)?;
    let rest = if command == "scim-sync" || command.ends_with("/scim-sync") {
        &words[i + 1..]
    } else if command == "cargo" && words.get(i + 1).is_some_and(|w| w == "run") {
        let dashes = words[i..].iter().position(|w| w == "--")?;
        &words[i + dashes + 1..]
    } else {
        return None;
    };
    let mut args = Vec::new();
    let mut skip_next = false;
    for w in rest {
        if skip_next {
            skip_next = false;
            continue;
        }
        let redirect = w.trim_start_matches(|c: char| c.is_ascii_digit());
        if redirect.starts_with('>') || redirect.starts_with('<') {
            // `> file` takes the next word; `>file`, `2>&1` do not.
            skip_next =
                redirect.trim_start_matches(['>', '<', '&']).is_empty() && !redirect.contains('&');
            continue;
        }
        args.push(w.clone());
    }
    Some(args)
}

/// Command lines of a shell block: comments dropped, `\` continuations joined; in a console
/// block only the lines after a `$ ` prompt.
fn command_lines(block: &Block) -> Vec<(usize, String)> {
    let console = block.lang == "console";
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (n, line) in &block.lines {
        let line = if let Some((start, mut acc)) = pending.take() {
            acc.push(' ');
            acc.push_str(line.trim());
            (start, acc)
        } else {
            let t = line.trim();
            let t = if console {
                match t.strip_prefix("$ ") {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                t
            };
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            (*n, t.to_string())
        };
        if let Some(stripped) = line.1.strip_suffix('\\') {
            pending = Some((line.0, stripped.trim_end().to_string()));
        } else {
            out.push(line);
        }
    }
    out.extend(pending);
    out
}

enum Parsed {
    Ok,
    Err(String),
}

fn parse_command(args: &[String], doc_exports_config: bool) -> Parsed {
    if args.is_empty() {
        return Parsed::Err("`scim-sync` without a subcommand".into());
    }
    let args = args.to_vec();
    let argv = std::iter::once("scim-sync".to_string()).chain(args.iter().cloned());
    let result = match Cli::try_parse_from(argv.clone()) {
        Err(e)
            if e.kind() == clap::error::ErrorKind::MissingRequiredArgument
                && doc_exports_config
                && !args.iter().any(|a| a == "--config" || a == "-c") =>
        {
            // The page exported SCIM_SYNC_CONFIG for these commands, and clap reads it from the
            // environment; this process does not have it.
            Cli::try_parse_from(argv.chain(["--config".to_string(), "x.toml".to_string()]))
        }
        r => r,
    };
    match result {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) => {}
        Err(e) => return Parsed::Err(e.to_string().lines().next().unwrap_or("").to_string()),
    }
    Parsed::Ok
}

// ---- the test --------------------------------------------------------------------------------

#[test]
fn every_toml_and_command_snippet_in_the_docs_works_with_this_build() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let (mut tomls, mut commands, mut skipped) = (0, 0, 0);
    for file in doc_files() {
        let page = std::fs::read_to_string(&file).unwrap();
        let exports_config = page.contains("SCIM_SYNC_CONFIG=");
        for block in blocks(&file) {
            if let Some(reason) = block.skip_reason() {
                skipped += 1;
                eprintln!("{}: not tested: {reason}", block.at);
                continue;
            }
            match block.lang.as_str() {
                "toml" => {
                    tomls += 1;
                    for p in check_toml(&block, dir.path()) {
                        failures.push(format!("{} (toml): {p}", block.at));
                    }
                }
                "sh" | "bash" | "shell" | "console" => {
                    let name = block.at.split(':').next().unwrap_or("").to_string();
                    for (n, line) in command_lines(&block) {
                        for words in simple_commands(&line) {
                            let Some(args) = scim_sync_args(&words) else {
                                continue;
                            };
                            commands += 1;
                            match parse_command(&args, exports_config) {
                                Parsed::Ok => {}
                                Parsed::Err(e) => {
                                    failures.push(format!("{name}:{n}: `{line}`: {e}"));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    eprintln!(
        "doc snippets: {tomls} toml block(s), {commands} scim-sync command(s), \
         {skipped} block(s) marked not-tested"
    );
    assert!(
        tomls > 0 && commands > 0,
        "no snippets found: is the extraction broken?"
    );
    assert!(
        failures.is_empty(),
        "{} doc snippet(s) do not work with this build:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- the checker's own pieces ------------------------------------------------------------------

#[test]
fn shell_words_split_like_a_shell() {
    let c = simple_commands(
        r#"printf %s "$NEW" | scim-sync hash-token --x 'a b' && echo ok # a comment"#,
    );
    assert_eq!(
        c,
        vec![
            vec!["printf", "%s", "$NEW"],
            vec!["scim-sync", "hash-token", "--x", "a b"],
            vec!["echo", "ok"],
        ]
    );
    let c = simple_commands("scim-sync backup /b/s-$(date +%Y%m%dT%H%M%S).redb 2>&1 > out");
    assert_eq!(
        scim_sync_args(&c[0]).unwrap(),
        vec!["backup", "/b/s-$(date +%Y%m%dT%H%M%S).redb"]
    );
    let c = simple_commands("SCIM_SYNC_LOG=debug cargo run --release -- check-config --config f");
    assert_eq!(
        scim_sync_args(&c[0]).unwrap(),
        vec!["check-config", "--config", "f"]
    );
    assert!(scim_sync_args(&simple_commands("systemctl stop scim-sync")[0]).is_none());
}

#[test]
fn the_checker_catches_a_pasted_table_the_shipped_configs_already_have() {
    let dir = tempfile::tempdir().unwrap();
    let block = |marker: Option<&str>, text: &str| Block {
        at: "t.md:1".into(),
        lang: "toml".into(),
        marker: marker.map(str::to_string),
        lines: text
            .lines()
            .enumerate()
            .map(|(i, l)| (i + 1, l.to_string()))
            .collect(),
    };
    let pasted = check_toml(&block(None, "[sync]\ndry_run = true\n"), dir.path());
    assert!(
        pasted
            .iter()
            .any(|p| p.contains("okta.toml") && p.contains("duplicate")),
        "{pasted:?}"
    );
    assert!(check_toml(&block(Some("edit"), "[sync]\ndry_run = true\n"), dir.path()).is_empty());
    let unknown = check_toml(
        &block(Some("edit"), "[sync]\ndry_runs = true\n"),
        dir.path(),
    );
    assert_eq!(unknown.len(), SHIPPED_CONFIGS.len(), "{unknown:?}");
    assert!(!parse_command(&["nonsense".to_string()], false).is_ok());
    assert!(parse_command(&["status".to_string()], false).is_ok());
}

impl Parsed {
    fn is_ok(&self) -> bool {
        !matches!(self, Parsed::Err(_))
    }
}

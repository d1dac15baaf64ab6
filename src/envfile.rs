//! Secrets files in the format of systemd's `EnvironmentFile=` (`KEY=VALUE` lines), read by
//! `check-config --env-file` and `serve --env-file`, so that what the service will see under
//! systemd can be checked from a shell, and a container or a plain `serve` can use the same
//! file `scim-sync init` writes.
//!
//! The subset read here: blank lines and lines starting with `#` or `;` are skipped; a value
//! is taken as written (surrounding whitespace trimmed), or from inside one pair of single or
//! double quotes on the same line. A line that is not `NAME=VALUE` is an error naming the line:
//! systemd would skip it silently (`export NAME=...` is the usual case), and the daemon would
//! then start without that secret.

use crate::config::{ConfigWarning, Env, ProcessEnv};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum EnvFileError {
    #[error("cannot read env file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("env file {path} line {line}: {problem}. Fix: {fix}")]
    Line {
        path: PathBuf,
        line: usize,
        problem: String,
        fix: String,
    },
}

/// The variables of one env file, in front of the process environment: a variable the file
/// sets (to something other than blanks) wins, anything else comes from the environment.
#[derive(Debug, Clone)]
pub struct EnvFile {
    path: PathBuf,
    vars: HashMap<String, String>,
    /// The file is readable by others than its owner.
    pub warnings: Vec<ConfigWarning>,
}

impl EnvFile {
    pub fn read(path: &Path) -> Result<Self, EnvFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| EnvFileError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let mut file = Self::parse(&text, path)?;
        file.warnings.extend(mode_warning(path));
        Ok(file)
    }

    /// Parses env-file text; `origin` only names the file in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self, EnvFileError> {
        let mut vars = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let err = |problem: String, fix: &str| EnvFileError::Line {
                path: origin.to_path_buf(),
                line: i + 1,
                problem,
                fix: fix.to_string(),
            };
            let Some((name, value)) = line.split_once('=') else {
                return Err(err(
                    "not a NAME=VALUE line".into(),
                    "write NAME=VALUE, or start the line with # to comment it out",
                ));
            };
            let name = name.trim();
            if let Some(rest) = name.strip_prefix("export ") {
                return Err(err(
                    format!(
                        "'export {}' is shell syntax; systemd would skip this line",
                        rest.trim()
                    ),
                    "drop the word export (`. FILE` in a shell needs `set -a` around it instead)",
                ));
            }
            if name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(err(
                    format!("'{name}' is not a variable name"),
                    "use letters, digits and _ only, e.g. PORTKEY_API_KEY=...",
                ));
            }
            let value = unquote(value.trim()).ok_or_else(|| {
                err(
                    "the value's quotes are not closed on this line".into(),
                    "close the quote, or write the value without quotes",
                )
            })?;
            vars.insert(name.to_string(), value);
        }
        Ok(Self {
            path: origin.to_path_buf(),
            vars,
            warnings: Vec::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value the file gives `name`, if it gives a non-blank one.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

impl Env for EnvFile {
    fn get(&self, key: &str) -> Option<String> {
        self.var(key)
            .map(str::to_string)
            .or_else(|| ProcessEnv.get(key))
    }
}

/// `'value'` and `"value"` lose their quotes (inside double quotes, `\"`, `\\`, `\$` and `` \` ``
/// are unescaped, as in a shell); an unquoted value is taken as it is. `None` when a quote opens
/// and does not close.
fn unquote(v: &str) -> Option<String> {
    if let Some(rest) = v.strip_prefix('\'') {
        return rest.strip_suffix('\'').map(str::to_string);
    }
    if let Some(rest) = v.strip_prefix('"') {
        let inner = rest.strip_suffix('"')?;
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some(n @ ('"' | '\\' | '$' | '`')) => out.push(n),
                    Some(n) => {
                        out.push('\\');
                        out.push(n);
                    }
                    None => out.push('\\'),
                }
            } else {
                out.push(c);
            }
        }
        return Some(out);
    }
    Some(v.to_string())
}

/// Secrets readable by other users leak to anyone with a shell on the host.
fn mode_warning(path: &Path) -> Option<ConfigWarning> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then(|| ConfigWarning {
        key: format!("env file {}", path.display()),
        problem: format!("mode {mode:04o} lets other users read the secrets in it"),
        fix: format!("chmod 600 {}", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvFile, String> {
        EnvFile::parse(text, Path::new("t.env")).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_systemd_reads() {
        let f = parse(
            "# comment\n; also\n\nA=plain value \nB='single # kept'\nC=\"dq \\\"x\\\" \\\\ \\n\"\n  D = spaced\nE=\nF=a=b\n",
        )
        .unwrap();
        assert_eq!(f.var("A"), Some("plain value"));
        assert_eq!(f.var("B"), Some("single # kept"));
        assert_eq!(f.var("C"), Some("dq \"x\" \\ \\n"));
        assert_eq!(f.var("D"), Some("spaced"));
        assert_eq!(f.var("E"), None, "blank is unset");
        assert_eq!(f.var("F"), Some("a=b"));
    }

    #[test]
    fn lines_systemd_would_skip_are_errors_naming_the_line() {
        let e = parse("A=1\nexport PORTKEY_API_KEY=x\n").unwrap_err();
        assert!(e.contains("line 2") && e.contains("export"), "{e}");
        let e = parse("just words\n").unwrap_err();
        assert!(e.contains("line 1") && e.contains("NAME=VALUE"), "{e}");
        let e = parse("A-B=1\n").unwrap_err();
        assert!(e.contains("not a variable name"), "{e}");
        let e = parse("A='open\n").unwrap_err();
        assert!(e.contains("quotes"), "{e}");
    }

    #[test]
    fn the_file_wins_over_the_process_environment() {
        let f = parse("PATH=/from/file\n").unwrap();
        assert_eq!(f.get("PATH").as_deref(), Some("/from/file"));
        // Not in the file: the process environment answers.
        let f = parse("").unwrap();
        assert_eq!(f.get("PATH"), std::env::var("PATH").ok());
    }
}

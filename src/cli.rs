//! The command line: argument definitions, and the commands that talk to a running daemon's
//! admin API (`status`, `resync`, `plan`, `explain`, `approve-deletions`).
//!
//! `main` parses, runs, prints and exits; everything that decides what is printed and with which
//! exit code is here, so it is tested like the rest of the library. Exit codes ([`exit`]):
//! 0 success, 1 the daemon answered but the operation failed or needs attention, 2 usage or
//! configuration error, 3 the admin API is unreachable or refused the token.

//!
//! Layout: [`args`] (clap), `client` (the admin HTTP client), `render` (the admin API's
//! documents as text), `admin` (the daemon commands: ask, render, exit code) and `upkeep`
//! (backup, check-store, compact).

use crate::config::ConfigError;
use std::io::Read;
use std::path::Path;

/// Process exit codes.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// The daemon answered but the operation failed or needs attention: a run not ok, deletions
    /// held by the fuse, an unknown user, a plan computed from an incomplete read.
    pub const FAILED: u8 = 1;
    /// Usage or configuration error (clap also exits 2 on bad arguments).
    pub const USAGE: u8 = 2;
    /// The admin API could not be reached, did not answer in time, or refused the token.
    pub const UNREACHABLE: u8 = 3;
}

macro_rules! exit_codes_help {
    () => {
        "Exit codes:
  0  success
  1  the daemon answered but the operation failed or needs attention
     (run not ok, deletions held by the fuse, user not found, incomplete read)
  2  usage or configuration error (the message names the flag or config key)
  3  the daemon's admin API is unreachable, timed out, or refused the token"
    };
}

/// The exit-code table shown by `--help`.
pub const EXIT_CODES_HELP: &str = exit_codes_help!();

mod admin;
pub mod args;
mod client;
mod render;
mod upkeep;

pub use admin::run_admin;
pub use args::*;
pub use client::{admin_url_from_config, admin_url_from_toml, resolve, store_path_from_config};
pub use render::{render_approval, render_explain, render_plan, render_run, render_status};
pub use upkeep::{backup, check_store, compact};

// ---- errors and outcomes ---------------------------------------------------------------------

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or environment (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A bad config file (exit 2); the message names the key.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Nothing answered, or not in time, or not the admin API (exit 3).
    #[error("cannot reach the scim-sync admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The admin API refused the token (exit 3).
    #[error("the admin API at {url} refused the token (HTTP {status}). Fix: set SCIM_SYNC_ADMIN_TOKEN (or --admin-token) to a token the daemon accepts: its SCIM_SYNC_ADMIN_TOKEN, or one whose hash is in [admin] token_hashes")]
    AuthRefused { url: String, status: u16 },
    /// The daemon answered that the operation failed (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl From<crate::init::InitError> for CliError {
    fn from(e: crate::init::InitError) -> Self {
        match e {
            crate::init::InitError::Usage(m) => Self::Usage(m),
            crate::init::InitError::Failed(m) => Self::Failed(m),
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) | Self::Config(_) => exit::USAGE,
            Self::Unreachable { .. } | Self::AuthRefused { .. } => exit::UNREACHABLE,
            Self::Failed(_) => exit::FAILED,
        }
    }
}

/// What a command prints on stdout, and the exit code (0 or 1) once printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub output: String,
    pub code: u8,
}

impl Outcome {
    fn new(output: String, ok: bool) -> Self {
        Self {
            output,
            code: if ok { exit::OK } else { exit::FAILED },
        }
    }
}

// ---- check-config, hash-token ----------------------------------------------------------------

/// Loads the config with its secrets: the process environment, with the env file in front when
/// one is given. The warnings are the config's and the env file's (one others can read).
pub fn load_config(
    path: &Path,
    env_file: Option<&Path>,
) -> Result<(crate::config::Config, Vec<crate::config::ConfigWarning>), CliError> {
    let (config, mut warnings) = match env_file {
        Some(p) => {
            let file =
                crate::envfile::EnvFile::read(p).map_err(|e| CliError::Usage(e.to_string()))?;
            let config = crate::config::Config::load(path, &file)?;
            (config, file.warnings)
        }
        None => (
            crate::config::Config::load(path, &crate::config::ProcessEnv)?,
            Vec::new(),
        ),
    };
    warnings.extend(config.warnings.iter().cloned());
    Ok((config, warnings))
}

/// Validates the config file and the secrets; returns the config, its warnings and the
/// one-line summary printed on success.
pub fn check_config(
    path: &Path,
    env_file: Option<&Path>,
) -> Result<
    (
        crate::config::Config,
        Vec<crate::config::ConfigWarning>,
        String,
    ),
    CliError,
> {
    let (c, warnings) = load_config(path, env_file)?;
    let line = format!(
        "config OK: SCIM on {}{} ({} token(s)), admin on {}, store {}, control plane {}",
        c.scim.listen,
        c.scim.base_path,
        c.scim.tokens.len(),
        c.admin.listen,
        c.store.path.display(),
        c.portkey.base_url
    );
    Ok((c, warnings, line))
}

/// The hash of `token`, or of the token read from `stdin` (trimmed) when `token` is `None`.
pub fn hash_token(token: Option<String>, stdin: impl Read) -> Result<String, CliError> {
    let token = match token {
        Some(t) => t,
        None => {
            let mut s = String::new();
            let mut stdin = stdin;
            stdin
                .read_to_string(&mut s)
                .map_err(|e| CliError::Usage(format!("cannot read the token from stdin: {e}")))?;
            s.trim().to_string()
        }
    };
    if token.is_empty() {
        return Err(CliError::Usage(
            "empty token: pass it as an argument or on stdin".into(),
        ));
    }
    Ok(crate::token::hash_token(&token))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_token_reads_stdin_and_refuses_empty() {
        let a = hash_token(Some("abc".into()), std::io::empty()).unwrap();
        let b = hash_token(None, "  abc\n".as_bytes()).unwrap();
        assert_eq!(a, b);
        assert!(a.starts_with("sha256:"));
        assert_eq!(
            hash_token(None, "\n".as_bytes()).unwrap_err().exit_code(),
            exit::USAGE
        );
    }
}

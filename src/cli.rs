//! The command line: argument definitions, and the commands that talk to a running daemon's
//! admin API (`status`, `resync`, `plan`, `explain`, `approve-deletions`).
//!
//! `main` parses, runs, prints and exits; everything that decides what is printed and with which
//! exit code is here, so it is tested like the rest of the library. Exit codes ([`exit`]):
//! 0 success, 1 the daemon answered but the operation failed or needs attention, 2 usage or
//! configuration error, 3 the admin API is unreachable or refused the token.

use crate::admin_api as api;
use crate::config::{ConfigError, DEFAULT_ADMIN_LISTEN};
use crate::reconcile::{Op, OpKind};
use clap::{Args, Parser, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

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

const TOP_HELP: &str = concat!(
    "\
Commands for a running daemon (status, resync, plan, explain, approve-deletions) reach its admin
API at --admin-url, or at the [admin] listen address of the config file (--config or
SCIM_SYNC_CONFIG; only that key is read, no secrets needed). The token comes from
SCIM_SYNC_ADMIN_TOKEN (or --admin-token).

Getting started:
  scim-sync demo        # try it next to a simulated control plane
  scim-sync init --public-url https://scim.example.com/scim/v2 \\
      --portkey-url https://portkey.example.com/v1 --idp okta   # config, secrets, state dir
  scim-sync check-config --online --config /etc/scim-sync/scim-sync.toml \\
      --env-file /etc/scim-sync/scim-sync.env                   # validate, try the key's scopes
  scim-sync serve --config /etc/scim-sync/scim-sync.toml --env-file /etc/scim-sync/scim-sync.env

Operating a running daemon:
  set -a; . /etc/scim-sync/scim-sync.env; set +a        # SCIM_SYNC_ADMIN_TOKEN and the others
  export SCIM_SYNC_CONFIG=/etc/scim-sync/scim-sync.toml
  scim-sync status                      # health, last run, held deletions
  scim-sync plan                        # what the next run would change (changes nothing)
  scim-sync explain alice@example.com   # why this person has (or lacks) access
  scim-sync resync --wait               # run now and print the result
  scim-sync approve-deletions           # release deletions held by the fuse (review `plan` first)

Looking after the store (docs/operations.md, \"Backup and restore\"):
  scim-sync backup /backups/scim-sync.redb   # consistent copy, online (admin API) or offline
  scim-sync check-store FILE                  # schema version and counts of a store file
  scim-sync compact --config FILE             # shrink the store file (daemon stopped)

",
    exit_codes_help!()
);

/// Environment variable naming the config file when `--config` is not given.
pub const ENV_CONFIG: &str = "SCIM_SYNC_CONFIG";
/// Environment variable with the admin API's base URL.
pub const ENV_ADMIN_URL: &str = "SCIM_SYNC_ADMIN_URL";

#[derive(Parser, Debug)]
#[command(
    name = "scim-sync",
    version,
    about = "SCIM 2.0 service provider that keeps a Portkey control plane in line with your IdP",
    after_help = TOP_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: the SCIM server for the IdP and the admin server.
    #[command(after_help = EXIT_CODES_HELP)]
    Serve {
        /// The TOML config file (every key: config/scim-sync.example.toml).
        #[arg(long, short, env = ENV_CONFIG, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        secrets: EnvFileArg,
    },
    /// Set up a host: config, secrets file and state directory, and what to paste into the IdP
    ///
    /// Writes CONFIG_DIR/scim-sync.toml (token hashes, public_url, base_path, [store] path in
    /// STATE_DIR, [portkey] base_url) and CONFIG_DIR/scim-sync.env (mode 0600: a fresh
    /// SCIM_SYNC_SCIM_TOKEN and SCIM_SYNC_ADMIN_TOKEN, and PORTKEY_API_KEY from the environment
    /// or asked for; left empty to fill in when neither). Creates STATE_DIR (mode 0700). Prints
    /// the values to enter in Okta or Entra, then runs `check-config --online` on the result.
    /// Flags left out are asked for when stdin is a terminal, and are an error otherwise.
    /// Existing files are not overwritten without --force.
    #[command(after_help = INIT_HELP)]
    Init {
        /// The URL the IdP will call: https://HOST/PATH; PATH becomes [scim] base_path.
        #[arg(long, value_name = "URL")]
        public_url: Option<String>,
        /// The control plane's Admin API base, ending in /v1 (Portkey's cloud:
        /// https://api.portkey.ai/v1).
        #[arg(long, value_name = "URL")]
        portkey_url: Option<String>,
        /// The identity provider to print the setup values for.
        #[arg(long, value_enum)]
        idp: Option<crate::init::Idp>,
        /// Where scim-sync.toml and scim-sync.env are written.
        #[arg(long, env = "SCIM_SYNC_CONFIG_DIR", default_value = crate::init::DEFAULT_CONFIG_DIR, value_name = "DIR")]
        config_dir: PathBuf,
        /// The state directory; the store is STATE_DIR/store.redb.
        #[arg(long, env = "SCIM_SYNC_STATE_DIR", default_value = crate::init::DEFAULT_STATE_DIR, value_name = "DIR")]
        state_dir: PathBuf,
        /// Replace existing files (the tokens in them stop working).
        #[arg(long)]
        force: bool,
        /// Do not try the control plane at the end.
        #[arg(long)]
        no_online_check: bool,
        /// [scim] listen of the written config (a container needs 0.0.0.0:8080).
        #[arg(long, env = "SCIM_SYNC_SCIM_LISTEN", default_value = crate::config::DEFAULT_SCIM_LISTEN, value_name = "ADDR")]
        scim_listen: String,
        /// [admin] listen of the written config.
        #[arg(long, env = "SCIM_SYNC_ADMIN_LISTEN", default_value = DEFAULT_ADMIN_LISTEN, value_name = "ADDR")]
        admin_listen: String,
        /// Write [sync] dry_run = true: plans are computed and shown, Portkey is not changed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Try it locally: the daemon next to the bundled control-plane simulator
    ///
    /// Runs the daemon for real on a local redb file next to the bundled control-plane
    /// simulator, with fresh tokens, and prints copy-paste commands.
    Demo {
        /// The redb store file.
        #[arg(long, default_value = "scim-sync-demo.redb")]
        store: PathBuf,
        #[arg(long, default_value_t = 8080)]
        scim_port: u16,
        #[arg(long, default_value_t = 8081)]
        admin_port: u16,
        /// Port of the control-plane simulator.
        #[arg(long, default_value_t = 8090)]
        sim_port: u16,
    },
    /// Validate a config file and the secrets in the environment, then exit
    ///
    /// Exits 0 when valid, 2 when not; the message names the key at fault and the fix.
    ///
    /// With --online, then reaches the control plane with PORTKEY_API_KEY, tries each read
    /// the daemon makes, says which Admin-API scope each needs and whether the key has it, and
    /// lists the write scopes the daemon needs as well.
    #[command(after_help = CHECK_CONFIG_HELP)]
    CheckConfig {
        #[arg(long, short, env = ENV_CONFIG, value_name = "FILE")]
        config: PathBuf,
        #[command(flatten)]
        secrets: EnvFileArg,
        /// Also try the control plane with the key (reads only; nothing is changed).
        #[arg(long)]
        online: bool,
    },
    /// Print the hash of a token for `token_hashes` (reads the token from stdin if not given).
    HashToken {
        /// The token; omit to read it from stdin (keeps it out of shell history).
        token: Option<String>,
    },
    /// Write a consistent copy of the store to FILE, while the daemon runs or not
    ///
    /// With the daemon running, asks it over the admin API (GET /admin/backup): it copies every
    /// table from one read snapshot while writes go on, and streams the copy. With --config and
    /// no daemon holding the store, copies the file named by `[store] path` directly. Either
    /// way FILE is written through a temporary file, checked to open as a store, then renamed.
    /// Exits 1 if the backup failed (FILE is then left as it was).
    #[command(after_help = EXIT_CODES_HELP)]
    Backup {
        /// Where to write the backup.
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show what a store file holds: schema version and counts (the daemon must not be using it)
    ///
    /// For a backup before restoring it, or a store whose daemon is stopped. Exits 1 if the file
    /// is not a scim-sync store, is in use, or has a schema version this release cannot read.
    #[command(after_help = EXIT_CODES_HELP)]
    CheckStore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print JSON instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Compact the store file named by `[store] path` (the daemon must be stopped)
    ///
    /// redb reuses freed pages but does not shrink its file; after trimming a large change feed
    /// or audit log, this gives the space back. Prints the size before and after. Exits 1 if the
    /// daemon holds the store.
    #[command(after_help = EXIT_CODES_HELP)]
    Compact {
        #[arg(long, short, env = ENV_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
    #[command(flatten)]
    Admin(AdminCommand),
}

/// Where the secrets come from besides the environment.
#[derive(Args, Debug, Clone)]
pub struct EnvFileArg {
    /// Read SCIM_SYNC_SCIM_TOKEN, SCIM_SYNC_ADMIN_TOKEN and PORTKEY_API_KEY from this file
    /// (KEY=VALUE lines, the format of systemd's EnvironmentFile=, as `scim-sync init` writes
    /// it); a variable the file sets wins over the environment.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
}

const CHECK_CONFIG_HELP: &str = "\
Secrets come from the environment, or from --env-file. In a shell, load the env file with
  set -a; . /etc/scim-sync/scim-sync.env; set +a

Exit codes:
  0  valid (and with --online, every read the daemon needs is allowed)
  1  --online: the control plane refused a read the daemon needs, or the key
  2  the config or the secrets are invalid (the message names the key and the fix)
  3  --online: the control plane did not answer";

const INIT_HELP: &str = "\
Example:
  scim-sync init --public-url https://scim.example.com/scim/v2 \\
    --portkey-url https://portkey.example.com/v1 --idp okta

Exit codes:
  0  written (and the control plane check passed, unless --no-online-check)
  1  a file or directory could not be written, or the control plane refused a read or the key
  2  a value is missing or invalid, or a file exists (the message names the flag)
  3  the control plane did not answer";

/// Commands that talk to a running daemon's admin API.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Show the daemon's health: store, control plane, last run, held deletions
    ///
    /// Exits 1 when something needs attention: the control plane cannot be read, the last run
    /// was not ok, or deletions are held by the fuse.
    #[command(after_help = EXIT_CODES_HELP)]
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Start a full reconcile run now (--wait: and print its result)
    ///
    /// With --wait, exits 1 if the run was not ok or deletions were held by the fuse.
    #[command(after_help = EXIT_CODES_HELP)]
    Resync {
        /// Wait for the run to finish and print its summary.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show what the next run would change (dry run, nothing is changed)
    ///
    /// Lists the ops by phase, marks the deletions the fuse would hold, and shows conflicts,
    /// warnings and read errors. Exits 1 if the control plane could not be read completely.
    #[command(after_help = EXIT_CODES_HELP)]
    Plan {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Explain one user: desired vs actual access, and the planned ops
    ///
    /// Shows the desired org role and workspaces (and which groups grant them), what the control
    /// plane has, and the ops planned for this person. Exits 1 if the user is unknown.
    #[command(after_help = EXIT_CODES_HELP)]
    Explain {
        /// userName, email or SCIM id (case-insensitive).
        #[arg(value_name = "USERNAME")]
        user: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release the deletions held by the fuse and apply them now
    ///
    /// Approves exactly the held set you reviewed. With --digest, the set that digest names
    /// (shown by `scim-sync status` and `scim-sync plan`); without it, the set this command
    /// prints first. If the held set changed in between, nothing is approved and the command
    /// exits 1. Then runs a full reconcile that applies them and prints its result; exits 1 if
    /// that run is not ok.
    #[command(after_help = EXIT_CODES_HELP)]
    ApproveDeletions {
        /// The held set's digest (`held_digest` in `scim-sync status --json`).
        #[arg(long)]
        digest: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Where the admin API is, how to authenticate, how to print.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Admin API")]
pub struct AdminArgs {
    /// Base URL of the daemon's admin API, e.g. http://127.0.0.1:8081.
    /// Default: built from `[admin] listen` in the config file.
    #[arg(long, env = ENV_ADMIN_URL, value_name = "URL")]
    pub admin_url: Option<String>,
    /// Config file to take `[admin] listen` from. Only that key is read: the secrets the
    /// daemon needs (SCIM token, PORTKEY_API_KEY) are not required here.
    #[arg(long, short, env = ENV_CONFIG, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Admin bearer token (the daemon's SCIM_SYNC_ADMIN_TOKEN, or one whose hash is in
    /// `[admin] token_hashes`). Prefer the environment variable: arguments show in `ps`.
    #[arg(
        long,
        env = crate::config::ENV_ADMIN_TOKEN,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub admin_token: Option<String>,
    /// Give up waiting for the daemon after this many seconds (a run keeps going on the
    /// daemon; check it with `scim-sync status`).
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    pub timeout: u64,
    /// Print the admin API's JSON answer instead of the readable summary (same exit codes).
    #[arg(long)]
    pub json: bool,
}

impl AdminCommand {
    pub fn args(&self) -> &AdminArgs {
        match self {
            Self::Status { admin }
            | Self::Resync { admin, .. }
            | Self::Plan { admin }
            | Self::Explain { admin, .. }
            | Self::ApproveDeletions { admin, .. } => admin,
        }
    }
}

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

// ---- finding the admin API -------------------------------------------------------------------

/// The admin API's base URL from a config file, reading only `[admin] listen` (default
/// 127.0.0.1:8081). An unspecified address (0.0.0.0, ::) becomes the loopback address.
pub fn admin_url_from_config(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    admin_url_from_toml(&text, path)
}

/// [`admin_url_from_config`] on TOML text; `origin` only names the file in errors.
pub fn admin_url_from_toml(text: &str, origin: &Path) -> Result<String, ConfigError> {
    let file = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Parse {
            path: origin.to_path_buf(),
            reason: e.to_string(),
        })?;
    let invalid = |problem: String| ConfigError::Invalid {
        key: "[admin] listen".into(),
        problem,
        fix: format!("use the form {DEFAULT_ADMIN_LISTEN}, or pass --admin-url"),
    };
    let listen = match file.get::<String>("admin.listen") {
        Ok(s) => s,
        Err(config::ConfigError::NotFound(_)) => DEFAULT_ADMIN_LISTEN.to_string(),
        Err(e) => return Err(invalid(e.to_string())),
    };
    let addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| invalid(format!("'{listen}' is not an IP address and port")))?;
    if addr.port() == 0 {
        return Err(ConfigError::Invalid {
            key: "[admin] listen".into(),
            problem: "port 0 lets the daemon pick any free port, so it cannot be found from here"
                .into(),
            fix: "pass --admin-url with the address the daemon logged at startup".into(),
        });
    }
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(format!("http://{}", SocketAddr::new(ip, addr.port())))
}

/// The store file named by `[store] path` in a config file (default `scim-sync.redb`, relative to
/// the working directory as for the daemon). Only that key is read.
pub fn store_path_from_config(path: &Path) -> Result<PathBuf, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let file = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Toml))
        .build()
        .map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    match file.get::<String>("store.path") {
        Ok(s) if !s.trim().is_empty() => Ok(PathBuf::from(s)),
        Ok(_) => Err(ConfigError::Invalid {
            key: "[store] path".into(),
            problem: "empty".into(),
            fix: "name the store file, e.g. /var/lib/scim-sync/store.redb".into(),
        }),
        Err(config::ConfigError::NotFound(_)) => {
            Ok(PathBuf::from(crate::config::DEFAULT_STORE_PATH))
        }
        Err(e) => Err(ConfigError::Invalid {
            key: "[store] path".into(),
            problem: e.to_string(),
            fix: "name the store file, e.g. /var/lib/scim-sync/store.redb".into(),
        }),
    }
}

/// The admin base URL and token from the arguments (and the environment, through clap).
pub fn resolve(args: &AdminArgs) -> Result<(String, String), CliError> {
    let url = match (nonempty(args.admin_url.as_deref()), &args.config) {
        (Some(u), _) => {
            let u = u.trim().trim_end_matches('/');
            if !(u.starts_with("http://") || u.starts_with("https://")) || u.len() < 9 {
                return Err(CliError::Usage(format!(
                    "--admin-url '{u}' is not an http(s) URL. Fix: use e.g. http://127.0.0.1:8081"
                )));
            }
            u.to_string()
        }
        (None, Some(path)) => admin_url_from_config(path)?,
        (None, None) => {
            return Err(CliError::Usage(format!(
                "where is the daemon? Pass --config FILE (its [admin] listen is used) or \
                 --admin-url URL, or set {ENV_CONFIG}"
            )))
        }
    };
    let token = nonempty(args.admin_token.as_deref()).ok_or_else(|| {
        CliError::Usage(format!(
            "no admin token. Fix: export {}=<the daemon's admin token> (or pass --admin-token)",
            crate::config::ENV_ADMIN_TOKEN
        ))
    })?;
    Ok((url, token.trim().to_string()))
}

fn nonempty(s: Option<&str>) -> Option<&str> {
    s.filter(|v| !v.trim().is_empty())
}

// ---- the admin API client --------------------------------------------------------------------

struct AdminClient {
    base: String,
    token: String,
    timeout: Duration,
    http: reqwest::Client,
}

/// The innermost cause of an error, which is what says why (connection refused, …).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl AdminClient {
    fn new(base: String, token: String, timeout: Duration) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| CliError::Usage(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Self {
            base,
            token,
            timeout,
            http,
        })
    }

    /// Sends a request; returns the status and the JSON body of any answer but an auth refusal.
    async fn call(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value), CliError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |reason: String| CliError::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let resp = self
            .http
            .request(method, &url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    unreachable(format!(
                        "no answer within {} s (--timeout); anything started keeps running on the \
                         daemon, check it with `scim-sync status`",
                        self.timeout.as_secs()
                    ))
                } else {
                    unreachable(format!(
                        "{}. Is the daemon running, and is this its [admin] listen address?",
                        root_cause(&e)
                    ))
                }
            })?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(CliError::AuthRefused {
                url: self.base.clone(),
                status,
            });
        }
        let bytes = resp.bytes().await.map_err(|e| {
            if e.is_timeout() {
                unreachable(format!(
                    "no complete answer within {} s (--timeout)",
                    self.timeout.as_secs()
                ))
            } else {
                unreachable(format!("the answer was cut short: {}", root_cause(&e)))
            }
        })?;
        let json: Value = serde_json::from_slice(&bytes).map_err(|_| {
            unreachable(format!(
                "HTTP {status} with a body that is not the admin API's JSON; is this the admin \
                 listener (not the SCIM one)?"
            ))
        })?;
        if status == 404 && json.get("error").is_none() {
            return Err(unreachable(format!(
                "HTTP 404 for {path}; is this the admin listener (not the SCIM one)?"
            )));
        }
        Ok((status, json))
    }
}

fn daemon_error(status: u16, body: &Value) -> CliError {
    let msg = body
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| body.to_string());
    CliError::Failed(format!("the daemon answered HTTP {status}: {msg}"))
}

/// Runs one admin command against the daemon and renders its answer.
pub async fn run_admin(cmd: &AdminCommand) -> Result<Outcome, CliError> {
    let args = cmd.args();
    let (base, token) = resolve(args)?;
    let client = AdminClient::new(base, token, Duration::from_secs(args.timeout.max(1)))?;
    let json = args.json;
    use reqwest::Method;
    match cmd {
        AdminCommand::Status { .. } => {
            let (status, body) = client.call(Method::GET, "/admin/status").await?;
            if status != 200 {
                return Err(daemon_error(status, &body));
            }
            let doc: api::StatusDoc = decode("/admin/status", &body)?;
            let (text, ok) = render_status(&doc, &client.base);
            Ok(Outcome::new(pick(json, &body, text), ok))
        }
        AdminCommand::Resync { wait, .. } => {
            let path = if *wait {
                "/admin/resync?wait=true"
            } else {
                "/admin/resync"
            };
            let (status, body) = client.call(Method::POST, path).await?;
            match status {
                202 => {
                    let doc: api::ResyncDoc = decode(path, &body)?;
                    let text = format!(
                        "Full resync started: run {}.\nFollow it with `scim-sync status`, or use \
                         `scim-sync resync --wait` to wait for the result.\n",
                        doc.run_id
                    );
                    Ok(Outcome::new(pick(json, &body, text), true))
                }
                200 => {
                    let doc: api::ResyncDoc = decode(path, &body)?;
                    let (text, ok) = render_run(doc.summary.as_ref());
                    Ok(Outcome::new(pick(json, &body, text), ok))
                }
                _ => Err(daemon_error(status, &body)),
            }
        }
        AdminCommand::Plan { .. } => {
            let (status, body) = client.call(Method::GET, "/admin/plan").await?;
            if status != 200 {
                return Err(daemon_error(status, &body));
            }
            let doc: api::PlanDoc = decode("/admin/plan", &body)?;
            let (text, ok) = render_plan(&doc);
            Ok(Outcome::new(pick(json, &body, text), ok))
        }
        AdminCommand::Explain { user, .. } => {
            let enc =
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
            let (status, body) = client
                .call(Method::GET, &format!("/admin/explain/{enc}"))
                .await?;
            match status {
                200 => {
                    let doc: api::ExplainDoc = decode("/admin/explain", &body)?;
                    let (text, ok) = render_explain(&doc);
                    Ok(Outcome::new(pick(json, &body, text), ok))
                }
                404 => {
                    let msg = decode::<api::ErrorBody>("/admin/explain", &body)
                        .map_or_else(|_| "not found".to_string(), |e| e.error);
                    let text = format!(
                        "Not found: {msg}.\nCheck the spelling; `explain` takes a userName, an \
                         email or a SCIM id.\n"
                    );
                    Ok(Outcome::new(pick(json, &body, text), false))
                }
                _ => Err(daemon_error(status, &body)),
            }
        }
        AdminCommand::ApproveDeletions { digest, .. } => {
            let mut shown = String::new();
            let digest = match digest {
                Some(d) => d.clone(),
                None => {
                    let (status, st) = client.call(Method::GET, "/admin/status").await?;
                    if status != 200 {
                        return Err(daemon_error(status, &st));
                    }
                    let doc: api::StatusDoc = decode("/admin/status", &st)?;
                    let held = &doc.reconciler.held_deletions;
                    match doc.reconciler.held_digest.as_deref() {
                        Some(d) if !held.is_empty() => {
                            let _ = writeln!(
                                shown,
                                "Approving these {} held op(s) (digest {d}):",
                                held.len()
                            );
                            ops_table(&mut shown, "  ", held, &[]);
                            shown.push('\n');
                            d.to_string()
                        }
                        _ => {
                            let text = "No deletions are held; nothing to approve.\n".to_string();
                            return Ok(Outcome::new(pick(json, &st, text), true));
                        }
                    }
                }
            };
            let path = format!(
                "/admin/approve-deletions?digest={}",
                percent_encoding::utf8_percent_encode(&digest, percent_encoding::NON_ALPHANUMERIC)
            );
            let (status, body) = client.call(Method::POST, &path).await?;
            if status == 409 {
                let refused: api::ApprovalRefused = decode("/admin/approve-deletions", &body)?;
                let text = format!(
                    "{shown}Nothing approved: the held set changed since it was reviewed (its digest is now {}). Review it again with `scim-sync status` or `scim-sync plan`.\n",
                    opt(refused.held_digest.as_ref())
                );
                return Ok(Outcome::new(pick(json, &body, text), false));
            }
            if status != 200 {
                return Err(daemon_error(status, &body));
            }
            let doc: api::ApprovalDoc = decode("/admin/approve-deletions", &body)?;
            let (text, ok) = render_approval(&doc);
            Ok(Outcome::new(
                pick(json, &body, format!("{shown}{text}")),
                ok,
            ))
        }
    }
}

/// The daemon's answer as the contract's type.
fn decode<T: DeserializeOwned>(path: &str, body: &Value) -> Result<T, CliError> {
    T::deserialize(body).map_err(|e| {
        CliError::Failed(format!(
            "the admin API's answer to {path} is not what this release of scim-sync reads ({e}); \
             is the daemon the same version as this command?"
        ))
    })
}

fn pick(json: bool, body: &Value, text: String) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
        s.push('\n');
        s
    } else {
        text
    }
}

// ---- store upkeep: backup, check-store, compact -----------------------------------------------

fn store_failed(e: crate::store::StoreError) -> CliError {
    use crate::store::StoreError;
    match e {
        StoreError::Locked(path) => CliError::Failed(format!(
            "the store {path} is in use by a running scim-sync (it holds the file's lock). Fix: \
             stop the daemon first, or take a copy with `scim-sync backup FILE` and use that"
        )),
        other => CliError::Failed(other.to_string()),
    }
}

fn info_table(info: &crate::store::StoreInfo) -> String {
    let mut out = String::new();
    field(&mut out, "Store file", &info.path);
    field(&mut out, "Size", format!("{} bytes", info.file_bytes));
    field(
        &mut out,
        "Schema version",
        format!(
            "{} (this release reads up to {})",
            info.schema_version, info.supported_schema_version
        ),
    );
    if !info.readable() {
        return out;
    }
    field(&mut out, "Users", info.users);
    field(&mut out, "Groups", info.groups);
    field(&mut out, "Memberships", info.memberships);
    field(
        &mut out,
        "Change feed",
        format!(
            "{} entries, last seq {}, reconciler cursor {}",
            info.change_feed_entries, info.last_change_seq, info.reconcile_cursor
        ),
    );
    field(&mut out, "Links", info.links);
    field(
        &mut out,
        "Audit log",
        format!("{} entries", info.audit_entries),
    );
    field(&mut out, "Held ops", info.held_ops);
    field(&mut out, "Failing ops", info.failing_ops);
    out
}

/// `scim-sync check-store FILE`.
pub fn check_store(file: &Path, json: bool) -> Result<Outcome, CliError> {
    let info = crate::store::inspect(file).map_err(store_failed)?;
    let ok = info.readable();
    let mut text = info_table(&info);
    if !ok {
        let _ = writeln!(
            text,
            "\nThis release cannot read it: {}",
            crate::store::StoreError::TooNew {
                found: info.schema_version,
                supported: info.supported_schema_version,
            }
        );
    }
    let out = if json {
        let mut s = serde_json::to_string_pretty(&info).unwrap_or_default();
        s.push('\n');
        s
    } else {
        text
    };
    Ok(Outcome::new(out, ok))
}

/// `scim-sync compact --config FILE`.
pub fn compact(config: &Path) -> Result<Outcome, CliError> {
    let path = store_path_from_config(config)?;
    let c = crate::store::compact(&path).map_err(|e| match e {
        crate::store::StoreError::Locked(p) => CliError::Failed(format!(
            "the store {p} is in use by a running scim-sync. Compaction needs the file to \
             itself. Fix: stop the daemon (e.g. systemctl stop scim-sync), run `scim-sync \
             compact` again, then start it"
        )),
        other => store_failed(other),
    })?;
    let saved = c.before_bytes.saturating_sub(c.after_bytes);
    Ok(Outcome::new(
        format!(
            "Compacted {}: {} bytes before, {} bytes after ({saved} bytes freed).\n",
            path.display(),
            c.before_bytes,
            c.after_bytes
        ),
        true,
    ))
}

/// Removes a temporary file on drop unless it was kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Nothing to remove if it was never created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `scim-sync backup FILE`: offline when `--config` names a store no daemon holds, otherwise
/// from the daemon over the admin API.
pub async fn backup(file: &Path, force: bool, args: &AdminArgs) -> Result<Outcome, CliError> {
    if file.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} exists. Fix: choose another name, or pass --force to replace it",
            file.display()
        )));
    }
    if file.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is a directory; name the backup file",
            file.display()
        )));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} does not exist; create it first",
            dir.display()
        )));
    }
    let mut tmp = TempFile {
        path: crate::store::backup::temp_path(file, "partial"),
        keep: false,
    };

    let mut source = None;
    if let Some(config) = &args.config {
        let store = store_path_from_config(config)?;
        let (src, dst) = (store.clone(), tmp.path.clone());
        let copied =
            tokio::task::spawn_blocking(move || crate::store::backup::backup_offline(&src, &dst))
                .await
                .map_err(|e| CliError::Failed(format!("the copy stopped: {e}")))?;
        match copied {
            Ok(()) => source = Some(format!("copied offline from {}", store.display())),
            // The daemon holds it: ask the daemon.
            Err(crate::store::StoreError::Locked(_)) => {}
            Err(e) => return Err(store_failed(e)),
        }
    }
    let source = match source {
        Some(s) => s,
        None => {
            let (base, token) = resolve(args)?;
            download_backup(&base, &token, args.timeout, &tmp.path).await?;
            format!("taken online from the daemon at {base}")
        }
    };

    let check = tmp.path.clone();
    let info = tokio::task::spawn_blocking(move || crate::store::inspect(&check))
        .await
        .map_err(|e| CliError::Failed(format!("the check stopped: {e}")))?
        .map_err(|e| CliError::Failed(format!("the backup does not open as a store: {e}")))?;
    if !info.readable() {
        return Err(CliError::Failed(format!(
            "the backup has schema version {}, which this release cannot read (it reads up to \
             {}); back up with the release the daemon runs",
            info.schema_version, info.supported_schema_version
        )));
    }
    let placed = if force {
        std::fs::rename(&tmp.path, file)
    } else {
        // A link fails if FILE appeared meanwhile, where a rename would replace it.
        std::fs::hard_link(&tmp.path, file)
    };
    placed.map_err(|e| CliError::Failed(format!("cannot write {}: {e}", file.display())))?;
    if force {
        tmp.keep = true;
    }
    let mut out = format!(
        "Backup written to {} ({} bytes, {source}).\n\n",
        file.display(),
        info.file_bytes
    );
    let mut shown = info.clone();
    shown.path = file.display().to_string();
    out.push_str(&info_table(&shown));
    out.push_str(
        "\nRestore: stop the daemon, `scim-sync check-store FILE`, copy FILE to [store] path, \
         start the daemon (docs/operations.md, \"Backup and restore\").\n",
    );
    Ok(Outcome::new(out, true))
}

/// Streams `GET /admin/backup` into `dest` and flushes it to disk.
async fn download_backup(
    base: &str,
    token: &str,
    timeout_secs: u64,
    dest: &Path,
) -> Result<(), CliError> {
    use std::io::Write as _;
    let client = AdminClient::new(
        base.to_string(),
        token.to_string(),
        Duration::from_secs(timeout_secs.max(1)),
    )?;
    let unreachable = |reason: String| CliError::Unreachable {
        url: base.to_string(),
        reason,
    };
    let mut resp = client
        .http
        .get(format!("{base}/admin/backup"))
        .bearer_auth(&client.token)
        .send()
        .await
        .map_err(|e| {
            unreachable(format!(
                "{}. Is the daemon running, and is this its [admin] listen address?",
                root_cause(&e)
            ))
        })?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        return Err(CliError::AuthRefused {
            url: base.to_string(),
            status,
        });
    }
    if status != 200 {
        let body = resp.bytes().await.unwrap_or_default();
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if json.get("error").is_none() {
            return Err(unreachable(format!(
                "HTTP {status} for /admin/backup; is this the admin listener of a release that \
                 takes backups?"
            )));
        }
        return Err(daemon_error(status, &json));
    }
    let expected = resp.content_length();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dest.display())))?;
    let mut written = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            unreachable(format!(
                "the backup was cut short after {written} bytes: {}",
                root_cause(&e)
            ))
        })?;
        let Some(chunk) = chunk else { break };
        out.write_all(&chunk)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", dest.display())))?;
        written += chunk.len() as u64;
    }
    if let Some(n) = expected {
        if n != written {
            return Err(unreachable(format!(
                "the backup was cut short: {written} of {n} bytes"
            )));
        }
    }
    out.sync_all()
        .map_err(|e| CliError::Failed(format!("cannot flush {}: {e}", dest.display())))?;
    Ok(())
}

// ---- rendering -------------------------------------------------------------------------------

/// An optional value as plain text, `-` when absent.
fn opt(v: Option<impl std::fmt::Display>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// A JSON value as plain text: strings unquoted, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns; the last one is not padded.
fn table(out: &mut String, indent: &str, headers: &[&str], rows: &[Vec<String>]) {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |out: &mut String, cells: Vec<&str>| {
        let mut l = String::from(indent);
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(out, headers.to_vec());
    for row in rows {
        line(out, row.iter().map(String::as_str).collect());
    }
}

fn field(out: &mut String, label: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "{label:<16}{value}");
}

fn list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "{title} ({}):", items.len());
    for i in items {
        let _ = writeln!(out, "  - {i}");
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn held_hint(n: usize) -> String {
    format!(
        "{n} destructive op(s) held by the fuse. Review them with `scim-sync plan`, release them \
         with `scim-sync approve-deletions`, or fix the IdP if they are a mistake."
    )
}

/// `GET /admin/status` as a short table; false when something needs attention.
pub fn render_status(s: &api::StatusDoc, base: &str) -> (String, bool) {
    let mut out = String::new();
    let mut attention: Vec<String> = Vec::new();
    let _ = writeln!(
        out,
        "scim-sync {} at {base}, up {}",
        s.version,
        duration(s.uptime_secs)
    );
    field(
        &mut out,
        "SCIM",
        format!(
            "{}, listening on {} (base path {})",
            if s.scim.ok { "ok" } else { "NOT OK" },
            s.scim.listen,
            s.scim.base_path
        ),
    );
    match &s.store {
        api::StoreStatus::Ok {
            ok: true,
            users,
            groups,
            last_change_seq,
            ..
        } => field(
            &mut out,
            "Store",
            format!("ok: {users} users, {groups} groups, change seq {last_change_seq}"),
        ),
        api::StoreStatus::Ok { .. } => {
            field(&mut out, "Store", "NOT OK: -");
            attention.push("the store is failing".into());
        }
        api::StoreStatus::Failing { error, .. } => {
            field(
                &mut out,
                "Store",
                format!("NOT OK: {}", opt(error.as_ref())),
            );
            attention.push("the store is failing".into());
        }
    }
    let cp = &s.control_plane;
    let last_ok = cp.last_ok_at.clone().unwrap_or_else(|| "never".into());
    match cp.ok {
        Some(true) => field(&mut out, "Control plane", format!("ok (last ok {last_ok})")),
        Some(false) => {
            field(
                &mut out,
                "Control plane",
                format!(
                    "FAILING: {} (last ok {last_ok})",
                    opt(cp.last_error.as_ref())
                ),
            );
            attention.push("the control plane cannot be read".into());
        }
        None => field(&mut out, "Control plane", "not contacted yet"),
    }
    let r = &s.reconciler;
    match &r.running {
        None => field(&mut out, "Reconciler", "idle"),
        Some(run) => field(
            &mut out,
            "Reconciler",
            format!(
                "running {run} ({}/{} ops)",
                r.progress.done, r.progress.total
            ),
        ),
    }
    match &r.last_run {
        None => field(&mut out, "Last run", "none yet"),
        Some(last) => {
            field(
                &mut out,
                "Last run",
                format!(
                    "{}: {} run ({}) finished {}, {} ms{}",
                    if last.ok { "ok" } else { "NOT OK" },
                    last.kind,
                    last.trigger,
                    last.finished_at,
                    last.duration_ms,
                    if last.dry_run { ", dry run" } else { "" }
                ),
            );
            field(
                &mut out,
                "",
                format!(
                    "applied {}, failed {}, held {}, withheld {}",
                    last.applied, last.failed, last.held, last.withheld
                ),
            );
            for e in &last.errors {
                field(&mut out, "", format!("error: {e}"));
            }
            if !last.ok {
                attention.push("the last run was not ok".into());
            }
        }
    }
    field(
        &mut out,
        "Last success",
        match &r.last_successful_run_at {
            None => "never".to_string(),
            Some(v) => format!(
                "{v} (full run: {})",
                r.last_successful_full_run_at.as_deref().unwrap_or("never")
            ),
        },
    );
    let held = r.held_deletions.len();
    if held == 0 {
        field(&mut out, "Held deletions", "0");
    } else {
        field(
            &mut out,
            "Held deletions",
            format!("{held}: {}", opt(r.held_reason.as_ref())),
        );
        attention.push(held_hint(held));
    }
    if r.failing_ops.is_empty() {
        field(&mut out, "Failing ops", "0");
    } else {
        field(&mut out, "Failing ops", r.failing_ops.len());
        for f in &r.failing_ops {
            let _ = writeln!(
                out,
                "  {} {}: {} (attempt {}, next after {})",
                text(&f.op["op"]),
                text(&f.op["email"]),
                f.last_error,
                f.attempts,
                f.next_attempt_at
            );
        }
        attention.push(format!(
            "{} op(s) keep failing and are retried with a backoff; a removal the control plane refuses stays here until it succeeds. Check the Admin API key's permissions and the audit log (GET /admin/audit).",
            r.failing_ops.len()
        ));
    }
    if !attention.is_empty() {
        let _ = writeln!(out, "\nNeeds attention:");
        for a in &attention {
            let _ = writeln!(out, "  - {a}");
        }
    }
    (out, attention.is_empty())
}

/// One plan op as table rows: phase, op, target, reason (an `add_members` op is one row per
/// member).
fn op_rows(op: &Op, held: bool) -> Vec<Vec<String>> {
    let phase = api::wire_name(&op.phase());
    let name = op.kind.name();
    let mark = |n: &str| {
        if held {
            format!("{n} (HELD)")
        } else {
            n.to_string()
        }
    };
    let reason = op.reason.clone();
    let target = match &op.kind {
        OpKind::CreateWorkspace { name } => format!("workspace {name}"),
        OpKind::Invite {
            email,
            role,
            workspaces,
            replaces_expired,
        } => {
            let mut s = format!("{email} as org {}", role.as_str());
            let ws: Vec<String> = workspaces
                .iter()
                .map(|w| format!("{}: {}", w.workspace, w.role.as_str()))
                .collect();
            if !ws.is_empty() {
                let _ = write!(s, "; {}", ws.join(", "));
            }
            if let Some(old) = replaces_expired {
                let _ = write!(s, " (replaces expired invite {old})");
            }
            s
        }
        OpKind::UpdateOrgRole {
            email, from, to, ..
        } => format!("{email}: org {} -> {}", from.as_str(), to.as_str()),
        OpKind::AddMembers {
            workspace, members, ..
        } => {
            return members
                .iter()
                .map(|m| {
                    vec![
                        phase.clone(),
                        mark("add_member"),
                        format!("{} to {workspace} as {}", m.email, m.role.as_str()),
                        m.reason.clone(),
                    ]
                })
                .collect();
        }
        OpKind::UpdateMemberRole {
            workspace,
            email,
            from,
            to,
            ..
        } => format!(
            "{email} in {workspace}: {} -> {}",
            from.as_str(),
            to.as_str()
        ),
        OpKind::RemoveMember {
            workspace, email, ..
        } => format!("{email} from {workspace}"),
        OpKind::RevokeInvite { invite_id, email } => format!("invite {invite_id} for {email}"),
        OpKind::RemoveUser { email, .. } => format!("{email} from the organisation"),
    };
    vec![vec![phase, mark(name), target, reason]]
}

const OP_HEADERS: [&str; 4] = ["PHASE", "OP", "TARGET", "REASON"];

fn ops_table(out: &mut String, indent: &str, ops: &[Op], held: &[Op]) {
    let rows: Vec<Vec<String>> = ops
        .iter()
        .flat_map(|op| op_rows(op, held.contains(op)))
        .collect();
    table(out, indent, &OP_HEADERS, &rows);
}

fn summary_line(summary: &BTreeMap<String, usize>) -> String {
    let parts: Vec<(&String, usize)> = summary
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "destructive" | "total"))
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| (k, *n))
        .collect();
    if parts.is_empty() {
        return "nothing to do".into();
    }
    let total = summary
        .get("total")
        .copied()
        .unwrap_or_else(|| parts.iter().map(|(_, n)| n).sum());
    let list: Vec<String> = parts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "{total} op(s): {} ({} destructive)",
        list.join(", "),
        summary.get("destructive").copied().unwrap_or(0)
    )
}

fn conflict_line(c: &api::ConflictDoc) -> String {
    format!(
        "groups {} ask for {}; {} wins",
        c.groups.join(", "),
        c.roles.join(", "),
        c.chosen
    )
}

/// `GET /admin/plan` as a table; false when the control plane was not read completely.
pub fn render_plan(p: &api::PlanDoc) -> (String, bool) {
    let mut out = String::new();
    let plan = &p.plan;
    let held = &p.held_by_fuse;
    let _ = writeln!(
        out,
        "Plan (dry run, nothing was changed): {}",
        summary_line(&p.summary)
    );
    if plan.ops.is_empty() {
        let _ = writeln!(
            out,
            "The control plane already matches the IdP{}.",
            if p.read_errors.is_empty() {
                ""
            } else {
                " as far as it could be read"
            }
        );
    } else {
        out.push('\n');
        ops_table(&mut out, "", &plan.ops, held);
    }
    if !held.is_empty() {
        let _ = writeln!(
            out,
            "\nHeld by the deletion fuse ({}): {}",
            held.len(),
            opt(p.held_reason.as_ref())
        );
        let _ = writeln!(
            out,
            "  A run applies everything else and holds these until `scim-sync approve-deletions`."
        );
    }
    if let Some(w) = &plan.withheld {
        let _ = writeln!(
            out,
            "\nWithheld: {} destructive op(s) left out because {} could not be read completely: {}",
            w.dropped,
            w.incomplete.join(", "),
            w.reason
        );
    }
    let conflicts: Vec<String> = plan
        .conflicts
        .iter()
        .map(|c| format!("{} in {}: {}", c.email, c.workspace, conflict_line(c)))
        .collect();
    let mut tail = String::new();
    list(&mut tail, "Role conflicts", &conflicts);
    list(&mut tail, "Warnings", &plan.warnings);
    list(&mut tail, "Left alone", &plan.notes);
    list(
        &mut tail,
        "Read errors (the plan may be incomplete)",
        &p.read_errors,
    );
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(&tail);
    }
    (out, p.read_errors.is_empty())
}

/// `GET /admin/explain/{user}` as desired vs actual plus planned ops.
pub fn render_explain(e: &api::ExplainDoc) -> (String, bool) {
    let mut out = String::new();
    let _ = writeln!(out, "{} (asked for '{}')", e.email, e.query);
    out.push_str("\nDesired (from the IdP):\n");
    match &e.desired {
        None => out.push_str("  not a SCIM user: the IdP does not know this person\n"),
        Some(d) => {
            field(
                &mut out,
                "  SCIM user",
                format!("{} (id {})", d.user_name, d.scim_id),
            );
            if d.desired {
                field(
                    &mut out,
                    "  org role",
                    format!(
                        "{} ({})",
                        opt(d.org_role.as_ref()),
                        opt(d.org_role_reason.as_ref())
                    ),
                );
                if d.workspaces.is_empty() {
                    field(&mut out, "  workspaces", "none");
                } else {
                    let rows: Vec<Vec<String>> = d
                        .workspaces
                        .iter()
                        .map(|w| vec![w.workspace.clone(), w.role.clone(), w.because.join("; ")])
                        .collect();
                    out.push_str("  workspaces:\n");
                    table(&mut out, "    ", &["WORKSPACE", "ROLE", "BECAUSE"], &rows);
                }
            } else {
                field(
                    &mut out,
                    "  in scope",
                    format!("no: {}", opt(d.excluded_because.as_ref())),
                );
            }
            for c in &d.conflicts {
                field(
                    &mut out,
                    "  conflict",
                    format!("{}: {}", c.workspace, conflict_line(c)),
                );
            }
        }
    }
    out.push_str("\nActual (control plane):\n");
    match &e.actual {
        None => out.push_str("  could not be read (see read errors)\n"),
        Some(a) => {
            match &a.user {
                None => field(&mut out, "  user", "not in the organisation"),
                Some(u) => field(
                    &mut out,
                    "  user",
                    format!("{} (id {}), org {}", u.email, u.id, u.role.as_str()),
                ),
            }
            for i in &a.invites {
                field(
                    &mut out,
                    "  invite",
                    format!(
                        "{} as org {}, {} (expires {})",
                        i.id,
                        i.role.as_str(),
                        i.status.as_str(),
                        opt(i.expires_at.as_ref())
                    ),
                );
            }
            let ms = &a.memberships_in_managed_workspaces;
            if ms.is_empty() {
                field(&mut out, "  workspaces", "none of the managed workspaces");
            } else {
                let rows: Vec<Vec<String>> = ms
                    .iter()
                    .map(|m| vec![m.workspace_id.clone(), m.role.clone()])
                    .collect();
                out.push_str("  workspaces (managed ones):\n");
                table(&mut out, "    ", &["WORKSPACE ID", "ROLE"], &rows);
            }
        }
    }
    if e.planned_ops.is_empty() {
        out.push_str("\nPlanned ops: none, the control plane matches\n");
    } else {
        let _ = writeln!(out, "\nPlanned ops ({}):", e.planned_ops.len());
        ops_table(&mut out, "  ", &e.planned_ops, &[]);
    }
    if !e.read_errors.is_empty() {
        out.push('\n');
        list(
            &mut out,
            "Read errors (actual state may be incomplete)",
            &e.read_errors,
        );
    }
    (out, true)
}

/// Beyond this many applied ops a run summary only counts them.
const MAX_LISTED_RESULTS: usize = 25;

/// A run summary (`resync --wait`, `approve-deletions`); false when not ok, when ops failed, or
/// when deletions are held. `None`: the daemon could not say how the run ended.
pub fn render_run(s: Option<&api::RunDoc>) -> (String, bool) {
    let mut out = String::new();
    let Some(s) = s else {
        out.push_str(
            "The run's result is unknown (the reconciler stopped?). Check `scim-sync status`.\n",
        );
        return (out, false);
    };
    let _ = writeln!(
        out,
        "Run {} ({}, {}): {}",
        s.run_id,
        s.kind,
        s.trigger,
        match (s.ok, s.failed) {
            (true, 0) => "ok".to_string(),
            (true, n) => format!("ok, but {n} op(s) failed and are retried with a backoff"),
            (false, _) => "NOT OK".to_string(),
        }
    );
    field(
        &mut out,
        "  finished",
        format!(
            "{} ({} ms){}",
            s.finished_at,
            s.duration_ms,
            if s.dry_run {
                ", dry run: nothing was changed"
            } else {
                ""
            }
        ),
    );
    field(&mut out, "  planned", summary_line(&s.planned));
    field(&mut out, "  applied", s.applied);
    field(&mut out, "  failed", s.failed);
    field(&mut out, "  held", s.held);
    field(&mut out, "  withheld", s.withheld);
    if s.quarantined > 0 {
        field(&mut out, "  quarantined", s.quarantined);
    }
    let result_rows = |rs: &[&api::OpResultDoc]| -> Vec<Vec<String>> {
        rs.iter()
            .flat_map(|r| {
                op_rows(&r.op, false).into_iter().map(|mut row| {
                    row.pop();
                    row.push(r.result.clone());
                    row
                })
            })
            .collect()
    };
    let (failed, done): (Vec<&api::OpResultDoc>, Vec<&api::OpResultDoc>) =
        s.results.iter().partition(|r| r.failed());
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailed ops ({}):", failed.len());
        table(
            &mut out,
            "  ",
            &["PHASE", "OP", "TARGET", "RESULT"],
            &result_rows(&failed),
        );
    }
    if !done.is_empty() && done.len() <= MAX_LISTED_RESULTS {
        let _ = writeln!(out, "\nApplied ops ({}):", done.len());
        table(
            &mut out,
            "  ",
            &["PHASE", "OP", "TARGET", "RESULT"],
            &result_rows(&done),
        );
    } else if !done.is_empty() {
        let _ = writeln!(
            out,
            "\n{} ops applied; every one is in the audit log (GET /admin/audit), or use --json.",
            done.len()
        );
    }
    let mut tail = String::new();
    list(&mut tail, "Errors", &s.errors);
    list(&mut tail, "Warnings", &s.warnings);
    if !tail.is_empty() {
        out.push('\n');
        out.push_str(&tail);
    }
    if s.held > 0 {
        let _ = writeln!(out, "\n{}", held_hint(s.held));
    }
    (out, s.ok && s.held == 0 && s.failed == 0)
}

/// `POST /admin/approve-deletions`.
pub fn render_approval(a: &api::ApprovalDoc) -> (String, bool) {
    match a {
        api::ApprovalDoc::Applied {
            approved, summary, ..
        } if *approved > 0 => {
            let mut out =
                format!("Approved {approved} held deletion(s); they were applied by this run:\n\n");
            let (run, ok) = render_run(summary.as_deref());
            out.push_str(&run);
            (out, ok)
        }
        _ => ("No deletions are held; nothing to approve.\n".into(), true),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use serde_json::json;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn admin_url_comes_from_admin_listen_only() {
        let p = Path::new("x.toml");
        // Other sections, even invalid ones, are not read.
        let url = admin_url_from_toml(
            "[scim]\nbogus = 1\n[admin]\nlisten = \"127.0.0.1:9999\"\n",
            p,
        )
        .unwrap();
        assert_eq!(url, "http://127.0.0.1:9999");
        assert_eq!(admin_url_from_toml("", p).unwrap(), "http://127.0.0.1:8081");
        assert_eq!(
            admin_url_from_toml("[admin]\nlisten = \"0.0.0.0:81\"\n", p).unwrap(),
            "http://127.0.0.1:81"
        );
        assert_eq!(
            admin_url_from_toml("[admin]\nlisten = \"[::]:81\"\n", p).unwrap(),
            "http://[::1]:81"
        );
        let e = admin_url_from_toml("[admin]\nlisten = \"nowhere\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[admin] listen"), "{e}");
        let e = admin_url_from_toml("[admin]\nlisten = \"127.0.0.1:0\"\n", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--admin-url"), "{e}");
        let e = admin_url_from_toml("[admin\n", p).unwrap_err().to_string();
        assert!(e.contains("x.toml"), "{e}");
    }

    fn args(url: Option<&str>, config: Option<&str>, token: Option<&str>) -> AdminArgs {
        AdminArgs {
            admin_url: url.map(str::to_string),
            config: config.map(PathBuf::from),
            admin_token: token.map(str::to_string),
            timeout: 5,
            json: false,
        }
    }

    #[test]
    fn resolve_needs_a_place_and_a_token() {
        let (u, t) = resolve(&args(Some("http://h:1/"), None, Some("tok"))).unwrap();
        assert_eq!((u.as_str(), t.as_str()), ("http://h:1", "tok"));
        let e = resolve(&args(None, None, Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("--admin-url"), "{e}");
        let e = resolve(&args(Some("h:1"), None, Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        let e = resolve(&args(Some("http://h:1"), None, Some(" "))).unwrap_err();
        assert!(e.to_string().contains("SCIM_SYNC_ADMIN_TOKEN"), "{e}");
        let e = resolve(&args(None, Some("/nonexistent/x.toml"), Some("t"))).unwrap_err();
        assert_eq!(e.exit_code(), exit::USAGE);
        assert!(e.to_string().contains("/nonexistent/x.toml"), "{e}");
    }

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

    #[test]
    fn plan_renders_ops_held_and_errors() {
        let remove = json!({"op": "remove_member", "workspace": "Eng", "workspace_id": "w1",
            "user_id": "u9", "email": "bob@x.io", "reason": "no longer in ws-Eng-role-member"});
        let body = json!({
            "summary": {"add_members": 2, "remove_member": 1, "destructive": 1},
            "dry_run_only": true,
            "plan": {
                "ops": [
                    {"op": "add_members", "workspace": "Eng", "workspace_id": "w1", "members": [
                        {"user_id": "u1", "email": "a@x.io", "role": "member", "reason": "group A"},
                        {"user_id": "u2", "email": "c@x.io", "role": "admin", "reason": "group B"}
                    ], "reason": "members"},
                    remove,
                ],
                "withheld": null, "conflicts": [], "warnings": ["w!"], "notes": [], "managed_users": 3
            },
            "held_by_fuse": [remove],
            "held_reason": "1 > max_deletions 0",
            "held_digest": "d1",
            "read_errors": []
        });
        let doc = |v: &Value| serde_json::from_value::<api::PlanDoc>(v.clone()).unwrap();
        let (out, ok) = render_plan(&doc(&body));
        assert!(ok);
        assert!(out.contains("PHASE"), "{out}");
        assert!(out.contains("add_or_change_members"), "{out}");
        assert!(out.contains("a@x.io to Eng as member"), "{out}");
        assert!(out.contains("remove_member (HELD)"), "{out}");
        assert!(out.contains("bob@x.io from Eng"), "{out}");
        assert!(out.contains("1 > max_deletions 0"), "{out}");
        assert!(out.contains("w!"), "{out}");
        let mut bad = body.clone();
        bad["read_errors"] = json!(["users: timeout"]);
        let (out, ok) = render_plan(&doc(&bad));
        assert!(!ok);
        assert!(out.contains("users: timeout"), "{out}");
    }

    #[test]
    fn run_not_ok_or_held_is_a_failure() {
        let mut s = json!({"run_id": "r1", "kind": "full", "trigger": "manual", "ok": true,
            "started_at": "t", "finished_at": "t", "duration_ms": 5, "dry_run": false,
            "planned": {}, "applied": 0, "failed": 0, "held": 0, "withheld": 0,
            "quarantined": 0, "approved": 0, "errors": [], "warnings": [], "results": []});
        let run = |v: &Value| render_run(Some(&serde_json::from_value(v.clone()).unwrap()));
        assert!(run(&s).1);
        s["held"] = json!(2);
        let (out, ok) = run(&s);
        assert!(!ok);
        assert!(out.contains("approve-deletions"), "{out}");
        s["held"] = json!(0);
        s["ok"] = json!(false);
        s["failed"] = json!(1);
        s["results"] = json!([{"op": "remove_user", "user_id": "u", "email": "e@x.io",
            "reason": "gone", "result": "failed: 500"}]);
        let (out, ok) = run(&s);
        assert!(!ok);
        assert!(out.contains("e@x.io from the organisation"), "{out}");
        assert!(out.contains("failed: 500"), "{out}");
        assert!(!render_run(None).1);
    }

    #[test]
    fn status_flags_what_needs_attention() {
        let mut s = json!({
            "version": "0.1.0", "uptime_secs": 3700,
            "scim": {"ok": true, "listen": "127.0.0.1:8080", "base_path": "/scim/v2",
                "last_ok_at": "t1"},
            "store": {"ok": true, "users": 3, "groups": 1, "last_change_seq": 9,
                "last_ok_at": "t1", "write_commits": 2, "writes": 4},
            "control_plane": {"ok": true, "last_ok_at": "t1", "last_error": null},
            "reconciler": {"ok": true, "running": null, "progress": {"done": 0, "total": 0},
                "last_successful_run_at": "t1", "last_successful_full_run_at": "t1",
                "next_retry_at": null,
                "last_run": {"run_id": "r", "kind": "full", "trigger": "startup", "ok": true,
                    "started_at": "t0", "finished_at": "t1", "duration_ms": 3, "dry_run": false,
                    "planned": {}, "applied": 1, "failed": 0, "held": 0, "withheld": 0,
                    "quarantined": 0, "approved": 0, "errors": [], "warnings": []},
                "held_deletions": [], "held_reason": null, "held_digest": null,
                "approved_waiting": 0, "failing_ops": [], "store_error": null}
        });
        let status =
            |v: &Value| render_status(&serde_json::from_value(v.clone()).unwrap(), "http://a");
        let (out, ok) = status(&s);
        assert!(ok, "{out}");
        assert!(out.contains("3 users, 1 groups"), "{out}");
        assert!(out.contains("up 1h 1m"), "{out}");
        let held = |email: &str| json!({"op": "remove_user", "user_id": "u", "email": email, "reason": "gone"});
        s["reconciler"]["held_deletions"] = json!([held("a@x.io"), held("b@x.io")]);
        s["control_plane"]["ok"] = json!(false);
        s["control_plane"]["last_error"] = json!("connect refused");
        let (out, ok) = status(&s);
        assert!(!ok);
        assert!(out.contains("connect refused"), "{out}");
        assert!(out.contains("Held deletions  2"), "{out}");
        assert!(out.contains("Needs attention"), "{out}");
    }
}

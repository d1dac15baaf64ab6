//! The command line's arguments (clap): commands, flags and their help.

use super::EXIT_CODES_HELP;
use crate::config::DEFAULT_ADMIN_LISTEN;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

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
        /// Tell the whole story by itself and exit: the IdP creates a person, Portkey invites
        /// them, they accept, a group gives them a workspace, the IdP deactivates them and they
        /// are removed. Uses its own ports and a temporary store.
        #[arg(long)]
        walkthrough: bool,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}

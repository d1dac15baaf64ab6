//! Configuration: one TOML file (read with the `config` crate), secrets from the environment.
//!
//! Everything is checked here, before anything binds or opens the store, and every error names
//! the key at fault and how to fix it. `config/scim-sync.example.toml` documents every key.

use crate::token::TokenSet;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub const ENV_SCIM_TOKEN: &str = "SCIM_SYNC_SCIM_TOKEN";
pub const ENV_ADMIN_TOKEN: &str = "SCIM_SYNC_ADMIN_TOKEN";
pub const ENV_PORTKEY_API_KEY: &str = "PORTKEY_API_KEY";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error(
        "config file {path}: {reason}. Every key is documented in config/scim-sync.example.toml"
    )]
    Parse { path: PathBuf, reason: String },
    #[error("config key {key}: {problem}. Fix: {fix}")]
    Invalid {
        key: String,
        problem: String,
        fix: String,
    },
}

fn invalid(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// A secret from the environment. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    scim: RawScim,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    portkey: RawPortkey,
    #[serde(default)]
    sync: RawSync,
    #[serde(default)]
    mapping: RawMapping,
    #[serde(default)]
    log: RawLog,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawScim {
    listen: Option<String>,
    base_path: Option<String>,
    #[serde(default)]
    token_hashes: Vec<String>,
    public_url: Option<String>,
    max_body_bytes: Option<u64>,
    max_results: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    #[serde(default)]
    token_hashes: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPortkey {
    base_url: Option<String>,
    request_timeout_ms: Option<u64>,
    max_in_flight: Option<u64>,
    requests_per_second: Option<f64>,
    retry_initial_ms: Option<u64>,
    retry_max_interval_ms: Option<u64>,
    retry_give_up_secs: Option<u64>,
    page_size: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSync {
    debounce_ms: Option<u64>,
    debounce_max_ms: Option<u64>,
    fuse_floor: Option<u64>,
    fuse_window_minutes: Option<u64>,
    full_resync_cron: Option<String>,
    max_deletions: Option<u64>,
    max_deletion_percent: Option<f64>,
    dry_run: Option<bool>,
    #[serde(default)]
    protected_emails: Vec<String>,
    create_workspaces: Option<bool>,
    default_org_role: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    #[serde(default)]
    groups: Vec<RawGroupMapping>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroupMapping {
    group: String,
    workspace: String,
    role: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: Option<String>,
    level: Option<String>,
}

// ---- the validated configuration -----------------------------------------------------------

#[derive(Debug, Clone)]
pub struct Config {
    pub scim: ScimConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub portkey: PortkeyConfig,
    pub sync: SyncConfig,
    pub mappings: Vec<GroupMapping>,
    pub log: LogConfig,
}

#[derive(Debug, Clone)]
pub struct ScimConfig {
    pub listen: SocketAddr,
    /// Starts with `/`, no trailing `/` (empty when served at the root).
    pub base_path: String,
    pub tokens: TokenSet,
    /// External URL of the base path, for `meta.location` (behind a reverse proxy).
    pub public_url: Option<String>,
    pub max_body_bytes: u64,
    pub max_results: usize,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens: TokenSet,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PortkeyConfig {
    pub base_url: String,
    pub api_key: Secret,
    pub request_timeout_ms: u64,
    pub max_in_flight: usize,
    pub requests_per_second: f64,
    pub retry_initial_ms: u64,
    pub retry_max_interval_ms: u64,
    pub retry_give_up_secs: u64,
    pub page_size: usize,
}

/// Config parses roles straight into the domain's types.
pub use crate::roles::{OrgRole, WorkspaceRole};

#[derive(Debug, Clone)]
pub struct SyncConfig {
    pub debounce_ms: u64,
    /// A change-driven run starts at most this long after the first unhandled write, however
    /// steadily writes keep coming.
    pub debounce_max_ms: u64,
    pub full_resync_cron: String,
    /// Destructive ops per fuse window above which everything destructive is held.
    pub max_deletions: u64,
    /// Share of managed people above which destructive ops are held, once more than
    /// `fuse_floor` of them fall in the window.
    pub max_deletion_percent: f64,
    /// This many destructive ops per window are never held by the percentage rule, so routine
    /// offboarding in a small org flows.
    pub fuse_floor: u64,
    /// The rolling window, across all runs, over which the fuse counts.
    pub fuse_window_minutes: u64,
    pub dry_run: bool,
    pub protected_emails: Vec<String>,
    pub create_workspaces: bool,
    pub default_org_role: OrgRole,
}

#[derive(Debug, Clone)]
pub struct GroupMapping {
    pub group: String,
    pub workspace: String,
    pub role: WorkspaceRole,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
}

/// Where secrets come from. Tests pass their own; `serve` reads the process environment.
pub trait Env {
    fn get(&self, key: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<S: std::hash::BuildHasher> Env for std::collections::HashMap<String, String, S> {
    fn get(&self, key: &str) -> Option<String> {
        std::collections::HashMap::get(self, key).cloned()
    }
}

pub const DEFAULT_SCIM_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_BASE_PATH: &str = "/scim/v2";
pub const DEFAULT_STORE_PATH: &str = "scim-sync.redb";
pub const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
pub const DEFAULT_MAX_RESULTS: u64 = 1000;
/// Fuse defaults: an org of any size offboards a few people an hour without approval (the
/// floor), a small or mid-size org is held past 10% of its people, and no org loses more than
/// 25 people an hour without someone approving it.
pub const DEFAULT_MAX_DELETIONS: u64 = 25;
pub const DEFAULT_FUSE_FLOOR: u64 = 5;
pub const DEFAULT_FUSE_WINDOW_MINUTES: u64 = 60;

impl Config {
    /// Reads and validates the file at `path`, taking secrets from `env`.
    pub fn load(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Self::from_toml(&text, path, env)
    }

    /// Parses TOML text; `origin` only names the file in errors.
    pub fn from_toml(text: &str, origin: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let raw: RawFile = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| ConfigError::Parse {
                path: origin.to_path_buf(),
                reason: e.to_string(),
            })?;
        Self::validate(raw, env)
    }

    fn validate(raw: RawFile, env: &dyn Env) -> Result<Config, ConfigError> {
        let scim_listen = parse_addr(
            "[scim] listen",
            raw.scim.listen.as_deref(),
            DEFAULT_SCIM_LISTEN,
        )?;
        let admin_listen = parse_addr(
            "[admin] listen",
            raw.admin.listen.as_deref(),
            DEFAULT_ADMIN_LISTEN,
        )?;
        if scim_listen == admin_listen && scim_listen.port() != 0 {
            return Err(invalid(
                "[admin] listen",
                format!("{admin_listen} is also [scim] listen"),
                "give the admin listener its own port",
            ));
        }

        let base_path =
            normalize_base_path(raw.scim.base_path.as_deref().unwrap_or(DEFAULT_BASE_PATH))?;

        let scim_tokens = tokens(
            "[scim] token_hashes",
            &raw.scim.token_hashes,
            env.get(ENV_SCIM_TOKEN),
            ENV_SCIM_TOKEN,
        )?;
        let admin_tokens = tokens(
            "[admin] token_hashes",
            &raw.admin.token_hashes,
            env.get(ENV_ADMIN_TOKEN),
            ENV_ADMIN_TOKEN,
        )?;

        let public_url = match raw.scim.public_url {
            Some(u) => {
                let u = u.trim_end_matches('/').to_string();
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(invalid(
                        "[scim] public_url",
                        format!("'{u}' is not an http(s) URL"),
                        "use the URL the IdP is given, e.g. https://scim.example.com/scim/v2",
                    ));
                }
                Some(u)
            }
            None => None,
        };
        let max_body_bytes = raw.scim.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(invalid(
                "[scim] max_body_bytes",
                format!("{max_body_bytes} is too small for any SCIM body"),
                "use at least 1024 (default 1048576)",
            ));
        }
        let max_results = raw.scim.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
        if max_results == 0 {
            return Err(invalid(
                "[scim] max_results",
                "0 would make every page empty",
                "use a positive number (default 1000)",
            ));
        }

        let store_path = PathBuf::from(raw.store.path.unwrap_or_else(|| DEFAULT_STORE_PATH.into()));
        check_store_path(&store_path)?;

        let base_url = raw.portkey.base_url.clone().ok_or_else(|| {
            invalid(
                "[portkey] base_url",
                "missing",
                "set it to the control plane's Admin API base, e.g. https://portkey.example.com/v1",
            )
        })?;
        let base_url = base_url.trim_end_matches('/').to_string();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
            return Err(invalid(
                "[portkey] base_url",
                format!("'{base_url}' is not an http(s) URL"),
                "use e.g. https://portkey.example.com/v1",
            ));
        }
        let api_key = env
            .get(ENV_PORTKEY_API_KEY)
            .map(Secret::new)
            .ok_or_else(|| {
                invalid(
                    ENV_PORTKEY_API_KEY,
                    "not set",
                    "export PORTKEY_API_KEY with an Admin API key of the organisation",
                )
            })?;
        let p = &raw.portkey;
        let positive = |key: &str, v: Option<u64>, default: u64| -> Result<u64, ConfigError> {
            match v {
                Some(0) => Err(invalid(key, "0 is not allowed", "use a positive number")),
                Some(n) => Ok(n),
                None => Ok(default),
            }
        };
        let requests_per_second = p.requests_per_second.unwrap_or(20.0);
        if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
            return Err(invalid(
                "[portkey] requests_per_second",
                format!("{requests_per_second} is not a positive number"),
                "use e.g. 20",
            ));
        }
        let portkey = PortkeyConfig {
            base_url,
            api_key,
            request_timeout_ms: positive(
                "[portkey] request_timeout_ms",
                p.request_timeout_ms,
                10_000,
            )?,
            max_in_flight: positive("[portkey] max_in_flight", p.max_in_flight, 8)? as usize,
            requests_per_second,
            retry_initial_ms: positive("[portkey] retry_initial_ms", p.retry_initial_ms, 200)?,
            retry_max_interval_ms: positive(
                "[portkey] retry_max_interval_ms",
                p.retry_max_interval_ms,
                10_000,
            )?,
            retry_give_up_secs: positive(
                "[portkey] retry_give_up_secs",
                p.retry_give_up_secs,
                120,
            )?,
            page_size: positive("[portkey] page_size", p.page_size, 100)? as usize,
        };

        let s = raw.sync;
        let debounce_ms = s.debounce_ms.unwrap_or(500);
        // Unset, the cap follows a raised debounce rather than refusing it.
        let debounce_max_ms = s.debounce_max_ms.unwrap_or(debounce_ms.max(10_000));
        if debounce_max_ms < debounce_ms {
            return Err(invalid(
                "[sync] debounce_max_ms",
                format!("{debounce_max_ms} is less than [sync] debounce_ms ({debounce_ms})"),
                "set it to at least debounce_ms, e.g. 10000",
            ));
        }
        let fuse_window_minutes = positive(
            "[sync] fuse_window_minutes",
            s.fuse_window_minutes,
            DEFAULT_FUSE_WINDOW_MINUTES,
        )?;
        let max_deletion_percent = s.max_deletion_percent.unwrap_or(10.0);
        if !(0.0..=100.0).contains(&max_deletion_percent) {
            return Err(invalid(
                "[sync] max_deletion_percent",
                format!("{max_deletion_percent} is not between 0 and 100"),
                "use a percentage, e.g. 10",
            ));
        }
        let full_resync_cron = s
            .full_resync_cron
            .unwrap_or_else(|| "0 */15 * * * *".into());
        // Parsed by the same cron parser the scheduler uses, so what passes here runs there.
        let cron_ok = full_resync_cron.split_whitespace().count() == 6
            && tokio_cron_scheduler::Job::new_async(full_resync_cron.as_str(), |_, _| {
                Box::pin(async {})
            })
            .is_ok();
        if !cron_ok {
            return Err(invalid(
                "[sync] full_resync_cron",
                format!("'{full_resync_cron}' is not a six-field cron expression"),
                "use a cron expression with seconds, e.g. \"0 */15 * * * *\"",
            ));
        }
        let default_org_role = match s
            .default_org_role
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("member") => OrgRole::Member,
            Some("admin") => OrgRole::Admin,
            Some(other) => {
                return Err(invalid(
                    "[sync] default_org_role",
                    format!("'{other}' is not an org role the API can set"),
                    "use \"member\" or \"admin\"",
                ))
            }
        };
        let sync = SyncConfig {
            debounce_ms,
            debounce_max_ms,
            full_resync_cron,
            max_deletions: s.max_deletions.unwrap_or(DEFAULT_MAX_DELETIONS),
            max_deletion_percent,
            fuse_floor: s.fuse_floor.unwrap_or(DEFAULT_FUSE_FLOOR),
            fuse_window_minutes,
            dry_run: s.dry_run.unwrap_or(false),
            protected_emails: s
                .protected_emails
                .iter()
                .map(|e| e.trim().to_ascii_lowercase())
                .collect(),
            create_workspaces: s.create_workspaces.unwrap_or(true),
            default_org_role,
        };

        let mut mappings = Vec::new();
        for (i, m) in raw.mapping.groups.into_iter().enumerate() {
            let key = format!("[[mapping.groups]] #{} role", i + 1);
            let role = WorkspaceRole::parse(&m.role).ok_or_else(|| {
                invalid(
                    &key,
                    format!("'{}' is not a workspace role", m.role),
                    "use admin, manager or member",
                )
            })?;
            if m.group.trim().is_empty() || m.workspace.trim().is_empty() {
                return Err(invalid(
                    &format!("[[mapping.groups]] #{}", i + 1),
                    "group and workspace must not be empty",
                    "name the SCIM group and the Portkey workspace",
                ));
            }
            mappings.push(GroupMapping {
                group: m.group,
                workspace: m.workspace,
                role,
            });
        }

        let format = match raw.log.format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "[log] format",
                    format!("'{other}' is not a log format"),
                    "use \"text\" or \"json\"",
                ))
            }
        };
        let level = raw.log.level.unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
            return Err(invalid(
                "[log] level",
                format!("'{level}' is not a log filter"),
                "use error, warn, info, debug or trace",
            ));
        }

        Ok(Config {
            scim: ScimConfig {
                listen: scim_listen,
                base_path,
                tokens: scim_tokens,
                public_url,
                max_body_bytes,
                max_results: max_results as usize,
            },
            admin: AdminConfig {
                listen: admin_listen,
                tokens: admin_tokens,
            },
            store: StoreConfig { path: store_path },
            portkey,
            sync,
            mappings,
            log: LogConfig { format, level },
        })
    }
}

fn parse_addr(key: &str, value: Option<&str>, default: &str) -> Result<SocketAddr, ConfigError> {
    let v = value.unwrap_or(default);
    v.parse::<SocketAddr>().map_err(|_| {
        invalid(
            key,
            format!("'{v}' is not an IP address and port"),
            format!("use the form {default}"),
        )
    })
}

fn normalize_base_path(p: &str) -> Result<String, ConfigError> {
    let trimmed = p.trim().trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if !trimmed.starts_with('/')
        || trimmed.contains("//")
        || trimmed.contains('_')
        || !trimmed
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.'))
    {
        return Err(invalid(
            "[scim] base_path",
            format!("'{p}' is not a usable URL path (Okta rejects '_' in base URLs)"),
            "use a path such as /scim/v2",
        ));
    }
    Ok(trimmed.to_string())
}

fn tokens(
    key: &str,
    hashes: &[String],
    plain: Option<String>,
    env_name: &str,
) -> Result<TokenSet, ConfigError> {
    let mut set = TokenSet::new();
    for (i, h) in hashes.iter().enumerate() {
        set.add_hash(h.trim()).map_err(|e| {
            invalid(
                &format!("{key}[{i}]"),
                e.to_string(),
                "paste the output of `scim-sync hash-token`",
            )
        })?;
    }
    if let Some(t) = plain {
        if t.trim().len() < 16 {
            return Err(invalid(
                env_name,
                "shorter than 16 characters",
                "use a long random token, e.g. `openssl rand -hex 32`",
            ));
        }
        set.add_plain(t.trim());
    }
    if set.is_empty() {
        return Err(invalid(
            key,
            format!("no token configured (the list is empty and {env_name} is not set)"),
            format!(
                "export {env_name}=<token>, or add the output of `scim-sync hash-token` to {key}"
            ),
        ));
    }
    Ok(set)
}

/// The store file must be creatable: its directory exists and is writable, and the path is not
/// a directory. Checked before anything starts so a typo fails fast.
fn check_store_path(path: &Path) -> Result<(), ConfigError> {
    if path.as_os_str().is_empty() {
        return Err(invalid(
            "[store] path",
            "empty",
            "name a file, e.g. /var/lib/scim-sync/store.redb",
        ));
    }
    if path.is_dir() {
        return Err(invalid(
            "[store] path",
            format!("{} is a directory", path.display()),
            "name a file inside it, e.g. store.redb",
        ));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let meta = std::fs::metadata(&dir).map_err(|e| {
        invalid(
            "[store] path",
            format!("directory {} is not usable: {e}", dir.display()),
            "create the directory or choose another path",
        )
    })?;
    if !meta.is_dir() {
        return Err(invalid(
            "[store] path",
            format!("{} is not a directory", dir.display()),
            "choose a path inside an existing directory",
        ));
    }
    if meta.permissions().readonly() {
        return Err(invalid(
            "[store] path",
            format!("directory {} is read-only", dir.display()),
            "choose a writable directory",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert(
            ENV_SCIM_TOKEN.to_string(),
            "scim-token-0123456789".to_string(),
        );
        m.insert(
            ENV_ADMIN_TOKEN.to_string(),
            "admin-token-0123456789".to_string(),
        );
        m.insert(ENV_PORTKEY_API_KEY.to_string(), "pk-key".to_string());
        m
    }

    const MIN: &str =
        "[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n[store]\npath = \"/tmp/x.redb\"\n";

    fn err(text: &str, env: &HashMap<String, String>) -> String {
        match Config::from_toml(text, Path::new("t.toml"), env) {
            Ok(_) => String::from("no error"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::from_toml(MIN, Path::new("t.toml"), &env());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.scim.base_path, "/scim/v2");
        assert_eq!(c.scim.listen.to_string(), DEFAULT_SCIM_LISTEN);
        assert_eq!(c.admin.listen.to_string(), DEFAULT_ADMIN_LISTEN);
        assert_eq!(c.sync.max_deletions, 25);
        assert_eq!(c.sync.fuse_floor, 5);
        assert_eq!(c.sync.fuse_window_minutes, 60);
        assert_eq!(c.sync.debounce_max_ms, 10_000);
        assert!(format!("{:?}", c.portkey).contains("[redacted]"));
        assert!(!format!("{:?}", c.portkey).contains("pk-key"));
    }

    #[test]
    fn unknown_key_is_named() {
        let e = err(&format!("{MIN}[scim]\nlisten_addr = \"x\"\n"), &env());
        assert!(e.contains("listen_addr"), "{e}");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = err(&format!("{MIN}[sync]\nmax_deletions = \"ten\"\n"), &env());
        assert!(e.contains("max_deletions"), "{e}");
    }

    #[test]
    fn bad_listen_is_named() {
        let e = err(&format!("{MIN}[scim]\nlisten = \"localhost\"\n"), &env());
        assert!(e.contains("[scim] listen") && e.contains("Fix"), "{e}");
    }

    #[test]
    fn missing_token_is_named() {
        let mut env = env();
        env.remove(ENV_SCIM_TOKEN);
        let e = err(MIN, &env);
        assert!(
            e.contains("[scim] token_hashes") && e.contains(ENV_SCIM_TOKEN),
            "{e}"
        );
    }

    #[test]
    fn missing_api_key_is_named() {
        let mut env = env();
        env.remove(ENV_PORTKEY_API_KEY);
        let e = err(MIN, &env);
        assert!(e.contains(ENV_PORTKEY_API_KEY), "{e}");
    }

    #[test]
    fn unusable_store_dir_is_named() {
        let e = err(
            "[portkey]\nbase_url = \"http://x/v1\"\n[store]\npath = \"/nonexistent-dir/x.redb\"\n",
            &env(),
        );
        assert!(e.contains("[store] path"), "{e}");
    }

    #[test]
    fn token_hashes_work_without_env() {
        let mut env = env();
        env.remove(ENV_SCIM_TOKEN);
        let text = format!(
            "{MIN}[scim]\ntoken_hashes = [\"{}\"]\n",
            crate::token::hash_token("abc")
        );
        let c = Config::from_toml(&text, Path::new("t.toml"), &env);
        assert!(c.map(|c| c.scim.tokens.verify("abc")).unwrap_or(false));
    }

    #[test]
    fn bad_cron_is_named() {
        for cron in ["*/5 * * * *", "0 0 25 * * *", "banana"] {
            let e = err(
                &format!("{MIN}[sync]\nfull_resync_cron = \"{cron}\"\n"),
                &env(),
            );
            assert!(e.contains("[sync] full_resync_cron"), "{cron}: {e}");
        }
    }

    #[test]
    fn base_path_rules() {
        assert_eq!(
            normalize_base_path("/scim/v2/").ok(),
            Some("/scim/v2".to_string())
        );
        assert!(normalize_base_path("scim").is_err());
        assert!(normalize_base_path("/scim_v2").is_err());
    }
}

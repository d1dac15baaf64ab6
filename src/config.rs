//! Configuration: one TOML file (read with the `config` crate), secrets from the environment.
//!
//! Everything is checked here, before anything binds or opens the store, and every error names
//! the key at fault and how to fix it. `config/scim-sync.example.toml` documents every key.

use crate::token::TokenSet;
use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::net::{Limits as ListenerLimits, TrustedProxies};

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

/// A value that works but is probably not what was meant. `check-config` prints these and
/// `serve` logs them at startup; neither refuses to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub key: String,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "config key {}: {}. Fix: {}",
            self.key, self.problem, self.fix
        )
    }
}

fn warning(key: &str, problem: impl Into<String>, fix: impl Into<String>) -> ConfigWarning {
    ConfigWarning {
        key: key.to_string(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// Where the setup (`scim-sync init`, the systemd unit, the container) keeps the secrets.
pub const DEFAULT_ENV_FILE: &str = "/etc/scim-sync/scim-sync.env";

/// How to get the env file's secrets into a shell or a command, for error messages.
fn load_env_file_hint() -> String {
    format!(
        "load the env file first (`set -a; . {DEFAULT_ENV_FILE}; set +a`, or pass \
         `--env-file {DEFAULT_ENV_FILE}` to check-config and serve; systemd reads it through \
         EnvironmentFile=)"
    )
}

/// Loopback ports of the bundled control-plane simulator: 8090 is `scim-sync demo`'s (and
/// config/scim-sync.example.toml's), 8787 is the standalone `portkey-sim`'s default.
pub const SIMULATOR_PORTS: [u16; 2] = [8090, 8787];

/// The key of the first number the `config` crate cannot hold (integers beyond `i64`, floats
/// that overflow), which it reports without naming the key ("number too large to fit in target
/// type"), as `section.key` like its other errors. `None` when there is none or the text is not
/// TOML (the crate's own error then says where).
fn out_of_range_key(text: &str) -> Option<String> {
    let table = toml::de::DeTable::parse(text).ok()?.into_inner();
    out_of_range_in(&table)
}

fn out_of_range_in(table: &toml::de::DeTable<'_>) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let name = key.get_ref();
        out_of_range_value(value.get_ref()).map(|inner| match inner {
            Some(rest) => format!("{name}.{rest}"),
            None => name.to_string(),
        })
    })
}

/// `Some(None)` when `value` itself is out of range, `Some(Some(path))` for a key below it.
fn out_of_range_value(value: &toml::de::DeValue<'_>) -> Option<Option<String>> {
    use toml::de::DeValue;
    match value {
        DeValue::Integer(n) => i64::from_str_radix(n.as_str(), n.radix())
            .is_err()
            .then_some(None),
        DeValue::Float(x) => x
            .as_str()
            .parse::<f64>()
            .map_or(true, |f| f.is_infinite() && !x.as_str().contains("inf"))
            .then_some(None),
        DeValue::Table(t) => out_of_range_in(t).map(Some),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            out_of_range_value(item.get_ref()).map(|inner| {
                Some(match inner {
                    Some(rest) => format!("{i}.{rest}"),
                    None => i.to_string(),
                })
            })
        }),
        DeValue::String(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => None,
    }
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
    rate_limit_per_second: Option<u64>,
    rate_limit_burst: Option<u64>,
    max_connections: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    body_read_timeout_ms: Option<u64>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    listen: Option<String>,
    #[serde(default)]
    token_hashes: Vec<String>,
    max_connections: Option<u64>,
    header_read_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: Option<String>,
    write_ahead_log: Option<bool>,
    keep_changes: Option<u64>,
    audit_retention_days: Option<u64>,
    audit_max_entries: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPortkey {
    base_url: Option<String>,
    allow_insecure_http: Option<bool>,
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
    /// Values that work but are probably mistakes; see [`ConfigWarning`].
    pub warnings: Vec<ConfigWarning>,
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
    /// Connection cap and timers of the SCIM listener.
    pub limits: ListenerLimits,
    pub body_read_timeout: Duration,
    /// Peers whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Requests per token; `None` when `[scim] rate_limit_per_second = 0`.
    pub rate_limit: Option<RateLimit>,
}

/// A request rate limit for each SCIM token: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub per_second: NonZeroU32,
    pub burst: NonZeroU32,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    pub tokens: TokenSet,
    pub limits: ListenerLimits,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    /// SCIM writes made durable by appending to `<path>.wal` rather than by flushing the
    /// store file's pages (`[store] write_ahead_log`, default on).
    pub write_ahead_log: bool,
    /// Change-feed entries kept even when the reconciler is past them.
    pub keep_changes: u64,
    /// Audit entries older than this are pruned; 0 keeps them forever.
    pub audit_retention_days: u64,
    /// The oldest audit entries beyond this many are pruned; 0 is unlimited.
    pub audit_max_entries: u64,
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
/// Per-token rate limit defaults. Entra requires gallery SCIM apps to take at least 25 requests
/// a second per tenant, and neither Entra (for custom apps) nor Okta documents a pace of its
/// own, so the sustained rate is 8 times that floor and the burst lets an IdP that pushes as
/// fast as it is answered run flat out for 5 s. A limit meant to stop a runaway or leaked token
/// must never throttle the IdP's normal pace: both retry a 429, but Entra quarantines a job
/// whose requests keep failing.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u64 = 200;
pub const DEFAULT_RATE_LIMIT_BURST: u64 = 1000;
/// Above this a rate limit is a typo more often than a wish (and governor needs a `u32`).
pub const MAX_RATE_LIMIT: u64 = 1_000_000;
/// Fuse defaults: an org of any size offboards a few people an hour without approval (the
/// floor), a small or mid-size org is held past 10% of its people, and no org loses more than
/// 25 people an hour without someone approving it.
pub const DEFAULT_MAX_DELETIONS: u64 = 25;
pub const DEFAULT_FUSE_FLOOR: u64 = 5;
pub const DEFAULT_FUSE_WINDOW_MINUTES: u64 = 60;
/// Change-feed entries kept behind the reconciler's cursor (`[store] keep_changes`).
pub const DEFAULT_KEEP_CHANGES: u64 = 1000;
/// `[store] audit_retention_days`.
pub const DEFAULT_AUDIT_RETENTION_DAYS: u64 = 365;
/// `[store] audit_max_entries`.
pub const DEFAULT_AUDIT_MAX_ENTRIES: u64 = 1_000_000;
/// A longer retention is a typo (days for hours, an extra digit) more often than a wish; 0
/// says "forever" plainly.
pub const MAX_AUDIT_RETENTION_DAYS: u64 = 36_500;
/// Fewer audit entries than this would not hold one large run's operations until someone
/// reads them.
pub const MIN_AUDIT_MAX_ENTRIES: u64 = 1000;

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
                reason: match out_of_range_key(text) {
                    Some(key) => format!("{e} for key `{key}`"),
                    None => e.to_string(),
                },
            })?;
        Self::validate(raw, env)
    }

    /// One section at a time, in file order, so the first error reported is the first in the
    /// file a reader would meet.
    fn validate(raw: RawFile, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut warnings = Vec::new();
        let (scim, admin) = listeners(&raw.scim, &raw.admin, env, &mut warnings)?;
        let store_path = PathBuf::from(raw.store.path.as_deref().unwrap_or(DEFAULT_STORE_PATH));
        check_store_path(&store_path)?;
        let store = store_config(store_path, &raw.store)?;
        let portkey = portkey_section(&raw.portkey, env, &mut warnings)?;
        let sync = sync_section(raw.sync)?;
        let mappings = mapping_section(raw.mapping)?;
        let log = log_section(raw.log)?;
        Ok(Config {
            scim,
            admin,
            store,
            portkey,
            sync,
            mappings,
            log,
            warnings,
        })
    }
}

/// `[scim]` and `[admin]`: addresses, tokens (which must differ), and each listener's limits.
fn listeners(
    scim: &RawScim,
    admin: &RawAdmin,
    env: &dyn Env,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(ScimConfig, AdminConfig), ConfigError> {
    let scim_listen = parse_addr("[scim] listen", scim.listen.as_deref(), DEFAULT_SCIM_LISTEN)?;
    let admin_listen = parse_addr(
        "[admin] listen",
        admin.listen.as_deref(),
        DEFAULT_ADMIN_LISTEN,
    )?;
    if scim_listen == admin_listen && scim_listen.port() != 0 {
        return Err(invalid(
            "[admin] listen",
            format!("{admin_listen} is also [scim] listen"),
            "give the admin listener its own port",
        ));
    }

    let base_path = normalize_base_path(scim.base_path.as_deref().unwrap_or(DEFAULT_BASE_PATH))?;

    let scim_plain = env.get(ENV_SCIM_TOKEN);
    let admin_plain = env.get(ENV_ADMIN_TOKEN);
    let scim_tokens = tokens(
        "[scim] token_hashes",
        &scim.token_hashes,
        scim_plain.clone(),
        ENV_SCIM_TOKEN,
    )?;
    let admin_tokens = tokens(
        "[admin] token_hashes",
        &admin.token_hashes,
        admin_plain.clone(),
        ENV_ADMIN_TOKEN,
    )?;
    check_tokens_differ(
        &token_fingerprints(
            "[scim] token_hashes",
            &scim.token_hashes,
            ENV_SCIM_TOKEN,
            scim_plain.as_deref(),
        ),
        &token_fingerprints(
            "[admin] token_hashes",
            &admin.token_hashes,
            ENV_ADMIN_TOKEN,
            admin_plain.as_deref(),
        ),
    )?;

    let rate_limit = scim_rate_limit(scim)?;
    let public_url = match scim.public_url.as_deref() {
        Some(u) => Some(check_public_url(u, &base_path, warnings)?),
        None => None,
    };
    let max_body_bytes = scim.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes < 1024 {
        return Err(invalid(
            "[scim] max_body_bytes",
            format!("{max_body_bytes} is too small for any SCIM body"),
            "use at least 1024 (default 1048576)",
        ));
    }
    let max_results = scim.max_results.unwrap_or(DEFAULT_MAX_RESULTS);
    if max_results == 0 {
        return Err(invalid(
            "[scim] max_results",
            "0 would make every page empty",
            "use a positive number (default 1000)",
        ));
    }

    let scim_limits = listener_limits(
        "[scim]",
        (
            scim.max_connections,
            scim.header_read_timeout_ms,
            scim.idle_timeout_ms,
        ),
        DEFAULT_SCIM_MAX_CONNECTIONS,
    )?;
    let admin_limits = listener_limits(
        "[admin]",
        (
            admin.max_connections,
            admin.header_read_timeout_ms,
            admin.idle_timeout_ms,
        ),
        DEFAULT_ADMIN_MAX_CONNECTIONS,
    )?;
    let body_read_timeout = timeout_ms(
        "[scim] body_read_timeout_ms",
        scim.body_read_timeout_ms,
        DEFAULT_BODY_READ_TIMEOUT_MS,
    )?;
    let trusted_proxies = trusted_proxies(&scim.trusted_proxies)?;

    Ok((
        ScimConfig {
            listen: scim_listen,
            base_path,
            tokens: scim_tokens,
            public_url,
            max_body_bytes,
            max_results: max_results as usize,
            rate_limit,
            limits: scim_limits,
            body_read_timeout,
            trusted_proxies,
        },
        AdminConfig {
            listen: admin_listen,
            tokens: admin_tokens,
            limits: admin_limits,
        },
    ))
}

/// `[portkey]`: where the Admin API is, the key, and how hard to push it.
fn portkey_section(
    p: &RawPortkey,
    env: &dyn Env,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<PortkeyConfig, ConfigError> {
    let base_url = p.base_url.clone().ok_or_else(|| {
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
    check_transport(&base_url, p.allow_insecure_http.unwrap_or(false))?;
    check_admin_api_base(&base_url, warnings)?;
    let api_key = env
        .get(ENV_PORTKEY_API_KEY)
        .map(Secret::new)
        .ok_or_else(|| {
            invalid(
                ENV_PORTKEY_API_KEY,
                "not set",
                format!(
                    "put an Admin API key of the Portkey organisation in {ENV_PORTKEY_API_KEY}: \
                     {}",
                    load_env_file_hint()
                ),
            )
        })?;
    let requests_per_second = p.requests_per_second.unwrap_or(20.0);
    if !(requests_per_second.is_finite() && requests_per_second > 0.0) {
        return Err(invalid(
            "[portkey] requests_per_second",
            format!("{requests_per_second} is not a positive number"),
            "use e.g. 20",
        ));
    }
    Ok(PortkeyConfig {
        base_url,
        api_key,
        request_timeout_ms: positive("[portkey] request_timeout_ms", p.request_timeout_ms, 10_000)?,
        max_in_flight: positive("[portkey] max_in_flight", p.max_in_flight, 8)? as usize,
        requests_per_second,
        retry_initial_ms: positive("[portkey] retry_initial_ms", p.retry_initial_ms, 200)?,
        retry_max_interval_ms: positive(
            "[portkey] retry_max_interval_ms",
            p.retry_max_interval_ms,
            10_000,
        )?,
        retry_give_up_secs: positive("[portkey] retry_give_up_secs", p.retry_give_up_secs, 120)?,
        page_size: positive("[portkey] page_size", p.page_size, 100)? as usize,
    })
}

/// `[sync]`: timing, the deletion fuse, and what the reconciler may do.
fn sync_section(s: RawSync) -> Result<SyncConfig, ConfigError> {
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
    Ok(SyncConfig {
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
    })
}

/// `[[mapping.groups]]`: explicit group → workspace role entries.
fn mapping_section(raw: RawMapping) -> Result<Vec<GroupMapping>, ConfigError> {
    let mut mappings = Vec::new();
    for (i, m) in raw.groups.into_iter().enumerate() {
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
        // Group and workspace names are both matched case-insensitively, so entries that
        // differ only in case are the same pair; two of them either repeat each other or
        // give one group two roles in one workspace.
        if let Some(j) = mappings.iter().position(|g: &GroupMapping| {
            g.group.trim().eq_ignore_ascii_case(m.group.trim())
                && g.workspace.trim().to_lowercase() == m.workspace.trim().to_lowercase()
        }) {
            return Err(invalid(
                &format!("[[mapping.groups]] #{} and #{}", j + 1, i + 1),
                format!(
                    "both map group '{}' to workspace '{}'",
                    m.group.trim(),
                    m.workspace.trim()
                ),
                "keep one entry per group and workspace, with the role that group should \
                 give (a group may map to several workspaces, one entry each)",
            ));
        }
        mappings.push(GroupMapping {
            group: m.group,
            workspace: m.workspace,
            role,
        });
    }
    Ok(mappings)
}

/// `[log]`.
fn log_section(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let format = match raw.format.as_deref() {
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
    let level = raw.level.unwrap_or_else(|| "info".into());
    if tracing_subscriber::EnvFilter::try_new(&level).is_err() {
        return Err(invalid(
            "[log] level",
            format!("'{level}' is not a log filter"),
            "use error, warn, info, debug or trace",
        ));
    }
    Ok(LogConfig { format, level })
}

/// An optional count or duration where 0 would stall the daemon.
fn positive(key: &str, v: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match v {
        Some(0) => Err(invalid(key, "0 is not allowed", "use a positive number")),
        Some(n) => Ok(n),
        None => Ok(default),
    }
}

/// `[scim] rate_limit_per_second` and `rate_limit_burst`; a rate of 0 turns the limit off.
fn scim_rate_limit(raw: &RawScim) -> Result<Option<RateLimit>, ConfigError> {
    const RATE: &str = "[scim] rate_limit_per_second";
    const BURST: &str = "[scim] rate_limit_burst";
    let rate = raw
        .rate_limit_per_second
        .unwrap_or(DEFAULT_RATE_LIMIT_PER_SECOND);
    let burst = raw.rate_limit_burst.unwrap_or(DEFAULT_RATE_LIMIT_BURST);
    let in_range = |key: &str, v: u64| -> Result<NonZeroU32, ConfigError> {
        u32::try_from(v)
            .ok()
            .filter(|&v| u64::from(v) <= MAX_RATE_LIMIT)
            .and_then(NonZeroU32::new)
            .ok_or_else(|| {
                invalid(
                    key,
                    format!("{v} is not between 1 and {MAX_RATE_LIMIT}"),
                    format!(
                        "use e.g. {} ({RATE} = 0 turns the limit off)",
                        if key == RATE {
                            DEFAULT_RATE_LIMIT_PER_SECOND
                        } else {
                            DEFAULT_RATE_LIMIT_BURST
                        }
                    ),
                )
            })
    };
    if rate == 0 {
        return Ok(None);
    }
    let per_second = in_range(RATE, rate)?;
    let burst = in_range(BURST, burst)?;
    Ok(Some(RateLimit { per_second, burst }))
}

/// Connection defaults. The IdP (or the proxy in front) keeps a handful of connections, and a
/// health probe or scraper one each; the caps leave both listeners together well inside the
/// 1,024 descriptors a process gets by default, so a flood of connections never takes the
/// descriptors the store and the control-plane client need.
pub const DEFAULT_SCIM_MAX_CONNECTIONS: u64 = 512;
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: u64 = 64;
/// A request head arrives in one or two packets; a proxy forwards it whole.
pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 10_000;
/// Longer than the keep-alive of common clients and proxies (nginx 60 s, Go and reqwest 90 s,
/// Caddy 120 s), so that they, not we, close an idle connection: a request sent on a connection
/// the server is closing fails. Idle connections are cheap: at the cap the longest-idle one goes.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 180_000;
/// A 1 MiB body (the default `max_body_bytes`) at 35 KB/s; proxies buffer bodies and forward them
/// at network speed.
pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
/// Bounds of every connection timer: shorter would cut off ordinary clients on a slow link,
/// longer is a typo more often than a wish.
pub const MIN_TIMEOUT_MS: u64 = 100;
pub const MAX_TIMEOUT_MS: u64 = 3_600_000;
/// More connections than this cannot be served within any descriptor limit worth having.
pub const MAX_MAX_CONNECTIONS: u64 = 1_000_000;

fn timeout_ms(key: &str, value: Option<u64>, default: u64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    if !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&v) {
        return Err(invalid(
            key,
            format!("{v} ms is outside {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS}"),
            format!("use milliseconds between {MIN_TIMEOUT_MS} and {MAX_TIMEOUT_MS} (default {default})"),
        ));
    }
    Ok(Duration::from_millis(v))
}

/// `max_connections`, `header_read_timeout_ms` and `idle_timeout_ms` of one listener section.
fn listener_limits(
    section: &str,
    (max_connections, header_ms, idle_ms): (Option<u64>, Option<u64>, Option<u64>),
    default_max: u64,
) -> Result<ListenerLimits, ConfigError> {
    let max = max_connections.unwrap_or(default_max);
    if max == 0 || max > MAX_MAX_CONNECTIONS {
        return Err(invalid(
            &format!("{section} max_connections"),
            format!("{max} is not between 1 and {MAX_MAX_CONNECTIONS}"),
            format!(
                "use a number of connections below the process's descriptor limit \
                 (LimitNOFILE), e.g. the default {default_max}"
            ),
        ));
    }
    Ok(ListenerLimits {
        max_connections: usize::try_from(max).unwrap_or(usize::MAX),
        header_read_timeout: timeout_ms(
            &format!("{section} header_read_timeout_ms"),
            header_ms,
            DEFAULT_HEADER_READ_TIMEOUT_MS,
        )?,
        idle_timeout: timeout_ms(
            &format!("{section} idle_timeout_ms"),
            idle_ms,
            DEFAULT_IDLE_TIMEOUT_MS,
        )?,
    })
}

/// `[scim] trusted_proxies`: addresses (`10.0.0.5`, `::1`) and networks (`10.0.0.0/8`).
fn trusted_proxies(entries: &[String]) -> Result<TrustedProxies, ConfigError> {
    let mut nets = Vec::with_capacity(entries.len());
    for e in entries {
        let t = e.trim();
        let net = t
            .parse::<ipnet::IpNet>()
            .map(|n| n.trunc())
            .or_else(|_| t.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| {
                invalid(
                    "[scim] trusted_proxies",
                    format!("'{e}' is neither an IP address nor a network"),
                    "list the proxy's address (\"10.0.0.5\") or network (\"10.0.0.0/24\")",
                )
            })?;
        nets.push(net);
    }
    Ok(TrustedProxies::new(nets))
}

fn store_config(path: PathBuf, raw: &RawStore) -> Result<StoreConfig, ConfigError> {
    let audit_retention_days = raw
        .audit_retention_days
        .unwrap_or(DEFAULT_AUDIT_RETENTION_DAYS);
    if audit_retention_days > MAX_AUDIT_RETENTION_DAYS {
        return Err(invalid(
            "[store] audit_retention_days",
            format!(
                "{audit_retention_days} days is more than {MAX_AUDIT_RETENTION_DAYS} (100 years)"
            ),
            "use a number of days such as 365, or 0 to keep audit entries forever",
        ));
    }
    let audit_max_entries = raw.audit_max_entries.unwrap_or(DEFAULT_AUDIT_MAX_ENTRIES);
    if audit_max_entries != 0 && audit_max_entries < MIN_AUDIT_MAX_ENTRIES {
        return Err(invalid(
            "[store] audit_max_entries",
            format!(
                "{audit_max_entries} would prune entries of a single large run before anyone \
                 reads them"
            ),
            format!(
                "use at least {MIN_AUDIT_MAX_ENTRIES} (default {DEFAULT_AUDIT_MAX_ENTRIES}), or \
                 0 for no limit"
            ),
        ));
    }
    Ok(StoreConfig {
        path,
        write_ahead_log: raw.write_ahead_log.unwrap_or(true),
        keep_changes: raw.keep_changes.unwrap_or(DEFAULT_KEEP_CHANGES),
        audit_retention_days,
        audit_max_entries,
    })
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

/// `[scim] base_path` as served: leading `/`, no trailing `/`, empty for the root.
pub fn normalize_base_path(p: &str) -> Result<String, ConfigError> {
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
        // `scim-sync init` writes a token's hash to the file and the token itself to the env
        // file (the CLI and the IdP setup need it); that is one token, not two.
        if !set.verify(t.trim()) {
            set.add_plain(t.trim());
        }
    }
    if set.is_empty() {
        return Err(invalid(
            key,
            format!("no token configured (the list is empty and {env_name} is not set)"),
            format!(
                "set {env_name}: {}. Or add the output of `scim-sync hash-token` to {key}",
                load_env_file_hint()
            ),
        ));
    }
    Ok(set)
}

/// `[scim] public_url`: the URL the IdP is given, without the query string Entra's Tenant URL
/// may carry, and (normally) ending in `base_path`.
fn check_public_url(
    raw: &str,
    base_path: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<String, ConfigError> {
    const KEY: &str = "[scim] public_url";
    let u = raw.trim().trim_end_matches('/').to_string();
    let url = reqwest::Url::parse(&u)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host_str().is_some())
        .ok_or_else(|| {
            invalid(
                KEY,
                format!("'{u}' is not an http(s) URL"),
                "use the URL the IdP is given, e.g. https://scim.example.com/scim/v2",
            )
        })?;
    if url.query().is_some() || url.fragment().is_some() {
        let bare = u.split(['?', '#']).next().unwrap_or_default();
        return Err(invalid(
            KEY,
            format!(
                "'{u}' carries a query string or fragment; it would be copied into every \
                 meta.location and Location header"
            ),
            format!(
                "set public_url = \"{bare}\". A flag such as ?aadOptscim062020 belongs only in \
                 Entra's Tenant URL"
            ),
        ));
    }
    let path = url.path().trim_end_matches('/');
    if path != base_path {
        warnings.push(warning(
            KEY,
            format!(
                "its path '{path}' is not [scim] base_path '{base_path}': the IdP will call \
                 {path}/Users, scim-sync serves {base_path}/Users"
            ),
            format!(
                "give both the same path (set base_path = \"{path}\", or end public_url in \
                 {base_path}), unless a proxy in front rewrites {path} to {base_path}"
            ),
        ));
    }
    if url.scheme() == "http" && !is_loopback_host(&url) {
        warnings.push(warning(
            KEY,
            format!("'{u}' is plain http; Okta and Entra only call https:// URLs"),
            "put a TLS-terminating proxy in front (docs/tls.md) and give its https:// URL",
        ));
    }
    Ok(u)
}

/// `[portkey] base_url` must be the Admin API base: every endpoint path (`/admin/users`) is
/// appended to it, and all documented bases (Portkey's cloud, self-hosted control planes) end
/// in the version segment `/v1`.
fn check_admin_api_base(
    base_url: &str,
    warnings: &mut Vec<ConfigWarning>,
) -> Result<(), ConfigError> {
    const KEY: &str = "[portkey] base_url";
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        invalid(
            KEY,
            format!("'{base_url}' is not a URL: {e}"),
            "use e.g. https://portkey.example.com/v1",
        )
    })?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            KEY,
            format!("'{base_url}' carries a query string or fragment"),
            "use the Admin API base alone, e.g. https://portkey.example.com/v1",
        ));
    }
    let path = url.path().trim_end_matches('/');
    if !path.ends_with("/v1") {
        let origin = url.origin().ascii_serialization();
        let suggestion = match path.find("/v1/") {
            // An endpoint pasted whole (…/v1/admin/users): keep up to the version segment.
            Some(at) => format!("{origin}{}", &path[..at + 3]),
            None => format!("{origin}{path}/v1"),
        };
        return Err(invalid(
            KEY,
            format!(
                "'{base_url}' does not end in /v1, the Admin API's version segment, so every \
                 call (base_url + /admin/users, ...) would miss"
            ),
            format!(
                "use the Admin API base: https://api.portkey.ai/v1 for Portkey's cloud, or your \
                 control plane's Admin API URL ending in /v1 (perhaps {suggestion})"
            ),
        ));
    }
    if is_loopback_host(&url)
        && url
            .port_or_known_default()
            .is_some_and(|p| SIMULATOR_PORTS.contains(&p))
    {
        warnings.push(warning(
            KEY,
            format!(
                "'{base_url}' is where the bundled control-plane simulator listens (scim-sync \
                 demo, portkey-sim, config/scim-sync.example.toml); nothing will reach a real \
                 Portkey"
            ),
            "set it to your control plane's Admin API base, e.g. https://api.portkey.ai/v1 or \
             https://portkey.example.com/v1",
        ));
    }
    Ok(())
}

/// The checks of `[portkey] base_url` alone (with `allow_insecure_http` off), for `init`'s
/// `--portkey-url`; the warnings are those [`Config::warnings`] would carry.
pub fn check_portkey_base_url(base_url: &str) -> Result<Vec<ConfigWarning>, ConfigError> {
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(invalid(
            "[portkey] base_url",
            format!("'{base_url}' is not an http(s) URL"),
            "use e.g. https://portkey.example.com/v1",
        ));
    }
    check_transport(base_url, false)?;
    let mut warnings = Vec::new();
    check_admin_api_base(base_url, &mut warnings)?;
    Ok(warnings)
}

/// 127.0.0.0/8, ::1 or `localhost`. URL parsing has already turned IPv4 shorthands (`127.1`)
/// into dotted form; IPv6 hosts come bracketed.
fn is_loopback_host(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Plain http is only accepted toward this machine: anywhere else the Admin API key (which can
/// remove every user) and every synced email would cross the network readable and alterable.
fn check_transport(base_url: &str, allow_insecure_http: bool) -> Result<(), ConfigError> {
    let url = reqwest::Url::parse(base_url).map_err(|e| {
        invalid(
            "[portkey] base_url",
            format!("'{base_url}' is not a URL: {e}"),
            "use e.g. https://portkey.example.com/v1",
        )
    })?;
    if url.scheme() != "http" || allow_insecure_http || is_loopback_host(&url) {
        return Ok(());
    }
    Err(invalid(
        "[portkey] base_url",
        format!(
            "'{base_url}' is plain http to a host that is not loopback; the Admin API key and \
             users' emails would cross the network unencrypted"
        ),
        "use https://, or, only if the path to the control plane is protected some other way \
         (a mesh sidecar, a private link), set [portkey] allow_insecure_http = true",
    ))
}

/// Every token one listener accepts, as (the key that configures it, its hash in
/// `sha256:<hex>` form). Runs after [`tokens`] has checked the hashes, so lowercasing is the
/// only normalisation left (hex digits may be written in either case).
fn token_fingerprints(
    hashes_key: &str,
    hashes: &[String],
    env_name: &str,
    plain: Option<&str>,
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = hashes
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("{hashes_key}[{i}]"), h.trim().to_ascii_lowercase()))
        .collect();
    if let Some(t) = plain {
        out.push((env_name.to_string(), crate::token::hash_token(t.trim())));
    }
    out
}

/// The IdP holds the SCIM token. If it also opened the admin API, whoever controls the IdP
/// (or reads its connector settings) could approve the deletions the fuse holds back, which
/// is the one step meant to need a person.
fn check_tokens_differ(
    scim: &[(String, String)],
    admin: &[(String, String)],
) -> Result<(), ConfigError> {
    for (scim_key, scim_hash) in scim {
        if let Some((admin_key, _)) = admin.iter().find(|(_, h)| h == scim_hash) {
            return Err(invalid(
                &format!("{scim_key} and {admin_key}"),
                "the SCIM token and the admin token are the same secret, so the IdP's token \
                 would also open the admin API and could approve held deletions",
                format!(
                    "give the admin API its own token (e.g. `openssl rand -hex 32`) in \
                     {admin_key}, and keep the IdP's token only in {scim_key}"
                ),
            ));
        }
    }
    Ok(())
}

/// The store's directory does not exist yet: normal on a fresh host, where systemd creates
/// /var/lib/scim-sync (StateDirectory=) only when the service first starts. Nothing is created
/// here, so the message says how; naming the nearest directory that does exist shows a typo.
fn missing_store_dir(dir: &Path) -> ConfigError {
    let ancestor = dir.ancestors().skip(1).find(|a| a.is_dir());
    let mut fix = format!(
        "create it (`install -d -m 0700 {d}`, owned by the user scim-sync runs as), or run \
         `scim-sync init --state-dir {d}`, which creates it",
        d = dir.display()
    );
    if dir == Path::new("/var/lib/scim-sync") {
        fix.push_str(
            "; the systemd unit's StateDirectory=scim-sync also creates it, but only when the \
             service starts",
        );
    }
    let problem = match ancestor {
        Some(a) => format!(
            "directory {} does not exist (the nearest existing one is {})",
            dir.display(),
            a.display()
        ),
        None => format!("directory {} does not exist", dir.display()),
    };
    invalid("[store] path", problem, fix)
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
    let meta = match std::fs::metadata(&dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(missing_store_dir(&dir));
        }
        Err(e) => {
            return Err(invalid(
                "[store] path",
                format!("directory {} is not usable: {e}", dir.display()),
                "create the directory or choose another path",
            ))
        }
    };
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

    /// Found by fuzzing: the `config` crate holds numbers as i64/f64 and reported one beyond
    /// that without a key or a line.
    #[test]
    fn an_out_of_range_number_names_its_key() {
        for (text, key) in [
            ("[scim]\nmax_results = 18446744073709551615\n", "scim.max_results"),
            ("[sync]\nfuse_floor = 0x8000000000000000\n", "sync.fuse_floor"),
            ("[portkey]\nrequests_per_second = 1e999\n", "portkey.requests_per_second"),
            (
                "[[mapping.groups]]\ngroup = \"a\"\n[[mapping.groups]]\ngroup = 99999999999999999999\n",
                "mapping.groups.1.group",
            ),
        ] {
            let e = err(text, &env());
            assert!(e.contains(&format!("for key `{key}`")), "{text}: {e}");
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
        assert_eq!(c.store.keep_changes, 1000);
        assert_eq!(c.store.audit_retention_days, 365);
        assert_eq!(c.store.audit_max_entries, 1_000_000);
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

    fn rate_limit(scim_keys: &str) -> Result<Option<RateLimit>, String> {
        Config::from_toml(
            &format!("{MIN}[scim]\n{scim_keys}"),
            Path::new("t.toml"),
            &env(),
        )
        .map(|c| c.scim.rate_limit)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn rate_limit_defaults_and_off() {
        let nz = |n: u64| NonZeroU32::new(u32::try_from(n).unwrap()).unwrap();
        assert_eq!(
            rate_limit(""),
            Ok(Some(RateLimit {
                per_second: nz(DEFAULT_RATE_LIMIT_PER_SECOND),
                burst: nz(DEFAULT_RATE_LIMIT_BURST),
            }))
        );
        assert_eq!(
            rate_limit("rate_limit_per_second = 5\nrate_limit_burst = 2\n"),
            Ok(Some(RateLimit {
                per_second: nz(5),
                burst: nz(2),
            }))
        );
        assert_eq!(rate_limit("rate_limit_per_second = 0\n"), Ok(None));
        // Off, the burst is not looked at.
        assert_eq!(
            rate_limit("rate_limit_per_second = 0\nrate_limit_burst = 0\n"),
            Ok(None)
        );
    }

    #[test]
    fn bad_rate_limits_are_named() {
        for (keys, key) in [
            ("rate_limit_burst = 0\n", "[scim] rate_limit_burst"),
            (
                "rate_limit_per_second = 2000000\n",
                "[scim] rate_limit_per_second",
            ),
            (
                "rate_limit_burst = 99999999999\n",
                "[scim] rate_limit_burst",
            ),
        ] {
            let e = rate_limit(keys).unwrap_err();
            assert!(
                e.contains(key) && e.contains("Fix") && e.contains("rate_limit_per_second = 0"),
                "{keys}: {e}"
            );
        }
        let e = rate_limit("rate_limit_per_second = -1\n").unwrap_err();
        assert!(e.contains("rate_limit_per_second"), "{e}");
    }

    fn with_store(keys: &str) -> String {
        format!(
            "[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n[store]\npath = \"/tmp/x.redb\"\n{keys}"
        )
    }

    #[test]
    fn store_retention_keys_are_read_and_checked() {
        let text =
            with_store("keep_changes = 0\naudit_retention_days = 0\naudit_max_entries = 0\n");
        let c = match Config::from_toml(&text, Path::new("t.toml"), &env()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (
                c.store.keep_changes,
                c.store.audit_retention_days,
                c.store.audit_max_entries
            ),
            (0, 0, 0),
            "0 means trim to the cursor, keep forever, no limit"
        );
        let r = crate::store::Retention::from(&c.store);
        assert_eq!(r.audit_max_entries, 0);
        assert_eq!(r.batch, crate::store::upkeep::DEFAULT_UPKEEP_BATCH);

        let text = with_store("keep_changes = 50\naudit_max_entries = 1_000\n");
        assert_eq!(err(&text, &env()), "no error");
        let c =
            Config::from_toml(&text, Path::new("t.toml"), &env()).unwrap_or_else(|e| panic!("{e}"));
        assert!(c.store.write_ahead_log, "on unless switched off");
        let text = with_store("write_ahead_log = false\n");
        let c =
            Config::from_toml(&text, Path::new("t.toml"), &env()).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.store.write_ahead_log);
        let e = err(&with_store("write_ahead_log = \"maybe\"\n"), &env());
        assert!(e.contains("write_ahead_log"), "{e}");

        let e = err(&with_store("audit_retention_days = 365000\n"), &env());
        assert!(
            e.contains("[store] audit_retention_days")
                && e.contains("Fix")
                && e.contains("0 to keep"),
            "{e}"
        );
        let e = err(&with_store("audit_max_entries = 10\n"), &env());
        assert!(
            e.contains("[store] audit_max_entries") && e.contains("at least 1000"),
            "{e}"
        );
        let e = err(&with_store("keep_changes = -1\n"), &env());
        assert!(e.contains("keep_changes"), "{e}");
        let e = err(&with_store("keep_change = 5\n"), &env());
        assert!(e.contains("keep_change"), "{e}");
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

    fn with_base_url(url: &str, portkey_extra: &str) -> String {
        format!("[portkey]\nbase_url = \"{url}\"\n{portkey_extra}[store]\npath = \"/tmp/x.redb\"\n")
    }

    #[test]
    fn plain_http_only_to_loopback() {
        for url in [
            "http://127.0.0.1:9/v1",
            "http://127.8.9.10/v1",
            "http://127.1/v1",
            "http://[::1]:8090/v1",
            "http://localhost:8090/v1",
            "http://LocalHost/v1",
            "https://portkey.example.com/v1",
            "https://10.0.0.5/v1",
        ] {
            let e = err(&with_base_url(url, ""), &env());
            assert_eq!(e, "no error", "{url}");
        }
        for url in [
            "http://portkey.example.com/v1",
            "http://10.0.0.5:8090/v1",
            "http://[fd00::1]/v1",
            "http://localhost.example.com/v1",
            "http://127.0.0.1.nip.io/v1",
            "http://0.0.0.0/v1",
        ] {
            let e = err(&with_base_url(url, ""), &env());
            assert!(
                e.contains("[portkey] base_url")
                    && e.contains("https://")
                    && e.contains("allow_insecure_http = true"),
                "{url}: {e}"
            );
        }
    }

    #[test]
    fn plain_http_elsewhere_needs_the_opt_in() {
        let text = with_base_url("http://portkey.internal/v1", "allow_insecure_http = true\n");
        assert_eq!(err(&text, &env()), "no error");
        let text = with_base_url(
            "http://portkey.internal/v1",
            "allow_insecure_http = false\n",
        );
        assert!(err(&text, &env()).contains("[portkey] base_url"));
    }

    fn assert_same_token_refused(e: &str, scim_key: &str, admin_key: &str) {
        assert!(
            e.contains(&format!("{scim_key} and {admin_key}")),
            "expected {scim_key} and {admin_key}: {e}"
        );
        assert!(
            e.contains("approve held deletions") && e.contains("Fix"),
            "{e}"
        );
    }

    #[test]
    fn same_token_in_both_env_vars_is_refused() {
        let mut env = env();
        env.insert(
            ENV_ADMIN_TOKEN.to_string(),
            " scim-token-0123456789".to_string(),
        );
        assert_same_token_refused(&err(MIN, &env), ENV_SCIM_TOKEN, ENV_ADMIN_TOKEN);
    }

    #[test]
    fn same_hash_in_both_lists_is_refused() {
        let mut env = env();
        env.remove(ENV_SCIM_TOKEN);
        env.remove(ENV_ADMIN_TOKEN);
        let shared = crate::token::hash_token("shared-token-0123456789");
        let other = crate::token::hash_token("admin-only-0123456789");
        // Hex digits in either case name the same hash.
        let text = format!(
            "{MIN}[scim]\ntoken_hashes = [\"{shared}\"]\n[admin]\ntoken_hashes = [\"{other}\", \"{}\"]\n",
            shared.to_ascii_uppercase().replacen("SHA256:", "sha256:", 1)
        );
        assert_same_token_refused(
            &err(&text, &env),
            "[scim] token_hashes[0]",
            "[admin] token_hashes[1]",
        );
    }

    #[test]
    fn plain_token_matching_the_other_sides_hash_is_refused() {
        let scim_plain = "scim-token-0123456789";
        let text = format!(
            "{MIN}[admin]\ntoken_hashes = [\"{}\"]\n",
            crate::token::hash_token(scim_plain)
        );
        assert_same_token_refused(
            &err(&text, &env()),
            ENV_SCIM_TOKEN,
            "[admin] token_hashes[0]",
        );

        let text = format!(
            "{MIN}[scim]\ntoken_hashes = [\"{}\"]\n",
            crate::token::hash_token("admin-token-0123456789")
        );
        assert_same_token_refused(
            &err(&text, &env()),
            "[scim] token_hashes[0]",
            ENV_ADMIN_TOKEN,
        );
    }

    #[test]
    fn distinct_tokens_are_accepted() {
        let text = format!(
            "{MIN}[scim]\ntoken_hashes = [\"{}\"]\n[admin]\ntoken_hashes = [\"{}\"]\n",
            crate::token::hash_token("scim-old-0123456789"),
            crate::token::hash_token("admin-old-0123456789")
        );
        assert_eq!(err(&text, &env()), "no error");
    }

    fn load(text: &str) -> Result<Config, String> {
        Config::from_toml(text, Path::new("t.toml"), &env()).map_err(|e| e.to_string())
    }

    #[test]
    fn base_url_must_be_the_admin_api_base() {
        for (url, suggestion) in [
            (
                "https://portkey.example.com",
                "perhaps https://portkey.example.com/v1",
            ),
            (
                "https://portkey.example.com/api",
                "perhaps https://portkey.example.com/api/v1",
            ),
            (
                "https://portkey.example.com/v1/admin/users",
                "perhaps https://portkey.example.com/v1)",
            ),
        ] {
            let e = err(&with_base_url(url, ""), &env());
            assert!(
                e.contains("[portkey] base_url") && e.contains("does not end in /v1"),
                "{url}: {e}"
            );
            assert!(e.contains(suggestion), "{url}: {e}");
        }
        let e = err(&with_base_url("https://p.example.com/v1?x=1", ""), &env());
        assert!(e.contains("query string"), "{e}");
        for ok in [
            "https://api.portkey.ai/v1",
            "https://portkey.internal.example.com/api/v1/",
        ] {
            assert_eq!(err(&with_base_url(ok, ""), &env()), "no error", "{ok}");
        }
    }

    #[test]
    fn the_simulators_address_is_a_warning() {
        for url in [
            "http://127.0.0.1:8090/v1",
            "http://localhost:8787/v1",
            "http://[::1]:8090/v1",
        ] {
            let c = load(&with_base_url(url, "")).unwrap();
            assert_eq!(c.warnings.len(), 1, "{url}");
            let w = c.warnings[0].to_string();
            assert!(
                w.contains("[portkey] base_url") && w.contains("simulator"),
                "{w}"
            );
        }
        let c = load(&with_base_url("http://127.0.0.1:9/v1", "")).unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn public_url_query_strings_are_refused() {
        let e = err(
            &format!(
                "{MIN}[scim]\npublic_url = \"https://scim.example.com/scim/v2?aadOptscim062020\"\n"
            ),
            &env(),
        );
        assert!(
            e.contains("[scim] public_url")
                && e.contains("public_url = \"https://scim.example.com/scim/v2\"")
                && e.contains("Tenant URL"),
            "{e}"
        );
    }

    #[test]
    fn public_url_path_other_than_base_path_is_a_warning() {
        let c = load(&format!(
            "{MIN}[scim]\npublic_url = \"https://scim.example.com/scim/v2/\"\n"
        ))
        .unwrap();
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(
            c.scim.public_url.as_deref(),
            Some("https://scim.example.com/scim/v2")
        );
        let c = load(&format!(
            "{MIN}[scim]\nbase_path = \"/scim\"\npublic_url = \"https://scim.example.com/scim/v2\"\n"
        ))
        .unwrap();
        let w: Vec<String> = c.warnings.iter().map(ToString::to_string).collect();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("[scim] public_url")
                && w[0].contains("'/scim/v2' is not [scim] base_path '/scim'")
                && w[0].contains("rewrites"),
            "{w:?}"
        );
        let c = load(&format!(
            "{MIN}[scim]\npublic_url = \"http://scim.example.com/scim/v2\"\n"
        ))
        .unwrap();
        assert!(
            c.warnings[0].to_string().contains("https://"),
            "{:?}",
            c.warnings
        );
    }

    #[test]
    fn duplicate_group_mappings_are_refused() {
        let entry = |g: &str, w: &str, r: &str| {
            format!("[[mapping.groups]]\ngroup = \"{g}\"\nworkspace = \"{w}\"\nrole = \"{r}\"\n")
        };
        let text = format!(
            "{MIN}{}{}{}",
            entry("Eng", "Engineering", "member"),
            entry("Eng", "Research", "member"),
            entry(" eng ", "ENGINEERING", "admin"),
        );
        let e = err(&text, &env());
        assert!(
            e.contains("[[mapping.groups]] #1 and #3")
                && e.contains("group 'eng' to workspace 'ENGINEERING'")
                && e.contains("Fix"),
            "{e}"
        );
        // One group to several workspaces, and several groups to one workspace, are fine.
        let text = format!(
            "{MIN}{}{}{}",
            entry("Eng", "Engineering", "member"),
            entry("Eng", "Research", "member"),
            entry("Leads", "Engineering", "admin"),
        );
        assert_eq!(err(&text, &env()), "no error");
    }

    #[test]
    fn a_missing_store_directory_says_how_to_create_it() {
        let e = err(
            "[portkey]\nbase_url = \"http://x/v1\"\n[store]\npath = \"/nonexistent-dir/sub/x.redb\"\n",
            &env(),
        );
        assert!(
            e.contains("[store] path")
                && e.contains("directory /nonexistent-dir/sub does not exist")
                && e.contains("nearest existing one is /")
                && e.contains("install -d -m 0700 /nonexistent-dir/sub")
                && e.contains("scim-sync init --state-dir"),
            "{e}"
        );
        // The systemd state directory is named as such.
        let e = missing_store_dir(Path::new("/var/lib/scim-sync")).to_string();
        assert!(e.contains("StateDirectory"), "{e}");
    }

    #[test]
    fn missing_secrets_say_how_to_load_the_env_file() {
        for var in [ENV_SCIM_TOKEN, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY] {
            let mut env = env();
            env.remove(var);
            let e = err(MIN, &env);
            assert!(
                e.contains(var)
                    && e.contains("set -a; . /etc/scim-sync/scim-sync.env; set +a")
                    && e.contains("--env-file"),
                "{var}: {e}"
            );
        }
    }

    #[test]
    fn a_token_given_as_hash_and_in_the_environment_counts_once() {
        let text = format!(
            "{MIN}[scim]\ntoken_hashes = [\"{}\"]\n",
            crate::token::hash_token("scim-token-0123456789")
        );
        let c = load(&text).unwrap();
        assert_eq!(c.scim.tokens.len(), 1);
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

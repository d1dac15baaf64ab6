//! `scim-sync init`: from a fresh host to a config that passes `check-config`, in one command.
//!
//! Takes (or asks for, on a terminal) the public URL the IdP will call, the control plane's
//! Admin API base and the IdP; creates the state directory; writes `<config-dir>/scim-sync.toml`
//! (token hashes only) and `<config-dir>/scim-sync.env` (mode 0600: the two fresh tokens and
//! the Portkey key); and says exactly what to paste into Okta or Entra. The written config is
//! validated the way `serve` validates it before anything is written, so what `init` writes
//! starts.

use crate::config::{Config, Env, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use std::collections::HashMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Why `init` wrote nothing (or stopped part way, naming the file). The CLI maps these to its
/// exit codes; `init` sits below the CLI and does not know them.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// A missing or refused flag or answer (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A file or directory that could not be written (exit 1).
    #[error("{0}")]
    Failed(String),
}

pub const DEFAULT_CONFIG_DIR: &str = "/etc/scim-sync";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/scim-sync";
pub const CONFIG_FILE: &str = "scim-sync.toml";
pub const ENV_FILE: &str = "scim-sync.env";
/// Entra's switch to its RFC-conformant PATCH dialect (docs/entra.md); scim-sync reads both
/// dialects, and Microsoft says the flag will become the default.
pub const ENTRA_FLAG: &str = "aadOptscim062020";

/// The identity provider the instructions are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Idp {
    Okta,
    Entra,
}

impl Idp {
    fn name(self) -> &'static str {
        match self {
            Idp::Okta => "Okta",
            Idp::Entra => "Microsoft Entra ID",
        }
    }
    fn guide(self) -> &'static str {
        match self {
            Idp::Okta => "docs/okta.md",
            Idp::Entra => "docs/entra.md",
        }
    }
}

#[derive(Debug, Clone)]
pub struct InitOptions {
    pub public_url: Option<String>,
    pub portkey_url: Option<String>,
    pub idp: Option<Idp>,
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub force: bool,
    pub scim_listen: String,
    pub admin_listen: String,
    pub dry_run: bool,
}

/// Asking for what the flags left out. [`Terminal`] asks on the terminal; tests script it.
pub trait Ask {
    /// The answer (trimmed), or `None` when there is no one to ask.
    fn ask(&mut self, question: &str, secret: bool) -> Option<String>;
    /// A line for the person answering (a rejected answer).
    fn say(&mut self, line: &str);
}

/// Asks on the terminal when stdin is one: questions on stderr, so stdout stays the record of
/// what was written. A secret is read with echo off (`stty -echo`) where that works.
pub struct Terminal;

impl Ask for Terminal {
    fn ask(&mut self, question: &str, secret: bool) -> Option<String> {
        if !std::io::stdin().is_terminal() {
            return None;
        }
        eprint!("{question}");
        // A prompt that does not show is a worse failure than one that shows late; nothing
        // else can be done about a stderr that cannot be flushed.
        let _ = std::io::stderr().flush();
        let hidden = secret && stty("-echo");
        let mut line = String::new();
        let read = std::io::stdin().lock().read_line(&mut line);
        if hidden {
            stty("echo");
            eprintln!();
        }
        read.ok().map(|_| line.trim().to_string())
    }

    fn say(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

/// Runs `stty` on the terminal that is stdin; false when it cannot.
fn stty(arg: &str) -> bool {
    std::process::Command::new("stty")
        .arg(arg)
        .stdin(std::process::Stdio::inherit())
        .status()
        .is_ok_and(|s| s.success())
}

/// What `init` did, for `main` to print and to go on with the online check.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config_path: PathBuf,
    pub env_path: PathBuf,
    pub state_dir: PathBuf,
    /// The Portkey key was neither in the environment nor given: the env file has an empty
    /// `PORTKEY_API_KEY=` line to fill in.
    pub api_key_missing: bool,
    /// The IdP instructions and next steps.
    pub output: String,
    /// The token the IdP sends (also in the env file).
    pub scim_token: String,
}

fn usage(msg: impl Into<String>) -> InitError {
    InitError::Usage(msg.into())
}

/// Writes the config, the env file and the state directory. Refuses (exit 2) before writing
/// anything when a value is missing or invalid, or a file exists and `force` is not set.
pub fn run(opts: &InitOptions, env: &dyn Env, ask: &mut dyn Ask) -> Result<Setup, InitError> {
    let (public_url, base_path) = value(
        ask,
        opts.public_url.as_deref(),
        "--public-url",
        "Public URL the IdP will call (https://HOST/scim/v2): ",
        parse_public_url,
    )?;
    let portkey_url = value(
        ask,
        opts.portkey_url.as_deref(),
        "--portkey-url",
        "Control plane Admin API base, ending in /v1 (Portkey's cloud: https://api.portkey.ai/v1): ",
        parse_portkey_url,
    )?;
    let idp = match opts.idp {
        Some(i) => i,
        None => value(
            ask,
            None,
            "--idp",
            "Identity provider (okta or entra): ",
            |s| {
                <Idp as clap::ValueEnum>::from_str(s, true)
                    .map_err(|_| format!("'{s}' is not okta or entra"))
            },
        )?,
    };

    let config_dir = absolute(&opts.config_dir)?;
    let config_path = config_dir.join(CONFIG_FILE);
    let env_path = config_dir.join(ENV_FILE);
    for p in [&config_path, &env_path] {
        if p.exists() && !opts.force {
            return Err(usage(format!(
                "{} exists; init does not overwrite it. Fix: move it away, or pass --force to \
                 replace it (the tokens in the old files then stop working)",
                p.display()
            )));
        }
    }

    let api_key = match env.get(ENV_PORTKEY_API_KEY) {
        Some(k) => Some(k),
        None => ask
            .ask(
                "Portkey Admin API key (input hidden; empty to fill it in later): ",
                true,
            )
            .filter(|k| !k.is_empty()),
    };
    if let Some(k) = &api_key {
        check_env_value(k)?;
    }

    let scim_token = fresh_token();
    let mut admin_token = fresh_token();
    while admin_token == scim_token {
        admin_token = fresh_token();
    }

    let state_dir = create_dir(&opts.state_dir, 0o700)?;
    let config_text = render_config(&Rendered {
        idp,
        public_url: &public_url,
        base_path: &base_path,
        portkey_url: &portkey_url,
        scim_listen: &opts.scim_listen,
        admin_listen: &opts.admin_listen,
        scim_hash: &crate::token::hash_token(&scim_token),
        admin_hash: &crate::token::hash_token(&admin_token),
        state_dir: &state_dir,
        config_path: &config_path,
        env_path: &env_path,
        dry_run: opts.dry_run,
    });
    // Validated as `serve` will validate it, with the secrets it will have; a missing key
    // stands in for itself so that everything else is still checked.
    let mut check_env = HashMap::new();
    check_env.insert(ENV_SCIM_TOKEN.to_string(), scim_token.clone());
    check_env.insert(ENV_ADMIN_TOKEN.to_string(), admin_token.clone());
    check_env.insert(
        ENV_PORTKEY_API_KEY.to_string(),
        api_key.clone().unwrap_or_else(|| "not-set-yet".into()),
    );
    Config::from_toml(&config_text, &config_path, &check_env)
        .map_err(|e| usage(format!("the config init would write is refused: {e}")))?;

    create_dir(&config_dir, 0o755)?;
    let env_text = render_env(&config_path, &scim_token, &admin_token, api_key.as_deref());
    write_file(&env_path, &env_text, 0o600)?;
    // World-readable on purpose: it holds no secret, and systemd's DynamicUser= runs the daemon
    // as a user that owns nothing under /etc.
    write_file(&config_path, &config_text, 0o644)?;

    let output = instructions(&Instructions {
        idp,
        public_url: &public_url,
        scim_token: &scim_token,
        config_path: &config_path,
        env_path: &env_path,
        state_dir: &state_dir,
        api_key_missing: api_key.is_none(),
    });
    Ok(Setup {
        config_path,
        env_path,
        state_dir,
        api_key_missing: api_key.is_none(),
        output,
        scim_token,
    })
}

/// A flag's value, or an answer on the terminal (asked again up to three times while it is
/// refused), or an error naming the flag.
fn value<T>(
    ask: &mut dyn Ask,
    flag: Option<&str>,
    name: &str,
    question: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, InitError> {
    if let Some(v) = flag {
        return parse(v.trim()).map_err(|e| usage(format!("{name}: {e}")));
    }
    for _ in 0..3 {
        match ask.ask(question, false) {
            None => {
                return Err(usage(format!(
                    "missing {name}: give it on the command line (stdin is not a terminal, so \
                     it cannot be asked)"
                )))
            }
            Some(answer) => match parse(&answer) {
                Ok(v) => return Ok(v),
                Err(e) => ask.say(&format!("{name}: {e}")),
            },
        }
    }
    Err(usage(format!(
        "{name}: no usable answer; give it on the command line"
    )))
}

/// The public URL and the base path it implies.
pub fn parse_public_url(raw: &str) -> Result<(String, String), String> {
    let u = raw.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(u)
        .ok()
        .filter(|url| url.host_str().is_some())
        .ok_or_else(|| format!("'{u}' is not a URL; use e.g. https://scim.example.com/scim/v2"))?;
    if url.query().is_some() || url.fragment().is_some() {
        let bare = u.split(['?', '#']).next().unwrap_or_default();
        return Err(format!(
            "'{u}' carries a query string; give {bare} (for Entra, init prints the Tenant URL \
             with ?{ENTRA_FLAG} itself)"
        ));
    }
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(format!(
                "'{u}' is not https://; Okta and Entra only call https:// URLs (a TLS proxy in \
                 front of scim-sync serves it: docs/tls.md)"
            ))
        }
    }
    let path = url.path().trim_end_matches('/').to_string();
    let base_path = crate::config::normalize_base_path(&path)
        .map_err(|e| format!("its path is not usable: {e}"))?;
    Ok((u.to_string(), base_path))
}

/// The Admin API base, checked as `[portkey] base_url` is.
pub fn parse_portkey_url(raw: &str) -> Result<String, String> {
    let u = raw.trim().trim_end_matches('/').to_string();
    crate::config::check_portkey_base_url(&u).map_err(|e| match e {
        crate::config::ConfigError::Invalid { problem, fix, .. } => {
            format!("{problem}. Fix: {fix}")
        }
        other => other.to_string(),
    })?;
    Ok(u)
}

/// An env file line is `NAME=value` with the value unquoted; a value that a shell or systemd
/// would read differently is refused rather than quoted.
fn check_env_value(v: &str) -> Result<(), InitError> {
    let ok = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.+/=:~@%,".contains(c));
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "{ENV_PORTKEY_API_KEY} contains whitespace, quotes or shell characters; an Admin API \
             key has none. Fix: copy the key again, without surrounding text"
        )))
    }
}

/// 32 random bytes from the OS, hex: as `openssl rand -hex 32`.
fn fresh_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn io_error(path: &Path, what: &str, e: &std::io::Error) -> InitError {
    InitError::Failed(format!("cannot {what} {}: {e}", path.display()))
}

fn absolute(p: &Path) -> Result<PathBuf, InitError> {
    std::path::absolute(p).map_err(|e| io_error(p, "resolve", &e))
}

/// Creates `dir` if needed, with `mode` when it is created here (missing parents get the usual
/// mode); an existing directory keeps its mode.
fn create_dir(dir: &Path, mode: u32) -> Result<PathBuf, InitError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = absolute(dir)?;
    if !dir.is_dir() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_error(parent, "create directory", &e))?;
        }
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(&dir)
            .map_err(|e| io_error(&dir, "create directory", &e))?;
    }
    Ok(dir)
}

fn write_file(path: &Path, text: &str, mode: u32) -> Result<(), InitError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_error(path, "write", &e))?;
    // `mode` only applies to a file created here; one replaced with --force gets it too.
    f.set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|e| io_error(path, "set the mode of", &e))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io_error(path, "write", &e))
}

/// A TOML basic string. JSON's escapes are a subset of TOML's.
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

struct Rendered<'a> {
    idp: Idp,
    public_url: &'a str,
    base_path: &'a str,
    portkey_url: &'a str,
    scim_listen: &'a str,
    admin_listen: &'a str,
    scim_hash: &'a str,
    admin_hash: &'a str,
    state_dir: &'a Path,
    config_path: &'a Path,
    env_path: &'a Path,
    dry_run: bool,
}

fn render_config(r: &Rendered<'_>) -> String {
    let store = r.state_dir.join("store.redb");
    format!(
        "\
# scim-sync configuration for {idp}, written by `scim-sync init`. Guide: {guide}.
# Every key and its default: config/scim-sync.example.toml.
#
# The secrets are in {env} (mode 0600), not here: SCIM_SYNC_SCIM_TOKEN, SCIM_SYNC_ADMIN_TOKEN,
# PORTKEY_API_KEY. Check this file with them, and the control plane with the key:
#   scim-sync check-config --online --config {config} --env-file {env}

[scim]
# Loopback only: a TLS-terminating proxy in front serves the public URL (docs/tls.md).
listen = {scim_listen}
# The path of public_url: the IdP calls public_url, scim-sync serves base_path.
base_path = {base_path}
# The URL the IdP is given (for Entra without ?{flag}), for meta.location and Location.
public_url = {public_url}
# Hash of SCIM_SYNC_SCIM_TOKEN, the token the IdP sends. To rotate it: add the hash of the new
# token (`scim-sync hash-token`), give the IdP the new token, then remove the old hash and
# change SCIM_SYNC_SCIM_TOKEN in the env file.
token_hashes = [{scim_hash}]

[admin]
# status, plan, explain, approve-deletions. Never expose it publicly.
listen = {admin_listen}
# Hash of SCIM_SYNC_ADMIN_TOKEN (the CLI sends it from the env file).
token_hashes = [{admin_hash}]

[store]
# Created by init (mode 0700). Under systemd it is the unit's StateDirectory.
path = {store}

[portkey]
# The control plane's Admin API base, ending in /v1. The key is PORTKEY_API_KEY.
base_url = {portkey_url}

[sync]
# true: compute and report plans (`scim-sync plan`, /admin/status) without changing Portkey.
# Review `scim-sync plan` after the IdP's first push, then set false and restart.
dry_run = {dry_run}
# Accounts the IdP must never change or remove (a break-glass admin), e.g.
# [\"break-glass@example.com\"].
protected_emails = []

[log]
# \"json\" for a log shipper.
format = \"text\"
level = \"info\"
",
        idp = r.idp.name(),
        guide = r.idp.guide(),
        env = r.env_path.display(),
        config = r.config_path.display(),
        scim_listen = toml_str(r.scim_listen),
        base_path = toml_str(r.base_path),
        flag = ENTRA_FLAG,
        public_url = toml_str(r.public_url),
        scim_hash = toml_str(r.scim_hash),
        admin_listen = toml_str(r.admin_listen),
        admin_hash = toml_str(r.admin_hash),
        store = toml_str(&store.display().to_string()),
        portkey_url = toml_str(r.portkey_url),
        dry_run = r.dry_run,
    )
}

fn render_env(config_path: &Path, scim: &str, admin: &str, api_key: Option<&str>) -> String {
    let mut s = format!(
        "\
# scim-sync secrets, written by `scim-sync init` (for {config}). Keep this file mode 0600.
# Read by systemd (EnvironmentFile=), by `scim-sync check-config --env-file` and
# `scim-sync serve --env-file`, and by a shell with: set -a; . THIS_FILE; set +a
#
# The token the IdP sends (Okta: Authorization / API Token; Entra: Secret Token). Its hash is
# [scim] token_hashes.
{ENV_SCIM_TOKEN}={scim}
# The admin API token (scim-sync status, plan, approve-deletions). Its hash is
# [admin] token_hashes. Never give it to the IdP.
{ENV_ADMIN_TOKEN}={admin}
# An Admin API key of the Portkey organisation; `scim-sync check-config --online` lists the
# scopes it needs.
",
        config = config_path.display()
    );
    match api_key {
        Some(k) => {
            push_line!(s, "{ENV_PORTKEY_API_KEY}={k}");
        }
        None => {
            push_line!(
                s,
                "# FILL IN: init was not given the key (PORTKEY_API_KEY was not set).\n\
                 {ENV_PORTKEY_API_KEY}="
            );
        }
    }
    s
}

struct Instructions<'a> {
    idp: Idp,
    public_url: &'a str,
    scim_token: &'a str,
    config_path: &'a Path,
    env_path: &'a Path,
    state_dir: &'a Path,
    api_key_missing: bool,
}

fn instructions(i: &Instructions<'_>) -> String {
    let mut s = String::new();
    // Writing to a String cannot fail; here and below the results are dropped for that reason.
    push_line!(
        s,
        "Wrote {} (token hashes, public URL, store, control plane)",
        i.config_path.display()
    );
    push_line!(
        s,
        "Wrote {} (mode 0600: {ENV_SCIM_TOKEN}, {ENV_ADMIN_TOKEN}, {ENV_PORTKEY_API_KEY})",
        i.env_path.display()
    );
    push_line!(s, "State directory {} (the store)", i.state_dir.display());
    push_line!(s);
    match i.idp {
        Idp::Okta => {
            push_line!(
                s,
                "In Okta: the app's Provisioning tab > Integration (docs/okta.md, section 2):"
            );
            push_line!(s, "  SCIM connector base URL            {}", i.public_url);
            push_line!(s, "  Unique identifier field for users  userName");
            push_line!(
                s,
                "  Supported provisioning actions     Push New Users, Push Profile Updates, Push Groups"
            );
            push_line!(s, "  Authentication Mode                HTTP Header");
            push_line!(s, "  Authorization                      {}", i.scim_token);
            push_line!(
                s,
                "Then Test Connector Configuration. The token may be typed with or without \"Bearer \"."
            );
        }
        Idp::Entra => {
            let sep = if i.public_url.contains('?') { '&' } else { '?' };
            push_line!(
                s,
                "In Entra: the enterprise app > Provisioning > Provisioning Mode Automatic \
                 (docs/entra.md, section 2):"
            );
            push_line!(s, "  Tenant URL    {}{sep}{ENTRA_FLAG}", i.public_url);
            push_line!(s, "  Secret Token  {}", i.scim_token);
            push_line!(s, "Then Test Connection.");
        }
    }
    push_line!(
        s,
        "Point the IdP app at scim-sync only: not also at Portkey's own SCIM URL and token (from \
         Portkey's Admin Settings). The token is also {ENV_SCIM_TOKEN} in {}.",
        i.env_path.display()
    );
    push_line!(s);
    let config = i.config_path.display();
    let env = i.env_path.display();
    if i.api_key_missing {
        push_line!(
            s,
            "NOT DONE: {ENV_PORTKEY_API_KEY} is empty in {env}. Put an Admin API key of the \
             Portkey organisation there (or set {ENV_PORTKEY_API_KEY} and run init again with \
             --force), then check the control plane:"
        );
    } else {
        push_line!(
            s,
            "Check the config and the control plane at any time with:"
        );
    }
    push_line!(
        s,
        "  scim-sync check-config --online --config {config} --env-file {env}"
    );
    push_line!(
        s,
        "Start it: systemctl enable --now scim-sync (contrib/systemd/scim-sync.service), or\n  \
         scim-sync serve --config {config} --env-file {env}"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        assert_eq!(
            parse_public_url("https://scim.example.com/scim/v2/").unwrap(),
            (
                "https://scim.example.com/scim/v2".to_string(),
                "/scim/v2".to_string()
            )
        );
        assert_eq!(parse_public_url("https://scim.example.com").unwrap().1, "");
        for bad in [
            "https://scim.example.com/scim/v2?aadOptscim062020",
            "http://scim.example.com/scim/v2",
            "scim.example.com/scim/v2",
            "https://scim.example.com/scim_v2",
        ] {
            assert!(parse_public_url(bad).is_err(), "{bad}");
        }
        let e = parse_public_url("https://x.example.com/scim/v2?aadOptscim062020").unwrap_err();
        assert!(e.contains("Tenant URL"), "{e}");
    }

    #[test]
    fn portkey_urls() {
        assert!(parse_portkey_url("https://api.portkey.ai/v1/").is_ok());
        let e = parse_portkey_url("https://portkey.example.com").unwrap_err();
        assert!(
            e.contains("/v1") && e.contains("https://portkey.example.com/v1"),
            "{e}"
        );
        let e = parse_portkey_url("https://portkey.example.com/v1/admin/users").unwrap_err();
        assert!(e.contains("perhaps https://portkey.example.com/v1"), "{e}");
        assert!(parse_portkey_url("http://portkey.example.com/v1").is_err());
    }

    /// Answers in order; records what was said.
    struct Script(Vec<&'static str>, Vec<String>);

    impl Ask for Script {
        fn ask(&mut self, question: &str, _secret: bool) -> Option<String> {
            self.1.push(question.to_string());
            (!self.0.is_empty()).then(|| self.0.remove(0).to_string())
        }
        fn say(&mut self, line: &str) {
            self.1.push(line.to_string());
        }
    }

    #[test]
    fn missing_values_are_asked_and_a_refused_answer_is_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            public_url: None,
            portkey_url: None,
            idp: None,
            config_dir: dir.path().join("etc"),
            state_dir: dir.path().join("state"),
            force: false,
            scim_listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:8081".into(),
            dry_run: false,
        };
        let mut script = Script(
            vec![
                "https://scim.example.com/scim/v2?aadOptscim062020",
                "https://scim.example.com/scim/v2",
                "https://portkey.example.com/v1",
                "Entra",
                "pk-from-the-prompt",
            ],
            Vec::new(),
        );
        let setup = run(&opts, &HashMap::new(), &mut script).unwrap();
        assert!(script.0.is_empty(), "every answer used");
        assert!(
            script.1.iter().any(|l| l.starts_with("--public-url:")),
            "{:?}",
            script.1
        );
        assert!(setup.output.contains("Tenant URL"), "{}", setup.output);
        assert!(!setup.api_key_missing);
        let env = std::fs::read_to_string(&setup.env_path).unwrap();
        assert!(env.contains("PORTKEY_API_KEY=pk-from-the-prompt"), "{env}");
    }

    #[test]
    fn tokens_are_long_and_fresh() {
        let (a, b) = (fresh_token(), fresh_token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn env_values_that_a_shell_would_change_are_refused() {
        assert!(check_env_value("pk-abc123_DEF/+=").is_ok());
        for bad in ["a b", "a'b", "a\"b", "$x", "a#b", "a\\b"] {
            assert!(check_env_value(bad).is_err(), "{bad}");
        }
    }
}

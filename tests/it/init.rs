//! `scim-sync init`, `check-config`'s refusals and warnings, `check-config --online` against
//! the simulator, the shipped example configs on a fresh host, and the README's admin path
//! followed from `init` to a user reaching the control plane.

use crate::common::cli::{assert_has_all, command, run_with, Out, BIN};
use crate::common::daemon::{free_port, Ports};
use portkey_sim::{Quirks, Seed, SeedMember, SeedUser, SeedWorkspace, SimOptions, SimServer};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SIM_KEY: &str = "sim-admin-key";
const PUBLIC_URL: &str = "https://scim.example.com/scim/v2";

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// The value of `NAME=` in env-file text.
fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .map(str::to_string)
}

async fn sim(denied: &[&str]) -> SimServer {
    portkey_sim::spawn(
        ([127, 0, 0, 1], 0).into(),
        SimOptions {
            api_key: SIM_KEY.into(),
            seed: Some(Seed {
                users: vec![SeedUser {
                    email: "owner@example.com".into(),
                    role: "owner".into(),
                    ..Default::default()
                }],
                workspaces: vec![SeedWorkspace {
                    name: "Engineering".into(),
                    slug: None,
                    members: vec![SeedMember {
                        email: "owner@example.com".into(),
                        role: "admin".into(),
                    }],
                }],
                ..Default::default()
            }),
            quirks: Quirks {
                denied_scopes: denied.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

struct Init {
    dir: tempfile::TempDir,
    out: Out,
}

impl Init {
    fn etc(&self) -> PathBuf {
        self.dir.path().join("etc")
    }
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    fn config(&self) -> PathBuf {
        self.etc().join("scim-sync.toml")
    }
    fn env_file(&self) -> PathBuf {
        self.etc().join("scim-sync.env")
    }
    fn args<'a>(&'a self, extra: &[&'a str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "init".into(),
            "--config-dir".into(),
            self.etc().display().to_string(),
            "--state-dir".into(),
            self.state().display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    }
    async fn run(&mut self, extra: &[&str], env: &[(&str, &str)]) -> &Out {
        let args = self.args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.out = run_with(&args, env, None).await;
        &self.out
    }
    async fn check(&self, extra: &[&str]) -> Out {
        check_files(extra, &self.config(), &self.env_file()).await
    }
}

async fn init(extra: &[&str], env: &[(&str, &str)]) -> Init {
    let mut i = Init {
        dir: tempfile::tempdir().unwrap(),
        out: Out {
            code: -1,
            stdout: String::new(),
            stderr: String::new(),
        },
    };
    i.run(extra, env).await;
    i
}

// ---- init ----------------------------------------------------------------------------------

#[tokio::test]
async fn init_writes_a_config_and_env_file_that_pass_check_config() {
    let mut i = init(
        &[
            "--public-url",
            PUBLIC_URL,
            "--portkey-url",
            "https://portkey.example.com/v1/",
            "--idp",
            "okta",
            "--no-online-check",
        ],
        &[("PORTKEY_API_KEY", "pk-live-abc123")],
    )
    .await;
    assert_eq!(i.out.code, 0, "{:?}", i.out);

    // Files and modes: only the env file holds secrets.
    assert_eq!(mode(&i.env_file()), 0o600);
    assert_eq!(mode(&i.config()), 0o644);
    assert_eq!(mode(&i.state()), 0o700);
    assert_eq!(mode(&i.etc()), 0o755);

    let env = std::fs::read_to_string(i.env_file()).unwrap();
    let scim = env_value(&env, "SCIM_SYNC_SCIM_TOKEN").unwrap();
    let admin = env_value(&env, "SCIM_SYNC_ADMIN_TOKEN").unwrap();
    assert_eq!(
        env_value(&env, "PORTKEY_API_KEY").as_deref(),
        Some("pk-live-abc123")
    );
    assert_eq!(scim.len(), 64);
    assert_eq!(admin.len(), 64);
    assert_ne!(scim, admin, "distinct tokens");

    // The config: hashes, URLs, paths; no secret.
    let config = std::fs::read_to_string(i.config()).unwrap();
    for want in [
        format!(
            "token_hashes = [\"{}\"]",
            scim_sync::token::hash_token(&scim)
        ),
        format!(
            "token_hashes = [\"{}\"]",
            scim_sync::token::hash_token(&admin)
        ),
        format!("public_url = \"{PUBLIC_URL}\""),
        "base_path = \"/scim/v2\"".to_string(),
        format!("path = \"{}\"", i.state().join("store.redb").display()),
        "base_url = \"https://portkey.example.com/v1\"".to_string(),
        "dry_run = false".to_string(),
    ] {
        assert!(config.contains(&want), "config lacks {want}:\n{config}");
    }
    for secret in [&scim, &admin, &"pk-live-abc123".to_string()] {
        assert!(!config.contains(secret.as_str()), "a secret in the config");
    }

    // What to paste into Okta, and the token.
    assert_has_all(
        &i.out.stdout,
        "stdout",
        &[
            "SCIM connector base URL            https://scim.example.com/scim/v2",
            "Unique identifier field for users  userName",
            "Authentication Mode                HTTP Header",
            &format!("Authorization                      {scim}"),
            "check-config --online",
        ],
    );
    assert!(
        !i.out.stdout.contains(&admin),
        "the admin token is not shown"
    );

    // check-config passes with the env file, one token per listener (hash and env are one).
    let o = i.check(&[]).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("(1 token(s))"), "{}", o.stdout);
    assert!(o.stderr.is_empty(), "no warnings: {}", o.stderr);
    // Without it, the key is missing, and the message says how to load the file.
    let o = run_with(
        &["check-config", "--config", i.config().to_str().unwrap()],
        &[],
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("PORTKEY_API_KEY") && o.stderr.contains("set -a; ."),
        "{}",
        o.stderr
    );

    // Run again: refused, naming the file and --force; nothing changes.
    let again = [
        "--public-url",
        PUBLIC_URL,
        "--portkey-url",
        "https://portkey.example.com/v1",
        "--idp",
        "okta",
        "--no-online-check",
    ];
    let key = [("PORTKEY_API_KEY", "pk-live-abc123")];
    let o = i.run(&again, &key).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("scim-sync.toml exists") && o.stderr.contains("--force"),
        "{}",
        o.stderr
    );
    assert_eq!(std::fs::read_to_string(i.env_file()).unwrap(), env);

    // --force replaces both, with new tokens; a loosened env file is tightened again.
    std::fs::set_permissions(i.env_file(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = i.run(&[&again[..], &["--force"]].concat(), &key).await;
    assert_eq!(o.code, 0, "{o:?}");
    let env2 = std::fs::read_to_string(i.env_file()).unwrap();
    assert_ne!(env_value(&env2, "SCIM_SYNC_SCIM_TOKEN").unwrap(), scim);
    assert_eq!(mode(&i.env_file()), 0o600);
}

#[tokio::test]
async fn init_for_entra_without_a_key_leaves_a_line_to_fill_in() {
    let i = init(
        &[
            "--public-url",
            "https://scim.example.com/portkey/",
            "--portkey-url",
            "https://api.portkey.ai/v1",
            "--idp",
            "entra",
            "--no-online-check",
            "--dry-run",
        ],
        &[],
    )
    .await;
    assert_eq!(i.out.code, 0, "{:?}", i.out);
    let env = std::fs::read_to_string(i.env_file()).unwrap();
    let scim = env_value(&env, "SCIM_SYNC_SCIM_TOKEN").unwrap();
    assert_eq!(env_value(&env, "PORTKEY_API_KEY").as_deref(), Some(""));
    assert!(env.contains("# FILL IN"), "{env}");
    for want in [
        "Tenant URL    https://scim.example.com/portkey?aadOptscim062020",
        &format!("Secret Token  {scim}"),
        "NOT DONE: PORTKEY_API_KEY is empty",
    ] {
        assert!(
            i.out.stdout.contains(want),
            "lacks {want}:\n{}",
            i.out.stdout
        );
    }
    let config = std::fs::read_to_string(i.config()).unwrap();
    assert!(config.contains("base_path = \"/portkey\""), "{config}");
    assert!(config.contains("dry_run = true"), "{config}");
    // The empty key is named, with the env file's own line.
    let o = i.check(&[]).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(o.stderr.contains("PORTKEY_API_KEY"), "{}", o.stderr);
}

#[tokio::test]
async fn init_names_each_missing_or_refused_flag_and_writes_nothing() {
    let ok_public = ["--public-url", PUBLIC_URL];
    let ok_portkey = ["--portkey-url", "https://portkey.example.com/v1"];
    let ok_idp = ["--idp", "okta"];
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        // Missing, with stdin not a terminal: named, not asked.
        (
            [&ok_portkey[..], &ok_idp[..]].concat(),
            &["missing --public-url", "not a terminal"],
        ),
        (
            [&ok_public[..], &ok_idp[..]].concat(),
            &["missing --portkey-url"],
        ),
        (
            [&ok_public[..], &ok_portkey[..]].concat(),
            &["missing --idp"],
        ),
        // Entra's flag belongs in the Tenant URL, which init prints itself.
        (
            [
                &[
                    "--public-url",
                    "https://scim.example.com/scim/v2?aadOptscim062020",
                ][..],
                &ok_portkey[..],
                &ok_idp[..],
            ]
            .concat(),
            &["--public-url", "query string", "Tenant URL"],
        ),
        (
            [
                &["--public-url", "http://scim.example.com/scim/v2"][..],
                &ok_portkey[..],
                &ok_idp[..],
            ]
            .concat(),
            &["--public-url", "https://"],
        ),
        (
            [
                &["--public-url", "https://scim.example.com/scim_v2"][..],
                &ok_portkey[..],
                &ok_idp[..],
            ]
            .concat(),
            &["--public-url", "'_'"],
        ),
        (
            [
                &ok_public[..],
                &["--portkey-url", "https://portkey.example.com"][..],
                &ok_idp[..],
            ]
            .concat(),
            &["--portkey-url", "/v1", "https://portkey.example.com/v1"],
        ),
        (
            [
                &ok_public[..],
                &["--portkey-url", "http://portkey.example.com/v1"][..],
                &ok_idp[..],
            ]
            .concat(),
            &["--portkey-url", "plain http"],
        ),
        (
            [
                &ok_public[..],
                &ok_portkey[..],
                &ok_idp[..],
                &["--scim-listen", "localhost:80"][..],
            ]
            .concat(),
            &["[scim] listen"],
        ),
    ];
    for (args, wants) in cases {
        let i = init(&args, &[("PORTKEY_API_KEY", "k")]).await;
        assert_eq!(i.out.code, 2, "{args:?}: {:?}", i.out);
        assert_has_all(&i.out.stderr, &format!("{args:?}: stderr"), wants);
        assert!(!i.etc().exists(), "{args:?}: wrote the config dir");
    }
    let i = init(&["--idp", "ping"], &[]).await;
    assert_eq!(i.out.code, 2, "{:?}", i.out);
    assert!(i.out.stderr.contains("okta"), "{}", i.out.stderr);
}

// ---- check-config: refused values and warnings -------------------------------------------

fn secrets_file(dir: &Path) -> PathBuf {
    let p = dir.join("scim-sync.env");
    std::fs::write(
        &p,
        "SCIM_SYNC_SCIM_TOKEN=scim-token-0123456789abcdef\n\
         SCIM_SYNC_ADMIN_TOKEN=admin-token-0123456789abcdef\nPORTKEY_API_KEY=k\n",
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// `check-config [extra] --config CONFIG --env-file ENV`, with nothing from the environment.
async fn check_files(extra: &[&str], config: &Path, env: &Path) -> Out {
    let mut args = vec!["check-config"];
    args.extend(extra);
    args.extend(["--config", config.to_str().unwrap()]);
    args.extend(["--env-file", env.to_str().unwrap()]);
    run_with(&args, &[], None).await
}

async fn check_text(dir: &Path, text: &str) -> Out {
    let config = dir.join("c.toml");
    std::fs::write(&config, text).unwrap();
    check_files(&[], &config, &secrets_file(dir)).await
}

#[tokio::test]
async fn check_config_refuses_each_value_that_cannot_work() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.redb");
    let base = |scim: &str, portkey_url: &str, extra: &str| {
        format!(
            "[scim]\n{scim}\n[store]\npath = \"{}\"\n[portkey]\nbase_url = \"{portkey_url}\"\n{extra}",
            store.display()
        )
    };
    let good = "https://portkey.example.com/v1";
    let mapping =
        "[[mapping.groups]]\ngroup = \"Eng\"\nworkspace = \"Engineering\"\nrole = \"member\"\n";
    let cases: Vec<(String, &[&str])> = vec![
        (
            base("", "https://portkey.example.com", ""),
            &[
                "[portkey] base_url",
                "does not end in /v1",
                "https://portkey.example.com/v1",
            ],
        ),
        (
            base("", "https://portkey.example.com/api", ""),
            &["[portkey] base_url", "https://portkey.example.com/api/v1"],
        ),
        (
            base(
                "public_url = \"https://scim.example.com/scim/v2?aadOptscim062020\"",
                good,
                "",
            ),
            &["[scim] public_url", "query string", "Tenant URL"],
        ),
        (
            base(
                "",
                good,
                &format!("{mapping}{}", mapping.replace("Eng\"", "ENG\"")),
            ),
            &["[[mapping.groups]] #1 and #2", "keep one entry"],
        ),
        (
            base("", good, "").replace(
                &store.display().to_string(),
                &dir.path().join("missing/store.redb").display().to_string(),
            ),
            &[
                "[store] path",
                "does not exist",
                "install -d -m 0700",
                "scim-sync init",
            ],
        ),
    ];
    for (text, wants) in cases {
        let o = check_text(dir.path(), &text).await;
        assert_eq!(o.code, 2, "{text}\n{o:?}");
        assert_has_all(&o.stderr, "stderr", wants);
        assert!(o.stdout.is_empty(), "{}", o.stdout);
    }

    // Missing secrets: the message says how to load the env file.
    let config = dir.path().join("ok.toml");
    std::fs::write(&config, base("", good, "")).unwrap();
    let o = run_with(
        &["check-config", "--config", config.to_str().unwrap()],
        &[("PORTKEY_API_KEY", "k")],
        None,
    )
    .await;
    assert_eq!(o.code, 2, "{o:?}");
    assert_has_all(
        &o.stderr,
        "stderr",
        &[
            "SCIM_SYNC_SCIM_TOKEN",
            "set -a; . /etc/scim-sync/scim-sync.env; set +a",
            "--env-file",
        ],
    );
    // A malformed env file is named with its line.
    let bad_env = dir.path().join("bad.env");
    std::fs::write(
        &bad_env,
        "SCIM_SYNC_SCIM_TOKEN=x\nexport PORTKEY_API_KEY=k\n",
    )
    .unwrap();
    let o = check_files(&[], &config, &bad_env).await;
    assert_eq!(o.code, 2, "{o:?}");
    assert!(
        o.stderr.contains("line 2") && o.stderr.contains("export"),
        "{}",
        o.stderr
    );
}

#[tokio::test]
async fn check_config_warns_on_values_that_work_but_mislead() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[scim]\nbase_path = \"/scim\"\npublic_url = \"https://scim.example.com/scim/v2\"\n\
         [store]\npath = \"{}\"\n[portkey]\nbase_url = \"http://127.0.0.1:8090/v1\"\n",
        dir.path().join("store.redb").display()
    );
    let o = check_text(dir.path(), &text).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("config OK"), "{}", o.stdout);
    assert_has_all(
        &o.stderr,
        "stderr",
        &[
            "warning: config key [scim] public_url: its path '/scim/v2' is not [scim] base_path '/scim'",
            "warning: config key [portkey] base_url: 'http://127.0.0.1:8090/v1' is where the bundled \
             control-plane simulator listens",
        ],
    );
    // An env file others can read.
    let env = secrets_file(dir.path());
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o644)).unwrap();
    let config = dir.path().join("c.toml");
    let o = check_files(&[], &config, &env).await;
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stderr.contains("mode 0644") && o.stderr.contains("chmod 600"),
        "{}",
        o.stderr
    );
}

/// `serve` says so in its log when its control plane is the simulator's address.
#[tokio::test]
async fn serve_warns_when_pointed_at_the_simulator() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [portkey]\nbase_url = \"http://127.0.0.1:8090/v1\"\nretry_give_up_secs = 1\n",
            dir.path().join("store.redb").display()
        ),
    )
    .unwrap();
    let env = secrets_file(dir.path());
    let mut child = command(BIN)
        .args([
            "serve",
            "--config",
            config.to_str().unwrap(),
            "--env-file",
            env.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        loop {
            let n = stderr.read(&mut buf).await.unwrap();
            if n == 0 {
                return false;
            }
            log.push_str(&String::from_utf8_lossy(&buf[..n]));
            if log.contains("simulator") {
                return true;
            }
        }
    })
    .await;
    child.kill().await.unwrap();
    assert_eq!(found, Ok(true), "{log}");
    assert!(
        log.contains("WARN") && log.contains("[portkey] base_url"),
        "{log}"
    );
}

// ---- check-config --online ----------------------------------------------------------------

async fn online_config(dir: &Path, base_url: &str, key: &str) -> (PathBuf, PathBuf) {
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[portkey]\nbase_url = \"{base_url}\"\n",
            dir.join("store.redb").display()
        ),
    )
    .unwrap();
    let env = dir.join("scim-sync.env");
    std::fs::write(
        &env,
        format!(
            "SCIM_SYNC_SCIM_TOKEN=scim-token-0123456789abcdef\n\
             SCIM_SYNC_ADMIN_TOKEN=admin-token-0123456789abcdef\nPORTKEY_API_KEY={key}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&env, std::fs::Permissions::from_mode(0o600)).unwrap();
    (config, env)
}

async fn online(base_url: &str, key: &str) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let (config, env) = online_config(dir.path(), base_url, key).await;
    check_files(&["--online"], &config, &env).await
}

/// The line of `out` that reports `what`.
fn line<'a>(out: &'a str, what: &str) -> &'a str {
    out.lines()
        .find(|l| l.trim_start().starts_with(what))
        .unwrap_or_else(|| panic!("no line for {what}:\n{out}"))
}

#[tokio::test]
async fn check_config_online_lists_each_read_and_its_scope() {
    let s = sim(&[]).await;
    let o = online(&s.base_url(), SIM_KEY).await;
    assert_eq!(o.code, 0, "{o:?}");
    for (what, scope, detail) in [
        (
            "list users",
            "organisation_users.list",
            "allowed: 1 owner(s)",
        ),
        ("read a user", "organisation_users.read", "allowed"),
        (
            "list invites",
            "organisation_users.list",
            "allowed: 0 pending",
        ),
        (
            "list workspaces",
            "workspaces.list",
            "allowed: 1 workspace(s)",
        ),
        ("list workspace members", "workspace_users.list", "allowed"),
    ] {
        let l = line(&o.stdout, what);
        assert!(l.contains(scope) && l.contains(detail), "{l}");
    }
    // The writes, not tried, with their scopes.
    for scope in [
        "organisation_users.create",
        "organisation_users.update",
        "organisation_users.delete",
        "workspaces.create",
        "workspace_users.create",
        "workspace_users.update",
        "workspace_users.delete",
    ] {
        assert!(line(&o.stdout, scope).contains(' '), "{scope}");
    }
    assert!(o.stdout.contains("not tried"), "{}", o.stdout);
    assert!(o.stdout.contains("Control plane OK"), "{}", o.stdout);
    s.shutdown().await;
}

#[tokio::test]
async fn check_config_online_names_a_denied_scope_and_exits_1() {
    let s = sim(&["workspace_users.list", "organisation_users.read"]).await;
    let o = online(&s.base_url(), SIM_KEY).await;
    assert_eq!(o.code, 1, "{o:?}");
    let l = line(&o.stdout, "list workspace members");
    assert!(l.contains("REFUSED") && l.contains("403 AB03"), "{l}");
    assert!(
        line(&o.stdout, "read a user").contains("REFUSED"),
        "{}",
        o.stdout
    );
    assert!(
        line(&o.stdout, "list users").contains("allowed"),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout.contains(
            "The key lacks 2 scope(s) every run needs: organisation_users.read, workspace_users.list"
        ),
        "{}",
        o.stdout
    );
    assert!(!o.stdout.contains("Control plane OK"), "{}", o.stdout);
    s.shutdown().await;

    // The list scope refused: the first read says so.
    let s = sim(&["organisation_users.list"]).await;
    let o = online(&s.base_url(), SIM_KEY).await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        line(&o.stdout, "list users").contains("REFUSED"),
        "{}",
        o.stdout
    );
    assert!(
        line(&o.stdout, "list invites").contains("REFUSED"),
        "{}",
        o.stdout
    );
    s.shutdown().await;
}

#[tokio::test]
async fn check_config_online_a_wrong_key_and_no_answer() {
    let s = sim(&[]).await;
    let o = online(&s.base_url(), "not-the-key").await;
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        line(&o.stdout, "list users").contains("FAILED") && o.stdout.contains("HTTP 401"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("refused the key itself"), "{}", o.stdout);
    s.shutdown().await;

    // Nothing listens: exit 3, within the check's own short retry budget.
    let url = format!("http://127.0.0.1:{}/v1", free_port());
    let started = std::time::Instant::now();
    let o = online(&url, SIM_KEY).await;
    assert_eq!(o.code, 3, "{o:?}");
    assert!(o.stdout.contains("UNREACHABLE"), "{}", o.stdout);
    assert!(started.elapsed() < Duration::from_secs(30));
}

// ---- the shipped configs on a fresh host ---------------------------------------------------

/// contrib's configs name /var/lib/scim-sync; here that is a directory under a temp dir, which
/// is the only change made to them.
#[tokio::test]
async fn contrib_configs_pass_check_config_with_the_env_file_and_the_state_dir() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in [
        "contrib/config/okta.toml",
        "contrib/config/entra.toml",
        "contrib/container/scim-sync.toml",
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.contains("/etc/scim-sync/scim-sync.toml") && !text.contains("/etc/scim-sync.toml"),
            "{file}: config path"
        );
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("var/lib/scim-sync");
        let config = dir.path().join("scim-sync.toml");
        std::fs::write(
            &config,
            text.replace("/var/lib/scim-sync", &state.display().to_string()),
        )
        .unwrap();
        let env = secrets_file(dir.path());
        let c = config.to_str().unwrap();
        let e = env.to_str().unwrap();

        // Fresh host: no state directory yet.
        let o = run_with(&["check-config", "--config", c, "--env-file", e], &[], None).await;
        assert_eq!(o.code, 2, "{file}: {o:?}");
        assert!(
            o.stderr.contains("[store] path")
                && o.stderr.contains("does not exist")
                && o.stderr.contains("install -d -m 0700"),
            "{file}: {}",
            o.stderr
        );
        std::fs::create_dir_all(&state).unwrap();
        // Secrets not loaded.
        let o = run_with(&["check-config", "--config", c], &[], None).await;
        assert_eq!(o.code, 2, "{file}: {o:?}");
        assert!(o.stderr.contains("set -a; ."), "{file}: {}", o.stderr);
        // Both: it passes, without warnings.
        let o = run_with(&["check-config", "--config", c, "--env-file", e], &[], None).await;
        assert_eq!(o.code, 0, "{file}: {o:?}");
        assert!(o.stderr.is_empty(), "{file}: {}", o.stderr);
        // The same, with the env file loaded into the environment the way the docs say.
        let o = tokio::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -a; . {e}; set +a; exec {BIN} check-config --config {c}"
            ))
            .output()
            .await
            .unwrap();
        assert!(o.status.success(), "{file}: {o:?}");
    }
}

// ---- the README's admin path ---------------------------------------------------------------

/// The commands used when README.md has no block marked `<!-- admin-path -->`.
const OWN_ADMIN_PATH: &str = r#"
cargo build --release --locked
install -m 0755 target/release/scim-sync /usr/local/bin/
scim-sync init --public-url "$PUBLIC_URL" --portkey-url "$PORTKEY_URL" --idp okta \
  --config-dir "$SCIM_SYNC_CONFIG_DIR" --state-dir "$SCIM_SYNC_STATE_DIR"
systemctl enable --now scim-sync
set -a && . "$SCIM_SYNC_CONFIG_DIR/scim-sync.env" && set +a
export SCIM_SYNC_CONFIG="$SCIM_SYNC_CONFIG_DIR/scim-sync.toml"
scim-sync plan
scim-sync resync --wait
"#;

/// The fenced block after `<!-- admin-path -->` in README.md, if there is one.
fn readme_admin_path() -> Option<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).ok()?;
    let after = &readme[readme.find("<!-- admin-path -->")?..];
    let open = after.find("```")?;
    let body = &after[open..];
    let body = &body[body.find('\n')? + 1..];
    Some(body[..body.find("```")?].to_string())
}

/// Commands of a shell block: comments and blank lines dropped, `\` continuations joined.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in block.lines() {
        let t = l.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                out.push(std::mem::take(&mut cur));
            }
        }
    }
    out
}

/// Stops the daemon the admin path started, however the test ends.
struct Daemon(PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            // SAFETY: kill(2) on the pid of the daemon this test started; no memory involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }
}

/// One bash, fed the admin path a command at a time, so the test can act as the IdP in
/// between; the state a command leaves (variables, `set -a; . FILE`) carries to the next.
struct Shell {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    /// Everything the commands printed on stdout so far.
    transcript: String,
}

impl Shell {
    async fn start(env: &[(&str, String)], prelude: &str) -> Shell {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut child = command("bash")
            .args(["--noprofile", "--norc"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prelude.as_bytes()).await.unwrap();
        let stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Shell {
            child,
            stdin,
            stdout,
            stderr,
            transcript: String::new(),
        }
    }

    /// Runs one command as written (its stdin is /dev/null) and returns its exit status.
    async fn run(&mut self, command: &str) -> i32 {
        use tokio::io::AsyncWriteExt;
        self.transcript.push_str(&format!("$ {command}\n"));
        let wrapped =
            format!("{{\n{command}\n}} </dev/null\n__rc=$?; __pin; echo \"__DONE__ $__rc\"\n");
        self.stdin.write_all(wrapped.as_bytes()).await.unwrap();
        let read = async {
            while let Some(line) = self.stdout.next_line().await.unwrap() {
                // Output without a final newline (curl's) runs into the marker.
                if let Some(at) = line.find("__DONE__ ") {
                    self.transcript.push_str(&line[..at]);
                    self.transcript.push('\n');
                    return line[at + 9..].trim().parse().unwrap_or(-1);
                }
                self.transcript.push_str(&line);
                self.transcript.push('\n');
            }
            -1
        };
        tokio::time::timeout(Duration::from_secs(60), read)
            .await
            .unwrap_or_else(|_| panic!("`{command}` did not finish within 60 s\n{}", self.log()))
    }

    fn log(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.transcript,
            self.stderr.lock().unwrap()
        )
    }
}

/// The commands that look at people: before the first of them, the admin has connected the
/// IdP and assigned a test person (README, "Connect the IdP ... assign one test person").
fn reads_people(command: &str) -> bool {
    ["plan", "explain", "status", "resync", "approve-deletions"]
        .iter()
        .any(|c| command.contains(&format!("scim-sync {c}")))
}

/// README's admin path, run as written on a fresh directory against the simulator. The test
/// sets only the variables the README uses for URLs, directories and the key: $PUBLIC_URL (the
/// daemon's own loopback URL, standing in for the TLS proxy), $PORTKEY_URL (the simulator),
/// $SCIM_SYNC_CONFIG_DIR, $SCIM_SYNC_STATE_DIR, $PORTKEY_API_KEY; and the listen addresses
/// `init` writes (SCIM_SYNC_SCIM_LISTEN, SCIM_SYNC_ADMIN_LISTEN) so that free ports are used.
/// Steps on the host a test cannot take have stand-ins: `cargo build` and `install` into
/// /usr or /etc/systemd are skipped (the binary under test is first on PATH), `sudo` runs the
/// command as it is, `systemctl start|enable --now|restart scim-sync` runs what the unit runs
/// (`serve` with the config and the env file) in the background and waits for it to listen.
/// The test plays the IdP: before the first command that looks at people, it creates a person
/// with the token `init` printed. At the end that person must have reached the control plane.
#[tokio::test]
async fn the_readme_admin_path_from_init_to_a_user_in_the_control_plane() {
    let block = match readme_admin_path() {
        Some(b) => b,
        None => {
            eprintln!(
                "note: README.md has no block marked <!-- admin-path -->; following the test's \
                 own copy of the admin path"
            );
            OWN_ADMIN_PATH.to_string()
        }
    };
    let cmds = commands(&block);
    assert!(
        cmds.iter().any(|c| c.contains("scim-sync init")),
        "the admin path has no `scim-sync init`:\n{block}"
    );
    // The test person: the one the admin path explains, if it names one.
    let person = cmds
        .iter()
        .find_map(|c| c.split("scim-sync explain ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("first.user@example.com")
        .to_string();

    let s = sim(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path().join("etc/scim-sync");
    let state = dir.path().join("var/lib/scim-sync");
    let Ports {
        scim: scim_port,
        admin: admin_port,
    } = Ports::free();
    let public_url = format!("http://127.0.0.1:{scim_port}/scim/v2");
    let pid_file = dir.path().join("serve.pid");
    let serve_log = dir.path().join("serve.log");
    let _daemon = Daemon(pid_file.clone());

    let pinned = [
        ("PUBLIC_URL", public_url.clone()),
        ("PORTKEY_URL", s.base_url()),
        ("SCIM_SYNC_CONFIG_DIR", etc.display().to_string()),
        ("SCIM_SYNC_STATE_DIR", state.display().to_string()),
        ("PORTKEY_API_KEY", SIM_KEY.to_string()),
    ];
    let pin: String = pinned
        .iter()
        .map(|(k, v)| format!("  export {k}='{v}'\n"))
        .collect();
    let prelude = format!(
        r#"__pin() {{
{pin}}}
__ready() {{
  for _ in $(seq 200); do
    if (exec 3<>/dev/tcp/127.0.0.1/{admin_port}) 2>/dev/null; then return 0; fi
    sleep 0.05
  done
  echo "the daemon did not start; its log:" >&2; cat '{log}' >&2; return 1
}}
__stop() {{
  if [ -s '{pid}' ]; then
    kill "$(cat '{pid}')" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$(cat '{pid}')" 2>/dev/null || break; sleep 0.05; done
    : > '{pid}'
  fi
}}
__serve() {{
  __stop
  command scim-sync serve "$@" >>'{log}' 2>&1 &
  echo $! > '{pid}'
  __ready
}}
scim-sync() {{
  if [ "${{1:-}}" = serve ]; then shift; __serve "$@"; else command scim-sync "$@"; fi
}}
sudo() {{
  while [ "${{1#-}}" != "$1" ]; do shift; done
  "$@"
}}
systemctl() {{
  case " $* " in
    *" daemon-reload "*) ;;
    *" stop "*) __stop ;;
    *" start "*|*" restart "*|*" --now "*)
      __serve --config "$SCIM_SYNC_CONFIG_DIR/scim-sync.toml" \
        --env-file "$SCIM_SYNC_CONFIG_DIR/scim-sync.env" ;;
    *) echo "note: not run here: systemctl $*" >&2 ;;
  esac
}}
cargo() {{ echo "note: not run here (the test built the binary): cargo $*" >&2; }}
install() {{
  case "${{@: -1}}" in
    /usr/*|/etc/systemd/*) echo "note: not run here (host install): install $*" >&2 ;;
    *) command install "$@" ;;
  esac
}}
__pin
"#,
        log = serve_log.display(),
        pid = pid_file.display(),
    );
    let bin_dir = Path::new(BIN).parent().unwrap();
    let env = [
        (
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        ),
        ("SCIM_SYNC_SCIM_LISTEN", format!("127.0.0.1:{scim_port}")),
        ("SCIM_SYNC_ADMIN_LISTEN", format!("127.0.0.1:{admin_port}")),
    ];
    let mut sh = Shell::start(&env, &prelude).await;
    let http = reqwest::Client::new();
    let mut pushed = false;
    for c in &cmds {
        if !pushed && reads_people(c) {
            // The IdP: the token init printed, at the URL init was given.
            let token = sh
                .transcript
                .lines()
                .find(|l| {
                    let t = l.trim_start();
                    t.starts_with("Authorization ") || t.starts_with("Secret Token ")
                })
                .and_then(|l| l.split_whitespace().last())
                .unwrap_or_else(|| panic!("init printed no token\n{}", sh.log()))
                .to_string();
            let r = http
                .post(format!("{public_url}/Users"))
                .bearer_auth(&token)
                .json(&crate::common::user(&person))
                .send()
                .await;
            let status = r.as_ref().map(|r| r.status().as_u16()).ok();
            assert_eq!(
                status,
                Some(201),
                "the IdP could not create {person} before `{c}`: {r:?}\n{}",
                sh.log()
            );
            pushed = true;
        }
        let rc = sh.run(c).await;
        assert_eq!(rc, 0, "`{c}` exited {rc}\n{}", sh.log());
    }
    assert!(
        pushed,
        "the admin path never looks at people (plan, explain, status):\n{block}"
    );
    assert!(
        std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty()),
        "the admin path never started the daemon:\n{block}"
    );

    let has_invite = |v: &Value| {
        v["data"]
            .as_array()
            .is_some_and(|d| d.iter().any(|i| i["email"] == json!(person)))
    };
    let mut invites = Value::Null;
    for _ in 0..200 {
        invites = http
            .get(format!("{}/admin/users/invites", s.base_url()))
            .header("x-portkey-api-key", SIM_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if has_invite(&invites) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        has_invite(&invites),
        "{person} never reached the control plane: {invites}\n{}\n--- serve log\n{}",
        sh.log(),
        std::fs::read_to_string(&serve_log).unwrap_or_default()
    );
    drop(sh.stdin);
    let _ = sh.child.wait().await;
    s.shutdown().await;
}

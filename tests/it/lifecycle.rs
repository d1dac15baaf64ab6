//! The daemon as a process: graceful SIGTERM, secrets kept out of logs, and the README's
//! quickstart run as written.

use crate::common::daemon::{Daemon, Ports};
use crate::common::sim;
use crate::common::{
    enc, scim, serve, test_env, user, Admin, ADMIN_TOKEN, BIN, PORTKEY_KEY, SCIM_TOKEN,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A daemon on `config`'s ports, with the default log level and stderr into `log`.
async fn spawn(config: &Path, ports: Ports, log: Option<&Path>) -> Daemon {
    let mut cmd = serve(config);
    cmd.env_remove("SCIM_SYNC_LOG");
    Daemon::start(cmd, ports, log, Duration::from_secs(20)).await
}

/// A config on fixed ports, so that a restart finds the daemon where it was.
fn write_config(dir: &Path, ports: Ports, extra: &str) -> PathBuf {
    let path = dir.join("scim-sync.toml");
    let text = ports.config("", &dir.join("store.redb"))
        + "[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n"
        + extra;
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn sigterm_during_a_burst_exits_0_and_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = write_config(dir.path(), ports, "");
    let mut p = spawn(&config, ports, None).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..8 {
        let (http, base, acked) = (http.clone(), p.scim.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let name = format!("w{w}-{i}@example.com");
                match http
                    .post(format!("{base}/Users"))
                    .bearer_auth(SCIM_TOKEN)
                    .json(&user(&name))
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 201 => acked.lock().unwrap().push(name),
                    // Refused or cut off by the shutdown: not acknowledged, nothing to check.
                    _ => break,
                }
            }
        }));
    }
    // SIGTERM once the burst is under way, however fast this machine is.
    let counted = acked.clone();
    crate::common::wait_for(
        Duration::from_secs(30),
        "a burst of acknowledged writes",
        || {
            let n = counted.lock().unwrap().len();
            async move { (n > 30).then_some(()) }
        },
    )
    .await;
    p.sigterm();
    let status = p.exited(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "the burst was too small to mean anything: {}",
        acked.len()
    );

    let p = spawn(&config, ports, None).await;
    let api = scim::Client::new(&p.scim, SCIM_TOKEN, &http);
    let (_, r) = api.get("/Users?count=0").await;
    assert!(r["totalResults"].as_u64().unwrap() >= acked.len() as u64);
    for name in acked.iter().step_by(7) {
        let filter = enc(&format!("userName eq \"{name}\""));
        let (_, r) = api.get(&format!("/Users?filter={filter}")).await;
        assert_eq!(
            r["totalResults"], 1,
            "{name} was acknowledged but is missing"
        );
    }
}

#[tokio::test]
async fn no_secret_reaches_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ports = Ports::free();
    let config = write_config(dir.path(), ports, "[log]\nlevel = \"debug\"\n");
    let log_path = dir.path().join("daemon.log");
    let mut p = spawn(&config, ports, Some(&log_path)).await;
    let http = reqwest::Client::new();
    // Right and wrong tokens, on both listeners, and a run that fails against the control plane.
    for token in [SCIM_TOKEN, "wrong-token-value-123456"] {
        let _ = http
            .get(format!("{}/Users", p.scim))
            .bearer_auth(token)
            .send()
            .await;
        let _ = http
            .post(format!("{}/Users", p.scim))
            .bearer_auth(token)
            .json(&json!({"userName": "log@example.com", "password": "Pa55word-secret"}))
            .send()
            .await;
    }
    for token in [ADMIN_TOKEN, "wrong-admin-token-1234"] {
        let _ = http
            .get(format!("{}/admin/status", p.admin))
            .bearer_auth(token)
            .send()
            .await;
    }
    let _ = http
        .post(format!("{}/admin/resync?wait=true", p.admin))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await;
    p.sigterm();
    p.exited(Duration::from_secs(60)).await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        text.contains("scim request"),
        "the log should have request lines: {text}"
    );
    assert!(text.contains("portkey"), "and control-plane lines: {text}");
    let env = test_env();
    for secret in [
        SCIM_TOKEN,
        ADMIN_TOKEN,
        env["PORTKEY_API_KEY"].as_str(),
        "wrong-token-value-123456",
        "wrong-admin-token-1234",
        "Pa55word-secret",
    ] {
        assert!(!text.contains(secret), "secret {secret} found in the log");
    }
}

/// The README's run command, as written, brings up the daemon next to the simulator; a user and
/// group created over SCIM as the printed instructions say reach the simulator.
#[tokio::test]
async fn the_readme_quickstart_works_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let run_line = readme
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("cargo run") && l.contains(" demo"))
        .expect("README names a `cargo run … demo` command");
    // `cargo run [--release] -- demo ARGS`: run the same binary with the same arguments.
    let args: Vec<&str> = run_line
        .split(" -- ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(&args)
        .current_dir(dir.path())
        .env_remove("SCIM_SYNC_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let banner = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let done = line.contains("Every SCIM request is logged");
            lines.push(line);
            if done {
                break;
            }
        }
        lines
    })
    .await
    .unwrap();
    let field = |label: &str| {
        banner
            .iter()
            .find(|l| l.trim_start().starts_with(label))
            .map(|l| {
                l.trim_start()[label.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .unwrap_or_else(|| panic!("no '{label}' in the banner: {banner:?}"))
    };
    let scim = field("SCIM base URL");
    let token = field("SCIM token");
    let control = banner
        .iter()
        .find_map(|l| l.split("state at ").nth(1))
        .map(|s| s.trim_end_matches(')').to_string())
        .unwrap();
    let http = reqwest::Client::new();
    let alice: Value = http
        .post(format!("{scim}/Users"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .body(r#"{"userName":"alice@example.com","name":{"givenName":"Alice","familyName":"Example"},"emails":[{"value":"alice@example.com","primary":true}],"active":true}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = alice["id"].as_str().unwrap();
    let r = http
        .post(format!("{scim}/Groups"))
        .bearer_auth(&token)
        .json(&json!({"displayName": "ws-Demo-role-member", "members": [{"value": id}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Debounce, invite, auto-accept (2 s), the next run adds nothing more: alice ends up a user
    // of the organisation and a member of workspace Demo.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reached = false;
    while Instant::now() < deadline {
        let st: Value = http
            .get(&control)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let is_user = st["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == "alice@example.com");
        let in_demo = st["workspaces"].as_array().unwrap().iter().any(|w| {
            w["name"] == "Demo"
                && w["members"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|m| m["email"] == "alice@example.com")
        });
        if is_user && in_demo {
            reached = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(reached, "alice did not reach the simulator");
}

/// Store upkeep across restarts: after a forced run the change feed keeps only what is above
/// the reconciler's cursor plus `[store] keep_changes`, and numbering goes on from where it
/// was, also after a restart.
#[tokio::test]
async fn the_change_feed_is_trimmed_behind_the_cursor_and_numbering_goes_on() {
    let sim = sim::spawn(portkey_sim::SimOptions {
        api_key: PORTKEY_KEY.into(),
        seed: Some(sim::owner()),
        ..Default::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let store_path = dir.path().join("store.redb");
    let ports = Ports::free();
    let config = dir.path().join("scim-sync.toml");
    // Runs only when forced, so the test decides where the cursor is.
    let text = ports.config("", &store_path)
        + &format!(
            "keep_changes = 3\n\
             [portkey]\nbase_url = \"{}\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n\
             [sync]\ndebounce_ms = 600000\nfull_resync_cron = \"0 0 0 1 1 *\"\n",
            sim.base_url(),
        );
    std::fs::write(&config, text).unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let create = |p: &Daemon, name: String| {
        let req = http
            .post(format!("{}/Users", p.scim))
            .bearer_auth(SCIM_TOKEN)
            .json(&user(&name));
        async move { assert_eq!(req.send().await.unwrap().status(), 201) }
    };
    let resync = |p: &Daemon| {
        let admin = Admin::new(&p.admin, &http);
        async move {
            let (_, r) = admin.resync(true).await;
            assert_eq!(r["summary"]["ok"], true, "{r}");
        }
    };
    let stop = |mut p: Daemon| async move {
        p.sigterm();
        let status = p.exited(Duration::from_secs(60)).await;
        assert_eq!(status.code(), Some(0));
    };
    // Read with the daemon stopped, and released before it starts again.
    let feed = || async {
        let store = scim_sync::store::Store::open(&store_path, Default::default()).unwrap();
        let seqs: Vec<u64> = store
            .changes_since(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        let out = (
            seqs,
            store.reconcile_cursor().unwrap(),
            store.last_seq().unwrap(),
        );
        store.close().await;
        out
    };

    let p = spawn(&config, ports, None).await;
    for i in 0..10 {
        create(&p, format!("feed{i}@example.com")).await;
    }
    resync(&p).await;
    stop(p).await;
    assert_eq!(feed().await, (vec![8, 9, 10], 10, 10));

    let p = spawn(&config, ports, None).await;
    for i in 10..12 {
        create(&p, format!("feed{i}@example.com")).await;
    }
    let st = Admin::new(&p.admin, &http).status().await;
    assert_eq!(st["store"]["last_change_seq"], 12, "{st}");
    resync(&p).await;
    stop(p).await;
    assert_eq!(feed().await, (vec![10, 11, 12], 12, 12));
}

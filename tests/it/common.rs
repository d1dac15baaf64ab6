//! The test harness: a real daemon in this process ([`Server`]) or as a child process
//! ([`daemon`]), the control-plane simulator ([`sim`]), SCIM bodies ([`user`], [`group`]), the
//! admin calls the tests make, and waits on run summaries ([`wait_run`]) and conditions
//! ([`wait_for`]) instead of fixed sleeps.

pub mod cli;
pub mod daemon;
pub mod scim;
pub mod sim;

pub use scim::{enc, group, member_ids, patch_body, user};

use scim_sync::config::{Config, ENV_ADMIN_TOKEN, ENV_PORTKEY_API_KEY, ENV_SCIM_TOKEN};
use serde_json::Value;
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const SCIM_TOKEN: &str = "test-scim-token-0123456789";
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The control-plane key [`test_env`] gives the daemon; simulators are started with it.
pub const PORTKEY_KEY: &str = "test-portkey-key";
/// The binary under test, for the tests that run it as a process.
pub const BIN: &str = env!("CARGO_BIN_EXE_scim-sync");

pub struct Server {
    pub base: String,
    pub base_path: String,
    pub scim_addr: std::net::SocketAddr,
    pub admin: String,
    pub http: reqwest::Client,
    pub store: scim_sync::store::Store,
    /// The config file on disk, for the CLI's `--config`.
    pub config: std::path::PathBuf,
    /// Dropping the server drops this sender, which shuts the daemon down.
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

pub fn test_env() -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert(ENV_SCIM_TOKEN.into(), SCIM_TOKEN.into());
    env.insert(ENV_ADMIN_TOKEN.into(), ADMIN_TOKEN.into());
    env.insert(ENV_PORTKEY_API_KEY.into(), PORTKEY_KEY.into());
    env
}

/// A positive count from the environment variable `name` (for longer runs by hand), else
/// `default`.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(default)
}

/// `scim-sync serve --config config` with the test tokens in its environment.
pub fn serve(config: &Path) -> std::process::Command {
    let mut cmd = daemon::Daemon::command(Path::new(BIN), config);
    cmd.envs(test_env());
    cmd
}

impl Server {
    pub async fn start() -> Server {
        Self::start_with("").await
    }

    /// Starts a daemon with extra TOML appended to a minimal config.
    pub async fn start_with(extra: &str) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.redb");
        let mut server = Self::start_at(dir.path(), &store, extra, 0, 0).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a daemon on a store file of the test's choosing, with its config written to
    /// `dir/scim-sync.toml`. Both ports are fixed before the start, so the file names the admin
    /// one and the CLI finds the daemon through `[admin] listen`; picked together, the SCIM
    /// listener cannot be handed the admin port.
    pub async fn start_in(dir: &Path, store: &Path, extra: &str) -> Server {
        let ports = daemon::Ports::free();
        Self::start_at(dir, store, extra, ports.scim, ports.admin).await
    }

    async fn start_at(
        dir: &Path,
        store: &Path,
        extra: &str,
        scim_port: u16,
        admin_port: u16,
    ) -> Server {
        let config_path = dir.join("scim-sync.toml");
        let text = format!(
            "[scim]\nlisten = \"127.0.0.1:{scim_port}\"\n{extra}\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\n[store]\npath = \"{}\"\n[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\nretry_give_up_secs = 1\nretry_initial_ms = 50\n",
            store.display()
        );
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::from_toml(&text, &config_path, &test_env()).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = scim_sync::app::start(&config, async move {
            // The sender dropped is the signal, as much as a message.
            let _ = rx.await;
        })
        .await
        .unwrap();
        Server {
            base: format!("http://{}{}", running.scim_addr, config.scim.base_path),
            base_path: config.scim.base_path.clone(),
            scim_addr: running.scim_addr,
            admin: format!("http://{}", running.admin_addr),
            http: reqwest::Client::new(),
            store: running.store,
            config: config_path,
            stop: Some(tx),
            done: Some(running.done),
            _dir: None,
        }
    }

    /// Shuts down and waits until the store file is released.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        if let Some(done) = self.done.take() {
            tokio::time::timeout(Duration::from_secs(20), done)
                .await
                .expect("the daemon stopped within 20 s")
                .unwrap();
        }
    }

    pub async fn req(&self, method: &str, path: &str, body: Option<Value>) -> Resp {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .http
            .request(m, format!("{}{}", self.base, path))
            .bearer_auth(SCIM_TOKEN);
        if let Some(b) = body {
            rb = rb
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(&b).unwrap());
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Resp {
            status,
            headers,
            json,
        }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None).await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.req("POST", path, Some(body)).await
    }
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.req("PUT", path, Some(body)).await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.req("PATCH", path, Some(body)).await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, None).await
    }

    /// Sends bytes as written (for requests a client library would normalise) and returns the
    /// status and the body.
    pub async fn raw(&self, request: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(self.scim_addr)
            .await
            .unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    pub async fn create_user(&self, user_name: &str) -> String {
        let r = self.post("/Users", user(user_name)).await;
        assert_eq!(r.status, 201, "{}", r.json);
        r.json["id"].as_str().unwrap().to_string()
    }

    pub async fn create_group(&self, name: &str, members: &[&str]) -> String {
        let r = self.post("/Groups", group(name, members)).await;
        assert_eq!(r.status, 201, "{}", r.json);
        r.json["id"].as_str().unwrap().to_string()
    }

    pub async fn user_count(&self) -> u64 {
        let r = self.get("/Users?count=0").await;
        assert_eq!(r.status, 200, "{}", r.json);
        r.json["totalResults"].as_u64().unwrap()
    }

    pub async fn member_ids(&self, gid: &str) -> Vec<String> {
        let r = self.get(&format!("/Groups/{gid}")).await;
        assert_eq!(r.status, 200, "{}", r.json);
        let mut ids = member_ids(&r.json);
        ids.sort();
        ids
    }
}

/// What this thread's tracing writes while it is alive, as plain text, for assertions.
pub struct LogCapture {
    buf: LogBuffer,
    // Dropped in this order: the capture first, then the second dispatcher.
    _guard: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

impl LogCapture {
    pub fn start(level: tracing::Level) -> LogCapture {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        // tracing caches each callsite's interest process-wide. With exactly one dispatcher
        // registered, a callsite first reached by a sibling test's thread (which has no
        // subscriber) is cached as "never" and this capture would miss it (tokio-rs/tracing#3611).
        // A second live dispatcher sends registration through the global list, which includes
        // the capture.
        let second = tracing::Dispatch::new(tracing_subscriber::registry());
        let guard = tracing::subscriber::set_default(subscriber);
        tracing::callsite::rebuild_interest_cache();
        LogCapture {
            buf,
            _guard: guard,
            _second: second,
        }
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.buf.0.lock().unwrap().clone()).unwrap()
    }
}

/// A log sink for a test's tracing subscriber: everything written, kept for assertions.
#[derive(Clone, Default)]
pub struct LogBuffer(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `GET /metrics` on the admin listener at `admin`, without a token as a scraper sends it:
/// status and exposition text.
pub async fn metrics(http: &reqwest::Client, admin: &str) -> (u16, String) {
    let r = http.get(format!("{admin}/metrics")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

/// Polls `holds` every 20 ms until it is true or `within` has passed; whether it held. For a
/// test that asserts afterwards with a message of its own.
pub async fn eventually<F, Fut>(within: Duration, mut holds: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if holds().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it gives a value; fails naming `what` after `within`.
pub async fn wait_for<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Calls on the admin listener at `base` (`http://host:port`) with the admin token.
#[derive(Clone)]
pub struct Admin {
    pub base: String,
    pub http: reqwest::Client,
}

impl Admin {
    pub fn new(base: &str, http: &reqwest::Client) -> Admin {
        Admin {
            base: base.to_string(),
            http: http.clone(),
        }
    }

    /// `GET path`, whole document.
    pub async fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST path` without a body: status and answer (`Null` when it is not JSON).
    pub async fn post(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /admin/status`.
    pub async fn status(&self) -> Value {
        self.get("/admin/status").await
    }

    /// Asks for a full run; with `wait`, the answer carries the run's summary under `summary`.
    pub async fn resync(&self, wait: bool) -> (u16, Value) {
        let q = if wait { "?wait=true" } else { "" };
        self.post(&format!("/admin/resync{q}")).await
    }

    /// A forced full run, waited for; the answer must be 200. Its summary.
    pub async fn run(&self) -> Value {
        let (status, v) = self.resync(true).await;
        assert_eq!(status, 200, "{v}");
        v["summary"].clone()
    }

    /// Waits for the reconciler's part of the status to be one that `done` accepts; returns it.
    pub async fn wait_status(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        wait_for(within, "the reconciler status as awaited", || async {
            let st = self.status().await;
            done(&st["reconciler"]).then(|| st["reconciler"].clone())
        })
        .await
    }

    /// Waits for the last finished run (`reconciler.last_run`) to be one that `done` accepts,
    /// e.g. a run other than the one before, or one of a kind; returns its summary.
    pub async fn wait_run(&self, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let st = self
            .wait_status(within, |r| !r["last_run"].is_null() && done(&r["last_run"]))
            .await;
        st["last_run"].clone()
    }
}

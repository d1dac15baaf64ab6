//! A `scim-sync serve` child process on loopback ports: the fixture of the tests that kill,
//! signal or restart the daemon, and of the soak bench, which includes this file by path
//! (`benches/support/soak.rs`). For that it uses nothing of the test crate.
// Each includer uses a part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port that was free a moment ago. The daemon binds it right after; a collision shows up as
/// a failed start, not as a wrong result.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// The two listeners of a daemon.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub scim: u16,
    pub admin: u16,
}

impl Ports {
    /// Fresh ports, so that sockets a killed process left in TIME_WAIT cannot get in the way.
    /// Both listeners are held open while the second port is picked: picked one after the
    /// other, the system could hand out the same port twice (a daemon then refuses to start).
    pub fn free() -> Ports {
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (scim, admin) = (bind(), bind());
        let port = |l: &std::net::TcpListener| l.local_addr().unwrap().port();
        Ports {
            scim: port(&scim),
            admin: port(&admin),
        }
    }

    /// The start of a config: both listeners, `scim_extra` (whole lines) under `[scim]`, and
    /// `[store] path`, left open for more `[store]` keys.
    pub fn config(&self, scim_extra: &str, store: &Path) -> String {
        format!(
            "[scim]\nlisten = \"127.0.0.1:{}\"\n{scim_extra}[admin]\nlisten = \"127.0.0.1:{}\"\n\
             [store]\npath = \"{}\"\n",
            self.scim,
            self.admin,
            store.display()
        )
    }

    pub fn scim_url(&self) -> String {
        format!("http://127.0.0.1:{}/scim/v2", self.scim)
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }
}

/// A running child, killed on drop so that a failed assertion leaves no daemon behind.
pub struct Daemon {
    pub child: Child,
    pub ports: Ports,
    /// The SCIM base URL, `http://127.0.0.1:{port}/scim/v2`.
    pub scim: String,
    /// The admin listener, `http://127.0.0.1:{port}`.
    pub admin: String,
    log: Option<PathBuf>,
}

impl Daemon {
    /// `bin serve --config config` with stdin and stdout closed, for the caller to add the
    /// environment.
    pub fn command(bin: &Path, config: &Path) -> Command {
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    /// Spawns `cmd` with stderr into `log` (or nowhere) and waits until `/readyz` answers.
    /// Panics when it is not ready `within`; a process that exits first is an `Err` with its
    /// log, for a caller that tries again.
    pub async fn try_start(
        mut cmd: Command,
        ports: Ports,
        log: Option<&Path>,
        within: Duration,
    ) -> Result<Daemon, String> {
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        let child = cmd.stderr(stderr).spawn().unwrap();
        let mut d = Daemon {
            child,
            ports,
            scim: ports.scim_url(),
            admin: ports.admin_url(),
            log: log.map(Path::to_path_buf),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let url = format!("{}/readyz", d.admin);
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = d.child.try_wait().unwrap() {
                return Err(format!(
                    "scim-sync exited ({status}) while starting\n{}",
                    d.log_text()
                ));
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(d);
                }
            }
            assert!(
                Instant::now() < deadline,
                "scim-sync did not become ready within {within:?}\n{}",
                d.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Daemon::try_start`], where an early exit fails the test too.
    pub async fn start(cmd: Command, ports: Ports, log: Option<&Path>, within: Duration) -> Daemon {
        Self::try_start(cmd, ports, log, within)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// What the daemon wrote to stderr so far (empty without a log file).
    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// SIGKILL (what `Child::kill` sends on Unix) and reap, so the store's file lock is gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Asks for a graceful shutdown.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to end, at most `within`, and reaps it.
    pub async fn exited(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "scim-sync did not exit within {within:?}\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Best effort: the process may be gone already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

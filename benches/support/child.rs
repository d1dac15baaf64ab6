//! The daemon as its own process (the binary cargo built for the benches, release profile), so
//! that what a bench measures of its memory is the daemon's alone.

use std::process::{Child, Command, Stdio};

pub const SCIM_TOKEN: &str = "bench-scim-token-0123456789";

/// A running `scim-sync serve`, killed on drop, with a throwaway store.
pub struct Daemon {
    pub child: Child,
    pub scim_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts it with the SCIM rate limit off and a 16 MiB body limit (50,000 members in one PUT
    /// are about 2.5 MB). There is no control plane, and the reconciler's change-driven runs are
    /// put off by a one-hour debounce: what is measured is the SCIM server, not runs that read
    /// the whole store only to find the control plane unreachable.
    // Each bench compiles this module for itself; not every one calls both.
    #[allow(dead_code)]
    pub fn start() -> Daemon {
        Self::start_with_store_keys("")
    }

    /// [`Self::start`] with more `[store]` keys (TOML lines).
    pub fn start_with_store_keys(store_keys: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let scim_port = free_port();
        let config = dir.path().join("scim-sync.toml");
        std::fs::write(
            &config,
            format!(
                "[scim]\nlisten = \"127.0.0.1:{scim_port}\"\nrate_limit_per_second = 0\n\
                 max_body_bytes = {}\n[admin]\nlisten = \"127.0.0.1:{}\"\n[store]\npath = \"{}\"\n{store_keys}\
                 [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
                 [sync]\ndebounce_ms = 3600000\nfull_resync_cron = \"0 0 0 1 1 *\"\n",
                16 * 1024 * 1024,
                free_port(),
                dir.path().join("store.redb").display()
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_scim-sync"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("SCIM_SYNC_SCIM_TOKEN", SCIM_TOKEN)
            .env("SCIM_SYNC_ADMIN_TOKEN", "bench-admin-token-0123456789")
            .env("PORTKEY_API_KEY", "bench-portkey-key")
            .env("SCIM_SYNC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon {
            child,
            scim_port,
            _dir: dir,
        }
    }

    pub fn scim_url(&self) -> String {
        format!("http://127.0.0.1:{}/scim/v2", self.scim_port)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A field of /proc/PID/status (`VmRSS:`, `VmHWM:`) in MiB; 0 when it cannot be read.
pub fn status_mib(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Waits (at most 20 s) until something accepts connections on the loopback `port`.
pub async fn wait_listening(port: u16) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < until,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

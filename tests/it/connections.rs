//! Connections: the cap, the header, idle and body timers, HTTP/1.1 only, and the client address
//! behind a trusted proxy (src/http/serve.rs).
//!
//! The flood tests run the daemon as a child process under a small descriptor soft limit (1,024,
//! what a process gets by default, or lower), where descriptors run out first.

use crate::common::daemon::{Daemon, Ports};
use crate::common::{test_env, LogCapture, Server, BIN, SCIM_TOKEN};
use scim_sync::config::Config;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A `scim-sync serve` child under `ulimit -Sn {nofile}`, killed on drop.
struct Flooded {
    d: Daemon,
    _dir: tempfile::TempDir,
}

impl Flooded {
    async fn start(scim_extra: &str, nofile: u32) -> Flooded {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::free();
        let config = dir.path().join("scim-sync.toml");
        let text = ports.config(&format!("{scim_extra}\n"), &dir.path().join("store.redb"))
            + "[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n\
               retry_give_up_secs = 1\nretry_initial_ms = 50\n";
        std::fs::write(&config, text).unwrap();
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -Sn {nofile} && exec \"$0\" serve --config \"$1\""
            ))
            .arg(BIN)
            .arg(&config)
            .envs(test_env())
            .env("SCIM_SYNC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let log = dir.path().join("daemon.log");
        let d = Daemon::start(cmd, ports, Some(&log), Duration::from_secs(20)).await;
        Flooded { d, _dir: dir }
    }

    fn log_text(&self) -> String {
        self.d.log_text()
    }
}

/// The value of the first sample line starting with `series` (name and labels), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn closed_series(listener: &str, reason: &str) -> String {
    format!(
        "scim_sync_http_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
    )
}

async fn metrics_text(admin: &str) -> String {
    crate::common::metrics(&reqwest::Client::new(), admin)
        .await
        .1
}

/// Sends a request head one byte a second and returns how long after the first byte the server
/// closed the connection (`None` if it was still open after `give_up`).
async fn slow_header_client(addr: String, give_up: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = b"GET /scim/v2/Users HTTP/1.1\r\nHost: slow.example\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
    let started = Instant::now();
    let mut buf = [0u8; 256];
    for b in head.iter() {
        if s.write_all(&[*b]).await.is_err() {
            return Some(started.elapsed());
        }
        tokio::select! {
            r = s.read(&mut buf) => {
                // EOF or a reset: the server closed it. Any answer bytes would be a bug too, but
                // the close is what is measured.
                let _ = r;
                return Some(started.elapsed());
            }
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        if started.elapsed() > give_up {
            return None;
        }
    }
    None
}

/// The acceptance test: 2,000 idle connections and a slow-header client, under the
/// default descriptor limit. Before the accept loop of src/http/serve.rs, the daemon held every
/// connection, ran out of descriptors, and answered neither SCIM nor `/healthz`; the slow-header
/// connection was held for as long as the client kept sending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_idle_connections_and_a_slow_header_client_do_not_stop_answers() {
    raise_own_descriptor_limit();
    let d = Flooded::start("header_read_timeout_ms = 1000", 1024).await;
    let scim_addr = format!("127.0.0.1:{}", d.d.ports.scim);
    let admin = d.d.admin.clone();

    let mut idle = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let c = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(&scim_addr))
            .await
            .expect("connect hung: the daemon stopped accepting")
            .unwrap();
        idle.push(c);
    }
    let slow = tokio::spawn(slow_header_client(
        scim_addr.clone(),
        Duration::from_secs(8),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A fresh client each time: no pooled connection from before the flood.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let r = http
            .get(format!("http://{scim_addr}/scim/v2/Users?count=1"))
            .bearer_auth(SCIM_TOKEN)
            .send()
            .await
            .unwrap_or_else(|e| panic!("SCIM did not answer within 1 s: {e}\n{}", d.log_text()));
        assert_eq!(r.status(), 200);
        let scim_ms = started.elapsed().as_millis();
        let started = Instant::now();
        let r = http
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("/healthz did not answer within 1 s: {e}"));
        assert_eq!(r.status(), 200);
        println!(
            "under 2,000 idle connections: SCIM answered in {scim_ms} ms, /healthz in {} ms",
            started.elapsed().as_millis()
        );
    }

    let closed_after = slow
        .await
        .unwrap()
        .expect("slow-header connection never closed");
    println!(
        "slow-header connection closed {} ms after its first byte",
        closed_after.as_millis()
    );
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, header_read_timeout_ms = 1000"
    );

    let text = metrics_text(&admin).await;
    assert!(
        sample(&text, &closed_series("scim", "header_timeout")) >= 1.0,
        "{text}"
    );
    // At the default cap of 512, the rest were closed to make room.
    assert!(
        sample(&text, &closed_series("scim", "evicted")) >= 1400.0,
        "{text}"
    );
    let open = sample(&text, "scim_sync_http_connections{listener=\"scim\"}");
    assert!(open <= 512.0, "{open} open");
    drop(idle);
}

/// Out of descriptors (a cap above what the descriptor limit allows): the accept loop backs off
/// and logs at a bounded rate instead of spinning or ending, and serves again once descriptors
/// are free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_neither_spins_nor_ends_the_accept_loop() {
    // The test's own side needs a descriptor per connection too; whatever soft limit it was
    // started with, it may go up to its hard limit.
    let own_limit = raise_own_descriptor_limit();
    let d = Flooded::start(
        "max_connections = 5000\nheader_read_timeout_ms = 60000",
        256,
    )
    .await;
    let scim_addr = format!("127.0.0.1:{}", d.d.ports.scim);
    // More than the daemon's 256 descriptors' worth; connects beyond the listen backlog would
    // hang, so each gets a short timeout and the ones that do not complete are left.
    let mut idle = Vec::new();
    let mut stalled = 0;
    let mut last_error = None;
    while idle.len() < 600 && stalled < 3 {
        match tokio::time::timeout(Duration::from_millis(500), TcpStream::connect(&scim_addr)).await
        {
            Ok(Ok(c)) => idle.push(c),
            Ok(Err(e)) => {
                last_error = Some(e);
                stalled += 1;
            }
            Err(_) => stalled += 1,
        }
    }
    let n = idle.len();
    assert!(
        n > 300,
        "only {n} connections opened (own descriptor limit {own_limit}, last error {last_error:?})"
    );
    // The daemon reaches its descriptor limit as fast as it accepts, which a busy machine slows.
    crate::common::wait_for(
        Duration::from_secs(30),
        &format!("an accept error in the log after {n} connections"),
        || {
            let found = d.log_text().contains("cannot accept connections");
            async move { found.then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = d.log_text();
    let errors = log.matches("cannot accept connections").count();
    assert!(
        errors >= 1,
        "{n} connections, no accept error logged:\n{log:.3000}"
    );
    // 3 s more of continuous EMFILE: still one line (at most one every 10 s), not one per
    // attempt.
    assert!(errors <= 2, "{errors} accept-error lines in 3 s");

    drop(idle);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http
            .get(format!("http://{scim_addr}/scim/v2/Users?count=1"))
            .bearer_auth(SCIM_TOKEN)
            .send()
            .await;
        if matches!(&r, Ok(r) if r.status() == 200) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SCIM never answered again: {r:?}\n{}",
            d.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens `n` connections that send nothing, in order.
/// Raises this process's descriptor soft limit to its hard limit and returns the new soft limit.
fn raise_own_descriptor_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            lim = raised;
        }
    }
    lim.rlim_cur
}

async fn open_idle(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(TcpStream::connect(addr).await.unwrap());
        // Distinct idle-since times, so that "oldest" is well defined.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    v
}

/// True when the server has closed `c` (EOF or reset) within `wait`.
async fn closed_by_server(c: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(wait, c.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("an idle connection got bytes"),
        Err(_) => false,
    }
}

#[tokio::test]
async fn at_the_cap_the_oldest_idle_connection_makes_room() {
    let s = Server::start_with("max_connections = 50").await;
    let before = sample(
        &metrics_text(&s.admin).await,
        &closed_series("scim", "evicted"),
    );
    let mut conns = open_idle(s.scim_addr, 60).await;

    let r = s.get("/Users").await;
    assert_eq!(r.status, 200, "{}", r.json);

    let after = sample(
        &metrics_text(&s.admin).await,
        &closed_series("scim", "evicted"),
    );
    // 60 idle plus the request's own connection, 50 allowed.
    assert!(after - before >= 11.0, "evicted {before} -> {after}");
    // The oldest went, the newest stayed.
    assert!(closed_by_server(&mut conns[0], Duration::from_secs(2)).await);
    assert!(closed_by_server(&mut conns[10], Duration::from_secs(2)).await);
    assert!(!closed_by_server(&mut conns[59], Duration::from_millis(300)).await);
    let open = sample(
        &metrics_text(&s.admin).await,
        "scim_sync_http_connections{listener=\"scim\"}",
    );
    assert!(open <= 50.0, "{open} open");
}

/// A request whose body never comes keeps its connection busy until the body timeout.
async fn busy_request(addr: std::net::SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCIM_TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: 100\r\n\r\n{{"
    );
    c.write_all(head.as_bytes()).await.unwrap();
    c
}

async fn read_all(c: &mut TcpStream, wait: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, c.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn at_the_cap_with_every_connection_busy_a_newcomer_is_refused_and_bodies_time_out() {
    let s = Server::start_with("max_connections = 5\nbody_read_timeout_ms = 1500").await;
    let refused = closed_series("scim", "refused");
    let before = sample(&metrics_text(&s.admin).await, &refused);
    let mut busy = Vec::new();
    for _ in 0..5 {
        busy.push(busy_request(s.scim_addr).await);
    }
    // Let the five heads be read: all five are in flight now.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut newcomer = TcpStream::connect(s.scim_addr).await.unwrap();
    let answer = read_all(&mut newcomer, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    let after = sample(&metrics_text(&s.admin).await, &refused);
    assert!(after - before >= 1.0, "refused {before} -> {after}");

    // The trickled bodies are cut off at body_read_timeout_ms with a SCIM error.
    let started = Instant::now();
    let answer = read_all(&mut busy[0], Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body_read_timeout_ms"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Once they are answered, the listener takes requests again.
    for c in &mut busy[1..] {
        let _ = read_all(c, Duration::from_secs(5)).await;
    }
    assert_eq!(s.get("/Users").await.status, 200);
}

#[tokio::test]
async fn idle_connections_close_after_the_idle_timeout() {
    let s = Server::start_with("idle_timeout_ms = 500").await;
    let mut c = TcpStream::connect(s.scim_addr).await.unwrap();
    assert!(closed_by_server(&mut c, Duration::from_secs(5)).await);
    // A kept-alive connection too, counted from the end of its answer.
    let mut c = TcpStream::connect(s.scim_addr).await.unwrap();
    let req = format!(
        "GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCIM_TOKEN}\r\n\r\n"
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let answer = read_all(&mut c, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn h2c_gets_no_http2_answer() {
    let s = Server::start().await;
    // Prior knowledge: the HTTP/2 connection preface.
    let mut c = TcpStream::connect(s.scim_addr).await.unwrap();
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), c.read_to_end(&mut out)).await;
    // An HTTP/2 server answers with a SETTINGS frame (type 0x4 in the frame header's 4th byte).
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 "),
        "HTTP/2 answer to the preface: {out:?}"
    );

    // Upgrade: the request is answered as HTTP/1.1, never with 101 Switching Protocols.
    let req = format!(
        "GET {}/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCIM_TOKEN}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        s.base_path
    );
    let mut c = TcpStream::connect(s.scim_addr).await.unwrap();
    c.write_all(req.as_bytes()).await.unwrap();
    let answer = read_all(&mut c, Duration::from_secs(2)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    assert!(
        !answer.to_ascii_lowercase().contains("upgrade: h2c"),
        "{answer}"
    );
}

/// A tokenless request as a proxy would forward it, and the log line it produced.
async fn refused_line(trusted: &str, forwarded_for: &str) -> String {
    let capture = LogCapture::start(tracing::Level::INFO);

    let s = Server::start_with(&format!("trusted_proxies = {trusted}")).await;
    let req = format!(
        "GET {}/Users HTTP/1.1\r\nHost: scim.example.com\r\nX-Forwarded-For: {forwarded_for}\r\nConnection: close\r\n\r\n",
        s.base_path
    );
    let (status, _) = s.raw(&req).await;
    assert_eq!(status, 401);
    let logs = capture.text();
    logs.lines()
        .find(|l| l.contains("scim request refused"))
        .unwrap_or_else(|| panic!("no refusal logged: {logs}"))
        .to_string()
}

#[tokio::test]
async fn a_trusted_proxy_names_the_client_and_an_untrusted_peer_cannot() {
    // The test connects from 127.0.0.1: here that is the trusted proxy. The client forged the
    // first entry; the proxy appended the address it saw.
    let line = refused_line(
        "[\"127.0.0.1\", \"10.0.0.0/8\"]",
        "6.6.6.6, 203.0.113.9, 10.1.1.1",
    )
    .await;
    assert!(line.contains("client=203.0.113.9"), "{line}");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");

    // Not a trusted proxy: the header is ignored.
    let line = refused_line("[\"10.0.0.0/8\"]", "203.0.113.9").await;
    assert!(line.contains("client=127.0.0.1 "), "{line}");
    assert!(!line.contains("203.0.113.9"), "{line}");

    // A huge header from a trusted proxy still makes a short line.
    let long = vec!["10.9.9.9"; 4000].join(", ");
    let line = refused_line("[\"127.0.0.1\", \"10.0.0.0/8\"]", &long).await;
    assert!(line.len() < 500, "{} bytes", line.len());
}

fn config_error(scim: &str, admin: &str) -> String {
    let text = format!(
        "[scim]\nlisten = \"127.0.0.1:0\"\n{scim}\n[admin]\nlisten = \"127.0.0.1:0\"\n{admin}\n\
         [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n"
    );
    Config::from_toml(&text, Path::new("t.toml"), &test_env())
        .err()
        .unwrap_or_else(|| panic!("accepted: {scim} / {admin}"))
        .to_string()
}

#[test]
fn bad_connection_settings_are_refused_naming_the_key() {
    let cases = [
        ("max_connections = 0", "", "[scim] max_connections"),
        (
            "header_read_timeout_ms = 0",
            "",
            "[scim] header_read_timeout_ms",
        ),
        (
            "idle_timeout_ms = 99999999999",
            "",
            "[scim] idle_timeout_ms",
        ),
        (
            "body_read_timeout_ms = 5",
            "",
            "[scim] body_read_timeout_ms",
        ),
        (
            "trusted_proxies = [\"proxy.example.com\"]",
            "",
            "[scim] trusted_proxies",
        ),
        (
            "trusted_proxies = [\"10.0.0.0/33\"]",
            "",
            "[scim] trusted_proxies",
        ),
        ("", "max_connections = 0", "[admin] max_connections"),
        (
            "",
            "header_read_timeout_ms = 10",
            "[admin] header_read_timeout_ms",
        ),
        ("", "idle_timeout_ms = 0", "[admin] idle_timeout_ms"),
    ];
    for (scim, admin, key) in cases {
        let e = config_error(scim, admin);
        assert!(
            e.contains(key) && e.contains("Fix:"),
            "{scim} / {admin}: {e}"
        );
    }
    // body_read_timeout_ms is a SCIM key only: the admin API takes no bodies.
    let e = config_error("", "body_read_timeout_ms = 1000");
    assert!(e.contains("body_read_timeout_ms"), "{e}");

    let text = "[scim]\nmax_connections = 7\nheader_read_timeout_ms = 2000\nidle_timeout_ms = 3000\n\
                body_read_timeout_ms = 4000\ntrusted_proxies = [\"10.0.0.1\", \"fd00::/8\"]\n\
                [admin]\nlisten = \"127.0.0.1:0\"\nmax_connections = 3\n[portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n";
    let c = Config::from_toml(text, Path::new("t.toml"), &test_env()).unwrap();
    assert_eq!(c.scim.limits.max_connections, 7);
    assert_eq!(c.scim.limits.header_read_timeout, Duration::from_secs(2));
    assert_eq!(c.scim.limits.idle_timeout, Duration::from_secs(3));
    assert_eq!(c.scim.body_read_timeout, Duration::from_secs(4));
    assert!(c.scim.trusted_proxies.contains("10.0.0.1".parse().unwrap()));
    assert!(c.scim.trusted_proxies.contains("fd12::1".parse().unwrap()));
    assert!(!c.scim.trusted_proxies.contains("10.0.0.2".parse().unwrap()));
    assert_eq!(c.admin.limits.max_connections, 3);
    assert_eq!(c.admin.limits.idle_timeout, Duration::from_secs(180));
}

/// A request head that does not fit the per-connection read buffer (hyper may read one chunk
/// past it) is refused with 431, and the listener keeps serving: one client cannot make a
/// connection hold the ~400 KiB hyper would otherwise allow.
#[tokio::test]
async fn a_request_head_over_the_read_buffer_is_refused_with_431() {
    let s = Server::start().await;
    let long = "x".repeat(2 * scim_sync::http::serve::MAX_READ_BUFFER);
    let (status, _) = s
        .raw(&format!(
            "GET /scim/v2/Users HTTP/1.1\r\nHost: x\r\nX-Long: {long}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(status, 431);
    // Within the buffer, the same kind of header is fine.
    let fits = "x".repeat(8 * 1024);
    let (status, _) = s
        .raw(&format!(
            "GET /scim/v2/ServiceProviderConfig HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCIM_TOKEN}\r\nX-Long: {fits}\r\nConnection: close\r\n\r\n"
        ))
        .await;
    assert_eq!(status, 200);
}

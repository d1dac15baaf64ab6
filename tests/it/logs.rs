//! What the daemon writes to its log when nobody is watching at a terminal.

use crate::common::test_env;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_scim-sync");

/// journald, a log file or a pipe gets plain text: colour codes there break `grep` and show as
/// `#033[2m` in journalctl.
#[test]
fn text_logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scim-sync.toml");
    std::fs::write(
        &config,
        format!(
            "[scim]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\npath = \"{}\"\n\
             [portkey]\nbase_url = \"http://127.0.0.1:9/v1\"\n[log]\nformat = \"text\"\n",
            dir.path().join("store.redb").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .env_remove("SCIM_SYNC_LOG")
        .env_remove("NO_COLOR");
    for (k, v) in test_env() {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < 3 {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.len() >= 3, "the daemon logged too little: {lines:?}");
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "colour code in a piped log line: {line:?}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("INFO")),
        "no plain level in {lines:?}"
    );
}

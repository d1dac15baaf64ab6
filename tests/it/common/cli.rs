//! The `scim-sync` binary as a command: one child process, its exit code, stdout and stderr.

use std::process::Stdio;
use tokio::io::AsyncWriteExt;

pub const BIN: &str = env!("CARGO_BIN_EXE_scim-sync");

/// Variables the binary reads; cleared so the caller's environment cannot leak in.
pub const READ_ENV: [&str; 10] = [
    "SCIM_SYNC_CONFIG",
    "SCIM_SYNC_ADMIN_URL",
    "SCIM_SYNC_ADMIN_TOKEN",
    "SCIM_SYNC_SCIM_TOKEN",
    "PORTKEY_API_KEY",
    "SCIM_SYNC_LOG",
    "SCIM_SYNC_CONFIG_DIR",
    "SCIM_SYNC_STATE_DIR",
    "SCIM_SYNC_SCIM_LISTEN",
    "SCIM_SYNC_ADMIN_LISTEN",
];

#[derive(Debug)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// `program` with its stdio piped, killed on drop, and none of the caller's [`READ_ENV`].
pub fn command(program: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for k in READ_ENV {
        cmd.env_remove(k);
    }
    cmd
}

pub async fn run_with(args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Out {
    let mut child = command(BIN)
        .args(args)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the command finished within 60 s")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Fails on the first of `words` that `text` lacks; `what` names the text in the message.
#[track_caller]
pub fn assert_has_all(text: &str, what: &str, words: &[&str]) {
    for w in words {
        assert!(text.contains(w), "{what} lacks {w}:\n{text}");
    }
}

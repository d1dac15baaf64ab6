//! Looking after the store: `backup` (online through the admin API, or offline), `check-store`
//! and `compact`.

use super::args::AdminArgs;
use super::client::{daemon_error, resolve, root_cause, store_path_from_config, AdminClient};
use super::render::field;
use super::{CliError, Outcome};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

// ---- store upkeep: backup, check-store, compact -----------------------------------------------

fn store_failed(e: crate::store::StoreError) -> CliError {
    use crate::store::StoreError;
    match e {
        StoreError::Locked(path) => CliError::Failed(format!(
            "the store {path} is in use by a running scim-sync (it holds the file's lock). Fix: \
             stop the daemon first, or take a copy with `scim-sync backup FILE` and use that"
        )),
        other => CliError::Failed(other.to_string()),
    }
}

fn info_table(info: &crate::store::StoreInfo) -> String {
    let mut out = String::new();
    field(&mut out, "Store file", &info.path);
    field(&mut out, "Size", format!("{} bytes", info.file_bytes));
    field(
        &mut out,
        "Schema version",
        format!(
            "{} (this release reads up to {})",
            info.schema_version, info.supported_schema_version
        ),
    );
    if !info.readable() {
        return out;
    }
    field(&mut out, "Users", info.users);
    field(&mut out, "Groups", info.groups);
    field(&mut out, "Memberships", info.memberships);
    field(
        &mut out,
        "Change feed",
        format!(
            "{} entries, last seq {}, reconciler cursor {}",
            info.change_feed_entries, info.last_change_seq, info.reconcile_cursor
        ),
    );
    field(&mut out, "Links", info.links);
    field(
        &mut out,
        "Audit log",
        format!("{} entries", info.audit_entries),
    );
    field(&mut out, "Held ops", info.held_ops);
    field(&mut out, "Failing ops", info.failing_ops);
    out
}

/// `scim-sync check-store FILE`.
pub fn check_store(file: &Path, json: bool) -> Result<Outcome, CliError> {
    let info = crate::store::inspect(file).map_err(store_failed)?;
    let ok = info.readable() && !info.unapplied_log;
    let mut text = info_table(&info);
    if info.unapplied_log {
        push_line!(
            text,
            "\nIts write-ahead log ({}.wal) holds writes that are not in the file yet (the daemon \
             did not stop cleanly), and the counts above leave them out: start scim-sync on this \
             store once and stop it, then check again.",
            info.path
        );
    }
    if !ok {
        push_line!(
            text,
            "\nThis release cannot read it: {}",
            crate::store::StoreError::TooNew {
                found: info.schema_version,
                supported: info.supported_schema_version,
            }
        );
    }
    let out = if json {
        // Counts and strings always serialise; the Debug text beats printing nothing.
        let mut s = serde_json::to_string_pretty(&info).unwrap_or_else(|_| format!("{info:?}"));
        s.push('\n');
        s
    } else {
        text
    };
    Ok(Outcome::new(out, ok))
}

/// `scim-sync compact --config FILE`.
pub fn compact(config: &Path) -> Result<Outcome, CliError> {
    let path = store_path_from_config(config)?;
    let c = crate::store::compact(&path).map_err(|e| match e {
        crate::store::StoreError::Locked(p) => CliError::Failed(format!(
            "the store {p} is in use by a running scim-sync. Compaction needs the file to \
             itself. Fix: stop the daemon (e.g. systemctl stop scim-sync), run `scim-sync \
             compact` again, then start it"
        )),
        other => store_failed(other),
    })?;
    let saved = c.before_bytes.saturating_sub(c.after_bytes);
    Ok(Outcome::new(
        format!(
            "Compacted {}: {} bytes before, {} bytes after ({saved} bytes freed).\n",
            path.display(),
            c.before_bytes,
            c.after_bytes
        ),
        true,
    ))
}

/// Removes a temporary file on drop unless it was kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            // Nothing to remove if it was never created.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `scim-sync backup FILE`: offline when `--config` names a store no daemon holds, otherwise
/// from the daemon over the admin API.
pub async fn backup(file: &Path, force: bool, args: &AdminArgs) -> Result<Outcome, CliError> {
    if file.exists() && !force {
        return Err(CliError::Usage(format!(
            "{} exists. Fix: choose another name, or pass --force to replace it",
            file.display()
        )));
    }
    if file.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is a directory; name the backup file",
            file.display()
        )));
    }
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} does not exist; create it first",
            dir.display()
        )));
    }
    let mut tmp = TempFile {
        path: crate::store::backup::temp_path(file, "partial"),
        keep: false,
    };

    let mut source = None;
    if let Some(config) = &args.config {
        let store = store_path_from_config(config)?;
        let (src, dst) = (store.clone(), tmp.path.clone());
        let copied =
            tokio::task::spawn_blocking(move || crate::store::backup::backup_offline(&src, &dst))
                .await
                .map_err(|e| CliError::Failed(format!("the copy stopped: {e}")))?;
        match copied {
            Ok(()) => source = Some(format!("copied offline from {}", store.display())),
            // The daemon holds it: ask the daemon.
            Err(crate::store::StoreError::Locked(_)) => {}
            Err(e) => return Err(store_failed(e)),
        }
    }
    let source = match source {
        Some(s) => s,
        None => {
            let (base, token) = resolve(args)?;
            download_backup(&base, &token, args.timeout, &tmp.path).await?;
            format!("taken online from the daemon at {base}")
        }
    };

    let check = tmp.path.clone();
    let info = tokio::task::spawn_blocking(move || crate::store::inspect(&check))
        .await
        .map_err(|e| CliError::Failed(format!("the check stopped: {e}")))?
        .map_err(|e| CliError::Failed(format!("the backup does not open as a store: {e}")))?;
    if !info.readable() {
        return Err(CliError::Failed(format!(
            "the backup has schema version {}, which this release cannot read (it reads up to \
             {}); back up with the release the daemon runs",
            info.schema_version, info.supported_schema_version
        )));
    }
    let placed = if force {
        std::fs::rename(&tmp.path, file)
    } else {
        // A link fails if FILE appeared meanwhile, where a rename would replace it.
        std::fs::hard_link(&tmp.path, file)
    };
    placed.map_err(|e| CliError::Failed(format!("cannot write {}: {e}", file.display())))?;
    if force {
        tmp.keep = true;
    }
    let mut out = format!(
        "Backup written to {} ({} bytes, {source}).\n\n",
        file.display(),
        info.file_bytes
    );
    let mut shown = info.clone();
    shown.path = file.display().to_string();
    out.push_str(&info_table(&shown));
    out.push_str(
        "\nRestore: stop the daemon, `scim-sync check-store FILE`, copy FILE to [store] path, \
         start the daemon (docs/operations.md, \"Backup and restore\").\n",
    );
    Ok(Outcome::new(out, true))
}

/// Streams `GET /admin/backup` into `dest` and flushes it to disk.
async fn download_backup(
    base: &str,
    token: &str,
    timeout_secs: u64,
    dest: &Path,
) -> Result<(), CliError> {
    use std::io::Write as _;
    let client = AdminClient::new(
        base.to_string(),
        token.to_string(),
        Duration::from_secs(timeout_secs.max(1)),
    )?;
    let unreachable = |reason: String| client.unreachable(reason);
    let mut resp = client.send(reqwest::Method::GET, "/admin/backup").await?;
    let status = resp.status().as_u16();
    if status != 200 {
        // A body cut off mid-read is as good as none: the status is still reported below.
        let body = resp.bytes().await.unwrap_or_else(|_| Default::default());
        let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if json.get("error").is_none() {
            return Err(unreachable(format!(
                "HTTP {status} for /admin/backup; is this the admin listener of a release that \
                 takes backups?"
            )));
        }
        return Err(daemon_error(status, &json));
    }
    let expected = resp.content_length();
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| CliError::Failed(format!("cannot create {}: {e}", dest.display())))?;
    let mut written = 0u64;
    loop {
        let chunk = resp.chunk().await.map_err(|e| {
            unreachable(format!(
                "the backup was cut short after {written} bytes: {}",
                root_cause(&e)
            ))
        })?;
        let Some(chunk) = chunk else { break };
        out.write_all(&chunk)
            .map_err(|e| CliError::Failed(format!("cannot write {}: {e}", dest.display())))?;
        written += chunk.len() as u64;
    }
    if let Some(n) = expected {
        if n != written {
            return Err(unreachable(format!(
                "the backup was cut short: {written} of {n} bytes"
            )));
        }
    }
    out.sync_all()
        .map_err(|e| CliError::Failed(format!("cannot flush {}: {e}", dest.display())))?;
    Ok(())
}

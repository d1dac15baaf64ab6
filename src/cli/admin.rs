//! The commands for a running daemon: ask the admin API, render its answer, pick the exit code.

use super::args::AdminCommand;
use super::client::{daemon_error, decode, resolve, AdminClient};
use super::render::{
    ops_table, opt, render_approval, render_explain, render_plan, render_run, render_status,
};
use super::{CliError, Outcome};
use crate::admin_api as api;
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// Runs one admin command against the daemon and renders its answer.
pub async fn run_admin(cmd: &AdminCommand) -> Result<Outcome, CliError> {
    let args = cmd.args();
    let (base, token) = resolve(args)?;
    let client = AdminClient::new(base, token, Duration::from_secs(args.timeout.max(1)))?;
    let json = args.json;
    match cmd {
        AdminCommand::Status { .. } => status(&client, json).await,
        AdminCommand::Resync { wait, .. } => resync(&client, *wait, json).await,
        AdminCommand::Plan { .. } => plan(&client, json).await,
        AdminCommand::Explain { user, .. } => explain(&client, user, json).await,
        AdminCommand::ApproveDeletions { digest, .. } => {
            approve(&client, digest.as_deref(), json).await
        }
    }
}

/// A 200 answer as the contract's type, anything else as the daemon's error.
async fn get_ok<T: serde::de::DeserializeOwned>(
    client: &AdminClient,
    path: &str,
) -> Result<(T, Value), CliError> {
    let (status, body) = client.call(Method::GET, path).await?;
    if status != 200 {
        return Err(daemon_error(status, &body));
    }
    Ok((decode(path, &body)?, body))
}

async fn status(client: &AdminClient, json: bool) -> Result<Outcome, CliError> {
    let (doc, body) = get_ok::<api::StatusDoc>(client, "/admin/status").await?;
    let (text, ok) = render_status(&doc, &client.base);
    Ok(Outcome::new(pick(json, &body, text), ok))
}

async fn resync(client: &AdminClient, wait: bool, json: bool) -> Result<Outcome, CliError> {
    let path = api::ResyncQuery { wait }.path();
    let (status, body) = if wait {
        with_progress(client, client.call(Method::POST, path)).await?
    } else {
        client.call(Method::POST, path).await?
    };
    match status {
        202 => {
            let doc: api::ResyncDoc = decode(path, &body)?;
            let text = format!(
                "Full resync started: run {}.\nFollow it with `scim-sync status`, or use \
                 `scim-sync resync --wait` to wait for the result.\n",
                doc.run_id
            );
            Ok(Outcome::new(pick(json, &body, text), true))
        }
        200 => {
            let doc: api::ResyncDoc = decode(path, &body)?;
            let (text, ok) = render_run(doc.summary.as_ref());
            Ok(Outcome::new(pick(json, &body, text), ok))
        }
        _ => Err(daemon_error(status, &body)),
    }
}

async fn plan(client: &AdminClient, json: bool) -> Result<Outcome, CliError> {
    let (doc, body) = get_ok::<api::PlanDoc>(client, "/admin/plan").await?;
    let (text, ok) = render_plan(&doc);
    Ok(Outcome::new(pick(json, &body, text), ok))
}

async fn explain(client: &AdminClient, user: &str, json: bool) -> Result<Outcome, CliError> {
    let enc = percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC);
    let (status, body) = client
        .call(Method::GET, &format!("/admin/explain/{enc}"))
        .await?;
    match status {
        200 => {
            let doc: api::ExplainDoc = decode("/admin/explain", &body)?;
            let (text, ok) = render_explain(&doc);
            Ok(Outcome::new(pick(json, &body, text), ok))
        }
        404 => {
            // An older daemon's 404 may carry no message; "not found" still says it all.
            let msg = decode::<api::ErrorBody>("/admin/explain", &body)
                .map_or_else(|_| "not found".to_string(), |e| e.error);
            let text = format!(
                "Not found: {msg}.\nCheck the spelling; `explain` takes a userName, an \
                 email or a SCIM id.\n"
            );
            Ok(Outcome::new(pick(json, &body, text), false))
        }
        _ => Err(daemon_error(status, &body)),
    }
}

/// The held set to approve, shown first, when no digest was given: what the status holds now.
/// `Err(outcome)` when nothing is held.
async fn review_held(
    client: &AdminClient,
    json: bool,
    shown: &mut String,
) -> Result<Result<String, Outcome>, CliError> {
    let (doc, st) = get_ok::<api::StatusDoc>(client, "/admin/status").await?;
    let held = &doc.reconciler.held_deletions;
    match doc.reconciler.held_digest.as_deref() {
        Some(d) if !held.is_empty() => {
            push_line!(
                shown,
                "Approving these {} held op(s) (digest {d}):",
                held.len()
            );
            ops_table(shown, "  ", held, &[]);
            shown.push('\n');
            Ok(Ok(d.to_string()))
        }
        _ => {
            let text = "No deletions are held; nothing to approve.\n".to_string();
            Ok(Err(Outcome::new(pick(json, &st, text), true)))
        }
    }
}

async fn approve(
    client: &AdminClient,
    digest: Option<&str>,
    json: bool,
) -> Result<Outcome, CliError> {
    let mut shown = String::new();
    let digest = match digest {
        Some(d) => d.to_string(),
        None => match review_held(client, json, &mut shown).await? {
            Ok(d) => d,
            Err(nothing_held) => return Ok(nothing_held),
        },
    };
    let path = api::ApproveQuery {
        digest: Some(digest),
    }
    .path();
    let (status, body) = client.call(Method::POST, &path).await?;
    if status == 409 {
        let refused: api::ApprovalRefused = decode("/admin/approve-deletions", &body)?;
        let text = format!(
            "{shown}Nothing approved: the held set changed since it was reviewed (its digest is \
             now {}). Review it again with `scim-sync status` or `scim-sync plan`.\n",
            opt(refused.held_digest.as_ref())
        );
        return Ok(Outcome::new(pick(json, &body, text), false));
    }
    if status != 200 {
        return Err(daemon_error(status, &body));
    }
    let doc: api::ApprovalDoc = decode("/admin/approve-deletions", &body)?;
    let (text, ok) = render_approval(&doc);
    Ok(Outcome::new(
        pick(json, &body, format!("{shown}{text}")),
        ok,
    ))
}

/// `--json`: the admin API's answer as it came, not the contract's reading of it, so that
/// fields a newer daemon adds still show.
fn pick(json: bool, body: &Value, text: String) -> String {
    if json {
        let mut s = serde_json::to_string_pretty(body).unwrap_or_else(|_| body.to_string());
        s.push('\n');
        s
    } else {
        text
    }
}

/// How often a waiting `resync` asks how far the run is.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// Awaits `call` (a `resync?wait=true`) while showing the run's progress on stderr, so stdout
/// keeps only the answer: a bar redrawn in place on a terminal, otherwise a plain line each time
/// the count moves (at most one every [`PROGRESS_EVERY`]). A failed status read shows nothing;
/// the answer still comes.
async fn with_progress<T>(
    client: &AdminClient,
    call: impl std::future::Future<Output = Result<T, CliError>>,
) -> Result<T, CliError> {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let mut shown: Option<(String, usize, usize)> = None;
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval(PROGRESS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut call => {
                if terminal && shown.is_some() {
                    eprint!("\r{:width$}\r", "", width = PROGRESS_WIDTH + 40);
                }
                return out;
            }
            _ = tick.tick() => {
                let Ok((200, body)) = client.call(Method::GET, "/admin/status").await else {
                    continue;
                };
                let Ok(doc) = serde_json::from_value::<api::StatusDoc>(body) else {
                    continue;
                };
                let r = doc.reconciler;
                let Some(run) = r.running else { continue };
                let now = (run, r.progress.done, r.progress.total);
                if shown.as_ref() == Some(&now) {
                    continue;
                }
                let line = progress_line(&now.0, now.1, now.2, terminal);
                if terminal {
                    eprint!("\r{line}");
                } else {
                    eprintln!("{line}");
                }
                shown = Some(now);
            }
        }
    }
}

const PROGRESS_WIDTH: usize = 30;

/// `run-7: 12/40 ops` (plus a bar on a terminal); `run-7: reading` before the plan is made.
fn progress_line(run: &str, done: usize, total: usize, bar: bool) -> String {
    if total == 0 {
        return format!("{run}: reading the control plane and planning");
    }
    let text = format!("{run}: {done}/{total} ops applied");
    if !bar {
        return text;
    }
    let filled = (done.min(total) * PROGRESS_WIDTH) / total;
    format!(
        "[{}{}] {text}",
        "#".repeat(filled),
        ".".repeat(PROGRESS_WIDTH - filled)
    )
}

#[cfg(test)]
mod tests {
    use super::progress_line;

    #[test]
    fn progress_is_a_bar_on_a_terminal_and_a_line_otherwise() {
        assert_eq!(
            progress_line("run-7", 12, 40, false),
            "run-7: 12/40 ops applied"
        );
        assert_eq!(
            progress_line("run-7", 20, 40, true),
            format!(
                "[{}{}] run-7: 20/40 ops applied",
                "#".repeat(15),
                ".".repeat(15)
            )
        );
        assert_eq!(
            progress_line("run-7", 0, 0, true),
            "run-7: reading the control plane and planning"
        );
    }
}

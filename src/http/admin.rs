//! The admin server: health for probes; status, resync, plan, explain, audit and approval of
//! held deletions for operators. Loopback by default, its own bearer token.

use crate::admin_api as api;
use crate::reconcile::run::Approval;
use crate::reconcile::{Reconciler, RunSummary};
use crate::scheduler::{Handle, Trigger};
use crate::store::Store;
use crate::token::TokenSet;
use serde::Serialize;
use std::sync::Arc;
use std::time::Instant;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::Filter;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub tokens: TokenSet,
    pub started: Instant,
    pub scim_listen: String,
    pub scim_base_path: String,
    pub reconciler: Arc<Reconciler>,
    pub scheduler: Handle<RunSummary>,
}

fn json_reply(status: StatusCode, v: &impl Serialize) -> warp::reply::Response {
    let body = match serde_json::to_vec_pretty(v) {
        Ok(b) => b,
        // Only a map with non-string keys fails, and the contract has none.
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut r = warp::reply::Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: impl Into<String>) -> warp::reply::Response {
    let body = api::ErrorBody { error: msg.into() };
    match serde_json::to_vec_pretty(&body) {
        Ok(b) => {
            let mut r = warp::reply::Response::new(b.into());
            *r.status_mut() = status;
            r.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(_) => {
            let mut r = warp::reply::Response::new(body.error.into());
            *r.status_mut() = status;
            r
        }
    }
}

fn unauthorized() -> warp::reply::Response {
    let mut r = error(
        StatusCode::UNAUTHORIZED,
        "missing or invalid bearer token (SCIM_SYNC_ADMIN_TOKEN)",
    );
    r.headers_mut().insert(
        "www-authenticate",
        warp::http::HeaderValue::from_static("Bearer realm=\"scim-sync-admin\""),
    );
    r
}

pub fn routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::any().map(move || state.clone()))
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             state: Arc<AdminState>| async move {
                let started = Instant::now();
                let r = dispatch(&state, &method, path.as_str(), &query, &headers).await;
                tracing::info!(
                    target: "scim_sync::admin",
                    method = %method,
                    path = %path.as_str(),
                    status = r.status().as_u16(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "admin request"
                );
                r
            },
        )
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

async fn dispatch(
    s: &AdminState,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
) -> warp::reply::Response {
    let segs: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            percent_encoding::percent_decode_str(p)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    // Probes need no token: they say nothing an attacker could use.
    match (method, segs.as_slice()) {
        // Liveness: the process answers. A store reopening after an I/O error is reported but
        // still answers 200, since restarting the process would not bring the disk space back;
        // /readyz answers 503 meanwhile.
        (&Method::GET, ["healthz"]) => {
            let health = match s.store.degraded() {
                None => api::Health {
                    status: "ok".into(),
                    store: None,
                },
                Some(d) => api::Health {
                    status: "degraded".into(),
                    store: Some(d.into()),
                },
            };
            return json_reply(StatusCode::OK, &health);
        }
        // Counts only, no secrets: scrapable without the admin token, like the probes.
        (&Method::GET, ["metrics"]) => {
            let m = crate::metrics::metrics();
            for kind in [
                crate::scim::schema::ResourceKind::User,
                crate::scim::schema::ResourceKind::Group,
            ] {
                if let Ok(n) = s.store.count(kind) {
                    m.store_resources
                        .get_or_create(&crate::metrics::ResourceLabels {
                            resource: kind.name().to_lowercase(),
                        })
                        .set(n as i64);
                }
            }
            m.held_deletions
                .set(s.reconciler.status().held.len() as i64);
            let mut r = warp::reply::Response::new(m.render().into());
            r.headers_mut().insert(
                "content-type",
                warp::http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return r;
        }
        (&Method::GET, ["readyz"]) => {
            return match s.store.ping() {
                Ok(()) => json_reply(
                    StatusCode::OK,
                    &api::Readiness {
                        status: "ready".into(),
                        store: None,
                    },
                ),
                Err(e) => json_reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &api::Readiness {
                        status: "not ready".into(),
                        store: Some(e.to_string()),
                    },
                ),
            }
        }
        _ => {}
    }
    if !s
        .tokens
        .verify_header(headers.get("authorization").and_then(|v| v.to_str().ok()))
    {
        return unauthorized();
    }
    let query: Vec<(String, String)> = serde_urlencoded::from_str(raw_query).unwrap_or_default();
    match (method, segs.as_slice()) {
        (&Method::GET, ["admin", "status"]) => json_reply(StatusCode::OK, &status_doc(s)),
        (&Method::GET, ["admin", "backup"]) => backup(s).await,
        (&Method::POST, ["admin", "resync"]) => {
            let wait = matches!(param(&query, "wait"), Some("true" | "1" | "yes"));
            match s.scheduler.resync(Trigger::Manual, wait).await {
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                Ok((run_id, None)) => json_reply(
                    StatusCode::ACCEPTED,
                    &api::ResyncDoc {
                        run_id,
                        summary: None,
                    },
                ),
                Ok((run_id, Some(rx))) => match rx.await {
                    Ok(summary) => json_reply(
                        StatusCode::OK,
                        &api::ResyncDoc {
                            run_id,
                            summary: Some(api::RunDoc::from(&summary)),
                        },
                    ),
                    Err(_) => error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the reconciler stopped before the run finished",
                    ),
                },
            }
        }
        (&Method::POST, ["admin", "approve-deletions"]) => {
            let Some(digest) = param(&query, "digest") else {
                let st = s.reconciler.status();
                return json_reply(
                    StatusCode::BAD_REQUEST,
                    &api::ApprovalRefused {
                        error: "name the held set you reviewed: POST /admin/approve-deletions?digest=<held_digest from GET /admin/status or /admin/plan>".into(),
                        held_digest: st.held_digest,
                        held: st.held.len(),
                    },
                );
            };
            let approved = match s.reconciler.approve(digest).await {
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                Ok(Approval::NothingHeld) => {
                    return json_reply(
                        StatusCode::OK,
                        &api::ApprovalDoc::NothingHeld {
                            approved: 0,
                            detail: "no deletions are held".into(),
                        },
                    )
                }
                Ok(Approval::Mismatch {
                    current_digest,
                    held,
                }) => {
                    return json_reply(
                        StatusCode::CONFLICT,
                        &api::ApprovalRefused {
                            error: "the held set changed since it was reviewed; review it again (GET /admin/status) and approve its new digest".into(),
                            held_digest: Some(current_digest),
                            held,
                        },
                    )
                }
                Ok(Approval::Approved { approved }) => approved,
            };
            match s.scheduler.resync(Trigger::Manual, true).await {
                Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                Ok((run_id, rx)) => {
                    let summary = match rx {
                        Some(rx) => rx.await.ok(),
                        None => None,
                    };
                    json_reply(
                        StatusCode::OK,
                        &api::ApprovalDoc::Applied {
                            approved,
                            run_id,
                            summary: summary.as_ref().map(|s| Box::new(api::RunDoc::from(s))),
                        },
                    )
                }
            }
        }
        (&Method::GET, ["admin", "plan"]) => match s.reconciler.plan().await {
            Ok((view, _)) => json_reply(
                StatusCode::OK,
                &api::PlanDoc {
                    summary: view
                        .plan
                        .summary()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                    dry_run_only: true,
                    plan: api::PlanBody::from(&view.plan),
                    held_by_fuse: view.held,
                    held_reason: view.held_reason,
                    held_digest: s.reconciler.status().held_digest,
                    read_errors: view.read_errors,
                },
            ),
            Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        },
        (&Method::GET, ["admin", "explain", who]) => explain(s, who).await,
        (&Method::GET, ["admin", "audit"]) => {
            let limit = param(&query, "limit")
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(100)
                .min(10_000);
            let before = param(&query, "before").and_then(|v| v.parse::<u64>().ok());
            match s.store.audit(limit, before) {
                Ok(entries) => json_reply(StatusCode::OK, &api::AuditDoc { entries }),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
        (_, ["admin", ..]) | (_, ["healthz" | "readyz" | "metrics"]) => error(
            StatusCode::NOT_FOUND,
            format!(
                "no admin endpoint {method} {path}; see GET /admin/status, GET /admin/backup, POST /admin/resync, GET /admin/plan, GET /admin/explain/{{userName}}, GET /admin/audit, POST /admin/approve-deletions"
            ),
        ),
        _ => error(StatusCode::NOT_FOUND, "no such endpoint"),
    }
}

/// The chunks of a backup file, read on a blocking thread.
struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<bytes::Bytes>>);

impl futures::Stream for Chunks {
    type Item = std::io::Result<bytes::Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// Bytes read from the backup file per chunk sent; with the channel's 4 chunks in flight, a
/// backup stream holds at most a few hundred KiB in memory whatever the store's size.
const BACKUP_CHUNK: usize = 64 * 1024;

/// `GET /admin/backup`: a consistent copy of the store (one read snapshot, taken while writes
/// go on) as a redb file, streamed from a temporary file that is already unlinked.
async fn backup(s: &AdminState) -> warp::reply::Response {
    use std::io::Read;
    let started = Instant::now();
    let store = s.store.clone();
    let taken = match tokio::task::spawn_blocking(move || store.backup()).await {
        Ok(r) => r,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let file = match taken {
        Ok(f) => f,
        Err(e @ crate::store::StoreError::BackupRunning) => {
            return error(StatusCode::CONFLICT, e.to_string())
        }
        Err(e) if e.is_unavailable() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("backup failed: {e}"),
            );
        }
    };
    let len = file.len;
    tracing::info!(
        bytes = len,
        ms = started.elapsed().as_secs_f64() * 1000.0,
        "backup taken; sending it"
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::task::spawn_blocking(move || {
        // Owns the backup (and with it the one-backup-at-a-time slot) until sent or abandoned.
        let mut file = file;
        loop {
            let mut buf = vec![0u8; BACKUP_CHUNK];
            let item = match file.file.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    buf.truncate(n);
                    Ok(bytes::Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // The client went away: the backup is dropped with it.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    let mut r = warp::reply::Reply::into_response(warp::reply::stream(Chunks(rx)));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/octet-stream"),
    );
    // A body cut short then shows as one, whatever the client.
    h.insert("content-length", warp::http::HeaderValue::from(len));
    h.insert(
        "content-disposition",
        warp::http::HeaderValue::from_static("attachment; filename=\"scim-sync-backup.redb\""),
    );
    h.insert(
        "x-scim-sync-schema-version",
        warp::http::HeaderValue::from(crate::store::SCHEMA_VERSION),
    );
    r
}

async fn explain(s: &AdminState, who: &str) -> warp::reply::Response {
    let person = match s.reconciler.explain(who).await {
        Ok(p) => p,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if person.unknown() {
        return error(
            StatusCode::NOT_FOUND,
            format!("'{who}' is neither a SCIM user (by userName, email or id) nor a control-plane user"),
        );
    }
    json_reply(StatusCode::OK, &explain_doc(who, person))
}

fn explain_doc(who: &str, p: crate::reconcile::explain::Person) -> api::ExplainDoc {
    api::ExplainDoc {
        query: who.to_string(),
        email: p.email,
        desired: p.explanation.as_ref().map(api::DesiredDoc::from),
        actual: p.actual.map(|a| api::ActualDoc {
            user: a.user,
            invites: a.invites,
            memberships_in_managed_workspaces: a
                .memberships
                .into_iter()
                .map(|m| api::MembershipDoc {
                    workspace_id: m.workspace_id,
                    role: m.role.as_str().to_string(),
                })
                .collect(),
        }),
        planned_ops: p.ops,
        read_errors: p.read_errors,
    }
}

fn status_doc(s: &AdminState) -> api::StatusDoc {
    let now = crate::store::now_rfc3339();
    let users = s.store.count(crate::scim::schema::ResourceKind::User);
    let groups = s.store.count(crate::scim::schema::ResourceKind::Group);
    let seq = s.store.last_seq();
    let stats = s.store.write_stats();
    let store = match (s.store.degraded(), &users, &groups, &seq) {
        (None, Ok(u), Ok(g), Ok(q)) => api::StoreStatus::Ok {
            ok: true,
            users: *u,
            groups: *g,
            last_change_seq: *q,
            last_ok_at: now.clone(),
            write_commits: stats.commits,
            writes: stats.writes,
        },
        (degraded, ..) => api::StoreStatus::Failing {
            ok: false,
            error: degraded.as_ref().map(|d| d.reason.clone()).or_else(|| {
                users
                    .err()
                    .or(groups.err())
                    .or(seq.err())
                    .map(|e| e.to_string())
            }),
            degraded: degraded.map(api::DegradedDoc::from),
        },
    };
    let r = s.reconciler.status();
    api::StatusDoc {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: s.started.elapsed().as_secs(),
        scim: api::ScimStatus {
            ok: true,
            listen: s.scim_listen.clone(),
            base_path: s.scim_base_path.clone(),
            last_ok_at: now,
        },
        store,
        control_plane: api::ControlPlaneDoc {
            ok: r.control_plane.ok,
            last_ok_at: r.control_plane.last_ok_at.clone(),
            last_error: r.control_plane.last_error.clone(),
        },
        reconciler: api::ReconcilerDoc {
            ok: r.last_run.as_ref().map(|l| l.ok),
            running: r.running,
            progress: api::ProgressDoc {
                done: r.progress.done,
                total: r.progress.total,
            },
            last_successful_run_at: r.last_successful_run_at,
            last_successful_full_run_at: r.last_successful_full_run_at,
            next_retry_at: s.scheduler.next_retry().map(|t| {
                let t: time::OffsetDateTime = t.into();
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|e| format!("<{e}>"))
            }),
            last_run: r.last_run.as_ref().map(api::LastRunDoc::from),
            held_deletions: r.held,
            held_reason: r.held_reason,
            held_digest: r.held_digest,
            approved_waiting: r.approved_waiting,
            failing_ops: r
                .failing
                .into_iter()
                .map(|f| api::FailingDoc {
                    op: f.op,
                    attempts: f.attempts,
                    first_failed_at: f.first_failed_at,
                    last_failed_at: f.last_failed_at,
                    last_error: f.last_error,
                    next_attempt_at: f.next_attempt_at,
                })
                .collect(),
            store_error: r.store_error,
        },
    }
}

//! The admin server: health for probes; status, resync, plan, explain, audit and approval of
//! held deletions for operators, and the console page that shows them
//! ([`super::console`]). Loopback by default, its own bearer token.
//!
//! One warp filter per route; handlers answer with the documents of [`crate::admin_api`] or an
//! [`AdminError`], and [`AdminError::status`] is the one place that picks an error's status.

use crate::admin_api as api;
use crate::reconcile::run::Approval;
use crate::reconcile::{Reconciler, RunSummary};
use crate::scheduler::{Handle, Trigger};
use crate::store::Store;
use crate::token::TokenSet;
use serde::Serialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Rejection};

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

/// Why an admin request failed. [`Self::status`] picks the status, [`Self::into_response`] the
/// body: `{"error": "..."}`, plus what the caller needs to act on for the approval refusals.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("missing or invalid bearer token (SCIM_SYNC_ADMIN_TOKEN)")]
    Unauthorized,
    /// A path under the admin API or a probe, with a method it does not take.
    #[error("no admin endpoint {method} {path}; see GET /admin/status, GET /admin/backup, POST /admin/resync, GET /admin/plan, GET /admin/explain/{{userName}}, GET /admin/audit, POST /admin/approve-deletions, GET /console")]
    NoAdminEndpoint { method: Method, path: String },
    #[error("no such endpoint")]
    NoSuchEndpoint,
    #[error("'{0}' is neither a SCIM user (by userName, email or id) nor a control-plane user")]
    UnknownPerson(String),
    #[error("name the held set you reviewed: POST /admin/approve-deletions?digest=<held_digest from GET /admin/status or /admin/plan>")]
    DigestMissing {
        held_digest: Option<String>,
        held: usize,
    },
    #[error("the held set changed since it was reviewed; review it again (GET /admin/status) and approve its new digest")]
    HeldSetChanged { held_digest: String, held: usize },
    /// Another backup is being taken.
    #[error("{0}")]
    Busy(String),
    /// `/readyz`: the store does not answer.
    #[error("{0}")]
    NotReady(String),
    /// The reconciler, the scheduler or the store cannot serve this now; trying later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl AdminError {
    /// The one mapping from admin errors to HTTP statuses.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NoAdminEndpoint { .. } | Self::NoSuchEndpoint | Self::UnknownPerson(_) => {
                StatusCode::NOT_FOUND
            }
            Self::DigestMissing { .. } => StatusCode::BAD_REQUEST,
            Self::HeldSetChanged { .. } | Self::Busy(_) => StatusCode::CONFLICT,
            Self::NotReady(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn into_response(self) -> Response {
        let status = self.status();
        let error = self.to_string();
        let mut r = match self {
            Self::DigestMissing { held_digest, held } => json_reply(
                status,
                &api::ApprovalRefused {
                    error,
                    held_digest,
                    held,
                },
            ),
            Self::HeldSetChanged { held_digest, held } => json_reply(
                status,
                &api::ApprovalRefused {
                    error,
                    held_digest: Some(held_digest),
                    held,
                },
            ),
            Self::NotReady(store) => json_reply(
                status,
                &api::Readiness {
                    status: "not ready".into(),
                    store: Some(store),
                },
            ),
            _ => json_reply(status, &api::ErrorBody { error }),
        };
        if status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"scim-sync-admin\""),
            );
        }
        r
    }
}

impl warp::reject::Reject for AdminError {}

fn json_reply(status: StatusCode, v: &impl Serialize) -> Response {
    let (status, body) = match serde_json::to_vec_pretty(v) {
        Ok(b) => (status, b),
        // Only a map with non-string keys fails, and the contract has none.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\": \"cannot write the answer: {e}\"}}").into_bytes(),
        ),
    };
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

type Answer = Result<Response, AdminError>;

fn ok(v: &impl Serialize) -> Answer {
    Ok(json_reply(StatusCode::OK, v))
}

/// Every admin route, logged. Probes need no token: they say nothing an attacker could use.
/// Anything else needs the token first, even a path that does not exist.
pub fn routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let probes = healthz(state.clone())
        .or(readyz(state.clone()))
        .unify()
        .or(metrics(state.clone()))
        .unify()
        .or(super::console::routes())
        .unify();
    let operator = authorized(state.clone())
        .and(operator_routes(state))
        .map(|a: Answer| a.unwrap_or_else(AdminError::into_response));
    probes
        .or(operator)
        .unify()
        .recover(recover)
        .unify()
        .with(warp::log::custom(|info| {
            tracing::info!(
                target: "scim_sync::admin",
                method = %info.method(),
                path = %info.path(),
                status = info.status().as_u16(),
                ms = info.elapsed().as_secs_f64() * 1000.0,
                "admin request"
            );
        }))
        .map(warp::Reply::into_response)
}

/// The operator routes, tried in order; the last one takes whatever is left.
fn operator_routes(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Answer,), Error = Infallible> + Clone {
    let s = move || with_state(state.clone());
    warp::path!("admin" / "status")
        .and(warp::get())
        .and(s())
        .map(|s: Arc<AdminState>| ok(&status_doc(&s)))
        .or(warp::path!("admin" / "backup")
            .and(warp::get())
            .and(s())
            .then(|s: Arc<AdminState>| async move { backup(&s).await }))
        .unify()
        .or(warp::path!("admin" / "resync")
            .and(warp::post())
            .and(s())
            .and(query::<api::ResyncQuery>())
            .then(|s: Arc<AdminState>, q| async move { resync(&s, q).await }))
        .unify()
        .or(warp::path!("admin" / "approve-deletions")
            .and(warp::post())
            .and(s())
            .and(query::<api::ApproveQuery>())
            .then(|s: Arc<AdminState>, q| async move { approve(&s, q).await }))
        .unify()
        .or(warp::path!("admin" / "plan")
            .and(warp::get())
            .and(s())
            .then(|s: Arc<AdminState>| async move { plan(&s).await }))
        .unify()
        .or(warp::path!("admin" / "explain" / String)
            .and(warp::get())
            .and(s())
            .then(
                |who: String, s: Arc<AdminState>| async move { explain(&s, &decoded(&who)).await },
            ))
        .unify()
        .or(warp::path!("admin" / "audit")
            .and(warp::get())
            .and(s())
            .and(query::<api::AuditQuery>())
            .map(|s: Arc<AdminState>, q| audit(&s, &q)))
        .unify()
        .or(no_endpoint())
        .unify()
}

fn with_state(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Arc<AdminState>,), Error = Infallible> + Clone {
    warp::any().map(move || state.clone())
}

/// Passes only requests with an admin token; rejects with [`AdminError::Unauthorized`].
fn authorized(state: Arc<AdminState>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::headers_cloned()
        .and(with_state(state))
        .and_then(|headers: HeaderMap, s: Arc<AdminState>| async move {
            let header = headers.get("authorization").and_then(|v| v.to_str().ok());
            if s.tokens.verify_header(header) {
                Ok(())
            } else {
                Err(warp::reject::custom(AdminError::Unauthorized))
            }
        })
        .untuple_one()
}

/// A request's query as the contract's type. Every parameter is optional, so a query that does
/// not parse is read as an empty one, as the admin API always has.
fn query<T: api::FromQuery + Send>() -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::query::raw()
        .or(warp::any().map(String::new))
        .unify()
        .map(|raw: String| {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_str(&raw).unwrap_or_else(|_| Vec::new());
            T::from_query(&pairs)
        })
}

/// A path segment as sent: percent-decoded (warp leaves it encoded).
fn decoded(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// Whatever no route took: under `/admin` or a probe path, a list of the endpoints.
fn no_endpoint() -> impl Filter<Extract = (Answer,), Error = Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .map(|method: Method, path: warp::path::FullPath| {
            let segs: Vec<String> = path
                .as_str()
                .split('/')
                .filter(|p| !p.is_empty())
                .map(decoded)
                .collect();
            let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
            Err(match segs.as_slice() {
                ["admin", ..] | ["healthz" | "readyz" | "metrics"] => AdminError::NoAdminEndpoint {
                    method,
                    path: path.as_str().to_string(),
                },
                _ => AdminError::NoSuchEndpoint,
            })
        })
}

/// Renders the only rejection the routes make, a refused token; anything else would be a route
/// that rejects where it should answer.
async fn recover(r: Rejection) -> Result<Response, Infallible> {
    let e = match r.find::<AdminError>() {
        Some(AdminError::Unauthorized) => AdminError::Unauthorized,
        _ => {
            tracing::error!(rejection = ?r, "an admin route rejected instead of answering");
            AdminError::Internal("the admin server could not route this request".into())
        }
    };
    Ok(e.into_response())
}

// ---- probes ----------------------------------------------------------------------------------

/// Liveness: the process answers. A store reopening after an I/O error is reported but still
/// answers 200, since restarting the process would not bring the disk space back; /readyz
/// answers 503 meanwhile.
fn healthz(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("healthz")
        .and(warp::get())
        .and(with_state(state))
        .map(|s: Arc<AdminState>| {
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
            json_reply(StatusCode::OK, &health)
        })
}

fn readyz(state: Arc<AdminState>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("readyz")
        .and(warp::get())
        .and(with_state(state))
        .map(|s: Arc<AdminState>| match s.store.ping() {
            Ok(()) => json_reply(
                StatusCode::OK,
                &api::Readiness {
                    status: "ready".into(),
                    store: None,
                },
            ),
            Err(e) => AdminError::NotReady(e.to_string()).into_response(),
        })
}

/// Counts only, no secrets: scrapable without the admin token, like the probes.
fn metrics(
    state: Arc<AdminState>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_state(state))
        .map(|s: Arc<AdminState>| {
            let m = crate::metrics::metrics();
            for kind in [
                crate::scim::schema::ResourceKind::User,
                crate::scim::schema::ResourceKind::Group,
            ] {
                // A store that cannot count leaves the gauge at its last value; /readyz and
                // the status say why.
                if let Ok(n) = s.store.count(kind) {
                    m.store_resources
                        .get_or_create(&crate::metrics::ResourceLabels {
                            resource: kind.name().to_lowercase(),
                        })
                        .set(n as i64);
                }
            }
            if let Some(bytes) = s.store.file_bytes() {
                m.store_file_bytes
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            m.held_deletions
                .set(s.reconciler.status().held.len() as i64);
            let mut r = Response::new(m.render().into());
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        })
}

// ---- operator handlers -----------------------------------------------------------------------

async fn resync(s: &AdminState, q: api::ResyncQuery) -> Answer {
    let (run_id, rx) = s
        .scheduler
        .resync(Trigger::Manual, q.wait)
        .await
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    let Some(rx) = rx else {
        return Ok(json_reply(
            StatusCode::ACCEPTED,
            &api::ResyncDoc {
                run_id,
                summary: None,
            },
        ));
    };
    let summary = rx.await.map_err(|_| {
        AdminError::Unavailable("the reconciler stopped before the run finished".into())
    })?;
    ok(&api::ResyncDoc {
        run_id,
        summary: Some(api::RunDoc::from(&summary)),
    })
}

async fn approve(s: &AdminState, q: api::ApproveQuery) -> Answer {
    let Some(digest) = q.digest else {
        let st = s.reconciler.status();
        return Err(AdminError::DigestMissing {
            held_digest: st.held_digest,
            held: st.held.len(),
        });
    };
    let approved = match s.reconciler.approve(&digest).await {
        Err(e) => return Err(AdminError::Internal(e.to_string())),
        Ok(Approval::NothingHeld) => {
            return ok(&api::ApprovalDoc::NothingHeld {
                approved: 0,
                detail: "no deletions are held".into(),
            })
        }
        Ok(Approval::Mismatch {
            current_digest,
            held,
        }) => {
            return Err(AdminError::HeldSetChanged {
                held_digest: current_digest,
                held,
            })
        }
        Ok(Approval::Approved { approved }) => approved,
    };
    let (run_id, rx) = s
        .scheduler
        .resync(Trigger::Manual, true)
        .await
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    // No summary (`null`) when the reconciler stopped before the run finished: the approval
    // stands, and the next run applies it.
    let summary = match rx {
        Some(rx) => rx.await.ok(),
        None => None,
    };
    ok(&api::ApprovalDoc::Applied {
        approved,
        run_id,
        summary: summary.as_ref().map(|s| Box::new(api::RunDoc::from(s))),
    })
}

async fn plan(s: &AdminState) -> Answer {
    let (view, _) = s
        .reconciler
        .plan()
        .await
        .map_err(|e| AdminError::Unavailable(e.to_string()))?;
    ok(&api::PlanDoc {
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
    })
}

fn audit(s: &AdminState, q: &api::AuditQuery) -> Answer {
    let (entries, next_before) = s
        .store
        .audit_search(q.limit, q.before, q.q.as_deref(), api::AUDIT_SEARCH_SCAN)
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    ok(&api::AuditDoc {
        entries,
        next_before,
    })
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
async fn backup(s: &AdminState) -> Answer {
    use std::io::Read;
    let started = Instant::now();
    let store = s.store.clone();
    let taken = match tokio::task::spawn_blocking(move || store.backup()).await {
        Ok(r) => r,
        Err(e) => return Err(AdminError::Internal(e.to_string())),
    };
    let file = match taken {
        Ok(f) => f,
        Err(e @ crate::store::StoreError::BackupRunning) => {
            return Err(AdminError::Busy(e.to_string()))
        }
        Err(e) if e.is_unavailable() => return Err(AdminError::Unavailable(e.to_string())),
        Err(e) => {
            tracing::error!(error = %e, "backup failed");
            return Err(AdminError::Internal(format!("backup failed: {e}")));
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
    let mut r = warp::Reply::into_response(warp::reply::stream(Chunks(rx)));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/octet-stream"),
    );
    // A body cut short then shows as one, whatever the client.
    h.insert("content-length", HeaderValue::from(len));
    h.insert(
        "content-disposition",
        HeaderValue::from_static("attachment; filename=\"scim-sync-backup.redb\""),
    );
    h.insert(
        "x-scim-sync-schema-version",
        HeaderValue::from(crate::store::SCHEMA_VERSION),
    );
    Ok(r)
}

async fn explain(s: &AdminState, who: &str) -> Answer {
    let person = s
        .reconciler
        .explain(who)
        .await
        .map_err(|e| AdminError::Internal(e.to_string()))?;
    if person.unknown() {
        return Err(AdminError::UnknownPerson(who.to_string()));
    }
    ok(&explain_doc(who, person))
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
            write_ahead_log: s.store.write_ahead_log(),
            logged_commits: stats.logged_commits,
            checkpoints: stats.checkpoints,
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
            recent_runs: r.recent_runs.iter().map(api::LastRunDoc::from).collect(),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The status, headers and JSON body of an error as the admin server sends it.
    async fn sent(e: AdminError) -> (StatusCode, HeaderMap, serde_json::Value) {
        let e = Arc::new(std::sync::Mutex::new(Some(e)));
        let route = warp::any().map(move || e.lock().unwrap().take().unwrap().into_response());
        let r = warp::test::request().reply(&route).await;
        let body = serde_json::from_slice(r.body()).unwrap();
        (r.status(), r.headers().clone(), body)
    }

    #[tokio::test]
    async fn each_error_has_its_status_and_the_body_admins_script_against() {
        let (status, headers, _) = sent(AdminError::Unauthorized).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.contains_key("www-authenticate"));
        let (status, _, v) = sent(AdminError::HeldSetChanged {
            held_digest: "d2".into(),
            held: 3,
        })
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            (v["held_digest"].as_str(), v["held"].as_u64()),
            (Some("d2"), Some(3))
        );
        assert!(v["error"].as_str().unwrap().contains("held set changed"));
        let (status, _, v) = sent(AdminError::DigestMissing {
            held_digest: None,
            held: 0,
        })
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(v["held_digest"].is_null());
        let (status, _, v) = sent(AdminError::NotReady("disk".into())).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            (v["status"].as_str(), v["store"].as_str()),
            (Some("not ready"), Some("disk"))
        );
        for (e, status) in [
            (
                AdminError::UnknownPerson("bob".into()),
                StatusCode::NOT_FOUND,
            ),
            (AdminError::NoSuchEndpoint, StatusCode::NOT_FOUND),
            (AdminError::Busy("b".into()), StatusCode::CONFLICT),
            (
                AdminError::Unavailable("u".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                AdminError::Internal("i".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ] {
            let msg = e.to_string();
            let (sent_status, _, v) = sent(e).await;
            assert_eq!(sent_status, status, "{msg}");
            assert_eq!(v, serde_json::json!({ "error": msg }));
        }
    }
}

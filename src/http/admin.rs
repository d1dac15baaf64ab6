//! The admin server: health for probes, status for operators. Loopback by default, its own
//! bearer token. (Resync, plan, explain and audit arrive with the reconciler.)

use crate::store::Store;
use crate::token::TokenSet;
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;
use warp::http::StatusCode;
use warp::Filter;

#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub tokens: TokenSet,
    pub started: Instant,
    pub scim_listen: String,
    pub scim_base_path: String,
}

fn json_reply(status: StatusCode, v: serde_json::Value) -> warp::reply::Response {
    let mut r = warp::reply::with_status(warp::reply::json(&v), status).into_response_boxed();
    r.headers_mut().insert(
        "content-type",
        warp::http::HeaderValue::from_static("application/json"),
    );
    r
}

trait IntoResponseBoxed {
    fn into_response_boxed(self) -> warp::reply::Response;
}
impl<T: warp::Reply> IntoResponseBoxed for T {
    fn into_response_boxed(self) -> warp::reply::Response {
        self.into_response()
    }
}

fn unauthorized() -> warp::reply::Response {
    let mut r = json_reply(
        StatusCode::UNAUTHORIZED,
        json!({"error": "missing or invalid bearer token (SCIM_SYNC_ADMIN_TOKEN)"}),
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
    let with_state = {
        let s = state.clone();
        warp::any().map(move || s.clone())
    };
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| json_reply(StatusCode::OK, json!({"status": "ok"})));
    let readyz = warp::path!("readyz")
        .and(warp::get())
        .and(with_state.clone())
        .map(|s: Arc<AdminState>| match s.store.ping() {
            Ok(()) => json_reply(StatusCode::OK, json!({"status": "ready"})),
            Err(e) => json_reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not ready", "store": e.to_string()}),
            ),
        });
    let status = warp::path!("admin" / "status")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(with_state)
        .map(|auth: Option<String>, s: Arc<AdminState>| {
            if !s.tokens.verify_header(auth.as_deref()) {
                return unauthorized();
            }
            json_reply(StatusCode::OK, status_doc(&s))
        });
    healthz
        .or(readyz)
        .unify()
        .or(status)
        .unify()
        .recover(|r: warp::Rejection| async move {
            let (code, msg) = if r.is_not_found() {
                (StatusCode::NOT_FOUND, "no such admin endpoint")
            } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
            } else {
                (StatusCode::BAD_REQUEST, "bad request")
            };
            Ok::<_, std::convert::Infallible>(json_reply(code, json!({"error": msg})))
        })
        .unify()
}

fn status_doc(s: &AdminState) -> serde_json::Value {
    let now = crate::store::now_rfc3339();
    let users = s.store.count(crate::scim::schema::ResourceKind::User);
    let groups = s.store.count(crate::scim::schema::ResourceKind::Group);
    let seq = s.store.last_seq();
    let store = match (&users, &groups, &seq) {
        (Ok(u), Ok(g), Ok(q)) => json!({
            "ok": true, "users": u, "groups": g, "last_change_seq": q, "last_ok_at": now,
            "write_commits": s.store.write_stats().commits, "writes": s.store.write_stats().writes,
        }),
        _ => {
            json!({"ok": false, "error": users.err().or(groups.err()).or(seq.err()).map(|e| e.to_string())})
        }
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": s.started.elapsed().as_secs(),
        "scim": {"ok": true, "listen": s.scim_listen, "base_path": s.scim_base_path, "last_ok_at": now},
        "store": store,
        "reconciler": {"ok": false, "state": "not available in this release: SCIM state is stored but not yet pushed to the control plane"},
    })
}

//! HTTP front: one warp filter that hands every request to a hand-written router, so
//! logging, fault injection and error envelopes are applied in one place.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use serde_json::{json, Value};
use warp::http::{HeaderMap, HeaderValue, Method};
use warp::reply::Response;
use warp::Filter;

use crate::model::ApiError;
use crate::query::Query;
use crate::state::{json_response, lock, schedule_auto_accept, Inner};
use crate::{control, Quirks};

/// "Never answered" in practice: far longer than any client timeout.
const HANG: Duration = Duration::from_secs(3600);

pub(crate) fn routes(
    inner: Arc<Inner>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(
            move |method: Method, path: warp::path::FullPath, query: String, headers, body| {
                let inner = Arc::clone(&inner);
                async move {
                    let path = path.as_str().to_string();
                    if path == "/_sim" || path.starts_with("/_sim/") {
                        control::handle(&inner, &method, &path, &body)
                    } else if path == "/v1" || path.starts_with("/v1/") {
                        handle_api(&inner, method, path, query, headers, body).await
                    } else {
                        json_response(404, &json!({"error": "not found"}))
                    }
                }
            },
        )
}

fn envelope(status: u16, code: &str, message: &str) -> Response {
    json_response(
        status,
        &json!({"success": false, "data": {"message": message, "errorCode": code}}),
    )
}

fn internal_error() -> Response {
    envelope(500, "AB04", "Internal Server Error")
}

/// The documented AB03 body (AB03 help page). A denied scope and, with `missing_is_403`,
/// a missing resource both answer exactly this, so the two cannot be told apart.
fn forbidden() -> Response {
    envelope(
        403,
        "AB03",
        "You do not have enough permissions to execute this request",
    )
}

fn api_error(quirks: &Quirks, e: ApiError) -> Response {
    match e {
        ApiError::BadRequest(m) => envelope(400, "AB01", &m),
        ApiError::NotFound(_) if quirks.missing_is_403 => forbidden(),
        ApiError::NotFound(m) => envelope(404, "AB08", &m),
        ApiError::Conflict(m) => envelope(409, "AB07", &m),
    }
}

struct Draw {
    hang: bool,
    rate_limited: bool,
    server_error: bool,
    latency: Duration,
    retry_after: Option<u64>,
    fail_page: Option<crate::FailPage>,
    apply_then_500: bool,
}

/// Every `/v1` request draws the same three numbers, whatever the rates, so the fault
/// sequence depends only on the seed and the request count.
fn draw(inner: &Inner, method: &Method, path: &str) -> Draw {
    let mut f = lock(&inner.faults);
    let (a, b, c): (f64, f64, f64) = (f.rng.gen(), f.rng.gen(), f.rng.gen());
    Draw {
        hang: a < f.faults.hang_rate,
        rate_limited: b < f.faults.rate_429,
        server_error: c < f.faults.rate_5xx,
        latency: Duration::from_millis(f.faults.latency_ms),
        retry_after: f.faults.retry_after_secs,
        fail_page: f.faults.fail_page.clone(),
        apply_then_500: f
            .faults
            .apply_then_500
            .iter()
            .any(|p| pattern_matches(p, method, path)),
    }
}

fn trim_path(p: &str) -> &str {
    let t = p.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

/// `"POST /v1/admin/workspaces/*/users"`; `*` or `{name}` match one segment.
fn pattern_matches(pattern: &str, method: &Method, path: &str) -> bool {
    let Some((m, p)) = pattern.trim().split_once(char::is_whitespace) else {
        return false;
    };
    if !m.eq_ignore_ascii_case(method.as_str()) {
        return false;
    }
    let p = p.trim();
    let p = if p.starts_with("/v1/") || p == "/v1" {
        p.to_string()
    } else {
        format!("/v1/{}", p.trim_start_matches('/'))
    };
    let want: Vec<&str> = trim_path(&p).split('/').collect();
    let got: Vec<&str> = trim_path(path).split('/').collect();
    want.len() == got.len()
        && want
            .iter()
            .zip(&got)
            .all(|(w, g)| *w == "*" || (w.starts_with('{') && w.ends_with('}')) || w == g)
}

async fn handle_api(
    inner: &Arc<Inner>,
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Option<Value> = if body.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_slice(&body).ok()
    };
    let seq = lock(&inner.log).push(
        &method,
        &path,
        &query,
        parsed.clone().unwrap_or(Value::Null),
    );
    let d = draw(inner, &method, &path);
    let (resp, fault) = answer(inner, &method, &path, &query, &headers, parsed, d).await;
    lock(&inner.log).finish(seq, resp.status().as_u16(), fault);
    resp
}

async fn answer(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    raw_query: &str,
    headers: &HeaderMap,
    body: Option<Value>,
    d: Draw,
) -> (Response, Option<&'static str>) {
    if !d.latency.is_zero() && !inner.sleep(d.latency).await {
        return (envelope(503, "AB04", "shutting down"), Some("latency"));
    }
    if d.hang {
        inner.sleep(HANG).await;
        return (envelope(503, "AB04", "shutting down"), Some("hang"));
    }
    if d.rate_limited {
        let mut resp = envelope(429, "AB06", "Rate limit exceeded");
        if let Some(secs) = d.retry_after {
            resp.headers_mut()
                .insert(warp::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        return (resp, Some("429"));
    }
    if d.server_error {
        return (internal_error(), Some("5xx"));
    }
    let authorised = headers
        .get("x-portkey-api-key")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|k| k == inner.api_key);
    if !authorised {
        return (envelope(401, "AB05", "Unauthorised Request"), None);
    }
    let quirks = lock(&inner.quirks).clone();
    if let Some(scope) = required_scope(method, &api_segments(path)) {
        if quirks.denied_scopes.iter().any(|d| d == scope) {
            return (forbidden(), None);
        }
    }
    let query = Query::parse(raw_query);
    if let Some(fp) = &d.fail_page {
        if method == Method::GET
            && trim_path(&fp.path) == trim_path(path)
            && query.page_number() == Some(fp.page)
        {
            return (internal_error(), Some("fail_page"));
        }
    }
    let Some(body) = body else {
        return (
            envelope(400, "AB01", "request body is not valid JSON"),
            None,
        );
    };
    let resp = match route(inner, &quirks, method, path, &query, &body) {
        Ok(v) => json_response(200, &v),
        Err(Routed::Api(e)) => api_error(&quirks, e),
        Err(Routed::NoRoute) => envelope(404, "AB02", "no such route"),
    };
    if d.apply_then_500 && resp.status().is_success() {
        let key = format!("{method} {} {body}", trim_path(path));
        if lock(&inner.faults).fired.insert(key) {
            return (internal_error(), Some("apply_then_500"));
        }
    }
    (resp, None)
}

enum Routed {
    Api(ApiError),
    NoRoute,
}

impl From<ApiError> for Routed {
    fn from(e: ApiError) -> Self {
        Routed::Api(e)
    }
}

/// The path segments after `/v1`.
fn api_segments(path: &str) -> Vec<&str> {
    path.trim_start_matches("/v1")
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

/// The Admin-API key scope a request needs (KEYS scope names), or `None` for a path that
/// `route` does not serve. Keep the patterns in step with `route`.
fn required_scope(method: &Method, segs: &[&str]) -> Option<&'static str> {
    let scope = match (method.as_str(), segs) {
        ("GET", ["admin", "users"]) => "organisation_users.list",
        ("GET", ["admin", "users", "invites"]) => "organisation_users.list",
        ("POST", ["admin", "users", "invites"]) => "organisation_users.create",
        ("GET", ["admin", "users", "invites", _]) => "organisation_users.read",
        ("DELETE", ["admin", "users", "invites", _]) => "organisation_users.delete",
        // A guess: resending issues the invite again, like creating it.
        ("POST", ["admin", "users", "invites", _, "resend"]) => "organisation_users.create",
        ("GET", ["admin", "users", _]) => "organisation_users.read",
        ("PUT", ["admin", "users", _]) => "organisation_users.update",
        ("DELETE", ["admin", "users", _]) => "organisation_users.delete",
        ("GET", ["admin", "workspaces"]) => "workspaces.list",
        ("POST", ["admin", "workspaces"]) => "workspaces.create",
        ("GET", ["admin", "workspaces", _]) => "workspaces.read",
        ("PUT", ["admin", "workspaces", _]) => "workspaces.update",
        ("DELETE", ["admin", "workspaces", _]) => "workspaces.delete",
        ("GET", ["admin", "workspaces", _, "users"]) => "workspace_users.list",
        ("POST", ["admin", "workspaces", _, "users"]) => "workspace_users.create",
        ("GET", ["admin", "workspaces", _, "users" | "members", _]) => "workspace_users.read",
        ("PUT", ["admin", "workspaces", _, "users", _]) => "workspace_users.update",
        ("DELETE", ["admin", "workspaces", _, "users", _]) => "workspace_users.delete",
        _ => return None,
    };
    Some(scope)
}

fn route(
    inner: &Arc<Inner>,
    quirks: &Quirks,
    method: &Method,
    path: &str,
    q: &Query,
    body: &Value,
) -> Result<Value, Routed> {
    let segs = api_segments(path);
    let max = inner.max_page_size;
    let m = method.as_str();
    let mut st = lock(&inner.state);
    let out = match (m, segs.as_slice()) {
        ("GET", ["admin", "users"]) => st.list_users(q, max, quirks),
        ("GET", ["admin", "users", "invites"]) => st.list_invites(q, max, quirks),
        ("POST", ["admin", "users", "invites"]) => {
            let (v, id) = st.create_invite(body)?;
            drop(st);
            schedule_auto_accept(inner, vec![id]);
            return Ok(v);
        }
        ("GET", ["admin", "users", "invites", id]) => st.get_invite(id),
        ("DELETE", ["admin", "users", "invites", id]) => st.delete_invite(id),
        ("POST", ["admin", "users", "invites", id, "resend"]) => st.resend_invite(id),
        ("GET", ["admin", "users", id]) => st.get_user(id),
        ("PUT", ["admin", "users", id]) => st.update_user(id, body),
        ("DELETE", ["admin", "users", id]) => st.delete_user(id),
        ("GET", ["admin", "workspaces"]) => st.list_workspaces(q, max),
        ("POST", ["admin", "workspaces"]) => st.create_workspace(body),
        ("GET", ["admin", "workspaces", ws]) => st.get_workspace(ws),
        ("PUT", ["admin", "workspaces", ws]) => st.update_workspace(ws, body),
        ("DELETE", ["admin", "workspaces", ws]) => st.delete_workspace(ws),
        ("GET", ["admin", "workspaces", ws, "users"]) => st.list_members(ws, q, max, quirks),
        ("POST", ["admin", "workspaces", ws, "users"]) => st.add_members(ws, body),
        ("GET", ["admin", "workspaces", ws, "users" | "members", u]) => st.get_member(ws, u),
        ("PUT", ["admin", "workspaces", ws, "users", u]) => st.update_member(ws, u, body),
        ("DELETE", ["admin", "workspaces", ws, "users", u]) => st.remove_member(ws, u),
        _ => return Err(Routed::NoRoute),
    };
    Ok(out?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimOptions;
    use tokio::sync::watch;

    /// Every route `route` serves needs a scope, every path it does not serve needs none,
    /// and every documented scope guards at least one route.
    #[test]
    fn scopes_follow_routes() {
        let (_tx, rx) = watch::channel(false);
        let inner = Arc::new(Inner::new(&SimOptions::default(), rx));
        let id = "00000000-0000-0000-0000-000000000000";
        let served = [
            (
                "GET",
                "/v1/admin/users".to_string(),
                "organisation_users.list",
            ),
            (
                "GET",
                format!("/v1/admin/users/{id}"),
                "organisation_users.read",
            ),
            (
                "PUT",
                format!("/v1/admin/users/{id}"),
                "organisation_users.update",
            ),
            (
                "DELETE",
                format!("/v1/admin/users/{id}"),
                "organisation_users.delete",
            ),
            (
                "GET",
                "/v1/admin/users/invites".into(),
                "organisation_users.list",
            ),
            (
                "POST",
                "/v1/admin/users/invites".into(),
                "organisation_users.create",
            ),
            (
                "GET",
                format!("/v1/admin/users/invites/{id}"),
                "organisation_users.read",
            ),
            (
                "DELETE",
                format!("/v1/admin/users/invites/{id}"),
                "organisation_users.delete",
            ),
            (
                "POST",
                format!("/v1/admin/users/invites/{id}/resend"),
                "organisation_users.create",
            ),
            ("GET", "/v1/admin/workspaces".into(), "workspaces.list"),
            ("POST", "/v1/admin/workspaces".into(), "workspaces.create"),
            ("GET", "/v1/admin/workspaces/ws-a".into(), "workspaces.read"),
            (
                "PUT",
                "/v1/admin/workspaces/ws-a".into(),
                "workspaces.update",
            ),
            (
                "DELETE",
                "/v1/admin/workspaces/ws-a".into(),
                "workspaces.delete",
            ),
            (
                "GET",
                "/v1/admin/workspaces/ws-a/users".into(),
                "workspace_users.list",
            ),
            (
                "POST",
                "/v1/admin/workspaces/ws-a/users".into(),
                "workspace_users.create",
            ),
            (
                "GET",
                format!("/v1/admin/workspaces/ws-a/users/{id}"),
                "workspace_users.read",
            ),
            (
                "GET",
                format!("/v1/admin/workspaces/ws-a/members/{id}"),
                "workspace_users.read",
            ),
            (
                "PUT",
                format!("/v1/admin/workspaces/ws-a/users/{id}"),
                "workspace_users.update",
            ),
            (
                "DELETE",
                format!("/v1/admin/workspaces/ws-a/users/{id}"),
                "workspace_users.delete",
            ),
        ];
        let q = Query::default();
        let quirks = Quirks::default();
        for (m, path, scope) in &served {
            let method = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
            assert_eq!(
                required_scope(&method, &api_segments(path)),
                Some(*scope),
                "{m} {path}"
            );
            let routed = route(&inner, &quirks, &method, path, &q, &Value::Null);
            assert!(!matches!(routed, Err(Routed::NoRoute)), "{m} {path}");
        }
        for scope in crate::ADMIN_API_SCOPES {
            assert!(served.iter().any(|(_, _, s)| *s == scope), "{scope} unused");
        }
        let unserved = [
            ("POST", "/v1/admin/users"),
            ("PUT", "/v1/admin/users/invites/x"),
            ("GET", "/v1/admin/users/invites/x/resend"),
            ("PATCH", "/v1/admin/workspaces/ws-a"),
            ("PUT", "/v1/admin/workspaces/ws-a/members/x"),
            ("GET", "/v1/nope"),
            ("GET", "/v1"),
        ];
        for (m, path) in unserved {
            let method = Method::from_bytes(m.as_bytes()).unwrap_or(Method::GET);
            assert_eq!(
                required_scope(&method, &api_segments(path)),
                None,
                "{m} {path}"
            );
            let routed = route(&inner, &quirks, &method, path, &q, &Value::Null);
            assert!(matches!(routed, Err(Routed::NoRoute)), "{m} {path}");
        }
    }

    #[test]
    fn patterns() {
        let post = Method::POST;
        assert!(pattern_matches(
            "POST /v1/admin/users/invites",
            &post,
            "/v1/admin/users/invites"
        ));
        assert!(pattern_matches(
            "post admin/users/invites",
            &post,
            "/v1/admin/users/invites/"
        ));
        assert!(pattern_matches(
            "POST /v1/admin/workspaces/{ws}/users",
            &post,
            "/v1/admin/workspaces/ws-a/users"
        ));
        assert!(!pattern_matches(
            "PUT /v1/admin/users/*",
            &post,
            "/v1/admin/users/x"
        ));
        assert!(!pattern_matches(
            "POST /v1/admin/users/*",
            &post,
            "/v1/admin/users/invites/x"
        ));
    }
}

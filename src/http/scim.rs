//! The SCIM 2.0 HTTP server: routes under the configured base path, bearer auth, content types,
//! and the one mapping from failures to SCIM Error responses.
//!
//! Routing is done by hand on the path after the base path, rather than with warp's static path
//! filters, because the base path comes from config and because every failure (wrong method,
//! body too large, unknown endpoint) must come out as a SCIM Error rather than a warp rejection.

use super::ratelimit::{Limits, Throttled};
use super::{body_with_limit, bounded, BodyError, LOG_FIELD_MAX};
use crate::scim::error::ScimError;
use crate::scim::filter::{self, AttrRef, Filter};
use crate::scim::projection;
use crate::scim::schema::ResourceKind;
use crate::scim::{discovery, list, patch, render, resource};
use crate::store::{Page, Query, Resource, Store, StoreError, WriteNotes};
use crate::token::TokenSet;
use bytes::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode};
use warp::{Filter as _, Reply};

pub const SCIM_CONTENT_TYPE: &str = "application/scim+json";

/// Everything a SCIM request handler needs.
#[derive(Clone)]
pub struct ScimState {
    pub store: Store,
    pub tokens: TokenSet,
    pub base_path: String,
    pub public_url: Option<String>,
    /// `http://ADDR` of the bound SCIM listener (see [`listen_origin`]): the base of `Location`
    /// and `meta.location` when `public_url` is not set. The `Host` header is never used for
    /// them, since any client can send any `Host` and the URLs end up stored by the IdP.
    pub listen_origin: Option<String>,
    pub max_body_bytes: u64,
    pub max_results: usize,
    /// Per-token and unauthenticated rate limits, checked in [`handle`] before the body is read.
    pub limits: Arc<Limits>,
    /// How long a request body may take to arrive (`[scim] body_read_timeout_ms`).
    pub body_read_timeout: std::time::Duration,
}

/// The origin of the SCIM listener as clients reach it without a proxy, from the address it is
/// bound to. `None` for a wildcard address (0.0.0.0, ::): no client connects to that as written,
/// so URLs are then given relative to the host (the base path), which a client resolves against
/// the URL it used.
pub fn listen_origin(addr: SocketAddr) -> Option<String> {
    if addr.ip().is_unspecified() {
        None
    } else {
        Some(format!("http://{addr}"))
    }
}

/// Longest method name written to the log: methods are client-chosen tokens of any length.
const LOG_METHOD_MAX: usize = 16;

/// A finished response: status, JSON body (or none), extra headers.
pub struct ScimReply {
    status: StatusCode,
    /// JSON, serialised.
    body: Option<Vec<u8>>,
    location: Option<String>,
    etag: Option<String>,
    www_authenticate: bool,
    /// `Retry-After` in seconds, on a 429.
    retry_after: Option<u64>,
    /// The request had no valid token: its log line comes out of a budget (see [`routes`]).
    unauthenticated: bool,
}

impl ScimReply {
    fn json(status: StatusCode, body: impl serde::Serialize) -> Self {
        Self::bytes(status, to_bytes(&body))
    }
    fn bytes(status: StatusCode, body: Vec<u8>) -> Self {
        Self {
            status,
            body: Some(body),
            location: None,
            etag: None,
            www_authenticate: false,
            retry_after: None,
            unauthenticated: false,
        }
    }
    fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: None,
            location: None,
            etag: None,
            www_authenticate: false,
            retry_after: None,
            unauthenticated: false,
        }
    }
    pub fn error(e: &ScimError) -> Self {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = Self::json(status, e.to_json());
        r.www_authenticate = e.status == 401;
        r
    }
    /// A 429 with its `Retry-After`; `detail` names the limit and its config key.
    fn throttled(t: Throttled, detail: String) -> Self {
        let mut r = Self::error(&ScimError::new(429, None, detail));
        r.retry_after = Some(t.retry_after_secs);
        r
    }
    fn unauthenticated(mut self) -> Self {
        self.unauthenticated = true;
        self
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

/// A `Value` (or a page of them) always serialises, its keys being strings; were it ever not
/// to, the status still goes out and the log says why the body is empty.
fn to_bytes(v: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|e| {
        tracing::error!(error = %e, "SCIM answer body could not be serialised");
        Vec::new()
    })
}

impl Reply for ScimReply {
    fn into_response(self) -> warp::reply::Response {
        let has_body = self.body.is_some();
        let mut resp = warp::reply::Response::new(self.body.unwrap_or_default().into());
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        if has_body {
            h.insert("content-type", HeaderValue::from_static(SCIM_CONTENT_TYPE));
        }
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert("location", loc);
        }
        if let Some(tag) = self.etag.and_then(|t| HeaderValue::from_str(&t).ok()) {
            h.insert("etag", tag);
        }
        if self.www_authenticate {
            h.insert(
                "www-authenticate",
                HeaderValue::from_static("Bearer realm=\"scim-sync\""),
            );
        }
        if let Some(secs) = self.retry_after {
            h.insert("retry-after", HeaderValue::from(secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Only the store answers 503 (see `store_error`); Okta and Entra wait this long.
            h.insert(
                "retry-after",
                HeaderValue::from(crate::store::RETRY_AFTER_SECS),
            );
        }
        resp
    }
}

/// Maps a store failure to its SCIM answer. Internal details go to the log, not to the client.
fn store_error(e: StoreError) -> ScimError {
    match e {
        StoreError::NotFound { kind, id } => {
            ScimError::not_found(format!("{} {id} not found", kind.name()))
        }
        StoreError::Conflict {
            kind,
            attribute,
            value,
        } => ScimError::uniqueness(format!(
            "a {} with {attribute} '{value}' already exists (compared case-insensitively, \
             inactive users included)",
            kind.name().to_lowercase()
        )),
        StoreError::PreconditionFailed { if_match, current } => ScimError::precondition_failed(
            format!("If-Match {if_match} does not match the current version W/\"{current}\""),
        ),
        StoreError::MissingAttribute { attribute, .. } => {
            ScimError::invalid_value(format!("{attribute} is required"))
        }
        e if e.is_unavailable() => {
            tracing::error!(error = %e, "store unavailable");
            ScimError::new(503, None, "the store is unavailable; retry later")
        }
        other => {
            tracing::error!(error = %other, "store failure");
            ScimError::internal("internal storage error; see the server log")
        }
    }
}

/// The warp filter that serves SCIM: takes every request and dispatches it.
pub fn routes(
    state: Arc<ScimState>,
) -> impl warp::Filter<Extract = (ScimReply,), Error = std::convert::Infallible> + Clone {
    if state.public_url.is_none() && state.listen_origin.is_none() {
        tracing::warn!(
            "[scim] public_url is not set and the SCIM listener has no address clients can use \
             as written (wildcard bind): Location and meta.location are relative URLs. \
             Set [scim] public_url to the URL the IdP is given"
        );
    }
    warp::method()
        .and(warp::path::full())
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<super::serve::Peer>())
        .and(warp::body::stream())
        .and(warp::any().map(move || state.clone()))
        .then(
            |method: Method,
             path: warp::path::FullPath,
             query: String,
             headers: HeaderMap,
             peer: Option<super::serve::Peer>,
             body,
             state: Arc<ScimState>| async move {
                let started = Instant::now();
                let path = path.as_str();
                let reply = handle(&state, &method, path, &query, &headers, body).await;
                let route = route_label(path, &state.base_path);
                let status = reply.status.as_u16();
                let m = crate::metrics::metrics();
                m.scim_requests
                    .get_or_create(&crate::metrics::ScimLabels {
                        route,
                        method: crate::metrics::method_label(method.as_str()),
                        status,
                    })
                    .inc();
                m.scim_request_duration
                    .get_or_create(&crate::metrics::RouteLabels { route })
                    .observe(started.elapsed().as_secs_f64());
                // Without a valid token, a request is logged out of a budget of a few lines a
                // minute, so a flood cannot fill the disk; the metrics above count every one.
                let mut unlogged = 0;
                if reply.unauthenticated {
                    match state.limits.refusal_log() {
                        Some(n) => unlogged = n,
                        None => return reply,
                    }
                }
                // Path and method are cut to a bounded prefix: a tokenless client chooses them and
                // can send them as fast as we answer 401. The query string is not logged at all:
                // filters carry user names and email addresses.
                // `client` is the proxy's X-Forwarded-For only for a trusted proxy (serve.rs).
                let client = peer.map_or_else(|| "-".to_string(), |p| p.client.to_string());
                let peer = peer.map_or_else(|| "-".to_string(), |p| p.tcp.to_string());
                let method = bounded(method.as_str(), LOG_METHOD_MAX);
                let path = bounded(path, LOG_FIELD_MAX);
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if unlogged > 0 {
                    tracing::warn!(
                        target: "scim_sync::scim",
                        unlogged,
                        "scim requests without a valid token were not logged since the last such \
                         line (at most {} lines a minute); see scim_sync_scim_requests",
                        super::ratelimit::REFUSAL_LOG_LINES_PER_MINUTE
                    );
                }
                if reply.unauthenticated && status == 429 {
                    tracing::warn!(
                        target: "scim_sync::scim",
                        %peer, %method, %path, status, ms,
                        "scim request refused: too many requests without a valid bearer token"
                    );
                } else if status == 401 {
                    tracing::warn!(
                        target: "scim_sync::scim",
                        %client, %peer, %method, %path, status, ms,
                        "scim request refused: missing or invalid bearer token"
                    );
                } else {
                    tracing::info!(
                        target: "scim_sync::scim",
                        %client, %peer, %method, %path, status, ms,
                        "scim request"
                    );
                }
                reply
            },
        )
        .recover(super::recover_scim)
        .unify()
}

async fn handle<S, B>(
    state: &ScimState,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: S,
) -> ScimReply
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin + Send,
    B: bytes::Buf,
{
    // Limits come before anything else is done for the request: the body is not read and the
    // store is not touched for a request over its limit.
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let token = state.tokens.position_of_header(auth);
    let limited = match token {
        Some(i) => state
            .limits
            .check_token(i)
            .map_err(|t| token_throttled(state, i, t)),
        None => state
            .limits
            .check_unauthenticated()
            .map_err(unauthenticated_throttled),
    };
    if let Err(reply) = limited {
        return reply;
    }
    let Some(rest) = after_base(path, &state.base_path) else {
        let reply = ScimReply::error(&ScimError::not_found(format!(
            "no SCIM endpoint at {}; the base path is {}",
            bounded(path, LOG_FIELD_MAX),
            if state.base_path.is_empty() {
                "/"
            } else {
                &state.base_path
            }
        )));
        return if token.is_some() {
            reply
        } else {
            reply.unauthenticated()
        };
    };
    if token.is_none() {
        return ScimReply::error(&ScimError::unauthorized(
            "missing or invalid bearer token (send Authorization: Bearer <token>)",
        ))
        .unauthenticated();
    }
    let segs = segments(rest);
    let body = match body_with_limit(body, state.max_body_bytes, state.body_read_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return ScimReply::error(&ScimError::payload_too_large(format!(
                "request body is larger than the configured limit of {} bytes ([scim] max_body_bytes)",
                state.max_body_bytes
            )))
        }
        Err(BodyError::Read(e)) => {
            return ScimReply::error(&ScimError::invalid_syntax(format!("could not read the request body: {e}")))
        }
        Err(BodyError::TimedOut) => {
            return ScimReply::error(&ScimError::new(408, None, format!(
                "the request body did not arrive within {} ms ([scim] body_read_timeout_ms)",
                state.body_read_timeout.as_millis()
            )))
        }
    };
    let req = Request {
        state,
        method,
        query: parse_query(query),
        if_match: headers
            .get("if-match")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body,
    };
    match dispatch(&req, &segs).await {
        Ok(r) => r,
        Err(e) => ScimReply::error(&e),
    }
}

fn token_throttled(state: &ScimState, token: usize, t: Throttled) -> ScimReply {
    crate::metrics::metrics()
        .scim_rate_limited
        .get_or_create(&crate::metrics::RateLimitLabels { limit: "token" })
        .inc();
    let (rate, burst) = state
        .limits
        .token_limit()
        .map_or((0, 0), |l| (l.per_second.get(), l.burst.get()));
    if state.limits.report_throttled(token) {
        tracing::warn!(
            target: "scim_sync::scim",
            token = %state.tokens.fingerprint(token).unwrap_or_default(),
            rate, burst, retry_after = t.retry_after_secs,
            "a SCIM token is over its rate limit: answering 429 with Retry-After. If this is \
             the IdP's normal pace, raise [scim] rate_limit_per_second / rate_limit_burst \
             (reported once a minute at most)"
        );
    }
    ScimReply::throttled(
        t,
        format!(
            "this token is over its rate limit of {rate} requests per second (burst {burst}), \
             set by [scim] rate_limit_per_second and [scim] rate_limit_burst; retry after {} s",
            t.retry_after_secs
        ),
    )
}

fn unauthenticated_throttled(t: Throttled) -> ScimReply {
    crate::metrics::metrics()
        .scim_rate_limited
        .get_or_create(&crate::metrics::RateLimitLabels {
            limit: "unauthenticated",
        })
        .inc();
    ScimReply::throttled(
        t,
        format!(
            "too many requests without a valid bearer token: they share a fixed limit of {} per \
             second (not configurable); send Authorization: Bearer <token>, or retry after {} s",
            super::ratelimit::UNAUTHENTICATED_PER_SECOND,
            t.retry_after_secs
        ),
    )
    .unauthenticated()
}

/// The metrics route: one of [`crate::metrics::SCIM_ROUTES`], whatever the path. Names are
/// matched case-insensitively (as [`dispatch`] does) and only the first three segments are
/// looked at, so neither the path's length nor its spelling adds a label.
fn route_label(path: &str, base: &str) -> &'static str {
    let Some(rest) = after_base(path, base) else {
        return "other";
    };
    let mut segs = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy());
    let (first, second) = (segs.next(), segs.next());
    if segs.next().is_some() {
        return "other";
    }
    let is = |seg: &str, name: &str| seg.eq_ignore_ascii_case(name);
    match (first.as_deref(), second.as_deref()) {
        (Some(a), None) if is(a, "users") => "/Users",
        (Some(a), None) if is(a, "groups") => "/Groups",
        (Some(a), None) if is(a, ".search") => "/.search",
        (Some(a), None) if is(a, "serviceproviderconfig") => "/ServiceProviderConfig",
        (Some(a), None) if is(a, "resourcetypes") => "/ResourceTypes",
        (Some(a), None) if is(a, "schemas") => "/Schemas",
        (Some(a), Some(b)) if is(a, "users") && is(b, ".search") => "/Users/.search",
        (Some(a), Some(_)) if is(a, "users") => "/Users/{id}",
        (Some(a), Some(b)) if is(a, "groups") && is(b, ".search") => "/Groups/.search",
        (Some(a), Some(_)) if is(a, "groups") => "/Groups/{id}",
        (Some(a), Some(_)) if is(a, "resourcetypes") => "/ResourceTypes/{id}",
        (Some(a), Some(_)) if is(a, "schemas") => "/Schemas/{id}",
        _ => "other",
    }
}

/// The part of `path` after the base path, or `None` when the path is outside it.
fn after_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if base.is_empty() {
        return Some(path);
    }
    let head = path.get(..base.len())?;
    if !head.eq_ignore_ascii_case(base) {
        return None;
    }
    let rest = path.get(base.len()..)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The percent-decoded, non-empty segments of a path.
fn segments(rest: &str) -> Vec<String> {
    rest.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

/// The path segments after the base path, or `None` when the path is outside it.
#[cfg(test)]
fn strip_base(path: &str, base: &str) -> Option<Vec<String>> {
    after_base(path, base).map(segments)
}

/// Query parameters, form-decoded (`+` is a space, as Entra sends), keys lower-cased: RFC 7644
/// names them in camelCase but clients differ in case.
fn parse_query(raw: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(raw)
        .unwrap_or_else(|_| {
            // A raw `"` or other unencoded byte can defeat the strict decoder; decode by hand.
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    let dec = |s: &str| {
                        percent_encoding::percent_decode_str(&s.replace('+', " "))
                            .decode_utf8_lossy()
                            .into_owned()
                    };
                    (dec(k), dec(v))
                })
                .collect()
        })
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

struct Request<'a> {
    state: &'a ScimState,
    method: &'a Method,
    query: Vec<(String, String)>,
    if_match: Option<String>,
    body: Bytes,
}

impl Request<'_> {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The base of every URL we return (`Location`, `meta.location`, `$ref`): the configured
    /// public URL, else the listener's own address, else host-relative.
    fn base_url(&self) -> String {
        let st = self.state;
        match (&st.public_url, &st.listen_origin) {
            (Some(u), _) => u.clone(),
            (None, Some(origin)) => format!("{origin}{}", st.base_path),
            (None, None) => st.base_path.clone(),
        }
    }

    fn json_body(&self) -> Result<Value, ScimError> {
        if self.body.is_empty() {
            return Err(ScimError::invalid_syntax(
                "the request body is empty; a JSON object is required",
            ));
        }
        let v: Value = serde_json::from_slice(&self.body).map_err(|e| {
            ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(ScimError::invalid_syntax(
                "the request body must be a JSON object",
            ));
        }
        Ok(v)
    }
}

fn method_not_allowed(m: &Method, what: &str) -> ScimError {
    ScimError::method_not_allowed(format!("{m} is not supported on {what}"))
}

async fn dispatch(req: &Request<'_>, segs: &[String]) -> Result<ScimReply, ScimError> {
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let lower = |i: usize| seg(i).map(str::to_ascii_lowercase);
    let kind = match lower(0).as_deref() {
        Some("users") => Some(ResourceKind::User),
        Some("groups") => Some(ResourceKind::Group),
        _ => None,
    };
    let m = req.method;
    match (kind, segs.len()) {
        (Some(kind), 1) => match *m {
            Method::GET => list(req, kind, None).await,
            Method::POST => create(req, kind).await,
            _ => Err(method_not_allowed(m, kind.endpoint())),
        },
        (Some(kind), 2) if lower(1).as_deref() == Some(".search") => match *m {
            Method::POST => search(req, Some(kind)).await,
            _ => Err(method_not_allowed(m, ".search")),
        },
        (Some(kind), 2) => {
            let id = seg(1).unwrap_or_default().to_string();
            match *m {
                Method::GET => get_one(req, kind, &id),
                Method::PUT => replace(req, kind, id).await,
                Method::PATCH => patch_one(req, kind, id).await,
                Method::DELETE => delete(req, kind, id).await,
                _ => Err(method_not_allowed(m, kind.endpoint())),
            }
        }
        _ => match (lower(0).as_deref(), segs.len(), m) {
            (Some(".search"), 1, &Method::POST) => search(req, None).await,
            (Some("serviceproviderconfig"), 1, &Method::GET) => Ok(ScimReply::json(
                StatusCode::OK,
                discovery::service_provider_config(&req.base_url(), req.state.max_results),
            )),
            (Some("resourcetypes"), 1, &Method::GET) => Ok(ScimReply::json(
                StatusCode::OK,
                list::complete(discovery::resource_types(&req.base_url())),
            )),
            (Some("resourcetypes"), 2, &Method::GET) => {
                let want = seg(1).unwrap_or_default();
                discovery::resource_type(&req.base_url(), want)
                    .map(|rt| ScimReply::json(StatusCode::OK, rt))
                    .ok_or_else(|| ScimError::not_found(format!("no resource type {want}")))
            }
            (Some("schemas"), 1, &Method::GET) => Ok(ScimReply::json(
                StatusCode::OK,
                list::complete(discovery::schemas(&req.base_url())),
            )),
            (Some("schemas"), 2, &Method::GET) => {
                let want = seg(1).unwrap_or_default();
                discovery::schema(&req.base_url(), want)
                    .map(|s| ScimReply::json(StatusCode::OK, s))
                    .ok_or_else(|| ScimError::not_found(format!("no schema {want}")))
            }
            (Some("bulk"), _, _) => Err(ScimError::not_implemented(
                "Bulk is not supported (ServiceProviderConfig bulk.supported is false)",
            )),
            (Some("me"), _, _) => Err(ScimError::not_implemented("/Me is not supported")),
            (Some("serviceproviderconfig" | "resourcetypes" | "schemas"), _, _) if segs.len() <= 2 => {
                Err(method_not_allowed(m, "discovery endpoints"))
            }
            _ => Err(ScimError::not_found(format!(
                "no SCIM endpoint /{}; endpoints are /Users, /Groups, /ServiceProviderConfig, /ResourceTypes, /Schemas",
                bounded(&segs.join("/"), LOG_FIELD_MAX)
            ))),
        },
    }
}

// ---- projection helpers ---------------------------------------------------------------------

struct Projection {
    attributes: Vec<AttrRef>,
    excluded: Vec<AttrRef>,
}

impl Projection {
    fn from_strs(
        kind: ResourceKind,
        attributes: Option<&str>,
        excluded: Option<&str>,
    ) -> Result<Self, ScimError> {
        Ok(Self {
            attributes: match attributes {
                Some(s) if !s.trim().is_empty() => projection::parse_attr_list(s, kind)?,
                _ => Vec::new(),
            },
            excluded: match excluded {
                Some(s) if !s.trim().is_empty() => projection::parse_attr_list(s, kind)?,
                _ => Vec::new(),
            },
        })
    }

    fn from_query(req: &Request<'_>, kind: ResourceKind) -> Result<Self, ScimError> {
        Self::from_strs(
            kind,
            req.param("attributes"),
            req.param("excludedattributes"),
        )
    }

    fn is_default(&self) -> bool {
        self.attributes.is_empty() && self.excluded.is_empty()
    }

    fn wants_refs(&self, kind: ResourceKind) -> bool {
        let name = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        projection::wants_attr(kind, &self.attributes, &self.excluded, name)
    }

    fn apply(&self, kind: ResourceKind, doc: Value) -> Value {
        if self.is_default() {
            doc
        } else {
            projection::project(kind, &doc, &self.attributes, &self.excluded)
        }
    }
}

/// The full representation of a stored resource, as [`render::View`] writes it.
fn shown<'a>(res: &'a Resource, base_url: &'a str) -> render::View<'a> {
    render::View {
        kind: res.kind,
        id: &res.record.id,
        data: &res.record.data,
        created: &res.record.created,
        last_modified: &res.record.last_modified,
        version: res.record.version,
        refs: res.refs.as_deref(),
        base_url,
    }
}

fn render_failed(res: &Resource, e: &serde_json::Error) -> ScimError {
    ScimError::internal(format!(
        "cannot render {} {}: {e}",
        res.kind.name(),
        res.record.id
    ))
}

/// A resource in an answer: written as it is read, or, under a projection, the tree the
/// projection made.
enum Shown<'a> {
    View(render::View<'a>),
    Tree(Value),
}

impl serde::Serialize for Shown<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Shown::View(v) => v.serialize(s),
            Shown::Tree(t) => t.serialize(s),
        }
    }
}

/// A stored resource under a projection; without one it is written straight to bytes, so a
/// large group is never held as a tree of its members.
fn project<'a>(
    proj: &Projection,
    res: &'a Resource,
    base_url: &'a str,
) -> Result<Shown<'a>, ScimError> {
    let view = shown(res, base_url);
    if proj.is_default() {
        return Ok(Shown::View(view));
    }
    let tree = view.to_value().map_err(|e| render_failed(res, &e))?;
    Ok(Shown::Tree(proj.apply(res.kind, tree)))
}

/// One resource's answer, with its ETag.
fn one_resource(
    status: StatusCode,
    proj: &Projection,
    res: &Resource,
    base_url: &str,
) -> Result<ScimReply, ScimError> {
    let body =
        serde_json::to_vec(&project(proj, res, base_url)?).map_err(|e| render_failed(res, &e))?;
    let mut reply = ScimReply::bytes(status, body);
    reply.etag = Some(res.record.etag());
    Ok(reply)
}

fn log_notes(kind: ResourceKind, id: &str, notes: &WriteNotes) {
    if !notes.unknown_members.is_empty() {
        tracing::warn!(
            group = %id,
            resource = kind.name(),
            skipped = notes.unknown_members.len(),
            ids = ?notes.unknown_members.iter().take(20).collect::<Vec<_>>(),
            "group members that name no known user were skipped; the rest of the change was applied"
        );
    }
}

// ---- handlers -----------------------------------------------------------------------------

fn parse_index(name: &str, v: Option<&str>) -> Result<Option<i64>, ScimError> {
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            s.trim().parse::<i64>().map(Some).map_err(|_| {
                ScimError::invalid_value(format!("{name} must be an integer, got '{s}'"))
            })
        }
    }
}

struct ListParams {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
    attributes: Option<String>,
    excluded: Option<String>,
}

async fn list(
    req: &Request<'_>,
    kind: ResourceKind,
    _unused: Option<()>,
) -> Result<ScimReply, ScimError> {
    let params = ListParams {
        filter: req.param("filter").map(str::to_string),
        start_index: parse_index("startIndex", req.param("startindex"))?,
        count: parse_index("count", req.param("count"))?,
        attributes: req.param("attributes").map(str::to_string),
        excluded: req.param("excludedattributes").map(str::to_string),
    };
    run_list(req, kind, params).await
}

async fn run_list(
    req: &Request<'_>,
    kind: ResourceKind,
    p: ListParams,
) -> Result<ScimReply, ScimError> {
    run_query(req, &[kind], p).await
}

/// Lists one resource type, or several one after the other (a search at the root, RFC 7644
/// §3.4.3), paging over the concatenation. At the root, a filter naming an attribute one type
/// does not have simply matches nothing of that type; it is an error only if no type knows it.
async fn run_query(
    req: &Request<'_>,
    kinds: &[ResourceKind],
    p: ListParams,
) -> Result<ScimReply, ScimError> {
    let parsed: Option<Filter> = match p.filter.as_deref() {
        Some(f) if !f.trim().is_empty() => Some(filter::parse_filter(f)?),
        _ => None,
    };
    let mut applicable = Vec::new();
    let mut first_error = None;
    for &kind in kinds {
        match parsed.as_ref().map(|f| filter::validate(f, kind)) {
            Some(Err(e)) => {
                first_error.get_or_insert(e);
            }
            _ => applicable.push(kind),
        }
    }
    if applicable.is_empty() {
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let start_index = p.start_index.unwrap_or(1).max(1) as usize;
    let max = req.state.max_results;
    let count = match p.count {
        None => max,
        Some(c) if c < 0 => 0,
        Some(c) => (c as usize).min(max),
    };
    let base = req.base_url();
    let mut total = 0usize;
    let mut taken = 0usize;
    let mut pages: Vec<(Projection, Page)> = Vec::new();
    for kind in applicable {
        let proj = Projection::from_strs(kind, p.attributes.as_deref(), p.excluded.as_deref())?;
        // Where this type's slice of the concatenated result starts.
        let local_start = start_index.saturating_sub(total).max(1);
        let query = Query {
            filter: parsed.clone(),
            start_index: local_start,
            count: count - taken,
            with_refs: proj.wants_refs(kind),
        };
        let page = if query.is_point_lookup(kind) {
            // One index read and one record: cheaper than the trip to a blocking thread.
            req.state.store.query(kind, &query).map_err(store_error)?
        } else {
            let store = req.state.store.clone();
            tokio::task::spawn_blocking(move || store.query(kind, &query))
                .await
                .map_err(|e| ScimError::internal(format!("query task failed: {e}")))?
                .map_err(store_error)?
        };
        total += page.total;
        taken += page.items.len();
        pages.push((proj, page));
    }
    let mut resources = Vec::with_capacity(taken);
    for (proj, page) in &pages {
        for r in &page.items {
            resources.push(project(proj, r, &base)?);
        }
    }
    let body = serde_json::to_vec(&list::page(total, start_index, resources))
        .map_err(|e| ScimError::internal(format!("cannot render the list: {e}")))?;
    Ok(ScimReply::bytes(StatusCode::OK, body))
}

/// POST /.search (RFC 7644 §3.4.3): the same query, with parameters in the body.
async fn search(req: &Request<'_>, kind: Option<ResourceKind>) -> Result<ScimReply, ScimError> {
    let body = req.json_body()?;
    let get = |k: &str| {
        body.as_object().and_then(|o| {
            o.iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(k))
                .map(|(_, v)| v.clone())
        })
    };
    let as_list = |v: Option<Value>| -> Option<String> {
        match v? {
            Value::String(s) => Some(s),
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    };
    let as_int = |name: &str, v: Option<Value>| -> Result<Option<i64>, ScimError> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ScimError::invalid_value(format!("{name} must be an integer"))),
            Some(Value::String(s)) => parse_index(name, Some(&s)),
            Some(_) => Err(ScimError::invalid_value(format!(
                "{name} must be an integer"
            ))),
        }
    };
    let params = ListParams {
        filter: match get("filter") {
            Some(Value::String(s)) => Some(s),
            None | Some(Value::Null) => None,
            Some(_) => return Err(ScimError::invalid_filter("filter must be a string")),
        },
        start_index: as_int("startIndex", get("startIndex"))?,
        count: as_int("count", get("count"))?,
        attributes: as_list(get("attributes")),
        excluded: as_list(get("excludedAttributes")),
    };
    match kind {
        Some(kind) => run_list(req, kind, params).await,
        None => run_query(req, &[ResourceKind::User, ResourceKind::Group], params).await,
    }
}

fn get_one(req: &Request<'_>, kind: ResourceKind, id: &str) -> Result<ScimReply, ScimError> {
    let proj = Projection::from_query(req, kind)?;
    let res = req
        .state
        .store
        .get(kind, id, proj.wants_refs(kind))
        .map_err(store_error)?
        .ok_or_else(|| ScimError::not_found(format!("{} {id} not found", kind.name())))?;
    one_resource(StatusCode::OK, &proj, &res, &req.base_url())
}

/// Renders a written record the way GET would, with the member or group list.
fn written(
    req: &Request<'_>,
    kind: ResourceKind,
    id: &str,
    status: StatusCode,
) -> Result<ScimReply, ScimError> {
    let proj = Projection::from_query(req, kind)?;
    let res = req
        .state
        .store
        .get(kind, id, proj.wants_refs(kind))
        .map_err(store_error)?
        .ok_or_else(|| {
            ScimError::not_found(format!("{} {id} was deleted concurrently", kind.name()))
        })?;
    answer(req, &proj, &res, status)
}

/// A written resource's answer; a create's also says where the resource lives.
fn answer(
    req: &Request<'_>,
    proj: &Projection,
    res: &Resource,
    status: StatusCode,
) -> Result<ScimReply, ScimError> {
    let base = req.base_url();
    let mut reply = one_resource(status, proj, res, &base)?;
    if status == StatusCode::CREATED {
        reply.location = Some(format!("{base}{}/{}", res.kind.endpoint(), res.record.id));
    }
    Ok(reply)
}

async fn create(req: &Request<'_>, kind: ResourceKind) -> Result<ScimReply, ScimError> {
    let body = req.json_body()?;
    let n = resource::normalize(kind, &body)?;
    // A new user is in no group (a group can only list ids that existed when it was written),
    // and a group created without members has none, so the record just written is the whole
    // answer; reading it back would cost a read transaction per create for nothing.
    let no_refs = kind == ResourceKind::User || n.members.as_ref().is_none_or(Vec::is_empty);
    let proj = Projection::from_query(req, kind)?;
    let (record, notes) = req.state.store.create(kind, n).await.map_err(store_error)?;
    log_notes(kind, &record.id, &notes);
    if !no_refs {
        return written(req, kind, &record.id, StatusCode::CREATED);
    }
    let res = Resource {
        kind,
        refs: proj.wants_refs(kind).then(Vec::new),
        record,
    };
    answer(req, &proj, &res, StatusCode::CREATED)
}

async fn replace(
    req: &Request<'_>,
    kind: ResourceKind,
    id: String,
) -> Result<ScimReply, ScimError> {
    let body = req.json_body()?;
    let n = resource::normalize(kind, &body)?;
    let (record, notes) = req
        .state
        .store
        .replace(kind, id, n, req.if_match.clone())
        .await
        .map_err(store_error)?;
    log_notes(kind, &record.id, &notes);
    written(req, kind, &record.id, StatusCode::OK)
}

async fn patch_one(
    req: &Request<'_>,
    kind: ResourceKind,
    id: String,
) -> Result<ScimReply, ScimError> {
    let body = req.json_body()?;
    let ops = patch::parse_request(&body)?;
    let edit = move |data: &mut Value| patch::apply(kind, data, &ops);
    let (record, notes) = req
        .state
        .store
        .patch(kind, id, edit, req.if_match.clone())
        .await
        .map_err(store_error)??;
    log_notes(kind, &record.id, &notes);
    // Groups answer 204 (what Entra prefers, and what Okta accepts) unless the client asked for
    // a representation with attributes/excludedAttributes; users answer 200 with the resource,
    // which the Entra validator requires.
    let wants_body = req.param("attributes").is_some() || req.param("excludedattributes").is_some();
    if kind == ResourceKind::Group && !wants_body {
        let mut r = ScimReply::empty(StatusCode::NO_CONTENT);
        r.etag = Some(record.etag());
        return Ok(r);
    }
    written(req, kind, &record.id, StatusCode::OK)
}

async fn delete(req: &Request<'_>, kind: ResourceKind, id: String) -> Result<ScimReply, ScimError> {
    req.state
        .store
        .delete(kind, id, req.if_match.clone())
        .await
        .map_err(store_error)?;
    Ok(ScimReply::empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers as they were when the store chose them itself; clients and the conformance
    /// suites see these bodies.
    #[test]
    fn store_failures_keep_their_scim_answers() {
        use crate::scim::error::ScimType;
        let cases = [
            (
                StoreError::NotFound {
                    kind: ResourceKind::User,
                    id: "u1".into(),
                },
                (404, None, "User u1 not found"),
            ),
            (
                StoreError::Conflict {
                    kind: ResourceKind::User,
                    attribute: "userName",
                    value: "Bob@x.io".into(),
                },
                (
                    409,
                    Some(ScimType::Uniqueness),
                    "a user with userName 'Bob@x.io' already exists (compared \
                     case-insensitively, inactive users included)",
                ),
            ),
            (
                StoreError::Conflict {
                    kind: ResourceKind::Group,
                    attribute: "displayName",
                    value: "Eng".into(),
                },
                (
                    409,
                    Some(ScimType::Uniqueness),
                    "a group with displayName 'Eng' already exists (compared \
                     case-insensitively, inactive users included)",
                ),
            ),
            (
                StoreError::PreconditionFailed {
                    if_match: "W/\"1\", \"2\"".into(),
                    current: 3,
                },
                (
                    412,
                    None,
                    "If-Match W/\"1\", \"2\" does not match the current version W/\"3\"",
                ),
            ),
            (
                StoreError::MissingAttribute {
                    kind: ResourceKind::Group,
                    attribute: "displayName",
                },
                (400, Some(ScimType::InvalidValue), "displayName is required"),
            ),
            (
                StoreError::Unavailable("disk full".into()),
                (503, None, "the store is unavailable; retry later"),
            ),
            (
                StoreError::Corrupt("u1".into(), "bad json".into()),
                (500, None, "internal storage error; see the server log"),
            ),
        ];
        for (e, (status, scim_type, detail)) in cases {
            let what = format!("{e:?}");
            assert_eq!(
                store_error(e),
                ScimError::new(status, scim_type, detail),
                "{what}"
            );
        }
    }

    #[test]
    fn base_path_is_stripped_case_insensitively() {
        assert_eq!(
            strip_base("/scim/v2/Users", "/scim/v2"),
            Some(vec!["Users".to_string()])
        );
        assert_eq!(
            strip_base("/SCIM/v2/Users/a%20b", "/scim/v2"),
            Some(vec!["Users".into(), "a b".into()])
        );
        assert_eq!(strip_base("/scim/v22/Users", "/scim/v2"), None);
        assert_eq!(strip_base("/other", "/scim/v2"), None);
        assert_eq!(strip_base("/Users", ""), Some(vec!["Users".to_string()]));
    }

    #[test]
    fn route_labels_are_a_closed_set() {
        let base = "/scim/v2";
        for (path, want) in [
            ("/scim/v2/Users", "/Users"),
            ("/SCIM/v2/uSeRs/", "/Users"),
            ("/scim/v2/Users/abc", "/Users/{id}"),
            ("/scim/v2/users/.SEARCH", "/Users/.search"),
            ("/scim/v2/Users/%2Esearch", "/Users/.search"),
            ("/scim/v2/Groups/x", "/Groups/{id}"),
            ("/scim/v2/groups/.search", "/Groups/.search"),
            ("/scim/v2/.search", "/.search"),
            ("/scim/v2/serviceproviderconfig", "/ServiceProviderConfig"),
            ("/scim/v2/ResourceTypes", "/ResourceTypes"),
            ("/scim/v2/resourcetypes/User", "/ResourceTypes/{id}"),
            ("/scim/v2/Schemas", "/Schemas"),
            ("/scim/v2/schemas/urn:x", "/Schemas/{id}"),
            ("/scim/v2/Users/a/b", "other"),
            ("/scim/v2/ServiceProviderConfig/x", "other"),
            ("/scim/v2/Bulk", "other"),
            ("/scim/v2", "other"),
            ("/scim/v2/", "other"),
            ("/elsewhere/Users", "other"),
            ("/scim/v22/Users", "other"),
        ] {
            assert_eq!(route_label(path, base), want, "{path}");
            assert!(crate::metrics::SCIM_ROUTES.contains(&want), "{want}");
        }
        let long = format!("/scim/v2/Users{}", "/a".repeat(20_000));
        assert_eq!(route_label(&long, base), "other");
        assert_eq!(route_label("/Users/1", ""), "/Users/{id}");
    }

    #[test]
    fn listen_origin_is_the_bound_address_unless_wildcard() {
        let origin = |a: &str| listen_origin(a.parse().unwrap_or_else(|e| panic!("{a}: {e}")));
        assert_eq!(
            origin("127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(origin("[::1]:8080").as_deref(), Some("http://[::1]:8080"));
        assert_eq!(origin("0.0.0.0:8080"), None);
        assert_eq!(origin("[::]:8080"), None);
    }

    #[test]
    fn query_decodes_plus_and_raw_quotes() {
        let q = parse_query("filter=userName+eq+%22a%40b.c%22&startIndex=1");
        assert_eq!(q[0], ("filter".into(), "userName eq \"a@b.c\"".into()));
        assert_eq!(q[1], ("startindex".into(), "1".into()));
        let q = parse_query("filter=userName+eq+\"dale%40x.com\"");
        assert_eq!(q[0].1, "userName eq \"dale@x.com\"");
    }
}

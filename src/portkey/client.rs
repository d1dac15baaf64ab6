//! The HTTP client: one [`Client`] per control plane, shared by clone.
//!
//! Every call goes through the same attempt loop: rate limit → in-flight slot → request with a
//! timeout → classify → back off and retry while the error is transient and the give-up time
//! allows. Writes that the API does not make idempotent carry their own rule for what to do when
//! an earlier attempt may have been applied; each write's rustdoc states it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::{Bytes, BytesMut};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::config::{ClientConfig, RetryConfig};
use super::error::{Error, ErrorKind, Result};
use super::limit::RateLimiter;
use super::types::{
    CreateInvite, CreateWorkspace, CreatedInvite, Invite, InviteFilter, InviteStatus, ListPage,
    MemberFilter, NewMember, OrgRole, User, UserFilter, Workspace, WorkspaceFilter,
    WorkspaceMember, WorkspaceRole,
};

const API_KEY_HEADER: &str = "x-portkey-api-key";

/// Error bodies are only read for Portkey's small error envelope; a proxy's page beyond this is
/// cut rather than refused, so the status still decides whether to retry.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// Path-segment encoding: ids are opaque strings, and one with a `/` or `?` must not change
/// which resource a request addresses.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Typed client of the Portkey Admin API. Cheap to clone; clones share the connection pool, the
/// in-flight bound and the rate limit.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    /// Base URL without a trailing slash; endpoint paths start with one.
    base: String,
    cfg: ClientConfig,
    max_response_bytes: usize,
    in_flight: Semaphore,
    rate: RateLimiter,
}

/// Which query names a list endpoint pages with (spec §3, §6.9): users and invites use
/// camelCase, workspaces and members snake_case.
#[derive(Debug, Clone, Copy)]
enum Paging {
    Camel,
    Snake,
}

impl Paging {
    fn params(self) -> (&'static str, &'static str) {
        match self {
            Self::Camel => ("pageSize", "currentPage"),
            Self::Snake => ("page_size", "current_page"),
        }
    }
}

/// One request, ready to be sent any number of times.
#[derive(Debug)]
struct Req {
    method: Method,
    /// Encoded path below the base, e.g. `/admin/users/61e0…`; also the call's name in errors
    /// and logs (the query is left out of both: it can hold email addresses).
    path: String,
    url: Url,
    body: Option<Bytes>,
}

impl Req {
    fn call(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Whether a failed attempt may have changed server state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    /// The request never reached the application (connect error, 429).
    No,
    /// Timeout, broken connection or 5xx after the request was sent.
    Maybe,
}

/// A failed attempt, before it becomes an [`Error`].
#[derive(Debug)]
struct Failure {
    kind: ErrorKind,
    applied: Applied,
    retry_after: Option<Duration>,
}

impl Failure {
    fn into_error(self, req: &Req, attempts: u32) -> Error {
        Error::new(req.call(), attempts, self.kind)
    }

    fn to_error(&self, req: &Req, attempts: u32) -> Error {
        Error::new(req.call(), attempts, self.kind.clone())
    }
}

/// Backoff state of one call. `backon` gives the exponential schedule (initial wait, growth,
/// cap); the jitter is applied here as `interval * (1 ± randomization_factor)`, because
/// `backon`'s own jitter only ever lengthens a wait (up to double) and has no factor. The give-up
/// time is measured on tokio's clock, so that paused-time tests see the production schedule.
struct Retrier {
    schedule: ExponentialBackoff,
    randomization_factor: f64,
    started: Instant,
    give_up: Duration,
    attempts: u32,
}

impl Retrier {
    fn new(cfg: &RetryConfig) -> Self {
        let schedule = ExponentialBuilder::new()
            .with_min_delay(cfg.initial_interval)
            .with_max_delay(cfg.max_interval)
            // `ClientConfig::validate` keeps the multiplier at 1 or more; f32 is backon's type.
            .with_factor(cfg.multiplier as f32)
            .without_max_times()
            .with_total_delay(None)
            .build();
        Self {
            schedule,
            randomization_factor: cfg.randomization_factor,
            started: Instant::now(),
            give_up: cfg.max_elapsed,
            attempts: 0,
        }
    }

    /// The next wait of the schedule with jitter applied.
    fn next_backoff(&mut self) -> Option<Duration> {
        let interval = self.schedule.next()?;
        let f = self.randomization_factor;
        let scale = 1.0 - f + 2.0 * f * rand::thread_rng().gen::<f64>();
        // A factor outside 0..=1 is refused by `ClientConfig::validate`; should one get here, the
        // wait stays unjittered rather than becoming negative or infinite.
        Some(Duration::try_from_secs_f64(interval.as_secs_f64() * scale).unwrap_or(interval))
    }

    fn next_attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    /// Sleeps before the next attempt, or returns false when the give-up time would pass first.
    /// A `Retry-After` wins over a shorter backoff: the server said when it is worth asking again.
    async fn pause(&mut self, failure: &Failure) -> bool {
        let Some(mut wait) = self.next_backoff() else {
            return false;
        };
        if let Some(after) = failure.retry_after {
            wait = wait.max(after);
        }
        if self.started.elapsed() + wait > self.give_up {
            return false;
        }
        tracing::debug!(
            wait_ms = wait.as_millis() as u64,
            attempt = self.attempts,
            "portkey: retrying after {}",
            failure.kind
        );
        tokio::time::sleep(wait).await;
        true
    }
}

fn segment(what: &str, id: &str) -> Result<String> {
    // An empty id would address the collection (`DELETE /admin/users/`), and dot segments are
    // resolved by URL parsing; neither may reach the server.
    if id.is_empty() || id == "." || id == ".." {
        return Err(Error::new(
            format!("{what} {id:?}"),
            0,
            ErrorKind::InvalidRequest(format!("{what} id {id:?} is not usable in a path")),
        ));
    }
    Ok(utf8_percent_encode(id, SEGMENT).to_string())
}

fn reqwest_detail(e: reqwest::Error) -> String {
    // The URL is left out: its query can hold email addresses. Sources carry the useful part
    // ("connection refused", "operation timed out").
    let e = e.without_url();
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    detail
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What one exchange produced, before it is classified.
enum Answer {
    Body {
        status: StatusCode,
        retry_after: Option<Duration>,
        body: Bytes,
    },
    Redirect {
        status: StatusCode,
        location: Option<String>,
    },
    TooLarge {
        status: StatusCode,
    },
}

/// An exchange's outcome as the retry loop sees it: a body, or a failure saying whether the
/// request may have been applied and whether to wait before trying again.
fn classify(
    answer: std::result::Result<
        std::result::Result<Answer, reqwest::Error>,
        tokio::time::error::Elapsed,
    >,
    timeout: Duration,
    limit: usize,
) -> std::result::Result<(StatusCode, Bytes), Failure> {
    match answer {
        Err(_) => Err(Failure {
            kind: ErrorKind::Timeout(timeout),
            applied: Applied::Maybe,
            retry_after: None,
        }),
        Ok(Err(e)) if e.is_connect() => Err(Failure {
            kind: ErrorKind::Connect(reqwest_detail(e)),
            applied: Applied::No,
            retry_after: None,
        }),
        Ok(Err(e)) if e.is_timeout() => Err(Failure {
            kind: ErrorKind::Timeout(timeout),
            applied: Applied::Maybe,
            retry_after: None,
        }),
        Ok(Err(e)) => Err(Failure {
            kind: ErrorKind::Network(reqwest_detail(e)),
            applied: Applied::Maybe,
            retry_after: None,
        }),
        // Whatever the server did with the request, it is not worth sending again: the
        // next answer would be the same.
        Ok(Ok(Answer::Redirect { status, location })) => Err(Failure {
            kind: ErrorKind::Redirect {
                status: status.as_u16(),
                location,
            },
            applied: Applied::Maybe,
            retry_after: None,
        }),
        Ok(Ok(Answer::TooLarge { status })) => Err(Failure {
            kind: ErrorKind::TooLarge {
                status: status.as_u16(),
                limit,
            },
            applied: Applied::Maybe,
            retry_after: None,
        }),
        Ok(Ok(Answer::Body {
            status,
            retry_after,
            body,
        })) => {
            if status.is_success() {
                Ok((status, body))
            } else {
                let honour = status == StatusCode::TOO_MANY_REQUESTS
                    || status == StatusCode::SERVICE_UNAVAILABLE;
                Err(Failure {
                    kind: ErrorKind::from_response(status.as_u16(), &body),
                    // A 429 is the rate limiter refusing before the handler runs.
                    applied: if status == StatusCode::TOO_MANY_REQUESTS {
                        Applied::No
                    } else {
                        Applied::Maybe
                    },
                    retry_after: retry_after.filter(|_| honour),
                })
            }
        }
    }
}

/// The call's metric and its one log line (reads at debug, writes at info, failures at warn).
fn record_call(
    req: &Req,
    attempt: u32,
    started: Instant,
    result: &std::result::Result<(StatusCode, Bytes), Failure>,
) {
    let duration_ms = started.elapsed().as_millis() as u64;
    let method = req.method.as_str();
    let path = req.path.as_str();
    let status_label = match result {
        Ok((status, _)) => status.as_u16().to_string(),
        Err(f) => match &f.kind {
            ErrorKind::Status { status, .. } | ErrorKind::Redirect { status, .. } => {
                status.to_string()
            }
            ErrorKind::TooLarge { .. } => "too_large".into(),
            ErrorKind::Timeout(_) => "timeout".into(),
            ErrorKind::Connect(_) => "connect_error".into(),
            _ => "error".into(),
        },
    };
    crate::metrics::metrics()
        .portkey_calls
        .get_or_create(&crate::metrics::CallLabels {
            endpoint: crate::metrics::endpoint_label(method, path),
            status: status_label,
        })
        .inc();
    if attempt > 1 {
        crate::metrics::metrics().portkey_retries.inc();
    }
    match result {
        Ok((status, _)) if req.method == Method::GET => tracing::debug!(
            method,
            path,
            status = status.as_u16(),
            attempt,
            duration_ms,
            "portkey call"
        ),
        Ok((status, _)) => tracing::info!(
            method,
            path,
            status = status.as_u16(),
            attempt,
            duration_ms,
            "portkey call"
        ),
        Err(f) => {
            let status = match &f.kind {
                ErrorKind::Status { status, .. }
                | ErrorKind::Redirect { status, .. }
                | ErrorKind::TooLarge { status, .. } => *status,
                _ => 0,
            };
            tracing::warn!(
                method,
                path,
                status,
                attempt,
                duration_ms,
                error = %f.kind,
                "portkey call failed"
            );
        }
    }
}

/// Longest `Location` kept in an error; the header is the server's text, not ours.
const MAX_LOCATION_CHARS: usize = 200;

/// The redirect's target for the error message. The query and fragment are left out: a
/// redirect may echo our query, which can hold email addresses.
fn redirect_target(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(LOCATION)?;
    let Ok(text) = raw.to_str() else {
        return Some("(a Location that is not text)".to_owned());
    };
    let target = text.split(['?', '#']).next().unwrap_or_default().trim();
    Some(target.chars().take(MAX_LOCATION_CHARS).collect())
}

/// The body, or `None` as soon as it is known to exceed `limit`; nothing past the limit is
/// buffered, whatever the server announces or sends.
async fn read_capped(
    resp: &mut reqwest::Response,
    limit: usize,
) -> std::result::Result<Option<Bytes>, reqwest::Error> {
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
    {
        return Ok(None);
    }
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        if chunk.len() > limit - buf.len() {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Some(buf.freeze()))
}

/// At most `limit` bytes of the body; the rest is left unread.
async fn read_truncated(
    resp: &mut reqwest::Response,
    limit: usize,
) -> std::result::Result<Bytes, reqwest::Error> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - buf.len();
        if chunk.len() >= room {
            buf.extend_from_slice(&chunk[..room]);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn decode<T: DeserializeOwned>(req: &Req, attempts: u32, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body)
        .map_err(|e| Error::new(req.call(), attempts, ErrorKind::Decode(e.to_string())))
}

impl Client {
    /// Cap on a response body used by [`Client::new`]. List pages hold at most a few hundred
    /// rows, far below it; it only bounds the memory a faulty or hostile server can claim.
    pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

    /// Builds a client; fails on a configuration [`ClientConfig::validate`] rejects or a key
    /// that cannot be sent as a header.
    pub fn new(cfg: ClientConfig) -> Result<Self> {
        Self::with_max_response_bytes(cfg, Self::DEFAULT_MAX_RESPONSE_BYTES)
    }

    /// As [`Client::new`], with another cap on response bodies: a success body longer than
    /// `max_response_bytes` fails the call with [`ErrorKind::TooLarge`] (not retried).
    pub fn with_max_response_bytes(cfg: ClientConfig, max_response_bytes: usize) -> Result<Self> {
        let invalid = |msg: String| Error::new("client setup", 0, ErrorKind::InvalidRequest(msg));
        cfg.validate().map_err(invalid)?;
        if max_response_bytes == 0 {
            return Err(invalid("max_response_bytes must be positive".to_owned()));
        }
        let mut key = HeaderValue::from_str(cfg.api_key.expose())
            .map_err(|_| invalid("api_key has characters not allowed in a header".to_owned()))?;
        // Keeps the value out of HTTP/2 header tables and of the header map's Debug output.
        key.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(API_KEY_HEADER, key);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("scim-sync/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(cfg.max_in_flight)
            // reqwest would follow redirects and strip only Authorization and Cookie, so the
            // API key header would go to whichever host the redirect names.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| invalid(format!("HTTP client: {}", reqwest_detail(e))))?;
        let base = cfg.base_url.trim_end_matches('/').to_owned();
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                max_response_bytes,
                in_flight: Semaphore::new(cfg.max_in_flight),
                rate: RateLimiter::new(cfg.requests_per_second),
                cfg,
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.cfg
    }

    pub fn max_response_bytes(&self) -> usize {
        self.inner.max_response_bytes
    }

    // ---- users -------------------------------------------------------------------------------

    /// `GET /admin/users`, every page. With `filter.email` set this is the targeted lookup of
    /// one person (the API matches the email exactly).
    pub async fn list_users(&self, filter: &UserFilter) -> Result<Vec<User>> {
        let mut query = Vec::new();
        push_opt(&mut query, "email", filter.email.as_deref());
        push_opt(
            &mut query,
            "role",
            filter.role.as_ref().map(OrgRole::as_str),
        );
        self.list_all(
            "/admin/users".to_owned(),
            Paging::Camel,
            query,
            |u: &User| u.id.clone(),
        )
        .await
    }

    /// `GET /admin/users/{id}`. A missing user is an error with [`Error::is_not_found`].
    pub async fn get_user(&self, user_id: &str) -> Result<User> {
        let req = self.req(
            Method::GET,
            format!("/admin/users/{}", segment("user", user_id)?),
            &[],
            None::<&()>,
        )?;
        let (body, attempts) = self.run(&req).await?;
        decode(&req, attempts, &body)
    }

    /// `PUT /admin/users/{id}` `{"role"}`: change the org role (`admin` or `member`).
    ///
    /// Retry rule: retried on transient errors. After an attempt that may have been applied
    /// (timeout, broken connection, 5xx), the user is re-read before resending: if the role is
    /// already `role`, the call succeeded. The API rejects a PUT of the role the user already
    /// has (spec §3.1), so a 4xx rejection of a resend after such an attempt is checked the same
    /// way; only if the role is not in place is the rejection returned.
    pub async fn update_user_role(&self, user_id: &str, role: &OrgRole) -> Result<()> {
        let req = self.req(
            Method::PUT,
            format!("/admin/users/{}", segment("user", user_id)?),
            &[],
            Some(&RoleBody {
                role: role.as_str(),
            }),
        )?;
        self.put_role(&req, || async {
            Ok(self.get_user(user_id).await?.role == *role)
        })
        .await
    }

    /// `DELETE /admin/users/{id}`.
    ///
    /// Retry rule: retried on transient errors; a 404 "not found" answer to a retry after an
    /// attempt that may have been applied means the earlier attempt did it: success. A 403
    /// AB03 (which may mean "gone" or "forbidden") and a not-found on a first attempt are
    /// returned: the caller reads again before it calls the thing gone.
    pub async fn delete_user(&self, user_id: &str) -> Result<()> {
        let req = self.req(
            Method::DELETE,
            format!("/admin/users/{}", segment("user", user_id)?),
            &[],
            None::<&()>,
        )?;
        self.delete(&req).await
    }

    // ---- invites -----------------------------------------------------------------------------

    /// `GET /admin/users/invites`, every page.
    pub async fn list_invites(&self, filter: &InviteFilter) -> Result<Vec<Invite>> {
        let mut query = Vec::new();
        push_opt(&mut query, "email", filter.email.as_deref());
        push_opt(
            &mut query,
            "role",
            filter.role.as_ref().map(OrgRole::as_str),
        );
        push_opt(
            &mut query,
            "status",
            filter.status.as_ref().map(InviteStatus::as_str),
        );
        self.list_all(
            "/admin/users/invites".to_owned(),
            Paging::Camel,
            query,
            |i: &Invite| i.id.clone(),
        )
        .await
    }

    /// `POST /admin/users/invites`.
    ///
    /// Retry rule: never sent twice blindly. After an attempt whose outcome is unknown (timeout,
    /// broken connection, 5xx), the pending invites for the email are listed; if one exists it
    /// is returned (without `invite_link`, which lists do not carry) and nothing is re-sent;
    /// otherwise the create is retried. A 409 after such an attempt is resolved the same way.
    /// Connect errors and 429 are retried directly: the server did not act. If the check read
    /// fails, the error is [`ErrorKind::Unverified`] (transient).
    pub async fn create_invite(&self, invite: &CreateInvite) -> Result<CreatedInvite> {
        let req = self.req(
            Method::POST,
            "/admin/users/invites".to_owned(),
            &[],
            Some(invite),
        )?;
        self.create_checked(
            &req,
            || async {
                Ok(self
                    .find_pending_invite(&invite.email)
                    .await?
                    .map(|i| CreatedInvite {
                        id: i.id,
                        invite_link: None,
                    }))
            },
            |body, attempts| decode(&req, attempts, body),
        )
        .await
    }

    /// `DELETE /admin/users/invites/{id}` (revoke).
    ///
    /// Retry rule: as [`Client::delete_user`].
    pub async fn delete_invite(&self, invite_id: &str) -> Result<()> {
        let req = self.req(
            Method::DELETE,
            format!("/admin/users/invites/{}", segment("invite", invite_id)?),
            &[],
            None::<&()>,
        )?;
        self.delete(&req).await
    }

    /// `POST /admin/users/invites/{id}/resend`; returns the new invite link when the server
    /// sends one.
    ///
    /// Retry rule: retried on transient errors even when an attempt may have been applied: the
    /// worst case is a second copy of the same invitation email, which creates nothing.
    pub async fn resend_invite(&self, invite_id: &str) -> Result<Option<String>> {
        #[derive(Deserialize)]
        struct Resent {
            #[serde(default, rename = "inviteLink", alias = "invite_link")]
            invite_link: Option<String>,
        }
        let req = self.req(
            Method::POST,
            format!(
                "/admin/users/invites/{}/resend",
                segment("invite", invite_id)?
            ),
            &[],
            None::<&()>,
        )?;
        let (body, attempts) = self.run(&req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        Ok(decode::<Resent>(&req, attempts, &body)?.invite_link)
    }

    /// The pending invite for `email` (compared case-insensitively), if any.
    pub async fn find_pending_invite(&self, email: &str) -> Result<Option<Invite>> {
        let invites = self
            .list_invites(&InviteFilter {
                email: Some(email.to_owned()),
                status: Some(InviteStatus::Pending),
                role: None,
            })
            .await?;
        Ok(invites
            .into_iter()
            .find(|i| i.status == InviteStatus::Pending && i.email.eq_ignore_ascii_case(email)))
    }

    // ---- workspaces --------------------------------------------------------------------------

    /// `GET /admin/workspaces`, every page. With `exact_name`, only workspaces with exactly that
    /// name are returned, whatever the server does with the parameter.
    pub async fn list_workspaces(&self, filter: &WorkspaceFilter) -> Result<Vec<Workspace>> {
        let mut query = Vec::new();
        push_opt(&mut query, "name", filter.name.as_deref());
        push_opt(&mut query, "exact_name", filter.exact_name.as_deref());
        let mut all = self
            .list_all(
                "/admin/workspaces".to_owned(),
                Paging::Snake,
                query,
                |w: &Workspace| w.id.clone(),
            )
            .await?;
        if let Some(exact) = &filter.exact_name {
            all.retain(|w| &w.name == exact);
        }
        Ok(all)
    }

    /// The workspace named exactly `name`, if any.
    pub async fn find_workspace_by_name(&self, name: &str) -> Result<Option<Workspace>> {
        let found = self
            .list_workspaces(&WorkspaceFilter {
                name: None,
                exact_name: Some(name.to_owned()),
            })
            .await?;
        Ok(found.into_iter().next())
    }

    /// `GET /admin/workspaces/{id}` (id or slug).
    pub async fn get_workspace(&self, workspace: &str) -> Result<Workspace> {
        let req = self.req(
            Method::GET,
            format!("/admin/workspaces/{}", segment("workspace", workspace)?),
            &[],
            None::<&()>,
        )?;
        let (body, attempts) = self.run(&req).await?;
        decode(&req, attempts, &body)
    }

    /// `POST /admin/workspaces`.
    ///
    /// Retry rule: like [`Client::create_invite`], with the check read being "list workspaces
    /// with this exact name": after an attempt whose outcome is unknown, an existing workspace
    /// of that name is returned instead of creating a second one.
    pub async fn create_workspace(&self, ws: &CreateWorkspace) -> Result<Workspace> {
        let req = self.req(Method::POST, "/admin/workspaces".to_owned(), &[], Some(ws))?;
        self.create_checked(
            &req,
            || self.find_workspace_by_name(&ws.name),
            |body, attempts| {
                // The 2024 API answered `{id}` only (spec §6.12); fill in what we sent.
                let mut value: serde_json::Value = decode(&req, attempts, body)?;
                if let Some(obj) = value.as_object_mut() {
                    obj.entry("name")
                        .or_insert_with(|| serde_json::Value::String(ws.name.clone()));
                }
                serde_json::from_value(value)
                    .map_err(|e| Error::new(req.call(), attempts, ErrorKind::Decode(e.to_string())))
            },
        )
        .await
    }

    // ---- workspace members -------------------------------------------------------------------

    /// `GET /admin/workspaces/{ws}/users`, every page.
    pub async fn list_members(
        &self,
        workspace: &str,
        filter: &MemberFilter,
    ) -> Result<Vec<WorkspaceMember>> {
        let mut query = Vec::new();
        push_opt(&mut query, "email", filter.email.as_deref());
        push_opt(
            &mut query,
            "role",
            filter.role.as_ref().map(WorkspaceRole::as_str),
        );
        self.list_all(
            format!(
                "/admin/workspaces/{}/users",
                segment("workspace", workspace)?
            ),
            Paging::Snake,
            query,
            |m: &WorkspaceMember| m.id.clone(),
        )
        .await
    }

    /// `POST /admin/workspaces/{ws}/users` `{"users":[{id, role}]}`: bulk add. The users must
    /// be org members already. An empty list sends nothing.
    ///
    /// Retry rule: after an attempt whose outcome is unknown, the members are re-read and the
    /// users already present are dropped from the next attempt; when none is left, the call
    /// succeeded. (A user present with another role than asked is left for the next
    /// reconciliation diff: org owners and admins always read back as `admin`.) A 409 after such
    /// an attempt triggers the same re-read. Connect errors and 429 are retried as they are.
    pub async fn add_members(&self, workspace: &str, users: &[NewMember]) -> Result<()> {
        #[derive(Serialize)]
        struct Body<'a> {
            users: &'a [NewMember],
        }
        let path = format!(
            "/admin/workspaces/{}/users",
            segment("workspace", workspace)?
        );
        let mut remaining = users.to_vec();
        let mut retry = Retrier::new(&self.inner.cfg.retry);
        let mut uncertain = false;
        loop {
            if remaining.is_empty() {
                return Ok(());
            }
            let req = self.req(
                Method::POST,
                path.clone(),
                &[],
                Some(&Body { users: &remaining }),
            )?;
            let attempt = retry.next_attempt();
            let failure = match self.attempt(&req, attempt).await {
                Ok(_) => return Ok(()),
                Err(f) => f,
            };
            let recheck = if uncertain && failure.to_error(&req, attempt).is_conflict() {
                true
            } else if failure.kind.is_transient() && retry.pause(&failure).await {
                failure.applied == Applied::Maybe
            } else {
                return Err(failure.into_error(&req, attempt));
            };
            uncertain |= recheck;
            if recheck {
                let present: HashSet<String> =
                    match self.list_members(workspace, &MemberFilter::default()).await {
                        Ok(members) => members.into_iter().map(|m| m.id).collect(),
                        Err(e) => {
                            return Err(Error::new(
                                req.call(),
                                attempt,
                                ErrorKind::Unverified(e.to_string()),
                            ))
                        }
                    };
                let before = remaining.len();
                remaining.retain(|u| !present.contains(&u.id));
                tracing::info!(
                    call = %req.call(),
                    already_added = before - remaining.len(),
                    left = remaining.len(),
                    "portkey: re-read members after an uncertain bulk add"
                );
            }
        }
    }

    /// `PUT /admin/workspaces/{ws}/users/{user}` `{"role"}`.
    ///
    /// Retry rule: as [`Client::update_user_role`]; the check read is `GET
    /// /admin/workspaces/{ws}/users/{user}`. Org owners and admins always read back as
    /// `admin`, so for them only an `admin` request is ever confirmed by a check.
    pub async fn update_member_role(
        &self,
        workspace: &str,
        user_id: &str,
        role: &WorkspaceRole,
    ) -> Result<()> {
        let req = self.req(
            Method::PUT,
            format!(
                "/admin/workspaces/{}/users/{}",
                segment("workspace", workspace)?,
                segment("user", user_id)?
            ),
            &[],
            Some(&RoleBody {
                role: role.as_str(),
            }),
        )?;
        self.put_role(&req, || async {
            Ok(self.member_role(workspace, user_id).await? == *role)
        })
        .await
    }

    /// `GET /admin/workspaces/{ws}/users/{user}`, role only: the check read of
    /// [`Client::update_member_role`]. Only the role is read because this endpoint is known to
    /// leave out `id` and other fields (spec §3.4).
    async fn member_role(&self, workspace: &str, user_id: &str) -> Result<WorkspaceRole> {
        #[derive(Deserialize)]
        struct RoleOnly {
            role: WorkspaceRole,
        }
        let req = self.req(
            Method::GET,
            format!(
                "/admin/workspaces/{}/users/{}",
                segment("workspace", workspace)?,
                segment("user", user_id)?
            ),
            &[],
            None::<&()>,
        )?;
        let (body, attempts) = self.run(&req).await?;
        Ok(decode::<RoleOnly>(&req, attempts, &body)?.role)
    }

    /// `DELETE /admin/workspaces/{ws}/users/{user}`.
    ///
    /// Retry rule: as [`Client::delete_user`].
    pub async fn remove_member(&self, workspace: &str, user_id: &str) -> Result<()> {
        let req = self.req(
            Method::DELETE,
            format!(
                "/admin/workspaces/{}/users/{}",
                segment("workspace", workspace)?,
                segment("user", user_id)?
            ),
            &[],
            None::<&()>,
        )?;
        self.delete(&req).await
    }

    // ---- machinery ---------------------------------------------------------------------------

    fn req<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: String,
        query: &[(&str, String)],
        body: Option<&B>,
    ) -> Result<Req> {
        let call = format!("{method} {path}");
        let invalid = |msg: String| Error::new(call.clone(), 0, ErrorKind::InvalidRequest(msg));
        let mut url = Url::parse(&format!("{}{}", self.inner.base, path))
            .map_err(|e| invalid(format!("bad URL: {e}")))?;
        if !query.is_empty() {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in query {
                pairs.append_pair(k, v);
            }
        }
        let body = match body {
            Some(b) => Some(Bytes::from(
                serde_json::to_vec(b).map_err(|e| invalid(format!("body: {e}")))?,
            )),
            None => None,
        };
        Ok(Req {
            method,
            path,
            url,
            body,
        })
    }

    /// One HTTP exchange, under the rate limit and the in-flight bound. Logs one line.
    async fn attempt(&self, req: &Req, attempt: u32) -> std::result::Result<Bytes, Failure> {
        self.inner.rate.acquire().await;
        let _permit = self.inner.in_flight.acquire().await.map_err(|_| Failure {
            kind: ErrorKind::InvalidRequest("client is shut down".to_owned()),
            applied: Applied::No,
            retry_after: None,
        })?;
        let started = Instant::now();
        let timeout = self.inner.cfg.request_timeout;
        let limit = self.inner.max_response_bytes;
        let answer = tokio::time::timeout(timeout, self.exchange(req, limit)).await;
        let result = classify(answer, timeout, limit);
        record_call(req, attempt, started, &result);
        result.map(|(_, body)| body)
    }

    /// Sends the request and reads at most `limit` bytes of the answer; redirects are not
    /// followed (the API key must not reach another host).
    async fn exchange(
        &self,
        req: &Req,
        limit: usize,
    ) -> std::result::Result<Answer, reqwest::Error> {
        let mut builder = self.inner.http.request(req.method.clone(), req.url.clone());
        if let Some(body) = &req.body {
            builder = builder
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let mut resp = builder.send().await?;
        let status = resp.status();
        if status.is_redirection() {
            return Ok(Answer::Redirect {
                status,
                location: redirect_target(resp.headers()),
            });
        }
        let retry_after = parse_retry_after(resp.headers());
        if status.is_success() {
            match read_capped(&mut resp, limit).await? {
                Some(body) => Ok(Answer::Body {
                    status,
                    retry_after,
                    body,
                }),
                None => Ok(Answer::TooLarge { status }),
            }
        } else {
            let body = read_truncated(&mut resp, limit.min(MAX_ERROR_BODY_BYTES)).await?;
            Ok(Answer::Body {
                status,
                retry_after,
                body,
            })
        }
    }

    /// The plain retry loop, for reads and writes that are safe to repeat.
    async fn run(&self, req: &Req) -> Result<(Bytes, u32)> {
        let mut retry = Retrier::new(&self.inner.cfg.retry);
        loop {
            let attempt = retry.next_attempt();
            match self.attempt(req, attempt).await {
                Ok(body) => return Ok((body, attempt)),
                Err(f) => {
                    if !f.kind.is_transient() || !retry.pause(&f).await {
                        return Err(f.into_error(req, attempt));
                    }
                }
            }
        }
    }

    /// DELETE: a not-found after an attempt that may have been applied is success.
    async fn delete(&self, req: &Req) -> Result<()> {
        let mut retry = Retrier::new(&self.inner.cfg.retry);
        let mut uncertain = false;
        loop {
            let attempt = retry.next_attempt();
            match self.attempt(req, attempt).await {
                Ok(_) => return Ok(()),
                Err(f) => {
                    let err = f.to_error(req, attempt);
                    // Only a 404 settles it: a 403 AB03 is also "not allowed", which the
                    // caller must tell apart by reading again.
                    if uncertain && err.is_not_found() && err.status() == Some(404) {
                        tracing::info!(call = %req.call(), attempt, "portkey: already gone after an uncertain attempt; done");
                        return Ok(());
                    }
                    if !f.kind.is_transient() || !retry.pause(&f).await {
                        return Err(err);
                    }
                    uncertain |= f.applied == Applied::Maybe;
                }
            }
        }
    }

    /// PUT of a role: a 4xx after an attempt that may have been applied is checked with
    /// `already_done`; if the role is in place, success.
    async fn put_role<F, Fut>(&self, req: &Req, already_done: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<bool>>,
    {
        let mut retry = Retrier::new(&self.inner.cfg.retry);
        let mut uncertain = false;
        loop {
            let attempt = retry.next_attempt();
            let failure = match self.attempt(req, attempt).await {
                Ok(_) => return Ok(()),
                Err(f) => f,
            };
            if failure.kind.is_transient() {
                if !retry.pause(&failure).await {
                    return Err(failure.into_error(req, attempt));
                }
                if failure.applied == Applied::Maybe {
                    uncertain = true;
                    // Checking first spares a resend the API may reject as "same role". A failed
                    // check is no reason to stop: the PUT itself is safe to resend.
                    if let Ok(true) = already_done().await {
                        tracing::info!(call = %req.call(), attempt, "portkey: role in place after an uncertain attempt; done");
                        return Ok(());
                    }
                }
                continue;
            }
            let err = failure.into_error(req, attempt);
            if uncertain && !err.is_not_found() {
                if let Ok(true) = already_done().await {
                    tracing::info!(call = %req.call(), attempt, "portkey: role in place after an uncertain attempt; done");
                    return Ok(());
                }
            }
            return Err(err);
        }
    }

    /// POST create that must not be duplicated: after an attempt that may have been applied (or
    /// a 409 following one), `find_existing` decides whether the thing exists before any resend.
    async fn create_checked<T, F, Fut, D>(
        &self,
        req: &Req,
        find_existing: F,
        decode_ok: D,
    ) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Option<T>>>,
        D: Fn(&[u8], u32) -> Result<T>,
    {
        let mut retry = Retrier::new(&self.inner.cfg.retry);
        let mut uncertain = false;
        loop {
            let attempt = retry.next_attempt();
            let failure = match self.attempt(req, attempt).await {
                Ok(body) => return decode_ok(&body, attempt),
                Err(f) => f,
            };
            let conflict_after_uncertain =
                uncertain && failure.to_error(req, attempt).is_conflict();
            if !conflict_after_uncertain {
                if !failure.kind.is_transient() || !retry.pause(&failure).await {
                    return Err(failure.into_error(req, attempt));
                }
                if failure.applied == Applied::No {
                    continue;
                }
                uncertain = true;
            }
            match find_existing().await {
                Ok(Some(found)) => {
                    tracing::info!(call = %req.call(), attempt, "portkey: an uncertain create had been applied; not resending");
                    return Ok(found);
                }
                Ok(None) if conflict_after_uncertain => {
                    return Err(failure.into_error(req, attempt));
                }
                Ok(None) => {
                    tracing::info!(call = %req.call(), attempt, "portkey: an uncertain create had not been applied; resending");
                }
                Err(e) => {
                    return Err(Error::new(
                        req.call(),
                        attempt,
                        ErrorKind::Unverified(e.to_string()),
                    ))
                }
            }
        }
    }

    /// Reads every page of a list; all or nothing.
    ///
    /// Stops when it holds `total` items. The first page also tells the server's page cap: if it
    /// returns fewer items than asked while more exist, later pages are expected at that size.
    /// A short or empty page before `total`, a `total` that changes between pages, more items
    /// than `total` or an id seen twice is an [`ErrorKind::Pagination`] error: the caller gets a
    /// complete list or none. Without a `total`, a short page ends the list.
    async fn list_all<T, K>(
        &self,
        path: String,
        paging: Paging,
        filters: Vec<(&'static str, String)>,
        key: K,
    ) -> Result<Vec<T>>
    where
        T: DeserializeOwned,
        K: Fn(&T) -> String,
    {
        // Pages that disagree mean the list changed while it was read (an invite accepted, a
        // user added by hand): common in a large, busy organisation. The whole list is read
        // again from page 0 a few times before the read counts as failed, so a full run is not
        // withheld for a change that settled a moment later.
        let mut pass = 1u32;
        loop {
            match self.list_pass(&path, paging, &filters, &key).await {
                Err(e) if e.is_pagination() && pass < LIST_PASSES => {
                    tracing::info!(path = %path, pass, error = %e, "list changed while being read; reading it again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * u64::from(pass)))
                        .await;
                    pass += 1;
                }
                other => return other,
            }
        }
    }

    async fn list_pass<T, K>(
        &self,
        path: &str,
        paging: Paging,
        filters: &[(&'static str, String)],
        key: &K,
    ) -> Result<Vec<T>>
    where
        T: DeserializeOwned,
        K: Fn(&T) -> String,
    {
        let path = path.to_string();
        let (size_param, page_param) = paging.params();
        let asked = self.inner.cfg.page_size;
        let mut items: Vec<T> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut first_total: Option<u64> = None;
        let mut page_len = asked;
        let mut page: u64 = 0;
        loop {
            let mut query = filters.to_vec();
            query.push((size_param, asked.to_string()));
            query.push((page_param, page.to_string()));
            let req = self.req(Method::GET, path.clone(), &query, None::<&()>)?;
            let (body, attempts) = self.run(&req).await?;
            let parsed: ListPage<T> = decode(&req, attempts, &body)?;
            let inconsistent =
                |msg: String| Error::new(req.call(), attempts, ErrorKind::Pagination(msg));
            if page == 0 {
                first_total = parsed.total;
            } else if parsed.total != first_total {
                return Err(inconsistent(format!(
                    "total was {first_total:?} on page 0 and {:?} on page {page}",
                    parsed.total
                )));
            }
            let data = parsed.data.unwrap_or_default();
            let got = data.len();
            for item in data {
                let id = key(&item);
                if !seen.insert(id.clone()) {
                    return Err(inconsistent(format!("item {id} repeated on page {page}")));
                }
                items.push(item);
            }
            let have = items.len() as u64;
            match first_total {
                Some(total) if have == total => return Ok(items),
                Some(total) if have > total => {
                    return Err(inconsistent(format!(
                        "{have} items by page {page}, more than the total {total}"
                    )))
                }
                Some(total) => {
                    if page == 0 && got > 0 && got < asked {
                        page_len = got;
                    } else if got < page_len {
                        return Err(inconsistent(format!(
                            "page {page} has {got} items, expected {page_len}; {have} of {total} read"
                        )));
                    }
                }
                None if got < asked => return Ok(items),
                None => {}
            }
            page += 1;
        }
    }
}

/// Reads of a whole list, from page 0, before pages that keep disagreeing fail the read.
const LIST_PASSES: u32 = 3;

#[derive(Serialize)]
struct RoleBody<'a> {
    role: &'a str,
}

fn push_opt(query: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<&str>) {
    if let Some(v) = value {
        query.push((name, v.to_owned()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests fail loudly by design
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use serde_json::json;
    use warp::Filter;

    use super::*;
    use crate::portkey::config::ApiKey;

    /// One request as the scripted server saw it.
    #[derive(Debug, Clone)]
    struct Hit {
        n: u32,
        method: String,
        path: String,
        query: String,
    }

    struct Answer {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        delay: Duration,
    }

    fn ok(body: serde_json::Value) -> Answer {
        Answer {
            status: 200,
            headers: vec![],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn status(code: u16, body: serde_json::Value) -> Answer {
        Answer {
            status: code,
            ..ok(body)
        }
    }

    type Script = dyn Fn(&Hit) -> Answer + Send + Sync;

    /// A local server that answers from `script`; returns its base URL and the hits.
    async fn serve(script: Arc<Script>) -> (String, Arc<Mutex<Vec<Hit>>>) {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let counter = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&hits);
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::query::raw().or(warp::any().map(String::new)).unify())
            .then(
                move |method: warp::http::Method, path: warp::path::FullPath, query: String| {
                    let hit = Hit {
                        n: counter.fetch_add(1, Ordering::SeqCst),
                        method: method.to_string(),
                        path: path.as_str().to_owned(),
                        query,
                    };
                    seen.lock().unwrap().push(hit.clone());
                    let answer = script(&hit);
                    async move {
                        if !answer.delay.is_zero() {
                            tokio::time::sleep(answer.delay).await;
                        }
                        let mut resp = warp::http::Response::builder().status(answer.status);
                        for (k, v) in answer.headers {
                            resp = resp.header(k, v);
                        }
                        resp.header("content-type", "application/json")
                            .body(answer.body)
                            .unwrap()
                    }
                },
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        (format!("http://{addr}/v1"), hits)
    }

    fn client(base: &str, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
        let mut cfg = ClientConfig {
            base_url: base.to_owned(),
            api_key: ApiKey::new("test-key"),
            request_timeout: Duration::from_secs(5),
            retry: RetryConfig {
                initial_interval: Duration::from_millis(1),
                max_interval: Duration::from_millis(5),
                multiplier: 2.0,
                max_elapsed: Duration::from_secs(5),
                randomization_factor: 0.1,
            },
            max_in_flight: 4,
            requests_per_second: f64::INFINITY,
            page_size: 2,
        };
        tweak(&mut cfg);
        Client::new(cfg).unwrap()
    }

    fn user(id: &str) -> serde_json::Value {
        json!({"id": id, "email": format!("{id}@example.com"), "role": "member"})
    }

    // Paused time: the 30 s wait is on tokio's clock, so the test proves the wait without
    // sleeping for real (the wall-clock bound below would fail otherwise).
    /// The schedule kept from the `backoff` crate: the first wait is the initial interval, each
    /// next one `multiplier` times the last, capped at the max interval, and jitter draws each
    /// wait from `interval * (1 ± randomization_factor)`.
    #[tokio::test]
    async fn the_retry_schedule_grows_to_its_cap_with_jitter_around_it() {
        let cfg = RetryConfig {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(30),
            multiplier: 2.0,
            max_elapsed: Duration::from_secs(120),
            randomization_factor: 0.0,
        };
        let mut exact = Retrier::new(&cfg);
        let waits: Vec<u128> = (0..9)
            .map(|_| exact.next_backoff().unwrap().as_millis())
            .collect();
        assert_eq!(
            waits,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );

        let mut jittered = Retrier::new(&RetryConfig {
            randomization_factor: 0.5,
            ..cfg
        });
        let intervals = [
            500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 30000.0, 30000.0,
        ];
        let mut distinct = std::collections::BTreeSet::new();
        for interval in intervals {
            let wait = jittered.next_backoff().unwrap().as_secs_f64() * 1000.0;
            assert!(
                (interval * 0.5 - 1.0..=interval * 1.5 + 1.0).contains(&wait),
                "{wait} ms for an interval of {interval} ms"
            );
            distinct.insert((wait / interval * 1e6) as u64);
        }
        assert!(distinct.len() > 1, "no jitter: {distinct:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_seconds_is_waited_out() {
        let (base, hits) = serve(Arc::new(|h: &Hit| {
            if h.n == 0 {
                Answer {
                    headers: vec![("retry-after", "30".into())],
                    ..status(429, json!({"success":false,"data":{"message":"Rate limit exceeded","errorCode":"AB06"}}))
                }
            } else {
                ok(user("u1"))
            }
        }))
        .await;
        let c = client(&base, |cfg| {
            cfg.request_timeout = Duration::from_secs(3600);
            cfg.retry.max_elapsed = Duration::from_secs(600);
        });
        let wall = std::time::Instant::now();
        let start = Instant::now();
        let u = c.get_user("u1").await.unwrap();
        assert_eq!(u.id, "u1");
        assert!(
            start.elapsed() >= Duration::from_secs(30),
            "{:?}",
            start.elapsed()
        );
        assert!(
            wall.elapsed() < Duration::from_secs(10),
            "slept for real: {:?}",
            wall.elapsed()
        );
        assert_eq!(hits.lock().unwrap().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_http_date_is_waited_out() {
        let (base, hits) = serve(Arc::new(|h: &Hit| {
            if h.n == 0 {
                let at = SystemTime::now() + Duration::from_secs(60);
                Answer {
                    headers: vec![("retry-after", httpdate::fmt_http_date(at))],
                    ..status(503, json!({}))
                }
            } else {
                ok(user("u1"))
            }
        }))
        .await;
        let c = client(&base, |cfg| {
            cfg.request_timeout = Duration::from_secs(3600);
            cfg.retry.max_elapsed = Duration::from_secs(600);
        });
        let wall = std::time::Instant::now();
        let start = Instant::now();
        c.get_user("u1").await.unwrap();
        // HTTP dates have one-second resolution: "now + 60 s" is at least 59 s away.
        assert!(
            start.elapsed() >= Duration::from_secs(59),
            "{:?}",
            start.elapsed()
        );
        assert!(
            wall.elapsed() < Duration::from_secs(10),
            "slept for real: {:?}",
            wall.elapsed()
        );
        assert_eq!(hits.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn retry_after_past_the_give_up_time_fails_at_once() {
        let (base, hits) = serve(Arc::new(|_: &Hit| Answer {
            headers: vec![("retry-after", "3600".into())],
            ..status(
                429,
                json!({"success":false,"data":{"message":"slow down","errorCode":"AB06"}}),
            )
        }))
        .await;
        let c = client(&base, |_| {});
        let start = Instant::now();
        let err = c.get_user("u1").await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(err.is_transient());
        assert_eq!(err.status(), Some(429));
        assert_eq!(err.call(), "GET /admin/users/u1");
        assert_eq!(hits.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn permanent_errors_are_not_retried() {
        let (base, hits) = serve(Arc::new(|_: &Hit| {
            status(
                400,
                json!({"success":false,"data":{"message":"invalid role","errorCode":"AB01"}}),
            )
        }))
        .await;
        let c = client(&base, |_| {});
        let err = c.update_user_role("u1", &OrgRole::Admin).await.unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(err.error_code(), Some("AB01"));
        assert_eq!(
            err.to_string(),
            "PUT /admin/users/u1: HTTP 400 AB01: invalid role (after 1 attempt)"
        );
        assert_eq!(hits.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn server_errors_are_retried_until_the_give_up_time() {
        let (base, hits) = serve(Arc::new(|_: &Hit| status(500, json!({})))).await;
        let c = client(&base, |cfg| {
            cfg.retry.max_elapsed = Duration::from_millis(200)
        });
        let err = c.list_users(&UserFilter::default()).await.unwrap_err();
        assert!(err.is_transient());
        assert!(err.attempts() > 2, "{err}");
        assert_eq!(hits.lock().unwrap().len() as u32, err.attempts());
    }

    #[tokio::test]
    async fn timeouts_and_connect_errors_are_transient() {
        let (base, _) = serve(Arc::new(|_: &Hit| Answer {
            delay: Duration::from_secs(2),
            ..ok(user("u1"))
        }))
        .await;
        let c = client(&base, |cfg| {
            cfg.request_timeout = Duration::from_millis(100);
            cfg.retry.max_elapsed = Duration::from_millis(250);
        });
        let err = c.get_user("u1").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Timeout(_)), "{err}");
        assert!(err.is_transient());

        // A port that was just free: nothing listens.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        let c = client(&format!("http://{addr}/v1"), |cfg| {
            cfg.retry.max_elapsed = Duration::from_millis(50)
        });
        let err = c.get_user("u1").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Connect(_)), "{err}");
        assert!(err.is_transient());
    }

    #[tokio::test]
    async fn base_url_prefix_and_encoding() {
        let (base, hits) = serve(Arc::new(|_: &Hit| ok(json!({})))).await;
        let base = base.replace("/v1", "/api/v1/");
        let c = client(&base, |_| {});
        c.delete_user("a/b?c").await.unwrap();
        let err = c.delete_user("").await.unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::InvalidRequest(_)));
        assert!(c.remove_member("ws", "..").await.is_err());
        let hits = hits.lock().unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].path, "/api/v1/admin/users/a%2Fb%3Fc");
    }

    fn page_server(pages: Vec<serde_json::Value>) -> Arc<Script> {
        Arc::new(move |h: &Hit| {
            let page: usize = h
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("currentPage="))
                .and_then(|v| v.parse().ok())
                .unwrap();
            ok(pages
                .get(page)
                .cloned()
                .unwrap_or(json!({"total": 0, "data": []})))
        })
    }

    #[tokio::test]
    async fn pages_that_disagree_are_refused() {
        // The total changes between pages.
        let (base, _) = serve(page_server(vec![
            json!({"total": 3, "data": [user("a"), user("b")]}),
            json!({"total": 4, "data": [user("c"), user("d")]}),
        ]))
        .await;
        let err = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Pagination(_)), "{err}");

        // An item shows up twice (an insert shifted the window).
        let (base, _) = serve(page_server(vec![
            json!({"total": 4, "data": [user("a"), user("b")]}),
            json!({"total": 4, "data": [user("b"), user("c")]}),
        ]))
        .await;
        let err = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("item b repeated"), "{err}");

        // A short page before the total is reached (a delete shifted the window).
        let (base, _) = serve(page_server(vec![
            json!({"total": 5, "data": [user("a"), user("b")]}),
            json!({"total": 5, "data": [user("c")]}),
        ]))
        .await;
        let err = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("page 1 has 1 items"), "{err}");
        assert!(err.is_transient());

        // More items than announced.
        let (base, _) = serve(page_server(vec![
            json!({"total": 1, "data": [user("a"), user("b")]}),
        ]))
        .await;
        let err = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::Pagination(_)), "{err}");
    }

    #[tokio::test]
    async fn a_list_that_changed_while_read_is_read_again() {
        // The first pass sees an invite accepted between its pages; the second pass is whole.
        let calls = Arc::new(AtomicU32::new(0));
        let seen = calls.clone();
        let (base, hits) = serve(Arc::new(move |h: &Hit| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let page1 = h.query.contains("currentPage=1");
            match (n < 2, page1) {
                (true, false) => ok(json!({"total": 3, "data": [user("a"), user("b")]})),
                (true, true) => ok(json!({"total": 4, "data": [user("c"), user("d")]})),
                (false, false) => ok(json!({"total": 4, "data": [user("a"), user("b")]})),
                (false, true) => ok(json!({"total": 4, "data": [user("c"), user("d")]})),
            }
        }))
        .await;
        let users = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap();
        assert_eq!(users.len(), 4);
        assert_eq!(hits.lock().unwrap().len(), 4, "two passes of two pages");

        // Pages that keep disagreeing fail the read after three whole passes.
        let (base, hits) = serve(page_server(vec![
            json!({"total": 3, "data": [user("a"), user("b")]}),
            json!({"total": 4, "data": [user("c"), user("d")]}),
        ]))
        .await;
        let err = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap_err();
        assert!(err.is_pagination(), "{err}");
        assert_eq!(hits.lock().unwrap().len(), 6);
    }

    #[tokio::test]
    async fn lists_without_a_total_end_on_a_short_page() {
        let (base, hits) = serve(page_server(vec![
            json!({"data": [user("a"), user("b")]}),
            json!({"data": [user("c")]}),
        ]))
        .await;
        let users = client(&base, |_| {})
            .list_users(&UserFilter::default())
            .await
            .unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(hits.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn create_invite_after_a_timeout_reads_before_resending() {
        let (base, hits) = serve(Arc::new(|h: &Hit| match h.method.as_str() {
            // The server applies the create but answers too late.
            "POST" => Answer {
                delay: Duration::from_secs(2),
                ..ok(json!({"id": "inv-1", "invite_link": "https://x/inv-1"}))
            },
            _ => ok(json!({"total": 1, "data": [{"id": "inv-1", "email": "New@Example.com", "role": "member", "status": "pending"}]})),
        }))
        .await;
        let c = client(&base, |cfg| {
            cfg.request_timeout = Duration::from_millis(100)
        });
        let created = c
            .create_invite(&CreateInvite {
                email: "new@example.com".into(),
                role: OrgRole::Member,
                workspaces: vec![],
                workspace_api_key_details: None,
            })
            .await
            .unwrap();
        assert_eq!(created.id, "inv-1");
        assert_eq!(created.invite_link, None);
        let hits = hits.lock().unwrap();
        let methods: Vec<&str> = hits.iter().map(|h| h.method.as_str()).collect();
        assert_eq!(methods, ["POST", "GET"]);
        assert_eq!(
            hits[1].query,
            "email=new%40example.com&status=pending&pageSize=2&currentPage=0"
        );
    }

    #[tokio::test]
    async fn in_flight_bound_holds() {
        let now = Arc::new(AtomicU32::new(0));
        let peak = Arc::new(AtomicU32::new(0));
        let (n2, p2) = (Arc::clone(&now), Arc::clone(&peak));
        // Counting happens in the script, before the delay; the delay keeps requests open.
        let (base, _) = serve(Arc::new(move |_: &Hit| {
            let cur = n2.fetch_add(1, Ordering::SeqCst) + 1;
            p2.fetch_max(cur, Ordering::SeqCst);
            let n3 = Arc::clone(&n2);
            tokio::spawn(async move {
                // Decrements before the answer leaves, so the count never lags behind.
                tokio::time::sleep(Duration::from_millis(40)).await;
                n3.fetch_sub(1, Ordering::SeqCst);
            });
            Answer {
                delay: Duration::from_millis(80),
                ..ok(user("u"))
            }
        }))
        .await;
        let c = client(&base, |cfg| cfg.max_in_flight = 3);
        let calls = (0..12).map(|_| c.get_user("u"));
        for r in futures::future::join_all(calls).await {
            r.unwrap();
        }
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "{}",
            peak.load(Ordering::SeqCst)
        );
    }
}

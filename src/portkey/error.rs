//! Errors of the Admin API client. Each names the call (`POST /admin/users/invites`), how many
//! attempts were made and why it failed, and says whether retrying later can help.

use std::time::Duration;

use serde::Deserialize;

/// A failed client call.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {kind} (after {attempts} attempt{s})", s = if *attempts == 1 { "" } else { "s" })]
pub struct Error {
    call: String,
    attempts: u32,
    kind: ErrorKind,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The connection could not be made, so the request was not sent.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// No complete answer within the request timeout; the server may have acted.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection broke after the request was sent; the server may have acted.
    #[error("network error: {0}")]
    Network(String),
    /// The server answered with an error status. `code` and `message` come from Portkey's
    /// `{"success":false,"data":{"message","errorCode"}}` body when it has one.
    #[error("HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" {c}")).unwrap_or_default())]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The server answered with a redirect. It is never followed: the request carries the API
    /// key, and a control plane that sends it elsewhere is misconfigured or compromised. The
    /// `location` is the `Location` header without its query, which may echo ours.
    #[error(
        "HTTP {status} redirect{} not followed: the Admin API key is only sent to base_url; \
         point [portkey] base_url at the address that answers directly",
        location.as_deref().map(|l| format!(" to {l}")).unwrap_or_default()
    )]
    Redirect {
        status: u16,
        location: Option<String>,
    },
    /// A response body longer than the client's cap; reading stopped there. A list page of a
    /// few hundred rows is far below the cap, so this is a server or proxy fault.
    #[error("HTTP {status} response body exceeds the {limit}-byte limit; not read further")]
    TooLarge { status: u16, limit: usize },
    /// A 2xx body that does not have the documented shape.
    #[error("unexpected response body: {0}")]
    Decode(String),
    /// A list read whose pages do not add up (total changed, an item repeated, pages missing).
    /// Usually a concurrent change on the server; the read is refused rather than returned short.
    #[error("inconsistent pages: {0}")]
    Pagination(String),
    /// A create whose outcome was unknown, and the read that would have told whether it
    /// happened failed too. Retrying the whole operation later is safe: it re-checks first.
    #[error("outcome unknown, and the check read failed: {0}")]
    Unverified(String),
    /// The call could not be built (bad base URL, unencodable body).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

/// Whether retrying the same call later may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Connect errors, timeouts, 5xx, 429, inconsistent pages, unverified creates.
    Transient,
    /// Other 4xx, redirects, oversized or undecodable bodies, invalid requests: retrying the
    /// same call will fail again.
    Permanent,
}

impl Error {
    pub(crate) fn new(call: impl Into<String>, attempts: u32, kind: ErrorKind) -> Self {
        Self {
            call: call.into(),
            attempts,
            kind,
        }
    }

    /// `METHOD /path` of the call, without base URL or query.
    pub fn call(&self) -> &str {
        &self.call
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn class(&self) -> ErrorClass {
        if self.kind.is_transient() {
            ErrorClass::Transient
        } else {
            ErrorClass::Permanent
        }
    }

    /// A list whose pages disagreed: it changed while it was read.
    pub fn is_pagination(&self) -> bool {
        matches!(self.kind, ErrorKind::Pagination(_))
    }

    pub fn is_transient(&self) -> bool {
        self.kind.is_transient()
    }

    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// HTTP status, when the server answered with an error or a redirect.
    pub fn status(&self) -> Option<u16> {
        match &self.kind {
            ErrorKind::Status { status, .. } | ErrorKind::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Portkey `errorCode` (`AB01`…`AB09`), when the body had one.
    pub fn error_code(&self) -> Option<&str> {
        match &self.kind {
            ErrorKind::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The resource is gone: 404 (AB08, or no code), or 403 AB03, which some endpoints answer for
    /// a resource that no longer exists (spec §1, from the Terraform provider). A 403 AB03 may
    /// also be a real permission problem; callers use this only where "gone" is the expected
    /// outcome (deletes, reads of something just seen).
    pub fn is_not_found(&self) -> bool {
        match &self.kind {
            ErrorKind::Status {
                status: 404, code, ..
            } => {
                matches!(code.as_deref(), None | Some("AB08"))
            }
            ErrorKind::Status {
                status: 403, code, ..
            } => code.as_deref() == Some("AB03"),
            _ => false,
        }
    }

    /// 409 / AB07 "Resource already exists".
    pub fn is_conflict(&self) -> bool {
        match &self.kind {
            ErrorKind::Status { status, code, .. } => {
                *status == 409 || code.as_deref() == Some("AB07")
            }
            _ => false,
        }
    }

    /// Short stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match &self.kind {
            ErrorKind::Connect(_) => "connect",
            ErrorKind::Timeout(_) => "timeout",
            ErrorKind::Network(_) => "network",
            ErrorKind::Status { status, .. } if *status == 429 => "rate_limited",
            ErrorKind::Status { status, .. } if *status >= 500 => "server_error",
            ErrorKind::Status { .. } if self.is_not_found() => "not_found",
            ErrorKind::Status { .. } if self.is_conflict() => "conflict",
            ErrorKind::Status { .. } => "client_error",
            ErrorKind::Redirect { .. } => "redirect",
            ErrorKind::TooLarge { .. } => "too_large",
            ErrorKind::Decode(_) => "decode",
            ErrorKind::Pagination(_) => "pagination",
            ErrorKind::Unverified(_) => "unverified",
            ErrorKind::InvalidRequest(_) => "invalid_request",
        }
    }
}

impl ErrorKind {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_)
            | Self::Timeout(_)
            | Self::Network(_)
            | Self::Pagination(_)
            | Self::Unverified(_) => true,
            Self::Status { status, .. } => *status == 429 || *status >= 500,
            Self::Redirect { .. }
            | Self::TooLarge { .. }
            | Self::Decode(_)
            | Self::InvalidRequest(_) => false,
        }
    }

    /// Builds a status error from an error response body, tolerating bodies that are not
    /// Portkey's envelope (a proxy's HTML page, an empty body).
    pub(crate) fn from_response(status: u16, body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Envelope {
            #[serde(default)]
            data: Option<Data>,
            #[serde(default)]
            message: Option<String>,
            #[serde(default, rename = "errorCode")]
            error_code: Option<String>,
        }
        #[derive(Deserialize)]
        struct Data {
            #[serde(default)]
            message: Option<String>,
            #[serde(default, rename = "errorCode")]
            error_code: Option<String>,
        }
        let (code, message) = match serde_json::from_slice::<Envelope>(body) {
            Ok(env) => {
                let (dc, dm) = env
                    .data
                    .map(|d| (d.error_code, d.message))
                    .unwrap_or((None, None));
                (dc.or(env.error_code), dm.or(env.message))
            }
            Err(_) => (None, None),
        };
        let message = message.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "no error body".to_owned()
            } else {
                // Bound what a misbehaving proxy can put into our logs.
                text.chars().take(200).collect()
            }
        });
        Self::Status {
            status,
            code,
            message,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly by design
mod tests {
    use super::*;

    #[test]
    fn parses_portkey_error_body() {
        let kind = ErrorKind::from_response(
            403,
            br#"{"success": false, "data": {"message": "You do not have enough permissions to execute this request", "errorCode": "AB03"}}"#,
        );
        let err = Error::new("DELETE /admin/users/u1", 2, kind);
        assert!(err.is_not_found());
        assert!(err.is_permanent());
        assert_eq!(err.error_code(), Some("AB03"));
        assert_eq!(
            err.to_string(),
            "DELETE /admin/users/u1: HTTP 403 AB03: You do not have enough permissions to execute this request (after 2 attempts)"
        );
    }

    #[test]
    fn classification() {
        let e = |status, body: &str| {
            Error::new(
                "GET /x",
                1,
                ErrorKind::from_response(status, body.as_bytes()),
            )
        };
        assert!(e(500, "").is_transient());
        assert!(e(503, "<html>bad gateway</html>").is_transient());
        assert!(e(
            429,
            r#"{"success":false,"data":{"errorCode":"AB06","message":"Rate limit exceeded"}}"#
        )
        .is_transient());
        assert!(e(
            400,
            r#"{"success":false,"data":{"errorCode":"AB01","message":"bad"}}"#
        )
        .is_permanent());
        assert!(e(
            404,
            r#"{"success":false,"data":{"errorCode":"AB08","message":"nope"}}"#
        )
        .is_not_found());
        assert!(!e(
            404,
            r#"{"success":false,"data":{"errorCode":"AB02","message":"validation"}}"#
        )
        .is_not_found());
        assert!(!e(403, r#"{"success":false,"data":{"errorCode":"AB05"}}"#).is_not_found());
        assert!(e(
            409,
            r#"{"success":false,"data":{"errorCode":"AB07","message":"exists"}}"#
        )
        .is_conflict());
        let unauth = e(
            401,
            r#"{"success": false, "data": {"message": "Unauthorised Request"}}"#,
        );
        assert_eq!(unauth.error_code(), None);
        assert!(unauth
            .to_string()
            .contains("HTTP 401: Unauthorised Request"));
        assert_eq!(
            e(500, "").to_string(),
            "GET /x: HTTP 500: no error body (after 1 attempt)"
        );
        assert!(Error::new("GET /x", 3, ErrorKind::Timeout(Duration::from_secs(1))).is_transient());
        assert_eq!(e(429, "").metric_label(), "rate_limited");
    }
}

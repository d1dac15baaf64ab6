//! The HTTP servers: SCIM (for the IdP) and admin (for operators). Both answer every failure,
//! warp rejections included, through one mapping per server.

pub mod admin;
pub mod console;
pub mod ratelimit;
pub mod scim;
pub mod serve;

use crate::scim::error::ScimError;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use std::borrow::Cow;
use std::convert::Infallible;

/// How much of a client-chosen string (path, method) goes into a log line or an error message.
/// The request line may be up to 64 KiB, and an unauthenticated client can send many of them.
pub const LOG_FIELD_MAX: usize = 200;

/// At most `max` bytes of `s` (cut on a character boundary), with a marker saying how much was
/// left out, so that a log line stays small whatever the client sent.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    if s.len() <= max {
        return Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = s.get(..end).unwrap_or_default();
    Cow::Owned(format!("{head}…[{} more bytes]", s.len() - end))
}

#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(String),
    /// The whole body did not arrive within the time allowed.
    TimedOut,
}

/// Reads a request body, stopping as soon as it passes `limit` bytes, with or without a
/// Content-Length header (a chunked body gets the same limit), or once `timeout` has passed: a
/// client trickling a body would otherwise hold its connection, and the request, forever.
pub async fn body_with_limit<S, B>(
    body: S,
    limit: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, BodyError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    tokio::time::timeout(timeout, read_body(body, limit))
        .await
        .unwrap_or(Err(BodyError::TimedOut))
}

async fn read_body<S, B>(mut body: S, limit: u64) -> Result<Bytes, BodyError>
where
    S: futures::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut out = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|e| BodyError::Read(e.to_string()))?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            return Err(BodyError::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            out.extend_from_slice(part);
            let n = part.len();
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}

/// The SCIM answer for a warp rejection. The SCIM routes take every request, so only failures
/// inside warp itself reach here.
pub fn rejection_to_scim(r: &warp::Rejection) -> ScimError {
    if r.is_not_found() {
        ScimError::not_found("no such endpoint")
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ScimError::payload_too_large("request body too large")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ScimError::method_not_allowed("method not allowed")
    } else {
        tracing::error!(rejection = ?r, "unhandled rejection");
        ScimError::internal("internal error")
    }
}

pub async fn recover_scim(r: warp::Rejection) -> Result<scim::ScimReply, Infallible> {
    Ok(scim::ScimReply::error(&rejection_to_scim(&r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_short_strings_and_marks_cuts() {
        assert_eq!(bounded("/Users", 200), "/Users");
        let long = "/a".repeat(20_000);
        let b = bounded(&long, LOG_FIELD_MAX);
        assert!(b.starts_with("/a/a"));
        assert!(b.ends_with("…[39800 more bytes]"), "{b}");
        assert!(b.len() < LOG_FIELD_MAX + 40);
        // A multi-byte character straddling the limit is left out whole.
        assert_eq!(bounded("aé", 2), "a…[2 more bytes]");
    }
}

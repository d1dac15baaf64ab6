//! The HTTP servers: SCIM (for the IdP) and admin (for operators). Both answer every failure,
//! warp rejections included, through one mapping per server.

pub mod admin;
pub mod scim;

use crate::scim::error::ScimError;
use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;
use std::convert::Infallible;

#[derive(Debug)]
pub enum BodyError {
    TooLarge,
    Read(String),
}

/// Reads a request body, stopping as soon as it passes `limit` bytes, with or without a
/// Content-Length header (a chunked body gets the same limit).
pub async fn body_with_limit<S, B>(mut body: S, limit: u64) -> Result<Bytes, BodyError>
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

//! `/_sim/*`: test and demo controls. Never faulted, no API key, never logged.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use warp::http::Method;
use warp::reply::Response;

use crate::model::{ApiError, InviteSelector, State};
use crate::state::{json_response, load_seed, lock, FaultState, Inner};
use crate::{Faults, Quirks, Seed};

fn error(status: u16, msg: impl std::fmt::Display) -> Response {
    json_response(status, &json!({"error": msg.to_string()}))
}

fn api_error(e: ApiError) -> Response {
    match e {
        ApiError::BadRequest(m) => error(400, m),
        ApiError::NotFound(m) => error(404, m),
        ApiError::Conflict(m) => error(409, m),
    }
}

/// Installs `q` if its scope names are known; answers the quirks now in effect.
fn set_quirks(inner: &Inner, q: Quirks) -> Response {
    if let Err(e) = q.validate() {
        return error(400, e);
    }
    let v = serde_json::to_value(&q).unwrap_or(Value::Null);
    *lock(&inner.quirks) = q;
    json_response(200, &v)
}

/// `PATCH /_sim/quirks`: the keys in `body` replace the current values, the others stay.
fn patch_quirks(inner: &Inner, body: &Bytes) -> Response {
    let patch = match parse::<Value>(body) {
        Ok(Value::Null) => serde_json::Map::new(),
        Ok(Value::Object(o)) => o,
        Ok(_) => return error(400, "body must be a JSON object"),
        Err(r) => return *r,
    };
    // Held across read, merge and write so concurrent patches do not lose updates.
    let mut current = lock(&inner.quirks);
    let mut merged = match serde_json::to_value(&*current) {
        Ok(Value::Object(o)) => o,
        _ => serde_json::Map::new(),
    };
    merged.extend(patch);
    let q: Quirks = match serde_json::from_value(Value::Object(merged)) {
        Ok(q) => q,
        Err(e) => return error(400, format!("invalid quirks: {e}")),
    };
    if let Err(e) = q.validate() {
        return error(400, e);
    }
    let v = serde_json::to_value(&q).unwrap_or(Value::Null);
    *current = q;
    json_response(200, &v)
}

/// An empty body means "no options".
fn parse<T: serde::de::DeserializeOwned + Default>(body: &Bytes) -> Result<T, Box<Response>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| Box::new(error(400, format!("invalid JSON body: {e}"))))
}

pub(crate) fn handle(inner: &Arc<Inner>, method: &Method, path: &str, body: &Bytes) -> Response {
    let route = path.trim_start_matches("/_sim").trim_end_matches('/');
    match (method.as_str(), route) {
        ("GET", "/state") => json_response(200, &lock(&inner.state).snapshot()),
        ("GET", "/requests") => {
            let entries = lock(&inner.log).snapshot();
            json_response(200, &serde_json::to_value(entries).unwrap_or(Value::Null))
        }
        ("DELETE", "/requests") => {
            lock(&inner.log).clear();
            json_response(200, &json!({}))
        }
        ("GET", "/faults") => {
            let f = lock(&inner.faults).faults.clone();
            json_response(200, &serde_json::to_value(f).unwrap_or(Value::Null))
        }
        ("PUT", "/faults") => match parse::<Faults>(body) {
            Ok(f) => {
                let v = serde_json::to_value(&f).unwrap_or(Value::Null);
                *lock(&inner.faults) = FaultState::new(f);
                json_response(200, &v)
            }
            Err(r) => *r,
        },
        ("GET", "/quirks") => {
            let q = lock(&inner.quirks).clone();
            json_response(200, &serde_json::to_value(q).unwrap_or(Value::Null))
        }
        ("PUT", "/quirks") => match parse::<Quirks>(body) {
            Ok(q) => set_quirks(inner, q),
            Err(r) => *r,
        },
        ("PATCH", "/quirks") => patch_quirks(inner, body),
        ("POST", "/seed") => match parse::<Seed>(body) {
            Ok(seed) => match load_seed(inner, &seed) {
                Ok(()) => json_response(200, &json!({})),
                Err(e) => error(400, e),
            },
            Err(r) => *r,
        },
        ("POST", "/reset") => {
            *lock(&inner.state) = State::new();
            lock(&inner.log).clear();
            json_response(200, &json!({}))
        }
        ("POST", "/users") => match parse::<Value>(body) {
            Ok(v) => match lock(&inner.state).create_user_direct(&v) {
                Ok(u) => json_response(200, &u),
                Err(e) => api_error(e),
            },
            Err(r) => *r,
        },
        ("POST", "/invites/accept") => match parse::<InviteSelector>(body) {
            Ok(sel) => json_response(200, &lock(&inner.state).accept_selected(&sel)),
            Err(r) => *r,
        },
        ("POST", "/invites/expire") => match parse::<InviteSelector>(body) {
            Ok(sel) => json_response(200, &lock(&inner.state).expire_selected(&sel)),
            Err(r) => *r,
        },
        _ => error(404, format!("no control route {method} {path}")),
    }
}

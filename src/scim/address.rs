//! Which address a SCIM user is known by. The store indexes users by it and the policy decides
//! by it, so both read it here: one reading, never two that could drift apart.

use crate::email::{Email, EmailError};
use serde_json::Value;

/// The address a SCIM user is known by: the primary email, else the first non-empty email, else
/// `userName` when it has an `@`. An empty value counts as absent (Entra clears `mail` to `""`);
/// a present value that is not a clean address is refused ([`Email::parse`]), never trimmed or
/// guessed at.
pub fn read_email(data: &Value) -> Result<Option<Email>, EmailError> {
    let emails: Vec<&Value> = data
        .get("emails")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let value = |e: &Value| {
        e.get("value")
            .and_then(Value::as_str)
            .filter(|v| !v.trim().is_empty())
            .map(str::to_string)
    };
    let primary = emails
        .iter()
        .find(|e| is_true(e.get("primary")))
        .and_then(|e| value(e));
    if let Some(raw) = primary.or_else(|| emails.iter().find_map(|e| value(e))) {
        return Email::parse(&raw).map(Some);
    }
    match data.get("userName").and_then(Value::as_str) {
        Some(u) if u.contains('@') => match Email::parse(u) {
            Ok(e) => Ok(Some(e)),
            // A userName such as `bob@localhost` is a login, not an address.
            Err(EmailError::Shape(_)) => Ok(None),
            Err(e) => Err(e),
        },
        _ => Ok(None),
    }
}

/// [`read_email`]'s comparison key, when the user has a usable address.
pub fn user_email(data: &Value) -> Option<String> {
    read_email(data)
        .ok()
        .flatten()
        .map(|e| e.as_str().to_string())
}

/// SCIM booleans, including the strings some IdPs send (`"True"`).
pub fn is_true(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

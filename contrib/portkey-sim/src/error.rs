//! The Admin API's error classes, as the model and the query parser raise them and the server
//! maps them to envelopes. Below both, so that neither imports the other for it.

#[derive(Debug)]
pub(crate) enum ApiError {
    BadRequest(String),
    NotFound(String),
    Conflict(String),
}

//! The one error type of jobmatch and its problem document (RFC 9457,
//! `Error::problem`); `crate::http::error_response` makes it a response.

use serde::Serialize;

/// Why a bearer token was refused; the text is the 401's reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    MissingToken,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("bad signature")]
    BadSignature,
    #[error("unsupported algorithm")]
    UnsupportedAlgorithm,
    #[error("algorithm does not match the signing key")]
    AlgorithmMismatch,
    #[error("missing required claim `{0}`")]
    MissingClaim(String),
    #[error("invalid claim `{0}`")]
    InvalidClaim(String),
    #[error("missing subject")]
    MissingSubject,
    #[error("wrong issuer")]
    WrongIssuer,
    #[error("wrong audience")]
    WrongAudience,
    #[error("missing key id")]
    MissingKeyId,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("malformed token")]
    Malformed,
}

/// One offending field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// `Error::code` of `Error::Unavailable`, which a task's error keeps.
pub const UNAVAILABLE_CODE: &str = "dependency_unavailable";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    MalformedJson(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("{0}")]
    NotFound(String),
    #[error("no route for {0}")]
    NoRoute(String),
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not JSON (by its `Content-Type`).
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An `Idempotency-Key` reused with a different request body.
    #[error("this Idempotency-Key was used with a different request body")]
    IdempotencyConflict,
    #[error("no stored profile for this caller; send an embedding")]
    ProfileNotFound,
    /// A dependency failed in a way that may pass: retrying makes sense.
    #[error("{component} is unavailable: {message}")]
    Unavailable {
        component: &'static str,
        message: String,
    },
    /// A legacy call's task did not finish while the call waited; it goes
    /// on, and its status can be polled.
    #[error("the match did not finish within {waited_ms} ms; it goes on as task {task_id}, at /jobs/match/status/{task_id}")]
    StillRunning { task_id: String, waited_ms: u64 },
    /// The work could not finish before its deadline (`crate::deadline`):
    /// not started, or stopped. Another attempt with more time may pass.
    #[error("out of time: {0}")]
    OutOfTime(String),
    /// A bug or a broken invariant; details go to the log, not the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn unavailable(component: &'static str, err: impl std::fmt::Display) -> Error {
        Error::Unavailable {
            component,
            message: err.to_string(),
        }
    }

    /// Stable machine code, used in task errors and problem types.
    pub fn code(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "malformed_json",
            Error::Validation(_) => "invalid_request",
            Error::Unauthorized(_) => "unauthorized",
            Error::NotFound(_) | Error::NoRoute(_) => "not_found",
            Error::PayloadTooLarge(_) => "payload_too_large",
            Error::UnsupportedMediaType(_) => "unsupported_media_type",
            Error::IdempotencyConflict => "idempotency_key_reused",
            Error::ProfileNotFound => "profile_not_found",
            Error::Unavailable { .. } | Error::OutOfTime(_) => UNAVAILABLE_CODE,
            Error::StillRunning { .. } => "still_running",
            Error::Internal(_) => "internal",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::MalformedJson(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::NotFound(_) | Error::NoRoute(_) => 404,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Validation(_) | Error::ProfileNotFound | Error::IdempotencyConflict => 422,
            Error::Internal(_) => 500,
            Error::Unavailable { .. } | Error::StillRunning { .. } | Error::OutOfTime(_) => 503,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "Malformed JSON",
            Error::Validation(_) => "Invalid request",
            Error::Unauthorized(_) => "Unauthorized",
            Error::NotFound(_) | Error::NoRoute(_) => "Not found",
            Error::PayloadTooLarge(_) => "Payload too large",
            Error::UnsupportedMediaType(_) => "Unsupported media type",
            Error::IdempotencyConflict => "Idempotency key reused",
            Error::ProfileNotFound => "No profile",
            Error::Unavailable { .. } | Error::OutOfTime(_) => "Service unavailable",
            Error::StillRunning { .. } => "Still running",
            Error::Internal(_) => "Internal error",
        }
    }

    /// The problem document for this error. Internal details are not exposed.
    pub fn problem(&self) -> Problem {
        let detail = match self {
            Error::Internal(_) => "an unexpected error occurred; it has been logged".to_owned(),
            Error::Unavailable { component, .. } => {
                format!("{component} is unavailable; retry later")
            }
            Error::OutOfTime(_) => "the match could not finish in time; retry later".to_owned(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("/problems/{}", self.code().replace('_', "-")),
            title: self.title(),
            status: self.status(),
            detail,
            errors: match self {
                Error::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

/// RFC 9457 problem details.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

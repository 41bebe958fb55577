//! The one error type of jobmatch and its problem document (RFC 9457,
//! `Error::problem`); `crate::http::error_response` makes it a response.

use serde::{Deserialize, Serialize};

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

/// The stable machine codes of jobmatch's errors: an [`Error`]'s (its
/// problem's `type` is `/problems/<code>` with dashes) and a failed task's
/// `error.code`, kept in the task store as the same string.
/// [`ErrorCode::as_str`] is their one spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    MalformedJson,
    InvalidRequest,
    Unauthorized,
    /// A valid token without the scope an admin route needs.
    Forbidden,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    IdempotencyKeyReused,
    ProfileNotFound,
    QuotaExceeded,
    DependencyUnavailable,
    StillRunning,
    /// A cancel of a task that has already ended.
    TaskFinished,
    /// A legacy call whose task its owner cancelled.
    Cancelled,
    Internal,
    /// A task's only: its message could not be sent, and its client was
    /// answered 503, never 202.
    EnqueueFailed,
    /// A task's only: its message reached the dead-letter queue.
    DeadLettered,
    /// A stored code this build does not know (written by a newer release,
    /// read after a rollback, or by hand). Read as this rather than refused,
    /// so that the task still shows, with its message; answered as
    /// `unknown`. Nothing writes it.
    Unknown,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 18] = [
        ErrorCode::MalformedJson,
        ErrorCode::InvalidRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::ProfileNotFound,
        ErrorCode::QuotaExceeded,
        ErrorCode::DependencyUnavailable,
        ErrorCode::StillRunning,
        ErrorCode::TaskFinished,
        ErrorCode::Cancelled,
        ErrorCode::Internal,
        ErrorCode::EnqueueFailed,
        ErrorCode::DeadLettered,
        ErrorCode::Unknown,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedJson => "malformed_json",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::ProfileNotFound => "profile_not_found",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::DependencyUnavailable => "dependency_unavailable",
            ErrorCode::StillRunning => "still_running",
            ErrorCode::TaskFinished => "task_finished",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Internal => "internal",
            ErrorCode::EnqueueFailed => "enqueue_failed",
            ErrorCode::DeadLettered => "dead_lettered",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The code spelled `name`; [`ErrorCode::Unknown`] for any other string.
    pub fn parse(name: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(ErrorCode::parse(&name))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    MalformedJson(String),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// A valid token that lacks the scope (or group) the route needs.
    #[error("this route needs the scope `{0}` in the token's `scope` claim, or membership of the deployment's admin group")]
    Forbidden(&'static str),
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
    /// The caller's quota of match requests is used up (DESIGN.md "Fair
    /// use"); the fields are the answer's `RateLimit` and `Retry-After`.
    #[error("this caller's quota of match requests is used up; retry after {} s", .0.reset_secs)]
    QuotaExceeded(crate::quota::RateLimit),
    /// A dependency failed in a way that may pass: retrying makes sense.
    #[error("{component} is unavailable: {message}")]
    Unavailable {
        component: &'static str,
        message: String,
    },
    /// A legacy call's task did not finish while the call waited; it goes
    /// on, and its status can be polled.
    /// A cancel of a task that has already ended (`completed`, `failed` or
    /// `cancelled`): it stays as it was.
    #[error("task {task_id} has already ended as `{status}`; only a pending or processing task can be cancelled")]
    TaskFinished {
        task_id: String,
        status: &'static str,
    },
    /// A legacy call whose task its owner cancelled while the call waited.
    #[error("task {0} was cancelled by its owner")]
    Cancelled(String),
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
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::MalformedJson(_) => ErrorCode::MalformedJson,
            Error::Validation(_) => ErrorCode::InvalidRequest,
            Error::Unauthorized(_) => ErrorCode::Unauthorized,
            Error::Forbidden(_) => ErrorCode::Forbidden,
            Error::NotFound(_) | Error::NoRoute(_) => ErrorCode::NotFound,
            Error::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Error::UnsupportedMediaType(_) => ErrorCode::UnsupportedMediaType,
            Error::IdempotencyConflict => ErrorCode::IdempotencyKeyReused,
            Error::ProfileNotFound => ErrorCode::ProfileNotFound,
            Error::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Error::Unavailable { .. } | Error::OutOfTime(_) => ErrorCode::DependencyUnavailable,
            Error::StillRunning { .. } => ErrorCode::StillRunning,
            Error::TaskFinished { .. } => ErrorCode::TaskFinished,
            Error::Cancelled(_) => ErrorCode::Cancelled,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::MalformedJson(_) => 400,
            Error::Unauthorized(_) => 401,
            Error::Forbidden(_) => 403,
            Error::NotFound(_) | Error::NoRoute(_) => 404,
            Error::PayloadTooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::Validation(_) | Error::ProfileNotFound | Error::IdempotencyConflict => 422,
            Error::TaskFinished { .. } | Error::Cancelled(_) => 409,
            Error::QuotaExceeded(_) => 429,
            Error::Internal(_) => 500,
            Error::Unavailable { .. } | Error::StillRunning { .. } | Error::OutOfTime(_) => 503,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Error::MalformedJson(_) => "Malformed JSON",
            Error::Validation(_) => "Invalid request",
            Error::Unauthorized(_) => "Unauthorized",
            Error::Forbidden(_) => "Forbidden",
            Error::NotFound(_) | Error::NoRoute(_) => "Not found",
            Error::PayloadTooLarge(_) => "Payload too large",
            Error::UnsupportedMediaType(_) => "Unsupported media type",
            Error::IdempotencyConflict => "Idempotency key reused",
            Error::ProfileNotFound => "No profile",
            Error::QuotaExceeded(_) => "Too many requests",
            Error::Unavailable { .. } | Error::OutOfTime(_) => "Service unavailable",
            Error::StillRunning { .. } => "Still running",
            Error::TaskFinished { .. } => "Task already ended",
            Error::Cancelled(_) => "Cancelled",
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
            kind: format!("/problems/{}", self.code().as_str().replace('_', "-")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings on the wire and in stored tasks: changing one breaks
    /// clients and every task already stored.
    #[test]
    fn codes_keep_their_strings_and_read_back() {
        let names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            names,
            [
                "malformed_json",
                "invalid_request",
                "unauthorized",
                "forbidden",
                "not_found",
                "payload_too_large",
                "unsupported_media_type",
                "idempotency_key_reused",
                "profile_not_found",
                "quota_exceeded",
                "dependency_unavailable",
                "still_running",
                "task_finished",
                "cancelled",
                "internal",
                "enqueue_failed",
                "dead_lettered",
                "unknown",
            ]
        );
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).expect("encode");
            assert_eq!(json, format!("\"{code}\""));
            let back: ErrorCode = serde_json::from_str(&json).expect("decode");
            assert_eq!(back, code);
        }
    }

    #[test]
    fn an_unknown_stored_code_reads_as_unknown() {
        let code: ErrorCode = serde_json::from_str(r#""cancelled_by_owner""#).expect("decode");
        assert_eq!(code, ErrorCode::Unknown);
        assert!(serde_json::from_str::<ErrorCode>("7").is_err());
    }

    #[test]
    fn problem_types_are_the_codes_with_dashes() {
        let err = Error::IdempotencyConflict;
        assert_eq!(err.code(), ErrorCode::IdempotencyKeyReused);
        assert_eq!(err.problem().kind, "/problems/idempotency-key-reused");
        let err = Error::unavailable("sqs", "down");
        assert_eq!(err.problem().kind, "/problems/dependency-unavailable");
    }
}

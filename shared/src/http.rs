//! The HTTP edge of the api and status functions: JSON and problem+json
//! responses, the bearer token, the contract's timestamps, and the one
//! mapping of errors to responses. Built on the `http` crate's types, which
//! lambda_http re-exports, so that no Lambda crate enters `shared`.

use ::http::header::{
    HeaderMap, HeaderValue, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use ::http::{Response, StatusCode};
use serde::Serialize;

use crate::auth::{Caller, Verifier};
use crate::error::{AuthError, Error, Result};

pub const JSON: &str = "application/json";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// A JSON response. Never cached: a task's state changes from one call to
/// the next.
pub fn json<B: From<String>>(status: StatusCode, body: &impl Serialize) -> Response<B> {
    let text = match serde_json::to_string(body) {
        Ok(text) => text,
        Err(e) => return error_response(&Error::Internal(format!("encoding a response: {e}"))),
    };
    let mut resp = Response::new(B::from(text));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A route's response, or its error's.
pub fn respond<B: From<String>>(result: Result<Response<B>>) -> Response<B> {
    result.unwrap_or_else(|err| error_response(&err))
}

/// The problem+json response (RFC 9457) for an error. Server errors are
/// logged here with their details, which the body leaves out.
pub fn error_response<B: From<String>>(err: &Error) -> Response<B> {
    let problem = err.problem();
    if problem.status >= 500 {
        tracing::error!(error = %err, "request failed");
    }
    let mut builder = Response::builder()
        .status(problem.status)
        .header(CONTENT_TYPE, PROBLEM_JSON);
    if let Error::Unauthorized(reason) = err {
        builder = builder.header(WWW_AUTHENTICATE, www_authenticate(reason));
    }
    if let Error::Unavailable { .. } | Error::StillRunning { .. } | Error::OutOfTime(_) = err {
        builder = builder.header(RETRY_AFTER, "1");
    }
    let body = serde_json::to_string(&problem).unwrap_or_default();
    builder
        .body(B::from(body))
        .unwrap_or_else(|_| Response::new(B::from(String::new())))
}

/// RFC 6750 challenge; a request without a token gets no error code.
fn www_authenticate(reason: &AuthError) -> String {
    match reason {
        AuthError::MissingToken => r#"Bearer realm="jobmatch""#.to_owned(),
        other => format!(
            r#"Bearer realm="jobmatch", error="invalid_token", error_description="{}""#,
            other.to_string().replace('"', "'")
        ),
    }
}

/// The token of `Authorization: Bearer <token>` (RFC 6750); the scheme is
/// case-insensitive (RFC 7235).
pub fn bearer(headers: &HeaderMap) -> Result<&str, AuthError> {
    let header = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::MissingToken)?;
    let (scheme, token) = header
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MissingToken)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(AuthError::MissingToken);
    }
    Ok(token)
}

/// The caller of a request, from its bearer token: `Unauthorized` (401) or,
/// when the JWKS cannot be fetched, `Unavailable` (503).
pub async fn caller(verifier: &Verifier, headers: &HeaderMap) -> Result<Caller> {
    verifier.caller(bearer(headers)?).await
}

/// A Unix time as the contract writes it (`expires_at`): RFC 3339 in UTC,
/// whole seconds; `None` out of chrono's range.
pub fn rfc3339_secs(epoch_secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(epoch_secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::FieldError;

    fn body(resp: &Response<String>) -> serde_json::Value {
        serde_json::from_str(resp.body()).expect("problem body is JSON")
    }

    #[test]
    fn validation_lists_fields() {
        let err = Error::Validation(vec![FieldError::new("limit", "must be 1..100")]);
        let resp: Response<String> = error_response(&err);
        assert_eq!(resp.status(), 422);
        assert_eq!(resp.headers()[CONTENT_TYPE], PROBLEM_JSON);
        let b = body(&resp);
        assert_eq!(b["status"], 422);
        assert_eq!(b["type"], "/problems/invalid-request");
        assert_eq!(b["errors"][0]["field"], "limit");
    }

    #[test]
    fn unauthorized_names_reason_in_challenge_and_detail() {
        let resp: Response<String> = error_response(&Error::from(AuthError::Expired));
        assert_eq!(resp.status(), 401);
        assert_eq!(
            resp.headers()[WWW_AUTHENTICATE],
            r#"Bearer realm="jobmatch", error="invalid_token", error_description="token expired""#
        );
        assert_eq!(body(&resp)["detail"], "token expired");
    }

    #[test]
    fn internal_details_stay_in_the_log() {
        let resp: Response<String> =
            error_response(&Error::Internal("db password is hunter2".into()));
        assert_eq!(resp.status(), 500);
        assert!(!resp.body().contains("hunter2"));
        let resp: Response<String> =
            error_response(&Error::unavailable("postgres", "conn refused at 10.0.0.1"));
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers()[RETRY_AFTER], "1");
        assert!(!resp.body().contains("10.0.0.1"));
    }

    #[test]
    fn json_is_never_cached() {
        let resp: Response<String> = json(StatusCode::ACCEPTED, &serde_json::json!({"a": 1}));
        assert_eq!(resp.status(), 202);
        assert_eq!(resp.headers()[CONTENT_TYPE], JSON);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        assert_eq!(resp.body(), r#"{"a":1}"#);
    }

    fn with_authorization(value: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(v) = value {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(v).expect("header"));
        }
        headers
    }

    #[tokio::test]
    async fn header_needs_bearer_scheme() {
        const SECRET: &[u8] = b"unit-secret";
        let v = Verifier::hs256(SECRET, 0);
        for header in [None, Some("Basic abc"), Some("Bearer "), Some("Bearer")] {
            assert!(matches!(
                caller(&v, &with_authorization(header)).await,
                Err(Error::Unauthorized(AuthError::MissingToken))
            ));
        }
        let t = crate::auth::mint_hs256(SECRET, "carol", 60).expect("mint");
        let headers = with_authorization(Some(&format!("bearer {t}")));
        assert_eq!(bearer(&headers), Ok(t.as_str()));
        assert_eq!(
            caller(&v, &headers).await.ok(),
            Some(Caller("carol".into()))
        );
    }

    #[test]
    fn timestamps_are_utc_to_the_second() {
        assert_eq!(
            rfc3339_secs(1_724_709_600).as_deref(),
            Some("2024-08-26T22:00:00Z")
        );
        assert_eq!(rfc3339_secs(i64::MAX), None);
    }
}

//! Bearer-token authentication: HS256 JWT verification and, for local use,
//! minting. The caller is `sub`, or `id` when `sub` is absent; `exp` is required.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::AuthError;

/// Claims jobmatch reads; other claims are ignored.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    /// Required; checked by the validation, optional here so its absence is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Verifies HS256 tokens with one shared secret.
#[derive(Clone)]
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn hs256(secret: &[u8], leeway_secs: u64) -> Verifier {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = leeway_secs;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        Verifier {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies an `Authorization` header value and returns the caller.
    pub fn caller_from_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::MissingToken)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingToken)?;
        self.caller(token)
    }

    pub fn caller(&self, token: &str) -> Result<Caller, AuthError> {
        let data =
            decode::<Claims>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    AuthError::UnsupportedAlgorithm
                }
                ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
                _ => AuthError::Malformed,
            })?;
        let Claims { sub, id, .. } = data.claims;
        sub.or(id)
            .filter(|s| !s.is_empty())
            .map(Caller)
            .ok_or(AuthError::MissingSubject)
    }
}

/// Mints an HS256 token for `subject`, valid for `ttl_secs` (local development and tests).
pub fn mint_hs256(
    secret: &[u8],
    subject: &str,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = Claims {
        sub: Some(subject.to_owned()),
        id: None,
        exp: Some(chrono::Utc::now().timestamp() + ttl_secs),
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &[u8] = b"test-secret";

    fn token(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encode")
    }

    fn exp_in(secs: i64) -> i64 {
        chrono::Utc::now().timestamp() + secs
    }

    #[test]
    fn caller_is_sub_then_id() {
        let v = Verifier::hs256(SECRET, 0);
        let t = token(
            json!({"sub": "alice", "id": "x", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(v.caller(&t), Ok(Caller("alice".into())));
        let t = token(json!({"id": "bob", "exp": exp_in(60)}), SECRET);
        assert_eq!(v.caller(&t), Ok(Caller("bob".into())));
    }

    #[test]
    fn rejects_each_bad_token_with_its_reason() {
        let v = Verifier::hs256(SECRET, 0);
        let expired = token(json!({"sub": "a", "exp": exp_in(-120)}), SECRET);
        assert_eq!(v.caller(&expired), Err(AuthError::Expired));
        let wrong_key = token(json!({"sub": "a", "exp": exp_in(60)}), b"other");
        assert_eq!(v.caller(&wrong_key), Err(AuthError::BadSignature));
        let no_exp = token(json!({"sub": "a"}), SECRET);
        assert_eq!(
            v.caller(&no_exp),
            Err(AuthError::MissingClaim("exp".into()))
        );
        let no_sub = token(json!({"exp": exp_in(60)}), SECRET);
        assert_eq!(v.caller(&no_sub), Err(AuthError::MissingSubject));
        let nbf = token(
            json!({"sub": "a", "exp": exp_in(600), "nbf": exp_in(300)}),
            SECRET,
        );
        assert_eq!(v.caller(&nbf), Err(AuthError::NotYetValid));
        assert_eq!(v.caller("garbage"), Err(AuthError::Malformed));
    }

    #[test]
    fn alg_none_is_rejected() {
        // header {"alg":"none","typ":"JWT"}, payload {"sub":"a","exp":9999999999}
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        let v = Verifier::hs256(SECRET, 0);
        assert!(matches!(
            v.caller(t),
            Err(AuthError::UnsupportedAlgorithm | AuthError::Malformed)
        ));
    }

    #[test]
    fn header_needs_bearer_scheme() {
        let v = Verifier::hs256(SECRET, 0);
        assert_eq!(v.caller_from_header(None), Err(AuthError::MissingToken));
        assert_eq!(
            v.caller_from_header(Some("Basic abc")),
            Err(AuthError::MissingToken)
        );
        let t = mint_hs256(SECRET, "carol", 60).expect("mint");
        assert_eq!(
            v.caller_from_header(Some(&format!("Bearer {t}"))),
            Ok(Caller("carol".into()))
        );
    }
}

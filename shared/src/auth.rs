//! Bearer-token authentication: JWT verification with the algorithms the
//! configuration pins (HS256 with a shared secret; RS256/ES256 against a JWKS
//! URL with a key cache, or a JWKS given whole), and HS256 minting for local
//! use and tests.
//!
//! The caller's subject is `sub`, or `id` when `sub` is absent; the caller is
//! that subject qualified by its issuer when more than one issuer is trusted
//! ([`Caller`]). `exp` is required, `nbf` honoured, `iss`/`aud` checked when
//! configured, and so are Cognito's `token_use` and app client (`client_id`,
//! or `aud` of ID tokens). Tokens and keys are never logged or printed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::config::{AuthConfig, ConfigError, Secret};
use crate::error::{AuthError, Error};
use crate::http_client::HttpClient;

/// The algorithms jobmatch can verify; anything else is refused by name.
pub const SUPPORTED: [Algorithm; 3] = [Algorithm::HS256, Algorithm::RS256, Algorithm::ES256];

/// Claims jobmatch reads; other claims are ignored. `exp`, `nbf`, `iss` and
/// `aud` are checked by the validation.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Claims {
    /// `Some(Value::Null)` for `"sub": null`: only an absent `sub` may fall
    /// back to `id`.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    sub: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<Value>,
    /// Read again for the caller's name when several issuers are trusted
    /// (the validation checks it against `JWT_ISSUER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<Value>,
    /// Read as any value: the validation judges its presence and format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<Value>,
    /// Read again for the app client of ID tokens (the validation checks it
    /// against `JWT_AUDIENCE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<Value>,
    /// The app client of Cognito access tokens, which carry no `aud`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    client_id: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_use: Option<Value>,
    /// OAuth 2 scopes, space-separated (RFC 8693 section 4.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<Value>,
    /// Cognito's groups of the user.
    #[serde(
        default,
        rename = "cognito:groups",
        skip_serializing_if = "Option::is_none"
    )]
    groups: Option<Value>,
}

/// What a token allows beyond matching: its scopes and its groups
/// (DESIGN.md "Catalogue operations", "Who may"). Claims of another shape
/// grant nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    pub scopes: Vec<String>,
    pub groups: Vec<String>,
}

/// The scope of the admin's reads (`GET /jobs/{id}`, `GET /ingests/{id}`).
pub const SCOPE_JOBS_READ: &str = "jobs:read";
/// The scope of the admin's writes (`POST /jobs`, `DELETE /jobs/{id}`).
pub const SCOPE_JOBS_WRITE: &str = "jobs:write";

impl Grants {
    fn of(scope: Option<&Value>, groups: Option<&Value>) -> Grants {
        let scopes = match scope {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            _ => Vec::new(),
        };
        let groups = match groups {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Grants { scopes, groups }
    }

    /// Allowed when the token carries `scope`, or is in `admin_group` (when
    /// the deployment names one); otherwise a 403 naming the scope.
    pub fn require(&self, scope: &'static str, admin_group: Option<&str>) -> Result<(), Error> {
        let scoped = self.scopes.iter().any(|s| s == scope);
        let grouped = admin_group
            .filter(|g| !g.is_empty())
            .is_some_and(|g| self.groups.iter().any(|m| m == g));
        if scoped || grouped {
            Ok(())
        } else {
            Err(Error::Forbidden(scope))
        }
    }
}

/// A claim that is there, even as `null` (serde reads `null` as `None`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Cognito's kind of token (`token_use`): access tokens name their app
/// client in `client_id`, ID tokens in `aud`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Access,
    Id,
}

impl TokenUse {
    /// `access` or `id`, as in the claim and `JWT_TOKEN_USE`.
    pub fn from_name(name: &str) -> Option<TokenUse> {
        match name {
            "access" => Some(TokenUse::Access),
            "id" => Some(TokenUse::Id),
            _ => None,
        }
    }

    fn of_claim(claim: Option<&Value>) -> Option<TokenUse> {
        claim.and_then(Value::as_str).and_then(TokenUse::from_name)
    }
}

/// The authenticated caller: the owner of its tasks, idempotency keys,
/// stored profile (`profiles.user_id`) and quota.
///
/// With one trusted issuer it is the token's subject, so that a profile
/// stored under a JWT subject is the caller's. With several (see
/// [`Verifier::one_issuer`]) it is `{key}|{iss}|{subject}`: `key` is `hs256`
/// or `jwks` (what verified the signature: two key sources are two issuers
/// even when their tokens carry the same `iss`), `iss` the token's (empty
/// when absent) with `%` and `|` percent-encoded, then the subject as it is.
/// Neither of the first two parts holds a `|`, so the split is unambiguous and
/// two issuers never name the same caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

/// Longest caller name, in bytes. The name is the partition key of the
/// tasks table's owner index, which DynamoDB bounds at 2,048 bytes: a longer
/// subject is a 401, not a write that fails with a 503 at every retry.
pub const MAX_CALLER_BYTES: usize = 1024;

impl Caller {
    /// The caller named by `subject` from `issuer`, `None` meaning the
    /// verifier trusts one issuer only.
    fn of(issuer: Option<(KeySource, &str)>, subject: String) -> Caller {
        match issuer {
            None => Caller(subject),
            Some((key, iss)) => {
                let iss = iss.replace('%', "%25").replace('|', "%7C");
                Caller(format!("{}|{iss}|{subject}", key.as_str()))
            }
        }
    }
}

/// What verified a token's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeySource {
    /// The shared secret (`JWT_SECRET`, `JWT_SECRET_ARN`).
    Hs256,
    /// The identity provider's key set (`JWT_JWKS_URL`, `JWT_JWKS`).
    Jwks,
}

impl KeySource {
    fn as_str(self) -> &'static str {
        match self {
            KeySource::Hs256 => "hs256",
            KeySource::Jwks => "jwks",
        }
    }
}

/// The JOSE header fields read before any verification. `alg` is read as a
/// string so that `none` and unknown names get their own answer.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Verifies bearer tokens; built once per container. Building one installs
/// jsonwebtoken's crypto provider (`jwt_crypto`).
#[derive(Clone)]
pub struct Verifier {
    algorithms: Vec<Algorithm>,
    hs256: Option<DecodingKey>,
    jwks: Option<Arc<Jwks>>,
    issuer: Vec<String>,
    audience: Vec<String>,
    /// App clients accepted (`JWT_CLIENT_IDS`); empty: any.
    client_ids: Vec<String>,
    /// The `token_use` required (`JWT_TOKEN_USE`); `None`: any.
    token_use: Option<TokenUse>,
    leeway_secs: u64,
}

impl std::fmt::Debug for Verifier {
    // Never print the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .field("jwks", &self.jwks.as_ref().map(|j| j.describe()))
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// HS256 only, with one shared secret.
    pub fn hs256(secret: &[u8], leeway_secs: u64) -> Verifier {
        crate::jwt_crypto::install();
        Verifier {
            algorithms: vec![Algorithm::HS256],
            hs256: Some(DecodingKey::from_secret(secret)),
            jwks: None,
            issuer: Vec::new(),
            audience: Vec::new(),
            client_ids: Vec::new(),
            token_use: None,
            leeway_secs,
        }
    }

    /// RS256 and/or ES256 against a JWKS URL (no shared secret).
    pub fn jwks(jwks: Jwks, algorithms: &[Algorithm], leeway_secs: u64) -> Verifier {
        crate::jwt_crypto::install();
        Verifier {
            algorithms: algorithms.to_vec(),
            hs256: None,
            jwks: Some(Arc::new(jwks)),
            issuer: Vec::new(),
            audience: Vec::new(),
            client_ids: Vec::new(),
            token_use: None,
            leeway_secs,
        }
    }

    /// The algorithms `config` accepts, whatever secret is at hand:
    /// `JWT_ALGORITHMS` when given; else RS256 and ES256 with a JWKS, HS256
    /// without one. Beside a JWKS, HS256 must be named: a shared secret must
    /// not quietly mint tokens that pass for the identity provider's. So the
    /// HS256 secret (`JWT_SECRET_ARN`) is needed only when this has HS256.
    pub fn accepted_algorithms(config: &AuthConfig) -> Result<Vec<Algorithm>, ConfigError> {
        let (jwks_url, jwks_document) = jwks_source(config)?;
        let algorithms = match config.jwt_algorithms.as_deref().filter(|a| !a.is_empty()) {
            Some(list) => parse_algorithms(list)?,
            None if jwks_url.is_some() || jwks_document.is_some() => {
                vec![Algorithm::RS256, Algorithm::ES256]
            }
            None => vec![Algorithm::HS256],
        };
        if algorithms.is_empty() {
            return Err(ConfigError::new(
                "JWT_ALGORITHMS names no algorithm: give some of HS256, RS256, ES256",
            ));
        }
        Ok(algorithms)
    }

    /// Builds the verifier the configuration describes. `hs256_secret` is
    /// `JWT_SECRET`, or the Secrets Manager secret that `JWT_SECRET_ARN` names,
    /// already fetched; it is ignored when HS256 is not accepted. Refuses a
    /// configuration that pins an algorithm it has no key source for.
    pub fn from_config(
        config: &AuthConfig,
        hs256_secret: Option<&Secret>,
    ) -> Result<Verifier, ConfigError> {
        crate::jwt_crypto::install();
        let (jwks_url, jwks_document) = jwks_source(config)?;
        let algorithms = Verifier::accepted_algorithms(config)?;
        let named = config
            .jwt_algorithms
            .as_deref()
            .is_some_and(|a| !a.is_empty());
        let wants_hs = algorithms.contains(&Algorithm::HS256);
        let wants_jwks = algorithms.iter().any(|a| *a != Algorithm::HS256);
        let hs256 = match (wants_hs, hs256_secret) {
            (true, Some(secret)) if secret.expose().len() >= 32 => {
                Some(DecodingKey::from_secret(secret.expose().as_bytes()))
            }
            (true, Some(_)) => {
                return Err(ConfigError::new(
                    "the HS256 secret must be at least 32 characters",
                ))
            }
            (true, None) if named => {
                return Err(ConfigError::new(
                    "JWT_ALGORITHMS has HS256 but neither JWT_SECRET nor JWT_SECRET_ARN is set",
                ))
            }
            (true, None) => return Err(ConfigError::new(
                "no token algorithm: set JWT_SECRET or JWT_SECRET_ARN (HS256) and/or JWT_JWKS_URL or JWT_JWKS (RS256, ES256)",
            )),
            (false, Some(_)) => {
                // Beside a JWKS, HS256 is off unless named: say why the secret does nothing.
                tracing::warn!("JWT_SECRET/JWT_SECRET_ARN ignored: JWT_ALGORITHMS has no HS256 (beside a JWKS it must be named)");
                None
            }
            (false, None) => None,
        };
        let jwks = match (wants_jwks, jwks_url, jwks_document) {
            (true, Some(url), _) => Some(Arc::new(Jwks::new(
                url,
                Duration::from_millis(config.jwks_timeout_ms),
                Duration::from_secs(config.jwks_min_refresh_secs),
                Duration::from_secs(config.jwks_max_age_secs),
            )?)),
            (true, None, Some(document)) => Some(Arc::new(Jwks::fixed(document)?)),
            (true, None, None) => return Err(ConfigError::new(
                "JWT_ALGORITHMS has RS256 or ES256 but neither JWT_JWKS_URL nor JWT_JWKS is set",
            )),
            (false, _, _) => None,
        };
        if config.jwt_leeway_secs > 30 {
            return Err(ConfigError::new("JWT_LEEWAY_SECS must be between 0 and 30"));
        }
        let token_use = match config.jwt_token_use.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(name) => Some(TokenUse::from_name(name).ok_or_else(|| {
                ConfigError::new(format!("JWT_TOKEN_USE: `{name}` is not `access` or `id`"))
            })?),
        };
        Ok(Verifier {
            algorithms,
            hs256,
            jwks,
            issuer: split_list(config.jwt_issuer.as_deref()),
            audience: split_list(config.jwt_audience.as_deref()),
            client_ids: split_list(config.jwt_client_ids.as_deref()),
            token_use,
            leeway_secs: config.jwt_leeway_secs,
        })
    }

    /// Accept only tokens whose `iss` is one of these (and require `iss`).
    pub fn with_issuer(mut self, issuer: &[&str]) -> Verifier {
        self.issuer = issuer.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Accept only tokens whose `aud` names one of these (and require `aud`).
    pub fn with_audience(mut self, audience: &[&str]) -> Verifier {
        self.audience = audience.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Accept only tokens of these app clients: `client_id` of access tokens,
    /// `aud` of ID tokens (by the token's `token_use`).
    pub fn with_client_ids(mut self, client_ids: &[&str]) -> Verifier {
        self.client_ids = client_ids.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Accept only tokens whose `token_use` is this (and require it).
    pub fn with_token_use(mut self, token_use: TokenUse) -> Verifier {
        self.token_use = Some(token_use);
        self
    }

    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// Whether this verifier trusts a single issuer, whose callers are named
    /// by subject alone: one key source, and at most one `iss` (`JWT_ISSUER`).
    /// A JWKS without a configured `iss` counts as many issuers: an IdP's keys
    /// may sign the tokens of its other tenants. A shared secret without one
    /// is one issuer, whoever holds it.
    pub fn one_issuer(&self) -> bool {
        match (self.hs256.is_some(), self.jwks.is_some()) {
            (true, false) => self.issuer.len() <= 1,
            (false, true) => self.issuer.len() == 1,
            _ => false,
        }
    }

    /// Verifies a token and returns the caller.
    pub async fn caller(&self, token: &str) -> Result<Caller, Error> {
        self.principal(token).await.map(|(caller, _)| caller)
    }

    /// Verifies a token and returns the caller with what it is granted.
    pub async fn principal(&self, token: &str) -> Result<(Caller, Grants), Error> {
        let header = read_header(token)?;
        let alg = SUPPORTED
            .into_iter()
            .find(|a| format!("{a:?}") == header.alg)
            .filter(|a| self.algorithms.contains(a))
            .ok_or(AuthError::UnsupportedAlgorithm)?;
        let key = match alg {
            Algorithm::HS256 => self.hs256.clone().ok_or(AuthError::UnsupportedAlgorithm)?,
            _ => {
                let jwks = self.jwks.as_ref().ok_or(AuthError::UnsupportedAlgorithm)?;
                let kid = header.kid.as_deref().ok_or(AuthError::MissingKeyId)?;
                jwks.key(kid, alg).await?
            }
        };
        self.verify(token, &key, alg).map_err(Error::from)
    }

    fn verify(
        &self,
        token: &str,
        key: &DecodingKey,
        alg: Algorithm,
    ) -> Result<(Caller, Grants), AuthError> {
        let source = match alg {
            Algorithm::HS256 => KeySource::Hs256,
            _ => KeySource::Jwks,
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        let mut required = vec!["exp"];
        if !self.issuer.is_empty() {
            validation.set_issuer(&self.issuer);
            required.push("iss");
        }
        if self.audience.is_empty() {
            // Without a configured audience, `aud` is not ours to judge.
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.audience);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = decode::<Claims>(token, key, &validation).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            ErrorKind::InvalidSignature => AuthError::BadSignature,
            ErrorKind::InvalidAlgorithm => AuthError::AlgorithmMismatch,
            ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
                AuthError::UnsupportedAlgorithm
            }
            ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(claim.clone()),
            ErrorKind::InvalidClaimFormat(claim) => AuthError::InvalidClaim(claim.clone()),
            ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
            ErrorKind::InvalidAudience => AuthError::WrongAudience,
            _ => AuthError::Malformed,
        })?;
        let claims = data.claims;
        self.check_client(&claims)?;
        let grants = Grants::of(claims.scope.as_ref(), claims.groups.as_ref());
        let name = |v: Value| match v {
            Value::String(s) if !s.is_empty() => Some(s),
            _ => None,
        };
        // `id` may also be an integer, as user ids of older systems are
        // (RFC 7519 makes `sub` a string). A `sub` that is there but
        // unusable is not replaced by `id`.
        let id = |v: Value| match v {
            Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
            v => name(v),
        };
        let subject_claim = if claims.sub.is_some() { "sub" } else { "id" };
        let subject = match claims.sub {
            Some(sub) => name(sub),
            None => claims.id.and_then(id),
        }
        .ok_or(AuthError::MissingSubject)?;
        let issuer = if self.one_issuer() {
            None
        } else {
            // Without a configured issuer `iss` is unchecked: any string
            // names its issuer, anything else is refused.
            let iss = match &claims.iss {
                None => "",
                Some(Value::String(iss)) => iss.as_str(),
                Some(_) => return Err(AuthError::InvalidClaim("iss".into())),
            };
            Some((source, iss))
        };
        let caller = Caller::of(issuer, subject);
        if caller.0.len() > MAX_CALLER_BYTES {
            return Err(AuthError::InvalidClaim(subject_claim.into()));
        }
        Ok((caller, grants))
    }

    /// `token_use` and the app client, when configured (Cognito: an access
    /// token of one app client must not pass for another's, nor an ID token
    /// for an access token).
    fn check_client(&self, claims: &Claims) -> Result<(), AuthError> {
        let token_use = TokenUse::of_claim(claims.token_use.as_ref());
        if let Some(expected) = self.token_use {
            if claims.token_use.is_none() {
                return Err(AuthError::MissingClaim("token_use".into()));
            }
            if token_use != Some(expected) {
                return Err(AuthError::InvalidClaim("token_use".into()));
            }
        }
        if self.client_ids.is_empty() {
            return Ok(());
        }
        let listed = |v: &Value| {
            v.as_str()
                .is_some_and(|c| self.client_ids.iter().any(|l| l == c))
        };
        let (claim, found) = match token_use {
            // An ID token's `aud` may be a list (OIDC).
            Some(TokenUse::Id) => (
                "aud",
                claims.aud.as_ref().map(|aud| match aud {
                    Value::Array(items) => items.iter().any(listed),
                    one => listed(one),
                }),
            ),
            _ => ("client_id", claims.client_id.as_ref().map(listed)),
        };
        match found {
            None => Err(AuthError::MissingClaim(claim.into())),
            Some(true) => Ok(()),
            Some(false) => Err(AuthError::InvalidClaim(claim.into())),
        }
    }
}

/// `JWT_JWKS_URL` or `JWT_JWKS` (empty counts as unset), refusing both.
fn jwks_source(config: &AuthConfig) -> Result<(Option<&str>, Option<&str>), ConfigError> {
    let url = config.jwt_jwks_url.as_deref().filter(|u| !u.is_empty());
    let document = config.jwt_jwks.as_deref().filter(|d| !d.trim().is_empty());
    if url.is_some() && document.is_some() {
        return Err(ConfigError::new(
            "set JWT_JWKS_URL or JWT_JWKS (the key set itself), not both",
        ));
    }
    Ok((url, document))
}

fn read_header(token: &str) -> Result<RawHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed)?;
    serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)
}

fn parse_algorithms(list: &str) -> Result<Vec<Algorithm>, ConfigError> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let alg = SUPPORTED
            .into_iter()
            .find(|a| format!("{a:?}") == name)
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "JWT_ALGORITHMS: `{name}` is not one of HS256, RS256, ES256"
                ))
            })?;
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    Ok(out)
}

fn split_list(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A key from the JWKS: the key and the algorithm it declares, if any.
#[derive(Clone)]
struct CachedKey {
    key: DecodingKey,
    alg: Option<Algorithm>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, CachedKey>,
    /// When the set was last fetched successfully.
    fetched_at: Option<Instant>,
    /// When a fetch was last tried, and whether it failed.
    attempted_at: Option<Instant>,
    last_failed: bool,
}

/// The signing keys of an identity provider (Cognito, Auth0): fetched from a
/// JWKS URL and cached, or given whole in the configuration.
pub struct Jwks(KeySet);

enum KeySet {
    // Boxed: a pool and its cache are large beside a map.
    Fetched(Box<FetchedKeys>),
    /// `JWT_JWKS`: the set itself, for a network without a route to the IdP;
    /// never fetched, so a `kid` not in it is unknown.
    Fixed(HashMap<String, CachedKey>),
}

impl Jwks {
    pub fn new(
        url: &str,
        timeout: Duration,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Result<Jwks, ConfigError> {
        let http =
            HttpClient::new(timeout).map_err(|e| ConfigError::new(format!("JWT_JWKS_URL: {e}")))?;
        Ok(Jwks(KeySet::Fetched(Box::new(FetchedKeys {
            url: url.to_owned(),
            http,
            cache: tokio::sync::RwLock::new(KeyCache::default()),
            refreshing: tokio::sync::Mutex::new(()),
            min_refresh,
            max_age,
        }))))
    }

    /// A key set given as a JWKS document.
    pub fn fixed(document: &str) -> Result<Jwks, ConfigError> {
        let keys = parse_key_set(document.as_bytes())
            .map_err(|e| ConfigError::new(format!("JWT_JWKS is not a JWKS document: {e}")))?;
        if keys.is_empty() {
            return Err(ConfigError::new(
                "JWT_JWKS has no signing key with a `kid` that jobmatch can use",
            ));
        }
        Ok(Jwks(KeySet::Fixed(keys)))
    }

    /// Where the keys come from, for `Debug` (no key material).
    fn describe(&self) -> &str {
        match &self.0 {
            KeySet::Fetched(f) => &f.url,
            KeySet::Fixed(_) => "JWT_JWKS",
        }
    }

    /// The key for `kid`, usable with `alg`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, Error> {
        match &self.0 {
            KeySet::Fetched(f) => f.key(kid, alg).await,
            KeySet::Fixed(keys) => match keys.get(kid) {
                Some(k) => check_alg(k, alg),
                None => Err(AuthError::UnknownKey.into()),
            },
        }
    }
}

/// Keys fetched from a JWKS URL and cached. An unknown `kid` refreshes the
/// set, at most once per `min_refresh`, so that a flood of made-up key ids
/// cannot hammer the IdP.
struct FetchedKeys {
    url: String,
    http: HttpClient,
    cache: tokio::sync::RwLock<KeyCache>,
    /// One fetch at a time; callers that wait for it reuse its outcome.
    refreshing: tokio::sync::Mutex<()>,
    min_refresh: Duration,
    max_age: Duration,
}

impl FetchedKeys {
    /// The key for `kid`, usable with `alg`.
    async fn key(&self, kid: &str, alg: Algorithm) -> Result<DecodingKey, Error> {
        {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
            if let (true, Some(k)) = (fresh, cache.keys.get(kid)) {
                return check_alg(k, alg);
            }
        }
        let _guard = self.refreshing.lock().await;
        // Another caller may have refreshed while this one waited.
        let recently_tried = {
            let cache = self.cache.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < self.max_age);
            if let (true, Some(k)) = (fresh, cache.keys.get(kid)) {
                return check_alg(k, alg);
            }
            cache
                .attempted_at
                .is_some_and(|t| t.elapsed() < self.min_refresh)
        };
        // Bounded: at most one fetch per `min_refresh`, whatever the callers send.
        if !recently_tried {
            let fetched = self.fetch().await;
            let mut cache = self.cache.write().await;
            cache.attempted_at = Some(Instant::now());
            match fetched {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched_at = Some(Instant::now());
                    cache.last_failed = false;
                }
                Err(err) => {
                    cache.last_failed = true;
                    tracing::warn!(error = %err, "JWKS fetch failed");
                }
            }
        }
        let cache = self.cache.read().await;
        match cache.keys.get(kid) {
            // A stale key is better than none while the IdP is away.
            Some(k) => check_alg(k, alg),
            // The key may be one the IdP rotated in: not the caller's fault.
            None if cache.last_failed => Err(Error::unavailable(
                "jwks",
                "the key set could not be fetched",
            )),
            None => Err(AuthError::UnknownKey.into()),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, CachedKey>, Error> {
        let unavailable = |e: &dyn std::fmt::Display| Error::unavailable("jwks", e);
        let resp = self
            .http
            .get(&self.url)
            .await
            .map_err(|e| unavailable(&e))?;
        if !resp.status.is_success() {
            return Err(unavailable(&format!("HTTP {}", resp.status)));
        }
        let keys = parse_key_set(&resp.body).map_err(|e| unavailable(&e))?;
        tracing::info!(keys = keys.len(), "JWKS fetched");
        Ok(keys)
    }
}

/// The usable keys of a JWKS document, by `kid`. Keys without a `kid`, keys
/// not meant to verify signatures ([`verifies_signatures`]) and keys of kinds
/// jobmatch cannot use are skipped.
fn parse_key_set(document: &[u8]) -> Result<HashMap<String, CachedKey>, serde_json::Error> {
    let set: JwkSet = serde_json::from_slice(document)?;
    let mut keys = HashMap::new();
    for jwk in set.keys.iter().filter(|k| verifies_signatures(k)) {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(jwk) else {
            continue;
        };
        let alg = match jwk.common.key_algorithm {
            None => None,
            Some(a) => match a.to_string().parse::<Algorithm>() {
                Ok(alg) => Some(alg),
                // An algorithm jobmatch cannot name is none it may use.
                Err(_) => continue,
            },
        };
        keys.insert(kid, CachedKey { key, alg });
    }
    Ok(keys)
}

/// Whether a JWK is meant to verify signatures (RFC 7517 4.2, 4.3): `use`,
/// when given, is `sig`, and `key_ops`, when given, lists `verify`. An
/// encryption key of the same IdP (`use: enc`) shares the key type of a
/// signing key, so without this it would verify a token signed for it.
fn verifies_signatures(jwk: &jsonwebtoken::jwk::Jwk) -> bool {
    use jsonwebtoken::jwk::{KeyOperations, PublicKeyUse};
    let common = &jwk.common;
    common
        .public_key_use
        .as_ref()
        .is_none_or(|u| *u == PublicKeyUse::Signature)
        && common
            .key_operations
            .as_ref()
            .is_none_or(|ops| ops.contains(&KeyOperations::Verify))
}

/// A key that declares its algorithm is only good for that algorithm.
fn check_alg(key: &CachedKey, alg: Algorithm) -> Result<DecodingKey, Error> {
    match key.alg {
        Some(declared) if declared != alg => Err(AuthError::AlgorithmMismatch.into()),
        _ => Ok(key.key.clone()),
    }
}

/// Mints an HS256 token for `subject`, valid for `ttl_secs` (local development and tests).
pub fn mint_hs256(
    secret: &[u8],
    subject: &str,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_hs256_scoped(secret, subject, None, ttl_secs)
}

/// [`mint_hs256`] with a `scope` claim (space-separated scopes), as an
/// admin's token carries `jobs:read jobs:write`.
pub fn mint_hs256_scoped(
    secret: &[u8],
    subject: &str,
    scope: Option<&str>,
    ttl_secs: i64,
) -> Result<String, jsonwebtoken::errors::Error> {
    crate::jwt_crypto::install();
    let claims = Claims {
        sub: Some(Value::String(subject.to_owned())),
        exp: Some((chrono::Utc::now().timestamp() + ttl_secs).into()),
        scope: scope.map(|s| Value::String(s.to_owned())),
        ..Claims::default()
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
        crate::jwt_crypto::install();
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

    async fn reason(v: &Verifier, token: &str) -> AuthError {
        match v.caller(token).await {
            Err(Error::Unauthorized(reason)) => reason,
            other => panic!("expected a 401, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn caller_is_sub_then_id() {
        let v = Verifier::hs256(SECRET, 0);
        let t = token(
            json!({"sub": "alice", "id": "x", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(v.caller(&t).await.ok(), Some(Caller("alice".into())));
        let t = token(json!({"id": "bob", "exp": exp_in(60)}), SECRET);
        assert_eq!(v.caller(&t).await.ok(), Some(Caller("bob".into())));
        let t = token(json!({"id": 42, "exp": exp_in(60)}), SECRET);
        assert_eq!(v.caller(&t).await.ok(), Some(Caller("42".into())));
        for id in [json!(4.2), json!(true), json!(null)] {
            let t = token(json!({"id": id, "exp": exp_in(60)}), SECRET);
            assert_eq!(reason(&v, &t).await, AuthError::MissingSubject, "{id}");
        }
    }

    #[tokio::test]
    async fn rejects_each_bad_token_with_its_reason() {
        let v = Verifier::hs256(SECRET, 0);
        let expired = token(json!({"sub": "a", "exp": exp_in(-120)}), SECRET);
        assert_eq!(reason(&v, &expired).await, AuthError::Expired);
        let wrong_key = token(json!({"sub": "a", "exp": exp_in(60)}), b"other");
        assert_eq!(reason(&v, &wrong_key).await, AuthError::BadSignature);
        let no_exp = token(json!({"sub": "a"}), SECRET);
        assert_eq!(
            reason(&v, &no_exp).await,
            AuthError::MissingClaim("exp".into())
        );
        let no_sub = token(json!({"exp": exp_in(60)}), SECRET);
        assert_eq!(reason(&v, &no_sub).await, AuthError::MissingSubject);
        let nbf = token(
            json!({"sub": "a", "exp": exp_in(600), "nbf": exp_in(300)}),
            SECRET,
        );
        assert_eq!(reason(&v, &nbf).await, AuthError::NotYetValid);
        assert_eq!(reason(&v, "garbage").await, AuthError::Malformed);
    }

    #[tokio::test]
    async fn leeway_accepts_a_just_expired_token() {
        let t = token(json!({"sub": "a", "exp": exp_in(-10)}), SECRET);
        assert!(Verifier::hs256(SECRET, 30).caller(&t).await.is_ok());
        assert_eq!(
            reason(&Verifier::hs256(SECRET, 0), &t).await,
            AuthError::Expired
        );
    }

    #[tokio::test]
    async fn alg_none_is_rejected() {
        // header {"alg":"none","typ":"JWT"}, payload {"sub":"a","exp":9999999999}
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.";
        let v = Verifier::hs256(SECRET, 0);
        assert_eq!(reason(&v, t).await, AuthError::UnsupportedAlgorithm);
    }

    fn auth_config(vars: &[(&str, &str)]) -> AuthConfig {
        let vars = vars.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        envy::from_iter(vars).expect("config")
    }

    #[test]
    fn configuration_pins_algorithms_it_has_keys_for() {
        let secret = Secret::new("x".repeat(32));
        let v = Verifier::from_config(&auth_config(&[]), Some(&secret)).expect("hs");
        assert_eq!(v.algorithms(), [Algorithm::HS256]);
        let cfg = auth_config(&[("JWT_JWKS_URL", "https://idp.example/jwks.json")]);
        let v = Verifier::from_config(&cfg, None).expect("jwks");
        assert_eq!(v.algorithms(), [Algorithm::RS256, Algorithm::ES256]);
        let cfg = auth_config(&[("JWT_ALGORITHMS", "RS256")]);
        assert!(Verifier::from_config(&cfg, Some(&secret)).is_err());
        let cfg = auth_config(&[("JWT_ALGORITHMS", "none")]);
        assert!(Verifier::from_config(&cfg, Some(&secret)).is_err());
        assert!(Verifier::from_config(&auth_config(&[]), None).is_err());
        let short = Secret::new("short".into());
        assert!(Verifier::from_config(&auth_config(&[]), Some(&short)).is_err());
        let cfg = auth_config(&[("JWT_LEEWAY_SECS", "31")]);
        assert!(Verifier::from_config(&cfg, Some(&secret)).is_err());
    }

    #[test]
    fn beside_a_jwks_hs256_must_be_named() {
        let secret = Secret::new("x".repeat(32));
        let url = ("JWT_JWKS_URL", "https://idp.example/jwks.json");
        let cfg = auth_config(&[url]);
        assert_eq!(
            Verifier::accepted_algorithms(&cfg).expect("algorithms"),
            [Algorithm::RS256, Algorithm::ES256]
        );
        // The secret is at hand but HS256 is not named: ignored.
        let v = Verifier::from_config(&cfg, Some(&secret)).expect("jwks");
        assert_eq!(v.algorithms(), [Algorithm::RS256, Algorithm::ES256]);
        assert!(v.hs256.is_none());
        let cfg = auth_config(&[url, ("JWT_ALGORITHMS", "HS256,RS256")]);
        let v = Verifier::from_config(&cfg, Some(&secret)).expect("named");
        assert_eq!(v.algorithms(), [Algorithm::HS256, Algorithm::RS256]);
        let err = Verifier::from_config(&cfg, None).expect_err("named, no secret");
        assert!(
            err.to_string().contains("JWT_ALGORITHMS has HS256"),
            "{err}"
        );
        // No JWKS: HS256, with or without the list.
        assert_eq!(
            Verifier::accepted_algorithms(&auth_config(&[])).expect("algorithms"),
            [Algorithm::HS256]
        );
    }

    #[test]
    fn token_use_is_access_or_id() {
        let secret = Secret::new("x".repeat(32));
        for (value, expected) in [
            ("access", Some(TokenUse::Access)),
            ("id", Some(TokenUse::Id)),
            ("", None),
        ] {
            let cfg = auth_config(&[("JWT_TOKEN_USE", value)]);
            let v = Verifier::from_config(&cfg, Some(&secret)).expect(value);
            assert_eq!(v.token_use, expected, "{value}");
        }
        let cfg = auth_config(&[("JWT_TOKEN_USE", "refresh")]);
        let err = Verifier::from_config(&cfg, Some(&secret)).expect_err("refresh");
        assert!(err.to_string().contains("JWT_TOKEN_USE"), "{err}");
    }

    #[tokio::test]
    async fn a_present_sub_must_be_a_name() {
        let v = Verifier::hs256(SECRET, 0);
        for sub in [json!(""), json!(42), json!(null), json!(true)] {
            let t = token(json!({"sub": sub, "id": "bob", "exp": exp_in(60)}), SECRET);
            assert_eq!(reason(&v, &t).await, AuthError::MissingSubject, "{sub}");
        }
        // jsonwebtoken's own claim reading cannot skip a list or an object
        // where it expects a string `sub`: still a 401, as malformed.
        let t = token(
            json!({"sub": ["a"], "id": "bob", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(reason(&v, &t).await, AuthError::Malformed);
        let t = token(json!({"id": "", "exp": exp_in(60)}), SECRET);
        assert_eq!(reason(&v, &t).await, AuthError::MissingSubject);
    }

    #[tokio::test]
    async fn client_and_token_use_when_configured() {
        let v = Verifier::hs256(SECRET, 0)
            .with_client_ids(&["app-1", "app-2"])
            .with_token_use(TokenUse::Access);
        let access = |extra: serde_json::Value| {
            let mut c =
                json!({"sub": "a", "exp": exp_in(60), "token_use": "access", "client_id": "app-2"});
            c.as_object_mut()
                .expect("object")
                .extend(extra.as_object().expect("object").clone());
            token(c, SECRET)
        };
        assert!(v.caller(&access(json!({}))).await.is_ok());
        let cases = [
            (
                json!({"client_id": "app-3"}),
                AuthError::InvalidClaim("client_id".into()),
            ),
            (
                json!({"client_id": null}),
                AuthError::MissingClaim("client_id".into()),
            ),
            (
                json!({"token_use": "id"}),
                AuthError::InvalidClaim("token_use".into()),
            ),
            (
                json!({"token_use": 1}),
                AuthError::InvalidClaim("token_use".into()),
            ),
            (
                json!({"token_use": null}),
                AuthError::MissingClaim("token_use".into()),
            ),
        ];
        for (extra, expected) in cases {
            assert_eq!(
                reason(&v, &access(extra.clone())).await,
                expected,
                "{extra}"
            );
        }
        // ID tokens name their client in `aud`, which may be a list.
        let v = Verifier::hs256(SECRET, 0).with_client_ids(&["app-1"]);
        let id = |aud: serde_json::Value| {
            token(
                json!({"sub": "a", "exp": exp_in(60), "token_use": "id", "aud": aud}),
                SECRET,
            )
        };
        assert!(v.caller(&id(json!("app-1"))).await.is_ok());
        assert!(v.caller(&id(json!(["x", "app-1"]))).await.is_ok());
        assert_eq!(
            reason(&v, &id(json!("app-1x"))).await,
            AuthError::InvalidClaim("aud".into())
        );
    }

    /// The RSA key of the api's fixtures.
    fn rsa_key() -> EncodingKey {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../functions/api/tests/fixtures/rsa_test_key.pem"
        ))
        .expect("fixture");
        EncodingKey::from_rsa_pem(&pem).expect("rsa key")
    }

    /// Its public JWK with `kid` and the members of `extra` (`use`, `key_ops`...).
    fn rsa_jwk(kid: &str, extra: serde_json::Value) -> serde_json::Value {
        crate::jwt_crypto::install();
        let jwk =
            jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa_key(), Algorithm::RS256).expect("jwk");
        let mut jwk = serde_json::to_value(jwk).expect("jwk json");
        jwk["kid"] = json!(kid);
        jwk.as_object_mut()
            .expect("object")
            .extend(extra.as_object().expect("object").clone());
        jwk
    }

    /// A JWKS document of that key as `kid` "k1", and the key to sign with.
    fn rsa_jwks(extra: serde_json::Value) -> (String, EncodingKey) {
        let document = json!({"keys": [rsa_jwk("k1", extra)]}).to_string();
        (document, rsa_key())
    }

    fn rs256_with(kid: &str, claims: serde_json::Value, key: &EncodingKey) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        encode(&header, &claims, key).expect("sign")
    }

    fn rs256(claims: serde_json::Value, key: &EncodingKey) -> String {
        rs256_with("k1", claims, key)
    }

    async fn caller_of(v: &Verifier, token: &str) -> String {
        v.caller(token).await.expect("a valid token").0
    }

    #[tokio::test]
    async fn with_one_issuer_the_caller_is_the_subject() {
        let t = |iss: &str| {
            token(
                json!({"sub": "alice", "iss": iss, "exp": exp_in(60)}),
                SECRET,
            )
        };
        let v = Verifier::hs256(SECRET, 0);
        assert!(v.one_issuer());
        assert_eq!(caller_of(&v, &t("https://a.example")).await, "alice");
        let v = Verifier::hs256(SECRET, 0).with_issuer(&["https://a.example"]);
        assert!(v.one_issuer());
        assert_eq!(caller_of(&v, &t("https://a.example")).await, "alice");
        let (jwks, key) = rsa_jwks(json!({}));
        let jwks = || Jwks::fixed(&jwks).expect("jwks");
        let v =
            Verifier::jwks(jwks(), &[Algorithm::RS256], 0).with_issuer(&["https://idp.example"]);
        assert!(v.one_issuer());
        let claims = json!({"sub": "alice", "iss": "https://idp.example", "exp": exp_in(60)});
        assert_eq!(caller_of(&v, &rs256(claims, &key)).await, "alice");
    }

    #[tokio::test]
    async fn two_issuers_never_name_the_same_caller() {
        let t = |iss: &str, sub: &str| {
            token(json!({"sub": sub, "iss": iss, "exp": exp_in(60)}), SECRET)
        };
        let v = Verifier::hs256(SECRET, 0).with_issuer(&["https://a.example", "a|b", "a"]);
        assert!(!v.one_issuer());
        let alice_a = caller_of(&v, &t("https://a.example", "alice")).await;
        assert_eq!(alice_a, "hs256|https://a.example|alice");
        // `|` and `%` in `iss` are encoded, the subject is kept whole: the
        // first two `|` split the name.
        assert_eq!(caller_of(&v, &t("a|b", "c")).await, "hs256|a%7Cb|c");
        assert_eq!(caller_of(&v, &t("a", "b|c")).await, "hs256|a|b|c");
        let v = Verifier::hs256(SECRET, 0).with_issuer(&["50%", "50%25"]);
        assert_eq!(caller_of(&v, &t("50%", "x")).await, "hs256|50%25|x");
        assert_eq!(caller_of(&v, &t("50%25", "x")).await, "hs256|50%2525|x");
        // An `id` names the subject as `sub` does.
        let v = Verifier::hs256(SECRET, 0).with_issuer(&["https://a.example", "https://b.example"]);
        let by_id = token(
            json!({"id": 42, "iss": "https://b.example", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(caller_of(&v, &by_id).await, "hs256|https://b.example|42");
    }

    /// The shared secret and the IdP's keys are two issuers, even for tokens
    /// that carry the same `iss` and `sub`: a holder of the secret cannot act
    /// as the IdP's user.
    #[tokio::test]
    async fn a_shared_secret_beside_a_jwks_is_another_issuer() {
        let (document, key) = rsa_jwks(json!({}));
        let cfg = auth_config(&[
            ("JWT_JWKS", document.as_str()),
            ("JWT_ALGORITHMS", "HS256,RS256"),
            ("JWT_ISSUER", "https://idp.example"),
        ]);
        let secret = "s".repeat(32);
        let v = Verifier::from_config(&cfg, Some(&Secret::new(secret.clone()))).expect("verifier");
        assert!(!v.one_issuer());
        let claims = json!({"sub": "alice", "iss": "https://idp.example", "exp": exp_in(60)});
        assert_eq!(
            caller_of(&v, &rs256(claims.clone(), &key)).await,
            "jwks|https://idp.example|alice"
        );
        assert_eq!(
            caller_of(&v, &token(claims, secret.as_bytes())).await,
            "hs256|https://idp.example|alice"
        );
        // A JWKS without a configured issuer may sign for several: `iss`
        // names the caller's, an absent one is empty.
        let v = Verifier::jwks(
            Jwks::fixed(&document).expect("jwks"),
            &[Algorithm::RS256],
            0,
        );
        assert!(!v.one_issuer());
        let claims = json!({"sub": "alice", "iss": "https://t2.idp.example", "exp": exp_in(60)});
        assert_eq!(
            caller_of(&v, &rs256(claims, &key)).await,
            "jwks|https://t2.idp.example|alice"
        );
        let claims = json!({"sub": "alice", "exp": exp_in(60)});
        assert_eq!(caller_of(&v, &rs256(claims, &key)).await, "jwks||alice");
        let claims = json!({"sub": "alice", "iss": 7, "exp": exp_in(60)});
        assert_eq!(
            reason(&v, &rs256(claims, &key)).await,
            AuthError::InvalidClaim("iss".into())
        );
    }

    #[tokio::test]
    async fn a_caller_name_longer_than_the_owner_index_takes_is_refused() {
        let v = Verifier::hs256(SECRET, 0);
        let at_most = token(
            json!({"sub": "a".repeat(MAX_CALLER_BYTES), "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(caller_of(&v, &at_most).await.len(), MAX_CALLER_BYTES);
        let over = token(
            json!({"sub": "a".repeat(MAX_CALLER_BYTES + 1), "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(
            reason(&v, &over).await,
            AuthError::InvalidClaim("sub".into())
        );
        // The issuer counts: the whole name is bounded.
        let v = Verifier::hs256(SECRET, 0).with_issuer(&["i1", "i2"]);
        let over = token(
            json!({"id": "a".repeat(MAX_CALLER_BYTES - 8), "iss": "i1", "exp": exp_in(60)}),
            SECRET,
        );
        assert_eq!(
            reason(&v, &over).await,
            AuthError::InvalidClaim("id".into())
        );
    }

    #[test]
    fn only_keys_meant_to_verify_signatures_are_kept() {
        let cases = [
            (json!({}), true),
            (json!({"use": "sig"}), true),
            (json!({"key_ops": ["verify"]}), true),
            (json!({"key_ops": ["sign", "verify"]}), true),
            (json!({"use": "sig", "key_ops": ["verify"]}), true),
            (json!({"alg": "RS256"}), true),
            (json!({"use": "enc"}), false),
            (json!({"use": "tls"}), false),
            (json!({"key_ops": ["encrypt", "wrapKey"]}), false),
            (json!({"key_ops": ["sign"]}), false),
            (json!({"key_ops": []}), false),
            (json!({"use": "sig", "key_ops": ["decrypt"]}), false),
            (json!({"use": "enc", "key_ops": ["verify"]}), false),
            // An encryption algorithm, or one jobmatch cannot name.
            (json!({"alg": "RSA-OAEP"}), false),
            (json!({"alg": "RS1024"}), false),
        ];
        for (extra, kept) in cases {
            let document = json!({"keys": [rsa_jwk("k1", extra.clone())]}).to_string();
            let keys = parse_key_set(document.as_bytes()).expect("a JWKS document");
            assert_eq!(keys.contains_key("k1"), kept, "{extra}");
        }
    }

    /// The same key material published twice, for signatures and for
    /// encryption: a token naming the encryption key's `kid` is refused.
    #[tokio::test]
    async fn an_encryption_key_never_verifies_a_signature() {
        let document = json!({"keys": [
            rsa_jwk("enc-1", json!({"use": "enc"})),
            rsa_jwk("ops-1", json!({"key_ops": ["encrypt"]})),
            rsa_jwk("sig-1", json!({"use": "sig"})),
        ]})
        .to_string();
        let v = Verifier::jwks(
            Jwks::fixed(&document).expect("jwks"),
            &[Algorithm::RS256],
            0,
        )
        .with_issuer(&["https://idp.example"]);
        let claims = json!({"sub": "alice", "iss": "https://idp.example", "exp": exp_in(60)});
        let key = rsa_key();
        assert_eq!(
            caller_of(&v, &rs256_with("sig-1", claims.clone(), &key)).await,
            "alice"
        );
        for kid in ["enc-1", "ops-1"] {
            let t = rs256_with(kid, claims.clone(), &key);
            assert_eq!(reason(&v, &t).await, AuthError::UnknownKey, "{kid}");
        }
        // A set of encryption keys only is refused at init.
        let (document, _) = rsa_jwks(json!({"use": "enc"}));
        let err = Jwks::fixed(&document).err().expect("no signing key");
        assert!(err.to_string().contains("no signing key"), "{err}");
    }

    #[tokio::test]
    async fn scopes_and_groups_grant_the_admin_routes_and_nothing_else_does() {
        let v = Verifier::hs256(SECRET, 0);
        let scoped = mint_hs256_scoped(SECRET, "ops", Some("openid jobs:read"), 60).unwrap();
        let (_, grants) = v.principal(&scoped).await.unwrap();
        assert_eq!(grants.scopes, ["openid", "jobs:read"]);
        assert!(grants.require(SCOPE_JOBS_READ, None).is_ok());
        let denied = grants.require(SCOPE_JOBS_WRITE, None).unwrap_err();
        assert_eq!(denied.status(), 403);
        assert!(denied.to_string().contains("`jobs:write`"), "{denied}");

        let grouped = token(
            json!({"sub": "ops", "exp": exp_in(60), "cognito:groups": ["staff", "admins"]}),
            SECRET,
        );
        let (_, grants) = v.principal(&grouped).await.unwrap();
        assert!(grants.require(SCOPE_JOBS_WRITE, Some("admins")).is_ok());
        assert!(grants.require(SCOPE_JOBS_WRITE, Some("owners")).is_err());
        assert!(grants.require(SCOPE_JOBS_WRITE, Some("")).is_err());
        assert!(grants.require(SCOPE_JOBS_WRITE, None).is_err());

        // A scope of another shape, or a group given as a string, grants nothing.
        let odd = token(
            json!({"sub": "ops", "exp": exp_in(60), "scope": ["jobs:write"], "cognito:groups": "admins"}),
            SECRET,
        );
        let (_, grants) = v.principal(&odd).await.unwrap();
        assert_eq!(grants, Grants::default());
        let plain = mint_hs256(SECRET, "user", 60).unwrap();
        let (_, grants) = v.principal(&plain).await.unwrap();
        assert!(grants.require(SCOPE_JOBS_READ, Some("admins")).is_err());
    }
}

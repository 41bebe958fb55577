//! Typed configuration, read once from the environment at cold start. A
//! missing or malformed variable stops the function with a message naming it.

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A secret string that never shows in logs or debug output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {0} (see docs/api.md \"Configuration\")")]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> ConfigError {
        ConfigError(message.into())
    }
}

/// Reads a config struct from the environment; field `foo_bar` is `FOO_BAR`.
pub fn from_env<T: DeserializeOwned>() -> Result<T, ConfigError> {
    envy::from_env::<T>().map_err(|e| {
        ConfigError(match e {
            envy::Error::MissingValue(field) => format!("{} is not set", field.to_uppercase()),
            envy::Error::Custom(msg) => msg.to_uppercase(),
        })
    })
}

fn default_ttl_secs() -> i64 {
    24 * 3600
}
fn default_leeway() -> u64 {
    5
}
fn default_jwks_min_refresh_secs() -> u64 {
    30
}
fn default_jwks_max_age_secs() -> u64 {
    3600
}
fn default_jwks_timeout_ms() -> u64 {
    2000
}
fn default_api_pool() -> u32 {
    2
}
fn default_worker_pool() -> u32 {
    4
}
fn default_cache_result_ttl_secs() -> u64 {
    3600
}
/// ~10 kB a result of 20 matches: ~100 MB at most.
fn default_cache_max_results() -> i64 {
    10_000
}
/// A model change gets new keys anyway; the age bounds the table.
fn default_cache_embedding_ttl_secs() -> u64 {
    7 * 24 * 3600
}
/// ~1.6 kB a vector: ~80 MB at most.
fn default_cache_max_embeddings() -> i64 {
    50_000
}
fn default_max_receive_count() -> u32 {
    3
}
fn default_fallback_timeout_ms() -> u64 {
    30_000
}
fn default_deadline_margin_ms() -> u64 {
    2_000
}
fn default_acquire_timeout_ms() -> u64 {
    5_000
}
fn default_legacy_text_wait_ms() -> u64 {
    20_000
}
/// DESIGN.md "Fair use": 2,048 word pieces, 8 of the model's windows.
fn default_max_text_word_pieces() -> usize {
    2_048
}
/// Handed back this often, a task waited at least 20 invocations' time
/// (2 min locally, 20 min in AWS) without getting to run: something else
/// than its turn is wrong, and its receives count again.
fn default_max_deferrals() -> u32 {
    20
}

/// `api`: submit, legacy match, health.
#[derive(Debug, Deserialize)]
pub struct ApiConfig {
    pub tasks_table: String,
    pub queue_url: String,
    pub database_url: Secret,
    #[serde(default = "default_ttl_secs")]
    pub task_ttl_secs: i64,
    #[serde(default = "default_api_pool")]
    pub db_max_connections: u32,
    /// Overrides the exact-versus-HNSW gate derived from the table's size.
    #[serde(default)]
    pub exact_scan_max_rows: Option<i64>,
    /// How long a legacy call with `text` waits for the worker's result
    /// before answering 503 with the task's id; below the function timeout.
    #[serde(default = "default_legacy_text_wait_ms")]
    pub legacy_text_wait_ms: u64,
    /// The quota per caller (DESIGN.md "Fair use"): its buckets' table, and
    /// the requests a second and at once. No defaults here: the template's
    /// parameters and the local stack's `.local/env` set them.
    pub quota_table: String,
    pub quota_rate: f64,
    pub quota_burst: u32,
    /// A `text` of more word pieces (by the model's tokenizer) is refused
    /// with 422 before anything is stored.
    #[serde(default = "default_max_text_word_pieces")]
    pub max_text_word_pieces: usize,
    /// Hosts a callback may name over `http`, their addresses unchecked
    /// (comma-separated; the local stack's receivers). Empty in AWS.
    #[serde(default)]
    pub callback_allow_hosts: String,
}

impl ApiConfig {
    /// The bucket of `QUOTA_RATE` and `QUOTA_BURST`, checked.
    pub fn quota_policy(&self) -> Result<crate::quota::Policy, ConfigError> {
        crate::quota::Policy::new(self.quota_rate, self.quota_burst).map_err(ConfigError)
    }
}

/// `worker`: runs queued matches.
#[derive(Debug, Deserialize)]
pub struct WorkerConfig {
    pub tasks_table: String,
    /// The match queue, where a task out of time is handed back.
    pub queue_url: String,
    pub database_url: Secret,
    /// Must equal the queue's redrive `maxReceiveCount`.
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    #[serde(default = "default_worker_pool")]
    pub db_max_connections: u32,
    /// Overrides the exact-versus-HNSW gate derived from the table's size.
    #[serde(default)]
    pub exact_scan_max_rows: Option<i64>,
    /// The invocation's time budget when the runtime sends no deadline (local
    /// runtimes); keep it below the queue's visibility timeout.
    #[serde(default = "default_fallback_timeout_ms")]
    pub fallback_timeout_ms: u64,
    /// No message starts, or runs on, closer than this to the invocation deadline.
    #[serde(default = "default_deadline_margin_ms")]
    pub deadline_margin_ms: u64,
    /// A task out of time is handed back as a new message at most this
    /// often; then it is retried like any transient failure.
    #[serde(default = "default_max_deferrals")]
    pub max_deferrals: u32,
    /// The api's bound, checked again: a text of more word pieces fails its
    /// task (`invalid_request`) instead of being embedded.
    #[serde(default = "default_max_text_word_pieces")]
    pub max_text_word_pieces: usize,
    /// Pool acquisition gives up after this; keep it below the function timeout.
    #[serde(default = "default_acquire_timeout_ms")]
    pub db_acquire_timeout_ms: u64,
    /// The embedding model's folder (config.json, tokenizer.json,
    /// model.safetensors): the layer in AWS, `.model/` locally.
    pub model_dir: std::path::PathBuf,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}
fn default_expired_retention_days() -> u32 {
    30
}
fn default_ingest_fallback_timeout_ms() -> u64 {
    900_000
}

/// `ingest`: postings from the ingest bucket, as `jobmatch_writer`.
#[derive(Debug, Deserialize)]
pub struct IngestConfig {
    /// The writer's login through RDS Proxy (not the readers' DATABASE_URL).
    pub writer_database_url: Secret,
    pub ingests_table: String,
    pub ingest_bucket: String,
    /// Where a large object's next part is queued.
    pub ingest_queue_url: String,
    #[serde(default = "two")]
    pub db_max_connections: u32,
    /// Postings more than this many days past their `valid_through` are
    /// deleted by the scheduled run.
    #[serde(default = "default_expired_retention_days")]
    pub expired_retention_days: u32,
    /// The invocation's time budget when the runtime sends no deadline.
    #[serde(default = "default_ingest_fallback_timeout_ms")]
    pub ingest_fallback_timeout_ms: u64,
    /// As the worker's.
    pub model_dir: std::path::PathBuf,
}

/// `catalogue`: an admin's routes, as `jobmatch_writer`.
#[derive(Debug, Deserialize)]
pub struct CatalogueConfig {
    pub writer_database_url: Secret,
    pub ingests_table: String,
    pub ingest_bucket: String,
    #[serde(default = "one")]
    pub db_max_connections: u32,
    /// Members of this `cognito:groups` group may use the admin routes
    /// without the scopes; empty or unset: none.
    #[serde(default)]
    pub admin_group: Option<String>,
}

/// `status`: reads tasks.
#[derive(Debug, Deserialize)]
pub struct StatusConfig {
    pub tasks_table: String,
}

/// The cache (DESIGN.md "Cache"), for `api` and `worker`: how long and how
/// many results and text vectors are kept (`shared::adapters::cache`).
#[derive(Debug, Deserialize)]
pub struct CacheConfig {
    /// A result is served at most this long after it was computed, and only
    /// while the data versions it was computed at are current.
    #[serde(default = "default_cache_result_ttl_secs")]
    pub cache_result_ttl_secs: u64,
    #[serde(default = "default_cache_max_results")]
    pub cache_max_results: i64,
    #[serde(default = "default_cache_embedding_ttl_secs")]
    pub cache_embedding_ttl_secs: u64,
    #[serde(default = "default_cache_max_embeddings")]
    pub cache_max_embeddings: i64,
    /// The key of the entries' MACs (`shared::cache_mac`), at least 32
    /// bytes; or `CACHE_MAC_KEY_ARN`, a Secrets Manager secret holding it,
    /// fetched once at init. One of them is required.
    #[serde(default)]
    pub cache_mac_key: Option<Secret>,
    #[serde(default)]
    pub cache_mac_key_arn: Option<String>,
}

#[cfg(feature = "postgres")]
impl CacheConfig {
    pub fn limits(&self) -> crate::adapters::cache::CacheLimits {
        use std::time::Duration;
        crate::adapters::cache::CacheLimits {
            result_ttl: Duration::from_secs(self.cache_result_ttl_secs),
            max_results: self.cache_max_results,
            embedding_ttl: Duration::from_secs(self.cache_embedding_ttl_secs),
            max_embeddings: self.cache_max_embeddings,
        }
    }
}

/// The completion callbacks' function (`functions/callback`).
#[derive(Debug, Deserialize)]
pub struct CallbackConfig {
    /// Its own queue: a notice per ended task, and the retries' waits.
    pub callback_queue_url: String,
    /// The signing secrets, `whsec_...` separated by spaces (two during a
    /// rotation): inline (the local stack), or a Secrets Manager secret.
    #[serde(default)]
    pub webhook_secret: Option<Secret>,
    #[serde(default)]
    pub webhook_secret_arn: Option<String>,
    /// Hosts a callback may name over `http`, their addresses unchecked (the
    /// local stack's receivers). Empty in AWS.
    #[serde(default)]
    pub callback_allow_hosts: String,
    /// The wait before each retry after the first attempt, in seconds; once
    /// they are spent, the queue's redrive dead-letters the notice.
    #[serde(default = "default_callback_retry_delays_secs")]
    pub callback_retry_delays_secs: Vec<u64>,
    /// One delivery's bound: connect, TLS, request and the answer's head.
    #[serde(default = "default_callback_timeout_ms")]
    pub callback_timeout_ms: u64,
}

/// Standard Webhooks' schedule after the first try: 5 s, 5 min, 30 min,
/// 2 h, 5 h, 10 h, 10 h; 27.6 hours in all.
fn default_callback_retry_delays_secs() -> Vec<u64> {
    vec![5, 300, 1_800, 7_200, 18_000, 36_000, 36_000]
}

fn default_callback_timeout_ms() -> u64 {
    10_000
}

/// The dead-letter consumer (`functions/deadletter`).
#[derive(Debug, Deserialize)]
pub struct DeadLetterConfig {
    pub tasks_table: String,
}

/// Token verification, for `api` and `status`. HS256 needs `JWT_SECRET`, or
/// `JWT_SECRET_ARN` (a Secrets Manager secret, fetched once at init); RS256 and
/// ES256 need `JWT_JWKS_URL` or `JWT_JWKS`. `JWT_ALGORITHMS` pins the accepted
/// algorithms (default: RS256 and ES256 with a JWKS, else HS256; beside a
/// JWKS, HS256 only when named). Lists are comma-separated.
#[derive(Debug, Deserialize)]
pub struct AuthConfig {
    #[serde(default)]
    pub jwt_secret: Option<Secret>,
    #[serde(default)]
    pub jwt_secret_arn: Option<String>,
    #[serde(default)]
    pub jwt_jwks_url: Option<String>,
    /// The JWKS document itself, instead of `JWT_JWKS_URL`: for functions
    /// with no route to the IdP (private subnets without NAT).
    #[serde(default)]
    pub jwt_jwks: Option<String>,
    #[serde(default)]
    pub jwt_algorithms: Option<String>,
    #[serde(default)]
    pub jwt_issuer: Option<String>,
    #[serde(default)]
    pub jwt_audience: Option<String>,
    /// Accepted app clients: `client_id` of access tokens, `aud` of ID tokens
    /// (Cognito). Unset or empty: not checked.
    #[serde(default)]
    pub jwt_client_ids: Option<String>,
    /// `access` or `id`: the `token_use` a token must have (Cognito). Unset or
    /// empty: not checked.
    #[serde(default)]
    pub jwt_token_use: Option<String>,
    /// Clock leeway for `exp`/`nbf`, 0..30 s.
    #[serde(default = "default_leeway")]
    pub jwt_leeway_secs: u64,
    /// At most one JWKS fetch per this many seconds (an unknown `kid` refreshes).
    #[serde(default = "default_jwks_min_refresh_secs")]
    pub jwks_min_refresh_secs: u64,
    /// Cached keys are refetched after this long.
    #[serde(default = "default_jwks_max_age_secs")]
    pub jwks_max_age_secs: u64,
    #[serde(default = "default_jwks_timeout_ms")]
    pub jwks_timeout_ms: u64,
}

/// How PostgreSQL authenticates the functions (`DB_AUTH`): `password` (the
/// default; `DATABASE_URL` holds it) or `iam` (RDS IAM auth through RDS Proxy;
/// `DATABASE_URL` names host, port, user and database without a password).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbAuth {
    #[default]
    Password,
    Iam,
}

/// Read beside `ApiConfig`/`WorkerConfig` by every function that opens a pool.
#[derive(Debug, Deserialize)]
pub struct DbAuthConfig {
    #[serde(default)]
    pub db_auth: DbAuth,
}

/// `migrate`: the CloudFormation custom resource that migrates on deploy.
#[derive(Debug, Deserialize)]
pub struct MigrateConfig {
    pub database_url: Secret,
    /// A Secrets Manager secret `{"username", "password"}`: the functions'
    /// login role, made or updated after the migrations. Unset: none is made.
    #[serde(default)]
    pub functions_db_secret_arn: Option<String>,
    /// The same for the writer's login role (ingest and catalogue), a
    /// member of `jobmatch_writer`. Unset: none is made.
    #[serde(default)]
    pub writer_db_secret_arn: Option<String>,
}

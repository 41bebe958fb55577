//! Typed configuration, read once from the environment at cold start. A
//! missing or malformed variable stops the function with a message naming it.

use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A secret string that never shows in logs or debug output.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
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
#[error("configuration: {0} (see README \"Configuration\")")]
pub struct ConfigError(String);

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
fn default_api_pool() -> u32 {
    2
}
fn default_worker_pool() -> u32 {
    4
}
fn default_max_receive_count() -> u32 {
    3
}
fn default_exact_scan_max_rows() -> i64 {
    20_000
}

/// `api`: submit, legacy match, health.
#[derive(Debug, Deserialize)]
pub struct ApiConfig {
    pub tasks_table: String,
    pub queue_url: String,
    pub database_url: Secret,
    pub jwt_secret: Secret,
    #[serde(default = "default_leeway")]
    pub jwt_leeway_secs: u64,
    #[serde(default = "default_ttl_secs")]
    pub task_ttl_secs: i64,
    #[serde(default = "default_api_pool")]
    pub db_max_connections: u32,
    #[serde(default = "default_exact_scan_max_rows")]
    pub exact_scan_max_rows: i64,
}

/// `worker`: runs queued matches.
#[derive(Debug, Deserialize)]
pub struct WorkerConfig {
    pub tasks_table: String,
    pub database_url: Secret,
    /// Must equal the queue's redrive `maxReceiveCount`.
    #[serde(default = "default_max_receive_count")]
    pub max_receive_count: u32,
    #[serde(default = "default_worker_pool")]
    pub db_max_connections: u32,
    #[serde(default = "default_exact_scan_max_rows")]
    pub exact_scan_max_rows: i64,
}

/// `status`: reads tasks.
#[derive(Debug, Deserialize)]
pub struct StatusConfig {
    pub tasks_table: String,
    pub jwt_secret: Secret,
    #[serde(default = "default_leeway")]
    pub jwt_leeway_secs: u64,
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
}

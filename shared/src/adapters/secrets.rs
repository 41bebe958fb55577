//! Secrets Manager: the HS256 secret and the cache's MAC key in AWS, each
//! fetched once at init, and the token verifier the configuration describes.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;

use crate::auth::Verifier;
use crate::cache_mac::CacheMac;
use crate::config::{AuthConfig, CacheConfig, ConfigError, Secret};

/// Reads a secret's string value by ARN (or name); errors name `variable`,
/// the setting that gave the ARN.
pub async fn fetch_secret(
    client: &Client,
    arn: &str,
    variable: &str,
) -> Result<Secret, ConfigError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            ConfigError::new(format!(
                "{variable}: cannot read the secret: {}",
                DisplayErrorContext(e)
            ))
        })?;
    out.secret_string()
        .filter(|s| !s.is_empty())
        .map(|s| Secret::new(s.to_owned()))
        .ok_or_else(|| ConfigError::new(format!("{variable}: the secret has no string value")))
}

/// The cache's MAC key: `CACHE_MAC_KEY` wins over `CACHE_MAC_KEY_ARN`, whose
/// secret is fetched here, once per container. Neither set stops the
/// function: an unauthenticated cache would serve what a database login
/// alone can plant, and a disabled one would hide the mistake as slowness.
pub async fn cache_mac(config: &CacheConfig, client: &Client) -> Result<CacheMac, ConfigError> {
    let inline = config
        .cache_mac_key
        .as_ref()
        .filter(|s| !s.expose().is_empty());
    match (inline, config.cache_mac_key_arn.as_deref()) {
        (Some(key), _) => CacheMac::new(key, "CACHE_MAC_KEY"),
        (None, Some(arn)) if !arn.is_empty() => CacheMac::new(
            &fetch_secret(client, arn, "CACHE_MAC_KEY_ARN").await?,
            "CACHE_MAC_KEY_ARN",
        ),
        (None, _) => Err(ConfigError::new(
            "CACHE_MAC_KEY or CACHE_MAC_KEY_ARN is not set (the key that authenticates the cache's entries)",
        )),
    }
}

/// The verifier for `config`: `JWT_SECRET` wins over `JWT_SECRET_ARN`, whose
/// secret is fetched here, once per container, and only when HS256 is
/// accepted: with HS256 off the function never reads the shared secret.
pub async fn verifier(config: &AuthConfig, client: &Client) -> Result<Verifier, ConfigError> {
    if !Verifier::accepted_algorithms(config)?.contains(&jsonwebtoken::Algorithm::HS256) {
        return Verifier::from_config(config, None);
    }
    let inline = config.jwt_secret.clone().filter(|s| !s.expose().is_empty());
    let secret = match (inline, config.jwt_secret_arn.as_deref()) {
        (Some(secret), _) => Some(secret),
        (None, Some(arn)) if !arn.is_empty() => {
            Some(fetch_secret(client, arn, "JWT_SECRET_ARN").await?)
        }
        (None, _) => None,
    };
    Verifier::from_config(config, secret.as_ref())
}

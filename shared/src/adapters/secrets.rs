//! Secrets Manager: the HS256 secret in AWS, fetched once at init, and the
//! token verifier the configuration describes.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use aws_sdk_secretsmanager::Client;

use crate::auth::Verifier;
use crate::config::{AuthConfig, ConfigError, Secret};

/// Reads a secret's string value by ARN (or name).
pub async fn fetch_secret(client: &Client, arn: &str) -> Result<Secret, ConfigError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            ConfigError::new(format!(
                "JWT_SECRET_ARN: cannot read the secret: {}",
                DisplayErrorContext(e)
            ))
        })?;
    out.secret_string()
        .filter(|s| !s.is_empty())
        .map(|s| Secret::new(s.to_owned()))
        .ok_or_else(|| ConfigError::new("JWT_SECRET_ARN: the secret has no string value"))
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
        (None, Some(arn)) if !arn.is_empty() => Some(fetch_secret(client, arn).await?),
        (None, _) => None,
    };
    Verifier::from_config(config, secret.as_ref())
}

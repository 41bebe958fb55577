//! The one place that loads the AWS SDK config (region, credentials,
//! endpoint) from the environment: `load` for the CLI, the tests and the
//! benchmark, `load_for_function` for the Lambda functions.

use std::time::Duration;

use aws_config::environment::credentials::EnvironmentVariableCredentialsProvider;
use aws_config::identity::IdentityCache;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::provider::{error::CredentialsError, ProvideCredentials};
use aws_types::os_shim_internal::Env;
use aws_types::service_config::{LoadServiceConfig, ServiceConfigKey};

use crate::http_client::{sdk_http_client, TlsError};

/// `aws_config::load_from_env()` with jobmatch's HTTP client
/// ([`crate::http_client`]): the default credential chain (environment,
/// profile, web identity, ECS, instance metadata) for the CLI, the tests and
/// the benchmark.
pub async fn load() -> Result<SdkConfig, TlsError> {
    Ok(aws_config::defaults(BehaviorVersion::latest())
        .http_client(sdk_http_client()?)
        .load()
        .await)
}

/// Why [`load_for_function`] cannot build the SDK config.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION)")]
    NoRegion,
    #[error(
        "no AWS credentials in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY): {0}"
    )]
    Credentials(#[source] CredentialsError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// The SDK config of a Lambda function, from environment variables alone:
/// Lambda sets the region and the execution role's credentials there, and so
/// does the local stack. Skipping `aws_config`'s default chain keeps STS,
/// instance metadata and the profile-file parser out of the bootstraps.
/// Endpoint URLs follow the SDK's environment rules (see [`EnvEndpoints`]),
/// and retries, timeouts and the identity cache are `load`'s defaults.
/// Fails when the region or the credentials are missing, rather than at the
/// first request.
pub async fn load_for_function() -> Result<SdkConfig, LoadError> {
    let env = Env::real();
    let region = region(&env).ok_or(LoadError::NoRegion)?;
    let credentials = EnvironmentVariableCredentialsProvider::new();
    credentials
        .provide_credentials()
        .await
        .map_err(LoadError::Credentials)?;
    let endpoints = EnvEndpoints { env };
    let mut builder = SdkConfig::builder()
        .region(region)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(sdk_http_client()?)
        .behavior_version(BehaviorVersion::latest())
        .retry_config(RetryConfig::standard())
        // aws-config's default connect timeout.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .build(),
        )
        .identity_cache(IdentityCache::lazy().build());
    builder.set_endpoint_url(endpoints.global());
    Ok(builder.service_config(endpoints).build())
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION`, as aws-config's environment
/// region provider reads them.
fn region(env: &Env) -> Option<Region> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|key| env.get(key).ok())
        .map(|v| v.trim().to_owned())
        .find(|v| !v.is_empty())
        .map(Region::new)
}

/// Endpoint URLs from the environment, as aws-config resolves them without a
/// profile file: a service's own variable (`AWS_ENDPOINT_URL_SQS`,
/// `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ENDPOINT_URL_SECRETS_MANAGER`) before
/// `AWS_ENDPOINT_URL`, none when `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is
/// true. Each SDK client asks for its own when it is built from the config;
/// the local stack serves SQS on another port than DynamoDB this way.
#[derive(Debug)]
struct EnvEndpoints {
    env: Env,
}

const ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";

impl EnvEndpoints {
    fn ignored(&self) -> bool {
        self.env
            .get("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"))
    }

    /// `AWS_ENDPOINT_URL`, the fallback of every client.
    fn global(&self) -> Option<String> {
        if self.ignored() {
            return None;
        }
        self.env.get(ENDPOINT_URL).ok()
    }
}

impl LoadServiceConfig for EnvEndpoints {
    fn load_config(&self, key: ServiceConfigKey<'_>) -> Option<String> {
        if key.env() == ENDPOINT_URL && self.ignored() {
            return None;
        }
        // The SDK's spelling of a service id in a variable name:
        // "Secrets Manager" -> SECRETS_MANAGER.
        let service = key.service_id().to_uppercase().replace(' ', "_");
        self.env
            .get(&format!("{}_{service}", key.env()))
            .or_else(|_| self.env.get(key.env()))
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key<'a>(service_id: &'a str, env: &'a str) -> ServiceConfigKey<'a> {
        ServiceConfigKey::builder()
            .service_id(service_id)
            .env(env)
            .profile("endpoint_url")
            .build()
            .expect("all fields set")
    }

    fn endpoints(vars: &[(&str, &str)]) -> EnvEndpoints {
        EnvEndpoints {
            env: Env::from_slice(vars),
        }
    }

    const LOCAL: &[(&str, &str)] = &[
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
        ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:5001"),
    ];

    #[test]
    fn a_service_variable_comes_before_the_global_one() {
        let e = endpoints(LOCAL);
        assert_eq!(
            e.load_config(key("SQS", ENDPOINT_URL)).as_deref(),
            Some("http://127.0.0.1:5001")
        );
        assert_eq!(
            e.load_config(key("DynamoDB", ENDPOINT_URL)).as_deref(),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(e.global().as_deref(), Some("http://127.0.0.1:5000"));
    }

    #[test]
    fn service_ids_with_spaces_use_underscores() {
        let e = endpoints(&[("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://sm")]);
        assert_eq!(
            e.load_config(key("Secrets Manager", ENDPOINT_URL))
                .as_deref(),
            Some("http://sm")
        );
        assert_eq!(e.load_config(key("SQS", ENDPOINT_URL)), None);
        assert_eq!(e.global(), None);
    }

    #[test]
    fn configured_endpoints_can_be_ignored() {
        let mut vars = LOCAL.to_vec();
        vars.push(("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"));
        let e = endpoints(&vars);
        assert_eq!(e.load_config(key("SQS", ENDPOINT_URL)), None);
        assert_eq!(e.global(), None);
    }

    #[test]
    fn region_prefers_aws_region_and_skips_blanks() {
        let env = Env::from_slice(&[("AWS_REGION", " "), ("AWS_DEFAULT_REGION", "eu-west-1")]);
        assert_eq!(region(&env), Some(Region::new("eu-west-1")));
        let env = Env::from_slice(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]);
        assert_eq!(region(&env), Some(Region::new("us-east-1")));
        assert_eq!(region(&Env::from_slice(&[])), None);
    }

    /// The clients read their endpoint from the config as the SDK does.
    #[test]
    fn clients_take_their_own_endpoint() {
        let e = endpoints(LOCAL);
        let mut builder = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .behavior_version(BehaviorVersion::latest());
        builder.set_endpoint_url(e.global());
        let config = builder.service_config(e).build();
        // The config types show their endpoint only in their Debug text.
        let sqs = format!("{:?}", aws_sdk_sqs::config::Config::from(&config));
        let ddb = format!("{:?}", aws_sdk_dynamodb::config::Config::from(&config));
        assert!(sqs.contains("http://127.0.0.1:5001"), "{sqs}");
        assert!(!sqs.contains("http://127.0.0.1:5000"), "{sqs}");
        assert!(ddb.contains("http://127.0.0.1:5000"), "{ddb}");
    }
}

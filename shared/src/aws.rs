//! The one place that loads the AWS SDK config (region, credentials,
//! endpoint) from the environment, for the functions, the CLI, the tests and
//! the benchmark alike.

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// `aws_config::load_from_env()` with an HTTPS client whose rustls uses ring
/// rather than the SDK's default aws-lc-rs: sqlx and reqwest already bring
/// ring, and aws-lc is a large C library that added 2.4 MB to every
/// bootstrap. Unlike the SDK's default client this one ignores
/// `HTTPS_PROXY`: the functions reach AWS without a proxy, and the local
/// stack's moto server is on the loopback.
pub async fn load() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

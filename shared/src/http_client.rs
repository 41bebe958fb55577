//! A small HTTP(S) client for the functions' few requests outside the AWS
//! SDK (the JWKS, CloudFormation's ResponseURL). It is the SDK's own
//! connector (hyper, rustls on ring, the OS roots; see [`crate::aws`]), so
//! the bootstraps link one HTTP stack instead of also carrying reqwest's.
//! Plain `http://` URLs work too: the local stack and the tests serve them.

use std::time::Duration;

use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;

/// Why a request got no complete response. The messages never include the
/// URL: a pre-signed one carries its signature in the query.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("request failed: {}", DisplayErrorContext(.0))]
    Send(#[source] aws_smithy_runtime_api::client::result::ConnectorError),
    #[error("reading the response body: {}", DisplayErrorContext(.0))]
    Body(#[source] aws_smithy_types::byte_stream::error::Error),
    #[error("no complete response within {0:?}")]
    TimedOut(Duration),
}

/// A response read whole.
#[derive(Debug)]
pub struct Response {
    pub status: http::StatusCode,
    pub body: Vec<u8>,
}

/// One connection pool with connect and read timeouts, and an overall
/// deadline per request (body included).
#[derive(Debug)]
pub struct HttpClient {
    connector: Connector,
    timeout: Duration,
}

impl HttpClient {
    /// Connecting, each read, and the whole exchange are each bounded by
    /// `timeout`.
    pub fn new(timeout: Duration) -> HttpClient {
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .build();
        let connector = Connector::builder()
            .connector_settings(settings)
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build();
        HttpClient { connector, timeout }
    }

    pub async fn get(&self, url: &str) -> Result<Response, HttpError> {
        self.send(http::Method::GET, url, Vec::new()).await
    }

    /// PUTs `body` as is: a Content-Length and no Content-Type.
    pub async fn put(&self, url: &str, body: Vec<u8>) -> Result<Response, HttpError> {
        self.send(http::Method::PUT, url, body).await
    }

    async fn send(
        &self,
        method: http::Method,
        url: &str,
        body: Vec<u8>,
    ) -> Result<Response, HttpError> {
        let invalid = |e: &dyn std::fmt::Display| HttpError::InvalidRequest(e.to_string());
        let request = http::Request::builder()
            .method(method)
            .uri(url)
            .body(SdkBody::from(body))
            .map_err(|e| invalid(&e))?;
        let request = HttpRequest::try_from(request).map_err(|e| invalid(&e))?;
        let exchange = async {
            let response = self
                .connector
                .call(request)
                .await
                .map_err(HttpError::Send)?;
            let status =
                http::StatusCode::from_u16(response.status().as_u16()).map_err(|e| invalid(&e))?;
            let body = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(HttpError::Body)?
                .to_vec();
            Ok(Response { status, body })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::TimedOut(self.timeout))?
    }
}

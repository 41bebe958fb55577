//! The one HTTP(S) stack of jobmatch's processes: hyper's HTTP/1.1 client
//! (hyper-util's pool) with rustls on ring and the OS CA bundle.
//! - [`sdk_http_client`] is the AWS SDK's HTTP client (installed by
//!   [`crate::aws`]).
//! - [`HttpClient`] makes the functions' few requests outside the SDK (the
//!   JWKS, CloudFormation's ResponseURL).
//!
//! Why not the SDK's own client (`aws-smithy-http-client`): it always links
//! HTTP/2 (the h2 crate and its own HTTP/2 pool), 0.6 MB of each bootstrap,
//! and DynamoDB, SQS and Secrets Manager answer in HTTP/1.1 anyway. The
//! lambda runtime already links hyper's HTTP/1.1 client and hyper-util's
//! pool, so this adds only the glue below. Like the SDK's client it retries
//! nothing itself: it classifies errors so that the SDK's retry strategy
//! treats connection failures and timeouts as transient. Unlike it, it
//! ignores `HTTPS_PROXY`: the functions reach AWS through VPC endpoints, and
//! the local stack's moto servers are on the loopback.
//! Plain `http://` URLs work too: the local stack and the tests serve them.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient as SdkHttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings,
    SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ErrorKind;
use http::Uri;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::{
    capture_connection, CaptureConnection, HttpConnector as TcpConnector,
};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};

/// Why no HTTPS client can be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    #[error(
        "no CA certificates found in the OS bundle (install ca-certificates, or set \
         SSL_CERT_FILE){0}"
    )]
    NoRoots(String),
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The TLS settings of every connection: rustls's safe defaults on ring,
/// trusting the OS bundle, which is read once per process.
pub(crate) fn tls_config() -> Result<Arc<ClientConfig>, TlsError> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, TlsError>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                let errors = found.errors.iter().map(|e| format!("; {e}")).collect();
                return Err(TlsError::NoRoots(errors));
            }
            client_config(roots).map(Arc::new)
        })
        .clone()
}

fn client_config(roots: RootCertStore) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

type Pool = Client<ConnectTimeout<HttpsConnector<TcpConnector>>, SdkBody>;

/// A connection pool whose new connections give up after `connect_timeout`.
fn pool(tls: &ClientConfig, connect_timeout: Option<Duration>) -> Pool {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    // The timer lets the pool drop connections idle for longer than its
    // default 90 s.
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .build(ConnectTimeout {
            inner: https,
            limit: connect_timeout,
        })
}

/// Bounds a new connection as a whole (DNS, TCP and the TLS handshake), as
/// the SDK's connect timeout means: hyper's own bounds the TCP connect only.
#[derive(Clone)]
struct ConnectTimeout<S> {
    inner: S,
    limit: Option<Duration>,
}

#[derive(Debug, thiserror::Error)]
#[error("no connection within the connect timeout ({0:?})")]
struct ConnectTimedOut(Duration);

impl<S> tower_service::Service<Uri> for ConnectTimeout<S>
where
    S: tower_service::Service<Uri>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match limit {
                Some(limit) => tokio::time::timeout(limit, connecting)
                    .await
                    .map_err(|_| BoxError::from(ConnectTimedOut(limit)))?
                    .map_err(Into::into),
                None => connecting.await.map_err(Into::into),
            }
        })
    }
}

/// The AWS SDK's HTTP client (see the module doc). The TLS settings are
/// checked here, so that a function without a CA bundle stops at init.
pub fn sdk_http_client() -> Result<SharedHttpClient, TlsError> {
    Ok(SharedHttpClient::new(SdkClient {
        tls: tls_config()?,
        connectors: RwLock::default(),
    }))
}

/// The SDK asks for a connector per operation with that operation's
/// timeouts: one pool per distinct pair, as the SDK's own client keeps.
#[derive(Debug)]
struct SdkClient {
    tls: Arc<ClientConfig>,
    connectors: RwLock<HashMap<Timeouts, SharedHttpConnector>>,
}

/// Connect and read timeouts.
type Timeouts = (Option<Duration>, Option<Duration>);

impl SdkHttpClient for SdkClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        // A poisoned lock only means another thread panicked while it
        // inserted; the map itself is still whole.
        if let Some(c) = self
            .connectors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return c.clone();
        }
        self.connectors
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_insert_with(|| {
                SharedHttpConnector::new(Connector {
                    pool: pool(&self.tls, key.0),
                    read_timeout: key.1,
                })
            })
            .clone()
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        Some(ConnectorMetadata::new("hyper", Some("1.x".into())))
    }
}

/// One pool, and how long to wait for a response's head once the request
/// is sent (the SDK's read timeout).
#[derive(Clone)]
struct Connector {
    pool: Pool,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let captured = capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            smithy.set_connection_retriever(move || connection_metadata(&captured));
        }
        let response = self.pool.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, response)
                    .await
                    .map_err(|_| ConnectorError::timeout(ReadTimeout(limit).into()))?,
                None => response.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("no response within the read timeout ({0:?})")]
struct ReadTimeout(Duration);

/// What the SDK's retry needs of the connection a request used: a way to
/// close it after a transient error (a 5xx, a timeout), so that the retry
/// opens a new one instead of reusing it.
fn connection_metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let proxied = captured.connection_metadata().as_ref()?.is_proxied();
    let captured = captured.clone();
    Some(
        ConnectionMetadata::builder()
            .proxied(proxied)
            .poison_fn(move || {
                if let Some(connection) = captured.connection_metadata().as_ref() {
                    connection.poison();
                }
            })
            .build(),
    )
}

/// The SDK's reading of a hyper error, as its own client classifies them:
/// failures to connect or of the connection are I/O errors and timeouts
/// (connect, read) are timeouts (both retried by the SDK), a misuse of the client is the user's,
/// and a message cut short is transient.
fn classify(err: hyper_util::client::legacy::Error) -> ConnectorError {
    let connect = err.is_connect();
    let err: BoxError = err.into();
    if find_source::<ConnectTimedOut>(err.as_ref()).is_some() {
        return ConnectorError::timeout(err);
    }
    if let Some(hyper_err) = find_source::<hyper::Error>(err.as_ref()) {
        if hyper_err.is_timeout() {
            return ConnectorError::timeout(err);
        }
        if hyper_err.is_user() {
            return ConnectorError::user(err);
        }
        if hyper_err.is_closed()
            || hyper_err.is_canceled()
            || find_source::<std::io::Error>(hyper_err).is_some()
        {
            return ConnectorError::io(err);
        }
        if hyper_err.is_incomplete_message() {
            return ConnectorError::other(err, Some(ErrorKind::TransientError));
        }
        return ConnectorError::other(err, None);
    }
    if connect || find_source::<std::io::Error>(err.as_ref()).is_some() {
        return ConnectorError::io(err);
    }
    ConnectorError::other(err, None)
}

pub(crate) fn find_source<'a, E: StdError + 'static>(
    err: &'a (dyn StdError + 'static),
) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// Why a request got no complete response. The messages never include the
/// URL: a pre-signed one carries its signature in the query.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("request failed: {}", DisplayErrorContext(.0))]
    Send(#[source] ConnectorError),
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
    /// Connecting, waiting for the response's head, and the whole exchange
    /// are each bounded by `timeout`.
    pub fn new(timeout: Duration) -> Result<HttpClient, TlsError> {
        Ok(HttpClient::with_tls(&*tls_config()?, timeout))
    }

    fn with_tls(tls: &ClientConfig, timeout: Duration) -> HttpClient {
        let connector = Connector {
            pool: pool(tls, Some(timeout)),
            read_timeout: Some(timeout),
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server that answers each connection's first request with `reply`,
    /// after `delay`.
    async fn serve(reply: &'static [u8], delay: Duration) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    tokio::time::sleep(delay).await;
                    let _ = socket.write_all(reply).await;
                });
            }
        });
        addr
    }

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";

    fn sdk_connector(settings: HttpConnectorSettings) -> SharedHttpConnector {
        let client = sdk_http_client().expect("this machine has a CA bundle");
        let components = RuntimeComponentsBuilder::for_tests()
            .build()
            .expect("test components");
        client.http_connector(&settings, &components)
    }

    fn get(url: &str) -> HttpRequest {
        HttpRequest::get(url).expect("valid url")
    }

    #[tokio::test]
    async fn the_sdk_connector_returns_the_response() {
        let addr = serve(OK, Duration::ZERO).await;
        let connector = sdk_connector(HttpConnectorSettings::builder().build());
        let response = connector
            .call(get(&format!("http://{addr}/x")))
            .await
            .expect("a response");
        assert_eq!(response.status().as_u16(), 200);
        let body = ByteStream::new(response.into_body()).collect().await;
        assert_eq!(body.expect("body").to_vec(), b"hello");
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_io_error() {
        // Bind then drop, so that nothing listens on the port.
        let addr = TcpListener::bind("127.0.0.1:0")
            .await
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let connector = sdk_connector(HttpConnectorSettings::builder().build());
        let err = connector
            .call(get(&format!("http://{addr}/")))
            .await
            .expect_err("nothing listens");
        assert!(err.is_io(), "{err:?}");
    }

    #[tokio::test]
    async fn a_slow_response_is_a_timeout() {
        let addr = serve(OK, Duration::from_secs(5)).await;
        let settings = HttpConnectorSettings::builder()
            .read_timeout(Duration::from_millis(100))
            .build();
        let err = sdk_connector(settings)
            .call(get(&format!("http://{addr}/")))
            .await
            .expect_err("the server waits longer than the read timeout");
        assert!(err.is_timeout(), "{err:?}");
    }

    /// The connect timeout covers the TLS handshake: a server that accepts
    /// the TCP connection and then says nothing.
    #[tokio::test]
    async fn a_stalled_handshake_is_a_connect_timeout() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let settings = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_millis(200))
            .build();
        let call = sdk_connector(settings).call(get(&format!("https://{addr}/")));
        let err = tokio::time::timeout(Duration::from_secs(5), call)
            .await
            .expect("the connect timeout ends the call")
            .expect_err("no handshake");
        assert!(err.is_timeout(), "{err:?}");
    }

    /// A server that answers every request on a connection and keeps it
    /// open; counts the connections it accepted.
    async fn serve_keep_alive() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(OK).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    /// After a transient error the SDK poisons the connection it used, so
    /// that its retry opens a new one: the connector must hand it over.
    #[tokio::test]
    async fn a_poisoned_connection_is_not_reused() {
        let (addr, accepted) = serve_keep_alive().await;
        let connector = sdk_connector(HttpConnectorSettings::builder().build());
        let url = format!("http://{addr}/");
        let send = |capture: Option<CaptureSmithyConnection>| {
            let mut request = get(&url);
            if let Some(c) = capture {
                request.add_extension(c);
            }
            let call = connector.call(request);
            async move {
                let response = call.await.expect("a response");
                ByteStream::new(response.into_body())
                    .collect()
                    .await
                    .expect("body");
            }
        };
        let capture = CaptureSmithyConnection::new();
        send(Some(capture.clone())).await;
        send(None).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "kept alive and reused");
        capture
            .get()
            .expect("the connector reports its connection")
            .poison();
        send(None).await;
        assert_eq!(accepted.load(Ordering::SeqCst), 2, "poisoned, so a new one");
    }

    #[tokio::test]
    async fn a_head_cut_short_is_transient() {
        let addr = serve(b"HTTP/1.1 200 OK\r\ncontent-le", Duration::ZERO).await;
        let connector = sdk_connector(HttpConnectorSettings::builder().build());
        let err = connector
            .call(get(&format!("http://{addr}/")))
            .await
            .expect_err("the connection closes mid-head");
        assert_eq!(err.as_other(), Some(ErrorKind::TransientError), "{err:?}");
    }

    #[tokio::test]
    async fn a_body_cut_short_is_an_error() {
        let addr = serve(
            b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\nhel",
            Duration::ZERO,
        )
        .await;
        let client = HttpClient::new(Duration::from_secs(5)).expect("CA bundle");
        let err = client
            .get(&format!("http://{addr}/"))
            .await
            .expect_err("the body is cut short");
        assert!(matches!(err, HttpError::Body(_)), "{err:?}");
    }

    #[tokio::test]
    async fn the_settings_pick_one_pool_each() {
        let client = SdkClient {
            tls: tls_config().expect("CA bundle"),
            connectors: RwLock::default(),
        };
        let components = RuntimeComponentsBuilder::for_tests()
            .build()
            .expect("test components");
        let a = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(1))
            .build();
        let b = HttpConnectorSettings::builder()
            .connect_timeout(Duration::from_secs(2))
            .build();
        client.http_connector(&a, &components);
        client.http_connector(&a, &components);
        client.http_connector(&b, &components);
        assert_eq!(client.connectors.read().expect("lock").len(), 2);
    }

    /// HTTPS end to end: a TLS server with a certificate for `localhost`,
    /// trusted by one client and unknown to another.
    #[tokio::test]
    async fn https_verifies_the_server_certificate() {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a certificate");
        let der = cert.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let _ = tls.write_all(OK).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let url = format!("https://localhost:{port}/");

        let mut roots = RootCertStore::empty();
        roots.add(der).expect("the test root");
        let trusting = HttpClient::with_tls(
            &client_config(roots).expect("config"),
            Duration::from_secs(5),
        );
        let response = trusting.get(&url).await.expect("a verified response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"hello");

        let os_roots = HttpClient::new(Duration::from_secs(5)).expect("CA bundle");
        let err = os_roots.get(&url).await.expect_err("an unknown issuer");
        let text = err.to_string();
        assert!(text.contains("UnknownIssuer"), "{text}");
    }
}

//! How the functions reach PostgreSQL, and the one place pools are built.
//! Locally (and through a bastion) a plain `DATABASE_URL` with a password;
//! in AWS, RDS IAM authentication through RDS Proxy (`DB_AUTH=iam`):
//! `DATABASE_URL` then names host, port, user and database without a
//! password, and each new connection presents a SigV4-signed token (valid
//! 15 minutes) as its password.
//!
//! sqlx 0.9 has no per-connection password callback, so a [`Db`] hands its
//! pool out only through [`Db::pool`], which first gives the pool a fresh
//! token (`Pool::set_connect_options`) once the current one is
//! `TOKEN_REFRESH_AFTER` old. Signing is local (no network call) and cheap,
//! and a Lambda container is frozen between invocations, so a timer task
//! could not be relied on.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use aws_types::SdkConfig;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::config::DbAuth;
use crate::error::Error;

/// Tokens are valid for 15 minutes; renewing them at 10 leaves a token that
/// a slow login (or a failed renewal) still finds valid.
pub const TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
const SERVICE: &str = "rds-db";

#[derive(Debug, thiserror::Error)]
pub enum DbConnectError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    InvalidUrl(sqlx::Error),
    #[error("DB_AUTH=iam: DATABASE_URL must not hold a password (the IAM token replaces it)")]
    PasswordWithIam,
    #[error("DB_AUTH=iam needs a region (AWS_REGION)")]
    NoRegion,
    #[error("DB_AUTH=iam needs AWS credentials: {0}")]
    Credentials(String),
    #[error("signing the RDS IAM token: {0}")]
    Signing(String),
}

/// Signs RDS IAM authentication tokens for one database user at one endpoint.
#[derive(Debug, Clone)]
pub struct TokenSigner {
    host: String,
    port: u16,
    user: String,
    region: String,
}

impl TokenSigner {
    pub fn new(host: &str, port: u16, user: &str, region: &str) -> TokenSigner {
        TokenSigner {
            host: host.to_owned(),
            port,
            user: user.to_owned(),
            region: region.to_owned(),
        }
    }

    /// The token: the presigned `connect` URL without its scheme, the same
    /// as `aws rds generate-db-auth-token` prints.
    pub fn sign(
        &self,
        credentials: &Credentials,
        now: SystemTime,
    ) -> Result<String, DbConnectError> {
        let identity: Identity = credentials.clone().into();
        let mut settings = SigningSettings::default();
        settings.expires_in = Some(TOKEN_LIFETIME);
        settings.signature_location = SignatureLocation::QueryParams;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| DbConnectError::Signing(e.to_string()))?;
        let mut url = url::Url::parse(&format!("https://{}:{}/", self.host, self.port))
            .map_err(|e| DbConnectError::Signing(format!("endpoint {}: {e}", self.host)))?;
        url.query_pairs_mut()
            .append_pair("Action", "connect")
            .append_pair("DBUser", &self.user);
        let request = SignableRequest::new(
            "GET",
            url.as_str(),
            std::iter::empty(),
            SignableBody::empty(),
        )
        .map_err(|e| DbConnectError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params.into())
            .map_err(|e| DbConnectError::Signing(e.to_string()))?
            .into_parts();
        for (name, value) in instructions.params() {
            url.query_pairs_mut().append_pair(name, value);
        }
        let signed = url.to_string();
        Ok(signed
            .strip_prefix("https://")
            .unwrap_or(signed.as_str())
            .to_owned())
    }
}

/// Parses `DATABASE_URL`; in IAM mode also checks it has no password and
/// raises the TLS mode to `verify-full` unless the URL already requires TLS
/// (RDS Proxy refuses IAM logins without TLS; its certificate is a public one).
pub fn connect_options(
    database_url: &str,
    auth: DbAuth,
) -> Result<PgConnectOptions, DbConnectError> {
    let options = PgConnectOptions::from_str(database_url).map_err(DbConnectError::InvalidUrl)?;
    match auth {
        DbAuth::Password => Ok(options),
        DbAuth::Iam => {
            let has_password = url::Url::parse(database_url)
                .map(|u| u.password().is_some())
                .unwrap_or(false);
            if has_password {
                return Err(DbConnectError::PasswordWithIam);
            }
            Ok(match options.get_ssl_mode() {
                PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull => options,
                _ => options.ssl_mode(PgSslMode::VerifyFull),
            })
        }
    }
}

/// How many connections a pool opens, and how long a caller waits for one
/// (which must stay below the function's timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSize {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl PoolSize {
    /// Up to `max_connections`, waiting 5 s for one.
    pub fn new(max_connections: u32) -> PoolSize {
        PoolSize {
            max_connections,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    pub fn acquire_timeout(self, acquire_timeout: Duration) -> PoolSize {
        PoolSize {
            acquire_timeout,
            ..self
        }
    }
}

/// An idle connection older than this is pinged before use.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// The one pool builder. Lazy: a cold start never fails on the database.
fn lazy_pool(options: PgConnectOptions, size: PoolSize) -> PgPool {
    PgPoolOptions::new()
        .max_connections(size.max_connections)
        .acquire_timeout(size.acquire_timeout)
        // sqlx pings each connection as it returns to the pool; a ping on
        // every acquire as well would be a second round trip before each
        // match. Only a connection idle long enough for a proxy or server to
        // have dropped it (a Lambda instance frozen between invocations) is
        // pinged first.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > STALE_AFTER {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options)
}

/// A pool for a URL that holds its password (tests, the benchmark): its
/// login never goes stale, so it needs no [`Db`].
pub fn password_pool(database_url: &str, size: PoolSize) -> Result<PgPool, DbConnectError> {
    Ok(lazy_pool(
        connect_options(database_url, DbAuth::Password)?,
        size,
    ))
}

/// The pool of a function. It cannot be used with a stale IAM token: the
/// only way to it, [`Db::pool`], renews a token that is due first.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    tokens: Option<Arc<Tokens>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("iam", &self.tokens.is_some())
            .finish_non_exhaustive()
    }
}

/// A pool whose URL holds its password (tests, the benchmark).
impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Db {
        Db { pool, tokens: None }
    }
}

impl Db {
    /// The pool for `DATABASE_URL`; in IAM mode it signs the first token now,
    /// so that missing credentials fail the cold start.
    pub async fn connect(
        database_url: &str,
        auth: DbAuth,
        aws: &SdkConfig,
        size: PoolSize,
    ) -> Result<Db, DbConnectError> {
        let base = connect_options(database_url, auth)?;
        match auth {
            DbAuth::Password => Ok(Db::from(lazy_pool(base, size))),
            DbAuth::Iam => {
                let tokens = Tokens::new(&base, aws, Arc::new(SystemTime::now))?;
                Db::with_tokens(base, size, tokens).await
            }
        }
    }

    async fn with_tokens(
        base: PgConnectOptions,
        size: PoolSize,
        tokens: Tokens,
    ) -> Result<Db, DbConnectError> {
        let db = Db {
            pool: lazy_pool(base, size),
            tokens: Some(Arc::new(tokens)),
        };
        db.renew_if_due().await?;
        Ok(db)
    }

    /// The pool, its new connections logging in with a valid token.
    pub async fn pool(&self) -> crate::error::Result<&PgPool> {
        self.renew_if_due()
            .await
            .map_err(|e| Error::unavailable("postgres", e))?;
        Ok(&self.pool)
    }

    async fn renew_if_due(&self) -> Result<(), DbConnectError> {
        match &self.tokens {
            Some(tokens) => tokens.renew_if_due(&self.pool).await,
            None => Ok(()),
        }
    }
}

/// The time now; tests move it by hand.
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// What keeps an IAM pool's password fresh.
struct Tokens {
    base: PgConnectOptions,
    signer: TokenSigner,
    credentials: SharedCredentialsProvider,
    clock: Clock,
    /// When the token in the pool's options was signed; `None` before the
    /// first. Held while signing, so that concurrent callers sign once.
    signed_at: tokio::sync::Mutex<Option<SystemTime>>,
}

impl Tokens {
    /// The token state for `base`, from the SDK config's region and credentials.
    fn new(
        base: &PgConnectOptions,
        aws: &SdkConfig,
        clock: Clock,
    ) -> Result<Tokens, DbConnectError> {
        let region = aws.region().ok_or(DbConnectError::NoRegion)?;
        let credentials = aws
            .credentials_provider()
            .ok_or_else(|| DbConnectError::Credentials("no credentials provider".into()))?;
        Ok(Tokens {
            base: base.clone(),
            signer: TokenSigner::new(
                base.get_host(),
                base.get_port(),
                base.get_username(),
                region.as_ref(),
            ),
            credentials,
            clock,
            signed_at: tokio::sync::Mutex::new(None),
        })
    }

    async fn options_with_token(
        &self,
        now: SystemTime,
    ) -> Result<PgConnectOptions, DbConnectError> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| DbConnectError::Credentials(e.to_string()))?;
        let token = self.signer.sign(&credentials, now)?;
        Ok(self.base.clone().password(&token))
    }

    /// Gives `pool` a new token when the current one is due. Open
    /// connections stay open: a token is checked only at login. A failed
    /// renewal keeps a token that is still valid, and is tried again next time.
    async fn renew_if_due(&self, pool: &PgPool) -> Result<(), DbConnectError> {
        let mut signed_at = self.signed_at.lock().await;
        let now = (self.clock)();
        if signed_at.is_some_and(|at| !needs_refresh(at, now)) {
            return Ok(());
        }
        match self.options_with_token(now).await {
            Ok(options) => {
                pool.set_connect_options(options);
                *signed_at = Some(now);
                Ok(())
            }
            Err(e) if signed_at.is_some_and(|at| still_valid(at, now)) => {
                tracing::warn!(error = %e, "cannot renew the database token; the current one is still valid");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Connect options for one connection made now: in IAM mode with a fresh
/// token (the data CLI uses this from a host inside the VPC).
pub async fn options_now(
    database_url: &str,
    auth: DbAuth,
    aws: &SdkConfig,
) -> Result<PgConnectOptions, DbConnectError> {
    let base = connect_options(database_url, auth)?;
    match auth {
        DbAuth::Password => Ok(base),
        DbAuth::Iam => {
            Tokens::new(&base, aws, Arc::new(SystemTime::now))?
                .options_with_token(SystemTime::now())
                .await
        }
    }
}

/// A token is renewed once it is `TOKEN_REFRESH_AFTER` old, or when the
/// clock went backwards (its age is then unknown).
fn needs_refresh(signed_at: SystemTime, now: SystemTime) -> bool {
    match now.duration_since(signed_at) {
        Ok(age) => age >= TOKEN_REFRESH_AFTER,
        Err(_) => true,
    }
}

/// Whether a token signed at `signed_at` is still accepted at `now`.
fn still_valid(signed_at: SystemTime, now: SystemTime) -> bool {
    now.duration_since(signed_at)
        .is_ok_and(|age| age < TOKEN_LIFETIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_credential_types::provider;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// The test vector of the AWS SDK's own RDS token generator
    /// (aws-sdk-rds `auth_token`): the same inputs must give the same token.
    #[test]
    fn token_matches_the_aws_sdk_test_vector() {
        let credentials = Credentials::new("akid", "secret", None, None, "test");
        let signer = TokenSigner::new(
            "prod-instance.us-east-1.rds.amazonaws.com",
            3306,
            "peccy",
            "us-east-1",
        );
        let token = signer.sign(&credentials, at(1_724_709_600)).unwrap();
        assert_eq!(
            token,
            "prod-instance.us-east-1.rds.amazonaws.com:3306/?Action=connect&DBUser=peccy\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=akid%2F20240826%2Fus-east-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20240826T220000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=dd0cba843009474347af724090233265628ace491ea17ce3eb3da098b983ad89"
        );
    }

    #[test]
    fn session_credentials_sign_the_security_token_too() {
        let credentials =
            Credentials::new("akid", "secret", Some("session-tok".into()), None, "test");
        let signer = TokenSigner::new(
            "prx.proxy-x.eu-west-1.rds.amazonaws.com",
            5432,
            "jobmatch",
            "eu-west-1",
        );
        let token = signer.sign(&credentials, at(1_724_709_600)).unwrap();
        assert!(token.starts_with(
            "prx.proxy-x.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=jobmatch&"
        ));
        assert!(
            token.contains("X-Amz-Security-Token=session-tok"),
            "{token}"
        );
        assert!(
            token.contains("%2Feu-west-1%2Frds-db%2Faws4_request"),
            "{token}"
        );
        // Another second, another signature.
        let later = signer.sign(&credentials, at(1_724_709_601)).unwrap();
        assert_ne!(token, later);
    }

    #[test]
    fn refresh_is_due_after_ten_minutes_or_when_the_clock_went_back() {
        assert!(!needs_refresh(at(1000), at(1000)));
        assert!(!needs_refresh(at(1000), at(1000 + 599)));
        assert!(needs_refresh(at(1000), at(1000 + 600)));
        assert!(needs_refresh(at(1000), at(999)));
    }

    #[test]
    fn iam_urls_must_not_hold_a_password_and_get_tls() {
        let opts = connect_options(
            "postgres://jobmatch@proxy.example:5432/jobmatch",
            DbAuth::Iam,
        )
        .unwrap();
        assert_eq!(opts.get_host(), "proxy.example");
        assert_eq!(opts.get_port(), 5432);
        assert_eq!(opts.get_username(), "jobmatch");
        assert_eq!(opts.get_database(), Some("jobmatch"));
        assert!(matches!(opts.get_ssl_mode(), PgSslMode::VerifyFull));

        let kept = connect_options("postgres://u@h/db?sslmode=require", DbAuth::Iam).unwrap();
        assert!(matches!(kept.get_ssl_mode(), PgSslMode::Require));

        let err = connect_options("postgres://u:pw@h/db", DbAuth::Iam).unwrap_err();
        assert!(matches!(err, DbConnectError::PasswordWithIam));

        // The local stack's URL keeps its password and TLS setting.
        let local =
            connect_options("postgres://u:pw@127.0.0.1:55432/db", DbAuth::Password).unwrap();
        assert!(matches!(local.get_ssl_mode(), PgSslMode::Prefer));
        assert!(connect_options("not a url", DbAuth::Password).is_err());
    }

    fn credentials() -> Credentials {
        Credentials::new("akid", "secret", None, None, "test")
    }

    fn aws(credentials: SharedCredentialsProvider) -> SdkConfig {
        SdkConfig::builder()
            .region(aws_types::region::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn iam_mode_signs_at_connect_and_needs_a_region() {
        let db = Db::connect(
            "postgres://jobmatch@127.0.0.1:1/jobmatch",
            DbAuth::Iam,
            &aws(SharedCredentialsProvider::new(credentials())),
            PoolSize::new(1),
        )
        .await
        .unwrap();
        let signed_at = *db.tokens.as_ref().unwrap().signed_at.lock().await;
        assert!(signed_at.is_some());

        let no_region = SdkConfig::builder().build();
        let err = Db::connect(
            "postgres://jobmatch@h/jobmatch",
            DbAuth::Iam,
            &no_region,
            PoolSize::new(1),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, DbConnectError::NoRegion));
    }

    /// A PostgreSQL server that asks each login for a cleartext password,
    /// records it and hangs up.
    async fn password_catcher() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                // StartupMessage: its length (itself included), then the rest.
                let len = socket.read_u32().await.unwrap() as usize;
                let mut startup = vec![0; len - 4];
                socket.read_exact(&mut startup).await.unwrap();
                // AuthenticationCleartextPassword.
                socket
                    .write_all(&[b'R', 0, 0, 0, 8, 0, 0, 0, 3])
                    .await
                    .unwrap();
                // PasswordMessage: 'p', its length, the password, a NUL.
                assert_eq!(socket.read_u8().await.unwrap(), b'p');
                let len = socket.read_u32().await.unwrap() as usize;
                let mut password = vec![0; len - 4];
                socket.read_exact(&mut password).await.unwrap();
                password.pop();
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8(password).unwrap());
            }
        });
        (port, seen)
    }

    /// An IAM pool on the catcher whose clock reads `now` (seconds), and
    /// how to make one login through it and get the password it presented.
    async fn iam_pool_on_catcher(
        provider: SharedCredentialsProvider,
        now: Arc<AtomicU64>,
    ) -> (
        Db,
        impl Fn(u64) -> String,
        Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        let (port, seen) = password_catcher().await;
        // Password mode only to keep the catcher's plain TCP (IAM asks for TLS).
        let base = connect_options(
            &format!("postgres://jobmatch@127.0.0.1:{port}/jobmatch?sslmode=disable"),
            DbAuth::Password,
        )
        .unwrap();
        let clock: Clock = Arc::new(move || at(now.load(SeqCst)));
        let tokens = Tokens::new(&base, &aws(provider), clock).unwrap();
        let signer = tokens.signer.clone();
        let token_at = move |secs| signer.sign(&credentials(), at(secs)).unwrap();
        let size = PoolSize::new(1).acquire_timeout(Duration::from_secs(5));
        let db = Db::with_tokens(base, size, tokens).await.unwrap();
        (db, token_at, seen)
    }

    /// The passwords of the logins one acquisition made (it fails: the
    /// catcher hangs up).
    async fn logins(db: &Db, seen: &std::sync::Mutex<Vec<String>>) -> Vec<String> {
        let pool = db.pool().await.expect("a pool with a valid token");
        assert!(pool.acquire().await.is_err());
        std::mem::take(&mut *seen.lock().unwrap())
    }

    const T0: u64 = 1_724_709_600;

    #[tokio::test]
    async fn a_connection_made_once_the_token_is_due_logs_in_with_a_fresh_one() {
        let now = Arc::new(AtomicU64::new(T0));
        let provider = SharedCredentialsProvider::new(credentials());
        let (db, token_at, seen) = iam_pool_on_catcher(provider, now.clone()).await;

        assert_eq!(logins(&db, &seen).await, [token_at(T0)]);
        now.store(T0 + 599, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0)], "not due yet");
        now.store(T0 + 600, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0 + 600)]);
        // A container thawed after an hour: the old token is long dead.
        now.store(T0 + 4200, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0 + 4200)]);
        // The clock went back: the token's age is unknown, so it is renewed.
        now.store(T0 + 4100, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0 + 4100)]);
    }

    /// Credentials that fail while `down` is set.
    #[derive(Debug)]
    struct Flaky(Arc<AtomicBool>);

    impl ProvideCredentials for Flaky {
        fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            provider::future::ProvideCredentials::ready(if self.0.load(SeqCst) {
                Err(provider::error::CredentialsError::not_loaded("down"))
            } else {
                Ok(credentials())
            })
        }
    }

    #[tokio::test]
    async fn a_failed_renewal_keeps_a_valid_token_but_never_a_stale_one() {
        let now = Arc::new(AtomicU64::new(T0));
        let down = Arc::new(AtomicBool::new(false));
        let provider = SharedCredentialsProvider::new(Flaky(down.clone()));
        let (db, token_at, seen) = iam_pool_on_catcher(provider, now.clone()).await;
        assert_eq!(logins(&db, &seen).await, [token_at(T0)]);

        down.store(true, SeqCst);
        now.store(T0 + 600, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0)], "still valid");
        now.store(T0 + 900, SeqCst);
        let err = db.pool().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err}");
        assert!(
            seen.lock().unwrap().is_empty(),
            "no login with a stale token"
        );

        down.store(false, SeqCst);
        assert_eq!(logins(&db, &seen).await, [token_at(T0 + 900)]);
    }
}

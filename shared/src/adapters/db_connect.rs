//! How the functions reach PostgreSQL. Locally (and through a bastion) a
//! plain `DATABASE_URL` with a password; in AWS, RDS IAM authentication
//! through RDS Proxy (`DB_AUTH=iam`): `DATABASE_URL` then names host, port,
//! user and database without a password, and each new connection presents a
//! SigV4-signed token (valid 15 minutes) as its password.
//!
//! sqlx 0.9 has no per-connection password callback, so `Db::refresh` swaps
//! the pool's connect options (`Pool::set_connect_options`) for ones with a
//! fresh token whenever the current token is older than `TOKEN_REFRESH_AFTER`.
//! Entry points call it at the start of every invocation: signing is local
//! (no network call) and cheap, and a Lambda container is frozen between
//! invocations, so a timer task could not be relied on.

use std::str::FromStr;
use std::sync::Mutex;
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

/// Tokens are valid for 15 minutes; a connection opened during an invocation
/// that started just before the refresh deadline still gets a valid one.
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

struct Iam {
    base: PgConnectOptions,
    signer: TokenSigner,
    credentials: SharedCredentialsProvider,
    /// When the token in the pool's current options was signed.
    signed_at: Mutex<SystemTime>,
}

impl Iam {
    async fn options_with_fresh_token(
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
}

/// The pool and, in IAM mode, what keeps its password fresh.
pub struct Db {
    pool: PgPool,
    iam: Option<Iam>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("iam", &self.iam.is_some())
            .finish_non_exhaustive()
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

/// Builds the IAM state for `base` from the SDK config's region and credentials.
fn iam_for(base: &PgConnectOptions, aws: &SdkConfig) -> Result<Iam, DbConnectError> {
    let region = aws.region().ok_or(DbConnectError::NoRegion)?;
    let credentials = aws
        .credentials_provider()
        .ok_or_else(|| DbConnectError::Credentials("no credentials provider".into()))?;
    Ok(Iam {
        base: base.clone(),
        signer: TokenSigner::new(
            base.get_host(),
            base.get_port(),
            base.get_username(),
            region.as_ref(),
        ),
        credentials,
        signed_at: Mutex::new(SystemTime::UNIX_EPOCH),
    })
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
            iam_for(&base, aws)?
                .options_with_fresh_token(SystemTime::now())
                .await
        }
    }
}

impl Db {
    /// A lazy pool (a cold start never fails on the database); in IAM mode
    /// signs the first token now.
    pub async fn connect(
        database_url: &str,
        max_connections: u32,
        auth: DbAuth,
        aws: &SdkConfig,
    ) -> Result<Db, DbConnectError> {
        Db::connect_with(
            database_url,
            max_connections,
            auth,
            aws,
            Duration::from_secs(5),
        )
        .await
    }

    /// `connect` with the pool's acquire timeout, which must stay below the
    /// function timeout.
    pub async fn connect_with(
        database_url: &str,
        max_connections: u32,
        auth: DbAuth,
        aws: &SdkConfig,
        acquire_timeout: Duration,
    ) -> Result<Db, DbConnectError> {
        let base = connect_options(database_url, auth)?;
        let pool_options = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout);
        let iam = match auth {
            DbAuth::Password => None,
            DbAuth::Iam => Some(iam_for(&base, aws)?),
        };
        let now = SystemTime::now();
        let first = match &iam {
            Some(iam) => iam.options_with_fresh_token(now).await?,
            None => base,
        };
        if let Some(iam) = &iam {
            *iam.signed_at.lock().unwrap_or_else(|p| p.into_inner()) = now;
        }
        Ok(Db {
            pool: pool_options.connect_lazy_with(first),
            iam,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// In IAM mode, gives the pool a new token when the current one is older
    /// than `TOKEN_REFRESH_AFTER`; a no-op otherwise. Open connections stay
    /// open: a token is checked only when a connection logs in.
    pub async fn refresh(&self) -> Result<(), DbConnectError> {
        let Some(iam) = &self.iam else {
            return Ok(());
        };
        let now = SystemTime::now();
        let signed_at = *iam.signed_at.lock().unwrap_or_else(|p| p.into_inner());
        if !needs_refresh(signed_at, now) {
            return Ok(());
        }
        let options = iam.options_with_fresh_token(now).await?;
        self.pool.set_connect_options(options);
        *iam.signed_at.lock().unwrap_or_else(|p| p.into_inner()) = now;
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn iam_mode_signs_at_connect_and_refresh_is_cheap_when_fresh() {
        let aws = SdkConfig::builder()
            .region(aws_types::region::Region::new("us-east-1"))
            .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
                "akid", "secret", None, None, "test",
            )))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let db = Db::connect(
            "postgres://jobmatch@127.0.0.1:1/jobmatch",
            1,
            DbAuth::Iam,
            &aws,
        )
        .await
        .unwrap();
        let first = *db.iam.as_ref().unwrap().signed_at.lock().unwrap();
        assert!(first > SystemTime::UNIX_EPOCH);
        db.refresh().await.unwrap();
        assert_eq!(*db.iam.as_ref().unwrap().signed_at.lock().unwrap(), first);
        // An old token is replaced.
        *db.iam.as_ref().unwrap().signed_at.lock().unwrap() = at(0);
        db.refresh().await.unwrap();
        assert!(*db.iam.as_ref().unwrap().signed_at.lock().unwrap() > at(0));

        let no_region = SdkConfig::builder().build();
        let err = Db::connect("postgres://jobmatch@h/jobmatch", 1, DbAuth::Iam, &no_region)
            .await
            .unwrap_err();
        assert!(matches!(err, DbConnectError::NoRegion));
    }
}

//! The migrate function's parts: the custom resource protocol (`handler`),
//! the migrator that runs the migrations and db/ through RDS Proxy, and the
//! responder that PUTs the answer to CloudFormation's pre-signed URL.

pub mod handler;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_config::SdkConfig;
use shared::adapters::db_connect::{Db, PoolSize};
use shared::config::DbAuth;
use shared::http_client::HttpClient;

/// Time kept back from the function's deadline to deliver the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(20);

/// Runs the embedded migrations, retrying the connection: right after the
/// stack creates RDS Proxy, its target can take minutes to become available.
pub struct PgMigrator {
    pub db: Db,
    /// The functions' login roles to make after the migrations.
    pub logins: Vec<FunctionsLogin>,
}

/// A functions' login role: its name and password (FunctionsDbSecret or
/// WriterDbSecret), and the group it joins.
pub struct FunctionsLogin {
    pub user: String,
    pub password: shared::config::Secret,
    /// `READER_ROLE` or `WRITER_ROLE` (shared::adapters::postgres).
    pub group: &'static str,
}

impl FunctionsLogin {
    /// Reads the secret `{"username", "password"}` that RDS Proxy also logs
    /// in with; `variable` names the ARN's setting in errors.
    pub async fn fetch(
        client: &aws_sdk_secretsmanager::Client,
        arn: &str,
        variable: &str,
        group: &'static str,
    ) -> Result<FunctionsLogin, String> {
        #[derive(serde::Deserialize)]
        struct Login {
            username: String,
            password: String,
        }
        let raw = shared::adapters::secrets::fetch_secret(client, arn, variable)
            .await
            .map_err(|e| e.to_string())?;
        let login: Login = serde_json::from_str(raw.expose())
            .map_err(|e| format!("{variable}: not {{\"username\", \"password\"}}: {e}"))?;
        Ok(FunctionsLogin {
            user: login.username,
            password: shared::config::Secret::new(login.password),
            group,
        })
    }
}

impl handler::Migrate for PgMigrator {
    async fn migrate(&self, within: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut delay = Duration::from_secs(2);
        // Wait for a first connection; it goes back to the pool (of one)
        // for the migrator to take.
        loop {
            let pool = self.db.pool().await.map_err(|e| e.to_string())?;
            match pool.acquire().await {
                Ok(_conn) => break,
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot connect yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(format!("cannot connect to PostgreSQL: {e}")),
            }
        }
        let outcomes =
            shared::adapters::schema::migrate(self.db.pool().await.map_err(|e| e.to_string())?)
                .await
                .map_err(|e| e.to_string())?;
        let mut done = shared::adapters::schema::summary(&outcomes);
        for login in &self.logins {
            let mut conn = self
                .db
                .pool()
                .await
                .map_err(|e| e.to_string())?
                .acquire()
                .await
                .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
            shared::adapters::postgres::grant_login(
                &mut conn,
                &login.user,
                login.password.expose(),
                login.group,
            )
            .await
            .map_err(|e| format!("the functions' login role {}: {e}", login.user))?;
            done.push_str(&format!("; login role {} ready", login.user));
        }
        Ok(done)
    }
}

/// The migrator as the function's init left it. An init that fails
/// (configuration, AWS setup, database URL) does not end the process: a
/// custom resource that never answers leaves the stack waiting until its
/// ServiceTimeout, and Lambda would only retry the same failing init. The
/// function starts anyway and answers every Create and Update with FAILED and
/// the init error as the reason, so the deploy rolls back at once, naming the
/// cause. Delete and a rollback's Update touch no database and still succeed:
/// failing them would leave the stack in DELETE_FAILED or
/// UPDATE_ROLLBACK_FAILED.
pub enum Migrator {
    Ready(Box<PgMigrator>),
    InitFailed(String),
}

impl Migrator {
    /// The migrator for `database_url`, or the reason it cannot be built
    /// (the pool is lazy: an unreachable database is found by `migrate`).
    pub async fn connect(
        database_url: &str,
        auth: DbAuth,
        aws: &SdkConfig,
        logins: Vec<FunctionsLogin>,
    ) -> Migrator {
        match Db::connect(database_url, auth, aws, PoolSize::new(1)).await {
            Ok(db) => Migrator::Ready(Box::new(PgMigrator { db, logins })),
            Err(e) => Migrator::init_failed(e),
        }
    }

    /// Keeps an init error (logged here, once) for every request to report.
    pub fn init_failed(error: impl std::fmt::Display) -> Migrator {
        tracing::error!(error = %error, "init failed; answering FAILED to Create and Update");
        Migrator::InitFailed(error.to_string())
    }
}

impl handler::Migrate for Migrator {
    async fn migrate(&self, within: Duration) -> Result<String, String> {
        match self {
            Migrator::Ready(m) => m.migrate(within).await,
            Migrator::InitFailed(e) => {
                Err(format!("the migrate function failed to initialise: {e}"))
            }
        }
    }
}

/// PUTs the answer with no Content-Type: the URL's signature covers none.
pub struct HttpResponder {
    pub client: HttpClient,
}

impl handler::Respond for HttpResponder {
    async fn put(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
            match self.client.put(url, body.clone()).await {
                Ok(r) if r.status.is_success() => return Ok(()),
                Ok(r) => last = format!("ResponseURL answered {}", r.status),
                Err(e) => last = format!("ResponseURL: {e}"),
            }
        }
        Err(last)
    }
}

/// Time until the invocation's deadline (epoch milliseconds).
pub fn time_left(deadline_ms: u64) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::cloudformation::{
        CloudFormationCustomResourceRequest as Request,
        CloudFormationCustomResourceResponseStatus as Status,
    };
    use handler::Respond;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A real HTTP PUT to a listener on loopback: the body arrives whole and
    /// no Content-Type header is sent (S3 would refuse the signature).
    #[tokio::test]
    async fn the_answer_is_a_plain_put_without_content_type() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw);
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap();
                    if raw.len() >= head_end + 4 + length {
                        break;
                    }
                }
            }
            socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(raw).unwrap()
        });
        let responder = HttpResponder {
            client: HttpClient::new(Duration::from_secs(15)).expect("CA bundle"),
        };
        let body = br#"{"Status":"SUCCESS"}"#.to_vec();
        responder
            .put(
                &format!("http://{addr}/bucket/key?X-Amz-Signature=abc"),
                body,
            )
            .await
            .unwrap();
        let request = server.await.unwrap();
        assert!(
            request.starts_with("PUT /bucket/key?X-Amz-Signature=abc HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            !request.to_ascii_lowercase().contains("content-type"),
            "{request}"
        );
        assert!(request.ends_with(r#"{"Status":"SUCCESS"}"#), "{request}");
    }

    #[tokio::test]
    async fn an_error_status_is_reported_after_retries() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            }
        });
        let responder = HttpResponder {
            client: HttpClient::new(Duration::from_secs(15)).expect("CA bundle"),
        };
        let err = responder
            .put(&format!("http://{addr}/k"), b"{}".to_vec())
            .await
            .unwrap_err();
        assert!(err.contains("403"), "{err}");
    }

    /// Keeps the answers instead of PUTting them.
    #[derive(Default)]
    struct Answers(std::sync::Mutex<Vec<serde_json::Value>>);

    impl Respond for Answers {
        async fn put(&self, _url: &str, body: Vec<u8>) -> Result<(), String> {
            let json = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            self.0.lock().unwrap().push(json);
            Ok(())
        }
    }

    fn request(kind: &str) -> Request {
        let mut json = serde_json::json!({
            "RequestType": kind,
            "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x?sig=1",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/jobmatch/abc",
            "RequestId": format!("req-{kind}"),
            "ResourceType": "Custom::Migrations",
            "LogicalResourceId": "Migrations",
            "ResourceProperties": {"ServiceToken": "arn"}
        });
        if kind != "Create" {
            json["PhysicalResourceId"] = handler::PHYSICAL_ID.into();
            json["OldResourceProperties"] = serde_json::json!({"ServiceToken": "arn"});
        }
        serde_json::from_value(json).unwrap()
    }

    /// A real init failure (a DATABASE_URL that IAM auth refuses) answers
    /// Create and Update with FAILED and the init error, instead of a
    /// process exit that leaves CloudFormation waiting.
    #[tokio::test]
    async fn an_init_failure_answers_failed_with_its_reason() {
        let aws = aws_config::SdkConfig::builder().build();
        let url = "postgres://jobmatch_admin:pw@proxy:5432/jobmatch?sslmode=verify-full";
        let migrator = Migrator::connect(url, DbAuth::Iam, &aws, vec![]).await;
        let Migrator::InitFailed(init_error) = &migrator else {
            panic!("DB_AUTH=iam with a password in the URL must fail init");
        };
        assert!(init_error.contains("DATABASE_URL"), "{init_error}");
        for kind in ["Create", "Update"] {
            let answers = Answers::default();
            let status = handler::handle(
                &request(kind),
                &migrator,
                &answers,
                Duration::from_secs(5),
                "2026/11/30/[$LATEST]abc",
            )
            .await;
            assert_eq!(status, Ok(Status::Failed), "{kind}");
            let sent = answers.0.lock().unwrap();
            assert_eq!(sent.len(), 1, "{kind}: exactly one answer");
            assert_eq!(sent[0]["Status"], "FAILED");
            assert_eq!(sent[0]["RequestId"], format!("req-{kind}"));
            let reason = sent[0]["Reason"].as_str().unwrap();
            assert!(
                reason.starts_with("the migrate function failed to initialise: "),
                "{reason}"
            );
            assert!(reason.contains(init_error.as_str()), "{reason}");
            assert!(
                reason.contains("log stream 2026/11/30/[$LATEST]abc"),
                "{reason}"
            );
        }
    }

    /// An init failure of another kind (configuration) says so, too.
    #[tokio::test]
    async fn a_configuration_error_is_the_reason() {
        let migrator = Migrator::init_failed("DATABASE_URL is not set");
        let answers = Answers::default();
        let status = handler::handle(
            &request("Create"),
            &migrator,
            &answers,
            Duration::from_secs(5),
            "",
        )
        .await;
        assert_eq!(status, Ok(Status::Failed));
        let sent = answers.0.lock().unwrap();
        assert_eq!(
            sent[0]["Reason"],
            "the migrate function failed to initialise: DATABASE_URL is not set"
        );
    }

    /// Delete needs no database: a broken init must not block the stack's
    /// deletion (DELETE_FAILED).
    #[tokio::test]
    async fn an_init_failure_still_lets_the_stack_be_deleted() {
        let migrator = Migrator::init_failed("DATABASE_URL is not set");
        let answers = Answers::default();
        let status = handler::handle(
            &request("Delete"),
            &migrator,
            &answers,
            Duration::from_secs(5),
            "",
        )
        .await;
        assert_eq!(status, Ok(Status::Success));
        assert_eq!(answers.0.lock().unwrap()[0]["Status"], "SUCCESS");
    }

    #[test]
    fn time_left_never_underflows() {
        assert_eq!(time_left(0), Duration::ZERO);
        let in_a_minute = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
            + 60_000;
        let left = time_left(in_a_minute);
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(60),
            "{left:?}"
        );
    }
}

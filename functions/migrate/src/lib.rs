//! The migrate function's parts: the custom resource protocol (`handler`),
//! the migrator that runs the sqlx migrations through RDS Proxy, and the
//! responder that PUTs the answer to CloudFormation's pre-signed URL.

pub mod handler;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use shared::adapters::db_connect::Db;
use shared::adapters::postgres::MIGRATOR;
use shared::http_client::HttpClient;

/// Time kept back from the function's deadline to deliver the answer.
pub const ANSWER_MARGIN: Duration = Duration::from_secs(20);

/// Runs the embedded migrations, retrying the connection: right after the
/// stack creates RDS Proxy, its target can take minutes to become available.
pub struct PgMigrator {
    pub db: Db,
}

impl handler::Migrate for PgMigrator {
    async fn migrate(&self, within: Duration) -> Result<String, String> {
        let deadline = tokio::time::Instant::now() + within;
        let mut delay = Duration::from_secs(2);
        // Wait for a first connection; it goes back to the pool (of one)
        // for the migrator to take.
        loop {
            if let Err(e) = self.db.refresh().await {
                return Err(e.to_string());
            }
            match self.db.pool().acquire().await {
                Ok(_conn) => break,
                Err(e) if tokio::time::Instant::now() + delay < deadline => {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "cannot connect yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(format!("cannot connect to PostgreSQL: {e}")),
            }
        }
        // Through the pool: `Migrator::run(&mut PgConnection)` is not Send
        // enough for an async trait method (sqlx's Acquire lifetimes).
        MIGRATOR
            .run(self.db.pool())
            .await
            .map_err(|e| format!("migrating: {e}"))?;
        Ok(match MIGRATOR.iter().last() {
            Some(m) => format!("at {} ({})", m.version, m.description),
            None => "no migrations".to_owned(),
        })
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

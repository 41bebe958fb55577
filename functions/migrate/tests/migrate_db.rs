//! The migrate function against the local stack's real PostgreSQL: a
//! CloudFormation Create on an empty database installs pgvector and the
//! schema and answers SUCCESS; a repeat (Update) is a no-op that still
//! answers SUCCESS; an unreachable database answers FAILED within the time
//! given. Needs `.local/env` exported (`make test` does it).

use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lambda_events::event::cloudformation::CloudFormationCustomResourceRequest as Request;
use migrate_fn::handler::{self, Respond};
use migrate_fn::{FunctionsLogin, PgMigrator};
use shared::adapters::db_connect::{Db, PoolSize};
use shared::config::DbAuth;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

/// Keeps the answers instead of PUTting them.
#[derive(Default)]
struct Answers(Mutex<Vec<serde_json::Value>>);

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
        "ResponseURL": "http://127.0.0.1:9/unused",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/jobmatch/1",
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

fn admin_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL (export .local/env)")
}

async fn migrator(url: &str, logins: Vec<FunctionsLogin>) -> PgMigrator {
    let aws = aws_config::SdkConfig::builder().build();
    PgMigrator {
        db: Db::connect(url, DbAuth::Password, &aws, PoolSize::new(1))
            .await
            .unwrap(),
        logins,
    }
}

#[tokio::test]
async fn create_installs_pgvector_and_the_schema_on_an_empty_database_and_update_repeats_safely() {
    let admin = PgConnectOptions::from_str(&admin_url()).unwrap();
    let name = format!("migrate_it_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin.connect().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut parsed = url::Url::parse(&admin_url()).unwrap();
    parsed.set_path(&format!("/{name}"));
    let url = parsed.to_string();
    let fresh = PgConnectOptions::from_str(&url).unwrap();

    // A login role of this run's own (roles are per cluster); Update makes it
    // again, which must work on an existing role.
    let login_user = format!("fn_it_{}", uuid::Uuid::new_v4().simple());
    let login = FunctionsLogin {
        user: login_user.clone(),
        password: shared::config::Secret::new("a-test-password".into()),
        group: shared::adapters::postgres::READER_ROLE,
    };
    let writer_user = format!("wr_it_{}", uuid::Uuid::new_v4().simple());
    let writer = FunctionsLogin {
        user: writer_user.clone(),
        password: shared::config::Secret::new("a-writer-password".into()),
        group: shared::adapters::postgres::WRITER_ROLE,
    };
    let migrator = migrator(&url, vec![login, writer]).await;
    let answers = Answers::default();
    let status = handler::handle(
        &request("Create"),
        &migrator,
        &answers,
        Duration::from_secs(60),
        "",
    )
    .await;
    assert_eq!(status, Ok(aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponseStatus::Success));
    let status = handler::handle(
        &request("Update"),
        &migrator,
        &answers,
        Duration::from_secs(60),
        "",
    )
    .await;
    assert!(status.is_ok());
    drop(migrator);

    let answers = answers.0.into_inner().unwrap();
    assert_eq!(answers.len(), 2);
    for answer in &answers {
        assert_eq!(answer["Status"], "SUCCESS", "{answer}");
        assert_eq!(answer["PhysicalResourceId"], handler::PHYSICAL_ID);
    }
    let last = shared::adapters::schema::MIGRATOR.iter().last().unwrap();
    assert!(answers[0]["Data"]["SchemaVersion"]
        .as_str()
        .unwrap()
        .starts_with(&format!("at {}", last.version)));

    let mut db = fresh.connect().await.unwrap();
    let vector: String =
        sqlx::query("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_one(&mut db)
            .await
            .unwrap()
            .get(0);
    assert!(vector.starts_with("0."), "pgvector {vector}");
    let tables: i64 = sqlx::query(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('jobs', 'profiles')",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
    .get(0);
    assert_eq!(tables, 2);
    let applied: i64 = sqlx::query("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut db)
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        applied as usize,
        shared::adapters::schema::MIGRATOR.iter().count(),
        "each migration applied once"
    );
    db.close().await.unwrap();

    // The server holds our SCRAM verifier of the password (so the password
    // itself never reached it), and it matches the password.
    let stored: String = sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
        .bind(&login_user)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let salt = stored
        .split(['$', ':'])
        .nth(2)
        .map(|b64| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64))
        .expect("a SCRAM verifier")
        .expect("base64 salt");
    assert_eq!(
        stored,
        shared::adapters::postgres::scram_verifier("a-test-password", &salt)
    );

    // The login role reads jobs and may not write them.
    let mut as_functions = fresh
        .clone()
        .username(&login_user)
        .password("a-test-password")
        .connect()
        .await
        .unwrap();
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut as_functions)
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    let err = sqlx::query("DELETE FROM jobs")
        .execute(&mut as_functions)
        .await
        .expect_err("the functions' role may not write");
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501")
    );
    as_functions.close().await.unwrap();

    // The writer's login writes jobs (the cache's version moves through the
    // SECURITY DEFINER trigger) and may read nothing else.
    let mut as_writer = fresh
        .clone()
        .username(&writer_user)
        .password("a-writer-password")
        .connect()
        .await
        .unwrap();
    let deleted = sqlx::query("DELETE FROM jobs WHERE id = 'none'")
        .execute(&mut as_writer)
        .await
        .expect("the writer may write jobs");
    assert_eq!(deleted.rows_affected(), 0);
    for denied in [
        "SELECT count(*) FROM profiles",
        "SELECT count(*) FROM match_cache",
        "UPDATE jobs_version SET version = version + 1",
    ] {
        let err = sqlx::query(sqlx::AssertSqlSafe(denied))
            .execute(&mut as_writer)
            .await
            .expect_err(denied);
        assert_eq!(
            err.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{denied}"
        );
    }
    as_writer.close().await.unwrap();

    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    for role in [&login_user, &writer_user] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {role}")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn an_unreachable_database_answers_failed_within_the_time_given() {
    // Port 1 on loopback: refused at once, retried until the time is up.
    let migrator = migrator("postgres://nobody@127.0.0.1:1/none", vec![]).await;
    let answers = Answers::default();
    let started = Instant::now();
    let status = handler::handle(
        &request("Create"),
        &migrator,
        &answers,
        Duration::from_secs(5),
        "stream-1",
    )
    .await;
    assert_eq!(status, Ok(aws_lambda_events::event::cloudformation::CloudFormationCustomResourceResponseStatus::Failed));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let answers = answers.0.into_inner().unwrap();
    let reason = answers[0]["Reason"].as_str().unwrap();
    assert!(
        reason.contains("PostgreSQL") || reason.contains("within"),
        "{reason}"
    );
    assert!(reason.contains("stream-1"), "{reason}");
}

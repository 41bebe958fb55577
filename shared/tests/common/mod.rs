//! Helpers shared by the adapter integration tests: they need the local stack
//! (`make up`, or `make test` which starts it) and its `.local/env` exported.

#![allow(dead_code)]

use chrono::{DateTime, Utc};
use shared::domain::{EmploymentType, JobRecord, MatchRequest, EMBEDDING_DIM};

/// AWS config for the local moto server. Refuses to run against real AWS.
pub async fn local_aws() -> aws_config::SdkConfig {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap_or_default();
    assert!(
        endpoint.starts_with("http://127.0.0.1") || endpoint.starts_with("http://localhost"),
        "AWS_ENDPOINT_URL must point at the local moto server (run `make up` and export .local/env); got {endpoint:?}"
    );
    shared::aws::load()
        .await
        .expect("an HTTPS client (this machine needs a CA bundle)")
}

/// A name unique to this test run.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A unit vector along one axis, slightly tilted towards a second one.
pub fn axis(i: usize, tilt: f32) -> Vec<f32> {
    let mut v = vec![0.0; EMBEDDING_DIM];
    v[i % EMBEDDING_DIM] = 1.0;
    v[(i + 1) % EMBEDDING_DIM] = tilt;
    v
}

pub fn job(id: &str, embedding: Vec<f32>) -> JobRecord {
    JobRecord {
        id: id.into(),
        title: format!("Title {id}"),
        company: "Acme".into(),
        location: "Berlin".into(),
        remote: false,
        employment_type: EmploymentType::FullTime,
        salary_min: Some(60_000),
        salary_max: Some(80_000),
        skills: vec!["rust".into()],
        description: String::new(),
        posted_at: Utc::now(),
        valid_through: None,
        embedding: Some(embedding),
    }
}

pub fn request(limit: u32) -> MatchRequest {
    MatchRequest {
        embedding: None,
        text: None,
        skills: None,
        filters: Default::default(),
        limit,
        callback: None,
    }
}

pub fn days_ago(days: i64) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::days(days)
}

/// A fresh `sqlx::test` database brought to this release's schema as
/// `migrate` does: the migrations, then db/.
pub async fn migrated(pool: &sqlx::PgPool) {
    shared::adapters::schema::migrate(pool)
        .await
        .expect("migrations and db/");
}

/// Inserts `jobs` with the contract's columns.
pub async fn insert_jobs(pool: &sqlx::PgPool, jobs: &[JobRecord]) {
    for j in jobs {
        // `valid_through` only when set: schema.rs inserts into the schema
        // of a release before it.
        let sql = if j.valid_through.is_some() {
            "INSERT INTO jobs (id, title, company, location, remote, employment_type, salary_min, salary_max, \
             skills, description, posted_at, embedding, valid_through) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13)"
        } else {
            "INSERT INTO jobs (id, title, company, location, remote, employment_type, salary_min, salary_max, \
             skills, description, posted_at, embedding) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
        };
        let query = sqlx::query(sql)
            .bind(&j.id)
            .bind(&j.title)
            .bind(&j.company)
            .bind(&j.location)
            .bind(j.remote)
            .bind(j.employment_type.as_str())
            .bind(j.salary_min)
            .bind(j.salary_max)
            .bind(&j.skills)
            .bind(&j.description)
            .bind(j.posted_at)
            .bind(j.embedding.clone().map(pgvector::Vector::from));
        let query = match j.valid_through {
            Some(end) => query.bind(end),
            None => query,
        };
        query.execute(pool).await.expect("insert job");
    }
}

//! The loader against the real PostgreSQL + pgvector (DATABASE_URL, e.g. from
//! `.local/env`): `sqlx::test` gives each test a fresh database, migrated as `migrate` does (migrations, then db/).

use std::path::PathBuf;

use chrono::{NaiveDate, Utc};
use indicatif::ProgressBar;
use jobmatch_cli::generate::{self, World};
use jobmatch_cli::load::{load_jobs, load_profiles, LoadError};
use jobmatch_cli::model::LazyModel;
use pgvector::Vector;
use shared::domain::{JobRecord, ProfileRecord};
use sqlx::{PgPool, Row};

/// A fresh `sqlx::test` database brought to this release's schema as
/// `migrate` does: the migrations, then db/.
async fn migrated(pool: &PgPool) {
    shared::adapters::schema::migrate(pool)
        .await
        .expect("migrations and db/");
}

const JOBS: usize = 120;

fn options() -> generate::Options {
    generate::Options {
        jobs: JOBS,
        profiles: 4,
        seed: 11,
        as_of: NaiveDate::from_ymd_opt(2025, 3, 1).expect("date"),
        // These tests are about the COPY path, not the model: synthetic vectors.
        embeddings: generate::Embeddings::Synthetic,
    }
}

/// A file in the temp dir, unique to this process and test; removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("jobmatch-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The model, loaded only if a line lacks an embedding (not in synthetic files).
fn model() -> LazyModel {
    LazyModel::new(embed::default_dir(), None)
}

fn generated_jobs() -> Vec<u8> {
    let mut out = Vec::new();
    generate::write_jobs(&World::new(options().seed), &options(), &mut out).expect("generate");
    out
}

fn parse_jobs(bytes: &[u8]) -> Vec<JobRecord> {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("job"))
        .collect()
}

fn to_lines(jobs: &[JobRecord]) -> Vec<u8> {
    jobs.iter()
        .map(|j| serde_json::to_string(j).expect("json") + "\n")
        .collect::<String>()
        .into_bytes()
}

async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await
        .expect("count")
}

async fn title_of(pool: &PgPool, id: &str) -> String {
    sqlx::query_scalar("SELECT title FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .expect("title")
}

#[sqlx::test(migrations = false)]
async fn loads_a_generated_file_with_its_values(pool: PgPool) {
    migrated(&pool).await;
    let bytes = generated_jobs();
    let file = TempFile::new("jobs-values.jsonl", &bytes);
    let mut conn = pool.acquire().await.expect("conn");
    let stats = load_jobs(&mut conn, &file.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("load");
    assert_eq!(stats.rows, JOBS as u64);
    assert_eq!(stats.written, JOBS as u64);
    assert_eq!(count(&pool, "jobs").await, JOBS as i64);

    // Every record reads back as written.
    let jobs = parse_jobs(&bytes);
    for job in &jobs {
        let row = sqlx::query(
            "SELECT title, company, location, remote, employment_type, salary_min, salary_max, \
             skills, description, posted_at, embedding FROM jobs WHERE id = $1",
        )
        .bind(&job.id)
        .fetch_one(&pool)
        .await
        .expect("row");
        assert_eq!(row.get::<String, _>("title"), job.title);
        assert_eq!(row.get::<String, _>("company"), job.company);
        assert_eq!(row.get::<String, _>("location"), job.location);
        assert_eq!(row.get::<bool, _>("remote"), job.remote);
        assert_eq!(
            row.get::<String, _>("employment_type"),
            job.employment_type.as_str()
        );
        assert_eq!(row.get::<Option<i32>, _>("salary_min"), job.salary_min);
        assert_eq!(row.get::<Option<i32>, _>("salary_max"), job.salary_max);
        assert_eq!(row.get::<Vec<String>, _>("skills"), job.skills);
        assert_eq!(row.get::<String, _>("description"), job.description);
        assert_eq!(
            row.get::<chrono::DateTime<Utc>, _>("posted_at"),
            job.posted_at
        );
        assert_eq!(
            Some(row.get::<Vector, _>("embedding").to_vec()),
            job.embedding
        );
    }
    // The generator's mix survives: some jobs without salary, some with only a minimum.
    let no_salary: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE salary_min IS NULL")
        .fetch_one(&pool)
        .await
        .expect("count");
    assert!(no_salary > 0 && no_salary < JOBS as i64 / 2, "{no_salary}");

    // Profiles: demo-user first, updated_at defaulted to now().
    let mut profiles = Vec::new();
    generate::write_profiles(&World::new(options().seed), &options(), &mut profiles)
        .expect("profiles");
    let file = TempFile::new("profiles-values.jsonl", &profiles);
    let before = Utc::now();
    let stats = load_profiles(&mut conn, &file.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("load profiles");
    assert_eq!(stats.rows, 5);
    assert_eq!(count(&pool, "profiles").await, 5);
    let first: ProfileRecord =
        serde_json::from_slice(profiles.split(|b| *b == b'\n').next().expect("first line"))
            .expect("profile");
    let (skills, embedding, updated_at): (Vec<String>, Vector, chrono::DateTime<Utc>) =
        sqlx::query_as(
            "SELECT skills, embedding, updated_at FROM profiles WHERE user_id = 'demo-user'",
        )
        .fetch_one(&pool)
        .await
        .expect("demo-user");
    assert_eq!(skills, first.skills);
    assert_eq!(Some(embedding.to_vec()), first.embedding);
    assert!(updated_at >= before - chrono::Duration::seconds(5));
}

#[sqlx::test(migrations = false)]
async fn reloading_upserts_and_the_changed_title_wins(pool: PgPool) {
    migrated(&pool).await;
    let bytes = generated_jobs();
    let file = TempFile::new("jobs-reload-1.jsonl", &bytes);
    let mut conn = pool.acquire().await.expect("conn");
    load_jobs(&mut conn, &file.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("first load");

    let mut jobs = parse_jobs(&bytes);
    jobs[1].title = "Changed \"Title\", with, commas".into();
    jobs[1].skills = vec!["Rust".into(), "quote\"s".into(), r"back\slash".into()];
    let changed = TempFile::new("jobs-reload-2.jsonl", &to_lines(&jobs));
    let stats = load_jobs(&mut conn, &changed.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("second load");
    assert_eq!(stats.rows, JOBS as u64);
    assert_eq!(stats.written, 1, "only the changed row is rewritten");
    assert_eq!(count(&pool, "jobs").await, JOBS as i64);
    assert_eq!(
        title_of(&pool, &jobs[1].id).await,
        "Changed \"Title\", with, commas"
    );
    let skills: Vec<String> = sqlx::query_scalar("SELECT skills FROM jobs WHERE id = $1")
        .bind(&jobs[1].id)
        .fetch_one(&pool)
        .await
        .expect("skills");
    assert_eq!(skills, vec![r"back\slash", "quote\"s", "rust"]);
}

#[sqlx::test(migrations = false)]
async fn a_bad_line_fails_naming_it_and_commits_nothing(pool: PgPool) {
    migrated(&pool).await;
    let bytes = generated_jobs();
    let good = TempFile::new("jobs-bad-1.jsonl", &bytes);
    let mut conn = pool.acquire().await.expect("conn");
    load_jobs(&mut conn, &good.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("load");

    // Lines 1-2 would change a title and add a job; line 3 is bad.
    let mut jobs = parse_jobs(&bytes);
    let original = jobs[0].title.clone();
    jobs[0].title = "Should not be committed".into();
    jobs[1].id = "job-new".into();
    jobs[2].embedding = Some(vec![0.5, 0.5, 0.5]);
    let bad = TempFile::new("jobs-bad-2.jsonl", &to_lines(&jobs));
    let err = load_jobs(&mut conn, &bad.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect_err("bad line");
    assert!(matches!(err, LoadError::Line { line: 3, .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}:3: embedding: must have exactly 384 numbers, got 3",
            bad.0.display()
        )
    );
    assert_eq!(count(&pool, "jobs").await, JOBS as i64);
    assert_eq!(title_of(&pool, &jobs[0].id).await, original);

    // The connection is still usable after the aborted COPY.
    let stats = load_jobs(&mut conn, &good.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("load again");
    assert_eq!(stats.written, 0);
}

async fn index_definitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs' ORDER BY indexname",
    )
    .fetch_all(pool)
    .await
    .expect("indexes")
}

#[sqlx::test(migrations = false)]
async fn a_big_batch_rebuilds_the_vector_index_as_it_was(pool: PgPool) {
    migrated(&pool).await;
    let before = index_definitions(&pool).await;
    assert!(
        before.iter().any(|d| d.contains("USING hnsw")),
        "{before:?}"
    );

    let opts = generate::Options {
        jobs: 1_500,
        ..options()
    };
    let mut bytes = Vec::new();
    generate::write_jobs(&World::new(opts.seed), &opts, &mut bytes).expect("generate");
    let file = TempFile::new("jobs-big.jsonl", &bytes);
    let mut conn = pool.acquire().await.expect("conn");
    let stats = load_jobs(&mut conn, &file.0, &ProgressBar::hidden(), &mut model())
        .await
        .expect("load");
    assert_eq!(stats.written, 1_500);
    assert_eq!(index_definitions(&pool).await, before);

    // The rebuilt index serves nearest-neighbour queries.
    let first = &parse_jobs(&bytes)[0];
    sqlx::raw_sql("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("set");
    let query = "SELECT id FROM jobs ORDER BY embedding <=> $1 LIMIT 5";
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN {query}")))
        .bind(first.embedding.clone().map(Vector::from))
        .fetch_all(&mut *conn)
        .await
        .expect("explain");
    assert!(plan.join("\n").contains("jobs_embedding_hnsw"), "{plan:?}");
    let nearest: Vec<String> = sqlx::query_scalar(query)
        .bind(first.embedding.clone().map(Vector::from))
        .fetch_all(&mut *conn)
        .await
        .expect("nearest");
    assert_eq!(nearest[0], first.id);
}

/// A file with no embeddings at all: the loader embeds each posting's text and
/// each resume with the real model, and keeps a vector that a line carries.
#[sqlx::test(migrations = false)]
async fn embeds_the_lines_that_have_no_embedding(pool: PgPool) {
    migrated(&pool).await;
    let opts = generate::Options {
        jobs: 12,
        profiles: 2,
        embeddings: generate::Embeddings::None,
        ..options()
    };
    let world = World::new(opts.seed);
    let mut jobs_bytes = Vec::new();
    generate::write_jobs(&world, &opts, &mut jobs_bytes).expect("generate");
    let mut jobs = parse_jobs(&jobs_bytes);
    assert!(jobs.iter().all(|j| j.embedding.is_none()));
    // One line brings its own vector; a second repeats the first one's text.
    let own = {
        let mut v = vec![0.0_f32; 384];
        v[3] = 1.0;
        v
    };
    jobs[0].embedding = Some(own.clone());
    jobs[2].description = jobs[1].description.clone();
    jobs[2].title = jobs[1].title.clone();
    jobs[2].skills = jobs[1].skills.clone();
    let file = TempFile::new("text-jobs.jsonl", &to_lines(&jobs));
    let cache = TempFile::new("text-cache.jsonl", b"");
    let mut model = LazyModel::new(embed::default_dir(), Some(cache.0.clone()));
    let mut conn = pool.acquire().await.expect("conn");
    let stats = load_jobs(&mut conn, &file.0, &ProgressBar::hidden(), &mut model)
        .await
        .expect("load");
    assert_eq!((stats.rows, stats.embedded), (12, 11));
    // Eleven lines, ten distinct texts: the model ran ten times.
    assert_eq!(stats.model_runs, 10);

    let reference = embed::MiniLm::load(&embed::default_dir()).expect("model");
    for job in &jobs {
        let stored: Vector = sqlx::query_scalar("SELECT embedding FROM jobs WHERE id = $1")
            .bind(&job.id)
            .fetch_one(&pool)
            .await
            .expect("row");
        let want = match &job.embedding {
            Some(v) => v.clone(),
            None => reference
                .embed(&[&job.embedding_text()])
                .expect("embed")
                .remove(0),
        };
        let off = stored
            .as_slice()
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(off < 1e-5, "{}: off by {off}", job.id);
    }

    // A second load of the same file finds every text in the cache.
    let mut again = LazyModel::new(embed::default_dir(), Some(cache.0.clone()));
    let stats = load_jobs(&mut conn, &file.0, &ProgressBar::hidden(), &mut again)
        .await
        .expect("reload");
    assert_eq!(stats.embedded, 11);
    assert_eq!(again.cache_hits as u64, stats.model_runs);

    // Profiles: the resume is embedded.
    let mut profiles_bytes = Vec::new();
    generate::write_profiles(&world, &opts, &mut profiles_bytes).expect("profiles");
    let profiles: Vec<ProfileRecord> = std::str::from_utf8(&profiles_bytes)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("profile"))
        .collect();
    assert!(profiles
        .iter()
        .all(|p| p.embedding.is_none() && p.text.is_some()));
    let file = TempFile::new("text-profiles.jsonl", &profiles_bytes);
    let stats = load_profiles(&mut conn, &file.0, &ProgressBar::hidden(), &mut model)
        .await
        .expect("load profiles");
    assert_eq!(stats.embedded, profiles.len() as u64);
    let demo: Vector =
        sqlx::query_scalar("SELECT embedding FROM profiles WHERE user_id = 'demo-user'")
            .fetch_one(&pool)
            .await
            .expect("demo");
    let resume = profiles[0].text.as_deref().expect("resume");
    let want = reference.embed(&[resume]).expect("embed").remove(0);
    let cosine: f32 = demo.as_slice().iter().zip(&want).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.99999, "{cosine}");
}

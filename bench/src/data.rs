//! The benchmark's data: a database of its own on the local server (the demo
//! `jobmatch` database is never touched), migrated, then N synthetic jobs
//! generated and loaded with the CLI's COPY loader; load rate and index build time.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use jobmatch_cli::generate::{self, World};
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// How the data got there.
#[derive(Debug, Clone, Serialize)]
pub struct DataFigures {
    pub database: String,
    pub jobs: i64,
    /// False when `--reuse` found the data already loaded.
    pub loaded_now: bool,
    /// `jobmatch_exact_gate` of the loaded table: the gate production uses.
    pub derived_gate_rows: i64,
    /// `--halfvec`: the halfvec graph's figures beside the vector one's.
    pub halfvec: Option<crate::halfvec::HalfvecFigures>,
    /// Unfiltered recall and time against `hnsw.ef_search`.
    pub ef_sweep: Vec<crate::measure::EfPoint>,
    /// `jobmatch_ef_search` of the loaded table for C = 100: the matcher's.
    pub derived_ef_search: i32,
    pub generate_secs: Option<f64>,
    pub load_secs: Option<f64>,
    pub load_rows_per_sec: Option<f64>,
    pub index_build_secs: Option<f64>,
    pub vacuum_analyze_secs: Option<f64>,
    pub table_mb: f64,
    pub hnsw_index_mb: f64,
    /// The remote jobs' graph (`jobs_embedding_hnsw_remote`).
    pub remote_hnsw_index_mb: f64,
    /// `m` and `ef_construction` of the HNSW index, as PostgreSQL reports them.
    pub hnsw_options: String,
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("--database must be lower-case letters, digits and _ (got {name:?})");
    }
    if name == "jobmatch" || name == "postgres" {
        bail!("--database {name} is not a benchmark database");
    }
    Ok(())
}

/// Creates (or, with `reuse`, keeps) the benchmark database and returns a pool on it.
pub async fn prepare(
    server_url: &str,
    database: &str,
    jobs: usize,
    seed: u64,
    reuse: bool,
    work_dir: &Path,
) -> Result<(PgPool, DataFigures)> {
    check_name(database)?;
    let server = PgConnectOptions::from_str(server_url).context("DATABASE_URL")?;
    let mut admin = server
        .clone()
        .connect()
        .await
        .context("connecting to PostgreSQL (is the stack up? `make up`)")?;
    let options = server.clone().database(database);
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await?;
    if reuse && exists {
        let pool = pool(&options).await?;
        let count: Option<i64> = sqlx::query_scalar("SELECT count(*) FROM jobs")
            .fetch_one(&pool)
            .await
            .ok();
        if count == Some(jobs as i64) {
            eprintln!("bench: reusing {database} ({jobs} jobs already loaded)");
            // Migrations and db/ changed since the load apply to it too.
            shared::adapters::schema::migrate(&pool)
                .await
                .context("migrating the benchmark database")?;
            sqlx::query("ANALYZE jobs").execute(&pool).await?;
            let figures = sizes(&pool, database, jobs as i64, false).await?;
            return Ok((pool, figures));
        }
        pool.close().await;
    }
    // The name is checked above: lower-case letters, digits and _ only.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await?;
    {
        let fresh = pool(&options).await?;
        shared::adapters::schema::migrate(&fresh)
            .await
            .context("migrating the benchmark database")?;
        fresh.close().await;
    }
    let mut conn = options.clone().connect().await?;

    std::fs::create_dir_all(work_dir)?;
    let path = work_dir.join(format!("jobs-{jobs}-seed{seed}.jsonl"));
    eprintln!("bench: generating {jobs} jobs (seed {seed})");
    let generated = Instant::now();
    let opts = generate::Options {
        jobs,
        profiles: 0,
        seed,
        as_of: generate::today(),
        // 100k-1M jobs: the model cannot embed them all; the vectors are synthetic.
        embeddings: generate::Embeddings::Synthetic,
    };
    {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        generate::write_jobs(&World::new(seed), &opts, &mut out)?;
    }
    let generate_secs = generated.elapsed().as_secs_f64();

    eprintln!(
        "bench: loading {} (COPY, then the HNSW build)",
        path.display()
    );
    let stats = jobmatch_cli::load::load_jobs(
        &mut conn,
        &path,
        &ProgressBar::hidden(),
        &mut jobmatch_cli::model::LazyModel::new(embed::default_dir(), None),
    )
    .await;
    // The file is only a means: do not leave hundreds of MB behind.
    let _ = std::fs::remove_file(&path);
    let stats = stats?;
    // A steady-state table: visibility map set, statistics fresh, and no
    // autovacuum starting in the middle of the measurements.
    let vacuumed = Instant::now();
    sqlx::raw_sql("VACUUM (ANALYZE) jobs")
        .execute(&mut conn)
        .await?;
    let vacuum_secs = vacuumed.elapsed().as_secs_f64();
    let pool = pool(&options).await?;
    let mut figures = sizes(&pool, database, stats.rows as i64, true).await?;
    figures.generate_secs = Some(generate_secs);
    figures.load_secs = Some(stats.elapsed.as_secs_f64());
    figures.load_rows_per_sec = Some(stats.rows_per_sec());
    figures.index_build_secs = Some(stats.index_build.as_secs_f64());
    figures.vacuum_analyze_secs = Some(vacuum_secs);
    Ok((pool, figures))
}

/// Rebuilds the HNSW graphs (all jobs, remote jobs) with other build parameters (to compare them);
/// returns the build time in seconds.
pub async fn rebuild_hnsw(pool: &PgPool, m: u32, ef_construction: u32) -> Result<f64> {
    let mut tx = pool.begin().await?;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT set_config('maintenance_work_mem', $1, true)")
        .bind(jobmatch_cli::load::index_memory_kib(rows).to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql("DROP INDEX jobs_embedding_hnsw, jobs_embedding_hnsw_remote")
        .execute(&mut *tx)
        .await?;
    let started = Instant::now();
    // Both graphs, with the same parameters as the migrations give them.
    // Both numbers are u32: the statement cannot carry anything else.
    for (name, only) in [
        ("jobs_embedding_hnsw", ""),
        ("jobs_embedding_hnsw_remote", " WHERE remote"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "CREATE INDEX {name} ON jobs USING hnsw (embedding vector_cosine_ops) \
             WITH (m = {m}, ef_construction = {ef_construction}){only}"
        )))
        .execute(&mut *tx)
        .await?;
    }
    let secs = started.elapsed().as_secs_f64();
    tx.commit().await?;
    Ok(secs)
}

async fn pool(options: &PgConnectOptions) -> Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await?)
}

pub async fn sizes(
    pool: &PgPool,
    database: &str,
    jobs: i64,
    loaded_now: bool,
) -> Result<DataFigures> {
    let (table, index, remote_index, options): (i64, i64, i64, String) = sqlx::query_as(
        "SELECT pg_total_relation_size('jobs') - pg_indexes_size('jobs'), \
                pg_relation_size('jobs_embedding_hnsw'), \
                pg_relation_size('jobs_embedding_hnsw_remote'), \
                coalesce(array_to_string(reloptions, ','), '') \
         FROM pg_class WHERE oid = 'jobs_embedding_hnsw'::regclass",
    )
    .fetch_one(pool)
    .await?;
    Ok(DataFigures {
        derived_gate_rows: 0,
        halfvec: None,
        ef_sweep: Vec::new(),
        derived_ef_search: 0,
        database: database.to_owned(),
        jobs,
        loaded_now,
        generate_secs: None,
        load_secs: None,
        load_rows_per_sec: None,
        index_build_secs: None,
        vacuum_analyze_secs: None,
        table_mb: table as f64 / 1e6,
        hnsw_index_mb: index as f64 / 1e6,
        remote_hnsw_index_mb: remote_index as f64 / 1e6,
        hnsw_options: options,
    })
}

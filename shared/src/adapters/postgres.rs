//! The job index on PostgreSQL with pgvector. The profile lookup and the
//! candidate query share one transaction (one pool acquisition); settings are
//! `SET LOCAL` (via `set_config(..., true)`) so that RDS Proxy never pins a session.

use std::time::Duration;

use pgvector::Vector;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use crate::domain::{Candidate, EmploymentType, Filters};
use crate::error::{Error, Result};
use crate::ports::{JobIndex, Neighbours, Query};

const COMPONENT: &str = "postgres";

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// SQLSTATE classes that say "try again": connection exceptions (08),
/// transaction rollbacks such as serialization failures (40), insufficient
/// resources (53), operator intervention: shutdown, statement timeout (57).
const TRANSIENT_SQLSTATE_CLASSES: [&str; 4] = ["08", "40", "53", "57"];

fn db_err(err: sqlx::Error) -> Error {
    match err {
        sqlx::Error::Database(e) => {
            let transient = e
                .code()
                .is_some_and(|c| TRANSIENT_SQLSTATE_CLASSES.iter().any(|p| c.starts_with(p)));
            if transient {
                Error::unavailable(COMPONENT, e)
            } else {
                Error::Internal(format!("database: {e}"))
            }
        }
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => Error::Internal(err.to_string()),
        other => Error::unavailable(COMPONENT, other),
    }
}

/// A pool that connects on first use, so that a cold start never fails on it.
pub fn lazy_pool(database_url: &str, max_connections: u32) -> Result<PgPool> {
    lazy_pool_with(database_url, max_connections, Duration::from_secs(5))
}

/// `lazy_pool` with its acquire timeout, which must stay below the function timeout.
pub fn lazy_pool_with(
    database_url: &str,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        .connect_lazy(database_url)
        .map_err(|e| Error::Internal(format!("DATABASE_URL: {e}")))
}

/// How the nearest candidates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Exact distances over the rows that pass the filters (B-tree prefilter).
    Exact,
    /// The HNSW index with iterative scan, filters applied during the scan.
    Hnsw,
}

/// Default of `EXACT_SCAN_MAX_ROWS`: at most this many passing rows are
/// searched exactly, more go through HNSW. Measured by `make bench` (README
/// "Performance"): below it the exact scan is both faster and exact.
pub const DEFAULT_EXACT_SCAN_MAX_ROWS: i64 = 20_000;
/// The HNSW candidate list is at least this long: recall@10 of the unfiltered
/// scan reaches 0.98 from about there on the benchmark data.
pub const MIN_EF_SEARCH: u32 = 100;
/// An iterative scan gives up after visiting this many tuples. Filters that
/// pass few rows go to the exact plan, so this is only a safety net.
pub const MAX_SCAN_TUPLES: u32 = 50_000;

#[derive(Clone, Debug)]
pub struct PgJobIndex {
    pool: PgPool,
    /// Up to this many rows passing the filters are searched exactly.
    exact_scan_max_rows: i64,
    /// `statement_timeout` of each match transaction, in ms (0: none).
    statement_timeout_ms: u64,
}

/// Settings of the exact plan's transaction (all `SET LOCAL`): a custom plan
/// for every execution, because a cached generic plan cannot see how
/// selective the bound filters are and may fall back to a sequential scan.
const EXACT_SETTINGS: &str = "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)";
/// Settings of the HNSW plan's transaction: a candidate list of $1, an
/// iterative scan that keeps going while filters drop rows (up to $2 tuples),
/// and no other way to order the rows than the HNSW index (PostgreSQL would
/// otherwise sort a B-tree range when it misjudges the filter as selective).
const HNSW_SETTINGS: &str = "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), \
     set_config('hnsw.ef_search', $1, true), \
     set_config('hnsw.iterative_scan', 'relaxed_order', true), \
     set_config('hnsw.max_scan_tuples', $2, true), \
     set_config('enable_seqscan', 'off', true), \
     set_config('enable_bitmapscan', 'off', true), \
     set_config('enable_sort', 'off', true)";

impl PgJobIndex {
    pub fn new(pool: PgPool, exact_scan_max_rows: i64) -> PgJobIndex {
        PgJobIndex {
            pool,
            exact_scan_max_rows,
            statement_timeout_ms: 0,
        }
    }

    /// Bounds every statement of a match, so that a stuck query fails as a
    /// transient error instead of holding the task until the deadline.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> PgJobIndex {
        self.statement_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Exact when few rows pass (a small table, or selective filters), HNSW
    /// otherwise. One round trip: the table's estimated size, and the rows
    /// passing the filters counted up to `exact_scan_max_rows + 1` (served by
    /// the B-tree indexes; a broad filter stops at the cap). The statement is
    /// not kept prepared, so it is always planned for its actual filters.
    async fn choose_plan(&self, conn: &mut PgConnection, filters: &Filters) -> Result<Plan> {
        let mut qb = QueryBuilder::new(
            "SELECT (SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass)::float8",
        );
        if !filters.is_empty() {
            qb.push(", (SELECT count(*) FROM (SELECT 1 FROM jobs WHERE true");
            push_filters(&mut qb, filters);
            qb.push(" LIMIT ")
                .push_bind(self.exact_scan_max_rows.saturating_add(1))
                .push(") passing)");
        } else {
            qb.push(", NULL::int8");
        }
        let (table_rows, passing): (f64, Option<i64>) = qb
            .build_query_as()
            .persistent(false)
            .fetch_one(conn)
            .await
            .map_err(db_err)?;
        // reltuples is -1 before the first ANALYZE: nothing known, go exact.
        let passing = passing.unwrap_or(table_rows as i64);
        Ok(if passing <= self.exact_scan_max_rows {
            Plan::Exact
        } else {
            Plan::Hnsw
        })
    }

    /// [`JobIndex::nearest`], also telling which plan ran; `force` overrides the
    /// choice (the benchmark compares plans with it).
    pub async fn nearest_planned(
        &self,
        query: Query<'_>,
        filters: &Filters,
        count: u32,
        force: Option<Plan>,
    ) -> Result<(Neighbours, Plan)> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        if self.statement_timeout_ms > 0 {
            // Local to the transaction: a session SET would pin RDS Proxy.
            sqlx::query("SELECT set_config('statement_timeout', $1, true)")
                .bind(self.statement_timeout_ms.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        let (embedding, profile_skills) = match query {
            Query::Embedding(e) => (Vector::from(e.to_vec()), None),
            Query::Profile(user) => {
                let row: Option<(Vector, Vec<String>)> =
                    sqlx::query_as("SELECT embedding, skills FROM profiles WHERE user_id = $1")
                        .bind(user)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db_err)?;
                let (embedding, skills) = row.ok_or(Error::ProfileNotFound)?;
                (embedding, Some(skills))
            }
        };
        let plan = match force {
            Some(plan) => plan,
            None => self.choose_plan(&mut tx, filters).await?,
        };
        settings(&mut tx, plan, count).await?;
        let rows = candidate_query(plan, &embedding, filters, count)
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        let mut candidates = rows
            .iter()
            .map(candidate_from_row)
            .collect::<Result<Vec<_>>>()?;
        if plan == Plan::Hnsw {
            // relaxed_order may return rows slightly out of order.
            candidates.sort_by(|a, b| {
                b.similarity
                    .total_cmp(&a.similarity)
                    .then_with(|| a.job_id.cmp(&b.job_id))
            });
        }
        Ok((
            Neighbours {
                profile_skills,
                candidates,
            },
            plan,
        ))
    }

    /// The plan choice and PostgreSQL's plan (`EXPLAIN (FORMAT JSON)`) of the
    /// candidate query, prepared and run through sqlx like the real one, in a
    /// transaction with the same settings.
    pub async fn explain(
        &self,
        embedding: &[f32],
        filters: &Filters,
        count: u32,
    ) -> Result<(Plan, serde_json::Value)> {
        let mut tx = self.pool.begin().await.map_err(db_err)?;
        let plan = self.choose_plan(&mut tx, filters).await?;
        settings(&mut tx, plan, count).await?;
        let mut qb = QueryBuilder::new("EXPLAIN (FORMAT JSON) ");
        push_candidate_query(
            &mut qb,
            plan,
            &Vector::from(embedding.to_vec()),
            filters,
            count,
        );
        let explained: serde_json::Value = qb
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.rollback().await.map_err(db_err)?;
        Ok((plan, explained))
    }
}

/// Applies the plan's settings to the transaction.
async fn settings(conn: &mut PgConnection, plan: Plan, count: u32) -> Result<()> {
    match plan {
        Plan::Exact => sqlx::query(EXACT_SETTINGS).execute(conn).await,
        Plan::Hnsw => {
            // Enough candidates from the graph for `count` rows.
            let ef_search = count.clamp(MIN_EF_SEARCH, 1000);
            sqlx::query(HNSW_SETTINGS)
                .bind(ef_search.to_string())
                .bind(MAX_SCAN_TUPLES.to_string())
                .execute(conn)
                .await
        }
    }
    .map_err(db_err)?;
    Ok(())
}

/// Appends ` AND <predicate>` for each filter present (public so that the
/// benchmark's reference queries filter exactly like the matcher).
pub fn push_filters(qb: &mut QueryBuilder<Postgres>, filters: &Filters) {
    if let Some(locations) = &filters.locations {
        let lower: Vec<String> = locations.iter().map(|l| l.to_lowercase()).collect();
        qb.push(" AND lower(location) = ANY(")
            .push_bind(lower)
            .push(")");
    }
    if let Some(remote) = filters.remote {
        qb.push(" AND remote = ").push_bind(remote);
    }
    if let Some(types) = &filters.employment_types {
        let names: Vec<String> = types.iter().map(|t| t.as_str().to_owned()).collect();
        qb.push(" AND employment_type = ANY(")
            .push_bind(names)
            .push(")");
    }
    if let Some(min) = filters.min_salary {
        qb.push(" AND coalesce(salary_max, salary_min) >= ")
            .push_bind(min);
    }
    if let Some(days) = filters.posted_within_days {
        qb.push(" AND posted_at >= now() - make_interval(days => ")
            .push_bind(i32::try_from(days).unwrap_or(i32::MAX))
            .push(")");
    }
    if let Some(excluded) = &filters.exclude_job_ids {
        qb.push(" AND id <> ALL(")
            .push_bind(excluded.clone())
            .push(")");
    }
}

const COLUMNS: &str = "j.id, j.title, j.company, j.location, j.remote, j.employment_type, \
                       j.salary_min, j.salary_max, j.posted_at, j.skills";

/// The candidate query of a plan.
pub fn candidate_query(
    plan: Plan,
    embedding: &Vector,
    filters: &Filters,
    count: u32,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new("");
    push_candidate_query(&mut qb, plan, embedding, filters, count);
    qb
}

fn push_candidate_query(
    qb: &mut QueryBuilder<Postgres>,
    plan: Plan,
    embedding: &Vector,
    filters: &Filters,
    count: u32,
) {
    match plan {
        Plan::Exact => {
            // A materialised CTE orders by a computed column, which the HNSW
            // index cannot serve: every passing row gets its exact distance.
            qb.push("WITH d AS MATERIALIZED (SELECT id, embedding <=> ")
                .push_bind(embedding.clone())
                .push(" AS distance FROM jobs WHERE true");
            push_filters(qb, filters);
            qb.push("), top AS (SELECT id, distance FROM d ORDER BY distance, id LIMIT ")
                .push_bind(i64::from(count))
                .push(") SELECT ")
                .push(COLUMNS)
                .push(", 1 - top.distance AS similarity FROM top JOIN jobs j USING (id) ORDER BY top.distance, j.id");
        }
        Plan::Hnsw => {
            qb.push("SELECT ")
                .push(COLUMNS)
                .push(", 1 - (j.embedding <=> ")
                .push_bind(embedding.clone())
                .push(") AS similarity FROM jobs j WHERE true");
            push_filters(qb, filters);
            qb.push(" ORDER BY j.embedding <=> ")
                .push_bind(embedding.clone())
                .push(" LIMIT ")
                .push_bind(i64::from(count));
        }
    }
}

fn candidate_from_row(row: &sqlx::postgres::PgRow) -> Result<Candidate> {
    let employment: String = row.try_get("employment_type").map_err(db_err)?;
    let employment_type =
        serde_json::from_value::<EmploymentType>(serde_json::Value::String(employment.clone()))
            .map_err(|_| Error::Internal(format!("unknown employment_type {employment:?}")))?;
    Ok(Candidate {
        job_id: row.try_get("id").map_err(db_err)?,
        title: row.try_get("title").map_err(db_err)?,
        company: row.try_get("company").map_err(db_err)?,
        location: row.try_get("location").map_err(db_err)?,
        remote: row.try_get("remote").map_err(db_err)?,
        employment_type,
        salary_min: row.try_get("salary_min").map_err(db_err)?,
        salary_max: row.try_get("salary_max").map_err(db_err)?,
        posted_at: row.try_get("posted_at").map_err(db_err)?,
        skills: row.try_get("skills").map_err(db_err)?,
        similarity: row.try_get("similarity").map_err(db_err)?,
    })
}

impl JobIndex for PgJobIndex {
    async fn nearest(&self, query: Query<'_>, filters: &Filters, count: u32) -> Result<Neighbours> {
        let (neighbours, plan) = self.nearest_planned(query, filters, count, None).await?;
        tracing::debug!(?plan, candidates = neighbours.candidates.len(), "nearest");
        Ok(neighbours)
    }

    async fn pgvector_version(&self) -> Result<String> {
        sqlx::query_scalar::<_, String>(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::unavailable(COMPONENT, "the vector extension is not installed"))
    }
}

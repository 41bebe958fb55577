//! The job index on PostgreSQL with pgvector. The profile lookup and the
//! candidate query share one transaction (one pool acquisition); settings are
//! `SET LOCAL` (via `set_config(..., true)`) so that RDS Proxy never pins a session.

use std::time::Duration;

use pgvector::Vector;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Exact distances over the rows that pass the filters (B-tree prefilter).
    Exact,
    /// The HNSW index with iterative scan, filters applied during the scan.
    Hnsw,
}

#[derive(Clone, Debug)]
pub struct PgJobIndex {
    pool: PgPool,
    /// Tables up to this many rows are always searched exactly.
    exact_scan_max_rows: i64,
    /// `statement_timeout` of each match transaction, in ms (0: none).
    statement_timeout_ms: u64,
}

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

    /// Exact for small tables and for filtered queries, HNSW otherwise.
    fn choose_plan(&self, estimated_rows: i64, filters: &Filters) -> Plan {
        if estimated_rows <= self.exact_scan_max_rows || !filters.is_empty() {
            Plan::Exact
        } else {
            Plan::Hnsw
        }
    }
}

/// Appends ` AND <predicate>` for each filter present.
fn push_filters(qb: &mut QueryBuilder<Postgres>, filters: &Filters) {
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

fn candidate_query(
    plan: Plan,
    embedding: &Vector,
    filters: &Filters,
    count: u32,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new("");
    match plan {
        Plan::Exact => {
            // A materialised CTE orders by a computed column, which the HNSW
            // index cannot serve: every passing row gets its exact distance.
            qb.push("WITH d AS MATERIALIZED (SELECT id, embedding <=> ")
                .push_bind(embedding.clone())
                .push(" AS distance FROM jobs WHERE true");
            push_filters(&mut qb, filters);
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
            push_filters(&mut qb, filters);
            qb.push(" ORDER BY j.embedding <=> ")
                .push_bind(embedding.clone())
                .push(" LIMIT ")
                .push_bind(i64::from(count));
        }
    }
    qb
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
        let estimated_rows: f32 =
            sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass")
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        let plan = self.choose_plan(estimated_rows as i64, filters);
        if plan == Plan::Hnsw {
            // Enough candidates from the graph, and keep scanning when filters drop rows.
            let ef_search = count.clamp(40, 1000).to_string();
            sqlx::query("SELECT set_config('hnsw.ef_search', $1, true), set_config('hnsw.iterative_scan', 'relaxed_order', true)")
                .bind(ef_search)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
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
        Ok(Neighbours {
            profile_skills,
            candidates,
        })
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

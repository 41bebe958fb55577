//! The job index on PostgreSQL with pgvector. The profile lookup and the
//! candidate query share one transaction (one pool acquisition); settings are
//! `SET LOCAL` (via `set_config(..., true)`) so that RDS Proxy never pins a session.
//! The plan is chosen per query from the filters' estimated and counted
//! passing rows (see [`PgJobIndex::nearest_planned`]).

use std::time::Duration;

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};

use crate::adapters::db_connect::Db;
use crate::domain::{Candidate, EmploymentType, Filters};
use crate::error::{Error, Result};
use crate::ports::{JobIndex, Neighbours, Query};

const COMPONENT: &str = "postgres";

/// The migrations of `migrations/`, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// The group role of `migrations/20261130000002_functions_role.sql`: it may
/// read `jobs` and `profiles`, nothing else.
pub const READER_ROLE: &str = "jobmatch_reader";

/// Creates (or updates) the functions' login role, `user` with `password`,
/// as a member of [`READER_ROLE`] and nothing more; run by `migrate` after
/// the migrations, as the master user. The password reaches the server only
/// as its SCRAM-SHA-256 verifier ([`scram_verifier`]): role statements are
/// DDL, which the database logs (`log_statement = ddl` in template.yaml), and
/// a plain password would be written to the log at every deploy. The name
/// and the verifier are quoted by PostgreSQL's own `format` (%I, %L).
pub async fn grant_functions_login(
    conn: &mut PgConnection,
    user: &str,
    password: &str,
) -> std::result::Result<(), sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)")
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
    let verb = if exists { "ALTER" } else { "CREATE" };
    let verifier = scram_verifier(password, &random_salt()?);
    let statements: Vec<String> = sqlx::query_scalar(
        "SELECT unnest(ARRAY[
             format('%s ROLE %I LOGIN PASSWORD %L NOSUPERUSER NOCREATEDB NOCREATEROLE', $1::text, $2::text, $3::text),
             format('GRANT %I TO %I', $4::text, $2::text)])",
    )
    .bind(verb)
    .bind(user)
    .bind(verifier)
    .bind(READER_ROLE)
    .fetch_all(&mut *conn)
    .await?;
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// PBKDF2 rounds of the verifier: PostgreSQL's own default
/// (`scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

fn random_salt() -> std::result::Result<[u8; 16], sqlx::Error> {
    use ring::rand::SecureRandom;
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| sqlx::Error::Protocol("no random source for the SCRAM salt".into()))?;
    Ok(salt)
}

/// The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (RFC 5802,
/// RFC 7677; PostgreSQL's `scram_build_secret`), which `PASSWORD` accepts in
/// place of the password. The password is used as is: SASLprep leaves the
/// generated ones (ASCII letters and digits) unchanged.
pub fn scram_verifier(password: &str, salt: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use ring::{digest, hmac, pbkdf2};
    let mut salted = [0u8; digest::SHA256_OUTPUT_LEN];
    let rounds = std::num::NonZeroU32::new(SCRAM_ITERATIONS).unwrap_or(std::num::NonZeroU32::MIN);
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        salt,
        password.as_bytes(),
        &mut salted,
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    format!(
        "SCRAM-SHA-256${SCRAM_ITERATIONS}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    )
}

#[cfg(test)]
mod scram_tests {
    /// Computed independently with Python's hashlib and hmac.
    #[test]
    fn the_verifier_is_postgresqls() {
        let salt: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            super::scram_verifier("pencil", &salt),
            "SCRAM-SHA-256$4096:AAECAwQFBgcICQoLDA0ODw==$zHCdol2044/ZyWzPLi7oxApCkamKw9Z+E4U/QApd/5Y=:dd5peBOitVnLNFu7VmwP+HiDaaw4OUCv396eVCWhYiE="
        );
    }
}

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

/// How the nearest candidates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    /// Exact distances over the rows that pass the filters (B-tree prefilter).
    Exact,
    /// The HNSW index with iterative scan, filters applied during the scan.
    Hnsw,
}

pub use crate::config::DEFAULT_EXACT_SCAN_MAX_ROWS;
/// The HNSW candidate list is at least this long: recall@10 of the unfiltered
/// scan reaches 0.98 from about there on the benchmark data.
pub const MIN_EF_SEARCH: u32 = 100;
/// An iterative scan gives up after visiting this many tuples. Filters that
/// pass few rows go to the exact plan, so this only bounds a misestimate; a
/// scan cut short is redone exactly (see [`PgJobIndex::nearest_planned`]).
pub const MAX_SCAN_TUPLES: u32 = 20_000;

#[derive(Clone, Debug)]
pub struct PgJobIndex {
    db: Db,
    /// Up to this many rows passing the filters are searched exactly.
    exact_scan_max_rows: i64,
    /// Filters that PostgreSQL estimates to pass more rows than this go
    /// straight to HNSW, without trying the exact plan.
    estimate_gate: i64,
    /// `hnsw.max_scan_tuples` of the HNSW plan.
    max_scan_tuples: u32,
    /// `statement_timeout` of each match transaction, in ms (0: none).
    statement_timeout_ms: u64,
}

/// Settings of the HNSW plan (all local to the transaction): a candidate list
/// of $1, an iterative scan that keeps going while filters drop rows (up to $2
/// tuples), and no other way to order the rows than the HNSW index
/// (PostgreSQL would otherwise sort a B-tree range when it misjudges a filter
/// as selective).
const HNSW_SETTINGS: &str = "SELECT set_config('hnsw.ef_search', $1, true), \
     set_config('hnsw.iterative_scan', 'relaxed_order', true), \
     set_config('hnsw.max_scan_tuples', $2, true), \
     set_config('enable_seqscan', 'off', true), \
     set_config('enable_bitmapscan', 'off', true), \
     set_config('enable_sort', 'off', true)";
/// Back to the server's settings for an exact scan after an HNSW attempt.
const RESET_HNSW_SETTINGS: &str = "SELECT set_config(name, reset_val, true) FROM pg_settings \
     WHERE name IN ('enable_seqscan', 'enable_bitmapscan', 'enable_sort')";

/// What the first statement of a match learns.
struct Opening {
    /// `pg_class.reltuples` of jobs (-1 before the first ANALYZE).
    table_rows: f64,
    /// The stored profile, when the query names one.
    profile: Option<(Vector, Vec<String>)>,
}

impl PgJobIndex {
    pub fn new(db: impl Into<Db>, exact_scan_max_rows: i64) -> PgJobIndex {
        PgJobIndex {
            db: db.into(),
            exact_scan_max_rows,
            estimate_gate: exact_scan_max_rows,
            max_scan_tuples: MAX_SCAN_TUPLES,
            statement_timeout_ms: 0,
        }
    }

    /// Bounds every statement of a match, so that a stuck query fails as a
    /// transient error instead of holding the task until the deadline.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> PgJobIndex {
        self.statement_timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// Overrides the estimate above which a filtered match skips the exact
    /// attempt (default: `exact_scan_max_rows`). `i64::MAX` makes the plan
    /// depend on the counted rows only, which is what the tests pin down.
    pub fn with_estimate_gate(mut self, rows: i64) -> PgJobIndex {
        self.estimate_gate = rows;
        self
    }

    /// Overrides [`MAX_SCAN_TUPLES`] (tests cut scans short with it).
    pub fn with_max_scan_tuples(mut self, tuples: u32) -> PgJobIndex {
        self.max_scan_tuples = tuples;
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// One round trip: the transaction's settings (`statement_timeout`, and
    /// `plan_cache_mode = force_custom_plan`, because a cached generic plan
    /// cannot see how selective the bound filters are), the table's estimated
    /// size, and the stored profile.
    async fn open(&self, conn: &mut PgConnection, user: Option<&str>) -> Result<Opening> {
        let mut qb = QueryBuilder::new(
            "SELECT set_config('plan_cache_mode', 'force_custom_plan', true), \
             (SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass)::float8",
        );
        if self.statement_timeout_ms > 0 {
            // Local to the transaction: a session SET would pin RDS Proxy.
            qb.push(", set_config('statement_timeout', ")
                .push_bind(self.statement_timeout_ms.to_string())
                .push(", true)");
        }
        match user {
            Some(user) => qb
                .push(", p.embedding, p.skills FROM (SELECT 1) one LEFT JOIN profiles p ON p.user_id = ")
                .push_bind(user.to_owned()),
            None => qb.push(", NULL::vector, NULL::text[]"),
        };
        let row = qb.build().fetch_one(conn).await.map_err(db_err)?;
        let embedding: Option<Vector> = row.try_get(row.len() - 2).map_err(db_err)?;
        let skills: Option<Vec<String>> = row.try_get(row.len() - 1).map_err(db_err)?;
        Ok(Opening {
            table_rows: row.try_get(1).map_err(db_err)?,
            profile: embedding.map(|e| (e, skills.unwrap_or_default())),
        })
    }

    /// PostgreSQL's estimate of the rows passing the filters: planning only,
    /// for the bound values (an unnamed statement is planned for them).
    async fn estimate(&self, conn: &mut PgConnection, filters: &Filters) -> Result<f64> {
        let mut qb = QueryBuilder::new("EXPLAIN (FORMAT JSON) SELECT 1 FROM jobs WHERE true");
        push_filters(&mut qb, filters);
        let explained: serde_json::Value = qb
            .build_query_scalar()
            .persistent(false)
            .fetch_one(conn)
            .await
            .map_err(db_err)?;
        explained[0]["Plan"]["Plan Rows"]
            .as_f64()
            .ok_or_else(|| Error::Internal(format!("EXPLAIN without Plan Rows: {explained}")))
    }

    /// [`JobIndex::nearest`], also telling which plan ran; `force` runs one
    /// plan as is (the benchmark compares plans with it).
    ///
    /// The plan: when PostgreSQL estimates at most `estimate_gate` passing
    /// rows (the table's size when there are no filters), the exact scan runs,
    /// capped at `exact_scan_max_rows + 1` rows and counting them in the same
    /// statement; past the cap it gives way to HNSW. Otherwise HNSW runs at
    /// once, and if its scan was cut short (fewer than `count` rows from a
    /// table larger than `hnsw.max_scan_tuples`) the exact scan redoes it, so a
    /// misestimated filter never loses rows.
    pub async fn nearest_planned(
        &self,
        query: Query<'_>,
        filters: &Filters,
        count: u32,
        force: Option<Plan>,
    ) -> Result<(Neighbours, Plan)> {
        let mut tx = self.db.pool().await?.begin().await.map_err(db_err)?;
        let (rows, plan, profile_skills) = self.run(&mut tx, query, filters, count, force).await?;
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

    /// The statements of a match, in the caller's transaction. On return the
    /// transaction's settings are those of the plan that produced the rows.
    async fn run(
        &self,
        tx: &mut PgConnection,
        query: Query<'_>,
        filters: &Filters,
        count: u32,
        force: Option<Plan>,
    ) -> Result<(Vec<PgRow>, Plan, Option<Vec<String>>)> {
        let user = match query {
            Query::Profile(user) => Some(user),
            Query::Embedding(_) => None,
        };
        let opening = self.open(tx, user).await?;
        let (embedding, profile_skills) = match (query, opening.profile) {
            (Query::Embedding(e), _) => (Vector::from(e.to_vec()), None),
            (Query::Profile(_), Some((embedding, skills))) => (embedding, Some(skills)),
            (Query::Profile(_), None) => return Err(Error::ProfileNotFound),
        };
        let exact = |cap: Option<i64>| exact_query(&embedding, filters, count, cap);
        let try_exact_first = match force {
            Some(Plan::Exact) => {
                let rows = fetch(tx, exact(None)).await?;
                return Ok((rows, Plan::Exact, profile_skills));
            }
            Some(Plan::Hnsw) => false,
            None if filters.is_empty() => opening.table_rows <= self.estimate_gate as f64,
            None => self.estimate(tx, filters).await? <= self.estimate_gate as f64,
        };
        if try_exact_first {
            let cap = self.exact_scan_max_rows;
            let rows = fetch(tx, exact(Some(cap))).await?;
            let passing: i64 = match rows.first() {
                Some(row) => row.try_get("passing").map_err(db_err)?,
                None => 0,
            };
            if passing <= cap {
                return Ok((rows, Plan::Exact, profile_skills));
            }
        }
        hnsw_settings(tx, count, self.max_scan_tuples).await?;
        let rows = fetch(tx, hnsw_query(&embedding, filters, count)).await?;
        let cut_short = rows.len() < count as usize
            && opening.table_rows > f64::from(self.max_scan_tuples)
            && force.is_none();
        if cut_short {
            tracing::info!(
                rows = rows.len(),
                count,
                "HNSW scan cut short; searching exactly"
            );
            sqlx::query(RESET_HNSW_SETTINGS)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let rows = fetch(tx, exact(None)).await?;
            return Ok((rows, Plan::Exact, profile_skills));
        }
        Ok((rows, Plan::Hnsw, profile_skills))
    }

    /// The plan a match takes and PostgreSQL's plan (`EXPLAIN (FORMAT JSON)`)
    /// of its candidate query, prepared and run through sqlx like the real
    /// one, in a transaction left with that plan's settings.
    pub async fn explain(
        &self,
        embedding: &[f32],
        filters: &Filters,
        count: u32,
    ) -> Result<(Plan, serde_json::Value)> {
        let mut tx = self.db.pool().await?.begin().await.map_err(db_err)?;
        let (_, plan, _) = self
            .run(&mut tx, Query::Embedding(embedding), filters, count, None)
            .await?;
        let vector = Vector::from(embedding.to_vec());
        let mut qb = QueryBuilder::new("EXPLAIN (FORMAT JSON) ");
        match plan {
            Plan::Exact => push_exact_query(
                &mut qb,
                &vector,
                filters,
                count,
                Some(self.exact_scan_max_rows),
            ),
            Plan::Hnsw => push_hnsw_query(&mut qb, &vector, filters, count),
        }
        let explained: serde_json::Value = qb
            .build_query_scalar()
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.rollback().await.map_err(db_err)?;
        Ok((plan, explained))
    }
}

async fn fetch(conn: &mut PgConnection, mut qb: QueryBuilder<Postgres>) -> Result<Vec<PgRow>> {
    qb.build().fetch_all(conn).await.map_err(db_err)
}

/// Applies the HNSW plan's settings to the transaction.
async fn hnsw_settings(conn: &mut PgConnection, count: u32, max_scan_tuples: u32) -> Result<()> {
    // Enough candidates from the graph for `count` rows.
    let ef_search = count.clamp(MIN_EF_SEARCH, 1000);
    sqlx::query(HNSW_SETTINGS)
        .bind(ef_search.to_string())
        .bind(max_scan_tuples.to_string())
        .execute(conn)
        .await
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

/// The exact plan's query: exact distances over the rows passing the
/// filters, the nearest `count` with their columns. With a cap it looks at no
/// more than `cap + 1` passing rows and returns how many it saw (`passing`),
/// so that the caller learns in the same statement whether it was exact.
pub fn exact_query(
    embedding: &Vector,
    filters: &Filters,
    count: u32,
    cap: Option<i64>,
) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new("");
    push_exact_query(&mut qb, embedding, filters, count, cap);
    qb
}

/// The HNSW plan's query (its settings come from [`HNSW_SETTINGS`]).
pub fn hnsw_query(embedding: &Vector, filters: &Filters, count: u32) -> QueryBuilder<Postgres> {
    let mut qb = QueryBuilder::new("");
    push_hnsw_query(&mut qb, embedding, filters, count);
    qb
}

fn push_exact_query(
    qb: &mut QueryBuilder<Postgres>,
    embedding: &Vector,
    filters: &Filters,
    count: u32,
    cap: Option<i64>,
) {
    // A materialised CTE orders by a computed column, which the HNSW index
    // cannot serve: every passing row gets its exact distance.
    qb.push("WITH d AS MATERIALIZED (SELECT id, embedding <=> ")
        .push_bind(embedding.clone())
        .push(" AS distance FROM jobs WHERE true");
    push_filters(qb, filters);
    if let Some(cap) = cap {
        qb.push(" LIMIT ").push_bind(cap.saturating_add(1));
    }
    qb.push("), top AS (SELECT id, distance FROM d ORDER BY distance, id LIMIT ")
        .push_bind(i64::from(count))
        .push(") SELECT ")
        .push(COLUMNS)
        .push(", 1 - top.distance AS similarity");
    if cap.is_some() {
        qb.push(", (SELECT count(*) FROM d) AS passing");
    }
    qb.push(" FROM top JOIN jobs j USING (id) ORDER BY top.distance, j.id");
}

fn push_hnsw_query(
    qb: &mut QueryBuilder<Postgres>,
    embedding: &Vector,
    filters: &Filters,
    count: u32,
) {
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

fn candidate_from_row(row: &PgRow) -> Result<Candidate> {
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
        .fetch_optional(self.db.pool().await?)
        .await
        .map_err(db_err)?
        .ok_or_else(|| Error::unavailable(COMPONENT, "the vector extension is not installed"))
    }
}

//! The job index on PostgreSQL with pgvector: one call of the
//! `jobmatch_nearest` SQL function per match (see [`PgJobIndex`]), the
//! functions' login role, and the pool.

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use crate::adapters::db_connect::Db;
use crate::domain::{Candidate, EmploymentType, Filters};
use crate::error::{Error, Result};
use crate::ports::{JobIndex, Neighbours, Query};

const COMPONENT: &str = "postgres";

/// The group role of `migrations/20261130000002_functions_role.sql`; its
/// rights are in `db/90_grants.sql`.
pub const READER_ROLE: &str = "jobmatch_reader";

/// The group role of the ingest and catalogue functions (rights on `jobs`
/// alone); made and granted in `db/90_grants.sql`.
pub const WRITER_ROLE: &str = "jobmatch_writer";

/// Creates (or updates) a functions' login role, `user` with `password`,
/// as a member of `group` ([`READER_ROLE`] or [`WRITER_ROLE`]) and nothing more, with
/// [`FUNCTIONS_STATEMENT_TIMEOUT_MS`]; run by `migrate` after
/// the migrations, as the master user. The password reaches the server only
/// as its SCRAM-SHA-256 verifier ([`scram_verifier`]): role statements are
/// DDL, which the database logs (`log_statement = ddl` in template.yaml), and
/// a plain password would be written to the log at every deploy. The name
/// and the verifier are quoted by PostgreSQL's own `format` (%I, %L).
pub async fn grant_login(
    conn: &mut PgConnection,
    user: &str,
    password: &str,
    group: &str,
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
             format('GRANT %I TO %I', $4::text, $2::text),
             format('ALTER ROLE %I SET statement_timeout = %L', $2::text, $5::text)])",
    )
    .bind(verb)
    .bind(user)
    .bind(verifier)
    .bind(group)
    .bind(format!("{FUNCTIONS_STATEMENT_TIMEOUT_MS}ms"))
    .fetch_all(&mut *conn)
    .await?;
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Every statement of the functions ends by then (the role's setting): a
/// setting inside `jobmatch_nearest` could not bound its own statement, and
/// a session `SET` would pin RDS Proxy. Below the HttpApi's 30 s, so a slow
/// legacy match answers 503 problem+json, not the gateway's 504. A worker's
/// search gets less when its task has less time left ([`fetch_within`]).
pub const FUNCTIONS_STATEMENT_TIMEOUT_MS: u64 = 10_000;

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

/// How the nearest candidates are found: SQL's `jobmatch_plan`
/// (db/50_nearest.sql), decoded and bound as itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "jobmatch_plan", rename_all = "snake_case")]
pub enum Plan {
    /// Exact distances over the rows that pass the filters (B-tree prefilter).
    Exact,
    /// The HNSW index with iterative scan, filters applied during the scan.
    Hnsw,
}

/// An iterative scan gives up after visiting this many tuples. Filters that
/// pass few rows go to the exact plan, so this only bounds a misestimate; a
/// scan cut short is redone exactly (`jobmatch_nearest`).
pub const MAX_SCAN_TUPLES: u32 = 20_000;

/// The job index: one call of `jobmatch_nearest` (`db/50_nearest.sql`) per
/// match, which estimates,
/// chooses the plan, sets its transaction-local settings and returns the
/// rows: one statement, one round trip, and the plan logic in one place.
#[derive(Clone, Debug)]
pub struct PgJobIndex {
    db: Db,
    /// Up to this many rows passing the filters are searched exactly;
    /// `None`: the gate derived from the table's size (`jobmatch_exact_gate`).
    exact_scan_max_rows: Option<i64>,
    /// `hnsw.max_scan_tuples` of the HNSW plan.
    max_scan_tuples: u32,
}

impl PgJobIndex {
    /// `exact_scan_max_rows`: a fixed gate, or `None` for the derived one.
    pub fn new(db: impl Into<Db>, exact_scan_max_rows: impl Into<Option<i64>>) -> PgJobIndex {
        PgJobIndex {
            db: db.into(),
            exact_scan_max_rows: exact_scan_max_rows.into(),
            max_scan_tuples: MAX_SCAN_TUPLES,
        }
    }

    /// Overrides [`MAX_SCAN_TUPLES`] (tests cut scans short with it).
    pub fn with_max_scan_tuples(mut self, tuples: u32) -> PgJobIndex {
        self.max_scan_tuples = tuples;
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// [`JobIndex::nearest`], also telling which plan ran; `force` runs one
    /// plan as is (the benchmark compares plans with it).
    pub async fn nearest_planned(
        &self,
        query: Query<'_>,
        filters: &Filters,
        count: u32,
        force: Option<Plan>,
    ) -> Result<(Neighbours, Plan)> {
        let (embedding, user) = match query {
            Query::Embedding(e) => (Some(Vector::from(e.to_vec())), None),
            Query::Profile(user) => (None, Some(user)),
        };
        let statement = sqlx::query(NEAREST)
            .bind(embedding)
            .bind(user)
            .bind(sqlx::types::Json(filters))
            .bind(i32::try_from(count).unwrap_or(i32::MAX))
            .bind(self.exact_scan_max_rows)
            .bind(i32::try_from(self.max_scan_tuples).unwrap_or(i32::MAX))
            .bind(force);
        let pool = self.db.pool().await?;
        let rows = match crate::deadline::stop_at() {
            None => statement.fetch_all(pool).await,
            Some(at) => fetch_within(pool, at, statement).await?,
        }
        .map_err(|e| match &e {
            sqlx::Error::Database(d) if d.code().as_deref() == Some(NO_DATA_FOUND) => {
                Error::ProfileNotFound
            }
            sqlx::Error::Database(d)
                if d.code().as_deref() == Some(QUERY_CANCELED)
                    && crate::deadline::stop_at().is_some() =>
            {
                Error::OutOfTime("the search was stopped at the task's deadline".into())
            }
            _ => db_err(e),
        })?;
        let plan = match rows.first() {
            Some(row) => row.try_get("plan").map_err(db_err)?,
            // No rows: no plan to report; the exact one is the answer.
            None => Plan::Exact,
        };
        let profile_skills = match (query, rows.first()) {
            (Query::Profile(_), Some(row)) => row.try_get("profile_skills").map_err(db_err)?,
            (Query::Profile(_), None) => Some(Vec::new()),
            (Query::Embedding(_), _) => None,
        };
        let candidates = rows
            .iter()
            .map(candidate_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok((
            Neighbours {
                profile_skills,
                candidates,
            },
            plan,
        ))
    }
}

/// The matcher's one statement.
const NEAREST: &str = "SELECT * FROM jobmatch_nearest($1, $2, $3, $4, $5, $6, $7)";

/// `statement_timeout` cancelled the statement.
const QUERY_CANCELED: &str = "57014";

/// Runs `statement` under a statement timeout of the time `left` to the
/// task's deadline (at most the role's own), so that a search that cannot
/// finish in time is stopped by the server rather than run on after its
/// task was handed back. The setting is transaction-local (`set_config(...,
/// true)`), as RDS Proxy needs: a session `SET` would pin the connection and
/// outlive the task. Costs BEGIN, the setting and COMMIT: three round trips.
/// The outer error is the deadline itself (nothing left to run with).
async fn fetch_within<'q>(
    pool: &sqlx::PgPool,
    stop_at: std::time::Instant,
    statement: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<std::result::Result<Vec<PgRow>, sqlx::Error>> {
    let no_time = || Error::OutOfTime("no time left for the search".into());
    let left = || stop_at.saturating_duration_since(std::time::Instant::now());
    // Waiting for a connection counts against the deadline too.
    let Ok(tx) = tokio::time::timeout(left(), pool.begin()).await else {
        return Err(no_time());
    };
    // The time left once the connection is had; 0 would mean "no timeout".
    let ms = u64::try_from(left().as_millis())
        .unwrap_or(u64::MAX)
        .min(FUNCTIONS_STATEMENT_TIMEOUT_MS);
    if ms == 0 {
        return Err(no_time());
    }
    let run = async {
        let mut tx = tx?;
        sqlx::query("SELECT set_config('statement_timeout', $1, true)")
            .bind(format!("{ms}ms"))
            .execute(&mut *tx)
            .await?;
        let rows = statement.fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(rows)
    };
    Ok(run.await)
}

/// `jobmatch_nearest`'s answer when the profile does not exist.
const NO_DATA_FOUND: &str = "P0002";

fn candidate_from_row(row: &PgRow) -> Result<Candidate> {
    let employment: String = row.try_get("employment_type").map_err(db_err)?;
    let employment_type = EmploymentType::parse(&employment)
        .ok_or_else(|| Error::Internal(format!("unknown employment_type {employment:?}")))?;
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
        valid_through: row.try_get("valid_through").map_err(db_err)?,
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

//! The JSON Lines loader: validates each line, embeds the lines that carry no
//! embedding (in batches, with the model), streams rows with `COPY` into a
//! temporary table and upserts them into `jobs` or `profiles`, all in one
//! transaction, so that a bad line commits nothing of its file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::SecondsFormat;
use indicatif::ProgressBar;
use serde::de::DeserializeOwned;
use shared::domain::{check_embedding, normalise_skills, JobRecord, ProfileRecord};
use sqlx::postgres::PgDatabaseError;
use sqlx::{Connection, PgConnection};

use crate::csv::{array_literal, vector_literal, Row};

/// COPY data is sent in chunks of about this size.
pub const CHUNK_BYTES: usize = 1 << 20;
const TEMP_TABLE: &str = "jobmatch_load";
/// Batches with at least this many new or changed rows (and a quarter of the
/// table) rebuild the vector indexes instead of inserting into them.
const REBUILD_MIN_ROWS: i64 = 1_000;

/// Why a load failed. Messages carry their cause, so print them with `{}`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A line of the input is out of contract.
    #[error("{file}:{line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: {error}")]
    Io { file: String, error: std::io::Error },
    #[error("{file}: database: {error}")]
    Database { file: String, error: sqlx::Error },
}

impl LoadError {
    /// The 1-based line number of a line error.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Line { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// A field that fails validation: `"<field>: <message>"`.
fn invalid(field: &str, message: impl std::fmt::Display) -> String {
    format!("{field}: {message}")
}

/// A record type of the loader and how it lands in its table.
pub trait Record: DeserializeOwned {
    /// Target table.
    const TABLE: &'static str;
    /// Primary key column (also the record's key field).
    const KEY: &'static str;
    /// Columns in COPY order; the key first.
    const COLUMNS: &'static [&'static str];
    /// Expressions selected from the temp table, in `COLUMNS` order;
    /// `None`: the columns themselves.
    const SELECT: Option<&'static str> = None;
    /// Columns a changed row loses (NULL): what the load cannot vouch for.
    const CLEARED_ON_CHANGE: &'static [&'static str] = &[];
    /// Run on the temp table before COPY (e.g. to relax a NOT NULL).
    const PREPARE: Option<&'static str> = None;

    fn key(&self) -> &str;
    /// Validates and normalises; the error is `"<field>: <reason>"`.
    fn check(&mut self) -> Result<(), String>;
    /// What the model embeds when the line has no embedding; `None` when it has one.
    fn text_to_embed(&self) -> Option<String>;
    fn set_embedding(&mut self, embedding: Vec<f32>);
    fn write_row(&self, row: Row<'_>);
}

/// Computes the embeddings a load lacks: the model (`crate::model`), or a
/// stand-in in unit tests.
pub trait Embed {
    /// One vector per text, in order; the error says why.
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

/// Lines without an embedding are embedded this many at a time: enough
/// texts for the model's batches to keep every core busy.
pub const EMBED_BATCH: usize = 256;

fn check_key(field: &str, key: &str) -> Result<(), String> {
    if key.trim().is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

/// PostgreSQL text cannot hold NUL characters.
fn check_text(field: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        return Err(invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

fn check_skills(skills: &mut Vec<String>) -> Result<(), String> {
    for s in skills.iter() {
        check_text("skills", s)?;
    }
    *skills = normalise_skills(skills);
    Ok(())
}

fn check_vector(embedding: &[f32]) -> Result<(), String> {
    check_embedding(embedding).map_err(|e| invalid("embedding", e))
}

impl Record for JobRecord {
    const TABLE: &'static str = "jobs";
    const KEY: &'static str = "id";
    const COLUMNS: &'static [&'static str] = &shared::domain::JOB_COLUMNS;
    /// The ingest's hash of what a row was made from: a row the CLI changes
    /// was made from something else, so the next ingest of it writes again.
    const CLEARED_ON_CHANGE: &'static [&'static str] = &["content_hash"];

    fn key(&self) -> &str {
        &self.id
    }

    /// The rules the ingest function applies too (shared::catalogue).
    fn check(&mut self) -> Result<(), String> {
        shared::catalogue::check_job(self).map_err(|e| e.to_string())
    }

    fn text_to_embed(&self) -> Option<String> {
        self.embedding.is_none().then(|| self.embedding_text())
    }

    fn set_embedding(&mut self, embedding: Vec<f32>) {
        self.embedding = Some(embedding);
    }

    fn write_row(&self, mut row: Row<'_>) {
        row.text(&self.id)
            .text(&self.title)
            .text(&self.company)
            .text(&self.location)
            .plain(self.remote)
            .plain(self.employment_type.as_str())
            .opt(self.salary_min)
            .opt(self.salary_max)
            .text(&array_literal(&self.skills))
            .text(&self.description)
            .plain(self.posted_at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            .text(&vector_literal(
                self.embedding.as_deref().unwrap_or_default(),
            ))
            .opt(
                self.valid_through
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            )
            .end();
    }
}

impl Record for ProfileRecord {
    const TABLE: &'static str = "profiles";
    const KEY: &'static str = "user_id";
    const COLUMNS: &'static [&'static str] = &["user_id", "skills", "embedding", "updated_at"];
    const SELECT: Option<&'static str> =
        Some("user_id, skills, embedding, coalesce(updated_at, now()) AS updated_at");
    const PREPARE: Option<&'static str> =
        Some("ALTER TABLE jobmatch_load ALTER COLUMN updated_at DROP NOT NULL");

    fn key(&self) -> &str {
        &self.user_id
    }

    fn check(&mut self) -> Result<(), String> {
        check_key("user_id", &self.user_id)?;
        check_text("user_id", &self.user_id)?;
        check_skills(&mut self.skills)?;
        match (&self.embedding, &self.text) {
            (Some(embedding), _) => check_vector(embedding),
            (None, Some(text)) if !text.trim().is_empty() => check_text("text", text),
            (None, _) => Err(invalid(
                "embedding",
                "missing, and no `text` (the resume) to compute it from",
            )),
        }
    }

    fn text_to_embed(&self) -> Option<String> {
        match (&self.embedding, &self.text) {
            (None, Some(text)) => Some(text.clone()),
            _ => None,
        }
    }

    fn set_embedding(&mut self, embedding: Vec<f32>) {
        self.embedding = Some(embedding);
    }

    fn write_row(&self, mut row: Row<'_>) {
        row.text(&self.user_id)
            .text(&array_literal(&self.skills))
            .text(&vector_literal(
                self.embedding.as_deref().unwrap_or_default(),
            ))
            .opt(
                self.updated_at
                    .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            )
            .end();
    }
}

/// Turns input lines into COPY CSV rows, remembering which line each row came from.
pub struct Encoder<T> {
    file: String,
    line: usize,
    /// Key -> line of its first occurrence: a key twice in one file is an error.
    seen: HashMap<String, usize>,
    /// File line of each COPY row, to map a COPY error back to its line.
    row_lines: Vec<usize>,
    /// Records waiting for their embedding, with their lines.
    pending: Vec<(usize, T)>,
    /// Lines embedded so far, and distinct texts the model ran on.
    pub embedded: usize,
    pub model_runs: usize,
    pub buf: Vec<u8>,
}

impl<T: Record> Encoder<T> {
    pub fn new(file: impl Into<String>) -> Encoder<T> {
        Encoder {
            file: file.into(),
            line: 0,
            seen: HashMap::new(),
            row_lines: Vec::new(),
            pending: Vec::new(),
            embedded: 0,
            model_runs: 0,
            buf: Vec::with_capacity(CHUNK_BYTES + (64 << 10)),
        }
    }

    /// Whether a batch of records waits for the model.
    pub fn batch_ready(&self) -> bool {
        self.pending.len() >= EMBED_BATCH
    }

    /// Embeds the waiting records (each distinct text once) and encodes them.
    pub fn embed_pending(&mut self, model: &mut dyn Embed) -> Result<(), LoadError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let texts: Vec<String> = self
            .pending
            .iter()
            .map(|(_, r)| r.text_to_embed().unwrap_or_default())
            .collect();
        let mut distinct: Vec<&str> = texts.iter().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let first_line = self.pending[0].0;
        let vectors = model
            .embed(&distinct)
            .map_err(|reason| self.line_error(first_line, invalid("embedding", reason)))?;
        self.model_runs += distinct.len();
        let by_text: HashMap<&str, &Vec<f32>> = distinct.iter().copied().zip(&vectors).collect();
        for ((line, mut record), text) in std::mem::take(&mut self.pending).into_iter().zip(&texts)
        {
            let vector = by_text[text.as_str()].clone();
            check_vector(&vector).map_err(|reason| self.line_error(line, reason))?;
            record.set_embedding(vector);
            record.write_row(Row::new(&mut self.buf));
            self.row_lines.push(line);
            self.embedded += 1;
        }
        Ok(())
    }

    /// Rows encoded so far (waiting ones included).
    pub fn rows(&self) -> usize {
        self.row_lines.len() + self.pending.len()
    }

    fn line_error(&self, line: usize, reason: impl Into<String>) -> LoadError {
        LoadError::Line {
            file: self.file.clone(),
            line,
            reason: reason.into(),
        }
    }

    /// Takes the next physical line (with or without its line break).
    pub fn push(&mut self, raw: &[u8]) -> Result<(), LoadError> {
        self.line += 1;
        let line = self.line;
        let text = std::str::from_utf8(raw).map_err(|e| {
            self.line_error(
                line,
                format!("not valid UTF-8 (at byte {})", e.valid_up_to()),
            )
        })?;
        let text = if line == 1 {
            text.trim_start_matches('\u{feff}')
        } else {
            text
        };
        let text = text.trim();
        if text.is_empty() {
            return Ok(());
        }
        let mut record: T =
            serde_json::from_str(text).map_err(|e| self.line_error(line, json_reason(&e)))?;
        record
            .check()
            .map_err(|reason| self.line_error(line, reason))?;
        if let Some(first) = self.seen.get(record.key()) {
            return Err(
                self.line_error(line, invalid(T::KEY, format!("duplicate of line {first}")))
            );
        }
        self.seen.insert(record.key().to_owned(), line);
        if record.text_to_embed().is_some() {
            self.pending.push((line, record));
            return Ok(());
        }
        record.write_row(Row::new(&mut self.buf));
        self.row_lines.push(line);
        Ok(())
    }

    /// A COPY error names the row ("COPY jobmatch_load, line 3, ..."): name the file line instead.
    fn copy_error(&self, error: sqlx::Error) -> LoadError {
        let row = error
            .as_database_error()
            .and_then(|e| e.try_downcast_ref::<PgDatabaseError>())
            .and_then(|e| e.r#where())
            .and_then(|w| w.split(", line ").nth(1))
            .and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<usize>().ok()
            });
        match row
            .and_then(|r| r.checked_sub(1))
            .and_then(|r| self.row_lines.get(r))
        {
            Some(line) => {
                let reason = error
                    .as_database_error()
                    .map(|e| e.message().to_owned())
                    .unwrap_or_else(|| error.to_string());
                self.line_error(*line, reason)
            }
            None => LoadError::Database {
                file: self.file.clone(),
                error,
            },
        }
    }
}

/// serde_json's message without its " at line 1 column N" (the line is ours).
fn json_reason(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
    match e.classify() {
        serde_json::error::Category::Data => format!("{msg} (column {})", e.column()),
        _ => format!("invalid JSON: {msg} (column {})", e.column()),
    }
}

/// The outcome of a load.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoadStats {
    /// Records read from the file.
    pub rows: u64,
    /// Rows inserted or changed; identical rows are left alone.
    pub written: u64,
    /// Rows embedded by the model, and the distinct texts it ran on (the
    /// rest came from the embedding cache or repeated a text of the file).
    pub embedded: u64,
    pub model_runs: u64,
    /// From the first line to the commit.
    pub elapsed: Duration,
    /// Rebuilding the vector indexes (part of `elapsed`; zero when they were
    /// updated in place).
    pub index_build: Duration,
    pub analyze: Duration,
}

impl LoadStats {
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Loads a jobs file.
pub async fn load_jobs(
    conn: &mut PgConnection,
    path: &Path,
    progress: &ProgressBar,
    model: &mut dyn Embed,
) -> Result<LoadStats, LoadError> {
    load::<JobRecord>(conn, path, progress, model).await
}

/// Loads a profiles file; a missing `updated_at` becomes now().
pub async fn load_profiles(
    conn: &mut PgConnection,
    path: &Path,
    progress: &ProgressBar,
    model: &mut dyn Embed,
) -> Result<LoadStats, LoadError> {
    load::<ProfileRecord>(conn, path, progress, model).await
}

/// What is selected from the temp table, in `COLUMNS` order.
fn select_list<T: Record>() -> String {
    T::SELECT.map_or_else(|| T::COLUMNS.join(", "), str::to_owned)
}

fn upsert_sql<T: Record>() -> String {
    let columns = T::COLUMNS.join(", ");
    let rest: Vec<&str> = T::COLUMNS
        .iter()
        .copied()
        .filter(|c| *c != T::KEY)
        .collect();
    let set = rest
        .iter()
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .chain(T::CLEARED_ON_CHANGE.iter().map(|c| format!("{c} = NULL")))
        .collect::<Vec<_>>()
        .join(", ");
    let old = rest
        .iter()
        .map(|c| format!("{}.{c}", T::TABLE))
        .collect::<Vec<_>>()
        .join(", ");
    let new = rest
        .iter()
        .map(|c| format!("EXCLUDED.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // The WHERE skips identical rows, so that a re-load does not churn the HNSW index.
    format!(
        "INSERT INTO {table} ({columns}) SELECT {select} FROM {TEMP_TABLE} \
         ON CONFLICT ({key}) DO UPDATE SET {set} WHERE ({old}) IS DISTINCT FROM ({new})",
        table = T::TABLE,
        select = select_list::<T>(),
        key = T::KEY,
    )
}

/// Rows in the table, and rows of the batch that are new or differ from it.
fn changed_rows_sql<T: Record>() -> String {
    let rest = T::COLUMNS.iter().filter(|c| **c != T::KEY);
    let old = rest.clone().map(|c| format!("t.{c}")).collect::<Vec<_>>();
    let new = rest.map(|c| format!("l.{c}")).collect::<Vec<_>>();
    format!(
        "SELECT (SELECT count(*) FROM {table}), count(*) \
         FROM (SELECT {select} FROM {TEMP_TABLE}) l \
         LEFT JOIN {table} t ON t.{key} = l.{key} \
         WHERE t.{key} IS NULL OR ({old}) IS DISTINCT FROM ({new})",
        table = T::TABLE,
        select = select_list::<T>(),
        key = T::KEY,
        old = old.join(", "),
        new = new.join(", "),
    )
}

/// maintenance_work_mem (kB) for building the HNSW graph of `rows` vectors:
/// each node holds its 384-d vector (1.5 kB) and its neighbour lists; a third
/// more for headroom. At most 4 GB, so that a huge table cannot take all memory.
pub fn index_memory_kib(rows: i64) -> i64 {
    const NODE_BYTES: i64 = 4 * shared::domain::EMBEDDING_DIM as i64 + 600;
    (rows.max(0).saturating_mul(NODE_BYTES) / 1024 * 4 / 3).clamp(64 * 1024, 4 * 1024 * 1024)
}

/// Drops the table's vector (HNSW, IVFFlat) indexes; returns their definitions.
async fn drop_vector_indexes(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    table: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, i.relname), pg_get_indexdef(i.oid) \
         FROM pg_index x \
         JOIN pg_class i ON i.oid = x.indexrelid \
         JOIN pg_namespace n ON n.oid = i.relnamespace \
         JOIN pg_am am ON am.oid = i.relam \
         WHERE x.indrelid = $1::regclass AND am.amname IN ('hnsw', 'ivfflat') \
         ORDER BY i.relname",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    for (name, _) in &indexes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
            .execute(&mut **tx)
            .await?;
    }
    Ok(indexes.into_iter().map(|(_, def)| def).collect())
}

/// Loads one JSON Lines file of `T` records: all of it, or nothing.
pub async fn load<T: Record>(
    conn: &mut PgConnection,
    path: &Path,
    progress: &ProgressBar,
    model: &mut dyn Embed,
) -> Result<LoadStats, LoadError> {
    let file_name = path.display().to_string();
    let io_err = |error| LoadError::Io {
        file: file_name.clone(),
        error,
    };
    let db_err = |error| LoadError::Database {
        file: file_name.clone(),
        error,
    };
    let file = File::open(path).map_err(io_err)?;
    if let Ok(meta) = file.metadata() {
        progress.set_length(meta.len());
    }
    let mut reader = BufReader::with_capacity(CHUNK_BYTES, file);
    let started = Instant::now();

    let mut tx = conn.begin().await.map_err(db_err)?;
    let create = format!(
        "CREATE TEMP TABLE {TEMP_TABLE} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP",
        T::TABLE
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(create))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    if let Some(prepare) = T::PREPARE {
        sqlx::raw_sql(prepare)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    let copy_sql = format!(
        "COPY {TEMP_TABLE} ({}) FROM STDIN (FORMAT csv)",
        T::COLUMNS.join(", ")
    );
    let mut copy = tx.copy_in_raw(&copy_sql).await.map_err(db_err)?;
    let mut encoder = Encoder::<T>::new(file_name.clone());
    let mut line = Vec::new();
    let streamed: Result<(), LoadError> = loop {
        line.clear();
        let n = match reader.read_until(b'\n', &mut line) {
            Ok(n) => n,
            Err(e) => break Err(io_err(e)),
        };
        if n == 0 {
            break encoder.embed_pending(model);
        }
        progress.inc(n as u64);
        if let Err(e) = encoder.push(&line) {
            break Err(e);
        }
        // The model's CPU time stalls the COPY stream for a moment; the
        // transaction stays open either way until the last line.
        if encoder.batch_ready() {
            if let Err(e) = encoder.embed_pending(model) {
                break Err(e);
            }
        }
        if encoder.buf.len() >= CHUNK_BYTES {
            if let Err(e) = copy.send(encoder.buf.as_slice()).await {
                break Err(db_err(e));
            }
            encoder.buf.clear();
        }
    };
    if let Err(e) = streamed {
        // Best effort: the transaction is rolled back either way.
        let _ = copy.abort("jobmatch load: bad input").await;
        let _ = tx.rollback().await;
        return Err(e);
    }
    if !encoder.buf.is_empty() {
        copy.send(encoder.buf.as_slice()).await.map_err(db_err)?;
    }
    copy.finish().await.map_err(|e| encoder.copy_error(e))?;

    // Inserting row by row into HNSW is slow; rebuilding the vector indexes
    // after a big batch is several times faster (readers wait for the commit).
    let (existing, changed): (i64, i64) =
        sqlx::query_as(sqlx::AssertSqlSafe(changed_rows_sql::<T>()))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
    let rebuild = changed >= REBUILD_MIN_ROWS && changed.saturating_mul(4) >= existing;
    let indexes = if rebuild {
        drop_vector_indexes(&mut tx, T::TABLE)
            .await
            .map_err(db_err)?
    } else {
        Vec::new()
    };
    let written = sqlx::raw_sql(sqlx::AssertSqlSafe(upsert_sql::<T>()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
    let building = Instant::now();
    if !indexes.is_empty() {
        // An HNSW build that outgrows maintenance_work_mem spills and slows
        // down several times: size it to the table (never below the server's).
        let rows = existing.saturating_add(changed);
        sqlx::query(
            "SELECT set_config('maintenance_work_mem', \
             greatest(pg_size_bytes(current_setting('maintenance_work_mem')) / 1024, $1)::text, true)",
        )
        .bind(index_memory_kib(rows))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    for definition in &indexes {
        sqlx::raw_sql(sqlx::AssertSqlSafe(definition.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    let index_build = building.elapsed();
    tx.commit().await.map_err(db_err)?;
    let elapsed = started.elapsed();

    // Fresh statistics for the planner's filter estimates.
    let analyzed = Instant::now();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("ANALYZE {}", T::TABLE)))
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    Ok(LoadStats {
        rows: encoder.rows() as u64,
        embedded: encoder.embedded as u64,
        model_runs: encoder.model_runs as u64,
        written,
        elapsed,
        index_build,
        analyze: analyzed.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job_line(id: &str) -> String {
        serde_json::json!({
            "id": id, "title": "Data Analyst", "company": "Acme", "location": "Berlin",
            "remote": false, "employment_type": "full_time", "salary_min": 50000,
            "salary_max": 60000, "skills": ["SQL", " Excel", "sql"], "description": "d",
            "posted_at": "2025-01-02T03:04:05Z", "embedding": vec![0.05_f32; 384],
        })
        .to_string()
    }

    fn with(id: &str, field: &str, value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&job_line(id)).expect("json");
        v[field] = value;
        v.to_string()
    }

    /// Feeds lines and returns the first error, if any.
    fn feed(lines: &[String]) -> Result<Encoder<JobRecord>, LoadError> {
        let mut enc = Encoder::<JobRecord>::new("jobs.jsonl");
        for l in lines {
            enc.push(format!("{l}\n").as_bytes())?;
        }
        Ok(enc)
    }

    fn error_of(bad: String) -> String {
        let lines = vec![job_line("a"), String::new(), job_line("b"), bad];
        match feed(&lines) {
            Err(e) => {
                assert_eq!(e.line(), Some(4), "{e}");
                e.to_string()
            }
            Ok(_) => panic!("line accepted"),
        }
    }

    #[test]
    fn good_lines_become_csv_rows_and_blank_lines_are_skipped() {
        let enc = feed(&[job_line("a"), "   ".into(), job_line("b")]).expect("ok");
        assert_eq!(enc.rows(), 2);
        assert_eq!(enc.row_lines, vec![1, 3]);
        let text = String::from_utf8(enc.buf.clone()).expect("utf-8");
        let first = text.lines().next().expect("row");
        assert!(
            first.starts_with(
                r#""a","Data Analyst","Acme","Berlin",false,full_time,50000,60000,"{""excel"",""sql""}","d",2025-01-02T03:04:05Z,"[0.05,"#
            ),
            "{first}"
        );
    }

    #[test]
    fn a_bad_line_is_named_with_its_number_and_reason() {
        assert_eq!(
            error_of(with("c", "embedding", serde_json::json!([1, 2, 3]))),
            "jobs.jsonl:4: embedding: must have exactly 384 numbers, got 3"
        );
        assert_eq!(
            error_of(with("c", "embedding", serde_json::json!(vec![0; 384]))),
            "jobs.jsonl:4: embedding: must have a finite, non-zero length"
        );
        let e = error_of(with("c", "employment_type", "fulltime".into()));
        assert!(
            e.starts_with("jobs.jsonl:4: unknown variant `fulltime`"),
            "{e}"
        );
        let e = error_of(with("c", "colour", "red".into()));
        assert!(e.starts_with("jobs.jsonl:4: unknown field `colour`"), "{e}");
        let e = error_of("{\"id\": ".into());
        assert!(e.starts_with("jobs.jsonl:4: invalid JSON: EOF"), "{e}");
        assert_eq!(
            error_of(with("", "title", "x".into())),
            "jobs.jsonl:4: id: must not be empty"
        );
        assert_eq!(
            error_of(job_line("a")),
            "jobs.jsonl:4: id: duplicate of line 1"
        );
        assert_eq!(
            error_of(with("c", "salary_max", 1000.into())),
            "jobs.jsonl:4: salary_min: 50000 is greater than salary_max 1000"
        );
        assert_eq!(
            error_of(with("c", "title", "a\u{0}b".into())),
            "jobs.jsonl:4: title: must not contain NUL characters"
        );
        let e = error_of(with("c", "posted_at", "yesterday".into()));
        assert!(e.starts_with("jobs.jsonl:4: "), "{e}");
        assert_eq!(
            error_of(with("c", "valid_through", "2025-01-01T00:00:00Z".into())),
            "jobs.jsonl:4: valid_through: 2025-01-01T00:00:00Z is before posted_at 2025-01-02T03:04:05Z"
        );
    }

    #[test]
    fn invalid_utf8_is_a_line_error() {
        let mut enc = Encoder::<JobRecord>::new("jobs.jsonl");
        enc.push(job_line("a").as_bytes()).expect("first");
        let err = enc.push(b"{\"id\": \"\xff\"}\n").expect_err("bad utf-8");
        assert_eq!(err.to_string(), "jobs.jsonl:2: not valid UTF-8 (at byte 8)");
    }

    #[test]
    fn profiles_default_updated_at_to_null() {
        let mut enc = Encoder::<ProfileRecord>::new("profiles.jsonl");
        let line = serde_json::json!({"user_id": "u1", "skills": ["Rust"], "embedding": vec![0.5_f32; 384]});
        enc.push(line.to_string().as_bytes()).expect("ok");
        let text = String::from_utf8(enc.buf).expect("utf-8");
        assert!(text.starts_with(r#""u1","{""rust""}","[0.5,"#), "{text}");
        assert!(text.ends_with("0.5]\",\n"), "{text}");
    }

    /// Records the texts it is asked for; the vector's first component is
    /// the text's length.
    #[derive(Default)]
    struct FakeModel {
        asked: Vec<String>,
    }

    impl Embed for FakeModel {
        fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
            self.asked.extend(texts.iter().map(|t| t.to_string()));
            Ok(texts
                .iter()
                .map(|t| {
                    let mut v = vec![0.0; 384];
                    v[0] = t.len() as f32;
                    v
                })
                .collect())
        }
    }

    #[test]
    fn lines_without_embedding_are_embedded_once_per_text_and_others_kept() {
        let without = |id: &str| {
            let mut v: serde_json::Value = serde_json::from_str(&job_line(id)).expect("json");
            v.as_object_mut().expect("object").remove("embedding");
            v.to_string()
        };
        let mut enc = Encoder::<JobRecord>::new("jobs.jsonl");
        for line in [without("a"), job_line("b"), without("c")] {
            enc.push(line.as_bytes()).expect("push");
        }
        assert_eq!(enc.rows(), 3);
        let mut model = FakeModel::default();
        enc.embed_pending(&mut model).expect("embed");
        // "a" and "c" have the same posting text: embedded once.
        let text = "Data Analyst\nSkills: excel, sql\nd";
        assert_eq!(model.asked, [text]);
        assert_eq!((enc.embedded, enc.model_runs), (2, 1));
        let csv = String::from_utf8(enc.buf).expect("utf-8");
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 3);
        // The line with an embedding keeps it; the others get the model's.
        assert!(
            rows[0].starts_with("\"b\"") && rows[0].contains("[0.05,"),
            "{}",
            rows[0]
        );
        let embedded = format!("[{}", text.len());
        assert!(
            rows[1].starts_with("\"a\"") && rows[1].contains(&embedded),
            "{}",
            rows[1]
        );
    }

    #[test]
    fn a_profile_needs_an_embedding_or_a_text() {
        let mut enc = Encoder::<ProfileRecord>::new("profiles.jsonl");
        let line = serde_json::json!({"user_id": "u1", "skills": ["Rust"]});
        let err = enc.push(line.to_string().as_bytes()).expect_err("neither");
        assert!(err.to_string().contains("no `text`"), "{err}");
        let line = serde_json::json!({"user_id": "u2", "skills": [], "text": "I fix pumps."});
        enc.push(line.to_string().as_bytes()).expect("text");
        let mut model = FakeModel::default();
        enc.embed_pending(&mut model).expect("embed");
        assert_eq!(model.asked, ["I fix pumps."]);
    }

    #[test]
    fn index_memory_grows_with_the_table_within_bounds() {
        assert_eq!(index_memory_kib(0), 64 * 1024);
        // 100k vectors: about 270 MB, so the graph is built in memory.
        let kib = index_memory_kib(100_000);
        assert!((250_000..300_000).contains(&kib), "{kib}");
        assert_eq!(index_memory_kib(100_000_000), 4 * 1024 * 1024);
    }

    #[test]
    fn upsert_updates_only_changed_rows() {
        let sql = upsert_sql::<ProfileRecord>();
        assert_eq!(
            sql,
            "INSERT INTO profiles (user_id, skills, embedding, updated_at) \
             SELECT user_id, skills, embedding, coalesce(updated_at, now()) AS updated_at FROM jobmatch_load \
             ON CONFLICT (user_id) DO UPDATE SET skills = EXCLUDED.skills, \
             embedding = EXCLUDED.embedding, updated_at = EXCLUDED.updated_at \
             WHERE (profiles.skills, profiles.embedding, profiles.updated_at) \
             IS DISTINCT FROM (EXCLUDED.skills, EXCLUDED.embedding, EXCLUDED.updated_at)"
        );
        // A changed posting loses the ingest's hash; an unchanged one keeps it.
        let jobs = upsert_sql::<JobRecord>();
        assert!(
            jobs.contains("valid_through = EXCLUDED.valid_through, content_hash = NULL WHERE"),
            "{jobs}"
        );
        assert!(jobs.starts_with(
            "INSERT INTO jobs (id, title, company, location, remote, employment_type, salary_min, \
             salary_max, skills, description, posted_at, embedding, valid_through) \
             SELECT id, title,"
        ), "{jobs}");
    }
}

//! The catalogue as operators feed it (DESIGN.md "Catalogue operations"):
//! one posting line's parse and rules, which the CLI loader and the ingest
//! function both use; the content hash that makes an unchanged line cost
//! nothing; and the ingest record served at `GET /ingests/{ingest_id}`.

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::domain::{check_embedding, normalise_skills, JobRecord, Timestamp};

/// Longest line an ingest reads, in bytes: a posting with its 384 numbers
/// is about 10 kB; a longer line is rejected and skipped, not buffered.
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// An ingest keeps this many line errors (DESIGN.md: "the first 1,000").
pub const MAX_REPORTED_ERRORS: usize = 1_000;
/// A reported message is cut to this many bytes and a field name to
/// [`MAX_ERROR_FIELD_BYTES`], so that 1,000 errors fit one DynamoDB item
/// (400 KB) with room to spare.
pub const MAX_ERROR_BYTES: usize = 240;
pub const MAX_ERROR_FIELD_BYTES: usize = 64;
/// Bounds of a posting's fields, in bytes: an id is a B-tree key (PostgreSQL
/// refuses index entries over about 2.7 kB) and a path segment; the
/// description bounds the model's work for one posting (about 8,000 word
/// pieces at most).
pub const MAX_ID_BYTES: usize = 512;
pub const MAX_SHORT_FIELD_BYTES: usize = 1_024;
pub const MAX_SKILLS: usize = 100;
pub const MAX_DESCRIPTION_BYTES: usize = 32_768;
/// Not a posting id: `/jobs/match` is the match route's path.
pub const RESERVED_JOB_ID: &str = "match";
/// The years a posting's times may fall in.
pub const MIN_YEAR: i32 = 1900;
pub const MAX_YEAR: i32 = 9999;
/// `POST /jobs` takes at most this many postings.
pub const MAX_POSTED_JOBS: usize = 1_000;
/// Objects under this prefix of the ingest bucket are ingested.
pub const INCOMING_PREFIX: &str = "incoming/";
/// Reports go to `{REPORTS_PREFIX}{object key}.json`.
pub const REPORTS_PREFIX: &str = "reports/";

/// Why a line is rejected: the field when one is to blame, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineError {
    pub field: Option<String>,
    pub message: String,
}

impl LineError {
    pub fn field(field: &str, message: impl std::fmt::Display) -> LineError {
        LineError {
            field: Some(field.to_owned()),
            message: message.to_string(),
        }
    }

    pub fn line(message: impl std::fmt::Display) -> LineError {
        LineError {
            field: None,
            message: message.to_string(),
        }
    }
}

/// `"<field>: <message>"`, as the CLI prints it.
impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Reads one posting line (without its line break) and checks it.
pub fn parse_job(text: &str) -> Result<JobRecord, LineError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut job: JobRecord = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        json_error(&path, &inner)
    })?;
    check_job(&mut job)?;
    Ok(job)
}

/// serde's error as a line error: the field from the path, or for a
/// top-level error (an unknown or missing field) from the name serde quotes.
fn json_error(path: &str, e: &serde_json::Error) -> LineError {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned();
    if !matches!(e.classify(), serde_json::error::Category::Data) {
        return LineError::line(format!("invalid JSON: {msg} (column {})", e.column()));
    }
    let field = match path {
        "." | "" => msg.split('`').nth(1).map(str::to_owned),
        p => Some(p.to_owned()),
    };
    LineError {
        field,
        message: format!("{msg} (column {})", e.column()),
    }
}

/// PostgreSQL text cannot hold NUL characters; each field has its bound.
fn check_text(field: &str, value: &str, max_bytes: usize) -> Result<(), LineError> {
    if value.contains('\0') {
        return Err(LineError::field(field, "must not contain NUL characters"));
    }
    if value.len() > max_bytes {
        return Err(LineError::field(
            field,
            format!("{} bytes; at most {max_bytes}", value.len()),
        ));
    }
    Ok(())
}

/// The loader's rules for a posting (DESIGN.md "Data"); normalises its skills.
pub fn check_job(job: &mut JobRecord) -> Result<(), LineError> {
    if job.id.trim().is_empty() {
        return Err(LineError::field("id", "must not be empty"));
    }
    if job.id == RESERVED_JOB_ID {
        return Err(LineError::field(
            "id",
            "`match` is reserved: /jobs/match is the match route",
        ));
    }
    for (field, value, max) in [
        ("id", &job.id, MAX_ID_BYTES),
        ("title", &job.title, MAX_SHORT_FIELD_BYTES),
        ("company", &job.company, MAX_SHORT_FIELD_BYTES),
        ("location", &job.location, MAX_SHORT_FIELD_BYTES),
        ("description", &job.description, MAX_DESCRIPTION_BYTES),
    ] {
        check_text(field, value, max)?;
    }
    if job.skills.len() > MAX_SKILLS {
        return Err(LineError::field(
            "skills",
            format!("{} skills; at most {MAX_SKILLS}", job.skills.len()),
        ));
    }
    for s in &job.skills {
        check_text("skills", s, MAX_SHORT_FIELD_BYTES)?;
    }
    job.skills = normalise_skills(&job.skills);
    for (field, value) in [
        ("salary_min", job.salary_min),
        ("salary_max", job.salary_max),
    ] {
        if value.is_some_and(|v| v < 0) {
            return Err(LineError::field(field, "must not be negative"));
        }
    }
    if let (Some(lo), Some(hi)) = (job.salary_min, job.salary_max) {
        if lo > hi {
            return Err(LineError::field(
                "salary_min",
                format!("{lo} is greater than salary_max {hi}"),
            ));
        }
    }
    // PostgreSQL's timestamptz starts in 4713 BC, chrono's range reaches
    // further: a year out of range would fail its whole chunk's write.
    for (field, at) in [
        ("posted_at", Some(job.posted_at)),
        ("valid_through", job.valid_through),
    ] {
        if let Some(at) = at {
            let year = chrono::Datelike::year(&at);
            if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
                return Err(LineError::field(
                    field,
                    format!("year {year} is outside {MIN_YEAR}..{MAX_YEAR}"),
                ));
            }
        }
    }
    if let Some(end) = job.valid_through {
        if end < job.posted_at {
            return Err(LineError::field(
                "valid_through",
                format!(
                    "{} is before posted_at {}",
                    end.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    job.posted_at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
                ),
            ));
        }
    }
    match job.embedding.as_deref() {
        Some(v) => check_embedding(v).map_err(|e| LineError::field("embedding", e)),
        None => Ok(()),
    }
}

/// What a stored posting was made from (`jobs.content_hash`): SHA-256 of
/// the checked line as JSON, and of `model_id` when the line has no
/// embedding (the model made it, so another model makes another posting).
pub fn content_hash(job: &JobRecord, model_id: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    if job.embedding.is_none() {
        h.update(model_id.as_bytes());
    }
    h.update([0]);
    // A JobRecord always serialises (strings, numbers, a timestamp).
    h.update(serde_json::to_vec(job).unwrap_or_default());
    h.finalize().into()
}

/// The ingest of one object version: the same version always has the same
/// id, so a repeated notification finds the ingest it already made.
pub fn ingest_id(bucket: &str, key: &str, version: &str) -> String {
    let digest = Sha256::digest(format!("{bucket}\n{key}\n{version}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("ing_{hex}")
}

/// Whether `id` could be an ingest id (the route's check before a lookup).
pub fn is_ingest_id(id: &str) -> bool {
    id.len() == 36
        && id.starts_with("ing_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Where an ingest's report is written in the bucket.
pub fn report_key(object_key: &str) -> String {
    format!("{REPORTS_PREFIX}{object_key}.json")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestStatus {
    Pending,
    Processing,
    Completed,
    Failed,
}

impl IngestStatus {
    pub fn is_finished(self) -> bool {
        matches!(self, IngestStatus::Completed | IngestStatus::Failed)
    }
}

/// Every line is one of these: `received = upserted + unchanged + rejected`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestCounts {
    pub received: u64,
    pub upserted: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

impl IngestCounts {
    pub fn add(&mut self, other: IngestCounts) {
        self.received += other.received;
        self.upserted += other.upserted;
        self.unchanged += other.unchanged;
        self.rejected += other.rejected;
    }
}

/// A rejected line (1-based; 0 for the object as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestLineError {
    pub line: u64,
    pub field: Option<String>,
    pub message: String,
}

impl IngestLineError {
    pub fn new(line: u64, error: LineError) -> IngestLineError {
        IngestLineError {
            line,
            field: error.field.map(|f| cut(f, MAX_ERROR_FIELD_BYTES)),
            message: cut(error.message, MAX_ERROR_BYTES),
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary, `…` marking a cut.
fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut at = max - '…'.len_utf8();
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
    text
}

/// What a physical line holds for the parse: trimmed, and line 1 without a
/// byte-order mark; `None` for a blank line (not a posting, not counted).
pub fn posting_text(line: u64, raw: &str) -> Option<&str> {
    let text = if line == 1 {
        raw.trim_start_matches('\u{feff}')
    } else {
        raw
    };
    let text = text.trim();
    (!text.is_empty()).then_some(text)
}

/// A chunk of lines whose outcome is decided but not yet folded into the
/// counts: written before the chunk's upsert commits, so that a run killed
/// after the commit counts the chunk as the first run decided (its upserted
/// lines would otherwise look unchanged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkIntent {
    /// Lines `from..to` (1-based, `to` exclusive).
    pub from: u64,
    pub to: u64,
    pub counts: IngestCounts,
    pub errors: Vec<IngestLineError>,
}

/// An ingest (DESIGN.md "Catalogue operations"). `next_line` and `chunk`
/// are the checkpoint, stored with it and never answered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ingest {
    pub ingest_id: String,
    pub status: IngestStatus,
    /// `s3://bucket/key?versionId=...`.
    pub source: String,
    pub counts: IngestCounts,
    pub errors: Vec<IngestLineError>,
    pub created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Lines before it are counted.
    #[serde(default = "first_line")]
    pub next_line: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk: Option<ChunkIntent>,
    /// Epoch seconds: DynamoDB deletes the record after this (its TTL).
    pub expires_at: i64,
    /// Moves with every write ([`crate::ports::IngestStore::replace`]).
    #[serde(default)]
    pub revision: u64,
    /// Invocations in a row that ended without counting a line: after
    /// [`MAX_STALLS`] the ingest fails rather than go on forever.
    #[serde(default)]
    pub stalls: u32,
}

fn first_line() -> u64 {
    1
}

/// See [`Ingest::stalls`].
pub const MAX_STALLS: u32 = 3;

/// How long an ingest record is kept: as long as the reports' lifecycle.
pub const INGEST_TTL_SECS: i64 = 30 * 24 * 3600;

impl Ingest {
    pub fn pending(ingest_id: String, source: String) -> Ingest {
        let now = Timestamp::now();
        Ingest {
            ingest_id,
            status: IngestStatus::Pending,
            source,
            counts: IngestCounts::default(),
            errors: Vec::new(),
            created_at: now,
            started_at: None,
            completed_at: None,
            next_line: 1,
            chunk: None,
            expires_at: now.get().timestamp() + INGEST_TTL_SECS,
            revision: 0,
            stalls: 0,
        }
    }

    /// `s3://bucket/key?versionId=...`, the ingest's `source`.
    pub fn source_of(bucket: &str, key: &str, version: &str) -> String {
        format!("s3://{bucket}/{key}?versionId={version}")
    }

    /// Folds a chunk's outcome in; errors beyond the first 1,000 are counted
    /// but not kept.
    pub fn fold(&mut self, chunk: ChunkIntent) {
        self.counts.add(chunk.counts);
        let room = MAX_REPORTED_ERRORS.saturating_sub(self.errors.len());
        self.errors.extend(chunk.errors.into_iter().take(room));
        self.next_line = chunk.to;
        self.chunk = None;
        self.stalls = 0;
    }

    /// The body of `GET /ingests/{id}` and of the report object.
    pub fn body(&self) -> IngestBody<'_> {
        IngestBody {
            ingest_id: &self.ingest_id,
            status: self.status,
            source: &self.source,
            counts: self.counts,
            errors: &self.errors,
            created_at: self.created_at,
            started_at: self.started_at,
            completed_at: self.completed_at,
        }
    }
}

/// An ingest as answered: the record without its checkpoint.
#[derive(Debug, Serialize)]
pub struct IngestBody<'a> {
    pub ingest_id: &'a str,
    pub status: IngestStatus,
    pub source: &'a str,
    pub counts: IngestCounts,
    pub errors: &'a [IngestLineError],
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> serde_json::Value {
        serde_json::json!({
            "id": "j1", "title": "Rust engineer", "company": "Acme", "location": "Berlin",
            "remote": false, "employment_type": "full_time", "salary_min": 1, "salary_max": 2,
            "skills": ["Rust", "rust", "SQL"], "description": "d", "posted_at": "2026-01-01T00:00:00Z"
        })
    }

    fn parse(v: &serde_json::Value) -> Result<JobRecord, LineError> {
        parse_job(&v.to_string())
    }

    #[test]
    fn a_good_line_is_read_and_its_skills_normalised() {
        let job = parse(&line()).unwrap();
        assert_eq!(job.skills, vec!["rust".to_owned(), "sql".to_owned()]);
    }

    #[test]
    fn each_bad_line_names_its_field() {
        let mut unknown = line();
        unknown["colour"] = "red".into();
        let mut short = line();
        short["embedding"] = serde_json::json!(vec![0.1f32; 383]);
        let mut ended = line();
        ended["valid_through"] = "2025-12-31T00:00:00Z".into();
        let mut missing = line();
        missing.as_object_mut().unwrap().remove("title");
        let mut wrong_type = line();
        wrong_type["remote"] = "yes".into();
        let mut long_id = line();
        long_id["id"] = "i".repeat(MAX_ID_BYTES + 1).into();
        let mut many_skills = line();
        many_skills["skills"] = serde_json::json!(vec!["s"; MAX_SKILLS + 1]);
        let mut reserved = line();
        reserved["id"] = "match".into();
        let mut ancient = line();
        ancient["posted_at"] = "1800-01-01T00:00:00Z".into();
        let mut long_text = line();
        long_text["description"] = "d".repeat(MAX_DESCRIPTION_BYTES + 1).into();
        for (value, field, says) in [
            (unknown, "colour", "unknown field"),
            (short, "embedding", "383"),
            (
                ended,
                "valid_through",
                "is before posted_at 2026-01-01T00:00:00Z",
            ),
            (missing, "title", "missing field"),
            (wrong_type, "remote", "invalid type"),
            (long_id, "id", "at most 512"),
            (many_skills, "skills", "at most 100"),
            (long_text, "description", "at most 32768"),
            (ancient, "posted_at", "outside 1900..9999"),
            (reserved, "id", "reserved"),
        ] {
            let e = parse(&value).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(says), "{e}");
        }
        let e = parse_job("{\"id\": ").unwrap_err();
        assert_eq!(e.field, None);
        assert!(e.message.starts_with("invalid JSON"), "{e}");
    }

    #[test]
    fn the_hash_changes_with_the_posting_and_with_the_model_only_when_it_embeds() {
        let job = parse(&line()).unwrap();
        let h = content_hash(&job, "m1");
        assert_eq!(h, content_hash(&parse(&line()).unwrap(), "m1"));
        assert_ne!(h, content_hash(&job, "m2"));
        let mut edited = job.clone();
        edited.title.push('!');
        assert_ne!(h, content_hash(&edited, "m1"));
        let mut embedded = job;
        embedded.embedding = Some(vec![0.5; 384]);
        assert_eq!(content_hash(&embedded, "m1"), content_hash(&embedded, "m2"));
    }

    #[test]
    fn an_ingest_id_is_the_object_versions_and_is_recognised() {
        let a = ingest_id("b", "incoming/x.jsonl", "v1");
        assert_eq!(a, ingest_id("b", "incoming/x.jsonl", "v1"));
        assert_ne!(a, ingest_id("b", "incoming/x.jsonl", "v2"));
        assert!(is_ingest_id(&a), "{a}");
        assert!(!is_ingest_id("ing_../../etc"));
    }

    /// openapi.yaml's `Ingest` and `Posting` state exactly the fields these
    /// bodies have: required those always there, properties all of them.
    #[test]
    fn openapi_states_the_ingest_and_the_posting_as_answered() {
        let doc: serde_json::Value =
            serde_norway::from_str(include_str!("../../openapi.yaml")).expect("openapi.yaml");
        let schemas = &doc["components"]["schemas"];
        let names = |v: &serde_json::Value| -> Vec<String> {
            let mut n: Vec<String> = match v {
                serde_json::Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(m) => m.keys().cloned().collect(),
                _ => Vec::new(),
            };
            n.sort();
            n
        };
        let pending = Ingest::pending("ing_x".into(), "s".into());
        let mut done = pending.clone();
        done.started_at = Some(Timestamp::now());
        done.completed_at = Some(Timestamp::now());
        let least = serde_json::to_value(pending.body()).unwrap();
        let most = serde_json::to_value(done.body()).unwrap();
        assert_eq!(names(&schemas["Ingest"]["required"]), names(&least));
        assert_eq!(names(&schemas["Ingest"]["properties"]), names(&most));
        let counts = serde_json::to_value(IngestCounts::default()).unwrap();
        assert_eq!(
            names(&schemas["Ingest"]["properties"]["counts"]["required"]),
            names(&counts)
        );

        let mut job = parse_job(&line().to_string()).unwrap();
        let least = serde_json::to_value(&job).unwrap();
        job.valid_through = Some(job.posted_at);
        let most = serde_json::to_value(&job).unwrap();
        assert_eq!(names(&schemas["Posting"]["required"]), names(&least));
        assert_eq!(names(&schemas["Posting"]["properties"]), names(&most));
    }

    #[test]
    fn fold_counts_every_error_and_keeps_the_first_thousand() {
        let mut ingest = Ingest::pending("ing".into(), "s".into());
        let errors: Vec<_> = (1..=1_200)
            .map(|l| IngestLineError::new(l, LineError::line("bad")))
            .collect();
        ingest.fold(ChunkIntent {
            from: 1,
            to: 1_201,
            counts: IngestCounts {
                received: 1_200,
                rejected: 1_200,
                ..IngestCounts::default()
            },
            errors,
        });
        assert_eq!(ingest.counts.rejected, 1_200);
        assert_eq!(ingest.errors.len(), MAX_REPORTED_ERRORS);
        assert_eq!(ingest.next_line, 1_201);
        let long =
            IngestLineError::new(1, LineError::field(&"f".repeat(400_000), "é".repeat(1_000)));
        assert!(
            long.message.len() <= MAX_ERROR_BYTES,
            "{}",
            long.message.len()
        );
        assert!(long.message.ends_with('…'));
        assert!(long.field.unwrap().len() <= MAX_ERROR_FIELD_BYTES);
    }
}

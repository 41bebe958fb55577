//! Domain types of jobmatch: the match request and its filters, tasks and their
//! status, match results, and the records the loader reads. No I/O here.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;

/// Embedding dimension; the migration declares the same `vector(384)`.
pub const EMBEDDING_DIM: usize = 384;
pub use crate::request::{Filters, MatchRequest, QuerySource, DEFAULT_LIMIT, MAX_LIMIT};

/// The five employment types of the contract; [`EmploymentType::as_str`] is
/// their one spelling (JSON, SQL and the CLI all go through it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EmploymentType {
    FullTime,
    PartTime,
    Contract,
    Internship,
    Temporary,
}

impl EmploymentType {
    pub const ALL: [EmploymentType; 5] = [
        EmploymentType::FullTime,
        EmploymentType::PartTime,
        EmploymentType::Contract,
        EmploymentType::Internship,
        EmploymentType::Temporary,
    ];

    /// Their names, in the order of [`EmploymentType::ALL`].
    pub const NAMES: [&'static str; 5] = [
        "full_time",
        "part_time",
        "contract",
        "internship",
        "temporary",
    ];

    pub fn as_str(self) -> &'static str {
        EmploymentType::NAMES[self as usize]
    }

    pub fn parse(name: &str) -> Option<EmploymentType> {
        EmploymentType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl Serialize for EmploymentType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EmploymentType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = std::borrow::Cow::<str>::deserialize(d)?;
        EmploymentType::parse(&name)
            .ok_or_else(|| serde::de::Error::unknown_variant(&name, &EmploymentType::NAMES))
    }
}

/// Number of nearest candidates scored for a given limit (DESIGN.md).
pub fn candidate_count(limit: u32) -> u32 {
    (5 * limit).clamp(100, 1000)
}

/// A UTC instant that serialises as RFC 3339 with exactly three fraction
/// digits, so that stored strings sort in time order (the owner index sorts them).
/// Held at millisecond precision, so that it round-trips through storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Timestamp {
        Timestamp::from(Utc::now())
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        use chrono::SubsecRound;
        Timestamp(t.trunc_subsecs(3))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        DateTime::<Utc>::deserialize(d).map(Timestamp::from)
    }
}

/// Lifecycle state of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    /// Ended by its owner (`POST /jobs/match/{id}/cancel`) before it finished;
    /// no result is written for it afterwards.
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Processing => "processing",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    /// One of the three end states: nothing moves a task out of it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled
        )
    }
}

/// Longest task id a path may name; ours are UUIDs (36 characters).
pub const MAX_TASK_ID_LEN: usize = 64;

/// Whether `id` could be a task id: what a route reads from a path before
/// it asks the store.
pub fn is_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_TASK_ID_LEN
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Why a task failed: a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskError {
    pub code: ErrorCode,
    pub message: String,
}

impl TaskError {
    /// The task's message was never sent, so it was never accepted.
    pub fn never_queued(&self) -> bool {
        self.code == ErrorCode::EnqueueFailed
    }

    /// The same request may pass if tried again: a dependency was down on
    /// every attempt. Not a dead-lettered task: every delivery of it ended
    /// without an answer, which its input may cause again.
    pub fn may_pass_on_retry(&self) -> bool {
        self.code == ErrorCode::DependencyUnavailable
    }
}

/// One match task as kept in the task store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub task_id: String,
    pub owner: String,
    pub status: TaskStatus,
    pub request: MatchRequest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<MatchResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<TaskError>,
    #[serde(default)]
    pub attempts: u32,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Timestamp>,
    /// Epoch seconds; the table's TTL attribute.
    pub expires_at: i64,
    /// While `processing`: until when the current attempt owns the task (epoch ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<i64>,
    /// The request's `text` as SHA-256 (lower-case hex) and length in
    /// characters, written with the task: the store drops the text itself
    /// when the task ends (a resume is personal data that the result no
    /// longer needs), and these still tell an idempotent replay whether its
    /// body is the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_chars: Option<u64>,
}

/// SHA-256 (lower-case hex) and length in characters of a request's text:
/// what an ended task keeps of it.
pub fn text_digest(text: &str) -> (String, u64) {
    use sha2::{Digest, Sha256};
    use std::fmt::Write;
    let mut hex = String::with_capacity(64);
    for byte in Sha256::digest(text.as_bytes()) {
        let _ = write!(hex, "{byte:02x}");
    }
    (hex, text.chars().count() as u64)
}

impl Task {
    /// A new pending task.
    pub fn pending(
        task_id: String,
        owner: String,
        request: MatchRequest,
        now: DateTime<Utc>,
        ttl_secs: i64,
    ) -> Task {
        let (text_sha256, text_chars) = request.text.as_deref().map(text_digest).unzip();
        Task {
            task_id,
            owner,
            status: TaskStatus::Pending,
            request,
            result: None,
            error: None,
            attempts: 0,
            created_at: Timestamp::from(now),
            updated_at: Timestamp::from(now),
            started_at: None,
            completed_at: None,
            expires_at: now.timestamp() + ttl_secs,
            lease_until: None,
            text_sha256,
            text_chars,
        }
    }

    /// Whether this task was created with `request`. An ended task's text
    /// is gone (`text_sha256` and `text_chars` stand for it), so texts
    /// compare by digest and the rest of the requests as they are.
    pub fn was_created_with(&self, request: &MatchRequest) -> bool {
        let mine = match (&self.text_sha256, self.text_chars) {
            (Some(sha), Some(chars)) => Some((sha.clone(), chars)),
            // Written before digests were kept: the text is still there.
            _ => self.request.text.as_deref().map(text_digest),
        };
        let without_text = |r: &MatchRequest| MatchRequest {
            text: None,
            ..r.clone()
        };
        mine == request.text.as_deref().map(text_digest)
            && without_text(&self.request) == without_text(request)
    }

    /// Forgets the request's text, keeping its digest: what a store does
    /// when the task ends.
    pub fn drop_text(&mut self) {
        self.request.text = None;
    }

    /// Expired items may still be readable before DynamoDB deletes them.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now.timestamp()
    }

    /// The task failed before it was queued: its client was answered 503,
    /// and a retry with the same `Idempotency-Key` and body runs it.
    pub fn never_queued(&self) -> bool {
        self.status == TaskStatus::Failed
            && self.error.as_ref().is_some_and(TaskError::never_queued)
    }
}

/// A candidate job as the index returns it, before scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub job_id: String,
    pub title: String,
    pub company: String,
    pub location: String,
    pub remote: bool,
    pub employment_type: EmploymentType,
    pub salary_min: Option<i32>,
    pub salary_max: Option<i32>,
    pub posted_at: DateTime<Utc>,
    pub skills: Vec<String>,
    /// The posting stops matching at this moment (DESIGN.md "Catalogue
    /// operations"); it bounds how long a result holding it is cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_through: Option<DateTime<Utc>>,
    pub similarity: f64,
}

/// One ranked, explained match.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobMatch {
    pub job_id: String,
    pub title: String,
    pub company: String,
    pub location: String,
    pub remote: bool,
    pub employment_type: EmploymentType,
    pub salary_min: Option<i32>,
    pub salary_max: Option<i32>,
    pub posted_at: DateTime<Utc>,
    pub similarity: f64,
    pub score: f64,
    pub matched_skills: Vec<String>,
}

/// The result of a match: the body of a completed task and of the legacy call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchResult {
    pub matches: Vec<JobMatch>,
    pub count: usize,
    /// The search and the ranking; for a cached answer, the cache lookup.
    pub query_ms: f64,
    /// Answered from the cache (DESIGN.md "Cache").
    #[serde(default)]
    pub cached: bool,
    /// When the ranking was computed (the original's time when `cached`).
    /// Absent only in results stored before the cache existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub computed_at: Option<Timestamp>,
}

/// What the queue carries: the task to run. The request itself is in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskMessage {
    pub task_id: String,
}

impl TaskMessage {
    pub fn new(task_id: impl Into<String>) -> TaskMessage {
        TaskMessage {
            task_id: task_id.into(),
        }
    }
}

/// A text's embedding stopped part way: the windows run so far (in the
/// model's order) and the sum of their tokens' vectors, which the mean
/// pooling goes on adding to. It travels with a handed-back task's message
/// (`Routing::progress`) rather than in the task item, sealed by the worker
/// for that task (`mac`), and lives as long as the delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbedProgress {
    /// SHA-256 (hex) of the text and the model: progress of another text,
    /// or another model, is ignored.
    pub key: String,
    pub windows: u32,
    pub tokens: u32,
    /// `EMBEDDING_DIM` little-endian `f32`, base64: the sum exactly as it
    /// was, so that the finished vector is the one an uninterrupted run gives.
    pub sum: String,
    /// HMAC-SHA256 (base64) over the task and the above, under the cache's
    /// key (`CacheMac::seal_progress`): the worker uses no progress it did
    /// not seal itself for this task.
    #[serde(default)]
    pub mac: String,
}

impl EmbedProgress {
    pub fn new(
        model_id: &str,
        text: &str,
        windows: u32,
        tokens: u32,
        sum: &[f32],
    ) -> EmbedProgress {
        use base64::Engine;
        let bytes: Vec<u8> = sum.iter().flat_map(|v| v.to_le_bytes()).collect();
        EmbedProgress {
            key: EmbedProgress::key_of(model_id, text),
            windows,
            tokens,
            sum: base64::engine::general_purpose::STANDARD.encode(bytes),
            mac: String::new(),
        }
    }

    fn key_of(model_id: &str, text: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((model_id.len() as u64).to_le_bytes());
        h.update(model_id.as_bytes());
        h.update(text.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The sum, if this is progress of `text` under `model_id` and well formed.
    pub fn sum_for(&self, model_id: &str, text: &str) -> Option<Vec<f32>> {
        use base64::Engine;
        if self.key != EmbedProgress::key_of(model_id, text) {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&self.sum)
            .ok()?;
        if bytes.len() != EMBEDDING_DIM * 4 {
            return None;
        }
        let sum: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        sum.iter().all(|v| v.is_finite()).then_some(sum)
    }
}

/// What travels beside a message's body, as SQS metadata: the caller's
/// group (`MessageGroupId`, by which SQS fair queues keep one caller's
/// backlog from delaying the others) and how often the task was handed back
/// for lack of time (the `deferrals` message attribute).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Routing {
    /// `None`: the message is its own group, as SQS treats one without.
    pub group: Option<String>,
    pub deferrals: u32,
    /// The embedding work done by earlier deliveries (the `progress` message
    /// attribute), so that every deferral of a long text moves it forward.
    pub progress: Option<EmbedProgress>,
}

impl Routing {
    /// The first message of `owner`'s task: its group is a hash of the
    /// caller, so that no identity reaches the queue's metadata and any
    /// caller fits `MessageGroupId`'s 128 characters.
    pub fn of_owner(owner: &str) -> Routing {
        Routing {
            group: Some(caller_group(owner)),
            deferrals: 0,
            progress: None,
        }
    }
}

/// The fair-queue group of a caller: 32 hex digits of SHA-256 of its identity.
pub fn caller_group(owner: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(owner.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The columns of `jobs` a posting is written to, in the order both writers
/// send them: the CLI loader's COPY and the ingest's upsert (which adds
/// `content_hash`).
pub const JOB_COLUMNS: [&str; 13] = [
    "id",
    "title",
    "company",
    "location",
    "remote",
    "employment_type",
    "salary_min",
    "salary_max",
    "skills",
    "description",
    "posted_at",
    "embedding",
    "valid_through",
];

/// A job line of the loader's JSON Lines input (DESIGN.md "Data").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobRecord {
    pub id: String,
    pub title: String,
    pub company: String,
    pub location: String,
    pub remote: bool,
    pub employment_type: EmploymentType,
    pub salary_min: Option<i32>,
    pub salary_max: Option<i32>,
    pub skills: Vec<String>,
    pub description: String,
    pub posted_at: DateTime<Utc>,
    /// Past it the posting never matches (RFC 3339; not before `posted_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_through: Option<DateTime<Utc>>,
    /// Absent: the loader embeds `JobRecord::embedding_text` with the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
}

impl JobRecord {
    /// Whether the posting may match at `now`: the predicate
    /// db/50_nearest.sql puts before every filter (`live`).
    pub fn live_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_through.is_none_or(|end| end > now)
    }

    /// What the model embeds for a posting without an embedding: the title,
    /// the skills and the description, one line each (docs/api.md "Text matching").
    pub fn embedding_text(&self) -> String {
        format!(
            "{}\nSkills: {}\n{}",
            self.title.trim(),
            self.skills.join(", "),
            self.description.trim()
        )
    }
}

/// A profile line of the loader's JSON Lines input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRecord {
    pub user_id: String,
    pub skills: Vec<String>,
    /// The resume; embedded by the loader when `embedding` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Why an embedding is out of contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmbeddingError {
    #[error("must have exactly {EMBEDDING_DIM} numbers, got {0}")]
    WrongDimension(usize),
    #[error("value at index {0} is not a finite 32-bit number")]
    NotFinite(usize),
    #[error("must have a finite, non-zero length")]
    NoLength,
}

/// Checks that an embedding has the right dimension, only finite values, and
/// a finite non-zero length: pgvector's cosine distance is NaN otherwise, for
/// queries and stored jobs alike.
pub fn check_embedding(embedding: &[f32]) -> Result<(), EmbeddingError> {
    if embedding.len() != EMBEDDING_DIM {
        return Err(EmbeddingError::WrongDimension(embedding.len()));
    }
    if let Some(i) = embedding.iter().position(|v| !v.is_finite()) {
        return Err(EmbeddingError::NotFinite(i));
    }
    let norm: f32 = embedding.iter().map(|x| x * x).sum();
    if norm == 0.0 || !norm.is_finite() {
        return Err(EmbeddingError::NoLength);
    }
    Ok(())
}

/// A skill as skills are compared: trimmed and lower-case (empty: none).
pub fn normalise_skill(skill: &str) -> String {
    skill.trim().to_lowercase()
}

/// Skills are compared lower-case and trimmed, without duplicates, sorted
/// (so that equal sets make equal cache keys).
pub fn normalise_skills(skills: &[String]) -> Vec<String> {
    let mut out: Vec<String> = skills
        .iter()
        .map(|s| normalise_skill(s))
        .filter(|s| !s.is_empty())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_digest_is_sha256_hex_and_characters() {
        assert_eq!(
            text_digest("ward nurse"),
            (
                "43d5da10c2f9f9ebe6e2620110a23f6f6a808aaddd1e066ebc22d86ad621927c".into(),
                10
            )
        );
        // Characters, not bytes (the limit on `text` counts characters).
        assert_eq!(
            text_digest("é"),
            (
                "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c".into(),
                1
            )
        );
    }

    fn with_text(text: Option<&str>, limit: u32) -> MatchRequest {
        MatchRequest {
            text: text.map(str::to_owned),
            limit,
            ..MatchRequest::default()
        }
    }

    #[test]
    fn an_ended_task_knows_its_request_by_the_text_digest() {
        let mut task = Task::pending(
            "t".into(),
            "alice".into(),
            with_text(Some("ward nurse"), 5),
            Utc::now(),
            60,
        );
        assert_eq!(
            (task.text_sha256.as_deref(), task.text_chars),
            (
                Some("43d5da10c2f9f9ebe6e2620110a23f6f6a808aaddd1e066ebc22d86ad621927c"),
                Some(10)
            )
        );
        for t in [task.clone(), {
            task.drop_text();
            task
        }] {
            assert!(t.was_created_with(&with_text(Some("ward nurse"), 5)));
            // Another text of the same length, no text, another limit.
            assert!(!t.was_created_with(&with_text(Some("ward Nurse"), 5)));
            assert!(!t.was_created_with(&with_text(None, 5)));
            assert!(!t.was_created_with(&with_text(Some("ward nurse"), 6)));
        }
        // A task without text has no digest, and needs none.
        let bare = Task::pending("t".into(), "a".into(), with_text(None, 5), Utc::now(), 60);
        assert_eq!((bare.text_sha256.as_deref(), bare.text_chars), (None, None));
        assert!(bare.was_created_with(&with_text(None, 5)));
        assert!(!bare.was_created_with(&with_text(Some("x"), 5)));
        // Written before digests were kept: the text itself compares.
        let mut older = Task::pending(
            "t".into(),
            "a".into(),
            with_text(Some("x"), 5),
            Utc::now(),
            60,
        );
        (older.text_sha256, older.text_chars) = (None, None);
        assert!(older.was_created_with(&with_text(Some("x"), 5)));
        assert!(!older.was_created_with(&with_text(Some("y"), 5)));
    }
}

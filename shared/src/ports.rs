//! Ports: what the handlers need from the outside world. The adapters in
//! `adapters/` implement them over DynamoDB, SQS and PostgreSQL; `memory`
//! implements them in memory for unit tests.

use std::future::Future;

use chrono::{DateTime, Utc};

use crate::catalogue::Ingest;
use crate::domain::{
    Candidate, Filters, JobRecord, MatchResult, Routing, Task, TaskError, TaskMessage, TaskStatus,
};
use crate::error::Result;

/// The outcome of trying to take a task for processing.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// Taken: the task as it now is (`processing`, attempts incremented).
    Claimed(Box<Task>),
    /// Already `completed`, `failed` or `cancelled`: nothing to do.
    Finished(TaskStatus),
    /// Another invocation holds a live lease on it.
    Busy,
    /// No such task (or it has expired).
    Missing,
}

/// Which state a terminal write must find the task in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence {
    /// Still `pending` (the api gives up on a task it could not enqueue).
    Pending,
    /// `processing` under this attempt number (the worker's own claim).
    Attempt(u32),
    /// `pending` or `processing` under any attempt: the dead-letter consumer
    /// closes whatever the worker could not, and leaves a finished task be.
    Unfinished,
}

/// Reading the tasks table: all the status function needs.
pub trait TaskReader: Send + Sync {
    /// Reads a task; expired tasks are `None`.
    fn get(
        &self,
        task_id: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Task>>> + Send;
    /// A cheap round trip for health checks.
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Writing the tasks table: a new task and its state changes.
pub trait TaskWriter: Send + Sync {
    /// Writes a new pending task; fails if the id exists.
    fn create(&self, task: &Task) -> impl Future<Output = Result<()>> + Send;
    /// `pending` (or `processing` with an expired lease) → `processing`.
    fn claim(
        &self,
        task_id: &str,
        now: DateTime<Utc>,
        lease_until_ms: i64,
    ) -> impl Future<Output = Result<Claim>> + Send;
    /// → `completed`; returns false when the fence no longer holds.
    fn complete(
        &self,
        task_id: &str,
        fence: Fence,
        result: &MatchResult,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// → `failed`; returns false when the fence no longer holds.
    fn fail(
        &self,
        task_id: &str,
        fence: Fence,
        error: &TaskError,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;
    /// Gives a claimed task's lease back so that a redelivery can take it at once.
    fn release(
        &self,
        task_id: &str,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<()>> + Send;
}

/// What a cancel found (DESIGN.md "Cancel and completion callbacks").
#[derive(Debug, Clone, PartialEq)]
pub enum Cancel {
    /// It was `pending` or `processing` and is now `cancelled`: the task as it now is.
    Cancelled(Box<Task>),
    /// It had already ended; it stays as it was.
    Finished(Box<Task>),
    /// No such task for this owner (another caller's, unknown or expired).
    Missing,
}

/// Ending a task at its owner's request: the api's cancel route.
pub trait TaskCanceller: Send + Sync {
    /// `pending` or `processing` → `cancelled`, by one conditional write on
    /// the owner and the state; the worker's later writes then fail their
    /// fence and are dropped.
    fn cancel(
        &self,
        task_id: &str,
        owner: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Cancel>> + Send;
}

/// The whole tasks table, read and written (the api, the worker, the
/// dead-letter consumer); every reader and writer of it is one.
pub trait TaskStore: TaskReader + TaskWriter {}

impl<T: TaskReader + TaskWriter> TaskStore for T {}

/// The match queue.
pub trait TaskQueue: Send + Sync {
    /// Sends `message` as its body, `routing` as its metadata.
    fn send(
        &self,
        message: &TaskMessage,
        routing: &Routing,
    ) -> impl Future<Output = Result<()>> + Send;
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;
}

/// Where the query vector comes from.
#[derive(Debug, Clone, Copy)]
pub enum Query<'a> {
    Embedding(&'a [f32]),
    /// The stored profile of this user.
    Profile(&'a str),
}

/// The nearest jobs, and the profile's skills when the query was a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbours {
    pub profile_skills: Option<Vec<String>>,
    pub candidates: Vec<Candidate>,
}

/// The job index (PostgreSQL + pgvector).
pub trait JobIndex: Send + Sync {
    /// The `count` jobs nearest to the query among those passing `filters`.
    /// `Error::ProfileNotFound` when the query is a profile that does not exist.
    fn nearest(
        &self,
        query: Query<'_>,
        filters: &Filters,
        count: u32,
    ) -> impl Future<Output = Result<Neighbours>> + Send;
    /// The pgvector version, as a health check.
    fn pgvector_version(&self) -> impl Future<Output = Result<String>> + Send;
}

/// The embedding model: text in, the contract's vectors out. The model sits
/// behind an adapter (the `embed` crate) so that handlers are tested without it.
pub trait Embedder: Send + Sync {
    /// The model's identity; vectors of different identities never mix.
    fn model_id(&self) -> &str;
    /// One unit-length `EMBEDDING_DIM` vector per text, in order.
    fn embed(&self, texts: Vec<String>) -> impl Future<Output = Result<Vec<Vec<f32>>>> + Send;
}

/// A cache key: SHA-256 of what makes two requests (or two texts) equal.
pub type CacheKey = [u8; 32];

/// The data versions a result is computed at (DESIGN.md "Cache").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataVersions {
    /// `jobs_version`: any write to `jobs` moves it.
    pub jobs: i64,
    /// The stored profile's version, for a result keyed by a profile.
    pub profile: Option<i64>,
}

/// How long a result of a `posted_within_days` match stays exact. The window
/// only ever drops jobs as the clock moves (a job entering it is a write,
/// which moves the version), and the ranking changes only when one of its
/// candidates drops out: so the result holds until the oldest candidate,
/// posted at `oldest_posted_at`, is `days` old (an HNSW result stays a
/// valid answer, though a new search might return another approximation).
/// The cache computes that moment as the filter's SQL does
/// (`now() - make_interval(days => ...)`, in the session's time zone, UTC
/// under sqlx).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PostedWindow {
    pub oldest_posted_at: DateTime<Utc>,
    pub days: i64,
}

/// How long a result stays exact beyond its age limit: until the first of
/// its candidates stops passing, by leaving the request's window or by its
/// `valid_through` (`first_valid_through`: the earliest among the
/// candidates). A posting that was no candidate changes nothing when it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Holds {
    pub window: Option<PostedWindow>,
    pub first_valid_through: Option<DateTime<Utc>>,
}

impl Holds {
    /// The moment the result stops being exact, if any.
    pub fn until(&self) -> Option<DateTime<Utc>> {
        let left = self.window.and_then(|w| {
            w.oldest_posted_at
                .checked_add_signed(chrono::Duration::try_days(w.days)?)
        });
        match (left, self.first_valid_through) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A result lookup: the cached result, or the versions to store one at.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(MatchResult),
    /// Read before the search: a write during the search leaves the stored
    /// result at the older version, where it is never served.
    Miss(DataVersions),
}

/// The cache of results and of text embeddings, shared by all instances.
pub trait MatchCache: Send + Sync {
    /// The result stored under `key` if it is still valid: computed at the
    /// current `jobs` version and, for `profile_user`, that profile's
    /// current version.
    fn lookup(
        &self,
        key: &CacheKey,
        profile_user: Option<&str>,
    ) -> impl Future<Output = Result<Lookup>> + Send;
    /// Stores `result`, usable until its age limit or until `holds` ends
    /// (a candidate leaves the window or reaches its `valid_through`),
    /// whichever comes first.
    fn store(
        &self,
        key: &CacheKey,
        profile_user: Option<&str>,
        versions: DataVersions,
        result: &MatchResult,
        holds: Holds,
    ) -> impl Future<Output = Result<()>> + Send;
    /// The vector stored for a text (the key holds the model's identity).
    fn embedding(&self, key: &CacheKey) -> impl Future<Output = Result<Option<Vec<f32>>>> + Send;
    fn store_embedding(
        &self,
        key: &CacheKey,
        embedding: &[f32],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// No cache: every lookup misses and nothing is stored (the benchmark's
/// measurements of the search itself).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCache;

impl MatchCache for NoCache {
    async fn lookup(&self, _key: &CacheKey, _profile_user: Option<&str>) -> Result<Lookup> {
        Ok(Lookup::Miss(DataVersions {
            jobs: 0,
            profile: None,
        }))
    }

    async fn store(
        &self,
        _key: &CacheKey,
        _profile_user: Option<&str>,
        _versions: DataVersions,
        _result: &MatchResult,
        _holds: Holds,
    ) -> Result<()> {
        Ok(())
    }

    async fn embedding(&self, _key: &CacheKey) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }

    async fn store_embedding(&self, _key: &CacheKey, _embedding: &[f32]) -> Result<()> {
        Ok(())
    }
}

/// For functions that load no model (the api): a text never reaches it, as
/// requests with `text` go to the worker; if one did, it fails loudly.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoModel;

impl Embedder for NoModel {
    fn model_id(&self) -> &str {
        "none"
    }

    async fn embed(&self, _texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        Err(crate::error::Error::Internal(
            "this function has no embedding model".into(),
        ))
    }
}

/// Idempotent creation: the task id of an idempotent request is derived from
/// its caller and key, so that one conditional write decides which request
/// creates the task, with no read-then-write race.
pub trait IdempotentTaskStore: Send + Sync {
    /// Writes `task` unless a live task with its id exists; `Ok(None)` when
    /// written, `Ok(Some(existing))` otherwise. An expired task is replaced.
    fn create_or_get(
        &self,
        task: &Task,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<Option<Task>>> + Send;
    /// Writes `task` over a task of its id that was never queued (`failed`,
    /// `enqueue_failed`: its client was answered 503); `Ok(false)` when
    /// the task there is another (a concurrent retry already replaced it).
    fn replace_unqueued(&self, task: &Task) -> impl Future<Output = Result<bool>> + Send;
}

/// Where a page of the task listing starts: after this task of the owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageCursor {
    pub created_at: String,
    pub task_id: String,
}

/// One page of an owner's tasks, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskPage {
    pub tasks: Vec<Task>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<PageCursor>,
}

/// The owner + created_at index of the tasks table.
pub trait TaskLister: Send + Sync {
    /// Up to `limit` live tasks of `owner`, newest first, after `after`.
    fn list(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> impl Future<Output = Result<TaskPage>> + Send;
}

/// The quota of match requests per caller (`crate::quota`), shared by every
/// api instance.
pub trait QuotaStore: Send + Sync {
    /// Takes one request from `caller`'s bucket at `now`: the bucket as it
    /// is then, or `Error::QuotaExceeded` (429) when it is empty, in which
    /// case nothing is written. Any other error means the bucket could not
    /// be read or written; the caller fails the request (closed).
    fn take(
        &self,
        caller: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<crate::quota::RateLimit>> + Send;
}

/// The ingest records (DESIGN.md "Catalogue operations"). Every write is
/// conditional on the record's `revision`, so two runs of one ingest (a
/// repeated notification, a retry beside a slow run) never both count a chunk.
pub trait IngestStore: Send + Sync {
    /// Stores `ingest` unless its id exists; returns what is stored.
    fn create(&self, ingest: &Ingest) -> impl Future<Output = Result<Ingest>> + Send;
    fn get(&self, ingest_id: &str) -> impl Future<Output = Result<Option<Ingest>>> + Send;
    /// Writes `ingest` with `revision + 1` if the stored revision is still
    /// `ingest.revision`; `false` (nothing written) when another run moved it.
    fn replace(&self, ingest: &Ingest) -> impl Future<Output = Result<bool>> + Send;
}

/// One posting to write, with the hash of what it was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct HashedJob {
    pub job: JobRecord,
    pub content_hash: [u8; 32],
}

/// Writing the catalogue: what the ingest function needs (as `jobmatch_writer`).
pub trait JobWriter: Send + Sync {
    /// The stored content hash of each of `ids` that exists (`None`: stored
    /// without one).
    fn stored_hashes(
        &self,
        ids: &[&str],
    ) -> impl Future<Output = Result<std::collections::HashMap<String, Option<[u8; 32]>>>> + Send;
    /// Upserts by id in one transaction; a row whose hash already equals is
    /// left alone. Returns the rows written. Every job has its embedding.
    fn upsert(&self, jobs: &[HashedJob]) -> impl Future<Output = Result<u64>> + Send;
    /// Deletes postings whose `valid_through` is more than `days` days past;
    /// returns how many.
    fn delete_expired(&self, days: u32) -> impl Future<Output = Result<u64>> + Send;
}

/// An admin's reads and deletes of single postings (the catalogue function).
pub trait JobAdmin: Send + Sync {
    /// The posting without its embedding.
    fn get(&self, id: &str) -> impl Future<Output = Result<Option<JobRecord>>> + Send;
    /// `false` when there was none.
    fn delete(&self, id: &str) -> impl Future<Output = Result<bool>> + Send;
}

/// A stored object's bytes as they are read (decompressed when gzip).
pub type ObjectReader = std::pin::Pin<Box<dyn tokio::io::AsyncRead + Send>>;

/// The ingest bucket.
pub trait ObjectStore: Send + Sync {
    /// The current version of `key` (`None`: no such object).
    fn current_version(&self, key: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Reads one version as a stream, gunzipped when `gzip`.
    fn open(
        &self,
        key: &str,
        version: &str,
        gzip: bool,
    ) -> impl Future<Output = Result<ObjectReader>> + Send;
    /// Stores `body` at `key`; returns the new version's id.
    fn put(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<String>> + Send;
}

/// The ingest queue: a message body sent again (an ingest going on).
pub trait Continuations: Send + Sync {
    fn send_again(&self, body: &str) -> impl Future<Output = Result<()>> + Send;
}

/// The callbacks' queue (DESIGN.md "Cancel and completion callbacks"): the
/// task stream's consumer queues a notice per ended task, and a failed
/// delivery waits there for its next try.
pub trait CallbackOutbox: Send + Sync {
    /// Queues each body as a message; the indexes of those not queued.
    fn send(&self, bodies: &[String]) -> impl Future<Output = Result<Vec<usize>>> + Send;
    /// The received message `receipt_handle` comes back after `delay`.
    fn retry_after(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> impl Future<Output = Result<()>> + Send;
}

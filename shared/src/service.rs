//! The use cases, written against the ports: submit a match task, run a match,
//! and process one queued task.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use sha2::{Digest, Sha256};

use crate::domain::{
    candidate_count, MatchRequest, MatchResult, QuerySource, Routing, Task, TaskError, TaskMessage,
    TaskStatus, Timestamp,
};
use crate::error::{Error, ErrorCode, Result};
use crate::ports::{
    CacheKey, Claim, Embedder, Fence, Holds, JobIndex, Lookup, MatchCache, PostedWindow, Query,
    TaskQueue, TaskStore,
};

use crate::ranking::rank;
use crate::telemetry::{CacheKind, Counter, Histogram};

/// Creates a pending task, then enqueues it: the worker never receives a
/// message for a task that is not written yet.
pub async fn submit<S: TaskStore, Q: TaskQueue>(
    store: &S,
    queue: &Q,
    owner: &str,
    request: MatchRequest,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<Task> {
    let task = Task::pending(new_task_id(), owner.to_owned(), request, now, ttl_secs);
    store.create(&task).await?;
    enqueue(store, queue, &task.task_id, owner, now).await?;
    Ok(task)
}

/// Sends the message of `owner`'s task just written, in the caller's
/// fair-queue group. When the send fails the task
/// is closed as `failed` (`enqueue_failed`), so that nothing the client was
/// refused stays pending; both submit paths end this way.
pub async fn enqueue<S: TaskStore, Q: TaskQueue>(
    store: &S,
    queue: &Q,
    task_id: &str,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    let message = TaskMessage::new(task_id);
    let Err(send_err) = queue.send(&message, &Routing::of_owner(owner)).await else {
        return Ok(());
    };
    let error = TaskError {
        code: ErrorCode::EnqueueFailed,
        message: "the task could not be queued".into(),
    };
    if let Err(e) = store.fail(task_id, Fence::Pending, &error, now).await {
        tracing::error!(task_id, error = %e, "could not close unqueued task");
    }
    Err(send_err)
}

/// Closes the task of a dead-lettered message as `failed`
/// (`dead_lettered`), whatever left it unfinished: a crash, a time-out or an
/// init failure of the worker. A finished or unknown task is left as it is;
/// returns whether this call closed it.
pub async fn dead_letter<S: TaskStore>(
    store: &S,
    task_id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let error = TaskError {
        code: ErrorCode::DeadLettered,
        message: "the task could not be run: every delivery of it ended without an answer \
                  from the worker (a crash, a time-out or a failed start)"
            .into(),
    };
    store.fail(task_id, Fence::Unfinished, &error, now).await
}

/// Task ids are UUIDv7: unique and ordered by creation time.
pub fn new_task_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A cache call that takes longer is abandoned: the match goes on without it.
const CACHE_TIMEOUT: Duration = Duration::from_millis(500);
/// Bumped when the ranking or the result's shape changes, so that no entry
/// of an older build is served.
const CACHE_FORMAT: u32 = 2;

/// What makes two requests' results equal: the query source, skills, filters
/// and limit (DESIGN.md "Cache"). A profile's key holds its owner, so that it
/// serves only them; a text's holds the model's identity (`model_id`), so that
/// a new model never serves the old one's rankings. A `posted_within_days`
/// result is stored with its `PostedWindow`, and any result with its
/// candidates' first `valid_through` (`Holds`), which bound how long it holds.
pub fn result_key(owner: &str, model_id: &str, request: &MatchRequest) -> Option<CacheKey> {
    #[derive(serde::Serialize)]
    enum Source<'a> {
        Embedding(&'a [f32]),
        Text { model: &'a str, text: &'a str },
        Profile(&'a str),
    }
    #[derive(serde::Serialize)]
    struct Key<'a> {
        format: u32,
        source: Source<'a>,
        skills: &'a Option<Vec<String>>,
        filters: &'a crate::domain::Filters,
        limit: u32,
    }
    let source = match request.source() {
        QuerySource::Embedding(e) => Source::Embedding(e),
        QuerySource::Text(text) => Source::Text {
            model: model_id,
            text,
        },
        QuerySource::Profile => Source::Profile(owner),
    };
    let key = Key {
        format: CACHE_FORMAT,
        source,
        skills: &request.skills,
        filters: &request.filters,
        limit: request.limit,
    };
    let bytes = serde_json::to_vec(&key).ok()?;
    Some(Sha256::digest(&bytes).into())
}

/// The key of a text's vector: the model's identity and the text, so that a
/// model change never reuses a vector of the old one.
pub fn embedding_key(model_id: &str, text: &str) -> CacheKey {
    let mut hash = Sha256::new();
    hash.update((model_id.len() as u64).to_be_bytes());
    hash.update(model_id.as_bytes());
    hash.update(text.as_bytes());
    hash.finalize().into()
}

async fn within<T>(call: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(CACHE_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| {
            Err(Error::unavailable(
                "cache",
                "the cache did not answer in time",
            ))
        })
}

/// The text's vector: from the cache, or from the model (then stored).
async fn embed_cached<E: Embedder, C: MatchCache>(
    embedder: &E,
    cache: &C,
    text: &str,
) -> Result<Vec<f32>> {
    let key = embedding_key(embedder.model_id(), text);
    match within(cache.embedding(&key)).await {
        Ok(Some(vector)) => {
            Counter::CacheHits(CacheKind::Embedding).increment();
            return Ok(vector);
        }
        Ok(None) => Counter::CacheMisses(CacheKind::Embedding).increment(),
        Err(e) => tracing::warn!(error = %e, "embedding cache unavailable; embedding anyway"),
    }
    let started = Instant::now();
    let vector = embedder
        .embed(vec![text.to_owned()])
        .await?
        .pop()
        .ok_or_else(|| Error::Internal("the model returned no vector".into()))?;
    Histogram::EmbedMs.record(started.elapsed().as_secs_f64() * 1000.0);
    if let Err(e) = within(cache.store_embedding(&key, &vector)).await {
        tracing::warn!(error = %e, "cannot cache the embedding");
    }
    Ok(vector)
}

fn elapsed_ms(started: Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

/// Runs a match for `owner`: a valid cached result when there is one;
/// otherwise the query from the request (its embedding, or its text through
/// the model, whose vector is cached too) or the stored profile, the nearest
/// candidates, then the ranking, stored for the next identical request.
/// `query_ms` counts the search and the ranking (the lookup for a hit), not
/// the embedding. The cache never fails a match: a cache error or time-out
/// is a miss that stores nothing.
pub async fn run_match<J: JobIndex, E: Embedder, C: MatchCache, G: Proceed>(
    index: &J,
    embedder: &E,
    cache: &C,
    owner: &str,
    request: &MatchRequest,
    proceed: &G,
) -> Result<MatchResult> {
    let started = Instant::now();
    let key = result_key(owner, embedder.model_id(), request);
    let profile_user = matches!(request.source(), QuerySource::Profile).then_some(owner);
    let mut versions = None;
    if let Some(key) = &key {
        match within(cache.lookup(key, profile_user)).await {
            Ok(Lookup::Hit(mut result)) => {
                Counter::CacheHits(CacheKind::Result).increment();
                result.cached = true;
                result.query_ms = elapsed_ms(started);
                return Ok(result);
            }
            Ok(Lookup::Miss(at)) => {
                Counter::CacheMisses(CacheKind::Result).increment();
                versions = Some(at);
            }
            Err(e) => tracing::warn!(error = %e, "result cache unavailable; searching"),
        }
    }
    let embedded;
    let query = match request.source() {
        QuerySource::Embedding(embedding) => Query::Embedding(embedding),
        QuerySource::Text(text) => {
            embedded = embed_cached(embedder, cache, text).await?;
            // The embedding took time in which the task may have been
            // cancelled: the search is not paid for then.
            proceed.check().await?;
            Query::Embedding(&embedded)
        }
        QuerySource::Profile => Query::Profile(owner),
    };
    let started = Instant::now();
    let neighbours = index
        .nearest(query, &request.filters, candidate_count(request.limit))
        .await?;
    let holds = Holds {
        window: request.filters.posted_within_days.and_then(|days| {
            let oldest = neighbours.candidates.iter().map(|c| c.posted_at).min()?;
            Some(PostedWindow {
                oldest_posted_at: oldest,
                days,
            })
        }),
        first_valid_through: neighbours
            .candidates
            .iter()
            .filter_map(|c| c.valid_through)
            .min(),
    };
    let skills = request
        .skills
        .clone()
        .or(neighbours.profile_skills)
        .unwrap_or_default();
    let matches = rank(neighbours.candidates, &skills, request.limit as usize);
    let result = MatchResult {
        count: matches.len(),
        matches,
        query_ms: elapsed_ms(started),
        cached: false,
        computed_at: Some(Timestamp::now()),
    };
    if let (Some(key), Some(versions)) = (key, versions) {
        if let Err(e) = within(cache.store(&key, profile_user, versions, &result, holds)).await {
            tracing::warn!(error = %e, "cannot cache the result");
        }
    }
    Ok(result)
}

/// Asked after a text's embedding, before the search: whether the match
/// is still wanted. The worker's asks the task store (a cancel); a legacy
/// call's inline match always is ([`Always`]).
pub trait Proceed: Send + Sync {
    /// `Err(Error::Cancelled)` stops the match.
    fn check(&self) -> impl std::future::Future<Output = Result<()>> + Send;
}

/// A match no one can cancel.
pub struct Always;

impl Proceed for Always {
    async fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// A task's match goes on while the task is not `cancelled`. The claim
/// checked that before the embedding; this checks it again before the
/// search (one consistent read).
struct NotCancelled<'a, S> {
    store: &'a S,
    task_id: &'a str,
}

impl<S: TaskStore> Proceed for NotCancelled<'_, S> {
    async fn check(&self) -> Result<()> {
        if cancelled(self.store, self.task_id).await? {
            return Err(Error::Cancelled(self.task_id.to_owned()));
        }
        Ok(())
    }
}

async fn cancelled<S: TaskStore>(store: &S, task_id: &str) -> Result<bool> {
    Ok(store
        .get(task_id, Utc::now())
        .await?
        .is_some_and(|t| t.status == TaskStatus::Cancelled))
}

/// What became of one delivery; the worker acknowledges all but `Retry`
/// (`OutOfTime` once it has handed the task back).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The match ran and its result is stored.
    Completed { query_ms: f64 },
    /// The task is closed as `failed` with this code (permanent error, or the
    /// last attempt of a transient one).
    Failed { code: ErrorCode },
    /// A duplicate or late delivery of a finished task: nothing changed.
    AlreadyFinished,
    /// Its owner cancelled the task while it ran: the match stopped (or its
    /// result was dropped) and nothing was written.
    Cancelled,
    /// Not started, or stopped, for lack of time, and the task's lease
    /// released: the worker hands the task back as a new message, which
    /// costs none of its receives (only for a [`Delivery`] that `may_defer`).
    /// `owner` is the task's caller when it was claimed.
    OutOfTime { owner: Option<String> },
    /// Leave the message for redelivery.
    Retry(Retry),
}

/// Why a delivery is left for the next one.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Retry {
    /// Too close to the invocation deadline to start the match.
    #[error("too close to the invocation deadline to start")]
    NotStarted,
    #[error("task is leased by another invocation")]
    Leased,
    #[error("no such task")]
    NoSuchTask,
    #[error("lease lost before completing")]
    LeaseLost,
    /// The invocation's hard deadline stopped the attempt.
    #[error("stopped at the invocation deadline")]
    Stopped,
    /// A failure that may pass (see [`Failure`]).
    #[error("{0}")]
    Transient(String),
}

/// What a failed attempt means for its task: the worker's classification,
/// apart from the HTTP mapping of the same error.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// May pass: worth another attempt while the queue has any.
    Transient,
    /// Will not pass: the task is closed with this error.
    Permanent,
}

impl Failure {
    pub fn of(err: &Error) -> Failure {
        match err {
            Error::Unavailable { .. } | Error::OutOfTime(_) => Failure::Transient,
            _ => Failure::Permanent,
        }
    }
}

/// The error stored with a failed task: a stable code and a message for the
/// client, written for a task (no HTTP wording); internals stay in the log.
pub fn task_error(err: &Error) -> TaskError {
    let message = match err {
        Error::ProfileNotFound => {
            "no stored profile for this caller; send an embedding or a text".to_owned()
        }
        Error::Unavailable { component, .. } => {
            format!("{component} was unavailable on every attempt")
        }
        Error::OutOfTime(_) => {
            "the match could not finish before the invocation deadline on any attempt".to_owned()
        }
        Error::Validation(errors) => match errors.iter().find(|e| e.field == "text") {
            // The worker's own bound on a text (a task queued before the
            // api's bound, or under a larger one): its reason is the client's.
            Some(text) => format!("text {}", text.message),
            None => "the stored request is not valid".to_owned(),
        },
        Error::MalformedJson(_) => "the stored request is not valid".to_owned(),
        _ => "the match failed unexpectedly; it has been logged".to_owned(),
    };
    TaskError {
        code: err.code(),
        message,
    }
}

/// How one delivery of a task message should be handled.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    /// `ApproximateReceiveCount` of this delivery.
    pub receive_count: u32,
    /// After this many receives the queue moves the message to the DLQ.
    pub max_receive_count: u32,
    /// The invocation's deadline (epoch ms); the lease ends there.
    pub deadline_ms: i64,
    /// No match starts after this (epoch ms), and a running one is abandoned
    /// here, leaving time to record the outcome before the deadline.
    pub stop_at_ms: i64,
    /// Out of time, the task may be handed back as a new message
    /// ([`Outcome::OutOfTime`]) rather than retried: lack of time then costs
    /// none of its receives. False once it was handed back too often.
    pub may_defer: bool,
}

impl Delivery {
    /// The queue will not deliver this message again after this attempt.
    pub fn is_last(&self) -> bool {
        self.receive_count >= self.max_receive_count
    }

    fn time_left(&self) -> Option<Duration> {
        let left = self.stop_at_ms - Utc::now().timestamp_millis();
        u64::try_from(left)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

/// Claims the task, runs the match and records the result.
///
/// The match runs under the delivery's deadline (`crate::deadline`): the
/// model stops between windows and the search's statement times out there.
/// Out of time (before the match could start, or stopped), a delivery that
/// `may_defer` releases the task and answers [`Outcome::OutOfTime`], so that
/// the worker hands it back. One that may not is left for the next delivery,
/// except the last: that one claims the task and closes it as `failed`, so
/// that no task is stranded when its message moves to the DLQ.
pub async fn process<S: TaskStore, J: JobIndex, E: Embedder, C: MatchCache>(
    store: &S,
    index: &J,
    embedder: &E,
    cache: &C,
    task_id: &str,
    delivery: Delivery,
) -> Result<Outcome> {
    if delivery.time_left().is_none() {
        if delivery.may_defer {
            return Ok(Outcome::OutOfTime { owner: None });
        }
        if !delivery.is_last() {
            return Ok(Outcome::Retry(Retry::NotStarted));
        }
    }
    let task = match store
        .claim(task_id, Utc::now(), delivery.deadline_ms)
        .await?
    {
        Claim::Claimed(task) => task,
        Claim::Finished(status) => {
            tracing::info!(
                status = status.as_str(),
                "task already finished; acknowledging"
            );
            return Ok(Outcome::AlreadyFinished);
        }
        Claim::Busy => return Ok(Outcome::Retry(Retry::Leased)),
        Claim::Missing => return Ok(Outcome::Retry(Retry::NoSuchTask)),
    };
    let fence = Fence::Attempt(task.attempts);
    let out_of_time =
        || Error::OutOfTime("the match could not finish before the invocation deadline".into());
    // The match stops itself at `stop_at_ms` (the model between windows,
    // the search by its statement timeout), so that nothing of it runs on
    // once it is answered. The timeout is a backstop for what cannot stop
    // itself, three quarters into the margin: the rest is for recording the
    // outcome before the invocation's deadline.
    let grace = u64::try_from((delivery.deadline_ms - delivery.stop_at_ms) * 3 / 4).unwrap_or(0);
    let matched = match delivery.time_left() {
        Some(left) => tokio::time::timeout(
            left + Duration::from_millis(grace),
            crate::deadline::within(
                crate::deadline::instant_at(delivery.stop_at_ms),
                run_match(
                    index,
                    embedder,
                    cache,
                    &task.owner,
                    &task.request,
                    &NotCancelled { store, task_id },
                ),
            ),
        )
        .await
        .unwrap_or_else(|_| Err(out_of_time())),
        None => Err(out_of_time()),
    };
    match matched {
        Ok(result) => {
            let query_ms = result.query_ms;
            if !store.complete(task_id, fence, &result, Utc::now()).await? {
                if cancelled(store, task_id).await? {
                    tracing::info!("cancelled while it ran; result dropped");
                    return Ok(Outcome::Cancelled);
                }
                tracing::warn!("lost the lease before completing; result dropped");
                return Ok(Outcome::Retry(Retry::LeaseLost));
            }
            Ok(Outcome::Completed { query_ms })
        }
        Err(Error::Cancelled(_)) => {
            tracing::info!(
                attempts = task.attempts,
                "cancelled while it ran; stopped before the search"
            );
            Ok(Outcome::Cancelled)
        }
        Err(Error::OutOfTime(why)) if delivery.may_defer => {
            tracing::info!(reason = %why, attempts = task.attempts, "out of time; handing the task back");
            store.release(task_id, task.attempts, Utc::now()).await?;
            Ok(Outcome::OutOfTime {
                owner: Some(task.owner),
            })
        }
        Err(err) if Failure::of(&err) == Failure::Transient && !delivery.is_last() => {
            tracing::warn!(error = %err, attempts = task.attempts, "transient failure; will retry");
            store.release(task_id, task.attempts, Utc::now()).await?;
            Ok(Outcome::Retry(Retry::Transient(err.to_string())))
        }
        Err(err) => {
            tracing::warn!(error = %err, attempts = task.attempts, "task failed");
            let code = err.code();
            let error = task_error(&err);
            if !store.fail(task_id, fence, &error, Utc::now()).await?
                && cancelled(store, task_id).await?
            {
                return Ok(Outcome::Cancelled);
            }
            Ok(Outcome::Failed { code })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn failures_are_classified_apart_from_http_and_stored_in_task_words() {
        let down = Error::unavailable("postgres", "connection refused at 10.0.0.1");
        assert_eq!(Failure::of(&down), Failure::Transient);
        assert_eq!(Failure::of(&Error::ProfileNotFound), Failure::Permanent);
        assert_eq!(
            Failure::of(&Error::Internal("bug".into())),
            Failure::Permanent
        );
        let stored = task_error(&down);
        assert_eq!(stored.code, ErrorCode::DependencyUnavailable);
        assert_eq!(stored.message, "postgres was unavailable on every attempt");
        let stored = task_error(&Error::Internal("db password is hunter2".into()));
        assert_eq!(stored.code, ErrorCode::Internal);
        assert!(!stored.message.contains("hunter2"), "{stored:?}");
        assert!(task_error(&Error::ProfileNotFound)
            .message
            .contains("profile"));
    }
    use crate::adapters::memory::{MemoryEmbedder, MemoryJobIndex, MemoryQueue, MemoryTaskStore};
    use crate::domain::{Filters, TaskStatus};
    use crate::ports::{TaskReader, TaskWriter};

    fn request() -> MatchRequest {
        MatchRequest {
            embedding: None,
            text: None,
            skills: None,
            filters: Filters::default(),
            limit: 5,
            callback: None,
        }
    }

    /// An embedder during whose work the owner cancels the task.
    struct CancelledWhileEmbedding<'a> {
        store: &'a MemoryTaskStore,
        task_id: String,
    }

    impl Embedder for CancelledWhileEmbedding<'_> {
        fn model_id(&self) -> &str {
            "test-model"
        }

        async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
            use crate::ports::{Cancel, TaskCanceller};
            let cancel = self.store.cancel(&self.task_id, "alice", Utc::now());
            assert!(matches!(cancel.await?, Cancel::Cancelled(_)));
            Ok(texts.iter().map(|t| MemoryEmbedder::vector(t)).collect())
        }
    }

    #[tokio::test]
    async fn a_task_cancelled_during_its_embedding_stops_before_the_search_and_writes_nothing() {
        let store = MemoryTaskStore::default();
        let id = new_task_id();
        let text = MatchRequest {
            text: Some("rust engineer".into()),
            ..request()
        };
        let task = Task::pending(id.clone(), "alice".into(), text, Utc::now(), 3600);
        store.create(&task).await.expect("create");
        // A search would fail (the index is down) and the task be retried:
        // `Cancelled` shows that none was made.
        let index = MemoryJobIndex {
            down: true,
            ..Default::default()
        };
        let embedder = CancelledWhileEmbedding {
            store: &store,
            task_id: id.clone(),
        };
        let now = Utc::now().timestamp_millis();
        let delivery = Delivery {
            receive_count: 1,
            max_receive_count: 3,
            deadline_ms: now + 60_000,
            stop_at_ms: now + 50_000,
            may_defer: true,
        };
        let outcome = process(
            &store,
            &index,
            &embedder,
            &crate::ports::NoCache,
            &id,
            delivery,
        )
        .await
        .expect("process");
        assert_eq!(outcome, Outcome::Cancelled);
        let stored = store.tasks.lock().expect("lock")[&id].clone();
        assert_eq!(stored.status, TaskStatus::Cancelled);
        assert_eq!((stored.result, stored.error), (None, None));
        // A late delivery finds it ended.
        let again = process(
            &store,
            &index,
            &embedder,
            &crate::ports::NoCache,
            &id,
            delivery,
        )
        .await
        .expect("process");
        assert_eq!(again, Outcome::AlreadyFinished);
    }

    /// A queue that records, at each send, whether the task was already written.
    struct WitnessQueue<'a> {
        store: &'a MemoryTaskStore,
        task_existed: Mutex<Vec<bool>>,
    }

    impl TaskQueue for WitnessQueue<'_> {
        async fn send(&self, message: &TaskMessage, _routing: &Routing) -> Result<()> {
            let exists = self
                .store
                .tasks
                .lock()
                .expect("lock")
                .contains_key(&message.task_id);
            self.task_existed.lock().expect("lock").push(exists);
            Ok(())
        }

        async fn ping(&self) -> Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn submit_writes_the_task_before_it_sends_the_message() {
        let store = MemoryTaskStore::default();
        let queue = WitnessQueue {
            store: &store,
            task_existed: Mutex::new(Vec::new()),
        };
        let task = submit(&store, &queue, "alice", request(), Utc::now(), 3600)
            .await
            .expect("submitted");
        assert_eq!(*queue.task_existed.lock().expect("lock"), vec![true]);
        let stored = store.get(&task.task_id, Utc::now()).await.expect("get");
        assert_eq!(stored.map(|t| t.status), Some(TaskStatus::Pending));
    }

    #[tokio::test]
    async fn a_failed_send_closes_the_task_and_answers_the_error() {
        let store = MemoryTaskStore::default();
        let queue = MemoryQueue {
            down: true,
            ..Default::default()
        };
        let err = submit(&store, &queue, "alice", request(), Utc::now(), 3600)
            .await
            .expect_err("queue down");
        assert_eq!(err.status(), 503);
        let tasks = store.tasks.lock().expect("lock");
        let task = tasks.values().next().expect("the task was written");
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(
            task.error.as_ref().map(|e| e.code),
            Some(ErrorCode::EnqueueFailed)
        );
    }

    async fn task_in(store: &MemoryTaskStore, status: TaskStatus) -> String {
        let id = new_task_id();
        let mut task = Task::pending(id.clone(), "alice".into(), request(), Utc::now(), 3600);
        task.status = status;
        task.attempts = u32::from(status != TaskStatus::Pending);
        store.create(&task).await.expect("create");
        id
    }

    #[tokio::test]
    async fn dead_letter_closes_pending_and_processing_tasks_only() {
        let store = MemoryTaskStore::default();
        for status in [TaskStatus::Pending, TaskStatus::Processing] {
            let id = task_in(&store, status).await;
            assert!(dead_letter(&store, &id, Utc::now()).await.expect("ok"));
            let task = store
                .get(&id, Utc::now())
                .await
                .expect("get")
                .expect("task");
            assert_eq!(task.status, TaskStatus::Failed, "from {status:?}");
            let error = task.error.expect("error");
            assert_eq!(error.code, ErrorCode::DeadLettered);
        }
        for status in [TaskStatus::Completed, TaskStatus::Failed] {
            let id = task_in(&store, status).await;
            assert!(!dead_letter(&store, &id, Utc::now()).await.expect("ok"));
            let task = store
                .get(&id, Utc::now())
                .await
                .expect("get")
                .expect("task");
            assert_eq!(task.status, status, "a finished task is left as it is");
            assert!(task.error.is_none());
        }
        assert!(!dead_letter(&store, "no-such-task", Utc::now())
            .await
            .expect("an unknown task is not an error"));
        // Expired but still stored: absent, so left as it is.
        let id = task_in(&store, TaskStatus::Pending).await;
        let later = Utc::now() + chrono::Duration::seconds(3601);
        assert!(!dead_letter(&store, &id, later).await.expect("ok"));
        let stored = store.tasks.lock().expect("lock")[&id].clone();
        assert_eq!(stored.status, TaskStatus::Pending);
    }

    mod cache {
        use super::*;
        use crate::adapters::memory::{MemoryCache, MemoryEmbedder, MemoryJobIndex};
        use crate::domain::{EmploymentType, JobRecord, ProfileRecord, EMBEDDING_DIM};
        use std::sync::atomic::Ordering;

        fn unit(i: usize) -> Vec<f32> {
            let mut v = vec![0.0; EMBEDDING_DIM];
            v[i] = 1.0;
            v
        }

        fn job(id: &str, embedding: Vec<f32>) -> JobRecord {
            JobRecord {
                id: id.into(),
                title: id.into(),
                company: "Acme".into(),
                location: "Berlin".into(),
                remote: false,
                employment_type: EmploymentType::FullTime,
                salary_min: None,
                salary_max: None,
                skills: vec![],
                description: String::new(),
                posted_at: Utc::now(),
                valid_through: None,
                embedding: Some(embedding),
            }
        }

        fn index() -> MemoryJobIndex {
            MemoryJobIndex {
                jobs: vec![
                    job("rust", MemoryEmbedder::vector("rust engineer")),
                    job("axis", unit(0)),
                ],
                profiles: vec![ProfileRecord {
                    user_id: "alice".into(),
                    skills: vec![],
                    text: None,
                    embedding: Some(unit(0)),
                    updated_at: None,
                }],
                down: false,
            }
        }

        fn text(t: &str) -> MatchRequest {
            MatchRequest {
                text: Some(t.into()),
                limit: 1,
                ..request()
            }
        }

        #[tokio::test]
        async fn a_repeat_is_served_from_the_cache_without_model_or_search() {
            let (embedder, cache) = (MemoryEmbedder::default(), MemoryCache::default());
            let first = run_match(
                &index(),
                &embedder,
                &cache,
                "bob",
                &text("rust engineer"),
                &Always,
            )
            .await
            .expect("first");
            assert!(!first.cached);
            assert_eq!(first.matches[0].job_id, "rust");
            // The search would fail now: only the cache can answer.
            let down = MemoryJobIndex {
                down: true,
                ..index()
            };
            let again = run_match(
                &down,
                &embedder,
                &cache,
                "carol",
                &text("rust engineer"),
                &Always,
            )
            .await
            .expect("from the cache, for any caller");
            assert!(again.cached);
            assert_eq!(again.computed_at, first.computed_at);
            assert_eq!(again.matches, first.matches);
            assert_eq!(embedder.calls.load(Ordering::SeqCst), 1, "embedded once");
        }

        #[tokio::test]
        async fn a_new_jobs_version_or_another_limit_is_computed_again() {
            let (embedder, cache) = (MemoryEmbedder::default(), MemoryCache::default());
            let request = text("rust engineer");
            run_match(&index(), &embedder, &cache, "bob", &request, &Always)
                .await
                .expect("first");
            *cache.jobs_version.lock().expect("lock") += 1;
            let after = run_match(&index(), &embedder, &cache, "bob", &request, &Always)
                .await
                .expect("after a write");
            assert!(!after.cached);
            // The text's vector is still valid: the model did not run again.
            assert_eq!(embedder.calls.load(Ordering::SeqCst), 1);
            let other = MatchRequest {
                limit: 2,
                ..request
            };
            let other = run_match(&index(), &embedder, &cache, "bob", &other, &Always)
                .await
                .expect("another limit");
            assert!(!other.cached);
        }

        #[tokio::test]
        async fn a_profile_result_serves_its_owner_at_its_version_only() {
            let (embedder, cache) = (MemoryEmbedder::default(), MemoryCache::default());
            cache
                .profile_versions
                .lock()
                .expect("lock")
                .insert("alice".into(), 7);
            let mine = request();
            let first = run_match(&index(), &embedder, &cache, "alice", &mine, &Always)
                .await
                .expect("first");
            assert!(!first.cached);
            let again = run_match(&index(), &embedder, &cache, "alice", &mine, &Always)
                .await
                .expect("again");
            assert!(again.cached);
            // Another caller's stored profile is another key.
            assert_ne!(
                result_key("alice", "m", &mine),
                result_key("bob", "m", &mine)
            );
            cache
                .profile_versions
                .lock()
                .expect("lock")
                .insert("alice".into(), 8);
            let updated = run_match(&index(), &embedder, &cache, "alice", &mine, &Always)
                .await
                .expect("after the profile changed");
            assert!(!updated.cached);
        }

        #[tokio::test]
        async fn a_window_result_holds_until_its_oldest_candidate_leaves_the_window() {
            let (cache, embedder, jobs) =
                (MemoryCache::default(), MemoryEmbedder::default(), index());
            let mut windowed = text("rust engineer");
            windowed.filters.posted_within_days = Some(30);
            let first = run_match(&jobs, &embedder, &cache, "bob", &windowed, &Always)
                .await
                .expect("first");
            assert!(!first.cached);
            let again = run_match(&jobs, &embedder, &cache, "bob", &windowed, &Always)
                .await
                .expect("again");
            assert!(again.cached);
            // Both jobs are candidates: the entry holds until the older is 30 days old.
            let key = result_key("bob", embedder.model_id(), &windowed).expect("a key");
            let oldest = jobs.jobs.iter().map(|j| j.posted_at).min().expect("jobs");
            let until = cache.results.lock().expect("lock")[&key].2;
            assert_eq!(until, Some(oldest + chrono::Duration::days(30)));
            // Once it has left the window, the result is computed again.
            if let Some(entry) = cache.results.lock().expect("lock").get_mut(&key) {
                entry.2 = Some(Utc::now() - chrono::Duration::seconds(1));
            }
            let later = run_match(&jobs, &embedder, &cache, "bob", &windowed, &Always)
                .await
                .expect("later");
            assert!(!later.cached);
        }

        #[tokio::test]
        async fn a_result_holds_until_its_first_candidates_valid_through() {
            let (embedder, cache) = (MemoryEmbedder::default(), MemoryCache::default());
            let soon = Utc::now() + chrono::Duration::hours(1);
            let later = Utc::now() + chrono::Duration::hours(5);
            let mut jobs = index();
            jobs.jobs[0].valid_through = Some(later);
            jobs.jobs[1].valid_through = Some(soon);
            let mut request = text("rust engineer");
            request.limit = 5;
            let first = run_match(&jobs, &embedder, &cache, "bob", &request, &Always)
                .await
                .expect("first");
            assert_eq!(first.count, 2, "both live");
            let key = result_key("bob", embedder.model_id(), &request).expect("a key");
            let until = cache.results.lock().expect("lock")[&key].2;
            assert_eq!(until, Some(soon), "the first valid_through ends the entry");
            // Past it, the posting is gone from the answer.
            jobs.jobs[1].valid_through = Some(Utc::now() - chrono::Duration::seconds(1));
            if let Some(entry) = cache.results.lock().expect("lock").get_mut(&key) {
                entry.2 = Some(Utc::now() - chrono::Duration::seconds(1));
            }
            let after = run_match(&jobs, &embedder, &cache, "bob", &request, &Always)
                .await
                .expect("after");
            assert!(!after.cached);
            assert_eq!(after.count, 1);
            assert_ne!(after.matches[0].job_id, jobs.jobs[1].id);
        }

        #[tokio::test]
        async fn a_cache_down_is_a_miss() {
            let down = MemoryCache {
                down: true,
                ..Default::default()
            };
            let embedder = MemoryEmbedder::default();
            for _ in 0..2 {
                let r = run_match(
                    &index(),
                    &embedder,
                    &down,
                    "bob",
                    &text("rust engineer"),
                    &Always,
                )
                .await
                .expect("the match runs without its cache");
                assert!(!r.cached);
            }
            assert_eq!(embedder.calls.load(Ordering::SeqCst), 2);
        }

        #[test]
        fn the_keys_hold_the_model() {
            let t = text("rust engineer");
            assert_ne!(
                result_key("bob", "model-a", &t),
                result_key("bob", "model-b", &t)
            );
            assert_ne!(
                embedding_key("model-a", "text"),
                embedding_key("model-b", "text")
            );
            assert_ne!(embedding_key("ab", "c"), embedding_key("a", "bc"));
        }
    }
}

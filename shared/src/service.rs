//! The use cases, written against the ports: submit a match task, run a match,
//! and process one queued task.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::domain::{
    candidate_count, MatchRequest, MatchResult, QuerySource, Task, TaskError, TaskMessage,
};
use crate::error::{Error, Result};
use crate::ports::{Claim, Embedder, Fence, JobIndex, Query, TaskQueue, TaskStore};

/// Milliseconds the model took for a request's text (EMF histogram).
pub const EMBED_MS: &str = "EmbedMs";
use crate::ranking::rank;

/// Creates a pending task and enqueues it; the two writes run concurrently.
pub async fn submit<S: TaskStore, Q: TaskQueue>(
    store: &S,
    queue: &Q,
    owner: &str,
    request: MatchRequest,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<Task> {
    let task = Task::pending(new_task_id(), owner.to_owned(), request, now, ttl_secs);
    let message = TaskMessage {
        task_id: task.task_id.clone(),
    };
    let (created, sent) = tokio::join!(store.create(&task), queue.send(&message));
    match (created, sent) {
        (Ok(()), Ok(())) => Ok(task),
        (Ok(()), Err(send_err)) => {
            // Not accepted: close the task so that nothing stays pending forever.
            let error = TaskError {
                code: "enqueue_failed".into(),
                message: "the task could not be queued".into(),
            };
            if let Err(e) = store.fail(&task.task_id, Fence::Pending, &error, now).await {
                tracing::error!(task_id = %task.task_id, error = %e, "could not close unqueued task");
            }
            Err(send_err)
        }
        // The message, if sent, finds no task and ends in the dead-letter queue.
        (Err(e), _) => Err(e),
    }
}

/// Task ids are UUIDv7: unique and ordered by creation time.
pub fn new_task_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Runs a match for `owner`: the query from the request (its embedding, or
/// its text through the model) or the stored profile, the nearest
/// candidates, then the ranking. `query_ms` counts the search and the
/// ranking, not the embedding.
pub async fn run_match<J: JobIndex, E: Embedder>(
    index: &J,
    embedder: &E,
    owner: &str,
    request: &MatchRequest,
) -> Result<MatchResult> {
    let embedded;
    let query = match request.source() {
        QuerySource::Embedding(embedding) => Query::Embedding(embedding),
        QuerySource::Text(text) => {
            let started = Instant::now();
            embedded = embedder
                .embed(vec![text.to_owned()])
                .await?
                .pop()
                .ok_or_else(|| Error::Internal("the model returned no vector".into()))?;
            metrics::histogram!(EMBED_MS).record(started.elapsed().as_secs_f64() * 1000.0);
            Query::Embedding(&embedded)
        }
        QuerySource::Profile => Query::Profile(owner),
    };
    let started = Instant::now();
    let neighbours = index
        .nearest(query, &request.filters, candidate_count(request.limit))
        .await?;
    let skills = request
        .skills
        .clone()
        .or(neighbours.profile_skills)
        .unwrap_or_default();
    let matches = rank(neighbours.candidates, &skills, request.limit as usize);
    Ok(MatchResult {
        count: matches.len(),
        matches,
        query_ms: (started.elapsed().as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
    })
}

/// What became of one delivery; the worker acknowledges all but `Retry`.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The match ran and its result is stored.
    Completed { query_ms: f64 },
    /// The task is closed as `failed` with this code (permanent error, or the
    /// last attempt of a transient one).
    Failed { code: &'static str },
    /// A duplicate or late delivery of a finished task: nothing changed.
    AlreadyFinished,
    /// Leave the message for redelivery.
    Retry(String),
}

impl Outcome {
    /// Whether the message is done with and may be deleted.
    pub fn is_ack(&self) -> bool {
        !matches!(self, Outcome::Retry(_))
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
/// Out of time before the match can start, a delivery is left for the next
/// one, except the last: that one claims the task and closes it as `failed`,
/// so that no task is stranded when its message moves to the DLQ.
pub async fn process<S: TaskStore, J: JobIndex, E: Embedder>(
    store: &S,
    index: &J,
    embedder: &E,
    task_id: &str,
    delivery: Delivery,
) -> Result<Outcome> {
    if delivery.time_left().is_none() && !delivery.is_last() {
        return Ok(Outcome::Retry(
            "too close to the invocation deadline to start".into(),
        ));
    }
    let task = match claim_with_patience(store, task_id, delivery.deadline_ms).await? {
        Claim::Claimed(task) => task,
        Claim::Finished(status) => {
            tracing::info!(
                status = status.as_str(),
                "task already finished; acknowledging"
            );
            return Ok(Outcome::AlreadyFinished);
        }
        Claim::Busy => {
            return Ok(Outcome::Retry(
                "task is leased by another invocation".into(),
            ))
        }
        Claim::Missing => return Ok(Outcome::Retry("no such task".into())),
    };
    let fence = Fence::Attempt(task.attempts);
    let out_of_time = || {
        Error::unavailable(
            "deadline",
            "the match could not finish before the invocation deadline",
        )
    };
    let matched = match delivery.time_left() {
        Some(left) => {
            tokio::time::timeout(left, run_match(index, embedder, &task.owner, &task.request))
                .await
                .unwrap_or_else(|_| Err(out_of_time()))
        }
        None => Err(out_of_time()),
    };
    match matched {
        Ok(result) => {
            let query_ms = result.query_ms;
            if !store.complete(task_id, fence, &result, Utc::now()).await? {
                tracing::warn!("lost the lease before completing; result dropped");
                return Ok(Outcome::Retry("lease lost".into()));
            }
            Ok(Outcome::Completed { query_ms })
        }
        Err(err) if err.is_transient() && !delivery.is_last() => {
            tracing::warn!(error = %err, attempts = task.attempts, "transient failure; will retry");
            store.release(task_id, task.attempts, Utc::now()).await?;
            Ok(Outcome::Retry(err.to_string()))
        }
        Err(err) => {
            tracing::warn!(error = %err, attempts = task.attempts, "task failed");
            let code = err.code();
            // The client sees the problem's detail; internals stay in the log.
            let error = TaskError {
                code: code.to_owned(),
                message: err.problem().detail,
            };
            store.fail(task_id, fence, &error, Utc::now()).await?;
            Ok(Outcome::Failed { code })
        }
    }
}

/// The api writes the task and sends the message concurrently, so a message can
/// arrive a moment before its task: look again briefly before giving up.
async fn claim_with_patience<S: TaskStore>(
    store: &S,
    task_id: &str,
    deadline_ms: i64,
) -> Result<Claim> {
    let mut delay_ms = 25;
    loop {
        let claim = store.claim(task_id, Utc::now(), deadline_ms).await?;
        if claim != Claim::Missing || delay_ms > 400 {
            return Ok(claim);
        }
        tokio::time::sleep(std::time::Duration::from_millis(delay_ms)).await;
        delay_ms *= 2;
    }
}

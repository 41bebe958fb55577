//! Idempotent submission (`Idempotency-Key`): the same caller, key and
//! normalised request give the same task; the same key with another request is
//! a conflict; another caller's key is another task.
//!
//! The task id is derived from the caller and the key, so a single conditional
//! write decides which of several concurrent duplicates creates the task (no
//! read-then-write race), and the key lives exactly as long as its task.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::{MatchRequest, Routing, Task, TaskMessage, TaskStatus};
use crate::error::{Error, FieldError, Result};
use crate::ports::{IdempotentTaskStore, TaskQueue, TaskReader, TaskStore};

/// `Idempotency-Key` length bounds, in characters.
pub const MAX_KEY_CHARS: usize = 255;
pub const HEADER: &str = "idempotency-key";
/// A replayed request finding its task still pending after this long sends
/// the message again, in case the first request died between write and send.
/// A duplicate message is harmless: claiming a task is a conditional write.
const RESEND_AFTER_SECS: i64 = 30;

/// Checks a key: 1..=255 visible ASCII characters.
pub fn check_key(key: &str) -> Result<()> {
    let ok = (1..=MAX_KEY_CHARS).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(Error::Validation(vec![FieldError::new(
            "Idempotency-Key",
            format!("must be 1 to {MAX_KEY_CHARS} visible ASCII characters"),
        )]))
    }
}

/// The task id of `key` for `owner`: a UUID (version 8) from SHA-256 of both,
/// length-prefixed so that no two (owner, key) pairs share an input.
pub fn task_id_for(owner: &str, key: &str) -> String {
    let mut hash = Sha256::new();
    hash.update((owner.len() as u64).to_be_bytes());
    hash.update(owner.as_bytes());
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::new_v8(bytes).to_string()
}

/// The task a submission ended with.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub task: Task,
    /// An earlier request with this key created it.
    pub replayed: bool,
}

/// What a live task already under a key means for a request with that key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Existing {
    /// Another body: 422.
    Conflict,
    /// Its client was answered 503: this request runs it again.
    NeverQueued,
    /// Pending too long: replayed, and its message sent again.
    Resend,
    /// Replayed as it is.
    Replay,
}

fn existing(existing: &Task, owner: &str, request: &MatchRequest, now: DateTime<Utc>) -> Existing {
    if existing.owner != owner || !existing.was_created_with(request) {
        return Existing::Conflict;
    }
    if existing.never_queued() {
        return Existing::NeverQueued;
    }
    let waited = now.timestamp() - existing.created_at.get().timestamp();
    if existing.status == TaskStatus::Pending && waited > RESEND_AFTER_SECS {
        Existing::Resend
    } else {
        Existing::Replay
    }
}

/// A replay that needs no write or send, read before the caller's quota is
/// taken: a request whose key names a live task of the same caller and body
/// gets that task without counting against the quota, as it asks for no
/// new work. `Ok(None)`: the request goes through the quota and `submit` (no
/// task under the key, a task never queued, or a pending one whose message
/// is due again). Another body under the key: `IdempotencyConflict`.
pub async fn replay<S: TaskReader>(
    store: &S,
    owner: &str,
    key: &str,
    request: &MatchRequest,
    now: DateTime<Utc>,
) -> Result<Option<Submitted>> {
    check_key(key)?;
    let Some(task) = store.get(&task_id_for(owner, key), now).await? else {
        return Ok(None);
    };
    match existing(&task, owner, request, now) {
        Existing::Conflict => Err(Error::IdempotencyConflict),
        Existing::Replay => Ok(Some(Submitted {
            task,
            replayed: true,
        })),
        Existing::NeverQueued | Existing::Resend => Ok(None),
    }
}

/// Creates the task for (`owner`, `key`) and enqueues it, or returns the task
/// an earlier request with the same key and body created.
pub async fn submit<S, Q>(
    store: &S,
    queue: &Q,
    owner: &str,
    key: &str,
    request: MatchRequest,
    now: DateTime<Utc>,
    ttl_secs: i64,
) -> Result<Submitted>
where
    S: TaskStore + IdempotentTaskStore,
    Q: TaskQueue,
{
    check_key(key)?;
    let task = Task::pending(
        task_id_for(owner, key),
        owner.to_owned(),
        request,
        now,
        ttl_secs,
    );
    let message = TaskMessage::new(task.task_id.clone());
    match store.create_or_get(&task, now).await? {
        None => {
            // Written first, sent second: a duplicate that loses the write
            // must never send a message for a task that does not exist.
            crate::service::enqueue(store, queue, &task.task_id, owner, now).await?;
            Ok(Submitted {
                task,
                replayed: false,
            })
        }
        Some(found) => match existing(&found, owner, &task.request, now) {
            Existing::Conflict => Err(Error::IdempotencyConflict),
            Existing::NeverQueued => {
                if store.replace_unqueued(&task).await? {
                    crate::service::enqueue(store, queue, &task.task_id, owner, now).await?;
                    return Ok(Submitted {
                        task,
                        replayed: false,
                    });
                }
                // A concurrent retry replaced it first: replay that one.
                let current = store.get(&task.task_id, now).await?.ok_or_else(|| {
                    Error::unavailable("tasks", "a retried task vanished while it was replaced")
                })?;
                Ok(Submitted {
                    task: current,
                    replayed: true,
                })
            }
            Existing::Resend => {
                if let Err(e) = queue.send(&message, &Routing::of_owner(owner)).await {
                    tracing::warn!(task_id = %found.task_id, error = %e, "re-send of a pending task failed");
                }
                Ok(Submitted {
                    task: found,
                    replayed: true,
                })
            }
            Existing::Replay => Ok(Submitted {
                task: found,
                replayed: true,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryQueue, MemoryTaskStore};
    use crate::domain::TaskError;
    use crate::error::ErrorCode;
    use crate::ports::{Fence, TaskWriter};

    fn request(limit: u32) -> MatchRequest {
        MatchRequest {
            embedding: None,
            text: None,
            skills: None,
            filters: Default::default(),
            limit,
            callback: None,
        }
    }

    #[test]
    fn keys_are_bounded_and_visible_ascii() {
        assert!(check_key("a").is_ok());
        assert!(check_key(&"k".repeat(255)).is_ok());
        for bad in ["", " ", "with space", "é", "tab\t"] {
            assert_eq!(check_key(bad).expect_err(bad).status(), 422, "{bad:?}");
        }
        assert!(check_key(&"k".repeat(256)).is_err());
    }

    #[test]
    fn task_ids_belong_to_caller_and_key() {
        let a = task_id_for("alice", "k1");
        assert_eq!(a, task_id_for("alice", "k1"));
        assert_ne!(a, task_id_for("bob", "k1"));
        assert_ne!(a, task_id_for("alice", "k2"));
        // Length prefix: ("ab", "c") and ("a", "bc") differ.
        assert_ne!(task_id_for("ab", "c"), task_id_for("a", "bc"));
        assert_eq!(
            uuid::Uuid::parse_str(&a).expect("uuid").get_version_num(),
            8
        );
    }

    #[tokio::test]
    async fn same_key_same_body_replays_and_other_body_conflicts() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let now = Utc::now();
        let first = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect("created");
        assert!(!first.replayed);
        let again = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect("replayed");
        assert!(again.replayed);
        assert_eq!(again.task.task_id, first.task.task_id);
        assert_eq!(queue.sent.lock().expect("lock").len(), 1, "sent once");
        let err = submit(&store, &queue, "alice", "k", request(6), now, 60)
            .await
            .expect_err("conflict");
        assert!(matches!(err, Error::IdempotencyConflict));
        let bob = submit(&store, &queue, "bob", "k", request(5), now, 60)
            .await
            .expect("bob's own");
        assert!(!bob.replayed);
        assert_ne!(bob.task.task_id, first.task.task_id);
    }

    #[tokio::test]
    async fn key_expires_with_its_task() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let then = Utc::now() - chrono::Duration::seconds(120);
        submit(&store, &queue, "alice", "k", request(5), then, 60)
            .await
            .expect("created");
        // The task expired: the key is free, even for another body.
        let fresh = submit(&store, &queue, "alice", "k", request(9), Utc::now(), 60)
            .await
            .expect("new task");
        assert!(!fresh.replayed);
        assert_eq!(fresh.task.request.limit, 9);
    }

    #[tokio::test]
    async fn stale_pending_replay_sends_again() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let then = Utc::now() - chrono::Duration::seconds(RESEND_AFTER_SECS + 5);
        submit(&store, &queue, "alice", "k", request(5), then, 3600)
            .await
            .expect("created");
        submit(&store, &queue, "alice", "k", request(5), Utc::now(), 3600)
            .await
            .expect("replayed");
        assert_eq!(queue.sent.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn unqueued_task_is_closed() {
        let store = MemoryTaskStore::default();
        let queue = MemoryQueue {
            down: true,
            ..Default::default()
        };
        let err = submit(&store, &queue, "alice", "k", request(5), Utc::now(), 60)
            .await
            .expect_err("queue down");
        assert_eq!(err.status(), 503);
        let tasks = store.tasks.lock().expect("lock");
        let task = &tasks[&task_id_for("alice", "k")];
        assert_eq!(task.status, TaskStatus::Failed);
        assert_eq!(
            task.error.as_ref().map(|e| e.code),
            Some(ErrorCode::EnqueueFailed)
        );
    }

    #[tokio::test]
    async fn a_retry_after_a_503_runs() {
        let store = MemoryTaskStore::default();
        let down = MemoryQueue {
            down: true,
            ..Default::default()
        };
        let now = Utc::now();
        submit(&store, &down, "alice", "k", request(5), now, 60)
            .await
            .expect_err("queue down: 503");
        // The same key with another body is still a conflict.
        let up = MemoryQueue::default();
        let err = submit(&store, &up, "alice", "k", request(6), now, 60)
            .await
            .expect_err("another body");
        assert!(matches!(err, Error::IdempotencyConflict));
        // The same key and body once the queue is back: the task, queued.
        let retry = submit(&store, &up, "alice", "k", request(5), now, 60)
            .await
            .expect("the retry is accepted");
        assert!(!retry.replayed);
        assert_eq!(retry.task.status, TaskStatus::Pending);
        assert_eq!(up.sent.lock().expect("lock").len(), 1);
        let tasks = store.tasks.lock().expect("lock");
        assert_eq!(
            tasks[&task_id_for("alice", "k")].status,
            TaskStatus::Pending
        );
    }

    #[tokio::test]
    async fn a_task_that_failed_after_it_was_accepted_is_replayed() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let now = Utc::now();
        let first = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect("created");
        let error = TaskError {
            code: ErrorCode::Internal,
            message: "boom".into(),
        };
        store
            .fail(&first.task.task_id, Fence::Pending, &error, now)
            .await
            .expect("fail");
        let again = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect("replayed");
        assert!(again.replayed);
        assert_eq!(again.task.status, TaskStatus::Failed);
    }

    #[tokio::test]
    async fn a_replay_is_read_without_a_write_only_when_it_needs_none() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let now = Utc::now();
        assert_eq!(
            replay(&store, "alice", "k", &request(5), now)
                .await
                .expect("read"),
            None,
            "no task under the key yet"
        );
        let first = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect("created");
        let again = replay(&store, "alice", "k", &request(5), now)
            .await
            .expect("read")
            .expect("a replay");
        assert!(again.replayed);
        assert_eq!(again.task, first.task);
        assert!(matches!(
            replay(&store, "alice", "k", &request(6), now).await,
            Err(Error::IdempotencyConflict)
        ));
        assert_eq!(
            replay(&store, "bob", "k", &request(5), now)
                .await
                .expect("read"),
            None
        );
        // Due for a re-send: it goes through `submit`, which sends.
        let later = now + chrono::Duration::seconds(RESEND_AFTER_SECS + 1);
        assert_eq!(
            replay(&store, "alice", "k", &request(5), later)
                .await
                .expect("read"),
            None
        );
        assert!(replay(&store, "alice", "", &request(5), now).await.is_err());
        assert_eq!(
            queue.sent.lock().expect("lock").len(),
            1,
            "a read sends nothing"
        );
    }

    #[tokio::test]
    async fn a_task_never_queued_is_no_free_replay() {
        let store = MemoryTaskStore::default();
        let down = MemoryQueue {
            down: true,
            ..Default::default()
        };
        let now = Utc::now();
        submit(&store, &down, "alice", "k", request(5), now, 60)
            .await
            .expect_err("queue down: 503");
        assert_eq!(
            replay(&store, "alice", "k", &request(5), now)
                .await
                .expect("read"),
            None
        );
    }

    fn text_request(text: &str) -> MatchRequest {
        MatchRequest {
            text: Some(text.into()),
            ..request(5)
        }
    }

    /// An ended task keeps its text's digest only: a replay of the same
    /// body is still the same request, another text still a conflict.
    #[tokio::test]
    async fn a_replay_matches_an_ended_task_by_its_text_digest() {
        let (store, queue) = (MemoryTaskStore::default(), MemoryQueue::default());
        let now = Utc::now();
        let first = submit(
            &store,
            &queue,
            "alice",
            "k",
            text_request("ward nurse"),
            now,
            60,
        )
        .await
        .expect("created");
        let error = TaskError {
            code: ErrorCode::Internal,
            message: "boom".into(),
        };
        store
            .fail(&first.task.task_id, Fence::Pending, &error, now)
            .await
            .expect("fail");
        let stored = store.tasks.lock().expect("lock")[&first.task.task_id].clone();
        assert_eq!(stored.request.text, None, "the text is dropped");
        assert_eq!(stored.text_chars, Some(10));
        // The read before the quota, and the submission itself.
        let read = replay(&store, "alice", "k", &text_request("ward nurse"), now)
            .await
            .expect("read");
        assert!(read.is_some_and(|r| r.replayed));
        let again = submit(
            &store,
            &queue,
            "alice",
            "k",
            text_request("ward nurse"),
            now,
            60,
        )
        .await
        .expect("replayed");
        assert!(again.replayed);
        for other in ["ward Nurse", "ward nurses"] {
            let err = replay(&store, "alice", "k", &text_request(other), now)
                .await
                .expect_err(other);
            assert!(matches!(err, Error::IdempotencyConflict), "{other}");
            let err = submit(&store, &queue, "alice", "k", text_request(other), now, 60)
                .await
                .expect_err(other);
            assert!(matches!(err, Error::IdempotencyConflict), "{other}");
        }
        let err = submit(&store, &queue, "alice", "k", request(5), now, 60)
            .await
            .expect_err("no text");
        assert!(matches!(err, Error::IdempotencyConflict));
    }

    /// A task closed because it could not be queued lost its text; the
    /// retry that writes it again brings the text back for the worker.
    #[tokio::test]
    async fn a_retry_after_a_503_brings_the_text_back() {
        let store = MemoryTaskStore::default();
        let down = MemoryQueue {
            down: true,
            ..Default::default()
        };
        let now = Utc::now();
        submit(
            &store,
            &down,
            "alice",
            "k",
            text_request("ward nurse"),
            now,
            60,
        )
        .await
        .expect_err("queue down: 503");
        let id = task_id_for("alice", "k");
        assert_eq!(store.tasks.lock().expect("lock")[&id].request.text, None);
        let up = MemoryQueue::default();
        let retry = submit(
            &store,
            &up,
            "alice",
            "k",
            text_request("ward nurse"),
            now,
            60,
        )
        .await
        .expect("the retry is accepted");
        assert!(!retry.replayed);
        let stored = store.tasks.lock().expect("lock")[&id].clone();
        assert_eq!(stored.status, TaskStatus::Pending);
        assert_eq!(stored.request.text.as_deref(), Some("ward nurse"));
    }
}

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
use crate::ports::{IdempotentTaskStore, TaskQueue, TaskStore};

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
    let message = TaskMessage {
        task_id: task.task_id.clone(),
    };
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
        Some(existing) if existing.owner == owner && existing.request == task.request => {
            // Its client was answered 503: this retry is the request again.
            if existing.never_queued() {
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
                return Ok(Submitted {
                    task: current,
                    replayed: true,
                });
            }
            let waited = now.timestamp() - existing.created_at.get().timestamp();
            if existing.status == TaskStatus::Pending && waited > RESEND_AFTER_SECS {
                if let Err(e) = queue.send(&message, &Routing::of_owner(owner)).await {
                    tracing::warn!(task_id = %existing.task_id, error = %e, "re-send of a pending task failed");
                }
            }
            Ok(Submitted {
                task: existing,
                replayed: true,
            })
        }
        Some(_) => Err(Error::IdempotencyConflict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::{MemoryQueue, MemoryTaskStore};
    use crate::domain::TaskError;
    use crate::ports::{Fence, TaskWriter};

    fn request(limit: u32) -> MatchRequest {
        MatchRequest {
            embedding: None,
            text: None,
            skills: None,
            filters: Default::default(),
            limit,
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
            task.error.as_ref().map(|e| e.code.as_str()),
            Some("enqueue_failed")
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
            code: "internal".into(),
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
}

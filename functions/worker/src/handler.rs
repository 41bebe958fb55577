//! The worker function: takes an SQS batch of task messages, processes them
//! concurrently (bounded by the pool size), and reports the messages to retry
//! as partial batch failures; the rest are deleted by the event source.
//! A task out of time is handed back as a new message (a deferral) rather
//! than retried, so that waiting for its turn costs none of its receives.
//! Emits the outcome metrics (`shared::telemetry`'s, CloudWatch EMF).

use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use chrono::Utc;
use futures::stream::{self, StreamExt};
use tracing::Instrument;

use shared::adapters::sqs::{DEFERRALS_ATTRIBUTE, PROGRESS_ATTRIBUTE};
use shared::cache_mac::CacheMac;
use shared::domain::{caller_group, EmbedProgress, Routing, TaskMessage};
use shared::ports::{Embedder, JobIndex, MatchCache, NoCache, TaskQueue, TaskStore};
use shared::service::{self, Delivery, Outcome, Retry};
use shared::telemetry::{Counter, Histogram};

/// The invocation deadline in epoch ms. A runtime that sends none (`cargo
/// lambda watch` sends 0) gets `now + fallback`, so that leases still end.
pub fn deadline_or(context_deadline_ms: u64, fallback: Duration) -> i64 {
    let now = Utc::now().timestamp_millis();
    match i64::try_from(context_deadline_ms) {
        Ok(d) if d > now => d,
        _ => now + i64::try_from(fallback.as_millis()).unwrap_or(i64::MAX / 2),
    }
}

pub struct App<S, J, E, Q, C = NoCache> {
    pub store: S,
    pub index: J,
    /// The match queue, where a task out of time is handed back.
    pub queue: Q,
    /// The model, for requests that carry `text`.
    pub embedder: E,
    /// Results and text vectors (DESIGN.md "Cache").
    pub cache: C,
    /// Seals the embedding progress a handed-back task carries, and opens
    /// only what it sealed (the cache's key).
    pub progress_mac: CacheMac,
    pub max_receive_count: u32,
    /// A task is handed back for lack of time at most this often; then it
    /// is retried as any transient failure (burning receives).
    pub max_deferrals: u32,
    /// How many messages run at once: the pool's size.
    pub concurrency: usize,
    /// No message starts, and none runs on, closer than this to the deadline,
    /// so that the batch response always reaches the event source in time.
    pub deadline_margin: Duration,
}

impl<S: TaskStore, J: JobIndex, E: Embedder, Q: TaskQueue, C: MatchCache> App<S, J, E, Q, C> {
    pub async fn handle(&self, event: SqsEvent, deadline_ms: i64) -> SqsBatchResponse {
        tracing::info!(
            messages = event.records.len(),
            time_left_ms = deadline_ms - Utc::now().timestamp_millis(),
            "batch received"
        );
        let failures: Vec<String> = stream::iter(event.records)
            .map(|record| self.handle_record(record, deadline_ms))
            .buffer_unordered(self.concurrency.max(1))
            .filter_map(|failed| async move { failed })
            .collect()
            .await;
        let mut response = SqsBatchResponse::default();
        for id in failures {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Returns the message id when the message must be retried.
    async fn handle_record(&self, record: SqsMessage, deadline_ms: i64) -> Option<String> {
        let message_id = record.message_id.clone().unwrap_or_default();
        let Some(message) = record
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str::<TaskMessage>(b).ok())
        else {
            // Left for the redrive policy to move to the dead-letter queue.
            tracing::error!(message_id, "unparseable message");
            Counter::MessagesPoisoned.increment();
            return Some(message_id);
        };
        let span = tracing::info_span!("task", task_id = %message.task_id, message_id);
        self.process(record, message, deadline_ms)
            .instrument(span)
            .await
            .then_some(message_id)
    }

    /// Returns true when the message must be retried.
    async fn process(&self, record: SqsMessage, message: TaskMessage, deadline_ms: i64) -> bool {
        let attribute = |name: &str| {
            record
                .attributes
                .get(name)
                .and_then(|v| v.parse::<i64>().ok())
        };
        if let Some(sent_ms) = attribute("SentTimestamp") {
            let wait = (Utc::now().timestamp_millis() - sent_ms).max(0);
            Histogram::QueueWaitMs.record(wait as f64);
        }
        let deferrals = record
            .message_attributes
            .get(DEFERRALS_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        // Progress that does not parse (or, in the embedder, is of another
        // text) is ignored: the text starts again, nothing worse.
        let progress: Option<EmbedProgress> = record
            .message_attributes
            .get(PROGRESS_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .and_then(|v| serde_json::from_str(v).ok())
            .and_then(|p| self.progress_mac.open_progress(&message.task_id, p));
        let delivery = Delivery {
            receive_count: attribute("ApproximateReceiveCount")
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(1),
            max_receive_count: self.max_receive_count,
            deadline_ms,
            stop_at_ms: deadline_ms - i64::try_from(self.deadline_margin.as_millis()).unwrap_or(0),
            may_defer: deferrals < self.max_deferrals,
        };
        let started = Instant::now();
        // The store calls themselves get until the deadline; the lease ends
        // there, so a redelivery can take the task.
        let hard_stop = Duration::from_millis(
            u64::try_from(deadline_ms - Utc::now().timestamp_millis()).unwrap_or(0),
        );
        let run = service::process(
            &self.store,
            &self.index,
            &self.embedder,
            &self.cache,
            &message.task_id,
            delivery,
        );
        // The embedding goes on from the progress the message carries, and
        // leaves its own if it stops (shared::progress).
        let before = progress.as_ref().map_or(0, |p| p.windows);
        let run = shared::progress::tracked(progress, run);
        let mut deferred = deferrals;
        let outcome = match tokio::time::timeout(hard_stop, run).await {
            Ok((Ok(Outcome::OutOfTime { owner }), progress)) => {
                // The event source's group, else the caller's, else none
                // (then SQS treats the message as a group of its own).
                let group = record
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .or_else(|| owner.as_deref().map(caller_group));
                // Only a delivery that moved the task no further counts
                // against its deferrals: the windows of a text are few
                // (MAX_TEXT_WORD_PIECES), so handing back with progress ends.
                if progress.as_ref().map_or(0, |p| p.windows) <= before {
                    deferred += 1;
                }
                let routing = Routing {
                    group,
                    deferrals: deferred,
                    progress: progress
                        .map(|p| self.progress_mac.seal_progress(&message.task_id, p)),
                };
                self.defer(&message, routing).await
            }
            Ok((Ok(outcome), _)) => outcome,
            Ok((Err(err), _)) => Outcome::Retry(Retry::Transient(err.to_string())),
            Err(_) => Outcome::Retry(Retry::Stopped),
        };
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        Histogram::ProcessingMs.record(elapsed_ms);
        match &outcome {
            Outcome::Completed { query_ms } => {
                Histogram::QueryMs.record(*query_ms);
                Counter::TasksCompleted.increment();
                tracing::info!(elapsed_ms, query_ms, "task completed");
            }
            Outcome::Failed { code } => {
                Counter::TasksFailed.increment();
                tracing::warn!(%code, receive_count = delivery.receive_count, "task failed");
            }
            Outcome::AlreadyFinished => Counter::DuplicateDeliveries.increment(),
            Outcome::Cancelled => {
                Counter::CancelledWorkStopped.increment();
                tracing::info!("task cancelled by its owner while it ran; nothing written");
            }
            Outcome::OutOfTime { .. } => {
                Counter::TasksDeferred.increment();
                tracing::info!(deferrals = deferred, "task handed back for lack of time");
            }
            Outcome::Retry(reason) => {
                if reason == &Retry::NotStarted {
                    Counter::MessagesNotStarted.increment();
                }
                Counter::TasksRetried.increment();
                tracing::warn!(
                    %reason,
                    receive_count = delivery.receive_count,
                    "message will be retried"
                );
            }
        }
        matches!(outcome, Outcome::Retry(_))
    }

    /// Hands a task that ran out of time back to the queue as a new message
    /// (its receive count starts again): `OutOfTime`, acknowledged. If the
    /// send fails, the delivery is retried instead.
    async fn defer(&self, message: &TaskMessage, routing: Routing) -> Outcome {
        match self.queue.send(message, &routing).await {
            Ok(()) => Outcome::OutOfTime { owner: None },
            Err(e) => {
                tracing::warn!(error = %e, "cannot hand the task back; it will be retried");
                Outcome::Retry(Retry::Transient(e.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use shared::adapters::memory::{MemoryEmbedder, MemoryJobIndex, MemoryQueue, MemoryTaskStore};
    use shared::domain::{
        EmploymentType, JobRecord, MatchRequest, ProfileRecord, Task, TaskStatus, EMBEDDING_DIM,
    };
    use shared::error::ErrorCode;
    use std::collections::HashMap;

    fn unit(i: usize) -> Vec<f32> {
        let mut v = vec![0.0; EMBEDDING_DIM];
        v[i] = 1.0;
        v
    }

    fn job(id: &str, axis: usize, skills: &[&str]) -> JobRecord {
        JobRecord {
            id: id.into(),
            title: format!("Job {id}"),
            company: "Acme".into(),
            location: "Berlin".into(),
            remote: false,
            employment_type: EmploymentType::FullTime,
            salary_min: Some(50_000),
            salary_max: None,
            skills: skills.iter().map(|s| s.to_string()).collect(),
            description: String::new(),
            posted_at: Utc::now(),
            valid_through: None,
            embedding: Some(unit(axis)),
        }
    }

    type TestApp = App<MemoryTaskStore, MemoryJobIndex, MemoryEmbedder, MemoryQueue>;

    fn app(down: bool) -> TestApp {
        App {
            store: MemoryTaskStore::default(),
            queue: MemoryQueue::default(),
            index: MemoryJobIndex {
                jobs: vec![job("near", 0, &["rust"]), job("far", 1, &[])],
                profiles: vec![ProfileRecord {
                    user_id: "alice".into(),
                    skills: vec!["rust".into()],
                    text: None,
                    embedding: Some(unit(0)),
                    updated_at: None,
                }],
                down,
            },
            embedder: MemoryEmbedder::default(),
            cache: NoCache,
            progress_mac: test_mac(),
            max_receive_count: 3,
            max_deferrals: MAX_DEFERRALS,
            concurrency: 4,
            deadline_margin: Duration::from_millis(500),
        }
    }

    const MAX_DEFERRALS: u32 = 5;

    fn add_task(app: &TestApp, id: &str, owner: &str) {
        let request = MatchRequest {
            embedding: None,
            text: None,
            skills: None,
            filters: Default::default(),
            limit: 2,
            callback: None,
        };
        let task = Task::pending(id.into(), owner.into(), request, Utc::now(), 3600);
        app.store
            .tasks
            .lock()
            .expect("lock")
            .insert(id.into(), task);
    }

    fn message(id: &str, body: &str, receive_count: u32) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = Some(id.into());
        m.body = Some(body.into());
        m.attributes = HashMap::from([(
            "ApproximateReceiveCount".to_string(),
            receive_count.to_string(),
        )]);
        m
    }

    fn event(messages: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = messages;
        e
    }

    fn deadline() -> i64 {
        Utc::now().timestamp_millis() + 30_000
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<&str> {
        r.batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect()
    }

    /// A task whose request carries `text`: the worker embeds it (once) and
    /// ranks by that vector; a model failure closes the task.
    #[tokio::test]
    async fn text_tasks_are_embedded_by_the_worker() {
        for model_down in [false, true] {
            let mut app = app(false);
            app.embedder.down = model_down;
            let mut text_job = job("text-twin", 0, &[]);
            text_job.embedding = Some(MemoryEmbedder::vector("ward nurse"));
            app.index.jobs.push(text_job);
            add_task(&app, "t1", "alice");
            app.store
                .tasks
                .lock()
                .expect("lock")
                .get_mut("t1")
                .expect("task")
                .request
                .text = Some("Ward nurse".into());
            let resp = app
                .handle(
                    event(vec![message("m1", r#"{"task_id":"t1"}"#, 3)]),
                    deadline(),
                )
                .await;
            assert!(failed_ids(&resp).is_empty());
            let calls = app
                .embedder
                .calls
                .load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(calls, 1);
            let task = app.store.tasks.lock().expect("lock")["t1"].clone();
            if model_down {
                assert_eq!(task.status, TaskStatus::Failed);
                assert_eq!(task.error.expect("error").code, ErrorCode::Internal);
            } else {
                assert_eq!(task.status, TaskStatus::Completed);
                let result = task.result.expect("result");
                // Not alice's profile (axis 0, "near"): the text's own vector.
                assert_eq!(result.matches[0].job_id, "text-twin");
                assert!((result.matches[0].similarity - 1.0).abs() < 1e-6);
            }
        }
    }

    #[tokio::test]
    async fn completes_tasks_and_reports_only_bad_messages() {
        let app = app(false);
        add_task(&app, "t1", "alice");
        add_task(&app, "t2", "nobody");
        let resp = app
            .handle(
                event(vec![
                    message("m1", r#"{"task_id":"t1"}"#, 1),
                    message("m2", "not json", 1),
                    message("m3", r#"{"task_id":"t2"}"#, 1),
                ]),
                deadline(),
            )
            .await;
        assert_eq!(failed_ids(&resp), ["m2"]);
        let tasks = app.store.tasks.lock().expect("lock");
        let t1 = &tasks["t1"];
        assert_eq!(t1.status, TaskStatus::Completed);
        assert_eq!(t1.attempts, 1);
        let result = t1.result.as_ref().expect("result");
        assert_eq!(result.matches[0].job_id, "near");
        assert_eq!(result.matches[0].matched_skills, ["rust"]);
        assert!((result.matches[0].score - 1.0).abs() < 1e-9);
        // No profile is permanent: failed at once, acknowledged.
        let t2 = &tasks["t2"];
        assert_eq!(t2.status, TaskStatus::Failed);
        assert_eq!(
            t2.error.as_ref().expect("error").code,
            ErrorCode::ProfileNotFound
        );
    }

    #[tokio::test]
    async fn duplicate_delivery_of_finished_task_changes_nothing() {
        let app = app(false);
        add_task(&app, "t1", "alice");
        let body = r#"{"task_id":"t1"}"#;
        app.handle(event(vec![message("m1", body, 1)]), deadline())
            .await;
        let before = app.store.tasks.lock().expect("lock")["t1"].clone();
        let resp = app
            .handle(event(vec![message("m1", body, 2)]), deadline())
            .await;
        assert!(resp.batch_item_failures.is_empty());
        assert_eq!(app.store.tasks.lock().expect("lock")["t1"], before);
    }

    #[tokio::test]
    async fn transient_failure_retries_then_fails_on_last_attempt() {
        let app = app(true);
        add_task(&app, "t1", "alice");
        let body = r#"{"task_id":"t1"}"#;
        let resp = app
            .handle(event(vec![message("m1", body, 1)]), deadline())
            .await;
        assert_eq!(failed_ids(&resp), ["m1"]);
        assert_eq!(
            app.store.tasks.lock().expect("lock")["t1"].status,
            TaskStatus::Processing
        );
        // The released lease lets the redelivery take the task at once.
        let resp = app
            .handle(event(vec![message("m1", body, 3)]), deadline())
            .await;
        assert!(resp.batch_item_failures.is_empty());
        let tasks = app.store.tasks.lock().expect("lock");
        assert_eq!(tasks["t1"].status, TaskStatus::Failed);
        assert_eq!(tasks["t1"].attempts, 2);
        assert_eq!(
            tasks["t1"].error.as_ref().expect("error").code,
            ErrorCode::DependencyUnavailable
        );
    }

    #[tokio::test]
    async fn unknown_task_is_retried_for_the_dead_letter_queue() {
        let app = app(false);
        let resp = app
            .handle(
                event(vec![message("m1", r#"{"task_id":"ghost"}"#, 1)]),
                deadline(),
            )
            .await;
        assert_eq!(failed_ids(&resp), ["m1"]);
    }

    /// A message with `deferrals` in its attributes, as a handed-back task's.
    fn test_mac() -> CacheMac {
        CacheMac::new(
            &shared::config::Secret::new("k".repeat(32)),
            "CACHE_MAC_KEY",
        )
        .expect("key")
    }

    /// `m` carrying `progress` as its `progress` attribute, as a hand-back does.
    fn with_progress(m: &mut SqsMessage, progress: &EmbedProgress) {
        let mut value = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
        value.string_value = Some(serde_json::to_string(progress).expect("json"));
        value.data_type = Some("String".into());
        m.message_attributes
            .insert(PROGRESS_ATTRIBUTE.to_string(), value);
    }

    fn deferred_message(id: &str, body: &str, receive_count: u32, deferrals: u32) -> SqsMessage {
        let mut m = message(id, body, receive_count);
        let mut count = aws_lambda_events::event::sqs::SqsMessageAttribute::default();
        count.string_value = Some(deferrals.to_string());
        count.data_type = Some("Number".into());
        m.message_attributes = HashMap::from([(DEFERRALS_ATTRIBUTE.to_string(), count)]);
        m
    }

    #[tokio::test]
    async fn a_batch_out_of_time_is_handed_back_untouched_without_burning_receives() {
        let app = app(false);
        add_task(&app, "t1", "alice");
        add_task(&app, "t2", "alice");
        // 100 ms left, margin 500 ms: nothing starts; both are sent again as
        // new messages (receive counts start over) and acknowledged, even
        // the one on its last receive.
        let near = Utc::now().timestamp_millis() + 100;
        let mut m2 = deferred_message("m2", r#"{"task_id":"t2"}"#, 3, 2);
        m2.attributes
            .insert("MessageGroupId".into(), "the-event-group".into());
        let resp = app
            .handle(
                event(vec![message("m1", r#"{"task_id":"t1"}"#, 1), m2]),
                near,
            )
            .await;
        assert!(failed_ids(&resp).is_empty(), "{:?}", failed_ids(&resp));
        let tasks = app.store.tasks.lock().expect("lock");
        for id in ["t1", "t2"] {
            assert_eq!(tasks[id].status, TaskStatus::Pending);
            assert_eq!(tasks[id].attempts, 0);
        }
        let sent = app.queue.sent.lock().expect("lock").clone();
        let routing = app.queue.routing.lock().expect("lock").clone();
        let mut handed_back: Vec<(String, Routing)> =
            sent.into_iter().map(|m| m.task_id).zip(routing).collect();
        handed_back.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            handed_back,
            [
                // Not claimed, so no owner known: a group of its own.
                (
                    "t1".to_string(),
                    Routing {
                        group: None,
                        deferrals: 1,
                        progress: None,
                    }
                ),
                (
                    "t2".to_string(),
                    Routing {
                        group: Some("the-event-group".into()),
                        deferrals: 3,
                        progress: None,
                    }
                ),
            ]
        );
    }

    #[test]
    fn a_missing_deadline_falls_back_to_the_configured_timeout() {
        let now = Utc::now().timestamp_millis();
        let fallback = Duration::from_secs(8);
        let d = deadline_or(0, fallback);
        assert!((now + 8_000..now + 9_000).contains(&d), "{d} vs {now}");
        let real = u64::try_from(now + 20_000).expect("positive");
        assert_eq!(deadline_or(real, fallback), now + 20_000);
    }

    #[tokio::test]
    async fn a_last_delivery_out_of_time_and_of_deferrals_closes_the_task() {
        let app = app(false);
        add_task(&app, "t1", "alice");
        let near = Utc::now().timestamp_millis() + 100;
        let m1 = deferred_message("m1", r#"{"task_id":"t1"}"#, 3, MAX_DEFERRALS);
        let resp = app.handle(event(vec![m1]), near).await;
        // Acknowledged: the task is closed instead of being stranded by the DLQ.
        assert!(resp.batch_item_failures.is_empty());
        assert!(app.queue.sent.lock().expect("lock").is_empty());
        let tasks = app.store.tasks.lock().expect("lock");
        assert_eq!(tasks["t1"].status, TaskStatus::Failed);
        assert_eq!(
            tasks["t1"].error.as_ref().expect("error").code,
            ErrorCode::DependencyUnavailable
        );
    }

    #[tokio::test]
    async fn out_of_deferrals_a_delivery_out_of_time_is_retried() {
        let app = app(false);
        add_task(&app, "t1", "alice");
        let near = Utc::now().timestamp_millis() + 100;
        let m1 = deferred_message("m1", r#"{"task_id":"t1"}"#, 1, MAX_DEFERRALS);
        let resp = app.handle(event(vec![m1]), near).await;
        assert_eq!(failed_ids(&resp), ["m1"]);
        assert!(app.queue.sent.lock().expect("lock").is_empty());
    }

    #[tokio::test]
    async fn a_task_that_cannot_be_handed_back_is_retried() {
        let mut app = app(false);
        app.queue.down = true;
        add_task(&app, "t1", "alice");
        let near = Utc::now().timestamp_millis() + 100;
        let resp = app
            .handle(event(vec![message("m1", r#"{"task_id":"t1"}"#, 1)]), near)
            .await;
        assert_eq!(failed_ids(&resp), ["m1"]);
    }

    /// The model, slowed down: every call takes `delay`.
    struct SlowEmbedder {
        inner: MemoryEmbedder,
        delay: Duration,
    }

    impl Embedder for SlowEmbedder {
        fn model_id(&self) -> &str {
            self.inner.model_id()
        }

        async fn embed(&self, texts: Vec<String>) -> shared::error::Result<Vec<Vec<f32>>> {
            tokio::time::sleep(self.delay).await;
            self.inner.embed(texts).await
        }
    }

    /// Runs a batch of `size` one-second text tasks with 1.6 s left (margin
    /// 0.2 s) on a pool of 4; returns the ids left for retry, the tasks
    /// still unfinished and those handed back.
    async fn one_second_tasks(size: usize) -> (Vec<String>, usize, usize) {
        let base = app(false);
        let app = App {
            store: base.store,
            index: base.index,
            queue: MemoryQueue::default(),
            embedder: SlowEmbedder {
                inner: MemoryEmbedder::default(),
                delay: Duration::from_secs(1),
            },
            cache: NoCache,
            progress_mac: test_mac(),
            max_receive_count: 3,
            max_deferrals: MAX_DEFERRALS,
            concurrency: 4,
            deadline_margin: Duration::from_millis(200),
        };
        let mut messages = Vec::new();
        for i in 0..size {
            let id = format!("t{i}");
            let request = MatchRequest {
                embedding: None,
                text: Some("rust engineer".into()),
                skills: None,
                filters: Default::default(),
                limit: 2,
                callback: None,
            };
            let task = Task::pending(id.clone(), "alice".into(), request, Utc::now(), 3600);
            app.store
                .tasks
                .lock()
                .expect("lock")
                .insert(id.clone(), task);
            messages.push(message(
                &format!("m{i}"),
                &format!(r#"{{"task_id":"{id}"}}"#),
                1,
            ));
        }
        let deadline = Utc::now().timestamp_millis() + 1_600;
        let resp = app.handle(event(messages), deadline).await;
        let left = app
            .store
            .tasks
            .lock()
            .expect("lock")
            .values()
            .filter(|t| t.status != TaskStatus::Completed)
            .count();
        let handed_back = app.queue.sent.lock().expect("lock").len();
        (
            failed_ids(&resp).into_iter().map(str::to_owned).collect(),
            left,
            handed_back,
        )
    }

    /// The model itself (the test hook is a short deadline): a task whose
    /// deadline passes mid-embedding stops between windows, is released and
    /// handed back, and nothing of it runs on once the batch is answered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_task_whose_deadline_passes_mid_embedding_stops_and_is_handed_back() {
        let model = embed::MiniLm::load(&embed::default_dir())
            .unwrap_or_else(|e| panic!("{e} (infra/model/fetch.sh puts the model in .model/)"));
        let embedder = embed::ModelEmbedder::new(model, 2).with_max_word_pieces(2_048);
        let base = app(false);
        let app = App {
            store: base.store,
            index: base.index,
            queue: MemoryQueue::default(),
            embedder: embedder.clone(),
            cache: NoCache,
            progress_mac: test_mac(),
            max_receive_count: 3,
            max_deferrals: MAX_DEFERRALS,
            concurrency: 4,
            deadline_margin: Duration::from_millis(1_000),
        };
        // 8 windows of the bound's 2,048 word pieces ("word" is one).
        let request = MatchRequest {
            embedding: None,
            text: Some(vec!["word"; 2_000].join(" ")),
            skills: None,
            filters: Default::default(),
            limit: 2,
            callback: None,
        };
        let task = Task::pending("t1".into(), "alice".into(), request, Utc::now(), 3600);
        app.store
            .tasks
            .lock()
            .expect("lock")
            .insert("t1".into(), task);
        // 1.3 s left, of which 1 s margin: the text starts alone (so it is
        // admitted) and is stopped after a window or two.
        let deadline = Utc::now().timestamp_millis() + 1_300;
        let resp = app
            .handle(
                event(vec![message("m1", r#"{"task_id":"t1"}"#, 3)]),
                deadline,
            )
            .await;
        assert!(embedder.idle(), "the embedding ran on after the answer");
        assert!(
            embedder.windows_run() < 8,
            "{} windows",
            embedder.windows_run()
        );
        assert!(resp.batch_item_failures.is_empty(), "acknowledged");
        let task = app.store.tasks.lock().expect("lock")["t1"].clone();
        assert_eq!(task.status, TaskStatus::Processing, "claimed once");
        assert_eq!(task.attempts, 1);
        let sent = app.queue.sent.lock().expect("lock").clone();
        assert_eq!(sent.len(), 1, "handed back");
        assert_eq!(sent[0].task_id, "t1");
        let routing = app.queue.routing.lock().expect("lock")[0].clone();
        assert_eq!(routing.group, Some(caller_group("alice")));
        // The windows it ran travel with it, and a delivery that moved the
        // task forward does not count against its deferrals.
        let windows = |r: &Routing| r.progress.as_ref().map_or(0, |p| p.windows);
        let mut done = windows(&routing);
        assert_eq!(done as usize, embedder.windows_run(), "what ran is kept");
        assert_eq!(routing.deferrals, u32::from(done == 0));

        // Handed back until done: each delivery goes on where the last stopped.
        for round in 0.. {
            assert!(round < 20, "never completed");
            let (last, routing) = {
                let sent = app.queue.sent.lock().expect("lock");
                let routing = app.queue.routing.lock().expect("lock");
                (
                    sent[sent.len() - 1].clone(),
                    routing[routing.len() - 1].clone(),
                )
            };
            let body = serde_json::to_string(&last).expect("json");
            let mut delivery = deferred_message("m", &body, 1, routing.deferrals);
            if let Some(progress) = &routing.progress {
                with_progress(&mut delivery, progress);
            }
            let deadline = Utc::now().timestamp_millis() + 2_500;
            let resp = app.handle(event(vec![delivery]), deadline).await;
            assert!(resp.batch_item_failures.is_empty());
            let task = app.store.tasks.lock().expect("lock")["t1"].clone();
            if task.status == TaskStatus::Completed {
                break;
            }
            let next = app
                .queue
                .routing
                .lock()
                .expect("lock")
                .last()
                .cloned()
                .expect("sent");
            assert!(windows(&next) >= done, "progress went back");
            done = windows(&next);
        }
        let ran = embedder.windows_run();
        assert_eq!(ran, 8, "each of the 8 windows ran once: {ran}");

        // A progress the worker did not seal for this task (forged, or
        // another task's) is ignored: the text starts again.
        let text = vec!["word"; 2_000].join(" ");
        let forged = EmbedProgress::new(embedder.model_id(), &text, 7, 1_778, &[9.0; 384]);
        let other_task = test_mac().seal_progress("t1", forged.clone());
        for (id, progress) in [("t2", forged), ("t3", other_task)] {
            let request = MatchRequest {
                embedding: None,
                text: Some(text.clone()),
                skills: None,
                filters: Default::default(),
                limit: 2,
                callback: None,
            };
            let task = Task::pending(id.into(), "alice".into(), request, Utc::now(), 3600);
            app.store
                .tasks
                .lock()
                .expect("lock")
                .insert(id.into(), task);
            let mut delivery = deferred_message(id, &format!(r#"{{"task_id":"{id}"}}"#), 1, 0);
            with_progress(&mut delivery, &progress);
            let before = embedder.windows_run();
            let deadline = Utc::now().timestamp_millis() + 60_000;
            let resp = app.handle(event(vec![delivery]), deadline).await;
            assert!(resp.batch_item_failures.is_empty());
            assert_eq!(
                app.store.tasks.lock().expect("lock")[id].status,
                TaskStatus::Completed
            );
            assert_eq!(
                embedder.windows_run() - before,
                8,
                "{id}: all 8 windows ran"
            );
        }
    }

    /// Why the event source's BatchSize equals the pool (template.yaml, the
    /// local poller): then every message of a batch starts at once, and none
    /// waits for a slot until the deadline has eaten its time. A batch twice
    /// the pool runs in two waves, and the second cannot finish in time: those
    /// tasks are handed back, a queue round trip each (no receive is burnt).
    #[tokio::test]
    async fn a_batch_the_size_of_the_pool_runs_in_one_wave() {
        let (retried, unfinished, handed_back) = one_second_tasks(4).await;
        assert!(retried.is_empty(), "retried: {retried:?}");
        assert_eq!((unfinished, handed_back), (0, 0));

        let (retried, unfinished, handed_back) = one_second_tasks(8).await;
        assert!(retried.is_empty(), "retried: {retried:?}");
        assert_eq!((unfinished, handed_back), (4, 4), "the second wave");
    }
}

//! Fault tests of the dead-letter consumer on the local stack (the DLQ
//! poller invoking the `deadletter` function): a task whose worker dies on
//! every delivery ends `failed` with `dead_lettered` while its batch-mates
//! complete, and a message put straight into the DLQ closes its pending
//! task but leaves a finished one as it is.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use jobmatch_e2e::{env, kill_workers, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::{MatchRequest, Task, TaskStatus};
use shared::error::ErrorCode;
use shared::ports::{Fence, TaskWriter};
use sqlx::{Connection, PgConnection};

/// Polls the task until `done` holds, or panics after `limit`.
async fn wait_for(stack: &Stack, id: &str, limit: Duration, done: impl Fn(&Task) -> bool) -> Task {
    let started = Instant::now();
    loop {
        let task = stack.task(id).await;
        if done(&task) {
            return task;
        }
        assert!(
            started.elapsed() < limit,
            "task {id} after {limit:?}: {} attempts={} error={:?}",
            task.status.as_str(),
            task.attempts,
            task.error
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Invokes the worker with an empty batch until it answers (the runtime may
/// build it first).
async fn warm_worker(stack: &Stack) {
    let started = Instant::now();
    loop {
        let answered = stack
            .http
            .post(format!(
                "{}/2015-03-31/functions/worker/invocations",
                stack.lambda
            ))
            .timeout(Duration::from_secs(170))
            .json(&json!({ "Records": [] }))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if answered {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the worker did not start"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Receives the messages of these tasks from the match queue (the poller is
/// paused), as SQS records of one batch.
async fn receive_all(stack: &Stack, task_ids: &[String]) -> Vec<Value> {
    let started = Instant::now();
    let mut records = Vec::new();
    while records.len() < task_ids.len() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "received {} of {} messages",
            records.len(),
            task_ids.len()
        );
        let got = stack
            .sqs
            .receive_message()
            .queue_url(&stack.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .expect("ReceiveMessage");
        for m in got.messages() {
            let body = m.body().unwrap_or_default();
            let Ok(v) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            if !task_ids.iter().any(|id| v["task_id"] == json!(id)) {
                continue;
            }
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            records.push(json!({
                "messageId": m.message_id(), "receiptHandle": m.receipt_handle(), "body": body,
                "attributes": attributes, "messageAttributes": {}, "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:jobmatch-match",
                "awsRegion": "us-east-1"
            }));
        }
    }
    records
}

async fn send_to_dlq(stack: &Stack, task_id: &str) {
    stack
        .sqs
        .send_message()
        .queue_url(&stack.dlq_url)
        .message_body(json!({ "task_id": task_id }).to_string())
        .send()
        .await
        .expect("SendMessage to the DLQ");
}

#[tokio::test]
async fn a_task_whose_worker_dies_on_every_delivery_ends_dead_lettered() {
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let max: u32 = env("MAX_RECEIVE_COUNT").parse().expect("MAX_RECEIVE_COUNT");
    let started = Instant::now();

    // The victim matches by its stored profile; a lock on `profiles` holds its
    // query, and only its, so that its worker can be killed mid-task on every
    // delivery. The batch-mates query by embedding and never wait on it.
    let mut db = PgConnection::connect(&env("DATABASE_URL"))
        .await
        .expect("database");
    let mut lock = db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE profiles IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock profiles");

    // The first delivery is made by the test itself, as the event source
    // would: one batch of the victim and its three batch-mates, so that the
    // mates run beside the victim's hung match (and finish) before the kill.
    let paused_first = stack.pause("poller");
    let victim_token = stack.token(&format!("fault-dlq-victim-{run}"));
    let resp = stack
        .http
        .post(format!("{}/jobs/match", stack.api))
        .bearer_auth(&victim_token)
        .json(&json!({"limit": 5}))
        .send()
        .await
        .expect("POST /jobs/match");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let victim = resp.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    let mates_token = stack.token(&format!("fault-dlq-mates-{run}"));
    let mates: Vec<String> = stream::iter(0..3u64)
        .map(|seed| stack.submit(&mates_token, 700 + seed))
        .buffer_unordered(3)
        .collect()
        .await;

    let mut ids = vec![victim.clone()];
    ids.extend(mates.iter().cloned());
    let records = receive_all(&stack, &ids).await;
    let batch = json!({ "Records": records });
    let url = format!("{}/2015-03-31/functions/worker/invocations", stack.lambda);
    let http = stack.http.clone();
    // Never answers: the worker is killed under it.
    let mut first = Some(tokio::spawn(async move {
        http.post(url).json(&batch).send().await
    }));
    let done = stack.wait_finished(&mates, Duration::from_secs(60)).await;
    assert!(done.iter().all(|t| t.status == TaskStatus::Completed));

    // Each delivery claims the task (attempts n) and hangs on the lock; the
    // worker process is killed there, and the runtime replaced, as Lambda
    // does after a crash. The queue's redrive then moves the message.
    for attempt in 1..=max {
        wait_for(&stack, &victim, Duration::from_secs(90), |t| {
            t.status == TaskStatus::Processing && t.attempts == attempt
        })
        .await;
        assert!(kill_workers() >= 1, "no worker process to kill");
        if let Some(first) = first.take() {
            assert!(
                first.await.expect("join").is_err(),
                "the first batch never answers"
            );
        }
        // The event source waits while the runtime is replaced and warmed:
        // a first invocation that must build the worker would time out at
        // the poller and burn a receive that no worker ever saw.
        let paused = stack.pause("poller");
        stack.stack_restart("watch");
        stack.wait_healthy(Duration::from_secs(180)).await;
        warm_worker(&stack).await;
        drop(paused);
    }
    drop(paused_first);
    let task = wait_for(&stack, &victim, Duration::from_secs(90), |t| {
        t.status.is_finished()
    })
    .await;
    lock.rollback().await.expect("unlock");
    let closed_after = started.elapsed();

    let mates = stack.wait_finished(&mates, Duration::from_secs(120)).await;
    println!(
        "fault dead letter: worker killed on {max} deliveries; task closed after {:.1} s as {} ({:?}); {} batch-mates {:?}",
        closed_after.as_secs_f64(),
        task.status.as_str(),
        task.error.as_ref().map(|e| &e.code),
        mates.len(),
        mates.iter().map(|t| t.status.as_str()).collect::<Vec<_>>()
    );
    assert_eq!(task.status, TaskStatus::Failed);
    assert_eq!(task.attempts, max, "every delivery was tried once");
    let error = task.error.expect("error");
    assert_eq!(error.code, ErrorCode::DeadLettered, "{}", error.message);
    for mate in &mates {
        assert_eq!(mate.status, TaskStatus::Completed, "{}", mate.task_id);
        assert_eq!(mate.result.as_ref().expect("result").count, 10);
    }
}

#[tokio::test]
async fn a_message_put_in_the_dlq_closes_its_pending_task_only() {
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let request = MatchRequest {
        embedding: None,
        text: None,
        skills: None,
        filters: Default::default(),
        limit: 5,
        callback: None,
    };
    let now = Utc::now();
    let pending = Task::pending(
        format!("dlq-pending-{run}"),
        "fault-dlq".into(),
        request.clone(),
        now,
        3600,
    );
    let finished = Task::pending(
        format!("dlq-finished-{run}"),
        "fault-dlq".into(),
        request,
        now,
        3600,
    );
    for task in [&pending, &finished] {
        stack.store.create(task).await.expect("create task");
    }
    let error = shared::domain::TaskError {
        code: ErrorCode::Internal,
        message: "closed before its message was dead-lettered".into(),
    };
    assert!(stack
        .store
        .fail(&finished.task_id, Fence::Pending, &error, now)
        .await
        .expect("fail"));

    let started = Instant::now();
    send_to_dlq(&stack, &pending.task_id).await;
    send_to_dlq(&stack, &finished.task_id).await;
    // DESIGN.md: within a minute.
    let closed = wait_for(&stack, &pending.task_id, Duration::from_secs(60), |t| {
        t.status.is_finished()
    })
    .await;
    println!(
        "fault dead letter: a pending task's message in the DLQ closed it in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(closed.status, TaskStatus::Failed);
    assert_eq!(closed.error.expect("error").code, ErrorCode::DeadLettered);
    // Both messages went through the same consumer; the finished one by now too.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let attrs = stack
            .sqs
            .get_queue_attributes()
            .queue_url(&stack.dlq_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .expect("queue attributes");
        let count = |name| {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let left = count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages)
            + count(aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        if left == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{left} message(s) still in the DLQ"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let kept = stack.task(&finished.task_id).await;
    assert_eq!(kept.status, TaskStatus::Failed);
    assert_eq!(
        kept.error.expect("error").code,
        ErrorCode::Internal,
        "a finished task is left as it is"
    );
}

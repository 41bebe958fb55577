//! Cancel (DESIGN.md "Cancel and completion callbacks", issue 31) on the
//! local stack: the owner ends a pending and a processing task, no result
//! appears afterwards, a finished task's cancel is a 409, and the listing
//! and the legacy call know the state. One test: it pauses the match
//! queue's poller, which no other test of this binary may meet.

use std::time::{Duration, Instant};

use jobmatch_cli::generate::long_resume;
use jobmatch_e2e::Stack;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::TaskStatus;

fn caller(what: &str) -> String {
    format!("cancel-{what}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn the_owner_cancels_pending_and_processing_tasks_and_nothing_is_written_after() {
    let stack = Stack::connect().await;
    let alice = caller("alice");
    let token = stack.token(&alice);

    // Pending: no worker takes it while the poller is paused.
    let (pending, legacy) = {
        let _paused = stack.pause("poller");
        let pending = stack.submit(&token, 31_001).await;
        assert_eq!(stack.task(&pending).await.status, TaskStatus::Pending);
        let (status, body) = stack.cancel(&token, &pending).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["task_id"], pending.as_str());
        assert!(
            body.get("result").is_none() && body.get("error").is_none(),
            "{body}"
        );

        // The legacy call waits on its task; its owner finds it in the
        // listing and cancels it: the call answers 409.
        let legacy = {
            let http = stack.http.clone();
            let url = format!("{}/jobs/match/legacy", stack.api);
            let token = token.clone();
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"text": "night shift nurse, ICU, BLS and ACLS"}))
                    .send()
                    .await
                    .expect("POST legacy");
                let status = resp.status();
                (status, resp.json::<Value>().await.expect("json"))
            })
        };
        let waiting = {
            let started = Instant::now();
            loop {
                let listing = stack.listing(&token).await;
                let tasks = listing["tasks"].as_array().expect("tasks").clone();
                let states: Vec<(&str, &str)> = tasks
                    .iter()
                    .map(|t| {
                        (
                            t["task_id"].as_str().unwrap_or_default(),
                            t["status"].as_str().unwrap_or_default(),
                        )
                    })
                    .collect();
                assert!(
                    states.contains(&(pending.as_str(), "cancelled")),
                    "the listing shows the cancelled task: {states:?}"
                );
                if let Some((id, _)) = states.iter().find(|(_, s)| *s == "pending") {
                    break (*id).to_owned();
                }
                assert!(started.elapsed() < Duration::from_secs(10), "{states:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let (status, body) = stack.cancel(&token, &waiting).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (pending, legacy)
    };
    let (status, body) = legacy.await.expect("legacy call");
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "/problems/cancelled", "{body}");

    // Processing: a long text keeps the worker busy; cancelled once seen
    // processing.
    // A text of its own: a cached vector or result would end it at once.
    let text = format!("{} {}", long_resume(31_002, 1_400), uuid::Uuid::new_v4());
    let running = stack.submit_text(&token, &text).await;
    let started = Instant::now();
    loop {
        let status = stack.task(&running).await.status;
        if status == TaskStatus::Processing {
            break;
        }
        assert!(
            status == TaskStatus::Pending && started.elapsed() < Duration::from_secs(60),
            "the long text was never seen processing: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, body) = stack.cancel(&token, &running).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "cancelled");

    // The worker's delivery of each ends without writing: long after the
    // text would have been embedded and searched, both stay as cancelled.
    tokio::time::sleep(Duration::from_secs(8)).await;
    for id in [&pending, &running] {
        let task = stack.task(id).await;
        assert_eq!(task.status, TaskStatus::Cancelled, "{id}");
        assert!(
            task.result.is_none() && task.error.is_none(),
            "{id}: {task:?}"
        );
        assert_eq!(task.request.text, None, "an ended task keeps no text");
    }
    assert_eq!(stack.task(&pending).await.attempts, 0, "never claimed");

    // A finished task: 409, and it stays as it was.
    let done = stack.submit(&token, 31_003).await;
    let finished = stack
        .wait_finished(std::slice::from_ref(&done), Duration::from_secs(60))
        .await;
    Stack::assert_completed(&finished, 10);
    let (status, body) = stack.cancel(&token, &done).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["type"], "/problems/task-finished");
    assert!(
        body["detail"]
            .as_str()
            .expect("detail")
            .contains("`completed`"),
        "{body}"
    );
    let (status, body) = stack.cancel(&token, &running).await;
    assert_eq!(status, StatusCode::CONFLICT, "a second cancel: {body}");
    let after = stack.task(&done).await;
    assert_eq!(after.status, TaskStatus::Completed);
    assert_eq!(after.result.expect("result").count, 10);

    // Another caller's task and an unknown one: 404, and nothing changes.
    let other = stack.submit(&token, 31_004).await;
    let (status, _) = stack.cancel(&stack.token(&caller("mallory")), &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = stack
        .cancel(&token, "0190c6a4-0000-7000-8000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let ended = stack
        .wait_finished(std::slice::from_ref(&other), Duration::from_secs(60))
        .await;
    Stack::assert_completed(&ended, 10);
}

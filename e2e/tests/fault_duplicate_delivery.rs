//! Fault test: the same task message delivered twice in one batch (processed
//! concurrently), again late, and twice more through the real queue. One
//! result, one attempt, and a completed task is never overwritten.

use std::time::Duration;

use chrono::Utc;
use jobmatch_e2e::{embedding, Stack};
use shared::domain::{MatchRequest, Task, TaskStatus};
use shared::ports::TaskWriter;

#[tokio::test]
async fn duplicates_give_one_result_and_never_overwrite() {
    let stack = Stack::connect().await;
    let owner = format!("fault-dup-{}", uuid::Uuid::new_v4().simple());
    let request = MatchRequest {
        embedding: Some(embedding(7)),
        text: None,
        skills: Some(vec!["rust".into()]),
        filters: Default::default(),
        limit: 5,
        callback: None,
    };
    // Written without a queue message, so only our deliveries reach it.
    let task = Task::pending(
        shared::service::new_task_id(),
        owner,
        request,
        Utc::now(),
        3600,
    );
    stack.store.create(&task).await.expect("PutItem");
    let body = serde_json::json!({ "task_id": task.task_id }).to_string();

    let failed = stack
        .invoke_worker(&[("dup-a", &body, 1), ("dup-b", &body, 1)])
        .await;
    // The second copy found the task leased (retry later) or already finished.
    assert!(failed.len() <= 1, "{failed:?}");
    let done = stack.task(&task.task_id).await;
    assert_eq!(done.status, TaskStatus::Completed);
    assert_eq!(done.attempts, 1, "attempts double-counted");
    assert_eq!(done.result.as_ref().expect("result").count, 5);

    // A late redelivery is acknowledged and changes nothing.
    let again = stack.invoke_worker(&[("dup-b", &body, 2)]).await;
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(stack.task(&task.task_id).await, done);

    // Two more copies through the queue and the poller, concurrently.
    tokio::join!(stack.send_raw(&body), stack.send_raw(&body));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        stack.task(&task.task_id).await,
        done,
        "a finished task changed"
    );
    println!("fault duplicate delivery: 5 deliveries, 1 attempt, result unchanged");
}

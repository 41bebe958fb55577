//! Fault test: the worker process is killed while it holds claimed tasks (its
//! queries are held on a table lock). The runtime is replaced (as Lambda does
//! after a crash), the messages are redelivered, the expired leases let the
//! tasks be taken again, and every task completes.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jobmatch_e2e::{env, kill_workers, Stack};
use shared::domain::TaskStatus;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn killed_worker_mid_batch_loses_nothing() {
    let stack = Stack::connect().await;
    let owner = format!("fault-kill-{}", uuid::Uuid::new_v4().simple());
    let token = stack.token(&owner);
    let started = Instant::now();

    // Hold the worker mid-batch: its queries wait on this lock, so the tasks
    // it has claimed stay `processing` until the kill.
    let mut db = PgConnection::connect(&env("DATABASE_URL"))
        .await
        .expect("database");
    let mut lock = db.begin().await.expect("begin");
    sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("lock jobs");
    let first: Vec<String> = stream::iter(0..20u64)
        .map(|seed| stack.submit(&token, 200 + seed))
        .buffer_unordered(8)
        .collect()
        .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut claimed = 0;
    while claimed == 0 {
        assert!(Instant::now() < deadline, "the worker claimed no task");
        for id in &first {
            claimed += usize::from(stack.task(id).await.status == TaskStatus::Processing);
        }
    }
    let killed = kill_workers();
    assert!(killed >= 1, "no worker process found to kill");
    lock.rollback().await.expect("unlock");
    // Lambda replaces a crashed execution environment by itself; locally the
    // runtime is restarted.
    stack.stack_restart("watch");
    stack.wait_healthy(Duration::from_secs(180)).await;
    let more: Vec<String> = stream::iter(0..20u64)
        .map(|seed| stack.submit(&token, 300 + seed))
        .buffer_unordered(8)
        .collect()
        .await;

    let ids: Vec<String> = first.into_iter().chain(more).collect();
    let tasks = stack.wait_finished(&ids, Duration::from_secs(240)).await;
    let retried = tasks.iter().filter(|t| t.attempts >= 2).count();
    println!(
        "fault worker killed: {killed} process(es) killed holding {claimed} claimed task(s); {} tasks all finished in {:.1} s, {retried} taken again after their lease expired",
        tasks.len(),
        started.elapsed().as_secs_f64()
    );
    Stack::assert_completed(&tasks, 10);
    // The tasks the dead worker held were redelivered and taken again.
    assert!(retried >= 1, "no task was taken again after the crash");
}

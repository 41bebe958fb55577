//! Fault test (issue 28): the ingest function is SIGKILLed in the middle of
//! an object. Lambda's event source gives the message back after its
//! visibility timeout, the next run goes on from the checkpoint, and every
//! line is counted exactly once: none lost, none done twice.

use std::time::{Duration, Instant};

use jobmatch_e2e::catalogue::{filler, Catalogue};
use jobmatch_e2e::{env, kill_function, Stack};
use serde_json::json;
use sqlx::{Connection, PgConnection};

#[tokio::test]
async fn an_ingest_killed_mid_object_counts_every_line_once() {
    let stack = Stack::connect().await;
    let catalogue = Catalogue::connect(&stack).await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let location = format!("Killville {run}");
    const LINES: u64 = 900;
    // No embeddings: the model makes them, so the object takes long enough
    // to be killed in the middle.
    let body: Vec<String> = (1..=LINES)
        .map(|i| {
            let (title, description) = filler(u64::from_str_radix(&run, 16).unwrap_or(0) ^ i);
            json!({
                "id": format!("{run}-{i}"), "title": title,
                "company": "Acme", "location": location, "remote": false,
                "employment_type": "part_time", "salary_min": null, "salary_max": null,
                "skills": ["inventory"], "description": description,
                "posted_at": "2026-11-01T00:00:00Z"
            })
            .to_string()
        })
        .collect();
    let started = Instant::now();
    let id = catalogue
        .put(
            &format!("incoming/e2e-kill-{run}.jsonl"),
            body.join("\n").into_bytes(),
        )
        .await;

    // Wait until at least one chunk is counted and the object is not done.
    let counted = loop {
        let (_, ingest) = catalogue.ingest(&id).await;
        let received = ingest["counts"]["received"].as_u64().unwrap_or(0);
        if ingest["status"] == "processing" && received > 0 {
            break received;
        }
        assert_ne!(
            ingest["status"], "completed",
            "finished before it could be killed"
        );
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "no chunk counted: {ingest}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(counted < LINES);
    let killed = kill_function("ingest");
    assert!(killed >= 1, "no ingest process found to kill");
    stack.stack_restart("watch");
    stack.wait_healthy(Duration::from_secs(180)).await;

    let done = catalogue.finished(&id, Duration::from_secs(420)).await;
    println!(
        "fault ingest killed: {killed} process(es) killed after {counted} lines were counted; the ingest finished {:.1} s after the put: {}",
        started.elapsed().as_secs_f64(),
        done["counts"]
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["counts"],
        json!({"received": LINES, "upserted": LINES, "unchanged": 0, "rejected": 0})
    );
    let mut db = PgConnection::connect(&env("DATABASE_URL"))
        .await
        .expect("db");
    let (rows, hashed): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(content_hash) FROM jobs WHERE location = $1")
            .bind(&location)
            .fetch_one(&mut db)
            .await
            .expect("count");
    assert_eq!((rows, hashed), (LINES as i64, LINES as i64));
}

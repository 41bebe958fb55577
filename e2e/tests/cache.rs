//! The cache on the real stack (DESIGN.md "Cache"): a repeated request is
//! answered from it (`"cached": true`, the original `computed_at`), on the
//! async path and the legacy call alike; a job inserted by hand with SQL, or
//! a profile updated by hand, is seen by the very next identical request;
//! an entry changed with the functions' own database login is not served.

use std::time::Duration;

use jobmatch_e2e::{embedding, env, Stack};
use pgvector::Vector;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::{MatchResult, TaskStatus};
use sqlx::{Connection, PgConnection};

/// One test at a time: a write to `jobs` by one makes the entries of the
/// others unusable (as it must).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn legacy(stack: &Stack, token: &str, body: &Value) -> MatchResult {
    let resp = stack
        .http
        .post(format!("{}/jobs/match/legacy", stack.api))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("legacy");
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.expect("json");
    serde_json::from_value(v["result"].clone()).expect("result")
}

async fn through_worker(stack: &Stack, token: &str, body: &Value) -> MatchResult {
    let resp = stack
        .http
        .post(format!("{}/jobs/match", stack.api))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let id = resp.json::<Value>().await.expect("json")["task_id"]
        .as_str()
        .expect("task_id")
        .to_owned();
    let task = stack
        .wait_finished(&[id], Duration::from_secs(60))
        .await
        .pop()
        .expect("task");
    assert_eq!(task.status, TaskStatus::Completed, "{:?}", task.error);
    task.result.expect("result")
}

async fn db() -> PgConnection {
    PgConnection::connect(&env("DATABASE_URL"))
        .await
        .expect("database")
}

#[tokio::test]
async fn a_repeated_text_is_served_from_the_cache_on_both_paths() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let token = stack.token(&format!("cache-text-{run}"));
    let body = json!({"text": format!("senior rust backend engineer, postgres and aws ({run})"), "limit": 5});
    let first = through_worker(&stack, &token, &body).await;
    let again = through_worker(&stack, &token, &body).await;
    println!(
        "cache: text task miss query_ms {} then hit query_ms {}",
        first.query_ms, again.query_ms
    );
    assert!(!first.cached);
    assert!(first.computed_at.is_some());
    assert!(again.cached);
    assert_eq!(again.computed_at, first.computed_at);
    assert_eq!(again.matches, first.matches);
    // The legacy call with the same text shares the entry (another caller too).
    let other = stack.token(&format!("cache-text-other-{run}"));
    let legacy = legacy(&stack, &other, &body).await;
    assert!(legacy.cached);
    assert_eq!(legacy.computed_at, first.computed_at);
}

#[tokio::test]
async fn a_job_inserted_by_hand_is_seen_by_the_next_identical_request() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let token = stack.token(&format!("cache-jobs-{run}"));
    let query = embedding(9_000 + u64::from(run.as_bytes()[0]));
    let body = json!({"embedding": query, "skills": ["rust"], "limit": 5});
    let first = legacy(&stack, &token, &body).await;
    let again = legacy(&stack, &token, &body).await;
    assert!(!first.cached);
    assert!(again.cached, "the repeat is a hit");

    // A job exactly at the query, with the skill: it must rank first now.
    let id = format!("job-cache-test-{run}");
    let mut db = db().await;
    sqlx::query(
        "INSERT INTO jobs (id, title, company, location, employment_type, skills, embedding) \
         VALUES ($1, 'Cache test', 'Acme', 'Berlin', 'full_time', ARRAY['rust'], $2)",
    )
    .bind(&id)
    .bind(Vector::from(query.clone()))
    .execute(&mut db)
    .await
    .expect("insert by hand");
    let after = legacy(&stack, &token, &body).await;
    let text_body = json!({"text": format!("cache test {run}"), "limit": 3});
    let text_first = through_worker(&stack, &token, &text_body).await;
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(&id)
        .execute(&mut db)
        .await
        .expect("clean up");
    let text_after_delete = through_worker(&stack, &token, &text_body).await;
    assert!(!after.cached, "a write to jobs makes the entry unusable");
    assert_eq!(after.matches[0].job_id, id);
    assert!(after.computed_at > first.computed_at);
    assert!(!text_first.cached);
    assert!(
        !text_after_delete.cached,
        "the delete moved the version too"
    );
    assert!(text_after_delete.matches.iter().all(|m| m.job_id != id));
}

#[tokio::test]
async fn a_profile_updated_by_hand_is_seen_by_its_next_request() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let user = format!("cache-profile-{run}");
    let token = stack.token(&user);
    let mut db = db().await;
    sqlx::query("INSERT INTO profiles (user_id, skills, embedding) VALUES ($1, ARRAY['rust'], $2)")
        .bind(&user)
        .bind(Vector::from(embedding(
            7_000 + u64::from(run.as_bytes()[1]),
        )))
        .execute(&mut db)
        .await
        .expect("profile");
    let body = json!({"limit": 3});
    let first = legacy(&stack, &token, &body).await;
    let again = legacy(&stack, &token, &body).await;
    assert!(!first.cached);
    assert!(again.cached);
    // Another caller with the same body has another profile: not this entry.
    let stranger = stack.token(&format!("cache-profile-stranger-{run}"));
    let resp = stack
        .http
        .post(format!("{}/jobs/match/legacy", stack.api))
        .bearer_auth(&stranger)
        .json(&body)
        .send()
        .await
        .expect("legacy");
    assert_eq!(
        resp.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "the stranger has no stored profile, and is not served this user's entry"
    );

    // Move the profile onto a job outside the first answer: it ranks first.
    let target: String = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE NOT (id = ANY($1)) AND id LIKE 'job-%' ORDER BY id LIMIT 1",
    )
    .bind(
        first
            .matches
            .iter()
            .map(|m| m.job_id.clone())
            .collect::<Vec<_>>(),
    )
    .fetch_one(&mut db)
    .await
    .expect("a job");
    sqlx::query(
        "UPDATE profiles p SET embedding = j.embedding, skills = j.skills \
         FROM jobs j WHERE j.id = $2 AND p.user_id = $1",
    )
    .bind(&user)
    .bind(&target)
    .execute(&mut db)
    .await
    .expect("update by hand");
    let after = legacy(&stack, &token, &body).await;
    sqlx::query("DELETE FROM profiles WHERE user_id = $1")
        .bind(&user)
        .execute(&mut db)
        .await
        .expect("clean up");
    assert!(!after.cached, "the profile's new version misses");
    assert_eq!(after.matches[0].job_id, target);
}

#[tokio::test]
async fn a_rewrite_of_jobs_by_ddl_is_seen_by_the_next_identical_request() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let token = stack.token(&format!("cache-ddl-{run}"));
    // The query is a job's own vector: the rewrite rebuilds the HNSW graph,
    // and only a job at distance 0 is sure to be found again by the new one
    // (a random vector's top 5 may change with the graph, as CI saw).
    let mut db = db().await;
    let (top_id, vector): (String, Vector) = sqlx::query_as(
        "SELECT id, embedding FROM jobs WHERE id LIKE 'job-%' ORDER BY id OFFSET $1 LIMIT 1",
    )
    .bind(i64::from(run.as_bytes()[2]))
    .fetch_one(&mut db)
    .await
    .expect("a job to query with");
    let body = json!({"embedding": vector.to_vec(), "limit": 5});
    let first = legacy(&stack, &token, &body).await;
    assert!(
        legacy(&stack, &token, &body).await.cached,
        "the repeat is a hit"
    );

    // DDL that changes a value, which no row trigger sees.
    let top = first
        .matches
        .iter()
        .find(|m| m.job_id == top_id)
        .expect("a job's own vector finds it")
        .clone();
    let renamed = format!("{} ({run})", top.company);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE jobs ALTER COLUMN company TYPE text \
         USING CASE WHEN id = '{}' THEN '{renamed}' ELSE company END",
        top.job_id
    )))
    .execute(&mut db)
    .await
    .expect("rewrite by hand");
    let after = legacy(&stack, &token, &body).await;
    sqlx::query("UPDATE jobs SET company = $2 WHERE id = $1")
        .bind(&top.job_id)
        .bind(&top.company)
        .execute(&mut db)
        .await
        .expect("clean up");
    assert!(!after.cached, "the rewrite makes the entry unusable");
    let job = after
        .matches
        .iter()
        .find(|m| m.job_id == top.job_id)
        .expect("the same job still matches");
    assert_eq!(job.company, renamed);
}

#[tokio::test]
async fn a_window_request_is_served_from_the_cache_until_its_window_drops_a_candidate() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4();
    let token = stack.token(&format!("cache-window-{run}"));
    // A job exactly at the query, ten minutes from leaving a 60-day window:
    // the oldest of the candidates, so it ends the entry.
    let query = embedding(run.as_u64_pair().0);
    let id = format!("job-cache-window-{run}");
    let mut db = db().await;
    let posted: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO jobs (id, title, company, location, employment_type, embedding, posted_at) \
         VALUES ($1, 'Window test', 'Acme', 'Berlin', 'full_time', $2, \
                 now() - make_interval(days => 60) + interval '10 minutes') \
         RETURNING posted_at",
    )
    .bind(&id)
    .bind(Vector::from(query.clone()))
    .fetch_one(&mut db)
    .await
    .expect("insert by hand");
    let body = json!({"embedding": query, "filters": {"posted_within_days": 60}, "limit": 5});
    let first = legacy(&stack, &token, &body).await;
    let again = legacy(&stack, &token, &body).await;
    let ends: Option<bool> = sqlx::query_scalar(
        "SELECT expires_at = $1 + make_interval(days => 60) FROM match_cache \
         WHERE computed_at = $2",
    )
    .bind(posted)
    .bind(first.computed_at.expect("computed_at").get())
    .fetch_optional(&mut db)
    .await
    .expect("the entry");
    sqlx::query("DELETE FROM jobs WHERE id = $1")
        .bind(&id)
        .execute(&mut db)
        .await
        .expect("clean up");
    assert!(!first.cached);
    assert_eq!(first.matches[0].job_id, id);
    assert!(again.cached, "a window request is cached");
    assert_eq!(again.matches, first.matches);
    assert_eq!(
        ends,
        Some(true),
        "the entry ends when that job leaves the window"
    );
}

/// A posting past its `valid_through` is stored and never matched; one with
/// a `valid_through` ahead matches, and a cached result holding it ends then
/// (DESIGN.md "Catalogue operations": no cached result may still show it).
#[tokio::test]
async fn a_posting_past_its_valid_through_never_matches_cached_or_not() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4();
    let token = stack.token(&format!("cache-valid-{run}"));
    let query = embedding(run.as_u64_pair().0);
    let (ended, live) = (format!("job-ended-{run}"), format!("job-live-{run}"));
    let mut db = db().await;
    // Both exactly at the query: the nearest of all, were they to match.
    let ends: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "INSERT INTO jobs (id, title, company, location, employment_type, embedding, posted_at, valid_through) \
         VALUES ($1, 'Filled', 'Acme', 'Berlin', 'full_time', $3, now() - interval '2 days', now() - interval '1 day'), \
                ($2, 'Open', 'Acme', 'Berlin', 'full_time', $3, now() - interval '2 days', now() + interval '30 minutes') \
         RETURNING (SELECT now() + interval '30 minutes')",
    )
    .bind(&ended)
    .bind(&live)
    .bind(Vector::from(query.clone()))
    .fetch_one(&mut db)
    .await
    .expect("insert by hand");
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = $1")
        .bind(&ended)
        .fetch_one(&mut db)
        .await
        .expect("count");
    let body = json!({"embedding": query, "limit": 5});
    let first = legacy(&stack, &token, &body).await;
    let again = legacy(&stack, &token, &body).await;
    let entry_ends: Option<bool> =
        sqlx::query_scalar("SELECT expires_at = $1 FROM match_cache WHERE computed_at = $2")
            .bind(ends)
            .bind(first.computed_at.expect("computed_at").get())
            .fetch_optional(&mut db)
            .await
            .expect("the entry");
    sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
        .bind(vec![ended.clone(), live.clone()])
        .execute(&mut db)
        .await
        .expect("clean up");
    assert_eq!(stored, 1, "the ended posting is stored");
    assert_eq!(first.matches[0].job_id, live);
    assert!(
        first.matches.iter().all(|m| m.job_id != ended),
        "an ended posting never matches"
    );
    assert!(again.cached);
    assert_eq!(
        entry_ends,
        Some(true),
        "the entry ends when the live posting's valid_through passes"
    );
}

/// A result changed in the cache with the functions' own database login (a
/// leaked credential may write the cache's tables) is never served: its MAC
/// does not verify, so the next identical request computes its answer and
/// stores it over the changed row, and the one after is a hit again.
#[tokio::test]
async fn a_result_changed_with_the_functions_login_is_not_served() {
    let _serial = SERIAL.lock().await;
    let stack = Stack::connect().await;
    let run = uuid::Uuid::new_v4();
    let token = stack.token(&format!("cache-plant-{run}"));
    let body = json!({"embedding": embedding(run.as_u64_pair().0), "limit": 5});
    let first = legacy(&stack, &token, &body).await;
    assert!(!first.cached);
    let mut forged = first.clone();
    forged.matches.truncate(1);
    forged.matches[0].job_id = format!("planted-{run}");
    forged.count = 1;
    let mut functions = PgConnection::connect(&env("FUNCTIONS_DATABASE_URL"))
        .await
        .expect("the functions' login");
    let changed = sqlx::query("UPDATE match_cache SET result_json = $1 WHERE computed_at = $2")
        .bind(serde_json::to_vec(&forged).expect("json"))
        .bind(first.computed_at.expect("computed_at").get())
        .execute(&mut functions)
        .await
        .expect("the functions' login may write the cache")
        .rows_affected();
    assert_eq!(changed, 1, "the entry, found by its computed_at");
    let again = legacy(&stack, &token, &body).await;
    assert!(!again.cached, "the changed entry is a miss");
    assert_eq!(again.matches, first.matches);
    let third = legacy(&stack, &token, &body).await;
    assert!(third.cached, "stored over the changed row");
    assert_eq!(third.computed_at, again.computed_at);
}

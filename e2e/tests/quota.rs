//! The quota per caller through the local gateway (DESIGN.md "Fair use"):
//! one caller sends QUOTA_BURST + 20 match requests at once, async and legacy
//! mixed. Past its bucket they get 429 with Retry-After, RateLimit-Policy and
//! RateLimit; nothing is stored for them; another caller's request in the
//! middle of the burst is accepted from a full bucket of its own; and a
//! replay of an earlier Idempotency-Key is answered though the bucket is empty.

use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use jobmatch_e2e::{embedding, env, Stack};
use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use shared::ports::TaskLister;
use shared::quota::Policy;

/// One answer, kept whole.
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in a {} answer", self.status))
            .to_str()
            .expect("ascii")
    }
}

async fn post(stack: &Stack, path: &str, token: &str, body: &Value, key: Option<&str>) -> Answer {
    let mut req = stack
        .http
        .post(format!("{}{path}", stack.api))
        .bearer_auth(token)
        .json(body);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let resp = req.send().await.expect("POST");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let body = resp.json().await.expect("a JSON body");
    Answer {
        status,
        headers,
        body,
    }
}

/// Every live task of `owner`, through the owner index.
async fn tasks_of(stack: &Stack, owner: &str) -> usize {
    let (mut count, mut after) = (0, None);
    loop {
        let page = stack
            .store
            .list(owner, Utc::now(), 100, after.as_ref())
            .await
            .expect("Query");
        count += page.tasks.len();
        match page.next {
            Some(next) => after = Some(next),
            None => return count,
        }
    }
}

#[tokio::test]
async fn a_burst_past_the_quota_is_refused_for_that_caller_alone() {
    let stack = Stack::connect().await;
    let burst: u32 = env("QUOTA_BURST").parse().expect("QUOTA_BURST");
    let rate: f64 = env("QUOTA_RATE").parse().expect("QUOTA_RATE");
    let policy = Policy::new(rate, burst).expect("the stack's quota settings");
    // A full bucket's answer after one take.
    let fresh = policy.state(policy.fresh(0), 0);
    let run = uuid::Uuid::new_v4().simple().to_string();
    let alice = stack.token(&format!("quota-{run}-alice"));
    let bob = stack.token(&format!("quota-{run}-bob"));
    let body = |seed: u64| json!({"embedding": embedding(seed), "limit": 3});

    // A keyed request first (it takes one token); its replay comes last.
    let started = Instant::now();
    let keyed = post(&stack, "/jobs/match", &alice, &body(1), Some("quota-key")).await;
    assert_eq!(keyed.status, 202, "{}", keyed.body);
    let keyed_id = keyed.body["task_id"].as_str().expect("task_id").to_owned();
    // The owner as the service names the caller.
    let owner = stack.task(&keyed_id).await.owner;

    // Every fifth request of the burst is a legacy call: both routes take
    // from one bucket. A legacy call with an embedding stores no task.
    let refused_once = tokio::sync::Notify::new();
    let sends = stream::iter(0..u64::from(burst) + 20)
        .map(|i| {
            let path = if i % 5 == 4 {
                "/jobs/match/legacy"
            } else {
                "/jobs/match"
            };
            let (stack, alice, refused_once) = (&stack, &alice, &refused_once);
            async move {
                let answer = post(stack, path, alice, &body(100 + i), None).await;
                if answer.status == 429 {
                    refused_once.notify_one();
                }
                (path, answer)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>();
    // Bob asks while alice is being refused.
    let other = async {
        tokio::time::timeout(Duration::from_secs(120), refused_once.notified())
            .await
            .expect("alice's burst got no 429");
        post(&stack, "/jobs/match", &bob, &body(2), None).await
    };
    let (answers, bob_answer) = tokio::join!(sends, other);
    let elapsed = started.elapsed().as_secs_f64();

    let policy_field = fresh.policy_field();
    let (mut accepted_async, mut accepted_legacy, mut refused) = (0, 0, 0);
    for (path, a) in &answers {
        assert_eq!(a.header("ratelimit-policy"), policy_field, "{path}");
        match a.status {
            202 if *path == "/jobs/match" => accepted_async += 1,
            200 if *path == "/jobs/match/legacy" => accepted_legacy += 1,
            429 => {
                refused += 1;
                assert_eq!(a.header("content-type"), "application/problem+json");
                assert_eq!(a.body["type"], "/problems/quota-exceeded", "{}", a.body);
                assert_eq!(a.body["status"], 429);
                let retry: u64 = a.header("retry-after").parse().expect("delay-seconds");
                assert!(retry >= 1);
                assert_eq!(a.header("ratelimit"), format!(r#""match";r=0;t={retry}"#));
                continue;
            }
            other => panic!("{path} answered {other}: {}", a.body),
        }
        assert!(a.header("ratelimit").starts_with(r#""match";r="#));
    }
    let accepted = accepted_async + accepted_legacy;
    // The bucket held `burst`, the keyed request took one, and it refilled
    // at `rate` since (one more for the rounding of time).
    let most = f64::from(burst) - 1.0 + (rate * elapsed).ceil() + 1.0;
    println!(
        "quota: {} requests in {elapsed:.1} s: {accepted_async} async and {accepted_legacy} \
         legacy accepted, {refused} refused (burst {burst}, rate {rate}/s)",
        answers.len()
    );
    assert!(refused >= 1, "none refused");
    assert!(
        accepted + 1 >= burst as usize,
        "a full bucket admits its burst: {accepted}"
    );
    assert!(
        accepted as f64 <= most,
        "{accepted} accepted, at most {most}"
    );
    assert!(
        accepted_legacy >= 1,
        "the legacy route took from the bucket too"
    );

    // Nothing stored for a refusal: alice's tasks are the keyed one and the
    // accepted async ones.
    assert_eq!(tasks_of(&stack, &owner).await, 1 + accepted_async);

    // Bob's bucket is his own, full when alice's was empty.
    assert_eq!(bob_answer.status, 202, "{}", bob_answer.body);
    assert_eq!(bob_answer.header("ratelimit"), fresh.limit_field());

    // A replay asks for no new work: answered whatever alice's bucket holds.
    let replay = post(&stack, "/jobs/match", &alice, &body(1), Some("quota-key")).await;
    assert_eq!(replay.status, 202, "{}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), "true");
    assert_eq!(replay.body["task_id"], keyed_id.as_str());
}

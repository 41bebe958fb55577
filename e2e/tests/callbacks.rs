//! Completion callbacks (DESIGN.md "Cancel and completion callbacks",
//! issue 31) on the local stack: the tasks table's stream, the callbacks'
//! queue and their pollers, the `callback` function, and a receiver on
//! 127.0.0.1 (allowed over http by `CALLBACK_ALLOW_HOSTS`). Signatures are
//! checked with the Standard Webhooks reference library, as a client would.

use std::time::{Duration, Instant};

use jobmatch_cli::generate::long_resume;
use jobmatch_e2e::receiver::{Received, Receiver};
use jobmatch_e2e::{env, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn caller(what: &str) -> String {
    format!("callback-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Checks a delivery as a receiver would: the reference library verifies
/// the signature and the timestamp with the deployment's secret.
fn verify(got: &Received) -> Value {
    let secret = env("WEBHOOK_SECRET");
    let mut headers = http::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        let value = got
            .headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {got:?}"));
        headers.insert(name, value.parse().expect("header"));
    }
    let webhook = standardwebhooks::Webhook::new(&secret).expect("WEBHOOK_SECRET");
    webhook
        .verify(&got.body, &headers)
        .unwrap_or_else(|e| panic!("signature: {e:?}: {got:?}"));
    assert_eq!(
        got.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    serde_json::from_slice(&got.body).expect("a JSON body")
}

#[tokio::test]
async fn a_completed_task_is_posted_signed_and_retried_with_one_id_until_a_2xx() {
    let stack = Stack::connect().await;
    let receiver = Receiver::start(vec![(500, vec![]), (500, vec![])]).await;
    let token = stack.token(&caller("done"));
    let url = format!("{}/hook/done", receiver.base);
    let seed = rand::random::<u64>();
    let id = stack.submit_body(
        &token,
        &json!({"embedding": jobmatch_e2e::embedding(seed), "limit": 5, "callback": {"url": url}}),
    )
    .await;
    let got = receiver.wait_for(3, Duration::from_secs(90)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got_after = receiver.received();
    assert_eq!(got_after.len(), 3, "nothing after the 200: {got_after:?}");
    let expected = stack.status_body(&token, &id).await;
    assert_eq!(expected["status"], "completed");
    for delivery in &got {
        assert_eq!(delivery.path, "/hook/done");
        assert_eq!(delivery.headers["webhook-id"], id, "one id on every try");
        let body = verify(delivery);
        assert_eq!(body, expected, "the body is the task's status body");
    }
}

#[tokio::test]
async fn failed_and_cancelled_tasks_notify_too() {
    let stack = Stack::connect().await;
    let receiver = Receiver::start(vec![]).await;
    // No stored profile and no query: the task fails (profile_not_found).
    let token = stack.token(&caller("failed"));
    let failed = stack
        .submit_body(
            &token,
            &json!({"callback": {"url": format!("{}/failed", receiver.base)}}),
        )
        .await;
    // A long text of its own (a cached one would end at once), cancelled at
    // once: the worker is still on it.
    let text = format!("{} {}", long_resume(31_101, 1_400), uuid::Uuid::new_v4());
    let cancelled = stack
        .submit_body(
            &token,
            &json!({"text": text, "callback": {"url": format!("{}/cancelled", receiver.base)}}),
        )
        .await;
    let (status, body) = stack.cancel(&token, &cancelled).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = receiver.wait_for(2, Duration::from_secs(90)).await;
    for (id, path, status) in [
        (&failed, "/failed", "failed"),
        (&cancelled, "/cancelled", "cancelled"),
    ] {
        let delivery = got
            .iter()
            .find(|g| g.path == path)
            .unwrap_or_else(|| panic!("no callback at {path}: {got:?}"));
        assert_eq!(&delivery.headers["webhook-id"], id);
        let body = verify(delivery);
        assert_eq!(body["status"], status, "{body}");
        assert_eq!(body, stack.status_body(&token, id).await);
    }
    let failed_body = stack.status_body(&token, &failed).await;
    assert_eq!(failed_body["error"]["code"], "profile_not_found");
}

#[tokio::test]
async fn hostile_callback_urls_are_refused_at_submit_naming_callback_url() {
    let stack = Stack::connect().await;
    let token = stack.token(&caller("ssrf"));
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "https://169.254.169.254/",
        "https://10.0.0.1/",
        "https://[::1]/",
        // A name that resolves to 127.0.0.1; only the address 127.0.0.1 is
        // allowed locally, not this name.
        "https://localhost/hook",
        "http://localhost/hook",
        // https only for any other host.
        "http://example.com/hook",
    ] {
        let resp = stack
            .http
            .post(format!("{}/jobs/match", stack.api))
            .bearer_auth(&token)
            .json(&json!({"callback": {"url": url}}))
            .send()
            .await
            .expect("POST");
        let status = resp.status();
        let body: Value = resp.json().await.expect("json");
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert_eq!(body["errors"][0]["field"], "callback.url", "{url}: {body}");
    }
    let listing = stack.listing(&token).await;
    assert_eq!(listing["tasks"], json!([]), "nothing was stored");
}

/// A 302 is a failed try, never followed: the redirect's target gets no
/// connection, and once the tries are spent the notice is dead-lettered.
#[tokio::test]
async fn a_redirect_is_not_followed_and_a_receiver_that_never_accepts_ends_in_the_dlq() {
    let stack = Stack::connect().await;
    let target = Receiver::start(vec![]).await;
    let redirect = (302, vec![("location", format!("{}/stolen", target.base))]);
    let receiver = Receiver::start(vec![redirect; 8]).await;
    let token = stack.token(&caller("redirect"));
    let id = stack
        .submit_body(
            &token,
            &json!({"embedding": jobmatch_e2e::embedding(rand::random()), "limit": 5,
               "callback": {"url": format!("{}/hook", receiver.base)}}),
        )
        .await;
    // One first try and seven retries (`CALLBACK_RETRY_DELAYS_SECS`).
    let got = receiver.wait_for(8, Duration::from_secs(120)).await;
    assert!(got.iter().all(|g| g.headers["webhook-id"] == id));
    assert_eq!(target.connections(), 0, "the redirect was followed");
    let dlq = env("CALLBACK_DLQ_URL");
    let started = Instant::now();
    loop {
        let out = stack
            .sqs
            .receive_message()
            .queue_url(&dlq)
            .max_number_of_messages(10)
            // Hidden for a while, so that the next receive sees the others
            // (the local DLQ keeps earlier runs' notices too).
            .visibility_timeout(60)
            .wait_time_seconds(1)
            .send()
            .await
            .expect("receive from the callbacks' DLQ");
        let ours = out
            .messages()
            .iter()
            .find(|m| m.body().is_some_and(|b| b.contains(&id)));
        if let Some(message) = ours {
            stack
                .sqs
                .delete_message()
                .queue_url(&dlq)
                .set_receipt_handle(message.receipt_handle().map(str::to_owned))
                .send()
                .await
                .expect("delete our notice");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the notice of {id} never reached the callbacks' DLQ"
        );
    }
    assert_eq!(receiver.received().len(), 8, "no try after the last");
}

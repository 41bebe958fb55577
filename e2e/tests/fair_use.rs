//! Fair use (DESIGN.md "Fair use", issue 27) on the local stack: a text's
//! cost is bounded in word pieces on both match routes, and legal work
//! completes however much of it arrives at once: heavy work waits its turn
//! (the worker hands back what it cannot finish in time) instead of burning
//! its attempts.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use jobmatch_cli::generate::long_resume;
use jobmatch_e2e::Stack;
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::domain::TaskStatus;

/// A caller of its own for each test run.
fn caller(what: &str) -> String {
    format!("fair-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// The bound (DESIGN.md "Fair use"): each `!` is a word piece, so 20,000 of
/// them (within the 20,000 characters) are refused on both routes, naming
/// `text`, and nothing is stored for the caller.
#[tokio::test]
async fn twenty_thousand_bangs_are_422_naming_text_on_both_routes_and_nothing_is_stored() {
    let stack = Stack::connect().await;
    let token = stack.token(&caller("bangs"));
    let body = json!({ "text": "!".repeat(20_000) });
    for path in ["/jobs/match", "/jobs/match/legacy"] {
        let resp = stack
            .http
            .post(format!("{}{path}", stack.api))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY, "{path}");
        assert_eq!(
            resp.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: Value = resp.json().await.expect("json");
        assert_eq!(problem["errors"][0]["field"], "text", "{path}: {problem}");
        let message = problem["errors"][0]["message"].as_str().unwrap_or("");
        assert!(message.contains("word pieces"), "{path}: {problem}");
    }
    let listing = stack.listing(&token).await;
    assert_eq!(listing["tasks"], json!([]), "nothing stored: {listing}");
}

/// Issue 27's burst: 8 resumes of about 1,400 words from one caller at
/// once, on an idle stack. Before the fix 6 of 8 failed for lack of time.
#[tokio::test]
async fn eight_long_resumes_from_one_caller_at_once_all_complete() {
    let stack = Stack::connect().await;
    let token = stack.token(&caller("burst"));
    let seed: u64 = rand::random();
    let texts: Vec<String> = (0..8).map(|i| long_resume(seed + i, 1_400)).collect();
    let started = Instant::now();
    let ids: Vec<String> = stream::iter(&texts)
        .map(|text| stack.submit_text(&token, text))
        .buffer_unordered(8)
        .collect()
        .await;
    let tasks = stack.wait_finished(&ids, Duration::from_secs(300)).await;
    let attempts: Vec<u32> = tasks.iter().map(|t| t.attempts).collect();
    println!(
        "fair use: 8 resumes of 1,400 words from one caller: all finished in {:.1} s; attempts {attempts:?}",
        started.elapsed().as_secs_f64()
    );
    Stack::assert_completed(&tasks, 10);
}

/// A text near the bound (2,000 word pieces by the model's tokenizer, 8
/// windows) is legal work: it completes.
#[tokio::test]
async fn a_resume_of_two_thousand_word_pieces_completes() {
    let stack = Stack::connect().await;
    let token = stack.token(&caller("near-bound"));
    let pieces = embed::tokenizer::WordPieces::bundled().expect("the bundled tokenizer");
    let seed: u64 = rand::random();
    // The longest prefix of a resume that is at most 2,000 word pieces (a
    // longer `long_resume` of the same seed extends a shorter one).
    let fits = |words: usize| pieces.count(&long_resume(seed, words)).expect("count") <= 2_000;
    let (mut words, mut over) = (1_000, 2_000);
    assert!(fits(words) && !fits(over));
    while over - words > 1 {
        let mid = (words + over) / 2;
        if fits(mid) {
            words = mid;
        } else {
            over = mid;
        }
    }
    let text = long_resume(seed, words);
    let count = pieces.count(&text).expect("count");
    assert!((1_990..=2_000).contains(&count), "{count} word pieces");
    let started = Instant::now();
    let id = stack.submit_text(&token, &text).await;
    let task = stack
        .wait_finished(&[id], Duration::from_secs(120))
        .await
        .remove(0);
    println!(
        "fair use: a resume of {count} word pieces ({words} words) finished in {:.1} s, attempts {}",
        started.elapsed().as_secs_f64(),
        task.attempts
    );
    assert_eq!(task.status, TaskStatus::Completed, "{:?}", task.error);
}

//! What the cache's MACs (`shared::cache_mac`) add to a lookup and a store:
//! signing and verifying a result of 20 matches and a text's vector, beside
//! the JSON encoding a store does anyway. Prints microseconds per call.
//!
//! `cargo run -p jobmatch-shared --example cache_mac_cost` (add
//! `--profile perf` for the benchmark's optimisation).

use std::hint::black_box;
use std::time::Instant;

use chrono::Utc;
use shared::cache_mac::{to_micros, CacheMac, ResultEntry};
use shared::config::Secret;
use shared::domain::{EmploymentType, JobMatch, MatchResult, Timestamp, EMBEDDING_DIM};
use shared::ports::DataVersions;

const RUNS: u32 = 20_000;

fn per_call_us(mut f: impl FnMut()) -> f64 {
    for _ in 0..RUNS / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..RUNS {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(RUNS)
}

fn main() {
    let mac = CacheMac::new(&Secret::new("k".repeat(64)), "CACHE_MAC_KEY").expect("key");
    let matches = (0..20)
        .map(|i| JobMatch {
            job_id: format!("job-backend-{i:06}"),
            title: "Senior Backend Engineer (Rust)".into(),
            company: "Northwind Traders".into(),
            location: "Berlin".into(),
            remote: i % 2 == 0,
            employment_type: EmploymentType::FullTime,
            salary_min: Some(85_000),
            salary_max: Some(110_000),
            posted_at: Utc::now(),
            similarity: 0.812_345_678_9,
            score: 0.734_567_891_2,
            matched_skills: vec!["rust".into(), "postgresql".into(), "aws".into()],
        })
        .collect();
    let result = MatchResult {
        matches,
        count: 20,
        query_ms: 12.34,
        cached: false,
        computed_at: Some(Timestamp::now()),
    };
    let json = serde_json::to_vec(&result).expect("json");
    let key = [7u8; 32];
    let entry = ResultEntry {
        key: &key,
        profile_user: Some("demo-user"),
        versions: DataVersions {
            jobs: 42,
            profile: Some(7),
        },
        expires_at: to_micros(Utc::now()),
        result_json: &json,
    };
    let tag = mac.sign_result(&entry);
    let vector: Vec<f32> = (0..EMBEDDING_DIM).map(|i| (i as f32).sin()).collect();
    let vtag = mac.sign_embedding(&key, &vector);

    println!("cache MAC cost, {RUNS} calls each (HMAC-SHA256, ring):");
    let encode = per_call_us(|| {
        black_box(serde_json::to_vec(black_box(&result)).expect("json"));
    });
    println!("  result of 20 matches, {} bytes of JSON:", json.len());
    println!("    JSON encoding (a store does it anyway): {encode:.2} us");
    let sign = per_call_us(|| {
        black_box(mac.sign_result(black_box(&entry)));
    });
    println!("    sign (store):   {sign:.2} us");
    let verify = per_call_us(|| {
        black_box(mac.verify_result(black_box(&entry), Some(&tag))).expect("verifies");
    });
    println!("    verify (hit):   {verify:.2} us");
    println!(
        "  vector of {EMBEDDING_DIM} f32 ({} bytes):",
        4 * EMBEDDING_DIM
    );
    let sign = per_call_us(|| {
        black_box(mac.sign_embedding(&key, black_box(&vector)));
    });
    println!("    sign (store):   {sign:.2} us");
    let verify = per_call_us(|| {
        black_box(mac.verify_embedding(&key, black_box(&vector), Some(&vtag))).expect("verifies");
    });
    println!("    verify (hit):   {verify:.2} us");
}

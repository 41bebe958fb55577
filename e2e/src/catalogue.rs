//! The catalogue's side of the local stack for the tests: objects put in
//! the ingest bucket (through the S3 adapter the functions use), ingests
//! read through `GET /ingests/{id}` with an admin's token, and matches
//! restricted to one run's postings by their location.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::adapters::s3::S3Objects;
use shared::ports::ObjectStore;

use crate::{env, Stack};

pub const ADMIN_SCOPES: &str = "jobs:read jobs:write";

/// Words of no job family, for postings that must stand apart from the demo
/// catalogue and from each other.
const WORDS: [&str; 48] = [
    "amber", "basalt", "cobalt", "dune", "ember", "fjord", "glacier", "harbor", "iris", "juniper",
    "kelp", "lagoon", "meadow", "nebula", "orchid", "prairie", "quartz", "reef", "saffron",
    "tundra", "umber", "valley", "willow", "yarrow", "zephyr", "atlas", "bramble", "cinder",
    "delta", "estuary", "fern", "grove", "heather", "inlet", "jasper", "knoll", "lichen", "marsh",
    "nectar", "oasis", "pebble", "quill", "rapids", "sorrel", "thistle", "upland", "verdant",
    "wren",
];

/// A filler posting's title and description, its own for each `seed`.
/// Hundreds of near-identical postings (one text with a number) made the
/// HNSW graph lose the demo catalogue's postings for the text tests that
/// run later (e2e.rs): a nurse's resume found them instead of nurses.
pub fn filler(seed: u64) -> (String, String) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut pick = |n: usize| -> Vec<&str> {
        (0..n)
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect()
    };
    let title = pick(2).join(" ");
    let description = pick(14).join(" ");
    (title, description)
}

pub struct Catalogue<'a> {
    pub stack: &'a Stack,
    pub objects: S3Objects,
    pub bucket: String,
    pub admin: String,
}

impl<'a> Catalogue<'a> {
    pub async fn connect(stack: &'a Stack) -> Catalogue<'a> {
        let aws = shared::aws::load().await.expect("aws config");
        let bucket = env("INGEST_BUCKET");
        Catalogue {
            stack,
            objects: S3Objects::for_config(&aws, bucket.clone()),
            bucket,
            admin: stack.scoped_token("catalogue-admin", ADMIN_SCOPES),
        }
    }

    /// Puts `body` at `key`; the id of the ingest its version makes.
    pub async fn put(&self, key: &str, body: Vec<u8>) -> String {
        let version = self
            .objects
            .put(key, body, "application/x-ndjson")
            .await
            .expect("put object");
        shared::catalogue::ingest_id(&self.bucket, key, &version)
    }

    /// `GET /ingests/{id}`: the status code and the body.
    pub async fn ingest(&self, id: &str) -> (StatusCode, Value) {
        self.try_ingest(id).await.expect("GET /ingests")
    }

    /// The same, or the transport's error (a runtime that is restarting).
    async fn try_ingest(&self, id: &str) -> reqwest::Result<(StatusCode, Value)> {
        let resp = self
            .stack
            .http
            .get(format!("{}/ingests/{id}", self.stack.api))
            .bearer_auth(&self.admin)
            .send()
            .await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// `GET /jobs/{id}` with the admin's token.
    pub async fn get_job(&self, id: &str) -> reqwest::Response {
        self.stack
            .http
            .get(format!("{}/jobs/{id}", self.stack.api))
            .bearer_auth(&self.admin)
            .send()
            .await
            .expect("GET /jobs/{id}")
    }

    /// Waits until the ingest is `completed` or `failed`.
    pub async fn finished(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            // A runtime restarted by a fault test may take a while to answer.
            let (status, body) = match self.try_ingest(id).await {
                Ok(answer) => answer,
                Err(e) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Value::String(e.to_string()),
                ),
            };
            if status == StatusCode::OK
                && matches!(body["status"].as_str(), Some("completed" | "failed"))
            {
                return body;
            }
            assert!(
                started.elapsed() < limit,
                "ingest {id} not finished after {limit:?}: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The job ids a match returns for `query` (a `text` or an `embedding`
    /// object), among the postings at `location`.
    pub async fn matches(&self, query: Value, location: &str, limit: u32) -> (Vec<String>, bool) {
        let mut body = query;
        body["filters"] = json!({ "locations": [location] });
        body["limit"] = json!(limit);
        let token = self.stack.token("catalogue-matcher");
        let resp = self
            .stack
            .http
            .post(format!("{}/jobs/match", self.stack.api))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("POST /jobs/match");
        assert_eq!(
            resp.status(),
            StatusCode::ACCEPTED,
            "{:?}",
            resp.text().await
        );
        let accepted: Value = resp.json().await.expect("json");
        let id = accepted["task_id"].as_str().expect("task_id").to_owned();
        let tasks = self
            .stack
            .wait_finished(std::slice::from_ref(&id), Duration::from_secs(120))
            .await;
        let result = tasks[0]
            .result
            .as_ref()
            .unwrap_or_else(|| panic!("task {id} has no result: {:?}", tasks[0].error));
        (
            result.matches.iter().map(|m| m.job_id.clone()).collect(),
            result.cached,
        )
    }
}

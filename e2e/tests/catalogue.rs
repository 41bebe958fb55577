//! Catalogue operations on the real local stack (DESIGN.md "Catalogue
//! operations", issue 28): objects in the ingest bucket go through moto's
//! notification, the ingest poller and the ingest function (the real model
//! for lines without an embedding) into PostgreSQL as `jobmatch_writer`;
//! the admin's routes go through the gateway to the catalogue function.
//! Each test's postings have a location of their own, which its matches
//! filter on.

use std::io::Write;
use std::time::Duration;

use jobmatch_e2e::catalogue::{filler, Catalogue, ADMIN_SCOPES};
use jobmatch_e2e::{embedding, Stack};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shared::ports::ObjectStore;

const INGEST_LIMIT: Duration = Duration::from_secs(300);

fn run_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn posting(id: &str, location: &str, title: &str, description: &str) -> Value {
    json!({
        "id": id, "title": title, "company": "Acme", "location": location,
        "remote": false, "employment_type": "full_time",
        "salary_min": 40000, "salary_max": 60000,
        "skills": [], "description": description,
        "posted_at": "2026-11-01T00:00:00Z"
    })
}

/// Postings with a subject no filler shares, and a query for each written
/// in other words (not the posting's own).
const TOPICS: [(&str, &str, &str); 5] = [
    (
        "Beekeeper",
        "Tend the apiary's hives, harvest honey, inspect queens and treat colonies for varroa mites.",
        "I look after bee hives and collect the honey",
    ),
    (
        "Sommelier",
        "Curate the wine list, pair wines with the tasting menu and manage the cellar.",
        "expert who recommends bottles of wine to diners at a restaurant",
    ),
    (
        "Glaciologist",
        "Measure ice sheet thickness, model glacier retreat, field seasons in Antarctica.",
        "scientist studying melting glaciers and polar ice",
    ),
    (
        "Locksmith",
        "Install and repair locks, rekey doors and open safes for customers.",
        "I fix door locks and cut keys for people locked out",
    ),
    (
        "Court stenographer",
        "Transcribe legal proceedings verbatim on a stenotype machine.",
        "typing word-for-word transcripts of trials in a courtroom",
    ),
];

/// A bad line: its number, the field its reason names, and words of the reason.
type Bad = (u64, Option<&'static str>, &'static str);

/// The 1,000-line object: 990 good postings (no embedding: the model makes
/// them) and 10 bad lines, each with the field and words its reason names.
fn object(run: &str, location: &str) -> (Vec<u8>, Vec<Bad>) {
    let mut bad = Vec::new();
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut good = 0;
    for line in 1..=1_000u64 {
        let bad_line: Option<(Vec<u8>, Option<&'static str>, &'static str)> = match line {
            50 => Some((b"{\"id\": \"x\", ".to_vec(), None, "invalid JSON")),
            100 => {
                let mut v = posting(&format!("{run}-bad"), location, "t", "d");
                v["colour"] = json!("red");
                Some((v.to_string().into_bytes(), Some("colour"), "unknown field"))
            }
            150 => {
                let mut v = posting(&format!("{run}-short"), location, "t", "d");
                v["embedding"] = json!(vec![0.01f32; 383]);
                Some((v.to_string().into_bytes(), Some("embedding"), "383"))
            }
            200 => {
                let mut v = posting(&format!("{run}-ended"), location, "t", "d");
                v["valid_through"] = json!("2026-10-01T00:00:00Z");
                Some((
                    v.to_string().into_bytes(),
                    Some("valid_through"),
                    "before posted_at",
                ))
            }
            250 => Some((
                posting(&format!("{run}-1"), location, "Duplicate", "d")
                    .to_string()
                    .into_bytes(),
                Some("id"),
                "duplicate of line 1",
            )),
            300 => {
                let mut v = posting(&format!("{run}-notitle"), location, "t", "d");
                v.as_object_mut().expect("object").remove("title");
                Some((v.to_string().into_bytes(), Some("title"), "missing field"))
            }
            350 => {
                let mut v = posting(&format!("{run}-remote"), location, "t", "d");
                v["remote"] = json!("yes");
                Some((v.to_string().into_bytes(), Some("remote"), "invalid type"))
            }
            400 => {
                let mut v = posting(&format!("{run}-neg"), location, "t", "d");
                v["salary_min"] = json!(-5);
                Some((v.to_string().into_bytes(), Some("salary_min"), "negative"))
            }
            450 => {
                let v = posting(&format!("{run}-huge"), location, "t", &"x".repeat(10 << 20));
                Some((v.to_string().into_bytes(), None, "longer than"))
            }
            500 => Some((b"{\"id\": \"\xff\xfe\"}".to_vec(), None, "not valid UTF-8")),
            _ => None,
        };
        if let Some((bytes, field, says)) = bad_line {
            lines.push(bytes);
            bad.push((line, field, says));
            continue;
        }
        good += 1;
        let v = if good <= TOPICS.len() {
            let (title, description, _) = TOPICS[good - 1];
            posting(&format!("{run}-{line}"), location, title, description)
        } else {
            let (title, description) = filler(u64::from_str_radix(run, 16).unwrap_or(0) ^ line);
            posting(&format!("{run}-{line}"), location, &title, &description)
        };
        lines.push(v.to_string().into_bytes());
    }
    (lines.join(&b'\n'), bad)
}

#[tokio::test]
async fn an_object_with_ten_bad_lines_is_counted_exactly_and_its_postings_match() {
    let stack = Stack::connect().await;
    let catalogue = Catalogue::connect(&stack).await;
    let run = run_id();
    let location = format!("Ingestville {run}");
    let (body, bad) = object(&run, &location);
    let key = format!("incoming/e2e-{run}.jsonl");
    let started = std::time::Instant::now();
    let id = catalogue.put(&key, body.clone()).await;
    let done = catalogue.finished(&id, INGEST_LIMIT).await;
    println!(
        "ingest of 1,000 lines (990 embedded by the model): {:.1} s, {}",
        started.elapsed().as_secs_f64(),
        done["counts"]
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["counts"],
        json!({"received": 1000, "upserted": 990, "unchanged": 0, "rejected": 10})
    );
    let errors = done["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 10, "{errors:?}");
    for ((line, field, says), error) in bad.iter().zip(errors) {
        assert_eq!(error["line"], *line, "{error}");
        assert_eq!(error["field"].as_str(), *field, "{error}");
        assert!(
            error["message"].as_str().unwrap_or_default().contains(says),
            "line {line}: {error}"
        );
    }
    assert_eq!(
        done["source"].as_str().map(|s| s.contains(&key)),
        Some(true)
    );

    // A text aimed at each topic posting finds it first among the 990.
    for (i, (title, _, query)) in TOPICS.iter().enumerate() {
        let (ids, _) = catalogue
            .matches(json!({ "text": query }), &location, 5)
            .await;
        let line = i + 1;
        assert_eq!(
            ids.first().map(String::as_str),
            Some(format!("{run}-{line}").as_str()),
            "{title}: {query:?} found {ids:?}"
        );
    }

    // The report is in the bucket.
    let report = format!("reports/{key}.json");
    assert!(
        catalogue
            .objects
            .current_version(&report)
            .await
            .expect("head")
            .is_some(),
        "{report}"
    );

    // The same object again: a new version, every good line unchanged.
    let again = std::time::Instant::now();
    let id2 = catalogue.put(&key, body).await;
    assert_ne!(id2, id);
    let done2 = catalogue.finished(&id2, INGEST_LIMIT).await;
    println!(
        "the same 1,000 lines again: {:.1} s, {}",
        again.elapsed().as_secs_f64(),
        done2["counts"]
    );
    assert_eq!(
        done2["counts"],
        json!({"received": 1000, "upserted": 0, "unchanged": 990, "rejected": 10})
    );
    // The first ingest's record is as it was.
    assert_eq!(catalogue.ingest(&id).await.1["counts"], done["counts"]);
}

#[tokio::test]
async fn an_object_that_cannot_be_read_fails_with_its_reason() {
    let stack = Stack::connect().await;
    let catalogue = Catalogue::connect(&stack).await;
    let run = run_id();
    let location = format!("Brokenville {run}");
    let lines: Vec<String> = (0..200)
        .map(|i| {
            let mut v = posting(
                &format!("{run}-gz-{i}"),
                &location,
                "Clerk",
                "Files papers.",
            );
            // Seeds of this run's own: e2e's fixed seeds must not meet them.
            v["embedding"] = json!(embedding(
                u64::from_str_radix(&run, 16).unwrap_or(0) ^ (1 << 60) ^ i
            ));
            v.to_string()
        })
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(lines.join("\n").as_bytes()).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let truncated = gz[..gz.len() / 2].to_vec();
    let id = catalogue
        .put(&format!("incoming/e2e-{run}.jsonl.gz"), truncated)
        .await;
    let done = catalogue.finished(&id, INGEST_LIMIT).await;
    assert_eq!(done["status"], "failed", "{done}");
    let last = done["errors"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .expect("an error");
    assert_eq!(last["line"], 0);
    assert_eq!(last["field"], "object");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("cannot be read past line"),
        "{last}"
    );
    let counts = &done["counts"];
    assert_eq!(
        counts["received"],
        counts["upserted"].as_u64().unwrap() + counts["rejected"].as_u64().unwrap()
    );

    let whole = catalogue
        .put(&format!("incoming/e2e-{run}-whole.jsonl.gz"), gz)
        .await;
    let done = catalogue.finished(&whole, INGEST_LIMIT).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["received"], 200);

    let empty = catalogue
        .put(&format!("incoming/e2e-{run}-empty.jsonl"), Vec::new())
        .await;
    let done = catalogue.finished(&empty, INGEST_LIMIT).await;
    assert_eq!(done["status"], "failed");
    assert!(
        done["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("empty (0 bytes)"),
        "{done}"
    );
}

#[tokio::test]
async fn delete_is_immediate_for_cached_matches_and_get_then_answers_404() {
    let stack = Stack::connect().await;
    let catalogue = Catalogue::connect(&stack).await;
    let run = run_id();
    let location = format!("Deleteville {run}");
    let vector = embedding(u64::from_str_radix(&run, 16).unwrap_or(1) ^ (2 << 60));
    let mut kept = posting(&format!("{run}-kept"), &location, "Baker", "Bakes bread.");
    kept["embedding"] = json!(vector);
    let mut gone = posting(&format!("{run}-gone"), &location, "Baker", "Bakes rolls.");
    gone["embedding"] = json!(vector);
    let resp = stack
        .http
        .post(format!("{}/jobs", stack.api))
        .bearer_auth(&catalogue.admin)
        .json(&json!([kept, gone]))
        .send()
        .await
        .expect("POST /jobs");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let location_header = resp.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = resp.json().await.unwrap();
    let id = accepted["ingest_id"].as_str().unwrap().to_owned();
    assert_eq!(location_header, format!("/ingests/{id}"));
    let done = catalogue.finished(&id, INGEST_LIMIT).await;
    assert_eq!(done["counts"]["upserted"], 2, "{done}");

    let query = json!({ "embedding": vector });
    let (first, _) = catalogue.matches(query.clone(), &location, 10).await;
    assert_eq!(first.len(), 2, "{first:?}");
    let (again, cached) = catalogue.matches(query.clone(), &location, 10).await;
    assert!(
        cached,
        "the second identical match is served from the cache"
    );
    assert_eq!(again, first);

    let resp = catalogue.get_job(&format!("{run}-gone")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["title"], "Baker");
    assert!(body.get("embedding").is_none(), "{body}");

    let delete = |id: String| {
        stack
            .http
            .delete(format!("{}/jobs/{id}", stack.api))
            .bearer_auth(&catalogue.admin)
            .send()
    };
    assert_eq!(delete(format!("{run}-gone")).await.unwrap().status(), 204);
    let (after, _) = catalogue.matches(query, &location, 10).await;
    assert_eq!(
        after,
        vec![format!("{run}-kept")],
        "the deleted posting is gone, cached or not"
    );
    assert_eq!(delete(format!("{run}-gone")).await.unwrap().status(), 404);
    let resp = catalogue.get_job(&format!("{run}-gone")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
}

#[tokio::test]
async fn a_past_valid_through_is_stored_never_matched_and_deleted_on_schedule() {
    let stack = Stack::connect().await;
    let catalogue = Catalogue::connect(&stack).await;
    let run = run_id();
    let location = format!("Endville {run}");
    let vector = embedding(u64::from_str_radix(&run, 16).unwrap_or(1) ^ (3 << 60));
    let mut live = posting(&format!("{run}-live"), &location, "Potter", "Throws pots.");
    live["embedding"] = json!(vector);
    let mut ended = posting(
        &format!("{run}-ended"),
        &location,
        "Potter",
        "Throws bowls.",
    );
    ended["embedding"] = json!(vector);
    ended["posted_at"] = json!("2026-01-01T00:00:00Z");
    ended["valid_through"] = json!("2026-02-01T00:00:00Z");
    let body = format!("{live}\n{ended}\n");
    let id = catalogue
        .put(&format!("incoming/e2e-{run}.jsonl"), body.into_bytes())
        .await;
    let done = catalogue.finished(&id, INGEST_LIMIT).await;
    assert_eq!(done["counts"]["upserted"], 2, "{done}");
    let stored = catalogue.get_job(&format!("{run}-ended")).await;
    assert_eq!(stored.status(), StatusCode::OK, "stored");
    let (ids, _) = catalogue
        .matches(json!({ "embedding": vector }), &location, 10)
        .await;
    assert_eq!(ids, vec![format!("{run}-live")], "never matched");

    // The schedule's event: postings ended more than EXPIRED_RETENTION_DAYS ago go.
    let resp = stack
        .http
        .post(format!(
            "{}/2015-03-31/functions/ingest/invocations",
            stack.lambda
        ))
        .json(&json!({ "jobmatch": "expire" }))
        .send()
        .await
        .expect("invoke ingest");
    let answer: Value = resp.json().await.expect("json");
    assert!(answer["deleted"].as_u64().unwrap_or(0) >= 1, "{answer}");
    for (id, status) in [("ended", StatusCode::NOT_FOUND), ("live", StatusCode::OK)] {
        let resp = catalogue.get_job(&format!("{run}-{id}")).await;
        assert_eq!(resp.status(), status, "{id}");
    }
}

#[tokio::test]
async fn a_token_without_the_scope_gets_403_on_every_admin_route_and_may_still_match() {
    let stack = Stack::connect().await;
    let plain = stack.token("no-scope-user");
    let reader = stack.scoped_token("reader", "jobs:read");
    let routes = [
        ("POST", "/jobs", "jobs:write"),
        ("GET", "/jobs/any", "jobs:read"),
        ("DELETE", "/jobs/any", "jobs:write"),
        (
            "GET",
            "/ingests/ing_00000000000000000000000000000000",
            "jobs:read",
        ),
    ];
    for (method, path, scope) in routes {
        for token in [&plain, &reader] {
            if token == &reader && scope == "jobs:read" {
                continue;
            }
            let resp = stack
                .http
                .request(method.parse().unwrap(), format!("{}{path}", stack.api))
                .bearer_auth(token)
                .json(&json!([]))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
            let problem: Value = resp.json().await.unwrap();
            assert_eq!(problem["type"], "/problems/forbidden");
            assert!(
                problem["detail"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("`{scope}`")),
                "{problem}"
            );
        }
    }
    // The same caller may still match.
    let resp = stack
        .http
        .post(format!("{}/jobs/match", stack.api))
        .bearer_auth(&plain)
        .json(&json!({ "embedding": embedding(1) }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // And an admin's POST over the limit is a problem, with nothing stored.
    let big = "x".repeat(4_000_001);
    let resp = stack
        .http
        .post(format!("{}/jobs", stack.api))
        .bearer_auth(stack.scoped_token("admin", ADMIN_SCOPES))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
}

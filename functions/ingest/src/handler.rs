//! The ingest function (DESIGN.md "Catalogue operations"): an object put
//! under `incoming/` arrives as an S3 notification on the ingest queue; its
//! lines are judged by the loader's rules (`shared::catalogue`), embedded
//! when they lack an embedding, and upserted by id, a chunk at a time.
//!
//! Exactly once per line, whatever stops a run:
//! - the ingest's id is the object version's, so a repeated notification
//!   finds the same record, and a finished one does nothing;
//! - before a chunk's upsert commits, its outcome (the counts and errors) is
//!   stored as the record's `chunk`; after, it is folded into the counts and
//!   the checkpoint moves. A run killed in between redoes the chunk's
//!   writes (an upsert of the same content writes nothing) and counts it as
//!   stored. Every record write is conditional on its revision;
//! - ids seen in the lines before the checkpoint are read again on resume,
//!   so a duplicate id is judged the same in every run.
//!
//! A run out of time queues the notification again and stops between chunks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use shared::catalogue::{
    self, content_hash, posting_text, ChunkIntent, Ingest, IngestCounts, IngestLineError,
    IngestStatus, LineError, INCOMING_PREFIX, MAX_LINE_BYTES, MAX_REPORTED_ERRORS, MAX_STALLS,
};
use shared::domain::Timestamp;
use shared::error::{Error, Result};
use shared::ports::{Continuations, Embedder, HashedJob, IngestStore, JobWriter, ObjectStore};

use crate::lines::{Line, Lines, ReadError};

/// Postings a chunk holds at most: a checkpoint's worth of work, and the
/// model's batch. Blank lines do not count.
pub const CHUNK_LINES: u64 = 256;
/// A chunk also ends once its lines hold this many bytes, which bounds the
/// model's work in one chunk (about 130,000 word pieces at most) whatever
/// the postings' sizes.
pub const CHUNK_BYTES: usize = 512 << 10;
/// The re-read of the lines before a checkpoint checks the time this often.
const REREAD_CHECK_LINES: u64 = 10_000;

pub struct App<S, W, O, E, Q> {
    pub ingests: S,
    pub jobs: W,
    pub objects: O,
    pub embedder: E,
    pub continuations: Q,
    pub bucket: String,
    pub chunk_lines: u64,
    /// Kept free before the deadline, beside twice the slowest chunk.
    pub margin: Duration,
    /// `EXPIRED_RETENTION_DAYS`.
    pub expired_retention_days: u32,
}

/// How a run of one object ended.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    /// Completed or failed, now or before.
    Finished(IngestStatus),
    /// Out of time: the notification goes to the queue again.
    OutOfTime,
    /// Another run of the same ingest moved it; that run goes on.
    Superseded,
}

/// The S3 notification (or the test event S3 sends when one is set up).
#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records", default)]
    records: Vec<S3Record>,
}

#[derive(Deserialize)]
struct S3Record {
    #[serde(rename = "eventName", default)]
    event_name: String,
    s3: S3Entity,
}

#[derive(Deserialize)]
struct S3Entity {
    bucket: S3Bucket,
    object: S3Object,
}

#[derive(Deserialize)]
struct S3Bucket {
    name: String,
}

#[derive(Deserialize)]
struct S3Object {
    key: String,
    #[serde(rename = "versionId", default)]
    version_id: Option<String>,
}

/// An S3 event key: URL-encoded, with `+` for a space.
pub fn decode_key(key: &str) -> String {
    percent_encoding::percent_decode_str(&key.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

impl<S, W, O, E, Q> App<S, W, O, E, Q>
where
    S: IngestStore,
    W: JobWriter,
    O: ObjectStore,
    E: Embedder,
    Q: Continuations,
{
    /// One Lambda event: an SQS batch of notifications, or the schedule's
    /// `{"jobmatch": "expire"}`.
    pub async fn handle(&self, event: Value, stop_at: Instant) -> Value {
        if event.get("jobmatch").and_then(Value::as_str) == Some("expire") {
            return match self.jobs.delete_expired(self.expired_retention_days).await {
                Ok(deleted) => {
                    tracing::info!(
                        deleted,
                        days = self.expired_retention_days,
                        "expired postings deleted"
                    );
                    json!({ "deleted": deleted })
                }
                Err(e) => {
                    tracing::error!(error = %e, "expired postings not deleted");
                    json!({ "error": e.to_string() })
                }
            };
        }
        let mut failures = Vec::new();
        for record in event
            .get("Records")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let id = record
                .get("messageId")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = record
                .get("body")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if let Err(e) = self.message(body, stop_at).await {
                tracing::error!(message_id = id, error = %e, "ingest message failed; it will be retried");
                failures.push(json!({ "itemIdentifier": id }));
            }
        }
        json!({ "batchItemFailures": failures })
    }

    /// One queue message: every object it names, each run on from its
    /// checkpoint; the message is queued again when time runs out.
    async fn message(&self, body: &str, stop_at: Instant) -> Result<()> {
        let Ok(notification) = serde_json::from_str::<Notification>(body) else {
            // Not a notification (S3's `s3:TestEvent` is one of these): nothing to do.
            tracing::warn!(body = %body.chars().take(200).collect::<String>(), "not an S3 notification; ignored");
            return Ok(());
        };
        for record in notification.records {
            if !record.event_name.starts_with("ObjectCreated") {
                continue;
            }
            let key = decode_key(&record.s3.object.key);
            if record.s3.bucket.name != self.bucket || !key.starts_with(INCOMING_PREFIX) {
                tracing::warn!(bucket = %record.s3.bucket.name, key, "not in the ingest bucket's incoming/; ignored");
                continue;
            }
            let version = match record.s3.object.version_id.filter(|v| !v.is_empty()) {
                Some(v) => v,
                None => match self.objects.current_version(&key).await? {
                    Some(v) => v,
                    None => {
                        tracing::warn!(key, "the object is gone; nothing to ingest");
                        continue;
                    }
                },
            };
            match self.run(&key, &version, stop_at).await? {
                Outcome::OutOfTime => {
                    self.continuations.send_again(body).await?;
                    tracing::info!(
                        key,
                        "out of time; the ingest goes on in the next invocation"
                    );
                    return Ok(());
                }
                Outcome::Finished(status) => tracing::info!(key, ?status, "ingest finished"),
                Outcome::Superseded => tracing::info!(key, "another run holds this ingest"),
            }
        }
        Ok(())
    }

    /// Runs (or goes on with) the ingest of one object version.
    pub async fn run(&self, key: &str, version: &str, stop_at: Instant) -> Result<Outcome> {
        let mut ingest = self
            .ingests
            .create(&Ingest::pending(
                catalogue::ingest_id(&self.bucket, key, version),
                Ingest::source_of(&self.bucket, key, version),
            ))
            .await?;
        if ingest.status.is_finished() {
            return Ok(Outcome::Finished(ingest.status));
        }
        if ingest.status == IngestStatus::Pending {
            ingest.status = IngestStatus::Processing;
            ingest.started_at = Some(Timestamp::now());
            if !self.save(&mut ingest).await? {
                return Ok(Outcome::Superseded);
            }
        }
        let gzip = if key.ends_with(".jsonl.gz") {
            true
        } else if key.ends_with(".jsonl") {
            false
        } else {
            return self
                .fail(
                    ingest,
                    key,
                    "only .jsonl and .jsonl.gz objects are ingested",
                )
                .await;
        };
        let reader = self.objects.open(key, version, gzip).await?;
        let mut lines = Lines::new(reader, gzip);
        let mut seen: HashMap<String, u64> = HashMap::new();
        // The lines before the checkpoint: only their ids, as the runs
        // before this one judged them.
        while lines.line + 1 < ingest.next_line {
            if lines.line.is_multiple_of(REREAD_CHECK_LINES)
                && stop_at.saturating_duration_since(Instant::now()) < self.margin
            {
                return self.out_of_time(ingest, key, false).await;
            }
            match lines.next().await {
                Ok(Some(Line::Text(text))) => {
                    let parsed = posting_text(lines.line, &text).map(catalogue::parse_job);
                    if let Some(Ok(job)) = parsed {
                        seen.entry(job.id).or_insert(lines.line);
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(ReadError::Transient(e)) => return Err(Error::unavailable("s3", e)),
                Err(ReadError::Corrupt(e)) => {
                    return Err(Error::Internal(format!("read before the checkpoint: {e}")))
                }
            }
        }
        let mut slowest = Duration::ZERO;
        let mut progressed = false;
        loop {
            let from = ingest.next_line;
            let mut chunk = Vec::new();
            let mut broken = None;
            let (mut postings, mut bytes) = (0u64, 0usize);
            // A chunk whose outcome a stopped run stored ends where it ended
            // then, whatever the limits of this build.
            let stored_to = ingest
                .chunk
                .as_ref()
                .filter(|c| c.from == from)
                .map(|c| c.to);
            let more = |line: u64, postings: u64, bytes: usize| match stored_to {
                Some(to) => line + 1 < to,
                None => postings < self.chunk_lines && bytes < CHUNK_BYTES,
            };
            while more(lines.line, postings, bytes) {
                match lines.next().await {
                    Ok(Some(line)) => {
                        if let Line::Text(t) = &line {
                            // The line break counts: a chunk of blank lines is bounded too.
                            bytes += t.len() + 1;
                            postings += u64::from(!t.trim().is_empty());
                        } else {
                            postings += 1;
                        }
                        chunk.push((lines.line, line));
                    }
                    Ok(None) => break,
                    Err(ReadError::Transient(e)) => return Err(Error::unavailable("s3", e)),
                    Err(ReadError::Corrupt(e)) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if chunk.is_empty() {
                if let Some(e) = broken {
                    let message = format!("the object cannot be read past line {}: {e}", from - 1);
                    return self.fail(ingest, key, &message).await;
                }
                if from == 1 && lines.bytes == 0 {
                    return self
                        .fail(ingest, key, "the object is empty (0 bytes)")
                        .await;
                }
                ingest.status = IngestStatus::Completed;
                ingest.completed_at = Some(Timestamp::now());
                if !self.save(&mut ingest).await? {
                    return Ok(Outcome::Superseded);
                }
                self.report(&ingest, key).await;
                return Ok(Outcome::Finished(IngestStatus::Completed));
            }
            let left = stop_at.saturating_duration_since(Instant::now());
            if left < self.margin + slowest * 2 {
                return self.out_of_time(ingest, key, progressed).await;
            }
            let started = Instant::now();
            let to = lines.line + 1;
            let (decided, writes) = self.judge(&chunk, &mut seen, &ingest).await?;
            let decided = ChunkIntent {
                from,
                to,
                ..decided
            };
            let intent = match &ingest.chunk {
                // A run stopped after deciding this chunk: its outcome stands.
                Some(stored) if stored.from == from && stored.to == to => stored.clone(),
                _ => decided,
            };
            // A chunk with nothing to write is judged the same by any run:
            // its outcome needs no write of its own before the fold.
            if !writes.is_empty() && ingest.chunk.as_ref() != Some(&intent) {
                ingest.chunk = Some(intent.clone());
                if !self.save(&mut ingest).await? {
                    return Ok(Outcome::Superseded);
                }
            }
            self.write(writes).await?;
            ingest.fold(intent);
            if !self.save(&mut ingest).await? {
                return Ok(Outcome::Superseded);
            }
            progressed = true;
            slowest = slowest.max(started.elapsed());
            if let Some(e) = broken {
                let message = format!("the object cannot be read past line {}: {e}", to - 1);
                return self.fail(ingest, key, &message).await;
            }
        }
    }

    /// A chunk's outcome, and the postings it has to write (those whose
    /// stored hash differs; a redone chunk finds its written ones equal).
    async fn judge(
        &self,
        chunk: &[(u64, Line)],
        seen: &mut HashMap<String, u64>,
        ingest: &Ingest,
    ) -> Result<(ChunkIntent, Vec<HashedJob>)> {
        let mut counts = IngestCounts::default();
        let mut errors = Vec::new();
        let mut reject = |line: u64, e: LineError, counts: &mut IngestCounts| {
            counts.rejected += 1;
            errors.push(IngestLineError::new(line, e));
        };
        let mut valid = Vec::new();
        for (line, raw) in chunk {
            let text = match raw {
                Line::Text(t) => match posting_text(*line, t) {
                    Some(text) => text,
                    None => continue,
                },
                Line::TooLong => {
                    counts.received += 1;
                    reject(
                        *line,
                        LineError::line(format!("longer than {MAX_LINE_BYTES} bytes")),
                        &mut counts,
                    );
                    continue;
                }
                Line::NotUtf8(at) => {
                    counts.received += 1;
                    reject(
                        *line,
                        LineError::line(format!("not valid UTF-8 (at byte {at})")),
                        &mut counts,
                    );
                    continue;
                }
            };
            counts.received += 1;
            match catalogue::parse_job(text) {
                Err(e) => reject(*line, e, &mut counts),
                Ok(job) => match seen.get(&job.id) {
                    Some(first) if first != line => reject(
                        *line,
                        LineError::field(
                            "id",
                            format!("duplicate of line {first}; the first is kept"),
                        ),
                        &mut counts,
                    ),
                    _ => {
                        seen.insert(job.id.clone(), *line);
                        valid.push(job);
                    }
                },
            }
        }
        let ids: Vec<&str> = valid.iter().map(|j| j.id.as_str()).collect();
        let stored = self.jobs.stored_hashes(&ids).await?;
        let model = self.embedder.model_id().to_owned();
        let mut writes = Vec::new();
        for job in valid {
            let hash = content_hash(&job, &model);
            if stored.get(&job.id) == Some(&Some(hash)) {
                counts.unchanged += 1;
            } else {
                counts.upserted += 1;
                writes.push(HashedJob {
                    job,
                    content_hash: hash,
                });
            }
        }
        errors.truncate(MAX_REPORTED_ERRORS.saturating_sub(ingest.errors.len()));
        Ok((
            ChunkIntent {
                from: 0,
                to: 0,
                counts,
                errors,
            },
            writes,
        ))
    }

    /// Embeds the postings without an embedding, then upserts them all.
    async fn write(&self, mut writes: Vec<HashedJob>) -> Result<()> {
        let texts: Vec<String> = writes
            .iter()
            .filter(|w| w.job.embedding.is_none())
            .map(|w| w.job.embedding_text())
            .collect();
        if !texts.is_empty() {
            let mut vectors = self.embedder.embed(texts).await?.into_iter();
            for w in writes.iter_mut().filter(|w| w.job.embedding.is_none()) {
                w.job.embedding =
                    Some(vectors.next().ok_or_else(|| {
                        Error::Internal("the model returned too few vectors".into())
                    })?);
            }
        }
        // In id order: two ingests writing the same postings at once take
        // their row locks in one order, and do not deadlock.
        writes.sort_by(|a, b| a.job.id.cmp(&b.job.id));
        self.jobs.upsert(&writes).await?;
        Ok(())
    }

    /// Out of time: the notification is queued again. An invocation that
    /// counted no line is a stall; after [`MAX_STALLS`] in a row the ingest
    /// fails, so that an object that cannot move is not re-read forever.
    async fn out_of_time(
        &self,
        mut ingest: Ingest,
        key: &str,
        progressed: bool,
    ) -> Result<Outcome> {
        if progressed {
            return Ok(Outcome::OutOfTime);
        }
        ingest.stalls += 1;
        if ingest.stalls >= MAX_STALLS {
            let message = format!(
                "no line counted in {MAX_STALLS} invocations in a row: reading the object again up to line {} takes longer than an invocation",
                ingest.next_line
            );
            return self.fail(ingest, key, &message).await;
        }
        if !self.save(&mut ingest).await? {
            return Ok(Outcome::Superseded);
        }
        Ok(Outcome::OutOfTime)
    }

    /// Writes the record; `false` when another run moved it first.
    async fn save(&self, ingest: &mut Ingest) -> Result<bool> {
        let saved = self.ingests.replace(ingest).await?;
        if saved {
            ingest.revision += 1;
        }
        Ok(saved)
    }

    /// Ends the ingest `failed`, with the reason as an error of line 0 (the
    /// object), after what its lines before the break already counted.
    async fn fail(&self, mut ingest: Ingest, key: &str, message: &str) -> Result<Outcome> {
        ingest.status = IngestStatus::Failed;
        ingest.completed_at = Some(Timestamp::now());
        ingest.chunk = None;
        if ingest.errors.len() < MAX_REPORTED_ERRORS {
            ingest
                .errors
                .push(IngestLineError::new(0, LineError::field("object", message)));
        }
        if !self.save(&mut ingest).await? {
            return Ok(Outcome::Superseded);
        }
        self.report(&ingest, key).await;
        Ok(Outcome::Finished(IngestStatus::Failed))
    }

    /// `reports/<key>.json`. The record is the ingest's truth: a report that
    /// cannot be written is logged, not retried.
    async fn report(&self, ingest: &Ingest, key: &str) {
        let body = serde_json::to_vec_pretty(&ingest.body()).unwrap_or_default();
        if let Err(e) = self
            .objects
            .put(&catalogue::report_key(key), body, "application/json")
            .await
        {
            tracing::error!(key, error = %e, "the ingest's report was not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A posting line.
    fn posting(id: &str, title: &str) -> String {
        format!(
            r#"{{"id":"{id}","title":"{title}","company":"c","location":"l","remote":true,"employment_type":"contract","salary_min":null,"salary_max":null,"skills":["rust"],"description":"d","posted_at":"2026-01-01T00:00:00Z"}}"#
        )
    }

    use shared::adapters::memory::{
        MemoryContinuations, MemoryEmbedder, MemoryIngestStore, MemoryJobs, MemoryObjects,
    };
    use shared::domain::JobRecord;
    use std::sync::atomic::Ordering;

    type TestApp =
        App<MemoryIngestStore, MemoryJobs, MemoryObjects, MemoryEmbedder, MemoryContinuations>;

    fn app(chunk_lines: u64) -> TestApp {
        App {
            ingests: MemoryIngestStore::default(),
            jobs: MemoryJobs::default(),
            objects: MemoryObjects::default(),
            embedder: MemoryEmbedder::default(),
            continuations: MemoryContinuations::default(),
            bucket: "b".into(),
            chunk_lines,
            margin: Duration::ZERO,
            expired_retention_days: 30,
        }
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(600)
    }

    async fn put(app: &TestApp, key: &str, body: &str) -> String {
        app.objects
            .put(key, body.as_bytes().to_vec(), "")
            .await
            .unwrap()
    }

    fn ingest(app: &TestApp, key: &str, version: &str) -> Ingest {
        app.ingests.ingests.lock().unwrap()[&catalogue::ingest_id("b", key, version)].clone()
    }

    /// 30 lines: 27 good, a bad JSON line (7), an unknown field (12) and a
    /// duplicate id (20, of line 3); blank line 15 is not a posting.
    fn object() -> String {
        (1..=31)
            .map(|l| match l {
                7 => "{not json".to_owned(),
                12 => posting("x12", "t").replace("\"d\"", "\"d\",\"colour\":1"),
                15 => String::new(),
                20 => posting("j3", "other"),
                l => posting(&format!("j{l}"), "t"),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn every_line_is_counted_once_and_each_bad_one_named() {
        let app = app(8);
        let v = put(&app, "incoming/a.jsonl", &object()).await;
        let outcome = app.run("incoming/a.jsonl", &v, later()).await.unwrap();
        assert_eq!(outcome, Outcome::Finished(IngestStatus::Completed));
        let done = ingest(&app, "incoming/a.jsonl", &v);
        assert_eq!(
            done.counts,
            IngestCounts {
                received: 30,
                upserted: 27,
                unchanged: 0,
                rejected: 3
            }
        );
        let named: Vec<(u64, Option<&str>)> = done
            .errors
            .iter()
            .map(|e| (e.line, e.field.as_deref()))
            .collect();
        assert_eq!(
            named,
            vec![(7, None), (12, Some("colour")), (20, Some("id"))]
        );
        assert!(
            done.errors[2].message.contains("duplicate of line 3"),
            "{:?}",
            done.errors[2]
        );
        assert_eq!(app.jobs.rows.lock().unwrap().len(), 27);
        assert_eq!(
            app.jobs.rows.lock().unwrap()["j3"].job.title,
            "t",
            "the first is kept"
        );
        let report = app.objects.objects.lock().unwrap()["reports/incoming/a.jsonl.json"][0]
            .1
            .clone();
        let report: Value = serde_json::from_slice(&report).unwrap();
        assert_eq!(report["counts"]["upserted"], 27);
        assert!(
            report.get("next_line").is_none(),
            "the checkpoint is not in the report"
        );

        // The same version again does nothing; a new version of the same
        // content is all unchanged, and nothing is embedded.
        let calls = app.embedder.calls.load(Ordering::Relaxed);
        app.run("incoming/a.jsonl", &v, later()).await.unwrap();
        let v2 = put(&app, "incoming/a.jsonl", &object()).await;
        app.run("incoming/a.jsonl", &v2, later()).await.unwrap();
        assert_eq!(app.embedder.calls.load(Ordering::Relaxed), calls);
        let again = ingest(&app, "incoming/a.jsonl", &v2);
        assert_eq!(
            again.counts,
            IngestCounts {
                received: 30,
                upserted: 0,
                unchanged: 27,
                rejected: 3
            }
        );
        assert_eq!(ingest(&app, "incoming/a.jsonl", &v).counts, done.counts);
    }

    #[tokio::test]
    async fn a_run_killed_after_a_chunk_commits_is_counted_as_the_first_run_decided() {
        for fail_from in 1..=4 {
            let app = app(8);
            let v = put(&app, "incoming/a.jsonl", &object()).await;
            // The upsert of chunk `fail_from` fails; chunks before it commit.
            *app.jobs.fail_upserts_from.lock().unwrap() = Some(fail_from);
            assert!(app.run("incoming/a.jsonl", &v, later()).await.is_err());
            // Simulate the worst case: that chunk's upsert did commit before
            // the run died (the intent is stored, the fold is not).
            let stalled = ingest(&app, "incoming/a.jsonl", &v);
            assert!(
                stalled.chunk.is_some(),
                "the chunk's outcome was stored first"
            );
            *app.jobs.fail_upserts_from.lock().unwrap() = None;
            {
                // Commit the stalled chunk's writes behind the ingest's back.
                let rows_before = app.jobs.rows.lock().unwrap().len();
                let chunk = stalled.chunk.clone().unwrap();
                let text = object();
                let lines: Vec<&str> = text.lines().collect();
                for l in chunk.from..chunk.to {
                    if let Ok(job) = catalogue::parse_job(lines[l as usize - 1]) {
                        if ![20u64].contains(&l) {
                            let mut job = job;
                            job.embedding = Some(MemoryEmbedder::vector(&job.embedding_text()));
                            let hash = content_hash(&job_without(&job), app.embedder.model_id());
                            app.jobs.rows.lock().unwrap().insert(
                                job.id.clone(),
                                HashedJob {
                                    job,
                                    content_hash: hash,
                                },
                            );
                        }
                    }
                }
                assert!(app.jobs.rows.lock().unwrap().len() > rows_before);
            }
            let outcome = app.run("incoming/a.jsonl", &v, later()).await.unwrap();
            assert_eq!(outcome, Outcome::Finished(IngestStatus::Completed));
            let done = ingest(&app, "incoming/a.jsonl", &v);
            assert_eq!(
                done.counts,
                IngestCounts {
                    received: 30,
                    upserted: 27,
                    unchanged: 0,
                    rejected: 3
                },
                "killed at chunk {fail_from}"
            );
            assert_eq!(done.errors.len(), 3, "killed at chunk {fail_from}");
            assert_eq!(app.jobs.rows.lock().unwrap().len(), 27);
        }
    }

    fn job_without(job: &JobRecord) -> JobRecord {
        JobRecord {
            embedding: None,
            ..job.clone()
        }
    }

    #[tokio::test]
    async fn out_of_time_stops_between_chunks_and_the_next_message_goes_on() {
        let app = App {
            margin: Duration::from_secs(3600),
            ..app(8)
        };
        let v = put(&app, "incoming/a.jsonl", &object()).await;
        let body = json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "incoming/a.jsonl", "versionId": v}}}]})
        .to_string();
        let event = json!({"Records": [{"messageId": "m1", "body": body}]});
        let answer = app.handle(event.clone(), later()).await;
        assert_eq!(answer["batchItemFailures"], json!([]));
        assert_eq!(
            app.continuations.sent.lock().unwrap().as_slice(),
            std::slice::from_ref(&body)
        );
        assert_eq!(
            ingest(&app, "incoming/a.jsonl", &v).status,
            IngestStatus::Processing
        );
        let app = App {
            margin: Duration::ZERO,
            ..app
        };
        app.handle(event, later()).await;
        let done = ingest(&app, "incoming/a.jsonl", &v);
        assert_eq!(done.status, IngestStatus::Completed);
        assert_eq!(done.counts.received, 30);
    }

    #[tokio::test]
    async fn an_ingest_that_never_moves_fails_after_three_invocations() {
        // No time to do a single chunk, ever.
        let app = App {
            margin: Duration::from_secs(3600),
            ..app(8)
        };
        let v = put(&app, "incoming/a.jsonl", &object()).await;
        for _ in 1..MAX_STALLS {
            let outcome = app.run("incoming/a.jsonl", &v, later()).await.unwrap();
            assert_eq!(outcome, Outcome::OutOfTime);
        }
        let outcome = app.run("incoming/a.jsonl", &v, later()).await.unwrap();
        assert_eq!(outcome, Outcome::Finished(IngestStatus::Failed));
        let failed = ingest(&app, "incoming/a.jsonl", &v);
        assert!(
            failed.errors[0]
                .message
                .contains("no line counted in 3 invocations"),
            "{:?}",
            failed.errors
        );
    }

    #[tokio::test]
    async fn a_million_blank_lines_are_read_in_bounded_chunks() {
        let app = app(256);
        let body = format!("{}{}", "\n".repeat(1_000_000), posting("last", "t"));
        let v = put(&app, "incoming/blank.jsonl", &body).await;
        app.run("incoming/blank.jsonl", &v, later()).await.unwrap();
        let done = ingest(&app, "incoming/blank.jsonl", &v);
        assert_eq!(done.status, IngestStatus::Completed);
        assert_eq!(done.counts.received, 1);
        assert_eq!(done.next_line, 1_000_002);
    }

    #[tokio::test]
    async fn a_chunk_ends_at_its_bytes_and_blank_lines_do_not_count() {
        let app = app(1_000);
        let big = "w ".repeat(10_000);
        let body: Vec<String> = (0..120)
            .map(|i| posting(&format!("b{i}"), "t").replace("\"d\"", &format!("\"{big}\"")))
            .chain(std::iter::repeat_n(String::new(), 500))
            .collect();
        let v = put(&app, "incoming/b.jsonl", &body.join("\n")).await;
        app.run("incoming/b.jsonl", &v, later()).await.unwrap();
        let upserts = app.jobs.upserts.lock().unwrap().clone();
        assert!(upserts.len() >= 4, "chunks of at most 512 KiB: {upserts:?}");
        assert!(upserts.iter().all(|n| *n <= 27), "{upserts:?}");
        assert_eq!(upserts.iter().sum::<u64>(), 120);
        assert_eq!(ingest(&app, "incoming/b.jsonl", &v).counts.received, 120);
    }

    #[tokio::test]
    async fn a_bad_object_fails_with_its_reason_and_keeps_what_it_counted() {
        let app = app(8);
        for (key, body, says) in [
            ("incoming/empty.jsonl", "", "empty (0 bytes)"),
            ("incoming/a.csv", "id,title", "only .jsonl and .jsonl.gz"),
        ] {
            let v = put(&app, key, body).await;
            let outcome = app.run(key, &v, later()).await.unwrap();
            assert_eq!(outcome, Outcome::Finished(IngestStatus::Failed));
            let failed = ingest(&app, key, &v);
            assert_eq!(failed.errors[0].line, 0);
            assert!(
                failed.errors[0].message.contains(says),
                "{:?}",
                failed.errors
            );
        }
        // Not JSON Lines: every line is rejected with its reason.
        let v = put(&app, "incoming/array.jsonl", "[\n  {\"id\": 1},\n  2\n]").await;
        app.run("incoming/array.jsonl", &v, later()).await.unwrap();
        let done = ingest(&app, "incoming/array.jsonl", &v);
        assert_eq!(
            done.counts,
            IngestCounts {
                received: 4,
                rejected: 4,
                ..Default::default()
            }
        );
    }

    #[tokio::test]
    async fn test_events_and_other_prefixes_are_done_and_the_schedule_deletes_expired() {
        let app = app(8);
        let test_event = json!({"Service": "Amazon S3", "Event": "s3:TestEvent"}).to_string();
        let other = json!({"Records": [{"eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "b"}, "object": {"key": "reports/x.json"}}}]})
        .to_string();
        let event = json!({"Records": [
            {"messageId": "t", "body": test_event}, {"messageId": "o", "body": other}]});
        assert_eq!(
            app.handle(event, later()).await["batchItemFailures"],
            json!([])
        );
        assert!(app.ingests.ingests.lock().unwrap().is_empty());

        let mut old = catalogue::parse_job(&posting("old", "t")).unwrap();
        old.valid_through = Some(chrono::Utc::now() - chrono::Duration::days(31));
        old.embedding = Some(vec![0.5; 384]);
        app.jobs.rows.lock().unwrap().insert(
            "old".into(),
            HashedJob {
                job: old,
                content_hash: [0; 32],
            },
        );
        let answer = app.handle(json!({"jobmatch": "expire"}), later()).await;
        assert_eq!(answer["deleted"], 1);
        assert_eq!(
            decode_key("incoming/my+jobs%2B1.jsonl"),
            "incoming/my jobs+1.jsonl"
        );
    }
}

//! In-memory adapters for unit tests of the domain and the handlers. They keep
//! the same conditional semantics as the real stores, but nothing persists.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

use crate::domain::{
    Candidate, Filters, JobRecord, MatchResult, ProfileRecord, Routing, Task, TaskError,
    TaskMessage, TaskStatus, Timestamp,
};
use crate::error::{Error, Result};
use crate::ports::{
    CacheKey, Cancel, Claim, DataVersions, Embedder, Fence, Holds, IdempotentTaskStore, JobIndex,
    Lookup, MatchCache, Neighbours, PageCursor, Query, QuotaStore, TaskCanceller, TaskLister,
    TaskPage, TaskQueue, TaskReader, TaskWriter,
};
use crate::quota::{Policy, RateLimit};

fn poisoned() -> Error {
    Error::Internal("lock poisoned".into())
}

#[derive(Default, Debug)]
pub struct MemoryTaskStore {
    pub tasks: Mutex<HashMap<String, Task>>,
}

impl MemoryTaskStore {
    fn update(
        &self,
        task_id: &str,
        fence: Fence,
        now: DateTime<Utc>,
        f: impl FnOnce(&mut Task),
    ) -> Result<bool> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        // An expired task is absent, as in DynamoTaskStore's condition.
        let Some(task) = tasks.get_mut(task_id).filter(|t| !t.is_expired(now)) else {
            return Ok(false);
        };
        let holds = match fence {
            Fence::Pending => task.status == TaskStatus::Pending,
            Fence::Attempt(a) => task.status == TaskStatus::Processing && task.attempts == a,
            Fence::Unfinished => !task.status.is_finished(),
        };
        if holds {
            f(task);
        }
        Ok(holds)
    }
}

impl TaskReader for MemoryTaskStore {
    async fn get(&self, task_id: &str, now: DateTime<Utc>) -> Result<Option<Task>> {
        let tasks = self.tasks.lock().map_err(|_| poisoned())?;
        Ok(tasks.get(task_id).filter(|t| !t.is_expired(now)).cloned())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

impl TaskWriter for MemoryTaskStore {
    async fn create(&self, task: &Task) -> Result<()> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        if tasks.contains_key(&task.task_id) {
            return Err(Error::Internal("task exists".into()));
        }
        tasks.insert(task.task_id.clone(), task.clone());
        Ok(())
    }

    async fn claim(&self, task_id: &str, now: DateTime<Utc>, lease_until_ms: i64) -> Result<Claim> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        let Some(task) = tasks.get_mut(task_id).filter(|t| !t.is_expired(now)) else {
            return Ok(Claim::Missing);
        };
        let lease_over = task.lease_until.is_none_or(|l| l < now.timestamp_millis());
        match task.status {
            s if s.is_finished() => Ok(Claim::Finished(s)),
            TaskStatus::Processing if !lease_over => Ok(Claim::Busy),
            _ => {
                task.status = TaskStatus::Processing;
                task.attempts += 1;
                task.started_at = Some(Timestamp::from(now));
                task.updated_at = Timestamp::from(now);
                task.lease_until = Some(lease_until_ms);
                Ok(Claim::Claimed(Box::new(task.clone())))
            }
        }
    }

    async fn complete(
        &self,
        task_id: &str,
        fence: Fence,
        result: &MatchResult,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.update(task_id, fence, now, |t| {
            t.status = TaskStatus::Completed;
            t.result = Some(result.clone());
            t.drop_text();
            t.completed_at = Some(Timestamp::from(now));
            t.updated_at = Timestamp::from(now);
            t.lease_until = None;
        })
    }

    async fn fail(
        &self,
        task_id: &str,
        fence: Fence,
        error: &TaskError,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.update(task_id, fence, now, |t| {
            t.status = TaskStatus::Failed;
            t.error = Some(error.clone());
            t.drop_text();
            t.completed_at = Some(Timestamp::from(now));
            t.updated_at = Timestamp::from(now);
            t.lease_until = None;
        })
    }

    async fn release(&self, task_id: &str, attempt: u32, now: DateTime<Utc>) -> Result<()> {
        self.update(task_id, Fence::Attempt(attempt), now, |t| {
            t.lease_until = Some(0);
            t.updated_at = Timestamp::from(now);
        })
        .map(|_| ())
    }
}

impl TaskCanceller for MemoryTaskStore {
    async fn cancel(&self, task_id: &str, owner: &str, now: DateTime<Utc>) -> Result<Cancel> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        let Some(task) = tasks
            .get_mut(task_id)
            .filter(|t| !t.is_expired(now) && t.owner == owner)
        else {
            return Ok(Cancel::Missing);
        };
        if task.status.is_finished() {
            return Ok(Cancel::Finished(Box::new(task.clone())));
        }
        task.status = TaskStatus::Cancelled;
        task.drop_text();
        task.completed_at = Some(Timestamp::from(now));
        task.updated_at = Timestamp::from(now);
        task.lease_until = None;
        Ok(Cancel::Cancelled(Box::new(task.clone())))
    }
}

impl IdempotentTaskStore for MemoryTaskStore {
    async fn create_or_get(&self, task: &Task, now: DateTime<Utc>) -> Result<Option<Task>> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        match tasks.get(&task.task_id).filter(|t| !t.is_expired(now)) {
            Some(existing) => Ok(Some(existing.clone())),
            None => {
                tasks.insert(task.task_id.clone(), task.clone());
                Ok(None)
            }
        }
    }

    async fn replace_unqueued(&self, task: &Task) -> Result<bool> {
        let mut tasks = self.tasks.lock().map_err(|_| poisoned())?;
        if !tasks.get(&task.task_id).is_some_and(Task::never_queued) {
            return Ok(false);
        }
        tasks.insert(task.task_id.clone(), task.clone());
        Ok(true)
    }
}

impl TaskLister for MemoryTaskStore {
    async fn list(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        limit: u32,
        after: Option<&PageCursor>,
    ) -> Result<TaskPage> {
        let tasks = self.tasks.lock().map_err(|_| poisoned())?;
        let key = |t: &Task| {
            (
                t.created_at
                    .get()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                t.task_id.clone(),
            )
        };
        let mut mine: Vec<&Task> = tasks
            .values()
            .filter(|t| t.owner == owner && !t.is_expired(now))
            .filter(|t| after.is_none_or(|c| key(t) < (c.created_at.clone(), c.task_id.clone())))
            .collect();
        mine.sort_by_key(|t| std::cmp::Reverse(key(t)));
        let more = mine.len() > limit as usize;
        mine.truncate(limit as usize);
        let next = mine.last().filter(|_| more).map(|t| {
            let (created_at, task_id) = key(t);
            PageCursor {
                created_at,
                task_id,
            }
        });
        Ok(TaskPage {
            tasks: mine.into_iter().cloned().collect(),
            next,
        })
    }
}

#[derive(Default, Debug)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<TaskMessage>>,
    /// The routing of each message in `sent`, in the same order.
    pub routing: Mutex<Vec<Routing>>,
    /// When set, every send fails as if SQS were down.
    pub down: bool,
}

impl TaskQueue for MemoryQueue {
    async fn send(&self, message: &TaskMessage, routing: &Routing) -> Result<()> {
        if self.down {
            return Err(Error::unavailable("sqs", "queue is down"));
        }
        let mut sent = self.sent.lock().map_err(|_| poisoned())?;
        let mut routed = self.routing.lock().map_err(|_| poisoned())?;
        sent.push(message.clone());
        routed.push(routing.clone());
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// The quota's buckets in memory: each caller's tat (`crate::quota`), with
/// the same arithmetic as `adapters::dynamo_quota`'s conditional writes.
#[derive(Debug)]
pub struct MemoryQuota {
    pub policy: Policy,
    pub buckets: Mutex<HashMap<String, i64>>,
    /// When set, every take fails as if the store were down.
    pub down: bool,
}

impl MemoryQuota {
    pub fn new(policy: Policy) -> MemoryQuota {
        MemoryQuota {
            policy,
            buckets: Mutex::default(),
            down: false,
        }
    }
}

impl QuotaStore for MemoryQuota {
    async fn take(&self, caller: &str, now: DateTime<Utc>) -> Result<RateLimit> {
        if self.down {
            return Err(Error::unavailable("quota store", "quota store is down"));
        }
        let now_us = now.timestamp_micros();
        let mut buckets = self.buckets.lock().map_err(|_| poisoned())?;
        match self.policy.take(buckets.get(caller).copied(), now_us) {
            Ok((tat, limit)) => {
                buckets.insert(caller.to_owned(), tat);
                Ok(limit)
            }
            Err(limit) => Err(Error::QuotaExceeded(limit)),
        }
    }
}

/// Exact cosine search over jobs held in memory.
#[derive(Default, Debug)]
pub struct MemoryJobIndex {
    pub jobs: Vec<JobRecord>,
    pub profiles: Vec<ProfileRecord>,
    /// When set, every search fails as if PostgreSQL were down.
    pub down: bool,
}

fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

impl JobIndex for MemoryJobIndex {
    async fn nearest(&self, query: Query<'_>, filters: &Filters, count: u32) -> Result<Neighbours> {
        if self.down {
            return Err(Error::unavailable("postgres", "database is down"));
        }
        let (embedding, profile_skills) = match query {
            Query::Embedding(e) => (e.to_vec(), None),
            Query::Profile(user) => {
                let p = self
                    .profiles
                    .iter()
                    .find(|p| p.user_id == user)
                    .ok_or(Error::ProfileNotFound)?;
                let e = p.embedding.clone().ok_or(Error::ProfileNotFound)?;
                (e, Some(p.skills.clone()))
            }
        };
        let now = Utc::now();
        let mut candidates: Vec<Candidate> = self
            .jobs
            .iter()
            .filter(|j| j.live_at(now) && filters.admits(j, now))
            .filter_map(|j| Some((j, j.embedding.as_deref()?)))
            .map(|(j, e)| Candidate {
                job_id: j.id.clone(),
                title: j.title.clone(),
                company: j.company.clone(),
                location: j.location.clone(),
                remote: j.remote,
                employment_type: j.employment_type,
                salary_min: j.salary_min,
                salary_max: j.salary_max,
                posted_at: j.posted_at,
                skills: j.skills.clone(),
                valid_through: j.valid_through,
                similarity: cosine_similarity(&embedding, e),
            })
            .collect();
        candidates.sort_by(|a, b| {
            b.similarity
                .total_cmp(&a.similarity)
                .then_with(|| a.job_id.cmp(&b.job_id))
        });
        candidates.truncate(count as usize);
        Ok(Neighbours {
            profile_skills,
            candidates,
        })
    }

    async fn pgvector_version(&self) -> Result<String> {
        Ok("memory".into())
    }
}

/// A stand-in for the model in unit tests: each lower-cased word adds one to
/// a hashed component, so texts sharing words get close vectors. Counts its
/// calls; `down` makes every call fail.
#[derive(Default, Debug)]
pub struct MemoryEmbedder {
    pub calls: std::sync::atomic::AtomicUsize,
    pub down: bool,
}

impl MemoryEmbedder {
    pub fn vector(text: &str) -> Vec<f32> {
        use std::hash::{Hash, Hasher};
        let mut v = vec![0f32; crate::domain::EMBEDDING_DIM];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            word.to_lowercase().hash(&mut h);
            let i = (h.finish() % crate::domain::EMBEDDING_DIM as u64) as usize;
            v[i] += 1.0;
        }
        v[0] += 1e-3; // never the zero vector
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    }
}

impl Embedder for MemoryEmbedder {
    fn model_id(&self) -> &str {
        "memory-bag-of-words"
    }

    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.down {
            return Err(Error::Internal("the model is down".into()));
        }
        Ok(texts.iter().map(|t| MemoryEmbedder::vector(t)).collect())
    }
}

/// A cached result: its versions, itself, and until when it is usable.
pub type CachedResult = (DataVersions, MatchResult, Option<DateTime<Utc>>);

/// The cache in memory, with the versions a test moves by hand.
#[derive(Default, Debug)]
pub struct MemoryCache {
    pub results: Mutex<HashMap<CacheKey, CachedResult>>,
    pub embeddings: Mutex<HashMap<CacheKey, Vec<f32>>>,
    /// The current `jobs` version.
    pub jobs_version: Mutex<i64>,
    /// The current version of each stored profile.
    pub profile_versions: Mutex<HashMap<String, i64>>,
    /// When set, every call fails as if PostgreSQL were down.
    pub down: bool,
}

impl MemoryCache {
    fn check(&self) -> Result<()> {
        if self.down {
            return Err(Error::unavailable("cache", "cache is down"));
        }
        Ok(())
    }

    fn versions(&self, profile_user: Option<&str>) -> Result<DataVersions> {
        let profile = match profile_user {
            Some(user) => self
                .profile_versions
                .lock()
                .map_err(|_| poisoned())?
                .get(user)
                .copied(),
            None => None,
        };
        Ok(DataVersions {
            jobs: *self.jobs_version.lock().map_err(|_| poisoned())?,
            profile,
        })
    }
}

impl MatchCache for MemoryCache {
    async fn lookup(&self, key: &CacheKey, profile_user: Option<&str>) -> Result<Lookup> {
        self.check()?;
        let now = self.versions(profile_user)?;
        let results = self.results.lock().map_err(|_| poisoned())?;
        Ok(match results.get(key) {
            Some((at, result, until)) if *at == now && until.is_none_or(|u| Utc::now() < u) => {
                Lookup::Hit(result.clone())
            }
            _ => Lookup::Miss(now),
        })
    }

    async fn store(
        &self,
        key: &CacheKey,
        _profile_user: Option<&str>,
        versions: DataVersions,
        result: &MatchResult,
        holds: Holds,
    ) -> Result<()> {
        self.check()?;
        let until = holds.until();
        self.results
            .lock()
            .map_err(|_| poisoned())?
            .insert(*key, (versions, result.clone(), until));
        Ok(())
    }

    async fn embedding(&self, key: &CacheKey) -> Result<Option<Vec<f32>>> {
        self.check()?;
        Ok(self
            .embeddings
            .lock()
            .map_err(|_| poisoned())?
            .get(key)
            .cloned())
    }

    async fn store_embedding(&self, key: &CacheKey, embedding: &[f32]) -> Result<()> {
        self.check()?;
        self.embeddings
            .lock()
            .map_err(|_| poisoned())?
            .insert(*key, embedding.to_vec());
        Ok(())
    }
}

/// The ingest records in memory, with DynamoIngestStore's conditions.
#[derive(Default, Debug)]
pub struct MemoryIngestStore {
    pub ingests: Mutex<HashMap<String, crate::catalogue::Ingest>>,
}

impl crate::ports::IngestStore for MemoryIngestStore {
    async fn create(&self, ingest: &crate::catalogue::Ingest) -> Result<crate::catalogue::Ingest> {
        let mut all = self.ingests.lock().map_err(|_| poisoned())?;
        Ok(all
            .entry(ingest.ingest_id.clone())
            .or_insert_with(|| ingest.clone())
            .clone())
    }

    async fn get(&self, ingest_id: &str) -> Result<Option<crate::catalogue::Ingest>> {
        let all = self.ingests.lock().map_err(|_| poisoned())?;
        Ok(all.get(ingest_id).cloned())
    }

    async fn replace(&self, ingest: &crate::catalogue::Ingest) -> Result<bool> {
        let mut all = self.ingests.lock().map_err(|_| poisoned())?;
        match all.get_mut(&ingest.ingest_id) {
            Some(stored) if stored.revision == ingest.revision => {
                *stored = ingest.clone();
                stored.revision += 1;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// The `jobs` table in memory: each posting with its content hash, and the
/// count of rows each upsert wrote. `fail_upserts` makes upserts fail from
/// the given call on (1-based), as a killed connection would.
#[derive(Default, Debug)]
pub struct MemoryJobs {
    pub rows: Mutex<HashMap<String, crate::ports::HashedJob>>,
    pub upserts: Mutex<Vec<u64>>,
    pub fail_upserts_from: Mutex<Option<usize>>,
}

impl crate::ports::JobWriter for MemoryJobs {
    async fn stored_hashes(&self, ids: &[&str]) -> Result<HashMap<String, Option<[u8; 32]>>> {
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(ids
            .iter()
            .filter_map(|id| {
                rows.get(*id)
                    .map(|r| (id.to_string(), Some(r.content_hash)))
            })
            .collect())
    }

    async fn upsert(&self, jobs: &[crate::ports::HashedJob]) -> Result<u64> {
        let mut upserts = self.upserts.lock().map_err(|_| poisoned())?;
        let call = upserts.len() + 1;
        if self
            .fail_upserts_from
            .lock()
            .map_err(|_| poisoned())?
            .is_some_and(|from| call >= from)
        {
            return Err(Error::unavailable("memory", "connection killed"));
        }
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        let mut written = 0;
        for job in jobs {
            if job.job.embedding.is_none() {
                return Err(Error::Internal(format!("{} has no embedding", job.job.id)));
            }
            if rows.get(&job.job.id).map(|r| r.content_hash) != Some(job.content_hash) {
                rows.insert(job.job.id.clone(), job.clone());
                written += 1;
            }
        }
        upserts.push(written);
        Ok(written)
    }

    async fn delete_expired(&self, days: u32) -> Result<u64> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        let before = Utc::now() - chrono::Duration::days(i64::from(days));
        let n = rows.len();
        rows.retain(|_, r| r.job.valid_through.is_none_or(|end| end >= before));
        Ok((n - rows.len()) as u64)
    }
}

impl crate::ports::JobAdmin for MemoryJobs {
    async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(rows.get(id).map(|r| JobRecord {
            embedding: None,
            ..r.job.clone()
        }))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let mut rows = self.rows.lock().map_err(|_| poisoned())?;
        Ok(rows.remove(id).is_some())
    }
}

/// One stored version of an object: its id and its bytes.
pub type ObjectVersion = (String, Vec<u8>);

/// A versioned bucket in memory: every put makes a new version.
#[derive(Default, Debug)]
pub struct MemoryObjects {
    /// key -> versions, oldest first.
    pub objects: Mutex<HashMap<String, Vec<ObjectVersion>>>,
}

impl crate::ports::ObjectStore for MemoryObjects {
    async fn current_version(&self, key: &str) -> Result<Option<String>> {
        let objects = self.objects.lock().map_err(|_| poisoned())?;
        Ok(objects
            .get(key)
            .and_then(|v| v.last())
            .map(|(version, _)| version.clone()))
    }

    async fn open(
        &self,
        key: &str,
        version: &str,
        gzip: bool,
    ) -> Result<crate::ports::ObjectReader> {
        if gzip {
            return Err(Error::Internal("MemoryObjects holds no gzip".into()));
        }
        let objects = self.objects.lock().map_err(|_| poisoned())?;
        let bytes = objects
            .get(key)
            .and_then(|vs| vs.iter().find(|(v, _)| v == version))
            .map(|(_, b)| b.clone())
            .ok_or_else(|| Error::NotFound(format!("{key}@{version}")))?;
        Ok(Box::pin(std::io::Cursor::new(bytes)))
    }

    async fn put(&self, key: &str, body: Vec<u8>, _content_type: &str) -> Result<String> {
        let mut objects = self.objects.lock().map_err(|_| poisoned())?;
        let versions = objects.entry(key.to_owned()).or_default();
        let version = format!("v{}", versions.len() + 1);
        versions.push((version.clone(), body));
        Ok(version)
    }
}

/// The ingest queue's continuations, kept in order.
#[derive(Default, Debug)]
pub struct MemoryContinuations {
    pub sent: Mutex<Vec<String>>,
}

impl crate::ports::Continuations for MemoryContinuations {
    async fn send_again(&self, body: &str) -> Result<()> {
        self.sent
            .lock()
            .map_err(|_| poisoned())?
            .push(body.to_owned());
        Ok(())
    }
}

/// The callbacks' queue in memory: what was queued, and each retry's wait.
#[derive(Default, Debug)]
pub struct MemoryOutbox {
    pub sent: Mutex<Vec<String>>,
    /// `(receipt handle, delay)` of each `retry_after`.
    pub delays: Mutex<Vec<(String, std::time::Duration)>>,
    /// When set, nothing can be queued.
    pub down: bool,
}

impl crate::ports::CallbackOutbox for MemoryOutbox {
    async fn send(&self, bodies: &[String]) -> Result<Vec<usize>> {
        if self.down {
            return Ok((0..bodies.len()).collect());
        }
        self.sent
            .lock()
            .map_err(|_| poisoned())?
            .extend(bodies.iter().cloned());
        Ok(Vec::new())
    }

    async fn retry_after(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<()> {
        self.delays
            .lock()
            .map_err(|_| poisoned())?
            .push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}

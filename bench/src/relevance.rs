//! Relevance on the demo database (`make up` loads it, embedded with the real
//! model): labelled queries (bench/data/relevance_queries.json), each embedded
//! here with all-MiniLM-L6-v2, ranked three ways:
//! (a) skill overlap alone, over all jobs, in SQL;
//! (b) the embedding alone, exact cosine order (index scans off);
//! (c) jobmatch: `shared::service::run_match` on `PgJobIndex`, what the
//!     worker returns for the query's embedding and skills (DESIGN.md
//!     "Ranking": the C nearest, then 0.8 similarity + 0.2 skill overlap).
//!
//! A job is relevant when its family (in its id) is the query's. Reported:
//! precision@10 and nDCG@10 with binary gains, all queries and by kind, and
//! the agreement of (c) with the same ranking computed exactly in SQL.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use jobmatch_cli::generate::family_of_job_id;
use pgvector::Vector;
use serde::{Deserialize, Serialize};
use shared::adapters::postgres::PgJobIndex;
use shared::domain::{candidate_count, normalise_skills, MatchRequest};
use sqlx::PgPool;

/// k of precision@k and nDCG@k, and the `limit` of (c) (the SQL says 10 too).
pub const K: usize = 10;

#[derive(Debug, Clone, Deserialize)]
pub struct RelevanceQuery {
    pub id: String,
    pub family: String,
    pub kind: String,
    pub text: String,
    pub skills: Vec<String>,
}

#[derive(Deserialize)]
struct QueryFile {
    queries: Vec<RelevanceQuery>,
}

pub fn load_queries(path: &Path) -> Result<Vec<RelevanceQuery>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file: QueryFile =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    if file.queries.is_empty() {
        bail!("{} holds no queries", path.display());
    }
    Ok(file.queries)
}

/// Mean precision@10 and nDCG@10 of one method over a set of queries.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Metrics {
    pub queries: usize,
    pub precision_at_10: f64,
    pub ndcg_at_10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MethodFigures {
    pub method: String,
    pub all: Metrics,
    pub resume: Metrics,
    pub search: Metrics,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorstQuery {
    pub id: String,
    pub kind: String,
    pub family: String,
    pub precision_at_10: f64,
    pub ndcg_at_10: f64,
    /// Families of the other jobs it got, most frequent first.
    pub got_instead: Vec<(String, usize)>,
    pub text: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub got: f64,
    pub want: f64,
    pub pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Relevance {
    pub queries: usize,
    pub demo_jobs: usize,
    pub families: usize,
    /// Jobs whose id names no known family (counted as never relevant).
    pub jobs_without_family: usize,
    /// The smallest number of jobs of a queried family (the ideal DCG
    /// assumes at least 10).
    pub min_jobs_per_queried_family: usize,
    pub exact_scan_max_rows: Option<i64>,
    pub candidates: u32,
    pub embed_all_ms: f64,
    pub skills_only: MethodFigures,
    pub embedding_only: MethodFigures,
    pub jobmatch: MethodFigures,
    /// Mean share of (c)'s top 10 that the exact SQL form of the ranking
    /// (exact C nearest, then the score) also has: 1.0 when the matcher is
    /// exactly DESIGN.md's ranking.
    pub jobmatch_vs_exact_design: f64,
    pub targets: Vec<Target>,
    pub worst: Vec<WorstQuery>,
}

/// Gains of a top list: 1 where the job's family is the query's.
fn gains(ids: &[String], family: &str) -> Vec<f64> {
    ids.iter()
        .take(K)
        .map(|id| f64::from(u8::from(family_of_job_id(id) == Some(family))))
        .collect()
}

fn precision(g: &[f64]) -> f64 {
    g.iter().fold(0.0, |a, b| a + b) / K as f64
}

/// Binary gains, DCG = sum rel_i / log2(i + 1) for ranks i = 1..10; the
/// ideal puts min(10, jobs of the family) relevant jobs first.
fn ndcg(g: &[f64], relevant_jobs: usize) -> f64 {
    let discount = |i: usize| 1.0 / ((i + 2) as f64).log2();
    let dcg: f64 = g.iter().enumerate().map(|(i, r)| r * discount(i)).sum();
    let ideal: f64 = (0..relevant_jobs.min(K)).map(discount).sum();
    if ideal == 0.0 {
        0.0
    } else {
        dcg / ideal
    }
}

/// Per-query scores of one method.
#[derive(Default)]
struct Scores {
    precision: Vec<f64>,
    ndcg: Vec<f64>,
}

impl Scores {
    fn add(&mut self, ids: &[String], family: &str, relevant_jobs: usize) {
        let g = gains(ids, family);
        self.precision.push(precision(&g));
        self.ndcg.push(ndcg(&g, relevant_jobs));
    }

    fn figures(&self, method: &str, queries: &[RelevanceQuery]) -> MethodFigures {
        let over = |kind: Option<&str>| {
            let picked: Vec<usize> = (0..queries.len())
                .filter(|&i| kind.is_none_or(|k| queries[i].kind == k))
                .collect();
            let n = picked.len().max(1) as f64;
            Metrics {
                queries: picked.len(),
                precision_at_10: picked.iter().map(|&i| self.precision[i]).sum::<f64>() / n,
                ndcg_at_10: picked.iter().map(|&i| self.ndcg[i]).sum::<f64>() / n,
            }
        };
        MethodFigures {
            method: method.to_owned(),
            all: over(None),
            resume: over(Some("resume")),
            search: over(Some("search")),
        }
    }
}

/// `|query ∩ job| / max(1, |job|)` in SQL, counted over the job's skills as
/// `shared::ranking::skill_overlap` counts them; the argument is the
/// placeholder of the query's skills (`text[]`).
macro_rules! overlap_sql {
    ($skills:literal) => {
        concat!(
            "((SELECT count(*) FROM unnest(skills) AS s WHERE s = ANY(",
            $skills,
            "))::float8 / greatest(1, cardinality(skills)))"
        )
    };
}

/// (a): the best 10 by skill overlap alone over all jobs, ties by job id.
async fn skills_only(pool: &PgPool, skills: &[String]) -> Result<Vec<String>> {
    const SQL: &str = concat!(
        "SELECT id FROM jobs ORDER BY ",
        overlap_sql!("$1"),
        " DESC, id COLLATE \"C\" LIMIT 10"
    );
    Ok(sqlx::query_scalar(SQL).bind(skills).fetch_all(pool).await?)
}

/// (b) and the exact SQL form of (c), in one transaction with index scans
/// off, so that both are exact.
async fn exact(
    pool: &PgPool,
    embedding: &[f32],
    skills: &[String],
    candidates: u32,
) -> Result<(Vec<String>, Vec<String>)> {
    const NEAREST: &str =
        "SELECT id FROM jobs ORDER BY embedding <=> $1, id COLLATE \"C\" LIMIT 10";
    const DESIGN: &str = concat!(
        "WITH c AS (SELECT id, skills, 1 - (embedding <=> $1) AS similarity FROM jobs \
                    ORDER BY embedding <=> $1, id COLLATE \"C\" LIMIT $3) \
         SELECT id FROM c ORDER BY 0.8 * similarity + 0.2 * ",
        overlap_sql!("$2"),
        " DESC, id COLLATE \"C\" LIMIT 10"
    );
    let v = Vector::from(embedding.to_vec());
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL enable_indexscan = off")
        .execute(&mut *tx)
        .await?;
    let nearest: Vec<String> = sqlx::query_scalar(NEAREST)
        .bind(&v)
        .fetch_all(&mut *tx)
        .await?;
    let design: Vec<String> = sqlx::query_scalar(DESIGN)
        .bind(&v)
        .bind(skills)
        .bind(i64::from(candidates))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((nearest, design))
}

pub async fn measure(
    pool: &PgPool,
    exact_scan_max_rows: Option<i64>,
    queries: &[RelevanceQuery],
) -> Result<Relevance> {
    let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM jobs")
        .fetch_all(pool)
        .await
        .context("reading the demo database's jobs (is `make up` done loading?)")?;
    let mut per_family: HashMap<&str, usize> = HashMap::new();
    let mut without_family = 0;
    for id in &ids {
        match family_of_job_id(id) {
            Some(f) => *per_family.entry(f).or_default() += 1,
            None => without_family += 1,
        }
    }
    if ids.len() < K {
        bail!(
            "the demo database holds {} jobs: wait until `make up` has loaded its data",
            ids.len()
        );
    }
    let min_per_family = queries
        .iter()
        .map(|q| per_family.get(q.family.as_str()).copied().unwrap_or(0))
        .min()
        .unwrap_or(0);
    if min_per_family < K {
        eprintln!(
            "bench: relevance: a queried family has only {min_per_family} jobs (< {K}); \
             its ideal DCG counts only those"
        );
    }

    eprintln!(
        "bench: relevance: loading the model from {}",
        embed::default_dir().display()
    );
    let model =
        tokio::task::spawn_blocking(|| embed::MiniLm::load(&embed::default_dir())).await??;
    let texts: Vec<String> = queries.iter().map(|q| q.text.clone()).collect();
    let t = Instant::now();
    let (model, embeddings) = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let v = model.embed(&refs);
        (model, v)
    })
    .await?;
    let embeddings = embeddings?;
    let embed_all_ms = t.elapsed().as_secs_f64() * 1000.0;
    drop(model);

    let index = PgJobIndex::new(pool.clone(), exact_scan_max_rows);
    let candidates = candidate_count(K as u32);
    let (mut a, mut b, mut c) = (Scores::default(), Scores::default(), Scores::default());
    let mut agreement = Vec::new();
    let mut got_c = Vec::new();
    eprintln!("bench: relevance: {} queries", queries.len());
    for (q, embedding) in queries.iter().zip(&embeddings) {
        let skills = normalise_skills(&q.skills);
        let relevant = per_family.get(q.family.as_str()).copied().unwrap_or(0);

        let by_skills = skills_only(pool, &skills).await?;
        a.add(&by_skills, &q.family, relevant);

        let (nearest, design) = exact(pool, embedding, &skills, candidates).await?;
        b.add(&nearest, &q.family, relevant);

        let request = MatchRequest {
            embedding: Some(embedding.clone()),
            text: None,
            skills: Some(skills.clone()),
            filters: Default::default(),
            limit: K as u32,
            callback: None,
        };
        let result = shared::service::run_match(
            &index,
            &shared::ports::NoModel,
            &shared::ports::NoCache,
            "bench",
            &request,
            &shared::service::Always,
        )
        .await?;
        let ours: Vec<String> = result.matches.iter().map(|m| m.job_id.clone()).collect();
        c.add(&ours, &q.family, relevant);
        let design: HashSet<&String> = design.iter().collect();
        agreement.push(ours.iter().filter(|id| design.contains(id)).count() as f64 / K as f64);
        got_c.push(ours);
    }

    let skills_only = a.figures("(a) skill overlap only", queries);
    let embedding_only = b.figures("(b) embedding only (exact)", queries);
    let jobmatch = c.figures("(c) jobmatch (run_match)", queries);
    let target = |name: &str, got: f64, want: f64| Target {
        name: name.to_owned(),
        got,
        want,
        pass: got >= want,
    };
    let targets = vec![
        target(
            "(c) >= (a) precision@10",
            jobmatch.all.precision_at_10,
            skills_only.all.precision_at_10,
        ),
        target(
            "(c) >= (a) nDCG@10",
            jobmatch.all.ndcg_at_10,
            skills_only.all.ndcg_at_10,
        ),
        target(
            "(c) >= (b) precision@10",
            jobmatch.all.precision_at_10,
            embedding_only.all.precision_at_10,
        ),
        target(
            "(c) >= (b) nDCG@10",
            jobmatch.all.ndcg_at_10,
            embedding_only.all.ndcg_at_10,
        ),
        target("(c) precision@10 >= 0.9", jobmatch.all.precision_at_10, 0.9),
    ];

    let mut order: Vec<usize> = (0..queries.len()).collect();
    order.sort_by(|&i, &j| {
        c.precision[i]
            .total_cmp(&c.precision[j])
            .then(c.ndcg[i].total_cmp(&c.ndcg[j]))
            .then_with(|| queries[i].id.cmp(&queries[j].id))
    });
    let worst = order
        .into_iter()
        .take(5)
        .map(|i| {
            let q = &queries[i];
            let mut others: BTreeMap<String, usize> = BTreeMap::new();
            for id in &got_c[i] {
                let f = family_of_job_id(id).unwrap_or("?");
                if f != q.family {
                    *others.entry(f.to_owned()).or_default() += 1;
                }
            }
            let mut got_instead: Vec<(String, usize)> = others.into_iter().collect();
            got_instead.sort_by(|x, y| y.1.cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
            WorstQuery {
                id: q.id.clone(),
                kind: q.kind.clone(),
                family: q.family.clone(),
                precision_at_10: c.precision[i],
                ndcg_at_10: c.ndcg[i],
                got_instead,
                text: q.text.clone(),
            }
        })
        .collect();

    Ok(Relevance {
        queries: queries.len(),
        demo_jobs: ids.len(),
        families: per_family.len(),
        jobs_without_family: without_family,
        min_jobs_per_queried_family: min_per_family,
        exact_scan_max_rows,
        candidates,
        embed_all_ms,
        skills_only,
        embedding_only,
        jobmatch_vs_exact_design: agreement.iter().sum::<f64>() / agreement.len().max(1) as f64,
        jobmatch,
        targets,
        worst,
    })
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

pub fn print(r: &Relevance) {
    let kinds = |m: &MethodFigures| (m.resume.queries, m.search.queries);
    let (resumes, searches) = kinds(&r.jobmatch);
    println!(
        "\nrelevance: {} queries ({} resume, {} search) on the demo database ({} jobs, {} families, \
         fewest jobs of a queried family {}); top {K}, relevant = same family as the query",
        r.queries, resumes, searches, r.demo_jobs, r.families, r.min_jobs_per_queried_family
    );
    println!(
        "(queries embedded in-process with all-MiniLM-L6-v2 in {:.0} ms; (c) = shared::service::run_match \
         on PgJobIndex, EXACT_SCAN_MAX_ROWS {:?} (None: derived), C = {}, score 0.8 similarity + 0.2 skill overlap)",
        r.embed_all_ms, r.exact_scan_max_rows, r.candidates
    );
    println!(
        "{:<30} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "method", "P@10", "nDCG@10", "P@10", "nDCG@10", "P@10", "nDCG@10"
    );
    println!("{:<30} {:>17} {:>17} {:>17}", "", "all", "resume", "search");
    for m in [&r.skills_only, &r.embedding_only, &r.jobmatch] {
        println!(
            "{:<30} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            m.method,
            m.all.precision_at_10,
            m.all.ndcg_at_10,
            m.resume.precision_at_10,
            m.resume.ndcg_at_10,
            m.search.precision_at_10,
            m.search.ndcg_at_10
        );
    }
    println!(
        "(c) top {K} shared with the exact SQL form of the ranking (exact C nearest, then the score): {:.3}",
        r.jobmatch_vs_exact_design
    );
    println!("targets:");
    for t in &r.targets {
        println!(
            "  {:<26} {:.3} vs {:.3}  {}",
            t.name,
            t.got,
            t.want,
            verdict(t.pass)
        );
    }
    println!("worst 5 queries of (c):");
    for w in &r.worst {
        let instead: Vec<String> = w
            .got_instead
            .iter()
            .map(|(f, n)| format!("{f} x{n}"))
            .collect();
        let mut text: String = w.text.chars().take(70).collect();
        if text.len() < w.text.len() {
            text.push_str("...");
        }
        println!(
            "  {} {:<6} {:<24} P@10 {:.1} nDCG {:.3}  got instead: {}  \"{}\"",
            w.id,
            w.kind,
            w.family,
            w.precision_at_10,
            w.ndcg_at_10,
            if instead.is_empty() {
                "-".to_owned()
            } else {
                instead.join(", ")
            },
            text
        );
    }
}

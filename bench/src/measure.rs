//! The query measurements: per class, (a) the exact scan, (b) the plain
//! pgvector query (HNSW, filter after, default settings) and (c) jobmatch's
//! matcher, each timed per query from the client, with recall@10 against (a);
//! and the sweep that measures where the exact plan stops paying off.

use std::collections::HashSet;
use std::time::Instant;

use anyhow::Result;
use pgvector::Vector;
use serde::Serialize;
use shared::adapters::postgres::{PgJobIndex, Plan};
use shared::domain::{candidate_count, Filters};
use shared::ports::Query;
use shared::request::SqlValue;
use sqlx::{PgPool, Postgres, QueryBuilder, Row};

use crate::classes::Class;

/// k of recall@k, and the `limit` the queries ask for.
pub const K: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct PlanFigures {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    /// Mean over queries of |top-k ∩ exact top-k| / |exact top-k|.
    pub recall_at_10: f64,
    pub min_recall_at_10: f64,
    /// Mean rows returned, of the 10 asked for.
    pub mean_rows: f64,
    /// Share of queries that returned min(10, passing rows).
    pub full_share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassFigures {
    pub class: String,
    pub target: String,
    pub queries: usize,
    /// Mean share of the table that passes the class's filters.
    pub mean_pass_share: f64,
    pub min_passing_rows: i64,
    pub exact: PlanFigures,
    pub naive_hnsw: PlanFigures,
    pub matcher: PlanFigures,
    /// How often the matcher chose each plan.
    pub matcher_exact_plans: usize,
    pub matcher_hnsw_plans: usize,
}

pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

fn recall(got: &[String], exact: &[String]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let got: HashSet<&String> = got.iter().take(K).collect();
    exact.iter().filter(|id| got.contains(id)).count() as f64 / exact.len() as f64
}

#[derive(Default)]
struct Samples {
    ms: Vec<f64>,
    recall: Vec<f64>,
    rows: Vec<f64>,
    full: Vec<f64>,
}

impl Samples {
    fn add(&mut self, ms: f64, got: &[String], exact: &[String], passing: i64) {
        self.ms.push(ms);
        self.recall.push(recall(got, exact));
        let rows = got.len().min(K);
        self.rows.push(rows as f64);
        let want = (passing.max(0) as usize).min(K);
        self.full.push(if rows >= want { 1.0 } else { 0.0 });
    }

    fn figures(&self) -> PlanFigures {
        PlanFigures {
            p50_ms: percentile(&self.ms, 0.5),
            p99_ms: percentile(&self.ms, 0.99),
            mean_ms: mean(&self.ms),
            recall_at_10: mean(&self.recall),
            min_recall_at_10: self.recall.iter().copied().fold(f64::INFINITY, f64::min),
            mean_rows: mean(&self.rows),
            full_share: mean(&self.full),
        }
    }
}

fn ids(index_result: &shared::ports::Neighbours) -> Vec<String> {
    index_result
        .candidates
        .iter()
        .take(K)
        .map(|c| c.job_id.clone())
        .collect()
}

/// Rows passing the filters (untimed; for the report).
pub async fn passing(pool: &PgPool, filters: &Filters) -> Result<i64> {
    let mut qb = QueryBuilder::new("SELECT count(*) FROM jobs WHERE true");
    push_filters(&mut qb, filters);
    Ok(qb.build_query_scalar().fetch_one(pool).await?)
}

/// (b): what a plain pgvector service sends, with the server's default
/// settings: the one HNSW graph of all jobs, filters applied after it.
/// As a generic plan, so that its `remote = $n` cannot use the remote jobs'
/// partial graph, which is jobmatch's own addition (a plain service's
/// prepared statement gets the generic plan after five runs anyway).
async fn naive(pool: &PgPool, embedding: &[f32], filters: &Filters) -> Result<Vec<String>> {
    let v = Vector::from(embedding.to_vec());
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT set_config('plan_cache_mode', 'force_generic_plan', true)")
        .execute(&mut *tx)
        .await?;
    let mut qb = QueryBuilder::new("SELECT id FROM jobs WHERE true");
    push_filters(&mut qb, filters);
    qb.push(" ORDER BY embedding <=> ")
        .push_bind(v)
        .push(" LIMIT ")
        .push_bind(K as i64);
    let rows = qb.build().fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
}

/// Appends ` AND <predicate>` for each filter present, its value bound as a
/// plain pgvector service would: the same predicates as the matcher's
/// (`Filters::clauses`, one definition), for the reference queries (b) and
/// the passing counts.
pub fn push_filters(qb: &mut QueryBuilder<Postgres>, filters: &Filters) {
    for clause in filters.clauses() {
        let Some(value) = clause.value() else {
            continue;
        };
        let (before, after) = clause
            .predicate
            .split_once("{v}")
            .expect("a filter's predicate names its value as {v}");
        qb.push(" AND ").push(before);
        match value.clone() {
            SqlValue::Texts(v) => qb.push_bind(v),
            SqlValue::Boolean(v) => qb.push_bind(v),
            SqlValue::BigInt(v) => qb.push_bind(v),
        };
        qb.push(after);
    }
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// The class's figures, and the exact top 10 of each of its queries (the
/// unfiltered class's are the ef_search sweep's reference).
pub async fn run_class(
    pool: &PgPool,
    index: &PgJobIndex,
    class: &Class,
    vectors: &[Vec<f32>],
    table_rows: i64,
) -> Result<(ClassFigures, Vec<Vec<String>>)> {
    let (mut a, mut b, mut c) = (Samples::default(), Samples::default(), Samples::default());
    let (mut plans_exact, mut plans_hnsw) = (0, 0);
    let mut shares = Vec::new();
    let mut min_passing = i64::MAX;
    let mut truth = Vec::new();
    let count = candidate_count(K as u32);
    for (filters, embedding) in class.filters.iter().zip(vectors.iter().cycle()) {
        let pass = passing(pool, filters).await?;
        shares.push(pass as f64 / table_rows.max(1) as f64);
        min_passing = min_passing.min(pass);
        let query = Query::Embedding(embedding);

        let t = Instant::now();
        let (exact, _) = index
            .nearest_planned(query, filters, K as u32, Some(Plan::Exact))
            .await?;
        let exact_ms = ms(t);
        let exact = ids(&exact);
        a.add(exact_ms, &exact, &exact, pass);
        truth.push(exact.clone());

        let t = Instant::now();
        let got = naive(pool, embedding, filters).await?;
        b.add(ms(t), &got, &exact, pass);

        let t = Instant::now();
        let (got, plan) = index.nearest_planned(query, filters, count, None).await?;
        c.add(ms(t), &ids(&got), &exact, pass);
        match plan {
            Plan::Exact => plans_exact += 1,
            Plan::Hnsw => plans_hnsw += 1,
        }
    }
    let figures = ClassFigures {
        class: class.name.to_owned(),
        target: class.target.to_owned(),
        queries: class.filters.len(),
        mean_pass_share: mean(&shares),
        min_passing_rows: min_passing,
        exact: a.figures(),
        naive_hnsw: b.figures(),
        matcher: c.figures(),
        matcher_exact_plans: plans_exact,
        matcher_hnsw_plans: plans_hnsw,
    };
    Ok((figures, truth))
}

/// One point of the threshold sweep: a filter passing `passing_rows`, both
/// plans forced, and the matcher's own choice.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    pub posted_within_days: i64,
    pub passing_rows: i64,
    pub exact_p50_ms: f64,
    pub hnsw_p50_ms: f64,
    pub hnsw_p99_ms: f64,
    pub hnsw_recall_at_10: f64,
    pub matcher_p50_ms: f64,
    pub matcher_p99_ms: f64,
    /// Share of the matcher's answers that came from the exact plan.
    pub matcher_exact_share: f64,
}

/// Where the plans cross: exact cost grows with the passing rows, HNSW cost
/// with the share of rows the filter drops.
pub async fn sweep(
    pool: &PgPool,
    index: &PgJobIndex,
    vectors: &[Vec<f32>],
    days: &[i64],
) -> Result<Vec<SweepPoint>> {
    let count = candidate_count(K as u32);
    let mut points = Vec::new();
    for &d in days {
        let filters = Filters {
            posted_within_days: Some(d),
            ..Default::default()
        };
        let pass = passing(pool, &filters).await?;
        let (mut exact_ms, mut hnsw_ms, mut recalls, mut matcher_ms, mut exact_plans) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0usize);
        for embedding in vectors {
            let query = Query::Embedding(embedding);
            let t = Instant::now();
            let (exact, _) = index
                .nearest_planned(query, &filters, count, Some(Plan::Exact))
                .await?;
            exact_ms.push(ms(t));
            let t = Instant::now();
            let (hnsw, _) = index
                .nearest_planned(query, &filters, count, Some(Plan::Hnsw))
                .await?;
            hnsw_ms.push(ms(t));
            recalls.push(recall(&ids(&hnsw), &ids(&exact)));
            let t = Instant::now();
            let (_, plan) = index.nearest_planned(query, &filters, count, None).await?;
            matcher_ms.push(ms(t));
            exact_plans += usize::from(plan == Plan::Exact);
        }
        let point = SweepPoint {
            posted_within_days: d,
            passing_rows: pass,
            exact_p50_ms: percentile(&exact_ms, 0.5),
            hnsw_p50_ms: percentile(&hnsw_ms, 0.5),
            hnsw_p99_ms: percentile(&hnsw_ms, 0.99),
            hnsw_recall_at_10: mean(&recalls),
            matcher_p50_ms: percentile(&matcher_ms, 0.5),
            matcher_p99_ms: percentile(&matcher_ms, 0.99),
            matcher_exact_share: exact_plans as f64 / vectors.len().max(1) as f64,
        };
        eprintln!("bench: sweep {point:?}");
        points.push(point);
    }
    Ok(points)
}

/// The smallest passing-row count from which HNSW is at least as fast as the
/// exact plan with recall@10 >= 0.98 (linear between sweep points).
pub fn crossover(points: &[SweepPoint]) -> Option<f64> {
    let mut sorted = points.to_vec();
    sorted.sort_by_key(|p| p.passing_rows);
    let hnsw_wins = |p: &SweepPoint| p.hnsw_p50_ms <= p.exact_p50_ms && p.hnsw_recall_at_10 >= 0.98;
    for pair in sorted.windows(2) {
        let (lo, hi) = (&pair[0], &pair[1]);
        if !hnsw_wins(lo) && hnsw_wins(hi) {
            let gap = |p: &SweepPoint| p.exact_p50_ms - p.hnsw_p50_ms;
            let (g0, g1) = (gap(lo), gap(hi));
            let t = if g1 > g0 {
                (-g0 / (g1 - g0)).clamp(0.0, 1.0)
            } else {
                1.0
            };
            return Some(lo.passing_rows as f64 + t * (hi.passing_rows - lo.passing_rows) as f64);
        }
    }
    None
}

/// One `hnsw.ef_search` of the plain unfiltered HNSW query for C = 100
/// ids, timed from the client like the naive plan (its own transaction for
/// the setting), with recall@10 against the exact top 10.
#[derive(Debug, Clone, Serialize)]
pub struct EfPoint {
    pub ef_search: i32,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub recall_at_10: f64,
    pub min_recall_at_10: f64,
}

/// How recall and time grow with `ef_search` on this table, unfiltered:
/// `truth` is the exact top 10 of each of `vectors` (the unfiltered class's).
pub async fn ef_sweep(
    pool: &PgPool,
    vectors: &[Vec<f32>],
    truth: &[Vec<String>],
    efs: &[i32],
) -> Result<Vec<EfPoint>> {
    let count = candidate_count(K as u32);
    let mut points = Vec::new();
    for &ef in efs {
        let (mut times, mut recalls) = (Vec::new(), Vec::new());
        for (embedding, exact) in vectors.iter().zip(truth) {
            let v = Vector::from(embedding.clone());
            let t = Instant::now();
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
                .bind(ef.to_string())
                .execute(&mut *tx)
                .await?;
            let got: Vec<String> =
                sqlx::query_scalar("SELECT id FROM jobs ORDER BY embedding <=> $1 LIMIT $2")
                    .bind(v)
                    .bind(i64::from(count))
                    .fetch_all(&mut *tx)
                    .await?;
            tx.commit().await?;
            times.push(ms(t));
            recalls.push(recall(&got, exact));
        }
        let point = EfPoint {
            ef_search: ef,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
            recall_at_10: mean(&recalls),
            min_recall_at_10: recalls.iter().copied().fold(f64::INFINITY, f64::min),
        };
        eprintln!("bench: ef_search {point:?}");
        points.push(point);
    }
    Ok(points)
}

//! `make bench BENCH_ARGS=--halfvec`: would an HNSW graph over
//! `embedding::halfvec(384)` (2-byte floats) hold recall with about half the
//! memory? Builds that expression index beside the full one, with the full
//! graph's own build options, then for the unfiltered and broad classes
//! fetches C candidates through each graph at the matcher's `ef_search`,
//! ranks them by the full-precision similarity (as the matcher scores them)
//! and compares the top 10 with the exact scan's. The index is dropped
//! afterwards: the matcher does not use it (see docs/performance.md).

use std::time::Instant;

use anyhow::Result;
use pgvector::Vector;
use serde::Serialize;
use shared::adapters::postgres::{PgJobIndex, Plan};
use shared::domain::{candidate_count, EMBEDDING_DIM};
use shared::ports::Query;
use sqlx::{PgPool, QueryBuilder, Row};

use crate::classes::Class;
use crate::measure::percentile;

const K: usize = 10;

#[derive(Debug, Clone, Serialize)]
pub struct GraphFigures {
    pub graph: &'static str,
    pub class: String,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub recall_at_10: f64,
    pub min_recall_at_10: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct HalfvecFigures {
    /// The full graph's `m` and `ef_construction`, which this one copies.
    pub build_options: String,
    /// The matcher's (`jobmatch_ef_search`), used for both graphs.
    pub ef_search: i32,
    pub build_secs: f64,
    pub full_index_mb: f64,
    pub half_index_mb: f64,
    pub graphs: Vec<GraphFigures>,
}

async fn index_mb(pool: &PgPool, name: &str) -> Result<f64> {
    let bytes: i64 = sqlx::query_scalar("SELECT pg_relation_size($1::regclass)")
        .bind(name)
        .fetch_one(pool)
        .await?;
    Ok(bytes as f64 / 1e6)
}

/// C candidates through one graph (the HNSW settings the matcher uses),
/// the best 10 by full-precision similarity.
async fn through(
    pool: &PgPool,
    half: bool,
    ef_search: i32,
    embedding: &[f32],
    class: &Class,
    i: usize,
) -> Result<Vec<String>> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT set_config('hnsw.ef_search', $1::text, true), \
         set_config('hnsw.iterative_scan', 'relaxed_order', true), \
         set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true), \
         set_config('enable_bitmapscan', 'off', true)",
    )
    .bind(ef_search)
    .execute(&mut *tx)
    .await?;
    let v = Vector::from(embedding.to_vec());
    let mut qb = QueryBuilder::new("SELECT id, 1 - (embedding <=> ");
    qb.push_bind(v.clone())
        .push(") AS similarity FROM jobs WHERE true");
    crate::measure::push_filters(&mut qb, &class.filters[i]);
    if half {
        qb.push(format!(
            " ORDER BY embedding::halfvec({EMBEDDING_DIM}) <=> "
        ))
        .push_bind(v)
        .push(format!("::halfvec({EMBEDDING_DIM})"));
    } else {
        qb.push(" ORDER BY embedding <=> ").push_bind(v);
    }
    qb.push(" LIMIT ")
        .push_bind(i64::from(candidate_count(K as u32)));
    // Unnamed: planned for its values, as the matcher's statements are.
    let rows = qb.build().persistent(false).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut scored: Vec<(String, f64)> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<f64, _>(1)))
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(scored.into_iter().take(K).map(|(id, _)| id).collect())
}

/// `build_options`: the full graph's reloptions (`m=16,ef_construction=128`);
/// `ef_search`: the matcher's.
pub async fn measure(
    pool: &PgPool,
    index: &PgJobIndex,
    classes: &[Class],
    vectors: &[Vec<f32>],
    build_options: &str,
    ef_search: i32,
) -> Result<HalfvecFigures> {
    // The memory setting and the build on one connection: a pool could run
    // them on two.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET maintenance_work_mem = '4GB'")
        .execute(&mut *conn)
        .await?;
    let t = Instant::now();
    let with = if build_options.is_empty() {
        String::new()
    } else {
        format!(" WITH ({build_options})")
    };
    // The options are PostgreSQL's own reloptions of the full graph.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE INDEX IF NOT EXISTS jobs_embedding_hnsw_half ON jobs \
         USING hnsw ((embedding::halfvec({EMBEDDING_DIM})) halfvec_cosine_ops){with}"
    )))
    .execute(&mut *conn)
    .await?;
    sqlx::query("RESET maintenance_work_mem")
        .execute(&mut *conn)
        .await?;
    drop(conn);
    let build_secs = t.elapsed().as_secs_f64();
    let full_index_mb = index_mb(pool, "jobs_embedding_hnsw").await?;
    let half_index_mb = index_mb(pool, "jobs_embedding_hnsw_half").await?;
    let mut graphs = Vec::new();
    for class in classes
        .iter()
        .filter(|c| c.name == "unfiltered" || c.name == "broad")
    {
        let n = class.filters.len().min(100);
        let mut exact = Vec::with_capacity(n);
        for (i, v) in vectors.iter().cycle().take(n).enumerate() {
            let (got, _) = index
                .nearest_planned(
                    Query::Embedding(v),
                    &class.filters[i],
                    K as u32,
                    Some(Plan::Exact),
                )
                .await?;
            exact.push(
                got.candidates
                    .into_iter()
                    .map(|c| c.job_id)
                    .collect::<Vec<_>>(),
            );
        }
        for (graph, half) in [("vector", false), ("halfvec", true)] {
            // Warm the graph as a running service has it.
            for (i, v) in vectors.iter().cycle().take(20).enumerate() {
                through(pool, half, ef_search, v, class, i % n).await?;
            }
            let (mut ms, mut recall) = (Vec::new(), Vec::new());
            for (i, v) in vectors.iter().cycle().take(n).enumerate() {
                let t = Instant::now();
                let got = through(pool, half, ef_search, v, class, i).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                let want = &exact[i];
                let hit = got.iter().filter(|id| want.contains(id)).count();
                recall.push(hit as f64 / want.len().max(1) as f64);
            }
            graphs.push(GraphFigures {
                graph,
                class: class.name.to_string(),
                p50_ms: percentile(&ms, 0.5),
                p99_ms: percentile(&ms, 0.99),
                recall_at_10: recall.iter().sum::<f64>() / recall.len() as f64,
                min_recall_at_10: recall.iter().copied().fold(f64::INFINITY, f64::min),
            });
        }
    }
    sqlx::query("DROP INDEX jobs_embedding_hnsw_half")
        .execute(pool)
        .await?;
    Ok(HalfvecFigures {
        build_options: build_options.to_owned(),
        ef_search,
        build_secs,
        full_index_mb,
        half_index_mb,
        graphs,
    })
}

pub fn print(f: &HalfvecFigures) {
    println!(
        "\nhalfvec HNSW (expression index over embedding::halfvec({EMBEDDING_DIM}), {}): built in {:.1} s, {:.0} MB against {:.0} MB for the vector graph ({:.0}%); both searched at ef_search {}",
        f.build_options,
        f.build_secs,
        f.half_index_mb,
        f.full_index_mb,
        100.0 * f.half_index_mb / f.full_index_mb,
        f.ef_search
    );
    println!(
        "{:<12} {:<8} {:>8} {:>8} {:>9} {:>11}",
        "class", "graph", "p50 ms", "p99 ms", "recall", "min recall"
    );
    for g in &f.graphs {
        println!(
            "{:<12} {:<8} {:>8.2} {:>8.2} {:>9.3} {:>11.2}",
            g.class, g.graph, g.p50_ms, g.p99_ms, g.recall_at_10, g.min_recall_at_10
        );
    }
}

//! The PostgreSQL job index against the real PostgreSQL + pgvector of the local
//! stack. `sqlx::test` gives each test a fresh database, migrated as `migrate` does (migrations, then db/).

mod common;

use pgvector::Vector;
use shared::adapters::postgres::{PgJobIndex, Plan};
use shared::domain::{EmploymentType, Filters, JobRecord};
use shared::error::Error;
use shared::ports::{JobIndex, Query};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// 40 jobs whose similarity to `axis(0, 0)` falls strictly with their number,
/// with attributes that vary by number so each filter has edges to test.
fn seeded_jobs() -> Vec<JobRecord> {
    (0..40)
        .map(|i| {
            let mut j = common::job(&format!("j{i:02}"), common::axis(0, i as f32 * 0.05));
            j.location = ["Berlin", "berlin", "Paris", "Lisbon"][i % 4].into();
            j.remote = i % 3 == 0;
            j.employment_type = EmploymentType::ALL[i % 5];
            // Every 5th job has no salary; every 7th only a minimum.
            (j.salary_min, j.salary_max) = match i {
                i if i % 5 == 0 => (None, None),
                i if i % 7 == 0 => (Some(100_000), None),
                i => (
                    Some(40_000 + 1_000 * i as i32),
                    Some(50_000 + 2_000 * i as i32),
                ),
            };
            j.posted_at = common::days_ago(i as i64);
            j.skills = if i % 2 == 0 {
                vec!["rust".into(), "sql".into()]
            } else {
                vec!["go".into()]
            };
            j
        })
        .collect()
}

/// Inserts `jobs` and analyzes the table.
async fn seed(pool: &PgPool, jobs: &[JobRecord]) {
    common::insert_jobs(pool, jobs).await;
    sqlx::query("ANALYZE jobs")
        .execute(pool)
        .await
        .expect("analyze");
}

/// The expected ids: the seeded jobs passing `keep`, in seeding (similarity) order.
fn expected(keep: impl Fn(usize, &JobRecord) -> bool, count: usize) -> Vec<String> {
    seeded_jobs()
        .iter()
        .enumerate()
        .filter(|(i, j)| keep(*i, j))
        .map(|(_, j)| j.id.clone())
        .take(count)
        .collect()
}

#[sqlx::test(migrations = false)]
async fn both_plans_rank_unfiltered_jobs_exactly(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    for exact_max in [i64::MAX, 0] {
        let index = PgJobIndex::new(pool.clone(), exact_max);
        let query = common::axis(0, 0.0);
        let n = index
            .nearest(Query::Embedding(&query), &Filters::default(), 10)
            .await
            .expect("nearest");
        let got: Vec<&str> = n.candidates.iter().map(|c| c.job_id.as_str()).collect();
        assert_eq!(
            got,
            expected(|_, _| true, 10),
            "plan with exact_max={exact_max}"
        );
        // similarity = 1 - cosine distance = 1 / sqrt(1 + tilt²)
        for (i, c) in n.candidates.iter().enumerate() {
            let tilt = i as f64 * 0.05;
            assert!(
                (c.similarity - 1.0 / (1.0 + tilt * tilt).sqrt()).abs() < 1e-5,
                "{c:?}"
            );
        }
        assert_eq!(n.profile_skills, None);
    }
}

#[sqlx::test(migrations = false)]
async fn each_filter_holds_at_its_edges_under_both_plans(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    // 0: every filtered query that passes a row goes through HNSW; MAX: all exact.
    for (exact_max, plan) in [(0, Plan::Hnsw), (i64::MAX, Plan::Exact)] {
        let index = PgJobIndex::new(pool.clone(), exact_max);
        filter_edges(&index, plan).await;
    }
}

/// Each filter at its edges, through `index`, which must choose `plan`.
async fn filter_edges(index: &PgJobIndex, plan: Plan) {
    let index = &Planned(index, plan);
    let f = Filters {
        locations: Some(vec!["BERLIN".into()]),
        ..Default::default()
    };
    assert_eq!(
        index.ids(f, 100).await,
        expected(|i, _| i % 4 < 2, 100),
        "case-insensitive location"
    );

    let f = Filters {
        min_salary: Some(100_000),
        ..Default::default()
    };
    let want = expected(
        |_, j| j.salary_max.or(j.salary_min).is_some_and(|s| s >= 100_000),
        100,
    );
    assert!(
        want.contains(&"j07".to_string()),
        "salary_min-only job reaches the minimum"
    );
    assert_eq!(index.ids(f, 100).await, want, "min_salary, nulls excluded");
    let f = Filters {
        min_salary: Some(0),
        ..Default::default()
    };
    assert_eq!(
        index.ids(f, 100).await,
        expected(|i, _| i % 5 != 0, 100),
        "no salary never passes"
    );

    let f = Filters {
        posted_within_days: Some(10),
        ..Default::default()
    };
    // Posted 0..=9 days ago pass; 10 days ago is a moment older than the boundary.
    assert_eq!(
        index.ids(f, 100).await,
        expected(|i, _| i < 10, 100),
        "posted_within_days"
    );

    let f = Filters {
        exclude_job_ids: Some(vec!["j00".into(), "j02".into()]),
        ..Default::default()
    };
    assert_eq!(
        index.ids(f, 3).await,
        ["j01", "j03", "j04"],
        "exclude_job_ids"
    );

    let f = Filters {
        remote: Some(true),
        employment_types: Some(vec![EmploymentType::FullTime, EmploymentType::Contract]),
        ..Default::default()
    };
    assert_eq!(
        index.ids(f, 100).await,
        expected(|i, _| i % 3 == 0 && (i % 5 == 0 || i % 5 == 2), 100),
        "remote and employment types"
    );

    // A selective filter still fills the limit when enough rows pass.
    let f = Filters {
        locations: Some(vec!["lisbon".into()]),
        ..Default::default()
    };
    assert_eq!(index.ids(f, 10).await.len(), 10);
}

/// An index whose every answer must come from one plan.
struct Planned<'a>(&'a PgJobIndex, Plan);

impl Planned<'_> {
    async fn ids(&self, filters: Filters, count: u32) -> Vec<String> {
        let query = common::axis(0, 0.0);
        let (n, plan) = self
            .0
            .nearest_planned(Query::Embedding(&query), &filters, count, None)
            .await
            .expect("nearest");
        assert_eq!(plan, self.1, "plan for {filters:?}");
        n.candidates.into_iter().map(|c| c.job_id).collect()
    }
}

/// Past its `valid_through` a posting never matches, with filters or
/// without, under either plan; one still ahead matches and says when it ends.
#[sqlx::test(migrations = false)]
async fn a_posting_past_its_valid_through_never_matches_under_either_plan(pool: PgPool) {
    common::migrated(&pool).await;
    let now = chrono::Utc::now();
    let mut jobs = seeded_jobs();
    // j00 (the nearest) has ended; j01 ends in an hour.
    jobs[0].posted_at = now - chrono::Duration::days(3);
    jobs[0].valid_through = Some(now - chrono::Duration::days(1));
    jobs[1].valid_through = Some(now + chrono::Duration::hours(1));
    seed(&pool, &jobs).await;
    for (exact_max, plan) in [(0, Plan::Hnsw), (i64::MAX, Plan::Exact)] {
        let index = PgJobIndex::new(pool.clone(), exact_max);
        let everything = Planned(&index, plan).ids(Filters::default(), 40).await;
        assert_eq!(everything.len(), 39, "{plan:?}");
        assert!(!everything.contains(&"j00".to_string()), "{plan:?}");
        assert_eq!(everything[0], "j01", "{plan:?}");
        let berlin = Filters {
            locations: Some(vec!["Berlin".into()]),
            ..Default::default()
        };
        let filtered = Planned(&index, plan).ids(berlin, 40).await;
        assert!(!filtered.contains(&"j00".to_string()), "{plan:?}");
        assert_eq!(filtered[0], "j01", "{plan:?}");
        let (n, _) = index
            .nearest_planned(
                Query::Embedding(&common::axis(0, 0.0)),
                &Filters::default(),
                1,
                None,
            )
            .await
            .expect("nearest");
        let ends = n.candidates[0].valid_through.expect("j01's end");
        assert!(
            (ends - jobs[1].valid_through.expect("set"))
                .num_milliseconds()
                .abs()
                < 1
        );
    }
    // The database refuses an end before the posting.
    let refused = sqlx::query(
        "UPDATE jobs SET valid_through = posted_at - interval '1 second' WHERE id = 'j02'",
    )
    .execute(&pool)
    .await
    .expect_err("valid_through before posted_at");
    assert!(
        refused
            .to_string()
            .contains("jobs_valid_through_after_posted"),
        "{refused}"
    );
}

#[sqlx::test(migrations = false)]
async fn profile_query_uses_the_stored_profile(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    sqlx::query("INSERT INTO profiles (user_id, skills, embedding) VALUES ('alice', '{rust}', $1)")
        .bind(Vector::from(common::axis(0, 0.0)))
        .execute(&pool)
        .await
        .expect("insert profile");
    let index = PgJobIndex::new(pool, i64::MAX);
    let n = index
        .nearest(Query::Profile("alice"), &Filters::default(), 3)
        .await
        .expect("nearest");
    assert_eq!(n.profile_skills, Some(vec!["rust".to_string()]));
    let got: Vec<&str> = n.candidates.iter().map(|c| c.job_id.as_str()).collect();
    assert_eq!(got, ["j00", "j01", "j02"]);
    let missing = index
        .nearest(Query::Profile("bob"), &Filters::default(), 3)
        .await;
    assert!(
        matches!(missing, Err(Error::ProfileNotFound)),
        "{missing:?}"
    );
    assert_eq!(index.pgvector_version().await.expect("version"), "0.8.6");
}

/// The plan follows the rows passing the filters: at most `exact_max` exact,
/// more through HNSW; either way exactly the expected jobs, in order.
#[sqlx::test(migrations = false)]
async fn the_plan_follows_the_passing_rows(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    let exact_max = 15;
    // Estimates after ANALYZE are close enough at 40 rows for the plan to
    // follow the passing rows.
    let index = PgJobIndex::new(pool.clone(), exact_max);
    let cases: [(&str, Filters, Plan, Vec<String>); 6] = [
        (
            "unfiltered, 40 rows",
            Filters::default(),
            Plan::Hnsw,
            expected(|_, _| true, 100),
        ),
        (
            "broad: 20 rows",
            Filters {
                locations: Some(vec!["berlin".into()]),
                ..Default::default()
            },
            Plan::Hnsw,
            expected(|i, _| i % 4 < 2, 100),
        ),
        (
            "selective: 10 rows",
            Filters {
                locations: Some(vec!["LISBON".into()]),
                ..Default::default()
            },
            Plan::Exact,
            expected(|i, _| i % 4 == 3, 100),
        ),
        (
            "under the threshold: 10 rows",
            Filters {
                posted_within_days: Some(10),
                ..Default::default()
            },
            Plan::Exact,
            expected(|i, _| i < 10, 100),
        ),
        (
            "past the threshold: 25 rows",
            Filters {
                posted_within_days: Some(25),
                ..Default::default()
            },
            Plan::Hnsw,
            expected(|i, _| i < 25, 100),
        ),
        (
            "combined, selective",
            Filters {
                locations: Some(vec!["Berlin".into(), "paris".into()]),
                remote: Some(true),
                min_salary: Some(60_000),
                posted_within_days: Some(30),
                exclude_job_ids: Some(vec!["j06".into()]),
                ..Default::default()
            },
            Plan::Exact,
            expected(
                |i, j| {
                    i % 4 < 3
                        && i % 3 == 0
                        && j.salary_max.or(j.salary_min).is_some_and(|s| s >= 60_000)
                        && i < 30
                        && i != 6
                },
                100,
            ),
        ),
    ];
    for (name, filters, plan, want) in cases {
        assert!(!want.is_empty(), "{name}");
        let got = Planned(&index, plan).ids(filters, 100).await;
        assert_eq!(got, want, "{name}");
    }
    // Asking for fewer than pass gives the nearest ones, under either plan.
    let broad = Filters {
        locations: Some(vec!["berlin".into()]),
        ..Default::default()
    };
    assert_eq!(
        Planned(&index, Plan::Hnsw).ids(broad.clone(), 5).await,
        ["j00", "j01", "j04", "j05", "j08"]
    );
    // With the estimate gate (the default), the same answers.
    let gated = PgJobIndex::new(pool, exact_max);
    assert_eq!(
        Planned(&gated, Plan::Hnsw).ids(broad, 100).await,
        expected(|i, _| i % 4 < 2, 100)
    );
    let selective = Filters {
        locations: Some(vec!["lisbon".into()]),
        ..Default::default()
    };
    assert_eq!(
        Planned(&gated, Plan::Exact).ids(selective, 100).await,
        expected(|i, _| i % 4 == 3, 100)
    );
}

/// An HNSW scan cut short (here by `hnsw.max_scan_tuples`, as a filter
/// misestimated as broad would be) is redone exactly: no row is lost.
#[sqlx::test(migrations = false)]
async fn a_scan_cut_short_is_redone_exactly(pool: PgPool) {
    common::migrated(&pool).await;
    // 300 jobs nearer to the query than any seeded one, none passing the
    // filter: the scan's first ef_search (100) tuples all fail it.
    let mut jobs = seeded_jobs();
    jobs.extend((0..300).map(|k| {
        let mut j = common::job(&format!("near{k:03}"), common::axis(0, k as f32 * 1e-4));
        j.location = "Nowhere".into();
        j
    }));
    seed(&pool, &jobs).await;
    let filters = Filters {
        locations: Some(vec!["Lisbon".into()]),
        ..Default::default()
    };
    let want = expected(|i, _| i % 4 == 3, 100);
    // Gate 0: every filtered match goes to HNSW first.
    let raw = PgJobIndex::new(pool.clone(), 0).with_max_scan_tuples(4);
    let query = common::axis(0, 0.0);
    let (cut, _) = raw
        .nearest_planned(Query::Embedding(&query), &filters, 100, Some(Plan::Hnsw))
        .await
        .expect("forced HNSW");
    assert!(
        cut.candidates.len() < want.len(),
        "a scan of 4 tuples cannot find all {} rows: {cut:?}",
        want.len()
    );
    assert_eq!(Planned(&raw, Plan::Exact).ids(filters, 100).await, want);
}

/// Locations compare case-insensitively beyond ASCII, in SQL as in
/// `Filters::admits` (the local cluster's builtin C.UTF-8 locale; RDS's
/// en_US.UTF-8 folds the same letters).
#[sqlx::test(migrations = false)]
async fn locations_fold_every_letter(pool: PgPool) {
    common::migrated(&pool).await;
    let mut jobs = seeded_jobs();
    jobs[1].location = "München".into();
    jobs[2].location = "MÜNCHEN".into();
    seed(&pool, &jobs).await;
    let filters = Filters {
        locations: Some(vec!["münchen".into()]),
        ..Default::default()
    };
    let want = vec!["j01".to_string(), "j02".to_string()];
    for plan in [Plan::Exact, Plan::Hnsw] {
        let gate = if plan == Plan::Exact { 1_000 } else { 0 };
        let index = PgJobIndex::new(pool.clone(), gate);
        assert_eq!(Planned(&index, plan).ids(filters.clone(), 10).await, want);
    }
    assert!(jobs[1..3]
        .iter()
        .all(|j| filters.admits(j, chrono::Utc::now())));
}

/// The redo does not trust the table's statistics: rows added since the
/// last ANALYZE (here 300, to a table analyzed at 40 rows) make the table
/// larger than its `reltuples` says, and a scan cut short is still redone.
#[sqlx::test(migrations = false)]
async fn a_scan_cut_short_is_redone_with_stale_statistics(pool: PgPool) {
    common::migrated(&pool).await;
    sqlx::query("ALTER TABLE jobs SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .expect("no autovacuum");
    seed(&pool, &seeded_jobs()).await;
    let near: Vec<JobRecord> = (0..300)
        .map(|k| {
            let mut j = common::job(&format!("near{k:03}"), common::axis(0, k as f32 * 1e-4));
            j.location = "Nowhere".into();
            j
        })
        .collect();
    common::insert_jobs(&pool, &near).await;
    let reltuples: f32 =
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'jobs'::regclass")
            .fetch_one(&pool)
            .await
            .expect("reltuples");
    assert_eq!(reltuples, 40.0, "the statistics are stale");
    let filters = Filters {
        locations: Some(vec!["Lisbon".into()]),
        ..Default::default()
    };
    // 100 tuples: more than the statistics' 40 rows, fewer than the 300
    // nearer jobs that fail the filter.
    let raw = PgJobIndex::new(pool.clone(), 0).with_max_scan_tuples(100);
    assert_eq!(
        Planned(&raw, Plan::Exact).ids(filters, 100).await,
        expected(|i, _| i % 4 == 3, 100)
    );
}

/// How often each HNSW graph has been scanned, as the statistics of the
/// connection's backend say once flushed (`one` has a single connection, so
/// the match before it ran on the same backend).
async fn graph_scans(one: &PgPool) -> std::collections::BTreeMap<String, i64> {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(one)
        .await
        .expect("flush");
    sqlx::query_as::<_, (String, i64)>(
        "SELECT indexrelname::text, idx_scan FROM pg_stat_user_indexes \
         WHERE indexrelname LIKE 'jobs_embedding_hnsw%'",
    )
    .fetch_all(one)
    .await
    .expect("index statistics")
    .into_iter()
    .collect()
}

/// The HNSW graphs a match scanned.
async fn graphs_of(
    one: &PgPool,
    index: &PgJobIndex,
    filters: &Filters,
) -> (Plan, Vec<String>, Vec<String>) {
    let query = common::axis(0, 0.0);
    let before = graph_scans(one).await;
    let (got, plan) = index
        .nearest_planned(Query::Embedding(&query), filters, 100, None)
        .await
        .expect("nearest");
    let after = graph_scans(one).await;
    let scanned = after
        .into_iter()
        .filter(|(name, n)| before.get(name) != Some(n))
        .map(|(name, _)| name)
        .collect();
    let ids = got.candidates.into_iter().map(|c| c.job_id).collect();
    (plan, scanned, ids)
}

async fn one_connection(pool: &PgPool) -> PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with((*pool.connect_options()).clone())
        .await
        .expect("pool")
}

/// `remote = true` goes through the remote jobs' own graph, which holds
/// nothing the filter would drop; `remote = false` and other filters through
/// the full graph. Either way the rows are exactly the expected ones.
#[sqlx::test(migrations = false)]
async fn remote_matches_search_the_remote_graph(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    let one = one_connection(&pool).await;
    // Every filtered match through HNSW.
    let index = PgJobIndex::new(one.clone(), 0);
    let cases = [
        (Some(true), "jobs_embedding_hnsw_remote"),
        (Some(false), "jobs_embedding_hnsw"),
    ];
    for (remote, graph) in cases {
        let filters = Filters {
            remote,
            posted_within_days: Some(30),
            ..Default::default()
        };
        let (plan, scanned, ids) = graphs_of(&one, &index, &filters).await;
        assert_eq!(plan, Plan::Hnsw);
        assert_eq!(scanned, [graph], "remote = {remote:?}");
        let want = expected(|i, j| Some(j.remote) == remote && i < 30, 100);
        assert!(!want.is_empty());
        assert_eq!(ids, want, "remote = {remote:?}");
    }
}

/// Plans stay right under sqlx's prepared statements: the match is one
/// prepared statement, re-executed, and each execution still plans its
/// candidate query for its own values (the exact plan scans no graph, the
/// HNSW plan one).
#[sqlx::test(migrations = false)]
async fn prepared_statements_keep_the_chosen_plan(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    // One connection, so that every statement lands in the same statement cache.
    let one = one_connection(&pool).await;
    let index = PgJobIndex::new(one.clone(), 15);
    for i in 0..12 {
        let selective = Filters {
            locations: Some(vec![["lisbon", "Paris"][i % 2].into()]),
            ..Default::default()
        };
        let broad = Filters {
            posted_within_days: Some(20 + i as i64),
            ..Default::default()
        };
        for (filters, plan) in [(selective, Plan::Exact), (broad, Plan::Hnsw)] {
            let (got, scanned, ids) = graphs_of(&one, &index, &filters).await;
            assert_eq!(got, plan, "{filters:?}");
            assert!(!ids.is_empty());
            assert_eq!(
                !scanned.is_empty(),
                plan == Plan::Hnsw,
                "{plan:?} for {filters:?}: {scanned:?}"
            );
        }
    }
    let statements: Vec<(String, i64)> = sqlx::query_as(
        "SELECT statement, generic_plans + custom_plans FROM pg_prepared_statements \
         WHERE statement LIKE '%jobmatch_nearest%' AND statement NOT LIKE '%pg_prepared%'",
    )
    .fetch_all(&one)
    .await
    .expect("prepared statements");
    assert_eq!(statements.len(), 1, "{statements:?}");
    assert!(statements[0].1 >= 24, "{statements:?}");
}

/// A TCP proxy in front of PostgreSQL that counts the client's round trips:
/// each Sync (extended protocol) or Query (simple protocol) message ends one.
async fn counting_proxy(server: (String, u16)) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let trips = Arc::new(AtomicUsize::new(0));
    let counted = trips.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = tokio::net::TcpStream::connect(server.clone())
                .await
                .expect("server");
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = upstream.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            let counted = counted.clone();
            tokio::spawn(async move {
                // The startup message has no type byte; every later one has.
                let (mut buf, mut started) = (Vec::new(), false);
                let mut chunk = [0u8; 8192];
                loop {
                    let n = match client_read.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    buf.extend_from_slice(&chunk[..n]);
                    loop {
                        let head = usize::from(started);
                        let Some(len) = buf.get(head..head + 4) else {
                            break;
                        };
                        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
                        if buf.len() < head + len {
                            break;
                        }
                        if started && matches!(buf[0], b'S' | b'Q') {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        let frame: Vec<u8> = buf.drain(..head + len).collect();
                        if server_write.write_all(&frame).await.is_err() {
                            return;
                        }
                        started = true;
                    }
                }
            });
        }
    });
    (port, trips)
}

/// A match is two round trips to PostgreSQL, transaction control included,
/// whichever plan it takes (after the statement's first, preparing, run):
/// its one statement, and sqlx's check of the connection as it returns to
/// the pool, after the answer.
#[sqlx::test(migrations = false)]
async fn a_match_is_at_most_two_round_trips(pool: PgPool) {
    common::migrated(&pool).await;
    seed(&pool, &seeded_jobs()).await;
    let options = (*pool.connect_options()).clone();
    let (port, trips) = counting_proxy((options.get_host().to_owned(), options.get_port())).await;
    // The functions' own pool, through the proxy.
    let counted = shared::adapters::db_connect::password_pool(
        &format!(
            "postgres://{}@127.0.0.1:{port}/{}?sslmode=disable",
            options.get_username(),
            options.get_database().expect("a database")
        ),
        shared::adapters::db_connect::PoolSize::new(1),
    )
    .expect("pool through the proxy");
    let index = PgJobIndex::new(counted, 15);
    let query = common::axis(0, 0.0);
    let cases = [
        (Filters::default(), Plan::Hnsw),
        (
            Filters {
                locations: Some(vec!["lisbon".into()]),
                ..Default::default()
            },
            Plan::Exact,
        ),
        (
            Filters {
                posted_within_days: Some(30),
                ..Default::default()
            },
            Plan::Hnsw,
        ),
    ];
    for (filters, plan) in cases {
        for run in 0..3 {
            let before = trips.load(Ordering::SeqCst);
            let (got, ran) = index
                .nearest_planned(Query::Embedding(&query), &filters, 100, None)
                .await
                .expect("nearest");
            // The pool's check of the connection it gets back runs after
            // the answer; it counts too.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let made = trips.load(Ordering::SeqCst) - before;
            assert_eq!(ran, plan, "{filters:?}");
            assert!(!got.candidates.is_empty());
            if run > 0 {
                assert_eq!(made, 2, "round trips of a match with {filters:?}");
            }
        }
    }
}

/// A job's embedding stays in its row even when the row is long (its
/// description goes to TOAST instead), so the exact plan reads no TOAST
/// (migration 20261130000007).
#[sqlx::test(migrations = false)]
async fn embeddings_stay_in_the_row(pool: PgPool) {
    common::migrated(&pool).await;
    let mut job = common::job("long", common::axis(0, 0.0));
    // 1,000 letters that do not compress (xorshift), shorter than the
    // embedding: the row (over 2 kB) must move one of the two out, and
    // with pgvector's default storage it was the embedding.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64;
    job.description = (0..1_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'a' + (x % 26) as u8)
        })
        .collect();
    seed(&pool, &[job]).await;
    let (embedding_out, description_out): (bool, bool) = sqlx::query_as(
        "SELECT pg_column_toast_chunk_id(embedding) IS NOT NULL, \
         pg_column_toast_chunk_id(description) IS NOT NULL FROM jobs WHERE id = 'long'",
    )
    .fetch_one(&pool)
    .await
    .expect("toast chunks");
    assert!(description_out, "the description is moved out of the row");
    assert!(!embedding_out, "the embedding stays in the row");
}

/// The exact gate and the HNSW plan's ef_search follow the table's size.
#[sqlx::test(migrations = false)]
async fn the_gate_and_ef_search_grow_with_the_table(pool: PgPool) {
    common::migrated(&pool).await;
    let at = |rows: f64, count: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (i64, i32)>(
                "SELECT jobmatch_exact_gate($1), jobmatch_ef_search($1, $2)",
            )
            .bind(rows)
            .bind(count)
            .fetch_one(&pool)
            .await
            .expect("gate and ef_search")
        }
    };
    assert_eq!(at(0.0, 100).await, (0, 100));
    assert_eq!(
        at(-1.0, 100).await,
        (0, 100),
        "reltuples is -1 before ANALYZE"
    );
    assert_eq!(at(100_000.0, 100).await.1, 100);
    assert_eq!(at(100_000.0, 500).await.1, 500, "never fewer than C");
    let (gate, ef) = at(1_000_000.0, 100).await;
    assert_eq!(gate, 19_000);
    assert_eq!(ef, 159, "a larger table searches wider: 100 x 10^(1/5)");
    assert_eq!(at(1e9, 1_000).await.1, 1_000, "at most 1,000");
}

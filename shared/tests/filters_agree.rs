//! One filter definition, two implementations: random filters over random
//! jobs give the same rows through `Filters::admits` (the in-memory index)
//! and through the real SQL (`jobmatch_nearest`, both plans) of the local
//! stack's PostgreSQL. Both come from `Filters::clauses`; this holds the
//! SQL and the Rust halves of each clause to the same meaning.

mod common;

use std::collections::BTreeSet;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shared::adapters::postgres::{PgJobIndex, Plan};
use shared::domain::{EmploymentType, Filters, JobRecord};
use shared::ports::Query;
use sqlx::PgPool;

/// Jobs per case, and cases per run.
const JOBS: usize = 24;
const CASES: usize = 40;

/// Locations with case and non-ASCII variants (the local cluster's builtin
/// C.UTF-8 locale and RDS's en_US.UTF-8 fold these the same as Rust).
const LOCATIONS: [&str; 6] = ["Berlin", "berlin", "München", "MÜNCHEN", "Paris", "Lisbon"];

fn job_strategy() -> impl Strategy<Value = JobRecord> {
    (
        0..LOCATIONS.len(),
        any::<bool>(),
        0..EmploymentType::ALL.len(),
        prop_oneof![
            Just((None, None)),
            (20_000..150_000i32).prop_map(|m| (Some(m), None)),
            (20_000..150_000i32).prop_map(|m| (None, Some(m))),
            (20_000..100_000i32, 0..50_000i32).prop_map(|(m, d)| (Some(m), Some(m + d))),
        ],
        // Whole days plus half a day: never on a `posted_within_days` edge.
        0..60i64,
    )
        .prop_map(|(l, remote, e, (salary_min, salary_max), days)| {
            let mut j = common::job("", common::axis(0, 0.0));
            j.location = LOCATIONS[l].into();
            j.remote = remote;
            j.employment_type = EmploymentType::ALL[e];
            j.salary_min = salary_min;
            j.salary_max = salary_max;
            j.posted_at = common::days_ago(days) - chrono::Duration::hours(12);
            j
        })
}

fn filters_strategy() -> impl Strategy<Value = Filters> {
    (
        proptest::option::of(proptest::sample::subsequence(LOCATIONS.to_vec(), 1..3)),
        proptest::option::of(any::<bool>()),
        proptest::option::of(proptest::sample::subsequence(
            EmploymentType::ALL.to_vec(),
            1..3,
        )),
        proptest::option::of(0..160_000i64),
        proptest::option::of(1..60i64),
        proptest::option::of(proptest::collection::btree_set(0..JOBS, 0..4)),
    )
        .prop_map(
            |(locations, remote, types, min_salary, days, excluded)| Filters {
                locations: locations.map(|ls| ls.into_iter().map(str::to_owned).collect()),
                remote,
                employment_types: types,
                min_salary,
                posted_within_days: days,
                exclude_job_ids: excluded.map(|ids| ids.into_iter().map(id).collect()),
            },
        )
}

fn id(i: usize) -> String {
    format!("p{i:02}")
}

#[sqlx::test(migrations = false)]
async fn random_filters_admit_the_same_jobs_in_sql_and_in_memory(pool: PgPool) {
    common::migrated(&pool).await;
    let mut runner = TestRunner::default();
    let case = (
        proptest::collection::vec(job_strategy(), JOBS),
        filters_strategy(),
    );
    let query = common::axis(0, 0.0);
    let mut nonempty = 0;
    for _ in 0..CASES {
        let (mut jobs, filters) = case.new_tree(&mut runner).expect("a case").current();
        for (i, j) in jobs.iter_mut().enumerate() {
            j.id = id(i);
            // Distinct similarities: the order is the ids' order.
            j.embedding = Some(common::axis(0, i as f32 * 0.05));
        }
        sqlx::query("TRUNCATE jobs")
            .execute(&pool)
            .await
            .expect("truncate");
        common::insert_jobs(&pool, &jobs).await;
        let now = chrono::Utc::now();
        let want: BTreeSet<String> = jobs
            .iter()
            .filter(|j| filters.admits(j, now))
            .map(|j| j.id.clone())
            .collect();
        nonempty += usize::from(!want.is_empty());
        for plan in [Plan::Exact, Plan::Hnsw] {
            let index = PgJobIndex::new(pool.clone(), None);
            let (found, _) = index
                .nearest_planned(Query::Embedding(&query), &filters, JOBS as u32, Some(plan))
                .await
                .expect("nearest");
            let got: BTreeSet<String> = found.candidates.into_iter().map(|c| c.job_id).collect();
            assert_eq!(got, want, "{plan:?} for {filters:?} over {jobs:#?}");
        }
    }
    // The generator must exercise both outcomes, or the comparison proves little.
    assert!(
        nonempty > CASES / 4 && nonempty < CASES,
        "{nonempty} of {CASES} cases admitted some job"
    );
}

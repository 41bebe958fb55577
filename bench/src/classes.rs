//! The query mix: query vectors drawn like the generator's candidate profiles,
//! and per class a filter for each query, aimed at a share of the table
//! (the share each query really passes is counted and reported).

use jobmatch_cli::catalog::catalog;
use jobmatch_cli::generate::{self, World};
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use shared::domain::Filters;

/// One query class: its name, the share of jobs it aims at, a filter per query.
pub struct Class {
    pub name: &'static str,
    pub target: &'static str,
    pub filters: Vec<Filters>,
}

/// Query embeddings: profiles of random families, as candidates would be.
pub fn query_vectors(seed: u64, n: usize) -> Vec<Vec<f32>> {
    let world = World::new(seed);
    // Its own stream: the data set's jobs and these queries are independent.
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xbe9c_4a11);
    (0..n)
        // `World::profile` always draws the synthetic vector.
        .filter_map(|i| world.profile(&mut rng, &format!("q{i}"), None).0.embedding)
        .collect()
}

/// Cities whose share of postings lies in `range` (the generator's weights).
fn cities_with_share(range: std::ops::Range<f64>) -> Vec<&'static str> {
    let cities = &catalog().cities;
    let total: f64 = cities.iter().map(|c| f64::from(c.weight)).sum();
    cities
        .iter()
        .filter(|c| range.contains(&(f64::from(c.weight) / total)))
        .map(|c| c.name.as_str())
        .collect()
}

/// The smallest set of the most common cities reaching `share` of postings.
fn top_cities(share: f64) -> Vec<String> {
    let cities = &catalog().cities;
    let total: f64 = cities.iter().map(|c| f64::from(c.weight)).sum();
    let mut acc = 0.0;
    let mut out = Vec::new();
    for c in cities {
        if acc >= share {
            break;
        }
        acc += f64::from(c.weight) / total;
        out.push(c.name.clone());
    }
    out
}

/// Locations as users type them: the filter is case-insensitive.
fn cased(rng: &mut impl Rng, city: &str) -> String {
    match rng.random_range(0..3) {
        0 => city.to_lowercase(),
        1 => city.to_uppercase(),
        _ => city.to_owned(),
    }
}

/// One of `cities` (or `fallback`), cased at random.
fn pick(rng: &mut impl Rng, cities: &[&str], fallback: &str) -> String {
    let city = cities.choose(rng).copied().unwrap_or(fallback);
    cased(rng, city)
}

/// The class without filters (the ef_search sweep's like-for-like row).
pub const UNFILTERED: &str = "unfiltered";

pub fn classes(seed: u64, n: usize) -> Vec<Class> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xf11e_7e55);
    let rng = &mut rng;
    let mid = cities_with_share(0.015..0.026);
    let rare = cities_with_share(0.0..0.0045);
    let big = cities_with_share(0.04..1.0);
    let broad_cities = top_cities(0.3);
    // Two ids of the data set (ids carry the family, so they depend on the seed).
    let excluded = generate::first_job_ids(seed, 2);
    let mut make = |name, target, f: &mut dyn FnMut(&mut ChaCha8Rng, usize) -> Filters| Class {
        name,
        target,
        filters: (0..n).map(|i| f(rng, i)).collect(),
    };
    vec![
        make(UNFILTERED, "100%", &mut |_, _| Filters::default()),
        make("broad", "~30%", &mut |rng, i| match i % 3 {
            0 => Filters {
                remote: Some(true),
                ..Default::default()
            },
            // The generator dates postings with (u + u²)/2 · 365 days: ~70 days is 30%.
            1 => Filters {
                posted_within_days: Some(rng.random_range(62..80)),
                ..Default::default()
            },
            _ => Filters {
                locations: Some(broad_cities.iter().map(|c| cased(rng, c)).collect()),
                ..Default::default()
            },
        }),
        make("selective", "~2%", &mut |rng, i| match i % 3 {
            0 => Filters {
                locations: Some(vec![pick(rng, &mid, "Austin")]),
                ..Default::default()
            },
            1 => Filters {
                posted_within_days: Some(rng.random_range(3..=4)),
                ..Default::default()
            },
            _ => Filters {
                locations: Some(vec![pick(rng, &big, "London")]),
                remote: Some(true),
                exclude_job_ids: Some(excluded.clone()),
                ..Default::default()
            },
        }),
        make("very selective", "~0.1%", &mut |rng, i| match i % 2 {
            0 => Filters {
                locations: Some(vec![pick(rng, &rare, "Lagos")]),
                remote: Some(true),
                ..Default::default()
            },
            _ => Filters {
                locations: Some(vec![pick(rng, &mid, "Austin")]),
                posted_within_days: Some(7),
                ..Default::default()
            },
        }),
        make("combined", "loc+remote+salary+recency", &mut |rng, _| {
            Filters {
                locations: Some(vec![pick(rng, &big, "London")]),
                remote: Some(true),
                min_salary: Some(rng.random_range(6..=12) * 10_000),
                posted_within_days: Some(rng.random_range(30..=120)),
                ..Default::default()
            }
        }),
    ]
}

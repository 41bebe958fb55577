//! Seedable synthetic jobs and profiles as JSON Lines: clustered 384-d
//! embeddings, plausible titles, companies, cities, pay and posting dates.
//!
//! The same seed and `as_of` date give byte-identical files. `as_of` defaults to
//! today (UTC midnight), so that `posted_within_days` filters work on fresh
//! data; pass it explicitly to reproduce a file on another day.

use std::io::{self, Write};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use shared::domain::{normalise_skills, EmploymentType, JobRecord, ProfileRecord, EMBEDDING_DIM};

use crate::catalog::{Category, Family, CITIES, COMPANY_PREFIXES, FAMILIES};

/// A family centre mixes a direction shared by all postings (real embedding
/// spaces are anisotropic), one per category and its own.
const GLOBAL_WEIGHT: f32 = 0.3;
const CATEGORY_WEIGHT: f32 = 0.5;
const FAMILY_WEIGHT: f32 = 0.8;
/// Length of a posting's role (sub-cluster) component and of its noise,
/// relative to the unit family centre.
const ROLE_WEIGHT: f32 = 0.5;
const JOB_NOISE: f32 = 0.6;
const PROFILE_NOISE: f32 = 0.4;
/// Companies per category; a few of them post most of the jobs.
const COMPANIES_PER_CATEGORY: usize = 24;
/// Share of postings without salary, and with only a minimum.
const NO_SALARY: f64 = 0.15;
const MIN_SALARY_ONLY: f64 = 0.08;
/// The family of `demo-user`.
pub const DEMO_FAMILY: &str = "backend";

/// RNG streams of one seed: the world, the jobs and the profiles are
/// independent, so that `--profiles` never changes the jobs file.
const WORLD_STREAM: u64 = 0;
const JOB_STREAM: u64 = 1;
const PROFILE_STREAM: u64 = 2;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// What a data set is generated from.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub jobs: usize,
    pub profiles: usize,
    pub seed: u64,
    /// Postings are dated within the year before this day's midnight (UTC).
    pub as_of: NaiveDate,
}

/// Today in UTC, the default `as_of`.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// The seeded parts every record draws from: cluster centres and company rosters.
pub struct World {
    centres: Vec<Vec<f32>>,
    /// Per family, one direction per role (the sub-clusters).
    roles: Vec<Vec<Vec<f32>>>,
    companies: Vec<Vec<String>>,
    families: WeightedIndex<u32>,
    cities: WeightedIndex<u32>,
    company_rank: WeightedIndex<f64>,
}

impl World {
    pub fn new(seed: u64) -> World {
        let mut rng = rng(seed, WORLD_STREAM);
        let global = random_unit(&mut rng);
        let categories: Vec<Vec<f32>> = Category::ALL
            .iter()
            .map(|_| random_unit(&mut rng))
            .collect();
        let mut centres = Vec::with_capacity(FAMILIES.len());
        let mut roles = Vec::with_capacity(FAMILIES.len());
        for family in FAMILIES {
            let mut centre = vec![0.0; EMBEDDING_DIM];
            add_scaled(&mut centre, &global, GLOBAL_WEIGHT);
            add_scaled(
                &mut centre,
                &categories[family.category.index()],
                CATEGORY_WEIGHT,
            );
            add_scaled(&mut centre, &random_unit(&mut rng), FAMILY_WEIGHT);
            normalise(&mut centre);
            centres.push(centre);
            roles.push(family.roles.iter().map(|_| random_unit(&mut rng)).collect());
        }
        let companies = Category::ALL
            .iter()
            .map(|category| {
                let mut names: Vec<String> = COMPANY_PREFIXES
                    .iter()
                    .flat_map(|p| {
                        category
                            .company_suffixes()
                            .iter()
                            .map(move |s| format!("{p} {s}"))
                    })
                    .collect();
                names.shuffle(&mut rng);
                names.truncate(COMPANIES_PER_CATEGORY);
                names
            })
            .collect();
        // The catalog's weights are constant and positive.
        let families =
            WeightedIndex::new(FAMILIES.iter().map(|f| f.weight)).expect("family weights");
        let cities = WeightedIndex::new(CITIES.iter().map(|c| c.1)).expect("city weights");
        let company_rank =
            WeightedIndex::new((0..COMPANIES_PER_CATEGORY).map(|i| 1.0 / (i as f64 + 4.0)))
                .expect("company weights");
        World {
            centres,
            roles,
            companies,
            families,
            cities,
            company_rank,
        }
    }

    /// A point of the family's cluster: centre + role direction + noise, unit length.
    fn embedding(
        &self,
        rng: &mut impl Rng,
        family: usize,
        role: usize,
        noise_norm: f32,
    ) -> Vec<f32> {
        let mut v = self.centres[family].clone();
        add_scaled(&mut v, &self.roles[family][role], ROLE_WEIGHT);
        let sigma = noise_norm / (EMBEDDING_DIM as f32).sqrt();
        for x in v.iter_mut() {
            let n: f32 = rng.sample(StandardNormal);
            *x += sigma * n;
        }
        normalise(&mut v);
        // Six decimals keep files small and similarities intact.
        v.iter_mut()
            .for_each(|x| *x = ((*x as f64 * 1e6).round() / 1e6) as f32);
        v
    }

    /// Generates job number `n` (1-based); also returns its family index.
    pub fn job(&self, rng: &mut impl Rng, n: usize, as_of: DateTime<Utc>) -> (JobRecord, usize) {
        let f = self.families.sample(rng);
        let family = &FAMILIES[f];
        let role = rng.random_range(0..family.roles.len());
        let (role_title, signature) = family.roles[role];
        let level = family
            .ladder
            .choose_weighted(rng, |l| l.weight)
            .copied()
            .unwrap_or(family.ladder[0]);
        let title = if level.intern {
            intern_title(role_title)
        } else {
            format!("{}{role_title}", level.prefix)
        };
        let (city, _, city_pay) = CITIES[self.cities.sample(rng)];
        let company = &self.companies[family.category.index()][self.company_rank.sample(rng)];
        let remote = rng.random_bool(family.category.remote_share());
        let employment_type = if level.intern {
            EmploymentType::Internship
        } else {
            const KINDS: [EmploymentType; 4] = [
                EmploymentType::FullTime,
                EmploymentType::PartTime,
                EmploymentType::Contract,
                EmploymentType::Temporary,
            ];
            let weights = family.category.employment_weights();
            let kind = WeightedIndex::new(weights).map_or(0, |w| w.sample(rng));
            KINDS[kind]
        };
        let count = rng.random_range(3..=8);
        let picked = pick_skills(rng, family, signature, count);

        let mid = family.base_salary * level.pay * city_pay * rng.random_range(0.88..1.12);
        let low = round_pay(mid * 0.9);
        let high = round_pay(mid * rng.random_range(1.1..1.3));
        let (salary_min, salary_max) = match rng.random::<f64>() {
            u if u < NO_SALARY => (None, None),
            u if u < NO_SALARY + MIN_SALARY_ONLY => (Some(low), None),
            _ => (Some(low), Some(high)),
        };

        // Recent postings are more common: (u + u²) / 2 leans towards 0.
        let u: f64 = rng.random();
        let days = ((u + u * u) / 2.0 * 365.0) as i64;
        let secs = rng.random_range(1..86_400);
        let posted_at = as_of - Duration::days(days) - Duration::seconds(secs);

        let description = describe(
            company,
            &title,
            city,
            remote,
            employment_type,
            family.duty,
            &picked,
        );
        let embedding = self.embedding(rng, f, role, JOB_NOISE);
        let record = JobRecord {
            id: format!("job-{n:06}"),
            title,
            company: company.clone(),
            location: city.to_owned(),
            remote,
            employment_type,
            salary_min,
            salary_max,
            skills: normalise_skills(&picked),
            description,
            posted_at,
            embedding,
        };
        (record, f)
    }

    /// A profile of `user_id` in `family` (or a random one); returns its family.
    pub fn profile(
        &self,
        rng: &mut impl Rng,
        user_id: &str,
        family: Option<usize>,
    ) -> (ProfileRecord, usize) {
        let f = family.unwrap_or_else(|| self.families.sample(rng));
        let fam = &FAMILIES[f];
        let role = if family.is_some() {
            0
        } else {
            rng.random_range(0..fam.roles.len())
        };
        // A chosen family (demo-user) gets a fixed, well-filled profile.
        let count = if family.is_some() {
            6
        } else {
            rng.random_range(4..=8)
        };
        let skills = pick_skills(rng, fam, fam.roles[role].1, count);
        let record = ProfileRecord {
            user_id: user_id.to_owned(),
            skills: normalise_skills(&skills),
            embedding: self.embedding(rng, f, role, PROFILE_NOISE),
            updated_at: None,
        };
        (record, f)
    }
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub jobs: usize,
    pub profiles: usize,
}

/// Writes `opts.jobs` job lines.
pub fn write_jobs(world: &World, opts: &Options, out: &mut impl Write) -> io::Result<usize> {
    let mut rng = rng(opts.seed, JOB_STREAM);
    let as_of = as_of_instant(opts.as_of);
    for n in 1..=opts.jobs {
        let (job, _) = world.job(&mut rng, n, as_of);
        serde_json::to_writer(&mut *out, &job)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(opts.jobs)
}

/// Writes `demo-user` and `opts.profiles` more (`user-001`, ...).
pub fn write_profiles(world: &World, opts: &Options, out: &mut impl Write) -> io::Result<usize> {
    let mut rng = rng(opts.seed, PROFILE_STREAM);
    let demo = FAMILIES.iter().position(|f| f.name == DEMO_FAMILY);
    let (demo, _) = world.profile(&mut rng, "demo-user", demo);
    write_line(out, &demo)?;
    for n in 1..=opts.profiles {
        let (profile, _) = world.profile(&mut rng, &format!("user-{n:03}"), None);
        write_line(out, &profile)?;
    }
    out.flush()?;
    Ok(opts.profiles + 1)
}

fn write_line(out: &mut impl Write, record: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// UTC midnight of `day`.
pub fn as_of_instant(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// The role's signature skills plus distinct ones from the family pool.
fn pick_skills(
    rng: &mut impl Rng,
    family: &Family,
    signature: &[&str],
    count: usize,
) -> Vec<String> {
    let pool: Vec<&str> = family
        .skills
        .iter()
        .copied()
        .filter(|s| !signature.contains(s))
        .collect();
    let extra = count.saturating_sub(signature.len());
    signature
        .iter()
        .copied()
        .chain(pool.choose_multiple(rng, extra).copied())
        .map(str::to_owned)
        .collect()
}

/// "Backend Engineer (Rust)" -> "Backend Engineer Intern (Rust)".
fn intern_title(role: &str) -> String {
    match role.split_once(" (") {
        Some((base, rest)) => format!("{base} Intern ({rest}"),
        None => format!("{role} Intern"),
    }
}

/// Pay rounded to 1,000 (500 under 20,000).
fn round_pay(x: f64) -> i32 {
    let step = if x < 20_000.0 { 500.0 } else { 1_000.0 };
    ((x / step).round() * step) as i32
}

/// "a" or "an" before a title, including spoken acronyms ("an MRI", "a UX").
fn article(title: &str) -> &'static str {
    let first_word = title.split_whitespace().next().unwrap_or_default();
    let first = first_word.chars().next().unwrap_or('x');
    let acronym = first_word.len() > 1
        && first_word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c == '&');
    let vowel_sound = if acronym {
        "AEFHILMNORSX".contains(first)
    } else {
        "AEIOaeio".contains(first)
            || (first_word.starts_with("Un") && !first_word.starts_with("Uni"))
    };
    if vowel_sound {
        "an"
    } else {
        "a"
    }
}

fn describe(
    company: &str,
    title: &str,
    city: &str,
    remote: bool,
    employment_type: EmploymentType,
    duty: &str,
    skills: &[String],
) -> String {
    let remote = if remote { " (remote-friendly)" } else { "" };
    let mut text = format!(
        "{company} is hiring {} {title} in {city}{remote} to {duty}.",
        article(title)
    );
    if let [a, b, c, ..] = skills {
        text.push_str(&format!(" You will work with {a}, {b} and {c}."));
    }
    let kind = match employment_type {
        EmploymentType::FullTime => None,
        EmploymentType::PartTime => Some("a part-time"),
        EmploymentType::Contract => Some("a contract"),
        EmploymentType::Temporary => Some("a temporary"),
        EmploymentType::Internship => Some("an internship"),
    };
    if let Some(kind) = kind {
        text.push_str(&format!(" This is {kind} position."));
    }
    text
}

fn random_unit(rng: &mut impl Rng) -> Vec<f32> {
    let mut v: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|_| rng.sample(StandardNormal))
        .collect();
    normalise(&mut v);
    v
}

fn add_scaled(acc: &mut [f32], v: &[f32], w: f32) {
    acc.iter_mut().zip(v).for_each(|(a, x)| *a += w * x);
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(jobs: usize) -> Options {
        Options {
            jobs,
            profiles: 5,
            seed: 7,
            as_of: NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
        }
    }

    fn files(o: &Options) -> (Vec<u8>, Vec<u8>) {
        let world = World::new(o.seed);
        let (mut jobs, mut profiles) = (Vec::new(), Vec::new());
        write_jobs(&world, o, &mut jobs).expect("jobs");
        write_profiles(&world, o, &mut profiles).expect("profiles");
        (jobs, profiles)
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn sample(n: usize) -> Vec<(JobRecord, usize)> {
        let o = opts(n);
        let world = World::new(o.seed);
        let mut rng = rng(o.seed, JOB_STREAM);
        (1..=n)
            .map(|i| world.job(&mut rng, i, as_of_instant(o.as_of)))
            .collect()
    }

    #[test]
    fn same_seed_gives_identical_files_and_another_seed_does_not() {
        let o = opts(200);
        assert_eq!(files(&o), files(&o));
        let other = Options { seed: 8, ..o };
        assert_ne!(files(&o).0, files(&other).0);
        // The profile count does not change the jobs.
        let more = Options { profiles: 50, ..o };
        assert_eq!(files(&o).0, files(&more).0);
    }

    #[test]
    fn lines_are_valid_records() {
        let (jobs, profiles) = files(&opts(300));
        let text = String::from_utf8(jobs).expect("utf-8");
        for (i, line) in text.lines().enumerate() {
            let job: JobRecord = serde_json::from_str(line).expect("job line");
            assert_eq!(job.id, format!("job-{:06}", i + 1));
            assert!((3..=8).contains(&job.skills.len()), "{:?}", job.skills);
            assert_eq!(job.skills, normalise_skills(&job.skills));
            assert!(shared::domain::check_embedding(&job.embedding).is_ok());
            if let (Some(lo), Some(hi)) = (job.salary_min, job.salary_max) {
                assert!(0 < lo && lo <= hi, "{lo} {hi}");
            }
            assert!(job.salary_max.is_none() || job.salary_min.is_some());
        }
        let profiles: Vec<ProfileRecord> = String::from_utf8(profiles)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("profile line"))
            .collect();
        assert_eq!(profiles.len(), 6);
        assert_eq!(profiles[0].user_id, "demo-user");
        assert_eq!(profiles[1].user_id, "user-001");
    }

    #[test]
    fn embeddings_are_unit_length_and_384_wide() {
        for (job, _) in sample(200) {
            assert_eq!(job.embedding.len(), EMBEDDING_DIM);
            let norm = cosine(&job.embedding, &job.embedding).sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
    }

    #[test]
    fn same_family_pairs_are_clearly_closer_than_cross_family() {
        let jobs = sample(600);
        let (mut same, mut cross) = (Vec::new(), Vec::new());
        for (i, (a, fa)) in jobs.iter().enumerate() {
            for (b, fb) in &jobs[i + 1..] {
                let c = cosine(&a.embedding, &b.embedding);
                if fa == fb {
                    same.push(c);
                } else {
                    cross.push(c);
                }
            }
        }
        let mean = |v: &[f32]| v.iter().sum::<f32>() / v.len() as f32;
        let (same, cross) = (mean(&same), mean(&cross));
        assert!(same > 0.5, "same-family mean cosine {same}");
        assert!(cross < 0.25, "cross-family mean cosine {cross}");
        assert!(same - cross > 0.3, "{same} vs {cross}");
    }

    #[test]
    fn demo_user_is_close_to_its_family() {
        let o = opts(0);
        let world = World::new(o.seed);
        let mut out = Vec::new();
        write_profiles(&world, &o, &mut out).expect("profiles");
        let first = out.split(|b| *b == b'\n').next().expect("line");
        let demo: ProfileRecord = serde_json::from_slice(first).expect("demo");
        let backend = FAMILIES
            .iter()
            .position(|f| f.name == DEMO_FAMILY)
            .expect("family");
        for (i, centre) in world.centres.iter().enumerate() {
            let c = cosine(&demo.embedding, centre);
            if i == backend {
                assert!(c > 0.7, "own centre {c}");
            } else {
                assert!(c < 0.5, "family {i}: {c}");
            }
        }
        assert!(demo.skills.contains(&"rust".to_owned()));
        assert_eq!(demo.skills.len(), 6);
    }

    #[test]
    fn the_mix_is_plausible() {
        let jobs = sample(3000);
        let share = |p: &dyn Fn(&JobRecord) -> bool| {
            jobs.iter().filter(|(j, _)| p(j)).count() as f64 / jobs.len() as f64
        };
        let remote = share(&|j| j.remote);
        assert!((0.18..0.32).contains(&remote), "remote {remote}");
        let no_salary = share(&|j| j.salary_min.is_none());
        assert!((0.11..0.19).contains(&no_salary), "no salary {no_salary}");
        let full_time = share(&|j| j.employment_type == EmploymentType::FullTime);
        assert!(full_time > 0.6, "full time {full_time}");
        let as_of = as_of_instant(opts(0).as_of);
        assert!(jobs
            .iter()
            .all(|(j, _)| j.posted_at < as_of && j.posted_at > as_of - Duration::days(367)));
        let london = share(&|j| j.location == "London");
        let lagos = share(&|j| j.location == "Lagos");
        assert!(london > 3.0 * lagos, "london {london}, lagos {lagos}");
        let families: std::collections::HashSet<_> = jobs.iter().map(|(_, f)| f).collect();
        assert_eq!(families.len(), FAMILIES.len());
    }

    #[test]
    fn titles_read_naturally() {
        assert_eq!(
            intern_title("Backend Engineer (Rust)"),
            "Backend Engineer Intern (Rust)"
        );
        assert_eq!(intern_title("Data Analyst"), "Data Analyst Intern");
        assert_eq!(article("Senior Backend Engineer"), "a");
        assert_eq!(article("ICU Nurse"), "an");
        assert_eq!(article("MRI Technologist"), "an");
        assert_eq!(article("UX Designer"), "a");
        assert_eq!(article("Underwriter"), "an");
        assert_eq!(article("Unity Developer"), "a");
        assert_eq!(article("iOS Engineer"), "an");
        assert_eq!(round_pay(123_456.0), 123_000);
        assert_eq!(round_pay(12_260.0), 12_500);
    }
}

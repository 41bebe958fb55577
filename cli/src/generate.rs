//! Seedable synthetic jobs and profiles as JSON Lines: postings that read like
//! real ones (composed from `cli/data/catalog.json`), resume-like profiles,
//! plausible companies, cities, pay and posting dates, and either no
//! embeddings (the loader embeds the text with the model) or clustered
//! synthetic 384-d ones (for loads too big to run the model on).
//!
//! The same seed and `as_of` date give byte-identical files; the texts do not
//! depend on the embedding mode. `as_of` defaults to today (UTC midnight), so
//! that `posted_within_days` filters work on fresh data; pass it explicitly to
//! reproduce a file on another day.

use std::io::{self, Write};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::distr::Distribution;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use shared::domain::{normalise_skills, EmploymentType, JobRecord, ProfileRecord, EMBEDDING_DIM};

use crate::catalog::{catalog, fill, Catalog, Category, Family, Level};

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
/// Description length in words: long enough to say what the job is, short
/// enough that title + skills + description stay well inside the model's
/// 256-word-piece window (and cheap to embed 10,000 of on 2 cores).
const MIN_WORDS: usize = 50;
const MAX_WORDS: usize = 90;
/// The family of `demo-user`.
pub const DEMO_FAMILY: &str = "backend";

/// RNG streams of one seed: the world, the jobs and the profiles are
/// independent, so that `--profiles` never changes the jobs file.
const WORLD_STREAM: u64 = 0;
const JOB_STREAM: u64 = 1;
const PROFILE_STREAM: u64 = 2;
const LONG_RESUME_STREAM: u64 = 3;

fn rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Whether the written lines carry an `embedding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Embeddings {
    /// No `embedding`: the loader embeds the text with the real model (the demo).
    #[default]
    None,
    /// Clustered synthetic vectors: 100k-1M jobs load without running the model.
    Synthetic,
}

/// What a data set is generated from.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub jobs: usize,
    pub profiles: usize,
    pub seed: u64,
    /// Postings are dated within the year before this day's midnight (UTC).
    pub as_of: NaiveDate,
    pub embeddings: Embeddings,
}

/// Today in UTC, the default `as_of`.
pub fn today() -> NaiveDate {
    Utc::now().date_naive()
}

/// `job-{family}-{n:06}`: tests and the relevance benchmark read the family back.
pub fn job_id(family: &str, n: usize) -> String {
    format!("job-{family}-{n:06}")
}

/// The family of a generated job id (`job-data-engineering-000012` ->
/// `data-engineering`); `None` for other ids and unknown families.
pub fn family_of_job_id(id: &str) -> Option<&str> {
    let (family, number) = id.strip_prefix("job-")?.rsplit_once('-')?;
    let numbered = number.len() >= 6 && number.bytes().all(|b| b.is_ascii_digit());
    (numbered && catalog().family(family).is_some()).then_some(family)
}

/// The ids of the first `count` jobs of `seed`'s data set.
pub fn first_job_ids(seed: u64, count: usize) -> Vec<String> {
    let world = World::new(seed);
    let mut rng = rng(seed, JOB_STREAM);
    let as_of = as_of_instant(today());
    (1..=count)
        .map(|n| world.job(&mut rng, n, as_of).0.id)
        .collect()
}

/// The seeded parts every record draws from: cluster centres and company rosters.
pub struct World {
    catalog: &'static Catalog,
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
        let catalog = catalog();
        let mut rng = rng(seed, WORLD_STREAM);
        let global = random_unit(&mut rng);
        let categories: Vec<Vec<f32>> = catalog
            .categories
            .iter()
            .map(|_| random_unit(&mut rng))
            .collect();
        let mut centres = Vec::with_capacity(catalog.families.len());
        let mut roles = Vec::with_capacity(catalog.families.len());
        for family in &catalog.families {
            let mut centre = vec![0.0; EMBEDDING_DIM];
            add_scaled(&mut centre, &global, GLOBAL_WEIGHT);
            add_scaled(
                &mut centre,
                &categories[family.category_index],
                CATEGORY_WEIGHT,
            );
            add_scaled(&mut centre, &random_unit(&mut rng), FAMILY_WEIGHT);
            normalise(&mut centre);
            centres.push(centre);
            roles.push(family.roles.iter().map(|_| random_unit(&mut rng)).collect());
        }
        let companies = catalog
            .categories
            .iter()
            .map(|category| {
                let mut names: Vec<String> = catalog
                    .company_prefixes
                    .iter()
                    .flat_map(|p| {
                        category
                            .company_suffixes
                            .iter()
                            .map(move |s| format!("{p} {s}"))
                    })
                    .collect();
                names.shuffle(&mut rng);
                names.truncate(COMPANIES_PER_CATEGORY);
                names
            })
            .collect();
        // The catalogue's check guarantees positive weights.
        let families =
            WeightedIndex::new(catalog.families.iter().map(|f| f.weight)).expect("family weights");
        let cities =
            WeightedIndex::new(catalog.cities.iter().map(|c| c.weight)).expect("city weights");
        let company_rank =
            WeightedIndex::new((0..COMPANIES_PER_CATEGORY).map(|i| 1.0 / (i as f64 + 4.0)))
                .expect("company weights");
        World {
            catalog,
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

    /// Generates job number `n` (1-based) with a synthetic embedding (the
    /// writer drops it in `Embeddings::None`); also returns its family index.
    pub fn job(&self, rng: &mut impl Rng, n: usize, as_of: DateTime<Utc>) -> (JobRecord, usize) {
        let f = self.families.sample(rng);
        let family = &self.catalog.families[f];
        let category = self.catalog.category(family);
        let role = rng.random_range(0..family.roles.len());
        let role_spec = &family.roles[role];
        let level = pick_level(rng, self.catalog.ladder(family), true);
        let title = if level.intern {
            intern_title(&role_spec.title)
        } else {
            with_prefix(&level.prefix, &role_spec.title)
        };
        let city = &self.catalog.cities[self.cities.sample(rng)];
        let company = &self.companies[family.category_index][self.company_rank.sample(rng)];
        let remote = rng.random_bool(category.remote_share);
        let employment_type = if level.intern {
            EmploymentType::Internship
        } else {
            const KINDS: [EmploymentType; 4] = [
                EmploymentType::FullTime,
                EmploymentType::PartTime,
                EmploymentType::Contract,
                EmploymentType::Temporary,
            ];
            let kind = WeightedIndex::new(category.employment_weights).map_or(0, |w| w.sample(rng));
            KINDS[kind]
        };
        let count = rng.random_range(3..=8);
        let picked = pick_skills(rng, family, &role_spec.skills, count);

        let mid = family.base_salary * level.pay * city.pay * rng.random_range(0.88..1.12);
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

        let description = self.describe(
            rng,
            &Posting {
                company,
                title: &title,
                city: &city.name,
                remote,
                employment_type,
                family,
                category,
                skills: &picked,
            },
        );
        let embedding = self.embedding(rng, f, role, JOB_NOISE);
        let record = JobRecord {
            id: job_id(&family.name, n),
            title,
            company: company.clone(),
            location: city.name.clone(),
            remote,
            employment_type,
            salary_min,
            salary_max,
            skills: normalise_skills(&picked),
            description,
            posted_at,
            valid_through: None,
            embedding: Some(embedding),
        };
        (record, f)
    }

    /// A profile of `user_id` in `family` (or a random one), with its resume
    /// text and a synthetic embedding; returns its family.
    pub fn profile(
        &self,
        rng: &mut impl Rng,
        user_id: &str,
        family: Option<usize>,
    ) -> (ProfileRecord, usize) {
        let f = family.unwrap_or_else(|| self.families.sample(rng));
        let fam = &self.catalog.families[f];
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
        let skills = pick_skills(rng, fam, &fam.roles[role].skills, count);
        let level = pick_level(rng, self.catalog.ladder(fam), false);
        let city = &self.catalog.cities[self.cities.sample(rng)].name;
        let text = self.resume(rng, fam, &fam.roles[role].title, level, &skills, city);
        let record = ProfileRecord {
            user_id: user_id.to_owned(),
            skills: normalise_skills(&skills),
            text: Some(text),
            embedding: Some(self.embedding(rng, f, role, PROFILE_NOISE)),
            updated_at: None,
        };
        (record, f)
    }

    /// 3-5 sentences, 50-90 words: the opening (title, company, city, duty)
    /// and responsibilities always, so that every posting says its family;
    /// then some of team, tools, requirements, benefits and company intro.
    fn describe(&self, rng: &mut impl Rng, p: &Posting) -> String {
        let t = &self.catalog.posting;
        let f = p.family;
        let remote = if p.remote { pick(rng, &t.remote) } else { "" };
        let a_title = format!("{} {}", article(p.title), p.title);
        let opening = fill(
            pick(rng, &t.openings),
            &[
                ("company", p.company),
                ("a_title", &a_title),
                ("city", p.city),
                ("remote", remote),
                ("duty", &f.duty),
            ],
        );
        let r = distinct(rng, &f.responsibilities, 3);
        let responsibilities = fill(
            pick(rng, &t.responsibilities),
            &[("r1", r[0]), ("r2", r[1]), ("r3", r[2])],
        );
        let team = fill(pick(rng, &t.team), &[("team", pick(rng, &f.team))]);
        let tl = distinct(rng, &f.tools, 3);
        let tools = fill(
            pick(rng, &t.tools),
            &[("t1", tl[0]), ("t2", tl[1]), ("t3", tl[2])],
        );
        let q = distinct(rng, &f.requirements, 2);
        let requirements = fill(
            pick(rng, &t.requirements),
            &[
                ("q1", q[0]),
                ("q2", q[1]),
                ("s1", &p.skills[0]),
                ("s2", &p.skills[1]),
            ],
        );
        let b = distinct(rng, &p.category.benefits, 3);
        let benefits = fill(
            pick(rng, &t.benefits),
            &[("b1", b[0]), ("b2", b[1]), ("b3", b[2])],
        );
        let intro = fill(pick(rng, &p.category.intros), &[("company", p.company)]);
        let employment = t
            .employment
            .get(p.employment_type.as_str())
            .map(|list| pick(rng, list).to_owned());

        // In reading order; `None` until chosen.
        let mut sentences: [Option<String>; 8] = Default::default();
        sentences[1] = Some(opening);
        sentences[3] = Some(responsibilities);
        sentences[7] = employment;
        // The family's own sentences are likelier than the category's.
        let optional = weighted_order(
            rng,
            vec![
                (2, team, 3),
                (4, tools, 3),
                (5, requirements, 3),
                (6, benefits, 2),
                (0, intro, 2),
            ],
        );
        let target = rng.random_range(3..=5);
        let mut added = Vec::new();
        let mut left = optional.into_iter();
        let count = |s: &[Option<String>]| s.iter().flatten().count();
        while count(&sentences) < target {
            let Some((slot, text)) = left.next() else {
                break;
            };
            sentences[slot] = Some(text);
            added.push(slot);
        }
        while words(&sentences) > MAX_WORDS && count(&sentences) > 3 {
            let Some(slot) = added.pop() else {
                break;
            };
            sentences[slot] = None;
        }
        while words(&sentences) < MIN_WORDS && count(&sentences) < 5 {
            let Some((slot, text)) = left.next() else {
                break;
            };
            sentences[slot] = Some(text);
        }
        join(&sentences)
    }

    /// 4-6 sentences in the first person or resume style: headline with years
    /// and field, achievements, skills and tools, what they want next.
    fn resume(
        &self,
        rng: &mut impl Rng,
        f: &Family,
        role_title: &str,
        level: &Level,
        skills: &[String],
        city: &str,
    ) -> String {
        let t = &self.catalog.resume;
        let title = with_prefix(&level.prefix, role_title);
        let a_title = format!("{} {}", article(&title), title);
        let years = years_phrase(rng.random_range(level.years[0]..=level.years[1]));
        let headline = fill(
            pick(rng, &t.headlines),
            &[
                ("title", &title),
                ("a_title", &a_title),
                ("years", &years),
                ("field", &f.field),
            ],
        );
        let d = distinct(rng, &f.achievements, 2);
        let first = fill(pick(rng, &t.achievements), &[("d1", d[0])]);
        let more = fill(pick(rng, &t.more_achievements), &[("d2", d[1])]);
        // Tools the skills do not already name ("figma" and "Figma").
        let mut tools: Vec<&String> = f
            .tools
            .iter()
            .filter(|t| !skills.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if tools.len() < 2 {
            tools = f.tools.iter().collect();
        }
        let tl = distinct(rng, &tools, 2);
        let listed = and_list(skills);
        let skill_line = fill(
            pick(rng, &t.skills),
            &[
                ("skills", &listed),
                ("s1", &skills[0]),
                ("s2", &skills[1]),
                ("s3", &skills[2]),
                ("t1", tl[0]),
                ("t2", tl[1]),
            ],
        );
        let goal = fill(pick(rng, &t.goals), &[("g", pick(rng, &f.goals))]);
        let place = fill(pick(rng, &t.places), &[("city", city)]);
        // 4, 5 or 6 sentences: the optional ones are the second achievement and the place.
        let (with_more, with_place) = match rng.random_range(0..4) {
            0 => (false, false),
            1 => (true, false),
            2 => (false, true),
            _ => (true, true),
        };
        let sentences = [
            Some(headline),
            Some(first),
            with_more.then_some(more),
            Some(skill_line),
            Some(goal),
            with_place.then_some(place),
        ];
        join(&sentences)
    }
}

/// What a posting's description is composed from.
struct Posting<'a> {
    company: &'a str,
    title: &'a str,
    city: &'a str,
    remote: bool,
    employment_type: EmploymentType,
    family: &'a Family,
    category: &'a Category,
    /// Signature skills first; at least 3.
    skills: &'a [String],
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
        let (mut job, _) = world.job(&mut rng, n, as_of);
        if opts.embeddings == Embeddings::None {
            job.embedding = None;
        }
        write_line(out, &job)?;
    }
    out.flush()?;
    Ok(opts.jobs)
}

/// Writes `demo-user` and `opts.profiles` more (`user-001`, ...), each with
/// its resume `text`.
pub fn write_profiles(world: &World, opts: &Options, out: &mut impl Write) -> io::Result<usize> {
    let mut rng = rng(opts.seed, PROFILE_STREAM);
    let demo = world
        .catalog
        .families
        .iter()
        .position(|f| f.name == DEMO_FAMILY);
    let ids = std::iter::once("demo-user".to_owned())
        .chain((1..=opts.profiles).map(|n| format!("user-{n:03}")));
    for (i, id) in ids.enumerate() {
        let family = if i == 0 { demo } else { None };
        let (mut profile, _) = world.profile(&mut rng, &id, family);
        if opts.embeddings == Embeddings::None {
            profile.embedding = None;
        }
        write_line(out, &profile)?;
    }
    out.flush()?;
    Ok(opts.profiles + 1)
}

/// A long resume of exactly `words` words, seeded: resumes of one family and
/// postings laid end to end, as a career history's sections read (the
/// fair-use tests' and benchmark's "resume of 1,400 words"). Different seeds
/// give different texts, so that no cache serves one for another.
pub fn long_resume(seed: u64, words: usize) -> String {
    let world = World::new(seed);
    let mut rng = rng(seed, LONG_RESUME_STREAM);
    let family = world.families.sample(&mut rng);
    let as_of = as_of_instant(today());
    let mut out: Vec<String> = Vec::with_capacity(words + 100);
    let mut n = 0;
    while out.len() < words {
        n += 1;
        let (profile, _) = world.profile(&mut rng, "long-resume", Some(family));
        let text = profile.text.unwrap_or_default();
        out.extend(text.split_whitespace().map(str::to_owned));
        let (job, _) = world.job(&mut rng, n, as_of);
        out.extend(job.description.split_whitespace().map(str::to_owned));
    }
    out.truncate(words);
    out.join(" ")
}

fn write_line(out: &mut impl Write, record: &impl serde::Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// UTC midnight of `day`.
pub fn as_of_instant(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// A seniority step by weight; profiles are never interns.
fn pick_level<'a>(rng: &mut impl Rng, ladder: &'a [Level], interns: bool) -> &'a Level {
    let steps: Vec<&Level> = ladder.iter().filter(|l| interns || !l.intern).collect();
    steps
        .choose_weighted(rng, |l| l.weight)
        .copied()
        .unwrap_or(&ladder[0])
}

/// The role's signature skills plus distinct ones from the family pool.
fn pick_skills(
    rng: &mut impl Rng,
    family: &Family,
    signature: &[String],
    count: usize,
) -> Vec<String> {
    let pool: Vec<&String> = family
        .skills
        .iter()
        .filter(|s| !signature.contains(s))
        .collect();
    let extra = count.saturating_sub(signature.len());
    signature
        .iter()
        .chain(pool.choose_multiple(rng, extra).copied())
        .cloned()
        .collect()
}

/// One element; the catalogue's check guarantees non-empty lists.
fn pick<'a>(rng: &mut impl Rng, list: &'a [String]) -> &'a str {
    &list[rng.random_range(0..list.len())]
}

/// `k` distinct phrases in random order (repeating only if the list is shorter).
fn distinct<'a, T: AsRef<str>>(rng: &mut impl Rng, list: &'a [T], k: usize) -> Vec<&'a str> {
    let mut picked: Vec<&str> = list.choose_multiple(rng, k).map(AsRef::as_ref).collect();
    while picked.len() < k {
        picked.push(picked[picked.len() % list.len().max(1)]);
    }
    picked
}

/// Items in a random order where heavier ones tend to come first.
fn weighted_order<T>(rng: &mut impl Rng, mut items: Vec<(usize, T, u32)>) -> Vec<(usize, T)> {
    let mut out = Vec::with_capacity(items.len());
    while !items.is_empty() {
        let total: u32 = items.iter().map(|i| i.2).sum();
        let mut u = rng.random_range(0..total.max(1));
        let at = items
            .iter()
            .position(|i| {
                let hit = u < i.2;
                u = u.saturating_sub(i.2);
                hit
            })
            .unwrap_or(0);
        let (slot, item, _) = items.remove(at);
        out.push((slot, item));
    }
    out
}

fn words(sentences: &[Option<String>]) -> usize {
    sentences
        .iter()
        .flatten()
        .map(|s| s.split_whitespace().count())
        .sum()
}

fn join(sentences: &[Option<String>]) -> String {
    let parts: Vec<&str> = sentences.iter().flatten().map(String::as_str).collect();
    parts.join(" ")
}

/// "a, b and c".
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn years_phrase(years: u32) -> String {
    match years {
        0 | 1 => "one year".to_owned(),
        n => format!("{n} years"),
    }
}

/// "Senior" + "Backend Engineer (Rust)" -> "Senior Backend Engineer (Rust)".
fn with_prefix(prefix: &str, title: &str) -> String {
    if prefix.is_empty() {
        title.to_owned()
    } else {
        format!("{prefix} {title}")
    }
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

    fn opts(jobs: usize, embeddings: Embeddings) -> Options {
        Options {
            jobs,
            profiles: 5,
            seed: 7,
            as_of: NaiveDate::from_ymd_opt(2025, 6, 1).expect("date"),
            embeddings,
        }
    }

    fn files(o: &Options) -> (Vec<u8>, Vec<u8>) {
        let world = World::new(o.seed);
        let (mut jobs, mut profiles) = (Vec::new(), Vec::new());
        write_jobs(&world, o, &mut jobs).expect("jobs");
        write_profiles(&world, o, &mut profiles).expect("profiles");
        (jobs, profiles)
    }

    fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Vec<T> {
        std::str::from_utf8(bytes)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("line"))
            .collect()
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn vector(v: &Option<Vec<f32>>) -> &[f32] {
        v.as_deref().expect("a synthetic embedding")
    }

    fn sample(n: usize) -> Vec<(JobRecord, usize)> {
        let o = opts(n, Embeddings::Synthetic);
        let world = World::new(o.seed);
        let mut rng = rng(o.seed, JOB_STREAM);
        (1..=n)
            .map(|i| world.job(&mut rng, i, as_of_instant(o.as_of)))
            .collect()
    }

    #[test]
    fn same_seed_gives_identical_files_and_another_seed_does_not() {
        for mode in [Embeddings::None, Embeddings::Synthetic] {
            let o = opts(200, mode);
            assert_eq!(files(&o), files(&o));
            let other = Options { seed: 8, ..o };
            assert_ne!(files(&o).0, files(&other).0);
            // The profile count does not change the jobs.
            let more = Options { profiles: 50, ..o };
            assert_eq!(files(&o).0, files(&more).0);
        }
    }

    #[test]
    fn the_texts_do_not_depend_on_the_embedding_mode() {
        let (jobs, profiles) = files(&opts(100, Embeddings::None));
        let (synthetic_jobs, synthetic_profiles) = files(&opts(100, Embeddings::Synthetic));
        let strip_jobs = |b: &[u8]| -> Vec<JobRecord> {
            parse::<JobRecord>(b)
                .into_iter()
                .map(|j| JobRecord {
                    embedding: None,
                    ..j
                })
                .collect()
        };
        assert_eq!(strip_jobs(&jobs), strip_jobs(&synthetic_jobs));
        let texts = |b: &[u8]| -> Vec<Option<String>> {
            parse::<ProfileRecord>(b)
                .into_iter()
                .map(|p| p.text)
                .collect()
        };
        assert_eq!(texts(&profiles), texts(&synthetic_profiles));
    }

    #[test]
    fn lines_are_valid_records() {
        for mode in [Embeddings::None, Embeddings::Synthetic] {
            let (jobs, profiles) = files(&opts(300, mode));
            let text = String::from_utf8(jobs.clone()).expect("utf-8");
            assert_eq!(
                text.contains("\"embedding\""),
                mode == Embeddings::Synthetic
            );
            for (i, job) in parse::<JobRecord>(&jobs).iter().enumerate() {
                let family = family_of_job_id(&job.id).expect("a family in the id");
                assert_eq!(job.id, job_id(family, i + 1));
                assert!((3..=8).contains(&job.skills.len()), "{:?}", job.skills);
                assert_eq!(job.skills, normalise_skills(&job.skills));
                match (&job.embedding, mode) {
                    (None, Embeddings::None) => {}
                    (Some(v), Embeddings::Synthetic) => {
                        assert!(shared::domain::check_embedding(v).is_ok())
                    }
                    (e, _) => panic!("{mode:?} with {:?}", e.as_ref().map(Vec::len)),
                }
                if let (Some(lo), Some(hi)) = (job.salary_min, job.salary_max) {
                    assert!(0 < lo && lo <= hi, "{lo} {hi}");
                }
                assert!(job.salary_max.is_none() || job.salary_min.is_some());
            }
            let profiles: Vec<ProfileRecord> = parse(&profiles);
            assert_eq!(profiles.len(), 6);
            assert_eq!(profiles[0].user_id, "demo-user");
            assert_eq!(profiles[1].user_id, "user-001");
            for p in &profiles {
                assert!(p.text.as_deref().is_some_and(|t| !t.is_empty()));
                assert_eq!(p.embedding.is_some(), mode == Embeddings::Synthetic);
            }
        }
    }

    #[test]
    fn job_ids_carry_the_family() {
        assert_eq!(family_of_job_id("job-backend-000001"), Some("backend"));
        assert_eq!(
            family_of_job_id("job-data-engineering-123456"),
            Some("data-engineering")
        );
        assert_eq!(
            family_of_job_id(&job_id("it-support", 1_234_567)),
            Some("it-support")
        );
        for bad in [
            "job-000001",
            "job-new",
            "job-backend-12",
            "job-backend-00000x",
            "job-unknown-000001",
            "backend-000001",
            "",
        ] {
            assert_eq!(family_of_job_id(bad), None, "{bad}");
        }
        let ids = first_job_ids(7, 3);
        let (jobs, _) = files(&opts(3, Embeddings::None));
        let written: Vec<String> = parse::<JobRecord>(&jobs)
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(ids, written);
    }

    #[test]
    fn descriptions_read_like_postings_of_their_family() {
        let jobs = sample(2000);
        let catalog = catalog();
        let mut lengths = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (job, f) in &jobs {
            let family = &catalog.families[*f];
            let d = &job.description;
            assert!(!d.contains(['{', '}']), "{d}");
            assert!(d.contains(&job.company) && d.contains(&job.location), "{d}");
            // The responsibilities are always there: the text says its family.
            assert!(
                family
                    .responsibilities
                    .iter()
                    .any(|r| d.contains(r.as_str())),
                "{d}"
            );
            let sentences = d.replace("D.C.", "DC").matches(". ").count() + 1;
            assert!((3..=5).contains(&sentences), "{sentences}: {d}");
            let words = d.split_whitespace().count();
            assert!((40..=100).contains(&words), "{words}: {d}");
            lengths.push(words);
            // The model's window is 256 word pieces; stay well under 200.
            let embedded = job.embedding_text().split_whitespace().count();
            assert!(embedded < 130, "{embedded}: {}", job.embedding_text());
            assert!(seen.insert(d.clone()), "repeated: {d}");
        }
        let mean = lengths.iter().sum::<usize>() as f64 / lengths.len() as f64;
        assert!((55.0..=80.0).contains(&mean), "mean {mean} words");
        let in_range = lengths
            .iter()
            .filter(|w| (MIN_WORDS..=MAX_WORDS).contains(w))
            .count();
        assert!(in_range * 100 >= lengths.len() * 95, "{in_range} of 2000");
    }

    #[test]
    fn long_resumes_have_their_length_and_differ_by_seed() {
        let a = long_resume(1, 1_400);
        assert_eq!(a.split_whitespace().count(), 1_400);
        assert_eq!(a, long_resume(1, 1_400), "seeded");
        assert_ne!(a, long_resume(2, 1_400));
    }

    #[test]
    fn profiles_read_like_resumes() {
        let o = Options {
            profiles: 300,
            ..opts(0, Embeddings::None)
        };
        let (_, profiles) = files(&o);
        let profiles: Vec<ProfileRecord> = parse(&profiles);
        let postings: Vec<String> = catalog()
            .posting
            .openings
            .iter()
            .map(|t| t[..t.find('{').unwrap_or(t.len())].to_owned())
            .collect();
        for p in &profiles {
            let text = p.text.as_deref().expect("text");
            assert!(!text.contains(['{', '}']), "{text}");
            let sentences = text.replace("D.C.", "DC").matches(". ").count() + 1;
            assert!((4..=6).contains(&sentences), "{sentences}: {text}");
            let words = text.split_whitespace().count();
            assert!((30..=110).contains(&words), "{words}: {text}");
            assert!(!postings
                .iter()
                .any(|o| !o.is_empty() && text.contains(o.as_str())));
        }
        let demo = profiles[0].text.as_deref().expect("demo text");
        assert!(demo.contains("backend development"), "{demo}");
        assert!(demo.contains("Backend Engineer (Rust)"), "{demo}");
    }

    #[test]
    fn embeddings_are_unit_length_and_384_wide() {
        for (job, _) in sample(200) {
            let v = vector(&job.embedding);
            assert_eq!(v.len(), EMBEDDING_DIM);
            let norm = cosine(v, v).sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
        }
    }

    #[test]
    fn synthetic_same_family_pairs_are_clearly_closer_than_cross_family() {
        let jobs = sample(600);
        let (mut same, mut cross) = (Vec::new(), Vec::new());
        for (i, (a, fa)) in jobs.iter().enumerate() {
            for (b, fb) in &jobs[i + 1..] {
                let c = cosine(vector(&a.embedding), vector(&b.embedding));
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
        let o = opts(0, Embeddings::Synthetic);
        let world = World::new(o.seed);
        let mut out = Vec::new();
        write_profiles(&world, &o, &mut out).expect("profiles");
        let demo: ProfileRecord = parse(&out).remove(0);
        let backend = catalog()
            .families
            .iter()
            .position(|f| f.name == DEMO_FAMILY)
            .expect("family");
        for (i, centre) in world.centres.iter().enumerate() {
            let c = cosine(vector(&demo.embedding), centre);
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
        let as_of = as_of_instant(opts(0, Embeddings::None).as_of);
        assert!(jobs
            .iter()
            .all(|(j, _)| j.posted_at < as_of && j.posted_at > as_of - Duration::days(367)));
        let london = share(&|j| j.location == "London");
        let lagos = share(&|j| j.location == "Lagos");
        assert!(london > 3.0 * lagos, "london {london}, lagos {lagos}");
        let families: std::collections::HashSet<_> = jobs.iter().map(|(_, f)| f).collect();
        assert_eq!(families.len(), catalog().families.len());
    }

    #[test]
    fn titles_read_naturally() {
        assert_eq!(
            intern_title("Backend Engineer (Rust)"),
            "Backend Engineer Intern (Rust)"
        );
        assert_eq!(intern_title("Data Analyst"), "Data Analyst Intern");
        assert_eq!(with_prefix("Senior", "Data Analyst"), "Senior Data Analyst");
        assert_eq!(with_prefix("", "Data Analyst"), "Data Analyst");
        assert_eq!(article("Senior Backend Engineer"), "a");
        assert_eq!(article("ICU Nurse"), "an");
        assert_eq!(article("MRI Technologist"), "an");
        assert_eq!(article("UX Designer"), "a");
        assert_eq!(article("Underwriter"), "an");
        assert_eq!(article("Unity Developer"), "a");
        assert_eq!(article("iOS Engineer"), "an");
        assert_eq!(round_pay(123_456.0), 123_000);
        assert_eq!(round_pay(12_260.0), 12_500);
        assert_eq!(
            and_list(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
        assert_eq!(years_phrase(1), "one year");
        assert_eq!(years_phrase(7), "7 years");
    }
}

//! The vocabulary of the synthetic data set, read from `cli/data/catalog.json`
//! (embedded at build time, parsed and checked once): categories with their
//! company names, intros and benefits; seniority ladders; role families with
//! their titles, skills, pay and the phrases a posting or a resume is composed
//! of; the sentence templates; cities and company name parts.
//!
//! Templates hold `{name}` placeholders; `check` refuses a template that uses
//! a placeholder its slot does not fill, so a data edit cannot leave braces in
//! the output.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde::Deserialize;

const CATALOG_JSON: &str = include_str!("../data/catalog.json");

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    // The file is part of the binary and checked by the unit tests.
    Catalog::parse(CATALOG_JSON).unwrap_or_else(|e| panic!("cli/data/catalog.json: {e}"))
});

/// The catalogue compiled into this binary.
pub fn catalog() -> &'static Catalog {
    &CATALOG
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub categories: Vec<Category>,
    /// Seniority ladders by name (`Family::ladder`).
    pub ladders: BTreeMap<String, Vec<Level>>,
    pub posting: PostingTemplates,
    pub resume: ResumeTemplates,
    pub families: Vec<Family>,
    pub cities: Vec<City>,
    /// First words of company names; the second comes from the category.
    pub company_prefixes: Vec<String>,
}

/// Sector of a family: decides company names, remote share, contract mix,
/// and the company intros and benefits of its postings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    /// Share of postings that are remote.
    pub remote_share: f64,
    /// Weights of full_time, part_time, contract, temporary (internships
    /// come from the seniority ladder).
    pub employment_weights: [u32; 4],
    pub company_suffixes: Vec<String>,
    /// Sentences with `{company}`.
    pub intros: Vec<String>,
    /// Noun phrases: "a yearly learning budget".
    pub benefits: Vec<String>,
}

/// One seniority step.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Level {
    /// Title prefix ("Senior"), empty for the plain title.
    pub prefix: String,
    /// How common the step is within its ladder.
    pub weight: u32,
    /// Pay factor on the family's base salary.
    pub pay: f64,
    /// Years of experience a resume at this step states (inclusive range).
    pub years: [u32; 2],
    /// Intern titles take a suffix and the `internship` employment type.
    #[serde(default)]
    pub intern: bool,
}

/// A role family: one cluster of postings. Its roles are the sub-clusters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Family {
    /// Stable: job ids carry it and benchmark queries are labelled with it.
    pub name: String,
    /// Name of its category.
    pub category: String,
    /// Relative number of postings.
    pub weight: u32,
    /// Mid-level yearly salary (USD) in a city of pay factor 1.0.
    pub base_salary: f64,
    /// Name of its seniority ladder.
    pub ladder: String,
    /// What a resume says its owner works in: "backend development".
    pub field: String,
    /// "... to {duty}." in a posting's opening.
    pub duty: String,
    pub roles: Vec<Role>,
    /// Skills any posting of the family may ask for.
    pub skills: Vec<String>,
    /// Verb phrases: "you will {responsibility}".
    pub responsibilities: Vec<String>,
    /// Noun phrases: "we are looking for {requirement}".
    pub requirements: Vec<String>,
    /// Tools and settings of the work: "you will work with {tool}".
    pub tools: Vec<String>,
    /// About the team: "you will join {team}".
    pub team: Vec<String>,
    /// Past-tense verb phrases for resumes: "most recently I {achievement}".
    pub achievements: Vec<String>,
    /// What a candidate wants next: "I am looking for {goal}".
    pub goals: Vec<String>,
    /// Index of `category` in `Catalog::categories`, set by `check`.
    #[serde(skip)]
    pub category_index: usize,
}

/// A specialisation: its title and the skills every posting of it asks for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Role {
    pub title: String,
    pub skills: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct City {
    pub name: String,
    /// How common it is as a job location.
    pub weight: u32,
    /// Pay factor.
    pub pay: f64,
}

/// Sentence templates of a posting's description, one list per slot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostingTemplates {
    pub openings: Vec<String>,
    /// What `{remote}` becomes in an opening of a remote posting.
    pub remote: Vec<String>,
    pub team: Vec<String>,
    pub responsibilities: Vec<String>,
    pub tools: Vec<String>,
    pub requirements: Vec<String>,
    pub benefits: Vec<String>,
    /// By employment type (`part_time`, ...); full-time postings say nothing.
    pub employment: BTreeMap<String, Vec<String>>,
}

/// Sentence templates of a profile's resume text, one list per slot.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResumeTemplates {
    pub headlines: Vec<String>,
    pub achievements: Vec<String>,
    pub more_achievements: Vec<String>,
    pub skills: Vec<String>,
    pub goals: Vec<String>,
    pub places: Vec<String>,
}

/// The placeholders each template slot fills (`generate` fills exactly these).
pub mod slots {
    pub const OPENING: &[&str] = &["company", "a_title", "city", "remote", "duty"];
    pub const INTRO: &[&str] = &["company"];
    pub const TEAM: &[&str] = &["team"];
    pub const RESPONSIBILITIES: &[&str] = &["r1", "r2", "r3"];
    pub const TOOLS: &[&str] = &["t1", "t2", "t3"];
    pub const REQUIREMENTS: &[&str] = &["q1", "q2", "s1", "s2"];
    pub const BENEFITS: &[&str] = &["b1", "b2", "b3"];
    pub const HEADLINE: &[&str] = &["title", "a_title", "years", "field"];
    pub const ACHIEVEMENT: &[&str] = &["d1"];
    pub const MORE_ACHIEVEMENTS: &[&str] = &["d2"];
    pub const SKILLS: &[&str] = &["skills", "s1", "s2", "s3", "t1", "t2"];
    pub const GOAL: &[&str] = &["g"];
    pub const PLACE: &[&str] = &["city"];
}

/// Employment types that have a sentence (`EmploymentType::as_str`).
pub const EMPLOYMENT_SENTENCES: &[&str] = &["part_time", "contract", "temporary", "internship"];

impl Catalog {
    /// Parses and checks a catalogue, resolving family categories.
    pub fn parse(json: &str) -> Result<Catalog, String> {
        let mut catalog: Catalog = serde_json::from_str(json).map_err(|e| e.to_string())?;
        catalog.check()?;
        Ok(catalog)
    }

    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.iter().find(|f| f.name == name)
    }

    pub fn category(&self, family: &Family) -> &Category {
        &self.categories[family.category_index]
    }

    pub fn ladder(&self, family: &Family) -> &[Level] {
        // `check` made sure every family's ladder exists.
        self.ladders.get(&family.ladder).map_or(&[], Vec::as_slice)
    }

    /// Everything the generator relies on: positive weights and pay, enough
    /// phrases for distinct picks, known names and placeholders.
    fn check(&mut self) -> Result<(), String> {
        nonempty("categories", self.categories.len(), 1)?;
        for c in &self.categories {
            let at = format!("category {}", c.name);
            if !(0.0..=1.0).contains(&c.remote_share) {
                return Err(format!("{at}: remote_share out of 0..=1"));
            }
            if c.employment_weights.iter().sum::<u32>() == 0 {
                return Err(format!("{at}: employment_weights are all zero"));
            }
            nonempty(
                &format!("{at}: company_suffixes"),
                c.company_suffixes.len(),
                1,
            )?;
            templates(&format!("{at}: intros"), &c.intros, slots::INTRO, 1)?;
            nonempty(&format!("{at}: benefits"), c.benefits.len(), 3)?;
        }
        unique("category", self.categories.iter().map(|c| c.name.as_str()))?;
        for (name, ladder) in &self.ladders {
            nonempty(&format!("ladder {name}"), ladder.len(), 1)?;
            if ladder.iter().all(|l| l.intern) {
                return Err(format!("ladder {name}: only intern steps"));
            }
            for l in ladder {
                if l.weight == 0 || l.pay <= 0.0 || l.years[0] > l.years[1] {
                    return Err(format!("ladder {name}: bad step {l:?}"));
                }
            }
        }
        let p = &self.posting;
        templates("posting.openings", &p.openings, slots::OPENING, 1)?;
        nonempty("posting.remote", p.remote.len(), 1)?;
        templates("posting.team", &p.team, slots::TEAM, 1)?;
        templates(
            "posting.responsibilities",
            &p.responsibilities,
            slots::RESPONSIBILITIES,
            1,
        )?;
        templates("posting.tools", &p.tools, slots::TOOLS, 1)?;
        templates(
            "posting.requirements",
            &p.requirements,
            slots::REQUIREMENTS,
            1,
        )?;
        templates("posting.benefits", &p.benefits, slots::BENEFITS, 1)?;
        for kind in EMPLOYMENT_SENTENCES {
            let list = p.employment.get(*kind).map_or(&[][..], Vec::as_slice);
            templates(&format!("posting.employment.{kind}"), list, &[], 1)?;
        }
        let r = &self.resume;
        templates("resume.headlines", &r.headlines, slots::HEADLINE, 1)?;
        templates(
            "resume.achievements",
            &r.achievements,
            slots::ACHIEVEMENT,
            1,
        )?;
        templates(
            "resume.more_achievements",
            &r.more_achievements,
            slots::MORE_ACHIEVEMENTS,
            1,
        )?;
        templates("resume.skills", &r.skills, slots::SKILLS, 1)?;
        templates("resume.goals", &r.goals, slots::GOAL, 1)?;
        templates("resume.places", &r.places, slots::PLACE, 1)?;

        nonempty("families", self.families.len(), 2)?;
        unique("family", self.families.iter().map(|f| f.name.as_str()))?;
        for f in &mut self.families {
            let at = format!("family {}", f.name);
            let valid_name = !f.name.is_empty()
                && f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid_name {
                return Err(format!(
                    "{at}: name must be lower-case letters, digits and -"
                ));
            }
            f.category_index = self
                .categories
                .iter()
                .position(|c| c.name == f.category)
                .ok_or_else(|| format!("{at}: unknown category {}", f.category))?;
            if !self.ladders.contains_key(&f.ladder) {
                return Err(format!("{at}: unknown ladder {}", f.ladder));
            }
            if f.weight == 0 || f.base_salary <= 0.0 {
                return Err(format!("{at}: weight and base_salary must be positive"));
            }
            nonempty(&format!("{at}: roles"), f.roles.len(), 1)?;
            for role in &f.roles {
                // Postings ask for 3..=8 skills, the signature ones first.
                if !(1..=3).contains(&role.skills.len()) || role.title.trim().is_empty() {
                    return Err(format!(
                        "{at}: role {:?} needs a title and 1-3 skills",
                        role.title
                    ));
                }
            }
            // Enough skills that any posting can ask for 8 distinct ones.
            nonempty(&format!("{at}: skills"), f.skills.len(), 6)?;
            nonempty(
                &format!("{at}: responsibilities"),
                f.responsibilities.len(),
                3,
            )?;
            nonempty(&format!("{at}: requirements"), f.requirements.len(), 2)?;
            nonempty(&format!("{at}: tools"), f.tools.len(), 3)?;
            nonempty(&format!("{at}: team"), f.team.len(), 1)?;
            nonempty(&format!("{at}: achievements"), f.achievements.len(), 2)?;
            nonempty(&format!("{at}: goals"), f.goals.len(), 1)?;
            let phrases = [&f.responsibilities, &f.requirements, &f.tools, &f.team];
            let resume = [&f.achievements, &f.goals];
            let all = phrases.iter().chain(&resume).flat_map(|l| l.iter());
            for phrase in all.chain([&f.field, &f.duty]) {
                if phrase.trim().is_empty() || phrase.contains(['{', '}']) || phrase.ends_with('.')
                {
                    return Err(format!("{at}: bad phrase {phrase:?}"));
                }
            }
        }
        nonempty("cities", self.cities.len(), 1)?;
        for c in &self.cities {
            if c.weight == 0 || c.pay <= 0.0 {
                return Err(format!("city {}: weight and pay must be positive", c.name));
            }
        }
        nonempty("company_prefixes", self.company_prefixes.len(), 1)?;
        Ok(())
    }
}

fn nonempty(what: &str, len: usize, min: usize) -> Result<(), String> {
    if len < min {
        return Err(format!("{what}: needs at least {min}, has {len}"));
    }
    Ok(())
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("{what} {name} appears twice"));
        }
    }
    Ok(())
}

/// At least `min` templates, each using only `allowed` placeholders.
fn templates(what: &str, list: &[String], allowed: &[&str], min: usize) -> Result<(), String> {
    nonempty(what, list.len(), min)?;
    for t in list {
        for name in placeholders(t)? {
            if !allowed.contains(&name) {
                return Err(format!("{what}: {{{name}}} is not filled in {t:?}"));
            }
        }
    }
    Ok(())
}

/// The `{name}`s of a template.
fn placeholders(template: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ in {template:?}"))?;
        out.push(&rest[open + 1..open + close]);
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("stray }} in {template:?}"));
    }
    Ok(out)
}

/// Fills `{name}` placeholders from `values`; unknown ones stay as they are
/// (`check` rules them out for the catalogue's templates).
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match values.iter().find(|(k, _)| *k == name) {
                    Some((_, v)) => out.push_str(v),
                    None => out.push_str(&rest[open..open + close + 2]),
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The family names the relevance benchmark's queries are labelled with.
    const FAMILY_NAMES: &[&str] = &[
        "backend",
        "frontend",
        "fullstack",
        "mobile",
        "platform",
        "security",
        "qa",
        "embedded",
        "it-support",
        "engineering-management",
        "games",
        "product-management",
        "solutions-architecture",
        "data-analysis",
        "data-engineering",
        "data-science",
        "ml-engineering",
        "business-intelligence",
        "product-design",
        "graphic-design",
        "ux-research",
        "content",
        "account-executive",
        "sales-development",
        "customer-success",
        "retail",
        "digital-marketing",
        "nursing",
        "physicians",
        "pharmacy",
        "allied-health",
        "diagnostics",
        "care",
        "dental",
        "accounting",
        "fpa",
        "risk-compliance",
        "investment",
        "insurance",
        "supply-chain",
        "warehouse",
        "project-management",
        "people",
        "customer-support",
        "office",
        "manufacturing",
    ];

    #[test]
    fn the_data_file_parses_and_holds_its_invariants() {
        let c = Catalog::parse(CATALOG_JSON).expect("catalog.json");
        let names: Vec<&str> = c.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, FAMILY_NAMES);
        for f in &c.families {
            assert!(f.weight > 0 && f.base_salary > 0.0, "{}", f.name);
            assert!(!f.roles.is_empty() && !f.skills.is_empty(), "{}", f.name);
            assert!(!c.ladder(f).is_empty(), "{}", f.name);
            assert_eq!(c.category(f).name, f.category);
            // Skills are stored normalised (lower case, trimmed).
            for s in f
                .skills
                .iter()
                .chain(f.roles.iter().flat_map(|r| &r.skills))
            {
                assert_eq!(s, &s.trim().to_lowercase(), "{}", f.name);
            }
        }
        assert!(c.cities.iter().all(|x| x.weight > 0 && x.pay > 0.0));
        assert_eq!(c.cities[0].name, "London");
        assert_eq!(c.family("backend").map(|f| f.roles.len()), Some(5));
        assert_eq!(catalog().families.len(), c.families.len());
    }

    #[test]
    fn check_refuses_what_the_generator_cannot_use() {
        let good: serde_json::Value = serde_json::from_str(CATALOG_JSON).expect("json");
        let broken = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut v = good.clone();
            edit(&mut v);
            Catalog::parse(&v.to_string()).expect_err("must be refused")
        };
        let e = broken(&|v| v["families"][0]["weight"] = 0.into());
        assert!(e.contains("family backend"), "{e}");
        let e = broken(&|v| v["families"][1]["tools"] = serde_json::json!([]));
        assert!(e.contains("family frontend: tools"), "{e}");
        let e = broken(&|v| v["families"][2]["ladder"] = "nope".into());
        assert!(e.contains("unknown ladder"), "{e}");
        let e = broken(&|v| v["posting"]["team"][0] = "You join {squad}.".into());
        assert!(e.contains("{squad}"), "{e}");
        let e = broken(&|v| v["cities"][0]["pay"] = 0.0.into());
        assert!(e.contains("London"), "{e}");
        let e = broken(&|v| v["families"][3]["name"] = "backend".into());
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn fill_replaces_known_placeholders_only() {
        let v = [("a", "x"), ("bb", "y")];
        assert_eq!(fill("{a}-{bb}-{c}", &v), "x-y-{c}");
        assert_eq!(fill("no braces", &v), "no braces");
        assert_eq!(fill("open {a", &v), "open {a");
        assert_eq!(placeholders("{a} and {b}"), Ok(vec!["a", "b"]));
        assert!(placeholders("{a").is_err());
    }
}

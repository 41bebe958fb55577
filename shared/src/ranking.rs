//! The ranking rule of DESIGN.md: among the nearest candidates, score each as
//! `0.8 * similarity + 0.2 * skill_overlap` and keep the best `limit`, ties by job id.

use std::collections::HashSet;

use crate::domain::{normalise_skill, normalise_skills, Candidate, JobMatch};

pub const SIMILARITY_WEIGHT: f64 = 0.8;
pub const SKILL_WEIGHT: f64 = 0.2;

/// `|profile ∩ job| / max(1, |job|)`, with the intersection in the job's order.
/// Skills compare as `normalise_skill` makes them, each once, in the job's
/// order: the loader stores them so, but a row written by hand may not be,
/// and `Rust` must still match `rust`.
pub fn skill_overlap(
    profile_skills: &HashSet<String>,
    job_skills: &[String],
) -> (f64, Vec<String>) {
    let mut job: Vec<String> = Vec::with_capacity(job_skills.len());
    for skill in job_skills {
        let skill = normalise_skill(skill);
        if !skill.is_empty() && !job.contains(&skill) {
            job.push(skill);
        }
    }
    let overlap_of = job.len();
    job.retain(|s| profile_skills.contains(s));
    (job.len() as f64 / overlap_of.max(1) as f64, job)
}

/// Scores the candidates and returns the best `limit`, best first.
pub fn rank(candidates: Vec<Candidate>, profile_skills: &[String], limit: usize) -> Vec<JobMatch> {
    let profile: HashSet<String> = normalise_skills(profile_skills).into_iter().collect();
    let mut scored: Vec<JobMatch> = candidates
        .into_iter()
        .map(|c| {
            let (overlap, matched_skills) = skill_overlap(&profile, &c.skills);
            JobMatch {
                score: SIMILARITY_WEIGHT * c.similarity + SKILL_WEIGHT * overlap,
                job_id: c.job_id,
                title: c.title,
                company: c.company,
                location: c.location,
                remote: c.remote,
                employment_type: c.employment_type,
                salary_min: c.salary_min,
                salary_max: c.salary_max,
                posted_at: c.posted_at,
                similarity: c.similarity,
                matched_skills,
            }
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.job_id.cmp(&b.job_id))
    });
    scored.truncate(limit);
    scored
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EmploymentType;

    fn cand(id: &str, similarity: f64, skills: &[&str]) -> Candidate {
        Candidate {
            job_id: id.into(),
            title: "t".into(),
            company: "c".into(),
            location: "l".into(),
            remote: false,
            employment_type: EmploymentType::FullTime,
            salary_min: None,
            salary_max: None,
            posted_at: chrono::DateTime::from_timestamp(0, 0).expect("epoch"),
            valid_through: None,
            skills: skills.iter().map(|s| s.to_string()).collect(),
            similarity,
        }
    }

    #[test]
    fn skills_can_outrank_similarity() {
        let profile = vec!["rust".to_string(), "aws".to_string()];
        let ranked = rank(
            vec![
                cand("a", 0.90, &["java"]),
                cand("b", 0.80, &["rust", "aws"]),
                cand("c", 0.85, &["rust", "go", "k8s", "sql"]),
            ],
            &profile,
            3,
        );
        let ids: Vec<&str> = ranked.iter().map(|m| m.job_id.as_str()).collect();
        // b: 0.64 + 0.2 = 0.84; c: 0.68 + 0.05 = 0.73; a: 0.72.
        assert_eq!(ids, ["b", "c", "a"]);
        assert!((ranked[0].score - 0.84).abs() < 1e-12);
        assert_eq!(ranked[0].matched_skills, ["rust", "aws"]);
        assert_eq!(ranked[1].matched_skills, ["rust"]);
        assert!(ranked[2].matched_skills.is_empty());
    }

    #[test]
    fn ties_break_by_job_id_and_limit_truncates() {
        let ranked = rank(
            vec![
                cand("z", 0.5, &[]),
                cand("m", 0.5, &[]),
                cand("a", 0.5, &[]),
            ],
            &[],
            2,
        );
        let ids: Vec<&str> = ranked.iter().map(|m| m.job_id.as_str()).collect();
        assert_eq!(ids, ["a", "m"]);
    }

    #[test]
    fn job_without_skills_has_zero_overlap() {
        let profile: HashSet<String> = ["rust".to_string()].into_iter().collect();
        assert_eq!(skill_overlap(&profile, &[]), (0.0, vec![]));
    }

    #[test]
    fn skills_written_by_hand_compare_normalised() {
        // A row inserted with SQL: mixed case, padding, a duplicate.
        let ranked = rank(
            vec![cand("a", 0.5, &["Rust", " AWS ", "rust", "Go"])],
            &[" RUST ".to_string(), "aws".to_string()],
            1,
        );
        assert_eq!(ranked[0].matched_skills, ["rust", "aws"]);
        // Two of the job's three distinct skills.
        assert!((ranked[0].score - (0.4 + 0.2 * 2.0 / 3.0)).abs() < 1e-12);
    }
}

//! The catalogue's writes on PostgreSQL, as `jobmatch_writer` (rights on
//! `jobs` alone; db/90_grants.sql): the ingest's upserts by id, an admin's
//! reads and deletes, and the scheduled deletion of expired postings. Every
//! write moves the cache's `jobs_version` through the statement trigger of
//! db/10_cache_versions.sql, so no cached result outlives it.

use std::collections::HashMap;

use pgvector::Vector;
use sqlx::{QueryBuilder, Row};

use crate::adapters::db_connect::Db;
use crate::domain::{EmploymentType, JobRecord, JOB_COLUMNS};
use crate::error::{Error, Result};
use crate::ports::{HashedJob, JobAdmin, JobWriter};

const COMPONENT: &str = "postgres";

#[derive(Clone)]
pub struct PgCatalogue {
    db: Db,
}

impl PgCatalogue {
    pub fn new(db: Db) -> PgCatalogue {
        PgCatalogue { db }
    }
}

fn unavailable(e: sqlx::Error) -> Error {
    Error::unavailable(COMPONENT, e)
}

impl JobWriter for PgCatalogue {
    async fn stored_hashes(&self, ids: &[&str]) -> Result<HashMap<String, Option<[u8; 32]>>> {
        let rows = sqlx::query("SELECT id, content_hash FROM jobs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(self.db.pool().await?)
            .await
            .map_err(unavailable)?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get(0).map_err(unavailable)?;
                let hash: Option<Vec<u8>> = row.try_get(1).map_err(unavailable)?;
                Ok((id, hash.and_then(|h| <[u8; 32]>::try_from(h).ok())))
            })
            .collect()
    }

    async fn upsert(&self, jobs: &[HashedJob]) -> Result<u64> {
        if jobs.is_empty() {
            // No statement at all: even one writing no row moves jobs_version.
            return Ok(0);
        }
        let mut q = QueryBuilder::new(format!(
            "INSERT INTO jobs ({}, content_hash) ",
            JOB_COLUMNS.join(", ")
        ));
        let mut missing = None;
        q.push_values(jobs, |mut row, h| {
            let j = &h.job;
            if j.embedding.is_none() {
                missing = Some(j.id.clone());
            }
            row.push_bind(j.id.clone())
                .push_bind(j.title.clone())
                .push_bind(j.company.clone())
                .push_bind(j.location.clone())
                .push_bind(j.remote)
                .push_bind(j.employment_type.as_str())
                .push_bind(j.salary_min)
                .push_bind(j.salary_max)
                .push_bind(j.skills.clone())
                .push_bind(j.description.clone())
                .push_bind(j.posted_at)
                .push_bind(Vector::from(j.embedding.clone().unwrap_or_default()))
                .push_bind(j.valid_through)
                .push_bind(h.content_hash.to_vec());
        });
        if let Some(id) = missing {
            return Err(Error::Internal(format!("posting {id} has no embedding")));
        }
        // Bound in JOB_COLUMNS order, then content_hash.
        let set: Vec<String> = JOB_COLUMNS[1..]
            .iter()
            .chain(["content_hash"].iter())
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        q.push(format!(
            " ON CONFLICT (id) DO UPDATE SET {} \
             WHERE jobs.content_hash IS DISTINCT FROM excluded.content_hash",
            set.join(", ")
        ));
        let done = q
            .build()
            .persistent(false)
            .execute(self.db.pool().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn delete_expired(&self, days: u32) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM jobs WHERE valid_through < now() - make_interval(days => $1)")
                .bind(i32::try_from(days).unwrap_or(i32::MAX))
                .execute(self.db.pool().await?)
                .await
                .map_err(unavailable)?;
        Ok(done.rows_affected())
    }
}

impl JobAdmin for PgCatalogue {
    async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(
            "SELECT id, title, company, location, remote, employment_type, salary_min, \
             salary_max, skills, description, posted_at, valid_through FROM jobs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.db.pool().await?)
        .await
        .map_err(unavailable)?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("employment_type").map_err(unavailable)?;
        Ok(Some(JobRecord {
            id: row.try_get("id").map_err(unavailable)?,
            title: row.try_get("title").map_err(unavailable)?,
            company: row.try_get("company").map_err(unavailable)?,
            location: row.try_get("location").map_err(unavailable)?,
            remote: row.try_get("remote").map_err(unavailable)?,
            employment_type: EmploymentType::parse(&kind).ok_or_else(|| {
                Error::Internal(format!("stored employment_type {kind:?} is unknown"))
            })?,
            salary_min: row.try_get("salary_min").map_err(unavailable)?,
            salary_max: row.try_get("salary_max").map_err(unavailable)?,
            skills: row.try_get("skills").map_err(unavailable)?,
            description: row.try_get("description").map_err(unavailable)?,
            posted_at: row.try_get("posted_at").map_err(unavailable)?,
            valid_through: row.try_get("valid_through").map_err(unavailable)?,
            embedding: None,
        }))
    }

    async fn delete(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM jobs WHERE id = $1")
            .bind(id)
            .execute(self.db.pool().await?)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() > 0)
    }
}

//! Least privilege (DESIGN.md "Database roles"), through the functions' own
//! connection settings (`FUNCTIONS_DATABASE_URL`, which `cargo lambda watch`
//! gives the functions as DATABASE_URL): the role reads `jobs` and
//! `profiles`, and every write or DDL is refused with `insufficient_privilege`.

use jobmatch_e2e::env;
use sqlx::{Connection, PgConnection};

/// SQLSTATE 42501.
const INSUFFICIENT_PRIVILEGE: &str = "42501";

#[tokio::test]
async fn the_functions_role_reads_jobs_and_profiles_and_writes_nothing() {
    let mut conn = PgConnection::connect(&env("FUNCTIONS_DATABASE_URL"))
        .await
        .expect("the functions' login");
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .expect("current_user");
    assert_eq!(user, env("FUNCTIONS_DB_USER"));
    let superuser: bool =
        sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .expect("rolsuper");
    assert!(!superuser);

    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .expect("may read jobs");
    assert!(jobs > 0, "the demo jobs are loaded");
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM profiles")
        .fetch_one(&mut conn)
        .await
        .expect("may read profiles");

    let refused = [
        "INSERT INTO jobs (id, title, company, location, employment_type, embedding) \
         SELECT 'role-test', title, company, location, employment_type, embedding FROM jobs LIMIT 1",
        "UPDATE jobs SET title = title WHERE id IN (SELECT id FROM jobs LIMIT 1)",
        "DELETE FROM jobs WHERE id = 'no-such-job'",
        "TRUNCATE jobs",
        "UPDATE profiles SET skills = skills",
        "CREATE TABLE role_test (id int)",
        "CREATE INDEX role_test_idx ON jobs (title)",
        "ALTER TABLE jobs ADD COLUMN role_test int",
        "DROP TABLE profiles",
    ];
    for statement in refused {
        let err = sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect_err(statement);
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        // Ownership checks (index, alter, drop) answer 42501 too.
        assert_eq!(
            code.as_deref(),
            Some(INSUFFICIENT_PRIVILEGE),
            "{statement}: {err}"
        );
    }
}

//! The custom resource protocol, apart from AWS: what to do for each request
//! type, and the response CloudFormation must get in every case (success,
//! failure, timeout), PUT to the request's pre-signed `ResponseURL`. A
//! custom resource that never answers leaves the stack waiting for an hour,
//! so every path through `handle` answers.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as Request,
    CloudFormationCustomResourceResponse as Response,
    CloudFormationCustomResourceResponseStatus as Status,
};

/// The physical id of the one schema this resource stands for. Update and
/// Delete echo the id they are given: a new id would make CloudFormation
/// delete the "old" resource after an update.
pub const PHYSICAL_ID: &str = "jobmatch-schema";

/// CloudFormation rejects response bodies over 4096 bytes.
const MAX_REASON: usize = 1500;

/// Runs the migrations; `Ok` carries a short description of the schema version.
pub trait Migrate {
    fn migrate(&self, within: Duration) -> impl Future<Output = Result<String, String>> + Send;
}

/// Delivers the response body to the pre-signed URL.
pub trait Respond {
    fn put(&self, url: &str, body: Vec<u8>) -> impl Future<Output = Result<(), String>> + Send;
}

/// What the request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create and Update: apply the migrations (idempotent: sqlx skips those applied).
    Migrate,
    /// Delete: answer success and leave the data alone; the database's own
    /// deletion policy (snapshot) decides what happens to it.
    Nothing,
    /// An Update that goes back to an older build of the function: a
    /// rollback. CloudFormation restores the function's code first, so it
    /// is the older build that answers. Answer success and leave the schema
    /// as it is: the older build's migrator refuses a schema with migrations
    /// it does not have (applied by the deploy being rolled back), and that
    /// failure would stop the rollback in UPDATE_ROLLBACK_FAILED. Migrations
    /// only add, so the older code works with the newer schema; a failed
    /// migration's transaction left nothing behind.
    KeepSchema,
}

pub fn action(request: &Request) -> Action {
    match request {
        Request::Create(_) => Action::Migrate,
        Request::Update(r) if is_rollback(&r.resource_properties, &r.old_resource_properties) => {
            Action::KeepSchema
        }
        Request::Update(_) => Action::Migrate,
        Request::Delete(_) => Action::Nothing,
        // The enum is non-exhaustive: an unknown request type is not ours to act on.
        _ => Action::Nothing,
    }
}

/// The property holding the ARN of the function version that embeds the
/// migrations (template.yaml: `FunctionVersion: !Ref MigrateFunction.Version`).
const VERSION_PROPERTY: &str = "FunctionVersion";

/// The function and its version number, from a version ARN
/// (`arn:aws:lambda:<region>:<account>:function:<name>:<version>`).
fn function_version(properties: &serde_json::Value) -> Option<(&str, u64)> {
    let arn = properties.get(VERSION_PROPERTY)?.as_str()?;
    let (function, version) = arn.rsplit_once(':')?;
    Some((function, version.parse().ok()?))
}

/// True when the update asks for an older version of the same function than
/// the one it replaces; version numbers only grow. Anything else (another
/// function, a missing or unreadable property) migrates.
fn is_rollback(new: &serde_json::Value, old: &serde_json::Value) -> bool {
    match (function_version(new), function_version(old)) {
        (Some((new_fn, new_v)), Some((old_fn, old_v))) => new_fn == old_fn && new_v < old_v,
        _ => false,
    }
}

/// The fields every response echoes, and the physical id it reports.
struct Echo<'a> {
    response_url: &'a str,
    stack_id: &'a str,
    request_id: &'a str,
    logical_resource_id: &'a str,
    physical_resource_id: &'a str,
}

fn echo(request: &Request) -> Option<Echo<'_>> {
    match request {
        Request::Create(r) => Some(Echo {
            response_url: &r.response_url,
            stack_id: &r.stack_id,
            request_id: &r.request_id,
            logical_resource_id: &r.logical_resource_id,
            physical_resource_id: PHYSICAL_ID,
        }),
        Request::Update(r) => Some(Echo {
            response_url: &r.response_url,
            stack_id: &r.stack_id,
            request_id: &r.request_id,
            logical_resource_id: &r.logical_resource_id,
            physical_resource_id: &r.physical_resource_id,
        }),
        Request::Delete(r) => Some(Echo {
            response_url: &r.response_url,
            stack_id: &r.stack_id,
            request_id: &r.request_id,
            logical_resource_id: &r.logical_resource_id,
            physical_resource_id: &r.physical_resource_id,
        }),
        _ => None,
    }
}

/// The response for `request` given the outcome of its action; `log_hint`
/// (the log stream) is appended to a failure's reason.
pub fn response(
    request: &Request,
    outcome: &Result<String, String>,
    log_hint: &str,
) -> Option<Response> {
    let echo = echo(request)?;
    let mut response = Response::default();
    response.physical_resource_id = echo.physical_resource_id.to_owned();
    response.stack_id = echo.stack_id.to_owned();
    response.request_id = echo.request_id.to_owned();
    response.logical_resource_id = echo.logical_resource_id.to_owned();
    response.no_echo = false;
    match outcome {
        Ok(version) => {
            response.status = Status::Success;
            response.reason = Some(version.clone());
            response.data = HashMap::from([("SchemaVersion".to_owned(), version.clone())]);
        }
        Err(error) => {
            response.status = Status::Failed;
            let mut reason: String = error.chars().take(MAX_REASON).collect();
            if !log_hint.is_empty() {
                reason.push_str(&format!(" (log stream {log_hint})"));
            }
            response.reason = Some(reason);
            response.data = HashMap::new();
        }
    }
    Some(response)
}

/// Acts on the request and always answers CloudFormation. `within` bounds
/// the migration so that the answer goes out before the function times out.
/// `Err` only when the answer itself could not be delivered (Lambda then
/// retries the asynchronous invocation).
pub async fn handle<M: Migrate, R: Respond>(
    request: &Request,
    migrator: &M,
    responder: &R,
    within: Duration,
    log_hint: &str,
) -> Result<Status, String> {
    let Some(echo) = echo(request) else {
        return Err("unknown custom resource request type".into());
    };
    let outcome = match action(request) {
        Action::Migrate => match tokio::time::timeout(within, migrator.migrate(within)).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "migrations did not finish within {} s",
                within.as_secs()
            )),
        },
        Action::Nothing => Ok("delete: schema and data left in place".to_owned()),
        Action::KeepSchema => {
            Ok("rollback: migrations not run; the schema keeps those already applied".to_owned())
        }
    };
    if let Err(e) = &outcome {
        tracing::error!(error = %e, "migration failed");
    }
    let response = response(request, &outcome, log_hint).ok_or("unknown request type")?;
    let status = response.status.clone();
    let body = serde_json::to_vec(&response).map_err(|e| format!("encoding the response: {e}"))?;
    responder.put(echo.response_url, body).await?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    fn request(kind: &str) -> Request {
        let mut json = serde_json::json!({
            "RequestType": kind,
            "ServiceToken": "arn:aws:lambda:eu-west-1:123456789012:function:migrate",
            "ResponseURL": "https://cloudformation-custom-resource-response-euwest1.s3.amazonaws.com/x?sig=1",
            "StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/jobmatch/abc",
            "RequestId": "req-1",
            "ResourceType": "Custom::Migrations",
            "LogicalResourceId": "Migrations",
            "ResourceProperties": {"ServiceToken": "arn", "FunctionVersion": version_arn(3)}
        });
        if kind != "Create" {
            json["PhysicalResourceId"] = "jobmatch-schema-old".into();
        }
        if kind == "Update" {
            json["OldResourceProperties"] =
                serde_json::json!({"ServiceToken": "arn", "FunctionVersion": version_arn(2)});
        }
        serde_json::from_value(json).unwrap()
    }

    fn version_arn(version: u32) -> String {
        format!("arn:aws:lambda:eu-west-1:123456789012:function:jobmatch-migrate:{version}")
    }

    /// An Update from the `old` properties to the `new` ones.
    fn update(new: serde_json::Value, old: serde_json::Value) -> Request {
        let mut json = serde_json::to_value(request("Update")).unwrap();
        json["ResourceProperties"] = new;
        json["OldResourceProperties"] = old;
        serde_json::from_value(json).unwrap()
    }

    struct FakeMigrator {
        result: Result<String, String>,
        delay: Duration,
        calls: AtomicUsize,
    }

    impl FakeMigrator {
        fn new(result: Result<&str, &str>) -> FakeMigrator {
            FakeMigrator {
                result: result.map(str::to_owned).map_err(str::to_owned),
                delay: Duration::ZERO,
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl Migrate for FakeMigrator {
        async fn migrate(&self, _within: Duration) -> Result<String, String> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(self.delay).await;
            self.result.clone()
        }
    }

    #[derive(Default)]
    struct Recorder {
        sent: Mutex<Vec<(String, serde_json::Value)>>,
        fail: bool,
    }

    impl Respond for Recorder {
        async fn put(&self, url: &str, body: Vec<u8>) -> Result<(), String> {
            if self.fail {
                return Err("connection refused".into());
            }
            let json = serde_json::from_slice(&body).unwrap();
            self.sent.lock().unwrap().push((url.to_owned(), json));
            Ok(())
        }
    }

    async fn run(
        kind: &str,
        migrator: &FakeMigrator,
    ) -> (Result<Status, String>, serde_json::Value) {
        let recorder = Recorder::default();
        let status = handle(
            &request(kind),
            migrator,
            &recorder,
            Duration::from_millis(200),
            "2026/11/25/[$LATEST]abc",
        )
        .await;
        let sent = recorder.sent.lock().unwrap();
        assert_eq!(sent.len(), 1, "exactly one response");
        assert!(sent[0]
            .0
            .starts_with("https://cloudformation-custom-resource-response-euwest1"));
        (status, sent[0].1.clone())
    }

    #[tokio::test]
    async fn create_migrates_and_reports_success_with_the_fixed_physical_id() {
        let migrator = FakeMigrator::new(Ok("at 20261124000001 (jobs and profiles)"));
        let (status, body) = run("Create", &migrator).await;
        assert_eq!(status, Ok(Status::Success));
        assert_eq!(migrator.calls.load(Ordering::SeqCst), 1);
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], PHYSICAL_ID);
        assert_eq!(
            body["StackId"],
            "arn:aws:cloudformation:eu-west-1:123456789012:stack/jobmatch/abc"
        );
        assert_eq!(body["RequestId"], "req-1");
        assert_eq!(body["LogicalResourceId"], "Migrations");
        assert_eq!(
            body["Data"]["SchemaVersion"],
            "at 20261124000001 (jobs and profiles)"
        );
        assert_eq!(body["NoEcho"], false);
    }

    #[tokio::test]
    async fn a_failed_migration_reports_failed_with_its_reason_so_the_stack_rolls_back() {
        let migrator = FakeMigrator::new(Err("migrating: extension \"vector\" is not available"));
        let (status, body) = run("Update", &migrator).await;
        assert_eq!(status, Ok(Status::Failed));
        assert_eq!(body["Status"], "FAILED");
        let reason = body["Reason"].as_str().unwrap();
        assert!(
            reason.contains("extension \"vector\" is not available"),
            "{reason}"
        );
        assert!(
            reason.contains("log stream 2026/11/25/[$LATEST]abc"),
            "{reason}"
        );
        // An update keeps the physical id it was given.
        assert_eq!(body["PhysicalResourceId"], "jobmatch-schema-old");
    }

    #[tokio::test]
    async fn a_migration_that_runs_out_of_time_still_answers_failed() {
        let mut migrator = FakeMigrator::new(Ok("never"));
        migrator.delay = Duration::from_secs(5);
        let (status, body) = run("Create", &migrator).await;
        assert_eq!(status, Ok(Status::Failed));
        assert!(body["Reason"]
            .as_str()
            .unwrap()
            .contains("did not finish within"));
    }

    #[tokio::test]
    async fn delete_succeeds_without_touching_the_database() {
        let migrator = FakeMigrator::new(Err("must not run"));
        let (status, body) = run("Delete", &migrator).await;
        assert_eq!(status, Ok(Status::Success));
        assert_eq!(migrator.calls.load(Ordering::SeqCst), 0);
        assert_eq!(body["Status"], "SUCCESS");
        assert_eq!(body["PhysicalResourceId"], "jobmatch-schema-old");
    }

    #[tokio::test]
    async fn a_rollback_answers_success_without_migrating() {
        let migrator = FakeMigrator::new(Err("must not run"));
        let recorder = Recorder::default();
        // CloudFormation rolls back from version 3 to version 2.
        let rollback = update(
            serde_json::json!({"FunctionVersion": version_arn(2)}),
            serde_json::json!({"FunctionVersion": version_arn(3)}),
        );
        let status = handle(&rollback, &migrator, &recorder, Duration::from_secs(1), "").await;
        assert_eq!(status, Ok(Status::Success));
        assert_eq!(migrator.calls.load(Ordering::SeqCst), 0);
        let sent = recorder.sent.lock().unwrap();
        assert_eq!(sent[0].1["Status"], "SUCCESS");
        assert_eq!(sent[0].1["PhysicalResourceId"], "jobmatch-schema-old");
        assert!(sent[0].1["Data"]["SchemaVersion"]
            .as_str()
            .unwrap()
            .starts_with("rollback"));
    }

    #[test]
    fn only_an_older_version_of_the_same_function_is_a_rollback() {
        let v = |n| serde_json::json!({"FunctionVersion": version_arn(n)});
        assert_eq!(action(&update(v(2), v(3))), Action::KeepSchema);
        assert_eq!(action(&update(v(4), v(3))), Action::Migrate);
        assert_eq!(action(&update(v(3), v(3))), Action::Migrate);
        // Version 10 after 9: numbers, not text.
        assert_eq!(action(&update(v(10), v(9))), Action::Migrate);
        // A replaced function starts again at 1: not a rollback.
        let other = serde_json::json!({
            "FunctionVersion": "arn:aws:lambda:eu-west-1:123456789012:function:other:1"
        });
        assert_eq!(action(&update(other, v(3))), Action::Migrate);
        // Without a readable version, migrate (sqlx skips what is applied).
        let none = serde_json::json!({});
        assert_eq!(action(&update(none.clone(), v(3))), Action::Migrate);
        let latest =
            serde_json::json!({"FunctionVersion": "arn:aws:lambda:x:1:function:f:$LATEST"});
        assert_eq!(action(&update(latest, v(3))), Action::Migrate);
        assert_eq!(action(&request("Create")), Action::Migrate);
        assert_eq!(action(&request("Delete")), Action::Nothing);
    }

    #[tokio::test]
    async fn an_undeliverable_answer_is_an_error_for_lambda_to_retry() {
        let migrator = FakeMigrator::new(Ok("v"));
        let recorder = Recorder {
            fail: true,
            ..Recorder::default()
        };
        let result = handle(
            &request("Create"),
            &migrator,
            &recorder,
            Duration::from_secs(1),
            "",
        )
        .await;
        assert_eq!(result, Err("connection refused".to_owned()));
    }

    #[test]
    fn long_reasons_are_cut_to_fit_cloudformations_4096_byte_limit() {
        let outcome = Err("x".repeat(10_000));
        let body =
            serde_json::to_vec(&response(&request("Create"), &outcome, "stream").unwrap()).unwrap();
        assert!(body.len() < 4096, "{}", body.len());
    }
}

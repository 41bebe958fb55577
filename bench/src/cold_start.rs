//! Cold starts, measured rather than estimated (issue 15, item 6).
//!
//! Each function's release bootstrap (the deployed profile, built here for
//! the host: see [`build_bootstraps`]) is started against a minimal Lambda
//! Runtime API served by this module on 127.0.0.1, with the environment
//! Lambda and template.yaml give it. Two spans are timed per start:
//!
//! - init: from just before the exec to the arrival of the bootstrap's first
//!   `GET /runtime/invocation/next`. Lambda's `Init Duration` is that span:
//!   it starts when the sandbox starts the bootstrap and ends when the runtime
//!   (and every extension; the functions have none) asks for its first event;
//!   Lambda's Runtime API is on the sandbox's loopback too. What this does not
//!   reproduce: the sandbox and the code download (before Lambda's clock,
//!   though the caller waits for them), the binary read from a fresh code disk
//!   (here it is in the page cache), the CPU share of the memory size (1,769
//!   MB buys one vCPU; here the bootstrap has a core of this machine), and
//!   init-time network calls: the deployed api and status read the HS256
//!   secret from Secrets Manager at init (`JWT_SECRET_ARN`, one round trip),
//!   the api and worker the cache's MAC key (`CACHE_MAC_KEY_ARN`; the api's
//!   beside the HS256 secret, the worker's while its model loads), and the
//!   deployed functions sign an RDS IAM token (`DB_AUTH=iam`, CPU only); here
//!   the secrets are `JWT_SECRET` and `CACHE_MAC_KEY`, the login a password.
//! - first invocation: from handing the bootstrap one representative event
//!   (the answer to that `/next`) to the arrival of its response: Lambda's
//!   `Duration` of a cold start's invocation, without the network hop. It
//!   includes the first connections to the local stack's services (moto's
//!   DynamoDB and SQS, PostgreSQL).
//!
//! The process is then killed. Each function is started once unmeasured
//! first, so that its binary (and the worker's model) is in the page cache,
//! as a warm host would have it; the first start after a build is slower.
//! p99 is nearest-rank: below 100 runs, the slowest run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::Utc;
use serde::Serialize;
use serde_json::{json, Value};
use shared::adapters::dynamo::DynamoTaskStore;
use shared::domain::TaskStatus;
use shared::ports::TaskReader;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::measure::percentile;
use crate::whole_path::{http_event, pending, sqs_event};

const NEXT: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR: &str = "/2018-06-01/runtime/init/error";
/// The issue's target for the functions without a model.
const INIT_TARGET_MS: f64 = 20.0;
/// The owner of the tasks the events name (the demo database has its profile).
const OWNER: &str = "demo-user";
/// The api's queue here: no poller reads it; its messages go to the stack's
/// queue at the end (see [`hand_over`]), so that the stack's worker does not
/// process the submitted tasks while the next figures are measured.
const QUEUE: &str = "jobmatch-cold-start";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Api,
    Status,
    Worker,
    DeadLetter,
    Migrate,
}

/// The order of the printed table.
const KINDS: [Kind; 5] = [
    Kind::Api,
    Kind::Status,
    Kind::DeadLetter,
    Kind::Migrate,
    Kind::Worker,
];

impl Kind {
    /// The package, its binary and the function's name.
    fn name(self) -> &'static str {
        match self {
            Kind::Api => "api",
            Kind::Status => "status",
            Kind::Worker => "worker",
            Kind::DeadLetter => "deadletter",
            Kind::Migrate => "migrate",
        }
    }

    /// template.yaml's MemorySize (Globals: 256).
    fn memory_mb(self) -> u32 {
        match self {
            Kind::Worker => 1769,
            _ => 256,
        }
    }

    /// template.yaml's Timeout (Globals: 30), for the event's deadline.
    fn timeout_secs(self) -> i64 {
        match self {
            Kind::Api => 29,
            Kind::Status => 30,
            Kind::Worker => 60,
            Kind::DeadLetter => 10,
            Kind::Migrate => 600,
        }
    }

    /// The worker loads the embedding model at init: no target.
    fn init_target_ms(self) -> Option<f64> {
        (self != Kind::Worker).then_some(INIT_TARGET_MS)
    }

    /// Migrate's Delete touches no database: its answer goes to a
    /// ResponseURL this module serves.
    fn needs_stack(self) -> bool {
        self != Kind::Migrate
    }

    fn first_event(self) -> &'static str {
        match self {
            Kind::Api => "POST /jobs/match, HS256 token (DynamoDB PutItem + SQS SendMessage)",
            Kind::Status => "GET /jobs/match/status/{id} of a finished task (DynamoDB GetItem)",
            Kind::Worker => {
                "SQS batch of one pending task (claim, profile query on PostgreSQL, complete)"
            }
            Kind::DeadLetter => "SQS batch of one pending task (closed as failed)",
            Kind::Migrate => "CloudFormation Delete (no database; PUT to a loopback ResponseURL)",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    pub runs: usize,
    /// How the bootstraps were built, and where they are.
    pub build: String,
    /// Why first invocations were not measured, when they were not.
    pub first_invocation_skipped: Option<String>,
    /// Functions not started at all, and why.
    pub not_measured: Vec<String>,
    pub functions: Vec<FunctionFigures>,
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FunctionFigures {
    pub function: String,
    pub bootstrap_bytes: u64,
    pub init_p50_ms: f64,
    pub init_p99_ms: f64,
    pub init_min_ms: f64,
    pub init_target_ms: Option<f64>,
    pub first_event: String,
    pub first_invocation_p50_ms: Option<f64>,
    pub first_invocation_p99_ms: Option<f64>,
}

/// The bootstraps' target and CPU, as `cargo lambda build` passes them
/// (`-C target-cpu=neoverse-n1` for arm64, `haswell` for x86_64), for the
/// architecture of this machine.
fn host_target() -> (&'static str, &'static str) {
    if cfg!(target_arch = "aarch64") {
        ("aarch64-unknown-linux-gnu", "neoverse-n1")
    } else {
        ("x86_64-unknown-linux-gnu", "haswell")
    }
}

/// Variables `cargo run` sets for this binary (as stack.py's CARGO_TEST_VARS):
/// build scripts track some (ring: CARGO_MANIFEST_DIR), so passing them on
/// would rebuild half the tree.
fn is_cargo_run_var(key: &str) -> bool {
    [
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_PKG_",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// Builds the five bootstraps with the release profile (what `sam build`
/// deploys: opt-level "z", fat LTO, one codegen unit, stripped, panic =
/// abort), for this machine's architecture with cargo lambda's target CPU,
/// into the target directory this binary runs from; returns their folder.
/// A no-op once built. Linked by the host's linker, where cargo lambda links
/// with zig: the code is the same, the binary's layout may differ slightly.
pub fn build_bootstraps() -> Result<(PathBuf, String)> {
    let (triple, cpu) = host_target();
    // This binary is <target dir>/<profile>/jobmatch-bench.
    let exe = std::env::current_exe().context("this binary's path")?;
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("this binary is not in a cargo target directory")?
        .to_path_buf();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.current_dir(&workspace)
        .args(["build", "--release", "--locked", "--target", triple])
        .arg("--target-dir")
        .arg(&target_dir);
    for kind in KINDS {
        cmd.args(["-p", kind.name()]);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(is_cargo_run_var) {
            cmd.env_remove(&key);
        }
    }
    cmd.env_remove("RUSTFLAGS")
        .env("CARGO_ENCODED_RUSTFLAGS", format!("-C\x1ftarget-cpu={cpu}"));
    eprintln!(
        "bench: cold starts: building the release bootstraps ({triple}, target-cpu={cpu}; \
         the first build takes several minutes)"
    );
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the release bootstraps failed ({status})");
    }
    let dir = target_dir.join(triple).join("release");
    let description = format!(
        "release profile, {triple}, -C target-cpu={cpu} (cargo lambda's), host linker; {}",
        dir.display()
    );
    Ok((dir, description))
}

// ------------------------------------------------------------------ the Runtime API

/// A request to the Runtime API (or to migrate's ResponseURL), handed to the
/// run that drives the protocol; `at` is when it had arrived whole.
struct Incoming {
    method: String,
    path: String,
    body: Vec<u8>,
    at: Instant,
    reply: oneshot::Sender<Reply>,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn new(status: u16, body: &[u8]) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_vec(),
        }
    }
}

/// Accepts connections; each keeps alive (lambda_runtime's client pools).
async fn serve(listener: TcpListener, tx: mpsc::UnboundedSender<Incoming>) {
    while let Ok((stream, _)) = listener.accept().await {
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, tx.clone()));
    }
}

/// One connection's requests, one at a time. It ends when the bootstrap
/// closes it, or when the run drops the request unanswered (a second `/next`).
async fn connection(stream: TcpStream, tx: mpsc::UnboundedSender<Incoming>) -> std::io::Result<()> {
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    while let Some((method, path, body)) = read_request(&mut reader).await? {
        let (reply, answer) = oneshot::channel();
        let incoming = Incoming {
            method,
            path,
            body,
            at: Instant::now(),
            reply,
        };
        if tx.send(incoming).is_err() {
            return Ok(());
        }
        let Ok(reply) = answer.await else {
            return Ok(());
        };
        let mut head = format!(
            "HTTP/1.1 {} {}\r\ncontent-length: {}\r\n",
            reply.status,
            if reply.status < 300 { "OK" } else { "Error" },
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&reply.body).await?;
        writer.flush().await?;
    }
    Ok(())
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

/// Method, path and body of the next HTTP/1.1 request; `None` at the end of
/// the connection. Bodies by Content-Length or chunked.
async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> std::io::Result<Option<(String, String, Vec<u8>)>> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let (mut length, mut chunked) = (0usize, false);
    loop {
        let mut header = String::new();
        if r.read_line(&mut header).await? == 0 {
            return Ok(None);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            if name == "content-length" {
                length = value.parse().map_err(invalid)?;
            } else if name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked")
            {
                chunked = true;
            }
        }
    }
    let body = if chunked {
        read_chunked(r).await?
    } else {
        let mut body = vec![0; length];
        r.read_exact(&mut body).await?;
        body
    };
    Ok(Some((method, path, body)))
}

async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let size = line.trim().split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(invalid)?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).await?;
        line.clear();
        r.read_line(&mut line).await?;
    }
}

// ------------------------------------------------------------------ the runs

/// The local stack's clients, when first invocations can be measured.
struct Stack {
    store: DynamoTaskStore,
    sqs: aws_sdk_sqs::Client,
    token: String,
    /// The stack's own queue (QUEUE_URL), where the api's messages end up.
    queue_url: Option<String>,
}

/// The first events, and what their responses must be.
struct Events {
    stack: Option<Stack>,
    /// Tasks the worker and dead-letter runs finished: status reads them.
    finished: Vec<String>,
}

/// What a correct first invocation answers.
enum Expect {
    Http(u16),
    Batch(String, TaskStatus),
    CloudFormationSuccess,
}

impl Events {
    fn can_invoke(&self, kind: Kind) -> bool {
        !kind.needs_stack() || self.stack.is_some()
    }

    fn stack(&self) -> Result<&Stack> {
        self.stack.as_ref().context("no local stack")
    }

    async fn event(&mut self, kind: Kind, addr: SocketAddr, run: usize) -> Result<(Value, Expect)> {
        Ok(match kind {
            Kind::Api => (
                http_event(
                    "POST",
                    "/jobs/match",
                    "POST /jobs/match",
                    Some(&self.stack()?.token),
                    r#"{"limit": 1, "filters": {"remote": true}}"#,
                ),
                Expect::Http(202),
            ),
            Kind::Status => {
                let id = match self.finished.get(run % self.finished.len().max(1)) {
                    Some(id) => id.clone(),
                    None => pending(&self.stack()?.store, OWNER).await?,
                };
                let path = format!("/jobs/match/status/{id}");
                (
                    http_event(
                        "GET",
                        &path,
                        "GET /jobs/match/status/{task_id}",
                        Some(&self.stack()?.token),
                        "",
                    ),
                    Expect::Http(200),
                )
            }
            Kind::Worker | Kind::DeadLetter => {
                let id = pending(&self.stack()?.store, OWNER).await?;
                let status = if kind == Kind::Worker {
                    TaskStatus::Completed
                } else {
                    TaskStatus::Failed
                };
                (sqs_event(&id), Expect::Batch(id, status))
            }
            Kind::Migrate => (migrate_delete(addr), Expect::CloudFormationSuccess),
        })
    }

    async fn check(&mut self, expect: Expect, response: &[u8], puts: &[Vec<u8>]) -> Result<()> {
        let body: Value = serde_json::from_slice(response).unwrap_or(Value::Null);
        let shown = || String::from_utf8_lossy(response).into_owned();
        match expect {
            Expect::Http(code) => {
                if body["statusCode"].as_u64() != Some(u64::from(code)) {
                    bail!("expected status {code}, got {}", shown());
                }
            }
            Expect::Batch(id, status) => {
                let failures = body["batchItemFailures"].as_array().map_or(0, Vec::len);
                if failures > 0 {
                    bail!("the message was not processed: {}", shown());
                }
                let task = self.stack()?.store.get(&id, Utc::now()).await?;
                let got = task.map(|t| t.status);
                if got != Some(status) {
                    bail!("task {id} is {got:?}, expected {status:?}");
                }
                self.finished.push(id);
            }
            Expect::CloudFormationSuccess => {
                let answer: Value = puts
                    .last()
                    .and_then(|p| serde_json::from_slice(p).ok())
                    .context("migrate sent no answer to the ResponseURL")?;
                if answer["Status"] != "SUCCESS" {
                    bail!("migrate answered {answer}");
                }
            }
        }
        Ok(())
    }
}

/// A CloudFormation Delete of the migrations resource; its answer comes back
/// to this module's server.
fn migrate_delete(addr: SocketAddr) -> Value {
    let id = uuid::Uuid::now_v7();
    let token = "arn:aws:lambda:us-east-1:000000000000:function:migrate";
    json!({
        "RequestType": "Delete",
        "ServiceToken": token,
        "ResponseURL": format!("http://{addr}/cloudformation/{id}?X-Amz-Signature=bench"),
        "StackId": "arn:aws:cloudformation:us-east-1:000000000000:stack/jobmatch/bench",
        "RequestId": id.to_string(),
        "LogicalResourceId": "Migrations",
        "PhysicalResourceId": "jobmatch-schema",
        "ResourceType": "Custom::Migrations",
        "ResourceProperties": {"ServiceToken": token}
    })
}

struct Sample {
    init_ms: f64,
    first_ms: Option<f64>,
}

/// The bootstrap's process, killed when dropped (on every way out of a run).
/// std's, polled, rather than tokio's: tokio's `process` feature would give
/// the functions' tokio a process and signal driver in any build of the
/// workspace that unifies features with this crate.
struct Process(std::process::Child);

impl Process {
    /// When the process has exited on its own: how.
    async fn exited(&mut self) -> String {
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return status.to_string(),
                Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return format!("cannot wait for it: {e}"),
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Ends the server's accept loop with the run.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn ms_between(from: Instant, to: Instant) -> f64 {
    to.duration_since(from).as_secs_f64() * 1000.0
}

/// One cold start: init, then (with a stack) the first invocation.
async fn run_once(
    kind: Kind,
    bootstrap: &Path,
    env: &[(String, String)],
    log: &std::fs::File,
    events: Option<&mut Events>,
    run: usize,
) -> Result<Sample> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let _server = AbortOnDrop(tokio::spawn(serve(listener, tx)));
    let (event, events) = match events {
        Some(events) => (Some(events.event(kind, addr, run).await?), Some(events)),
        None => (None, None),
    };

    let mut cmd = std::process::Command::new(bootstrap);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .current_dir(bootstrap.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?);
    let init_timeout = Duration::from_secs(60);
    // The clock starts just before the exec and stops when the first /next
    // has arrived: the loading of the binary, its main's init code and its
    // first request for an event, which is what Lambda's Init Duration counts
    // (see the module's documentation for what it has and this has not:
    // sandbox, code download, CPU share, network at init).
    let start = Instant::now();
    let mut child = Process(
        cmd.spawn()
            .with_context(|| format!("starting {}", bootstrap.display()))?,
    );
    let next = tokio::select! {
        r = rx.recv() => r.context("the runtime API server stopped")?,
        status = child.exited() => bail!("{} exited during init ({status})", kind.name()),
        _ = tokio::time::sleep(init_timeout) => bail!("{} asked for no event within {init_timeout:?}", kind.name()),
    };
    if next.method == "POST" && next.path == INIT_ERROR {
        bail!(
            "{} reported an init error: {}",
            kind.name(),
            String::from_utf8_lossy(&next.body)
        );
    }
    if next.method != "GET" || next.path != NEXT {
        bail!(
            "{}: unexpected first request {} {}",
            kind.name(),
            next.method,
            next.path
        );
    }
    // The clock stops when the first /next has arrived: Lambda's Init Duration.
    let init_ms = ms_between(start, next.at);
    let (Some((event, expect)), Some(events)) = (event, events) else {
        drop(child);
        return Ok(Sample {
            init_ms,
            first_ms: None,
        });
    };

    let request_id = uuid::Uuid::now_v7().to_string();
    let deadline = Utc::now().timestamp_millis() + kind.timeout_secs() * 1000;
    let reply = Reply {
        status: 200,
        headers: vec![
            ("content-type", "application/json".into()),
            ("lambda-runtime-aws-request-id", request_id.clone()),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                format!(
                    "arn:aws:lambda:us-east-1:000000000000:function:{}",
                    kind.name()
                ),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0".into(),
            ),
        ],
        body: serde_json::to_vec(&event)?,
    };
    let response_path = format!("{INVOCATION}{request_id}/response");
    let error_path = format!("{INVOCATION}{request_id}/error");
    let invoke_timeout = Duration::from_secs(kind.timeout_secs() as u64 + 5);
    // The second clock: from handing over the event to its response.
    let sent = Instant::now();
    let _ = next.reply.send(reply);
    let mut puts = Vec::new();
    let (at, response) = loop {
        let req = tokio::select! {
            r = rx.recv() => r.context("the runtime API server stopped")?,
            status = child.exited() => bail!("{} exited during its first invocation ({status})", kind.name()),
            _ = tokio::time::sleep(invoke_timeout) => bail!("{} did not answer within {invoke_timeout:?}", kind.name()),
        };
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", p) if p == response_path => {
                let _ = req.reply.send(Reply::new(202, br#"{"status":"OK"}"#));
                break (req.at, Ok(req.body));
            }
            ("POST", p) if p == error_path => {
                let _ = req.reply.send(Reply::new(202, br#"{"status":"OK"}"#));
                break (req.at, Err(req.body));
            }
            // Migrate's answer to CloudFormation.
            ("PUT", p) if p.starts_with("/cloudformation/") => {
                puts.push(req.body);
                let _ = req.reply.send(Reply::new(200, b""));
            }
            _ => {
                let _ = req.reply.send(Reply::new(404, b""));
            }
        }
    };
    let first_ms = ms_between(sent, at);
    drop(child);
    let response = response.map_err(|body| {
        anyhow!(
            "{} answered an invocation error: {}",
            kind.name(),
            String::from_utf8_lossy(&body)
        )
    })?;
    events
        .check(expect, &response, &puts)
        .await
        .with_context(|| format!("{}'s first invocation", kind.name()))?;
    Ok(Sample {
        init_ms,
        first_ms: Some(first_ms),
    })
}

// ------------------------------------------------------------------ configuration

/// The functions' configuration: the local stack's (`.local/env`), or
/// placeholders that init accepts when the stack is down (init reads them
/// and connects to nothing).
struct Settings {
    region: String,
    access_key: String,
    secret_key: String,
    endpoint: String,
    endpoint_sqs: String,
    tasks_table: String,
    /// The api's quota: the stack's table and settings, so that its runs
    /// take from demo-user's bucket as the stack's api does.
    quota_table: String,
    quota_rate: String,
    quota_burst: String,
    /// The api's queue.
    queue_url: String,
    functions_database_url: String,
    database_url: String,
    jwt_secret: String,
    cache_mac_key: String,
    model_dir: PathBuf,
    exact_scan_max_rows: Option<String>,
}

fn var(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

impl Settings {
    fn from_env() -> Settings {
        let or = |key: &str, default: &str| var(key).unwrap_or_else(|| default.to_owned());
        let endpoint_sqs = or("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4567");
        Settings {
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
            access_key: or("AWS_ACCESS_KEY_ID", "test"),
            secret_key: or("AWS_SECRET_ACCESS_KEY", "test"),
            endpoint: or("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
            queue_url: format!(
                "{}/123456789012/{QUEUE}",
                endpoint_sqs.trim_end_matches('/')
            ),
            endpoint_sqs,
            tasks_table: or("TASKS_TABLE", "jobmatch-tasks"),
            quota_table: or("QUOTA_TABLE", "jobmatch-quota"),
            quota_rate: or("QUOTA_RATE", "2"),
            quota_burst: or("QUOTA_BURST", "100"),
            functions_database_url: or(
                "FUNCTIONS_DATABASE_URL",
                "postgres://jobmatch_functions@127.0.0.1:55432/jobmatch",
            ),
            database_url: or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:55432/jobmatch",
            ),
            jwt_secret: or(
                "JWT_SECRET",
                "cold-start-placeholder-secret-of-32-bytes-or-more",
            ),
            cache_mac_key: or(
                "CACHE_MAC_KEY",
                "cold-start-placeholder-cache-key-of-32-bytes-or-more",
            ),
            model_dir: embed::default_dir(),
            exact_scan_max_rows: var("EXACT_SCAN_MAX_ROWS"),
        }
    }

    /// What Lambda sets for a function (provided.al2023), template.yaml's
    /// variables for it (the local stack's values), and the endpoints of the
    /// local stack. Not AWS_LAMBDA_RUNTIME_API: each run's own.
    fn function_env(&self, kind: Kind, bootstrap_dir: &Path) -> Vec<(String, String)> {
        let name = kind.name();
        let mut env: Vec<(&str, String)> = vec![
            ("AWS_LAMBDA_FUNCTION_NAME", name.into()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".into()),
            (
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                kind.memory_mb().to_string(),
            ),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/01/01/[$LATEST]coldstart".into(),
            ),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".into()),
            ("AWS_REGION", self.region.clone()),
            ("AWS_DEFAULT_REGION", self.region.clone()),
            ("AWS_ACCESS_KEY_ID", self.access_key.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret_key.clone()),
            ("_HANDLER", "bootstrap".into()),
            ("LAMBDA_TASK_ROOT", bootstrap_dir.display().to_string()),
            ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
            ("TZ", ":UTC".into()),
            ("LANG", "en_US.UTF-8".into()),
            ("PATH", "/usr/local/bin:/usr/bin/:/bin:/opt/bin".into()),
            // template.yaml's Globals.
            ("RUST_LOG", "info".into()),
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ENDPOINT_URL_SQS", self.endpoint_sqs.clone()),
        ];
        let exact = self.exact_scan_max_rows.clone();
        match kind {
            Kind::Api => {
                env.extend([
                    ("TASKS_TABLE", self.tasks_table.clone()),
                    ("QUEUE_URL", self.queue_url.clone()),
                    ("QUOTA_TABLE", self.quota_table.clone()),
                    ("QUOTA_RATE", self.quota_rate.clone()),
                    ("QUOTA_BURST", self.quota_burst.clone()),
                    ("DATABASE_URL", self.functions_database_url.clone()),
                    ("DB_MAX_CONNECTIONS", "2".into()),
                    ("JWT_SECRET", self.jwt_secret.clone()),
                    ("CACHE_MAC_KEY", self.cache_mac_key.clone()),
                ]);
                env.extend(exact.map(|v| ("EXACT_SCAN_MAX_ROWS", v)));
            }
            Kind::Status => env.extend([
                ("TASKS_TABLE", self.tasks_table.clone()),
                ("JWT_SECRET", self.jwt_secret.clone()),
            ]),
            Kind::Worker => {
                env.extend([
                    ("TASKS_TABLE", self.tasks_table.clone()),
                    ("DATABASE_URL", self.functions_database_url.clone()),
                    ("DB_MAX_CONNECTIONS", "4".into()),
                    ("MAX_RECEIVE_COUNT", "3".into()),
                    ("MODEL_DIR", self.model_dir.display().to_string()),
                    ("RAYON_NUM_THREADS", "1".into()),
                    ("CACHE_MAC_KEY", self.cache_mac_key.clone()),
                ]);
                env.extend(exact.map(|v| ("EXACT_SCAN_MAX_ROWS", v)));
            }
            Kind::DeadLetter => env.push(("TASKS_TABLE", self.tasks_table.clone())),
            // Without FUNCTIONS_DB_SECRET_ARN (a Secrets Manager read at init).
            Kind::Migrate => env.push(("DATABASE_URL", self.database_url.clone())),
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }
}

/// Why the local stack cannot take first invocations, if it cannot.
async fn stack_unreachable() -> Option<String> {
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "FUNCTIONS_DATABASE_URL",
        "TASKS_TABLE",
        "QUOTA_TABLE",
        "JWT_SECRET",
    ] {
        if var(key).is_none() {
            return Some(format!("{key} is not set (source .local/env)"));
        }
    }
    for key in [
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_SQS",
        "FUNCTIONS_DATABASE_URL",
    ] {
        let value = var(key).unwrap_or_default();
        let Ok(url) = reqwest::Url::parse(&value) else {
            return Some(format!("{key} is not a URL"));
        };
        let host = url.host_str().unwrap_or_default().to_owned();
        if !matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]") {
            return Some(format!("{key} is not on this machine ({host})"));
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let connect = TcpStream::connect((host.as_str(), port));
        match tokio::time::timeout(Duration::from_millis(500), connect).await {
            Ok(Ok(_)) => {}
            _ => {
                return Some(format!(
                    "the local stack is not reachable ({key}: {host}:{port})"
                ))
            }
        }
    }
    None
}

/// Moves the api's messages to the stack's queue, so that its worker
/// completes the tasks the api accepted, as stack.py does after `make bench`.
async fn hand_over(sqs: &aws_sdk_sqs::Client, from: &str, to: &str) -> Result<usize> {
    let mut moved = 0;
    loop {
        let batch = sqs
            .receive_message()
            .queue_url(from)
            .max_number_of_messages(10)
            .send()
            .await?
            .messages
            .unwrap_or_default();
        if batch.is_empty() {
            return Ok(moved);
        }
        for m in batch {
            sqs.send_message()
                .queue_url(to)
                .message_body(m.body.unwrap_or_default())
                .send()
                .await?;
            if let Some(handle) = m.receipt_handle {
                sqs.delete_message()
                    .queue_url(from)
                    .receipt_handle(handle)
                    .send()
                    .await?;
            }
            moved += 1;
        }
    }
}

// ------------------------------------------------------------------ the section

/// `bootstraps`: the folder of the five binaries (see [`build_bootstraps`]).
pub async fn measure(
    bootstraps: &Path,
    build: String,
    runs: usize,
    log_dir: &Path,
) -> Result<ColdStart> {
    let runs = runs.max(1);
    let mut settings = Settings::from_env();
    let skipped = stack_unreachable().await;
    let stack = match &skipped {
        Some(why) => {
            eprintln!("bench: cold starts: first invocations not measured: {why}");
            None
        }
        None => {
            let aws = shared::aws::load().await?;
            let sqs = aws_sdk_sqs::Client::new(&aws);
            settings.queue_url = sqs
                .create_queue()
                .queue_name(QUEUE)
                .send()
                .await?
                .queue_url
                .context("the cold-start queue's URL")?;
            let secret = var("JWT_SECRET").unwrap_or_default();
            Some(Stack {
                store: DynamoTaskStore::new(
                    aws_sdk_dynamodb::Client::new(&aws),
                    settings.tasks_table.clone(),
                ),
                sqs,
                token: shared::auth::mint_hs256(secret.as_bytes(), OWNER, 3600)?,
                queue_url: var("QUEUE_URL"),
            })
        }
    };
    let mut events = Events {
        stack,
        finished: Vec::new(),
    };
    std::fs::create_dir_all(log_dir)?;

    // The worker and dead-letter runs first: status reads the tasks they finish.
    let order = [
        Kind::Worker,
        Kind::DeadLetter,
        Kind::Status,
        Kind::Api,
        Kind::Migrate,
    ];
    let mut functions = Vec::new();
    let mut not_measured = Vec::new();
    let measured: Result<()> = async {
        for kind in order {
            let model = settings.model_dir.join("config.json");
            if kind == Kind::Worker && !model.exists() {
                let why = format!(
                    "worker: no model at {} (make bootstrap, or MODEL_DIR)",
                    settings.model_dir.display()
                );
                eprintln!("bench: cold starts: {why}");
                not_measured.push(why);
                continue;
            }
            let bootstrap = bootstraps.join(kind.name());
            let bootstrap_bytes = std::fs::metadata(&bootstrap)
                .with_context(|| format!("{} (build the bootstraps first)", bootstrap.display()))?
                .len();
            let env = settings.function_env(kind, bootstraps);
            let log_path = log_dir.join(format!("{}.log", kind.name()));
            let log = std::fs::File::create(&log_path)?;
            eprintln!("bench: cold starts: {} ({runs} runs)", kind.name());
            // Unmeasured: the binary into the page cache.
            run_once(kind, &bootstrap, &env, &log, None, 0)
                .await
                .with_context(|| format!("see {}", log_path.display()))?;
            let (mut init, mut first) = (Vec::new(), Vec::new());
            for run in 0..runs {
                let invoke = events.can_invoke(kind).then_some(&mut events);
                let sample = run_once(kind, &bootstrap, &env, &log, invoke, run)
                    .await
                    .with_context(|| format!("see {}", log_path.display()))?;
                init.push(sample.init_ms);
                first.extend(sample.first_ms);
            }
            let first_p = |p: f64| (!first.is_empty()).then(|| percentile(&first, p));
            functions.push(FunctionFigures {
                function: kind.name().into(),
                bootstrap_bytes,
                init_p50_ms: percentile(&init, 0.50),
                init_p99_ms: percentile(&init, 0.99),
                init_min_ms: percentile(&init, 0.0),
                init_target_ms: kind.init_target_ms(),
                first_event: kind.first_event().into(),
                first_invocation_p50_ms: first_p(0.50),
                first_invocation_p99_ms: first_p(0.99),
            });
        }
        Ok(())
    }
    .await;
    // The api's tasks go on to the stack's worker even when a run failed.
    if let Some((stack, to)) = events
        .stack
        .as_ref()
        .and_then(|s| Some((s, s.queue_url.as_deref()?)))
    {
        let moved = hand_over(&stack.sqs, &settings.queue_url, to).await?;
        eprintln!("bench: cold starts: {moved} api messages handed to the stack's queue");
    }
    measured?;
    functions.sort_by_key(|f| KINDS.iter().position(|k| k.name() == f.function));
    Ok(ColdStart {
        runs,
        build,
        first_invocation_skipped: skipped,
        not_measured,
        functions,
        note: format!(
            "init = exec to the first /next (Lambda's Init Duration without sandbox, code \
             download and network); first invocation = event handed over to its response; \
             binaries in the page cache; p99 is nearest-rank, the slowest run below 100 runs \
             ({runs} here)"
        ),
    })
}

pub fn print(c: &ColdStart) {
    println!("\ncold starts ({} runs per function; {})", c.runs, c.build);
    println!(
        "{:<11} {:>9} {:>9} {:>9}  {:<26} {:>11} {:>11}  first event",
        "function", "bootstrap", "init p50", "init p99", "init target", "first p50", "first p99"
    );
    for f in &c.functions {
        let target = match f.init_target_ms {
            Some(t) => {
                let verdict = if f.init_p50_ms <= t { "met" } else { "MISSED" };
                format!(
                    "<= {t:.0} ms: p50 at {:.0}%, {verdict}",
                    100.0 * f.init_p50_ms / t
                )
            }
            None => "none (loads the model)".into(),
        };
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"));
        println!(
            "{:<11} {:>6.2} MB {:>6.1} ms {:>6.1} ms  {:<26} {:>11} {:>11}  {}",
            f.function,
            f.bootstrap_bytes as f64 / 1e6,
            f.init_p50_ms,
            f.init_p99_ms,
            target,
            ms(f.first_invocation_p50_ms),
            ms(f.first_invocation_p99_ms),
            f.first_event
        );
    }
    for why in &c.not_measured {
        println!("not measured: {why}");
    }
    if let Some(why) = &c.first_invocation_skipped {
        println!("first invocations not measured (but migrate's, which needs no stack): {why}");
    }
    println!("({})", c.note);
}

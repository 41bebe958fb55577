#!/usr/bin/env python3
"""Local stand-in for Lambda's DynamoDB stream event source mapping: the tasks
table's stream to `callback` (template.yaml: CallbackFunction -> Events ->
TaskEnded). moto serves the DynamoDB Streams API beside DynamoDB (the
`DynamoDBStreams_20120810.*` targets, on AWS_ENDPOINT_URL) but invokes
nothing: this reads the stream and invokes the function on `cargo lambda
watch` as the mapping would.

- The stream: the table's LatestStreamArn (describe_table); its shards from
  describe_stream, listed again every few seconds (a shard that appears later,
  a closed one). At its first start the poller begins at LATEST in the open
  shards and skips closed ones; a shard found later is read from
  TRIM_HORIZON, after its parent has been read to its end. Positions are kept
  in memory only: a restarted poller begins at LATEST again.
- Filtering: the event's FilterCriteria patterns, read from template.yaml
  (as gateway.py reads the routes; read again when the file changes). A record
  is delivered when one pattern matches; others are dropped as Lambda drops
  them. The subset of Lambda's filter syntax implemented: nested maps, lists
  of exact values, {"exists": true|false}; anything else stops the poller,
  rather than matching wrongly, and so does an event without FilterCriteria.
- Delivery: Lambda's DynamoDB event, up to BatchSize records, in order per
  shard, gathered for up to MaximumBatchingWindowInSeconds once one matches.
  A response with `batchItemFailures` retries from the lowest failed
  SequenceNumber on (with the records after it, as Lambda does); a function
  error, an unknown or empty itemIdentifier retries the whole batch; both
  after a backoff (0.5 s, doubling to 8 s). With BisectBatchOnFunctionError a
  function error splits the batch in two first (not counted as a retry).
  After MaximumRetryAttempts (template; none: forever) the records are given
  up and, with DestinationConfig OnFailure, Lambda's failure record
  (DDBStreamBatchInfo) is sent to STREAM_ON_FAILURE_URL.

Env (from .local/env): TASKS_TABLE, AWS_ENDPOINT_URL, AWS_REGION, LAMBDA_URL;
STREAM_TABLE (default TASKS_TABLE), STREAM_FUNCTION (callback),
STREAM_TEMPLATE_FUNCTION (CallbackFunction), STREAM_TEMPLATE_EVENT (TaskEnded),
STREAM_BATCH_SIZE (default the template's BatchSize, else 100),
STREAM_POLL_MS (250: the idle poll), STREAM_TIMEOUT_MS (default
FALLBACK_TIMEOUT_MS): the function's time budget, after which (+5 s) an
invocation is abandoned and retried; STREAM_ON_FAILURE_URL (none): the queue
standing for the OnFailure destination (AWS_ENDPOINT_URL_SQS reaches it).
`stream_poller.py --dry-run` prints each event instead of invoking (every
record succeeds); `--pattern` prints the patterns in use and exits.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import yaml
from botocore.config import Config

from cfn import load_template
import lambda_invoke

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
TABLE = os.environ.get("STREAM_TABLE") or os.environ.get("TASKS_TABLE", "jobmatch-tasks")
REGION = os.environ.get("AWS_REGION", "us-east-1")
FUNCTION = os.environ.get("STREAM_FUNCTION", "callback")
TEMPLATE_FUNCTION = os.environ.get("STREAM_TEMPLATE_FUNCTION", "CallbackFunction")
TEMPLATE_EVENT = os.environ.get("STREAM_TEMPLATE_EVENT", "TaskEnded")
POLL = int(os.environ.get("STREAM_POLL_MS", "250")) / 1000
INVOKE_TIMEOUT = float(os.environ.get("STREAM_TIMEOUT_MS")
                       or os.environ.get("FALLBACK_TIMEOUT_MS", "28000")) / 1000 + 5
# How often the shards are listed again, and the template checked for changes.
REFRESH = 5.0
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 8.0
DRY_RUN = "--dry-run" in sys.argv

stopping = threading.Event()


def log(msg: str) -> None:
    print(f"stream ({FUNCTION}): {msg}", flush=True)


# ---------------------------------------------------------------- filters


class Settings:
    """What the template says of the mapping: filter patterns (any one
    matches), batch size, retries (-1: until the record expires, Lambda's
    default)."""

    def __init__(self, patterns: list[dict], props: dict, source: str):
        self.patterns, self.source = patterns, source
        self.batch_size = int(os.environ.get("STREAM_BATCH_SIZE") or props.get("BatchSize") or 100)
        self.window = float(props.get("MaximumBatchingWindowInSeconds") or 0)
        self.max_retries = int(props.get("MaximumRetryAttempts", -1))
        self.bisect = bool(props.get("BisectBatchOnFunctionError"))
        self.on_failure = bool(((props.get("DestinationConfig") or {}).get("OnFailure") or {})
                               .get("Destination"))

    def __eq__(self, other) -> bool:
        return vars(self) == vars(other)


def load_settings(template: Path = TEMPLATE) -> Settings:
    doc = load_template(template)
    res = (doc.get("Resources") or {}).get(TEMPLATE_FUNCTION) or {}
    event = ((res.get("Properties") or {}).get("Events") or {}).get(TEMPLATE_EVENT) or {}
    props = event.get("Properties") or {}
    filters = (props.get("FilterCriteria") or {}).get("Filters") or []
    patterns = [json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"]
                for f in filters if f.get("Pattern")]
    source = f"{template.name}: {TEMPLATE_FUNCTION}.Events.{TEMPLATE_EVENT}"
    if not patterns:
        # Unfiltered, every write of every task would invoke the function.
        raise ValueError(f"{source} has no FilterCriteria")
    for p in patterns:
        check_pattern(p)
    return Settings(patterns, props, source)


def describe(settings: Settings) -> str:
    retries = "forever" if settings.max_retries < 0 else settings.max_retries
    return (f"patterns from {settings.source}; batch {settings.batch_size}, window "
            f"{settings.window:g} s, retries {retries}, bisect {settings.bisect}, "
            f"on failure {os.environ.get('STREAM_ON_FAILURE_URL') if settings.on_failure else None}")


def check_pattern(pattern, path: str = "") -> None:
    """Raises ValueError on filter syntax this poller does not implement."""
    if not isinstance(pattern, dict):
        raise ValueError(f"pattern at {path or '/'}: a map expected")
    for key, sub in pattern.items():
        where = f"{path}/{key}"
        if isinstance(sub, dict):
            check_pattern(sub, where)
        elif isinstance(sub, list) and sub:
            for rule in sub:
                if isinstance(rule, dict) and (set(rule) != {"exists"}
                                               or not isinstance(rule["exists"], bool)):
                    raise ValueError(f"pattern at {where}: {rule} is not implemented "
                                     f"(only exact values and exists)")
        else:
            raise ValueError(f"pattern at {where}: a map or a non-empty list expected")


_MISSING = object()


def matches(pattern: dict, value) -> bool:
    """Lambda's (EventBridge's) matching: every key of the pattern matches."""
    for key, sub in pattern.items():
        field = value.get(key, _MISSING) if isinstance(value, dict) else _MISSING
        if isinstance(sub, dict):
            if not matches(sub, field):
                return False
        elif not any(_leaf(rule, field) for rule in sub):
            return False
    return True


def _leaf(rule, field) -> bool:
    if isinstance(rule, dict):
        # exists applies to leaves only: a map is not "present".
        return (field is not _MISSING and not isinstance(field, dict)) == rule["exists"]
    if field is _MISSING or isinstance(field, dict):
        return False
    # An array matches when one of its elements does; true is not 1.
    return any(v == rule and isinstance(v, bool) == isinstance(rule, bool)
               for v in (field if isinstance(field, list) else [field]))


# ---------------------------------------------------------------- events


def _plain(value):
    """boto3 decodes B and BS values to bytes; the event carries base64."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, set, tuple)):
        return [_plain(v) for v in value]
    return value


def lambda_record(rec: dict, arn: str) -> dict:
    """A get_records record as Lambda's DynamoDB event has it."""
    src = rec["dynamodb"]
    when = src.get("ApproximateCreationDateTime")
    if isinstance(when, datetime.datetime):
        when = int(when.timestamp())  # epoch seconds, rounded down, as the API has it
    ddb = {"ApproximateCreationDateTime": when}
    for key in ("Keys", "NewImage", "OldImage", "SequenceNumber", "SizeBytes", "StreamViewType"):
        if key in src:
            ddb[key] = _plain(src[key])
    if when is None:
        del ddb["ApproximateCreationDateTime"]
    return {"eventID": rec["eventID"], "eventName": rec["eventName"], "eventVersion": "1.1",
            "eventSource": "aws:dynamodb", "awsRegion": rec.get("awsRegion") or REGION,
            "dynamodb": ddb, "eventSourceARN": arn}


def _seq(record: dict) -> int:
    return int(record["dynamodb"]["SequenceNumber"])


def invoke(event: dict) -> dict | None:
    """The function's response, or None on a function error."""
    if DRY_RUN:
        print(json.dumps(event), flush=True)
        return {}
    try:
        return lambda_invoke.invoke(FUNCTION, event, timeout=INVOKE_TIMEOUT) or {}
    except lambda_invoke.InvokeFailed as e:
        log(f"function error ({e}); the batch is retried")
    except (OSError, ValueError) as e:
        log(f"function unreachable: {e}; the batch is retried")
    return None


def deliver(records: list[dict], shard_id: str, arn: str, settings: Settings) -> None:
    """Invokes the function with the matching records of one batch read from
    the shard until it takes them all (or retries run out)."""
    batch = [e for e in (lambda_record(r, arn) for r in records)
             if any(matches(p, e) for p in settings.patterns)]
    if batch:
        skipped = _deliver(batch, shard_id, arn, settings, 0)
        log(f"batch of {len(batch)} done ({len(records) - len(batch)} filtered out"
            + (f", {skipped} skipped)" if skipped else ")"))


def _deliver(batch: list[dict], shard_id: str, arn: str, settings: Settings,
             attempt: int) -> int:
    """The records given up (MaximumRetryAttempts)."""
    backoff = BACKOFF_FIRST
    while batch and not stopping.is_set():
        response = invoke({"Records": batch})
        if response is None and settings.bisect and len(batch) > 1:
            half = len(batch) // 2
            log(f"batch of {len(batch)} split in two (BisectBatchOnFunctionError)")
            stopping.wait(BACKOFF_FIRST)
            return (_deliver(batch[:half], shard_id, arn, settings, attempt)
                    + _deliver(batch[half:], shard_id, arn, settings, attempt))
        if response is not None:
            failures = response.get("batchItemFailures") or []
            if not failures:
                return 0
            seqs = {e["dynamodb"]["SequenceNumber"] for e in batch}
            ids = [f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures]
            if all(i in seqs for i in ids):
                first = min(int(i) for i in ids)
                done = [e for e in batch if _seq(e) < first]
                batch = [e for e in batch if _seq(e) >= first]
                log(f"{len(done)} done, {len(batch)} retried from {first}")
                if done:  # progress: the backoff starts over
                    backoff = BACKOFF_FIRST
            else:
                # Lambda takes an empty, null or unknown identifier as a failure of all.
                log(f"itemIdentifier(s) {ids} not all in the batch; whole batch retried")
        attempt += 1
        if 0 <= settings.max_retries < attempt:
            give_up(batch, shard_id, arn, settings, attempt, response)
            return len(batch)
        stopping.wait(backoff)
        backoff = min(backoff * 2, BACKOFF_MAX)
    return 0


_sqs = None


def give_up(batch: list[dict], shard_id: str, arn: str, settings: Settings, invokes: int,
            response: dict | None) -> None:
    """MaximumRetryAttempts used up: the records are skipped, and Lambda's
    failure record goes to the OnFailure destination."""
    global _sqs
    first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]
    log(f"MaximumRetryAttempts ({settings.max_retries}) used up: {len(batch)} record(s) "
        f"skipped, {first['SequenceNumber']}..{last['SequenceNumber']}")
    url = os.environ.get("STREAM_ON_FAILURE_URL")
    if not (settings.on_failure and url):
        return

    def iso(epoch) -> str:
        return datetime.datetime.fromtimestamp(epoch or 0, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")

    now = datetime.datetime.now(datetime.timezone.utc)
    body = {
        "requestContext": {"requestId": str(uuid.uuid4()),
                           "functionArn": f"arn:aws:lambda:{REGION}:123456789012:function:{FUNCTION}",
                           "condition": "RetryAttemptsExhausted",
                           "approximateInvokeCount": invokes},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST",
                            **({"functionError": "Unhandled"} if response is None else {})},
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": first["SequenceNumber"],
            "endSequenceNumber": last["SequenceNumber"],
            "approximateArrivalOfFirstRecord": iso(first.get("ApproximateCreationDateTime")),
            "approximateArrivalOfLastRecord": iso(last.get("ApproximateCreationDateTime")),
            "batchSize": len(batch),
            "streamArn": arn,
        },
    }
    try:
        if _sqs is None:
            _sqs = boto3.client("sqs", region_name=REGION)
        _sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    except Exception as e:
        log(f"could not send the failure record to {url}: {e}")


# ---------------------------------------------------------------- shards


class Shard:
    __slots__ = ("id", "parent", "start", "iterator", "last_seq", "ended")

    def __init__(self, shard_id: str, parent: str | None, start: str) -> None:
        self.id, self.parent, self.start = shard_id, parent, start
        self.iterator: str | None = None
        self.last_seq: str | None = None  # the last record handed over (or dropped)
        self.ended = False


class Mapping:
    def __init__(self, ddb, streams, settings: Settings) -> None:
        self.ddb, self.streams, self.settings = ddb, streams, settings
        self.arn: str | None = None
        self.shards: dict[str, Shard] = {}
        self.first = True  # the first listing: open shards at LATEST
        self.refreshed = 0.0
        self.template_mtime = TEMPLATE.stat().st_mtime if TEMPLATE.exists() else 0.0

    def refresh(self) -> None:
        self.refreshed = time.monotonic()
        self.reload_template()
        table = self.ddb.describe_table(TableName=TABLE)["Table"]
        arn = table.get("LatestStreamArn")
        if not arn or not (table.get("StreamSpecification") or {}).get("StreamEnabled"):
            if self.arn or self.first:
                log(f"table {TABLE} has no stream; waiting for one")
            self.arn, self.shards, self.first = None, {}, False
            return
        if arn != self.arn:
            if self.arn or not self.first:
                # A new stream (the table or moto made again): all of it is new.
                log(f"new stream {arn}; reading it from the start")
                self.first = False
            self.arn, self.shards = arn, {}
        listed, start_id = [], None
        while True:
            kw = {"ExclusiveStartShardId": start_id} if start_id else {}
            desc = self.streams.describe_stream(StreamArn=arn, **kw)["StreamDescription"]
            listed += desc.get("Shards") or []
            start_id = desc.get("LastEvaluatedShardId")
            if not start_id:
                break
        for s in listed:
            if s["ShardId"] in self.shards:
                continue
            closed = "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
            shard = Shard(s["ShardId"], s.get("ParentShardId"),
                          "LATEST" if self.first else "TRIM_HORIZON")
            shard.ended = self.first and closed  # written before this poller began
            self.shards[shard.id] = shard
            if not shard.ended:
                log(f"shard {shard.id} from {shard.start}")
        # Shards no longer listed were trimmed away.
        ids = {s["ShardId"] for s in listed}
        self.shards = {k: v for k, v in self.shards.items() if k in ids or not v.ended}
        self.first = False

    def reload_template(self) -> None:
        mtime = TEMPLATE.stat().st_mtime if TEMPLATE.exists() else 0.0
        if mtime == self.template_mtime:
            return
        self.template_mtime = mtime
        try:
            settings = load_settings()
        except (OSError, ValueError, KeyError, yaml.YAMLError) as e:
            log(f"template.yaml changed but cannot be read ({e}); keeping the patterns in use")
            return
        if settings != self.settings:
            log(f"template.yaml changed: now {describe(settings)}")
        self.settings = settings

    def ready(self, shard: Shard) -> bool:
        parent = self.shards.get(shard.parent) if shard.parent else None
        return not shard.ended and (parent is None or parent.ended)

    def poll(self, shard: Shard) -> bool:
        """Reads one batch of the shard and delivers it; whether it had any."""
        if shard.iterator is None:
            if shard.last_seq is not None:
                kw = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                      "SequenceNumber": shard.last_seq}
            else:
                kw = {"ShardIteratorType": shard.start}
            shard.iterator = self.streams.get_shard_iterator(
                StreamArn=self.arn, ShardId=shard.id, **kw)["ShardIterator"]
        settings = self.settings
        got = self.streams.get_records(ShardIterator=shard.iterator, Limit=settings.batch_size)
        records = got.get("Records") or []
        shard.iterator = got.get("NextShardIterator")
        # MaximumBatchingWindowInSeconds: more records join the batch while
        # it is not full. Only if one matches: the others are dropped anyway.
        window_ends = time.monotonic() + settings.window
        while (records and shard.iterator and len(records) < settings.batch_size
               and time.monotonic() < window_ends and not stopping.is_set()
               and any(matches(p, lambda_record(r, self.arn)) for p in settings.patterns
                       for r in records)):
            stopping.wait(min(POLL, max(0.0, window_ends - time.monotonic())))
            got = self.streams.get_records(ShardIterator=shard.iterator,
                                           Limit=settings.batch_size - len(records))
            records += got.get("Records") or []
            shard.iterator = got.get("NextShardIterator")
        if records:
            deliver(records, shard.id, self.arn, settings)
            shard.last_seq = records[-1]["dynamodb"]["SequenceNumber"]
        if shard.iterator is None:
            shard.ended = True
            log(f"shard {shard.id} closed and read to its end")
            self.refreshed = 0.0  # its children may be listed now
        return bool(records)

    def run(self) -> None:
        while not stopping.is_set():
            busy, current = False, None
            try:
                if not (DRY_RUN or lambda_invoke.runtime_up()):
                    stopping.wait(0.5)
                    continue
                if time.monotonic() - self.refreshed > REFRESH:
                    self.refresh()
                for shard in list(self.shards.values()):
                    if self.ready(shard) and not stopping.is_set():
                        current = shard
                        busy |= self.poll(shard)
            except Exception as e:  # moto restarting, an expired iterator: start over
                code = getattr(e, "response", {}).get("Error", {}).get("Code")
                log(f"stream read failed: {e}; reading on after the last record handed over")
                for shard in self.shards.values():
                    shard.iterator = None
                if code == "TrimmedDataAccessException" and current is not None:
                    # Past the stream's retention: Lambda goes on from the
                    # oldest record left (the others are lost).
                    current.last_seq, current.start = None, "TRIM_HORIZON"
                self.refreshed = 0.0
                stopping.wait(1)
                continue
            if not busy:
                stopping.wait(POLL)


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    settings = load_settings()
    if "--pattern" in sys.argv:
        print(f"# {describe(settings)}")
        for p in settings.patterns:
            print(json.dumps(p))
        return
    config = Config(retries={"max_attempts": 2, "mode": "standard"})
    ddb = boto3.client("dynamodb", region_name=REGION, config=config)
    streams = boto3.client("dynamodbstreams", region_name=REGION, config=config)
    log(f"{TABLE}'s stream -> {FUNCTION} ({describe(settings)})")
    try:
        Mapping(ddb, streams, settings).run()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()

"""moto's server for the local stack: one process per service, as
stack.py's moto_up starts them.

moto's own application (`moto.server`'s DomainDispatcherApplication), served
by waitress instead of werkzeug's development server. werkzeug 3 answers every
request with `Connection: close`, so each AWS call paid a TCP connect, a new
server thread and a 10 ms drain poll: about 4,000 connections for the 424
tasks of one `make bench BENCH_ARGS=--load-only`, and half of moto DynamoDB's
time (sampled with py-spy) outside moto. waitress keeps connections alive.

--serial (DynamoDB): moto runs one request at a time. Its DynamoDB backend
checks a ConditionExpression and writes without a lock: two concurrent
conditional UpdateItems on one item could both pass, which real DynamoDB
never allows (the worker's claim relies on it;
e2e/tests/fault_duplicate_delivery.rs saw two claims once the functions got
fast). One lock around moto's whole application keeps the conditions atomic;
connections, HTTP parsing and socket writes stay outside it. SQS has no such
lock, and enough threads for the pollers' long polls beside the functions.

moto listed and stat'ed its own package folder on every request to route it
(about 8% of either process's time, sampled with py-spy); the folder does not
change while the server runs.

SQS lost messages under load: moto 5.2.5's Queue.delete_message rebuilds the
queue's message list without the lock that add_message appends under, so a
message sent while another was deleted could vanish (a `make test` load run
left two tasks pending, accepted with 202, their messages never received).
delete_message now takes that lock.

--sqs-port N (DynamoDB's server): SQS requests that reach it are passed to
the SQS server on port N, so that `AWS_ENDPOINT_URL` alone reaches both
services, as .local/env promises any tool (DESIGN.md); the functions and the
poller go straight to SQS through `AWS_ENDPOINT_URL_SQS`. They pass outside
--serial's lock, which a long poll would otherwise hold.

--queues-on PORT NAME[,NAME...] (both servers): the SQS requests naming one
of these queues (QueueUrl or QueueName) are served by the server on PORT,
whichever server they reach. The ingest bucket's queues live on the general
server (DynamoDB's): moto delivers an S3 notification to a queue of its own
process only. So a function that sends to INGEST_QUEUE_URL through
`AWS_ENDPOINT_URL_SQS`, or a tool through `AWS_ENDPOINT_URL`, reaches it
either way. A request is passed on once at most (X-Jobmatch-Forwarded).
SQS requests served here and S3 requests stay outside --serial's lock: the
lock keeps DynamoDB's conditional writes atomic; a long poll, or the copy of
a large object, would hold every DynamoDB request behind it.

S3 notifications: moto's event records carry no `versionId` and no
`sequencer`; AWS's do, and the ingest reads the version it was notified of.
They are added here (a version only in a versioned bucket, as in AWS). And
moto encodes the key's slashes (`incoming%2Fa.jsonl`), AWS does not
(`incoming/a.jsonl`; a space is `+`, as moto has it).
DynamoDB Streams (the tasks table's, read by stream_poller.py): moto serves
the API beside DynamoDB (targets `DynamoDBStreams_20120810.*`, signed for
`dynamodb`), so stream reads take --serial's lock like any DynamoDB request.
moto builds a record per write, copying both images at every level (+0.5 ms
of CPU per UpdateItem of a 3 KB item, on 0.85), and keeps it forever as
nested dicts (44 KB for that item): here the images are built without the
copies and kept pickled (2.3 KB) until read, and a record is dropped after
STREAM_RETENTION (AWS: 24 h); reading a dropped position answers
TrimmedDataAccessException, as AWS does. moto also kept every shard
iterator it handed out (one per GetRecords, every 250 ms while idle): they
expire after 15 minutes, as in AWS (ExpiredIteratorException).
Usage: moto_local.py HOST PORT [--serial] [--sqs-port N] [--queues-on PORT NAMES]
"""
import base64
import http.client
import io
import itertools
import json
import logging
import pickle
import re
import sys
import threading
import time
from urllib.parse import parse_qs, quote_plus

import moto.backends
import waitress
from moto.core.exceptions import JsonRESTError
from moto.core.utils import utcnow
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamRecord, StreamShard
from moto.dynamodbstreams import models as streams
from moto.s3 import notifications
from moto.moto_api._internal import mock_random
from moto.sqs.models import Queue
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

_MODULES = frozenset(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES

_delete_message = Queue.delete_message


def _delete_message_locked(self, receipt_handle):
    with self._messages_lock:  # a Condition over an RLock: add_message's lock
        return _delete_message(self, receipt_handle)


Queue.delete_message = _delete_message_locked

_get_s3_event = notifications._get_s3_event
# AWS: a hexadecimal string that orders the events of one key; increasing here.
_sequence = itertools.count(time.time_ns())


def _get_s3_event_versioned(event_name, bucket, key, notification_id):
    event = _get_s3_event(event_name, bucket, key, notification_id)
    for rec in event["Records"]:
        obj = rec["s3"]["object"]
        obj["key"] = quote_plus(key.name, safe="/")
        version = getattr(key, "version_id", None)
        if version and version != "null":
            obj["versionId"] = version
        obj["sequencer"] = f"{next(_sequence):018X}"
    return event


notifications._get_s3_event = _get_s3_event_versioned

# Local: an hour, not AWS's 24 h; stream_poller.py reads within a second.
STREAM_RETENTION = 3600
ITERATOR_TTL = 15 * 60  # AWS's


def _regular(value: DynamoType) -> dict:
    """DynamoType.to_regular_json without its copy at every level: the
    result is pickled at once, so sharing the item's lists is harmless."""
    v = value.value
    if isinstance(v, dict):
        v = {k: _regular(x) if isinstance(x, DynamoType) else x for k, x in v.items()}
    elif isinstance(v, list):
        v = [_regular(x) if isinstance(x, DynamoType) else x for x in v]
    elif value.type == "B" and isinstance(v, str):
        v = base64.b64decode(v)
    return {value.type: v}


def _image(item) -> dict:
    """Item.to_json()["Attributes"], as moto's StreamRecord has it."""
    out = {}
    for key, attr in item.attrs.items():
        v = attr.value
        if isinstance(v, dict):
            out[key] = {attr.type: {k: _regular(x) for k, x in v.items()}}
        elif isinstance(v, list):
            out[key] = {attr.type: [_regular(x) if isinstance(x, DynamoType) else x for x in v]}
        else:
            out[key] = {attr.type: v}
    return out


def _stream_record(self, table, stream_type, event_name, old, new, seq):
    """moto 5.2.5's StreamRecord.__init__, its images pickled (and made
    without copies), SizeBytes their pickle's length (moto's: their JSON's,
    both rough)."""
    rec = old if old is not None else new
    keys = {table.hash_key_attr: rec.hash_key.to_json()}
    if table.range_key_attr is not None:
        keys[table.range_key_attr] = rec.range_key.to_json()
    images = {}
    if stream_type in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES") and new is not None:
        images["NewImage"] = _image(new)
    if stream_type in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES") and old is not None:
        images["OldImage"] = _image(old)
    self.images = pickle.dumps(images, protocol=5)
    self.created = time.monotonic()
    self.record = {
        "eventID": mock_random.uuid4().hex,
        "eventName": event_name,
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.0",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "StreamViewType": stream_type,
            "ApproximateCreationDateTime": utcnow(),
            "SequenceNumber": str(seq),
            "SizeBytes": len(self.images),
            "Keys": keys,
        },
    }


def _stream_record_to_json(self):
    return {**self.record, "dynamodb": {**self.record["dynamodb"], **pickle.loads(self.images)}}


StreamRecord.__init__ = _stream_record
StreamRecord.to_json = _stream_record_to_json

_shard_add, _shard_get = StreamShard.add, StreamShard.get


def _shard_add_trimmed(self, old, new):
    _shard_add(self, old, new)
    # Trimmed a minute's worth at a time: the list is copied once.
    items = self.items
    if items and items[0].created < time.monotonic() - STREAM_RETENTION - 60:
        horizon = time.monotonic() - STREAM_RETENTION
        drop = next((i for i, r in enumerate(items) if r.created >= horizon), len(items))
        self.items = items[drop:]
        self.starting_sequence_number += drop


def _shard_get_trimmed(self, start, quantity):
    if start < self.starting_sequence_number:
        raise JsonRESTError("TrimmedDataAccessException",
                            f"sequence number {start} is beyond the stream's retention")
    return _shard_get(self, start, quantity)


StreamShard.add = _shard_add_trimmed
StreamShard.get = _shard_get_trimmed

_iterator_init = streams.ShardIterator.__init__


def _iterator_dated(self, *args, **kwargs):
    _iterator_init(self, *args, **kwargs)
    self.created = time.monotonic()


def _get_records_expiring(self, iterator_arn, limit):
    iterators, horizon = self.shard_iterators, time.monotonic() - ITERATOR_TTL
    # Oldest first (insertion order): drop the expired ones.
    while iterators:
        oldest = next(iter(iterators))
        if iterators[oldest].created >= horizon:
            break
        del iterators[oldest]
    if iterator_arn not in iterators:
        raise JsonRESTError("ExpiredIteratorException", "Iterator expired or unknown")
    return iterators[iterator_arn].get(limit)


streams.ShardIterator.__init__ = _iterator_dated
streams.DynamoDBStreamsBackend.get_records = _get_records_expiring

# Requests served at once; each long poll (WaitTimeSeconds) holds one.
THREADS = 16
# Every function instance keeps its own pool of connections; waitress's
# default of 100 would leave new ones waiting in the backlog.
CONNECTION_LIMIT = 1000


def serial(app):
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # The body is produced inside the lock; waitress writes it after.
            return list(app(environ, start_response))

    return one_at_a_time


# The service a request is signed for: `Credential=KEY/DATE/REGION/SERVICE/aws4_request`.
_SIGNED_FOR = re.compile(r"Credential=[^/]*/[^/]*/[^/]*/([^/]*)/")
# Hop-by-hop headers are the connection's, not the request's.
_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer",
                  "upgrade", "proxy-authorization", "proxy-authenticate"})


def is_sqs(environ) -> bool:
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSQS."):
        return True
    signed = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", ""))
    return bool(signed) and signed.group(1) == "sqs"


def is_s3(environ) -> bool:
    signed = _SIGNED_FOR.search(environ.get("HTTP_AUTHORIZATION", "")
                                or environ.get("QUERY_STRING", "").replace("%2F", "/"))
    return bool(signed) and signed.group(1) == "s3"


FORWARDED = "HTTP_X_JOBMATCH_FORWARDED"


def queue_named(environ, body: bytes) -> str | None:
    """The queue an SQS request names (its QueueUrl or QueueName), if any:
    JSON protocol (the SDKs today) or the query protocol."""
    if environ.get("HTTP_X_AMZ_TARGET", "").startswith("AmazonSQS."):
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return None
        url = params.get("QueueUrl") if isinstance(params, dict) else None
        name = params.get("QueueName") if isinstance(params, dict) else None
    else:
        params = parse_qs(body.decode("utf-8", "replace")
                          + "&" + environ.get("QUERY_STRING", ""))
        url = (params.get("QueueUrl") or [None])[0]
        name = (params.get("QueueName") or [None])[0]
        # The query protocol may also post to the queue's own URL.
        path = environ.get("PATH_INFO", "/").rstrip("/")
        if not url and not name and path.count("/") >= 2:
            url = path
    if isinstance(url, str) and url:
        return url.rstrip("/").rsplit("/", 1)[-1]
    return name if isinstance(name, str) else None


def sqs_to(port: int | None, app, own_port: int, queues_on: dict[str, int], locked=None):
    """Serves a request here or passes it to another of the stack's moto
    servers: an SQS request goes to the server of the queue it names
    (`queues_on`), else to `port` (None: here). What is served here goes to
    `app`; with `locked` (--serial), what is neither SQS nor S3 goes to
    `locked`, the same application behind the lock."""
    local = threading.local()
    names = [n.encode() for n in queues_on]

    def route(environ, start_response):
        if not is_sqs(environ):
            if locked is not None and not is_s3(environ):
                return locked(environ, start_response)
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        target = port
        # Cheap test first: most requests name none of these queues.
        raw = body + environ.get("PATH_INFO", "").encode() + environ.get("QUERY_STRING", "").encode()
        if names and any(n in raw for n in names):
            target = queues_on.get(queue_named(environ, body), port)
        if target is None or target == own_port or environ.get(FORWARDED):
            return app(environ, start_response)
        return forward(target, environ, body, start_response)

    def forward(port, environ, body, start_response):
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k[5:].replace("_", "-").lower() not in _HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        headers["X-Jobmatch-Forwarded"] = "1"
        # One kept-alive connection per server thread and port.
        conns = getattr(local, "conns", None)
        if conns is None:
            conns = local.conns = {}
        for attempt in (1, 2):
            conn = conns.get(port) or http.client.HTTPConnection("127.0.0.1", port)
            conns[port] = conn
            try:
                conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                conns.pop(port, None)
                if attempt == 2:
                    raise
        start_response(f"{resp.status} {resp.reason}",
                       [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP
                        and k.lower() != "content-length"] + [("Content-Length", str(len(data)))])
        return [data]

    return route


if __name__ == "__main__":
    host, port, *flags = sys.argv[1:]
    app = DomainDispatcherApplication(create_backend_app)
    sqs_port = int(flags[flags.index("--sqs-port") + 1]) if "--sqs-port" in flags else None
    queues_on: dict[str, int] = {}
    if "--queues-on" in flags:
        at = flags.index("--queues-on")
        queues_on = {name: int(flags[at + 1]) for name in flags[at + 2].split(",") if name}
    app = sqs_to(sqs_port, app, int(port), queues_on,
                 locked=serial(app) if "--serial" in flags else None)
    # Errors still reach the log; waitress logs no request lines, and a
    # queue of requests under load is expected.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(app, host=host, port=int(port), threads=THREADS,
                   connection_limit=CONNECTION_LIMIT, ident="moto")

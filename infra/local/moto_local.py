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
Usage: moto_local.py HOST PORT [--serial] [--sqs-port N]
"""
import http.client
import logging
import re
import sys
import threading

import moto.backends
import waitress
from moto.sqs.models import Queue
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

_MODULES = frozenset(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES

_delete_message = Queue.delete_message


def _delete_message_locked(self, receipt_handle):
    with self._messages_lock:  # a Condition over an RLock: add_message's lock
        return _delete_message(self, receipt_handle)


Queue.delete_message = _delete_message_locked

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


def sqs_to(port: int, app):
    """Passes SQS requests to the SQS server on `port`, the rest to `app`."""
    local = threading.local()

    def forward(environ, start_response):
        if not is_sqs(environ):
            return app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            path += "?" + environ["QUERY_STRING"]
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items()
                   if k.startswith("HTTP_") and k[5:].replace("_", "-").lower() not in _HOP}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        # One kept-alive connection per server thread.
        for attempt in (1, 2):
            conn = getattr(local, "conn", None) or http.client.HTTPConnection("127.0.0.1", port)
            local.conn = conn
            try:
                conn.request(environ["REQUEST_METHOD"], path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                local.conn = None
                if attempt == 2:
                    raise
        start_response(f"{resp.status} {resp.reason}",
                       [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP
                        and k.lower() != "content-length"] + [("Content-Length", str(len(data)))])
        return [data]

    return forward


if __name__ == "__main__":
    host, port, *flags = sys.argv[1:]
    app = DomainDispatcherApplication(create_backend_app)
    if "--serial" in flags:
        app = serial(app)
    if "--sqs-port" in flags:
        app = sqs_to(int(flags[flags.index("--sqs-port") + 1]), app)
    # Errors still reach the log; waitress logs no request lines, and a
    # queue of requests under load is expected.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    waitress.serve(app, host=host, port=int(port), threads=THREADS,
                   connection_limit=CONNECTION_LIMIT, ident="moto")

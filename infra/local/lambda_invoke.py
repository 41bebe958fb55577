"""Invokes a function on `cargo lambda watch`, as the gateway and the pollers
do: POST /2015-03-31/functions/<name>/invocations, over a connection kept
alive per thread (each of their threads invokes one request at a time).

Env: LAMBDA_URL (http://127.0.0.1:9000).
"""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import threading
from urllib.parse import urlsplit

LAMBDA = urlsplit(os.environ.get("LAMBDA_URL", "http://127.0.0.1:9000").rstrip("/"))

_local = threading.local()


class InvokeFailed(Exception):
    """The function ran and failed (the runtime answers 500 with its error)."""


def _connection(timeout: float) -> http.client.HTTPConnection:
    conn = getattr(_local, "conn", None)
    # A kept connection readable while idle was closed by the runtime (a
    # restarted watch): open a new one before sending, so that a request is
    # never sent twice.
    if conn is not None and (conn.sock is None or select.select([conn.sock], [], [], 0)[0]):
        conn.close()
        conn = None
    if conn is None:
        conn = http.client.HTTPConnection(LAMBDA.hostname, LAMBDA.port or 80, timeout=timeout)
        conn.connect()
        # http.client sends an event over 2,920 bytes apart from its head;
        # with Nagle's algorithm the body then waits for the runtime's
        # delayed ACK (40 ms), and the function reads its event that late.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _local.conn = conn
    conn.timeout = timeout
    if conn.sock is not None:
        conn.sock.settimeout(timeout)
    return conn


def invoke(function: str, event, timeout: float):
    """The function's response, decoded; InvokeFailed on a function error,
    OSError or ValueError when the runtime cannot be reached or answers
    something else."""
    conn = _connection(timeout)
    try:
        conn.request("POST", f"{LAMBDA.path}/2015-03-31/functions/{function}/invocations",
                     body=json.dumps(event).encode(), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        status, payload = resp.status, resp.read()
    except BaseException as e:
        conn.close()
        _local.conn = None
        if isinstance(e, http.client.HTTPException):
            raise OSError(f"{type(e).__name__}: {e}") from e
        raise
    if status >= 300:
        raise InvokeFailed(f"HTTP {status}: {payload[:500]!r}")
    return json.loads(payload or b"null")


def runtime_up() -> bool:
    """Whether cargo lambda watch is listening. Lambda itself never goes away,
    so while the local runtime restarts the pollers take nothing: a received
    message would spend one of its receives, a stream record one of its
    retries, without any chance to run."""
    try:
        socket.create_connection((LAMBDA.hostname, LAMBDA.port or 80), timeout=1).close()
        return True
    except OSError:
        return False

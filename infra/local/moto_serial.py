"""moto's server, answering one request at a time (for DynamoDB).

moto_server runs werkzeug threaded, and its DynamoDB backend checks a
ConditionExpression and writes without a lock: two concurrent conditional
UpdateItems on one item could both pass, which real DynamoDB never allows
(the worker's claim relies on it; e2e/tests/fault_duplicate_delivery.rs saw
two claims once the functions got fast). Serial requests keep the
conditions atomic. SQS keeps moto's threaded server of its own.
Usage: moto_serial.py HOST PORT
"""
import sys

import moto.server
import werkzeug.serving

_run_simple = werkzeug.serving.run_simple


def _serial(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


moto.server.run_simple = _serial

if __name__ == "__main__":
    host, port = sys.argv[1], sys.argv[2]
    moto.server.main(["-H", host, "-p", port])

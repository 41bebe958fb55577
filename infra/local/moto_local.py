"""moto's server, answering one request at a time (for DynamoDB).

moto_server runs werkzeug threaded, and its DynamoDB backend checks a
ConditionExpression and writes without a lock: two concurrent conditional
UpdateItems on one item could both pass, which real DynamoDB never allows
(the worker's claim relies on it; e2e/tests/fault_duplicate_delivery.rs saw
two claims once the functions got fast). Serial requests keep the
conditions atomic. SQS keeps moto's threaded server of its own.

Serial, this process is the local stack's ceiling under load (`make bench
BENCH_ARGS=--load-only`), so two costs that are not DynamoDB's are cut
(sampled with py-spy under that load): moto listed and stat'ed its own
package folder on every request to route it (about 8% of the process's
time), and werkzeug logged every request line (3%).
Usage: moto_serial.py HOST PORT
"""
import logging
import sys

import moto.backends
import moto.server
import werkzeug.serving

_run_simple = werkzeug.serving.run_simple


def _serial(*args, **kwargs):
    kwargs["threaded"] = False
    return _run_simple(*args, **kwargs)


# The folders do not change while the server runs.
_MODULES = frozenset(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES
moto.server.run_simple = _serial

if __name__ == "__main__":
    host, port = sys.argv[1], sys.argv[2]
    # After moto sets up logging: errors still reach the log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto.server.main(["-H", host, "-p", port])

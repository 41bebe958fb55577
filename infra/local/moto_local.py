"""moto's server for the local stack: one process per service, as
stack.py's moto_up starts them.

--serial (DynamoDB): moto runs one request at a time. moto_server runs
werkzeug threaded, and its DynamoDB backend checks a ConditionExpression and
writes without a lock: two concurrent conditional UpdateItems on one item
could both pass, which real DynamoDB never allows (the worker's claim relies
on it; e2e/tests/fault_duplicate_delivery.rs saw two claims once the
functions got fast). One lock around moto's whole application keeps the
conditions atomic; connections, HTTP parsing and socket writes stay on the
server's threads, with keep-alive. SQS has no such lock.

Under load these processes bound the local stack (`make bench
BENCH_ARGS=--load-only`), so two costs that are not the services' own are
cut (sampled with py-spy under that load): moto listed and stat'ed its own
package folder on every request to route it (about 8% of either process's
time), and werkzeug logged every request line (3% of DynamoDB's, 15% of
SQS's, whose threads queued on the log's lock).
Usage: moto_local.py HOST PORT [--serial]
"""
import logging
import sys
import threading

import moto.backends
import moto.server
import werkzeug.serving

_run_simple = werkzeug.serving.run_simple


def _serial(host, port, app, **kwargs):
    lock = threading.Lock()

    def one_at_a_time(environ, start_response):
        with lock:
            # The body is produced inside the lock; werkzeug writes it after.
            return list(app(environ, start_response))

    return _run_simple(host, port, one_at_a_time, **kwargs)


# The folders do not change while the server runs.
_MODULES = frozenset(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES

# werkzeug writes a response's head and body apart; on a kept-alive
# connection Nagle's algorithm then holds the body until the client's
# delayed ACK (up to 40 ms).
werkzeug.serving.WSGIRequestHandler.disable_nagle_algorithm = True

if __name__ == "__main__":
    host, port, *flags = sys.argv[1:]
    if "--serial" in flags:
        moto.server.run_simple = _serial
    # Errors still reach the log.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    moto.server.main(["-H", host, "-p", port])

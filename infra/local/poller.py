#!/usr/bin/env python3
"""Local stand-in for Lambda's SQS event source mapping: receives batches from
QUEUE_URL, invokes the worker on `cargo lambda watch` with an SQS event, and
deletes only the messages the worker did not report in `batchItemFailures`.
A function error deletes nothing. What is not deleted comes back after the
visibility timeout, and the queue's redrive policy moves poison to the DLQ.

Env (from .local/env): QUEUE_URL, AWS_ENDPOINT_URL_SQS (boto3 takes it before AWS_ENDPOINT_URL), AWS_REGION, LAMBDA_URL;
POLLER_BATCH_SIZE (10), POLLER_CONCURRENCY (2), POLLER_WORKER (worker);
POLLER_QUEUE_URL (default QUEUE_URL): the stack runs a second poller on the
DLQ that invokes the dead-letter consumer, as the template's second mapping.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import sys
import threading
import time

import boto3
from botocore.config import Config

import lambda_invoke

QUEUE_URL = os.environ.get("POLLER_QUEUE_URL") or os.environ["QUEUE_URL"]
REGION = os.environ.get("AWS_REGION", "us-east-1")
FUNCTION = os.environ.get("POLLER_WORKER", "worker")
BATCH_SIZE = int(os.environ.get("POLLER_BATCH_SIZE", "10"))
CONCURRENCY = int(os.environ.get("POLLER_CONCURRENCY", "2"))
# Like the function timeout: an invocation that hangs (a crashed runtime) is
# abandoned and its messages come back after the visibility timeout.
INVOKE_TIMEOUT = float(os.environ.get("FALLBACK_TIMEOUT_MS", "28000")) / 1000 + 5

stopping = threading.Event()


def log(msg: str) -> None:
    print(f"poller ({FUNCTION}): {msg}", flush=True)


def queue_arn(sqs) -> str:
    return sqs.get_queue_attributes(QueueUrl=QUEUE_URL, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]


def record(msg: dict, arn: str) -> dict:
    attrs = {}
    for name, value in (msg.get("MessageAttributes") or {}).items():
        attrs[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": value.get("BinaryValue"),
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": value["DataType"],
        }
    body = msg.get("Body", "")
    return {
        "messageId": msg["MessageId"],
        "receiptHandle": msg["ReceiptHandle"],
        "body": body,
        "attributes": msg.get("Attributes", {}),
        "messageAttributes": attrs,
        "md5OfBody": msg.get("MD5OfBody") or hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


def invoke(event: dict) -> dict | None:
    """The worker's response, or None on a function error."""
    try:
        return lambda_invoke.invoke(FUNCTION, event, timeout=INVOKE_TIMEOUT) or {}
    except lambda_invoke.InvokeFailed as e:
        log(f"worker error ({e}); nothing deleted")
    except (OSError, ValueError) as e:
        log(f"worker unreachable: {e}; nothing deleted")
    return None


def runtime_up() -> bool:
    """Whether cargo lambda watch is listening. Lambda itself never goes away,
    so while the local runtime restarts, nothing is received: a receive would
    count against the message's maxReceiveCount without any chance to run."""
    url = lambda_invoke.LAMBDA
    try:
        socket.create_connection((url.hostname, url.port or 80), timeout=1).close()
        return True
    except OSError:
        return False


def poll(sqs, arn: str) -> None:
    while not stopping.is_set():
        if not runtime_up():
            time.sleep(0.5)
            continue
        try:
            got = sqs.receive_message(
                QueueUrl=QUEUE_URL, MaxNumberOfMessages=BATCH_SIZE, WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
            )
        except Exception as e:  # moto restarting: keep polling
            log(f"receive failed: {e}")
            time.sleep(1)
            continue
        messages = got.get("Messages") or []
        if not messages:
            continue
        by_id = {m["MessageId"]: m for m in messages}
        response = invoke({"Records": [record(m, arn) for m in messages]})
        if response is None:
            time.sleep(0.5)
            continue
        failed = {f.get("itemIdentifier") for f in response.get("batchItemFailures") or []}
        unknown = failed - by_id.keys()
        if unknown:
            # Lambda treats an unknown identifier as a failure of the whole batch.
            log(f"unknown itemIdentifier(s) {sorted(unknown)}; whole batch retried")
            continue
        done = [m for mid, m in by_id.items() if mid not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start:start + 10]
            try:
                sqs.delete_message_batch(QueueUrl=QUEUE_URL, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(chunk)])
            except Exception as e:
                log(f"delete failed: {e}; those messages will be redelivered")
        log(f"batch of {len(messages)}: {len(done)} done, {len(failed)} left for retry")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    sqs = boto3.client("sqs", region_name=REGION,
                       config=Config(retries={"max_attempts": 2, "mode": "standard"}))
    while True:
        try:
            arn = queue_arn(sqs)
            break
        except Exception as e:
            log(f"waiting for the queue: {e}")
            time.sleep(1)
    log(f"polling {QUEUE_URL} -> {FUNCTION} (batch {BATCH_SIZE}, concurrency {CONCURRENCY})")
    threads = [threading.Thread(target=poll, args=(sqs, arn), daemon=True)
               for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    try:
        while not stopping.is_set():
            stopping.wait(1)
    except KeyboardInterrupt:
        stopping.set()
    sys.exit(0)


if __name__ == "__main__":
    main()

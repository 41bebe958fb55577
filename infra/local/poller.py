#!/usr/bin/env python3
"""Local stand-in for Lambda's SQS event source mapping on an SQS fair queue:
receives messages from QUEUE_URL, invokes the worker on `cargo lambda watch`
with SQS events of up to POLLER_BATCH_SIZE records, and deletes only the
messages the worker did not report in `batchItemFailures`. A function error
deletes nothing. What is not deleted comes back after the visibility
timeout, and the queue's redrive policy moves poison to the DLQ. The poller
never changes a message's visibility once its invocation has begun: a
reported failure comes back when the function said (`callback` sets its
retry delay with ChangeMessageVisibility), as with Lambda.

Fairness (what AWS does for a standard queue whose messages carry a
MessageGroupId, and moto does not): the poller holds what it received
(keeping it invisible) and fills each batch from the group with the fewest
messages in flight, oldest first, so that one caller's backlog does not
delay another caller's message. AWS starts this only once a tenant is
"noisy" (docs: "How Amazon SQS fair queues work"); here it always applies.
A message without a group is a group of its own, as in AWS.

POLLER_QUIET_LANES more dispatchers take only messages of groups with none
in flight. In AWS the event source scales out, and a fair queue hands a quiet
tenant's message out first, so it waits for little more than the next free
instance. Here the CONCURRENCY dispatchers start their batches together and
end them together at the deadline (a backlog of long texts fills each to it),
so without a lane of its own a quiet caller's message would wait for a whole
invocation (measured: 4.8-6.1 s behind 100 long texts; `make bench
--fairness-only`).

Env (from .local/env): QUEUE_URL, AWS_ENDPOINT_URL_SQS (boto3 takes it before AWS_ENDPOINT_URL), AWS_REGION, LAMBDA_URL;
POLLER_BATCH_SIZE (10), POLLER_CONCURRENCY (2), POLLER_WORKER (worker),
POLLER_HOLD (200: most messages held at once); POLLER_QUIET_LANES (0);
POLLER_QUEUE_URL (default QUEUE_URL): the stack runs a second poller on the
DLQ that invokes the dead-letter consumer, as the template's second mapping,
and a third on the ingest queue that invokes `ingest` (batch size 1, no quiet
lane; stack.py's start_part); POLLER_TIMEOUT_MS (default FALLBACK_TIMEOUT_MS):
the function's time budget, after which (+5 s) an invocation is abandoned.
"""

from __future__ import annotations

import collections
import hashlib
import os
import signal
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
HOLD = int(os.environ.get("POLLER_HOLD", "200"))
QUIET_LANES = int(os.environ.get("POLLER_QUIET_LANES", "0"))
# Like the function timeout: an invocation that hangs (a crashed runtime) is
# abandoned and its messages come back after the visibility timeout.
INVOKE_TIMEOUT = float(os.environ.get("POLLER_TIMEOUT_MS")
                       or os.environ.get("FALLBACK_TIMEOUT_MS", "28000")) / 1000 + 5

stopping = threading.Event()


def log(msg: str) -> None:
    print(f"poller ({FUNCTION}): {msg}", flush=True)


def queue_attributes(sqs) -> tuple[str, int]:
    attrs = sqs.get_queue_attributes(
        QueueUrl=QUEUE_URL, AttributeNames=["QueueArn", "VisibilityTimeout"])["Attributes"]
    return attrs["QueueArn"], int(attrs["VisibilityTimeout"])


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


class Entry:
    """A held message: its group, when it was received, and when its
    visibility was last set (it runs out `visibility` seconds later)."""

    __slots__ = ("message", "group", "received", "extended")

    def __init__(self, message: dict, group: str, now: float) -> None:
        self.message, self.group, self.received, self.extended = message, group, now, now


class Held:
    """Received messages not yet given to the worker, by group, and the
    messages in flight per group."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.waiting: dict[str, collections.deque] = {}
        self.in_flight: collections.Counter = collections.Counter()
        self.by_id: dict[str, Entry] = {}

    def __len__(self) -> int:
        with self.cond:
            return len(self.by_id)

    def add(self, messages: list[dict]) -> None:
        now = time.monotonic()
        with self.cond:
            for m in messages:
                entry = self.by_id.get(m["MessageId"])
                if entry:  # received again (its visibility ran out): the new handle
                    entry.message["ReceiptHandle"] = m["ReceiptHandle"]
                    entry.extended = now
                    continue
                group = (m.get("Attributes") or {}).get("MessageGroupId") or m["MessageId"]
                entry = Entry(m, group, now)
                self.by_id[m["MessageId"]] = entry
                self.waiting.setdefault(group, collections.deque()).append(entry)
            self.cond.notify_all()

    def take(self, size: int, timeout: float, quiet_only: bool = False) -> list[Entry]:
        """Up to `size` messages, each from the group with the fewest in
        flight (counting this batch), the longest held first; waits up to
        `timeout` for one. `quiet_only`: only from groups with none in flight."""
        with self.cond:
            def candidates() -> list[str]:
                return [g for g in self.waiting if not quiet_only or self.in_flight[g] == 0]
            if not candidates():
                self.cond.wait(timeout)
            batch = []
            while candidates() and len(batch) < size:
                group = min(candidates(),
                            key=lambda g: (self.in_flight[g], self.waiting[g][0].received))
                entry = self.waiting[group].popleft()
                if not self.waiting[group]:
                    del self.waiting[group]
                del self.by_id[entry.message["MessageId"]]
                self.in_flight[group] += 1
                batch.append(entry)
            return batch

    def done(self, batch: list[Entry]) -> None:
        with self.cond:
            for entry in batch:
                self.in_flight[entry.group] -= 1
                if self.in_flight[entry.group] <= 0:
                    del self.in_flight[entry.group]
            self.cond.notify_all()  # a group may be quiet now

    def due(self, older_than: float) -> list[dict]:
        """Held messages whose visibility was last set before `older_than`,
        marked as set now."""
        now = time.monotonic()
        with self.cond:
            out = []
            for entry in self.by_id.values():
                if entry.extended < older_than:
                    entry.extended = now
                    out.append(entry.message)
            return out

    def drain(self) -> list[dict]:
        with self.cond:
            out = [entry.message for entry in self.by_id.values()]
            self.by_id.clear()
            self.waiting.clear()
            return out


def receive(sqs, held: Held) -> None:
    while not stopping.is_set():
        if not lambda_invoke.runtime_up():
            time.sleep(0.5)
            continue
        if len(held) >= HOLD:
            time.sleep(0.1)
            continue
        try:
            got = sqs.receive_message(
                QueueUrl=QUEUE_URL, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"],
            )
        except Exception as e:  # moto restarting: keep polling
            log(f"receive failed: {e}")
            time.sleep(1)
            continue
        if got.get("Messages"):
            held.add(got["Messages"])


def set_visibility(sqs, messages: list[dict], seconds: int) -> None:
    for start in range(0, len(messages), 10):
        chunk = messages[start:start + 10]
        try:
            sqs.change_message_visibility_batch(QueueUrl=QUEUE_URL, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": seconds}
                for i, m in enumerate(chunk)])
        except Exception as e:
            log(f"change visibility failed: {e}; those messages may be received again")


def keep_invisible(sqs, held: Held, visibility: int) -> None:
    """Held messages stay invisible while they wait: their visibility is
    extended a third of the timeout before it would run out."""
    every = max(1.0, visibility / 3)
    while not stopping.wait(every / 2):
        due = held.due(time.monotonic() - every)
        if due:
            set_visibility(sqs, due, visibility)


def dispatch(sqs, arn: str, held: Held, visibility: int, quiet_only: bool = False) -> None:
    while not stopping.is_set():
        if not lambda_invoke.runtime_up():
            time.sleep(0.5)
            continue
        batch = held.take(BATCH_SIZE, timeout=1, quiet_only=quiet_only)
        if not batch:
            continue
        # The invocation gets the whole visibility timeout, as a batch the
        # event source has just received: a message that waited here is
        # given it again, so that it is not received twice meanwhile.
        waited = time.monotonic() - 0.5
        set_visibility(sqs, [e.message for e in batch if e.extended < waited], visibility)
        try:
            deliver(sqs, arn, [e.message for e in batch])
        finally:
            held.done(batch)


def deliver(sqs, arn: str, messages: list[dict]) -> None:
    by_id = {m["MessageId"]: m for m in messages}
    response = invoke({"Records": [record(m, arn) for m in messages]})
    if response is None:
        time.sleep(0.5)
        return
    failed = {f.get("itemIdentifier") for f in response.get("batchItemFailures") or []}
    unknown = failed - by_id.keys()
    if unknown:
        # Lambda treats an unknown identifier as a failure of the whole batch.
        log(f"unknown itemIdentifier(s) {sorted(unknown)}; whole batch retried")
        return
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
                       config=Config(retries={"max_attempts": 2, "mode": "standard"},
                                     max_pool_connections=CONCURRENCY + QUIET_LANES + 4))
    while True:
        try:
            arn, visibility = queue_attributes(sqs)
            break
        except Exception as e:
            log(f"waiting for the queue: {e}")
            time.sleep(1)
    log(f"polling {QUEUE_URL} -> {FUNCTION} (batch {BATCH_SIZE}, concurrency {CONCURRENCY}, "
        f"fair by MessageGroupId, {QUIET_LANES} lane(s) for quiet groups, holding up to {HOLD})")
    held = Held()
    threads = [threading.Thread(target=receive, args=(sqs, held), daemon=True),
               threading.Thread(target=keep_invisible, args=(sqs, held, visibility),
                                daemon=True)]
    threads += [threading.Thread(target=dispatch, args=(sqs, arn, held, visibility),
                                 daemon=True)
                for _ in range(CONCURRENCY)]
    threads += [threading.Thread(target=dispatch, args=(sqs, arn, held, visibility, True),
                                 daemon=True)
                for _ in range(QUIET_LANES)]
    for t in threads:
        t.start()
    try:
        while not stopping.is_set():
            stopping.wait(1)
    except KeyboardInterrupt:
        stopping.set()
    # What was held but not given to the worker is visible again at once,
    # for the next poller (its receive was counted either way).
    set_visibility(sqs, held.drain(), 0)
    sys.exit(0)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Rules for template.yaml that cfn-lint and checkov do not check: the SAM
event properties (their spelling and values), the queue/DLQ/timeout
relations, the routes of DESIGN.md, what the local gateway reads, the state
and security settings this project promises, the database logins each
function may use (the writer's for the ingest and the catalogue alone), who
may touch the ingest bucket and where, the connection arithmetic of the
template's header, the embedding model's layer, memory and time, and the
completion callbacks (their function's reach, stream filter and retries).

    rules.py [template.yaml]     check; exit 1 on any failed rule
    rules.py --self-test         break the template in known ways and check
                                 that each break is caught (the rules can fail)
    rules.py --model-dir [template.yaml]
                                 print the worker's MODEL_DIR (for build.sh)
"""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

CANCEL_ROUTE = ("POST", "/jobs/match/{task_id}/cancel")
# DESIGN.md "HTTP contract" plus the task listing (issue 3): every route, and only these.
ROUTES = {
    ("POST", "/jobs/match"),
    ("POST", "/jobs/match/legacy"),
    ("GET", "/health"),
    ("GET", "/jobs/match/status/{task_id}"),
    ("GET", "/jobs/match/tasks"),
    # DESIGN.md "Cancel and completion callbacks" (issue 31): the api's.
    CANCEL_ROUTE,
    # HttpApi's catch-all: the api answers what no route matches as problem+json.
    ("ANY", "$default"),
}
# DESIGN.md "Catalogue operations": an admin's routes (issue 28), served by
# the catalogue function alone, behind the same token check as the others.
ADMIN_ROUTES = {
    ("POST", "/jobs"),
    ("GET", "/jobs/{job_id}"),
    ("DELETE", "/jobs/{job_id}"),
    ("GET", "/ingests/{ingest_id}"),
}
ROUTES |= ADMIN_ROUTES
# The token's check, as the api function's variables configure it (shared/src/auth.rs).
JWT_VARIABLES = ("JWT_SECRET_ARN", "JWT_ALGORITHMS", "JWT_ISSUER", "JWT_AUDIENCE", "JWT_CLIENT_IDS",
                 "JWT_TOKEN_USE", "JWT_JWKS_URL", "JWT_JWKS")

# Completion callbacks (DESIGN.md "Cancel and completion callbacks", issue
# 31): the function that delivers them, the only pattern its tasks-stream
# event filters by (the local stack's stream poller evaluates the same one),
# and the retries' span: at least 24 hours, each delay within SQS's 12 hours
# of invisibility (ChangeMessageVisibility's bound).
CALLBACK_FUNCTION = "CallbackFunction"
CALLBACK_FILTER = {
    "eventName": ["INSERT", "MODIFY"],
    "dynamodb": {"NewImage": {
        "status": {"S": ["completed", "failed", "cancelled"]},
        "request": {"M": {"callback": {"M": {"url": {"S": [{"exists": True}]}}}}},
    }},
}
CALLBACK_RETRY_SPAN = 86400
SQS_MAX_VISIBILITY = 43200
WEBHOOK_SECRET_NAMES = {"WebhookSecret", "WebhookSecretArn"}
# The SAM DynamoDB event's properties (samtranslator's PullEventSource).
DYNAMODB_EVENT_PROPERTIES = {
    "Stream", "StartingPosition", "StartingPositionTimestamp", "BatchSize", "Enabled",
    "MaximumBatchingWindowInSeconds", "MaximumRetryAttempts", "BisectBatchOnFunctionError",
    "MaximumRecordAgeInSeconds", "DestinationConfig", "ParallelizationFactor", "TumblingWindowInSeconds",
    "FunctionResponseTypes", "FilterCriteria", "MetricsConfig", "KmsKeyArn",
}

# The embedding model (DESIGN.md "Text and embeddings"): only the worker loads
# it, from the model layer, which Lambda unpacks under /opt and
# infra/deploy/model-layer/Makefile fills with this folder.
MODEL_DIR = "/opt/all-minilm-l6-v2"
# Lambda gives one full vCPU at 1,769 MB, and the worker's embedding is
# CPU-bound; below it inference slows in proportion (template.yaml, worker).
ONE_VCPU_MB = 1769
# A maximal text (MaxTextWordPieces, DESIGN.md "Fair use") is cut into
# windows of 254 word pieces (embed::WINDOW - 2), each ~0.13 s at one vCPU
# (measured, release build, one thread).
WINDOW_PIECES = 254
WINDOW_SECONDS = 0.13

# The writer's database login (DESIGN.md "Database roles"): rights on `jobs`
# alone, for these functions only; every other function reads.
WRITER_LOGIN = "jobmatch_writer_login"
WRITER_FUNCTIONS = {"IngestFunction", "CatalogueFunction"}
# The functions that embed, and so load the model from its layer.
MODEL_FUNCTIONS = {"WorkerFunction", "IngestFunction"}

# Memory (GiB) of the instance classes the template allows. PostgreSQL on RDS
# sets max_connections = LEAST(DBInstanceClassMemory / 9531392, 5000), and
# DBInstanceClassMemory is the memory less what the OS and RDS keep: taken
# here as 85 % (conservative; check with SHOW max_connections).
INSTANCE_GIB = {
    "db.t4g.small": 2,
    "db.t4g.medium": 4,
    "db.t4g.large": 8,
    "db.r7g.large": 16,
    "db.r7g.xlarge": 32,
}


def max_connections(instance_class: str) -> int:
    memory = INSTANCE_GIB[instance_class] * 2**30 * 0.85
    return min(int(memory // 9531392), 5000)


class Tagged:
    """A CloudFormation short-form intrinsic (!Ref X, !GetAtt A.B, ...)."""

    def __init__(self, tag: str, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tagged) and (self.tag, self.value) == (other.tag, other.value)

    def __repr__(self):
        return f"{self.tag} {self.value!r}"


class CfnLoader(yaml.SafeLoader):
    pass


def _tagged(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tagged("!" + suffix, value)


CfnLoader.add_multi_constructor("!", _tagged)


def ref_name(value) -> str | None:
    """The logical id a !Ref / !GetAtt (or their long forms) points at."""
    if isinstance(value, Tagged):
        if value.tag == "!Ref":
            return value.value
        if value.tag == "!GetAtt":
            v = value.value
            return v.split(".")[0] if isinstance(v, str) else v[0]
    if isinstance(value, dict) and len(value) == 1:
        (k, v), = value.items()
        if k == "Ref":
            return v
        if k == "Fn::GetAtt":
            return v.split(".")[0] if isinstance(v, str) else v[0]
    return None


def sub_text(value) -> str | None:
    """The template string of a !Sub (short or long form), or a literal string."""
    if isinstance(value, str):
        return value
    if isinstance(value, Tagged) and value.tag == "!Sub":
        v = value.value
        return v if isinstance(v, str) else (v[0] if isinstance(v, list) and v and isinstance(v[0], str) else None)
    if isinstance(value, dict) and len(value) == 1 and "Fn::Sub" in value:
        v = value["Fn::Sub"]
        return v if isinstance(v, str) else (v[0] if isinstance(v, list) and v and isinstance(v[0], str) else None)
    return None


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def names_writer(value) -> bool:
    """Whether a value anywhere names the writer's login (its Db.Settings key or its name)."""
    if isinstance(value, Tagged):
        if value.tag == "!FindInMap" and list(value.value)[:3] == ["Db", "Settings", "WriterUser"]:
            return True
        return names_writer(value.value)
    if isinstance(value, dict):
        if list(value.get("Fn::FindInMap", []))[:3] == ["Db", "Settings", "WriterUser"]:
            return True
        return any(names_writer(v) for v in value.values())
    if isinstance(value, list):
        return any(names_writer(v) for v in value)
    return isinstance(value, str) and WRITER_LOGIN in value


def refs(value) -> set[str]:
    """Every logical id or parameter a value !Refs, however deep (short or long form)."""
    if isinstance(value, Tagged):
        return {value.value} if value.tag == "!Ref" and isinstance(value.value, str) else refs(value.value)
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("Ref"), str):
            return {value["Ref"]}
        return set().union(*(refs(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(v) for v in value))
    return set()


def mentions(value) -> set[str]:
    """Every logical id or parameter a value !Refs or !GetAtts, however deep."""
    if isinstance(value, Tagged):
        if value.tag in ("!Ref", "!GetAtt"):
            return {ref_name(value)} - {None}
        return mentions(value.value)
    if isinstance(value, dict):
        if len(value) == 1 and ref_name(value) is not None:
            return {ref_name(value)}
        return set().union(set(), *(mentions(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(set(), *(mentions(v) for v in value))
    return set()


class Checker:
    def __init__(self, doc: dict):
        self.doc = doc
        self.res = doc.get("Resources", {})
        self.params = doc.get("Parameters", {})
        self.globals = doc.get("Globals", {}).get("Function", {})
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, rule: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failures.append(rule)

    def of_type(self, kind: str) -> dict:
        return {k: v for k, v in self.res.items() if v.get("Type") == kind}

    def prop(self, fn: dict, key: str):
        """A function property, falling back to Globals."""
        return fn.get("Properties", {}).get(key, self.globals.get(key))

    def number(self, value) -> float | None:
        """A literal, or a parameter's default."""
        name = ref_name(value)
        if name in self.params:
            value = self.params[name].get("Default")
        try:
            return float(value)
        except (TypeError, ValueError):
            return None

    def env(self, fn: dict) -> dict:
        merged = dict(self.globals.get("Environment", {}).get("Variables", {}))
        merged.update(fn.get("Properties", {}).get("Environment", {}).get("Variables", {}))
        return merged

    def statements(self, fn: dict) -> list[dict]:
        out = []
        for policy in fn.get("Properties", {}).get("Policies", []) or []:
            if isinstance(policy, dict) and "Statement" in policy:
                out.extend(policy["Statement"])
        return out

    # ------------------------------------------------------------- rules
    def run(self) -> None:
        functions = self.of_type("AWS::Serverless::Function")
        queues = self.of_type("AWS::SQS::Queue")
        self.check(bool(functions), "the template has functions")

        for name, fn in functions.items():
            meta = fn.get("Metadata", {})
            self.check(meta.get("BuildMethod") == "rust-cargolambda", f"{name}: Metadata.BuildMethod is rust-cargolambda")
            self.check(bool(meta.get("BuildProperties", {}).get("Binary")), f"{name}: Metadata.BuildProperties.Binary names its binary (sam build, local gateway)")
            self.check(self.prop(fn, "Runtime") == "provided.al2023", f"{name}: runtime provided.al2023")
            self.check(self.prop(fn, "Architectures") == ["arm64"], f"{name}: arm64")
            for stmt in self.statements(fn):
                resource = stmt.get("Resource")
                action = stmt.get("Action")
                self.check(resource != "*" and "*" not in (resource if isinstance(resource, list) else []),
                           f"{name}: policy statement {stmt.get('Sid')} names its resources (no '*')")
                self.check(all(isinstance(a, str) and a != "*" and not a.endswith(":*") for a in as_list(action)),
                           f"{name}: policy statement {stmt.get('Sid')} names its actions")
            env = self.env(fn)
            for var in ("DATABASE_URL", "WRITER_DATABASE_URL"):
                if var not in env:
                    continue
                self.check(env.get("DB_AUTH") == "iam", f"{name}: reaches the database with DB_AUTH=iam")
                self.check("VpcConfig" in fn.get("Properties", {}), f"{name}: runs in the VPC (the proxy is private)")
                self.check(any(s.get("Action") == "rds-db:connect" for s in self.statements(fn)), f"{name}: may rds-db:connect")
                url = env[var]
                text = url.value[0] if isinstance(url, Tagged) and isinstance(url.value, list) else url
                self.check(isinstance(text, str) and "sslmode=verify-full" in text and ":" not in text.split("@")[0].removeprefix("postgres://"),
                           f"{name}: {var} has no password and verifies TLS")

        # The embedding model: a layer for the worker alone.
        layers = self.of_type("AWS::Serverless::LayerVersion")
        self.check(len(layers) == 1, f"one layer (the model): {sorted(layers)}")
        for lname, layer in layers.items():
            lp, meta = layer.get("Properties", {}), layer.get("Metadata", {})
            self.check(lp.get("CompatibleArchitectures") == ["arm64"], f"{lname}: CompatibleArchitectures [arm64]")
            self.check(lp.get("CompatibleRuntimes") == ["provided.al2023"], f"{lname}: CompatibleRuntimes [provided.al2023]")
            # Without a BuildMethod `sam build` copies nothing: the built
            # template would point into the checkout, whatever it holds then.
            content = lp.get("ContentUri")
            self.check(meta.get("BuildMethod") == "makefile" and isinstance(content, str)
                       and (ROOT / content / "Makefile").is_file(),
                       f"{lname}: built by `sam build` (BuildMethod makefile, a Makefile in ContentUri {content})")
            self.check(meta.get("BuildArchitecture") == "arm64", f"{lname}: Metadata.BuildArchitecture arm64")
        for name, fn in functions.items():
            fn_layers = [ref_name(x) for x in fn.get("Properties", {}).get("Layers", []) or []]
            model_dir = self.env(fn).get("MODEL_DIR")
            if name in MODEL_FUNCTIONS:
                self.check(bool(layers) and fn_layers == sorted(layers), f"{name}: has the model layer {sorted(layers)}: {fn_layers}")
                self.check(model_dir == MODEL_DIR, f"{name}: MODEL_DIR is {MODEL_DIR}, where the layer puts the model: {model_dir!r}")
                memory = self.number(self.prop(fn, "MemorySize"))
                self.check(memory is not None and memory >= ONE_VCPU_MB,
                           f"{name}: MemorySize >= {ONE_VCPU_MB} (one vCPU for the embedding): {memory}")
            if name == "WorkerFunction":
                # The worst batch embeds within half the timeout: the other
                # half is for a slower arm64 core and the matches.
                timeout = self.number(self.prop(fn, "Timeout"))
                queue_events = [e for e in (fn.get("Properties", {}).get("Events") or {}).values() if e.get("Type") == "SQS"]
                batch = max((self.number(e.get("Properties", {}).get("BatchSize", 10)) or 10 for e in queue_events), default=1)
                # The bound on a text (DESIGN.md "Fair use"): the api's 422
                # and the worker's own check are one setting.
                bound = self.env(fn).get("MAX_TEXT_WORD_PIECES")
                api_bound = self.env(functions.get("ApiFunction", {})).get("MAX_TEXT_WORD_PIECES")
                max_pieces = self.number(bound) or 0
                self.check(max_pieces > 0 and ref_name(bound) is not None and ref_name(bound) == ref_name(api_bound),
                           f"{name}: MAX_TEXT_WORD_PIECES is the api's, one parameter: {bound!r}, api {api_bound!r}")
                max_windows = math.ceil(max_pieces / WINDOW_PIECES)
                # A task out of time is handed back to its queue as a new message.
                sends = [st for st in self.statements(fn) if st.get("Action") == "sqs:SendMessage"]
                self.check(ref_name(self.env(fn).get("QUEUE_URL")) == "MatchQueue"
                           and any(ref_name(st.get("Resource")) == "MatchQueue" for st in sends),
                           f"{name}: QUEUE_URL is MatchQueue and it may sqs:SendMessage there (handing tasks back)")
                worst = batch * max_windows * WINDOW_SECONDS * max(1.0, ONE_VCPU_MB / (memory or 1))
                self.check(timeout is not None and worst <= timeout / 2,
                           f"{name}: a batch of {batch:g} maximal texts (~{worst:.0f} s of embedding at {memory} MB) "
                           f"within half its Timeout ({timeout})")
            elif name not in MODEL_FUNCTIONS:
                self.check(not fn_layers, f"{name}: no layers (it loads no model): {fn_layers}")
                self.check(model_dir is None, f"{name}: no MODEL_DIR (it loads no model)")

        # HttpApi events: what the local gateway reads, and DESIGN.md's routes.
        routes = set()
        for name, fn in functions.items():
            for ev_name, ev in (fn.get("Properties", {}).get("Events") or {}).items():
                if ev.get("Type") != "HttpApi":
                    continue
                props = ev.get("Properties", {})
                literal = isinstance(props.get("Path"), str) and isinstance(props.get("Method"), str)
                self.check(literal, f"{name}.{ev_name}: literal Path and Method (infra/local/gateway.py reads them)")
                if literal:
                    route = (props["Method"].upper(), props["Path"])
                    routes.add(route)
                    # The writer's routes on the writer's function, and nothing else there.
                    self.check((route in ADMIN_ROUTES) == (name == "CatalogueFunction"),
                               f"{name}.{ev_name}: {' '.join(route)} {'is' if route in ADMIN_ROUTES else 'is not'} an admin route, "
                               "and admin routes are CatalogueFunction's alone")
                # The token is checked in the function (a 401 names its
                # reason); no route may switch an authorizer off or on.
                self.check("Auth" not in props, f"{name}.{ev_name}: no Auth of its own (the function checks the token)")
                self.check(ref_name(props.get("ApiId")) == "HttpApi", f"{name}.{ev_name}: on the one HttpApi")
        self.check(routes == ROUTES, f"routes are DESIGN.md's: missing {sorted(ROUTES - routes)}, extra {sorted(routes - ROUTES)}")
        cancel_on = [n for n, f in functions.items() for e in (f.get("Properties", {}).get("Events") or {}).values()
                     if e.get("Type") == "HttpApi"
                     and (str(e.get("Properties", {}).get("Method", "")).upper(), e.get("Properties", {}).get("Path")) == CANCEL_ROUTE]
        self.check(cancel_on == ["ApiFunction"], f"{' '.join(CANCEL_ROUTE)} is ApiFunction's (and only its): {cancel_on}")
        # Route keys as API Gateway names them ("POST /jobs/match", "$default").
        route_keys = {p if p == "$default" else f"{m} {p}" for m, p in routes}

        # Limits at the edge: the routes that can hold an api instance for
        # seconds (the legacy match) or that anyone may call (health) get
        # tighter throttles than the default (docs/deploy.md "Limits at the edge").
        for aname, api_res in self.of_type("AWS::Serverless::HttpApi").items():
            ap = api_res.get("Properties", {})
            default = ap.get("DefaultRouteSettings", {})
            default_rate = self.number(default.get("ThrottlingRateLimit"))
            default_burst = self.number(default.get("ThrottlingBurstLimit"))
            self.check(default_rate is not None and default_burst is not None,
                       f"{aname}: DefaultRouteSettings throttle every route (rate and burst)")
            per_route = ap.get("RouteSettings") or {}
            # API Gateway refuses the stage when a key names no route.
            self.check(all(k in route_keys for k in per_route),
                       f"{aname}: RouteSettings keys are routes of the API: {sorted(map(str, per_route))}")
            # The admin routes: the catalogue's 10 instances, each holding a
            # writer's connection, stay within its reserved concurrency.
            for key in ("GET /health", "POST /jobs/match/legacy", *sorted(f"{m} {p}" for m, p in ADMIN_ROUTES)):
                rs = per_route.get(key) or {}
                rate = self.number(rs.get("ThrottlingRateLimit"))
                burst = self.number(rs.get("ThrottlingBurstLimit"))
                self.check(rate is not None and burst is not None and default_rate is not None and default_burst is not None
                           and 0 < rate < default_rate and 0 < burst < default_burst,
                           f"{aname}: RouteSettings[{key!r}] throttles tighter than the default "
                           f"(rate {rate} < {default_rate}, burst {burst} < {default_burst})")

        # SQS event sources.
        sqs_events = [(n, f, e) for n, f in functions.items()
                      for e in (f.get("Properties", {}).get("Events") or {}).values() if e.get("Type") == "SQS"]
        by_queue: dict[str | None, list[str]] = {}
        for name, _, ev in sqs_events:
            by_queue.setdefault(ref_name(ev.get("Properties", {}).get("Queue")), []).append(name)
        match_dlq = ref_name(queues.get("MatchQueue", {}).get("Properties", {}).get("RedrivePolicy", {}).get("deadLetterTargetArn"))
        self.check(by_queue.get("MatchQueue") == ["WorkerFunction"], f"MatchQueue feeds the worker alone: {by_queue.get('MatchQueue')}")
        # Dead-lettered tasks end `failed` (DESIGN.md "Task lifecycle"): a
        # consumer on the DLQ that is not the worker, since it must run when
        # the worker cannot start.
        dl_consumers = by_queue.get(match_dlq, []) if match_dlq else []
        self.check(len(dl_consumers) == 1 and dl_consumers != ["WorkerFunction"],
                   f"the DLQ ({match_dlq}) has one consumer of its own, not the worker: {dl_consumers}")
        for consumer in dl_consumers:
            self.check(any("dynamodb:UpdateItem" in (s.get("Action") if isinstance(s.get("Action"), list) else [s.get("Action")])
                           for s in self.statements(functions[consumer])),
                       f"{consumer}: may dynamodb:UpdateItem (it closes dead-lettered tasks)")
        self.check(by_queue.get("IngestQueue") == ["IngestFunction"], f"IngestQueue feeds the ingest alone: {by_queue.get('IngestQueue')}")
        self.check(by_queue.get("CallbackQueue") == [CALLBACK_FUNCTION],
                   f"CallbackQueue feeds {CALLBACK_FUNCTION} alone: {by_queue.get('CallbackQueue')}")
        self.check(set(by_queue) <= {"MatchQueue", match_dlq, "IngestQueue", "CallbackQueue"},
                   f"SQS event sources only on MatchQueue, its DLQ, IngestQueue and CallbackQueue: {sorted(map(str, by_queue))}")
        for name, fn, ev in sqs_events:
            props = ev.get("Properties", {})
            self.check(props.get("FunctionResponseTypes") == ["ReportBatchItemFailures"],
                       f"{name}: FunctionResponseTypes is exactly [ReportBatchItemFailures]")
            self.check(set(props) <= {"Queue", "BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes",
                                      "ScalingConfig", "Enabled", "FilterCriteria", "MetricsConfig", "KmsKeyArn"},
                       f"{name}: SQS event properties are spelled as SAM knows them: {sorted(props)}")
            batch = self.number(props.get("BatchSize", 10))
            window = self.number(props.get("MaximumBatchingWindowInSeconds"))
            # A batch of one is full at its first message: no window to wait.
            self.check((batch == 1 and window is None) or (window is not None and 0 < window <= 20),
                       f"{name}: a batching window (1..20 s), none with BatchSize 1")
            self.check(batch is not None and 1 <= batch <= 10, f"{name}: BatchSize 1..10")
            max_conc = self.number(props.get("ScalingConfig", {}).get("MaximumConcurrency"))
            reserved = self.number(fn.get("Properties", {}).get("ReservedConcurrentExecutions"))
            self.check(max_conc is not None and max_conc >= 2, f"{name}: ScalingConfig.MaximumConcurrency set (>= 2)")
            self.check(reserved is not None and max_conc is not None and max_conc <= reserved,
                       f"{name}: MaximumConcurrency <= reserved concurrency (no throttled polls)")
            qname = ref_name(props.get("Queue"))
            queue = queues.get(qname)
            self.check(queue is not None, f"{name}: its queue {qname} is in the template")
            if queue is None:
                continue
            qp = queue.get("Properties", {})
            timeout = self.number(self.prop(fn, "Timeout"))
            vis = self.number(qp.get("VisibilityTimeout", 30))
            self.check(timeout is not None and vis is not None and vis >= 6 * timeout,
                       f"{qname}: VisibilityTimeout ({vis}) >= 6 x {name} Timeout ({timeout})")
            redrive = qp.get("RedrivePolicy", {})
            dlq = ref_name(redrive.get("deadLetterTargetArn"))
            mrc = redrive.get("maxReceiveCount")
            all_alarms = self.of_type("AWS::CloudWatch::Alarm").values()
            if qname == "IngestQueue":
                # One object a message: a failing object fails alone.
                self.check(batch == 1, f"{name}: BatchSize 1 on {qname} (one object an invocation)")
                self.check(dlq in queues and dlq != qname, f"{qname}: RedrivePolicy.deadLetterTargetArn is a queue of the template")
                self.check(isinstance(mrc, int) and mrc >= 2, f"{qname}: maxReceiveCount >= 2 (a retry before the DLQ)")
                self.check(not by_queue.get(dlq), f"{dlq}: no consumer (an object that failed 3 times waits for an operator)")
                if dlq in queues:
                    retention = self.number(queues[dlq].get("Properties", {}).get("MessageRetentionPeriod", 345600))
                    self.check(retention is not None and retention >= 7 * 86400, f"{dlq}: keeps messages >= 7 days")
                    self.check(any(a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
                                   and any(ref_name(d.get("Value")) == dlq for d in a["Properties"].get("Dimensions", []))
                                   for a in all_alarms),
                               f"{dlq}: an alarm on its depth (ApproximateNumberOfMessagesVisible)")
                sends = [st for st in self.statements(fn) if "sqs:SendMessage" in as_list(st.get("Action"))]
                self.check(ref_name(self.env(fn).get("INGEST_QUEUE_URL")) == qname
                           and any(ref_name(st.get("Resource")) == qname for st in sends),
                           f"{name}: INGEST_QUEUE_URL is {qname} and it may sqs:SendMessage there (continuing a large object)")
                continue
            if qname == "CallbackQueue":
                self.check_callback_queue(name, fn, props, queue, queues, by_queue)
                continue
            if qname != "MatchQueue":
                continue
            # One wave per invocation: a message that waits for a pool slot
            # can be returned untried at the deadline, burning a receive.
            pool = self.number(self.env(fn).get("DB_MAX_CONNECTIONS"))
            self.check(batch is not None and pool is not None and batch <= pool,
                       f"{name}: BatchSize ({batch}) <= DB_MAX_CONNECTIONS ({pool}), so every message of a batch starts at once")
            self.check(dlq in queues, f"{qname}: RedrivePolicy.deadLetterTargetArn is a queue of the template")
            self.check(isinstance(mrc, int) and mrc >= 2, f"{qname}: maxReceiveCount >= 2 (a retry before the DLQ)")
            self.check(str(self.env(fn).get("MAX_RECEIVE_COUNT")) == str(mrc),
                       f"{name}: MAX_RECEIVE_COUNT equals {qname}'s maxReceiveCount (the last attempt records failed)")
            if dlq in queues:
                retention = self.number(queues[dlq].get("Properties", {}).get("MessageRetentionPeriod", 345600))
                self.check(retention is not None and retention >= 7 * 86400, f"{dlq}: keeps messages >= 7 days")
                alarms = [a for a in all_alarms
                          if any(ref_name(d.get("Value")) == dlq for d in a["Properties"].get("Dimensions", []))]
                self.check(any(a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage" for a in alarms),
                           f"{dlq}: an alarm on the age of its oldest message (its consumer is failing)")
                counted = {m.get("MetricStat", {}).get("Metric", {}).get("MetricName")
                           for a in all_alarms for m in a["Properties"].get("Metrics", [])}
                self.check({"TasksDeadLettered", "DeadLettersIgnored"} <= counted,
                           f"{dlq}: an alarm on what its consumer saw (TasksDeadLettered, DeadLettersIgnored)")
        for qname, queue in queues.items():
            qp = queue.get("Properties", {})
            self.check(qp.get("SqsManagedSseEnabled") is True or "KmsMasterKeyId" in qp, f"{qname}: encrypted at rest")

        self.check_callbacks(functions)

        # DynamoDB: DESIGN.md "Data"; the tasks are kept, the quota's
        # buckets (DESIGN.md "Fair use") are disposable state.
        tables = self.of_type("AWS::DynamoDB::Table")
        self.check(set(tables) == {"TasksTable", "QuotaTable", "IngestsTable"},
                   f"the tables are TasksTable, QuotaTable and IngestsTable: {sorted(tables)}")
        for tname, table in tables.items():
            tp = table.get("Properties", {})
            self.check(tp.get("BillingMode") == "PAY_PER_REQUEST", f"{tname}: on demand")
            self.check(tp.get("TimeToLiveSpecification") == {"AttributeName": "expires_at", "Enabled": True}, f"{tname}: TTL on expires_at")
            self.check(tp.get("SSESpecification", {}).get("SSEEnabled") is True, f"{tname}: SSE")
            if tname == "QuotaTable":
                continue
            self.check(tp.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled") is True, f"{tname}: PITR")
            self.check(table.get("DeletionPolicy") == "Retain" and tp.get("DeletionProtectionEnabled") is True,
                       f"{tname}: deletion protection and Retain")
            if tname == "IngestsTable":
                self.check([k.get("AttributeName") for k in tp.get("KeySchema", [])] == ["ingest_id"], f"{tname}: keyed by ingest_id")
                continue
            gsis = {g["IndexName"]: [k["AttributeName"] for k in g["KeySchema"]] for g in tp.get("GlobalSecondaryIndexes", [])}
            self.check(gsis.get("owner-created_at") == ["owner", "created_at"], f"{tname}: GSI owner-created_at")
        quota = tables.get("QuotaTable", {}).get("Properties", {})
        self.check([k.get("AttributeName") for k in quota.get("KeySchema", [])] == ["caller"],
                   "QuotaTable: keyed by caller (shared/src/adapters/dynamo_quota.rs)")
        # The quota per caller: the api alone takes from it, with one action.
        for name, fn in functions.items():
            env = self.env(fn)
            touches = [st for st in self.statements(fn)
                       if "QuotaTable" in {ref_name(r) for r in (st.get("Resource") if isinstance(st.get("Resource"), list) else [st.get("Resource")])}]
            if name == "ApiFunction":
                self.check(ref_name(env.get("QUOTA_TABLE")) == "QuotaTable"
                           and ref_name(env.get("QUOTA_RATE")) == "QuotaRate"
                           and ref_name(env.get("QUOTA_BURST")) == "QuotaBurst",
                           f"{name}: QUOTA_TABLE, QUOTA_RATE and QUOTA_BURST are QuotaTable and the Quota parameters")
                self.check(len(touches) == 1 and touches[0].get("Action") == "dynamodb:UpdateItem",
                           f"{name}: may dynamodb:UpdateItem on QuotaTable, and nothing more on it")
            else:
                self.check(not touches and "QuotaTable" not in refs(env),
                           f"{name}: no access to QuotaTable (the api's alone)")

        # Database and proxy.
        for dname, db in self.of_type("AWS::RDS::DBInstance").items():
            dp = db.get("Properties", {})
            self.check(db.get("DeletionPolicy") == "Snapshot" and db.get("UpdateReplacePolicy") == "Snapshot",
                       f"{dname}: snapshot on delete and replace")
            self.check(dp.get("DeletionProtection") is True, f"{dname}: deletion protection")
            self.check(dp.get("StorageEncrypted") is True, f"{dname}: encrypted storage")
            self.check(dp.get("ManageMasterUserPassword") is True and "MasterUserPassword" not in dp,
                       f"{dname}: credentials managed in Secrets Manager")
            self.check(dp.get("PubliclyAccessible") is False, f"{dname}: not public")
            # A full minor (17.9) stops new stacks once RDS retires it: the
            # major alone, with minor upgrades on, stays creatable.
            version = dp.get("EngineVersion")
            name = ref_name(version)
            if name in self.params:
                version = self.params[name].get("Default")
            self.check(isinstance(version, str) and version.isdigit() and dp.get("AutoMinorVersionUpgrade") is True,
                       f"{dname}: EngineVersion is a major version ({version!r}) with AutoMinorVersionUpgrade")
        for pname, proxy in self.of_type("AWS::RDS::DBProxy").items():
            pp = proxy.get("Properties", {})
            self.check(pp.get("RequireTLS") is True, f"{pname}: TLS required")
            self.check(all(a.get("IAMAuth") == "REQUIRED" for a in pp.get("Auth", [])) and pp.get("Auth"), f"{pname}: IAM auth required")
            self.check(any(ref_name(a.get("SecretArn")) == "FunctionsDbSecret" for a in pp.get("Auth", [])),
                       f"{pname}: an auth entry for the functions' own login (FunctionsDbSecret)")
            self.check(any(ref_name(a.get("SecretArn")) == "WriterDbSecret" for a in pp.get("Auth", [])),
                       f"{pname}: an auth entry for the writer's login (WriterDbSecret)")
            role = self.res.get(ref_name(pp.get("RoleArn")) or "", {})
            readable = set()
            for policy in role.get("Properties", {}).get("Policies", []) or []:
                for st in policy.get("PolicyDocument", {}).get("Statement", []):
                    if st.get("Action") == "secretsmanager:GetSecretValue":
                        readable |= refs(st.get("Resource"))
            self.check({"FunctionsDbSecret", "WriterDbSecret"} <= readable,
                       f"{pname}: its role may read the logins' secrets (FunctionsDbSecret, WriterDbSecret): {sorted(readable)}")

        # Least privilege (DESIGN.md "Database roles"): the master user runs
        # migrations alone; the others log in as the read-only role, and may
        # connect as that user only.
        db_map = self.doc.get("Mappings", {}).get("Db", {}).get("Settings", {})
        master, reader = db_map.get("User"), db_map.get("FunctionsUser")
        self.check(bool(reader) and reader != master, f"Mappings Db.Settings.FunctionsUser is not the master user: {reader!r}")
        writer = db_map.get("WriterUser")
        self.check(writer == WRITER_LOGIN, f"Mappings Db.Settings.WriterUser is {WRITER_LOGIN} (db/ grants it jobmatch_writer): {writer!r}")
        secret = self.res.get("WriterDbSecret", {}).get("Properties", {}).get("GenerateSecretString", {})
        template = secret.get("SecretStringTemplate")
        self.check(isinstance(template, Tagged) and isinstance(template.value, list) and len(template.value) == 2
                   and template.value[1].get("User") == Tagged("!FindInMap", ["Db", "Settings", "WriterUser"])
                   and secret.get("GenerateStringKey") == "password",
                   "WriterDbSecret: {username: Db.Settings.WriterUser, password: generated}")

        def db_user(value) -> str | None:
            """The Db.Settings key a !Sub [.., {User: !FindInMap [Db, Settings, KEY]}] names."""
            if isinstance(value, Tagged) and isinstance(value.value, list) and len(value.value) == 2:
                user = value.value[1].get("User")
                if isinstance(user, Tagged) and user.tag == "!FindInMap" and user.value[:2] == ["Db", "Settings"]:
                    return user.value[2]
            return None

        for name, fn in functions.items():
            env = self.env(fn)
            if "DATABASE_URL" not in env:
                continue
            is_migrate = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == "migrate"
            want = "User" if is_migrate else "FunctionsUser"
            self.check(db_user(env["DATABASE_URL"]) == want, f"{name}: DATABASE_URL logs in as Db.Settings.{want}")
            connects = [st for st in self.statements(fn) if st.get("Action") == "rds-db:connect"]
            self.check(bool(connects) and all(db_user(st.get("Resource")) == want for st in connects),
                       f"{name}: rds-db:connect names Db.Settings.{want} alone")
            if is_migrate:
                self.check(ref_name(env.get("FUNCTIONS_DB_SECRET_ARN")) == "FunctionsDbSecret",
                           f"{name}: FUNCTIONS_DB_SECRET_ARN is FunctionsDbSecret (it makes the functions' login role)")
                self.check(ref_name(env.get("WRITER_DB_SECRET_ARN")) == "WriterDbSecret",
                           f"{name}: WRITER_DB_SECRET_ARN is WriterDbSecret (it makes the writer's login role)")
        # The writer's password: migrate alone reads it (to make the role);
        # the writer's functions present IAM tokens.
        for name, fn in functions.items():
            is_migrate = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == "migrate"
            reads = any("WriterDbSecret" in refs(st.get("Resource")) for st in self.statements(fn))
            named = "WriterDbSecret" in refs(self.env(fn))
            if is_migrate:
                self.check(reads and named, f"{name}: may read WriterDbSecret, named by WRITER_DB_SECRET_ARN")
            else:
                self.check(not reads and not named, f"{name}: no access to WriterDbSecret (migrate's alone)")

        # The writer (DESIGN.md "Database roles"): the ingest and the
        # catalogue alone connect as jobmatch_writer_login, and have no other
        # login; every other function keeps the reader's login or none.
        for name, fn in functions.items():
            env = self.env(fn)
            connects = [st for st in self.statements(fn) if "rds-db:connect" in as_list(st.get("Action"))]
            users = [db_user(st.get("Resource")) for st in connects]
            self.check(None not in users, f"{name}: each rds-db:connect names one Db.Settings user (no wildcard dbuser)")
            if name in WRITER_FUNCTIONS:
                self.check(db_user(env.get("WRITER_DATABASE_URL")) == "WriterUser" and "DATABASE_URL" not in env,
                           f"{name}: WRITER_DATABASE_URL logs in as Db.Settings.WriterUser, and it has no other database URL")
                self.check(bool(users) and set(users) == {"WriterUser"},
                           f"{name}: rds-db:connect names Db.Settings.WriterUser alone: {users}")
            else:
                self.check("WriterUser" not in users and not any(names_writer(st.get("Resource")) for st in connects),
                           f"{name}: no rds-db:connect as the writer ({WRITER_LOGIN})")
                self.check("WRITER_DATABASE_URL" not in env and not names_writer(env),
                           f"{name}: no WRITER_DATABASE_URL, nor the writer's login in any variable")
        for name in sorted(WRITER_FUNCTIONS):
            self.check(name in functions, f"{name}: in the template (it writes jobs, as the writer)")
        for name in ("ApiFunction", "WorkerFunction"):
            self.check(db_user(self.env(functions.get(name, {})).get("DATABASE_URL")) == "FunctionsUser",
                       f"{name}: keeps the reader's login (DATABASE_URL as Db.Settings.FunctionsUser)")

        # The ingest bucket (DESIGN.md "Catalogue operations").
        bucket = self.res.get("IngestBucket", {})
        bp = bucket.get("Properties", {})
        self.check(bucket.get("Type") == "AWS::S3::Bucket", "IngestBucket: an S3 bucket")
        self.check(bp.get("VersioningConfiguration", {}).get("Status") == "Enabled",
                   "IngestBucket: versioning on (the ingest reads the version it was notified of)")
        pab = bp.get("PublicAccessBlockConfiguration", {})
        self.check(all(pab.get(k) is True for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")),
                   "IngestBucket: public access blocked (all four settings)")
        self.check(bool(bp.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration")), "IngestBucket: encrypted at rest")
        qconfs = bp.get("NotificationConfiguration", {}).get("QueueConfigurations", [])
        prefixes = [[r.get("Value") for r in q.get("Filter", {}).get("S3Key", {}).get("Rules", []) if str(r.get("Name")).lower() == "prefix"]
                    for q in qconfs]
        self.check(len(qconfs) == 1 and ref_name(qconfs[0].get("Queue")) == "IngestQueue"
                   and qconfs[0].get("Event") == "s3:ObjectCreated:*" and prefixes == [["incoming/"]],
                   f"IngestBucket: notifies s3:ObjectCreated:* under incoming/ to IngestQueue, and nothing else: {prefixes}")
        self.check("IngestQueuePolicy" in as_list(bucket.get("DependsOn", [])),
                   "IngestBucket: DependsOn IngestQueuePolicy (S3 tests the queue when the notification is set)")
        lifecycle = bp.get("LifecycleConfiguration", {}).get("Rules", [])
        self.check(any(r.get("Status") == "Enabled" and r.get("Prefix") == "reports/" and r.get("ExpirationInDays") for r in lifecycle),
                   "IngestBucket: reports/ expire")
        self.check(any(r.get("Status") == "Enabled" and r.get("NoncurrentVersionExpiration") for r in lifecycle),
                   "IngestBucket: noncurrent versions expire")
        tls = [st for pol in self.of_type("AWS::S3::BucketPolicy").values()
               if ref_name(pol.get("Properties", {}).get("Bucket")) == "IngestBucket"
               for st in pol["Properties"].get("PolicyDocument", {}).get("Statement", [])
               if st.get("Effect") == "Deny" and st.get("Principal") in ("*", {"AWS": "*"})
               and as_list(st.get("Action")) == ["s3:*"]
               and str(st.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport")).lower() == "false"]
        covered = {ref_name(r) or sub_text(r) for st in tls for r in as_list(st.get("Resource"))}
        self.check({"IngestBucket", "${IngestBucket.Arn}/*"} <= covered,
                   "IngestBucket: a bucket policy denies every request without TLS, on the bucket and its objects")
        # S3 may announce this bucket's objects, of this account, and nothing else.
        bucket_name = sub_text(bp.get("BucketName"))
        qpols = [pol for pol in self.of_type("AWS::SQS::QueuePolicy").values()
                 if "IngestQueue" in {ref_name(q) for q in pol.get("Properties", {}).get("Queues", [])}]
        allows = [st for pol in qpols for st in pol["Properties"].get("PolicyDocument", {}).get("Statement", [])
                  if st.get("Effect") == "Allow"]
        ok = len(allows) == 1 and bucket_name is not None
        if ok:
            st = allows[0]
            cond = st.get("Condition", {})
            source = (cond.get("ArnEquals") or cond.get("ArnLike") or {}).get("aws:SourceArn")
            ok = (st.get("Principal") == {"Service": "s3.amazonaws.com"} and as_list(st.get("Action")) == ["sqs:SendMessage"]
                  and ref_name(st.get("Resource")) == "IngestQueue"
                  and sub_text(source) == "arn:${AWS::Partition}:s3:::" + bucket_name
                  and ref_name(cond.get("StringEquals", {}).get("aws:SourceAccount")) == "AWS::AccountId")
        self.check(ok, f"IngestQueuePolicy: s3.amazonaws.com alone may sqs:SendMessage, for IngestBucket ({bucket_name}) "
                       "by aws:SourceArn and this account by aws:SourceAccount")
        # Who touches the bucket, and where: the catalogue puts under
        # incoming/ (POST /jobs), the ingest reads incoming/ and writes
        # reports/; nobody else, and nobody the whole bucket.
        s3_wanted = {
            "IngestFunction": {("s3:GetObject", "incoming/*"), ("s3:GetObjectVersion", "incoming/*"), ("s3:PutObject", "reports/*")},
            "CatalogueFunction": {("s3:PutObject", "incoming/*")},
        }
        for name, fn in functions.items():
            grants = set()
            for st in self.statements(fn):
                s3_actions = [a for a in as_list(st.get("Action")) if str(a).startswith("s3:")]
                for r in as_list(st.get("Resource")) if s3_actions else []:
                    text = sub_text(r)
                    where = text.removeprefix("${IngestBucket.Arn}/") if text and text.startswith("${IngestBucket.Arn}/") else repr(r)
                    grants |= {(a, where) for a in s3_actions}
            want = s3_wanted.get(name, set())
            self.check(grants == want, f"{name}: S3 rights {sorted(want) or 'none'}: {sorted(grants, key=str)}")
        # Ingests: the ingest records and checkpoints (conditional PutItem alone),
        # the catalogue creates and serves.
        table_wanted = {
            "IngestFunction": {"dynamodb:GetItem", "dynamodb:PutItem"},
            "CatalogueFunction": {"dynamodb:GetItem", "dynamodb:PutItem"},
        }
        for name, fn in functions.items():
            env = self.env(fn)
            acts = {a for st in self.statements(fn) if "IngestsTable" in {ref_name(r) for r in as_list(st.get("Resource"))}
                    for a in as_list(st.get("Action"))}
            want = table_wanted.get(name, set())
            self.check(acts == want, f"{name}: IngestsTable rights {sorted(want) or 'none'}: {sorted(acts)}")
            if name in table_wanted:
                self.check(ref_name(env.get("INGESTS_TABLE")) == "IngestsTable" and ref_name(env.get("INGEST_BUCKET")) == "IngestBucket",
                           f"{name}: INGESTS_TABLE and INGEST_BUCKET are IngestsTable and IngestBucket")
        # The admin's token: checked as the api checks it, from the same
        # parameters (the same variables, the same secret), plus the group.
        api_env = self.env(functions.get("ApiFunction", {}))
        jwt_policy = [pol for pol in functions.get("ApiFunction", {}).get("Properties", {}).get("Policies", [])
                      if "JwtSecret" in refs(pol) or "JwtSecretArn" in refs(pol)]
        for name, fn in functions.items():
            if name != "CatalogueFunction":
                continue
            env = self.env(fn)
            differs = [v for v in JWT_VARIABLES if env.get(v) != api_env.get(v)]
            self.check(not differs and "JWT_SECRET" not in env, f"{name}: the api's token check (JWT_* as ApiFunction's): differs in {differs}")
            mine = [pol for pol in fn.get("Properties", {}).get("Policies", []) if "JwtSecret" in refs(pol) or "JwtSecretArn" in refs(pol)]
            self.check(bool(jwt_policy) and mine == jwt_policy, f"{name}: reads the JWT secret as the api does (the same policy)")
            self.check("AdminGroup" in refs(env.get("ADMIN_GROUP")), f"{name}: ADMIN_GROUP is the AdminGroup parameter")

        # Expired postings go daily (DESIGN.md "Catalogue operations", Lifecycle).
        for name, fn in functions.items():
            env = self.env(fn)
            schedules = [e.get("Properties", {}) for e in (fn.get("Properties", {}).get("Events") or {}).values()
                         if e.get("Type") == "Schedule"]
            if name != "IngestFunction":
                self.check(not schedules, f"{name}: no schedule")
                continue
            try:
                inputs = [json.loads(s.get("Input", "null")) for s in schedules]
            except (TypeError, ValueError):
                inputs = []
            self.check(len(schedules) == 1 and schedules[0].get("Schedule") == "rate(1 day)" and inputs == [{"jobmatch": "expire"}],
                       f"{name}: a daily schedule with the input {{\"jobmatch\":\"expire\"}}")
            self.check(ref_name(env.get("EXPIRED_RETENTION_DAYS")) == "ExpiredRetentionDays",
                       f"{name}: EXPIRED_RETENTION_DAYS is the ExpiredRetentionDays parameter")
        groups = self.of_type("AWS::RDS::DBProxyTargetGroup")
        self.check(len(groups) == 1, "one proxy target group")

        # The cache's entries are authenticated (shared/src/cache_mac.rs) by a
        # key that is no database credential: the functions that use the cache
        # read it by ARN, and no other function may read it.
        self.check("CacheMacKey" in self.of_type("AWS::SecretsManager::Secret"), "a CacheMacKey secret")
        for name, fn in functions.items():
            env = self.env(fn)
            reads = any("CacheMacKey" in refs(st.get("Resource")) for st in self.statements(fn))
            if name in ("ApiFunction", "WorkerFunction"):
                self.check(ref_name(env.get("CACHE_MAC_KEY_ARN")) == "CacheMacKey" and reads,
                           f"{name}: CACHE_MAC_KEY_ARN is CacheMacKey, which it may read")
                self.check("CACHE_MAC_KEY" not in env, f"{name}: the cache's MAC key by ARN, not in a variable")
            else:
                self.check(not reads and "CACHE_MAC_KEY_ARN" not in env, f"{name}: may not read CacheMacKey")

        # The connection arithmetic of the template's header, for the defaults.
        api, worker = functions.get("ApiFunction"), functions.get("WorkerFunction")
        if api and worker and groups:
            pool = next(iter(groups.values()))["Properties"]["ConnectionPoolConfigurationInfo"]
            percent = self.number(pool.get("MaxConnectionsPercent"))
            klass = self.params.get("DbInstanceClass", {}).get("Default")
            allowed = self.params.get("DbInstanceClass", {}).get("AllowedValues", [])
            self.check(set(allowed) <= set(INSTANCE_GIB), f"DbInstanceClass values all have a known memory size: {allowed}")
            self.check(pool.get("ConnectionBorrowTimeout") is not None and self.number(pool["ConnectionBorrowTimeout"]) <= 30,
                       "proxy: ConnectionBorrowTimeout set short for Lambda (<= 30 s)")
            budget = math.floor(max_connections(klass) * percent / 100) if klass in INSTANCE_GIB and percent else 0
            # Every function with a database URL: its reserved concurrency
            # times its pool (migrate: one connection, no pool setting).
            demand = 0.0
            for fn in functions.values():
                env = self.env(fn)
                if not {"DATABASE_URL", "WRITER_DATABASE_URL"} & set(env):
                    continue
                is_migrate = fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == "migrate"
                pool = self.number(env.get("DB_MAX_CONNECTIONS")) or (1 if is_migrate else math.inf)
                demand += (self.number(fn["Properties"].get("ReservedConcurrentExecutions")) or math.inf) * pool
            self.arithmetic = (klass, max_connections(klass) if klass in INSTANCE_GIB else None, percent, budget, demand)
            self.check(demand <= budget,
                       f"connections: every database function at full concurrency ({demand:g}) <= proxy budget ({budget}) for {klass}")

        # Migrations on deploy.
        customs = {k: v for k, v in self.res.items() if v.get("Type", "").startswith("Custom::")}
        self.check(len(customs) == 1, "one custom resource (Migrations)")
        for cname, custom in customs.items():
            tname = ref_name(custom["Properties"].get("ServiceToken"))
            target = functions.get(tname)
            self.check(target is not None and target["Metadata"]["BuildProperties"]["Binary"] == "migrate",
                       f"{cname}: served by the migrate function")
            if target is not None:
                tp = target["Properties"]
                # The migrate handler tells a rollback (an older version) by this property.
                self.check(ref_name(custom["Properties"].get("FunctionVersion")) == f"{tname}.Version"
                           and "AutoPublishAlias" in tp,
                           f"{cname}: FunctionVersion is the migrate function's published version")
                self.check(tp.get("ReservedConcurrentExecutions") == 1, f"{cname}: one migration at a time (reserved concurrency 1)")
                timeout = self.number(self.prop(target, "Timeout"))
                self.check(timeout is not None and 60 <= timeout <= 900, f"{cname}: migrate Timeout in 60..900 s")
                # CloudFormation waits an hour for an answer by default; bound
                # it, leaving migrate its whole Timeout and a margin (cold
                # start, the answer's PUT).
                service_timeout = self.number(custom["Properties"].get("ServiceTimeout"))
                self.check(service_timeout is not None and timeout is not None
                           and timeout + 60 <= service_timeout <= 3600,
                           f"{cname}: ServiceTimeout ({service_timeout}) covers migrate Timeout ({timeout}) + 60 s, at most 3600")
            deps = custom.get("DependsOn", [])
            self.check("DbProxyTargetGroup" in (deps if isinstance(deps, list) else [deps]), f"{cname}: waits for the proxy's target")

        # Tokens bound to their issuer (issue 13): an IdP's keys may sign its
        # other tenants' tokens, so a JWKS is refused at deploy without JwtIssuer.
        jwks_rules = [r for r in (self.doc.get("Rules") or {}).values()
                      if {"JwksUrl", "JwksJson"} <= refs(r.get("RuleCondition"))
                      and any("JwtIssuer" in refs(a.get("Assert")) for a in r.get("Assertions", []))]
        self.check(len(jwks_rules) == 1, "Rules: JwksUrl or JwksJson requires JwtIssuer")

        # Alarms and outputs docs/operations.md and docs/deploy.md promise.
        metrics = {a["Properties"].get("MetricName") for a in self.of_type("AWS::CloudWatch::Alarm").values()}
        for m in ("Errors", "ApproximateAgeOfOldestMessage", "5xx"):
            self.check(m in metrics, f"an alarm on {m}")
        outputs = set(self.doc.get("Outputs", {}))
        self.check(any(a["Properties"].get("MetricName") == "Errors"
                       and any(ref_name(d.get("Value")) == "IngestFunction" for d in a["Properties"].get("Dimensions", []))
                       for a in self.of_type("AWS::CloudWatch::Alarm").values()),
                   "an alarm on the ingest function's Errors")
        for o in ("ApiUrl", "QueueUrl", "TasksTableName", "ProxyEndpoint", "IngestBucket", "IngestsTable"):
            self.check(o in outputs, f"output {o}")
        # Slow-statement lines carry no bind values (query vectors, filters).
        for name, group in self.of_type("AWS::RDS::DBParameterGroup").items():
            params = group.get("Properties", {}).get("Parameters", {})
            for p in ("log_parameter_max_length", "log_parameter_max_length_on_error"):
                self.check(str(params.get(p)) == "0", f"{name}: {p} = 0 (no bind values in the logs)")
        # Its description says the functions' login: the value must be it.
        user = self.doc.get("Outputs", {}).get("DatabaseUser", {}).get("Value")
        self.check(isinstance(user, Tagged) and user.tag == "!FindInMap"
                   and list(user.value) == ["Db", "Settings", "FunctionsUser"],
                   "output DatabaseUser is the functions' login (Db.Settings.FunctionsUser)")


    # ------------------------------------------------- completion callbacks
    def check_callback_queue(self, name: str, fn: dict, props: dict, queue: dict, queues: dict, by_queue: dict) -> None:
        """CallbackQueue: its redrive spends exactly the function's retry
        delays, which span >= 24 h; messages outlive them; its DLQ waits for
        an operator and has an alarm."""
        qp = queue.get("Properties", {})
        redrive = qp.get("RedrivePolicy", {})
        dlq = ref_name(redrive.get("deadLetterTargetArn"))
        mrc = redrive.get("maxReceiveCount")
        raw = self.env(fn).get("CALLBACK_RETRY_DELAYS_SECS")
        try:
            delays = [int(x) for x in str(raw).split(",")] if isinstance(raw, str) else None
        except ValueError:
            delays = None
        self.check(delays is not None and all(0 <= d <= SQS_MAX_VISIBILITY for d in delays),
                   f"{name}: CALLBACK_RETRY_DELAYS_SECS is a literal list of delays of 0..{SQS_MAX_VISIBILITY} s "
                   f"(ChangeMessageVisibility's bound): {raw!r}")
        delays = delays or []
        self.check(isinstance(mrc, int) and mrc == len(delays) + 1,
                   f"CallbackQueue: maxReceiveCount ({mrc}) = 1 attempt + the {len(delays)} retry delays")
        span = sum(delays)
        self.check(span >= CALLBACK_RETRY_SPAN,
                   f"CallbackQueue: the retries span >= {CALLBACK_RETRY_SPAN} s (DESIGN.md: at least 24 hours): {span}")
        retention = self.number(qp.get("MessageRetentionPeriod", 345600))
        vis = self.number(qp.get("VisibilityTimeout", 30)) or 0
        attempts = mrc if isinstance(mrc, int) else 0
        self.check(retention is not None and retention >= span + vis * attempts,
                   f"CallbackQueue: MessageRetentionPeriod ({retention}) outlives the retries ({span} s + the attempts)")
        self.check(dlq in queues and dlq != "CallbackQueue", "CallbackQueue: RedrivePolicy.deadLetterTargetArn is a queue of the template")
        self.check(not by_queue.get(dlq), f"{dlq}: no consumer (failed deliveries wait for an operator)")
        if dlq in queues:
            dlq_retention = self.number(queues[dlq].get("Properties", {}).get("MessageRetentionPeriod", 345600))
            self.check(dlq_retention is not None and dlq_retention >= 14 * 86400, f"{dlq}: keeps messages 14 days")
            self.check(any(a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
                           and any(ref_name(d.get("Value")) == dlq for d in a["Properties"].get("Dimensions", []))
                           and a["Properties"].get("AlarmActions") is not None
                           for a in self.of_type("AWS::CloudWatch::Alarm").values()),
                       f"{dlq}: an alarm on its depth (ApproximateNumberOfMessagesVisible), to the alarm topic")
        # The stream's invocations share the reserved concurrency: SQS polls
        # must not be throttled (a throttled receive still counts).
        max_conc = self.number(props.get("ScalingConfig", {}).get("MaximumConcurrency"))
        reserved = self.number(fn.get("Properties", {}).get("ReservedConcurrentExecutions"))
        self.check(max_conc is not None and reserved is not None and max_conc < reserved,
                   f"{name}: the retries' MaximumConcurrency ({max_conc}) < reserved concurrency ({reserved}), leaving room for the stream")

    def check_callbacks(self, functions: dict) -> None:
        """The callback function: outside the VPC, no table access, the
        webhook secret and CallbackQueue alone, the tasks stream filtered by
        the one pattern; nobody else reads the webhook secret."""
        name = CALLBACK_FUNCTION
        fn = functions.get(name)
        self.check(fn is not None, f"{name}: in the template (completion callbacks)")
        tables = set(self.of_type("AWS::DynamoDB::Table"))
        queues = {"CallbackQueue", "CallbackDeadLetterQueue"}
        for other, ofn in functions.items():
            if other == name:
                continue
            touched = mentions(ofn.get("Properties", {}).get("Policies")) | mentions(self.env(ofn))
            self.check(not (touched & (WEBHOOK_SECRET_NAMES | queues)),
                       f"{other}: no access to the webhook secret or the callback queues ({name}'s alone)")
        for fname, ofn in functions.items():
            # A listed host skips https and the address check: the local
            # stack's receivers only, never a deployment.
            self.check("CALLBACK_ALLOW_HOSTS" not in self.env(ofn) and "CALLBACK_ALLOW_HOSTS" not in self.globals.get("Environment", {}).get("Variables", {}),
                       f"{fname}: no CALLBACK_ALLOW_HOSTS (it turns the callback URL guard off for its hosts)")
        tasks = self.res.get("TasksTable", {}).get("Properties", {})
        self.check(tasks.get("StreamSpecification") == {"StreamViewType": "NEW_AND_OLD_IMAGES"},
                   "TasksTable: StreamSpecification NEW_AND_OLD_IMAGES (the callbacks read both images)")
        secret = self.res.get("WebhookSecret", {})
        cond = self.doc.get("Conditions", {}).get("CreateWebhookSecret")
        self.check(secret.get("Type") == "AWS::SecretsManager::Secret" and secret.get("Condition") == "CreateWebhookSecret"
                   and "GenerateSecretString" in secret.get("Properties", {})
                   and isinstance(cond, Tagged) and cond.tag == "!Equals" and "WebhookSecretArn" in refs(cond.value)
                   and self.params.get("WebhookSecretArn", {}).get("Default") == "",
                   "WebhookSecret: created (a generated placeholder) unless the WebhookSecretArn parameter names one")
        self.check("WebhookSecretArn" in self.doc.get("Outputs", {}), "output WebhookSecretArn")
        if fn is None:
            return
        fp = fn.get("Properties", {})
        env = self.env(fn)
        self.check("VpcConfig" not in fp, f"{name}: no VpcConfig (it calls the internet; the VPC has no NAT)")
        self.check(fn.get("Metadata", {}).get("BuildProperties", {}).get("Binary") == "callback", f"{name}: binary callback")
        # Only inline statements: no SAM policy template or managed policy
        # that would bring a table or a queue of its own.
        policies = fp.get("Policies", []) or []
        self.check(all(isinstance(p, dict) and set(p) == {"Statement"} for p in policies),
                   f"{name}: inline policy statements only (no policy templates or managed policies)")
        wanted = {"secretsmanager:GetSecretValue": WEBHOOK_SECRET_NAMES,
                  "sqs:SendMessage": {"CallbackQueue"}, "sqs:ChangeMessageVisibility": {"CallbackQueue"}}
        granted = set()
        for st in self.statements(fn):
            names = mentions(st.get("Resource"))
            for action in as_list(st.get("Action")):
                granted.add(action)
                self.check(action in wanted and bool(names) and names <= wanted[action],
                           f"{name}: {action} only on {sorted(wanted.get(action, ['nothing']))}: {sorted(map(str, names))}")
            self.check(not any(str(a).startswith("dynamodb:") for a in as_list(st.get("Action"))),
                       f"{name}: no table actions (it reads the stream through its event source)")
        self.check(granted == set(wanted), f"{name}: may {sorted(wanted)}: {sorted(granted)}")
        self.check(not (mentions(env) & tables) and not (mentions(policies) & tables),
                   f"{name}: names no table in its variables or policies")
        self.check(ref_name(env.get("CALLBACK_QUEUE_URL")) == "CallbackQueue", f"{name}: CALLBACK_QUEUE_URL is CallbackQueue")
        self.check(mentions(env.get("WEBHOOK_SECRET_ARN")) == WEBHOOK_SECRET_NAMES
                   and not any(k in env for k in ("WEBHOOK_SECRET", "WEBHOOK_SECRETS")),
                   f"{name}: WEBHOOK_SECRET_ARN is WebhookSecret or the WebhookSecretArn parameter (by ARN, never the value)")
        timeout = self.number(self.prop(fn, "Timeout"))
        call_ms = self.number(env.get("CALLBACK_TIMEOUT_MS"))
        self.check(timeout is not None and call_ms is not None and 0 < call_ms / 1000 <= timeout / 2,
                   f"{name}: CALLBACK_TIMEOUT_MS ({call_ms}) within half its Timeout ({timeout})")
        events = fp.get("Events") or {}
        streams = [(k, e.get("Properties", {})) for k, e in events.items() if e.get("Type") == "DynamoDB"]
        self.check(sorted(e.get("Type") for e in events.values()) == ["DynamoDB", "SQS"],
                   f"{name}: two events, the tasks stream and CallbackQueue: {sorted(str(e.get('Type')) for e in events.values())}")
        for other, ofn in functions.items():
            if other != name:
                self.check(not any(e.get("Type") == "DynamoDB" for e in (ofn.get("Properties", {}).get("Events") or {}).values()),
                           f"{other}: no stream event (the callbacks' alone)")
        for ev_name, props in streams:
            where = f"{name}.{ev_name}"
            self.check(set(props) <= DYNAMODB_EVENT_PROPERTIES, f"{where}: DynamoDB event properties are spelled as SAM knows them: {sorted(props)}")
            self.check(props.get("Stream") == Tagged("!GetAtt", "TasksTable.StreamArn"), f"{where}: Stream is TasksTable.StreamArn")
            self.check(props.get("StartingPosition") == "LATEST", f"{where}: StartingPosition LATEST")
            self.check(props.get("FunctionResponseTypes") == ["ReportBatchItemFailures"], f"{where}: FunctionResponseTypes [ReportBatchItemFailures]")
            self.check(props.get("BisectBatchOnFunctionError") is True, f"{where}: BisectBatchOnFunctionError (a bad record fails alone)")
            retries = self.number(props.get("MaximumRetryAttempts"))
            age = self.number(props.get("MaximumRecordAgeInSeconds"))
            self.check((retries is not None and 0 <= retries <= 10000) or (age is not None and 60 <= age <= 86400),
                       f"{where}: a finite MaximumRetryAttempts or MaximumRecordAgeInSeconds (a bad record does not block its shard for 24 h)")
            on_failure = (props.get("DestinationConfig") or {}).get("OnFailure") or {}
            self.check(on_failure.get("Type") == "SQS" and ref_name(on_failure.get("Destination")) == "CallbackDeadLetterQueue",
                       f"{where}: DestinationConfig.OnFailure is CallbackDeadLetterQueue with Type SQS (SAM adds its SendMessage)")
            filters = (props.get("FilterCriteria") or {}).get("Filters")
            pattern = None
            if isinstance(filters, list) and len(filters) == 1 and isinstance(filters[0], dict) and set(filters[0]) == {"Pattern"} \
                    and isinstance(filters[0]["Pattern"], str):
                try:
                    pattern = json.loads(filters[0]["Pattern"])
                except ValueError:
                    pattern = None
            self.check(pattern == CALLBACK_FILTER,
                       f"{where}: FilterCriteria is the one JSON pattern of ended tasks with a callback URL: {filters!r}")


def check(doc: dict) -> Checker:
    c = Checker(doc)
    c.run()
    return c


def load(path: Path) -> dict:
    return yaml.load(path.read_text(), Loader=CfnLoader)


def self_test(doc: dict) -> int:
    """Each break must make at least one rule fail."""

    def worker_event(d):
        return d["Resources"]["WorkerFunction"]["Properties"]["Events"]["Queue"]["Properties"]

    def worker(d):
        return d["Resources"]["WorkerFunction"]["Properties"]

    def ingest(d):
        return d["Resources"]["IngestFunction"]["Properties"]

    def ingest_event(d):
        return ingest(d)["Events"]["Queue"]["Properties"]

    def statement(d, fn, sid):
        return next(st for st in d["Resources"][fn]["Properties"]["Policies"][0]["Statement"] if st.get("Sid") == sid)

    def drop_statement(d, fn, sid):
        sts = d["Resources"][fn]["Properties"]["Policies"][0]["Statement"]
        sts.remove(statement(d, fn, sid))

    def writer_connect(d):
        return copy.deepcopy(statement(d, "IngestFunction", "Database"))

    def callback(d):
        return d["Resources"][CALLBACK_FUNCTION]["Properties"]

    def stream_event(d):
        return callback(d)["Events"]["TaskEnded"]["Properties"]

    def callback_env(d):
        return callback(d)["Environment"]["Variables"]

    def pattern_with(d, change):
        pattern = copy.deepcopy(CALLBACK_FILTER)
        change(pattern)
        stream_event(d)["FilterCriteria"]["Filters"][0]["Pattern"] = json.dumps(pattern)

    breaks = {
        "FunctionResponseTypes misspelt": lambda d: worker_event(d).update(FunctionResponseTypes=["ReportBatchItemFailure"]),
        "FunctionResponseType key misspelt": lambda d: worker_event(d).update(FunctionResponseType=worker_event(d).pop("FunctionResponseTypes")),
        "no DLQ": lambda d: d["Resources"]["MatchQueue"]["Properties"].pop("RedrivePolicy"),
        "no DLQ consumer": lambda d: d["Resources"]["DeadLetterFunction"]["Properties"].pop("Events"),
        "the worker consumes the DLQ": lambda d: d["Resources"]["WorkerFunction"]["Properties"]["Events"].update(
            DeadLetters=copy.deepcopy(d["Resources"]["DeadLetterFunction"]["Properties"]["Events"].pop("DeadLetters"))),
        "DLQ consumer may not update tasks": lambda d: d["Resources"]["DeadLetterFunction"]["Properties"]["Policies"][0]["Statement"][0].update(Action="dynamodb:GetItem"),
        "DLQ visibility shorter than its consumer's timeout x 6": lambda d: d["Resources"]["MatchDeadLetterQueue"]["Properties"].pop("VisibilityTimeout"),
        "no alarm on dead letters": lambda d: d["Resources"].pop("DeadLetterAlarm"),
        "no alarm on the DLQ backlog": lambda d: d["Resources"].pop("DeadLetterBacklogAlarm"),
        "worker batch larger than its pool": lambda d: worker_event(d).update(BatchSize=10),
        "worker logs in as the master user": lambda d: worker(d)["Environment"]["Variables"].update(
            DATABASE_URL=Tagged("!Sub", [worker(d)["Environment"]["Variables"]["DATABASE_URL"].value[0],
                                         {"User": Tagged("!FindInMap", ["Db", "Settings", "User"])}])),
        "api may connect as the master user": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Master", "Effect": "Allow", "Action": "rds-db:connect",
             "Resource": Tagged("!Sub", ["arn:dbuser:${User}", {"User": Tagged("!FindInMap", ["Db", "Settings", "User"])}])}),
        "migrate without the functions' login": lambda d: d["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"].pop("FUNCTIONS_DB_SECRET_ARN"),
        "proxy without the functions' login": lambda d: d["Resources"]["DbProxy"]["Properties"]["Auth"].pop(1),
        "proxy without the writer's login": lambda d: d["Resources"]["DbProxy"]["Properties"]["Auth"].pop(2),
        "proxy role may not read the writer's secret": lambda d: d["Resources"]["ProxyRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"].pop(2),
        "migrate without the writer's login": lambda d: d["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"].pop("WRITER_DB_SECRET_ARN"),
        "the writer's login renamed": lambda d: d["Mappings"]["Db"]["Settings"].update(WriterUser="jobmatch_functions"),
        "the api may read the writer's password": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Writer", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": Tagged("!Ref", "WriterDbSecret")}),
        "visibility timeout too short": lambda d: d["Resources"]["MatchQueue"]["Properties"].update(VisibilityTimeout=60),
        "MAX_RECEIVE_COUNT drift": lambda d: d["Resources"]["WorkerFunction"]["Properties"]["Environment"]["Variables"].update(MAX_RECEIVE_COUNT="5"),
        "no MaximumConcurrency": lambda d: worker_event(d).pop("ScalingConfig"),
        "no batching window": lambda d: worker_event(d).pop("MaximumBatchingWindowInSeconds"),
        "route dropped": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Events"].pop("Health"),
        "no TTL": lambda d: d["Resources"]["TasksTable"]["Properties"].pop("TimeToLiveSpecification"),
        "quota buckets kept forever": lambda d: d["Resources"]["QuotaTable"]["Properties"].pop("TimeToLiveSpecification"),
        "api without its quota's burst": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"].pop("QUOTA_BURST"),
        "api may not take from the quota": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"].pop(1),
        "api may read and delete buckets": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"][1].update(
            Action=["dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:Scan"]),
        "the worker may write the quota": lambda d: worker(d)["Policies"][0]["Statement"].append(
            {"Sid": "Quota", "Effect": "Allow", "Action": "dynamodb:UpdateItem", "Resource": Tagged("!GetAtt", "QuotaTable.Arn")}),
        "proxy without TLS": lambda d: d["Resources"]["DbProxy"]["Properties"].update(RequireTLS=False),
        "too many workers for the proxy": lambda d: d["Parameters"]["WorkerConcurrency"].update(Default=100),
        "wildcard resource": lambda d: d["Resources"]["WorkerFunction"]["Properties"]["Policies"][0]["Statement"][0].update(Resource="*"),
        "password in DATABASE_URL": lambda d: d["Resources"]["MigrateFunction"]["Properties"]["Environment"]["Variables"].update(DATABASE_URL="postgres://u:pw@h/db?sslmode=verify-full"),
        "database without snapshot policy": lambda d: d["Resources"]["Database"].pop("DeletionPolicy"),
        "migrations without the function version": lambda d: d["Resources"]["Migrations"]["Properties"].pop("FunctionVersion"),
        "migrations without ServiceTimeout": lambda d: d["Resources"]["Migrations"]["Properties"].pop("ServiceTimeout"),
        "migrations ServiceTimeout shorter than migrate's Timeout": lambda d: d["Resources"]["Migrations"]["Properties"].update(ServiceTimeout=300),
        "database pinned to a minor version": lambda d: d["Parameters"]["DbEngineVersion"].update(Default="17.9"),
        "health without its own throttle": lambda d: d["Resources"]["HttpApi"]["Properties"]["RouteSettings"].pop("GET /health"),
        "legacy throttle as loose as the default": lambda d: d["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["POST /jobs/match/legacy"].update(ThrottlingRateLimit=Tagged("!Ref", "ApiThrottleRate")),
        "throttle for a route that does not exist": lambda d: d["Resources"]["HttpApi"]["Properties"]["RouteSettings"].update({"GET /nope": {"ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 1}}),
        "worker without the model layer": lambda d: worker(d).pop("Layers"),
        "MODEL_DIR not where the layer puts the model": lambda d: worker(d)["Environment"]["Variables"].update(MODEL_DIR="/opt/model"),
        "worker without MODEL_DIR": lambda d: worker(d)["Environment"]["Variables"].pop("MODEL_DIR"),
        "model layer on the api": lambda d: d["Resources"]["ApiFunction"]["Properties"].update(Layers=[Tagged("!Ref", "ModelLayer")]),
        "MODEL_DIR on status": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Environment"]["Variables"].update(MODEL_DIR=MODEL_DIR),
        "worker under one vCPU": lambda d: worker(d).update(MemorySize=512),
        "worker timeout too short for a batch of texts": lambda d: worker(d).update(Timeout=8),
        "a larger text bound in the worker than in the api": lambda d: worker(d)["Environment"]["Variables"].update(MAX_TEXT_WORD_PIECES="20000"),
        "worker cannot hand a task back": lambda d: worker(d)["Policies"][0]["Statement"].pop(1),
        "model layer for x86_64": lambda d: d["Resources"]["ModelLayer"]["Properties"].update(CompatibleArchitectures=["x86_64"]),
        "model layer for another runtime": lambda d: d["Resources"]["ModelLayer"]["Properties"].update(CompatibleRuntimes=["provided.al2"]),
        "model layer not built (no BuildMethod)": lambda d: d["Resources"]["ModelLayer"].pop("Metadata"),
        "model layer from a folder without its Makefile": lambda d: d["Resources"]["ModelLayer"]["Properties"].update(ContentUri=".model"),
        "a JWKS without JwtIssuer": lambda d: d["Rules"].pop("JwksNeedsIssuer"),
        "slow statements logged with their bind values": lambda d: d["Resources"]["DbParameterGroup"]["Properties"]["Parameters"].pop("log_parameter_max_length"),
        "DatabaseUser output names the master user": lambda d: d["Outputs"]["DatabaseUser"].update(
            Value=Tagged("!FindInMap", ["Db", "Settings", "User"])),
        "worker without the cache's MAC key": lambda d: worker(d)["Environment"]["Variables"].pop("CACHE_MAC_KEY_ARN"),
        "the cache's MAC key in a variable": lambda d: worker(d)["Environment"]["Variables"].update(CACHE_MAC_KEY="k" * 64),
        # The writer's login (issue 28).
        "the worker may connect as the writer": lambda d: worker(d)["Policies"][0]["Statement"].append(writer_connect(d)),
        "status may connect as the writer": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Policies"][0]["Statement"].append(writer_connect(d)),
        "the api's DATABASE_URL logs in as the writer": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"].update(
            DATABASE_URL=copy.deepcopy(ingest(d)["Environment"]["Variables"]["WRITER_DATABASE_URL"])),
        "the worker gets WRITER_DATABASE_URL": lambda d: worker(d)["Environment"]["Variables"].update(
            WRITER_DATABASE_URL=copy.deepcopy(ingest(d)["Environment"]["Variables"]["WRITER_DATABASE_URL"])),
        "the writer's login named in status's variables": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Environment"]["Variables"].update(
            DB_USER=WRITER_LOGIN),
        "the ingest connects as the reader": lambda d: statement(d, "IngestFunction", "Database")["Resource"].value[1].update(
            User=Tagged("!FindInMap", ["Db", "Settings", "FunctionsUser"])),
        "the ingest's URL logs in as the master user": lambda d: ingest(d)["Environment"]["Variables"]["WRITER_DATABASE_URL"].value[1].update(
            User=Tagged("!FindInMap", ["Db", "Settings", "User"])),
        "the ingest gets the reader's DATABASE_URL too": lambda d: ingest(d)["Environment"]["Variables"].update(
            DATABASE_URL=copy.deepcopy(worker(d)["Environment"]["Variables"]["DATABASE_URL"])),
        "rds-db:connect as any database user": lambda d: statement(d, "IngestFunction", "Database").update(
            Resource=Tagged("!Sub", "arn:${AWS::Partition}:rds-db:${AWS::Region}:${AWS::AccountId}:dbuser:*/*")),
        "the writer's URL without TLS verification": lambda d: ingest(d)["Environment"]["Variables"]["WRITER_DATABASE_URL"].value.__setitem__(
            0, "postgres://${User}@${DbProxy.Endpoint}:${Port}/${Name}"),
        # The ingest bucket.
        "the worker may put into the ingest bucket": lambda d: worker(d)["Policies"][0]["Statement"].append(
            {"Sid": "Put", "Effect": "Allow", "Action": "s3:PutObject", "Resource": Tagged("!Sub", "${IngestBucket.Arn}/incoming/*")}),
        "status may read incoming objects": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Get", "Effect": "Allow", "Action": "s3:GetObject", "Resource": Tagged("!Sub", "${IngestBucket.Arn}/incoming/*")}),
        "the ingest may put under incoming/": lambda d: statement(d, "IngestFunction", "WriteReports").update(
            Resource=Tagged("!Sub", "${IngestBucket.Arn}/incoming/*")),
        "the ingest may read the whole bucket": lambda d: statement(d, "IngestFunction", "ReadIncoming").update(
            Resource=Tagged("!Sub", "${IngestBucket.Arn}/*")),
        "the ingest may do anything in S3": lambda d: statement(d, "IngestFunction", "ReadIncoming").update(Action="s3:*"),
        "the ingest may read any bucket": lambda d: statement(d, "IngestFunction", "ReadIncoming").update(Resource="arn:aws:s3:::*/*"),
        "ingest bucket without versioning": lambda d: d["Resources"]["IngestBucket"]["Properties"].pop("VersioningConfiguration"),
        "ingest bucket open to public policies": lambda d: d["Resources"]["IngestBucket"]["Properties"]["PublicAccessBlockConfiguration"].update(BlockPublicPolicy=False),
        "ingest bucket without encryption": lambda d: d["Resources"]["IngestBucket"]["Properties"].pop("BucketEncryption"),
        "ingest bucket without its TLS-only policy": lambda d: d["Resources"].pop("IngestBucketPolicy"),
        "ingest bucket's TLS rule on the bucket only": lambda d: d["Resources"]["IngestBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Resource"].pop(1),
        "notifications for the whole bucket": lambda d: d["Resources"]["IngestBucket"]["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0].pop("Filter"),
        "ingest bucket created before its queue policy": lambda d: d["Resources"]["IngestBucket"].pop("DependsOn"),
        "reports kept forever": lambda d: d["Resources"]["IngestBucket"]["Properties"]["LifecycleConfiguration"]["Rules"].pop(0),
        "queue policy for any bucket": lambda d: d["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"]["ArnEquals"].update(
            {"aws:SourceArn": Tagged("!Sub", "arn:${AWS::Partition}:s3:::*")}),
        "queue policy for any account": lambda d: d["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"][0]["Condition"].pop("StringEquals"),
        "queue policy names another bucket than IngestBucket": lambda d: d["Resources"]["IngestBucket"]["Properties"].update(
            BucketName=Tagged("!Sub", "jobmatch-${Stage}-ingest")),
        # The ingest function and its queue.
        "ingest queue without DLQ": lambda d: d["Resources"]["IngestQueue"]["Properties"].pop("RedrivePolicy"),
        "ingest DLQ without its depth alarm": lambda d: d["Resources"].pop("IngestDeadLetterAlarm"),
        "ingest DLQ consumed by the ingest": lambda d: ingest(d)["Events"].update(
            DeadLetters={"Type": "SQS", "Properties": {"Queue": Tagged("!GetAtt", "IngestDeadLetterQueue.Arn"), "BatchSize": 1,
                                                       "FunctionResponseTypes": ["ReportBatchItemFailures"],
                                                       "ScalingConfig": {"MaximumConcurrency": 2}}}),
        "ingest batches of 10 objects": lambda d: ingest_event(d).update(BatchSize=10, MaximumBatchingWindowInSeconds=1),
        "ingest without partial batch failures": lambda d: ingest_event(d).pop("FunctionResponseTypes"),
        "ingest visibility timeout under 6 x its timeout": lambda d: d["Resources"]["IngestQueue"]["Properties"].update(VisibilityTimeout=960),
        "the worker fed by the ingest queue": lambda d: worker(d)["Events"]["Queue"]["Properties"].update(Queue=Tagged("!GetAtt", "IngestQueue.Arn")),
        "ingest without the model layer": lambda d: ingest(d).pop("Layers"),
        "ingest under one vCPU": lambda d: ingest(d).update(MemorySize=1024),
        "ingest cannot continue a large object": lambda d: drop_statement(d, "IngestFunction", "Queue"),
        "ingest without its errors alarm": lambda d: d["Resources"].pop("IngestErrorsAlarm"),
        "no daily expiry": lambda d: ingest(d)["Events"].pop("Expire"),
        "expiry with another input": lambda d: ingest(d)["Events"]["Expire"]["Properties"].update(Input='{"expire":true}'),
        "expiry retention not the parameter": lambda d: ingest(d)["Environment"]["Variables"].update(EXPIRED_RETENTION_DAYS="30"),
        "ingests table without PITR": lambda d: d["Resources"]["IngestsTable"]["Properties"].pop("PointInTimeRecoverySpecification"),
        "ingests table without TTL": lambda d: d["Resources"]["IngestsTable"]["Properties"].pop("TimeToLiveSpecification"),
        "the api may write the ingests table": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Ingests", "Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": Tagged("!GetAtt", "IngestsTable.Arn")}),
        "the ingest may delete ingests": lambda d: statement(d, "IngestFunction", "Ingests")["Action"].append("dynamodb:DeleteItem"),
        "too many ingest instances for the proxy": lambda d: d["Parameters"]["IngestConcurrency"].update(Default=20),
        "no IngestBucket output": lambda d: d["Outputs"].pop("IngestBucket"),
        # The catalogue function (issue 28).
        "no catalogue function": lambda d: d["Resources"].pop("CatalogueFunction"),
        "an admin route on the api": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Events"].update(
            DeleteJob=d["Resources"]["CatalogueFunction"]["Properties"]["Events"].pop("DeleteJob")),
        "a match route on the catalogue": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Events"].update(
            Match=d["Resources"]["ApiFunction"]["Properties"]["Events"].pop("Match")),
        "an admin route dropped": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Events"].pop("GetIngest"),
        "an admin route without the token check": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Events"]["DeleteJob"]["Properties"].update(
            Auth={"Authorizer": "NONE"}),
        "the catalogue without the issuer check": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Environment"]["Variables"].pop("JWT_ISSUER"),
        "the catalogue with a JWKS of its own": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Environment"]["Variables"].update(
            JWT_JWKS_URL="https://example.com/jwks.json"),
        "the catalogue cannot read the JWT secret": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Policies"].pop(1),
        "the catalogue without ADMIN_GROUP": lambda d: d["Resources"]["CatalogueFunction"]["Properties"]["Environment"]["Variables"].pop("ADMIN_GROUP"),
        "the catalogue may read incoming objects": lambda d: statement(d, "CatalogueFunction", "PutIncoming").update(
            Action=["s3:PutObject", "s3:GetObject"]),
        "the catalogue may put reports": lambda d: statement(d, "CatalogueFunction", "PutIncoming").update(
            Resource=Tagged("!Sub", "${IngestBucket.Arn}/reports/*")),
        "the catalogue may update ingests": lambda d: statement(d, "CatalogueFunction", "Ingests")["Action"].append("dynamodb:UpdateItem"),
        "the catalogue connects as the reader": lambda d: statement(d, "CatalogueFunction", "Database")["Resource"].value[1].update(
            User=Tagged("!FindInMap", ["Db", "Settings", "FunctionsUser"])),
        "POST /jobs without its own throttle": lambda d: d["Resources"]["HttpApi"]["Properties"]["RouteSettings"].pop("POST /jobs"),
        "DELETE /jobs/{job_id} as loose as the default": lambda d: d["Resources"]["HttpApi"]["Properties"]["RouteSettings"]["DELETE /jobs/{job_id}"].update(
            ThrottlingBurstLimit=Tagged("!Ref", "ApiThrottleBurst")),
        "too many catalogue instances for the proxy": lambda d: d["Resources"]["CatalogueFunction"]["Properties"].update(ReservedConcurrentExecutions=20),
        "status may read the cache's MAC key": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Mac", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": Tagged("!Ref", "CacheMacKey")}),
        # Cancel and completion callbacks (issue 31).
        "cancel route dropped": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Events"].pop("Cancel"),
        "cancel route on the status function": lambda d: d["Resources"]["StatusFunction"]["Properties"]["Events"].update(
            Cancel=d["Resources"]["ApiFunction"]["Properties"]["Events"].pop("Cancel")),
        "no callback function": lambda d: d["Resources"].pop(CALLBACK_FUNCTION),
        "callback function in the VPC": lambda d: callback(d).update(
            VpcConfig=copy.deepcopy(d["Resources"]["ApiFunction"]["Properties"]["VpcConfig"])),
        "callback may read the tasks table": lambda d: callback(d)["Policies"][0]["Statement"].append(
            {"Sid": "Tasks", "Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": Tagged("!GetAtt", "TasksTable.Arn")}),
        "callback may update tasks (a SAM policy template)": lambda d: callback(d)["Policies"].append(
            {"DynamoDBCrudPolicy": {"TableName": Tagged("!Ref", "TasksTable")}}),
        "callback may send to the match queue": lambda d: statement(d, CALLBACK_FUNCTION, "Retries").update(
            Resource=Tagged("!GetAtt", "MatchQueue.Arn")),
        "callback may delete its queue's messages by hand": lambda d: statement(d, CALLBACK_FUNCTION, "Retries")["Action"].append("sqs:PurgeQueue"),
        "callback may read the cache's MAC key": lambda d: statement(d, CALLBACK_FUNCTION, "WebhookSecret").update(Resource=Tagged("!Ref", "CacheMacKey")),
        "callback cannot delay a retry": lambda d: statement(d, CALLBACK_FUNCTION, "Retries").update(Action="sqs:SendMessage"),
        "the signing secret in a variable": lambda d: callback_env(d).update(WEBHOOK_SECRET="whsec_" + "A" * 44),
        "the api may read the webhook secret": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Policies"][0]["Statement"].append(
            {"Sid": "Webhook", "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": Tagged("!Ref", "WebhookSecret")}),
        "the worker may queue callbacks": lambda d: worker(d)["Policies"][0]["Statement"].append(
            {"Sid": "Cb", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": Tagged("!GetAtt", "CallbackQueue.Arn")}),
        "callback names the tasks table": lambda d: callback_env(d).update(TASKS_TABLE=Tagged("!Ref", "TasksTable")),
        "the guard turned off in AWS": lambda d: callback_env(d).update(CALLBACK_ALLOW_HOSTS="hooks.example.com"),
        "the api's guard turned off in AWS": lambda d: d["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"].update(CALLBACK_ALLOW_HOSTS="10.0.0.5"),
        "webhook secret always created": lambda d: d["Resources"]["WebhookSecret"].pop("Condition"),
        "no WebhookSecretArn output": lambda d: d["Outputs"].pop("WebhookSecretArn"),
        "tasks table without a stream": lambda d: d["Resources"]["TasksTable"]["Properties"].pop("StreamSpecification"),
        "tasks stream of new images only": lambda d: d["Resources"]["TasksTable"]["Properties"]["StreamSpecification"].update(StreamViewType="NEW_IMAGE"),
        "stream filter without the callback URL": lambda d: pattern_with(d, lambda p: p["dynamodb"]["NewImage"].pop("request")),
        "stream filter without cancelled": lambda d: pattern_with(d, lambda p: p["dynamodb"]["NewImage"]["status"]["S"].remove("cancelled")),
        "stream filter on REMOVE too": lambda d: pattern_with(d, lambda p: p["eventName"].append("REMOVE")),
        "stream filter as YAML, not a JSON string": lambda d: stream_event(d)["FilterCriteria"]["Filters"][0].update(Pattern=copy.deepcopy(CALLBACK_FILTER)),
        "a second stream filter": lambda d: stream_event(d)["FilterCriteria"]["Filters"].append({"Pattern": '{"eventName": ["REMOVE"]}'}),
        "stream filter not JSON": lambda d: stream_event(d)["FilterCriteria"]["Filters"][0].update(Pattern="{eventName: [INSERT]}"),
        "stream from TRIM_HORIZON": lambda d: stream_event(d).update(StartingPosition="TRIM_HORIZON"),
        "stream without partial batch failures": lambda d: stream_event(d).pop("FunctionResponseTypes"),
        "stream without bisection": lambda d: stream_event(d).pop("BisectBatchOnFunctionError"),
        "stream retried until the records expire": lambda d: stream_event(d).pop("MaximumRetryAttempts"),
        "stream failures not kept": lambda d: stream_event(d).pop("DestinationConfig"),
        "stream failures to the match DLQ": lambda d: stream_event(d)["DestinationConfig"]["OnFailure"].update(
            Destination=Tagged("!GetAtt", "MatchDeadLetterQueue.Arn")),
        "stream failures without SAM's SendMessage (no Type)": lambda d: stream_event(d)["DestinationConfig"]["OnFailure"].pop("Type"),
        "stream event key misspelt": lambda d: stream_event(d).update(FilterCriterias=stream_event(d).pop("FilterCriteria")),
        "a stream event on the worker": lambda d: worker(d)["Events"].update(TaskEnded=copy.deepcopy(callback(d)["Events"]["TaskEnded"])),
        "retries under 24 hours": lambda d: callback_env(d).update(CALLBACK_RETRY_DELAYS_SECS="5,300,1800,7200,18000,36000,3600"),
        "a delay past SQS's 12 hours": lambda d: callback_env(d).update(CALLBACK_RETRY_DELAYS_SECS="5,300,1800,7200,18000,16000,56000"),
        "redrive count and delays disagree": lambda d: d["Resources"]["CallbackQueue"]["Properties"]["RedrivePolicy"].update(maxReceiveCount=5),
        "delays not a list": lambda d: callback_env(d).update(CALLBACK_RETRY_DELAYS_SECS="5m,1h"),
        "callback queue keeps messages 1 day": lambda d: d["Resources"]["CallbackQueue"]["Properties"].update(MessageRetentionPeriod=86400),
        "callback queue visibility under 6 x its timeout": lambda d: d["Resources"]["CallbackQueue"]["Properties"].update(VisibilityTimeout=60),
        "callback queue without DLQ": lambda d: d["Resources"]["CallbackQueue"]["Properties"].pop("RedrivePolicy"),
        "callback DLQ without its alarm": lambda d: d["Resources"].pop("CallbackDeadLetterAlarm"),
        "callback DLQ consumed": lambda d: callback(d)["Events"]["Retries"]["Properties"].update(
            Queue=Tagged("!GetAtt", "CallbackDeadLetterQueue.Arn")),
        "callback DLQ keeps messages 4 days": lambda d: d["Resources"]["CallbackDeadLetterQueue"]["Properties"].update(MessageRetentionPeriod=345600),
        "callback retries take every reserved instance": lambda d: callback(d)["Events"]["Retries"]["Properties"]["ScalingConfig"].update(MaximumConcurrency=10),
        "a delivery as long as the function's timeout": lambda d: callback_env(d).update(CALLBACK_TIMEOUT_MS="30000"),
        "callback queue unencrypted": lambda d: d["Resources"]["CallbackQueue"]["Properties"].pop("SqsManagedSseEnabled"),
    }
    # A base template that already fails would make every break look caught.
    base = check(doc)
    if base.failures:
        print(f"  the unbroken template fails already: {base.failures}")
        return 1
    caught = 0
    for label, breaker in breaks.items():
        broken = copy.deepcopy(doc)
        breaker(broken)
        result = check(broken)
        if result.failures:
            caught += 1
            print(f"  caught: {label}: {result.failures[0]}")
        else:
            print(f"  MISSED: {label}")
    print(f"{caught} passed, {len(breaks) - caught} failed")
    return 0 if caught == len(breaks) else 1


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("--")]
    path = Path(args[0]) if args else ROOT / "template.yaml"
    doc = load(path)
    if "--self-test" in argv:
        return self_test(doc)
    if "--model-dir" in argv:
        # For build.sh: where the worker looks for the model.
        fn = doc.get("Resources", {}).get("WorkerFunction", {})
        print(fn.get("Properties", {}).get("Environment", {}).get("Variables", {}).get("MODEL_DIR", ""))
        return 0
    result = check(doc)
    for failure in result.failures:
        print(f"FAIL {failure}")
    if hasattr(result, "arithmetic"):
        klass, conns, percent, budget, demand = result.arithmetic
        print(f"connections: {klass} max_connections ~{conns}, proxy {percent:g}% = {budget}; "
              f"functions at full concurrency need {demand:g}")
    print(f"rules: {result.passed} passed, {len(result.failures)} failed")
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env python3
"""Local stand-in for the HttpApi: one base URL, routed exactly as the
`HttpApi` events in template.yaml say (path parameters included). Each request
becomes an API Gateway payload v2.0 event, invoked on `cargo lambda watch`.
A function's routes come with it: CatalogueFunction's (POST /jobs,
GET|DELETE /jobs/{job_id}, GET /ingests/{ingest_id}) go to `catalogue` once
the template has them, beside the more specific /jobs/match... routes.
`gateway.py --routes [METHOD PATH]...` prints the route table, then where
each request given would go, and exits.

Env: JOBMATCH_API_PORT (3000), LAMBDA_URL (http://127.0.0.1:9000, read by lambda_invoke.py).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


from cfn import load_template
from lambda_invoke import InvokeFailed, invoke

ROOT = Path(__file__).resolve().parents[2]
# The port `make up` recorded in API_URL, unless overridden.
PORT = int(os.environ.get("JOBMATCH_API_PORT")
           or urlsplit(os.environ.get("API_URL", "")).port or 3000)
# API Gateway's own limit is 10 MB; above it the function is never called.
MAX_BODY = 10 * 1024 * 1024


# HttpApi's catch-all route: what no other route matches.
DEFAULT_ROUTE = "$default"


class Route:
    def __init__(self, method: str, path: str, function: str):
        self.method = method.upper()
        self.path = path
        self.function = function
        self.route_key = DEFAULT_ROUTE if path == DEFAULT_ROUTE else f"{self.method} {path}"
        self.params = []
        if path == DEFAULT_ROUTE:
            self.regex = re.compile(".*")
            return
        parts = []
        for segment in path.split("/"):
            m = re.fullmatch(r"\{([^}/+]+)\}", segment)
            if m:
                self.params.append(m.group(1))
                parts.append("([^/]+)")
            else:
                parts.append(re.escape(segment))
        self.regex = re.compile("^" + "/".join(parts) + "$")


def load_routes(template: Path) -> list[Route]:
    doc = load_template(template)
    routes = []
    for res in doc.get("Resources", {}).values():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        binary = res.get("Metadata", {}).get("BuildProperties", {}).get("Binary")
        for event in (res.get("Properties", {}).get("Events") or {}).values():
            if event.get("Type") == "HttpApi" and binary:
                props = event["Properties"]
                routes.append(Route(props["Method"], props["Path"], binary))
    # HttpApi prefers the most specific route: literal paths before templated
    # ones, and $default last.
    routes.sort(key=lambda r: (r.path == DEFAULT_ROUTE, len(r.params), -len(r.path)))
    return routes


ROUTES = load_routes(ROOT / "template.yaml")


def find_route(method: str, path: str, routes: list[Route] | None = None):
    for route in ROUTES if routes is None else routes:
        m = route.regex.match(path)
        if m and route.method in (method, "ANY"):
            return route, {k: unquote(v) for k, v in zip(route.params, m.groups())}
    return None, None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "jobmatch-local-gateway"
    # The head and the body go out in two writes: without this, on a
    # kept-alive connection Nagle's algorithm holds the body until the
    # client's delayed ACK (up to 40 ms).
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        sys.stdout.write("gateway: " + (fmt % args) + "\n")
        sys.stdout.flush()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("apigw-requestid", self._request_id)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, obj: dict) -> None:
        self._send(status, [("Content-Type", "application/json")], json.dumps(obj).encode())

    def _handle(self) -> None:
        self._request_id = uuid.uuid4().hex[:16]
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._json(413, {"message": "Request Entity Too Large"})
            return
        body = self.rfile.read(length) if length else b""
        route, params = find_route(self.command, url.path)
        if route is None:
            self._json(404, {"message": "Not Found"})
            return
        event = self._event(route, params, url, body)
        try:
            out = invoke(route.function, event, timeout=300)
        except InvokeFailed as e:
            # A function error: API Gateway answers 500 without the details.
            self.log_message("function %s failed: %s", route.function, e)
            self._json(500, {"message": "Internal Server Error"})
            return
        except (OSError, ValueError) as e:
            self.log_message("invoke %s failed: %s", route.function, e)
            self._json(503, {"message": "Service Unavailable"})
            return
        self._reply(out)

    def _event(self, route: Route, params: dict, url, body: bytes) -> dict:
        headers: dict[str, str] = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = f"{headers[k]},{v}" if k in headers else v
        now = datetime.now(timezone.utc)
        text_types = ("json", "text", "xml", "x-www-form-urlencoded")
        is_text = any(t in headers.get("content-type", "") for t in text_types) or not body
        try:
            body_str = body.decode() if is_text else None
        except UnicodeDecodeError:
            body_str = None
        query: dict[str, str] = {}
        for part in filter(None, url.query.split("&")):
            k, _, v = part.partition("=")
            k, v = unquote(k.replace("+", " ")), unquote(v.replace("+", " "))
            query[k] = f"{query[k]},{v}" if k in query else v
        event = {
            "version": "2.0",
            "routeKey": route.route_key,
            "rawPath": url.path,
            "rawQueryString": url.query,
            "headers": headers,
            "requestContext": {
                "accountId": "000000000000",
                "apiId": "local",
                "domainName": headers.get("host", f"127.0.0.1:{PORT}"),
                "domainPrefix": "local",
                "http": {
                    "method": self.command,
                    "path": url.path,
                    "protocol": self.request_version,
                    "sourceIp": self.client_address[0],
                    "userAgent": headers.get("user-agent", ""),
                },
                "requestId": self._request_id,
                "routeKey": route.route_key,
                "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
                "timeEpoch": int(time.time() * 1000),
            },
            "isBase64Encoded": body_str is None,
        }
        if query:
            event["queryStringParameters"] = query
        if params:
            event["pathParameters"] = params
        if body:
            event["body"] = body_str if body_str is not None else base64.b64encode(body).decode()
        return event

    def _reply(self, out) -> None:
        if not isinstance(out, dict) or "statusCode" not in out:
            # Payload v2.0: a bare value means 200 with that value as JSON.
            self._json(200, out)
            return
        headers = [(k, str(v)) for k, v in (out.get("headers") or {}).items()]
        for k, vs in (out.get("multiValueHeaders") or {}).items():
            headers += [(k, str(v)) for v in vs]
        headers += [("Set-Cookie", c) for c in out.get("cookies") or []]
        body = out.get("body") or ""
        raw = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
        self._send(int(out["statusCode"]), headers, raw)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def __getattr__(self, name: str):
        # Any other method (TRACE, QUERY, ...) is routed, and so 404s, like the
        # HttpApi, instead of http.server's 501.
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


class Server(ThreadingHTTPServer):
    # A thread per connection, not waited for on shutdown.
    daemon_threads = True
    # listen()'s backlog (socketserver's default is 5): a burst of new
    # connections overflows the accept queue and its clients get resets or
    # timeouts. The kernel caps it at net.core.somaxconn.
    request_queue_size = 1024


def print_routes(requests: list[str]) -> None:
    for r in ROUTES:
        print(f"{r.route_key} -> {r.function}")
    for method, path in zip(requests[::2], requests[1::2]):
        route, params = find_route(method.upper(), path)
        print(f"{method.upper()} {path} => "
              + (f"{route.function} ({route.route_key}) {params or ''}" if route else "404"))


def main() -> None:
    if sys.argv[1:2] == ["--routes"]:
        print_routes(sys.argv[2:])
        return
    server = Server(("127.0.0.1", PORT), Handler)
    for r in ROUTES:
        print(f"gateway: {r.route_key} -> {r.function}", flush=True)
    print(f"gateway: listening on http://127.0.0.1:{PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

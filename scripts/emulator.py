#!/usr/bin/env python3
"""keyrotor's emulator launcher: moto's server on 127.0.0.1 with a movable clock.

moto stamps access keys, last-used dates and secrets with its own clock. To
test keys that are "120 days old" the clock must move, so this launcher runs
moto's WSGI app in-process under freezegun (ticking, so time still passes)
and adds one control endpoint beside moto's own API:

    GET  /_keyrotor/clock                      -> {"now": "<RFC 3339>"}
    POST /_keyrotor/clock  {"now": "<RFC 3339>"} moves the clock there
    GET  /_keyrotor/calls                      -> {"iam:CreateAccessKey": N, ...} requests served
    POST /_keyrotor/calls                      the same, and resets the counts
    POST /_keyrotor/faults {"service": "iam", "code": "Throttling", "count": N, "every": K}
    POST /_keyrotor/faults {"rules": [{"service": "dynamodb", "action": "TransactWriteItems",
                                       "code": "TransactionConflict", "rate": 0.3, "seed": 7}, ...]}
                                               injects error answers, per service and action,
                                               in the service's own protocol (see Faults)
    GET  /_keyrotor/faults                     -> {"injected": N, "by_rule": [n, ...]}

AssumeRole is strict here (moto's own accepts any role, existing or not):
a role must exist in the target account, except the
OrganizationAccountAccessRole that Organizations creates in every account it
creates. So "the member role is missing" can be tested as it happens in AWS,
with an AccessDenied answer. `--lenient-assume-role` restores moto's way.

DynamoDB requests are served one at a time. moto applies an update
expression as an unlocked read-modify-write on a threaded server, so two
concurrent `ADD done :one` on one item could lose one (seen: a run counted
199 of 200 results while its per-outcome counters summed to 200), and two
conditional writes could both pass their condition. DynamoDB itself
serialises the writes to an item, and keyrotor's locks and counters rely on
that, so the launcher restores it.

It binds port 0 (the kernel picks a free port, so parallel emulators never
collide), prints one JSON line {"endpoint": "http://127.0.0.1:PORT"} on stdout
once it answers, and exits when its parent process dies (unless --detach), on SIGTERM or SIGINT.
"""

import argparse
import datetime as dt
import io
import json
import os
import random
import re
import signal
import sys
import threading
import time
from http import HTTPStatus
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

from freezegun import freeze_time


def parse_time(text):
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


# Error codes whose default HTTP status is not 400.
FAULT_STATUS = {
    "InternalServerError": 500,
    "InternalError": 500,
    "InternalFailure": 500,
    "ServiceUnavailable": 503,
}

# Default messages, as the services word them.
FAULT_MESSAGES = {
    "Throttling": "Rate exceeded",
    "ThrottlingException": "Rate of requests exceeds the allowed throughput.",
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API."
    ),
    "InternalServerError": "Internal server error",
    "InternalError": "Internal failure. Please try your request again.",
    "InternalFailure": "Internal failure. Please try your request again.",
    "ServiceUnavailable": "Service is unavailable. Please try again later.",
    "TransactionConflict": "Transaction is ongoing for the item",
}

# The `__type` namespace of JSON-protocol services that send one.
JSON_TYPE_PREFIX = {
    "dynamodb": "com.amazonaws.dynamodb.v20120810#",
    "sqs": "com.amazonaws.sqs#",
}

# SQS speaks JSON but keeps its query-protocol codes in an
# `x-amzn-query-error: <code>;<Sender|Receiver>` header, which the SDK reads
# first (awsQueryCompatible): JSON shape name -> query code, where they differ.
SQS_QUERY_CODES = {
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "QueueNameExists": "QueueAlreadyExists",
    "BatchEntryIdsNotDistinct": "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
    "BatchRequestTooLong": "AWS.SimpleQueueService.BatchRequestTooLong",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidBatchEntryId": "AWS.SimpleQueueService.InvalidBatchEntryId",
    "PurgeQueueInProgress": "AWS.SimpleQueueService.PurgeQueueInProgress",
    "QueueDeletedRecently": "AWS.SimpleQueueService.QueueDeletedRecently",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
}

# REST-JSON operations (the action is in the method and path, not the body).
REST_ACTIONS = [
    ("POST", re.compile(r"^/v2/email/outbound-emails/?$"), "SendEmail"),
    ("POST", re.compile(r"^/v2/email/outbound-bulk-emails/?$"), "SendBulkEmail"),
    ("POST", re.compile(r"^/v2/email/identities/?$"), "CreateEmailIdentity"),
    ("GET", re.compile(r"^/v2/email/identities/?$"), "ListEmailIdentities"),
    ("GET", re.compile(r"^/v2/email/identities/[^/]+/?$"), "GetEmailIdentity"),
    ("DELETE", re.compile(r"^/v2/email/identities/[^/]+/?$"), "DeleteEmailIdentity"),
    ("GET", re.compile(r"^/v2/email/account/?$"), "GetAccount"),
]

SCOPE_RE = re.compile(r"Credential=[^/,\s]+/\d{8}/[^/]+/([^/]+)/aws4_request")


class FaultRule:
    """One rule of `POST /_keyrotor/faults` (see `Faults`), validated."""

    KEYS = {"service", "action", "code", "status", "message", "count", "every", "rate", "seed", "after", "item"}

    def __init__(self, spec):
        if not isinstance(spec, dict):
            raise ValueError(f"a rule is a JSON object, not {spec!r}")
        unknown = set(spec) - self.KEYS
        if unknown:
            raise ValueError(f"unknown rule fields: {sorted(unknown)}")
        if not isinstance(spec.get("service"), str) or not spec["service"]:
            raise ValueError(f"a rule needs a service: {spec!r}")
        self.service = spec["service"]
        self.action = spec.get("action")
        self.code = spec.get("code", "Throttling")
        self.status = int(spec.get("status", FAULT_STATUS.get(self.code, 400)))
        self.message = spec.get("message")
        self.after = bool(spec.get("after", False))
        self.item = spec.get("item")
        self.rate = spec.get("rate")
        if self.rate is not None:
            if "every" in spec:
                raise ValueError("a rule has either rate (+ seed) or every, not both")
            self.rate = float(self.rate)
            if not 0.0 <= self.rate <= 1.0:
                raise ValueError(f"rate must be within 0..1: {self.rate}")
            self.random = random.Random(spec.get("seed", 0))
            self.count = spec.get("count")  # None: no cap
        else:
            if "seed" in spec:
                raise ValueError("seed goes with rate")
            self.count = spec.get("count", 1)
            self.every = max(1, int(spec.get("every", 1)))
        self.seen = 0
        self.sent = 0

    def matches(self, service, action):
        return self.service == service and (self.action is None or self.action == action)

    def fires(self):
        """Called (under the lock) for each request this rule matches, in order."""
        if self.count is not None and self.sent >= self.count:
            return False
        self.seen += 1
        if self.rate is not None:
            fire = self.random.random() < self.rate
        else:
            fire = self.seen % self.every == 0
        if fire:
            self.sent += 1
        return fire


class Faults:
    """Injected error answers, for retry and failure tests.

    `POST /_keyrotor/faults` takes one rule or `{"rules": [rule, ...]}`
    (`{}` or `{"rules": []}` clears them, and any POST resets the counters):

        {"service": "dynamodb",          # SigV4 credential-scope service: iam, sts,
                                         #   dynamodb, sns, ses (SESv2), sqs, secretsmanager...
         "action": "TransactWriteItems", # optional exact action; absent: any action
         "code": "TransactionConflict",  # the error code answered (default Throttling)
         "status": 400,                  # optional; default 500 for InternalServerError,
                                         #   InternalError, InternalFailure, 503 for
                                         #   ServiceUnavailable, 400 otherwise
         "count": 10, "every": 2,        # every 2nd matching request, until 10 sent
                                         #   (defaults: count 1, every 1), or
         "rate": 0.3, "seed": 7,         # each matching request with probability 0.3,
                                         #   from random.Random(seed): the same requests
                                         #   in the same order get the same faults;
                                         #   "count" is then an optional cap
         "after": false,                 # see below
         "message": "...",               # optional; default: the service's wording
         "item": 1}                      # TransactionConflict only: which item of the
                                         #   transaction conflicted (default 1, or 0 for
                                         #   a one-item transaction)

    Rules are checked in order; the first that fires answers, and the rules
    after it do not see that request. `GET /_keyrotor/faults` returns
    `{"injected": total, "by_rule": [n, ...]}`.

    The action is read where the service's protocol puts it: the
    `X-Amz-Target` header (`DynamoDB_20120810.UpdateItem`,
    `secretsmanager.GetSecretValue`, `AmazonSQS.SendMessage`: JSON
    protocols), the `Action` form field (`Action=Publish`: IAM, STS, SNS,
    query protocol), or the method and path for SESv2's REST-JSON
    (`POST /v2/email/outbound-emails` is `SendEmail`, see REST_ACTIONS).
    The answer is in the same protocol, so the SDK parses the code: query
    XML `<ErrorResponse>`, JSON `{"__type": ...}` (DynamoDB's namespaced
    `com.amazonaws.dynamodb.v20120810#...`; SQS's also with the
    `x-amzn-query-error` header its SDK reads, see SQS_QUERY_CODES), or
    REST-JSON with an `x-amzn-ErrorType` header. On DynamoDB, `TransactionConflict` answers
    what DynamoDB does when another transaction holds an item: for a
    Transact* action `TransactionCanceledException` with one
    `CancellationReasons` entry per `TransactItems` entry (`TransactionConflict`
    at `item`, `None` elsewhere); for a single-item action
    `TransactionConflictException`.

    By default an injected error does not reach moto: it models a request
    AWS rejected before applying anything (throttled, failed early), so
    there is no side effect. `"after": true` models the other case, a
    request that was applied but whose answer was lost (a 5xx or timeout
    after the write): the request goes to moto first, and its answer is
    replaced by the error."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []

    def set(self, body):
        """Replaces the rules with those of a POST body (raises ValueError)."""
        if not isinstance(body, dict):
            raise ValueError("the body is a rule or {\"rules\": [...]}")
        if "rules" in body:
            if set(body) != {"rules"} or not isinstance(body["rules"], list):
                raise ValueError("{\"rules\": [...]} takes a list and nothing else")
            specs = body["rules"]
        else:
            specs = [body] if body else []
        rules = [FaultRule(spec) for spec in specs]
        with self.lock:
            self.rules = rules

    def counts(self):
        with self.lock:
            by_rule = [rule.sent for rule in self.rules]
        return {"injected": sum(by_rule), "by_rule": by_rule}

    def take(self, environ):
        """The rule that answers this request, or None; (rule, request)."""
        if not self.rules:
            return None
        service = request_service(environ)
        if service is None or not any(rule.service == service for rule in self.rules):
            return None
        request = describe_request(environ, service)
        with self.lock:
            for rule in self.rules:
                if rule.matches(service, request["action"]) and rule.fires():
                    return rule, request, rule.sent
        return None


class Calls:
    """Requests served, by `service:Action` (`GET /_keyrotor/calls`; a POST
    resets them): what a run costs in AWS calls, counted where AWS would
    count them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {}

    def count(self, environ):
        service = request_service(environ)
        if service is None:
            return
        action = describe_request(environ, service).get("action") or "?"
        with self.lock:
            name = f"{service}:{action}"
            self.counts[name] = self.counts.get(name, 0) + 1

    def snapshot(self, reset=False):
        with self.lock:
            counts = dict(self.counts)
            if reset:
                self.counts = {}
        return counts


def request_service(environ):
    """The SigV4 credential-scope service of a request (header or presigned)."""
    match = SCOPE_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if match:
        return match.group(1)
    credential = parse_qs(environ.get("QUERY_STRING", "")).get("X-Amz-Credential")
    if credential:
        parts = credential[0].split("/")
        if len(parts) >= 4:
            return parts[3]
    return None


def read_body(environ):
    """The request body, left in place for moto: wsgi.input is re-wrapped
    with the bytes read and CONTENT_LENGTH set to their length."""
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    length = environ.get("CONTENT_LENGTH")
    if length:
        body = stream.read(int(length))
    elif environ.get("wsgi.input_terminated"):
        body = stream.read()
    else:
        body = b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def describe_request(environ, service):
    """{"service", "protocol": json|query|rest-json, "action", "body"}."""
    target = environ.get("HTTP_X_AMZ_TARGET")
    content_type = environ.get("CONTENT_TYPE", "")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    request = {"service": service, "content_type": content_type, "body": b""}
    if target:
        request["protocol"] = "json"
        request["action"] = target.rsplit(".", 1)[-1]
        request["body"] = read_body(environ)
    elif "x-www-form-urlencoded" in content_type or "Action" in query:
        request["protocol"] = "query"
        request["body"] = read_body(environ)
        form = parse_qs(request["body"].decode("utf-8", "replace"))
        request["action"] = (form.get("Action") or query.get("Action") or [None])[0]
    else:
        request["protocol"] = "rest-json"
        method, path = environ.get("REQUEST_METHOD", "GET"), environ.get("PATH_INFO", "")
        request["action"] = next(
            (action for m, path_re, action in REST_ACTIONS if m == method and path_re.match(path)),
            None,
        )
    return request


def fault_answer(rule, request, n):
    """The error answer (status line, headers, body) in the request's protocol."""
    code, status = rule.code, rule.status
    message = rule.message or FAULT_MESSAGES.get(code, f"Injected {code} (keyrotor emulator)")
    request_id = f"keyrotor-fault-{n}"
    reason = status_phrase(status)
    status_line = f"{status} {reason}"
    if request["protocol"] == "json":
        extra = {}
        if request["service"] == "dynamodb" and code == "TransactionConflict":
            if request["action"].startswith("Transact"):
                try:
                    items = len(json.loads(request["body"] or b"{}").get("TransactItems") or [])
                except ValueError:
                    items = 0
                items = max(items, 1)
                at = min(rule.item if rule.item is not None else 1, items - 1)
                reasons = [{"Code": "None"} for _ in range(items)]
                reasons[at] = {"Code": "TransactionConflict", "Message": message}
                codes = ", ".join(r["Code"] for r in reasons)
                code = "TransactionCanceledException"
                message = (
                    "Transaction cancelled, please refer cancellation reasons "
                    f"for specific reasons [{codes}]"
                )
                extra = {"CancellationReasons": reasons}
            else:
                code = "TransactionConflictException"
        if request["service"] == "sqs":
            shapes = {query: shape for shape, query in SQS_QUERY_CODES.items()}
            query_code = SQS_QUERY_CODES.get(code, code)
            code = shapes.get(code, code)
            kind = "Receiver" if status >= 500 else "Sender"
            extra_headers = [("x-amzn-query-error", f"{query_code};{kind}")]
        else:
            extra_headers = []
        error_type = JSON_TYPE_PREFIX.get(request["service"], "") + code
        # DynamoDB words it "Message" for TransactionCanceledException,
        # "message" elsewhere; the SDK reads both.
        key = "Message" if extra else "message"
        body = json.dumps({"__type": error_type, key: message, **extra}).encode()
        content_type = request["content_type"]
        if not content_type.startswith("application/x-amz-json"):
            content_type = "application/x-amz-json-1.0"
        headers = [("Content-Type", content_type), ("x-amzn-ErrorType", error_type), *extra_headers]
    elif request["protocol"] == "query":
        kind = "Receiver" if status >= 500 else "Sender"
        body = (
            f"<ErrorResponse><Error><Type>{kind}</Type><Code>{xml_escape(code)}</Code>"
            f"<Message>{xml_escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        ).encode()
        headers = [("Content-Type", "text/xml")]
    else:
        body = json.dumps({"message": message}).encode()
        headers = [("Content-Type", "application/json"), ("x-amzn-ErrorType", code)]
    headers += [("x-amzn-RequestId", request_id), ("Content-Length", str(len(body)))]
    return status_line, headers, body


def status_phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def make_assume_role_strict():
    import re

    from moto.iam.models import iam_backends
    from moto.sts.exceptions import STSClientError
    from moto.sts.models import STSBackend

    lenient = STSBackend.assume_role
    role_arn_re = re.compile(r"^arn:(aws[a-z-]*):iam::(\d{12}):role/(?:.*/)?([\w+=,.@-]+)$")

    def assume_role(self, *args, **kwargs):
        role_arn = kwargs.get("role_arn") or args[2]
        match = role_arn_re.match(role_arn)
        if match and match.group(3) != "OrganizationAccountAccessRole":
            partition, account, name = match.groups()
            roles = iam_backends[account][partition].roles.values()
            if not any(role.name == name for role in roles):
                raise STSClientError(
                    "AccessDenied",
                    f"User is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                )
        return lenient(self, *args, **kwargs)

    STSBackend.assume_role = assume_role


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--start", help="initial clock time (RFC 3339); default: now")
    parser.add_argument("--ready-file", help="also write the ready JSON line to this file")
    parser.add_argument("--lenient-assume-role", action="store_true",
                        help="let AssumeRole succeed for roles that do not exist (moto's default)")
    parser.add_argument("--detach", action="store_true",
                        help="keep running after the parent exits (scripts/emulator-start)")
    args = parser.parse_args()

    start = parse_time(args.start) if args.start else dt.datetime.utcnow()
    # Real monotonic timers (socket timeouts, thread waits) must keep working.
    clock = freeze_time(start, tick=True, ignore=["threading", "queue", "selectors", "socketserver", "werkzeug"]).start()

    # Imported after the clock is frozen so every module sees the fake one.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    if not args.lenient_assume_role:
        make_assume_role_strict()
    moto_app = DomainDispatcherApplication(create_backend_app)
    clock_lock = threading.Lock()
    dynamodb_lock = threading.Lock()
    calls = Calls()
    faults = Faults()

    def app(environ, start_response):
        if environ.get("PATH_INFO") == "/_keyrotor/clock":
            if environ["REQUEST_METHOD"] == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                body = json.loads(environ["wsgi.input"].read(length) or b"{}")
                with clock_lock:
                    clock.move_to(parse_time(body["now"]))
            now = dt.datetime.now(dt.timezone.utc).isoformat().replace("+00:00", "Z")
            payload = json.dumps({"now": now}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if environ.get("PATH_INFO") == "/_keyrotor/faults":
            status = "200 OK"
            if environ["REQUEST_METHOD"] == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                try:
                    faults.set(json.loads(environ["wsgi.input"].read(length) or b"{}"))
                    answer = faults.counts()
                except ValueError as e:
                    status, answer = "400 Bad Request", {"error": str(e)}
            else:
                answer = faults.counts()
            payload = json.dumps(answer).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if environ.get("PATH_INFO") == "/_keyrotor/calls":
            payload = json.dumps(calls.snapshot(reset=environ["REQUEST_METHOD"] == "POST")).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        calls.count(environ)
        # Faults are decided first, outside the DynamoDB lock.
        injected = faults.take(environ)
        if injected is not None:
            rule, request, n = injected
            if rule.after:
                # Applied, then the answer is lost: moto serves the request
                # and its answer is dropped.
                answer = served(environ, lambda *_args, **_kwargs: None)
                try:
                    for _chunk in answer:
                        pass
                finally:
                    if hasattr(answer, "close"):
                        answer.close()
            status, headers, body = fault_answer(rule, request, n)
            start_response(status, headers)
            return [body]
        return served(environ, start_response)

    def served(environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with dynamodb_lock:
                return list(moto_app(environ, start_response))
        return moto_app(environ, start_response)

    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]

    def stop(*_):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    parent = os.getppid()

    def watch_parent():
        while os.getppid() == parent:
            time.sleep(0.5)
        stop()

    if not args.detach:
        threading.Thread(target=watch_parent, daemon=True).start()

    line = json.dumps({"endpoint": f"http://{args.host}:{port}", "pid": os.getpid()})
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write(line + "\n")
    print(line, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())

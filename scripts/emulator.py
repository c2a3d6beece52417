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
    POST /_keyrotor/latency {"latency": "realistic", "jitter": 0.2, "seed": 1, "iam_rps": 5}
                                               sets the waiting latency and IAM's rate limit
                                               (see Latency; `{}` turns both off)
    GET  /_keyrotor/latency                    -> the settings, and the requests delayed and throttled

AssumeRole is strict here (moto's own accepts any role, existing or not):
a role must exist in the target account, except the
OrganizationAccountAccessRole that Organizations creates in every account it
creates. So "the member role is missing" can be tested as it happens in AWS,
with an AccessDenied answer. `--lenient-assume-role` restores moto's way.
A secret scheduled for deletion refuses new values (`PutSecretValue`, and
`CreateSecret` of its name) with InvalidRequestException, as in AWS; moto
stores them. `ListUsers` answers in pages (`MaxItems`, 100 by default, and
`Marker`), as AWS does; moto answers every user at once. SESv2 `GetAccount`,
which moto lacks, answers moto's SES quota (the sandbox's, 1 email a second).

DynamoDB requests are served one at a time. moto applies an update
expression as an unlocked read-modify-write on a threaded server, so two
concurrent `ADD done :one` on one item could lose one (seen: a run counted
199 of 200 results while its per-outcome counters summed to 200), and two
conditional writes could both pass their condition. DynamoDB itself
serialises the writes to an item, and keyrotor's locks and counters rely on
that, so the launcher restores it.

Real waiting, for benchmarks (all off unless asked; without these options
the emulator answers exactly as before):

    --latency realistic        each request sleeps before it is answered, per
                               SigV4 service: iam 100 ms, sts 45, secretsmanager 45,
                               dynamodb 8, sqs 15, sns 15, ses (SESv2; `sesv2=`
                               also accepted) 15, organizations 50; or give
                               `iam=100,sts=45,...` (after a preset, items override it)
    --latency-jitter 0.2       each wait times a uniform factor in [0.8, 1.2] ...
    --latency-seed 7           ... drawn from random.Random(7), in arrival order
    --iam-rps 5                per-account IAM token bucket (5 a second, burst 5):
                               an IAM request finding it empty gets IAM's own
                               `Throttling` / "Rate exceeded" (HTTP 400, query XML)
    --sqs-poll-fix             long polls sleep until the queue changes and re-read
                               the in-flight FIFO groups, instead of moto's busy loop
                               on a stale copy (see make_sqs_polls_prompt)

The waits are sleeps on moto's threaded server, so concurrent requests wait
together, as they do against AWS, and they are taken before the DynamoDB
lock above, so DynamoDB requests overlap their latency too (only moto's own
work is serialised). The account an IAM request is counted against is the
one moto resolves for it: the access key id in its Authorization header,
looked up among every account's IAM keys (AssumeRole's session keys are
registered in the role's account). Throttled requests never reach moto and
are not fault-rule matches, but they are counted in /_keyrotor/calls, like
every request made.

Connections are kept alive between requests (HTTP/1.1), as AWS's endpoints
keep them; werkzeug's development server alone closes each one (see
keep_alive_handler).

moto's server is one Python process, and on a busy bench its CPU, not the
waits, set the pace. Three of its costs that grow with the work and answer
nothing are cut here, each giving the same answers as moto: a transaction
backs up the items it names, not its whole table
(make_transactions_back_up_items); the services and response actions are
worked out once, not per request (make_dispatch_remember); and a delivered
message's retention check reads one queue attribute instead of computing
them all (make_sqs_retention_check_direct). On the 20 accounts x 20 users
bench (one group an account) they took the worker from 104 s to 52 s.

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
ACCESS_KEY_RE = re.compile(r"Credential=([^/,\s]+)/")


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


# `--latency realistic`: what a request to each service waits, in ms, before
# it is answered (us-east-1 from inside AWS, order of magnitude).
LATENCY_PRESETS = {
    "realistic": {
        "iam": 100, "sts": 45, "secretsmanager": 45, "dynamodb": 8, "sqs": 15,
        "sns": 15, "ses": 15, "organizations": 50,
    },
}

# Names accepted for a service besides its SigV4 credential scope.
SERVICE_ALIASES = {"sesv2": "ses", "email": "ses"}


def parse_latency(spec):
    """`realistic` or `iam=100,sts=45,...` (ms; a preset name may start the
    list and later items override it) -> {scope service: seconds}."""
    if isinstance(spec, dict):
        items = [f"{k}={v}" for k, v in spec.items()]
    else:
        items = [part.strip() for part in str(spec or "").split(",") if part.strip()]
    waits = {}
    for item in items:
        if "=" not in item:
            if item not in LATENCY_PRESETS:
                raise ValueError(f"unknown latency preset {item!r} (known: {sorted(LATENCY_PRESETS)})")
            waits.update({k: v / 1000.0 for k, v in LATENCY_PRESETS[item].items()})
            continue
        service, ms = item.split("=", 1)
        service = SERVICE_ALIASES.get(service.strip(), service.strip())
        ms = float(ms)
        if ms < 0:
            raise ValueError(f"a latency is not negative: {item!r}")
        waits[service] = ms / 1000.0
    return waits


class Latency:
    """Waiting latency and IAM's per-account rate limit (`--latency`,
    `--latency-jitter`, `--latency-seed`, `--iam-rps`, `/_keyrotor/latency`).

    Each request to a service with a latency sleeps that long (times a
    uniform factor in [1 - jitter, 1 + jitter] drawn from
    random.Random(seed)) before it is answered. The server is threaded, so
    the waits of concurrent requests overlap, as AWS's do; the wait is taken
    outside the DynamoDB lock. With `iam_rps` R, each account has a token
    bucket of R tokens refilled at R a second: an IAM request that finds it
    empty is answered `Throttling` / "Rate exceeded" (HTTP 400, query XML),
    as IAM does, after its wait, and never reaches moto. The account is the
    one the request's access key belongs to (moto's own lookup: the
    `x-moto-account-id` header, else the key in the Authorization header
    found among the accounts' IAM keys, which include AssumeRole's)."""

    def __init__(self, monotonic):
        self.lock = threading.Lock()
        self.monotonic = monotonic
        self.accounts = {}  # access key id -> account id
        self.set({})

    def set(self, body):
        """Replaces the settings with those of a POST body (raises ValueError):
        {"latency": "realistic" | {"iam": 100, ...}, "jitter": 0.2, "seed": 0,
         "iam_rps": 5}; `{}` turns everything off. Resets the counters."""
        if not isinstance(body, dict):
            raise ValueError("the body is a JSON object")
        unknown = set(body) - {"latency", "jitter", "seed", "iam_rps"}
        if unknown:
            raise ValueError(f"unknown fields: {sorted(unknown)}")
        waits = parse_latency(body.get("latency"))
        jitter = float(body.get("jitter", 0.0))
        if not 0.0 <= jitter < 1.0:
            raise ValueError(f"jitter is a fraction within 0..1: {jitter}")
        rps = body.get("iam_rps")
        rps = float(rps) if rps is not None else None
        if rps is not None and rps <= 0:
            raise ValueError(f"iam_rps must be positive: {rps}")
        with self.lock:
            self.waits, self.jitter, self.rps = waits, jitter, rps
            self.seed = int(body.get("seed", 0))
            self.random = random.Random(self.seed)
            self.buckets = {}  # account -> [tokens, last refill]
            self.waited = 0.0
            self.delayed = 0
            self.throttled = {}

    @property
    def active(self):
        return bool(self.waits) or self.rps is not None

    def snapshot(self):
        with self.lock:
            return {
                "latency_ms": {k: round(v * 1000.0, 3) for k, v in sorted(self.waits.items())},
                "jitter": self.jitter,
                "seed": self.seed,
                "iam_rps": self.rps,
                "delayed": self.delayed,
                "waited_s": round(self.waited, 3),
                "throttled": sum(self.throttled.values()),
                "throttled_by_account": dict(self.throttled),
            }

    def account_of(self, environ):
        header = environ.get("HTTP_X_MOTO_ACCOUNT_ID")
        if header:
            return header
        match = ACCESS_KEY_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
        key = match.group(1) if match else "AKIAEXAMPLE"
        account = self.accounts.get(key)
        if account is None:
            from moto.core import DEFAULT_ACCOUNT_ID
            from moto.iam.models import get_account_id_from

            account = get_account_id_from(key)
            if account != DEFAULT_ACCOUNT_ID:
                # A key's account never changes; an unknown key may yet be made.
                self.accounts[key] = account
        return account

    def admit(self, environ, service):
        """Decides a request on arrival: (seconds to wait, throttled?)."""
        wait = self.waits.get(service, 0.0)
        throttled = False
        account = None
        if service == "iam" and self.rps is not None:
            account = self.account_of(environ)
        with self.lock:
            if wait and self.jitter:
                wait *= 1.0 + self.jitter * (2.0 * self.random.random() - 1.0)
            if account is not None:
                now = self.monotonic()
                tokens, last = self.buckets.get(account, (self.rps, now))
                tokens = min(self.rps, tokens + (now - last) * self.rps)
                if tokens >= 1.0:
                    tokens -= 1.0
                else:
                    throttled = True
                    self.throttled[account] = self.throttled.get(account, 0) + 1
                self.buckets[account] = (tokens, now)
            if wait:
                self.delayed += 1
                self.waited += wait
        return wait, throttled


THROTTLED = {"service": "iam", "code": "Throttling", "message": "Rate exceeded"}


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


def make_deleted_secrets_refuse_values():
    """AWS refuses a new value for a secret scheduled for deletion
    (`PutSecretValue`, and `CreateSecret` of its name) with
    InvalidRequestException until it is restored; moto stores the value in
    the doomed secret. keyrotor relies on the refusal (it does not read the
    secret before it creates a key), so the emulator refuses as AWS does."""
    from moto.secretsmanager.exceptions import InvalidRequestException
    from moto.secretsmanager.models import SecretsManagerBackend

    def doomed(backend, secret_id):
        secret = backend.secrets.get(secret_id) if secret_id else None
        return secret is not None and secret.is_deleted()

    lenient_put = SecretsManagerBackend.put_secret_value
    lenient_create = SecretsManagerBackend.create_secret

    def put_secret_value(self, secret_id, *args, **kwargs):
        if doomed(self, secret_id):
            raise InvalidRequestException(
                "You can't perform this operation on the secret because it was marked for deletion.")
        return lenient_put(self, secret_id, *args, **kwargs)

    def create_secret(self, name, *args, **kwargs):
        if doomed(self, name):
            raise InvalidRequestException(
                "You can't create this secret because a secret with this name is already "
                "scheduled for deletion.")
        return lenient_create(self, name, *args, **kwargs)

    SecretsManagerBackend.put_secret_value = put_secret_value
    SecretsManagerBackend.create_secret = create_secret


def make_iam_list_users_paged():
    """AWS answers `ListUsers` a page at a time (`MaxItems`, 100 by default,
    `IsTruncated` and an opaque `Marker` for the next); moto answers every
    user in one page. keyrotor's producer lists an account page by page (and
    with the fleet's groups shared out, an account of many pages whole
    before it enqueues), so the emulator pages as AWS does."""
    from moto.core.responses import ActionResult
    from moto.iam.responses import IamResponse

    def list_users(self):
        users = list(self.backend.list_users(self._get_param("PathPrefix"), None, None))
        marker = self._get_param("Marker")
        start = int(marker) if marker and marker.isdigit() else 0
        size = int(self._get_param("MaxItems") or 100)
        end = start + size
        result = {"Users": users[start:end], "IsTruncated": end < len(users)}
        if end < len(users):
            result["Marker"] = str(end)
        return ActionResult(result)

    IamResponse.list_users = list_users


def make_sesv2_get_account():
    """SESv2 `GetAccount`, which moto lacks: keyrotor's producer reads the
    account's sending rate from it (`KEYROTOR_SES_FLEET_RATE=auto`). The
    quota is moto's own SES quota, the sandbox's (200 a day, 1 a second),
    as SES's v1 `GetSendQuota` answers it here."""
    from moto.ses.models import ses_backends
    from moto.sesv2.responses import SESV2Response

    def get_account(self):
        quota = ses_backends[self.current_account][self.region].get_send_quota()
        return json.dumps({
            "DedicatedIpAutoWarmupEnabled": False,
            "EnforcementStatus": "HEALTHY",
            "ProductionAccessEnabled": False,
            "SendingEnabled": True,
            "SendQuota": {
                "Max24HourSend": float(quota.max24_hour_send),
                "MaxSendRate": float(quota.max_send_rate),
                "SentLast24Hours": float(quota.sent_last24_hours),
            },
        })

    SESV2Response.get_account = get_account
    # moto's catch-all `/v2/.*` does not route a path this short.
    from moto.sesv2 import urls
    urls.url_paths["{0}/v2/email/account$"] = SESV2Response.dispatch


def make_transactions_back_up_items():
    """moto's TransactWriteItems deep-copies each table it writes to before
    it starts, so that it can put the copy back if the transaction is
    cancelled part-way (its items are applied one by one). That copy grows
    with the table: on the 20 accounts x 20 users bench it was 36 % of the
    emulator's CPU, which is one Python process, and it slowed every
    DynamoDB request queued behind the lock below. DynamoDB requests are
    served one at a time here, so a transaction can instead back up only
    the items it names and put those back when it fails, leaving the table
    as moto's own rollback would. moto's code is left as is: its module
    gets a `copy` whose `deepcopy` passes a whole table through (the
    rollback then reassigns the live table), and the transaction is
    wrapped."""
    import copy
    import types

    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.table import Table

    def deepcopy(obj, memo=None):
        return obj if isinstance(obj, Table) else copy.deepcopy(obj, memo)

    models.copy = types.SimpleNamespace(**{**vars(copy), "deepcopy": deepcopy})
    transact_once = models.DynamoDBBackend.transact_write_items

    def named_items(backend, transact_items):
        """(table, hash, range, deep copy of the item or None) per entry that
        names an item moto could write; moto itself rejects the others."""
        saved = []
        for entry in transact_items:
            try:
                op_type, op = next(iter(entry.items()))
                table = backend.tables[op["TableName"]]
                attrs = op["Item"] if op_type == "Put" else op["Key"]
                hash_value = DynamoType(attrs[table.hash_key_attr])
                range_value = (DynamoType(attrs[table.range_key_attr])
                               if table.range_key_attr is not None else None)
            except (KeyError, TypeError, AttributeError, StopIteration):
                continue
            current = table.get_item(hash_value, range_value)
            saved.append((table, hash_value, range_value, copy.deepcopy(current)))
        return saved

    def put_back(table, hash_value, range_value, item):
        if range_value is not None:
            if item is None:
                table.items.get(hash_value, {}).pop(range_value, None)
                if not table.items.get(hash_value, True):
                    table.items.pop(hash_value, None)
            else:
                table.items[hash_value][range_value] = item
        elif item is None:
            table.items.pop(hash_value, None)
        else:
            table.items[hash_value] = item

    def transact_write_items(self, transact_items):
        saved = named_items(self, transact_items)
        try:
            return transact_once(self, transact_items)
        except BaseException:
            # In reverse, so that an item named twice (which moto refuses
            # part-way) ends as it was first seen.
            for backup in reversed(saved):
                put_back(*backup)
            raise

    models.DynamoDBBackend.transact_write_items = transact_write_items


def make_dispatch_remember():
    """moto's server works out, on every request, what never changes while
    it runs: which services it has (a directory listing with a stat per
    entry, under the dispatcher's one lock) and which actions a response
    class has (`inspect.getmembers`). Together 8 % of the emulator's CPU on
    the 20 accounts x 20 users bench; each is worked out once here."""
    import functools

    import moto.backends as backends
    import moto.core.responses as responses

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules
    names_of = responses.method_names_from_class
    action_names = functools.lru_cache(maxsize=None)(lambda clazz: tuple(names_of(clazz)))
    responses.method_names_from_class = lambda clazz: list(action_names(clazz))


def make_sqs_retention_check_direct():
    """moto checks each message it delivers against the queue's retention
    period by computing every attribute of the queue, approximate message
    counts included: three passes over the whole queue per message
    delivered, 14 % of the emulator's CPU on the 20 accounts x 20 users
    bench. The check reads the one attribute instead; its answer is moto's."""
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self, queue_name, message):
        retention = int(self.get_queue(queue_name).message_retention_period)
        return retention + message.sent_timestamp / 1000 > unix_time()

    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period


def make_sqs_polls_prompt(monotonic, recheck=0.1):
    """`--sqs-poll-fix`: moto's long poll (`SQSBackend.receive_message` with
    a wait) copies the queue's in-flight FIFO groups once, when the poll
    starts, and then loops: while messages are queued but all of them are
    in in-flight groups, its `wait_for_messages(1)` returns at once (the
    queue has messages), so it rescans the queue without pause until the
    wait runs out -- a busy loop holding a core -- and a group freed by a
    DeleteMessage meanwhile stays "in flight" in its copy, so the message
    behind it is delivered only by the next ReceiveMessage. A benchmark of
    FIFO consumers on moto measures that, not its consumers.

    The fix: a long poll is made of moto's own single passes
    (`wait_seconds_timeout=0`, which reads the groups afresh each time);
    between passes it sleeps on a condition that SendMessage, DeleteMessage
    and ChangeMessageVisibility (and their batches) signal, or `recheck`
    seconds at most (visibility timeouts and delays expire on the clock).
    SQS's backend calls are also made one at a time (one lock), as moto's
    unlocked sets and lists of in-flight messages are shared between the
    server's threads. Only the launcher changes; moto's code is left as is."""
    from moto.sqs.models import SQSBackend

    lock = threading.RLock()
    changed = threading.Condition()
    generation = [0]

    def signalling(method):
        def wrapper(self, *args, **kwargs):
            try:
                with lock:
                    return method(self, *args, **kwargs)
            finally:
                with changed:
                    generation[0] += 1
                    changed.notify_all()
        return wrapper

    for name in ("send_message", "delete_message", "change_message_visibility", "purge_queue"):
        setattr(SQSBackend, name, signalling(getattr(SQSBackend, name)))

    receive_once = SQSBackend.receive_message

    def receive_message(self, queue_name, count, wait_seconds_timeout, visibility_timeout,
                        message_attribute_names=None):
        deadline = monotonic() + (wait_seconds_timeout or 0)
        while True:
            with changed:
                seen = generation[0]
            with lock:
                result = receive_once(self, queue_name, count, 0, visibility_timeout,
                                      message_attribute_names)
            remaining = deadline - monotonic()
            if result or remaining <= 0:
                return result
            with changed:
                changed.wait_for(lambda: generation[0] != seen, timeout=min(remaining, recheck))

    SQSBackend.receive_message = receive_message


def keep_alive_handler(base):
    """`base` with HTTP/1.1 keep-alive, as AWS's endpoints keep connections.

    werkzeug's development server answers every request with `Connection:
    close`, because http.server cannot skip a request body the application
    left unread. Each SDK call then opened and tore down its own connection,
    which the worker's CPU figures counted (about 10 system calls a call) and
    which AWS, keeping connections alive, does not charge. This handler reads
    each body in full before the application sees it, so the next request
    line is always where the stream stands, and keeps the connection open. A
    chunked body (never sent by the SDK for these services) still closes it.
    After each answer werkzeug also reads whatever else the client sent,
    which on a kept connection is the next request: once the body is taken,
    that read finds nothing.
    """

    class AfterBody:
        def __init__(self, rfile, handler):
            self.rfile, self.handler = rfile, handler

        def read(self, *args):
            return b"" if self.handler.drained else self.rfile.read(*args)

        def __getattr__(self, name):
            return getattr(self.rfile, name)

    class KeepAliveRequestHandler(base):
        drained = False
        # Headers and body go out in separate writes; on a kept connection
        # Nagle would hold the body until the client's delayed ACK (40 ms).
        disable_nagle_algorithm = True

        def setup(self):
            super().setup()
            self.rfile = AfterBody(self.rfile, self)

        def handle_one_request(self):
            self.drained = False
            super().handle_one_request()

        def make_environ(self):
            environ = super().make_environ()
            self.drained = not environ.get("wsgi.input_terminated")
            if self.drained:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                environ["wsgi.input"] = io.BytesIO(self.rfile.rfile.read(length) if length > 0 else b"")
            return environ

        def send_header(self, keyword, value):
            if self.drained and keyword.lower() == "connection" and value.lower() == "close":
                return
            super().send_header(keyword, value)

    return KeepAliveRequestHandler


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
    parser.add_argument("--latency", metavar="SPEC",
                        help="wait before answering, per service: `realistic` or "
                             "`iam=100,sts=45,...` in ms (see Latency)")
    parser.add_argument("--latency-jitter", type=float, default=0.0, metavar="F",
                        help="each wait times a uniform factor in [1-F, 1+F] (default 0)")
    parser.add_argument("--latency-seed", type=int, default=0,
                        help="seed of the jitter's random.Random (default 0)")
    parser.add_argument("--iam-rps", type=float, metavar="R",
                        help="IAM token bucket per account (R a second, burst R): "
                             "`Throttling` / Rate exceeded when empty")
    parser.add_argument("--sqs-poll-fix", action="store_true",
                        help="long polls sleep and re-read in-flight FIFO groups "
                             "instead of spinning (see make_sqs_polls_prompt)")
    args = parser.parse_args()
    latency_settings = {}
    if args.latency:
        latency_settings["latency"] = args.latency
    if args.latency_jitter:
        latency_settings["jitter"] = args.latency_jitter
    if args.latency_seed:
        latency_settings["seed"] = args.latency_seed
    if args.iam_rps is not None:
        latency_settings["iam_rps"] = args.iam_rps

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
    make_deleted_secrets_refuse_values()
    make_iam_list_users_paged()
    make_sesv2_get_account()
    from freezegun.api import real_monotonic

    make_dispatch_remember()
    make_transactions_back_up_items()
    make_sqs_retention_check_direct()
    if args.sqs_poll_fix:
        make_sqs_polls_prompt(real_monotonic)
    latency = Latency(real_monotonic)
    try:
        latency.set(latency_settings)
    except ValueError as e:
        parser.error(str(e))
    throttled_rule = FaultRule(THROTTLED)
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
        if environ.get("PATH_INFO") == "/_keyrotor/latency":
            status = "200 OK"
            if environ["REQUEST_METHOD"] == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                try:
                    latency.set(json.loads(environ["wsgi.input"].read(length) or b"{}"))
                except ValueError as e:
                    status = "400 Bad Request"
                    payload = json.dumps({"error": str(e)}).encode()
            if status == "200 OK":
                payload = json.dumps(latency.snapshot()).encode()
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        if environ.get("PATH_INFO") == "/_keyrotor/calls":
            payload = json.dumps(calls.snapshot(reset=environ["REQUEST_METHOD"] == "POST")).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        calls.count(environ)
        if latency.active:
            # Decided on arrival; the wait is a sleep, outside the DynamoDB
            # lock, so concurrent requests wait together.
            service = request_service(environ)
            wait, throttled = latency.admit(environ, service) if service else (0.0, False)
            if wait:
                time.sleep(wait)
            if throttled:
                request = describe_request(environ, service)
                status, headers, body = fault_answer(throttled_rule, request, "throttled")
                start_response(status, headers)
                return [body]
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

    server = make_server(args.host, args.port, app, threaded=True,
                         request_handler=keep_alive_handler(MotoRequestHandler))
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

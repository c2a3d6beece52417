#!/usr/bin/env python3
"""keyrotor's emulator launcher: moto's server on 127.0.0.1 with a movable clock.

moto stamps access keys, last-used dates and secrets with its own clock. To
test keys that are "120 days old" the clock must move, so this launcher runs
moto's WSGI app in-process under freezegun (ticking, so time still passes)
and adds one control endpoint beside moto's own API:

    GET  /_keyrotor/clock                      -> {"now": "<RFC 3339>"}
    POST /_keyrotor/clock  {"now": "<RFC 3339>"} moves the clock there
    POST /_keyrotor/faults {"service": "iam", "code": "Throttling", "count": N, "every": K}
                                               injects error answers (see Faults)

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
import json
import os
import signal
import sys
import threading
import time

from freezegun import freeze_time


def parse_time(text):
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


class Faults:
    """Injected error answers, for retry tests: `POST /_keyrotor/faults
    {"service": "iam", "code": "Throttling", "count": 8, "every": 2}` makes
    every 2nd request signed for that service answer that error (HTTP 400,
    the service's query-protocol XML) until 8 have been sent. `{}` clears."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rule = None
        self.seen = 0
        self.sent = 0

    def set(self, rule):
        with self.lock:
            self.rule = rule or None
            self.seen = 0
            self.sent = 0

    def take(self, environ):
        auth = environ.get("HTTP_AUTHORIZATION", "")
        with self.lock:
            rule = self.rule
            if not rule or f"/{rule['service']}/aws4_request" not in auth:
                return None
            if self.sent >= rule.get("count", 1):
                return None
            self.seen += 1
            if self.seen % rule.get("every", 1) != 0:
                return None
            self.sent += 1
        code = rule.get("code", "Throttling")
        body = (
            f'<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>'
            f'<Message>Rate exceeded</Message></Error><RequestId>keyrotor-fault-{self.sent}</RequestId>'
            f'</ErrorResponse>'
        ).encode()
        return "400 Bad Request", body


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
            if environ["REQUEST_METHOD"] == "POST":
                length = int(environ.get("CONTENT_LENGTH") or 0)
                faults.set(json.loads(environ["wsgi.input"].read(length) or b"{}"))
            payload = json.dumps({"injected": faults.sent}).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
            return [payload]
        injected = faults.take(environ)
        if injected is not None:
            status, body = injected
            start_response(status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
            return [body]
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

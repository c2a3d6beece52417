#!/usr/bin/env python3
"""The reference pattern, reproduced for benchmarks only: the AWS sample
"aws-iam-access-key-auto-rotation" (github.com/aws-samples/aws-iam-access-key-auto-rotation),
its key-rotation Lambda function, shipped in that repository as
`Lambda/access_key_auto_rotation.zip`. The call sequence below follows its
`main.py` (`lambda_handler`), `account_scan.py` (`get_actions_for_account`,
`get_actions_for_keys`), `exemption_handler.py` (`get_exemption_group`) and
`key_actions.py` (`execute_actions`, `rotate_key`), as read in public copies
of the unzipped code; none of its code is copied here.

How the sample runs: an account-inventory Lambda lists the organisation and
invokes the rotation Lambda once per account, asynchronously. Each
invocation assumes the member role and works that account's users one after
another: it first scans every user (ListAccessKeys, GetAccessKeyLastUsed per
key, ListUserTags for the owner tag), then executes the queued actions. A
ROTATE is GetCallerIdentity, CreateAccessKey, DescribeSecret (not found) ->
CreateSecret, GetUser, PutResourcePolicy, GetUserPolicy (not found) ->
PutUserPolicy. So a due user costs 11 calls: 3 in the scan, 8 in the
rotation. The Lambda has no retries of its own (boto3's defaults apply, as
in Lambda: legacy mode, which retries throttling up to 4 times) and a
400-second timeout: whatever is not done by then is not done this run.

This script runs one thread per account (its own boto3 session, as each
Lambda has its own), all started together; each thread makes those calls,
sequential over its users, and is cut off when its 400 s are up (the next
call raises, as the Lambda would be killed). It prints, as JSON, for each
account: users listed, rotated, not reached, and seconds taken.

Faithful on purpose:
  * ListUsers is called once and not paginated, as in the sample. AWS
    answers at most 100 users per page by default, and so does keyrotor's
    emulator (moto alone answers them all); the script also keeps only the
    first `--page-size` (100; 0 = no cap): users past the first page are
    never seen, they are "not listed".
  * The scan of every user precedes the first rotation.
With --sender, each account whose users were rotated then gets the
notifier's one email (SES SendEmail from the hub account), as the sample's
rotation function hands it to its notifier function when it ends; that
send is outside the 400 s limit, and the run's time includes it. The
emulator does not throttle SES, so the notifier's retries are not exercised
here (the simulator models them).
Left out:
  * the account-inventory Lambda (Organizations ListAccounts, the invokes),
    the notifier's template from S3 and the Lambda invoke itself, logging;
  * the second AssumeRole into the central account for central secrets
    (off by default in the sample), and secret replication to other regions
    (AddReplicaRegions / ReplicateSecretToRegions);
  * the per-user client construction: the sample builds new boto3 clients in
    several functions per user; here each thread builds its clients once
    (that is local CPU, not AWS calls, and this machine's cores are shared
    with the emulator);
  * WARN, DEACTIVATE and DELETE actions: every benchmark user has one used
    key older than the rotation period, so each is a ROTATE.
The secret is named `Account_{account_id}_User_{user_name}_AccessKey` (the
sample's newer naming, also keyrotor's default), and the policies are
equivalent documents of its templates.

    reference_rotation.py --endpoint URL --accounts ID[,ID...] [--role keyrotor-member]
                          [--timeout 400] [--page-size 100] [--rotation-days 90]
                          [--sender SES_IDENTITY]
"""

import argparse
import datetime as dt
import json
import sys
import threading
import time

import boto3
import botocore.config
import botocore.exceptions

HUB = dict(aws_access_key_id="testing", aws_secret_access_key="testing")


class LambdaTimeout(Exception):
    """The invocation's time is up: the Lambda would have been killed."""


def secret_policy(user_arn):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": user_arn},
        "Action": "secretsmanager:GetSecretValue", "Resource": "*"}]})


def user_policy(secret_arn):
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": secret_arn}]})


def one_account(account_id, args, started, report):
    deadline = started + args.timeout
    out = {"account_id": account_id, "listed": 0, "rotated": 0, "not_reached": 0,
           "timed_out": False, "error": None, "calls": 0, "notified": False}
    rotated_users = []
    kw = dict(endpoint_url=args.endpoint, region_name=args.region)

    def before_call(**_):
        if time.monotonic() >= deadline:
            raise LambdaTimeout()
        out["calls"] += 1

    try:
        hub = boto3.session.Session(**HUB)
        hub_sts = hub.client("sts", **kw)
        hub_sts.meta.events.register("before-call", before_call)
        creds = hub_sts.assume_role(
            RoleArn=f"arn:aws:iam::{account_id}:role/{args.role}",
            RoleSessionName="ASA-IAM-Key-Rotation")["Credentials"]
        session = boto3.session.Session(
            aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"])
        iam, sts, sm = (session.client(s, **kw) for s in ("iam", "sts", "secretsmanager"))
        for client in (iam, sts, sm):
            client.meta.events.register("before-call", before_call)

        # get_actions_for_account: one ListUsers page, the exemption group, the scan.
        users = iam.list_users()["Users"]
        if args.page_size:
            users = users[: args.page_size]
        out["listed"] = len(users)
        try:
            exempt = {u["UserName"] for u in iam.get_group(GroupName=args.exemption_group)["Users"]}
        except botocore.exceptions.ClientError:
            exempt = set()
        now = dt.datetime.now(dt.timezone.utc)
        actions = []
        for user in users:
            name = user["UserName"]
            if name in exempt:
                continue
            keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
            for key in keys:
                try:
                    key["LastUsedDate"] = iam.get_access_key_last_used(
                        AccessKeyId=key["AccessKeyId"])["AccessKeyLastUsed"]["LastUsedDate"]
                except (botocore.exceptions.ClientError, KeyError):
                    key["LastUsedDate"] = None
            iam.list_user_tags(UserName=name)  # the owner tag, for the notifier
            active = [k for k in keys if k["Status"] == "Active"]
            if len(keys) == 1 and active and \
                    active[0]["CreateDate"] + dt.timedelta(days=args.rotation_days) <= now:
                actions.append(name)

        # execute_actions: ROTATE each, in order.
        for name in actions:
            account = sts.get_caller_identity()["Account"]
            new_key = iam.create_access_key(UserName=name)["AccessKey"]
            value = json.dumps(new_key, indent=4, sort_keys=True, default=str)
            secret_name = f"Account_{account}_User_{name}_AccessKey"
            try:
                secret_arn = sm.describe_secret(SecretId=secret_name)["ARN"]
                sm.put_secret_value(SecretId=secret_name, SecretString=value)
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] != "ResourceNotFoundException":
                    raise
                secret_arn = sm.create_secret(Name=secret_name, Description="Auto-created secret",
                                              SecretString=value)["ARN"]
            user_arn = iam.get_user(UserName=name)["User"]["Arn"]
            sm.put_resource_policy(SecretId=secret_name, ResourcePolicy=secret_policy(user_arn),
                                   BlockPublicPolicy=True)
            try:
                iam.get_user_policy(UserName=name, PolicyName="SecretsAccessPolicy")
            except botocore.exceptions.ClientError as e:
                if e.response["Error"]["Code"] != "NoSuchEntity":
                    raise
                iam.put_user_policy(UserName=name, PolicyName="SecretsAccessPolicy",
                                    PolicyDocument=user_policy(secret_arn))
            out["rotated"] += 1
            rotated_users.append(name)
    except LambdaTimeout:
        out["timed_out"] = True
    except Exception as e:  # noqa: BLE001 - the Lambda fails, the account is reported
        out["error"] = f"{type(e).__name__}: {e}"
    out["seconds"] = round(time.monotonic() - started, 3)
    # send_to_notifier: the function ends by invoking the notifier function
    # asynchronously with the account's actions, and the notifier sends one
    # email through SES from the hub account. Outside this function's time
    # limit; the job is done when it has been sent.
    if args.sender and rotated_users and not out["timed_out"] and out["error"] is None:
        try:
            ses = boto3.session.Session(**HUB).client("ses", **kw)
            ses.send_email(
                Source=args.sender,
                Destination={"ToAddresses": [f"account-{account_id}@example.com"]},
                Message={"Subject": {"Data": f"IAM access keys rotated in {account_id}"},
                         "Body": {"Text": {"Data": "\n".join(rotated_users)}}})
            out["notified"] = True
        except botocore.exceptions.ClientError as e:
            out["notice_error"] = str(e)
        out["notified_s"] = round(time.monotonic() - started, 3)
    out["not_reached"] = out["listed"] - out["rotated"]
    out["rotated_users"] = rotated_users
    report.append(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--accounts", required=True, help="comma-separated account ids")
    parser.add_argument("--role", default="keyrotor-member", help="member role to assume")
    parser.add_argument("--timeout", type=float, default=400.0, help="the Lambda's timeout, seconds")
    parser.add_argument("--page-size", type=int, default=100,
                        help="users AWS answers in ListUsers's one page (0: all)")
    parser.add_argument("--rotation-days", type=int, default=90)
    parser.add_argument("--exemption-group", default="IAMKeyRotationExemptionGroup")
    parser.add_argument("--sender", help="the notifier's verified SES sender (no notices without it)")
    args = parser.parse_args()

    accounts = [a for a in args.accounts.split(",") if a]
    report = []
    started = time.monotonic()
    threads = [threading.Thread(target=one_account, args=(a, args, started, report)) for a in accounts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    report.sort(key=lambda r: r["account_id"])
    json.dump({
        "wall_s": round(wall, 3),
        "rotated": sum(r["rotated"] for r in report),
        "listed": sum(r["listed"] for r in report),
        "not_reached": sum(r["not_reached"] for r in report),
        "timed_out_accounts": sum(r["timed_out"] for r in report),
        "failed_accounts": sum(r["error"] is not None for r in report),
        "notified_accounts": sum(r["notified"] for r in report),
        "accounts": report,
    }, sys.stdout)
    print()


if __name__ == "__main__":
    sys.exit(main())

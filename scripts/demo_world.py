#!/usr/bin/env python3
"""Builds the demo's small organisation in the emulator, and plays the
application side (adopting a rotated key). Talks to the emulator through
boto3, over the same wire protocols keyrotor uses.

    demo_world.py seed TODAY          -> prints the member account id
    demo_world.py adopt ACCOUNT USER  -> the app reads its secret and uses the new key
    demo_world.py use-old USER        -> the app signs with the key it had at seed time
    demo_world.py show                -> one `keyrotor rotate --output json` result, in two lines
    demo_world.py subscribe TOPIC     -> a queue subscribed to the results topic (prints its URL);
                                         also verifies the digest sender address in SES
    demo_world.py events QUEUE        -> prints (and removes) the result events on that queue
    demo_world.py emails              -> prints the digest emails the emulator's SES accepted
"""

import datetime as dt
import json
import os
import sys
import urllib.request

import boto3

ENDPOINT = os.environ["AWS_ENDPOINT_URL"]
KEYS_FILE = os.path.join(os.path.dirname(__file__), "..", ".emulator", "demo-app-keys.json")
KW = dict(endpoint_url=ENDPOINT, region_name=os.environ.get("AWS_REGION", "us-east-1"))


def clock(t):
    req = urllib.request.Request(ENDPOINT + "/_keyrotor/clock",
                                 data=json.dumps({"now": t.isoformat()}).encode(), method="POST")
    urllib.request.urlopen(req).read()


def member(account_id, role="keyrotor-member"):
    c = boto3.client("sts", **KW).assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/{role}", RoleSessionName="demo")["Credentials"]
    return dict(aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                aws_session_token=c["SessionToken"], **KW)


def use(key_id, secret):
    boto3.client("iam", aws_access_key_id=key_id, aws_secret_access_key=secret, **KW).list_access_keys()


def seed(today):
    org = boto3.client("organizations", **KW)
    org.create_organization(FeatureSet="ALL")
    account = org.create_account(AccountName="demo-prod", Email="platform@example.com")[
        "CreateAccountStatus"]["AccountId"]
    iam = boto3.client("iam", **member(account, "OrganizationAccountAccessRole"))
    # What the member-role StackSet deploys in every account: the worker's
    # role, the producer's read-only role, and the managed policy the worker
    # attaches to each rotated user (read your own secret, found by its tags).
    trust = json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                       "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]})
    for role in ("keyrotor-member", "keyrotor-member-reader"):
        iam.create_role(RoleName=role, AssumeRolePolicyDocument=trust)
    iam.create_policy(PolicyName="keyrotor-read-own-secret", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadOwnRotatedKey", "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": "arn:aws:secretsmanager:*:*:secret:*",
            "Condition": {"StringEquals": {
                "secretsmanager:ResourceTag/keyrotor:user": "${aws:username}",
                "secretsmanager:ResourceTag/keyrotor:account": "${aws:PrincipalAccount}"}}}]}))

    def user(name, tags=()):
        iam.create_user(UserName=name, Tags=[{"Key": k, "Value": v} for k, v in tags])

    def key(name, age_days, last_used_days_ago=None):
        # An hour more than whole days, so "95 days old" reads as 95 at midnight.
        clock(today - dt.timedelta(days=age_days, hours=1))
        k = iam.create_access_key(UserName=name)["AccessKey"]
        if last_used_days_ago is not None:
            clock(today - dt.timedelta(days=last_used_days_ago))
            use(k["AccessKeyId"], k["SecretAccessKey"])
        keys[name] = [k["AccessKeyId"], k["SecretAccessKey"]]
        return k

    keys = {}
    user("web-frontend", [("Owner", "web@example.com")]); key("web-frontend", 12, 0)
    user("reporting", [("Owner", "data@example.com")]); key("reporting", 86, 1)
    user("ci-deployer", [("Owner", "ci@example.com")]); key("ci-deployer", 95, 1)
    user("legacy-batch", [("Owner", "ops@example.com")]); key("legacy-batch", 140, 2)
    user("forgotten"); key("forgotten", 130)
    user("break-glass", [("keyrotor:exempt", "true")]); key("break-glass", 400, 30)
    clock(today)
    # The applications' own copies of their original keys (the demo's
    # emulator only; keyrotor never sees or prints these).
    with open(KEYS_FILE, "w") as f:
        json.dump(keys, f)
    print(account)


def adopt(account, user_name):
    m = member(account)
    name = f"Account_{account}_User_{user_name}_AccessKey"
    value = json.loads(boto3.client("secretsmanager", **m).get_secret_value(SecretId=name)["SecretString"])
    use(value["AccessKeyId"], value["SecretAccessKey"])
    print(f"{user_name}: the application now signs with {value['AccessKeyId']}")


if __name__ == "__main__":
    if sys.argv[1] == "seed":
        seed(dt.datetime.fromisoformat(sys.argv[2].replace("Z", "+00:00")))
    elif sys.argv[1] == "show":
        r = json.load(sys.stdin)
        done = ", ".join(p["action"] + " " + p["key_id"] for p in r["performed"]) or "-"
        print(f"  {r['user_name']:<13} {r['outcome']:<11} done: {done}")
        print(f"  {'':<13} {r['reason']}")
    elif sys.argv[1] == "subscribe":
        boto3.client("sesv2", **KW).create_email_identity(EmailIdentity=os.environ["KEYROTOR_SENDER"])
        sqs = boto3.client("sqs", **KW)
        url = sqs.create_queue(QueueName="demo-events")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        boto3.client("sns", **KW).subscribe(TopicArn=sys.argv[2], Protocol="sqs", Endpoint=arn,
                                            Attributes={"RawMessageDelivery": "true"})
        print(url)
    elif sys.argv[1] == "events":
        sqs = boto3.client("sqs", **KW)
        events = []
        while True:
            got = sqs.receive_message(QueueUrl=sys.argv[2], MaxNumberOfMessages=10).get("Messages", [])
            if not got:
                break
            for m in got:
                events.append(json.loads(m["Body"]))
                sqs.delete_message(QueueUrl=sys.argv[2], ReceiptHandle=m["ReceiptHandle"])
        for e in sorted(events, key=lambda e: (e["type"], e.get("user_name") or "")):
            if e["type"] == "keyrotor.run.v1":
                print(f"  run summary: {e['done']}/{e['expected']} done, {e['counts']}")
                continue
            done = ", ".join(a["action"] + " " + a["key_id"] for a in e["actions"]) or "-"
            print(f"  {e['user_name']:<13} {e['outcome']:<11} done: {done}")
            print(f"  {'':<13} {e['reason']}")
    elif sys.argv[1] == "emails":
        state = json.load(urllib.request.urlopen(ENDPOINT + "/moto-api/data.json"))
        for m in state.get("ses", {}).get("Message", []):
            to = ", ".join(sum(m.get("destinations", {}).values(), []))
            print(f"  to {to}: {m['subject']}")
    elif sys.argv[1] == "use-old":
        key_id, secret = json.load(open(KEYS_FILE))[sys.argv[2]]
        use(key_id, secret)
        print(f"{sys.argv[2]}: the application still signs with {key_id}")
    elif sys.argv[1] == "adopt":
        adopt(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)

//! What a run costs in AWS calls, counted by the emulator where AWS would
//! count them (`GET /_keyrotor/calls`). The counts are the baseline the scale
//! work measures against. The assertions: one `CreateAccessKey` and one
//! stored secret per rotated user, member sessions reused across messages,
//! and the call budget of a rotation (at most 15 AWS calls per rotated user): each fact read once per
//! message, at most [`IAM_PER_USER`] IAM calls and [`TOTAL_PER_USER`] calls
//! in all besides SQS.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{run, Emulator};
use serde_json::Value;

const USERS: u64 = 10;

/// IAM calls per rotated user, at most: `GetUser` (with the tags),
/// `ListAccessKeys`, one `GetAccessKeyLastUsed` per key, `AttachUserPolicy`
/// and `CreateAccessKey`, measured 5.
const IAM_PER_USER: u64 = 7;

/// All calls besides SQS per rotated user, at most. Measured 13.9: 11.0 by
/// the executor (IAM 5, Secrets Manager 2: the secret is not read before it
/// is written, STS 1, DynamoDB 3: lock, intent, and the rotation's record
/// written with the release) and 2.9 by the worker's own result bookkeeping
/// (DynamoDB: the result transaction; the counters read only after an
/// account's last results (fewer left than its 5 groups; here half of the
/// 10, with a cancelled transaction for the first that this process
/// records); and the run record, the roll-up and the summary claims shared
/// by the run; a first delivery does not look for a recorded result). No
/// topic is configured here, so no result is published or marked
/// published: with one, add SNS's publish and the mark, 2 a user. An
/// account of more users costs less: the reads stay about one per group.
/// This bound keeps what is measured from growing back (one call of slack
/// a user: a slow machine renews a lock now and then).
const TOTAL_PER_USER: u64 = 15;

/// The call budget per rotated user, printed next to the measure.
const TARGET_PER_USER: u64 = 15;

/// Works `USERS` users of one account, each with one used key `age` days
/// old, through `produce` and one `work` pool with the emulator's clock at
/// `clock`; returns the calls the worker made.
async fn worker_calls(clock: DateTime<Utc>, age: i64) -> BTreeMap<String, u64> {
    let emu = Emulator::start();
    emu.set_clock(clock);
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let table = "keyrotor-calls";
    let made = run(
        emu.keyrotor(table),
        &["init", "--prefix", "calls", "--output", "json"],
    );
    let made: Value = serde_json::from_str(&made.stdout).unwrap();
    for i in 0..USERS {
        acct.user(&format!("app{i}")).await.used_key_aged(age).await;
    }
    emu.set_clock(clock);
    let keyrotor = || {
        let mut cmd = emu.keyrotor(table);
        cmd.env("KEYROTOR_QUEUE_URL", made["queue_url"].as_str().unwrap())
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", "123456789012")
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };
    let as_of = clock.to_rfc3339();
    let produced = run(keyrotor(), &["produce", "--as-of", &as_of]);
    assert_eq!(produced.code, 0, "{}", produced.stderr);
    emu.calls(true);
    let worked = run(
        keyrotor(),
        &["work", "--until-idle", "2", "--concurrency", "4"],
    );
    assert_eq!(worked.code, 0, "{}", worked.stderr);
    let calls = emu.calls(false);
    let keys_after = if age >= 90 { 2 } else { 1 };
    for i in 0..USERS {
        assert_eq!(acct.keys(&format!("app{i}")).await.len(), keys_after);
    }
    calls
}

/// The calls of `service` (`"iam:"`, ...), or of all but SQS (`None`).
fn sum(calls: &BTreeMap<String, u64>, service: Option<&str>) -> u64 {
    calls
        .iter()
        .filter(|(k, _)| match service {
            Some(prefix) => k.starts_with(prefix),
            None => !k.starts_with("sqs:"),
        })
        .map(|(_, n)| n)
        .sum()
}

fn report(name: &str, calls: &BTreeMap<String, u64>) {
    let total = sum(calls, None);
    eprintln!(
        "{name}: {total} calls besides SQS for {USERS} rotations ({:.1} a user; target {TARGET_PER_USER}): {calls:?}",
        total as f64 / USERS as f64
    );
    for service in ["iam:", "secretsmanager:", "sts:", "dynamodb:"] {
        eprintln!(
            "  {service} {:.1} a user",
            sum(calls, Some(service)) as f64 / USERS as f64
        );
    }
}

/// At most `per_user` calls of `action` per rotated user.
fn at_most(calls: &BTreeMap<String, u64>, action: &str, per_user: u64) {
    let n = calls.get(action).copied().unwrap_or(0);
    assert!(
        n <= per_user * USERS,
        "{action}: {n} for {USERS} users, more than {per_user} a user: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rotation_creates_one_key_and_member_sessions_are_reused() {
    let calls = worker_calls(Utc::now(), 95).await;
    report("clock at the real time", &calls);
    assert_eq!(calls.get("iam:CreateAccessKey"), Some(&USERS));
    assert_eq!(calls.get("secretsmanager:CreateSecret"), Some(&USERS));
    // One session for the member account, reused by every message (the
    // SDK refreshes it shortly before it expires, an hour on).
    assert_eq!(
        calls.get("sts:AssumeRole"),
        Some(&1),
        "one AssumeRole for one account: {calls:?}"
    );
    // Each fact read once per message, and each write made once: the keys
    // (one each here) and their last use are not read again after the
    // executor's own changes, the managed policy is attached once, and the
    // secret is not read before it is written (the ledger's last rotation
    // says whether it exists).
    at_most(&calls, "iam:GetUser", 1);
    at_most(&calls, "iam:ListUserTags", 0);
    at_most(&calls, "iam:ListAccessKeys", 1);
    at_most(&calls, "iam:GetAccessKeyLastUsed", 1);
    at_most(&calls, "iam:AttachUserPolicy", 1);
    at_most(&calls, "secretsmanager:DescribeSecret", 0);
    let iam = sum(&calls, Some("iam:"));
    assert!(
        iam <= IAM_PER_USER * USERS,
        "{iam} IAM calls for {USERS} users, more than {IAM_PER_USER} a user: {calls:?}"
    );
    let total = sum(&calls, None);
    assert!(
        total <= TOTAL_PER_USER * USERS,
        "{total} calls besides SQS for {USERS} users, more than {TOTAL_PER_USER} a user: {calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emulator_clock_in_the_past_expires_every_session_at_once() {
    // moto dates the role's credentials by its own clock: in the past, they
    // have expired before they arrive, and the SDK assumes the role again
    // for nearly every call. Benchmarks must run the emulator at real time.
    let calls = worker_calls(keyrotor_e2e::today(), 95).await;
    report("clock in the past", &calls);
    assert_eq!(calls.get("iam:CreateAccessKey"), Some(&USERS));
    assert!(
        calls.get("sts:AssumeRole").copied().unwrap_or(0) > USERS,
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_one_young_key_costs_no_last_use_read() {
    // Most users of a sweep have one key far from any milestone: whether
    // it was used cannot change their plan, so its GetAccessKeyLastUsed is
    // not spent (the policy's `last_use_matters`).
    // The fixtures date keys from the emulator's day; its sessions then
    // expire at once (see below), which costs STS calls, not IAM ones.
    let calls = worker_calls(keyrotor_e2e::today(), 30).await;
    report("one young key each", &calls);
    assert_eq!(calls.get("iam:CreateAccessKey"), None, "{calls:?}");
    assert_eq!(calls.get("iam:GetAccessKeyLastUsed"), None, "{calls:?}");
    assert_eq!(calls.get("iam:ListAccessKeys"), Some(&USERS), "{calls:?}");
    // GetUser and ListAccessKeys: two IAM calls a user.
    at_most(&calls, "iam:GetUser", 1);
    let iam = sum(&calls, Some("iam:"));
    assert!(iam <= 2 * USERS, "{iam} IAM calls: {calls:?}");
    // A noop result has no event, so it is not marked published: the
    // user's lock and its release are its only single-item writes (besides
    // the run's few claims and marks).
    let updates = calls.get("dynamodb:UpdateItem").copied().unwrap_or(0);
    assert!(
        updates <= 2 * USERS + 4,
        "{updates} UpdateItem for {USERS} noop users: {calls:?}"
    );
}

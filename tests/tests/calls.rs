//! What a run costs in AWS calls, counted by the emulator where AWS would
//! count them (`GET /_keyrotor/calls`). The counts are the baseline the scale
//! work measures against; the assertions are about correctness only: one
//! `CreateAccessKey` and one stored secret per rotated user, and member
//! sessions reused across messages.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{run, Emulator};
use serde_json::Value;

const USERS: u64 = 10;

/// Rotates `USERS` due users of one account through `produce` and one
/// `work` pool with the emulator's clock at `clock`; returns the calls the
/// worker made.
async fn worker_calls(clock: DateTime<Utc>) -> BTreeMap<String, u64> {
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
        acct.user(&format!("app{i}")).await.used_key_aged(95).await;
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
    for i in 0..USERS {
        assert_eq!(acct.keys(&format!("app{i}")).await.len(), 2);
    }
    calls
}

fn report(name: &str, calls: &BTreeMap<String, u64>) {
    let total: u64 = calls
        .iter()
        .filter(|(k, _)| !k.starts_with("sqs:"))
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "{name}: {total} calls besides SQS for {USERS} rotations ({:.1} a user): {calls:?}",
        total as f64 / USERS as f64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_rotation_creates_one_key_and_member_sessions_are_reused() {
    let calls = worker_calls(Utc::now()).await;
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
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emulator_clock_in_the_past_expires_every_session_at_once() {
    // moto dates the role's credentials by its own clock: in the past, they
    // have expired before they arrive, and the SDK assumes the role again
    // for nearly every call. Benchmarks must run the emulator at real time.
    let calls = worker_calls(keyrotor_e2e::today()).await;
    report("clock in the past", &calls);
    assert_eq!(calls.get("iam:CreateAccessKey"), Some(&USERS));
    assert!(
        calls.get("sts:AssumeRole").copied().unwrap_or(0) > USERS,
        "{calls:?}"
    );
}

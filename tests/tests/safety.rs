//! A message is a request, not an authority (DESIGN §4): forged and
//! mistyped messages change no key; enforce never runs at a future
//! evaluation time or on stale work; a worker in audit mode never enforces;
//! a redelivery after the IAM change reports the work that was done; the
//! ledger never records a change earlier than it happened.

use std::process::{Child, Stdio};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Utc;
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{day, drain_queue, rotate_args, run, subscribe_queue, today, Emulator};
use keyrotor_shared::store::{DynamoLedger, LedgerPort};
use serde_json::{json, Value};

const MANAGEMENT: &str = "123456789012";

struct Env {
    table: String,
    queue: String,
    topic: String,
}

fn setup(emu: &Emulator, prefix: &str) -> Env {
    let table = format!("keyrotor-{prefix}");
    let made = run(
        emu.keyrotor(&table),
        &["init", "--prefix", prefix, "--output", "json"],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let made: Value = serde_json::from_str(&made.stdout).unwrap();
    Env {
        table,
        queue: made["queue_url"].as_str().unwrap().to_string(),
        topic: made["topic_arn"].as_str().unwrap().to_string(),
    }
}

fn keyrotor(emu: &Emulator, env: &Env, mode: &str) -> std::process::Command {
    let mut cmd = emu.keyrotor(&env.table);
    cmd.env("KEYROTOR_QUEUE_URL", &env.queue)
        .env("KEYROTOR_TOPIC_ARN", &env.topic)
        .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
        .env("KEYROTOR_MODE", mode);
    cmd
}

fn produce(emu: &Emulator, env: &Env, mode: &str, extra: &[&str]) -> Value {
    let as_of = today().to_rfc3339();
    let mut args = vec!["produce", "--as-of", as_of.as_str(), "--output", "json"];
    args.extend_from_slice(extra);
    let ran = run(keyrotor(emu, env, mode), &args);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

fn work(emu: &Emulator, env: &Env, mode: &str, extra_env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = keyrotor(emu, env, mode);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let ran = run(
        cmd,
        &["work", "--until-idle", "2", "--visibility-secs", "10"],
    );
    (ran.code, ran.stderr)
}

fn status(emu: &Emulator, env: &Env, run_id: &str) -> Value {
    let ran = run(
        keyrotor(emu, env, "audit"),
        &["status", run_id, "--output", "json"],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

async fn send(config: &aws_config::SdkConfig, queue: &str, body: Value, dedup: &str) {
    let group = body["account_id"].as_str().unwrap().to_string();
    aws_sdk_sqs::Client::new(config)
        .send_message()
        .queue_url(queue)
        .message_body(body.to_string())
        .message_group_id(group)
        .message_deduplication_id(dedup)
        .send()
        .await
        .expect("send");
}

fn message(run_id: &str, account: &str, user: &str, as_of: &str, mode: &str, force: bool) -> Value {
    json!({"v": 1, "run_id": run_id, "account_id": account, "account_name": "prod",
           "owner_email": null, "user_name": user, "as_of": as_of, "mode": mode, "force": force})
}

/// Every event the topic published, decoded.
async fn events(config: &aws_config::SdkConfig, queue: &str) -> Vec<Value> {
    drain_queue(config, queue)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_and_mistyped_messages_change_no_key() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "forged");
    let subscriber = subscribe_queue(&org.hub, &env.topic, "forged-events", None).await;
    // Not due today; due (and more) 30 or 45 days on.
    let young = acct.user("young").await.used_key_aged(70).await;
    let old = acct.user("old").await.used_key_aged(95).await;

    // The real run: audit, at today.
    let summary = produce(&emu, &env, "audit", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let today_s = today().to_rfc3339();
    let future = (today() + chrono::Duration::days(45)).to_rfc3339();
    let forged = [
        // An as_of 45 days ahead, in enforce mode: would rotate `young`.
        message(&run_id, &acct.id, "young", &future, "enforce", false),
        // The run's as_of, but enforce although the run is an audit.
        message(&run_id, &acct.id, "old", &today_s, "enforce", false),
        // A force the run never asked for.
        message(&run_id, &acct.id, "young", &today_s, "audit", true),
        // A run that does not exist.
        message(
            "20260601T000000Z-f0f0f0f0",
            &acct.id,
            "old",
            &today_s,
            "enforce",
            true,
        ),
        // A perfect copy of the run's parameters, for a user the run never
        // enqueued: only the producer holds the run's key.
        message(&run_id, &acct.id, "ghost", &today_s, "audit", false),
    ];
    for (i, body) in forged.into_iter().enumerate() {
        send(&org.hub, &env.queue, body, &format!("forged-{i}")).await;
    }

    let (code, stderr) = work(&emu, &env, "enforce", &[]);
    assert_eq!(code, 1, "rejected messages make the pool exit 1: {stderr}");
    assert!(stderr.contains("rejected 5"), "{stderr}");

    let young_keys = acct.keys("young").await;
    assert_eq!(young_keys.len(), 1, "{young_keys:?}");
    assert_eq!(young_keys[0].id, young.id);
    let old_keys = acct.keys("old").await;
    assert_eq!(
        old_keys.len(),
        1,
        "an audit run changes nothing: {old_keys:?}"
    );
    assert_eq!(old_keys[0].id, old.id);
    assert_eq!(old_keys[0].status, "Active");

    // The real run completed with its own two results, nothing more.
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["done"], 2, "{st}");
    assert_eq!(st["expected"], 2, "{st}");
    assert_eq!(st["counts"]["planned"], 1, "{st}");

    // Each forgery was reported, with its reason.
    let events = events(&org.hub, &subscriber).await;
    let failed: Vec<&Value> = events.iter().filter(|e| e["outcome"] == "failed").collect();
    assert_eq!(failed.len(), 5, "{events:?}");
    let reasons: Vec<&str> = failed
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("as_of")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("mode")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("force")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("unknown run"))
            && reasons.iter().any(|r| r.contains("signed")),
        "{reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_in_audit_mode_never_enforces_and_keeps_out_of_excluded_accounts() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let prod = org.account("prod").await;
    let other = org.account("other").await;
    let env = setup(&emu, "audit-worker");
    let due = prod.user("due").await.used_key_aged(95).await;
    let elsewhere = other.user("due").await.used_key_aged(95).await;

    let summary = produce(&emu, &env, "enforce", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    // The worker is in audit mode, and excludes `other` itself.
    let exclude = format!("{MANAGEMENT},{}", other.id);
    let (code, stderr) = work(
        &emu,
        &env,
        "audit",
        &[("KEYROTOR_EXCLUDE_ACCOUNTS", exclude.as_str())],
    );
    assert_eq!(code, 0, "{stderr}");

    assert_eq!(prod.keys("due").await.len(), 1);
    assert_eq!(prod.keys("due").await[0].id, due.id);
    assert_eq!(other.keys("due").await.len(), 1);
    assert_eq!(other.keys("due").await[0].id, elsewhere.id);
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["done"], 2, "{st}");
    assert_eq!(
        st["counts"]["planned"], 1,
        "the enforce message was worked as an audit: {st}"
    );
    assert_eq!(st["counts"]["skipped"], 1, "the excluded account: {st}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enforce_at_a_future_time_is_refused_everywhere_but_plan_may_look_ahead() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "future");
    let key = acct.user("app").await.used_key_aged(70).await;
    let future = (Utc::now() + chrono::Duration::days(30)).to_rfc3339();

    let strict = |mode: &str| {
        let mut cmd = keyrotor(&emu, &env, mode);
        cmd.env("KEYROTOR_ALLOW_FUTURE_AS_OF", "false");
        cmd
    };
    let rotate = run(
        strict("enforce"),
        &[
            "rotate",
            "--account",
            &acct.id,
            "--user",
            "app",
            "--as-of",
            &future,
        ],
    );
    assert_eq!(rotate.code, 2, "{}", rotate.stderr);
    assert!(
        rotate.stderr.contains("KEYROTOR_ALLOW_FUTURE_AS_OF"),
        "{}",
        rotate.stderr
    );
    let produce = run(strict("enforce"), &["produce", "--as-of", &future]);
    assert_eq!(produce.code, 2, "{}", produce.stderr);
    assert!(produce.stderr.contains("KEYROTOR_ALLOW_FUTURE_AS_OF"));
    assert!(
        drain_queue(&org.hub, &env.queue).await.is_empty(),
        "nothing was enqueued"
    );
    let plan = run(
        strict("enforce"),
        &[
            "plan",
            "--account",
            &acct.id,
            "--as-of",
            &future,
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "a forecast changes nothing: {}", plan.stderr);
    let audit = run(
        strict("audit"),
        &[
            "rotate",
            "--account",
            &acct.id,
            "--user",
            "app",
            "--as-of",
            &future,
        ],
    );
    assert_eq!(audit.code, 0, "{}", audit.stderr);

    // A run produced where future times are allowed (an emulator's) is
    // still refused by a worker that does not allow them.
    let allowed = run(
        keyrotor(&emu, &env, "enforce"),
        &["produce", "--as-of", &future, "--output", "json"],
    );
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    let run_id = serde_json::from_str::<Value>(&allowed.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let worked = run(strict("enforce"), &["work", "--until-idle", "2"]);
    assert_eq!(worked.code, 1, "{}", worked.stderr);
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["counts"]["failed"], 1, "{st}");

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, key.id);
    assert_eq!(keys[0].status, "Active");
}

/// Writes the run record as a producer that started `hours_ago` would have.
async fn backdate_run(
    config: &aws_config::SdkConfig,
    table: &str,
    run_id: &str,
    mode: &str,
    hours_ago: i64,
) {
    let started = (Utc::now() - chrono::Duration::hours(hours_ago))
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let as_of = today().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    aws_sdk_dynamodb::Client::new(config)
        .put_item()
        .table_name(table)
        .item("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .item("sk", AttributeValue::S("RUN".into()))
        .item("as_of", AttributeValue::S(as_of))
        .item("mode", AttributeValue::S(mode.into()))
        .item("started_at", AttributeValue::S(started))
        .send()
        .await
        .expect("put run");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_enforce_work_is_reported_and_not_acted_on() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "stale");
    let key = acct.user("app").await.used_key_aged(95).await;

    // A run whose producer started two days ago: its messages sat in a
    // backlog (or came back from the DLQ).
    let run_id = "20260601T000000Z-57a1e000";
    backdate_run(&org.hub, &env.table, run_id, "enforce", 48).await;
    produce(&emu, &env, "enforce", &["--run-id", run_id]);
    let (code, stderr) = work(&emu, &env, "enforce", &[]);
    assert_eq!(code, 1, "a failed user makes the pool exit 1: {stderr}");

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 1, "nothing rotated: {keys:?}");
    assert_eq!(keys[0].id, key.id);
    let st = status(&emu, &env, run_id);
    assert_eq!(st["counts"]["failed"], 1, "{st}");
    assert_eq!(st["done"], st["expected"], "the run still completes: {st}");

    // The same work, fresh, is done.
    let (code, stderr) = work(&emu, &env, "enforce", &[]);
    assert_eq!(code, 0, "{stderr}");
    let summary = produce(&emu, &env, "enforce", &[]);
    assert!(summary["run_id"].as_str().unwrap() != run_id);
    let (code, stderr) = work(&emu, &env, "enforce", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(acct.keys("app").await.len(), 2, "the next run rotates");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deactivation_from_stale_work_records_the_real_time_so_the_grace_is_not_shortened() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let table = "keyrotor-grace";
    run(emu.keyrotor(table), &["init", "--prefix", "grace"]);
    // The old key is 105 days old; its replacement (20 days) is in use.
    let user = acct.user("app").await;
    let old = user.used_key_aged(105).await;
    let new = user.used_key_aged(20).await;

    // Work evaluated at day 0, which lies in the past of the real clock,
    // done by a worker that trusts only the real clock.
    let strict = |as_of| {
        let mut cmd = emu.keyrotor(table);
        cmd.env("KEYROTOR_ALLOW_FUTURE_AS_OF", "false");
        let args = rotate_args(&acct.id, "app", as_of, "enforce");
        run(cmd, &args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let ran = strict(today());
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let result: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(result["outcome"], "deactivated", "{result}");

    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&org.hub), table);
    let record = ledger.read(&acct.id, "app").await.unwrap().unwrap();
    let deactivated = record.history.deactivated_at[&old.id];
    assert!(
        deactivated >= Utc::now() - chrono::Duration::minutes(5),
        "recorded at the real time of the change, not at {}: {deactivated}",
        today()
    );

    // Eleven evaluation days later the recovery grace (10 days) has passed
    // by the evaluation clock, but not since the key was really switched off.
    emu.set_clock(day(11));
    let ran = strict(day(11));
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "the old key is kept: {keys:?}");
    assert!(keys
        .iter()
        .any(|k| k.id == old.id && k.status == "Inactive"));
    assert!(keys.iter().any(|k| k.id == new.id && k.status == "Active"));
}

fn spawn_worker(emu: &Emulator, env: &Env, extra_env: &[(&str, &str)]) -> Child {
    let mut cmd = keyrotor(emu, env, "enforce");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.args(["work", "--until-idle", "2", "--visibility-secs", "6"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a worker")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivery_after_the_iam_change_reports_the_rotation_once() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "redeliver");
    let subscriber = subscribe_queue(
        &org.hub,
        &env.topic,
        "redeliver-events",
        Some(json!({"outcome": ["rotated"]})),
    )
    .await;
    let old = acct.user("app").await.used_key_aged(95).await;
    let summary = produce(&emu, &env, "enforce", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();

    // The worker stops for good right after the ledger recorded the new key,
    // before the result is recorded: then it is killed.
    let mut crashed = spawn_worker(
        &emu,
        &env,
        &[
            ("FAILPOINTS", "after-record-rotation=sleep(600000)"),
            ("KEYROTOR_LOCK_LEASE_SECS", "2"),
        ],
    );
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&org.hub), &env.table);
    let mut waited = 0;
    loop {
        let record = ledger.read(&acct.id, "app").await.unwrap();
        if record.is_some_and(|r| r.last_run.is_some()) {
            break;
        }
        waited += 1;
        assert!(waited < 120, "the worker never reached the failpoint");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    crashed.kill().unwrap();
    let _ = crashed.wait();
    assert_eq!(acct.keys("app").await.len(), 2, "the new key exists");
    assert_eq!(status(&emu, &env, &run_id)["done"], 0, "no result yet");

    // The message comes back when its visibility ends; a new pool reports
    // the work the ledger recorded, instead of finding nothing due.
    let worker = spawn_worker(&emu, &env, &[("KEYROTOR_LOCK_LEASE_SECS", "2")]);
    let out = worker.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["counts"]["rotated"], 1, "{st}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "no second new key: {keys:?}");
    let new_id = keys.iter().find(|k| k.id != old.id).unwrap().id.clone();

    let rotated = events(&org.hub, &subscriber).await;
    assert_eq!(rotated.len(), 1, "exactly one rotated event: {rotated:?}");
    assert_eq!(rotated[0]["new_key_id"], new_id.as_str());
    let arn = rotated[0]["secret_arn"].as_str().expect("the secret ARN");
    let secret = acct.secret_json(arn).await;
    assert_eq!(secret["AccessKeyId"], new_id.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redelivery_after_the_warning_was_recorded_still_reports_the_warning() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "rewarn");
    let subscriber = subscribe_queue(
        &org.hub,
        &env.topic,
        "rewarn-events",
        Some(json!({"outcome": ["warned"]})),
    )
    .await;
    acct.user("app").await.used_key_aged(86).await;
    let summary = produce(&emu, &env, "enforce", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();

    // The ledger records the warning as sent with the lock's release; the
    // worker then stops for good before the result is recorded, and dies.
    let mut crashed = spawn_worker(
        &emu,
        &env,
        &[
            ("FAILPOINTS", "worker-before-record=sleep(600000)"),
            ("KEYROTOR_LOCK_LEASE_SECS", "2"),
        ],
    );
    let ledger = DynamoLedger::new(aws_sdk_dynamodb::Client::new(&org.hub), &env.table);
    let mut waited = 0;
    let record = loop {
        let record = ledger.read(&acct.id, "app").await.unwrap();
        if let Some(r) = record.filter(|r| !r.history.warnings_sent.is_empty()) {
            break r;
        }
        waited += 1;
        assert!(waited < 120, "the worker never recorded the warning");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    crashed.kill().unwrap();
    let _ = crashed.wait();
    assert_eq!(status(&emu, &env, &run_id)["done"], 0, "no result yet");
    let work = record.last_run.expect("the run's work is recorded");
    assert_eq!(work.run_id, run_id);
    assert_eq!(
        work.warnings,
        record.history.warnings_sent.into_iter().collect::<Vec<_>>()
    );

    // The redelivery finds the warning sent already; it is still this run's
    // news, so the result says `warned` (a `noop` would leave it out of the
    // owners' digest, and no later run warns again).
    let worker = spawn_worker(&emu, &env, &[("KEYROTOR_LOCK_LEASE_SECS", "2")]);
    let out = worker.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["done"], 1, "{st}");
    assert_eq!(st["counts"]["warned"], 1, "{st}");
    let warned = events(&org.hub, &subscriber).await;
    assert_eq!(warned.len(), 1, "one warned event: {warned:?}");
    assert_eq!(warned[0]["user_name"], "app");
    assert_eq!(acct.keys("app").await.len(), 1, "nothing changed in IAM");
}

#[tokio::test(flavor = "multi_thread")]
async fn rotate_in_enforce_mode_is_a_recorded_and_published_manual_run() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "manual");
    let subscriber = subscribe_queue(&org.hub, &env.topic, "manual-events", None).await;
    acct.user("app").await.used_key_aged(95).await;

    let args = rotate_args(&acct.id, "app", today(), "enforce");
    let ran = run(
        keyrotor(&emu, &env, "enforce"),
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let result: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(result["outcome"], "rotated", "{result}");

    // The newest run is the manual one, complete, with its summary.
    let st = run(
        keyrotor(&emu, &env, "audit"),
        &["status", "--output", "json"],
    );
    let st: Value = serde_json::from_str(&st.stdout).unwrap();
    assert!(st["run_id"].as_str().unwrap().contains("-manual-"), "{st}");
    assert_eq!(st["mode"], "enforce", "{st}");
    assert_eq!(st["done"], 1, "{st}");
    assert_eq!(st["counts"]["rotated"], 1, "{st}");
    assert_eq!(st["summary_sent"], true, "{st}");

    // Subscribers hear of it like of any other rotation.
    let events = events(&org.hub, &subscriber).await;
    let rotated: Vec<&Value> = events
        .iter()
        .filter(|e| e["outcome"] == "rotated")
        .collect();
    assert_eq!(rotated.len(), 1, "{events:?}");
    assert_eq!(rotated[0]["run_id"], st["run_id"]);
    assert_eq!(rotated[0]["secret_arn"], result["secret_arn"]);
    assert!(
        events.iter().any(|e| e["type"] == "keyrotor.run.v1"),
        "{events:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_still_failing_on_its_last_receive_records_a_failed_result() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "last-receive");
    let key = acct.user("app").await.used_key_aged(95).await;
    let summary = produce(&emu, &env, "enforce", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();

    // IAM throttles the account for longer than any retry.
    emu.inject(&[keyrotor_e2e::Fault::new("iam", "Throttling")
        .action("GetUser")
        .count(1000)
        .every(1)]);
    let (code, stderr) = work(&emu, &env, "enforce", &[("KEYROTOR_MAX_RECEIVES", "2")]);
    emu.inject(&[]);
    assert_eq!(code, 1, "a failed user makes the pool exit 1: {stderr}");
    assert!(
        stderr.contains("retried 1"),
        "one retry, then the last receive: {stderr}"
    );

    let st = status(&emu, &env, &run_id);
    assert_eq!(st["counts"]["failed"], 1, "{st}");
    assert_eq!(st["done"], st["expected"], "the run completes: {st}");
    assert_eq!(st["summary_sent"], true, "{st}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].id, key.id);
    assert!(
        drain_queue(&org.hub, &env.queue).await.is_empty(),
        "nothing left for the DLQ"
    );
}

/// A throttled `CreateAccessKey` made no key (IAM refused the call), so
/// the IAM adapter retries it in place although the SDK's retries are off
/// for that call: the user is rotated in the same delivery, with exactly
/// one new key, and the group waits out no redelivery.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_create_access_key_is_retried_in_place_and_makes_one_key() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "create-throttled");
    let old = acct.user("app").await.used_key_aged(95).await;
    let summary = produce(&emu, &env, "enforce", &[]);
    let run_id = summary["run_id"].as_str().unwrap().to_string();

    emu.inject(&[keyrotor_e2e::Fault::new("iam", "Throttling")
        .action("CreateAccessKey")
        .count(2)
        .every(1)]);
    let (code, stderr) = work(&emu, &env, "enforce", &[]);
    assert_eq!(
        emu.faults_by_rule(),
        [2],
        "both throttling answers were sent"
    );
    emu.inject(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("retried 0"), "no redelivery: {stderr}");

    let st = status(&emu, &env, &run_id);
    assert_eq!(st["counts"]["rotated"], 1, "{st}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "the old key and one new key: {keys:?}");
    assert!(keys.iter().any(|k| k.id == old.id));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_failing_part_way_expects_exactly_the_messages_it_sent() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "part-way");
    acct.users("u", 150).await;

    // The fifth batch cannot be sent: 40 messages went out.
    emu.inject(&[keyrotor_e2e::Fault::new("sqs", "QueueDoesNotExist")
        .action("SendMessageBatch")
        .every(5)
        .count(1)]);
    let as_of = today().to_rfc3339();
    let ran = run(
        keyrotor(&emu, &env, "audit"),
        &["produce", "--as-of", &as_of, "--output", "json"],
    );
    emu.inject(&[]);
    assert_eq!(ran.code, 1, "a failed account: {}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(summary["failed_accounts"], json!([acct.id]), "{summary}");
    assert_eq!(summary["failures"][0]["enqueued"], 40, "{summary}");
    assert_eq!(summary["enqueued"], 40, "{summary}");
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["expected"], 40, "{st}");

    let (code, stderr) = work(&emu, &env, "audit", &[]);
    assert_eq!(code, 0, "{stderr}");
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["done"], 40, "{st}");
    assert_eq!(st["summary_sent"], true, "the run completes: {st}");
    let account = st["per_account"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account_id"] == acct.id.as_str())
        .unwrap()
        .clone();
    assert_eq!(account["expected"], 40, "{account}");
    assert_eq!(account["done"], 40, "{account}");
    assert_eq!(account["status"], "failed", "{account}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_listed_whole_and_failing_part_way_sends_the_users_it_listed() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let env = setup(&emu, "part-listed");
    acct.users("u", 150).await;

    // With the fleet's groups shared out, an account of two pages is listed
    // whole before it is enqueued; its second page is refused.
    emu.inject(&[keyrotor_e2e::Fault::new("iam", "AccessDenied")
        .action("ListUsers")
        .every(2)
        .count(1)]);
    let as_of = today().to_rfc3339();
    let mut cmd = keyrotor(&emu, &env, "audit");
    cmd.env("KEYROTOR_FLEET_GROUPS", "4");
    let ran = run(cmd, &["produce", "--as-of", &as_of, "--output", "json"]);
    emu.inject(&[]);
    assert_eq!(ran.code, 1, "a failed account: {}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(summary["failed_accounts"], json!([acct.id]), "{summary}");
    assert_eq!(
        summary["failures"][0]["enqueued"], 100,
        "the first page's users went out: {summary}"
    );
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["expected"], 100, "{st}");

    let (code, stderr) = work(&emu, &env, "audit", &[]);
    assert_eq!(code, 0, "{stderr}");
    let st = status(&emu, &env, &run_id);
    assert_eq!(st["done"], 100, "{st}");
    assert_eq!(st["summary_sent"], true, "the run completes: {st}");
}

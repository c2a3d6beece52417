//! Crash safety (DESIGN §5): the process dies right after `CreateAccessKey`
//! (or right after storing the secret); the next `rotate` leaves exactly one
//! new key, stored, and no orphan.

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{rotate_args, run, today, Emulator};
use serde_json::Value;

const TABLE: &str = "keyrotor-crash";
const LEASE_SECS: u64 = 2;

fn rotate(emu: &Emulator, account: &str, failpoint: Option<&str>) -> keyrotor_e2e::Ran {
    let mut cmd = emu.keyrotor(TABLE);
    cmd.env("KEYROTOR_LOCK_LEASE_SECS", LEASE_SECS.to_string());
    if let Some(fp) = failpoint {
        cmd.env("FAILPOINTS", format!("{fp}=panic"));
    }
    let args = rotate_args(account, "app", today(), "enforce");
    run(cmd, &args.iter().map(String::as_str).collect::<Vec<_>>())
}

async fn crash_then_recover(failpoint: &str) -> (Vec<String>, Value, String) {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;

    let crashed = rotate(&emu, &acct.id, Some(failpoint));
    assert_ne!(crashed.code, 0, "the failpoint must stop the process");
    assert_eq!(
        acct.keys("app").await.len(),
        2,
        "the key was created before the crash"
    );

    // The crashed process still holds the lock until its lease runs out.
    std::thread::sleep(std::time::Duration::from_millis(LEASE_SECS * 1000 + 500));
    let ran = rotate(&emu, &acct.id, None);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let result: Value = serde_json::from_str(&ran.stdout).unwrap();

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "old key plus exactly one new key: {keys:?}");
    assert_eq!(keys[0].id, old.id);
    let new_id = result["new_key_id"]
        .as_str()
        .expect("a new key is reported")
        .to_string();
    assert_eq!(keys[1].id, new_id);
    let value: Value = acct
        .secret_json(result["secret_arn"].as_str().unwrap())
        .await;
    assert_eq!(
        value["AccessKeyId"],
        new_id.as_str(),
        "the stored key is the one that exists"
    );

    // The ledger holds no unfinished intent and records the new key.
    let ledger =
        keyrotor_shared::store::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE);
    use keyrotor_shared::store::LedgerPort;
    let record = ledger.read(&acct.id, "app").await.unwrap().unwrap();
    assert!(record.intent.is_none(), "{record:?}");
    assert_eq!(record.new_key_id.as_deref(), Some(new_id.as_str()));
    assert_eq!(record.old_key_id.as_deref(), Some(old.id.as_str()));

    // And a further run changes nothing.
    let again = rotate(&emu, &acct.id, None);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert!(again["performed"].as_array().unwrap().is_empty(), "{again}");
    assert_eq!(acct.keys("app").await.len(), 2);
    let performed = result["performed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["action"].as_str().unwrap().to_string())
        .collect();
    (performed, result, crashed.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_create_access_key_deletes_the_orphan_and_rotates_once() {
    let (performed, result, crash_stderr) = crash_then_recover("after-create-access-key").await;
    assert_eq!(performed, vec!["delete-orphan", "rotate"], "{result}");
    assert!(!crash_stderr.contains("SecretAccessKey"));
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_after_storing_the_secret_finishes_without_a_second_key() {
    let (performed, result, _) = crash_then_recover("after-store-secret").await;
    assert_eq!(performed, vec!["rotate"], "{result}");
}

/// The actions `rotate --output json` reports as performed, in order.
fn actions_of(result: &Value) -> Vec<&str> {
    result["performed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["action"].as_str().unwrap())
        .collect()
}

/// A pool that dies at `failpoint` (the failpoints build turns the
/// failpoint's panic into an abort of the whole process), then a fresh pool:
/// the run completes with every due action done once, one stored key, one
/// `rotated` event with its secret, one digest and one run summary.
async fn pool_crash_then_recover(failpoint: &str) {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    let prefix = format!("crash-{}", failpoint.replace('_', "-"));
    let table = format!("keyrotor-{prefix}");
    let made = run(
        emu.keyrotor(&table),
        &["init", "--prefix", &prefix, "--output", "json"],
    );
    assert_eq!(made.code, 0, "{}", made.stderr);
    let made: Value = serde_json::from_str(&made.stdout).unwrap();
    let (queue, topic) = (
        made["queue_url"].as_str().unwrap().to_string(),
        made["topic_arn"].as_str().unwrap().to_string(),
    );
    keyrotor_e2e::verify_sender(&org.hub, "keyrotor@example.com").await;
    let rotated_events = keyrotor_e2e::subscribe_queue(
        &org.hub,
        &topic,
        &format!("{prefix}-rotated"),
        Some(serde_json::json!({"outcome": ["rotated"]})),
    )
    .await;
    // Worked in this order (one FIFO group): `off` has its old key switched
    // off, `rot` is rotated.
    let off = acct.user("off").await;
    let old = off.key_aged(120).await;
    acct.use_key(&old, keyrotor_e2e::day(-20)).await;
    off.used_key_aged(15).await;
    acct.user("rot").await.used_key_aged(95).await;

    let pool = |failpoint: Option<&str>| {
        let mut cmd = emu.keyrotor(&table);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_SENDER", "keyrotor@example.com")
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", "123456789012")
            .env("KEYROTOR_MODE", "enforce")
            .env("KEYROTOR_LOCK_LEASE_SECS", LEASE_SECS.to_string());
        if let Some(fp) = failpoint {
            cmd.env("FAILPOINTS", format!("{fp}=panic"));
        }
        cmd
    };
    let as_of = today().to_rfc3339();
    let produced = run(
        pool(None),
        &["produce", "--as-of", &as_of, "--output", "json"],
    );
    assert_eq!(produced.code, 0, "{}", produced.stderr);
    let run_id = serde_json::from_str::<Value>(&produced.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let work = ["work", "--until-idle", "2", "--visibility-secs", "5"];

    let crashed = run(pool(Some(failpoint)), &work);
    assert_ne!(
        crashed.code, 0,
        "{failpoint} must stop the pool: {}",
        crashed.stderr
    );
    let recovered = run(pool(None), &work);
    assert_eq!(recovered.code, 0, "{failpoint}: {}", recovered.stderr);

    let status = run(pool(None), &["status", &run_id, "--output", "json"]);
    let st: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(st["done"], 2, "{failpoint}: {st}");
    assert_eq!(st["expected"], 2, "{failpoint}: {st}");
    assert_eq!(st["counts"]["rotated"], 1, "{failpoint}: {st}");
    assert_eq!(st["counts"]["deactivated"], 1, "{failpoint}: {st}");
    assert_eq!(st["summary_sent"], true, "{failpoint}: {st}");

    let off_keys: Vec<String> = acct
        .keys("off")
        .await
        .into_iter()
        .map(|k| k.status)
        .collect();
    assert_eq!(off_keys, ["Inactive", "Active"], "{failpoint}");
    let rot_keys = acct.keys("rot").await;
    assert_eq!(rot_keys.len(), 2, "{failpoint}: {rot_keys:?}");
    assert_eq!(acct.secret_arns().await.len(), 1, "{failpoint}: one secret");

    let events: Vec<Value> = keyrotor_e2e::drain_queue(&org.hub, &rotated_events)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        1,
        "{failpoint}: one rotated event: {events:?}"
    );
    assert_eq!(
        events[0]["new_key_id"],
        rot_keys[1].id.as_str(),
        "{failpoint}"
    );
    let secret = acct
        .secret_json(events[0]["secret_arn"].as_str().unwrap())
        .await;
    assert_eq!(
        secret["AccessKeyId"],
        rot_keys[1].id.as_str(),
        "{failpoint}"
    );

    let digests = emu
        .sent_emails()
        .iter()
        .filter(|m| m["destinations"].to_string().contains("prod@example.com"))
        .count();
    assert_eq!(digests, 1, "{failpoint}: one digest to the account owner");
}

/// One test per failpoint, so they run side by side.
macro_rules! crash_between_steps {
    ($($name:ident => $failpoint:literal,)*) => {$(
        #[tokio::test(flavor = "multi_thread")]
        async fn $name() {
            pool_crash_then_recover($failpoint).await;
        }
    )*};
}

crash_between_steps! {
    pool_crash_after_deactivating_a_key => "after-deactivate-key",
    pool_crash_after_create_access_key => "after-create-access-key",
    pool_crash_after_storing_the_secret => "after-store-secret",
    pool_crash_after_the_ledger_records_the_rotation => "after-record-rotation",
    pool_crash_before_the_result_is_recorded => "worker-before-record",
    pool_crash_after_the_result_is_recorded => "worker-after-record",
    pool_crash_between_the_event_and_its_mark => "worker-between-publish-and-mark",
    pool_crash_after_the_event_is_published => "worker-after-publish",
    pool_crash_before_the_digest_is_sent => "worker-before-digest",
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_looks_for_the_secret_the_intent_named_not_todays_template() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;
    let crashed = rotate(&emu, &acct.id, Some("after-store-secret"));
    assert_ne!(crashed.code, 0);
    let stored = acct.secret_arns().await;
    assert_eq!(stored.len(), 1);

    // The template changed before the recovery.
    std::thread::sleep(std::time::Duration::from_millis(LEASE_SECS * 1000 + 500));
    let mut cmd = emu.keyrotor(TABLE);
    cmd.env("KEYROTOR_LOCK_LEASE_SECS", LEASE_SECS.to_string())
        .env("KEYROTOR_SECRET_NAME_TEMPLATE", "renamed/{user_name}");
    let args = rotate_args(&acct.id, "app", today(), "enforce");
    let ran = run(cmd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let result: Value = serde_json::from_str(&ran.stdout).unwrap();
    let performed = actions_of(&result);
    assert_eq!(performed, ["rotate"], "finished, not undone: {result}");
    assert_eq!(result["secret_arn"], stored[0].as_str(), "{result}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, old.id);
    assert_eq!(acct.secret_arns().await.len(), 1, "no second secret");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_error_of_unknown_outcome_leaves_the_intent_for_recovery() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;

    // Secrets Manager answers 5xx to every attempt to store the key: the
    // write may or may not have happened.
    emu.inject(&[
        keyrotor_e2e::Fault::new("secretsmanager", "InternalServiceError")
            .action("CreateSecret")
            .count(20)
            .every(1),
    ]);
    let failed = rotate(&emu, &acct.id, None);
    assert_eq!(failed.code, 1, "{}", failed.stderr);
    emu.inject(&[]);
    assert_eq!(
        acct.keys("app").await.len(),
        2,
        "the new key is not deleted on a guess"
    );
    let ledger =
        keyrotor_shared::store::DynamoLedger::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE);
    use keyrotor_shared::store::LedgerPort;
    let record = ledger.read(&acct.id, "app").await.unwrap().unwrap();
    assert!(record.intent.is_some(), "the intent stays: {record:?}");

    // The next run decides with the facts: nothing was stored, so the key
    // is an orphan; it goes, and the rotation runs again.
    std::thread::sleep(std::time::Duration::from_millis(LEASE_SECS * 1000 + 500));
    let ran = rotate(&emu, &acct.id, None);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let result: Value = serde_json::from_str(&ran.stdout).unwrap();
    let performed = actions_of(&result);
    assert_eq!(performed, ["delete-orphan", "rotate"], "{result}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, old.id);
    let secret = acct
        .secret_json(result["secret_arn"].as_str().unwrap())
        .await;
    assert_eq!(secret["AccessKeyId"], keys[1].id.as_str());
}

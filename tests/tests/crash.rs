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

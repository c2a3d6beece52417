//! Time passing: a rotated key's predecessor is switched off, then deleted,
//! never sooner than the grace periods allow; audit mode changes nothing.

use keyrotor_e2e::world::{KeyNow, Org};
use keyrotor_e2e::{day, run, today, Emulator};
use serde_json::Value;

const TABLE: &str = "keyrotor-lifecycle";

fn rotate(
    emu: &Emulator,
    account: &str,
    user: &str,
    at: chrono::DateTime<chrono::Utc>,
    mode: &str,
) -> Value {
    // The emulator's clock follows the evaluation time, as AWS's would.
    emu.set_clock(at);
    emu.rotate(TABLE, account, user, at, mode).0
}

/// Day `d`, two hours in: the emulator's clock ticks on from each
/// `set_clock`, so keys are a few milliseconds younger than whole days.
fn later(d: i64) -> chrono::DateTime<chrono::Utc> {
    day(d) + chrono::Duration::hours(2)
}

fn statuses(keys: &[KeyNow]) -> Vec<(&str, &str)> {
    keys.iter()
        .map(|k| (k.id.as_str(), k.status.as_str()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn old_key_is_deactivated_then_deleted_never_sooner_than_the_graces() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let app = acct.user("app").await;
    let old = app.used_key_aged(95).await; // rotate now; deactivate at day 5 at the earliest

    let r = rotate(&emu, &acct.id, "app", today(), "enforce");
    assert_eq!(r["outcome"], "rotated");
    let new_id = r["new_key_id"].as_str().unwrap().to_string();
    // The application picks the new key up on day 3 (and used the old one until day 2).
    acct.use_key(&old, day(2)).await;
    let value: Value = acct.secret_json(r["secret_arn"].as_str().unwrap()).await;
    let new_key = keyrotor_e2e::world::TestKey {
        id: new_id.clone(),
        secret: value["SecretAccessKey"].as_str().unwrap().to_string(),
    };
    acct.use_key(&new_key, day(3)).await;

    // Deactivation is due at max(old + 100 d, new + install grace 10 d) = day 10.
    for d in [4, 9] {
        let r = rotate(&emu, &acct.id, "app", later(d), "enforce");
        assert!(
            r["performed"].as_array().unwrap().is_empty(),
            "day {d}: {r}"
        );
        assert_eq!(
            statuses(&acct.keys("app").await),
            vec![(old.id.as_str(), "Active"), (new_id.as_str(), "Active")],
            "day {d}"
        );
    }
    let r = rotate(&emu, &acct.id, "app", later(10), "enforce");
    assert_eq!(r["outcome"], "deactivated", "{r}");
    assert_eq!(
        statuses(&acct.keys("app").await),
        vec![(old.id.as_str(), "Inactive"), (new_id.as_str(), "Active")]
    );

    // Deletion is due at max(old + 110 d = day 15, deactivation + recovery grace 10 d = day 20).
    for d in [15, 19] {
        let r = rotate(&emu, &acct.id, "app", later(d), "enforce");
        assert!(
            r["performed"].as_array().unwrap().is_empty(),
            "day {d}: {r}"
        );
        assert_eq!(acct.keys("app").await.len(), 2, "day {d}");
    }
    let r = rotate(&emu, &acct.id, "app", later(20), "enforce");
    assert_eq!(r["outcome"], "deleted", "{r}");
    assert_eq!(
        statuses(&acct.keys("app").await),
        vec![(new_id.as_str(), "Active")]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_mode_changes_nothing_in_iam_or_secrets_manager() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let users = [
        ("due", 95, true),
        ("idle", 95, false),
        ("ancient", 300, true),
    ];
    for (name, age, used) in users {
        let u = acct.user(name).await;
        if used {
            u.used_key_aged(age).await;
        } else {
            u.key_aged(age).await;
        }
    }
    let pair = acct.user("pair").await;
    let k = pair.key_aged(130).await;
    acct.use_key(&k, day(-30)).await;
    pair.used_key_aged(20).await;

    let before = snapshot(&acct).await;
    for name in ["due", "idle", "ancient", "pair"] {
        // Default mode is audit.
        emu.set_clock(today());
        let ran = run(
            emu.keyrotor(TABLE),
            &[
                "rotate",
                "--account",
                &acct.id,
                "--user",
                name,
                "--as-of",
                &today().to_rfc3339(),
                "--output",
                "json",
            ],
        );
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        let r: Value = serde_json::from_str(&ran.stdout).unwrap();
        assert_eq!(r["outcome"], "planned", "{name}: {r}");
        assert!(!r["actions"].as_array().unwrap().is_empty());
        assert!(r["performed"].as_array().unwrap().is_empty());
    }
    assert_eq!(snapshot(&acct).await, before);
    assert_eq!(before.1, 0, "no secret was created");
}

async fn snapshot(acct: &keyrotor_e2e::world::Account<'_>) -> (Vec<Vec<KeyNow>>, usize) {
    let mut all = Vec::new();
    for name in ["due", "idle", "ancient", "pair"] {
        all.push(acct.keys(name).await);
    }
    (all, acct.secret_arns().await.len())
}

#[tokio::test(flavor = "multi_thread")]
async fn keyrotors_own_verification_of_the_new_key_is_not_adoption() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;

    let r = rotate(&emu, &acct.id, "app", today(), "enforce");
    let new_id = r["new_key_id"].as_str().unwrap().to_string();
    // keyrotor signed one STS call with the new key to verify it.
    let last = acct
        .iam
        .get_access_key_last_used()
        .access_key_id(&new_id)
        .send()
        .await
        .unwrap()
        .access_key_last_used
        .unwrap();
    assert_eq!(
        last.service_name(),
        "sts",
        "the new key was verified through STS"
    );

    // The application keeps using the old key: its deactivation is held.
    acct.use_key(&old, day(5)).await;
    let r = rotate(&emu, &acct.id, "app", later(10), "enforce");
    assert_eq!(r["outcome"], "held", "{r}");
    assert_eq!(
        acct.keys("app")
            .await
            .iter()
            .filter(|k| k.status == "Active")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_a_person_switches_back_on_stays_on_for_a_fresh_grace_and_hold() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;

    let r = rotate(&emu, &acct.id, "app", today(), "enforce");
    assert_eq!(r["outcome"], "rotated", "{r}");
    // Nobody uses either key after the rotation: on day 10 the old key goes.
    let r = rotate(&emu, &acct.id, "app", later(10), "enforce");
    assert_eq!(r["outcome"], "deactivated", "{r}");

    // Something broke: a person switches the old key back on.
    acct.iam
        .update_access_key()
        .user_name("app")
        .access_key_id(&old.id)
        .status(aws_sdk_iam::types::StatusType::Active)
        .send()
        .await
        .unwrap();
    let status_of_old = |keys: Vec<KeyNow>| {
        keys.into_iter()
            .find(|k| k.id == old.id)
            .map(|k| k.status)
            .unwrap()
    };

    // Day 12: keyrotor sees it on again; the install grace (10 days) and,
    // while the replacement is unused, the hold (14 days) start afresh.
    for d in [12, 21, 30] {
        let r = rotate(&emu, &acct.id, "app", later(d), "enforce");
        assert_eq!(r["outcome"], "held", "day {d}: {r}");
        assert!(
            r["reason"].as_str().unwrap().contains("switched back on"),
            "day {d}: {r}"
        );
        assert!(
            r["performed"].as_array().unwrap().is_empty(),
            "day {d}: {r}"
        );
        assert_eq!(status_of_old(acct.keys("app").await), "Active", "day {d}");
    }
    // Day 12 + 10 + 14 = day 36: the hold has run out.
    let r = rotate(&emu, &acct.id, "app", later(37), "enforce");
    assert_eq!(r["outcome"], "deactivated", "{r}");
    assert_eq!(status_of_old(acct.keys("app").await), "Inactive");
}

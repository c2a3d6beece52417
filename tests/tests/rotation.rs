//! One member account, users with keys of many ages: `plan` says exactly
//! what DESIGN §4 says is due, `rotate` does it, and IAM and Secrets Manager
//! are then checked through the SDK.

use std::collections::BTreeMap;

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{day, rotate_args, run, today, Emulator, Ran};
use serde_json::Value;

const TABLE: &str = "keyrotor-rotation";

fn as_of(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339()
}

fn json_lines(ran: &Ran) -> Vec<Value> {
    assert_eq!(
        ran.code, 0,
        "stdout: {}\nstderr: {}",
        ran.stdout, ran.stderr
    );
    ran.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// (action, key) pairs of a plan object.
fn actions(plan: &Value) -> Vec<(String, String)> {
    plan["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap().to_string(),
                a["key_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_then_rotate_does_exactly_what_the_policy_says() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let prod = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);

    let fresh = prod.user("fresh").await.used_key_aged(0).await;
    let soon = prod.user("soon").await.used_key_aged(85).await;
    let due = prod.user("due").await.used_key_aged(95).await;
    let idle = prod.user("idle").await.key_aged(95).await;
    let old = prod.user("old").await.used_key_aged(115).await;
    // Mid-rotation, new key adopted: the old one goes off.
    let pair = prod.user("pair").await;
    let pair_old = pair.key_aged(120).await;
    prod.use_key(&pair_old, day(-20)).await;
    let pair_new = pair.used_key_aged(15).await;
    // Mid-rotation, new key never used while the old one still is: hold.
    let held = prod.user("held").await;
    let held_old = held.used_key_aged(120).await;
    let held_new = held.key_aged(15).await;
    let exempt = prod.user("exempt").await;
    exempt.tag("keyrotor:exempt", "true").await;
    let exempt_key = exempt.used_key_aged(200).await;

    let ran = run(
        emu.keyrotor(TABLE),
        &[
            "plan",
            "--account",
            &prod.id,
            "--as-of",
            &as_of(today()),
            "--output",
            "json",
        ],
    );
    let plans: BTreeMap<String, Value> = json_lines(&ran)
        .into_iter()
        .map(|p| (p["user_name"].as_str().unwrap().to_string(), p))
        .collect();
    let a = |u: &str| actions(&plans[u]);
    let pair_of = |x: &str, k: &str| (x.to_string(), k.to_string());
    assert_eq!(plans.len(), 8, "one plan per user");
    assert_eq!(a("fresh"), vec![], "{:?}", fresh.id);
    assert_eq!(a("soon"), vec![pair_of("warn", &soon.id)]);
    assert_eq!(a("due"), vec![pair_of("rotate", &due.id)]);
    assert_eq!(a("idle"), vec![pair_of("retire", &idle.id)]);
    assert_eq!(a("old"), vec![pair_of("rotate", &old.id)]);
    assert_eq!(a("pair"), vec![pair_of("deactivate", &pair_old.id)]);
    assert_eq!(a("held"), vec![pair_of("hold", &held_old.id)]);
    assert_eq!(a("exempt"), vec![]);
    assert_eq!(plans["exempt"]["exempt"], true);
    assert_eq!(plans["due"]["keys"][0]["key_id"], due.id.as_str());
    assert_eq!(plans["due"]["keys"][0]["status"], "Active");
    assert_eq!(
        plans["soon"]["actions"][0]["due"].as_str().unwrap()[..10],
        day(5).to_rfc3339()[..10]
    );

    // Enforce everything that is due.
    let mut outputs = vec![ran.stdout.clone(), ran.stderr.clone()];
    let mut outcomes = BTreeMap::new();
    for user in plans.keys() {
        let (result, ran) = emu.rotate(TABLE, &prod.id, user, today(), "enforce");
        outcomes.insert(user.clone(), result);
        outputs.push(ran.stdout);
        outputs.push(ran.stderr);
    }
    let outcome = |u: &str| outcomes[u]["outcome"].as_str().unwrap().to_string();
    assert_eq!(outcome("fresh"), "noop");
    assert_eq!(outcome("soon"), "warned");
    assert_eq!(outcome("due"), "rotated");
    assert_eq!(outcome("idle"), "retired");
    assert_eq!(outcome("old"), "rotated");
    assert_eq!(outcome("pair"), "deactivated");
    assert_eq!(outcome("held"), "held");
    assert_eq!(outcome("exempt"), "skipped");

    // IAM, through the SDK.
    let status = |keys: &[keyrotor_e2e::world::KeyNow]| -> Vec<(String, String)> {
        keys.iter()
            .map(|k| (k.id.clone(), k.status.clone()))
            .collect()
    };
    assert_eq!(
        status(&prod.keys("fresh").await),
        vec![(fresh.id.clone(), "Active".into())]
    );
    assert_eq!(
        status(&prod.keys("idle").await),
        vec![(idle.id.clone(), "Inactive".into())]
    );
    assert_eq!(
        status(&prod.keys("pair").await),
        vec![
            (pair_old.id.clone(), "Inactive".into()),
            (pair_new.id.clone(), "Active".into())
        ]
    );
    assert_eq!(
        status(&prod.keys("held").await),
        vec![
            (held_old.id.clone(), "Active".into()),
            (held_new.id.clone(), "Active".into())
        ]
    );
    assert_eq!(
        status(&prod.keys("exempt").await),
        vec![(exempt_key.id.clone(), "Active".into())]
    );
    assert!(
        prod.attached_policies("exempt").await.is_empty(),
        "nothing is attached to an exempt user"
    );

    // Rotated users: two active keys, the new one stored for that user only.
    let mut new_secrets = Vec::new();
    for (user, old_key) in [("due", &due), ("old", &old)] {
        let keys = prod.keys(user).await;
        assert_eq!(keys.len(), 2, "{user}");
        assert_eq!(keys[0].id, old_key.id);
        assert!(keys.iter().all(|k| k.status == "Active"));
        let new_id = outcomes[user]["new_key_id"].as_str().unwrap();
        assert_eq!(keys[1].id, new_id);

        let arn = outcomes[user]["secret_arn"].as_str().unwrap();
        let value: Value = prod.secret_json(arn).await;
        assert_eq!(value["AccessKeyId"], new_id, "secret names the new key");
        assert_eq!(value["UserName"], user);
        assert_eq!(value["SecretAccessKey"].as_str().unwrap().len(), 40);
        new_secrets.push(value["SecretAccessKey"].as_str().unwrap().to_string());
        let described = prod
            .secrets
            .describe_secret()
            .secret_id(arn)
            .send()
            .await
            .unwrap();
        assert_eq!(
            described.name(),
            Some(format!("Account_{}_User_{user}_AccessKey", prod.id).as_str())
        );

        let user_arn = prod
            .iam
            .get_user()
            .user_name(user)
            .send()
            .await
            .unwrap()
            .user
            .unwrap()
            .arn;
        let policy = prod
            .secrets
            .get_resource_policy()
            .secret_id(arn)
            .send()
            .await
            .unwrap();
        let policy_text = policy.resource_policy().unwrap();
        let principals: Vec<&str> = policy_text.matches("arn:aws:iam::").collect();
        assert_eq!(principals.len(), 2, "{policy_text}");
        assert_eq!(
            policy_text.matches(&*user_arn).count(),
            2,
            "only {user_arn}: {policy_text}"
        );

        // The user reads its secret through the member stack's managed
        // policy, whose conditions match the secret's keyrotor:user and
        // keyrotor:account tags; keyrotor writes no inline policy.
        assert_eq!(
            prod.attached_policies(user).await,
            [format!(
                "arn:aws:iam::{}:policy/keyrotor-read-own-secret",
                prod.id
            )],
            "{user}"
        );
        let inline = prod
            .iam
            .list_user_policies()
            .user_name(user)
            .send()
            .await
            .unwrap();
        assert!(inline.policy_names().is_empty(), "{user}: {inline:?}");
        let tags: BTreeMap<&str, &str> = described
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)))
            .collect();
        assert_eq!(tags.get("keyrotor:user"), Some(&user), "{tags:?}");
        assert_eq!(
            tags.get("keyrotor:account"),
            Some(&prod.id.as_str()),
            "{tags:?}"
        );
    }

    // A second run changes nothing and creates no key.
    let before: Vec<_> = {
        let mut v = Vec::new();
        for u in plans.keys() {
            v.push(status(&prod.keys(u).await));
        }
        v
    };
    let versions_before = secret_versions(&prod).await;
    for user in plans.keys() {
        let (result, ran) = emu.rotate(TABLE, &prod.id, user, today(), "enforce");
        assert!(result.get("new_key_id").is_none(), "{user}: {result}");
        assert!(
            result["performed"].as_array().unwrap().is_empty(),
            "{user}: {result}"
        );
        let expected = match user.as_str() {
            "held" => "held",
            "exempt" => "skipped",
            // Its warning was sent on the first run: one per milestone.
            _ => "noop",
        };
        assert_eq!(result["outcome"], expected, "{user}: {result}");
        outputs.push(ran.stdout);
        outputs.push(ran.stderr);
    }
    assert_eq!(
        versions_before,
        secret_versions(&prod).await,
        "second run wrote a secret"
    );
    let mut after = Vec::new();
    for u in plans.keys() {
        after.push(status(&prod.keys(u).await));
    }
    assert_eq!(before, after, "second run changed IAM");

    // No new secret access key in any output, nor in the state table.
    let items = keyrotor_e2e::scan_table(&org.hub, TABLE).await;
    assert!(!items.is_empty());
    for secret in &new_secrets {
        for out in &outputs {
            assert!(!out.contains(secret.as_str()), "secret leaked into output");
        }
        assert!(
            !items.contains(secret.as_str()),
            "secret leaked into the table"
        );
    }
}

/// A member account whose stack predates the `keyrotor-read-own-secret`
/// policy: the rotation is refused before any key exists, with a message
/// that names the member stack; once the policy is there, it goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_member_account_without_the_read_policy_gets_no_unstored_key() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("old-stack").await;
    let policy_arn = format!("arn:aws:iam::{}:policy/keyrotor-read-own-secret", acct.id);
    acct.iam
        .delete_policy()
        .policy_arn(&policy_arn)
        .send()
        .await
        .expect("delete the managed policy");
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;

    let refused = refused_rotation(&emu, &acct, "app", &old).await;
    assert!(
        refused.contains(&policy_arn) && refused.contains("infra/member-role.yaml"),
        "the error names the policy and the member stack: {refused}"
    );
    assert!(acct.secret_arns().await.is_empty());

    // The member stack is updated: the same rotation now succeeds (no
    // intent was left behind to recover).
    acct.iam
        .create_policy()
        .policy_name("keyrotor-read-own-secret")
        .policy_document(keyrotor_e2e::world::read_own_secret_policy_document().to_string())
        .send()
        .await
        .expect("create the managed policy");
    let (result, _) = emu.rotate(TABLE, &acct.id, "app", today(), "enforce");
    assert_eq!(result["outcome"], "rotated", "{result}");
    assert!(result["performed"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["action"] != "delete-orphan"));
    assert_eq!(acct.attached_policies("app").await, [policy_arn]);
    assert_eq!(acct.keys("app").await.len(), 2);
}

/// The user's secret was scheduled for deletion by hand: Secrets Manager
/// refuses the new key (keyrotor does not read the secret before it creates
/// the key), so the key is deleted again, the old one stays, and the error
/// says what to do; once the secret is restored, the rotation goes through.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_scheduled_for_deletion_refuses_the_key_which_is_deleted_again() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("doomed").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let old = acct.user("app").await.used_key_aged(95).await;
    let name = format!("Account_{}_User_app_AccessKey", acct.id);
    acct.secrets
        .create_secret()
        .name(&name)
        .secret_string("{}")
        .send()
        .await
        .expect("create the secret");
    acct.secrets
        .delete_secret()
        .secret_id(&name)
        .recovery_window_in_days(7)
        .send()
        .await
        .expect("schedule its deletion");

    let refused = refused_rotation(&emu, &acct, "app", &old).await;
    assert!(
        refused.contains("scheduled for deletion") && refused.contains("RestoreSecret"),
        "the error says what to do: {refused}"
    );
    let versions = acct
        .secrets
        .list_secret_version_ids()
        .secret_id(&name)
        .include_deprecated(true)
        .send()
        .await
        .expect("list the versions");
    assert_eq!(
        versions.versions().len(),
        1,
        "no value was stored: {versions:?}"
    );

    acct.secrets
        .restore_secret()
        .secret_id(&name)
        .send()
        .await
        .expect("restore the secret");
    let (result, _) = emu.rotate(TABLE, &acct.id, "app", today(), "enforce");
    assert_eq!(result["outcome"], "rotated", "{result}");
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let value: Value = acct.secret_json(&name).await;
    assert_eq!(value["AccessKeyId"], result["new_key_id"], "{result}");
}

/// Runs an enforce `rotate` of `user` that must fail, and checks that the
/// user still has `old` alone, active (no key created, or the refused one
/// deleted again); returns the error output.
async fn refused_rotation(
    emu: &Emulator,
    acct: &keyrotor_e2e::world::Account<'_>,
    user: &str,
    old: &keyrotor_e2e::world::TestKey,
) -> String {
    let args = rotate_args(&acct.id, user, today(), "enforce");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run(emu.keyrotor(TABLE), &args);
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    let keys = acct.keys(user).await;
    assert_eq!(keys.len(), 1, "only the old key is left: {keys:?}");
    assert_eq!(
        (keys[0].id.as_str(), keys[0].status.as_str()),
        (old.id.as_str(), "Active")
    );
    refused.stderr
}

/// Every secret of the account with its version ids.
async fn secret_versions(acct: &keyrotor_e2e::world::Account<'_>) -> Vec<(String, Vec<String>)> {
    let mut all = Vec::new();
    for arn in acct.secret_arns().await {
        let mut ids: Vec<String> = acct
            .secrets
            .list_secret_version_ids()
            .secret_id(&arn)
            .send()
            .await
            .unwrap()
            .versions()
            .iter()
            .filter_map(|v| v.version_id().map(str::to_string))
            .collect();
        ids.sort();
        all.push((arn, ids));
    }
    assert!(!all.is_empty());
    all
}

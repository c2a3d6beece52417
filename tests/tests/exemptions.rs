//! Exemptions (group, tag, path), force, and a central secrets account.

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{rotate_args, run, today, Emulator};
use serde_json::Value;

const TABLE: &str = "keyrotor-exemptions";

fn rotate_with(
    emu: &Emulator,
    env: &[(&str, &str)],
    account: &str,
    user: &str,
    extra: &[&str],
) -> Value {
    let mut cmd = emu.keyrotor(TABLE);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut args = rotate_args(account, user, today(), "enforce");
    args.extend(extra.iter().map(|s| s.to_string()));
    let ran = run(cmd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(ran.code, 0, "{user}: {}", ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn exempt_users_are_skipped_with_a_reason_and_keep_their_keys() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    acct.iam
        .create_group()
        .group_name("no-rotation")
        .send()
        .await
        .unwrap();
    let grouped = acct.user("grouped").await;
    grouped.used_key_aged(200).await;
    acct.iam
        .add_user_to_group()
        .group_name("no-rotation")
        .user_name("grouped")
        .send()
        .await
        .unwrap();
    acct.iam
        .create_user()
        .user_name("pathed")
        .path("/break-glass/")
        .send()
        .await
        .unwrap();
    let pathed_key = acct
        .iam
        .create_access_key()
        .user_name("pathed")
        .send()
        .await
        .unwrap();
    let tagged = acct.user("tagged").await;
    tagged.tag("keyrotor:exempt", "TRUE").await;
    tagged.used_key_aged(200).await;
    let plain = acct.user("plain").await;
    plain.used_key_aged(200).await;

    let env = [
        ("KEYROTOR_EXEMPT_GROUP", "no-rotation"),
        ("KEYROTOR_EXEMPT_PATHS", "/break-glass/"),
    ];
    for (user, why) in [
        ("grouped", "no-rotation"),
        ("pathed", "/break-glass/"),
        ("tagged", "keyrotor:exempt"),
    ] {
        let r = rotate_with(&emu, &env, &acct.id, user, &[]);
        assert_eq!(r["outcome"], "skipped", "{user}: {r}");
        assert_eq!(r["exempt"], true);
        assert!(r["reason"].as_str().unwrap().contains(why), "{user}: {r}");
        assert_eq!(acct.keys(user).await.len(), 1, "{user} keeps its one key");
    }
    assert!(pathed_key.access_key.is_some());
    let r = rotate_with(&emu, &env, &acct.id, "plain", &[]);
    assert_eq!(r["outcome"], "rotated", "{r}");
}

#[tokio::test(flavor = "multi_thread")]
async fn force_rotates_a_young_key_and_plan_for_one_user_shows_it_is_not_due() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("prod").await;
    run(emu.keyrotor(TABLE), &["init"]);
    let key = acct.user("leaked").await.used_key_aged(3).await;

    let plan = run(
        emu.keyrotor(TABLE),
        &[
            "plan",
            "--account",
            &acct.id,
            "--user",
            "leaked",
            "--as-of",
            &today().to_rfc3339(),
            "--output",
            "json",
        ],
    );
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: Value = serde_json::from_str(plan.stdout.trim()).unwrap();
    assert_eq!(plan["actions"], serde_json::json!([]));

    let r = rotate_with(&emu, &[], &acct.id, "leaked", &[]);
    assert_eq!(r["outcome"], "noop");
    let r = rotate_with(&emu, &[], &acct.id, "leaked", &["--force"]);
    assert_eq!(r["outcome"], "rotated", "{r}");
    let keys = acct.keys("leaked").await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].id, key.id);
    assert_eq!(keys[1].id, r["new_key_id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_central_secrets_account_holds_the_secret_readable_by_the_member_user_only() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let member = org.account("prod").await;
    let vault = org.account("secrets").await;
    run(emu.keyrotor(TABLE), &["init"]);
    member.user("app").await.used_key_aged(95).await;

    let kms_arn = format!("arn:aws:kms:us-east-1:{}:key/keyrotor", vault.id);
    let env = [
        ("KEYROTOR_SECRETS_ACCOUNT", vault.id.as_str()),
        ("KEYROTOR_KMS_KEY_ID", kms_arn.as_str()),
    ];
    let r = rotate_with(&emu, &env, &member.id, "app", &[]);
    assert_eq!(r["outcome"], "rotated", "{r}");
    let arn = r["secret_arn"].as_str().unwrap();
    assert!(
        arn.contains(&format!(":{}:secret:", vault.id)),
        "stored in the central account: {arn}"
    );
    assert!(member.secret_arns().await.is_empty());

    let value: Value = vault.secret_json(arn).await;
    assert_eq!(value["AccessKeyId"], r["new_key_id"]);
    let policy = vault
        .secrets
        .get_resource_policy()
        .secret_id(arn)
        .send()
        .await
        .unwrap();
    let user_arn = format!("arn:aws:iam::{}:user/app", member.id);
    assert!(policy.resource_policy().unwrap().contains(&user_arn));
    // The member user's own account attaches its managed policy: the user
    // reads the central secret through the secret's keyrotor:user and
    // keyrotor:account tags, which name the member account.
    assert_eq!(
        member.attached_policies("app").await,
        [format!(
            "arn:aws:iam::{}:policy/keyrotor-read-own-secret",
            member.id
        )]
    );
    let tags = vault
        .secrets
        .describe_secret()
        .secret_id(arn)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = tags
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert!(
        tags.contains(&("keyrotor:account", member.id.as_str()))
            && tags.contains(&("keyrotor:user", "app")),
        "the central secret is tagged for the member user: {tags:?}"
    );
}

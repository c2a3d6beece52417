//! The hub stack (`infra/hub.yaml`) deployed in the emulator's
//! CloudFormation, then used by `keyrotor produce` and `keyrotor work`
//!; and the member stack
//! (`infra/member-role.yaml`) deployed in a member account, then used by
//! `keyrotor rotate`.
//!
//! The event source mapping is disabled (`EventSourceMappingEnabled=false`):
//! the emulator would otherwise try to run the worker Lambda itself. The
//! functions' code is a placeholder here; `lambda_package.rs` deploys the
//! real zips and runs them.

use keyrotor_e2e::hub::{
    deploy_hub, deploy_member_stack, function_configuration, output, update_hub, HubCode,
    MANAGEMENT,
};
use keyrotor_e2e::world::{read_own_secret_policy_document, Org};
use keyrotor_e2e::{policy_document, run, today, Emulator};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_stack_deploys_and_keyrotor_rotates_through_it() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("deployed").await;
    let user = acct.user("app").await;
    let old = user.used_key_aged(95).await;
    emu.set_clock(today());

    let outputs = deploy_hub(&emu, &HubCode::Placeholders);
    let queue = output(&outputs, "QueueUrl").to_string();
    let table = output(&outputs, "TableName").to_string();
    let topic = output(&outputs, "TopicArn").to_string();
    output(&outputs, "DlqUrl");
    assert!(
        queue.ends_with(".fifo"),
        "the default queue type is FIFO: {queue}"
    );
    assert!(topic.starts_with("arn:aws:sns:"), "{topic}");
    // The producer lists users through the read-only member role; the
    // worker writes keys through the member role.
    let env =
        |function: &str| function_configuration(&emu, function)["Environment"]["Variables"].clone();
    let producer_env = env("keyrotor-producer");
    assert_eq!(
        producer_env["KEYROTOR_PRODUCER_ROLE_NAME"], "keyrotor-member-reader",
        "{producer_env}"
    );
    assert_eq!(producer_env["KEYROTOR_ROLE_NAME"], "keyrotor-member");
    // FleetGroups left blank: the fleet is the worker Lambda's.
    let fleet_groups = |env: &Value| env["KEYROTOR_FLEET_GROUPS"].to_string();
    assert_eq!(
        fleet_groups(&producer_env).trim_matches('"'),
        "10",
        "MaximumConcurrency's default (moto keeps it a number): {producer_env}"
    );
    let worker_env = env("keyrotor-worker");
    assert_eq!(worker_env["KEYROTOR_ROLE_NAME"], "keyrotor-member");
    assert!(
        worker_env.get("KEYROTOR_PRODUCER_ROLE_NAME").is_none(),
        "{worker_env}"
    );

    let keyrotor = || {
        let mut cmd = emu.keyrotor(&table);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };

    // The producer assumes the role KEYROTOR_PRODUCER_ROLE_NAME names in
    // each member account: a name the account lacks fails the account.
    let as_of = today().to_rfc3339();
    let produce = |role: &str| {
        let mut cmd = keyrotor();
        cmd.env("KEYROTOR_PRODUCER_ROLE_NAME", role);
        run(cmd, &["produce", "--as-of", &as_of, "--output", "json"])
    };
    let missing = produce("keyrotor-no-such-role");
    let summary: Value = serde_json::from_str(&missing.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", missing.stdout, missing.stderr));
    assert_eq!(summary["enqueued"], 0, "{summary}");
    assert!(
        summary["failed_accounts"].to_string().contains(&acct.id),
        "{summary}"
    );

    // With the stack's reader role, the producer enqueues the due user on
    // the stack's queue and records its run in the stack's table (no
    // `keyrotor init`).
    let produced = produce(
        producer_env["KEYROTOR_PRODUCER_ROLE_NAME"]
            .as_str()
            .expect("a role name"),
    );
    assert_eq!(produced.code, 0, "{}\n{}", produced.stdout, produced.stderr);
    let summary: Value = serde_json::from_str(&produced.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", produced.stdout));
    assert_eq!(summary["enqueued"], 1, "{summary}");

    // The worker drains it and rotates the key.
    let worked = run(keyrotor(), &["work", "--until-idle", "3"]);
    assert_eq!(worked.code, 0, "{}\n{}", worked.stdout, worked.stderr);

    // Pools working the stack's queue: FleetGroups replaces it.
    update_hub(&emu, &["FleetGroups=4096"]);
    let updated = env("keyrotor-producer");
    assert_eq!(
        fleet_groups(&updated).trim_matches('"'),
        "4096",
        "{updated}"
    );
    assert_eq!(
        env("keyrotor-worker").get("KEYROTOR_FLEET_GROUPS"),
        None,
        "only the producer shares out the fleet's groups"
    );

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "a new key was created: {keys:?}");
    assert_eq!(keys[0].id, old.id);
    assert_ne!(keys[1].id, old.id);
    let secret = acct
        .secret_json(&format!("Account_{}_User_app_AccessKey", acct.id))
        .await;
    assert_eq!(secret["AccessKeyId"], keys[1].id.as_str(), "{secret}");
}

/// One statement of a policy document, by `Sid`.
fn statement<'d>(doc: &'d Value, sid: &str) -> &'d Value {
    doc["Statement"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["Sid"] == sid))
        .unwrap_or_else(|| panic!("no statement {sid}: {doc}"))
}

/// Every action an `Allow` of the document names.
fn allowed_actions(doc: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for st in doc["Statement"].as_array().expect("statements") {
        if st["Effect"] != "Allow" {
            continue;
        }
        match &st["Action"] {
            Value::String(a) => out.push(a.clone()),
            Value::Array(all) => {
                out.extend(all.iter().filter_map(|a| a.as_str().map(str::to_string)))
            }
            other => panic!("an action that is neither a string nor a list: {other}"),
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_member_stack_creates_what_keyrotor_assumes_and_attaches() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    // No harness-made roles: the StackSet's template makes them.
    let acct = org.account_without_member_role("stackset").await;
    let kms = format!(
        "arn:aws:kms:us-east-1:{}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        acct.id
    );
    let operators = "arn:aws:iam::123456789012:role/ops,\
                     arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_Ops_*";
    let outputs = deploy_member_stack(
        &emu,
        &acct.id,
        &[
            &format!("OperatorRoleArns={operators}"),
            &format!("SecretsKmsKeyArn={kms}"),
        ],
    );
    let policy_arn = format!("arn:aws:iam::{}:policy/keyrotor-read-own-secret", acct.id);
    assert_eq!(output(&outputs, "ReadOwnSecretPolicyArn"), policy_arn);

    let role = |name: &'static str| {
        let iam = acct.iam.clone();
        async move {
            let role = iam
                .get_role()
                .role_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get role {name}: {e:?}"))
                .role
                .expect("a role");
            let trust =
                policy_document(role.assume_role_policy_document().expect("a trust policy"));
            let inline = iam
                .get_role_policy()
                .role_name(name)
                .policy_name(name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("get the inline policy of {name}: {e:?}"));
            (trust, policy_document(inline.policy_document()))
        }
    };

    // The worker's role: trusted by the worker and the operators, not by
    // the producer; writes keys, attaches one policy, never inline ones.
    let (trust, perms) = role("keyrotor-member").await;
    let trusted = &trust["Statement"][0]["Condition"]["ArnLike"]["aws:PrincipalArn"];
    let mut expected: Vec<&str> = vec!["arn:aws:iam::123456789012:role/keyrotor-worker"];
    expected.extend(operators.split(','));
    assert_eq!(trusted, &json!(expected), "{trust}");
    assert!(!trust.to_string().contains("keyrotor-producer"), "{trust}");
    let actions = allowed_actions(&perms);
    assert!(
        actions.contains(&"iam:CreateAccessKey".to_string()),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a == "iam:PutUserPolicy"),
        "{actions:?}"
    );
    let attach = statement(&perms, "AttachTheReadOwnSecretPolicyOnly");
    assert_eq!(attach["Action"], "iam:AttachUserPolicy");
    assert_eq!(
        attach["Condition"]["ArnEquals"]["iam:PolicyARN"],
        policy_arn.as_str()
    );
    let deny = statement(&perms, "NeverWriteKeysOfExemptUsers");
    assert_eq!(deny["Effect"], "Deny");
    assert_eq!(
        deny["Action"],
        json!([
            "iam:CreateAccessKey",
            "iam:UpdateAccessKey",
            "iam:DeleteAccessKey"
        ])
    );
    assert_eq!(
        deny["Condition"]["StringEqualsIgnoreCase"]["iam:ResourceTag/keyrotor:exempt"],
        "true"
    );

    // The producer's role: trusted by the producer only, reads only (the
    // user of an exposed key: GetAccessKeyLastUsed).
    let (trust, perms) = role("keyrotor-member-reader").await;
    assert_eq!(
        trust["Statement"][0]["Condition"]["ArnEquals"]["aws:PrincipalArn"],
        "arn:aws:iam::123456789012:role/keyrotor-producer",
        "{trust}"
    );
    assert_eq!(
        allowed_actions(&perms),
        ["iam:GetAccessKeyLastUsed", "iam:GetGroup", "iam:ListUsers"]
    );

    // The managed policy is the harness's (the one every other test's
    // accounts get), plus decryption with the configured key.
    let policy = acct
        .iam
        .get_policy()
        .policy_arn(&policy_arn)
        .send()
        .await
        .expect("the managed policy exists")
        .policy
        .expect("a policy");
    let version = acct
        .iam
        .get_policy_version()
        .policy_arn(&policy_arn)
        .version_id(policy.default_version_id().expect("a default version"))
        .send()
        .await
        .expect("its default version")
        .policy_version
        .expect("a version");
    let doc = policy_document(version.document().expect("a document"));
    let harness = read_own_secret_policy_document();
    assert_eq!(doc["Statement"][0], harness["Statement"][0], "{doc}");
    assert_eq!(
        doc["Statement"][1],
        json!({
            "Sid": "DecryptOwnRotatedKey",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms,
            "Condition": {"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}
        }),
        "{doc}"
    );

    // keyrotor rotates through the stack's role and attaches its policy.
    run(emu.keyrotor("keyrotor-stackset"), &["init"]);
    let user = acct.user("app").await;
    let old = user.used_key_aged(95).await;
    emu.set_clock(today());
    let (result, _) = emu.rotate("keyrotor-stackset", &acct.id, "app", today(), "enforce");
    assert_eq!(result["outcome"], "rotated", "{result}");
    assert_ne!(result["new_key_id"], old.id.as_str());
    assert_eq!(acct.attached_policies("app").await, [policy_arn]);
}

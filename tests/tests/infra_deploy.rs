//! The hub stack (`infra/hub.yaml`) deployed in the emulator's
//! CloudFormation, then used by `keyrotor produce` and `keyrotor work`
//! (issue #5, "what must be shown").
//!
//! The event source mapping is disabled (`EventSourceMappingEnabled=false`):
//! the emulator would otherwise try to run the worker Lambda itself. The
//! functions' code is a placeholder here; `lambda_package.rs` deploys the
//! real zips and runs them.

use keyrotor_e2e::hub::{deploy_hub, output, HubCode, MANAGEMENT};
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{run, today, Emulator};
use serde_json::Value;

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

    let keyrotor = || {
        let mut cmd = emu.keyrotor(&table);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };

    // The producer enqueues the due user on the stack's queue and records
    // its run in the stack's table (no `keyrotor init`).
    let as_of = today().to_rfc3339();
    let produced = run(
        keyrotor(),
        &["produce", "--as-of", &as_of, "--output", "json"],
    );
    assert_eq!(produced.code, 0, "{}\n{}", produced.stdout, produced.stderr);
    let summary: Value = serde_json::from_str(&produced.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", produced.stdout));
    assert_eq!(summary["enqueued"], 1, "{summary}");

    // The worker drains it and rotates the key.
    let worked = run(keyrotor(), &["work", "--until-idle", "3"]);
    assert_eq!(worked.code, 0, "{}\n{}", worked.stdout, worked.stderr);

    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "a new key was created: {keys:?}");
    assert_eq!(keys[0].id, old.id);
    assert_ne!(keys[1].id, old.id);
    let secret = acct
        .secret_json(&format!("Account_{}_User_app_AccessKey", acct.id))
        .await;
    assert_eq!(secret["AccessKeyId"], keys[1].id.as_str(), "{secret}");
}

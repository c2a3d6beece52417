//! Exposed-key emergency rotation: an AWS Health event (the documentation's
//! shape) delivered to the producer's handler becomes a `force` message
//! marked `incident`; the worker replaces the key at once and switches the
//! exposed one off, without install grace or adoption hold, and reports
//! the quarantine policy AWS attached without removing it.
//! `keyrotor rotate --exposed KEY --account ID` does the same by hand,
//! finding the user from the key.

use std::sync::Arc;

use clap::Parser;
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{drain_queue, init_stack, run, subscribe_queue, today, Emulator};
use keyrotor_producer::Producer;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::{Settings, SettingsArgs};
use serde_json::{json, Value};

const MANAGEMENT: &str = "123456789012";
const TABLE: &str = "keyrotor-incident";
const QUARANTINE: &str = "AWSCompromisedKeyQuarantineV2";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: SettingsArgs,
}

/// The AWS Health event of an exposed key, as the AWS Health
/// documentation shows it.
fn health_event(account: &str, key_id: &str) -> Value {
    json!({
        "version": "0",
        "id": "121345678-1234-1234-1234-123456789012",
        "detail-type": "AWS Health Event",
        "source": "aws.health",
        "account": account,
        "time": "2026-06-01T06:27:57Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventArn": "arn:aws:health:global::event/AWS_RISK_CREDENTIALS_EXPOSED_XXXXXXXXXXXXXXXXX",
            "service": "RISK",
            "eventTypeCode": "AWS_RISK_CREDENTIALS_EXPOSED",
            "eventTypeCategory": "issue",
            "startTime": "Mon, 01 Jun 2026 06:10:09 GMT",
            "eventDescription": [{
                "language": "en_US",
                "latestDescription": "Your AWS Access Key was found publicly available."
            }],
            "affectedEntities": [{"entityValue": key_id, "tags": {}}]
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_health_event_replaces_the_exposed_key_and_switches_it_off_at_once() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let made = init_stack(&emu, TABLE, "incident");
    let queue = made.queue_url;
    let topic = made.topic_arn;
    let config = emu.hub_config().await;
    let events = subscribe_queue(&config, &topic, "incident-events", None).await;

    let acct = org.account("incident0").await;
    // A 30-day-old key in daily use: nothing is due for it, but it leaked.
    let exposed = acct.user("app").await.used_key_aged(30).await;
    let bystander = acct.user("other").await.used_key_aged(30).await;
    // AWS attaches its quarantine policy to the user of a leaked key.
    let policy_arn = acct
        .iam
        .create_policy()
        .policy_name(QUARANTINE)
        .policy_document(
            json!({"Version": "2012-10-17", "Statement": [{"Effect": "Deny",
                "Action": ["iam:CreateAccessKey"], "Resource": "*"}]})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .policy
        .and_then(|p| p.arn)
        .unwrap();
    acct.iam
        .attach_user_policy()
        .user_name("app")
        .policy_arn(&policy_arn)
        .send()
        .await
        .unwrap();
    emu.set_clock(today());

    // The producer function, as deployed, given the Health event.
    let args = Args::parse_from([
        "producer",
        "--table",
        TABLE,
        "--queue-url",
        queue.as_str(),
        "--topic-arn",
        topic.as_str(),
        "--mode",
        "enforce",
        "--exclude-accounts",
        MANAGEMENT,
    ]);
    let settings = Arc::new(Settings::from_args(&args.settings).unwrap());
    let aws = AwsContext::from_config(config.clone(), &settings.role_name);
    let producer = Producer::new(settings.clone(), aws).await.unwrap();
    let answer = keyrotor_producer::lambda::handle(
        &producer,
        &settings,
        health_event(&acct.id, &exposed.id),
    )
    .await
    .unwrap();
    assert_eq!(
        answer["users"],
        json!([{"user_name": "app", "key_id": exposed.id}]),
        "{answer}"
    );
    assert_eq!(answer["mode"], "enforce");
    assert_eq!(answer["code"], "AWS_RISK_CREDENTIALS_EXPOSED");
    let run_id = answer["run_id"].as_str().unwrap().to_string();
    // Another Health event is refused, and names why.
    let mut other = health_event(&acct.id, &exposed.id);
    other["detail"]["eventTypeCode"] = json!("AWS_EC2_INSTANCE_RETIREMENT_SCHEDULED");
    let refused = keyrotor_producer::lambda::handle(&producer, &settings, other).await;
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("not an AWS Health exposed-key event"));

    let keyrotor = || {
        let mut cmd = emu.keyrotor(TABLE);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };
    let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
    assert_eq!(worked.code, 0, "{}", worked.stderr);

    // The exposed key is off at once; its replacement is on and stored.
    let keys = acct.keys("app").await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let old = keys.iter().find(|k| k.id == exposed.id).unwrap();
    assert_eq!(
        old.status, "Inactive",
        "switched off without grace: {keys:?}"
    );
    let new = keys.iter().find(|k| k.id != exposed.id).unwrap();
    assert_eq!(new.status, "Active");
    let arns = acct.secret_arns().await;
    assert_eq!(arns.len(), 1);
    let secret = acct.secret_json(&arns[0]).await;
    assert_eq!(secret["AccessKeyId"], new.id.as_str());
    // The quarantine policy stays, and the bystander is untouched.
    let attached = acct.attached_policies("app").await;
    assert!(
        attached.iter().any(|p| p.contains(QUARANTINE)),
        "{attached:?}"
    );
    assert_eq!(acct.keys("other").await[0].id, bystander.id);
    assert_eq!(acct.keys("other").await[0].status, "Active");

    let report = run(keyrotor(), &["report", run_id.as_str(), "--format", "json"]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    let result = &report["results"][0];
    assert_eq!(result["outcome"], "rotated", "{report}");
    let actions: Vec<&str> = result["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["rotate", "deactivate"], "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("switched off at once"), "{reason}");
    assert!(
        reason.contains(&format!("AWS attached {QUARANTINE}")),
        "{reason}"
    );
    assert!(reason.contains("detach-user-policy"), "{reason}");

    let published: Vec<Value> = drain_queue(&config, &events)
        .await
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .filter(|e: &Value| e["type"] == "keyrotor.result.v1")
        .collect();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0]["incident"], true);
    assert_eq!(published[0]["outcome"], "rotated");
    assert_eq!(published[0]["quarantine_policy"], QUARANTINE);
    assert!(!serde_json::to_string(&published)
        .unwrap()
        .contains(&exposed.secret));

    // By hand: the user is found from the key.
    let leaked = acct.user("batch").await.used_key_aged(10).await;
    let by_hand = run(
        keyrotor(),
        &[
            "rotate",
            "--exposed",
            leaked.id.as_str(),
            "--account",
            acct.id.as_str(),
            "--output",
            "json",
        ],
    );
    assert_eq!(by_hand.code, 0, "{}", by_hand.stderr);
    let result: Value = serde_json::from_str(&by_hand.stdout).unwrap();
    assert_eq!(result["user_name"], "batch", "{result}");
    assert_eq!(result["outcome"], "rotated", "{result}");
    let keys = acct.keys("batch").await;
    assert_eq!(
        keys.iter().find(|k| k.id == leaked.id).unwrap().status,
        "Inactive",
        "{keys:?}"
    );
    let unknown = run(
        keyrotor(),
        &[
            "rotate",
            "--exposed",
            "AKIAUNKNOWNUNKNOWN00",
            "--account",
            acct.id.as_str(),
        ],
    );
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(
        unknown.stderr.contains("does not know the key"),
        "{}",
        unknown.stderr
    );
}

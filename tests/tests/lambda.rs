//! The worker Lambda handler: each record on its own, failures reported as
//! batch item failures, and on a FIFO queue the rest of a failed group's
//! records fail with it (so SQS redelivers them in order).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use clap::Parser;
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{run, today, Emulator};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::{Settings, SettingsArgs};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::store::results::ResultStore;
use keyrotor_shared::store::runs::RunStore;
use keyrotor_worker::lambda::handle_sqs_event;
use keyrotor_worker::setup::build_worker;
use serde_json::json;

const TABLE: &str = "keyrotor-lambda";

#[derive(Parser)]
struct Args {
    #[command(flatten)]
    settings: SettingsArgs,
}

fn record(id: &str, group: &str, body: String) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_string());
    m.body = Some(body);
    m.attributes = HashMap::from([("MessageGroupId".to_string(), group.to_string())]);
    m
}

/// A message of the run, signed with its key as the producer would.
fn body(account: &str, user: &str, key: &str) -> String {
    let mut m: WorkMessage = serde_json::from_value(
        json!({"v": 1, "run_id": "lambda-run", "account_id": account, "account_name": "x",
               "owner_email": null, "user_name": user, "as_of": today(), "mode": "enforce", "force": false}),
    )
    .unwrap();
    m.sign(key);
    m.encode()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_record_fails_only_the_rest_of_its_fifo_group() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    run(emu.keyrotor(TABLE), &["init"]);
    let a = org.account("a").await;
    let b = org.account("b").await;
    for user in ["a1", "a3"] {
        a.user(user).await.used_key_aged(95).await;
    }
    b.user("b1").await.used_key_aged(95).await;
    emu.set_clock(today());

    let args = Args::parse_from([
        "worker",
        "--table",
        TABLE,
        "--mode",
        "enforce",
        "--allow-future-as-of",
        "true",
    ]);
    let settings = Arc::new(Settings::from_args(&args.settings).unwrap());
    // The run the messages belong to, as a producer records it.
    let key = RunStore::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE)
        .start("lambda-run", today(), Mode::Enforce, &[])
        .await
        .unwrap();
    let aws = AwsContext::from_config(emu.hub_config().await, &settings.role_name);
    let worker = build_worker(settings, &aws).unwrap();

    let mut event = SqsEvent::default();
    event.records = vec![
        record("m-a1", &a.id, body(&a.id, "a1", &key)),
        record("m-a2", &a.id, "{not json".to_string()),
        record("m-a3", &a.id, body(&a.id, "a3", &key)),
        record("m-b1", &b.id, body(&b.id, "b1", &key)),
    ];
    let response = handle_sqs_event(&worker, event).await;
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, vec!["m-a2", "m-a3"]);

    let results = ResultStore::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE);
    let done = |acct: String, user: &'static str| {
        let results = results.clone();
        async move {
            results
                .find("lambda-run", &acct, user)
                .await
                .unwrap()
                .map(|(r, _)| r.outcome.to_string())
        }
    };
    assert_eq!(done(a.id.clone(), "a1").await.as_deref(), Some("rotated"));
    assert_eq!(
        done(a.id.clone(), "a3").await,
        None,
        "held back behind its group's failure"
    );
    assert_eq!(
        done(b.id.clone(), "b1").await.as_deref(),
        Some("rotated"),
        "another group goes on"
    );
    assert_eq!(a.keys("a3").await.len(), 1);
}

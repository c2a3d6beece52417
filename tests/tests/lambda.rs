//! The worker Lambda handler: each record on its own, failures reported as
//! batch item failures, and on a FIFO queue the rest of a failed group's
//! records fail with it (so SQS redelivers them in order).

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use clap::Parser;
use keyrotor_e2e::world::{Account, Org};
use keyrotor_e2e::{init_queue, run, today, Emulator};
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::{Settings, SettingsArgs};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::store::results::ResultStore;
use keyrotor_shared::store::runs::RunStore;
use keyrotor_worker::lambda::handle_sqs_event;
use keyrotor_worker::process::Worker;
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
    let response = handle_sqs_event(&worker, event, None).await;
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

/// Receives the queue's visible messages (one receive), as the event source
/// mapping's records.
async fn receive(config: &aws_config::SdkConfig, queue: &str) -> Vec<SqsMessage> {
    let got = aws_sdk_sqs::Client::new(config)
        .receive_message()
        .queue_url(queue)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .expect("receive");
    got.messages()
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = m.message_id().map(str::to_string);
            record.receipt_handle = m.receipt_handle().map(str::to_string);
            record.body = m.body().map(str::to_string);
            record.attributes = m
                .attributes()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                .collect();
            record
        })
        .collect()
}

/// One account's users, each with a key 95 days old, a worker of the run
/// "lambda-run" with a work queue, and the records of one receive of the
/// queue, which holds one message of the run per user.
struct Queued<'e> {
    org: Org<'e>,
    account: Account<'e>,
    queue: String,
    worker: Worker,
    records: Vec<SqsMessage>,
}

async fn queued<'e>(emu: &'e Emulator, prefix: &str, users: &[&str]) -> Queued<'e> {
    let org = Org::new(emu).await;
    let queue = init_queue(emu, TABLE, prefix);
    let account = org.account("a").await;
    for user in users {
        account.user(user).await.used_key_aged(95).await;
    }
    emu.set_clock(today());
    let args = Args::parse_from([
        "worker",
        "--table",
        TABLE,
        "--queue-url",
        &queue,
        "--mode",
        "enforce",
        "--allow-future-as-of",
        "true",
    ]);
    let settings = Arc::new(Settings::from_args(&args.settings).unwrap());
    let key = RunStore::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE)
        .start("lambda-run", today(), Mode::Enforce, &[])
        .await
        .unwrap();
    let aws = AwsContext::from_config(emu.hub_config().await, &settings.role_name);
    let worker = build_worker(settings, &aws).unwrap();
    let sqs = aws_sdk_sqs::Client::new(&org.hub);
    for user in users {
        sqs.send_message()
            .queue_url(&queue)
            .message_body(body(&account.id, user, &key))
            .message_group_id(&account.id)
            .message_deduplication_id(*user)
            .send()
            .await
            .expect("send");
    }
    let records = receive(&org.hub, &queue).await;
    assert_eq!(
        records.len(),
        users.len(),
        "one group's messages in one batch"
    );
    Queued {
        org,
        account,
        queue,
        worker,
        records,
    }
}

/// Invokes the handler with `records` and a deadline `secs` away while IAM
/// answers only after 30 s; its answer, and how long it took.
async fn invoke_while_iam_stalls(
    emu: &Emulator,
    worker: &Worker,
    records: Vec<SqsMessage>,
    secs: u64,
) -> (SqsBatchResponse, std::time::Duration) {
    emu.set_latency(json!({"latency": {"iam": 30_000}}));
    let mut event = SqsEvent::default();
    event.records = records;
    let invoked = tokio::time::Instant::now();
    let deadline = invoked + std::time::Duration::from_secs(secs);
    let response = handle_sqs_event(worker, event, Some(deadline)).await;
    let answered = invoked.elapsed();
    emu.set_latency(json!({}));
    (response, answered)
}

/// The records' message ids, sorted.
fn ids_of(records: &[SqsMessage]) -> Vec<String> {
    let mut ids: Vec<String> = records
        .iter()
        .filter_map(|r| r.message_id.clone())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn near_its_deadline_the_handler_returns_its_unfinished_records_to_the_queue() {
    let emu = Emulator::start();
    let users = ["a1", "a2"];
    let Queued {
        org,
        account: a,
        queue,
        worker,
        records,
    } = queued(&emu, "deadline", &users).await;
    let ids = ids_of(&records);

    // IAM answers nothing for 30 s: neither record can finish by the
    // invocation's deadline, 10 s away.
    let (response, answered) = invoke_while_iam_stalls(&emu, &worker, records, 10).await;

    assert!(
        answered < std::time::Duration::from_secs(10),
        "answered before the deadline, not killed at it: {answered:?}"
    );
    let mut failed: Vec<String> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    failed.sort();
    assert_eq!(failed, ids, "both records reported unfinished");
    // Made visible again at once, not after the queue's visibility timeout.
    let again = receive(&org.hub, &queue).await;
    assert_eq!(ids_of(&again), ids, "both back on the queue at once");
    // Nothing was done for either user: each still has the one old key.
    for user in users {
        assert_eq!(a.keys(user).await.len(), 1, "{user}");
    }
    // The redelivery finishes them.
    let mut event = SqsEvent::default();
    event.records = again;
    let response = handle_sqs_event(&worker, event, None).await;
    assert!(
        response.batch_item_failures.is_empty(),
        "{:?}",
        response.batch_item_failures
    );
    for user in users {
        assert_eq!(a.keys(user).await.len(), 2, "{user} rotated");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_on_its_last_receive_near_the_deadline_records_its_failure() {
    let emu = Emulator::start();
    let Queued {
        org,
        account: a,
        worker,
        mut records,
        ..
    } = queued(&emu, "last", &["a1"]).await;
    // The last receive (`KEYROTOR_MAX_RECEIVES`): the DLQ is next.
    records[0].attributes.insert(
        "ApproximateReceiveCount".to_string(),
        worker.max_receives().to_string(),
    );

    let (response, answered) = invoke_while_iam_stalls(&emu, &worker, records, 12).await;

    assert!(
        answered < std::time::Duration::from_secs(12),
        "answered before the deadline: {answered:?}"
    );
    assert!(
        response.batch_item_failures.is_empty(),
        "recorded, so deleted rather than sent to the DLQ: {:?}",
        response.batch_item_failures
    );
    let (result, _) = ResultStore::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE)
        .find("lambda-run", &a.id, "a1")
        .await
        .unwrap()
        .expect("a result for the user");
    assert_eq!(result.outcome.to_string(), "failed");
    assert!(
        result.reason.contains("deadline"),
        "says why: {}",
        result.reason
    );
    assert_eq!(a.keys("a1").await.len(), 1, "nothing was done");
}

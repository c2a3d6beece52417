//! The emulator's fault injection against the real SDK: each injected
//! answer is parsed as the error AWS would have sent (DynamoDB's
//! TransactionCanceledException with its reasons, 5xx and throttling in
//! each service's own protocol), retried or not as the SDK's standard retry
//! decides, scoped to one action, deterministic under a seed, and either
//! without side effect or (`after`) applied with its answer lost.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType, TransactWriteItem,
};
use keyrotor_e2e::{drain_queue, subscribe_queue, verify_sender, Emulator, Fault};
use serde_json::json;

const TABLE: &str = "faults";

/// A table keyed by `pk` (string).
async fn table(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    ddb.create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    ddb
}

/// A DynamoDB client that never retries (one call, one request).
fn no_retry(config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

fn put(pk: &str) -> TransactWriteItem {
    TransactWriteItem::builder()
        .put(
            Put::builder()
                .table_name(TABLE)
                .item("pk", AttributeValue::S(pk.into()))
                .build()
                .unwrap(),
        )
        .build()
}

async fn exists(ddb: &aws_sdk_dynamodb::Client, pk: &str) -> bool {
    ddb.get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .expect("get item")
        .item
        .is_some()
}

async fn counter(ddb: &aws_sdk_dynamodb::Client, pk: &str) -> String {
    let item = ddb
        .get_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.into()))
        .send()
        .await
        .expect("get item")
        .item
        .unwrap_or_default();
    match item.get("n") {
        Some(AttributeValue::N(n)) => n.clone(),
        other => format!("{other:?}"),
    }
}

/// `ADD n :one` on `pk`.
async fn increment(ddb: &aws_sdk_dynamodb::Client, pk: &str) -> Result<(), String> {
    ddb.update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(pk.into()))
        .update_expression("ADD n :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{:?}", e.into_service_error()))
}

/// Real DynamoDB's answer to a TransactWriteItems that met another
/// transaction on its second item, byte for byte as documented, served by a
/// one-shot local server: the SDK parses it into
/// `TransactionCanceledException` with every cancellation reason.
#[tokio::test(flavor = "multi_thread")]
async fn sdk_parses_dynamodbs_transaction_canceled_answer() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut request = vec![0; length];
        reader.read_exact(&mut request).unwrap();
        let body = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict","Message":"Transaction is ongoing for the item"},{"Code":"None"}],"Message":"Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict, None]"}"#;
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 400 Bad Request\r\nx-amzn-RequestId: canned\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        String::from_utf8(request).unwrap()
    });
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&endpoint)
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await;
    let err = no_retry(&config)
        .transact_write_items()
        .transact_items(put("a"))
        .transact_items(put("b"))
        .transact_items(put("c"))
        .send()
        .await
        .expect_err("the canned answer is an error")
        .into_service_error();
    let request = server.join().unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&request).unwrap()["TransactItems"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    let TransactWriteItemsError::TransactionCanceledException(tc) = err else {
        panic!("not TransactionCanceledException: {err:?}");
    };
    let codes: Vec<_> = tc
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("-"))
        .collect();
    assert_eq!(codes, ["None", "TransactionConflict", "None"]);
    assert_eq!(
        tc.cancellation_reasons()[1].message(),
        Some("Transaction is ongoing for the item")
    );
    assert!(tc
        .message()
        .unwrap()
        .contains("[None, TransactionConflict, None]"));
}

/// The emulator's TransactionConflict is the same answer: one reason per
/// item, the conflict at the chosen item, and nothing written.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_transaction_conflict_cancels_the_transaction() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let ddb = table(&config).await;
    emu.inject(&[Fault::new("dynamodb", "TransactionConflict")
        .action("TransactWriteItems")
        .count(2)]);
    let transact = || {
        ddb.transact_write_items()
            .transact_items(put("a"))
            .transact_items(put("b"))
            .transact_items(put("c"))
            .send()
    };
    let err = transact().await.expect_err("conflict").into_service_error();
    let TransactWriteItemsError::TransactionCanceledException(tc) = err else {
        panic!("not TransactionCanceledException: {err:?}");
    };
    let codes: Vec<_> = tc
        .cancellation_reasons()
        .iter()
        .map(|r| r.code().unwrap_or("-"))
        .collect();
    assert_eq!(codes, ["None", "TransactionConflict", "None"]);
    assert_eq!(
        tc.message(),
        Some("Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict, None]")
    );
    assert_eq!(
        emu.faults_injected(),
        1,
        "a 400 cancellation is not retried"
    );
    assert!(
        !exists(&ddb, "a").await,
        "a cancelled transaction wrote nothing"
    );

    // `item` picks the conflicting item; a single-item write gets
    // TransactionConflictException.
    emu.inject(&[
        Fault::new("dynamodb", "TransactionConflict")
            .action("TransactWriteItems")
            .item(2),
        Fault::new("dynamodb", "TransactionConflict").action("UpdateItem"),
    ]);
    let err = transact().await.expect_err("conflict").into_service_error();
    let TransactWriteItemsError::TransactionCanceledException(tc) = err else {
        panic!("not TransactionCanceledException: {err:?}");
    };
    assert_eq!(
        tc.cancellation_reasons()[2].code(),
        Some("TransactionConflict")
    );
    let err = no_retry(&config)
        .update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S("x".into()))
        .update_expression("ADD n :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .send()
        .await
        .expect_err("conflict")
        .into_service_error();
    assert!(err.is_transaction_conflict_exception(), "{err:?}");
    assert_eq!(emu.faults_by_rule(), [1, 1]);
    transact().await.expect("the rules are spent");
    assert!(exists(&ddb, "c").await);
}

/// InternalServerError (500) is retried by the SDK's standard retry: one
/// fault is absorbed, three (the standard mode's attempts) surface, parsed.
/// Throttling on one action leaves the others alone.
#[tokio::test(flavor = "multi_thread")]
async fn dynamodb_5xx_is_retried_and_throttling_is_per_action() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let ddb = table(&config).await;
    emu.inject(&[Fault::new("dynamodb", "InternalServerError")
        .action("PutItem")
        .count(1)]);
    ddb.put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S("one".into()))
        .send()
        .await
        .expect("one 500 is retried");
    assert_eq!(emu.faults_injected(), 1);
    assert!(exists(&ddb, "one").await);

    emu.inject(&[Fault::new("dynamodb", "InternalServerError")
        .action("PutItem")
        .count(5)]);
    let err = ddb
        .put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S("two".into()))
        .send()
        .await
        .expect_err("three attempts, three 500s")
        .into_service_error();
    assert!(err.is_internal_server_error(), "{err:?}");
    assert_eq!(emu.faults_injected(), 3, "standard retry: 3 attempts");
    assert!(!exists(&ddb, "two").await, "rejected before applying");

    emu.inject(&[
        Fault::new("dynamodb", "ProvisionedThroughputExceededException")
            .action("Query")
            .count(3),
    ]);
    assert!(exists(&ddb, "one").await, "GetItem is not throttled");
    let err = ddb
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("one".into()))
        .send()
        .await
        .expect_err("throttled three times")
        .into_service_error();
    assert!(
        err.is_provisioned_throughput_exceeded_exception(),
        "{err:?}"
    );
    assert_eq!(emu.faults_by_rule(), [3]);
}

/// `after`: the write is applied and its answer replaced by the error, so
/// a reported failure may have happened, and the SDK's retry of a
/// non-idempotent update applies it twice. Without `after`, the rejected
/// attempt leaves nothing behind.
#[tokio::test(flavor = "multi_thread")]
async fn after_applies_the_write_and_loses_the_answer() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let ddb = table(&config).await;

    emu.inject(&[Fault::new("dynamodb", "InternalServerError")
        .action("PutItem")
        .after()]);
    let err = no_retry(&config)
        .put_item()
        .table_name(TABLE)
        .item("pk", AttributeValue::S("lost".into()))
        .send()
        .await
        .expect_err("the answer is a 500")
        .into_service_error();
    assert!(err.is_internal_server_error(), "{err:?}");
    assert!(exists(&ddb, "lost").await, "the write was applied anyway");

    emu.inject(&[Fault::new("dynamodb", "InternalServerError")
        .action("UpdateItem")
        .after()]);
    increment(&ddb, "twice").await.expect("the retry succeeds");
    assert_eq!(emu.faults_injected(), 1);
    assert_eq!(counter(&ddb, "twice").await, "2", "applied, lost, retried");

    emu.inject(&[Fault::new("dynamodb", "InternalServerError").action("UpdateItem")]);
    increment(&ddb, "once").await.expect("the retry succeeds");
    assert_eq!(emu.faults_injected(), 1);
    assert_eq!(counter(&ddb, "once").await, "1", "rejected, retried");
}

/// The calls of one fixed sequence that failed, under `fault`.
async fn failures_under(fault: Fault) -> (Vec<usize>, u64) {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    table(&config).await;
    let ddb = no_retry(&config);
    emu.inject(&[fault]);
    let mut failed = Vec::new();
    for i in 0..40 {
        let pk = AttributeValue::S(format!("k{}", i % 5));
        // PutItem is not the rule's action: it never fails.
        ddb.put_item()
            .table_name(TABLE)
            .item("pk", pk.clone())
            .send()
            .await
            .expect("PutItem is left alone");
        let got = ddb.get_item().table_name(TABLE).key("pk", pk).send().await;
        match got {
            Ok(_) => {}
            Err(e) => {
                let e = e.into_service_error();
                assert_eq!(e.code(), Some("ThrottlingException"), "{e:?}");
                failed.push(i);
            }
        }
    }
    let injected = emu.faults_injected();
    assert_eq!(injected, failed.len() as u64, "every fault was a GetItem");
    (failed, injected)
}

/// A seeded rate picks the same requests of the same sequence on two
/// emulators; another seed picks others.
#[tokio::test(flavor = "multi_thread")]
async fn seeded_rate_is_deterministic() {
    let fault = |seed| {
        Fault::new("dynamodb", "ThrottlingException")
            .action("GetItem")
            .rate(0.3)
            .seed(seed)
    };
    let (first, n) = failures_under(fault(7)).await;
    let (second, _) = failures_under(fault(7)).await;
    let (other, _) = failures_under(fault(8)).await;
    assert!(0 < n && n < 40, "a rate of 0.3 over 40 requests: {n}");
    assert_eq!(first, second, "same seed, same faults");
    assert_ne!(first, other, "another seed, other faults");
    let (capped, n) = failures_under(fault(7).count(2)).await;
    assert_eq!(n, 2, "count caps a rate");
    assert_eq!(capped, first[..2], "the cap keeps the first draws");
}

/// SNS Publish's 500 (query-protocol XML) is retried by the SDK; when the
/// retries run out the code is parsed, and the rejected attempts published
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn sns_publish_internal_error_is_retried() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let sns = aws_sdk_sns::Client::new(&config);
    let topic = sns
        .create_topic()
        .name("faults")
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let queue = subscribe_queue(&config, &topic, "faults-sub", None).await;
    emu.inject(&[Fault::new("sns", "InternalError")
        .action("Publish")
        .count(3)]);
    let err = sns
        .publish()
        .topic_arn(&topic)
        .message("lost")
        .send()
        .await
        .expect_err("three 500s")
        .into_service_error();
    assert_eq!(err.code(), Some("InternalError"), "{err:?}");
    assert_eq!(emu.faults_injected(), 3, "retried twice");
    emu.inject(&[Fault::new("sns", "InternalError").action("Publish")]);
    sns.publish()
        .topic_arn(&topic)
        .message("delivered")
        .send()
        .await
        .expect("one 500 is retried");
    assert_eq!(emu.faults_injected(), 1);
    assert_eq!(drain_queue(&config, &queue).await, ["delivered"]);
}

/// SESv2's REST-JSON 500 (`x-amzn-ErrorType: InternalFailure`) is transient
/// to the SDK: retried, and parsed when the retries run out.
#[tokio::test(flavor = "multi_thread")]
async fn sesv2_internal_failure_is_retried() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    verify_sender(&config, "sender@example.com").await;
    let ses = aws_sdk_sesv2::Client::new(&config);
    let send = |subject: &str| {
        ses.send_email()
            .from_email_address("sender@example.com")
            .destination(
                aws_sdk_sesv2::types::Destination::builder()
                    .to_addresses("owner@example.com")
                    .build(),
            )
            .content(
                aws_sdk_sesv2::types::EmailContent::builder()
                    .simple(
                        aws_sdk_sesv2::types::Message::builder()
                            .subject(
                                aws_sdk_sesv2::types::Content::builder()
                                    .data(subject)
                                    .build()
                                    .unwrap(),
                            )
                            .body(
                                aws_sdk_sesv2::types::Body::builder()
                                    .text(
                                        aws_sdk_sesv2::types::Content::builder()
                                            .data("body")
                                            .build()
                                            .unwrap(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    emu.inject(&[Fault::new("ses", "InternalFailure")
        .action("SendEmail")
        .count(1)]);
    send("first").await.expect("one 500 is retried");
    assert_eq!(emu.faults_injected(), 1);
    assert_eq!(emu.sent_emails().len(), 1);
    emu.inject(&[Fault::new("ses", "InternalFailure")
        .action("SendEmail")
        .count(3)]);
    let err = send("second")
        .await
        .expect_err("three 500s")
        .into_service_error();
    assert_eq!(
        aws_sdk_sesv2::error::ProvideErrorMetadata::code(&err),
        Some("InternalFailure"),
        "{err:?}"
    );
    assert_eq!(emu.faults_injected(), 3, "retried twice");
    assert_eq!(emu.sent_emails().len(), 1, "nothing sent by the failures");
}

/// IAM Throttling on CreateAccessKey only: other IAM actions pass, the
/// throttled one is retried, then surfaces as Throttling.
#[tokio::test(flavor = "multi_thread")]
async fn iam_throttling_per_action() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let iam = aws_sdk_iam::Client::new(&config);
    iam.create_user().user_name("svc").send().await.unwrap();
    emu.inject(&[Fault::new("iam", "Throttling")
        .action("CreateAccessKey")
        .count(5)]);
    for _ in 0..3 {
        iam.get_user()
            .user_name("svc")
            .send()
            .await
            .expect("GetUser");
        iam.list_access_keys()
            .user_name("svc")
            .send()
            .await
            .expect("ListAccessKeys");
    }
    assert_eq!(emu.faults_injected(), 0, "other actions are left alone");
    let err = iam
        .create_access_key()
        .user_name("svc")
        .send()
        .await
        .expect_err("throttled three times")
        .into_service_error();
    assert_eq!(
        aws_sdk_iam::error::ProvideErrorMetadata::code(&err),
        Some("Throttling")
    );
    assert_eq!(emu.faults_injected(), 3);
    iam.create_access_key()
        .user_name("svc")
        .send()
        .await
        .expect("two more throttles, absorbed by the retries");
    assert_eq!(emu.faults_by_rule(), [5]);
    let keys = iam
        .list_access_keys()
        .user_name("svc")
        .send()
        .await
        .unwrap();
    assert_eq!(
        keys.access_key_metadata().len(),
        1,
        "only the last call made a key"
    );
}

/// The original single-rule format still means "every Kth request to the
/// service, until N sent", and JSON 1.0/1.1 and query services get their
/// codes parsed.
#[tokio::test(flavor = "multi_thread")]
async fn legacy_format_and_other_services() {
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let iam = aws_sdk_iam::Client::from_conf(
        aws_sdk_iam::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    iam.create_user().user_name("svc").send().await.unwrap();
    emu.inject_faults(json!({"service": "iam", "code": "Throttling", "count": 2, "every": 2}));
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(iam.get_user().user_name("svc").send().await.is_ok());
    }
    assert_eq!(outcomes, [true, false, true, false, true, true]);
    assert_eq!(emu.faults_injected(), 2);

    emu.inject(&[
        Fault::new("sqs", "QueueDoesNotExist")
            .action("GetQueueUrl")
            .status(400),
        Fault::new("secretsmanager", "InternalServiceError")
            .action("GetSecretValue")
            .status(500)
            .count(3),
        Fault::new("sts", "AccessDenied").action("AssumeRole"),
    ]);
    let err = aws_sdk_sqs::Client::new(&config)
        .get_queue_url()
        .queue_name("anything")
        .send()
        .await
        .expect_err("injected")
        .into_service_error();
    assert!(err.is_queue_does_not_exist(), "{err:?}");
    let err = aws_sdk_secretsmanager::Client::new(&config)
        .get_secret_value()
        .secret_id("anything")
        .send()
        .await
        .expect_err("injected")
        .into_service_error();
    assert!(err.is_internal_service_error(), "{err:?}");
    let err = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn("arn:aws:iam::123456789012:role/OrganizationAccountAccessRole")
        .role_session_name("s")
        .send()
        .await
        .expect_err("injected")
        .into_service_error();
    assert_eq!(
        aws_sdk_sts::error::ProvideErrorMetadata::code(&err),
        Some("AccessDenied")
    );
    assert_eq!(emu.faults_by_rule(), [1, 3, 1]);
}

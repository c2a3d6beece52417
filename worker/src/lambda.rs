//! The worker Lambda's handler: an SQS event from the event source mapping
//! (with `ReportBatchItemFailures`). Each message is decoded and handled on
//! its own; failures are returned as `batchItemFailures`, each made visible
//! again after its retry delay (the pool's: a busy user's lease end, or 10 s
//! doubling to 15 minutes) rather than the queue's visibility timeout, half
//! an hour in the hub stack, which one throttled call would otherwise add to
//! a whole run. On a FIFO queue, the messages of one group (a batch is
//! mostly one group) are handled together (see `LAMBDA_GROUP_WINDOW`).

use std::collections::BTreeMap;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tracing::Instrument;

use crate::pool::delay_for;
use crate::process::{Worker, LAMBDA_GROUP_WINDOW};

/// Groups handled at once within one batch.
const GROUPS_AT_ONCE: usize = 4;

/// Handles one SQS event.
pub async fn handle_sqs_event(worker: &Worker, event: SqsEvent) -> SqsBatchResponse {
    // Records keep their order within a group; a standard queue's messages
    // each form a group of their own.
    let mut groups: BTreeMap<String, Vec<SqsMessage>> = BTreeMap::new();
    for (i, record) in event.records.into_iter().enumerate() {
        let group = record
            .attributes
            .get("MessageGroupId")
            .cloned()
            .unwrap_or_else(|| format!("#{i}"));
        groups.entry(group).or_default().push(record);
    }
    let failures: Vec<Vec<String>> = futures::stream::iter(groups.into_values())
        .map(|records| handle_group(worker, records))
        .buffer_unordered(GROUPS_AT_ONCE)
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    for id in failures.into_iter().flatten() {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// One group's records, [`LAMBDA_GROUP_WINDOW`] at a time; once one
/// fails, the records not started yet fail too.
async fn handle_group(worker: &Worker, records: Vec<SqsMessage>) -> Vec<String> {
    let failed = std::sync::Mutex::new(Vec::new());
    let failed_ref = &failed;
    futures::stream::iter(records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let receive_count = record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            // Behind a failure the rest of the group waits for its redelivery,
            // unless a record is on its last receive: it is worked now rather
            // than reaching the DLQ without ever being tried.
            let behind = !failed_ref.lock().expect("not poisoned").is_empty();
            if behind && receive_count < worker.max_receives() {
                failed_ref.lock().expect("not poisoned").push(id);
                return;
            }
            match worker
                .handle(record.body.as_deref().unwrap_or(""), receive_count)
                .instrument(tracing::info_span!("sqs", message_id = %id))
                .await
            {
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "message failed; reported to SQS");
                    if let Some(receipt) = &record.receipt_handle {
                        worker
                            .retry_after(receipt, delay_for(&e, receive_count))
                            .await;
                    }
                    failed_ref.lock().expect("not poisoned").push(id);
                }
            }
        })
        .buffered(LAMBDA_GROUP_WINDOW)
        .collect::<Vec<()>>()
        .await;
    failed.into_inner().expect("not poisoned")
}

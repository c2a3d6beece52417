//! The worker Lambda's handler: an SQS event from the event source mapping
//! (with `ReportBatchItemFailures`). Each message is decoded and handled on
//! its own; failures are returned as `batchItemFailures`, each made visible
//! again after its retry delay (the pool's: a busy user's lease end, or 10 s
//! doubling to 15 minutes) rather than the queue's visibility timeout, half
//! an hour in the hub stack, which one throttled call would otherwise add to
//! a whole run. On a FIFO queue, the messages of one group (a batch is
//! mostly one group) are handled together (see `LAMBDA_GROUP_WINDOW`).
//! Near the invocation's deadline the handler returns what it has not
//! finished to the queue itself, rather than be killed at the timeout.

use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::StreamExt;
use tokio::time::Instant;
use tracing::Instrument;

use crate::pool::delay_for;
use crate::process::{Worker, LAMBDA_GROUP_WINDOW};

/// Groups handled at once within one batch.
const GROUPS_AT_ONCE: usize = 4;

/// The most an invocation keeps before its deadline to return what it has
/// not finished (a tenth of its time when that is less): the visibility
/// calls and the response, a few round trips.
const RETURN_MARGIN: Duration = Duration::from_secs(5);

/// The most an invocation keeps before its deadline in which it starts no
/// record (a quarter of its time when that is less): a rotation started
/// then would most likely be stopped part-way.
const START_MARGIN: Duration = Duration::from_secs(60);

/// When an invocation stops: it returns what is unfinished at `stop`, and
/// starts no record after `last_start`; a record on its last receive has
/// its user's steps stopped at `last_steps`, as long again before `stop`,
/// so that it can still record its `failed` result by then; the visibility
/// calls for what it returns are given up at `answer`, half-way from `stop`
/// to the deadline, so that the answer itself still goes out.
#[derive(Debug, Clone, Copy)]
struct Stops {
    last_start: Instant,
    last_steps: Instant,
    stop: Instant,
    answer: Instant,
}

impl Stops {
    /// The stops of an invocation that must answer by `deadline`.
    fn before(deadline: Instant) -> Stops {
        let left = deadline.saturating_duration_since(Instant::now());
        let returning = RETURN_MARGIN.min(left / 10);
        Stops {
            last_start: deadline - START_MARGIN.min(left / 4),
            last_steps: deadline - returning * 2,
            stop: deadline - returning,
            answer: deadline - returning / 2,
        }
    }
}

/// Handles one SQS event that must be answered by `deadline` (the
/// invocation's, when there is one).
///
/// Lambda kills an invocation at its timeout, and the event source mapping
/// then returns the whole batch to the queue only after its visibility
/// timeout (half an hour in the hub stack). So near the deadline the
/// handler starts no record, and at a few seconds before it, stops the
/// records still running and reports every record it has not finished as
/// failed, made visible again at once (a failed one keeps its retry
/// delay). A record stopped part-way is a worker that died at that point,
/// which the executor's locks, ledger and reconciliation are built for; its
/// redelivery finds the user's lock held, if it took it, and comes back at
/// the lease's end. A record on its last receive is started even late, and
/// its user's steps are stopped earlier, so that it records a `failed`
/// result (with whatever the ledger says was done) instead of reaching the
/// DLQ unrecorded.
pub async fn handle_sqs_event(
    worker: &Worker,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let stops = deadline.map(Stops::before);
    let records: Vec<(String, Option<String>)> = event
        .records
        .iter()
        .map(|r| {
            (
                r.message_id.clone().unwrap_or_default(),
                r.receipt_handle.clone(),
            )
        })
        .collect();
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
    let settled = Settled::default();
    let work = futures::stream::iter(groups.into_values())
        .map(|records| handle_group(worker, records, stops, &settled))
        .buffer_unordered(GROUPS_AT_ONCE)
        .collect::<Vec<()>>();
    let finished = match stops {
        Some(stops) => tokio::time::timeout_at(stops.stop, work).await.is_ok(),
        None => {
            work.await;
            true
        }
    };
    let Settled {
        done,
        failed,
        timed,
    } = settled;
    let (done, mut failed, timed) = (
        done.into_inner().expect("not poisoned"),
        failed.into_inner().expect("not poisoned"),
        timed.into_inner().expect("not poisoned"),
    );
    if let (false, Some(stops)) = (finished, stops) {
        let failed_ids: HashSet<&String> = failed.iter().map(|(id, _)| id).collect();
        let unfinished: Vec<(String, Duration)> = records
            .iter()
            .filter(|(id, _)| !done.contains(id) && !failed_ids.contains(id))
            .map(|(id, _)| (id.clone(), Duration::ZERO))
            .collect();
        tracing::warn!(
            unfinished = unfinished.len(),
            "the invocation's deadline is near: unfinished records go back to the queue"
        );
        failed.extend(unfinished);
        // The failures whose retry was not timed yet (stopped during that
        // call), and the unfinished ones, at once.
        let receipts: std::collections::HashMap<&String, &String> = records
            .iter()
            .filter_map(|(id, receipt)| receipt.as_ref().map(|r| (id, r)))
            .collect();
        let timing = failed
            .iter()
            .filter(|(id, _)| !timed.contains(id))
            .filter_map(|(id, delay)| receipts.get(id).map(|r| worker.retry_after(r, *delay)));
        if tokio::time::timeout_at(stops.answer, futures::future::join_all(timing))
            .await
            .is_err()
        {
            tracing::warn!("not every returned record's retry was timed before the deadline");
        }
    }
    let mut response = SqsBatchResponse::default();
    for (id, _) in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// The batch's records that ended: done (to be deleted) or failed, with
/// the delay of their retry, and which of those retries were timed.
#[derive(Default)]
struct Settled {
    done: Mutex<HashSet<String>>,
    failed: Mutex<Vec<(String, Duration)>>,
    timed: Mutex<HashSet<String>>,
}

impl Settled {
    /// Reports `record` failed, to be retried after `delay`, and times that
    /// retry. Noted failed first: the deadline may stop the timing call,
    /// and then the handler makes it again.
    async fn fail(&self, worker: &Worker, record: &SqsMessage, delay: Duration) {
        let id = record.message_id.clone().unwrap_or_default();
        self.failed
            .lock()
            .expect("not poisoned")
            .push((id.clone(), delay));
        if let Some(receipt) = &record.receipt_handle {
            worker.retry_after(receipt, delay).await;
        }
        self.timed.lock().expect("not poisoned").insert(id);
    }
}

/// One group's records, [`LAMBDA_GROUP_WINDOW`] at a time; once one
/// fails, the records not started yet fail too, as do those not started
/// before the invocation's last start.
async fn handle_group(
    worker: &Worker,
    records: Vec<SqsMessage>,
    stops: Option<Stops>,
    settled: &Settled,
) {
    // The delay of the group's first failure, which the records behind it
    // take too (as in the pool).
    let group_failed: Mutex<Option<Duration>> = Mutex::new(None);
    let group_failed = &group_failed;
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
            let last_receive = receive_count >= worker.max_receives();
            let behind = *group_failed.lock().expect("not poisoned");
            if let (Some(delay), false) = (behind, last_receive) {
                settled.fail(worker, &record, delay).await;
                return;
            }
            if stops.is_some_and(|s| Instant::now() >= s.last_start) && !last_receive {
                settled.fail(worker, &record, Duration::ZERO).await;
                return;
            }
            let execute_by = stops.filter(|_| last_receive).map(|s| s.last_steps);
            match worker
                .handle_until(
                    record.body.as_deref().unwrap_or(""),
                    receive_count,
                    execute_by,
                )
                .instrument(tracing::info_span!("sqs", message_id = %id))
                .await
            {
                Ok(_) => {
                    settled.done.lock().expect("not poisoned").insert(id);
                }
                Err(e) => {
                    tracing::warn!(message_id = %id, error = %e, "message failed; reported to SQS");
                    let delay = delay_for(&e, receive_count);
                    group_failed
                        .lock()
                        .expect("not poisoned")
                        .get_or_insert(delay);
                    settled.fail(worker, &record, delay).await;
                }
            }
        })
        .buffered(LAMBDA_GROUP_WINDOW)
        .collect::<Vec<()>>()
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_invocation_stops_starting_and_returns_ahead_of_its_deadline() {
        let now = Instant::now();
        // The hub stack's 300 s: no start in the last minute, the rest
        // returned 5 s before the deadline.
        let stops = Stops::before(now + Duration::from_secs(300));
        assert_eq!(stops.last_start - now, Duration::from_secs(240));
        assert_eq!(stops.last_steps - now, Duration::from_secs(290));
        assert_eq!(stops.stop - now, Duration::from_secs(295));
        assert_eq!(stops.answer - now, Duration::from_millis(297_500));
        // A short timeout keeps the same proportions, not the same margins,
        // so that its records still get most of its time.
        let stops = Stops::before(now + Duration::from_secs(20));
        assert_eq!(stops.last_start - now, Duration::from_secs(15));
        assert_eq!(stops.last_steps - now, Duration::from_secs(16));
        assert_eq!(stops.stop - now, Duration::from_secs(18));
        assert_eq!(stops.answer - now, Duration::from_secs(19));
        // A deadline already past stops at once.
        let stops = Stops::before(now);
        assert_eq!(
            (stops.last_start, stops.stop, stops.answer),
            (now, now, now)
        );
    }
}

//! Retrying a state-table request that failed transiently: DynamoDB's
//! `TransactionConflict` (which the SDK does not retry, and which real
//! DynamoDB answers whenever two transactions touch one item at once), and
//! server errors or throttling that outlasted the SDK's own attempts.
//! Exponential backoff with full jitter (`backon`), on tokio's clock.

use std::time::Duration;

use backon::ExponentialBuilder;

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;

use crate::error::AwsError;

/// Attempts after the first.
const RETRIES: usize = 8;

/// The backoff: 25 ms doubling to at most 1 s, jittered so that contenders
/// for one item spread out instead of colliding again.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(25))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(RETRIES)
        .with_jitter()
}

/// Whether DynamoDB refused a single-item write because a transaction was
/// working on the item (`TransactionConflictException`): real DynamoDB does
/// that whenever a result transaction holds a run's counter item, and the
/// SDK does not retry it.
pub(crate) fn conflicted(e: &AwsError) -> bool {
    matches!(e, AwsError::Service { code, .. } if code == "TransactionConflictException")
}

/// Sends one `UpdateItem`, retrying transaction conflicts only (the SDK
/// retries throttling and 5xx itself): every single-item write to a run's
/// items goes through here.
pub(crate) async fn send_update(
    update: UpdateItemFluentBuilder,
) -> Result<UpdateItemOutput, AwsError> {
    let attempt = || async {
        update
            .clone()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))
    };
    crate::retry::retry_when(attempt, backoff(), conflicted).await
}

/// Runs `op` (a state-table request), retrying while `transient` says its
/// error may pass, with the state table's backoff.
pub async fn retry_transient<T, E, F, Fut>(op: F, transient: impl FnMut(&E) -> bool) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    crate::retry::retry_when(op, backoff(), transient).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn transient_errors_are_retried_and_others_are_not() {
        let calls = AtomicU32::new(0);
        let out: Result<u32, &str> = retry_transient(
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=2 => Err("conflict"),
                    n => Ok(n),
                }
            },
            |e| *e == "conflict",
        )
        .await;
        assert_eq!(out, Ok(3));

        calls.store(0, Ordering::SeqCst);
        let out: Result<u32, &str> = retry_transient(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("denied")
            },
            |e| *e == "conflict",
        )
        .await;
        assert_eq!(out, Err("denied"));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_bounded() {
        let calls = AtomicU32::new(0);
        let out: Result<(), &str> = retry_transient(
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("conflict")
            },
            |_| true,
        )
        .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), RETRIES as u32 + 1);
    }
}

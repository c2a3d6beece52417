//! The one retry helper: `backon`'s exponential backoff with jitter, on
//! tokio's clock (paused in tests and the load simulator). It retries only
//! what a caller names as passing, and never stacks on the SDK's own
//! retries: callers use it for what the SDK does not retry (DynamoDB
//! transaction conflicts, entries refused inside a batch, a throttled
//! `CreateAccessKey`, whose SDK retries are off). The loops that resend a
//! shrinking set (a batch's unprocessed or refused entries) take their
//! pauses from a `backon` backoff too.

use std::future::Future;

use backon::{ExponentialBuilder, Retryable};

/// Runs `op`, pausing by `backoff` and trying again while `when` says its
/// error may pass; the last error when the backoff is spent.
pub async fn retry_when<T, E, F, Fut>(
    op: F,
    backoff: ExponentialBuilder,
    when: impl FnMut(&E) -> bool,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    op.retry(backoff).sleep(tokio::time::sleep).when(when).await
}

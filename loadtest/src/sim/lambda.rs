//! The worker as the hub stack deploys it: a Lambda function behind an SQS
//! event source mapping. The mapping receives batches of up to
//! `batch_size` messages and invokes the real handler
//! ([`keyrotor_worker::lambda::handle_sqs_event`]) with at most
//! `max_concurrency` invocations at once (`ScalingConfig.MaximumConcurrency`);
//! it deletes what the handler did not report failed, and leaves the
//! failures to come back after their visibility timeout (the handler
//! shortens it for a busy user). Each concurrent execution environment is
//! its own worker (its own limits and sessions), kept warm between
//! invocations. The handler is given the invocation's deadline, as the
//! runtime gives it; an invocation that outlives the function's timeout
//! all the same is killed, and its whole batch comes back after the
//! visibility timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use keyrotor_shared::queue::{QueuePort, Received};
use keyrotor_worker::lambda::handle_sqs_event;
use keyrotor_worker::process::Worker;
use tokio_util::sync::CancellationToken;

use super::queue::SimQueue;

/// The event source mapping and the function's limits.
#[derive(Debug, Clone, Copy)]
pub struct LambdaConfig {
    /// `ScalingConfig.MaximumConcurrency` (the hub stack's default: 10).
    pub max_concurrency: usize,
    /// Messages per invocation (10, the most for a FIFO queue).
    pub batch_size: usize,
    /// The function's timeout (the hub stack's default: 300 s).
    pub timeout: Duration,
    /// The queue's visibility timeout (the hub stack: 6 × the timeout).
    pub visibility: Duration,
    /// A new execution environment's start (init) before its first event.
    pub cold_start: Duration,
}

impl LambdaConfig {
    /// The hub stack's defaults with `max_concurrency` environments.
    pub fn with_max_concurrency(max_concurrency: usize) -> LambdaConfig {
        LambdaConfig {
            max_concurrency,
            batch_size: 10,
            timeout: Duration::from_secs(300),
            visibility: Duration::from_secs(1800),
            cold_start: Duration::from_millis(400),
        }
    }
}

/// The SQS event the mapping would deliver for `batch`.
fn event_of(batch: &[Received]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for m in batch {
        let mut record = SqsMessage::default();
        record.message_id = Some(m.message_id.clone());
        record.receipt_handle = Some(m.receipt_handle.clone());
        record.body = Some(m.body.clone());
        record.attributes.insert(
            "ApproximateReceiveCount".into(),
            m.receive_count.to_string(),
        );
        if let Some(group) = &m.group_id {
            record
                .attributes
                .insert("MessageGroupId".into(), group.clone());
        }
        event.records.push(record);
    }
    event
}

/// Runs the mapping until `shutdown`; `environment` makes a fresh
/// execution environment's worker. The mapping's pollers scale with its
/// concurrency: each invocation slot receives its next batch as soon as it
/// is free. Invocations killed at the timeout are counted in `timeouts`.
pub async fn run_mapping(
    config: LambdaConfig,
    queue: SimQueue,
    environment: impl Fn() -> Worker + Send + Sync + 'static,
    timeouts: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let environment = Arc::new(environment);
    let mut slots = tokio::task::JoinSet::new();
    for _ in 0..config.max_concurrency {
        let (queue, environment, timeouts, shutdown) = (
            queue.clone(),
            environment.clone(),
            timeouts.clone(),
            shutdown.clone(),
        );
        slots.spawn(async move {
            tokio::select! {
                () = slot(config, &queue, &*environment, &timeouts) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
    while let Some(done) = slots.join_next().await {
        done?;
    }
    Ok(())
}

/// One invocation slot, for ever: receive a batch, invoke the handler in
/// this slot's execution environment (made at its first batch, and again
/// after an invocation was killed), delete what did not fail.
async fn slot(
    config: LambdaConfig,
    queue: &SimQueue,
    environment: &(dyn Fn() -> Worker + Send + Sync),
    timeouts: &AtomicU64,
) {
    let mut warm: Option<Worker> = None;
    loop {
        let batch = match queue
            .receive(
                config.batch_size,
                Duration::from_secs(20),
                config.visibility,
            )
            .await
        {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the mapping's receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let worker = match warm.take() {
            Some(worker) => worker,
            None => {
                tokio::time::sleep(config.cold_start).await;
                environment()
            }
        };
        let deadline = tokio::time::Instant::now() + config.timeout;
        let handled = tokio::time::timeout_at(
            deadline,
            handle_sqs_event(&worker, event_of(&batch), Some(deadline)),
        )
        .await;
        let Ok(response) = handled else {
            // Killed at the timeout: the environment goes, and the batch
            // comes back after its visibility timeout.
            tracing::warn!(messages = batch.len(), "an invocation timed out");
            timeouts.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let failed: std::collections::HashSet<String> = response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect();
        let done: Vec<String> = batch
            .iter()
            .filter(|m| !failed.contains(&m.message_id))
            .map(|m| m.receipt_handle.clone())
            .collect();
        if !done.is_empty() {
            // The mapping's own delete; a failure leaves the message to
            // come back, where its result is found recorded.
            if let Err(e) = queue.delete_batch(&done).await {
                tracing::warn!(error = %e, "the mapping's delete failed");
            }
        }
        warm = Some(worker);
    }
}

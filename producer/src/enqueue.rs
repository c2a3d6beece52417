//! Sending messages: `SendMessageBatch` of 10, each failed entry retried on
//! its own with backoff, FIFO group and deduplication ids when the queue is
//! FIFO (detected from its URL).

use std::sync::Arc;
use std::time::Duration;

use keyrotor_shared::error::AwsError;
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::queue::{Outgoing, QueuePort};

/// SQS's batch limit.
pub const BATCH: usize = 10;

/// Attempts for an entry that failed inside a batch.
const ENTRY_ATTEMPTS: u32 = 4;

/// A batch that was sent only in part.
#[derive(Debug, thiserror::Error)]
#[error("{error} ({sent} of the batch sent)")]
pub struct PartialSend {
    /// Messages of the batch that were sent.
    pub sent: usize,
    /// Why the rest were not.
    pub error: AwsError,
}

/// Sends work messages to one queue.
#[derive(Clone)]
pub struct Enqueuer {
    queue: Arc<dyn QueuePort>,
}

impl Enqueuer {
    /// An enqueuer for `queue`.
    pub fn new(queue: Arc<dyn QueuePort>) -> Enqueuer {
        Enqueuer { queue }
    }

    /// Whether the queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.queue.is_fifo()
    }

    fn outgoing(&self, m: &WorkMessage) -> Outgoing {
        Outgoing {
            body: m.encode(),
            fifo: self.is_fifo().then(|| (m.group_id(), m.deduplication_id())),
        }
    }

    /// Sends up to [`BATCH`] messages; every one is sent, or the error says
    /// how many were sent before it (the run's expected count must include
    /// exactly those).
    pub async fn send(&self, messages: &[WorkMessage]) -> Result<(), PartialSend> {
        debug_assert!(messages.len() <= BATCH);
        if messages.is_empty() {
            return Ok(());
        }
        let batch: Vec<Outgoing> = messages.iter().map(|m| self.outgoing(m)).collect();
        let failed = self
            .queue
            .send_batch(&batch)
            .await
            .map_err(|error| PartialSend { sent: 0, error })?;
        let mut unsent = failed.len();
        for (i, code) in failed {
            let Some(m) = messages.get(i) else {
                continue;
            };
            tracing::warn!(code = %code, user = %m.user_name, "message failed in its batch; retrying it alone");
            self.send_one(&batch[i])
                .await
                .map_err(|error| PartialSend {
                    sent: messages.len() - unsent,
                    error,
                })?;
            unsent -= 1;
        }
        Ok(())
    }

    async fn send_one(&self, m: &Outgoing) -> Result<(), AwsError> {
        let mut delay = Duration::from_millis(200);
        let mut last = None;
        for _ in 0..ENTRY_ATTEMPTS {
            match self.queue.send(m).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    if !err.is_retryable() {
                        return Err(err);
                    }
                    last = Some(err);
                }
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(last.expect("at least one attempt"))
    }
}

//! Sending messages: `SendMessageBatch` of 10, each failed entry retried on
//! its own with backoff, FIFO group and deduplication ids when the queue is
//! FIFO (detected from its URL).

use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::message::WorkMessage;

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
    client: aws_sdk_sqs::Client,
    queue_url: String,
    fifo: bool,
}

impl Enqueuer {
    /// An enqueuer for `queue_url` (FIFO when it ends in `.fifo`).
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Enqueuer {
        let queue_url = queue_url.into();
        Enqueuer {
            fifo: queue_url.ends_with(".fifo"),
            client,
            queue_url,
        }
    }

    /// Whether the queue is FIFO.
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    fn entry(&self, id: usize, m: &WorkMessage) -> SendMessageBatchRequestEntry {
        let mut entry = SendMessageBatchRequestEntry::builder()
            .id(id.to_string())
            .message_body(m.encode());
        if self.fifo {
            entry = entry
                .message_group_id(m.group_id())
                .message_deduplication_id(m.deduplication_id());
        }
        entry.build().expect("id and body are set")
    }

    /// Sends up to [`BATCH`] messages; every one is sent, or the error says
    /// how many were sent before it (the run's expected count must include
    /// exactly those).
    pub async fn send(&self, messages: &[WorkMessage]) -> Result<(), PartialSend> {
        debug_assert!(messages.len() <= BATCH);
        if messages.is_empty() {
            return Ok(());
        }
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(
                messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| self.entry(i, m))
                    .collect(),
            ))
            .send()
            .await
            .map_err(|e| PartialSend {
                sent: 0,
                error: AwsError::from_sdk("sqs:SendMessageBatch", e),
            })?;
        let mut unsent = out.failed.len();
        for failed in out.failed {
            let Some(m) = failed
                .id
                .parse::<usize>()
                .ok()
                .and_then(|i| messages.get(i))
            else {
                continue;
            };
            tracing::warn!(code = %failed.code, sender_fault = failed.sender_fault, user = %m.user_name, "message failed in its batch; retrying it alone");
            self.send_one(m).await.map_err(|error| PartialSend {
                sent: messages.len() - unsent,
                error,
            })?;
            unsent -= 1;
        }
        Ok(())
    }

    async fn send_one(&self, m: &WorkMessage) -> Result<(), AwsError> {
        let mut delay = Duration::from_millis(200);
        let mut last = None;
        for _ in 0..ENTRY_ATTEMPTS {
            let mut send = self
                .client
                .send_message()
                .queue_url(&self.queue_url)
                .message_body(m.encode());
            if self.fifo {
                send = send
                    .message_group_id(m.group_id())
                    .message_deduplication_id(m.deduplication_id());
            }
            match send.send().await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let err = AwsError::from_sdk("sqs:SendMessage", e);
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

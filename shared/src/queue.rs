//! The work queue as a port: what the producer sends and the pool receives,
//! deletes and times, behind [`QueuePort`]. [`SqsQueue`] is the SQS adapter;
//! the load simulator has a FIFO model of its own.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use crate::error::AwsError;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// SQS's message id.
    pub message_id: String,
    /// The handle to delete it or change its visibility.
    pub receipt_handle: String,
    /// The body.
    pub body: String,
    /// Its FIFO group, if the queue is FIFO.
    pub group_id: Option<String>,
    /// How many times it has been delivered, this receive included.
    pub receive_count: u32,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The body.
    pub body: String,
    /// FIFO group and deduplication id (ignored by a standard queue).
    pub fifo: Option<(String, String)>,
}

/// One queue.
#[async_trait]
pub trait QueuePort: Send + Sync {
    /// Whether the queue is FIFO.
    fn is_fifo(&self) -> bool;
    /// Up to `max` (≤ 10) messages, waiting up to `wait` for the first,
    /// each hidden for `visibility`.
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, AwsError>;
    /// Deletes up to 10 messages; returns the receipt handles that failed.
    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<String>, AwsError>;
    /// Deletes one message.
    async fn delete(&self, receipt: &str) -> Result<(), AwsError>;
    /// Hides a received message for `timeout` from now (0: visible at once).
    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), AwsError>;
    /// Sends up to 10 messages; returns the indexes that failed, with the
    /// error code SQS gave each.
    async fn send_batch(&self, messages: &[Outgoing]) -> Result<Vec<(usize, String)>, AwsError>;
    /// Sends one message.
    async fn send(&self, message: &Outgoing) -> Result<(), AwsError>;
    /// Messages visible, in flight and delayed (SQS's approximate counts).
    async fn depth(&self) -> Result<u64, AwsError>;
}

/// [`QueuePort`] over SQS.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    /// The queue at `url` (FIFO when it ends in `.fifo`).
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
        }
    }
}

/// SQS takes whole seconds, and at most 12 hours of visibility.
fn seconds(d: Duration) -> i32 {
    d.as_secs().min(43_200) as i32
}

#[async_trait]
impl QueuePort for SqsQueue {
    fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<Received>, AwsError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .visibility_timeout(seconds(visibility))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attribute = |name| m.attributes.as_ref().and_then(|a| a.get(&name)).cloned();
                Received {
                    group_id: attribute(MessageSystemAttributeName::MessageGroupId),
                    receive_count: attribute(MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    message_id: m.message_id.unwrap_or_default(),
                    receipt_handle: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                }
            })
            .collect())
    }

    async fn delete_batch(&self, receipts: &[String]) -> Result<Vec<String>, AwsError> {
        let entries = receipts
            .iter()
            .enumerate()
            .map(|(i, r)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(r)
                    .build()
                    .expect("id and handle are set")
            })
            .collect();
        let out = self
            .client
            .delete_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:DeleteMessageBatch", e))?;
        Ok(out
            .failed
            .into_iter()
            .filter_map(|f| {
                tracing::warn!(code = %f.code, message = ?f.message, "delete failed in its batch");
                f.id.parse::<usize>()
                    .ok()
                    .and_then(|i| receipts.get(i).cloned())
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), AwsError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("sqs:DeleteMessage", e))
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), AwsError> {
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(timeout))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("sqs:ChangeMessageVisibility", e))
    }

    async fn send_batch(&self, messages: &[Outgoing]) -> Result<Vec<(usize, String)>, AwsError> {
        let entries = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&m.body);
                if let Some((group, dedup)) = &m.fifo {
                    entry = entry
                        .message_group_id(group)
                        .message_deduplication_id(dedup);
                }
                entry.build().expect("id and body are set")
            })
            .collect();
        let out = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:SendMessageBatch", e))?;
        Ok(out
            .failed
            .into_iter()
            .filter_map(|f| f.id.parse::<usize>().ok().map(|i| (i, f.code)))
            .collect())
    }

    async fn send(&self, m: &Outgoing) -> Result<(), AwsError> {
        let mut send = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(&m.body);
        if let Some((group, dedup)) = &m.fifo {
            send = send.message_group_id(group).message_deduplication_id(dedup);
        }
        send.send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("sqs:SendMessage", e))
    }

    async fn depth(&self) -> Result<u64, AwsError> {
        use QueueAttributeName as A;
        let counted = [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ];
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(counted.to_vec()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sqs:GetQueueAttributes", e))?;
        let attributes = out.attributes.unwrap_or_default();
        Ok(counted
            .iter()
            .filter_map(|a| attributes.get(a).and_then(|v| v.parse::<u64>().ok()))
            .sum())
    }
}

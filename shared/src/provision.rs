//! `keyrotor init`: creates the hub resources that are missing — the state
//! table, the FIFO work queue with its dead-letter queue, and the results
//! topic. For the emulator and for trials; production uses `infra/hub.yaml`.

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;
use serde::Serialize;

use crate::error::AwsError;
use crate::store::ensure_table;

/// Receives before a message goes to the dead-letter queue.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// What `init` found or created.
#[derive(Debug, Clone, Serialize)]
pub struct Provisioned {
    /// The state table.
    pub table: String,
    /// Whether the table was created now.
    pub table_created: bool,
    /// Work queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dlq_url: String,
    /// Results topic ARN.
    pub topic_arn: String,
}

/// Creates (idempotently) the table `table`, queues `{prefix}.fifo` and
/// `{prefix}-dlq.fifo`, and topic `{prefix}-results`.
pub async fn init(config: &SdkConfig, table: &str, prefix: &str) -> Result<Provisioned, AwsError> {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    let table_created = ensure_table(&ddb, table).await?;

    let sqs = aws_sdk_sqs::Client::new(config);
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}-dlq.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sqs:CreateQueue", e))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sqs:GetQueueAttributes", e))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT})
            .to_string();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}.fifo"))
        .attributes(QueueAttributeName::FifoQueue, "true")
        .attributes(QueueAttributeName::VisibilityTimeout, "900")
        .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sqs:CreateQueue", e))?
        .queue_url
        .unwrap_or_default();

    let sns = aws_sdk_sns::Client::new(config);
    let topic_arn = sns
        .create_topic()
        .name(format!("{prefix}-results"))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("sns:CreateTopic", e))?
        .topic_arn
        .unwrap_or_default();
    Ok(Provisioned {
        table: table.to_string(),
        table_created,
        queue_url,
        dlq_url,
        topic_arn,
    })
}

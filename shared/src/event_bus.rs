//! Events on EventBridge (`KEYROTOR_EVENT_BUS`) beside SNS: every
//! `keyrotor.result.v1`, `keyrotor.run.v1` and `keyrotor.breaker.v1` is put
//! on the bus with source `keyrotor`, detail-type the event type and detail
//! the same JSON as on SNS. [`sinks`] builds what a deployment publishes
//! to; [`Fanout`] publishes each event to every one of them, so the
//! callers' outbox (publish, then mark published) covers the bus as it
//! covers the topic.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use crate::config::Settings;
use crate::error::AwsError;
use crate::events::{
    BreakerEvent, EventSink, ResultEvent, RunEvent, SnsEvents, BREAKER_EVENT_TYPE,
    RESULT_EVENT_TYPE, RUN_EVENT_TYPE,
};

/// The `Source` of keyrotor's events on EventBridge.
pub const EVENT_SOURCE: &str = "keyrotor";

/// [`EventSink`] over an EventBridge bus.
#[derive(Clone)]
pub struct EventBridgeEvents {
    client: aws_sdk_eventbridge::Client,
    bus: String,
}

impl EventBridgeEvents {
    /// Puts events on `bus` (a name or an ARN).
    pub fn new(client: aws_sdk_eventbridge::Client, bus: impl Into<String>) -> EventBridgeEvents {
        EventBridgeEvents {
            client,
            bus: bus.into(),
        }
    }

    async fn put(&self, detail_type: &str, event: &impl Serialize) -> Result<(), AwsError> {
        let op = "events:PutEvents";
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(EVENT_SOURCE)
            .detail_type(detail_type)
            .detail(serde_json::to_string(event).expect("plain data serialises"))
            .build();
        let out = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(op, e))?;
        // PutEvents answers 200 with failed entries inside.
        match out.entries().first() {
            Some(e) if e.error_code().is_some() => Err(AwsError::Service {
                op,
                code: e.error_code().unwrap_or_default().to_string(),
                message: e.error_message().unwrap_or_default().to_string(),
                source: None,
            }),
            _ if out.failed_entry_count() > 0 => Err(AwsError::Service {
                op,
                code: "FailedEntry".into(),
                message: "the bus did not take the event".into(),
                source: None,
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl EventSink for EventBridgeEvents {
    async fn publish_result(&self, event: &ResultEvent) -> Result<(), AwsError> {
        self.put(RESULT_EVENT_TYPE, event).await
    }

    async fn publish_run(&self, event: &RunEvent) -> Result<(), AwsError> {
        self.put(RUN_EVENT_TYPE, event).await
    }

    async fn publish_breaker(&self, event: &BreakerEvent) -> Result<(), AwsError> {
        self.put(BREAKER_EVENT_TYPE, event).await
    }
}

/// Publishes each event to every sink in turn; the first failure fails the
/// publication, which the caller retries whole (a sink that took the event
/// before may see it twice; consumers deduplicate on the event's run,
/// account and user, as they do for a standard SNS topic).
pub struct Fanout(pub Vec<Arc<dyn EventSink>>);

#[async_trait]
impl EventSink for Fanout {
    async fn publish_result(&self, event: &ResultEvent) -> Result<(), AwsError> {
        for sink in &self.0 {
            sink.publish_result(event).await?;
        }
        Ok(())
    }

    async fn publish_run(&self, event: &RunEvent) -> Result<(), AwsError> {
        for sink in &self.0 {
            sink.publish_run(event).await?;
        }
        Ok(())
    }

    async fn publish_breaker(&self, event: &BreakerEvent) -> Result<(), AwsError> {
        for sink in &self.0 {
            sink.publish_breaker(event).await?;
        }
        Ok(())
    }
}

/// Where this deployment's events go: the SNS topic (`KEYROTOR_TOPIC_ARN`)
/// and the EventBridge bus (`KEYROTOR_EVENT_BUS`), each when set; `None`
/// when neither is.
pub fn sinks(settings: &Settings, base: &SdkConfig) -> Option<Arc<dyn EventSink>> {
    let mut sinks: Vec<Arc<dyn EventSink>> = Vec::new();
    if let Some(arn) = &settings.topic_arn {
        sinks.push(Arc::new(SnsEvents::new(
            aws_sdk_sns::Client::new(base),
            arn.clone(),
        )));
    }
    if let Some(bus) = &settings.event_bus {
        sinks.push(Arc::new(EventBridgeEvents::new(
            aws_sdk_eventbridge::Client::new(base),
            bus.clone(),
        )));
    }
    match sinks.len() {
        0 => None,
        1 => sinks.pop(),
        _ => Some(Arc::new(Fanout(sinks))),
    }
}

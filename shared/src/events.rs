//! Machine-readable events on SNS (DESIGN §7): `keyrotor.result.v1` per
//! (account, user) — or per account when the account itself failed — with
//! message attributes `account_id`, `outcome` and `mode` for filter policies.
//! Key ids only; never secret material.

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{KeyAction, Mode, Outcome};
use crate::error::AwsError;
use crate::store::results::RunTotals;

/// `keyrotor.result.v1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultEvent {
    /// Always `keyrotor.result.v1`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The run.
    pub run_id: String,
    /// The member account.
    pub account_id: String,
    /// The user; `null` when the whole account failed.
    pub user_name: Option<String>,
    /// Audit or enforce.
    pub mode: Mode,
    /// What happened.
    pub outcome: Outcome,
    /// What was done.
    pub actions: Vec<KeyAction>,
    /// Why.
    pub reason: String,
    /// The new key, when one was created.
    pub new_key_id: Option<String>,
    /// The secret holding it.
    pub secret_arn: Option<String>,
    /// The run's evaluation time.
    pub as_of: DateTime<Utc>,
    /// When this happened (real clock).
    pub at: DateTime<Utc>,
    /// An incident: the user's key was reported exposed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub incident: bool,
    /// In an incident: the quarantine policy AWS attached to the user.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_policy: Option<String>,
}

/// The event type string of [`ResultEvent`].
pub const RESULT_EVENT_TYPE: &str = "keyrotor.result.v1";

impl ResultEvent {
    /// A `failed` event for an account that could not be processed at all.
    pub fn account_failed(
        run_id: &str,
        account_id: &str,
        mode: Mode,
        as_of: DateTime<Utc>,
        reason: String,
    ) -> ResultEvent {
        ResultEvent {
            kind: RESULT_EVENT_TYPE,
            run_id: run_id.to_string(),
            account_id: account_id.to_string(),
            user_name: None,
            mode,
            outcome: Outcome::Failed,
            actions: Vec::new(),
            reason,
            new_key_id: None,
            secret_arn: None,
            as_of,
            at: crate::time::now(),
            incident: false,
            quarantine_policy: None,
        }
    }
}

/// `keyrotor.run.v1`: a run's summary, once its last message is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunEvent {
    /// Always `keyrotor.run.v1`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The run's totals (`run_id`, `mode`, `as_of`, `accounts`, `expected`,
    /// `done`, `counts`, `failed_accounts`), at the event's top level.
    #[serde(flatten)]
    pub totals: RunTotals,
    /// When (real clock).
    pub at: DateTime<Utc>,
}

impl RunEvent {
    /// The summary event of a run with these totals, sent now.
    pub fn of(totals: RunTotals) -> RunEvent {
        RunEvent {
            kind: RUN_EVENT_TYPE,
            totals,
            at: crate::time::now(),
        }
    }
}

/// The event type string of [`RunEvent`].
pub const RUN_EVENT_TYPE: &str = "keyrotor.run.v1";

/// `keyrotor.breaker.v1`: the circuit breaker opened; enforce runs act in
/// audit mode until `keyrotor breaker reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BreakerEvent {
    /// Always `keyrotor.breaker.v1`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `open`.
    pub state: &'static str,
    /// The run whose failures opened it.
    pub run_id: String,
    /// That run's failed enforce results.
    pub failures: i64,
    /// `KEYROTOR_BREAKER_FAILURES` (`3`, `5%`).
    pub threshold: String,
    /// When it opened.
    pub opened_at: Option<DateTime<Utc>>,
    /// When (real clock).
    pub at: DateTime<Utc>,
}

/// The event type string of [`BreakerEvent`].
pub const BREAKER_EVENT_TYPE: &str = "keyrotor.breaker.v1";

/// Where events go.
#[async_trait]
pub trait EventSink: Send + Sync {
    /// Publishes one result event.
    async fn publish_result(&self, event: &ResultEvent) -> Result<(), AwsError>;
    /// Publishes a run summary (attributes: `outcome = run`, `mode`).
    async fn publish_run(&self, event: &RunEvent) -> Result<(), AwsError>;
    /// Publishes the breaker's opening (attribute: `outcome = breaker`).
    async fn publish_breaker(&self, event: &BreakerEvent) -> Result<(), AwsError>;
}

/// [`EventSink`] over SNS.
#[derive(Clone)]
pub struct SnsEvents {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsEvents {
    /// Publishes to `topic_arn`.
    pub fn new(client: aws_sdk_sns::Client, topic_arn: impl Into<String>) -> SnsEvents {
        SnsEvents {
            client,
            topic_arn: topic_arn.into(),
        }
    }
}

fn attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data type is set")
}

impl SnsEvents {
    /// Publishes `body` with String attributes; on a FIFO topic, in message
    /// group `group` with deduplication id `dedup`.
    async fn publish(
        &self,
        body: String,
        attributes: &[(&str, &str)],
        group: &str,
        dedup: String,
    ) -> Result<(), AwsError> {
        let mut publish = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .message(body);
        for (name, value) in attributes {
            publish = publish.message_attributes(*name, attribute(value));
        }
        if self.topic_arn.ends_with(".fifo") {
            publish = publish
                .message_group_id(group)
                .message_deduplication_id(dedup);
        }
        publish
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sns:Publish", e))?;
        Ok(())
    }
}

#[async_trait]
impl EventSink for SnsEvents {
    async fn publish_result(&self, event: &ResultEvent) -> Result<(), AwsError> {
        let body = serde_json::to_string(event).expect("plain data serialises");
        let attributes = [
            ("account_id", event.account_id.as_str()),
            ("outcome", event.outcome.as_str()),
            ("mode", event.mode.as_str()),
        ];
        // On a FIFO topic the account is the group: per-account order.
        let dedup = format!(
            "{}:{}:{}",
            event.run_id,
            event.account_id,
            event.user_name.as_deref().unwrap_or("-")
        );
        self.publish(body, &attributes, &event.account_id, dedup)
            .await
    }

    async fn publish_run(&self, event: &RunEvent) -> Result<(), AwsError> {
        let body = serde_json::to_string(event).expect("plain data serialises");
        let attributes = [("outcome", "run"), ("mode", event.totals.mode.as_str())];
        let dedup = format!("{}:run", event.totals.run_id);
        self.publish(body, &attributes, "runs", dedup).await
    }

    async fn publish_breaker(&self, event: &BreakerEvent) -> Result<(), AwsError> {
        let body = serde_json::to_string(event).expect("plain data serialises");
        let attributes = [("outcome", "breaker"), ("mode", "enforce")];
        let opened = event.opened_at.map(|t| t.timestamp_millis()).unwrap_or(0);
        let dedup = format!("{}:breaker:{opened}", event.run_id);
        self.publish(body, &attributes, "runs", dedup).await
    }
}

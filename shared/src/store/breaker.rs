//! The circuit breaker's state (one `CONTROL`/`BREAKER` item) and the
//! count it is opened by: the `enforce_failures` of a run's `RUN` item,
//! added to in the same transaction that records a `failed` enforce result
//! (so each counts exactly once; failures are rare, so the `RUN` item stays
//! cool). Opening is a conditional write: of the workers that see the
//! threshold reached, one opens it and publishes the event.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attr::{decode_item, get_item, num, s, time};
use super::keys::ItemKey;
use crate::error::AwsError;

/// The breaker as the table holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakerState {
    /// Whether it is open: enforce runs act in audit mode.
    #[serde(default)]
    pub open: bool,
    /// When it last opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<DateTime<Utc>>,
    /// The run that opened it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// That run's failed enforce results when it opened.
    #[serde(default)]
    pub failures: i64,
    /// The threshold it opened at (`KEYROTOR_BREAKER_FAILURES`, as the
    /// opening worker had it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<String>,
    /// Whether the `keyrotor.breaker.v1` event of its opening went out.
    #[serde(default)]
    pub published: bool,
    /// When it was last reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<DateTime<Utc>>,
    /// Who reset it (the caller's ARN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_by: Option<String>,
}

/// A run's count of failed enforce results, and its expected messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunFailures {
    /// Failed results recorded in enforce mode.
    pub failures: i64,
    /// Messages the run expects so far.
    pub expected: i64,
}

/// The breaker's storage.
#[async_trait]
pub trait BreakerPort: Send + Sync {
    /// The breaker (closed when never opened).
    async fn state(&self) -> Result<BreakerState, AwsError>;
    /// A run's failed enforce results and expected messages.
    async fn run_failures(&self, run_id: &str) -> Result<RunFailures, AwsError>;
    /// Opens the breaker for `run_id` unless it is open: `Some(state)` when
    /// this call opened it, `None` when it was open already.
    async fn open(
        &self,
        run_id: &str,
        failures: i64,
        threshold: &str,
    ) -> Result<Option<BreakerState>, AwsError>;
    /// Records that the opening's event went out.
    async fn mark_published(&self) -> Result<(), AwsError>;
    /// Closes it, recording who and when; the state after.
    async fn reset(&self, by: &str) -> Result<BreakerState, AwsError>;
}

/// [`BreakerPort`] over the state table.
#[derive(Clone)]
pub struct BreakerStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl BreakerStore {
    /// The breaker in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> BreakerStore {
        BreakerStore {
            client,
            table: table.into(),
        }
    }
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<BreakerState, AwsError> {
    decode_item("dynamodb:GetItem", "the breaker item", item)
}

#[async_trait]
impl BreakerPort for BreakerStore {
    async fn state(&self) -> Result<BreakerState, AwsError> {
        match get_item(&self.client, &self.table, &ItemKey::breaker()).await? {
            Some(item) => decode(item),
            None => Ok(BreakerState::default()),
        }
    }

    async fn run_failures(&self, run_id: &str) -> Result<RunFailures, AwsError> {
        let item = get_item(&self.client, &self.table, &ItemKey::run(run_id))
            .await?
            .unwrap_or_default();
        Ok(RunFailures {
            failures: num(&item, "enforce_failures"),
            expected: num(&item, "expected"),
        })
    }

    async fn open(
        &self,
        run_id: &str,
        failures: i64,
        threshold: &str,
    ) -> Result<Option<BreakerState>, AwsError> {
        let opened = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::breaker().attributes()))
            .update_expression(
                "SET #open = :yes, opened_at = :now, run_id = :run, failures = :failures, \
                 threshold = :threshold, published = :no",
            )
            .condition_expression("attribute_not_exists(#open) OR #open = :no")
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":now", time(&crate::time::now()))
            .expression_attribute_values(":run", s(run_id))
            .expression_attribute_values(":failures", super::attr::n(failures))
            .expression_attribute_values(":threshold", s(threshold))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match opened {
            Ok(out) => decode(out.attributes.unwrap_or_default()).map(Some),
            Err(e) => match AwsError::from_sdk("dynamodb:UpdateItem", e) {
                AwsError::ConditionFailed { .. } => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn mark_published(&self) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::breaker().attributes()))
            .update_expression("SET published = :yes")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":yes", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn reset(&self, by: &str) -> Result<BreakerState, AwsError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::breaker().attributes()))
            .update_expression("SET #open = :no, reset_at = :now, reset_by = :by")
            .expression_attribute_names("#open", "open")
            .expression_attribute_values(":no", AttributeValue::Bool(false))
            .expression_attribute_values(":now", time(&crate::time::now()))
            .expression_attribute_values(":by", s(by))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        decode(out.attributes.unwrap_or_default())
    }
}

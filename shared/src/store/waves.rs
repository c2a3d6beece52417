//! The waves' records (`CONTROL`/`WAVE#<n>`): the last decision about each
//! wave (released or halted, who and when) and its soak clock (first
//! enforced, last trouble). See [`crate::waves`] for the rules.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use super::attr::{decode_item, s, time};
use super::keys::{ItemKey, CONTROL_PK, PK, SK};
use crate::error::AwsError;
use crate::waves::{WaveRecord, WaveState};

/// The waves' storage.
#[async_trait]
pub trait WavesPort: Send + Sync {
    /// Every wave's record, by wave.
    async fn records(&self) -> Result<BTreeMap<u32, WaveRecord>, AwsError>;
    /// Records a decision (`Released` or `Halted`) about `wave`. A release
    /// restarts its soak clock (its next enforce run starts it).
    async fn decide(&self, wave: u32, state: WaveState, by: &str) -> Result<WaveRecord, AwsError>;
    /// Starts the soak clock of `wave` at `at` unless it runs already.
    async fn enforced(&self, wave: u32, at: DateTime<Utc>) -> Result<(), AwsError>;
    /// Records trouble in `wave` at `at`: a failed enforce result or a hold
    /// that ran out (restarts its soak clock).
    async fn trouble(&self, wave: u32, what: &str, at: DateTime<Utc>) -> Result<(), AwsError>;
}

/// [`WavesPort`] over the state table.
#[derive(Clone)]
pub struct WaveStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl WaveStore {
    /// The waves in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> WaveStore {
        WaveStore {
            client,
            table: table.into(),
        }
    }

    fn update(
        &self,
        wave: u32,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::wave(wave).attributes()))
            .expression_attribute_values(":wave", AttributeValue::N(wave.to_string()))
    }
}

fn decode(item: HashMap<String, AttributeValue>) -> Result<WaveRecord, AwsError> {
    decode_item("dynamodb:Query", "the wave item", item)
}

#[async_trait]
impl WavesPort for WaveStore {
    async fn records(&self) -> Result<BTreeMap<u32, WaveRecord>, AwsError> {
        let mut out = BTreeMap::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :wave)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s(CONTROL_PK))
            .expression_attribute_values(":wave", s(super::keys::WAVE_SK_PREFIX))
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let record = decode(item.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?)?;
            out.insert(record.wave, record);
        }
        Ok(out)
    }

    async fn decide(&self, wave: u32, state: WaveState, by: &str) -> Result<WaveRecord, AwsError> {
        let out = self
            .update(wave)
            .update_expression(
                "SET wave = :wave, decision = :state, decided_at = :now, decided_by = :by \
                 REMOVE enforced_since",
            )
            .expression_attribute_values(":state", s(state.as_str()))
            .expression_attribute_values(":now", time(&crate::time::now()))
            .expression_attribute_values(":by", s(by))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        decode(out.attributes.unwrap_or_default())
    }

    async fn enforced(&self, wave: u32, at: DateTime<Utc>) -> Result<(), AwsError> {
        self.update(wave)
            .update_expression(
                "SET wave = :wave, enforced_since = if_not_exists(enforced_since, :at)",
            )
            .expression_attribute_values(":at", time(&at))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    async fn trouble(&self, wave: u32, what: &str, at: DateTime<Utc>) -> Result<(), AwsError> {
        self.update(wave)
            .update_expression("SET wave = :wave, trouble_at = :at, trouble = :what")
            .expression_attribute_values(":at", time(&at))
            .expression_attribute_values(":what", s(what))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }
}

//! Run records (DESIGN §6): `RUN#<id>` / `RUN` with the run's parameters and
//! totals, and `RUN#<id>` / `ACCOUNT#<id>` with each account's expected
//! message count. The producer writes an account's count once its messages
//! are all sent (`enqueued = true`), so a worker can tell an account is done
//! when `enqueued` holds and `done` has reached `expected`. Every write is a
//! SET of final values (or an ADD to a string set), so producing the same
//! run twice leaves the same record.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::Mode;
use crate::error::AwsError;

/// The partition key of a run's items.
pub fn run_pk(run_id: &str) -> String {
    format!("RUN#{run_id}")
}

/// A run as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    /// Run id.
    pub run_id: String,
    /// Evaluation time.
    pub as_of: String,
    /// Mode.
    pub mode: String,
    /// When the producer started.
    pub started_at: String,
    /// Accounts enqueued.
    pub accounts: i64,
    /// Messages expected in all.
    pub expected: i64,
    /// Whether the producer has finished enqueueing.
    pub enqueue_done: bool,
    /// Accounts that could not be enumerated.
    pub failed_accounts: Vec<String>,
    /// Per-account records.
    pub per_account: Vec<RunAccount>,
}

/// One account of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAccount {
    /// Account id.
    pub account_id: String,
    /// Messages expected.
    pub expected: i64,
    /// Messages done (workers).
    pub done: i64,
    /// All its messages are enqueued.
    pub enqueued: bool,
    /// `ok` or `failed`.
    pub status: String,
    /// The failure, if any (no secrets: AWS error text).
    pub error: Option<String>,
}

/// The run items in the state table.
#[derive(Clone)]
pub struct RunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn key(run_id: &str, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), s(run_pk(run_id))),
        ("sk".to_string(), s(sk)),
    ])
}

fn get_s(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn get_bool(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn time(t: DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl RunStore {
    /// Run items in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> RunStore {
        RunStore {
            client,
            table: table.into(),
        }
    }

    /// Records the run's start (kept as first written when the run is produced again).
    pub async fn start(
        &self,
        run_id: &str,
        as_of: DateTime<Utc>,
        mode: Mode,
    ) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_id, "RUN".into())))
            .update_expression(
                "SET as_of = if_not_exists(as_of, :as_of), #mode = if_not_exists(#mode, :mode), \
                 started_at = if_not_exists(started_at, :now), enqueue_done = :false",
            )
            .expression_attribute_names("#mode", "mode")
            .expression_attribute_values(":as_of", time(as_of))
            .expression_attribute_values(":mode", s(mode.as_str()))
            .expression_attribute_values(":now", time(Utc::now()))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    /// Records that all of an account's `expected` messages are enqueued.
    pub async fn account_enqueued(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        expected: i64,
    ) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_id, format!("ACCOUNT#{account_id}"))))
            .update_expression(
                "SET account_id = :id, account_name = :name, expected = :n, enqueued = :true, \
                 #status = :ok, done = if_not_exists(done, :zero) REMOVE #error",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":id", s(account_id))
            .expression_attribute_values(":name", s(account_name))
            .expression_attribute_values(":n", n(expected))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":ok", s("ok"))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    /// Records that an account could not be enumerated, on the account and
    /// on the run.
    pub async fn account_failed(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        error: &str,
    ) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_id, format!("ACCOUNT#{account_id}"))))
            .update_expression(
                "SET account_id = :id, account_name = :name, #status = :failed, #error = :error, \
                 expected = if_not_exists(expected, :zero), done = if_not_exists(done, :zero), enqueued = :true",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":id", s(account_id))
            .expression_attribute_values(":name", s(account_name))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_id, "RUN".into())))
            .update_expression("ADD failed_accounts :a")
            .expression_attribute_values(":a", AttributeValue::Ss(vec![account_id.to_string()]))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    /// Records the run's totals once every account is enqueued.
    pub async fn finish_enqueue(
        &self,
        run_id: &str,
        accounts: i64,
        expected: i64,
    ) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(run_id, "RUN".into())))
            .update_expression(
                "SET accounts = :a, expected = :e, enqueue_done = :true, enqueued_at = :now",
            )
            .expression_attribute_values(":a", n(accounts))
            .expression_attribute_values(":e", n(expected))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":now", time(Utc::now()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }

    /// Reads a run with its accounts (`None` if there is no such run).
    pub async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, AwsError> {
        let mut items = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            items.extend(page.items.unwrap_or_default());
        }
        let Some(run) = items
            .iter()
            .find(|i| get_s(i, "sk").as_deref() == Some("RUN"))
        else {
            return Ok(None);
        };
        let mut failed_accounts: Vec<String> = run
            .get("failed_accounts")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        failed_accounts.sort();
        let mut per_account: Vec<RunAccount> = items
            .iter()
            .filter(|i| get_s(i, "sk").is_some_and(|sk| sk.starts_with("ACCOUNT#")))
            .map(|i| RunAccount {
                account_id: get_s(i, "account_id").unwrap_or_default(),
                expected: get_n(i, "expected"),
                done: get_n(i, "done"),
                enqueued: get_bool(i, "enqueued"),
                status: get_s(i, "status").unwrap_or_default(),
                error: get_s(i, "error"),
            })
            .collect();
        per_account.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(Some(RunRecord {
            run_id: run_id.to_string(),
            as_of: get_s(run, "as_of").unwrap_or_default(),
            mode: get_s(run, "mode").unwrap_or_default(),
            started_at: get_s(run, "started_at").unwrap_or_default(),
            accounts: get_n(run, "accounts"),
            expected: get_n(run, "expected"),
            enqueue_done: get_bool(run, "enqueue_done"),
            failed_accounts,
            per_account,
        }))
    }
}

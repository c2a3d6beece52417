//! Run records (DESIGN §6): `RUN#<id>` / `RUN` with the run's parameters and
//! totals, and `RUN#<id>` / `ACCOUNT#<id>` with each account's expected
//! message count. The producer writes an account's count once its messages
//! are all sent (`enqueued = true`), so a worker can tell an account is done
//! when `enqueued` holds and `done` has reached `expected`. Every write is a
//! SET of final values (or an ADD to a string set), so producing the same
//! run twice leaves the same record.
//!
//! The workers' counters (`done`, `count_<outcome>`) and once-only flags
//! (`digest_sent`, `summary_sent`) on the same items are written by
//! [`super::results`]; this module reads them back.
//!
//! Runs are listed by an index item per run, `RUNS` / `<run id>`, written at
//! the start: run ids begin with their UTC start time
//! (`20260601T000000Z-…`), so the partition sorts by time and the newest
//! run is the last item (a run id chosen by hand with `--run-id` sorts by
//! its spelling).

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::attr::{flag as get_bool, n, num as get_n, s, text as get_s, time};
use super::keys::{account_in, run_accounts_prefix, run_pk, ItemKey, RUNS_PK, SK};
use crate::domain::Mode;
use crate::error::AwsError;

/// The prefix of the counter attributes (`count_rotated`, ...).
pub const COUNT_PREFIX: &str = "count_";

/// The entry of the run's `forced` set for one user.
pub fn forced_entry(account_id: &str, user_name: &str) -> String {
    format!("{account_id}:{user_name}")
}

/// What the producer asked of a run: each message is checked against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunParams {
    /// The run's evaluation time.
    pub as_of: DateTime<Utc>,
    /// The run's mode.
    pub mode: Mode,
    /// When the producer started the run (real clock).
    pub started_at: DateTime<Utc>,
    /// `account:user` of each user the run forces.
    pub forced: std::collections::BTreeSet<String>,
    /// The key the run's messages are signed with (hex; `None` for runs
    /// produced before messages were signed).
    pub message_key: Option<String>,
}

/// A fresh message key: 32 random bytes, hex.
fn new_message_key() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
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
    /// Messages done (results recorded by workers), summed over the
    /// accounts.
    pub done: i64,
    /// Results per outcome (`rotated` -> 3), from the accounts'
    /// `count_<outcome>` attributes.
    pub counts: BTreeMap<String, i64>,
    /// Whether the run's summary event was sent.
    pub summary_sent: bool,
    /// Accounts that could not be enumerated.
    pub failed_accounts: Vec<String>,
    /// Per-account records.
    pub per_account: Vec<RunAccount>,
}

impl RunRecord {
    /// Whether every expected message has a result (and no more are coming).
    pub fn complete(&self) -> bool {
        self.enqueue_done && self.done >= self.expected
    }
}

/// One account of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunAccount {
    /// Account id.
    pub account_id: String,
    /// Account name.
    pub account_name: String,
    /// Messages expected.
    pub expected: i64,
    /// Messages done (workers).
    pub done: i64,
    /// Results per outcome, from the `count_<outcome>` attributes.
    pub counts: BTreeMap<String, i64>,
    /// All its messages are enqueued.
    pub enqueued: bool,
    /// `ok` or `failed`.
    pub status: String,
    /// The failure, if any (no secrets: AWS error text).
    pub error: Option<String>,
    /// Whether its digest email was sent.
    pub digest_sent: bool,
}

impl RunAccount {
    /// Whether every expected message of the account has a result.
    pub fn complete(&self) -> bool {
        self.enqueued && self.done >= self.expected
    }
}

/// The run items in the state table.
#[derive(Clone)]
pub struct RunStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// Every `count_<outcome>` attribute, by outcome.
fn get_counts(item: &HashMap<String, AttributeValue>) -> BTreeMap<String, i64> {
    item.iter()
        .filter_map(|(name, v)| {
            let outcome = name.strip_prefix(COUNT_PREFIX)?;
            let n = v.as_n().ok()?.parse().ok()?;
            (!outcome.is_empty()).then(|| (outcome.to_string(), n))
        })
        .collect()
}

/// A `RUN#<id>` / `ACCOUNT#<id>` item.
fn decode_account(item: &HashMap<String, AttributeValue>) -> RunAccount {
    RunAccount {
        account_id: get_s(item, "account_id")
            .or_else(|| get_s(item, SK).and_then(|sk| account_in(&sk).map(str::to_string)))
            .unwrap_or_default(),
        account_name: get_s(item, "account_name").unwrap_or_default(),
        expected: get_n(item, "expected"),
        done: get_n(item, "done"),
        counts: get_counts(item),
        enqueued: get_bool(item, "enqueued"),
        status: get_s(item, "status").unwrap_or_default(),
        error: get_s(item, "error"),
        digest_sent: get_bool(item, "digest_sent"),
    }
}

/// A `RUN#<id>` / `RUN` item and its accounts.
fn decode_run(
    run_id: &str,
    run: &HashMap<String, AttributeValue>,
    mut per_account: Vec<RunAccount>,
) -> RunRecord {
    let mut failed_accounts: Vec<String> = run
        .get("failed_accounts")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default();
    failed_accounts.sort();
    per_account.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    // The RUN item takes an account's counts only once the account is
    // complete; the accounts' own counters are current while the run goes.
    let done = per_account.iter().map(|a| a.done).sum();
    let mut counts = BTreeMap::new();
    for (outcome, n) in per_account.iter().flat_map(|a| &a.counts) {
        *counts.entry(outcome.clone()).or_default() += n;
    }
    RunRecord {
        run_id: run_id.to_string(),
        as_of: get_s(run, "as_of").unwrap_or_default(),
        mode: get_s(run, "mode").unwrap_or_default(),
        started_at: get_s(run, "started_at").unwrap_or_default(),
        accounts: get_n(run, "accounts"),
        expected: get_n(run, "expected"),
        enqueue_done: get_bool(run, "enqueue_done"),
        done,
        counts,
        summary_sent: get_bool(run, "summary_sent"),
        failed_accounts,
        per_account,
    }
}

impl RunStore {
    /// Run items in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> RunStore {
        RunStore {
            client,
            table: table.into(),
        }
    }

    /// Records the run's start (kept as first written when the run is
    /// produced again), then its index item `RUNS` / `<run id>` so that
    /// [`RunStore::latest`] finds it. The first start also draws the run's
    /// message key (see [`crate::message::WorkMessage::sign`]); every start
    /// returns it.
    pub async fn start(
        &self,
        run_id: &str,
        as_of: DateTime<Utc>,
        mode: Mode,
        forced: &[(String, String)],
    ) -> Result<String, AwsError> {
        let now = crate::time::now();
        let set = "SET as_of = if_not_exists(as_of, :as_of), #mode = if_not_exists(#mode, :mode), \
                   started_at = if_not_exists(started_at, :now), enqueue_done = :false, \
                   msg_key = if_not_exists(msg_key, :key)";
        let message_key = new_message_key();
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run(run_id).attributes()))
            .expression_attribute_names("#mode", "mode")
            .expression_attribute_values(":as_of", time(&as_of))
            .expression_attribute_values(":mode", s(mode.as_str()))
            .expression_attribute_values(":now", time(&now))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":key", s(message_key));
        // The workers act on `force` only for the users listed here.
        let update = if forced.is_empty() {
            update.update_expression(set)
        } else {
            update
                .update_expression(format!("{set} ADD forced :forced"))
                .expression_attribute_values(
                    ":forced",
                    AttributeValue::Ss(forced.iter().map(|(a, u)| forced_entry(a, u)).collect()),
                )
        };
        let started = super::retry::send_update(update.return_values(ReturnValue::AllNew)).await?;
        let message_key = started
            .attributes
            .as_ref()
            .and_then(|item| get_s(item, "msg_key"))
            .ok_or_else(|| AwsError::NotFound {
                op: "dynamodb:UpdateItem",
                message: format!("run {run_id} has no message key after its start"),
                source: None,
            })?;
        // After the run item, so a listed run always has a record.
        super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run_index(run_id).attributes()))
                .update_expression(
                    "SET run_id = :id, as_of = if_not_exists(as_of, :as_of), \
                 #mode = if_not_exists(#mode, :mode), started_at = if_not_exists(started_at, :now)",
                )
                .expression_attribute_names("#mode", "mode")
                .expression_attribute_values(":id", s(run_id))
                .expression_attribute_values(":as_of", time(&as_of))
                .expression_attribute_values(":mode", s(mode.as_str()))
                .expression_attribute_values(":now", time(&now)),
        )
        .await?;
        Ok(message_key)
    }

    /// What the producer asked of a run, for the workers to check each
    /// message against (`None`: no such run).
    pub async fn params(&self, run_id: &str) -> Result<Option<RunParams>, AwsError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run(run_id).attributes()))
            .projection_expression("as_of, #mode, started_at, forced, msg_key")
            .expression_attribute_names("#mode", "mode")
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let parse = |name: &str| {
            get_s(&item, name)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let (Some(as_of), Some(started_at), Some(mode)) = (
            parse("as_of"),
            parse("started_at"),
            get_s(&item, "mode").and_then(|m| m.parse::<Mode>().ok()),
        ) else {
            // Counters alone (a result recorded for a run nobody started).
            return Ok(None);
        };
        Ok(Some(RunParams {
            as_of,
            mode,
            started_at,
            forced: item
                .get("forced")
                .and_then(|v| v.as_ss().ok())
                .map(|v| v.iter().cloned().collect())
                .unwrap_or_default(),
            message_key: get_s(&item, "msg_key"),
        }))
    }

    /// The newest run's id (the greatest run id), or `None` before the first run.
    pub async fn latest(&self) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(RUNS_PK))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
        Ok(out.items().first().and_then(|i| get_s(i, SK)))
    }

    /// Records that all of an account's `expected` messages are enqueued,
    /// over `groups` message groups. Workers may have recorded them all
    /// already: then the account is rolled up into the run's counters here,
    /// and `true` says so (no worker saw it complete: its digest is still
    /// owed). `watch_from`, `expected` less `groups`, is the count from
    /// which a worker reads the counters after each result (see
    /// [`super::results::Recorded::Early`]).
    pub async fn account_enqueued(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        expected: i64,
        groups: u32,
    ) -> Result<bool, AwsError> {
        let written = super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run_account(run_id, account_id).attributes()))
                .update_expression(
                    "SET account_id = :id, account_name = :name, expected = :n, enqueued = :true, \
                 watch_from = :watch, #status = :ok, done = if_not_exists(done, :zero) REMOVE #error",
                )
                .expression_attribute_values(":watch", n(expected - i64::from(groups.max(1))))
                .expression_attribute_names("#status", "status")
                .expression_attribute_names("#error", "error")
                .expression_attribute_values(":id", s(account_id))
                .expression_attribute_values(":name", s(account_name))
                .expression_attribute_values(":n", n(expected))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":ok", s("ok"))
                .expression_attribute_values(":zero", n(0))
                .return_values(ReturnValue::AllNew),
        )
        .await?;
        self.roll_up_if_complete(run_id, account_id, written.attributes())
            .await
    }

    /// Rolls the account up if `item` (as the mark wrote it) is complete;
    /// whether it was.
    async fn roll_up_if_complete(
        &self,
        run_id: &str,
        account_id: &str,
        item: Option<&HashMap<String, AttributeValue>>,
    ) -> Result<bool, AwsError> {
        let Some(item) = item else { return Ok(false) };
        super::results::ResultStore::new(self.client.clone(), self.table.clone())
            .roll_up_if_complete(run_id, account_id, item)
            .await
    }

    /// Records that an account could not be enumerated, on the account and
    /// on the run. `enqueued` messages were sent before the failure: the
    /// account's digest waits for their results; `true` when they were all
    /// recorded already (the digest is owed, and no worker will see it).
    pub async fn account_failed(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        error: &str,
        enqueued: i64,
    ) -> Result<bool, AwsError> {
        let written = super::retry::send_update(self.client.update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run_account(run_id, account_id).attributes()))
            .update_expression(
                "SET account_id = :id, account_name = :name, #status = :failed, #error = :error, \
                 expected = :sent, done = if_not_exists(done, :zero), enqueued = :true \
                 REMOVE watch_from",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#error", "error")
            .expression_attribute_values(":id", s(account_id))
            .expression_attribute_values(":name", s(account_name))
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":error", s(error))
            .expression_attribute_values(":sent", n(enqueued))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .return_values(ReturnValue::AllNew))
        .await?;
        let complete = self
            .roll_up_if_complete(run_id, account_id, written.attributes())
            .await?;
        super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run(run_id).attributes()))
                .update_expression("ADD failed_accounts :a")
                .expression_attribute_values(
                    ":a",
                    AttributeValue::Ss(vec![account_id.to_string()]),
                ),
        )
        .await?;
        Ok(complete)
    }

    /// Records the run's totals once every account is enqueued; `true` when
    /// every result was counted already (the run's summary is owed, and no
    /// worker will see the run complete).
    pub async fn finish_enqueue(
        &self,
        run_id: &str,
        accounts: i64,
        expected: i64,
    ) -> Result<bool, AwsError> {
        let written = super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run(run_id).attributes()))
                .update_expression(
                    "SET accounts = :a, expected = :e, enqueue_done = :true, enqueued_at = :now",
                )
                .expression_attribute_values(":a", n(accounts))
                .expression_attribute_values(":e", n(expected))
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .expression_attribute_values(":now", time(&crate::time::now()))
                .return_values(ReturnValue::AllNew),
        )
        .await?;
        Ok(written
            .attributes()
            .is_some_and(|run| get_n(run, "done") >= expected))
    }

    /// Reads a run with its accounts (`None` if there is no such run). The
    /// run's result items, in the same partition, are not read.
    pub async fn get(&self, run_id: &str) -> Result<Option<RunRecord>, AwsError> {
        let run = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run(run_id).attributes()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        let Some(run) = run.item else {
            return Ok(None);
        };
        let mut per_account = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :account)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":account", s(run_accounts_prefix()))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            per_account.extend(page.items().iter().map(decode_account));
        }
        Ok(Some(decode_run(run_id, &run, per_account)))
    }
}

/// What the producer and the worker do with run items: the port over
/// [`RunStore`] (DynamoDB), so that the load simulator can run the real
/// producer and worker over its own model of the table.
#[async_trait::async_trait]
pub trait RunsPort: Send + Sync {
    /// Starts (or re-starts) a run; returns its message key.
    async fn start(
        &self,
        run_id: &str,
        as_of: DateTime<Utc>,
        mode: Mode,
        forced: &[(String, String)],
    ) -> Result<String, AwsError>;
    /// What the producer asked of a run, if it exists.
    async fn params(&self, run_id: &str) -> Result<Option<RunParams>, AwsError>;
    /// Records an account as enqueued with `expected` messages over
    /// `groups` message groups.
    async fn account_enqueued(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        expected: i64,
        groups: u32,
    ) -> Result<bool, AwsError>;
    /// Records an account's failure, with the messages it did send.
    async fn account_failed(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        error: &str,
        enqueued: i64,
    ) -> Result<bool, AwsError>;
    /// Records the run as enqueued.
    async fn finish_enqueue(
        &self,
        run_id: &str,
        accounts: i64,
        expected: i64,
    ) -> Result<bool, AwsError>;
}

// Inherent methods win method resolution, so each forwards to its own.
#[async_trait::async_trait]
impl RunsPort for RunStore {
    async fn start(
        &self,
        run_id: &str,
        as_of: DateTime<Utc>,
        mode: Mode,
        forced: &[(String, String)],
    ) -> Result<String, AwsError> {
        self.start(run_id, as_of, mode, forced).await
    }
    async fn params(&self, run_id: &str) -> Result<Option<RunParams>, AwsError> {
        self.params(run_id).await
    }
    async fn account_enqueued(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        expected: i64,
        groups: u32,
    ) -> Result<bool, AwsError> {
        self.account_enqueued(run_id, account_id, account_name, expected, groups)
            .await
    }
    async fn account_failed(
        &self,
        run_id: &str,
        account_id: &str,
        account_name: &str,
        error: &str,
        enqueued: i64,
    ) -> Result<bool, AwsError> {
        self.account_failed(run_id, account_id, account_name, error, enqueued)
            .await
    }
    async fn finish_enqueue(
        &self,
        run_id: &str,
        accounts: i64,
        expected: i64,
    ) -> Result<bool, AwsError> {
        self.finish_enqueue(run_id, accounts, expected).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, AttributeValue)]) -> HashMap<String, AttributeValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn counters_are_read_from_every_count_attribute() {
        let i = item(&[
            ("count_rotated", n(3)),
            ("count_held", n(1)),
            ("count_noop", n(0)),
            ("count_", n(9)),
            ("count_bad", s("x")),
            ("counter", n(5)),
            ("done", n(4)),
        ]);
        let counts = get_counts(&i);
        assert_eq!(
            counts,
            BTreeMap::from([
                ("held".to_string(), 1),
                ("noop".to_string(), 0),
                ("rotated".to_string(), 3)
            ])
        );
    }

    #[test]
    fn an_account_item_decodes_with_defaults() {
        let a = decode_account(&item(&[
            ("pk", s("RUN#r1")),
            ("sk", s("ACCOUNT#111122223333")),
            ("account_id", s("111122223333")),
            ("account_name", s("prod")),
            ("expected", n(3)),
            ("done", n(3)),
            ("count_rotated", n(2)),
            ("count_noop", n(1)),
            ("enqueued", AttributeValue::Bool(true)),
            ("status", s("ok")),
            ("digest_sent", AttributeValue::Bool(true)),
        ]));
        assert_eq!(a.account_id, "111122223333");
        assert_eq!(a.account_name, "prod");
        assert_eq!((a.done, a.expected), (3, 3));
        assert_eq!(a.counts.get("rotated"), Some(&2));
        assert!(a.digest_sent && a.enqueued && a.complete());
        assert_eq!(a.error, None);

        // Counters may reach an account before the producer records it.
        let early = decode_account(&item(&[
            ("sk", s("ACCOUNT#444455556666")),
            ("done", n(1)),
            ("count_failed", n(1)),
        ]));
        assert_eq!(early.account_id, "444455556666");
        assert!(!early.enqueued && !early.digest_sent && !early.complete());
    }

    #[test]
    fn a_run_is_complete_once_enqueued_and_all_done() {
        let run = item(&[
            ("as_of", s("2026-06-01T00:00:00.000Z")),
            ("mode", s("enforce")),
            ("started_at", s("2026-06-01T00:00:01.000Z")),
            ("accounts", n(2)),
            ("expected", n(6)),
            ("enqueue_done", AttributeValue::Bool(true)),
            // Only account 2, complete, is rolled up into the run's counters.
            ("done", n(3)),
            ("count_rotated", n(3)),
            (
                "failed_accounts",
                AttributeValue::Ss(vec!["b".into(), "a".into()]),
            ),
        ]);
        let accounts = vec![
            decode_account(&item(&[
                ("account_id", s("2")),
                ("expected", n(3)),
                ("done", n(3)),
                ("count_rotated", n(3)),
            ])),
            decode_account(&item(&[
                ("account_id", s("1")),
                ("expected", n(3)),
                ("done", n(2)),
                ("count_rotated", n(1)),
                ("count_failed", n(1)),
            ])),
        ];
        let mut r = decode_run("r1", &run, accounts);
        assert_eq!(r.run_id, "r1");
        assert_eq!(r.mode, "enforce");
        assert_eq!(
            (r.done, r.expected, r.accounts),
            (5, 6, 2),
            "summed over accounts"
        );
        assert_eq!(r.counts.values().sum::<i64>(), 5);
        assert_eq!(r.counts["failed"], 1);
        assert_eq!(r.failed_accounts, ["a", "b"]);
        assert_eq!(
            r.per_account
                .iter()
                .map(|a| a.account_id.as_str())
                .collect::<Vec<_>>(),
            ["1", "2"]
        );
        assert!(!r.summary_sent);
        assert!(!r.complete());
        r.done = 6;
        assert!(r.complete());
        r.enqueue_done = false;
        assert!(!r.complete(), "more messages may still come");

        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["counts"]["rotated"], 4);
        assert_eq!(json["done"], 6);
    }
}

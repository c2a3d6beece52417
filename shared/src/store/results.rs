//! Result items (DESIGN §6) and the run counters, written exactly once per
//! (run, account, user): one DynamoDB transaction puts the result with
//! `attribute_not_exists(sk)` and adds to the account's counters, so a
//! duplicate delivery changes nothing and no count is ever added twice.
//! The run's counters take an account's counts once, when the account
//! completes (a second transaction that also marks the account
//! `rolled_up`): a run's one `RUN` item sees one write per account rather
//! than one per user, since real DynamoDB cancels transactions that meet on
//! an item and a thousand accounts' results would meet there hundreds of
//! times a second. Also the once-only claims for the account digest and the
//! run summary.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attr::{decode_item, flag, get_item, n, num, s, text};
use super::keys::{results_prefix, run_pk, ItemKey};
use crate::domain::{KeyAction, Mode, Outcome};
use crate::error::AwsError;

/// How long result items are kept (TTL `expires_at`).
pub const RESULT_TTL_DAYS: i64 = 90;

/// One processed (account, user) of a run. Key ids only. Its attributes in
/// the table are these fields as `serde_dynamo` writes them (plus the key,
/// `published` and the TTL).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultItem {
    /// Run.
    pub run_id: String,
    /// Account.
    pub account_id: String,
    /// Account name.
    pub account_name: String,
    /// The account owner's email (from the message).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::attr::blank_is_none"
    )]
    pub account_email: Option<String>,
    /// User.
    pub user_name: String,
    /// Outcome.
    pub outcome: Outcome,
    /// The mode the user was processed in.
    pub mode: Mode,
    /// Why.
    pub reason: String,
    /// What was carried out, in order.
    #[serde(default)]
    pub actions: Vec<KeyAction>,
    /// For a `planned` result: the changes an enforce run would make (the
    /// digest words them; other outcomes leave this empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub due: Vec<KeyAction>,
    /// New key, if created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_key_id: Option<String>,
    /// Secret holding it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,
    /// The user's owner (owner-tag email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    /// The ages of the user's active keys before and after this run's
    /// changes (the report's key-age chart); absent on a failure and on
    /// results written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_ages: Option<KeyAges>,
    /// An incident: the user's key was reported exposed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub incident: bool,
    /// In an incident: the quarantine policy AWS attached to the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine_policy: Option<String>,
    /// When (real clock).
    pub at: DateTime<Utc>,
}

/// The ages, in whole days at the run's evaluation time, of a user's active
/// keys before and after the run's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAges {
    /// Active keys as the run found them.
    pub before: Vec<i64>,
    /// Active keys as the run left them.
    pub after: Vec<i64>,
}

/// A run's totals from its `RUN` item, once its last result is counted: what
/// the run summary event reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunTotals {
    /// The run.
    pub run_id: String,
    /// Audit or enforce, as recorded.
    pub mode: String,
    /// Evaluation time, as recorded.
    pub as_of: String,
    /// Accounts enqueued.
    pub accounts: i64,
    /// Messages expected.
    pub expected: i64,
    /// Results recorded.
    pub done: i64,
    /// Results per outcome.
    pub counts: std::collections::BTreeMap<String, i64>,
    /// Accounts that could not be enumerated, sorted.
    pub failed_accounts: Vec<String>,
}

/// An account's progress in a run after a result was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Results recorded.
    pub done: i64,
    /// Messages expected.
    pub expected: i64,
    /// Whether the producer has finished enqueueing (the account, or the run).
    pub enqueued: bool,
}

impl Progress {
    /// Whether every expected message has a result.
    pub fn complete(&self) -> bool {
        self.enqueued && self.done >= self.expected
    }
}

/// What recording a result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time: counted. Carries the account's and the run's progress.
    New {
        /// The account's progress.
        account: Progress,
        /// The run's progress; `None` while the account is incomplete (the
        /// run cannot be complete then, and its item is not read).
        run: Option<Progress>,
    },
    /// First time: counted, and the write itself showed that nothing needs
    /// reading: the producer is still enqueueing the account, or at least
    /// as many of its results are still to come as it has message groups
    /// (so it is not complete, and each group keeps its share of the IAM
    /// rate). The account's `watch_from` mark says where that ends.
    Early,
    /// A result already existed: a duplicate delivery; nothing changed.
    Duplicate,
}

/// The condition on an account's count that makes a result [`Recorded::Early`].
/// `watch_from` is `expected` less the account's message groups, written by
/// the producer with `enqueued`; an account without it (failed part-way, or
/// marked by an older producer) is always read.
const EARLY: &str =
    "attribute_not_exists(enqueued) OR (attribute_exists(watch_from) AND done < watch_from)";

/// Why one attempt to record a result failed.
enum RecordFailure {
    /// Another transaction touched one of the items at the same time.
    Conflict,
    /// Any other failure.
    Aws(AwsError),
}

impl RecordFailure {
    /// Only conflicts are retried here: the SDK has retried throttling and
    /// 5xx already, and a failure that outlasted it fails the delivery.
    fn is_transient(&self) -> bool {
        match self {
            RecordFailure::Conflict => true,
            RecordFailure::Aws(e) => super::retry::conflicted(e),
        }
    }

    fn into_aws(self) -> AwsError {
        match self {
            RecordFailure::Conflict => AwsError::Service {
                op: "dynamodb:TransactWriteItems",
                code: "TransactionConflict".into(),
                message: "the transaction kept conflicting with others on the same counters".into(),
                source: None,
            },
            RecordFailure::Aws(e) => e,
        }
    }
}

/// The cancellation reason codes of a cancelled transaction (one per item,
/// `None` for items that were fine), or `None` for any other error.
fn cancellation<R>(
    e: &aws_smithy_runtime_api::client::result::SdkError<
        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError,
        R,
    >,
) -> Option<Vec<String>> {
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(tc) => Some(
            tc.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_string())
                .collect(),
        ),
        _ => None,
    }
}

/// What a digest or summary claim found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Ours to send; `already_sent` holds the digest recipients an earlier,
    /// interrupted claimant reached.
    Mine {
        /// Recipients already sent to.
        already_sent: std::collections::BTreeSet<String>,
    },
    /// Another worker is sending it now; its claim may be taken over at
    /// `stale_at` if it has not finished by then.
    Busy {
        /// When the other worker's claim goes stale.
        stale_at: DateTime<Utc>,
        /// The message whose delivery holds the claim (`account/user`, see
        /// [`claim_holder`]); `None` when the claim names none: taken by a
        /// delivery with fewer than two receives left, or written before
        /// claims named their message.
        holder: Option<String>,
    },
    /// Sent already (or nothing to claim).
    Done,
}

const SENDING: &str = "sending";
const SENT: &str = "sent";

/// Free to claim: not sent (`#flag`, the completion flag older items carry
/// alone), and not claimed, or claimed by a holder whose claim went stale.
const CLAIM_IS_FREE: &str =
    "attribute_exists(pk) AND (attribute_not_exists(#flag) OR #flag = :false) \
     AND (attribute_not_exists(#state) OR (#state = :sending AND #at < :stale))";

/// The attributes of one kind of claim.
#[derive(Clone, Copy)]
struct Claimed {
    flag: &'static str,
    state: &'static str,
    claimed_at: &'static str,
    owner: &'static str,
    holder: &'static str,
}

const DIGEST: Claimed = Claimed {
    flag: "digest_sent",
    state: "digest_state",
    claimed_at: "digest_claimed_at",
    owner: "digest_owner",
    holder: "digest_holder",
};

const SUMMARY: Claimed = Claimed {
    flag: "summary_sent",
    state: "summary_state",
    claimed_at: "summary_claimed_at",
    owner: "summary_owner",
    holder: "summary_holder",
};

/// The message a claim is held for, `account/user` (an IAM user name has
/// no `/`): the message's own redelivery sends the notice if its holder
/// stops, which is what lets a delivery of another message that meets the
/// claim finish (see the worker's `after_record`).
pub fn claim_holder(account_id: &str, user_name: &str) -> String {
    format!("{account_id}/{user_name}")
}

/// What a claim is for: each is sent once per run (or per account of a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice<'a> {
    /// An account's digest email.
    Digest {
        /// The account.
        account_id: &'a str,
    },
    /// The run's summary event.
    Summary,
}

impl Notice<'_> {
    /// The item that holds the claim, and its attributes.
    fn item(self, run_id: &str) -> (ItemKey, Claimed) {
        match self {
            Notice::Digest { account_id } => (ItemKey::run_account(run_id, account_id), DIGEST),
            Notice::Summary => (ItemKey::run(run_id), SUMMARY),
        }
    }
}

/// Result items and counters in the state table.
#[derive(Clone)]
pub struct ResultStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// The counter attribute of an outcome (`count_rotated`, ...).
fn counter(outcome: Outcome) -> String {
    format!("count_{}", outcome.as_str())
}

impl ResultStore {
    /// Results in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> ResultStore {
        ResultStore {
            client,
            table: table.into(),
        }
    }

    /// The recorded result and whether its event was published.
    pub async fn find(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<(ResultItem, bool)>, AwsError> {
        let item = self
            .get(ItemKey::result(run_id, account_id, user_name))
            .await?;
        if item.is_empty() {
            return Ok(None);
        }
        Ok(Some((
            decode(run_id, account_id, &item)?,
            flag(&item, "published"),
        )))
    }

    /// Marks a result's event as published.
    pub async fn mark_published(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), AwsError> {
        super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(
                    ItemKey::result(run_id, account_id, user_name).attributes(),
                ))
                .update_expression("SET published = :true")
                .condition_expression("attribute_exists(sk)")
                .expression_attribute_values(":true", AttributeValue::Bool(true)),
        )
        .await?;
        Ok(())
    }

    /// Records a result and counts it, exactly once.
    pub async fn record(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record_watching(r, true).await
    }

    /// [`ResultStore::record`] for a result known to be among its account's
    /// last (its counters, read after an earlier result, said so): counted
    /// without the [`Recorded::Early`] condition, which would only cancel
    /// the transaction, then read.
    pub async fn record_last(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record_watching(r, false).await
    }

    /// Records a result, first on the [`Recorded::Early`] condition when
    /// `watch` says so.
    async fn record_watching(&self, r: &ResultItem, watch: bool) -> Result<Recorded, AwsError> {
        let mut item: HashMap<String, AttributeValue> =
            serde_dynamo::to_item(r).expect("a result item is plain data");
        item.extend(ItemKey::result(&r.run_id, &r.account_id, &r.user_name).attributes());
        // The event is published after the record (outbox): a redelivery
        // finds `published = false` and publishes what was recorded.
        item.insert("published".into(), AttributeValue::Bool(false));
        item.insert(
            "expires_at".into(),
            n((r.at + chrono::Duration::days(RESULT_TTL_DAYS)).timestamp()),
        );
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .expect("table and item are set");
        let count = |early: bool| {
            let update = Update::builder()
                .table_name(&self.table)
                .set_key(Some(
                    ItemKey::run_account(&r.run_id, &r.account_id).attributes(),
                ))
                .update_expression(format!(
                    "ADD done :one, {} :one SET owner_email = :email",
                    counter(r.outcome)
                ))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(
                    ":email",
                    s(r.account_email.clone().unwrap_or_default()),
                );
            let update = if early {
                update.condition_expression(EARLY)
            } else {
                update
            };
            update.build().expect("table, key and expression are set")
        };
        // The circuit breaker's count: on the run's item, since it is a
        // run's failures that open it. Failures are rare, so this adds no
        // load worth the name to that item.
        let failures = (r.outcome == Outcome::Failed && r.mode == Mode::Enforce).then(|| {
            Update::builder()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run(&r.run_id).attributes()))
                .update_expression("ADD enforce_failures :one")
                .expression_attribute_values(":one", n(1))
                .build()
                .expect("table, key and expression are set")
        });
        let items = |early: bool| {
            let mut items = vec![
                TransactWriteItem::builder().put(put.clone()).build(),
                TransactWriteItem::builder().update(count(early)).build(),
            ];
            items.extend(
                failures
                    .clone()
                    .map(|f| TransactWriteItem::builder().update(f).build()),
            );
            items
        };
        // Most results are not among their account's last: counted on the
        // condition that says so, they need no read of the counters after.
        if watch {
            match self.transact(items(true)).await? {
                None => return Ok(Recorded::Early),
                Some(0) => return Ok(Recorded::Duplicate),
                Some(_) => {}
            }
        }
        // Among the last: counted without the condition, then read.
        if self.transact(items(false)).await?.is_some() {
            return Ok(Recorded::Duplicate);
        }
        let (account, run) = self.progress(&r.run_id, &r.account_id).await?;
        Ok(Recorded::New { account, run })
    }

    /// The account's progress, and the run's once the account is complete
    /// (then the account's counts are rolled up into the run's first, if
    /// no one has yet). One item read while the account is incomplete.
    pub async fn progress(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<(Progress, Option<Progress>), AwsError> {
        let item = self.get(ItemKey::run_account(run_id, account_id)).await?;
        let account = Progress {
            done: num(&item, "done"),
            expected: num(&item, "expected"),
            enqueued: flag(&item, "enqueued"),
        };
        if !account.complete() {
            return Ok((account, None));
        }
        self.roll_up_if_complete(run_id, account_id, &item).await?;
        let run = self.get(ItemKey::run(run_id)).await?;
        Ok((
            account,
            Some(Progress {
                done: num(&run, "done"),
                expected: num(&run, "expected"),
                enqueued: flag(&run, "enqueue_done"),
            }),
        ))
    }

    /// Rolls an account up into the run's counters if `item` (its
    /// `ACCOUNT#` item, read consistently or returned by a write) says it
    /// is complete and not rolled up yet. The producer calls it too: an
    /// account whose last result was recorded before the producer marked it
    /// enqueued was complete when no worker looked.
    /// Whether this call found the account complete and not yet rolled up.
    pub(crate) async fn roll_up_if_complete(
        &self,
        run_id: &str,
        account_id: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<bool, AwsError> {
        let complete = Progress {
            done: num(item, "done"),
            expected: num(item, "expected"),
            enqueued: flag(item, "enqueued"),
        }
        .complete();
        if complete && !flag(item, "rolled_up") {
            return self.roll_up(run_id, account_id, item).await;
        }
        Ok(false)
    }

    /// Adds a complete account's counters to the run's, exactly once: the
    /// account is marked `rolled_up` in the same transaction, conditioned
    /// on not being marked yet and on the counts read being current.
    /// Whether this call did it (else another had).
    async fn roll_up(
        &self,
        run_id: &str,
        account_id: &str,
        account: &HashMap<String, AttributeValue>,
    ) -> Result<bool, AwsError> {
        let mut counters: Vec<(String, i64)> = account
            .keys()
            .filter(|k| k.starts_with("count_"))
            .map(|k| (k.clone(), num(account, k)))
            .collect();
        counters.sort();
        counters.push(("done".into(), num(account, "done")));
        let mut add = Update::builder()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run(run_id).attributes()));
        let mut terms = Vec::new();
        for (i, (name, value)) in counters.iter().enumerate() {
            terms.push(format!("#c{i} :c{i}"));
            add = add
                .expression_attribute_names(format!("#c{i}"), name)
                .expression_attribute_values(format!(":c{i}"), n(*value));
        }
        let add = add
            .update_expression(format!("ADD {}", terms.join(", ")))
            .build()
            .expect("table, key and expression are set");
        let mark = Update::builder()
            .table_name(&self.table)
            .set_key(Some(ItemKey::run_account(run_id, account_id).attributes()))
            .update_expression("SET rolled_up = :true")
            .condition_expression("attribute_not_exists(rolled_up) AND done = :done")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":done", n(num(account, "done")))
            .build()
            .expect("table, key and expression are set");
        // A failed condition: rolled up by another worker meanwhile (its
        // counts cannot have moved: the account was complete).
        let done_already = self
            .transact_once(vec![
                TransactWriteItem::builder().update(mark).build(),
                TransactWriteItem::builder().update(add).build(),
            ])
            .await?;
        Ok(!done_already)
    }

    /// Runs a transaction whose first item carries the condition that makes
    /// it happen once: `Ok(true)` when that condition failed (done already),
    /// `Ok(false)` when applied.
    async fn transact_once(&self, items: Vec<TransactWriteItem>) -> Result<bool, AwsError> {
        Ok(self.transact(items).await?.is_some())
    }

    /// Runs a transaction of conditioned items: `Ok(None)` when applied,
    /// `Ok(Some(i))` when it was cancelled because item `i`'s condition
    /// failed (the first such). Real DynamoDB cancels a transaction that
    /// meets another on the same item (an account's results count on its
    /// one item), and the SDK does not retry that; nor has it retried a 5xx
    /// for ever: both are retried here.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<Option<usize>, AwsError> {
        let attempt = || async {
            let transaction = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            match transaction {
                Ok(_) => Ok(None),
                Err(e) => match cancellation(&e) {
                    Some(reasons) if reasons.iter().any(|c| c == "ConditionalCheckFailed") => {
                        Ok(reasons.iter().position(|c| c == "ConditionalCheckFailed"))
                    }
                    Some(reasons) if reasons.iter().any(|c| c == "TransactionConflict") => {
                        Err(RecordFailure::Conflict)
                    }
                    _ => Err(RecordFailure::Aws(AwsError::from_sdk(
                        "dynamodb:TransactWriteItems",
                        e,
                    ))),
                },
            }
        };
        super::retry_transient(attempt, RecordFailure::is_transient)
            .await
            .map_err(RecordFailure::into_aws)
    }

    /// The run's totals from its `RUN` item alone (not its results).
    pub async fn run_summary(&self, run_id: &str) -> Result<RunTotals, AwsError> {
        let run = self.get(ItemKey::run(run_id)).await?;
        let counts = run
            .keys()
            .filter_map(|k| {
                k.strip_prefix("count_")
                    .map(|o| (o.to_string(), num(&run, k)))
            })
            .collect();
        let mut failed_accounts = run
            .get("failed_accounts")
            .and_then(|v| v.as_ss().ok())
            .cloned()
            .unwrap_or_default();
        failed_accounts.sort();
        Ok(RunTotals {
            run_id: run_id.to_string(),
            mode: text(&run, "mode").unwrap_or_default(),
            as_of: text(&run, "as_of").unwrap_or_default(),
            accounts: num(&run, "accounts"),
            expected: num(&run, "expected"),
            done: num(&run, "done"),
            counts,
            failed_accounts,
        })
    }

    async fn get(&self, key: ItemKey) -> Result<HashMap<String, AttributeValue>, AwsError> {
        Ok(get_item(&self.client, &self.table, &key)
            .await?
            .unwrap_or_default())
    }

    /// Records that the digest reached `to` (so a takeover does not resend it).
    pub async fn digest_sent_to(
        &self,
        run_id: &str,
        account_id: &str,
        to: &str,
    ) -> Result<(), AwsError> {
        super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(ItemKey::run_account(run_id, account_id).attributes()))
                .update_expression("ADD digest_sent_to :to")
                .expression_attribute_values(":to", AttributeValue::Ss(vec![to.to_string()])),
        )
        .await?;
        Ok(())
    }

    /// Claims `notice` of run `run_id` for `owner`, naming the message
    /// `holder` whose delivery holds it ([`claim_holder`]; `None` names
    /// none, see [`Claim::Busy`]); another holder's claim older than
    /// `takeover` is taken over.
    pub async fn claim(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
        holder: Option<&str>,
        takeover: std::time::Duration,
    ) -> Result<Claim, AwsError> {
        let (key, what) = notice.item(run_id);
        let now = crate::time::now().timestamp_millis();
        let takeover_ms = takeover.as_millis() as i64;
        let set = "SET #state = :sending, #at = :now, #owner = :me";
        let claim = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.attributes()))
            .condition_expression(CLAIM_IS_FREE)
            .expression_attribute_names("#flag", what.flag)
            .expression_attribute_names("#state", what.state)
            .expression_attribute_names("#at", what.claimed_at)
            .expression_attribute_names("#owner", what.owner)
            .expression_attribute_names("#holder", what.holder)
            .expression_attribute_values(":sending", s(SENDING))
            .expression_attribute_values(":false", AttributeValue::Bool(false))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":stale", n(now - takeover_ms))
            .expression_attribute_values(":me", s(owner))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllNew);
        // A claim that names no message removes an earlier holder's name.
        let claim = match holder {
            Some(holder) => claim
                .update_expression(format!("{set}, #holder = :holder"))
                .expression_attribute_values(":holder", s(holder)),
            None => claim.update_expression(format!("{set} REMOVE #holder")),
        };
        let out = super::retry::send_update(claim).await;
        match out {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let already_sent = item
                    .get("digest_sent_to")
                    .and_then(|v| v.as_ss().ok())
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default();
                Ok(Claim::Mine { already_sent })
            }
            Err(AwsError::ConditionFailed { .. }) => {
                let item = self.get(key.clone()).await?;
                let done = item.is_empty()
                    || flag(&item, what.flag)
                    || text(&item, what.state).as_deref() == Some(SENT);
                if done {
                    return Ok(Claim::Done);
                }
                let claimed_at = num(&item, what.claimed_at);
                Ok(Claim::Busy {
                    stale_at: DateTime::from_timestamp_millis(claimed_at + takeover_ms)
                        .unwrap_or_else(crate::time::now),
                    // Only a claim still being sent names its holder: one
                    // released meanwhile is retried, not trusted.
                    holder: (text(&item, what.state).as_deref() == Some(SENDING))
                        .then(|| text(&item, what.holder))
                        .flatten(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Marks the claimed `notice` as sent.
    pub async fn finish(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
    ) -> Result<(), AwsError> {
        let (key, what) = notice.item(run_id);
        super::retry::send_update(
            self.client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key.attributes()))
                .update_expression("SET #state = :sent, #flag = :true")
                .expression_attribute_names("#state", what.state)
                .expression_attribute_names("#flag", what.flag)
                .expression_attribute_values(":sent", s(SENT))
                .expression_attribute_values(":true", AttributeValue::Bool(true)),
        )
        .await?;
        tracing::debug!(run_id, owner, what = what.state, "claim finished");
        Ok(())
    }

    /// Gives up a claim after a failure, so a retry can take it at once.
    pub async fn release(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
    ) -> Result<(), AwsError> {
        let (key, what) = notice.item(run_id);
        let release = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key.attributes()))
            .update_expression("REMOVE #state, #at, #owner, #holder")
            .condition_expression("#owner = :me AND #state = :sending")
            .expression_attribute_names("#state", what.state)
            .expression_attribute_names("#at", what.claimed_at)
            .expression_attribute_names("#owner", what.owner)
            .expression_attribute_names("#holder", what.holder)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":sending", s(SENDING));
        let out = super::retry::send_update(release).await;
        match out {
            // Taken over meanwhile: not ours to release.
            Ok(_) | Err(AwsError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every result of an account in a run (for its digest).
    pub async fn account_results(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<Vec<ResultItem>, AwsError> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", s(run_pk(run_id)))
            .expression_attribute_values(":prefix", s(results_prefix(account_id)))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("dynamodb:Query", e))?;
            for item in page.items.unwrap_or_default() {
                out.push(decode(run_id, account_id, &item)?);
            }
        }
        out.sort_by(|a, b| a.user_name.cmp(&b.user_name));
        Ok(out)
    }
}

fn decode(
    run_id: &str,
    account_id: &str,
    item: &HashMap<String, AttributeValue>,
) -> Result<ResultItem, AwsError> {
    decode_item(
        "dynamodb:Query",
        &format!("the result of run {run_id}, account {account_id}, item"),
        item.clone(),
    )
}

/// The result items, counters and once-only claims the worker needs: the
/// port over [`ResultStore`] (DynamoDB), so that the load simulator can run
/// the real worker over its own model of the table.
#[async_trait::async_trait]
pub trait ResultsPort: Send + Sync {
    /// The recorded result of a user in a run, and whether its event was
    /// published.
    async fn find(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<(ResultItem, bool)>, AwsError>;
    /// Marks a result's event as published.
    async fn mark_published(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), AwsError>;
    /// Records a result and its counters exactly once.
    async fn record(&self, r: &ResultItem) -> Result<Recorded, AwsError>;
    /// Records a result known to be among its account's last (see
    /// [`ResultStore::record_last`]).
    async fn record_last(&self, r: &ResultItem) -> Result<Recorded, AwsError>;
    /// The account's progress, and the run's once the account is complete
    /// (see [`ResultStore::progress`]).
    async fn progress(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<(Progress, Option<Progress>), AwsError>;
    /// The run's summary event, from its counters.
    async fn run_summary(&self, run_id: &str) -> Result<RunTotals, AwsError>;
    /// Records one digest recipient as sent.
    async fn digest_sent_to(
        &self,
        run_id: &str,
        account_id: &str,
        to: &str,
    ) -> Result<(), AwsError>;
    /// Claims a notice (see [`ResultStore::claim`]).
    async fn claim(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
        holder: Option<&str>,
        takeover: std::time::Duration,
    ) -> Result<Claim, AwsError>;
    /// Marks a claimed notice as sent.
    async fn finish(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError>;
    /// Gives a claim up, unsent.
    async fn release(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError>;
    /// Every result of an account in a run.
    async fn account_results(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<Vec<ResultItem>, AwsError>;
}

// Inherent methods win method resolution, so each forwards to its own.
#[async_trait::async_trait]
impl ResultsPort for ResultStore {
    async fn find(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<(ResultItem, bool)>, AwsError> {
        self.find(run_id, account_id, user_name).await
    }
    async fn mark_published(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), AwsError> {
        self.mark_published(run_id, account_id, user_name).await
    }
    async fn record(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record(r).await
    }
    async fn record_last(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record_last(r).await
    }
    async fn progress(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<(Progress, Option<Progress>), AwsError> {
        self.progress(run_id, account_id).await
    }
    async fn run_summary(&self, run_id: &str) -> Result<RunTotals, AwsError> {
        self.run_summary(run_id).await
    }
    async fn digest_sent_to(
        &self,
        run_id: &str,
        account_id: &str,
        to: &str,
    ) -> Result<(), AwsError> {
        self.digest_sent_to(run_id, account_id, to).await
    }
    async fn claim(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
        holder: Option<&str>,
        takeover: std::time::Duration,
    ) -> Result<Claim, AwsError> {
        self.claim(run_id, notice, owner, holder, takeover).await
    }
    async fn finish(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError> {
        self.finish(run_id, notice, owner).await
    }
    async fn release(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError> {
        self.release(run_id, notice, owner).await
    }
    async fn account_results(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<Vec<ResultItem>, AwsError> {
        self.account_results(run_id, account_id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResultItem {
        ResultItem {
            run_id: "r1".into(),
            account_id: "111122223333".into(),
            account_name: "prod".into(),
            account_email: None,
            user_name: "ci".into(),
            outcome: Outcome::Planned,
            mode: Mode::Audit,
            reason: "rotate AKIA1: 95 days old".into(),
            actions: Vec::new(),
            due: vec![KeyAction::new(crate::domain::Action::Rotate, "AKIA1")],
            new_key_id: None,
            secret_arn: None,
            owner_email: Some("owner@example.com".into()),
            key_ages: Some(KeyAges {
                before: vec![95],
                after: vec![95],
            }),
            incident: false,
            quarantine_policy: None,
            at: DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    #[test]
    fn a_result_item_round_trips_through_its_attributes() {
        let item = sample();
        let mut attributes: HashMap<String, AttributeValue> = serde_dynamo::to_item(&item).unwrap();
        attributes.extend(ItemKey::result("r1", "111122223333", "ci").attributes());
        attributes.insert("published".into(), AttributeValue::Bool(true));
        assert_eq!(attributes["outcome"], s("planned"));
        assert_eq!(attributes["mode"], s("audit"));
        assert!(!attributes.contains_key("new_key_id"), "None is left out");
        assert_eq!(decode("r1", "111122223333", &attributes).unwrap(), item);
    }

    #[test]
    fn an_older_result_item_still_reads_and_a_corrupt_one_names_its_key() {
        // As the hand-written codec wrote them: "" for no account email, an
        // offset time, an empty action list.
        let older = HashMap::from([
            ("pk".to_string(), s("RUN#r1")),
            ("sk".to_string(), s("RESULT#111122223333#ci")),
            ("run_id".to_string(), s("r1")),
            ("account_id".to_string(), s("111122223333")),
            ("account_name".to_string(), s("prod")),
            ("account_email".to_string(), s("")),
            ("user_name".to_string(), s("ci")),
            ("outcome".to_string(), s("noop")),
            ("mode".to_string(), s("enforce")),
            ("reason".to_string(), s("nothing due")),
            ("actions".to_string(), AttributeValue::L(Vec::new())),
            ("at".to_string(), s("2026-06-01T10:00:00+00:00")),
            ("expires_at".to_string(), n(1)),
        ]);
        let read = decode("r1", "111122223333", &older).unwrap();
        assert_eq!((read.outcome, read.account_email), (Outcome::Noop, None));
        assert_eq!(read.at, sample().at);

        let mut corrupt = older;
        corrupt.insert("outcome".into(), s("exploded"));
        let err = decode("r1", "111122223333", &corrupt)
            .unwrap_err()
            .to_string();
        assert!(err.contains("RUN#r1/RESULT#111122223333#ci"), "{err}");
    }

    #[test]
    fn counters_are_safe_attribute_names() {
        assert_eq!(counter(Outcome::Rotated), "count_rotated");
        for outcome in Outcome::ALL {
            let name = counter(outcome);
            assert!(
                name.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{name} needs no expression attribute name"
            );
        }
    }

    #[test]
    fn progress_is_complete_only_once_enqueued() {
        let p = Progress {
            done: 3,
            expected: 3,
            enqueued: false,
        };
        assert!(!p.complete());
        assert!(Progress {
            enqueued: true,
            ..p
        }
        .complete());
        assert!(!Progress {
            done: 2,
            expected: 3,
            enqueued: true
        }
        .complete());
    }
}

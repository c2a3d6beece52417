//! [`LedgerPort`] over DynamoDB. The whole lock protocol lives in the three
//! condition expressions below; a failed condition is an answer (someone
//! else holds the user, or we lost it), not an error.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attr::{n, s, time};
use super::keys::{key_of, ItemKey};
use super::{Intent, LedgerPort, Lock, RunWork, StoreError, UserRecord};
use crate::domain::{Action, KeyAction, KeyHistory, Verification};
use crate::error::AwsError;

/// Free, or held by someone whose lease has run out.
const LOCK_IS_FREE: &str = "attribute_not_exists(lock_owner) OR lease_expires_at < :now";
/// Still ours: same owner, same fencing token, lease not run out.
const LOCK_IS_OURS: &str = "lock_owner = :me AND fence = :fence AND lease_expires_at > :now";
/// Ours to release even if the lease just ran out (nobody else took it).
const LOCK_IS_OURS_TO_RELEASE: &str = "lock_owner = :me AND fence = :fence";

/// The DynamoDB adapter.
#[derive(Clone)]
pub struct DynamoLedger {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoLedger {
    /// A ledger in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> DynamoLedger {
        DynamoLedger {
            client,
            table: table.into(),
        }
    }

    /// An update of `lock`'s item, conditioned on `condition` (which may use
    /// `:me` and `:fence`).
    fn fenced_update(&self, lock: &Lock, condition: &'static str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(&lock.account_id, &lock.user_name)))
            .condition_expression(condition)
            .expression_attribute_values(":me", s(&lock.owner))
            .expression_attribute_values(":fence", n(lock.fence))
    }

    /// The fenced update that makes the user's item hold `record` (while
    /// `lock` is ours), also removing `also_remove`.
    fn record_update(
        &self,
        lock: &Lock,
        record: &UserRecord,
        also_remove: &[&'static str],
    ) -> UpdateItemFluentBuilder {
        let (set, mut remove) = encode(record);
        remove.extend_from_slice(also_remove);
        let mut expr = String::from("SET ");
        let mut update = self
            .fenced_update(lock, LOCK_IS_OURS)
            .expression_attribute_values(":now", n(now_ms()));
        for (i, (name, value)) in set.into_iter().enumerate() {
            if i > 0 {
                expr.push_str(", ");
            }
            expr.push_str(&format!("{name} = :v{i}"));
            update = update.expression_attribute_values(format!(":v{i}"), value);
        }
        if !remove.is_empty() {
            expr.push_str(" REMOVE ");
            expr.push_str(&remove.join(", "));
        }
        update.update_expression(expr)
    }

    fn key(&self, account_id: &str, user_name: &str) -> HashMap<String, AttributeValue> {
        ItemKey::user(account_id, user_name).attributes()
    }
}

/// Lock leases use the real clock, never the evaluation time.
fn now_ms() -> i64 {
    crate::time::now().timestamp_millis()
}

fn get_s<'a>(item: &'a HashMap<String, AttributeValue>, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &HashMap<String, AttributeValue>, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// A time as the ledger stores it: RFC 3339 with milliseconds and `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MsTime(DateTime<Utc>);

impl Serialize for MsTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

impl<'de> Deserialize<'de> for MsTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MsTime, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| MsTime(t.with_timezone(&Utc)))
            .map_err(|e| serde::de::Error::custom(format!("bad time `{text}`: {e}")))
    }
}

/// The ledger's attributes of a user's item (DESIGN §6), flat as they are
/// stored; the lock's own attributes (`lock_owner`, `fence`, the lease) are
/// written by the lock's expressions and not read here.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LedgerItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intent_at: Option<MsTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intent_known_keys: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intent_secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    intent_secrets_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_actions: Option<Vec<KeyAction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_new_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_secret_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_pending_action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_pending_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run_warnings: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    old_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    new_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rotated_at: Option<MsTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    verified_at: Option<MsTime>,
    #[serde(default)]
    deactivated: BTreeMap<String, MsTime>,
    #[serde(default)]
    reactivated: BTreeMap<String, MsTime>,
    #[serde(default)]
    warnings: Vec<String>,
}

/// Every attribute of [`LedgerItem`]: what a write does not set, it removes.
const LEDGER_ATTRIBUTES: [&str; 21] = [
    "intent_at",
    "intent_known_keys",
    "intent_secret_name",
    "intent_secrets_account",
    "last_run_id",
    "last_run_actions",
    "last_run_new_key_id",
    "last_run_secret_arn",
    "last_run_pending_action",
    "last_run_pending_key",
    "last_run_warnings",
    "old_key_id",
    "new_key_id",
    "rotated_at",
    "secret_arn",
    "secret_version",
    "verified_key_id",
    "verified_at",
    "deactivated",
    "reactivated",
    "warnings",
];

impl From<&UserRecord> for LedgerItem {
    fn from(r: &UserRecord) -> LedgerItem {
        let intent = r.intent.as_ref();
        let last_run = r.last_run.as_ref();
        let pending = last_run.and_then(|w| w.pending.as_ref());
        let verification = r.history.verification.as_ref();
        let times = |m: &BTreeMap<String, DateTime<Utc>>| {
            m.iter().map(|(k, t)| (k.clone(), MsTime(*t))).collect()
        };
        LedgerItem {
            intent_at: intent.map(|i| MsTime(i.at)),
            intent_known_keys: intent.map(|i| i.known_keys.clone()),
            intent_secret_name: intent.and_then(|i| i.secret_name.clone()),
            intent_secrets_account: intent.and_then(|i| i.secrets_account.clone()),
            last_run_id: last_run.map(|w| w.run_id.clone()),
            last_run_actions: last_run.map(|w| w.performed.clone()),
            last_run_new_key_id: last_run.and_then(|w| w.new_key_id.clone()),
            last_run_secret_arn: last_run.and_then(|w| w.secret_arn.clone()),
            last_run_pending_action: pending.map(|p| p.action),
            last_run_pending_key: pending.map(|p| p.key_id.clone()),
            last_run_warnings: last_run
                .map(|w| w.warnings.clone())
                .filter(|w| !w.is_empty()),
            old_key_id: r.old_key_id.clone(),
            new_key_id: r.new_key_id.clone(),
            rotated_at: r.rotated_at.map(MsTime),
            secret_arn: r.secret_arn.clone(),
            secret_version: r.secret_version.clone(),
            verified_key_id: verification.map(|v| v.key_id.clone()),
            verified_at: verification.map(|v| MsTime(v.at)),
            deactivated: times(&r.history.deactivated_at),
            reactivated: times(&r.history.reactivated_at),
            warnings: r.history.warnings_sent.iter().cloned().collect(),
        }
    }
}

impl From<LedgerItem> for UserRecord {
    fn from(i: LedgerItem) -> UserRecord {
        let times = |m: BTreeMap<String, MsTime>| m.into_iter().map(|(k, t)| (k, t.0)).collect();
        UserRecord {
            intent: i.intent_at.map(|at| Intent {
                at: at.0,
                known_keys: i.intent_known_keys.unwrap_or_default(),
                secret_name: i.intent_secret_name,
                secrets_account: i.intent_secrets_account,
            }),
            old_key_id: i.old_key_id,
            new_key_id: i.new_key_id,
            rotated_at: i.rotated_at.map(|t| t.0),
            secret_arn: i.secret_arn,
            secret_version: i.secret_version,
            last_run: i.last_run_id.map(|run_id| RunWork {
                run_id,
                performed: i.last_run_actions.unwrap_or_default(),
                new_key_id: i.last_run_new_key_id,
                secret_arn: i.last_run_secret_arn,
                pending: i
                    .last_run_pending_action
                    .zip(i.last_run_pending_key)
                    .map(|(action, key_id)| KeyAction { action, key_id }),
                warnings: i.last_run_warnings.unwrap_or_default(),
            }),
            history: KeyHistory {
                deactivated_at: times(i.deactivated),
                reactivated_at: times(i.reactivated),
                verification: i
                    .verified_key_id
                    .zip(i.verified_at)
                    .map(|(key_id, at)| Verification { key_id, at: at.0 }),
                warnings_sent: i.warnings.into_iter().collect::<BTreeSet<_>>(),
            },
        }
    }
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<UserRecord, StoreError> {
    let ledger: LedgerItem = serde_dynamo::from_item(item.clone())
        .map_err(|e| StoreError::Corrupt(format!("ledger item {}: {e}", key_of(item))))?;
    Ok(ledger.into())
}

/// The SET and REMOVE clauses that make the item hold `record`.
fn encode(record: &UserRecord) -> (Vec<(&'static str, AttributeValue)>, Vec<&'static str>) {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(LedgerItem::from(record)).expect("a ledger is plain data");
    let mut set: Vec<(&'static str, AttributeValue)> = Vec::new();
    let mut remove: Vec<&'static str> = Vec::new();
    for name in LEDGER_ATTRIBUTES {
        match item.remove(name) {
            Some(value) => set.push((name, value)),
            None => remove.push(name),
        }
    }
    debug_assert!(
        item.is_empty(),
        "every ledger attribute is listed: {item:?}"
    );
    let step = if record.intent.is_some() {
        "creating"
    } else {
        "idle"
    };
    set.push(("step", s(step)));
    set.push(("updated_at", time(&crate::time::now())));
    (set, remove)
}

fn condition_failed(err: &AwsError) -> bool {
    matches!(err, AwsError::ConditionFailed { .. })
}

/// A failed lock condition on renew, write or release means the lock is lost.
fn lock_answer<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<(), StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match result.map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e)) {
        Ok(_) => Ok(()),
        Err(e) if condition_failed(&e) => Err(StoreError::LockLost),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl LedgerPort for DynamoLedger {
    async fn acquire(
        &self,
        account_id: &str,
        user_name: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<(Lock, UserRecord), StoreError> {
        let now = now_ms();
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(self.key(account_id, user_name)))
            .update_expression("SET lock_owner = :me, lease_expires_at = :exp ADD fence :one")
            .condition_expression(LOCK_IS_FREE)
            .expression_attribute_values(":me", s(owner))
            .expression_attribute_values(":exp", n(now + lease.as_millis() as i64))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e));
        match result {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let fence = get_n(&item, "fence")
                    .ok_or_else(|| StoreError::Corrupt("lock item without fence".into()))?;
                let record = decode(&item)?;
                Ok((
                    Lock {
                        account_id: account_id.to_string(),
                        user_name: user_name.to_string(),
                        owner: owner.to_string(),
                        fence,
                        lease,
                    },
                    record,
                ))
            }
            Err(e) if condition_failed(&e) => {
                let item = self
                    .client
                    .get_item()
                    .table_name(&self.table)
                    .set_key(Some(self.key(account_id, user_name)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?
                    .item
                    .unwrap_or_default();
                Err(StoreError::Locked {
                    holder: get_s(&item, "lock_owner").unwrap_or("?").to_string(),
                    until_ms: get_n(&item, "lease_expires_at").unwrap_or(0),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn renew(&self, lock: &Lock) -> Result<(), StoreError> {
        let now = now_ms();
        let update = self
            .fenced_update(lock, LOCK_IS_OURS)
            .update_expression("SET lease_expires_at = :exp")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":exp", n(now + lock.lease.as_millis() as i64));
        lock_answer(update.send().await)
    }

    async fn write(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError> {
        lock_answer(self.record_update(lock, record, &[]).send().await)
    }

    async fn write_and_release(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError> {
        // The write's condition (lease included), not the release's: a
        // holder whose lease ran out must not record anything.
        let update = self.record_update(lock, record, &["lock_owner", "lease_expires_at"]);
        lock_answer(update.send().await)
    }

    async fn release(&self, lock: &Lock) -> Result<(), StoreError> {
        let update = self
            .fenced_update(lock, LOCK_IS_OURS_TO_RELEASE)
            .update_expression("REMOVE lock_owner, lease_expires_at");
        lock_answer(update.send().await)
    }

    async fn read(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(self.key(account_id, user_name)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:GetItem", e))?;
        out.item.as_ref().map(decode).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Action;

    #[test]
    fn a_corrupt_ledger_item_names_its_key() {
        let mut item = ItemKey::user("111122223333", "ci").attributes();
        item.insert("rotated_at".into(), s("yesterday"));
        let err = decode(&item).unwrap_err().to_string();
        assert!(err.contains("ACCOUNT#111122223333/USER#ci"), "{err}");
        assert!(err.contains("yesterday"), "{err}");
        item.insert("rotated_at".into(), s("2026-03-01T10:00:00.000Z"));
        item.insert("last_run_id".into(), s("r1"));
        item.insert("last_run_pending_action".into(), s("explode"));
        item.insert("last_run_pending_key".into(), s("AKIA1"));
        assert!(decode(&item).is_err(), "an unknown action is corrupt");
    }

    #[test]
    fn a_record_survives_encoding() {
        let t = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.000Z")
            .unwrap()
            .with_timezone(&Utc);
        let record = UserRecord {
            intent: Some(Intent {
                at: t,
                known_keys: vec!["AKIA1".into()],
                secret_name: Some("Account_1_User_ci_AccessKey".into()),
                secrets_account: Some("444455556666".into()),
            }),
            last_run: Some(RunWork {
                run_id: "20260301T100000Z-0a1b2c3d".into(),
                performed: vec![KeyAction::new(Action::Rotate, "AKIA1")],
                new_key_id: Some("AKIA2".into()),
                secret_arn: Some("arn:aws:secretsmanager:us-east-1:1:secret:x".into()),
                pending: Some(KeyAction::new(Action::Deactivate, "AKIA0")),
                warnings: vec!["AKIA0:delete".into()],
            }),
            old_key_id: Some("AKIA1".into()),
            new_key_id: None,
            rotated_at: Some(t),
            secret_arn: Some(
                "arn:aws:secretsmanager:us-east-1:111122223333:secret:x-AbCdEf".into(),
            ),
            secret_version: None,
            history: KeyHistory {
                deactivated_at: BTreeMap::from([("AKIA0".to_string(), t)]),
                reactivated_at: BTreeMap::from([(
                    "AKIA1".to_string(),
                    t + chrono::Duration::hours(5),
                )]),
                verification: Some(Verification {
                    key_id: "AKIA2".into(),
                    at: t,
                }),
                warnings_sent: BTreeSet::from(["AKIA1:rotate".to_string()]),
            },
        };
        let (set, _) = encode(&record);
        let mut item: HashMap<String, AttributeValue> =
            set.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(decode(&item).unwrap(), record);
        let reactivated = item["reactivated"].as_m().unwrap();
        assert_eq!(
            reactivated["AKIA1"].as_s().unwrap(),
            "2026-03-01T15:00:00.000Z"
        );
        // An item written before `reactivated` existed reads as no reactivation.
        item.remove("reactivated");
        assert!(decode(&item).unwrap().history.reactivated_at.is_empty());
        // And one written before `last_run_warnings`, as a run that warned of nothing.
        assert_eq!(item["last_run_warnings"].as_l().unwrap().len(), 1);
        item.remove("last_run_warnings");
        let work = decode(&item).unwrap().last_run.unwrap();
        assert!(work.warnings.is_empty(), "{work:?}");
    }
}

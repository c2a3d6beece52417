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

use super::attr::{actions, n, read_actions, s, time};
use super::keys::ItemKey;
use super::{Intent, LedgerPort, Lock, RunWork, StoreError, UserRecord};
use crate::domain::{KeyAction, KeyHistory, Verification};
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

fn get_time(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    get_s(item, name).map(parse_time).transpose()
}

fn parse_time(v: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad time `{v}`: {e}")))
}

fn get_list(item: &HashMap<String, AttributeValue>, name: &str) -> Vec<String> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| l.iter().filter_map(|v| v.as_s().ok().cloned()).collect())
        .unwrap_or_default()
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<UserRecord, StoreError> {
    let intent = get_time(item, "intent_at")?.map(|at| Intent {
        at,
        known_keys: get_list(item, "intent_known_keys"),
        secret_name: get_s(item, "intent_secret_name").map(str::to_string),
        secrets_account: get_s(item, "intent_secrets_account").map(str::to_string),
    });
    let last_run = match get_s(item, "last_run_id") {
        None => None,
        Some(run_id) => Some(RunWork {
            run_id: run_id.to_string(),
            performed: read_actions(item, "last_run_actions").map_err(StoreError::Corrupt)?,
            new_key_id: get_s(item, "last_run_new_key_id").map(str::to_string),
            secret_arn: get_s(item, "last_run_secret_arn").map(str::to_string),
            pending: match get_s(item, "last_run_pending_action")
                .zip(get_s(item, "last_run_pending_key"))
            {
                None => None,
                Some((action, key)) => Some(KeyAction {
                    action: action.parse().map_err(StoreError::Corrupt)?,
                    key_id: key.to_string(),
                }),
            },
        }),
    };
    let time_map = |name: &str| -> Result<BTreeMap<String, DateTime<Utc>>, StoreError> {
        let mut map = BTreeMap::new();
        if let Some(AttributeValue::M(m)) = item.get(name) {
            for (k, v) in m {
                if let Ok(t) = v.as_s() {
                    map.insert(k.clone(), parse_time(t)?);
                }
            }
        }
        Ok(map)
    };
    let deactivated_at = time_map("deactivated")?;
    let reactivated_at = time_map("reactivated")?;
    let verification = match (
        get_s(item, "verified_key_id"),
        get_time(item, "verified_at")?,
    ) {
        (Some(key_id), Some(at)) => Some(Verification {
            key_id: key_id.to_string(),
            at,
        }),
        _ => None,
    };
    Ok(UserRecord {
        intent,
        old_key_id: get_s(item, "old_key_id").map(str::to_string),
        new_key_id: get_s(item, "new_key_id").map(str::to_string),
        rotated_at: get_time(item, "rotated_at")?,
        secret_arn: get_s(item, "secret_arn").map(str::to_string),
        secret_version: get_s(item, "secret_version").map(str::to_string),
        last_run,
        history: KeyHistory {
            deactivated_at,
            reactivated_at,
            verification,
            warnings_sent: get_list(item, "warnings")
                .into_iter()
                .collect::<BTreeSet<_>>(),
        },
    })
}

/// The SET and REMOVE clauses that make the item hold `record`.
fn encode(record: &UserRecord) -> (Vec<(&'static str, AttributeValue)>, Vec<&'static str>) {
    let mut set: Vec<(&'static str, AttributeValue)> = Vec::new();
    let mut remove: Vec<&'static str> = Vec::new();
    let mut opt = |name: &'static str, v: Option<AttributeValue>| match v {
        Some(v) => set.push((name, v)),
        None => remove.push(name),
    };
    opt(
        "step",
        Some(s(if record.intent.is_some() {
            "creating"
        } else {
            "idle"
        })),
    );
    opt("intent_at", record.intent.as_ref().map(|i| time(&i.at)));
    opt(
        "intent_known_keys",
        record
            .intent
            .as_ref()
            .map(|i| AttributeValue::L(i.known_keys.iter().cloned().map(s).collect())),
    );
    opt(
        "intent_secret_name",
        record
            .intent
            .as_ref()
            .and_then(|i| i.secret_name.clone())
            .map(s),
    );
    opt(
        "intent_secrets_account",
        record
            .intent
            .as_ref()
            .and_then(|i| i.secrets_account.clone())
            .map(s),
    );
    let last_run = record.last_run.as_ref();
    opt("last_run_id", last_run.map(|r| s(r.run_id.clone())));
    opt("last_run_actions", last_run.map(|r| actions(&r.performed)));
    opt(
        "last_run_new_key_id",
        last_run.and_then(|r| r.new_key_id.clone()).map(s),
    );
    opt(
        "last_run_secret_arn",
        last_run.and_then(|r| r.secret_arn.clone()).map(s),
    );
    let pending = last_run.and_then(|r| r.pending.as_ref());
    opt(
        "last_run_pending_action",
        pending.map(|p| s(p.action.as_str())),
    );
    opt("last_run_pending_key", pending.map(|p| s(&p.key_id)));
    opt("old_key_id", record.old_key_id.clone().map(s));
    opt("new_key_id", record.new_key_id.clone().map(s));
    opt("rotated_at", record.rotated_at.as_ref().map(time));
    opt("secret_arn", record.secret_arn.clone().map(s));
    opt("secret_version", record.secret_version.clone().map(s));
    opt(
        "verified_key_id",
        record
            .history
            .verification
            .as_ref()
            .map(|v| s(v.key_id.clone())),
    );
    opt(
        "verified_at",
        record.history.verification.as_ref().map(|v| time(&v.at)),
    );
    opt(
        "deactivated",
        Some(AttributeValue::M(
            record
                .history
                .deactivated_at
                .iter()
                .map(|(k, t)| (k.clone(), time(t)))
                .collect(),
        )),
    );
    opt(
        "reactivated",
        Some(AttributeValue::M(
            record
                .history
                .reactivated_at
                .iter()
                .map(|(k, t)| (k.clone(), time(t)))
                .collect(),
        )),
    );
    opt(
        "warnings",
        Some(AttributeValue::L(
            record
                .history
                .warnings_sent
                .iter()
                .cloned()
                .map(s)
                .collect(),
        )),
    );
    opt("updated_at", Some(time(&crate::time::now())));
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
    }
}

//! The account registry (DESIGN §6: `ACCOUNT#<id>` / `META`), the account
//! source used when `KEYROTOR_ACCOUNT_SOURCE=table`, filled by
//! `keyrotor import-accounts FILE.csv`.
//!
//! One item per account, in the state table beside the users' lock items:
//! `pk = "ACCOUNT#<id>"`, `sk = "META"`, with `account_id`, `email`, `name`
//! (absent when unknown), `enabled` (BOOL) and `updated_at` (RFC 3339, real
//! clock). Writes are whole-item `PutRequest`s, so writing the same accounts
//! again leaves the same items: import is idempotent. Writing never removes an
//! account that is not in the batch; disable it with `enabled = false`.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use backon::{BackoffBuilder, ExponentialBuilder};

use super::keys::{account_in, account_pk, key_of, ItemKey, PK, REGISTRY_SK};
use crate::domain::AccountId;
use crate::error::AwsError;

/// BatchWriteItem's limit of requests per call.
const BATCH_SIZE: usize = 25;
/// Calls per chunk (the first plus retries of its unprocessed items) before giving up.
const MAX_ATTEMPTS: u32 = 8;
/// First pause before retrying unprocessed items; doubled at each retry.
const BASE_BACKOFF: Duration = Duration::from_millis(50);
/// Longest pause between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

const OP_WRITE: &str = "dynamodb:BatchWriteItem";
const OP_SCAN: &str = "dynamodb:Scan";

/// One account of the registry (item `pk = "ACCOUNT#<id>"`, `sk = "META"`,
/// attributes `account_id`, `email`, `name` (optional), `enabled` (BOOL),
/// `updated_at`).
/// Its attributes are these fields as `serde_dynamo` writes them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RegistryAccount {
    /// The 12-digit account id.
    pub account_id: AccountId,
    /// The account owner's email address (digests are sent there).
    pub email: String,
    /// The account's display name, if known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "super::attr::blank_is_none"
    )]
    pub name: Option<String>,
    /// Whether the producer rotates this account's users (an item written
    /// by hand without it is enabled).
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

/// The registry in the state table.
#[derive(Clone)]
pub struct AccountRegistry {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl AccountRegistry {
    /// The registry kept in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> Self {
        AccountRegistry {
            client,
            table: table.into(),
        }
    }

    /// Writes every account (creating or overwriting its item) with
    /// `BatchWriteItem` in chunks of 25, retrying `UnprocessedItems` with
    /// exponential backoff; a chunk still not fully written after a bounded
    /// number of attempts is an error (the items written so far stay, and
    /// writing again is safe). If an account appears more than once, the
    /// last occurrence wins (DynamoDB refuses duplicate keys in one batch).
    pub async fn put_all(&self, accounts: &[RegistryAccount]) -> Result<(), AwsError> {
        let updated_at = crate::time::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut last: HashMap<&AccountId, usize> = HashMap::new();
        for (i, a) in accounts.iter().enumerate() {
            last.insert(&a.account_id, i);
        }
        let requests: Vec<WriteRequest> = accounts
            .iter()
            .enumerate()
            .filter(|(i, a)| last.get(&a.account_id) == Some(i))
            .map(|(_, a)| put_request(a, &updated_at))
            .collect();
        for chunk in requests.chunks(BATCH_SIZE) {
            self.write_chunk(chunk.to_vec()).await?;
        }
        Ok(())
    }

    async fn write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), AwsError> {
        let mut delays = unprocessed_backoff().build();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let out = self
                .client
                .batch_write_item()
                .request_items(self.table.clone(), pending)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP_WRITE, e))?;
            pending = out
                .unprocessed_items
                .and_then(|mut m| m.remove(&self.table))
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
            let Some(delay) = delays.next() else {
                return Err(AwsError::Throttled {
                    op: OP_WRITE,
                    message: format!(
                        "{} registry items still unprocessed after {attempt} attempts",
                        pending.len()
                    ),
                    source: None,
                });
            };
            tracing::debug!(
                unprocessed = pending.len(),
                attempt,
                "retrying unprocessed registry items"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Every registry account: a consistent `Scan` filtered on `sk = "META"`,
    /// every page, sorted by account id. An item that does not decode (no
    /// valid account id or no email) is an error naming its key, rather than
    /// an account silently left out of rotation.
    pub async fn list(&self) -> Result<Vec<RegistryAccount>, AwsError> {
        let mut accounts = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .consistent_read(true)
                .filter_expression("sk = :meta AND begins_with(pk, :account)")
                .expression_attribute_values(":meta", AttributeValue::S(REGISTRY_SK.into()))
                .expression_attribute_values(":account", AttributeValue::S(account_pk("")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| AwsError::from_sdk(OP_SCAN, e))?;
            for item in out.items() {
                accounts.push(decode(item)?);
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
        Ok(accounts)
    }
}

/// The pauses before resending unprocessed items (DynamoDB's answer to a
/// throttled batch): exponential from [`BASE_BACKOFF`], capped at
/// [`MAX_BACKOFF`], jittered so that concurrent writers spread out;
/// [`MAX_ATTEMPTS`] sends in all.
fn unprocessed_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(BASE_BACKOFF)
        .with_max_delay(MAX_BACKOFF)
        .with_max_times(MAX_ATTEMPTS as usize - 1)
        .with_jitter()
}

fn put_request(account: &RegistryAccount, updated_at: &str) -> WriteRequest {
    let mut item: HashMap<String, AttributeValue> =
        serde_dynamo::to_item(account).expect("a registry account is plain data");
    item.extend(ItemKey::registry(account.account_id.as_str()).attributes());
    item.insert(
        "updated_at".to_string(),
        AttributeValue::S(updated_at.to_string()),
    );
    WriteRequest::builder()
        .put_request(
            PutRequest::builder()
                .set_item(Some(item))
                .build()
                .expect("the item is set"),
        )
        .build()
}

fn decode(item: &HashMap<String, AttributeValue>) -> Result<RegistryAccount, AwsError> {
    let key = key_of(item);
    let corrupt = |what: String| AwsError::Service {
        op: OP_SCAN,
        code: "InvalidRegistryItem".into(),
        message: format!("registry item {key}: {what}"),
        source: None,
    };
    let mut item = item.clone();
    // An item written by hand may leave the id to its key (or type it as a
    // number), and its name is only a label.
    if item.get("name").is_some_and(|n| n.as_s().is_err()) {
        item.remove("name");
    }
    if item.get("account_id").is_none_or(|id| id.as_s().is_err()) {
        let from_key = item
            .get(PK)
            .and_then(|pk| pk.as_s().ok())
            .and_then(|pk| account_in(pk))
            .ok_or_else(|| corrupt("no account_id".into()))?;
        item.insert("account_id".into(), AttributeValue::S(from_key.to_string()));
    }
    let account: RegistryAccount =
        serde_dynamo::from_item(item).map_err(|e| corrupt(e.to_string()))?;
    if account.email.is_empty() {
        return Err(corrupt("no email".into()));
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str, name: Option<&str>) -> RegistryAccount {
        RegistryAccount {
            account_id: id.parse().unwrap(),
            email: "owner@example.com".into(),
            name: name.map(str::to_string),
            enabled: false,
        }
    }

    #[test]
    fn an_item_round_trips() {
        for a in [
            account("111122223333", Some("prod")),
            account("111122223334", None),
        ] {
            let req = put_request(&a, "2026-06-01T00:00:00.000Z");
            let item = req.put_request().unwrap().item();
            assert_eq!(
                item["pk"].as_s().unwrap(),
                &account_pk(a.account_id.as_str())
            );
            assert_eq!(item["sk"].as_s().unwrap(), REGISTRY_SK);
            assert_eq!(decode(item).unwrap(), a);
        }
    }

    #[test]
    fn an_item_written_by_hand_takes_its_id_from_the_key_and_is_enabled() {
        let item = HashMap::from([
            (
                "pk".to_string(),
                AttributeValue::S("ACCOUNT#111122223333".into()),
            ),
            ("sk".to_string(), AttributeValue::S(REGISTRY_SK.into())),
            ("email".to_string(), AttributeValue::S("a@b.c".into())),
            ("name".to_string(), AttributeValue::S(String::new())),
        ]);
        let read = decode(&item).unwrap();
        assert_eq!(read.account_id.as_str(), "111122223333");
        assert!(read.enabled);
        assert_eq!(read.name, None);
        let mut typed_in_the_console = item.clone();
        typed_in_the_console.insert(
            "account_id".into(),
            AttributeValue::N("111122223333".into()),
        );
        typed_in_the_console.insert("name".into(), AttributeValue::N("7".into()));
        let read = decode(&typed_in_the_console).unwrap();
        assert_eq!(
            (read.account_id.as_str(), read.name),
            ("111122223333", None)
        );
        let mut no_email = item;
        no_email.insert("email".into(), AttributeValue::S(String::new()));
        assert!(decode(&no_email)
            .unwrap_err()
            .to_string()
            .contains("no email"));
    }

    #[test]
    fn a_corrupt_item_is_an_error_naming_it() {
        let item = HashMap::from([
            ("pk".to_string(), AttributeValue::S("ACCOUNT#12".into())),
            ("email".to_string(), AttributeValue::S("a@b.c".into())),
        ]);
        let err = decode(&item).unwrap_err().to_string();
        assert!(err.contains("ACCOUNT#12"), "{err}");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let delays: Vec<Duration> = unprocessed_backoff().build().collect();
        assert_eq!(delays.len(), MAX_ATTEMPTS as usize - 1);
        assert!(delays[0] >= BASE_BACKOFF && delays[0] <= BASE_BACKOFF * 2);
        assert!(delays[3] >= BASE_BACKOFF * 8, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF * 2), "{delays:?}");
    }
}

//! The state table's key schema (DESIGN §6), and the only place that spells
//! a key: one constructor per item kind.
//!
//! | item | `pk` | `sk` |
//! |---|---|---|
//! | user lock + ledger | `ACCOUNT#<account>` | `USER#<user>` |
//! | registry account | `ACCOUNT#<account>` | `META` |
//! | run | `RUN#<run>` | `RUN` |
//! | run's account (counters, digest claim) | `RUN#<run>` | `ACCOUNT#<account>` |
//! | result | `RUN#<run>` | `RESULT#<account>#<user>` |
//! | run index | `RUNS` | `<run>` |
//! | circuit breaker | `CONTROL` | `BREAKER` |
//! | rollout wave | `CONTROL` | `WAVE#<n>` (zero-padded) |
//! | the fleet's SES pace | `CONTROL` | `SES_PACE` |

use std::collections::HashMap;
use std::fmt;

use aws_sdk_dynamodb::types::AttributeValue;

/// The partition key attribute.
pub const PK: &str = "pk";
/// The sort key attribute.
pub const SK: &str = "sk";

const ACCOUNT: &str = "ACCOUNT#";
const USER: &str = "USER#";
const RUN: &str = "RUN#";
const RESULT: &str = "RESULT#";
/// The sort key of a registry account item.
pub const REGISTRY_SK: &str = "META";
/// The sort key of a run's own item.
pub const RUN_SK: &str = "RUN";
/// The partition key of the run index (one item per run, sorted by run id).
pub const RUNS_PK: &str = "RUNS";
/// The partition key of the deployment's control items (the breaker, the
/// waves).
pub const CONTROL_PK: &str = "CONTROL";
/// The sort-key prefix of the waves' items.
pub const WAVE_SK_PREFIX: &str = "WAVE#";

/// One item's primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemKey {
    /// The partition key.
    pub pk: String,
    /// The sort key.
    pub sk: String,
}

impl ItemKey {
    /// A user's lock and lifecycle ledger.
    pub fn user(account_id: &str, user_name: &str) -> ItemKey {
        ItemKey {
            pk: account_pk(account_id),
            sk: format!("{USER}{user_name}"),
        }
    }

    /// An account of the registry (`keyrotor import-accounts`).
    pub fn registry(account_id: &str) -> ItemKey {
        ItemKey {
            pk: account_pk(account_id),
            sk: REGISTRY_SK.into(),
        }
    }

    /// A run's own item (its parameters, counters and summary claim).
    pub fn run(run_id: &str) -> ItemKey {
        ItemKey {
            pk: run_pk(run_id),
            sk: RUN_SK.into(),
        }
    }

    /// An account of a run (its counters and digest claim).
    pub fn run_account(run_id: &str, account_id: &str) -> ItemKey {
        ItemKey {
            pk: run_pk(run_id),
            sk: format!("{ACCOUNT}{account_id}"),
        }
    }

    /// One user's result in a run.
    pub fn result(run_id: &str, account_id: &str, user_name: &str) -> ItemKey {
        ItemKey {
            pk: run_pk(run_id),
            sk: format!("{RESULT}{account_id}#{user_name}"),
        }
    }

    /// The circuit breaker (one for the deployment).
    pub fn breaker() -> ItemKey {
        ItemKey {
            pk: CONTROL_PK.into(),
            sk: "BREAKER".into(),
        }
    }

    /// A rollout wave's decisions and soak clock.
    pub fn wave(wave: u32) -> ItemKey {
        ItemKey {
            pk: CONTROL_PK.into(),
            sk: format!("{WAVE_SK_PREFIX}{wave:04}"),
        }
    }

    /// The fleet's next free SES send time (`KEYROTOR_SES_FLEET_RATE`).
    pub fn ses_pace() -> ItemKey {
        ItemKey {
            pk: CONTROL_PK.into(),
            sk: "SES_PACE".into(),
        }
    }

    /// A run's entry in the run index.
    pub fn run_index(run_id: &str) -> ItemKey {
        ItemKey {
            pk: RUNS_PK.into(),
            sk: run_id.into(),
        }
    }

    /// The key as DynamoDB takes it.
    pub fn attributes(&self) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (PK.to_string(), AttributeValue::S(self.pk.clone())),
            (SK.to_string(), AttributeValue::S(self.sk.clone())),
        ])
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pk, self.sk)
    }
}

/// The partition key of an account's items.
pub fn account_pk(account_id: &str) -> String {
    format!("{ACCOUNT}{account_id}")
}

/// The partition key of a run's items.
pub fn run_pk(run_id: &str) -> String {
    format!("{RUN}{run_id}")
}

/// The account of an `ACCOUNT#<account>` key (a registry item's `pk`, a run
/// account's `sk`).
pub fn account_in(key: &str) -> Option<&str> {
    key.strip_prefix(ACCOUNT)
}

/// The sort-key prefix of a run's account items.
pub fn run_accounts_prefix() -> &'static str {
    ACCOUNT
}

/// The sort-key prefix of one account's results in a run.
pub fn results_prefix(account_id: &str) -> String {
    format!("{RESULT}{account_id}#")
}

/// The key of an item as DynamoDB returned it, for error messages.
pub fn key_of(item: &HashMap<String, AttributeValue>) -> String {
    let get = |name| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map_or("?", String::as_str)
    };
    format!("{}/{}", get(PK), get(SK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_kind_has_the_key_of_the_schema() {
        let keys = [
            (
                ItemKey::user("111122223333", "ci"),
                "ACCOUNT#111122223333/USER#ci",
            ),
            (
                ItemKey::registry("111122223333"),
                "ACCOUNT#111122223333/META",
            ),
            (ItemKey::run("r1"), "RUN#r1/RUN"),
            (
                ItemKey::run_account("r1", "111122223333"),
                "RUN#r1/ACCOUNT#111122223333",
            ),
            (
                ItemKey::result("r1", "111122223333", "ci"),
                "RUN#r1/RESULT#111122223333#ci",
            ),
            (ItemKey::run_index("r1"), "RUNS/r1"),
        ];
        for (key, spelled) in keys {
            assert_eq!(key.to_string(), spelled);
            assert_eq!(key_of(&key.attributes()), spelled);
        }
        let account = ItemKey::run_account("r1", "111122223333");
        assert_eq!(account_in(&account.sk), Some("111122223333"));
        assert!(ItemKey::result("r1", "111122223333", "ci")
            .sk
            .starts_with(&results_prefix("111122223333")));
        assert!(account.sk.starts_with(run_accounts_prefix()));
    }
}

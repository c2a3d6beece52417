//! DynamoDB attribute helpers shared by the stores: building values and
//! reading them back with defaults.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

/// A string attribute.
pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

/// A number attribute.
pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A time, as RFC 3339 with milliseconds.
pub(crate) fn time(t: &DateTime<Utc>) -> AttributeValue {
    s(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The key of a run item (`RUN#<id>` / `sk`).
pub(crate) fn run_key(run_id: &str, sk: String) -> HashMap<String, AttributeValue> {
    HashMap::from([
        ("pk".to_string(), s(super::runs::run_pk(run_id))),
        ("sk".to_string(), s(sk)),
    ])
}

/// (action, key id) pairs as a list of `{action, key_id}` maps: the shape
/// of a result item's `actions` and of the ledger's `last_run_actions`.
pub(crate) fn actions(pairs: &[(String, String)]) -> AttributeValue {
    AttributeValue::L(
        pairs
            .iter()
            .map(|(a, k)| {
                AttributeValue::M(HashMap::from([
                    ("action".to_string(), s(a)),
                    ("key_id".to_string(), s(k)),
                ]))
            })
            .collect(),
    )
}

/// The (action, key id) pairs of an [`actions`] attribute (none when absent).
pub(crate) fn read_actions(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Vec<(String, String)> {
    item.get(name)
        .and_then(|v| v.as_l().ok())
        .map(|l| {
            l.iter()
                .filter_map(|a| a.as_m().ok())
                .map(|m| {
                    (
                        text(m, "action").unwrap_or_default(),
                        text(m, "key_id").unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A string attribute's value.
pub(crate) fn text(item: &HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

/// A number attribute's value, 0 when absent.
pub(crate) fn num(item: &HashMap<String, AttributeValue>, name: &str) -> i64 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A boolean attribute's value, false when absent.
pub(crate) fn flag(item: &HashMap<String, AttributeValue>, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

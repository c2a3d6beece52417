//! DynamoDB attribute helpers shared by the stores: building values and
//! reading them back with defaults.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};

use crate::domain::KeyAction;

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

/// Key actions as a list of `{action, key_id}` maps: the shape of a result
/// item's `actions` and `due` and of the ledger's `last_run_actions`.
pub(crate) fn actions(list: &[KeyAction]) -> AttributeValue {
    AttributeValue::L(
        list.iter()
            .map(|a| {
                AttributeValue::M(HashMap::from([
                    ("action".to_string(), s(a.action.as_str())),
                    ("key_id".to_string(), s(&a.key_id)),
                ]))
            })
            .collect(),
    )
}

/// The key actions of an [`actions`] attribute (none when absent), or what
/// is wrong with it.
pub(crate) fn read_actions(
    item: &HashMap<String, AttributeValue>,
    name: &str,
) -> Result<Vec<KeyAction>, String> {
    let Some(list) = item.get(name) else {
        return Ok(Vec::new());
    };
    let list = list.as_l().map_err(|_| format!("`{name}` is not a list"))?;
    list.iter()
        .map(|entry| {
            let m = entry
                .as_m()
                .map_err(|_| format!("an entry of `{name}` is not a map"))?;
            let action = text(m, "action").unwrap_or_default();
            Ok(KeyAction {
                action: action.parse().map_err(|e| format!("`{name}`: {e}"))?,
                key_id: text(m, "key_id").ok_or_else(|| format!("`{name}`: no key_id"))?,
            })
        })
        .collect()
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

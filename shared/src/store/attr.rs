//! DynamoDB attribute helpers shared by the stores: building values,
//! reading them back with defaults, reading one item, and decoding an item
//! into its `serde_dynamo` type.

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

/// A string attribute read as `None` when blank: items written by hand (or
/// before a field was optional) hold `""` for none.
pub(crate) fn blank_is_none<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let value: Option<String> = serde::Deserialize::deserialize(d)?;
    Ok(value.filter(|v| !v.is_empty()))
}

/// One item by its key, read consistently; `None` when there is none.
pub(crate) async fn get_item(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &super::keys::ItemKey,
) -> Result<Option<HashMap<String, AttributeValue>>, crate::error::AwsError> {
    let got = client
        .get_item()
        .table_name(table)
        .set_key(Some(key.attributes()))
        .consistent_read(true)
        .send()
        .await
        .map_err(|e| crate::error::AwsError::from_sdk("dynamodb:GetItem", e))?;
    Ok(got.item)
}

/// An item as its `serde_dynamo` type; one that does not decode is a
/// `CorruptItem` error of `op` naming `what` and the item's key.
pub(crate) fn decode_item<T: serde::de::DeserializeOwned>(
    op: &'static str,
    what: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<T, crate::error::AwsError> {
    let key = super::keys::key_of(&item);
    serde_dynamo::from_item(item).map_err(|e| crate::error::AwsError::Service {
        op,
        code: "CorruptItem".into(),
        message: format!("{what} {key}: {e}"),
        source: None,
    })
}

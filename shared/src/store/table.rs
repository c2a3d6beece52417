//! Creating the state table where it is missing (`keyrotor init`).

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

use super::keys::{PK, SK};
use crate::error::AwsError;

/// Creates the table (`pk`/`sk` strings, on-demand, TTL on `expires_at`)
/// unless it exists. Returns whether it was created.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<bool, AwsError> {
    match client.describe_table().table_name(table).send().await {
        Ok(_) => return Ok(false),
        Err(e) => match AwsError::from_sdk("dynamodb:DescribeTable", e) {
            AwsError::NotFound { .. } => {}
            other => return Err(other),
        },
    }
    let attr = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("name and type are set")
    };
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .expect("name and type are set")
    };
    let created = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr(PK))
        .attribute_definitions(attr(SK))
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) => match AwsError::from_sdk("dynamodb:CreateTable", e) {
            // Created by someone else meanwhile.
            AwsError::Service { code, .. } if code == "ResourceInUseException" => return Ok(false),
            other => return Err(other),
        },
    }
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expires_at")
                .enabled(true)
                .build()
                .expect("name and flag are set"),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("dynamodb:UpdateTimeToLive", e))?;
    Ok(true)
}

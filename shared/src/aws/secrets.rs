//! The Secrets Manager port: store a new key for one user, idempotently, and
//! tell whether a key was stored, without ever reading a secret value back.

use async_trait::async_trait;
use aws_sdk_secretsmanager::types::{ReplicaRegionType, Tag};
use secrecy::{ExposeSecret, SecretString};

use crate::error::AwsError;

/// A secret's identity and the versions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretInfo {
    /// The full ARN (with Secrets Manager's random suffix).
    pub arn: String,
    /// The version ids (keyrotor's are derived from the key id).
    pub version_ids: Vec<String>,
    /// Whether the secret is scheduled for deletion (it refuses new values).
    pub scheduled_for_deletion: bool,
}

/// What to store.
#[derive(Debug)]
pub struct StoreSecret<'a> {
    /// Secret name.
    pub name: &'a str,
    /// Idempotency token, which becomes the version id.
    pub client_request_token: &'a str,
    /// The JSON value; secret.
    pub value: &'a SecretString,
    /// Human description (no secrets).
    pub description: &'a str,
    /// KMS key, when not the default.
    pub kms_key_id: Option<&'a str>,
    /// Regions to replicate to (only applied when the secret is created).
    pub replica_regions: &'a [String],
    /// Tags for a new secret.
    pub tags: &'a [(String, String)],
    /// Whether the secret exists, as a `DescribeSecret` made just before
    /// found; `None` to look. Only a hint for choosing `CreateSecret` or
    /// `PutSecretValue`: either one falling back to the other when the hint
    /// went stale, so a wrong hint costs a call, never a lost value.
    pub exists: Option<bool>,
}

/// Where a value was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The secret's ARN.
    pub arn: String,
    /// The version id written.
    pub version_id: String,
}

/// Secrets Manager operations.
#[async_trait]
pub trait SecretsPort: Send + Sync {
    /// `DescribeSecret`; `None` when there is no such secret.
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError>;
    /// `CreateSecret`, or `PutSecretValue` when it exists (as
    /// [`StoreSecret::exists`] says, or a `DescribeSecret` finds when that is
    /// `None`). Idempotent for the same token and value.
    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError>;
    /// `PutResourcePolicy` (with `BlockPublicPolicy`).
    async fn put_resource_policy(&self, arn: &str, document: &str) -> Result<(), AwsError>;
}

/// [`SecretsPort`] over the AWS SDK.
#[derive(Clone)]
pub struct SdkSecrets {
    client: aws_sdk_secretsmanager::Client,
}

impl SdkSecrets {
    /// Wraps a Secrets Manager client.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> SdkSecrets {
        SdkSecrets { client }
    }

    /// `PutSecretValue` of `req` into the existing secret.
    async fn put_value(&self, req: &StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        let out = self
            .client
            .put_secret_value()
            .secret_id(req.name)
            .client_request_token(req.client_request_token)
            .secret_string(req.value.expose_secret())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutSecretValue", e))?;
        Ok(StoredSecret {
            arn: out.arn.unwrap_or_default(),
            version_id: out
                .version_id
                .unwrap_or_else(|| req.client_request_token.to_string()),
        })
    }
}

#[async_trait]
impl SecretsPort for SdkSecrets {
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        match self.client.describe_secret().secret_id(name).send().await {
            Ok(out) => Ok(Some(SecretInfo {
                scheduled_for_deletion: out.deleted_date.is_some(),
                arn: out.arn.unwrap_or_default(),
                version_ids: out
                    .version_ids_to_stages
                    .map(|m| m.into_keys().collect())
                    .unwrap_or_default(),
            })),
            Err(e) => match AwsError::from_sdk("secretsmanager:DescribeSecret", e) {
                AwsError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        let exists = match req.exists {
            Some(exists) => exists,
            None => self.describe(req.name).await?.is_some(),
        };
        if exists {
            match self.put_value(&req).await {
                // Deleted since it was described: create it after all.
                Err(AwsError::NotFound { .. }) => {}
                other => return other,
            }
        }
        let mut create = self
            .client
            .create_secret()
            .name(req.name)
            .description(req.description)
            .client_request_token(req.client_request_token)
            .secret_string(req.value.expose_secret());
        if let Some(kms) = req.kms_key_id {
            create = create.kms_key_id(kms);
        }
        for region in req.replica_regions {
            create =
                create.add_replica_regions(ReplicaRegionType::builder().region(region).build());
        }
        for (k, v) in req.tags {
            create = create.tags(Tag::builder().key(k).value(v).build());
        }
        match create.send().await {
            Ok(out) => Ok(StoredSecret {
                arn: out.arn.unwrap_or_default(),
                version_id: out
                    .version_id
                    .unwrap_or_else(|| req.client_request_token.to_string()),
            }),
            // Another writer created it since it was described (or the
            // hint was stale): add the value as a new version instead.
            Err(e) => match AwsError::from_sdk("secretsmanager:CreateSecret", e) {
                AwsError::AlreadyExists { .. } => self.put_value(&req).await,
                other => Err(other),
            },
        }
    }

    async fn put_resource_policy(&self, arn: &str, document: &str) -> Result<(), AwsError> {
        self.client
            .put_resource_policy()
            .secret_id(arn)
            .resource_policy(document)
            .block_public_policy(true)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("secretsmanager:PutResourcePolicy", e))?;
        Ok(())
    }
}

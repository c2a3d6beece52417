//! The IAM port: what the executor needs to know and do about one user's
//! access keys, and its adapter over the AWS SDK.

use async_trait::async_trait;
use aws_sdk_iam::types::StatusType;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::{KeyState, KeyStatus, LastUsed};
use crate::error::AwsError;

/// IAM's limit of tags per user. `GetUser` returns them all; a list that
/// long is nonetheless confirmed with `ListUserTags`, so that an exemption
/// tag can never be missed because an answer was cut short.
pub const USER_TAG_LIMIT: usize = 50;

/// An IAM user as the executor needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    /// The user's name.
    pub user_name: String,
    /// The user's ARN (resource policies name it).
    pub arn: String,
    /// The user's path, e.g. `/` or `/service/`.
    pub path: String,
    /// The user's tags, as (key, value).
    pub tags: Vec<(String, String)>,
}

impl UserInfo {
    /// The value of tag `key`, if the user has it.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A freshly created access key. The secret half exists only here, wrapped
/// so that it cannot be printed, until it is stored in Secrets Manager.
#[derive(Debug)]
pub struct NewKey {
    /// The access key id.
    pub key_id: String,
    /// The secret access key.
    pub secret: SecretString,
    /// IAM's `CreateDate`.
    pub created: DateTime<Utc>,
}

/// IAM operations on one account's users.
#[async_trait]
pub trait IamPort: Send + Sync {
    /// `GetUser`, whose answer carries the user's tags; `ListUserTags` only
    /// when that list is at IAM's per-user limit (see [`USER_TAG_LIMIT`]).
    async fn get_user(&self, user_name: &str) -> Result<UserInfo, AwsError>;
    /// `ListGroupsForUser` (every page): the group names.
    async fn list_groups_for_user(&self, user_name: &str) -> Result<Vec<String>, AwsError>;
    /// `ListUsers` (every page): the user names.
    async fn list_user_names(&self) -> Result<Vec<String>, AwsError>;
    /// `ListAccessKeys`: the keys, oldest first, their last use not read
    /// (`None`).
    async fn list_key_metadata(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError>;
    /// `GetAccessKeyLastUsed`: when (and with which service) the key was
    /// last used; `None` when never.
    async fn key_last_used(&self, key_id: &str) -> Result<Option<LastUsed>, AwsError>;
    /// `ListAccessKeys` + `GetAccessKeyLastUsed` for each key, oldest first.
    async fn list_keys(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError> {
        let keys = self.list_key_metadata(user_name).await?;
        self.with_last_use(keys).await
    }
    /// `keys` with each one's last use read (`GetAccessKeyLastUsed` per key).
    async fn with_last_use(&self, mut keys: Vec<KeyState>) -> Result<Vec<KeyState>, AwsError> {
        for key in &mut keys {
            key.last_used = self.key_last_used(&key.key_id).await?;
        }
        Ok(keys)
    }
    /// `CreateAccessKey`.
    async fn create_key(&self, user_name: &str) -> Result<NewKey, AwsError>;
    /// `UpdateAccessKey` to `Inactive`.
    async fn deactivate_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError>;
    /// `DeleteAccessKey`.
    async fn delete_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError>;
    /// `AttachUserPolicy` of the managed policy `policy_arn` (the one that
    /// lets a user read its own secret). Idempotent: attaching an attached
    /// policy succeeds. A missing policy is `AwsError::NotFound`.
    async fn attach_read_policy(&self, user_name: &str, policy_arn: &str) -> Result<(), AwsError>;
    /// The names of the managed policies attached to the user (an incident
    /// looks for AWS's quarantine policy).
    async fn attached_policy_names(&self, user_name: &str) -> Result<Vec<String>, AwsError>;
}

/// [`IamPort`] over the AWS SDK.
#[derive(Clone)]
pub struct SdkIam {
    client: aws_sdk_iam::Client,
}

impl SdkIam {
    /// Wraps an IAM client (usually one built from a member-account session).
    pub fn new(client: aws_sdk_iam::Client) -> SdkIam {
        SdkIam { client }
    }

    /// `ListUserTags`, every page.
    async fn list_user_tags(&self, user_name: &str) -> Result<Vec<(String, String)>, AwsError> {
        let mut tags = Vec::new();
        let mut pages = self
            .client
            .list_user_tags()
            .user_name(user_name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iam:ListUserTags", e))?;
            tags.extend(page.tags.into_iter().map(|t| (t.key, t.value)));
        }
        Ok(tags)
    }

    async fn create_key_once(&self, user_name: &str) -> Result<NewKey, AwsError> {
        // One attempt only: CreateAccessKey is not idempotent, and a retry
        // after a lost answer would leave an orphan the intent cannot see.
        // A failure leaves the intent for the next run's recovery.
        let out = self
            .client
            .create_access_key()
            .user_name(user_name)
            .customize()
            .config_override(
                aws_sdk_iam::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:CreateAccessKey", e))?;
        let key = out.access_key.ok_or_else(|| AwsError::Service {
            op: "iam:CreateAccessKey",
            code: "EmptyResponse".into(),
            message: "no access key in the answer".into(),
            source: None,
        })?;
        Ok(NewKey {
            key_id: key.access_key_id,
            secret: SecretString::from(key.secret_access_key),
            created: key
                .create_date
                .as_ref()
                .map(to_chrono)
                .unwrap_or_else(crate::time::now),
        })
    }
}

/// An unreadable date reads as "now": the key then looks young, and young
/// keys are left alone (the epoch would make it look decades old).
fn to_chrono(t: &aws_smithy_types::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos()).unwrap_or_else(crate::time::now)
}

#[async_trait]
impl IamPort for SdkIam {
    async fn get_user(&self, user_name: &str) -> Result<UserInfo, AwsError> {
        let out = self
            .client
            .get_user()
            .user_name(user_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetUser", e))?;
        let user = out.user.ok_or_else(|| AwsError::NotFound {
            op: "iam:GetUser",
            message: format!("no user {user_name}"),
            source: None,
        })?;
        // GetUser answers with the user's tags (ListUsers does not), so a
        // second call is needed only if the list could have been cut short.
        let mut tags: Vec<(String, String)> = user
            .tags
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect();
        if tags.len() >= USER_TAG_LIMIT {
            tags = self.list_user_tags(user_name).await?;
        }
        Ok(UserInfo {
            user_name: user.user_name,
            arn: user.arn,
            path: user.path,
            tags,
        })
    }

    async fn list_groups_for_user(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        let mut groups = Vec::new();
        let mut pages = self
            .client
            .list_groups_for_user()
            .user_name(user_name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iam:ListGroupsForUser", e))?;
            groups.extend(page.groups.into_iter().map(|g| g.group_name));
        }
        Ok(groups)
    }

    async fn list_user_names(&self) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut pages = self.client.list_users().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iam:ListUsers", e))?;
            names.extend(page.users.into_iter().map(|u| u.user_name));
        }
        Ok(names)
    }

    async fn list_key_metadata(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError> {
        let out = self
            .client
            .list_access_keys()
            .user_name(user_name)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:ListAccessKeys", e))?;
        let mut keys: Vec<KeyState> = out
            .access_key_metadata
            .into_iter()
            .filter_map(|meta| {
                let (Some(key_id), Some(created)) = (meta.access_key_id, meta.create_date) else {
                    return None;
                };
                Some(KeyState {
                    key_id,
                    // Only an explicit Inactive counts: a key of unknown status
                    // is treated as active, and an active key is never deleted.
                    status: match meta.status {
                        Some(StatusType::Inactive) => KeyStatus::Inactive,
                        _ => KeyStatus::Active,
                    },
                    created: to_chrono(&created),
                    last_used: None,
                })
            })
            .collect();
        keys.sort_by(|a, b| a.created.cmp(&b.created).then(a.key_id.cmp(&b.key_id)));
        Ok(keys)
    }

    async fn key_last_used(&self, key_id: &str) -> Result<Option<LastUsed>, AwsError> {
        let last = self
            .client
            .get_access_key_last_used()
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:GetAccessKeyLastUsed", e))?;
        Ok(last.access_key_last_used.and_then(|l| {
            l.last_used_date.map(|at| LastUsed {
                at: to_chrono(&at),
                service: Some(l.service_name).filter(|s| !s.is_empty() && s != "N/A"),
            })
        }))
    }

    async fn create_key(&self, user_name: &str) -> Result<NewKey, AwsError> {
        // The SDK does not retry this call (see `create_key_once`); a
        // throttling answer is safe to retry here, since IAM rejected the
        // request and created nothing.
        let backoff = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(200))
            .with_max_times(4)
            .with_jitter();
        crate::retry::retry_when(
            || self.create_key_once(user_name),
            backoff,
            |e| matches!(e, AwsError::Throttled { .. }),
        )
        .await
    }

    async fn deactivate_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.client
            .update_access_key()
            .user_name(user_name)
            .access_key_id(key_id)
            .status(StatusType::Inactive)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:UpdateAccessKey", e))?;
        Ok(())
    }

    async fn delete_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.client
            .delete_access_key()
            .user_name(user_name)
            .access_key_id(key_id)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:DeleteAccessKey", e))?;
        Ok(())
    }

    async fn attach_read_policy(&self, user_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.client
            .attach_user_policy()
            .user_name(user_name)
            .policy_arn(policy_arn)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:AttachUserPolicy", e))?;
        Ok(())
    }

    async fn attached_policy_names(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_attached_user_policies()
            .user_name(user_name)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| AwsError::from_sdk("iam:ListAttachedUserPolicies", e))?;
            names.extend(
                page.attached_policies
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|p| p.policy_name),
            );
        }
        Ok(names)
    }
}

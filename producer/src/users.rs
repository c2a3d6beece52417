//! One account's IAM users, a page at a time, and the exemption group's
//! members (read once per account), behind [`MemberDirectory`]: the SDK
//! adapter reads them through the producer's read-only member role; the
//! load simulator has its own.

use std::collections::HashSet;

use async_trait::async_trait;
use keyrotor_shared::aws::{member_retry_partition, AwsContext};
use keyrotor_shared::error::AwsError;

/// Attempts of each producer IAM read (the SDK's backoff caps each wait at
/// 20 s: about two minutes in all), against 5 for the workers' calls.
pub const LISTING_ATTEMPTS: u32 = 10;

/// A page of user names and the marker of the next page, if any.
pub type UserPage = (Vec<String>, Option<String>);

/// The users of member accounts.
#[async_trait]
pub trait MemberDirectory: Send + Sync {
    /// Checks that the account can be read at all (its role can be
    /// assumed), so that a missing role is reported before any message is
    /// sent.
    async fn open(&self, account_id: &str) -> Result<(), AwsError>;
    /// The exemption group's members (empty when the account has no such
    /// group).
    async fn exempt_members(
        &self,
        account_id: &str,
        group: &str,
    ) -> Result<HashSet<String>, AwsError>;
    /// One page of `ListUsers` (up to 100 names), from `marker`.
    async fn users_page(
        &self,
        account_id: &str,
        marker: Option<String>,
    ) -> Result<UserPage, AwsError>;
    /// The user of an access key of the account (an exposed key's), or
    /// `None` when IAM does not know the key.
    async fn owner_of_key(
        &self,
        account_id: &str,
        key_id: &str,
    ) -> Result<Option<String>, AwsError>;
}

/// [`MemberDirectory`] over IAM, through the member role of each account.
pub struct SdkDirectory {
    aws: AwsContext,
}

impl SdkDirectory {
    /// Reads member accounts through `aws`'s role.
    pub fn new(aws: AwsContext) -> SdkDirectory {
        SdkDirectory { aws }
    }

    /// IAM of the account, with patient retries: the workers spend the
    /// same account's IAM budget while the producer lists it, and a page
    /// given up after the usual attempts would cut the account short (the
    /// rest of its users not enqueued until the next run). Listing is
    /// read-only, so waiting longer is always safe.
    async fn iam(&self, account_id: &str) -> aws_sdk_iam::Client {
        let config = aws_sdk_iam::config::Builder::from(&self.aws.for_account(account_id).await)
            .retry_config(
                aws_config::retry::RetryConfig::adaptive().with_max_attempts(LISTING_ATTEMPTS),
            )
            .retry_partition(member_retry_partition("iam", account_id))
            .build();
        aws_sdk_iam::Client::from_conf(config)
    }
}

#[async_trait]
impl MemberDirectory for SdkDirectory {
    async fn open(&self, account_id: &str) -> Result<(), AwsError> {
        self.aws.checked_for_account(account_id).await.map(|_| ())
    }

    async fn exempt_members(
        &self,
        account_id: &str,
        group: &str,
    ) -> Result<HashSet<String>, AwsError> {
        let iam = self.iam(account_id).await;
        let mut members = HashSet::new();
        let mut pages = iam.get_group().group_name(group).into_paginator().send();
        while let Some(page) = pages.next().await {
            match page {
                Ok(page) => members.extend(page.users.into_iter().map(|u| u.user_name)),
                Err(e) => match AwsError::from_sdk("iam:GetGroup", e) {
                    AwsError::NotFound { .. } => return Ok(HashSet::new()),
                    other => return Err(other),
                },
            }
        }
        Ok(members)
    }

    async fn users_page(
        &self,
        account_id: &str,
        marker: Option<String>,
    ) -> Result<UserPage, AwsError> {
        let out = self
            .iam(account_id)
            .await
            .list_users()
            .max_items(100)
            .set_marker(marker)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("iam:ListUsers", e))?;
        let next = if out.is_truncated { out.marker } else { None };
        Ok((out.users.into_iter().map(|u| u.user_name).collect(), next))
    }

    async fn owner_of_key(
        &self,
        account_id: &str,
        key_id: &str,
    ) -> Result<Option<String>, AwsError> {
        user_of_key(&self.iam(account_id).await, key_id).await
    }
}

/// The user an access key belongs to (`GetAccessKeyLastUsed` names it;
/// any key of the account may be asked about), or `None` when IAM does not
/// know the key.
pub async fn user_of_key(
    iam: &aws_sdk_iam::Client,
    key_id: &str,
) -> Result<Option<String>, AwsError> {
    match iam
        .get_access_key_last_used()
        .access_key_id(key_id)
        .send()
        .await
    {
        Ok(out) => Ok(out.user_name),
        Err(e) => match AwsError::from_sdk("iam:GetAccessKeyLastUsed", e) {
            AwsError::NotFound { .. } => Ok(None),
            other => Err(other),
        },
    }
}

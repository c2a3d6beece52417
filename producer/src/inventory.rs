//! Where accounts come from: Organizations (the whole org, or chosen OUs
//! recursively) or the DynamoDB registry, behind one trait. Every listing is
//! paginated to the end.

use async_trait::async_trait;
use aws_sdk_organizations::types::AccountStatus;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::registry::AccountRegistry;

/// An account as the producer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountInfo {
    /// 12-digit id.
    pub id: String,
    /// Name.
    pub name: String,
    /// The owner's (root) email.
    pub email: Option<String>,
    /// Only ACTIVE accounts are worked.
    pub active: bool,
    /// Whether account tags can be read from Organizations (not for the registry).
    pub in_organizations: bool,
    /// Its rollout wave, once the producer placed it (`KEYROTOR_WAVES`).
    pub wave: Option<WavePlace>,
}

/// An account's rollout wave, and whether an enforce run audits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavePlace {
    /// The wave, from 1.
    pub wave: u32,
    /// The wave is not released: enforce runs audit the account.
    pub audit_only: bool,
}

/// Lists accounts.
#[async_trait]
pub trait AccountInventory: Send + Sync {
    /// Every account of the source (active or not).
    async fn accounts(&self) -> Result<Vec<AccountInfo>, AwsError>;
    /// Whether the account is tagged out of keyrotor (`keyrotor:exclude`);
    /// only Organizations has account tags.
    async fn excluded(&self, _account: &AccountInfo) -> Result<bool, AwsError> {
        Ok(false)
    }
    /// The ids of every account under `ou` (an OU or the root),
    /// recursively; only Organizations has OUs (the settings refuse OU
    /// waves with the registry).
    async fn accounts_under(&self, ou: &str) -> Result<Vec<String>, AwsError> {
        Err(AwsError::Service {
            op: "organizations:ListAccountsForParent",
            code: "NoOrganizations".into(),
            message: format!("{ou}: this account source has no OUs"),
            source: None,
        })
    }
}

/// Organizations: `ListAccounts`, or for each OU its accounts and those of
/// every OU below it.
pub struct OrgInventory {
    client: aws_sdk_organizations::Client,
    ous: Vec<String>,
}

impl OrgInventory {
    /// The whole organization when `ous` is empty, else those OUs' subtrees.
    pub fn new(client: aws_sdk_organizations::Client, ous: Vec<String>) -> OrgInventory {
        OrgInventory { client, ous }
    }

    async fn under(&self, parent: &str, out: &mut Vec<AccountInfo>) -> Result<(), AwsError> {
        // Depth-first with an explicit stack: OU trees are at most 5 deep,
        // but an explicit stack keeps the futures small.
        let mut stack = vec![parent.to_string()];
        while let Some(parent) = stack.pop() {
            let mut pages = self
                .client
                .list_accounts_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page =
                    page.map_err(|e| AwsError::from_sdk("organizations:ListAccountsForParent", e))?;
                out.extend(page.accounts.unwrap_or_default().into_iter().map(info));
            }
            let mut pages = self
                .client
                .list_organizational_units_for_parent()
                .parent_id(&parent)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| {
                    AwsError::from_sdk("organizations:ListOrganizationalUnitsForParent", e)
                })?;
                stack.extend(
                    page.organizational_units
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|ou| ou.id),
                );
            }
        }
        Ok(())
    }
}

fn info(a: aws_sdk_organizations::types::Account) -> AccountInfo {
    AccountInfo {
        id: a.id.unwrap_or_default(),
        name: a.name.unwrap_or_default(),
        email: a.email,
        active: a.status == Some(AccountStatus::Active),
        in_organizations: true,
        wave: None,
    }
}

#[async_trait]
impl AccountInventory for OrgInventory {
    async fn accounts(&self) -> Result<Vec<AccountInfo>, AwsError> {
        let mut out = Vec::new();
        if self.ous.is_empty() {
            let mut pages = self.client.list_accounts().into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| AwsError::from_sdk("organizations:ListAccounts", e))?;
                out.extend(page.accounts.unwrap_or_default().into_iter().map(info));
            }
        } else {
            for ou in &self.ous {
                self.under(ou, &mut out).await?;
            }
        }
        // Overlapping OUs (an OU and its parent, or the root) list an account twice.
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        Ok(out)
    }

    async fn accounts_under(&self, ou: &str) -> Result<Vec<String>, AwsError> {
        let mut out = Vec::new();
        self.under(ou, &mut out).await?;
        Ok(out.into_iter().map(|a| a.id).collect())
    }

    async fn excluded(&self, account: &AccountInfo) -> Result<bool, AwsError> {
        if !account.in_organizations {
            return Ok(false);
        }
        excluded_by_tag(&self.client, &account.id).await
    }
}

/// The DynamoDB account registry (`keyrotor import-accounts`).
pub struct RegistryInventory {
    registry: AccountRegistry,
}

impl RegistryInventory {
    /// Accounts from `registry`.
    pub fn new(registry: AccountRegistry) -> RegistryInventory {
        RegistryInventory { registry }
    }
}

#[async_trait]
impl AccountInventory for RegistryInventory {
    async fn accounts(&self) -> Result<Vec<AccountInfo>, AwsError> {
        Ok(self
            .registry
            .list()
            .await?
            .into_iter()
            .map(|a| AccountInfo {
                id: a.account_id.to_string(),
                name: a.name.unwrap_or_else(|| a.account_id.to_string()),
                email: Some(a.email),
                active: a.enabled,
                in_organizations: false,
                wave: None,
            })
            .collect())
    }
}

/// Whether the account carries the tag `keyrotor:exclude = true` in Organizations.
pub async fn excluded_by_tag(
    client: &aws_sdk_organizations::Client,
    account_id: &str,
) -> Result<bool, AwsError> {
    let mut pages = client
        .list_tags_for_resource()
        .resource_id(account_id)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("organizations:ListTagsForResource", e))?;
        if page
            .tags
            .unwrap_or_default()
            .iter()
            .any(|t| t.key == EXCLUDE_TAG && t.value.trim().eq_ignore_ascii_case("true"))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The account tag that keeps keyrotor out of an account.
pub const EXCLUDE_TAG: &str = "keyrotor:exclude";

//! One account's IAM users, a page at a time, and the exemption group's
//! members (read once per account).

use std::collections::HashSet;

use keyrotor_shared::error::AwsError;

/// The exemption group's members (empty when the account has no such group).
pub async fn exempt_members(
    iam: &aws_sdk_iam::Client,
    group: &str,
) -> Result<HashSet<String>, AwsError> {
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

/// Calls `each_page` with every page of `ListUsers` (up to 100 names each),
/// so that no more than a page is held at a time.
pub async fn for_each_page<F, Fut>(
    iam: &aws_sdk_iam::Client,
    mut each_page: F,
) -> Result<(), AwsError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<(), AwsError>>,
{
    let mut pages = iam.list_users().max_items(100).into_paginator().send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| AwsError::from_sdk("iam:ListUsers", e))?;
        each_page(page.users.into_iter().map(|u| u.user_name).collect()).await?;
    }
    Ok(())
}

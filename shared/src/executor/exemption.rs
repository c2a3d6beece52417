//! Whether a user is exempt from rotation: a member of the exemption group,
//! tagged `keyrotor:exempt = true` (the tag key is a setting), or under an
//! exempt path. An exempt user is reported as `skipped`, never ignored.

use crate::aws::{IamPort, UserInfo};
use crate::config::Settings;
use crate::error::AwsError;

/// The reason a user is exempt, or `None`.
pub async fn exemption(
    settings: &Settings,
    iam: &dyn IamPort,
    user: &UserInfo,
) -> Result<Option<String>, AwsError> {
    if let Some(prefix) = settings
        .exempt_paths
        .iter()
        .find(|p| user.path.starts_with(p.as_str()))
    {
        return Ok(Some(format!(
            "path {} is under exempt prefix {prefix}",
            user.path
        )));
    }
    if user
        .tag(&settings.exempt_tag)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
    {
        return Ok(Some(format!("tagged {} = true", settings.exempt_tag)));
    }
    if let Some(group) = &settings.exempt_group {
        let groups = iam.list_groups_for_user(&user.user_name).await?;
        if groups.iter().any(|g| g == group) {
            return Ok(Some(format!("member of exemption group {group}")));
        }
    }
    Ok(None)
}

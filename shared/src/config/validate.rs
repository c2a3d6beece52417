//! What each setting's value must look like (used by its value parser), and
//! the rules between settings, checked once every value has parsed: the
//! policy's ages in order (R < D < X, W < R), a central secrets account's
//! needs.

use super::{bad, ConfigError};

/// An IAM role name: 1–64 of `[A-Za-z0-9+=,.@_-]`.
pub(super) fn valid_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b))
}

/// `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE` with the given service.
pub(super) fn valid_arn(arn: &str, service: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && !parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

/// `arn:PARTITION:SERVICE::ACCOUNT:RESOURCE` for global services (no region).
pub(super) fn valid_arn_global(arn: &str, service: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == service
        && parts[3].is_empty()
        && parts[4].len() == 12
        && parts[4].bytes().all(|b| b.is_ascii_digit())
        && !parts[5].is_empty()
}

/// An EventBridge bus: its name (1–256 of `A-Z a-z 0-9 . _ - /`) or its
/// ARN (`arn:aws:events:REGION:ACCOUNT:event-bus/NAME`).
pub(super) fn valid_event_bus(s: &str) -> bool {
    if s.starts_with("arn:") {
        return valid_arn(s, "events")
            && s.splitn(6, ':')
                .nth(5)
                .is_some_and(|r| r.len() > "event-bus/".len() && r.starts_with("event-bus/"));
    }
    (1..=256).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
}

pub(super) fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c == ',')
}

pub(super) fn valid_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// An SQS queue URL: `http(s)://HOST/ACCOUNT/NAME`.
pub(super) fn valid_queue_url(url: &str) -> bool {
    (url.starts_with("https://") || url.starts_with("http://"))
        && url
            .splitn(4, '/')
            .nth(3)
            .is_some_and(|path| path.contains('/'))
}

/// A DynamoDB table name: 3–255 of `[A-Za-z0-9_.-]`.
pub(super) fn valid_table_name(table: &str) -> bool {
    (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

/// A tag key: 1–128 characters.
pub(super) fn valid_tag_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= 128
}

/// A secret name template: `{user_name}` in it (one secret per user), no
/// other placeholder than `{account_id}`, and only characters a secret
/// name can hold.
pub(super) fn secret_name_template(t: &str) -> Result<String, String> {
    let t = t.trim();
    // One secret per user: without the user name two users would share a secret.
    if !t.contains("{user_name}") {
        return Err(format!("`{t}` must contain {{user_name}}"));
    }
    let stripped = t.replace("{account_id}", "").replace("{user_name}", "");
    if stripped.contains('{') || stripped.contains('}') {
        return Err(format!(
            "`{t}` has an unknown placeholder (only {{account_id}} and {{user_name}})"
        ));
    }
    if !stripped
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
    {
        return Err(format!("`{t}` has characters a secret name cannot hold"));
    }
    Ok(t.to_string())
}

/// The policy's ages in days: rotate R, deactivate D, delete X, warn W.
/// Each is in range already (its parser); here D > R, X > D and W < R.
pub(super) fn ages(r: u16, d: u16, x: u16, w: u16) -> Result<(), ConfigError> {
    if d <= r {
        return Err(bad(
            "KEYROTOR_DEACTIVATE_DAYS",
            "deactivate-days",
            format!("must be greater than KEYROTOR_ROTATE_DAYS ({r}), got {d}"),
        ));
    }
    if x <= d {
        return Err(bad(
            "KEYROTOR_DELETE_DAYS",
            "delete-days",
            format!("must be greater than KEYROTOR_DEACTIVATE_DAYS ({d}), got {x}"),
        ));
    }
    if w >= r {
        return Err(bad(
            "KEYROTOR_WARN_DAYS",
            "warn-days",
            format!(
                "must be between 0 and KEYROTOR_ROTATE_DAYS - 1 ({}), got {w}",
                r - 1
            ),
        ));
    }
    Ok(())
}

/// A central secrets account needs a customer managed KMS key given by ARN
/// and a template that names the account.
pub(super) fn central_secrets(
    secret_name_template: &str,
    kms_key_id: Option<&str>,
) -> Result<(), ConfigError> {
    let Some(kms_key_id) = kms_key_id else {
        return Err(bad(
            "KEYROTOR_KMS_KEY_ID",
            "kms-key-id",
            "a central KEYROTOR_SECRETS_ACCOUNT needs a customer managed KMS key: the default aws/secretsmanager key cannot be shared across accounts",
        ));
    };
    // One central namespace: without the account id, same-named users
    // of two accounts would share one secret.
    if !secret_name_template.contains("{account_id}") {
        return Err(bad(
            "KEYROTOR_SECRET_NAME_TEMPLATE",
            "secret-name-template",
            "must contain {account_id} when KEYROTOR_SECRETS_ACCOUNT is set",
        ));
    }
    // The users' inline policies must name the key for kms:Decrypt.
    if !valid_arn(kms_key_id, "kms") {
        return Err(bad(
            "KEYROTOR_KMS_KEY_ID",
            "kms-key-id",
            "must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID) when KEYROTOR_SECRETS_ACCOUNT is set",
        ));
    }
    Ok(())
}

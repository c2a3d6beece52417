//! The JSON documents keyrotor writes: the secret value and the secret's
//! resource policy; and the managed policy it attaches to the user. Built
//! here, in one place, so tests and reviewers can read exactly what is
//! granted.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// Name of the customer managed policy that lets a user read its own
/// secret. `infra/member-role.yaml` creates it in every member account; the
/// executor only attaches it (the member role may attach this one policy and
/// no other, and may not write inline policies).
pub const READ_OWN_SECRET_POLICY: &str = "keyrotor-read-own-secret";

/// The ARN of [`READ_OWN_SECRET_POLICY`] in the user's own account, derived
/// from the user's ARN (`arn:PARTITION:iam::ACCOUNT:user/PATH/NAME`), so the
/// partition and account are the user's, never the hub's. `None` when
/// `user_arn` is not an IAM user ARN.
pub fn read_own_secret_policy_arn(user_arn: &str) -> Option<String> {
    let mut parts = user_arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let valid_account = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    if partition.is_empty() || !valid_account || !resource.starts_with("user/") {
        return None;
    }
    Some(format!(
        "arn:{partition}:iam::{account}:policy/{READ_OWN_SECRET_POLICY}"
    ))
}

/// The idempotency token (and version id) of the secret version that holds
/// `key_id`. Secrets Manager wants 32–64 characters; key ids are 20.
pub fn version_token(key_id: &str) -> String {
    format!("keyrotor-version-{key_id}")
}

/// The secret value, compatible with the reference pattern:
/// `{AccessKeyId, SecretAccessKey, UserName, CreateDate}`. The result is
/// itself secret. The JSON is written straight into one buffer sized up
/// front (so it never reallocates and leaves a copy behind), and no
/// intermediate `serde_json::Value` ever holds the secret.
pub fn secret_value(
    key_id: &str,
    secret: &SecretString,
    user_name: &str,
    created: DateTime<Utc>,
) -> SecretString {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Document<'a> {
        access_key_id: &'a str,
        secret_access_key: &'a str,
        user_name: &'a str,
        create_date: String,
    }
    let document = Document {
        access_key_id: key_id,
        secret_access_key: secret.expose_secret(),
        user_name,
        create_date: created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    };
    // Every character may need a 6-byte escape; plus names and punctuation.
    let capacity = 6 * (key_id.len() + secret.expose_secret().len() + user_name.len()) + 160;
    let mut buffer = zeroize::Zeroizing::new(Vec::with_capacity(capacity));
    serde_json::to_writer(&mut *buffer, &document).expect("plain data serialises");
    debug_assert!(buffer.capacity() == capacity, "the buffer never grew");
    let text = String::from_utf8(std::mem::take(&mut *buffer)).expect("JSON is UTF-8");
    SecretString::from(text)
}

/// The secret's resource policy: the user may read it, and nobody else may
/// read its value. The explicit deny matters because an `Allow` alone does
/// not stop other principals whose identity policies grant
/// `secretsmanager:GetSecretValue` on `*`. keyrotor's own role never reads a
/// value back (it checks versions with `DescribeSecret`), so it is not
/// excepted; an administrator can still replace the policy to break glass.
pub fn resource_policy(user_arn: &str) -> String {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "OwnerReadsOwnKey",
                "Effect": "Allow",
                "Principal": {"AWS": user_arn},
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": "*"
            },
            {
                "Sid": "NobodyElseReadsIt",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalArn": user_arn}}
            }
        ]
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_value_is_the_patterns_json_even_with_characters_to_escape() {
        let secret = SecretString::from("wJalr/K7MDENG+bPxRfiCY\"EXAMPLE\u{1}".to_string());
        let created = DateTime::parse_from_rfc3339("2026-06-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let value = secret_value("AKIAIOSFODNN7EXAMPLE", &secret, "ci\"bot", created);
        let doc: serde_json::Value = serde_json::from_str(value.expose_secret()).unwrap();
        assert_eq!(doc["AccessKeyId"], "AKIAIOSFODNN7EXAMPLE");
        assert_eq!(doc["SecretAccessKey"], secret.expose_secret());
        assert_eq!(doc["UserName"], "ci\"bot");
        assert_eq!(doc["CreateDate"], "2026-06-01T10:00:00Z");
        assert_eq!(doc.as_object().unwrap().len(), 4);
    }

    #[test]
    fn version_tokens_fit_secrets_manager_limits() {
        let t = version_token("AKIAIOSFODNN7EXAMPLE");
        assert!((32..=64).contains(&t.len()), "{}", t.len());
    }

    #[test]
    fn resource_policy_names_only_the_user() {
        let doc: serde_json::Value =
            serde_json::from_str(&resource_policy("arn:aws:iam::111122223333:user/ci")).unwrap();
        let text = doc.to_string();
        assert_eq!(text.matches("arn:aws:iam::").count(), 2, "{text}");
        assert!(!text.contains(":role/"));
    }

    #[test]
    fn the_read_policy_lives_in_the_users_own_account_and_partition() {
        assert_eq!(
            read_own_secret_policy_arn("arn:aws:iam::111122223333:user/ci").as_deref(),
            Some("arn:aws:iam::111122223333:policy/keyrotor-read-own-secret")
        );
        assert_eq!(
            read_own_secret_policy_arn("arn:aws-cn:iam::111122223333:user/service/team/ci")
                .as_deref(),
            Some("arn:aws-cn:iam::111122223333:policy/keyrotor-read-own-secret")
        );
        for not_a_user in [
            "arn:aws:iam::111122223333:role/ci",
            "arn:aws:iam::1111:user/ci",
            "arn:aws:sts::111122223333:assumed-role/r/s",
            "ci",
            "",
        ] {
            assert_eq!(read_own_secret_policy_arn(not_a_user), None, "{not_a_user}");
        }
    }
}

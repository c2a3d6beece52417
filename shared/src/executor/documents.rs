//! The JSON documents keyrotor writes: the secret value, the secret's
//! resource policy and the user's inline policy. Built here, in one place,
//! so tests and reviewers can read exactly what is granted.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

/// Name of the inline policy that lets a user read its own secret.
pub const INLINE_POLICY_NAME: &str = "keyrotor-read-own-secret";

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

/// The user's inline policy: read exactly its own secret (full ARN), and
/// decrypt with the secrets' KMS key when one is configured.
pub fn inline_user_policy(secret_arn: &str, kms_key_arn: Option<&str>) -> String {
    let mut statements = vec![json!({
        "Sid": "ReadOwnRotatedKey",
        "Effect": "Allow",
        "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
        "Resource": secret_arn
    })];
    if let Some(kms) = kms_key_arn.filter(|k| k.starts_with("arn:")) {
        statements.push(json!({
            "Sid": "DecryptOwnRotatedKey",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": kms,
            "Condition": {"StringLike": {"kms:ViaService": "secretsmanager.*.amazonaws.com"}}
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements}).to_string()
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
    fn inline_policy_names_the_full_secret_arn() {
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:Account_1_User_ci_AccessKey-AbCdEf";
        let doc: serde_json::Value = serde_json::from_str(&inline_user_policy(arn, None)).unwrap();
        assert_eq!(doc["Statement"][0]["Resource"], arn);
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 1);
    }
}

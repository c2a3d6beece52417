//! Building the world a scenario needs, through the real APIs:
//! `org.account("prod").await.user("ci").await.key_aged(95).await`.

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_iam::types::Tag;
use chrono::Duration;

use crate::{day, Emulator};

/// The organisation, seen from its management (hub) account.
pub struct Org<'e> {
    /// The emulator.
    pub emu: &'e Emulator,
    /// The hub's SDK configuration.
    pub hub: SdkConfig,
}

impl<'e> Org<'e> {
    /// Creates an organisation (all features).
    pub async fn new(emu: &'e Emulator) -> Org<'e> {
        let hub = emu.hub_config().await;
        aws_sdk_organizations::Client::new(&hub)
            .create_organization()
            .feature_set(aws_sdk_organizations::types::OrganizationFeatureSet::All)
            .send()
            .await
            .expect("create organization");
        Org { emu, hub }
    }

    /// Creates a member account with what `infra/member-role.yaml` deploys
    /// (as the StackSet would): the `keyrotor-member` and
    /// `keyrotor-member-reader` roles and the `keyrotor-read-own-secret`
    /// managed policy; and a session in it through the member role.
    pub async fn account(&self, name: &str) -> Account<'e> {
        let account = self.account_without_member_role(name).await;
        account.install_member_stack().await;
        account
    }

    /// Creates a member account where the member role was never deployed
    /// (the session uses `OrganizationAccountAccessRole`).
    pub async fn account_without_member_role(&self, name: &str) -> Account<'e> {
        let status = aws_sdk_organizations::Client::new(&self.hub)
            .create_account()
            .account_name(name)
            .email(format!("{name}@example.com"))
            .send()
            .await
            .expect("create account")
            .create_account_status
            .expect("status");
        let id = status.account_id.expect("account id");
        let config = self.session(&id, "OrganizationAccountAccessRole").await;
        Account {
            emu: self.emu,
            id,
            iam: aws_sdk_iam::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            config,
        }
    }

    /// A session in `account_id` through `role`.
    pub async fn session(&self, account_id: &str, role: &str) -> SdkConfig {
        let creds = aws_sdk_sts::Client::new(&self.hub)
            .assume_role()
            .role_arn(format!("arn:aws:iam::{account_id}:role/{role}"))
            .role_session_name("test-harness")
            .send()
            .await
            .expect("assume role")
            .credentials
            .expect("credentials");
        self.hub
            .to_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(Credentials::new(
                    creds.access_key_id,
                    creds.secret_access_key,
                    Some(creds.session_token),
                    None,
                    "member",
                )),
            )
            .build()
    }
}

/// A member account.
pub struct Account<'e> {
    emu: &'e Emulator,
    /// The account id.
    pub id: String,
    /// A session in the account.
    pub config: SdkConfig,
    /// IAM in the account.
    pub iam: aws_sdk_iam::Client,
    /// Secrets Manager in the account.
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// A key the harness created (it knows the secret, as an application would).
pub struct TestKey {
    /// Access key id.
    pub id: String,
    /// Secret access key.
    pub secret: String,
}

/// A key as IAM reports it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyNow {
    /// Access key id.
    pub id: String,
    /// `Active` / `Inactive`.
    pub status: String,
}

/// The `keyrotor-read-own-secret` policy document `infra/member-role.yaml`
/// creates (without a KMS key): read the secrets tagged with the caller's
/// own user name and account. `tests/tests/infra_deploy.rs` deploys the
/// template and checks that it creates exactly this document.
pub fn read_own_secret_policy_document() -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "ReadOwnRotatedKey",
            "Effect": "Allow",
            "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
            "Resource": "arn:aws:secretsmanager:*:*:secret:*",
            "Condition": {"StringEquals": {
                "secretsmanager:ResourceTag/keyrotor:user": "${aws:username}",
                "secretsmanager:ResourceTag/keyrotor:account": "${aws:PrincipalAccount}"
            }}
        }]
    })
}

impl<'e> Account<'e> {
    /// What the member stack creates, made with IAM calls (the emulator's
    /// CloudFormation is slower, and does not evaluate policies either):
    /// the worker's role, the producer's reader role, and the managed
    /// policy the executor attaches. The emulator does not enforce trust
    /// policies, so they name the hub account only.
    pub async fn install_member_stack(&self) {
        let trust = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                           "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}]
        })
        .to_string();
        for role in ["keyrotor-member", "keyrotor-member-reader"] {
            self.iam
                .create_role()
                .role_name(role)
                .assume_role_policy_document(&trust)
                .send()
                .await
                .unwrap_or_else(|e| panic!("create the role {role}: {e:?}"));
        }
        self.iam
            .create_policy()
            .policy_name("keyrotor-read-own-secret")
            .policy_document(read_own_secret_policy_document().to_string())
            .send()
            .await
            .expect("create the keyrotor-read-own-secret policy");
    }

    /// The ARNs of the managed policies attached to `user`.
    pub async fn attached_policies(&self, user: &str) -> Vec<String> {
        let mut arns: Vec<String> = self
            .iam
            .list_attached_user_policies()
            .user_name(user)
            .send()
            .await
            .expect("list attached user policies")
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_string))
            .collect();
        arns.sort();
        arns
    }

    /// Creates user `name`.
    pub async fn user(&self, name: &str) -> User<'_, 'e> {
        self.iam
            .create_user()
            .user_name(name)
            .send()
            .await
            .expect("create user");
        User {
            account: self,
            name: name.to_string(),
        }
    }

    /// The user's keys now, oldest first.
    pub async fn keys(&self, user: &str) -> Vec<KeyNow> {
        let mut keys: Vec<_> = self
            .iam
            .list_access_keys()
            .user_name(user)
            .send()
            .await
            .expect("list keys")
            .access_key_metadata
            .into_iter()
            .map(|k| {
                (
                    k.create_date.map(|d| d.secs()).unwrap_or_default(),
                    KeyNow {
                        id: k.access_key_id.unwrap_or_default(),
                        status: k.status.map(|s| s.as_str().to_string()).unwrap_or_default(),
                    },
                )
            })
            .collect();
        keys.sort_by_key(|(t, _)| *t);
        keys.into_iter().map(|(_, k)| k).collect()
    }

    /// The ARNs of every secret in the account, sorted.
    pub async fn secret_arns(&self) -> Vec<String> {
        let mut arns: Vec<String> = self
            .secrets
            .list_secrets()
            .send()
            .await
            .expect("list secrets")
            .secret_list()
            .iter()
            .filter_map(|s| s.arn().map(str::to_string))
            .collect();
        arns.sort();
        arns
    }

    /// The JSON value of a secret (by name or ARN).
    pub async fn secret_json(&self, id: &str) -> serde_json::Value {
        let value = self
            .secrets
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .expect("get secret value");
        serde_json::from_str(value.secret_string().expect("a string secret")).expect("JSON secret")
    }

    /// Signs a request with `key` at time `t` (IAM records it as used).
    pub async fn use_key(&self, key: &TestKey, t: chrono::DateTime<chrono::Utc>) {
        let prev = self.emu.now();
        self.emu.set_clock(t);
        let config =
            self.config
                .to_builder()
                .credentials_provider(
                    aws_credential_types::provider::SharedCredentialsProvider::new(
                        Credentials::new(key.id.clone(), key.secret.clone(), None, None, "app"),
                    ),
                )
                .build();
        aws_sdk_s3_free_call(&config).await;
        self.emu.set_clock(prev);
    }
}

/// An application's call: `iam:GetUser` signed with its key. (Not STS:
/// keyrotor's own verification uses STS, and the two must be told apart.)
async fn aws_sdk_s3_free_call(config: &SdkConfig) {
    aws_sdk_iam::Client::new(config)
        .list_access_keys()
        .send()
        .await
        .expect("a call signed with the key");
}

/// A user being built.
pub struct User<'a, 'e> {
    account: &'a Account<'e>,
    /// The user name.
    pub name: String,
}

impl User<'_, '_> {
    /// Creates a key as if `days` ago.
    pub async fn key_aged(&self, days: i64) -> TestKey {
        let emu = self.account.emu;
        let prev = emu.now();
        emu.set_clock(day(-days));
        let key = self
            .account
            .iam
            .create_access_key()
            .user_name(&self.name)
            .send()
            .await
            .expect("create key")
            .access_key
            .expect("key");
        emu.set_clock(prev);
        TestKey {
            id: key.access_key_id,
            secret: key.secret_access_key,
        }
    }

    /// Creates a key `days` ago that the application used ever since (last
    /// use: yesterday).
    pub async fn used_key_aged(&self, days: i64) -> TestKey {
        let key = self.key_aged(days).await;
        let at = if days >= 1 { day(-1) } else { day(0) };
        self.account.use_key(&key, at).await;
        key
    }

    /// Tags the user.
    pub async fn tag(&self, key: &str, value: &str) {
        self.account
            .iam
            .tag_user()
            .user_name(&self.name)
            .tags(Tag::builder().key(key).value(value).build().unwrap())
            .send()
            .await
            .expect("tag user");
    }
}

/// `days` as a chrono duration.
pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

impl Org<'_> {
    /// The organisation's root id.
    pub async fn root(&self) -> String {
        aws_sdk_organizations::Client::new(&self.hub)
            .list_roots()
            .send()
            .await
            .expect("list roots")
            .roots()[0]
            .id()
            .expect("root id")
            .to_string()
    }

    /// Creates an OU under `parent`.
    pub async fn ou(&self, parent: &str, name: &str) -> String {
        aws_sdk_organizations::Client::new(&self.hub)
            .create_organizational_unit()
            .parent_id(parent)
            .name(name)
            .send()
            .await
            .expect("create OU")
            .organizational_unit
            .and_then(|ou| ou.id)
            .expect("OU id")
    }

    /// Moves an account from the root into `ou`.
    pub async fn move_to(&self, account_id: &str, ou: &str) {
        let root = self.root().await;
        aws_sdk_organizations::Client::new(&self.hub)
            .move_account()
            .account_id(account_id)
            .source_parent_id(root)
            .destination_parent_id(ou)
            .send()
            .await
            .expect("move account");
    }

    /// Closes an account (Organizations reports it SUSPENDED).
    pub async fn close(&self, account_id: &str) {
        aws_sdk_organizations::Client::new(&self.hub)
            .close_account()
            .account_id(account_id)
            .send()
            .await
            .expect("close account");
    }

    /// Tags an account in Organizations.
    pub async fn tag_account(&self, account_id: &str, key: &str, value: &str) {
        aws_sdk_organizations::Client::new(&self.hub)
            .tag_resource()
            .resource_id(account_id)
            .tags(
                aws_sdk_organizations::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("tag account");
    }
}

impl Account<'_> {
    /// Creates `n` users named `{prefix}{i}` (no keys).
    pub async fn users(&self, prefix: &str, n: usize) -> Vec<String> {
        let mut names = Vec::with_capacity(n);
        for i in 0..n {
            let name = format!("{prefix}{i:04}");
            self.iam
                .create_user()
                .user_name(&name)
                .send()
                .await
                .expect("create user");
            names.push(name);
        }
        names
    }
}

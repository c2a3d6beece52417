//! Client-side rate limits (`governor` token buckets): IAM calls per member
//! account, Secrets Manager writes and SES sends across the process. They
//! keep a worker fleet under AWS's quotas instead of relying on throttling
//! answers; throttling that still happens is retried by the SDK (adaptive
//! mode, jittered backoff) and, past that, by redelivering the message.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::iam::{IamPort, NewKey, UserInfo};
use super::secrets::{SecretInfo, SecretsPort, StoreSecret, StoredSecret};
use crate::config::Settings;
use crate::domain::KeyState;
use crate::error::AwsError;

/// The limiters of one process.
#[derive(Clone)]
pub struct Limits {
    iam: Arc<DefaultKeyedRateLimiter<String>>,
    secrets: Arc<DefaultDirectRateLimiter>,
    ses: Arc<DefaultDirectRateLimiter>,
}

impl Limits {
    /// Limits from `KEYROTOR_IAM_RATE`/`_BURST`, `KEYROTOR_SECRETS_RATE`, `KEYROTOR_SES_RATE`.
    pub fn new(settings: &Settings) -> Limits {
        Limits::with(
            settings.iam_rate,
            settings.iam_burst,
            settings.secrets_rate,
            settings.ses_rate,
        )
    }

    /// Limits with explicit rates (per second).
    pub fn with(
        iam: NonZeroU32,
        iam_burst: NonZeroU32,
        secrets: NonZeroU32,
        ses: NonZeroU32,
    ) -> Limits {
        Limits {
            iam: Arc::new(RateLimiter::keyed(
                Quota::per_second(iam).allow_burst(iam_burst),
            )),
            secrets: Arc::new(RateLimiter::direct(Quota::per_second(secrets))),
            ses: Arc::new(RateLimiter::direct(Quota::per_second(ses))),
        }
    }

    /// IAM of `account_id`, limited.
    pub fn iam(&self, account_id: &str, inner: Arc<dyn IamPort>) -> Arc<dyn IamPort> {
        Arc::new(LimitedIam {
            inner,
            account: account_id.to_string(),
            limiter: self.iam.clone(),
        })
    }

    /// Secrets Manager with limited writes.
    pub fn secrets(&self, inner: Arc<dyn SecretsPort>) -> Arc<dyn SecretsPort> {
        Arc::new(LimitedSecrets {
            inner,
            limiter: self.secrets.clone(),
        })
    }

    /// Waits for an SES send slot.
    pub async fn ses_ready(&self) {
        self.ses.until_ready().await;
    }
}

struct LimitedIam {
    inner: Arc<dyn IamPort>,
    account: String,
    limiter: Arc<DefaultKeyedRateLimiter<String>>,
}

impl LimitedIam {
    async fn ready(&self) {
        self.limiter.until_key_ready(&self.account).await;
    }
}

#[async_trait]
impl IamPort for LimitedIam {
    async fn get_user(&self, user_name: &str) -> Result<UserInfo, AwsError> {
        self.ready().await;
        self.inner.get_user(user_name).await
    }
    async fn list_groups_for_user(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        self.ready().await;
        self.inner.list_groups_for_user(user_name).await
    }
    async fn list_user_names(&self) -> Result<Vec<String>, AwsError> {
        self.ready().await;
        self.inner.list_user_names().await
    }
    async fn list_keys(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError> {
        // ListAccessKeys plus one GetAccessKeyLastUsed per key (at most two).
        self.ready().await;
        self.ready().await;
        self.inner.list_keys(user_name).await
    }
    async fn create_key(&self, user_name: &str) -> Result<NewKey, AwsError> {
        self.ready().await;
        self.inner.create_key(user_name).await
    }
    async fn deactivate_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.deactivate_key(user_name, key_id).await
    }
    async fn delete_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.delete_key(user_name, key_id).await
    }
    async fn attach_read_policy(&self, user_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.attach_read_policy(user_name, policy_arn).await
    }
}

struct LimitedSecrets {
    inner: Arc<dyn SecretsPort>,
    limiter: Arc<DefaultDirectRateLimiter>,
}

#[async_trait]
impl SecretsPort for LimitedSecrets {
    // Reads have their own, much larger quota: not limited here.
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        self.inner.describe(name).await
    }
    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        self.limiter.until_ready().await;
        self.inner.store(req).await
    }
    async fn put_resource_policy(&self, arn: &str, document: &str) -> Result<(), AwsError> {
        self.limiter.until_ready().await;
        self.inner.put_resource_policy(arn, document).await
    }
}

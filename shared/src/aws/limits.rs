//! Client-side rate limits (`governor` token buckets): IAM calls per member
//! account, Secrets Manager writes and SES sends across the process. They
//! keep a worker fleet under AWS's quotas instead of relying on throttling
//! answers; throttling that still happens is retried by the SDK (adaptive
//! mode, jittered backoff) and, past that, by redelivering the message.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::iam::{IamPort, NewKey, UserInfo};
use super::secrets::{SecretInfo, SecretsPort, StoreSecret, StoredSecret};
use crate::config::Settings;
use crate::domain::KeyState;
use crate::error::AwsError;

/// governor's clock on tokio's time, so that a wait is a tokio sleep: the
/// load simulator runs the real limits on tokio's paused clock, and in a
/// real process tokio's time is the monotonic clock.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Waits until `check` lets a call through (governor's own waiting futures
/// use a real-time timer).
async fn until_ready(
    clock: &TokioClock,
    mut check: impl FnMut() -> Result<(), governor::NotUntil<Duration>>,
) {
    while let Err(not_until) = check() {
        tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
    }
}

/// One FIFO group's share of its account's IAM budget: the producer spreads
/// an account's messages over `of` groups, and FIFO gives each group to one
/// worker at a time, so when every group's worker takes `1/of` of the
/// budget the fleet as a whole stays within it, however many workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IamShare {
    /// The group (0-based).
    pub group: u32,
    /// Groups the account's messages are spread over (at least 1).
    pub of: u32,
}

impl IamShare {
    /// The whole budget (one group, or no queue at all as in `rotate`).
    pub const WHOLE: IamShare = IamShare { group: 0, of: 1 };
}

/// One IAM limiter per (account, share) in use.
type IamLimiters = std::collections::HashMap<(String, IamShare), Arc<Direct>>;

/// The limiters of one process.
#[derive(Clone)]
pub struct Limits {
    clock: TokioClock,
    iam_rate: NonZeroU32,
    iam_burst: NonZeroU32,
    /// One limiter per (account, share) in use.
    iam: Arc<std::sync::Mutex<IamLimiters>>,
    secrets: Arc<Direct>,
    ses: Arc<Direct>,
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
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        Limits {
            iam_rate: iam,
            iam_burst,
            iam: Arc::default(),
            secrets: Arc::new(RateLimiter::direct_with_clock(
                Quota::per_second(secrets),
                clock.clone(),
            )),
            ses: Arc::new(RateLimiter::direct_with_clock(
                Quota::per_second(ses),
                clock.clone(),
            )),
            clock,
        }
    }

    /// IAM of `account_id`, limited to `share` of the account's budget.
    pub fn iam(
        &self,
        account_id: &str,
        share: IamShare,
        inner: Arc<dyn IamPort>,
    ) -> Arc<dyn IamPort> {
        let limiter = self
            .iam
            .lock()
            .expect("not poisoned")
            .entry((account_id.to_string(), share))
            .or_insert_with(|| {
                let of = share.of.max(1);
                // `rate / of` calls a second: one call every `of / rate` s.
                let period =
                    Duration::from_secs_f64(f64::from(of) / f64::from(self.iam_rate.get()));
                let burst = NonZeroU32::new(self.iam_burst.get() / of).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(period)
                    .expect("a positive period")
                    .allow_burst(burst);
                Arc::new(RateLimiter::direct_with_clock(quota, self.clock.clone()))
            })
            .clone();
        Arc::new(LimitedIam {
            inner,
            limiter,
            clock: self.clock.clone(),
        })
    }

    /// Secrets Manager with limited writes.
    pub fn secrets(&self, inner: Arc<dyn SecretsPort>) -> Arc<dyn SecretsPort> {
        Arc::new(LimitedSecrets {
            inner,
            limits: self.clone(),
        })
    }

    /// Waits for an SES send slot.
    pub async fn ses_ready(&self) {
        until_ready(&self.clock, || self.ses.check()).await;
    }

    async fn secrets_ready(&self) {
        until_ready(&self.clock, || self.secrets.check()).await;
    }
}

struct LimitedIam {
    inner: Arc<dyn IamPort>,
    limiter: Arc<Direct>,
    clock: TokioClock,
}

impl LimitedIam {
    async fn ready(&self) {
        until_ready(&self.clock, || self.limiter.check()).await;
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
    limits: Limits,
}

#[async_trait]
impl SecretsPort for LimitedSecrets {
    // Reads have their own, much larger quota: not limited here.
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        self.inner.describe(name).await
    }
    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        self.limits.secrets_ready().await;
        self.inner.store(req).await
    }
    async fn put_resource_policy(&self, arn: &str, document: &str) -> Result<(), AwsError> {
        self.limits.secrets_ready().await;
        self.inner.put_resource_policy(arn, document).await
    }
}

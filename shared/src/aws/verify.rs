//! Checks that a new key works before keyrotor records it: STS
//! `GetCallerIdentity` signed with the new key must answer with the user's
//! ARN. New IAM keys take a few seconds to reach every endpoint, so an
//! "invalid token" answer is retried for a while.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::identity::IdentityCache;
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use secrecy::{ExposeSecret, SecretString};

use super::sessions::member_retry_partition;
use crate::error::AwsError;

/// Verifies a new access key.
#[async_trait]
pub trait KeyVerifier: Send + Sync {
    /// `Ok(())` once the key signs a request as `user_arn`.
    async fn verify(
        &self,
        key_id: &str,
        secret: &SecretString,
        user_arn: &str,
    ) -> Result<(), AwsError>;
}

/// The waits between verification attempts (see [`until_propagated`]):
/// every second for the first seconds, when a new key usually becomes
/// valid, then backing off; 30 s in all, longer than IAM's usual
/// propagation. Polling by the second rather than doubling from the start
/// saves a rotation about a second on average (the scale simulator's
/// figure), at the price of a few more `GetCallerIdentity` calls.
pub const VERIFY_WAITS: [Duration; 9] = [
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(10),
];

/// [`KeyVerifier`] over STS.
#[derive(Clone)]
pub struct StsVerifier {
    base: SdkConfig,
    waits: &'static [Duration],
}

impl StsVerifier {
    /// Verifies through STS with the endpoint and region of `base`, waiting
    /// [`VERIFY_WAITS`] between attempts.
    pub fn new(base: &SdkConfig) -> StsVerifier {
        StsVerifier {
            base: base.clone(),
            waits: &VERIFY_WAITS,
        }
    }
}

#[async_trait]
impl KeyVerifier for StsVerifier {
    async fn verify(
        &self,
        key_id: &str,
        secret: &SecretString,
        user_arn: &str,
    ) -> Result<(), AwsError> {
        let creds = Credentials::new(
            key_id,
            secret.expose_secret(),
            None,
            None,
            "keyrotor-verify",
        );
        // Fixed credentials need no cache, and passing them through the
        // base's would evict the sessions cached there (see `AwsContext`).
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .identity_cache(IdentityCache::no_cache())
            .build();
        // The caller's account's STS quota, so its own retry partition.
        let account_id = user_arn.split(':').nth(4).unwrap_or_default();
        let client = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&config)
                .retry_partition(member_retry_partition("sts", account_id))
                .build(),
        );
        until_propagated(self.waits, key_id, user_arn, || async {
            client
                .get_caller_identity()
                .send()
                .await
                .map(|out| out.arn.unwrap_or_default())
                .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))
        })
        .await
    }
}

/// Calls `caller_identity` (a `GetCallerIdentity` signed with the new key,
/// answering the ARN it signs as) until it answers `user_arn`: at once, then
/// after each of `waits`. An "invalid token" or denied answer means the key
/// has not propagated yet; another identity is an error at once. Shared by
/// the STS adapter and the load simulator, so that both wait the same way.
pub async fn until_propagated<F, Fut>(
    waits: &[Duration],
    key_id: &str,
    user_arn: &str,
    mut caller_identity: F,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, AwsError>>,
{
    let mut waits = waits.iter();
    loop {
        let not_yet = match caller_identity().await {
            Ok(arn) if arn == user_arn => return Ok(()),
            Ok(arn) => {
                return Err(AwsError::Service {
                    op: "sts:GetCallerIdentity",
                    code: "WrongIdentity".into(),
                    message: format!("new key {key_id} signs as {arn}, expected {user_arn}"),
                    source: None,
                })
            }
            // A new key is "invalid" until it has propagated.
            Err(err) if err.is_retryable() || matches!(err, AwsError::AccessDenied { .. }) => err,
            Err(err) => return Err(err),
        };
        // No wait after the last attempt: the answer is known.
        match waits.next() {
            Some(wait) => tokio::time::sleep(*wait).await,
            None => return Err(not_yet),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const ARN: &str = "arn:aws:iam::111122223333:user/app";

    fn not_yet() -> AwsError {
        AwsError::AccessDenied {
            op: "sts:GetCallerIdentity",
            message: "InvalidClientTokenId".into(),
            source: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_is_polled_every_second_until_it_works() {
        let start = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let valid_from = Duration::from_millis(2_500);
        until_propagated(&VERIFY_WAITS, "AKIA1", ARN, || {
            calls.set(calls.get() + 1);
            let ready = start.elapsed() >= valid_from;
            async move {
                if ready {
                    Ok(ARN.to_string())
                } else {
                    Err(not_yet())
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(calls.get(), 4, "at 0, 1, 2 and 3 s");
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_key_that_never_works_fails_after_the_last_attempt_without_a_last_wait() {
        let start = tokio::time::Instant::now();
        let calls = Cell::new(0);
        let err = until_propagated(&VERIFY_WAITS, "AKIA1", ARN, || {
            calls.set(calls.get() + 1);
            async { Err(not_yet()) }
        })
        .await
        .unwrap_err();
        assert!(matches!(err, AwsError::AccessDenied { .. }), "{err}");
        assert_eq!(calls.get(), VERIFY_WAITS.len() + 1);
        assert_eq!(start.elapsed(), VERIFY_WAITS.iter().sum::<Duration>());
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn another_identity_is_an_error_at_once() {
        let calls = Cell::new(0);
        let err = until_propagated(&VERIFY_WAITS, "AKIA1", ARN, || {
            calls.set(calls.get() + 1);
            async { Ok("arn:aws:iam::111122223333:user/other".to_string()) }
        })
        .await
        .unwrap_err();
        assert!(err.to_string().contains("signs as"), "{err}");
        assert_eq!(calls.get(), 1);
    }
}

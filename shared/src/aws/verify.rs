//! Checks that a new key works before keyrotor records it: STS
//! `GetCallerIdentity` signed with the new key must answer with the user's
//! ARN. New IAM keys take a few seconds to reach every endpoint, so an
//! "invalid token" answer is retried for a while.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_credential_types::Credentials;
use secrecy::{ExposeSecret, SecretString};

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

/// Verification attempts (see [`until_propagated`]).
pub const VERIFY_ATTEMPTS: u32 = 6;
/// The first wait between attempts; it doubles.
pub const VERIFY_FIRST_DELAY: Duration = Duration::from_secs(1);

/// [`KeyVerifier`] over STS.
#[derive(Clone)]
pub struct StsVerifier {
    base: SdkConfig,
    attempts: u32,
    first_delay: Duration,
}

impl StsVerifier {
    /// Verifies through STS with the endpoint and region of `base`; tries up
    /// to 6 times, 1 s apart at first and doubling (about 30 s in all, longer
    /// than IAM's usual propagation delay).
    pub fn new(base: &SdkConfig) -> StsVerifier {
        StsVerifier {
            base: base.clone(),
            attempts: VERIFY_ATTEMPTS,
            first_delay: VERIFY_FIRST_DELAY,
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
        let config = self
            .base
            .to_builder()
            .credentials_provider(SharedCredentialsProvider::new(creds))
            .build();
        let client = aws_sdk_sts::Client::new(&config);
        until_propagated(
            self.attempts,
            self.first_delay,
            key_id,
            user_arn,
            || async {
                client
                    .get_caller_identity()
                    .send()
                    .await
                    .map(|out| out.arn.unwrap_or_default())
                    .map_err(|e| AwsError::from_sdk("sts:GetCallerIdentity", e))
            },
        )
        .await
    }
}

/// Calls `caller_identity` (a `GetCallerIdentity` signed with the new key,
/// answering the ARN it signs as) until it answers `user_arn`: up to
/// `attempts` times, `first_delay` apart at first and doubling. An "invalid
/// token" or denied answer means the key has not propagated yet; another
/// identity is an error at once. Shared by the STS adapter and the load
/// simulator, so that both wait the same way.
pub async fn until_propagated<F, Fut>(
    attempts: u32,
    first_delay: Duration,
    key_id: &str,
    user_arn: &str,
    mut caller_identity: F,
) -> Result<(), AwsError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<String, AwsError>>,
{
    let mut delay = first_delay;
    let mut last = None;
    for _ in 0..attempts {
        match caller_identity().await {
            Ok(arn) if arn == user_arn => return Ok(()),
            Ok(arn) => {
                return Err(AwsError::Service {
                    op: "sts:GetCallerIdentity",
                    code: "WrongIdentity".into(),
                    message: format!("new key {key_id} signs as {arn}, expected {user_arn}"),
                })
            }
            Err(err) => {
                // A new key is "invalid" until it has propagated.
                if !(err.is_retryable() || matches!(err, AwsError::AccessDenied { .. })) {
                    return Err(err);
                }
                last = Some(err);
            }
        }
        tokio::time::sleep(delay).await;
        delay *= 2;
    }
    Err(last.unwrap_or(AwsError::Transport {
        op: "sts:GetCallerIdentity",
        message: "no answer".into(),
    }))
}

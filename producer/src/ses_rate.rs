//! The fleet's SES rate for `KEYROTOR_SES_FLEET_RATE=auto`: read from SES
//! once a run and recorded on the table's pace item, where the workers read
//! it. SES answers its account calls about once a second, so a thousand
//! Lambda environments must not each ask; the producer is one process.

use std::num::NonZeroU32;
use std::sync::Arc;

use async_trait::async_trait;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::pace::{fleet_rate_of, RecordedRate, SendQuota};

/// [`SendQuota`] over SESv2 `GetAccount`.
pub struct SesAccount {
    client: aws_sdk_sesv2::Client,
}

impl SesAccount {
    /// SES's account answers through `client`.
    pub fn new(client: aws_sdk_sesv2::Client) -> SesAccount {
        SesAccount { client }
    }
}

#[async_trait]
impl SendQuota for SesAccount {
    async fn max_send_rate(&self) -> Result<f64, AwsError> {
        let account = self
            .client
            .get_account()
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("sesv2:GetAccount", e))?;
        account
            .send_quota
            .map(|quota| quota.max_send_rate)
            .ok_or_else(|| AwsError::Service {
                op: "sesv2:GetAccount",
                code: "MissingSendQuota".into(),
                message: "SES answered without a SendQuota".into(),
                source: None,
            })
    }
}

/// Reads SES's sending rate and records it as the fleet's.
pub struct SesRateRecorder {
    quota: Arc<dyn SendQuota>,
    rates: Arc<dyn RecordedRate>,
}

impl SesRateRecorder {
    /// Reads from `quota`, records in `rates`.
    pub fn new(quota: Arc<dyn SendQuota>, rates: Arc<dyn RecordedRate>) -> SesRateRecorder {
        SesRateRecorder { quota, rates }
    }

    /// Records SES's rate now; the rate recorded, or `None` (logged) when
    /// either call failed. A failure does not stop the run: the workers
    /// keep the rate recorded last, or send at `KEYROTOR_SES_RATE` each
    /// when there is none.
    pub async fn record(&self) -> Option<NonZeroU32> {
        let rate = match self.quota.max_send_rate().await {
            Ok(rate) => fleet_rate_of(rate),
            Err(error) => {
                tracing::warn!(
                    %error,
                    "KEYROTOR_SES_FLEET_RATE=auto: SES's sending rate could not be read (the producer needs ses:GetAccount); workers keep the rate recorded last, or send at KEYROTOR_SES_RATE each"
                );
                return None;
            }
        };
        match self.rates.record_rate(rate).await {
            Ok(()) => {
                tracing::info!(rate = rate.get(), "the fleet's SES rate, from SES");
                Some(rate)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    rate = rate.get(),
                    "KEYROTOR_SES_FLEET_RATE=auto: SES's sending rate could not be recorded in the table; workers keep the rate recorded last, or send at KEYROTOR_SES_RATE each"
                );
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// SES answering `rate`, or refusing (no `ses:GetAccount`).
    struct Ses(Option<f64>);

    #[async_trait]
    impl SendQuota for Ses {
        async fn max_send_rate(&self) -> Result<f64, AwsError> {
            self.0.ok_or_else(|| AwsError::AccessDenied {
                op: "sesv2:GetAccount",
                message: "not authorized to perform ses:GetAccount".into(),
                source: None,
            })
        }
    }

    /// The table's pace item: the rates recorded (refusing every write
    /// when `down`).
    #[derive(Default)]
    struct Recorded {
        rates: Mutex<Vec<u32>>,
        down: bool,
    }

    #[async_trait]
    impl RecordedRate for Recorded {
        async fn rate(&self) -> Result<Option<NonZeroU32>, AwsError> {
            unreachable!("the producer only records")
        }

        async fn record_rate(&self, rate: NonZeroU32) -> Result<(), AwsError> {
            if self.down {
                return Err(AwsError::Throttled {
                    op: "dynamodb:UpdateItem",
                    message: "Rate exceeded".into(),
                    source: None,
                });
            }
            self.rates.lock().unwrap().push(rate.get());
            Ok(())
        }
    }

    #[tokio::test]
    async fn ses_rate_is_recorded_rounded_down_and_a_refusal_records_nothing() {
        let table = Arc::new(Recorded::default());
        let recorder = SesRateRecorder::new(Arc::new(Ses(Some(14.5))), table.clone());
        assert_eq!(recorder.record().await.map(NonZeroU32::get), Some(14));
        assert_eq!(*table.rates.lock().unwrap(), vec![14]);

        let refused = SesRateRecorder::new(Arc::new(Ses(None)), table.clone());
        assert_eq!(refused.record().await, None, "the run goes on");
        assert_eq!(
            *table.rates.lock().unwrap(),
            vec![14],
            "the last rate stays"
        );

        let down = Arc::new(Recorded {
            down: true,
            ..Recorded::default()
        });
        let unrecorded = SesRateRecorder::new(Arc::new(Ses(Some(20.0))), down);
        assert_eq!(
            unrecorded.record().await,
            None,
            "not recorded: the run goes on"
        );
    }
}

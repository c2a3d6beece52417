//! The fleet's SES pace (`KEYROTOR_SES_FLEET_RATE`): one `CONTROL`/`SES_PACE`
//! item holding the next free send time, which every worker advances by one
//! interval for each email it sends (a digest takes all of its emails' times
//! at once). A worker sends at the times it took, so the whole fleet sends
//! at the rate however many processes or Lambda environments finish
//! accounts at once; SES's own throttling (and the SDK's backoff, which
//! leaves SES idle) is then the exception.
//!
//! Each take is one conditional `UpdateItem`, two when the pace went idle
//! or busy since this process last looked: the write that fails returns the
//! item (`ReturnValuesOnConditionCheckFailure`), so no read is needed.
//!
//! With `KEYROTOR_SES_FLEET_RATE=auto` (the default) the rate is SES's own:
//! the producer reads it (`sesv2:GetAccount`, which SES answers about once a
//! second, so not from every worker) and records it on the same item each
//! run ([`RecordedRate`]); workers read it from there.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};

use super::attr::{get_item, n, num, time};
use super::keys::ItemKey;
use crate::error::AwsError;

/// The attribute holding the next free send time, in epoch milliseconds.
const NEXT_AT: &str = "next_at_ms";

/// The attribute holding the recorded sending rate (emails a second).
const RATE: &str = "max_send_rate";

/// The attribute holding when that rate was read from SES: for operators
/// (a rate read long ago means the producer could not read it since, and
/// logged why); workers use the last rate recorded however old.
const RATE_READ_AT: &str = "rate_read_at";

/// Writes one take may lose to other workers before it gives up (each
/// loss means another worker took times meanwhile).
const ROUNDS: usize = 4;

/// What a take gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Send the first email at this time (now or later), each next one an
    /// interval later: these times are this caller's alone.
    At(DateTime<Utc>),
    /// The next free time is further away than the caller would wait (or
    /// other workers took every time this one tried for); none was taken.
    Full {
        /// The next free send time at the earliest (what this process saw
        /// last: other workers may have taken more since).
        next: DateTime<Utc>,
    },
}

/// The fleet's send times.
#[async_trait]
pub trait SendPace: Send + Sync {
    /// Takes the next `count` free send times, `interval` apart, the first
    /// `interval` after the last one taken (now, when the pace is idle),
    /// unless that first is more than `horizon` away.
    async fn take(
        &self,
        interval: Duration,
        count: usize,
        horizon: Duration,
    ) -> Result<Slot, AwsError>;
}

/// The fleet's SES sending rate, as the producer last recorded it on the
/// pace item (`KEYROTOR_SES_FLEET_RATE=auto`).
#[async_trait]
pub trait RecordedRate: Send + Sync {
    /// The emails a second last recorded, if any.
    async fn rate(&self) -> Result<Option<NonZeroU32>, AwsError>;

    /// Records `rate` as the fleet's, read from SES now.
    async fn record_rate(&self, rate: NonZeroU32) -> Result<(), AwsError>;
}

/// The hub account's SES sending rate, as SES reports it.
#[async_trait]
pub trait SendQuota: Send + Sync {
    /// SES's `SendQuota.MaxSendRate`: emails a second the account may send.
    async fn max_send_rate(&self) -> Result<f64, AwsError>;
}

/// The whole emails a second `max_send_rate` allows the fleet (1 to
/// 1,000, the range `KEYROTOR_SES_FLEET_RATE` takes): rounded down, so the
/// fleet stays at or under SES's rate, and at least 1, SES's sandbox rate.
pub fn fleet_rate_of(max_send_rate: f64) -> NonZeroU32 {
    let whole = if max_send_rate.is_finite() {
        max_send_rate.floor().clamp(1.0, 1000.0) as u32
    } else {
        1
    };
    NonZeroU32::new(whole).unwrap_or(NonZeroU32::MIN)
}

/// [`SendPace`] over the state table.
pub struct PaceStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// The next free time this process last saw (epoch ms): whether to try
    /// the busy pace's write or the idle one's first.
    seen: AtomicI64,
}

impl PaceStore {
    /// The pace in `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: impl Into<String>) -> PaceStore {
        PaceStore {
            client,
            table: table.into(),
            seen: AtomicI64::new(0),
        }
    }

    /// One conditional write: `Ok(Ok(slot))` when it took `slot`,
    /// `Ok(Err(next))` with the item's next free time when its condition
    /// failed.
    async fn write(
        &self,
        update: &str,
        condition: &str,
        values: Vec<(&str, i64)>,
    ) -> Result<Result<i64, i64>, AwsError> {
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::ses_pace().attributes()))
            .update_expression(update)
            .condition_expression(condition)
            .expression_attribute_names("#next", NEXT_AT)
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (name, value) in values {
            request = request.expression_attribute_values(name, n(value));
        }
        match request.send().await {
            Ok(out) => Ok(Ok(num(&out.attributes.unwrap_or_default(), NEXT_AT))),
            Err(SdkError::ServiceError(e)) => match e.err() {
                UpdateItemError::ConditionalCheckFailedException(failed) => {
                    let item: HashMap<String, AttributeValue> =
                        failed.item.clone().unwrap_or_default();
                    Ok(Err(num(&item, NEXT_AT)))
                }
                _ => Err(AwsError::from_sdk(
                    "dynamodb:UpdateItem",
                    SdkError::ServiceError(e),
                )),
            },
            Err(e) => Err(AwsError::from_sdk("dynamodb:UpdateItem", e)),
        }
    }
}

#[async_trait]
impl SendPace for PaceStore {
    async fn take(
        &self,
        interval: Duration,
        count: usize,
        horizon: Duration,
    ) -> Result<Slot, AwsError> {
        let step = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
        let span = step
            .max(1)
            .saturating_mul(i64::try_from(count.max(1)).unwrap_or(i64::MAX));
        let reach = i64::try_from(horizon.as_millis()).unwrap_or(i64::MAX);
        let mut next = self.seen.load(Ordering::Relaxed);
        for _ in 0..ROUNDS {
            let now = crate::time::now().timestamp_millis();
            let latest = now.saturating_add(reach);
            if next > latest {
                break;
            }
            let taken = if next > now {
                // Busy: the next free times are ours, and the one after
                // them the next caller's.
                self.write(
                    "SET #next = #next + :span",
                    "#next > :now AND #next <= :latest",
                    vec![(":span", span), (":now", now), (":latest", latest)],
                )
                .await?
            } else {
                // Idle (or never used): now is ours.
                self.write(
                    "SET #next = :after",
                    "attribute_not_exists(#next) OR #next <= :now",
                    vec![(":after", now + span), (":now", now)],
                )
                .await?
                .map(|_| now)
            };
            match taken {
                Ok(at) => {
                    self.seen.store(at + span, Ordering::Relaxed);
                    return Ok(Slot::At(millis(at)));
                }
                // Someone moved it; try again with what it says now.
                Err(seen) => {
                    next = seen;
                    self.seen.store(seen, Ordering::Relaxed);
                }
            }
        }
        Ok(Slot::Full {
            next: millis(next.max(crate::time::now().timestamp_millis())),
        })
    }
}

#[async_trait]
impl RecordedRate for PaceStore {
    async fn rate(&self) -> Result<Option<NonZeroU32>, AwsError> {
        let item = get_item(&self.client, &self.table, &ItemKey::ses_pace()).await?;
        Ok(item
            .map(|item| num(&item, RATE))
            .and_then(|rate| u32::try_from(rate).ok())
            .and_then(NonZeroU32::new))
    }

    async fn record_rate(&self, rate: NonZeroU32) -> Result<(), AwsError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(ItemKey::ses_pace().attributes()))
            .update_expression("SET #rate = :rate, #read = :read")
            .expression_attribute_names("#rate", RATE)
            .expression_attribute_names("#read", RATE_READ_AT)
            .expression_attribute_values(":rate", n(i64::from(rate.get())))
            .expression_attribute_values(":read", time(&crate::time::now()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("dynamodb:UpdateItem", e))?;
        Ok(())
    }
}

fn millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_else(crate::time::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_rate_is_ses_rate_rounded_down_within_1_to_1000() {
        let rate = |r: f64| fleet_rate_of(r).get();
        assert_eq!(rate(14.0), 14);
        assert_eq!(
            rate(14.9),
            14,
            "rounded down: the fleet stays under SES's rate"
        );
        assert_eq!(rate(1.0), 1);
        assert_eq!(rate(0.5), 1, "at least SES's sandbox rate");
        assert_eq!(rate(-1.0), 1);
        assert_eq!(rate(f64::NAN), 1);
        assert_eq!(rate(50_000.0), 1000);
    }
}

//! Sending on the fleet's SES pace (`KEYROTOR_SES_FLEET_RATE`): a digest
//! books its emails' send times from the state table's [`SendPace`] item,
//! all at once, and each email waits for its time; so the digests of
//! accounts that finish together leave the fleet at the rate SES allows,
//! instead of meeting its throttling together and backing off for seconds
//! while SES idles.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use keyrotor_shared::aws::Limits;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::pace::{RecordedRate, SendPace, Slot};
use tokio::time::Instant;

use super::mailer::Booking;
use super::{Mailer, RenderedEmail};

/// The furthest a digest's first email waits for its time. Beyond it
/// nothing is booked or sent now, and the digest is retried with its
/// message (10-40 s later), so that no worker holds a message, or a Lambda
/// invocation of the stack's shortest timeout (60 s), for long; 30 s at 14
/// a second still keeps 420 emails lined up, more than SES sends before
/// those retries come back.
pub const PACE_HORIZON: Duration = Duration::from_secs(30);

/// How long a process keeps the rate it read from the pace item
/// (`KEYROTOR_SES_FLEET_RATE=auto`): the producer records it once a run,
/// and a raised SES quota reaches every worker within this.
pub const RATE_KEPT: Duration = Duration::from_secs(600);

/// How long a process keeps having found no rate recorded (or failed to
/// read it) before it reads again.
pub const NO_RATE_KEPT: Duration = Duration::from_secs(60);

/// A [`Mailer`] whose digests book their emails' times on the fleet's pace.
pub struct PacedMailer {
    inner: Arc<dyn Mailer>,
    pace: Arc<dyn SendPace>,
    rate: Rate,
}

/// Where a [`PacedMailer`]'s rate comes from.
enum Rate {
    /// `KEYROTOR_SES_FLEET_RATE=N`: this interval between two emails.
    Fixed(Duration),
    /// `auto`: the rate the producer recorded from SES; while there is
    /// none, each process sends at its own `KEYROTOR_SES_RATE` (`limits`).
    Recorded {
        rates: Arc<dyn RecordedRate>,
        limits: Limits,
        /// The interval last read (`None`: no rate recorded) and when.
        seen: Mutex<Option<(Instant, Option<Duration>)>>,
    },
}

/// The interval between two emails at `rate` a second, rounded up to a
/// whole millisecond so that the fleet stays at or under the rate.
fn interval_of(rate: NonZeroU32) -> Duration {
    Duration::from_millis(1000u64.div_ceil(u64::from(rate.get())))
}

impl PacedMailer {
    /// `inner`, at `rate` emails a second across every worker sharing
    /// `pace`.
    pub fn new(inner: Arc<dyn Mailer>, pace: Arc<dyn SendPace>, rate: NonZeroU32) -> PacedMailer {
        PacedMailer {
            inner,
            pace,
            rate: Rate::Fixed(interval_of(rate)),
        }
    }

    /// `inner`, at the rate recorded in `rates` across every worker sharing
    /// `pace`; at the process's own rate (`limits`) while none is recorded.
    pub fn recorded(
        inner: Arc<dyn Mailer>,
        pace: Arc<dyn SendPace>,
        rates: Arc<dyn RecordedRate>,
        limits: Limits,
    ) -> PacedMailer {
        PacedMailer {
            inner,
            pace,
            rate: Rate::Recorded {
                rates,
                limits,
                seen: Mutex::new(None),
            },
        }
    }

    /// The interval between two emails on the fleet's pace, or `None` when
    /// no rate is recorded: read again once what was read last is stale.
    async fn interval(&self) -> Option<Duration> {
        let (rates, seen) = match &self.rate {
            Rate::Fixed(interval) => return Some(*interval),
            Rate::Recorded { rates, seen, .. } => (rates, seen),
        };
        let now = Instant::now();
        if let Some((at, interval)) = *seen.lock().expect("not poisoned") {
            let kept = if interval.is_some() {
                RATE_KEPT
            } else {
                NO_RATE_KEPT
            };
            if now < at + kept {
                return interval;
            }
        }
        let interval = match rates.rate().await {
            Ok(Some(rate)) => Some(interval_of(rate)),
            Ok(None) => {
                tracing::warn!(
                    "KEYROTOR_SES_FLEET_RATE=auto: no SES rate recorded yet (the producer records it each run); sending at KEYROTOR_SES_RATE in this process"
                );
                None
            }
            Err(error) => {
                tracing::warn!(%error, "KEYROTOR_SES_FLEET_RATE=auto: the recorded SES rate could not be read; sending at KEYROTOR_SES_RATE in this process");
                None
            }
        };
        *seen.lock().expect("not poisoned") = Some((now, interval));
        interval
    }

    /// The process's own rate limits, when its emails are not on the
    /// fleet's pace (`auto` with no rate recorded).
    fn own_limits(&self) -> Option<&Limits> {
        match &self.rate {
            Rate::Recorded { limits, seen, .. } => {
                let unpaced = seen
                    .lock()
                    .expect("not poisoned")
                    .is_none_or(|(_, interval)| interval.is_none());
                unpaced.then_some(limits)
            }
            Rate::Fixed(_) => None,
        }
    }
}

#[async_trait]
impl Mailer for PacedMailer {
    /// Sends at once when the digest waited for the time it booked, else
    /// at the process's own rate.
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        if let Some(limits) = self.own_limits() {
            limits.ses_ready().await;
        }
        self.inner.send(from, to, email).await
    }

    async fn book(&self, emails: usize) -> Result<Booking, AwsError> {
        let Some(interval) = self.interval().await else {
            return Ok(Booking::default());
        };
        match self.pace.take(interval, emails, PACE_HORIZON).await? {
            Slot::At(first) => Ok(Booking::at(first, interval)),
            Slot::Full { next } => Err(AwsError::Throttled {
                op: "sesv2:SendEmail",
                message: format!(
                    "no send time free within {} s on the fleet's pace (KEYROTOR_SES_FLEET_RATE): the next is {next}",
                    PACE_HORIZON.as_secs()
                ),
                source: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use chrono::{DateTime, Utc};
    use keyrotor_shared::domain::{Mode, Outcome};

    use super::*;
    use crate::digest::fixtures::{digest, line};
    use crate::digest::{send_digest, DigestError, Templates};

    /// A pace handing out the given answers, recording what was asked.
    struct Scripted {
        slots: Mutex<Vec<Slot>>,
        asked: Mutex<Vec<(Duration, usize)>>,
    }

    #[async_trait]
    impl SendPace for Scripted {
        async fn take(
            &self,
            interval: Duration,
            count: usize,
            horizon: Duration,
        ) -> Result<Slot, AwsError> {
            assert_eq!(horizon, PACE_HORIZON);
            self.asked.lock().unwrap().push((interval, count));
            Ok(self.slots.lock().unwrap().remove(0))
        }
    }

    /// A mailer recording when each email went out.
    #[derive(Default)]
    struct Clocked(Mutex<Vec<(String, DateTime<Utc>)>>);

    #[async_trait]
    impl Mailer for Clocked {
        async fn send(&self, _: &str, to: &str, _: &RenderedEmail) -> Result<(), AwsError> {
            let now = keyrotor_shared::time::now();
            self.0.lock().unwrap().push((to.to_string(), now));
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_digest_books_its_emails_at_once_and_a_full_pace_sends_none() {
        keyrotor_shared::time::simulate_clock_on_this_thread(Utc::now());
        let start = keyrotor_shared::time::now();
        let first = start + chrono::Duration::seconds(7);
        let pace = Arc::new(Scripted {
            slots: Mutex::new(vec![
                Slot::At(first),
                Slot::Full {
                    next: start + chrono::Duration::seconds(45),
                },
            ]),
            asked: Mutex::default(),
        });
        let sent = Arc::new(Clocked::default());
        let mailer = PacedMailer::new(sent.clone(), pace.clone(), NonZeroU32::new(14).unwrap());
        let templates = Templates::load(None).unwrap();
        // The account owner's email, and two user owners'.
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Held, Some("alice@example.com")),
                line("b", Outcome::Warned, Some("bob@example.com")),
            ],
        );
        let n = send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(n, 3);
        let times = sent.0.lock().unwrap().clone();
        assert_eq!(times.len(), 3, "{times:?}");
        // 1000 / 14 = 71.4 ms, rounded up so the fleet stays under the rate.
        let interval = chrono::Duration::milliseconds(72);
        for (i, (to, at)) in times.iter().enumerate() {
            let due = first + interval * i32::try_from(i).unwrap();
            assert!(*at >= due, "{to} sent at {at}, before its time {due}");
            assert!(
                *at - due < chrono::Duration::milliseconds(5),
                "{to} at {at}"
            );
        }

        // No time free within the horizon: nothing is sent, and the digest
        // fails as throttled, for its message to be retried.
        let err = send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap_err();
        match &err {
            DigestError::Send {
                sent,
                failed,
                first,
                ..
            } => {
                assert_eq!((*sent, *failed), (0, 3));
                assert!(matches!(first, AwsError::Throttled { .. }), "{first}");
                assert!(first.to_string().contains("KEYROTOR_SES_FLEET_RATE"));
            }
            other => panic!("{other}"),
        }
        assert_eq!(sent.0.lock().unwrap().len(), 3, "nothing more was sent");
        assert_eq!(
            *pace.asked.lock().unwrap(),
            vec![(Duration::from_millis(72), 3); 2],
            "one take a digest, for all its emails"
        );
    }

    /// A recorded rate, counting its reads.
    struct Recorded {
        rate: Option<NonZeroU32>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Recorded {
        fn new(rate: Option<u32>) -> Arc<Recorded> {
            Arc::new(Recorded {
                rate: rate.and_then(NonZeroU32::new),
                reads: Default::default(),
            })
        }

        fn reads(&self) -> usize {
            self.reads.load(std::sync::atomic::Ordering::Relaxed)
        }
    }

    #[async_trait]
    impl RecordedRate for Recorded {
        async fn rate(&self) -> Result<Option<NonZeroU32>, AwsError> {
            self.reads
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(self.rate)
        }

        async fn record_rate(&self, _: NonZeroU32) -> Result<(), AwsError> {
            unreachable!("workers only read the rate")
        }
    }

    /// Each email's time after the first's, in milliseconds.
    fn gaps(sent: &Clocked) -> Vec<i64> {
        let times = sent.0.lock().unwrap();
        times
            .iter()
            .map(|(_, at)| (*at - times[0].1).num_milliseconds())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn on_auto_digests_book_at_the_recorded_rate_or_without_one_send_at_the_process_rate() {
        keyrotor_shared::time::simulate_clock_on_this_thread(Utc::now());
        let templates = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Held, Some("alice@example.com")),
                line("b", Outcome::Warned, Some("bob@example.com")),
            ],
        );
        let one = NonZeroU32::MIN;
        let process_rate = || Limits::with(one, one, one, one);

        // Recorded: 20 a second, so 50 ms apart; the rate is read once for
        // two digests.
        let now = keyrotor_shared::time::now();
        let pace = Arc::new(Scripted {
            slots: Mutex::new(vec![Slot::At(now), Slot::At(now)]),
            asked: Mutex::default(),
        });
        let rates = Recorded::new(Some(20));
        let sent = Arc::new(Clocked::default());
        let mailer =
            PacedMailer::recorded(sent.clone(), pace.clone(), rates.clone(), process_rate());
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(
            gaps(&sent),
            vec![0, 50, 100],
            "on the fleet's pace, not 1 a second"
        );
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(
            *pace.asked.lock().unwrap(),
            vec![(Duration::from_millis(50), 3); 2]
        );
        assert_eq!(rates.reads(), 1, "kept for {RATE_KEPT:?}");

        // None recorded: nothing is booked, and the process's own rate (1 a
        // second) spaces the emails; the item is read again a minute on.
        let pace = Arc::new(Scripted {
            slots: Mutex::default(),
            asked: Mutex::default(),
        });
        let rates = Recorded::new(None);
        let sent = Arc::new(Clocked::default());
        let mailer =
            PacedMailer::recorded(sent.clone(), pace.clone(), rates.clone(), process_rate());
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        let gaps = gaps(&sent);
        assert!(gaps[1] >= 990 && gaps[2] >= 1990, "{gaps:?}");
        assert!(pace.asked.lock().unwrap().is_empty(), "nothing booked");
        assert_eq!(rates.reads(), 1);
        tokio::time::sleep(NO_RATE_KEPT).await;
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(rates.reads(), 2, "read again after {NO_RATE_KEPT:?}");
    }
}

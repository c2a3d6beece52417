//! Sending on the fleet's SES pace (`KEYROTOR_SES_FLEET_RATE`): a digest
//! books its emails' send times from the state table's [`SendPace`] item,
//! all at once, and each email waits for its time; so the digests of
//! accounts that finish together leave the fleet at the rate SES allows,
//! instead of meeting its throttling together and backing off for seconds
//! while SES idles.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::pace::{SendPace, Slot};

use super::mailer::Booking;
use super::{Mailer, RenderedEmail};

/// The furthest a digest's first email waits for its time. Beyond it
/// nothing is booked or sent now, and the digest is retried with its
/// message (10-40 s later), so that no worker holds a message, or a Lambda
/// invocation of the stack's shortest timeout (60 s), for long; 30 s at 14
/// a second still keeps 420 emails lined up, more than SES sends before
/// those retries come back.
pub const PACE_HORIZON: Duration = Duration::from_secs(30);

/// A [`Mailer`] whose digests book their emails' times on the fleet's pace.
pub struct PacedMailer {
    inner: Arc<dyn Mailer>,
    pace: Arc<dyn SendPace>,
    interval: Duration,
}

impl PacedMailer {
    /// `inner`, at `rate` emails a second across every worker sharing
    /// `pace`. The interval is rounded up to a whole millisecond, so the
    /// fleet stays at or under the rate.
    pub fn new(inner: Arc<dyn Mailer>, pace: Arc<dyn SendPace>, rate: NonZeroU32) -> PacedMailer {
        PacedMailer {
            inner,
            pace,
            interval: Duration::from_millis(1000u64.div_ceil(u64::from(rate.get()))),
        }
    }
}

#[async_trait]
impl Mailer for PacedMailer {
    /// Sends at once: the digest waited for the time it booked.
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        self.inner.send(from, to, email).await
    }

    async fn book(&self, emails: usize) -> Result<Booking, AwsError> {
        match self.pace.take(self.interval, emails, PACE_HORIZON).await? {
            Slot::At(first) => Ok(Booking::at(first, self.interval)),
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
}

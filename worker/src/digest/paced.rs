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
        /// What was read last. Held across a read, so that one digest
        /// reads while the others wait for its answer.
        seen: tokio::sync::Mutex<Seen>,
    },
}

/// The recorded rate as a process last read it.
#[derive(Default)]
struct Seen {
    /// The interval between two emails (`None`: no rate recorded).
    interval: Option<Duration>,
    /// When to read again (`None`: never read).
    read_again: Option<Instant>,
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
                seen: tokio::sync::Mutex::default(),
            },
        }
    }

    /// How a digest's emails go: on the fleet's pace at this interval, or
    /// (`Err`) at the process's own rate, while no rate is recorded.
    async fn interval(&self) -> Result<Duration, &Limits> {
        let (rates, limits, seen) = match &self.rate {
            Rate::Fixed(interval) => return Ok(*interval),
            Rate::Recorded {
                rates,
                limits,
                seen,
            } => (rates, limits, seen),
        };
        let mut seen = seen.lock().await;
        let now = Instant::now();
        if seen.read_again.is_none_or(|at| now >= at) {
            match rates.rate().await {
                Ok(Some(rate)) => {
                    if seen.interval != Some(interval_of(rate)) {
                        tracing::info!(
                            rate = rate.get(),
                            "digests on the fleet's SES pace at the rate the producer read from SES"
                        );
                    }
                    *seen = Seen {
                        interval: Some(interval_of(rate)),
                        read_again: Some(now + RATE_KEPT),
                    };
                }
                Ok(None) => {
                    tracing::warn!(
                        "KEYROTOR_SES_FLEET_RATE=auto: no SES rate recorded yet (the producer records it each run); sending at KEYROTOR_SES_RATE in this process"
                    );
                    *seen = Seen {
                        interval: None,
                        read_again: Some(now + NO_RATE_KEPT),
                    };
                }
                // A failed read keeps the rate read before, if any: the
                // quota did not change because DynamoDB did not answer.
                Err(error) => {
                    tracing::warn!(%error, known = seen.interval.is_some(), "KEYROTOR_SES_FLEET_RATE=auto: the recorded SES rate could not be read; keeping the last one read, or sending at KEYROTOR_SES_RATE in this process when there is none");
                    seen.read_again = Some(now + NO_RATE_KEPT);
                }
            }
        }
        seen.interval.ok_or(limits)
    }
}

#[async_trait]
impl Mailer for PacedMailer {
    /// Sends at once: the digest waited for its turn (see [`Booking`]).
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        self.inner.send(from, to, email).await
    }

    async fn book(&self, emails: usize) -> Result<Booking, AwsError> {
        let interval = match self.interval().await {
            Ok(interval) => interval,
            Err(limits) => return Ok(Booking::limited(limits.clone())),
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

    /// A recorded rate answering its script in turn (the last answer
    /// again once the script is done; `Err` for a failed read), counting
    /// its reads.
    struct Recorded {
        answers: Mutex<Vec<Result<Option<u32>, ()>>>,
        reads: std::sync::atomic::AtomicUsize,
    }

    impl Recorded {
        fn new(answers: Vec<Result<Option<u32>, ()>>) -> Arc<Recorded> {
            Arc::new(Recorded {
                answers: Mutex::new(answers),
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
            let mut answers = self.answers.lock().unwrap();
            let answer = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0]
            };
            answer
                .map(|rate| rate.and_then(NonZeroU32::new))
                .map_err(|()| AwsError::Throttled {
                    op: "dynamodb:GetItem",
                    message: "Rate exceeded".into(),
                    source: None,
                })
        }

        async fn record_rate(&self, _: NonZeroU32) -> Result<(), AwsError> {
            unreachable!("workers only read the rate")
        }
    }

    /// A pace that is never full: every take starts now.
    fn open_pace() -> Arc<Scripted> {
        Arc::new(Scripted {
            slots: Mutex::new(vec![Slot::At(keyrotor_shared::time::now()); 8]),
            asked: Mutex::default(),
        })
    }

    /// The times `to`'s emails went out, in milliseconds after `start`.
    fn times_of(sent: &Clocked, start: DateTime<Utc>, to: &[&str]) -> Vec<i64> {
        sent.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(addr, _)| to.contains(&addr.as_str()))
            .map(|(_, at)| (*at - start).num_milliseconds())
            .collect()
    }

    fn three_emails(owner: &str, users: [&str; 2]) -> crate::digest::AccountDigest {
        let mut d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Held, Some(users[0])),
                line("b", Outcome::Warned, Some(users[1])),
            ],
        );
        d.owner_email = Some(owner.into());
        d
    }

    const A: [&str; 3] = ["owner@example.com", "alice@example.com", "bob@example.com"];

    /// A mailer on `auto` over `pace` and `rates`, whose process sends 1
    /// email a second of its own; and what it sent.
    fn auto_mailer(pace: Arc<Scripted>, rates: Arc<Recorded>) -> (PacedMailer, Arc<Clocked>) {
        let one = NonZeroU32::MIN;
        let sent = Arc::new(Clocked::default());
        let mailer =
            PacedMailer::recorded(sent.clone(), pace, rates, Limits::with(one, one, one, one));
        (mailer, sent)
    }

    #[tokio::test(start_paused = true)]
    async fn on_auto_digests_book_at_the_recorded_rate_or_without_one_send_at_the_process_rate() {
        keyrotor_shared::time::simulate_clock_on_this_thread(Utc::now());
        let templates = Templates::load(None).unwrap();
        let d = three_emails(A[0], [A[1], A[2]]);

        // Recorded: 20 a second, so 50 ms apart; the rate is read once for
        // two digests, and again once it is RATE_KEPT old.
        let pace = open_pace();
        let rates = Recorded::new(vec![Ok(Some(20))]);
        let (mailer, sent) = auto_mailer(pace.clone(), rates.clone());
        let start = keyrotor_shared::time::now();
        for _ in 0..2 {
            send_digest(&mailer, &templates, "k@example.com", &d)
                .await
                .unwrap();
        }
        assert_eq!(
            times_of(&sent, start, &A)[..3],
            [0, 50, 100],
            "on the fleet's pace, not 1 a second"
        );
        assert_eq!(
            *pace.asked.lock().unwrap(),
            vec![(Duration::from_millis(50), 3); 2]
        );
        assert_eq!(rates.reads(), 1, "kept for {RATE_KEPT:?}");
        tokio::time::sleep(RATE_KEPT).await;
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(rates.reads(), 2, "read again after {RATE_KEPT:?}");

        // None recorded: nothing is booked, and the process's own rate (1 a
        // second) spaces the emails; the item is read again a minute on.
        let pace = open_pace();
        let rates = Recorded::new(vec![Ok(None)]);
        let (mailer, sent) = auto_mailer(pace.clone(), rates.clone());
        let start = keyrotor_shared::time::now();
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        let times = times_of(&sent, start, &A);
        assert!(times[1] >= 990 && times[2] >= 1990, "{times:?}");
        assert!(pace.asked.lock().unwrap().is_empty(), "nothing booked");
        assert_eq!(rates.reads(), 1);
        tokio::time::sleep(NO_RATE_KEPT).await;
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(rates.reads(), 2, "read again after {NO_RATE_KEPT:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_read_keeps_the_rate_read_before() {
        keyrotor_shared::time::simulate_clock_on_this_thread(Utc::now());
        let templates = Templates::load(None).unwrap();
        let d = three_emails(A[0], [A[1], A[2]]);
        let pace = open_pace();
        let rates = Recorded::new(vec![Ok(Some(20)), Err(()), Ok(Some(10))]);
        let (mailer, _) = auto_mailer(pace.clone(), rates.clone());
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        tokio::time::sleep(RATE_KEPT).await;
        // The read fails: still on the pace at 20 a second.
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        // A minute on, read again: now 10.
        tokio::time::sleep(NO_RATE_KEPT).await;
        send_digest(&mailer, &templates, "k@example.com", &d)
            .await
            .unwrap();
        assert_eq!(rates.reads(), 3);
        let intervals: Vec<u64> = pace
            .asked
            .lock()
            .unwrap()
            .iter()
            .map(|(interval, _)| interval.as_millis() as u64)
            .collect();
        assert_eq!(intervals, vec![50, 50, 100]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_digest_sends_every_email_the_way_it_booked_when_the_rate_appears_meanwhile() {
        keyrotor_shared::time::simulate_clock_on_this_thread(Utc::now());
        let templates = Templates::load(None).unwrap();
        let rates = Recorded::new(vec![Ok(None), Ok(Some(20))]);
        let (mailer, sent) = auto_mailer(open_pace(), rates.clone());
        // No rate yet; it is read again at NO_RATE_KEPT.
        assert!(mailer.interval().await.is_err());
        tokio::time::sleep(NO_RATE_KEPT - Duration::from_millis(500)).await;
        let start = keyrotor_shared::time::now();
        // Digest A books while no rate is known: at the process's rate,
        // 1 a second. Digest B, a second later, reads the rate (20).
        let a = three_emails(A[0], [A[1], A[2]]);
        let b = three_emails(
            "other@example.com",
            ["carol@example.com", "dave@example.com"],
        );
        let (sent_a, sent_b) = tokio::join!(
            send_digest(&mailer, &templates, "k@example.com", &a),
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                send_digest(&mailer, &templates, "k@example.com", &b).await
            }
        );
        assert_eq!((sent_a.unwrap(), sent_b.unwrap()), (3, 3));
        assert_eq!(rates.reads(), 2, "B read the rate");
        let times = times_of(&sent, start, &A);
        assert!(
            times[1] >= 990 && times[2] >= 1990,
            "A stays at the process's rate after B found the fleet's: {times:?}"
        );
    }
}

//! Sending: the [`Mailer`] port, SESv2 behind it, and a digest's emails
//! sent one recipient at a time (every one tried; each marked as it goes).

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyrotor_shared::error::AwsError;

use super::{plan_emails, AccountDigest, DigestError, RenderedEmail, Templates};

/// Sends one email.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `email` from `from` to the single address `to`.
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError>;

    /// Books the send times of a digest's `emails`, before the first is
    /// sent. By default there are none to book: each is sent at once.
    async fn book(&self, emails: usize) -> Result<Booking, AwsError> {
        let _ = emails;
        Ok(Booking::default())
    }
}

/// When a digest's emails go out: at once, each at a booked time, or each
/// when the process's own SES rate allows. Decided once a digest, when it
/// books, so that all of a digest's emails go out the same way.
#[derive(Clone, Default)]
pub struct Booking {
    when: When,
}

#[derive(Clone, Default)]
enum When {
    /// Each at once.
    #[default]
    Now,
    /// The first email's time and the interval to each next one.
    At(DateTime<Utc>, Duration),
    /// Each when the process's own rate (`KEYROTOR_SES_RATE`) allows.
    Limited(keyrotor_shared::aws::Limits),
}

impl Booking {
    /// Email `i` (from 0) at `first` + `i` x `interval`.
    pub fn at(first: DateTime<Utc>, interval: Duration) -> Booking {
        Booking {
            when: When::At(first, interval),
        }
    }

    /// Each email when `limits`' SES rate allows.
    pub fn limited(limits: keyrotor_shared::aws::Limits) -> Booking {
        Booking {
            when: When::Limited(limits),
        }
    }

    /// Waits until email `i` may go (not at all when nothing was booked).
    pub async fn wait(&self, i: usize) {
        match &self.when {
            When::Now => {}
            When::Limited(limits) => limits.ses_ready().await,
            When::At(first, interval) => {
                let offset = interval.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
                let due =
                    *first + chrono::Duration::from_std(offset).unwrap_or(chrono::Duration::MAX);
                if let Ok(wait) = (due - keyrotor_shared::time::now()).to_std() {
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// [`Mailer`] over SESv2 `SendEmail` (simple content: subject, HTML and
/// text bodies, UTF-8).
#[derive(Debug, Clone)]
pub struct SesMailer {
    client: aws_sdk_sesv2::Client,
}

impl SesMailer {
    /// A mailer sending through `client`.
    pub fn new(client: aws_sdk_sesv2::Client) -> SesMailer {
        SesMailer { client }
    }

    /// A mailer whose SESv2 client is `base` with [`send_retry_config`]
    /// and [`send_retry_partition`].
    pub fn from_base(base: &aws_config::SdkConfig) -> SesMailer {
        SesMailer::new(aws_sdk_sesv2::Client::from_conf(send_client_config(base)))
    }
}

/// The SESv2 client's configuration: `base`, with the digest's retries.
pub fn send_client_config(base: &aws_config::SdkConfig) -> aws_sdk_sesv2::Config {
    aws_sdk_sesv2::config::Builder::from(base)
        .retry_config(send_retry_config())
        .retry_partition(send_retry_partition())
        .build()
}

/// The name of [`send_retry_partition`].
pub const SEND_RETRY_PARTITION: &str = "keyrotor-sesv2-send";

/// A retry partition of the digest's own, whose retries no quota limits.
///
/// The SDK's default partition keeps a retry quota per service and client,
/// meant to stop retry storms against a failing service. SES's throttling is
/// its sending rate, reached whenever accounts finish together, and a pool
/// whose digests were throttled a few hundred times spent that quota: its
/// later sends failed at their first throttling answer and their messages
/// came back 10-40 s later (DECISIONS, "Digest sends retry in a partition
/// of their own"). Each send is still bounded by [`SEND_ATTEMPTS`].
pub fn send_retry_partition() -> aws_sdk_sesv2::config::retry::RetryPartition {
    use aws_sdk_sesv2::config::retry::{RetryPartition, TokenBucket};
    RetryPartition::custom(SEND_RETRY_PARTITION)
        .token_bucket(TokenBucket::unlimited())
        .build()
}

/// `SendEmail` attempts before a digest gives up for this delivery (and
/// its message is retried later).
///
/// More than the other clients' five: SES's sending rate is the hub
/// account's, shared by every worker, and digests bunch up. An account's
/// digest goes out when its last result is in, and in a sweep of many
/// alike accounts they all finish within a minute: on Lambda, a thousand
/// environments each send one at once against a quota of 14 a second. With
/// five attempts (about 15 s of backoff) most of them failed and their
/// messages came back 10, 20, 40 s later, adding minutes to the sweep
/// (`keyrotor-loadtest sim --lambda-max-concurrency 1000`); twelve attempts
/// (about 75 s of jittered backoff, 20 s at most between two) let the
/// bunch drain at SES's own rate. Throttled sends cost no quota.
pub const SEND_ATTEMPTS: u32 = 12;

/// The SESv2 client's retries: adaptive, as the other clients, with
/// [`SEND_ATTEMPTS`].
pub fn send_retry_config() -> aws_config::retry::RetryConfig {
    keyrotor_shared::aws::sessions::retry_config().with_max_attempts(SEND_ATTEMPTS)
}

const SEND_EMAIL: &str = "sesv2:SendEmail";

fn content(data: &str) -> Result<aws_sdk_sesv2::types::Content, AwsError> {
    aws_sdk_sesv2::types::Content::builder()
        .data(data)
        .charset("UTF-8")
        .build()
        .map_err(|e| AwsError::Service {
            op: SEND_EMAIL,
            code: "InvalidRequest".into(),
            message: e.to_string(),
            source: None,
        })
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        use aws_sdk_sesv2::types::{Body, Destination, EmailContent, Message};
        let message = Message::builder()
            .subject(content(&email.subject)?)
            .body(
                Body::builder()
                    .html(content(&email.html)?)
                    .text(content(&email.text)?)
                    .build(),
            )
            .build();
        self.client
            .send_email()
            .from_email_address(from)
            .destination(Destination::builder().to_addresses(to).build())
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk(SEND_EMAIL, e))?;
        Ok(())
    }
}

/// Renders and sends every planned email; returns how many were sent.
/// Every recipient is tried even when one fails; any failure is returned as
/// [`DigestError::Send`] with the numbers sent and failed. A rendering error
/// is returned before anything is sent.
pub async fn send_digest(
    mailer: &dyn Mailer,
    templates: &Templates,
    sender: &str,
    digest: &AccountDigest,
) -> Result<usize, DigestError> {
    send_digest_to(
        mailer,
        templates,
        sender,
        digest,
        &BTreeSet::new(),
        &NoMarker,
    )
    .await
}

/// Remembers each recipient a digest went to, so that a worker taking over
/// an interrupted digest sends only what is missing.
#[async_trait]
pub trait SentMarker: Send + Sync {
    /// Records that the digest reached `to`.
    async fn mark_sent(&self, to: &str) -> Result<(), AwsError>;
}

struct NoMarker;

#[async_trait]
impl SentMarker for NoMarker {
    async fn mark_sent(&self, _: &str) -> Result<(), AwsError> {
        Ok(())
    }
}

/// [`send_digest`] that leaves out the recipients in `already_sent` and
/// marks each new recipient as soon as its email is accepted.
pub async fn send_digest_to(
    mailer: &dyn Mailer,
    templates: &Templates,
    sender: &str,
    digest: &AccountDigest,
    already_sent: &BTreeSet<String>,
    marker: &dyn SentMarker,
) -> Result<usize, DigestError> {
    let mut planned = plan_emails(digest);
    planned.retain(|(to, _)| !already_sent.contains(to));
    let rendered = planned
        .iter()
        .map(|(to, d)| Ok((to.as_str(), templates.render(d)?)))
        .collect::<Result<Vec<_>, DigestError>>()?;
    // A digest whose emails cannot be booked now sends none of them now:
    // its message is retried, under its claim, as for a failed send.
    let booking = match rendered.len() {
        0 => Booking::default(),
        n => mailer.book(n).await.map_err(|first| DigestError::Send {
            account_id: digest.account_id.clone(),
            sent: 0,
            failed: n,
            first,
        })?,
    };
    let mut sent = 0;
    let mut failures = Vec::new();
    for (i, (to, email)) in rendered.iter().enumerate() {
        booking.wait(i).await;
        match mailer.send(sender, to, email).await {
            Ok(()) => {
                sent += 1;
                if let Err(e) = marker.mark_sent(to).await {
                    // The claim's owner may resend to this address after a
                    // takeover; one duplicate email beats a lost digest.
                    tracing::warn!(account_id = %digest.account_id, error = %e, "could not record a digest recipient");
                }
            }
            Err(e) => {
                tracing::warn!(account_id = %digest.account_id, error = %e, "digest email not sent");
                failures.push(e);
            }
        }
    }
    tracing::info!(account_id = %digest.account_id, run_id = %digest.run_id, sent, failed = failures.len(), "digest sent");
    match failures.len() {
        0 => Ok(sent),
        failed => Err(DigestError::Send {
            account_id: digest.account_id.clone(),
            sent,
            failed,
            first: failures.swap_remove(0),
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use keyrotor_shared::domain::{Action, KeyAction, Mode, Outcome};

    use super::*;
    use crate::digest::fixtures::{digest, line, rotated};
    use crate::digest::DigestLine;

    #[test]
    fn sends_retry_in_a_partition_of_their_own_with_the_digest_attempts() {
        let base = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let config = send_client_config(&base);
        let partition = config.retry_partition().expect("a retry partition");
        assert_eq!(partition.to_string(), SEND_RETRY_PARTITION);
        let retry = config.retry_config().expect("a retry config");
        assert_eq!(retry.max_attempts(), SEND_ATTEMPTS);
        assert_eq!(retry.mode(), aws_config::retry::RetryMode::Adaptive);
    }

    #[derive(Default)]
    struct FakeMailer {
        sent: Mutex<Vec<(String, String, RenderedEmail)>>,
        reject: Option<String>,
    }

    #[async_trait]
    impl Mailer for FakeMailer {
        async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
            if self.reject.as_deref() == Some(to) {
                return Err(AwsError::from_code(
                    SEND_EMAIL,
                    "MessageRejected",
                    "Email address is not verified.".into(),
                ));
            }
            self.sent
                .lock()
                .unwrap()
                .push((from.into(), to.into(), email.clone()));
            Ok(())
        }
    }

    #[tokio::test]
    async fn send_digest_sends_each_planned_email() {
        let t = Templates::load(None).unwrap();
        let mut alice = rotated("ci", "AKIAOLD0000000000001", "AKIANEW0000000000001");
        alice.owner_email = Some("alice@example.com".into());
        let d = digest(
            Mode::Enforce,
            vec![
                alice,
                line("idle", Outcome::Noop, Some("bob@example.com")),
                DigestLine {
                    actions: vec![KeyAction::new(Action::Deactivate, "AKIAOLD0000000000002")],
                    ..line("web", Outcome::Deactivated, None)
                },
            ],
        );
        let mailer = FakeMailer::default();
        let sent = send_digest(&mailer, &t, "keyrotor@example.com", &d)
            .await
            .unwrap();
        assert_eq!(sent, 2);
        {
            let calls = mailer.sent.lock().unwrap();
            assert_eq!(calls.len(), 2);
            assert!(calls
                .iter()
                .all(|(from, _, _)| from == "keyrotor@example.com"));
            assert_eq!(calls[0].1, "owner@example.com");
            assert!(calls[0].2.text.contains("ci") && calls[0].2.text.contains("web"));
            assert!(calls[0]
                .2
                .text
                .contains("Key AKIAOLD0000000000002 was deactivated."));
            assert!(!calls[0].2.text.contains("idle"));
            assert_eq!(calls[1].1, "alice@example.com");
            assert!(calls[1].2.text.contains("ci") && !calls[1].2.text.contains("web"));
            assert_eq!(
                calls[1].2.subject,
                "[keyrotor] prod (111122223333): 1 key rotated"
            );
        }

        let quiet = digest(Mode::Enforce, vec![line("idle", Outcome::Noop, None)]);
        let mailer = FakeMailer::default();
        assert_eq!(
            send_digest(&mailer, &t, "k@example.com", &quiet)
                .await
                .unwrap(),
            0
        );
        assert!(mailer.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn one_failed_recipient_does_not_stop_the_others() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![line("a", Outcome::Held, Some("alice@example.com"))],
        );
        let mailer = FakeMailer {
            reject: Some("owner@example.com".into()),
            ..FakeMailer::default()
        };
        let err = send_digest(&mailer, &t, "k@example.com", &d)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                DigestError::Send {
                    sent: 1,
                    failed: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(mailer.sent.lock().unwrap()[0].1, "alice@example.com");
    }
}

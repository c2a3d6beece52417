//! Building a [`Worker`] from the settings: the one wiring shared by
//! `keyrotor work` and the Lambda function.

use std::sync::Arc;

use async_trait::async_trait;
use keyrotor_shared::aws::{AwsContext, Limits};
use keyrotor_shared::config::{SesFleetRate, Settings};
use keyrotor_shared::error::AwsError;
use keyrotor_shared::executor::{Executor, SdkPorts};
use keyrotor_shared::queue::SqsQueue;
use keyrotor_shared::store::breaker::BreakerStore;
use keyrotor_shared::store::pace::{PaceStore, RecordedRate, SendPace};
use keyrotor_shared::store::results::ResultStore;
use keyrotor_shared::store::runs::RunStore;
use keyrotor_shared::store::waves::WaveStore;
use keyrotor_shared::store::DynamoLedger;

use crate::digest::{Booking, Mailer, PacedMailer, RenderedEmail, SesMailer, Templates};
use crate::process::{Email, Worker};

/// A mailer behind the process's SES send rate.
pub struct LimitedMailer {
    inner: Arc<dyn Mailer>,
    limits: Limits,
}

impl LimitedMailer {
    /// `inner`, sending no faster than `limits` allow.
    pub fn new(inner: Arc<dyn Mailer>, limits: Limits) -> LimitedMailer {
        LimitedMailer { inner, limits }
    }
}

#[async_trait]
impl Mailer for LimitedMailer {
    /// Sends at once: the digest waited for the process's rate (see
    /// [`Booking::limited`]).
    async fn send(&self, from: &str, to: &str, email: &RenderedEmail) -> Result<(), AwsError> {
        self.inner.send(from, to, email).await
    }

    async fn book(&self, _emails: usize) -> Result<Booking, AwsError> {
        Ok(Booking::limited(self.limits.clone()))
    }
}

/// The digest's mailer over `ses` (`KEYROTOR_SES_FLEET_RATE`): on the
/// fleet's pace (`pace`) at the rate SES gave the producer (`auto`) or at
/// the one set, which then replaces the process's own `KEYROTOR_SES_RATE`
/// (the fleet's rate bounds every process's already); at the process's rate
/// when `off`, or while no rate is recorded.
pub fn digest_mailer<P: SendPace + RecordedRate + 'static>(
    settings: &Settings,
    ses: Arc<dyn Mailer>,
    limits: Limits,
    pace: Arc<P>,
) -> Arc<dyn Mailer> {
    match settings.ses_fleet_rate {
        SesFleetRate::Fixed(rate) => Arc::new(PacedMailer::new(ses, pace, rate)),
        SesFleetRate::Auto => Arc::new(PacedMailer::recorded(ses, pace.clone(), pace, limits)),
        SesFleetRate::Off => Arc::new(LimitedMailer::new(ses, limits)),
    }
}

/// The worker for these settings, with rate limits, SNS (when
/// `KEYROTOR_TOPIC_ARN` is set) and digest emails (when `KEYROTOR_SENDER`
/// is set).
pub fn build_worker(settings: Arc<Settings>, aws: &AwsContext) -> anyhow::Result<Worker> {
    let base = aws.base();
    let limits = Limits::new(&settings);
    let ddb = aws_sdk_dynamodb::Client::new(base);
    let ports = Arc::new(SdkPorts::new(aws.clone(), &settings).limited(limits.clone()));
    let executor = Arc::new(Executor::new(
        settings.clone(),
        ports,
        Arc::new(DynamoLedger::new(ddb.clone(), settings.table.clone())),
        Executor::process_owner_id(),
    ));
    let events = keyrotor_shared::event_bus::sinks(&settings, base);
    let email = match &settings.sender {
        Some(sender) => Some(Email {
            sender: sender.clone(),
            mailer: digest_mailer(
                &settings,
                Arc::new(SesMailer::from_base(base)),
                limits,
                Arc::new(PaceStore::new(ddb.clone(), settings.table.clone())),
            ),
            templates: Arc::new(Templates::load(settings.template_dir.as_deref())?),
        }),
        None => None,
    };
    let worker = Worker::new(
        settings.clone(),
        executor,
        Arc::new(ResultStore::new(ddb.clone(), settings.table.clone())),
        Arc::new(RunStore::new(ddb.clone(), settings.table.clone())),
        events,
        email,
    )
    .with_breaker(Arc::new(BreakerStore::new(
        ddb.clone(),
        settings.table.clone(),
    )))
    .with_waves(Arc::new(WaveStore::new(ddb, settings.table.clone())));
    Ok(match &settings.queue_url {
        Some(url) => worker.with_queue(Arc::new(SqsQueue::new(
            aws_sdk_sqs::Client::new(base),
            url.clone(),
        ))),
        None => worker,
    })
}

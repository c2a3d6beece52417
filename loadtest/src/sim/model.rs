//! The model of AWS the simulator answers with: per-operation latency that
//! waits on tokio's (paused) clock, per-account IAM and Secrets Manager
//! token buckets that answer throttling when empty, injected 5xx faults, and
//! the SDK's retries of what it retries. One seeded RNG, drawn in call
//! order, makes a run deterministic for its seed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyrotor_shared::error::AwsError;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// The AWS services the simulator answers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// IAM (per-account token bucket).
    Iam,
    /// STS.
    Sts,
    /// Secrets Manager (writes: per-account token bucket).
    Secrets,
    /// DynamoDB.
    Dynamo,
    /// SQS.
    Sqs,
    /// SNS.
    Sns,
    /// SESv2 (account-wide send rate).
    Ses,
    /// Organizations.
    Organizations,
}

impl Service {
    /// The service's prefix in IAM action and error names (`iam`, `sts`, ...).
    pub fn prefix(self) -> &'static str {
        match self {
            Service::Iam => "iam",
            Service::Sts => "sts",
            Service::Secrets => "secretsmanager",
            Service::Dynamo => "dynamodb",
            Service::Sqs => "sqs",
            Service::Sns => "sns",
            Service::Ses => "sesv2",
            Service::Organizations => "organizations",
        }
    }
}

/// Median latencies, as the emulator's waiting-latency mode has them.
#[derive(Debug, Clone)]
pub struct Latency {
    /// Per service, the median wait of one call.
    pub median: HashMap<Service, Duration>,
    /// Spread: each call waits `median × e^(σ·N(0,1))` (log-normal).
    pub sigma: f64,
}

impl Default for Latency {
    fn default() -> Latency {
        let ms = Duration::from_millis;
        Latency {
            median: HashMap::from([
                (Service::Iam, ms(100)),
                (Service::Sts, ms(45)),
                (Service::Secrets, ms(45)),
                (Service::Dynamo, ms(8)),
                (Service::Sqs, ms(15)),
                (Service::Sns, ms(15)),
                (Service::Ses, ms(30)),
                (Service::Organizations, ms(60)),
            ]),
            sigma: 0.35,
        }
    }
}

/// Everything the model is parameterised by.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// IAM calls per second per account (AWS does not publish it; a few).
    pub iam_rps: f64,
    /// Secrets Manager writes per second per account (DESIGN §9: 50).
    pub secrets_write_rps: f64,
    /// SES sends per second for the hub account.
    pub ses_rps: f64,
    /// SQS API calls per second per action on the work queue (DESIGN §9:
    /// 300 per FIFO partition; the hub template's high-throughput FIFO
    /// spreads a busy queue over partitions, modelled as 10).
    pub sqs_api_rps: f64,
    /// Result transactions per second that a run's counter item takes:
    /// one item's partition writes 1,000 WCU a second, and a transactional
    /// write of it costs 2.
    pub run_item_tps: f64,
    /// How long a transaction holds an item: another transaction on it
    /// meanwhile is cancelled (`TransactionConflict`).
    pub transaction_hold: Duration,
    /// Latencies.
    pub latency: Latency,
    /// How long a new key fails STS: uniform in this range.
    pub propagation: (Duration, Duration),
    /// Probability that a call answers a 5xx (retried by the SDK).
    pub fault_rate: f64,
    /// Throttling bursts: every `.0`, each account's IAM answers every
    /// call `Throttling` for `.1` (another tool spending the account's
    /// budget), at an offset of its own within the period.
    pub throttle_bursts: Option<(Duration, Duration)>,
    /// Probability that `CreateAccessKey` creates the key and its answer
    /// is lost (a timeout): the worker never learns the key's id.
    pub lost_create_rate: f64,
    /// How long the producer's marks (an account enqueued, the run
    /// enqueued) take to land: a slow or throttled producer. With a long
    /// one, every result is recorded before the mark.
    pub producer_mark_delay: Duration,
    /// Whether each process's SES sends spend the SDK's default retry
    /// quota ([`RetryQuota`]), as before keyrotor gave them a retry
    /// partition of their own (`keyrotor_worker::digest::mailer::send_retry_partition`).
    pub ses_retry_quota: bool,
    /// Whose SDK retry quota each process's IAM retries spend, when
    /// modelled: the process's one, as with the SDK's default retry
    /// partition, or each member account's own, as keyrotor's clients
    /// (`keyrotor_shared::aws::member_retry_partition`; the default).
    pub iam_retry_quota: Option<QuotaScope>,
    /// The RNG seed.
    pub seed: u64,
}

impl Default for ModelConfig {
    fn default() -> ModelConfig {
        ModelConfig {
            iam_rps: 10.0,
            secrets_write_rps: 50.0,
            ses_rps: 14.0,
            sqs_api_rps: 3000.0,
            run_item_tps: 500.0,
            transaction_hold: Duration::from_millis(5),
            latency: Latency::default(),
            propagation: (Duration::from_secs(1), Duration::from_secs(6)),
            fault_rate: 0.0,
            throttle_bursts: None,
            lost_create_rate: 0.0,
            producer_mark_delay: Duration::ZERO,
            ses_retry_quota: false,
            iam_retry_quota: Some(QuotaScope::Account),
            seed: 1,
        }
    }
}

/// A token bucket on the simulated clock.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    at: Duration,
}

/// Counters the report is made of.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Calls answered (successfully or not), by service and operation.
    pub calls: std::collections::BTreeMap<(Service, &'static str), u64>,
    /// Successful IAM calls per account.
    pub iam_ok: HashMap<String, u64>,
    /// Successful Secrets Manager writes per account.
    pub secret_writes: HashMap<String, u64>,
    /// Emails sent.
    pub emails: u64,
    /// Simulated seconds at which the last email went out.
    pub last_email_at: f64,
    /// Throttling answers.
    pub throttled: u64,
    /// Retries the SDK model made.
    pub retries: u64,
    /// Injected 5xx answers.
    pub faults: u64,
    /// Transactions cancelled by another on a counter item.
    pub conflicts: u64,
    /// `CreateAccessKey` answers lost after the key was made.
    pub lost_answers: u64,
    /// Retries the SDK would have made but its retry quota refused.
    pub quota_refused: u64,
}

/// The SDK's retry quota of one client (one per process) for one
/// service: its retry partition's token bucket of 500 tokens, and the
/// client's one retry permit (`aws-smithy-runtime`'s
/// `StandardRetryStrategy`, shared by the client's concurrent calls). A
/// retry takes a permit of 5 tokens, and a permit it replaces is forgotten
/// (its tokens lost); a call that succeeds gives the held permit back, or
/// one token when none is held. With too few tokens the SDK does not
/// retry and returns the error. Modelled for SES sends, the calls throttled
/// by the hundred, with [`ModelConfig::ses_retry_quota`], and for IAM with
/// [`ModelConfig::iam_retry_quota`]; elsewhere throttling is rare enough
/// not to reach it.
#[derive(Debug)]
pub struct RetryQuota {
    state: Mutex<QuotaState>,
}

#[derive(Debug)]
struct QuotaState {
    tokens: u32,
    permit_held: bool,
}

impl Default for RetryQuota {
    fn default() -> RetryQuota {
        RetryQuota {
            state: Mutex::new(QuotaState {
                tokens: RETRY_QUOTA,
                permit_held: false,
            }),
        }
    }
}

/// The token bucket's capacity (`aws-smithy-runtime`'s default).
const RETRY_QUOTA: u32 = 500;
/// What one retry's permit takes from it.
const RETRY_COST: u32 = 5;

impl RetryQuota {
    /// Takes a retry's permit; false when too few tokens are left.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        match state.tokens.checked_sub(RETRY_COST) {
            Some(left) => {
                // A permit already held is replaced and forgotten.
                state.tokens = left;
                state.permit_held = true;
                true
            }
            None => false,
        }
    }

    /// A call's success: the held permit back, or one token.
    pub fn reward(&self) {
        let mut state = self.state.lock().expect("not poisoned");
        let back = if std::mem::take(&mut state.permit_held) {
            RETRY_COST
        } else {
            1
        };
        state.tokens = (state.tokens + back).min(RETRY_QUOTA);
    }

    /// Tokens left.
    pub fn left(&self) -> u32 {
        self.state.lock().expect("not poisoned").tokens
    }
}

/// Which calls share one SDK retry quota (the SDK keeps one per retry
/// partition and process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuotaScope {
    /// One for all of a process's clients of the service (the SDK's
    /// default partition: the service and region).
    Process,
    /// One per member account (keyrotor's partitions).
    Account,
}

/// How the SDK would treat an operation's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// The SDK's standard retries (5 attempts, jittered exponential backoff).
    Sdk,
    /// boto3's legacy retries, which the reference's Python Lambda
    /// functions get by default: 5 attempts, retrying throttling and 5xx,
    /// waiting a random fraction of 1, 2, 4 and 8 s in between.
    Boto3,
    /// The producer's IAM reads: the SDK's retries with more attempts
    /// (`keyrotor_producer::users::LISTING_ATTEMPTS`).
    Listing,
    /// The digest's `SendEmail`: the SDK's retries with more attempts
    /// (`keyrotor_worker::digest::mailer::SEND_ATTEMPTS`).
    Send,
    /// keyrotor's `CreateAccessKey`: the SDK's retries are off, and the
    /// adapter retries only a throttling answer, 5 attempts in all, waiting
    /// 200 ms doubling (plus jitter) in between.
    ThrottlingOnly,
}

/// The model: clock, RNG, buckets and counters.
pub struct Model {
    config: ModelConfig,
    origin: Instant,
    origin_utc: DateTime<Utc>,
    rng: Mutex<SmallRng>,
    buckets: Mutex<HashMap<(Service, String), Bucket>>,
    counters: Mutex<Counters>,
}

/// The SDK's attempts per call (keyrotor's `retry_config`).
const SDK_ATTEMPTS: u32 = 5;

impl Model {
    /// A model starting now (on tokio's clock) at `origin_utc`. keyrotor's
    /// own clock on this thread follows it from here, so that the times the
    /// product computes (a busy user's retry, a lease's end) agree with the
    /// model's, and a seed repeats its run exactly.
    pub fn new(config: ModelConfig, origin_utc: DateTime<Utc>) -> Model {
        keyrotor_shared::time::simulate_clock_on_this_thread(origin_utc);
        Model {
            rng: Mutex::new(SmallRng::seed_from_u64(config.seed)),
            config,
            origin: Instant::now(),
            origin_utc,
            buckets: Mutex::new(HashMap::new()),
            counters: Mutex::new(Counters::default()),
        }
    }

    /// The parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        self.origin.elapsed()
    }

    /// The simulated wall clock.
    pub fn now_utc(&self) -> DateTime<Utc> {
        self.origin_utc + chrono::Duration::from_std(self.elapsed()).expect("small")
    }

    /// A uniform draw in `[0, 1)`.
    pub fn uniform(&self) -> f64 {
        self.rng.lock().expect("not poisoned").random::<f64>()
    }

    /// A uniform duration in `range`.
    pub fn between(&self, range: (Duration, Duration)) -> Duration {
        range.0 + (range.1 - range.0).mul_f64(self.uniform())
    }

    fn latency(&self, service: Service) -> Duration {
        let median = self.config.latency.median[&service];
        // Box–Muller: one standard normal draw.
        let (u1, u2) = {
            let mut rng = self.rng.lock().expect("not poisoned");
            (rng.random::<f64>().max(1e-12), rng.random::<f64>())
        };
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        median.mul_f64((self.config.latency.sigma * z).exp().min(20.0))
    }

    /// The rate of the bucket `service` keeps per account, if it has one.
    fn rate(&self, service: Service, op: &str) -> Option<f64> {
        match service {
            Service::Iam => Some(self.config.iam_rps),
            Service::Secrets if is_secret_write(op) => Some(self.config.secrets_write_rps),
            Service::Ses if op == "SendEmail" => Some(self.config.ses_rps),
            Service::Sqs => Some(self.config.sqs_api_rps),
            _ => None,
        }
    }

    /// Whether `account`'s IAM is in a throttling burst at `now`: its
    /// offset within the period comes from its id, not the RNG, so that
    /// bursts do not change the draws of a seed.
    fn in_burst(&self, account: &str, now: Duration) -> bool {
        let Some((every, length)) = self.config.throttle_bursts else {
            return false;
        };
        let offset = account
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
            % every.as_millis().max(1) as u64;
        let into = (now.as_millis() as u64 + every.as_millis() as u64 - offset)
            % every.as_millis().max(1) as u64;
        Duration::from_millis(into) < length
    }

    /// Whether this `CreateAccessKey` answer is lost (see
    /// [`ModelConfig::lost_create_rate`]); counted.
    pub fn lose_create_answer(&self) -> bool {
        let lost =
            self.config.lost_create_rate > 0.0 && self.uniform() < self.config.lost_create_rate;
        if lost {
            self.counters.lock().expect("not poisoned").lost_answers += 1;
        }
        lost
    }

    /// Takes a token from `account`'s bucket for `service`; false when empty.
    fn take(&self, service: Service, op: &str, account: &str) -> bool {
        let Some(rate) = self.rate(service, op) else {
            return true;
        };
        let now = self.elapsed();
        // SES's send rate is the sending (hub) account's, whoever asks;
        // SQS's is the queue's, per action.
        let account = match service {
            Service::Ses => "hub",
            Service::Sqs => op,
            _ => account,
        };
        let bursting = service == Service::Iam && self.in_burst(account, now);
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let bucket = buckets
            .entry((service, account.to_string()))
            .or_insert(Bucket {
                tokens: rate,
                at: now,
            });
        bucket.tokens = (bucket.tokens + (now - bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bursting {
            bucket.tokens = 0.0;
        }
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// One call of `op` on `service` in `account`: waits its latency, then
    /// answers success, throttling (empty bucket) or an injected 5xx,
    /// retried the SDK's way when `retry` says so.
    pub async fn call(
        &self,
        service: Service,
        op: &'static str,
        account: &str,
        retry: Retry,
    ) -> Result<(), AwsError> {
        self.call_with_quota(service, op, account, retry, None)
            .await
    }

    /// Whether `quota` (if any) lets the SDK retry; counts a refusal.
    fn retry_allowed(&self, quota: Option<&RetryQuota>) -> bool {
        let allowed = quota.is_none_or(RetryQuota::take);
        if !allowed {
            self.counters.lock().expect("not poisoned").quota_refused += 1;
        }
        allowed
    }

    /// [`Model::call`] whose retries also spend the process's `quota` for
    /// the service, as the SDK's do.
    pub async fn call_with_quota(
        &self,
        service: Service,
        op: &'static str,
        account: &str,
        retry: Retry,
        quota: Option<&RetryQuota>,
    ) -> Result<(), AwsError> {
        let attempts = match retry {
            Retry::Sdk | Retry::ThrottlingOnly | Retry::Boto3 => SDK_ATTEMPTS,
            Retry::Listing => keyrotor_producer::users::LISTING_ATTEMPTS,
            Retry::Send => keyrotor_worker::digest::mailer::SEND_ATTEMPTS,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            tokio::time::sleep(self.latency(service)).await;
            let answer = self.answer(service, op, account);
            tracing::trace!(?service, op, ok = answer.is_ok(), "call");
            match answer {
                Ok(()) => {
                    if let Some(quota) = quota {
                        quota.reward();
                    }
                    return Ok(());
                }
                Err(AwsError::Throttled { .. })
                    if retry == Retry::ThrottlingOnly && attempt < attempts =>
                {
                    self.counters.lock().expect("not poisoned").retries += 1;
                    // The adapter's backoff: 200 ms doubling, plus up to as much again.
                    let delay = Duration::from_millis(200 << (attempt - 1));
                    tokio::time::sleep(delay.mul_f64(1.0 + self.uniform())).await;
                }
                Err(_) if retry == Retry::Boto3 && attempt < attempts => {
                    self.counters.lock().expect("not poisoned").retries += 1;
                    // botocore's legacy delay: rand() x 2^(retry - 1) s, no cap.
                    let cap = Duration::from_secs(1 << (attempt - 1));
                    tokio::time::sleep(cap.mul_f64(self.uniform())).await;
                }
                Err(e)
                    if matches!(retry, Retry::Sdk | Retry::Listing | Retry::Send)
                        && attempt < attempts
                        && self.retry_allowed(quota) =>
                {
                    self.counters.lock().expect("not poisoned").retries += 1;
                    // The SDK's backoff: full jitter on 1 s doubling, 20 s at most.
                    let cap =
                        Duration::from_secs(1 << (attempt - 1).min(5)).min(Duration::from_secs(20));
                    tokio::time::sleep(cap.mul_f64(self.uniform())).await;
                    drop(e);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn answer(&self, service: Service, op: &'static str, account: &str) -> Result<(), AwsError> {
        let faulted = self.config.fault_rate > 0.0 && self.uniform() < self.config.fault_rate;
        let admitted = self.take(service, op, account);
        let mut c = self.counters.lock().expect("not poisoned");
        *c.calls.entry((service, op)).or_default() += 1;
        let op_name = qualified(service, op);
        if faulted {
            c.faults += 1;
            return Err(AwsError::Service {
                op: op_name,
                code: "InternalFailure".into(),
                message: "injected 5xx".into(),
                source: None,
            });
        }
        if !admitted {
            c.throttled += 1;
            return Err(AwsError::Throttled {
                op: op_name,
                message: "Rate exceeded".into(),
                source: None,
            });
        }
        match service {
            Service::Iam => *c.iam_ok.entry(account.to_string()).or_default() += 1,
            Service::Secrets if is_secret_write(op) => {
                *c.secret_writes.entry(account.to_string()).or_default() += 1
            }
            Service::Ses if op == "SendEmail" => {
                c.emails += 1;
                c.last_email_at = self.elapsed().as_secs_f64();
            }
            _ => {}
        }
        Ok(())
    }

    /// Takes one transaction's write of `item` from its own bucket (an
    /// item's partition has a write rate of its own); false when empty.
    pub fn take_item_write(&self, item: &str) -> bool {
        let rate = self.config.run_item_tps;
        let now = self.elapsed();
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let bucket = buckets
            .entry((Service::Dynamo, item.to_string()))
            .or_insert(Bucket {
                tokens: rate,
                at: now,
            });
        bucket.tokens = (bucket.tokens + (now - bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        let admitted = bucket.tokens >= 1.0;
        if admitted {
            bucket.tokens -= 1.0;
        } else {
            self.counters.lock().expect("not poisoned").throttled += 1;
        }
        admitted
    }

    /// Counts a cancelled transaction.
    pub fn count_conflict(&self) {
        self.counters.lock().expect("not poisoned").conflicts += 1;
    }

    /// Counts a retry the adapter made.
    pub fn count_retry(&self) {
        self.counters.lock().expect("not poisoned").retries += 1;
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.counters.lock().expect("not poisoned").clone()
    }
}

fn is_secret_write(op: &str) -> bool {
    matches!(op, "CreateSecret" | "PutSecretValue" | "PutResourcePolicy")
}

/// `service:Operation`, as errors name operations (leaked once per name:
/// the set of operations is small and fixed).
fn qualified(service: Service, op: &'static str) -> &'static str {
    use std::sync::OnceLock;
    static NAMES: OnceLock<Mutex<HashMap<(Service, &'static str), &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    names
        .entry((service, op))
        .or_insert_with(|| Box::leak(format!("{}:{op}", service.prefix()).into_boxed_str()))
}

#[cfg(test)]
mod retry_quota_tests {
    use super::RetryQuota;

    #[test]
    fn a_retry_quota_forgets_replaced_permits_and_a_success_gives_the_held_one_back() {
        let quota = RetryQuota::default();
        assert!(quota.take());
        quota.reward();
        assert_eq!(quota.left(), 500, "a retried success gives its permit back");
        assert_eq!((0..100).filter(|_| quota.take()).count(), 100);
        assert!(!quota.take(), "each permit replaced was forgotten: spent");
        quota.reward();
        assert_eq!(quota.left(), 5, "the last permit back");
        quota.reward();
        assert_eq!(quota.left(), 6, "one token for a success holding none");
        assert!(quota.take());
        for _ in 0..1000 {
            quota.reward();
        }
        assert_eq!(quota.left(), 500, "never above its capacity");
    }
}

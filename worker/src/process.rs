//! One message, start to finish (DESIGN §3 step 4–5): decode it on its own;
//! if its result is already recorded, finish what a previous delivery left
//! (publish, digest, summary); check it against its run record — a message
//! is a request, not an authority; run the user's due steps through the
//! executor; record the result and count it exactly once; publish its event
//! (outbox: a redelivery publishes what was recorded but not yet published);
//! then send the account's digest and the run's summary when this was the
//! last message.

mod safeguards;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SubsecRound, Utc};
use keyrotor_shared::config::Settings;
use keyrotor_shared::domain::{KeyAction, Mode, Outcome};
use keyrotor_shared::error::AwsError;
use keyrotor_shared::events::{EventSink, ResultEvent, RunEvent, RESULT_EVENT_TYPE};
use keyrotor_shared::executor::{ExecError, Executor, UserRequest, UserResult};
use keyrotor_shared::message::{MessageError, WorkMessage};
use keyrotor_shared::queue::QueuePort;
use keyrotor_shared::store::breaker::BreakerPort;
use keyrotor_shared::store::results::{
    claim_holder, Claim, Notice, Progress, Recorded, ResultItem, ResultsPort,
};
use keyrotor_shared::store::runs::{forced_entry, RunParams, RunsPort};
use keyrotor_shared::store::waves::WavesPort;

use crate::digest::{send_digest_to, AccountDigest, DigestLine, Mailer, SentMarker, Templates};
use crate::shares::MessagesLeft;

/// What became of a message that can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Processed; its outcome.
    Done(Outcome),
    /// Its result was already recorded (a duplicate delivery): nothing done.
    Duplicate,
    /// Not acted on and not recorded: it does not match the run record it
    /// names (an unknown run, a different evaluation time or mode, a force
    /// the run did not ask for). Reported as a `failed` event; never retried.
    Rejected(String),
}

/// Why a message must stay on the queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageFailure {
    /// The body is not a message v1: it will reach the DLQ through redrive.
    #[error("malformed message: {0}")]
    Malformed(#[from] MessageError),
    /// A transient failure (busy user, throttling, an outage): retry later.
    #[error("will retry: {reason}")]
    Retry {
        /// What failed.
        reason: String,
        /// When the retry can succeed, when known (a busy user's lock
        /// lease end); otherwise the caller's backoff decides.
        not_before: Option<DateTime<Utc>>,
    },
}

impl MessageFailure {
    fn retry(e: &dyn std::fmt::Display) -> MessageFailure {
        MessageFailure::Retry {
            reason: e.to_string(),
            not_before: None,
        }
    }
}

/// A processed message: what the queue should do with it, and the user's
/// result when this delivery produced one (`keyrotor rotate` prints it).
#[derive(Debug)]
pub struct Processed {
    /// Delete the message; why.
    pub handled: Handled,
    /// The executor's result, when it ran.
    pub result: Option<UserResult>,
    /// The recorded result item, when there is one.
    pub item: Option<ResultItem>,
}

/// Email delivery for digests; absent without `KEYROTOR_SENDER`.
pub struct Email {
    /// The sender address.
    pub sender: String,
    /// The mailer (rate-limited SES).
    pub mailer: Arc<dyn Mailer>,
    /// The templates.
    pub templates: Arc<Templates>,
}

/// What the run record allows for a message (that does not contradict it:
/// such a message is rejected, with the reason).
enum Verdict {
    /// Act, in this mode (the lesser of the message's and the worker's);
    /// `held` says why enforce was turned into audit (the circuit breaker,
    /// a wave not released), if it was.
    Go { mode: Mode, held: Option<String> },
    /// Not acted on; recorded as `failed` (stale, or a future evaluation time).
    Refuse(String),
    /// Not acted on; recorded as `skipped` (outside the worker's scope).
    OutOfScope(String),
}

/// Messages of one FIFO group (of one receive) worked at once. More than
/// one: while one waits (a new key propagating to STS, seconds with no IAM
/// call) the others spend the group's share of the account's IAM budget,
/// which a group worked one message at a time leaves idle for a third of
/// its time. Different users cannot collide (each has its own lock), and
/// the order within an account does not matter to keyrotor. Three, from the
/// load simulator (16 pools of 256, seed 1): the skewed Organization took
/// 6,484 s with two, 6,377 s with three, 6,459 s with four (the 1,000
/// accounts of 100: 131, 133, 143 s); more also throttled more.
pub const GROUP_WINDOW: usize = 3;

/// Messages of one FIFO group worked at once by the Lambda handler: a whole
/// batch. SQS gives a FIFO receive as many messages of one group as it can,
/// so an invocation mostly holds one group; with two at a time its
/// execution environment sat idle while the group's share of the IAM budget
/// went unspent (the load simulator: 164 s against 95 s for 100 accounts at
/// `MaximumConcurrency` 100, one group per account). The environment's rate
/// limiter still bounds the group to its share.
pub const LAMBDA_GROUP_WINDOW: usize = 10;

/// Runs remembered per worker; each message needs its run's record, which
/// does not change after the producer's start.
const RUNS_REMEMBERED: usize = 64;

/// Processes messages; shared by the pool, the Lambda handler and `rotate`.
pub struct Worker {
    settings: Arc<Settings>,
    executor: Arc<Executor>,
    results: Arc<dyn ResultsPort>,
    runs: Arc<dyn RunsPort>,
    events: Option<Arc<dyn EventSink>>,
    email: Option<Email>,
    /// This process's id in digest and summary claims.
    owner: String,
    known_runs: Mutex<HashMap<String, RunParams>>,
    /// The work queue, to time a retry (the Lambda function's way; the
    /// pool sets visibility itself).
    queue: Option<Arc<dyn QueuePort>>,
    /// Messages left per account, as results recorded here showed: the
    /// last groups of an account take a larger share of its IAM budget.
    left: MessagesLeft,
    /// The circuit breaker, when this deployment has one.
    breaker: Option<Arc<dyn BreakerPort>>,
    /// The rollout waves' records, told of trouble in a wave.
    waves: Option<Arc<dyn WavesPort>>,
    /// Whether the breaker was open, and when that was read.
    breaker_seen: Mutex<Option<(tokio::time::Instant, bool)>>,
}

impl Worker {
    /// A worker over the given parts.
    pub fn new(
        settings: Arc<Settings>,
        executor: Arc<Executor>,
        results: Arc<dyn ResultsPort>,
        runs: Arc<dyn RunsPort>,
        events: Option<Arc<dyn EventSink>>,
        email: Option<Email>,
    ) -> Worker {
        Worker {
            settings,
            executor,
            results,
            runs,
            events,
            email,
            owner: Executor::process_owner_id(),
            known_runs: Mutex::new(HashMap::new()),
            queue: None,
            left: MessagesLeft::default(),
            breaker: None,
            breaker_seen: Mutex::new(None),
            waves: None,
        }
    }

    /// The same worker, recording trouble (a failed enforce result, an
    /// adoption hold that ran out) in the account's rollout wave, which
    /// restarts that wave's soak.
    pub fn with_waves(mut self, waves: Arc<dyn WavesPort>) -> Worker {
        self.waves = Some(waves);
        self
    }

    /// The same worker, held to audit mode while `breaker` is open, and
    /// opening it when a run's failed enforce results reach
    /// `KEYROTOR_BREAKER_FAILURES`.
    pub fn with_breaker(mut self, breaker: Arc<dyn BreakerPort>) -> Worker {
        self.breaker = Some(breaker);
        self
    }

    /// The same worker, able to time the retry of a message of `queue`.
    pub fn with_queue(mut self, queue: Arc<dyn QueuePort>) -> Worker {
        self.queue = Some(queue);
        self
    }

    /// Makes a failed message visible again after `delay` (a busy user's
    /// lease end, or the backoff ladder) instead of after the queue's
    /// visibility timeout, which the hub stack sets to 6 × the function's
    /// timeout: half an hour by default. Best effort: a failure only means
    /// the message comes back later.
    pub async fn retry_after(&self, receipt_handle: &str, delay: std::time::Duration) {
        let Some(queue) = &self.queue else {
            return;
        };
        // SQS's limit is 12 hours.
        let delay = delay.min(std::time::Duration::from_secs(43_199));
        if let Err(e) = queue.set_visibility(receipt_handle, delay).await {
            tracing::warn!(error = %e, "could not time the retry");
        }
    }

    /// The queue's `maxReceiveCount` (`KEYROTOR_MAX_RECEIVES`).
    pub fn max_receives(&self) -> u32 {
        self.settings.max_receives
    }

    /// Handles one SQS body, received `receive_count` times so far.
    pub async fn handle(&self, body: &str, receive_count: u32) -> Result<Handled, MessageFailure> {
        self.handle_until(body, receive_count, None).await
    }

    /// [`Worker::handle`], whose user's steps are stopped at `execute_by`
    /// if they run that long: a retryable failure, recorded as the user's
    /// `failed` result on the last receive, so that the Lambda handler can
    /// answer before its deadline with a result rather than send the
    /// message to the DLQ unrecorded.
    pub async fn handle_until(
        &self,
        body: &str,
        receive_count: u32,
        execute_by: Option<tokio::time::Instant>,
    ) -> Result<Handled, MessageFailure> {
        let m = WorkMessage::decode(body)?;
        Ok(self
            .process_until(&m, receive_count, execute_by)
            .await?
            .handled)
    }

    /// Handles one decoded message, in a span naming its run, account and
    /// user (every log line of its processing carries them).
    pub async fn process(
        &self,
        m: &WorkMessage,
        receive_count: u32,
    ) -> Result<Processed, MessageFailure> {
        self.process_until(m, receive_count, None).await
    }

    /// [`Worker::process`], the user's steps stopped at `execute_by` (see
    /// [`Worker::handle_until`]).
    #[tracing::instrument(
        name = "message",
        skip_all,
        fields(run_id = %m.run_id, account_id = %m.account_id, user = %m.user_name, receive_count = receive_count)
    )]
    async fn process_until(
        &self,
        m: &WorkMessage,
        receive_count: u32,
        execute_by: Option<tokio::time::Instant>,
    ) -> Result<Processed, MessageFailure> {
        // A message that contradicts its run is rejected even when the
        // user's result exists: a forgery is reported, not taken for a
        // duplicate.
        let verdict = match self.authorise(m).await? {
            Ok(verdict) => verdict,
            Err(reason) => return self.reject(m, reason).await,
        };
        // A first delivery has no result to find, save after a rare second
        // sending of the same user's message (the producer's nudge, a
        // re-run past SQS's five-minute deduplication, a standard queue's
        // duplicate): those take the idempotent path below (the ledger holds
        // what this run did) and meet the recorded result at `record`. One
        // read less per user.
        if receive_count > 1 {
            if let Some(found) = self.finish_recorded(m, receive_count).await? {
                return Ok(found);
            }
        }
        let mut result = None;
        let item = match verdict {
            Verdict::Refuse(reason) => {
                tracing::warn!(reason = %reason, "message not acted on");
                base_item(m, m.mode, Outcome::Failed, reason)
            }
            Verdict::OutOfScope(reason) => base_item(m, m.mode, Outcome::Skipped, reason),
            Verdict::Go { mode, held } => match self.execute_until(m, mode, execute_by).await {
                Ok(r) => {
                    let mut item = item_from(m, mode, &r);
                    if let Some(why) = held {
                        item.reason = format!("{} (audit only: {why})", item.reason);
                    }
                    result = Some(r);
                    item
                }
                Err(e) if e.is_retryable() && receive_count < self.settings.max_receives => {
                    let not_before = match &e {
                        ExecError::Busy { until_ms, .. } => {
                            DateTime::from_timestamp_millis(*until_ms).map(|until| {
                                busy_retry_at(until, receive_count, keyrotor_shared::time::now())
                            })
                        }
                        _ => None,
                    };
                    return Err(MessageFailure::Retry {
                        reason: e.to_string(),
                        not_before,
                    });
                }
                // The last receive: the DLQ would swallow it unrecorded, and
                // the account and the run would never complete.
                Err(e) if e.is_retryable() => {
                    let reason = format!(
                        "not retried again (receive {receive_count} of {}): {e}",
                        self.settings.max_receives
                    );
                    self.failure_item(m, mode, reason).await
                }
                // A permanent failure is a result too: the run must complete.
                Err(e) => self.failure_item(m, mode, e.to_string()).await,
            },
        };
        fail::fail_point!("worker-before-record");
        let recorded = if self.left.among_last(&m.run_id, &m.account_id) {
            self.results.record_last(&item).await
        } else {
            self.results.record(&item).await
        };
        let progress = match recorded.map_err(|e| MessageFailure::retry(&e))? {
            Recorded::New { account, run } => {
                self.left.saw(&m.run_id, &m.account_id, &account);
                Some(Some((account, run)))
            }
            // Not among the account's last: nothing can be due.
            Recorded::Early => None,
            // Recorded meanwhile — by another delivery, or by our own attempt
            // whose answer was lost: finish that record's outbox.
            Recorded::Duplicate => {
                if let Some(found) = self.finish_recorded(m, receive_count).await? {
                    return Ok(Processed { result, ..found });
                }
                Some(None)
            }
        };
        fail::fail_point!("worker-after-record");
        self.publish(m, &item)
            .await
            .map_err(|e| MessageFailure::retry(&e))?;
        self.count_against_breaker(m, &item).await?;
        self.wave_trouble(m, &item, result.as_ref()).await?;
        fail::fail_point!("worker-after-publish");
        if let Some(progress) = progress {
            self.after_record(m, progress, receive_count).await?;
        }
        Ok(Processed {
            handled: Handled::Done(item.outcome),
            result,
            item: Some(item),
        })
    }

    /// A recorded result: publishes it if that did not happen yet, and runs
    /// the completion check (a digest or summary may still be owed).
    async fn finish_recorded(
        &self,
        m: &WorkMessage,
        receive_count: u32,
    ) -> Result<Option<Processed>, MessageFailure> {
        let Some((recorded, published)) = self
            .results
            .find(&m.run_id, &m.account_id, &m.user_name)
            .await
            .map_err(|e| MessageFailure::retry(&e))?
        else {
            return Ok(None);
        };
        if !published {
            self.publish(m, &recorded)
                .await
                .map_err(|e| MessageFailure::retry(&e))?;
        }
        self.count_against_breaker(m, &recorded).await?;
        self.wave_trouble(m, &recorded, None).await?;
        self.after_record(m, None, receive_count).await?;
        Ok(Some(Processed {
            handled: Handled::Duplicate,
            result: None,
            item: Some(recorded),
        }))
    }

    /// The result of a delivery that failed for good. What this run did to
    /// the user before the failure (recorded in the ledger with each IAM
    /// change, by this delivery or an earlier one) is reported with it:
    /// a rotation whose later step failed is still `rotated`, with its
    /// secret, so the application learns of its new key.
    async fn failure_item(&self, m: &WorkMessage, mode: Mode, reason: String) -> ResultItem {
        let work = match self
            .executor
            .recorded_work(&m.account_id, &m.user_name, &m.run_id)
            .await
        {
            Ok(work) => work,
            Err(e) => {
                tracing::warn!(error = %e, "could not read what the run did before failing");
                None
            }
        };
        let Some((work, outcome)) =
            work.and_then(|w| Outcome::of_changes(&w.performed).map(|o| (w, o)))
        else {
            return failed_item(m, mode, &reason);
        };
        tracing::error!(error = %reason, "user failed after changes were made; reporting them");
        ResultItem {
            actions: work.performed,
            new_key_id: work.new_key_id,
            secret_arn: work.secret_arn,
            ..base_item(
                m,
                mode,
                outcome,
                format!("done before a later step failed: {reason}"),
            )
        }
    }

    /// The run's record, from memory or the table.
    async fn run_params(&self, run_id: &str, fresh: bool) -> Result<Option<RunParams>, AwsError> {
        if !fresh {
            if let Some(p) = self.known_runs.lock().expect("not poisoned").get(run_id) {
                return Ok(Some(p.clone()));
            }
        }
        let params = self.runs.params(run_id).await?;
        if let Some(p) = &params {
            let mut known = self.known_runs.lock().expect("not poisoned");
            if known.len() >= RUNS_REMEMBERED {
                known.clear();
            }
            known.insert(run_id.to_string(), p.clone());
        }
        Ok(params)
    }

    /// Checks the message against its run record and this worker's own
    /// settings (DESIGN §4, "a message is a request, not an authority").
    async fn authorise(&self, m: &WorkMessage) -> Result<Result<Verdict, String>, MessageFailure> {
        let lookup = |fresh| self.run_params(&m.run_id, fresh);
        let Some(mut run) = lookup(false).await.map_err(|e| MessageFailure::retry(&e))? else {
            return Ok(Err(format!(
                "unknown run `{}`: no run record; the message was not acted on",
                m.run_id
            )));
        };
        if m.as_of.trunc_subsecs(3) != run.as_of.trunc_subsecs(3) {
            return Ok(Err(format!(
                "the message's as_of {} differs from its run's {}; not acted on",
                m.as_of.to_rfc3339(),
                run.as_of.to_rfc3339()
            )));
        }
        if m.mode != run.mode {
            return Ok(Err(format!(
                "the message's mode {} differs from its run's {}; not acted on",
                m.mode, run.mode
            )));
        }
        let entry = forced_entry(&m.account_id, &m.user_name);
        if m.force && !run.forced.contains(&entry) {
            // A producer may have added forced users to the run since.
            run = lookup(true)
                .await
                .map_err(|e| MessageFailure::retry(&e))?
                .unwrap_or(run);
            if !run.forced.contains(&entry) {
                return Ok(Err(
                    "force was not asked for this user by its run; not acted on".into(),
                ));
            }
        }
        // Only the producer that started the run holds its key: a message
        // it did not make is refused, however well it copies the run.
        if let Some(key) = &run.message_key {
            if !m.verify(key) {
                return Ok(Err(
                    "the message is not signed with its run's key; not acted on".into(),
                ));
            }
        }
        let s = &self.settings;
        if s.exclude_accounts
            .iter()
            .any(|a| a.as_str() == m.account_id)
        {
            return Ok(Ok(Verdict::OutOfScope(
                "the account is in this worker's KEYROTOR_EXCLUDE_ACCOUNTS".into(),
            )));
        }
        if !s.accounts.is_empty() && !s.accounts.iter().any(|a| a.as_str() == m.account_id) {
            return Ok(Ok(Verdict::OutOfScope(
                "the account is not in this worker's KEYROTOR_ACCOUNTS".into(),
            )));
        }
        let mut mode = if m.mode == Mode::Enforce && s.mode == Mode::Enforce {
            Mode::Enforce
        } else {
            Mode::Audit
        };
        let mut held = None;
        if mode == Mode::Enforce && m.audit_only {
            held = Some(format!(
                "the account's rollout wave{} is not released; see `keyrotor waves`",
                m.wave.map(|w| format!(" {w}")).unwrap_or_default()
            ));
        } else if mode == Mode::Enforce && self.breaker_open().await? {
            tracing::warn!("the circuit breaker is open: acting in audit mode");
            held = Some(
                "the circuit breaker is open; `keyrotor breaker reset` lets enforce runs act again"
                    .into(),
            );
        }
        if held.is_some() {
            mode = Mode::Audit;
        }
        if mode == Mode::Enforce {
            let now = keyrotor_shared::time::now();
            if let Err(e) =
                keyrotor_shared::time::check_enforce_as_of(m.as_of, true, s.allow_future_as_of, now)
            {
                return Ok(Ok(Verdict::Refuse(e.to_string())));
            }
            if now - run.started_at > s.max_message_age {
                return Ok(Ok(Verdict::Refuse(format!(
                    "stale: its run started at {}, longer ago than KEYROTOR_MAX_MESSAGE_AGE_HOURS ({} h); the next run re-evaluates this user",
                    run.started_at.to_rfc3339(),
                    s.max_message_age.num_hours()
                ))));
            }
        }
        Ok(Ok(Verdict::Go { mode, held }))
    }

    /// Reports a message that contradicts its run, without recording it:
    /// its counts would make the run look complete before it is.
    async fn reject(&self, m: &WorkMessage, reason: String) -> Result<Processed, MessageFailure> {
        tracing::error!(reason = %reason, "message rejected");
        if let Some(events) = &self.events {
            let item = base_item(m, m.mode, Outcome::Failed, reason.clone());
            events
                .publish_result(&event_of(m, &item))
                .await
                .map_err(|e| MessageFailure::retry(&e))?;
        }
        Ok(Processed {
            handled: Handled::Rejected(reason),
            result: None,
            item: None,
        })
    }

    /// The user's steps, stopped at `by` if there is one.
    async fn execute_until(
        &self,
        m: &WorkMessage,
        mode: Mode,
        by: Option<tokio::time::Instant>,
    ) -> Result<UserResult, ExecError> {
        match by {
            Some(by) => tokio::time::timeout_at(by, self.execute(m, mode))
                .await
                .unwrap_or(Err(ExecError::Stopped)),
            None => self.execute(m, mode).await,
        }
    }

    async fn execute(&self, m: &WorkMessage, mode: Mode) -> Result<UserResult, ExecError> {
        let req = UserRequest {
            account_id: m.account_id.clone(),
            user_name: m.user_name.clone(),
            as_of: m.as_of,
            mode,
            force: m.force,
            run_id: Some(m.run_id.clone()),
            // The producer saw the user in the exemption group; the executor
            // still finishes an interrupted rotation of theirs.
            exempt: m
                .exempt
                .then(|| "member of the exemption group".to_string()),
            iam_share: self.left.share(&m.run_id, &m.account_id, m.iam_share()),
            exposed_key: m.exposed_key.clone().filter(|_| m.incident),
        };
        self.executor.process(&req).await
    }

    /// Publishes the result's event, then marks it published. A result with
    /// no event (a `noop`, unless those are published; or no topic) is not
    /// marked: a redelivery finds it unmarked and again has nothing to
    /// publish, so the mark would buy nothing for a write per result, and
    /// most of a sweep's results are `noop`.
    async fn publish(&self, m: &WorkMessage, item: &ResultItem) -> Result<(), AwsError> {
        let Some(events) = &self.events else {
            return Ok(());
        };
        if item.outcome == Outcome::Noop && !self.settings.publish_noop {
            return Ok(());
        }
        events.publish_result(&event_of(m, item)).await?;
        // Between the event and its mark: the one place a crash publishes
        // an event twice (SNS itself is at-least-once).
        fail::fail_point!("worker-between-publish-and-mark");
        self.results
            .mark_published(&m.run_id, &m.account_id, &m.user_name)
            .await
    }

    /// The account digest and the run summary, when the run's counters say
    /// they are due. Each is claimed (`sending`, then `sent`), so it goes
    /// out once; a claim whose holder died is taken over after a while. A
    /// failure, or a claim held now for this same message, leaves this
    /// message for a retry, so that the digest or summary is never lost; a
    /// claim held for another message is left to that message's delivery.
    async fn after_record(
        &self,
        m: &WorkMessage,
        progress: Option<(Progress, Option<Progress>)>,
        receive_count: u32,
    ) -> Result<(), MessageFailure> {
        let (account, run) = match progress {
            Some(p) => p,
            None => self
                .results
                .progress(&m.run_id, &m.account_id)
                .await
                .map_err(|e| MessageFailure::retry(&e))?,
        };
        let mut owed = Vec::new();
        if account.complete() {
            if let Err(e) = self.digest(m, receive_count).await {
                tracing::warn!(error = %e, "digest not sent yet; the message will be retried");
                owed.push(e);
            }
        }
        if run.is_some_and(|r| r.complete()) {
            if let Err(e) = self.summary(m, receive_count).await {
                tracing::warn!(error = %e, "run summary not sent yet; the message will be retried");
                owed.push(e);
            }
        }
        if owed.is_empty() {
            return Ok(());
        }
        // Come back once the claim may be taken over; on a first receive
        // sooner, since the holder is most often another delivery of this
        // same message finishing in a moment. (A claim held for another
        // message is that message's to finish: `backed_by_another`.)
        let now = keyrotor_shared::time::now();
        let not_before = owed
            .iter()
            .filter_map(|o| match o {
                Owed::Busy(at) => Some(busy_retry_at(*at, receive_count, now)),
                Owed::Failed(_) => None,
            })
            .max();
        Err(MessageFailure::Retry {
            reason: owed
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            not_before,
        })
    }

    /// Runs `send` under `notice`'s claim: nothing when it went out
    /// already, or when the claim is held for another message (which
    /// finishes it); a retry timed to the claim's staleness when it is held
    /// for this message or names none; the claim released when `send`
    /// fails, so a retry can take it at once. `send` is given the
    /// recipients an earlier claimant reached.
    async fn once<F, Fut>(
        &self,
        m: &WorkMessage,
        receive_count: u32,
        notice: Notice<'_>,
        send: F,
    ) -> Result<(), Owed>
    where
        F: FnOnce(BTreeSet<String>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let me = claim_holder(&m.account_id, &m.user_name);
        let named = names_its_message(receive_count, self.settings.max_receives);
        let already_sent = match self
            .results
            .claim(
                &m.run_id,
                notice,
                &self.owner,
                named.then_some(me.as_str()),
                self.settings.lock_lease,
            )
            .await?
        {
            Claim::Done => return Ok(()),
            Claim::Busy { holder, .. } if backed_by_another(holder.as_deref(), &me) => {
                tracing::debug!(
                    holder = holder.as_deref(),
                    "another message's delivery is sending it; this one is done"
                );
                return Ok(());
            }
            Claim::Busy { stale_at, .. } => return Err(Owed::Busy(stale_at)),
            Claim::Mine { already_sent } => already_sent,
        };
        let sent = match send(already_sent).await {
            Ok(()) => self
                .results
                .finish(&m.run_id, notice, &self.owner)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            let _ = self.results.release(&m.run_id, notice, &self.owner).await;
            return Err(Owed::Failed(format!("{e:#}")));
        }
        Ok(())
    }

    async fn summary(&self, m: &WorkMessage, receive_count: u32) -> Result<(), Owed> {
        self.once(m, receive_count, Notice::Summary, |_| async {
            let event = RunEvent::of(self.results.run_summary(&m.run_id).await?);
            tracing::info!(
                done = event.totals.done,
                expected = event.totals.expected,
                "run complete"
            );
            if let Some(events) = &self.events {
                events.publish_run(&event).await?;
            }
            Ok(())
        })
        .await
    }

    async fn digest(&self, m: &WorkMessage, receive_count: u32) -> Result<(), Owed> {
        let Some(email) = &self.email else {
            tracing::debug!("account complete; no KEYROTOR_SENDER, so no digest email");
            return Ok(());
        };
        let notice = Notice::Digest {
            account_id: &m.account_id,
        };
        self.once(m, receive_count, notice, |already_sent| async move {
            let results = self
                .results
                .account_results(&m.run_id, &m.account_id)
                .await?;
            let digest = AccountDigest {
                run_id: m.run_id.clone(),
                account_id: m.account_id.clone(),
                account_name: m.account_name.clone(),
                owner_email: m.owner_email.clone(),
                mode: m.mode,
                as_of: m.as_of,
                lines: results
                    .into_iter()
                    .map(|r| DigestLine {
                        user_name: r.user_name,
                        outcome: r.outcome,
                        reason: r.reason,
                        actions: r.actions,
                        due: r.due,
                        new_key_id: r.new_key_id,
                        secret_arn: r.secret_arn,
                        owner_email: r.owner_email,
                    })
                    .collect(),
            };
            let marker = Recipients {
                results: self.results.as_ref(),
                run_id: &m.run_id,
                account_id: &m.account_id,
            };
            fail::fail_point!("worker-before-digest");
            let sent = send_digest_to(
                &*email.mailer,
                &email.templates,
                &email.sender,
                &digest,
                &already_sent,
                &marker,
            )
            .await?;
            tracing::info!(emails = sent, "digest sent");
            Ok(())
        })
        .await
    }
}

/// Why a digest or summary is still owed after this delivery.
#[derive(Debug, thiserror::Error)]
enum Owed {
    /// The claim is held for this same message (or names none), until it
    /// goes stale.
    #[error("another worker is sending it (its claim may be taken over at {0})")]
    Busy(DateTime<Utc>),
    /// Sending failed; the claim was released.
    #[error("{0}")]
    Failed(String),
}

impl From<AwsError> for Owed {
    fn from(e: AwsError) -> Owed {
        Owed::Failed(e.to_string())
    }
}

/// Marks digest recipients in the account's run item.
struct Recipients<'a> {
    results: &'a dyn ResultsPort,
    run_id: &'a str,
    account_id: &'a str,
}

#[async_trait::async_trait]
impl SentMarker for Recipients<'_> {
    async fn mark_sent(&self, to: &str) -> Result<(), AwsError> {
        self.results
            .digest_sent_to(self.run_id, self.account_id, to)
            .await
    }
}

/// How soon a first delivery that found a user's lock, or a digest's or
/// summary's claim, held by another is tried again: the holder is most
/// often another delivery finishing within seconds (a second delivery of
/// the same message, or the producer's nudge of it), after which the retry
/// finds the work done. Waiting for the lease to end
/// (minutes) would stall the message, and a pool's `--until-idle`, for
/// nothing.
const BUSY_FIRST_RETRY: chrono::Duration = chrono::Duration::seconds(10);

/// Whether a digest's or summary's claim held for the message `holder` is
/// kept by that message's delivery, so that the delivery of message `me`
/// can finish without it. The holder deletes its message only once the
/// notice is sent, and a failed send retries its message; if the holder
/// stops, SQS delivers its message again, and that delivery takes the claim
/// over when it goes stale. A claim held for this same message (a second
/// delivery, the producer's nudge) backs nothing else, and neither does a
/// claim from before holders were recorded: those are retried as before.
fn backed_by_another(holder: Option<&str>, me: &str) -> bool {
    holder.is_some_and(|h| h != me)
}

/// Whether a delivery on its `receive_count`th receive names its message as
/// the holder of a claim it takes. Only with two receives left: if its send
/// fails, the next receive takes the released claim; if its process stops,
/// the next receive meets the claim still fresh and is retried, and the one
/// after takes it over once stale. With fewer, the message could reach the
/// DLQ with the notice owed, so its claim names no one and a delivery of
/// another message that meets it is retried as before, a second copy of the
/// owed notice.
fn names_its_message(receive_count: u32, max_receives: u32) -> bool {
    receive_count.saturating_add(2) <= max_receives
}

/// When a delivery that found a lock or claim held until `until` is retried:
/// soon on its first receive, at the lease's end after that (a holder that
/// stopped keeps the lock until then, and each retry spends a receive).
fn busy_retry_at(until: DateTime<Utc>, receive_count: u32, now: DateTime<Utc>) -> DateTime<Utc> {
    if receive_count <= 1 {
        until.min(now + BUSY_FIRST_RETRY)
    } else {
        until
    }
}

/// The result item of `m` with `outcome` and `reason`, nothing performed.
fn base_item(m: &WorkMessage, mode: Mode, outcome: Outcome, reason: String) -> ResultItem {
    ResultItem {
        run_id: m.run_id.clone(),
        account_id: m.account_id.clone(),
        account_name: m.account_name.clone(),
        account_email: m.owner_email.clone(),
        user_name: m.user_name.clone(),
        outcome,
        mode,
        reason,
        actions: Vec::new(),
        due: Vec::new(),
        new_key_id: None,
        secret_arn: None,
        owner_email: None,
        key_ages: None,
        incident: m.incident,
        quarantine_policy: None,
        at: keyrotor_shared::time::now(),
    }
}

fn item_from(m: &WorkMessage, mode: Mode, r: &UserResult) -> ResultItem {
    ResultItem {
        actions: r.performed.clone(),
        due: if r.outcome == Outcome::Planned {
            r.plan
                .actions
                .iter()
                .filter_map(|a| a.action.change().map(|c| KeyAction::new(c, &a.key_id)))
                .collect()
        } else {
            Vec::new()
        },
        new_key_id: r.new_key_id.clone(),
        secret_arn: r.secret_arn.clone(),
        owner_email: r.owner_email.clone(),
        key_ages: Some(r.key_ages(m.as_of)),
        quarantine_policy: r.quarantine_policy.clone(),
        ..base_item(m, mode, r.outcome, r.reason.clone())
    }
}

fn failed_item(m: &WorkMessage, mode: Mode, reason: &str) -> ResultItem {
    tracing::error!(error = %reason, "user failed");
    base_item(m, mode, Outcome::Failed, reason.to_string())
}

fn event_of(m: &WorkMessage, item: &ResultItem) -> ResultEvent {
    ResultEvent {
        kind: RESULT_EVENT_TYPE,
        run_id: m.run_id.clone(),
        account_id: m.account_id.clone(),
        user_name: Some(m.user_name.clone()),
        mode: item.mode,
        outcome: item.outcome,
        actions: item.actions.clone(),
        reason: item.reason.clone(),
        new_key_id: item.new_key_id.clone(),
        secret_arn: item.secret_arn.clone(),
        as_of: m.as_of,
        at: item.at,
        incident: item.incident,
        quarantine_policy: item.quarantine_policy.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_names_its_message_only_with_two_receives_left() {
        assert!(names_its_message(1, 5));
        assert!(names_its_message(3, 5));
        assert!(!names_its_message(4, 5), "a crash would leave one receive");
        assert!(!names_its_message(5, 5), "the last receive");
        assert!(!names_its_message(1, 1));
    }

    #[test]
    fn only_a_claim_held_for_another_message_lets_a_delivery_finish() {
        let me = claim_holder("111111111111", "alice");
        let other = claim_holder("111111111111", "bob");
        assert!(backed_by_another(Some(&other), &me));
        assert!(
            !backed_by_another(Some(&me), &me),
            "a second delivery of the same message is retried"
        );
        assert!(
            !backed_by_another(None, &me),
            "a claim that names no message is retried"
        );
    }

    #[test]
    fn a_first_busy_delivery_retries_soon_and_later_ones_at_the_lease_end() {
        let now = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let lease_end = now + chrono::Duration::seconds(290);
        assert_eq!(busy_retry_at(lease_end, 1, now), now + BUSY_FIRST_RETRY);
        assert_eq!(busy_retry_at(lease_end, 2, now), lease_end);
        let soon = now + chrono::Duration::seconds(3);
        assert_eq!(
            busy_retry_at(soon, 1, now),
            soon,
            "never after the lease's end"
        );
    }
}

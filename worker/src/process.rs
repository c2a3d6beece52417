//! One message, start to finish (DESIGN §3 step 4–5): decode it on its own,
//! skip it if its result is already recorded, run the user's due steps
//! through the executor, record the result and count it exactly once,
//! publish its event (outbox: a redelivery publishes what was recorded but
//! not yet published), then send the account's digest and the run's summary
//! when this was the last message.

use std::sync::Arc;

use chrono::Utc;
use keyrotor_shared::config::Settings;
use keyrotor_shared::events::{EventAction, EventSink, ResultEvent, RESULT_EVENT_TYPE};
use keyrotor_shared::executor::{skipped, ExecError, Executor, Outcome, UserRequest, UserResult};
use keyrotor_shared::message::{MessageError, WorkMessage};
use keyrotor_shared::store::results::{Progress, Recorded, ResultItem, ResultStore};

use crate::digest::{send_digest, AccountDigest, DigestLine, Mailer, Templates};

/// What became of a message that can be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Processed; its outcome.
    Done(String),
    /// Its result was already recorded (a duplicate delivery): nothing done.
    Duplicate,
}

/// Why a message must stay on the queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageFailure {
    /// The body is not a message v1: it will reach the DLQ through redrive.
    #[error("malformed message: {0}")]
    Malformed(#[from] MessageError),
    /// A transient failure (busy user, throttling, an outage): retry later.
    #[error("will retry: {0}")]
    Retry(String),
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

/// Processes messages; shared by the pool and the Lambda handler.
pub struct Worker {
    settings: Arc<Settings>,
    executor: Arc<Executor>,
    results: ResultStore,
    events: Option<Arc<dyn EventSink>>,
    email: Option<Email>,
}

impl Worker {
    /// A worker over the given parts.
    pub fn new(
        settings: Arc<Settings>,
        executor: Arc<Executor>,
        results: ResultStore,
        events: Option<Arc<dyn EventSink>>,
        email: Option<Email>,
    ) -> Worker {
        Worker {
            settings,
            executor,
            results,
            events,
            email,
        }
    }

    /// Handles one SQS body.
    pub async fn handle(&self, body: &str) -> Result<Handled, MessageFailure> {
        let m = WorkMessage::decode(body)?;
        let retry = |e: &dyn std::fmt::Display| MessageFailure::Retry(e.to_string());
        if let Some((recorded, published)) = self
            .results
            .find(&m.run_id, &m.account_id, &m.user_name)
            .await
            .map_err(|e| retry(&e))?
        {
            if published {
                return Ok(Handled::Duplicate);
            }
            // Recorded but not published: the previous delivery stopped in between.
            self.publish(&m, &recorded).await.map_err(|e| retry(&e))?;
            self.after_record(&m, None).await;
            return Ok(Handled::Duplicate);
        }

        let item = match self.execute(&m).await {
            Ok(result) => item_from(&m, &result),
            Err(e) if e.is_retryable() => return Err(retry(&e)),
            // A permanent failure is a result too: the run must still complete.
            Err(e) => failed_item(&m, &e),
        };
        let progress = match self.results.record(&item).await.map_err(|e| retry(&e))? {
            Recorded::Duplicate => return Ok(Handled::Duplicate),
            Recorded::New { account, run } => (account, run),
        };
        self.publish(&m, &item).await.map_err(|e| retry(&e))?;
        self.after_record(&m, Some(progress)).await;
        Ok(Handled::Done(item.outcome))
    }

    async fn execute(&self, m: &WorkMessage) -> Result<UserResult, ExecError> {
        let req = UserRequest {
            account_id: m.account_id.clone(),
            user_name: m.user_name.clone(),
            as_of: m.as_of,
            mode: m.mode,
            force: m.force,
        };
        if m.exempt {
            // The producer saw the user in the exemption group.
            return Ok(skipped(&req, &[], "member of the exemption group"));
        }
        self.executor.process(&req).await
    }

    /// Publishes the result's event (unless it is a `noop` and those are not
    /// published), then marks it published.
    async fn publish(
        &self,
        m: &WorkMessage,
        item: &ResultItem,
    ) -> Result<(), keyrotor_shared::error::AwsError> {
        if let Some(events) = &self.events {
            if item.outcome != "noop" || self.settings.publish_noop {
                events.publish_result(&event_of(m, item)).await?;
            }
        }
        self.results
            .mark_published(&m.run_id, &m.account_id, &m.user_name)
            .await
    }

    /// The account digest and the run summary, when this message completed
    /// them. Failures here are logged, not retried: the claims make both
    /// at-most-once, and the message's own work is done.
    async fn after_record(&self, m: &WorkMessage, progress: Option<(Progress, Progress)>) {
        let (account, run) = match progress {
            Some(p) => p,
            None => match self.results.progress(&m.run_id, &m.account_id).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(run_id = %m.run_id, error = %e, "could not read the run's progress");
                    return;
                }
            },
        };
        if account.complete() {
            if let Err(e) = self.digest(m).await {
                tracing::error!(account_id = %m.account_id, error = %e, "digest failed");
            }
        }
        if run.complete() {
            if let Err(e) = self.summary(m).await {
                tracing::error!(run_id = %m.run_id, error = %e, "run summary failed");
            }
        }
    }

    async fn summary(&self, m: &WorkMessage) -> anyhow::Result<()> {
        if !self.results.claim_summary(&m.run_id).await? {
            return Ok(());
        }
        let event = self.results.run_summary(&m.run_id).await?;
        tracing::info!(run_id = %m.run_id, done = event.done, expected = event.expected, "run complete");
        if let Some(events) = &self.events {
            events.publish_run(&event).await?;
        }
        Ok(())
    }

    async fn digest(&self, m: &WorkMessage) -> anyhow::Result<()> {
        let Some(email) = &self.email else {
            tracing::debug!(account_id = %m.account_id, "account complete; no KEYROTOR_SENDER, so no digest email");
            return Ok(());
        };
        if !self.results.claim_digest(&m.run_id, &m.account_id).await? {
            return Ok(());
        }
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
                    new_key_id: r.new_key_id,
                    secret_arn: r.secret_arn,
                    owner_email: r.owner_email,
                })
                .collect(),
        };
        let sent = send_digest(&*email.mailer, &email.templates, &email.sender, &digest).await?;
        tracing::info!(account_id = %m.account_id, emails = sent, "digest sent");
        Ok(())
    }
}

/// The result item of `m` with `outcome` and `reason`, nothing performed.
fn base_item(m: &WorkMessage, outcome: Outcome, reason: String) -> ResultItem {
    ResultItem {
        run_id: m.run_id.clone(),
        account_id: m.account_id.clone(),
        account_name: m.account_name.clone(),
        account_email: m.owner_email.clone(),
        user_name: m.user_name.clone(),
        outcome: outcome.as_str().to_string(),
        mode: m.mode.as_str().to_string(),
        reason,
        actions: Vec::new(),
        new_key_id: None,
        secret_arn: None,
        owner_email: None,
        at: Utc::now(),
    }
}

fn item_from(m: &WorkMessage, r: &UserResult) -> ResultItem {
    ResultItem {
        actions: r
            .performed
            .iter()
            .map(|p| (p.action.clone(), p.key_id.clone()))
            .collect(),
        new_key_id: r.new_key_id.clone(),
        secret_arn: r.secret_arn.clone(),
        owner_email: r.owner_email.clone(),
        ..base_item(m, r.outcome, r.reason.clone())
    }
}

fn failed_item(m: &WorkMessage, e: &ExecError) -> ResultItem {
    tracing::error!(account_id = %m.account_id, user = %m.user_name, error = %e, "user failed");
    base_item(m, Outcome::Failed, e.to_string())
}

fn event_of(m: &WorkMessage, item: &ResultItem) -> ResultEvent {
    ResultEvent {
        kind: RESULT_EVENT_TYPE,
        run_id: m.run_id.clone(),
        account_id: m.account_id.clone(),
        user_name: Some(m.user_name.clone()),
        mode: m.mode,
        outcome: item.outcome.clone(),
        actions: item
            .actions
            .iter()
            .map(|(action, key_id)| EventAction {
                action: action.clone(),
                key_id: key_id.clone(),
            })
            .collect(),
        reason: item.reason.clone(),
        new_key_id: item.new_key_id.clone(),
        secret_arn: item.secret_arn.clone(),
        as_of: m.as_of,
        at: item.at,
    }
}

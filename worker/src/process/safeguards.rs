//! The worker's safeguards beside the rotation itself: the circuit breaker
//! (read every few seconds, opened when a run's failed enforce results
//! reach `KEYROTOR_BREAKER_FAILURES`, its event published once) and the
//! trouble that restarts a rollout wave's soak.

use keyrotor_shared::domain::{Mode, Outcome};
use keyrotor_shared::error::AwsError;
use keyrotor_shared::events::{BreakerEvent, BREAKER_EVENT_TYPE};
use keyrotor_shared::executor::UserResult;
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::store::breaker::BreakerState;
use keyrotor_shared::store::results::ResultItem;

use super::{MessageFailure, Worker};

/// How long a worker trusts the circuit breaker's state it read: one read a
/// process every few seconds rather than one a message. A breaker opened
/// elsewhere holds this worker's enforce work back within this time.
const BREAKER_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);

impl Worker {
    /// Whether the circuit breaker is open, as read at most
    /// [`BREAKER_RECHECK`] ago.
    pub(super) async fn breaker_open(&self) -> Result<bool, MessageFailure> {
        let Some(breaker) = &self.breaker else {
            return Ok(false);
        };
        let now = tokio::time::Instant::now();
        if let Some((at, open)) = *self.breaker_seen.lock().expect("not poisoned") {
            if now.duration_since(at) < BREAKER_RECHECK {
                return Ok(open);
            }
        }
        let open = breaker
            .state()
            .await
            .map_err(|e| MessageFailure::retry(&e))?
            .open;
        *self.breaker_seen.lock().expect("not poisoned") = Some((now, open));
        Ok(open)
    }

    /// Records trouble in the message's rollout wave: a `failed` enforce
    /// result, or a key switched off because its adoption hold ran out.
    /// Either restarts the wave's soak, so the next wave waits.
    pub(super) async fn wave_trouble(
        &self,
        m: &WorkMessage,
        item: &ResultItem,
        result: Option<&UserResult>,
    ) -> Result<(), MessageFailure> {
        let (Some(waves), Some(wave)) = (&self.waves, m.wave) else {
            return Ok(());
        };
        let what = if item.outcome == Outcome::Failed && item.mode == Mode::Enforce {
            format!("{} / {} failed: {}", m.account_id, m.user_name, item.reason)
        } else if result.is_some_and(|r| r.hold_ran_out) {
            format!(
                "{} / {}: an adoption hold ran out (the application did not take up its new key)",
                m.account_id, m.user_name
            )
        } else {
            return Ok(());
        };
        tracing::warn!(wave, trouble = %what, "trouble in the account's rollout wave: its soak restarts");
        // The clock of the soak: the run's evaluation time, or the real
        // time if later (as the ledger's times).
        let at = keyrotor_shared::time::ledger_time(m.as_of, self.settings.allow_future_as_of);
        waves
            .trouble(wave, &what, at)
            .await
            .map_err(|e| MessageFailure::retry(&e))
    }

    /// After a `failed` enforce result is recorded (its count added to the
    /// run's in the same transaction): opens the breaker when the run's
    /// failures reach `KEYROTOR_BREAKER_FAILURES`, and publishes
    /// `keyrotor.breaker.v1` once. Run again by a redelivery, so an opening
    /// whose event was not sent is sent then.
    pub(super) async fn count_against_breaker(
        &self,
        m: &WorkMessage,
        item: &ResultItem,
    ) -> Result<(), MessageFailure> {
        let Some(breaker) = &self.breaker else {
            return Ok(());
        };
        let threshold = self.settings.breaker_failures;
        if item.outcome != Outcome::Failed || item.mode != Mode::Enforce {
            return Ok(());
        }
        let retry = |e: AwsError| MessageFailure::retry(&e);
        let run = breaker.run_failures(&m.run_id).await.map_err(retry)?;
        if !threshold.trips(run.failures, run.expected) {
            return Ok(());
        }
        let state = match breaker
            .open(&m.run_id, run.failures, &threshold.to_string())
            .await
            .map_err(retry)?
        {
            Some(opened) => {
                tracing::error!(
                    failures = run.failures,
                    expected = run.expected,
                    threshold = %threshold,
                    "circuit breaker opened: enforce runs act in audit mode until `keyrotor breaker reset`"
                );
                opened
            }
            None => breaker.state().await.map_err(retry)?,
        };
        *self.breaker_seen.lock().expect("not poisoned") =
            Some((tokio::time::Instant::now(), state.open));
        if !state.open || state.published || state.run_id.as_deref() != Some(m.run_id.as_str()) {
            return Ok(());
        }
        if let Some(events) = &self.events {
            events
                .publish_breaker(&breaker_event(&state))
                .await
                .map_err(retry)?;
        }
        breaker.mark_published().await.map_err(retry)
    }
}

fn breaker_event(state: &BreakerState) -> BreakerEvent {
    BreakerEvent {
        kind: BREAKER_EVENT_TYPE,
        state: "open",
        run_id: state.run_id.clone().unwrap_or_default(),
        failures: state.failures,
        threshold: state.threshold.clone().unwrap_or_default(),
        opened_at: state.opened_at,
        at: keyrotor_shared::time::now(),
    }
}

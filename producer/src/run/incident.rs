//! An exposed key, reported by AWS Health: a run of its own for the
//! key's user, with a `force` message marked `incident` and naming the key,
//! so that a worker replaces the key at once and then switches the exposed
//! one off (`KEYROTOR_EXPOSED_KEY_ACTION`). The message goes through the
//! same queue, signature and checks as any other; waves do not hold it
//! back (an exposed key is no rollout), the circuit breaker does.

use chrono::{DateTime, SubsecRound, Utc};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::incident::Exposure;
use serde::Serialize;

use super::{new_run_id, ProduceError, ProduceRequest, Producer, BATCH};
use crate::inventory::AccountInfo;

/// A user whose key was reported exposed, and that key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExposedUser {
    /// The IAM user.
    pub user_name: String,
    /// The exposed key.
    pub key_id: String,
}

/// What an exposed-key event produced (the producer Lambda's answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentSummary {
    /// The run, when a user was found.
    pub run_id: Option<String>,
    /// The account.
    pub account_id: String,
    /// The Health event's type code.
    pub code: String,
    /// The mode the run was produced in.
    pub mode: Mode,
    /// Enforce was asked for, but the circuit breaker is open.
    pub held_by_breaker: bool,
    /// The users enqueued, with their exposed key.
    pub users: Vec<ExposedUser>,
    /// Keys IAM does not know in the account (reported, not acted on).
    pub unknown_keys: Vec<String>,
}

impl Producer {
    /// Enqueues the rotation of every user whose key `exposure` names, in
    /// `mode` at `as_of`. An account out of keyrotor's scope is refused.
    pub async fn incident(
        &self,
        exposure: &Exposure,
        mode: Mode,
        as_of: DateTime<Utc>,
    ) -> Result<IncidentSummary, ProduceError> {
        let as_of = as_of.trunc_subsecs(3);
        keyrotor_shared::time::check_enforce_as_of(
            as_of,
            mode == Mode::Enforce,
            self.settings.allow_future_as_of,
            keyrotor_shared::time::now(),
        )?;
        let held = mode == Mode::Enforce && self.breaker_open().await?;
        let mode = if held { Mode::Audit } else { mode };
        let account_id = &exposure.account_id;
        let account = self
            .inventory
            .accounts()
            .await
            .map_err(ProduceError::Inventory)?
            .into_iter()
            .find(|a| a.id == *account_id)
            .unwrap_or_else(|| AccountInfo {
                id: account_id.clone(),
                name: account_id.clone(),
                email: None,
                active: true,
                in_organizations: false,
                wave: None,
            });
        let req = ProduceRequest {
            run_id: None,
            as_of,
            mode,
            accounts: None,
            force_users: Vec::new(),
        };
        if let Some(why) = self.out_of_scope(&req, &account) {
            return Err(ProduceError::OutOfScope {
                account_id: account_id.clone(),
                why,
            });
        }
        let mut summary = IncidentSummary {
            run_id: None,
            account_id: account_id.clone(),
            code: exposure.code.clone(),
            mode,
            held_by_breaker: held,
            users: Vec::new(),
            unknown_keys: Vec::new(),
        };
        for key_id in &exposure.key_ids {
            match self
                .directory
                .owner_of_key(account_id, key_id)
                .await
                .map_err(ProduceError::Inventory)?
            {
                Some(user_name) => summary.users.push(ExposedUser {
                    user_name,
                    key_id: key_id.clone(),
                }),
                None => summary.unknown_keys.push(key_id.clone()),
            }
        }
        tracing::error!(
            account_id = %account_id,
            code = %exposure.code,
            users = summary.users.len(),
            unknown_keys = ?summary.unknown_keys,
            "exposed access key reported by AWS Health"
        );
        if summary.users.is_empty() {
            return Ok(summary);
        }
        let run_id = format!("{}-incident", new_run_id());
        let req = ProduceRequest {
            run_id: Some(run_id.clone()),
            force_users: summary
                .users
                .iter()
                .map(|u| (account_id.clone(), u.user_name.clone()))
                .collect(),
            ..req
        };
        let key = self
            .runs
            .start(&run_id, as_of, mode, &req.force_users)
            .await
            .map_err(ProduceError::Runs)?;
        let messages: Vec<_> = summary
            .users
            .iter()
            .map(|u| {
                let mut m = self.message(
                    &run_id,
                    &req,
                    &account,
                    &Default::default(),
                    u.user_name.clone(),
                    (0, 1),
                );
                m.incident = true;
                m.exposed_key = Some(u.key_id.clone());
                m.sign(&key);
                m
            })
            .collect();
        for batch in messages.chunks(BATCH) {
            self.enqueuer
                .send(batch)
                .await
                .map_err(|e| ProduceError::Runs(e.error))?;
        }
        let n = messages.len() as i64;
        let account_done = self
            .runs
            .account_enqueued(&run_id, account_id, &account.name, n, 1)
            .await
            .map_err(ProduceError::Runs)?;
        let run_done = self
            .runs
            .finish_enqueue(&run_id, 1, n)
            .await
            .map_err(ProduceError::Runs)?;
        if account_done || run_done {
            self.nudge(messages.last(), "incident-complete").await;
        }
        summary.run_id = Some(run_id);
        Ok(summary)
    }
}

//! The rotation executor (DESIGN §5): for one user, under the user's lock,
//! recover an interrupted rotation, ask the policy what is due and do it,
//! recording every step in the ledger. `plan` is the same evaluation without
//! the lock and without changes.
//!
//! One way through: [`Executor::process`] (the AWS ports and the lock's
//! lifecycle: take it, keep it alive, release it) → `steps::LockedRun`
//! (recovery, then each due step, written ahead) → [`report`] (the outcome
//! and reason of what was done).

pub mod documents;
mod exemption;
mod heartbeat;
pub mod report;
mod steps;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::aws::{
    AwsContext, IamPort, IamShare, KeyVerifier, Limits, SdkIam, SdkSecrets, SecretsPort,
    StsVerifier,
};
use crate::config::Settings;
use crate::domain::{Action, KeyAction, KeyState, KeyStatus, Mode};
use crate::error::AwsError;
use crate::incident::{ExposedKeyAction, QUARANTINE_POLICY_PREFIX};
use crate::policy::{self, ActionKind, Evaluation, UserFacts};
use crate::store::{LedgerPort, RunWork, StoreError, UserRecord};

pub use exemption::exemption;
use report::{outcome_of, plan_view, reason_of, skipped};
pub use report::{ActionView, KeyView, UserPlan, UserResult};

/// The AWS ports for one account.
#[derive(Clone)]
pub struct AccountPorts {
    /// IAM of the user's account.
    pub iam: Arc<dyn IamPort>,
    /// Secrets Manager where the user's secret lives.
    pub secrets: Arc<dyn SecretsPort>,
    /// Checks new keys.
    pub verifier: Arc<dyn KeyVerifier>,
}

/// Gives the ports for an account (the SDK one assumes the member role).
#[async_trait]
pub trait PortsFactory: Send + Sync {
    /// The ports for `account_id`, IAM limited to `share` of its budget.
    async fn ports(&self, account_id: &str, share: IamShare) -> AccountPorts;
    /// Secrets Manager in `secrets_account` (a central secrets account)
    /// or, when `None`, in the user's own `account_id`: where an interrupted
    /// rotation's intent says its secret was to be stored.
    async fn secrets_in(
        &self,
        account_id: &str,
        secrets_account: Option<&str>,
    ) -> Arc<dyn SecretsPort>;
}

/// [`PortsFactory`] over the AWS SDK: IAM through the member role of the
/// user's account; Secrets Manager there too, or in the central secrets
/// account when one is configured.
pub struct SdkPorts {
    aws: AwsContext,
    secrets_account: Option<String>,
    limits: Option<Limits>,
}

impl SdkPorts {
    /// Ports built from `aws` for the settings' secrets account choice.
    pub fn new(aws: AwsContext, settings: &Settings) -> SdkPorts {
        SdkPorts {
            aws,
            secrets_account: settings.secrets_account.as_ref().map(|a| a.to_string()),
            limits: None,
        }
    }

    /// The same ports behind the worker's rate limits.
    pub fn limited(mut self, limits: Limits) -> SdkPorts {
        self.limits = Some(limits);
        self
    }
}

#[async_trait]
impl PortsFactory for SdkPorts {
    async fn ports(&self, account_id: &str, share: IamShare) -> AccountPorts {
        let secrets_in = self.secrets_account.as_deref().unwrap_or(account_id);
        let iam: Arc<dyn IamPort> = Arc::new(SdkIam::new(self.aws.iam_in(account_id).await));
        let secrets: Arc<dyn SecretsPort> =
            Arc::new(SdkSecrets::new(self.aws.secrets_in(secrets_in).await));
        let (iam, secrets) = match &self.limits {
            Some(limits) => {
                let member = match self.secrets_account {
                    Some(_) => None,
                    None => Some((account_id, share)),
                };
                (
                    limits.iam(account_id, share, iam),
                    limits.secrets(member, secrets),
                )
            }
            None => (iam, secrets),
        };
        AccountPorts {
            iam,
            secrets,
            verifier: Arc::new(StsVerifier::new(self.aws.base())),
        }
    }

    async fn secrets_in(
        &self,
        account_id: &str,
        secrets_account: Option<&str>,
    ) -> Arc<dyn SecretsPort> {
        let client = self
            .aws
            .secrets_in(secrets_account.unwrap_or(account_id))
            .await;
        let secrets: Arc<dyn SecretsPort> = Arc::new(SdkSecrets::new(client));
        // A rare path (the secrets account changed mid-rotation): the
        // member account's whole write budget, not a group's share.
        let member = match secrets_account {
            Some(_) => None,
            None => Some((account_id, IamShare::WHOLE)),
        };
        match &self.limits {
            Some(limits) => limits.secrets(member, secrets),
            None => secrets,
        }
    }
}

/// One user to evaluate or process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRequest {
    /// The member account.
    pub account_id: String,
    /// The IAM user.
    pub user_name: String,
    /// The policy's "now" (and the time recorded in the ledger).
    pub as_of: DateTime<Utc>,
    /// Audit or enforce.
    pub mode: Mode,
    /// Rotate now whatever the age.
    pub force: bool,
    /// The run this processing belongs to: recorded in the ledger with every
    /// IAM change, so that a redelivery of the run reports that work.
    pub run_id: Option<String>,
    /// An exemption the producer saw (the exemption group), if any.
    pub exempt: Option<String>,
    /// The share of the account's IAM budget this request may use.
    pub iam_share: IamShare,
    /// An incident: this key of the user was reported exposed (AWS
    /// Health, or `rotate --exposed`).
    pub exposed_key: Option<String>,
}

/// Why processing a user failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No such user in the account.
    #[error("user {user_name} not found in account {account_id}")]
    UserNotFound {
        /// The account.
        account_id: String,
        /// The user.
        user_name: String,
    },
    /// Another worker holds the user: try again once its lease ends.
    #[error("user is being processed by another worker ({holder}, lease until {until_ms} ms)")]
    Busy {
        /// The other holder.
        holder: String,
        /// When its lease ends (epoch ms).
        until_ms: i64,
    },
    /// Our lock was lost mid-way; we stopped before doing more.
    #[error("lost the user's lock; stopped")]
    LockLost,
    /// The new key could not be stored; it was deleted again.
    #[error("new key could not be stored, so it was deleted: {0}")]
    NotStored(AwsError),
    /// An AWS call failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// The request cannot succeed as configured (no key was created).
    #[error("{0}")]
    Invalid(String),
    /// The state table failed.
    #[error("state store: {0}")]
    Store(StoreError),
    /// Stopped part-way, as a worker that died there, so that its caller
    /// could answer before a deadline (the Lambda invocation's).
    #[error("stopped before the invocation's deadline")]
    Stopped,
}

impl From<StoreError> for ExecError {
    fn from(e: StoreError) -> ExecError {
        match e {
            StoreError::Locked { holder, until_ms } => ExecError::Busy { holder, until_ms },
            StoreError::LockLost => ExecError::LockLost,
            other => ExecError::Store(other),
        }
    }
}

impl ExecError {
    /// Whether the same request may succeed later without anyone's help.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecError::Busy { .. } | ExecError::LockLost | ExecError::Stopped => true,
            ExecError::Aws(e) | ExecError::NotStored(e) => e.is_retryable(),
            ExecError::Store(StoreError::Aws(e)) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Processes users: the one code path behind `rotate`, the worker and `plan`.
pub struct Executor {
    settings: Arc<Settings>,
    ports: Arc<dyn PortsFactory>,
    ledger: Arc<dyn LedgerPort>,
    owner: String,
}

impl Executor {
    /// An executor whose locks are held as `owner` (unique per process).
    pub fn new(
        settings: Arc<Settings>,
        ports: Arc<dyn PortsFactory>,
        ledger: Arc<dyn LedgerPort>,
        owner: impl Into<String>,
    ) -> Executor {
        Executor {
            settings,
            ports,
            ledger,
            owner: owner.into(),
        }
    }

    /// What run `run_id` already did to the user, as the ledger recorded it
    /// with each IAM change (`None`: nothing, or another run's work).
    pub async fn recorded_work(
        &self,
        account_id: &str,
        user_name: &str,
        run_id: &str,
    ) -> Result<Option<RunWork>, StoreError> {
        Ok(self
            .ledger
            .read(account_id, user_name)
            .await?
            .and_then(|r| r.last_run)
            .filter(|w| w.run_id == run_id && !w.performed.is_empty()))
    }

    /// A unique lock-owner id for this process.
    pub fn process_owner_id() -> String {
        format!("keyrotor-{}-{}", std::process::id(), uuid::Uuid::new_v4())
    }

    /// What is due for the user at `req.as_of`, changing nothing.
    pub async fn plan(&self, req: &UserRequest) -> Result<UserPlan, ExecError> {
        let ports = self.ports.ports(&req.account_id, req.iam_share).await;
        let user = get_user(&*ports.iam, req).await?;
        let exempt = exemption(&self.settings, &*ports.iam, &user).await?;
        let keys = ports.iam.list_keys(&req.user_name).await?;
        let record = self
            .ledger
            .read(&req.account_id, &req.user_name)
            .await?
            .unwrap_or_default();
        let evaluation = self.evaluate(&keys, &record, exempt.as_deref(), req);
        Ok(plan_view(req, &keys, &evaluation))
    }

    /// Performs what is due for the user (or, in audit mode, records only
    /// what keyrotor itself observed: warnings and first-seen deactivations).
    pub async fn process(&self, req: &UserRequest) -> Result<UserResult, ExecError> {
        let ports = self.ports.ports(&req.account_id, req.iam_share).await;
        let user = get_user(&*ports.iam, req).await?;
        let exempt = match &req.exempt {
            Some(seen) => Some(seen.clone()),
            None => exemption(&self.settings, &*ports.iam, &user).await?,
        };
        if let Some(reason) = &exempt {
            // An exempt user is not locked, unless a rotation of theirs was
            // interrupted before they became exempt: that still needs recovery.
            let interrupted = self
                .ledger
                .read(&req.account_id, &req.user_name)
                .await?
                .is_some_and(|r| r.intent.is_some());
            if !interrupted || req.mode == Mode::Audit {
                let keys = ports.iam.list_keys(&req.user_name).await?;
                let owner_email = user.tag(&self.settings.owner_tag).map(str::to_string);
                return Ok(UserResult {
                    owner_email,
                    ..skipped(req, &keys, reason)
                });
            }
        }

        // The lease runs from when it was asked for, not from the answer.
        let asked = tokio::time::Instant::now();
        let (lock, record) = self
            .ledger
            .acquire(
                &req.account_id,
                &req.user_name,
                &self.owner,
                self.settings.lock_lease,
            )
            .await?;
        let heartbeat = heartbeat::Heartbeat::start(self.ledger.clone(), lock.clone(), asked);
        // A redelivery of a run that already changed something reports it.
        let earlier = record
            .last_run
            .as_ref()
            .filter(|w| req.run_id.as_deref() == Some(w.run_id.as_str()))
            .cloned()
            .unwrap_or_default();
        let mut run = steps::LockedRun {
            settings: &self.settings,
            factory: &*self.ports,
            ports: &ports,
            ledger: &*self.ledger,
            lock: &lock,
            heartbeat: &heartbeat,
            user: &user,
            req,
            record,
            performed: earlier.performed,
            new_key_id: earlier.new_key_id,
            secret_arn: earlier.secret_arn,
            notes: Vec::new(),
            pending: None,
            warnings: earlier.warnings,
            deferred: None,
            rotation_unwritten: false,
        };
        let announced = earlier.pending;
        let result = match &exempt {
            Some(reason) => run
                .recover(&run.ports.iam.list_keys(&req.user_name).await?)
                .await
                .map(|keys| skipped(req, &keys, reason)),
            None => self.run_locked(&mut run, announced).await,
        };
        let unwritten = run.into_unwritten();
        heartbeat.stop().await;
        // Release even after a failure so the next delivery need not wait
        // out the lease, with the last record in the same request.
        let result = match unwritten.close(&*self.ledger, &lock).await {
            Ok(()) => result,
            // What was done did not reach the ledger: fail as that write
            // would have (the next delivery finds out from IAM).
            Err(e) => match result {
                Ok(_) => Err(e.into()),
                Err(first) => {
                    tracing::warn!(error = %e, "could not record the work done before the failure");
                    Err(first)
                }
            },
        };
        let owner_email = user.tag(&self.settings.owner_tag).map(str::to_string);
        result.map(|r| UserResult { owner_email, ..r })
    }

    async fn run_locked(
        &self,
        run: &mut steps::LockedRun<'_>,
        announced: Option<KeyAction>,
    ) -> Result<UserResult, ExecError> {
        let req = run.req;
        let mut keys = run.ports.iam.list_key_metadata(&req.user_name).await?;
        let mut last_use_read = false;
        if run.record.intent.is_some() {
            // Recovery tells an orphan from a key someone signed with by
            // its last use.
            keys = run.ports.iam.with_last_use(keys).await?;
            last_use_read = true;
            keys = run.recover(&keys).await?;
        }
        if let Some(announced) = announced {
            run.confirm_announced(announced, &keys);
        }
        let mut changed = false;
        let now = crate::time::ledger_time(req.as_of, self.settings.allow_future_as_of);
        for key in keys.iter().filter(|k| k.status == KeyStatus::Active) {
            // Switched off (by keyrotor or a person), now on again: a person
            // decided it is needed. The stale switch-off date goes, and the
            // hold starts afresh from now (the policy reads
            // `reactivated_at`); its warnings may go out again.
            if run
                .record
                .history
                .deactivated_at
                .remove(&key.key_id)
                .is_some()
            {
                run.record
                    .history
                    .reactivated_at
                    .insert(key.key_id.clone(), now);
                for milestone in [
                    ActionKind::Deactivate,
                    ActionKind::Retire,
                    ActionKind::Delete,
                ] {
                    run.record
                        .history
                        .warnings_sent
                        .remove(&policy::warning_id(&key.key_id, milestone));
                }
                run.notes.push(format!(
                    "key {} was switched back on by a person after it was switched off; it is not switched off again before a new install grace (and, while its replacement is unused, the adoption hold) has run from now",
                    key.key_id
                ));
                changed = true;
            }
        }
        for key in keys.iter().filter(|k| k.status == KeyStatus::Inactive) {
            // A key switched off outside keyrotor: its recovery grace starts
            // now (never earlier than the real time).
            if !run.record.history.deactivated_at.contains_key(&key.key_id) {
                run.record
                    .history
                    .deactivated_at
                    .insert(key.key_id.clone(), now);
                run.record.history.reactivated_at.remove(&key.key_id);
                changed = true;
            }
        }
        if !last_use_read && self.last_use_matters(&keys, &run.record, req) {
            keys = run.ports.iam.with_last_use(keys).await?;
        }
        let evaluation = self.evaluate(&keys, &run.record, None, req);
        // A warning is news once: in the run that records it, including a
        // redelivery of that run whose first result was never recorded.
        let mut warned = false;
        for action in evaluation
            .actions
            .iter()
            .filter(|a| a.kind == ActionKind::Warn)
        {
            let id = action.warning_id();
            if run.record.history.warnings_sent.insert(id.clone()) {
                warned = true;
                changed = true;
                run.warnings.push(id);
            } else if run.warnings.contains(&id) {
                warned = true;
            }
        }
        let due: Vec<_> = evaluation.due_now(req.as_of).cloned().collect();
        if req.mode == Mode::Enforce {
            for action in &due {
                // `keys` follows each change: IAM is not read again.
                run.perform(action, &mut keys).await?;
            }
        }
        let quarantine = match &req.exposed_key {
            Some(exposed) => self.incident(req, exposed, run, &mut keys).await?,
            None => None,
        };
        // Forget keys that no longer exist so the ledger does not grow.
        let ids: Vec<&str> = keys.iter().map(|k| k.key_id.as_str()).collect();
        let history = &mut run.record.history;
        let before = history.deactivated_at.len() + history.reactivated_at.len();
        history
            .deactivated_at
            .retain(|k, _| ids.contains(&k.as_str()));
        history
            .reactivated_at
            .retain(|k, _| ids.contains(&k.as_str()));
        changed |= before != history.deactivated_at.len() + history.reactivated_at.len();
        // An audit run evaluated in the future (a forecast) must not record
        // warnings or first-seen dates that have not happened yet.
        let forecast = req.mode == Mode::Audit && req.as_of > crate::time::now();
        if changed && !forecast {
            // Written with the lock's release.
            run.save_later();
        }

        let outcome = outcome_of(req.mode, &run.performed, &due, &evaluation, warned);
        let reason = reason_of(outcome, &evaluation, &run.notes);
        Ok(UserResult {
            plan: plan_view(req, &keys, &evaluation),
            outcome,
            new_key_id: run.new_key_id.clone(),
            secret_arn: run.secret_arn.clone(),
            hold_ran_out: due.iter().any(|a| {
                a.ends_hold
                    && run
                        .performed
                        .iter()
                        .any(|p| p.action == Action::Deactivate && p.key_id == a.key_id)
            }),
            performed: run.performed.clone(),
            owner_email: None,
            reason,
            quarantine_policy: quarantine,
        })
    }

    /// An exposed key, after the run's due steps (a forced rotation of it
    /// among them): switched off at once once its replacement is stored
    /// (`KEYROTOR_EXPOSED_KEY_ACTION=deactivate`), never before. The
    /// replacement is the key the ledger last stored, when it is another
    /// active key. AWS's quarantine policy on the user is reported, not
    /// removed; its name is returned.
    async fn incident(
        &self,
        req: &UserRequest,
        exposed: &str,
        run: &mut steps::LockedRun<'_>,
        keys: &mut Vec<KeyState>,
    ) -> Result<Option<String>, ExecError> {
        let active = |id: &str, keys: &[KeyState]| {
            keys.iter()
                .any(|k| k.key_id == id && k.status == KeyStatus::Active)
        };
        let replacement = run
            .record
            .new_key_id
            .clone()
            .filter(|k| k != exposed && active(k, keys));
        if !active(exposed, keys) {
            run.notes.push(format!(
                "incident: the exposed key {exposed} is no longer active"
            ));
        } else if replacement.is_none() {
            run.notes.push(format!(
                "incident: the exposed key {exposed} has no stored replacement, so it stays on (switching it off would break its application); act by hand"
            ));
        } else if self.settings.exposed_key_action == ExposedKeyAction::Hold {
            run.notes.push(format!(
                "incident: the exposed key {exposed} was replaced; KEYROTOR_EXPOSED_KEY_ACTION=hold leaves it to the install grace"
            ));
        } else if req.mode == Mode::Enforce {
            let switch_off = policy::PlannedAction {
                kind: ActionKind::Deactivate,
                key_id: exposed.to_string(),
                due: req.as_of,
                reason: "reported exposed by AWS".into(),
                milestone: None,
                ends_hold: false,
            };
            run.perform(&switch_off, keys).await?;
            run.notes.push(format!(
                "incident: the exposed key {exposed} was switched off at once; its replacement is stored"
            ));
        } else {
            run.notes.push(format!(
                "incident: the exposed key {exposed} would be switched off at once (audit)"
            ));
        }
        let quarantine = run
            .ports
            .iam
            .attached_policy_names(&req.user_name)
            .await?
            .into_iter()
            .find(|name| name.starts_with(QUARANTINE_POLICY_PREFIX));
        if let Some(policy) = &quarantine {
            run.notes.push(format!(
                "AWS attached {policy} to the user, which also restricts its new key; keyrotor leaves it: once the application uses the new key, detach it (aws iam detach-user-policy --user-name {} --policy-arn arn:aws:iam::aws:policy/{policy})",
                req.user_name
            ));
        }
        Ok(quarantine)
    }

    fn evaluate(
        &self,
        keys: &[KeyState],
        record: &UserRecord,
        exempt: Option<&str>,
        req: &UserRequest,
    ) -> Evaluation {
        let facts = facts(keys, record, exempt, req);
        policy::evaluate(&self.settings.policy, &facts, req.as_of)
    }

    /// Whether the keys' last use (not read yet) can change the plan: one
    /// `GetAccessKeyLastUsed` a key is spent only then (see
    /// [`policy::last_use_matters`]).
    fn last_use_matters(&self, keys: &[KeyState], record: &UserRecord, req: &UserRequest) -> bool {
        let facts = facts(keys, record, None, req);
        policy::last_use_matters(&self.settings.policy, &facts, req.as_of)
    }
}

/// What the policy is given for the request. An incident forces the
/// rotation of the exposed key only while that key is active: once it is
/// off or gone, nothing is rotated.
fn facts<'a>(
    keys: &'a [KeyState],
    record: &'a UserRecord,
    exempt: Option<&'a str>,
    req: &UserRequest,
) -> UserFacts<'a> {
    let force = req.force
        && req.exposed_key.as_ref().is_none_or(|exposed| {
            keys.iter()
                .any(|k| k.key_id == *exposed && k.status == KeyStatus::Active)
        });
    UserFacts {
        keys,
        history: &record.history,
        exempt,
        force,
    }
}

async fn get_user(iam: &dyn IamPort, req: &UserRequest) -> Result<crate::aws::UserInfo, ExecError> {
    iam.get_user(&req.user_name).await.map_err(|e| match e {
        AwsError::NotFound { .. } => ExecError::UserNotFound {
            account_id: req.account_id.clone(),
            user_name: req.user_name.clone(),
        },
        other => other.into(),
    })
}

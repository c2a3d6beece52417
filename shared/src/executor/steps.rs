//! The steps performed under a user's lock: recovery of an interrupted
//! rotation, and each due action. Every ledger write is fenced, so a worker
//! that lost its lease cannot record anything.
//!
//! What must be in the ledger *before* a call is written at once: the
//! intent before `CreateAccessKey`, the announcement before a key is
//! switched off or deleted. What records a call's success is written with
//! the next write instead (the next announcement or intent, or the one that
//! releases the lock): until then the intent or the announcement stands,
//! and a redelivery after a crash asks IAM and Secrets Manager what
//! happened, exactly as after a crash right after the call. IAM is read
//! once per processing; after each of its own changes the executor knows
//! the keys' new state without reading them again.

use chrono::Utc;
use secrecy::SecretString;

use super::documents::{
    read_own_secret_policy_arn, resource_policy, secret_value, version_token,
    READ_OWN_SECRET_POLICY,
};
use super::heartbeat::Heartbeat;
use super::{AccountPorts, ExecError, UserRequest};
use crate::aws::{StoreSecret, UserInfo};
use crate::config::Settings;
use crate::domain::{Action, KeyAction, KeyState, KeyStatus, Mode, Verification};
use crate::policy::{ActionKind, PlannedAction};
use crate::store::{Intent, LedgerPort, Lock, RunWork, StoreError, UserRecord};

/// The state of one locked processing of a user.
pub(super) struct LockedRun<'a> {
    pub settings: &'a Settings,
    pub factory: &'a dyn super::PortsFactory,
    pub ports: &'a AccountPorts,
    pub ledger: &'a dyn LedgerPort,
    pub lock: &'a Lock,
    pub heartbeat: &'a Heartbeat,
    pub user: &'a UserInfo,
    pub req: &'a UserRequest,
    pub record: UserRecord,
    pub performed: Vec<KeyAction>,
    pub new_key_id: Option<String>,
    pub secret_arn: Option<String>,
    pub notes: Vec<String>,
    /// The IAM change about to be made (see [`RunWork::pending`]).
    pub pending: Option<KeyAction>,
    /// The warnings this run recorded as sent (see [`RunWork::warnings`]).
    pub warnings: Vec<String>,
    /// The ledger as it is to be written once the next write goes out, when
    /// a step's record is waiting for it: what an immediate write would
    /// have written at that moment (see [`LockedRun::save_later`]).
    pub deferred: Option<UserRecord>,
    /// A rotation recorded in memory but not yet in the ledger (for the
    /// `after-record-rotation` failpoint, which fires once it is).
    pub rotation_unwritten: bool,
}

impl LockedRun<'_> {
    fn secret_name(&self) -> String {
        self.settings
            .secret_name(&self.req.account_id, &self.req.user_name)
    }

    fn ensure_locked(&self) -> Result<(), ExecError> {
        if self.heartbeat.is_lost() {
            Err(ExecError::LockLost)
        } else {
            Ok(())
        }
    }

    /// The time a change made now is recorded at (see [`crate::time::ledger_time`]).
    fn change_time(&self) -> chrono::DateTime<Utc> {
        crate::time::ledger_time(self.req.as_of, self.settings.allow_future_as_of)
    }

    /// Puts this run's work so far into the record: the write that records
    /// an IAM change also records what the run did, so a redelivery can
    /// report it.
    fn stamp_run_work(&mut self) {
        let has_work =
            !self.performed.is_empty() || self.pending.is_some() || !self.warnings.is_empty();
        if let (Some(run_id), true) = (&self.req.run_id, has_work) {
            self.record.last_run = Some(RunWork {
                run_id: run_id.clone(),
                performed: self.performed.clone(),
                new_key_id: self.new_key_id.clone(),
                secret_arn: self.secret_arn.clone(),
                pending: self.pending.clone(),
                warnings: self.warnings.clone(),
            });
        }
    }

    /// Writes the ledger under the lock (fenced) now, with this run's work
    /// so far: for what must be recorded before the next call to AWS.
    pub async fn save(&mut self) -> Result<(), ExecError> {
        self.stamp_run_work();
        self.ledger.write(self.lock, &self.record).await?;
        // What was deferred went out with it.
        self.deferred = None;
        self.written();
        Ok(())
    }

    /// Records the current state with the next write instead of a write of
    /// its own: for the record of a change already made, whose intent or
    /// announcement is in the ledger. The record is taken as it stands
    /// now, so a later failure writes exactly this (see [`Unwritten::close`]).
    pub fn save_later(&mut self) {
        self.stamp_run_work();
        self.deferred = Some(self.record.clone());
    }

    fn written(&mut self) {
        if std::mem::take(&mut self.rotation_unwritten) {
            rotation_written();
        }
    }

    /// What is left to write when the processing ends (see [`Unwritten::close`]).
    pub fn into_unwritten(self) -> Unwritten {
        Unwritten {
            record: self.deferred,
            rotation: self.rotation_unwritten,
        }
    }

    /// Finishes or undoes a rotation that stopped between its intent and its
    /// record (DESIGN §5): a key the intent did not know is either stored
    /// (finish: record it) or an orphan (delete it). Returns the keys after
    /// (`keys` less the orphans it deleted: no second read of IAM).
    pub async fn recover(&mut self, keys: &[KeyState]) -> Result<Vec<KeyState>, ExecError> {
        let Some(intent) = self.record.intent.clone() else {
            return Ok(keys.to_vec());
        };
        if self.req.mode == Mode::Audit {
            self.notes.push(
                "an interrupted rotation was found; the next enforce run will finish or undo it"
                    .into(),
            );
            return Ok(keys.to_vec());
        }
        let unknown: Vec<&KeyState> = keys
            .iter()
            .filter(|k| !intent.known_keys.contains(&k.key_id))
            .collect();
        // Where this rotation meant to store the key, whatever today's
        // settings say (older intents did not record it: today's, then).
        let name = intent
            .secret_name
            .clone()
            .unwrap_or_else(|| self.secret_name());
        let configured = self
            .settings
            .secrets_account
            .as_ref()
            .map(|a| a.to_string());
        let secrets = if intent.secret_name.is_some() && intent.secrets_account != configured {
            self.factory
                .secrets_in(&self.req.account_id, intent.secrets_account.as_deref())
                .await
        } else {
            self.ports.secrets.clone()
        };
        let secret = if unknown.is_empty() {
            None
        } else {
            secrets.describe(&name).await?
        };
        let mut deleted = Vec::new();
        for key in unknown {
            let token = version_token(&key.key_id);
            match &secret {
                Some(info) if info.version_ids.contains(&token) => {
                    tracing::info!(key_id = %key.key_id, "finishing an interrupted rotation: the key is stored");
                    self.apply_access_policies(&*secrets, &info.arn).await?;
                    self.record.new_key_id = Some(key.key_id.clone());
                    self.record.rotated_at = Some(intent.at);
                    self.record.secret_arn = Some(info.arn.clone());
                    self.record.secret_version = Some(token);
                    if self.settings.verify_new_key {
                        // The verification may have run before the stop: its
                        // STS use must not pass for adoption.
                        self.record.history.verification = Some(Verification {
                            key_id: key.key_id.clone(),
                            at: verification_time(intent.at.max(self.change_time())),
                        });
                    }
                    self.new_key_id = Some(key.key_id.clone());
                    self.secret_arn = Some(info.arn.clone());
                    self.performed.push(KeyAction::new(
                        Action::Rotate,
                        self.record.old_key_id.clone().unwrap_or_default(),
                    ));
                }
                // A key someone has signed with is not ours to delete: an
                // orphan was never stored, so nobody can have used it.
                _ if key.last_used.is_some() => {
                    self.notes.push(format!(
                        "key {} appeared during an interrupted rotation but has been used; left alone",
                        key.key_id
                    ));
                }
                _ => {
                    self.announce(Action::DeleteOrphan, &key.key_id).await?;
                    tracing::warn!(key_id = %key.key_id, "deleting an orphan key: created by an interrupted rotation, never stored");
                    self.ports
                        .iam
                        .delete_key(&self.req.user_name, &key.key_id)
                        .await?;
                    deleted.push(key.key_id.clone());
                    self.performed
                        .push(KeyAction::new(Action::DeleteOrphan, key.key_id.clone()));
                }
            }
        }
        self.record.intent = None;
        self.save_later();
        Ok(keys
            .iter()
            .filter(|k| !deleted.contains(&k.key_id))
            .cloned()
            .collect())
    }

    /// Records the IAM change about to be made, before making it.
    async fn announce(&mut self, action: Action, key_id: &str) -> Result<(), ExecError> {
        if self.req.run_id.is_some() {
            self.pending = Some(KeyAction::new(action, key_id));
            self.save().await?;
            self.pending = None;
        }
        self.ensure_locked()
    }

    /// Whether the IAM change an earlier delivery of this run announced,
    /// but did not record, happened (a crash in between): IAM tells. If it
    /// did, it is reported as this run's work.
    pub fn confirm_announced(&mut self, announced: KeyAction, keys: &[KeyState]) {
        let key = keys.iter().find(|k| k.key_id == announced.key_id);
        let happened = match announced.action {
            Action::Delete | Action::DeleteOrphan => key.is_none(),
            Action::Deactivate | Action::Retire => {
                key.is_some_and(|k| k.status == KeyStatus::Inactive)
            }
            // A rotation is never announced: its intent covers it.
            Action::Rotate => false,
        };
        if happened {
            self.performed.push(announced);
        }
    }

    /// Carries out one due action, and brings `keys` (IAM's answer at the
    /// start, with this processing's changes) up to date with it.
    pub async fn perform(
        &mut self,
        action: &PlannedAction,
        keys: &mut Vec<KeyState>,
    ) -> Result<(), ExecError> {
        self.ensure_locked()?;
        let user = &self.req.user_name.clone();
        let Some(key) = keys.iter().find(|k| k.key_id == action.key_id).cloned() else {
            // Gone by an earlier action: skip.
            return Ok(());
        };
        match action.kind {
            ActionKind::Delete => {
                // Belt and braces: IAM would delete an active key without a word.
                if key.status != KeyStatus::Inactive {
                    self.notes
                        .push(format!("refused to delete active key {}", key.key_id));
                    return Ok(());
                }
                self.announce(Action::Delete, &key.key_id).await?;
                self.ports.iam.delete_key(user, &key.key_id).await?;
                fail::fail_point!("after-delete-key");
                self.record.history.deactivated_at.remove(&key.key_id);
                self.record.history.reactivated_at.remove(&key.key_id);
                self.performed
                    .push(KeyAction::new(Action::Delete, key.key_id.clone()));
                keys.retain(|k| k.key_id != key.key_id);
                self.save_later();
            }
            ActionKind::Deactivate | ActionKind::Retire => {
                let change = if action.kind == ActionKind::Retire {
                    Action::Retire
                } else {
                    Action::Deactivate
                };
                if key.status == KeyStatus::Active {
                    self.announce(change, &key.key_id).await?;
                    self.ports.iam.deactivate_key(user, &key.key_id).await?;
                    fail::fail_point!("after-deactivate-key");
                }
                // Never earlier than the real time: a stale message must
                // not shorten the recovery grace that counts from here.
                let at = self.change_time();
                self.record
                    .history
                    .deactivated_at
                    .insert(key.key_id.clone(), at);
                self.record.history.reactivated_at.remove(&key.key_id);
                self.performed
                    .push(KeyAction::new(change, key.key_id.clone()));
                if let Some(k) = keys.iter_mut().find(|k| k.key_id == key.key_id) {
                    k.status = KeyStatus::Inactive;
                }
                self.save_later();
            }
            ActionKind::Rotate => {
                let new = self.rotate(&key, keys).await?;
                keys.push(new);
            }
            ActionKind::Warn | ActionKind::Hold => {}
        }
        Ok(())
    }

    /// DESIGN §5 steps 1–5 for `old`; returns the new key as IAM now lists it.
    async fn rotate(&mut self, old: &KeyState, keys: &[KeyState]) -> Result<KeyState, ExecError> {
        let user = self.req.user_name.clone();
        let as_of = self.change_time();
        // Refuse early what would fail after the key exists.
        let name = self.secret_name();
        if !valid_secret_name(&name) {
            return Err(ExecError::Invalid(format!(
                "secret name `{name}` has characters Secrets Manager does not allow"
            )));
        }
        // Not read first (one call less per rotation): the ledger's last
        // rotation says whether the secret exists, which only chooses the
        // first write below (a stale hint costs a call, never the value).
        // A secret scheduled for deletion refuses the value, and the new
        // key is then deleted unstored (`undo_unstored`).
        let exists = self
            .record
            .secret_arn
            .as_deref()
            .is_some_and(|arn| arn_names_secret(arn, &name));
        // Attached now, before the key exists, because a member account
        // without the managed policy (an older member stack) could only be
        // found out after the key was stored. Attaching early grants nothing
        // yet: the policy reads only secrets tagged with this user, which
        // the secret's resource policy denies to everyone else anyway.
        self.attach_read_policy().await?;

        // 1. intent
        self.record.intent = Some(Intent {
            at: as_of,
            known_keys: keys.iter().map(|k| k.key_id.clone()).collect(),
            secret_name: Some(name.clone()),
            secrets_account: self
                .settings
                .secrets_account
                .as_ref()
                .map(|a| a.to_string()),
        });
        self.record.old_key_id = Some(old.key_id.clone());
        self.save().await?;
        self.ensure_locked()?;

        // 2. create
        let new = self.ports.iam.create_key(&user).await?;
        fail::fail_point!("after-create-access-key");

        // 3. store at once
        let token = version_token(&new.key_id);
        let value: SecretString = secret_value(&new.key_id, &new.secret, &user, new.created);
        let tags = vec![
            ("keyrotor:account".to_string(), self.req.account_id.clone()),
            ("keyrotor:user".to_string(), user.clone()),
        ];
        let description = format!(
            "Access key of IAM user {user} in account {}, rotated by keyrotor",
            self.req.account_id
        );
        self.ensure_locked()?;
        let stored = self
            .ports
            .secrets
            .store(StoreSecret {
                name: &name,
                client_request_token: &token,
                value: &value,
                description: &description,
                kms_key_id: self.settings.kms_key_id.as_deref(),
                replica_regions: &self.settings.replica_regions,
                tags: &tags,
                exists: Some(exists),
            })
            .await;
        drop(value);
        let stored = match stored {
            Ok(stored) => stored,
            Err(err) => return Err(self.undo_unstored(&name, &token, &new.key_id, err).await),
        };
        fail::fail_point!("after-store-secret");
        self.ensure_locked()?;
        // The managed policy was attached before the key was created.
        self.ports
            .secrets
            .put_resource_policy(&stored.arn, &resource_policy(&self.user.arn))
            .await?;

        // 4. verify (its own use of the key is remembered so that it does not
        // count as the application adopting the key)
        if self.settings.verify_new_key {
            self.ensure_locked()?;
            self.ports
                .verifier
                .verify(&new.key_id, &new.secret, &self.user.arn)
                .await?;
            self.record.history.verification = Some(Verification {
                key_id: new.key_id.clone(),
                at: verification_time(as_of),
            });
        }
        let new_key_id = new.key_id.clone();
        let created = new.created;
        drop(new);

        // 5. record (with the run's work, in the same fenced write)
        self.record.intent = None;
        self.record.new_key_id = Some(new_key_id.clone());
        self.record.rotated_at = Some(as_of);
        self.record.secret_arn = Some(stored.arn.clone());
        self.record.secret_version = Some(stored.version_id);
        self.new_key_id = Some(new_key_id.clone());
        self.secret_arn = Some(stored.arn.clone());
        self.performed
            .push(KeyAction::new(Action::Rotate, old.key_id.clone()));
        // Written with the lock's release (or the next step's write): until
        // then the intent stands, and recovery finishes a stored key.
        self.save_later();
        self.rotation_unwritten = true;
        tracing::info!(
            account_id = %self.req.account_id, user = %user, old_key_id = %old.key_id,
            new_key_id = %new_key_id, secret_arn = %stored.arn, at = %crate::time::now(), "rotated"
        );
        Ok(KeyState {
            key_id: new_key_id,
            status: KeyStatus::Active,
            created,
            // Never used by anyone but keyrotor's verification, which the
            // policy discounts (`history.verification`).
            last_used: None,
        })
    }

    /// After a failed store: the key is deleted only when Secrets Manager
    /// confirms the version is not there. A timeout may hide a write that
    /// went through; then the intent stays, and the next run's recovery
    /// decides with the facts. Returns the error the rotation fails with.
    async fn undo_unstored(
        &mut self,
        name: &str,
        token: &str,
        key_id: &str,
        err: crate::error::AwsError,
    ) -> ExecError {
        if err.is_retryable() {
            // A timeout or a 5xx: the write may have gone through, and a
            // read right after it may not show it yet. Leave the intent: the
            // next delivery's recovery decides with settled facts.
            tracing::warn!(key_id, error = %err, "store outcome unknown; leaving it to recovery");
            return ExecError::Aws(err);
        }
        match self.ports.secrets.describe(name).await {
            Ok(Some(info)) if info.version_ids.iter().any(|v| v == token) => {
                tracing::warn!(key_id, error = %err, "store reported a failure but the version exists; recovery will finish");
                ExecError::Aws(err)
            }
            Ok(described) => {
                // An unstored key is unusable and holds the second slot.
                tracing::error!(key_id, error = %err, "could not store the new key; deleting it");
                if let Err(e) = self.ensure_locked() {
                    return e;
                }
                if let Err(e) = self.ports.iam.delete_key(&self.req.user_name, key_id).await {
                    return e.into();
                }
                self.record.intent = None;
                if let Err(e) = self.save().await {
                    return e;
                }
                if described.is_some_and(|info| info.scheduled_for_deletion) {
                    return ExecError::Invalid(format!(
                        "secret `{name}` is scheduled for deletion, so it refused the new key \
                         (deleted again, unused): restore it (RestoreSecret) or let it go first"
                    ));
                }
                ExecError::NotStored(err)
            }
            Err(describe_err) => {
                tracing::error!(key_id, error = %err, describe_error = %describe_err, "store outcome unknown; leaving it to recovery");
                ExecError::Aws(err)
            }
        }
    }

    /// The secret's resource policy (that user only) and the managed policy
    /// that lets the user read secrets tagged with its own name and account.
    /// Idempotent.
    async fn apply_access_policies(
        &self,
        secrets: &dyn crate::aws::SecretsPort,
        secret_arn: &str,
    ) -> Result<(), ExecError> {
        secrets
            .put_resource_policy(secret_arn, &resource_policy(&self.user.arn))
            .await?;
        self.attach_read_policy().await
    }

    /// Attaches [`READ_OWN_SECRET_POLICY`] of the user's own account to the
    /// user. A missing policy means the member stack predates it: that is a
    /// deployment problem no retry fixes, so it is reported as `Invalid`.
    async fn attach_read_policy(&self) -> Result<(), ExecError> {
        let arn = read_own_secret_policy_arn(&self.user.arn).ok_or_else(|| {
            ExecError::Invalid(format!(
                "`{}` is not an IAM user ARN: cannot name the {READ_OWN_SECRET_POLICY} policy",
                self.user.arn
            ))
        })?;
        match self
            .ports
            .iam
            .attach_read_policy(&self.req.user_name, &arn)
            .await
        {
            // NoSuchEntity: the user was just read, so it is the policy
            // that is missing; IAM's own message is kept all the same.
            Err(crate::error::AwsError::NotFound { message, .. }) => {
                Err(ExecError::Invalid(format!(
                    "managed policy {arn} not found ({message}): deploy the current member \
                     role stack (infra/member-role.yaml) in account {}, which creates it",
                    self.req.account_id
                )))
            }
            other => Ok(other?),
        }
    }
}

/// The deferred record of a processing, once its steps are over.
pub(super) struct Unwritten {
    record: Option<UserRecord>,
    rotation: bool,
}

impl Unwritten {
    /// Ends the processing: writes what was deferred and releases the lock
    /// in one request, or only releases it when nothing is waiting. To be
    /// called after the heartbeat stopped, whatever the result: a failure
    /// after a recorded change still leaves that change in the ledger, as
    /// an immediate write would have. An error is the deferred write's
    /// (what was done did not reach the ledger); a release alone that fails
    /// is only logged, since the lease frees the user anyway.
    pub async fn close(self, ledger: &dyn LedgerPort, lock: &Lock) -> Result<(), StoreError> {
        let Some(record) = self.record else {
            match ledger.release(lock).await {
                // A lost lock is simply not ours to release.
                Ok(()) | Err(StoreError::LockLost) => {}
                Err(e) => tracing::warn!(error = %e, "could not release the user's lock"),
            }
            return Ok(());
        };
        match ledger.write_and_release(lock, &record).await {
            Ok(()) => {
                if self.rotation {
                    rotation_written();
                }
                Ok(())
            }
            Err(StoreError::LockLost) => Err(StoreError::LockLost),
            Err(e) => {
                // The record stays unwritten (the intent or announcement in
                // the ledger lets the next delivery find out); the lock is
                // still freed so that delivery need not wait out the lease.
                if let Err(release) = ledger.release(lock).await {
                    tracing::warn!(error = %release, "could not release the user's lock");
                }
                Err(e)
            }
        }
    }
}

/// A rotation's record reached the ledger (DESIGN §5 step 5 done).
fn rotation_written() {
    fail::fail_point!("after-record-rotation");
}

/// When keyrotor's verification use of a key happened, as the adoption check
/// compares it with IAM's LastUsed (which is real time): never earlier than
/// the real clock, even when the evaluation time lies in the past.
fn verification_time(as_of: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
    as_of.max(crate::time::now())
}

/// Secrets Manager names: ASCII letters, digits and `/_+=.@-`, 1–512 long.
fn valid_secret_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_+=.@-".contains(&b))
}

/// Whether `arn` is the ARN of the secret called `name`: Secrets Manager
/// ends a secret's ARN with its name, a dash and six random characters.
fn arn_names_secret(arn: &str, name: &str) -> bool {
    arn.rsplit_once(":secret:").is_some_and(|(_, rest)| {
        rest.len() == name.len() + 7
            && rest.starts_with(name)
            && rest.as_bytes()[name.len()] == b'-'
    })
}

#[cfg(test)]
mod tests {
    use super::arn_names_secret;

    #[test]
    fn a_secret_arn_is_matched_to_its_name_and_no_other() {
        let arn = "arn:aws:secretsmanager:us-east-1:111122223333:secret:keyrotor/111122223333/alice-AbC123";
        assert!(arn_names_secret(arn, "keyrotor/111122223333/alice"));
        // A name that the real one merely starts with, or extends.
        assert!(!arn_names_secret(arn, "keyrotor/111122223333/ali"));
        assert!(!arn_names_secret(arn, "keyrotor/111122223333/alice-AbC"));
        assert!(!arn_names_secret(arn, "keyrotor/111122223333/bob"));
        assert!(!arn_names_secret("not an arn", "alice"));
    }
}

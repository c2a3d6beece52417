//! One producer run: accounts in scope, each enumerated concurrently (a
//! bounded number at a time), its users enqueued a page at a time, the run
//! record kept up to date, failures recorded and published — never fatal to
//! the run.

mod incident;

pub use incident::{ExposedUser, IncidentSummary};

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use futures::StreamExt;
use keyrotor_shared::aws::AwsContext;
use keyrotor_shared::config::{ConfigError, SesFleetRate, Settings};
use keyrotor_shared::domain::{AccountId, AccountSource, Mode};
use keyrotor_shared::error::AwsError;
use keyrotor_shared::events::{EventSink, ResultEvent};
use keyrotor_shared::message::{WorkMessage, MESSAGE_VERSION};
use keyrotor_shared::queue::SqsQueue;
use keyrotor_shared::store::breaker::{BreakerPort, BreakerStore};
use keyrotor_shared::store::pace::PaceStore;
use keyrotor_shared::store::registry::AccountRegistry;
use keyrotor_shared::store::runs::{RunStore, RunsPort};
use keyrotor_shared::store::waves::{WaveStore, WavesPort};
use keyrotor_shared::waves::{due_for_release, states, WaveState, SOAK_DECIDER};
use serde::Serialize;

use crate::census::Census;
use crate::enqueue::{Enqueuer, BATCH};
use crate::inventory::{AccountInfo, AccountInventory, OrgInventory, RegistryInventory, WavePlace};
use crate::ses_rate::{SesAccount, SesRateRecorder};
use crate::users::{MemberDirectory, SdkDirectory};

/// What to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceRequest {
    /// Reuse a run id (producing the same run again enqueues nothing new
    /// within SQS's 5-minute deduplication window, and the workers'
    /// result items make later duplicates no-ops).
    pub run_id: Option<String>,
    /// The run's evaluation time.
    pub as_of: DateTime<Utc>,
    /// Audit or enforce.
    pub mode: Mode,
    /// Replaces `KEYROTOR_ACCOUNTS` for this run.
    pub accounts: Option<Vec<AccountId>>,
    /// Users to rotate now whatever their age: (account id, user name).
    pub force_users: Vec<(String, String)>,
}

/// An account that could not be enumerated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountFailure {
    /// The account.
    pub account_id: String,
    /// Why (AWS's error; no secrets).
    pub error: String,
    /// Messages sent for it before it failed (its results are awaited).
    pub enqueued: usize,
}

/// The result of a run (`keyrotor produce --output json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProduceSummary {
    /// The run id.
    pub run_id: String,
    /// The mode the run was produced in.
    pub mode: Mode,
    /// Enforce was asked for, but the circuit breaker is open: the run is
    /// an audit run.
    pub held_by_breaker: bool,
    /// The rollout waves and their accounts in this run (when
    /// `KEYROTOR_WAVES` is set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waves: Vec<WaveSummary>,
    /// Accounts whose users were enqueued.
    pub accounts: usize,
    /// Users found in them.
    pub users: usize,
    /// Messages sent.
    pub enqueued: usize,
    /// Accounts that failed (ids).
    pub failed_accounts: Vec<String>,
    /// Why each failed.
    pub failures: Vec<AccountFailure>,
    /// Accounts left out: not ACTIVE, out of scope, excluded or tagged `keyrotor:exclude`.
    pub skipped_accounts: usize,
}

/// One rollout wave in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WaveSummary {
    /// The wave, from 1.
    pub wave: u32,
    /// `released` (enforced), `pending` or `halted` (audited).
    pub state: WaveState,
    /// The run's accounts in it.
    pub accounts: usize,
}

/// What happened to one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountOutcome {
    /// Its users were enqueued.
    Enqueued {
        /// Account id.
        account_id: String,
        /// Users enqueued.
        users: usize,
    },
    /// Left out, and why.
    Skipped {
        /// Account id.
        account_id: String,
        /// Why.
        why: String,
    },
    /// Could not be enumerated.
    Failed(AccountFailure),
}

/// Why a whole run failed (account-level failures never fail the run).
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    /// The account source could not be listed.
    #[error("listing accounts: {0}")]
    Inventory(AwsError),
    /// The run record could not be written.
    #[error("writing the run record: {0}")]
    Runs(AwsError),
    /// A re-produced run asked for a different evaluation time or mode.
    #[error("{0}")]
    RunMismatch(String),
    /// An exposed key in an account keyrotor does not work (excluded, not
    /// in `KEYROTOR_ACCOUNTS`, not active).
    #[error(
        "account {account_id} is out of keyrotor's scope ({why}): the exposed key is not acted on"
    )]
    OutOfScope {
        /// The account.
        account_id: String,
        /// Why it is out of scope.
        why: String,
    },
    /// Enforce with a future evaluation time (a bad request: exit 2).
    #[error(transparent)]
    FutureAsOf(#[from] keyrotor_shared::time::FutureAsOf),
}

/// The producer.
pub struct Producer {
    settings: Arc<Settings>,
    inventory: Box<dyn AccountInventory>,
    directory: Arc<dyn MemberDirectory>,
    runs: Arc<dyn RunsPort>,
    enqueuer: Enqueuer,
    events: Option<Arc<dyn EventSink>>,
    breaker: Option<Arc<dyn BreakerPort>>,
    waves: Option<Arc<dyn WavesPort>>,
    ses_rate: Option<SesRateRecorder>,
}

/// What a producer works through (the SDK's, or the load simulator's).
pub struct ProducerParts {
    /// Where accounts come from.
    pub inventory: Box<dyn AccountInventory>,
    /// The users of each account.
    pub directory: Arc<dyn MemberDirectory>,
    /// The run items.
    pub runs: Arc<dyn RunsPort>,
    /// The work queue.
    pub enqueuer: Enqueuer,
    /// Where failed accounts are published, if anywhere.
    pub events: Option<Arc<dyn EventSink>>,
    /// The circuit breaker: while it is open, an enforce run is produced
    /// in audit mode.
    pub breaker: Option<Arc<dyn BreakerPort>>,
    /// The rollout waves' records (`KEYROTOR_WAVES`).
    pub waves: Option<Arc<dyn WavesPort>>,
    /// Where SES's sending rate is read and recorded each run, with
    /// `KEYROTOR_SES_FLEET_RATE=auto` and emails on (`KEYROTOR_SENDER`).
    pub ses_rate: Option<SesRateRecorder>,
}

impl Producer {
    /// A producer for the settings: `KEYROTOR_QUEUE_URL` is required.
    /// Organizations is called through `KEYROTOR_ORG_ROLE_ARN` when set.
    /// Member accounts are read through `KEYROTOR_PRODUCER_ROLE_NAME`
    /// (whatever role name `aws` was made with): the producer only lists,
    /// so it need not be able to assume the role that writes keys.
    pub async fn new(settings: Arc<Settings>, aws: AwsContext) -> Result<Producer, ConfigError> {
        let aws = aws.with_role_name(&settings.producer_role_name);
        let queue_url = settings.queue_url.clone().ok_or_else(|| ConfigError {
            env: "KEYROTOR_QUEUE_URL".into(),
            flag: "queue-url".into(),
            message: "is required to produce (the work queue; `keyrotor init` prints it)".into(),
        })?;
        let base = aws.base();
        let ddb = aws_sdk_dynamodb::Client::new(base);
        let organizations = match &settings.org_role_arn {
            Some(arn) => aws_sdk_organizations::Client::new(&aws.for_role_arn(arn).await),
            None => aws_sdk_organizations::Client::new(base),
        };
        let inventory: Box<dyn AccountInventory> = match settings.account_source {
            AccountSource::Organizations => {
                Box::new(OrgInventory::new(organizations, settings.ous.clone()))
            }
            AccountSource::Table => Box::new(RegistryInventory::new(AccountRegistry::new(
                ddb.clone(),
                settings.table.clone(),
            ))),
        };
        let events = keyrotor_shared::event_bus::sinks(&settings, base);
        let queue = SqsQueue::new(aws_sdk_sqs::Client::new(base), queue_url);
        Ok(Producer::from_parts(
            settings.clone(),
            ProducerParts {
                inventory,
                directory: Arc::new(SdkDirectory::new(aws.clone())),
                runs: Arc::new(RunStore::new(ddb.clone(), settings.table.clone())),
                enqueuer: Enqueuer::new(Arc::new(queue)),
                events,
                breaker: Some(Arc::new(BreakerStore::new(
                    ddb.clone(),
                    settings.table.clone(),
                ))),
                waves: Some(Arc::new(WaveStore::new(
                    ddb.clone(),
                    settings.table.clone(),
                ))),
                ses_rate: (settings.ses_fleet_rate == SesFleetRate::Auto
                    && settings.sender.is_some())
                .then(|| {
                    SesRateRecorder::new(
                        Arc::new(SesAccount::new(aws_sdk_sesv2::Client::new(base))),
                        Arc::new(PaceStore::new(ddb, settings.table.clone())),
                    )
                }),
            },
        ))
    }

    /// A producer over the given parts.
    pub fn from_parts(settings: Arc<Settings>, parts: ProducerParts) -> Producer {
        Producer {
            settings,
            inventory: parts.inventory,
            directory: parts.directory,
            runs: parts.runs,
            enqueuer: parts.enqueuer,
            events: parts.events,
            breaker: parts.breaker,
            waves: parts.waves,
            ses_rate: parts.ses_rate,
        }
    }

    /// Places each account in its rollout wave (`KEYROTOR_WAVES`; nothing
    /// without waves): an enforce run first releases the wave that has
    /// soaked, then audits the accounts of waves not released, and starts
    /// the soak clock of the released waves it enforces.
    async fn place_in_waves(
        &self,
        req: &ProduceRequest,
        accounts: &mut [AccountInfo],
    ) -> Result<Vec<WaveSummary>, ProduceError> {
        let waves = &self.settings.waves;
        let Some(store) = self.waves.as_ref().filter(|_| !waves.is_empty()) else {
            return Ok(Vec::new());
        };
        let mut under = HashMap::new();
        for ou in waves.ous() {
            let ids = self
                .inventory
                .accounts_under(ou)
                .await
                .map_err(ProduceError::Inventory)?;
            under.insert(ou.to_string(), ids.into_iter().collect::<HashSet<_>>());
        }
        let count = waves.0.len() as u32;
        // The soak's clock, as the ledger's: the evaluation time, or the
        // real time if later.
        let now = keyrotor_shared::time::ledger_time(req.as_of, self.settings.allow_future_as_of);
        let mut records = store.records().await.map_err(ProduceError::Runs)?;
        if req.mode == Mode::Enforce {
            if let Some(wave) = due_for_release(count, &records, self.settings.wave_soak, now) {
                let record = store
                    .decide(wave, WaveState::Released, SOAK_DECIDER)
                    .await
                    .map_err(ProduceError::Runs)?;
                tracing::info!(wave, "wave released: the wave before it soaked clean");
                records.insert(wave, record);
            }
        }
        let states = states(count, &records);
        let mut summary: Vec<WaveSummary> = states
            .iter()
            .enumerate()
            .map(|(i, state)| WaveSummary {
                wave: i as u32 + 1,
                state: *state,
                accounts: 0,
            })
            .collect();
        for account in accounts.iter_mut() {
            if self.out_of_scope(req, account).is_some() {
                continue;
            }
            let wave = waves.wave_of(&account.id, &under).expect("there are waves");
            let released = states[wave as usize - 1] == WaveState::Released;
            summary[wave as usize - 1].accounts += 1;
            account.wave = Some(WavePlace {
                wave,
                audit_only: req.mode == Mode::Enforce && !released,
            });
        }
        if req.mode == Mode::Enforce {
            for wave in summary
                .iter()
                .filter(|w| w.state == WaveState::Released && w.accounts > 0)
            {
                store
                    .enforced(wave.wave, now)
                    .await
                    .map_err(ProduceError::Runs)?;
            }
        }
        Ok(summary)
    }

    /// Whether the circuit breaker is open (then an enforce run is produced
    /// in audit mode, with a warning).
    async fn breaker_open(&self) -> Result<bool, ProduceError> {
        let Some(breaker) = &self.breaker else {
            return Ok(false);
        };
        let state = breaker.state().await.map_err(ProduceError::Runs)?;
        if state.open {
            tracing::warn!(
                opened_at = ?state.opened_at,
                by_run = state.run_id.as_deref().unwrap_or("?"),
                failures = state.failures,
                "the circuit breaker is open: this run is produced in audit mode; `keyrotor breaker reset` lets enforce runs act again"
            );
        }
        Ok(state.open)
    }

    /// Runs the producer; `on_account` is told as each account finishes.
    pub async fn produce(
        &self,
        req: &ProduceRequest,
        on_account: &(dyn Fn(&AccountOutcome, usize) + Send + Sync),
    ) -> Result<ProduceSummary, ProduceError> {
        keyrotor_shared::time::check_enforce_as_of(
            req.as_of,
            req.mode == Mode::Enforce,
            self.settings.allow_future_as_of,
            keyrotor_shared::time::now(),
        )?;
        let held = req.mode == Mode::Enforce && self.breaker_open().await?;
        // The run record keeps milliseconds; the messages carry exactly that.
        let req = &ProduceRequest {
            as_of: req.as_of.trunc_subsecs(3),
            mode: if held { Mode::Audit } else { req.mode },
            ..req.clone()
        };
        let run_id = req.run_id.clone().unwrap_or_else(new_run_id);
        // A run keeps the evaluation time and mode it was first produced
        // with, and the workers refuse messages that differ: refuse them
        // here, before the run record is touched.
        if let Some(run) = self
            .runs
            .params(&run_id)
            .await
            .map_err(ProduceError::Runs)?
        {
            if run.as_of != req.as_of || run.mode != req.mode {
                return Err(ProduceError::RunMismatch(format!(
                    "run {run_id} was produced with as_of {} and mode {}; produce it again with the same (--as-of {}), or use a new run id",
                    run.as_of.to_rfc3339(),
                    run.mode,
                    run.as_of.to_rfc3339(),
                )));
            }
        }
        // The run's message key, drawn by its first start.
        let key = self
            .runs
            .start(&run_id, req.as_of, req.mode, &req.force_users)
            .await
            .map_err(ProduceError::Runs)?;
        let key = key.as_str();
        if let Some(ses_rate) = &self.ses_rate {
            ses_rate.record().await;
        }
        let mut accounts = self
            .inventory
            .accounts()
            .await
            .map_err(ProduceError::Inventory)?;
        let waves = self.place_in_waves(req, &mut accounts).await?;
        let total = accounts.len();
        tracing::info!(run_id = %run_id, accounts = total, "producing");
        // The fleet's groups are shared among the accounts the run works,
        // not every account the Organization lists.
        let in_scope = accounts
            .iter()
            .filter(|a| self.out_of_scope(req, a).is_none())
            .count();
        let census = Census::new(in_scope);

        let outcomes: Vec<(AccountOutcome, Option<WorkMessage>)> = futures::stream::iter(accounts)
            .map(|account| self.account(&run_id, key, req, account, &census))
            .buffer_unordered(self.settings.account_concurrency)
            .inspect(|(outcome, _)| on_account(outcome, total))
            .collect()
            .await;

        let mut summary = ProduceSummary {
            run_id: run_id.clone(),
            mode: req.mode,
            held_by_breaker: held,
            waves,
            accounts: 0,
            users: 0,
            enqueued: 0,
            failed_accounts: Vec::new(),
            failures: Vec::new(),
            skipped_accounts: 0,
        };
        let mut any_sent = None;
        for (outcome, last) in outcomes {
            any_sent = any_sent.or(last);
            match outcome {
                AccountOutcome::Enqueued { users, .. } => {
                    summary.accounts += 1;
                    summary.users += users;
                    summary.enqueued += users;
                }
                AccountOutcome::Skipped { .. } => summary.skipped_accounts += 1,
                AccountOutcome::Failed(f) => {
                    // Their results still count towards the run.
                    summary.enqueued += f.enqueued;
                    summary.failed_accounts.push(f.account_id.clone());
                    summary.failures.push(f);
                }
            }
        }
        summary.failed_accounts.sort();
        summary
            .failures
            .sort_by(|a, b| a.account_id.cmp(&b.account_id));
        let complete = self
            .runs
            .finish_enqueue(&run_id, summary.accounts as i64, summary.enqueued as i64)
            .await
            .map_err(ProduceError::Runs)?;
        if complete {
            self.nudge(any_sent.as_ref(), "run-complete").await;
        }
        tracing::info!(run_id = %run_id, accounts = summary.accounts, enqueued = summary.enqueued,
            failed = summary.failed_accounts.len(), "run enqueued");
        Ok(summary)
    }

    /// Why an account is out of scope, if it is.
    fn out_of_scope(&self, req: &ProduceRequest, account: &AccountInfo) -> Option<String> {
        if !account.active {
            return Some("not ACTIVE".into());
        }
        let include = req.accounts.as_ref().unwrap_or(&self.settings.accounts);
        if !include.is_empty() && !include.iter().any(|a| a.as_str() == account.id) {
            return Some("not in KEYROTOR_ACCOUNTS".into());
        }
        if self
            .settings
            .exclude_accounts
            .iter()
            .any(|a| a.as_str() == account.id)
        {
            return Some("in KEYROTOR_EXCLUDE_ACCOUNTS".into());
        }
        None
    }

    async fn account(
        &self,
        run_id: &str,
        key: &str,
        req: &ProduceRequest,
        account: AccountInfo,
        census: &Census,
    ) -> (AccountOutcome, Option<WorkMessage>) {
        if let Some(why) = self.out_of_scope(req, &account) {
            let skipped = AccountOutcome::Skipped {
                account_id: account.id,
                why,
            };
            return (skipped, None);
        }
        let mut sent = Sent::default();
        let outcome = match self
            .enqueue_account(run_id, key, req, (&account, census), &mut sent)
            .await
        {
            Ok(Some(users)) => AccountOutcome::Enqueued {
                account_id: account.id,
                users,
            },
            Ok(None) => AccountOutcome::Skipped {
                account_id: account.id,
                why: format!("tagged {} = true", crate::inventory::EXCLUDE_TAG),
            },
            Err(error) => {
                let failure = AccountFailure {
                    account_id: account.id.clone(),
                    error: error.to_string(),
                    enqueued: sent.count,
                };
                tracing::error!(account_id = %account.id, error = %error, enqueued = sent.count, "account failed; the run goes on");
                match self
                    .runs
                    .account_failed(
                        run_id,
                        &account.id,
                        &account.name,
                        &failure.error,
                        sent.count as i64,
                    )
                    .await
                {
                    Ok(true) => self.nudge(sent.last.as_ref(), "account-complete").await,
                    Ok(false) => {}
                    Err(e) => {
                        tracing::error!(account_id = %account.id, error = %e, "could not record the account's failure")
                    }
                }
                if let Some(events) = &self.events {
                    let event = ResultEvent::account_failed(
                        run_id,
                        &account.id,
                        req.mode,
                        req.as_of,
                        failure.error.clone(),
                    );
                    if let Err(e) = events.publish_result(&event).await {
                        tracing::error!(account_id = %account.id, error = %e, "could not publish the account's failure");
                    }
                }
                AccountOutcome::Failed(failure)
            }
        };
        (outcome, sent.last)
    }

    /// Delivers `last` (a message of the account or run just found
    /// complete at the producer's own mark) once more, so that a worker
    /// sends the digest or summary no worker saw owed. A failure is
    /// logged: the results stand, only that email or event is missing.
    async fn nudge(&self, last: Option<&WorkMessage>, why: &str) {
        let Some(m) = last else { return };
        tracing::info!(account_id = %m.account_id, why, "every result came before the producer's mark; asking a worker to finish");
        if let Err(e) = self.enqueuer.nudge(m, why).await {
            tracing::error!(account_id = %m.account_id, error = %e, "could not ask a worker to send what is owed");
        }
    }

    /// Enqueues one account's users (one of the run's, counted in
    /// `census`); `None` when the account is tagged out.
    async fn enqueue_account(
        &self,
        run_id: &str,
        key: &str,
        req: &ProduceRequest,
        (account, census): (&AccountInfo, &Census),
        sent: &mut Sent,
    ) -> Result<Option<usize>, AwsError> {
        if self.inventory.excluded(account).await? {
            return Ok(None);
        }
        self.directory.open(&account.id).await?;
        let exempt = match &self.settings.exempt_group {
            Some(group) => self.directory.exempt_members(&account.id, group).await?,
            None => HashSet::new(),
        };
        // Counted as sent, batch by batch: when the account fails part-way,
        // the run expects exactly the messages that went out.
        let count = std::sync::atomic::AtomicUsize::new(0);
        let last = std::sync::Mutex::new(None);
        let mut groups = None;
        let pages = async {
            let mut marker = None;
            let mut index = 0u32;
            let shards = &mut groups;
            // With the fleet's groups shared out (and `auto` shards), an
            // account of many pages is listed whole before it is enqueued:
            // its groups are its share of the run's users, and that needs
            // its count. Others stream a page at a time, sized at the first.
            let whole_first =
                self.settings.fleet_groups.is_some() && self.settings.shards_per_account.is_none();
            let mut listed: Vec<String> = Vec::new();
            loop {
                let (names, next, failed) =
                    match self.directory.users_page(&account.id, marker).await {
                        Ok((page, next)) => match *shards {
                            Some(_) => (page, next, None),
                            None if next.is_some() && whole_first => {
                                listed.extend(page);
                                marker = next;
                                continue;
                            }
                            None => {
                                listed.extend(page);
                                let users = next.is_none().then_some(listed.len());
                                let run = match users {
                                    Some(users) => census.count(users),
                                    None => census.size(),
                                };
                                *shards = Some(self.settings.shards_for(users, run));
                                (std::mem::take(&mut listed), next, None)
                            }
                        },
                        // A listing that fails part-way still sends the
                        // users it listed, as a streamed one would have.
                        Err(e) if !listed.is_empty() => {
                            *shards = Some(self.settings.shards_for(None, census.size()));
                            (std::mem::take(&mut listed), None, Some(e))
                        }
                        Err(e) => return Err(e),
                    };
                let shards = shards.expect("sized above");
                let messages: Vec<WorkMessage> = names
                    .into_iter()
                    .map(|user_name| {
                        // Round robin: the groups get equal shares of the
                        // account's users, so they finish together.
                        let shard = index % shards;
                        index += 1;
                        let mut message =
                            self.message(run_id, req, account, &exempt, user_name, (shard, shards));
                        message.sign(key);
                        message
                    })
                    .collect();
                for batch in messages.chunks(BATCH) {
                    match self.enqueuer.send(batch).await {
                        Ok(()) => {
                            *last.lock().expect("not poisoned") = batch.last().cloned();
                            count.fetch_add(batch.len(), Ordering::SeqCst)
                        }
                        Err(partial) => {
                            if let Some(i) = partial.one_sent {
                                *last.lock().expect("not poisoned") = batch.get(i).cloned();
                            }
                            count.fetch_add(partial.sent, Ordering::SeqCst);
                            return Err(partial.error);
                        }
                    };
                }
                if let Some(e) = failed {
                    return Err(e);
                }
                match next {
                    Some(next) => marker = Some(next),
                    None => return Ok::<(), AwsError>(()),
                }
            }
        }
        .await;
        sent.count = count.load(Ordering::SeqCst);
        sent.last = last.into_inner().expect("not poisoned");
        pages?;
        let complete = self
            .runs
            .account_enqueued(
                run_id,
                &account.id,
                &account.name,
                sent.count as i64,
                groups.unwrap_or(1),
            )
            .await?;
        if complete {
            self.nudge(sent.last.as_ref(), "account-complete").await;
        }
        Ok(Some(sent.count))
    }

    /// The message for one user, unsigned.
    fn message(
        &self,
        run_id: &str,
        req: &ProduceRequest,
        account: &AccountInfo,
        exempt: &HashSet<String>,
        user_name: String,
        (shard, shards): (u32, u32),
    ) -> WorkMessage {
        WorkMessage {
            v: MESSAGE_VERSION,
            run_id: run_id.to_string(),
            account_id: account.id.clone(),
            account_name: account.name.clone(),
            owner_email: account.email.clone(),
            as_of: req.as_of,
            mode: req.mode,
            force: req
                .force_users
                .iter()
                .any(|(a, u)| *a == account.id && *u == user_name),
            exempt: exempt.contains(&user_name),
            shard: (shards > 1).then_some(shard),
            shards: (shards > 1).then_some(shards),
            wave: account.wave.map(|w| w.wave),
            audit_only: account.wave.is_some_and(|w| w.audit_only),
            incident: false,
            exposed_key: None,
            user_name,
            sig: None,
        }
    }
}

/// A new run id: sortable by time, unique by a random suffix.
pub fn new_run_id() -> String {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{}-{}",
        keyrotor_shared::time::now().format("%Y%m%dT%H%M%SZ"),
        &suffix[..8]
    )
}

/// What an account's enqueueing sent: how many messages, and the last one
/// (signed), to deliver again if the account turns out complete at its
/// mark.
#[derive(Default)]
struct Sent {
    count: usize,
    last: Option<WorkMessage>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let (a, b) = (new_run_id(), new_run_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), "20260601T000000Z-0a1b2c3d".len());
    }
}

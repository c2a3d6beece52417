//! The simulated state table: the user locks and ledger ([`LedgerPort`]),
//! result items with their counters and once-only claims
//! ([`ResultsPort`]), and run items ([`RunsPort`]), each with the
//! semantics of the DynamoDB adapter's conditions and transactions, one
//! modelled DynamoDB request per operation. Writes to one item are
//! serialised, as DynamoDB serialises them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::error::AwsError;
use keyrotor_shared::store::pace::{RecordedRate, SendPace, Slot};
use keyrotor_shared::store::results::{
    Claim, Notice, Progress, Recorded, ResultItem, ResultsPort, RunTotals,
};
use keyrotor_shared::store::runs::{forced_entry, RunParams, RunsPort};
use keyrotor_shared::store::{LedgerPort, Lock, StoreError, UserRecord};

use super::model::{Model, Retry, Service};

#[derive(Debug, Default)]
struct LedgerItem {
    owner: Option<String>,
    lease_until: Duration,
    fence: i64,
    record: UserRecord,
}

#[derive(Debug, Clone, Default)]
struct Counted {
    expected: i64,
    enqueued: bool,
    done: i64,
    counts: BTreeMap<String, i64>,
    /// An account's counts were added to the run's.
    rolled_up: bool,
    /// `expected` less the account's groups (`None` for a run's totals, and
    /// for an account that failed part-way).
    watch_from: Option<i64>,
}

#[derive(Debug, Clone, Default)]
enum ClaimState {
    #[default]
    Free,
    Sending {
        owner: String,
        holder: Option<String>,
        at: Duration,
    },
    Sent,
}

#[derive(Debug, Default)]
struct Run {
    params: Option<RunParams>,
    run: Counted,
    accounts: BTreeMap<String, Counted>,
    results: HashMap<(String, String), (ResultItem, bool)>,
    claims: HashMap<Option<String>, ClaimState>,
    digest_sent_to: HashMap<String, BTreeSet<String>>,
    failed_accounts: Vec<String>,
}

#[derive(Debug, Default)]
struct State {
    ledger: HashMap<(String, String), LedgerItem>,
    runs: HashMap<String, Run>,
    /// Simulated time each result was recorded, in order.
    recorded_at: Vec<Duration>,
    /// Users of each account under a lock now, and the most at once.
    locked: HashMap<String, u64>,
    peak_locked: u64,
    /// When each held lock was taken, and the total and count of holds.
    held_since: HashMap<(String, String), Duration>,
    held_total: Duration,
    holds: u64,
    /// Until when a transaction holds each contended item.
    item_busy_until: HashMap<String, Duration>,
    /// The fleet's next free SES send time, epoch ms (`SES_PACE`).
    ses_next_at: i64,
    /// The fleet's SES rate the producer recorded on the pace item.
    ses_rate: Option<std::num::NonZeroU32>,
}

/// The whole table.
#[derive(Clone)]
pub struct SimTable {
    model: Arc<Model>,
    state: Arc<Mutex<State>>,
}

impl SimTable {
    /// An empty table.
    pub fn new(model: Arc<Model>) -> SimTable {
        SimTable {
            model,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    async fn request(&self, op: &'static str) -> Result<(), AwsError> {
        self.model
            .call(Service::Dynamo, op, "hub", Retry::Sdk)
            .await
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Marks `notice` sent, as the adapter does: unconditionally, since the
    /// email went out whoever holds the claim now (a takeover meanwhile
    /// would only send it again).
    async fn mark_sent(&self, run_id: &str, notice: Notice<'_>) -> Result<(), AwsError> {
        self.request("UpdateItem").await?;
        let mut state = self.state();
        let run = state.runs.entry(run_id.to_string()).or_default();
        run.claims.insert(notice_account(notice), ClaimState::Sent);
        Ok(())
    }

    /// Gives up `owner`'s claim of `notice`; a claim someone else holds
    /// (taken over meanwhile) is left alone, as the adapter's condition does.
    async fn give_up(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError> {
        self.request("UpdateItem").await?;
        let mut state = self.state();
        if let Some(claim) = state
            .runs
            .get_mut(run_id)
            .and_then(|r| r.claims.get_mut(&notice_account(notice)))
        {
            if matches!(claim, ClaimState::Sending { owner: o, .. } if o == owner) {
                *claim = ClaimState::Free;
            }
        }
        Ok(())
    }

    /// A transaction on a counter item, as the adapter runs it: the result
    /// transaction counts on its account's item, the roll-up on the run's.
    /// One that arrives while another holds the item is cancelled
    /// (`TransactionConflict`, which the SDK does not retry) and the adapter
    /// retries it (25 ms doubling to 1 s, jittered, 8 times); one beyond the
    /// item's write rate is throttled and the SDK retries it.
    async fn transact_on(&self, item: String) -> Result<(), AwsError> {
        let mut delay = Duration::from_millis(25);
        for attempt in 0..=8 {
            let mut sdk_attempt = 0;
            let conflicted = loop {
                sdk_attempt += 1;
                self.request("TransactWriteItems").await?;
                let now = self.model.elapsed();
                let conflicted = {
                    let mut state = self.state();
                    let busy = state.item_busy_until.entry(item.clone()).or_default();
                    if *busy > now {
                        true
                    } else {
                        *busy = now + self.model.config().transaction_hold;
                        false
                    }
                };
                if conflicted || self.model.take_item_write(&item) {
                    break conflicted;
                }
                if sdk_attempt >= 5 {
                    return Err(AwsError::Throttled {
                        op: "dynamodb:TransactWriteItems",
                        message: "the counter item is at its write rate".into(),
                        source: None,
                    });
                }
                self.model.count_retry();
                let cap = Duration::from_secs(1 << (sdk_attempt - 1).min(4));
                tokio::time::sleep(cap.mul_f64(self.model.uniform())).await;
            };
            if !conflicted {
                return Ok(());
            }
            self.model.count_conflict();
            if attempt == 8 {
                break;
            }
            self.model.count_retry();
            // backon's jitter: the delay plus up to as much again.
            tokio::time::sleep(delay.mul_f64(1.0 + self.model.uniform())).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
        Err(AwsError::Service {
            op: "dynamodb:TransactWriteItems",
            code: "TransactionCanceledException".into(),
            message: "TransactionConflict".into(),
            source: None,
        })
    }

    /// The simulated times at which results were recorded.
    pub fn recorded_at(&self) -> Vec<Duration> {
        self.state().recorded_at.clone()
    }

    /// The most users of one account worked (locked) at once.
    pub fn peak_locked(&self) -> u64 {
        self.state().peak_locked
    }

    /// The mean time a user's lock was held (the executor's part of a
    /// message).
    pub fn mean_hold(&self) -> Duration {
        let state = self.state();
        state.held_total / state.holds.max(1) as u32
    }

    /// Accounts of `run_id` whose digest is not marked sent.
    pub fn digests_unsent(&self, run_id: &str) -> u64 {
        self.state().runs.get(run_id).map_or(0, |r| {
            r.accounts
                .keys()
                .filter(|a| !matches!(r.claims.get(&Some((*a).clone())), Some(ClaimState::Sent)))
                .count() as u64
        })
    }

    /// Per-outcome counts of `run_id`, summed over its accounts (as
    /// `keyrotor status` does: the run's item lags until accounts complete).
    pub fn outcomes(&self, run_id: &str) -> BTreeMap<String, i64> {
        self.state()
            .runs
            .get(run_id)
            .map(|r| {
                let mut counts = BTreeMap::new();
                for (outcome, n) in r.accounts.values().flat_map(|a| &a.counts) {
                    *counts.entry(outcome.clone()).or_default() += n;
                }
                counts
            })
            .unwrap_or_default()
    }

    /// The run's expected and done counts, and whether it is enqueued.
    pub fn run_progress(&self, run_id: &str) -> Progress {
        let state = self.state();
        let run = state.runs.get(run_id);
        Progress {
            done: run
                .map(|r| r.accounts.values().map(|a| a.done).sum())
                .unwrap_or(0),
            expected: run.map(|r| r.run.expected).unwrap_or(0),
            enqueued: run.map(|r| r.run.enqueued).unwrap_or(false),
        }
    }
}

#[async_trait]
impl LedgerPort for SimTable {
    async fn acquire(
        &self,
        account_id: &str,
        user_name: &str,
        owner: &str,
        lease: Duration,
    ) -> Result<(Lock, UserRecord), StoreError> {
        self.request("UpdateItem").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        let item = state
            .ledger
            .entry((account_id.to_string(), user_name.to_string()))
            .or_default();
        if item.owner.is_some() && item.lease_until >= now {
            return Err(StoreError::Locked {
                holder: item.owner.clone().unwrap_or_default(),
                until_ms: (self.model.now_utc()
                    + chrono::Duration::from_std(item.lease_until - now).expect("small"))
                .timestamp_millis(),
            });
        }
        let was_held = item.owner.is_some();
        item.owner = Some(owner.to_string());
        item.lease_until = now + lease;
        item.fence += 1;
        let lock = (item.fence, item.record.clone());
        tracing::debug!(user = user_name, "locked");
        state
            .held_since
            .insert((account_id.to_string(), user_name.to_string()), now);
        if !was_held {
            let n = state.locked.entry(account_id.to_string()).or_default();
            *n += 1;
            let n = *n;
            state.peak_locked = state.peak_locked.max(n);
        }
        let (fence, record) = lock;
        Ok((
            Lock {
                account_id: account_id.to_string(),
                user_name: user_name.to_string(),
                owner: owner.to_string(),
                fence,
                lease,
            },
            record,
        ))
    }

    async fn renew(&self, lock: &Lock) -> Result<(), StoreError> {
        self.request("UpdateItem").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        let item = ours(&mut state, lock, Some(now))?;
        item.lease_until = now + lock.lease;
        Ok(())
    }

    async fn write(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError> {
        self.request("UpdateItem").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        ours(&mut state, lock, Some(now))?.record = record.clone();
        Ok(())
    }

    async fn write_and_release(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError> {
        self.request("UpdateItem").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        let item = ours(&mut state, lock, Some(now))?;
        item.record = record.clone();
        item.owner = None;
        released(&mut state, lock, now);
        Ok(())
    }

    async fn release(&self, lock: &Lock) -> Result<(), StoreError> {
        self.request("UpdateItem").await?;
        let mut state = self.state();
        ours(&mut state, lock, None)?.owner = None;
        let now = self.model.elapsed();
        released(&mut state, lock, now);
        Ok(())
    }

    async fn read(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        self.request("GetItem").await?;
        Ok(self
            .state()
            .ledger
            .get(&(account_id.to_string(), user_name.to_string()))
            .map(|i| i.record.clone()))
    }
}

/// Ends the accounting of a hold of `lock`.
fn released(state: &mut State, lock: &Lock, now: Duration) {
    if let Some(n) = state.locked.get_mut(&lock.account_id) {
        *n = n.saturating_sub(1);
    }
    tracing::debug!(user = %lock.user_name, "unlocked");
    if let Some(since) = state
        .held_since
        .remove(&(lock.account_id.clone(), lock.user_name.clone()))
    {
        state.held_total += now.saturating_sub(since);
        state.holds += 1;
    }
}

/// The lock item if `lock` still holds it (with an unexpired lease when
/// `now` is given), as the DynamoDB adapter's conditions decide.
fn ours<'a>(
    state: &'a mut State,
    lock: &Lock,
    now: Option<Duration>,
) -> Result<&'a mut LedgerItem, StoreError> {
    let item = state
        .ledger
        .get_mut(&(lock.account_id.clone(), lock.user_name.clone()))
        .ok_or(StoreError::LockLost)?;
    let held = item.owner.as_deref() == Some(lock.owner.as_str())
        && item.fence == lock.fence
        && now.is_none_or(|now| item.lease_until > now);
    if held {
        Ok(item)
    } else {
        Err(StoreError::LockLost)
    }
}

/// Adds a complete account's counts to the run's, once.
impl SimTable {
    /// The producer's mark taking its time (see
    /// [`ModelConfig::producer_mark_delay`](super::model::ModelConfig)).
    async fn producer_mark(&self) {
        let delay = self.model.config().producer_mark_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }

    /// The adapter's `record` (`watch`) or `record_last`: the conditioned
    /// transaction first when `watch`, then the unconditioned one and the
    /// read, each a modelled request.
    async fn record_watching(&self, r: &ResultItem, watch: bool) -> Result<Recorded, AwsError> {
        let item = format!("RUN#{}/ACCOUNT#{}", r.run_id, r.account_id);
        self.transact_on(item.clone()).await?;
        if watch {
            match self.count(r, true) {
                Counting::Duplicate => return Ok(Recorded::Duplicate),
                Counting::Counted => return Ok(Recorded::Early),
                Counting::Cancelled => self.transact_on(item).await?,
            }
        }
        if let Counting::Duplicate = self.count(r, false) {
            return Ok(Recorded::Duplicate);
        }
        let (account, run) = self.progress(&r.run_id, &r.account_id).await?;
        Ok(Recorded::New { account, run })
    }

    /// One result transaction's effect: the result put once and counted,
    /// on the adapter's early condition when `conditioned` (the account
    /// still being enqueued, or a result per group still to come).
    fn count(&self, r: &ResultItem, conditioned: bool) -> Counting {
        let now = self.model.elapsed();
        let mut state = self.state();
        let run = state.runs.entry(r.run_id.clone()).or_default();
        let key = (r.account_id.clone(), r.user_name.clone());
        if run.results.contains_key(&key) {
            return Counting::Duplicate;
        }
        let account = run.accounts.entry(r.account_id.clone()).or_default();
        let early = !account.enqueued || account.watch_from.is_some_and(|w| account.done < w);
        if conditioned && !early {
            return Counting::Cancelled;
        }
        account.done += 1;
        *account
            .counts
            .entry(r.outcome.as_str().to_string())
            .or_default() += 1;
        run.results.insert(key, (r.clone(), false));
        state.recorded_at.push(now);
        Counting::Counted
    }
}

/// What one modelled result transaction did.
enum Counting {
    /// The result was there already.
    Duplicate,
    /// The early condition failed: nothing written.
    Cancelled,
    /// Put and counted.
    Counted,
}

/// Rolls a complete account up into its run, once; whether this did.
fn roll_up(run: &mut Run, account_id: &str) -> bool {
    let Some(account) = run.accounts.get_mut(account_id) else {
        return false;
    };
    if account.rolled_up || !progress(account).complete() {
        return false;
    }
    account.rolled_up = true;
    run.run.done += account.done;
    for (outcome, n) in &account.counts {
        *run.run.counts.entry(outcome.clone()).or_default() += n;
    }
    true
}

fn progress(c: &Counted) -> Progress {
    Progress {
        done: c.done,
        expected: c.expected,
        enqueued: c.enqueued,
    }
}

fn no_run(op: &'static str) -> AwsError {
    AwsError::NotFound {
        op,
        message: "no such run".into(),
        source: None,
    }
}

#[async_trait]
impl ResultsPort for SimTable {
    async fn find(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<(ResultItem, bool)>, AwsError> {
        self.request("GetItem").await?;
        Ok(self.state().runs.get(run_id).and_then(|r| {
            r.results
                .get(&(account_id.to_string(), user_name.to_string()))
                .cloned()
        }))
    }

    async fn mark_published(
        &self,
        run_id: &str,
        account_id: &str,
        user_name: &str,
    ) -> Result<(), AwsError> {
        self.request("UpdateItem").await?;
        if let Some((_, published)) = self.state().runs.get_mut(run_id).and_then(|r| {
            r.results
                .get_mut(&(account_id.to_string(), user_name.to_string()))
        }) {
            *published = true;
        }
        Ok(())
    }

    async fn record(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record_watching(r, true).await
    }

    async fn record_last(&self, r: &ResultItem) -> Result<Recorded, AwsError> {
        self.record_watching(r, false).await
    }

    async fn progress(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<(Progress, Option<Progress>), AwsError> {
        self.request("GetItem").await?;
        let (account, rolled_up) = {
            let state = self.state();
            let run = state
                .runs
                .get(run_id)
                .ok_or_else(|| no_run("dynamodb:GetItem"))?;
            let account = run.accounts.get(account_id).cloned().unwrap_or_default();
            (progress(&account), account.rolled_up)
        };
        if !account.complete() {
            return Ok((account, None));
        }
        if !rolled_up {
            self.transact_on(format!("RUN#{run_id}")).await?;
            roll_up(
                self.state().runs.get_mut(run_id).expect("read above"),
                account_id,
            );
        }
        self.request("GetItem").await?;
        let state = self.state();
        Ok((account, Some(progress(&state.runs[run_id].run))))
    }

    async fn run_summary(&self, run_id: &str) -> Result<RunTotals, AwsError> {
        self.request("GetItem").await?;
        let state = self.state();
        let run = state
            .runs
            .get(run_id)
            .ok_or_else(|| no_run("dynamodb:GetItem"))?;
        let params = run
            .params
            .as_ref()
            .ok_or_else(|| no_run("dynamodb:GetItem"))?;
        Ok(RunTotals {
            run_id: run_id.to_string(),
            mode: params.mode.to_string(),
            as_of: params.as_of.to_rfc3339(),
            accounts: run.accounts.len() as i64,
            expected: run.run.expected,
            done: run.run.done,
            counts: run.run.counts.clone(),
            failed_accounts: run.failed_accounts.clone(),
        })
    }

    async fn digest_sent_to(
        &self,
        run_id: &str,
        account_id: &str,
        to: &str,
    ) -> Result<(), AwsError> {
        self.request("UpdateItem").await?;
        self.state()
            .runs
            .entry(run_id.to_string())
            .or_default()
            .digest_sent_to
            .entry(account_id.to_string())
            .or_default()
            .insert(to.to_string());
        Ok(())
    }

    async fn claim(
        &self,
        run_id: &str,
        notice: Notice<'_>,
        owner: &str,
        holder: Option<&str>,
        takeover: Duration,
    ) -> Result<Claim, AwsError> {
        self.request("UpdateItem").await?;
        let now = self.model.elapsed();
        let mut state = self.state();
        let run = state.runs.entry(run_id.to_string()).or_default();
        let account = notice_account(notice);
        let claim = run.claims.entry(account.clone()).or_default();
        match claim.clone() {
            ClaimState::Sent => Ok(Claim::Done),
            ClaimState::Sending {
                at, holder: held, ..
            } if at + takeover > now => Ok(Claim::Busy {
                stale_at: self.model.now_utc()
                    + chrono::Duration::from_std(at + takeover - now).expect("small"),
                holder: held,
            }),
            _ => {
                *claim = ClaimState::Sending {
                    owner: owner.to_string(),
                    holder: holder.map(str::to_string),
                    at: now,
                };
                let already_sent = account
                    .and_then(|a| run.digest_sent_to.get(&a).cloned())
                    .unwrap_or_default();
                Ok(Claim::Mine { already_sent })
            }
        }
    }

    async fn finish(&self, run_id: &str, notice: Notice<'_>, _owner: &str) -> Result<(), AwsError> {
        self.mark_sent(run_id, notice).await
    }

    async fn release(&self, run_id: &str, notice: Notice<'_>, owner: &str) -> Result<(), AwsError> {
        self.give_up(run_id, notice, owner).await
    }

    async fn account_results(
        &self,
        run_id: &str,
        account_id: &str,
    ) -> Result<Vec<ResultItem>, AwsError> {
        let results: Vec<ResultItem> = {
            let state = self.state();
            let mut results: Vec<ResultItem> = state
                .runs
                .get(run_id)
                .map(|r| {
                    r.results
                        .iter()
                        .filter(|((a, _), _)| a == account_id)
                        .map(|(_, (item, _))| item.clone())
                        .collect()
                })
                .unwrap_or_default();
            results.sort_by(|a, b| a.user_name.cmp(&b.user_name));
            results
        };
        // A Query answers up to 1 MB a page: about 1,000 result items.
        for _ in 0..results.len().div_ceil(1000).max(1) {
            self.request("Query").await?;
        }
        Ok(results)
    }
}

fn notice_account(notice: Notice<'_>) -> Option<String> {
    match notice {
        Notice::Digest { account_id } => Some(account_id.to_string()),
        Notice::Summary => None,
    }
}

#[async_trait]
impl RunsPort for SimTable {
    async fn start(
        &self,
        run_id: &str,
        as_of: DateTime<Utc>,
        mode: Mode,
        forced: &[(String, String)],
    ) -> Result<String, AwsError> {
        self.request("UpdateItem").await?;
        let started_at = self.model.now_utc();
        let mut state = self.state();
        let run = state.runs.entry(run_id.to_string()).or_default();
        let params = run.params.get_or_insert_with(|| RunParams {
            as_of,
            mode,
            started_at,
            forced: BTreeSet::new(),
            message_key: Some(format!("{:064x}", 0x5eed_u128 + run_id.len() as u128)),
        });
        params
            .forced
            .extend(forced.iter().map(|(a, u)| forced_entry(a, u)));
        Ok(params.message_key.clone().expect("set above"))
    }

    async fn params(&self, run_id: &str) -> Result<Option<RunParams>, AwsError> {
        self.request("GetItem").await?;
        Ok(self.state().runs.get(run_id).and_then(|r| r.params.clone()))
    }

    async fn account_enqueued(
        &self,
        run_id: &str,
        account_id: &str,
        _account_name: &str,
        expected: i64,
        groups: u32,
    ) -> Result<bool, AwsError> {
        self.producer_mark().await;
        self.request("UpdateItem").await?;
        let mut state = self.state();
        let account = state
            .runs
            .entry(run_id.to_string())
            .or_default()
            .accounts
            .entry(account_id.to_string())
            .or_default();
        account.expected = expected;
        account.enqueued = true;
        account.watch_from = Some(expected - i64::from(groups.max(1)));
        // As the adapter does: an account whose results all came first.
        Ok(roll_up(
            state.runs.get_mut(run_id).expect("just made"),
            account_id,
        ))
    }

    async fn account_failed(
        &self,
        run_id: &str,
        account_id: &str,
        _account_name: &str,
        _error: &str,
        enqueued: i64,
    ) -> Result<bool, AwsError> {
        self.producer_mark().await;
        self.request("UpdateItem").await?;
        let mut state = self.state();
        let run = state.runs.entry(run_id.to_string()).or_default();
        run.failed_accounts.push(account_id.to_string());
        let account = run.accounts.entry(account_id.to_string()).or_default();
        account.expected = enqueued;
        account.enqueued = true;
        account.watch_from = None;
        Ok(roll_up(run, account_id))
    }

    async fn finish_enqueue(
        &self,
        run_id: &str,
        _accounts: i64,
        expected: i64,
    ) -> Result<bool, AwsError> {
        self.producer_mark().await;
        self.request("UpdateItem").await?;
        let mut state = self.state();
        let run = state.runs.entry(run_id.to_string()).or_default();
        run.run.expected = expected;
        run.run.enqueued = true;
        Ok(run.run.done >= expected)
    }
}

/// The pace item's semantics in one modelled request (the adapter's first
/// write is the right one when its process saw the pace lately).
#[async_trait]
impl SendPace for SimTable {
    async fn take(
        &self,
        interval: Duration,
        count: usize,
        horizon: Duration,
    ) -> Result<Slot, AwsError> {
        self.request("UpdateItem").await?;
        let now = keyrotor_shared::time::now().timestamp_millis();
        let span = (interval.as_millis() as i64).max(1) * count.max(1) as i64;
        let mut state = self.state();
        let at = state.ses_next_at.max(now);
        let at_time = |ms: i64| DateTime::from_timestamp_millis(ms).expect("a simulated time");
        if at - now > horizon.as_millis() as i64 {
            return Ok(Slot::Full { next: at_time(at) });
        }
        state.ses_next_at = at + span;
        Ok(Slot::At(at_time(at)))
    }
}

/// The pace item's recorded rate: a `GetItem` and an `UpdateItem`.
#[async_trait]
impl RecordedRate for SimTable {
    async fn rate(&self) -> Result<Option<std::num::NonZeroU32>, AwsError> {
        self.request("GetItem").await?;
        Ok(self.state().ses_rate)
    }

    async fn record_rate(&self, rate: std::num::NonZeroU32) -> Result<(), AwsError> {
        self.request("UpdateItem").await?;
        self.state().ses_rate = Some(rate);
        Ok(())
    }
}

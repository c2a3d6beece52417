//! Client-side rate limits (`governor` token buckets): IAM calls and
//! Secrets Manager writes per member account (each FIFO group taking its
//! share), writes to a central secrets account and SES sends across the
//! process. They
//! keep a worker fleet under AWS's quotas instead of relying on throttling
//! answers; throttling that still happens is retried by the SDK (adaptive
//! mode, jittered backoff) and, past that, by redelivering the message.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use std::time::Duration;

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::iam::{IamPort, NewKey, UserInfo};
use super::secrets::{SecretInfo, SecretsPort, StoreSecret, StoredSecret};
use crate::config::Settings;
use crate::domain::{KeyState, LastUsed};
use crate::error::AwsError;

/// governor's clock on tokio's time, so that a wait is a tokio sleep: the
/// load simulator runs the real limits on tokio's paused clock, and in a
/// real process tokio's time is the monotonic clock.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

type Direct = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// Waits until `check` lets a call through (governor's own waiting futures
/// use a real-time timer).
async fn until_ready(
    clock: &TokioClock,
    mut check: impl FnMut() -> Result<(), governor::NotUntil<Duration>>,
) {
    while let Err(not_until) = check() {
        tokio::time::sleep(not_until.wait_time_from(clock.now())).await;
    }
}

/// One FIFO group's share of its account's IAM budget: the producer spreads
/// an account's messages over `of` groups, and FIFO gives each group to one
/// worker at a time, so when every group's worker takes `1/of` of the
/// budget the fleet as a whole stays within it, however many workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IamShare {
    /// The group (0-based).
    pub group: u32,
    /// Groups the account's messages are spread over (at least 1).
    pub of: u32,
}

impl IamShare {
    /// The whole budget (one group, or no queue at all as in `rotate`).
    pub const WHOLE: IamShare = IamShare { group: 0, of: 1 };
}

/// A per-account budget that FIFO groups share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Budget {
    Iam,
    SecretsWrites,
}

/// One group's share of an account's budget: its limiter, and the calls
/// waiting for it, served oldest message first.
struct Share {
    limiter: Direct,
    /// The calls waiting now, by (the message's port, a call number): the
    /// first in order is the only one that may take the share's next call.
    waiting: std::sync::Mutex<std::collections::BTreeSet<(u64, u64)>>,
    /// Wakes the waiting calls when the first of them leaves (served, or
    /// its future dropped), so that the next one takes its place.
    turn: tokio::sync::Notify,
}

impl Share {
    fn new(limiter: Direct) -> Share {
        Share {
            limiter,
            waiting: std::sync::Mutex::default(),
            turn: tokio::sync::Notify::new(),
        }
    }

    /// Whether calls of the share's own group wait for it now.
    fn is_waited_for(&self) -> bool {
        !self.waiting.lock().expect("not poisoned").is_empty()
    }
}

/// A call's place among its share's waiting calls, left when dropped
/// (served, or its future dropped).
struct Place<'a> {
    share: &'a Share,
    key: (u64, u64),
}

impl<'a> Place<'a> {
    fn join(share: &'a Share, port: u64, calls: &AtomicU64) -> Place<'a> {
        let key = (port, calls.fetch_add(1, Ordering::Relaxed));
        share.waiting.lock().expect("not poisoned").insert(key);
        Place { share, key }
    }

    fn is_first(&self) -> bool {
        let waiting = self.share.waiting.lock().expect("not poisoned");
        waiting.first() == Some(&self.key)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        let mut waiting = self.share.waiting.lock().expect("not poisoned");
        let was_first = waiting.first() == Some(&self.key);
        waiting.remove(&self.key);
        drop(waiting);
        // Only the first may take the share's calls: another leaving (it
        // borrowed a call) changes nobody's turn.
        if was_first {
            self.share.turn.notify_waiters();
        }
    }
}

/// One share per (budget, account, share) in use.
type ShareLimiters = std::collections::HashMap<(Budget, String, IamShare), Arc<Share>>;

/// The IAM shares this process holds now (a message of the group is being
/// worked): per (account, groups it is spread over), per group, the share's
/// limiter and how many of its messages hold it. A `BTreeMap` so that the
/// order lenders are asked in, and so the load simulator, is deterministic.
type HeldShares =
    std::collections::HashMap<(String, u32), std::collections::BTreeMap<u32, (Arc<Share>, usize)>>;

/// Share limiters a process keeps before it forgets those not in use.
const SHARES_KEPT: usize = 4096;

/// The limiters of one process.
#[derive(Clone)]
pub struct Limits {
    clock: TokioClock,
    iam_rate: NonZeroU32,
    iam_burst: NonZeroU32,
    secrets_rate: NonZeroU32,
    /// One limiter per (budget, account, share) in use.
    shares: Arc<std::sync::Mutex<ShareLimiters>>,
    /// The IAM shares held now, which lend their unused calls.
    held: Arc<std::sync::Mutex<HeldShares>>,
    /// Numbers the IAM ports in the order they are made, one a message:
    /// a share serves its oldest message's calls first.
    ports_made: Arc<AtomicU64>,
    /// Writes to a central secrets account, which every account's
    /// rotations share: limited per process.
    central_secrets: Arc<Share>,
    ses: Arc<Direct>,
}

impl Limits {
    /// Limits from `KEYROTOR_IAM_RATE`/`_BURST`, `KEYROTOR_SECRETS_RATE`, `KEYROTOR_SES_RATE`.
    pub fn new(settings: &Settings) -> Limits {
        Limits::with(
            settings.iam_rate,
            settings.iam_burst,
            settings.secrets_rate,
            settings.ses_rate,
        )
    }

    /// Limits with explicit rates (per second).
    pub fn with(
        iam: NonZeroU32,
        iam_burst: NonZeroU32,
        secrets: NonZeroU32,
        ses: NonZeroU32,
    ) -> Limits {
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        Limits {
            iam_rate: iam,
            iam_burst,
            secrets_rate: secrets,
            shares: Arc::default(),
            held: Arc::default(),
            ports_made: Arc::default(),
            central_secrets: Arc::new(Share::new(RateLimiter::direct_with_clock(
                Quota::per_second(secrets),
                clock.clone(),
            ))),
            ses: Arc::new(RateLimiter::direct_with_clock(
                Quota::per_second(ses),
                clock.clone(),
            )),
            clock,
        }
    }

    /// `share` of a per-account budget of `rate` calls a second with
    /// `burst`: `rate / of` a second, a burst of `burst / of` (at least 1).
    fn share_of(
        &self,
        budget: Budget,
        account_id: &str,
        share: IamShare,
        rate: NonZeroU32,
        burst: NonZeroU32,
    ) -> Arc<Share> {
        let mut shares = self.shares.lock().expect("not poisoned");
        if shares.len() >= SHARES_KEPT {
            // Forget the shares no port holds. A share made again starts
            // empty, which is never more than a kept one would allow, so
            // forgetting keeps the budget; without it a long-running pool
            // kept one limiter per account and share it ever saw.
            shares.retain(|_, limiter| Arc::strong_count(limiter) > 1);
        }
        shares
            .entry((budget, account_id.to_string(), share))
            .or_insert_with(|| {
                let of = share.of.max(1);
                // `rate / of` calls a second: one call every `of / rate` s.
                let period = Duration::from_secs_f64(f64::from(of) / f64::from(rate.get()));
                let burst = NonZeroU32::new(burst.get() / of).unwrap_or(NonZeroU32::MIN);
                let quota = Quota::with_period(period)
                    .expect("a positive period")
                    .allow_burst(burst);
                let limiter = RateLimiter::direct_with_clock(quota, self.clock.clone());
                // A new share starts empty, not with its burst: another
                // process may have spent the group's share a moment ago
                // (FIFO hands a group's next messages to any worker; a
                // Lambda batch to a fresh environment), and the shares of
                // 1/R replace those of 1/K while the old ones are still
                // spent. Fresh bursts were nearly every throttling answer
                // the load simulator saw (15,235 of 15,354 for 1,000
                // accounts x 100 users, at 7 % more sweep time).
                while limiter.check().is_ok() {}
                Arc::new(Share::new(limiter))
            })
            .clone()
    }

    /// IAM of `account_id`, limited to `share` of the account's budget.
    ///
    /// While the returned port lives, its share is held: when the share has
    /// no call left, it borrows from the account's other shares this process
    /// holds. A group whose message waits (for a new key to propagate, for
    /// a lock) leaves its calls to the account's groups that work, instead
    /// of idling them; every call still comes out of a share held here, and
    /// FIFO gives each group to one worker at a time, so the fleet stays
    /// within the account's budget.
    pub fn iam(
        &self,
        account_id: &str,
        share: IamShare,
        inner: Arc<dyn IamPort>,
    ) -> Arc<dyn IamPort> {
        let limiter = self.share_of(
            Budget::Iam,
            account_id,
            share,
            self.iam_rate,
            self.iam_burst,
        );
        let account = (account_id.to_string(), share.of.max(1));
        self.held
            .lock()
            .expect("not poisoned")
            .entry(account.clone())
            .or_default()
            .entry(share.group)
            .or_insert_with(|| (limiter.clone(), 0))
            .1 += 1;
        Arc::new(LimitedIam {
            inner,
            share: limiter,
            port: self.ports_made.fetch_add(1, Ordering::Relaxed),
            calls: AtomicU64::new(0),
            lease: Lease {
                held: self.held.clone(),
                account,
                group: share.group,
            },
            clock: self.clock.clone(),
        })
    }

    /// Secrets Manager with limited writes: in the member account
    /// `Some((account_id, share))`, `share` of that account's write budget
    /// (AWS's quota is per account, and the secrets of different accounts
    /// do not compete); in a central secrets account (`None`), the
    /// process's own budget.
    pub fn secrets(
        &self,
        member: Option<(&str, IamShare)>,
        inner: Arc<dyn SecretsPort>,
    ) -> Arc<dyn SecretsPort> {
        let writes = match member {
            Some((account_id, share)) => self.share_of(
                Budget::SecretsWrites,
                account_id,
                share,
                self.secrets_rate,
                self.secrets_rate,
            ),
            None => self.central_secrets.clone(),
        };
        Arc::new(LimitedSecrets {
            inner,
            writes,
            clock: self.clock.clone(),
        })
    }

    /// Waits for an SES send slot.
    pub async fn ses_ready(&self) {
        until_ready(&self.clock, || self.ses.check()).await;
    }
}

/// A share held while a port lives (see [`Limits::iam`]).
struct Lease {
    held: Arc<std::sync::Mutex<HeldShares>>,
    account: (String, u32),
    group: u32,
}

impl Lease {
    /// Takes a call from another held share of the account, if one has a
    /// call to spare; otherwise how long until the first of them has.
    fn borrow(&self, clock: &TokioClock) -> Result<(), Duration> {
        let held = self.held.lock().expect("not poisoned");
        let mut wait = Duration::MAX;
        for (group, (share, _)) in held.get(&self.account).into_iter().flatten() {
            // A share whose own calls wait lends nothing: its calls are
            // theirs, and taking them would slow its group behind the
            // others, to finish alone at its share when they are done.
            if *group == self.group || share.is_waited_for() {
                continue;
            }
            match share.limiter.check() {
                Ok(()) => return Ok(()),
                Err(not_until) => wait = wait.min(not_until.wait_time_from(clock.now())),
            }
        }
        Err(wait)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut held = self.held.lock().expect("not poisoned");
        if let Some(groups) = held.get_mut(&self.account) {
            if let Some((_, holders)) = groups.get_mut(&self.group) {
                *holders -= 1;
                if *holders == 0 {
                    groups.remove(&self.group);
                }
            }
            if groups.is_empty() {
                held.remove(&self.account);
            }
        }
    }
}

struct LimitedIam {
    inner: Arc<dyn IamPort>,
    share: Arc<Share>,
    /// This port's place in the order ports were made.
    port: u64,
    /// Numbers this port's calls, which may wait at once.
    calls: AtomicU64,
    lease: Lease,
    clock: TokioClock,
}

impl LimitedIam {
    /// Waits for a call from the group's own share or, failing that, one
    /// borrowed from a share the process holds and does not use now.
    ///
    /// The share's calls go to its oldest message first (the first to get
    /// its port for the account; a redelivered message gets a new one). A
    /// group's messages worked at once (a Lambda batch, the pool's window)
    /// would otherwise advance together, each at a fraction of the share, and
    /// reach their waits with no IAM call (a new key propagating to STS)
    /// together at the end, the share idle meanwhile; oldest first, one
    /// message's wait passes while the next ones spend the share.
    async fn ready(&self) {
        let place = Place::join(&self.share, self.port, &self.calls);
        loop {
            let turn = self.share.turn.notified();
            tokio::pin!(turn);
            // Registered before looking, so a turn given meanwhile wakes it.
            turn.as_mut().enable();
            let own = if place.is_first() {
                match self.share.limiter.check() {
                    Ok(()) => return,
                    Err(not_until) => Some(not_until.wait_time_from(self.clock.now())),
                }
            } else {
                None
            };
            let lender = match self.lease.borrow(&self.clock) {
                Ok(()) => return,
                Err(Duration::MAX) => None,
                Err(lender) => Some(lender),
            };
            match own.into_iter().chain(lender).min() {
                Some(wait) => {
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = &mut turn => {}
                    }
                }
                None => turn.await,
            }
        }
    }
}

#[async_trait]
impl IamPort for LimitedIam {
    async fn get_user(&self, user_name: &str) -> Result<UserInfo, AwsError> {
        self.ready().await;
        self.inner.get_user(user_name).await
    }
    async fn list_groups_for_user(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        self.ready().await;
        self.inner.list_groups_for_user(user_name).await
    }
    async fn list_user_names(&self) -> Result<Vec<String>, AwsError> {
        self.ready().await;
        self.inner.list_user_names().await
    }
    async fn list_key_metadata(&self, user_name: &str) -> Result<Vec<KeyState>, AwsError> {
        self.ready().await;
        self.inner.list_key_metadata(user_name).await
    }
    async fn key_last_used(&self, key_id: &str) -> Result<Option<LastUsed>, AwsError> {
        self.ready().await;
        self.inner.key_last_used(key_id).await
    }
    async fn create_key(&self, user_name: &str) -> Result<NewKey, AwsError> {
        self.ready().await;
        self.inner.create_key(user_name).await
    }
    async fn deactivate_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.deactivate_key(user_name, key_id).await
    }
    async fn delete_key(&self, user_name: &str, key_id: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.delete_key(user_name, key_id).await
    }
    async fn attach_read_policy(&self, user_name: &str, policy_arn: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.attach_read_policy(user_name, policy_arn).await
    }
    async fn attached_policy_names(&self, user_name: &str) -> Result<Vec<String>, AwsError> {
        self.ready().await;
        self.inner.attached_policy_names(user_name).await
    }
}

struct LimitedSecrets {
    inner: Arc<dyn SecretsPort>,
    writes: Arc<Share>,
    clock: TokioClock,
}

impl LimitedSecrets {
    async fn ready(&self) {
        until_ready(&self.clock, || self.writes.limiter.check()).await;
    }
}

#[async_trait]
impl SecretsPort for LimitedSecrets {
    // Reads have their own, much larger quota: not limited here.
    async fn describe(&self, name: &str) -> Result<Option<SecretInfo>, AwsError> {
        self.inner.describe(name).await
    }
    async fn store(&self, req: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
        self.ready().await;
        self.inner.store(req).await
    }
    async fn put_resource_policy(&self, arn: &str, document: &str) -> Result<(), AwsError> {
        self.ready().await;
        self.inner.put_resource_policy(arn, document).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IAM that answers every call at once (only the limits are under test).
    struct Instant;

    #[async_trait]
    impl IamPort for Instant {
        async fn get_user(&self, _: &str) -> Result<UserInfo, AwsError> {
            unreachable!("not called")
        }
        async fn list_groups_for_user(&self, _: &str) -> Result<Vec<String>, AwsError> {
            Ok(Vec::new())
        }
        async fn list_user_names(&self) -> Result<Vec<String>, AwsError> {
            Ok(Vec::new())
        }
        async fn list_key_metadata(&self, _: &str) -> Result<Vec<KeyState>, AwsError> {
            Ok(Vec::new())
        }
        async fn key_last_used(&self, _: &str) -> Result<Option<LastUsed>, AwsError> {
            Ok(None)
        }
        async fn create_key(&self, _: &str) -> Result<NewKey, AwsError> {
            unreachable!("not called")
        }
        async fn deactivate_key(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn delete_key(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn attach_read_policy(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
        async fn attached_policy_names(&self, _: &str) -> Result<Vec<String>, AwsError> {
            Ok(Vec::new())
        }
    }

    /// An account budget of 2 calls a second (burst 2), over 2 groups:
    /// each group's own share is 1 a second with a burst of 1.
    fn limits() -> Limits {
        let n = |v| NonZeroU32::new(v).expect("positive");
        Limits::with(n(2), n(2), n(20), n(1))
    }

    fn group(g: u32) -> IamShare {
        IamShare { group: g, of: 2 }
    }

    /// Seconds two back-to-back calls through `port` take.
    async fn two_calls(port: &dyn IamPort) -> f64 {
        let started = tokio::time::Instant::now();
        port.delete_key("u", "k").await.expect("answered");
        port.delete_key("u", "k").await.expect("answered");
        started.elapsed().as_secs_f64()
    }

    #[tokio::test(start_paused = true)]
    async fn a_group_alone_is_paced_at_its_share_from_an_empty_start() {
        let limits = limits();
        let port = limits.iam("111111111111", group(0), Arc::new(Instant));
        // Half of 2 calls a second, and no burst to start with: another
        // process may just have spent the group's share.
        let took = two_calls(port.as_ref()).await;
        assert!((1.9..2.1).contains(&took), "took {took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_idle_share_lends_its_calls_to_the_accounts_other_group() {
        let limits = limits();
        let working = limits.iam("111111111111", group(0), Arc::new(Instant));
        let _waiting = limits.iam("111111111111", group(1), Arc::new(Instant));
        // After one period each share has a call: the second is borrowed.
        let took = two_calls(working.as_ref()).await;
        assert!(
            (0.9..1.1).contains(&took),
            "the second call borrowed, yet took {took} s"
        );
        // Both shares spent: the next call waits for the first new token.
        let started = tokio::time::Instant::now();
        working.delete_key("u", "k").await.expect("answered");
        let waited = started.elapsed().as_secs_f64();
        assert!((0.4..1.1).contains(&waited), "waited {waited} s");
    }

    /// When each of `calls` through `port` is answered, in seconds from `start`.
    async fn answered_at(
        port: &dyn IamPort,
        calls: usize,
        start: tokio::time::Instant,
    ) -> Vec<f64> {
        let mut at = Vec::new();
        for _ in 0..calls {
            port.delete_key("u", "k").await.expect("answered");
            at.push((start.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        }
        at
    }

    #[tokio::test(start_paused = true)]
    async fn a_shares_calls_go_to_its_oldest_message_first() {
        let limits = limits();
        let older = limits.iam("111111111111", group(0), Arc::new(Instant));
        let newer = limits.iam("111111111111", group(0), Arc::new(Instant));
        let start = tokio::time::Instant::now();
        // The newer message asks first, each time (`biased`); the older one
        // is still served first, all its calls, instead of the two sharing
        // the share's pace.
        let (newer_at, older_at) = tokio::join!(
            biased;
            answered_at(newer.as_ref(), 3, start),
            answered_at(older.as_ref(), 3, start),
        );
        assert_eq!(older_at, [1.0, 2.0, 3.0]);
        assert_eq!(newer_at, [4.0, 5.0, 6.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_whose_own_calls_wait_lends_nothing() {
        let limits = limits();
        let working = limits.iam("111111111111", group(0), Arc::new(Instant));
        let other = limits.iam("111111111111", group(1), Arc::new(Instant));
        let start = tokio::time::Instant::now();
        // Group 0's calls are tried first each time (`biased`): when both
        // shares have a call, at 1 s, its second call would take group 1's.
        let (working_at, other_at) = tokio::join!(
            biased;
            answered_at(working.as_ref(), 2, start),
            answered_at(other.as_ref(), 1, start),
        );
        // Group 1's call waits for its share's first call and gets it; group
        // 0 borrows nothing from it and waits for its own second one.
        assert_eq!(other_at, [1.0]);
        assert_eq!(working_at, [1.0, 2.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_share_no_longer_held_or_of_another_account_lends_nothing() {
        let limits = limits();
        let working = limits.iam("111111111111", group(0), Arc::new(Instant));
        drop(limits.iam("111111111111", group(1), Arc::new(Instant)));
        let _other_account = limits.iam("222222222222", group(1), Arc::new(Instant));
        let took = two_calls(working.as_ref()).await;
        assert!((1.9..2.1).contains(&took), "took {took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn shares_no_port_holds_are_forgotten_once_many_were_made() {
        let limits = limits();
        let held = limits.iam("111111111111", group(0), Arc::new(Instant));
        for n in 0..SHARES_KEPT - 1 {
            drop(limits.iam(&format!("{n:012}"), group(1), Arc::new(Instant)));
        }
        assert_eq!(limits.shares.lock().unwrap().len(), SHARES_KEPT);
        // The next share forgets every one no port holds, and only those.
        let _next = limits.iam("222222222222", group(0), Arc::new(Instant));
        let kept = limits.shares.lock().unwrap().len();
        assert_eq!(kept, 2, "the held share and the new one");
        // The held share still paces its calls (it was not replaced).
        let took = two_calls(held.as_ref()).await;
        assert!((1.9..2.1).contains(&took), "took {took} s");
    }

    #[tokio::test(start_paused = true)]
    async fn secret_writes_are_limited_per_member_account() {
        let n = |v| NonZeroU32::new(v).expect("positive");
        let limits = Limits::with(n(10), n(10), n(1), n(1));
        let policy =
            |account: Option<(&str, IamShare)>| limits.secrets(account, Arc::new(NoSecrets));
        let started = tokio::time::Instant::now();
        // Three accounts at once, each waiting one period of its own budget
        // (a member account's share starts empty), not three.
        let [a, b, c] = ["111111111111", "222222222222", "333333333333"]
            .map(|account| policy(Some((account, IamShare::WHOLE))));
        let written = tokio::join!(
            a.put_resource_policy("arn", "{}"),
            b.put_resource_policy("arn", "{}"),
            c.put_resource_policy("arn", "{}"),
        );
        for w in [written.0, written.1, written.2] {
            w.expect("answered");
        }
        let took = started.elapsed();
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(1100)).contains(&took),
            "{took:?}"
        );
        // A central secrets account is one budget for the process.
        let started = tokio::time::Instant::now();
        let central = policy(None);
        central
            .put_resource_policy("arn", "{}")
            .await
            .expect("answered");
        central
            .put_resource_policy("arn", "{}")
            .await
            .expect("answered");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    struct NoSecrets;

    #[async_trait]
    impl SecretsPort for NoSecrets {
        async fn describe(&self, _: &str) -> Result<Option<SecretInfo>, AwsError> {
            Ok(None)
        }
        async fn store(&self, _: StoreSecret<'_>) -> Result<StoredSecret, AwsError> {
            unreachable!("not called")
        }
        async fn put_resource_policy(&self, _: &str, _: &str) -> Result<(), AwsError> {
            Ok(())
        }
    }
}

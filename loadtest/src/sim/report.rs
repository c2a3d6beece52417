//! What a simulation reports: the sweep against DESIGN §9's lower bound,
//! correctness counts, calls, and the progress curve for the chart.

use std::collections::BTreeMap;

use serde::Serialize;

use super::aws::Sim;
use super::model::{Counters, ModelConfig, Service};
use super::queue::QueueStats;
use super::table::SimTable;
use super::SimConfig;

/// One simulation's report (`--output json` prints it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// `keyrotor` or `reference`.
    pub shape: &'static str,
    /// Accounts.
    pub accounts: usize,
    /// Users in the Organization.
    pub users: usize,
    /// Seconds from the start to the last user's result or the last email,
    /// whichever came later.
    pub sweep_seconds: f64,
    /// DESIGN §9's bound from the calls actually made: the busiest
    /// account's IAM calls over its rate, its Secrets Manager writes over
    /// 50/s, emails over the SES rate; the largest of the three.
    pub lower_bound_seconds: f64,
    /// `sweep_seconds / lower_bound_seconds`.
    pub ratio: f64,
    /// Users whose key was due for rotation.
    pub due: u64,
    /// Users whose key was rotated.
    pub rotated: u64,
    /// Users whose processing failed.
    pub failed: u64,
    /// Users never reached: the reference's time limit, or users keyrotor's
    /// producer did not enqueue (an account that failed part-way).
    pub unreached: u64,
    /// Keys created beyond one per rotated user.
    pub duplicated_keys: u64,
    /// Messages sent that have no result.
    pub lost_results: u64,
    /// IAM calls answered (throttled ones included).
    pub iam_calls: u64,
    /// Throttling answers.
    pub throttled: u64,
    /// Retries (the SDK's).
    pub retries: u64,
    /// Transactions cancelled by another on a counter item (each retried
    /// by the adapter).
    pub conflicts: u64,
    /// `CreateAccessKey` answers lost after the key was made (injected).
    pub lost_answers: u64,
    /// Retries the SDK's retry quota refused (modelled for SES sends):
    /// the send failed, and its message was retried later.
    pub retry_quota_refused: u64,
    /// Worker processes that crashed (and were replaced).
    pub crashes: u64,
    /// Moves to the DLQ (redriven once, as an operator would on its alarm;
    /// a message without a result after that counts as lost).
    pub dead_lettered: u64,
    /// Digest emails sent.
    pub emails: u64,
    /// Accounts whose email never went out: keyrotor's digest never
    /// marked sent, or the reference's notice dropped after the notifier's
    /// retries.
    pub digests_unsent: u64,
    /// Run summary events published.
    pub summaries: u64,
    /// Lambda invocations killed at the function's timeout (Lambda shape).
    pub timeouts: u64,
    /// Median seconds per user (keyrotor: first receive to delete).
    pub p50_user_seconds: f64,
    /// 99th percentile of the same.
    pub p99_user_seconds: f64,
    /// The most users of one account worked at once (holding their lock).
    pub peak_in_flight_per_account: u64,
    /// Mean seconds a user's lock was held (the executor's share of a
    /// message; keyrotor only).
    pub mean_locked_seconds: f64,
    /// AWS calls per rotated user, SQS aside.
    pub calls_per_rotated_user: f64,
    /// IAM calls per rotated user.
    pub iam_calls_per_rotated_user: f64,
    /// Calls by `service:Operation`.
    pub calls: BTreeMap<String, u64>,
    /// Seconds at which each user finished, in order (for the chart).
    #[serde(skip)]
    pub finished_at: Vec<f64>,
}

/// The lower bound of DESIGN §9 from what the model counted.
pub fn lower_bound(counters: &Counters, model: &ModelConfig) -> f64 {
    let busiest =
        |m: &std::collections::HashMap<String, u64>| m.values().copied().max().unwrap_or(0);
    let iam = busiest(&counters.iam_ok) as f64 / model.iam_rps;
    let secrets = busiest(&counters.secret_writes) as f64 / model.secrets_write_rps;
    let ses = counters.emails as f64 / model.ses_rps;
    iam.max(secrets).max(ses)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The parts both shapes report the same way.
pub struct Common<'a> {
    /// Shape name.
    pub shape: &'static str,
    /// The simulation's configuration.
    pub config: &'a SimConfig,
    /// Users in the Organization.
    pub users: usize,
    /// Users due for rotation.
    pub due: u64,
    /// The world and model after the run.
    pub sim: &'a Sim,
    /// Rotated users.
    pub rotated: u64,
    /// Seconds per user, unsorted.
    pub user_seconds: Vec<f64>,
    /// Completion times, unsorted.
    pub finished_at: Vec<f64>,
}

impl Report {
    /// The fields both shapes compute alike; the rest are zero.
    pub fn common(c: Common<'_>) -> Report {
        let counters = c.sim.model.counters();
        let lower = lower_bound(&counters, &c.config.model);
        let mut finished_at = c.finished_at;
        finished_at.sort_by(f64::total_cmp);
        // The sweep ends with the last result or the last digest: the
        // bound counts the emails too.
        let sweep = finished_at
            .last()
            .copied()
            .unwrap_or(0.0)
            .max(counters.last_email_at);
        let mut user_seconds = c.user_seconds;
        user_seconds.sort_by(f64::total_cmp);
        let calls: BTreeMap<String, u64> = counters
            .calls
            .iter()
            .map(|((s, op), n)| (format!("{}:{op}", s.prefix()), *n))
            .collect();
        let iam_calls: u64 = counters
            .calls
            .iter()
            .filter(|((s, _), _)| *s == Service::Iam)
            .map(|(_, n)| n)
            .sum();
        let besides_sqs: u64 = counters
            .calls
            .iter()
            .filter(|((s, _), _)| *s != Service::Sqs)
            .map(|(_, n)| n)
            .sum();
        let world = c.sim.world.lock().expect("not poisoned");
        let duplicated_keys = world
            .accounts
            .values()
            .flat_map(|a| a.users.values())
            .map(|u| u64::from((u.keys_created - u.orphans_deleted).saturating_sub(1)))
            .sum();
        let per_rotated = |n: u64| {
            if c.rotated == 0 {
                0.0
            } else {
                n as f64 / c.rotated as f64
            }
        };
        Report {
            shape: c.shape,
            accounts: world.accounts.len(),
            users: c.users,
            due: c.due,
            sweep_seconds: sweep,
            lower_bound_seconds: lower,
            ratio: if lower > 0.0 { sweep / lower } else { 0.0 },
            rotated: c.rotated,
            failed: 0,
            unreached: 0,
            duplicated_keys,
            lost_results: 0,
            iam_calls,
            throttled: counters.throttled,
            retries: counters.retries,
            conflicts: counters.conflicts,
            lost_answers: counters.lost_answers,
            retry_quota_refused: counters.quota_refused,
            crashes: 0,
            dead_lettered: 0,
            emails: counters.emails,
            digests_unsent: 0,
            summaries: 0,
            timeouts: 0,
            p50_user_seconds: percentile(&user_seconds, 0.5),
            p99_user_seconds: percentile(&user_seconds, 0.99),
            peak_in_flight_per_account: 0,
            mean_locked_seconds: 0.0,
            calls_per_rotated_user: per_rotated(besides_sqs),
            iam_calls_per_rotated_user: per_rotated(iam_calls),
            calls,
            finished_at,
        }
    }

    /// The keyrotor shape's report.
    pub fn keyrotor(
        config: &SimConfig,
        (users, due): (usize, u64),
        enqueued: usize,
        sim: &Sim,
        table: &SimTable,
        run_id: &str,
        queue: &QueueStats,
    ) -> Report {
        let outcomes = table.outcomes(run_id);
        let count = |o: &str| outcomes.get(o).copied().unwrap_or(0).max(0) as u64;
        let recorded: u64 = outcomes.values().map(|n| (*n).max(0) as u64).sum();
        let mut report = Report::common(Common {
            shape: "keyrotor",
            config,
            users,
            due,
            sim,
            rotated: count("rotated"),
            user_seconds: queue.user_seconds.clone(),
            finished_at: table
                .recorded_at()
                .iter()
                .map(|d| d.as_secs_f64())
                .collect(),
        });
        report.failed = count("failed");
        report.unreached = (users as u64).saturating_sub(enqueued as u64);
        report.lost_results = (enqueued as u64).saturating_sub(recorded);
        report.peak_in_flight_per_account = table.peak_locked();
        report.count_unsent(table.digests_unsent(run_id), &config.model);
        report.mean_locked_seconds = table.mean_hold().as_secs_f64();
        report
    }

    /// Records `unsent` emails that were owed and never went out; the
    /// bound counts them, as SES would have had to send them.
    pub fn count_unsent(&mut self, unsent: u64, model: &ModelConfig) {
        self.digests_unsent = unsent;
        let owed = (self.emails + unsent) as f64 / model.ses_rps;
        if owed > self.lower_bound_seconds {
            self.lower_bound_seconds = owed;
            self.ratio = self.sweep_seconds / owed;
        }
    }

    /// A few lines for a person.
    pub fn text(&self) -> String {
        format!(
            "{shape}: {users} users in {accounts} accounts\n  \
             sweep {sweep:.1} s, lower bound {lower:.1} s, ratio {ratio:.3}\n  \
             due {due}, rotated {rotated}, failed {failed}, unreached {unreached}, duplicated keys {dup}, lost results {lost}, emails {emails}, emails never sent {unsent}\n  \
             IAM calls {iam} ({iam_per:.1} per rotated user; {per:.1} calls of all services but SQS), throttled {thr}, retries {ret}, transaction conflicts {conflicts}, lost answers {lost_answers}, retries refused by the SDK's quota {refused}, crashes {crashes}, dead-lettered {dead}, timeouts {timeouts}\n  \
             per user p50 {p50:.1} s, p99 {p99:.1} s; peak in flight per account {peak}; mean lock held {held:.2} s",
            shape = self.shape,
            users = self.users,
            accounts = self.accounts,
            sweep = self.sweep_seconds,
            lower = self.lower_bound_seconds,
            ratio = self.ratio,
            due = self.due,
            rotated = self.rotated,
            failed = self.failed,
            unreached = self.unreached,
            dup = self.duplicated_keys,
            conflicts = self.conflicts,
            lost_answers = self.lost_answers,
            refused = self.retry_quota_refused,
            crashes = self.crashes,
            dead = self.dead_lettered,
            timeouts = self.timeouts,
            lost = self.lost_results,
            emails = self.emails,
            unsent = self.digests_unsent,
            iam = self.iam_calls,
            iam_per = self.iam_calls_per_rotated_user,
            per = self.calls_per_rotated_user,
            thr = self.throttled,
            ret = self.retries,
            p50 = self.p50_user_seconds,
            p99 = self.p99_user_seconds,
            peak = self.peak_in_flight_per_account,
            held = self.mean_locked_seconds,
        )
    }
}

//! The reference pattern's shape on the same model: one function per
//! account, all accounts at once. Each scans all its users, then rotates
//! the due ones one after another, and is stopped by its Lambda time limit;
//! at its end it hands the account's email to a notifier function, which
//! sends it through SES. The calls follow the reading of the AWS sample
//! that `loadtest/reference/reference_rotation.py` reproduces on the
//! emulator (11 per rotated user, IAM 7); its code is not run here, only
//! its shape.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{SubsecRound, Utc};

use super::aws::Sim;
use super::model::{Model, Retry, Service};
use super::report::{Common, Report};
use super::world::World;
use super::SimConfig;

/// The reference function's time limit.
pub const TIME_LIMIT: Duration = Duration::from_secs(400);

/// How long Lambda waits before each of its two retries of a failed
/// asynchronous invocation (the notifier's): 1 minute, then 2 more.
pub const ASYNC_RETRY_WAITS: [Duration; 2] = [Duration::from_secs(60), Duration::from_secs(120)];

/// Calls for the account before any user: the session, one page of users,
/// the exemption group.
const ACCOUNT: &[(Service, &str)] = &[
    (Service::Sts, "AssumeRole"),
    (Service::Iam, "ListUsers"),
    (Service::Iam, "GetGroup"),
];

/// A rotation: the due user's calls after the scan.
const ROTATE: &[(Service, &str)] = &[
    (Service::Sts, "GetCallerIdentity"),
    (Service::Iam, "CreateAccessKey"),
    (Service::Secrets, "DescribeSecret"),
    (Service::Secrets, "CreateSecret"),
    (Service::Iam, "GetUser"),
    (Service::Secrets, "PutResourcePolicy"),
    (Service::Iam, "GetUserPolicy"),
    (Service::Iam, "PutUserPolicy"),
];

#[derive(Default)]
struct Tally {
    rotated: u64,
    failed: u64,
    unreached: u64,
    notices_lost: u64,
    finished_at: Vec<f64>,
    user_seconds: Vec<f64>,
}

impl Tally {
    /// One user done at `now`, its own calls having started at `started`.
    fn finish(&mut self, started: Duration, now: Duration) {
        self.finished_at.push(now.as_secs_f64());
        self.user_seconds.push((now - started).as_secs_f64());
    }
}

/// One user as the scan sees it.
struct Listed {
    keys: usize,
    due: bool,
}

async fn account(sim: Sim, account_id: String, tally: Arc<Mutex<Tally>>) {
    let model = &sim.model;
    let started = model.elapsed();
    let call = |service, op: &'static str| model.call(service, op, &account_id, Retry::Boto3);
    let out_of_time = || model.elapsed() - started >= TIME_LIMIT;
    let users: Vec<Listed> = {
        let world = sim.world.lock().expect("not poisoned");
        let due_before = model.now_utc() - chrono::Duration::days(90);
        world.accounts[&account_id]
            .users
            .values()
            .map(|u| Listed {
                keys: u.keys.len(),
                due: u.keys.iter().any(|k| k.created <= due_before),
            })
            .collect()
    };
    // Users done (a user with nothing due is done when scanned, a due one
    // when rotated); the rest are unreached when the function stops, and
    // an account with a due user is owed a notice it never gets.
    let mut done = 0;
    let stop = |done: usize| {
        let mut t = tally.lock().expect("not poisoned");
        t.unreached += (users.len() - done) as u64;
        t.notices_lost += u64::from(users.iter().any(|u| u.due));
    };
    for (service, op) in ACCOUNT {
        if call(*service, op).await.is_err() {
            return stop(0);
        }
    }
    // The sample lists one page of users; the model lists them all (see
    // PERFORMANCE), which only helps it.
    for _ in 1..users.len().div_ceil(100) {
        if call(Service::Iam, "ListUsers").await.is_err() {
            return stop(0);
        }
    }

    let mut due = 0;
    for user in &users {
        if out_of_time() {
            return stop(done);
        }
        let user_started = model.elapsed();
        let mut ok = call(Service::Iam, "ListAccessKeys").await.is_ok();
        for _ in 0..user.keys {
            ok = ok && call(Service::Iam, "GetAccessKeyLastUsed").await.is_ok();
        }
        // The owner tag, for the notifier.
        ok = ok && call(Service::Iam, "ListUserTags").await.is_ok();
        let mut t = tally.lock().expect("not poisoned");
        if !ok {
            t.failed += 1;
            done += 1;
            t.finish(user_started, model.elapsed());
        } else if user.due {
            due += 1;
        } else {
            done += 1;
            t.finish(user_started, model.elapsed());
        }
    }

    for _ in 0..due {
        if out_of_time() {
            return stop(done);
        }
        let user_started = model.elapsed();
        let mut ok = true;
        for (service, op) in ROTATE {
            if call(*service, op).await.is_err() {
                ok = false;
                break;
            }
        }
        done += 1;
        let mut t = tally.lock().expect("not poisoned");
        t.finish(user_started, model.elapsed());
        if ok {
            t.rotated += 1;
        } else {
            t.failed += 1;
        }
    }

    // The account's email, handed to the notifier function (invoked
    // asynchronously, so this function ends here).
    if due > 0 && !notify(model, &account_id).await {
        tally.lock().expect("not poisoned").notices_lost += 1;
    }
}

/// The notifier's `SendEmail` with boto3's retries, and Lambda's two
/// retries of the failed invocation; false when all three fail (the event
/// is dropped: the sample configures no failure destination).
async fn notify(model: &Model, account_id: &str) -> bool {
    for wait in std::iter::once(Duration::ZERO).chain(ASYNC_RETRY_WAITS) {
        tokio::time::sleep(wait).await;
        if model
            .call(Service::Ses, "SendEmail", account_id, Retry::Boto3)
            .await
            .is_ok()
        {
            return true;
        }
    }
    false
}

/// Runs the reference shape on a fresh world of the same shape and seed.
pub async fn simulate(config: &SimConfig) -> Report {
    let as_of = Utc::now().trunc_subsecs(3);
    let model = Arc::new(Model::new(config.model.clone(), as_of));
    let world = World::build(&config.shape, as_of);
    let users = world.users();
    let due = world.due_users(as_of) as u64;
    let accounts: Vec<String> = world.accounts.keys().cloned().collect();
    let sim = Sim {
        model,
        world: Arc::new(Mutex::new(world)),
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = tokio::task::JoinSet::new();
    for id in accounts {
        tasks.spawn(account(sim.clone(), id, tally.clone()));
    }
    while tasks.join_next().await.is_some() {}
    let t = std::mem::take(&mut *tally.lock().expect("not poisoned"));
    let mut report = Report::common(Common {
        shape: "reference",
        config,
        users,
        due,
        sim: &sim,
        rotated: t.rotated,
        user_seconds: t.user_seconds,
        finished_at: t.finished_at,
    });
    report.failed = t.failed;
    report.unreached = t.unreached;
    report.count_unsent(t.notices_lost, &config.model);
    report
}

//! The reference pattern's shape on the same model: one function per
//! account, all accounts at once, each going through its users one after
//! another with no retries, stopped by its Lambda time limit. Its calls
//! per user follow the count measured for the AWS sample (11 per rotated
//! user, IAM 6); its code is not run here, only its shape.

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

/// Calls for every user: its keys and their last use.
const EVERY_USER: &[(Service, &str)] = &[
    (Service::Iam, "ListAccessKeys"),
    (Service::Iam, "GetAccessKeyLastUsed"),
];

/// Further calls for a user whose key is due.
const DUE_USER: &[(Service, &str)] = &[
    (Service::Iam, "GetUser"),
    (Service::Iam, "ListUserTags"),
    (Service::Iam, "ListGroupsForUser"),
    (Service::Iam, "CreateAccessKey"),
    (Service::Secrets, "DescribeSecret"),
    (Service::Secrets, "CreateSecret"),
    (Service::Secrets, "PutResourcePolicy"),
    (Service::Sns, "Publish"),
];

struct Tally {
    rotated: u64,
    failed: u64,
    unreached: u64,
    finished_at: Vec<f64>,
    user_seconds: Vec<f64>,
}

async fn account(sim: Sim, account_id: String, tally: Arc<Mutex<Tally>>) {
    let model = &sim.model;
    let started = model.elapsed();
    let call = |service, op: &'static str| model.call(service, op, &account_id, Retry::Never);
    let users: Vec<(String, bool)> = {
        let world = sim.world.lock().expect("not poisoned");
        let due_before = model.now_utc() - chrono::Duration::days(90);
        world.accounts[&account_id]
            .users
            .iter()
            .map(|(name, u)| (name.clone(), u.keys.iter().any(|k| k.created <= due_before)))
            .collect()
    };
    let mut fail_all = call(Service::Sts, "AssumeRole").await.is_err();
    for _ in 0..users.len().div_ceil(100).max(1) {
        fail_all |= call(Service::Iam, "ListUsers").await.is_err();
    }
    for (i, (_, due)) in users.iter().enumerate() {
        if fail_all || model.elapsed() - started >= TIME_LIMIT {
            tally.lock().expect("not poisoned").unreached += (users.len() - i) as u64;
            return;
        }
        let user_started = model.elapsed();
        let mut ok = true;
        let calls = EVERY_USER.iter().chain(if *due { DUE_USER } else { &[] });
        for (service, op) in calls {
            if call(*service, op).await.is_err() {
                ok = false;
                break;
            }
        }
        let mut t = tally.lock().expect("not poisoned");
        let now = model.elapsed();
        t.finished_at.push(now.as_secs_f64());
        t.user_seconds.push((now - user_started).as_secs_f64());
        match (ok, due) {
            (true, true) => t.rotated += 1,
            (false, _) => t.failed += 1,
            _ => {}
        }
    }
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
    let tally = Arc::new(Mutex::new(Tally {
        rotated: 0,
        failed: 0,
        unreached: 0,
        finished_at: Vec::new(),
        user_seconds: Vec::new(),
    }));
    let mut tasks = tokio::task::JoinSet::new();
    for id in accounts {
        tasks.spawn(account(sim.clone(), id, tally.clone()));
    }
    while tasks.join_next().await.is_some() {}
    let t = std::mem::replace(
        &mut *tally.lock().expect("not poisoned"),
        Tally {
            rotated: 0,
            failed: 0,
            unreached: 0,
            finished_at: Vec::new(),
            user_seconds: Vec::new(),
        },
    );
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
    report
}

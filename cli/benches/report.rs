//! What a large run's report costs: 1,000 accounts of 100 users (100,000
//! results), built from the result items and written as HTML and as CSV.

// `criterion_main!` defines an undocumented `main`.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;

use chrono::{Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use keyrotor_cli::report::{html, Report};
use keyrotor_shared::domain::{Action, KeyAction, Mode, Outcome};
use keyrotor_shared::policy::PolicyConfig;
use keyrotor_shared::store::results::{KeyAges, ResultItem};
use keyrotor_shared::store::runs::{RunAccount, RunRecord};

const ACCOUNTS: usize = 1_000;
const USERS: usize = 100;

fn run() -> (RunRecord, Vec<ResultItem>) {
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
    let account_id = |a: usize| format!("{:012}", 100_000_000_000 + a);
    let per_account = (0..ACCOUNTS)
        .map(|a| RunAccount {
            account_id: account_id(a),
            account_name: format!("account-{a}"),
            expected: USERS as i64,
            done: USERS as i64,
            counts: BTreeMap::from([("noop".to_string(), 70), ("rotated".to_string(), 30)]),
            enqueued: true,
            status: "ok".into(),
            error: None,
            digest_sent: true,
        })
        .collect();
    let results = (0..ACCOUNTS * USERS)
        .map(|i| {
            let rotated = i % 10 < 3;
            ResultItem {
                run_id: "r".into(),
                account_id: account_id(i / USERS),
                account_name: format!("account-{}", i / USERS),
                account_email: None,
                user_name: format!("user-{i}"),
                outcome: if rotated {
                    Outcome::Rotated
                } else {
                    Outcome::Noop
                },
                mode: Mode::Enforce,
                reason: "rotate AKIAEXAMPLE: key is 95 days old (rotate at 90)".into(),
                actions: if rotated {
                    vec![KeyAction::new(Action::Rotate, "AKIAEXAMPLEOLD00000")]
                } else {
                    Vec::new()
                },
                due: Vec::new(),
                new_key_id: rotated.then(|| "AKIAEXAMPLENEW00000".into()),
                secret_arn: None,
                owner_email: None,
                key_ages: Some(KeyAges {
                    before: vec![(i % 120) as i64],
                    after: vec![if rotated { 0 } else { (i % 120) as i64 }],
                }),
                incident: false,
                quarantine_policy: None,
                at: start + Duration::milliseconds(i as i64 * 36),
            }
        })
        .collect();
    let record = RunRecord {
        run_id: "r".into(),
        as_of: start.to_rfc3339(),
        mode: "enforce".into(),
        started_at: start.to_rfc3339(),
        accounts: ACCOUNTS as i64,
        expected: (ACCOUNTS * USERS) as i64,
        enqueue_done: true,
        done: (ACCOUNTS * USERS) as i64,
        counts: BTreeMap::new(),
        summary_sent: true,
        failed_accounts: Vec::new(),
        per_account,
    };
    (record, results)
}

fn bench(c: &mut Criterion) {
    let (record, results) = run();
    let report = Report::build(&record, results.clone());
    let policy = PolicyConfig::default();
    let mut group = c.benchmark_group("report of 100,000 results");
    group.sample_size(10);
    group.bench_function("build", |b| {
        b.iter(|| black_box(Report::build(&record, black_box(results.clone()))))
    });
    group.bench_function("html", |b| {
        b.iter(|| black_box(html::render(black_box(&report), &policy).unwrap()))
    });
    group.bench_function("csv", |b| b.iter(|| black_box(report.csv().unwrap())));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

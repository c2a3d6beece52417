//! How long one policy evaluation takes: the worker runs it once per user, the
//! load simulator millions of times. Target: well under 2 µs.

// `criterion_main!` defines an undocumented `main`.
#![allow(missing_docs)]

use std::hint::black_box;

use chrono::{DateTime, Duration, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use keyrotor_shared::domain::{KeyHistory, KeyState, KeyStatus, LastUsed, Verification};
use keyrotor_shared::policy::{evaluate, PolicyConfig, UserFacts};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
}

fn key(id: &str, created: i64, used: Option<i64>) -> KeyState {
    KeyState {
        key_id: id.to_owned(),
        status: KeyStatus::Active,
        created: day(created),
        last_used: used.map(|n| LastUsed {
            at: day(n),
            service: Some("s3".to_owned()),
        }),
    }
}

fn bench(c: &mut Criterion) {
    let config = PolicyConfig::default();
    let history = KeyHistory {
        verification: Some(Verification {
            key_id: "AKIAEXAMPLENEW000002".to_owned(),
            at: day(90),
        }),
        ..KeyHistory::default()
    };

    // Two active keys, the old one still in use and the new one not adopted:
    // the adoption check runs and a hold plus a warning are planned.
    let two = [
        key("AKIAEXAMPLEOLD000001", 0, Some(108)),
        key("AKIAEXAMPLENEW000002", 90, None),
    ];
    let facts = UserFacts {
        keys: &two,
        history: &history,
        exempt: None,
        force: false,
    };
    c.bench_function("evaluate two keys (hold + warn)", |b| {
        b.iter(|| evaluate(black_box(&config), black_box(&facts), black_box(day(109))))
    });

    // One used key past the rotation age.
    let one = [key("AKIAEXAMPLEOLD000001", 0, Some(94))];
    let facts = UserFacts {
        keys: &one,
        ..facts
    };
    c.bench_function("evaluate one key (rotate)", |b| {
        b.iter(|| evaluate(black_box(&config), black_box(&facts), black_box(day(95))))
    });
    // The common case of a daily sweep: nothing due.
    c.bench_function("evaluate one key (nothing due)", |b| {
        b.iter(|| evaluate(black_box(&config), black_box(&facts), black_box(day(30))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! What a work message costs: the producer encodes and signs one per user,
//! every worker decodes and verifies one per delivery.

// `criterion_main!` defines an undocumented `main`.
#![allow(missing_docs)]

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::message::{WorkMessage, MESSAGE_VERSION};

fn bench(c: &mut Criterion) {
    // 64 hex digits: the shape of a run's message key.
    let key = "0123456789abcdef".repeat(4);
    let mut message = WorkMessage {
        v: MESSAGE_VERSION,
        run_id: "20261201T000000Z-0a1b2c3d".into(),
        account_id: "111122223333".into(),
        account_name: "payments-prod".into(),
        owner_email: Some("owner@example.com".into()),
        user_name: "svc-payments-batch".into(),
        as_of: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        mode: Mode::Enforce,
        force: false,
        exempt: false,
        shard: Some(3),
        shards: Some(10),
        wave: None,
        audit_only: false,
        incident: false,
        exposed_key: None,
        sig: None,
    };
    message.sign(&key);
    let body = message.encode();
    c.bench_function("message: encode and sign", |b| {
        b.iter(|| {
            let mut m = black_box(&message).clone();
            m.sign(black_box(&key));
            black_box(m.encode())
        })
    });
    c.bench_function("message: decode and verify", |b| {
        b.iter(|| {
            let m = WorkMessage::decode(black_box(&body)).unwrap();
            black_box(m.verify(black_box(&key)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

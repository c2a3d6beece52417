//! The producer against the local emulator: `keyrotor produce` over an
//! organisation of 30 member accounts × 40 users (1,200 messages), measured as
//! a whole run — accounts per second, messages per second and the producer
//! process's peak memory (max RSS, from `wait4(2)`).
//!
//! ```sh
//! scripts/setup                               # the emulator's .venv, once
//! cargo build --release -p keyrotor-cli       # the binary that is measured
//! cargo bench -p keyrotor-loadtest --bench producer_emulator
//! ```
//!
//! This is a plain `main` (`harness = false`), not criterion: one sample is a
//! whole run of a separate process against a Python emulator, seconds long,
//! and what matters is its throughput and its memory high-water mark, not a
//! per-iteration time distribution. So the run is simply repeated (3 times by
//! default) for each account concurrency (`KEYROTOR_ACCOUNT_CONCURRENCY` 1 and
//! 8, to show that enumeration is not sequential per account), each
//! repetition into a fresh queue, and the median, minimum and maximum are
//! printed. Building the organisation is timed and printed separately; it is
//! not part of any figure.
//!
//! Read the figures with the emulator's floor, printed last: the bench itself
//! sends the same messages (same bodies, groups and batches) into a fresh
//! queue and times it. moto is one CPU-bound Python process, and its
//! `SendMessageBatch` costs grow with the queue's depth (it recomputes the
//! queue's attributes, scanning every message, for each message sent), so at
//! this size the emulator, not the producer, sets the pace: a producer/floor
//! ratio near 1 means the producer adds little of its own, and concurrency
//! cannot show against a server that handles one request at a time. The
//! numbers say nothing about SQS's own throughput.
//!
//! The binary measured is `$KEYROTOR_BIN`, or else `keyrotor` in this bench's
//! target directory (`target/release/keyrotor` under `cargo bench`), as the
//! e2e harness finds it. The run prints which one, and its profile matters:
//! a debug build is slower.
//!
//! Knobs (environment): `KEYROTOR_BENCH_ACCOUNTS` (30), `KEYROTOR_BENCH_USERS`
//! (40), `KEYROTOR_BENCH_REPS` (3), `KEYROTOR_BENCH_CONCURRENCY` (`1,8`),
//! `KEYROTOR_BENCH_FLOOR_REPS` (1; 0 skips the floor).
//!
//! Without `--bench` on the command line (`cargo test --benches`) it does
//! nothing: it is a measurement, not a test.

use std::time::{Duration, Instant};

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{init_queue, keyrotor_bin, today, Emulator};
use keyrotor_loadtest::{measure, Stats};
use keyrotor_shared::domain::Mode;
use keyrotor_shared::message::{WorkMessage, MESSAGE_VERSION};
use serde_json::Value;

const TABLE: &str = "keyrotor-bench";
/// The emulator's management account: it has no member role.
const MANAGEMENT: &str = "123456789012";

fn knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: cannot parse `{v}`")),
        Err(_) => default,
    }
}

/// One measured `keyrotor produce`.
struct Sample {
    wall: Duration,
    accounts: u64,
    enqueued: u64,
    rss_mib: f64,
}

impl Sample {
    fn accounts_per_sec(&self) -> f64 {
        self.accounts as f64 / self.wall.as_secs_f64()
    }
    fn messages_per_sec(&self) -> f64 {
        self.enqueued as f64 / self.wall.as_secs_f64()
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("producer_emulator: a benchmark; run it with `cargo bench` (skipped)");
        return;
    }
    let accounts: usize = knob("KEYROTOR_BENCH_ACCOUNTS", 30);
    let users: usize = knob("KEYROTOR_BENCH_USERS", 40);
    let reps: usize = knob("KEYROTOR_BENCH_REPS", 3);
    let concurrencies: Vec<usize> = knob("KEYROTOR_BENCH_CONCURRENCY", "1,8".to_string())
        .split(',')
        .map(|c| c.trim().parse().expect("KEYROTOR_BENCH_CONCURRENCY: 1,8"))
        .collect();
    assert!(reps > 0 && accounts > 0 && users > 0);

    if std::env::var_os("KEYROTOR_BIN").is_none() {
        let exe = std::env::current_exe().expect("bench path");
        let beside = exe
            .parent()
            .and_then(|d| d.parent())
            .map(|d| d.join("keyrotor"));
        if !beside.as_ref().is_some_and(|b| b.exists()) {
            eprintln!(
                "producer_emulator: {} is missing: run `cargo build --release -p keyrotor-cli` \
                 first, or set KEYROTOR_BIN to a keyrotor binary",
                beside.map(|b| b.display().to_string()).unwrap_or_default()
            );
            std::process::exit(1);
        }
    }
    let bin = keyrotor_bin();
    let profile = if bin.components().any(|c| c.as_os_str() == "release") {
        "release"
    } else if bin.components().any(|c| c.as_os_str() == "debug") {
        "debug"
    } else {
        "unknown profile"
    };
    println!(
        "producer_emulator: {accounts} accounts x {users} users = {} messages per run, \
         {reps} repetitions per concurrency",
        accounts * users
    );
    println!("binary: {} ({profile})", bin.display());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    let t0 = Instant::now();
    let emu = Emulator::start();
    let emulator_started = t0.elapsed();
    let (org, members) = rt.block_on(async {
        let org = Org::new(&emu).await;
        let mut members = Vec::with_capacity(accounts);
        for i in 0..accounts {
            let name = format!("load{i:03}");
            let account = org.account(&name).await;
            let names = account.users("u", users).await;
            members.push(Member {
                id: account.id.clone(),
                email: format!("{name}@example.com"),
                name,
                users: names,
            });
        }
        (org, members)
    });
    let org_built = t0.elapsed() - emulator_started;
    println!(
        "setup (not measured): emulator {:.1} s, organisation {:.1} s ({} accounts, {} users)",
        emulator_started.as_secs_f64(),
        org_built.as_secs_f64(),
        accounts,
        accounts * users
    );
    let sqs = aws_sdk_sqs::Client::new(&org.hub);

    println!();
    println!(
        "{:>11}  {:>3}  {:>7}  {:>10}  {:>10}  {:>12}",
        "concurrency", "rep", "wall s", "accounts/s", "messages/s", "peak RSS MiB"
    );
    let mut medians = Vec::new();
    for &concurrency in &concurrencies {
        let mut samples = Vec::new();
        for rep in 1..=reps {
            // A fresh queue per repetition, so one never grows with the last.
            let prefix = format!("bench-c{concurrency}-r{rep}");
            let queue = init_queue(&emu, TABLE, &prefix);
            let mut cmd = emu.keyrotor(TABLE);
            cmd.env("KEYROTOR_QUEUE_URL", &queue)
                .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
                .env("KEYROTOR_ACCOUNT_CONCURRENCY", concurrency.to_string())
                .args([
                    "produce",
                    "--as-of",
                    &today().to_rfc3339(),
                    "--output",
                    "json",
                ]);
            let m = measure(cmd).expect("run keyrotor produce");
            assert_eq!(
                m.status.code(),
                Some(0),
                "keyrotor produce failed:\n{}\n{}",
                m.stdout,
                m.stderr
            );
            let summary: Value = serde_json::from_str(&m.stdout)
                .unwrap_or_else(|e| panic!("summary JSON: {e}: {}", m.stdout));
            let sample = Sample {
                wall: m.wall,
                accounts: summary["accounts"].as_u64().expect("accounts"),
                enqueued: summary["enqueued"].as_u64().expect("enqueued"),
                rss_mib: m.max_rss_mib(),
            };
            assert_eq!(sample.accounts, accounts as u64, "{}", m.stdout);
            assert_eq!(sample.enqueued, (accounts * users) as u64, "{}", m.stdout);
            rt.block_on(check_and_delete(&sqs, &queue, &prefix, sample.enqueued));
            println!(
                "{:>11}  {:>3}  {:>7.2}  {:>10.2}  {:>10.1}  {:>12.1}",
                concurrency,
                rep,
                sample.wall.as_secs_f64(),
                sample.accounts_per_sec(),
                sample.messages_per_sec(),
                sample.rss_mib
            );
            samples.push(sample);
        }
        let stat = |f: &dyn Fn(&Sample) -> f64| {
            Stats::of(&samples.iter().map(f).collect::<Vec<_>>()).expect("samples")
        };
        let wall = stat(&|s| s.wall.as_secs_f64());
        let aps = stat(&Sample::accounts_per_sec);
        let mps = stat(&Sample::messages_per_sec);
        let rss = stat(&|s| s.rss_mib);
        println!(
            "{:>11}  {:>3}  {:>7.2}  {:>10.2}  {:>10.1}  {:>12.1}",
            concurrency, "med", wall.median, aps.median, mps.median, rss.median
        );
        println!(
            "{:>11}  {:>3}  {:>7}  {:>10}  {:>10}  {:>12}",
            "",
            "min",
            format!("{:.2}", wall.min),
            format!("{:.2}", aps.min),
            format!("{:.1}", mps.min),
            format!("{:.1}", rss.min)
        );
        println!(
            "{:>11}  {:>3}  {:>7}  {:>10}  {:>10}  {:>12}",
            "",
            "max",
            format!("{:.2}", wall.max),
            format!("{:.2}", aps.max),
            format!("{:.1}", mps.max),
            format!("{:.1}", rss.max)
        );
        medians.push((concurrency, wall.median));
    }
    println!();
    if let (Some(&(c_lo, lo)), Some(&(c_hi, hi))) = (medians.first(), medians.last()) {
        if c_lo != c_hi {
            println!("median wall time, concurrency {c_lo} / concurrency {c_hi}: {lo:.2} s / {hi:.2} s = {:.2}x",
                lo / hi
            );
        }
    }

    // The emulator's own floor: what it takes to accept the same messages
    // when the bench sends them itself, with nothing else to do.
    let floor_reps: usize = knob("KEYROTOR_BENCH_FLOOR_REPS", 1);
    let mut floors = Vec::new();
    for rep in 1..=floor_reps {
        let prefix = format!("bench-floor-r{rep}");
        let queue = init_queue(&emu, TABLE, &prefix);
        let wall = rt.block_on(send_floor(&sqs, &queue, &members));
        rt.block_on(check_and_delete(
            &sqs,
            &queue,
            &prefix,
            (accounts * users) as u64,
        ));
        floors.push(wall.as_secs_f64());
    }
    if let Some(floor) = Stats::of(&floors) {
        let messages = (accounts * users) as f64;
        println!(
            "emulator floor: the bench alone sends the same {} messages (same bodies, groups, \
             batches of 10, one batch at a time) into a fresh queue: {:.2} s ({:.1} messages/s, \
             median of {})",
            accounts * users,
            floor.median,
            messages / floor.median,
            floors.len()
        );
        for (concurrency, wall) in &medians {
            println!(
                "producer median wall / emulator floor, concurrency {concurrency}: {:.2}",
                wall / floor.median
            );
        }
    }
    drop(org);
    drop(emu);
}

/// A member account as built, for the floor's message bodies.
struct Member {
    id: String,
    name: String,
    email: String,
    users: Vec<String>,
}

/// Sends one message per (account, user) of `members` to `queue`, exactly as
/// the producer would (message v1 bodies, FIFO group and deduplication ids,
/// batches of 10 per account), one batch at a time; returns the time taken.
async fn send_floor(sqs: &aws_sdk_sqs::Client, queue: &str, members: &[Member]) -> Duration {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    let run_id = "20260601T000000Z-f1008f10";
    let start = Instant::now();
    for member in members {
        let messages: Vec<WorkMessage> = member
            .users
            .iter()
            .map(|user| WorkMessage {
                v: MESSAGE_VERSION,
                run_id: run_id.to_string(),
                account_id: member.id.clone(),
                account_name: member.name.clone(),
                owner_email: Some(member.email.clone()),
                user_name: user.clone(),
                as_of: today(),
                mode: Mode::Audit,
                force: false,
                exempt: false,
                shard: None,
                shards: None,
                wave: None,
                audit_only: false,
                incident: false,
                exposed_key: None,
                sig: None,
            })
            .collect();
        for batch in messages.chunks(10) {
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.encode())
                        .message_group_id(m.group_id())
                        .message_deduplication_id(m.deduplication_id())
                        .build()
                        .expect("entry")
                })
                .collect();
            let out = sqs
                .send_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send message batch");
            assert!(out.failed.is_empty(), "{:?}", out.failed);
        }
    }
    start.elapsed()
}

/// Checks that the queue holds what the producer said it enqueued, then
/// deletes it and its DLQ (so the emulator does not keep growing).
async fn check_and_delete(sqs: &aws_sdk_sqs::Client, queue: &str, prefix: &str, expected: u64) {
    use aws_sdk_sqs::types::QueueAttributeName;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .expect("get queue attributes");
    let queued: u64 = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse().ok())
        .expect("ApproximateNumberOfMessages");
    assert_eq!(queued, expected, "messages on {queue}");
    sqs.delete_queue()
        .queue_url(queue)
        .send()
        .await
        .expect("delete queue");
    let dlq = sqs
        .get_queue_url()
        .queue_name(format!("{prefix}-dlq.fifo"))
        .send()
        .await
        .expect("DLQ url")
        .queue_url
        .unwrap_or_default();
    sqs.delete_queue()
        .queue_url(dlq)
        .send()
        .await
        .expect("delete DLQ");
}

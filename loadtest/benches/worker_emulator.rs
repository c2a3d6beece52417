//! The worker pool against the local emulator:
//! `keyrotor work` over 200 users whose keys are all due for rotation, at 1,
//! 4, 16 and 64 messages in flight — messages per second, CPU time per
//! message and peak memory (max RSS, from `wait4(2)`).
//!
//! ```sh
//! scripts/setup
//! cargo build --release -p keyrotor-cli
//! cargo bench -p keyrotor-loadtest --bench worker_emulator
//! ```
//!
//! A plain `main` (`harness = false`), like `producer_emulator`: one sample
//! is a whole pool run of a separate process. Each concurrency level gets a
//! fresh emulator and organisation (10 accounts × 20 users, one used key of
//! 95 days each), so every message is a full rotation: lock, `CreateAccessKey`,
//! the secret, its policies, STS verification, the ledger, the result
//! transaction and the event. Messages are spread over 8 FIFO groups per
//! account (`KEYROTOR_SHARDS_PER_ACCOUNT=8`) so that 16 and 64 in flight are
//! reachable. The pool exits 2 s after the queue empties
//! (`--until-idle 2`); that idle tail is subtracted from the wall time.
//!
//! moto is a single CPU-bound Python process on the same 2 cores: it sets the
//! pace, so the figures measure keyrotor's overhead against this emulator,
//! not AWS's throughput. CPU time per message is keyrotor's own (the
//! worker process), which is the number that transfers to Lambda.

use std::time::Duration;

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{init_queue, keyrotor_bin, run, today, Emulator};
use keyrotor_loadtest::measure;

const ACCOUNTS: usize = 10;
const USERS: usize = 20;
const TABLE: &str = "keyrotor-bench";
const IDLE_SECS: u64 = 2;

struct Sample {
    in_flight: usize,
    messages: usize,
    busy: Duration,
    cpu: Duration,
    rss_mib: f64,
}

async fn one_level(in_flight: usize) -> Sample {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    for a in 0..ACCOUNTS {
        let acct = org.account(&format!("bench{a:02}")).await;
        for u in 0..USERS {
            acct.user(&format!("svc{u:02}"))
                .await
                .used_key_aged(95)
                .await;
        }
    }
    emu.set_clock(today());
    let queue = init_queue(&emu, TABLE, "bench");
    let env = |cmd: &mut std::process::Command| {
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", "123456789012")
            .env("KEYROTOR_MODE", "enforce")
            .env("KEYROTOR_SHARDS_PER_ACCOUNT", "8")
            .env("KEYROTOR_IAM_RATE", "1000")
            .env("KEYROTOR_IAM_BURST", "1000")
            .env("KEYROTOR_SECRETS_RATE", "50")
            .env("RUST_LOG", "warn");
    };
    let mut produce = emu.keyrotor(TABLE);
    env(&mut produce);
    let ran = run(
        produce,
        &[
            "produce",
            "--as-of",
            &today().to_rfc3339(),
            "--output",
            "json",
        ],
    );
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let summary: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
    let messages = summary["enqueued"].as_u64().unwrap() as usize;

    let mut work = emu.keyrotor(TABLE);
    env(&mut work);
    work.args([
        "work",
        "--concurrency",
        &in_flight.to_string(),
        "--until-idle",
        &IDLE_SECS.to_string(),
    ]);
    let m = measure(work).expect("run the pool");
    assert!(m.status.success(), "{}", m.stderr);
    assert!(
        m.stderr.contains(&format!("done {messages} (failed 0)")),
        "{}",
        m.stderr
    );
    Sample {
        in_flight,
        messages,
        busy: m.wall.saturating_sub(Duration::from_secs(IDLE_SECS)),
        cpu: m.cpu,
        rss_mib: m.max_rss_mib(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument, if any, is ignored.
    let bin = keyrotor_bin();
    println!(
        "worker_emulator: {} ({} accounts × {} users, every key due)",
        bin.display(),
        ACCOUNTS,
        USERS
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut samples = Vec::new();
    for in_flight in [1, 4, 16, 64] {
        let s = rt.block_on(one_level(in_flight));
        println!(
            "in flight {:>2}: {} messages in {:.1} s = {:.1} msg/s; CPU {:.1} ms/message; peak RSS {:.1} MiB",
            s.in_flight,
            s.messages,
            s.busy.as_secs_f64(),
            s.messages as f64 / s.busy.as_secs_f64(),
            s.cpu.as_secs_f64() * 1000.0 / s.messages as f64,
            s.rss_mib
        );
        samples.push(s);
    }
    println!("\n| in flight | msg/s | CPU ms/msg | peak RSS MiB |\n|---|---|---|---|");
    for s in &samples {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} |",
            s.in_flight,
            s.messages as f64 / s.busy.as_secs_f64(),
            s.cpu.as_secs_f64() * 1000.0 / s.messages as f64,
            s.rss_mib
        );
    }
}

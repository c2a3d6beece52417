//! The simulator's own checks: a small simulation of the real producer,
//! pools and executor loses and duplicates nothing, even with injected 5xx
//! answers, lost `CreateAccessKey` answers, throttling bursts or worker
//! processes crashing mid-work, and a seed gives the
//! same run twice; on the fleet's SES pace no digest is throttled; one
//! account's throttling spends no other account's SDK retries. Correctness
//! only: no test here asserts a time.

use keyrotor_loadtest::sim::lambda::LambdaConfig;
use keyrotor_loadtest::sim::model::ModelConfig;
use keyrotor_loadtest::sim::world::Shape;
use keyrotor_loadtest::sim::{on_paused_clock, reference, simulate, SimConfig};

fn small(seed: u64, fault_rate: f64) -> SimConfig {
    SimConfig {
        shape: Shape {
            accounts: 4,
            users_per_account: 25,
            skew_users: Some(60),
            due: 0.3,
        },
        model: ModelConfig {
            seed,
            fault_rate,
            ..ModelConfig::default()
        },
        workers: 2,
        concurrency: 16,
        settings: Vec::new(),
        crash_every: None,
        lambda: None,
    }
}

#[test]
fn a_small_sweep_rotates_every_due_user_once_and_loses_no_result() {
    let report = on_paused_clock(simulate(&small(3, 0.02))).unwrap();
    assert_eq!(report.users, 60 + 3 * 25);
    assert!(report.due > 20, "about 30 % of 135: {}", report.text());
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(report.duplicated_keys, 0, "{}", report.text());
    assert!(report.retries > 0, "the injected 5xx answers were retried");
    assert!(
        report.peak_in_flight_per_account > 1,
        "an account's users are worked in parallel: {}",
        report.text()
    );
}

#[test]
fn worker_processes_crashing_mid_work_lose_and_duplicate_nothing() {
    let config = SimConfig {
        // Each of the two processes lives 30 s: many crash mid-rotation.
        crash_every: Some(std::time::Duration::from_secs(15)),
        ..small(7, 0.0)
    };
    let report = on_paused_clock(simulate(&config)).unwrap();
    let calm = on_paused_clock(simulate(&small(7, 0.0))).unwrap();
    assert!(report.crashes >= 3, "processes crashed: {}", report.text());
    // At this rate a message can die with its process on every receive and
    // reach the DLQ (here one does); the simulation redrives the DLQ once,
    // as its alarm's runbook says, and the message then finishes its user.
    assert!(report.dead_lettered <= 2, "{}", report.text());
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(report.duplicated_keys, 0, "{}", report.text());
    // Every account's digest and the run's summary still go out: each
    // digest's claim ends sent, and no email is lost (one may go twice, when
    // a process dies between a send and its mark).
    assert_eq!(calm.digests_unsent, 0, "{}", calm.text());
    assert_eq!(report.digests_unsent, 0, "{}", report.text());
    assert!(calm.emails >= 4, "a digest per account: {}", calm.text());
    assert!(
        report.emails >= calm.emails,
        "every digest, {} without crashes: {}",
        calm.emails,
        report.text()
    );
    assert_eq!(report.summaries, 1, "the run's summary: {}", report.text());
}

#[test]
fn lost_create_answers_and_throttling_bursts_lose_and_duplicate_nothing() {
    let mut config = small(13, 0.0);
    // One CreateAccessKey in five makes its key and loses the answer; every
    // account's IAM refuses everything for 3 s of every 10.
    config.model.lost_create_rate = 0.2;
    config.model.throttle_bursts = Some((
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(3),
    ));
    let report = on_paused_clock(simulate(&config)).unwrap();
    assert!(report.lost_answers >= 3, "answers lost: {}", report.text());
    assert!(report.throttled > 50, "bursts throttled: {}", report.text());
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(
        report.duplicated_keys,
        0,
        "every key of a lost answer was found and deleted: {}",
        report.text()
    );
}

#[test]
fn the_lambda_shape_at_its_minimum_concurrency_loses_and_duplicates_nothing() {
    let config = SimConfig {
        lambda: Some(LambdaConfig::with_max_concurrency(2)),
        ..small(17, 0.02)
    };
    let report = on_paused_clock(simulate(&config)).unwrap();
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(report.duplicated_keys, 0, "{}", report.text());
    assert!(
        report.peak_in_flight_per_account > 1,
        "two messages of a group at a time: {}",
        report.text()
    );
}

#[test]
fn lambda_invocations_near_their_deadline_return_their_records_and_are_not_killed() {
    // A 6 s timeout: rotations wait 1-6 s for their key to reach STS, so
    // many do not finish within one invocation. A handler that ignored its
    // deadline was killed at it (this configuration killed invocations
    // before the handler knew its deadline), and its batch came back only
    // after the visibility timeout; now it returns what it has not
    // finished before then, and the runs still lose and duplicate nothing.
    let config = SimConfig {
        lambda: Some(LambdaConfig {
            timeout: std::time::Duration::from_secs(6),
            visibility: std::time::Duration::from_secs(60),
            ..LambdaConfig::with_max_concurrency(4)
        }),
        ..small(19, 0.0)
    };
    let report = on_paused_clock(simulate(&config)).unwrap();
    assert_eq!(
        report.timeouts,
        0,
        "no invocation killed: {}",
        report.text()
    );
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(report.duplicated_keys, 0, "{}", report.text());
}

#[test]
fn a_seed_gives_the_same_run() {
    let first = on_paused_clock(simulate(&small(11, 0.01))).unwrap();
    let second = on_paused_clock(simulate(&small(11, 0.01))).unwrap();
    let json = |r| serde_json::to_value(r).unwrap();
    assert_eq!(json(&first), json(&second));
    assert_eq!(first.finished_at, second.finished_at);
}

#[test]
fn a_seed_with_crashes_gives_the_same_run_on_busy_threads() {
    // Crashes make busy users retry at their lease's end, a time the product
    // computes from its clock: two runs at once on two threads must still
    // agree, so that clock follows the simulation's, not the machine's.
    let crashing = || SimConfig {
        crash_every: Some(std::time::Duration::from_secs(15)),
        ..small(7, 0.0)
    };
    let runs: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || on_paused_clock(simulate(&crashing())).unwrap()))
        .collect();
    let runs: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let json = |r| serde_json::to_value(r).unwrap();
    assert!(runs[0].crashes >= 3, "{}", runs[0].text());
    assert_eq!(json(&runs[0]), json(&runs[1]));
    assert_eq!(runs[0].finished_at, runs[1].finished_at);
}

#[test]
fn the_reference_shape_reaches_every_user_of_a_small_organisation() {
    let report = on_paused_clock(reference::simulate(&small(5, 0.0)));
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.unreached, 0);
    assert_eq!(report.finished_at.len(), report.users);
    assert_eq!(report.emails, 4, "one notice an account: {}", report.text());
    assert_eq!(report.digests_unsent, 0, "{}", report.text());
}

#[test]
fn the_reference_shapes_notices_past_the_ses_rate_are_dropped_after_the_notifiers_retries() {
    // 60 accounts of 3 due users end within seconds of each other, and
    // their notices meet SES at 1 a second: boto3's 5 attempts over about
    // 8 s, and Lambda's two retries a minute and two later, cannot send
    // them all.
    let mut config = small(11, 0.0);
    config.shape = Shape {
        accounts: 60,
        users_per_account: 3,
        skew_users: None,
        due: 1.0,
    };
    config.model.ses_rps = 1.0;
    let report = on_paused_clock(reference::simulate(&config));
    assert_eq!(report.rotated, 180, "{}", report.text());
    assert!(report.digests_unsent > 0, "{}", report.text());
    assert_eq!(
        report.emails + report.digests_unsent,
        60,
        "{}",
        report.text()
    );
    // Each dropped notice was tried 5 times in each of 3 invocations.
    assert!(
        report.calls["sesv2:SendEmail"] >= report.emails + 15 * report.digests_unsent,
        "{:?} {}",
        report.calls,
        report.text()
    );
}

#[test]
fn results_that_beat_the_producers_marks_still_get_their_digests_and_summary() {
    // The producer's marks land ten minutes late: every result is recorded
    // before its account is marked enqueued and before the run is, so no
    // worker sees anything complete. The producer, finding so at its marks,
    // has a worker finish.
    let mut late = small(17, 0.0);
    late.model.producer_mark_delay = std::time::Duration::from_secs(600);
    let on_time = on_paused_clock(simulate(&small(17, 0.0))).unwrap();
    let report = on_paused_clock(simulate(&late)).unwrap();
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(on_time.summaries, 1, "{}", on_time.text());
    assert_eq!(report.summaries, 1, "the run's summary: {}", report.text());
    assert!(
        on_time.emails >= 4,
        "a digest per account: {}",
        on_time.text()
    );
    assert_eq!(
        report.emails,
        on_time.emails,
        "every digest: {}",
        report.text()
    );
}

#[test]
fn on_the_fleets_ses_pace_digests_of_accounts_finishing_together_are_never_throttled() {
    // Twenty Lambda environments finish twenty accounts within seconds,
    // against an SES rate of 2 a second.
    let config = |settings: &[&str]| SimConfig {
        shape: Shape {
            accounts: 20,
            users_per_account: 10,
            skew_users: None,
            due: 0.3,
        },
        model: ModelConfig {
            seed: 5,
            ses_rps: 2.0,
            ..ModelConfig::default()
        },
        settings: settings.iter().map(|s| s.to_string()).collect(),
        lambda: Some(LambdaConfig::with_max_concurrency(20)),
        ..small(5, 0.0)
    };
    let sends = |r: &keyrotor_loadtest::sim::report::Report| r.calls["sesv2:SendEmail"];
    let unpaced = on_paused_clock(simulate(&config(&["--ses-fleet-rate", "off"]))).unwrap();
    assert_eq!(unpaced.emails, 20, "{}", unpaced.text());
    assert!(
        sends(&unpaced) > unpaced.emails,
        "without the pace, SES throttles some: {}",
        unpaced.text()
    );

    let paced = on_paused_clock(simulate(&config(&["--ses-fleet-rate", "2"]))).unwrap();
    assert_eq!(paced.emails, 20, "every digest sent: {}", paced.text());
    assert_eq!(paced.digests_unsent, 0, "{}", paced.text());
    assert_eq!(
        sends(&paced),
        paced.emails,
        "one SendEmail an email, none throttled: {}",
        paced.text()
    );
    assert_eq!(paced.lost_results, 0, "{}", paced.text());
    assert_eq!(paced.duplicated_keys, 0, "{}", paced.text());

    // By default (`auto`) the pace is SES's own rate, which the producer
    // read from SES and recorded.
    let auto = on_paused_clock(simulate(&config(&[]))).unwrap();
    assert_eq!(
        auto.calls["sesv2:GetAccount"],
        1,
        "once a run: {}",
        auto.text()
    );
    assert_eq!(auto.emails, 20, "every digest sent: {}", auto.text());
    assert_eq!(
        sends(&auto),
        auto.emails,
        "one SendEmail an email, none throttled: {}",
        auto.text()
    );
    assert_eq!(auto.lost_results, 0, "{}", auto.text());
}

#[test]
fn throttling_in_one_account_spends_no_other_accounts_sdk_retries() {
    use keyrotor_loadtest::sim::model::QuotaScope;
    // One process serves ten accounts, whose IAM each refuses everything
    // for 8 s of every 20, at offsets of their own.
    let config = |scope| SimConfig {
        shape: Shape {
            accounts: 10,
            users_per_account: 30,
            skew_users: None,
            due: 0.3,
        },
        model: ModelConfig {
            seed: 1,
            throttle_bursts: Some((
                std::time::Duration::from_secs(20),
                std::time::Duration::from_secs(8),
            )),
            iam_retry_quota: Some(scope),
            ..ModelConfig::default()
        },
        workers: 1,
        concurrency: 32,
        settings: vec!["--iam-rate".into(), "10".into()],
        ..small(1, 0.0)
    };
    // One quota for the process, as the SDK's default retry partition: the
    // bursts of some accounts spend it, and other accounts' calls fail
    // unretried.
    let shared = on_paused_clock(simulate(&config(QuotaScope::Process))).unwrap();
    assert!(shared.retry_quota_refused > 0, "{}", shared.text());
    assert!(shared.rotated < shared.due, "{}", shared.text());

    // keyrotor's partitions: each account's quota is its own.
    let own = on_paused_clock(simulate(&config(QuotaScope::Account))).unwrap();
    assert_eq!(own.retry_quota_refused, 0, "{}", own.text());
    assert_eq!(own.rotated, own.due, "{}", own.text());
    assert_eq!(own.failed, 0, "{}", own.text());
    assert_eq!(own.lost_results, 0, "{}", own.text());
    assert_eq!(own.duplicated_keys, 0, "{}", own.text());
}

#[test]
fn on_lambda_a_big_accounts_share_of_the_fleets_groups_follows_its_users() {
    // The hub stack passes MaximumConcurrency as KEYROTOR_FLEET_GROUPS: 20
    // environments for 20 accounts, one of them holding most of the users.
    let config = SimConfig {
        shape: Shape {
            accounts: 20,
            users_per_account: 20,
            skew_users: Some(600),
            due: 0.3,
        },
        lambda: Some(LambdaConfig::with_max_concurrency(20)),
        ..small(23, 0.0)
    };
    let report = on_paused_clock(simulate(&config)).unwrap();
    // An even share is one group each, and one group's batch is at most 10
    // messages at once; the big account's share by users is more.
    assert!(
        report.peak_in_flight_per_account > 10,
        "the big account worked in more than one group: {}",
        report.text()
    );
    assert_eq!(report.rotated, report.due, "{}", report.text());
    assert_eq!(report.failed, 0, "{}", report.text());
    assert_eq!(report.lost_results, 0, "{}", report.text());
    assert_eq!(report.duplicated_keys, 0, "{}", report.text());
}

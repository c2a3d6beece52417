//! The circuit breaker: an enforce run whose failures reach
//! `KEYROTOR_BREAKER_FAILURES` goes on in audit mode, the breaker opens
//! (one `keyrotor.breaker.v1` event), later runs are produced in audit mode,
//! and `keyrotor breaker reset` lets enforce runs act again.

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{drain_queue, init_stack, run, subscribe_queue, today, Emulator, Fault};
use serde_json::Value;

const MANAGEMENT: &str = "123456789012";
const TABLE: &str = "keyrotor-breaker";
const USERS: usize = 6;

#[tokio::test(flavor = "multi_thread")]
async fn failures_open_the_breaker_hold_later_runs_in_audit_and_reset_closes_it() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let made = init_stack(&emu, TABLE, "breaker");
    let queue = made.queue_url;
    let topic = made.topic_arn;
    let config = emu.hub_config().await;
    let events = subscribe_queue(&config, &topic, "breaker-events", None).await;
    let acct = org.account("breaker0").await;
    for i in 0..USERS {
        acct.user(&format!("user{i}")).await.used_key_aged(95).await;
    }
    emu.set_clock(today());
    let keyrotor = || {
        let mut cmd = emu.keyrotor(TABLE);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce")
            .env("KEYROTOR_BREAKER_FAILURES", "2");
        cmd
    };
    let as_of = today().to_rfc3339();
    let produce = || {
        let produced = run(
            keyrotor(),
            &["produce", "--as-of", as_of.as_str(), "--output", "json"],
        );
        assert_eq!(produced.code, 0, "{}", produced.stderr);
        let summary: Value = serde_json::from_str(&produced.stdout).unwrap();
        (summary, produced.stderr)
    };
    let report = |run_id: &str| {
        let json = run(keyrotor(), &["report", run_id, "--format", "json"]);
        assert_eq!(json.code, 0, "{}", json.stderr);
        serde_json::from_str::<Value>(&json.stdout).unwrap()
    };
    let outcomes = |report: &Value| -> Vec<String> {
        report["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["outcome"].as_str().unwrap().to_string())
            .collect()
    };

    // IAM refuses every new key: each rotation fails for good.
    emu.inject(&[Fault::new("iam", "AccessDenied")
        .action("CreateAccessKey")
        .status(403)
        .count(1_000)]);
    let (first, _) = produce();
    assert_eq!(first["mode"], "enforce");
    assert_eq!(first["held_by_breaker"], false);
    let first_run = first["run_id"].as_str().unwrap().to_string();
    let worked = run(
        keyrotor(),
        &["work", "--until-idle", "4", "--concurrency", "1"],
    );
    assert_eq!(worked.code, 1, "some users failed: {}", worked.stderr);

    let first_report = report(&first_run);
    let seen = outcomes(&first_report);
    let failed = seen.iter().filter(|o| *o == "failed").count();
    let planned = seen.iter().filter(|o| *o == "planned").count();
    assert_eq!(seen.len(), USERS, "{first_report}");
    assert!(
        failed >= 2,
        "the breaker opens at the second failure: {seen:?}"
    );
    assert!(
        planned >= 1,
        "the rest of the run went on in audit mode: {seen:?}"
    );
    assert_eq!(failed + planned, USERS, "{seen:?}");
    for held in first_report["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["outcome"] == "planned")
    {
        assert!(
            held["reason"]
                .as_str()
                .unwrap()
                .contains("circuit breaker is open"),
            "{held}"
        );
    }
    assert!(
        acct.secret_arns().await.is_empty(),
        "no key was made while IAM refused and the breaker held the rest"
    );

    let shown = run(keyrotor(), &["breaker", "--output", "json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let shown: Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(shown["state"], "open", "{shown}");
    assert_eq!(shown["run_id"], first_run.as_str());
    assert!(shown["failures"].as_i64().unwrap() >= 2, "{shown}");
    assert_eq!(shown["threshold"], "2");

    let breaker_events: Vec<Value> = drain_queue(&config, &events)
        .await
        .iter()
        .map(|body| serde_json::from_str::<Value>(body).unwrap())
        .filter(|e| e["type"] == "keyrotor.breaker.v1")
        .collect();
    assert_eq!(breaker_events.len(), 1, "{breaker_events:?}");
    assert_eq!(breaker_events[0]["state"], "open");
    assert_eq!(breaker_events[0]["run_id"], first_run.as_str());

    // IAM works again, but the breaker holds: the next run is an audit run.
    emu.inject(&[]);
    let (held, warning) = produce();
    assert_eq!(held["mode"], "audit", "{held}");
    assert_eq!(held["held_by_breaker"], true);
    assert!(warning.contains("circuit breaker is open"), "{warning}");
    let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
    assert_eq!(worked.code, 0, "{}", worked.stderr);
    let held_report = report(held["run_id"].as_str().unwrap());
    assert_eq!(
        outcomes(&held_report),
        vec!["planned"; USERS],
        "{held_report}"
    );
    assert!(acct.secret_arns().await.is_empty());

    // An operator resets it; who did is recorded, and enforce acts again.
    let reset = run(keyrotor(), &["breaker", "reset", "--output", "json"]);
    assert_eq!(reset.code, 0, "{}", reset.stderr);
    let reset: Value = serde_json::from_str(&reset.stdout).unwrap();
    assert_eq!(reset["state"], "closed", "{reset}");
    assert!(
        reset["reset_by"].as_str().unwrap().starts_with("arn:aws:"),
        "{reset}"
    );
    assert_eq!(
        reset["run_id"],
        first_run.as_str(),
        "the last opening is kept"
    );
    let (after, _) = produce();
    assert_eq!(after["mode"], "enforce");
    let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
    assert_eq!(worked.code, 0, "{}", worked.stderr);
    let after_report = report(after["run_id"].as_str().unwrap());
    assert_eq!(
        outcomes(&after_report),
        vec!["rotated"; USERS],
        "{after_report}"
    );
    assert_eq!(acct.secret_arns().await.len(), USERS);
}

//! Staged rollout (`KEYROTOR_WAVES`): an enforce run enforces the released
//! waves and audits the rest; a wave is released when the one before it
//! has soaked clean; an operator can halt a wave (it is audited, and the
//! soak does not release it) and release it by hand, recorded with who and
//! when. Wave 2 is an OU with its account one OU further down.

use keyrotor_e2e::world::{days, Account, Org};
use keyrotor_e2e::{init_stack, run, today, Emulator};
use serde_json::Value;

const MANAGEMENT: &str = "123456789012";
const TABLE: &str = "keyrotor-waves";

/// The outcome and reason of each account's one user in the run's report.
fn outcomes(report: &Value) -> Vec<(String, String, String)> {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["account_id"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn outcome_of(report: &Value, account: &Account) -> (String, String) {
    outcomes(report)
        .into_iter()
        .find(|(id, _, _)| *id == account.id)
        .map(|(_, outcome, reason)| (outcome, reason))
        .unwrap_or_else(|| panic!("no result for {} in {report}", account.id))
}

#[tokio::test(flavor = "multi_thread")]
async fn waves_release_after_the_soak_and_an_operator_halts_and_releases() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let made = init_stack(&emu, TABLE, "waves");
    let queue = made.queue_url;

    let first = org.account("wave-first").await;
    let second = org.account("wave-second").await;
    let third = org.account("wave-third").await;
    let root = org.root().await;
    let workloads = org.ou(&root, "workloads").await;
    let team = org.ou(&workloads, "team").await;
    org.move_to(&second.id, &team).await;
    for account in [&first, &second, &third] {
        account.user("app").await.used_key_aged(95).await;
    }
    let waves = format!("{};{workloads};{}", first.id, third.id);

    let keyrotor = || {
        let mut cmd = emu.keyrotor(TABLE);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce")
            .env("KEYROTOR_WAVES", &waves)
            .env("KEYROTOR_WAVE_SOAK_DAYS", "7");
        cmd
    };
    // One enforce run on day `day`: its summary and its report.
    let run_day = |day: i64| {
        let as_of = today() + days(day);
        emu.set_clock(as_of);
        let as_of = as_of.to_rfc3339();
        let produced = run(
            keyrotor(),
            &["produce", "--as-of", as_of.as_str(), "--output", "json"],
        );
        assert_eq!(produced.code, 0, "{}", produced.stderr);
        let summary: Value = serde_json::from_str(&produced.stdout).unwrap();
        let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
        assert_eq!(worked.code, 0, "{}", worked.stderr);
        let run_id = summary["run_id"].as_str().unwrap();
        let report = run(keyrotor(), &["report", run_id, "--format", "json"]);
        assert_eq!(report.code, 0, "{}", report.stderr);
        (
            summary,
            serde_json::from_str::<Value>(&report.stdout).unwrap(),
        )
    };
    let shown = || {
        let ran = run(keyrotor(), &["waves", "--output", "json"]);
        assert_eq!(ran.code, 0, "{}", ran.stderr);
        serde_json::from_str::<Value>(&ran.stdout).unwrap()
    };
    let states = |summary: &Value| -> Vec<(u64, String, u64)> {
        summary["waves"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["wave"].as_u64().unwrap(),
                    w["state"].as_str().unwrap().to_string(),
                    w["accounts"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    let wave = |n: u64, state: &str, accounts: u64| (n, state.to_string(), accounts);

    // Day 0: only wave 1 is released; the others are audited, their
    // owners warned ahead.
    let (summary, report) = run_day(0);
    assert_eq!(
        states(&summary),
        [
            wave(1, "released", 1),
            wave(2, "pending", 1),
            wave(3, "pending", 1)
        ]
    );
    assert_eq!(outcome_of(&report, &first).0, "rotated");
    let (outcome, reason) = outcome_of(&report, &second);
    assert_eq!(outcome, "planned", "{report}");
    assert!(
        reason.contains("rollout wave 2 is not released"),
        "{reason}"
    );
    assert_eq!(outcome_of(&report, &third).0, "planned");
    assert!(second.secret_arns().await.is_empty());
    let now = shown();
    assert_eq!(now[0]["state"], "released");
    assert!(
        now[0]["enforced_since"].is_string(),
        "the soak started: {now}"
    );
    assert_eq!(now[1]["scopes"], serde_json::json!([workloads.as_str()]));
    assert_eq!(now[1]["state"], "pending");

    // Day 8: wave 1 ran clean for 7 days, so wave 2 is released; wave 3
    // waits for wave 2's soak.
    let (summary, report) = run_day(8);
    assert_eq!(
        states(&summary),
        [
            wave(1, "released", 1),
            wave(2, "released", 1),
            wave(3, "pending", 1)
        ]
    );
    assert_eq!(outcome_of(&report, &second).0, "rotated", "{report}");
    assert_eq!(outcome_of(&report, &third).0, "planned");
    let now = shown();
    assert_eq!(now[1]["decided_by"], "keyrotor (soak)");
    assert!(now[1]["released_at"].is_string());

    // An operator halts wave 3: on day 16 wave 2 has soaked, but wave 3
    // stays audited.
    let halted = run(keyrotor(), &["waves", "halt", "3", "--output", "json"]);
    assert_eq!(halted.code, 0, "{}", halted.stderr);
    let halted: Value = serde_json::from_str(&halted.stdout).unwrap();
    assert_eq!(halted[2]["state"], "halted");
    assert!(
        halted[2]["decided_by"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:"),
        "{halted}"
    );
    let (summary, report) = run_day(16);
    assert_eq!(states(&summary)[2], wave(3, "halted", 1));
    assert_eq!(outcome_of(&report, &third).0, "planned");
    assert!(third.secret_arns().await.is_empty());

    // Released by hand: the next run enforces it.
    let released = run(keyrotor(), &["waves", "release", "3"]);
    assert_eq!(released.code, 0, "{}", released.stderr);
    assert!(
        released.stdout.contains("wave 3  released"),
        "{}",
        released.stdout
    );
    let (summary, report) = run_day(16);
    assert_eq!(states(&summary)[2], wave(3, "released", 1));
    assert_eq!(outcome_of(&report, &third).0, "rotated", "{report}");
    assert_eq!(third.secret_arns().await.len(), 1);

    // A wave that does not exist is a usage error.
    let bad = run(keyrotor(), &["waves", "release", "4"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("no wave 4"), "{}", bad.stderr);
}

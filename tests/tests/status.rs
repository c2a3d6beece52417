//! `keyrotor status`: a produced run is listed as the newest run with its
//! expected count; progress recorded on the run items (as the workers'
//! counters would) shows as done, counts per outcome and completion; an
//! unknown run id, or no run at all, exits 1.

use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use keyrotor_e2e::world::Org;
use keyrotor_e2e::{init_queue, run, today, Emulator, Ran};
use serde_json::Value;

const TABLE: &str = "keyrotor-status";
const MANAGEMENT: &str = "123456789012";

fn produce(emu: &Emulator, queue: &str) -> String {
    let mut cmd = emu.keyrotor(TABLE);
    cmd.env("KEYROTOR_QUEUE_URL", queue)
        .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT);
    let as_of = today().to_rfc3339();
    let ran = run(
        cmd,
        &["produce", "--as-of", as_of.as_str(), "--output", "json"],
    );
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(summary["enqueued"], 6, "{summary}");
    summary["run_id"].as_str().unwrap().to_string()
}

fn status(emu: &Emulator, args: &[&str]) -> Ran {
    let mut all = vec!["status"];
    all.extend_from_slice(args);
    run(emu.keyrotor(TABLE), &all)
}

fn status_json(emu: &Emulator, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--output", "json"]);
    let ran = status(emu, &all);
    assert_eq!(ran.code, 0, "{}\n{}", ran.stdout, ran.stderr);
    serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
}

/// `ADD` to the counters of a run item, as a worker's transaction does.
async fn add(
    ddb: &aws_sdk_dynamodb::Client,
    run_id: &str,
    sk: &str,
    adds: &[(&str, i64)],
    digest_sent: bool,
) {
    let expr: Vec<String> = adds
        .iter()
        .enumerate()
        .map(|(i, (name, _))| format!("{name} :v{i}"))
        .collect();
    let mut update = ddb
        .update_item()
        .table_name(TABLE)
        .key("pk", AttributeValue::S(format!("RUN#{run_id}")))
        .key("sk", AttributeValue::S(sk.to_string()))
        .update_expression(format!(
            "ADD {}{}",
            expr.join(", "),
            if digest_sent {
                " SET digest_sent = :true"
            } else {
                ""
            }
        ));
    for (i, (_, v)) in adds.iter().enumerate() {
        update =
            update.expression_attribute_values(format!(":v{i}"), AttributeValue::N(v.to_string()));
    }
    if digest_sent {
        update = update.expression_attribute_values(":true", AttributeValue::Bool(true));
    }
    update.send().await.expect("update the run item");
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_newest_run_and_its_progress() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let mut accounts = Vec::new();
    for name in ["alpha", "beta"] {
        let account = org.account(name).await;
        account.users("app", 3).await;
        accounts.push(account.id);
    }
    accounts.sort();
    let queue = init_queue(&emu, TABLE, "status");

    // Before any run.
    let ran = status(&emu, &[]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("no runs yet"), "{}", ran.stderr);

    let first = produce(&emu, &queue);
    // Run ids start with their start time to the second: the next one is later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let run_id = produce(&emu, &queue);
    assert!(run_id > first, "{run_id} after {first}");

    let newest = status_json(&emu, &[]);
    assert_eq!(newest["run_id"], run_id.as_str(), "{newest}");
    assert_eq!(newest["expected"], 6);
    assert_eq!(newest["done"], 0);
    assert_eq!(newest["accounts"], 2);
    assert_eq!(newest["mode"], "audit");
    assert_eq!(newest["enqueue_done"], true);
    assert_eq!(newest["complete"], false);
    assert_eq!(newest["counts"], serde_json::json!({}));
    let per: Vec<&str> = newest["per_account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(per, accounts);
    for a in newest["per_account"].as_array().unwrap() {
        assert_eq!(a["expected"], 3, "{a}");
        assert_eq!(a["done"], 0, "{a}");
        assert_eq!(a["digest_sent"], false, "{a}");
    }

    let by_id = status_json(&emu, &[&run_id]);
    assert_eq!(by_id, newest);
    let older = status_json(&emu, &[&first]);
    assert_eq!(older["run_id"], first.as_str());
    assert_eq!(older["expected"], 6);

    let ran = status(&emu, &["nope"]);
    assert_eq!(ran.code, 1, "{}\n{}", ran.stdout, ran.stderr);
    assert!(ran.stderr.contains("no run nope"), "{}", ran.stderr);

    // Progress as the workers record it: all of the first account (rolled
    // up into the run's counters), one message of the second.
    let ddb = aws_sdk_dynamodb::Client::new(&org.hub);
    add(
        &ddb,
        &run_id,
        "RUN",
        &[("done", 3), ("count_rotated", 2), ("count_noop", 1)],
        false,
    )
    .await;
    add(
        &ddb,
        &run_id,
        &format!("ACCOUNT#{}", accounts[0]),
        &[("done", 3), ("count_rotated", 2), ("count_noop", 1)],
        true,
    )
    .await;
    add(
        &ddb,
        &run_id,
        &format!("ACCOUNT#{}", accounts[1]),
        &[("done", 1), ("count_rotated", 1)],
        false,
    )
    .await;

    let now = status_json(&emu, &[]);
    assert_eq!(now["done"], 4);
    assert_eq!(now["complete"], false);
    assert_eq!(now["counts"], serde_json::json!({"noop": 1, "rotated": 3}));
    assert_eq!(now["per_account"][0]["done"], 3);
    assert_eq!(now["per_account"][0]["digest_sent"], true);
    assert_eq!(now["per_account"][0]["counts"]["rotated"], 2);
    assert_eq!(now["per_account"][1]["done"], 1);

    let ran = status(&emu, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    for needle in [
        format!("run        {run_id}"),
        "progress   4/6 (66%)".to_string(),
        "complete   no".to_string(),
        "outcomes   noop 1, rotated 3".to_string(),
    ] {
        assert!(ran.stdout.contains(&needle), "{needle} in\n{}", ran.stdout);
    }
    assert!(
        ran.stdout
            .lines()
            .any(|l| l.starts_with(&accounts[0]) && l.contains("3/3") && l.contains("sent")),
        "{}",
        ran.stdout
    );

    add(
        &ddb,
        &run_id,
        &format!("ACCOUNT#{}", accounts[1]),
        &[("done", 2), ("count_rotated", 2)],
        false,
    )
    .await;
    add(
        &ddb,
        &run_id,
        "RUN",
        &[("done", 3), ("count_rotated", 3)],
        false,
    )
    .await;
    let done = status_json(&emu, &[&run_id]);
    assert_eq!(done["done"], 6);
    assert_eq!(done["complete"], true);
    assert_eq!(done["counts"]["rotated"], 5);
    let ran = status(&emu, &[&run_id]);
    assert!(
        ran.stdout.contains("progress   6/6 (100%)"),
        "{}",
        ran.stdout
    );
    assert!(ran.stdout.contains("complete   yes"), "{}", ran.stdout);

    // The run id may come from the environment too.
    let mut cmd = emu.keyrotor(TABLE);
    cmd.env("KEYROTOR_STATUS_RUN_ID", &first);
    let ran = run(cmd, &["status", "--output", "json"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let from_env: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(from_env["run_id"], first.as_str());
}

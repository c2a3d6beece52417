//! Results on EventBridge (`KEYROTOR_EVENT_BUS`): every published result
//! and the run summary are put on the bus once, with source `keyrotor`,
//! detail-type the event type and detail the same JSON as on SNS; a rule
//! routes them to an SQS queue, as an operator's would.

use std::collections::BTreeMap;

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{drain_queue, init_stack, run, subscribe_queue, today, Emulator};
use serde_json::{json, Value};

const MANAGEMENT: &str = "123456789012";
const TABLE: &str = "keyrotor-bus";
const BUS: &str = "security-events";

#[tokio::test(flavor = "multi_thread")]
async fn results_and_the_run_summary_reach_the_bus_once_as_on_sns() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let config = emu.hub_config().await;
    let made = init_stack(&emu, TABLE, "bus");
    let queue = made.queue_url;
    let topic = made.topic_arn;
    let on_sns = subscribe_queue(&config, &topic, "bus-sns-copy", None).await;

    // The operator's side: a bus, a rule for keyrotor's events, a queue.
    let events = aws_sdk_eventbridge::Client::new(&config);
    events.create_event_bus().name(BUS).send().await.unwrap();
    let sqs = aws_sdk_sqs::Client::new(&config);
    let on_bus = sqs
        .create_queue()
        .queue_name("bus-target")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    events
        .put_rule()
        .name("keyrotor-to-queue")
        .event_bus_name(BUS)
        .event_pattern(json!({"source": ["keyrotor"]}).to_string())
        .send()
        .await
        .unwrap();
    events
        .put_targets()
        .rule("keyrotor-to-queue")
        .event_bus_name(BUS)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn("arn:aws:sqs:us-east-1:123456789012:bus-target")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    let acct = org.account("bus0").await;
    for (i, age) in [95, 120, 30].into_iter().enumerate() {
        acct.user(&format!("user{i}"))
            .await
            .used_key_aged(age)
            .await;
    }
    emu.set_clock(today());
    let keyrotor = || {
        let mut cmd = emu.keyrotor(TABLE);
        cmd.env("KEYROTOR_QUEUE_URL", &queue)
            .env("KEYROTOR_TOPIC_ARN", &topic)
            .env("KEYROTOR_EVENT_BUS", BUS)
            .env("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT)
            .env("KEYROTOR_MODE", "enforce");
        cmd
    };
    let as_of = today().to_rfc3339();
    let produced = run(
        keyrotor(),
        &["produce", "--as-of", as_of.as_str(), "--output", "json"],
    );
    assert_eq!(produced.code, 0, "{}", produced.stderr);
    let run_id = serde_json::from_str::<Value>(&produced.stdout).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let worked = run(keyrotor(), &["work", "--until-idle", "4"]);
    assert_eq!(worked.code, 0, "{}", worked.stderr);

    let parse = |bodies: Vec<String>| -> Vec<Value> {
        bodies
            .iter()
            .map(|b| serde_json::from_str(b).unwrap())
            .collect()
    };
    let bus_events = parse(drain_queue(&config, &on_bus).await);
    let sns_events = parse(drain_queue(&config, &on_sns).await);
    for e in &bus_events {
        assert_eq!(e["source"], "keyrotor", "{e}");
        assert_eq!(e["detail-type"], e["detail"]["type"], "{e}");
        assert_eq!(e["detail"]["run_id"], run_id.as_str());
    }
    // What a user's results look like on each: the same JSON, once each.
    let by_user = |events: Vec<&Value>| -> BTreeMap<String, Vec<Value>> {
        let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for e in events {
            let key = e["user_name"].as_str().unwrap_or("-").to_string();
            out.entry(key).or_default().push(e.clone());
        }
        out
    };
    let details: Vec<&Value> = bus_events.iter().map(|e| &e["detail"]).collect();
    let bus_results = by_user(
        details
            .iter()
            .copied()
            .filter(|d| d["type"] == "keyrotor.result.v1")
            .collect(),
    );
    let sns_results = by_user(
        sns_events
            .iter()
            .filter(|e| e["type"] == "keyrotor.result.v1")
            .collect(),
    );
    assert_eq!(
        bus_results.keys().collect::<Vec<_>>(),
        ["user0", "user1"],
        "the two changed users (noop results are not published): {bus_events:?}"
    );
    assert!(
        bus_results.values().all(|v| v.len() == 1),
        "once each: {bus_results:?}"
    );
    assert_eq!(bus_results, sns_results, "the same events as on SNS");
    assert_eq!(bus_results["user0"][0]["outcome"], "rotated");
    let runs: Vec<&&Value> = details
        .iter()
        .filter(|d| d["type"] == "keyrotor.run.v1")
        .collect();
    assert_eq!(runs.len(), 1, "{bus_events:?}");
    assert_eq!(runs[0]["done"], 3);

    // Key ids only: no stored secret access key is on the bus.
    let text = serde_json::to_string(&bus_events).unwrap();
    for arn in acct.secret_arns().await {
        let secret: Value = acct.secret_json(&arn).await;
        assert!(!text.contains(secret["SecretAccessKey"].as_str().unwrap()));
    }
}

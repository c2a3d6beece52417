//! The producer against an organisation of 30 accounts in OUs three levels
//! deep: exactly one message per user of each eligible account (read back
//! from the queue), nothing for suspended or excluded accounts, a failed
//! account recorded and published while the run goes on.

use std::collections::{BTreeMap, BTreeSet};

use keyrotor_e2e::world::Org;
use keyrotor_e2e::{drain_queue, init_queue, run, today, Emulator, Ran};
use keyrotor_shared::message::WorkMessage;
use keyrotor_shared::store::runs::RunStore;
use serde_json::Value;

const TABLE: &str = "keyrotor-producer";
const MANAGEMENT: &str = "123456789012";

struct World {
    /// account id -> its user names, for the accounts that should be enqueued.
    eligible: BTreeMap<String, Vec<String>>,
    /// Eligible accounts under the "eng" OU (recursively).
    under_eng: BTreeSet<String>,
    eng: String,
    no_role: String,
    suspended: String,
    tagged: String,
    env_excluded: String,
    exempt_user: (String, String),
}

async fn build(org: &Org<'_>) -> World {
    let root = org.root().await;
    let eng = org.ou(&root, "eng").await;
    let platform = org.ou(&eng, "platform").await;
    let core = org.ou(&platform, "core").await;
    let sales = org.ou(&root, "sales").await;

    let mut eligible = BTreeMap::new();
    let mut under_eng = BTreeSet::new();

    let big = org.account("big").await;
    let names = big.users("svc", 250).await;
    org.move_to(&big.id, &core).await;
    eligible.insert(big.id.clone(), names);
    under_eng.insert(big.id.clone());

    let no_role = org.account_without_member_role("no-role").await;
    no_role.users("app", 2).await;
    org.move_to(&no_role.id, &platform).await;

    let suspended = org.account("suspended").await;
    suspended.users("app", 2).await;
    org.move_to(&suspended.id, &eng).await;
    org.close(&suspended.id).await;

    let tagged = org.account("tagged").await;
    tagged.users("app", 2).await;
    org.tag_account(&tagged.id, "keyrotor:exclude", "true")
        .await;

    let env_excluded = org.account("env-excluded").await;
    env_excluded.users("app", 2).await;
    org.move_to(&env_excluded.id, &sales).await;

    let mut exempt_user = None;
    for i in 5..30 {
        let acct = org.account(&format!("acct{i:02}")).await;
        let names = acct.users("app", 2).await;
        let ou = [&root, &eng, &platform, &core][i % 4];
        if ou != &root {
            org.move_to(&acct.id, ou).await;
            under_eng.insert(acct.id.clone());
        }
        if exempt_user.is_none() {
            acct.iam
                .create_group()
                .group_name("keyrotor-exempt")
                .send()
                .await
                .unwrap();
            acct.iam
                .add_user_to_group()
                .group_name("keyrotor-exempt")
                .user_name(&names[0])
                .send()
                .await
                .unwrap();
            exempt_user = Some((acct.id.clone(), names[0].clone()));
        }
        eligible.insert(acct.id.clone(), names);
    }
    World {
        eligible,
        under_eng,
        eng,
        no_role: no_role.id,
        suspended: suspended.id,
        tagged: tagged.id,
        env_excluded: env_excluded.id,
        exempt_user: exempt_user.unwrap(),
    }
}

fn produce(
    emu: &Emulator,
    queue: &str,
    topic: Option<&str>,
    env: &[(&str, &str)],
    args: &[&str],
) -> Ran {
    let mut cmd = emu.keyrotor(TABLE);
    cmd.env("KEYROTOR_QUEUE_URL", queue);
    if let Some(topic) = topic {
        cmd.env("KEYROTOR_TOPIC_ARN", topic);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let as_of = today().to_rfc3339();
    let mut all = vec!["produce", "--as-of", as_of.as_str(), "--output", "json"];
    all.extend_from_slice(args);
    run(cmd, &all)
}

fn decode(bodies: &[String]) -> Vec<WorkMessage> {
    bodies
        .iter()
        .map(|b| WorkMessage::decode(b).unwrap_or_else(|e| panic!("{e}: {b}")))
        .collect()
}

/// (account, user) pairs, asserting none repeats.
fn pairs(messages: &[WorkMessage]) -> BTreeSet<(String, String)> {
    let set: BTreeSet<_> = messages
        .iter()
        .map(|m| (m.account_id.clone(), m.user_name.clone()))
        .collect();
    assert_eq!(set.len(), messages.len(), "a user was enqueued twice");
    set
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_org_and_ou_runs_enqueue_one_message_per_eligible_user() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let world = build(&org).await;
    let queue = init_queue(&emu, TABLE, "whole");
    let topic = format!("arn:aws:sns:us-east-1:{MANAGEMENT}:whole-results");
    // Failed-account events reach a subscriber queue through SNS.
    let sqs = aws_sdk_sqs::Client::new(&org.hub);
    let events_queue = sqs
        .create_queue()
        .queue_name("events")
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let sns = aws_sdk_sns::Client::new(&org.hub);
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(format!("arn:aws:sqs:us-east-1:{MANAGEMENT}:events"))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    let exclude = format!("{},{MANAGEMENT}", world.env_excluded);
    let env = [
        ("KEYROTOR_EXCLUDE_ACCOUNTS", exclude.as_str()),
        ("KEYROTOR_EXEMPT_GROUP", "keyrotor-exempt"),
        ("KEYROTOR_MODE", "enforce"),
    ];
    let ran = produce(&emu, &queue, Some(&topic), &env, &[]);
    assert_eq!(
        ran.code, 1,
        "a failed account makes the exit code 1: {}",
        ran.stderr
    );
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    let run_id = summary["run_id"].as_str().unwrap().to_string();
    let expected_users: usize = world.eligible.values().map(Vec::len).sum();
    assert_eq!(summary["accounts"], world.eligible.len());
    assert_eq!(summary["users"], expected_users);
    assert_eq!(summary["enqueued"], expected_users);
    assert_eq!(
        summary["failed_accounts"],
        serde_json::json!([world.no_role])
    );
    assert!(
        ran.stderr.contains(&world.no_role),
        "the failure is reported: {}",
        ran.stderr
    );

    // Producing the same run again enqueues nothing new (FIFO deduplication).
    // The emulator deduplicates only against messages still queued (SQS does
    // for 5 minutes, deleted or not), so the second run goes before the drain.
    let again = produce(&emu, &queue, None, &env, &["--run-id", &run_id]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["run_id"], run_id.as_str());

    let messages = decode(&drain_queue(&org.hub, &queue).await);
    let expected: BTreeSet<(String, String)> = world
        .eligible
        .iter()
        .flat_map(|(a, users)| users.iter().map(move |u| (a.clone(), u.clone())))
        .collect();
    assert_eq!(pairs(&messages), expected);
    for m in &messages {
        assert_eq!(m.run_id, run_id);
        assert_eq!(m.as_of, today());
        assert_eq!(m.mode.as_str(), "enforce");
        assert!(!m.force);
        assert_eq!(
            m.exempt,
            (m.account_id.clone(), m.user_name.clone()) == world.exempt_user,
            "{m:?}"
        );
        assert!(m
            .owner_email
            .as_deref()
            .is_some_and(|e| e.ends_with("@example.com")));
    }
    for skipped in [
        &world.suspended,
        &world.tagged,
        &world.env_excluded,
        &world.no_role,
    ] {
        assert!(messages.iter().all(|m| &m.account_id != skipped));
    }

    // The run record: expected counts per account, and the failed account.
    let runs = RunStore::new(aws_sdk_dynamodb::Client::new(&org.hub), TABLE);
    let record = runs.get(&run_id).await.unwrap().expect("run record");
    assert!(record.enqueue_done);
    assert_eq!(record.expected as usize, expected_users);
    assert_eq!(record.failed_accounts, vec![world.no_role.clone()]);
    let per: BTreeMap<_, _> = record
        .per_account
        .iter()
        .map(|a| (a.account_id.clone(), a))
        .collect();
    for (account, users) in &world.eligible {
        assert_eq!(per[account].expected as usize, users.len(), "{account}");
        assert!(per[account].enqueued);
    }
    assert_eq!(per[&world.no_role].status, "failed");
    assert!(per[&world.no_role]
        .error
        .as_deref()
        .unwrap()
        .contains("AccessDenied"));

    // One `failed` event, for the account whose role is missing.
    let events = drain_queue(&org.hub, &events_queue).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let event: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(event["type"], "keyrotor.result.v1");
    assert_eq!(event["outcome"], "failed");
    assert_eq!(event["account_id"], world.no_role.as_str());

    // An OU-scoped run: only the accounts under "eng", at every depth.
    let ou_queue = init_queue(&emu, TABLE, "ou");
    let (force_account, force_user) = world
        .eligible
        .iter()
        .find(|(a, _)| world.under_eng.contains(*a))
        .map(|(a, u)| (a.clone(), u[0].clone()))
        .unwrap();
    let force = format!("{force_account}:{force_user}");
    let env = [
        ("KEYROTOR_OUS", world.eng.as_str()),
        ("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT),
    ];
    let ran = produce(&emu, &ou_queue, None, &env, &["--force-user", &force]);
    assert_eq!(
        ran.code, 1,
        "the no-role account is under eng too: {}",
        ran.stderr
    );
    let messages = decode(&drain_queue(&org.hub, &ou_queue).await);
    let expected: BTreeSet<(String, String)> = world
        .eligible
        .iter()
        .filter(|(a, _)| world.under_eng.contains(*a))
        .flat_map(|(a, users)| users.iter().map(move |u| (a.clone(), u.clone())))
        .collect();
    assert!(
        expected.len() > 250,
        "the OU run covers the big account and others"
    );
    assert_eq!(pairs(&messages), expected);
    for m in &messages {
        assert_eq!(m.mode.as_str(), "audit", "default mode");
        assert_eq!(
            m.force,
            m.account_id == force_account && m.user_name == force_user
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_producer_lists_the_organization_through_the_org_reader_role() {
    let emu = Emulator::start();
    let org = Org::new(&emu).await;
    let acct = org.account("solo").await;
    acct.users("app", 3).await;
    // The org-reader role, in the management account.
    aws_sdk_iam::Client::new(&org.hub)
        .create_role()
        .role_name("keyrotor-org-reader")
        .assume_role_policy_document(json_trust().to_string())
        .send()
        .await
        .unwrap();
    let queue = init_queue(&emu, TABLE, "reader");
    let env = [
        ("KEYROTOR_EXCLUDE_ACCOUNTS", MANAGEMENT),
        (
            "KEYROTOR_ORG_ROLE_ARN",
            "arn:aws:iam::123456789012:role/keyrotor-org-reader",
        ),
    ];
    let ran = produce(&emu, &queue, None, &env, &[]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let summary: Value = serde_json::from_str(&ran.stdout).unwrap();
    assert_eq!(summary["enqueued"], 3);

    // A role that is not there: the run cannot list accounts, and says why.
    let env = [(
        "KEYROTOR_ORG_ROLE_ARN",
        "arn:aws:iam::123456789012:role/missing-reader",
    )];
    let ran = produce(&emu, &queue, None, &env, &[]);
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains("listing accounts"), "{}", ran.stderr);
}

fn json_trust() -> Value {
    serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}]})
}

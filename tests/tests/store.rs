//! The user lock's condition expressions, against the emulator's DynamoDB,
//! with two contenders; the run's counters rolled up per account; the
//! fleet's SES pace.

use std::time::Duration;

use keyrotor_e2e::Emulator;
use keyrotor_shared::domain::{Action, KeyAction, Mode};
use keyrotor_shared::store::results::{
    claim_holder, Claim, Notice, Recorded, ResultItem, ResultStore,
};
use keyrotor_shared::store::runs::RunStore;
use keyrotor_shared::store::{ensure_table, DynamoLedger, LedgerPort, StoreError};

async fn ledger(emu: &Emulator) -> DynamoLedger {
    let config = emu.hub_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    ensure_table(&client, "keyrotor-store").await.unwrap();
    DynamoLedger::new(client, "keyrotor-store")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_lock_turns_the_second_contender_away_until_released() {
    let emu = Emulator::start();
    let store = ledger(&emu).await;
    let lease = Duration::from_secs(60);
    let (a, mut record) = store
        .acquire("111122223333", "ci", "worker-a", lease)
        .await
        .unwrap();
    let busy = store
        .acquire("111122223333", "ci", "worker-b", lease)
        .await
        .unwrap_err();
    assert!(
        matches!(busy, StoreError::Locked { ref holder, .. } if holder == "worker-a"),
        "{busy:?}"
    );
    // Another user is independent.
    store
        .acquire("111122223333", "other", "worker-b", lease)
        .await
        .unwrap();

    record.old_key_id = Some("AKIAOLD".into());
    store.write(&a, &record).await.unwrap();
    store.renew(&a).await.unwrap();
    store.release(&a).await.unwrap();

    let (b, seen) = store
        .acquire("111122223333", "ci", "worker-b", lease)
        .await
        .unwrap();
    assert_eq!(
        seen.old_key_id.as_deref(),
        Some("AKIAOLD"),
        "the ledger survives the lock"
    );
    assert!(
        b.fence > a.fence,
        "each acquisition gets a newer fencing token"
    );
    // The previous holder can no longer write, renew or release.
    assert_eq!(
        store.write(&a, &record).await.unwrap_err(),
        StoreError::LockLost
    );
    assert_eq!(store.renew(&a).await.unwrap_err(), StoreError::LockLost);
    assert_eq!(store.release(&a).await.unwrap_err(), StoreError::LockLost);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_lease_is_taken_over_and_fences_out_the_old_holder() {
    let emu = Emulator::start();
    let store = ledger(&emu).await;
    let short = Duration::from_millis(300);
    let (a, record) = store
        .acquire("111122223333", "ci", "worker-a", short)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Expired: a's own writes now fail even before anyone takes over.
    assert_eq!(
        store.write(&a, &record).await.unwrap_err(),
        StoreError::LockLost
    );
    let (b, _) = store
        .acquire("111122223333", "ci", "worker-b", Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(store.release(&a).await.unwrap_err(), StoreError::LockLost);
    store.write(&b, &record).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_write_and_the_release_are_one_fenced_request() {
    let emu = Emulator::start();
    let store = ledger(&emu).await;
    let lease = Duration::from_secs(60);
    let (a, mut record) = store
        .acquire("111122223333", "ci", "worker-a", lease)
        .await
        .unwrap();
    record.new_key_id = Some("AKIANEW".into());
    store.write_and_release(&a, &record).await.unwrap();
    // Written, and free at once for the next holder.
    let (b, seen) = store
        .acquire("111122223333", "ci", "worker-b", lease)
        .await
        .unwrap();
    assert_eq!(seen.new_key_id.as_deref(), Some("AKIANEW"));
    // A fenced-out holder neither writes nor frees the lock.
    record.new_key_id = Some("AKIASTALE".into());
    assert_eq!(
        store.write_and_release(&a, &record).await.unwrap_err(),
        StoreError::LockLost
    );
    let busy = store
        .acquire("111122223333", "ci", "worker-c", lease)
        .await
        .unwrap_err();
    assert!(matches!(busy, StoreError::Locked { ref holder, .. } if holder == "worker-b"));
    store.release(&b).await.unwrap();
    let (_, seen) = store
        .acquire("111122223333", "ci", "worker-c", lease)
        .await
        .unwrap();
    assert_eq!(seen.new_key_id.as_deref(), Some("AKIANEW"));

    // A holder whose lease ran out records nothing, even if nobody took over.
    let (d, _) = store
        .acquire(
            "111122223333",
            "late",
            "worker-d",
            Duration::from_millis(300),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        store.write_and_release(&d, &record).await.unwrap_err(),
        StoreError::LockLost
    );
    assert!(store
        .read("111122223333", "late")
        .await
        .unwrap()
        .unwrap()
        .new_key_id
        .is_none());
}

/// A result of `user` in `account`, recorded by a worker.
fn result(run_id: &str, account: &str, user: &str, outcome: &str) -> ResultItem {
    ResultItem {
        run_id: run_id.into(),
        account_id: account.into(),
        account_name: format!("name-{account}"),
        account_email: None,
        user_name: user.into(),
        outcome: outcome.parse().unwrap(),
        mode: Mode::Audit,
        reason: "test".into(),
        actions: Vec::new(),
        due: Vec::new(),
        new_key_id: None,
        secret_arn: None,
        owner_email: None,
        key_ages: None,
        incident: false,
        quarantine_policy: None,
        at: keyrotor_e2e::today(),
    }
}

/// The run and result stores over a fresh table, with `run` started.
async fn started_run(emu: &Emulator, run: &str) -> (RunStore, ResultStore) {
    let config = emu.hub_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    ensure_table(&client, "keyrotor-store").await.unwrap();
    let runs = RunStore::new(client.clone(), "keyrotor-store");
    let results = ResultStore::new(client, "keyrotor-store");
    runs.start(run, keyrotor_e2e::today(), Mode::Audit, &[])
        .await
        .unwrap();
    (runs, results)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_counts_each_complete_account_once_and_status_sums_the_accounts() {
    let emu = Emulator::start();
    let run = "2026-06-01T00:00:00Z-rollup";
    let (runs, results) = started_run(&emu, run).await;
    for account in ["111111111111", "222222222222"] {
        // Two groups for two messages: every result is among the last, so
        // each reads the counters.
        runs.account_enqueued(run, account, &format!("name-{account}"), 2, 2)
            .await
            .unwrap();
    }
    runs.finish_enqueue(run, 2, 4).await.unwrap();

    let first = results
        .record(&result(run, "111111111111", "a", "rotated"))
        .await
        .unwrap();
    let Recorded::New {
        account,
        run: whole,
    } = first
    else {
        panic!("{first:?}")
    };
    assert_eq!((account.done, account.expected), (1, 2));
    assert_eq!(whole, None, "an incomplete account does not read the run");
    let live = runs.get(run).await.unwrap().unwrap();
    assert_eq!(live.done, 1, "status sums the accounts while the run goes");

    let second = results
        .record(&result(run, "111111111111", "b", "noop"))
        .await
        .unwrap();
    let Recorded::New {
        run: Some(whole), ..
    } = second
    else {
        panic!("{second:?}")
    };
    assert_eq!((whole.done, whole.expected), (2, 4));
    assert!(!whole.complete());
    // Redeliveries ask again: the account is rolled up once only.
    for _ in 0..3 {
        let (_, again) = results.progress(run, "111111111111").await.unwrap();
        assert_eq!(again.map(|r| r.done), Some(2));
    }
    assert_eq!(
        results
            .record(&result(run, "111111111111", "b", "noop"))
            .await
            .unwrap(),
        Recorded::Duplicate
    );

    results
        .record(&result(run, "222222222222", "a", "rotated"))
        .await
        .unwrap();
    let last = results
        .record(&result(run, "222222222222", "b", "failed"))
        .await
        .unwrap();
    let Recorded::New {
        run: Some(whole), ..
    } = last
    else {
        panic!("{last:?}")
    };
    assert!(whole.complete(), "{whole:?}");
    let summary = results.run_summary(run).await.unwrap();
    assert_eq!(summary.done, 4);
    assert_eq!(
        summary
            .counts
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        [("failed", 1), ("noop", 1), ("rotated", 2)]
    );
    let status = runs.get(run).await.unwrap().unwrap();
    assert_eq!(
        (status.done, status.counts.clone()),
        (4, summary.counts.into_iter().collect())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_account_whose_results_beat_its_enqueued_mark_is_rolled_up_by_the_producer() {
    let emu = Emulator::start();
    let run = "2026-06-01T00:00:00Z-early";
    let (runs, results) = started_run(&emu, run).await;
    // The workers were quicker than the producer's mark: while it is
    // enqueueing, the account cannot be complete, and nothing is read.
    for user in ["a", "b"] {
        let recorded = results
            .record(&result(run, "111111111111", user, "noop"))
            .await
            .unwrap();
        assert_eq!(recorded, Recorded::Early);
    }
    runs.account_enqueued(run, "111111111111", "name", 2, 1)
        .await
        .unwrap();
    runs.finish_enqueue(run, 1, 2).await.unwrap();
    let summary = results.run_summary(run).await.unwrap();
    assert_eq!((summary.done, summary.expected), (2, 2));
    assert_eq!(summary.counts.get("noop"), Some(&2));
    // A later look (a redelivery) does not add it again.
    let (_, whole) = results.progress(run, "111111111111").await.unwrap();
    assert_eq!(whole.map(|r| (r.done, r.complete())), Some((2, true)));
}

/// A digest's claim names the message whose delivery holds it, so that a
/// delivery of another message that meets it can leave the digest to it;
/// released, it names no one; a claim taken without a name (a delivery
/// with few receives left) removes an earlier one; a stale one is taken
/// over.
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_claim_names_the_message_that_holds_it() {
    let emu = Emulator::start();
    let run = "2026-06-01T00:00:00Z-claims";
    let (runs, results) = started_run(&emu, run).await;
    let account = "111111111111";
    runs.account_enqueued(run, account, "name", 2, 1)
        .await
        .unwrap();
    let digest = Notice::Digest {
        account_id: account,
    };
    let (a, b) = (claim_holder(account, "a"), claim_holder(account, "b"));
    let lease = Duration::from_secs(300);
    let hub = emu.hub_config().await;
    let named = || keyrotor_e2e::digest_holder(&hub, "keyrotor-store", run, account);

    let first = results
        .claim(run, digest, "pool-1", Some(&a), lease)
        .await
        .unwrap();
    assert!(matches!(first, Claim::Mine { .. }), "{first:?}");
    let second = results
        .claim(run, digest, "pool-2", Some(&b), lease)
        .await
        .unwrap();
    assert!(
        matches!(&second, Claim::Busy { holder: Some(h), .. } if *h == a),
        "{second:?}"
    );

    // Released after a failed send: free again, and named no more.
    results.release(run, digest, "pool-1").await.unwrap();
    assert_eq!(named().await, None);
    let retaken = results
        .claim(run, digest, "pool-2", Some(&b), lease)
        .await
        .unwrap();
    assert!(matches!(retaken, Claim::Mine { .. }), "{retaken:?}");
    let held = results
        .claim(run, digest, "pool-1", Some(&a), lease)
        .await
        .unwrap();
    assert!(
        matches!(&held, Claim::Busy { holder: Some(h), .. } if *h == b),
        "{held:?}"
    );

    // A holder that stopped: its claim goes stale and is taken over, here
    // by a delivery that names no message, which clears b's name.
    let stale = results
        .claim(run, digest, "pool-1", None, Duration::ZERO)
        .await
        .unwrap();
    assert!(matches!(stale, Claim::Mine { .. }), "{stale:?}");
    assert_eq!(named().await, None);
    let unnamed = results
        .claim(run, digest, "pool-2", Some(&b), lease)
        .await
        .unwrap();
    assert!(
        matches!(unnamed, Claim::Busy { holder: None, .. }),
        "{unnamed:?}"
    );

    results.finish(run, digest, "pool-1").await.unwrap();
    let after = results
        .claim(run, digest, "pool-2", Some(&b), lease)
        .await
        .unwrap();
    assert_eq!(after, Claim::Done);
}

/// A result with at least as many of its account's results to come as the
/// account has groups is counted on that condition and reads nothing; the
/// last ones read the counters, and the very last finds the account
/// complete. An account that failed part-way has no such mark: every result
/// reads, so its shorter count cannot be passed unseen.
#[tokio::test(flavor = "multi_thread")]
async fn only_an_accounts_last_results_read_its_counters() {
    let emu = Emulator::start();
    let run = "2026-06-01T00:00:00Z-early";
    let (runs, results) = started_run(&emu, run).await;
    let account = "111111111111";
    runs.account_enqueued(run, account, "name", 5, 2)
        .await
        .unwrap();
    let mut seen = Vec::new();
    for user in ["a", "b", "c", "d", "e"] {
        let recorded = results
            .record(&result(run, account, user, "noop"))
            .await
            .unwrap();
        seen.push(match recorded {
            Recorded::Early => "early".to_string(),
            Recorded::New { account, run } => {
                format!(
                    "{}/{} run {:?}",
                    account.done,
                    account.expected,
                    run.map(|r| r.done)
                )
            }
            Recorded::Duplicate => "duplicate".to_string(),
        });
    }
    assert_eq!(
        seen,
        ["early", "early", "early", "4/5 run None", "5/5 run Some(5)"]
    );
    assert_eq!(
        results
            .record(&result(run, account, "a", "noop"))
            .await
            .unwrap(),
        Recorded::Duplicate,
        "a duplicate of an early result is still found"
    );

    // Enqueued in full once (a first attempt of the run), then failed
    // part-way with 2 sent: the mark is gone with the larger count.
    let other = "222222222222";
    runs.account_enqueued(run, other, "name", 10, 1)
        .await
        .unwrap();
    runs.account_failed(run, other, "name", "listing failed", 2)
        .await
        .unwrap();
    let first = results
        .record(&result(run, other, "a", "noop"))
        .await
        .unwrap();
    assert!(matches!(first, Recorded::New { .. }), "{first:?}");
    let last = results
        .record(&result(run, other, "b", "noop"))
        .await
        .unwrap();
    let Recorded::New { account: done, .. } = last else {
        panic!("{last:?}")
    };
    assert!(done.complete(), "{done:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_result_item_reads_back_as_it_was_written() {
    let emu = Emulator::start();
    let run = "2026-06-01T00:00:00Z-roundtrip";
    let (runs, results) = started_run(&emu, run).await;
    runs.account_enqueued(run, "111111111111", "name-111111111111", 2, 1)
        .await
        .unwrap();
    let rotated = ResultItem {
        mode: Mode::Enforce,
        actions: vec![
            KeyAction::new(Action::DeleteOrphan, "AKIAORPHAN"),
            KeyAction::new(Action::Rotate, "AKIAOLD"),
        ],
        new_key_id: Some("AKIANEW".into()),
        secret_arn: Some("arn:aws:secretsmanager:us-east-1:111111111111:secret:k".into()),
        owner_email: Some("owner@example.com".into()),
        account_email: Some("account@example.com".into()),
        ..result(run, "111111111111", "a", "rotated")
    };
    let planned = ResultItem {
        due: vec![
            KeyAction::new(Action::Rotate, "AKIA1"),
            KeyAction::new(Action::Delete, "AKIA2"),
        ],
        ..result(run, "111111111111", "b", "planned")
    };
    for item in [&rotated, &planned] {
        results.record(item).await.unwrap();
        let (back, published) = results
            .find(run, &item.account_id, &item.user_name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, item);
        assert!(!published);
    }
    let listed = results.account_results(run, "111111111111").await.unwrap();
    assert_eq!(listed, vec![rotated, planned]);
}

/// The emulator backs up only the items a transaction names (moto's own
/// rollback copies the whole table first): a transaction cancelled by its
/// last entry must leave every item it wrote before as it was.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_transaction_leaves_every_item_as_it_was() {
    use aws_sdk_dynamodb::types::{
        AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update,
    };
    use keyrotor_shared::store::keys::{PK, SK};
    use std::collections::HashMap;

    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let db = aws_sdk_dynamodb::Client::new(&config);
    let table = "keyrotor-txn";
    ensure_table(&db, table).await.unwrap();
    let s = |v: &str| AttributeValue::S(v.into());
    let key = |pk: &str| HashMap::from([(PK.to_string(), s(pk)), (SK.to_string(), s("x"))]);
    let item = |pk: &str, v: &str| {
        let mut item = key(pk);
        item.insert("v".into(), s(v));
        item
    };
    for (pk, v) in [("updated", "1"), ("deleted", "1"), ("checked", "1")] {
        db.put_item()
            .table_name(table)
            .set_item(Some(item(pk, v)))
            .send()
            .await
            .unwrap();
    }
    let entries = [
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(item("new", "1")))
                    .build()
                    .unwrap(),
            )
            .build(),
        TransactWriteItem::builder()
            .update(
                Update::builder()
                    .table_name(table)
                    .set_key(Some(key("updated")))
                    .update_expression("SET v = :two, w = :two")
                    .expression_attribute_values(":two", s("2"))
                    .build()
                    .unwrap(),
            )
            .build(),
        TransactWriteItem::builder()
            .delete(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(key("deleted")))
                    .build()
                    .unwrap(),
            )
            .build(),
        TransactWriteItem::builder()
            .condition_check(
                ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(key("checked")))
                    .condition_expression("v = :two")
                    .expression_attribute_values(":two", s("2"))
                    .build()
                    .unwrap(),
            )
            .build(),
    ];
    let cancelled = db
        .transact_write_items()
        .set_transact_items(Some(entries.to_vec()))
        .send()
        .await
        .unwrap_err();
    assert!(
        format!("{:?}", cancelled).contains("TransactionCanceled"),
        "{cancelled:?}"
    );
    let get = |pk: &'static str| {
        let db = db.clone();
        async move {
            db.get_item()
                .table_name(table)
                .set_key(Some(key(pk)))
                .consistent_read(true)
                .send()
                .await
                .unwrap()
                .item
        }
    };
    assert_eq!(get("new").await, None, "the put is undone");
    assert_eq!(
        get("updated").await,
        Some(item("updated", "1")),
        "the update is undone"
    );
    assert_eq!(
        get("deleted").await,
        Some(item("deleted", "1")),
        "the delete is undone"
    );
    // The same transaction, its check now true, applies every entry.
    db.put_item()
        .table_name(table)
        .set_item(Some(item("checked", "2")))
        .send()
        .await
        .unwrap();
    db.transact_write_items()
        .set_transact_items(Some(entries.to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(get("new").await, Some(item("new", "1")));
    let mut updated = item("updated", "2");
    updated.insert("w".into(), s("2"));
    assert_eq!(get("updated").await, Some(updated));
    assert_eq!(get("deleted").await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleets_send_times_are_one_interval_apart_whoever_takes_them() {
    use keyrotor_shared::store::pace::{PaceStore, SendPace, Slot};
    let emu = Emulator::start();
    let config = emu.hub_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    ensure_table(&client, "keyrotor-pace").await.unwrap();
    // Two processes, each taking times from many tasks at once.
    let processes = [
        std::sync::Arc::new(PaceStore::new(client.clone(), "keyrotor-pace")),
        std::sync::Arc::new(PaceStore::new(client.clone(), "keyrotor-pace")),
    ];
    // Long enough that the emulator answers every take before the times
    // taken run out, however busy the machine.
    let step = Duration::from_millis(200);
    let horizon = Duration::from_secs(60);
    let start = chrono::Utc::now();
    // Digests of one, two and three emails.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let pace = processes[i % 2].clone();
        let count = 1 + i % 3;
        tasks.push(tokio::spawn(async move {
            (pace.take(step, count, horizon).await.unwrap(), count)
        }));
    }
    let mut booked = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (Slot::At(at), count) => booked.push((at, count)),
            (full, _) => panic!("a free time within the horizon was refused: {full:?}"),
        }
    }
    booked.sort();
    assert!(
        booked[0].0 >= start - chrono::Duration::milliseconds(5),
        "{booked:?}"
    );
    for pair in booked.windows(2) {
        let (at, count) = pair[0];
        assert_eq!(
            pair[1].0 - at,
            chrono::Duration::milliseconds(200 * count as i64),
            "each taker's times are its alone, the next taker's right after: {booked:?}"
        );
    }
    let (at, count) = *booked.last().unwrap();
    let last = at + chrono::Duration::milliseconds(200 * (count as i64 - 1));

    // 24 times of 200 ms reach 4.8 s ahead: a taker who would wait less is
    // refused, and told when the next is free at the earliest; nothing was
    // taken.
    let asked = chrono::Utc::now();
    match processes[0]
        .take(step, 1, Duration::from_millis(500))
        .await
        .unwrap()
    {
        Slot::Full { next } => {
            assert!(next > asked + chrono::Duration::milliseconds(500), "{next}");
            assert!(next <= last + chrono::Duration::milliseconds(200), "{next}");
        }
        at => panic!("taken beyond the horizon: {at:?}"),
    }
    match processes[1].take(step, 1, horizon).await.unwrap() {
        Slot::At(at) => assert_eq!(at, last + chrono::Duration::milliseconds(200)),
        full => panic!("{full:?}"),
    }

    // Once the pace is idle again, a time is now.
    tokio::time::sleep(Duration::from_millis(5300)).await;
    let before = chrono::Utc::now();
    match processes[0].take(step, 1, horizon).await.unwrap() {
        Slot::At(at) => {
            assert!(
                at >= before - chrono::Duration::milliseconds(5),
                "{at} {before}"
            );
            assert!(at <= chrono::Utc::now(), "{at}");
        }
        full => panic!("{full:?}"),
    }
}

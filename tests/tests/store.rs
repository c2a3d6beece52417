//! The user lock's condition expressions, against the emulator's DynamoDB,
//! with two contenders.

use std::time::Duration;

use keyrotor_e2e::Emulator;
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

//! Keeps a user lock's lease alive while a rotation is in progress, and says
//! when the lock can no longer be trusted, so the executor stops before its
//! next change to IAM or Secrets Manager.
//!
//! DynamoDB fences the ledger writes, but not IAM or Secrets Manager. So the
//! heartbeat also keeps a local deadline: the last successful renewal plus
//! the lease, less a safety margin. Past it, the lock counts as lost even if
//! no renewal has been refused yet (a stalled process, a network partition).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::store::{LedgerPort, Lock, StoreError};

/// A background renewal of one lock, every third of its lease.
pub struct Heartbeat {
    lost: Arc<AtomicBool>,
    trusted_until: Arc<Mutex<Instant>>,
    task: JoinHandle<()>,
}

/// How long before the lease's end the lock stops being trusted: a sixth of
/// the lease leaves room for one IAM or Secrets Manager call to finish.
fn trusted_for(lease: std::time::Duration) -> std::time::Duration {
    lease - lease / 6
}

impl Heartbeat {
    /// Starts renewing `lock`, whose acquisition was asked for at `asked`:
    /// the lease counts from the request, since DynamoDB may have granted it
    /// at any moment before the answer arrived.
    pub fn start(ledger: Arc<dyn LedgerPort>, lock: Lock, asked: Instant) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let trusted_until = Arc::new(Mutex::new(asked + trusted_for(lock.lease)));
        let (flag, until) = (lost.clone(), trusted_until.clone());
        let task = tokio::spawn(async move {
            let period = lock.lease / 3;
            loop {
                tokio::time::sleep(period).await;
                let asked = Instant::now();
                match ledger.renew(&lock).await {
                    Ok(()) => {
                        *until.lock().expect("not poisoned") = asked + trusted_for(lock.lease);
                    }
                    Err(StoreError::LockLost) => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // Transient: retry at the next beat; the deadline stands.
                    Err(e) => tracing::warn!(error = %e, "lock renewal failed; will retry"),
                }
            }
        });
        Heartbeat {
            lost,
            trusted_until,
            task,
        }
    }

    /// Whether the lock is lost, or can no longer be relied on.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
            || Instant::now() >= *self.trusted_until.lock().expect("not poisoned")
    }

    /// Stops renewing (before the lock is released).
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Heartbeat {
    /// Work dropped half-way (its task cancelled, a process stopping) must
    /// not renew its lock for ever: the lease then ends, and the user's
    /// next delivery takes over.
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::UserRecord;
    use async_trait::async_trait;
    use std::time::Duration;

    /// A ledger whose renewals always fail transiently.
    struct Unreachable;

    #[async_trait]
    impl LedgerPort for Unreachable {
        async fn acquire(
            &self,
            _: &str,
            _: &str,
            _: &str,
            _: Duration,
        ) -> Result<(Lock, UserRecord), StoreError> {
            unreachable!()
        }
        async fn renew(&self, _: &Lock) -> Result<(), StoreError> {
            Err(StoreError::Corrupt("network down".into()))
        }
        async fn write(&self, _: &Lock, _: &UserRecord) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn release(&self, _: &Lock) -> Result<(), StoreError> {
            unreachable!()
        }
        async fn read(&self, _: &str, _: &str) -> Result<Option<UserRecord>, StoreError> {
            unreachable!()
        }
    }

    fn sixty_second_lock() -> Lock {
        Lock {
            account_id: "111122223333".into(),
            user_name: "ci".into(),
            owner: "me".into(),
            fence: 1,
            lease: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lock_that_cannot_be_renewed_stops_being_trusted_before_its_lease_ends() {
        let lock = sixty_second_lock();
        let beat = Heartbeat::start(Arc::new(Unreachable), lock, Instant::now());
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert!(
            !beat.is_lost(),
            "still within the trusted part of the lease"
        );
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert!(beat.is_lost(), "past lease minus margin with no renewal");
        beat.stop().await;
    }

    #[tokio::test(start_paused = true)]
    async fn the_lease_counts_from_the_acquire_request() {
        let lock = sixty_second_lock();
        let asked = Instant::now();
        // The acquire's answer took 20 s to arrive.
        tokio::time::sleep(Duration::from_secs(20)).await;
        let beat = Heartbeat::start(Arc::new(Unreachable), lock, asked);
        tokio::time::sleep(Duration::from_secs(31)).await;
        assert!(
            beat.is_lost(),
            "51 s after the request is past the trusted 50 s, however late the answer"
        );
        beat.stop().await;
    }
}

//! Keeps a user lock's lease alive while a rotation is in progress, and
//! says when the lock was lost so the executor stops before its next change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::store::{LedgerPort, Lock, StoreError};

/// A background renewal of one lock, every third of its lease.
pub struct Heartbeat {
    lost: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing `lock`.
    pub fn start(ledger: Arc<dyn LedgerPort>, lock: Lock) -> Heartbeat {
        let lost = Arc::new(AtomicBool::new(false));
        let flag = lost.clone();
        let task = tokio::spawn(async move {
            let period = lock.lease / 3;
            loop {
                tokio::time::sleep(period).await;
                match ledger.renew(&lock).await {
                    Ok(()) => {}
                    Err(StoreError::LockLost) => {
                        flag.store(true, Ordering::SeqCst);
                        return;
                    }
                    // A transient failure: the lease still has two thirds left.
                    Err(e) => tracing::warn!(error = %e, "lock renewal failed; will retry"),
                }
            }
        });
        Heartbeat { lost, task }
    }

    /// Whether the lock is known to be lost.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Stops renewing (before the lock is released).
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

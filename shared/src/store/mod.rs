//! keyrotor's state in DynamoDB (DESIGN §6): the per-user lock and lifecycle
//! ledger. The port is [`LedgerPort`]; [`DynamoLedger`] is its adapter.

mod attr;
pub mod breaker;
mod dynamo;
pub mod keys;
pub mod pace;
pub mod registry;
pub mod results;
pub mod retry;
pub mod runs;
mod table;
pub mod waves;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{KeyAction, KeyHistory};

pub use self::retry::retry_transient;
use crate::error::AwsError;

pub use dynamo::DynamoLedger;
pub use table::ensure_table;

/// A rotation that was started (intent recorded) but not yet finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    /// Evaluation time at which the intent was recorded.
    pub at: DateTime<Utc>,
    /// The key ids the user had when the intent was recorded: any other key
    /// found later was created by this rotation.
    pub known_keys: Vec<String>,
    /// The secret the new key was to be stored in, as named when the
    /// intent was recorded: recovery looks there, whatever today's
    /// template says. `None` in items written by older versions.
    pub secret_name: Option<String>,
    /// The central secrets account of that secret, if one was configured.
    pub secrets_account: Option<String>,
}

/// What one run did to a user, written by the same fenced ledger write that
/// records each IAM change: a redelivery of that run's message (after a
/// crash, a timeout or a failed result write) reports this work instead of
/// finding nothing left to do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunWork {
    /// The run.
    pub run_id: String,
    /// (action, key id) pairs performed, in order.
    pub performed: Vec<KeyAction>,
    /// The key created, if one was.
    pub new_key_id: Option<String>,
    /// The secret holding it.
    pub secret_arn: Option<String>,
    /// An (action, key id) about to be done in IAM: written before the
    /// call, so that a redelivery after a crash between the call and its
    /// record can tell, from IAM, whether it happened.
    pub pending: Option<KeyAction>,
    /// The warnings (`warning_id`s) this run recorded as sent: a
    /// redelivery finds them in `warnings_sent` already and, without this,
    /// would report `noop`, leaving the warning out of every digest.
    pub warnings: Vec<String>,
}

/// The lifecycle ledger of one user (everything but the lock fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRecord {
    /// Set between "intent" and "rotated" (DESIGN §5 steps 1–5).
    pub intent: Option<Intent>,
    /// The key replaced by the last rotation.
    pub old_key_id: Option<String>,
    /// The key created by the last rotation.
    pub new_key_id: Option<String>,
    /// Evaluation time of the last rotation.
    pub rotated_at: Option<DateTime<Utc>>,
    /// The secret holding the newest key.
    pub secret_arn: Option<String>,
    /// That secret's version id for the newest key.
    pub secret_version: Option<String>,
    /// Deactivation dates, verification and warnings sent.
    pub history: KeyHistory,
    /// The work of the last run that changed something.
    pub last_run: Option<RunWork>,
}

/// A held user lock: who holds it and with which fencing token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Account of the user.
    pub account_id: String,
    /// The user.
    pub user_name: String,
    /// This holder's unique id.
    pub owner: String,
    /// The fencing token: incremented at every acquisition, checked at every write.
    pub fence: i64,
    /// How long each acquisition or renewal holds.
    pub lease: std::time::Duration,
}

/// Why a state operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another live worker holds the user's lock.
    #[error("user is locked by {holder} until {until_ms} (epoch ms)")]
    Locked {
        /// The other holder.
        holder: String,
        /// When its lease ends.
        until_ms: i64,
    },
    /// Our lease ended or a newer holder took over: stop writing.
    #[error("lock lost: the lease expired or another worker took the user over")]
    LockLost,
    /// An item could not be decoded.
    #[error("corrupt state item: {0}")]
    Corrupt(String),
    /// DynamoDB failed.
    #[error(transparent)]
    Aws(#[from] AwsError),
}

/// The per-user lock and ledger.
#[async_trait]
pub trait LedgerPort: Send + Sync {
    /// Takes the user's lock if it is free or its lease has expired; returns
    /// the lock and the ledger as it stands.
    async fn acquire(
        &self,
        account_id: &str,
        user_name: &str,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<(Lock, UserRecord), StoreError>;
    /// Extends the lease.
    async fn renew(&self, lock: &Lock) -> Result<(), StoreError>;
    /// Writes the ledger, only while `lock` is still held.
    async fn write(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError>;
    /// Releases the lock.
    async fn release(&self, lock: &Lock) -> Result<(), StoreError>;
    /// Writes the ledger and releases the lock in one step, only while
    /// `lock` is still held (as [`LedgerPort::write`] requires): the last
    /// write of a processing need not cost a request of its own. When it
    /// fails, neither happened.
    async fn write_and_release(&self, lock: &Lock, record: &UserRecord) -> Result<(), StoreError> {
        self.write(lock, record).await?;
        self.release(lock).await
    }
    /// Reads the ledger without locking.
    async fn read(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<Option<UserRecord>, StoreError>;
}

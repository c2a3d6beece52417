//! Domain types shared by the policy, the executor and the CLI: access keys
//! as IAM reports them, and what keyrotor remembers about a user.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether an access key can sign requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    /// The key signs requests.
    Active,
    /// The key is switched off but still exists (and can be switched back on).
    Inactive,
}

impl KeyStatus {
    /// The status as IAM spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// The last use of an access key, as `GetAccessKeyLastUsed` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUsed {
    /// When the key was last used.
    pub at: DateTime<Utc>,
    /// The service it was used with (`sts`, `s3`, ...), when IAM says.
    pub service: Option<String>,
}

/// One access key of a user, with the dates the policy needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyState {
    /// The access key id (`AKIA...`); not secret.
    pub key_id: String,
    /// Active or inactive.
    pub status: KeyStatus,
    /// IAM's `CreateDate`.
    pub created: DateTime<Utc>,
    /// The last use, or `None` when the key was never used.
    pub last_used: Option<LastUsed>,
}

/// keyrotor's own verification of a freshly created key (STS
/// `GetCallerIdentity` signed with it). Its use of the key must not count as
/// the application adopting the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// The key that was verified.
    pub key_id: String,
    /// When the verification ran.
    pub at: DateTime<Utc>,
}

/// What the ledger remembers about a user's keys, as the policy reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHistory {
    /// When each key was switched off (by keyrotor, or first seen inactive).
    pub deactivated_at: BTreeMap<String, DateTime<Utc>>,
    /// When keyrotor first saw that a person switched a key back on after
    /// keyrotor had switched it off (key id → time). The policy gives such a
    /// key at least the install grace from then before switching it off again
    /// (see [`crate::policy`]). Read only for active keys; the executor is to
    /// drop the entry when keyrotor switches the key off again and when the
    /// key leaves IAM.
    #[serde(default)]
    pub reactivated_at: BTreeMap<String, DateTime<Utc>>,
    /// keyrotor's verification of the newest key it created, if any.
    pub verification: Option<Verification>,
    /// Warnings already sent, as `warning_id` strings (see
    /// [`crate::policy::PlannedAction::warning_id`]).
    pub warnings_sent: BTreeSet<String>,
}

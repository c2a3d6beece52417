//! The domain's words, shared by every crate: the mode, account ids and
//! where accounts come from, access keys as IAM reports them, what keyrotor
//! remembers about a user, and a result's outcome and actions. Messages,
//! events, settings and the store all take them from here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

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

/// The audit/enforce switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Report what is due; change nothing in IAM or Secrets Manager.
    #[default]
    Audit,
    /// Perform what is due.
    Enforce,
}

impl Mode {
    /// The mode as it is spelled in settings, messages and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "audit" => Ok(Mode::Audit),
            "enforce" => Ok(Mode::Enforce),
            other => Err(format!("expected `audit` or `enforce`, got `{other}`")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the producer finds accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountSource {
    /// AWS Organizations `ListAccounts` (or the chosen OUs).
    Organizations,
    /// The DynamoDB account registry filled by `keyrotor import-accounts`.
    Table,
}

impl FromStr for AccountSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "organizations" => Ok(AccountSource::Organizations),
            "table" => Ok(AccountSource::Table),
            other => Err(format!(
                "expected `organizations` or `table`, got `{other}`"
            )),
        }
    }
}

/// A 12-digit AWS account id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for AccountId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(AccountId(s.to_string()))
        } else {
            Err(format!("`{s}` is not a 12-digit account id"))
        }
    }
}

impl TryFrom<String> for AccountId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<AccountId> for String {
    fn from(a: AccountId) -> String {
        a.0
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The result of one user's processing, as results, events, digests and
/// the CLI name it. The wire and DynamoDB spelling is serde's (lowercase);
/// [`Outcome::as_str`] gives the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// A new key was created and stored.
    Rotated,
    /// An old key was switched off.
    Deactivated,
    /// An inactive key was deleted.
    Deleted,
    /// A never-used key was switched off without a replacement.
    Retired,
    /// A warning of an upcoming action was recorded.
    Warned,
    /// A due action is held back (adoption check, or a full key slot).
    Held,
    /// The user is exempt.
    Skipped,
    /// Audit mode: actions are due but nothing was changed.
    Planned,
    /// Nothing due.
    Noop,
    /// Processing failed.
    Failed,
}

impl Outcome {
    /// Every outcome, in the order a reader cares about (digests list them so).
    pub const ALL: [Outcome; 10] = [
        Outcome::Rotated,
        Outcome::Deactivated,
        Outcome::Deleted,
        Outcome::Retired,
        Outcome::Planned,
        Outcome::Warned,
        Outcome::Held,
        Outcome::Failed,
        Outcome::Skipped,
        Outcome::Noop,
    ];

    /// The outcome as events, results and counters spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Rotated => "rotated",
            Outcome::Deactivated => "deactivated",
            Outcome::Deleted => "deleted",
            Outcome::Retired => "retired",
            Outcome::Warned => "warned",
            Outcome::Held => "held",
            Outcome::Skipped => "skipped",
            Outcome::Planned => "planned",
            Outcome::Noop => "noop",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of a user whose changes were `performed`: the most
    /// significant change (a new key first, then switches off, deletions),
    /// or `None` when nothing was changed.
    pub fn of_changes(performed: &[KeyAction]) -> Option<Outcome> {
        let did = |a: Action| performed.iter().any(|p| p.action == a);
        if did(Action::Rotate) {
            Some(Outcome::Rotated)
        } else if did(Action::Retire) {
            Some(Outcome::Retired)
        } else if did(Action::Deactivate) {
            Some(Outcome::Deactivated)
        } else if did(Action::Delete) || did(Action::DeleteOrphan) {
            Some(Outcome::Deleted)
        } else {
            None
        }
    }
}

/// The actions a result shows: what was `done`, or for a `planned` result
/// (which changed nothing) the changes `due` on the next enforce run.
pub fn shown_actions<'a>(
    outcome: Outcome,
    done: &'a [KeyAction],
    due: &'a [KeyAction],
) -> &'a [KeyAction] {
    if done.is_empty() && outcome == Outcome::Planned {
        due
    } else {
        done
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an outcome"))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change keyrotor makes to one key. (Warnings and holds are announced,
/// not made: they are [`crate::policy::ActionKind`]s only.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A new key replaced this one.
    Rotate,
    /// The key was switched off after its replacement.
    Deactivate,
    /// The inactive key was deleted.
    Delete,
    /// The never-used key was switched off without a replacement.
    Retire,
    /// A key left behind by an interrupted rotation (never stored) was deleted.
    DeleteOrphan,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 5] = [
        Action::Rotate,
        Action::Deactivate,
        Action::Delete,
        Action::Retire,
        Action::DeleteOrphan,
    ];

    /// The action as results, events and the CLI spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Rotate => "rotate",
            Action::Deactivate => "deactivate",
            Action::Delete => "delete",
            Action::Retire => "retire",
            Action::DeleteOrphan => "delete-orphan",
        }
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not an action"))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One action on one key: carried out (a result's `actions`, the CLI's
/// `performed`) or, in audit mode, due (a result's `due`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAction {
    /// What.
    pub action: Action,
    /// The key it applies to (for `rotate`, the key that was replaced).
    pub key_id: String,
}

impl KeyAction {
    /// `action` on `key_id`.
    pub fn new(action: Action, key_id: impl Into<String>) -> KeyAction {
        KeyAction {
            action,
            key_id: key_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_and_actions_read_back_as_serde_writes_them() {
        for o in Outcome::ALL {
            let wire = serde_json::to_value(o).unwrap();
            assert_eq!(wire, o.as_str());
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        for a in Action::ALL {
            let wire = serde_json::to_value(a).unwrap();
            assert_eq!(wire, a.as_str());
            assert_eq!(a.as_str().parse::<Action>(), Ok(a));
        }
        assert!("warn".parse::<Action>().is_err());
        assert!("Rotated".parse::<Outcome>().is_err());
    }

    #[test]
    fn the_most_significant_change_names_the_outcome() {
        let did = |actions: &[Action]| {
            let performed: Vec<_> = actions
                .iter()
                .map(|&a| KeyAction::new(a, "AKIA1"))
                .collect();
            Outcome::of_changes(&performed)
        };
        assert_eq!(did(&[]), None);
        assert_eq!(did(&[Action::DeleteOrphan]), Some(Outcome::Deleted));
        assert_eq!(
            did(&[Action::Delete, Action::Deactivate]),
            Some(Outcome::Deactivated)
        );
        assert_eq!(
            did(&[Action::Deactivate, Action::Rotate]),
            Some(Outcome::Rotated)
        );
        assert_eq!(
            did(&[Action::Retire, Action::Delete]),
            Some(Outcome::Retired)
        );
    }
}

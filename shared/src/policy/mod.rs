//! The rotation policy: given a user's keys, keyrotor's history of them and
//! the evaluation time, what is due. Pure: no I/O, no clock.
//!
//! See DESIGN §4. Let R = rotate age, D = deactivate age, X = delete age,
//! W = warning window, install grace = D − R, recovery grace = X − D.
//!
//! [`evaluate`] returns the actions in execution order. Only actions whose
//! `due` has passed change IAM ([`Evaluation::due_now`]); an action due later
//! appears only as a [`ActionKind::Warn`], and only within W of its due time.
//! Warnings are emitted on every evaluation inside their window: the caller
//! drops those whose [`PlannedAction::warning_id`] is already in
//! [`KeyHistory::warnings_sent`](crate::domain::KeyHistory::warnings_sent),
//! which is what makes it one warning per key and milestone.
//!
//! Decisions the design leaves open, made here:
//! - a forced rotation of a user whose only keys are inactive does nothing:
//!   there is no key in use to replace;
//! - when force meets an inactive key whose deletion is already due, that
//!   deletion keeps its own due time and reason (it is not a forced one);
//! - the `Hold` of a forced rotation refused for two active keys names the
//!   key that will stay, since that is the one a later rotation replaces;
//! - a deactivation that was held and then goes ahead is due when the hold
//!   ended (`due + max_hold`), since that is when it became due;
//! - while a deactivation is held, its warning is repeated for the end of the
//!   hold (same `warning_id`, so only a user who was not warned before the
//!   original deadline, e.g. on a late first run, gets it);
//! - `max_hold` counts from the deactivation's due time, not from the first
//!   run that noticed the hold, so the hold cannot be stretched by late runs;
//! - keyrotor's own verification is not adoption: an `sts` use within
//!   [`VERIFICATION_USE_WINDOW`] after the ledger's verification of the key,
//!   or after the key's IAM `CreateDate`, is taken to be keyrotor's call, both
//!   when picking which of two old keys is switched off first and in the
//!   adoption check (an `sts` use later than that, or any other service, is an
//!   application's);
//! - the verification window does not apply to the single-key rule: a key
//!   whose only use is keyrotor's verification counts as used there and is
//!   rotated, not retired (unchanged).
//!
//! People may override keyrotor, and keyrotor respects it:
//! - a key a person switches off gets the full recovery grace from then:
//!   deletion is due at `max(created + X, deactivated_at + recovery grace)`,
//!   where `deactivated_at` is when keyrotor switched it off or first saw it
//!   inactive;
//! - a key a person switches back on after keyrotor switched it off
//!   ([`KeyHistory::reactivated_at`](crate::domain::KeyHistory::reactivated_at))
//!   is not switched off again before `reactivated_at + install grace`,
//!   whatever the adoption check says. That floor applies to the deactivation
//!   of either key of the pair (after a reactivation the key picked to go
//!   first may be the other one), and to the retirement of a single unused
//!   key. While only the floor stands between a deactivation and its time,
//!   the plan is a `Hold` whose reason names the reactivation;
//! - with the adoption check on, while the reactivated key's replacement is
//!   unused (never used but by keyrotor's verification), the hold starts
//!   afresh from the reactivation: deactivation is held until
//!   `max(normal due, reactivated_at + install grace) + max_hold`, whether or
//!   not the reactivated key has been used since (the person's switching it
//!   on says it is needed). With the check off, only the floor applies. Once
//!   the replacement is used the normal rules apply, floor included;
//! - the policy reads `reactivated_at` only for active keys (a stale entry on
//!   an inactive key changes nothing), and takes it to be the latest
//!   reactivation. It expects the executor to drop the entry when keyrotor
//!   switches the key off again (so a later reactivation is recorded afresh)
//!   and with the key when the key leaves IAM;
//! - the owner was most likely warned about the key's first deactivation, and
//!   a warning has the same `warning_id` whatever its due time. For a warning
//!   before the new deadline, the executor would drop `<key>:deactivate` and
//!   `<key>:retire` from `warnings_sent` when it records a reactivation.

mod config;
mod rules;
#[cfg(test)]
mod tests;

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{KeyHistory, KeyState};

pub use config::{PolicyConfig, UnusedKeys};
pub use rules::{evaluate, last_use_matters};

/// How long after keyrotor's own verification call a use of the new key is
/// still taken to be that call: IAM updates `LastUsed` with a lag of up to
/// about four hours.
pub const VERIFICATION_USE_WINDOW: Duration = Duration::hours(4);

/// What the policy needs to know about one user.
#[derive(Debug, Clone, Copy)]
pub struct UserFacts<'a> {
    /// The user's access keys as IAM reports them (at most two).
    pub keys: &'a [KeyState],
    /// What keyrotor's ledger remembers about those keys.
    pub history: &'a KeyHistory,
    /// Why the user is exempt (group, tag, path), or `None` when it is not.
    pub exempt: Option<&'a str>,
    /// Rotate now whatever the age (`--force-user`).
    pub force: bool,
}

/// The kind of a planned action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Create a new key to replace the active one.
    Rotate,
    /// Switch off a key that has been replaced.
    Deactivate,
    /// Delete an inactive key.
    Delete,
    /// Switch off a key nobody used, without a replacement.
    Retire,
    /// Tell the owner that an action is coming.
    Warn,
    /// An action is due but held back; `due` says until when.
    Hold,
}

impl ActionKind {
    /// The kind as `plan` and the events spell it (`rotate`, `warn`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Rotate => "rotate",
            ActionKind::Deactivate => "deactivate",
            ActionKind::Delete => "delete",
            ActionKind::Retire => "retire",
            ActionKind::Warn => "warn",
            ActionKind::Hold => "hold",
        }
    }
}

impl ActionKind {
    /// The change this action makes to a key, or `None` for a warning or a
    /// hold (which change nothing).
    pub fn change(self) -> Option<crate::domain::Action> {
        use crate::domain::Action;
        match self {
            ActionKind::Rotate => Some(Action::Rotate),
            ActionKind::Deactivate => Some(Action::Deactivate),
            ActionKind::Delete => Some(Action::Delete),
            ActionKind::Retire => Some(Action::Retire),
            ActionKind::Warn | ActionKind::Hold => None,
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step the policy wants, or wants announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedAction {
    /// What to do.
    pub kind: ActionKind,
    /// The key it applies to (for `Rotate`: the key being replaced).
    pub key_id: String,
    /// When it becomes (or became) due; for `Hold`, when the hold ends.
    pub due: DateTime<Utc>,
    /// A short sentence for people: why, and by which rule.
    pub reason: String,
    /// For `Warn` and `Hold`: the action warned about or held back.
    pub milestone: Option<ActionKind>,
    /// A deactivation that goes ahead because its adoption hold ran out
    /// (the application never took up the new key): staged rollout counts
    /// it as trouble in the account's wave.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ends_hold: bool,
}

/// The identity of the warning of `milestone` for `key_id` (see
/// [`PlannedAction::warning_id`]).
pub fn warning_id(key_id: &str, milestone: ActionKind) -> String {
    format!("{key_id}:{milestone}")
}

impl PlannedAction {
    /// `"<key_id>:<milestone>"`: the identity of a warning, stored in
    /// `KeyHistory::warnings_sent` so each key gets one warning per milestone
    /// rather than one a day. An action without milestone uses its own kind.
    pub fn warning_id(&self) -> String {
        warning_id(&self.key_id, self.milestone.unwrap_or(self.kind))
    }

    /// Whether executing the action changes IAM (as opposed to notifying).
    pub fn changes_iam(&self) -> bool {
        matches!(
            self.kind,
            ActionKind::Rotate | ActionKind::Deactivate | ActionKind::Delete | ActionKind::Retire
        )
    }
}

/// The policy's answer for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The user is exempt; `actions` is then empty, and the caller reports a
    /// `skipped` result rather than silence.
    pub exempt: bool,
    /// The actions, in execution order (a deletion that frees the second key
    /// slot comes before the rotation that needs it).
    pub actions: Vec<PlannedAction>,
}

impl Evaluation {
    /// The actions that change IAM and are due at `now`, in execution order.
    pub fn due_now(&self, now: DateTime<Utc>) -> impl Iterator<Item = &PlannedAction> + '_ {
        self.actions
            .iter()
            .filter(move |a| a.changes_iam() && a.due <= now)
    }
}

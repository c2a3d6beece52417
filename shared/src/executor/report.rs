//! What the executor returns, in the JSON shape of DESIGN §7 (`plan` and
//! `rotate --output json`), and how a locked run becomes it: the outcome
//! (the most significant thing that happened) and the reason. Key ids
//! only: never secret material.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::UserRequest;
use crate::domain::{Action, KeyAction, KeyState, KeyStatus, Mode, Outcome};
use crate::policy::{self, ActionKind, Evaluation, PlannedAction};
use crate::store::results::KeyAges;

/// One key as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Access key id.
    pub key_id: String,
    /// `Active` or `Inactive`.
    pub status: &'static str,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last use, or null: never used, or not read (a rotation reads it
    /// only when it can change the plan; `plan` always reads it).
    pub last_used: Option<DateTime<Utc>>,
}

impl From<&KeyState> for KeyView {
    fn from(k: &KeyState) -> KeyView {
        KeyView {
            key_id: k.key_id.clone(),
            status: k.status.as_str(),
            created: k.created,
            last_used: k.last_used.as_ref().map(|l| l.at),
        }
    }
}

/// One planned action as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionView {
    /// `rotate | deactivate | delete | retire | warn | hold`.
    pub action: ActionKind,
    /// The key it applies to.
    pub key_id: String,
    /// When it becomes (or became) due.
    pub due: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

impl From<&PlannedAction> for ActionView {
    fn from(a: &PlannedAction) -> ActionView {
        ActionView {
            action: a.kind,
            key_id: a.key_id.clone(),
            due: a.due,
            reason: a.reason.clone(),
        }
    }
}

/// `plan` for one user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserPlan {
    /// Account id.
    pub account_id: String,
    /// User name.
    pub user_name: String,
    /// Whether the user is exempt.
    pub exempt: bool,
    /// The user's keys.
    pub keys: Vec<KeyView>,
    /// What is due or coming.
    pub actions: Vec<ActionView>,
}

/// `rotate` for one user: the plan as it stood, what was done, the result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserResult {
    /// The plan evaluated before acting (keys as they are after acting).
    #[serde(flatten)]
    pub plan: UserPlan,
    /// The result.
    pub outcome: Outcome,
    /// The key created, if one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_key_id: Option<String>,
    /// The secret that holds it, if one was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_arn: Option<String>,
    /// What was carried out, in order.
    pub performed: Vec<KeyAction>,
    /// A key was switched off because its adoption hold ran out (the
    /// application never took up its new key).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub hold_ran_out: bool,
    /// The user's owner (the owner-tag email), if tagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    /// A one-line explanation.
    pub reason: String,
    /// In an incident: the quarantine policy AWS attached to the user, if
    /// it did (keyrotor leaves it; the reason says what to do).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_policy: Option<String>,
}

impl UserResult {
    /// The ages of the user's active keys before and after this run, from
    /// the keys as it left them (`plan.keys`, which hold the new key, if one
    /// was made) and what it performed: a key it switched off (`deactivate`,
    /// `retire`) was active before; its new key was not there. Deleted keys
    /// were inactive, so they count in neither.
    pub fn key_ages(&self, as_of: DateTime<Utc>) -> KeyAges {
        let age = |k: &KeyView| (as_of - k.created).num_days().max(0);
        let active = |k: &KeyView| k.status == KeyStatus::Active.as_str();
        let switched_off = |k: &KeyView| {
            self.performed.iter().any(|a| {
                a.key_id == k.key_id && matches!(a.action, Action::Deactivate | Action::Retire)
            })
        };
        let keys = &self.plan.keys;
        KeyAges {
            before: keys
                .iter()
                .filter(|k| Some(k.key_id.as_str()) != self.new_key_id.as_deref())
                .filter(|k| active(k) || switched_off(k))
                .map(age)
                .collect(),
            after: keys.iter().filter(|k| active(k)).map(age).collect(),
        }
    }
}

/// The `skipped` result of an exempt user.
pub(super) fn skipped(req: &UserRequest, keys: &[KeyState], reason: &str) -> UserResult {
    let evaluation = Evaluation {
        exempt: true,
        actions: Vec::new(),
    };
    UserResult {
        plan: plan_view(req, keys, &evaluation),
        outcome: Outcome::Skipped,
        new_key_id: None,
        secret_arn: None,
        performed: Vec::new(),
        hold_ran_out: false,
        owner_email: None,
        reason: format!("exempt: {reason}"),
        quarantine_policy: None,
    }
}

pub(super) fn plan_view(req: &UserRequest, keys: &[KeyState], evaluation: &Evaluation) -> UserPlan {
    UserPlan {
        account_id: req.account_id.clone(),
        user_name: req.user_name.clone(),
        exempt: evaluation.exempt,
        keys: keys.iter().map(KeyView::from).collect(),
        actions: evaluation.actions.iter().map(ActionView::from).collect(),
    }
}

/// The most significant thing that happened, in the order operators care
/// about: a new key first, then switches off, deletions, then what is pending.
pub(super) fn outcome_of(
    mode: Mode,
    performed: &[KeyAction],
    due: &[policy::PlannedAction],
    evaluation: &Evaluation,
    warned: bool,
) -> Outcome {
    if let Some(changed) = Outcome::of_changes(performed) {
        changed
    } else if mode == Mode::Audit && !due.is_empty() {
        Outcome::Planned
    } else if evaluation
        .actions
        .iter()
        .any(|a| a.kind == ActionKind::Hold)
    {
        Outcome::Held
    } else if warned {
        Outcome::Warned
    } else {
        Outcome::Noop
    }
}

pub(super) fn reason_of(outcome: Outcome, evaluation: &Evaluation, notes: &[String]) -> String {
    let mut parts: Vec<String> = notes.to_vec();
    let relevant = evaluation.actions.iter().filter(|a| match outcome {
        Outcome::Held => a.kind == ActionKind::Hold,
        Outcome::Warned => a.kind == ActionKind::Warn,
        Outcome::Noop => false,
        _ => a.kind != ActionKind::Warn,
    });
    parts.extend(relevant.map(|a| format!("{} {}: {}", a.kind.as_str(), a.key_id, a.reason)));
    if parts.is_empty() {
        "nothing due".to_string()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ages_count_what_was_active_before_and_after_the_changes() {
        let as_of = DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let key = |id: &str, days: i64, status: KeyStatus| KeyView {
            key_id: id.into(),
            status: status.as_str(),
            created: as_of - chrono::Duration::days(days),
            last_used: None,
        };
        // Rotated AKIANEW in for AKIAOLD (still active), switched AKIAOFF
        // off, left AKIAIDLE inactive as it was.
        let after = [
            key("AKIAOLD", 95, KeyStatus::Active),
            key("AKIANEW", 0, KeyStatus::Active),
            key("AKIAOFF", 101, KeyStatus::Inactive),
        ];
        let performed = [
            KeyAction::new(Action::Rotate, "AKIAOLD"),
            KeyAction::new(Action::Deactivate, "AKIAOFF"),
            KeyAction::new(Action::Delete, "AKIAGONE"),
        ];
        let result =
            |keys: &[KeyView], performed: &[KeyAction], new_key: Option<&str>| UserResult {
                plan: UserPlan {
                    account_id: "111122223333".into(),
                    user_name: "ci".into(),
                    exempt: false,
                    keys: keys.to_vec(),
                    actions: Vec::new(),
                },
                outcome: Outcome::Rotated,
                new_key_id: new_key.map(str::to_string),
                secret_arn: None,
                performed: performed.to_vec(),
                hold_ran_out: false,
                owner_email: None,
                reason: String::new(),
                quarantine_policy: None,
            };
        let ages = result(&after, &performed, Some("AKIANEW")).key_ages(as_of);
        assert_eq!(ages.before, [95, 101]);
        assert_eq!(ages.after, [95, 0]);
        let untouched = result(&after[..1], &[], None).key_ages(as_of);
        assert_eq!(untouched.before, [95]);
        assert_eq!(untouched.before, untouched.after);
    }
}

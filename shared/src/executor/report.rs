//! What the executor returns, in the JSON shape of DESIGN §7 (`plan` and
//! `rotate --output json`), and how a locked run becomes it: the outcome
//! (the most significant thing that happened) and the reason. Key ids
//! only: never secret material.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::UserRequest;
use crate::domain::{KeyAction, KeyState, Mode, Outcome};
use crate::policy::{self, ActionKind, Evaluation, PlannedAction};

/// One key as `plan` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyView {
    /// Access key id.
    pub key_id: String,
    /// `Active` or `Inactive`.
    pub status: &'static str,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Last use, or null.
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
    /// The user's owner (the owner-tag email), if tagged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_email: Option<String>,
    /// A one-line explanation.
    pub reason: String,
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
        owner_email: None,
        reason: format!("exempt: {reason}"),
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

//! What the executor returns, in the JSON shape of DESIGN §7 (`plan` and
//! `rotate --output json`). Key ids only: never secret material.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::domain::{KeyAction, KeyState, Outcome};
use crate::policy::{ActionKind, PlannedAction};

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

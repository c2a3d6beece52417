//! The rules of DESIGN §4, one function per situation: inactive keys, a single
//! active key, two active keys.

use chrono::{DateTime, Utc};

use super::VERIFICATION_USE_WINDOW;
use super::{ActionKind, Evaluation, PlannedAction, PolicyConfig, UnusedKeys, UserFacts};
use crate::domain::{KeyHistory, KeyState, KeyStatus, LastUsed};

/// What is due for one user at `now`. Pure: same inputs, same answer.
pub fn evaluate(config: &PolicyConfig, facts: &UserFacts<'_>, now: DateTime<Utc>) -> Evaluation {
    if facts.exempt.is_some() {
        return Evaluation {
            exempt: true,
            actions: Vec::new(),
        };
    }
    let mut plan = Plan {
        config,
        history: facts.history,
        now,
        actions: Vec::new(),
    };
    let (mut active, inactive): (Vec<&KeyState>, Vec<&KeyState>) = facts
        .keys
        .iter()
        .partition(|k| k.status == KeyStatus::Active);
    active.sort_by(|a, b| order(a).cmp(&order(b)));

    // Deletions first: they free the slot a rotation may need. A forced
    // rotation of the single active key frees it at once.
    let force_slot = facts.force && active.len() == 1;
    let mut blocker = None;
    for key in &inactive {
        if let Some(until) = plan.inactive_key(key, force_slot) {
            // With one active key the slot is free only once every inactive
            // key is gone: wait for the last one.
            if blocker.is_none_or(|(latest, _)| until > latest) {
                blocker = Some((until, *key));
            }
        }
    }

    match active[..] {
        [] => {}
        [key] => plan.one_active(key, blocker, facts.force),
        // IAM never reports more than two keys; should it, the newest two are
        // the pair that matters.
        [.., older, newer] => plan.two_active(older, newer, facts.force),
    }
    Evaluation {
        exempt: false,
        actions: plan.actions,
    }
}

/// Keys by creation time; the key id breaks ties so the choice is stable.
fn order(key: &KeyState) -> (DateTime<Utc>, &str) {
    (key.created, key.key_id.as_str())
}

/// The actions being collected for one user.
struct Plan<'c> {
    config: &'c PolicyConfig,
    history: &'c KeyHistory,
    now: DateTime<Utc>,
    actions: Vec<PlannedAction>,
}

impl Plan<'_> {
    fn push(
        &mut self,
        kind: ActionKind,
        key: &KeyState,
        due: DateTime<Utc>,
        reason: String,
        milestone: Option<ActionKind>,
    ) {
        self.actions.push(PlannedAction {
            kind,
            key_id: key.key_id.clone(),
            due,
            reason,
            milestone,
        });
    }

    /// Warns about `milestone` when `due` is within W ahead. The reason is
    /// built lazily: most evaluations are outside every window.
    fn warn(
        &mut self,
        milestone: ActionKind,
        key: &KeyState,
        due: DateTime<Utc>,
        reason: impl FnOnce() -> String,
    ) {
        if self.now < due && self.now >= due - self.config.warn_within {
            self.push(ActionKind::Warn, key, due, reason(), Some(milestone));
        }
    }

    fn age(&self, key: &KeyState) -> i64 {
        (self.now - key.created).num_days()
    }

    /// An inactive key: deleted once it is X old and has been inactive for the
    /// recovery grace. Returns when it becomes deletable if it stays.
    fn inactive_key(&mut self, key: &KeyState, force_slot: bool) -> Option<DateTime<Utc>> {
        let c = self.config;
        // Unknown deactivation time: count from now, the caller records this
        // first sighting, so the deadline is fixed from the next run on.
        let since = self.history.deactivated_at.get(&key.key_id).copied();
        let deactivated = since.unwrap_or(self.now);
        let due = (key.created + c.delete_after).max(deactivated + c.recovery_grace());
        let rule = || {
            let since = match since {
                Some(t) => format!("inactive since {}", t.date_naive()),
                None => "first seen inactive now".to_owned(),
            };
            format!(
                "{since} (delete at {} days old and {} days inactive)",
                c.delete_after.num_days(),
                c.recovery_grace().num_days()
            )
        };
        if self.now >= due {
            let reason = format!("key is {} days old, {}", self.age(key), rule());
            self.push(ActionKind::Delete, key, due, reason, None);
            None
        } else if force_slot {
            let reason = "force: frees the second key slot".to_owned();
            self.push(ActionKind::Delete, key, self.now, reason, None);
            None
        } else {
            self.warn(ActionKind::Delete, key, due, || {
                format!("key will be deleted on {}, {}", due.date_naive(), rule())
            });
            Some(due)
        }
    }

    /// The single active key: rotated (or retired, when never used) at R.
    /// `blocker` is an inactive key that still occupies the second slot.
    fn one_active(
        &mut self,
        key: &KeyState,
        blocker: Option<(DateTime<Utc>, &KeyState)>,
        force: bool,
    ) {
        let (now, r) = (self.now, self.config.rotate_after.num_days());
        if force {
            // Any inactive key was deleted just before (force_slot).
            let reason = format!("force: rotate now (key is {} days old)", self.age(key));
            self.push(ActionKind::Rotate, key, now, reason, None);
            return;
        }
        let kind = match (key.last_used.is_some(), self.config.unused_keys) {
            (true, _) | (false, UnusedKeys::Rotate) => ActionKind::Rotate,
            (false, UnusedKeys::Retire) => ActionKind::Retire,
            (false, UnusedKeys::Ignore) => return,
        };
        let due = key.created + self.config.rotate_after;
        if now < due {
            let age = self.age(key);
            self.warn(kind, key, due, || match kind {
                ActionKind::Retire => format!(
                    "unused key will be retired on {} (key is {age} days old, retire at {r})",
                    due.date_naive()
                ),
                _ => format!(
                    "key will be rotated on {} (key is {age} days old, rotate at {r})",
                    due.date_naive()
                ),
            });
            return;
        }
        let reason = match (kind, blocker) {
            (ActionKind::Rotate, Some((until, inactive))) => {
                // Rotating needs a second slot; a third key cannot exist.
                let reason = format!(
                    "rotation due since {} waits for inactive key {} to be deleted on {}",
                    due.date_naive(),
                    inactive.key_id,
                    until.date_naive()
                );
                let milestone = Some(ActionKind::Rotate);
                self.push(ActionKind::Hold, key, until, reason, milestone);
                return;
            }
            (ActionKind::Retire, _) => format!(
                "key is {} days old and was never used (retire at {r})",
                self.age(key)
            ),
            _ => format!("key is {} days old (rotate at {r})", self.age(key)),
        };
        self.push(kind, key, due, reason, None);
    }

    /// Two active keys: one is deactivated (and later deleted) so the other can
    /// be rotated in turn. Never a third key.
    fn two_active(&mut self, older: &KeyState, newer: &KeyState, force: bool) {
        let c = self.config;
        // Normally the older key is the replaced one. When both are past R
        // (e.g. a first run on a user with two old keys), the one the
        // application relies on least goes first; `None < Some`, so a
        // never-used key counts as least recently used; ties keep the older.
        let both_due = self.now - newer.created >= c.rotate_after;
        // keyrotor's own verification is not a use by the application.
        let last_use = |k: &KeyState| {
            k.last_used
                .as_ref()
                .filter(|u| !self.is_verification(k, u))
                .map(|u| u.at)
        };
        let (cand, surv) = if both_due && last_use(newer) < last_use(older) {
            (newer, older)
        } else {
            (older, newer)
        };
        if force {
            let reason = "user already has two active keys; cannot create a third".to_owned();
            let milestone = Some(ActionKind::Rotate);
            self.push(ActionKind::Hold, surv, self.now, reason, milestone);
        }

        // The max() gives the replacement the full install grace even when it
        // appeared late (a late first run never switches a key off the day its
        // replacement appears).
        let due = (cand.created + c.deactivate_after).max(surv.created + c.install_grace());
        let rule = || {
            let why = if both_due {
                format!(
                    "both keys are past {} days and this one was used less recently than {}",
                    c.rotate_after.num_days(),
                    surv.key_id
                )
            } else {
                format!("replaced by {}", surv.key_id)
            };
            format!(
                "{why} (deactivate at {} days old, and {} days after {} appeared)",
                c.deactivate_after.num_days(),
                c.install_grace().num_days(),
                surv.key_id
            )
        };
        if self.now < due {
            self.warn(ActionKind::Deactivate, cand, due, || {
                format!(
                    "key will be deactivated on {}, {}",
                    due.date_naive(),
                    rule()
                )
            });
            return;
        }
        let unadopted = if c.adoption_check {
            self.unadopted(cand, surv)
        } else {
            None
        };
        let Some(last_used) = unadopted else {
            let reason = format!("key is {} days old, {}", self.age(cand), rule());
            self.push(ActionKind::Deactivate, cand, due, reason, None);
            return;
        };
        let until = due + c.max_hold;
        let used = last_used.date_naive();
        if self.now < until {
            let reason = format!(
                "{} not used yet while this key was used on {used}; deactivation held until {}",
                surv.key_id,
                until.date_naive()
            );
            self.push(
                ActionKind::Hold,
                cand,
                until,
                reason,
                Some(ActionKind::Deactivate),
            );
            self.warn(ActionKind::Deactivate, cand, until, || {
                format!(
                    "key will be deactivated on {} even if {} is still unused (adoption hold ends)",
                    until.date_naive(),
                    surv.key_id
                )
            });
        } else {
            let reason = format!(
                "adoption hold expired on {}: {} still unused, this key last used on {used}",
                until.date_naive(),
                surv.key_id
            );
            self.push(ActionKind::Deactivate, cand, until, reason, None);
        }
    }

    /// The adoption check: `Some(candidate's last use)` when the application
    /// still uses the candidate after the survivor appeared and has never used
    /// the survivor, so switching the candidate off would likely break it.
    fn unadopted(&self, cand: &KeyState, surv: &KeyState) -> Option<DateTime<Utc>> {
        let used = cand.last_used.as_ref()?.at;
        // A use at the very moment the survivor appeared may be after it.
        if used < surv.created {
            return None;
        }
        match &surv.last_used {
            None => Some(used),
            Some(u) if self.is_verification(surv, u) => Some(used),
            Some(_) => None,
        }
    }

    /// Whether the survivor's last use is keyrotor's own STS verification of
    /// it rather than the application: same key, `sts`, and within the window
    /// IAM's lag allows after the verification.
    fn is_verification(&self, key: &KeyState, used: &LastUsed) -> bool {
        self.history.verification.as_ref().is_some_and(|v| {
            v.key_id == key.key_id
                && used.service.as_deref() == Some("sts")
                && used.at <= v.at + VERIFICATION_USE_WINDOW
        })
    }
}

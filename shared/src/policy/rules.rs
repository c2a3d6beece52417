//! The rules of DESIGN §4, one function per situation: inactive keys, a single
//! active key, two active keys.

use chrono::{DateTime, Duration, Utc};

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

/// Whether the keys' last use can change what [`evaluate`] decides for
/// `facts` at `now` (`facts`' keys are taken as read without it). The
/// executor reads last use, one `GetAccessKeyLastUsed` a key, only when it
/// can: most users of a sweep have one young key, and those calls were
/// about a quarter of a sweep's IAM calls.
///
/// With two keys it always can (which one the application relies on,
/// whether the replacement was adopted). With one, the rules look only at
/// whether it was ever used (rotate or retire an unused key): evaluating
/// both ways and comparing is exact.
pub fn last_use_matters(config: &PolicyConfig, facts: &UserFacts<'_>, now: DateTime<Utc>) -> bool {
    if facts.keys.len() > 1 {
        return true;
    }
    let with = |last_used: Option<LastUsed>| {
        let keys: Vec<KeyState> = facts
            .keys
            .iter()
            .map(|k| KeyState {
                last_used: last_used.clone(),
                ..k.clone()
            })
            .collect();
        evaluate(
            config,
            &UserFacts {
                keys: &keys,
                ..*facts
            },
            now,
        )
    };
    with(None)
        != with(Some(LastUsed {
            at: now,
            service: None,
        }))
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
            ends_hold: false,
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
        let base = key.created + self.config.rotate_after;
        // A retired key a person switched back on is not retired again before
        // the install grace from then (a rotation switches nothing off).
        let person = match kind {
            ActionKind::Retire => self.reactivated(key),
            _ => None,
        };
        let ig = self.config.install_grace();
        let due = person.map_or(base, |at| base.max(at + ig));
        if now < due {
            if let (true, Some(at)) = (now >= base, person) {
                let reason = format!(
                    "key was switched back on by a person at {}; not retired before {} ({} days from then)",
                    at_time(at),
                    due.date_naive(),
                    ig.num_days()
                );
                let milestone = Some(ActionKind::Retire);
                self.push(ActionKind::Hold, key, due, reason, milestone);
            }
            let age = self.age(key);
            self.warn(kind, key, due, || match kind {
                ActionKind::Retire => format!(
                    "unused key will be retired on {} (key is {age} days old, retire at {r}{})",
                    due.date_naive(),
                    person_note(person, ig)
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
                "key is {} days old and was never used (retire at {r}{})",
                self.age(key),
                person_note(person, ig)
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
        let base = (cand.created + c.deactivate_after).max(surv.created + c.install_grace());
        // A person switched one of the pair back on: whichever key goes, that
        // decision gets at least the install grace from then.
        let person = [cand, surv]
            .into_iter()
            .filter_map(|k| self.reactivated(k).map(|at| (k, at)))
            .max_by_key(|&(_, at)| at);
        let ig = c.install_grace();
        let due = person.map_or(base, |(_, at)| base.max(at + ig));
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
            let person = match person {
                Some((who, at)) => format!(
                    ", and {} days after a person switched {} back on at {}",
                    ig.num_days(),
                    who.key_id,
                    at_time(at)
                ),
                None => String::new(),
            };
            format!(
                "{why} (deactivate at {} days old, and {} days after {} appeared{person})",
                c.deactivate_after.num_days(),
                ig.num_days(),
                surv.key_id
            )
        };
        // The survivor has been used by nobody but keyrotor (the adoption
        // check's notion of "not adopted").
        let surv_unused = surv
            .last_used
            .as_ref()
            .is_none_or(|u| self.is_verification(surv, u));
        // The candidate itself was switched back on: while its replacement is
        // unused, the adoption hold starts afresh from that decision.
        let reactivated = self.reactivated(cand);
        let until = due + c.max_hold;
        if self.now < due {
            if let (true, Some((who, at))) = (self.now >= base, person) {
                // Due but for the person's decision: say so (`held`).
                let whose = if who.key_id == cand.key_id {
                    "key".to_owned()
                } else {
                    who.key_id.clone()
                };
                let longer = if c.adoption_check && reactivated.is_some() && surv_unused {
                    format!(
                        ", nor before {} while {} is still unused",
                        until.date_naive(),
                        surv.key_id
                    )
                } else {
                    String::new()
                };
                let reason = format!(
                    "{whose} was switched back on by a person at {}; not deactivated before {} ({} days from then){longer}",
                    at_time(at),
                    due.date_naive(),
                    ig.num_days()
                );
                let milestone = Some(ActionKind::Deactivate);
                self.push(ActionKind::Hold, cand, due, reason, milestone);
            }
            self.warn(ActionKind::Deactivate, cand, due, || {
                format!(
                    "key will be deactivated on {}, {}",
                    due.date_naive(),
                    rule()
                )
            });
            return;
        }
        // Why the deactivation is held past `due`, and why it goes ahead when
        // the hold has run out.
        let hold = match (c.adoption_check, reactivated) {
            (false, _) => None,
            (true, Some(at)) if surv_unused => {
                let at = at_time(at);
                Some((
                    format!(
                        "key was switched back on by a person at {at} and {} is still unused; deactivation held until {}",
                        surv.key_id,
                        until.date_naive()
                    ),
                    format!(
                        "hold after a person switched this key back on at {at} expired on {}: {} still unused",
                        until.date_naive(),
                        surv.key_id
                    ),
                ))
            }
            (true, _) => self.unadopted(cand, surv).map(|last_used| {
                let used = last_used.date_naive();
                (
                    format!(
                        "{} not used yet while this key was used on {used}; deactivation held until {}",
                        surv.key_id,
                        until.date_naive()
                    ),
                    format!(
                        "adoption hold expired on {}: {} still unused, this key last used on {used}",
                        until.date_naive(),
                        surv.key_id
                    ),
                )
            }),
        };
        let Some((held, expired)) = hold else {
            let reason = format!("key is {} days old, {}", self.age(cand), rule());
            self.push(ActionKind::Deactivate, cand, due, reason, None);
            return;
        };
        if self.now < until {
            self.push(
                ActionKind::Hold,
                cand,
                until,
                held,
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
            self.push(ActionKind::Deactivate, cand, until, expired, None);
            if let Some(last) = self.actions.last_mut() {
                last.ends_hold = true;
            }
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

    /// Whether a key's last use is keyrotor's own STS verification of it
    /// rather than an application: an `sts` use within the window IAM's lag
    /// allows after the ledger's verification of that key, or after the key's
    /// IAM `CreateDate` (so a verification the ledger lost, or never recorded,
    /// does not pass for adoption).
    fn is_verification(&self, key: &KeyState, used: &LastUsed) -> bool {
        let within = |start: DateTime<Utc>| used.at <= start + VERIFICATION_USE_WINDOW;
        used.service.as_deref() == Some("sts")
            && (within(key.created)
                || self
                    .history
                    .verification
                    .as_ref()
                    .is_some_and(|v| v.key_id == key.key_id && within(v.at)))
    }

    /// When a person switched `key` back on after keyrotor had switched it
    /// off, if the ledger says so.
    fn reactivated(&self, key: &KeyState) -> Option<DateTime<Utc>> {
        self.history.reactivated_at.get(&key.key_id).copied()
    }
}

/// A reactivation time as reasons spell it, to the minute.
fn at_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The part of a retirement's rule that a person's reactivation adds.
fn person_note(person: Option<DateTime<Utc>>, ig: Duration) -> String {
    match person {
        Some(at) => format!(
            ", and {} days after a person switched it back on at {}",
            ig.num_days(),
            at_time(at)
        ),
        None => String::new(),
    }
}

//! Every sentence of the digest. The wording is an exhaustive `match` on
//! [`Outcome`] and [`Action`]: a new outcome or action does not compile
//! until it is worded here.

use std::collections::BTreeMap;

use keyrotor_shared::domain::{Action, Outcome};

use super::DigestLine;

/// Whether a line of this outcome is worth an email (`noop` and `skipped`
/// are not).
pub fn worth_saying(outcome: Outcome) -> bool {
    match outcome {
        Outcome::Noop | Outcome::Skipped => false,
        Outcome::Rotated
        | Outcome::Deactivated
        | Outcome::Deleted
        | Outcome::Retired
        | Outcome::Warned
        | Outcome::Held
        | Outcome::Planned
        | Outcome::Failed => true,
    }
}

/// How a summary counts lines of an outcome: (one, many).
pub(super) fn counted(outcome: Outcome) -> (&'static str, &'static str) {
    match outcome {
        Outcome::Rotated => ("key rotated", "keys rotated"),
        Outcome::Deactivated => ("key deactivated", "keys deactivated"),
        Outcome::Deleted => ("key deleted", "keys deleted"),
        Outcome::Retired => ("unused key retired", "unused keys retired"),
        Outcome::Planned => ("user with changes due", "users with changes due"),
        Outcome::Warned => ("warning", "warnings"),
        Outcome::Held => ("held", "held"),
        Outcome::Failed => ("failed", "failed"),
        Outcome::Skipped => ("exempt", "exempt"),
        Outcome::Noop => ("unchanged", "unchanged"),
    }
}

/// "3 keys rotated, 1 held": the outcomes in [`Outcome::ALL`]'s order.
pub(super) fn summary(counts: &BTreeMap<Outcome, usize>) -> String {
    let parts: Vec<String> = Outcome::ALL
        .iter()
        .filter_map(|o| {
            let (one, many) = counted(*o);
            counts
                .get(o)
                .map(|&n| format!("{n} {}", if n == 1 { one } else { many }))
        })
        .collect();
    if parts.is_empty() {
        "nothing to report".into()
    } else {
        parts.join(", ")
    }
}

/// A change that was made, in the past tense.
pub(super) fn past(action: Action, key: &str) -> String {
    match action {
        Action::Rotate => format!("key {key} was replaced by a new key"),
        Action::Deactivate => format!("key {key} was deactivated"),
        Action::Delete => format!("inactive key {key} was deleted"),
        Action::Retire => format!("never-used key {key} was deactivated without a replacement"),
        Action::DeleteOrphan => {
            format!("key {key}, left behind by an interrupted rotation, was deleted")
        }
    }
}

/// A change that is due, as what the next enforce run would do.
pub(super) fn future(action: Action, key: &str) -> String {
    match action {
        Action::Rotate => format!("key {key} would be rotated on the next enforce run"),
        Action::Deactivate => format!("key {key} would be deactivated on the next enforce run"),
        Action::Delete => format!("inactive key {key} would be deleted on the next enforce run"),
        Action::Retire => format!(
            "never-used key {key} would be deactivated (retired) on the next enforce run, without a replacement"
        ),
        Action::DeleteOrphan => format!(
            "key {key}, left behind by an interrupted rotation, would be deleted on the next enforce run"
        ),
    }
}

/// Clauses joined with `; `, the first capitalised, ending with a full stop.
pub(super) fn sentence(mut parts: Vec<String>) -> String {
    if parts.is_empty() {
        return String::new();
    }
    let mut s = parts.remove(0);
    if let Some(first) = s.get(..1) {
        let upper = first.to_uppercase();
        s.replace_range(..1, &upper);
    }
    for p in parts {
        s.push_str("; ");
        s.push_str(&p);
    }
    s.push('.');
    s
}

/// One or two sentences for a line: what happened (or would), from its
/// outcome and the actions `said`.
pub(super) fn headline(line: &DigestLine, said: Vec<String>, old_key_id: Option<&str>) -> String {
    match line.outcome {
        Outcome::Rotated => {
            let mut s = sentence(said);
            let new = line
                .new_key_id
                .as_deref()
                .map(|k| format!("The new key {k}"))
                .unwrap_or_else(|| "The new key".into());
            let stored = line
                .secret_arn
                .as_deref()
                .map(|arn| format!(" is stored in Secrets Manager at {arn}"))
                .unwrap_or_else(|| " is stored in Secrets Manager".into());
            let old = old_key_id
                .map(|k| format!("the old key {k}"))
                .unwrap_or_else(|| "the old key".into());
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(&format!(
                "{new}{stored}. The application must switch to the new key before {old} is deactivated."
            ));
            s
        }
        Outcome::Deactivated | Outcome::Deleted | Outcome::Retired if !said.is_empty() => {
            sentence(said)
        }
        Outcome::Deactivated => "A key was deactivated.".into(),
        Outcome::Deleted => "An inactive key was deleted.".into(),
        Outcome::Retired => "A never-used key was deactivated without a replacement.".into(),
        Outcome::Planned if said.is_empty() => {
            "Changes are due; nothing was changed (audit). The next enforce run would carry them out.".into()
        }
        Outcome::Planned => format!("Nothing was changed (audit). {}", sentence(said)),
        Outcome::Warned => "Advance warning: an action on this user's keys is coming up.".into(),
        Outcome::Held => "A due action is held back; see the reason.".into(),
        Outcome::Failed => {
            "Processing this user failed; it will be retried on the next run.".into()
        }
        Outcome::Skipped => "The user is exempt from rotation.".into(),
        Outcome::Noop => "Nothing was due.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_is_worded_in_both_tenses() {
        for action in Action::ALL {
            let done = past(action, "AKIA1");
            let due = future(action, "AKIA1");
            assert!(done.contains("AKIA1") && done.contains(" was "), "{done}");
            assert!(due.contains("AKIA1") && due.contains("would be"), "{due}");
        }
    }

    #[test]
    fn the_summary_follows_the_readers_order() {
        let counts = BTreeMap::from([
            (Outcome::Noop, 4),
            (Outcome::Held, 1),
            (Outcome::Rotated, 3),
        ]);
        assert_eq!(summary(&counts), "3 keys rotated, 1 held, 4 unchanged");
        assert_eq!(summary(&BTreeMap::new()), "nothing to report");
    }
}

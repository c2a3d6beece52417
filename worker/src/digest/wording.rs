//! What the templates see, and every sentence of the digest. The wording is
//! an exhaustive `match` on [`Outcome`] and [`Action`]: a new outcome or
//! action does not compile until it is worded here.

use std::collections::BTreeMap;

use keyrotor_shared::domain::{Action, KeyAction, Mode, Outcome};
use serde::Serialize;

use super::{AccountDigest, DigestLine};

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
fn counted(outcome: Outcome) -> (&'static str, &'static str) {
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
fn summary(counts: &BTreeMap<Outcome, usize>) -> String {
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
fn past(action: Action, key: &str) -> String {
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
fn future(action: Action, key: &str) -> String {
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
fn sentence(mut parts: Vec<String>) -> String {
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

/// What the templates see.
#[derive(Serialize)]
pub(super) struct Context {
    run_id: String,
    account_id: String,
    account_name: String,
    mode: Mode,
    audit: bool,
    as_of: String,
    /// e.g. "3 keys rotated, 1 held".
    summary: String,
    /// outcome -> number of lines.
    counts: BTreeMap<&'static str, usize>,
    /// Whether any line rotated a key (for the "switch to the new key" note).
    rotated: bool,
    /// The rendered subject (empty while the subject itself renders).
    pub(super) subject: String,
    lines: Vec<LineContext>,
}

#[derive(Serialize)]
struct LineContext {
    user_name: String,
    outcome: Outcome,
    reason: String,
    actions: Vec<KeyAction>,
    new_key_id: Option<String>,
    secret_arn: Option<String>,
    owner_email: Option<String>,
    /// The key a rotation replaced.
    old_key_id: Option<String>,
    /// Whether the actions were carried out (else they are due).
    changed: bool,
    /// One or two sentences: what happened, or what would.
    headline: String,
}

impl Context {
    /// The context of `digest`, every line worded.
    pub(super) fn of(digest: &AccountDigest) -> Context {
        let audit = digest.mode == Mode::Audit;
        let mut counts = BTreeMap::new();
        for line in &digest.lines {
            *counts.entry(line.outcome).or_insert(0) += 1;
        }
        Context {
            run_id: digest.run_id.clone(),
            account_id: digest.account_id.clone(),
            account_name: if digest.account_name.is_empty() {
                digest.account_id.clone()
            } else {
                digest.account_name.clone()
            },
            mode: digest.mode,
            audit,
            as_of: digest.as_of.format("%Y-%m-%d %H:%M UTC").to_string(),
            summary: summary(&counts),
            rotated: counts.contains_key(&Outcome::Rotated),
            counts: counts.into_iter().map(|(o, n)| (o.as_str(), n)).collect(),
            subject: String::new(),
            lines: digest
                .lines
                .iter()
                .map(|l| LineContext::of(l, audit))
                .collect(),
        }
    }
}

impl LineContext {
    fn of(line: &DigestLine, audit: bool) -> LineContext {
        // A planned line changed nothing: its actions are the due ones.
        let actions = if line.actions.is_empty() && line.outcome == Outcome::Planned {
            line.due.clone()
        } else {
            line.actions.clone()
        };
        let old_key_id = actions
            .iter()
            .find(|a| a.action == Action::Rotate)
            .map(|a| a.key_id.clone());
        // What happened is said in the past, what is due in the future:
        // by the outcome (a `planned` line changed nothing), else the mode.
        let changed = match line.outcome {
            Outcome::Rotated | Outcome::Deactivated | Outcome::Deleted | Outcome::Retired => true,
            Outcome::Planned => false,
            Outcome::Warned
            | Outcome::Held
            | Outcome::Skipped
            | Outcome::Noop
            | Outcome::Failed => !audit,
        };
        let said: Vec<String> = actions
            .iter()
            .map(|a| {
                if changed {
                    past(a.action, &a.key_id)
                } else {
                    future(a.action, &a.key_id)
                }
            })
            .collect();
        let headline = headline(line, said, old_key_id.as_deref());
        LineContext {
            user_name: line.user_name.clone(),
            outcome: line.outcome,
            reason: line.reason.clone(),
            actions,
            new_key_id: line.new_key_id.clone(),
            secret_arn: line.secret_arn.clone(),
            owner_email: line.owner_email.clone(),
            old_key_id,
            changed,
            headline,
        }
    }
}

/// One or two sentences for a line: what happened (or would), from its
/// outcome and the actions `said`.
fn headline(line: &DigestLine, said: Vec<String>, old_key_id: Option<&str>) -> String {
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
    use std::collections::BTreeSet;

    use super::*;
    use crate::digest::fixtures::{digest, line, rotated};
    use crate::digest::Templates;

    #[test]
    fn every_outcome_has_its_own_wording_and_count() {
        let mut headlines = BTreeSet::new();
        let mut counts = BTreeSet::new();
        for outcome in Outcome::ALL {
            for mode in [Mode::Audit, Mode::Enforce] {
                let context = Context::of(&digest(mode, vec![line("u", outcome, None)]));
                let headline = &context.lines[0].headline;
                assert!(headline.ends_with('.'), "{outcome}: {headline}");
                headlines.insert(headline.clone());
                assert!(context.summary.starts_with("1 "), "{}", context.summary);
            }
            counts.insert(counted(outcome).0);
        }
        assert_eq!(headlines.len(), Outcome::ALL.len(), "{headlines:?}");
        assert_eq!(counts.len(), Outcome::ALL.len(), "{counts:?}");
    }

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

    #[test]
    fn enforce_wording_names_users_keys_and_the_secret() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Enforce,
            vec![
                rotated("ci", "AKIAOLD0000000000001", "AKIANEW0000000000001"),
                rotated("deploy", "AKIAOLD0000000000002", "AKIANEW0000000000002"),
                rotated("etl", "AKIAOLD0000000000003", "AKIANEW0000000000003"),
                DigestLine {
                    reason: "hold AKIAOLD0000000000004: the old key is still in use".into(),
                    ..line("legacy", Outcome::Held, None)
                },
            ],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(
            email.subject,
            "[keyrotor] prod (111122223333): 3 keys rotated, 1 held"
        );
        for s in [&email.text, &email.html] {
            for needle in [
                "ci",
                "deploy",
                "legacy",
                "AKIAOLD0000000000001",
                "AKIANEW0000000000003",
                "Account_111122223333_User_ci_AccessKey",
                "must switch to the new key before the old key AKIAOLD0000000000002 is deactivated",
                "the old key is still in use",
            ] {
                assert!(s.contains(needle), "{needle} missing from\n{s}");
            }
            assert!(!s.contains("would be"), "enforce says what happened:\n{s}");
        }
        assert!(email
            .text
            .contains("This run changed the access keys below."));
        assert!(email.html.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn audit_wording_says_what_would_happen() {
        let t = Templates::load(None).unwrap();
        let d = digest(
            Mode::Audit,
            vec![
                DigestLine {
                    reason: "rotate AKIAOLD0000000000001: key is 95 days old (rotate at 90)".into(),
                    due: vec![KeyAction::new(Action::Rotate, "AKIAOLD0000000000001")],
                    ..line("ci", Outcome::Planned, None)
                },
                DigestLine {
                    actions: vec![KeyAction::new(Action::Delete, "AKIAOLD0000000000009")],
                    ..line("batch", Outcome::Planned, None)
                },
            ],
        );
        let email = t.render(&d).unwrap();
        assert_eq!(
            email.subject,
            "[keyrotor audit] prod (111122223333): 2 users with changes due"
        );
        for s in [&email.text, &email.html] {
            for needle in [
                "ci",
                "batch",
                "AKIAOLD0000000000001 would be rotated on the next enforce run",
                "Inactive key AKIAOLD0000000000009 would be deleted on the next enforce run",
                "planned",
            ] {
                assert!(s.contains(needle), "{needle} missing from\n{s}");
            }
        }
        assert!(email.text.contains("NOTHING WAS CHANGED"));
        assert!(email.text.contains("Actions due:"));
    }
}

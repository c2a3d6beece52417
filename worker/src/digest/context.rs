//! What the templates see: the digest's context, every line worded (see
//! [`super::wording`]).

use std::collections::BTreeMap;

use keyrotor_shared::domain::{shown_actions, Action, KeyAction, Mode, Outcome};
use serde::Serialize;

#[cfg(test)]
use super::wording::counted;
use super::wording::{future, headline, past, summary};
use super::{AccountDigest, DigestLine};

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
        let actions = shown_actions(line.outcome, &line.actions, &line.due).to_vec();
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

//! Who gets which lines: the account owner every line worth saying, each
//! user owner (owner-tag email) the lines of their users.

use std::collections::BTreeMap;

use super::wording::worth_saying;
use super::{AccountDigest, DigestLine};

/// An address worth sending to: trimmed, with an `@` and no spaces.
fn address(raw: Option<&str>) -> Option<String> {
    let a = raw?.trim();
    (a.len() >= 3 && a.contains('@') && !a.chars().any(char::is_whitespace)).then(|| a.to_string())
}

/// The emails to send: the account owner gets every line worth saying; each
/// distinct user owner (owner-tag email) gets only the lines of their users.
/// Lines with outcome `noop` or `skipped` are not worth saying; a recipient
/// with nothing to say gets no email; an account with nothing to say sends
/// nothing. Emails are deduplicated (an owner who is also the account owner
/// gets the full one only). Returns (recipient, digest-with-that-recipient's-
/// lines): the account owner first, then the user owners by address.
pub fn plan_emails(digest: &AccountDigest) -> Vec<(String, AccountDigest)> {
    let worth: Vec<&DigestLine> = digest
        .lines
        .iter()
        .filter(|l| worth_saying(l.outcome))
        .collect();
    if worth.is_empty() {
        return Vec::new();
    }
    let with_lines = |lines: Vec<DigestLine>| AccountDigest {
        lines,
        ..digest.clone()
    };
    let mut emails = Vec::new();
    let owner = address(digest.owner_email.as_deref());
    if let Some(owner) = &owner {
        emails.push((
            owner.clone(),
            with_lines(worth.iter().map(|l| (*l).clone()).collect()),
        ));
    }
    // Keyed by the lowercased address; the first spelling seen is kept.
    let mut by_owner: BTreeMap<String, (String, Vec<DigestLine>)> = BTreeMap::new();
    for line in &worth {
        let Some(to) = address(line.owner_email.as_deref()) else {
            continue;
        };
        let key = to.to_lowercase();
        if owner.as_ref().is_some_and(|o| o.to_lowercase() == key) {
            continue;
        }
        by_owner
            .entry(key)
            .or_insert_with(|| (to, Vec::new()))
            .1
            .push((*line).clone());
    }
    emails.extend(
        by_owner
            .into_values()
            .map(|(to, lines)| (to, with_lines(lines))),
    );
    emails
}

#[cfg(test)]
mod tests {
    use keyrotor_shared::domain::{Mode, Outcome};

    use super::*;
    use crate::digest::fixtures::{digest, line};

    fn users(d: &AccountDigest) -> Vec<&str> {
        d.lines.iter().map(|l| l.user_name.as_str()).collect()
    }

    #[test]
    fn account_owner_gets_all_lines_user_owners_their_own() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Rotated, Some("alice@example.com")),
                line("b", Outcome::Held, Some("bob@example.com")),
                line("c", Outcome::Warned, Some("alice@example.com")),
                line("d", Outcome::Failed, None),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            to,
            ["owner@example.com", "alice@example.com", "bob@example.com"]
        );
        assert_eq!(users(&emails[0].1), ["a", "b", "c", "d"]);
        assert_eq!(users(&emails[1].1), ["a", "c"]);
        assert_eq!(users(&emails[2].1), ["b"]);
        // The rest of the digest is the account's.
        assert_eq!(emails[2].1.account_id, "111122223333");
        assert_eq!(emails[2].1.owner_email, d.owner_email);
    }

    #[test]
    fn an_owner_who_is_the_account_owner_gets_the_full_email_only() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Rotated, Some(" Owner@Example.com ")),
                line("b", Outcome::Rotated, Some("bob@example.com")),
                line("c", Outcome::Rotated, Some("BOB@example.com")),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(to, ["owner@example.com", "bob@example.com"]);
        assert_eq!(users(&emails[0].1), ["a", "b", "c"]);
        assert_eq!(users(&emails[1].1), ["b", "c"]);
    }

    #[test]
    fn noop_and_skipped_are_not_worth_an_email() {
        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Noop, Some("alice@example.com")),
                line("b", Outcome::Skipped, Some("bob@example.com")),
            ],
        );
        assert!(plan_emails(&d).is_empty(), "nothing to say sends nothing");

        let d = digest(
            Mode::Enforce,
            vec![
                line("a", Outcome::Noop, Some("alice@example.com")),
                line("b", Outcome::Skipped, Some("bob@example.com")),
                line("c", Outcome::Deleted, Some("carol@example.com")),
            ],
        );
        let emails = plan_emails(&d);
        let to: Vec<&str> = emails.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            to,
            ["owner@example.com", "carol@example.com"],
            "alice and bob have nothing to hear"
        );
        assert_eq!(users(&emails[0].1), ["c"]);
        assert_eq!(users(&emails[1].1), ["c"]);
    }

    #[test]
    fn no_account_owner_and_bad_addresses() {
        let mut d = digest(
            Mode::Audit,
            vec![
                line("a", Outcome::Planned, Some("team-payments")),
                line("b", Outcome::Planned, Some("")),
                line("c", Outcome::Planned, Some("carol@example.com")),
            ],
        );
        d.owner_email = None;
        let emails = plan_emails(&d);
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0].0, "carol@example.com");
        assert_eq!(users(&emails[0].1), ["c"]);
        d.lines.pop();
        assert!(plan_emails(&d).is_empty());
    }
}

//! The rules of DESIGN §4, one scenario per test. Keys are created on a day
//! number (day 0 = 2024-01-01) and plans are shown as compact lines such as
//! `"rotate A @90"` or `"warn(deactivate) A @100"` (`@` = due day).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::*;
use crate::domain::{KeyHistory, KeyState, KeyStatus, LastUsed, Verification};

fn day(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap() + Duration::days(n)
}

fn key(id: &str, status: KeyStatus, created: i64) -> KeyState {
    KeyState {
        key_id: id.to_owned(),
        status,
        created: day(created),
        last_used: None,
    }
}

fn active(id: &str, created: i64) -> KeyState {
    key(id, KeyStatus::Active, created)
}

fn inactive(id: &str, created: i64) -> KeyState {
    key(id, KeyStatus::Inactive, created)
}

trait Usage {
    fn used_on(self, day: i64) -> Self;
    fn used(self, at: DateTime<Utc>, service: &str) -> Self;
}

impl Usage for KeyState {
    fn used_on(self, n: i64) -> Self {
        self.used(day(n), "s3")
    }

    fn used(mut self, at: DateTime<Utc>, service: &str) -> Self {
        self.last_used = Some(LastUsed {
            at,
            service: Some(service.to_owned()),
        });
        self
    }
}

/// One user as the policy sees it, built in the test's words.
struct User {
    keys: Vec<KeyState>,
    history: KeyHistory,
    exempt: Option<&'static str>,
    force: bool,
    config: PolicyConfig,
}

fn user<const N: usize>(keys: [KeyState; N]) -> User {
    User {
        keys: keys.into(),
        history: KeyHistory::default(),
        exempt: None,
        force: false,
        config: PolicyConfig::default(),
    }
}

impl User {
    fn deactivated(mut self, id: &str, on: i64) -> Self {
        self.history.deactivated_at.insert(id.to_owned(), day(on));
        self
    }

    fn reactivated(mut self, id: &str, on: i64) -> Self {
        self.history.reactivated_at.insert(id.to_owned(), day(on));
        self
    }

    fn verified(mut self, id: &str, at: DateTime<Utc>) -> Self {
        let key_id = id.to_owned();
        self.history.verification = Some(Verification { key_id, at });
        self
    }

    fn forced(mut self) -> Self {
        self.force = true;
        self
    }

    fn exempt(mut self, reason: &'static str) -> Self {
        self.exempt = Some(reason);
        self
    }

    fn with(mut self, change: impl FnOnce(&mut PolicyConfig)) -> Self {
        change(&mut self.config);
        self
    }

    fn evaluate(&self, now: DateTime<Utc>) -> Evaluation {
        let facts = UserFacts {
            keys: &self.keys,
            history: &self.history,
            exempt: self.exempt,
            force: self.force,
        };
        evaluate(&self.config, &facts, now)
    }

    /// The plan at `now` as compact lines.
    fn plan(&self, now: DateTime<Utc>) -> Vec<String> {
        self.evaluate(now).actions.iter().map(line).collect()
    }

    /// The reasons of the plan at `now`.
    fn reasons(&self, now: DateTime<Utc>) -> Vec<String> {
        let actions = self.evaluate(now).actions;
        actions.into_iter().map(|a| a.reason).collect()
    }

    /// Checks the plan on each day of a table.
    fn expect(&self, table: &[(DateTime<Utc>, &[&str])]) {
        for (now, want) in table {
            assert_eq!(self.plan(*now), *want, "at {now}");
        }
    }
}

fn line(a: &PlannedAction) -> String {
    let kind = match a.milestone {
        Some(m) => format!("{}({})", a.kind, m),
        None => a.kind.to_string(),
    };
    let since = a.due - day(0);
    let due = match since.num_seconds() % 86_400 {
        0 => format!("{}", since.num_days()),
        _ => format!("{}+{}s", since.num_days(), since.num_seconds() % 86_400),
    };
    format!("{kind} {} @{due}", a.key_id)
}

const NONE: &[&str] = &[];
const SECOND: Duration = Duration::seconds(1);

#[test]
fn exempt_user_gets_no_actions_even_when_keys_are_overdue() {
    let u = user([active("A", 0).used_on(1), inactive("B", 0)]).exempt("group ci-exempt");
    let eval = u.evaluate(day(400));
    assert!(eval.exempt);
    assert!(eval.actions.is_empty());
    assert!(!user([]).evaluate(day(0)).exempt);
}

#[test]
fn user_without_keys_gets_nothing() {
    assert_eq!(user([]).plan(day(1000)), NONE);
    assert_eq!(user([]).forced().plan(day(1000)), NONE);
}

#[test]
fn used_key_is_rotated_from_rotation_age_on() {
    let u = user([active("A", 0).used_on(50)]);
    u.expect(&[
        (day(0), NONE),
        (day(90) - SECOND, &["warn(rotate) A @90"]),
        (day(90), &["rotate A @90"]),
        (day(95), &["rotate A @90"]),
        (day(400), &["rotate A @90"]),
    ]);
    assert_eq!(u.reasons(day(95)), ["key is 95 days old (rotate at 90)"]);
}

#[test]
fn warning_window_is_w_before_the_deadline_up_to_it() {
    let u = user([active("A", 0).used_on(50)]);
    u.expect(&[
        (day(83) - SECOND, NONE),
        (day(83), &["warn(rotate) A @90"]),
        (day(89), &["warn(rotate) A @90"]),
        (day(90), &["rotate A @90"]),
    ]);
    let u = u.with(|c| c.warn_within = Duration::zero());
    u.expect(&[(day(89), NONE), (day(90) - SECOND, NONE)]);
    let warn = &u.with(|c| c.warn_within = Duration::days(30)).plan(day(60));
    assert_eq!(warn, &["warn(rotate) A @90"]);
}

#[test]
fn unused_key_is_retired_by_default_without_replacement() {
    let u = user([active("A", 0)]);
    u.expect(&[
        (day(82), NONE),
        (day(83), &["warn(retire) A @90"]),
        (day(90), &["retire A @90"]),
        (day(120), &["retire A @90"]),
    ]);
    assert_eq!(
        u.reasons(day(91)),
        ["key is 91 days old and was never used (retire at 90)"]
    );
    // Once retired, the inactive-key rule deletes it a recovery grace later.
    let retired = user([inactive("A", 0)]).deactivated("A", 90);
    retired.expect(&[
        (day(95), NONE),
        (day(103), &["warn(delete) A @110"]),
        (day(110), &["delete A @110"]),
    ]);
}

#[test]
fn unused_key_is_rotated_when_configured() {
    let u = user([active("A", 0)]).with(|c| c.unused_keys = UnusedKeys::Rotate);
    u.expect(&[
        (day(85), &["warn(rotate) A @90"]),
        (day(90), &["rotate A @90"]),
    ]);
}

#[test]
fn unused_key_is_left_alone_when_ignored() {
    let u = user([active("A", 0)]).with(|c| c.unused_keys = UnusedKeys::Ignore);
    u.expect(&[(day(85), NONE), (day(90), NONE), (day(500), NONE)]);
    // A used key is still rotated.
    let used = user([active("A", 0).used_on(3)]).with(|c| c.unused_keys = UnusedKeys::Ignore);
    used.expect(&[(day(90), &["rotate A @90"])]);
}

#[test]
fn replaced_key_is_deactivated_at_deactivation_age() {
    // A rotated on day 90 into B, which the application adopted.
    let u = user([active("A", 0).used_on(91), active("B", 90).used_on(92)]);
    u.expect(&[
        (day(92), NONE),
        (day(93), &["warn(deactivate) A @100"]),
        (day(100), &["deactivate A @100"]),
        (day(105), &["deactivate A @100"]),
    ]);
}

#[test]
fn late_first_run_gives_the_new_key_the_full_install_grace() {
    // A was replaced on day 150 only: A is past D, but B gets its 10 days.
    let u = user([active("A", 0).used_on(149), active("B", 150).used_on(151)]);
    u.expect(&[
        (day(152), NONE),
        (day(153), &["warn(deactivate) A @160"]),
        (day(160), &["deactivate A @160"]),
    ]);
}

#[test]
fn deactivation_is_held_while_the_new_key_is_unused() {
    let u = user([active("A", 0).used_on(101), active("B", 90)]);
    u.expect(&[
        (day(93), &["warn(deactivate) A @100"]),
        (day(100), &["hold(deactivate) A @114"]),
        (day(106), &["hold(deactivate) A @114"]),
        (
            day(107),
            &["hold(deactivate) A @114", "warn(deactivate) A @114"],
        ),
        (day(114), &["deactivate A @114"]),
        (day(130), &["deactivate A @114"]),
    ]);
    let reasons = u.reasons(day(114));
    assert!(reasons[0].contains("hold expired"), "{reasons:?}");
    assert!(u.reasons(day(100))[0].contains("B not used yet"));
}

#[test]
fn adopted_new_key_releases_the_hold() {
    let u = user([active("A", 0).used_on(101), active("B", 90).used_on(102)]);
    u.expect(&[(day(103), &["deactivate A @100"])]);
}

#[test]
fn old_key_unused_since_the_replacement_is_not_held() {
    let u = user([active("A", 0).used_on(80), active("B", 90)]);
    u.expect(&[(day(100), &["deactivate A @100"])]);
}

#[test]
fn adoption_check_can_be_turned_off() {
    let u = user([active("A", 0).used_on(101), active("B", 90)]);
    let u = u.with(|c| c.adoption_check = false);
    u.expect(&[(day(100), &["deactivate A @100"])]);
}

#[test]
fn keyrotors_own_verification_is_not_adoption() {
    let verified = day(90) + Duration::minutes(1);
    let old = || active("A", 0).used_on(101);
    let within = verified + Duration::hours(4);
    let held = &["hold(deactivate) A @114"];
    let due = &["deactivate A @100"];
    for (b, verification, want) in [
        // The STS call shows up, lagged, as B's last use: still unadopted.
        (active("B", 90).used(verified, "sts"), "B", held),
        (active("B", 90).used(within, "sts"), "B", held),
        // Later, or with another service, it is the application.
        (active("B", 90).used(within + SECOND, "sts"), "B", due),
        (active("B", 90).used(verified, "s3"), "B", due),
        // A verification of another key says nothing about B (once B's own
        // CreateDate window is over).
        (active("B", 90).used(within, "sts"), "C", due),
    ] {
        let u = user([old(), b.clone()]).verified(verification, verified);
        assert_eq!(u.plan(day(101)), want, "{b:?} verified {verification}");
    }
}

#[test]
fn an_sts_use_within_4_hours_of_creation_is_verification_not_adoption() {
    // No verification in the ledger (lost, or verification switched off):
    // IAM's CreateDate still tells keyrotor's call from the application's.
    let created = day(90);
    let held = &["hold(deactivate) A @114"];
    let due = &["deactivate A @100"];
    for (b, want) in [
        (
            active("B", 90).used(created + Duration::hours(1), "sts"),
            held,
        ),
        (
            active("B", 90).used(created + Duration::hours(4), "sts"),
            held,
        ),
        // Later than that, or another service, is the application.
        (
            active("B", 90).used(created + Duration::hours(5), "sts"),
            due,
        ),
        (
            active("B", 90).used(created + Duration::hours(1), "s3"),
            due,
        ),
    ] {
        let u = user([active("A", 0).used_on(101), b.clone()]);
        assert_eq!(u.plan(day(101)), want, "{b:?}");
    }
}

#[test]
fn an_sts_use_within_4_hours_of_creation_does_not_make_a_key_the_more_recently_used() {
    // Both keys past R. A was last used on day 5; B's only use is an STS call
    // an hour after it was created on day 10: B counts as never used, so it
    // goes first.
    let b = |hours, service| active("B", 10).used(day(10) + Duration::hours(hours), service);
    let u = user([active("A", 0).used_on(5), b(1, "sts")]);
    u.expect(&[(day(301), &["deactivate B @110"])]);
    // An STS use 5 hours after creation, or an S3 use after 1 hour, is the
    // application's, more recent than A's: A goes first.
    for b in [b(5, "sts"), b(1, "s3")] {
        let u = user([active("A", 0).used_on(5), b.clone()]);
        assert_eq!(u.plan(day(301)), ["deactivate A @100"], "{b:?}");
    }
}

#[test]
fn reactivated_key_is_held_afresh_while_its_replacement_is_unused() {
    // A was replaced by B on day 90; B was never adopted, so keyrotor switched
    // A off when the hold ran out on day 114. A person switched it back on,
    // first seen on day 116, and the application signs with it again.
    let u = user([active("A", 0).used_on(116), active("B", 90)]).reactivated("A", 116);
    u.expect(&[
        (day(116), &["hold(deactivate) A @126"]),
        (
            day(119),
            &["hold(deactivate) A @126", "warn(deactivate) A @126"],
        ),
        (
            day(126) - SECOND,
            &["hold(deactivate) A @126", "warn(deactivate) A @126"],
        ),
        // Install grace over, B still unused: the adoption hold starts afresh.
        (day(126), &["hold(deactivate) A @140"]),
        (
            day(133),
            &["hold(deactivate) A @140", "warn(deactivate) A @140"],
        ),
        (day(140), &["deactivate A @140"]),
        (day(150), &["deactivate A @140"]),
    ]);
    assert_eq!(
        u.reasons(day(116)),
        [
            "key was switched back on by a person at 2024-04-26 00:00 UTC; \
          not deactivated before 2024-05-06 (10 days from then), \
          nor before 2024-05-20 while B is still unused"
        ]
    );
    assert_eq!(
        u.reasons(day(130)),
        [
            "key was switched back on by a person at 2024-04-26 00:00 UTC \
          and B is still unused; deactivation held until 2024-05-20"
        ]
    );
    let expired = &u.reasons(day(140))[0];
    assert!(
        expired.starts_with("hold after a person switched this key back on"),
        "{expired}"
    );
    // The hold does not depend on A being used since: the person's switching
    // it on says it is needed.
    let idle = user([active("A", 0).used_on(80), active("B", 90)]).reactivated("A", 116);
    idle.expect(&[(day(130), &["hold(deactivate) A @140"])]);
    // B used only by keyrotor's verification is still unused.
    let verified = active("B", 90).used(day(90) + Duration::minutes(1), "sts");
    let u = user([active("A", 0).used_on(116), verified]).reactivated("A", 116);
    u.expect(&[(day(130), &["hold(deactivate) A @140"])]);
}

#[test]
fn reactivated_key_gets_the_install_grace_even_with_the_adoption_check_off() {
    let u = user([active("A", 0).used_on(116), active("B", 90)])
        .reactivated("A", 116)
        .with(|c| c.adoption_check = false);
    u.expect(&[
        (day(116), &["hold(deactivate) A @126"]),
        (day(126), &["deactivate A @126"]),
    ]);
    let reasons = u.reasons(day(116));
    assert!(!reasons[0].contains("nor before"), "{reasons:?}");
    let rule = &u.reasons(day(126))[0];
    assert!(
        rule.contains("10 days after a person switched A back on at 2024-04-26 00:00 UTC"),
        "{rule}"
    );
}

#[test]
fn reactivated_key_whose_replacement_is_adopted_follows_the_normal_rules_after_the_grace() {
    let u = user([active("A", 0).used_on(116), active("B", 90).used_on(110)]).reactivated("A", 116);
    u.expect(&[
        (day(116), &["hold(deactivate) A @126"]),
        (day(126), &["deactivate A @126"]),
    ]);
    // A reactivation long before the normal deadline moves nothing.
    let early =
        user([active("A", 0).used_on(99), active("B", 90).used_on(95)]).reactivated("A", 50);
    early.expect(&[
        (day(92), NONE),
        (day(93), &["warn(deactivate) A @100"]),
        (day(100), &["deactivate A @100"]),
    ]);
    // Nor does it shorten an adoption hold that runs longer.
    let held = user([active("A", 0).used_on(101), active("B", 90)]).reactivated("A", 50);
    held.expect(&[
        (day(100), &["hold(deactivate) A @114"]),
        (day(114), &["deactivate A @114"]),
    ]);
}

#[test]
fn after_a_reactivation_the_other_key_is_not_switched_off_within_the_grace_either() {
    // Two old keys: keyrotor switched B off on day 301 as the less recently
    // used; a person switched it back on (seen on day 305) and it is used
    // again, so now A is the less recently used one.
    let u = user([active("A", 0).used_on(300), active("B", 10).used_on(306)]).reactivated("B", 305);
    u.expect(&[
        (day(306), &["hold(deactivate) A @315"]),
        (
            day(308),
            &["hold(deactivate) A @315", "warn(deactivate) A @315"],
        ),
        (day(315), &["deactivate A @315"]),
    ]);
    let reason = &u.reasons(day(306))[0];
    assert!(
        reason.starts_with("B was switched back on by a person at 2024-11-01 00:00 UTC"),
        "{reason}"
    );
}

#[test]
fn when_both_keys_were_switched_back_on_the_later_decision_sets_the_grace() {
    // A switched back on (seen day 116), then B (day 118), B still unused:
    // A's hold starts afresh from the later floor (128 + 14).
    let u = user([active("A", 0).used_on(118), active("B", 90)])
        .reactivated("A", 116)
        .reactivated("B", 118);
    u.expect(&[
        (day(118), &["hold(deactivate) A @128"]),
        (day(128), &["hold(deactivate) A @142"]),
        (day(142), &["deactivate A @142"]),
    ]);
    let reason = &u.reasons(day(118))[0];
    assert!(
        reason.starts_with("B was switched back on by a person at 2024-04-28 00:00 UTC")
            && reason.ends_with("nor before 2024-05-22 while B is still unused"),
        "{reason}"
    );
}

#[test]
fn reactivated_retired_key_gets_the_install_grace_before_it_is_retired_again() {
    // A was retired on day 90 as never used; a person switched it back on.
    let u = user([active("A", 0)]).reactivated("A", 95);
    u.expect(&[
        (day(95), &["hold(retire) A @105"]),
        (day(98), &["hold(retire) A @105", "warn(retire) A @105"]),
        (day(105), &["retire A @105"]),
    ]);
    let reason = &u.reasons(day(95))[0];
    assert!(
        reason.starts_with("key was switched back on by a person at 2024-04-05 00:00 UTC"),
        "{reason}"
    );
    // Once used, it is rotated like any used key: nothing is switched off.
    let used = user([active("A", 0).used_on(96)]).reactivated("A", 95);
    used.expect(&[(day(96), &["rotate A @90"])]);
}

#[test]
fn reactivation_of_an_inactive_key_is_ignored() {
    // A stale entry (the key was switched off again) changes nothing: the
    // inactive-key rule reads `deactivated_at` only.
    let u = user([inactive("A", 0)])
        .deactivated("A", 120)
        .reactivated("A", 116);
    u.expect(&[
        (day(129), &["warn(delete) A @130"]),
        (day(130), &["delete A @130"]),
    ]);
}

#[test]
fn both_keys_past_rotation_age_least_recently_used_goes_first() {
    // First run on a user with two old keys; B (newer) was used longest ago.
    let u = user([active("A", 0).used_on(300), active("B", 10).used_on(200)]);
    u.expect(&[(day(301), &["deactivate B @110"])]);
    assert!(u.reasons(day(301))[0].contains("used less recently than A"));
    // Never used counts as least recently used.
    let u = user([active("A", 0).used_on(200), active("B", 10)]);
    u.expect(&[(day(301), &["deactivate B @110"])]);
    // A tie keeps the older.
    let u = user([active("A", 0), active("B", 10)]);
    u.expect(&[(day(301), &["deactivate A @100"])]);
    let u = user([active("A", 0).used_on(200), active("B", 10).used_on(200)]);
    u.expect(&[(day(301), &["deactivate A @100"])]);
    // Before the newer key is past R, the older one goes even if it is the
    // one in use (the newer one was used too, so it is adopted).
    let u = user([active("A", 0).used_on(130), active("B", 50).used_on(60)]);
    u.expect(&[(day(139), &["deactivate A @100"])]);
}

#[test]
fn then_the_survivor_is_rotated_once_the_slot_is_free() {
    // The sequel of the previous scenario: B deactivated on day 301.
    let u = user([active("A", 0).used_on(302), inactive("B", 10)]).deactivated("B", 301);
    u.expect(&[
        (day(302), &["hold(rotate) A @311"]),
        (day(304), &["warn(delete) B @311", "hold(rotate) A @311"]),
        (day(311), &["delete B @311", "rotate A @90"]),
    ]);
    assert!(u.reasons(day(302))[0].contains("inactive key B"));
}

#[test]
fn inactive_key_blocks_rotation_until_deletable_then_delete_comes_first() {
    let u = user([inactive("B", -20), active("A", 0).used_on(91)]).deactivated("B", 85);
    u.expect(&[
        (day(88), &["warn(delete) B @95", "warn(rotate) A @90"]),
        (day(92), &["warn(delete) B @95", "hold(rotate) A @95"]),
        (day(95), &["delete B @95", "rotate A @90"]),
    ]);
    let due = u.evaluate(day(95));
    let order: Vec<_> = due.due_now(day(95)).map(|a| a.kind).collect();
    assert_eq!(order, [ActionKind::Delete, ActionKind::Rotate]);
    // A retirement needs no slot.
    let unused = user([inactive("B", -20), active("A", 0)]).deactivated("B", 85);
    unused.expect(&[(day(92), &["warn(delete) B @95", "retire A @90"])]);
}

#[test]
fn inactive_key_is_deleted_only_after_the_recovery_grace() {
    // Old key switched off on day 0: X is long past, RG is not.
    let u = user([inactive("A", -200)]).deactivated("A", 0);
    u.expect(&[
        (day(2), NONE),
        (day(3), &["warn(delete) A @10"]),
        (day(10) - SECOND, &["warn(delete) A @10"]),
        (day(10), &["delete A @10"]),
    ]);
}

#[test]
fn key_switched_off_by_hand_gets_the_full_recovery_grace() {
    // A person switched A off at age 200; the executor recorded the first
    // sighting as its deactivation. X (110) is long past, yet A stays for the
    // recovery grace (X − D = 10 days) from then.
    let u = user([inactive("A", 0)]).deactivated("A", 200);
    u.expect(&[
        (day(200), NONE),
        (day(203) - SECOND, NONE),
        (day(203), &["warn(delete) A @210"]),
        (day(210) - SECOND, &["warn(delete) A @210"]),
        (day(210), &["delete A @210"]),
    ]);
    // The same with the application on another key.
    let u = user([inactive("A", 0), active("B", 150).used_on(205)]).deactivated("A", 200);
    u.expect(&[
        (day(209), &["warn(delete) A @210"]),
        (day(210), &["delete A @210"]),
    ]);
}

#[test]
fn inactive_key_is_deleted_only_from_deletion_age() {
    let u = user([inactive("A", 0)]).deactivated("A", 50);
    u.expect(&[
        (day(100), NONE),
        (day(109), &["warn(delete) A @110"]),
        (day(110), &["delete A @110"]),
    ]);
}

#[test]
fn unknown_deactivation_date_counts_from_first_sight() {
    let u = user([inactive("A", -300)]);
    // RG (10 days) exceeds W: nothing to say on first sight.
    u.expect(&[(day(0), NONE), (day(50), NONE)]);
    let short = u.with(|c| c.warn_within = Duration::days(10));
    short.expect(&[(day(0), &["warn(delete) A @10"])]);
    assert!(short.reasons(day(0))[0].contains("first seen inactive"));
}

#[test]
fn an_active_key_is_never_deleted() {
    for u in [
        user([active("A", -1000).used_on(-999)]),
        user([active("A", -1000), active("B", -900)]),
        user([active("A", -1000).used_on(0), active("B", -900)]).forced(),
    ] {
        for n in [0, 100, 1000] {
            let eval = u.evaluate(day(n));
            assert!(eval.actions.iter().all(|a| a.kind != ActionKind::Delete));
        }
    }
}

#[test]
fn force_rotates_a_young_unused_key_now() {
    let now = day(5) + Duration::hours(3);
    let u = user([active("A", 0)]).forced();
    assert_eq!(u.plan(now), ["rotate A @5+10800s"]);
    assert_eq!(u.reasons(now), ["force: rotate now (key is 5 days old)"]);
    let ignored = u.with(|c| c.unused_keys = UnusedKeys::Ignore);
    assert_eq!(ignored.plan(day(5)), ["rotate A @5"]);
}

#[test]
fn force_deletes_an_inactive_key_first_even_before_its_grace() {
    let u = user([active("A", 0).used_on(2), inactive("B", -20)])
        .deactivated("B", 1)
        .forced();
    assert_eq!(u.plan(day(3)), ["delete B @3", "rotate A @3"]);
    assert_eq!(u.reasons(day(3))[0], "force: frees the second key slot");
}

#[test]
fn force_keeps_a_deletion_that_is_due_anyway() {
    let u = user([active("A", 0), inactive("B", -200)])
        .deactivated("B", -50)
        .forced();
    assert_eq!(u.plan(day(3)), ["delete B @-40", "rotate A @3"]);
}

#[test]
fn force_with_two_active_keys_never_creates_a_third() {
    let u = user([active("A", 0).used_on(95), active("B", 90).used_on(96)]).forced();
    u.expect(&[
        (day(95), &["hold(rotate) B @95", "warn(deactivate) A @100"]),
        (day(100), &["hold(rotate) B @100", "deactivate A @100"]),
    ]);
    let reasons = u.reasons(day(95));
    assert_eq!(
        reasons[0],
        "user already has two active keys; cannot create a third"
    );
}

#[test]
fn force_without_an_active_key_rotates_nothing() {
    let u = user([inactive("A", 0)]).deactivated("A", 5).forced();
    u.expect(&[(day(6), NONE), (day(110), &["delete A @110"])]);
}

#[test]
fn more_than_two_keys_are_handled_as_the_newest_pair() {
    let u = user([active("A", 0), active("B", 10), active("C", 95).used_on(96)]);
    assert_eq!(u.plan(day(105)), ["warn(deactivate) B @110"]);
}

#[test]
fn deadlines_never_move_earlier_as_time_passes() {
    let users = [
        user([active("A", 0).used_on(1)]),
        user([active("A", 0)]),
        user([active("A", 0).used_on(101), active("B", 90)]),
        user([active("A", 0).used_on(130), active("B", 50).used_on(60)]),
        user([inactive("B", -20), active("A", 0).used_on(91)]).deactivated("B", 85),
        user([inactive("A", -300)]),
        user([active("A", 0).used_on(300), active("B", 10).used_on(200)]),
        user([active("A", 0).used_on(116), active("B", 90)]).reactivated("A", 116),
        user([active("A", 0).used_on(300), active("B", 10).used_on(306)]).reactivated("B", 305),
        user([active("A", 0)]).reactivated("A", 95),
    ];
    for u in users {
        let mut seen = BTreeMap::new();
        for hour in 0..400 * 24 {
            for a in u.evaluate(day(0) + Duration::hours(hour)).actions {
                let slot = (a.kind, a.milestone, a.key_id.clone());
                let before = seen.insert(slot, a.due).unwrap_or(a.due);
                assert!(a.due >= before, "{} moved earlier", line(&a));
            }
        }
    }
}

#[test]
fn evaluations_are_well_formed() {
    let u = user([active("A", 0).used_on(101), active("B", 90)]);
    for n in 0..200 {
        let now = day(n);
        for a in u.evaluate(now).actions {
            // Future actions appear only as warnings, within W.
            if a.due > now {
                assert!(
                    matches!(a.kind, ActionKind::Warn | ActionKind::Hold),
                    "{a:?}"
                );
            }
            if a.kind == ActionKind::Warn {
                assert!(a.due > now && a.due - now <= Duration::days(7));
            }
            assert_eq!(
                a.milestone.is_some(),
                matches!(a.kind, ActionKind::Warn | ActionKind::Hold)
            );
        }
    }
}

#[test]
fn due_now_lists_only_due_iam_changes_in_order() {
    let u = user([inactive("B", -20), active("A", 0).used_on(91)]).deactivated("B", 85);
    let eval = u.evaluate(day(92));
    assert_eq!(eval.due_now(day(92)).count(), 0);
    let eval = u.evaluate(day(95));
    let due: Vec<_> = eval.due_now(day(95)).map(line).collect();
    assert_eq!(due, ["delete B @95", "rotate A @90"]);
    // A plan computed earlier does not run before its time.
    assert_eq!(eval.due_now(day(94)).count(), 1);
}

#[test]
fn warning_id_is_one_per_key_and_milestone() {
    let u = user([active("A", 0).used_on(101), active("B", 90)]);
    let early = &u.evaluate(day(95)).actions[0];
    let late = &u.evaluate(day(110)).actions[1];
    assert_eq!(early.warning_id(), "A:deactivate");
    assert_eq!(late.warning_id(), early.warning_id());
    assert!(!early.changes_iam());
    let deactivate = &u.evaluate(day(114)).actions[0];
    assert!(deactivate.changes_iam());
    assert_eq!(deactivate.warning_id(), "A:deactivate");
}

#[test]
fn action_kinds_and_unused_keys_spell_lowercase() {
    for kind in [
        ActionKind::Rotate,
        ActionKind::Deactivate,
        ActionKind::Delete,
        ActionKind::Retire,
        ActionKind::Warn,
        ActionKind::Hold,
    ] {
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
        assert_eq!(serde_json::from_str::<ActionKind>(&json).unwrap(), kind);
    }
    for v in [UnusedKeys::Retire, UnusedKeys::Rotate, UnusedKeys::Ignore] {
        assert_eq!(v.as_str().parse::<UnusedKeys>(), Ok(v));
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, format!("\"{}\"", v.as_str()));
    }
    let err = "Retire".parse::<UnusedKeys>().unwrap_err();
    assert!(err.contains("retire, rotate, ignore"), "{err}");
    assert_eq!(UnusedKeys::default(), UnusedKeys::Retire);
}

#[test]
fn default_config_is_the_patterns() {
    let c = PolicyConfig::default();
    assert_eq!(c.rotate_after, Duration::days(90));
    assert_eq!(c.deactivate_after, Duration::days(100));
    assert_eq!(c.delete_after, Duration::days(110));
    assert_eq!(c.warn_within, Duration::days(7));
    assert_eq!(c.max_hold, Duration::days(14));
    assert_eq!(c.install_grace(), Duration::days(10));
    assert_eq!(c.recovery_grace(), Duration::days(10));
    assert!(c.adoption_check);
    assert_eq!(VERIFICATION_USE_WINDOW, Duration::hours(4));
}

#[test]
fn planned_actions_serialise_for_plan_output() {
    let eval = user([active("A", 0).used_on(1)]).evaluate(day(95));
    let json = serde_json::to_value(&eval).unwrap();
    assert_eq!(json["actions"][0]["kind"], "rotate");
    assert_eq!(json["actions"][0]["key_id"], "A");
    let back: Evaluation = serde_json::from_value(json).unwrap();
    assert_eq!(back, eval);
}

#[test]
fn a_young_single_key_does_not_need_its_last_use() {
    let u = user([active("A", 0)]);
    let matters = |u: &User, on: i64| {
        let facts = UserFacts {
            keys: &u.keys,
            history: &u.history,
            exempt: u.exempt,
            force: u.force,
        };
        last_use_matters(&u.config, &facts, day(on))
    };
    // Far from any milestone nothing is planned, used or not.
    assert!(!matters(&u, 30));
    // From the warning window on, an unused key is retired instead of
    // rotated (the default), so its last use decides.
    let warn_from = 90 - u.config.warn_within.num_days();
    assert!(matters(&u, warn_from));
    assert!(matters(&u, 95));
    // Unused keys rotated like used ones: last use never decides.
    let rotate_all = user([active("A", 0)]).with(|c| c.unused_keys = UnusedKeys::Rotate);
    assert!(!matters(&rotate_all, 95));
    // Two keys: which one the application relies on always matters.
    let two = user([active("A", 0), active("B", 80)]);
    assert!(matters(&two, 30));
    // A lone inactive key is deleted on age alone.
    assert!(!matters(
        &user([inactive("A", 0)]).deactivated("A", 100),
        120
    ));
}

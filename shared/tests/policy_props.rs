//! Properties of the rotation policy over simulated time: random users and
//! settings, a simulated IAM that carries out every due action, an
//! application that switches to new keys some days after they appear, and a
//! person who sometimes switches a key keyrotor switched off back on.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyrotor_shared::domain::{KeyHistory, KeyState, KeyStatus, LastUsed, Verification};
use keyrotor_shared::policy::{
    evaluate, last_use_matters, ActionKind, PlannedAction, PolicyConfig, UnusedKeys, UserFacts,
};
use proptest::prelude::*;

const DAYS: i64 = 300;

/// A key as it exists when the simulation starts (ages in days before it).
#[derive(Debug, Clone)]
struct KeyInit {
    age: i64,
    active: bool,
    used_ago: Option<i64>,
    /// For an inactive key: whether the ledger knows when it was switched off.
    deactivated_ago: Option<i64>,
}

#[derive(Debug, Clone)]
struct Scenario {
    config: PolicyConfig,
    keys: Vec<KeyInit>,
    /// Whether an application uses the user's keys at all.
    app: bool,
    /// Days the application takes to adopt each new key, in turn (`None`:
    /// never adopts it).
    adoption_delays: Vec<Option<i64>>,
    /// Whether keyrotor verifies new keys (an STS use shows on the new key).
    verify: bool,
    /// Days on which an operator forces a rotation.
    force_days: BTreeSet<i64>,
    /// Days after keyrotor switches a key off until a person switches it back
    /// on, for each key keyrotor switches off, in turn (`None`: left off).
    reactivation_delays: Vec<Option<i64>>,
}

fn days(n: i64) -> Duration {
    Duration::days(n)
}

fn config() -> impl Strategy<Value = PolicyConfig> {
    let unused = prop_oneof![
        Just(UnusedKeys::Retire),
        Just(UnusedKeys::Rotate),
        Just(UnusedKeys::Ignore)
    ];
    (
        1i64..150,
        1i64..60,
        1i64..60,
        0i64..15,
        0i64..30,
        unused,
        any::<bool>(),
    )
        .prop_map(
            |(r, ig, rg, w, h, unused_keys, adoption_check)| PolicyConfig {
                rotate_after: days(r),
                deactivate_after: days(r + ig),
                delete_after: days(r + ig + rg),
                warn_within: days(w),
                max_hold: days(h),
                unused_keys,
                adoption_check,
            },
        )
}

fn key_init() -> impl Strategy<Value = KeyInit> {
    let ago = proptest::option::of(0i64..=400);
    (0i64..=400, any::<bool>(), ago.clone(), ago).prop_map(|(age, active, used, deact)| KeyInit {
        age,
        active,
        used_ago: used.map(|u| u.min(age)),
        deactivated_ago: deact.map(|d| d.min(age)),
    })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let delay = prop_oneof![4 => (0i64..30).prop_map(Some), 1 => Just(None)];
    let reactivation = prop_oneof![1 => (0i64..20).prop_map(Some), 1 => Just(None)];
    (
        config(),
        prop::collection::vec(key_init(), 0..=2),
        any::<bool>(),
        prop::collection::vec(delay, 1..6),
        any::<bool>(),
        prop::collection::btree_set(0..DAYS, 0..3),
        prop::collection::vec(reactivation, 1..4),
    )
        .prop_map(
            |(config, keys, app, adoption_delays, verify, force_days, reactivation_delays)| {
                Scenario {
                    config,
                    keys,
                    app,
                    adoption_delays,
                    verify,
                    force_days,
                    reactivation_delays,
                }
            },
        )
}

/// IAM, the ledger and the application, for one user.
struct World {
    keys: Vec<KeyState>,
    history: KeyHistory,
    next_id: usize,
    /// Keys the application has switched to.
    adopted: BTreeSet<String>,
    /// Keys the application will switch to, and on which day.
    adopting: Vec<(String, i64)>,
    new_keys: usize,
    /// Keys a person will switch back on, and on which day.
    reactivating: Vec<(String, i64)>,
    /// Keys keyrotor has switched off so far.
    switched_off: usize,
    /// How many times a person switched a key back on.
    reactivations: usize,
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

fn used(at: DateTime<Utc>, service: &str) -> Option<LastUsed> {
    let service = Some(service.to_owned());
    Some(LastUsed { at, service })
}

impl World {
    fn new(s: &Scenario) -> Self {
        let mut world = World {
            keys: Vec::new(),
            history: KeyHistory::default(),
            next_id: 0,
            adopted: BTreeSet::new(),
            adopting: Vec::new(),
            new_keys: 0,
            reactivating: Vec::new(),
            switched_off: 0,
            reactivations: 0,
        };
        for k in &s.keys {
            let id = world.key_id();
            let status = if k.active {
                KeyStatus::Active
            } else {
                KeyStatus::Inactive
            };
            if let (false, Some(ago)) = (k.active, k.deactivated_ago) {
                world
                    .history
                    .deactivated_at
                    .insert(id.clone(), start() - days(ago));
            }
            if s.app && k.active && k.used_ago.is_some() {
                world.adopted.insert(id.clone());
            }
            world.keys.push(KeyState {
                key_id: id,
                status,
                created: start() - days(k.age),
                last_used: k
                    .used_ago
                    .map(|ago| start() - days(ago))
                    .and_then(|at| used(at, "s3")),
            });
        }
        world
    }

    fn key_id(&mut self) -> String {
        self.next_id += 1;
        format!("AKIA{:04}", self.next_id)
    }

    fn key(&mut self, id: &str) -> &mut KeyState {
        let found = self.keys.iter_mut().find(|k| k.key_id == id);
        found.unwrap_or_else(|| panic!("action on missing key {id}"))
    }

    fn active_count(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count()
    }

    /// Carries out one due action as IAM would, checking the policy's
    /// promises along the way.
    fn apply(&mut self, s: &Scenario, a: &PlannedAction, now: DateTime<Utc>, today: i64) {
        match a.kind {
            ActionKind::Rotate => {
                assert_eq!(self.key(&a.key_id).status, KeyStatus::Active);
                assert!(self.keys.len() < 2, "rotate with two keys: {a:?}");
                let id = self.key_id();
                let mut key = KeyState {
                    key_id: id.clone(),
                    status: KeyStatus::Active,
                    created: now,
                    last_used: None,
                };
                if s.verify {
                    key.last_used = used(now + Duration::minutes(1), "sts");
                    let key_id = id.clone();
                    self.history.verification = Some(Verification { key_id, at: now });
                }
                self.keys.push(key);
                let delay = s.adoption_delays[self.new_keys % s.adoption_delays.len()];
                self.new_keys += 1;
                if let (true, Some(delay)) = (s.app, delay) {
                    self.adopting.push((id, today + delay));
                }
            }
            ActionKind::Deactivate | ActionKind::Retire => {
                let key = self.key(&a.key_id);
                assert_eq!(key.status, KeyStatus::Active, "{a:?}");
                key.status = KeyStatus::Inactive;
                self.history.deactivated_at.insert(a.key_id.clone(), now);
                // The executor forgets an earlier reactivation.
                self.history.reactivated_at.remove(&a.key_id);
                let delays = &s.reactivation_delays;
                if let Some(delay) = delays[self.switched_off % delays.len()] {
                    self.reactivating.push((a.key_id.clone(), today + delay));
                }
                self.switched_off += 1;
            }
            ActionKind::Delete => {
                assert_eq!(self.key(&a.key_id).status, KeyStatus::Inactive, "{a:?}");
                self.keys.retain(|k| k.key_id != a.key_id);
                self.history.deactivated_at.remove(&a.key_id);
                self.history.reactivated_at.remove(&a.key_id);
            }
            ActionKind::Warn | ActionKind::Hold => unreachable!("not an IAM change"),
        }
    }

    /// The application: switches to keys it was given, then signs with the
    /// newest active key it knows.
    fn application(&mut self, now: DateTime<Utc>, today: i64) {
        let ready: Vec<String> = self
            .adopting
            .iter()
            .filter(|(_, on)| *on <= today)
            .map(|(id, _)| id.clone())
            .collect();
        self.adopting.retain(|(_, on)| *on > today);
        self.adopted.extend(ready);
        let adopted = &self.adopted;
        let newest = self
            .keys
            .iter_mut()
            .filter(|k| k.status == KeyStatus::Active && adopted.contains(&k.key_id))
            .max_by_key(|k| k.created);
        if let Some(key) = newest {
            key.last_used = used(now, "s3");
        }
    }

    /// A person switches back on the keys they meant to, if still there and
    /// off; then the executor records it as it does before evaluating: an
    /// active key with a deactivation date was switched back on.
    /// Returns the keys switched back on.
    fn reactivations(&mut self, now: DateTime<Utc>, today: i64) -> Vec<String> {
        let ready: Vec<String> = self
            .reactivating
            .iter()
            .filter(|(_, on)| *on <= today)
            .map(|(id, _)| id.clone())
            .collect();
        self.reactivating.retain(|(_, on)| *on > today);
        let mut switched_on = Vec::new();
        for id in ready {
            if let Some(k) = self.keys.iter_mut().find(|k| k.key_id == id) {
                if k.status == KeyStatus::Inactive {
                    k.status = KeyStatus::Active;
                    self.reactivations += 1;
                    switched_on.push(id);
                }
            }
        }
        for k in &self.keys {
            if k.status == KeyStatus::Active
                && self.history.deactivated_at.remove(&k.key_id).is_some()
            {
                self.history.reactivated_at.insert(k.key_id.clone(), now);
            }
        }
        switched_on
    }

    /// Records inactive keys the ledger has not seen yet, as the worker does.
    fn record_first_sightings(&mut self, now: DateTime<Utc>) {
        for k in &self.keys {
            if k.status == KeyStatus::Inactive {
                self.history
                    .deactivated_at
                    .entry(k.key_id.clone())
                    .or_insert(now);
            }
        }
    }
}

/// Simulates `DAYS` days; returns how many times a person switched a key
/// back on.
fn simulate(s: &Scenario) -> Result<usize, TestCaseError> {
    let mut world = World::new(s);
    let mut last_due: BTreeMap<(ActionKind, Option<ActionKind>, String), DateTime<Utc>> =
        BTreeMap::new();
    for today in 0..DAYS {
        let now = start() + days(today);
        if !world.reactivations(now, today).is_empty() {
            // A person's decision starts a new course: what was announced
            // about switching the user's keys off (e.g. a hold on the other
            // key that adoption cut short while this one was the candidate) is
            // over. The deadlines from now on are checked against the
            // reactivation below.
            let switching_off = |k: Option<ActionKind>| {
                matches!(k, Some(ActionKind::Deactivate | ActionKind::Retire))
            };
            last_due.retain(|(kind, milestone, _), _| {
                !(switching_off(Some(*kind)) || switching_off(*milestone))
            });
        }
        let force = s.force_days.contains(&today);
        let facts = UserFacts {
            keys: &world.keys,
            history: &world.history,
            exempt: None,
            force,
        };
        let eval = evaluate(&s.config, &facts, now);
        prop_assert!(!eval.exempt);
        // The executor skips `GetAccessKeyLastUsed` when the policy says
        // last use cannot matter: then the plan without it is the plan.
        let unread: Vec<KeyState> = world
            .keys
            .iter()
            .map(|k| KeyState {
                last_used: None,
                ..k.clone()
            })
            .collect();
        let without = UserFacts {
            keys: &unread,
            ..facts
        };
        if !last_use_matters(&s.config, &without, now) {
            prop_assert_eq!(&evaluate(&s.config, &without, now), &eval, "day {}", today);
        }

        for a in &eval.actions {
            // Later actions show only as warnings (within W) and holds.
            if a.due > now {
                prop_assert!(
                    matches!(a.kind, ActionKind::Warn | ActionKind::Hold),
                    "{a:?}"
                );
            }
            if a.kind == ActionKind::Warn {
                prop_assert!(a.due > now && now >= a.due - s.config.warn_within, "{a:?}");
            }
            if !force {
                let slot = (a.kind, a.milestone, a.key_id.clone());
                if let Some(before) = last_due.insert(slot, a.due) {
                    prop_assert!(a.due >= before, "day {today}: {a:?} was due {before}");
                }
            }
        }

        let day_ago = now - days(1);
        let in_use = world.keys.iter().any(|k| {
            k.status == KeyStatus::Active && k.last_used.as_ref().is_some_and(|u| u.at >= day_ago)
        });
        // The key the application signs with is switched off only when the
        // application has used the replacement, the adoption check is off,
        // or the hold has run out.
        let app_key = world
            .keys
            .iter()
            .find(|k| {
                k.status == KeyStatus::Active
                    && k.last_used
                        .as_ref()
                        .is_some_and(|u| u.at >= day_ago && u.service.as_deref() == Some("s3"))
            })
            .cloned();
        for a in eval.due_now(now) {
            if let (ActionKind::Deactivate, Some(app)) = (a.kind, &app_key) {
                if a.key_id == app.key_id {
                    let other = world
                        .keys
                        .iter()
                        .find(|k| k.key_id != app.key_id && k.status == KeyStatus::Active);
                    if let Some(other) = other {
                        let adopted = other
                            .last_used
                            .as_ref()
                            .is_some_and(|u| u.service.as_deref() == Some("s3"));
                        let due = (app.created + s.config.deactivate_after)
                            .max(other.created + s.config.install_grace());
                        prop_assert!(
                            !s.config.adoption_check
                                || adopted
                                || now >= due + s.config.max_hold
                                || force,
                            "day {today}: the key in use was switched off before the hold ran out: {a:?}"
                        );
                    }
                }
            }
        }
        // A person's decision to switch a key back on gets at least the install
        // grace: no key of the user is switched off before it ends, and while
        // the reactivated key's replacement is unused (with the adoption check
        // on), not before the hold that starts afresh from it has run out.
        for a in eval.due_now(now) {
            if !matches!(a.kind, ActionKind::Deactivate | ActionKind::Retire) {
                continue;
            }
            for (id, &at) in &world.history.reactivated_at {
                let active = world
                    .keys
                    .iter()
                    .any(|k| &k.key_id == id && k.status == KeyStatus::Active);
                if !active {
                    continue;
                }
                prop_assert!(
                    now >= at + s.config.install_grace(),
                    "day {today}: {a:?} within the install grace after {id} was switched back on at {at}"
                );
                let unused_replacement = world.keys.iter().any(|k| {
                    &k.key_id != id
                        && k.status == KeyStatus::Active
                        && k.last_used
                            .as_ref()
                            .is_none_or(|u| u.service.as_deref() == Some("sts"))
                });
                if a.key_id == *id && unused_replacement && s.config.adoption_check {
                    prop_assert!(
                        now >= at + s.config.install_grace() + s.config.max_hold,
                        "day {today}: {a:?} before the hold after its reactivation at {at} ran out"
                    );
                }
            }
        }
        for a in eval.due_now(now) {
            world.apply(s, a, now, today);
        }
        prop_assert!(world.keys.len() <= 2);
        if in_use {
            prop_assert!(
                world.active_count() >= 1,
                "day {today}: key in use switched off"
            );
        }
        world.record_first_sightings(now);
        if s.app {
            world.application(now, today);
        }
    }
    Ok(world.reactivations)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simulated_lifecycles_keep_the_policys_promises(s in scenario()) {
        simulate(&s)?;
    }
}

#[test]
fn the_simulation_exercises_reactivations() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let mut with_reactivation = 0;
    for _ in 0..200 {
        let s = scenario().new_tree(&mut runner).unwrap().current();
        if simulate(&s).unwrap() > 0 {
            with_reactivation += 1;
        }
    }
    assert!(with_reactivation >= 20, "{with_reactivation} of 200");
}

/// The due actions of a lifecycle, day by day, and the days a person switched
/// a key back on.
fn lifecycle(s: &Scenario, until: i64) -> Vec<String> {
    let mut world = World::new(s);
    let mut log = Vec::new();
    for today in 0..until {
        let now = start() + days(today);
        for id in world.reactivations(now, today) {
            log.push(format!("{today}: a person switches {id} back on"));
        }
        let facts = UserFacts {
            keys: &world.keys,
            history: &world.history,
            exempt: None,
            force: false,
        };
        let eval = evaluate(&s.config, &facts, now);
        for a in eval.due_now(now) {
            log.push(format!("{today}: {} {}", a.kind, a.key_id));
            world.apply(s, a, now, today);
        }
        world.record_first_sightings(now);
        world.application(now, today);
    }
    log
}

fn one_key_in_use(adoption_delay: Option<i64>, reactivation_delays: Vec<Option<i64>>) -> Scenario {
    Scenario {
        config: PolicyConfig::default(),
        keys: vec![KeyInit {
            age: 0,
            active: true,
            used_ago: Some(0),
            deactivated_ago: None,
        }],
        app: true,
        adoption_delays: vec![adoption_delay],
        verify: true,
        force_days: BTreeSet::new(),
        reactivation_delays,
    }
}

/// A fixed lifecycle with the defaults, as a reader would trace it: rotate at
/// 90, switch over at 95, deactivate at 100, delete at 110, rotate at 180.
#[test]
fn default_lifecycle_follows_the_pattern() {
    let s = one_key_in_use(Some(5), vec![None]);
    assert_eq!(
        lifecycle(&s, 200),
        [
            "90: rotate AKIA0001",
            "100: deactivate AKIA0001",
            "110: delete AKIA0001",
            "180: rotate AKIA0002",
            "190: deactivate AKIA0002",
        ]
    );
}

/// The application never adopts the new key, so keyrotor switches the old one
/// off when the hold runs out (114); a person switches it back on two days
/// later. It gets the install grace and a fresh hold (116 + 10 + 14 = 140).
/// Without verification the new key was never used: it is retired at 180,
/// switched back on at 182, and retired again only after the install grace
/// (192).
#[test]
fn reactivated_keys_get_the_install_grace_and_a_fresh_hold() {
    let mut s = one_key_in_use(None, vec![Some(2), None]);
    s.verify = false;
    assert_eq!(
        lifecycle(&s, 220),
        [
            "90: rotate AKIA0001",
            "114: deactivate AKIA0001",
            "116: a person switches AKIA0001 back on",
            "140: deactivate AKIA0001",
            "150: delete AKIA0001",
            "180: retire AKIA0002",
            "182: a person switches AKIA0002 back on",
            "192: retire AKIA0002",
            "202: delete AKIA0002",
        ]
    );
    // With verification, the new key counts as used and is rotated at 180;
    // its replacement is not adopted either, and it is switched off at 190
    // (it was not in use since), back on at 192, and held unused until
    // 192 + 10 + 14.
    s.verify = true;
    assert_eq!(
        lifecycle(&s, 220)[5..],
        [
            "180: rotate AKIA0002",
            "190: deactivate AKIA0002",
            "192: a person switches AKIA0002 back on",
            "216: deactivate AKIA0002",
        ]
    );
}

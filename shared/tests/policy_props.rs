//! Properties of the rotation policy over simulated time: random users and
//! settings, a simulated IAM that carries out every due action, and an
//! application that switches to new keys some days after they appear.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use keyrotor_shared::domain::{KeyHistory, KeyState, KeyStatus, LastUsed, Verification};
use keyrotor_shared::policy::{
    evaluate, ActionKind, PlannedAction, PolicyConfig, UnusedKeys, UserFacts,
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
    (
        config(),
        prop::collection::vec(key_init(), 0..=2),
        any::<bool>(),
        prop::collection::vec(delay, 1..6),
        any::<bool>(),
        prop::collection::btree_set(0..DAYS, 0..3),
    )
        .prop_map(
            |(config, keys, app, adoption_delays, verify, force_days)| Scenario {
                config,
                keys,
                app,
                adoption_delays,
                verify,
                force_days,
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
            }
            ActionKind::Delete => {
                assert_eq!(self.key(&a.key_id).status, KeyStatus::Inactive, "{a:?}");
                self.keys.retain(|k| k.key_id != a.key_id);
                self.history.deactivated_at.remove(&a.key_id);
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

fn simulate(s: &Scenario) -> Result<(), TestCaseError> {
    let mut world = World::new(s);
    let mut last_due: BTreeMap<(ActionKind, Option<ActionKind>, String), DateTime<Utc>> =
        BTreeMap::new();
    for today in 0..DAYS {
        let now = start() + days(today);
        let force = s.force_days.contains(&today);
        let facts = UserFacts {
            keys: &world.keys,
            history: &world.history,
            exempt: None,
            force,
        };
        let eval = evaluate(&s.config, &facts, now);
        prop_assert!(!eval.exempt);

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
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn simulated_lifecycles_keep_the_policys_promises(s in scenario()) {
        simulate(&s)?;
    }
}

/// A fixed lifecycle with the defaults, as a reader would trace it: rotate at
/// 90, switch over at 95, deactivate at 100, delete at 110, rotate at 180.
#[test]
fn default_lifecycle_follows_the_pattern() {
    let s = Scenario {
        config: PolicyConfig::default(),
        keys: vec![KeyInit {
            age: 0,
            active: true,
            used_ago: Some(0),
            deactivated_ago: None,
        }],
        app: true,
        adoption_delays: vec![Some(5)],
        verify: true,
        force_days: BTreeSet::new(),
    };
    let mut world = World::new(&s);
    let mut log = Vec::new();
    for today in 0..200 {
        let now = start() + days(today);
        let facts = UserFacts {
            keys: &world.keys,
            history: &world.history,
            exempt: None,
            force: false,
        };
        let eval = evaluate(&s.config, &facts, now);
        for a in eval.due_now(now) {
            log.push(format!("{today}: {} {}", a.kind, a.key_id));
            world.apply(&s, a, now, today);
        }
        world.record_first_sightings(now);
        world.application(now, today);
    }
    assert_eq!(
        log,
        [
            "90: rotate AKIA0001",
            "100: deactivate AKIA0001",
            "110: delete AKIA0001",
            "180: rotate AKIA0002",
            "190: deactivate AKIA0002",
        ]
    );
}

//! The simulated Organization: accounts, their IAM users and keys, and
//! their secrets. Only identities and dates are kept; a secret value is
//! never stored (the simulator has no use for it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keyrotor_shared::domain::{KeyStatus, LastUsed};

/// One access key.
#[derive(Debug, Clone)]
pub struct Key {
    /// Its id.
    pub key_id: String,
    /// Active or inactive.
    pub status: KeyStatus,
    /// `CreateDate`.
    pub created: DateTime<Utc>,
    /// Its last use.
    pub last_used: Option<LastUsed>,
    /// Simulated time from which STS accepts it (IAM's propagation).
    pub usable_from: Duration,
}

/// One IAM user.
#[derive(Debug, Clone, Default)]
pub struct User {
    /// Its keys, oldest first.
    pub keys: Vec<Key>,
    /// Managed policies attached.
    pub policies: BTreeSet<String>,
    /// `CreateAccessKey` answers during the simulation.
    pub keys_created: u32,
    /// The ids of the keys created during the simulation.
    pub created_ids: BTreeSet<String>,
    /// Keys created during the simulation and deleted again (orphans of a
    /// lost answer, cleaned up by recovery).
    pub orphans_deleted: u32,
}

/// One member account.
#[derive(Debug, Clone, Default)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its users.
    pub users: BTreeMap<String, User>,
    /// Its secrets: name → version ids.
    pub secrets: HashMap<String, Vec<String>>,
}

/// The whole Organization.
#[derive(Debug, Default)]
pub struct World {
    /// Accounts by id.
    pub accounts: BTreeMap<String, Account>,
    /// Key id → (account, user).
    pub key_index: HashMap<String, (String, String)>,
    next_key: u64,
}

/// The shape of the Organization to build.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Accounts.
    pub accounts: usize,
    /// Users in each account.
    pub users_per_account: usize,
    /// Users of the first account instead (a skewed Organization).
    pub skew_users: Option<usize>,
    /// Fraction of users whose key is due for rotation.
    pub due: f64,
}

impl World {
    /// Builds `shape` at `as_of`: every user has one active key, used
    /// yesterday; a `due` fraction of them (chosen by a fixed hash) 95 days
    /// old, the rest between 1 and 80 days.
    pub fn build(shape: &Shape, as_of: DateTime<Utc>) -> World {
        let mut world = World::default();
        let mut n = 0u64;
        for a in 0..shape.accounts {
            let id = account_id(a);
            let users = match (a, shape.skew_users) {
                (0, Some(skew)) => skew,
                _ => shape.users_per_account,
            };
            let mut account = Account {
                name: format!("sim-{a:05}"),
                ..Account::default()
            };
            for u in 0..users {
                n += 1;
                // Scattered by a fixed hash, not evenly spaced: a regular
                // pattern would line up with the round robin of the groups.
                let due = (splitmix64(n) as f64 / u64::MAX as f64) < shape.due;
                let age_days = if due { 95 } else { 1 + (n % 80) as i64 };
                let key_id = world.new_key_id();
                world
                    .key_index
                    .insert(key_id.clone(), (id.clone(), user_name(u)));
                account.users.insert(
                    user_name(u),
                    User {
                        keys: vec![Key {
                            key_id,
                            status: KeyStatus::Active,
                            created: as_of - chrono::Duration::days(age_days),
                            last_used: Some(LastUsed {
                                at: as_of - chrono::Duration::days(1),
                                service: Some("s3".into()),
                            }),
                            usable_from: Duration::ZERO,
                        }],
                        ..User::default()
                    },
                );
            }
            world.accounts.insert(id, account);
        }
        world
    }

    /// A fresh, unique key id.
    pub fn new_key_id(&mut self) -> String {
        self.next_key += 1;
        format!("AKIASIM{:013}", self.next_key)
    }

    /// Users in all accounts.
    pub fn users(&self) -> usize {
        self.accounts.values().map(|a| a.users.len()).sum()
    }

    /// Users whose key is due at `as_of` (90 days).
    pub fn due_users(&self, as_of: DateTime<Utc>) -> usize {
        let due_before = as_of - chrono::Duration::days(90);
        self.accounts
            .values()
            .flat_map(|a| a.users.values())
            .filter(|u| u.keys.iter().any(|k| k.created <= due_before))
            .count()
    }
}

/// SplitMix64: a fixed, well-mixed hash of `n`.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The id of the `a`-th account.
pub fn account_id(a: usize) -> String {
    format!("{:012}", 200_000_000_000u64 + a as u64)
}

/// The name of the `u`-th user of an account.
pub fn user_name(u: usize) -> String {
    format!("svc{u:05}")
}

//! The policy's knobs: the ages R, D, X, the warning window W, the adoption
//! hold and what to do with keys nobody uses.

use std::fmt;
use std::str::FromStr;

use chrono::Duration;
use serde::{Deserialize, Serialize};

/// What to do with a single active key that reached the rotation age without
/// ever being used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnusedKeys {
    /// Deactivate it (and delete it a recovery grace later) without creating a
    /// replacement nobody asked for. The default.
    #[default]
    Retire,
    /// Rotate it like a used key.
    Rotate,
    /// Leave it alone.
    Ignore,
}

impl UnusedKeys {
    /// Every value, in the order the error message lists them.
    const ALL: [UnusedKeys; 3] = [UnusedKeys::Retire, UnusedKeys::Rotate, UnusedKeys::Ignore];

    /// The setting's spelling (`retire`, `rotate`, `ignore`).
    pub fn as_str(self) -> &'static str {
        match self {
            UnusedKeys::Retire => "retire",
            UnusedKeys::Rotate => "rotate",
            UnusedKeys::Ignore => "ignore",
        }
    }
}

impl fmt::Display for UnusedKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnusedKeys {
    type Err = String;

    /// Parses the exact lowercase spelling; the error lists the valid values so
    /// a bad setting can be fixed from the message alone.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("invalid unused-keys value {s:?}: expected one of retire, rotate, ignore")
            })
    }
}

/// The rotation policy's settings (DESIGN §4). Expected to satisfy
/// `0 < R < D < X` and `W ≥ 0`; the configuration module checks that at start.
///
/// Not serialisable on purpose: chrono writes a `Duration` as a
/// `(seconds, nanos)` pair, which is no format for a settings file; the
/// configuration module reads days from `KEYROTOR_*_DAYS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// R: age at which a used key is rotated. Default 90 days.
    pub rotate_after: Duration,
    /// D: age at which the replaced key is deactivated. Default 100 days.
    pub deactivate_after: Duration,
    /// X: age at which an inactive key may be deleted. Default 110 days.
    pub delete_after: Duration,
    /// W: how long before a deadline its warning is issued. Default 7 days.
    pub warn_within: Duration,
    /// How long a deactivation may be held back while the application has not
    /// adopted the new key. Default 14 days.
    pub max_hold: Duration,
    /// What to do with keys that reached R without ever being used.
    pub unused_keys: UnusedKeys,
    /// Whether to hold deactivation while the new key is unused (see
    /// [`max_hold`](Self::max_hold)). Default on.
    pub adoption_check: bool,
}

impl Default for PolicyConfig {
    /// The defaults of the AWS pattern: rotate at 90 days, deactivate at 100,
    /// delete at 110, warn 7 days ahead, hold at most 14 days.
    fn default() -> Self {
        Self {
            rotate_after: Duration::days(90),
            deactivate_after: Duration::days(100),
            delete_after: Duration::days(110),
            warn_within: Duration::days(7),
            max_hold: Duration::days(14),
            unused_keys: UnusedKeys::default(),
            adoption_check: true,
        }
    }
}

impl PolicyConfig {
    /// Install grace, D − R: the time the application gets to switch to a new
    /// key before the old one is deactivated.
    pub fn install_grace(&self) -> Duration {
        self.deactivate_after - self.rotate_after
    }

    /// Recovery grace, X − D: the time a deactivated key stays around (and can
    /// be switched back on) before it is deleted.
    pub fn recovery_grace(&self) -> Duration {
        self.delete_after - self.deactivate_after
    }
}

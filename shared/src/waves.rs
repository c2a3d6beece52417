//! Staged rollout (`KEYROTOR_WAVES`): the waves, which wave an account is
//! in, and when a wave is released. Pure: the decisions and the soak clock
//! live in the table (`store::waves`), the OU lookups in the producer.
//!
//! An enforce run enforces only the accounts of released waves; the others
//! are evaluated in audit mode, so their owners are warned ahead. Wave 1 is
//! released from the start. Wave N+1 is released once wave N has run clean
//! in enforce mode for `KEYROTOR_WAVE_SOAK_DAYS`: no `failed` result and no
//! adoption hold that ran out since its first enforce run or its last
//! trouble, whichever is later. An operator may release or halt a wave by
//! hand; a halted wave is audited, and holds every later wave back.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::AccountId;

/// What a wave holds: an account, or an OU with every account under it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// One account.
    Account(AccountId),
    /// An OU (`ou-...`) or the root (`r-...`), recursively.
    Ou(String),
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Scope, String> {
        let s = s.trim();
        if s.starts_with("ou-") || s.starts_with("r-") {
            let ok = s.len() > 3
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            return if ok {
                Ok(Scope::Ou(s.to_string()))
            } else {
                Err(format!("`{s}` is not an OU id (ou-...) or root id (r-...)"))
            };
        }
        s.parse::<AccountId>()
            .map(Scope::Account)
            .map_err(|_| format!("`{s}` is neither a 12-digit account id nor an OU id (ou-...)"))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Account(a) => f.write_str(a.as_str()),
            Scope::Ou(ou) => f.write_str(ou),
        }
    }
}

/// The waves, in order; empty when there are none (everything enforced).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Waves(pub Vec<Vec<Scope>>);

impl FromStr for Waves {
    type Err = String;
    /// `111111111111;ou-ab12-cdef3456,222222222222`: waves separated by
    /// `;`, scopes by `,`. Blank is no waves; a blank wave between others
    /// is an error (a stray `;` would renumber every later wave).
    fn from_str(s: &str) -> Result<Waves, String> {
        let s = s.trim().trim_end_matches(';');
        if s.trim().is_empty() {
            return Ok(Waves::default());
        }
        let mut waves = Vec::new();
        let mut seen = HashSet::new();
        for (i, wave) in s.split(';').enumerate() {
            let scopes: Vec<Scope> = wave
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(Scope::from_str)
                .collect::<Result<_, _>>()?;
            if scopes.is_empty() {
                return Err(format!("wave {} is empty", i + 1));
            }
            for scope in &scopes {
                if !seen.insert(scope.clone()) {
                    return Err(format!("`{scope}` is in more than one wave"));
                }
            }
            waves.push(scopes);
        }
        Ok(Waves(waves))
    }
}

impl Waves {
    /// Whether staged rollout is off.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The OUs the waves name (the producer lists their accounts).
    pub fn ous(&self) -> Vec<&str> {
        self.0
            .iter()
            .flatten()
            .filter_map(|s| match s {
                Scope::Ou(ou) => Some(ou.as_str()),
                Scope::Account(_) => None,
            })
            .collect()
    }

    /// The wave (from 1) of `account_id`, given the accounts under each OU
    /// the waves name: the first wave that names it or an OU above it;
    /// the last wave when none does. `None` when there are no waves.
    pub fn wave_of(
        &self,
        account_id: &str,
        under: &HashMap<String, HashSet<String>>,
    ) -> Option<u32> {
        if self.is_empty() {
            return None;
        }
        let named = self.0.iter().position(|wave| {
            wave.iter().any(|scope| match scope {
                Scope::Account(a) => a.as_str() == account_id,
                Scope::Ou(ou) => under.get(ou).is_some_and(|ids| ids.contains(account_id)),
            })
        });
        Some(named.unwrap_or(self.0.len() - 1) as u32 + 1)
    }
}

/// Where a wave stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaveState {
    /// Enforce runs enforce its accounts.
    Released,
    /// Audited until the wave before it has soaked.
    Pending,
    /// Audited until an operator releases it; holds later waves back.
    Halted,
}

impl WaveState {
    /// As `keyrotor waves` prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaveState::Released => "released",
            WaveState::Pending => "pending",
            WaveState::Halted => "halted",
        }
    }
}

/// A wave's record in the table: the last decision about it and its soak
/// clock. A wave without one is wave 1 (released) or pending.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaveRecord {
    /// The wave, from 1.
    pub wave: u32,
    /// The last decision (`released` or `halted`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<WaveState>,
    /// When that decision was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<DateTime<Utc>>,
    /// Who made it: an operator's ARN, or `keyrotor (soak)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// The first enforce run that enforced it since it was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_since: Option<DateTime<Utc>>,
    /// Its last `failed` enforce result or hold that ran out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trouble_at: Option<DateTime<Utc>>,
    /// What that was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trouble: Option<String>,
}

/// Who releases a wave automatically, in its record.
pub const SOAK_DECIDER: &str = "keyrotor (soak)";

/// The state of every wave `1..=count` from their records.
pub fn states(count: u32, records: &BTreeMap<u32, WaveRecord>) -> Vec<WaveState> {
    (1..=count)
        .map(|wave| match records.get(&wave).and_then(|r| r.decision) {
            Some(decided) => decided,
            None if wave == 1 => WaveState::Released,
            None => WaveState::Pending,
        })
        .collect()
}

/// The pending wave that soaking releases now, if any: the first pending
/// wave whose predecessor is released and has run clean in enforce mode
/// for `soak` (since its first enforce run, or its last trouble if later).
pub fn due_for_release(
    count: u32,
    records: &BTreeMap<u32, WaveRecord>,
    soak: Duration,
    now: DateTime<Utc>,
) -> Option<u32> {
    let states = states(count, records);
    let first_pending = states.iter().position(|s| *s == WaveState::Pending)? as u32 + 1;
    let before = first_pending - 1;
    if states[before as usize - 1] != WaveState::Released {
        return None;
    }
    let record = records.get(&before)?;
    let since = record.enforced_since?;
    let clean_since = record.trouble_at.map_or(since, |t| t.max(since));
    (now - clean_since >= soak).then_some(first_pending)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000, 0).unwrap() + Duration::days(d)
    }

    #[test]
    fn waves_parse_and_place_accounts() {
        let waves: Waves = "111111111111; ou-ab12-cdef3456 ,222222222222;"
            .parse()
            .unwrap();
        assert_eq!(waves.0.len(), 2);
        assert_eq!(waves.ous(), ["ou-ab12-cdef3456"]);
        let under = HashMap::from([(
            "ou-ab12-cdef3456".to_string(),
            HashSet::from(["333333333333".to_string()]),
        )]);
        assert_eq!(waves.wave_of("111111111111", &under), Some(1));
        assert_eq!(waves.wave_of("222222222222", &under), Some(2));
        assert_eq!(
            waves.wave_of("333333333333", &under),
            Some(2),
            "under the OU"
        );
        assert_eq!(
            waves.wave_of("444444444444", &under),
            Some(2),
            "in no wave: the last"
        );
        assert_eq!("".parse::<Waves>().unwrap().wave_of("1", &under), None);
        for bad in [
            "1111;;2222",
            "111111111111;;222222222222",
            "ou-;1",
            "x",
            "111111111111;111111111111",
        ] {
            assert!(bad.parse::<Waves>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_wave_is_released_after_its_predecessor_soaks_clean() {
        let soak = Duration::days(7);
        let mut records = BTreeMap::new();
        assert_eq!(
            states(3, &records),
            [WaveState::Released, WaveState::Pending, WaveState::Pending]
        );
        assert_eq!(
            due_for_release(3, &records, soak, day(30)),
            None,
            "wave 1 never enforced"
        );
        records.insert(
            1,
            WaveRecord {
                wave: 1,
                enforced_since: Some(day(0)),
                ..WaveRecord::default()
            },
        );
        assert_eq!(due_for_release(3, &records, soak, day(6)), None);
        assert_eq!(due_for_release(3, &records, soak, day(7)), Some(2));
        // A failure on day 5 restarts the clock.
        records.get_mut(&1).unwrap().trouble_at = Some(day(5));
        assert_eq!(due_for_release(3, &records, soak, day(11)), None);
        assert_eq!(due_for_release(3, &records, soak, day(12)), Some(2));
        // Released, but wave 2 has not been enforced yet: wave 3 waits.
        records.insert(
            2,
            WaveRecord {
                wave: 2,
                decision: Some(WaveState::Released),
                ..WaveRecord::default()
            },
        );
        assert_eq!(due_for_release(3, &records, soak, day(40)), None);
        // Halted: no later wave is released, whatever the soak.
        records.insert(
            2,
            WaveRecord {
                wave: 2,
                decision: Some(WaveState::Halted),
                enforced_since: Some(day(0)),
                ..WaveRecord::default()
            },
        );
        assert_eq!(states(3, &records)[1], WaveState::Halted);
        assert_eq!(due_for_release(3, &records, soak, day(400)), None);
    }
}

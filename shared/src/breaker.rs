//! The circuit breaker's rule (`KEYROTOR_BREAKER_FAILURES`): how many
//! `failed` results of an enforce run open it, as a count (`3`) or a share
//! of the run's expected users (`5%`, the default), or `off`. Pure: the
//! breaker's state lives in the table (`store::breaker`).

use std::fmt;
use std::str::FromStr;

/// When the breaker opens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakerThreshold {
    /// Never.
    Off,
    /// At this many failed results (at least 1).
    Count(u32),
    /// At this percentage of the run's expected users (above 0, at most
    /// 100), rounded up, and at least one result.
    Share(f64),
}

impl Default for BreakerThreshold {
    fn default() -> Self {
        BreakerThreshold::Share(5.0)
    }
}

impl BreakerThreshold {
    /// The failures that open the breaker in a run of `expected` users;
    /// `None` when it never opens.
    pub fn limit(self, expected: i64) -> Option<i64> {
        match self {
            BreakerThreshold::Off => None,
            BreakerThreshold::Count(n) => Some(i64::from(n)),
            BreakerThreshold::Share(pct) => {
                Some(((expected.max(0) as f64 * pct / 100.0).ceil() as i64).max(1))
            }
        }
    }

    /// Whether `failures` of a run of `expected` users open the breaker.
    pub fn trips(self, failures: i64, expected: i64) -> bool {
        self.limit(expected).is_some_and(|limit| failures >= limit)
    }
}

impl fmt::Display for BreakerThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BreakerThreshold::Off => f.write_str("off"),
            BreakerThreshold::Count(n) => write!(f, "{n}"),
            BreakerThreshold::Share(p) => write!(f, "{p}%"),
        }
    }
}

impl FromStr for BreakerThreshold {
    type Err = String;
    fn from_str(s: &str) -> Result<BreakerThreshold, String> {
        let s = s.trim();
        let bad = || format!("expected a count like `3`, a share like `5%`, or `off`; got `{s}`");
        if s.eq_ignore_ascii_case("off") {
            return Ok(BreakerThreshold::Off);
        }
        if let Some(pct) = s.strip_suffix('%') {
            let pct: f64 = pct.trim().parse().map_err(|_| bad())?;
            if !(pct > 0.0 && pct <= 100.0) {
                return Err(format!(
                    "a share must be above 0% and at most 100%, got `{s}`"
                ));
            }
            return Ok(BreakerThreshold::Share(pct));
        }
        match s.parse::<u32>() {
            Ok(0) => Err(format!("a count must be at least 1 (or `off`), got `{s}`")),
            Ok(n) => Ok(BreakerThreshold::Count(n)),
            Err(_) => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_shares_and_off_parse_and_trip_where_they_say() {
        let t: BreakerThreshold = "3".parse().unwrap();
        assert!(!t.trips(2, 1000) && t.trips(3, 1000));
        let t: BreakerThreshold = " 5% ".parse().unwrap();
        assert_eq!(t.limit(1000), Some(50));
        assert_eq!(t.limit(30), Some(2), "rounded up");
        assert_eq!(t.limit(0), Some(1), "at least one failure");
        assert!(t.trips(50, 1000) && !t.trips(49, 1000));
        assert_eq!(
            "0.5%".parse::<BreakerThreshold>().unwrap().limit(1000),
            Some(5)
        );
        let off: BreakerThreshold = "OFF".parse().unwrap();
        assert!(!off.trips(1_000_000, 1));
        assert_eq!(BreakerThreshold::default().to_string(), "5%");
        for bad in ["0", "0%", "101%", "-1", "five", "5 %%", ""] {
            assert!(bad.parse::<BreakerThreshold>().is_err(), "{bad:?}");
        }
    }
}

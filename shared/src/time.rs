//! The evaluation time (`--as-of`, a run's `as_of`): an RFC 3339 time or a
//! `YYYY-MM-DD` date (midnight UTC). One parser for the CLI and the Lambdas.

use std::cell::Cell;

use chrono::{DateTime, Duration, NaiveDate, Utc};

thread_local! {
    /// The load simulator's clock on this thread: a start time and the tokio
    /// instant it was taken at. `None` (always, outside the simulator) means
    /// the system clock.
    static SIMULATED_CLOCK: Cell<Option<(DateTime<Utc>, tokio::time::Instant)>> =
        const { Cell::new(None) };
}

/// The current time. keyrotor's code reads the clock only here, so that the
/// load simulator, which runs it on tokio's paused clock, can make wall
/// time and timers agree (and a run repeat exactly); everywhere else this
/// is the system clock.
pub fn now() -> DateTime<Utc> {
    match SIMULATED_CLOCK.with(Cell::get) {
        Some((start, taken)) => {
            start
                + Duration::from_std(tokio::time::Instant::now() - taken)
                    .expect("a simulated run lasts less than centuries")
        }
        None => Utc::now(),
    }
}

/// Makes [`now`] on this thread read `start` at this moment and then follow
/// tokio's clock (paused in the load simulator, where every task runs on
/// one thread). For the simulator only.
pub fn simulate_clock_on_this_thread(start: DateTime<Utc>) {
    SIMULATED_CLOCK.with(|clock| clock.set(Some((start, tokio::time::Instant::now()))));
}

/// How far ahead of this machine's clock an enforce evaluation time may be
/// before it counts as "in the future": clock skew between the machine that
/// produced a run and the one that works it.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// An enforce evaluation time in the future, which would switch keys off
/// before their time; refused unless `KEYROTOR_ALLOW_FUTURE_AS_OF=true`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "enforce mode with an evaluation time in the future ({as_of}) is refused: it would act on keys before they are due; \
     set KEYROTOR_ALLOW_FUTURE_AS_OF=true only for an emulator whose clock is moved"
)]
pub struct FutureAsOf {
    /// The refused evaluation time.
    pub as_of: DateTime<Utc>,
}

/// Refuses an enforce evaluation time more than [`CLOCK_SKEW`] ahead of
/// `now`, unless future evaluation times are allowed. Audit and `plan`
/// forecasts are not checked: they change nothing.
pub fn check_enforce_as_of(
    as_of: DateTime<Utc>,
    enforce: bool,
    allow_future: bool,
    now: DateTime<Utc>,
) -> Result<(), FutureAsOf> {
    if enforce && !allow_future && as_of > now + CLOCK_SKEW {
        Err(FutureAsOf { as_of })
    } else {
        Ok(())
    }
}

/// The time a lifecycle change is recorded at in the ledger: the evaluation
/// time, but never earlier than the real time of the change, so stale work
/// (a backlog, a DLQ redrive) cannot shorten a grace that counts from it.
/// With `trust_as_of` (an emulator whose clock is moved) the evaluation time
/// is the clock.
pub fn ledger_time(as_of: DateTime<Utc>, trust_as_of: bool) -> DateTime<Utc> {
    if trust_as_of {
        as_of
    } else {
        as_of.max(now())
    }
}

/// Parses an `as_of` value.
pub fn parse_as_of(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("`{s}` is neither an RFC 3339 time nor a YYYY-MM-DD date"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_parse() {
        assert_eq!(
            parse_as_of("2026-03-01").unwrap().to_rfc3339(),
            "2026-03-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_as_of("2026-03-01T12:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2026-03-01T10:00:00+00:00"
        );
        assert!(parse_as_of("yesterday").is_err());
    }

    #[test]
    fn a_future_enforce_time_is_refused_unless_allowed() {
        let now = parse_as_of("2026-06-01T00:00:00Z").unwrap();
        let soon = now + Duration::minutes(4);
        let later = now + Duration::minutes(6);
        assert!(
            check_enforce_as_of(soon, true, false, now).is_ok(),
            "clock skew"
        );
        let err = check_enforce_as_of(later, true, false, now).unwrap_err();
        assert!(err.to_string().contains("KEYROTOR_ALLOW_FUTURE_AS_OF"));
        assert!(check_enforce_as_of(later, true, true, now).is_ok());
        assert!(
            check_enforce_as_of(later, false, false, now).is_ok(),
            "audit"
        );
    }

    #[test]
    fn ledger_times_are_never_before_the_real_time() {
        let past = parse_as_of("2020-01-01").unwrap();
        assert!(ledger_time(past, false) > past);
        assert_eq!(ledger_time(past, true), past);
        let future = Utc::now() + Duration::days(30);
        assert_eq!(ledger_time(future, false), future);
    }
}

//! The users a run's accounts hold, as far as the producer has listed them:
//! an account's FIFO groups are its share of the fleet's by users when the
//! fleet's groups are shared out (`KEYROTOR_FLEET_GROUPS`), and the run's
//! users are known only once every account is listed, so the producer
//! estimates them from the accounts listed so far.

use std::sync::Mutex;

use keyrotor_shared::config::RunSize;

/// Users counted so far in one run.
#[derive(Debug)]
pub struct Census {
    accounts: usize,
    counted: Mutex<Counted>,
}

#[derive(Debug, Default)]
struct Counted {
    accounts: usize,
    users: usize,
}

impl Census {
    /// A run of `accounts` accounts, none counted yet.
    pub fn new(accounts: usize) -> Census {
        Census {
            accounts,
            counted: Mutex::default(),
        }
    }

    /// The run's size before any account's users are known.
    pub fn size(&self) -> RunSize {
        RunSize::accounts(self.accounts)
    }

    /// Counts an account of `users` users and gives the run's size with
    /// its users estimated: the mean of the accounts counted so far (this
    /// one included) times the run's accounts. An account counted early
    /// weighs itself against few others, so a big one listed first is
    /// estimated as if every account were as big, and gets no more than
    /// the even share: the estimate errs towards the rule without it.
    pub fn count(&self, users: usize) -> RunSize {
        let mut counted = self.counted.lock().expect("not poisoned");
        counted.accounts += 1;
        counted.users += users;
        let mean = counted.users as f64 / counted.accounts as f64;
        RunSize {
            accounts: self.accounts,
            users: Some((mean * self.accounts as f64).round() as usize),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runs_users_are_the_mean_so_far_times_its_accounts() {
        let census = Census::new(1000);
        assert_eq!(census.size(), RunSize::accounts(1000));
        // A big account counted first is taken for a typical one.
        assert_eq!(census.count(20_000).users, Some(20_000_000));
        let census = Census::new(1000);
        for _ in 0..99 {
            census.count(100);
        }
        let run = census.count(20_000);
        assert_eq!(run.accounts, 1000);
        assert_eq!(run.users, Some(299_000));
    }
}

//! How much of an account's IAM budget a message may take. The producer
//! spreads an account's messages over K FIFO groups and each group takes
//! 1/K; once fewer than K of the account's messages are left without a
//! result, fewer than K groups can be working, so each may take more: 1/R
//! for R messages left. That lets an account's last groups finish at its
//! whole rate instead of idling the shares of groups that are done.
//!
//! The count comes from the account's counters, read when this process
//! records one of the account's last results (fewer left than it has
//! groups: the result store says when); a count read earlier is larger than the true one, so
//! a stale count only gives a smaller share: the fleet stays within the
//! budget however many processes work the account.

use std::collections::HashMap;
use std::sync::Mutex;

use keyrotor_shared::aws::IamShare;
use keyrotor_shared::store::results::Progress;

/// Accounts still to finish with, per run, as this process last saw them.
#[derive(Debug, Default)]
pub struct MessagesLeft {
    left: Mutex<HashMap<(String, String), u32>>,
}

impl MessagesLeft {
    /// Notes an account's counters, read as a result was recorded. Counts
    /// only once the producer has enqueued the whole account (before, more
    /// messages may come); the smallest count seen wins, since counts only
    /// fall.
    pub fn saw(&self, run_id: &str, account_id: &str, account: &Progress) {
        if !account.enqueued {
            return;
        }
        let key = (run_id.to_string(), account_id.to_string());
        let mut left = self.left.lock().expect("not poisoned");
        let now = (account.expected - account.done).max(0);
        if now == 0 {
            left.remove(&key);
            return;
        }
        let now = u32::try_from(now).unwrap_or(u32::MAX);
        let count = left.entry(key).or_insert(now);
        *count = (*count).min(now);
    }

    /// Whether this process has read `account_id`'s counters in `run_id`
    /// while messages were still left. They are read only after one of an
    /// account's last results (or after each, for an account the producer
    /// left no `watch_from` mark on), so a result recorded here next is
    /// among the last too: it is recorded without the early condition,
    /// which would only cancel its transaction.
    pub fn among_last(&self, run_id: &str, account_id: &str) -> bool {
        let left = self.left.lock().expect("not poisoned");
        left.contains_key(&(run_id.to_string(), account_id.to_string()))
    }

    /// The share a message of `run_id` in `account_id` takes: its group's
    /// `1/K`, or `1/R` when only R < K messages of the account are left.
    pub fn share(&self, run_id: &str, account_id: &str, of_group: IamShare) -> IamShare {
        let left = self.left.lock().expect("not poisoned");
        match left.get(&(run_id.to_string(), account_id.to_string())) {
            Some(&count) if count < of_group.of => IamShare {
                group: of_group.group,
                of: count.max(1),
            },
            _ => of_group,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(expected: i64, done: i64, enqueued: bool) -> Progress {
        Progress {
            done,
            expected,
            enqueued,
        }
    }

    const GROUP_3_OF_10: IamShare = IamShare { group: 3, of: 10 };

    #[test]
    fn a_group_takes_its_share_until_fewer_messages_than_groups_are_left() {
        let left = MessagesLeft::default();
        assert_eq!(left.share("r", "a", GROUP_3_OF_10), GROUP_3_OF_10);
        left.saw("r", "a", &progress(100, 85, true));
        assert_eq!(left.share("r", "a", GROUP_3_OF_10), GROUP_3_OF_10);
        left.saw("r", "a", &progress(100, 96, true));
        assert_eq!(
            left.share("r", "a", GROUP_3_OF_10),
            IamShare { group: 3, of: 4 }
        );
        // Another run, or another account, is counted apart.
        assert_eq!(left.share("r2", "a", GROUP_3_OF_10), GROUP_3_OF_10);
        assert_eq!(left.share("r", "b", GROUP_3_OF_10), GROUP_3_OF_10);
    }

    #[test]
    fn a_stale_count_never_raises_the_share() {
        let left = MessagesLeft::default();
        left.saw("r", "a", &progress(100, 97, true));
        // Read earlier, recorded later: more left, which must not count.
        left.saw("r", "a", &progress(100, 92, true));
        assert_eq!(left.share("r", "a", GROUP_3_OF_10).of, 3);
    }

    #[test]
    fn an_account_still_being_enqueued_is_not_counted() {
        let left = MessagesLeft::default();
        left.saw("r", "a", &progress(5, 4, false));
        assert_eq!(left.share("r", "a", GROUP_3_OF_10), GROUP_3_OF_10);
    }

    #[test]
    fn an_account_read_with_messages_left_is_among_its_last() {
        let left = MessagesLeft::default();
        assert!(!left.among_last("r", "a"));
        left.saw("r", "a", &progress(100, 97, true));
        assert!(left.among_last("r", "a"));
        assert!(!left.among_last("r", "b"));
        left.saw("r", "a", &progress(100, 100, true));
        assert!(!left.among_last("r", "a"), "finished: forgotten");
    }

    #[test]
    fn a_finished_account_is_forgotten() {
        let left = MessagesLeft::default();
        left.saw("r", "a", &progress(10, 9, true));
        assert_eq!(left.share("r", "a", GROUP_3_OF_10).of, 1);
        left.saw("r", "a", &progress(10, 10, true));
        assert!(left.left.lock().unwrap().is_empty());
        assert_eq!(left.share("r", "a", GROUP_3_OF_10), GROUP_3_OF_10);
    }
}

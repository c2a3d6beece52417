//! The producer (DESIGN §3 step 2): lists the Organization's accounts, keeps
//! the eligible ones, enumerates each account's IAM users with bounded
//! concurrency and enqueues one SQS message per (account, user), recording
//! the run's expected counts. It streams: users go out a page at a time
//! (an account of many pages is listed whole first when the fleet's groups
//! are shared out, see `census`).

pub mod census;
pub mod enqueue;
pub mod import;
pub mod inventory;
pub mod lambda;
pub mod run;
pub mod ses_rate;
pub mod users;

pub use run::{
    AccountFailure, AccountOutcome, ProduceError, ProduceRequest, ProduceSummary, Producer,
};

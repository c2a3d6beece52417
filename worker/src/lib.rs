//! The worker (DESIGN §3 step 4–5): takes each SQS message, performs the
//! user's due steps through `keyrotor_shared::executor::Executor` under rate
//! limits, records the result exactly once, publishes it to SNS, and sends
//! the account digest and the run summary when the last message is done.
//! Runs as a long-lived pool (`keyrotor work`) or as a Lambda function.

pub mod digest;
pub mod lambda;
pub mod pool;
pub mod process;
pub mod setup;
pub mod shares;

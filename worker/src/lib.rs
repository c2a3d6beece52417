//! The worker (issue #4): consumes the SQS messages and runs
//! `keyrotor_shared::executor::Executor::process` for each, under rate
//! limits, publishing results to SNS. Not built yet; this crate only
//! reserves its place in the workspace.

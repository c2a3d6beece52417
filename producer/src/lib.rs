//! The producer (issue #3): lists the Organization's accounts and their IAM
//! users and enqueues one SQS message per (account, user). Not built yet;
//! this crate only reserves its place in the workspace.

//! keyrotor's shared library: domain types, the rotation policy,
//! configuration, AWS ports and adapters, the DynamoDB state store and the
//! rotation executor. The producer, worker and CLI are thin layers over it.

pub mod aws;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod executor;
pub mod message;
pub mod policy;
pub mod provision;
pub mod queue;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod time;

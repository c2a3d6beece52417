//! keyrotor's shared library: domain types, the rotation policy,
//! configuration, AWS ports and adapters, the DynamoDB state store and the
//! rotation executor. The producer, worker and CLI are thin layers over it.
//!
//! # Ports
//!
//! AWS sits behind small traits. Each has its SDK adapter and the load
//! simulator's model (`loadtest/src/sim`); the rate limits wrap two of them.
//!
//! | port | what | adapter | others |
//! |---|---|---|---|
//! | [`aws::IamPort`] | a member account's IAM users and keys | `SdkIam` | `LimitedIam` (rate), `SimIam` |
//! | [`aws::SecretsPort`] | the user's secret | `SdkSecrets` | `LimitedSecrets` (rate), `SimSecrets` |
//! | [`aws::KeyVerifier`] | signing with a new key (STS) | `StsVerifier` | `SimVerifier` |
//! | [`executor::PortsFactory`] | the three above for one account | `SdkPorts` (member sessions) | `SimPorts` |
//! | [`store::LedgerPort`] | the user's lock and ledger | `DynamoLedger` | `SimTable` |
//! | [`store::runs::RunsPort`] | run records | `RunStore` | `SimTable` |
//! | [`store::results::ResultsPort`] | results, counters, once-only claims | `ResultStore` | `SimTable` |
//! | [`queue::QueuePort`] | the work queue | `SqsQueue` | `SimQueue` |
//! | [`events::EventSink`] | SNS events | `SnsEvents` | `SimEvents` |
//! | `keyrotor_worker::digest::Mailer` | one email | `SesMailer` | `LimitedMailer` (rate), `SimMailer` |
//! | `keyrotor_producer::inventory::AccountInventory` | the accounts in scope | `OrgInventory`, `RegistryInventory` | `SimInventory` |
//! | `keyrotor_producer::users::MemberDirectory` | a member account's user pages | `SdkDirectory` | `SimDirectory` |

pub mod aws;
pub mod breaker;
pub mod config;
pub mod domain;
pub mod error;
pub mod event_bus;
pub mod events;
pub mod executor;
pub mod incident;
pub mod message;
pub mod policy;
pub mod provision;
pub mod queue;
pub mod retry;
pub mod store;
pub mod telemetry;
pub mod time;
pub mod waves;

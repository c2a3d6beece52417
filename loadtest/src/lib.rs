//! Load runs and, later, the scale simulator (DESIGN §9).
//!
//! Today this crate holds the emulator load run of the producer
//! (`benches/producer_emulator.rs`, see `README.md`) and the helpers it
//! uses: [`measure`] runs a child process and reports its wall time and
//! peak memory, [`Stats`] summarises repetitions. The scale simulator (the
//! model of a sweep's lower bound and of the reference pattern) is not built
//! yet.

pub mod measure;
pub mod sim;

pub use measure::{measure, Measured, Stats};

//! The scale simulator (DESIGN §9) and the emulator load runs.
//!
//! [`sim`] runs the real producer, worker pools and executor over simulated
//! AWS ports on tokio's paused clock (`keyrotor-loadtest sim`, see
//! `README.md`). The emulator benches (`benches/`) use [`measure`], which
//! runs a child process and reports its wall time and peak memory, and
//! [`Stats`], which summarises repetitions.

pub mod measure;
pub mod sim;

pub use measure::{measure, Measured, Stats};

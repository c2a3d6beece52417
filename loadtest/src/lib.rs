//! The scale simulator and emulator load runs (DESIGN §9). Not built yet;
//! this crate only reserves its place in the workspace.

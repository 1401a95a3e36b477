//! Developer tools: `parley demo` and its study, `parley bench`, the local launcher that
//! runs node processes, and the set-up of a federation on one machine (the demo and the
//! integration tests use it). Nothing here runs inside a production node.

pub mod bench;
#[cfg(feature = "sim-cheat")]
pub mod cheat;
pub mod demo;
pub mod launcher;
pub mod setup;
pub mod study;

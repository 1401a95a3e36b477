//! The analytics catalogue (DESIGN §5, §6): typed job kinds with input schemas, declared
//! bounds, release policy and DP, compiled to MPC programs over exact local aggregates.
//!
//! - [`spec`]: the job spec every party approves and its static validation.

pub mod spec;

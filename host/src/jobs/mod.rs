//! The jobs: from a proposal to a result.
//!
//! - [`engine`] owns every job's state — consent, re-attestation before a job, budgets,
//!   timeouts, aborts — and persists each transition with its audit entry. It never
//!   computes.
//! - [`actor`]: each running job is an actor on its own thread holding the job's sans-IO
//!   protocol; it sends its own protocol frames and reports once, when it ends.
//! - [`board`]: what the engine publishes for readers (job views, peers), so the admin
//!   socket answers without waiting on the engine or a job.
//! - [`job`]: job specs, the hash every party signs, approvals, states and views.
//! - [`analytics`]: analytics jobs under the node's release policy and privacy budget.
//! - [`programs`]: the MPC programs of the built-in job kinds and their decoding.

pub mod actor;
pub mod analytics;
pub mod board;
pub mod engine;
pub mod job;
pub mod programs;

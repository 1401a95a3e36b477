//! The Parley host: everything that does I/O.
//!
//! Layout:
//! - [`node`]: assembling and running one node (`parley node`).
//! - [`session`]: attested peer sessions over TLS 1.3 (gate 1) and the Hello exchange.
//! - [`wire`]: length-delimited frames of the versioned message enum.
//! - [`engine`]: the job engine that owns jobs and drives the sans-IO MPC protocols.
//! - [`job`]: job specs, states and results.
//! - [`admin`]: the operator-only admin socket and its client.
//! - [`status`]: per-peer frame counters and verdicts.
//! - [`collateral`]: `parley collateral fetch`: filling the collateral cache over HTTP.
//! - [`tee`]: collecting this node's own evidence (simulated for now).
//! - [`config`], [`manifest`]: the node config and the federation manifest.
//! - [`data`]: schemas, CSV import, local aggregates and the demo's sample data.
//! - [`setup`]: creating a federation on one machine (the demo and tests use it).
//! - [`demo`]: `parley demo`.
#![forbid(unsafe_code)]

pub mod admin;
pub mod analytics_job;
pub mod audit;
pub mod bench;
#[cfg(feature = "sim-cheat")]
pub mod cheat;
pub mod check;
pub mod collateral;
pub mod config;
pub mod data;
pub mod datasets;
pub mod demo;
pub mod engine;
pub mod job;
pub mod launcher;
pub mod manifest;
pub mod node;
pub mod programs;
pub mod session;
pub mod setup;
pub mod status;
pub mod store;
pub mod study;
pub mod tee;
pub mod util;
pub mod wire;

//! The Parley host: everything that does I/O. Its folders follow the shape of a node:
//!
//! - [`peer`] — the peer layer: attested sessions (gates, keep-alive, reconnects, writer
//!   timeouts, one control and one data outbox per peer) and the wire format.
//! - [`jobs`] — the jobs: the engine (consent, attestation for each job, budgets,
//!   timeouts), one actor per running job holding its sans-IO MPC engine, the board the
//!   engine publishes for readers, job specs, analytics plans and programs.
//! - [`store`] — the store layer: the node's database, audit log, datasets and budget
//!   ledger, with one writer per store (the lock).
//! - [`admin`] — the operator's admin socket: reads from the board and the store, changes
//!   through the engine, so it answers while jobs compute.
//! - [`node`] — assembling one node (config, manifest, policy, keys, evidence, datasets)
//!   and running its tasks.
//! - [`dev`] — developer tools: `parley demo`, `parley bench`, the local launcher and
//!   federation set-up the demo and the tests use.
//! - [`config`], [`manifest`], [`tee`], [`collateral`], [`check`], [`util`]: the node
//!   config, the federation manifest, this node's own evidence, the collateral cache, the
//!   operator's preflight and small helpers.
//!
//! Errors are typed (`thiserror`) throughout: `node::NodeError`, `jobs::JobError`, the
//! store's, the peer layer's and the admin client's. The CLI (`src/main.rs` and `src/cmd/`)
//! is the binary's edge, where they become `anyhow`; so are the developer tools in [`dev`]
//! (`parley demo`, `parley bench`, the launcher and federation set-up the tests use).
#![forbid(unsafe_code)]

pub mod admin;
pub mod check;
pub mod collateral;
pub mod config;
pub mod dev;
pub mod jobs;
pub mod manifest;
pub mod node;
pub mod peer;
pub mod store;
pub mod tee;
pub mod util;

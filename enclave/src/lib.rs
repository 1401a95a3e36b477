//! Parley enclave: the computation that runs inside the TEE.
//!
//! Pure computation: given its inputs, a seeded CSPRNG and peer messages, everything here is
//! deterministic. No sockets, no clock, no global RNG; the host drives the sans-IO state
//! machines over its attested sessions.
//!
//! Layout:
//! - [`field`]: the [`field::Field`] trait and the Mersenne fields 2^127 − 1, 2^61 − 1,
//!   2^521 − 1, with canonical encodings and batch operations.
//! - [`secret`]: containers for secret elements (redacted `Debug`, zeroized on drop).
//! - [`shamir`]: Shamir sharing at the manifest's evaluation points; reconstruction and the
//!   degree-t consistency check every opening uses.
//! - [`message`]: the wire messages ([`message::Message`], packed payloads, chunking).
//! - [`protocol`]: the sans-IO [`protocol::Protocol`] trait and the per-job [`protocol::Config`].
//! - [`prss`]: PRSS key sets, the sans-IO key setup with hash echo, per-job derivation, and
//!   random/zero/double sharings without communication.
//! - [`program`]: straight-line vector programs (inputs, linear ops, products, inner
//!   products, openings, outputs) and their round schedule.
//! - [`engine`]: runs a program semi-honestly or with malicious security (Chida et al.);
//!   GRR multiplication with PRSS-derived subshares.
//! - [`commit`]: input commitments.
//! - [`sum`]: "secure sum, opened to all".
//! - [`sim`]: the in-memory federation harness with fault injection.
//! - `cheat` (feature `cheat` only): deliberate deviations for simulations and tests.
//! - [`error`]: [`MpcError`] and the named security checks ([`error::CheckFailure`]).
//!
//! Outside `src/`: `tests/` (properties against plaintext, deviations with teeth, codecs),
//! `benches/mpc.rs` (criterion: multiplications per second, bytes per multiplication) and
//! `examples/mul1m.rs` (the BASELINES mul-1M workload in memory).
//!
//! # Host integration
//!
//! 1. **Keys, once per peer-session set**: run [`prss::KeySetup`] (its own [`SessionId`])
//!    over the attested sessions; keep the [`prss::KeyMaterial`] in memory.
//! 2. **Per job**: build a [`program::Program`], then
//!    [`engine::Engine::new`]`(config, Security::Malicious, program, my_inputs, &keys, rng)`
//!    with the job's [`SessionId`] in the [`Config`]; `rng` is a `ChaCha20Rng` seeded from the
//!    OS. The [`engine::EngineOutput`] holds the opened outputs and every party's input
//!    commitment. [`sum::SecureSum`] is the minimal special case (no keys needed).
//!    Outputs go only to the parties each `output_to` names ([`program::Recipients`]): in
//!    [`engine::EngineOutput::values`] an output not addressed to this party is `None` (it
//!    never received its shares). For an outside recipient (an analyst's key), deliver this
//!    party's [`engine::ExternalShare`] encrypted to that recipient; the recipient calls
//!    [`engine::reconstruct_external`] with the manifest's points and t.
//! 3. **Driving** (below): send what `start` returns; feed each frame to `handle`; send what
//!    it returns. On `Err`, send [`Protocol::take_unsent`] (it ends with `abort` notices
//!    naming the cause) and abort the job; an incoming `abort` makes `handle` fail with
//!    [`MpcError::PeerAborted`]. [`Message::kind`] names the frame for counters.
//! 4. **Frames**: `postcard` of [`Message`]; a payload carries at most
//!    [`Config::max_chunk_elems`] elements (16 B each in 2^127 − 1) plus a ~45-byte header.
//! 5. **Cheating** (`parley demo --cheat`): the host's `sim-cheat` feature should enable this
//!    crate's `cheat` feature and call `Engine::set_cheat` / `KeySetup::set_cheat` with a
//!    `cheat::Deviation` (parsable from `wrong-share`, `additive-attack`, …).
//!
//! Driving a protocol (what the host does per job, over its attested sessions):
//!
//! ```
//! use parley_enclave::field::{Field, M127};
//! use parley_enclave::secret::SecretVec;
//! use parley_enclave::sum::SecureSum;
//! use parley_enclave::{Config, Message, Protocol, SessionId, Status};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let points = vec![1, 2, 3]; // from the federation manifest
//! let mut parties: Vec<SecureSum<M127>> = (0..3)
//!     .map(|me| {
//!         let cfg = Config::new(me, points.clone(), 1, SessionId([7; 32]));
//!         let input = SecretVec::new(vec![M127::from_u64(10 + me as u64), M127::one()]);
//!         SecureSum::new(cfg, input, ChaCha20Rng::seed_from_u64(me as u64)).unwrap()
//!     })
//!     .collect();
//! // The host: send what `start` returns, feed every received frame to `handle`, send its
//! // replies; on `Err` send `take_unsent()` and abort the job.
//! let mut wire: Vec<(usize, usize, Vec<u8>)> = Vec::new();
//! for (me, p) in parties.iter_mut().enumerate() {
//!     for o in p.start().unwrap() {
//!         wire.push((me, o.to, postcard::to_allocvec(&o.msg).unwrap()));
//!     }
//! }
//! while let Some((from, to, frame)) = wire.pop() {
//!     let msg: Message = postcard::from_bytes(&frame).unwrap();
//!     for o in parties[to].handle(from, msg).unwrap() {
//!         wire.push((to, o.to, postcard::to_allocvec(&o.msg).unwrap()));
//!     }
//! }
//! for p in &parties {
//!     assert_eq!(p.status(), Status::Done);
//!     assert_eq!(p.output().unwrap(), &vec![M127::from_u64(33), M127::from_u64(3)]);
//! }
//! ```
#![forbid(unsafe_code)]

#[cfg(all(feature = "test-disable-mult-check", not(debug_assertions)))]
compile_error!(
    "`test-disable-mult-check` switches off a security check; it exists for the debug-build mutation test only"
);

#[cfg(feature = "cheat")]
pub mod cheat;
pub mod commit;
pub mod engine;
pub mod error;
pub mod field;
mod inbox;
pub mod message;
pub mod program;
pub mod protocol;
pub mod prss;
pub mod secret;
pub mod shamir;
pub mod sim;
pub mod sum;

pub use error::{CheckFailure, ConfigError, MpcError};
pub use message::{Message, Outgoing, SessionId};
pub use protocol::{Config, Protocol, Status};

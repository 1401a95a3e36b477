//! One running job: a thread of its own holding the job's sans-IO protocol (the PRSS key
//! set-up, then the MPC engine), its protocol messages in, its frames out.
//!
//! The engine starts an actor once every party approved and re-attested, hands it the
//! job's messages as they arrive, and hears back once, when the job ends. The actor sends
//! its frames itself, straight into the peers' data outboxes, so no MPC step ever holds the
//! engine, the admin socket or another job: two jobs compute at once, and `parley job list`
//! answers while a step runs. Cancelling the handle ends the actor at its next message,
//! and the frames it queued are never written; dropping the handle of a job that finished
//! lets its last frames go out (the other parties still need them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use parley_enclave::engine::Security;
use parley_enclave::prss::KeySetup;
use parley_enclave::{Config as MpcConfig, Message, Outgoing, Protocol, SessionId, Status};
use rand_chacha::ChaCha20Rng;
use tokio::sync::mpsc;

use crate::jobs::analytics::{AnyEngine, Work};
use crate::jobs::job::{JobId, JobOutput, JobSpec};
use crate::peer::DataFrame;
use crate::peer::wire::Body;
use parley_enclave::analytics::Plan;

/// Protocol messages buffered during the key set-up for the engine that follows.
const MAX_PENDING: usize = 4096;
/// A local step at least this long is logged with its start and end (operators and the
/// `job list` benchmark read them).
const LOGGED_STEP: Duration = Duration::from_secs(1);

/// Everything a job's actor needs, fixed when the job starts.
pub struct Start {
    pub id: JobId,
    pub spec: JobSpec,
    pub plan: Option<Plan>,
    pub output_names: Vec<String>,
    pub security: Security,
    /// This party's program and inputs (taken by the engine when it starts).
    pub work: Option<Work>,
    /// The key set-up's configuration (its own session id) and the engine's.
    pub keys_cfg: MpcConfig,
    pub engine_cfg: MpcConfig,
    pub keys_session: SessionId,
    pub keys_rng: ChaCha20Rng,
    pub engine_rng: ChaCha20Rng,
    /// Each party's name, by manifest index (for messages).
    pub names: Vec<String>,
    /// Each peer's data outbox (`None`: ourselves).
    pub outboxes: Vec<Option<mpsc::Sender<DataFrame>>>,
    #[cfg(feature = "sim-cheat")]
    pub cheat: Option<parley_enclave::cheat::Deviation>,
}

/// How a job ended, as its actor reports it to the engine.
pub enum Outcome {
    Done {
        /// `None`: this party is not a recipient.
        result: Option<JobOutput>,
        commitments: Vec<String>,
        compute: Duration,
        /// The longest local step (one protocol message handled, or a start).
        longest_step: Duration,
    },
    Failed {
        reason: String,
        /// The protocol's abort notices for the peers (they name the failed check).
        notices: Vec<Outgoing>,
    },
}

/// The engine's handle on a running job's actor.
pub struct JobActor {
    tx: std_mpsc::Sender<(usize, Message)>,
    cancelled: Arc<AtomicBool>,
}

impl JobActor {
    /// Start the job's thread; `report` is called once, from that thread, when it ends
    /// (unless it was cancelled).
    pub fn spawn(
        start: Start,
        report: impl FnOnce(JobId, Outcome) + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, rx) = std_mpsc::channel();
        let cancelled = Arc::new(AtomicBool::new(false));
        let flag = cancelled.clone();
        let id = start.id;
        std::thread::Builder::new()
            .name(format!("job-{}", &id.to_string()[..8]))
            .spawn(move || {
                let mut run = Run {
                    start,
                    rx,
                    cancelled: flag,
                    longest: Duration::ZERO,
                };
                let began = Instant::now();
                let cancelled = run.cancelled.clone();
                // A panic in a step is a bug; the job still ends, with a reason, everywhere.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run.drive(began)))
                        .unwrap_or_else(|_| {
                            tracing::error!(job = %id, "the job's computation panicked");
                            Outcome::Failed {
                        reason: "this node's computation failed unexpectedly (a bug; see its log)"
                            .into(),
                        notices: Vec::new(),
                    }
                        });
                if !cancelled.load(Ordering::SeqCst) {
                    report(id, outcome);
                }
            })?;
        Ok(JobActor { tx, cancelled })
    }

    /// Hand the job a protocol message (false: the actor has ended).
    pub fn deliver(&self, from: usize, msg: Message) -> bool {
        self.tx.send((from, msg)).is_ok()
    }

    /// End the actor: it sends nothing more and reports nothing.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }
}

struct Run {
    start: Start,
    rx: std_mpsc::Receiver<(usize, Message)>,
    cancelled: Arc<AtomicBool>,
    longest: Duration,
}

/// Why the protocol stopped: the reason, and the protocol's own abort notices (which name
/// the failed check to every peer).
type Stop = (String, Vec<Outgoing>);

impl Run {
    fn drive(&mut self, began: Instant) -> Outcome {
        match self.protocol(began) {
            Ok(o) => o,
            Err((reason, notices)) => Outcome::Failed { reason, notices },
        }
    }

    fn protocol(&mut self, began: Instant) -> Result<Outcome, Stop> {
        let s = &self.start;
        let no_unsent = |e: String| (e, Vec::new());
        #[cfg_attr(not(feature = "sim-cheat"), allow(unused_mut))]
        let mut setup = KeySetup::new(s.keys_cfg.clone(), s.keys_rng.clone())
            .map_err(|e| no_unsent(format!("cannot start the key set-up: {e}")))?;
        #[cfg(feature = "sim-cheat")]
        if let Some(d) = s.cheat {
            setup.set_cheat(d);
        }
        let out = setup.start().map_err(|e| no_unsent(e.to_string()))?;
        self.send(out)?;
        // The engine's messages can overtake our own key set-up: keep them for it.
        let mut pending = Vec::new();
        while setup.status() != Status::Done {
            let (from, msg) = self.next()?;
            if msg.chunk().session != self.start.keys_session {
                if pending.len() >= MAX_PENDING {
                    return Err(no_unsent(format!(
                        "peer {} sent too many messages during the key set-up",
                        self.who(from)
                    )));
                }
                pending.push((from, msg));
                continue;
            }
            match setup.handle(from, msg) {
                Ok(out) => self.send(out)?,
                Err(e) => {
                    let who = self.who(from);
                    return Err((
                        format!("{e} (key set-up message from {who})"),
                        setup.take_unsent(),
                    ));
                }
            }
        }
        let keys = setup
            .into_keys()
            .ok_or_else(|| no_unsent("the key set-up ended without keys".into()))?;
        let work = self
            .start
            .work
            .take()
            .ok_or_else(|| no_unsent("the job has no work".into()))?;
        let s = &self.start;
        let (cfg, security, rng) = (s.engine_cfg.clone(), s.security, s.engine_rng.clone());
        #[cfg_attr(not(feature = "sim-cheat"), allow(unused_mut))]
        let mut engine = self
            .timed("engine set-up", || {
                AnyEngine::new(cfg, security, work, &keys, rng)
            })
            .map_err(|e| no_unsent(format!("cannot start the engine: {e}")))?;
        #[cfg(feature = "sim-cheat")]
        if let Some(d) = self.start.cheat {
            engine.set_cheat(d);
        }
        match self.timed("engine start", || engine.start()) {
            Ok(out) => self.send(out)?,
            Err(e) => return Err((e.to_string(), engine.take_unsent())),
        }
        let mut pending = pending.into_iter();
        while engine.status() != Status::Done {
            let (from, msg) = match pending.next() {
                Some(m) => m,
                None => self.next()?,
            };
            match self.timed("protocol step", || engine.handle(from, msg)) {
                Ok(out) => self.send(out)?,
                Err(e) => {
                    let who = self.who(from);
                    return Err((format!("{e} (message from {who})"), engine.take_unsent()));
                }
            }
        }
        let commitments = engine
            .commitments()
            .ok_or_else(|| no_unsent("the engine finished without output".into()))?;
        let plan = self.start.plan.take();
        let names = std::mem::take(&mut self.start.output_names);
        let spec = self.start.spec.clone();
        let analytics = plan.as_ref().map(|p| (p, names.as_slice()));
        let result = self
            .timed("decoding", || engine.decode(&spec, analytics))
            .map_err(|e| no_unsent(e.to_string()))?;
        tracing::info!(
            job = %self.start.id,
            longest_step_ms = self.longest.as_millis() as u64,
            "job's protocol finished"
        );
        Ok(Outcome::Done {
            result,
            commitments,
            compute: began.elapsed(),
            longest_step: self.longest,
        })
    }

    /// The next protocol message, or the reason the job cannot go on.
    fn next(&self) -> Result<(usize, Message), Stop> {
        loop {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(("the job was ended by this node".into(), Vec::new()));
            }
            match self.rx.recv_timeout(Duration::from_millis(200)) {
                Ok(m) => return Ok(m),
                Err(std_mpsc::RecvTimeoutError::Timeout) => continue,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(("the job was ended by this node".into(), Vec::new()));
                }
            }
        }
    }

    /// Run one local step, noting how long it took; a long one is logged with its start
    /// and end (Unix milliseconds).
    fn timed<T>(&mut self, what: &str, f: impl FnOnce() -> T) -> T {
        let t0 = Instant::now();
        let started = crate::util::unix_now_ms();
        let out = f();
        let took = t0.elapsed();
        self.longest = self.longest.max(took);
        if took >= LOGGED_STEP {
            tracing::info!(
                job = %self.start.id,
                step = what,
                started_ms = started,
                ended_ms = crate::util::unix_now_ms(),
                took_ms = took.as_millis() as u64,
                "long local step"
            );
        }
        out
    }

    fn who(&self, party: usize) -> &str {
        self.start.names.get(party).map_or("?", String::as_str)
    }

    /// Frames out, each to its peer's data outbox (waiting while it is full: backpressure).
    /// Each carries the job's cancel flag, so a frame of a job that has ended is never
    /// written. A closed outbox means the session ended: the job cannot go on.
    fn send(&self, out: Vec<Outgoing>) -> Result<(), Stop> {
        for o in out {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(("the job was ended by this node".into(), Vec::new()));
            }
            let Some(Some(tx)) = self.start.outboxes.get(o.to) else {
                continue;
            };
            let frame = DataFrame {
                body: Body::Mpc {
                    job: self.start.id,
                    msg: o.msg,
                },
                cancelled: self.cancelled.clone(),
            };
            if tx.blocking_send(frame).is_err() {
                return Err((
                    format!("lost the session with peer {}", self.who(o.to)),
                    Vec::new(),
                ));
            }
        }
        Ok(())
    }
}

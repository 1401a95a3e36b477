//! `parley bench ...`: performance figures as ratios to a baseline measured in the same run.

use std::process::ExitCode;

use clap::Subcommand;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// An attested session set-up (both gates) against a plain mutual TLS 1.3 handshake.
    Handshake {
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        #[arg(long)]
        json: bool,
    },
    /// How fast a node answers `parley job list` (the CLI) while it is inside the longest
    /// local step of a large comparison job (n = 3, malicious, over loopback TLS); the
    /// idle node's answer time is the baseline.
    Admin {
        /// Comparisons in the job: enough that one local step lasts at least 5 s.
        #[arg(long, default_value_t = 300_000)]
        batch: u64,
        #[arg(long)]
        json: bool,
    },
    /// MPC throughput: multiplications per second and bytes per multiplication, in memory
    /// and as n processes over loopback TLS, semi-honest and malicious; mul-1M; MPyC.
    Mpc {
        /// Party counts.
        #[arg(long, value_delimiter = ',', default_value = "3,5")]
        parties: Vec<usize>,
        /// Batch sizes (multiplications per job).
        #[arg(long, value_delimiter = ',', default_value = "1,1000,1000000")]
        batches: Vec<u64>,
        /// Skip the in-memory runs.
        #[arg(long)]
        no_in_memory: bool,
        /// Skip the loopback runs (n processes over TLS).
        #[arg(long)]
        no_loopback: bool,
        /// Skip mul-1M T1/T2 over loopback with 3 processes.
        #[arg(long)]
        no_mul1m: bool,
        /// Batch of the comparison and truncation jobs (n = 3, malicious; 0 skips them).
        #[arg(long, default_value_t = 1_000_000)]
        gadget_batch: u64,
        /// A Python with mpyc, numpy and gmpy2 installed: run mul-1M on MPyC too.
        #[arg(long)]
        mpyc_python: Option<std::path::PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        BenchCommand::Admin { batch, json } => {
            let f = parley::dev::bench::admin_during_step(batch, |m| {
                tracing::info!(step = m, "bench admin")
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                match &f.step {
                    Some(s) => println!(
                        "longest local step ({}): {:.1} s, from {} to {} (Unix ms)",
                        s.step,
                        (s.ended_ms - s.started_ms) as f64 / 1e3,
                        s.started_ms,
                        s.ended_ms
                    ),
                    None => println!("no local step of 1 s or more was logged"),
                }
                println!(
                    "job list, idle node: median {:.1} ms\njob list inside the step: {} answers within 1 s (median {:.1} ms, max {:.1} ms), {} slow or failed\njob: {}\nrun {}: {}",
                    f.idle_median_ms,
                    f.during_step,
                    f.during_median_ms,
                    f.during_max_ms,
                    f.during_slow,
                    f.job_state,
                    if f.valid {
                        "valid"
                    } else {
                        "NOT VALID (the step must last >= 5 s with >= 10 queries inside)"
                    },
                    if f.passed { "PASS" } else { "FAIL" }
                );
            }
            Ok(if f.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        BenchCommand::Handshake { iterations, json } => {
            let f = parley::dev::bench::handshake(iterations.max(1)).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
            } else {
                println!(
                    "attested set-up (mutual RA-TLS 1.3, gate 1 + gate 2): {:.3} ms\nplain mutual TLS 1.3 handshake: {:.3} ms\nratio: {:.2}x over {} iterations each",
                    f.attested_ms, f.plain_mtls_ms, f.ratio, f.iterations
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BenchCommand::Mpc {
            parties,
            batches,
            no_in_memory,
            no_loopback,
            no_mul1m,
            gadget_batch,
            mpyc_python,
            json,
        } => {
            if parties.iter().any(|&n| !(3..=7).contains(&n)) {
                anyhow::bail!("--parties: each count must be 3 to 7");
            }
            let opts = parley::dev::bench::MpcOptions {
                parties,
                batches,
                in_memory: !no_in_memory,
                loopback: !no_loopback,
                mul1m: !no_mul1m,
                mpyc_python,
                gadget_batch,
            };
            let f =
                parley::dev::bench::mpc(&opts, |m| tracing::info!(step = m, "bench mpc")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&f)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<13} {:>2} {:<12} {:<3} {:>9} {:>12} {:>12} {:>11} {:>11} {:>7} {:>6}",
                "setting",
                "n",
                "security",
                "job",
                "batch",
                "job mult/s",
                "marg mult/s",
                "job B/mult",
                "marg B/mult",
                "bound",
                "ratio"
            );
            let opt =
                |x: Option<f64>, p: usize| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.p$}"));
            for r in &f.rows {
                println!(
                    "{:<13} {:>2} {:<12} {:<3} {:>9} {:>12.0} {:>12} {:>11.1} {:>11} {:>7.0} {:>6}{}",
                    r.setting,
                    r.n,
                    r.security,
                    r.workload,
                    r.batch,
                    r.job_mults_per_s,
                    opt(r.mults_per_s, 0),
                    r.job_bytes_per_mult_per_party,
                    opt(r.bytes_per_mult_per_party, 1),
                    r.bound_bytes_per_mult,
                    opt(r.ratio_to_bound, 2),
                    if r.output_ok { "" } else { "  WRONG OUTPUT" }
                );
            }
            for g in &f.gadgets {
                if let Some(e) = &g.error {
                    println!(
                        "{:<13} n = {} {}: {} at batch {}: FAILED: {e}",
                        g.setting, g.n, g.security, g.workload, g.batch
                    );
                    continue;
                }
                println!(
                    "{:<13} n = {} {}: {} {:.0}/s at batch {} ({:.0} ms per job, {:.1} B per operation per party){}",
                    g.setting,
                    g.n,
                    g.security,
                    g.workload,
                    g.per_s,
                    g.batch,
                    g.job_ms,
                    g.bytes_per_op_per_party,
                    if g.output_ok { "" } else { "  WRONG OUTPUT" }
                );
            }
            if let Some(m) = &f.mpyc {
                println!(
                    "MPyC (3 local parties, semi-honest): T1 {:.0} mult/s, T2 {:.0} mult/s",
                    m.t1_mults_per_s, m.t2_mults_per_s
                );
            }
            for (k, v) in &f.ratio_to_mpyc {
                println!("Parley / MPyC, 3 processes over loopback, mul-1M {k}: {v:.2}x");
            }
            for (k, v) in &f.malicious_over_semi_honest {
                println!("malicious costs {v:.2}x semi-honest ({k})");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

//! The `parley` binary: the command-line edge. Library errors become `anyhow` here.
#![forbid(unsafe_code)]

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "parley", version, about = "Attested multi-party computation")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a three-hospital federation in simulation mode on built-in sample data.
    Demo(parley::dev::demo::DemoArgs),
    /// Run one node (`parley node --config node.toml`), or `parley node recover --config
    /// node.toml` after restoring its store from a backup.
    Node {
        /// The node's config file.
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        /// Exit when the parent process dies (used by `parley demo` and the launcher).
        #[arg(long, global = true)]
        die_with_parent: bool,
        #[command(subcommand)]
        action: Option<NodeAction>,
    },
    /// Inspect and verify attestation evidence offline (for auditors).
    #[command(subcommand)]
    Attest(cmd::attest::AttestCommand),
    /// Propose jobs and approve or refuse them (over the node's admin socket).
    #[command(subcommand)]
    Job(cmd::job::JobCommand),
    /// Export and verify audit logs; read peer-held tree heads.
    #[command(subcommand)]
    Audit(cmd::audit::AuditCommand),
    /// Import and list the node's datasets.
    #[command(subcommand)]
    Data(cmd::data::DataCommand),
    /// Validate an appraisal policy, or draft one from known-good evidence.
    #[command(subcommand)]
    Policy(cmd::policy::PolicyCommand),
    /// Fill and inspect the collateral cache (AMD KDS, Intel PCS or a PCCS).
    #[command(subcommand)]
    Collateral(cmd::collateral::CollateralCommand),
    /// Rotate, revoke and inspect the node's keys.
    #[command(subcommand)]
    Keys(cmd::keys::KeysCommand),
    /// Measure performance (figures as ratios to a baseline run in the same process).
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Set up and change the federation manifest (export, draft, sign, verify, activate).
    #[command(subcommand)]
    Manifest(cmd::manifest::ManifestCommand),
}

#[derive(Subcommand)]
enum NodeAction {
    /// Run the node in recovery mode: peers' signed tree heads of this node's log tell what a
    /// restored (older) store lost; the node signs a recovery record, starts a new log
    /// generation that names the lost range, restores the ledger counter and spend to what
    /// peers hold, and then runs as usual.
    Recover,
    /// Preflight: build the node as `parley node` would (config, manifest, policy, keys,
    /// evidence, datasets) without starting it or writing to its audit log, then check the
    /// listen port, the data directory's permissions, this node's own evidence under its own
    /// policy and which peers answer. Exits non-zero if the node would not start.
    Check {
        /// Seconds to wait for each peer's TCP answer.
        #[arg(long, default_value_t = 3)]
        peer_timeout: u64,
    },
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("PARLEY_LOG_FILTER").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("PARLEY_LOG").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// SIGTERM or SIGINT. The handlers are installed now, before the node binds anything, so a
/// signal that arrives as soon as the node answers still stops it cleanly. Needs a runtime
/// context (`Runtime::enter`).
fn terminate_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Demo(args) => {
            init_logging();
            runtime()?.block_on(parley::dev::demo::run(args))
        }
        Command::Node {
            config,
            die_with_parent,
            action,
        } => {
            let config = config.context("pass --config NODE.toml")?;
            if let Some(NodeAction::Check { peer_timeout }) = action {
                let cfg = parley::config::NodeConfig::load(&config)?;
                let lines = runtime()?.block_on(parley::check::run(
                    cfg,
                    std::time::Duration::from_secs(peer_timeout),
                ));
                return Ok(if parley::check::print(&lines) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                });
            }
            let recover = matches!(action, Some(NodeAction::Recover));
            if die_with_parent {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .context("cannot ask to be stopped with the parent process")?;
                // The parent may already have died before the request took effect.
                if nix::unistd::getppid() == nix::unistd::Pid::from_raw(1) {
                    anyhow::bail!("the parent process is gone; not starting");
                }
            }
            init_logging();
            let cfg = parley::config::NodeConfig::load(&config)?;
            let rt = runtime()?;
            let stop = {
                let _in_runtime = rt.enter();
                terminate_signal()?
            };
            rt.block_on(parley::node::run(cfg, recover, stop))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Attest(c) => cmd::attest::run(c),
        Command::Policy(c) => cmd::policy::run(c),
        Command::Collateral(c) => runtime()?.block_on(cmd::collateral::run(c)),
        Command::Manifest(c) => runtime()?.block_on(cmd::manifest::run(c)),
        Command::Keys(c) => cmd::keys::run(c),
        Command::Data(c) => runtime()?.block_on(cmd::data::run(c)),
        Command::Job(c) => runtime()?.block_on(cmd::job::run(c)),
        Command::Audit(c) => runtime()?.block_on(cmd::audit::run(c)),
        Command::Bench(c) => {
            init_logging();
            runtime()?.block_on(cmd::bench::run(c))
        }
    }
}

/// `parley … | head` closes our stdout early. Rust ignores SIGPIPE, so `println!` then
/// panics; end quietly with the status a shell expects of a process killed by SIGPIPE.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn main() -> ExitCode {
    quiet_on_closed_stdout();
    // One crypto provider for the whole process: ring (no aws-lc-rs, no OpenSSL).
    let _ = rustls::crypto::ring::default_provider().install_default();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

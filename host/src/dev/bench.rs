//! `parley bench`: figures measured in one process, reported as ratios to a baseline run
//! in the same process (this machine is shared and noisy).
//!
//! `handshake`: an attested session set-up — TCP, mutual TLS 1.3 with RA-TLS verifiers on
//! both sides (gate 1) and the fresh-evidence exchange (gate 2) — against a plain mutual
//! TLS 1.3 handshake with CA-signed P-256 certificates verified by webpki, over loopback.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::dev::setup::{Federation, Plan, free_ports};

#[derive(Debug, Serialize)]
pub struct HandshakeFigures {
    pub iterations: usize,
    /// Mean wall time of one attested set-up (both gates, both directions), ms.
    pub attested_ms: f64,
    /// Mean wall time of one plain mutual TLS 1.3 handshake plus one round trip, ms.
    pub plain_mtls_ms: f64,
    pub ratio: f64,
}

/// Measure `iterations` attested set-ups and as many plain mTLS handshakes, interleaved in
/// blocks so load changes hit both alike.
pub async fn handshake(iterations: usize) -> anyhow::Result<HandshakeFigures> {
    let tmp = tempfile::Builder::new().prefix("parley-bench-").tempdir()?;
    let ports = free_ports(3)?;
    let plan = Plan {
        dir: tmp.path().to_owned(),
        federation: "bench".into(),
        parties: ["a", "b", "c"]
            .iter()
            .zip(&ports)
            .map(|(n, p)| ((*n).to_owned(), format!("127.0.0.1:{p}")))
            .collect(),
        threshold: 1,
        rows: 10,
        measurement: crate::util::measure_self()?,
    };
    let fed = Federation::create(&plan).await?;
    let load = |name: &str| -> anyhow::Result<crate::config::NodeConfig> {
        Ok(crate::config::NodeConfig::load(&fed.party(name)?.config)?)
    };
    let a = crate::node::prepare(load("a")?).await?;
    let b = crate::node::prepare(load("b")?).await?;

    // b accepts attested sessions at its manifest address.
    let listener = TcpListener::bind(&b.epoch().manifest.parties[1].address).await?;
    let bb = b.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let epoch = bb.epoch();
            let acceptor = tokio_rustls::TlsAcceptor::from(epoch.server_config.clone());
            let _ = crate::peer::session::accept(&bb, &epoch, &acceptor, tcp).await;
        }
    });

    let plain = PlainMtls::new()?;
    let plain_addr = plain.serve().await?;

    let (mut attested, mut plain_total) = (Duration::ZERO, Duration::ZERO);
    let block = 10.min(iterations.max(1));
    let mut done = 0;
    while done < iterations {
        let k = block.min(iterations - done);
        let t = Instant::now();
        for _ in 0..k {
            let epoch = a.epoch();
            crate::peer::session::dial(&a, &epoch, 1)
                .await
                .context("attested set-up failed")?;
        }
        attested += t.elapsed();
        let t = Instant::now();
        for _ in 0..k {
            plain.connect(plain_addr).await?;
        }
        plain_total += t.elapsed();
        done += k;
    }
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / iterations as f64;
    let (am, pm) = (per(attested), per(plain_total));
    Ok(HandshakeFigures {
        iterations,
        attested_ms: am,
        plain_mtls_ms: pm,
        ratio: am / pm,
    })
}

/// A CA, a server and a client certificate for plain mutual TLS 1.3.
struct PlainMtls {
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

impl PlainMtls {
    fn new() -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let ca_key = rcgen::KeyPair::generate()?;
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf =
            |name: &str| -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
                let key = rcgen::KeyPair::generate()?;
                let cert = rcgen::CertificateParams::new(vec![name.to_owned()])?
                    .signed_by(&key, &issuer)?;
                Ok((
                    cert.der().clone(),
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
                ))
            };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.der().clone())?;
        let roots = Arc::new(roots);
        let (scert, skey) = leaf("server.bench")?;
        let (ccert, ckey) = leaf("client.bench")?;
        let cv = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            provider.clone(),
        )
        .build()?;
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(cv)
            .with_single_cert(vec![scert], skey)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(vec![ccert], ckey)?;
        Ok(PlainMtls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    async fn serve(&self) -> anyhow::Result<std::net::SocketAddr> {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let mut b = [0u8; 1];
                        if tls.read_exact(&mut b).await.is_ok() {
                            let _ = tls.write_all(&b).await;
                        }
                    }
                });
            }
        });
        Ok(addr)
    }

    /// One handshake and one round trip (so the server's client-certificate check is done).
    async fn connect(&self, addr: std::net::SocketAddr) -> anyhow::Result<()> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("server.bench")?;
        let mut tls = tokio_rustls::TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await?;
        tls.write_all(&[7]).await?;
        let mut b = [0u8; 1];
        tls.read_exact(&mut b).await?;
        Ok(())
    }
}

// ---- parley bench mpc -------------------------------------------------------------------

use parley_enclave::engine::Security;
use parley_enclave::field::{Field, M127};
use parley_enclave::program::{Program, Recipients};

use crate::dev::launcher::NodeProcess;
use crate::jobs::job::{BenchSpec, BenchWorkload, JobOutput, SecurityModel};

/// Checksum of mul-1M T1 (BASELINES).
pub const MUL1M_CHECKSUM: &str = "250488864338";

/// What to measure.
#[derive(Debug, Clone)]
pub struct MpcOptions {
    pub parties: Vec<usize>,
    pub batches: Vec<u64>,
    pub in_memory: bool,
    pub loopback: bool,
    /// Also run mul-1M T1 and T2 over loopback with 3 processes.
    pub mul1m: bool,
    /// A Python with MPyC installed: runs mul-1M on MPyC in the same run.
    pub mpyc_python: Option<std::path::PathBuf>,
    /// Also measure comparisons and truncations per second (issue 9), n = 3, malicious, in
    /// each enabled setting, at this batch (0: skip).
    pub gadget_batch: u64,
}

/// Comparisons or truncations per second: one whole job (input sharing, random bits,
/// verification, the batch, one output), n = 3 (t = 1), malicious.
#[derive(Debug, Clone, Serialize)]
pub struct GadgetRow {
    /// `in-memory` (all parties in one thread) or `loopback-tls` (3 processes).
    pub setting: &'static str,
    pub n: usize,
    pub security: &'static str,
    /// `comparisons` (`ltz` of 32-bit values) or `truncations` (`trunc_pr` 63 → 47 bits).
    pub workload: &'static str,
    pub batch: u64,
    pub job_ms: f64,
    /// Operations per second over the whole job.
    pub per_s: f64,
    /// MPC bytes the last party (no inputs) sent, per operation.
    pub bytes_per_op_per_party: f64,
    pub output_ok: bool,
    /// Why the job did not finish, if it did not.
    pub error: Option<String>,
}

/// One measured configuration. Times are the job (key set-up, input sharing, the
/// multiplications, malicious verification, the output opening) and the same job without
/// the multiplications; `mults_per_s` is the multiplications over the difference.
#[derive(Debug, Clone, Serialize)]
pub struct MpcRow {
    /// `in-memory` (all parties in one thread) or `loopback-tls` (n processes).
    pub setting: &'static str,
    pub n: usize,
    pub t: usize,
    pub security: &'static str,
    pub workload: &'static str,
    pub batch: u64,
    pub job_ms: f64,
    pub baseline_ms: f64,
    /// Multiplications over the whole job's time (latency-bound at small batches).
    pub job_mults_per_s: f64,
    /// Multiplications over (job − baseline): the marginal cost of the multiplications and
    /// their verification, input sharing excluded (BASELINES' timing). Batches ≥ 1000 only,
    /// and only when the difference stands out of the timing noise.
    pub mults_per_s: Option<f64>,
    /// MPC bytes a non-input party sent in the whole job (key set-up, sharing, products,
    /// verification, opening), per multiplication.
    pub job_bytes_per_mult_per_party: f64,
    /// MPC bytes of (job − baseline) per multiplication, batches ≥ 1000 only.
    pub bytes_per_mult_per_party: Option<f64>,
    /// DESIGN §9: n − 1 − t elements per multiplication (doubled when malicious).
    pub bound_bytes_per_mult: f64,
    pub ratio_to_bound: Option<f64>,
    pub output_ok: bool,
}

/// Below this batch the baseline's one product is not negligible: no marginal figures.
const MARGINAL_MIN_BATCH: u64 = 1000;
/// A marginal rate needs the multiplications to take at least this share of the job.
const MARGINAL_MIN_SHARE: f64 = 0.05;

#[derive(Debug, Clone, Serialize)]
pub struct MpycRow {
    pub t1_mults_per_s: f64,
    pub t2_mults_per_s: f64,
    pub t1_seconds: f64,
    pub t2_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MpcFigures {
    pub rows: Vec<MpcRow>,
    /// Comparisons and truncations per second.
    pub gadgets: Vec<GadgetRow>,
    pub mpyc: Option<MpycRow>,
    /// Parley's 3-process loopback mul-1M T1 throughput over MPyC's, per security model.
    pub ratio_to_mpyc: Vec<(String, f64)>,
    /// Malicious over semi-honest cost at the largest batch, per setting and n.
    pub malicious_over_semi_honest: Vec<(String, f64)>,
}

fn bound(n: usize, t: usize, security: Security) -> f64 {
    let per = ((n - 1 - t) * 16) as f64;
    if security == Security::Malicious {
        2.0 * per
    } else {
        per
    }
}

fn security_name(s: Security) -> &'static str {
    match s {
        Security::Malicious => "malicious",
        Security::SemiHonest => "semi-honest",
    }
}

fn workload_name(w: BenchWorkload) -> &'static str {
    match w {
        BenchWorkload::T1 | BenchWorkload::T1Baseline => "T1",
        BenchWorkload::T2 | BenchWorkload::T2Baseline => "T2",
        BenchWorkload::Compare => "comparisons",
        BenchWorkload::Trunc => "truncations",
    }
}

/// The comparison and truncation rows of one setting.
async fn gadget_rows(
    setting: &'static str,
    batch: u64,
    fed: Option<&mut LoopbackFederation>,
    progress: &impl Fn(&str),
) -> anyhow::Result<Vec<GadgetRow>> {
    use parley_enclave::gadgets::bench::{measure_in_memory, output_ok};
    let mut rows = Vec::new();
    let mut fed = fed;
    for workload in [BenchWorkload::Compare, BenchWorkload::Trunc] {
        let name = workload_name(workload);
        progress(&format!(
            "{setting}: n = 3, malicious, {name}, batch {batch}"
        ));
        let Some(g) = crate::jobs::programs::gadget(workload) else {
            continue;
        };
        let (secs, bytes, ok) = match fed.as_deref_mut() {
            None => {
                let t0 = Instant::now();
                let clock = move || t0.elapsed().as_secs_f64();
                let size = usize::try_from(batch)?;
                let f = measure_in_memory(g, 3, size, Security::Malicious, &clock)?;
                (f.seconds, f.bytes_per_party, f.output_ok)
            }
            Some(fed) => match fed.job(workload, batch, Security::Malicious).await {
                Ok((secs, bytes, out)) => {
                    let ok = out
                        .and_then(|o| o.parse::<i128>().ok())
                        .is_some_and(|v| output_ok(g, batch as usize, v));
                    (secs, bytes, ok)
                }
                Err(e) => {
                    // Recorded, not fatal: at batch 10^6 three node processes need about
                    // 7 GB each, and a smaller machine loses one (the row says so).
                    rows.push(GadgetRow {
                        setting,
                        n: 3,
                        security: "malicious",
                        workload: name,
                        batch,
                        job_ms: f64::NAN,
                        per_s: f64::NAN,
                        bytes_per_op_per_party: f64::NAN,
                        output_ok: false,
                        error: Some(format!("{e:#}")),
                    });
                    // The federation may have lost a node: start a fresh one for the next.
                    fed.restart().await?;
                    continue;
                }
            },
        };
        rows.push(GadgetRow {
            setting,
            n: 3,
            security: "malicious",
            workload: name,
            batch,
            job_ms: secs * 1e3,
            per_s: batch as f64 / secs.max(1e-9),
            bytes_per_op_per_party: bytes as f64 / batch.max(1) as f64,
            output_ok: ok,
            error: None,
        });
    }
    Ok(rows)
}

fn model(security: Security) -> SecurityModel {
    if security == Security::Malicious {
        SecurityModel::Malicious
    } else {
        SecurityModel::SemiHonest
    }
}

/// The admin request that proposes a `bench-mul` job: no dataset, `size` products of
/// `workload` (the loopback bench and the integration tests).
pub fn bench_request(
    workload: BenchWorkload,
    size: u64,
    security: SecurityModel,
) -> crate::admin::AdminRequest {
    crate::admin::AdminRequest::Submit {
        kind: crate::jobs::job::JobKind::BenchMul,
        dataset: String::new(),
        columns: Vec::new(),
        security,
        bench: Some(BenchSpec { workload, size }),
        recipients: Vec::new(),
        analytics: None,
    }
}

fn spec(workload: BenchWorkload, size: u64, security: Security) -> crate::jobs::job::JobSpec {
    crate::jobs::job::JobSpec {
        id: crate::jobs::job::JobId([0; 16]),
        kind: crate::jobs::job::JobKind::BenchMul,
        dataset: String::new(),
        columns: Vec::new(),
        proposer: String::new(),
        manifest_hash: [0; 32],
        created: 0,
        security: model(security),
        bench: Some(BenchSpec { workload, size }),
        recipients: Vec::new(),
        nonce: [0; 16],
        expires: i64::MAX,
        dataset_versions: Default::default(),
        analytics: None,
    }
}

fn baseline(w: BenchWorkload) -> BenchWorkload {
    match w {
        BenchWorkload::T1 | BenchWorkload::T1Baseline => BenchWorkload::T1Baseline,
        BenchWorkload::T2 | BenchWorkload::T2Baseline => BenchWorkload::T2Baseline,
        other => other,
    }
}

fn expected_t1(size: u64) -> String {
    (0..size)
        .map(|i| u128::from(i % 1000 + 1) * u128::from(i % 997 + 2))
        .sum::<u128>()
        .to_string()
}

/// All parties of one job in one thread (the enclave's harness): wall time and the bytes
/// party n−1 (no inputs) sent.
fn in_memory_job(
    n: usize,
    t: usize,
    security: Security,
    program: Arc<Program<M127>>,
    size: u64,
) -> anyhow::Result<(f64, u64, Option<String>)> {
    use parley_enclave::sim::{Harness, engines};
    let b = BenchSpec {
        workload: BenchWorkload::T1,
        size,
    };
    let inputs = (0..n)
        .map(|me| crate::jobs::programs::bench_inputs(me, b))
        .collect();
    let parties = engines(
        t,
        security,
        program,
        inputs,
        parley_enclave::SessionId([9; 32]),
        7,
    )?;
    let start = Instant::now();
    let report = Harness::new(parties, 7).run();
    let wall = start.elapsed().as_secs_f64();
    let out = report.outcomes[0]
        .output()
        .and_then(|o| o.values.first()?.as_ref()?.first()?.to_i128_vartime())
        .map(|v| v.to_string());
    Ok((wall, report.traffic[n - 1].payload_bytes, out))
}

fn row(
    setting: &'static str,
    (n, t, security, workload, batch): (usize, usize, Security, BenchWorkload, u64),
    (job_s, base_s): (f64, f64),
    (job_bytes, base_bytes): (u64, u64),
    output_ok: bool,
) -> MpcRow {
    let mults = crate::jobs::programs::bench_mults(BenchSpec {
        workload,
        size: batch,
    })
    .max(1) as f64;
    let marginal = batch >= MARGINAL_MIN_BATCH;
    let bytes = marginal.then(|| (job_bytes as f64 - base_bytes as f64).max(0.0) / mults);
    let b = bound(n, t, security);
    MpcRow {
        setting,
        n,
        t,
        security: security_name(security),
        workload: workload_name(workload),
        batch,
        job_ms: job_s * 1e3,
        baseline_ms: base_s * 1e3,
        job_mults_per_s: mults / job_s.max(1e-9),
        // At small batches the difference can drown in the noise of two separate jobs (or
        // come out negative): no figure rather than an absurd one.
        mults_per_s: (marginal && job_s - base_s > MARGINAL_MIN_SHARE * job_s)
            .then(|| mults / (job_s - base_s)),
        job_bytes_per_mult_per_party: job_bytes as f64 / mults,
        bytes_per_mult_per_party: bytes,
        bound_bytes_per_mult: b,
        ratio_to_bound: bytes.map(|x| x / b),
        output_ok,
    }
}

/// Best of `reps` for timing (the machine is shared and noisy).
const REPS: usize = 3;

pub async fn mpc(opts: &MpcOptions, progress: impl Fn(&str)) -> anyhow::Result<MpcFigures> {
    let mut rows = Vec::new();
    let securities = [Security::SemiHonest, Security::Malicious];
    if opts.in_memory {
        for &n in &opts.parties {
            let t = (n - 1) / 2;
            for security in securities {
                for &batch in &opts.batches {
                    progress(&format!(
                        "in memory: n = {n}, {}, batch {batch}",
                        security_name(security)
                    ));
                    let prog = crate::jobs::programs::build(
                        &spec(BenchWorkload::T1, batch, security),
                        n,
                        t,
                        Recipients::All,
                    )?;
                    let base = crate::jobs::programs::build(
                        &spec(BenchWorkload::T1Baseline, batch, security),
                        n,
                        t,
                        Recipients::All,
                    )?;
                    let (mut best, mut best_base, mut bytes, mut base_bytes, mut ok) =
                        (f64::MAX, f64::MAX, 0, 0, false);
                    for _ in 0..REPS {
                        let (s, b, out) = in_memory_job(n, t, security, prog.clone(), batch)?;
                        let (sb, bb, _) = in_memory_job(n, t, security, base.clone(), batch)?;
                        best = best.min(s);
                        best_base = best_base.min(sb);
                        (bytes, base_bytes) = (b, bb);
                        ok = out.as_deref() == Some(expected_t1(batch).as_str());
                    }
                    rows.push(row(
                        "in-memory",
                        (n, t, security, BenchWorkload::T1, batch),
                        (best, best_base),
                        (bytes, base_bytes),
                        ok,
                    ));
                }
            }
        }
    }
    let mut gadgets = Vec::new();
    if opts.in_memory && opts.gadget_batch > 0 {
        gadgets.extend(gadget_rows("in-memory", opts.gadget_batch, None, &progress).await?);
    }
    if opts.loopback && opts.gadget_batch > 0 {
        progress("loopback: starting 3 node processes for comparisons and truncations");
        let mut fed = LoopbackFederation::start(3).await?;
        let r = gadget_rows("loopback-tls", opts.gadget_batch, Some(&mut fed), &progress).await;
        fed.stop().await;
        gadgets.extend(r?);
    }
    if opts.loopback || opts.mul1m {
        let sizes: Vec<usize> = if opts.loopback {
            opts.parties.clone()
        } else {
            vec![3]
        };
        for n in sizes {
            let t = (n - 1) / 2;
            progress(&format!("loopback: starting {n} node processes"));
            let mut fed = LoopbackFederation::start(n).await?;
            let mut jobs: Vec<(BenchWorkload, u64)> = Vec::new();
            if opts.loopback {
                jobs.extend(opts.batches.iter().map(|&b| (BenchWorkload::T1, b)));
            }
            if opts.mul1m && n == 3 {
                jobs.extend([
                    (BenchWorkload::T1, 1_000_000),
                    (BenchWorkload::T2, 1_000_000),
                ]);
            }
            jobs.dedup();
            for security in securities {
                for &(workload, batch) in &jobs {
                    progress(&format!(
                        "loopback: n = {n}, {}, {} batch {batch}",
                        security_name(security),
                        workload_name(workload)
                    ));
                    let (mut best, mut best_base, mut bytes, mut base_bytes, mut ok) =
                        (f64::MAX, f64::MAX, 0, 0, false);
                    for _ in 0..REPS {
                        let (s, b, out) = fed.job(workload, batch, security).await?;
                        let (sb, bb, _) = fed.job(baseline(workload), batch, security).await?;
                        best = best.min(s);
                        best_base = best_base.min(sb);
                        (bytes, base_bytes) = (b, bb);
                        ok = workload != BenchWorkload::T1
                            || out.as_deref() == Some(expected_t1(batch).as_str());
                    }
                    rows.push(row(
                        "loopback-tls",
                        (n, t, security, workload, batch),
                        (best, best_base),
                        (bytes, base_bytes),
                        ok,
                    ));
                }
            }
            fed.stop().await;
        }
    }
    let mpyc = match &opts.mpyc_python {
        Some(py) => {
            progress("MPyC: mul-1M with 3 local parties");
            Some(run_mpyc(py).await?)
        }
        None => None,
    };
    let mut ratio_to_mpyc = Vec::new();
    if let Some(m) = &mpyc {
        for r in rows
            .iter()
            .filter(|r| r.setting == "loopback-tls" && r.n == 3 && r.batch == 1_000_000)
        {
            let base = if r.workload == "T1" {
                m.t1_mults_per_s
            } else {
                m.t2_mults_per_s
            };
            if let Some(x) = r.mults_per_s {
                ratio_to_mpyc.push((format!("{} {}", r.workload, r.security), x / base));
            }
        }
    }
    let mut malicious_over_semi_honest = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.security == "malicious" && r.workload == "T1")
    {
        let largest = rows
            .iter()
            .filter(|x| x.setting == r.setting && x.n == r.n && x.workload == "T1")
            .map(|x| x.batch)
            .max();
        if Some(r.batch) != largest {
            continue;
        }
        if let Some(s) = rows.iter().find(|x| {
            x.setting == r.setting
                && x.n == r.n
                && x.batch == r.batch
                && x.workload == "T1"
                && x.security == "semi-honest"
        }) && let (Some(a), Some(b)) = (s.mults_per_s, r.mults_per_s)
        {
            malicious_over_semi_honest
                .push((format!("{} n={} batch {}", r.setting, r.n, r.batch), a / b));
        }
    }
    Ok(MpcFigures {
        rows,
        gadgets,
        mpyc,
        ratio_to_mpyc,
        malicious_over_semi_honest,
    })
}

/// n `parley node` processes on 127.0.0.1 running bench jobs.
struct LoopbackFederation {
    _tmp: tempfile::TempDir,
    nodes: Vec<NodeProcess>,
}

impl LoopbackFederation {
    async fn start(n: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?;
        let tmp = tempfile::Builder::new()
            .prefix("parley-bench-mpc-")
            .tempdir()?;
        let ports = free_ports(n)?;
        let plan = Plan {
            dir: tmp.path().to_owned(),
            federation: "bench".into(),
            parties: (0..n)
                .zip(&ports)
                .map(|(i, p)| (format!("party-{i}"), format!("127.0.0.1:{p}")))
                .collect(),
            threshold: (n - 1) / 2,
            rows: 10,
            measurement: crate::util::measure_file(&exe)?,
        };
        let fed = Federation::create(&plan).await?;
        for p in &fed.parties {
            fed.edit_config(&p.name, |c| {
                c.jobs.auto_approve.push("bench-mul".into());
                // Batches of 10^6 comparisons keep a node busy for minutes.
                c.jobs.timeout_secs = c.jobs.timeout_secs.max(1800);
            })?;
        }
        let mut nodes = Vec::new();
        for p in &fed.parties {
            nodes.push(NodeProcess::spawn(
                &exe,
                &p.name,
                &p.config,
                &p.dir,
                &p.dir.join("node.log"),
            )?);
        }
        crate::dev::launcher::wait_until(
            &mut nodes,
            Duration::from_secs(60),
            "attested sessions",
            crate::dev::launcher::all_connected,
        )
        .await?;
        Ok(LoopbackFederation { _tmp: tmp, nodes })
    }

    /// Bytes of MPC frames (not attestation or job control) this node has sent.
    fn sent_by(status: &crate::admin::NodeStatus) -> u64 {
        const MPC: &[&str] = &[
            "share", "open", "reshare", "commit", "key-deal", "key-echo", "abort",
        ];
        status
            .counters
            .values()
            .flat_map(|c| c.sent.iter())
            .filter(|(k, _)| MPC.contains(&k.as_str()))
            .map(|(_, t)| t.bytes)
            .sum()
    }

    /// Run one job; returns the slowest node's compute time (s), the bytes the last party
    /// (no inputs) sent during it, and the opened output.
    async fn job(
        &mut self,
        workload: BenchWorkload,
        size: u64,
        security: Security,
    ) -> anyhow::Result<(f64, u64, Option<String>)> {
        use crate::admin::AdminResponse;
        let last = self.nodes.len() - 1;
        let before = Self::sent_by(&self.nodes[last].status().await?);
        let req = bench_request(workload, size, model(security));
        let id = match self.nodes[0].request(&req).await? {
            AdminResponse::Submitted { id } => id,
            AdminResponse::Error { message } => {
                anyhow::bail!("the bench job was not accepted: {message}")
            }
            other => anyhow::bail!("the bench job was not accepted: {}", other.unexpected()),
        };
        let views = crate::dev::launcher::wait_job(
            &self.nodes,
            id,
            crate::dev::launcher::JobReach::EveryNode,
            Duration::from_secs(600),
            Duration::from_secs(600),
        )
        .await?;
        let views: Vec<&crate::jobs::job::JobView> = views.iter().flatten().collect();
        if let Some(v) = views
            .iter()
            .find(|v| v.state != crate::jobs::job::JobState::Done)
        {
            anyhow::bail!("bench job failed: {}", v.state);
        }
        let secs = views.iter().filter_map(|v| v.compute_us).max().unwrap_or(0) as f64 / 1e6;
        let out = match &views[0].result {
            Some(JobOutput::BenchMul(s)) => Some(s.clone()),
            _ => None,
        };
        let after = Self::sent_by(&self.nodes[last].status().await?);
        Ok((secs, after.saturating_sub(before), out))
    }

    /// Stops the nodes and starts a fresh federation of the same size.
    async fn restart(&mut self) -> anyhow::Result<()> {
        let n = self.nodes.len();
        for node in self.nodes.iter_mut() {
            node.stop(Duration::from_secs(5)).await;
        }
        *self = Self::start(n).await?;
        Ok(())
    }

    async fn stop(mut self) {
        for n in self.nodes.iter_mut() {
            n.stop(Duration::from_secs(5)).await;
        }
    }
}

async fn run_mpyc(python: &std::path::Path) -> anyhow::Result<MpycRow> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/mpyc_mul1m.py");
    let out = tokio::process::Command::new(python)
        .arg(&script)
        .arg("1000000")
        .arg("-M3")
        .output()
        .await
        .with_context(|| format!("cannot run {} {}", python.display(), script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| {
            format!(
                "MPyC printed no result (is mpyc installed for {}?): {}",
                python.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let v: serde_json::Value = serde_json::from_str(line)?;
    let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(MpycRow {
        t1_mults_per_s: f("t1_mults_per_s"),
        t2_mults_per_s: f("t2_mults_per_s"),
        t1_seconds: f("t1_seconds"),
        t2_seconds: f("t2_seconds"),
    })
}

/// `parley bench admin`: how fast a node answers `parley job list` while it is inside the
/// longest local step of a large comparison job.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AdminFigures {
    /// Comparisons in the job.
    pub batch: u64,
    pub job_state: String,
    /// The queried node's longest local step, as its log records it (Unix ms).
    pub step: Option<LoggedStep>,
    /// `job list` answers on the idle node before the job (the baseline), ms.
    pub idle_median_ms: f64,
    /// Queries sent after the step started and answered before it ended.
    pub during_step: usize,
    pub during_median_ms: f64,
    pub during_max_ms: f64,
    /// Queries during the step that took a second or more (or failed).
    pub during_slow: usize,
    /// The run counts: the step lasted at least 5 s, and at least 10 queries inside it
    /// each answered within 1 s.
    pub valid: bool,
    pub passed: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LoggedStep {
    pub step: String,
    pub started_ms: i64,
    pub ended_ms: i64,
}

/// One `parley job list` (the CLI, as an operator runs it): when it was sent (Unix ms),
/// how long it took, whether it answered.
async fn job_list_once(exe: &std::path::Path, config: &std::path::Path) -> (i64, f64, bool) {
    let sent = crate::util::unix_now_ms();
    let t0 = Instant::now();
    let ok = tokio::process::Command::new(exe)
        .args(["job", "list", "--json", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    (sent, t0.elapsed().as_secs_f64() * 1e3, ok)
}

/// The longest "long local step" of `job` in a node's JSON log.
fn longest_logged_step(log: &std::path::Path, job: &str) -> Option<LoggedStep> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "long local step" && v["job"] == job)
        .filter_map(|v| {
            Some(LoggedStep {
                step: v["step"].as_str()?.to_owned(),
                started_ms: v["started_ms"].as_i64()?,
                ended_ms: v["ended_ms"].as_i64()?,
            })
        })
        .max_by_key(|s| s.ended_ms - s.started_ms)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub async fn admin_during_step(
    batch: u64,
    progress: impl Fn(&str),
) -> anyhow::Result<AdminFigures> {
    use crate::admin::AdminResponse;
    let exe = std::env::current_exe()?;
    progress("starting a 3-node federation over loopback TLS");
    let fed = LoopbackFederation::start(3).await?;
    let node = &fed.nodes[0];
    let (config, log) = (node.config.clone(), node.log.clone());
    let mut idle = Vec::new();
    for _ in 0..10 {
        idle.push(job_list_once(&exe, &config).await.1);
    }
    progress(&format!(
        "{batch} comparisons, malicious; querying job list meanwhile"
    ));
    let req = bench_request(BenchWorkload::Compare, batch, SecurityModel::Malicious);
    let id = match fed.nodes[0].request(&req).await? {
        AdminResponse::Submitted { id } => id,
        AdminResponse::Error { message } => anyhow::bail!("the bench job was refused: {message}"),
        other => anyhow::bail!(other.unexpected()),
    };
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let (qexe, qcfg) = (exe.clone(), config.clone());
    let querier = tokio::spawn(async move {
        let mut out = Vec::new();
        while !*stop_rx.borrow() {
            out.push(job_list_once(&qexe, &qcfg).await);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop_rx.changed() => {}
            }
        }
        out
    });
    let views = crate::dev::launcher::wait_job(
        &fed.nodes,
        id,
        crate::dev::launcher::JobReach::EveryNode,
        Duration::from_secs(1800),
        Duration::from_secs(60),
    )
    .await;
    let _ = stop_tx.send(true);
    let queries = querier.await.unwrap_or_default();
    let job_state = match &views {
        Ok(v) => v
            .iter()
            .flatten()
            .map(|v| v.state.to_string())
            .find(|s| s != "done")
            .unwrap_or_else(|| "done".into()),
        Err(e) => format!("{e:#}"),
    };
    // The log goes with the federation's directory: read it first.
    let step = longest_logged_step(&log, &id.to_string());
    fed.stop().await;
    let inside: Vec<&(i64, f64, bool)> = step.as_ref().map_or_else(Vec::new, |s| {
        queries
            .iter()
            .filter(|(sent, _, _)| *sent >= s.started_ms && *sent < s.ended_ms)
            .collect()
    });
    let answered: Vec<f64> = inside
        .iter()
        .filter(|(sent, ms, ok)| {
            *ok && *ms < 1000.0
                && step
                    .as_ref()
                    .is_some_and(|s| *sent + (*ms as i64) <= s.ended_ms)
        })
        .map(|q| q.1)
        .collect();
    let slow = inside.len() - answered.len();
    let long_enough = step
        .as_ref()
        .is_some_and(|s| s.ended_ms - s.started_ms >= 5000);
    let valid = long_enough && answered.len() >= 10;
    Ok(AdminFigures {
        batch,
        job_state,
        step,
        idle_median_ms: median(idle),
        during_step: answered.len(),
        during_median_ms: median(answered.clone()),
        during_max_ms: inside.iter().map(|q| q.1).fold(0.0, f64::max),
        during_slow: slow,
        valid,
        passed: valid && slow == 0,
    })
}

//! `parley attest ...`: offline inspection, verification and appraisal of evidence, and
//! the check of stored verdicts, for auditors.
//!
//! Every evidence type goes through one interface (`parley_attestation::evidence`); the
//! per-type modules only load roots and certificates from files. Nothing here touches the
//! network.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use parley_attestation::appraise::Appraiser;
use parley_attestation::collateral::CollateralSet;
use parley_attestation::ear::{Ear, SignedVerdict, to_be_signed};
use parley_attestation::evidence::{self, EvidenceKind, Inputs};
use parley_attestation::hexbytes::{Ed25519Key, HexBytes};
use parley_attestation::policy::PolicyDoc;
use parley_attestation::verdict::{Reason, Status, codes};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

#[derive(Subcommand)]
pub enum AttestCommand {
    /// Print every parsed field of a piece of evidence.
    Inspect {
        /// The evidence file (raw bytes).
        file: PathBuf,
        /// Print JSON (the default and only format for now).
        #[arg(long)]
        json: bool,
        /// Override type detection: snp, tdx or sim.
        #[arg(long = "type")]
        kind: Option<EvidenceKind>,
    },
    /// Verify evidence at a given time: genuineness only, or with --policy a full appraisal
    /// printed as an EAR verdict (exit 0 only when affirming, or warning with
    /// --allow-warning).
    Verify {
        /// The evidence file (raw bytes).
        file: PathBuf,
        /// Appraise against this policy file and print the verdict (EAR).
        #[arg(long)]
        policy: Option<PathBuf>,
        #[command(flatten)]
        inputs: InputArgs,
        /// Verification time (RFC 3339); defaults to now.
        #[arg(long)]
        at: Option<String>,
        /// With --policy: the report data the evidence must bind (128 hex digits).
        #[arg(long)]
        report_data: Option<String>,
        /// With --policy: exit 0 for a warning verdict too.
        #[arg(long)]
        allow_warning: bool,
        /// With --policy: sign the verdict with this node's identity key (its node.toml).
        #[arg(long)]
        sign_with: Option<PathBuf>,
        /// Print JSON (the default and only format for now).
        #[arg(long)]
        json: bool,
        /// Override type detection: snp, tdx or sim.
        #[arg(long = "type")]
        kind: Option<EvidenceKind>,
    },
    /// Check a signed verdict: its signature, and that appraising the evidence again with
    /// the policy, collateral and roots at the verdict's time gives a byte-identical body.
    CheckVerdict {
        /// The signed verdict (JSON, as `attest verify --sign-with` prints it).
        verdict: PathBuf,
        /// The evidence the verdict is about.
        #[arg(long)]
        evidence: PathBuf,
        /// The policy it was appraised against.
        #[arg(long)]
        policy: PathBuf,
        #[command(flatten)]
        inputs: InputArgs,
        /// Require this signer (`ed25519:<hex>`), e.g. the node's key from the manifest.
        #[arg(long)]
        key: Option<Ed25519Key>,
    },
    /// Collect this confidential VM's evidence (to draft a policy with `policy
    /// from-evidence`, or to fetch collateral for it). The report data is all zero unless
    /// given: such evidence proves the platform and code, not any key.
    Collect {
        /// snp or tdx.
        #[arg(long = "type")]
        kind: EvidenceKind,
        /// The configfs-tsm report directory.
        #[arg(long, default_value = parley_attestation::collect::DEFAULT_TSM_REPORT_ROOT)]
        tsm_root: PathBuf,
        /// 64 bytes of report data, hex.
        #[arg(long)]
        report_data: Option<String>,
        /// Where to write the evidence.
        #[arg(long)]
        out: PathBuf,
        /// SNP: where to write the host's certificate table's certificates (VCEK or VLEK,
        /// ASK, ARK), one DER file each, for `--certs`.
        #[arg(long)]
        certs_out: Option<PathBuf>,
    },
    /// Show a running node's latest verdicts about each peer (both gates), their age and
    /// reasons, over the node's admin socket.
    Peers {
        /// The node's config file (locates its admin socket).
        #[arg(long)]
        config: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Roots and collateral given on the command line.
#[derive(clap::Args, Clone, Default)]
pub struct InputArgs {
    /// SNP: a directory (or file) holding the VCEK or VLEK (PEM or DER), its chain, CRLs.
    #[arg(long)]
    pub certs: Option<PathBuf>,
    /// A collateral cache (`parley collateral fetch`), or a flat TDX collateral directory.
    #[arg(long)]
    pub collateral: Option<PathBuf>,
    /// A directory of root certificates (or simulation root keys) to use instead of the
    /// pinned vendor roots.
    #[arg(long)]
    pub roots: Option<PathBuf>,
}

/// Build the verification inputs for evidence of `kind` from the command line.
pub fn load_inputs(kind: Option<EvidenceKind>, args: &InputArgs) -> anyhow::Result<Inputs> {
    let mut inputs = Inputs::default();
    if let Some(dir) = &args.collateral {
        let set = CollateralSet::load(dir)
            .with_context(|| format!("cannot use --collateral {}", dir.display()))?;
        inputs.snp = set.snp;
        inputs.tdx = set.tdx;
    }
    if let Some(dir) = &args.certs {
        for (name, data) in super::attest_snp::read_inputs(dir)? {
            inputs.snp.add_file(&name, &data);
        }
    }
    if let Some(dir) = &args.roots {
        match kind {
            Some(EvidenceKind::Snp) => inputs.snp_roots = Some(super::attest_snp::roots(dir)?),
            Some(EvidenceKind::Tdx) => inputs.tdx_roots = Some(super::attest_tdx::roots(dir)?),
            Some(EvidenceKind::Sim) => inputs.sim_roots = super::attest_sim::roots(dir)?,
            None => {}
        }
    }
    Ok(inputs)
}

fn parse_at(at: Option<&str>) -> anyhow::Result<OffsetDateTime> {
    Ok(match at {
        Some(s) => OffsetDateTime::parse(s, &Rfc3339).with_context(|| {
            format!("--at {s:?} is not an RFC 3339 time (e.g. 2025-06-20T00:00:00Z)")
        })?,
        None => OffsetDateTime::now_utc(),
    })
}

fn collect(
    kind: EvidenceKind,
    tsm_root: PathBuf,
    report_data: Option<&str>,
    out: &Path,
    certs_out: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    use parley::tee::{EvidenceSource, SnpTee, TdxTee};
    let mut rd = [0u8; 64];
    if let Some(h) = report_data {
        let bytes = hex::decode(h).context("--report-data is not hex")?;
        rd = bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("--report-data has {} bytes, not 64", b.len()))?;
    }
    let source: Box<dyn EvidenceSource> = match kind {
        EvidenceKind::Snp => Box::new(SnpTee {
            tsm_root,
            vmpl: None,
        }),
        EvidenceKind::Tdx => Box::new(TdxTee { tsm_root }),
        EvidenceKind::Sim => anyhow::bail!(
            "simulated evidence comes from a node (its simulation key); collect snp or tdx evidence here"
        ),
    };
    let c = source.collect(&rd)?;
    std::fs::write(out, &c.evidence).with_context(|| format!("cannot write {}", out.display()))?;
    println!(
        "{} evidence: {} ({} bytes)",
        source.mode(),
        out.display(),
        c.evidence.len()
    );
    if let Some(dir) = certs_out {
        let entries = parley_attestation::snp::certtable::parse(&c.endorsements)?;
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        for (i, e) in entries.iter().enumerate() {
            use parley_attestation::snp::certtable::EntryKind;
            let kind = match e.kind {
                EntryKind::Ark => "ark",
                EntryKind::Ask => "ask",
                EntryKind::Vcek => "vcek",
                EntryKind::Vlek => "vlek",
                EntryKind::Crl => "crl",
                EntryKind::Other(_) => "other",
            };
            let name = format!("{i}-{kind}.der");
            let path = dir.join(&name);
            std::fs::write(&path, &e.data)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("certificate table entry: {}", path.display());
        }
        if entries.is_empty() {
            println!(
                "the host supplied no certificate table; fetch the VCEK with `parley collateral fetch`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn load_policy(path: &Path) -> anyhow::Result<PolicyDoc> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read policy {}", path.display()))?;
    Ok(PolicyDoc::parse(&text, &path.display().to_string())?)
}

pub fn run(cmd: AttestCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AttestCommand::Peers { config, json } => peers(&config, json),
        AttestCommand::Collect {
            kind,
            tsm_root,
            report_data,
            out,
            certs_out,
        } => collect(
            kind,
            tsm_root,
            report_data.as_deref(),
            &out,
            certs_out.as_deref(),
        ),
        AttestCommand::Inspect { file, kind, .. } => {
            let bytes = read(&file)?;
            let kind = detect(&bytes, kind, &file)?;
            let value = evidence::verifier(kind)
                .inspect(&bytes)
                .map_err(anyhow::Error::msg)
                .with_context(|| {
                    format!(
                        "cannot parse {} as {} evidence",
                        file.display(),
                        kind.as_str()
                    )
                })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        AttestCommand::Verify {
            file,
            policy,
            inputs,
            at,
            report_data,
            allow_warning,
            sign_with,
            kind,
            ..
        } => {
            let bytes = read(&file)?;
            let at = parse_at(at.as_deref())?;
            let kind = kind.or_else(|| evidence::detect(&bytes));
            let loaded = load_inputs(kind, &inputs)?;
            match policy {
                Some(path) => {
                    let doc = load_policy(&path)?;
                    let expected = report_data
                        .map(|h| {
                            h.parse::<HexBytes<64>>()
                                .map_err(|e| anyhow::anyhow!("--report-data: {e}"))
                        })
                        .transpose()?;
                    let appraiser = Appraiser::with_inputs(doc, loaded);
                    let verdict = appraiser.appraise_with(
                        &bytes,
                        expected.as_ref().map(|h| &h.0),
                        at.unix_timestamp(),
                    );
                    let ear = Ear::from_verdict(&verdict).to_value();
                    let out = match sign_with {
                        Some(config) => serde_json::to_value(sign(&config, ear)?)?,
                        None => ear,
                    };
                    println!("{}", serde_json::to_string_pretty(&out)?);
                    let ok = verdict.status == Status::Affirming
                        || (verdict.status == Status::Warning && allow_warning);
                    if !ok {
                        eprintln!("verdict: {}", verdict.summary());
                    }
                    Ok(if ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
                None => {
                    if sign_with.is_some() || report_data.is_some() || allow_warning {
                        anyhow::bail!(
                            "--sign-with, --report-data and --allow-warning need --policy: only an appraisal gives a verdict"
                        );
                    }
                    genuineness(&bytes, kind, &loaded, at)
                }
            }
        }
        AttestCommand::CheckVerdict {
            verdict,
            evidence: evidence_path,
            policy,
            inputs,
            key,
        } => {
            let origin = verdict.display().to_string();
            let stored =
                std::fs::read(&verdict).with_context(|| format!("cannot read verdict {origin}"))?;
            let signed = SignedVerdict::parse(&stored, &origin)?;
            signed.verify_signature(&origin, key.as_ref())?;
            let ear = signed.ear()?;
            let Some((_, appraisal)) = ear.appraisal() else {
                anyhow::bail!("verdict {origin} holds no appraisal");
            };
            let bytes = read(&evidence_path)?;
            let kind = evidence::detect(&bytes);
            let doc = load_policy(&policy)?;
            let expected = appraisal
                .evidence
                .report_data
                .as_deref()
                .map(|h| {
                    h.parse::<HexBytes<64>>()
                        .map_err(|e| anyhow::anyhow!("the verdict's report-data: {e}"))
                })
                .transpose()?;
            let appraiser = Appraiser::with_inputs(doc, load_inputs(kind, &inputs)?);
            let again = appraiser.appraise_with(&bytes, expected.as_ref().map(|h| &h.0), ear.iat);
            signed.check_reproduced(&origin, &again)?;
            println!(
                "{}",
                serde_json::to_string_pretty(&json!({
                    "verdict": origin,
                    "signature": "valid",
                    "signer": signed.signature.key,
                    "reproduced": true,
                    "status": again.status,
                    "verification_time": OffsetDateTime::from_unix_timestamp(ear.iat)?.format(&Rfc3339)?,
                }))?
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Genuineness only (no policy): the meaning `attest verify` has always had.
fn genuineness(
    bytes: &[u8],
    kind: Option<EvidenceKind>,
    inputs: &Inputs,
    at: OffsetDateTime,
) -> anyhow::Result<ExitCode> {
    let mut v = evidence::verify(bytes, kind, inputs, at);
    if v.findings.status() != Status::Contraindicated {
        v.findings.push(Reason::warn(
            codes::NO_POLICY,
            "genuineness only: no appraisal policy was applied (pass --policy to appraise)",
        ));
    }
    let status = v.findings.status();
    let out = json!({
        "type": v.kind.map(EvidenceKind::as_str),
        "status": status,
        "reasons": v.findings.reasons,
        "verification_time": at.format(&Rfc3339)?,
        "inputs": v.inputs,
        "details": v.details,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if status == Status::Contraindicated {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Sign an EAR with the identity key of the node whose config is `config`.
fn sign(config: &Path, ear: serde_json::Value) -> anyhow::Result<SignedVerdict> {
    let cfg = parley::config::NodeConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Signing only, beside a possibly running node: no key rotation from here.
    let keys = rt.block_on(parley::node::NodeKeys::open_with(&cfg, false))?;
    let tbs = to_be_signed(&ear)?;
    let sig = rt.block_on(keys.identity.sign(&tbs))?;
    let key = Ed25519Key(*keys.identity.public_key().as_bytes());
    Ok(SignedVerdict::new(ear, key, sig.0))
}

fn read(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read evidence file {}", file.display()))
}

fn detect(bytes: &[u8], forced: Option<EvidenceKind>, file: &Path) -> anyhow::Result<EvidenceKind> {
    match forced.or_else(|| evidence::detect(bytes)) {
        Some(k) => Ok(k),
        None => anyhow::bail!(
            "{} ({} bytes) is not SEV-SNP, TDX or Parley simulated evidence; pass --type if you know its type",
            file.display(),
            bytes.len()
        ),
    }
}

fn peers(config: &std::path::Path, json_out: bool) -> anyhow::Result<ExitCode> {
    use parley::admin::{AdminRequest, AdminResponse, call};
    let cfg = parley::config::NodeConfig::load(config)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = match rt.block_on(call(
        &cfg.admin_socket(),
        &AdminRequest::Status,
        std::time::Duration::from_secs(10),
    ))? {
        AdminResponse::Status(s) => s,
        other => anyhow::bail!(other.unexpected()),
    };
    if json_out {
        println!("{}", serde_json::to_string_pretty(&status.peers)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = parley::util::unix_now();
    println!(
        "{} (epoch {}, manifest {}…)",
        status.party,
        status.epoch,
        &status.manifest_hash[..16]
    );
    for (peer, v) in &status.peers {
        println!(
            "  {peer} ({}): {}",
            v.address,
            if v.connected {
                "connected"
            } else {
                "not connected"
            }
        );
        for (gate, rec) in [(1, &v.verdict), (2, &v.gate2)] {
            match rec {
                None => println!("    gate {gate}: no verdict yet"),
                Some(r) => {
                    println!(
                        "    gate {gate}: {} {} ({} s ago, {} appraisals)",
                        r.verdict.status,
                        if r.accepted { "accepted" } else { "REFUSED" },
                        now - r.at,
                        r.appraisals
                    );
                    for reason in &r.verdict.reasons {
                        println!("      {}: {}", reason.code, reason.message);
                    }
                }
            }
        }
        if let Some(a) = v.attested_secs_ago {
            println!("    fresh evidence accepted {a} s ago");
        }
        if let Some(e) = &v.last_error {
            println!("    last error: {e}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

//! Drafting a policy from known-good evidence (`parley policy from-evidence`).
//!
//! The draft accepts exactly the evidence's measurements, its TCB as the minimum, its
//! VMPL, TDX module and XFAM, and the root its chain ended at. It never admits a debug
//! guest, a migration agent or a migratable TD, nor simulated evidence, unless the
//! operator asks by flag; when the evidence itself has such a property the draft refuses
//! that very evidence and [`Draft::notes`] says so. A draft is for an operator to review,
//! not to deploy unread.

use crate::evidence::{Claims, Verified};
use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::policy::{
    FederationRules, POLICY_FORMAT, Policy, SessionRules, SimRules, SmtRule, SnpGuestRules,
    SnpRules, SnpTcbRules, TcbMinimum, TdxMeasurement, TdxRules,
};
use crate::snp::{Product, TcbVersion};
use crate::tdx::TcbStatus;

/// What the operator explicitly allows.
#[derive(Debug, Clone, Default)]
pub struct DraftOptions {
    pub name: String,
    pub allow_debug: bool,
    pub allow_migration_agent: bool,
    pub allow_simulated: bool,
    /// TDX statuses weaker than UpToDate to accept, by Intel's name.
    pub tcb_statuses: Vec<String>,
}

/// A drafted policy and what the operator must know about it.
#[derive(Debug, Clone)]
pub struct Draft {
    pub policy: Policy,
    pub notes: Vec<String>,
}

/// Why no policy can be drafted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DraftError {
    #[error("cannot draft a policy from evidence that is not genuine: {0}")]
    NotGenuine(String),
    #[error(
        "the evidence is simulated (no hardware protection): pass --allow-simulated to draft a policy that admits simulated evidence"
    )]
    Simulated,
}

/// Draft a policy admitting `verified` (which must have verified without refusal, apart
/// from an unpinned simulation root when `allow_simulated`). `sim_root` is the root that
/// endorsed simulated evidence.
pub fn draft(
    verified: &Verified,
    sim_root: Option<Ed25519Key>,
    opts: &DraftOptions,
) -> Result<Draft, DraftError> {
    use crate::verdict::Status;
    let refusals: Vec<String> = verified
        .findings
        .reasons
        .iter()
        .filter(|r| r.severity == Status::Contraindicated)
        .map(|r| r.to_string())
        .collect();
    if !refusals.is_empty() {
        return Err(DraftError::NotGenuine(refusals.join("; ")));
    }
    let Some(claims) = &verified.claims else {
        return Err(DraftError::NotGenuine("the evidence has no claims".into()));
    };
    let mut notes = Vec::new();
    let mut policy = Policy {
        format: POLICY_FORMAT,
        name: opts.name.clone(),
        tolerate: Vec::new(),
        session: SessionRules::default(),
        federation: FederationRules::default(),
        snp: None,
        tdx: None,
        sim: None,
    };
    let root = verified
        .root_sha256
        .as_deref()
        .and_then(|r| r.parse::<HexBytes<32>>().ok());
    let non_default = verified
        .findings
        .has(crate::verdict::codes::NON_DEFAULT_ROOT);
    match claims {
        Claims::Snp(c) => {
            let gp = c.guest_policy();
            if gp.debug() && !opts.allow_debug {
                notes.push("the evidence allows debugging (POLICY bit 19): this policy refuses it; pass --allow-debug only for a test deployment".into());
            }
            if gp.migrate_ma() && !opts.allow_migration_agent {
                notes.push("the evidence allows a migration agent (POLICY bit 18): this policy refuses it; pass --allow-migration-agent to admit one".into());
            }
            let tcb = |t: TcbVersion| minimum(t, c.product);
            policy.snp = Some(SnpRules {
                measurements: vec![HexBytes(c.measurement)],
                accepted_roots: if non_default {
                    root.into_iter().collect()
                } else {
                    Vec::new()
                },
                guest: SnpGuestRules {
                    allow_debug: opts.allow_debug,
                    allow_migration_agent: opts.allow_migration_agent,
                    smt: if c.platform().smt_en() {
                        SmtRule::Allowed
                    } else {
                        SmtRule::Disabled
                    },
                    allowed_vmpls: vec![c.vmpl],
                    min_guest_svn: c.guest_svn,
                    ..SnpGuestRules::default()
                },
                tcb: SnpTcbRules {
                    min_reported: tcb(c.reported_tcb),
                    min_committed: tcb(c.committed_tcb),
                    min_launch: tcb(c.launch_tcb),
                },
            });
        }
        Claims::Tdx(t) => {
            let c = &t.claims;
            let a = c.td_attributes;
            if a.debug() && !opts.allow_debug {
                notes.push("the TD runs with off-TD debug: this policy refuses it; pass --allow-debug only for a test deployment".into());
            }
            if a.migratable() && !opts.allow_migration_agent {
                notes.push("the TD is migratable: this policy refuses it; pass --allow-migration-agent to admit migratable TDs".into());
            }
            if !a.sept_ve_disable() {
                notes.push("the TD runs without SEPT_VE_DISABLE: this policy refuses it (set require_sept_ve_disable = false only if the guest kernel handles #VE safely)".into());
            }
            match &t.tcb {
                Some(tcb) if tcb.status != TcbStatus::UpToDate
                    && !opts.tcb_statuses.iter().any(|s| s == tcb.status.as_str()) =>
                {
                    notes.push(format!(
                        "the platform's TCB status is {}: this policy accepts only UpToDate; pass --accept-tcb-status {} to accept it",
                        tcb.status, tcb.status
                    ));
                }
                None => notes.push("no TCB evaluation was possible (collateral missing): min_tcb_evaluation_data_number is 0; set it once collateral is available".into()),
                _ => {}
            }
            let rtmr = |i: usize| c.rtmr.get(i).map(|r| HexBytes(*r));
            policy.tdx = Some(TdxRules {
                measurements: vec![TdxMeasurement {
                    mr_td: HexBytes(c.mr_td),
                    rtmr0: rtmr(0),
                    rtmr1: rtmr(1),
                    rtmr2: rtmr(2),
                    rtmr3: rtmr(3),
                }],
                accepted_roots: if non_default {
                    root.into_iter().collect()
                } else {
                    Vec::new()
                },
                tcb_statuses: opts.tcb_statuses.clone(),
                min_tcb_evaluation_data_number: t
                    .tcb
                    .as_ref()
                    .map_or(0, |t| t.platform.tcb_evaluation_data_number),
                mr_seam: vec![HexBytes(c.mr_seam)],
                mr_signer_seam: vec![HexBytes(c.mr_signer_seam)],
                xfam: vec![HexBytes(c.xfam)],
                allow_debug: opts.allow_debug,
                allow_migratable: opts.allow_migration_agent,
                require_sept_ve_disable: true,
                mr_config_id: (c.mr_config_id != [0; 48]).then_some(HexBytes(c.mr_config_id)),
            });
        }
        Claims::Sim(c) => {
            if !opts.allow_simulated {
                return Err(DraftError::Simulated);
            }
            if c.policy.debug && !opts.allow_debug {
                notes.push("the simulated platform claims debug: this policy refuses it".into());
            }
            if c.policy.migrate_ma && !opts.allow_migration_agent {
                notes.push(
                    "the simulated platform claims a migration agent: this policy refuses it"
                        .into(),
                );
            }
            notes.push("simulated evidence has no hardware protection: never use this policy for real data".into());
            policy.sim = Some(SimRules {
                allow_simulated: true,
                roots: sim_root.into_iter().collect(),
                measurements: vec![c.measurement],
                allow_debug: opts.allow_debug,
                allow_migration_agent: opts.allow_migration_agent,
                allowed_vmpls: vec![c.vmpl],
                min_tcb: c.reported_tcb,
            });
        }
    }
    if non_default {
        notes.push("the chain ends at a root that is not the pinned vendor root: it is pinned in accepted_roots, and sessions refuse the resulting warning unless tolerate lists non-default-root".into());
    }
    if verified.findings.has(crate::verdict::codes::CRL_MISSING) {
        notes.push("no CRL was supplied: verdicts will carry crl-missing (a warning sessions refuse unless tolerate lists crl-missing); run `parley collateral fetch`".into());
    }
    Ok(Draft { policy, notes })
}

fn minimum(t: TcbVersion, product: Product) -> TcbMinimum {
    let d = t.decode(product);
    TcbMinimum {
        fmc: d.fmc,
        bootloader: d.bootloader,
        tee: d.tee,
        snp: d.snp,
        microcode: d.microcode,
    }
}

//! TCB evaluation of a TDX quote against authenticated TCB Info and QE Identity, following
//! Intel's DCAP appraisal rules (TDX TCB Info v3, Enclave Identity v2):
//!
//! - the platform level is the first TCB level, in Intel's canonical order (SGX components,
//!   then PCE SVN, then TDX components, highest first), whose SGX components and PCE SVN
//!   the PCK certificate meets and whose TDX components TEE_TCB_SVN meets; when
//!   TEE_TCB_SVN\[1\] (the module major version) is non-zero, TDX components 0 and 1 are
//!   judged by the module's own levels in `tdxModuleIdentities` ("TDX_%02X") instead;
//! - the TDX module's signer and SEAM attributes must match `tdxModule` (version 0) or the
//!   module identity for its version;
//! - the QE's level is the first QE Identity level whose ISVSVN the QE report meets;
//! - statuses converge like Intel's QVL: an OutOfDate or Revoked module or QE lowers the
//!   platform status, nothing else does; for a TDX 1.5 report the current TCB
//!   (TEE_TCB_SVN2) is evaluated too, and a launch TCB that is out of date while the current
//!   one is not gives TDRelaunchAdvised.
//!
//! No matching level anywhere is a refusal, never a status.

use std::cmp::Ordering;

use super::collateral::{QeIdentity, TcbInfo, TcbLevel, TcbStatus, TdxModuleTcbLevel};
use super::pck::PckExtension;
use super::quote::{EnclaveReport, TdReport};

/// One matched level.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LevelMatch {
    pub status: TcbStatus,
    pub tcb_date: String,
    pub advisory_ids: Vec<String>,
}

/// Why a TCB could not be evaluated to a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcbFailure {
    /// The collateral is not TDX TCB Info v3 / TD_QE identity v2, or holds a status the
    /// structure does not allow.
    WrongCollateral(String),
    FmspcMismatch {
        quote: [u8; 6],
        collateral: [u8; 6],
    },
    PceIdMismatch {
        quote: [u8; 2],
        collateral: [u8; 2],
    },
    ModuleMismatch(String),
    NoMatchingLevel(String),
    QeMismatch(String),
}

/// The platform side of the evaluation (TCB Info).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PlatformEvaluation {
    /// Platform level for TEE_TCB_SVN, converged with the module level.
    pub launch: LevelMatch,
    /// The TDX module level (module major version > 0).
    pub module: Option<LevelMatch>,
    /// TDX 1.5: the same for TEE_TCB_SVN2.
    pub current: Option<LevelMatch>,
    pub tcb_evaluation_data_number: u32,
}

/// Canonical order of TCB levels (highest first), as Intel's QVL sorts them.
fn level_order(a: &TcbLevel, b: &TcbLevel) -> Ordering {
    let svns = |c: &[super::collateral::Component]| c.iter().map(|x| x.svn).collect::<Vec<_>>();
    svns(&b.tcb.sgx_components)
        .cmp(&svns(&a.tcb.sgx_components))
        .then_with(|| b.tcb.pce_svn.cmp(&a.tcb.pce_svn))
        .then_with(|| svns(&b.tcb.tdx_components).cmp(&svns(&a.tcb.tdx_components)))
}

const PLATFORM_STATUSES: [TcbStatus; 7] = [
    TcbStatus::UpToDate,
    TcbStatus::SwHardeningNeeded,
    TcbStatus::ConfigurationNeeded,
    TcbStatus::ConfigurationAndSwHardeningNeeded,
    TcbStatus::OutOfDate,
    TcbStatus::OutOfDateConfigurationNeeded,
    TcbStatus::Revoked,
];
/// Module and QE levels only ever carry these (Intel's TCB Info v3 / Identity v2).
const COMPONENT_STATUSES: [TcbStatus; 3] = [
    TcbStatus::UpToDate,
    TcbStatus::OutOfDate,
    TcbStatus::Revoked,
];

/// Check the TCB Info is TDX's and belongs to this platform.
pub fn check_tcb_info(info: &TcbInfo, pck: &PckExtension) -> Result<(), TcbFailure> {
    if info.id != "TDX" || info.version != 3 || info.tcb_type != 0 {
        return Err(TcbFailure::WrongCollateral(format!(
            "TCB Info has id {:?} version {} tcbType {}; a TDX quote needs id \"TDX\" version 3 tcbType 0",
            info.id, info.version, info.tcb_type
        )));
    }
    if info.fmspc != pck.fmspc {
        return Err(TcbFailure::FmspcMismatch {
            quote: pck.fmspc,
            collateral: info.fmspc,
        });
    }
    if info.pce_id != pck.pce_id {
        return Err(TcbFailure::PceIdMismatch {
            quote: pck.pce_id,
            collateral: info.pce_id,
        });
    }
    Ok(())
}

/// Check the TDX module's signer and attributes against the TCB Info.
pub fn check_module_identity(info: &TcbInfo, report: &TdReport<'_>) -> Result<(), TcbFailure> {
    let version = report.tee_tcb_svn[1];
    let (name, mrsigner, attributes, mask) = if version == 0 {
        let m = info.tdx_module.as_ref().ok_or_else(|| {
            TcbFailure::ModuleMismatch(
                "TCB Info has no tdxModule entry for a module of major version 0".into(),
            )
        })?;
        (
            "tdxModule".to_owned(),
            m.mrsigner,
            m.attributes,
            m.attributes_mask,
        )
    } else {
        let id = module_identity(info, version)?;
        (
            id.id.clone(),
            id.mrsigner,
            id.attributes,
            id.attributes_mask,
        )
    };
    if report.mr_signer_seam != &mrsigner {
        return Err(TcbFailure::ModuleMismatch(format!(
            "MRSIGNERSEAM {} is not the signer {} that {name} requires",
            hex::encode(report.mr_signer_seam),
            hex::encode(mrsigner)
        )));
    }
    let masked = |a: &[u8; 8]| -> [u8; 8] { std::array::from_fn(|i| a[i] & mask[i]) };
    if masked(report.seam_attributes) != masked(&attributes) {
        return Err(TcbFailure::ModuleMismatch(format!(
            "SEAMATTRIBUTES {} do not match {} under mask {} ({name})",
            hex::encode(report.seam_attributes),
            hex::encode(attributes),
            hex::encode(mask)
        )));
    }
    Ok(())
}

fn module_identity(
    info: &TcbInfo,
    version: u8,
) -> Result<&super::collateral::TdxModuleIdentity, TcbFailure> {
    let wanted = format!("TDX_{version:02X}");
    info.tdx_module_identities
        .iter()
        .find(|m| m.id.eq_ignore_ascii_case(&wanted))
        .ok_or_else(|| {
            TcbFailure::ModuleMismatch(format!(
                "TCB Info has no TDX module identity {wanted} for module major version {version}"
            ))
        })
}

/// Evaluate the platform TCB (and, for TDX 1.5, the current TCB).
pub fn evaluate_platform(
    info: &TcbInfo,
    pck: &PckExtension,
    report: &TdReport<'_>,
) -> Result<PlatformEvaluation, TcbFailure> {
    let mut levels: Vec<&TcbLevel> = info.tcb_levels.iter().collect();
    levels.sort_by(|a, b| level_order(a, b));
    let (launch, module) = evaluate_svn(info, &levels, pck, report.tee_tcb_svn, "TEE_TCB_SVN")?;
    let current = match report.tee_tcb_svn2 {
        Some(svn2) => Some(evaluate_svn(info, &levels, pck, svn2, "TEE_TCB_SVN2")?.0),
        None => None,
    };
    Ok(PlatformEvaluation {
        launch,
        module,
        current,
        tcb_evaluation_data_number: info.tcb_evaluation_data_number,
    })
}

fn evaluate_svn(
    info: &TcbInfo,
    levels: &[&TcbLevel],
    pck: &PckExtension,
    svn: &[u8; 16],
    which: &str,
) -> Result<(LevelMatch, Option<LevelMatch>), TcbFailure> {
    // A non-zero module major version hands TDX components 0 and 1 to the module levels.
    let skip = if svn[1] > 0 { 2 } else { 0 };
    let mut matched = None;
    for level in levels {
        let t = &level.tcb;
        if t.sgx_components.len() != 16 || t.tdx_components.len() != 16 {
            return Err(TcbFailure::WrongCollateral(format!(
                "a TCB level has {} SGX and {} TDX components; 16 of each are required",
                t.sgx_components.len(),
                t.tdx_components.len()
            )));
        }
        let sgx_ok = t
            .sgx_components
            .iter()
            .zip(pck.tcb_components.iter())
            .all(|(need, have)| *have >= need.svn);
        let tdx_ok = t
            .tdx_components
            .iter()
            .zip(svn.iter())
            .skip(skip)
            .all(|(need, have)| *have >= need.svn);
        if sgx_ok && pck.pce_svn >= t.pce_svn && tdx_ok {
            matched = Some(*level);
            break;
        }
    }
    let level = matched.ok_or_else(|| {
        TcbFailure::NoMatchingLevel(format!(
            "no TCB level of TCB Info (FMSPC {}) is met by the PCK certificate's SGX components {:?}, PCE SVN {} and {which} {}",
            hex::encode(info.fmspc),
            pck.tcb_components,
            pck.pce_svn,
            hex::encode(svn)
        ))
    })?;
    if !PLATFORM_STATUSES.contains(&level.tcb_status) {
        return Err(TcbFailure::WrongCollateral(format!(
            "TCB level status {} is not a TCB Info status",
            level.tcb_status
        )));
    }
    let mut launch = LevelMatch {
        status: level.tcb_status,
        tcb_date: level.tcb_date.clone(),
        advisory_ids: level.advisory_ids.clone(),
    };
    let module = if svn[1] > 0 {
        let id = module_identity(info, svn[1])?;
        let mut module_levels: Vec<&TdxModuleTcbLevel> = id.tcb_levels.iter().collect();
        module_levels.sort_by_key(|l| std::cmp::Reverse(l.tcb.isvsvn));
        let m = module_levels
            .into_iter()
            .find(|l| svn[0] >= l.tcb.isvsvn)
            .ok_or_else(|| {
                TcbFailure::NoMatchingLevel(format!(
                    "TDX module {} ISVSVN {} ({which}) is below every level of its identity",
                    id.id, svn[0]
                ))
            })?;
        if !COMPONENT_STATUSES.contains(&m.tcb_status) {
            return Err(TcbFailure::WrongCollateral(format!(
                "TDX module level status {} is not a module status",
                m.tcb_status
            )));
        }
        launch.status = converge(launch.status, m.tcb_status);
        merge_advisories(&mut launch.advisory_ids, &m.advisory_ids);
        if m.tcb_date < launch.tcb_date {
            launch.tcb_date = m.tcb_date.clone();
        }
        Some(LevelMatch {
            status: m.tcb_status,
            tcb_date: m.tcb_date.clone(),
            advisory_ids: m.advisory_ids.clone(),
        })
    } else {
        None
    };
    Ok((launch, module))
}

/// Check the QE report against the QE Identity and find its level.
pub fn evaluate_qe(id: &QeIdentity, qe: &EnclaveReport<'_>) -> Result<LevelMatch, TcbFailure> {
    if id.id != "TD_QE" || id.version != 2 {
        return Err(TcbFailure::WrongCollateral(format!(
            "QE Identity has id {:?} version {}; a TDX quote needs id \"TD_QE\" version 2",
            id.id, id.version
        )));
    }
    if qe.mr_signer != &id.mrsigner {
        return Err(TcbFailure::QeMismatch(format!(
            "QE MRSIGNER {} is not {}",
            hex::encode(qe.mr_signer),
            hex::encode(id.mrsigner)
        )));
    }
    if qe.isv_prod_id != id.isvprodid {
        return Err(TcbFailure::QeMismatch(format!(
            "QE ISVPRODID {} is not {}",
            qe.isv_prod_id, id.isvprodid
        )));
    }
    let misc_mask = u32::from_le_bytes(id.miscselect_mask);
    if qe.misc_select & misc_mask != u32::from_le_bytes(id.miscselect) & misc_mask {
        return Err(TcbFailure::QeMismatch(format!(
            "QE MISCSELECT {:08x} does not match {} under mask {}",
            qe.misc_select,
            hex::encode(id.miscselect),
            hex::encode(id.miscselect_mask)
        )));
    }
    let attrs_ok = qe
        .attributes
        .iter()
        .zip(id.attributes.iter())
        .zip(id.attributes_mask.iter())
        .all(|((have, want), mask)| have & mask == want & mask);
    if !attrs_ok {
        return Err(TcbFailure::QeMismatch(format!(
            "QE ATTRIBUTES {} do not match {} under mask {}",
            hex::encode(qe.attributes),
            hex::encode(id.attributes),
            hex::encode(id.attributes_mask)
        )));
    }
    let mut levels: Vec<_> = id.tcb_levels.iter().collect();
    levels.sort_by_key(|l| std::cmp::Reverse(l.tcb.isvsvn));
    let level = levels
        .into_iter()
        .find(|l| qe.isv_svn >= l.tcb.isvsvn)
        .ok_or_else(|| {
            TcbFailure::NoMatchingLevel(format!(
                "QE ISVSVN {} is below every level of the QE Identity",
                qe.isv_svn
            ))
        })?;
    if !COMPONENT_STATUSES.contains(&level.tcb_status) {
        return Err(TcbFailure::WrongCollateral(format!(
            "QE Identity level status {} is not a QE status",
            level.tcb_status
        )));
    }
    Ok(LevelMatch {
        status: level.tcb_status,
        tcb_date: level.tcb_date.clone(),
        advisory_ids: level.advisory_ids.clone(),
    })
}

/// Lower a platform status by a component (module or QE) status, as Intel's QVL does:
/// only an OutOfDate or Revoked component matters.
pub fn converge(platform: TcbStatus, component: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    match (component, platform) {
        (Revoked, _) => Revoked,
        (OutOfDate, UpToDate | SwHardeningNeeded) => OutOfDate,
        (OutOfDate, ConfigurationNeeded | ConfigurationAndSwHardeningNeeded) => {
            OutOfDateConfigurationNeeded
        }
        _ => platform,
    }
}

fn configuration_needed(s: TcbStatus) -> bool {
    use TcbStatus::*;
    matches!(
        s,
        ConfigurationNeeded
            | ConfigurationAndSwHardeningNeeded
            | OutOfDateConfigurationNeeded
            | TdRelaunchAdvisedConfigurationNeeded
    )
}

fn out_of_date(s: TcbStatus) -> bool {
    matches!(
        s,
        TcbStatus::OutOfDate | TcbStatus::OutOfDateConfigurationNeeded
    )
}

/// Combine the launch and current statuses of a TDX 1.5 TD. An out-of-date launch TCB
/// whose current TCB is fine asks for a relaunch; otherwise the worse of the two stands.
pub fn combine_launch_current(launch: TcbStatus, current: TcbStatus) -> TcbStatus {
    use TcbStatus::*;
    if launch == Revoked || current == Revoked {
        return Revoked;
    }
    if out_of_date(launch) && !out_of_date(current) {
        return if configuration_needed(launch) || configuration_needed(current) {
            TdRelaunchAdvisedConfigurationNeeded
        } else {
            TdRelaunchAdvised
        };
    }
    // A current TCB below the launch TCB does not happen on real platforms; fail closed.
    if out_of_date(current) && !out_of_date(launch) {
        return if configuration_needed(launch) || configuration_needed(current) {
            OutOfDateConfigurationNeeded
        } else {
            OutOfDate
        };
    }
    launch
}

/// Append advisories not yet present, keeping order.
pub fn merge_advisories(into: &mut Vec<String>, from: &[String]) {
    for a in from {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use TcbStatus::*;

    #[test]
    fn convergence_follows_intel() {
        assert_eq!(converge(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(converge(SwHardeningNeeded, OutOfDate), OutOfDate);
        assert_eq!(
            converge(ConfigurationNeeded, OutOfDate),
            OutOfDateConfigurationNeeded
        );
        assert_eq!(converge(ConfigurationNeeded, Revoked), Revoked);
        assert_eq!(converge(UpToDate, UpToDate), UpToDate);
        assert_eq!(converge(OutOfDate, UpToDate), OutOfDate);
    }

    #[test]
    fn relaunch_rules() {
        assert_eq!(
            combine_launch_current(OutOfDate, UpToDate),
            TdRelaunchAdvised
        );
        assert_eq!(
            combine_launch_current(OutOfDate, ConfigurationNeeded),
            TdRelaunchAdvisedConfigurationNeeded
        );
        assert_eq!(combine_launch_current(OutOfDate, OutOfDate), OutOfDate);
        assert_eq!(combine_launch_current(UpToDate, Revoked), Revoked);
        assert_eq!(combine_launch_current(UpToDate, OutOfDate), OutOfDate);
        assert_eq!(combine_launch_current(UpToDate, UpToDate), UpToDate);
    }
}

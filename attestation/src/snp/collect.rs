//! Collecting an SNP report inside the guest: configfs-tsm first, `/dev/sev-guest` as
//! the fallback for kernels without it.
//!
//! The fallback goes through the `sev` crate's guest ioctl wrapper (its `snp` feature
//! alone, which pulls no crypto), so this crate keeps `#![forbid(unsafe_code)]`.

use std::path::Path;

use crate::collect::{self, CollectError, TsmRequest};

use super::certtable::{self, CertTableEntry};
use super::report::Report;

/// The configfs-tsm provider name of the SEV-SNP guest driver.
pub const PROVIDER: &str = "sev_guest";

/// Where the evidence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    ConfigfsTsm,
    SevGuestDevice,
}

/// A raw report (already checked to parse) and the host's certificate table, if any.
#[derive(Debug, Clone)]
pub struct Collected {
    pub report: Vec<u8>,
    pub certs: Vec<CertTableEntry>,
    pub source: Source,
}

/// Get a report binding `report_data`, at `vmpl` when given. Tries configfs-tsm under
/// `tsm_root` and falls back to `/dev/sev-guest` only when configfs-tsm is absent (not
/// when it fails: a failing TEE is reported, not papered over).
pub fn get_report(
    tsm_root: &Path,
    report_data: &[u8; 64],
    vmpl: Option<u32>,
) -> Result<Collected, CollectError> {
    let req = TsmRequest {
        provider: PROVIDER,
        inblob: report_data,
        privlevel: vmpl,
    };
    match collect::collect(tsm_root, &req) {
        Ok(r) => {
            let certs = match &r.auxblob {
                Some(aux) => certtable::parse(aux).map_err(|e| CollectError::BadEvidence {
                    detail: format!("auxblob: {e}"),
                })?,
                None => Vec::new(),
            };
            checked(r.outblob, certs, Source::ConfigfsTsm, report_data)
        }
        Err(CollectError::Unavailable { .. }) => from_device(report_data, vmpl),
        Err(e) => Err(e),
    }
}

/// The report must parse and carry exactly the report data we asked for: the binding
/// check that also catches another writer of the same configfs entry.
fn checked(
    report: Vec<u8>,
    certs: Vec<CertTableEntry>,
    source: Source,
    report_data: &[u8; 64],
) -> Result<Collected, CollectError> {
    let parsed = Report::parse(&report).map_err(|e| CollectError::BadEvidence {
        detail: e.to_string(),
    })?;
    if parsed.report_data() != report_data {
        return Err(CollectError::BadEvidence {
            detail: format!(
                "REPORT_DATA is {}, not the {} requested: another process may have used the same request; retry",
                hex::encode(parsed.report_data()),
                hex::encode(report_data)
            ),
        });
    }
    Ok(Collected {
        report,
        certs,
        source,
    })
}

#[cfg(target_os = "linux")]
fn from_device(report_data: &[u8; 64], vmpl: Option<u32>) -> Result<Collected, CollectError> {
    use sev::firmware::guest::Firmware;
    use sev::firmware::host::CertType;

    let mut fw = Firmware::open().map_err(|e| CollectError::Device {
        detail: format!("cannot open /dev/sev-guest: {e} (is this an SEV-SNP guest with the sev-guest driver loaded?)"),
    })?;
    // The extended request also returns the host's certificates; hosts that store none
    // may fail it, so fall back to the plain request.
    let (report, certs) = match fw.get_ext_report(None, Some(*report_data), vmpl) {
        Ok(r) => r,
        Err(ext) => {
            let report = fw.get_report(None, Some(*report_data), vmpl).map_err(|e| {
                CollectError::Device {
                    detail: format!("report request failed: {e} (extended request: {ext})"),
                }
            })?;
            (report, None)
        }
    };
    let certs = certs
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let kind = match c.cert_type {
                CertType::ARK => certtable::EntryKind::Ark,
                CertType::ASK => certtable::EntryKind::Ask,
                CertType::VCEK => certtable::EntryKind::Vcek,
                CertType::VLEK => certtable::EntryKind::Vlek,
                CertType::CRL => certtable::EntryKind::Crl,
                _ => return None,
            };
            Some(CertTableEntry { kind, data: c.data })
        })
        .collect();
    checked(report, certs, Source::SevGuestDevice, report_data)
}

#[cfg(not(target_os = "linux"))]
fn from_device(_: &[u8; 64], _: Option<u32>) -> Result<Collected, CollectError> {
    Err(CollectError::Device {
        detail: "/dev/sev-guest exists only on Linux".into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

    #[test]
    fn configfs_report_and_certificate_table() {
        let report = std::fs::read(format!("{VECTORS}/snp/milan-v2-trustee/report.bin")).unwrap();
        let vcek = std::fs::read(format!("{VECTORS}/snp/milan-v2-trustee/vcek.der")).unwrap();
        // The certificate table: one VCEK entry and the terminator.
        let mut aux = Vec::new();
        aux.extend_from_slice(&hex::decode("63da758de6644564adc5f4b93be8accd").unwrap());
        aux.extend_from_slice(&48u32.to_le_bytes());
        aux.extend_from_slice(&(vcek.len() as u32).to_le_bytes());
        aux.extend_from_slice(&[0; 24]);
        aux.extend_from_slice(&vcek);

        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("e");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("provider"), "sev_guest\n").unwrap();
        std::fs::write(dir.join("generation"), "1\n").unwrap();
        std::fs::write(dir.join("outblob"), &report).unwrap();
        std::fs::write(dir.join("auxblob"), &aux).unwrap();
        let report_data: [u8; 64] = report[0x50..0x90].try_into().unwrap();
        let req = TsmRequest {
            provider: PROVIDER,
            inblob: &report_data,
            privlevel: None,
        };
        let r = collect::collect_in(&dir, &req).unwrap();
        let certs = certtable::parse(r.auxblob.as_deref().unwrap()).unwrap();
        // A report for other data is refused.
        assert!(matches!(
            checked(r.outblob.clone(), vec![], Source::ConfigfsTsm, &[1; 64]),
            Err(CollectError::BadEvidence { .. })
        ));
        let c = checked(r.outblob, certs, Source::ConfigfsTsm, &report_data).unwrap();
        assert_eq!(c.report, report);
        let e = certtable::endorsements(&c.certs);
        assert_eq!(e.veks.len(), 1);
        let at = time::macros::datetime!(2025-06-01 00:00 UTC);
        let roots = crate::snp::TrustAnchors::pinned().unwrap();
        assert!(crate::snp::verify(&c.report, &e, roots, at).is_ok());

        // An outblob that is not a report is refused.
        assert!(matches!(
            checked(vec![1, 2, 3], vec![], Source::ConfigfsTsm, &[0; 64]),
            Err(CollectError::BadEvidence { .. })
        ));
    }

    #[test]
    fn no_configfs_and_no_device_is_an_error_not_a_panic() {
        // On the build machine neither exists: the fallback reports the device error.
        let tmp = tempfile::tempdir().unwrap();
        let e = get_report(&tmp.path().join("absent"), &[0; 64], None).unwrap_err();
        assert!(matches!(e, CollectError::Device { .. }), "{e}");
    }
}

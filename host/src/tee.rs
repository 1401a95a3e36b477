//! Evidence collection for this node's own TEE. In simulation mode the "TEE" is this
//! process: claims are built here and signed with the node's simulation key. In a
//! confidential VM ([`SnpTee`], [`TdxTee`]) the evidence comes from the guest driver through
//! configfs-tsm (`parley_attestation::collect`); an SNP report travels with the host's
//! certificate table so peers find the VCEK or VLEK without a network.

use parley_attestation::hexbytes::HexBytes;
use parley_attestation::sim::{
    SIM_CLAIMS_VERSION, SimClaims, SimEndorsement, SimEvidence, SimGuestPolicy,
};
use parley_keys::signer::SealedSigner;
use std::path::PathBuf;

use crate::config::SimulatedPlatform;

/// Evidence and the platform's endorsements that travel with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    pub evidence: Vec<u8>,
    /// SNP: the host's certificate table (VCEK or VLEK, ASK, ARK); empty otherwise.
    pub endorsements: Vec<u8>,
}

/// Produces evidence whose report data is exactly the 64 bytes given.
pub trait EvidenceSource: Send + Sync {
    fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, TeeError>;
    /// `"simulated"`, `"snp"` or `"tdx"`.
    fn mode(&self) -> &'static str;
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TeeError {
    #[error("cannot collect evidence: {0}")]
    Collect(String),
}

/// Simulated evidence signed by this node's simulation key.
pub struct SimulatedTee {
    signer: SealedSigner,
    endorsement: SimEndorsement,
    measurement: [u8; 48],
    platform: SimulatedPlatform,
}

impl SimulatedTee {
    pub fn new(
        signer: SealedSigner,
        endorsement: SimEndorsement,
        measurement: [u8; 48],
        platform: SimulatedPlatform,
    ) -> Self {
        SimulatedTee {
            signer,
            endorsement,
            measurement,
            platform,
        }
    }
}

impl EvidenceSource for SimulatedTee {
    fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, TeeError> {
        let claims = SimClaims {
            version: SIM_CLAIMS_VERSION,
            platform_id: self.endorsement.body.platform_id,
            measurement: HexBytes(self.measurement),
            report_data: HexBytes(*report_data),
            host_data: HexBytes([0; 32]),
            guest_svn: 0,
            vmpl: 0,
            policy: SimGuestPolicy {
                debug: self.platform.debug,
                migrate_ma: self.platform.migrate_ma,
                smt: true,
            },
            reported_tcb: self.platform.tcb,
        };
        let sig = self
            .signer
            .sign_now(&SimEvidence::claims_to_be_signed(&claims));
        let ev = SimEvidence {
            claims,
            endorsement: self.endorsement.clone(),
            signature: HexBytes(sig.0),
        };
        Ok(Collected {
            evidence: ev.encode(),
            endorsements: Vec::new(),
        })
    }

    fn mode(&self) -> &'static str {
        "simulated"
    }
}

/// An AMD SEV-SNP guest: reports from configfs-tsm under `tsm_root`, or `/dev/sev-guest`
/// when configfs-tsm is absent.
pub struct SnpTee {
    pub tsm_root: PathBuf,
    /// The VMPL to request (configfs-tsm `privlevel`); `None` leaves the driver's default.
    pub vmpl: Option<u32>,
}

impl EvidenceSource for SnpTee {
    fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, TeeError> {
        let c =
            parley_attestation::snp::collect::get_report(&self.tsm_root, report_data, self.vmpl)
                .map_err(|e| TeeError::Collect(e.to_string()))?;
        Ok(Collected {
            evidence: c.report,
            endorsements: parley_attestation::snp::certtable::encode(&c.certs),
        })
    }

    fn mode(&self) -> &'static str {
        "snp"
    }
}

/// An Intel TDX guest: quotes from configfs-tsm under `tsm_root` (the quote carries its
/// PCK chain; TCB info and QE identity come from each appraiser's collateral cache).
pub struct TdxTee {
    pub tsm_root: PathBuf,
}

impl EvidenceSource for TdxTee {
    fn collect(&self, report_data: &[u8; 64]) -> Result<Collected, TeeError> {
        let q = parley_attestation::tdx::collect::collect_quote(&self.tsm_root, report_data)
            .map_err(|e| TeeError::Collect(e.to_string()))?;
        Ok(Collected {
            evidence: q.quote,
            endorsements: Vec::new(),
        })
    }

    fn mode(&self) -> &'static str {
        "tdx"
    }
}

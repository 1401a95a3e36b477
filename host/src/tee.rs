//! Evidence collection for this node's own TEE. In simulation mode the "TEE" is this
//! process: claims are built here and signed with the node's simulation key.

use parley_attestation::hexbytes::HexBytes;
use parley_attestation::sim::{
    SIM_CLAIMS_VERSION, SimClaims, SimEndorsement, SimEvidence, SimGuestPolicy,
};
use parley_keys::signer::SealedSigner;

use crate::config::SimulatedPlatform;

/// Produces evidence whose report data is exactly the 64 bytes given.
pub trait EvidenceSource: Send + Sync {
    fn collect(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError>;
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
    fn collect(&self, report_data: &[u8; 64]) -> Result<Vec<u8>, TeeError> {
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
        Ok(ev.encode())
    }

    fn mode(&self) -> &'static str {
        "simulated"
    }
}

//! Appraisal: is this genuine evidence acceptable to this node's policy, bound to what we
//! expect, at this time? The result is a [`Verdict`] whose reasons say why.
//!
//! Appraisal is a pure function of (evidence bytes, roots and collateral, policy, expected
//! report data, time): [`crate::evidence::verify`] establishes genuineness and the claims,
//! [`Appraiser::check_claims`] applies the policy's rules to the claims, and the policy's
//! relaxations (`tolerate`, `[tdx] tcb_statuses`) set the final severity of the reasons
//! they name. A verdict serialises as an EAR ([`crate::ear`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ear::TrustVector;
pub use crate::evidence::Platform;
use crate::evidence::{self, Claims, EvidenceKind, InputDigest, Inputs, TdxAppraisal};
use crate::hexbytes::HexBytes;
use crate::policy::{PolicyDoc, SimRules, SmtRule, SnpRules, TcbMinimum, TdxMeasurement, TdxRules};
use crate::sim::SimClaims;
use crate::snp::{self, Product, SnpClaims, TcbVersion};
use crate::tdx::{self, TcbStatus};
use crate::verdict::{Findings, Reason, Status, codes};

/// The outcome of appraising one piece of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// `None` when the type could not be determined.
    pub evidence_type: Option<EvidenceKind>,
    pub status: Status,
    pub reasons: Vec<Reason>,
    /// The appraised claims (type-specific), for auditors.
    pub claims: serde_json::Value,
    pub policy_name: String,
    /// SHA-256 of the policy file, hex.
    pub policy_hash: String,
    /// Unix seconds.
    pub verification_time: i64,
    /// Which platform produced the evidence (when it could be parsed), so two pieces of
    /// evidence can be checked to come from the same chip running the same code.
    #[serde(default)]
    pub platform: Option<Platform>,
    /// The AR4SI trustworthiness vector.
    #[serde(default)]
    pub trust_vector: TrustVector,
    /// Roots and collateral the verification relied on.
    #[serde(default)]
    pub inputs: Vec<InputDigest>,
    /// SHA-256 of the evidence bytes, hex.
    #[serde(default)]
    pub evidence_sha256: String,
    /// The report data the evidence had to bind (hex); `None` when not checked.
    #[serde(default)]
    pub report_data: Option<String>,
}

impl Verdict {
    pub fn has(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }

    /// The reasons as one line, for logs and errors.
    pub fn summary(&self) -> String {
        let reasons: Vec<String> = self.reasons.iter().map(|r| r.to_string()).collect();
        if reasons.is_empty() {
            self.status.to_string()
        } else {
            format!("{} ({})", self.status, reasons.join("; "))
        }
    }
}

/// Appraises evidence against one policy, with fixed roots and collateral.
#[derive(Debug, Clone)]
pub struct Appraiser {
    doc: PolicyDoc,
    inputs: Inputs,
}

impl Appraiser {
    /// An appraiser with the pinned vendor roots and no collateral (enough for simulated
    /// evidence; SNP and TDX evidence then refuse for want of endorsements).
    pub fn new(doc: PolicyDoc) -> Self {
        Self::with_inputs(doc, Inputs::default())
    }

    /// An appraiser with explicit roots and collateral. Simulation roots always come from
    /// the policy.
    pub fn with_inputs(doc: PolicyDoc, mut inputs: Inputs) -> Self {
        inputs.sim_roots = doc.policy.simulation_roots().to_vec();
        Appraiser { doc, inputs }
    }

    pub fn policy(&self) -> &PolicyDoc {
        &self.doc
    }

    pub fn inputs(&self) -> &Inputs {
        &self.inputs
    }

    /// Appraise `evidence`, which must bind `expected_report_data`, at `at_unix`.
    pub fn appraise(
        &self,
        evidence: &[u8],
        expected_report_data: &[u8; 64],
        at_unix: i64,
    ) -> Verdict {
        self.appraise_with(evidence, Some(expected_report_data), at_unix)
    }

    /// Appraise `evidence` at `at_unix`; the report data is checked only when
    /// `expected_report_data` is given (offline auditing of stored evidence).
    pub fn appraise_with(
        &self,
        evidence: &[u8],
        expected_report_data: Option<&[u8; 64]>,
        at_unix: i64,
    ) -> Verdict {
        self.appraise_inputs(evidence, &self.inputs, expected_report_data, at_unix)
    }

    /// Appraise evidence that arrived with its platform's own endorsements: for SNP, the
    /// host's certificate table (VCEK or VLEK, ASK, ARK, in the GUID table format of the
    /// extended report and configfs-tsm `auxblob`). The table only offers candidate
    /// certificates: they must still chain to the roots this appraiser trusts, so a
    /// forged table changes nothing but the reason. Empty `endorsements` is
    /// [`Self::appraise_with`].
    pub fn appraise_endorsed(
        &self,
        evidence: &[u8],
        endorsements: &[u8],
        expected_report_data: Option<&[u8; 64]>,
        at_unix: i64,
    ) -> Verdict {
        if endorsements.is_empty() {
            return self.appraise_with(evidence, expected_report_data, at_unix);
        }
        let entries = match snp::certtable::parse(endorsements) {
            Ok(e) => e,
            Err(e) => {
                return self.refusal(
                    codes::MALFORMED_EVIDENCE,
                    format!("the certificate table sent with the evidence is malformed: {e}"),
                    at_unix,
                );
            }
        };
        let mut inputs = self.inputs.clone();
        snp::certtable::add_to(&entries, &mut inputs.snp);
        self.appraise_inputs(evidence, &inputs, expected_report_data, at_unix)
    }

    fn appraise_inputs(
        &self,
        evidence: &[u8],
        inputs: &Inputs,
        expected_report_data: Option<&[u8; 64]>,
        at_unix: i64,
    ) -> Verdict {
        let at = OffsetDateTime::from_unix_timestamp(at_unix).unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let v = evidence::verify(evidence, None, inputs, at);
        let mut f = v.findings;
        if let Some(claims) = &v.claims {
            for r in self.check_claims(claims, v.root_sha256.as_deref()).reasons {
                f.push(r);
            }
            if let Some(expected) = expected_report_data {
                let got = claims.report_data();
                if &got != expected {
                    f.push(Reason::refuse(
                        codes::REPORT_DATA_MISMATCH,
                        format!(
                            "report data {}… does not bind this connection's key and identity (expected {}…)",
                            &hex::encode(got)[..16],
                            &hex::encode(expected)[..16]
                        ),
                    ));
                }
            }
        }
        let reasons = self.relax(f.reasons);
        let appraised = v.claims.is_some();
        Verdict {
            evidence_type: v.kind,
            status: reasons
                .iter()
                .map(|r| r.severity)
                .max()
                .unwrap_or(Status::Affirming),
            trust_vector: TrustVector::from_reasons(
                &reasons,
                appraised,
                expected_report_data.is_some(),
            ),
            reasons,
            claims: v
                .claims
                .as_ref()
                .map_or(serde_json::Value::Null, Claims::to_json),
            policy_name: self.doc.policy.name.clone(),
            policy_hash: self.doc.hash_hex(),
            verification_time: at_unix,
            platform: v.platform,
            inputs: v.inputs,
            evidence_sha256: hex::encode(v.evidence_sha256),
            report_data: expected_report_data.map(hex::encode),
        }
    }

    /// A refusal that happened before any evidence was looked at (malformed certificate,
    /// unknown party, …), in the same verdict shape.
    pub fn refusal(&self, code: &str, message: String, at_unix: i64) -> Verdict {
        let reasons = vec![Reason::refuse(code, message)];
        Verdict {
            evidence_type: None,
            status: Status::Contraindicated,
            trust_vector: TrustVector::from_reasons(&reasons, false, false),
            reasons,
            claims: serde_json::Value::Null,
            policy_name: self.doc.policy.name.clone(),
            policy_hash: self.doc.hash_hex(),
            verification_time: at_unix,
            platform: None,
            inputs: Vec::new(),
            evidence_sha256: String::new(),
            report_data: None,
        }
    }

    /// Whether an attested session may proceed on `verdict`: affirming, or warning where
    /// every warning is one the policy accepts by name (`simulated-evidence` with
    /// `[sim] allow_simulated`, a code in `tolerate`, a TDX status in `tcb_statuses`).
    pub fn accepts(&self, verdict: &Verdict) -> bool {
        match verdict.status {
            Status::Affirming => true,
            Status::Contraindicated => false,
            Status::Warning => verdict
                .reasons
                .iter()
                .filter(|r| r.severity == Status::Warning)
                .all(|r| self.accepted_warning(&r.code)),
        }
    }

    fn accepted_warning(&self, code: &str) -> bool {
        let p = &self.doc.policy;
        (code == codes::SIMULATED && p.allow_simulated())
            || p.tolerate.iter().any(|t| t == code)
            || p.tdx.as_ref().is_some_and(|t| {
                t.accepted_statuses()
                    .into_iter()
                    .any(|s| status_code(s) == Some(code))
            })
    }

    /// Set the final severity of the reasons the policy names: tolerated codes and opted-in
    /// TDX statuses become warnings; weaker TDX statuses not opted in become refusals.
    fn relax(&self, reasons: Vec<Reason>) -> Vec<Reason> {
        let p = &self.doc.policy;
        let accepted = p
            .tdx
            .as_ref()
            .map(TdxRules::accepted_statuses)
            .unwrap_or_default();
        reasons
            .into_iter()
            .map(|mut r| {
                if let Some(status) = tdx_status_of(&r.code) {
                    if accepted.contains(&status) {
                        r.severity = Status::Warning;
                        r.message = format!(
                            "{} (accepted: policy {:?} lists {status} in tcb_statuses)",
                            r.message, p.name
                        );
                    } else {
                        r.severity = Status::Contraindicated;
                        r.message = format!(
                            "{}; policy {:?} accepts only UpToDate unless tcb_statuses names {status}",
                            r.message, p.name
                        );
                    }
                } else if p.tolerate.iter().any(|t| t == &r.code)
                    && r.severity > Status::Warning
                {
                    r.severity = Status::Warning;
                    r.message = format!("{} (tolerated by policy {:?})", r.message, p.name);
                }
                r
            })
            .collect()
    }

    /// Apply the policy's rules to genuine claims. `root_sha256` is the root the
    /// endorsement chain ended at. Public so each rule can be tested on its own.
    pub fn check_claims(&self, claims: &Claims, root_sha256: Option<&str>) -> Findings {
        let mut f = Findings::default();
        let p = &self.doc.policy;
        let name = p.name.as_str();
        match claims {
            Claims::Snp(c) => match &p.snp {
                Some(rules) => check_snp(rules, c, root_sha256, name, &mut f),
                None => f.push(no_section("SEV-SNP", "snp", name)),
            },
            Claims::Tdx(c) => match &p.tdx {
                Some(rules) => check_tdx(rules, c, root_sha256, name, &mut f),
                None => f.push(no_section("TDX", "tdx", name)),
            },
            Claims::Sim(c) => match &p.sim {
                Some(rules) if rules.allow_simulated => check_sim(rules, c, name, &mut f),
                _ => f.push(Reason::refuse(
                    codes::SIMULATED_NOT_ALLOWED,
                    format!(
                        "simulated evidence is refused: policy {name:?} does not set [sim] allow_simulated = true (simulated evidence has no hardware protection)"
                    ),
                )),
            },
        }
        f
    }
}

fn no_section(tee: &str, section: &str, policy: &str) -> Reason {
    Reason::refuse(
        codes::TEE_TYPE_NOT_ACCEPTED,
        format!("{tee} evidence is refused: policy {policy:?} has no [{section}] section"),
    )
}

/// The reason code the TDX verifier uses for a weaker TCB status.
fn status_code(s: TcbStatus) -> Option<&'static str> {
    use tdx::codes as c;
    Some(match s {
        TcbStatus::UpToDate => return None,
        TcbStatus::SwHardeningNeeded => c::TCB_SW_HARDENING_NEEDED,
        TcbStatus::ConfigurationNeeded => c::TCB_CONFIGURATION_NEEDED,
        TcbStatus::ConfigurationAndSwHardeningNeeded => {
            c::TCB_CONFIGURATION_AND_SW_HARDENING_NEEDED
        }
        TcbStatus::OutOfDate => c::TCB_OUT_OF_DATE,
        TcbStatus::OutOfDateConfigurationNeeded => c::TCB_OUT_OF_DATE_CONFIGURATION_NEEDED,
        TcbStatus::Revoked => return None,
        TcbStatus::TdRelaunchAdvised => c::TCB_TD_RELAUNCH_ADVISED,
        TcbStatus::TdRelaunchAdvisedConfigurationNeeded => {
            c::TCB_TD_RELAUNCH_ADVISED_CONFIGURATION_NEEDED
        }
    })
}

fn tdx_status_of(code: &str) -> Option<TcbStatus> {
    crate::policy::OPT_IN_STATUSES
        .into_iter()
        .find(|s| status_code(*s) == Some(code))
}

fn short(bytes: &[u8]) -> String {
    let h = hex::encode(bytes);
    format!("{}…", h.get(..12).unwrap_or(&h))
}

fn list<const N: usize>(items: &[HexBytes<N>]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items
        .iter()
        .map(|x| short(&x.0))
        .collect::<Vec<_>>()
        .join(", ")
}

fn measurement_reason(m: &[u8], accepted: &[HexBytes<48>], what: &str, policy: &str) -> Reason {
    Reason::refuse(
        codes::MEASUREMENT_NOT_ACCEPTED,
        format!(
            "{what} {} not in policy {policy}; accepted: {}",
            short(m),
            list(accepted)
        ),
    )
}

fn check_root(
    accepted: &[HexBytes<32>],
    root: Option<&str>,
    pinned: &[&str],
    vendor: &str,
    policy: &str,
    f: &mut Findings,
) {
    let Some(root) = root else { return };
    let ok = if accepted.is_empty() {
        pinned.contains(&root)
    } else {
        accepted.iter().any(|a| a.to_string() == root)
    };
    if !ok {
        f.push(Reason::refuse(
            codes::ROOT_NOT_ACCEPTED,
            format!(
                "the chain ends at root {} which policy {policy} does not accept (accepted: {})",
                &root.get(..16).unwrap_or(root),
                if accepted.is_empty() {
                    format!("the pinned {vendor} roots")
                } else {
                    list(accepted)
                }
            ),
        ));
    }
}

fn tcb_below(got: TcbVersion, product: Product, min: &TcbMinimum) -> Vec<(&'static str, u8, u8)> {
    let d = got.decode(product);
    let mut parts = vec![
        ("bootloader", d.bootloader, min.bootloader),
        ("tee", d.tee, min.tee),
        ("snp", d.snp, min.snp),
        ("microcode", d.microcode, min.microcode),
    ];
    if let (Some(fmc), Some(m)) = (d.fmc, min.fmc) {
        parts.insert(0, ("fmc", fmc, m));
    }
    parts.into_iter().filter(|(_, v, m)| v < m).collect()
}

fn tcb_reason(code: &str, which: &str, low: &[(&str, u8, u8)], policy: &str) -> Reason {
    let parts: Vec<String> = low
        .iter()
        .map(|(n, v, m)| format!("{n} {v} < {m}"))
        .collect();
    Reason::refuse(
        code,
        format!(
            "{which} TCB is below the minimum of policy {policy}: {}",
            parts.join(", ")
        ),
    )
}

fn pinned_ark_fingerprints() -> Vec<&'static str> {
    snp::roots::PINNED
        .iter()
        .filter(|p| p.role == snp::roots::Role::Ark)
        .map(|p| p.sha256)
        .collect()
}

/// (reason code, field name, pinned value, claimed value)
type Pin<'a> = (&'static str, &'static str, Option<&'a [u8]>, &'a [u8]);

fn check_snp(r: &SnpRules, c: &SnpClaims, root: Option<&str>, policy: &str, f: &mut Findings) {
    check_root(
        &r.accepted_roots,
        root,
        &pinned_ark_fingerprints(),
        "AMD",
        policy,
        f,
    );
    if !r.measurements.iter().any(|m| m.0 == c.measurement) {
        f.push(measurement_reason(
            &c.measurement,
            &r.measurements,
            "measurement",
            policy,
        ));
    }
    let g = &r.guest;
    let gp = c.guest_policy();
    if gp.debug() && !g.allow_debug {
        f.push(Reason::refuse(
            codes::DEBUG_ENABLED,
            format!("the guest policy allows debugging (POLICY bit 19): the host can read and change the VM's memory; policy {policy} refuses debug guests"),
        ));
    }
    if gp.migrate_ma() && !g.allow_migration_agent {
        f.push(Reason::refuse(
            codes::MIGRATION_AGENT_ENABLED,
            format!("the guest policy allows a migration agent (POLICY bit 18); policy {policy} does not"),
        ));
    }
    if g.smt == SmtRule::Disabled && c.platform().smt_en() {
        f.push(Reason::refuse(
            codes::SMT_ENABLED,
            format!("SMT is enabled on the host (PLATFORM_INFO.SMT_EN); policy {policy} requires it disabled"),
        ));
    }
    if !g.allowed_vmpls.contains(&c.vmpl) {
        f.push(Reason::refuse(
            codes::VMPL_NOT_ALLOWED,
            format!(
                "the report was requested at VMPL {}; policy {policy} allows {:?}",
                c.vmpl, g.allowed_vmpls
            ),
        ));
    }
    if c.guest_svn < g.min_guest_svn {
        f.push(Reason::refuse(
            codes::GUEST_SVN_TOO_OLD,
            format!(
                "guest SVN {} is below the minimum {} of policy {policy}",
                c.guest_svn, g.min_guest_svn
            ),
        ));
    }
    for (code, which, tcb, min) in [
        (
            codes::TCB_TOO_OLD,
            "reported",
            c.reported_tcb,
            &r.tcb.min_reported,
        ),
        (
            codes::COMMITTED_TCB_TOO_OLD,
            "committed",
            c.committed_tcb,
            &r.tcb.min_committed,
        ),
        (
            codes::LAUNCH_TCB_TOO_OLD,
            "launch",
            c.launch_tcb,
            &r.tcb.min_launch,
        ),
    ] {
        let low = tcb_below(tcb, c.product, min);
        if !low.is_empty() {
            f.push(tcb_reason(code, which, &low, policy));
        }
    }
    let pins: [Pin<'_>; 5] = [
        (
            codes::HOST_DATA_MISMATCH,
            "HOST_DATA",
            g.host_data.as_ref().map(|x| &x.0[..]),
            &c.host_data,
        ),
        (
            codes::ID_KEY_MISMATCH,
            "ID key digest",
            g.id_key_digest.as_ref().map(|x| &x.0[..]),
            &c.id_key_digest,
        ),
        (
            codes::AUTHOR_KEY_MISMATCH,
            "author key digest",
            g.author_key_digest.as_ref().map(|x| &x.0[..]),
            &c.author_key_digest,
        ),
        (
            codes::FAMILY_ID_MISMATCH,
            "FAMILY_ID",
            g.family_id.as_ref().map(|x| &x.0[..]),
            &c.family_id,
        ),
        (
            codes::IMAGE_ID_MISMATCH,
            "IMAGE_ID",
            g.image_id.as_ref().map(|x| &x.0[..]),
            &c.image_id,
        ),
    ];
    for (code, what, pinned, got) in pins {
        if let Some(want) = pinned
            && want != got
        {
            f.push(Reason::refuse(
                code,
                format!(
                    "{what} {} differs from {} pinned by policy {policy}",
                    short(got),
                    short(want)
                ),
            ));
        }
    }
}

fn check_tdx(r: &TdxRules, t: &TdxAppraisal, root: Option<&str>, policy: &str, f: &mut Findings) {
    let c = &t.claims;
    check_root(
        &r.accepted_roots,
        root,
        &[tdx::roots::INTEL_SGX_ROOT_CA_SHA256],
        "Intel",
        policy,
        f,
    );
    let same_td: Vec<&TdxMeasurement> = r
        .measurements
        .iter()
        .filter(|m| m.mr_td.0 == c.mr_td)
        .collect();
    if same_td.is_empty() {
        let accepted: Vec<HexBytes<48>> = r.measurements.iter().map(|m| m.mr_td).collect();
        f.push(measurement_reason(&c.mr_td, &accepted, "MRTD", policy));
    } else {
        let differs = |m: &TdxMeasurement| -> Option<usize> {
            m.rtmrs()
                .iter()
                .zip(&c.rtmr)
                .position(|(want, got)| want.is_some_and(|w| &w.0 != got))
        };
        if let Some(i) = same_td
            .iter()
            .map(|m| differs(m))
            .collect::<Option<Vec<usize>>>()
            .and_then(|v| v.first().copied())
        {
            let want = same_td
                .first()
                .and_then(|m| m.rtmrs()[i].map(|x| short(&x.0)))
                .unwrap_or_default();
            f.push(Reason::refuse(
                codes::RTMR_NOT_ACCEPTED,
                format!(
                    "RTMR{i} {} differs from every measurement set of policy {policy} with this MRTD (first set: {want})",
                    short(&c.rtmr[i])
                ),
            ));
        }
    }
    for (code, what, accepted, got) in [
        (
            codes::MR_SEAM_NOT_ACCEPTED,
            "MRSEAM (TDX module)",
            &r.mr_seam,
            &c.mr_seam,
        ),
        (
            codes::MR_SIGNER_SEAM_NOT_ACCEPTED,
            "MRSIGNERSEAM",
            &r.mr_signer_seam,
            &c.mr_signer_seam,
        ),
    ] {
        if !accepted.is_empty() && !accepted.iter().any(|a| &a.0 == got) {
            f.push(Reason::refuse(
                code,
                format!(
                    "{what} {} not in policy {policy}; accepted: {}",
                    short(got),
                    list(accepted)
                ),
            ));
        }
    }
    if !r.xfam.is_empty() && !r.xfam.iter().any(|x| x.0 == c.xfam) {
        f.push(Reason::refuse(
            codes::XFAM_NOT_ACCEPTED,
            format!(
                "XFAM {} not in policy {policy}; accepted: {}",
                hex::encode(c.xfam),
                r.xfam
                    .iter()
                    .map(|x| x.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    let a = c.td_attributes;
    if a.debug() && !r.allow_debug {
        f.push(Reason::refuse(
            codes::DEBUG_ENABLED,
            format!("the TD runs with off-TD debug (TD_ATTRIBUTES.DEBUG): the host can read and change its memory; policy {policy} refuses debug TDs"),
        ));
    }
    if a.migratable() && !r.allow_migratable {
        f.push(Reason::refuse(
            codes::MIGRATABLE_TD,
            format!(
                "the TD is migratable (TD_ATTRIBUTES.MIGRATABLE); policy {policy} does not allow it"
            ),
        ));
    }
    if r.require_sept_ve_disable && !a.sept_ve_disable() {
        f.push(Reason::refuse(
            codes::SEPT_VE_NOT_DISABLED,
            format!("TD_ATTRIBUTES.SEPT_VE_DISABLE is off: the host can inject #VE on private pages; policy {policy} requires it on"),
        ));
    }
    if let Some(want) = &r.mr_config_id
        && want.0 != c.mr_config_id
    {
        f.push(Reason::refuse(
            codes::MR_CONFIG_ID_MISMATCH,
            format!(
                "MRCONFIGID {} differs from {} pinned by policy {policy}",
                short(&c.mr_config_id),
                short(&want.0)
            ),
        ));
    }
    if let Some(tcb) = &t.tcb {
        let numbers = std::iter::once(("TCB Info", tcb.platform.tcb_evaluation_data_number)).chain(
            tcb.qe_tcb_evaluation_data_number
                .map(|n| ("QE Identity", n)),
        );
        for (what, n) in numbers {
            if n < r.min_tcb_evaluation_data_number {
                f.push(Reason::refuse(
                    codes::TCB_EVALUATION_TOO_OLD,
                    format!(
                        "the {what} has TCB evaluation data number {n}, below the minimum {} of policy {policy}: fetch current collateral",
                        r.min_tcb_evaluation_data_number
                    ),
                ));
            }
        }
    }
}

fn check_sim(r: &SimRules, c: &SimClaims, policy: &str, f: &mut Findings) {
    if !r.measurements.contains(&c.measurement) {
        f.push(measurement_reason(
            &c.measurement.0,
            &r.measurements,
            "measurement",
            policy,
        ));
    }
    if c.policy.debug && !r.allow_debug {
        f.push(Reason::refuse(
            codes::DEBUG_ENABLED,
            format!(
                "the guest runs with debugging enabled; policy {policy} does not allow debug guests"
            ),
        ));
    }
    if c.policy.migrate_ma && !r.allow_migration_agent {
        f.push(Reason::refuse(
            codes::MIGRATION_AGENT_ENABLED,
            format!("the guest has a migration agent; policy {policy} does not allow one"),
        ));
    }
    if !r.allowed_vmpls.contains(&c.vmpl) {
        f.push(Reason::refuse(
            codes::VMPL_NOT_ALLOWED,
            format!(
                "the report was requested at VMPL {}; policy {policy} allows {:?}",
                c.vmpl, r.allowed_vmpls
            ),
        ));
    }
    let low = c.reported_tcb.below(&r.min_tcb);
    if !low.is_empty() {
        f.push(tcb_reason(codes::TCB_TOO_OLD, "reported", &low, policy));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn appraiser(statuses: &str) -> Appraiser {
        let text = format!(
            "format = 2\nname = \"t\"\n[tdx]\ntcb_statuses = [{statuses}]\n[[tdx.measurements]]\nmr_td = \"{}\"\n",
            "01".repeat(48)
        );
        Appraiser::new(PolicyDoc::parse(&text, "t").unwrap())
    }

    fn verdict(reasons: Vec<Reason>) -> Verdict {
        let a = appraiser("");
        let mut v = a.refusal("x", String::new(), 0);
        v.status = reasons.iter().map(|r| r.severity).max().unwrap();
        v.reasons = reasons;
        v
    }

    #[test]
    fn weaker_tdx_statuses_are_refused_unless_opted_in_by_name() {
        let sw = || {
            vec![Reason::warn(
                tdx::codes::TCB_SW_HARDENING_NEEDED,
                "TCB status SWHardeningNeeded",
            )]
        };
        let strict = appraiser("");
        let r = strict.relax(sw());
        assert_eq!(r[0].severity, Status::Contraindicated);
        assert!(
            r[0].message.contains("accepts only UpToDate"),
            "{}",
            r[0].message
        );
        let opted = appraiser("\"SWHardeningNeeded\"");
        let r = opted.relax(sw());
        assert_eq!(r[0].severity, Status::Warning);
        assert!(opted.accepts(&verdict(r.clone())));
        assert!(!strict.accepts(&verdict(r)));
        // OutOfDate is a refusal from the verifier; opting in makes it a warning, never
        // affirming.
        let ood = || {
            vec![Reason::refuse(
                tdx::codes::TCB_OUT_OF_DATE,
                "TCB status OutOfDate",
            )]
        };
        assert_eq!(
            appraiser("").relax(ood())[0].severity,
            Status::Contraindicated
        );
        assert_eq!(
            appraiser("\"OutOfDate\"").relax(ood())[0].severity,
            Status::Warning
        );
        // Revoked is never relaxed (and cannot be named in a policy).
        let revoked = vec![Reason::refuse(tdx::codes::TCB_REVOKED, "revoked")];
        assert_eq!(
            appraiser("\"OutOfDate\"").relax(revoked)[0].severity,
            Status::Contraindicated
        );
    }
}

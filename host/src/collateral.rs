//! Filling the collateral cache (`parley collateral fetch`) from AMD KDS and Intel PCS
//! (or a PCCS): VCEKs and AMD chains and CRLs, TDX TCB Info, QE Identity and CRLs.
//!
//! The layout is `parley_attestation::collateral`'s. Everything downloaded is checked
//! before it is stored — AMD chains against the pinned ARKs, a VCEK by verifying the
//! evidence it is fetched for, Intel collateral by verifying the quote with it — so a
//! wrongly signed file never enters the cache. Files are replaced atomically. Transient
//! failures (connection errors, HTTP 5xx and 429) are retried with backoff; the rest fail
//! at once with the URL and what to do. Appraisal never calls this: it reads the cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

use parley_attestation::collateral::{crl_der, quote_platform};
use parley_attestation::evidence::{EvidenceKind, detect};
use parley_attestation::snp::{self, AmdCert, Endorsements, Product, Report, TrustAnchors};
use parley_attestation::tdx::{self, Collateral, Quote, TrustRoots};
use parley_attestation::verdict::{Status, codes};
use time::OffsetDateTime;

/// Where to fetch from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// AMD Key Distribution Service base URL.
    pub kds: String,
    /// Intel PCS (or PCCS) base URL.
    pub pcs: String,
    /// The Intel SGX Root CA CRL.
    pub root_crl: String,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            kds: "https://kdsintf.amd.com".into(),
            pcs: "https://api.trustedservices.intel.com".into(),
            root_crl: "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der".into(),
        }
    }
}

/// Why fetching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error(
        "cannot reach {url} after {attempts} attempts: {reason}; check the URL and the network, or pass another --kds-url/--pcs-url"
    )]
    Unreachable {
        url: String,
        attempts: u32,
        reason: String,
    },
    #[error("{url} answered HTTP {status}: {hint}")]
    Status {
        url: String,
        status: u16,
        hint: String,
    },
    #[error("{url} served {what} that does not verify: {reason}; nothing was stored")]
    Invalid {
        url: String,
        what: String,
        reason: String,
    },
    #[error("the evidence cannot be used to fetch collateral: {0}")]
    Evidence(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// One stored file, for the command's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stored {
    pub file: String,
    pub url: String,
    pub sha256: String,
}

/// What one fetch did.
#[derive(Debug, Default, serde::Serialize)]
pub struct FetchReport {
    pub stored: Vec<Stored>,
    pub notes: Vec<String>,
}

/// Fetches collateral for evidence into a cache directory.
pub struct Fetcher {
    client: reqwest::Client,
    sources: Sources,
    attempts: u32,
    backoff: Duration,
    /// Time at which downloaded items must be valid (now, unless testing old vectors).
    at: OffsetDateTime,
}

struct Response {
    body: Vec<u8>,
    headers: reqwest::header::HeaderMap,
}

impl Fetcher {
    pub fn new(
        sources: Sources,
        attempts: u32,
        backoff: Duration,
        at: OffsetDateTime,
    ) -> Result<Self, FetchError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| FetchError::Client(e.to_string()))?;
        Ok(Fetcher {
            client,
            sources,
            attempts: attempts.max(1),
            backoff,
            at,
        })
    }

    /// GET with retries. `None` for 404 when `missing_ok`.
    async fn get(&self, url: &str, missing_ok: bool) -> Result<Option<Response>, FetchError> {
        let mut last = String::new();
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
            }
            let resp = match self.client.get(url).send().await {
                Ok(r) => r,
                Err(e) => {
                    last = error_chain(&e);
                    continue;
                }
            };
            let status = resp.status();
            if status.is_server_error() || status.as_u16() == 429 {
                last = format!("HTTP {status}");
                continue;
            }
            if status.as_u16() == 404 && missing_ok {
                return Ok(None);
            }
            if !status.is_success() {
                return Err(FetchError::Status {
                    url: url.to_owned(),
                    status: status.as_u16(),
                    hint: match status.as_u16() {
                        404 => "the service has no such item (wrong product, chip id, TCB or FMSPC?)".into(),
                        401 | 403 => "access denied: a PCS subscription key or PCCS credentials may be needed".into(),
                        _ => "unexpected answer".into(),
                    },
                });
            }
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(b) => {
                    return Ok(Some(Response {
                        body: b.to_vec(),
                        headers,
                    }));
                }
                Err(e) => last = error_chain(&e),
            }
        }
        Err(FetchError::Unreachable {
            url: url.to_owned(),
            attempts: self.attempts,
            reason: last,
        })
    }

    /// Fetch what `evidence` needs into `dir`. `product` names the SNP product line when a
    /// v2 report cannot say (no CPUID).
    pub async fn fetch_for(
        &self,
        evidence: &[u8],
        product: Option<Product>,
        dir: &Path,
    ) -> Result<FetchReport, FetchError> {
        match detect(evidence) {
            Some(EvidenceKind::Snp) => self.fetch_snp(evidence, product, dir).await,
            Some(EvidenceKind::Tdx) => self.fetch_tdx(evidence, dir).await,
            Some(EvidenceKind::Sim) => Err(FetchError::Evidence(
                "simulated evidence needs no collateral".into(),
            )),
            None => Err(FetchError::Evidence("not SEV-SNP or TDX evidence".into())),
        }
    }

    async fn fetch_snp(
        &self,
        evidence: &[u8],
        product: Option<Product>,
        dir: &Path,
    ) -> Result<FetchReport, FetchError> {
        let report = Report::parse(evidence).map_err(|e| FetchError::Evidence(e.to_string()))?;
        if report.signing_key() != snp::SigningKey::Vcek {
            return Err(FetchError::Evidence(format!(
                "the report is signed by the {}: only VCEKs can be fetched from AMD KDS (VLEKs come from the cloud provider; put them in snp/<Product>/vlek/)",
                report.signing_key()
            )));
        }
        let product = report.product().or(product).ok_or_else(|| {
            FetchError::Evidence(
                "a version 2 report does not name its product line: pass --product Milan|Genoa|Turin".into(),
            )
        })?;
        let mut out = FetchReport::default();
        let pdir = dir.join("snp").join(product.as_str());
        let base = format!(
            "{}/vcek/v1/{}",
            self.sources.kds.trim_end_matches('/'),
            product
        );

        // ASK + ARK: the ARK must be a pinned one and sign the ASK.
        let url = format!("{base}/cert_chain");
        let chain = self
            .get(&url, false)
            .await?
            .map(|r| r.body)
            .unwrap_or_default();
        let certs = AmdCert::parse_many(&chain, &url)
            .map_err(|e| invalid(&url, "a certificate chain", e))?;
        let pinned = TrustAnchors::pinned().map_err(|e| invalid(&url, "a certificate chain", e))?;
        let ark = certs
            .iter()
            .find(|c| c.is_self_signed() && TrustAnchors::is_pinned_ark(c))
            .ok_or_else(|| {
                invalid(
                    &url,
                    "a certificate chain",
                    format!("no pinned {product} ARK in it"),
                )
            })?;
        if !certs
            .iter()
            .any(|c| !c.is_self_signed() && matches!(c.signed_by(ark), snp::cert::SignedBy::Yes))
        {
            return Err(invalid(
                &url,
                "a certificate chain",
                "the ASK is not signed by the pinned ARK",
            ));
        }

        // The ARK's CRL, signed by it.
        let url_crl = format!("{base}/crl");
        let crl = match self.get(&url_crl, true).await? {
            Some(r) => {
                let der = crl_der(&r.body)
                    .ok_or_else(|| invalid(&url_crl, "a CRL", "not DER, PEM or hex"))?;
                check_amd_crl(&der, ark).map_err(|e| invalid(&url_crl, "a CRL", e))?;
                Some(der)
            }
            None => {
                out.notes.push(format!(
                    "{url_crl} has no CRL (HTTP 404): verdicts will carry crl-missing until one is fetched"
                ));
                None
            }
        };

        // The VCEK for this chip and reported TCB; it must verify the report.
        let tcb = report.reported_tcb().decode(product);
        let hwid_len = if product.has_fmc() { 8 } else { 64 };
        let hwid = hex::encode(report.chip_id().get(..hwid_len).unwrap_or_default());
        let mut q = format!(
            "blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
            tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode
        );
        if let Some(fmc) = tcb.fmc {
            q = format!("fmcSPL={fmc}&{q}");
        }
        let url_vcek = format!("{base}/{hwid}?{q}");
        let vcek = self
            .get(&url_vcek, false)
            .await?
            .map(|r| r.body)
            .unwrap_or_default();
        let mut e = Endorsements::from_vek(&vcek);
        e.add_file(&url, &chain);
        if let Some(der) = &crl {
            e.add_crl(&url_crl, der.clone());
        }
        match snp::verify(evidence, &e, pinned, self.at) {
            Ok(v) if v.findings.status() != Status::Contraindicated => {}
            Ok(v) => return Err(invalid(&url_vcek, "a VCEK", summary(&v.findings))),
            Err(r) => return Err(invalid(&url_vcek, "a VCEK", summary(&r.findings))),
        }
        let tcb_hex = report.reported_tcb().to_string();
        store(&mut out, &pdir.join("cert_chain.pem"), &url, &chain)?;
        if let Some(der) = &crl {
            store(&mut out, &pdir.join("crl.der"), &url_crl, der)?;
        }
        store(
            &mut out,
            &pdir.join("vcek").join(format!("{hwid}-{tcb_hex}.der")),
            &url_vcek,
            &vcek,
        )?;
        Ok(out)
    }

    async fn fetch_tdx(&self, evidence: &[u8], dir: &Path) -> Result<FetchReport, FetchError> {
        let quote = Quote::parse(evidence).map_err(|e| FetchError::Evidence(e.to_string()))?;
        let (fmspc, ca) = quote_platform(&quote).ok_or_else(|| {
            FetchError::Evidence(
                "the quote carries no PCK certificate chain with an SGX extension".into(),
            )
        })?;
        let pcs = self.sources.pcs.trim_end_matches('/');
        let url_tcb = format!("{pcs}/tdx/certification/v4/tcb?fmspc={fmspc}");
        let url_qe = format!("{pcs}/tdx/certification/v4/qe/identity");
        let url_pck = format!("{pcs}/sgx/certification/v4/pckcrl?ca={ca}&encoding=der");
        let url_root = self.sources.root_crl.clone();

        let tcb = self
            .get(&url_tcb, false)
            .await?
            .ok_or_else(|| missing(&url_tcb))?;
        let chain = issuer_chain(&tcb, "TCB-Info-Issuer-Chain", &url_tcb)?;
        let qe = self
            .get(&url_qe, false)
            .await?
            .ok_or_else(|| missing(&url_qe))?;
        let pck = self
            .get(&url_pck, false)
            .await?
            .ok_or_else(|| missing(&url_pck))?;
        let pck_der =
            crl_der(&pck.body).ok_or_else(|| invalid(&url_pck, "a CRL", "not DER, PEM or hex"))?;
        let root = self
            .get(&url_root, false)
            .await?
            .ok_or_else(|| missing(&url_root))?;
        let root_der = crl_der(&root.body)
            .ok_or_else(|| invalid(&url_root, "a CRL", "not DER, PEM or hex"))?;

        // Assemble and verify the quote with exactly what would be stored.
        let mut c = Collateral::default();
        c.set_tcb_info_pcs(&tcb.body, &url_tcb)
            .map_err(|e| invalid(&url_tcb, "TCB Info", e))?;
        c.set_qe_identity_pcs(&qe.body, &url_qe)
            .map_err(|e| invalid(&url_qe, "a QE Identity", e))?;
        let certs =
            pem_certs(&chain).map_err(|e| invalid(&url_tcb, "a TCB-Info-Issuer-Chain", e))?;
        c.tcb_info_issuer_chain = Some(certs.clone());
        c.qe_identity_issuer_chain = Some(certs);
        c.pck_crl = Some(pck_der.clone());
        c.root_ca_crl = Some(root_der.clone());
        let v = tdx::verify(&quote, &c, &TrustRoots::intel(), self.at);
        let blame = |code: &str| -> Option<(&str, &str)> {
            match code {
                tdx::codes::BAD_COLLATERAL_SIGNATURE
                | tdx::codes::COLLATERAL_CHAIN_INVALID
                | tdx::codes::FMSPC_MISMATCH => Some((url_tcb.as_str(), "TCB Info or QE Identity")),
                codes::CRL_INVALID => Some((url_pck.as_str(), "a CRL")),
                tdx::codes::UNTRUSTED_ROOT => Some((url_tcb.as_str(), "a certificate chain")),
                _ => None,
            }
        };
        if let Some((url, what, reason)) = v
            .findings
            .reasons
            .iter()
            .find_map(|r| blame(&r.code).map(|(u, w)| (u, w, r.to_string())))
        {
            return Err(invalid(url, what, reason));
        }
        let mut out = FetchReport::default();
        let tdir = dir.join("tdx");
        for r in v
            .findings
            .reasons
            .iter()
            .filter(|r| r.severity != Status::Affirming)
        {
            out.notes
                .push(format!("with this collateral at {}: {r}", fmt(self.at)));
        }
        store(
            &mut out,
            &tdir.join(format!("fmspc-{fmspc}")).join("tcb_info.json"),
            &url_tcb,
            &tcb.body,
        )?;
        store(
            &mut out,
            &tdir.join("tcb_signing_chain.pem"),
            &url_tcb,
            &chain,
        )?;
        store(&mut out, &tdir.join("qe_identity.json"), &url_qe, &qe.body)?;
        store(
            &mut out,
            &tdir.join(format!("pck_crl_{ca}.der")),
            &url_pck,
            &pck_der,
        )?;
        store(
            &mut out,
            &tdir.join("root_ca_crl.der"),
            &url_root,
            &root_der,
        )?;
        Ok(out)
    }
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn summary(f: &parley_attestation::verdict::Findings) -> String {
    f.reasons
        .iter()
        .filter(|r| r.severity == Status::Contraindicated)
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(url: &str, what: &str, reason: impl std::fmt::Display) -> FetchError {
    FetchError::Invalid {
        url: url.to_owned(),
        what: what.to_owned(),
        reason: reason.to_string(),
    }
}

fn missing(url: &str) -> FetchError {
    FetchError::Status {
        url: url.to_owned(),
        status: 404,
        hint: "not found".into(),
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A PCS issuer-chain header: URL-encoded PEM.
fn issuer_chain(r: &Response, header: &str, url: &str) -> Result<Vec<u8>, FetchError> {
    let raw = r
        .headers
        .get(header)
        .ok_or_else(|| invalid(url, "a response", format!("no {header} header")))?
        .to_str()
        .map_err(|e| invalid(url, "a response", format!("{header}: {e}")))?;
    Ok(percent_encoding::percent_decode_str(raw).collect())
}

fn pem_certs(pem: &[u8]) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate".into());
    }
    Ok(certs)
}

/// An AMD CRL must be signed by the ARK (RSASSA-PSS SHA-384) and name it as issuer.
fn check_amd_crl(der: &[u8], ark: &AmdCert) -> Result<(), String> {
    use x509_parser::prelude::FromDer;
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| e.to_string())?;
    if crl.issuer().as_raw() != ark.subject.as_slice() {
        return Err(format!("the CRL is not issued by {}", ark.subject_cn));
    }
    let snp::cert::PublicKey::Rsa(key) = &ark.key else {
        return Err("the ARK has no RSA key".into());
    };
    ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PSS_2048_8192_SHA384, key)
        .verify(crl.tbs_cert_list.as_ref(), &crl.signature_value.data)
        .map_err(|_| format!("the CRL signature does not verify with {}", ark.subject_cn))
}

/// Write atomically (temporary file, then rename) and record it.
fn store(out: &mut FetchReport, path: &Path, url: &str, bytes: &[u8]) -> Result<(), FetchError> {
    let io = |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp: PathBuf = path.with_extension("partial");
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    out.stored.push(Stored {
        file: path.display().to_string(),
        url: url.to_owned(),
        sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
    });
    Ok(())
}

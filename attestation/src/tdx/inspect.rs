//! The JSON view of a quote printed by `parley attest inspect`: every parsed field, byte
//! strings as lowercase hex in quote order, integers as numbers. Field names follow the
//! issue's list (`mr_td`, `rtmr0`, `tee_tcb_svn2`, `mr_service_td`, ...).
//!
//! Nothing here is verified: the PCK chain is decoded for display only.

use serde_json::{Value, json};

use super::pck::{CertSummary, PckChain, PckExtension};
use super::quote::{CertificationData, EnclaveReport, Quote};
use super::verify::{PckIdentity, TdxClaims};

/// The whole quote as JSON.
pub fn to_json(q: &Quote<'_>) -> Value {
    let h = q.header();
    let s = q.signature_data();
    let claims = TdxClaims::from_quote(q);
    let mut body = claims.to_json();
    if let Some(m) = body.as_object_mut() {
        m.remove("quote_version");
        m.remove("body_type");
    }
    let mut out = json!({
        "type": "tdx",
        "length": q.input().len(),
        "quote_length": q.quote_bytes().len(),
        "signed_length": q.signed_bytes().len(),
        "header": {
            "version": h.version,
            "attestation_key_type": h.attestation_key_type,
            "tee_type": h.tee_type,
            "qe_svn": h.qe_svn,
            "pce_svn": h.pce_svn,
            "qe_vendor_id": hex::encode(h.qe_vendor_id),
            "user_data": hex::encode(h.user_data),
        },
        "body": body,
        "signature_data": {
            "length": s.len,
            "quote_signature": hex::encode(s.quote_signature),
            "attestation_key": hex::encode(s.attestation_key),
            "certification_data_type": s.certification_data_type,
            "qe_report": enclave_report_json(&s.qe_report),
            "qe_report_signature": hex::encode(s.qe_report_signature),
            "qe_auth_data": hex::encode(s.qe_auth_data),
            "certification_data": certification_json(&s.certification_data),
        },
        "trailing_bytes": {
            "count": q.trailing().len(),
            "nonzero": q.trailing_nonzero(),
        },
    });
    if let (Some(m), Some(t)) = (out.as_object_mut(), q.body_kind().v5_body_type()) {
        m.insert(
            "body_descriptor".into(),
            json!({ "type": t, "size": q.signed_bytes().len().saturating_sub(54) }),
        );
    }
    out
}

fn enclave_report_json(r: &EnclaveReport<'_>) -> Value {
    json!({
        "cpu_svn": hex::encode(r.cpu_svn),
        "misc_select": r.misc_select,
        "isv_ext_prod_id": hex::encode(r.isv_ext_prod_id),
        "attributes": hex::encode(r.attributes),
        "mr_enclave": hex::encode(r.mr_enclave),
        "mr_signer": hex::encode(r.mr_signer),
        "config_id": hex::encode(r.config_id),
        "isv_prod_id": r.isv_prod_id,
        "isv_svn": r.isv_svn,
        "config_svn": r.config_svn,
        "isv_family_id": hex::encode(r.isv_family_id),
        "report_data": hex::encode(r.report_data),
    })
}

fn certification_json(c: &CertificationData<'_>) -> Value {
    match c {
        CertificationData::PckCertChain(pem) => {
            let mut v = json!({ "type": 5, "length": pem.len() });
            let Some(m) = v.as_object_mut() else {
                return v;
            };
            match PckChain::from_pem(pem) {
                Ok(chain) => {
                    let certs: Vec<Value> = chain
                        .certs
                        .iter()
                        .map(|c| match CertSummary::of(c) {
                            Ok(s) => json!(s),
                            Err(e) => json!({ "error": e }),
                        })
                        .collect();
                    m.insert("pck_chain".into(), Value::Array(certs));
                    if let Some(leaf) = chain.leaf() {
                        let ext = match PckExtension::from_cert(leaf) {
                            Ok(extension) => PckIdentity {
                                extension,
                                leaf_sha256: super::roots::sha256_hex(leaf),
                            }
                            .to_json(),
                            Err(e) => json!({ "error": e.to_string() }),
                        };
                        m.insert("pck_extension".into(), ext);
                    }
                }
                Err(e) => {
                    m.insert("error".into(), json!(e.to_string()));
                }
            }
            v
        }
        CertificationData::Other { cert_type, data } => {
            json!({ "type": cert_type, "length": data.len(), "data": hex::encode(data) })
        }
    }
}

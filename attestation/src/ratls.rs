//! RA-TLS, gate 1: attestation evidence inside each node's TLS certificate, and the rustls
//! verifiers that appraise it on both sides of a mutual TLS 1.3 handshake.
//!
//! At start-up a node creates a fresh TLS key pair and collects evidence whose report data
//! is [`gate1_report_data`]: SHA-512 over a domain label, the SHA-256 of the certificate's
//! SubjectPublicKeyInfo and the node's identity-key fingerprint. Its identity key signs a
//! [`TlsBinding`] naming the party, the TLS key, the federation manifest hash and the
//! certificate's validity. Both travel in one non-critical X.509 extension under OID
//! 2.23.133.5.4.9 (TCG DICE conceptual message wrapper). A peer learns *which code* (the
//! appraised evidence) holds the TLS key and *which organisation* (the pinned identity key)
//! vouches for it; the TLS handshake signature proves possession of the key.
//!
//! Extension encoding: the extnValue is a DER `UTF8String` holding a JSON CMW collection
//! (draft-ietf-rats-msg-wrap):
//! `{"__cmwc_t": "tag:parley.dev,2026:ra-tls/v1",
//!   "evidence": ["application/vnd.parley.evidence", base64url(evidence bytes)],
//!   "binding":  ["application/vnd.parley.tls-binding+json", base64url(JSON {binding, signature})]}`.
//!
//! Gate 1 says nothing about freshness: gate 2 (fresh, exporter-bound evidence after the
//! handshake) comes with the attested-session work.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::appraise::Platform;
use crate::appraise::{Appraiser, Verdict};
use crate::canonical::{self, Domain};
use crate::hexbytes::{Ed25519Key, HexBytes};
use crate::verdict::Reason;

/// TCG DICE conceptual message wrapper extension (2.23.133.5.4.9).
pub const EVIDENCE_EXTENSION_OID: [u64; 6] = [2, 23, 133, 5, 4, 9];
const EVIDENCE_EXTENSION_OID_STR: &str = "2.23.133.5.4.9";
const GATE1_LABEL: &[u8] = b"parley/ra-tls/gate1/v1";
const CMW_COLLECTION_TYPE: &str = "tag:parley.dev,2026:ra-tls/v1";
const EVIDENCE_MEDIA_TYPE: &str = "application/vnd.parley.evidence";
const BINDING_MEDIA_TYPE: &str = "application/vnd.parley.tls-binding+json";
/// The SNP host's certificate table (VCEK or VLEK, ASK, ARK), as the guest received it.
const SNP_CERT_TABLE_MEDIA_TYPE: &str = "application/vnd.parley.snp-cert-table";
/// Certificates larger than this are refused before parsing.
pub const MAX_CERT_LEN: usize = 64 * 1024;

/// Reason codes specific to RA-TLS.
pub mod codes {
    /// The certificate or its evidence extension could not be parsed.
    pub const MALFORMED_CERTIFICATE: &str = "malformed-certificate";
    /// The certificate is outside its validity window.
    pub const CERTIFICATE_EXPIRED: &str = "certificate-expired";
    /// The binding names a party that is not in the federation manifest.
    pub const UNKNOWN_PARTY: &str = "unknown-party";
    /// The binding names another party than the one this connection is for.
    pub const WRONG_PARTY: &str = "wrong-party";
    /// The identity-key signature over the TLS key does not verify under the manifest's key.
    pub const IDENTITY_KEY_MISMATCH: &str = "identity-key-mismatch";
    /// The binding is for another TLS key than the certificate's.
    pub const TLS_KEY_MISMATCH: &str = "tls-key-mismatch";
    /// The peer presents another federation manifest.
    pub const MANIFEST_MISMATCH: &str = "manifest-mismatch";
    /// Gate-2 evidence comes from another platform or code than gate-1 evidence.
    pub const PLATFORM_CHANGED: &str = "platform-changed";
    /// The peer's clock differs from ours by more than the policy allows.
    pub const CLOCK_SKEW: &str = "clock-skew";
    /// The peer sent back our own challenge nonce.
    pub const REFLECTION: &str = "reflection";
    /// The peer answered no challenge of ours, or answered one twice.
    pub const UNSOLICITED_EVIDENCE: &str = "unsolicited-evidence";
}

/// The report data that gate-1 evidence must carry.
pub fn gate1_report_data(spki_der: &[u8], identity_fingerprint: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(GATE1_LABEL);
    h.update([0u8]);
    h.update(Sha256::digest(spki_der));
    h.update(identity_fingerprint);
    h.finalize().into()
}

/// Gate 2: which side of the TLS connection produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
    fn tag(self) -> u8 {
        match self {
            Role::Client => b'C',
            Role::Server => b'S',
        }
    }
}

/// The TLS exporter (RFC 8446 §7.5) label for gate 2; the context is empty and the output
/// is [`EXPORTER_LEN`] bytes. Both ends of one connection derive the same value, and no
/// other connection can.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-parley-gate2-v1";
pub const EXPORTER_LEN: usize = 32;
const GATE2_LABEL: &[u8] = b"parley/ra-tls/gate2/v1";

/// The report data of gate-2 evidence: what the producer attests to, all values it computed
/// itself — its role, the SHA-256 of **its own** certificate's SubjectPublicKeyInfo, the
/// SHA-256 of this connection's exporter value, the manifest hash, and the nonce the
/// **peer** sent.
pub fn gate2_report_data(
    role: Role,
    own_spki_sha256: &[u8; 32],
    exporter: &[u8],
    manifest_hash: &[u8; 32],
    peer_nonce: &[u8; 32],
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(GATE2_LABEL);
    h.update([0u8, role.tag()]);
    h.update(own_spki_sha256);
    h.update(Sha256::digest(exporter));
    h.update(manifest_hash);
    h.update(peer_nonce);
    h.finalize().into()
}

/// What an appraiser knows when fresh (gate-2) evidence arrives.
#[derive(Debug, Clone)]
pub struct Gate2Context<'a> {
    /// The role the *peer* has on this connection.
    pub peer_role: Role,
    /// SHA-256 of the peer certificate's SubjectPublicKeyInfo (from this TLS connection).
    pub peer_spki_sha256: [u8; 32],
    pub exporter: &'a [u8],
    pub manifest_hash: [u8; 32],
    /// The nonce we sent on this connection.
    pub our_nonce: [u8; 32],
    /// The platform the peer's gate-1 evidence came from.
    pub gate1_platform: Option<&'a Platform>,
    /// The peer's clock when it answered, and ours when we received it (Unix seconds).
    pub peer_time: i64,
    pub now: i64,
}

/// What a node's identity key vouches for: this TLS key belongs to this party of this
/// federation for this period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsBinding {
    pub party: String,
    pub spki_sha256: HexBytes<32>,
    pub manifest_hash: HexBytes<32>,
    pub not_before: i64,
    pub not_after: i64,
}

impl TlsBinding {
    pub fn to_be_signed(&self) -> Vec<u8> {
        canonical::to_be_signed(Domain::TlsBinding, self).unwrap_or_default()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedBinding {
    binding: TlsBinding,
    signature: HexBytes<64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CmwCollection {
    #[serde(rename = "__cmwc_t")]
    collection_type: String,
    evidence: (String, String),
    binding: (String, String),
    /// Present when the platform's endorsements travel with the evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endorsements: Option<(String, String)>,
}

/// Why an RA-TLS certificate could not be built or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RaTlsError {
    #[error("malformed RA-TLS certificate: {0}")]
    Malformed(String),
    #[error("cannot build RA-TLS certificate: {0}")]
    Build(String),
}

/// The DER extnValue carrying `evidence` and the signed `binding`.
/// The evidence extension's value: a CMW collection of the evidence, the identity binding
/// and, when not empty, the platform's `endorsements` (SNP certificate table).
pub fn extension_value(
    evidence: &[u8],
    endorsements: &[u8],
    binding: &TlsBinding,
    signature: &[u8; 64],
) -> Vec<u8> {
    let signed = SignedBinding {
        binding: binding.clone(),
        signature: HexBytes(*signature),
    };
    let cmw = CmwCollection {
        collection_type: CMW_COLLECTION_TYPE.into(),
        evidence: (EVIDENCE_MEDIA_TYPE.into(), URL_SAFE_NO_PAD.encode(evidence)),
        binding: (
            BINDING_MEDIA_TYPE.into(),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&signed).unwrap_or_default()),
        ),
        endorsements: (!endorsements.is_empty()).then(|| {
            (
                SNP_CERT_TABLE_MEDIA_TYPE.into(),
                URL_SAFE_NO_PAD.encode(endorsements),
            )
        }),
    };
    let json = serde_json::to_string(&cmw).unwrap_or_default();
    der_utf8_string(&json)
}

fn der_utf8_string(s: &str) -> Vec<u8> {
    use asn1_rs::ToDer;
    asn1_rs::Utf8String::new(s).to_der_vec().unwrap_or_default()
}

/// A self-signed certificate for `key` carrying the evidence extension.
pub fn build_certificate(
    key: &rcgen::KeyPair,
    party: &str,
    extension: Vec<u8>,
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
) -> Result<CertificateDer<'static>, RaTlsError> {
    let mut params = rcgen::CertificateParams::new(vec![party.to_owned()])
        .map_err(|e| RaTlsError::Build(e.to_string()))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, party);
    params.not_before = not_before;
    params.not_after = not_after;
    let mut ext = rcgen::CustomExtension::from_oid_content(&EVIDENCE_EXTENSION_OID, extension);
    ext.set_criticality(false);
    params.custom_extensions.push(ext);
    let cert = params
        .self_signed(key)
        .map_err(|e| RaTlsError::Build(e.to_string()))?;
    Ok(cert.der().clone())
}

/// The SubjectPublicKeyInfo DER of an rcgen key pair (what gate-1 report data hashes).
pub fn spki_der(key: &rcgen::KeyPair) -> Vec<u8> {
    use rcgen::PublicKeyData;
    key.subject_public_key_info()
}

/// The private key of an rcgen key pair in the form rustls wants.
pub fn private_key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// The parts of a peer's RA-TLS certificate, before appraisal.
#[derive(Debug, Clone)]
pub struct RaTlsCert {
    pub spki_der: Vec<u8>,
    pub binding: TlsBinding,
    pub binding_signature: [u8; 64],
    pub evidence: Vec<u8>,
    /// The SNP certificate table sent with the evidence (empty when none).
    pub endorsements: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
}

/// Parse a certificate and its evidence extension; checks the self-signature.
pub fn parse_certificate(der: &[u8]) -> Result<RaTlsCert, RaTlsError> {
    let bad = |m: String| RaTlsError::Malformed(m);
    if der.len() > MAX_CERT_LEN {
        return Err(bad(format!(
            "{} bytes exceeds the {MAX_CERT_LEN}-byte limit",
            der.len()
        )));
    }
    let (rest, cert) = X509Certificate::from_der(der)
        .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} trailing bytes after the certificate",
            rest.len()
        )));
    }
    cert.verify_signature(None)
        .map_err(|e| bad(format!("the self-signature does not verify: {e}")))?;
    let mut found = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == EVIDENCE_EXTENSION_OID_STR {
            if found.is_some() {
                return Err(bad("two evidence extensions".into()));
            }
            if ext.critical {
                return Err(bad("the evidence extension must be non-critical".into()));
            }
            found = Some(ext.value);
        }
    }
    let value = found.ok_or_else(|| {
        bad(format!(
            "no evidence extension ({EVIDENCE_EXTENSION_OID_STR})"
        ))
    })?;
    let json = {
        use asn1_rs::FromDer as _;
        let (rest, s) = asn1_rs::Utf8String::from_der(value).map_err(|e| {
            bad(format!(
                "the evidence extension is not a DER UTF8String: {e}"
            ))
        })?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes in the evidence extension".into()));
        }
        s.string()
    };
    let cmw: CmwCollection = serde_json::from_str(&json).map_err(|e| {
        bad(format!(
            "the evidence extension is not a Parley CMW collection: {e}"
        ))
    })?;
    if cmw.collection_type != CMW_COLLECTION_TYPE
        || cmw.evidence.0 != EVIDENCE_MEDIA_TYPE
        || cmw.binding.0 != BINDING_MEDIA_TYPE
        || cmw
            .endorsements
            .as_ref()
            .is_some_and(|e| e.0 != SNP_CERT_TABLE_MEDIA_TYPE)
    {
        return Err(bad("unexpected CMW collection or media types".into()));
    }
    let evidence = URL_SAFE_NO_PAD
        .decode(&cmw.evidence.1)
        .map_err(|e| bad(format!("evidence is not base64url: {e}")))?;
    let binding_json = URL_SAFE_NO_PAD
        .decode(&cmw.binding.1)
        .map_err(|e| bad(format!("binding is not base64url: {e}")))?;
    let signed: SignedBinding = serde_json::from_slice(&binding_json)
        .map_err(|e| bad(format!("malformed identity binding: {e}")))?;
    let endorsements = match &cmw.endorsements {
        Some((_, b64)) => URL_SAFE_NO_PAD
            .decode(b64)
            .map_err(|e| bad(format!("endorsements are not base64url: {e}")))?,
        None => Vec::new(),
    };
    Ok(RaTlsCert {
        spki_der: cert.tbs_certificate.subject_pki.raw.to_vec(),
        binding: signed.binding,
        binding_signature: signed.signature.0,
        evidence,
        endorsements,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// A party of the federation, as pinned by the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedParty {
    pub name: String,
    pub identity_key: Ed25519Key,
}

/// Receives every verdict an attested session reaches, accepted or not.
pub trait VerdictSink: Send + Sync + fmt::Debug {
    /// `peer` is the party the evidence claims to be (or `"unidentified"`); `gate` is 1 for
    /// the certificate's evidence, 2 for fresh session evidence.
    fn record_gate(&self, peer: &str, gate: u8, verdict: &Verdict, accepted: bool);
}

/// Everything the verifiers need: who we are, who the parties are, and our policy.
#[derive(Debug)]
pub struct Gate1 {
    pub me: String,
    pub parties: Vec<PinnedParty>,
    pub manifest_hash: [u8; 32],
    pub appraiser: Appraiser,
    pub sink: Arc<dyn VerdictSink>,
}

/// The result of gate 1 for one certificate.
#[derive(Debug, Clone)]
pub struct Gate1Outcome {
    pub party: Option<String>,
    pub verdict: Verdict,
    pub accepted: bool,
}

impl Gate1 {
    /// Check a peer certificate at `now` (Unix seconds). `expected` is the party this
    /// connection is for (client side), or `None` (server side: any other party).
    pub fn check(&self, der: &[u8], expected: Option<&str>, now: i64) -> Gate1Outcome {
        let refuse = |party: Option<String>, code: &str, message: String| Gate1Outcome {
            party,
            verdict: self.appraiser.refusal(code, message, now),
            accepted: false,
        };
        let cert = match parse_certificate(der) {
            Ok(c) => c,
            Err(e) => {
                return refuse(
                    expected.map(str::to_owned),
                    codes::MALFORMED_CERTIFICATE,
                    e.to_string(),
                );
            }
        };
        let b = &cert.binding;
        let claimed = Some(b.party.clone());
        let Some(party) = self.parties.iter().find(|p| p.name == b.party) else {
            return refuse(
                claimed,
                codes::UNKNOWN_PARTY,
                format!(
                    "the certificate names {:?}, which is not a party of this federation",
                    b.party
                ),
            );
        };
        if b.party == self.me {
            return refuse(
                claimed,
                codes::WRONG_PARTY,
                format!("the peer claims to be this node ({:?})", self.me),
            );
        }
        if let Some(exp) = expected
            && exp != b.party
        {
            return refuse(
                claimed,
                codes::WRONG_PARTY,
                format!(
                    "expected party {exp:?} at this address, but the certificate names {:?}",
                    b.party
                ),
            );
        }
        if !canonical::verify_ed25519(
            &party.identity_key.0,
            Domain::TlsBinding,
            b,
            &cert.binding_signature,
        ) {
            return refuse(
                claimed,
                codes::IDENTITY_KEY_MISMATCH,
                format!(
                    "the TLS key is not signed by {:?}'s identity key {} pinned in the manifest",
                    b.party, party.identity_key
                ),
            );
        }
        if b.spki_sha256.0 != <[u8; 32]>::from(Sha256::digest(&cert.spki_der)) {
            return refuse(
                claimed,
                codes::TLS_KEY_MISMATCH,
                "the identity binding is for another TLS key".into(),
            );
        }
        if b.manifest_hash.0 != self.manifest_hash {
            return refuse(
                claimed,
                codes::MANIFEST_MISMATCH,
                format!(
                    "the peer presents federation manifest {}…, this node runs {}…",
                    &b.manifest_hash.to_string()[..16],
                    &hex::encode(self.manifest_hash)[..16]
                ),
            );
        }
        if now < cert.not_before || now > cert.not_after || now < b.not_before || now > b.not_after
        {
            return refuse(
                claimed,
                codes::CERTIFICATE_EXPIRED,
                format!(
                    "the certificate is valid from {} to {} (Unix seconds), not at {now}",
                    cert.not_before, cert.not_after
                ),
            );
        }
        let fingerprint: [u8; 32] = Sha256::digest(party.identity_key.0).into();
        let expected_rd = gate1_report_data(&cert.spki_der, &fingerprint);
        let verdict = self.appraiser.appraise_endorsed(
            &cert.evidence,
            &cert.endorsements,
            Some(&expected_rd),
            now,
        );
        let accepted = self.appraiser.accepts(&verdict);
        Gate1Outcome {
            party: claimed,
            verdict,
            accepted,
        }
    }

    /// Gate 2: appraise fresh evidence from `peer`, bound to this connection and our nonce,
    /// from the same platform as its gate-1 evidence, with clocks within the policy's skew.
    /// Returns the verdict and whether the session may proceed; records it in the sink.
    pub fn check_gate2(
        &self,
        peer: &str,
        evidence: &[u8],
        endorsements: &[u8],
        cx: &Gate2Context<'_>,
    ) -> (Verdict, bool) {
        let expected = gate2_report_data(
            cx.peer_role,
            &cx.peer_spki_sha256,
            cx.exporter,
            &cx.manifest_hash,
            &cx.our_nonce,
        );
        let mut verdict =
            self.appraiser
                .appraise_endorsed(evidence, endorsements, Some(&expected), cx.now);
        let policy = &self.appraiser.policy().policy;
        let mut extra = Vec::new();
        match (cx.gate1_platform, &verdict.platform) {
            (Some(g1), Some(g2)) if g1 == g2 => {}
            (g1, g2) => extra.push(Reason::refuse(
                codes::PLATFORM_CHANGED,
                format!(
                    "fresh evidence comes from platform {} but the certificate's from {}: both gates must be answered by the same TEE",
                    short_platform(g2.as_ref()),
                    short_platform(g1)
                ),
            )),
        }
        let skew = cx.peer_time.abs_diff(cx.now);
        if skew > policy.session.max_clock_skew_secs {
            extra.push(Reason::refuse(
                codes::CLOCK_SKEW,
                format!(
                    "{peer}'s clock is {skew} s away from ours; policy {:?} allows {} s (synchronise the clocks with NTP)",
                    policy.name, policy.session.max_clock_skew_secs
                ),
            ));
        }
        for r in extra {
            verdict.status = verdict.status.max(r.severity);
            verdict.reasons.push(r);
        }
        let accepted = self.appraiser.accepts(&verdict);
        self.sink.record_gate(peer, 2, &verdict, accepted);
        (verdict, accepted)
    }

    fn check_and_record(
        &self,
        der: &[u8],
        expected: Option<&str>,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        let out = self.check(der, expected, now);
        let who = out.party.clone().unwrap_or_else(|| "unidentified".into());
        self.sink.record_gate(&who, 1, &out.verdict, out.accepted);
        if out.accepted {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(Refused {
                    peer: who,
                    summary: out.verdict.summary(),
                })),
            )))
        }
    }
}

/// The error rustls carries when gate 1 refuses a peer.
#[derive(Debug, thiserror::Error)]
#[error("attestation refused {peer}: {summary}")]
pub struct Refused {
    pub peer: String,
    pub summary: String,
}

/// A rustls verifier for both sides that appraises RA-TLS certificates.
#[derive(Debug, Clone)]
pub struct RaTlsVerifier {
    gate1: Arc<Gate1>,
    provider: Arc<CryptoProvider>,
}

impl RaTlsVerifier {
    pub fn new(gate1: Arc<Gate1>, provider: Arc<CryptoProvider>) -> Self {
        RaTlsVerifier { gate1, provider }
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }
}

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        let expected = match server_name {
            ServerName::DnsName(n) => n.as_ref().to_owned(),
            _ => {
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName,
                ));
            }
        };
        self.gate1
            .check_and_record(end_entity.as_ref(), Some(&expected), now)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // TLS 1.2 is never negotiated (the configs allow TLS 1.3 only).
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ClientCertVerifier for RaTlsVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !intermediates.is_empty() {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            ));
        }
        self.gate1
            .check_and_record(end_entity.as_ref(), None, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Our certificate and key, for both configs.
pub struct OwnCertificate {
    pub cert: CertificateDer<'static>,
    pub key: PrivateKeyDer<'static>,
}

/// A TLS 1.3-only, mutually authenticated client config with resumption off.
pub fn client_config(
    verifier: RaTlsVerifier,
    own: &OwnCertificate,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = verifier.provider.clone();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![own.cert.clone()], own.key.clone_key())?;
    cfg.resumption = rustls::client::Resumption::disabled();
    cfg.enable_early_data = false;
    Ok(cfg)
}

/// A TLS 1.3-only server config that requires an RA-TLS client certificate; no tickets,
/// no session cache.
pub fn server_config(
    verifier: RaTlsVerifier,
    own: &OwnCertificate,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let provider = verifier.provider.clone();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![own.cert.clone()], own.key.clone_key())?;
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

fn short_platform(p: Option<&Platform>) -> String {
    match p {
        None => "unknown".into(),
        Some(p) => format!(
            "{} chip {}… measurement {}…",
            p.tee.as_str(),
            p.chip.get(..16).unwrap_or(&p.chip),
            p.measurement.get(..16).unwrap_or(&p.measurement)
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    fn cert_with(endorsements: &[u8]) -> (Vec<u8>, TlsBinding) {
        let key = rcgen::KeyPair::generate().unwrap();
        let now = time::OffsetDateTime::now_utc();
        let binding = TlsBinding {
            party: "hospital-a".into(),
            spki_sha256: HexBytes(Sha256::digest(spki_der(&key)).into()),
            manifest_hash: HexBytes([7; 32]),
            not_before: now.unix_timestamp(),
            not_after: now.unix_timestamp() + 60,
        };
        let ext = extension_value(b"evidence", endorsements, &binding, &[9; 64]);
        let cert = build_certificate(
            &key,
            "hospital-a",
            ext,
            now,
            now + time::Duration::minutes(1),
        )
        .unwrap();
        (cert.to_vec(), binding)
    }

    #[test]
    fn endorsements_travel_in_the_extension_only_when_present() {
        let (der, binding) = cert_with(b"cert-table");
        let c = parse_certificate(&der).unwrap();
        assert_eq!(c.evidence, b"evidence");
        assert_eq!(c.endorsements, b"cert-table");
        assert_eq!(c.binding, binding);
        let (der, _) = cert_with(&[]);
        let c = parse_certificate(&der).unwrap();
        assert!(c.endorsements.is_empty());
        // No empty member is written: certificates without endorsements are unchanged.
        assert!(!String::from_utf8_lossy(&der).contains(SNP_CERT_TABLE_MEDIA_TYPE));
    }
}

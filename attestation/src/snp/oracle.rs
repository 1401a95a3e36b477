//! Differential check of our parser against the `sev` crate's, for tests and fuzzing.
//!
//! The rules: whenever we accept a report, `sev` must decode it to the same values —
//! except where `sev` cannot (a v2 report with an all-zero chip id, or a v3+ report from
//! a processor it does not know: it needs the product line to decode TCBs). Whenever we
//! reject bytes `sev` accepts, our reason must be one of the stricter rules Parley adds:
//! an unsupported version, a reserved byte or bit that is not zero, or a reserved
//! SIGNING_KEY value. Signature verification is compared in the integration tests, where
//! `sev`'s `crypto_nossl` feature is enabled.

use sev::firmware::guest::AttestationReport;
use sev::parser::ByteParser;

use super::report::{Report, ReportError};
use super::tcb::{Product, TcbVersion};

/// `Ok` when both parsers agree by the rules above; `Err` describes the disagreement.
pub fn compare_with_sev(bytes: &[u8]) -> Result<(), String> {
    let ours = Report::parse(bytes);
    let theirs = AttestationReport::from_bytes(bytes);
    match (ours, theirs) {
        (Ok(o), Ok(t)) => compare_fields(&o, &t),
        (Ok(o), Err(e)) => {
            let masked_v2 = o.version().as_u32() == 2 && o.chip_id_is_zero();
            let unknown_cpu = o.cpuid().is_some() && o.product().is_none();
            if masked_v2 || unknown_cpu {
                Ok(())
            } else {
                Err(format!("we accept a report sev rejects ({e})"))
            }
        }
        (Err(e), Ok(_)) => match e {
            ReportError::UnsupportedVersion { .. }
            | ReportError::ReservedNotZero { .. }
            | ReportError::PolicyBit17Clear { .. }
            | ReportError::ReservedSigningKey { .. } => Ok(()),
            other => Err(format!("sev accepts a report we reject as {other:?}")),
        },
        (Err(_), Err(_)) => Ok(()),
    }
}

fn check<T: PartialEq + std::fmt::Debug>(field: &str, ours: T, theirs: T) -> Result<(), String> {
    if ours == theirs {
        Ok(())
    } else {
        Err(format!("{field}: ours {ours:?}, sev {theirs:?}"))
    }
}

fn compare_fields(o: &Report<'_>, t: &AttestationReport) -> Result<(), String> {
    check("version", o.version().as_u32(), t.version)?;
    check("guest_svn", o.guest_svn(), t.guest_svn)?;
    check("policy", o.policy().0, u64::from(t.policy))?;
    check("family_id", o.family_id(), &t.family_id)?;
    check("image_id", o.image_id(), &t.image_id)?;
    check("vmpl", o.vmpl(), t.vmpl)?;
    check("signature_algo", o.signature_algo(), t.sig_algo)?;
    check("platform_info", o.platform_info().0, u64::from(t.plat_info))?;
    check("flags", o.flags(), u32::from(t.key_info))?;
    check("report_data", o.report_data(), &t.report_data)?;
    check("measurement", o.measurement(), &t.measurement)?;
    check("host_data", o.host_data(), &t.host_data)?;
    check("id_key_digest", o.id_key_digest(), &t.id_key_digest)?;
    check(
        "author_key_digest",
        o.author_key_digest(),
        &t.author_key_digest,
    )?;
    check("report_id", o.report_id(), &t.report_id)?;
    check("report_id_ma", o.report_id_ma(), &t.report_id_ma)?;
    check("chip_id", o.chip_id(), &t.chip_id)?;
    check(
        "cpuid",
        o.cpuid().map(|c| (c.family, c.model, c.stepping)),
        t.cpuid_fam_id
            .zip(t.cpuid_mod_id)
            .zip(t.cpuid_step)
            .map(|((f, m), s)| (f, m, s)),
    )?;
    let cv = o.current_version();
    check(
        "current_version",
        (cv.major, cv.minor, cv.build),
        (t.current.major, t.current.minor, t.current.build),
    )?;
    let cm = o.committed_version();
    check(
        "committed_version",
        (cm.major, cm.minor, cm.build),
        (t.committed.major, t.committed.minor, t.committed.build),
    )?;
    check(
        "launch_mit_vector",
        o.launch_mit_vector(),
        t.launch_mit_vector,
    )?;
    check(
        "current_mit_vector",
        o.current_mit_vector(),
        t.current_mit_vector,
    )?;
    check("signature.r", o.signature_r(), be(t.signature.r()))?;
    check("signature.s", o.signature_s(), be(t.signature.s()))?;
    // sev decodes TCBs for the line it infers: from CPUID for v3+ (family 0x1A, Turin
    // and its successors, with Turin's layout), and for v2 Turin when the chip id's last
    // 56 bytes are zero (Turin ids are 8 bytes), Genoa's layout otherwise.
    let product = match (o.product(), o.cpuid()) {
        (Some(p), _) => p,
        (None, Some(c)) if c.family == 0x1A => Product::Turin,
        (None, Some(_)) => Product::Genoa,
        (None, None) if o.chip_id().iter().skip(8).all(|&b| b == 0) => Product::Turin,
        (None, None) => Product::Genoa,
    };
    let tcbs = [
        ("current_tcb", o.current_tcb(), t.current_tcb),
        ("reported_tcb", o.reported_tcb(), t.reported_tcb),
        ("committed_tcb", o.committed_tcb(), t.committed_tcb),
        ("launch_tcb", o.launch_tcb(), t.launch_tcb),
    ];
    for (name, ours, theirs) in tcbs {
        let d = TcbVersion::decode(ours, product);
        check(
            name,
            (d.fmc, d.bootloader, d.tee, d.snp, d.microcode),
            (
                theirs.fmc,
                theirs.bootloader,
                theirs.tee,
                theirs.snp,
                theirs.microcode,
            ),
        )?;
    }
    Ok(())
}

fn be(le: &[u8; 72]) -> [u8; 48] {
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(le.iter().take(48).rev()) {
        *o = *i;
    }
    out
}

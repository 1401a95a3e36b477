//! The JSON form of a report that `parley attest inspect` prints.
//!
//! Field names are the ABI's, lower-case (`guest_svn`, `reported_tcb`, ...); byte fields
//! are lower-case hex exactly as the bytes appear in the report; integers are JSON
//! numbers; bit fields carry their raw value (`raw`, and `raw_hex` as `0x` + 16 digits)
//! beside the decoded bits. TCB values carry `raw` (the 8 bytes in report order, hex) and
//! `raw_u64`, plus the decoded SPLs when the product line is known; a v2 report names no
//! product, so without a certificate `product` is `null` and TCBs are raw only. Fields a
//! version does not have (CPUID before v3, mitigation vectors before v5) are `null`.

use serde_json::{Value, json};

use super::report::{GuestPolicy, PlatformInfo, Report};
use super::tcb::{Product, TcbVersion};

/// Every field of `report`, decoding TCBs for `product` (pass the report's own
/// [`Report::product`], or the certificate's product line when verified).
pub fn report_json(report: &Report<'_>, product: Option<Product>) -> Value {
    let cpuid = report.cpuid();
    // Built field by field: one json! literal this size exceeds the macro recursion limit.
    let fields: Vec<(&str, Value)> = vec![
        ("type", json!("snp")),
        ("product", json!(product.map(Product::as_str))),
        ("version", json!(report.version().as_u32())),
        ("guest_svn", json!(report.guest_svn())),
        ("policy", json!(policy_json(report.policy()))),
        ("family_id", json!(hex::encode(report.family_id()))),
        ("image_id", json!(hex::encode(report.image_id()))),
        ("vmpl", json!(report.vmpl())),
        ("signature_algo", json!(report.signature_algo())),
        (
            "current_tcb",
            json!(tcb_json(report.current_tcb(), product)),
        ),
        (
            "platform_info",
            json!(platform_info_json(report.platform_info())),
        ),
        ("flags", json!(report.flags())),
        ("author_key_en", json!(report.author_key_en())),
        ("mask_chip_key", json!(report.mask_chip_key())),
        ("signing_key", json!(report.signing_key().as_str())),
        ("report_data", json!(hex::encode(report.report_data()))),
        ("measurement", json!(hex::encode(report.measurement()))),
        ("host_data", json!(hex::encode(report.host_data()))),
        ("id_key_digest", json!(hex::encode(report.id_key_digest()))),
        (
            "author_key_digest",
            json!(hex::encode(report.author_key_digest())),
        ),
        ("report_id", json!(hex::encode(report.report_id()))),
        ("report_id_ma", json!(hex::encode(report.report_id_ma()))),
        (
            "reported_tcb",
            json!(tcb_json(report.reported_tcb(), product)),
        ),
        ("cpuid_fam_id", json!(cpuid.map(|c| c.family))),
        ("cpuid_mod_id", json!(cpuid.map(|c| c.model))),
        ("cpuid_step", json!(cpuid.map(|c| c.stepping))),
        ("chip_id", json!(hex::encode(report.chip_id()))),
        (
            "committed_tcb",
            json!(tcb_json(report.committed_tcb(), product)),
        ),
        ("current_build", json!(report.current_version().build)),
        ("current_minor", json!(report.current_version().minor)),
        ("current_major", json!(report.current_version().major)),
        (
            "current_version",
            json!(report.current_version().to_string()),
        ),
        ("committed_build", json!(report.committed_version().build)),
        ("committed_minor", json!(report.committed_version().minor)),
        ("committed_major", json!(report.committed_version().major)),
        (
            "committed_version",
            json!(report.committed_version().to_string()),
        ),
        ("launch_tcb", json!(tcb_json(report.launch_tcb(), product))),
        ("launch_mit_vector", json!(report.launch_mit_vector())),
        ("current_mit_vector", json!(report.current_mit_vector())),
        (
            "signature",
            // Big-endian, as ECDSA tools print them; the report stores them little-endian.
            json!({
                "r": hex::encode(report.signature_r()),
                "s": hex::encode(report.signature_s()),
            }),
        ),
    ];
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// A TCB as JSON: raw bytes, the u64, and the SPLs when the product line is known.
pub fn tcb_json(tcb: TcbVersion, product: Option<Product>) -> Value {
    let mut v = json!({
        "raw": hex::encode(tcb.0),
        "raw_u64": tcb.to_u64(),
    });
    if let (Some(p), Some(obj)) = (product, v.as_object_mut()) {
        let d = tcb.decode(p);
        if let Some(fmc) = d.fmc {
            obj.insert("fmc".into(), fmc.into());
        }
        obj.insert("bootloader".into(), d.bootloader.into());
        obj.insert("tee".into(), d.tee.into());
        obj.insert("snp".into(), d.snp.into());
        obj.insert("microcode".into(), d.microcode.into());
    }
    v
}

fn policy_json(p: GuestPolicy) -> Value {
    json!({
        "raw": p.0,
        "raw_hex": format!("{:#018x}", p.0),
        "abi_minor": p.abi_minor(),
        "abi_major": p.abi_major(),
        "smt": p.smt(),
        "migrate_ma": p.migrate_ma(),
        "debug": p.debug(),
        "single_socket": p.single_socket(),
        "cxl_allow": p.cxl_allow(),
        "mem_aes_256_xts": p.mem_aes_256_xts(),
        "rapl_dis": p.rapl_dis(),
        "ciphertext_hiding_dram": p.ciphertext_hiding_dram(),
        "page_swap_disable": p.page_swap_disable(),
    })
}

fn platform_info_json(p: PlatformInfo) -> Value {
    json!({
        "raw": p.0,
        "raw_hex": format!("{:#018x}", p.0),
        "smt_en": p.smt_en(),
        "tsme_en": p.tsme_en(),
        "ecc_en": p.ecc_en(),
        "rapl_dis": p.rapl_dis(),
        "ciphertext_hiding_dram_en": p.ciphertext_hiding_dram_en(),
        "alias_check_complete": p.alias_check_complete(),
        "tio_en": p.tio_en(),
    })
}

//! The SEV-SNP `ATTESTATION_REPORT`: a typed, zero-copy view over exactly 1184 bytes.
//!
//! Layout from the AMD SEV-SNP Firmware ABI specification (table `ATTESTATION_REPORT`);
//! versions 2, 3 and 5 share it: v3 fills the CPUID bytes at 0x188..0x18B that v2
//! reserves, v5 adds the mitigation vectors at 0x1F8..0x208. Version 4 was never
//! published and, like every other version, is rejected with its number.
//!
//! Parsing is strict: the input must be exactly 1184 bytes, and every byte the ABI
//! reserves — reserved fields, reserved bits of the policy, flags and platform info, the
//! high 24 bytes of the 72-byte `r` and `s` and the rest of the 512-byte signature
//! block — must be zero. Fields are read once, in order, by a checked reader; nothing
//! here indexes into the input.

use std::fmt;

use super::tcb::{Product, TcbVersion};

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// The report bytes covered by the signature: `[0, 0x2A0)`.
pub const SIGNED_LEN: usize = 0x2A0;
/// `SIGNATURE_ALGO` for ECDSA P-384 with SHA-384, the only one the ABI defines.
pub const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

/// Why bytes are not an SEV-SNP report Parley accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("the SNP report is empty: expected exactly 1184 bytes")]
    Empty,
    #[error(
        "the SNP report is {got} bytes, expected exactly 1184: the input is truncated; pass the whole raw report"
    )]
    Truncated { got: usize },
    #[error(
        "the SNP report is {got} bytes, expected exactly 1184: {extra} trailing bytes follow the report; pass the raw 1184-byte report alone (not an extended report with its certificate table)"
    )]
    TrailingBytes { got: usize, extra: usize },
    #[error("SNP report version {version} is not supported: Parley accepts versions 2, 3 and 5")]
    UnsupportedVersion { version: u32 },
    #[error(
        "SNP report field {field} at offset {offset:#05x} is reserved and must be zero, but holds {found}: the report is malformed or was altered"
    )]
    ReservedNotZero {
        field: &'static str,
        offset: usize,
        found: String,
    },
    #[error(
        "SNP report POLICY {policy:#018x} has reserved bit 17 clear: the ABI requires it to be one; the report is malformed or was altered"
    )]
    PolicyBit17Clear { policy: u64 },
    #[error(
        "SNP report SIGNING_KEY value {value} is reserved (0 = VCEK, 1 = VLEK, 7 = none): the report is malformed or was altered"
    )]
    ReservedSigningKey { value: u8 },
}

/// The report format version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReportVersion {
    V2,
    V3,
    V5,
}

impl ReportVersion {
    pub fn as_u32(self) -> u32 {
        match self {
            ReportVersion::V2 => 2,
            ReportVersion::V3 => 3,
            ReportVersion::V5 => 5,
        }
    }
    fn from_u32(v: u32) -> Result<Self, ReportError> {
        match v {
            2 => Ok(ReportVersion::V2),
            3 => Ok(ReportVersion::V3),
            5 => Ok(ReportVersion::V5),
            version => Err(ReportError::UnsupportedVersion { version }),
        }
    }
}

/// The guest policy the owner set at launch (`POLICY`, 0x008).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    const KNOWN_BITS: u64 = (1 << 26) - 1;
    fn bit(self, n: u32) -> bool {
        self.0 >> n & 1 == 1
    }
    /// Minimum ABI minor version (bits 7:0).
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// Minimum ABI major version (bits 15:8).
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// Bit 16: SMT allowed on the host.
    pub fn smt(self) -> bool {
        self.bit(16)
    }
    /// Bit 18: association with a migration agent allowed.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Bit 19: debugging allowed.
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// Bit 20: guest may only run on a single socket.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// Bit 21: CXL may be populated with devices or memory.
    pub fn cxl_allow(self) -> bool {
        self.bit(21)
    }
    /// Bit 22: AES-256-XTS memory encryption required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// Bit 23: Running Average Power Limit must be disabled.
    pub fn rapl_dis(self) -> bool {
        self.bit(23)
    }
    /// Bit 24: ciphertext hiding (DRAM) must be enabled.
    pub fn ciphertext_hiding_dram(self) -> bool {
        self.bit(24)
    }
    /// Bit 25: guest page swap/move commands disabled.
    pub fn page_swap_disable(self) -> bool {
        self.bit(25)
    }
}

/// Platform configuration at report time (`PLATFORM_INFO`, 0x040).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    // Bits 0..=5 and 7 are defined; 6 and 8..=63 are reserved.
    const KNOWN_BITS: u64 = 0b1011_1111;
    fn bit(self, n: u32) -> bool {
        self.0 >> n & 1 == 1
    }
    pub fn smt_en(self) -> bool {
        self.bit(0)
    }
    pub fn tsme_en(self) -> bool {
        self.bit(1)
    }
    pub fn ecc_en(self) -> bool {
        self.bit(2)
    }
    pub fn rapl_dis(self) -> bool {
        self.bit(3)
    }
    pub fn ciphertext_hiding_dram_en(self) -> bool {
        self.bit(4)
    }
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
    pub fn tio_en(self) -> bool {
        self.bit(7)
    }
}

/// Which key signed the report (`SIGNING_KEY`, bits 4:2 at 0x048).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SigningKey {
    /// Versioned Chip Endorsement Key (per chip and TCB).
    Vcek,
    /// Versioned Loaded Endorsement Key (per cloud provider, loaded by the host).
    Vlek,
    /// Not signed.
    None,
}

impl SigningKey {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningKey::Vcek => "VCEK",
            SigningKey::Vlek => "VLEK",
            SigningKey::None => "none",
        }
    }
}

impl fmt::Display for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A firmware version `major.minor.build`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)
    }
}

/// CPUID family, model and stepping of the chip (v3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cpuid {
    pub family: u8,
    pub model: u8,
    pub stepping: u8,
}

/// A parsed attestation report borrowing the input bytes.
#[derive(Clone, Copy)]
pub struct Report<'a> {
    raw: &'a [u8; REPORT_LEN],
    version: ReportVersion,
    guest_svn: u32,
    policy: GuestPolicy,
    family_id: &'a [u8; 16],
    image_id: &'a [u8; 16],
    vmpl: u32,
    signature_algo: u32,
    current_tcb: TcbVersion,
    platform_info: PlatformInfo,
    flags: u32,
    report_data: &'a [u8; 64],
    measurement: &'a [u8; 48],
    host_data: &'a [u8; 32],
    id_key_digest: &'a [u8; 48],
    author_key_digest: &'a [u8; 48],
    report_id: &'a [u8; 32],
    report_id_ma: &'a [u8; 32],
    reported_tcb: TcbVersion,
    cpuid: Option<Cpuid>,
    chip_id: &'a [u8; 64],
    committed_tcb: TcbVersion,
    current: FirmwareVersion,
    committed: FirmwareVersion,
    launch_tcb: TcbVersion,
    mit_vectors: Option<(u64, u64)>,
    sig_r: &'a [u8; 72],
    sig_s: &'a [u8; 72],
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("version", &self.version)
            .field("measurement", &hex::encode(self.measurement))
            .field("signing_key", &self.signing_key())
            .finish_non_exhaustive()
    }
}

/// The one checked reader: hands out fixed-size pieces of the input in order.
struct Reader<'a> {
    rest: &'a [u8],
    offset: usize,
    len: usize,
}

impl<'a> Reader<'a> {
    fn take<const N: usize>(&mut self) -> Result<&'a [u8; N], ReportError> {
        let (head, rest) = self
            .rest
            .split_first_chunk::<N>()
            .ok_or(ReportError::Truncated { got: self.len })?;
        self.rest = rest;
        self.offset += N;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ReportError> {
        let [b] = *self.take::<1>()?;
        Ok(b)
    }
    fn u32(&mut self) -> Result<u32, ReportError> {
        self.take::<4>().map(|b| u32::from_le_bytes(*b))
    }
    fn u64(&mut self) -> Result<u64, ReportError> {
        self.take::<8>().map(|b| u64::from_le_bytes(*b))
    }
    fn tcb(&mut self) -> Result<TcbVersion, ReportError> {
        self.take::<8>().map(|b| TcbVersion(*b))
    }
    /// Reads N bytes the ABI reserves and rejects any that is not zero.
    fn zeros<const N: usize>(&mut self, field: &'static str) -> Result<(), ReportError> {
        let offset = self.offset;
        let bytes = self.take::<N>()?;
        must_be_zero(field, offset, bytes)
    }
    fn finish(self) -> Result<(), ReportError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(ReportError::TrailingBytes {
                got: self.len,
                extra: self.rest.len(),
            })
        }
    }
}

fn must_be_zero(field: &'static str, offset: usize, bytes: &[u8]) -> Result<(), ReportError> {
    if bytes.iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(ReportError::ReservedNotZero {
            field,
            offset,
            found: hex::encode(bytes),
        })
    }
}

impl<'a> Report<'a> {
    /// Parse exactly one report. Every error names what is wrong; nothing panics.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReportError> {
        let raw: &'a [u8; REPORT_LEN] = match bytes.len() {
            0 => return Err(ReportError::Empty),
            n if n < REPORT_LEN => return Err(ReportError::Truncated { got: n }),
            n if n > REPORT_LEN => {
                return Err(ReportError::TrailingBytes {
                    got: n,
                    extra: n - REPORT_LEN,
                });
            }
            n => bytes
                .try_into()
                .map_err(|_| ReportError::Truncated { got: n })?,
        };
        let mut r = Reader {
            rest: raw,
            offset: 0,
            len: bytes.len(),
        };

        let version = ReportVersion::from_u32(r.u32()?)?; // 0x000
        let guest_svn = r.u32()?; // 0x004
        let policy = GuestPolicy(r.u64()?); // 0x008
        if !policy.bit(17) {
            return Err(ReportError::PolicyBit17Clear { policy: policy.0 });
        }
        must_be_zero(
            "POLICY bits 63:26",
            0x008,
            &(policy.0 & !GuestPolicy::KNOWN_BITS).to_le_bytes(),
        )?;
        let family_id = r.take::<16>()?; // 0x010
        let image_id = r.take::<16>()?; // 0x020
        let vmpl = r.u32()?; // 0x030
        let signature_algo = r.u32()?; // 0x034
        let current_tcb = r.tcb()?; // 0x038
        let platform_info = PlatformInfo(r.u64()?); // 0x040
        must_be_zero(
            "PLATFORM_INFO reserved bits (6, 63:8)",
            0x040,
            &(platform_info.0 & !PlatformInfo::KNOWN_BITS).to_le_bytes(),
        )?;
        let flags = r.u32()?; // 0x048
        must_be_zero("flags bits 31:5", 0x048, &(flags & !0x1F).to_le_bytes())?;
        let signing_key = (flags >> 2 & 0b111) as u8;
        if (2..=6).contains(&signing_key) {
            return Err(ReportError::ReservedSigningKey { value: signing_key });
        }
        r.zeros::<4>("reserved 0x04C")?;
        let report_data = r.take::<64>()?; // 0x050
        let measurement = r.take::<48>()?; // 0x090
        let host_data = r.take::<32>()?; // 0x0C0
        let id_key_digest = r.take::<48>()?; // 0x0E0
        let author_key_digest = r.take::<48>()?; // 0x110
        let report_id = r.take::<32>()?; // 0x140
        let report_id_ma = r.take::<32>()?; // 0x160
        let reported_tcb = r.tcb()?; // 0x180
        let cpuid = if version == ReportVersion::V2 {
            r.zeros::<3>("reserved 0x188 (CPUID bytes, v3+ only)")?;
            None
        } else {
            Some(Cpuid {
                family: r.u8()?,   // 0x188
                model: r.u8()?,    // 0x189
                stepping: r.u8()?, // 0x18A
            })
        };
        r.zeros::<21>("reserved 0x18B")?;
        let chip_id = r.take::<64>()?; // 0x1A0
        let committed_tcb = r.tcb()?; // 0x1E0
        let current = FirmwareVersion {
            build: r.u8()?, // 0x1E8
            minor: r.u8()?, // 0x1E9
            major: r.u8()?, // 0x1EA
        };
        r.zeros::<1>("reserved 0x1EB")?;
        let committed = FirmwareVersion {
            build: r.u8()?, // 0x1EC
            minor: r.u8()?, // 0x1ED
            major: r.u8()?, // 0x1EE
        };
        r.zeros::<1>("reserved 0x1EF")?;
        let launch_tcb = r.tcb()?; // 0x1F0
        let mit_vectors = if version == ReportVersion::V5 {
            Some((r.u64()?, r.u64()?)) // 0x1F8, 0x200
        } else {
            r.zeros::<16>("reserved 0x1F8 (mitigation vectors, v5+ only)")?;
            None
        };
        r.zeros::<152>("reserved 0x208")?;
        // SIGNATURE at 0x2A0: r and s are 72-byte little-endian integers of which P-384
        // uses the low 48 bytes; the rest of the 512-byte block is reserved.
        let sig_r = r.take::<72>()?; // 0x2A0
        let sig_s = r.take::<72>()?; // 0x2E8
        let (_, r_high) = sig_r.split_at(48);
        must_be_zero("SIGNATURE.R bytes 48..72", 0x2A0 + 48, r_high)?;
        let (_, s_high) = sig_s.split_at(48);
        must_be_zero("SIGNATURE.S bytes 48..72", 0x2E8 + 48, s_high)?;
        r.zeros::<368>("SIGNATURE reserved 0x330")?;
        r.finish()?;

        let report = Report {
            raw,
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            flags,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current,
            committed,
            launch_tcb,
            mit_vectors,
            sig_r,
            sig_s,
        };
        // When the report names its product line (v3+), the TCB bytes that line reserves
        // must be zero too; for v2 only the bytes every line reserves can be checked.
        report.check_tcb_reserved_for(report.product())?;
        Ok(report)
    }

    /// Checks the reserved bytes of every TCB for `product` (or the bytes every product
    /// reserves when `None`). Verification calls this again once the certificate names
    /// the product of a v2 report.
    pub fn check_tcb_reserved_for(&self, product: Option<Product>) -> Result<(), ReportError> {
        let tcbs = [
            ("CURRENT_TCB", 0x038, self.current_tcb),
            ("REPORTED_TCB", 0x180, self.reported_tcb),
            ("COMMITTED_TCB", 0x1E0, self.committed_tcb),
            ("LAUNCH_TCB", 0x1F0, self.launch_tcb),
        ];
        for (field, offset, tcb) in tcbs {
            self.check_tcb_reserved(field, offset, tcb, product)?;
        }
        Ok(())
    }

    fn check_tcb_reserved(
        &self,
        field: &'static str,
        offset: usize,
        tcb: TcbVersion,
        product: Option<Product>,
    ) -> Result<(), ReportError> {
        let bad = match product {
            Some(p) => tcb.nonzero_reserved(p),
            // Bytes 4 and 5 are reserved in both layouts.
            None => [4usize, 5]
                .into_iter()
                .filter_map(|i| tcb.0.get(i).map(|&v| (i, v)))
                .find(|&(_, v)| v != 0),
        };
        match bad {
            None => Ok(()),
            Some((i, v)) => Err(ReportError::ReservedNotZero {
                field,
                offset: offset + i,
                found: format!("{v:02x}"),
            }),
        }
    }

    /// The whole report, exactly as parsed.
    pub fn as_bytes(&self) -> &'a [u8; REPORT_LEN] {
        self.raw
    }
    /// The bytes the signature covers, `[0, 0x2A0)`.
    pub fn signed_bytes(&self) -> &'a [u8] {
        let (signed, _) = self.raw.split_at(SIGNED_LEN);
        signed
    }
    pub fn version(&self) -> ReportVersion {
        self.version
    }
    pub fn guest_svn(&self) -> u32 {
        self.guest_svn
    }
    pub fn policy(&self) -> GuestPolicy {
        self.policy
    }
    pub fn family_id(&self) -> &'a [u8; 16] {
        self.family_id
    }
    pub fn image_id(&self) -> &'a [u8; 16] {
        self.image_id
    }
    pub fn vmpl(&self) -> u32 {
        self.vmpl
    }
    pub fn signature_algo(&self) -> u32 {
        self.signature_algo
    }
    pub fn current_tcb(&self) -> TcbVersion {
        self.current_tcb
    }
    pub fn platform_info(&self) -> PlatformInfo {
        self.platform_info
    }
    /// The raw word at 0x048 (AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY).
    pub fn flags(&self) -> u32 {
        self.flags
    }
    pub fn author_key_en(&self) -> bool {
        self.flags & 1 == 1
    }
    pub fn mask_chip_key(&self) -> bool {
        self.flags >> 1 & 1 == 1
    }
    pub fn signing_key(&self) -> SigningKey {
        match self.flags >> 2 & 0b111 {
            0 => SigningKey::Vcek,
            1 => SigningKey::Vlek,
            // Parsing rejected 2..=6.
            _ => SigningKey::None,
        }
    }
    pub fn report_data(&self) -> &'a [u8; 64] {
        self.report_data
    }
    pub fn measurement(&self) -> &'a [u8; 48] {
        self.measurement
    }
    pub fn host_data(&self) -> &'a [u8; 32] {
        self.host_data
    }
    pub fn id_key_digest(&self) -> &'a [u8; 48] {
        self.id_key_digest
    }
    pub fn author_key_digest(&self) -> &'a [u8; 48] {
        self.author_key_digest
    }
    pub fn report_id(&self) -> &'a [u8; 32] {
        self.report_id
    }
    pub fn report_id_ma(&self) -> &'a [u8; 32] {
        self.report_id_ma
    }
    pub fn reported_tcb(&self) -> TcbVersion {
        self.reported_tcb
    }
    /// CPUID family/model/stepping; `None` for v2 reports.
    pub fn cpuid(&self) -> Option<Cpuid> {
        self.cpuid
    }
    /// The chip identifier; all zero when MASK_CHIP_ID was set or the key is a VLEK.
    pub fn chip_id(&self) -> &'a [u8; 64] {
        self.chip_id
    }
    pub fn chip_id_is_zero(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }
    pub fn committed_tcb(&self) -> TcbVersion {
        self.committed_tcb
    }
    pub fn current_version(&self) -> FirmwareVersion {
        self.current
    }
    pub fn committed_version(&self) -> FirmwareVersion {
        self.committed
    }
    pub fn launch_tcb(&self) -> TcbVersion {
        self.launch_tcb
    }
    /// `LAUNCH_MIT_VECTOR` (v5 and later).
    pub fn launch_mit_vector(&self) -> Option<u64> {
        self.mit_vectors.map(|(l, _)| l)
    }
    /// `CURRENT_MIT_VECTOR` (v5 and later).
    pub fn current_mit_vector(&self) -> Option<u64> {
        self.mit_vectors.map(|(_, c)| c)
    }
    /// The product line the report names through its CPUID fields (v3+); `None` for v2
    /// reports and unknown processors. The certificate names it for verified reports.
    pub fn product(&self) -> Option<Product> {
        self.cpuid
            .and_then(|c| Product::from_cpuid(c.family, c.model))
    }
    /// The signature's `r` as a 48-byte big-endian integer (the report stores it
    /// little-endian in 72 bytes whose high 24 are zero).
    pub fn signature_r(&self) -> [u8; 48] {
        be48(self.sig_r)
    }
    /// The signature's `s`, big-endian, like [`Report::signature_r`].
    pub fn signature_s(&self) -> [u8; 48] {
        be48(self.sig_s)
    }
}

fn be48(le: &[u8; 72]) -> [u8; 48] {
    let mut out = [0u8; 48];
    for (o, i) in out.iter_mut().zip(le.iter().take(48).rev()) {
        *o = *i;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    /// A minimal well-formed v2 report (unsigned content, policy bit 17 set).
    fn blank(version: u32) -> Vec<u8> {
        let mut b = vec![0u8; REPORT_LEN];
        b.splice(0..4, version.to_le_bytes());
        b.splice(8..16, (1u64 << 17).to_le_bytes());
        b
    }

    #[test]
    fn lengths_are_exact() {
        assert_eq!(Report::parse(&[]).unwrap_err(), ReportError::Empty);
        let b = blank(2);
        assert_eq!(
            Report::parse(&b[..100]).unwrap_err(),
            ReportError::Truncated { got: 100 }
        );
        let mut long = b.clone();
        long.push(0);
        assert_eq!(
            Report::parse(&long).unwrap_err(),
            ReportError::TrailingBytes {
                got: REPORT_LEN + 1,
                extra: 1
            }
        );
        assert!(Report::parse(&b).is_ok());
    }

    #[test]
    fn versions() {
        for v in [2, 3, 5] {
            assert_eq!(
                Report::parse(&blank(v)).unwrap().version().as_u32(),
                v,
                "v{v}"
            );
        }
        for v in [0, 1, 4, 6, 0xFFFF_FFFF] {
            assert_eq!(
                Report::parse(&blank(v)).unwrap_err(),
                ReportError::UnsupportedVersion { version: v }
            );
        }
    }

    #[test]
    fn reserved_bytes_must_be_zero() {
        // v2 reserves the CPUID bytes; v3 does not.
        let mut b = blank(2);
        b[0x188] = 0x19;
        assert!(matches!(
            Report::parse(&b),
            Err(ReportError::ReservedNotZero { offset: 0x188, .. })
        ));
        b[0..4].copy_from_slice(&3u32.to_le_bytes());
        assert_eq!(Report::parse(&b).unwrap().cpuid().unwrap().family, 0x19);
        // v3 reserves the mitigation vectors; v5 does not.
        let mut b = blank(3);
        b[0x1F8] = 1;
        assert!(Report::parse(&b).is_err());
        b[0..4].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(Report::parse(&b).unwrap().launch_mit_vector(), Some(1));
        // High bytes of r, and the tail of the signature block.
        for at in [
            0x2A0 + 48,
            0x2E8 + 71,
            0x330,
            REPORT_LEN - 1,
            0x04C,
            0x1EB,
            0x1EF,
        ] {
            let mut b = blank(2);
            b[at] = 1;
            assert!(
                matches!(Report::parse(&b), Err(ReportError::ReservedNotZero { .. })),
                "offset {at:#x}"
            );
        }
        let mut b = blank(2);
        b[8 + 2] = 0; // policy bit 17 clear
        assert!(matches!(
            Report::parse(&b),
            Err(ReportError::PolicyBit17Clear { .. })
        ));
        let mut b = blank(2);
        b[0x48] = 2 << 2; // signing key 2 is reserved
        assert_eq!(
            Report::parse(&b).unwrap_err(),
            ReportError::ReservedSigningKey { value: 2 }
        );
    }

    #[test]
    fn signature_is_big_endian_out() {
        let mut b = blank(2);
        b[0x2A0] = 0xAA; // least significant byte of r
        b[0x2A0 + 47] = 0x01; // most significant
        let r = Report::parse(&b).unwrap().signature_r();
        assert_eq!((r[0], r[47]), (0x01, 0xAA));
    }
}

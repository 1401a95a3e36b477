//! TCB versions and AMD product lines.
//!
//! A `TCB_VERSION` is 8 bytes whose layout depends on the product line: Milan and Genoa
//! use `[BL, TEE, 0, 0, 0, 0, SNP, UCODE]`, Turin `[FMC, BL, TEE, SNP, 0, 0, 0, UCODE]`
//! (SEV-SNP ABI, `TCB_VERSION`). The bytes alone do not say which, so decoding takes the
//! product line explicitly; without it only the raw value is meaningful.

use std::fmt;

use serde::Serialize;

/// An AMD EPYC product line that supports SEV-SNP and has pinned roots here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];

    /// The name AMD KDS and the certificates use (`ARK-Milan`, `productName` `Milan-B0`).
    pub fn as_str(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    /// The product line of a CPUID family/model pair, as reported by v3+ reports
    /// (`CPUID_FAM_ID`, `CPUID_MOD_ID`: extended and base fields combined). `None` for
    /// processors this crate does not know (including future lines).
    pub fn from_cpuid(family: u8, model: u8) -> Option<Product> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            // Genoa, and Bergamo/Siena (0xA0..=0xAF) which share Genoa's KDS endpoints.
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Some(Product::Genoa),
            // Turin (Zen 5) classic and dense.
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }

    /// The product line named by a VCEK/VLEK `productName` extension (`Milan-B0`,
    /// `Genoa`, `Turin`): the part before the stepping suffix.
    pub fn from_product_name(name: &str) -> Option<Product> {
        let line = name.split('-').next().unwrap_or(name);
        Product::ALL.into_iter().find(|p| p.as_str() == line)
    }

    /// Whether this line uses Turin's TCB layout (with an FMC SPL).
    pub fn has_fmc(self) -> bool {
        matches!(self, Product::Turin)
    }

    /// Byte positions inside a `TCB_VERSION` that this product reserves (must be zero in
    /// reports; certificates carry them as `spl_4..spl_7`).
    pub fn reserved_tcb_bytes(self) -> &'static [usize] {
        if self.has_fmc() {
            &[4, 5, 6]
        } else {
            &[2, 3, 4, 5]
        }
    }
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A raw `TCB_VERSION` exactly as the report stores it (8 bytes; the little-endian u64
/// of the ABI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TcbVersion(pub [u8; 8]);

/// The security version numbers of a TCB, decoded for one product line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct DecodedTcb {
    /// Firmware microcontroller SPL: Turin and later only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl fmt::Display for DecodedTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc {fmc}, ")?;
        }
        write!(
            f,
            "bootloader {}, tee {}, snp {}, microcode {}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

impl TcbVersion {
    /// The ABI's u64 view (little-endian).
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.0)
    }

    /// Decode for a product line.
    pub fn decode(self, product: Product) -> DecodedTcb {
        let [b0, b1, b2, b3, _, _, b6, b7] = self.0;
        if product.has_fmc() {
            DecodedTcb {
                fmc: Some(b0),
                bootloader: b1,
                tee: b2,
                snp: b3,
                microcode: b7,
            }
        } else {
            DecodedTcb {
                fmc: None,
                bootloader: b0,
                tee: b1,
                snp: b6,
                microcode: b7,
            }
        }
    }

    /// The first reserved byte (position, value) that is not zero for this product.
    pub fn nonzero_reserved(self, product: Product) -> Option<(usize, u8)> {
        product
            .reserved_tcb_bytes()
            .iter()
            .filter_map(|&i| self.0.get(i).map(|&v| (i, v)))
            .find(|&(_, v)| v != 0)
    }
}

impl fmt::Display for TcbVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn layouts_per_product() {
        let t = TcbVersion([0x03, 0x00, 0, 0, 0, 0, 0x08, 0x73]);
        let d = t.decode(Product::Milan);
        assert_eq!(
            (d.fmc, d.bootloader, d.tee, d.snp, d.microcode),
            (None, 3, 0, 8, 115)
        );
        let t = TcbVersion([1, 2, 3, 4, 0, 0, 0, 9]);
        let d = t.decode(Product::Turin);
        assert_eq!(
            (d.fmc, d.bootloader, d.tee, d.snp, d.microcode),
            (Some(1), 2, 3, 4, 9)
        );
        assert_eq!(t.nonzero_reserved(Product::Turin), None);
        assert_eq!(t.nonzero_reserved(Product::Genoa), Some((2, 3)));
    }

    #[test]
    fn products_from_cpuid_and_names() {
        assert_eq!(Product::from_cpuid(0x19, 0x01), Some(Product::Milan));
        assert_eq!(Product::from_cpuid(0x19, 0x11), Some(Product::Genoa));
        assert_eq!(Product::from_cpuid(0x1A, 0x02), Some(Product::Turin));
        assert_eq!(Product::from_cpuid(0x17, 0x31), None);
        assert_eq!(Product::from_product_name("Milan-B0"), Some(Product::Milan));
        assert_eq!(Product::from_product_name("Genoa"), Some(Product::Genoa));
        assert_eq!(Product::from_product_name("Turin"), Some(Product::Turin));
        assert_eq!(Product::from_product_name("Rome"), None);
    }
}

//! AMD SEV-SNP attestation reports: parsing, verification to the pinned AMD roots, collection.

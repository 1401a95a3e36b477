//! Property tests: the parser, the JSON view, the PCK decoding and the verifier never
//! panic, whatever the bytes; a parsed quote's views stay inside the input. The fuzz
//! target body (`tdx::fuzz_parse`) runs here too, on arbitrary bytes and on the vectors
//! (the fuzz seeds).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod tdx_support;

use parley_attestation::tdx::pck::{PckChain, PckExtension};
use parley_attestation::tdx::{Collateral, Quote, TrustRoots, fuzz_parse, verify};
use proptest::prelude::*;
use tdx_support::*;

fn seeds() -> Vec<Vec<u8>> {
    TDX_VECTORS.iter().map(|v| quote_bytes(v)).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..6000)) {
        fuzz_parse(&bytes);
        let _ = PckChain::from_pem(&bytes);
        let _ = PckExtension::from_extension_value(&bytes);
    }

    #[test]
    fn quote_shaped_bytes_never_panic(
        version in prop_oneof![Just(4u16), Just(5u16), any::<u16>()],
        body_type in prop_oneof![Just(2u16), Just(3u16), any::<u16>()],
        rest in proptest::collection::vec(any::<u8>(), 0..6000),
    ) {
        // A header that passes the first checks, so the fuzzing reaches the body and the
        // signature data.
        let mut b = Vec::new();
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&0x81u32.to_le_bytes());
        b.extend_from_slice(&[0; 40]);
        if version == 5 {
            b.extend_from_slice(&body_type.to_le_bytes());
            b.extend_from_slice(&648u32.to_le_bytes());
        }
        b.extend_from_slice(&rest);
        fuzz_parse(&b);
    }

    #[test]
    fn mutated_vectors_never_panic_and_views_stay_in_bounds(
        which in 0usize..6,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = seeds().swap_remove(which);
        for (i, v) in &edits {
            let at = i.index(b.len());
            b[at] = *v;
        }
        let b = &b[..cut.index(b.len() + 1)];
        fuzz_parse(b);
        if let Ok(q) = Quote::parse(b) {
            prop_assert!(q.quote_bytes().len() <= b.len());
            prop_assert_eq!(q.quote_bytes().len() + q.trailing().len(), b.len());
            prop_assert!(q.signed_bytes().len() < q.quote_bytes().len());
            // Verification without collateral never panics and never affirms.
            let v = verify(&q, &Collateral::default(), &TrustRoots::intel(), t("2025-06-20T00:00:00Z"));
            prop_assert_eq!(v.findings.status(), parley_attestation::verdict::Status::Contraindicated);
        }
    }
}

#[test]
fn fuzz_seeds_run_clean() {
    for s in seeds() {
        fuzz_parse(&s);
    }
}

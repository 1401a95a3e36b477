//! Fuzz the TDX quote parser, its JSON view and the PCK chain decoding
//! (`parley_attestation::tdx::fuzz_parse`, which the property tests also run).
//! Seed from the vectors:
//! `for d in ../../../shared/vectors/tdx/*/; do cp "$d/quote.bin" "corpus/tdx_quote/$(basename "$d")"; done`
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    parley_attestation::tdx::fuzz_parse(data);
});

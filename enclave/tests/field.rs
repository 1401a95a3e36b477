//! Field laws, batch operations and the canonical codec, for every field (property tests).

use parley_enclave::field::{Field, FieldError, M61, M127, M521, decode_slice, encode_slice};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn elems<F: Field>(seed: u64, n: usize) -> Vec<F> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..n).map(|_| F::random(&mut rng)).collect()
}

fn laws<F: Field>(seed: u64) -> Result<(), TestCaseError> {
    let v = elems::<F>(seed, 70);
    let (a, b, c) = (v[0], v[1], v[2]);
    prop_assert_eq!((a + b) + c, a + (b + c));
    prop_assert_eq!((a * b) * c, a * (b * c));
    prop_assert_eq!(a * (b + c), a * b + a * c);
    prop_assert_eq!(a - b + b, a);
    prop_assert_eq!(a + (-a), F::zero());
    prop_assert_eq!(F::mul_add2(a, b, c, v[3]), a * b + c * v[3]);
    if a != F::zero() {
        prop_assert_eq!(a * a.inverse().expect("nonzero"), F::one());
    }
    prop_assert!(F::zero().inverse().is_none());
    prop_assert_eq!(F::from_i64(-7) + F::from_u64(7), F::zero());
    // Batch operations agree with element-wise arithmetic.
    let (x, y) = (&v[..35], &v[35..]);
    let naive = x.iter().zip(y).fold(F::zero(), |acc, (p, q)| acc + *p * *q);
    prop_assert_eq!(F::dot(x, y), naive);
    let mut prod = vec![F::zero(); 35];
    F::mul_slices(&mut prod, x, y);
    let mut acc = x.to_vec();
    F::add_scaled_slice(&mut acc, c, y);
    for i in 0..35 {
        prop_assert_eq!(prod[i], x[i] * y[i]);
        prop_assert_eq!(acc[i], x[i] + c * y[i]);
    }
    // Codec round trip, and decode_add.
    let bytes = encode_slice(&v);
    let mut extended = Vec::new();
    F::encode_extend(&v, &mut extended);
    prop_assert_eq!(&bytes, &extended);
    prop_assert_eq!(decode_slice::<F>(&bytes).expect("canonical"), v.clone());
    let mut sum = v.clone();
    F::decode_add(&bytes, &mut sum).expect("canonical");
    for i in 0..v.len() {
        prop_assert_eq!(sum[i], v[i] + v[i]);
    }
    Ok(())
}

/// All-ones in the element's bytes is above every modulus here: never canonical.
fn rejects_non_canonical<F: Field>(at: usize) -> Result<(), TestCaseError> {
    let v = vec![F::one(); 5];
    let mut bytes = encode_slice(&v);
    let i = at % 5;
    bytes[i * F::ENCODED_LEN..(i + 1) * F::ENCODED_LEN]
        .iter_mut()
        .for_each(|b| *b = 0xff);
    let err = decode_slice::<F>(&bytes).expect_err("non-canonical");
    prop_assert_eq!(err.element, Some(i));
    prop_assert_eq!(err.error, FieldError::NonCanonical { field: F::NAME });
    let mut out = vec![F::zero(); 5];
    prop_assert_eq!(F::decode_into(&bytes, &mut out).map_err(|e| e.0), Err(i));
    prop_assert_eq!(F::decode_add(&bytes, &mut out).map_err(|e| e.0), Err(i));
    prop_assert!(decode_slice::<F>(&bytes[1..]).is_err());
    Ok(())
}

proptest! {
    #[test]
    fn m61_laws(seed in any::<u64>()) { laws::<M61>(seed)?; }
    #[test]
    fn m127_laws(seed in any::<u64>()) { laws::<M127>(seed)?; }
    #[test]
    fn m521_laws(seed in any::<u64>()) { laws::<M521>(seed)?; }
    #[test]
    fn codecs_reject_non_canonical(at in any::<usize>()) {
        rejects_non_canonical::<M61>(at)?;
        rejects_non_canonical::<M127>(at)?;
        rejects_non_canonical::<M521>(at)?;
    }
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_slice::<M61>(&bytes);
        let _ = decode_slice::<M127>(&bytes);
        let _ = decode_slice::<M521>(&bytes);
        let _ = M127::from_bytes(&bytes);
    }
    #[test]
    fn m127_mul_add2_at_the_edges(a in any::<u128>(), b in any::<u128>()) {
        let top = M127::from_u128(M127::MODULUS - 1);
        let (x, y) = (M127::from_u128(a), M127::from_u128(b));
        prop_assert_eq!(M127::mul_add2(top, top, top, top), top * top + top * top);
        prop_assert_eq!(M127::mul_add2(x, top, y, top), x * top + y * top);
        prop_assert_eq!(M127::mul_add2(x, y, x, y), x * y + x * y);
    }
    #[test]
    fn m61_products_match_u128_arithmetic(a in 0u64..M61::MODULUS, b in 0u64..M61::MODULUS) {
        let p = (u128::from(a) * u128::from(b)) % u128::from(M61::MODULUS);
        prop_assert_eq!((M61::from_u64(a) * M61::from_u64(b)).to_u64() as u128, p);
    }
}

//! Fixed point on shares (k = 32, f = 16 in 2^127 − 1) against f64 and exact references,
//! within the error bounds documented in `gadgets::fixed`, at n = 3 and n = 5; formats over
//! the limits are refused with the value named.

mod common;

use common::{elems, ints, outputs, run};
use parley_enclave::MpcError;
use parley_enclave::field::{Field, M127, M521};
use parley_enclave::gadgets::fixed::FixedFormat;
use parley_enclave::gadgets::{Circuit, KAPPA};
use proptest::prelude::*;

const FMT: FixedFormat = FixedFormat::DEFAULT;

struct Case {
    x: Vec<i128>,
    y: Vec<i128>,
    m: u32,
}

/// Party 0 inputs x̃, party 1 inputs ỹ (> 0). Outputs: trunc_pr(x̃, 32, m), x·y, 1/y, x/y,
/// √y, 1/√y. Returns the outputs and the working precision p.
fn run_case(n: usize, t: usize, case: &Case, seed: u64) -> (Vec<Vec<i128>>, u32) {
    let len = case.x.len();
    let m = case.m;
    let (program, p, _) = Circuit::<M127>::build(n, t, KAPPA, |c| {
        FMT.check(c)?;
        let x = c.b().input(0, len);
        let y = c.b().input(1, len);
        let outs = [
            c.trunc_pr(x, FMT.k, m, "x"),
            c.fx_mul(x, y, FMT, "x·y"),
            c.fx_reciprocal(y, FMT, "y"),
            c.fx_div(x, y, FMT, "x/y"),
            c.fx_sqrt(y, FMT, "y"),
            c.fx_inv_sqrt(y, FMT, "y"),
        ];
        for o in outs {
            c.b().output(o);
        }
        Ok(c.fx_precision())
    })
    .expect("k = 32 fits");
    let mut inputs = vec![vec![elems(&case.x)], vec![elems(&case.y)]];
    inputs.resize(n, vec![]);
    let got = outputs(&run(t, program, inputs, seed))
        .iter()
        .map(|v| ints(v))
        .collect();
    (got, p)
}

fn check(n: usize, t: usize, case: &Case, seed: u64) {
    let (got, p) = run_case(n, t, case, seed);
    let ulp = (FMT.f as f64).exp2();
    let rel = (-(p as f64) + 3.0).exp2();
    #[allow(clippy::needless_range_loop)] // j indexes six parallel vectors
    for j in 0..case.x.len() {
        let (xr, yr) = (case.x[j], case.y[j]);
        let (x, y) = (xr as f64 / ulp, yr as f64 / ulp);
        // trunc_pr: ⌊x̃/2^m⌋ or one more.
        let fl = xr.div_euclid(1 << case.m);
        assert!(
            got[0][j] == fl || got[0][j] == fl + 1,
            "trunc_pr({xr}, {}) = {}",
            case.m,
            got[0][j]
        );
        let val = |i: usize| got[i][j] as f64 / ulp;
        let within = |what: &str, v: f64, want: f64, bound: f64| {
            assert!(
                (v - want).abs() <= bound,
                "{what} at n = {n}: x = {x}, y = {y}: got {v}, want {want}, |error| {} > bound {bound}",
                (v - want).abs()
            );
        };
        // x·y: one truncation, exact reference from the raw values.
        within("x·y", val(1), (xr * yr) as f64 / ulp / ulp, 1.0 / ulp);
        within("1/y", val(2), 1.0 / y, 1.0 / ulp + rel / y);
        within(
            "x/y",
            val(3),
            x / y,
            2.0 / ulp + x.abs() * (1.0 / ulp + rel / y),
        );
        within("√y", val(4), y.sqrt(), 1.0 / ulp + 2.0 * rel * y.sqrt());
        within(
            "1/√y",
            val(5),
            1.0 / y.sqrt(),
            1.0 / ulp + 2.0 * rel / y.sqrt(),
        );
    }
}

/// y̅ in (2^-14, 2^15): 1/y and 1/√y stay representable with k = 32, f = 16.
fn ys() -> impl Strategy<Value = i128> {
    prop_oneof![4i128..1 << 16, (1i128 << 16)..(1i128 << 31) - 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2))]

    #[test]
    fn fixed_point_matches_f64_within_the_documented_bounds(
        seed in any::<u64>(),
        x in prop::collection::vec(-(1i128 << 22)..(1i128 << 22), 4),
        y in prop::collection::vec(ys(), 4),
        m in 1u32..31,
    ) {
        let case = Case { x: x.clone(), y: y.clone(), m };
        check(3, 1, &case, seed);
        check(5, 2, &case, seed ^ 1);
    }
}

#[test]
fn values_at_the_edges_of_the_format() {
    // The largest and smallest representable magnitudes, and y at the edges of its domain.
    let max = FMT.max_raw();
    let case = Case {
        x: vec![max, -max, 0, 1, -1],
        y: vec![4, 1 << 16, max, (1 << 30) + 12345, 1],
        m: 16,
    };
    let (got, _) = run_case(3, 1, &case, 7);
    // x·y exactly representable cases: max·(2^-14) and −max·1.
    assert!((got[1][1] + max).abs() <= 1);
    // 1/y at y = 1 ulp is 2^32 raw: outside the format, so not asserted; the others are.
    for (j, &yr) in case.y.iter().enumerate().take(4) {
        let want = (1i128 << 32) as f64 / yr as f64;
        assert!(
            (got[2][j] as f64 - want).abs() <= 1.0 + want * 2f64.powi(-28),
            "1/y at ỹ = {yr}: {} vs {want}",
            got[2][j]
        );
    }
    // √0 = 0 exactly.
    let (got, _) = run_case(
        3,
        1,
        &Case {
            x: vec![0],
            y: vec![0],
            m: 3,
        },
        8,
    );
    assert_eq!(got[4], vec![0]);
}

#[test]
fn formats_over_the_field_limit_are_refused_naming_the_format() {
    for (n, t, k_ok, k_bad) in [(3, 1, 33, 34), (5, 2, 32, 33), (7, 3, 31, 32)] {
        let r = Circuit::<M127>::build(n, t, KAPPA, |c| {
            FixedFormat { k: k_ok, f: 16 }.check(c)?;
            FixedFormat { k: k_bad, f: 16 }.check(c)
        });
        let err = r.expect_err("over the limit");
        let MpcError::Limit(e) = &err else {
            panic!("{err}")
        };
        assert_eq!(e.bits, u64::from(2 * k_bad - 1), "{err}");
        assert!(
            e.value.contains(&format!("k = {k_bad} bits")),
            "{}",
            e.value
        );
        assert!(
            e.advice.contains(&format!("use k ≤ {k_ok}")),
            "{}",
            e.advice
        );
    }
    // The wide field takes k = 200 at n = 7.
    Circuit::<M521>::build(7, 3, KAPPA, |c| FixedFormat { k: 200, f: 64 }.check(c))
        .expect("fits 2^521 − 1");
}

#[test]
fn values_at_and_just_past_the_format_bound() {
    // k = 32, f = 16: |x̃| ≤ 2^31 − 1, i.e. |x| ≤ 32767.99998…
    let max = FMT.max_raw();
    assert_eq!(max, (1 << 31) - 1);
    let top = FMT.to_f64(max);
    assert_eq!(FMT.encode_f64(top), Some(max));
    assert_eq!(FMT.encode_f64(-top), Some(-max));
    // One ulp past either end is not representable: refused, never wrapped.
    let ulp = 1.0 / 65536.0;
    assert_eq!(FMT.encode_f64(top + ulp), None);
    assert_eq!(FMT.encode_f64(-top - ulp), None);
    assert_eq!(FMT.encode_f64(f64::NAN), None);
    // And a public element just past the bound is refused when read back.
    assert_eq!(FMT.raw_of(M127::from_u64(1 << 31)), None);
    assert_eq!(FMT.raw_of(-M127::from_u64(1 << 31)), None);
    assert_eq!(FMT.raw_of(-M127::from_u64((1 << 31) - 1)), Some(-max));
}

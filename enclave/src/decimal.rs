//! Exact non-negative decimals for job specs and privacy accounting.
//!
//! Owns [`Decimal`]: values such as a zCDP cost ρ = "0.25", a δ of "0.000000001" or a
//! quantile "0.9" are written as decimal strings in job specs (which are hashed and signed,
//! so they hold no floats) and held exactly as units of 10^−18. Parsing accepts only the
//! canonical form — digits, at most one point, no sign, no exponent, no superfluous zeros —
//! so every value has exactly one spelling and one hash.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Fractional digits kept.
const SCALE_DIGITS: u32 = 18;
const SCALE: u128 = 1_000_000_000_000_000_000;

/// A non-negative decimal with at most 18 fractional digits, exact.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Decimal(u128);

/// Why a string is not a canonical decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a canonical decimal ({reason}); write e.g. \"0.5\", \"2\" or \"0.000001\""
)]
pub struct DecimalError {
    /// The input (truncated to 40 characters).
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Decimal {
    /// Zero.
    pub const ZERO: Decimal = Decimal(0);
    /// One.
    pub const ONE: Decimal = Decimal(SCALE);

    /// From units of 10^−18.
    pub const fn from_atto(units: u128) -> Self {
        Decimal(units)
    }
    /// Units of 10^−18.
    pub const fn atto(self) -> u128 {
        self.0
    }
    /// A whole number.
    pub fn from_int(v: u64) -> Self {
        Decimal(u128::from(v) * SCALE)
    }
    /// Whether it is zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    /// The nearest f64 (for numerical calibration and display only; never hashed).
    pub fn to_f64(self) -> f64 {
        (self.0 / SCALE) as f64 + (self.0 % SCALE) as f64 / SCALE as f64
    }
    /// `self + o`, or `None` on overflow.
    pub fn checked_add(self, o: Decimal) -> Option<Decimal> {
        self.0.checked_add(o.0).map(Decimal)
    }
    /// `self − o`, or `None` below zero.
    pub fn checked_sub(self, o: Decimal) -> Option<Decimal> {
        self.0.checked_sub(o.0).map(Decimal)
    }
    /// `self / k` rounded down (splitting a budget k ways never overspends).
    pub fn div_floor(self, k: u64) -> Decimal {
        Decimal(self.0 / u128::from(k.max(1)))
    }
    /// As a fraction (numerator, denominator) in lowest terms.
    pub fn as_fraction(self) -> (u128, u128) {
        let g = gcd(self.0, SCALE);
        (self.0 / g, SCALE / g)
    }
    /// The smallest decimal ≥ x with at most `digits` fractional digits (x ≥ 0, finite).
    pub fn ceil_f64(x: f64, digits: u32) -> Option<Decimal> {
        if !x.is_finite() || x < 0.0 || digits > SCALE_DIGITS {
            return None;
        }
        let unit = 10f64.powi(digits as i32);
        let v = (x * unit).ceil();
        if v >= 1e30 {
            return None;
        }
        let step = 10u128.pow(SCALE_DIGITS - digits);
        Some(Decimal((v as u128) * step))
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl core::str::FromStr for Decimal {
    type Err = DecimalError;
    fn from_str(s: &str) -> Result<Self, DecimalError> {
        let bad = |reason| DecimalError {
            input: s.chars().take(40).collect(),
            reason,
        };
        let (int, frac) = match s.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (s, None),
        };
        if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("the integer part must be digits"));
        }
        if int.len() > 1 && int.starts_with('0') {
            return Err(bad("leading zero"));
        }
        let mut units: u128 = 0;
        for b in int.bytes() {
            units = units
                .checked_mul(10)
                .and_then(|u| u.checked_add(u128::from(b - b'0')))
                .ok_or_else(|| bad("too large"))?;
        }
        units = units.checked_mul(SCALE).ok_or_else(|| bad("too large"))?;
        if let Some(f) = frac {
            if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("the fractional part must be digits"));
            }
            if f.len() > SCALE_DIGITS as usize {
                return Err(bad("more than 18 fractional digits"));
            }
            if f.ends_with('0') {
                return Err(bad("trailing zero"));
            }
            let mut fv: u128 = 0;
            for b in f.bytes() {
                fv = fv * 10 + u128::from(b - b'0');
            }
            fv *= 10u128.pow(SCALE_DIGITS - f.len() as u32);
            units = units.checked_add(fv).ok_or_else(|| bad("too large"))?;
        }
        Ok(Decimal(units))
    }
}

impl core::fmt::Display for Decimal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (int, frac) = (self.0 / SCALE, self.0 % SCALE);
        if frac == 0 {
            return write!(f, "{int}");
        }
        let digits = format!("{frac:018}");
        write!(f, "{int}.{}", digits.trim_end_matches('0'))
    }
}

impl core::fmt::Debug for Decimal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Decimal({self})")
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_round_trip_and_others_are_refused() {
        for s in ["0", "1", "0.5", "0.000000001", "12.25", "340282366920"] {
            let d: Decimal = s.parse().expect(s);
            assert_eq!(d.to_string(), s);
        }
        for s in [
            "",
            ".5",
            "5.",
            "0.50",
            "05",
            "-1",
            "+1",
            "1e-9",
            "0.5 ",
            " 0.5",
            "1,5",
            "NaN",
            "0.0000000000000000001",
        ] {
            assert!(s.parse::<Decimal>().is_err(), "{s:?} accepted");
        }
        let e = "0.50".parse::<Decimal>().expect_err("trailing zero");
        assert_eq!(
            e.to_string(),
            "\"0.50\" is not a canonical decimal (trailing zero); write e.g. \"0.5\", \"2\" or \"0.000001\""
        );
    }

    #[test]
    fn arithmetic_is_exact() {
        let a: Decimal = "0.1".parse().expect("ok");
        let b: Decimal = "0.2".parse().expect("ok");
        assert_eq!(a.checked_add(b).expect("fits").to_string(), "0.3");
        assert_eq!(b.checked_sub(a), Some(a));
        assert_eq!(a.checked_sub(b), None);
        assert_eq!(
            Decimal::ONE.div_floor(3).to_string(),
            "0.333333333333333333"
        );
        assert_eq!("0.75".parse::<Decimal>().expect("ok").as_fraction(), (3, 4));
        assert_eq!(
            Decimal::ceil_f64(0.1234, 2).expect("ok").to_string(),
            "0.13"
        );
        let j = serde_json::to_string(&a).expect("json");
        assert_eq!(j, "\"0.1\"");
        assert_eq!(serde_json::from_str::<Decimal>(&j).expect("back"), a);
        assert!(
            serde_json::from_str::<Decimal>("0.1").is_err(),
            "numbers are refused"
        );
    }
}

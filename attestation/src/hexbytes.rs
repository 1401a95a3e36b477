//! Fixed-length byte strings serialised as lowercase hex, and Ed25519 public keys as
//! `ed25519:<hex>`. Deserialisation rejects any other length, case or prefix.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `N` bytes, written as `2N` lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HexBytes<const N: usize>(pub [u8; N]);

impl<const N: usize> HexBytes<N> {
    pub fn as_bytes(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Display for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl<const N: usize> fmt::Debug for HexBytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl<const N: usize> FromStr for HexBytes<N> {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.len() != 2 * N {
            return Err(format!(
                "expected {} hex digits ({N} bytes), found {} characters",
                2 * N,
                s.len()
            ));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err("hex digits must be lowercase".into());
        }
        let v = hex::decode(s).map_err(|e| format!("not hexadecimal: {e}"))?;
        let arr: [u8; N] = v.try_into().map_err(|_| format!("expected {N} bytes"))?;
        Ok(HexBytes(arr))
    }
}

impl<const N: usize> Serialize for HexBytes<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de, const N: usize> Deserialize<'de> for HexBytes<N> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key, written `ed25519:<64 hex digits>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ed25519Key(pub [u8; 32]);

impl fmt::Display for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0))
    }
}

impl fmt::Debug for Ed25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl FromStr for Ed25519Key {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("ed25519:")
            .ok_or_else(|| format!("{s:?} does not start with \"ed25519:\""))?;
        let h: HexBytes<32> = rest.parse()?;
        Ok(Ed25519Key(h.0))
    }
}

impl Serialize for Ed25519Key {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ed25519Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_hex() {
        assert!("00ff".parse::<HexBytes<2>>().is_ok());
        assert!("00FF".parse::<HexBytes<2>>().is_err());
        assert!("00f".parse::<HexBytes<2>>().is_err());
        assert!("00ff00".parse::<HexBytes<2>>().is_err());
        assert!("zzzz".parse::<HexBytes<2>>().is_err());
        let k = Ed25519Key([1; 32]);
        assert_eq!(k.to_string().parse::<Ed25519Key>().unwrap(), k);
        assert!("ed25519:01".parse::<Ed25519Key>().is_err());
    }
}

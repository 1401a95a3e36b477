//! Deliberate protocol deviations for simulations and tests (`cheat` feature only).
//!
//! Production builds do not compile this module or any of its hooks: the host enables it
//! only for `parley demo --cheat` on simulated federations. Each deviation is one a corrupted
//! party could really make; the honest parties must abort before any output with the failed
//! check named.

use std::str::FromStr;

/// A deviation from the protocol by this party.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deviation {
    /// As an input dealer: send `victim` a wrong share (element `element` + 1), then carry on
    /// with the original own share.
    WrongShare {
        /// Recipient of the wrong share (`None`: the next party).
        victim: Option<usize>,
        /// Element index within this party's input buffer.
        element: usize,
    },
    /// Additive attack on a multiplication: add 1 to this party's local product for element
    /// `element` of its `round`-th multiplication round (0-based) before resharing it
    /// consistently — the products become a consistent sharing of a wrong value.
    AdditiveAttack {
        /// Which multiplication round (0 = the first).
        round: usize,
        /// Element within that round's batch.
        element: usize,
    },
    /// As an input dealer: deal element `element` on a polynomial of degree t + 1, so that the
    /// shares do not lie on one degree-t polynomial.
    InconsistentInput {
        /// Element index within this party's input buffer.
        element: usize,
    },
    /// In the `opening`-th opening round (0-based, counting every all-to-all opening of the
    /// job), send `victim` a wrong share for element `element`.
    WrongOpening {
        /// Recipient (`None`: the next party).
        victim: Option<usize>,
        /// Which opening round.
        opening: usize,
        /// Element within it.
        element: usize,
    },
    /// In PRSS key setup, deal `victim` a different key for every set (and pair) this party
    /// deals to it.
    InconsistentPrssKey {
        /// Recipient of the different key.
        victim: usize,
    },
}

impl Deviation {
    /// Names accepted by [`FromStr`], for CLI help.
    pub const KINDS: [&'static str; 5] = [
        "wrong-share",
        "additive-attack",
        "inconsistent-input",
        "wrong-opening",
        "inconsistent-prss-key",
    ];

    /// The victim, resolving "next party" for party `me` of `n`.
    pub fn victim(&self, me: usize, n: usize) -> Option<usize> {
        let next = (me + 1) % n;
        match *self {
            Deviation::WrongShare { victim, .. } | Deviation::WrongOpening { victim, .. } => {
                Some(victim.unwrap_or(next))
            }
            Deviation::InconsistentPrssKey { victim } => Some(victim),
            _ => None,
        }
    }
}

/// An unknown deviation name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown deviation {0:?}; known: wrong-share, additive-attack, inconsistent-input, wrong-opening, inconsistent-prss-key"
)]
pub struct UnknownDeviation(pub String);

impl FromStr for Deviation {
    type Err = UnknownDeviation;
    /// Parses a kind name with default parameters (first element, next party, first round).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "wrong-share" => Deviation::WrongShare {
                victim: None,
                element: 0,
            },
            "additive-attack" => Deviation::AdditiveAttack {
                round: 0,
                element: 0,
            },
            "inconsistent-input" => Deviation::InconsistentInput { element: 0 },
            "wrong-opening" => Deviation::WrongOpening {
                victim: None,
                opening: 0,
                element: 0,
            },
            "inconsistent-prss-key" => Deviation::InconsistentPrssKey { victim: 1 },
            other => return Err(UnknownDeviation(other.to_string())),
        })
    }
}

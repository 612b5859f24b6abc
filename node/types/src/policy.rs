//! Endorsement policies: which organisations must endorse a contract's transactions.
//!
//! Written as in genesis: `ALL`, `MAJORITY`, `ANY`, `AND(OrgA, OrgB)`, `OUTOF(2, OrgA, OrgB, OrgC)`.
//! `ALL` and `MAJORITY` count the orgs of the network (from genesis); `ANY` is one org.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An endorsement policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Every org of the network.
    All,
    /// More than half of the orgs of the network.
    Majority,
    /// Any one org.
    Any,
    /// Each of these orgs.
    And(Vec<String>),
    /// At least `n` of these orgs.
    OutOf(usize, Vec<String>),
}

/// A policy string could not be parsed, or names orgs that do not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad endorsement policy {text:?}: {why}")]
pub struct PolicyError {
    /// The policy as written.
    pub text: String,
    /// What is wrong with it.
    pub why: String,
}

impl Policy {
    /// Whether endorsements from `endorsers` (distinct org names) satisfy the policy in a
    /// network of `network_orgs`.
    pub fn is_satisfied<'a>(
        &self,
        network_orgs: &[String],
        endorsers: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let got: BTreeSet<&str> = endorsers
            .into_iter()
            .filter(|o| network_orgs.iter().any(|n| n == o))
            .collect();
        match self {
            Policy::All => network_orgs.iter().all(|o| got.contains(o.as_str())),
            Policy::Majority => got.len() * 2 > network_orgs.len(),
            Policy::Any => !got.is_empty(),
            Policy::And(orgs) => orgs.iter().all(|o| got.contains(o.as_str())),
            Policy::OutOf(n, orgs) => {
                orgs.iter().filter(|o| got.contains(o.as_str())).count() >= *n
            }
        }
    }

    /// The orgs a gateway should ask, preferring `local` when the policy lets one org do.
    pub fn orgs_to_ask(&self, network_orgs: &[String], local: &str) -> Vec<String> {
        match self {
            Policy::All => network_orgs.to_vec(),
            Policy::Majority => {
                let need = network_orgs.len() / 2 + 1;
                let mut v: Vec<String> = vec![local.to_string()];
                v.extend(
                    network_orgs
                        .iter()
                        .filter(|o| o.as_str() != local)
                        .take(need.saturating_sub(1))
                        .cloned(),
                );
                v
            }
            Policy::Any => vec![local.to_string()],
            Policy::And(orgs) => orgs.clone(),
            Policy::OutOf(n, orgs) => {
                let mut v: Vec<String> = orgs.iter().filter(|o| *o == local).cloned().collect();
                v.extend(orgs.iter().filter(|o| *o != local).cloned());
                v.truncate(*n);
                v
            }
        }
    }

    /// Checks that every org the policy names exists and that it can be satisfied.
    pub fn check_orgs(&self, network_orgs: &[String]) -> Result<(), PolicyError> {
        let err = |why: String| PolicyError {
            text: self.to_string(),
            why,
        };
        let named = match self {
            Policy::And(o) => o,
            Policy::OutOf(n, o) => {
                if *n == 0 || *n > o.len() {
                    return Err(err(format!("n must be 1 to {}", o.len())));
                }
                o
            }
            _ => return Ok(()),
        };
        for o in named {
            if !network_orgs.contains(o) {
                return Err(err(format!("org {o:?} is not in the network")));
            }
        }
        Ok(())
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Policy::All => f.write_str("ALL"),
            Policy::Majority => f.write_str("MAJORITY"),
            Policy::Any => f.write_str("ANY"),
            Policy::And(o) => write!(f, "AND({})", o.join(", ")),
            Policy::OutOf(n, o) => write!(f, "OUTOF({n}, {})", o.join(", ")),
        }
    }
}

impl FromStr for Policy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why: &str| PolicyError {
            text: s.to_string(),
            why: why.to_string(),
        };
        let t = s.trim();
        match t {
            "ALL" => return Ok(Policy::All),
            "MAJORITY" => return Ok(Policy::Majority),
            "ANY" => return Ok(Policy::Any),
            _ => {}
        }
        let (head, rest) = t
            .split_once('(')
            .ok_or_else(|| err("expected ALL, MAJORITY, ANY, AND(...) or OUTOF(n, ...)"))?;
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| err("missing closing parenthesis"))?;
        let items: Vec<String> = inner.split(',').map(|x| x.trim().to_string()).collect();
        if items.iter().any(|x| x.is_empty()) {
            return Err(err("empty item in the list"));
        }
        match head.trim() {
            "AND" => Ok(Policy::And(items)),
            "OUTOF" => {
                let (n, orgs) = items
                    .split_first()
                    .ok_or_else(|| err("OUTOF needs a count"))?;
                let n: usize = n
                    .parse()
                    .map_err(|_| err("OUTOF's first item must be a count"))?;
                if orgs.is_empty() {
                    return Err(err("OUTOF needs at least one org"));
                }
                if n == 0 || n > orgs.len() {
                    return Err(err("OUTOF count must be 1 to the number of orgs"));
                }
                Ok(Policy::OutOf(n, orgs.to_vec()))
            }
            _ => Err(err(
                "unknown policy; expected ALL, MAJORITY, ANY, AND or OUTOF",
            )),
        }
    }
}

impl Serialize for Policy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Policy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn orgs() -> Vec<String> {
        ["A", "B", "C", "D"].iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parse_and_print() {
        for s in ["ALL", "MAJORITY", "ANY", "AND(A, B)", "OUTOF(2, A, B, C)"] {
            assert_eq!(s.parse::<Policy>().unwrap().to_string(), s);
        }
        for bad in [
            "",
            "SOME",
            "AND(A,",
            "OUTOF(0, A)",
            "OUTOF(3, A, B)",
            "OUTOF(x, A)",
            "AND(A,,B)",
        ] {
            assert!(bad.parse::<Policy>().is_err(), "{bad}");
        }
    }

    #[test]
    fn satisfaction() {
        let o = orgs();
        assert!(Policy::All.is_satisfied(&o, ["A", "B", "C", "D"]));
        assert!(!Policy::All.is_satisfied(&o, ["A", "B", "C"]));
        assert!(Policy::Majority.is_satisfied(&o, ["A", "B", "C"]));
        assert!(!Policy::Majority.is_satisfied(&o, ["A", "B"]));
        assert!(!Policy::Majority.is_satisfied(&o, ["A", "A", "A"]));
        assert!(Policy::Any.is_satisfied(&o, ["D"]));
        assert!(!Policy::Any.is_satisfied(&o, ["Z"]));
        let and: Policy = "AND(A, C)".parse().unwrap();
        assert!(and.is_satisfied(&o, ["C", "A"]));
        assert!(!and.is_satisfied(&o, ["A", "B"]));
        let out: Policy = "OUTOF(2, A, B, C)".parse().unwrap();
        assert!(out.is_satisfied(&o, ["A", "C"]));
        assert!(!out.is_satisfied(&o, ["A", "D"]));
    }

    #[test]
    fn asks_enough() {
        let o = orgs();
        for p in ["ALL", "MAJORITY", "ANY", "AND(B, C)", "OUTOF(2, A, B, C)"] {
            let p: Policy = p.parse().unwrap();
            let ask = p.orgs_to_ask(&o, "B");
            assert!(p.is_satisfied(&o, ask.iter().map(String::as_str)), "{p}");
        }
        assert!(
            "AND(A, Z)"
                .parse::<Policy>()
                .unwrap()
                .check_orgs(&o)
                .is_err()
        );
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    fn arb_policy() -> impl Strategy<Value = Policy> {
        let orgs = proptest::collection::vec("[A-Z][a-zA-Z0-9]{0,8}", 1..5);
        prop_oneof![
            Just(Policy::All),
            Just(Policy::Majority),
            Just(Policy::Any),
            orgs.clone().prop_map(Policy::And),
            orgs.prop_flat_map(|o| (1..=o.len(), Just(o)))
                .prop_map(|(n, o)| Policy::OutOf(n, o)),
        ]
    }

    proptest! {
        #[test]
        fn policy_text_and_cbor_round_trip(p in arb_policy()) {
            prop_assert_eq!(p.to_string().parse::<Policy>().unwrap(), p.clone());
            let bytes = crate::encode(&p).unwrap();
            prop_assert_eq!(crate::decode::<Policy>(&bytes, 1024).unwrap(), p);
        }

        #[test]
        fn any_text_parses_or_errs_without_panic(s in ".{0,40}") {
            let _ = s.parse::<Policy>();
        }
    }
}

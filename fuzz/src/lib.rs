//! Shared helpers for the sphr fuzz targets (see `docs/fuzzing.md`).
//!
//! Every target asserts two things about its decoder:
//!
//! 1. no input makes it panic, overflow, allocate without bound or run away (libFuzzer's
//!    `-rss_limit_mb` and `-timeout` catch the last two);
//! 2. where an encoder exists, whatever decodes survives a round trip: `decode(encode(x)) == x`.
//!
//! Round trips re-decode with no size limit ([`UNLIMITED`]): the size limit is a property of
//! the wire, checked against the bytes that arrived, and the canonical re-encoding of a value
//! may be longer than a non-canonical input (serde accepts a struct field by index, so `0` can
//! stand for `"header"`); nothing in sphr re-decodes a re-encoding under the original limit.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// A decode limit for round trips, where the limit is not what is under test.
pub const UNLIMITED: usize = usize::MAX;

/// The network id the p2p targets expect.
pub const NET: [u8; 32] = [7; 32];

/// Encodes `x` as CBOR, decodes it back, and asserts the result equals `x`.
pub fn cbor_round_trip<T>(x: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = sphr_crypto::cbor::to_vec(x).expect("a decoded value must encode");
    let back: T = sphr_crypto::cbor::from_slice(&bytes, UNLIMITED)
        .unwrap_or_else(|e| panic!("re-encoded value does not decode: {e}\nvalue: {x:?}"));
    assert_eq!(&back, x, "decode(encode(x)) != x");
}

/// For types without `PartialEq` (node messages): `encode(decode(encode(x))) == encode(x)`,
/// which is the same property seen through the encoder.
pub fn cbor_stable<T>(x: &T) -> Vec<u8>
where
    T: Serialize + DeserializeOwned + Debug,
{
    let bytes = sphr_crypto::cbor::to_vec(x).expect("a decoded value must encode");
    let back: T = sphr_crypto::cbor::from_slice(&bytes, UNLIMITED)
        .unwrap_or_else(|e| panic!("re-encoded value does not decode: {e}\nvalue: {x:?}"));
    let again = sphr_crypto::cbor::to_vec(&back).expect("a decoded value must encode");
    assert_eq!(
        bytes, again,
        "encode(decode(encode(x))) != encode(x) for {x:?}"
    );
    bytes
}

/// Splits fuzz input into up to `max` pieces at a separator, the way the targets that take
/// several byte strings (a block's transactions, CSV and control files) read their input.
/// The separator is unlikely in CBOR or text and easy for the fuzzer to learn from seeds.
pub fn split_parts(data: &[u8], max: usize) -> Vec<&[u8]> {
    const SEP: &[u8] = b"\n--8<--\n";
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() + 1 < max {
        match find(rest, SEP) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEP.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}

/// The separator [`split_parts`] looks for, for the seed generator.
pub const PART_SEPARATOR: &[u8] = b"\n--8<--\n";

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts() {
        assert_eq!(split_parts(b"a\n--8<--\nb", 4), vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(split_parts(b"a\n--8<--\nb", 1), vec![&b"a\n--8<--\nb"[..]]);
        assert_eq!(split_parts(b"", 3), vec![&b""[..]]);
    }
}

pub mod net {
    //! The deterministic network the endorse and validate targets sign with: two orgs
    //! (`Org1`, `Org2`) with one consenter each, contracts `kv`, `consent` and `healthcare` under `ANY`, and a
    //! fixed cast of identities; plus an in-memory world state and tx index.

    use std::collections::{BTreeMap, HashMap};
    use std::sync::LazyLock;

    use sphr_crypto::cert::{Certificate, CertificateBody, Role};
    use sphr_crypto::hash::{Hash32, sha256_parts};
    use sphr_crypto::pre::PreSecretKey;
    use sphr_ledger::codec::{TxLocation, decode_state_value};
    use sphr_ledger::test_utils::{TEST_TIME_MS, TestIdentity, TestNetwork, seeded_key};
    use sphr_ledger::{LedgerError, MAX_RANGE_ENTRIES, StateEntry, StateReader, TxIndexReader};
    use sphr_types::Version;

    /// The network, built once per process.
    pub static NET: LazyLock<Fixture> = LazyLock::new(Fixture::new);

    /// The block and proposal time of the targets (Unix ms).
    pub const NOW_MS: u64 = TEST_TIME_MS;

    /// The test network and the identities a fuzz input picks from by index.
    pub struct Fixture {
        /// Orgs, genesis, block 0.
        pub net: TestNetwork,
        /// Creators: for each org an admin, a patient, a doctor, a nurse, an auditor, a client,
        /// a lab technician, an insurer, a pharmacist and its node; then one identity from a CA
        /// not in genesis and one expired.
        pub people: Vec<TestIdentity>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let net = TestNetwork::with_contracts(
                2,
                1,
                &[("kv", "ANY"), ("consent", "ANY"), ("healthcare", "ANY")],
            );
            let mut people = Vec::new();
            for org in 0..2 {
                for (subject, role) in [
                    ("admin", Role::Admin),
                    ("pat", Role::Patient),
                    ("doc", Role::Doctor),
                    ("nurse", Role::Nurse),
                    ("aud", Role::Auditor),
                    ("client", Role::Client),
                    ("lab", Role::Lab),
                    ("ins", Role::Insurer),
                    ("pharm", Role::Pharmacist),
                ] {
                    people.push(person(&net, org, subject, role));
                }
                people.push(net.node(org, 0).clone());
            }
            people.push(net.foreign_identity("Org1", "mallory", Role::Doctor));
            // Expired one second before the proposals' time.
            people.push(net.identity(0, "old", Role::Doctor, 0, NOW_MS / 1000 - 1));
            Fixture { net, people }
        }

        /// The identity at `i` (modulo the cast).
        pub fn person(&self, i: u8) -> &TestIdentity {
            &self.people[usize::from(i) % self.people.len()]
        }

        /// The network id.
        pub fn network_id(&self) -> Hash32 {
            self.net.network_id()
        }
    }

    /// An org member whose certificate carries a real proxy re-encryption public key (the
    /// healthcare contract seals fields to it), derived from a fixed seed.
    fn person(net: &TestNetwork, org: usize, subject: &str, role: Role) -> TestIdentity {
        let o = &net.orgs[org];
        let label = format!("fuzz/{}/{subject}", o.name);
        let key = seeded_key(&label);
        let mut pre = [0u8; 64];
        pre[..32].copy_from_slice(&sha256_parts(&[b"pre-a1", label.as_bytes()]).0);
        pre[32..].copy_from_slice(&sha256_parts(&[b"pre-a2", label.as_bytes()]).0);
        // Below the group order r (0x73ed...): clear the top bits of each scalar.
        pre[0] &= 0x3f;
        pre[32] &= 0x3f;
        let pre = PreSecretKey::from_bytes(&pre).expect("fixed PRE key");
        let body = CertificateBody {
            subject: subject.into(),
            org: o.name.clone(),
            role,
            public_key: key.public_key(),
            pre_public_key: Some(pre.public_key().to_bytes().to_vec()),
            not_before: 0,
            not_after: u64::MAX,
        };
        let cert = Certificate::issue(&o.ca, body).expect("fuzz certificate");
        TestIdentity { key, cert }
    }

    /// World state and tx index in memory, for the endorser's simulator and the validator.
    #[derive(Default)]
    pub struct MemState {
        /// Namespaced key -> stored value (version prefix ++ value), as the ledger stores it.
        pub state: BTreeMap<Vec<u8>, Vec<u8>>,
        /// Tx id -> location.
        pub index: HashMap<Hash32, TxLocation>,
    }

    impl MemState {
        fn entries(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<StateEntry> {
            if start >= end {
                return Vec::new();
            }
            self.state
                .range(start.to_vec()..end.to_vec())
                .take(limit.min(MAX_RANGE_ENTRIES))
                .filter_map(|(k, v)| {
                    let (version, value) = decode_state_value(v).ok()?;
                    Some((k.clone(), version, value.to_vec()))
                })
                .collect()
        }

        fn read(&self, key: &[u8]) -> Option<(Version, Vec<u8>)> {
            let (v, value) = decode_state_value(self.state.get(key)?).ok()?;
            Some((v, value.to_vec()))
        }
    }

    impl StateReader for MemState {
        fn get_state(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, LedgerError> {
            Ok(self.read(key))
        }

        fn range_state(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
        ) -> Result<Vec<StateEntry>, LedgerError> {
            Ok(self.entries(start, end, limit))
        }
    }

    impl TxIndexReader for MemState {
        fn tx_location(&self, tx_id: &Hash32) -> Result<Option<TxLocation>, LedgerError> {
            Ok(self.index.get(tx_id).copied())
        }
    }

    impl sphr_node::endorser::StateSource for MemState {
        fn get(&self, key: &[u8]) -> Result<Option<(Version, Vec<u8>)>, String> {
            Ok(self.read(key))
        }

        fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<StateEntry>, String> {
            Ok(self.entries(start, end, limit))
        }
    }

    /// Applies a validated block to `state` as the ledger's commit does.
    pub fn apply(state: &mut MemState, checked: &sphr_ledger::validate::MvccChecked) {
        let writes: Vec<(Vec<u8>, Option<Vec<u8>>)> = checked
            .state_writes()
            .into_iter()
            .map(|(k, v)| (k.to_vec(), v))
            .collect();
        for (k, v) in writes {
            match v {
                Some(v) => {
                    state.state.insert(k, v);
                }
                None => {
                    state.state.remove(&k);
                }
            }
        }
        for (id, loc) in checked.index_entries() {
            state.index.insert(id, loc);
        }
    }
}

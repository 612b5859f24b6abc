//! Simulated clients: each submits real, signed, endorsed transactions of the test network
//! to the node it believes leads, and waits for that node to commit them, as a gateway
//! client does.
//!
//! ```text
//!  Submit ──> kind (seeded):  put           key = value, endorsed by a majority or more
//!                             read-modify-write  reads key at the version the target node
//!                                           has now (conflicts: MVCC_READ_CONFLICT)
//!                             policy failure    too few orgs endorse
//!                             forged endorsement  one endorsement signed by the wrong key
//!                             user as endorser    a client certificate among the endorsers
//!                             replay        an acknowledged tx again (DUPLICATE_TXID)
//!         ──> target = believed leader (a node that knows another leader redirects)
//!         ──> the node accepts it (leader: cutter; follower: forwards to its leader)
//!  target commits it ──> acknowledged (block, position, code from the target's tx index)
//!  no commit after client_timeout ──> resubmit the same bytes (at most twice), then give up
//! ```
//!
//! The three bad kinds are reported to `valid_needs_endorsements` as "must never be VALID".

use std::collections::{BTreeMap, VecDeque};

use sphr_crypto::hash::Hash32;
use sphr_ledger::test_utils::{TestIdentity, TestNetwork, endorse, put, read};
use sphr_types::{Transaction, Version, namespaced_key};

use crate::rng::SimRng;

/// What a client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TxKind {
    /// A blind write.
    Put,
    /// A read of one key at a version, then a write of it.
    ReadModifyWrite,
    /// Endorsed by fewer orgs than the policy asks.
    PolicyFailure,
    /// One endorsement's signature made with the wrong key.
    ForgedEndorsement,
    /// A client certificate among the endorsers.
    UserAsEndorser,
    /// An acknowledged transaction sent again.
    Replay,
}

impl TxKind {
    /// Whether the transaction must never be VALID.
    pub fn must_fail(&self) -> bool {
        matches!(
            self,
            TxKind::PolicyFailure | TxKind::ForgedEndorsement | TxKind::UserAsEndorser
        )
    }

    const ALL: [TxKind; 6] = [
        TxKind::Put,
        TxKind::ReadModifyWrite,
        TxKind::PolicyFailure,
        TxKind::ForgedEndorsement,
        TxKind::UserAsEndorser,
        TxKind::Replay,
    ];
    const WEIGHTS: [u32; 6] = [40, 35, 7, 6, 5, 7];
}

/// A transaction waiting for its commit.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its bytes (for resubmission).
    pub bytes: Vec<u8>,
    /// The node last asked.
    pub node: u64,
    /// When last sent (virtual ms).
    pub sent_at: u64,
    /// Times sent.
    pub attempts: u32,
}

/// One client.
#[derive(Debug)]
pub struct Client {
    /// Its identity (a client certificate of one org).
    pub user: TestIdentity,
    /// The node it believes leads.
    pub believed_leader: u64,
    /// Transactions sent and not yet acknowledged or given up.
    pub pending: BTreeMap<Hash32, Pending>,
    /// Recently acknowledged transactions (for replays).
    pub acked_recent: VecDeque<Vec<u8>>,
    /// Transactions built.
    pub submitted: u64,
    /// Transactions given up (outcome unknown to the client).
    pub given_up: u64,
}

/// Most acknowledged transactions a client keeps for replays.
const RECENT_MAX: usize = 8;

impl Client {
    /// Client `idx` of the network, a user of org `idx % orgs`.
    pub fn new(net: &TestNetwork, idx: usize, first_target: u64) -> Self {
        let org = idx % net.orgs.len();
        Self {
            user: net.user(org, &format!("client{idx}")),
            believed_leader: first_target,
            pending: BTreeMap::new(),
            acked_recent: VecDeque::new(),
            submitted: 0,
            given_up: 0,
        }
    }

    /// Remembers an acknowledged transaction for replays.
    pub fn remember_acked(&mut self, bytes: Vec<u8>) {
        if self.acked_recent.len() >= RECENT_MAX {
            self.acked_recent.pop_front();
        }
        self.acked_recent.push_back(bytes);
    }

    /// Picks what to send next.
    pub fn pick_kind(&self, rng: &mut SimRng) -> TxKind {
        let kind = rng
            .weighted(&TxKind::WEIGHTS)
            .and_then(|i| TxKind::ALL.get(i).copied())
            .unwrap_or(TxKind::Put);
        if kind == TxKind::Replay && self.acked_recent.is_empty() {
            TxKind::Put
        } else {
            kind
        }
    }
}

/// The state key of kv key `k`.
pub fn kv_key(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// The namespaced state key of kv key `k` (as the ledger stores it).
pub fn kv_state_key(k: u32) -> Vec<u8> {
    namespaced_key("kv", &kv_key(k))
}

/// Builds one transaction of `kind` (not `Replay`). `read_version` is the version of `key`
/// the target node has now (read-modify-write only).
pub fn build_tx(
    net: &TestNetwork,
    user: &TestIdentity,
    kind: TxKind,
    key: u32,
    value: &[u8],
    read_version: Option<Version>,
    rng: &mut SimRng,
) -> Transaction {
    let orgs = net.orgs.len();
    let majority = orgs / 2 + 1;
    let mut nodes = net.all_endorsers();
    rng.shuffle(&mut nodes);
    let k = kv_key(key);
    let count = match kind {
        TxKind::PolicyFailure => usize::try_from(rng.range(1, majority as u64 - 1)).unwrap_or(1),
        _ => usize::try_from(rng.range(majority as u64, orgs as u64)).unwrap_or(orgs),
    };
    nodes.truncate(count.max(1));
    let mut b = net
        .tx(user)
        .args(vec![k.clone(), value.to_vec()])
        .writes(vec![put("kv", &k, value)]);
    if kind == TxKind::ReadModifyWrite {
        b = b.function("rmw").reads(vec![read("kv", &k, read_version)]);
    }
    if kind == TxKind::UserAsEndorser {
        nodes.push(user);
    }
    let mut tx = b.endorsers(nodes).build();
    if kind == TxKind::ForgedEndorsement
        && let Some(i) = rng.index(tx.endorsements.len())
        && let Some(e) = tx.endorsements.get_mut(i)
    {
        // The client signs in the node's place.
        *e = sphr_types::Endorsement::single(
            e.endorser.clone(),
            endorse(user, &tx.response).signature,
        );
    }
    tx
}

/// The tx id of a transaction (hash of its proposal header).
pub fn tx_id(tx: &Transaction) -> Option<Hash32> {
    tx.signed_proposal.decode_proposal().ok().map(|p| p.tx_id())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sphr_types::ValidationCode;

    #[test]
    fn kinds_get_the_codes_they_are_built_for() {
        let net = TestNetwork::new(3, "MAJORITY");
        let dir = tempfile::tempdir().unwrap();
        let ledger = net.open_ledger(dir.path());
        let c = Client::new(&net, 0, 1);
        let mut rng = SimRng::new(5);
        let kinds = [
            (TxKind::Put, ValidationCode::Valid),
            (TxKind::ReadModifyWrite, ValidationCode::Valid),
            (
                TxKind::PolicyFailure,
                ValidationCode::EndorsementPolicyFailure,
            ),
            (
                TxKind::ForgedEndorsement,
                ValidationCode::BadEndorsementSignature,
            ),
            (
                TxKind::UserAsEndorser,
                ValidationCode::BadEndorsementSignature,
            ),
        ];
        for (i, (kind, want)) in kinds.into_iter().enumerate() {
            let version = ledger.get_state(&kv_state_key(1)).unwrap().map(|(v, _)| v);
            let tx = build_tx(&net, &c.user, kind, 1, b"v", version, &mut rng);
            let batch = net.batch(&[tx]);
            let got = ledger.commit_batch(i as u64 + 1, &batch).unwrap();
            assert_eq!(got.block().unwrap().txs[0].code, want, "{kind:?}");
        }
        // A read at a stale version conflicts.
        let tx = build_tx(
            &net,
            &c.user,
            TxKind::ReadModifyWrite,
            1,
            b"w",
            None,
            &mut rng,
        );
        let got = ledger.commit_batch(10, &net.batch(&[tx])).unwrap();
        assert_eq!(
            got.block().unwrap().txs[0].code,
            ValidationCode::MvccReadConflict
        );
    }
}

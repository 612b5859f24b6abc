//! Counters of the p2p layer, shared by the handle, the swarm task and the codecs
//! (which run in libp2p's connection tasks), read without going through the swarm task.
//!
//! The node exports [`P2pStats::samples`] as Prometheus metrics named
//! `sphr_p2p_<what>[_total]`; the only labels are bounded: the `reason` of a bad message and
//! the gossip `topic`.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::BadReason;

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub peers_connected: AtomicU64,
    pub peers_refused_total: AtomicU64,
    pub connections_limited_total: AtomicU64,
    pub bad_messages: [AtomicU64; 5],
    pub messages_in_total: AtomicU64,
    pub messages_out_total: AtomicU64,
    pub inbound_busy_total: AtomicU64,
    pub raft_dropped_total: AtomicU64,
    pub raft_streams_opened_total: AtomicU64,
    pub endorse_streams_opened_total: AtomicU64,
    pub requests_failed_total: AtomicU64,
    pub dials_total: AtomicU64,
    pub gossip_peers_blocks: AtomicU64,
    pub gossip_peers_txs: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: usize) {
        gauge.store(u64::try_from(value).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn bad(&self, reason: BadReason) {
        Self::inc(&self.bad_messages[reason.index()]);
    }

    pub fn snapshot(&self) -> P2pStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let by = |r: BadReason| get(&self.bad_messages[r.index()]);
        let bad_messages = BadMessages {
            wrong_network: by(BadReason::WrongNetwork),
            unknown_kind: by(BadReason::UnknownKind),
            undecodable: by(BadReason::Undecodable),
            oversized: by(BadReason::Oversized),
            not_allowed: by(BadReason::NotAllowed),
        };
        P2pStats {
            peers_connected: get(&self.peers_connected),
            peers_refused_total: get(&self.peers_refused_total),
            connections_limited_total: get(&self.connections_limited_total),
            bad_messages_total: BadReason::ALL.iter().map(|r| by(*r)).sum(),
            bad_messages,
            messages_in_total: get(&self.messages_in_total),
            messages_out_total: get(&self.messages_out_total),
            inbound_busy_total: get(&self.inbound_busy_total),
            raft_dropped_total: get(&self.raft_dropped_total),
            raft_streams_opened_total: get(&self.raft_streams_opened_total),
            endorse_streams_opened_total: get(&self.endorse_streams_opened_total),
            requests_failed_total: get(&self.requests_failed_total),
            dials_total: get(&self.dials_total),
            gossip_peers_blocks: get(&self.gossip_peers_blocks),
            gossip_peers_txs: get(&self.gossip_peers_txs),
        }
    }
}

/// `bad_messages_total`, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BadMessages {
    /// Another network's id.
    pub wrong_network: u64,
    /// An unknown kind, or not the protocol's or topic's kind.
    pub unknown_kind: u64,
    /// Not a CBOR envelope.
    pub undecodable: u64,
    /// Over the size limit.
    pub oversized: u64,
    /// Gossip from or through a peer outside the allow-list.
    pub not_allowed: u64,
}

/// A snapshot of the p2p counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct P2pStats {
    /// Allowed peers with at least one connection (gauge).
    pub peers_connected: u64,
    /// Connections refused after the handshake because the peer is not in the allow-list.
    pub peers_refused_total: u64,
    /// Connections refused by a connection limit (pending handshakes, per peer, total).
    pub connections_limited_total: u64,
    /// Frames and gossip messages dropped, all reasons.
    pub bad_messages_total: u64,
    /// The same, by reason.
    pub bad_messages: BadMessages,
    /// Requests, Raft messages and gossip handed to the node, and responses received.
    pub messages_in_total: u64,
    /// Requests, Raft messages and gossip sent, and responses sent.
    pub messages_out_total: u64,
    /// Inbound requests answered "busy" (inbound queue full) and gossip the node could not
    /// take (forwarded all the same).
    pub inbound_busy_total: u64,
    /// Raft messages dropped before sending (peer not connected, queue full, stream
    /// failed) or not acknowledged (a `/sphr/raft/1` peer).
    pub raft_dropped_total: u64,
    /// Raft streams (`/sphr/raft/2`) opened to peers: one per peer while its connection
    /// lasts; a rising count means streams fail.
    pub raft_streams_opened_total: u64,
    /// Endorse request streams (`/sphr/endorse/2`) opened to peers: one per peer while its
    /// connection lasts; a rising count means streams fail.
    pub endorse_streams_opened_total: u64,
    /// Outbound requests that ended in an error (timeout, connection closed, refused).
    pub requests_failed_total: u64,
    /// Dials started.
    pub dials_total: u64,
    /// Connected peers subscribed to the blocks topic (gauge).
    pub gossip_peers_blocks: u64,
    /// Connected peers subscribed to the txs topic (gauge).
    pub gossip_peers_txs: u64,
}

/// One Prometheus sample: a metric name, at most one bounded label, a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// `sphr_p2p_...`.
    pub name: &'static str,
    /// `(label name, label value)`: the `reason` of bad messages, the gossip `topic`.
    pub label: Option<(&'static str, &'static str)>,
    /// Counters only grow; gauges are marked by a name without `_total`.
    pub value: u64,
}

impl P2pStats {
    /// The counters as Prometheus samples.
    pub fn samples(&self) -> Vec<Sample> {
        let b = &self.bad_messages;
        vec![
            Sample {
                name: "sphr_p2p_peers_connected",
                label: None,
                value: self.peers_connected,
            },
            Sample {
                name: "sphr_p2p_peers_refused_total",
                label: None,
                value: self.peers_refused_total,
            },
            Sample {
                name: "sphr_p2p_connections_limited_total",
                label: None,
                value: self.connections_limited_total,
            },
            Sample {
                name: "sphr_p2p_bad_messages_total",
                label: Some(("reason", "wrong_network")),
                value: b.wrong_network,
            },
            Sample {
                name: "sphr_p2p_bad_messages_total",
                label: Some(("reason", "unknown_kind")),
                value: b.unknown_kind,
            },
            Sample {
                name: "sphr_p2p_bad_messages_total",
                label: Some(("reason", "undecodable")),
                value: b.undecodable,
            },
            Sample {
                name: "sphr_p2p_bad_messages_total",
                label: Some(("reason", "oversized")),
                value: b.oversized,
            },
            Sample {
                name: "sphr_p2p_bad_messages_total",
                label: Some(("reason", "not_allowed")),
                value: b.not_allowed,
            },
            Sample {
                name: "sphr_p2p_messages_in_total",
                label: None,
                value: self.messages_in_total,
            },
            Sample {
                name: "sphr_p2p_messages_out_total",
                label: None,
                value: self.messages_out_total,
            },
            Sample {
                name: "sphr_p2p_inbound_busy_total",
                label: None,
                value: self.inbound_busy_total,
            },
            Sample {
                name: "sphr_p2p_raft_dropped_total",
                label: None,
                value: self.raft_dropped_total,
            },
            Sample {
                name: "sphr_p2p_raft_streams_opened_total",
                label: None,
                value: self.raft_streams_opened_total,
            },
            Sample {
                name: "sphr_p2p_endorse_streams_opened_total",
                label: None,
                value: self.endorse_streams_opened_total,
            },
            Sample {
                name: "sphr_p2p_requests_failed_total",
                label: None,
                value: self.requests_failed_total,
            },
            Sample {
                name: "sphr_p2p_dials_total",
                label: None,
                value: self.dials_total,
            },
            Sample {
                name: "sphr_p2p_gossip_peers",
                label: Some(("topic", "blocks")),
                value: self.gossip_peers_blocks,
            },
            Sample {
                name: "sphr_p2p_gossip_peers",
                label: Some(("topic", "txs")),
                value: self.gossip_peers_txs,
            },
        ]
    }
}

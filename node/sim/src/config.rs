//! What one run looks like: everything is derived from the seed by [`SimConfig::for_seed`],
//! so a seed number alone reproduces a run.
//!
//! ```text
//!  seed ─fork("config")─> nodes (3 or 5), clients, cutter max_tx, snapshot interval,
//!                         network profile (drop / duplicate / slow per mille, latency),
//!                         fault profile (how often, what kind)
//! ```
//!
//! Time is virtual, in milliseconds. `fault_ms` is the length of the phase with faults and
//! client load; `settle_ms_max` bounds the quiet phase after it (network healed, every node
//! restarted, no new transactions) in which the cluster must converge.

use crate::rng::SimRng;

/// How the simulated network misbehaves during the fault phase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetProfile {
    /// Messages dropped, per mille.
    pub drop_per_mille: u32,
    /// Messages delivered twice, per mille.
    pub dup_per_mille: u32,
    /// Messages delayed by an extra `[slow_min_ms, slow_max_ms]`, per mille (reordering).
    pub slow_per_mille: u32,
    /// Shortest one-way latency.
    pub latency_min_ms: u64,
    /// Longest ordinary one-way latency.
    pub latency_max_ms: u64,
    /// Shortest extra delay of a slow message.
    pub slow_min_ms: u64,
    /// Longest extra delay of a slow message.
    pub slow_max_ms: u64,
}

/// How often faults strike during the fault phase, and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultProfile {
    /// Shortest time between two fault decisions.
    pub interval_min_ms: u64,
    /// Longest time between two fault decisions.
    pub interval_max_ms: u64,
    /// Weight of: nothing happens.
    pub w_nothing: u32,
    /// Weight of: a random node crashes.
    pub w_crash: u32,
    /// Weight of: the leader crashes.
    pub w_crash_leader: u32,
    /// Weight of: one node is cut off (both ways).
    pub w_isolate: u32,
    /// Weight of: the nodes split into two groups.
    pub w_split: u32,
    /// Weight of: one direction of one link goes down.
    pub w_one_way: u32,
    /// Weight of: every partition heals.
    pub w_heal: u32,
    /// Weight of: every node crashes at once (all restart later).
    pub w_crash_all: u32,
    /// Weight of: a node (the leader half of the time) freezes, as under SIGSTOP or a long
    /// GC or disk stall: it handles nothing until it resumes, then finds its queue.
    pub w_pause: u32,
    /// Longest pause.
    pub pause_max_ms: u64,
    /// Weights of where a crash strikes: at once (between events), or inside one of the
    /// node's coming Readies: after the leader messages, after the write, after the votes
    /// and append responses, after the first applied entry, after storing a snapshot (the
    /// node with the lowest height is picked for this one: it is the one that gets
    /// snapshots).
    pub crash_points: [u32; 6],
    /// How long a planned mid-Ready crash waits for its point before striking anyway.
    pub armed_max_ms: u64,
    /// Shortest downtime of a crashed node.
    pub down_min_ms: u64,
    /// Longest downtime of a crashed node.
    pub down_max_ms: u64,
}

/// A deliberately broken node behaviour, to show that the checkers catch it.
#[cfg(feature = "bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// When node `node` applies the entry that should make its block `at_block`, it feeds
    /// the ledger the previous entry's bytes again (a stale buffer): that entry is applied
    /// twice and the right one never. The applied index still moves correctly, so the
    /// orderer's applier-contract check does not see it; the block at `at_block` differs
    /// from the other nodes'.
    ReapplyPrevious {
        /// Raft id of the broken node.
        node: u64,
        /// Block number at which it goes wrong (2 or more).
        at_block: u64,
    },
    /// Every node sends its votes and append responses (raft-rs's "persisted messages")
    /// with the leader messages, before writing entries and hard state: the ordering the
    /// driver exists to prevent. A crash between sending and writing then forgets a vote or
    /// an acknowledged entry.
    AckBeforePersist,
}

/// The parameters of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The seed everything is derived from.
    pub seed: u64,
    /// Consenters (each an org with one `peer0` in the test network).
    pub nodes: usize,
    /// Clients submitting transactions.
    pub clients: usize,
    /// Length of the phase with faults and load (virtual ms).
    pub fault_ms: u64,
    /// Longest quiet phase after it, in which the cluster must converge (virtual ms).
    pub settle_ms_max: u64,
    /// Raft tick (virtual ms).
    pub tick_ms: u64,
    /// Ticks without a leader before a follower campaigns.
    pub election_ticks: usize,
    /// Ticks between heartbeats.
    pub heartbeat_ticks: usize,
    /// Most transactions per block.
    pub max_tx: usize,
    /// Batch timeout (virtual ms).
    pub batch_timeout_ms: u64,
    /// Leader's in-flight proposal bound.
    pub max_inflight_proposals: usize,
    /// Snapshot and compact every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept behind a snapshot.
    pub snapshot_catchup_entries: u64,
    /// Shortest time between two submissions of one client (virtual ms).
    pub submit_min_ms: u64,
    /// Longest time between two submissions of one client (virtual ms).
    pub submit_max_ms: u64,
    /// A client that saw no commit after this long resubmits or gives up (virtual ms).
    pub client_timeout_ms: u64,
    /// Keys the kv transactions touch (few keys: conflicts).
    pub keys: u32,
    /// The network during the fault phase.
    pub net: NetProfile,
    /// The faults during the fault phase.
    pub faults: FaultProfile,
    /// A deliberately broken node, if any.
    #[cfg(feature = "bugs")]
    pub bug: Option<Bug>,
}

impl SimConfig {
    /// The run of `seed`: even seeds run 3 consenters, odd seeds 5; chaos levels are drawn
    /// from the seed, from calm to nasty.
    pub fn for_seed(seed: u64) -> Self {
        let mut r = SimRng::fork(seed, "config");
        let nodes = if seed.is_multiple_of(2) { 3 } else { 5 };
        let calm = r.per_mille(150);
        let net = if calm {
            NetProfile {
                drop_per_mille: 0,
                dup_per_mille: 0,
                slow_per_mille: 10,
                latency_min_ms: 1,
                latency_max_ms: 5,
                slow_min_ms: 20,
                slow_max_ms: 100,
            }
        } else {
            NetProfile {
                drop_per_mille: r.range(0, 120) as u32,
                dup_per_mille: r.range(0, 60) as u32,
                slow_per_mille: r.range(0, 150) as u32,
                latency_min_ms: 1,
                latency_max_ms: r.range(3, 40),
                slow_min_ms: 30,
                slow_max_ms: r.range(100, 1500),
            }
        };
        let faults = FaultProfile {
            interval_min_ms: 300,
            interval_max_ms: r.range(800, 3000),
            w_nothing: r.range(2, 8) as u32,
            w_crash: r.range(1, 4) as u32,
            w_crash_leader: r.range(1, 4) as u32,
            w_isolate: r.range(0, 3) as u32,
            w_split: r.range(0, 2) as u32,
            w_one_way: r.range(0, 2) as u32,
            w_heal: r.range(1, 4) as u32,
            w_crash_all: u32::from(r.per_mille(300)),
            crash_points: [3, 1, 1, 1, 1, 1],
            armed_max_ms: 3000,
            w_pause: r.range(0, 3) as u32,
            pause_max_ms: r.range(500, 5000),
            down_min_ms: 100,
            down_max_ms: r.range(1000, 6000),
        };
        SimConfig {
            seed,
            nodes,
            clients: 3,
            fault_ms: 20_000,
            settle_ms_max: 60_000,
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_tx: r.range(1, 8) as usize,
            batch_timeout_ms: 20,
            max_inflight_proposals: r.range(1, 16) as usize,
            snapshot_interval: r.range(8, 40),
            snapshot_catchup_entries: r.range(1, 8),
            submit_min_ms: 30,
            submit_max_ms: r.range(150, 400),
            client_timeout_ms: 4_000,
            keys: r.range(2, 12) as u32,
            net,
            faults,
            #[cfg(feature = "bugs")]
            bug: None,
        }
    }

    /// The network once healed (settle phase): no loss, no duplicates, short delays.
    pub fn calm_net(&self) -> NetProfile {
        NetProfile {
            drop_per_mille: 0,
            dup_per_mille: 0,
            slow_per_mille: 0,
            latency_min_ms: 1,
            latency_max_ms: 5,
            slow_min_ms: 0,
            slow_max_ms: 0,
        }
    }
}

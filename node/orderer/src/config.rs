//! Orderer configuration: block cutting, Raft timing, snapshots and the bounds on every queue.
//!
//! The node builds an [`OrdererConfig`] from genesis (voters, cutting and Raft parameters) and
//! its own `node.toml` (queue sizes); [`OrdererConfig::validate`] names the first bad field.
//! Durations are (de)serialised as integer milliseconds so that a TOML section reads
//! `tick_ms = 100`-style values through the `*_ms` serde names.
//!
//! ```text
//!   genesis ──> id, voters, max_tx, max_bytes, batch_timeout, election/heartbeat ticks
//!   node.toml ─> tick, input_capacity, max_pending_txs, max_inflight_proposals, ...
//!                  │
//!                  v
//!            OrdererConfig::validate() ──> start()
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest number of voters accepted: the cluster is a handful of consenters, and raft-rs
/// broadcasts to every voter on each heartbeat.
pub const MAX_VOTERS: usize = 64;

/// A field of [`OrdererConfig`] holds a value the orderer cannot run with.
///
/// What follows: the node refuses to start and prints the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid orderer config `{field}`: {reason}")]
pub struct ConfigError {
    /// The name of the bad field, as written in [`OrdererConfig`].
    pub field: &'static str,
    /// Why the value was refused.
    pub reason: String,
}

impl ConfigError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

/// Parameters of one orderer (one Raft member).
///
/// Time is counted in ticks of `tick`: an election starts after a random
/// `[election_ticks, 2 * election_ticks)` ticks without a leader, the leader sends heartbeats
/// every `heartbeat_ticks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdererConfig {
    /// This member's Raft id (non-zero, one of `voters`).
    pub id: u64,
    /// All Raft voters, from genesis. Static membership: a fresh log is bootstrapped with them,
    /// and a reopened log must name the same set.
    pub voters: Vec<u64>,
    /// Length of one Raft tick.
    #[serde(rename = "tick_ms", with = "millis")]
    pub tick: Duration,
    /// Ticks without hearing from a leader before a follower campaigns (raft `election_tick`).
    pub election_ticks: usize,
    /// Ticks between leader heartbeats (raft `heartbeat_tick`); less than `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Most transactions in one batch (one block).
    pub max_tx: usize,
    /// Most transaction bytes in one batch (sum of the tx lengths); also the largest single
    /// transaction `submit` accepts.
    pub max_bytes: usize,
    /// Longest time a batch stays open after its first transaction.
    #[serde(rename = "batch_timeout_ms", with = "millis")]
    pub batch_timeout: Duration,
    /// Take a snapshot (and compact the log) every this many applied entries.
    pub snapshot_interval: u64,
    /// Entries kept in the log behind a snapshot, so that a follower slightly behind catches
    /// up from the log rather than from a snapshot (Fabric's `SnapshotCatchUpEntries`).
    pub snapshot_catchup_entries: u64,
    /// Capacity of the driver's single input queue (transactions and Raft messages).
    pub input_capacity: usize,
    /// Most transactions accepted by `submit` and not yet proposed or forwarded (in the
    /// input queue, the block cutter, the batches waiting for a proposal slot and the follower
    /// forward buffer). `submit` returns `Full` past it: this is the back-pressure.
    pub max_pending_txs: usize,
    /// Most transactions a follower holds while no leader is known; more are dropped (counted
    /// in `RaftStatus::txs_dropped`).
    pub forward_buffer_txs: usize,
    /// Most proposals (blocks) appended by this leader and not yet committed. When reached,
    /// cut batches wait (bounded by `max_pending_txs`), so a slow disk or follower slows the
    /// intake instead of growing memory.
    pub max_inflight_proposals: usize,
    /// Most bytes of entries in one append message (raft `max_size_per_msg`; one entry is
    /// always sent even if larger).
    pub max_msg_bytes: u64,
    /// Most in-flight append messages per follower (raft `max_inflight_msgs`).
    pub max_inflight_msgs: usize,
    /// Most bytes of committed entries handed to the applier in one `Ready`.
    pub max_committed_bytes_per_ready: u64,
    /// Most jobs (the committed entries of one `Ready` each) queued for the apply thread;
    /// when full, the Raft thread waits. Memory: at most this many times
    /// `max_committed_bytes_per_ready`, in practice a block or two per job.
    pub apply_queue: usize,
}

impl Default for OrdererConfig {
    fn default() -> Self {
        Self {
            id: 1,
            voters: vec![1],
            tick: Duration::from_millis(100),
            election_ticks: 10,
            heartbeat_ticks: 1,
            max_tx: 100,
            max_bytes: 2 * 1024 * 1024,
            batch_timeout: Duration::from_millis(20),
            snapshot_interval: 1024,
            snapshot_catchup_entries: 64,
            input_capacity: 4096,
            max_pending_txs: 20_000,
            forward_buffer_txs: 10_000,
            max_inflight_proposals: 16,
            max_msg_bytes: 1024 * 1024,
            max_inflight_msgs: 256,
            max_committed_bytes_per_ready: 16 * 1024 * 1024,
            apply_queue: 8,
        }
    }
}

impl OrdererConfig {
    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(ConfigError::new("id", "must be non-zero"));
        }
        if self.voters.is_empty() {
            return Err(ConfigError::new("voters", "must name at least one voter"));
        }
        if self.voters.len() > MAX_VOTERS {
            return Err(ConfigError::new(
                "voters",
                format!("at most {MAX_VOTERS} voters, got {}", self.voters.len()),
            ));
        }
        if self.voters.contains(&0) {
            return Err(ConfigError::new("voters", "voter id 0 is invalid"));
        }
        let mut sorted = self.voters.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(ConfigError::new("voters", "duplicate voter id"));
        }
        if !self.voters.contains(&self.id) {
            return Err(ConfigError::new(
                "id",
                format!("{} is not one of the voters {:?}", self.id, self.voters),
            ));
        }
        if self.tick < Duration::from_millis(1) || self.tick > Duration::from_secs(10) {
            return Err(ConfigError::new("tick", "must be within 1 ms ..= 10 s"));
        }
        if self.heartbeat_ticks == 0 {
            return Err(ConfigError::new("heartbeat_ticks", "must be at least 1"));
        }
        if self.election_ticks <= self.heartbeat_ticks {
            return Err(ConfigError::new(
                "election_ticks",
                "must be greater than heartbeat_ticks",
            ));
        }
        if self.election_ticks > 10_000 {
            return Err(ConfigError::new("election_ticks", "must be at most 10000"));
        }
        if self.max_tx == 0 {
            return Err(ConfigError::new("max_tx", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::new("max_bytes", "must be at least 1"));
        }
        if self.batch_timeout.is_zero() || self.batch_timeout > Duration::from_secs(60) {
            return Err(ConfigError::new(
                "batch_timeout",
                "must be within (0, 60 s]",
            ));
        }
        if self.snapshot_interval == 0 {
            return Err(ConfigError::new("snapshot_interval", "must be at least 1"));
        }
        if self.snapshot_catchup_entries >= self.snapshot_interval {
            return Err(ConfigError::new(
                "snapshot_catchup_entries",
                "must be less than snapshot_interval",
            ));
        }
        if self.input_capacity == 0 {
            return Err(ConfigError::new("input_capacity", "must be at least 1"));
        }
        if self.max_pending_txs == 0 {
            return Err(ConfigError::new("max_pending_txs", "must be at least 1"));
        }
        if self.max_inflight_proposals == 0 {
            return Err(ConfigError::new(
                "max_inflight_proposals",
                "must be at least 1",
            ));
        }
        if self.max_msg_bytes == 0 {
            return Err(ConfigError::new("max_msg_bytes", "must be at least 1"));
        }
        if self.max_inflight_msgs == 0 {
            return Err(ConfigError::new("max_inflight_msgs", "must be at least 1"));
        }
        if self.max_committed_bytes_per_ready == 0 {
            return Err(ConfigError::new(
                "max_committed_bytes_per_ready",
                "must be at least 1",
            ));
        }
        if self.apply_queue == 0 {
            return Err(ConfigError::new("apply_queue", "must be at least 1"));
        }
        Ok(())
    }

    /// The longest time a follower waits for a leader before campaigning: raft-rs randomises
    /// the election timeout in `[election_ticks, 2 * election_ticks)` ticks.
    pub fn max_election_timeout(&self) -> Duration {
        let ticks = u32::try_from(self.election_ticks.saturating_mul(2)).unwrap_or(u32::MAX);
        self.tick.saturating_mul(ticks)
    }
}

/// `Duration` as integer milliseconds in serde.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(c: &OrdererConfig) -> &'static str {
        c.validate().expect_err("must be refused").field
    }

    #[test]
    fn default_is_valid() {
        OrdererConfig::default().validate().unwrap();
    }

    #[test]
    fn names_the_bad_field() {
        let ok = OrdererConfig {
            id: 2,
            voters: vec![1, 2, 3],
            ..OrdererConfig::default()
        };
        ok.validate().unwrap();

        let cases: Vec<(OrdererConfig, &str)> = vec![
            (
                OrdererConfig {
                    id: 0,
                    ..ok.clone()
                },
                "id",
            ),
            (
                OrdererConfig {
                    id: 9,
                    ..ok.clone()
                },
                "id",
            ),
            (
                OrdererConfig {
                    voters: vec![],
                    ..ok.clone()
                },
                "voters",
            ),
            (
                OrdererConfig {
                    voters: vec![1, 2, 2],
                    ..ok.clone()
                },
                "voters",
            ),
            (
                OrdererConfig {
                    voters: vec![0, 2],
                    ..ok.clone()
                },
                "voters",
            ),
            (
                OrdererConfig {
                    tick: Duration::ZERO,
                    ..ok.clone()
                },
                "tick",
            ),
            (
                OrdererConfig {
                    heartbeat_ticks: 0,
                    ..ok.clone()
                },
                "heartbeat_ticks",
            ),
            (
                OrdererConfig {
                    election_ticks: 1,
                    heartbeat_ticks: 1,
                    ..ok.clone()
                },
                "election_ticks",
            ),
            (
                OrdererConfig {
                    max_tx: 0,
                    ..ok.clone()
                },
                "max_tx",
            ),
            (
                OrdererConfig {
                    max_bytes: 0,
                    ..ok.clone()
                },
                "max_bytes",
            ),
            (
                OrdererConfig {
                    batch_timeout: Duration::ZERO,
                    ..ok.clone()
                },
                "batch_timeout",
            ),
            (
                OrdererConfig {
                    snapshot_interval: 0,
                    ..ok.clone()
                },
                "snapshot_interval",
            ),
            (
                OrdererConfig {
                    snapshot_interval: 4,
                    snapshot_catchup_entries: 4,
                    ..ok.clone()
                },
                "snapshot_catchup_entries",
            ),
            (
                OrdererConfig {
                    input_capacity: 0,
                    ..ok.clone()
                },
                "input_capacity",
            ),
            (
                OrdererConfig {
                    max_pending_txs: 0,
                    ..ok.clone()
                },
                "max_pending_txs",
            ),
            (
                OrdererConfig {
                    max_inflight_proposals: 0,
                    ..ok.clone()
                },
                "max_inflight_proposals",
            ),
            (
                OrdererConfig {
                    max_msg_bytes: 0,
                    ..ok.clone()
                },
                "max_msg_bytes",
            ),
            (
                OrdererConfig {
                    max_inflight_msgs: 0,
                    ..ok.clone()
                },
                "max_inflight_msgs",
            ),
            (
                OrdererConfig {
                    apply_queue: 0,
                    ..ok.clone()
                },
                "apply_queue",
            ),
            (
                OrdererConfig {
                    max_committed_bytes_per_ready: 0,
                    ..ok.clone()
                },
                "max_committed_bytes_per_ready",
            ),
        ];
        for (cfg, want) in cases {
            assert_eq!(field_of(&cfg), want, "{cfg:?}");
        }
    }

    #[test]
    fn max_election_timeout_is_twice_election_ticks() {
        let c = OrdererConfig {
            tick: Duration::from_millis(10),
            election_ticks: 10,
            ..OrdererConfig::default()
        };
        assert_eq!(c.max_election_timeout(), Duration::from_millis(200));
    }
}

//! The p2p configuration: our key, where we listen, the network id, the allowed peers (the
//! genesis nodes) and the limits.
//!
//! The node builds [`P2pConfig`] from its genesis block and its TOML; [`P2pLimits`] can be a
//! TOML section of its own (`#[serde(default, deny_unknown_fields)]`, units last in names).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Why a configuration was refused. What follows: the node does not start; fix the key named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A limit is out of range.
    #[error("p2p.{key}: {reason}")]
    Limit {
        /// The [`P2pLimits`] field.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An address is not `host:port` or does not resolve.
    #[error("{key}: bad address {addr:?}: {reason}")]
    Address {
        /// `listen` or `peers[<name>].addr`.
        key: String,
        /// The address as given.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A peer's public key is not a valid (non-weak) ed25519 key.
    #[error("peers[{name}].public_key: {reason}")]
    PeerKey {
        /// The peer's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two peers have the same public key.
    #[error("peers[{name}].public_key: listed twice")]
    DuplicatePeer {
        /// The second peer's name.
        name: String,
    },
    /// Our own key could not be used as a libp2p identity.
    #[error("key_seed: {0}")]
    Key(String),
}

/// A genesis node we may talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// A name for logs (the node's subject id or org).
    pub name: String,
    /// The node's ed25519 public key: its libp2p identity.
    pub public_key: [u8; 32],
    /// Where it listens, `host:port` (an IP or a name resolved once at start). Port 0 means
    /// "not known": we do not dial it, it dials us (or [`crate::P2pHandle::set_peer_addr`]
    /// gives the address later).
    pub addr: String,
}

/// Everything [`crate::P2p::start`] needs.
pub struct P2pConfig {
    /// Our ed25519 seed (`sphr_crypto::keys::SecretKey::to_bytes`): our libp2p identity.
    pub key_seed: Zeroizing<[u8; 32]>,
    /// Where to listen, `host:port`; port 0 picks a free port (see
    /// [`crate::P2pHandle::local_addr`]).
    pub listen: String,
    /// The genesis hash: every message carries it, every message without it is dropped.
    pub network_id: [u8; 32],
    /// The allowed peers: the genesis nodes. An entry with our own key is skipped, so the
    /// genesis list can be passed as it is.
    pub peers: Vec<PeerInfo>,
    /// Sizes, queues, timeouts.
    pub limits: P2pLimits,
}

impl std::fmt::Debug for P2pConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P2pConfig")
            .field("key_seed", &"<secret>")
            .field("listen", &self.listen)
            .field("network_id", &hex::encode(self.network_id))
            .field("peers", &self.peers)
            .field("limits", &self.limits)
            .finish()
    }
}

/// Limits on everything the p2p layer holds or accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pLimits {
    /// Largest body of an endorse or Raft request or response, and of a txs gossip message.
    pub max_message_bytes: usize,
    /// Largest body of a blocks request or response, and of a blocks gossip message.
    pub max_block_message_bytes: usize,
    /// Capacity of the [`crate::Inbound`] channel to the node; when full, requests are
    /// answered "busy".
    pub inbound_queue: usize,
    /// Capacity of the queue from the handles to the swarm task; when full, Raft messages
    /// are dropped and other calls fail with `QueueFull`.
    pub command_queue: usize,
    /// Outbound requests (all kinds) waiting for an answer from one peer, and Raft messages
    /// queued for one peer's Raft stream; beyond this, Raft messages are dropped and
    /// requests fail with `QueueFull`.
    pub max_in_flight_per_peer: usize,
    /// Inbound requests handed to the node and not answered yet, all peers together;
    /// beyond this, requests are answered "busy".
    pub max_pending_replies: usize,
    /// Timeout of an endorse request, both ways: how long we wait for a peer, and how long
    /// a peer's request may take on our side (our node gets 90% of it to answer, so the
    /// requester hears "did not answer in time" rather than a dropped stream).
    pub request_timeout_ms: u64,
    /// Timeout of a Raft message: how long frames on a Raft stream may go unacknowledged
    /// (acks come every 100 ms) or a `/sphr/raft/1` request unanswered, before the
    /// connection is closed as dead.
    pub raft_timeout_ms: u64,
    /// Timeout of a blocks request.
    pub blocks_timeout_ms: u64,
    /// Concurrent streams per connection and protocol; inbound and outbound share it, so it
    /// must be at least twice `max_in_flight_per_peer` (past it libp2p fails a request at once
    /// instead of queueing it).
    pub max_streams_per_connection: usize,
    /// Incoming connections still in their handshake (the allow-list check comes after it).
    pub max_pending_incoming: u32,
    /// Connections to one peer (2 lets two peers that dial each other at once keep both).
    pub max_connections_per_peer: u32,
    /// First delay before redialing a peer whose connection dropped.
    pub redial_min_ms: u64,
    /// Longest delay between redials (the delay doubles from `redial_min_ms`).
    pub redial_max_ms: u64,
}

impl Default for P2pLimits {
    fn default() -> Self {
        P2pLimits {
            max_message_bytes: 4 << 20,
            max_block_message_bytes: 16 << 20,
            inbound_queue: 1024,
            command_queue: 1024,
            max_in_flight_per_peer: 256,
            max_pending_replies: 1024,
            request_timeout_ms: 10_000,
            raft_timeout_ms: 5_000,
            blocks_timeout_ms: 30_000,
            max_streams_per_connection: 512,
            max_pending_incoming: 16,
            max_connections_per_peer: 2,
            redial_min_ms: 100,
            redial_max_ms: 5_000,
        }
    }
}

/// Frames are u32-length-prefixed: nothing larger can be sent.
const MAX_FRAME_BODY: usize = (u32::MAX as usize) - crate::wire::ENVELOPE_OVERHEAD;

impl P2pLimits {
    /// Checks every limit; the error names the bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, reason: &str| {
            Err(ConfigError::Limit {
                key,
                reason: reason.to_string(),
            })
        };
        if self.max_message_bytes == 0 || self.max_message_bytes > MAX_FRAME_BODY {
            return bad("max_message_bytes", "must be 1 ..= 4 GiB - 128");
        }
        if self.max_block_message_bytes < self.max_message_bytes
            || self.max_block_message_bytes > MAX_FRAME_BODY
        {
            return bad(
                "max_block_message_bytes",
                "must be at least max_message_bytes and at most 4 GiB - 128",
            );
        }
        for (key, v) in [
            ("inbound_queue", self.inbound_queue),
            ("command_queue", self.command_queue),
            ("max_in_flight_per_peer", self.max_in_flight_per_peer),
            ("max_pending_replies", self.max_pending_replies),
            (
                "max_streams_per_connection",
                self.max_streams_per_connection,
            ),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.max_streams_per_connection < self.max_in_flight_per_peer.saturating_mul(2) {
            return bad(
                "max_streams_per_connection",
                "must be at least twice max_in_flight_per_peer (inbound and outbound share it)",
            );
        }
        for (key, v) in [
            ("request_timeout_ms", self.request_timeout_ms),
            ("raft_timeout_ms", self.raft_timeout_ms),
            ("blocks_timeout_ms", self.blocks_timeout_ms),
            ("redial_min_ms", self.redial_min_ms),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1");
            }
        }
        if self.redial_max_ms < self.redial_min_ms {
            return bad("redial_max_ms", "must be at least redial_min_ms");
        }
        if self.max_pending_incoming == 0 {
            return bad("max_pending_incoming", "must be at least 1");
        }
        if self.max_connections_per_peer == 0 {
            return bad("max_connections_per_peer", "must be at least 1");
        }
        Ok(())
    }

    /// The body limit of a request kind.
    pub fn body_limit(&self, kind: crate::Kind) -> usize {
        match kind {
            crate::Kind::Blocks => self.max_block_message_bytes,
            crate::Kind::Endorse | crate::Kind::Raft => self.max_message_bytes,
        }
    }

    /// The body limit of a gossip topic.
    pub fn topic_limit(&self, topic: crate::Topic) -> usize {
        match topic {
            crate::Topic::Blocks => self.max_block_message_bytes,
            crate::Topic::Txs => self.max_message_bytes,
        }
    }

    /// The timeout of a request kind.
    pub fn timeout(&self, kind: crate::Kind) -> Duration {
        Duration::from_millis(match kind {
            crate::Kind::Endorse => self.request_timeout_ms,
            crate::Kind::Raft => self.raft_timeout_ms,
            crate::Kind::Blocks => self.blocks_timeout_ms,
        })
    }
}

/// A peer after checking: its libp2p id and, when known, its resolved address.
#[derive(Debug, Clone)]
pub(crate) struct CheckedPeer {
    pub name: String,
    pub public_key: [u8; 32],
    pub addr: Option<SocketAddr>,
}

/// Checks the peers: valid distinct keys, our own key skipped, addresses resolved.
pub(crate) async fn check_peers(
    peers: &[PeerInfo],
    own_key: &[u8; 32],
) -> Result<Vec<CheckedPeer>, ConfigError> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(peers.len());
    for p in peers {
        if &p.public_key == own_key {
            continue;
        }
        sphr_crypto::keys::PublicKey(p.public_key)
            .validate()
            .map_err(|e| ConfigError::PeerKey {
                name: p.name.clone(),
                reason: e.to_string(),
            })?;
        if !seen.insert(p.public_key) {
            return Err(ConfigError::DuplicatePeer {
                name: p.name.clone(),
            });
        }
        let addr = resolve(&format!("peers[{}].addr", p.name), &p.addr).await?;
        out.push(CheckedPeer {
            name: p.name.clone(),
            public_key: p.public_key,
            addr: (addr.port() != 0).then_some(addr),
        });
    }
    Ok(out)
}

/// Resolves `host:port` (an IP literal, `[v6]:port`, or a name) to its first address.
pub(crate) async fn resolve(key: &str, addr: &str) -> Result<SocketAddr, ConfigError> {
    let err = |reason: String| ConfigError::Address {
        key: key.to_string(),
        addr: addr.to_string(),
        reason,
    };
    if let Ok(sa) = addr.parse::<SocketAddr>() {
        return Ok(sa);
    }
    if !addr.contains(':') {
        return Err(err("expected host:port".into()));
    }
    let mut found = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| err(e.to_string()))?;
    found
        .next()
        .ok_or_else(|| err("the name resolves to no address".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_valid() {
        P2pLimits::default().validate().unwrap();
    }

    #[test]
    fn bad_limits_name_their_key() {
        let l = P2pLimits {
            redial_max_ms: 1,
            ..P2pLimits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(ConfigError::Limit {
                key: "redial_max_ms",
                ..
            })
        ));
        let l = P2pLimits {
            max_block_message_bytes: 1,
            ..P2pLimits::default()
        };
        assert!(matches!(
            l.validate(),
            Err(ConfigError::Limit {
                key: "max_block_message_bytes",
                ..
            })
        ));
    }

    #[test]
    fn limits_from_toml_refuse_unknown_keys() {
        let l: P2pLimits = toml::from_str("max_message_bytes = 1024").unwrap();
        assert_eq!(l.max_message_bytes, 1024);
        assert_eq!(l.redial_max_ms, 5_000);
        assert!(toml::from_str::<P2pLimits>("max_mesage_bytes = 1").is_err());
    }

    #[tokio::test]
    async fn addresses_resolve_or_say_why() {
        assert_eq!(
            resolve("listen", "127.0.0.1:7000").await.unwrap(),
            "127.0.0.1:7000".parse().unwrap()
        );
        assert_eq!(resolve("listen", "[::1]:7").await.unwrap().port(), 7);
        assert_eq!(resolve("listen", "localhost:9").await.unwrap().port(), 9);
        let e = resolve("listen", "nonsense").await.unwrap_err();
        assert!(matches!(e, ConfigError::Address { .. }), "{e}");
    }

    #[tokio::test]
    async fn peers_are_checked() {
        let own = sphr_crypto::keys::SecretKey::from_bytes(&[1; 32])
            .public_key()
            .0;
        let other = sphr_crypto::keys::SecretKey::from_bytes(&[2; 32])
            .public_key()
            .0;
        let peer = |name: &str, key, addr: &str| PeerInfo {
            name: name.into(),
            public_key: key,
            addr: addr.into(),
        };
        let checked = check_peers(
            &[
                peer("me", own, "127.0.0.1:1"),
                peer("b", other, "127.0.0.1:0"),
            ],
            &own,
        )
        .await
        .unwrap();
        assert_eq!(checked.len(), 1);
        assert_eq!(checked[0].addr, None);
        let dup = check_peers(
            &[
                peer("b", other, "127.0.0.1:1"),
                peer("c", other, "127.0.0.1:2"),
            ],
            &own,
        )
        .await;
        assert!(matches!(dup, Err(ConfigError::DuplicatePeer { .. })));
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let weak = check_peers(&[peer("w", weak, "127.0.0.1:1")], &own).await;
        assert!(matches!(weak, Err(ConfigError::PeerKey { .. })));
    }
}

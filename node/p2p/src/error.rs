//! The errors of the p2p layer's API.

use crate::config::ConfigError;

/// Why a p2p call failed, and what the caller does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pError {
    /// The configuration was refused: the node does not start; fix the key named.
    #[error("p2p configuration: {0}")]
    Config(#[from] ConfigError),
    /// We could not listen (address in use, not ours): the node does not start.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// The system's reason.
        reason: String,
    },
    /// The libp2p transport or behaviour could not be built: a bug or a broken system.
    #[error("cannot build the libp2p swarm: {0}")]
    Build(String),
    /// The peer is not in the allow-list: a caller bug (wrong key); nothing was sent.
    #[error("peer {0} is not in the allow-list")]
    UnknownPeer(String),
    /// The peer is not connected now (it is being redialed): try another peer or later.
    #[error("peer {0} is not connected")]
    NotConnected(String),
    /// A queue is full (ours to the swarm task, or too many requests in flight to the
    /// peer): back off and retry.
    #[error("queue full: {0}")]
    QueueFull(&'static str),
    /// The message is larger than its kind's limit: a caller bug; nothing was sent.
    #[error("message of {len} bytes is over the {limit} byte limit")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit for its kind or topic.
        limit: usize,
    },
    /// No answer in time: the request may or may not have been served; retry or try
    /// another peer.
    #[error("request timed out")]
    Timeout,
    /// The request failed on the way (connection closed, stream error, bad response).
    #[error("request failed: {0}")]
    Failed(String),
    /// The peer's node answered with an error (busy, refused, no answer in time).
    #[error("peer answered with an error: {0}")]
    Remote(String),
    /// No connected peer is subscribed to the topic: the message was not sent.
    #[error("no peer subscribed to the {0} topic")]
    NoPeers(crate::Topic),
    /// The p2p task has stopped (shutdown): no more calls will succeed.
    #[error("the p2p layer is shut down")]
    Shutdown,
}

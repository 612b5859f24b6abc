//! What goes on the wire: envelopes, frames, protocol names and topic names.
//!
//! ```text
//!  request-response stream (one per request)      gossipsub message data
//!  ┌────────────┬──────────────────────────┐      ┌──────────────────────────┐
//!  │ u32 BE len │ CBOR Envelope            │      │ CBOR Envelope            │
//!  └────────────┴──────────────────────────┘      └──────────────────────────┘
//!  the answer on the same stream:
//!  ┌────────────┬──────────────────────────┐
//!  │ u32 BE len │ CBOR ResponseEnvelope    │
//!  └────────────┴──────────────────────────┘
//!
//!  /sphr/raft/2 (one long-lived stream per peer): request frames (kind raft), one after
//!  another; the other way, acks: the count of frames read so far, a u64 BE (8 bytes).
//!
//!  /sphr/endorse/2 (one long-lived stream per peer): each request is a u64 BE id and then a
//!  request frame (kind endorse); each answer, in any order, the id and then a response frame.
//!
//!  Envelope         { network_id: bytes(32), kind: u8, body: bytes }
//!  ResponseEnvelope { network_id: bytes(32), kind: u8, reply: {Ok: bytes} | {Err: text} }
//! ```
//!
//! Each request kind has its own libp2p protocol (so each has its own size limit, checked on
//! the length prefix before a byte of the frame is read, and its own timeout); the envelope
//! says the kind again and must agree with the protocol. Every decode has a size limit and
//! every refusal has a [`BadReason`], which is what `bad_messages_total` is counted by.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// Bytes an envelope adds around its body: a 32-byte id, the kind, map keys and length
/// headers come to about 60 bytes; the rest is slack.
pub const ENVELOPE_OVERHEAD: usize = 128;

/// The longest error text a response carries; longer texts are cut (at a char boundary).
pub const MAX_ERROR_TEXT: usize = 1024;

/// The kinds of request-response exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Endorsement of a proposal (gateway to endorsing peers).
    Endorse,
    /// A Raft message between consenters: frames on the `/sphr/raft/2` stream, or, to a peer
    /// that does not speak it, a `/sphr/raft/1` request answered with an empty ack by the p2p
    /// layer.
    Raft,
    /// A block range fetch (a node catching up).
    Blocks,
}

impl Kind {
    /// Every kind, in wire-code order.
    pub const ALL: [Kind; 3] = [Kind::Endorse, Kind::Raft, Kind::Blocks];

    /// The kind's code in an envelope.
    pub const fn code(self) -> u8 {
        match self {
            Kind::Endorse => 1,
            Kind::Raft => 2,
            Kind::Blocks => 3,
        }
    }

    /// The kind for an envelope code, if it is one.
    pub const fn from_code(code: u8) -> Option<Kind> {
        match code {
            1 => Some(Kind::Endorse),
            2 => Some(Kind::Raft),
            3 => Some(Kind::Blocks),
            _ => None,
        }
    }

    /// The libp2p protocol that carries this kind.
    pub const fn protocol(self) -> StreamProtocol {
        match self {
            Kind::Endorse => StreamProtocol::new("/sphr/endorse/1"),
            Kind::Raft => StreamProtocol::new("/sphr/raft/1"),
            Kind::Blocks => StreamProtocol::new("/sphr/blocks/1"),
        }
    }

    /// A short name for logs and errors.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Endorse => "endorse",
            Kind::Raft => "raft",
            Kind::Blocks => "blocks",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The gossipsub topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Topic {
    /// New blocks, for nodes that are not consenters.
    Blocks,
    /// Transactions.
    Txs,
}

impl Topic {
    /// Both topics.
    pub const ALL: [Topic; 2] = [Topic::Blocks, Topic::Txs];

    /// The topic's code in an envelope (apart from the request kinds' codes).
    pub const fn code(self) -> u8 {
        match self {
            Topic::Blocks => 0x10,
            Topic::Txs => 0x11,
        }
    }

    /// A short name for logs and the topic string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Topic::Blocks => "blocks",
            Topic::Txs => "txs",
        }
    }

    /// The gossipsub topic string: `sphr/<first 8 bytes of the network id, hex>/<topic>`.
    pub fn name(self, network_id: &[u8; 32]) -> String {
        format!("sphr/{}/{}", hex::encode(&network_id[..8]), self.as_str())
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request or a gossip message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The genesis hash of the network the sender belongs to.
    #[serde(with = "serde_bytes")]
    pub network_id: [u8; 32],
    /// [`Kind::code`] or [`Topic::code`].
    pub kind: u8,
    /// Opaque to this crate.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// The answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseEnvelope {
    /// The genesis hash of the network the responder belongs to.
    #[serde(with = "serde_bytes")]
    pub network_id: [u8; 32],
    /// The request's [`Kind::code`].
    pub kind: u8,
    /// The node's answer, or why there is none.
    pub reply: Reply,
}

/// A node's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The answer.
    Ok(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request was not served (busy, no answer in time, refused by the node).
    Err(String),
}

/// Why a frame or gossip message was dropped; the label of `bad_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BadReason {
    /// Another network's id: a misconfigured peer.
    WrongNetwork,
    /// A kind this node does not know, or not the one the protocol or topic carries.
    UnknownKind,
    /// Not a CBOR envelope.
    Undecodable,
    /// Longer than the limit for its kind.
    Oversized,
    /// Gossip written or relayed by a peer that is not in the allow-list.
    NotAllowed,
}

impl BadReason {
    /// Every reason.
    pub const ALL: [BadReason; 5] = [
        BadReason::WrongNetwork,
        BadReason::UnknownKind,
        BadReason::Undecodable,
        BadReason::Oversized,
        BadReason::NotAllowed,
    ];

    /// The metric label.
    pub const fn as_str(self) -> &'static str {
        match self {
            BadReason::WrongNetwork => "wrong_network",
            BadReason::UnknownKind => "unknown_kind",
            BadReason::Undecodable => "undecodable",
            BadReason::Oversized => "oversized",
            BadReason::NotAllowed => "not_allowed",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            BadReason::WrongNetwork => 0,
            BadReason::UnknownKind => 1,
            BadReason::Undecodable => 2,
            BadReason::Oversized => 3,
            BadReason::NotAllowed => 4,
        }
    }
}

impl std::fmt::Display for BadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused frame: the reason and a few words for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad message ({reason}): {detail}")]
pub struct BadMessage {
    /// What was wrong.
    pub reason: BadReason,
    /// Details for the log.
    pub detail: String,
}

impl BadMessage {
    fn new(reason: BadReason, detail: impl Into<String>) -> Self {
        BadMessage {
            reason,
            detail: detail.into(),
        }
    }
}

/// Encodes an envelope as CBOR (no length prefix: gossip data, or the inside of a frame).
pub fn encode_envelope(env: &Envelope) -> Result<Vec<u8>, sphr_crypto::cbor::CborError> {
    sphr_crypto::cbor::to_vec(env)
}

/// Encodes a request frame: a u32 big-endian length, then the CBOR envelope.
pub fn encode_frame(env: &Envelope) -> Result<Vec<u8>, sphr_crypto::cbor::CborError> {
    frame(&sphr_crypto::cbor::to_vec(env)?)
}

/// Encodes a response frame: a u32 big-endian length, then the CBOR response envelope.
pub fn encode_response_frame(
    env: &ResponseEnvelope,
) -> Result<Vec<u8>, sphr_crypto::cbor::CborError> {
    frame(&sphr_crypto::cbor::to_vec(env)?)
}

fn frame(payload: &[u8]) -> Result<Vec<u8>, sphr_crypto::cbor::CborError> {
    let len = u32::try_from(payload.len()).map_err(|_| {
        sphr_crypto::cbor::CborError::Encode(format!("{} bytes do not fit a frame", payload.len()))
    })?;
    let mut out = Vec::with_capacity(payload.len() + 4);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

/// Decodes an envelope and checks it: at most `body_limit` bytes of body, our network id, and
/// the expected kind code.
pub fn decode_envelope(
    bytes: &[u8],
    network_id: &[u8; 32],
    expected_kind: u8,
    body_limit: usize,
) -> Result<Vec<u8>, BadMessage> {
    let frame_limit = body_limit.saturating_add(ENVELOPE_OVERHEAD);
    if bytes.len() > frame_limit {
        return Err(BadMessage::new(
            BadReason::Oversized,
            format!("{} bytes, limit {frame_limit}", bytes.len()),
        ));
    }
    let env: Envelope = sphr_crypto::cbor::from_slice(bytes, frame_limit)
        .map_err(|e| BadMessage::new(BadReason::Undecodable, e.to_string()))?;
    check_header(&env.network_id, env.kind, network_id, expected_kind)?;
    if env.body.len() > body_limit {
        return Err(BadMessage::new(
            BadReason::Oversized,
            format!("body of {} bytes, limit {body_limit}", env.body.len()),
        ));
    }
    Ok(env.body)
}

/// Decodes a response envelope and checks its network id and kind.
pub fn decode_response(
    bytes: &[u8],
    network_id: &[u8; 32],
    expected_kind: u8,
    body_limit: usize,
) -> Result<Reply, BadMessage> {
    let frame_limit = body_limit.saturating_add(ENVELOPE_OVERHEAD);
    let env: ResponseEnvelope =
        sphr_crypto::cbor::from_slice(bytes, frame_limit).map_err(|e| match e {
            sphr_crypto::cbor::CborError::TooLarge { .. } => {
                BadMessage::new(BadReason::Oversized, e.to_string())
            }
            _ => BadMessage::new(BadReason::Undecodable, e.to_string()),
        })?;
    check_header(&env.network_id, env.kind, network_id, expected_kind)?;
    Ok(env.reply)
}

fn check_header(
    got_network: &[u8; 32],
    got_kind: u8,
    network_id: &[u8; 32],
    expected_kind: u8,
) -> Result<(), BadMessage> {
    if got_network != network_id {
        return Err(BadMessage::new(
            BadReason::WrongNetwork,
            format!("network {}", hex::encode(&got_network[..8])),
        ));
    }
    if got_kind != expected_kind {
        return Err(BadMessage::new(
            BadReason::UnknownKind,
            format!("kind {got_kind}, expected {expected_kind}"),
        ));
    }
    Ok(())
}

/// Cuts an error text to [`MAX_ERROR_TEXT`] bytes at a char boundary.
pub(crate) fn clip_error(mut text: String) -> String {
    if text.len() > MAX_ERROR_TEXT {
        let mut end = MAX_ERROR_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NET: [u8; 32] = [7; 32];

    #[test]
    fn kinds_round_trip() {
        for k in Kind::ALL {
            assert_eq!(Kind::from_code(k.code()), Some(k));
        }
        assert_eq!(Kind::from_code(0), None);
        assert_eq!(Kind::from_code(Topic::Blocks.code()), None);
    }

    #[test]
    fn topic_names_carry_the_network() {
        assert_eq!(Topic::Blocks.name(&NET), "sphr/0707070707070707/blocks");
        assert_eq!(Topic::Txs.name(&NET), "sphr/0707070707070707/txs");
    }

    #[test]
    fn refusals_have_their_reason() {
        let env = |network_id, kind, body: Vec<u8>| {
            encode_envelope(&Envelope {
                network_id,
                kind,
                body,
            })
            .unwrap()
        };
        let ok = env(NET, 1, vec![1, 2, 3]);
        assert_eq!(decode_envelope(&ok, &NET, 1, 10).unwrap(), vec![1, 2, 3]);
        let reason = |r: Result<Vec<u8>, BadMessage>| r.unwrap_err().reason;
        assert_eq!(
            reason(decode_envelope(&ok, &[8; 32], 1, 10)),
            BadReason::WrongNetwork
        );
        assert_eq!(
            reason(decode_envelope(&ok, &NET, 2, 10)),
            BadReason::UnknownKind
        );
        assert_eq!(
            reason(decode_envelope(&ok, &NET, 1, 2)),
            BadReason::Oversized
        );
        assert_eq!(
            reason(decode_envelope(b"garbage", &NET, 1, 10)),
            BadReason::Undecodable
        );
        assert_eq!(
            reason(decode_envelope(&ok[..ok.len() - 1], &NET, 1, 10)),
            BadReason::Undecodable
        );
        let big = env(NET, 1, vec![0; 1000]);
        assert_eq!(
            reason(decode_envelope(&big, &NET, 1, 10)),
            BadReason::Oversized
        );
    }

    #[test]
    fn large_bodies_decode() {
        let body = vec![0xAB; 3 << 20];
        let bytes = encode_envelope(&Envelope {
            network_id: NET,
            kind: 3,
            body: body.clone(),
        })
        .unwrap();
        assert_eq!(decode_envelope(&bytes, &NET, 3, 4 << 20).unwrap(), body);
    }

    #[test]
    fn error_texts_are_clipped_at_a_char_boundary() {
        let text = "é".repeat(MAX_ERROR_TEXT);
        let clipped = clip_error(text);
        assert!(clipped.len() <= MAX_ERROR_TEXT);
        assert!(clipped.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn envelope_round_trip(network_id in any::<[u8; 32]>(), kind in any::<u8>(),
                               body in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let env = Envelope { network_id, kind, body: body.clone() };
            let bytes = encode_envelope(&env).unwrap();
            prop_assert_eq!(decode_envelope(&bytes, &network_id, kind, 2048).unwrap(), body);
            let framed = encode_frame(&env).unwrap();
            prop_assert_eq!(&framed[4..], &bytes[..]);
            prop_assert_eq!(u32::from_be_bytes([framed[0], framed[1], framed[2], framed[3]]) as usize, bytes.len());
        }

        #[test]
        fn response_round_trip(network_id in any::<[u8; 32]>(), kind in any::<u8>(),
                               ok in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..512),
                               text in ".{0,64}") {
            let reply = if ok { Reply::Ok(body) } else { Reply::Err(text) };
            let env = ResponseEnvelope { network_id, kind, reply: reply.clone() };
            let framed = encode_response_frame(&env).unwrap();
            prop_assert_eq!(decode_response(&framed[4..], &network_id, kind, 1024).unwrap(), reply);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_envelope(&bytes, &NET, 1, 128);
            let _ = decode_response(&bytes, &NET, 1, 128);
        }
    }
}

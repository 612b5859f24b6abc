//! Encoding of raft-rs types (protobuf, as raft-rs defines them) for the wire and for sled.
//!
//! The node carries [`raft::eraftpb::Message`]s between consenters as opaque bytes made by
//! [`encode_message`] and read back by [`decode_message`], which refuses input above a size
//! limit before parsing anything.
//!
//! ```text
//!  driver ─Transport::send(Message)─> node: encode_message ─libp2p─> node: decode_message(max)
//!                                                                     └─> OrdererHandle::step
//! ```

use raft::eraftpb::Message;

/// A raft message could not be encoded or decoded.
///
/// What follows on decode: drop the message and count it against the sending peer; raft
/// retries. On encode: a bug; drop the message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The input is larger than the caller's limit; nothing was parsed.
    #[error("{what}: {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was being decoded.
        what: &'static str,
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Malformed protobuf.
    #[error("{what}: {source}")]
    Protobuf {
        /// What was being decoded.
        what: &'static str,
        /// The parser's error.
        #[source]
        source: protobuf::ProtobufError,
    },
}

/// Encodes a raft message for the wire.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, CodecError> {
    encode(msg, "raft message")
}

/// Decodes a raft message from the wire, refusing more than `max_bytes` of input.
pub fn decode_message(bytes: &[u8], max_bytes: usize) -> Result<Message, CodecError> {
    decode(bytes, max_bytes, "raft message")
}

pub(crate) fn encode<M: protobuf::Message>(
    msg: &M,
    what: &'static str,
) -> Result<Vec<u8>, CodecError> {
    msg.write_to_bytes()
        .map_err(|source| CodecError::Protobuf { what, source })
}

pub(crate) fn decode<M: protobuf::Message>(
    bytes: &[u8],
    max_bytes: usize,
    what: &'static str,
) -> Result<M, CodecError> {
    if bytes.len() > max_bytes {
        return Err(CodecError::TooLarge {
            what,
            len: bytes.len(),
            max: max_bytes,
        });
    }
    M::parse_from_bytes(bytes).map_err(|source| CodecError::Protobuf { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft::eraftpb::{Entry, MessageType};

    #[test]
    fn message_round_trip() {
        let mut m = Message::default();
        m.set_msg_type(MessageType::MsgAppend);
        m.from = 1;
        m.to = 2;
        m.term = 7;
        let e = Entry {
            index: 5,
            term: 7,
            data: vec![1, 2, 3].into(),
            ..Entry::default()
        };
        m.mut_entries().push(e);
        let bytes = encode_message(&m).unwrap();
        let back = decode_message(&bytes, 1024).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn refuses_oversized_and_garbage() {
        let m = Message::default();
        let bytes = encode_message(&m).unwrap();
        assert!(matches!(
            decode_message(&[0u8; 100], 10),
            Err(CodecError::TooLarge {
                len: 100,
                max: 10,
                ..
            })
        ));
        assert!(decode_message(&bytes, 10).is_ok());
        assert!(matches!(
            decode_message(&[0xff, 0xff, 0xff], 10),
            Err(CodecError::Protobuf { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = decode_message(&bytes, 1 << 20);
        }
    }
}

//! Storage encodings of the ledger's sled trees.
//!
//! ```text
//!  tree      key                              value
//!  blocks    number (u64 BE, 8)               location of the BlockRecord (CBOR) in a segment
//!                                             file (25: 0xFF segment offset len crc; see
//!                                             sphr_segments), or the record itself (genesis,
//!                                             and blocks written under layout version 1)
//!  state     contract 0x00 key                version (block u64 BE, tx u32 BE: 12) ++ value
//!  txindex   tx id (32)                       block u64 BE (8) ++ position u32 BE (4) ++ code (1)
//!  meta      "schema"                         u32 BE
//!            "genesis_hash"                   network id (32)
//!            "tip"                            header: number (8) prev (32) data (32) time (8)
//!            "applied_raft_index"             u64 BE
//!  state_hashes number (u64 BE, 8)            world-state hash after that block (32)
//! ```
//!
//! Fixed-width big-endian integers keep keys in numeric order (`blocks`) and make every record a
//! length check plus slicing. Decoders never panic: bytes from disk that do not fit give a
//! [`CodecError`], which the ledger reports as corruption (stop the node: its data dir needs
//! an operator).

use sphr_crypto::hash::Hash32;
use sphr_types::{BlockHeader, ValidationCode, Version};

/// The on-disk layout version written in `meta/schema`. Version 2: block records in segment
/// files (version 1 kept them in the `blocks` tree; a version 1 ledger opens and is upgraded).
pub const SCHEMA_VERSION: u32 = 2;

/// `meta` key of the layout version.
pub const META_SCHEMA: &[u8] = b"schema";
/// `meta` key of the network id (hash of block 0).
pub const META_GENESIS_HASH: &[u8] = b"genesis_hash";
/// `meta` key of the tip header.
pub const META_TIP: &[u8] = b"tip";
/// `meta` key of the last Raft index applied.
pub const META_APPLIED_RAFT_INDEX: &[u8] = b"applied_raft_index";

/// Length of an encoded [`TxLocation`].
pub const TX_LOCATION_LEN: usize = 13;
/// Length of an encoded tip header.
pub const HEADER_LEN: usize = 80;
/// Length of the version prefix of a state value.
pub const VERSION_LEN: usize = 12;

/// Bytes read from the database do not decode: the data dir is corrupt (stop the node).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// A fixed-width record has the wrong length.
    #[error("{what}: {len} bytes, expected {expected}")]
    Length {
        /// What was being decoded.
        what: &'static str,
        /// Length found.
        len: usize,
        /// Length expected (or the minimum).
        expected: usize,
    },
    /// A validation code byte is not one this version knows.
    #[error("unknown validation code byte {0}")]
    UnknownCode(u8),
}

/// Where a committed transaction is, and its verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxLocation {
    /// Block number.
    pub block: u64,
    /// Position in the block.
    pub position: u32,
    /// Its validation code.
    pub code: ValidationCode,
}

impl TxLocation {
    /// 13 bytes: block (u64 BE), position (u32 BE), code (one byte, see [`code_to_byte`]).
    pub fn to_bytes(&self) -> [u8; TX_LOCATION_LEN] {
        let mut b = [0u8; TX_LOCATION_LEN];
        b[..8].copy_from_slice(&self.block.to_be_bytes());
        b[8..12].copy_from_slice(&self.position.to_be_bytes());
        b[12] = code_to_byte(self.code);
        b
    }

    /// Parses the 13 bytes written by [`TxLocation::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, CodecError> {
        let b: &[u8; TX_LOCATION_LEN] = b.try_into().map_err(|_| CodecError::Length {
            what: "tx index entry",
            len: b.len(),
            expected: TX_LOCATION_LEN,
        })?;
        let (block, rest) = b.split_at(8);
        let (position, code) = rest.split_at(4);
        Ok(TxLocation {
            block: u64::from_be_bytes(to_array(block)),
            position: u32::from_be_bytes(to_array(position)),
            code: code_from_byte(code.first().copied().unwrap_or(u8::MAX))?,
        })
    }
}

/// The stored byte of a validation code. Fixed numbers, independent of the enum's declaration
/// order, so that reordering `ValidationCode` never changes what is on disk.
pub fn code_to_byte(code: ValidationCode) -> u8 {
    match code {
        ValidationCode::Valid => 0,
        ValidationCode::MvccReadConflict => 1,
        ValidationCode::EndorsementPolicyFailure => 2,
        ValidationCode::BadSignature => 3,
        ValidationCode::BadEndorsementSignature => 4,
        ValidationCode::DuplicateTxid => 5,
        ValidationCode::BadCreator => 6,
        ValidationCode::BadPayload => 7,
        ValidationCode::WrongNetwork => 8,
        ValidationCode::UnknownContract => 9,
    }
}

/// The validation code of a stored byte.
pub fn code_from_byte(b: u8) -> Result<ValidationCode, CodecError> {
    Ok(match b {
        0 => ValidationCode::Valid,
        1 => ValidationCode::MvccReadConflict,
        2 => ValidationCode::EndorsementPolicyFailure,
        3 => ValidationCode::BadSignature,
        4 => ValidationCode::BadEndorsementSignature,
        5 => ValidationCode::DuplicateTxid,
        6 => ValidationCode::BadCreator,
        7 => ValidationCode::BadPayload,
        8 => ValidationCode::WrongNetwork,
        9 => ValidationCode::UnknownContract,
        other => return Err(CodecError::UnknownCode(other)),
    })
}

/// A stored state value: the 12-byte version, then the value.
pub fn encode_state_value(version: Version, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(VERSION_LEN + value.len());
    out.extend_from_slice(&version.to_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a stored state value into its version and value.
pub fn decode_state_value(b: &[u8]) -> Result<(Version, &[u8]), CodecError> {
    let too_short = || CodecError::Length {
        what: "state value",
        len: b.len(),
        expected: VERSION_LEN,
    };
    let prefix = b.get(..VERSION_LEN).ok_or_else(too_short)?;
    let version = Version::from_bytes(prefix).ok_or_else(too_short)?;
    Ok((version, b.get(VERSION_LEN..).unwrap_or_default()))
}

/// Only the version of a stored state value (no copy of the value).
pub fn decode_state_version(b: &[u8]) -> Result<Version, CodecError> {
    decode_state_value(b).map(|(v, _)| v)
}

/// 80 bytes: number, previous hash, data hash, timestamp.
pub fn encode_header(h: &BlockHeader) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[..8].copy_from_slice(&h.number.to_be_bytes());
    b[8..40].copy_from_slice(&h.previous_hash.0);
    b[40..72].copy_from_slice(&h.data_hash.0);
    b[72..].copy_from_slice(&h.timestamp_ms.to_be_bytes());
    b
}

/// Parses the 80 bytes written by [`encode_header`].
pub fn decode_header(b: &[u8]) -> Result<BlockHeader, CodecError> {
    let b: &[u8; HEADER_LEN] = b.try_into().map_err(|_| CodecError::Length {
        what: "tip header",
        len: b.len(),
        expected: HEADER_LEN,
    })?;
    let (number, rest) = b.split_at(8);
    let (prev, rest) = rest.split_at(32);
    let (data, time) = rest.split_at(32);
    Ok(BlockHeader {
        number: u64::from_be_bytes(to_array(number)),
        previous_hash: Hash32(to_array(prev)),
        data_hash: Hash32(to_array(data)),
        timestamp_ms: u64::from_be_bytes(to_array(time)),
    })
}

/// A u64 as 8 big-endian bytes (block keys, the applied Raft index).
pub fn encode_u64(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

/// Parses 8 big-endian bytes.
pub fn decode_u64(what: &'static str, b: &[u8]) -> Result<u64, CodecError> {
    let a: [u8; 8] = b.try_into().map_err(|_| CodecError::Length {
        what,
        len: b.len(),
        expected: 8,
    })?;
    Ok(u64::from_be_bytes(a))
}

/// Parses 4 big-endian bytes.
pub fn decode_u32(what: &'static str, b: &[u8]) -> Result<u32, CodecError> {
    let a: [u8; 4] = b.try_into().map_err(|_| CodecError::Length {
        what,
        len: b.len(),
        expected: 4,
    })?;
    Ok(u32::from_be_bytes(a))
}

/// Parses a 32-byte hash.
pub fn decode_hash(what: &'static str, b: &[u8]) -> Result<Hash32, CodecError> {
    Hash32::from_slice(b).map_err(|_| CodecError::Length {
        what,
        len: b.len(),
        expected: 32,
    })
}

/// Copies a slice whose length the caller has already fixed by `split_at` on an array.
fn to_array<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    // Lengths match by construction; `min` keeps this panic-free regardless.
    let n = s.len().min(N);
    a[..n].copy_from_slice(&s[..n]);
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_code() -> impl Strategy<Value = ValidationCode> {
        proptest::sample::select(ValidationCode::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn tx_location_round_trip(block in any::<u64>(), position in any::<u32>(), code in arb_code()) {
            let loc = TxLocation { block, position, code };
            prop_assert_eq!(TxLocation::from_bytes(&loc.to_bytes()), Ok(loc));
        }

        #[test]
        fn state_value_round_trip(block in any::<u64>(), tx in any::<u32>(),
                                  value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let v = Version { block, tx };
            let enc = encode_state_value(v, &value);
            prop_assert_eq!(enc.len(), VERSION_LEN + value.len());
            let (v2, val2) = decode_state_value(&enc).unwrap();
            prop_assert_eq!(v2, v);
            prop_assert_eq!(val2, value.as_slice());
            prop_assert_eq!(decode_state_version(&enc), Ok(v));
        }

        #[test]
        fn header_round_trip(number in any::<u64>(), p in any::<[u8; 32]>(), d in any::<[u8; 32]>(), t in any::<u64>()) {
            let h = BlockHeader { number, previous_hash: Hash32(p), data_hash: Hash32(d), timestamp_ms: t };
            prop_assert_eq!(decode_header(&encode_header(&h)), Ok(h));
        }

        #[test]
        fn garbage_gives_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let loc = TxLocation::from_bytes(&bytes);
            if bytes.len() != TX_LOCATION_LEN {
                prop_assert!(loc.is_err());
            } else if bytes[12] > 9 {
                prop_assert_eq!(loc, Err(CodecError::UnknownCode(bytes[12])));
            }
            let sv = decode_state_value(&bytes);
            prop_assert_eq!(sv.is_err(), bytes.len() < VERSION_LEN);
            prop_assert_eq!(decode_header(&bytes).is_err(), bytes.len() != HEADER_LEN);
            prop_assert_eq!(decode_u64("x", &bytes).is_err(), bytes.len() != 8);
            prop_assert_eq!(decode_u32("x", &bytes).is_err(), bytes.len() != 4);
            prop_assert_eq!(decode_hash("x", &bytes).is_err(), bytes.len() != 32);
        }
    }

    #[test]
    fn code_bytes_are_fixed_and_total() {
        for (i, c) in ValidationCode::ALL.iter().enumerate() {
            // Pinned: changing any of these numbers changes the on-disk format.
            assert_eq!(code_to_byte(*c) as usize, i);
            assert_eq!(code_from_byte(code_to_byte(*c)), Ok(*c));
        }
        for b in 10..=u8::MAX {
            assert_eq!(code_from_byte(b), Err(CodecError::UnknownCode(b)));
        }
    }
}

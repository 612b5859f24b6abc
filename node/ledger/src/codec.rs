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
//!            "redo"                           the last block's writes (see `encode_redo`)
//!  state_hashes number (u64 BE, 8)            world-state hash after that block (32)
//! ```
//!
//! Fixed-width big-endian integers keep keys in numeric order (`blocks`) and make every record a
//! length check plus slicing. Decoders never panic: bytes from disk that do not fit give a
//! [`CodecError`], which the ledger reports as corruption (stop the node: its data dir needs
//! an operator).

use sphr_crypto::hash::Hash32;
use sphr_types::{BlockHeader, ValidationCode, Version};

/// The on-disk layout version written in `meta/schema`. Version 3: block records in segment
/// files, LZ4-compressed when that makes them shorter (29-byte locations tagged 0xFE).
/// Version 2 kept them uncompressed, version 1 in the `blocks` tree; both open and are
/// upgraded, and an older build refuses version 3, whose compressed records it could not read.
pub const SCHEMA_VERSION: u32 = 3;

/// `meta` key of the layout version.
pub const META_SCHEMA: &[u8] = b"schema";
/// `meta` key of the network id (hash of block 0).
pub const META_GENESIS_HASH: &[u8] = b"genesis_hash";
/// `meta` key of the tip header.
pub const META_TIP: &[u8] = b"tip";
/// `meta` key of the last Raft index applied.
pub const META_APPLIED_RAFT_INDEX: &[u8] = b"applied_raft_index";

/// `meta` key of the redo record: every write of the last block, stored in one insert before
/// the writes themselves (see [`encode_redo`]).
pub const META_REDO: &[u8] = b"redo";

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
    /// A redo record does not decode.
    #[error("redo record: {0}")]
    Redo(&'static str),
}

/// The tree a write of a redo record goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedoTree {
    /// `blocks`.
    Blocks,
    /// `state_hashes`.
    StateHashes,
    /// `state`.
    State,
    /// `txindex`.
    TxIndex,
    /// `meta`.
    Meta,
}

impl RedoTree {
    const ALL: [RedoTree; 5] = [
        RedoTree::Blocks,
        RedoTree::StateHashes,
        RedoTree::State,
        RedoTree::TxIndex,
        RedoTree::Meta,
    ];

    fn byte(self) -> u8 {
        self as u8
    }

    fn from_byte(b: u8) -> Option<RedoTree> {
        Self::ALL.get(usize::from(b)).copied()
    }
}

/// One write of a redo record: the tree, the key, and the value to insert (`None`: remove).
pub type RedoWrite<'a> = (RedoTree, &'a [u8], Option<&'a [u8]>);

/// Encodes a redo record: the block number (u64 BE), the number of writes (u32 BE), then each
/// write in order: tree byte, key length (u32 BE), key, then 0 (remove) or 1, value length
/// (u32 BE), value.
pub fn encode_redo(block: u64, writes: &[RedoWrite<'_>]) -> Vec<u8> {
    let len = writes
        .iter()
        .map(|(_, k, v)| 10 + k.len() + v.map_or(0, |v| 4 + v.len()))
        .sum::<usize>();
    let mut out = Vec::with_capacity(12 + len);
    out.extend_from_slice(&block.to_be_bytes());
    out.extend_from_slice(&(writes.len() as u32).to_be_bytes());
    for (tree, key, value) in writes {
        out.push(tree.byte());
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&(v.len() as u32).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
    out
}

/// Decodes a redo record ([`encode_redo`]): the block number and its writes, borrowed from `b`.
pub fn decode_redo(b: &[u8]) -> Result<(u64, Vec<RedoWrite<'_>>), CodecError> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], CodecError> {
        if b.len() < n {
            return Err(CodecError::Redo("truncated"));
        }
        let (head, rest) = b.split_at(n);
        *b = rest;
        Ok(head)
    }
    fn take_u32(b: &mut &[u8]) -> Result<usize, CodecError> {
        let n = u32::from_be_bytes(to_array(take(b, 4)?));
        usize::try_from(n).map_err(|_| CodecError::Redo("length does not fit"))
    }
    let mut rest = b;
    let block = u64::from_be_bytes(to_array(take(&mut rest, 8)?));
    let count = take_u32(&mut rest)?;
    // Every write takes at least 6 bytes: a count beyond that is a lie, not an allocation.
    if count > rest.len() / 6 {
        return Err(CodecError::Redo("more writes than bytes"));
    }
    let mut writes = Vec::with_capacity(count);
    for _ in 0..count {
        let tree =
            RedoTree::from_byte(take(&mut rest, 1)?[0]).ok_or(CodecError::Redo("unknown tree"))?;
        let key_len = take_u32(&mut rest)?;
        let key = take(&mut rest, key_len)?;
        let value = match take(&mut rest, 1)?[0] {
            0 => None,
            1 => {
                let len = take_u32(&mut rest)?;
                Some(take(&mut rest, len)?)
            }
            _ => return Err(CodecError::Redo("bad value flag")),
        };
        writes.push((tree, key, value));
    }
    if !rest.is_empty() {
        return Err(CodecError::Redo("trailing bytes"));
    }
    Ok((block, writes))
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
        fn redo_round_trip(block in any::<u64>(),
                           writes in proptest::collection::vec(
                               (0u8..5, proptest::collection::vec(any::<u8>(), 0..40),
                                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))),
                               0..20)) {
            let ops: Vec<RedoWrite<'_>> = writes
                .iter()
                .map(|(t, k, v)| (RedoTree::ALL[usize::from(*t)], k.as_slice(), v.as_deref()))
                .collect();
            let enc = encode_redo(block, &ops);
            prop_assert_eq!(decode_redo(&enc), Ok((block, ops.clone())));
            // Every strict prefix is refused: a record is whole or it is an error.
            for cut in 0..enc.len() {
                prop_assert!(decode_redo(&enc[..cut]).is_err());
            }
        }

        #[test]
        fn redo_garbage_gives_errors_not_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = decode_redo(&bytes);
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

    #[test]
    fn redo_records_name_what_is_wrong() {
        let ok = encode_redo(
            7,
            &[
                (RedoTree::State, b"k", Some(b"v")),
                (RedoTree::Meta, b"t", None),
            ],
        );
        assert_eq!(
            decode_redo(&ok),
            Ok((
                7,
                vec![
                    (RedoTree::State, &b"k"[..], Some(&b"v"[..])),
                    (RedoTree::Meta, &b"t"[..], None)
                ]
            ))
        );
        let mut trailing = ok.clone();
        trailing.push(0);
        assert_eq!(
            decode_redo(&trailing),
            Err(CodecError::Redo("trailing bytes"))
        );
        let mut tree = ok.clone();
        tree[12] = 5;
        assert_eq!(decode_redo(&tree), Err(CodecError::Redo("unknown tree")));
        let mut flag = ok.clone();
        flag[12 + 1 + 4 + 1] = 2;
        assert_eq!(decode_redo(&flag), Err(CodecError::Redo("bad value flag")));
        // A count the bytes cannot hold is refused before anything is allocated for it.
        let mut count = ok;
        count[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(
            decode_redo(&count),
            Err(CodecError::Redo("more writes than bytes"))
        );
        assert_eq!(decode_redo(&[]), Err(CodecError::Redo("truncated")));
    }
}

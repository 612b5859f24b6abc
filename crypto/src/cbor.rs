//! Deterministic CBOR through serde and ciborium, with a size limit on every decode.
//!
//! Encoding is deterministic for the types sphr hashes or signs: structs encode as maps whose
//! keys come in declaration order, lengths are definite, and no type that is hashed or signed
//! holds a map with unordered keys (`HashMap`). Byte fields use byte strings (`serde_bytes`).
//!
//! Decoding refuses input longer than the caller's limit before reading a byte, limits nesting
//! depth, and refuses trailing bytes after the value, so one byte string has one meaning.

use std::io::Cursor;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// How deep CBOR may nest before a decode is refused.
pub const MAX_DEPTH: usize = 64;

/// Why CBOR could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CborError {
    /// The input is longer than the decode limit; nothing was read.
    #[error("CBOR input of {len} bytes is over the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    /// The input is not valid CBOR for the expected type.
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    /// Bytes follow the value.
    #[error("{0} trailing bytes after the CBOR value")]
    TrailingBytes(usize),
    /// A value could not be encoded (a serializer refused it).
    #[error("CBOR encoding failed: {0}")]
    Encode(String),
}

/// Encodes `value` as CBOR.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::with_capacity(128);
    ciborium::ser::into_writer(value, &mut out).map_err(|e| CborError::Encode(e.to_string()))?;
    Ok(out)
}

/// Decodes one CBOR value of type `T` from `bytes`, which must be at most `limit` bytes long
/// and hold nothing after the value.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8], limit: usize) -> Result<T, CborError> {
    if bytes.len() > limit {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            limit,
        });
    }
    let mut cursor = Cursor::new(bytes);
    let value = ciborium::de::from_reader_with_recursion_limit(&mut cursor, MAX_DEPTH)
        .map_err(|e| CborError::Malformed(describe(e)))?;
    let used = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    if used < bytes.len() {
        return Err(CborError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

fn describe<E: std::fmt::Debug>(e: ciborium::de::Error<E>) -> String {
    match e {
        ciborium::de::Error::Io(e) => format!("truncated input ({e:?})"),
        ciborium::de::Error::Syntax(at) => format!("syntax error at byte {at}"),
        ciborium::de::Error::Semantic(at, msg) => match at {
            Some(at) => format!("{msg} (at byte {at})"),
            None => msg,
        },
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("nested deeper than {MAX_DEPTH} levels")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct T {
        a: u64,
        #[serde(with = "serde_bytes")]
        b: Vec<u8>,
        c: Option<String>,
    }

    #[test]
    fn round_trip_and_determinism() {
        let t = T {
            a: 7,
            b: vec![1, 2, 3],
            c: Some("x".into()),
        };
        let one = to_vec(&t).unwrap();
        assert_eq!(one, to_vec(&t).unwrap());
        assert_eq!(from_slice::<T>(&one, 1024).unwrap(), t);
    }

    #[test]
    fn limits_and_garbage() {
        let t = T {
            a: 1,
            b: vec![0; 100],
            c: None,
        };
        let bytes = to_vec(&t).unwrap();
        assert!(matches!(
            from_slice::<T>(&bytes, 10),
            Err(CborError::TooLarge { .. })
        ));
        assert!(matches!(
            from_slice::<T>(&bytes[..bytes.len() - 1], 1024),
            Err(CborError::Malformed(_))
        ));
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(
            from_slice::<T>(&extra, 1024),
            Err(CborError::TrailingBytes(1))
        ));
        assert!(from_slice::<T>(&[0xff, 0x00, 0x13], 1024).is_err());
        // Deep nesting is refused, not a stack overflow.
        let deep = vec![0x81u8; 10_000];
        assert!(from_slice::<T>(&deep, 100_000).is_err());
    }
}

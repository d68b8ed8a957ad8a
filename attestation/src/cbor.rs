//! Bounded CBOR decoding on top of `ciborium`, plus strict lookups in decoded maps.
//!
//! Attestation objects come from the network, so decoding is limited in nesting depth
//! and input size, and maps with duplicate keys are refused: a verifier and an
//! authenticator must never disagree about which of two values counts.

use ciborium::value::{Integer, Value};

/// WebAuthn structures nest at most four or five levels; 16 leaves ample room.
const MAX_NESTING: usize = 16;
/// COSE keys, attestation statements and extension maps have a handful of entries.
const MAX_MAP_ENTRIES: usize = 64;

/// Why a CBOR item could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("the CBOR input is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("the CBOR input is malformed or truncated ({0})")]
    Malformed(String),
    #[error("{0} trailing bytes follow the CBOR item")]
    TrailingBytes(usize),
    #[error("the CBOR map has the key {0} more than once")]
    DuplicateKey(String),
    #[error("the CBOR item is not a map")]
    NotAMap,
    #[error("the CBOR map has {0} entries, more than any WebAuthn structure uses")]
    TooManyEntries(usize),
}

/// Decodes one CBOR item from the front of `input`, returning it and the bytes after it.
pub fn decode_prefix(input: &[u8], limit: usize) -> Result<(Value, &[u8]), CborError> {
    if input.len() > limit {
        return Err(CborError::TooLarge { size: input.len(), limit });
    }
    let mut rest = input;
    let value: Value = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_NESTING)
        .map_err(|e| CborError::Malformed(describe(&e)))?;
    Ok((value, rest))
}

/// Decodes exactly one CBOR item that must span all of `input`.
pub fn decode_exact(input: &[u8], limit: usize) -> Result<Value, CborError> {
    let (value, rest) = decode_prefix(input, limit)?;
    if !rest.is_empty() {
        return Err(CborError::TrailingBytes(rest.len()));
    }
    Ok(value)
}

fn describe<T: std::fmt::Debug>(err: &ciborium::de::Error<T>) -> String {
    match err {
        ciborium::de::Error::Io(_) => "unexpected end of input".to_owned(),
        ciborium::de::Error::Syntax(offset) => format!("syntax error at byte {offset}"),
        ciborium::de::Error::Semantic(_, msg) => msg.clone(),
        ciborium::de::Error::RecursionLimitExceeded => "nested too deeply".to_owned(),
    }
}

/// A CBOR map whose keys are known to be unique.
pub struct Map<'a> {
    entries: &'a [(Value, Value)],
}

impl<'a> Map<'a> {
    pub fn new(value: &'a Value) -> Result<Self, CborError> {
        let entries = value.as_map().ok_or(CborError::NotAMap)?;
        // Bounding the size keeps the duplicate check below cheap.
        if entries.len() > MAX_MAP_ENTRIES {
            return Err(CborError::TooManyEntries(entries.len()));
        }
        for (i, (key, _)) in entries.iter().enumerate() {
            if entries.iter().skip(i + 1).any(|(other, _)| other == key) {
                return Err(CborError::DuplicateKey(format!("{key:?}")));
            }
        }
        Ok(Self { entries: entries.as_slice() })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn text(&self, key: &str) -> Option<&'a Value> {
        self.entries.iter().find(|(k, _)| k.as_text() == Some(key)).map(|(_, v)| v)
    }

    pub fn int(&self, key: i64) -> Option<&'a Value> {
        self.entries.iter().find(|(k, _)| int_value(k) == Some(key)).map(|(_, v)| v)
    }

    pub fn int_keys(&self) -> impl Iterator<Item = Option<i64>> + 'a {
        self.entries.iter().map(|(k, _)| int_value(k))
    }
}

/// The value of a CBOR integer if it fits in an `i64`.
pub fn int_value(value: &Value) -> Option<i64> {
    let int: Integer = value.as_integer()?;
    i64::try_from(i128::from(int)).ok()
}

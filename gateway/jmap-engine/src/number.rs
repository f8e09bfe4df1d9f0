//! `Int` and `UnsignedInt` (RFC 8620 §1.3): integers in the range a double holds exactly.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 2^53 - 1, the largest JMAP integer.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// Why a JSON value is not a JMAP integer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInt {
    #[error("{0} is outside -2^53+1 ..= 2^53-1")]
    OutOfRange(String),
    #[error("{0} is negative, an UnsignedInt must be >= 0")]
    Negative(i64),
    #[error("{0} is not an integer")]
    NotInteger(String),
}

/// An integer in -2^53+1 ..= 2^53-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Int(i64);

/// An integer in 0 ..= 2^53-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnsignedInt(u64);

impl Int {
    pub const ZERO: Int = Int(0);

    pub fn new(value: i64) -> Result<Self, InvalidInt> {
        if (-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&value) {
            Ok(Int(value))
        } else {
            Err(InvalidInt::OutOfRange(value.to_string()))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl UnsignedInt {
    pub const ZERO: UnsignedInt = UnsignedInt(0);

    pub fn new(value: u64) -> Result<Self, InvalidInt> {
        if value <= MAX_SAFE_INTEGER as u64 {
            Ok(UnsignedInt(value))
        } else {
            Err(InvalidInt::OutOfRange(value.to_string()))
        }
    }

    /// Clamps to 2^53-1; for server-computed counts that cannot realistically exceed it.
    pub fn saturating(value: u64) -> Self {
        UnsignedInt(value.min(MAX_SAFE_INTEGER as u64))
    }

    /// Clamps to 2^53-1, for `usize` lengths.
    pub fn from_usize(value: usize) -> Self {
        Self::saturating(u64::try_from(value).unwrap_or(u64::MAX))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<&serde_json::Value> for Int {
    type Error = InvalidInt;
    fn try_from(value: &serde_json::Value) -> Result<Self, Self::Error> {
        if let Some(n) = value.as_i64() {
            return Int::new(n);
        }
        if value.as_u64().is_some() {
            return Err(InvalidInt::OutOfRange(value.to_string()));
        }
        Err(InvalidInt::NotInteger(value.to_string()))
    }
}

impl TryFrom<&serde_json::Value> for UnsignedInt {
    type Error = InvalidInt;
    fn try_from(value: &serde_json::Value) -> Result<Self, Self::Error> {
        let n = Int::try_from(value)?.get();
        if n < 0 {
            return Err(InvalidInt::Negative(n));
        }
        UnsignedInt::new(n.unsigned_abs())
    }
}

impl fmt::Display for Int {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for UnsignedInt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for Int {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl Serialize for UnsignedInt {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Int::try_from(&value).map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for UnsignedInt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        UnsignedInt::try_from(&value).map_err(serde::de::Error::custom)
    }
}

impl From<UnsignedInt> for Int {
    fn from(value: UnsignedInt) -> Self {
        // Both ranges end at 2^53-1, so the cast is exact.
        Int(value.0 as i64)
    }
}

//! JSON Pointer (RFC 6901) with JMAP's `*` extension for result references (RFC 8620 §3.7).

use std::fmt;

use serde_json::{Map, Value};

/// A parsed JSON Pointer: its reference tokens, unescaped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JsonPointer {
    tokens: Vec<String>,
}

/// Why a pointer is malformed or does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    #[error("a JSON Pointer must be empty or start with '/': {0:?}")]
    NoLeadingSlash(String),
    #[error("'~' must be followed by '0' or '1' in {0:?}")]
    BadEscape(String),
    #[error("{at}: no member {token:?}")]
    NoSuchMember { at: String, token: String },
    #[error("{at}: {token:?} is not an index into an array of {len}")]
    BadIndex {
        at: String,
        token: String,
        len: usize,
    },
    #[error("{at}: cannot descend into a {kind} with {token:?}")]
    NotContainer {
        at: String,
        token: String,
        kind: &'static str,
    },
}

impl JsonPointer {
    /// The pointer to the whole document.
    pub fn root() -> Self {
        JsonPointer { tokens: Vec::new() }
    }

    /// Parses an RFC 6901 string: `""` or `/token/token…`.
    pub fn parse(text: &str) -> Result<Self, PointerError> {
        if text.is_empty() {
            return Ok(Self::root());
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(text.to_owned()));
        };
        let tokens = rest
            .split('/')
            .map(|raw| unescape(raw).ok_or_else(|| PointerError::BadEscape(text.to_owned())))
            .collect::<Result<_, _>>()?;
        Ok(JsonPointer { tokens })
    }

    /// Parses a PatchObject key: a pointer with an implicit leading `/` (RFC 8620 §5.3).
    pub fn parse_patch_path(key: &str) -> Result<Self, PointerError> {
        let tokens = key
            .split('/')
            .map(|raw| unescape(raw).ok_or_else(|| PointerError::BadEscape(key.to_owned())))
            .collect::<Result<_, _>>()?;
        Ok(JsonPointer { tokens })
    }

    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }

    /// True when every token of `self` starts `other` (a pointer is a prefix of itself).
    pub fn is_prefix_of(&self, other: &JsonPointer) -> bool {
        other.tokens.starts_with(&self.tokens)
    }

    /// Plain RFC 6901 evaluation.
    pub fn get<'v>(&self, value: &'v Value) -> Result<&'v Value, PointerError> {
        let mut current = value;
        for (depth, token) in self.tokens.iter().enumerate() {
            current = step(current, token, || self.prefix_text(depth))?;
        }
        Ok(current)
    }

    /// Evaluation with the JMAP addition: on an array, the token `*` applies the rest of the
    /// pointer to every item and collects the results in order, flattening results that are
    /// themselves arrays.
    pub fn evaluate(&self, value: &Value) -> Result<Value, PointerError> {
        self.evaluate_from(value, 0)
    }

    /// [`JsonPointer::evaluate`] on an object held as a map, without cloning it whole first.
    pub fn evaluate_in_object(&self, object: &Map<String, Value>) -> Result<Value, PointerError> {
        let Some(first) = self.tokens.first() else {
            return Ok(Value::Object(object.clone()));
        };
        let member = object
            .get(first)
            .ok_or_else(|| PointerError::NoSuchMember {
                at: self.prefix_text(0),
                token: first.clone(),
            })?;
        self.evaluate_from(member, 1)
    }

    fn evaluate_from(&self, value: &Value, depth: usize) -> Result<Value, PointerError> {
        let mut current = value;
        for (index, token) in self.tokens.iter().enumerate().skip(depth) {
            if let (Value::Array(items), "*") = (current, token.as_str()) {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match self.evaluate_from(item, index + 1)? {
                        Value::Array(inner) => out.extend(inner),
                        other => out.push(other),
                    }
                }
                return Ok(Value::Array(out));
            }
            current = step(current, token, || self.prefix_text(index))?;
        }
        Ok(current.clone())
    }

    /// The pointer text of the first `len` tokens, for error messages.
    fn prefix_text(&self, len: usize) -> String {
        let mut text = String::new();
        for token in &self.tokens[..len.min(self.tokens.len())] {
            text.push('/');
            text.push_str(&escape(token));
        }
        if text.is_empty() {
            text.push_str("(root)");
        }
        text
    }
}

fn step<'v>(
    current: &'v Value,
    token: &str,
    at: impl Fn() -> String,
) -> Result<&'v Value, PointerError> {
    match current {
        Value::Object(members) => members
            .get(token)
            .ok_or_else(|| PointerError::NoSuchMember {
                at: at(),
                token: token.to_owned(),
            }),
        Value::Array(items) => array_index(token)
            .and_then(|i| items.get(i))
            .ok_or_else(|| PointerError::BadIndex {
                at: at(),
                token: token.to_owned(),
                len: items.len(),
            }),
        other => Err(PointerError::NotContainer {
            at: at(),
            token: token.to_owned(),
            kind: kind_of(other),
        }),
    }
}

/// An RFC 6901 array index: `0` or digits without a leading zero.
pub(crate) fn array_index(token: &str) -> Option<usize> {
    let well_formed = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    if well_formed {
        token.parse().ok()
    } else {
        None
    }
}

pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for token in &self.tokens {
            write!(f, "/{}", escape(token))?;
        }
        Ok(())
    }
}

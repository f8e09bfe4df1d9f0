//! The Session resource (RFC 8620 §2) and the push StateChange object (§7.1).

use std::collections::BTreeMap;

use serde::de::Deserializer;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{Id, UnsignedInt};

/// The core capability, which every server has and every request may use.
pub const CORE_CAPABILITY: &str = "urn:ietf:params:jmap:core";
/// RFC 8621 mail.
pub const MAIL_CAPABILITY: &str = "urn:ietf:params:jmap:mail";
/// RFC 8621 email submission.
pub const SUBMISSION_CAPABILITY: &str = "urn:ietf:params:jmap:submission";
/// RFC 8621 vacation response.
pub const VACATION_RESPONSE_CAPABILITY: &str = "urn:ietf:params:jmap:vacationresponse";

/// The request limits of the core capability. `Default` gives the RFC's suggested minimums.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    pub max_size_upload: UnsignedInt,
    pub max_concurrent_upload: UnsignedInt,
    pub max_size_request: UnsignedInt,
    pub max_concurrent_requests: UnsignedInt,
    pub max_calls_in_request: UnsignedInt,
    pub max_objects_in_get: UnsignedInt,
    pub max_objects_in_set: UnsignedInt,
}

impl Default for Limits {
    fn default() -> Self {
        let n = UnsignedInt::saturating;
        Limits {
            max_size_upload: n(50_000_000),
            max_concurrent_upload: n(4),
            max_size_request: n(10_000_000),
            max_concurrent_requests: n(4),
            max_calls_in_request: n(16),
            max_objects_in_get: n(500),
            max_objects_in_set: n(500),
        }
    }
}

/// The value of `urn:ietf:params:jmap:core` in the Session's capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CoreCapability {
    #[serde(flatten)]
    pub limits: Limits,
    pub collation_algorithms: Vec<String>,
}

impl Default for CoreCapability {
    fn default() -> Self {
        CoreCapability {
            limits: Limits::default(),
            collation_algorithms: vec![
                "i;ascii-numeric".into(),
                "i;ascii-casemap".into(),
                "i;unicode-casemap".into(),
            ],
        }
    }
}

/// The server's capabilities: the core one, typed, and any others as JSON objects.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capabilities {
    pub core: CoreCapability,
    pub others: BTreeMap<String, Value>,
}

impl Capabilities {
    /// True when `capability` is the core one or one of the others.
    pub fn supports(&self, capability: &str) -> bool {
        capability == CORE_CAPABILITY || self.others.contains_key(capability)
    }
}

impl Serialize for Capabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.others.len() + 1))?;
        map.serialize_entry(CORE_CAPABILITY, &self.core)?;
        for (name, value) in &self.others {
            if name != CORE_CAPABILITY {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Capabilities {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut others = BTreeMap::<String, Value>::deserialize(deserializer)?;
        let core = others
            .remove(CORE_CAPABILITY)
            .ok_or_else(|| serde::de::Error::missing_field(CORE_CAPABILITY))?;
        let core = CoreCapability::deserialize(core).map_err(serde::de::Error::custom)?;
        Ok(Capabilities { core, others })
    }
}

/// An Account object in the Session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub name: String,
    pub is_personal: bool,
    pub is_read_only: bool,
    /// Capability URI → that capability's account-level information.
    pub account_capabilities: BTreeMap<String, Value>,
}

/// The Session object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub capabilities: Capabilities,
    pub accounts: BTreeMap<Id, Account>,
    /// Capability URI → the user's default account for it.
    pub primary_accounts: BTreeMap<String, Id>,
    pub username: String,
    pub api_url: String,
    /// URI Template with `accountId`, `blobId`, `type` and `name`.
    pub download_url: String,
    /// URI Template with `accountId`.
    pub upload_url: String,
    /// URI Template with `types`, `closeafter` and `ping`.
    pub event_source_url: String,
    pub state: String,
}

/// A push StateChange (RFC 8620 §7.1): account id → data type name → new state string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StateChange {
    pub changed: BTreeMap<Id, BTreeMap<String, String>>,
}

impl StateChange {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `data_type` in `account_id` is now at `state`; later calls win, so bursts
    /// coalesce to the last state.
    pub fn record(
        &mut self,
        account_id: Id,
        data_type: impl Into<String>,
        state: impl Into<String>,
    ) {
        self.changed
            .entry(account_id)
            .or_default()
            .insert(data_type.into(), state.into());
    }

    /// Folds a later StateChange into this one.
    pub fn merge(&mut self, later: StateChange) {
        for (account, types) in later.changed {
            self.changed.entry(account).or_default().extend(types);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl Serialize for StateChange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("@type", "StateChange")?;
        map.serialize_entry("changed", &self.changed)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for StateChange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut object = Map::deserialize(deserializer)?;
        match object.remove("@type") {
            Some(Value::String(t)) if t == "StateChange" => {}
            _ => return Err(serde::de::Error::custom("@type must be \"StateChange\"")),
        }
        let changed = object
            .remove("changed")
            .ok_or_else(|| serde::de::Error::missing_field("changed"))?;
        let changed = BTreeMap::deserialize(changed).map_err(serde::de::Error::custom)?;
        Ok(StateChange { changed })
    }
}

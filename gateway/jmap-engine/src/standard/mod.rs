//! The standard methods' arguments and responses (RFC 8620 §5), written once and reused by every
//! data type: a type's handler parses its request with `from_arguments`, answers with the
//! response struct, and adds its own extra arguments through [`crate::ExtraArguments`].

mod changes;
mod copy;
mod filter;
mod get;
mod query;
mod query_changes;
mod set;

pub use changes::{ChangesRequest, ChangesResponse};
pub use copy::{CopyRequest, CopyResponse};
pub use filter::{Comparator, Filter, FilterOperator, Operator};
pub use get::{GetRequest, GetResponse};
pub use query::{QueryPage, QueryRequest, QueryResponse, paginate};
pub use query_changes::{AddedItem, QueryChangesRequest, QueryChangesResponse};
pub use set::{SetRequest, SetResponse};

use serde_json::{Map, Value};

/// Converts a response struct into the arguments object of its invocation.
pub(crate) fn to_arguments<T: serde::Serialize>(value: &T) -> Map<String, Value> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

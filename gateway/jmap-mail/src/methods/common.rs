//! Conversions every mail method needs: ids between the engine and the store, and store or
//! sync failures as method errors.

use jmap_engine::{Id, MethodError};
use state::ObjectId;

use crate::SyncError;

/// A client-given id as a store id; an id the store cannot hold cannot exist.
pub fn object_id(id: &Id) -> Option<ObjectId> {
    ObjectId::new(id.as_str()).ok()
}

/// A store id as a JMAP id.
pub fn jmap_id(id: &ObjectId) -> Result<Id, MethodError> {
    Id::new(id.as_str()).map_err(|e| MethodError::server_fail(e.to_string()))
}

/// A store error as a method error: the client's business by its JMAP type, else serverFail.
pub fn store_error(e: state::Error) -> MethodError {
    match e.jmap_type() {
        Some("cannotCalculateChanges") => MethodError::cannot_calculate_changes(),
        Some("anchorNotFound") => MethodError::anchor_not_found(),
        Some("tooManyChanges") => MethodError::too_many_changes(),
        Some("unsupportedSort") => MethodError::unsupported_sort(e.to_string()),
        Some(_) => MethodError::invalid_arguments(e.to_string()),
        None => {
            tracing::error!("store failure: {e}");
            MethodError::server_fail("the store failed")
        }
    }
}

/// A sync-driver failure that ends a whole method call (not one object's SetError).
pub fn sync_error(e: SyncError) -> MethodError {
    tracing::warn!("upstream write failed: {e}");
    MethodError::server_unavailable().with_description(e.to_string())
}

/// A blob that could not be read, as a method error.
pub fn blob_error(e: super::BlobError) -> MethodError {
    match e {
        super::BlobError::Store(e) => store_error(e),
        super::BlobError::Upstream(e) => sync_error(e),
    }
}

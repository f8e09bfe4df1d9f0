//! Conversions every mail method needs: ids between the engine and the store, and store or
//! sync failures as method errors.

use jmap_engine::standard::{ChangesRequest, ChangesResponse};
use jmap_engine::{Id, MethodError, NoExtra, UnsignedInt};
use state::{AccountId, AsyncStore, DataType, ObjectId};

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

/// A /changes answer from the store's change log of `t` (RFC 8620 §5.2); `extra` adds the
/// type's own response arguments (Mailbox's `updatedProperties`).
pub async fn changes_from_log<X>(
    store: &AsyncStore,
    a: AccountId,
    t: DataType,
    request: ChangesRequest<NoExtra>,
    extra: impl FnOnce(&state::Changes) -> X,
) -> Result<ChangesResponse<X>, MethodError> {
    let changes = store
        .changes(
            a,
            t,
            request.since_state.clone(),
            request.max_changes.map(UnsignedInt::get),
        )
        .await
        .map_err(store_error)?;
    let ids = |v: &[ObjectId]| v.iter().map(jmap_id).collect::<Result<Vec<_>, _>>();
    Ok(ChangesResponse {
        account_id: request.account_id,
        old_state: changes.old_state.to_string(),
        new_state: changes.new_state.to_string(),
        has_more_changes: changes.has_more_changes,
        created: ids(&changes.created)?,
        updated: ids(&changes.updated)?,
        destroyed: ids(&changes.destroyed)?,
        extra: extra(&changes),
    })
}

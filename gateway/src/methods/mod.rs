//! The JMAP methods the gateway registers with the engine, and the account directory that
//! resolves a call's `accountId` against the authenticated user's own accounts.

mod blob;
mod stored;

use std::sync::Arc;

use jmap_engine::{AccountDirectory, AccountError, CORE_CAPABILITY, Id};
use state::AsyncStore;

use crate::accounts::{AccountEntry, UserEntry};

pub use blob::{BlobCopy, blob_key, new_blob_id};
pub use stored::StoredType;

/// One resolved account: which it is, and the store it lives in.
#[derive(Debug, Clone)]
pub struct AccountHandle {
    pub entry: AccountEntry,
    pub store: AsyncStore,
}

/// Resolves accounts from the user snapshot the HTTP layer authenticated: another user's
/// account is simply not in it, so it is `accountNotFound`.
#[derive(Debug, Clone)]
pub struct Directory {
    pub store: AsyncStore,
}

impl AccountDirectory for Directory {
    type User = Arc<UserEntry>;
    type Account = AccountHandle;

    fn resolve(
        &self,
        user: &Arc<UserEntry>,
        account_id: &Id,
        capability: &str,
    ) -> Result<AccountHandle, AccountError> {
        let entry = user
            .account(account_id.as_str())
            .ok_or(AccountError::NotFound)?;
        if capability != CORE_CAPABILITY && !entry.capabilities.contains_key(capability) {
            return Err(AccountError::NotSupportedByMethod);
        }
        Ok(AccountHandle {
            entry: entry.clone(),
            store: self.store.clone(),
        })
    }

    fn is_read_only(&self, account: &AccountHandle) -> bool {
        account.entry.is_read_only
    }
}

/// A store error as a method error: the client's business by its JMAP type, else serverFail.
pub fn store_error(e: state::Error) -> jmap_engine::MethodError {
    use jmap_engine::MethodError;
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

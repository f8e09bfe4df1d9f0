//! The JMAP methods the gateway registers with the engine, and the account directory that
//! resolves a call's `accountId` against the authenticated user's own accounts.

mod blob;
mod stored;

use std::sync::Arc;

use jmap_engine::{AccountDirectory, AccountError, CORE_CAPABILITY, Id};
use jmap_mail::AccountSync;
use jmap_mail::methods::{MailAccount, QuotaInfo, Submitter, VacationBackend};
use state::{AccountId, AsyncStore};

use crate::accounts::{AccountEntry, UserEntry};
use crate::mail::{LiveAccount, MailAccounts};

pub use blob::{BlobCopy, UPLOAD_LIFETIME_SECS, blob_key, new_blob_id, upload_expiry};
pub use stored::StoredType;

/// One resolved account: which it is, the store it lives in, and its sync driver if it is a
/// mail account that runs.
#[derive(Debug, Clone)]
pub struct AccountHandle {
    pub entry: AccountEntry,
    pub store: AsyncStore,
    pub live: Option<Arc<LiveAccount>>,
}

impl MailAccount for AccountHandle {
    fn store(&self) -> &AsyncStore {
        &self.store
    }

    fn store_id(&self) -> AccountId {
        self.entry.store_id
    }

    fn sync(&self) -> Option<&AccountSync> {
        self.live.as_ref().map(|l| &l.sync)
    }

    fn address(&self) -> Option<&str> {
        self.live.as_ref().and_then(|l| l.address.as_deref())
    }

    fn submitter(&self) -> Option<&Arc<dyn Submitter>> {
        self.live.as_ref().and_then(|l| l.submitter.as_ref())
    }

    fn vacation(&self) -> Option<&Arc<dyn VacationBackend>> {
        self.live.as_ref().and_then(|l| l.vacation.get())
    }

    fn quotas(&self) -> Vec<QuotaInfo> {
        self.live.as_ref().map(|l| l.quotas()).unwrap_or_default()
    }
}

/// Resolves accounts from the user snapshot the HTTP layer authenticated: another user's
/// account is simply not in it, so it is `accountNotFound`.
#[derive(Debug, Clone)]
pub struct Directory {
    pub store: AsyncStore,
    /// The running mail accounts (None when the gateway syncs no mail).
    pub mail: Option<Arc<MailAccounts>>,
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
            live: self.mail.as_ref().and_then(|m| m.get(entry.store_id)),
        })
    }

    fn is_read_only(&self, account: &AccountHandle) -> bool {
        account.entry.is_read_only
    }
}

/// A store error as a method error (shared with the mail methods).
pub use jmap_mail::methods::store_error;

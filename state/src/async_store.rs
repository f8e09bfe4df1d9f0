//! The async boundary: every RocksDB call runs on tokio's blocking pool, never on the executor.

use std::sync::Arc;

use tokio::sync::watch;

use crate::changes::Changes;
use crate::commit::{Commit, Committed};
use crate::error::{Error, Result};
use crate::notify::AccountStates;
use crate::query::{EmailQuery, QueryChanges, QueryChangesRequest, QueryResult};
use crate::store::Store;
use crate::types::{AccountId, DataType, ObjectId, State};

/// A cloneable async handle on a [`Store`].
#[derive(Debug, Clone)]
pub struct AsyncStore {
    store: Arc<Store>,
}

impl AsyncStore {
    pub fn new(store: Arc<Store>) -> AsyncStore {
        AsyncStore { store }
    }

    /// The blocking store, for code already off the executor.
    pub fn blocking(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs any blocking store call on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }

    pub async fn commit(&self, c: Commit) -> Result<Committed> {
        self.run(move |s| s.commit(c)).await
    }

    pub async fn changes(
        &self,
        a: AccountId,
        t: DataType,
        since_state: String,
        max_changes: Option<u64>,
    ) -> Result<Changes> {
        self.run(move |s| s.changes(a, t, &since_state, max_changes))
            .await
    }

    pub async fn state(&self, a: AccountId, t: DataType) -> Result<State> {
        self.run(move |s| s.state(a, t)).await
    }

    pub async fn get_many(
        &self,
        a: AccountId,
        t: DataType,
        ids: Vec<ObjectId>,
    ) -> Result<(State, Vec<Option<Vec<u8>>>)> {
        self.run(move |s| s.get_many(a, t, &ids)).await
    }

    pub async fn query_emails(&self, a: AccountId, q: EmailQuery) -> Result<QueryResult> {
        self.run(move |s| s.query_emails(a, &q)).await
    }

    pub async fn query_changes(
        &self,
        a: AccountId,
        req: QueryChangesRequest,
    ) -> Result<QueryChanges> {
        self.run(move |s| s.query_changes(a, &req)).await
    }

    pub async fn blob_get(&self, a: AccountId, blob_id: Vec<u8>) -> Result<Option<Vec<u8>>> {
        self.run(move |s| s.blob_get(a, &blob_id)).await
    }

    pub async fn blob_put(&self, a: AccountId, blob_id: Vec<u8>, data: Vec<u8>) -> Result<bool> {
        self.run(move |s| s.blob_put(a, &blob_id, &data)).await
    }

    /// See [`Store::blob_put_pinned`].
    pub async fn blob_put_pinned(
        &self,
        a: AccountId,
        blob_id: Vec<u8>,
        data: Vec<u8>,
        expires: u64,
    ) -> Result<()> {
        self.run(move |s| s.blob_put_pinned(a, &blob_id, &data, expires))
            .await
    }

    /// Subscribes to an account's states (the first subscription reads them from disk).
    pub async fn subscribe(&self, a: AccountId) -> Result<watch::Receiver<AccountStates>> {
        self.run(move |s| s.subscribe(a)).await
    }
}

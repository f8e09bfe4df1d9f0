//! Turning the store's per-account watch channels into StateChange objects for one user.
//!
//! The store publishes each account's latest states on a `tokio::sync::watch` channel, which
//! keeps only the newest value: a slow reader skips intermediate states but always sees the
//! last one. The watcher waits for any account to change, lets a short burst settle, then
//! reports every type whose state differs from what it reported before.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use jmap_engine::{Id, StateChange};
use state::{AccountStates, AsyncStore, DataType};
use tokio::sync::watch;

use crate::accounts::UserEntry;

/// How long a burst of commits may go on before its StateChange is sent.
pub const COALESCE: Duration = Duration::from_millis(15);

/// Account id → type name → state string.
pub type TypeStates = BTreeMap<Id, BTreeMap<String, String>>;

/// The JMAP name of each store data type that clients see in StateChange objects.
#[derive(Debug, Clone)]
pub struct TypeNames(BTreeMap<DataType, String>);

impl Default for TypeNames {
    /// Every per-account type under its own name (PushSubscription is per user: left out).
    fn default() -> Self {
        TypeNames(
            DataType::ALL
                .into_iter()
                .filter(|t| *t != DataType::PushSubscription)
                .map(|t| (t, t.name().to_owned()))
                .collect(),
        )
    }
}

impl TypeNames {
    /// Reports `data_type` under `name` (a data type stored in another type's slot).
    pub fn rename(&mut self, data_type: DataType, name: impl Into<String>) {
        self.0.insert(data_type, name.into());
    }

    pub fn name(&self, data_type: DataType) -> Option<&str> {
        self.0.get(&data_type).map(String::as_str)
    }

    fn named(
        &self,
        states: &AccountStates,
        filter: Option<&HashSet<String>>,
    ) -> BTreeMap<String, String> {
        states
            .0
            .iter()
            .filter_map(|(t, s)| Some((self.name(*t)?.to_owned(), s.to_string())))
            .filter(|(name, _)| filter.is_none_or(|f| f.contains(name)))
            .collect()
    }
}

/// Watches every account of one user.
#[derive(Debug)]
pub struct StateWatcher {
    accounts: Vec<(Id, watch::Receiver<AccountStates>)>,
    names: Arc<TypeNames>,
    filter: Option<HashSet<String>>,
    last: TypeStates,
}

impl StateWatcher {
    /// Subscribes to the user's accounts; `types` of `None` means every type. What the accounts
    /// hold now is the baseline: only later changes are reported.
    pub async fn new(
        store: &AsyncStore,
        user: &UserEntry,
        names: Arc<TypeNames>,
        types: Option<HashSet<String>>,
    ) -> state::Result<StateWatcher> {
        let mut accounts = Vec::with_capacity(user.accounts.len());
        for account in &user.accounts {
            accounts.push((account.id.clone(), store.subscribe(account.store_id).await?));
        }
        let mut watcher = StateWatcher {
            accounts,
            names,
            filter: types,
            last: TypeStates::new(),
        };
        watcher.last = watcher.snapshot();
        Ok(watcher)
    }

    /// Changes the type filter (WebSocketPushEnable's dataTypes).
    pub fn set_types(&mut self, types: Option<HashSet<String>>) {
        self.filter = types;
    }

    /// Makes `baseline` (what a client last saw) the reference for the next report, so a
    /// reconnecting client is told at once what it missed.
    pub fn set_baseline(&mut self, baseline: TypeStates) {
        self.last = baseline;
    }

    /// Everything the user can see now, as account → type → state.
    pub fn snapshot(&mut self) -> TypeStates {
        let filter = self.filter.as_ref();
        self.accounts
            .iter_mut()
            .map(|(id, rx)| {
                (
                    id.clone(),
                    self.names.named(&rx.borrow_and_update(), filter),
                )
            })
            .collect()
    }

    /// The state the client has been told about (for EventSource ids and pushState).
    pub fn reported(&self) -> &TypeStates {
        &self.last
    }

    /// What changed since the last report (possibly nothing); makes it the new reference.
    pub fn take_change(&mut self) -> StateChange {
        let now = self.snapshot();
        let mut change = StateChange::new();
        for (account, types) in &now {
            let before = self.last.get(account);
            for (name, state) in types {
                if before.and_then(|b| b.get(name)) != Some(state) {
                    change.record(account.clone(), name.clone(), state.clone());
                }
            }
        }
        for (account, types) in now {
            self.last.entry(account).or_default().extend(types);
        }
        change
    }

    /// Waits for the next non-empty StateChange.
    pub async fn next(&mut self) -> StateChange {
        loop {
            if self.accounts.is_empty() {
                std::future::pending::<()>().await;
            }
            let waits = self
                .accounts
                .iter_mut()
                .map(|(_, rx)| Box::pin(rx.changed()));
            let (result, index, _) = futures::future::select_all(waits).await;
            if result.is_err() {
                // The store dropped this account's channel: nothing more will come from it.
                self.accounts.remove(index);
                continue;
            }
            tokio::time::sleep(COALESCE).await;
            let change = self.take_change();
            if !change.is_empty() {
                return change;
            }
        }
    }
}

/// An opaque token for "the states the client has seen": URL-safe base64 of their JSON.
pub fn encode_push_state(states: &TypeStates) -> String {
    let json = serde_json::to_vec(states).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
}

/// The states a push token stands for; `None` when it is not one of ours.
pub fn decode_push_state(token: &str) -> Option<TypeStates> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim())
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

//! Per-account notifiers: the commit hook push is built on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::watch;

use crate::error::Result;
use crate::store::lock;
use crate::types::{AccountId, DataType, State};

/// The states of every type of one account.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccountStates(pub BTreeMap<DataType, State>);

impl AccountStates {
    pub fn get(&self, t: DataType) -> Option<State> {
        self.0.get(&t).copied()
    }
}

/// One `watch` channel per subscribed account. A watch keeps only the latest value, so bursts
/// coalesce and the last state is never dropped.
#[derive(Debug, Default)]
pub(crate) struct Notifier {
    senders: Mutex<HashMap<AccountId, watch::Sender<AccountStates>>>,
}

impl Notifier {
    pub(crate) fn subscribe(
        &self,
        a: AccountId,
        current: impl FnOnce() -> Result<AccountStates>,
    ) -> Result<watch::Receiver<AccountStates>> {
        let mut senders = lock(&self.senders);
        if let Some(s) = senders.get(&a) {
            return Ok(s.subscribe());
        }
        // Read under the lock: a commit publishing meanwhile waits and then merges its states.
        let (tx, rx) = watch::channel(current()?);
        senders.insert(a, tx);
        Ok(rx)
    }

    /// Merges new states (never moving a type backwards: commits may publish out of order).
    pub(crate) fn publish(&self, a: AccountId, states: &[State]) {
        let senders = lock(&self.senders);
        if let Some(tx) = senders.get(&a) {
            tx.send_if_modified(|cur| {
                let mut changed = false;
                for s in states {
                    let newer = cur.0.get(&s.data_type).is_none_or(|c| c.modseq < s.modseq);
                    if newer {
                        cur.0.insert(s.data_type, *s);
                        changed = true;
                    }
                }
                changed
            });
        }
    }
}

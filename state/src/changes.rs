//! `/changes`: a range scan of one (account, type) change log from sinceState.

use std::collections::HashMap;

use crate::commit::FLAG_COUNTS_ONLY;
use crate::error::{Error, Result};
use crate::keys::{self, Reader, cf};
use crate::store::Store;
use crate::types::{AccountId, ChangeKind, DataType, ModSeq, ObjectId, State};

/// The Mailbox properties a counts-only change may have touched (RFC 8621 2.2).
pub const MAILBOX_COUNT_PROPERTIES: [&str; 4] = [
    "totalEmails",
    "unreadEmails",
    "totalThreads",
    "unreadThreads",
];

/// A `/changes` answer (RFC 8620 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub old_state: State,
    pub new_state: State,
    pub has_more_changes: bool,
    pub created: Vec<ObjectId>,
    pub updated: Vec<ObjectId>,
    pub destroyed: Vec<ObjectId>,
    /// Mailbox/changes `updatedProperties`: `Some` when every updated mailbox changed only its
    /// counts within the window.
    pub updated_properties: Option<&'static [&'static str]>,
}

/// Parses a client's state string for `t`, refusing anything not from this store.
pub(crate) fn parse_since(store: &Store, t: DataType, since: &str) -> Result<ModSeq> {
    let s = State::parse(since).ok_or(Error::CannotCalculateChanges)?;
    if s.generation != store.generation || s.data_type != t {
        return Err(Error::CannotCalculateChanges);
    }
    Ok(s.modseq)
}

struct Acc {
    first: ChangeKind,
    last: ChangeKind,
    counts_only: bool,
}

impl Store {
    /// `Foo/changes`: what changed in (account, type) since `since_state`, at most
    /// `max_changes` ids (clamped to the configured cap; `None` = the cap). Pages forward
    /// through intermediate states, oldest changes first, so a record is never reported
    /// created after a page that called it updated or destroyed.
    ///
    /// Errors: `InvalidArguments` for `max_changes` of 0; `CannotCalculateChanges` for a
    /// malformed, foreign, future or trimmed-away state.
    pub fn changes(
        &self,
        a: AccountId,
        t: DataType,
        since_state: &str,
        max_changes: Option<u64>,
    ) -> Result<Changes> {
        if max_changes == Some(0) {
            return Err(Error::InvalidArguments("maxChanges must be greater than 0"));
        }
        let since = parse_since(self, t, since_state)?;
        let cap = self.config.max_changes_cap.max(1) as u64;
        let limit = max_changes.map_or(cap, |m| m.min(cap)) as usize;

        let snap = self.db.snapshot();
        let ro = Store::snapshot_opts(&snap);
        let (current, min_since) = self.modseq_record(&ro, a, t)?;
        if since > current || since < min_since {
            return Err(Error::CannotCalculateChanges);
        }

        let prefix = keys::Key::account(a).u8(t.code()).into_vec();
        let mut it = self.prefix_iter(&snap, cf::CHANGE_LOG, &prefix)?;
        it.seek(keys::log_key(a, t, since.saturating_add(1)));
        let mut order: Vec<Vec<u8>> = Vec::new();
        let mut acc: HashMap<Vec<u8>, Acc> = HashMap::new();
        let mut reached = since;
        while let Some((k, v)) = it.item() {
            let modseq = Reader::new(&k[prefix.len()..]).u64()?;
            if modseq > current {
                break;
            }
            let mut r = Reader::new(v);
            let kind =
                ChangeKind::from_code(r.u8()?).ok_or(Error::Corrupt("unknown change kind"))?;
            let flags = r.u8()?;
            r.u64()?;
            let id = r.rest();
            let counts_only = flags & FLAG_COUNTS_ONLY != 0;
            match acc.get_mut(id) {
                Some(e) => {
                    e.last = kind;
                    e.counts_only &= counts_only;
                }
                None => {
                    if order.len() == limit {
                        break;
                    }
                    order.push(id.to_vec());
                    acc.insert(
                        id.to_vec(),
                        Acc {
                            first: kind,
                            last: kind,
                            counts_only,
                        },
                    );
                }
            }
            reached = modseq;
            it.next();
        }
        it.status()?;
        // Every entry up to `current` was consumed unless we stopped early.
        let new = if reached < current && acc.len() < limit {
            // The log ended before `current`: entries were trimmed under us (cannot happen
            // with the snapshot) or are missing. Refuse rather than skip changes.
            return Err(Error::Corrupt("change log has a gap"));
        } else {
            reached
        };

        let mut out = Changes {
            old_state: self.make_state(t, since),
            new_state: self.make_state(t, new),
            has_more_changes: new < current,
            created: Vec::new(),
            updated: Vec::new(),
            destroyed: Vec::new(),
            updated_properties: None,
        };
        let mut all_counts_only = true;
        for id in order {
            let Some(e) = acc.get(&id) else { continue };
            let existed_before = e.first != ChangeKind::Created;
            let exists_after = e.last != ChangeKind::Destroyed;
            let target = match (existed_before, exists_after) {
                (false, true) => &mut out.created,
                (true, true) => {
                    all_counts_only &= e.counts_only;
                    &mut out.updated
                }
                (true, false) => &mut out.destroyed,
                (false, false) => continue,
            };
            target.push(ObjectId::from_disk(&id)?);
        }
        if t == DataType::Mailbox && !out.updated.is_empty() && all_counts_only {
            out.updated_properties = Some(&MAILBOX_COUNT_PROPERTIES);
        }
        Ok(out)
    }
}

//! Shared helpers: a temp store and an in-memory model of the change log.

use std::collections::{BTreeMap, BTreeSet};

use state::{AccountId, Changes, Commit, DataType, ObjectId, Store, StoreConfig};

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub fn id(s: &str) -> ObjectId {
    ObjectId::new(s).unwrap_or_else(|e| panic!("test id {s:?}: {e}"))
}

pub fn open(dir: &std::path::Path, config: StoreConfig) -> Store {
    Store::open(dir, config).unwrap_or_else(|e| panic!("open store: {e}"))
}

/// One operation on an object of one account.
#[derive(Debug, Clone)]
pub enum ModelOp {
    Put(DataType, String, Vec<u8>),
    Destroy(DataType, String),
}

impl ModelOp {
    pub fn add_to(&self, c: &mut Commit) {
        match self {
            ModelOp::Put(t, i, b) => c.put(*t, id(i), b.clone()),
            ModelOp::Destroy(t, i) => c.destroy(*t, id(i)),
        };
    }
}

#[derive(Debug, Default, Clone)]
pub struct TypeModel {
    pub modseq: u64,
    pub objects: BTreeMap<String, Vec<u8>>,
    /// (modseq, id, exists after)
    pub history: Vec<(u64, String, bool)>,
}

impl TypeModel {
    pub fn exists_at(&self, modseq: u64) -> BTreeSet<String> {
        let mut s = BTreeSet::new();
        for (m, i, e) in &self.history {
            if *m > modseq {
                break;
            }
            if *e {
                s.insert(i.clone());
            } else {
                s.remove(i);
            }
        }
        s
    }

    /// (created, updated, destroyed) between two modseqs, as sets.
    pub fn diff(
        &self,
        from: u64,
        to: u64,
    ) -> (BTreeSet<String>, BTreeSet<String>, BTreeSet<String>) {
        let before = self.exists_at(from);
        let after = self.exists_at(to);
        let touched: BTreeSet<String> = self
            .history
            .iter()
            .filter(|(m, _, _)| *m > from && *m <= to)
            .map(|(_, i, _)| i.clone())
            .collect();
        let created = after.difference(&before).cloned().collect();
        let destroyed = before.difference(&after).cloned().collect();
        let updated = before
            .intersection(&after)
            .filter(|i| touched.contains(*i))
            .cloned()
            .collect();
        (created, updated, destroyed)
    }
}

/// The change-log semantics of the store, for objects without email facts.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub types: BTreeMap<(u64, DataType), TypeModel>,
}

impl Model {
    pub fn apply(&mut self, account: u64, op: &ModelOp) {
        match op {
            ModelOp::Put(t, i, b) => {
                let m = self.types.entry((account, *t)).or_default();
                if m.objects.get(i) == Some(b) {
                    return;
                }
                m.objects.insert(i.clone(), b.clone());
                m.modseq += 1;
                let ms = m.modseq;
                m.history.push((ms, i.clone(), true));
            }
            ModelOp::Destroy(t, i) => {
                let m = self.types.entry((account, *t)).or_default();
                if m.objects.remove(i).is_none() {
                    return;
                }
                m.modseq += 1;
                let ms = m.modseq;
                m.history.push((ms, i.clone(), false));
            }
        }
    }

    pub fn get(&self, account: u64, t: DataType) -> TypeModel {
        self.types.get(&(account, t)).cloned().unwrap_or_default()
    }
}

pub fn set(ids: &[ObjectId]) -> BTreeSet<String> {
    ids.iter().map(|i| i.as_str().to_owned()).collect()
}

/// Pages /changes from `since` to the end with `max`, checking each page against the model.
/// Returns the number of pages, or `Err` text describing the first mismatch.
pub fn check_changes_paging(
    store: &Store,
    account: u64,
    t: DataType,
    model: &TypeModel,
    since: &str,
    max: Option<u64>,
) -> Result<usize, String> {
    let mut since = since.to_owned();
    let mut pages = 0;
    loop {
        let ch: Changes = store
            .changes(AccountId(account), t, &since, max)
            .map_err(|e| format!("changes({since}): {e}"))?;
        pages += 1;
        let n = ch.created.len() + ch.updated.len() + ch.destroyed.len();
        if let Some(m) = max
            && n as u64 > m
        {
            return Err(format!("page has {n} ids > max {m}"));
        }
        let from = ch.old_state.modseq();
        let to = ch.new_state.modseq();
        let (c, u, d) = model.diff(from, to);
        if (set(&ch.created), set(&ch.updated), set(&ch.destroyed))
            != (c.clone(), u.clone(), d.clone())
        {
            return Err(format!(
                "{t:?} acct {account} {from}..{to}: got c={:?} u={:?} d={:?}, model c={c:?} u={u:?} d={d:?}",
                ch.created, ch.updated, ch.destroyed
            ));
        }
        if ch.has_more_changes {
            if to <= from {
                return Err("no progress on a page with more changes".into());
            }
            since = ch.new_state.to_string();
        } else {
            if to != model.modseq {
                return Err(format!("final state {to} != model {}", model.modseq));
            }
            return Ok(pages);
        }
        if pages > 100_000 {
            return Err("paging does not end".into());
        }
    }
}

//! Log trimming by age (the count bound is enforced inside every commit), and cleanup of the
//! per-mailbox membership log below the Email log's trim point.

use std::time::SystemTime;

use rocksdb::WriteBatch;

use crate::error::{Error, Result};
use crate::keys::{self, Key, Reader, cf};
use crate::store::{Store, lock};
use crate::types::{AccountId, DataType};

/// What one [`Store::trim`] pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// (account, type) logs whose trim point moved.
    pub logs_trimmed: u64,
    /// Mailbox-log ranges deleted.
    pub mailbox_log_ranges: u64,
    /// Pinned blobs (uploads) removed because their time was up.
    pub expired_blobs: u64,
}

impl Store {
    /// Trims change-log entries older than `max_log_age` (as of `now`), moving each trim point
    /// so older states answer cannotCalculateChanges, and drops membership events no longer
    /// reachable. Cost: proportional to what is trimmed plus the number of (account, type)
    /// pairs and mailboxes. Run it periodically (e.g. hourly) off the executor.
    pub fn trim(&self, now: SystemTime) -> Result<TrimReport> {
        let _guard = lock(&self.writer);
        let mut report = TrimReport::default();
        let cutoff_ms = match self.config.max_log_age {
            Some(age) => now
                .checked_sub(age)
                .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as u64),
            None => None,
        };
        let snap = self.db.snapshot();
        let mut records = Vec::new();
        let mut it = self.prefix_iter(&snap, cf::MODSEQ, &[])?;
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            let mut r = Reader::new(k);
            let a = AccountId(r.u64()?);
            let t = DataType::from_code(r.u8()?).ok_or(Error::Corrupt("unknown type code"))?;
            let mut r = Reader::new(v);
            records.push((a, t, r.u64()?, r.u64()?));
            it.next();
        }
        it.status()?;
        drop(it);

        let mut wb = WriteBatch::default();
        for (a, t, current, min_since) in records {
            let mut new_min = min_since;
            if let Some(cutoff) = cutoff_ms {
                let prefix = Key::account(a).u8(t.code()).into_vec();
                let mut it = self.prefix_iter(&snap, cf::CHANGE_LOG, &prefix)?;
                it.seek(keys::log_key(a, t, min_since.saturating_add(1)));
                while let Some((k, v)) = it.item() {
                    let m = Reader::new(&k[prefix.len()..]).u64()?;
                    let mut r = Reader::new(v);
                    r.take(2)?;
                    if r.u64()? >= cutoff || m > current {
                        break;
                    }
                    new_min = m;
                    it.next();
                }
                it.status()?;
            }
            if new_min > min_since {
                wb.delete_range_cf(
                    self.cf(cf::CHANGE_LOG)?,
                    keys::log_key(a, t, 0),
                    keys::log_key(a, t, new_min + 1),
                );
                let mut v = current.to_be_bytes().to_vec();
                v.extend_from_slice(&new_min.to_be_bytes());
                wb.put_cf(self.cf(cf::MODSEQ)?, keys::modseq_key(a, t), v);
                report.logs_trimmed += 1;
            }
            if t == DataType::Email && new_min > 0 {
                report.mailbox_log_ranges += self.trim_mailbox_log(&snap, &mut wb, a, new_min)?;
            }
        }
        self.db.write(wb)?;
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        report.expired_blobs = self.expire_pinned_blobs(now_secs)?;
        Ok(report)
    }

    /// Deletes membership events at or below `min_since` for every (mailbox, view) of `a`,
    /// skip-scanning from one (mailbox, view) to the next.
    fn trim_mailbox_log(
        &self,
        snap: &rocksdb::Snapshot<'_>,
        wb: &mut WriteBatch,
        a: AccountId,
        min_since: u64,
    ) -> Result<u64> {
        let prefix = Key::account(a).into_vec();
        let mut it = self.prefix_iter(snap, cf::MAILBOX_LOG, &prefix)?;
        it.seek_to_first();
        let mut n = 0;
        while let Some(k) = it.key() {
            let mut r = Reader::new(&k[prefix.len()..]);
            let m = r.lp()?.to_vec();
            let v = r.u8()?;
            let first = r.u64()?;
            let base = Key::account(a).lp(&m).u8(v);
            if first <= min_since {
                wb.delete_range_cf(
                    self.cf(cf::MAILBOX_LOG)?,
                    base.clone().u64(0).into_vec(),
                    base.clone().u64(min_since + 1).into_vec(),
                );
                n += 1;
            }
            match keys::prefix_end(&base.0) {
                Some(next) => it.seek(next),
                None => break,
            }
        }
        it.status()?;
        Ok(n)
    }
}

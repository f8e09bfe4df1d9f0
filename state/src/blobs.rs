//! The blob cache: message bodies and attachments fetched upstream on first demand, bounded by
//! total size, evicting the least recently used, persistent across restarts.
//!
//! Every get bumps the blob's last-use tick (a small unsynced write: losing a tick on power
//! loss only makes eviction slightly less exact). Ticks are a persistent counter, so recency
//! order survives restarts. The total size is kept in `meta` in the same batch as each change.

use rocksdb::{DB, WriteBatch, WriteOptions};

use crate::error::{Error, Result};
use crate::keys::{self, Key, Reader, cf, meta};
use crate::store::{Store, lock};
use crate::types::AccountId;

#[derive(Debug, Default)]
pub(crate) struct BlobState {
    total: u64,
    next_tick: u64,
}

impl BlobState {
    pub(crate) fn load(db: &DB) -> Result<BlobState> {
        let metacf = db
            .cf_handle(cf::META)
            .ok_or(Error::Corrupt("missing meta column family"))?;
        let total = db
            .get_cf(metacf, meta::BLOB_BYTES)?
            .map(|v| keys::decode_u64(&v))
            .transpose()?
            .unwrap_or(0);
        let lru = db
            .cf_handle(cf::BLOB_LRU)
            .ok_or(Error::Corrupt("missing blob_lru column family"))?;
        let mut it = db.raw_iterator_cf(lru);
        it.seek_to_last();
        let next_tick = match it.key() {
            Some(k) => Reader::new(k).u64()? + 1,
            None => {
                it.status()?;
                1
            }
        };
        Ok(BlobState { total, next_tick })
    }
}

fn blob_key(a: AccountId, id: &[u8]) -> Vec<u8> {
    Key::account(a).raw(id).into_vec()
}

fn lru_key(tick: u64, a: AccountId, id: &[u8]) -> Vec<u8> {
    Key(tick.to_be_bytes().to_vec()).u64(a.0).raw(id).into_vec()
}

/// A pinned blob's metadata: tick (unused, `u64::MAX`), size, expiry.
const PINNED_META_LEN: usize = 24;

fn meta_value(tick: u64, size: u64) -> Vec<u8> {
    let mut v = tick.to_be_bytes().to_vec();
    v.extend_from_slice(&size.to_be_bytes());
    v
}

impl Store {
    /// Caches a blob. Returns `false` (and caches nothing) when it alone exceeds the bound.
    pub fn blob_put(&self, a: AccountId, blob_id: &[u8], data: &[u8]) -> Result<bool> {
        if blob_id.is_empty() {
            return Err(Error::InvalidArguments("empty blob id"));
        }
        let size = data.len() as u64;
        if size > self.config.blob_cache_bytes {
            return Ok(false);
        }
        let mut st = lock(&self.blobs);
        let (bcf, mcf, lcf, metacf) = (
            self.cf(cf::BLOBS)?,
            self.cf(cf::BLOB_META)?,
            self.cf(cf::BLOB_LRU)?,
            self.cf(cf::META)?,
        );
        let key = blob_key(a, blob_id);
        let mut wb = WriteBatch::default();
        let mut total = st.total;
        if let Some(old) = self.db.get_cf(mcf, &key)? {
            if old.len() == PINNED_META_LEN {
                // An upload with this id is kept anyway; the cache need not hold it too.
                return Ok(true);
            }
            let mut r = Reader::new(&old);
            let (tick, old_size) = (r.u64()?, r.u64()?);
            wb.delete_cf(lcf, lru_key(tick, a, blob_id));
            total = total.saturating_sub(old_size);
        }
        let tick = st.next_tick;
        wb.put_cf(bcf, &key, data);
        wb.put_cf(mcf, &key, meta_value(tick, size));
        wb.put_cf(lcf, lru_key(tick, a, blob_id), []);
        total += size;

        // Evict least recently used until under the bound.
        if total > self.config.blob_cache_bytes {
            let mut it = self.db.raw_iterator_cf(lcf);
            it.seek_to_first();
            while total > self.config.blob_cache_bytes {
                let Some(k) = it.key() else {
                    it.status()?;
                    break;
                };
                let mut r = Reader::new(k);
                r.u64()?;
                let victim_account = AccountId(r.u64()?);
                let victim = r.rest();
                if victim_account == a && victim == blob_id {
                    it.next();
                    continue;
                }
                let vkey = blob_key(victim_account, victim);
                // (Pinned blobs have no LRU entry, so they are never victims.)
                if let Some(m) = self.db.get_cf(mcf, &vkey)? {
                    let mut r = Reader::new(&m);
                    r.u64()?;
                    total = total.saturating_sub(r.u64()?);
                }
                wb.delete_cf(bcf, &vkey);
                wb.delete_cf(mcf, &vkey);
                wb.delete_cf(lcf, k);
                it.next();
            }
        }
        wb.put_cf(metacf, meta::BLOB_BYTES, total.to_be_bytes());
        self.db.write_opt(wb, &WriteOptions::default())?;
        st.total = total;
        st.next_tick = tick + 1;
        Ok(true)
    }

    /// Keeps a blob a client uploaded until `expires` (seconds since the epoch), whatever the
    /// cache does: it is not counted against the cache bound and never evicted, only removed
    /// by [`Store::trim`] once expired (RFC 8620 §6.1 asks for at least an hour). Written with
    /// a synced WAL, as the upload is acknowledged to the client.
    pub fn blob_put_pinned(
        &self,
        a: AccountId,
        blob_id: &[u8],
        data: &[u8],
        expires: u64,
    ) -> Result<()> {
        if blob_id.is_empty() {
            return Err(Error::InvalidArguments("empty blob id"));
        }
        let mut st = lock(&self.blobs);
        let (bcf, mcf, lcf, metacf) = (
            self.cf(cf::BLOBS)?,
            self.cf(cf::BLOB_META)?,
            self.cf(cf::BLOB_LRU)?,
            self.cf(cf::META)?,
        );
        let key = blob_key(a, blob_id);
        let mut wb = WriteBatch::default();
        let mut total = st.total;
        if let Some(old) = self.db.get_cf(mcf, &key)?
            && old.len() != PINNED_META_LEN
        {
            // Cached already: it leaves the cache (and its bound) to be kept instead.
            let mut r = Reader::new(&old);
            let (tick, old_size) = (r.u64()?, r.u64()?);
            wb.delete_cf(lcf, lru_key(tick, a, blob_id));
            total = total.saturating_sub(old_size);
            wb.put_cf(metacf, meta::BLOB_BYTES, total.to_be_bytes());
        }
        wb.put_cf(bcf, &key, data);
        let mut meta = meta_value(u64::MAX, data.len() as u64);
        meta.extend_from_slice(&expires.to_be_bytes());
        wb.put_cf(mcf, &key, meta);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(wb, &opts)?;
        st.total = total;
        Ok(())
    }

    /// Removes pinned blobs whose time is up; returns how many.
    pub(crate) fn expire_pinned_blobs(&self, now_secs: u64) -> Result<u64> {
        let _st = lock(&self.blobs);
        let (bcf, mcf) = (self.cf(cf::BLOBS)?, self.cf(cf::BLOB_META)?);
        let mut wb = WriteBatch::default();
        let mut n = 0;
        let mut it = self.db.raw_iterator_cf(mcf);
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if v.len() == PINNED_META_LEN {
                let mut r = Reader::new(v);
                let (_, _, expires) = (r.u64()?, r.u64()?, r.u64()?);
                if expires <= now_secs {
                    wb.delete_cf(bcf, k);
                    wb.delete_cf(mcf, k);
                    n += 1;
                }
            }
            it.next();
        }
        it.status()?;
        drop(it);
        if n > 0 {
            self.db.write_opt(wb, &WriteOptions::default())?;
        }
        Ok(n)
    }

    /// A cached or pinned blob; a cached one becomes the most recently used.
    pub fn blob_get(&self, a: AccountId, blob_id: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = blob_key(a, blob_id);
        let mut st = lock(&self.blobs);
        let (mcf, lcf) = (self.cf(cf::BLOB_META)?, self.cf(cf::BLOB_LRU)?);
        let Some(m) = self.db.get_cf(mcf, &key)? else {
            return Ok(None);
        };
        let Some(data) = self.db.get_cf(self.cf(cf::BLOBS)?, &key)? else {
            return Err(Error::Corrupt("blob metadata without blob"));
        };
        if m.len() == PINNED_META_LEN {
            return Ok(Some(data));
        }
        let mut r = Reader::new(&m);
        let (old_tick, size) = (r.u64()?, r.u64()?);
        let tick = st.next_tick;
        let mut wb = WriteBatch::default();
        wb.delete_cf(lcf, lru_key(old_tick, a, blob_id));
        wb.put_cf(lcf, lru_key(tick, a, blob_id), []);
        wb.put_cf(mcf, &key, meta_value(tick, size));
        self.db.write_opt(wb, &WriteOptions::default())?;
        st.next_tick = tick + 1;
        Ok(Some(data))
    }

    /// Bytes currently held by the blob cache.
    pub fn blob_cache_size(&self) -> u64 {
        lock(&self.blobs).total
    }
}

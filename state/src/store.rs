//! Opening the store (schema check, migrations), configuration, durability, and point reads.

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, Options,
    ReadOptions,
};

use crate::blobs::BlobState;
use crate::error::{Error, Result};
use crate::keys::{self, Reader, cf, meta};
use crate::notify::{AccountStates, Notifier};
use crate::types::{AccountId, DataType, EmailFacts, MailboxCounts, ModSeq, ObjectId, State};

/// The on-disk schema this build writes and reads.
pub const SCHEMA_VERSION: u32 = 2;

/// A migration step from `from` to `from + 1`, run inside `Store::open`.
type Migration = fn(&DB) -> Result<()>;

/// Registered migrations, by source version; a missing step makes `open` fail with
/// `SchemaMismatch`.
const MIGRATIONS: &[(u32, Migration)] = &[(1, drop_all_mail_duplicates)];

/// Schema 1 → 2: all mail no longer has its own size and sentAt entries for Emails that are
/// in a mailbox (the per-mailbox indexes are merged at query time) nor its own thread-member
/// index (`idx_thread` is the same list). Deletes those keys; an Email in no mailbox keeps its
/// all-mail entries, since no mailbox index lists it.
fn drop_all_mail_duplicates(db: &DB) -> Result<()> {
    let cf_of = |name: &str| {
        db.cf_handle(name)
            .ok_or(Error::Corrupt("a column family is missing"))
    };
    let mailbox = cf_of(cf::IDX_MAILBOX)?;
    let facts = cf_of(cf::EMAIL_FACTS)?;
    let mut wb = rocksdb::WriteBatch::default();
    // idx_mailbox: account · lp("") · sort byte · value u64 · email id.
    let mut it = db.raw_iterator_cf(mailbox);
    it.seek_to_first();
    while let Some(k) = it.key() {
        let account = k.get(..8).ok_or(Error::Corrupt("short index key"))?;
        match (k.get(8), k.get(9)) {
            // All mail's receivedAt entries: on to its size entries.
            (Some(0), Some(&keys::sort::RECEIVED_AT)) => {
                it.seek([account, &[0, keys::sort::SIZE]].concat());
            }
            (Some(0), Some(&s)) if s == keys::sort::SIZE || s == keys::sort::SENT_AT => {
                let id = k.get(18..).ok_or(Error::Corrupt("short index key"))?;
                let in_a_mailbox = match db.get_cf(facts, [account, id].concat())? {
                    Some(v) => !keys::decode_facts(&v)?.mailbox_ids.is_empty(),
                    None => true,
                };
                if in_a_mailbox {
                    wb.delete_cf(mailbox, k);
                }
                it.next();
            }
            // Past all mail's entries: on to the next account.
            _ => match keys::prefix_end(account) {
                Some(n) => it.seek(n),
                None => break,
            },
        }
    }
    it.status()?;
    // idx_mailbox_thread: account · lp("") · …, everything.
    let mailbox_thread = cf_of(cf::IDX_MAILBOX_THREAD)?;
    let mut it = db.raw_iterator_cf(mailbox_thread);
    it.seek_to_first();
    while let Some(k) = it.key() {
        let account = k.get(..8).ok_or(Error::Corrupt("short index key"))?;
        wb.delete_range_cf(
            mailbox_thread,
            [account, &[0]].concat(),
            [account, &[1]].concat(),
        );
        match keys::prefix_end(account) {
            Some(n) => it.seek(n),
            None => break,
        }
    }
    it.status()?;
    let mut wo = rocksdb::WriteOptions::default();
    wo.set_sync(true);
    db.write_opt(wb, &wo)?;
    Ok(())
}

/// How a commit is made durable before it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// fsync the WAL inside every commit (RocksDB `WriteOptions::set_sync`). Every acknowledged
    /// commit survives power loss; a commit is visible to readers only once durable. One fsync
    /// per commit, and commits queue behind each other's fsync.
    SyncEachCommit,
    /// Write without fsync, then wait for a shared WAL fsync (leader/follower group commit).
    /// The first waiter becomes leader, waits up to `window` for more commits to join, fsyncs
    /// once and acknowledges everyone written before the fsync. Every acknowledged commit
    /// survives power loss; concurrent commits share one fsync. Trade-off: a commit becomes
    /// visible to readers up to `window` + one fsync before it is acknowledged, so after a power
    /// loss (not a process crash) a state a reader saw may be gone.
    GroupCommit { window: Duration },
    /// Never fsync: the WAL is written to the OS page cache only. Survives a process crash
    /// (SIGKILL), not power loss. For tests and rebuildable caches.
    Buffered,
}

impl Default for Durability {
    /// Group commit with no extra window: every acknowledgement is durable, and concurrent
    /// committers (adapters syncing several accounts, clients writing) share fsyncs.
    fn default() -> Self {
        Durability::GroupCommit {
            window: Duration::ZERO,
        }
    }
}

/// Store configuration.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub durability: Durability,
    /// Log entries kept per (account, type); older ones are trimmed at commit time.
    pub max_log_entries: u64,
    /// Log entries older than this are trimmed by [`Store::trim`]; `None` keeps them (count
    /// bound only). Default 30 days, RFC 8620 5.2's recommendation.
    pub max_log_age: Option<Duration>,
    /// Upper bound on ids in one /changes answer (client maxChanges is clamped to it, and it
    /// is used when the client gives none).
    pub max_changes_cap: usize,
    /// Blob cache bound in bytes.
    pub blob_cache_bytes: u64,
    /// RocksDB block cache in bytes.
    pub block_cache_bytes: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            durability: Durability::default(),
            max_log_entries: 1_000_000,
            max_log_age: Some(Duration::from_secs(30 * 24 * 3600)),
            max_changes_cap: 10_000,
            blob_cache_bytes: 1 << 30,
            block_cache_bytes: 64 << 20,
        }
    }
}

/// Group-commit bookkeeping: how far commits were written, and how far the WAL is fsynced.
#[derive(Debug, Default)]
struct SyncState {
    written: u64,
    synced: u64,
    leader: bool,
}

/// The gateway's state store. Cheap reads from any thread; commits serialize on one writer lock.
pub struct Store {
    pub(crate) db: DB,
    pub(crate) config: StoreConfig,
    pub(crate) generation: u32,
    pub(crate) writer: Mutex<()>,
    sync: Mutex<SyncState>,
    synced: Condvar,
    pub(crate) notifier: Notifier,
    pub(crate) blobs: Mutex<BlobState>,
    /// Flipped to `true` once by [`Store::signal_shutdown`]; see [`Store::shutdown_signal`].
    shutdown: tokio::sync::watch::Sender<bool>,
    /// How many [`BulkWrites`] are alive.
    bulk: Mutex<usize>,
    /// How many times bulk writes began (none alive → one).
    bulk_periods: std::sync::atomic::AtomicU64,
    /// The L0 compaction trigger in force; locked while it is being changed.
    l0_trigger: Mutex<i32>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.db.path())
            .field("generation", &self.generation)
            .field("config", &self.config)
            .finish()
    }
}

/// How many L0 files (flushed memtables) of a column family start a compaction into the level
/// below: RocksDB's default in normal operation, and twice that while [`Store::bulk_writes`]
/// is in force. An initial sync's keys (Email ids) are spread over the whole key space, so
/// each such compaction rewrites the level below in full: the work grows with the square of
/// the messages synced, and merging twice as many L0 files at a time halves it.
const L0_TRIGGER: i32 = 4;
const L0_TRIGGER_BULK: i32 = 8;

/// Keeps the store tuned for a long run of writes while alive; see [`Store::bulk_writes`].
#[derive(Debug)]
pub struct BulkWrites {
    store: std::sync::Arc<Store>,
}

impl Drop for BulkWrites {
    fn drop(&mut self) {
        *lock(&self.store.bulk) -= 1;
        self.store.retune();
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock never leaves half-applied state on disk (batches are
    // atomic), so a poisoned lock is safe to keep using.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Store {
    /// Opens (or creates) the store at `path`, checking the schema version and migrating.
    pub fn open(path: impl AsRef<Path>, config: StoreConfig) -> Result<Store> {
        let path = path.as_ref();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        // Flushed memtables (L0) are written uncompressed: LZ4 was half of the flush
        // thread's CPU, and L0 files live only until the next compaction, which compresses
        // what it writes to the levels below.
        opts.set_compression_per_level(&[DBCompressionType::None, DBCompressionType::Lz4]);
        opts.set_level_zero_file_num_compaction_trigger(L0_TRIGGER);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        // Memtables are skiplists whose inserts and lookups are cache misses all the way down:
        // 8 MiB ones (not 64) keep them shallow, and a whole-key bloom filter answers the
        // lookups of keys that are not there (every new Email's record and facts, checked
        // before they are written) without walking the list. Together about a fifth less
        // CPU per synced message (`cargo bench -p jmap-mail --bench apply`).
        opts.set_write_buffer_size(8 << 20);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_memtable_prefix_bloom_ratio(0.1);
        let cache = Cache::new_lru_cache(config.block_cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        opts.set_block_based_table_factory(&table);

        // Open every family on disk (RocksDB requires it), plus ours.
        let mut names: Vec<String> = cf::ALL.iter().map(|s| s.to_string()).collect();
        if let Ok(existing) = DB::list_cf(&opts, path) {
            for n in existing {
                if !names.contains(&n) && n != "default" {
                    names.push(n);
                }
            }
        }
        let descriptors = names.into_iter().map(|n| {
            let mut o = opts.clone();
            if n == cf::BLOBS {
                // Large values go to blob files, keeping the LSM small.
                o.set_enable_blob_files(true);
                o.set_min_blob_size(4096);
                o.set_enable_blob_gc(true);
            }
            ColumnFamilyDescriptor::new(n, o)
        });
        let db = DB::open_cf_descriptors(&opts, path, descriptors)?;
        let generation = check_schema(&db)?;
        let blobs = BlobState::load(&db)?;
        Ok(Store {
            db,
            config,
            generation,
            writer: Mutex::new(()),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
            notifier: Notifier::default(),
            blobs: Mutex::new(blobs),
            shutdown: tokio::sync::watch::Sender::new(false),
            bulk: Mutex::new(0),
            bulk_periods: std::sync::atomic::AtomicU64::new(0),
            l0_trigger: Mutex::new(L0_TRIGGER),
        })
    }

    /// Tunes the store for a long run of writes, such as a large initial sync, until the guard
    /// is dropped (by every holder, when several run at once): L0 files are compacted eight
    /// at a time instead of four (`L0_TRIGGER_BULK`). Reads may merge more L0 files
    /// meanwhile; when the last guard goes, the usual trigger is back and the files left are
    /// compacted at once. Does not block: within a tokio runtime the change is made on a
    /// blocking thread (RocksDB saves its options file once per column family, which takes
    /// most of a second), elsewhere before returning.
    pub fn bulk_writes(self: &std::sync::Arc<Self>) -> BulkWrites {
        let mut n = lock(&self.bulk);
        if *n == 0 {
            self.bulk_periods
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        *n += 1;
        drop(n);
        self.retune();
        BulkWrites {
            store: self.clone(),
        }
    }

    /// How many [`BulkWrites`] guards are alive, and how many times bulk writes began.
    pub fn bulk_writes_state(&self) -> (usize, u64) {
        (
            *lock(&self.bulk),
            self.bulk_periods.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Brings the compaction trigger in line with whether bulk writes are on; see
    /// [`Store::bulk_writes`] for where it runs.
    fn retune(self: &std::sync::Arc<Self>) {
        let store = self.clone();
        let work = move || store.apply_tuning();
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(work)),
            Err(_) => work(),
        }
    }

    /// Whichever call runs last sees the last wish: the trigger in force is locked while
    /// it changes, and the wish is read under that lock.
    fn apply_tuning(&self) {
        let mut applied = lock(&self.l0_trigger);
        let want = if *lock(&self.bulk) > 0 {
            L0_TRIGGER_BULK
        } else {
            L0_TRIGGER
        };
        if *applied == want {
            return;
        }
        let value = want.to_string();
        for name in cf::ALL {
            let Some(handle) = self.db.cf_handle(name) else {
                continue;
            };
            if let Err(e) = self
                .db
                .set_options_cf(&handle, &[("level0_file_num_compaction_trigger", &value)])
            {
                // Only tuning: the store works the same either way.
                tracing::warn!(cf = name, "the L0 compaction trigger stays as it was: {e}");
            }
        }
        *applied = want;
    }

    /// A receiver that turns `true` when the process holding this store begins to shut down
    /// ([`Store::signal_shutdown`]). Long-running writers (sync drivers) and push streams watch
    /// it, finish what they are doing and stop, so the store can be flushed and closed.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every [`Store::shutdown_signal`] receiver that shutdown has begun. Idempotent.
    /// Commits still work afterwards; this only asks the store's users to wind down.
    pub fn signal_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Whether [`Store::signal_shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Makes everything committed so far durable and compact on disk: fsyncs the WAL, then
    /// flushes every column family's memtable to SST files, so the next open replays no WAL.
    /// Called on graceful shutdown; safe at any time (commits may run concurrently).
    pub fn flush(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        for name in cf::ALL {
            self.db.flush_cf_opt(self.cf(name)?, &opts)?;
        }
        Ok(())
    }

    /// Writes a consistent point-in-time copy of the store to `dir`, which must not exist yet
    /// (its parent must). Files are hard-linked when `dir` is on the same filesystem, copied
    /// otherwise, so a checkpoint is cheap. It is taken between two commits (the writer lock is
    /// held while RocksDB flushes and links), and it carries the store's generation: opening
    /// the checkpoint with [`Store::open`] answers `/changes` from any state issued before it.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let _guard = lock(&self.writer);
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        checkpoint.create_checkpoint(dir)?;
        Ok(())
    }

    /// This store's generation tag (part of every state string).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn cf(&self, name: &'static str) -> Result<&ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or(Error::Corrupt("missing column family"))
    }

    /// Reads options pinned to a snapshot, for multi-key reads that must agree.
    pub(crate) fn snapshot_opts(snap: &rocksdb::Snapshot<'_>) -> ReadOptions {
        let mut ro = ReadOptions::default();
        ro.set_snapshot(snap);
        ro
    }

    pub(crate) fn get_raw(
        &self,
        ro: &ReadOptions,
        cf_name: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf_opt(self.cf(cf_name)?, key, ro)?)
    }

    /// The (current modseq, lowest answerable sinceState) of one (account, type).
    pub(crate) fn modseq_record(
        &self,
        ro: &ReadOptions,
        a: AccountId,
        t: DataType,
    ) -> Result<(ModSeq, ModSeq)> {
        match self.get_raw(ro, cf::MODSEQ, &keys::modseq_key(a, t))? {
            None => Ok((0, 0)),
            Some(v) => {
                let mut r = Reader::new(&v);
                Ok((r.u64()?, r.u64()?))
            }
        }
    }

    pub(crate) fn make_state(&self, t: DataType, modseq: ModSeq) -> State {
        State {
            generation: self.generation,
            data_type: t,
            modseq,
        }
    }

    /// The current state string of one (account, type): one point read.
    pub fn state(&self, a: AccountId, t: DataType) -> Result<State> {
        let (m, _) = self.modseq_record(&ReadOptions::default(), a, t)?;
        Ok(self.make_state(t, m))
    }

    /// The current states of every type of an account, read from one snapshot.
    pub fn states(&self, a: AccountId) -> Result<AccountStates> {
        let snap = self.db.snapshot();
        let ro = Self::snapshot_opts(&snap);
        let mut out = BTreeMap::new();
        for t in DataType::ALL {
            let (m, _) = self.modseq_record(&ro, a, t)?;
            out.insert(t, self.make_state(t, m));
        }
        Ok(AccountStates(out))
    }

    /// One object's bytes.
    pub fn get(&self, a: AccountId, t: DataType, id: &ObjectId) -> Result<Option<Vec<u8>>> {
        self.get_raw(
            &ReadOptions::default(),
            cf::OBJECTS,
            &keys::object_key(a, t, id.as_bytes()),
        )
    }

    /// Several objects and the state they were read at, from one snapshot (for /get).
    pub fn get_many(
        &self,
        a: AccountId,
        t: DataType,
        ids: &[ObjectId],
    ) -> Result<(State, Vec<Option<Vec<u8>>>)> {
        let snap = self.db.snapshot();
        let ro = Self::snapshot_opts(&snap);
        let (m, _) = self.modseq_record(&ro, a, t)?;
        let cfh = self.cf(cf::OBJECTS)?;
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| keys::object_key(a, t, id.as_bytes()))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for r in self.db.multi_get_cf_opt(keys.iter().map(|k| (cfh, k)), &ro) {
            out.push(r?);
        }
        Ok((self.make_state(t, m), out))
    }

    /// Every id of one type in an account (for /get with ids null), with the state.
    pub fn ids(&self, a: AccountId, t: DataType) -> Result<(State, Vec<ObjectId>)> {
        let snap = self.db.snapshot();
        let ro = Self::snapshot_opts(&snap);
        let (m, _) = self.modseq_record(&ro, a, t)?;
        let prefix = keys::Key::account(a).u8(t.code()).into_vec();
        let mut out = Vec::new();
        let mut it = self.prefix_iter(&snap, cf::OBJECTS, &prefix)?;
        it.seek_to_first();
        while let Some(k) = it.key() {
            out.push(ObjectId::from_disk(&k[prefix.len()..])?);
            it.next();
        }
        it.status()?;
        Ok((self.make_state(t, m), out))
    }

    /// Every object of one type in an account with its bytes, in id order, from one
    /// snapshot: `f` is called for each until it returns false. For a scan that must look at
    /// every object: reading them in key order costs a fraction of one get per id.
    pub fn scan_objects(
        &self,
        a: AccountId,
        t: DataType,
        mut f: impl FnMut(ObjectId, &[u8]) -> bool,
    ) -> Result<()> {
        let snap = self.db.snapshot();
        let prefix = keys::Key::account(a).u8(t.code()).into_vec();
        let mut it = self.prefix_iter(&snap, cf::OBJECTS, &prefix)?;
        it.seek_to_first();
        while let Some((k, v)) = it.item() {
            if !f(ObjectId::from_disk(&k[prefix.len()..])?, v) {
                return Ok(());
            }
            it.next();
        }
        it.status()?;
        Ok(())
    }

    /// An email's index facts as last committed.
    pub fn email_facts(&self, a: AccountId, id: &ObjectId) -> Result<Option<EmailFacts>> {
        self.get_raw(
            &ReadOptions::default(),
            cf::EMAIL_FACTS,
            &keys::facts_key(a, id.as_bytes()),
        )?
        .map(|v| keys::decode_facts(&v))
        .transpose()
    }

    /// A sync cursor as last committed.
    pub fn cursor(&self, a: AccountId, name: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_raw(
            &ReadOptions::default(),
            cf::SYNC_CURSORS,
            &keys::cursor_key(a, name),
        )
    }

    /// Several sync cursors in one multi-get, from one snapshot, in the order of `names`.
    /// Sync cursors double as a private key-value space for adapters and the sync driver
    /// (any name, written atomically with a [`crate::Commit`]); this is its batched read.
    pub fn cursors<N: AsRef<[u8]>>(
        &self,
        a: AccountId,
        names: &[N],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let snap = self.db.snapshot();
        let ro = Self::snapshot_opts(&snap);
        let cfh = self.cf(cf::SYNC_CURSORS)?;
        let keys: Vec<Vec<u8>> = names
            .iter()
            .map(|n| keys::cursor_key(a, n.as_ref()))
            .collect();
        let mut out = Vec::with_capacity(names.len());
        for r in self.db.multi_get_cf_opt(keys.iter().map(|k| (cfh, k)), &ro) {
            out.push(r?);
        }
        Ok(out)
    }

    /// Every sync cursor whose name starts with `prefix`, as (name, value) in name order,
    /// from one snapshot: a prefix scan over the private key-value space.
    pub fn cursors_with_prefix(
        &self,
        a: AccountId,
        prefix: &[u8],
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let snap = self.db.snapshot();
        let full = keys::cursor_key(a, prefix);
        let skip = keys::cursor_key(a, b"").len();
        let mut it = self.prefix_iter(&snap, cf::SYNC_CURSORS, &full)?;
        it.seek_to_first();
        let mut out = Vec::new();
        while let Some((k, v)) = it.item() {
            out.push((k[skip..].to_vec(), v.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Several objects of one type without a state, in one multi-get (for code that reads
    /// what it is about to rewrite, such as a sync driver building a batch).
    pub fn objects(
        &self,
        a: AccountId,
        t: DataType,
        ids: &[ObjectId],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cfh = self.cf(cf::OBJECTS)?;
        let keys: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| keys::object_key(a, t, id.as_bytes()))
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for r in self
            .db
            .multi_get_cf_opt(keys.iter().map(|k| (cfh, k)), &ReadOptions::default())
        {
            out.push(r?);
        }
        Ok(out)
    }

    /// Counts of a mailbox (all zero for an unknown one).
    pub fn mailbox_counts(&self, a: AccountId, mailbox: &ObjectId) -> Result<MailboxCounts> {
        self.counts_raw(&ReadOptions::default(), a, mailbox.as_bytes())
    }

    /// Counts over the whole account (every indexed email, every thread).
    pub fn account_counts(&self, a: AccountId) -> Result<MailboxCounts> {
        self.counts_raw(&ReadOptions::default(), a, b"")
    }

    pub(crate) fn counts_raw(
        &self,
        ro: &ReadOptions,
        a: AccountId,
        mailbox: &[u8],
    ) -> Result<MailboxCounts> {
        match self.get_raw(ro, cf::COUNTERS, &keys::mailbox_counts_key(a, mailbox))? {
            None => Ok(MailboxCounts::default()),
            Some(v) => decode_counts(&v),
        }
    }

    /// Emails of a thread, oldest first (Thread/get's emailIds).
    pub fn thread_email_ids(&self, a: AccountId, thread: &ObjectId) -> Result<Vec<ObjectId>> {
        let snap = self.db.snapshot();
        let prefix = keys::Key::account(a).lp(thread.as_bytes()).into_vec();
        let mut it = self.prefix_iter(&snap, cf::IDX_THREAD, &prefix)?;
        it.seek_to_first();
        let mut out = Vec::new();
        while let Some(k) = it.key() {
            let suffix = k
                .get(prefix.len() + 8..)
                .ok_or(Error::Corrupt("short thread index key"))?;
            out.push(ObjectId::from_disk(suffix)?);
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// A raw iterator over keys starting with `prefix`, at a snapshot.
    pub(crate) fn prefix_iter<'a>(
        &'a self,
        snap: &rocksdb::Snapshot<'a>,
        cf_name: &'static str,
        prefix: &[u8],
    ) -> Result<rocksdb::DBRawIterator<'a>> {
        let mut ro = Self::snapshot_opts(snap);
        ro.set_iterate_lower_bound(prefix.to_vec());
        if let Some(end) = keys::prefix_end(prefix) {
            ro.set_iterate_upper_bound(end);
        }
        Ok(self.db.raw_iterator_cf_opt(self.cf(cf_name)?, ro))
    }

    /// Subscribes to an account's states; the receiver sees every commit's new states
    /// (coalesced: a slow receiver sees the latest, never a stale one).
    pub fn subscribe(&self, a: AccountId) -> Result<tokio::sync::watch::Receiver<AccountStates>> {
        self.notifier.subscribe(a, || self.states(a))
    }

    /// Makes written-but-unsynced commits durable according to the configured durability.
    /// Called by `commit` after releasing the writer lock.
    pub(crate) fn wait_durable(&self, ticket: u64) -> Result<()> {
        let window = match self.config.durability {
            Durability::GroupCommit { window } => window,
            Durability::SyncEachCommit | Durability::Buffered => return Ok(()),
        };
        let mut s = lock(&self.sync);
        loop {
            if s.synced >= ticket {
                return Ok(());
            }
            if s.leader {
                s = self.synced.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.leader = true;
            drop(s);
            if !window.is_zero() {
                std::thread::sleep(window);
            }
            let target = lock(&self.sync).written;
            let r = self.db.flush_wal(true);
            s = lock(&self.sync);
            s.leader = false;
            if r.is_ok() {
                s.synced = s.synced.max(target);
            }
            self.synced.notify_all();
            r?;
        }
    }

    /// Records that a commit was written (under the writer lock); returns its sync ticket.
    pub(crate) fn note_written(&self) -> u64 {
        let mut s = lock(&self.sync);
        s.written += 1;
        s.written
    }
}

fn check_schema(db: &DB) -> Result<u32> {
    let metacf = db
        .cf_handle(cf::META)
        .ok_or(Error::Corrupt("missing meta column family"))?;
    let version = db.get_cf(metacf, meta::SCHEMA_VERSION)?;
    let generation = db.get_cf(metacf, meta::GENERATION)?;
    match (version, generation) {
        (None, None) => {
            // A new store: stamp it.
            let generation = random_u32();
            let mut wb = rocksdb::WriteBatch::default();
            wb.put_cf(metacf, meta::SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes());
            wb.put_cf(metacf, meta::GENERATION, generation.to_be_bytes());
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(wb, &wo)?;
            Ok(generation)
        }
        (Some(v), Some(g)) => {
            let mut found = Reader::new(&v).u32()?;
            let generation = Reader::new(&g).u32()?;
            if found > SCHEMA_VERSION {
                return Err(Error::SchemaMismatch {
                    found,
                    expected: SCHEMA_VERSION,
                    hint: "the store was written by a newer gateway; upgrade, or move it aside \
                           and let the gateway rebuild it from upstream",
                });
            }
            while found < SCHEMA_VERSION {
                let step = MIGRATIONS
                    .iter()
                    .find(|(from, _)| *from == found)
                    .map(|(_, f)| *f)
                    .ok_or(Error::SchemaMismatch {
                        found,
                        expected: SCHEMA_VERSION,
                        hint: "no migration from this version; move the store aside and let \
                               the gateway rebuild it from upstream",
                    })?;
                step(db)?;
                found += 1;
                let mut wo = rocksdb::WriteOptions::default();
                wo.set_sync(true);
                db.put_cf_opt(metacf, meta::SCHEMA_VERSION, found.to_be_bytes(), &wo)?;
            }
            Ok(generation)
        }
        _ => Err(Error::Corrupt("schema version or generation missing")),
    }
}

fn random_u32() -> u32 {
    // std's RandomState is seeded from the OS; good enough for a store tag.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish() as u32
}

pub(crate) fn encode_counts(c: &MailboxCounts) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    for n in [
        c.total_emails,
        c.unread_emails,
        c.total_threads,
        c.unread_threads,
    ] {
        v.extend_from_slice(&n.to_be_bytes());
    }
    v
}

pub(crate) fn decode_counts(v: &[u8]) -> Result<MailboxCounts> {
    let mut r = Reader::new(v);
    Ok(MailboxCounts {
        total_emails: r.u32()?,
        unread_emails: r.u32()?,
        total_threads: r.u32()?,
        unread_threads: r.u32()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod deploy_tests {
    use super::*;
    use crate::Commit;

    fn put(store: &Store, a: AccountId, name: &str) {
        let mut c = Commit::new(a);
        c.put(
            DataType::Identity,
            ObjectId::new(name).unwrap(),
            b"x".to_vec(),
        );
        store.commit(c).unwrap();
    }

    #[test]
    fn a_checkpoint_keeps_the_generation_and_answers_changes_from_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = AccountId(7);
        let store = Store::open(dir.path().join("live"), StoreConfig::default()).unwrap();
        put(&store, a, "i1");
        let before = store.state(a, DataType::Identity).unwrap();
        put(&store, a, "i2");
        store.checkpoint(dir.path().join("backup")).unwrap();
        put(&store, a, "i3"); // after the checkpoint: not in it
        store.flush().unwrap();

        let restored = Store::open(dir.path().join("backup"), StoreConfig::default()).unwrap();
        assert_eq!(restored.generation(), store.generation());
        let changes = restored
            .changes(a, DataType::Identity, &before.to_string(), None)
            .unwrap();
        assert_eq!(changes.created, vec![ObjectId::new("i2").unwrap()]);
        assert!(changes.updated.is_empty() && changes.destroyed.is_empty());
        // A checkpoint never overwrites: the target must be new.
        assert!(store.checkpoint(dir.path().join("backup")).is_err());
    }

    #[test]
    fn the_shutdown_signal_is_seen_by_every_receiver() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let rx = store.shutdown_signal();
        assert!(!*rx.borrow() && !store.is_shutting_down());
        store.signal_shutdown();
        store.signal_shutdown();
        assert!(*rx.borrow() && store.is_shutting_down());
        assert!(*store.shutdown_signal().borrow());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod batched_read_tests {
    use super::*;
    use crate::Commit;

    #[test]
    fn cursors_are_read_in_bulk_and_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let (a, b) = (AccountId(1), AccountId(2));
        let mut c = Commit::new(a);
        c.set_cursor("loc/m1/1", "e1")
            .set_cursor("loc/m1/2", "e2")
            .set_cursor("loc/m2/1", "e3")
            .set_cursor("mid/x", "t1");
        store.commit(c).unwrap();
        let mut c = Commit::new(b);
        c.set_cursor("loc/m1/9", "other account");
        store.commit(c).unwrap();

        let got = store.cursors(a, &["loc/m1/2", "nope", "mid/x"]).unwrap();
        assert_eq!(got, vec![Some(b"e2".to_vec()), None, Some(b"t1".to_vec())]);
        assert!(store.cursors::<&str>(a, &[]).unwrap().is_empty());
        let scan = store.cursors_with_prefix(a, b"loc/m1/").unwrap();
        assert_eq!(
            scan,
            vec![
                (b"loc/m1/1".to_vec(), b"e1".to_vec()),
                (b"loc/m1/2".to_vec(), b"e2".to_vec())
            ]
        );
        let id = ObjectId::new("x").unwrap();
        let mut c = Commit::new(a);
        c.put(DataType::Identity, id.clone(), b"v".to_vec());
        store.commit(c).unwrap();
        let missing = ObjectId::new("y").unwrap();
        assert_eq!(
            store
                .objects(a, DataType::Identity, &[missing, id])
                .unwrap(),
            vec![None, Some(b"v".to_vec())]
        );
    }
}

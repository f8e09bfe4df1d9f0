//! The sync driver: one per account, protocol-neutral (IMAP and EAS alike).
//!
//! Loop: list mailboxes → reconcile Mailbox records → sync every mailbox (INBOX first)
//! through the adapter, each batch committed with its cursor → wait for upstream changes →
//! sync what changed (relisting when the list changed) → repeat. Errors back off with
//! jitter and start over; cursors make every restart resume where the last commit ended.
//!
//! Write-through ([`AccountSync::write`]) applies a [`WriteOp`] upstream, then syncs the
//! mailboxes it touched right away, so the result is recorded by the same code that records
//! every other change, and the later echo finds nothing new.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use state::{AccountId, AsyncStore, DataType, ObjectId};
use upstream::{
    BoxFuture, MailboxRole, RemoteMailbox, SyncBatch, SyncSink, Upstream, UpstreamError, WriteOp,
    WriteOutcome,
};

use crate::apply::{self, Listed};
use crate::records::{EmailRecord, MailboxRecord};
use crate::tx::{Carry, Pending, Tx, names};

/// What can stop a sync step.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("state store: {0}")]
    Store(#[from] state::Error),
    #[error("unknown mailbox {0}")]
    UnknownMailbox(String),
    #[error("unknown email {0}")]
    UnknownEmail(String),
}

/// Driver settings.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// Longest single wait for upstream changes (the adapter keeps its own IDLE refresh).
    pub wait_timeout: Duration,
    /// Backoff after a failed round: first delay and cap (jitter ±50 %).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// An initial pass with at least this many messages to go holds the store in bulk-write
    /// tuning ([`state::Store::bulk_writes`]); default [`BULK_MESSAGES`].
    pub bulk_messages: u64,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            wait_timeout: Duration::from_secs(300),
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(120),
            bulk_messages: BULK_MESSAGES,
        }
    }
}

/// Progress of one mailbox's sync.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxProgress {
    pub done: u64,
    pub total: u64,
    /// The last pass reached `complete`.
    pub complete: bool,
}

/// What the driver is doing, for logs, metrics and the CLI.
#[derive(Debug, Clone, Default)]
pub struct SyncProgress {
    /// Remote mailbox id → progress of its current or last pass.
    pub mailboxes: BTreeMap<String, MailboxProgress>,
    /// Batches committed since start.
    pub batches: u64,
    /// Completed rounds (a full sync or a wake-up's syncs).
    pub rounds: u64,
    pub waiting: bool,
    pub last_error: Option<String>,
    pub last_round_at: Option<SystemTime>,
}

impl SyncProgress {
    /// Messages done / expected over the mailboxes still in an initial sync.
    pub fn initial_sync(&self) -> (u64, u64) {
        self.mailboxes
            .values()
            .filter(|m| !m.complete)
            .fold((0, 0), |(d, t), m| (d + m.done, t + m.total))
    }
}

struct Inner {
    store: AsyncStore,
    account: AccountId,
    upstream: Arc<dyn Upstream>,
    opts: SyncOptions,
    /// Serializes read-modify-commit of this account's records.
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    /// One sync pass per mailbox at a time.
    pass_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The last listing, reconciled.
    mailboxes: Mutex<Vec<(RemoteMailbox, MailboxRecord)>>,
    progress: tokio::sync::watch::Sender<SyncProgress>,
}

/// The sync driver of one account. Cheap to clone.
#[derive(Clone)]
pub struct AccountSync {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AccountSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSync")
            .field("account", &self.inner.account)
            .field("upstream", &self.inner.upstream)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn jitter(d: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d.mul_f64(0.5 + f64::from(nanos % 1000) / 1000.0)
}

fn store_err(e: state::Error) -> UpstreamError {
    UpstreamError::Unavailable(format!("state store: {e}"))
}

/// The sink handed to the adapter: each batch and its cursor become one commit.
///
/// Batches are pipelined four ways: while the adapter reads batch N+2 off the connection,
/// batch N+1 is built (read and turned into a `Commit` on the blocking pool), batch N is
/// written, and batch N-1's fsync runs. Building N+1 before N has landed is safe because
/// N's writes are handed over as a [`Carry`] that the new transaction treats as committed,
/// and the account's commit lock is held throughout, so nothing else writes in between;
/// index scans (resets) wait for N to be written. Each batch's task builds, waits for its
/// predecessor to be written, writes, then waits for its predecessor's task before its own
/// acknowledgement, so commits land and are acknowledged strictly in order and the first
/// error surfaces. Every [`MAX_CHAINED`] batches the pipeline drains and the lock is let go
/// once, so write-through and other mailboxes are not starved by a long initial sync. The
/// last batch of a pass (`complete`) is awaited before returning, and [`Sink::settle`]
/// awaits whatever is still in flight when the pass ends.
struct Sink {
    inner: Arc<Inner>,
    mailbox_id: String,
    remote_id: String,
    inflight: Option<Inflight>,
    /// Held through an initial pass of at least [`SyncOptions::bulk_messages`] messages.
    bulk: Option<state::BulkWrites>,
}

/// Batches built on a predecessor's carry before the pipeline drains once.
const MAX_CHAINED: u32 = 8;

/// By default, an initial pass over this many messages or more runs with the store tuned for
/// bulk writes ([`state::Store::bulk_writes`]): fewer, larger compactions. Below it the gain
/// is small and retuning (most of a second of background work) is not worth it.
pub const BULK_MESSAGES: u64 = 10_000;

type TaskHandle = tokio::task::JoinHandle<Result<(), UpstreamError>>;

/// A batch being built and committed in the background.
struct Inflight {
    task: TaskHandle,
    /// Finished when the batch's commit has been written (or its task failed).
    pending: Arc<Pending>,
    /// The batch's writes once it is built, for building the next one; dropped unsent when
    /// the build failed.
    carry: tokio::sync::oneshot::Receiver<Carry>,
    /// Resolves when the commit has been written; dropped unresolved when the task failed.
    written: tokio::sync::oneshot::Receiver<()>,
    /// The account's commit lock, held from this chain's first build to its last commit.
    guard: Arc<tokio::sync::OwnedMutexGuard<()>>,
    chained: u32,
}

async fn join(task: TaskHandle) -> Result<(), UpstreamError> {
    task.await
        .map_err(|e| UpstreamError::Unavailable(format!("commit task failed: {e}")))?
}

/// Joins a predecessor's task that ended before handing over what was waited for: its
/// error, or a generic one if it somehow ended well.
async fn failed(task: TaskHandle, what: &str) -> UpstreamError {
    match join(task).await {
        Err(e) => e,
        Ok(()) => UpstreamError::Unavailable(format!("the previous batch ended {what}")),
    }
}

impl Sink {
    async fn settle(&mut self) -> Result<(), UpstreamError> {
        match self.inflight.take() {
            Some(f) => join(f.task).await,
            None => Ok(()),
        }
    }
}

/// Marks a pending commit finished however its task ends.
struct Finish(Arc<Pending>);

impl Drop for Finish {
    fn drop(&mut self) {
        self.0.finish();
    }
}

/// One batch's background task: what it needs besides the batch.
struct BatchTask {
    inner: Arc<Inner>,
    mailbox_id: String,
    remote_id: String,
    /// The predecessor's writes and the signal that they were written.
    carry: Option<(Carry, Arc<Pending>)>,
    carry_out: tokio::sync::oneshot::Sender<Carry>,
    pending: Arc<Pending>,
    written: tokio::sync::oneshot::Sender<()>,
    /// The predecessor's task, and the signal that its commit was written.
    previous: Option<(TaskHandle, tokio::sync::oneshot::Receiver<()>)>,
    chained: u32,
    _guard: Arc<tokio::sync::OwnedMutexGuard<()>>,
}

async fn build_and_commit(batch: SyncBatch, t: BatchTask) -> Result<(), UpstreamError> {
    let BatchTask {
        inner,
        mailbox_id,
        remote_id,
        carry,
        carry_out,
        pending,
        written,
        previous,
        chained,
        _guard,
    } = t;
    let finish = Finish(pending);
    let changes = batch.changes.len();
    let (progress, complete, reset) = (batch.progress, batch.complete, batch.reset);
    let a = inner.account;
    let started = std::time::Instant::now();
    let built = inner
        .store
        .run(move |s| {
            let tx = match carry {
                Some((c, pending)) => Tx::continuing(s, a, c, Some(pending)),
                None => Tx::new(s, a),
            };
            apply::build_batch(tx, &mailbox_id, &batch, true)
        })
        .await;
    tracing::trace!(
        build_ms = started.elapsed().as_millis() as u64,
        chained,
        "batch built"
    );
    let apply::Built {
        commit,
        stats,
        carry,
    } = built.map_err(store_err)?;
    let _ = carry_out.send(carry);
    // The predecessor is written before this batch is.
    let previous = match previous {
        Some((task, written)) => {
            if written.await.is_err() {
                return Err(failed(task, "unwritten").await);
            }
            Some(task)
        }
        None => None,
    };
    let started = std::time::Instant::now();
    let w = inner
        .store
        .run(move |s| s.write_commit(commit))
        .await
        .map_err(store_err)?;
    let write_ms = started.elapsed().as_millis() as u64;
    drop(finish);
    let _ = written.send(());
    if let Some(task) = previous {
        join(task).await?;
    }
    inner
        .store
        .run(move |s| s.finish_commit(w))
        .await
        .map_err(store_err)?;
    let commit_ms = started.elapsed().as_millis() as u64;
    inner.progress.send_modify(|p| {
        p.batches += 1;
        let e = p.mailboxes.entry(remote_id.clone()).or_default();
        if let Some((done, total)) = progress {
            e.done = done;
            e.total = total;
        }
        e.complete = complete;
    });
    if let Some((done, total)) = progress {
        tracing::info!(account = %inner.account, mailbox = %remote_id, done, total, "initial sync progress");
    }
    tracing::debug!(account = %inner.account, mailbox = %remote_id, changes, complete, reset,
        written = stats.emails_written, destroyed = stats.emails_destroyed,
        write_ms, commit_ms, "batch committed");
    Ok(())
}

impl SyncSink for Sink {
    fn apply(&mut self, batch: SyncBatch) -> BoxFuture<'_, Result<(), UpstreamError>> {
        Box::pin(async move {
            // Messages still to come, this batch's included (`done` counts it).
            let to_go = batch
                .progress
                .map(|(done, total)| total.saturating_sub(done) + batch.changes.len() as u64);
            if self.bulk.is_none() && to_go.is_some_and(|n| n >= self.inner.opts.bulk_messages) {
                tracing::debug!(account = %self.inner.account, mailbox = %self.remote_id,
                    "a large initial pass: the store is tuned for bulk writes until it ends");
                self.bulk = Some(self.inner.store.blocking().bulk_writes());
            }
            let prev = match self.inflight.take() {
                // Drain every MAX_CHAINED batches (the lock is released once the commit
                // lands), and settle a task that is already over: landed (a new chain
                // starts) or failed (the pass stops here, not after reading the rest of the
                // mailbox).
                Some(f) if f.chained >= MAX_CHAINED || f.task.is_finished() => {
                    join(f.task).await?;
                    None
                }
                other => other,
            };
            // This batch is built on the predecessor's carry: wait for its build (only).
            let (guard, chained, carry, previous) = match prev {
                Some(f) => {
                    let Ok(carry) = f.carry.await else {
                        return Err(failed(f.task, "unbuilt").await);
                    };
                    (
                        f.guard,
                        f.chained + 1,
                        Some((carry, f.pending)),
                        Some((f.task, f.written)),
                    )
                }
                None => (
                    Arc::new(self.inner.commit_lock.clone().lock_owned().await),
                    0,
                    None,
                    None,
                ),
            };
            let complete = batch.complete;
            let pending = Arc::new(Pending::default());
            let (carry_out, carry_rx) = tokio::sync::oneshot::channel();
            let (written_tx, written) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(build_and_commit(
                batch,
                BatchTask {
                    inner: self.inner.clone(),
                    mailbox_id: self.mailbox_id.clone(),
                    remote_id: self.remote_id.clone(),
                    carry,
                    carry_out,
                    pending: pending.clone(),
                    written: written_tx,
                    previous,
                    chained,
                    _guard: guard.clone(),
                },
            ));
            if complete {
                drop(guard);
                return join(task).await;
            }
            self.inflight = Some(Inflight {
                task,
                pending,
                carry: carry_rx,
                written,
                guard,
                chained,
            });
            Ok(())
        })
    }
}

impl AccountSync {
    pub fn new(
        store: AsyncStore,
        account: AccountId,
        upstream: Arc<dyn Upstream>,
        opts: SyncOptions,
    ) -> AccountSync {
        AccountSync {
            inner: Arc::new(Inner {
                store,
                account,
                upstream,
                opts,
                commit_lock: Arc::new(tokio::sync::Mutex::new(())),
                pass_locks: Mutex::new(HashMap::new()),
                mailboxes: Mutex::new(Vec::new()),
                progress: tokio::sync::watch::channel(SyncProgress::default()).0,
            }),
        }
    }

    pub fn account(&self) -> AccountId {
        self.inner.account
    }

    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.inner.upstream
    }

    /// The current progress.
    pub fn progress(&self) -> SyncProgress {
        self.inner.progress.borrow().clone()
    }

    /// A receiver that sees every progress update.
    pub fn watch_progress(&self) -> tokio::sync::watch::Receiver<SyncProgress> {
        self.inner.progress.subscribe()
    }

    /// The mailboxes of the last listing with their records.
    pub fn mailboxes(&self) -> Vec<(RemoteMailbox, MailboxRecord)> {
        lock(&self.inner.mailboxes).clone()
    }

    /// The JMAP Mailbox id of a remote mailbox.
    pub fn mailbox_id(&self, remote_id: &str) -> Option<String> {
        lock(&self.inner.mailboxes)
            .iter()
            .find(|(r, _)| r.remote_id == remote_id)
            .map(|(_, m)| m.id.clone())
    }

    fn remote_of(&self, mailbox_id: &str) -> Option<RemoteMailbox> {
        lock(&self.inner.mailboxes)
            .iter()
            .find(|(_, m)| m.id == mailbox_id)
            .map(|(r, _)| r.clone())
    }

    /// Lists upstream mailboxes and reconciles the Mailbox records.
    pub async fn refresh_mailboxes(&self) -> Result<Vec<RemoteMailbox>, SyncError> {
        self.refresh_with_renames(Vec::new()).await
    }

    async fn refresh_with_renames(
        &self,
        renames: Vec<(String, String)>,
    ) -> Result<Vec<RemoteMailbox>, SyncError> {
        let inner = &self.inner;
        let remote = inner.upstream.list_mailboxes().await?;
        let listed: Vec<Listed> = remote
            .iter()
            .map(|r| Listed {
                identity: inner.upstream.mailbox_identity(&r.remote_id),
                remote: r.clone(),
            })
            .collect();
        let (reconciled, _) = {
            let _g = inner.commit_lock.lock().await;
            let a = inner.account;
            inner
                .store
                .run(move |s| apply::reconcile_mailboxes(s, a, &listed, &renames))
                .await?
        };
        let known: Vec<String> = reconciled
            .iter()
            .map(|(r, _)| r.remote_id.clone())
            .collect();
        *lock(&inner.mailboxes) = reconciled;
        inner
            .progress
            .send_modify(|p| p.mailboxes.retain(|k, _| known.contains(k)));
        Ok(remote)
    }

    /// One sync pass of one mailbox (by remote id), under its pass lock.
    pub async fn sync_mailbox(&self, remote_id: &str) -> Result<(), SyncError> {
        let inner = &self.inner;
        let Some((remote, record)) = lock(&inner.mailboxes)
            .iter()
            .find(|(r, _)| r.remote_id == remote_id)
            .cloned()
        else {
            return Err(SyncError::UnknownMailbox(remote_id.to_owned()));
        };
        if !remote.selectable {
            return Ok(());
        }
        let pass_lock = lock(&inner.pass_locks)
            .entry(record.id.clone())
            .or_default()
            .clone();
        let _pass = pass_lock.lock().await;
        let a = inner.account;
        let name = names::sync(&record.id);
        let cursor = inner.store.run(move |s| s.cursor(a, &name)).await?;
        let mut sink = Sink {
            inner: inner.clone(),
            mailbox_id: record.id.clone(),
            remote_id: remote.remote_id.clone(),
            inflight: None,
            bulk: None,
        };
        let synced = inner
            .upstream
            .sync_mailbox(&remote, cursor.as_deref(), &mut sink)
            .await;
        let settled = sink.settle().await;
        synced?;
        settled?;
        Ok(())
    }

    /// Lists and syncs every mailbox: the INBOX first, then by role, then the rest.
    pub async fn sync_all(&self) -> Result<(), SyncError> {
        self.refresh_mailboxes().await?;
        let mut order: Vec<(u32, String)> = self
            .mailboxes()
            .into_iter()
            .filter(|(r, _)| r.selectable)
            .map(|(r, m)| {
                let rank = match r.role {
                    Some(MailboxRole::Inbox) => 0,
                    Some(_) => 1,
                    None => 2,
                };
                (rank * 1000 + m.sort_order, r.remote_id)
            })
            .collect();
        order.sort();
        let mut first_error = None;
        for (_, remote) in order {
            if let Err(e) = self.sync_mailbox(&remote).await {
                tracing::warn!(account = %self.inner.account, mailbox = %remote, error = %e, "mailbox sync failed");
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Syncs what a wake-up reported (`""` = the mailbox list).
    pub async fn sync_changed(&self, changed: &[String]) -> Result<(), SyncError> {
        let mut first_error = None;
        if changed.iter().any(String::is_empty) {
            let before: Vec<String> = self
                .mailboxes()
                .into_iter()
                .map(|(r, _)| r.remote_id)
                .collect();
            self.refresh_mailboxes().await?;
            // New mailboxes get their first sync now.
            for (r, _) in self.mailboxes() {
                if r.selectable
                    && !before.contains(&r.remote_id)
                    && !changed.contains(&r.remote_id)
                    && let Err(e) = self.sync_mailbox(&r.remote_id).await
                {
                    first_error.get_or_insert(e);
                }
            }
        }
        for m in changed.iter().filter(|m| !m.is_empty()) {
            match self.sync_mailbox(m).await {
                Ok(()) | Err(SyncError::UnknownMailbox(_)) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs the account's sync loop until `shutdown` turns true.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let inner = &self.inner;
        let mut delay = inner.opts.retry_initial;
        'outer: loop {
            if *shutdown.borrow() {
                break;
            }
            let result = tokio::select! {
                r = self.sync_all() => r,
                _ = shutdown.changed() => break 'outer,
            };
            if let Err(e) = result {
                if self.backoff(&e, &mut delay, &mut shutdown).await {
                    break;
                }
                continue;
            }
            self.round_done();
            delay = inner.opts.retry_initial;
            loop {
                let remote: Vec<RemoteMailbox> =
                    self.mailboxes().into_iter().map(|(r, _)| r).collect();
                inner.progress.send_modify(|p| p.waiting = true);
                let changed = tokio::select! {
                    r = inner.upstream.wait_for_changes(&remote, inner.opts.wait_timeout) => r,
                    _ = shutdown.changed() => break 'outer,
                };
                inner.progress.send_modify(|p| p.waiting = false);
                let result = match changed {
                    Ok(c) if c.is_empty() => Ok(()),
                    Ok(c) => {
                        tracing::debug!(account = %inner.account, changed = ?c, "upstream changed");
                        tokio::select! {
                            r = self.sync_changed(&c) => r,
                            _ = shutdown.changed() => break 'outer,
                        }
                    }
                    Err(e) => Err(e.into()),
                };
                match result {
                    Ok(()) => {
                        self.round_done();
                        delay = inner.opts.retry_initial;
                    }
                    Err(e) => {
                        if self.backoff(&e, &mut delay, &mut shutdown).await {
                            break 'outer;
                        }
                        // After trouble, a full round: nothing is assumed.
                        continue 'outer;
                    }
                }
            }
        }
        tracing::info!(account = %inner.account, "sync driver stopped");
    }

    fn round_done(&self) {
        self.inner.progress.send_modify(|p| {
            p.rounds += 1;
            p.last_error = None;
            p.last_round_at = Some(SystemTime::now());
        });
    }

    /// Records the error and sleeps; true when shut down meanwhile.
    async fn backoff(
        &self,
        e: &SyncError,
        delay: &mut Duration,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> bool {
        let wait = jitter(*delay);
        tracing::warn!(account = %self.inner.account, error = %e, ?wait, "sync round failed; retrying");
        self.inner
            .progress
            .send_modify(|p| p.last_error = Some(e.to_string()));
        *delay = (*delay * 2).min(self.inner.opts.retry_max);
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = shutdown.changed() => true,
        }
    }

    /// Applies a change upstream, then records its result through an immediate sync of the
    /// mailboxes it touched (the target of a move first, so the Email never disappears).
    /// Upstream refusal is returned as is and nothing is recorded.
    pub async fn write(&self, op: WriteOp) -> Result<WriteOutcome, SyncError> {
        let (mailboxes, relist, rename): (Vec<String>, bool, Option<String>) = match &op {
            WriteOp::SetKeywords { mailbox, .. }
            | WriteOp::Delete { mailbox, .. }
            | WriteOp::Append { mailbox, .. } => (vec![mailbox.clone()], false, None),
            WriteOp::Move { from, to, .. } => (vec![to.clone(), from.clone()], false, None),
            WriteOp::Copy { to, .. } => (vec![to.clone()], false, None),
            WriteOp::RenameMailbox { remote_id, .. } => (vec![], true, Some(remote_id.clone())),
            WriteOp::CreateMailbox { .. }
            | WriteOp::DeleteMailbox { .. }
            | WriteOp::Subscribe { .. } => (vec![], true, None),
            WriteOp::Send { save_in_sent, .. } => (vec![], *save_in_sent, None),
        };
        let outcome = self.inner.upstream.apply(op).await?;
        if relist {
            let renames = match (&rename, &outcome) {
                (Some(old), WriteOutcome::Mailbox(m)) => vec![(old.clone(), m.remote_id.clone())],
                _ => Vec::new(),
            };
            self.refresh_with_renames(renames).await?;
            if let WriteOutcome::Mailbox(m) = &outcome {
                self.sync_mailbox(&m.remote_id).await.or_else(|e| match e {
                    SyncError::UnknownMailbox(_) => Ok(()),
                    e => Err(e),
                })?;
            }
        }
        for m in mailboxes {
            self.sync_mailbox(&m).await?;
        }
        Ok(outcome)
    }

    /// The upstream copies of an Email, grouped by remote mailbox.
    async fn copies_by_mailbox(
        &self,
        id: &ObjectId,
    ) -> Result<Vec<(String, Vec<String>)>, SyncError> {
        let rec = self
            .email(id)
            .await?
            .ok_or_else(|| SyncError::UnknownEmail(id.to_string()))?;
        let mut out = Vec::new();
        for (mailbox_id, copies) in &rec.locations {
            let remote = self
                .remote_of(mailbox_id)
                .ok_or_else(|| SyncError::UnknownMailbox(mailbox_id.clone()))?;
            out.push((remote.remote_id, copies.uids.keys().cloned().collect()));
        }
        Ok(out)
    }

    /// Adds and removes keywords on every upstream copy of an Email, then records the result.
    pub async fn set_email_keywords(
        &self,
        id: &ObjectId,
        add: std::collections::BTreeSet<String>,
        remove: std::collections::BTreeSet<String>,
    ) -> Result<(), SyncError> {
        let copies = self.copies_by_mailbox(id).await?;
        for (mailbox, uids) in &copies {
            self.inner
                .upstream
                .apply(WriteOp::SetKeywords {
                    mailbox: mailbox.clone(),
                    uids: uids.clone(),
                    add: add.clone(),
                    remove: remove.clone(),
                })
                .await?;
        }
        for (mailbox, _) in copies {
            self.sync_mailbox(&mailbox).await?;
        }
        Ok(())
    }

    /// Deletes every upstream copy of an Email (Email/set destroy), then records it.
    pub async fn destroy_email(&self, id: &ObjectId) -> Result<(), SyncError> {
        let copies = self.copies_by_mailbox(id).await?;
        for (mailbox, uids) in &copies {
            self.inner
                .upstream
                .apply(WriteOp::Delete {
                    mailbox: mailbox.clone(),
                    uids: uids.clone(),
                })
                .await?;
        }
        for (mailbox, _) in copies {
            self.sync_mailbox(&mailbox).await?;
        }
        Ok(())
    }

    /// The Email a mailbox (JMAP id) holds at an upstream uid, after the last sync.
    pub async fn email_at(
        &self,
        mailbox_id: &str,
        uid: &str,
    ) -> Result<Option<ObjectId>, SyncError> {
        let a = self.inner.account;
        let name = names::loc(mailbox_id, uid);
        let v = self.inner.store.run(move |s| s.cursor(a, &name)).await?;
        Ok(v.and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| ObjectId::new(s).ok()))
    }

    /// An Email's record.
    pub async fn email(&self, id: &ObjectId) -> Result<Option<EmailRecord>, SyncError> {
        let a = self.inner.account;
        let id = id.clone();
        Ok(self
            .inner
            .store
            .run(move |s| s.get(a, DataType::Email, &id))
            .await?
            .and_then(|b| EmailRecord::from_bytes(&b)))
    }

    /// The raw message, from the blob cache or fetched from one of its copies upstream.
    pub async fn raw_message(&self, id: &ObjectId) -> Result<Vec<u8>, SyncError> {
        let a = self.inner.account;
        let blob_id = id.as_bytes().to_vec();
        if let Some(b) = self.inner.store.blob_get(a, blob_id.clone()).await? {
            return Ok(b);
        }
        let raw = self
            .ask_the_copies(id, |upstream, mailbox, uid| {
                upstream.fetch_message(mailbox, uid)
            })
            .await?;
        self.inner.store.blob_put(a, blob_id, raw.clone()).await?;
        Ok(raw)
    }

    /// Asks upstream for something of the Email `id` (`fetch` gets the mailbox's
    /// `remote_id` and the uid there), trying its copies in turn until one answers; the last
    /// copy's error when none does.
    async fn ask_the_copies<T>(
        &self,
        id: &ObjectId,
        fetch: impl for<'a> Fn(
            &'a dyn Upstream,
            &'a str,
            &'a str,
        ) -> upstream::BoxFuture<'a, Result<T, UpstreamError>>,
    ) -> Result<T, SyncError> {
        let rec = self
            .email(id)
            .await?
            .ok_or_else(|| SyncError::UnknownEmail(id.to_string()))?;
        let mut last_err = None;
        for (mailbox_id, uid) in rec.copies() {
            let Some(remote) = self.remote_of(&mailbox_id) else {
                continue;
            };
            match fetch(self.inner.upstream.as_ref(), &remote.remote_id, &uid).await {
                Ok(v) => return Ok(v),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.map_or_else(|| SyncError::UnknownEmail(id.to_string()), SyncError::from))
    }

    /// One leaf part of an Email (`part_id` as in [`crate::body`]): its octets after transfer
    /// decoding and its media type, `None` when the octets came from the part cache (which
    /// keeps octets only). Cut from the whole message when the blob cache holds that;
    /// else only the part is fetched from a copy upstream ([`Upstream::fetch_part`]) and
    /// cached under its part blob id, so a 20 MB attachment costs 20 MB, once. An upstream
    /// that cannot fetch parts, or a part that does not decode on its own
    /// ([`crate::body::entity_part_bytes`]), is cut from the whole message instead, fetched
    /// and cached by [`AccountSync::raw_message`]. A part the message does not have is
    /// [`UpstreamError::NotFound`].
    pub async fn raw_part(
        &self,
        id: &ObjectId,
        part_id: &str,
    ) -> Result<(Vec<u8>, Option<String>), SyncError> {
        let a = self.inner.account;
        let from_whole = |raw: &[u8]| {
            crate::body::part_bytes(raw, part_id)
                .map(|(bytes, media_type)| (bytes, Some(media_type)))
                .ok_or_else(|| {
                    SyncError::Upstream(UpstreamError::NotFound(format!(
                        "Email {id} has no part {part_id}"
                    )))
                })
        };
        if let Some(raw) = self.inner.store.blob_get(a, id.as_bytes().to_vec()).await? {
            return from_whole(&raw);
        }
        let blob_id = crate::body::part_blob_id(id.as_str(), part_id).into_bytes();
        if let Some(bytes) = self.inner.store.blob_get(a, blob_id.clone()).await? {
            return Ok((bytes, None));
        }
        let fetched = self
            .ask_the_copies(id, |upstream, mailbox, uid| {
                let part_id = part_id.to_owned();
                Box::pin(async move { upstream.fetch_part(mailbox, uid, &part_id).await })
            })
            .await;
        match fetched {
            Ok(entity) => match crate::body::entity_part_bytes(&entity) {
                Some((bytes, media_type)) => {
                    self.inner.store.blob_put(a, blob_id, bytes.clone()).await?;
                    Ok((bytes, Some(media_type)))
                }
                None => from_whole(&self.raw_message(id).await?),
            },
            Err(SyncError::Upstream(UpstreamError::Unsupported(_))) => {
                from_whole(&self.raw_message(id).await?)
            }
            Err(e) => Err(e),
        }
    }
}

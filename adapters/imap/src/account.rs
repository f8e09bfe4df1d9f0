//! [`ImapAccount`]: the [`Upstream`] implementation for one IMAP account — a connection pool
//! with a budget, reconnection with backoff and jitter, and the capability tiers.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};
use upstream::{
    BoxFuture, RemoteMailbox, SyncSink, Upstream, UpstreamError, WriteOp, WriteOutcome,
};

use crate::conn::{self, AuthMethod, Conn, ConnError, ConnOptions};
use crate::connection::{Credentials, ImapServer};
use crate::message::FingerprintSource;
use crate::proto::{Response, Value};

/// The delta-sync tier, chosen per connection from CAPABILITY (and capped by the options).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    /// UID/FLAGS comparison: every flag fetched each pass, expunges from the UID set.
    Plain,
    /// CHANGEDSINCE for flags, UID SEARCH for expunges (RFC 7162 CONDSTORE).
    CondStore,
    /// CHANGEDSINCE with VANISHED (RFC 7162 QRESYNC).
    QResync,
}

/// Tunables of an IMAP account; the defaults suit a normal server.
#[derive(Debug, Clone)]
pub struct ImapOptions {
    pub auth: AuthMethod,
    /// Most connections open at once, the push watcher included (minimum 2).
    pub max_connections: usize,
    /// Messages per FETCH command and per committed batch in an initial sync.
    pub batch_size: usize,
    /// FETCH commands in flight at once during an initial sync.
    pub pipeline_depth: usize,
    /// The highest tier to use even if the server offers more (tests use this).
    pub max_tier: Tier,
    /// Use NOTIFY (RFC 5465) for push when offered; else IDLE on the INBOX plus polling.
    pub use_notify: bool,
    /// IDLE is ended and restarted this often, under the server's 30-minute timeout.
    pub idle_refresh: Duration,
    /// Without NOTIFY, every mailbox (and the list) is reported changed this often.
    pub poll_interval: Duration,
    pub command_timeout: Duration,
    /// Fetch PREVIEW (RFC 8970) where offered.
    pub fetch_preview: bool,
    pub fingerprint: FingerprintSource,
    /// Reconnection: first delay, cap, and attempts per operation before it fails.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub connect_attempts: u32,
    /// A pooled connection unused for this long is checked with NOOP before reuse.
    pub idle_check_after: Duration,
    /// COMPRESS=DEFLATE where the server offers it: `None` turns it on unless the server is
    /// on a loopback address (where it only costs CPU).
    pub compress: Option<bool>,
}

impl Default for ImapOptions {
    fn default() -> Self {
        ImapOptions {
            auth: AuthMethod::Password,
            max_connections: 4,
            batch_size: 500,
            pipeline_depth: 3,
            max_tier: Tier::QResync,
            use_notify: true,
            idle_refresh: Duration::from_secs(25 * 60),
            poll_interval: Duration::from_secs(120),
            command_timeout: Duration::from_secs(120),
            fetch_preview: true,
            fingerprint: FingerprintSource::HeaderDigest,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(60),
            connect_attempts: 6,
            idle_check_after: Duration::from_secs(60),
            compress: None,
        }
    }
}

/// Counters for logs and tests.
#[derive(Debug, Default)]
pub struct ImapStats {
    pub connects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub broken_connections: AtomicU64,
    /// Connections that run COMPRESS=DEFLATE.
    pub compressed_connections: AtomicU64,
}

/// One IMAP account. Cheap to share (`Arc`); every method may run concurrently, within the
/// connection budget.
#[derive(Debug)]
pub struct ImapAccount {
    pub(crate) server: ImapServer,
    pub(crate) creds: Credentials,
    pub(crate) opts: ImapOptions,
    idle: Mutex<Vec<(Conn, Instant)>>,
    permits: Semaphore,
    /// The push connection: one budget slot of its own (the pool has the others).
    pub(crate) watcher: tokio::sync::Mutex<Option<crate::watch::Watcher>>,
    /// remote_id → identity (UIDVALIDITY), from the last listing.
    pub(crate) identities: Mutex<HashMap<String, String>>,
    /// The hierarchy delimiter, from the last listing.
    pub(crate) delimiter: Mutex<Option<char>>,
    secret_provider: Option<upstream::SecretProvider>,
    pub stats: Arc<ImapStats>,
    /// Set when the push connection reports that the mailbox list changed: the next listing
    /// runs on a connection that never selected a mailbox (see `Conn::has_selected`).
    pub(crate) list_changed: std::sync::atomic::AtomicBool,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A pooled connection; returned to the pool on drop only if the operation finished
/// ([`Lease::release`]) and it is not broken. A future dropped mid-command (cancelled)
/// leaves replies in flight, so its connection is closed rather than reused.
pub(crate) struct Lease<'a> {
    acct: &'a ImapAccount,
    conn: Option<Conn>,
    clean: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// Marks the operation finished: the connection may go back to the pool.
    pub(crate) fn release(mut self) {
        self.clean = true;
    }
}

impl std::ops::Deref for Lease<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("lease holds a connection until dropped")
    }
}

impl std::ops::DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("lease holds a connection until dropped")
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            if c.broken || !self.clean {
                self.acct
                    .stats
                    .broken_connections
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                lock(&self.acct.idle).push((c, Instant::now()));
            }
        }
    }
}

/// Whether a read-only operation that failed with `e` on its `attempt`-th try (from 1)
/// is tried again: once, and only when the connection dropped.
fn retry_read(e: &ConnError, attempt: u32) -> bool {
    e.is_transient() && attempt < 2
}

/// `localhost` or a loopback IP address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A delay with ±50 % jitter, so many accounts reconnecting at once spread out.
pub(crate) fn jitter(d: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |t| t.as_nanos()),
    );
    let r = (h.finish() % 1000) as f64 / 1000.0; // 0..1
    d.mul_f64(0.5 + r)
}

impl ImapAccount {
    pub fn new(server: ImapServer, creds: Credentials, opts: ImapOptions) -> ImapAccount {
        let budget = opts.max_connections.max(2);
        ImapAccount {
            server,
            creds,
            idle: Mutex::new(Vec::new()),
            permits: Semaphore::new(budget - 1),
            watcher: tokio::sync::Mutex::new(None),
            identities: Mutex::new(HashMap::new()),
            delimiter: Mutex::new(None),
            secret_provider: None,
            stats: Arc::new(ImapStats::default()),
            list_changed: std::sync::atomic::AtomicBool::new(false),
            opts,
        }
    }

    pub fn options(&self) -> &ImapOptions {
        &self.opts
    }

    /// Reads the secret (an OAuth access token) again before every login instead of using
    /// the one in the credentials, so a token refreshed outside the gateway is picked up.
    pub fn with_secret_provider(mut self, provider: upstream::SecretProvider) -> Self {
        self.secret_provider = Some(provider);
        self
    }

    /// The credentials for a new login.
    fn login_creds(&self) -> Result<std::borrow::Cow<'_, Credentials>, ConnError> {
        match &self.secret_provider {
            None => Ok(std::borrow::Cow::Borrowed(&self.creds)),
            Some(p) => Ok(std::borrow::Cow::Owned(Credentials {
                username: self.creds.username.clone(),
                password: p.get().map_err(ConnError::Auth)?,
            })),
        }
    }

    pub(crate) fn conn_options(&self) -> ConnOptions {
        ConnOptions {
            auth: self.opts.auth,
            command_timeout: self.opts.command_timeout,
            enable: match self.opts.max_tier {
                Tier::QResync => vec!["QRESYNC", "CONDSTORE"],
                Tier::CondStore => vec!["CONDSTORE"],
                Tier::Plain => vec![],
            },
            compress: self
                .opts
                .compress
                .unwrap_or_else(|| !is_loopback(&self.server.host)),
            ..ConnOptions::default()
        }
    }

    /// Opens a new connection, retrying transient failures with exponential backoff and
    /// jitter. Rejected credentials and missing capabilities fail at once.
    pub(crate) async fn connect(&self) -> Result<Conn, ConnError> {
        let mut delay = self.opts.backoff_initial;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let creds = self.login_creds()?;
            match conn::open(&self.server, &creds, &self.conn_options()).await {
                Ok(c) => {
                    self.stats.connects.fetch_add(1, Ordering::Relaxed);
                    if c.is_compressed() {
                        self.stats
                            .compressed_connections
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    return Ok(c);
                }
                Err(e) => {
                    self.stats.connect_failures.fetch_add(1, Ordering::Relaxed);
                    if !e.is_transient() || attempt >= self.opts.connect_attempts {
                        tracing::warn!(host = %self.server.host, user = %self.creds.username, attempt, error = %e, "IMAP connect failed");
                        return Err(e);
                    }
                    let wait = jitter(delay);
                    tracing::info!(host = %self.server.host, attempt, error = %e, ?wait, "IMAP connect failed; retrying");
                    tokio::time::sleep(wait).await;
                    delay = (delay * 2).min(self.opts.backoff_max);
                }
            }
        }
    }

    /// A connection from the pool (checked if it sat unused), or a new one, within budget.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, ConnError> {
        self.lease_for(None).await
    }

    /// Like [`ImapAccount::lease`], preferring a pooled connection that has `mailbox`
    /// selected: syncing it again then needs no new SELECT, whose cost grows with the
    /// mailbox (a fresh open of a 100k-message mailbox takes Dovecot hundreds of ms).
    pub(crate) async fn lease_for(&self, mailbox: Option<&str>) -> Result<Lease<'_>, ConnError> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ConnError::Closed("account shut down".into()))?;
        loop {
            let pooled = {
                let mut idle = lock(&self.idle);
                let pos = mailbox.and_then(|m| {
                    idle.iter()
                        .rposition(|(c, _)| c.selected.as_ref().is_some_and(|s| s.name == m))
                });
                match pos {
                    Some(i) => Some(idle.remove(i)),
                    None => idle.pop(),
                }
            };
            let Some((mut c, since)) = pooled else { break };
            if c.drain_unsolicited().await.is_err() {
                continue;
            }
            if since.elapsed() >= self.opts.idle_check_after && c.simple("NOOP").await.is_err() {
                continue;
            }
            return Ok(Lease {
                acct: self,
                conn: Some(c),
                clean: false,
                _permit: permit,
            });
        }
        let c = self.connect().await?;
        Ok(Lease {
            acct: self,
            conn: Some(c),
            clean: false,
            _permit: permit,
        })
    }

    /// Runs `op`, which only reads (it changes nothing upstream), on a pooled connection,
    /// preferring one that has `mailbox` selected; once more on another connection if the
    /// first one dropped. The outer error: no connection could be had at all (`connect`
    /// retried already); the inner result is `op`'s, from its last attempt.
    ///
    /// Which connections go back to the pool follows one rule: whatever the server answered
    /// (OK, NO, BAD: a tagged reply leaves the session usable) keeps the connection; an
    /// error that desynchronises or ends the stream (I/O, timeout, close, a reply that does
    /// not parse: [`ConnError::is_transient`]) closes it. A pooled connection can die while
    /// idle without the pool noticing (a server restart behind a NAT or a load balancer, an
    /// idle timeout), so such an error is worth exactly one more try, on a fresh or another
    /// pooled connection. A second failure is the server's state, not a stale socket.
    pub(crate) async fn read_retrying<'s, T>(
        &'s self,
        mailbox: Option<&str>,
        mut op: impl for<'c> FnMut(&'c mut Lease<'s>) -> BoxFuture<'c, Result<T, ConnError>>,
    ) -> Result<Result<T, ConnError>, ConnError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut lease = self.lease_for(mailbox).await?;
            let result = op(&mut lease).await;
            if let Err(e) = &result
                && e.is_transient()
            {
                // Broken already when the connection layer saw it; an unparsable reply
                // reported by `op` itself is treated the same.
                lease.broken = true;
            }
            // Pooled again unless broken (see `Lease`).
            lease.release();
            match result {
                Err(e) if retry_read(&e, attempt) => {
                    tracing::debug!(host = %self.server.host, user = %self.creds.username, error = %e, "connection dropped; trying once more");
                }
                other => return Ok(other),
            }
        }
    }

    /// The delimiter of the account's hierarchy (from LIST).
    pub(crate) async fn delimiter(&self, conn: &mut Conn) -> Result<Option<char>, ConnError> {
        if let Some(d) = *lock(&self.delimiter) {
            return Ok(Some(d));
        }
        let (untagged, _) = conn.simple("LIST \"\" \"\"").await?;
        let d = untagged.iter().find_map(|r| match r {
            Response::Data(v) if v.first().is_some_and(|x| x.is("LIST")) => v
                .get(2)
                .and_then(Value::text)
                .and_then(|s| s.chars().next()),
            _ => None,
        });
        *lock(&self.delimiter) = d;
        Ok(d)
    }

    /// The tier a selected mailbox allows on this connection.
    pub(crate) fn tier(&self, conn: &Conn, highestmodseq: Option<u64>) -> Tier {
        let offered = if highestmodseq.is_none() {
            Tier::Plain
        } else if conn.is_enabled("QRESYNC") {
            Tier::QResync
        } else if conn.is_enabled("CONDSTORE") {
            Tier::CondStore
        } else {
            Tier::Plain
        };
        offered.min(self.opts.max_tier)
    }

    /// Closes every pooled connection (the watcher too).
    pub async fn shutdown(&self) {
        let conns: Vec<_> = lock(&self.idle).drain(..).collect();
        for (c, _) in conns {
            c.logout().await;
        }
        if let Some(w) = self.watcher.lock().await.take() {
            w.conn.logout().await;
        }
    }
}

impl Upstream for ImapAccount {
    fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>> {
        Box::pin(async move {
            // After a reported list change, a session that has selected mailboxes may
            // still show the old list (Dovecot 2.3): list on one that has not.
            let fresh = self.list_changed.swap(false, Ordering::SeqCst);
            let listed = self
                .read_retrying(None, |lease| {
                    Box::pin(async move {
                        if fresh && lease.has_selected {
                            lease.conn = Some(self.connect().await?);
                        }
                        crate::list::list(self, lease).await
                    })
                })
                .await?;
            Ok(listed?)
        })
    }

    fn sync_mailbox<'a>(
        &'a self,
        mailbox: &'a RemoteMailbox,
        cursor: Option<&'a [u8]>,
        sink: &'a mut dyn SyncSink,
    ) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(crate::sync::sync_mailbox(self, mailbox, cursor, sink))
    }

    fn wait_for_changes<'a>(
        &'a self,
        mailboxes: &'a [RemoteMailbox],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        Box::pin(crate::watch::wait(self, mailboxes, timeout))
    }

    fn fetch_message<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
        Box::pin(crate::raw::fetch_message(self, mailbox, uid))
    }

    fn fetch_part<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
        part_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
        Box::pin(crate::part::fetch_part(self, mailbox, uid, part_id))
    }

    fn apply(&self, op: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
        Box::pin(crate::write::apply(self, op))
    }

    fn mailbox_identity(&self, remote_id: &str) -> Option<String> {
        lock(&self.identities).get(remote_id).cloned()
    }

    fn search<'a>(
        &'a self,
        mailbox: &'a str,
        query: &'a upstream::SearchQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        Box::pin(crate::search::search(self, mailbox, query))
    }

    fn quotas(&self) -> BoxFuture<'_, Result<Vec<upstream::RemoteQuota>, UpstreamError>> {
        Box::pin(crate::quota::quotas(self))
    }
}

/// `SELECT`/`EXAMINE` the mailbox unless it is already selected that way.
pub(crate) async fn ensure_selected(
    c: &mut Conn,
    mailbox: &str,
    writable: bool,
) -> Result<crate::conn::Selected, ConnError> {
    if let Some(s) = &c.selected
        && s.name == mailbox
        && (!writable || !s.read_only)
    {
        return Ok(s.clone());
    }
    c.select(mailbox, !writable).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::connection::Security;

    #[test]
    fn only_a_dropped_connection_is_retried_and_only_once() {
        for e in [
            ConnError::Io("reset".into()),
            ConnError::Timeout,
            ConnError::Closed("end of stream".into()),
            ConnError::Parse("junk".into()),
        ] {
            assert!(retry_read(&e, 1), "{e:?}");
            assert!(!retry_read(&e, 2), "{e:?}");
        }
        for e in [
            ConnError::No {
                text: "no".into(),
                code: None,
            },
            ConnError::Bad("bad".into()),
            ConnError::Auth("who".into()),
            ConnError::Unsupported("nope".into()),
        ] {
            assert!(!retry_read(&e, 1), "{e:?}");
        }
    }

    /// A loopback IMAP server: greets, accepts any LOGIN, answers CAPABILITY, and answers
    /// every other command
    /// with `answer(connection number from 1, verb)`, `None` closing the connection
    /// without a reply. Returns its port and how many connections it accepted.
    async fn server(answer: fn(usize, &str) -> Option<&'static str>) -> (u16, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let (r, mut w) = sock.into_split();
                    w.write_all(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
                        .await
                        .unwrap();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let mut words = line.splitn(3, ' ');
                        let (tag, verb) = (words.next().unwrap(), words.next().unwrap_or(""));
                        let reply = if verb.eq_ignore_ascii_case("LOGIN") {
                            "{tag} OK logged in\r\n"
                        } else if verb.eq_ignore_ascii_case("CAPABILITY") {
                            "* CAPABILITY IMAP4rev1\r\n{tag} OK done\r\n"
                        } else {
                            match answer(n, verb) {
                                Some(r) => r,
                                None => return,
                            }
                        };
                        let reply = reply.replace("{tag}", tag);
                        if w.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn account(port: u16) -> ImapAccount {
        let creds = Credentials {
            username: "u".into(),
            password: upstream::Secret::new("p".into()),
        };
        ImapAccount::new(
            ImapServer::new("127.0.0.1", port, Security::Plain),
            creds,
            ImapOptions::default(),
        )
    }

    /// Runs NOOP through `read_retrying`; counts how often the operation ran.
    async fn noop(acct: &ImapAccount, runs: &AtomicUsize) -> Result<(), ConnError> {
        acct.read_retrying(None, |conn| {
            runs.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move { conn.simple("NOOP").await.map(drop) })
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_tagged_no_or_bad_leaves_the_connection_in_the_pool() {
        let (port, accepted) = server(|_, _| Some("{tag} NO [EXPUNGEISSUED] gone\r\n")).await;
        let acct = account(port);
        let runs = AtomicUsize::new(0);
        for _ in 0..3 {
            let e = noop(&acct, &runs).await.unwrap_err();
            assert!(
                matches!(e, ConnError::No { ref code, .. } if code.as_deref() == Some("EXPUNGEISSUED")),
                "{e:?}"
            );
        }
        assert_eq!(runs.load(Ordering::SeqCst), 3, "a NO is not retried");
        assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
        assert_eq!(acct.stats.broken_connections.load(Ordering::SeqCst), 0);

        let (port, accepted) = server(|_, _| Some("{tag} BAD what\r\n")).await;
        let acct = account(port);
        for _ in 0..2 {
            let e = noop(&acct, &runs).await.unwrap_err();
            assert!(matches!(e, ConnError::Bad(_)), "{e:?}");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_dropped_connection_is_tried_once_more_on_a_new_one() {
        // The first connection dies at its first command; the second one works.
        let (port, accepted) = server(|n, _| (n > 1).then_some("{tag} OK done\r\n")).await;
        let acct = account(port);
        let runs = AtomicUsize::new(0);
        noop(&acct, &runs).await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(acct.stats.broken_connections.load(Ordering::SeqCst), 1);
        // The new connection went back to the pool.
        noop(&acct, &runs).await.unwrap();
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_second_drop_is_an_error_without_a_third_try() {
        let (port, accepted) = server(|_, _| None).await;
        let acct = account(port);
        let runs = AtomicUsize::new(0);
        let e = noop(&acct, &runs).await.unwrap_err();
        assert!(e.is_transient(), "{e:?}");
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        assert_eq!(acct.stats.broken_connections.load(Ordering::SeqCst), 2);
    }
}

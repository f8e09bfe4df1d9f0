//! Shared set-up for the IMAP sync tests: a private Dovecot per test (so each test owns its
//! users, mailboxes and NOTIFY events, and may kill its server), a state store in a temp
//! folder, the adapter and the sync driver, and an independent IMAP client (async-imap).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use imap::{Credentials, ImapAccount, ImapOptions, ImapServer, ImapSession, Security};
use jmap_mail::{AccountSync, EmailRecord, MailboxRecord, SyncOptions};
use state::{AccountId, AsyncStore, DataType, Durability, ObjectId, Store, StoreConfig};

pub const USER: &str = "tester";
pub const PASSWORD: &str = "tester-pw";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// A Dovecot of this test's own (scripts/test-servers/dovecot.sh with a private folder and
/// ports), stopped and removed on drop.
#[derive(Debug)]
pub struct PrivateDovecot {
    pub dir: PathBuf,
    pub imap_port: u16,
    pub imaps_port: u16,
    /// ManageSieve (RFC 5804), plain and STARTTLS.
    pub sieve_port: u16,
    /// More settings for scripts/test-servers/dovecot.sh (`DOVECOT_OAUTH2_KEY`, …).
    pub env: Vec<(String, String)>,
}

impl PrivateDovecot {
    pub fn start() -> PrivateDovecot {
        PrivateDovecot::start_with_env(&[])
    }

    /// A private Dovecot started with extra dovecot.sh settings.
    pub fn start_with_env(env: &[(&str, &str)]) -> PrivateDovecot {
        static N: AtomicU32 = AtomicU32::new(0);
        let mut last_error = String::new();
        // A port picked as free may be taken by a parallel test before Dovecot binds it.
        for _ in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "imap-sync-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let d = PrivateDovecot {
                dir,
                imap_port: free_port(),
                imaps_port: free_port(),
                sieve_port: free_port(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            match d.try_script("start") {
                Ok(()) => return d,
                Err(e) => last_error = e,
            }
        }
        panic!("could not start a private Dovecot: {last_error}");
    }

    fn try_script(&self, action: &str) -> Result<(), String> {
        let out = Command::new(repo_root().join("scripts/test-servers/dovecot.sh"))
            .arg(action)
            .env("DOVECOT_DIR", &self.dir)
            .env("DOVECOT_IMAP_PORT", self.imap_port.to_string())
            .env("DOVECOT_IMAPS_PORT", self.imaps_port.to_string())
            .env("DOVECOT_SIEVE_PORT", self.sieve_port.to_string())
            .env("DOVECOT_USERS", format!("{USER}:{PASSWORD}"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("running scripts/test-servers/dovecot.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "dovecot.sh {action} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn script(&self, action: &str) {
        if let Err(e) = self.try_script(action) {
            panic!("{e}");
        }
    }

    /// Stops the server (all its connections drop) and starts it again on the same ports.
    pub fn restart(&self) {
        self.script("stop");
        self.script("start");
    }

    pub fn server(&self) -> ImapServer {
        ImapServer::new("127.0.0.1", self.imap_port, Security::Plain)
    }
}

impl Drop for PrivateDovecot {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/test-servers/dovecot.sh"))
            .arg("stop")
            .env("DOVECOT_DIR", &self.dir)
            .env("DOVECOT_IMAP_PORT", self.imap_port.to_string())
            .env("DOVECOT_IMAPS_PORT", self.imaps_port.to_string())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn creds() -> Credentials {
    Credentials {
        username: USER.into(),
        password: upstream::Secret::new(PASSWORD.into()),
    }
}

/// The independent client: async-imap, a different IMAP implementation from the adapter's.
pub async fn other_client(server: &ImapServer) -> ImapSession {
    imap::connect(server, &creds()).await.unwrap()
}

pub async fn append(c: &mut ImapSession, mailbox: &str, flags: &str, raw: &[u8]) {
    let flags = (!flags.is_empty()).then(|| format!("({flags})"));
    c.append(mailbox, flags.as_deref(), None, raw)
        .await
        .unwrap();
}

/// CREATE by the independent client. Dovecot (maildir) can answer `NO [ALREADYEXISTS]` to a
/// CREATE that did create the mailbox when another session opened it in between (the
/// gateway's sync, here); LIST then decides.
pub async fn create_mailbox(c: &mut ImapSession, name: &str) {
    if let Err(e) = c.create(name).await {
        let listed = c.list(Some(""), Some(name)).await.unwrap();
        let names: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(listed)
            .await
            .unwrap()
            .iter()
            .map(|n| n.name().to_owned())
            .collect();
        assert!(names.iter().any(|n| n == name), "CREATE {name}: {e}");
    }
}

/// (uid, flags, header block) of every message of a mailbox, by the independent client.
pub async fn upstream_messages(
    c: &mut ImapSession,
    mailbox: &str,
) -> Vec<(u32, Vec<String>, Vec<u8>)> {
    c.select(mailbox).await.unwrap();
    let fetches: Vec<_> = c
        .uid_fetch("1:*", "(UID FLAGS BODY.PEEK[HEADER])")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut out: Vec<_> = fetches
        .iter()
        .filter_map(|f| {
            Some((
                f.uid?,
                f.flags().map(|fl| format!("{fl:?}")).collect(),
                f.header()?.to_vec(),
            ))
        })
        .collect();
    out.sort();
    out
}

/// A store, an adapter and a driver for one account.
pub struct Harness {
    pub store: AsyncStore,
    pub account: AccountId,
    pub imap: Arc<ImapAccount>,
    pub sync: AccountSync,
    pub _dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

pub fn open_store(path: &std::path::Path) -> AsyncStore {
    let cfg = StoreConfig {
        durability: Durability::Buffered,
        ..StoreConfig::default()
    };
    AsyncStore::new(Arc::new(Store::open(path, cfg).unwrap()))
}

impl Harness {
    pub fn new(server: ImapServer, opts: ImapOptions) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        Harness::with_store(server, opts, store, dir)
    }

    pub fn with_store(
        server: ImapServer,
        opts: ImapOptions,
        store: AsyncStore,
        dir: tempfile::TempDir,
    ) -> Harness {
        let account = AccountId(1);
        let imap = Arc::new(ImapAccount::new(server, creds(), opts));
        let sync = AccountSync::new(
            store.clone(),
            account,
            imap.clone(),
            SyncOptions {
                wait_timeout: Duration::from_secs(30),
                retry_initial: Duration::from_millis(100),
                retry_max: Duration::from_secs(2),
                ..SyncOptions::default()
            },
        );
        Harness {
            store,
            account,
            imap,
            sync,
            _dir: dir,
            shutdown: None,
            task: None,
        }
    }

    /// Starts the driver loop and waits for its first full round.
    pub async fn start(&mut self) {
        let (tx, rx) = tokio::sync::watch::channel(false);
        self.task = Some(tokio::spawn(self.sync.clone().run(rx)));
        self.shutdown = Some(tx);
        let mut progress = self.sync.watch_progress();
        tokio::time::timeout(Duration::from_secs(60), async {
            while progress.borrow_and_update().rounds == 0 {
                progress.changed().await.unwrap();
            }
        })
        .await
        .expect("the first sync round did not finish within 60 s");
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        self.imap.shutdown().await;
    }

    pub async fn state(&self, t: DataType) -> String {
        self.store.state(self.account, t).await.unwrap().to_string()
    }

    pub async fn changes(&self, t: DataType, since: &str) -> state::Changes {
        self.store
            .changes(self.account, t, since.to_owned(), None)
            .await
            .unwrap()
    }

    pub async fn emails(&self) -> Vec<EmailRecord> {
        let a = self.account;
        self.store
            .run(move |s| {
                let (_, ids) = s.ids(a, DataType::Email)?;
                let (_, blobs) = s.get_many(a, DataType::Email, &ids)?;
                Ok(blobs
                    .into_iter()
                    .flatten()
                    .filter_map(|b| EmailRecord::from_bytes(&b))
                    .collect())
            })
            .await
            .unwrap()
    }

    pub async fn mailboxes(&self) -> Vec<MailboxRecord> {
        let a = self.account;
        self.store
            .run(move |s| {
                let (_, ids) = s.ids(a, DataType::Mailbox)?;
                let (_, blobs) = s.get_many(a, DataType::Mailbox, &ids)?;
                Ok(blobs
                    .into_iter()
                    .flatten()
                    .filter_map(|b| MailboxRecord::from_bytes(&b))
                    .collect())
            })
            .await
            .unwrap()
    }

    pub async fn mailbox(&self, remote: &str) -> Option<MailboxRecord> {
        self.mailboxes()
            .await
            .into_iter()
            .find(|m| m.remote_id == remote)
    }

    pub async fn email(&self, id: &str) -> Option<EmailRecord> {
        self.sync.email(&ObjectId::new(id).unwrap()).await.unwrap()
    }

    /// Waits until `cond` holds on the store's Emails, at most `limit`; returns the time.
    pub async fn wait_emails(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&[EmailRecord]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond(&self.emails().await) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not in the store after {limit:?}; emails: {:#?}",
                self.emails()
                    .await
                    .iter()
                    .map(|e| (&e.id, &e.subject, &e.locations))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_mailboxes(
        &self,
        limit: Duration,
        what: &str,
        cond: impl Fn(&[MailboxRecord]) -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond(&self.mailboxes().await) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < limit,
                "{what}: not in the store after {limit:?}: {:#?}",
                self.mailboxes().await
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A small RFC 5322 message.
pub fn message(subject: &str, msgid: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: {subject}\r\n\
         Date: Thu, 01 Jan 2026 10:00:00 +0000\r\nMessage-ID: <{msgid}>\r\n{extra_headers}\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// An HS256 token for the test Dovecot's local OAuth 2 validation (`sub` is the user).
pub fn oauth_token(key: &[u8], user: &str, lifetime: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims =
        serde_json::json!({"sub": user, "iat": now - 5, "nbf": now - 5, "exp": now + lifetime});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key),
    )
    .unwrap()
}

/// A TCP proxy in front of a server whose connections can be lost the way a NAT, a load
/// balancer or a crashed host loses them: [`FlowDroppingProxy::drop_flows`] closes the
/// server side of every connection it carries at once, while the client side stays open
/// and silent (no FIN: the client cannot tell from its socket) until the client next sends
/// something, which gets a TCP reset. Connections accepted later are carried normally.
pub struct FlowDroppingProxy {
    pub port: u16,
    accepted: Arc<AtomicU32>,
    resets: Arc<AtomicU32>,
    generation: tokio::sync::watch::Sender<u32>,
}

impl FlowDroppingProxy {
    pub async fn start(target: u16) -> FlowDroppingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (generation, _) = tokio::sync::watch::channel(0u32);
        let proxy = FlowDroppingProxy {
            port,
            accepted: Arc::new(AtomicU32::new(0)),
            resets: Arc::new(AtomicU32::new(0)),
            generation,
        };
        let (accepted, resets, gen_tx) = (
            proxy.accepted.clone(),
            proxy.resets.clone(),
            proxy.generation.clone(),
        );
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let gen_rx = gen_tx.subscribe();
                tokio::spawn(carry(client, target, gen_rx, resets.clone()));
            }
        });
        proxy
    }

    pub fn server(&self) -> ImapServer {
        ImapServer::new("127.0.0.1", self.port, Security::Plain)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u32 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Dropped connections reset because their client sent something afterwards.
    pub fn resets(&self) -> u32 {
        self.resets.load(Ordering::SeqCst)
    }

    /// Drops every connection open now (see the type's description).
    pub fn drop_flows(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

/// Carries one connection until either side closes it, or until the flows of its
/// generation are dropped: then the server side is closed and the client side held silent
/// until it sends, which resets it.
async fn carry(
    mut client: tokio::net::TcpStream,
    target: u16,
    mut generation: tokio::sync::watch::Receiver<u32>,
    resets: Arc<AtomicU32>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let born = *generation.borrow_and_update();
    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await else {
        return;
    };
    let mut server = Some(server);
    let (mut from_client, mut from_server) = (vec![0u8; 16384], vec![0u8; 16384]);
    loop {
        tokio::select! {
            n = client.read(&mut from_client) => {
                let Ok(n @ 1..) = n else { return };
                match server.as_mut() {
                    Some(s) => {
                        if s.write_all(&from_client[..n]).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        // The flow is gone: the client learns it now, by a reset.
                        let _ = client.set_zero_linger();
                        resets.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
            }
            n = read_some(server.as_mut(), &mut from_server) => {
                let Ok(n @ 1..) = n else { return };
                if client.write_all(&from_server[..n]).await.is_err() {
                    return;
                }
            }
            changed = generation.changed(), if server.is_some() => {
                if changed.is_err() || *generation.borrow_and_update() > born {
                    server = None;
                }
            }
        }
    }
}

/// Reads from `stream`; never ready without one.
async fn read_some(
    stream: Option<&mut tokio::net::TcpStream>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    use tokio::io::AsyncReadExt;
    match stream {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

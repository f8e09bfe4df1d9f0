//! Live mail accounts: one sync driver per upstream account, running on the gateway's own
//! mail runtime, and what the JMAP Mail methods need to reach it.
//!
//! Configured accounts start when the gateway is built; passthrough accounts start at their
//! user's first successful login (the driver then uses the credentials of that login). Each
//! driver resumes from the cursors in the store, so a restart continues where it stopped.
//!
//! Drivers run on a dedicated multi-threaded tokio runtime (`mail` threads), so a long
//! initial sync never competes with the HTTP workers' event loops; method handlers call
//! into the same [`AccountSync`] from the workers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jmap_engine::MAIL_CAPABILITY;
use jmap_mail::methods::{QuotaInfo, QuotaResource, Submitter, UpstreamSubmitter, VacationBackend};
use jmap_mail::{AccountSync, SyncOptions};
use serde_json::{Value, json};
use state::{AccountId, AsyncStore};
use upstream::{BoxFuture, RemoteQuota, Secret, Upstream, UpstreamError};

use crate::accounts::Registry;
use crate::config::{AccountConfig, Config, EasAuthConfig, ImapAuth, SmtpConfig, TlsMode};

/// Where an account's mail is and how to log in: enough to build its adapter.
#[derive(Clone)]
pub enum UpstreamSpec {
    Imap {
        server: imap::ImapServer,
        creds: imap::Credentials,
        smtp: Option<SmtpSpec>,
        auth: imap::AuthMethod,
        /// Re-reads the secret (an OAuth access token) before each login.
        secret: Option<upstream::SecretProvider>,
        /// The ManageSieve server that offers VacationResponse, if any.
        sieve: Option<Box<SieveSpec>>,
    },
    Eas {
        endpoint: eas::EasEndpoint,
        auth: eas::EasAuth,
        /// Re-reads the secret (an OAuth access token) for each request.
        secret: Option<upstream::SecretProvider>,
    },
}

impl std::fmt::Debug for UpstreamSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamSpec::Imap { server, creds, .. } => f
                .debug_struct("Imap")
                .field("host", &server.host)
                .field("port", &server.port)
                .field("username", &creds.username)
                .finish_non_exhaustive(),
            UpstreamSpec::Eas { endpoint, .. } => f
                .debug_struct("Eas")
                .field("url", &endpoint.url)
                .field("username", &endpoint.username)
                .finish_non_exhaustive(),
        }
    }
}

/// A built adapter, and the EAS account behind it when it is one.
type Built = (Arc<dyn Upstream>, Option<Arc<eas::EasAccount>>);

/// An SMTP submission server with resolved credentials.
#[derive(Clone, Debug)]
pub struct SmtpSpec {
    pub config: SmtpConfig,
    pub username: String,
    pub password: Secret<String>,
    pub extra_ca_pem: Option<Vec<u8>>,
    /// AUTH XOAUTH2 with this token instead of the password (an OAuth IMAP account's SMTP
    /// table without a password of its own).
    pub oauth_token: Option<upstream::SecretProvider>,
}

impl UpstreamSpec {
    /// The account's mail address: the login name when it is one.
    pub fn address(&self) -> Option<String> {
        let user = match self {
            UpstreamSpec::Imap { creds, .. } => &creds.username,
            UpstreamSpec::Eas { endpoint, .. } => &endpoint.username,
        };
        user.contains('@').then(|| user.clone())
    }

    /// The adapter, and for EAS the concrete account too (for Settings Oof).
    fn build(&self) -> anyhow::Result<Built> {
        Ok(match self {
            UpstreamSpec::Imap {
                server,
                creds,
                auth,
                secret,
                ..
            } => {
                let mut account = imap::ImapAccount::new(
                    server.clone(),
                    creds.clone(),
                    imap::ImapOptions {
                        auth: *auth,
                        ..imap::ImapOptions::default()
                    },
                );
                if let Some(p) = secret {
                    account = account.with_secret_provider(p.clone());
                }
                (Arc::new(account), None)
            }
            UpstreamSpec::Eas {
                endpoint,
                auth,
                secret,
            } => {
                let settings = eas::EasSettings {
                    auth: *auth,
                    secret_provider: secret.clone(),
                    ..eas::EasSettings::default()
                };
                let eas = Arc::new(
                    eas::EasAccount::new(endpoint.clone(), settings)
                        .map_err(|e| anyhow::anyhow!("{e}"))?,
                );
                (eas.clone(), Some(eas))
            }
        })
    }
}

pub fn imap_security(tls: TlsMode) -> imap::Security {
    match tls {
        TlsMode::Tls => imap::Security::Tls,
        TlsMode::Starttls => imap::Security::StartTls,
        TlsMode::None => imap::Security::Plain,
    }
}

fn read_ca(path: &Option<std::path::PathBuf>) -> anyhow::Result<Option<Vec<u8>>> {
    path.as_ref()
        .map(|p| {
            std::fs::read(p)
                .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", p.display()))
        })
        .transpose()
}

/// A token read from its source again at every use, so a file that a refresher rewrites
/// (or an environment variable) always gives the current access token.
fn provider(source: &crate::config::SecretSource) -> upstream::SecretProvider {
    let source = source.clone();
    upstream::SecretProvider::new(move || source.resolve())
}

/// The adapter spec of a configured account, secrets resolved.
pub fn spec_for(account: &AccountConfig) -> anyhow::Result<UpstreamSpec> {
    Ok(match account {
        AccountConfig::Imap(a) => {
            let port = a.port.unwrap_or_else(|| a.tls.default_imap_port());
            let mut server = imap::ImapServer::new(a.host.clone(), port, imap_security(a.tls));
            server.extra_ca_pem = read_ca(&a.ca_file)?;
            let password = a
                .password
                .resolve()
                .map_err(|e| anyhow::anyhow!("password of {}: {e}", a.username))?;
            let smtp = match &a.smtp {
                Some(s) => Some(SmtpSpec {
                    config: s.clone(),
                    username: s.username.clone().unwrap_or_else(|| a.username.clone()),
                    password: match &s.password {
                        Some(p) => p
                            .resolve()
                            .map_err(|e| anyhow::anyhow!("smtp password: {e}"))?,
                        None => password.clone(),
                    },
                    extra_ca_pem: server.extra_ca_pem.clone(),
                    oauth_token: (s.password.is_none() && a.auth != ImapAuth::Password)
                        .then(|| provider(&a.password)),
                }),
                None => None,
            };
            let (auth, secret) = match a.auth {
                ImapAuth::Password => (imap::AuthMethod::Password, None),
                ImapAuth::Xoauth2 => (imap::AuthMethod::XOAuth2, Some(provider(&a.password))),
                ImapAuth::Oauthbearer => {
                    (imap::AuthMethod::OAuthBearer, Some(provider(&a.password)))
                }
            };
            UpstreamSpec::Imap {
                server,
                creds: imap::Credentials {
                    username: a.username.clone(),
                    password,
                },
                smtp,
                auth,
                secret,
                sieve: sieve_spec_for(account)?.map(Box::new),
            }
        }
        AccountConfig::Eas(a) => UpstreamSpec::Eas {
            auth: match a.auth {
                EasAuthConfig::Basic => eas::EasAuth::Basic,
                EasAuthConfig::Bearer => eas::EasAuth::Bearer,
            },
            secret: (a.auth == EasAuthConfig::Bearer).then(|| provider(&a.password)),
            endpoint: eas::EasEndpoint {
                url: a.url.clone(),
                username: a.username.clone(),
                password: a
                    .password
                    .resolve()
                    .map_err(|e| anyhow::anyhow!("password of {}: {e}", a.username))?,
                device_id: a
                    .device_id
                    .clone()
                    .unwrap_or_else(|| eas::EasEndpoint::derived_device_id(&a.url, &a.username)),
                device_type: "JmapGateway".into(),
                extra_ca_pem: read_ca(&a.ca_file)?,
            },
        },
    })
}

/// An IMAP account's ManageSieve server, with resolved credentials.
#[derive(Clone, Debug)]
pub struct SieveSpec {
    pub server: imap::SieveServer,
    pub creds: imap::Credentials,
}

/// The ManageSieve server of a `sieve` table: its host defaults to the IMAP server's, and
/// its CA is the IMAP account's.
pub fn sieve_server(
    s: &crate::config::SieveConfig,
    imap_host: &str,
    ca: &Option<Vec<u8>>,
) -> imap::SieveServer {
    let mut server = imap::SieveServer::new(
        s.host.clone().unwrap_or_else(|| imap_host.to_owned()),
        s.port.unwrap_or(imap::sieve::DEFAULT_SIEVE_PORT),
        imap_security(s.tls),
    );
    server.extra_ca_pem = ca.clone();
    server
}

/// The ManageSieve spec of a configured IMAP account with a `[users.accounts.sieve]` table.
pub fn sieve_spec_for(account: &AccountConfig) -> anyhow::Result<Option<SieveSpec>> {
    let AccountConfig::Imap(a) = account else {
        return Ok(None);
    };
    let Some(s) = &a.sieve else {
        return Ok(None);
    };
    let server = sieve_server(s, &a.host, &read_ca(&a.ca_file)?);
    let password = match &s.password {
        Some(p) => p.resolve(),
        None => a.password.resolve(),
    }
    .map_err(|e| anyhow::anyhow!("sieve password of {}: {e}", a.username))?;
    Ok(Some(SieveSpec {
        server,
        creds: imap::Credentials {
            username: s.username.clone().unwrap_or_else(|| a.username.clone()),
            password,
        },
    }))
}

/// One running account.
#[derive(Debug)]
pub struct LiveAccount {
    pub sync: AccountSync,
    pub address: Option<String>,
    pub submitter: Option<Arc<dyn Submitter>>,
    /// Where VacationResponse goes upstream (EAS: Settings Oof; IMAP: a Sieve script over
    /// ManageSieve), once upstream has shown it supports it; unset: not offered.
    pub vacation: std::sync::OnceLock<Arc<dyn VacationBackend>>,
    /// The quotas as last read from upstream (RFC 9425), refreshed after every sync round.
    quotas: Mutex<Vec<QuotaInfo>>,
    /// The account capabilities as last given to the registry; features found later
    /// (VacationResponse, Quota) add theirs here, so neither undoes the other.
    capabilities: Mutex<BTreeMap<String, Value>>,
}

impl LiveAccount {
    /// The account's quotas as last read from upstream.
    pub fn quotas(&self) -> Vec<QuotaInfo> {
        self.quotas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Adds an account capability (with `{}` as its value) and publishes the set.
    fn add_capability(&self, registry: &Registry, id: AccountId, capability: &str) {
        let mut caps = self.capabilities.lock().unwrap_or_else(|e| e.into_inner());
        caps.insert(capability.to_owned(), json!({}));
        registry.set_account_capabilities(id, caps.clone());
    }
}

/// Quotas are read again after a sync round, at most this often, and at least this often
/// when no round comes.
const QUOTA_MIN_INTERVAL: Duration = Duration::from_secs(1);
const QUOTA_MAX_INTERVAL: Duration = Duration::from_secs(300);

/// Keeps `live`'s quotas current: asks upstream at once, then after every sync round (a
/// write or an upstream change may have moved usage) or every five minutes, until
/// shutdown. The Quota capability is added to the account the first time quotas are found.
/// An upstream without quotas (`Unsupported`) is not asked again.
async fn refresh_quotas(
    live: Arc<LiveAccount>,
    id: AccountId,
    registry: Arc<Registry>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut progress = live.sync.watch_progress();
    let mut offered = false;
    loop {
        let round = progress.borrow_and_update().rounds;
        let asked = tokio::select! {
            r = live.sync.upstream().quotas() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match asked {
            Ok(remote) => {
                let found = quota_infos(&remote);
                let any = !found.is_empty();
                *live.quotas.lock().unwrap_or_else(|e| e.into_inner()) = found;
                if any && !offered {
                    offered = true;
                    live.add_capability(&registry, id, jmap_mail::methods::QUOTA);
                }
            }
            Err(UpstreamError::Unsupported(m)) => {
                tracing::info!(account = %id, "no quotas upstream: {m}");
                return;
            }
            Err(e) => tracing::info!(account = %id, "cannot read the quotas: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(QUOTA_MIN_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        tokio::select! {
            r = progress.wait_for(|p| p.rounds > round) => {
                if r.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(QUOTA_MAX_INTERVAL) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Upstream quotas as RFC 9425 Quota objects: `STORAGE` (KiB) as octets, `MESSAGE` and
/// `MAILBOX` as counts; resources JMAP has no use for are left out. The id is a digest of
/// root and resource, so it stays the same across refreshes and restarts; the name is the
/// root's (or the resource's, for a root without a name).
pub fn quota_infos(remote: &[RemoteQuota]) -> Vec<QuotaInfo> {
    use base64::Engine as _;
    use sha2::Digest as _;
    remote
        .iter()
        .filter_map(|q| {
            let (resource, scale, types) = match q.resource.to_ascii_uppercase().as_str() {
                "STORAGE" => (QuotaResource::Octets, 1024, "Mail"),
                "MESSAGE" => (QuotaResource::Count, 1, "Mail"),
                "MAILBOX" => (QuotaResource::Count, 1, "Mailbox"),
                _ => return None,
            };
            let mut h = sha2::Sha256::new();
            h.update(q.root.as_bytes());
            h.update([0]);
            h.update(q.resource.to_ascii_uppercase().as_bytes());
            let digest = h.finalize();
            let id = format!(
                "q{}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..12])
            );
            let name = if q.root.is_empty() {
                q.resource.to_ascii_lowercase()
            } else {
                q.root.clone()
            };
            Some(QuotaInfo {
                id,
                resource,
                used: q.usage.saturating_mul(scale),
                hard_limit: q.limit.saturating_mul(scale),
                warn_limit: None,
                soft_limit: None,
                name,
                description: None,
                types: vec![types.to_owned()],
            })
        })
        .collect()
}

/// Every live account and the runtime their drivers run on.
pub struct MailAccounts {
    store: AsyncStore,
    registry: Arc<Registry>,
    runtime: tokio::runtime::Handle,
    live: RwLock<HashMap<AccountId, Arc<LiveAccount>>>,
    shutdown: tokio::sync::watch::Sender<bool>,
    stopped: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    options: SyncOptions,
}

impl std::fmt::Debug for MailAccounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailAccounts")
            .field("live", &read(&self.live).len())
            .finish_non_exhaustive()
    }
}

impl MailAccounts {
    /// Starts the mail runtime (its threads end at [`MailAccounts::shutdown`]).
    pub fn new(store: AsyncStore, registry: Arc<Registry>) -> anyhow::Result<Arc<MailAccounts>> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("mail")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (shutdown, mut rx) = tokio::sync::watch::channel(false);
        // Hourly, the change log is trimmed to the store's age and length limits (older states
        // then answer cannotCalculateChanges, as RFC 8620 allows).
        let trim_store = store.clone();
        let mut trim_stop = store.blocking().shutdown_signal();
        handle.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(3600));
            every.tick().await;
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    _ = trim_stop.wait_for(|s| *s) => break,
                }
                match trim_store
                    .run(|s| s.trim(std::time::SystemTime::now()))
                    .await
                {
                    Ok(report) => tracing::debug!(?report, "change log trimmed"),
                    Err(e) => tracing::warn!("trimming the change log failed: {e}"),
                }
            }
        });
        // The gateway's shutdown (the store's signal) stops the drivers too.
        let mut store_signal = store.blocking().shutdown_signal();
        let forward = shutdown.clone();
        handle.spawn(async move {
            if store_signal.wait_for(|s| *s).await.is_ok() {
                let _ = forward.send(true);
            }
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("mail-runtime".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while !*rx.borrow_and_update() {
                        if rx.changed().await.is_err() {
                            break;
                        }
                    }
                });
                // Drivers got the signal too; give them a moment to finish their batch.
                runtime.shutdown_timeout(Duration::from_secs(10));
                let _ = done_tx.send(());
            })?;
        Ok(Arc::new(MailAccounts {
            store,
            registry,
            runtime: handle,
            live: RwLock::new(HashMap::new()),
            shutdown,
            stopped: Mutex::new(Some(done_rx)),
            options: SyncOptions::default(),
        }))
    }

    /// The live account with store number `id`, if its driver runs.
    pub fn get(&self, id: AccountId) -> Option<Arc<LiveAccount>> {
        read(&self.live).get(&id).cloned()
    }

    /// Starts every configured account of every user.
    pub fn start_configured(&self, config: &Config) -> anyhow::Result<()> {
        for user in &config.users {
            let ids = self.registry.configured_account_ids(&user.name);
            for (account, id) in user.accounts.iter().zip(ids) {
                let spec = spec_for(account)?;
                let address = account_address(account).or_else(|| spec.address());
                self.start(id, spec, address)?;
            }
        }
        Ok(())
    }

    /// Starts the driver of account `id` unless it runs already.
    pub fn start(
        &self,
        id: AccountId,
        spec: UpstreamSpec,
        address: Option<String>,
    ) -> anyhow::Result<()> {
        if read(&self.live).contains_key(&id) {
            return Ok(());
        }
        let (upstream, eas) = spec.build()?;
        let sync = AccountSync::new(self.store.clone(), id, upstream, self.options.clone());
        let submitter: Option<Arc<dyn Submitter>> = match &spec {
            // EAS accounts send through SendMail, which files the Sent copy itself.
            UpstreamSpec::Eas { .. } => Some(Arc::new(UpstreamSubmitter(sync.upstream().clone()))),
            UpstreamSpec::Imap { smtp: Some(s), .. } => Some(smtp_submitter(s)?),
            UpstreamSpec::Imap { smtp: None, .. } => None,
        };
        let mut caps = mail_account_capabilities();
        if submitter.is_some() {
            caps.insert(
                jmap_mail::methods::SUBMISSION.to_owned(),
                json!({"maxDelayedSend": 0, "submissionExtensions": {}}),
            );
        }
        let live = Arc::new(LiveAccount {
            sync: sync.clone(),
            address,
            submitter,
            vacation: std::sync::OnceLock::new(),
            quotas: Mutex::new(Vec::new()),
            capabilities: Mutex::new(caps.clone()),
        });
        {
            let mut map = write(&self.live);
            if map.contains_key(&id) {
                return Ok(());
            }
            map.insert(id, live);
        }
        self.registry.set_account_capabilities(id, caps);
        let shutdown = self.shutdown.subscribe();
        tracing::info!(account = %id, upstream = ?spec, "starting the account's sync");
        self.runtime.spawn(sync.run(shutdown));
        let live = self
            .get(id)
            .ok_or_else(|| anyhow::anyhow!("account {id} vanished while starting"))?;
        self.runtime.spawn(refresh_quotas(
            live.clone(),
            id,
            self.registry.clone(),
            self.shutdown.subscribe(),
        ));
        if let UpstreamSpec::Imap {
            sieve: Some(sieve), ..
        } = &spec
        {
            self.start_sieve(id, (**sieve).clone());
        }
        if let Some(eas) = eas {
            // VacationResponse is offered only where the server answers Settings Oof.
            let registry = self.registry.clone();
            self.runtime.spawn(async move {
                match eas.supports_oof().await {
                    Ok(true) => {
                        let _ = live.vacation.set(Arc::new(EasVacation(eas)));
                        live.add_capability(&registry, id, jmap_mail::methods::VACATION);
                    }
                    Ok(false) => {
                        tracing::info!(account = %id, "the server has no out-of-office (Settings Oof): no VacationResponse")
                    }
                    Err(e) => {
                        tracing::warn!(account = %id, "cannot tell whether the server has out-of-office: {e}")
                    }
                }
            });
        }
        Ok(())
    }

    /// Offers VacationResponse for IMAP account `id` through its ManageSieve server, once
    /// the server has accepted the login and listed `vacation` among its Sieve extensions.
    /// An unreachable server is asked again a few times (backing off from 5 s to 80 s); a
    /// refused login or a server without `vacation` is logged and the capability not offered.
    pub fn start_sieve(&self, id: AccountId, sieve: SieveSpec) {
        let Some(live) = self.get(id) else {
            return;
        };
        let registry = self.registry.clone();
        let mut shutdown = self.shutdown.subscribe();
        self.runtime.spawn(async move {
            let mut delay = Duration::from_secs(5);
            loop {
                match imap::sieve::supports_vacation(&sieve.server, &sieve.creds).await {
                    Ok(true) => {
                        let _ = live.vacation.set(Arc::new(SieveVacation(sieve)));
                        live.add_capability(&registry, id, jmap_mail::methods::VACATION);
                        return;
                    }
                    Ok(false) => {
                        tracing::info!(account = %id, "the Sieve server has no vacation extension: no VacationResponse");
                        return;
                    }
                    Err(
                        e @ (imap::SieveError::Connect { .. }
                        | imap::SieveError::Timeout
                        | imap::SieveError::Bye(_)),
                    ) if delay <= Duration::from_secs(80) => {
                        tracing::info!(account = %id, "ManageSieve not reachable, asking again in {delay:?}: {e}");
                    }
                    Err(e) => {
                        tracing::warn!(account = %id, "no VacationResponse: ManageSieve failed: {e}");
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                delay *= 2;
            }
        });
    }

    /// Signals every driver to stop after its current batch and waits (up to 15 s) for the
    /// mail runtime to wind down.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let rx = self
            .stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(rx) = rx {
            let _ = rx.recv_timeout(Duration::from_secs(15));
        }
    }
}

/// A configured account's address, if the config names one.
fn account_address(account: &AccountConfig) -> Option<String> {
    match account {
        AccountConfig::Imap(a) => a.address.clone(),
        AccountConfig::Eas(a) => a.address.clone(),
    }
}

/// The Mail account capability (RFC 8621 §1.3.1) of an account the gateway syncs.
pub fn mail_account_capabilities() -> BTreeMap<String, Value> {
    BTreeMap::from([(
        MAIL_CAPABILITY.to_owned(),
        json!({
            "maxMailboxesPerEmail": null,
            "maxMailboxDepth": null,
            "maxSizeMailboxName": 490,
            "maxSizeAttachmentsPerEmail": 50_000_000,
            "emailQuerySortOptions": [
                "receivedAt", "size", "from", "to", "subject", "sentAt",
                "hasKeyword", "allInThreadHaveKeyword", "someInThreadHaveKeyword"
            ],
            "mayCreateTopLevelMailbox": true
        }),
    )])
}

/// The SMTP submitter of an IMAP account.
fn smtp_submitter(s: &SmtpSpec) -> anyhow::Result<Arc<dyn Submitter>> {
    use jmap_mail::smtp::{SmtpConfig, SmtpSecurity, SmtpSubmitter};
    let c = &s.config;
    let security = match c.tls {
        TlsMode::Tls => SmtpSecurity::ImplicitTls,
        TlsMode::Starttls => SmtpSecurity::StartTls,
        TlsMode::None => SmtpSecurity::Plain,
    };
    let mut config = SmtpConfig::new(
        c.host.clone(),
        c.port.unwrap_or_else(|| c.tls.default_smtp_port()),
        security,
    );
    if c.auth {
        config.credentials = Some((s.username.clone(), s.password.clone()));
        config.oauth_token = s.oauth_token.clone();
    }
    config.extra_ca_pem = s.extra_ca_pem.clone();
    let submitter =
        SmtpSubmitter::new(config).map_err(|e| anyhow::anyhow!("smtp server {}: {e}", c.host))?;
    Ok(Arc::new(submitter))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// VacationResponse for an EAS account, through Settings Oof (MS-ASCMD 2.2.3.122).
///
/// The mapping is `eas::command::OofSettings::vacation`: `isEnabled` false is OofState 0;
/// no dates is OofState 1 (on until turned off); any date is OofState 2 with StartTime and
/// EndTime (a missing `fromDate` is now, a missing `toDate` 2100-01-01, since EAS needs
/// both). `textBody` is the reply (BodyType Text) for internal, known and unknown external
/// senders alike; `htmlBody` is used, as HTML, only when there is no `textBody`. `subject`
/// has no EAS field and is not sent: the server picks the reply's subject. A server that
/// offers no Oof (SOGo with vacation turned off) gives `Unsupported`, which VacationResponse/set
/// reports as `forbidden`.
#[derive(Debug)]
pub struct EasVacation(pub Arc<eas::EasAccount>);

impl VacationBackend for EasVacation {
    fn apply<'a>(
        &'a self,
        settings: &'a jmap_mail::methods::VacationSettings,
    ) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            let now = upstream::civil::unix_now();
            let oof = eas::command::OofSettings::vacation(
                settings.is_enabled,
                settings.from_date,
                settings.to_date,
                settings.text_body.as_deref(),
                settings.html_body.as_deref(),
                now,
            );
            self.0.set_oof(&oof).await
        })
    }
}

/// VacationResponse for an IMAP account, as a Sieve script on its ManageSieve server
/// (`imap::sieve::apply_vacation`): the script `jmap-vacation` holds a `vacation` action
/// (RFC 5230) with `:days 1`, the subject, the text (and, with an HTML body, a `:mime`
/// reply), guarded by `currentdate` tests for `fromDate`/`toDate`. Turning it on while
/// another of the user's scripts is active is refused (`forbidden`, naming that script):
/// ManageSieve has one active script, and switching the user's own filters off behind
/// their back is worse than no vacation reply. Turning it off deactivates our script only.
#[derive(Debug)]
pub struct SieveVacation(pub SieveSpec);

impl VacationBackend for SieveVacation {
    fn apply<'a>(
        &'a self,
        settings: &'a jmap_mail::methods::VacationSettings,
    ) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            imap::sieve::apply_vacation(&self.0.server, &self.0.creds, settings)
                .await
                .map_err(UpstreamError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(root: &str, resource: &str, usage: u64, limit: u64) -> RemoteQuota {
        RemoteQuota {
            root: root.into(),
            resource: resource.into(),
            usage,
            limit,
        }
    }

    #[test]
    fn a_sieve_table_defaults_to_the_imap_account() {
        let config = Config::parse(
            r#"
            [[users]]
            name = "a"
            password = "x"
            [[users.accounts]]
            kind = "imap"
            host = "imap.example.com"
            username = "u"
            password = "p"
            [users.accounts.sieve]
            [[users.accounts]]
            kind = "imap"
            host = "imap.example.com"
            username = "u"
            password = "p"
            [users.accounts.sieve]
            host = "sieve.example.com"
            port = 2000
            tls = "tls"
            username = "v"
            password = "q"
            [[users.accounts]]
            kind = "imap"
            host = "imap.example.com"
            username = "u"
            password = "p"
            "#,
        )
        .expect("valid");
        let accounts = &config.users[0].accounts;
        let default = sieve_spec_for(&accounts[0])
            .expect("resolves")
            .expect("a table");
        assert_eq!(
            (default.server.host.as_str(), default.server.port),
            ("imap.example.com", 4190)
        );
        assert_eq!(default.server.security, imap::Security::StartTls);
        assert_eq!(default.creds.username, "u");
        assert_eq!(default.creds.password.expose(), "p");
        let explicit = sieve_spec_for(&accounts[1])
            .expect("resolves")
            .expect("a table");
        assert_eq!(
            (explicit.server.host.as_str(), explicit.server.port),
            ("sieve.example.com", 2000)
        );
        assert_eq!(explicit.server.security, imap::Security::Tls);
        assert_eq!(explicit.creds.username, "v");
        assert_eq!(explicit.creds.password.expose(), "q");
        assert!(sieve_spec_for(&accounts[2]).expect("resolves").is_none());
    }

    #[test]
    fn upstream_quotas_become_jmap_quotas() {
        let q = quota_infos(&[
            remote("User quota", "STORAGE", 5, 1_048_576),
            remote("User quota", "MESSAGE", 1, 100_000),
            remote("", "MAILBOX", 2, 50),
            remote("User quota", "ANNOTATION-STORAGE", 1, 2),
        ]);
        assert_eq!(q.len(), 3);
        assert_eq!(q[0].resource, QuotaResource::Octets);
        assert_eq!((q[0].used, q[0].hard_limit), (5 * 1024, 1 << 30));
        assert_eq!(q[0].name, "User quota");
        assert_eq!(q[0].types, ["Mail"]);
        assert_eq!(q[1].resource, QuotaResource::Count);
        assert_eq!((q[1].used, q[1].hard_limit), (1, 100_000));
        assert_eq!(
            (q[2].name.as_str(), q[2].types.as_slice()),
            ("mailbox", &["Mailbox".to_owned()][..])
        );
        // Ids: valid JMAP Ids, distinct, and the same whatever the usage.
        for x in &q {
            assert!(jmap_engine::Id::new(x.id.as_str()).is_ok(), "{}", x.id);
        }
        assert_ne!(q[0].id, q[1].id);
        let again = quota_infos(&[remote("User quota", "storage", 900, 1_048_576)]);
        assert_eq!(again[0].id, q[0].id);
        assert_eq!(again[0].used, 900 * 1024);
    }
}

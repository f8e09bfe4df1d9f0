//! The account registry: which gateway users exist, which JMAP accounts each one sees, and the
//! stable account ids those accounts keep across restarts.
//!
//! Ids are allocated once and persisted in the store's cursor space of the reserved account 0
//! (`next` → the next number, `acct:<key>` → the number of the account with that identity), so a
//! reordered configuration file keeps every account's id. Each user also gets a hidden "home"
//! account number that holds what belongs to the user rather than to a mail account (push
//! subscriptions).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use jmap_engine::{Id, MAIL_CAPABILITY};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use state::{AccountId, AsyncStore, Commit};
use subtle::ConstantTimeEq;
use upstream::Secret;

use crate::config::{AccountConfig, Config, SecretSource, UserConfig};

/// The store account whose cursor space holds the registry.
pub const REGISTRY_ACCOUNT: AccountId = AccountId(0);

/// The JMAP id of a store account: `a` and its number.
pub fn jmap_account_id(store_id: AccountId) -> Id {
    Id::new(format!("a{}", store_id.0)).expect("a letter and digits are a valid Id")
}

/// One JMAP account of a user.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEntry {
    pub id: Id,
    pub store_id: AccountId,
    pub name: String,
    pub is_personal: bool,
    pub is_read_only: bool,
    /// Capability URI → account capability object (what the Session's accountCapabilities shows).
    pub capabilities: BTreeMap<String, Value>,
}

/// A gateway user as the HTTP layer sees them after authentication: a snapshot of their
/// accounts and the session state derived from it.
#[derive(Debug, Clone)]
pub struct UserEntry {
    pub name: String,
    /// The user's own store number (push subscriptions live there).
    pub home: AccountId,
    pub accounts: Vec<AccountEntry>,
    /// Changes whenever `accounts` changes (the Session's `state`).
    pub session_state: String,
}

impl UserEntry {
    pub fn account(&self, id: &str) -> Option<&AccountEntry> {
        self.accounts.iter().find(|a| a.id.as_str() == id)
    }

    /// Capability URI → the first account that has it.
    pub fn primary_accounts(&self) -> BTreeMap<String, Id> {
        let mut out = BTreeMap::new();
        for account in &self.accounts {
            for capability in account.capabilities.keys() {
                out.entry(capability.clone())
                    .or_insert_with(|| account.id.clone());
            }
        }
        out
    }
}

/// An account a passthrough login produced.
#[derive(Debug, Clone)]
pub struct PassthroughAccount {
    /// What makes this account the same one next time (e.g. `imap:host:port:user`).
    pub key: String,
    pub name: String,
    /// How to sync it with the credentials of this login (None: login only, no mail).
    pub upstream: Option<crate::mail::UpstreamSpec>,
}

/// Called with a passthrough account's store number and adapter spec after each login.
pub type LoginHook = Box<dyn Fn(AccountId, crate::mail::UpstreamSpec) + Send + Sync>;

/// The boxed future of a passthrough login.
pub type LoginFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Option<PassthroughAccount>, String>> + Send + 'a>>;

/// The seam the adapters implement for `[[passthrough]]` servers: try the credentials upstream
/// and, when they work, name the account they give. `Ok(None)` means "not my user".
pub trait PassthroughLogin: Send + Sync {
    fn login<'a>(&'a self, username: &'a str, password: &'a Secret<String>) -> LoginFuture<'a>;
}

#[derive(Clone)]
struct ConfiguredUser {
    password: SecretSource,
    /// (identity key, display name) per account.
    accounts: Vec<(String, String)>,
}

/// Why a login failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("unknown user or wrong password")]
    BadCredentials,
    #[error("the account registry is unavailable: {0}")]
    Unavailable(String),
}

/// A user's home account and (store id, display name) of each JMAP account.
type RawAccounts = (AccountId, Vec<(AccountId, String)>);

/// Users, their accounts and the stable account ids.
pub struct Registry {
    store: AsyncStore,
    configured: HashMap<String, ConfiguredUser>,
    passthrough: Vec<Arc<dyn PassthroughLogin>>,
    /// Capabilities every account gets unless overridden per account.
    default_capabilities: BTreeMap<String, Value>,
    overrides: RwLock<HashMap<AccountId, BTreeMap<String, Value>>>,
    users: RwLock<HashMap<String, Arc<UserEntry>>>,
    /// Raw account lists per user (identity key, name, store id), to rebuild entries.
    raw: RwLock<HashMap<String, RawAccounts>>,
    alloc: tokio::sync::Mutex<()>,
    on_login: std::sync::OnceLock<LoginHook>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("configured_users", &self.configured.len())
            .field("passthrough", &self.passthrough.len())
            .finish_non_exhaustive()
    }
}

fn account_key(user: &str, account: &AccountConfig) -> (String, String) {
    let name = match account {
        AccountConfig::Imap(a) => a.name.clone().unwrap_or_else(|| a.username.clone()),
        AccountConfig::Eas(a) => a.name.clone().unwrap_or_else(|| a.username.clone()),
    };
    (format!("user:{user}:{}", account.upstream_identity()), name)
}

fn configured_user(u: &UserConfig) -> ConfiguredUser {
    ConfiguredUser {
        password: u.password.clone(),
        accounts: u.accounts.iter().map(|a| account_key(&u.name, a)).collect(),
    }
}

/// Compares two secrets without leaking where they differ or their lengths.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    bool::from(da.as_slice().ct_eq(db.as_slice()))
}

impl Registry {
    /// The registry for the configured users; allocates ids for any account seen the first time.
    pub async fn new(
        store: AsyncStore,
        config: &Config,
        passthrough: Vec<Arc<dyn PassthroughLogin>>,
        default_capabilities: BTreeMap<String, Value>,
    ) -> Result<Registry, LoginError> {
        let configured = config
            .users
            .iter()
            .map(|u| (u.name.clone(), configured_user(u)))
            .collect();
        let registry = Registry {
            store,
            configured,
            passthrough,
            default_capabilities,
            overrides: RwLock::new(HashMap::new()),
            users: RwLock::new(HashMap::new()),
            raw: RwLock::new(HashMap::new()),
            alloc: tokio::sync::Mutex::new(()),
            on_login: std::sync::OnceLock::new(),
        };
        let names: Vec<(String, Vec<(String, String)>)> = registry
            .configured
            .iter()
            .map(|(n, u)| (n.clone(), u.accounts.clone()))
            .collect();
        for (name, accounts) in names {
            registry.install_user(&name, &accounts).await?;
        }
        Ok(registry)
    }

    /// The default capabilities plus what the mail layer can say every account has.
    pub fn default_capabilities(&self) -> &BTreeMap<String, Value> {
        &self.default_capabilities
    }

    /// Every known user (configured ones, and passthrough users who have logged in).
    pub fn user(&self, name: &str) -> Option<Arc<UserEntry>> {
        read(&self.users).get(name).cloned()
    }

    pub fn user_names(&self) -> Vec<String> {
        read(&self.users).keys().cloned().collect()
    }

    /// Checks a login: configured users first (constant-time), then each passthrough server.
    pub async fn login(
        &self,
        name: &str,
        password: &Secret<String>,
    ) -> Result<Arc<UserEntry>, LoginError> {
        if let Some(user) = self.configured.get(name) {
            let expected = user.password.resolve().map_err(|e| {
                tracing::error!(user = name, "cannot read the user's password: {e}");
                LoginError::Unavailable("password source unreadable".into())
            })?;
            if secrets_equal(expected.expose().as_bytes(), password.expose().as_bytes()) {
                return self.user(name).ok_or(LoginError::BadCredentials);
            }
            return Err(LoginError::BadCredentials);
        }
        // Equalise timing with the configured-user path.
        let _ = secrets_equal(b"no such user", password.expose().as_bytes());
        for server in &self.passthrough {
            match server.login(name, password).await {
                Ok(Some(account)) => {
                    let accounts = vec![(format!("passthrough:{}", account.key), account.name)];
                    let entry = self.install_user(name, &accounts).await?;
                    if let (Some(spec), Some(hook), Some(a)) = (
                        account.upstream,
                        self.on_login.get(),
                        entry.accounts.first(),
                    ) {
                        hook(a.store_id, spec);
                    }
                    // The hook may have changed the account's capabilities.
                    return self.user(name).ok_or(LoginError::BadCredentials);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(user = name, "passthrough login failed: {e}"),
            }
        }
        Err(LoginError::BadCredentials)
    }

    /// Sets what runs after a passthrough login (the mail layer starts the account's sync).
    /// Only the first call takes effect.
    pub fn set_login_hook(&self, hook: LoginHook) {
        let _ = self.on_login.set(hook);
    }

    /// The store numbers of a configured user's accounts, in configuration order.
    pub fn configured_account_ids(&self, user: &str) -> Vec<AccountId> {
        read(&self.raw)
            .get(user)
            .map(|(_, ids)| ids.iter().map(|(id, _)| *id).collect())
            .unwrap_or_default()
    }

    /// Sets the capabilities of one account (the mail layer calls this once it knows what the
    /// upstream server supports); every user seeing it gets a new session state.
    pub fn set_account_capabilities(&self, store_id: AccountId, caps: BTreeMap<String, Value>) {
        write(&self.overrides).insert(store_id, caps);
        let raw: Vec<(String, RawAccounts)> = read(&self.raw)
            .iter()
            .filter(|(_, (_, accounts))| accounts.iter().any(|(id, _)| *id == store_id))
            .map(|(n, raw)| (n.clone(), raw.clone()))
            .collect();
        for (name, (home, accounts)) in raw {
            let entry = self.build_entry(&name, home, &accounts);
            write(&self.users).insert(name, Arc::new(entry));
        }
    }

    /// Every (user, account) pair, for the sync driver and push.
    pub fn all_accounts(&self) -> Vec<(String, AccountEntry)> {
        read(&self.users)
            .values()
            .flat_map(|u| u.accounts.iter().map(|a| (u.name.clone(), a.clone())))
            .collect()
    }

    async fn install_user(
        &self,
        name: &str,
        accounts: &[(String, String)],
    ) -> Result<Arc<UserEntry>, LoginError> {
        let home = self.allocate(&format!("home:{name}")).await?;
        let mut ids = Vec::with_capacity(accounts.len());
        for (key, display) in accounts {
            ids.push((self.allocate(key).await?, display.clone()));
        }
        let entry = Arc::new(self.build_entry(name, home, &ids));
        write(&self.raw).insert(name.to_owned(), (home, ids));
        write(&self.users).insert(name.to_owned(), entry.clone());
        Ok(entry)
    }

    fn build_entry(&self, name: &str, home: AccountId, ids: &[(AccountId, String)]) -> UserEntry {
        let overrides = read(&self.overrides);
        let accounts: Vec<AccountEntry> = ids
            .iter()
            .map(|(store_id, display)| AccountEntry {
                id: jmap_account_id(*store_id),
                store_id: *store_id,
                name: display.clone(),
                is_personal: true,
                is_read_only: false,
                capabilities: overrides
                    .get(store_id)
                    .cloned()
                    .unwrap_or_else(|| self.default_capabilities.clone()),
            })
            .collect();
        let fingerprint = json!(
            accounts
                .iter()
                .map(|a| json!([a.id.as_str(), a.name, a.is_read_only, a.capabilities]))
                .collect::<Vec<_>>()
        );
        let digest = Sha256::digest(fingerprint.to_string().as_bytes());
        let session_state = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        UserEntry {
            name: name.to_owned(),
            home,
            accounts,
            session_state,
        }
    }

    /// The stable number of the account with identity `key`, allocating it the first time.
    async fn allocate(&self, key: &str) -> Result<AccountId, LoginError> {
        let _guard = self.alloc.lock().await;
        let cursor = format!("acct:{key}").into_bytes();
        let unavailable = |e: state::Error| LoginError::Unavailable(e.to_string());
        let name = cursor.clone();
        let existing = self
            .store
            .run(move |s| s.cursor(REGISTRY_ACCOUNT, &name))
            .await
            .map_err(unavailable)?;
        if let Some(v) = existing {
            return decode_u64(&v)
                .map(AccountId)
                .ok_or_else(|| LoginError::Unavailable("corrupt account id".into()));
        }
        let next = self
            .store
            .run(|s| s.cursor(REGISTRY_ACCOUNT, b"next"))
            .await
            .map_err(unavailable)?
            .and_then(|v| decode_u64(&v))
            .unwrap_or(1);
        let mut commit = Commit::new(REGISTRY_ACCOUNT);
        commit
            .set_cursor(cursor, next.to_be_bytes().to_vec())
            .set_cursor(b"next".to_vec(), (next + 1).to_be_bytes().to_vec());
        self.store.commit(commit).await.map_err(unavailable)?;
        Ok(AccountId(next))
    }
}

/// The account capabilities a mail account will have once the mail layer serves it; not the
/// default until it does (an account must not advertise methods nobody answers).
pub fn mail_capabilities() -> BTreeMap<String, Value> {
    BTreeMap::from([(MAIL_CAPABILITY.to_owned(), json!({}))])
}

fn decode_u64(v: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

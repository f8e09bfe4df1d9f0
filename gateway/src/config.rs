//! The gateway's configuration: one TOML file, every option defaulted, validated at start.
//!
//! Errors name the key that is wrong (`users[0].accounts[1].tls`) and what was expected.
//! Secrets are written as `"inline"`, `{ env = "VAR" }` or `{ file = "/path" }` and are
//! resolved when checked and again when used, so a rotated file needs no restart.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use upstream::Secret;

/// The default place the gateway looks for its configuration.
pub const DEFAULT_CONFIG_PATH: &str = "jmap-gateway.toml";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub push: PushConfig,
    /// Gateway users and their upstream accounts.
    pub users: Vec<UserConfig>,
    /// Upstream servers whose users get a JMAP account just by logging in.
    pub passthrough: Vec<PassthroughConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP listener binds to.
    pub listen: SocketAddr,
    /// The URL clients reach the gateway at, when it differs from `http://{listen}`.
    pub public_url: Option<String>,
    /// PEM certificate chain (leaf first) for HTTPS; set together with `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<PathBuf>,
    /// How often the certificate files are checked for a renewal; 0 = only on SIGHUP.
    pub tls_reload_secs: u64,
    /// Serve plain HTTP on a non-loopback address (a TLS-terminating proxy is in front).
    pub allow_plain_http: bool,
    /// Peers (IP addresses or CIDR blocks) whose Forwarded / X-Forwarded-* headers are believed.
    pub trusted_proxies: Vec<String>,
    /// On SIGINT/SIGTERM, how long in-flight requests get to finish.
    pub shutdown_timeout_secs: u64,
    /// The local admin socket (`jmap-gateway backup`); default `admin.sock` in `store.path`.
    pub admin_socket: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            tls_reload_secs: 60,
            allow_plain_http: false,
            trusted_proxies: Vec::new(),
            shutdown_timeout_secs: 20,
            admin_socket: None,
        }
    }
}

impl ServerConfig {
    /// Whether the listener speaks HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// The admin socket path for a store at `store_path`.
    pub fn admin_socket(&self, store_path: &Path) -> PathBuf {
        self.admin_socket
            .clone()
            .unwrap_or_else(|| crate::admin::default_socket(store_path))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync before every commit is acknowledged.
    Sync,
    /// Commits arriving within `group_commit_window_ms` share one fsync.
    Group,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Folder of the embedded RocksDB store; created if missing.
    pub path: PathBuf,
    pub durability: Durability,
    /// Longest a commit waits for others to share its fsync (group durability only).
    pub group_commit_window_ms: u64,
    /// Upper bound of the message-body and attachment cache, in MiB.
    pub blob_cache_mib: u64,
    /// Change-log entries kept per account and type before the oldest are trimmed.
    pub changelog_max_entries: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("./data"),
            durability: Durability::Group,
            group_commit_window_ms: 2,
            blob_cache_mib: 512,
            changelog_max_entries: 100_000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing env-filter directive; `RUST_LOG` overrides it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            filter: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Key that signs the gateway's bearer tokens; a random one is made per start if absent
    /// (tokens then do not survive a restart).
    pub token_secret: Option<SecretSource>,
    pub token_lifetime_secs: u64,
    /// Browser origins allowed to call the API (CORS); empty means none.
    pub cors_origins: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            token_secret: None,
            token_lifetime_secs: 3600,
            cors_origins: Vec::new(),
        }
    }
}

/// Which URLs PushSubscriptions may make the gateway call, and how it delivers to them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushConfig {
    /// Accept `http://` subscription URLs (RFC 8620 requires https; for tests and LANs).
    pub allow_http: bool,
    /// Hosts (names or IP addresses) that may be called even though they resolve to loopback,
    /// private or link-local addresses, which are refused otherwise.
    pub allowed_hosts: Vec<String>,
    /// Longest lifetime of a subscription; later `expires` values are clamped to it.
    pub max_expiry_days: u64,
    /// Delivery attempts per StateChange before it is dropped (the next change is sent anyway).
    pub retry_attempts: u32,
    /// First retry delay; each further retry doubles it.
    pub retry_initial_ms: u64,
}

impl Default for PushConfig {
    fn default() -> Self {
        PushConfig {
            allow_http: false,
            allowed_hosts: Vec::new(),
            max_expiry_days: 7,
            retry_attempts: 5,
            retry_initial_ms: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// The login name a JMAP client uses.
    pub name: String,
    pub password: SecretSource,
    #[serde(default)]
    pub accounts: Vec<AccountConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum AccountConfig {
    Imap(ImapAccountConfig),
    Eas(EasAccountConfig),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS before login.
    Starttls,
    /// No encryption at all; only for servers on a trusted network or loopback.
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapAccountConfig {
    /// Name shown to JMAP clients; defaults to the username.
    pub name: Option<String>,
    pub host: String,
    /// Defaults to 993 with `tls = "tls"`, else 143.
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// PEM CA certificate to trust in addition to the system roots (self-signed servers).
    pub ca_file: Option<PathBuf>,
    pub username: String,
    /// The password, or with an OAuth `auth` the access token (read again at each login,
    /// so a `{ file = … }` kept fresh by a token refresher works across expiries).
    pub password: SecretSource,
    /// How to log in: `password` (PLAIN or LOGIN), `xoauth2` or `oauthbearer` (RFC 7628).
    #[serde(default)]
    pub auth: ImapAuth,
    /// The account's mail address (its Identity); defaults to the username if it has an `@`.
    pub address: Option<String>,
    /// Where EmailSubmission sends mail for this account.
    pub smtp: Option<SmtpConfig>,
    /// The account's ManageSieve server, through which VacationResponse is offered.
    pub sieve: Option<SieveConfig>,
}

impl AccountConfig {
    /// Which upstream account this is (server and login), whatever its display name.
    pub fn upstream_identity(&self) -> String {
        match self {
            AccountConfig::Imap(a) => format!(
                "imap:{}:{}:{}",
                a.host,
                a.port.unwrap_or(a.tls.default_imap_port()),
                a.username
            ),
            AccountConfig::Eas(a) => format!("eas:{}:{}", a.url, a.username),
        }
    }
}

/// How an IMAP account logs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImapAuth {
    #[default]
    Password,
    Xoauth2,
    Oauthbearer,
}

/// How an ActiveSync account authenticates its requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EasAuthConfig {
    /// HTTP Basic with username and password.
    #[default]
    Basic,
    /// `Authorization: Bearer` with the OAuth access token given as `password`.
    Bearer,
}

/// A ManageSieve server (RFC 5804) of an IMAP account: the gateway keeps its vacation
/// script there (`jmap-vacation`) and never changes the user's other scripts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SieveConfig {
    /// Defaults to the IMAP account's host.
    pub host: Option<String>,
    /// Defaults to 4190.
    pub port: Option<u16>,
    /// ManageSieve upgrades with STARTTLS on its one port, so that is the default.
    #[serde(default = "default_sieve_tls")]
    pub tls: TlsMode,
    /// Defaults to the account's username.
    pub username: Option<String>,
    /// Defaults to the account's password.
    pub password: Option<SecretSource>,
}

fn default_sieve_tls() -> TlsMode {
    TlsMode::Starttls
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults to 465 with `tls = "tls"`, 587 with `starttls`, else 25.
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// Defaults to the account's username.
    pub username: Option<String>,
    /// Defaults to the account's password.
    pub password: Option<SecretSource>,
    /// Log in (AUTH) before sending; false for a relay that accepts mail from this host.
    #[serde(default = "default_true")]
    pub auth: bool,
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EasAccountConfig {
    pub name: Option<String>,
    /// The ActiveSync endpoint, e.g. `https://mail.example.com/Microsoft-Server-ActiveSync`.
    pub url: String,
    pub username: String,
    /// The password, or with `auth = "bearer"` the access token (read again for every
    /// request, so a `{ file = … }` kept fresh by a token refresher works across expiries).
    pub password: SecretSource,
    /// `basic` (the default) or `bearer`.
    #[serde(default)]
    pub auth: EasAuthConfig,
    /// The account's mail address (its Identity); defaults to the username if it has an `@`.
    pub address: Option<String>,
    /// Device id presented to the server; derived from user and account if absent.
    pub device_id: Option<String>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PassthroughConfig {
    Imap(PassthroughImap),
    Eas(PassthroughEas),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughImap {
    pub name: String,
    pub host: String,
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    pub ca_file: Option<PathBuf>,
    pub smtp: Option<SmtpConfig>,
    /// A ManageSieve server for VacationResponse; every user logs in to it with the
    /// credentials of their IMAP login (its `username`/`password` keys are not used here).
    pub sieve: Option<SieveConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassthroughEas {
    pub name: String,
    pub url: String,
    pub ca_file: Option<PathBuf>,
}

fn default_tls() -> TlsMode {
    TlsMode::Tls
}

impl TlsMode {
    pub fn default_imap_port(self) -> u16 {
        match self {
            TlsMode::Tls => 993,
            TlsMode::Starttls | TlsMode::None => 143,
        }
    }

    pub fn default_smtp_port(self) -> u16 {
        match self {
            TlsMode::Tls => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        }
    }
}

/// Where a secret comes from. In TOML: `"inline"`, `{ env = "VAR" }` or `{ file = "PATH" }`.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    Inline(Secret<String>),
    Env(String),
    File(PathBuf),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Inline(s) => write!(f, "Inline({s:?})"),
            SecretSource::Env(var) => write!(f, "Env({var:?})"),
            SecretSource::File(path) => write!(f, "File({path:?})"),
        }
    }
}

impl SecretSource {
    /// Reads the secret now. A file's trailing newline is not part of the secret.
    pub fn resolve(&self) -> Result<Secret<String>, String> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(Secret::new(v)),
                Ok(_) => Err(format!("environment variable {var} is empty")),
                Err(_) => Err(format!("environment variable {var} is not set")),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(v) => {
                    let v = v.trim_end_matches(['\r', '\n']);
                    if v.is_empty() {
                        Err(format!("file {} is empty", path.display()))
                    } else {
                        Ok(Secret::new(v.to_owned()))
                    }
                }
                Err(e) => Err(format!("cannot read file {}: {e}", path.display())),
            },
        }
    }
}

impl<'de> Deserialize<'de> for SecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a string, { env = "VAR" } or { file = "PATH" }"#)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretSource, E> {
                Ok(SecretSource::Inline(Secret::new(v.to_owned())))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretSource, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(
                        r#"empty table: expected { env = "VAR" } or { file = "PATH" }"#,
                    ));
                };
                let source = match key.as_str() {
                    "env" => SecretSource::Env(map.next_value()?),
                    "file" => SecretSource::File(map.next_value()?),
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown field `{other}`, expected `env` or `file`"
                        )));
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "unexpected field `{extra}`: give exactly one of `env` or `file`"
                    )));
                }
                Ok(source)
            }
        }
        d.deserialize_any(V)
    }
}

/// A configuration problem, naming the key and what was expected there.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        key: String,
        message: String,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![ConfigError::Read {
                path: path.to_owned(),
                source,
            }]
        })?;
        let config = Config::parse(&text).map_err(|message| {
            vec![ConfigError::Syntax {
                path: path.to_owned(),
                message,
            }]
        })?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems
                .into_iter()
                .map(|(key, message)| ConfigError::Invalid {
                    path: path.to_owned(),
                    key,
                    message,
                })
                .collect())
        }
    }

    /// Parses TOML text. The error names the offending key path and the position.
    pub fn parse(text: &str) -> Result<Config, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner().to_string();
            if key == "." || key.is_empty() {
                inner
            } else {
                format!("key `{key}`: {}", inner.trim_end())
            }
        })
    }

    /// Everything wrong with a parsed configuration, as (key, what is expected) pairs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut secret = |key: String, s: &SecretSource| {
            if let Err(e) = s.resolve() {
                out.push((key, e));
            }
        };
        if let Some(ts) = &self.auth.token_secret {
            secret("auth.token_secret".into(), ts);
        }
        for (i, u) in self.users.iter().enumerate() {
            secret(format!("users[{i}].password"), &u.password);
            for (j, a) in u.accounts.iter().enumerate() {
                let key = format!("users[{i}].accounts[{j}]");
                match a {
                    AccountConfig::Imap(a) => {
                        secret(format!("{key}.password"), &a.password);
                        if let Some(smtp) = &a.smtp
                            && let Some(p) = &smtp.password
                        {
                            secret(format!("{key}.smtp.password"), p);
                        }
                        if let Some(sieve) = &a.sieve
                            && let Some(p) = &sieve.password
                        {
                            secret(format!("{key}.sieve.password"), p);
                        }
                    }
                    AccountConfig::Eas(a) => secret(format!("{key}.password"), &a.password),
                }
            }
        }

        // The same upstream login twice under one user would be one JMAP account.
        for (i, u) in self.users.iter().enumerate() {
            let mut seen: Vec<String> = Vec::new();
            for (j, a) in u.accounts.iter().enumerate() {
                let identity = a.upstream_identity();
                if let Some(k) = seen.iter().position(|s| *s == identity) {
                    out.push((
                        format!("users[{i}].accounts[{j}]"),
                        format!("the same upstream account as users[{i}].accounts[{k}]"),
                    ));
                }
                seen.push(identity);
            }
        }

        let mut check = |key: String, ok: bool, message: &str| {
            if !ok {
                out.push((key, message.to_owned()));
            }
        };
        if let Some(url) = &self.server.public_url {
            check(
                "server.public_url".into(),
                is_http_url(url),
                "expected an absolute http:// or https:// URL",
            );
        }
        check(
            "server.tls_key".into(),
            self.server.tls_cert.is_none() || self.server.tls_key.is_some(),
            "expected the private key file of server.tls_cert",
        );
        check(
            "server.tls_cert".into(),
            self.server.tls_key.is_none() || self.server.tls_cert.is_some(),
            "expected the certificate chain file of server.tls_key",
        );
        check(
            "server.listen".into(),
            self.server.tls()
                || self.server.allow_plain_http
                || self.server.listen.ip().is_loopback(),
            "plain HTTP is only served on a loopback address: set server.tls_cert and \
             server.tls_key for HTTPS, or server.allow_plain_http = true when a TLS-terminating \
             proxy is in front",
        );
        for (i, p) in self.server.trusted_proxies.iter().enumerate() {
            if let Err(e) = crate::proxy::TrustedProxies::parse(std::slice::from_ref(p)) {
                check(format!("server.trusted_proxies[{i}]"), false, &e);
            }
        }
        check(
            "server.shutdown_timeout_secs".into(),
            self.server.shutdown_timeout_secs <= 3600,
            "expected at most 3600 seconds",
        );
        check(
            "store.path".into(),
            !self.store.path.as_os_str().is_empty(),
            "expected a folder path",
        );
        check(
            "store.group_commit_window_ms".into(),
            self.store.group_commit_window_ms <= 1000,
            "expected at most 1000 (milliseconds)",
        );
        check(
            "store.changelog_max_entries".into(),
            self.store.changelog_max_entries >= 1,
            "expected at least 1",
        );
        check(
            "auth.token_lifetime_secs".into(),
            (60..=31 * 24 * 3600).contains(&self.auth.token_lifetime_secs),
            "expected between 60 and 2678400 seconds",
        );
        for (i, origin) in self.auth.cors_origins.iter().enumerate() {
            check(
                format!("auth.cors_origins[{i}]"),
                is_http_url(origin) && !origin.ends_with('/'),
                "expected an origin such as https://mail.example.com (no path, no trailing /)",
            );
        }
        check(
            "push.max_expiry_days".into(),
            (2..=365).contains(&self.push.max_expiry_days),
            "expected between 2 and 365 days (RFC 8620 asks for at least 48 hours)",
        );
        check(
            "push.retry_attempts".into(),
            (1..=20).contains(&self.push.retry_attempts),
            "expected between 1 and 20",
        );
        for (i, host) in self.push.allowed_hosts.iter().enumerate() {
            check(
                format!("push.allowed_hosts[{i}]"),
                is_host(host) && !host.contains(':') || host.parse::<std::net::IpAddr>().is_ok(),
                "expected a host name or IP address (no port, no scheme)",
            );
        }
        let mut user_names = HashSet::new();
        for (i, u) in self.users.iter().enumerate() {
            check(
                format!("users[{i}].name"),
                !u.name.is_empty() && !u.name.contains(':'),
                "expected a non-empty login name without ':'",
            );
            check(
                format!("users[{i}].name"),
                user_names.insert(u.name.as_str()),
                "expected a user name not used by an earlier user",
            );
            for (j, a) in u.accounts.iter().enumerate() {
                let key = format!("users[{i}].accounts[{j}]");
                match a {
                    AccountConfig::Imap(a) => {
                        check(
                            format!("{key}.host"),
                            is_host(&a.host),
                            "expected a host name or IP address",
                        );
                        check(
                            format!("{key}.port"),
                            a.port != Some(0),
                            "expected a port between 1 and 65535",
                        );
                        check(
                            format!("{key}.username"),
                            !a.username.is_empty(),
                            "expected the upstream login name",
                        );
                        if let Some(smtp) = &a.smtp {
                            check(
                                format!("{key}.smtp.host"),
                                is_host(&smtp.host),
                                "expected a host name or IP address",
                            );
                        }
                        if let Some(sieve) = &a.sieve {
                            check(
                                format!("{key}.sieve.host"),
                                sieve.host.as_deref().is_none_or(is_host),
                                "expected a host name or IP address",
                            );
                            check(
                                format!("{key}.sieve.port"),
                                sieve.port != Some(0),
                                "expected a port between 1 and 65535",
                            );
                            check(
                                format!("{key}.sieve.username"),
                                sieve.username.as_deref() != Some(""),
                                "expected the ManageSieve login name",
                            );
                        }
                    }
                    AccountConfig::Eas(a) => {
                        check(
                            format!("{key}.url"),
                            is_http_url(&a.url),
                            "expected the ActiveSync endpoint as an http:// or https:// URL",
                        );
                        check(
                            format!("{key}.username"),
                            !a.username.is_empty(),
                            "expected the upstream login name",
                        );
                        if let Some(id) = &a.device_id {
                            check(
                                format!("{key}.device_id"),
                                !id.is_empty()
                                    && id.len() <= 32
                                    && id.bytes().all(|b| b.is_ascii_alphanumeric()),
                                "expected 1 to 32 letters and digits",
                            );
                        }
                    }
                }
            }
        }
        let mut names = HashSet::new();
        for (i, p) in self.passthrough.iter().enumerate() {
            let key = format!("passthrough[{i}]");
            let name = match p {
                PassthroughConfig::Imap(p) => {
                    check(
                        format!("{key}.host"),
                        is_host(&p.host),
                        "expected a host name or IP address",
                    );
                    if let Some(sieve) = &p.sieve {
                        check(
                            format!("{key}.sieve.host"),
                            sieve.host.as_deref().is_none_or(is_host),
                            "expected a host name or IP address",
                        );
                        check(
                            format!("{key}.sieve"),
                            sieve.username.is_none() && sieve.password.is_none(),
                            "every user logs in to a passthrough ManageSieve server with their \
                             own credentials: remove username and password",
                        );
                    }
                    &p.name
                }
                PassthroughConfig::Eas(p) => {
                    check(
                        format!("{key}.url"),
                        is_http_url(&p.url),
                        "expected the ActiveSync endpoint as an http:// or https:// URL",
                    );
                    &p.name
                }
            };
            check(
                format!("{key}.name"),
                !name.is_empty() && names.insert(name.as_str()),
                "expected a non-empty name, unique among passthrough servers",
            );
        }
        out
    }
}

fn is_http_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    matches!(rest, Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace))
}

fn is_host(s: &str) -> bool {
    !s.is_empty() && !s.contains(char::is_whitespace) && !s.contains('/') && !s.contains("://")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<(String, String)> {
        Config::parse(text).unwrap().problems()
    }

    #[test]
    fn empty_file_is_all_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store.path, PathBuf::from("./data"));
        assert_eq!(c.store.durability, Durability::Group);
        assert!(c.problems().is_empty());
    }

    #[test]
    fn typo_in_a_key_names_the_key_and_the_expected_ones() {
        let e = Config::parse("[server]\nlisen = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("lisen"), "{e}");
        assert!(e.contains("listen"), "{e}");
    }

    #[test]
    fn typo_inside_an_account_names_its_path() {
        let e = Config::parse(
            r#"
            [[users]]
            name = "alice"
            password = "x"
            [[users.accounts]]
            kind = "imap"
            hots = "imap.example.com"
            username = "alice"
            password = "y"
            "#,
        )
        .unwrap_err();
        assert!(e.contains("users[0].accounts[0]"), "{e}");
        assert!(e.contains("hots"), "{e}");
    }

    #[test]
    fn missing_password_names_the_key() {
        let e = Config::parse(
            r#"
            [[users]]
            name = "alice"
            password = "x"
            [[users.accounts]]
            kind = "eas"
            url = "https://eas.example.com/Microsoft-Server-ActiveSync"
            username = "alice"
            "#,
        )
        .unwrap_err();
        assert!(e.contains("users[0].accounts[0]"), "{e}");
        assert!(e.contains("missing field `password`"), "{e}");
    }

    #[test]
    fn unknown_account_kind_is_rejected() {
        let e = Config::parse(
            "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users.accounts]]\nkind = \"pop3\"\n",
        )
        .unwrap_err();
        assert!(e.contains("pop3"), "{e}");
        assert!(e.contains("users[0].accounts[0]"), "{e}");
    }

    #[test]
    fn bad_tls_mode_says_what_is_expected() {
        let e = Config::parse(
            r#"
            [[users]]
            name = "a"
            password = "x"
            [[users.accounts]]
            kind = "imap"
            host = "h"
            tls = "ssl"
            username = "u"
            password = "p"
            "#,
        )
        .unwrap_err();
        assert!(e.contains("ssl") && e.contains("starttls"), "{e}");
    }

    #[test]
    fn secrets_from_env_and_file_are_resolved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let text = format!(
            r#"
            [[users]]
            name = "alice"
            password = {{ file = "{}" }}
            [[users.accounts]]
            kind = "imap"
            host = "imap.example.com"
            username = "alice"
            password = {{ env = "JMAP_GATEWAY_TEST_SURELY_UNSET_VAR" }}
            "#,
            file.display()
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.users[0].password.resolve().unwrap().expose(), "from-file");
        let p = c.problems();
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].0, "users[0].accounts[0].password");
        assert!(p[0].1.contains("JMAP_GATEWAY_TEST_SURELY_UNSET_VAR"));
    }

    #[test]
    fn secret_table_with_two_sources_is_rejected() {
        let e =
            Config::parse("[[users]]\nname = \"a\"\npassword = { env = \"A\", file = \"/x\" }\n")
                .unwrap_err();
        assert!(e.contains("users[0].password"), "{e}");
    }

    #[test]
    fn semantic_problems_name_their_keys() {
        let p = problems(
            r#"
            [server]
            public_url = "mail.example.com"
            [[users]]
            name = "a"
            password = "x"
            [[users.accounts]]
            kind = "eas"
            url = "eas.example.com"
            username = ""
            password = "p"
            device_id = "not valid!"
            [[users]]
            name = "a"
            password = "y"
            "#,
        );
        let keys: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "server.public_url",
                "users[0].accounts[0].url",
                "users[0].accounts[0].username",
                "users[0].accounts[0].device_id",
                "users[1].name",
            ]
        );
    }

    #[test]
    fn an_imap_account_may_have_a_sieve_server() {
        let text = r#"
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
            username = "u2"
            password = "p"
            [users.accounts.sieve]
            host = "sieve example"
            port = 0
            tls = "none"
            username = ""
            password = { env = "JMAP_GATEWAY_TEST_SURELY_UNSET_VAR" }
            "#;
        let c = Config::parse(text).unwrap();
        let AccountConfig::Imap(a) = &c.users[0].accounts[0] else {
            panic!("expected IMAP")
        };
        let sieve = a.sieve.as_ref().unwrap();
        assert_eq!((sieve.host.as_deref(), sieve.port), (None, None));
        assert_eq!(sieve.tls, TlsMode::Starttls);
        let keys: Vec<String> = c.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "users[0].accounts[1].sieve.password",
                "users[0].accounts[1].sieve.host",
                "users[0].accounts[1].sieve.port",
                "users[0].accounts[1].sieve.username",
            ]
        );
        let e = Config::parse(&text.replace("tls = \"none\"", "tsl = \"none\"")).unwrap_err();
        assert!(
            e.contains("users[0].accounts[1]") && e.contains("tsl"),
            "{e}"
        );
    }

    #[test]
    fn accounts_choose_password_or_oauth_logins() {
        let account = |kind: &str, auth: &str| {
            let target = if kind == "eas" {
                "url = \"https://mail.example.com/Microsoft-Server-ActiveSync\""
            } else {
                "host = \"imap.example.com\""
            };
            format!(
                "[[users]]\nname = \"a\"\npassword = \"x\"\n[[users.accounts]]\n\
                 kind = \"{kind}\"\n{target}\nusername = \"u\"\npassword = \"t\"\n{auth}"
            )
        };
        let imap = |auth: &str| match Config::parse(&account("imap", auth)) {
            Ok(c) => match &c.users[0].accounts[0] {
                AccountConfig::Imap(a) => Ok(a.auth),
                _ => panic!("expected IMAP"),
            },
            Err(e) => Err(e),
        };
        assert_eq!(imap(""), Ok(ImapAuth::Password));
        assert_eq!(imap("auth = \"xoauth2\""), Ok(ImapAuth::Xoauth2));
        assert_eq!(imap("auth = \"oauthbearer\""), Ok(ImapAuth::Oauthbearer));
        let e = imap("auth = \"kerberos\"").unwrap_err();
        assert!(e.contains("kerberos") && e.contains("xoauth2"), "{e}");

        let eas = |auth: &str| match Config::parse(&account("eas", auth)) {
            Ok(c) => match &c.users[0].accounts[0] {
                AccountConfig::Eas(a) => Ok(a.auth),
                _ => panic!("expected EAS"),
            },
            Err(e) => Err(e),
        };
        assert_eq!(eas(""), Ok(EasAuthConfig::Basic));
        assert_eq!(eas("auth = \"bearer\""), Ok(EasAuthConfig::Bearer));
        assert!(eas("auth = \"xoauth2\"").is_err());
    }

    #[test]
    fn a_passthrough_sieve_table_takes_no_credentials() {
        let text = |extra: &str| {
            format!(
                "[[passthrough]]\nkind = \"imap\"\nname = \"P\"\nhost = \"imap.example.com\"\n\
                 [passthrough.sieve]\nport = 4190\n{extra}"
            )
        };
        let c = Config::parse(&text("")).unwrap();
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        let PassthroughConfig::Imap(p) = &c.passthrough[0] else {
            panic!("expected IMAP")
        };
        assert_eq!(p.sieve.as_ref().unwrap().port, Some(4190));
        let c = Config::parse(&text("username = \"admin\"\n")).unwrap();
        let keys: Vec<String> = c.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["passthrough[0].sieve"]);
    }

    #[test]
    fn the_same_upstream_login_twice_is_a_problem() {
        let imap = |name: &str, port: &str| {
            format!(
                "[[users.accounts]]\nkind = \"imap\"\nname = \"{name}\"\n\
                 host = \"imap.example.com\"\n{port}username = \"u\"\npassword = \"p\"\n"
            )
        };
        let text = format!(
            "[[users]]\nname = \"a\"\npassword = \"x\"\n{}{}{}",
            imap("one", ""),
            imap("two", "port = 993\n"),
            imap("three", "port = 143\n")
        );
        let c = Config::parse(&text).unwrap();
        assert_eq!(
            c.problems(),
            vec![(
                "users[0].accounts[1]".to_owned(),
                "the same upstream account as users[0].accounts[0]".to_owned()
            )]
        );
    }

    #[test]
    fn debug_output_never_shows_an_inline_password() {
        let c = Config::parse("[[users]]\nname = \"a\"\npassword = \"hunter2\"\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn the_shipped_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("jmap-gateway.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = Config::parse(&text).unwrap();
        assert_eq!(c.problems(), Vec::<(String, String)>::new());
        assert!(!c.users.is_empty());
        assert!(!c.passthrough.is_empty());
    }
}

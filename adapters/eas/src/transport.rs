//! MS-ASHTTP: the HTTP requests an EAS client makes, with preemptive Basic auth.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use upstream::Secret;
use wbxml::Element;

use crate::command::{Provision, ProvisionResponse, ProvisionedPolicy};

const WBXML: &str = "application/vnd.ms-sync.wbxml";

/// The commands that submit a message: never sent twice on a doubt.
const SUBMISSIONS: [&str; 3] = ["SendMail", "SmartReply", "SmartForward"];
const USER_AGENT: &str = concat!("jmap-gateway/", env!("CARGO_PKG_VERSION"));
/// Time allowed for any command but Ping, whose limit follows its heartbeat.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What one POST produced, before command-level interpretation.
#[derive(Debug)]
enum Answer {
    Body(Element),
    Empty,
    NeedsProvision,
    Redirect(String),
}

/// A global status (MS-ASCMD 2.2.2, codes 101 and up) in the response's top-level Status.
fn global_status(root: &Element) -> Option<u32> {
    root.elements()
        .find(|e| e.tag.page() == root.tag.page() && e.tag.name() == Some("Status"))
        .and_then(|e| e.text_value())
        .and_then(|t| t.trim().parse().ok())
        .filter(|code| *code >= 101)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One EAS account's endpoint and credentials.
#[derive(Debug, Clone)]
pub struct EasEndpoint {
    /// The full endpoint URL, e.g. `https://mail.example.com/Microsoft-Server-ActiveSync`.
    pub url: String,
    pub username: String,
    pub password: Secret<String>,
    /// Stable per account: the server keys sync state and policies on it.
    pub device_id: String,
    pub device_type: String,
    /// PEM certificates trusted in addition to the built-in roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl EasEndpoint {
    /// A DeviceId for an account without one configured: 32 letters and digits derived from
    /// the endpoint and the login, so it is the same after every restart.
    pub fn derived_device_id(url: &str, username: &str) -> String {
        let digest = ring::digest::digest(
            &ring::digest::SHA256,
            format!("jmap-gateway\0{url}\0{username}").as_bytes(),
        );
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        format!("Jmap{}", &hex[..28])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EasError {
    #[error("the EAS server refused the credentials for {username} (HTTP {status})")]
    Unauthorized { username: String, status: u16 },
    #[error("the EAS server answered HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("cannot reach the EAS server at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// HTTP 503 or 429: the server asks to come back later.
    #[error("the EAS server is busy (HTTP {status}); retry after {retry_after:?}")]
    Busy {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// A global status code (MS-ASCMD 2.2.2) the client cannot fix by itself.
    #[error("{command}: the EAS server answered status {code} ({meaning})")]
    Global {
        command: String,
        code: u32,
        meaning: &'static str,
    },
    /// A body that is not the WBXML the command calls for.
    #[error("{command}: {message}")]
    Protocol { command: String, message: String },
}

impl From<EasError> for upstream::UpstreamError {
    /// The one place where transport failures become the contract's error kinds.
    fn from(e: EasError) -> Self {
        use upstream::UpstreamError as U;
        let text = e.to_string();
        match e {
            EasError::Unauthorized { .. } => U::AuthFailed(text),
            EasError::Transport { .. } | EasError::Busy { .. } => U::Unavailable(text),
            EasError::Http { status, .. } if status >= 500 => U::Unavailable(text),
            EasError::Http { .. } => U::Refused(text),
            EasError::Tls(_) | EasError::Protocol { .. } => U::Protocol(text),
            EasError::Global { code, .. } => match code {
                110 | 111 | 114 | 133 => U::Unavailable(text),
                112 | 123..=131 => U::AuthFailed(text),
                108 | 109 | 101..=107 | 136 | 138 => U::Protocol(text),
                137 => U::Unsupported(text),
                150 => U::NotFound(text),
                _ => U::Refused(text),
            },
        }
    }
}

/// What a global status code means, for error messages (MS-ASCMD 2.2.2).
pub fn global_status_meaning(code: u32) -> &'static str {
    match code {
        101 => "invalid content",
        102 => "invalid WBXML",
        103 => "invalid XML",
        108 => "DeviceId missing or invalid",
        109 => "DeviceType missing or invalid",
        110 => "server error",
        111 => "server error, retry later",
        112 => "directory access denied",
        113 => "mailbox quota exceeded",
        114 => "mailbox server offline",
        115 => "send quota exceeded",
        116 => "recipient unresolved",
        117 => "reply not allowed",
        118 => "message previously sent",
        119 => "message has no recipient",
        120 => "mail submission failed",
        122 => "attachment too large",
        123 => "user has no mailbox",
        126 => "user disabled for sync",
        129 => "device blocked for this user",
        130 => "access denied",
        131 => "account disabled",
        132 => "sync state not found",
        133 => "sync state locked",
        134 => "sync state corrupt",
        137 => "command not supported",
        138 => "protocol version not supported",
        139 => "device not fully provisionable",
        140 => "remote wipe requested (the gateway never wipes)",
        141 => "legacy device on strict policy",
        142 => "device not provisioned",
        143 => "policy refresh",
        144 => "invalid policy key",
        145 => "externally managed devices not allowed",
        150 => "item not found",
        165 => "device information required",
        177 => "too many device partnerships",
        _ => "unexpected status",
    }
}

/// What an `OPTIONS` request tells about the server (MS-ASHTTP 2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `MS-ASProtocolVersions`, in the server's order.
    pub versions: Vec<String>,
    /// `MS-ASProtocolCommands`.
    pub commands: Vec<String>,
}

impl ServerOptions {
    /// The version this client speaks with the server: 16.1 if offered, else 14.1.
    pub fn preferred_version(&self) -> Option<&'static str> {
        ["16.1", "14.1"]
            .into_iter()
            .find(|v| self.versions.iter().any(|s| s == v))
    }
}

/// What the client learnt while talking to the server: kept for the account's lifetime.
#[derive(Debug, Clone)]
struct Session {
    /// The endpoint, replaced when the server redirects (HTTP 451, X-MS-Location).
    url: String,
    /// The `MS-ASProtocolVersion` sent with every command.
    version: &'static str,
    /// The `X-MS-PolicyKey` from the last Provision, if the server set one.
    policy_key: Option<String>,
}

/// An MS-ASHTTP client for one account: commands go out as WBXML POSTs with preemptive
/// Basic (or Bearer) auth; provisioning, redirects and protocol-level retries happen here, once.
#[derive(Debug, Clone)]
pub struct EasClient {
    endpoint: EasEndpoint,
    http: reqwest::Client,
    /// The same, without a connection pool: submissions go out on a fresh connection, so
    /// a failure is never the stale-idle-connection race that justifies sending again.
    fresh: reqwest::Client,
    session: Arc<Mutex<Session>>,
    auth: crate::EasAuth,
    secret_provider: Option<upstream::SecretProvider>,
}

/// How many times one command is re-sent after Provision or a redirect.
const MAX_RETRIES: usize = 3;

impl EasClient {
    /// Authenticates with `auth`, reading the secret from `provider` (when given) for
    /// every request.
    pub fn with_auth(
        mut self,
        auth: crate::EasAuth,
        provider: Option<upstream::SecretProvider>,
    ) -> Self {
        self.auth = auth;
        self.secret_provider = provider;
        self
    }

    /// Adds the Authorization header. A provider that cannot give a secret (a missing token
    /// file) is reported as refused credentials, which is what the server would say.
    fn authorize(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, EasError> {
        let fresh;
        let secret = match &self.secret_provider {
            None => &self.endpoint.password,
            Some(p) => {
                fresh = p.get().map_err(|e| {
                    tracing::warn!(user = %self.endpoint.username, error = %e, "no EAS secret");
                    EasError::Unauthorized {
                        username: self.endpoint.username.clone(),
                        status: 401,
                    }
                })?;
                &fresh
            }
        };
        Ok(match self.auth {
            crate::EasAuth::Basic => {
                request.basic_auth(&self.endpoint.username, Some(secret.expose()))
            }
            crate::EasAuth::Bearer => request.bearer_auth(secret.expose()),
        })
    }

    pub fn new(endpoint: EasEndpoint) -> Result<Self, EasError> {
        let tls = upstream::tls::client_config(endpoint.extra_ca_pem.as_deref())
            .map_err(EasError::Tls)?;
        let build = |pooled: bool| {
            let mut builder = reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(Duration::from_secs(20))
                .user_agent(USER_AGENT);
            if !pooled {
                builder = builder.pool_max_idle_per_host(0);
            }
            builder.build().map_err(|e| EasError::Tls(e.to_string()))
        };
        let http = build(true)?;
        let fresh = build(false)?;
        let session = Session {
            url: endpoint.url.clone(),
            version: "14.1",
            policy_key: None,
        };
        Ok(EasClient {
            endpoint,
            http,
            fresh,
            session: Arc::new(Mutex::new(session)),
            auth: crate::EasAuth::Basic,
            secret_provider: None,
        })
    }

    fn session(&self) -> Session {
        match self.session.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut Session)) {
        match self.session.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// The protocol version in use (`"14.1"` until [`negotiate`](Self::negotiate) says more).
    pub fn protocol_version(&self) -> &'static str {
        self.session().version
    }

    /// The endpoint URL in use (it changes when the server redirects).
    pub fn url(&self) -> String {
        self.session().url
    }

    /// Asks the server which versions it speaks and picks 16.1, else 14.1.
    pub async fn negotiate(&self) -> Result<&'static str, EasError> {
        let options = self.options().await?;
        let version = options
            .preferred_version()
            .ok_or_else(|| EasError::Protocol {
                command: "OPTIONS".into(),
                message: format!(
                    "the server offers protocol versions {:?}; this client needs 14.1 or 16.1",
                    options.versions
                ),
            })?;
        self.update(|s| s.version = version);
        Ok(version)
    }

    /// Sends one command and returns its decoded response body (`None` for an empty body).
    ///
    /// Handles, on purpose: HTTP 449 and global statuses 142–144/165 (Provision, then the
    /// command again), HTTP 451 (follow X-MS-Location), 401/403 (credentials), 503/429 with
    /// Retry-After (busy); other global statuses become [`EasError::Global`].
    pub async fn command(
        &self,
        cmd: &str,
        body: Option<&Element>,
        timeout: Duration,
    ) -> Result<Option<Element>, EasError> {
        let bytes = match body {
            Some(element) => Some(wbxml::encode(element).map_err(|e| EasError::Protocol {
                command: cmd.into(),
                message: format!("cannot encode the request: {e}"),
            })?),
            None => None,
        };
        let mut provisioned = false;
        for _ in 0..=MAX_RETRIES {
            match self.post(cmd, bytes.as_deref(), timeout).await? {
                Answer::Body(root) => {
                    if let Some(code) = global_status(&root) {
                        if matches!(code, 141..=144 | 165) && !provisioned && cmd != "Provision" {
                            tracing::info!(cmd, code, "EAS server asks for Provision");
                            self.provision().await?;
                            provisioned = true;
                            continue;
                        }
                        return Err(EasError::Global {
                            command: cmd.into(),
                            code,
                            meaning: global_status_meaning(code),
                        });
                    }
                    return Ok(Some(root));
                }
                Answer::Empty => return Ok(None),
                Answer::NeedsProvision if !provisioned && cmd != "Provision" => {
                    self.provision().await?;
                    provisioned = true;
                }
                Answer::NeedsProvision => {
                    return Err(EasError::Global {
                        command: cmd.into(),
                        code: 142,
                        meaning: "device not provisioned (HTTP 449 after Provision)",
                    });
                }
                Answer::Redirect(location) => {
                    tracing::info!(cmd, %location, "EAS server redirects the account");
                    self.update(|s| s.url = location);
                }
            }
        }
        Err(EasError::Protocol {
            command: cmd.into(),
            message: format!("gave up after {MAX_RETRIES} redirects or provisionings"),
        })
    }

    /// The two-phase Provision of MS-ASPROV 3.1.5.1: download the policy, acknowledge it, and
    /// keep the final policy key for later requests.
    pub async fn provision(&self) -> Result<(), EasError> {
        self.update(|s| s.policy_key = None);
        let request = Provision::Request {
            model: "jmap-gateway".into(),
            friendly_name: "JMAP gateway".into(),
            user_agent: USER_AGENT.into(),
        };
        let first = self.provision_step(&request).await?;
        if first.remote_wipe {
            return Err(EasError::Global {
                command: "Provision".into(),
                code: 140,
                meaning: global_status_meaning(140),
            });
        }
        let temporary = match first.policy {
            // 2: the server has no policy for this client; nothing to acknowledge.
            Some(p) if p.status == 2 => return Ok(()),
            Some(p) if p.status == 1 => p.policy_key,
            Some(p) => {
                return Err(EasError::Protocol {
                    command: "Provision".into(),
                    message: format!("policy status {}", p.status),
                });
            }
            None => None,
        };
        let Some(temporary) = temporary else {
            return Ok(());
        };
        self.update(|s| s.policy_key = Some(temporary.clone()));
        let second = self
            .provision_step(&Provision::Acknowledge {
                policy_key: temporary,
                status: 1,
            })
            .await?;
        match second.policy {
            Some(ProvisionedPolicy {
                status: 1,
                policy_key: Some(key),
            }) => {
                self.update(|s| s.policy_key = Some(key));
                Ok(())
            }
            other => Err(EasError::Protocol {
                command: "Provision".into(),
                message: format!("acknowledgment answered {other:?}"),
            }),
        }
    }

    /// One Provision round trip. It goes straight to [`post`](Self::post): Provision must
    /// never trigger Provision.
    async fn provision_step(&self, request: &Provision) -> Result<ProvisionResponse, EasError> {
        let error = |message: String| EasError::Protocol {
            command: "Provision".into(),
            message,
        };
        let bytes = wbxml::encode(&request.to_element())
            .map_err(|e| error(format!("cannot encode the request: {e}")))?;
        for _ in 0..=MAX_RETRIES {
            let root = match self
                .post("Provision", Some(&bytes), COMMAND_TIMEOUT)
                .await?
            {
                Answer::Body(root) => root,
                Answer::Redirect(location) => {
                    self.update(|s| s.url = location);
                    continue;
                }
                Answer::Empty => return Err(error("empty response".into())),
                Answer::NeedsProvision => return Err(error("HTTP 449 to Provision".into())),
            };
            let response =
                ProvisionResponse::from_element(&root).map_err(|e| error(e.to_string()))?;
            if response.status != 1 {
                let code = response.status;
                return Err(if code >= 101 {
                    EasError::Global {
                        command: "Provision".into(),
                        code,
                        meaning: global_status_meaning(code),
                    }
                } else {
                    error(format!("status {code}"))
                });
            }
            return Ok(response);
        }
        Err(error(format!("gave up after {MAX_RETRIES} redirects")))
    }

    fn command_url(&self, base: &str, cmd: &str) -> String {
        let sep = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{sep}Cmd={}&User={}&DeviceId={}&DeviceType={}",
            query_escape(cmd),
            query_escape(&self.endpoint.username),
            query_escape(&self.endpoint.device_id),
            query_escape(&self.endpoint.device_type)
        )
    }

    async fn post(
        &self,
        cmd: &str,
        body: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Answer, EasError> {
        let session = self.session();
        let url = self.command_url(&session.url, cmd);
        let submission = SUBMISSIONS.contains(&cmd);
        let client = if submission { &self.fresh } else { &self.http };
        let mut request = self
            .authorize(client.post(&url))?
            .header("MS-ASProtocolVersion", session.version)
            .timeout(timeout);
        if let Some(key) = &session.policy_key {
            request = request.header("X-MS-PolicyKey", key.as_str());
        }
        if let Some(bytes) = body {
            request = request.header("Content-Type", WBXML).body(bytes.to_vec());
        }
        let transport = |e: reqwest::Error| {
            // reqwest's Display omits the cause ("connection reset", "closed before message").
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            EasError::Transport {
                url: session.url.clone(),
                message,
            }
        };
        let retry = request.try_clone();
        let response = match request.send().await {
            Ok(response) => response,
            // A pooled connection the server closed while idle fails at once: send again on a
            // new one. Timeouts are not retried, and a message submission is sent again only
            // when it never reached the server (a connect error): a connection that broke
            // later may have delivered it (issue #6).
            Err(e) if !e.is_timeout() && retry.is_some() && (e.is_connect() || !submission) => {
                tracing::debug!(cmd, error = %e, "EAS request failed on a reused connection; resending");
                match retry {
                    Some(again) => again.send().await.map_err(transport)?,
                    None => return Err(transport(e)),
                }
            }
            Err(e) => return Err(transport(e)),
        };
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        match status.as_u16() {
            200 => {}
            449 => return Ok(Answer::NeedsProvision),
            451 => {
                return match header("X-MS-Location") {
                    Some(location) => Ok(Answer::Redirect(location)),
                    None => Err(EasError::Http {
                        status: 451,
                        detail: "redirect without X-MS-Location".into(),
                    }),
                };
            }
            401 | 403 => {
                return Err(EasError::Unauthorized {
                    username: self.endpoint.username.clone(),
                    status: status.as_u16(),
                });
            }
            429 | 503 => {
                return Err(EasError::Busy {
                    status: status.as_u16(),
                    retry_after: header("Retry-After")
                        .and_then(|v| v.trim().parse().ok())
                        .map(Duration::from_secs),
                });
            }
            code => {
                return Err(EasError::Http {
                    status: code,
                    detail: status.canonical_reason().unwrap_or("").to_owned(),
                });
            }
        }
        let content_type = header("Content-Type").unwrap_or_default();
        let bytes = response.bytes().await.map_err(transport)?;
        if bytes.is_empty() {
            return Ok(Answer::Empty);
        }
        if !content_type.starts_with(WBXML) {
            return Err(EasError::Protocol {
                command: cmd.into(),
                message: format!(
                    "answer is {content_type:?}, not WBXML: is the URL the ActiveSync endpoint?"
                ),
            });
        }
        wbxml::decode(&bytes)
            .map(Answer::Body)
            .map_err(|e| EasError::Protocol {
                command: cmd.into(),
                message: format!("undecodable WBXML: {e}"),
            })
    }

    /// Sends `OPTIONS` with credentials and reads the supported versions and commands.
    pub async fn options(&self) -> Result<ServerOptions, EasError> {
        // Some servers (SOGo) answer 403 rather than challenge: always send credentials.
        let response = self
            .authorize(self.http.request(Method::OPTIONS, &self.endpoint.url))?
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| EasError::Transport {
                url: self.endpoint.url.clone(),
                message: e.to_string(),
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(EasError::Unauthorized {
                username: self.endpoint.username.clone(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(EasError::Http {
                status: status.as_u16(),
                detail: status.canonical_reason().unwrap_or("").to_owned(),
            });
        }
        let list = |name: &str| -> Vec<String> {
            response
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let options = ServerOptions {
            versions: list("MS-ASProtocolVersions"),
            commands: list("MS-ASProtocolCommands"),
        };
        if options.versions.is_empty() {
            return Err(EasError::Http {
                status: status.as_u16(),
                detail: "OPTIONS answer has no MS-ASProtocolVersions header: not an ActiveSync \
                         endpoint?"
                    .into(),
            });
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerOptions;

    #[test]
    fn prefers_16_1_then_14_1() {
        let o = |v: &[&str]| ServerOptions {
            versions: v.iter().map(|s| s.to_string()).collect(),
            commands: vec![],
        };
        assert_eq!(
            o(&["2.5", "12.0", "14.0", "14.1"]).preferred_version(),
            Some("14.1")
        );
        assert_eq!(
            o(&["14.1", "16.0", "16.1"]).preferred_version(),
            Some("16.1")
        );
        assert_eq!(o(&["2.5", "12.1"]).preferred_version(), None);
    }
}

//! The HTTP surface. Only this module (and this crate) knows actix-web.
//!
//! Routes (every one is in `openapi/openapi.yaml`, and a test keeps the two equal):
//!
//! | route | what |
//! | --- | --- |
//! | `GET /.well-known/jmap`, `GET /jmap/session` | the Session resource |
//! | `POST /jmap/api` | JMAP requests |
//! | `POST /jmap/upload/{accountId}/` | upload a blob |
//! | `GET /jmap/download/{accountId}/{blobId}/{name}?accept=` | download a blob |
//! | `GET /jmap/eventsource?types=&closeafter=&ping=` | push over EventSource |
//! | `GET /jmap/ws` | JMAP over WebSocket (RFC 8887) |
//! | `POST /jmap/token` | a bearer token for Basic credentials |
//! | `GET /healthz`, `GET /readyz`, `GET /metrics` | operations |

mod api;
mod blob;
mod eventsource;
pub mod metrics;
mod session;
mod websocket;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, Route, web};
use futures::StreamExt;
use jmap_engine::{
    CORE_CAPABILITY, Capabilities, CoreCapability, Engine, Limits, MethodSpec,
    PROBLEM_CONTENT_TYPE, RequestError,
};
use serde_json::{Value, json};
use state::{AsyncStore, Store, StoreConfig};
use tokio::sync::Semaphore;

use crate::accounts::{PassthroughLogin, Registry, UserEntry};
use crate::auth::{AuthError, Authenticator, Credentials, parse_authorization};
use crate::config::{Config, Durability};
use crate::mail::MailAccounts;
use crate::methods::{BlobCopy, Directory, StoredType};
use crate::push::TypeNames;
use crate::push::subscription::{PushManager, PushMethods};
use metrics::Metrics;

/// The WebSocket capability (RFC 8887).
pub const WEBSOCKET_CAPABILITY: &str = "urn:ietf:params:jmap:websocket";

/// Everything a request handler needs.
pub struct AppState {
    public_url: Option<String>,
    listen: String,
    store: AsyncStore,
    registry: Arc<Registry>,
    auth: Authenticator,
    engine: Engine<Directory>,
    names: Arc<TypeNames>,
    push: Arc<PushManager>,
    metrics: Arc<Metrics>,
    cors_origins: Vec<String>,
    api_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    upload_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    mail: Option<Arc<MailAccounts>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("public_url", &self.public_url)
            .field("listen", &self.listen)
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

impl AppState {
    fn limits(&self) -> &Limits {
        self.engine.limits()
    }

    fn slot(
        map: &Mutex<HashMap<String, Arc<Semaphore>>>,
        user: &str,
        max: u64,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let semaphore = map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(user.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(usize::try_from(max).unwrap_or(usize::MAX))))
            .clone();
        semaphore.try_acquire_owned().ok()
    }

    /// The absolute URL clients reach us at, in this order: `server.public_url`; else the
    /// scheme and host a trusted proxy forwards (`server.trusted_proxies`; an untrusted peer's
    /// forwarding headers are ignored); else our own scheme (https when the listener has TLS)
    /// with the Host the client sent (`:authority` in HTTP/2) when it looks like a host; else
    /// our own scheme and the listener's address.
    fn base_url(&self, req: &HttpRequest) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let own_scheme = if req.app_config().secure() {
            "https"
        } else {
            "http"
        };
        let forwarded = match (req.app_data::<web::Data<ServeContext>>(), req.peer_addr()) {
            (Some(ctx), Some(peer)) => {
                crate::proxy::forwarded(req.headers(), peer.ip(), &ctx.trusted_proxies)
            }
            _ => crate::proxy::Forwarded::default(),
        };
        let scheme = forwarded.proto.unwrap_or(own_scheme);
        let direct = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .filter(|h| crate::proxy::plausible_host(h))
            .map(str::to_owned);
        match forwarded.host.or(direct) {
            Some(host) => format!("{scheme}://{host}"),
            None => format!("{own_scheme}://{}", req.app_config().local_addr()),
        }
    }

    /// Authenticates a request: the Authorization header, or (for EventSource and WebSocket,
    /// which browsers cannot give headers) an `access_token` query parameter.
    async fn authenticate(
        &self,
        req: &HttpRequest,
        allow_query_token: bool,
    ) -> Result<Arc<UserEntry>, HttpResponse> {
        let peer = req
            .peer_addr()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
        // Behind a trusted proxy, failed logins are counted per real client, not per proxy.
        let peer = match req.app_data::<web::Data<ServeContext>>() {
            Some(ctx) => crate::proxy::client_ip(req.headers(), peer, &ctx.trusted_proxies),
            None => peer,
        };
        let credentials = match req.headers().get(header::AUTHORIZATION) {
            Some(v) => v
                .to_str()
                .map_err(|_| AuthError::Malformed)
                .and_then(parse_authorization),
            None if allow_query_token => query_param(req.query_string(), "access_token")
                .map(Credentials::Bearer)
                .ok_or(AuthError::Missing),
            None => Err(AuthError::Missing),
        };
        match credentials {
            Ok(c) => self.auth.authenticate(c, peer).await,
            Err(e) => Err(e),
        }
        .map_err(unauthorized)
    }
}

/// The value of `name` in a query string, percent-decoded.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A problem-details response.
pub(crate) fn problem(
    status: StatusCode,
    type_uri: &str,
    detail: impl Into<String>,
) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(PROBLEM_CONTENT_TYPE)
        .json(json!({
            "type": type_uri,
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or(""),
            "detail": detail.into(),
        }))
}

/// A request-level JMAP error as its problem-details response.
pub(crate) fn request_error(e: &RequestError) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST))
        .content_type(PROBLEM_CONTENT_TYPE)
        .body(e.to_json().to_string())
}

fn unauthorized(e: AuthError) -> HttpResponse {
    match e {
        AuthError::RateLimited(secs) => {
            let mut r = problem(StatusCode::TOO_MANY_REQUESTS, "about:blank", e.to_string());
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            r
        }
        AuthError::Unavailable(_) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "about:blank",
            e.to_string(),
        ),
        _ => {
            let mut r = problem(StatusCode::UNAUTHORIZED, "about:blank", e.to_string());
            let bearer = if e == AuthError::BadToken {
                "Bearer realm=\"JMAP\", error=\"invalid_token\""
            } else {
                "Bearer realm=\"JMAP\""
            };
            let h = r.headers_mut();
            h.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"JMAP\", charset=\"UTF-8\""),
            );
            h.append(header::WWW_AUTHENTICATE, HeaderValue::from_static(bearer));
            r
        }
    }
}

/// Reads a request body of at most `max` octets; `Err(size so far)` when it is longer.
pub(crate) async fn read_limited(
    mut payload: web::Payload,
    max: u64,
) -> Result<Vec<u8>, Result<usize, actix_web::Error>> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| Err(e.into()))?;
        body.extend_from_slice(&chunk);
        if u64::try_from(body.len()).unwrap_or(u64::MAX) > max {
            return Err(Ok(body.len()));
        }
    }
    Ok(body)
}

/// Every route the server registers: (method, path pattern, handler).
fn route_table() -> Vec<(&'static str, &'static str, Route)> {
    vec![
        ("GET", "/.well-known/jmap", web::get().to(session::get)),
        ("GET", "/jmap/session", web::get().to(session::get)),
        ("POST", "/jmap/api", web::post().to(api::post)),
        (
            "POST",
            "/jmap/upload/{accountId}/",
            web::post().to(blob::upload),
        ),
        (
            "GET",
            "/jmap/download/{accountId}/{blobId}/{name}",
            web::get().to(blob::download),
        ),
        ("GET", "/jmap/eventsource", web::get().to(eventsource::get)),
        ("GET", "/jmap/ws", web::get().to(websocket::get)),
        ("POST", "/jmap/token", web::post().to(token)),
        ("GET", "/healthz", web::get().to(healthz)),
        ("GET", "/readyz", web::get().to(readyz)),
        ("GET", "/metrics", web::get().to(metrics_text)),
    ]
}

/// The (method, path) of every registered route, for the OpenAPI comparison.
pub fn registered_routes() -> Vec<(String, String)> {
    route_table()
        .into_iter()
        .map(|(m, p, _)| (m.to_owned(), p.to_owned()))
        .collect()
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body("ok\n")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    // Ready when the store answers a read.
    match state
        .store
        .run(|s| s.cursor(crate::accounts::REGISTRY_ACCOUNT, b"next"))
        .await
    {
        Ok(_) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("ready\n"),
        Err(e) => problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "about:blank",
            format!("store: {e}"),
        ),
    }
}

async fn metrics_text(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(state.push.active()))
}

async fn token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    // Only Basic credentials buy a token: a token must not renew itself forever.
    let is_basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
        });
    if !is_basic {
        return unauthorized(AuthError::Missing);
    }
    let user = match state.authenticate(&req, false).await {
        Ok(u) => u,
        Err(r) => return r,
    };
    match state.auth.issue(&user) {
        Ok(t) => HttpResponse::Ok()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(t),
        Err(e) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "about:blank",
            e.to_string(),
        ),
    }
}

/// Builds a [`Gateway`].
pub struct GatewayBuilder {
    config: Config,
    store: Option<Arc<Store>>,
    stored_types: Vec<StoredType>,
    passthrough: Vec<Arc<dyn PassthroughLogin>>,
    limits: Limits,
    account_capabilities: BTreeMap<String, Value>,
    mail_sync: bool,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder").finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    pub fn new(config: Config) -> GatewayBuilder {
        GatewayBuilder {
            config,
            store: None,
            stored_types: Vec::new(),
            passthrough: Vec::new(),
            limits: Limits::default(),
            account_capabilities: BTreeMap::new(),
            mail_sync: false,
        }
    }

    /// Serves JMAP Mail: every configured account's sync starts at build, and passthrough
    /// accounts start at their first login. Off by default so tests of the core stay
    /// offline; `serve` turns it on.
    pub fn mail_sync(mut self, on: bool) -> Self {
        self.mail_sync = on;
        self
    }

    /// Uses an open store instead of opening `store.path`.
    pub fn store(mut self, store: Arc<Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Serves a JSON-object data type kept in the store (its capability is advertised).
    pub fn stored_type(mut self, t: StoredType) -> Self {
        self.stored_types.push(t);
        self
    }

    pub fn passthrough(mut self, login: Arc<dyn PassthroughLogin>) -> Self {
        self.passthrough.push(login);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The accountCapabilities every account has until set per account.
    pub fn account_capabilities(mut self, caps: BTreeMap<String, Value>) -> Self {
        self.account_capabilities = caps;
        self
    }

    /// Opens the store (unless given), loads the registry and builds the engine. Must run
    /// inside a tokio runtime.
    pub async fn build(self) -> anyhow::Result<Gateway> {
        let config = self.config;
        let store = match self.store {
            Some(s) => s,
            None => {
                let mut sc = StoreConfig {
                    max_log_entries: config.store.changelog_max_entries,
                    blob_cache_bytes: config.store.blob_cache_mib.saturating_mul(1 << 20),
                    ..StoreConfig::default()
                };
                sc.durability = match config.store.durability {
                    Durability::Sync => state::Durability::SyncEachCommit,
                    Durability::Group => state::Durability::GroupCommit {
                        window: Duration::from_millis(config.store.group_commit_window_ms),
                    },
                };
                let path = config.store.path.clone();
                let opened = tokio::task::spawn_blocking(move || Store::open(&path, sc)).await??;
                Arc::new(opened)
            }
        };
        let store = AsyncStore::new(store);
        let registry = Arc::new(
            Registry::new(
                store.clone(),
                &config,
                self.passthrough,
                self.account_capabilities,
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        );
        let secret = match &config.auth.token_secret {
            Some(s) => Some(
                s.resolve()
                    .map_err(|e| anyhow::anyhow!("auth.token_secret: {e}"))?,
            ),
            None => None,
        };
        let auth = Authenticator::new(
            registry.clone(),
            secret,
            Duration::from_secs(config.auth.token_lifetime_secs),
        )?;
        let mut names = TypeNames::default();
        for t in &self.stored_types {
            names.rename(t.data_type, t.name.clone());
        }
        let names = Arc::new(names);
        let push = Arc::new(PushManager::new(
            store.clone(),
            registry.clone(),
            config.push.clone(),
            names.clone(),
        )?);
        let mut others = BTreeMap::new();
        others.insert(
            WEBSOCKET_CAPABILITY.to_owned(),
            json!({"url": "", "supportsPush": true}),
        );
        for t in &self.stored_types {
            others.insert(t.capability.clone(), json!({}));
        }
        for cap in registry.default_capabilities().keys() {
            others.entry(cap.clone()).or_insert_with(|| json!({}));
        }
        let mail = if self.mail_sync {
            let mail = MailAccounts::new(store.clone(), registry.clone())?;
            let hook_target = Arc::downgrade(&mail);
            registry.set_login_hook(Box::new(move |id, spec| {
                if let Some(mail) = hook_target.upgrade() {
                    let address = spec.address();
                    if let Err(e) = mail.start(id, spec, address) {
                        tracing::error!(account = %id, "cannot start the account's sync: {e}");
                    }
                }
            }));
            mail.start_configured(&config)?;
            for cap in [
                jmap_engine::MAIL_CAPABILITY,
                jmap_mail::methods::SUBMISSION,
                jmap_mail::methods::VACATION,
                jmap_mail::methods::QUOTA,
            ] {
                others.entry(cap.to_owned()).or_insert_with(|| json!({}));
            }
            Some(mail)
        } else {
            None
        };
        let capabilities = Capabilities {
            core: CoreCapability {
                limits: self.limits,
                ..CoreCapability::default()
            },
            others,
        };
        let mut engine = Engine::new(
            Directory {
                store: store.clone(),
                mail: mail.clone(),
            },
            capabilities,
        );
        engine.register("Blob/copy", CORE_CAPABILITY, BlobCopy);
        engine.register_spec(
            "PushSubscription/get",
            MethodSpec::infer("PushSubscription/get", CORE_CAPABILITY).without_account(),
            PushMethods(push.clone(), false),
        );
        engine.register_spec(
            "PushSubscription/set",
            MethodSpec::infer("PushSubscription/set", CORE_CAPABILITY)
                .without_account()
                .mutating(false),
            PushMethods(push.clone(), true),
        );
        for t in &self.stored_types {
            t.register(&mut engine);
        }
        if mail.is_some() {
            jmap_mail::methods::register(&mut engine);
        }
        push.resume().await;
        Ok(Gateway {
            state: Arc::new(AppState {
                public_url: config.server.public_url.clone(),
                listen: config.server.listen.to_string(),
                store,
                registry,
                auth,
                engine,
                names,
                push,
                metrics: Arc::new(Metrics::default()),
                cors_origins: config.auth.cors_origins.clone(),
                api_slots: Mutex::new(HashMap::new()),
                upload_slots: Mutex::new(HashMap::new()),
                mail,
            }),
        })
    }
}

/// A built gateway: state, engine and push, ready to serve HTTP.
#[derive(Debug, Clone)]
pub struct Gateway {
    state: Arc<AppState>,
}

impl Gateway {
    pub fn builder(config: Config) -> GatewayBuilder {
        GatewayBuilder::new(config)
    }

    /// Waits (at most `timeout`) until this handle is the last one on the gateway's state:
    /// the HTTP workers of a stopped server drop theirs on their own threads, a little after
    /// the server reports stopped. Dropping the last one closes the store; done on a worker
    /// thread while the process exits, RocksDB's close can abort it ("pthread lock: Invalid
    /// argument"), so whoever stops a server waits here, then drops the gateway itself.
    pub fn wait_released(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Arc::strong_count(&self.state) > 1 {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    pub fn store(&self) -> &AsyncStore {
        &self.state.store
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.state.registry
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.state.metrics
    }

    /// The running mail accounts, when built with [`GatewayBuilder::mail_sync`].
    pub fn mail(&self) -> Option<&Arc<MailAccounts>> {
        self.state.mail.as_ref()
    }

    /// A receiver that turns `true` when the gateway begins to shut down (SIGINT/SIGTERM in
    /// the binary, or [`Gateway::begin_shutdown`]). Long-running tasks (mail sync drivers,
    /// anything else holding the store) should watch it, finish their current batch and
    /// return: after the HTTP server has drained, the binary flushes the store and exits.
    /// EventSource and WebSocket push streams already end on it, so clients reconnect.
    /// It is the store's signal ([`state::Store::shutdown_signal`]), so tasks given only the
    /// store see it too.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.state.store.blocking().shutdown_signal()
    }

    /// Tells every [`Gateway::shutdown_signal`] receiver to wind down. Idempotent. Does not
    /// stop the HTTP server itself (use its handle).
    pub fn begin_shutdown(&self) {
        self.state.store.blocking().signal_shutdown();
    }

    /// Serves plain HTTP on an already-bound listener with default options. Runs on the
    /// current actix system.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<actix_web::dev::Server> {
        self.serve_with(listener, ServeOptions::default())
    }

    /// Serves on an already-bound listener: HTTPS when `options.tls` is set (HTTP/2 and
    /// HTTP/1.1 by ALPN), the admin socket when `options.admin_socket` is set. The server does
    /// not handle signals itself; stopping it gracefully (its handle's `stop(true)`) lets
    /// in-flight requests finish for up to `options.shutdown_timeout`.
    pub fn serve_with(
        self,
        listener: TcpListener,
        options: ServeOptions,
    ) -> std::io::Result<actix_web::dev::Server> {
        if let Some(path) = &options.admin_socket {
            crate::admin::listen(
                path,
                self.state.store.blocking().clone(),
                self.shutdown_signal(),
            )?;
        }
        let context = web::Data::new(ServeContext {
            trusted_proxies: options.trusted_proxies,
        });
        let data = web::Data::from(self.state);
        let server = HttpServer::new(move || {
            let data = data.clone();
            let mut app = App::new().app_data(data.clone()).wrap_fn(move |req, srv| {
                let state = data.clone();
                let start = Instant::now();
                let route = req
                    .match_pattern()
                    .unwrap_or_else(|| "unmatched".to_owned());
                let method = req.method().clone();
                let origin = req.headers().get(header::ORIGIN).cloned();
                let preflight = method == Method::OPTIONS
                    && req
                        .headers()
                        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
                let allowed = origin
                    .as_ref()
                    .and_then(|o| o.to_str().ok())
                    .is_some_and(|o| state.cors_origins.iter().any(|c| c == o));
                if preflight {
                    let mut response = HttpResponse::NoContent().finish();
                    if allowed && let Some(o) = origin {
                        cors_headers(response.headers_mut(), o, true);
                    }
                    let res = req.into_response(response);
                    return Box::pin(async move { Ok(res) })
                        as futures::future::LocalBoxFuture<
                            'static,
                            Result<ServiceResponse<BoxBody>, actix_web::Error>,
                        >;
                }
                let fut = srv.call(req);
                let boxed: futures::future::LocalBoxFuture<
                    'static,
                    Result<ServiceResponse<BoxBody>, actix_web::Error>,
                > = Box::pin(async move {
                    let mut res = fut.await?.map_into_boxed_body();
                    if allowed && let Some(o) = origin {
                        cors_headers(res.headers_mut(), o, false);
                    }
                    state.metrics.observe(
                        &route,
                        method.as_str(),
                        res.status().as_u16(),
                        start.elapsed(),
                    );
                    Ok(res)
                });
                boxed
            });
            app = app.app_data(context.clone());
            for (_, path, route) in route_table() {
                app = app.route(path, route);
            }
            app
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(options.shutdown_timeout.as_secs());
        let server = match options.tls {
            Some(files) => {
                let config = files.server_config().map_err(std::io::Error::other)?;
                server.listen_rustls_0_23(listener, config)?
            }
            None => server.listen(listener)?,
        };
        Ok(server.run())
    }
}

/// How [`Gateway::serve_with`] serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// HTTPS with this certificate pair (reloadable in place); plain HTTP when `None`.
    pub tls: Option<Arc<crate::tls::CertFiles>>,
    /// Peers whose Forwarded / X-Forwarded-* headers are believed.
    pub trusted_proxies: crate::proxy::TrustedProxies,
    /// Where to listen for `jmap-gateway backup`; none when `None`.
    pub admin_socket: Option<PathBuf>,
    /// How long a graceful stop waits for in-flight requests.
    pub shutdown_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            tls: None,
            trusted_proxies: crate::proxy::TrustedProxies::default(),
            admin_socket: None,
            shutdown_timeout: Duration::from_secs(20),
        }
    }
}

/// Per-listener settings handlers read from the request (app data).
#[derive(Debug)]
pub(crate) struct ServeContext {
    trusted_proxies: crate::proxy::TrustedProxies,
}

fn cors_headers(h: &mut header::HeaderMap, origin: HeaderValue, preflight: bool) {
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("Authorization, Content-Type, Last-Event-ID"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    } else {
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("WWW-Authenticate, Retry-After"),
        );
    }
}

/// Runs the gateway until SIGINT/SIGTERM, then shuts down gracefully: the listener stops
/// accepting, [`Gateway::shutdown_signal`] turns true (push streams end so clients reconnect,
/// sync drivers stop), in-flight requests get `server.shutdown_timeout_secs` to finish, and
/// the store is flushed. SIGHUP reloads the TLS certificate.
pub fn serve(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let listen = config.server.listen;
    crate::tls::install_crypto_provider();
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::tls::CertFiles::load(cert, key).map_err(|e| anyhow::anyhow!("{e}"))?)
        }
        (None, None) => None,
        _ => anyhow::bail!("server.tls_cert and server.tls_key must be given together"),
    };
    if tls.is_none() {
        if listen.ip().is_loopback() {
            tracing::info!("plain HTTP on a loopback address (no server.tls_cert)");
        } else if config.server.allow_plain_http {
            tracing::warn!(
                %listen,
                "serving plain HTTP on a non-loopback address (server.allow_plain_http): \
                 passwords and mail cross the network unencrypted unless a TLS-terminating \
                 proxy is in front"
            );
        } else {
            anyhow::bail!(
                "refusing to serve plain HTTP on {listen}, which is not a loopback address: \
                 set server.tls_cert and server.tls_key for HTTPS, or server.allow_plain_http \
                 = true when a TLS-terminating proxy is in front"
            );
        }
    }
    let options = ServeOptions {
        tls: tls.clone(),
        trusted_proxies: crate::proxy::TrustedProxies::parse(&config.server.trusted_proxies)
            .map_err(|e| anyhow::anyhow!("server.trusted_proxies: {e}"))?,
        admin_socket: Some(config.server.admin_socket(&config.store.path)),
        shutdown_timeout: Duration::from_secs(config.server.shutdown_timeout_secs),
    };
    let reload_every = Duration::from_secs(config.server.tls_reload_secs);
    match &config_path {
        Some(p) => tracing::info!(config = %p.display(), "configuration loaded"),
        None => tracing::info!("no configuration file; running on defaults"),
    }
    if config.users.is_empty() && config.passthrough.is_empty() {
        tracing::warn!(
            "no users and no passthrough servers are configured: nobody can log in \
             (see jmap-gateway.example.toml or --passthrough)"
        );
    }
    let mut passthrough = Vec::new();
    for p in &config.passthrough {
        passthrough.push(Arc::new(crate::passthrough::UpstreamLogin::new(p)?));
    }
    std::fs::create_dir_all(&config.store.path).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the store folder {}: {e}",
            config.store.path.display()
        )
    })?;
    actix_web::rt::System::new().block_on(async move {
        let mut builder = Gateway::builder(config).mail_sync(true);
        for p in passthrough {
            builder = builder.passthrough(p);
        }
        let gateway = builder.build().await?;
        let listener = TcpListener::bind(listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
        use tokio::signal::unix::{SignalKind, signal};
        let mut sigterm = signal(SignalKind::terminate())?;
        let mut sigint = signal(SignalKind::interrupt())?;
        let mut sighup = signal(SignalKind::hangup())?;
        let shutdown_timeout = options.shutdown_timeout;
        let server = gateway.clone().serve_with(listener, options)?;
        let handle = server.handle();
        if let Some(files) = &tls
            && !reload_every.is_zero()
        {
            files.poll(reload_every, gateway.shutdown_signal());
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(%listen, "listening ({scheme})");
        let mut running = actix_web::rt::spawn(server);
        let why = loop {
            tokio::select! {
                _ = sigterm.recv() => break "SIGTERM",
                _ = sigint.recv() => break "SIGINT",
                _ = sighup.recv() => match &tls {
                    Some(files) => {
                        let files = files.clone();
                        let _ = tokio::task::spawn_blocking(move || files.reload_logged()).await;
                    }
                    None => tracing::info!("SIGHUP: no TLS certificate to reload"),
                },
                ended = &mut running => {
                    // The server stopped by itself (it should not): shut the rest down too.
                    gateway.begin_shutdown();
                    ended??;
                    return Ok(());
                }
            }
        };
        tracing::info!(
            "{why}: shutting down; in-flight requests get {}s to finish",
            shutdown_timeout.as_secs()
        );
        gateway.begin_shutdown();
        handle.stop(true).await;
        running.await??;
        if let Some(mail) = gateway.mail().cloned() {
            // Each driver finishes the batch it is committing, then stops.
            let _ = tokio::task::spawn_blocking(move || mail.shutdown()).await;
        }
        gateway
            .store()
            .run(|s| s.flush())
            .await
            .map_err(|e| anyhow::anyhow!("flushing the store: {e}"))?;
        // The HTTP workers drop their handles on their own threads; the store closes here,
        // not on one of them while the process exits.
        if !gateway.wait_released(Duration::from_secs(10)) {
            tracing::warn!("HTTP workers still hold the gateway after 10 s");
        }
        tracing::info!("store flushed; stopped");
        Ok(())
    })
}

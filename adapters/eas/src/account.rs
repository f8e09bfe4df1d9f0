//! [`EasAccount`]: one ActiveSync account behind the [`Upstream`] contract.
//!
//! Sync keys: the gateway stores the key of each committed batch as the mailbox cursor. Writes
//! (Sync Change/Delete) move a folder's key forward without fetching changes; the account
//! remembers that newer key and uses it when the gateway next passes the cursor it was last
//! given, so the write does not void the gateway's cursor.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use upstream::{
    BoxFuture, MailboxRole, MessageChange, RemoteMailbox, SendSource, SourceKind, SyncBatch,
    SyncSink, Upstream, UpstreamError, WriteOp, WriteOutcome,
};
use wbxml::Element;
use wbxml::tag::email as em;

use crate::command::{
    BodyPreference, ClientCommand, ClientResponse, Fetch, FetchResponse, Folder, FolderChange,
    FolderCreate, FolderCreateResponse, FolderDelete, FolderSync, FolderSyncResponse, FolderType,
    FolderUpdate, FolderUpdateResponse, GetItemEstimate, GetItemEstimateResponse, MoveItem,
    MoveItems, MoveItemsResponse, OofBodyType, OofSettings, ParseError, Ping, PingFolder,
    PingResponse, SendMail, SendMailResponse, ServerCommand, SettingsOof, SettingsOofResponse,
    SmartKind, SmartSend, SmartSendResponse, Sync, SyncCollection, SyncCollectionResponse,
    SyncOptions, SyncResponse, settings_status_meaning,
};
use crate::email;
use crate::transport::{COMMAND_TIMEOUT, EasClient, EasEndpoint, EasError};

/// Tuning of one account.
#[derive(Debug, Clone)]
pub struct EasSettings {
    /// Items per Sync response (the batch size reported to the gateway).
    pub window_size: u32,
    /// Ping heartbeat bounds in seconds to start from; status 5 answers narrow them.
    pub min_heartbeat: u32,
    pub max_heartbeat: u32,
    /// Interop quirk (SOGo 5): a sync key SOGo cannot parse gets HTTP 501 instead of Sync
    /// status 3. When set, HTTP 501 to a Sync with a non-zero key is treated as status 3.
    pub sogo_http_501_is_invalid_sync_key: bool,
    /// How requests authenticate.
    pub auth: EasAuth,
    /// Reads the password or token again for every request (an OAuth access token kept
    /// fresh outside the gateway); without it the endpoint's password is used.
    pub secret_provider: Option<upstream::SecretProvider>,
}

/// How EAS requests authenticate (MS-ASHTTP 2.2.1.1.2.2 allows either).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EasAuth {
    /// Preemptive Basic with the username and password.
    #[default]
    Basic,
    /// `Authorization: Bearer` with an OAuth 2 access token as the secret.
    Bearer,
}

impl Default for EasSettings {
    fn default() -> Self {
        EasSettings {
            window_size: 100,
            // Low enough for SOGo (which allows 60 at most); Exchange raises it with status 5.
            min_heartbeat: 10,
            // MS-ASCMD 2.2.3.79.1: 3540 s is the protocol's upper bound.
            max_heartbeat: 3540,
            sogo_http_501_is_invalid_sync_key: true,
            auth: EasAuth::Basic,
            secret_provider: None,
        }
    }
}

/// The folder hierarchy as last synced, in server order.
#[derive(Debug)]
struct Hierarchy {
    sync_key: String,
    folders: Vec<Folder>,
}

/// Sync keys of one folder.
#[derive(Debug, Default)]
struct FolderKey {
    /// The key of the last batch handed to the gateway.
    reported: Option<String>,
    /// The newest key the server gave (later than `reported` after a write).
    current: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct PingTuning {
    min: u32,
    max: u32,
    max_folders: Option<usize>,
}

/// One EAS account; see the module documentation.
#[derive(Debug)]
pub struct EasAccount {
    client: EasClient,
    settings: EasSettings,
    negotiated: tokio::sync::OnceCell<&'static str>,
    hierarchy: tokio::sync::Mutex<Option<Hierarchy>>,
    keys: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<FolderKey>>>>,
    ping: std::sync::Mutex<PingTuning>,
}

const CURSOR_PREFIX: &[u8] = b"eas1 ";

fn encode_cursor(key: &str) -> Vec<u8> {
    [CURSOR_PREFIX, key.as_bytes()].concat()
}

fn decode_cursor(cursor: &[u8]) -> Option<String> {
    let key = cursor.strip_prefix(CURSOR_PREFIX)?;
    String::from_utf8(key.to_vec())
        .ok()
        .filter(|k| !k.is_empty())
}

fn protocol(e: ParseError) -> UpstreamError {
    UpstreamError::Protocol(e.to_string())
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The JMAP role of a folder: from its type, or for top-level user folders from the names
/// servers give the folders EAS has no type for.
fn role(folder: &Folder) -> Option<MailboxRole> {
    match folder.folder_type {
        FolderType::INBOX => Some(MailboxRole::Inbox),
        FolderType::DRAFTS => Some(MailboxRole::Drafts),
        FolderType::DELETED_ITEMS => Some(MailboxRole::Trash),
        FolderType::SENT_ITEMS => Some(MailboxRole::Sent),
        FolderType::USER_MAIL | FolderType::USER_GENERIC if folder.parent_id == "0" => {
            match folder.display_name.to_ascii_lowercase().as_str() {
                "junk" | "junk e-mail" | "junk email" | "spam" => Some(MailboxRole::Junk),
                "archive" | "archives" => Some(MailboxRole::Archive),
                _ => None,
            }
        }
        _ => None,
    }
}

fn remote_mailbox(folder: &Folder, all: &[Folder]) -> RemoteMailbox {
    let parent_is_mail = all
        .iter()
        .any(|f| f.server_id == folder.parent_id && f.folder_type.is_mail());
    RemoteMailbox {
        remote_id: folder.server_id.clone(),
        name: folder.display_name.clone(),
        parent: parent_is_mail.then(|| folder.parent_id.clone()),
        role: role(folder),
        subscribed: true,
        selectable: true,
    }
}

/// A Sync response for one collection, sorted by what the caller does next.
enum SyncOutcome {
    /// Empty HTTP body: nothing changed, the key stays.
    Empty,
    Done(SyncCollectionResponse),
    /// A status other than 1, from the collection or the request.
    Status(u32),
}

fn sync_status_meaning(status: u32) -> &'static str {
    match status {
        3 => "invalid sync key",
        4 => "protocol error",
        5 => "server error",
        6 => "error converting an item",
        7 => "conflict between client and server",
        8 => "object not found",
        9 => "cannot complete (mailbox full?)",
        12 => "folder hierarchy changed",
        13 => "incomplete request",
        14 => "invalid Wait or HeartbeatInterval",
        15 => "too many collections",
        16 => "retry",
        _ => "unexpected status",
    }
}

fn sync_error(status: u32) -> UpstreamError {
    let text = format!("Sync status {status} ({})", sync_status_meaning(status));
    match status {
        8 => UpstreamError::NotFound(text),
        5 | 16 => UpstreamError::Unavailable(text),
        6 | 7 | 9 => UpstreamError::Refused(text),
        _ => UpstreamError::Protocol(text),
    }
}

/// A unique ClientId for SendMail (the server drops repeats).
fn client_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("jg{nanos}x{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// EAS takes recipients from the MIME headers: an envelope naming anyone else cannot be
/// honoured.
fn check_envelope(raw: &[u8], envelope: &upstream::Envelope) -> Result<(), UpstreamError> {
    let headers_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(raw.len());
    let headers = String::from_utf8_lossy(&raw[..headers_end]).to_ascii_lowercase();
    let missing: Vec<&String> = envelope
        .rcpt_to
        .iter()
        .filter(|r| !headers.contains(&r.to_ascii_lowercase()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(UpstreamError::Unsupported(format!(
            "ActiveSync sends to the addresses in To/Cc/Bcc only; the envelope also names \
             {missing:?}"
        )))
    }
}

/// Whether a failed SmartReply / SmartForward proves that the server sent nothing, so that
/// SendMail may send the message instead: the source item is unknown (150), the request was
/// not understood (101–107), the command is not offered (137, HTTP 501). Every status of
/// this kind is answered before anything is submitted. Anything else (a server error, a
/// broken connection, a timeout) may have come after the message went out, and is reported,
/// never sent again.
fn smart_not_sent(e: &EasError) -> bool {
    match e {
        EasError::Global { code, .. } => matches!(code, 101..=107 | 137 | 150),
        EasError::Http { status, .. } => *status == 501,
        _ => false,
    }
}

impl EasAccount {
    pub fn new(endpoint: EasEndpoint, settings: EasSettings) -> Result<Self, EasError> {
        let ping = PingTuning {
            min: settings.min_heartbeat,
            max: settings.max_heartbeat.max(settings.min_heartbeat),
            max_folders: None,
        };
        Ok(EasAccount {
            client: EasClient::new(endpoint)?
                .with_auth(settings.auth, settings.secret_provider.clone()),
            settings,
            negotiated: tokio::sync::OnceCell::new(),
            hierarchy: tokio::sync::Mutex::new(None),
            keys: std::sync::Mutex::new(HashMap::new()),
            ping: std::sync::Mutex::new(ping),
        })
    }

    /// The transport, for commands this type does not wrap.
    pub fn client(&self) -> &EasClient {
        &self.client
    }

    /// Negotiates the protocol version once per account (OPTIONS), falling back to 14.1 when
    /// the server will not say; bad credentials are an error.
    async fn ready(&self) -> Result<&'static str, UpstreamError> {
        self.negotiated
            .get_or_try_init(|| async {
                match self.client.negotiate().await {
                    Ok(v) => Ok(v),
                    Err(e @ EasError::Unauthorized { .. }) => Err(UpstreamError::from(e)),
                    Err(e) => {
                        tracing::warn!(error = %e, "EAS OPTIONS failed; speaking 14.1");
                        Ok("14.1")
                    }
                }
            })
            .await
            .copied()
    }

    async fn call(
        &self,
        cmd: &str,
        body: &Element,
        timeout: Duration,
    ) -> Result<Option<Element>, UpstreamError> {
        self.ready().await?;
        Ok(self.client.command(cmd, Some(body), timeout).await?)
    }

    /// Brings the hierarchy up to date (FolderSync from the last key, or from 0).
    async fn refresh_hierarchy(&self, slot: &mut Option<Hierarchy>) -> Result<(), UpstreamError> {
        for _ in 0..2 {
            let key = slot
                .as_ref()
                .map_or_else(|| "0".to_owned(), |h| h.sync_key.clone());
            let root = self
                .call(
                    "FolderSync",
                    &FolderSync {
                        sync_key: key.clone(),
                    }
                    .to_element(),
                    COMMAND_TIMEOUT,
                )
                .await?
                .ok_or_else(|| UpstreamError::Protocol("FolderSync: empty response".into()))?;
            let response = FolderSyncResponse::from_element(&root).map_err(protocol)?;
            match response.status {
                1 => {}
                // The key is no longer valid: start again from 0.
                9 => {
                    *slot = None;
                    continue;
                }
                6 => {
                    return Err(UpstreamError::Unavailable("FolderSync status 6".into()));
                }
                s => return Err(UpstreamError::Protocol(format!("FolderSync status {s}"))),
            }
            let mut folders = match slot.take() {
                Some(h) if key != "0" => h.folders,
                _ => Vec::new(),
            };
            for change in response.changes {
                match change {
                    FolderChange::Add(f) | FolderChange::Update(f) => {
                        match folders.iter_mut().find(|x| x.server_id == f.server_id) {
                            Some(existing) => *existing = f,
                            None => folders.push(f),
                        }
                    }
                    FolderChange::Delete { server_id } => {
                        folders.retain(|f| f.server_id != server_id);
                    }
                }
            }
            *slot = Some(Hierarchy {
                sync_key: response.sync_key.unwrap_or(key),
                folders,
            });
            return Ok(());
        }
        Err(UpstreamError::Protocol(
            "FolderSync keeps rejecting the sync key 0".into(),
        ))
    }

    /// The mail folders, after a FolderSync.
    pub async fn mail_folders(&self) -> Result<Vec<RemoteMailbox>, UpstreamError> {
        let mut slot = self.hierarchy.lock().await;
        self.refresh_hierarchy(&mut slot).await?;
        let folders = slot.as_ref().map(|h| h.folders.as_slice()).unwrap_or(&[]);
        Ok(folders
            .iter()
            .filter(|f| f.folder_type.is_mail())
            .map(|f| remote_mailbox(f, folders))
            .collect())
    }

    fn folder_key(&self, folder: &str) -> Arc<tokio::sync::Mutex<FolderKey>> {
        lock(&self.keys)
            .entry(folder.to_owned())
            .or_default()
            .clone()
    }

    async fn sync_request(&self, collection: SyncCollection) -> Result<SyncOutcome, UpstreamError> {
        let id = collection.collection_id.clone();
        let request = Sync {
            collections: vec![collection],
        };
        let mut attempt = 0;
        let mut response = loop {
            attempt += 1;
            let Some(root) = self
                .call("Sync", &request.to_element(), COMMAND_TIMEOUT)
                .await?
            else {
                return Ok(SyncOutcome::Empty);
            };
            let response = SyncResponse::from_element(&root).map_err(protocol)?;
            // Status 13, "incomplete request" (for the request or the collection): the server
            // did not take it (SOGo says so now and then while a Ping of the same device is
            // being cut short). MS-ASCMD's remedy is to send the full request again, which is
            // safe as nothing of it was applied.
            let incomplete = match response.collections.iter().find(|c| c.collection_id == id) {
                Some(c) => c.status == 13,
                None => response.status == Some(13),
            };
            if incomplete && attempt == 1 {
                tracing::debug!(collection = %id, "Sync status 13; sending the request again");
                continue;
            }
            break response;
        };
        let Some(index) = response
            .collections
            .iter()
            .position(|c| c.collection_id == id)
        else {
            return match response.status {
                Some(s) => Ok(SyncOutcome::Status(s)),
                None => Err(UpstreamError::Protocol(format!(
                    "Sync: no answer for collection {id}"
                ))),
            };
        };
        let collection = response.collections.swap_remove(index);
        if collection.status != 1 {
            return Ok(SyncOutcome::Status(collection.status));
        }
        Ok(SyncOutcome::Done(collection))
    }

    async fn estimate(&self, sync_key: &str, collection_id: &str) -> Option<u64> {
        let request = GetItemEstimate {
            sync_key: sync_key.to_owned(),
            collection_id: collection_id.to_owned(),
        };
        let root = self
            .call("GetItemEstimate", &request.to_element(), COMMAND_TIMEOUT)
            .await
            .ok()??;
        let response = GetItemEstimateResponse::from_element(&root).ok()?;
        response
            .responses
            .iter()
            .find(|r| r.status == 1)
            .and_then(|r| r.estimate)
            .map(u64::from)
    }

    async fn folder_exists(&self, id: &str) -> Result<bool, UpstreamError> {
        Ok(self.mail_folders().await?.iter().any(|m| m.remote_id == id))
    }

    async fn sync_pass(
        &self,
        mailbox: &RemoteMailbox,
        cursor: Option<&[u8]>,
        sink: &mut dyn SyncSink,
    ) -> Result<(), UpstreamError> {
        self.ready().await?;
        {
            // SOGo answers status 12 to a device that never listed the hierarchy.
            let mut slot = self.hierarchy.lock().await;
            if slot.is_none() {
                self.refresh_hierarchy(&mut slot).await?;
            }
        }
        let id = mailbox.remote_id.as_str();
        let cell = self.folder_key(id);
        let mut state = cell.lock().await;
        let given = cursor.and_then(decode_cursor);
        let mut key = match (&given, &state.reported, &state.current) {
            (Some(g), Some(r), Some(c)) if g == r => Some(c.clone()),
            _ => given,
        };
        let mut reset = key.is_none();
        let (mut resets, mut hierarchy_changes, mut retries) = (0, 0, 0);
        let mut total: Option<u64> = None;
        let mut done: u64 = 0;
        loop {
            let request = match &key {
                None => SyncCollection::initial(id),
                Some(k) => SyncCollection {
                    sync_key: k.clone(),
                    collection_id: id.to_owned(),
                    get_changes: true,
                    window_size: Some(self.settings.window_size),
                    deletes_as_moves: None,
                    options: Some(SyncOptions {
                        filter_type: Some(0),
                        // Plain text for the preview; servers that honour the size stop there.
                        body_preference: Some(BodyPreference {
                            body_type: 1,
                            truncation_size: Some(512),
                        }),
                        mime_support: None,
                    }),
                    commands: Vec::new(),
                },
            };
            let nonzero_key = key.is_some();
            let outcome = match self.sync_request(request).await {
                Err(UpstreamError::Unavailable(text))
                    if nonzero_key
                        && self.settings.sogo_http_501_is_invalid_sync_key
                        && text.contains("HTTP 501") =>
                {
                    SyncOutcome::Status(3)
                }
                other => other?,
            };
            match outcome {
                SyncOutcome::Empty => {
                    let Some(k) = key else {
                        return Err(UpstreamError::Protocol(
                            "Sync with key 0 answered an empty body".into(),
                        ));
                    };
                    sink.apply(SyncBatch {
                        mailbox: id.to_owned(),
                        reset,
                        changes: Vec::new(),
                        cursor: encode_cursor(&k),
                        complete: true,
                        progress: total.map(|t| (done, t.max(done))),
                    })
                    .await?;
                    state.reported = Some(k.clone());
                    state.current = Some(k);
                    return Ok(());
                }
                SyncOutcome::Status(3) if resets < 2 => {
                    tracing::info!(folder = id, "EAS sync key rejected; syncing from 0");
                    resets += 1;
                    key = None;
                    reset = true;
                    state.current = None;
                }
                SyncOutcome::Status(12) if hierarchy_changes < 2 => {
                    hierarchy_changes += 1;
                    if !self.folder_exists(id).await? {
                        return Err(UpstreamError::NotFound(format!("folder {id}")));
                    }
                }
                SyncOutcome::Status(5 | 16) if retries < 2 => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                SyncOutcome::Status(s) => return Err(sync_error(s)),
                SyncOutcome::Done(c) => {
                    let new_key = c.sync_key.clone().ok_or_else(|| {
                        UpstreamError::Protocol("Sync status 1 without a SyncKey".into())
                    })?;
                    if key.is_none() {
                        total = self.estimate(&new_key, id).await;
                        key = Some(new_key);
                        continue;
                    }
                    let had_commands = !c.commands.is_empty();
                    let changes: Vec<MessageChange> = c
                        .commands
                        .iter()
                        .map(|command| match command {
                            ServerCommand::Add { server_id, data } => {
                                done += 1;
                                MessageChange::Upsert(email::remote_message(server_id, data))
                            }
                            ServerCommand::Change { server_id, data } => MessageChange::Keywords {
                                uid: server_id.clone(),
                                keywords: email::keywords(data),
                            },
                            ServerCommand::Delete { server_id, .. } => MessageChange::Removed {
                                uid: server_id.clone(),
                            },
                        })
                        .collect();
                    // SOGo moves the key once more after a batch with changes: keep syncing
                    // until a response brings nothing, so a following Ping starts quiet.
                    let complete = !c.more_available && !had_commands;
                    sink.apply(SyncBatch {
                        mailbox: id.to_owned(),
                        reset,
                        changes,
                        cursor: encode_cursor(&new_key),
                        complete,
                        progress: total.map(|t| (done, t.max(done))),
                    })
                    .await?;
                    reset = false;
                    state.reported = Some(new_key.clone());
                    state.current = Some(new_key.clone());
                    key = Some(new_key);
                    if complete {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn ping(
        &self,
        mailboxes: &[RemoteMailbox],
        timeout: Duration,
    ) -> Result<Vec<String>, UpstreamError> {
        self.ready().await?;
        let deadline = Instant::now() + timeout;
        let mut watched: Vec<&RemoteMailbox> = mailboxes.iter().filter(|m| m.selectable).collect();
        // Inbox first, so it stays watched when the server limits the folder count.
        watched.sort_by_key(|m| m.role != Some(MailboxRole::Inbox));
        if watched.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(Vec::new());
        }
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Ok(Vec::new());
            }
            let tuning = *lock(&self.ping);
            let count = tuning.max_folders.unwrap_or(usize::MAX).min(watched.len());
            let wanted = u32::try_from(remaining.as_secs().max(1)).unwrap_or(u32::MAX);
            let heartbeat = wanted.clamp(tuning.min, tuning.max);
            let request = Ping {
                heartbeat,
                folders: watched[..count]
                    .iter()
                    .map(|m| PingFolder {
                        id: m.remote_id.clone(),
                        class: "Email".into(),
                    })
                    .collect(),
            };
            let body = request.to_element();
            let call = self.call(
                "Ping",
                &body,
                Duration::from_secs(u64::from(heartbeat) + 30),
            );
            let answer = if u64::from(heartbeat) > remaining.as_secs() + 1 {
                // The server will not hold a Ping this short: stop waiting at the deadline.
                match tokio::time::timeout(remaining, call).await {
                    Ok(answer) => answer?,
                    Err(_) => return Ok(Vec::new()),
                }
            } else {
                call.await?
            };
            let root =
                answer.ok_or_else(|| UpstreamError::Protocol("Ping: empty response".into()))?;
            let response = PingResponse::from_element(&root).map_err(protocol)?;
            match response.status {
                1 => {}
                2 if response.folders.is_empty() => {
                    return Ok(watched.iter().map(|m| m.remote_id.clone()).collect());
                }
                2 => return Ok(response.folders),
                5 => {
                    let limit = response.heartbeat.ok_or_else(|| {
                        UpstreamError::Protocol("Ping status 5 without a HeartbeatInterval".into())
                    })?;
                    let mut t = lock(&self.ping);
                    if limit > heartbeat {
                        t.min = limit;
                        t.max = t.max.max(limit);
                    } else if limit < heartbeat {
                        t.max = limit;
                        t.min = t.min.min(limit);
                    } else {
                        return Err(UpstreamError::Protocol(format!(
                            "Ping status 5 for heartbeat {heartbeat}, which it names as the limit"
                        )));
                    }
                    tracing::info!(min = t.min, max = t.max, "EAS Ping heartbeat limits");
                }
                6 => {
                    let max = response
                        .max_folders
                        .map(|m| m as usize)
                        .unwrap_or(count.saturating_sub(1));
                    if max == 0 || max >= count {
                        return Err(UpstreamError::Protocol(format!(
                            "Ping status 6 (too many folders) with MaxFolders {max}"
                        )));
                    }
                    lock(&self.ping).max_folders = Some(max);
                }
                7 => {
                    // The hierarchy changed: the gateway lists mailboxes again.
                    return Ok(vec![String::new()]);
                }
                8 => return Err(UpstreamError::Unavailable("Ping status 8".into())),
                s => return Err(UpstreamError::Protocol(format!("Ping status {s}"))),
            }
        }
    }

    async fn fetch(&self, mailbox: &str, uid: &str) -> Result<Vec<u8>, UpstreamError> {
        let request = Fetch {
            collection_id: mailbox.to_owned(),
            server_id: uid.to_owned(),
        };
        let root = self
            .call("ItemOperations", &request.to_element(), COMMAND_TIMEOUT)
            .await?
            .ok_or_else(|| UpstreamError::Protocol("ItemOperations: empty response".into()))?;
        let response = FetchResponse::from_element(&root).map_err(protocol)?;
        let status = match (response.status, response.fetch_status) {
            (1, Some(s)) => s,
            (s, _) => s,
        };
        let text = format!("ItemOperations Fetch {mailbox}/{uid}: status {status}");
        match status {
            1 => response
                .data
                .ok_or_else(|| UpstreamError::Protocol(format!("{text} without Body Data"))),
            6 | 15 => Err(UpstreamError::NotFound(text)),
            3 | 7 => Err(UpstreamError::Unavailable(text)),
            _ => Err(UpstreamError::Refused(text)),
        }
    }

    /// Sends client commands for one folder with its current key, without fetching changes.
    async fn write_sync(
        &self,
        mailbox: &str,
        commands: Vec<ClientCommand>,
        deletes_as_moves: Option<bool>,
    ) -> Result<(), UpstreamError> {
        let cell = self.folder_key(mailbox);
        let mut state = cell.lock().await;
        let key = state.current.clone().ok_or_else(|| {
            UpstreamError::Unavailable(format!(
                "folder {mailbox} has not been synced yet, so its sync key is unknown"
            ))
        })?;
        let count = commands.len();
        let outcome = self
            .sync_request(SyncCollection {
                sync_key: key,
                collection_id: mailbox.to_owned(),
                get_changes: false,
                window_size: None,
                deletes_as_moves,
                options: None,
                commands,
            })
            .await?;
        let responses: Vec<ClientResponse> = match outcome {
            SyncOutcome::Empty => Vec::new(),
            SyncOutcome::Done(c) => {
                if let Some(k) = c.sync_key {
                    state.current = Some(k);
                }
                c.responses
            }
            SyncOutcome::Status(3) => {
                state.current = None;
                return Err(UpstreamError::Unavailable(format!(
                    "the server no longer accepts the sync key of folder {mailbox}; it is \
                     re-synced from scratch on the next sync"
                )));
            }
            SyncOutcome::Status(s) => return Err(sync_error(s)),
        };
        let failed: Vec<&ClientResponse> = responses.iter().filter(|r| r.status != 1).collect();
        match failed.first() {
            None => Ok(()),
            Some(first) => {
                let list: Vec<String> = failed
                    .iter()
                    .map(|r| {
                        format!(
                            "{} {}: {}",
                            r.kind,
                            r.server_id.as_deref().unwrap_or("?"),
                            r.status
                        )
                    })
                    .collect();
                let text = format!("Sync on {mailbox}: {}", list.join(", "));
                if failed.len() == count && first.status == 8 {
                    Err(UpstreamError::NotFound(text))
                } else {
                    Err(UpstreamError::Refused(text))
                }
            }
        }
    }

    async fn set_keywords(
        &self,
        mailbox: &str,
        uids: &[String],
        add: &BTreeSet<String>,
        remove: &BTreeSet<String>,
    ) -> Result<WriteOutcome, UpstreamError> {
        let unsupported: Vec<&String> = add
            .iter()
            .chain(remove)
            .filter(|k| *k != "$seen" && *k != "$flagged")
            .collect();
        if !unsupported.is_empty() {
            return Err(UpstreamError::Unsupported(format!(
                "ActiveSync can set only $seen and $flagged, not {unsupported:?}"
            )));
        }
        let mut data = Vec::new();
        if add.contains("$seen") {
            data.push(Element::with_text(em::Read, "1"));
        } else if remove.contains("$seen") {
            data.push(Element::with_text(em::Read, "0"));
        }
        if add.contains("$flagged") {
            data.push(
                Element::new(em::Flag)
                    .child(Element::with_text(em::FlagStatus, "2"))
                    .child(Element::with_text(em::FlagType, "Flag for follow up")),
            );
        } else if remove.contains("$flagged") {
            // An empty Flag clears the flag (MS-ASEMAIL 2.2.2.27).
            data.push(Element::new(em::Flag));
        }
        if data.is_empty() || uids.is_empty() {
            return Ok(WriteOutcome::Done);
        }
        let commands = uids
            .iter()
            .map(|uid| ClientCommand::Change {
                server_id: uid.clone(),
                data: data.clone(),
            })
            .collect();
        self.write_sync(mailbox, commands, None).await?;
        Ok(WriteOutcome::Done)
    }

    async fn move_items(
        &self,
        from: &str,
        uids: &[String],
        to: &str,
    ) -> Result<WriteOutcome, UpstreamError> {
        if uids.is_empty() {
            return Ok(WriteOutcome::Moved(Vec::new()));
        }
        let request = MoveItems {
            moves: uids
                .iter()
                .map(|uid| MoveItem {
                    src_msg_id: uid.clone(),
                    src_fld_id: from.to_owned(),
                    dst_fld_id: to.to_owned(),
                })
                .collect(),
        };
        let root = self
            .call("MoveItems", &request.to_element(), COMMAND_TIMEOUT)
            .await?
            .ok_or_else(|| UpstreamError::Protocol("MoveItems: empty response".into()))?;
        let response = MoveItemsResponse::from_element(&root).map_err(protocol)?;
        let mut moved = Vec::new();
        let mut failed = Vec::new();
        for uid in uids {
            match response.results.iter().find(|r| &r.src_msg_id == uid) {
                Some(r) if r.status == 3 => moved.push((uid.clone(), r.dst_msg_id.clone())),
                Some(r) => failed.push(format!("{uid}: status {}", r.status)),
                None => failed.push(format!("{uid}: no answer")),
            }
        }
        if failed.is_empty() {
            return Ok(WriteOutcome::Moved(moved));
        }
        let text = format!(
            "MoveItems {from} → {to}: {} (moved: {moved:?})",
            failed.join(", ")
        );
        if moved.is_empty()
            && response
                .results
                .iter()
                .all(|r| r.status == 1 || r.status == 2)
        {
            Err(UpstreamError::NotFound(text))
        } else {
            Err(UpstreamError::Refused(text))
        }
    }

    /// Runs a hierarchy write with the current hierarchy key, once more after a FolderSync if
    /// the server says the key is stale (status 9).
    async fn folder_write<R>(
        &self,
        build: impl Fn(String) -> (&'static str, Element),
        parse: impl Fn(&Element) -> Result<(u32, Option<String>, R), ParseError>,
    ) -> Result<(R, Hierarchy), UpstreamError>
    where
        R: Send,
    {
        let mut slot = self.hierarchy.lock().await;
        for attempt in 0..2 {
            if slot.is_none() || attempt > 0 {
                self.refresh_hierarchy(&mut slot).await?;
            }
            let key = slot
                .as_ref()
                .map_or_else(|| "0".to_owned(), |h| h.sync_key.clone());
            let (cmd, body) = build(key);
            let root = self
                .call(cmd, &body, COMMAND_TIMEOUT)
                .await?
                .ok_or_else(|| UpstreamError::Protocol(format!("{cmd}: empty response")))?;
            let (status, new_key, result) = parse(&root).map_err(protocol)?;
            let text = format!("{cmd} status {status}");
            match status {
                1 => {
                    let folders = slot.as_ref().map(|h| h.folders.clone()).unwrap_or_default();
                    let old = slot.take().map(|h| h.sync_key).unwrap_or_default();
                    let sync_key = new_key.unwrap_or(old);
                    *slot = Some(Hierarchy {
                        sync_key: sync_key.clone(),
                        folders: folders.clone(),
                    });
                    return Ok((result, Hierarchy { sync_key, folders }));
                }
                9 if attempt == 0 => continue,
                2 => return Err(UpstreamError::Refused(format!("{text}: the name exists"))),
                3 => {
                    return Err(UpstreamError::Refused(format!(
                        "{text}: a special folder cannot be changed"
                    )));
                }
                4 | 5 => return Err(UpstreamError::NotFound(text)),
                6 => return Err(UpstreamError::Unavailable(text)),
                _ => return Err(UpstreamError::Protocol(text)),
            }
        }
        Err(UpstreamError::Protocol(
            "folder write: stale sync key twice".into(),
        ))
    }

    /// Replaces the cached hierarchy's folder list after a successful folder write.
    async fn store_folders(&self, folders: Vec<Folder>) {
        if let Some(h) = self.hierarchy.lock().await.as_mut() {
            h.folders = folders;
        }
    }

    async fn create_mailbox(
        &self,
        parent: Option<&str>,
        name: &str,
    ) -> Result<WriteOutcome, UpstreamError> {
        let parent_id = parent.unwrap_or("0").to_owned();
        let (server_id, mut hierarchy) = self
            .folder_write(
                |sync_key| {
                    let request = FolderCreate {
                        sync_key,
                        parent_id: parent_id.clone(),
                        display_name: name.to_owned(),
                        folder_type: FolderType::USER_MAIL,
                    };
                    ("FolderCreate", request.to_element())
                },
                |root| {
                    let r = FolderCreateResponse::from_element(root)?;
                    Ok((r.status, r.sync_key, r.server_id))
                },
            )
            .await?;
        let server_id = server_id
            .ok_or_else(|| UpstreamError::Protocol("FolderCreate without ServerId".into()))?;
        let folder = Folder {
            server_id,
            parent_id,
            display_name: name.to_owned(),
            folder_type: FolderType::USER_MAIL,
        };
        hierarchy.folders.push(folder.clone());
        let mailbox = remote_mailbox(&folder, &hierarchy.folders);
        self.store_folders(hierarchy.folders).await;
        Ok(WriteOutcome::Mailbox(mailbox))
    }

    async fn rename_mailbox(
        &self,
        remote_id: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<WriteOutcome, UpstreamError> {
        let parent_id = parent.unwrap_or("0").to_owned();
        let ((), mut hierarchy) = self
            .folder_write(
                |sync_key| {
                    let request = FolderUpdate {
                        sync_key,
                        server_id: remote_id.to_owned(),
                        parent_id: parent_id.clone(),
                        display_name: name.to_owned(),
                    };
                    ("FolderUpdate", request.to_element())
                },
                |root| {
                    let r = FolderUpdateResponse::from_element(root, false)?;
                    Ok((r.status, r.sync_key, ()))
                },
            )
            .await?;
        let mut renamed = None;
        if let Some(f) = hierarchy
            .folders
            .iter_mut()
            .find(|f| f.server_id == remote_id)
        {
            f.parent_id = parent_id.clone();
            f.display_name = name.to_owned();
            renamed = Some(f.clone());
        }
        let folder = renamed.unwrap_or(Folder {
            server_id: remote_id.to_owned(),
            parent_id,
            display_name: name.to_owned(),
            folder_type: FolderType::USER_MAIL,
        });
        let mailbox = remote_mailbox(&folder, &hierarchy.folders);
        self.store_folders(hierarchy.folders).await;
        Ok(WriteOutcome::Mailbox(mailbox))
    }

    async fn delete_mailbox(&self, remote_id: &str) -> Result<WriteOutcome, UpstreamError> {
        let ((), mut hierarchy) = self
            .folder_write(
                |sync_key| {
                    let request = FolderDelete {
                        sync_key,
                        server_id: remote_id.to_owned(),
                    };
                    ("FolderDelete", request.to_element())
                },
                |root| {
                    let r = FolderUpdateResponse::from_element(root, true)?;
                    Ok((r.status, r.sync_key, ()))
                },
            )
            .await?;
        hierarchy.folders.retain(|f| f.server_id != remote_id);
        self.store_folders(hierarchy.folders).await;
        lock(&self.keys).remove(remote_id);
        Ok(WriteOutcome::Done)
    }

    async fn send(
        &self,
        raw: &[u8],
        envelope: &upstream::Envelope,
        save_in_sent: bool,
    ) -> Result<WriteOutcome, UpstreamError> {
        check_envelope(raw, envelope)?;
        self.send_mail(raw, save_in_sent).await
    }

    /// SendMail: the message as opaque MIME.
    async fn send_mail(
        &self,
        raw: &[u8],
        save_in_sent: bool,
    ) -> Result<WriteOutcome, UpstreamError> {
        let request = SendMail {
            client_id: client_id(),
            save_in_sent_items: save_in_sent,
            mime: raw.to_vec(),
        };
        match self
            .call("SendMail", &request.to_element(), COMMAND_TIMEOUT)
            .await?
        {
            None => Ok(WriteOutcome::Done),
            Some(root) => {
                let response = SendMailResponse::from_element(&root).map_err(protocol)?;
                if response.status == 1 {
                    Ok(WriteOutcome::Done)
                } else {
                    Err(UpstreamError::Refused(format!(
                        "SendMail status {}",
                        response.status
                    )))
                }
            }
        }
    }

    /// SmartReply / SmartForward with ReplaceMime: the message as given, sent as an answer to
    /// (or a forward of) the item `source` names, which lets the server mark that item. When
    /// the server's refusal proves it sent nothing ([`smart_not_sent`]), SendMail sends the
    /// message instead; any other failure is reported as it is, never sent again.
    async fn send_about_source(
        &self,
        op: WriteOp,
        source: SendSource,
    ) -> Result<WriteOutcome, UpstreamError> {
        let WriteOp::Send {
            raw,
            envelope,
            save_in_sent,
        } = op
        else {
            return self.apply_op(op).await;
        };
        check_envelope(&raw, &envelope)?;
        self.ready().await?;
        let kind = match source.kind {
            SourceKind::Reply => SmartKind::Reply,
            SourceKind::Forward => SmartKind::Forward,
        };
        let cmd = kind.command();
        let request = SmartSend {
            kind,
            client_id: client_id(),
            folder_id: source.mailbox.clone(),
            item_id: source.uid.clone(),
            save_in_sent_items: save_in_sent,
            replace_mime: true,
            mime: raw,
        };
        let answer = self
            .client
            .command(cmd, Some(&request.to_element()), COMMAND_TIMEOUT)
            .await;
        match answer {
            Ok(None) => {
                tracing::info!(cmd, folder = %source.mailbox, item = %source.uid, "EAS message sent");
                Ok(WriteOutcome::Done)
            }
            Ok(Some(root)) => {
                let response = SmartSendResponse::from_element(kind, &root).map_err(protocol)?;
                if response.status == 1 {
                    tracing::info!(cmd, folder = %source.mailbox, item = %source.uid, "EAS message sent");
                    Ok(WriteOutcome::Done)
                } else {
                    Err(UpstreamError::Refused(format!(
                        "{cmd} status {}",
                        response.status
                    )))
                }
            }
            Err(e) if smart_not_sent(&e) => {
                tracing::info!(cmd, error = %e, "EAS server sent nothing; sending with SendMail instead");
                self.send_mail(&request.mime, save_in_sent).await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn apply_op(&self, op: WriteOp) -> Result<WriteOutcome, UpstreamError> {
        self.ready().await?;
        match op {
            WriteOp::SetKeywords {
                mailbox,
                uids,
                add,
                remove,
            } => self.set_keywords(&mailbox, &uids, &add, &remove).await,
            WriteOp::Move { from, uids, to } => self.move_items(&from, &uids, &to).await,
            WriteOp::Delete { mailbox, uids } => {
                if uids.is_empty() {
                    return Ok(WriteOutcome::Done);
                }
                let commands = uids
                    .into_iter()
                    .map(|server_id| ClientCommand::Delete { server_id })
                    .collect();
                // DeletesAsMoves 0: gone for good, not moved to Deleted Items.
                self.write_sync(&mailbox, commands, Some(false)).await?;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Copy { .. } => Err(UpstreamError::Unsupported(
                "ActiveSync has no command to copy a message".into(),
            )),
            WriteOp::Append { .. } => Err(UpstreamError::Unsupported(
                "ActiveSync 14.1 cannot store a new message in a folder (no Sync Add for \
                 email)"
                    .into(),
            )),
            WriteOp::CreateMailbox { parent, name } => {
                self.create_mailbox(parent.as_deref(), &name).await
            }
            WriteOp::RenameMailbox {
                remote_id,
                parent,
                name,
            } => {
                self.rename_mailbox(&remote_id, parent.as_deref(), &name)
                    .await
            }
            WriteOp::DeleteMailbox { remote_id } => self.delete_mailbox(&remote_id).await,
            WriteOp::Subscribe {
                subscribed: true, ..
            } => Ok(WriteOutcome::Done),
            WriteOp::Subscribe {
                subscribed: false, ..
            } => Err(UpstreamError::Unsupported(
                "ActiveSync folders cannot be unsubscribed".into(),
            )),
            WriteOp::Send {
                raw,
                envelope,
                save_in_sent,
            } => self.send(&raw, &envelope, save_in_sent).await,
        }
    }
}

/// A Settings or Oof status other than 1 as the contract's error (MS-ASCMD 2.2.3.177.15).
fn settings_error(what: &str, status: u32) -> UpstreamError {
    let text = format!(
        "{what} status {status} ({})",
        settings_status_meaning(status)
    );
    match status {
        4 => UpstreamError::Unavailable(text),
        3 | 5 | 6 | 7 => UpstreamError::Refused(text),
        _ => UpstreamError::Protocol(text),
    }
}

/// Out of office (Settings Oof, MS-ASCMD 2.2.3.122).
impl EasAccount {
    /// One Settings Oof round trip, checked down to the Oof status.
    async fn settings_oof(
        &self,
        request: &SettingsOof,
    ) -> Result<SettingsOofResponse, UpstreamError> {
        self.ready().await?;
        let root = match self
            .client
            .command("Settings", Some(&request.to_element()), COMMAND_TIMEOUT)
            .await
        {
            Ok(Some(root)) => root,
            Ok(None) => {
                return Err(UpstreamError::Protocol("Settings: empty response".into()));
            }
            Err(EasError::Http { status: 501, .. }) => {
                return Err(UpstreamError::Unsupported(
                    "the EAS server does not implement the Settings command (HTTP 501)".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        let response = SettingsOofResponse::from_element(&root).map_err(protocol)?;
        if response.status != 1 {
            return Err(settings_error("Settings", response.status));
        }
        match &response.oof {
            None => Err(UpstreamError::Unsupported(
                "the EAS server answers Settings without an Oof element: it offers no \
                 out-of-office reply for this account"
                    .into(),
            )),
            Some(oof) => match oof.status {
                Some(s) if s != 1 => Err(settings_error("Settings Oof", s)),
                _ => Ok(response),
            },
        }
    }

    /// The out-of-office setting (Settings Oof Get, messages as text).
    /// `Unsupported` when the server does not offer it.
    pub async fn oof(&self) -> Result<OofSettings, UpstreamError> {
        let response = self
            .settings_oof(&SettingsOof::Get(OofBodyType::Text))
            .await?;
        response
            .oof
            .and_then(|o| o.settings)
            .ok_or_else(|| UpstreamError::Protocol("Settings Oof Get answered without Get".into()))
    }

    /// Replaces the out-of-office setting (Settings Oof Set).
    pub async fn set_oof(&self, settings: &OofSettings) -> Result<(), UpstreamError> {
        self.settings_oof(&SettingsOof::Set(settings.clone()))
            .await
            .map(|_| ())
    }

    /// Whether the server offers out of office for this account: an Oof Get that succeeds.
    /// Other failures (credentials, network) are errors, not a "no".
    pub async fn supports_oof(&self) -> Result<bool, UpstreamError> {
        match self.oof().await {
            Ok(_) => Ok(true),
            Err(UpstreamError::Unsupported(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Upstream for EasAccount {
    fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>> {
        Box::pin(self.mail_folders())
    }

    fn sync_mailbox<'a>(
        &'a self,
        mailbox: &'a RemoteMailbox,
        cursor: Option<&'a [u8]>,
        sink: &'a mut dyn SyncSink,
    ) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(self.sync_pass(mailbox, cursor, sink))
    }

    fn wait_for_changes<'a>(
        &'a self,
        mailboxes: &'a [RemoteMailbox],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        Box::pin(self.ping(mailboxes, timeout))
    }

    fn fetch_message<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
        Box::pin(self.fetch(mailbox, uid))
    }

    fn apply(&self, op: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
        Box::pin(self.apply_op(op))
    }

    fn send_about(
        &self,
        op: WriteOp,
        source: SendSource,
    ) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
        Box::pin(self.send_about_source(op, source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_foreign_bytes() {
        assert_eq!(decode_cursor(&encode_cursor("5-9")).as_deref(), Some("5-9"));
        assert_eq!(decode_cursor(b"imap 1 2 3"), None);
        assert_eq!(decode_cursor(b"eas1 "), None);
    }

    #[test]
    fn roles_come_from_types_and_top_level_names() {
        let f = |name: &str, t: u32, parent: &str| Folder {
            server_id: name.into(),
            parent_id: parent.into(),
            display_name: name.into(),
            folder_type: FolderType(t),
        };
        assert_eq!(role(&f("INBOX", 2, "0")), Some(MailboxRole::Inbox));
        assert_eq!(role(&f("Deleted Items", 4, "0")), Some(MailboxRole::Trash));
        assert_eq!(role(&f("Junk", 12, "0")), Some(MailboxRole::Junk));
        assert_eq!(role(&f("Junk", 12, "x")), None);
        assert_eq!(role(&f("Outbox", 6, "0")), None);
        assert!(!FolderType(8).is_mail());
    }

    use crate::fake_server::{FakeServer, Reply};
    use wbxml::tag::{airsync as s, composemail as cm, folderhierarchy as fh};

    fn account_at(server: &FakeServer) -> EasAccount {
        EasAccount::new(
            EasEndpoint {
                url: server.url.clone(),
                username: "alice".into(),
                password: upstream::Secret::new("pw".to_owned()),
                device_id: "UnitTestDevice".into(),
                device_type: "JmapGatewayTest".into(),
                extra_ca_pem: None,
            },
            EasSettings::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn basic_by_default_and_bearer_reads_a_fresh_token_per_request() {
        let server = FakeServer::start(vec![folder_sync(), folder_sync()]).await;
        account_at(&server).list_mailboxes().await.unwrap();
        // "alice:pw" in base64.
        assert_eq!(
            server.received()[0].authorization.as_deref(),
            Some("Basic YWxpY2U6cHc=")
        );

        let server = FakeServer::start(vec![folder_sync(), folder_sync()]).await;
        let n = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = n.clone();
        let provider = upstream::SecretProvider::new(move || {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(upstream::Secret::new(format!("token-{i}")))
        });
        let mut a = account_at(&server);
        a.client = a.client.with_auth(EasAuth::Bearer, Some(provider));
        a.list_mailboxes().await.unwrap();
        let request = Element::new(fh::FolderSync).child(Element::with_text(fh::SyncKey, "0"));
        a.client
            .command("FolderSync", Some(&request), Duration::from_secs(10))
            .await
            .unwrap();
        let auth: Vec<String> = server
            .received()
            .into_iter()
            .map(|r| r.authorization.unwrap())
            .collect();
        assert_eq!(auth.len(), 2, "{auth:?}");
        assert!(
            auth.iter().all(|a| a.starts_with("Bearer token-")),
            "{auth:?}"
        );
        assert_ne!(auth[0], auth[1], "the token is read again for each request");

        let failing = upstream::SecretProvider::new(|| Err("token file missing".into()));
        let server = FakeServer::start(vec![folder_sync()]).await;
        let mut a = account_at(&server);
        a.client = a.client.with_auth(EasAuth::Bearer, Some(failing));
        let e = a.list_mailboxes().await.unwrap_err();
        assert!(matches!(e, UpstreamError::AuthFailed(_)), "{e:?}");
        assert!(server.received().is_empty());
    }

    /// A FolderSync answer listing one mail folder, `inbox`.
    fn folder_sync() -> Reply {
        Reply::Wbxml(Some(
            Element::new(fh::FolderSync)
                .child(Element::with_text(fh::Status, "1"))
                .child(Element::with_text(fh::SyncKey, "1"))
                .child(
                    Element::new(fh::Changes)
                        .child(Element::with_text(fh::Count, "1"))
                        .child(
                            Element::new(fh::Add)
                                .child(Element::with_text(fh::ServerId, "inbox"))
                                .child(Element::with_text(fh::ParentId, "0"))
                                .child(Element::with_text(fh::DisplayName, "Inbox"))
                                .child(Element::with_text(fh::Type, "2")),
                        ),
                ),
        ))
    }

    /// A Sync answer for collection `inbox` with this status (and key).
    fn sync_answer(status: u32, key: Option<&str>) -> Reply {
        let mut c = Element::new(s::Collection);
        if let Some(k) = key {
            c = c.child(Element::with_text(s::SyncKey, k));
        }
        c = c
            .child(Element::with_text(s::CollectionId, "inbox"))
            .child(Element::with_text(s::Status, status.to_string()));
        Reply::Wbxml(Some(
            Element::new(s::Sync).child(Element::new(s::Collections).child(c)),
        ))
    }

    /// A Sync answer with only a request-level status.
    fn sync_request_status(status: u32) -> Reply {
        Reply::Wbxml(Some(
            Element::new(s::Sync).child(Element::with_text(s::Status, status.to_string())),
        ))
    }

    fn inbox() -> RemoteMailbox {
        RemoteMailbox {
            remote_id: "inbox".into(),
            name: "Inbox".into(),
            parent: None,
            role: Some(MailboxRole::Inbox),
            subscribed: true,
            selectable: true,
        }
    }

    #[derive(Default)]
    struct Batches(Vec<SyncBatch>);

    impl SyncSink for Batches {
        fn apply(&mut self, batch: SyncBatch) -> BoxFuture<'_, Result<(), UpstreamError>> {
            self.0.push(batch);
            Box::pin(async { Ok(()) })
        }
    }

    /// Status 13 (incomplete request), for the collection or for the whole request: the
    /// same full request goes out once more, and its answer counts.
    #[tokio::test]
    async fn a_sync_answered_13_is_sent_again_once_in_full() {
        for first in [sync_answer(13, None), sync_request_status(13)] {
            let server =
                FakeServer::start(vec![folder_sync(), first, sync_answer(1, Some("6"))]).await;
            let a = account_at(&server);
            let mut sink = Batches::default();
            a.sync_mailbox(&inbox(), Some(&encode_cursor("5")), &mut sink)
                .await
                .unwrap();
            assert_eq!(server.commands(), ["FolderSync", "Sync", "Sync"]);
            let got = server.received();
            assert_eq!(got[1].body, got[2].body, "the very same request again");
            let request = got[1].element();
            let collection = request.find_path(&[s::Collections, s::Collection]).unwrap();
            assert_eq!(collection.child_text(s::SyncKey), Some("5"));
            assert_eq!(collection.child_text(s::CollectionId), Some("inbox"));
            assert!(collection.find(s::Options).is_some(), "the full request");
            assert_eq!(sink.0.len(), 1, "{:?}", sink.0);
            assert_eq!(sink.0[0].cursor, encode_cursor("6"));
            assert!(sink.0[0].complete);
        }
    }

    /// A second status 13 in a row is an error naming it; nothing is sent a third time.
    #[tokio::test]
    async fn a_second_13_is_an_error_not_a_loop() {
        let server = FakeServer::start(vec![
            folder_sync(),
            sync_answer(13, None),
            sync_answer(13, None),
            sync_answer(1, Some("6")),
        ])
        .await;
        let a = account_at(&server);
        let mut sink = Batches::default();
        let err = a
            .sync_mailbox(&inbox(), Some(&encode_cursor("5")), &mut sink)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, UpstreamError::Protocol(t) if t.contains("Sync status 13 (incomplete request)")),
            "{err:?}"
        );
        assert_eq!(server.commands(), ["FolderSync", "Sync", "Sync"]);
        assert!(sink.0.is_empty());
    }

    const REPLY: &[u8] = b"From: alice@example.test\r\nTo: bob@example.test\r\n\
        Subject: Re: plans\r\nIn-Reply-To: <o@example.test>\r\n\r\nYes.\r\n";

    fn reply_op() -> WriteOp {
        WriteOp::Send {
            raw: REPLY.to_vec(),
            envelope: upstream::Envelope {
                mail_from: "alice@example.test".into(),
                rcpt_to: vec!["bob@example.test".into()],
            },
            save_in_sent: true,
        }
    }

    fn source(kind: SourceKind) -> SendSource {
        SendSource {
            kind,
            mailbox: "inbox".into(),
            uid: "7".into(),
        }
    }

    /// SmartReply / SmartForward carry the item as Source, ReplaceMime and the MIME as given.
    #[tokio::test]
    async fn a_reply_goes_out_as_smart_reply_with_source_and_replace_mime() {
        for (kind, cmd, root) in [
            (SourceKind::Reply, "SmartReply", cm::SmartReply),
            (SourceKind::Forward, "SmartForward", cm::SmartForward),
        ] {
            let server = FakeServer::start(vec![Reply::Wbxml(None)]).await;
            let a = account_at(&server);
            let outcome = a.send_about(reply_op(), source(kind)).await.unwrap();
            assert_eq!(outcome, WriteOutcome::Done);
            assert_eq!(server.commands(), [cmd]);
            let request = server.received()[0].element();
            assert_eq!(request.tag, root);
            assert_eq!(
                request
                    .find_path(&[cm::Source, cm::FolderId])
                    .and_then(Element::text_value),
                Some("inbox")
            );
            assert_eq!(
                request
                    .find_path(&[cm::Source, cm::ItemId])
                    .and_then(Element::text_value),
                Some("7")
            );
            assert!(request.find(cm::ReplaceMime).is_some());
            assert!(request.find(cm::SaveInSentItems).is_some());
            assert!(
                request
                    .child_text(cm::ClientId)
                    .is_some_and(|c| !c.is_empty())
            );
            assert_eq!(
                request.find(cm::Mime).and_then(Element::bytes_value),
                Some(REPLY)
            );
        }
    }

    /// Status 150 (the source is unknown) proves nothing was sent: SendMail sends it instead,
    /// under a new ClientId.
    #[tokio::test]
    async fn an_unknown_source_falls_back_to_send_mail() {
        let not_found = Element::new(cm::SmartReply).child(Element::with_text(cm::Status, "150"));
        let server =
            FakeServer::start(vec![Reply::Wbxml(Some(not_found)), Reply::Wbxml(None)]).await;
        let a = account_at(&server);
        let outcome = a
            .send_about(reply_op(), source(SourceKind::Reply))
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Done);
        assert_eq!(server.commands(), ["SmartReply", "SendMail"]);
        let got = server.received();
        let (smart, send) = (got[0].element(), got[1].element());
        assert_eq!(send.tag, cm::SendMail);
        assert_eq!(
            send.find(cm::Mime).and_then(Element::bytes_value),
            Some(REPLY)
        );
        assert!(send.find(cm::SaveInSentItems).is_some());
        assert_ne!(
            smart.child_text(cm::ClientId),
            send.child_text(cm::ClientId)
        );
    }

    /// A failure that may have come after the message went out (a server error, a dropped
    /// connection) is reported and nothing is sent again, by SmartReply or SendMail.
    #[tokio::test]
    async fn a_send_that_may_have_happened_is_never_sent_again() {
        for failure in [Reply::Http(500), Reply::Drop] {
            let server = FakeServer::start(vec![
                failure.clone(),
                Reply::Wbxml(None),
                Reply::Wbxml(None),
            ])
            .await;
            let a = account_at(&server);
            let err = a
                .send_about(reply_op(), source(SourceKind::Reply))
                .await
                .unwrap_err();
            assert!(
                matches!(err, UpstreamError::Unavailable(_)),
                "{failure:?}: {err:?}"
            );
            assert_eq!(server.commands(), ["SmartReply"], "{failure:?}");
        }
        // The same for SendMail.
        let server = FakeServer::start(vec![Reply::Drop, Reply::Wbxml(None)]).await;
        let a = account_at(&server);
        let err = a.apply(reply_op()).await.unwrap_err();
        assert!(matches!(err, UpstreamError::Unavailable(_)), "{err:?}");
        assert_eq!(server.commands(), ["SendMail"]);
    }
}

//! An in-memory upstream account for tests of write-through: mailboxes with a hierarchy,
//! messages with uids and keywords, every [`WriteOp`], and helpers that change "the server"
//! behind the gateway's back (new mail, expunges, flag changes, a UIDVALIDITY reset).
//!
//! Sync is a diff: the cursor holds the mailbox's uid validity and every uid last reported
//! with its keywords, so each pass reports exactly the Upserts, Keywords changes and
//! Removals since the cursor, in batches of [`FakeUpstream::set_batch_size`] changes, each
//! batch carrying the cursor that resumes after it. A validity change makes the next pass
//! a `reset` that re-announces everything.
#![allow(clippy::unwrap_used, dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use upstream::{
    BoxFuture, Envelope, MailboxRole, MessageChange, RemoteMailbox, RemoteMessage, SyncBatch,
    SyncSink, Upstream, UpstreamError, WriteOp, WriteOutcome,
};

use super::testing::Fixture;
use crate::{AccountSync, SyncOptions};

/// The hierarchy separator of the fake's remote ids (`Parent/Child`).
pub const SEPARATOR: char = '/';

/// One message as the fake server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMessage {
    pub uid: u32,
    pub raw: Vec<u8>,
    pub keywords: BTreeSet<String>,
    pub received_at: i64,
}

#[derive(Debug, Clone)]
struct FakeMailbox {
    /// Survives renames (like RFC 8474 MAILBOXID).
    identity: String,
    remote_id: String,
    name: String,
    parent: Option<String>,
    role: Option<MailboxRole>,
    subscribed: bool,
    selectable: bool,
    validity: u32,
    uid_next: u32,
    messages: BTreeMap<u32, FakeMessage>,
}

impl FakeMailbox {
    fn remote(&self) -> RemoteMailbox {
        RemoteMailbox {
            remote_id: self.remote_id.clone(),
            name: self.name.clone(),
            parent: self.parent.clone(),
            role: self.role,
            subscribed: self.subscribed,
            selectable: self.selectable,
        }
    }
}

#[derive(Debug, Default)]
struct Server {
    mailboxes: Vec<FakeMailbox>,
    next_identity: u32,
    /// Remote ids changed behind the gateway's back since the last wait (`""`: the list).
    pending: BTreeSet<String>,
    ops: Vec<WriteOp>,
    sent: Vec<(Envelope, Vec<u8>)>,
    /// What the next applies do: `None` lets one through, `Some` fails it.
    fail_next: Vec<Option<UpstreamError>>,
    batch_size: usize,
    /// Append and Copy are `Unsupported`, as on EAS 14.1 (a server that cannot store a
    /// message; Send with save_in_sent still files its own Sent copy).
    cannot_store: bool,
    /// Messages are reported with a synthesised header block (From, To, Cc, Reply-To,
    /// Subject and a Date that is the arrival time), as the EAS adapter reports them.
    synthesised_headers: bool,
    /// How many times `fetch_message` was called.
    fetches: usize,
    /// Each fetch takes this long, so concurrent fetches overlap.
    fetch_delay: std::time::Duration,
    /// Fetches running now, and the most that ever ran at once.
    fetches_in_flight: usize,
    max_fetches_in_flight: usize,
}

impl Server {
    fn find(&self, remote_id: &str) -> Result<usize, UpstreamError> {
        self.mailboxes
            .iter()
            .position(|m| m.remote_id == remote_id)
            .ok_or_else(|| UpstreamError::NotFound(format!("no mailbox {remote_id}")))
    }

    fn path(parent: Option<&str>, name: &str) -> String {
        match parent {
            Some(p) => format!("{p}{SEPARATOR}{name}"),
            None => name.to_owned(),
        }
    }

    fn check_name(name: &str) -> Result<(), UpstreamError> {
        if name.is_empty() || name.contains(SEPARATOR) || name.chars().any(char::is_control) {
            return Err(UpstreamError::Refused(format!(
                "[CANNOT] Invalid mailbox name {name:?}"
            )));
        }
        Ok(())
    }

    fn add(
        &mut self,
        parent: Option<&str>,
        name: &str,
        role: Option<MailboxRole>,
        subscribed: bool,
    ) -> Result<RemoteMailbox, UpstreamError> {
        Self::check_name(name)?;
        if let Some(p) = parent {
            self.find(p)?;
        }
        let remote_id = Self::path(parent, name);
        if self.mailboxes.iter().any(|m| m.remote_id == remote_id) {
            return Err(UpstreamError::Refused(format!(
                "[ALREADYEXISTS] Mailbox already exists: {remote_id}"
            )));
        }
        self.next_identity += 1;
        let m = FakeMailbox {
            identity: format!("fake-mbx-{}", self.next_identity),
            remote_id,
            name: name.to_owned(),
            parent: parent.map(str::to_owned),
            role,
            subscribed,
            selectable: true,
            validity: 1,
            uid_next: 1,
            messages: BTreeMap::new(),
        };
        let remote = m.remote();
        self.mailboxes.push(m);
        Ok(remote)
    }

    fn append(
        &mut self,
        mailbox: &str,
        raw: Vec<u8>,
        keywords: BTreeSet<String>,
        received_at: Option<i64>,
    ) -> Result<u32, UpstreamError> {
        let i = self.find(mailbox)?;
        let m = &mut self.mailboxes[i];
        if !m.selectable {
            return Err(UpstreamError::Refused(format!(
                "[CANNOT] {mailbox} cannot hold messages"
            )));
        }
        let uid = m.uid_next;
        m.uid_next += 1;
        m.messages.insert(
            uid,
            FakeMessage {
                uid,
                raw,
                keywords: keywords.iter().map(|k| k.to_ascii_lowercase()).collect(),
                received_at: received_at.unwrap_or_else(now),
            },
        );
        Ok(uid)
    }

    fn take(&mut self, mailbox: &str, uids: &[String]) -> Result<Vec<FakeMessage>, UpstreamError> {
        let i = self.find(mailbox)?;
        let m = &mut self.mailboxes[i];
        Ok(uids
            .iter()
            .filter_map(|u| u.parse::<u32>().ok())
            .filter_map(|u| m.messages.remove(&u))
            .collect())
    }

    fn copy_into(
        &mut self,
        from: &str,
        uids: &[String],
        to: &str,
        remove: bool,
    ) -> Result<Vec<(String, Option<String>)>, UpstreamError> {
        self.find(to)?;
        let msgs = if remove {
            self.take(from, uids)?
        } else {
            let i = self.find(from)?;
            uids.iter()
                .filter_map(|u| u.parse::<u32>().ok())
                .filter_map(|u| self.mailboxes[i].messages.get(&u).cloned())
                .collect()
        };
        let mut out = Vec::new();
        for msg in msgs {
            let new = self.append(to, msg.raw, msg.keywords, Some(msg.received_at))?;
            out.push((msg.uid.to_string(), Some(new.to_string())));
        }
        Ok(out)
    }

    fn rename(
        &mut self,
        remote_id: &str,
        parent: Option<&str>,
        name: &str,
    ) -> Result<RemoteMailbox, UpstreamError> {
        Self::check_name(name)?;
        let i = self.find(remote_id)?;
        if let Some(p) = parent {
            self.find(p)?;
            if p == remote_id || p.starts_with(&format!("{remote_id}{SEPARATOR}")) {
                return Err(UpstreamError::Refused(
                    "[CANNOT] Cannot move a mailbox into itself".into(),
                ));
            }
        }
        let new_id = Self::path(parent, name);
        if new_id != remote_id && self.mailboxes.iter().any(|m| m.remote_id == new_id) {
            return Err(UpstreamError::Refused(format!(
                "[ALREADYEXISTS] Mailbox already exists: {new_id}"
            )));
        }
        let prefix = format!("{remote_id}{SEPARATOR}");
        for m in &mut self.mailboxes {
            if let Some(rest) = m.remote_id.strip_prefix(&prefix) {
                m.remote_id = format!("{new_id}{SEPARATOR}{rest}");
            }
            if let Some(p) = &m.parent {
                if p == remote_id {
                    m.parent = Some(new_id.clone());
                } else if let Some(rest) = p.strip_prefix(&prefix) {
                    m.parent = Some(format!("{new_id}{SEPARATOR}{rest}"));
                }
            }
        }
        let m = &mut self.mailboxes[i];
        m.remote_id = new_id;
        m.name = name.to_owned();
        m.parent = parent.map(str::to_owned);
        Ok(m.remote())
    }

    fn apply(&mut self, op: WriteOp) -> Result<WriteOutcome, UpstreamError> {
        self.ops.push(op.clone());
        if !self.fail_next.is_empty()
            && let Some(e) = self.fail_next.remove(0)
        {
            return Err(e);
        }
        if self.cannot_store {
            match op {
                WriteOp::Append { .. } => {
                    return Err(UpstreamError::Unsupported(
                        "this server cannot store a new message in a folder".into(),
                    ));
                }
                WriteOp::Copy { .. } => {
                    return Err(UpstreamError::Unsupported(
                        "this server has no command to copy a message".into(),
                    ));
                }
                _ => {}
            }
        }
        match op {
            WriteOp::SetKeywords {
                mailbox,
                uids,
                add,
                remove,
            } => {
                let i = self.find(&mailbox)?;
                for u in uids.iter().filter_map(|u| u.parse::<u32>().ok()) {
                    if let Some(msg) = self.mailboxes[i].messages.get_mut(&u) {
                        for k in &remove {
                            msg.keywords.remove(&k.to_ascii_lowercase());
                        }
                        msg.keywords
                            .extend(add.iter().map(|k| k.to_ascii_lowercase()));
                    }
                }
                Ok(WriteOutcome::Done)
            }
            WriteOp::Move { from, uids, to } => Ok(WriteOutcome::Moved(
                self.copy_into(&from, &uids, &to, true)?,
            )),
            WriteOp::Copy { from, uids, to } => Ok(WriteOutcome::Copied(
                self.copy_into(&from, &uids, &to, false)?,
            )),
            WriteOp::Delete { mailbox, uids } => {
                self.take(&mailbox, &uids)?;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Append {
                mailbox,
                raw,
                keywords,
                received_at,
            } => {
                let uid = self.append(&mailbox, raw, keywords, received_at)?;
                Ok(WriteOutcome::Appended(Some(uid.to_string())))
            }
            WriteOp::CreateMailbox { parent, name } => Ok(WriteOutcome::Mailbox(self.add(
                parent.as_deref(),
                &name,
                None,
                false,
            )?)),
            WriteOp::RenameMailbox {
                remote_id,
                parent,
                name,
            } => Ok(WriteOutcome::Mailbox(self.rename(
                &remote_id,
                parent.as_deref(),
                &name,
            )?)),
            WriteOp::DeleteMailbox { remote_id } => {
                let i = self.find(&remote_id)?;
                if self
                    .mailboxes
                    .iter()
                    .any(|m| m.parent.as_deref() == Some(remote_id.as_str()))
                {
                    return Err(UpstreamError::Refused(format!(
                        "[INUSE] Mailbox has children: {remote_id}"
                    )));
                }
                let m = self.mailboxes.remove(i);
                Ok(WriteOutcome::Mailbox(m.remote()))
            }
            WriteOp::Subscribe {
                remote_id,
                subscribed,
            } => {
                let i = self.find(&remote_id)?;
                self.mailboxes[i].subscribed = subscribed;
                Ok(WriteOutcome::Done)
            }
            WriteOp::Send {
                raw,
                envelope,
                save_in_sent,
            } => {
                if save_in_sent
                    && let Some(sent) = self
                        .mailboxes
                        .iter()
                        .find(|m| m.role == Some(MailboxRole::Sent))
                        .map(|m| m.remote_id.clone())
                {
                    self.append(
                        &sent,
                        raw.clone(),
                        ["$seen".to_owned()].into_iter().collect(),
                        None,
                    )?;
                }
                self.sent.push((envelope, raw));
                Ok(WriteOutcome::Done)
            }
        }
    }
}

use upstream::civil::unix_now as now;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fingerprint of a raw message: a digest of all of it.
pub fn fingerprint(raw: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, raw);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("fake:{hex}")
}

/// The header section of a raw message, ending with the empty line.
fn header_block(raw: &[u8]) -> Vec<u8> {
    for sep in [&b"\r\n\r\n"[..], &b"\n\n"[..]] {
        if let Some(i) = raw.windows(sep.len()).position(|w| w == sep) {
            return raw[..i + sep.len()].to_vec();
        }
    }
    let mut h = raw.to_vec();
    h.extend_from_slice(b"\r\n\r\n");
    h
}

fn preview(raw: &[u8]) -> String {
    let body = &raw[header_block(raw).len().min(raw.len())..];
    String::from_utf8_lossy(body)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(256)
        .collect()
}

/// The header block an EAS-like server reports: the list-view fields only, and the arrival
/// time as Date.
fn synthesised_header_block(raw: &[u8], received_at: i64) -> Vec<u8> {
    let block = String::from_utf8_lossy(&header_block(raw)).replace("\r\n ", " ");
    let mut out = String::new();
    for line in block.split("\r\n") {
        let keep = line.split_once(':').is_some_and(|(name, _)| {
            ["from", "to", "cc", "reply-to", "subject"].contains(&name.to_lowercase().as_str())
        });
        if keep {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    let date = date_in_january_2024(received_at);
    out.push_str(&format!("Date: {date}\r\n\r\n"));
    out.into_bytes()
}

/// `epoch` as an RFC 5322 date, for times in January 2024 (where the fake's tests stay).
fn date_in_january_2024(epoch: i64) -> String {
    const JAN_1_2024: i64 = 1_704_067_200;
    let secs = (epoch - JAN_1_2024).rem_euclid(86_400);
    let day = 1 + (epoch - JAN_1_2024).div_euclid(86_400).clamp(0, 30);
    format!(
        "{day} Jan 2024 {:02}:{:02}:{:02} +0000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn remote_message(m: &FakeMessage, synthesised: bool) -> RemoteMessage {
    RemoteMessage {
        uid: m.uid.to_string(),
        fingerprint: fingerprint(&m.raw),
        thread_hint: None,
        keywords: m.keywords.clone(),
        received_at: m.received_at,
        size: m.raw.len() as u64,
        header_block: if synthesised {
            synthesised_header_block(&m.raw, m.received_at)
        } else {
            header_block(&m.raw)
        },
        preview: Some(preview(&m.raw)),
        has_attachment: false,
        headers_complete: !synthesised,
    }
}

/// The sync cursor: what the gateway was last told about one mailbox.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    validity: u32,
    known: BTreeMap<u32, BTreeSet<String>>,
}

/// An in-memory upstream account. Cheap to share (`Arc`); every method takes `&self`.
#[derive(Debug, Default)]
pub struct FakeUpstream {
    server: Mutex<Server>,
    changed: tokio::sync::Notify,
}

impl FakeUpstream {
    /// An account with INBOX, Drafts, Sent and Trash (with their roles), all subscribed.
    pub fn new() -> FakeUpstream {
        let f = FakeUpstream::empty();
        for (name, role) in [
            ("INBOX", MailboxRole::Inbox),
            ("Drafts", MailboxRole::Drafts),
            ("Sent", MailboxRole::Sent),
            ("Trash", MailboxRole::Trash),
        ] {
            f.add_mailbox(None, name, Some(role));
        }
        lock(&f.server).pending.clear();
        f
    }

    /// An account without mailboxes.
    pub fn empty() -> FakeUpstream {
        let f = FakeUpstream::default();
        lock(&f.server).batch_size = 100;
        f
    }

    /// How many changes one sync batch carries at most (default 100).
    pub fn set_batch_size(&self, n: usize) {
        lock(&self.server).batch_size = n.max(1);
    }

    fn changed(&self, s: &mut Server, what: &str) {
        s.pending.insert(what.to_owned());
        self.changed.notify_one();
    }

    /// Creates a subscribed mailbox behind the gateway's back; returns its remote id.
    pub fn add_mailbox(
        &self,
        parent: Option<&str>,
        name: &str,
        role: Option<MailboxRole>,
    ) -> String {
        let mut s = lock(&self.server);
        let m = s.add(parent, name, role, true).unwrap();
        self.changed(&mut s, "");
        m.remote_id
    }

    /// Makes a mailbox a hierarchy placeholder (or selectable again).
    pub fn set_selectable(&self, remote_id: &str, selectable: bool) {
        let mut s = lock(&self.server);
        let i = s.find(remote_id).unwrap();
        s.mailboxes[i].selectable = selectable;
        self.changed(&mut s, "");
    }

    /// New mail: appends `raw` to `mailbox` with `keywords`, received now. Returns the uid.
    pub fn deliver(&self, mailbox: &str, raw: impl AsRef<[u8]>, keywords: &[&str]) -> String {
        self.deliver_at(mailbox, raw, keywords, now())
    }

    /// New mail received at `received_at` (seconds since the epoch). Returns the uid.
    pub fn deliver_at(
        &self,
        mailbox: &str,
        raw: impl AsRef<[u8]>,
        keywords: &[&str],
        received_at: i64,
    ) -> String {
        let mut s = lock(&self.server);
        let uid = s
            .append(
                mailbox,
                raw.as_ref().to_vec(),
                keywords.iter().map(|k| (*k).to_owned()).collect(),
                Some(received_at),
            )
            .unwrap();
        self.changed(&mut s, mailbox);
        uid.to_string()
    }

    /// Another client replaced a message's keywords.
    pub fn set_keywords(&self, mailbox: &str, uid: &str, keywords: &[&str]) {
        let mut s = lock(&self.server);
        let i = s.find(mailbox).unwrap();
        let u: u32 = uid.parse().unwrap();
        if let Some(m) = s.mailboxes[i].messages.get_mut(&u) {
            m.keywords = keywords.iter().map(|k| (*k).to_owned()).collect();
        }
        self.changed(&mut s, mailbox);
    }

    /// Another client expunged a message.
    pub fn expunge(&self, mailbox: &str, uid: &str) {
        let mut s = lock(&self.server);
        s.take(mailbox, &[uid.to_owned()]).unwrap();
        self.changed(&mut s, mailbox);
    }

    /// UIDVALIDITY changed: every message of the mailbox gets a new uid.
    pub fn reset_uids(&self, mailbox: &str) {
        let mut s = lock(&self.server);
        let i = s.find(mailbox).unwrap();
        let m = &mut s.mailboxes[i];
        m.validity += 1;
        let old = std::mem::take(&mut m.messages);
        for (_, mut msg) in old {
            msg.uid = m.uid_next;
            m.uid_next += 1;
            m.messages.insert(msg.uid, msg);
        }
        self.changed(&mut s, mailbox);
    }

    /// The next `apply` fails with `e` (queued: call again for the one after).
    pub fn fail_next(&self, e: UpstreamError) {
        lock(&self.server).fail_next.push(Some(e));
    }

    /// From now on Append and Copy fail with `Unsupported`, like an EAS 14.1 server.
    pub fn cannot_store(&self) {
        lock(&self.server).cannot_store = true;
    }

    /// From now on messages are synced with a synthesised header block, as from EAS.
    pub fn synthesise_headers(&self) {
        lock(&self.server).synthesised_headers = true;
    }

    /// How many raw messages were fetched so far.
    pub fn fetches(&self) -> usize {
        lock(&self.server).fetches
    }

    /// Makes every fetch take `d`.
    pub fn set_fetch_delay(&self, d: std::time::Duration) {
        lock(&self.server).fetch_delay = d;
    }

    /// The most fetches that ever ran at the same time.
    pub fn max_fetches_in_flight(&self) -> usize {
        lock(&self.server).max_fetches_in_flight
    }

    /// The next `apply` goes through (to fail the one after with [`FakeUpstream::fail_next`]).
    pub fn pass_next(&self) {
        lock(&self.server).fail_next.push(None);
    }

    /// Every write op received, in order (failed ones included).
    pub fn ops(&self) -> Vec<WriteOp> {
        lock(&self.server).ops.clone()
    }

    /// Every message sent with `WriteOp::Send`.
    pub fn sent(&self) -> Vec<(Envelope, Vec<u8>)> {
        lock(&self.server).sent.clone()
    }

    /// The messages of a mailbox, by uid (empty for an unknown mailbox).
    pub fn messages(&self, mailbox: &str) -> Vec<FakeMessage> {
        let s = lock(&self.server);
        s.find(mailbox)
            .map(|i| s.mailboxes[i].messages.values().cloned().collect())
            .unwrap_or_default()
    }

    /// A mailbox as `list_mailboxes` would report it.
    pub fn mailbox(&self, remote_id: &str) -> Option<RemoteMailbox> {
        let s = lock(&self.server);
        s.find(remote_id).ok().map(|i| s.mailboxes[i].remote())
    }

    /// Every mailbox, in creation order.
    pub fn remote_mailboxes(&self) -> Vec<RemoteMailbox> {
        lock(&self.server)
            .mailboxes
            .iter()
            .map(FakeMailbox::remote)
            .collect()
    }

    /// The batches one sync pass reports from `cursor`.
    fn plan(
        &self,
        remote_id: &str,
        cursor: Option<&[u8]>,
    ) -> Result<Vec<SyncBatch>, UpstreamError> {
        let s = lock(&self.server);
        let i = s.find(remote_id)?;
        let m = &s.mailboxes[i];
        let old: Option<Cursor> = cursor.and_then(|c| serde_json::from_slice(c).ok());
        let reset = old.as_ref().is_some_and(|c| c.validity != m.validity);
        let mut known = match old {
            Some(c) if !reset => c.known,
            _ => BTreeMap::new(),
        };
        let mut changes = Vec::new();
        // Newest first, as an initial sync must.
        for msg in m.messages.values().rev() {
            match known.get(&msg.uid) {
                None => changes.push(MessageChange::Upsert(remote_message(
                    msg,
                    s.synthesised_headers,
                ))),
                Some(k) if *k != msg.keywords => changes.push(MessageChange::Keywords {
                    uid: msg.uid.to_string(),
                    keywords: msg.keywords.clone(),
                }),
                Some(_) => {}
            }
        }
        for uid in known.keys() {
            if !m.messages.contains_key(uid) {
                changes.push(MessageChange::Removed {
                    uid: uid.to_string(),
                });
            }
        }
        let total = changes.len() as u64;
        let size = s.batch_size.max(1);
        let mut batches = Vec::new();
        let mut done = 0u64;
        let mut rest = changes.into_iter().peekable();
        loop {
            let chunk: Vec<MessageChange> = rest.by_ref().take(size).collect();
            for c in &chunk {
                match c {
                    MessageChange::Upsert(r) => {
                        known.insert(r.uid.parse().unwrap_or(0), r.keywords.clone());
                    }
                    MessageChange::Keywords { uid, keywords } => {
                        known.insert(uid.parse().unwrap_or(0), keywords.clone());
                    }
                    MessageChange::Removed { uid } => {
                        known.remove(&uid.parse().unwrap_or(0));
                    }
                }
            }
            done += chunk.len() as u64;
            let cursor = Cursor {
                validity: m.validity,
                known: known.clone(),
            };
            let complete = rest.peek().is_none();
            batches.push(SyncBatch {
                mailbox: remote_id.to_owned(),
                reset: reset && batches.is_empty(),
                changes: chunk,
                cursor: serde_json::to_vec(&cursor).unwrap_or_default(),
                complete,
                progress: Some((done, total)),
            });
            if complete {
                return Ok(batches);
            }
        }
    }
}

impl Upstream for FakeUpstream {
    fn list_mailboxes(&self) -> BoxFuture<'_, Result<Vec<RemoteMailbox>, UpstreamError>> {
        Box::pin(async move { Ok(self.remote_mailboxes()) })
    }

    fn sync_mailbox<'a>(
        &'a self,
        mailbox: &'a RemoteMailbox,
        cursor: Option<&'a [u8]>,
        sink: &'a mut dyn SyncSink,
    ) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            for batch in self.plan(&mailbox.remote_id, cursor)? {
                sink.apply(batch).await?;
            }
            Ok(())
        })
    }

    fn wait_for_changes<'a>(
        &'a self,
        _mailboxes: &'a [RemoteMailbox],
        timeout: Duration,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                {
                    let mut s = lock(&self.server);
                    if !s.pending.is_empty() {
                        return Ok(std::mem::take(&mut s.pending).into_iter().collect());
                    }
                }
                if tokio::time::timeout_at(deadline, self.changed.notified())
                    .await
                    .is_err()
                {
                    return Ok(Vec::new());
                }
            }
        })
    }

    fn fetch_message<'a>(
        &'a self,
        mailbox: &'a str,
        uid: &'a str,
    ) -> BoxFuture<'a, Result<Vec<u8>, UpstreamError>> {
        Box::pin(async move {
            let delay = {
                let mut s = lock(&self.server);
                s.fetches_in_flight += 1;
                s.max_fetches_in_flight = s.max_fetches_in_flight.max(s.fetches_in_flight);
                s.fetch_delay
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let mut s = lock(&self.server);
            s.fetches_in_flight -= 1;
            s.fetches += 1;
            let i = s.find(mailbox)?;
            uid.parse::<u32>()
                .ok()
                .and_then(|u| s.mailboxes[i].messages.get(&u))
                .map(|m| m.raw.clone())
                .ok_or_else(|| UpstreamError::NotFound(format!("no message {uid} in {mailbox}")))
        })
    }

    fn apply(&self, op: WriteOp) -> BoxFuture<'_, Result<WriteOutcome, UpstreamError>> {
        Box::pin(async move { lock(&self.server).apply(op) })
    }

    fn mailbox_identity(&self, remote_id: &str) -> Option<String> {
        let s = lock(&self.server);
        s.find(remote_id)
            .ok()
            .map(|i| s.mailboxes[i].identity.clone())
    }

    /// Case-insensitive substring search of the raw message (Text), the part after the
    /// header block (Body) or the raw lines of the named header fields (Header).
    fn search<'a>(
        &'a self,
        mailbox: &'a str,
        query: &'a upstream::SearchQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, UpstreamError>> {
        Box::pin(async move {
            let s = lock(&self.server);
            let i = s.find(mailbox)?;
            Ok(s.mailboxes[i]
                .messages
                .values()
                .filter(|m| fake_search_matches(&m.raw, query))
                .map(|m| m.uid.to_string())
                .collect())
        })
    }
}

fn fake_search_matches(raw: &[u8], query: &upstream::SearchQuery) -> bool {
    let head = header_block(raw);
    let text = String::from_utf8_lossy(raw).to_lowercase();
    let hay = match &query.kind {
        upstream::SearchKind::Text => text,
        upstream::SearchKind::Body => {
            String::from_utf8_lossy(&raw[head.len().min(raw.len())..]).to_lowercase()
        }
        upstream::SearchKind::Header(name) => String::from_utf8_lossy(&head)
            .replace("\r\n ", " ")
            .replace("\r\n\t", " ")
            .lines()
            .filter(|l| {
                l.split_once(':')
                    .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            })
            .collect::<Vec<_>>()
            .join("\n")
            .to_lowercase(),
    };
    query.terms.iter().all(|t| hay.contains(&t.to_lowercase()))
}

/// A fixture whose account has a sync driver over `fake`, fully synced once.
pub async fn fixture_with(fake: FakeUpstream) -> (Fixture, Arc<FakeUpstream>) {
    let fake = Arc::new(fake);
    let mut fixture = Fixture::new();
    let sync = AccountSync::new(
        fixture.account.store.clone(),
        fixture.account.id,
        fake.clone(),
        SyncOptions::default(),
    );
    sync.sync_all().await.unwrap();
    fixture.account.sync = Some(sync);
    fixture.rebuild();
    (fixture, fake)
}

/// A fixture over a [`FakeUpstream::new`] account (INBOX, Drafts, Sent, Trash), synced.
pub async fn fixture_with_fake() -> (Fixture, Arc<FakeUpstream>) {
    fixture_with(FakeUpstream::new()).await
}

/// A small RFC 5322 message.
pub fn message(subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use state::{DataType, ObjectId};

    use super::*;
    use crate::{EmailRecord, email_id};

    async fn stored_email(f: &Fixture, raw: &[u8]) -> Option<EmailRecord> {
        let id = email_id(&fingerprint(raw));
        f.account
            .store
            .run(move |s| s.get(state::AccountId(1), DataType::Email, &id))
            .await
            .unwrap()
            .and_then(|b| EmailRecord::from_bytes(&b))
    }

    #[tokio::test]
    async fn a_delivered_message_is_an_email_after_sync() {
        let (f, fake) = fixture_with_fake().await;
        let sync = f.account.sync.clone().unwrap();
        let raw = message("Hello", "m1@example.com", "first body");
        let uid = fake.deliver("INBOX", &raw, &["$seen"]);
        assert_eq!(
            fake.wait_for_changes(&[], Duration::from_secs(1))
                .await
                .unwrap(),
            ["INBOX"]
        );
        sync.sync_all().await.unwrap();
        let rec = stored_email(&f, &raw).await.expect("email stored");
        let inbox = sync.mailbox_id("INBOX").unwrap();
        assert_eq!(rec.subject.as_deref(), Some("Hello"));
        assert_eq!(rec.copies(), [(inbox, uid)]);
        assert!(rec.keywords().contains("$seen"));
        assert_eq!(rec.preview, "first body");
        let id = ObjectId::new(rec.id.clone()).unwrap();
        assert_eq!(sync.raw_message(&id).await.unwrap(), raw);
    }

    /// An initial pass with at least `bulk_messages` to go holds the store in bulk-write
    /// tuning until it ends; a smaller one, and mailboxes with nothing to sync, do not.
    #[tokio::test]
    async fn a_large_initial_pass_is_synced_with_the_store_tuned_for_bulk_writes() {
        for (threshold, periods) in [(31, 0), (30, 1)] {
            let fake = FakeUpstream::new();
            fake.set_batch_size(10);
            for i in 0..30 {
                fake.deliver(
                    "INBOX",
                    message(&format!("m{i}"), &format!("m{i}@x"), "b"),
                    &[],
                );
            }
            let f = Fixture::new();
            let sync = AccountSync::new(
                f.account.store.clone(),
                f.account.id,
                Arc::new(fake),
                SyncOptions {
                    bulk_messages: threshold,
                    ..SyncOptions::default()
                },
            );
            sync.sync_all().await.unwrap();
            assert_eq!(sync.progress().mailboxes["INBOX"].done, 30);
            assert_eq!(
                f.account.store.blocking().bulk_writes_state(),
                (0, periods),
                "threshold {threshold}"
            );
        }
    }

    #[tokio::test]
    async fn external_changes_and_writes_are_synced_in_batches() {
        let fake = FakeUpstream::new();
        fake.set_batch_size(2);
        let raws: Vec<Vec<u8>> = (0..5)
            .map(|i| message(&format!("m{i}"), &format!("m{i}@x"), "b"))
            .collect();
        let uids: Vec<String> = raws.iter().map(|r| fake.deliver("INBOX", r, &[])).collect();
        let (f, fake) = fixture_with(fake).await;
        let sync = f.account.sync.clone().unwrap();
        let progress = sync.progress();
        assert_eq!(
            progress.batches,
            3 + 3,
            "INBOX in batches of 2, one per other mailbox"
        );
        assert_eq!(progress.mailboxes["INBOX"].done, 5);
        for r in &raws {
            assert!(stored_email(&f, r).await.is_some());
        }
        // Behind the gateway's back: a flag change and an expunge.
        fake.set_keywords("INBOX", &uids[0], &["$flagged"]);
        fake.expunge("INBOX", &uids[1]);
        sync.sync_changed(&["INBOX".to_owned()]).await.unwrap();
        assert!(
            stored_email(&f, &raws[0])
                .await
                .unwrap()
                .keywords()
                .contains("$flagged")
        );
        assert!(stored_email(&f, &raws[1]).await.is_none());
        // Write-through: a move keeps the Email id and lands in Trash.
        let id = email_id(&fingerprint(&raws[2]));
        sync.write(WriteOp::Move {
            from: "INBOX".into(),
            uids: vec![uids[2].clone()],
            to: "Trash".into(),
        })
        .await
        .unwrap();
        let rec = stored_email(&f, &raws[2]).await.unwrap();
        assert_eq!(rec.id, id.as_str());
        assert_eq!(
            rec.mailbox_ids().collect::<Vec<_>>(),
            [sync.mailbox_id("Trash").unwrap()]
        );
        // A UIDVALIDITY reset keeps ids.
        fake.reset_uids("INBOX");
        sync.sync_changed(&["INBOX".to_owned()]).await.unwrap();
        let rec = stored_email(&f, &raws[3]).await.unwrap();
        assert_ne!(rec.copies()[0].1, uids[3], "new uid after the reset");
        assert!(matches!(fake.ops().last(), Some(WriteOp::Move { .. })));
    }

    /// A batch that cannot be committed in the middle of a pipelined pass: the pass fails,
    /// the batches before it are stored with their cursor, nothing after it is, and once the
    /// server no longer sends the bad data the next pass resumes and ends exact.
    #[tokio::test]
    async fn a_batch_failing_mid_pass_stops_it_and_the_next_pass_resumes() {
        let fake = Arc::new(FakeUpstream::new());
        fake.set_batch_size(2);
        let raws: Vec<Vec<u8>> = (0..9)
            .map(|i| message(&format!("m{i}"), &format!("m{i}@x"), "b"))
            .collect();
        // A keyword longer than 255 bytes: the store refuses the commit that holds it.
        let bad = "k".repeat(300);
        let uids: Vec<String> = raws
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let kw: &[&str] = if i == 4 { &[bad.as_str()] } else { &[] };
                fake.deliver("INBOX", r, kw)
            })
            .collect();
        let f = Fixture::new();
        let sync = AccountSync::new(
            f.account.store.clone(),
            f.account.id,
            fake.clone(),
            SyncOptions::default(),
        );
        // Newest first in twos: (8, 7), (6, 5), (4, 3), (2, 1), (0); the third fails.
        let err = sync
            .sync_all()
            .await
            .expect_err("the bad batch fails the pass");
        assert!(err.to_string().contains(&bad), "{err}");
        for (i, r) in raws.iter().enumerate() {
            assert_eq!(
                stored_email(&f, r).await.is_some(),
                i >= 5,
                "message {i}: only the batches before the failing one are stored"
            );
        }
        fake.set_keywords("INBOX", &uids[4], &["$seen"]);
        sync.sync_all().await.unwrap();
        for r in &raws {
            assert!(stored_email(&f, r).await.is_some());
        }
        let inbox = ObjectId::new(sync.mailbox_id("INBOX").unwrap()).unwrap();
        let counts = f
            .account
            .store
            .run(move |s| s.mailbox_counts(state::AccountId(1), &inbox))
            .await
            .unwrap();
        assert_eq!(counts.total_emails, 9);
    }

    #[tokio::test]
    async fn mailbox_ops_keep_ids_across_renames() {
        let (f, fake) = fixture_with_fake().await;
        let sync = f.account.sync.clone().unwrap();
        let WriteOutcome::Mailbox(m) = sync
            .write(WriteOp::CreateMailbox {
                parent: None,
                name: "Projects".into(),
            })
            .await
            .unwrap()
        else {
            panic!("no mailbox outcome");
        };
        let parent_id = sync.mailbox_id(&m.remote_id).unwrap();
        sync.write(WriteOp::CreateMailbox {
            parent: Some("Projects".into()),
            name: "Q1".into(),
        })
        .await
        .unwrap();
        let child_id = sync.mailbox_id("Projects/Q1").unwrap();
        sync.write(WriteOp::RenameMailbox {
            remote_id: "Projects".into(),
            parent: None,
            name: "Work".into(),
        })
        .await
        .unwrap();
        assert_eq!(sync.mailbox_id("Work").unwrap(), parent_id);
        assert_eq!(sync.mailbox_id("Work/Q1").unwrap(), child_id);
        let err = sync
            .write(WriteOp::DeleteMailbox {
                remote_id: "Work".into(),
            })
            .await
            .unwrap_err();
        assert!(err.to_string().contains("children"), "{err}");
        let subscribe = |subscribed| WriteOp::Subscribe {
            remote_id: "Work".into(),
            subscribed,
        };
        assert!(
            !fake.mailbox("Work").unwrap().subscribed,
            "CREATE does not subscribe"
        );
        sync.write(subscribe(true)).await.unwrap();
        fake.fail_next(UpstreamError::Unavailable("down".into()));
        assert!(sync.write(subscribe(false)).await.is_err());
        assert!(
            fake.mailbox("Work").unwrap().subscribed,
            "a failed write changes nothing"
        );
    }

    /// The fake cannot fetch one part (the contract's default): a part blob is cut from the
    /// whole message, which is then cached, so the next part needs no fetch at all.
    #[tokio::test]
    async fn a_part_blob_without_part_fetch_upstream_comes_from_the_whole_message() {
        let (f, fake) = fixture_with_fake().await;
        let sync = f.account.sync.clone().unwrap();
        let raw = b"From: Bob <bob@example.com>\r\nSubject: parts\r\n\
Message-ID: <parts@example.com>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n\
--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n\
AAECAw==\r\n--b--\r\n"
            .to_vec();
        fake.deliver("INBOX", &raw, &[]);
        sync.sync_all().await.unwrap();
        let id = stored_email(&f, &raw).await.unwrap().id;
        let before = fake.fetches();

        let part = crate::body::part_blob_id(&id, "2");
        let blob = crate::methods::read_blob(&f.account, &part)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(blob.bytes, [0, 1, 2, 3]);
        assert_eq!(blob.media_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(fake.fetches(), before + 1);
        let cached = |key: String| {
            let (store, a) = (f.account.store.clone(), f.account.id);
            async move { store.blob_get(a, key.into_bytes()).await.unwrap() }
        };
        assert_eq!(cached(id.clone()).await.as_deref(), Some(&raw[..]));
        assert_eq!(
            cached(part).await,
            None,
            "the part is cut from the cached message"
        );

        let text = crate::methods::read_blob(&f.account, &crate::body::part_blob_id(&id, "1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text.bytes, b"hello");
        assert_eq!(text.media_type.as_deref(), Some("text/plain"));
        for missing in ["3", "1.1", "2.1"] {
            let blob = crate::body::part_blob_id(&id, missing);
            assert_eq!(
                crate::methods::read_blob(&f.account, &blob).await.unwrap(),
                None,
                "{missing}"
            );
        }
        assert_eq!(fake.fetches(), before + 1);
    }
}

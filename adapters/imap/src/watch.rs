//! Push: one long-lived connection per account that waits for upstream changes.
//!
//! With NOTIFY (RFC 5465) the connection selects nothing and asks for message and mailbox
//! events on every personal mailbox: a `STATUS` names a mailbox whose messages or flags
//! changed, a `LIST` means the mailbox list changed. Without NOTIFY it IDLEs on the INBOX
//! and reports every mailbox (and the list) each poll interval. IDLE is restarted before the
//! refresh interval passes, under the server's inactivity timeout.
//!
//! A new watcher connection reports every mailbox once: changes made while there was no
//! watcher (before the first call, or while reconnecting) would otherwise go unnoticed.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;
use upstream::{MailboxRole, RemoteMailbox, UpstreamError};

use crate::account::ImapAccount;
use crate::conn::{Conn, ConnError, Part, push_astring};
use crate::proto::{Response, Value};

#[derive(Debug)]
enum Mode {
    Notify,
    Idle { mailbox: String },
}

#[derive(Debug)]
pub(crate) struct Watcher {
    pub(crate) conn: Conn,
    mode: Mode,
    last_poll: Instant,
    /// Set while a wait is in progress: a wait that was cancelled (its future dropped)
    /// leaves the connection mid-IDLE, and it is replaced rather than reused.
    busy: bool,
}

fn everything(mailboxes: &[RemoteMailbox]) -> Vec<String> {
    let mut out: Vec<String> = mailboxes
        .iter()
        .filter(|m| m.selectable)
        .map(|m| m.remote_id.clone())
        .collect();
    out.push(String::new());
    out
}

async fn setup(
    acct: &ImapAccount,
    mut conn: Conn,
    mailboxes: &[RemoteMailbox],
) -> Result<Watcher, ConnError> {
    if acct.opts.use_notify && conn.has("NOTIFY") {
        let r = conn
            .simple(
                "NOTIFY SET (PERSONAL (MessageNew MessageExpunge FlagChange MailboxName \
                 SubscriptionChange))",
            )
            .await;
        match r {
            Ok(_) => {
                tracing::debug!(user = %acct.creds.username, "watching every mailbox with NOTIFY");
                return Ok(Watcher {
                    conn,
                    mode: Mode::Notify,
                    last_poll: Instant::now(),
                    busy: false,
                });
            }
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => tracing::info!(error = %e, "NOTIFY refused; falling back to IDLE"),
        }
    }
    let inbox = mailboxes
        .iter()
        .find(|m| m.role == Some(MailboxRole::Inbox) && m.selectable)
        .or_else(|| mailboxes.iter().find(|m| m.selectable))
        .map_or_else(|| "INBOX".to_owned(), |m| m.remote_id.clone());
    let mut parts = vec![Part::from("EXAMINE ")];
    push_astring(&mut parts, &inbox);
    conn.run_ok(&parts).await?;
    Ok(Watcher {
        conn,
        mode: Mode::Idle { mailbox: inbox },
        last_poll: Instant::now(),
        busy: false,
    })
}

/// What a response says changed, by `remote_id` (`""` for the mailbox list).
fn classify(mode: &Mode, r: &Response, changed: &mut BTreeSet<String>) {
    let Response::Data(v) = r else { return };
    let name = r.data_name().unwrap_or_default();
    match (mode, name.as_str()) {
        (Mode::Notify, "STATUS") => {
            if let Some(m) = v.get(1).and_then(Value::text) {
                changed.insert(m);
            }
        }
        (_, "LIST") | (_, "LSUB") => {
            changed.insert(String::new());
        }
        (Mode::Idle { mailbox }, "EXISTS" | "EXPUNGE" | "FETCH" | "VANISHED") => {
            changed.insert(mailbox.clone());
        }
        _ => {}
    }
}

pub(crate) async fn wait(
    acct: &ImapAccount,
    mailboxes: &[RemoteMailbox],
    timeout: Duration,
) -> Result<Vec<String>, UpstreamError> {
    let changed = wait_inner(acct, mailboxes, timeout).await?;
    if changed.iter().any(String::is_empty) {
        acct.list_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
    Ok(changed)
}

async fn wait_inner(
    acct: &ImapAccount,
    mailboxes: &[RemoteMailbox],
    timeout: Duration,
) -> Result<Vec<String>, UpstreamError> {
    let mut guard = acct.watcher.lock().await;
    if guard.as_ref().is_some_and(|w| w.busy) {
        *guard = None;
    }
    let w = match guard.as_mut() {
        Some(w) => w,
        None => {
            let conn = acct.connect().await?;
            *guard = Some(setup(acct, conn, mailboxes).await?);
            return Ok(everything(mailboxes));
        }
    };
    w.busy = true;
    match watch(acct, w, mailboxes, timeout).await {
        Ok(v) => {
            w.busy = false;
            Ok(v)
        }
        Err(e) => {
            tracing::info!(user = %acct.creds.username, error = %e, "push connection lost");
            *guard = None;
            Err(e.into())
        }
    }
}

async fn watch(
    acct: &ImapAccount,
    w: &mut Watcher,
    mailboxes: &[RemoteMailbox],
    timeout: Duration,
) -> Result<Vec<String>, ConnError> {
    let deadline = Instant::now() + timeout;
    let mut changed = BTreeSet::new();
    loop {
        let poll_at = w.last_poll + acct.opts.poll_interval;
        let cycle_end = deadline
            .min(Instant::now() + acct.opts.idle_refresh)
            .min(poll_at);
        let (tag, before) = w.conn.idle_start().await?;
        for r in &before {
            classify(&w.mode, r, &mut changed);
        }
        while changed.is_empty() {
            let now = Instant::now();
            if now >= cycle_end {
                break;
            }
            if w.conn.wait_readable(cycle_end - now).await? {
                let r = w.conn.read().await?;
                classify(&w.mode, &r, &mut changed);
            }
        }
        for r in w.conn.idle_done(&tag).await? {
            classify(&w.mode, &r, &mut changed);
        }
        if !changed.is_empty() {
            return Ok(changed.into_iter().collect());
        }
        if Instant::now() >= poll_at {
            w.last_poll = Instant::now();
            return Ok(everything(mailboxes));
        }
        if Instant::now() >= deadline {
            return Ok(Vec::new());
        }
    }
}

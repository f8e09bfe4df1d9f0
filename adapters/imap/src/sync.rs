//! Syncing one mailbox: the resumable, pipelined, newest-first initial sync and the delta
//! sync per tier, with the cursors that make every committed batch a safe resume point.
//!
//! Cursors are conservative: a batch's cursor never claims more than the batches up to it
//! delivered, so a pass cut short anywhere repeats some work (harmless: the gateway applies
//! changes idempotently) and never skips any.
//!
//! - Initial: `UID SEARCH ALL` fixes the UID set at the start; it is fetched in chunks from
//!   the highest UID down (newest mail first), several FETCH commands in flight, each chunk
//!   committed with a cursor naming the lowest UID done. Then a delta from the state at the
//!   start (its HIGHESTMODSEQ and UIDNEXT) catches what changed meanwhile.
//! - Delta, QRESYNC: `UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE m VANISHED)`; CONDSTORE: the
//!   same without VANISHED, plus `UID SEARCH` for expunges when anything changed; plain:
//!   every UID's FLAGS, expunges by comparison with the UID set in the cursor. New UIDs are
//!   fetched in full, ascending, in chunks.
//! - UIDVALIDITY changed: the first batch says `reset`, then an initial sync follows.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use upstream::{MessageChange, RemoteMailbox, SyncBatch, SyncSink, UpstreamError};

use crate::account::{ImapAccount, Tier, jitter};
use crate::conn::{Conn, ConnError, Part, Selected};
use crate::message::{FingerprintSource, fetch_items, keywords_from_flags};
use crate::proto::{Response, Status, Value};
use crate::uidset::{UidSet, seq_set};

/// Where a mailbox's sync stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cursor {
    Initial(InitialState),
    Steady(SteadyState),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InitialState {
    pub uidvalidity: u32,
    /// HIGHESTMODSEQ and UIDNEXT when the initial sync started.
    pub modseq0: Option<u64>,
    pub uidnext0: u32,
    /// Every UID of `all` at or above `low` has been delivered.
    pub low: u32,
    pub all: UidSet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SteadyState {
    pub uidvalidity: u32,
    pub modseq: Option<u64>,
    pub uidnext: u32,
    /// The UIDs delivered and not since reported removed.
    pub uids: UidSet,
}

impl Cursor {
    fn uidvalidity(&self) -> u32 {
        match self {
            Cursor::Initial(i) => i.uidvalidity,
            Cursor::Steady(s) => s.uidvalidity,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let ms = |m: Option<u64>| m.map_or("-".to_owned(), |m| m.to_string());
        let mut s = String::new();
        match self {
            Cursor::Initial(i) => {
                let _ = write!(
                    s,
                    "imap1 init uv={} ms={} next={} low={} all={}",
                    i.uidvalidity,
                    ms(i.modseq0),
                    i.uidnext0,
                    i.low,
                    i.all
                );
            }
            Cursor::Steady(st) => {
                let _ = write!(
                    s,
                    "imap1 steady uv={} ms={} next={} uids={}",
                    st.uidvalidity,
                    ms(st.modseq),
                    st.uidnext,
                    st.uids
                );
            }
        }
        s.into_bytes()
    }

    pub(crate) fn decode(b: &[u8]) -> Option<Cursor> {
        let s = std::str::from_utf8(b).ok()?;
        let mut words = s.split(' ');
        if words.next()? != "imap1" {
            return None;
        }
        let kind = words.next()?;
        let mut kv = std::collections::HashMap::new();
        for w in words {
            let (k, v) = w.split_once('=')?;
            kv.insert(k, v);
        }
        let num = |k: &str| kv.get(k).and_then(|v| v.parse::<u32>().ok());
        let ms = match *kv.get("ms")? {
            "-" => None,
            m => Some(m.parse().ok()?),
        };
        match kind {
            "init" => Some(Cursor::Initial(InitialState {
                uidvalidity: num("uv")?,
                modseq0: ms,
                uidnext0: num("next")?,
                low: num("low")?,
                all: UidSet::parse(kv.get("all")?)?,
            })),
            "steady" => Some(Cursor::Steady(SteadyState {
                uidvalidity: num("uv")?,
                modseq: ms,
                uidnext: num("next")?,
                uids: UidSet::parse(kv.get("uids")?)?,
            })),
            _ => None,
        }
    }
}

/// Why a pass stopped.
enum PassError {
    /// The connection failed: reconnect and resume from the last committed cursor.
    Conn(ConnError),
    /// The sink refused a batch: stop.
    Sink(UpstreamError),
}

impl From<ConnError> for PassError {
    fn from(e: ConnError) -> Self {
        PassError::Conn(e)
    }
}

/// Sends batches, marking the first one `reset` when a reset is pending, and remembering
/// the last committed cursor so a reconnect resumes from it.
struct Emitter<'a> {
    sink: &'a mut dyn SyncSink,
    mailbox: String,
    reset_pending: bool,
    committed: &'a mut Option<Cursor>,
}

impl Emitter<'_> {
    async fn emit(
        &mut self,
        changes: Vec<MessageChange>,
        cursor: Cursor,
        complete: bool,
        progress: Option<(u64, u64)>,
    ) -> Result<(), PassError> {
        let batch = SyncBatch {
            mailbox: self.mailbox.clone(),
            reset: self.reset_pending,
            changes,
            cursor: cursor.encode(),
            complete,
            progress,
        };
        self.sink.apply(batch).await.map_err(PassError::Sink)?;
        self.reset_pending = false;
        *self.committed = Some(cursor);
        Ok(())
    }
}

/// The FETCH items for full metadata.
fn meta_items(acct: &ImapAccount, conn: &Conn) -> String {
    let mut items =
        String::from("UID FLAGS INTERNALDATE RFC822.SIZE BODYSTRUCTURE BODY.PEEK[HEADER]");
    if conn.has("OBJECTID") {
        items.push_str(" EMAILID THREADID");
    }
    if acct.opts.fingerprint == FingerprintSource::ServerId
        && conn
            .server_name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case("dovecot"))
    {
        items.push_str(" X-GUID");
    }
    if acct.opts.fetch_preview && conn.has("PREVIEW") {
        items.push_str(" PREVIEW");
    }
    items
}

pub(crate) async fn sync_mailbox(
    acct: &ImapAccount,
    mailbox: &RemoteMailbox,
    cursor: Option<&[u8]>,
    sink: &mut dyn SyncSink,
) -> Result<(), UpstreamError> {
    if !mailbox.selectable {
        return Ok(());
    }
    // An unreadable cursor is treated as a reset: the gateway re-matches by fingerprint.
    let mut forced_reset = false;
    let mut committed = match cursor {
        None => None,
        Some(b) => match Cursor::decode(b) {
            Some(c) => Some(c),
            None => {
                tracing::warn!(mailbox = %mailbox.remote_id, "unreadable sync cursor; resyncing the mailbox");
                forced_reset = true;
                None
            }
        },
    };
    let mut delay = acct.opts.backoff_initial;
    let mut attempts = 0;
    loop {
        let mut lease = acct.lease_for(Some(&mailbox.remote_id)).await?;
        let result = pass(
            acct,
            &mut lease,
            mailbox,
            &mut committed,
            forced_reset,
            sink,
        )
        .await;
        match result {
            Ok(()) => {
                lease.release();
                return Ok(());
            }
            Err(PassError::Sink(e)) => {
                // Responses to pipelined commands may still be on the way: never reuse it.
                lease.broken = true;
                return Err(e);
            }
            Err(PassError::Conn(e)) => {
                lease.broken = lease.broken || e.is_transient();
                drop(lease);
                attempts += 1;
                if !e.is_transient() || attempts >= acct.opts.connect_attempts {
                    return Err(e.into());
                }
                // A reset already announced is not announced again.
                if committed.is_some() {
                    forced_reset = false;
                }
                let wait = jitter(delay);
                tracing::info!(mailbox = %mailbox.remote_id, error = %e, ?wait, "sync interrupted; resuming from the last committed batch");
                tokio::time::sleep(wait).await;
                delay = (delay * 2).min(acct.opts.backoff_max);
            }
        }
    }
}

async fn pass(
    acct: &ImapAccount,
    conn: &mut Conn,
    mailbox: &RemoteMailbox,
    committed: &mut Option<Cursor>,
    forced_reset: bool,
    sink: &mut dyn SyncSink,
) -> Result<(), PassError> {
    let t0 = std::time::Instant::now();
    // A steady QRESYNC mailbox still selected on this connection is brought up to date with
    // a NOOP instead of a new SELECT: the delta below asks for everything changed since the
    // cursor's modseq, and VANISHED reports expunges, so no SELECT-time state is needed.
    let reuse = matches!(committed, Some(Cursor::Steady(st)) if st.modseq.is_some())
        && !forced_reset
        && acct.opts.max_tier >= Tier::QResync
        && conn.is_enabled("QRESYNC")
        && conn
            .selected
            .as_ref()
            .is_some_and(|s| s.name == mailbox.remote_id && s.highestmodseq.is_some());
    let sel = match (reuse, conn.selected.clone()) {
        (true, Some(_)) => {
            conn.simple("NOOP").await?;
            conn.selected
                .clone()
                .ok_or_else(|| ConnError::Closed("mailbox closed under us".into()))?
        }
        _ => conn.select(&mailbox.remote_id, true).await?,
    };
    tracing::debug!(mailbox = %mailbox.remote_id, reuse, select_ms = t0.elapsed().as_secs_f64() * 1e3, "selected");
    let start = committed.clone();
    let mut em = Emitter {
        sink,
        mailbox: mailbox.remote_id.clone(),
        reset_pending: forced_reset,
        committed,
    };
    match start {
        Some(c) if c.uidvalidity() != sel.uidvalidity => {
            tracing::info!(mailbox = %mailbox.remote_id, old = c.uidvalidity(), new = sel.uidvalidity, "UIDVALIDITY changed; resyncing and re-matching by content");
            em.reset_pending = true;
            initial(acct, conn, &sel, None, &mut em).await
        }
        None => initial(acct, conn, &sel, None, &mut em).await,
        Some(Cursor::Initial(i)) => initial(acct, conn, &sel, Some(i), &mut em).await,
        Some(Cursor::Steady(st)) => delta(acct, conn, &sel, st, reuse, &mut em).await,
    }
}

/// The UIDs of the selected mailbox matching `criteria` (ESEARCH when offered).
async fn search(conn: &mut Conn, criteria: &str) -> Result<UidSet, ConnError> {
    let esearch = conn.has("ESEARCH");
    let cmd = if esearch {
        format!("UID SEARCH RETURN (ALL) {criteria}")
    } else {
        format!("UID SEARCH {criteria}")
    };
    let (untagged, _) = conn.simple(&cmd).await?;
    let mut out = UidSet::new();
    for r in &untagged {
        let Response::Data(v) = r else { continue };
        if v.first().is_some_and(|x| x.is("SEARCH")) {
            let mut uids: Vec<u32> = v[1..]
                .iter()
                .filter_map(Value::number)
                .map(|n| n as u32)
                .collect();
            uids.sort_unstable();
            out = out.union(&UidSet::from_sorted_uids(uids));
        } else if v.first().is_some_and(|x| x.is("ESEARCH")) {
            let mut it = v[1..].iter();
            while let Some(x) = it.next() {
                if x.is("ALL")
                    && let Some(set) = it.next().and_then(Value::atom).and_then(UidSet::parse)
                {
                    out = out.union(&set);
                }
            }
        }
    }
    Ok(out)
}

/// Reads the responses of the command tagged `tag`, calling `on_fetch` for each FETCH.
async fn collect_fetches(
    conn: &mut Conn,
    tag: &str,
    mut on_fetch: impl FnMut(&[Value]),
    mut on_other: impl FnMut(&Response),
) -> Result<(), ConnError> {
    loop {
        let r = conn.read().await?;
        match &r {
            Response::Tagged { tag: t, line } if t == tag => {
                return match line.status {
                    Status::Ok => Ok(()),
                    _ => Err(crate::conn::status_error(line.clone())),
                };
            }
            Response::Tagged { tag: t, .. } => {
                conn.broken = true;
                return Err(ConnError::Parse(format!(
                    "reply for {t} while waiting for {tag}"
                )));
            }
            _ => {}
        }
        match r.fetch() {
            Some((_, items)) => on_fetch(items),
            None => on_other(&r),
        }
    }
}

async fn initial(
    acct: &ImapAccount,
    conn: &mut Conn,
    sel: &Selected,
    resume: Option<InitialState>,
    em: &mut Emitter<'_>,
) -> Result<(), PassError> {
    let mut st = match resume {
        Some(s) => s,
        None => {
            let all = if sel.exists == 0 {
                UidSet::new()
            } else {
                search(conn, "ALL").await?.below(sel.uidnext.max(1))
            };
            InitialState {
                uidvalidity: sel.uidvalidity,
                modseq0: sel.highestmodseq,
                uidnext0: sel.uidnext,
                low: u32::MAX,
                all,
            }
        }
    };
    let total = st.all.len();
    let items = meta_items(acct, conn);
    let source = acct.opts.fingerprint;
    let batch = acct.opts.batch_size.max(1);
    let depth = acct.opts.pipeline_depth.max(1);
    let mut next_low = st.low;
    // In-flight FETCH commands, oldest first: (tag, lowest UID, highest UID, what arrived).
    // Dovecot runs pipelined FETCHes concurrently and interleaves their responses, so each
    // message is filed under the command whose UID range holds it; a command's messages are
    // all in once its tagged OK arrives.
    type Inflight = (String, u32, u32, Vec<upstream::RemoteMessage>);
    let mut inflight: std::collections::VecDeque<Inflight> = Default::default();
    tracing::info!(mailbox = %em.mailbox, total, remaining = st.all.below(st.low).len(), "initial sync");
    loop {
        while inflight.len() < depth {
            let chunk = st.all.highest_below(next_low, batch);
            let (Some(&min), Some(&max)) = (chunk.last(), chunk.first()) else {
                break;
            };
            let tag = conn
                .send(&[Part::from(format!(
                    "UID FETCH {} ({items})",
                    seq_set(&chunk)
                ))])
                .await?;
            inflight.push_back((tag, min, max, Vec::with_capacity(batch)));
            next_low = min;
        }
        let Some(tag) = inflight.front().map(|f| f.0.clone()) else {
            break;
        };
        let read_started = std::time::Instant::now();
        collect_fetches(
            conn,
            &tag,
            |items| {
                if let Some(m) = fetch_items(items).to_remote(source) {
                    let uid = m.uid.parse::<u32>().unwrap_or(0);
                    let slot = inflight
                        .iter()
                        .position(|(_, lo, hi, _)| (*lo..=*hi).contains(&uid))
                        .unwrap_or(0);
                    if let Some(f) = inflight.get_mut(slot) {
                        f.3.push(m);
                    }
                }
            },
            |_| {},
        )
        .await?;
        let Some((_, min, _, mut msgs)) = inflight.pop_front() else {
            break;
        };
        msgs.sort_by_key(|m| std::cmp::Reverse(m.uid.parse::<u32>().unwrap_or(0)));
        st.low = min;
        let done = total - st.all.below(st.low).len();
        let changes = msgs.into_iter().map(MessageChange::Upsert).collect();
        // How long the batch took to arrive (and parse), and how long the sink held it back:
        // which side a slow initial sync waits on.
        let read_ms = read_started.elapsed().as_millis() as u64;
        let emit_started = std::time::Instant::now();
        em.emit(
            changes,
            Cursor::Initial(st.clone()),
            false,
            Some((done, total)),
        )
        .await?;
        let emit_ms = emit_started.elapsed().as_millis() as u64;
        tracing::debug!(mailbox = %em.mailbox, done, total, read_ms, emit_ms, "initial sync progress");
    }
    // Catch up with what changed since the start, from the state at the start.
    let steady = SteadyState {
        uidvalidity: st.uidvalidity,
        modseq: st.modseq0,
        uidnext: st.uidnext0,
        uids: st.all,
    };
    let sel = conn.select(&sel.name, true).await?;
    if sel.uidvalidity != steady.uidvalidity {
        return Err(PassError::Conn(ConnError::Closed(
            "UIDVALIDITY changed during the initial sync".into(),
        )));
    }
    delta(acct, conn, &sel, steady, false, em).await
}

/// The delta from a steady cursor. `refreshed`: the mailbox was already selected and only
/// brought up to date (NOOP), so `sel` has a current message count but a stale UIDNEXT and
/// HIGHESTMODSEQ; the new cursor's modseq is then the highest MODSEQ the CHANGEDSINCE fetch
/// reported (every change after it has a higher one, so nothing is skipped).
async fn delta(
    acct: &ImapAccount,
    conn: &mut Conn,
    sel: &Selected,
    st: SteadyState,
    refreshed: bool,
    em: &mut Emitter<'_>,
) -> Result<(), PassError> {
    let t0 = std::time::Instant::now();
    let tier = acct.tier(conn, sel.highestmodseq);
    let modseq_unchanged = st.modseq.is_some() && st.modseq == sel.highestmodseq;
    let mut removed = UidSet::new();
    let mut keyword_changes: Vec<(u32, BTreeSet<String>)> = Vec::new();
    let mut new_uids = UidSet::new();
    let effective = if st.modseq.is_none() {
        Tier::Plain
    } else {
        tier
    };
    let nothing_new = sel.uidnext <= st.uidnext;
    let skip_flags = !refreshed && effective != Tier::Plain && modseq_unchanged && nothing_new;
    let mut max_modseq = st.modseq;
    // After a refresh the count comes from unsolicited updates: not trusted to say "empty".
    if !skip_flags && (refreshed || sel.exists > 0) {
        let cmd = match (effective, st.modseq) {
            (Tier::QResync, Some(m)) => {
                format!("UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {m} VANISHED)")
            }
            (Tier::CondStore, Some(m)) => format!("UID FETCH 1:* (UID FLAGS) (CHANGEDSINCE {m})"),
            _ => "UID FETCH 1:* (UID FLAGS)".to_owned(),
        };
        let tag = conn.send(&[Part::from(cmd)]).await?;
        let mut seen = UidSet::new();
        let mut fetched: Vec<u32> = Vec::new();
        collect_fetches(
            conn,
            &tag,
            |items| {
                let f = fetch_items(items);
                let (Some(uid), Some(flags)) = (f.uid, f.flags) else {
                    return;
                };
                if let Some(m) = f.modseq {
                    max_modseq = max_modseq.max(Some(m));
                }
                fetched.push(uid);
                if uid >= st.uidnext {
                    new_uids.insert_range(uid, uid);
                } else if st.uids.contains(uid) {
                    keyword_changes.push((uid, keywords_from_flags(flags)));
                }
            },
            |r| {
                if let Response::Data(v) = r
                    && v.first().is_some_and(|x| x.is("VANISHED"))
                    && let Some(set) = v.last().and_then(Value::atom).and_then(UidSet::parse)
                {
                    removed = removed.union(&set);
                }
            },
        )
        .await?;
        if effective == Tier::Plain {
            fetched.sort_unstable();
            seen = UidSet::from_sorted_uids(fetched);
        }
        match effective {
            Tier::Plain => {
                removed = st.uids.below(st.uidnext).difference(&seen);
            }
            Tier::CondStore => {
                let old_count = st.uids.len();
                let still_old = u64::from(sel.exists).saturating_sub(new_uids.len());
                if !modseq_unchanged || still_old != old_count {
                    let existing =
                        search(conn, &format!("UID 1:{}", st.uidnext.max(2) - 1)).await?;
                    removed = st.uids.difference(&existing);
                }
            }
            Tier::QResync => {
                // VANISHED (EARLIER) may name UIDs we never had.
                removed = removed.difference(&removed.difference(&st.uids));
            }
        }
    } else if sel.exists == 0 {
        removed = st.uids.clone();
    }
    if skip_flags && sel.exists as u64 != st.uids.len() && effective != Tier::QResync {
        // Defensive: counts disagree although nothing changed by modseq.
        let existing = search(conn, "ALL").await?;
        removed = st.uids.difference(&existing);
    }
    tracing::debug!(mailbox = %em.mailbox, ?effective, skip_flags, flags_ms = t0.elapsed().as_secs_f64() * 1e3, "delta: flags and expunges");
    let mut uids = st.uids.difference(&removed);
    let mut changes: Vec<MessageChange> = removed
        .iter()
        .map(|u| MessageChange::Removed { uid: u.to_string() })
        .collect();
    changes.extend(
        keyword_changes
            .into_iter()
            .filter(|(u, _)| !removed.contains(*u))
            .map(|(u, keywords)| MessageChange::Keywords {
                uid: u.to_string(),
                keywords,
            }),
    );
    let flush_at = acct.opts.batch_size.max(1) * 4;
    // Flag and expunge changes: intermediate batches keep the old cursor.
    while changes.len() > flush_at {
        let rest = changes.split_off(flush_at);
        em.emit(changes, Cursor::Steady(st.clone()), false, None)
            .await?;
        changes = rest;
    }
    // New messages, ascending, in chunks; each batch's cursor covers the UIDs up to it.
    let new: Vec<u32> = new_uids.iter().collect();
    let items = meta_items(acct, conn);
    let source = acct.opts.fingerprint;
    let mut uidnext = st.uidnext;
    let total_new = new.len() as u64;
    for (i, chunk) in new.chunks(acct.opts.batch_size.max(1)).enumerate() {
        let tag = conn
            .send(&[Part::from(format!(
                "UID FETCH {} ({items})",
                seq_set(chunk)
            ))])
            .await?;
        let mut got = Vec::new();
        collect_fetches(
            conn,
            &tag,
            |it| {
                if let Some(m) = fetch_items(it).to_remote(source) {
                    got.push(m);
                }
            },
            |_| {},
        )
        .await?;
        got.sort_by_key(|m| m.uid.parse::<u32>().unwrap_or(0));
        for m in &got {
            if let Ok(u) = m.uid.parse::<u32>() {
                uids.insert_range(u, u);
            }
        }
        changes.extend(got.into_iter().map(MessageChange::Upsert));
        let last = chunk.last().copied().unwrap_or(uidnext);
        uidnext = uidnext.max(last.saturating_add(1));
        let is_last = (i + 1) * acct.opts.batch_size.max(1) >= new.len();
        if !is_last {
            let cursor = Cursor::Steady(SteadyState {
                uidvalidity: st.uidvalidity,
                modseq: st.modseq,
                uidnext,
                uids: uids.clone(),
            });
            let done = ((i + 1) * acct.opts.batch_size.max(1)) as u64;
            em.emit(
                std::mem::take(&mut changes),
                cursor,
                false,
                Some((done.min(total_new), total_new)),
            )
            .await?;
        }
    }
    tracing::debug!(mailbox = %em.mailbox, new = total_new, fetched_ms = t0.elapsed().as_secs_f64() * 1e3, "delta: fetched");
    let final_cursor = Cursor::Steady(SteadyState {
        uidvalidity: st.uidvalidity,
        modseq: if refreshed {
            max_modseq
        } else {
            sel.highestmodseq
        },
        uidnext: if refreshed {
            uidnext
        } else {
            uidnext.max(sel.uidnext)
        },
        uids,
    });
    em.emit(changes, final_cursor, true, None).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::Initial(InitialState {
            uidvalidity: 7,
            modseq0: Some(99),
            uidnext0: 12,
            low: 5,
            all: UidSet::parse("1:3,5:11").unwrap(),
        });
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        let c = Cursor::Steady(SteadyState {
            uidvalidity: 7,
            modseq: None,
            uidnext: 1,
            uids: UidSet::new(),
        });
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode(b"eas 1"), None);
    }
}

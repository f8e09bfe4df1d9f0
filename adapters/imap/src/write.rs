//! Write-through: each [`WriteOp`] as IMAP commands, with the new UIDs the server reports
//! (APPENDUID, COPYUID from UIDPLUS) read from the raw responses.
//!
//! Keywords are written as deltas (`+FLAGS.SILENT`/`-FLAGS.SILENT`), so a concurrent change
//! of another flag by another client is never overwritten; that is why no UNCHANGEDSINCE is
//! needed here (a JMAP keywords patch is a delta too).

use upstream::{RemoteMailbox, UpstreamError, WriteOp, WriteOutcome};

use crate::account::{ImapAccount, ensure_selected};
use crate::conn::{Conn, ConnError, Part, push_astring};
use crate::message::{flag_for_keyword, format_internaldate};
use crate::mutf7;
use crate::proto::{Response, StatusLine, Value};
use crate::uidset::seq_set;

fn parse_uids(uids: &[String]) -> Result<Vec<u32>, UpstreamError> {
    uids.iter()
        .map(|u| {
            u.parse::<u32>()
                .map_err(|_| UpstreamError::NotFound(format!("no message with uid {u:?}")))
        })
        .collect()
}

fn flags_for(keywords: &std::collections::BTreeSet<String>) -> Result<Vec<String>, UpstreamError> {
    keywords
        .iter()
        .map(|k| {
            flag_for_keyword(k).ok_or_else(|| {
                UpstreamError::Unsupported(format!("{k:?} cannot be an IMAP keyword"))
            })
        })
        .collect()
}

/// Expands a sequence set in the order written (COPYUID pairs source and target by position).
fn expand_in_order(set: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in set.split(',') {
        match part.split_once(':') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if a <= b {
                        out.extend(a..=b);
                    } else {
                        out.extend((b..=a).rev());
                    }
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// COPYUID in a status line: source UID → target UID.
fn copyuid(line: &StatusLine) -> Option<Vec<(u32, u32)>> {
    if line.code_name().as_deref() != Some("COPYUID") {
        return None;
    }
    let src = expand_in_order(line.code.get(2)?.atom()?);
    let dst = expand_in_order(line.code.get(3)?.atom()?);
    (src.len() == dst.len()).then(|| src.into_iter().zip(dst).collect())
}

fn mapping(requested: &[u32], pairs: &[(u32, u32)]) -> Vec<(String, Option<String>)> {
    requested
        .iter()
        .map(|u| {
            (
                u.to_string(),
                pairs
                    .iter()
                    .find(|(s, _)| s == u)
                    .map(|(_, d)| d.to_string()),
            )
        })
        .collect()
}

fn copyuids_in(untagged: &[Response], tagged: &StatusLine) -> Vec<(u32, u32)> {
    let mut pairs = Vec::new();
    for r in untagged {
        if let Response::Status(l) = r
            && let Some(p) = copyuid(l)
        {
            pairs.extend(p);
        }
    }
    if let Some(p) = copyuid(tagged) {
        pairs.extend(p);
    }
    pairs
}

async fn expunge(conn: &mut Conn, uids: &[u32]) -> Result<(), ConnError> {
    let set = seq_set(uids);
    conn.simple(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))
        .await?;
    if conn.has("UIDPLUS") {
        conn.simple(&format!("UID EXPUNGE {set}")).await?;
    } else {
        // Without UIDPLUS, EXPUNGE also removes other messages marked \Deleted.
        conn.simple("EXPUNGE").await?;
    }
    Ok(())
}

fn full_name(delimiter: Option<char>, parent: Option<&str>, name: &str, utf8: bool) -> String {
    let leaf = if utf8 {
        name.to_owned()
    } else {
        mutf7::encode(name)
    };
    match (parent, delimiter) {
        (Some(p), Some(d)) => format!("{p}{d}{leaf}"),
        _ => leaf,
    }
}

fn mailbox_cmd<'a>(verb: &'a str, name: &'a str) -> Vec<Part<'a>> {
    let mut parts = vec![Part::from(verb)];
    push_astring(&mut parts, name);
    parts
}

/// CREATE, tolerating one known server race: Dovecot (maildir) answers `NO [ALREADYEXISTS]`
/// to a CREATE that did create the mailbox when another session (our own sync, say) opened
/// it in between. The JMAP layer has already refused names it knows, so a mailbox that LIST
/// shows after that answer is the one this CREATE asked for.
async fn create_mailbox(conn: &mut Conn, full: &str) -> Result<(), UpstreamError> {
    let err = match conn.run_ok(&mailbox_cmd("CREATE ", full)).await {
        Ok(_) => return Ok(()),
        Err(ConnError::No { code, text }) if code.as_deref() == Some("ALREADYEXISTS") => {
            ConnError::No { code, text }
        }
        Err(e) => return Err(e.into()),
    };
    let listed = crate::list::selectable(conn, full).await?.is_some();
    if listed { Ok(()) } else { Err(err.into()) }
}

pub(crate) async fn apply(acct: &ImapAccount, op: WriteOp) -> Result<WriteOutcome, UpstreamError> {
    if let WriteOp::Send { .. } = op {
        return Err(UpstreamError::Unsupported(
            "sending is done by SMTP submission, not by the IMAP adapter".into(),
        ));
    }
    let mut lease = acct.lease().await?;
    let conn: &mut Conn = &mut lease;
    let out = apply_on(acct, conn, op).await;
    if let Err(e) = &out {
        tracing::info!(user = %acct.creds.username, error = %e, "write-through refused or failed");
    }
    lease.release();
    out
}

async fn apply_on(
    acct: &ImapAccount,
    conn: &mut Conn,
    op: WriteOp,
) -> Result<WriteOutcome, UpstreamError> {
    let utf8 = conn.is_enabled("UTF8=ACCEPT");
    match op {
        WriteOp::SetKeywords {
            mailbox,
            uids,
            add,
            remove,
        } => {
            let uids = parse_uids(&uids)?;
            let add = flags_for(&add)?;
            let remove = flags_for(&remove)?;
            if uids.is_empty() {
                return Ok(WriteOutcome::Done);
            }
            let sel = ensure_selected(conn, &mailbox, true).await?;
            if !sel.custom_keywords && add.iter().any(|f| !f.starts_with('\\')) {
                return Err(UpstreamError::Refused(format!(
                    "{mailbox} does not accept custom keywords"
                )));
            }
            let set = seq_set(&uids);
            for (sign, flags) in [('+', add), ('-', remove)] {
                if flags.is_empty() {
                    continue;
                }
                conn.simple(&format!(
                    "UID STORE {set} {sign}FLAGS.SILENT ({})",
                    flags.join(" ")
                ))
                .await?;
            }
            Ok(WriteOutcome::Done)
        }
        WriteOp::Move { from, uids, to } => {
            let uids = parse_uids(&uids)?;
            ensure_selected(conn, &from, true).await?;
            let set = seq_set(&uids);
            let pairs = if conn.has("MOVE") {
                let mut parts = vec![Part::from(format!("UID MOVE {set} "))];
                push_astring(&mut parts, &to);
                let (untagged, line) = conn.run_ok(&parts).await?;
                copyuids_in(&untagged, &line)
            } else {
                let mut parts = vec![Part::from(format!("UID COPY {set} "))];
                push_astring(&mut parts, &to);
                let (untagged, line) = conn.run_ok(&parts).await?;
                let pairs = copyuids_in(&untagged, &line);
                expunge(conn, &uids).await?;
                pairs
            };
            Ok(WriteOutcome::Moved(mapping(&uids, &pairs)))
        }
        WriteOp::Copy { from, uids, to } => {
            let uids = parse_uids(&uids)?;
            ensure_selected(conn, &from, true).await?;
            let mut parts = vec![Part::from(format!("UID COPY {} ", seq_set(&uids)))];
            push_astring(&mut parts, &to);
            let (untagged, line) = conn.run_ok(&parts).await?;
            Ok(WriteOutcome::Copied(mapping(
                &uids,
                &copyuids_in(&untagged, &line),
            )))
        }
        WriteOp::Delete { mailbox, uids } => {
            let uids = parse_uids(&uids)?;
            if uids.is_empty() {
                return Ok(WriteOutcome::Done);
            }
            ensure_selected(conn, &mailbox, true).await?;
            expunge(conn, &uids).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::Append {
            mailbox,
            raw,
            keywords,
            received_at,
        } => {
            let flags = flags_for(&keywords)?;
            let raw = crlf(&raw);
            let mut parts = mailbox_cmd("APPEND ", &mailbox);
            parts.push(Part::from(format!(" ({})", flags.join(" "))));
            if let Some(t) = received_at {
                parts.push(Part::from(format!(" \"{}\"", format_internaldate(t))));
            }
            parts.push(Part::from(" "));
            parts.push(Part::Literal(&raw));
            let (_, line) = conn.run_ok(&parts).await?;
            let uid = (line.code_name().as_deref() == Some("APPENDUID"))
                .then(|| line.code.get(2).and_then(Value::number))
                .flatten()
                .map(|u| u.to_string());
            Ok(WriteOutcome::Appended(uid))
        }
        WriteOp::CreateMailbox { parent, name } => {
            let delim = acct.delimiter(conn).await?;
            let full = full_name(delim, parent.as_deref(), &name, utf8);
            create_mailbox(conn, &full).await?;
            Ok(WriteOutcome::Mailbox(RemoteMailbox {
                remote_id: full,
                name,
                parent,
                role: None,
                subscribed: false,
                selectable: true,
            }))
        }
        WriteOp::RenameMailbox {
            remote_id,
            parent,
            name,
        } => {
            let delim = acct.delimiter(conn).await?;
            let full = full_name(delim, parent.as_deref(), &name, utf8);
            if conn.selected.as_ref().is_some_and(|s| s.name == remote_id) {
                conn.selected = None;
                conn.simple("UNSELECT").await.ok();
            }
            let mut parts = mailbox_cmd("RENAME ", &remote_id);
            parts.push(Part::from(" "));
            push_astring(&mut parts, &full);
            conn.run_ok(&parts).await?;
            Ok(WriteOutcome::Mailbox(RemoteMailbox {
                remote_id: full,
                name,
                parent,
                role: None,
                subscribed: false,
                selectable: true,
            }))
        }
        WriteOp::DeleteMailbox { remote_id } => {
            if conn.selected.as_ref().is_some_and(|s| s.name == remote_id) {
                conn.selected = None;
                conn.simple("UNSELECT").await.ok();
            }
            conn.run_ok(&mailbox_cmd("DELETE ", &remote_id)).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::Subscribe {
            remote_id,
            subscribed,
        } => {
            let verb = if subscribed {
                "SUBSCRIBE "
            } else {
                "UNSUBSCRIBE "
            };
            conn.run_ok(&mailbox_cmd(verb, &remote_id)).await?;
            Ok(WriteOutcome::Done)
        }
        WriteOp::Send { .. } => Err(UpstreamError::Unsupported("send".into())),
    }
}

/// Bare LF → CRLF, so the stored message is what RFC 5322 requires (and what FETCH returns).
fn crlf(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + raw.len() / 40);
    let mut prev = 0u8;
    for &c in raw {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A server that answers each command line by its verb, as the script says.
    async fn scripted(script: &'static [(&'static str, &'static str)]) -> Conn {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.unwrap();
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut words = line.splitn(3, ' ');
                let (tag, verb) = (words.next().unwrap(), words.next().unwrap_or(""));
                let reply = script
                    .iter()
                    .find(|(v, _)| v.eq_ignore_ascii_case(verb))
                    .map_or("BAD unexpected", |(_, r)| r);
                let reply = reply.replace("{tag}", tag);
                w.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        Conn::new(
            crate::connection::ImapStream::Plain(tcp),
            &crate::conn::ConnOptions::default(),
        )
    }

    #[tokio::test]
    async fn create_that_raced_another_session_is_a_success_when_list_shows_it() {
        let mut conn = scripted(&[
            (
                "CREATE",
                "{tag} NO [ALREADYEXISTS] Mailbox already exists\r\n",
            ),
            (
                "LIST",
                "* LIST (\\HasNoChildren) \"/\" Work/Reports\r\n{tag} OK done\r\n",
            ),
        ])
        .await;
        create_mailbox(&mut conn, "Work/Reports").await.unwrap();
    }

    #[tokio::test]
    async fn create_of_a_mailbox_list_does_not_show_stays_refused() {
        let mut conn = scripted(&[
            (
                "CREATE",
                "{tag} NO [ALREADYEXISTS] Mailbox already exists\r\n",
            ),
            ("LIST", "{tag} OK done\r\n"),
        ])
        .await;
        let e = create_mailbox(&mut conn, "Work").await.unwrap_err();
        assert!(
            matches!(e, UpstreamError::Refused(ref m) if m.contains("already exists")),
            "{e:?}"
        );
        let mut conn = scripted(&[("CREATE", "{tag} NO [NOPERM] not allowed\r\n")]).await;
        let e = create_mailbox(&mut conn, "Work").await.unwrap_err();
        assert!(
            matches!(e, UpstreamError::Refused(ref m) if m.contains("not allowed")),
            "{e:?}"
        );
    }

    #[test]
    fn copyuid_pairs_in_written_order() {
        let line = StatusLine {
            status: crate::proto::Status::Ok,
            code: vec![
                Value::Atom("COPYUID".into()),
                Value::Atom("38505".into()),
                Value::Atom("304,319:320".into()),
                Value::Atom("3956:3958".into()),
            ],
            text: String::new(),
        };
        assert_eq!(
            copyuid(&line).unwrap(),
            vec![(304, 3956), (319, 3957), (320, 3958)]
        );
        let m = mapping(&[304, 400], &copyuid(&line).unwrap());
        assert_eq!(m[0], ("304".into(), Some("3956".into())));
        assert_eq!(m[1], ("400".into(), None));
        assert_eq!(crlf(b"a\nb\r\nc"), b"a\r\nb\r\nc");
        assert_eq!(
            full_name(Some('/'), Some("INBOX"), "Entwürfe", false),
            "INBOX/Entw&APw-rfe"
        );
    }
}

//! The whole raw message of an Email's blob ([`upstream::Upstream::fetch_message`]):
//! `UID FETCH <uid> (UID BODY.PEEK[])` in the mailbox opened with EXAMINE, so `\Seen` is
//! left alone (a pooled connection that has it selected already is preferred).
//!
//! Read-only, so it runs through [`ImapAccount::read_retrying`]: a connection that dropped
//! (a server restart, a reset, a timeout) is tried once more on another, and a tagged
//! NO or BAD leaves the connection in the pool.
//!
//! A message that is not there is [`UpstreamError::NotFound`], never an empty blob: no
//! body for the uid (Dovecot answers a uid that does not exist with no FETCH response, one
//! expunged meanwhile with `BODY[] NIL` and `OK [EXPUNGEISSUED]`), a NO with
//! `EXPUNGEISSUED` or `NONEXISTENT` (RFC 5530; a server that refuses to fetch what it
//! expunged), or a NO to the EXAMINE of a mailbox that LIST no longer shows as selectable
//! (deleted since the last sync; Dovecot 2.3 gives that NO no code). A server that is busy
//! (`UNAVAILABLE`, `INUSE`, `LIMIT`) is [`UpstreamError::Unavailable`], any other NO
//! [`UpstreamError::Refused`], each naming the message and carrying the server's text.

use upstream::UpstreamError;

use crate::account::{ImapAccount, ensure_selected};
use crate::conn::{Conn, ConnError, Part};
use crate::proto::Response;

/// The raw message `uid` of `mailbox`.
pub(crate) async fn fetch_message(
    acct: &ImapAccount,
    mailbox: &str,
    uid: &str,
) -> Result<Vec<u8>, UpstreamError> {
    // Uids are nz-numbers: `0` or anything else would be a BAD, not a missing message.
    let uid_n: u32 = match uid.parse() {
        Ok(n) if n > 0 => n,
        _ => {
            return Err(UpstreamError::NotFound(format!(
                "no message {uid} in {mailbox}"
            )));
        }
    };
    let result = acct
        .read_retrying(Some(mailbox), |conn| Box::pin(run(conn, mailbox, uid_n)))
        .await?;
    match result {
        Ok(Ok(raw)) => Ok(raw),
        Ok(Err(Missing::Message)) => Err(UpstreamError::NotFound(format!(
            "no message {uid} in {mailbox}"
        ))),
        Ok(Err(Missing::Mailbox(text))) => Err(UpstreamError::NotFound(format!(
            "no message {uid} in {mailbox}: the mailbox is gone ({text})"
        ))),
        Err(e) => {
            tracing::info!(user = %acct.creds.username, %mailbox, uid, error = %e, "message FETCH failed");
            Err(fetch_error(mailbox, uid_n, e))
        }
    }
}

/// Why a message that the server answered for is not there.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    /// No FETCH response with its body: no such uid, or expunged.
    Message,
    /// The EXAMINE was refused (with this text) and LIST does not show the mailbox.
    Mailbox(String),
}

/// EXAMINE `mailbox` unless the connection has it selected already, for reading a message
/// in it. The inner error is the server's text when it refused and LIST no longer shows
/// the mailbox as selectable: the mailbox is gone (deleted since the last sync). Dovecot 2.3
/// answers the EXAMINE of a deleted mailbox with a plain `NO Mailbox doesn't exist`, no
/// NONEXISTENT code, so LIST tells a mailbox that is gone from one the server will not open
/// now.
pub(crate) async fn examine(
    conn: &mut Conn,
    mailbox: &str,
) -> Result<Result<(), String>, ConnError> {
    match ensure_selected(conn, mailbox, false).await {
        Ok(_) => Ok(Ok(())),
        Err(ConnError::No { text, .. })
            if crate::list::selectable(conn, mailbox).await? != Some(true) =>
        {
            Ok(Err(text))
        }
        Err(e) => Err(e),
    }
}

/// EXAMINE (unless selected already) and the FETCH; the inner error says what is missing.
async fn run(
    conn: &mut Conn,
    mailbox: &str,
    uid: u32,
) -> Result<Result<Vec<u8>, Missing>, ConnError> {
    if let Err(text) = examine(conn, mailbox).await? {
        return Ok(Err(Missing::Mailbox(text)));
    }
    let (untagged, _) = conn
        .run_ok(&[Part::from(format!("UID FETCH {uid} (UID BODY.PEEK[])"))])
        .await?;
    Ok(body_of(&untagged, uid)
        .map(<[u8]>::to_vec)
        .ok_or(Missing::Message))
}

/// The `BODY[]` of message `uid` among `untagged`, which may hold unsolicited FETCH
/// responses of other messages (flag changes) too. A NIL body is no body (Dovecot's answer
/// for a message expunged meanwhile, with `OK [EXPUNGEISSUED]`), and so is an empty one:
/// it could not be an Email's blob, and Dovecot refuses to store a zero-byte message.
fn body_of(untagged: &[Response], uid: u32) -> Option<&[u8]> {
    untagged.iter().find_map(|r| {
        let (_, items) = r.fetch()?;
        let f = crate::message::fetch_items(items);
        if f.uid == Some(uid) {
            f.body.filter(|b| !b.is_empty())
        } else {
            None
        }
    })
}

/// What a failed EXAMINE or FETCH of message `uid` in `mailbox` means to the gateway.
fn fetch_error(mailbox: &str, uid: u32, e: ConnError) -> UpstreamError {
    match e {
        ConnError::No { code, text } => match code.as_deref() {
            Some("EXPUNGEISSUED" | "NONEXISTENT") => {
                UpstreamError::NotFound(format!("no message {uid} in {mailbox}: {text}"))
            }
            Some("UNAVAILABLE" | "INUSE" | "LIMIT") => UpstreamError::Unavailable(format!(
                "message {uid} in {mailbox} cannot be read now: {text}"
            )),
            _ => UpstreamError::Refused(format!(
                "the server would not give message {uid} in {mailbox}: {text}"
            )),
        },
        ConnError::Bad(text) => UpstreamError::Protocol(format!(
            "the server rejected the request for message {uid} in {mailbox}: {text}"
        )),
        other => other.into(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::parse_lines;

    #[test]
    fn the_body_is_read_for_the_uid_asked() {
        let r = parse_lines(&[
            // An unsolicited flag change of another message comes first.
            &b"* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n"[..],
            b"* 2 FETCH (UID 5 BODY[] {12}\r\nSubject: x\r\n)\r\n",
            b"* 3 FETCH (BODY[] NIL UID 6)\r\n",
            b"* 4 FETCH (UID 8 BODY[] \"\")\r\n",
            b"* 5 FETCH (UID 9 BODY[] {0}\r\n)\r\n",
        ]);
        assert_eq!(body_of(&r, 5), Some(&b"Subject: x\r\n"[..]));
        assert_eq!(body_of(&r, 4), None, "flags only");
        assert_eq!(body_of(&r, 6), None, "NIL");
        assert_eq!(body_of(&r, 8), None, "empty");
        assert_eq!(body_of(&r, 9), None, "empty literal");
        assert_eq!(body_of(&r, 7), None, "no response");
        assert_eq!(body_of(&[], 5), None);
    }

    fn no(code: Option<&str>) -> ConnError {
        ConnError::No {
            text: "said the server".into(),
            code: code.map(str::to_owned),
        }
    }

    #[test]
    fn refusals_become_specific_errors() {
        for code in ["EXPUNGEISSUED", "NONEXISTENT"] {
            let e = fetch_error("INBOX", 7, no(Some(code)));
            assert!(
                matches!(&e, UpstreamError::NotFound(m) if m == "no message 7 in INBOX: said the server"),
                "{code}: {e:?}"
            );
        }
        for code in ["UNAVAILABLE", "INUSE", "LIMIT"] {
            let e = fetch_error("INBOX", 7, no(Some(code)));
            assert!(
                matches!(&e, UpstreamError::Unavailable(m) if m.contains("message 7 in INBOX")),
                "{code}: {e:?}"
            );
        }
        for code in [None, Some("NOPERM"), Some("SERVERBUG"), Some("TRYCREATE")] {
            let e = fetch_error("Work", 9, no(code));
            assert!(
                matches!(&e, UpstreamError::Refused(m)
                    if m == "the server would not give message 9 in Work: said the server"),
                "{code:?}: {e:?}"
            );
        }
        let e = fetch_error("Work", 9, ConnError::Bad("Invalid uidset".into()));
        assert!(
            matches!(&e, UpstreamError::Protocol(m) if m.contains("message 9 in Work") && m.contains("Invalid uidset")),
            "{e:?}"
        );
        let e = fetch_error("Work", 9, ConnError::Closed("end of stream".into()));
        assert!(matches!(e, UpstreamError::Unavailable(_)), "{e:?}");
    }
}

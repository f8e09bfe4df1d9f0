//! One body part of a message ([`upstream::Upstream::fetch_part`]), so that downloading an
//! attachment does not fetch the whole message.
//!
//! Two FETCHes on one connection, in the mailbox opened with EXAMINE (a pooled connection
//! that has it selected already is preferred):
//!
//! 1. `UID FETCH <uid> (UID BODYSTRUCTURE)`: does the part exist in the gateway's numbering?
//!    The section data alone cannot tell. Dovecot 2.3 answers a section that does not exist
//!    with empty strings, not NIL; it serves `2.1` of a leaf part `2` as part `2` itself;
//!    and a section inside a `message/rfc822` part is a part of the attached message, which
//!    the gateway's partIds do not descend into. So the part is looked up in the structure,
//!    and a part that is not a leaf there is [`UpstreamError::NotFound`] before any body
//!    octet is asked for.
//! 2. For a part inside a multipart, `UID FETCH <uid> (UID BODY.PEEK[<part>.MIME]
//!    BODY.PEEK[<part>])`: its header fields and its body as stored, joined into a
//!    standalone entity. For part `1` of a single-part message, `UID FETCH <uid> (UID
//!    BODY.PEEK[])`: the message itself is that part's entity. (Dovecot 2.3 answers
//!    `1.MIME` of a single-part message with the message's header section, but RFC 3501
//!    leaves it open, and `1` of a single-part `message/rfc822` message may be read as a
//!    part of the attached message; the whole message is the same octets with no doubt.)
//!
//! The part id comes from a client (inside a blob id): it must be a section number — digits
//! and dots, no empty component, no leading zero, bounded — and the section written on the
//! wire is formatted from the parsed numbers, never copied from the input.
//!
//! A mailbox deleted since the last sync is [`UpstreamError::NotFound`], as for the whole
//! message (see [`crate::raw::examine`]), so the download is a 404 rather than a failure.

use upstream::UpstreamError;

use crate::account::ImapAccount;
use crate::conn::{Conn, ConnError, Part};
use crate::proto::{Response, Value};

/// Longest part id accepted, in bytes. Deeper than any real message nests.
const MAX_PART_ID_LEN: usize = 128;

/// The section numbers of a part id (`2.1` → `[2, 1]`); `None` unless it is an IMAP
/// section-part (RFC 3501 §9: nz-numbers joined by dots) of at most [`MAX_PART_ID_LEN`]
/// bytes.
pub(crate) fn section_path(part_id: &str) -> Option<Vec<u32>> {
    if part_id.is_empty() || part_id.len() > MAX_PART_ID_LEN {
        return None;
    }
    part_id
        .split('.')
        .map(|n| {
            // Nine digits always fit a u32; a leading zero is not an nz-number.
            let digits = !n.is_empty()
                && n.len() <= 9
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit());
            if digits { n.parse().ok() } else { None }
        })
        .collect()
}

/// The section text of a path (`[2, 1]` → `2.1`).
fn section(path: &[u32]) -> String {
    path.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// Where a part is, as far as the FETCH that gets it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Located {
    /// Part 1 of a single-part message: the message itself is its entity.
    WholeMessage,
    /// A leaf part inside a multipart: its `.MIME` and body sections.
    Section,
}

/// The leading list items of a BODYSTRUCTURE node, which are its children when it is a
/// multipart; empty for a leaf (and for anything that is not a list).
fn children(node: &Value) -> &[Value] {
    let items = node.list().unwrap_or_default();
    let n = items.iter().take_while(|v| v.list().is_some()).count();
    &items[..n]
}

/// Finds part `path` in a BODYSTRUCTURE, numbered as the gateway's partIds are: a leaf is
/// never descended into (`message/rfc822` included), and only a leaf part is found.
fn locate(bodystructure: &Value, path: &[u32]) -> Option<Located> {
    let mut node = bodystructure;
    node.list()?;
    for (depth, &n) in path.iter().enumerate() {
        let kids = children(node);
        if kids.is_empty() {
            // A leaf: only the top-level part 1 of a single-part message names it.
            return (depth == 0 && n == 1 && path.len() == 1).then_some(Located::WholeMessage);
        }
        node = kids.get(usize::try_from(n).ok()?.checked_sub(1)?)?;
        node.list()?;
    }
    (!path.is_empty() && children(node).is_empty()).then_some(Located::Section)
}

/// The value of FETCH item `name` (case-insensitive) for `uid`, looked for in every FETCH
/// response of that uid (a server may split one message's items over several). `None`:
/// no such response; `Some(None)`: responses, but not that item.
fn item<'a>(untagged: &'a [Response], uid: u32, name: &str) -> Option<Option<&'a Value>> {
    let mut seen = false;
    for r in untagged {
        let Some((_, items)) = r.fetch() else {
            continue;
        };
        let of_uid = items
            .chunks(2)
            .any(|kv| kv[0].is("UID") && kv.get(1).and_then(Value::number) == Some(uid.into()));
        if !of_uid {
            continue;
        }
        seen = true;
        if let Some(kv) = items.chunks(2).find(|kv| kv[0].is(name) && kv.len() == 2) {
            return Some(Some(&kv[1]));
        }
    }
    seen.then_some(None)
}

/// A part's header section and body joined into a standalone entity: the header fields
/// (ending with the empty line the server includes; added when it did not), then the body.
fn entity(mime: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(mime.len() + body.len() + 4);
    out.extend_from_slice(mime);
    let ended =
        mime.ends_with(b"\r\n\r\n") || mime.ends_with(b"\n\n") || mime == b"\r\n" || mime == b"\n";
    if !ended {
        if !mime.is_empty() && !mime.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(body);
    out
}

/// Why a part could not be read from a FETCH reply.
#[derive(Debug, PartialEq, Eq)]
enum Missing {
    /// No FETCH response for the uid: the message is gone.
    Message,
    /// The item is NIL: the server has no such part.
    Part,
    /// The server answered the uid without the item asked for.
    Item(String),
    /// The EXAMINE was refused (with this text) and LIST does not show the mailbox.
    Mailbox(String),
}

/// The octets of FETCH item `name` of `uid` in `untagged`.
fn octets<'a>(untagged: &'a [Response], uid: u32, name: &str) -> Result<&'a [u8], Missing> {
    match item(untagged, uid, name) {
        None => Err(Missing::Message),
        Some(None) => Err(Missing::Item(name.to_owned())),
        Some(Some(Value::Nil)) => Err(Missing::Part),
        Some(Some(v)) => v.bytes().ok_or_else(|| Missing::Item(name.to_owned())),
    }
}

/// The part `part_id` of message `uid` of `mailbox` as a standalone MIME entity.
pub(crate) async fn fetch_part(
    acct: &ImapAccount,
    mailbox: &str,
    uid: &str,
    part_id: &str,
) -> Result<Vec<u8>, UpstreamError> {
    let no_message = || UpstreamError::NotFound(format!("no message {uid} in {mailbox}"));
    let no_part =
        || UpstreamError::NotFound(format!("message {uid} in {mailbox} has no part {part_id}"));
    let uid_n: u32 = match uid.parse() {
        Ok(n) if n > 0 => n,
        _ => return Err(no_message()),
    };
    let Some(path) = section_path(part_id) else {
        return Err(no_part());
    };
    let result = acct
        .read_retrying(Some(mailbox), |conn| {
            Box::pin(run(conn, mailbox, uid_n, &path))
        })
        .await?;
    match result {
        Ok(Ok(entity)) => Ok(entity),
        Ok(Err(Missing::Message)) => Err(no_message()),
        Ok(Err(Missing::Part)) => Err(no_part()),
        Ok(Err(Missing::Mailbox(text))) => Err(UpstreamError::NotFound(format!(
            "no message {uid} in {mailbox}: the mailbox is gone ({text})"
        ))),
        Ok(Err(Missing::Item(name))) => Err(UpstreamError::Protocol(format!(
            "the FETCH reply for message {uid} in {mailbox} has no {name}"
        ))),
        Err(e) => {
            tracing::info!(user = %acct.creds.username, %mailbox, uid, part_id, error = %e, "part FETCH failed");
            Err(e.into())
        }
    }
}

/// The two FETCHes on one connection; the inner error says what the replies lacked.
async fn run(
    conn: &mut Conn,
    mailbox: &str,
    uid: u32,
    path: &[u32],
) -> Result<Result<Vec<u8>, Missing>, ConnError> {
    if let Err(text) = crate::raw::examine(conn, mailbox).await? {
        return Ok(Err(Missing::Mailbox(text)));
    }
    let (untagged, _) = conn
        .run_ok(&[Part::from(format!("UID FETCH {uid} (UID BODYSTRUCTURE)"))])
        .await?;
    let bodystructure = match item(&untagged, uid, "BODYSTRUCTURE") {
        None => return Ok(Err(Missing::Message)),
        Some(None) => return Ok(Err(Missing::Item("BODYSTRUCTURE".into()))),
        Some(Some(v)) => v,
    };
    let Some(located) = locate(bodystructure, path) else {
        return Ok(Err(Missing::Part));
    };
    let (command, items) = content_command(uid, path, located);
    let (untagged, _) = conn.run_ok(&[Part::from(command)]).await?;
    Ok(match located {
        Located::WholeMessage => octets(&untagged, uid, &items[0]).map(<[u8]>::to_vec),
        Located::Section => octets(&untagged, uid, &items[0])
            .and_then(|mime| Ok(entity(mime, octets(&untagged, uid, &items[1])?))),
    })
}

/// The FETCH that gets a located part's octets, and the names of the items it answers with.
fn content_command(uid: u32, path: &[u32], located: Located) -> (String, Vec<String>) {
    match located {
        Located::WholeMessage => (
            format!("UID FETCH {uid} (UID BODY.PEEK[])"),
            vec!["BODY[]".to_owned()],
        ),
        Located::Section => {
            let s = section(path);
            (
                format!("UID FETCH {uid} (UID BODY.PEEK[{s}.MIME] BODY.PEEK[{s}])"),
                vec![format!("BODY[{s}.MIME]"), format!("BODY[{s}]")],
            )
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::parse_lines;

    #[test]
    fn part_ids_must_be_section_numbers() {
        assert_eq!(section_path("1"), Some(vec![1]));
        assert_eq!(section_path("2.1.10"), Some(vec![2, 1, 10]));
        assert_eq!(section_path("999999999"), Some(vec![999_999_999]));
        for bad in [
            "",
            ".",
            "1.",
            ".1",
            "1..2",
            "0",
            "01",
            "1.0",
            "1.02",
            "1a",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1-2",
            "1]",
            "1] UID FETCH 1:* (BODY[]",
            "1\r\nA2 LOGOUT",
            "１",
            "1000000000",
            "HEADER",
            "1.MIME",
            "TEXT",
        ] {
            assert_eq!(section_path(bad), None, "{bad:?}");
        }
        let long = vec!["1"; 64].join(".");
        assert_eq!(long.len(), 127);
        assert!(section_path(&long).is_some());
        let too_long = format!("{long}.1");
        assert_eq!(section_path(&too_long), None);
    }

    #[test]
    fn commands_name_only_parsed_sections() {
        let (c, items) = content_command(7, &[2, 1], Located::Section);
        assert_eq!(c, "UID FETCH 7 (UID BODY.PEEK[2.1.MIME] BODY.PEEK[2.1])");
        assert_eq!(items, ["BODY[2.1.MIME]", "BODY[2.1]"]);
        let (c, items) = content_command(7, &[1], Located::WholeMessage);
        assert_eq!(c, "UID FETCH 7 (UID BODY.PEEK[])");
        assert_eq!(items, ["BODY[]"]);
    }

    /// What Dovecot 2.3 answered for a multipart/mixed of: text/plain, a multipart/alternative
    /// (text, html), a message/rfc822, a base64 application/octet-stream, a header-less part.
    const MIXED: &[u8] = b"* 3 FETCH (UID 3 BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 5 0 NIL NIL NIL NIL)((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL)(\"text\" \"html\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 8 0 NIL NIL NIL NIL) \"alternative\" (\"boundary\" \"i\") NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 50 (NIL \"inner\" ((NIL NIL \"c\" \"example.test\")) ((NIL NIL \"c\" \"example.test\")) ((NIL NIL \"c\" \"example.test\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL)(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 15 0 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"o\") NIL NIL NIL))\r\n";

    const SINGLE: &[u8] = b"* 1 FETCH (UID 1 BODYSTRUCTURE (\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 17 1 NIL NIL NIL NIL))\r\n";

    const SINGLE_RFC822: &[u8] = b"* 2 FETCH (UID 9 BODYSTRUCTURE (\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 50 (NIL \"inner\" NIL NIL NIL NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL))\r\n";

    fn locate_in(reply: &[u8], uid: u32, part_id: &str) -> Option<Located> {
        let r = parse_lines(&[reply]);
        let bs = item(&r, uid, "BODYSTRUCTURE").unwrap().unwrap();
        locate(bs, &section_path(part_id).unwrap())
    }

    #[test]
    fn parts_are_found_in_the_gateways_numbering() {
        for leaf in ["1", "2.1", "2.2", "3", "4", "5"] {
            assert_eq!(locate_in(MIXED, 3, leaf), Some(Located::Section), "{leaf}");
        }
        // A multipart has no content; nothing is below a leaf or inside an attached
        // message; numbers past the last child name nothing.
        for none in ["2", "6", "2.3", "1.1", "3.1", "3.2", "4.1", "2.1.1", "9.9"] {
            assert_eq!(locate_in(MIXED, 3, none), None, "{none}");
        }
        assert_eq!(locate_in(SINGLE, 1, "1"), Some(Located::WholeMessage));
        for none in ["2", "1.1"] {
            assert_eq!(locate_in(SINGLE, 1, none), None, "{none}");
        }
        // A single-part message/rfc822 message: its part 1 is its whole body.
        assert_eq!(
            locate_in(SINGLE_RFC822, 9, "1"),
            Some(Located::WholeMessage)
        );
        assert_eq!(locate_in(SINGLE_RFC822, 9, "1.1"), None);
        assert_eq!(locate(&Value::Nil, &[1]), None);
        assert_eq!(locate(&Value::Atom("x".into()), &[1]), None);
    }

    #[test]
    fn items_are_read_for_the_uid_asked() {
        let r = parse_lines(&[
            // An unsolicited flag change of another message comes first.
            b"* 1 FETCH (UID 4 FLAGS (\\Seen))\r\n",
            b"* 2 FETCH (UID 5 BODY[2.1.MIME] {28}\r\nContent-Type: text/plain\r\n\r\n BODY[2.1] {8}\r\nalt text)\r\n",
        ]);
        let mime = octets(&r, 5, "BODY[2.1.MIME]").unwrap();
        let body = octets(&r, 5, "BODY[2.1]").unwrap();
        assert_eq!(
            entity(mime, body),
            b"Content-Type: text/plain\r\n\r\nalt text"
        );
        // Item names are matched without regard to case.
        assert!(octets(&r, 5, "body[2.1]").is_ok());
        assert_eq!(octets(&r, 6, "BODY[2.1]"), Err(Missing::Message));
        assert_eq!(
            octets(&r, 4, "BODY[2.1]"),
            Err(Missing::Item("BODY[2.1]".into()))
        );
        // Items split over two responses of the same message.
        let r = parse_lines(&[
            b"* 2 FETCH (UID 5 BODY[1.MIME] {2}\r\n\r\n)\r\n",
            b"* 2 FETCH (BODY[1] NIL UID 5)\r\n",
        ]);
        assert_eq!(octets(&r, 5, "BODY[1.MIME]").unwrap(), b"\r\n");
        assert_eq!(octets(&r, 5, "BODY[1]"), Err(Missing::Part));
    }

    #[test]
    fn entities_always_have_an_empty_line_after_the_header() {
        assert_eq!(entity(b"A: b\r\n\r\n", b"x"), b"A: b\r\n\r\nx");
        assert_eq!(entity(b"A: b\r\n", b"x"), b"A: b\r\n\r\nx");
        assert_eq!(entity(b"A: b", b"x"), b"A: b\r\n\r\nx");
        assert_eq!(entity(b"\r\n", b"x"), b"\r\nx");
        assert_eq!(entity(b"", b"x"), b"\r\nx");
        assert_eq!(entity(b"A: b\n\n", b"x"), b"A: b\n\nx");
    }
}

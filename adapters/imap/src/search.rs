//! Server-side full-text search ([`upstream::Upstream::search`]): `UID SEARCH` with `TEXT`,
//! `BODY` or `HEADER` keys, one per term (IMAP ANDs the keys), in the mailbox opened with
//! EXAMINE so that `\Recent` is left alone (a pooled connection that already has it selected
//! is preferred and reused as it is).
//!
//! Terms go as quoted strings when they are 7-bit and printable, else as literals. Non-ASCII
//! terms need `CHARSET UTF-8`, unless UTF8=ACCEPT is enabled, after which RFC 6855 §3 forbids
//! a charset and strings are UTF-8 anyway. A server that refuses UTF-8 (`NO [BADCHARSET]`)
//! is reported as [`UpstreamError::Unsupported`], so the gateway falls back to what it can
//! answer itself.

use std::collections::BTreeSet;

use upstream::{SearchKind, SearchQuery, UpstreamError};

use crate::account::{ImapAccount, ensure_selected};
use crate::conn::{Conn, ConnError, Part, push_astring};
use crate::proto::{Response, Value};
use crate::uidset::UidSet;

/// The uids of `mailbox` whose messages match `query`, ascending, in decimal.
pub(crate) async fn search(
    acct: &ImapAccount,
    mailbox: &str,
    query: &SearchQuery,
) -> Result<Vec<String>, UpstreamError> {
    if let SearchKind::Header(name) = &query.kind
        && !is_field_name(name)
    {
        // No message has a header field by a name that cannot be one.
        return Ok(Vec::new());
    }
    // A literal may not hold NUL (RFC 3501 §4.3); no header or text part holds one either.
    let terms: Vec<String> = query.terms.iter().map(|t| t.replace('\0', "")).collect();
    // A pooled connection that has the mailbox selected already needs no EXAMINE.
    let result = acct
        .read_retrying(Some(mailbox), |conn| {
            Box::pin(run(conn, mailbox, &query.kind, &terms))
        })
        .await?;
    match result {
        Ok(uids) => Ok(uids.iter().map(u32::to_string).collect()),
        Err(ConnError::No {
            code: Some(code),
            text,
        }) if code == "BADCHARSET" => Err(UpstreamError::Unsupported(format!(
            "the server cannot search in UTF-8: {text}"
        ))),
        Err(e) => {
            tracing::info!(user = %acct.creds.username, %mailbox, error = %e, "UID SEARCH failed");
            Err(e.into())
        }
    }
}

async fn run(
    conn: &mut Conn,
    mailbox: &str,
    kind: &SearchKind,
    terms: &[String],
) -> Result<BTreeSet<u32>, ConnError> {
    ensure_selected(conn, mailbox, false).await?;
    let parts = command(kind, terms, conn.is_enabled("UTF8=ACCEPT"));
    let (untagged, _) = conn.run_ok(&parts).await?;
    Ok(uids_in(&untagged))
}

/// RFC 5322 §3.6.8: printable US-ASCII except the colon.
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|c| c.is_ascii_graphic() && c != b':')
}

/// `UID SEARCH [CHARSET UTF-8] <key> <term> <key> <term> ...`.
fn command<'a>(kind: &'a SearchKind, terms: &'a [String], utf8_enabled: bool) -> Vec<Part<'a>> {
    let mut parts = vec![Part::from("UID SEARCH")];
    if !utf8_enabled && terms.iter().any(|t| !t.is_ascii()) {
        parts.push(Part::from(" CHARSET UTF-8"));
    }
    match kind {
        SearchKind::Header(name) => {
            if terms.is_empty() {
                // An empty string matches every message that has the field (RFC 3501 §6.4.4).
                parts.push(Part::from(" HEADER "));
                push_astring(&mut parts, name);
                parts.push(Part::from(" \"\""));
            }
            for t in terms {
                parts.push(Part::from(" HEADER "));
                push_astring(&mut parts, name);
                parts.push(Part::from(" "));
                push_string(&mut parts, t);
            }
        }
        SearchKind::Text | SearchKind::Body => {
            if terms.is_empty() {
                parts.push(Part::from(" ALL"));
            }
            let key = if *kind == SearchKind::Text {
                " TEXT "
            } else {
                " BODY "
            };
            for t in terms {
                parts.push(Part::from(key));
                push_string(&mut parts, t);
            }
        }
    }
    parts
}

/// A search string, always quoted or literal: an atom-looking term like `NIL` or `ALL`
/// stays a string, whatever a lenient server makes of atoms.
fn push_string<'a>(parts: &mut Vec<Part<'a>>, s: &'a str) {
    let printable = !s.is_empty() && s.bytes().all(|c| (0x20..0x7f).contains(&c) || c == b'\t');
    if printable {
        let mut q = Vec::with_capacity(s.len() + 2);
        q.push(b'"');
        for c in s.bytes() {
            if c == b'"' || c == b'\\' {
                q.push(b'\\');
            }
            q.push(c);
        }
        q.push(b'"');
        parts.push(Part::Text(q.into()));
    } else if s.is_empty() {
        parts.push(Part::from("\"\""));
    } else {
        push_astring(parts, s);
    }
}

/// The uids of `* SEARCH` (and of `* ESEARCH ... UID ALL`, which an IMAP4rev2 server may
/// send instead) responses.
fn uids_in(untagged: &[Response]) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    for r in untagged {
        let Response::Data(v) = r else { continue };
        let Some(first) = v.first() else { continue };
        if first.is("SEARCH") {
            // `(MODSEQ n)` at the end is a list, not a number, and is skipped.
            out.extend(
                v[1..]
                    .iter()
                    .filter_map(Value::number)
                    .filter_map(|n| u32::try_from(n).ok()),
            );
        } else if first.is("ESEARCH") && v.iter().any(|x| x.is("UID")) {
            let mut it = v[1..].iter();
            while let Some(x) = it.next() {
                if x.is("ALL")
                    && let Some(set) = it.next().and_then(Value::atom).and_then(UidSet::parse)
                {
                    out.extend(set.iter());
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The command as it goes on the wire (literals as synchronizing ones).
    fn wire(parts: &[Part<'_>]) -> String {
        let mut out = Vec::new();
        for p in parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Literal(l) => {
                    out.extend_from_slice(format!("{{{}}}\r\n", l.len()).as_bytes());
                    out.extend_from_slice(l);
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    fn terms(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn commands() {
        let t = terms(&["hello", "big \"world\""]);
        assert_eq!(
            wire(&command(&SearchKind::Text, &t, false)),
            r#"UID SEARCH TEXT "hello" TEXT "big \"world\"""#
        );
        let t = terms(&["nil"]);
        assert_eq!(
            wire(&command(&SearchKind::Body, &t, false)),
            r#"UID SEARCH BODY "nil""#
        );
        let t = terms(&["grüße"]);
        assert_eq!(
            wire(&command(&SearchKind::Body, &t, false)),
            "UID SEARCH CHARSET UTF-8 BODY {7}\r\ngrüße"
        );
        assert_eq!(
            wire(&command(&SearchKind::Body, &t, true)),
            "UID SEARCH BODY {7}\r\ngrüße"
        );
        let t = terms(&["a\r\nb"]);
        assert_eq!(
            wire(&command(&SearchKind::Text, &t, false)),
            "UID SEARCH TEXT {4}\r\na\r\nb"
        );
        assert_eq!(
            wire(&command(&SearchKind::Text, &[], false)),
            "UID SEARCH ALL"
        );
        let h = SearchKind::Header("X-Custom".into());
        assert_eq!(
            wire(&command(&h, &terms(&["yes"]), false)),
            r#"UID SEARCH HEADER X-Custom "yes""#
        );
        assert_eq!(
            wire(&command(&h, &[], false)),
            r#"UID SEARCH HEADER X-Custom """#
        );
        assert!(is_field_name("List-Id"));
        assert!(!is_field_name("a:b") && !is_field_name("") && !is_field_name("a b"));
    }

    #[test]
    fn search_and_esearch_replies() {
        let parse = |s: &str| crate::proto::parse_response(s.as_bytes()).unwrap();
        let replies = [
            parse("* SEARCH 2 84 882\r\n"),
            parse("* SEARCH 7 (MODSEQ 917162500)\r\n"),
            parse("* SEARCH\r\n"),
            parse("* 3 EXPUNGE\r\n"),
            parse("* ESEARCH (TAG \"g5\") UID ALL 1:3,90\r\n"),
        ];
        assert_eq!(
            uids_in(&replies).into_iter().collect::<Vec<_>>(),
            vec![1, 2, 3, 7, 84, 90, 882]
        );
        assert!(uids_in(&[parse("* SEARCH\r\n")]).is_empty());
    }
}

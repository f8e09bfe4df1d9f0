//! LIST → the contract's mailboxes: special-use roles (RFC 6154), hierarchy through the
//! delimiter, subscriptions, and an identity that survives renames (LIST-STATUS UIDVALIDITY,
//! or MAILBOXID where RFC 8474 is offered).

use std::collections::{BTreeSet, HashMap};

use upstream::{MailboxRole, RemoteMailbox};

use crate::account::{ImapAccount, lock};
use crate::conn::{Conn, ConnError};
use crate::mutf7;
use crate::proto::{Response, Value};

struct Listed {
    name: String,
    delimiter: Option<char>,
    attrs: Vec<String>,
}

fn role_of(name: &str, attrs: &[String]) -> Option<MailboxRole> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Some(MailboxRole::Inbox);
    }
    attrs.iter().find_map(|a| {
        Some(match a.as_str() {
            "\\ALL" => MailboxRole::All,
            "\\ARCHIVE" => MailboxRole::Archive,
            "\\DRAFTS" => MailboxRole::Drafts,
            "\\FLAGGED" => MailboxRole::Flagged,
            "\\JUNK" => MailboxRole::Junk,
            "\\SENT" => MailboxRole::Sent,
            "\\TRASH" => MailboxRole::Trash,
            "\\IMPORTANT" => MailboxRole::Important,
            _ => return None,
        })
    })
}

fn parse_list(v: &[Value]) -> Option<Listed> {
    // LIST (attrs) delimiter name [extended data]
    let attrs = v
        .get(1)?
        .list()?
        .iter()
        .filter_map(Value::atom)
        .map(str::to_ascii_uppercase)
        .collect();
    let delimiter = v.get(2)?.text().and_then(|d| d.chars().next());
    let name = v.get(3)?.text()?;
    Some(Listed {
        name,
        delimiter,
        attrs,
    })
}

/// Lists every mailbox of the account.
pub(crate) async fn list(
    acct: &ImapAccount,
    conn: &mut Conn,
) -> Result<Vec<RemoteMailbox>, ConnError> {
    let extended = conn.has("LIST-EXTENDED");
    let with_status = extended && conn.has("LIST-STATUS");
    let objectid = conn.has("OBJECTID");
    let mut cmd = String::from("LIST \"\" \"*\"");
    if extended {
        let mut ret = vec!["SUBSCRIBED"];
        if conn.has("SPECIAL-USE") {
            ret.push("SPECIAL-USE");
        }
        if with_status {
            ret.push(if objectid {
                "STATUS (UIDVALIDITY MAILBOXID)"
            } else {
                "STATUS (UIDVALIDITY)"
            });
        }
        cmd.push_str(&format!(" RETURN ({})", ret.join(" ")));
    }
    let (untagged, _) = conn.simple(&cmd).await?;
    let mut listed = Vec::new();
    let mut identities: HashMap<String, String> = HashMap::new();
    for r in &untagged {
        let Response::Data(v) = r else { continue };
        if v.first().is_some_and(|x| x.is("LIST")) {
            if let Some(l) = parse_list(v) {
                listed.push(l);
            }
        } else if v.first().is_some_and(|x| x.is("STATUS"))
            && let (Some(name), Some(items)) = (
                v.get(1).and_then(Value::text),
                v.get(2).and_then(Value::list),
            )
        {
            let mut uv = None;
            let mut id = None;
            for kv in items.chunks(2) {
                if kv[0].is("UIDVALIDITY") {
                    uv = kv.get(1).and_then(Value::number);
                } else if kv[0].is("MAILBOXID") {
                    id = kv
                        .get(1)
                        .and_then(Value::list)
                        .and_then(|l| l.first())
                        .and_then(Value::text);
                }
            }
            if let Some(key) = id
                .map(|i| format!("id:{i}"))
                .or(uv.map(|u| format!("uv:{u}")))
            {
                identities.insert(name, key);
            }
        }
    }
    let subscribed: BTreeSet<String> = if extended {
        listed
            .iter()
            .filter(|l| l.attrs.iter().any(|a| a == "\\SUBSCRIBED"))
            .map(|l| l.name.clone())
            .collect()
    } else {
        let (untagged, _) = conn.simple("LSUB \"\" \"*\"").await?;
        untagged
            .iter()
            .filter_map(|r| match r {
                Response::Data(v) if v.first().is_some_and(|x| x.is("LSUB")) => {
                    parse_list(v).map(|l| l.name)
                }
                _ => None,
            })
            .collect()
    };
    let utf8 = conn.is_enabled("UTF8=ACCEPT");
    let mut out = Vec::with_capacity(listed.len());
    for l in listed {
        if l.attrs.iter().any(|a| a == "\\NONEXISTENT")
            && !l.attrs.iter().any(|a| a == "\\SUBSCRIBED")
        {
            continue;
        }
        if let Some(d) = l.delimiter {
            *lock(&acct.delimiter) = Some(d);
        }
        let (parent, leaf) = match l.delimiter.and_then(|d| l.name.rsplit_once(d)) {
            Some((p, leaf)) if !p.is_empty() => (Some(p.to_owned()), leaf.to_owned()),
            _ => (None, l.name.clone()),
        };
        let selectable = !l
            .attrs
            .iter()
            .any(|a| a == "\\NOSELECT" || a == "\\NONEXISTENT");
        out.push(RemoteMailbox {
            role: role_of(&l.name, &l.attrs),
            subscribed: subscribed.contains(&l.name),
            selectable,
            name: if utf8 { leaf } else { mutf7::decode(&leaf) },
            parent,
            remote_id: l.name,
        });
    }
    *lock(&acct.identities) = identities;
    Ok(out)
}

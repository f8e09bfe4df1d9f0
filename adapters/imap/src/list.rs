//! LIST → the contract's mailboxes: special-use roles (RFC 6154), hierarchy through the
//! delimiter, subscriptions, and an identity that survives renames (LIST-STATUS UIDVALIDITY,
//! or MAILBOXID where RFC 8474 is offered).

use std::collections::{BTreeSet, HashMap};

use upstream::{MailboxRole, RemoteMailbox};

use crate::account::{ImapAccount, lock};
use crate::conn::{Conn, ConnError, Part, push_astring};
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

/// Whether LIST shows mailbox `name` (its name on the wire) as one that can be selected;
/// `None` when LIST does not show it at all.
pub(crate) async fn selectable(conn: &mut Conn, name: &str) -> Result<Option<bool>, ConnError> {
    let mut parts = vec![Part::from("LIST \"\" ")];
    push_astring(&mut parts, name);
    let (untagged, _) = conn.run_ok(&parts).await?;
    Ok(selectable_in(&untagged, name))
}

fn selectable_in(untagged: &[Response], name: &str) -> Option<bool> {
    untagged.iter().find_map(|r| match r {
        Response::Data(v) if v.first().is_some_and(|x| x.is("LIST")) => {
            parse_list(v).filter(|l| l.name == name).map(|l| {
                !l.attrs
                    .iter()
                    .any(|a| a == "\\NOSELECT" || a == "\\NONEXISTENT")
            })
        }
        _ => None,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::proto::parse_lines;

    #[test]
    fn a_mailbox_is_selectable_when_listed_without_noselect() {
        let r = parse_lines(&[
            &b"* LIST (\\HasNoChildren) \"/\" Work/Reports\r\n"[..],
            b"* LIST (\\Noselect \\HasChildren) \"/\" Work\r\n",
            b"* LIST (\\NonExistent) \"/\" Gone\r\n",
            b"* LIST () \"/\" \"With Space\"\r\n",
        ]);
        assert_eq!(selectable_in(&r, "Work/Reports"), Some(true));
        assert_eq!(selectable_in(&r, "With Space"), Some(true));
        assert_eq!(selectable_in(&r, "Work"), Some(false));
        assert_eq!(selectable_in(&r, "Gone"), Some(false));
        assert_eq!(selectable_in(&r, "Work/Other"), None);
        assert_eq!(selectable_in(&[], "Work"), None);
    }
}

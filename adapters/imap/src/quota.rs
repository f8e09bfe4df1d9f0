//! Quotas ([`upstream::Upstream::quotas`]): `GETQUOTAROOT INBOX` (RFC 9208 §4.3, formerly
//! RFC 2087), where CAPABILITY offers `QUOTA` or any `QUOTA=RES-*`. The server answers with
//! `* QUOTAROOT INBOX root...` naming the roots that govern the INBOX, then one
//! `* QUOTA root (resource usage limit ...)` per root. The INBOX's roots are taken as the
//! account's: every server we know (Dovecot, Cyrus, Gmail) has one per-user root covering
//! the whole account.
//!
//! A server without the capability gives [`UpstreamError::Unsupported`], so the gateway
//! stops asking; a server that offers it and still says NO (no quota for this user, as
//! Cyrus does) gives an empty list.

use upstream::{RemoteQuota, UpstreamError};

use crate::account::ImapAccount;
use crate::conn::{Conn, ConnError};
use crate::proto::{Response, Value};

/// The quotas of the roots that govern the INBOX, in the server's order.
pub(crate) async fn quotas(acct: &ImapAccount) -> Result<Vec<RemoteQuota>, UpstreamError> {
    let result = acct.read_retrying(None, |conn| Box::pin(run(conn))).await?;
    match result {
        Ok(q) => Ok(q),
        // Offered, yet refused for this user: no quota applies. (A busy server's
        // `NO [UNAVAILABLE]` is an error like any other, to be asked again.)
        Err(ConnError::No { code, .. })
            if !matches!(code.as_deref(), Some("UNAVAILABLE" | "INUSE" | "LIMIT")) =>
        {
            Ok(Vec::new())
        }
        Err(e) => {
            tracing::info!(user = %acct.creds.username, error = %e, "GETQUOTAROOT failed");
            Err(e.into())
        }
    }
}

async fn run(conn: &mut Conn) -> Result<Vec<RemoteQuota>, ConnError> {
    if !offers_quota(conn.caps.iter().map(String::as_str)) {
        return Err(ConnError::Unsupported(
            "the server does not offer QUOTA".into(),
        ));
    }
    let (untagged, _) = conn.simple("GETQUOTAROOT INBOX").await?;
    Ok(quotas_in(&untagged))
}

/// `QUOTA` (RFC 2087, RFC 9208) or any `QUOTA=RES-<resource>` (RFC 9208 §3.1).
fn offers_quota<'a>(mut caps: impl Iterator<Item = &'a str>) -> bool {
    caps.any(|c| {
        let c = c.to_ascii_uppercase();
        c == "QUOTA" || c.starts_with("QUOTA=RES-")
    })
}

/// The resources of the `* QUOTA` responses for the roots `* QUOTAROOT` names (all `QUOTA`
/// responses when there is no `QUOTAROOT`, which a lenient reading of a sloppy server
/// allows). A root reported twice counts once; triples that are not `atom number number`
/// end the root's list, since nothing after them can be trusted.
fn quotas_in(untagged: &[Response]) -> Vec<RemoteQuota> {
    let mut roots: Option<Vec<String>> = None;
    let mut reported: Vec<(String, &[Value])> = Vec::new();
    for r in untagged {
        let Response::Data(v) = r else { continue };
        let Some(first) = v.first() else { continue };
        if first.is("QUOTAROOT") {
            // `QUOTAROOT mailbox root...`
            roots
                .get_or_insert_with(Vec::new)
                .extend(v.iter().skip(2).filter_map(Value::text));
        } else if first.is("QUOTA")
            && let (Some(root), Some(list)) = (v.get(1).and_then(Value::text), v.get(2))
            && let Some(list) = list.list()
            && !reported.iter().any(|(r, _)| *r == root)
        {
            reported.push((root, list));
        }
    }
    let mut out = Vec::new();
    for (root, list) in reported {
        if roots.as_ref().is_some_and(|rs| !rs.contains(&root)) {
            continue;
        }
        for triple in list.chunks(3) {
            let [name, usage, limit] = triple else { break };
            let (Some(name), Some(usage), Some(limit)) =
                (name.atom(), usage.number(), limit.number())
            else {
                break;
            };
            out.push(RemoteQuota {
                root: root.clone(),
                resource: name.to_ascii_uppercase(),
                usage,
                limit,
            });
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Response {
        crate::proto::parse_response(s.as_bytes()).unwrap()
    }

    fn q(root: &str, resource: &str, usage: u64, limit: u64) -> RemoteQuota {
        RemoteQuota {
            root: root.into(),
            resource: resource.into(),
            usage,
            limit,
        }
    }

    #[test]
    fn capability() {
        assert!(offers_quota(["IMAP4REV1", "QUOTA"].into_iter()));
        assert!(offers_quota(["QUOTA=RES-STORAGE"].into_iter()));
        assert!(offers_quota(["quota=res-message"].into_iter()));
        assert!(!offers_quota(
            ["IMAP4REV1", "QUOTASET", "QRESYNC"].into_iter()
        ));
        assert!(!offers_quota(std::iter::empty()));
    }

    #[test]
    fn dovecot_reply() {
        let replies = [
            parse("* QUOTAROOT INBOX \"User quota\"\r\n"),
            parse("* QUOTA \"User quota\" (STORAGE 5 1048576 MESSAGE 1 100000)\r\n"),
        ];
        assert_eq!(
            quotas_in(&replies),
            vec![
                q("User quota", "STORAGE", 5, 1_048_576),
                q("User quota", "MESSAGE", 1, 100_000)
            ]
        );
    }

    #[test]
    fn several_roots_and_odd_replies() {
        let replies = [
            parse("* QUOTAROOT INBOX \"\" user.alice\r\n"),
            // RFC 9208 §5.1's example: resource names in any case, an atom root.
            parse("* QUOTA \"\" (storage 10 512)\r\n"),
            parse("* QUOTA user.alice (MESSAGE 3 100 MAILBOX 2 50)\r\n"),
            // Not one of the INBOX's roots: ignored.
            parse("* QUOTA shared (STORAGE 1 2)\r\n"),
            // A root reported twice counts once.
            parse("* QUOTA \"\" (STORAGE 11 512)\r\n"),
        ];
        assert_eq!(
            quotas_in(&replies),
            vec![
                q("", "STORAGE", 10, 512),
                q("user.alice", "MESSAGE", 3, 100),
                q("user.alice", "MAILBOX", 2, 50)
            ]
        );
        // A malformed triple ends its root's list; what came before it stays.
        let replies = [parse("* QUOTA r (STORAGE 1 2 MESSAGE x 3 MAILBOX 1 1)\r\n")];
        assert_eq!(quotas_in(&replies), vec![q("r", "STORAGE", 1, 2)]);
        // No QUOTAROOT: every QUOTA reply counts. No reply at all: no quota.
        let replies = [parse("* QUOTA r (STORAGE 1 2 MESSAGE 3)\r\n")];
        assert_eq!(quotas_in(&replies), vec![q("r", "STORAGE", 1, 2)]);
        assert!(quotas_in(&[parse("* QUOTAROOT INBOX\r\n")]).is_empty());
        assert!(quotas_in(&[]).is_empty());
    }
}

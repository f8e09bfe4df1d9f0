//! The whole raw message of an Email (`Upstream::fetch_message`, IMAP `UID FETCH BODY.PEEK[]`)
//! against the real Dovecot: a pooled connection whose flow was lost while Dovecot
//! restarted costs no error, and a message that is not there is `NotFound` without costing
//! the connection.

use std::sync::atomic::Ordering;

use imap::{ImapAccount, ImapOptions};
use upstream::{Upstream, UpstreamError};

use crate::imap_support::{
    FlowDroppingProxy, PrivateDovecot, append, create_mailbox, creds, message, other_client,
    upstream_messages,
};

/// The uid of the only message of `mailbox`, as the independent client sees it.
async fn only_uid(c: &mut imap::ImapSession, mailbox: &str) -> String {
    let listed = upstream_messages(c, mailbox).await;
    assert_eq!(listed.len(), 1, "{mailbox}: {listed:?}");
    listed[0].0.to_string()
}

fn connects(acct: &ImapAccount) -> u64 {
    acct.stats.connects.load(Ordering::SeqCst)
}

fn discarded(acct: &ImapAccount) -> u64 {
    acct.stats.broken_connections.load(Ordering::SeqCst)
}

/// Dovecot restarts, and the close of the gateway's pooled connection never reaches the
/// gateway (lost by the proxy, as by a NAT or a load balancer): the connection still looks
/// idle and healthy in the pool, and only the next command meets a reset. The download
/// after the restart gets the exact bytes, with no error, on a new connection. (A restart
/// whose BYE and close do reach the gateway tests nothing here: the pool reads them when it
/// hands the connection out, and opens a new one before any command is sent.)
#[tokio::test]
async fn a_pooled_connection_lost_in_a_server_restart_is_replaced_without_an_error() {
    let dovecot = PrivateDovecot::start();
    let raw = message(
        "restart",
        "restart@example.test",
        "",
        "the body\r\nline two",
    );
    let mut c = other_client(&dovecot.server()).await;
    append(&mut c, "INBOX", "", &raw).await;
    let uid = only_uid(&mut c, "INBOX").await;
    let _ = c.logout().await;

    let proxy = FlowDroppingProxy::start(dovecot.imap_port).await;
    let acct = ImapAccount::new(proxy.server(), creds(), ImapOptions::default());
    assert_eq!(acct.fetch_message("INBOX", &uid).await.unwrap(), raw);
    assert_eq!((connects(&acct), proxy.accepted()), (1, 1));

    proxy.drop_flows();
    dovecot.restart();
    assert_eq!(acct.fetch_message("INBOX", &uid).await.unwrap(), raw);
    // The pooled connection was used, met the reset and was closed; the one retry ran on a
    // new connection, which stays pooled.
    assert_eq!(proxy.resets(), 1, "the pooled connection was tried");
    assert_eq!((connects(&acct), proxy.accepted()), (2, 2));
    assert_eq!(discarded(&acct), 1);
    assert_eq!(acct.fetch_message("INBOX", &uid).await.unwrap(), raw);
    assert_eq!(connects(&acct), 2);
    acct.shutdown().await;
}

/// Fetches message `uid` of `mailbox`, which must be `NotFound` (and pass `check`), then
/// the message `kept` of the INBOX, which must arrive on the adapter's one connection: no
/// new LOGIN, nothing discarded. All checked at once, so a failure shows each.
async fn missing_keeps_the_connection(
    acct: &ImapAccount,
    proxy: &FlowDroppingProxy,
    (mailbox, uid): (&str, &str),
    (kept_uid, kept): (&str, &[u8]),
    check: impl Fn(&str) -> bool,
) {
    let missing = acct.fetch_message(mailbox, uid).await;
    let next = acct.fetch_message("INBOX", kept_uid).await;
    let connections = (connects(acct), proxy.accepted(), discarded(acct));
    let not_found = matches!(&missing, Err(UpstreamError::NotFound(m)) if check(m));
    assert!(
        not_found && next.as_deref().ok() == Some(kept) && connections == (1, 1, 0),
        "{mailbox} {uid}: {missing:?}; then {:?}; (connects, accepted, discarded) = \
         {connections:?}, expected (1, 1, 0)",
        next.map(|b| String::from_utf8_lossy(&b).into_owned())
    );
}

/// Messages that are not there, asked on the adapter's one pooled connection: a uid never
/// used, a message another client expunged after the adapter selected the mailbox
/// (Dovecot: `BODY[] NIL`, `OK [EXPUNGEISSUED]`), a message whose mailbox another client
/// deleted (Dovecot: `NO Mailbox doesn't exist` to the EXAMINE), uids that are none. Each
/// is `NotFound`, and the next fetch of a real message runs on the same connection.
#[tokio::test]
async fn a_missing_message_is_not_found_and_keeps_the_connection() {
    let dovecot = PrivateDovecot::start();
    let kept = message("kept", "kept@example.test", "", "kept body");
    let doomed = message("doomed", "doomed@example.test", "", "doomed body");
    let elsewhere = message("elsewhere", "elsewhere@example.test", "", "elsewhere body");
    let mut c = other_client(&dovecot.server()).await;
    append(&mut c, "INBOX", "", &kept).await;
    append(&mut c, "INBOX", "", &doomed).await;
    create_mailbox(&mut c, "Doomed").await;
    append(&mut c, "Doomed", "", &elsewhere).await;
    let inbox = upstream_messages(&mut c, "INBOX").await;
    let (kept_uid, doomed_uid) = (inbox[0].0.to_string(), inbox[1].0.to_string());
    let elsewhere_uid = only_uid(&mut c, "Doomed").await;

    let proxy = FlowDroppingProxy::start(dovecot.imap_port).await;
    let acct = ImapAccount::new(proxy.server(), creds(), ImapOptions::default());
    assert_eq!(
        acct.fetch_message("Doomed", &elsewhere_uid).await.unwrap(),
        elsewhere
    );
    assert_eq!(
        acct.fetch_message("INBOX", &doomed_uid).await.unwrap(),
        doomed
    );
    let kept_msg = (kept_uid.as_str(), kept.as_slice());
    missing_keeps_the_connection(&acct, &proxy, ("INBOX", "4000"), kept_msg, |_| true).await;

    // Expunged by another client while the adapter's connection has INBOX selected.
    c.select("INBOX").await.unwrap();
    let _: Vec<_> = futures::TryStreamExt::try_collect(
        c.uid_store(&doomed_uid, "+FLAGS (\\Deleted)")
            .await
            .unwrap(),
    )
    .await
    .unwrap();
    let _: Vec<_> = futures::TryStreamExt::try_collect(c.expunge().await.unwrap())
        .await
        .unwrap();
    missing_keeps_the_connection(&acct, &proxy, ("INBOX", &doomed_uid), kept_msg, |_| true).await;

    // The mailbox deleted by another client: the server's NO is in the error, for the
    // whole message and for one part of it alike.
    c.delete("Doomed").await.unwrap();
    missing_keeps_the_connection(&acct, &proxy, ("Doomed", &elsewhere_uid), kept_msg, |m| {
        m.contains("doesn't exist")
    })
    .await;
    let part = acct.fetch_part("Doomed", &elsewhere_uid, "1").await;
    assert!(
        matches!(&part, Err(UpstreamError::NotFound(m)) if m.contains("the mailbox is gone")),
        "{part:?}"
    );
    assert_eq!((connects(&acct), discarded(&acct)), (1, 0));

    // Not a uid at all.
    for bad in ["0", "-1", "1:*", "x"] {
        missing_keeps_the_connection(&acct, &proxy, ("INBOX", bad), kept_msg, |_| true).await;
    }
    let _ = c.logout().await;
    acct.shutdown().await;
}

//! A JMAP client this team did not write — the `jmap-client` crate (Stalwart Labs) — drives a
//! whole mail scenario against the gateway, using the crate's own helpers the way an
//! application would: the Session, Mailbox/get, Email/query and Email/get, keyword and mailbox
//! updates, Email/import, EmailSubmission, Email/changes and the EventSource push stream.
//! Each step's effect is checked where it really lands: upstream through an independent IMAP
//! client, at a small SMTP server of this test, and through the client's own reads.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::{Stream, StreamExt};
use jmap_client::client::Client;
use jmap_client::email::Property;
use jmap_client::email::query::{Comparator as EmailSort, Filter as EmailFilter};
use jmap_client::event_source::PushNotification;
use jmap_client::mailbox::Role;
use jmap_client::{DataType, URI};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::imap_support::{
    PrivateDovecot, USER, append, create_mailbox, message, other_client, upstream_messages,
};
use crate::jmap_support::{JMAP_PASSWORD, JMAP_USER, MailGateway};

/// One mail transaction the SMTP server accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Delivery {
    /// The user name of a successful AUTH on that connection, if any.
    pub auth_user: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub data: Vec<u8>,
}

/// A minimal SMTP server on 127.0.0.1 (EHLO, AUTH PLAIN/LOGIN, MAIL, RCPT, DATA, RSET, NOOP,
/// QUIT) that accepts everything and records each transaction.
pub(crate) struct SmtpSink {
    pub port: u16,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let sink = deliveries.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let sink = sink.clone();
                tokio::spawn(async move {
                    // A broken connection only loses its own transaction.
                    let _ = smtp_session(tcp, sink).await;
                });
            }
        });
        SmtpSink {
            port,
            deliveries,
            task,
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries.lock().unwrap().clone()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address inside `<...>` of a MAIL FROM / RCPT TO argument.
fn angle_addr(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].to_owned()
}

fn b64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .unwrap_or_default()
}

async fn smtp_session(
    tcp: tokio::net::TcpStream,
    sink: Arc<Mutex<Vec<Delivery>>>,
) -> std::io::Result<()> {
    let (read, mut write) = tcp.into_split();
    let mut read = BufReader::new(read);
    let mut line = String::new();
    let mut current = Delivery::default();
    write
        .write_all(b"220 sink.test ESMTP test sink\r\n")
        .await?;
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_owned();
        let upper = command.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SIZE 10485760\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 2.0.0 ok\r\n"
        } else if upper.starts_with("AUTH PLAIN") {
            let mut initial = command["AUTH PLAIN".len()..].trim().to_owned();
            if initial.is_empty() {
                write.write_all(b"334 \r\n").await?;
                read.read_line(&mut initial).await?;
            }
            // authzid NUL authcid NUL password
            let decoded = b64(&initial);
            let parts: Vec<&[u8]> = decoded.split(|b| *b == 0).collect();
            current.auth_user = parts
                .get(1)
                .map(|u| String::from_utf8_lossy(u).into_owned());
            b"235 2.7.0 authenticated\r\n"
        } else if upper.starts_with("AUTH LOGIN") {
            let mut user = command["AUTH LOGIN".len()..].trim().to_owned();
            if user.is_empty() {
                write.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                read.read_line(&mut user).await?;
            }
            write.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
            let mut password = String::new();
            read.read_line(&mut password).await?;
            current.auth_user = Some(String::from_utf8_lossy(&b64(&user)).into_owned());
            b"235 2.7.0 authenticated\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            current.mail_from = angle_addr(&command["MAIL FROM:".len()..]);
            current.rcpt_to.clear();
            b"250 2.1.0 sender ok\r\n"
        } else if upper.starts_with("RCPT TO:") {
            current
                .rcpt_to
                .push(angle_addr(&command["RCPT TO:".len()..]));
            b"250 2.1.5 recipient ok\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if read.read_until(b'\n', &mut l).await? == 0 {
                    return Ok(());
                }
                if l == b".\r\n" || l == b".\n" {
                    break;
                }
                // Dot-unstuffing (RFC 5321 §4.5.2).
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            let mut delivery = current.clone();
            delivery.data = data;
            sink.lock().unwrap().push(delivery);
            current.mail_from.clear();
            current.rcpt_to.clear();
            b"250 2.0.0 queued\r\n"
        } else if upper.starts_with("RSET") {
            current.mail_from.clear();
            current.rcpt_to.clear();
            b"250 2.0.0 reset\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 2.0.0 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 5.5.1 not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}

/// Three messages in INBOX (one already read) and an empty Archive, put there before the
/// gateway starts. The seed hook is synchronous, so it runs on a runtime of its own.
fn seed(dovecot: &PrivateDovecot) {
    let server = dovecot.server();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut c = other_client(&server).await;
                append(
                    &mut c,
                    "INBOX",
                    "",
                    &message("Agenda", "agenda@jc.test", "", "items"),
                )
                .await;
                append(
                    &mut c,
                    "INBOX",
                    "",
                    &message("Minutes", "minutes@jc.test", "", "notes"),
                )
                .await;
                append(
                    &mut c,
                    "INBOX",
                    "\\Seen",
                    &message("Budget", "budget@jc.test", "", "sums"),
                )
                .await;
                create_mailbox(&mut c, "Archive").await;
                let _ = c.logout().await;
            });
        })
        .join()
        .unwrap();
    });
}

/// A message from the account's own address, to be imported and then sent.
fn outgoing() -> Vec<u8> {
    format!(
        "From: Tester <{USER}@example.test>\r\nTo: Bob <bob@example.test>\r\n\
         Subject: Quarterly report\r\nDate: Fri, 02 Jan 2026 09:30:00 +0000\r\n\
         Message-ID: <report@jc.test>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nThe numbers are in.\r\n"
    )
    .into_bytes()
}

/// Panics naming the step and the client's error (its Display names the JMAP error type).
fn step<T>(what: &str, r: jmap_client::Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{what} through jmap-client failed: {e} ({e:?})"))
}

/// Reads the client's EventSource stream until a StateChange for `account` carries a `kind`
/// state other than `old`; returns that state.
async fn pushed_state(
    events: &mut (impl Stream<Item = jmap_client::Result<PushNotification>> + Unpin),
    account: &str,
    kind: DataType,
    old: Option<&str>,
    secs: u64,
) -> String {
    let found = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            match events.next().await {
                Some(Ok(PushNotification::StateChange(changes))) => {
                    let state = changes
                        .changes(account)
                        .and_then(|mut c| c.find(|(t, _)| **t == kind).map(|(_, s)| s.clone()));
                    match state {
                        Some(s) if Some(s.as_str()) != old => return s,
                        _ => continue,
                    }
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the EventSource stream failed: {e} ({e:?})"),
                None => panic!("the EventSource stream ended"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| {
        panic!("no StateChange with a new {kind:?} state of {account} within {secs} s")
    })
}

/// Polls `check` every 100 ms for up to `secs` seconds.
async fn within<T, Fut: std::future::Future<Output = Option<T>>>(
    secs: u64,
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a header block (from `upstream_messages`) has this Subject.
fn has_subject(header: &[u8], subject: &str) -> bool {
    String::from_utf8_lossy(header)
        .lines()
        .any(|l| l.trim_end() == format!("Subject: {subject}"))
}

#[tokio::test]
async fn jmap_client_drives_a_full_mail_scenario() {
    let smtp = SmtpSink::start().await;
    let g = MailGateway::start_with_smtp(seed, smtp.port).await;
    let account = g.account_id.clone();

    // --- Session (RFC 8620 §2): the client fetches /.well-known/jmap under the base URL.
    let mut client = step(
        "connect (Session)",
        Client::new()
            .credentials((JMAP_USER, JMAP_PASSWORD))
            .follow_redirects(["127.0.0.1"])
            .timeout(Duration::from_secs(30))
            .connect(&g.base)
            .await,
    );
    // The client picks its default account from a hash map of primaryAccounts; be explicit.
    client.set_default_account_id(account.clone());
    let session = client.session();
    assert_eq!(session.username(), JMAP_USER);
    assert!(
        session.api_url().starts_with(&g.base),
        "{}",
        session.api_url()
    );
    assert!(
        session.core_capabilities().is_some(),
        "core capability: {session:?}"
    );
    assert!(session.has_capability(URI::Mail.as_ref()));
    assert!(session.has_capability(URI::Submission.as_ref()));
    assert!(
        session
            .primary_accounts()
            .any(|(cap, id)| cap == URI::Mail.as_ref() && *id == account),
        "primaryAccounts: {session:?}"
    );
    // jmap-client types maxMailboxDepth as a number, so the gateway's (RFC-allowed) null makes
    // it read the capability object as an empty one; that it is listed is what matters here.
    let listed = session
        .account(&account)
        .is_some_and(|a| a.capabilities().any(|c| c == URI::Mail.as_ref()));
    assert!(listed, "the account lists the mail capability: {session:?}");

    // --- Mailbox/get of every mailbox.
    let mut request = client.build();
    request.get_mailbox();
    let mut mailboxes = step("Mailbox/get", request.send_get_mailbox().await);
    let mailboxes = mailboxes.take_list();
    let inbox = mailboxes
        .iter()
        .find(|m| m.role() == Role::Inbox)
        .unwrap_or_else(|| panic!("no inbox in {mailboxes:?}"));
    let inbox_id = inbox.id().unwrap().to_owned();
    assert_eq!(inbox.total_emails(), 3, "{inbox:?}");
    assert_eq!(inbox.unread_emails(), 2, "{inbox:?}");
    let archive_id = mailboxes
        .iter()
        .find(|m| m.name() == Some("Archive"))
        .and_then(|m| m.id())
        .unwrap_or_else(|| panic!("no Archive in {mailboxes:?}"))
        .to_owned();

    // --- Email/query in the inbox, then Email/get of the results (keeping the Email state).
    let query = step(
        "Email/query",
        client
            .email_query(
                Some(EmailFilter::in_mailbox(&inbox_id)),
                Some([EmailSort::received_at().descending()]),
            )
            .await,
    );
    assert_eq!(query.ids().len(), 3, "{query:?}");
    let mut request = client.build();
    request.get_email().ids(query.ids().to_vec()).properties([
        Property::Id,
        Property::Subject,
        Property::From,
        Property::MailboxIds,
        Property::Keywords,
        Property::ReceivedAt,
    ]);
    let mut got = step("Email/get", request.send_get_email().await);
    let email_state = got.state().to_owned();
    let emails = got.take_list();
    let subjects: BTreeSet<&str> = emails.iter().filter_map(|e| e.subject()).collect();
    assert_eq!(subjects, BTreeSet::from(["Agenda", "Budget", "Minutes"]));
    for e in &emails {
        assert_eq!(e.mailbox_ids(), vec![inbox_id.as_str()], "{e:?}");
        assert_eq!(e.from().map(|f| f[0].email()), Some("alice@example.test"));
        assert!(e.received_at().is_some(), "{e:?}");
    }
    let id_of = |subject: &str| {
        emails
            .iter()
            .find(|e| e.subject() == Some(subject))
            .and_then(|e| e.id())
            .unwrap()
            .to_owned()
    };
    let (agenda, minutes) = (id_of("Agenda"), id_of("Minutes"));
    assert!(
        emails
            .iter()
            .any(|e| e.subject() == Some("Budget") && e.keywords() == vec!["$seen"]),
        "Budget was seeded as read: {emails:?}"
    );

    // --- The push stream, opened before anything changes.
    let mut events = step(
        "EventSource",
        client
            .event_source(None::<Vec<DataType>>, false, None, None)
            .await,
    );

    // --- Email/set: a keyword, then the StateChange it causes.
    step(
        "Email/set keyword",
        client.email_set_keyword(&agenda, "$flagged", true).await,
    );
    let pushed_email_state = pushed_state(
        &mut events,
        &account,
        DataType::Email,
        Some(&email_state),
        15,
    )
    .await;
    let flagged = step(
        "Email/get after the keyword",
        client.email_get(&agenda, Some([Property::Keywords])).await,
    )
    .expect("the flagged Email still exists");
    assert_eq!(flagged.keywords(), vec!["$flagged"], "{flagged:?}");
    let mut imap = other_client(&g.dovecot.server()).await;
    let upstream_inbox = upstream_messages(&mut imap, "INBOX").await;
    let agenda_upstream = upstream_inbox
        .iter()
        .find(|m| has_subject(&m.2, "Agenda"))
        .expect("Agenda is still in the upstream INBOX");
    assert!(
        agenda_upstream.1.iter().any(|f| f.contains("Flagged")),
        "upstream flags of Agenda: {:?}",
        agenda_upstream.1
    );

    // --- Email/set mailboxIds: move Minutes to Archive.
    step(
        "Email/set mailboxIds (move)",
        client.email_set_mailboxes(&minutes, [&archive_id]).await,
    );
    let upstream_archive = upstream_messages(&mut imap, "Archive").await;
    assert_eq!(upstream_archive.len(), 1, "upstream Archive after the move");
    assert!(has_subject(&upstream_archive[0].2, "Minutes"));
    let upstream_inbox = upstream_messages(&mut imap, "INBOX").await;
    assert_eq!(upstream_inbox.len(), 2, "upstream INBOX after the move");
    assert!(!upstream_inbox.iter().any(|m| has_subject(&m.2, "Minutes")));
    let moved = step(
        "Email/get after the move",
        client
            .email_get(&minutes, Some([Property::MailboxIds]))
            .await,
    )
    .expect("the moved Email keeps its id");
    assert_eq!(moved.mailbox_ids(), vec![archive_id.as_str()], "{moved:?}");

    // --- Email/import (upload, then import) into the inbox.
    let received_at = 1_767_346_200; // 2026-01-02T09:30:00Z
    let imported = step(
        "upload + Email/import",
        client
            .email_import(outgoing(), [&inbox_id], Some(["$seen"]), Some(received_at))
            .await,
    );
    let imported_id = imported
        .id()
        .expect("the import answers the new id")
        .to_owned();
    let query = step(
        "Email/query after the import",
        client
            .email_query(
                Some(EmailFilter::in_mailbox(&inbox_id)),
                None::<Vec<jmap_client::core::query::Comparator<EmailSort>>>,
            )
            .await,
    );
    assert!(query.ids().contains(&imported_id), "{query:?}");
    assert_eq!(
        query.ids().len(),
        3,
        "Agenda, Budget and the import: {query:?}"
    );
    let fetched = step(
        "Email/get of the import",
        client
            .email_get(
                &imported_id,
                Some([Property::Subject, Property::Keywords, Property::ReceivedAt]),
            )
            .await,
    )
    .expect("the imported Email is readable");
    assert_eq!(fetched.subject(), Some("Quarterly report"));
    assert_eq!(fetched.keywords(), vec!["$seen"]);
    assert_eq!(fetched.received_at(), Some(received_at));
    let upstream_inbox = upstream_messages(&mut imap, "INBOX").await;
    let report = upstream_inbox
        .iter()
        .find(|m| has_subject(&m.2, "Quarterly report"))
        .expect("the import is in the upstream INBOX");
    assert!(
        report.1.iter().any(|f| f.contains("Seen")),
        "{:?}",
        report.1
    );
    let _ = imap.logout().await;

    // --- EmailSubmission of the imported message with an explicit envelope.
    let mut request = client.build();
    request.get_identity();
    let mut identities = step("Identity/get", request.send_get_identity().await);
    let identities = identities.take_list();
    let identity = identities
        .iter()
        .find(|i| i.email() == Some(format!("{USER}@example.test").as_str()))
        .unwrap_or_else(|| panic!("no identity for {USER}@example.test in {identities:?}"));
    let identity_id = identity.id().unwrap().to_owned();
    let submission_state = step("EmailSubmission/get", {
        let mut request = client.build();
        request.get_email_submission().ids(Vec::<String>::new());
        request.send_get_email_submission().await
    })
    .state()
    .to_owned();
    let submission = step(
        "EmailSubmission/set create",
        client
            .email_submission_create_envelope(
                &imported_id,
                &identity_id,
                format!("{USER}@example.test"),
                ["bob@example.test"],
            )
            .await,
    );
    assert!(submission.id().is_some(), "{submission:?}");
    let delivery = within(15, "the submission at the SMTP server", || async {
        smtp.deliveries().into_iter().next()
    })
    .await;
    assert_eq!(delivery.mail_from, format!("{USER}@example.test"));
    assert_eq!(delivery.rcpt_to, vec!["bob@example.test".to_owned()]);
    assert_eq!(delivery.auth_user.as_deref(), Some(USER));
    let data = String::from_utf8_lossy(&delivery.data);
    assert!(data.contains("Subject: Quarterly report"), "{data}");
    assert!(data.contains("The numbers are in."), "{data}");
    assert!(!data.to_ascii_lowercase().contains("\nbcc:"), "{data}");

    // --- Email/changes since the state read before any change.
    let (mut created, mut updated, mut destroyed) = (Vec::new(), Vec::new(), Vec::new());
    let mut since = email_state.clone();
    loop {
        let mut changes = step("Email/changes", client.email_changes(&since, None).await);
        created.extend(changes.take_created());
        updated.extend(changes.take_updated());
        destroyed.extend(changes.take_destroyed());
        since = changes.take_new_state();
        if !changes.has_more_changes() {
            break;
        }
    }
    assert!(created.contains(&imported_id), "created {created:?}");
    assert!(updated.contains(&agenda), "updated {updated:?}");
    assert!(updated.contains(&minutes), "updated {updated:?}");
    assert!(destroyed.is_empty(), "destroyed {destroyed:?}");
    // The state pushed after the keyword change is one the server can compute changes from.
    let mut since_push = step(
        "Email/changes since the pushed state",
        client.email_changes(&pushed_email_state, None).await,
    );
    assert!(
        since_push.take_created().contains(&imported_id),
        "the import came after the pushed state"
    );

    // --- The submission changed EmailSubmission state too, and the stream says so.
    pushed_state(
        &mut events,
        &account,
        DataType::EmailSubmission,
        Some(&submission_state),
        15,
    )
    .await;
}

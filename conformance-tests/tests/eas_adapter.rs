//! The EAS adapter (`eas::EasAccount`) against the real SOGo stack. Changes on the other side
//! are made through the stack's own Dovecot by an independent IMAP client (python3 imaplib).
//! Every test works in mailboxes of its own and uses its own DeviceId.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use conformance_tests::sogo;
use eas::{EasAccount, EasEndpoint, EasSettings};
use upstream::{
    BoxFuture, Envelope, MailboxRole, MessageChange, RemoteMailbox, RemoteMessage, SendSource,
    SourceKind, SyncBatch, SyncSink, Upstream, UpstreamError, WriteOp, WriteOutcome,
};

/// The stack's Dovecot (IMAP), where SOGo keeps the mail.
pub(crate) fn imap_port() -> u16 {
    std::env::var("EAS_IMAP_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(20143)
}

pub(crate) fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}{}{}", std::process::id(), nanos % 1_000_000_000)
}

/// Runs a python3 imaplib script logged in as `user` (`m` is the connection); returns stdout.
pub(crate) fn imap(user: usize, script: &str) -> String {
    let s = sogo();
    let u = &s.users[user];
    let program = format!(
        "import imaplib, sys, time\n\
         m = imaplib.IMAP4('127.0.0.1', {port})\n\
         m.login({name:?}, {pw:?})\n\
         {script}\n\
         m.logout()\n",
        port = imap_port(),
        name = u.name,
        pw = u.password.expose(),
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(&program)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "imap script failed: {}\n{program}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn message(i: usize, subject: &str) -> String {
    format!(
        "From: Bob <bob@example.test>\\r\\nTo: Alice <alice@example.test>\\r\\n\
         Subject: {subject}\\r\\nDate: Thu, 26 Nov 2026 14:{:02}:{:02} +0000\\r\\n\
         Message-ID: <{subject}.{i}@example.test>\\r\\n\\r\\nBody of {subject}.\\r\\n",
        i / 60 % 60,
        i % 60
    )
}

/// Creates `mailbox` for alice holding `count` messages `subject-N`; `flags(i)` per message.
pub(crate) fn make_mailbox(
    mailbox: &str,
    subject: &str,
    count: usize,
    flags: impl Fn(usize) -> &'static str,
) {
    let mut script = format!("m.create({mailbox:?})\n");
    for i in 0..count {
        script.push_str(&format!(
            "m.append({mailbox:?}, {:?}, None, b\"{}\")\n",
            flags(i),
            message(i, &format!("{subject}-{i}"))
        ));
    }
    imap(0, &script);
    qresync_touch("alice", mailbox);
}

/// SOGo syncs a mailbox only after QRESYNC was enabled on it once.
fn qresync_touch(user: &str, mailbox: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scripts/test-servers/eas-stack.sh"
    );
    let out = Command::new(script)
        .args(["qresync-touch", user, mailbox])
        .output()
        .expect("eas-stack.sh runs");
    assert!(
        out.status.success(),
        "qresync-touch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn account(test: &str, settings: EasSettings) -> EasAccount {
    let s = sogo();
    let device: String = unique(test)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(32)
        .collect();
    EasAccount::new(
        EasEndpoint {
            url: s.url.clone(),
            username: s.users[0].name.clone(),
            password: s.users[0].password.clone(),
            device_id: device,
            device_type: "JmapGatewayTest".into(),
            extra_ca_pem: None,
        },
        settings,
    )
    .unwrap()
}

/// Collects every batch, as the gateway would commit them.
#[derive(Debug, Default)]
struct Collect {
    batches: Vec<SyncBatch>,
}

impl SyncSink for Collect {
    fn apply(&mut self, batch: SyncBatch) -> BoxFuture<'_, Result<(), UpstreamError>> {
        self.batches.push(batch);
        Box::pin(async { Ok(()) })
    }
}

impl Collect {
    fn upserts(&self) -> Vec<&RemoteMessage> {
        self.batches
            .iter()
            .flat_map(|b| &b.changes)
            .filter_map(|c| match c {
                MessageChange::Upsert(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    fn changes(&self) -> Vec<&MessageChange> {
        self.batches.iter().flat_map(|b| &b.changes).collect()
    }

    fn cursor(&self) -> Vec<u8> {
        self.batches.last().unwrap().cursor.clone()
    }
}

fn subject(m: &RemoteMessage) -> String {
    String::from_utf8_lossy(&m.header_block)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or_default()
        .to_owned()
}

async fn find(account: &EasAccount, name: &str) -> RemoteMailbox {
    let all = account.list_mailboxes().await.unwrap();
    all.iter()
        .find(|m| m.name == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not in {all:?}"))
}

async fn sync(account: &EasAccount, mailbox: &RemoteMailbox, cursor: Option<&[u8]>) -> Collect {
    let mut sink = Collect::default();
    account
        .sync_mailbox(mailbox, cursor, &mut sink)
        .await
        .unwrap();
    let last = sink.batches.last().expect("at least one batch");
    assert!(last.complete, "the pass ends with a complete batch");
    sink
}

#[tokio::test]
async fn folders_become_mailboxes_with_roles_and_no_calendars() {
    let a = account("folders", EasSettings::default());
    let all = a.list_mailboxes().await.unwrap();
    let role = |r| all.iter().filter(|m| m.role == Some(r)).count();
    assert_eq!(role(MailboxRole::Inbox), 1, "{all:?}");
    assert_eq!(role(MailboxRole::Sent), 1, "{all:?}");
    assert_eq!(role(MailboxRole::Drafts), 1, "{all:?}");
    assert_eq!(role(MailboxRole::Trash), 1, "{all:?}");
    assert_eq!(role(MailboxRole::Junk), 1, "{all:?}");
    assert!(
        all.iter()
            .all(|m| !m.name.contains("Calendar") && !m.name.contains("Address")),
        "{all:?}"
    );
}

#[tokio::test]
async fn initial_sync_is_exact_and_paged() {
    const COUNT: usize = 120;
    let name = unique("easinit");
    make_mailbox(&name, &name, COUNT, |i| match i % 3 {
        0 => "(\\Seen)",
        1 => "(\\Flagged)",
        _ => "()",
    });
    let a = account(
        "initial",
        EasSettings {
            window_size: 25,
            ..EasSettings::default()
        },
    );
    let mailbox = find(&a, &name).await;
    assert_eq!(mailbox.role, None);
    let started = Instant::now();
    let sink = sync(&a, &mailbox, None).await;
    let elapsed = started.elapsed();
    println!(
        "EAS initial sync: {COUNT} messages in {elapsed:?} = {:.0} msg/s ({} batches)",
        COUNT as f64 / elapsed.as_secs_f64(),
        sink.batches.len()
    );
    assert!(sink.batches[0].reset, "a sync from scratch voids old uids");
    assert!(sink.batches[1..].iter().all(|b| !b.reset));
    assert!(sink.batches.len() >= COUNT / 25, "paged by WindowSize");
    assert!(
        sink.batches.iter().all(|b| b.changes.len() <= 25),
        "batches stay within the window"
    );
    let upserts = sink.upserts();
    assert_eq!(upserts.len(), COUNT);
    let uids: BTreeSet<_> = upserts.iter().map(|m| m.uid.clone()).collect();
    let fingerprints: BTreeSet<_> = upserts.iter().map(|m| m.fingerprint.clone()).collect();
    assert_eq!((uids.len(), fingerprints.len()), (COUNT, COUNT));
    for m in &upserts {
        let s = subject(m);
        let i: usize = s.rsplit('-').next().unwrap().parse().unwrap();
        assert_eq!(s, format!("{name}-{i}"));
        let expected: BTreeSet<String> = match i % 3 {
            0 => ["$seen".to_owned()].into(),
            1 => ["$flagged".to_owned()].into(),
            _ => BTreeSet::new(),
        };
        assert_eq!(m.keywords, expected, "{s}");
        assert_eq!(m.preview.as_deref(), Some(format!("Body of {s}.").as_str()));
        assert!(m.received_at > 1_700_000_000);
        assert!(m.thread_hint.is_some());
    }
    let progress = sink.batches.last().unwrap().progress;
    assert_eq!(progress.map(|p| p.0), Some(COUNT as u64), "{progress:?}");

    // Caught up: syncing from the cursor brings nothing.
    let again = sync(&a, &mailbox, Some(&sink.cursor())).await;
    assert!(again.changes().is_empty(), "{:?}", again.batches);
}

#[tokio::test]
async fn ping_wakes_on_new_mail_and_sync_brings_it() {
    let name = unique("easping");
    make_mailbox(&name, &name, 1, |_| "()");
    let a = account("ping", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    assert_eq!(first.upserts().len(), 1);

    let watched = vec![mailbox.clone()];
    let appender = {
        let name = name.clone();
        tokio::task::spawn_blocking(move || {
            std::thread::sleep(Duration::from_secs(3));
            let sent = Instant::now();
            imap(
                0,
                &format!(
                    "m.append({name:?}, None, None, b\"{}\")",
                    message(99, "arrived-during-ping")
                ),
            );
            sent
        })
    };
    let changed = a
        .wait_for_changes(&watched, Duration::from_secs(45))
        .await
        .unwrap();
    let woke = Instant::now();
    let appended = appender.await.unwrap();
    println!(
        "EAS Ping: new mail reported {:?} after the IMAP APPEND",
        woke.duration_since(appended)
    );
    assert_eq!(changed, vec![mailbox.remote_id.clone()]);
    let next = sync(&a, &mailbox, Some(&first.cursor())).await;
    let new: Vec<_> = next.upserts().iter().map(|m| subject(m)).collect();
    assert_eq!(new, ["arrived-during-ping"]);
}

#[tokio::test]
async fn idle_ping_times_out_empty() {
    let name = unique("easidle");
    make_mailbox(&name, &name, 1, |_| "()");
    let a = account("idle", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    assert_eq!(first.upserts().len(), 1);
    let started = Instant::now();
    let changed = a
        .wait_for_changes(&[mailbox], Duration::from_secs(12))
        .await
        .unwrap();
    assert!(changed.is_empty(), "{changed:?}");
    assert!(started.elapsed() >= Duration::from_secs(11));
}

fn imap_flags(mailbox: &str) -> String {
    imap(
        0,
        &format!("m.select({mailbox:?})\nprint(m.fetch('1:*', '(FLAGS)')[1])"),
    )
}

#[tokio::test]
async fn read_and_flag_changes_go_both_ways() {
    let name = unique("easflags");
    make_mailbox(&name, &name, 2, |_| "()");
    let a = account("flags", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    let by_subject = |c: &Collect, s: &str| {
        c.upserts()
            .into_iter()
            .find(|m| subject(m) == s)
            .cloned()
            .unwrap()
    };
    let m0 = by_subject(&first, &format!("{name}-0"));

    // IMAP → EAS: \Seen and \Flagged on message 0.
    imap(
        0,
        &format!("m.select({name:?})\nm.store('1', '+FLAGS', '(\\\\Seen \\\\Flagged)')"),
    );
    let after = sync(&a, &mailbox, Some(&first.cursor())).await;
    let keywords: Vec<_> = after
        .changes()
        .into_iter()
        .filter_map(|c| match c {
            MessageChange::Keywords { uid, keywords } if *uid == m0.uid => Some(keywords.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        keywords,
        [BTreeSet::from(["$flagged".to_owned(), "$seen".to_owned()])],
        "{:?}",
        after.batches
    );

    // EAS → IMAP: unset \Seen and \Flagged on 0, set both on 1.
    let m1 = by_subject(&first, &format!("{name}-1"));
    let done = a
        .apply(WriteOp::SetKeywords {
            mailbox: mailbox.remote_id.clone(),
            uids: vec![m0.uid.clone()],
            add: BTreeSet::new(),
            remove: ["$seen".to_owned(), "$flagged".to_owned()].into(),
        })
        .await
        .unwrap();
    assert_eq!(done, WriteOutcome::Done);
    a.apply(WriteOp::SetKeywords {
        mailbox: mailbox.remote_id.clone(),
        uids: vec![m1.uid.clone()],
        add: ["$seen".to_owned(), "$flagged".to_owned()].into(),
        remove: BTreeSet::new(),
    })
    .await
    .unwrap();
    let flags = imap_flags(&name);
    assert!(flags.contains("1 (FLAGS ())"), "{flags}");
    assert!(
        flags.contains("2 (FLAGS (\\\\Seen \\\\Flagged))")
            || flags.contains("2 (FLAGS (\\\\Flagged \\\\Seen))"),
        "{flags}"
    );

    // Keywords EAS cannot store are refused up front.
    let err = a
        .apply(WriteOp::SetKeywords {
            mailbox: mailbox.remote_id.clone(),
            uids: vec![m1.uid.clone()],
            add: ["$answered".to_owned()].into(),
            remove: BTreeSet::new(),
        })
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn move_keeps_the_fingerprint_and_delete_removes() {
    let from_name = unique("easmovea");
    let to_name = unique("easmoveb");
    make_mailbox(&from_name, &from_name, 3, |_| "()");
    make_mailbox(&to_name, &to_name, 0, |_| "()");
    let a = account("move", EasSettings::default());
    let from = find(&a, &from_name).await;
    let to = find(&a, &to_name).await;
    let source = sync(&a, &from, None).await;
    let target = sync(&a, &to, None).await;
    assert!(target.upserts().is_empty());
    let moving = source
        .upserts()
        .into_iter()
        .find(|m| subject(m) == format!("{from_name}-1"))
        .cloned()
        .unwrap();

    let outcome = a
        .apply(WriteOp::Move {
            from: from.remote_id.clone(),
            uids: vec![moving.uid.clone()],
            to: to.remote_id.clone(),
        })
        .await
        .unwrap();
    let WriteOutcome::Moved(pairs) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(pairs.len(), 1);
    assert_eq!(pairs[0].0, moving.uid);
    let new_uid = pairs[0]
        .1
        .clone()
        .expect("MoveItems names the new ServerId");

    let arrived = sync(&a, &to, Some(&target.cursor())).await;
    let moved = arrived.upserts();
    assert_eq!(moved.len(), 1, "{:?}", arrived.batches);
    assert_eq!(moved[0].uid, new_uid);
    assert_eq!(
        moved[0].fingerprint, moving.fingerprint,
        "same message, same fingerprint"
    );
    let imap_list = imap(0, &format!("print(m.select({to_name:?}))"));
    assert!(imap_list.contains("[b'1']"), "{imap_list}");

    // Delete one of the remaining messages for good.
    let gone = source
        .upserts()
        .into_iter()
        .find(|m| subject(m) == format!("{from_name}-2"))
        .cloned()
        .unwrap();
    let after_move = sync(&a, &from, Some(&source.cursor())).await;
    a.apply(WriteOp::Delete {
        mailbox: from.remote_id.clone(),
        uids: vec![gone.uid.clone()],
    })
    .await
    .unwrap();
    let left = imap(
        0,
        &format!("m.select({from_name:?})\nprint(m.search(None, 'UNDELETED')[1])"),
    );
    assert!(left.contains("[b'1']"), "one message left: {left}");

    // An IMAP-side expunge comes back as Removed.
    imap(
        0,
        &format!("m.select({from_name:?})\nm.store('1:*', '+FLAGS', '\\\\Deleted')\nm.expunge()"),
    );
    let removed = sync(&a, &from, Some(&after_move.cursor())).await;
    let kept = source
        .upserts()
        .into_iter()
        .find(|m| subject(m) == format!("{from_name}-0"))
        .unwrap()
        .uid
        .clone();
    assert!(
        removed
            .changes()
            .iter()
            .any(|c| matches!(c, MessageChange::Removed { uid } if *uid == kept)),
        "{:?}",
        removed.batches
    );
}

#[tokio::test]
async fn folders_are_created_renamed_and_deleted() {
    let name = unique("easfolder");
    let renamed = format!("{name}-renamed");
    let a = account("folderwrite", EasSettings::default());
    let created = a
        .apply(WriteOp::CreateMailbox {
            parent: None,
            name: name.clone(),
        })
        .await
        .unwrap();
    let WriteOutcome::Mailbox(mailbox) = created else {
        panic!("{created:?}")
    };
    assert_eq!(
        (mailbox.name.as_str(), mailbox.parent.as_deref()),
        (name.as_str(), None)
    );
    let listed = imap(0, "print(m.list()[1])");
    assert!(
        listed.contains(&format!("\"{name}\"")) || listed.contains(&name),
        "{listed}"
    );
    assert_eq!(find(&a, &name).await.remote_id, mailbox.remote_id);

    let updated = a
        .apply(WriteOp::RenameMailbox {
            remote_id: mailbox.remote_id.clone(),
            parent: None,
            name: renamed.clone(),
        })
        .await
        .unwrap();
    assert!(
        matches!(&updated, WriteOutcome::Mailbox(m) if m.name == renamed),
        "{updated:?}"
    );
    let listed = imap(0, "print(m.list()[1])");
    assert!(listed.contains(&renamed), "{listed}");
    let again = a.list_mailboxes().await.unwrap();
    assert!(again.iter().any(|m| m.name == renamed), "{again:?}");

    let renamed_id = again
        .iter()
        .find(|m| m.name == renamed)
        .unwrap()
        .remote_id
        .clone();
    a.apply(WriteOp::DeleteMailbox {
        remote_id: renamed_id,
    })
    .await
    .unwrap();
    let listed = imap(0, "print(m.list()[1])");
    assert!(!listed.contains(&name), "{listed}");
    let after = a.list_mailboxes().await.unwrap();
    assert!(
        after.iter().all(|m| !m.name.starts_with(&name)),
        "{after:?}"
    );
}

#[tokio::test]
async fn send_mail_reaches_bob_with_a_copy_in_sent() {
    let subject = unique("eassend");
    let raw = format!(
        "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n\
         Subject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         \r\nHello Bob, through the gateway.\r\n"
    );
    let a = account("send", EasSettings::default());
    let outcome = a
        .apply(WriteOp::Send {
            raw: raw.into_bytes(),
            envelope: Envelope {
                mail_from: "alice@example.test".into(),
                rcpt_to: vec!["bob@example.test".into()],
            },
            save_in_sent: true,
        })
        .await
        .unwrap();
    assert_eq!(outcome, WriteOutcome::Done);
    let search = |user: usize, mailbox: &str| {
        imap(
            user,
            &format!("m.select({mailbox:?})\nprint(m.search(None, 'SUBJECT', {subject:?})[1])"),
        )
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let bob = search(1, "INBOX");
        let sent = search(0, "Sent");
        if !bob.contains("[b'']") && !sent.contains("[b'']") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bob INBOX {bob}, alice Sent {sent}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Recipients that are not in the headers cannot be honoured over EAS.
    let err = a
        .apply(WriteOp::Send {
            raw: b"To: bob@example.test\r\nSubject: x\r\n\r\nx\r\n".to_vec(),
            envelope: Envelope {
                mail_from: "alice@example.test".into(),
                rcpt_to: vec!["carol@example.test".into()],
            },
            save_in_sent: false,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn fetch_message_gives_the_raw_mime() {
    let name = unique("easfetch");
    make_mailbox(&name, &name, 1, |_| "()");
    let a = account("fetch", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    let uid = first.upserts()[0].uid.clone();
    let raw = a.fetch_message(&mailbox.remote_id, &uid).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    assert!(text.contains(&format!("Subject: {name}-0")), "{text}");
    assert!(
        text.contains(&format!("Message-ID: <{name}-0.0@example.test>")),
        "{text}"
    );
    assert!(text.contains(&format!("Body of {name}-0.")), "{text}");
    let missing = a.fetch_message(&mailbox.remote_id, "999999").await;
    assert!(missing.is_err(), "{missing:?}");
}

#[tokio::test]
async fn rejected_sync_key_resyncs_without_new_fingerprints() {
    let name = unique("easreset");
    make_mailbox(&name, &name, 4, |_| "()");
    let a = account("reset", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    let before: BTreeSet<_> = first
        .upserts()
        .iter()
        .map(|m| m.fingerprint.clone())
        .collect();
    assert_eq!(before.len(), 4);

    // Lost device state: a cursor this adapter cannot read. It starts over from key 0 with
    // reset = true, and the same messages come back with the same fingerprints.
    let again = sync(&a, &mailbox, Some(b"imap 1 2 3")).await;
    assert!(again.batches[0].reset, "{:?}", again.batches);
    let after: BTreeSet<_> = again
        .upserts()
        .iter()
        .map(|m| m.fingerprint.clone())
        .collect();
    assert_eq!(after, before, "the same messages are re-announced");
    let followup = sync(&a, &mailbox, Some(&again.cursor())).await;
    assert!(followup.changes().is_empty());

    // A key SOGo cannot parse: it answers status 1 and re-sends every item as a Change
    // (where the specification has status 3). Nothing new appears: no duplicate Email.
    let garbled = sync(&a, &mailbox, Some(b"eas1 not-a-key")).await;
    assert!(garbled.upserts().is_empty(), "{:?}", garbled.batches);
    let quiet = sync(&a, &mailbox, Some(&garbled.cursor())).await;
    assert!(quiet.changes().is_empty(), "{:?}", quiet.batches);
}

#[tokio::test]
async fn append_and_copy_are_clearly_unsupported() {
    let a = account("append", EasSettings::default());
    let inbox = a
        .list_mailboxes()
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.role == Some(MailboxRole::Inbox))
        .unwrap();
    let err = a
        .apply(WriteOp::Append {
            mailbox: inbox.remote_id.clone(),
            raw: b"Subject: x\r\n\r\nx".to_vec(),
            keywords: BTreeSet::new(),
            received_at: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unsupported(_)), "{err:?}");
    let err = a
        .apply(WriteOp::Copy {
            from: inbox.remote_id.clone(),
            uids: vec!["1".into()],
            to: inbox.remote_id,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unsupported(_)), "{err:?}");
}

#[tokio::test]
async fn wrong_password_is_auth_failed() {
    let s = sogo();
    let a = EasAccount::new(
        EasEndpoint {
            url: s.url.clone(),
            username: s.users[0].name.clone(),
            password: upstream::Secret::new("wrong".into()),
            device_id: unique("badpw"),
            device_type: "JmapGatewayTest".into(),
            extra_ca_pem: None,
        },
        EasSettings::default(),
    )
    .unwrap();
    let err = a.list_mailboxes().await.unwrap_err();
    assert!(matches!(err, UpstreamError::AuthFailed(_)), "{err:?}");
}

/// Settings Oof against the stack's SOGo 5.8. SOGo serves Oof from its Sieve vacation
/// setting, which the stack turns off (`SOGoVacationEnabled = NO` in eas-stack.sh); SOGo then
/// answers every Oof request, Get or Set, with a bare `<Settings><Status>1</Status>`. The
/// adapter must call that Unsupported (not success, which would lose the setting), for the
/// whole Get / Set enabled with a date range / Get / Set disabled sequence.
#[tokio::test]
async fn out_of_office_is_unsupported_while_sogo_vacation_is_off() {
    use eas::command::OofSettings;
    let a = account("oof", EasSettings::default());
    let unsupported = |step: &str, err: UpstreamError| match err {
        UpstreamError::Unsupported(text) => {
            assert!(text.contains("without an Oof element"), "{step}: {text}");
        }
        other => panic!("{step}: expected Unsupported, got {other:?}"),
    };
    unsupported("first Get", a.oof().await.unwrap_err());
    let day = 86_400;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let away = OofSettings::vacation(
        true,
        Some(now + day),
        Some(now + 8 * day),
        Some("Away until next week."),
        None,
        now,
    );
    unsupported("Set enabled", a.set_oof(&away).await.unwrap_err());
    unsupported("second Get", a.oof().await.unwrap_err());
    unsupported(
        "Set disabled",
        a.set_oof(&OofSettings::disabled()).await.unwrap_err(),
    );
    assert!(!a.supports_oof().await.unwrap());
    // The account is otherwise fine: the refusals were about Oof only.
    assert!(!a.list_mailboxes().await.unwrap().is_empty());
}

/// A reply and a forward of a message alice holds go out as SmartReply / SmartForward with
/// ReplaceMime: bob gets each message exactly as given (SOGo does not append the original),
/// and SOGo marks the original `\Answered` / `$Forwarded`, which the next Sync reports (so a
/// plain SendMail, which marks nothing, was not used). A source SOGo does not hold is no
/// error to it: with ReplaceMime it sends the message all the same.
#[tokio::test]
async fn smart_reply_and_forward_send_the_message_as_given_and_mark_the_original() {
    let name = unique("eassmart");
    make_mailbox(&name, &name, 2, |_| "()");
    let a = account("smart", EasSettings::default());
    let mailbox = find(&a, &name).await;
    let first = sync(&a, &mailbox, None).await;
    let mut originals = first.upserts();
    originals.sort_by_key(|m| m.uid.parse::<u64>().unwrap_or(0));
    assert_eq!(originals.len(), 2);
    assert!(
        originals.iter().all(|m| m.keywords.is_empty()),
        "{originals:?}"
    );
    let mut cursor = first.batches.last().unwrap().cursor.clone();
    let source = |kind, uid: &str| SendSource {
        kind,
        mailbox: mailbox.remote_id.clone(),
        uid: uid.to_owned(),
    };
    let send = |subject: &str, text: &str, i: usize| {
        WriteOp::Send {
        raw: format!(
            "From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\n\
             Subject: {subject}\r\nMessage-ID: <{}@example.test>\r\n\
             In-Reply-To: <{name}-{i}.{i}@example.test>\r\nReferences: <{name}-{i}.{i}@example.test>\r\n\
             MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n",
            subject.replace([' ', ':'], "")
        )
        .into_bytes(),
        envelope: Envelope {
            mail_from: "alice@example.test".into(),
            rcpt_to: vec!["bob@example.test".into()],
        },
        save_in_sent: true,
    }
    };
    let flags = |i: usize| {
        imap(
            0,
            &format!(
                "m.select({name:?})\nprint(m.fetch('{}', '(FLAGS)')[1][0].decode())",
                i + 1
            ),
        )
    };

    for (i, kind, token, text, flag, keyword) in [
        (
            0,
            SourceKind::Reply,
            format!("{name}r"),
            "My answer, without quoting.",
            "\\Answered",
            "$answered",
        ),
        (
            1,
            SourceKind::Forward,
            format!("{name}f"),
            "Passing this on.",
            "$Forwarded",
            "$forwarded",
        ),
    ] {
        let original = originals[i];
        let original_body = format!("Body of {name}-{i}.");
        let outcome = a
            .send_about(
                send(&format!("Re: {token}"), text, i),
                source(kind, &original.uid),
            )
            .await
            .unwrap();
        assert_eq!(outcome, WriteOutcome::Done);
        let got = arrived(1, "INBOX", &token).await;
        assert_eq!(got.matches(text).count(), 1, "{got}");
        assert!(
            !got.contains(&original_body),
            "the original is not appended: {got}"
        );
        assert!(
            !got.to_ascii_lowercase().contains("message/rfc822"),
            "{got}"
        );
        let upstream = flags(i);
        assert!(
            upstream.contains(flag),
            "{kind:?} marks the original {flag}: {upstream}"
        );
        let again = sync(&a, &mailbox, Some(&cursor)).await;
        cursor = again.batches.last().unwrap().cursor.clone();
        let reported: Vec<&BTreeSet<String>> = again
            .batches
            .iter()
            .flat_map(|b| &b.changes)
            .filter_map(|c| match c {
                MessageChange::Keywords { uid, keywords } if uid == &original.uid => Some(keywords),
                _ => None,
            })
            .collect();
        println!("{kind:?}: upstream {upstream}, Sync reports {reported:?}");
        assert!(
            reported.last().is_some_and(|k| k.contains(keyword)),
            "{kind:?}: {:?}",
            again.batches
        );
    }
    let sent = imap(
        0,
        &format!("m.select('Sent')\nprint(m.search(None, 'SUBJECT', {name:?})[1])"),
    );
    assert_eq!(
        sent.split_whitespace().count(),
        2,
        "both copies filed: {sent}"
    );

    // An item SOGo does not hold: sent all the same, no status.
    let token = format!("{name}n");
    a.send_about(
        send(&token, "No source.", 0),
        source(SourceKind::Reply, "999999"),
    )
    .await
    .unwrap();
    arrived(1, "INBOX", &token).await;

    imap(
        0,
        &format!(
            "m.select('Sent')\nfor n in m.search(None, 'SUBJECT', {name:?})[1][0].split(): m.store(n, '+FLAGS', '\\\\Deleted')\nm.expunge()\nm.delete({name:?})"
        ),
    );
    imap(
        1,
        &format!(
            "m.select('INBOX')\nfor n in m.search(None, 'SUBJECT', {name:?})[1][0].split(): m.store(n, '+FLAGS', '\\\\Deleted')\nm.expunge()"
        ),
    );
}

/// Waits up to 30 s for a message with `subject` in `mailbox` of test user `user`; returns
/// the newest such message, raw.
async fn arrived(user: usize, mailbox: &str, subject: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found = imap(
            user,
            &format!("m.select({mailbox:?})\nprint(m.search(None, 'SUBJECT', {subject:?})[1])"),
        );
        if !found.contains("[b'']") {
            return imap(
                user,
                &format!(
                    "m.select({mailbox:?})\nn = m.search(None, 'SUBJECT', {subject:?})[1][0].split()[-1]\n\
                     sys.stdout.write(m.fetch(n, '(BODY.PEEK[])')[1][0][1].decode())"
                ),
            );
        }
        assert!(
            Instant::now() < deadline,
            "{subject} not in {mailbox} of user {user}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

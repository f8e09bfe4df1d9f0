//! The IMAP adapter's connection layer against the real Dovecot.

use conformance_tests::dovecot;
use imap::{Credentials, ImapError, ImapServer, Security, connect, list_mailboxes};
use upstream::MailboxRole;

fn creds(d: &conformance_tests::Dovecot, i: usize) -> Credentials {
    Credentials {
        username: d.users[i].name.clone(),
        password: d.users[i].password.clone(),
    }
}

fn server(d: &conformance_tests::Dovecot, security: Security, trust_cert: bool) -> ImapServer {
    let port = if security == Security::Tls {
        d.imaps_port
    } else {
        d.imap_port
    };
    let mut s = ImapServer::new("localhost", port, security);
    if trust_cert {
        s.extra_ca_pem = Some(std::fs::read(&d.ca_pem).unwrap());
    }
    s
}

async fn roles_after_login(
    server: ImapServer,
    creds: Credentials,
) -> Vec<(String, Option<MailboxRole>)> {
    let mut session = connect(&server, &creds).await.unwrap();
    let mut listed: Vec<_> = list_mailboxes(&mut session)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.name, m.role))
        .collect();
    listed.sort();
    session.logout().await.unwrap();
    listed
}

fn special_use() -> Vec<(String, Option<MailboxRole>)> {
    vec![
        ("Archive".into(), Some(MailboxRole::Archive)),
        ("Drafts".into(), Some(MailboxRole::Drafts)),
        ("INBOX".into(), Some(MailboxRole::Inbox)),
        ("Junk".into(), Some(MailboxRole::Junk)),
        ("Sent".into(), Some(MailboxRole::Sent)),
        ("Trash".into(), Some(MailboxRole::Trash)),
    ]
}

#[tokio::test]
async fn plain_login_lists_the_special_use_mailboxes() {
    let d = dovecot();
    let listed = roles_after_login(server(&d, Security::Plain, false), creds(&d, 0)).await;
    for expected in special_use() {
        assert!(
            listed.contains(&expected),
            "{expected:?} missing from {listed:?}"
        );
    }
}

#[tokio::test]
async fn implicit_tls_with_the_servers_ca_lists_the_mailboxes() {
    let d = dovecot();
    let listed = roles_after_login(server(&d, Security::Tls, true), creds(&d, 1)).await;
    assert_eq!(listed.len(), special_use().len(), "{listed:?}");
}

#[tokio::test]
async fn starttls_with_the_servers_ca_lists_the_mailboxes() {
    let d = dovecot();
    let listed = roles_after_login(server(&d, Security::StartTls, true), creds(&d, 0)).await;
    assert!(listed.contains(&("INBOX".into(), Some(MailboxRole::Inbox))));
}

#[tokio::test]
async fn tls_to_a_server_whose_ca_is_not_trusted_is_refused() {
    let d = dovecot();
    let err = connect(&server(&d, Security::Tls, false), &creds(&d, 0))
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[tokio::test]
async fn a_wrong_password_is_a_rejected_login() {
    let d = dovecot();
    let bad = Credentials {
        username: d.users[0].name.clone(),
        password: upstream::Secret::new("not-the-password".into()),
    };
    let err = connect(&server(&d, Security::Plain, false), &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, ImapError::LoginRejected { .. }), "{err:?}");
    assert!(!format!("{err:?}{err}").contains("not-the-password"));
}

#[tokio::test]
async fn a_closed_port_is_a_clear_connect_error() {
    // Port 1 on loopback: nothing listens there.
    let s = ImapServer::new("127.0.0.1", 1, Security::Plain);
    let err = connect(&s, &creds(&dovecot(), 0)).await.unwrap_err();
    assert!(matches!(err, ImapError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

//! One body part fetched alone from Dovecot: a part blob of a message that is not in the
//! blob cache is read with BODYSTRUCTURE and that part's MIME header and body sections
//! (`Upstream::fetch_part`), decodes to exactly what the whole message gives for that part,
//! and is cached under its own blob id while the whole message is never fetched. Parts a
//! message does not have are not found, not errors.

use jmap_mail::body::{part_blob_id, part_bytes};
use jmap_mail::methods::{MailAccount, read_blob};
use jmap_mail::{AccountSync, EmailRecord};
use serde_json::json;
use state::{AccountId, AsyncStore};

use crate::imap_support::{Harness, PrivateDovecot, append, other_client};
use crate::jmap_support::{JMAP_PASSWORD, JMAP_USER, MailGateway};

/// A multipart/mixed of: 1 quoted-printable Latin-1 text, 2 an alternative (2.1 text,
/// 2.2 html), 3 an attached message, 4 a base64 PDF.
const MIXED: &str = "From: Alice <alice@example.test>\r\n\
To: tester@example.test\r\n\
Subject: parts\r\n\
Date: Thu, 05 Feb 2026 10:00:00 +0000\r\n\
Message-ID: <parts@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"outer\"\r\n\
\r\n\
--outer\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Sch=F6ne Gr=FC=DFe, eine sehr lange Zeile, die mit einem weichen Umbruch wei=\r\n\
tergeht.\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=\"inner\"\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
plain alternative\r\n\
--inner\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>html alternative</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
Content-Disposition: attachment\r\n\
\r\n\
From: carol@example.test\r\n\
Subject: forwarded\r\n\
Content-Type: text/plain\r\n\
\r\n\
forwarded body\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"r.pdf\"\r\n\
Content-Disposition: attachment; filename=\"r.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQKJcfsj6IKMSAwIG9iago8PD4+CmVuZG9iagp0cmFpbGVyCjw8Pj4KJSVFT0YK\r\n\
--outer--\r\n";

const PDF: &[u8] = b"%PDF-1.4\n%\xc7\xec\x8f\xa2\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";

/// A single-part message: its only part, 1, is base64 text.
const SINGLE: &str = "From: Alice <alice@example.test>\r\n\
To: tester@example.test\r\n\
Subject: single\r\n\
Date: Thu, 05 Feb 2026 10:05:00 +0000\r\n\
Message-ID: <single@example.test>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
R3LDvMOfZSBhdXMgS8O2bG4K\r\n";

/// The sync driver and store of a [`Harness`] as a JMAP mail account, for `read_blob`.
#[derive(Clone)]
struct Account {
    store: AsyncStore,
    id: AccountId,
    sync: AccountSync,
}

impl MailAccount for Account {
    fn store(&self) -> &AsyncStore {
        &self.store
    }
    fn store_id(&self) -> AccountId {
        self.id
    }
    fn sync(&self) -> Option<&AccountSync> {
        Some(&self.sync)
    }
    fn address(&self) -> Option<&str> {
        None
    }
}

fn by_subject<'a>(emails: &'a [EmailRecord], subject: &str) -> &'a str {
    &emails
        .iter()
        .find(|e| e.subject.as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no Email {subject:?}"))
        .id
}

#[tokio::test]
async fn a_part_blob_is_fetched_alone_and_decodes_as_in_the_whole_message() {
    let dovecot = PrivateDovecot::start();
    let mut c = other_client(&dovecot.server()).await;
    append(&mut c, "INBOX", "", MIXED.as_bytes()).await;
    append(&mut c, "INBOX", "", SINGLE.as_bytes()).await;
    let _ = c.logout().await;
    let h = Harness::new(dovecot.server(), imap::ImapOptions::default());
    h.sync.sync_all().await.unwrap();
    let emails = h.emails().await;
    let (mixed, single) = (by_subject(&emails, "parts"), by_subject(&emails, "single"));
    let acct = Account {
        store: h.store.clone(),
        id: h.account,
        sync: h.sync.clone(),
    };
    let cached = |key: String| {
        let (store, a) = (h.store.clone(), h.account);
        async move { store.blob_get(a, key.into_bytes()).await.unwrap() }
    };

    let cases: [(&str, &str, &str, &[u8], &str); 6] = [
        (mixed, MIXED, "4", PDF, "application/pdf"),
        (
            mixed,
            MIXED,
            "1",
            b"Sch\xf6ne Gr\xfc\xdfe, eine sehr lange Zeile, die mit einem weichen Umbruch weitergeht.",
            "text/plain",
        ),
        (mixed, MIXED, "2.1", b"plain alternative", "text/plain"),
        (mixed, MIXED, "2.2", b"<p>html alternative</p>", "text/html"),
        (
            mixed,
            MIXED,
            "3",
            b"From: carol@example.test\r\nSubject: forwarded\r\nContent-Type: text/plain\r\n\
              \r\nforwarded body",
            "message/rfc822",
        ),
        (single, SINGLE, "1", "Grüße aus Köln\n".as_bytes(), "text/plain"),
    ];
    for (email, raw, part, bytes, media_type) in cases {
        let blob_id = part_blob_id(email, part);
        let blob = read_blob(&acct, &blob_id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("part {part} of {email} not found"));
        assert_eq!(blob.bytes, bytes, "part {part} of {email}");
        assert_eq!(blob.media_type.as_deref(), Some(media_type), "{part}");
        // Exactly what the whole message gives for the part.
        let whole = part_bytes(raw.as_bytes(), part).unwrap();
        assert_eq!((blob.bytes, blob.media_type.unwrap()), whole, "{part}");
        assert_eq!(cached(blob_id).await.as_deref(), Some(bytes), "{part}");
    }

    // Parts the messages do not have: a multipart (no content of its own), past the last
    // child, below a leaf, inside the attached message (partIds do not descend into it),
    // and ids that are no section numbers. Dovecot would serve some of these sections.
    for (email, part) in [
        (mixed, "2"),
        (mixed, "5"),
        (mixed, "2.3"),
        (mixed, "1.1"),
        (mixed, "3.1"),
        (mixed, "4.1"),
        (mixed, "0"),
        (mixed, "01"),
        (single, "2"),
        (single, "1.1"),
    ] {
        let blob_id = part_blob_id(email, part);
        assert_eq!(read_blob(&acct, &blob_id).await.unwrap(), None, "{part}");
        assert_eq!(cached(blob_id).await, None, "{part}");
    }

    // The whole messages were never fetched: fetching one caches it under the Email id.
    assert_eq!(cached(mixed.to_owned()).await, None);
    assert_eq!(cached(single.to_owned()).await, None);

    // With the server gone, a part read before still downloads: from the blob cache.
    h.imap.shutdown().await;
    drop(dovecot);
    let again = read_blob(&acct, &part_blob_id(mixed, "4"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.bytes, PDF);
}

/// Through the download endpoint: a part of a message nobody has read downloads decoded;
/// a part the message does not have is a 404, not a server error.
#[tokio::test]
async fn downloading_a_part_of_an_unread_message() {
    let g = MailGateway::start().await;
    let mut c = other_client(&g.dovecot.server()).await;
    append(&mut c, "INBOX", "", MIXED.as_bytes()).await;
    let _ = c.logout().await;
    let inbox = g.mailbox_id("inbox").await;
    // Email/query answers from the store: no body is fetched to learn the id.
    let id = g
        .eventually(10, || async {
            let q = g
                .call("Email/query", json!({"filter": {"inMailbox": inbox}}))
                .await;
            q["ids"][0].as_str().map(str::to_owned)
        })
        .await;
    let session = g.session().await;
    let template = session["downloadUrl"].as_str().unwrap().to_owned();
    let download = |part: &str| {
        let url = template
            .replace("{accountId}", &g.account_id)
            .replace("{blobId}", &part_blob_id(&id, part))
            .replace("{name}", "part")
            .replace("{type}", "application/octet-stream");
        let url = if url.starts_with('/') {
            format!("{}{url}", g.base)
        } else {
            url
        };
        let request = g.http.get(url).basic_auth(JMAP_USER, Some(JMAP_PASSWORD));
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
        }
    };
    assert_eq!(download("4").await, (200, PDF.to_vec()));
    assert_eq!(download("2-1").await, (200, b"plain alternative".to_vec()));
    for missing in ["2", "9", "3-1", "1-1"] {
        assert_eq!(download(missing).await.0, 404, "part {missing}");
    }
}

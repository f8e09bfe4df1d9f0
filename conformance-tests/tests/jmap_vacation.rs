//! VacationResponse over an IMAP account whose Dovecot has ManageSieve (Pigeonhole): the
//! capability is offered, /get gives the default singleton, /set writes and activates the
//! gateway's Sieve script, and Dovecot's LDA then really answers a delivered message (the
//! reply caught by this test's SMTP sink). Each step is checked upstream by a raw ManageSieve
//! client of this test, independent of the adapter's. Turning vacation off deactivates the
//! script; while one of the user's own scripts is active, turning it on is refused and that
//! script stays active.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::imap_support::{PASSWORD, USER};
use crate::jmap_client::SmtpSink;
use crate::jmap_support::{JMAP_PASSWORD, JMAP_USER, MailGateway, json_body};

const VACATION: &str = "urn:ietf:params:jmap:vacationresponse";
const STEP: Duration = Duration::from_secs(10);

/// A raw ManageSieve session: a few lines of text over TCP, nothing shared with the adapter.
struct RawSieve {
    read: BufReader<OwnedReadHalf>,
    write: OwnedWriteHalf,
}

impl RawSieve {
    async fn login(port: u16) -> RawSieve {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let (read, write) = tcp.into_split();
        let mut s = RawSieve {
            read: BufReader::new(read),
            write,
        };
        let greeting = s.until_status().await;
        assert!(greeting.last().unwrap().starts_with("OK"), "{greeting:?}");
        use base64::Engine as _;
        let plain = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{USER}\0{PASSWORD}").as_bytes());
        let r = s
            .command(format!("AUTHENTICATE \"PLAIN\" \"{plain}\"\r\n").as_bytes())
            .await;
        assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
        s
    }

    async fn line(&mut self) -> String {
        let mut l = String::new();
        let n = tokio::time::timeout(STEP, self.read.read_line(&mut l))
            .await
            .expect("ManageSieve answers in time")
            .unwrap();
        assert!(n > 0, "ManageSieve closed the connection");
        l.trim_end_matches(['\r', '\n']).to_owned()
    }

    /// Lines up to and including the OK/NO/BYE; a literal `{n}` is read and given inline.
    async fn until_status(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let mut l = self.line().await;
            if let Some(n) = l
                .strip_suffix('}')
                .and_then(|x| x.rsplit_once('{'))
                .and_then(|(_, n)| n.parse::<usize>().ok())
            {
                let mut literal = vec![0; n];
                tokio::time::timeout(STEP, self.read.read_exact(&mut literal))
                    .await
                    .unwrap()
                    .unwrap();
                l.push_str(&String::from_utf8(literal).unwrap());
                l.push_str(&self.line().await);
            }
            let done = ["OK", "NO", "BYE"].iter().any(|s| l.starts_with(s));
            lines.push(l);
            if done {
                return lines;
            }
        }
    }

    async fn command(&mut self, bytes: &[u8]) -> Vec<String> {
        self.write.write_all(bytes).await.unwrap();
        self.until_status().await
    }

    /// LISTSCRIPTS as its raw lines, the final OK left off.
    async fn scripts(&mut self) -> Vec<String> {
        let mut r = self.command(b"LISTSCRIPTS\r\n").await;
        assert!(r.pop().unwrap().starts_with("OK"));
        r
    }

    async fn script(&mut self, name: &str) -> String {
        let mut r = self
            .command(format!("GETSCRIPT \"{name}\"\r\n").as_bytes())
            .await;
        assert!(
            r.pop().unwrap().starts_with("OK"),
            "GETSCRIPT {name}: {r:?}"
        );
        r.concat()
    }

    async fn put_and_activate(&mut self, name: &str, script: &str) {
        let put = format!("PUTSCRIPT \"{name}\" {{{}+}}\r\n{script}\r\n", script.len());
        let r = self.command(put.as_bytes()).await;
        assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
        let r = self
            .command(format!("SETACTIVE \"{name}\"\r\n").as_bytes())
            .await;
        assert!(r.last().unwrap().starts_with("OK"), "{r:?}");
    }
}

/// One method call with the VacationResponse capability in `using`; the response's arguments.
async fn call(g: &MailGateway, method: &str, mut args: Value) -> Value {
    args["accountId"] = json!(g.account_id);
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", "urn:ietf:params:jmap:mail", VACATION],
        "methodCalls": [[method, args, "0"]]
    });
    let r = g
        .http
        .post(format!("{}/jmap/api", g.base))
        .basic_auth(JMAP_USER, Some(JMAP_PASSWORD))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let r = json_body(r).await;
    let response = &r["methodResponses"][0];
    assert_eq!(response[0], json!(method), "{r}");
    response[1].clone()
}

/// Delivers a message to the test user through Dovecot's LDA, which runs the active script;
/// a vacation reply goes to `smtp_port`. Blocking: run it off the runtime that serves the sink.
fn deliver(conf: std::path::PathBuf, smtp_port: u16) {
    use std::io::Write as _;
    let mut lda = std::process::Command::new("/usr/lib/dovecot/dovecot-lda")
        .arg("-c")
        .arg(conf)
        .args(["-d", USER, "-a", &format!("{USER}@example.test")])
        .args(["-f", "friend@example.org"])
        .args(["-o", &format!("submission_host=127.0.0.1:{smtp_port}")])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("dovecot-lda runs (Debian's dovecot-core)");
    lda.stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "From: A Friend <friend@example.org>\r\nTo: {USER}@example.test\r\n\
                 Subject: Lunch?\r\nMessage-ID: <lunch-1@example.org>\r\n\
                 Date: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\nLunch tomorrow?\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let out = lda.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "dovecot-lda: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn jmap_vacation_through_managesieve() {
    let smtp = SmtpSink::start().await;
    let g = MailGateway::start_configured(
        |_| {},
        |d| {
            format!(
                "[users.accounts.sieve]\nport = {}\ntls = \"none\"\n",
                d.sieve_port
            )
        },
    )
    .await;
    let sieve_port = g.dovecot.sieve_port;

    // The capability comes once the gateway has seen the server's "vacation" extension.
    let account = g.account_id.clone();
    g.eventually(30, || async {
        let s = g.session().await;
        s["accounts"][&account]["accountCapabilities"]
            .get(VACATION)
            .map(|_| ())
    })
    .await;
    let session = g.session().await;
    assert!(session["capabilities"].get(VACATION).is_some(), "{session}");

    // The default singleton, and nothing upstream yet.
    let got = call(&g, "VacationResponse/get", json!({"ids": null})).await;
    assert_eq!(
        got["list"],
        json!([{"id": "singleton", "isEnabled": false, "fromDate": null, "toDate": null,
                "subject": null, "textBody": null, "htmlBody": null}])
    );
    let mut raw = RawSieve::login(sieve_port).await;
    assert!(raw.scripts().await.is_empty());

    // On, from a past date to a far one: the script is stored and active.
    let set = call(
        &g,
        "VacationResponse/set",
        json!({"update": {"singleton": {
            "isEnabled": true,
            "fromDate": "2020-01-01T00:00:00Z",
            "toDate": "2099-12-31T18:30:00Z",
            "subject": "Out of office \"until\" 2099",
            "textBody": "I am away.\n.A line with a leading dot.\n"
        }}}),
    )
    .await;
    assert_eq!(set["updated"], json!({"singleton": null}), "{set}");
    assert_eq!(raw.scripts().await, ["\"jmap-vacation\" ACTIVE"]);
    let script = raw.script("jmap-vacation").await;
    assert!(
        script.contains(":subject \"Out of office \\\"until\\\" 2099\""),
        "{script}"
    );
    assert!(script.contains("\"2099-12-31\"") && script.contains("\"18:30:00\""));
    assert!(script.contains("\"2020-01-01\""));
    let got = call(&g, "VacationResponse/get", json!({})).await;
    assert_eq!(got["list"][0]["isEnabled"], json!(true));
    assert_eq!(got["list"][0]["toDate"], json!("2099-12-31T18:30:00Z"));

    // The script works: a delivered message is answered, with our subject and text.
    let (conf, port) = (g.dovecot.dir.join("dovecot.conf"), smtp.port);
    tokio::task::spawn_blocking(move || deliver(conf, port))
        .await
        .unwrap();
    let reply = g
        .eventually(20, || async {
            smtp.deliveries()
                .into_iter()
                .find(|d| d.rcpt_to == ["friend@example.org"])
        })
        .await;
    let data = String::from_utf8_lossy(&reply.data).into_owned();
    assert!(
        data.contains("Subject: Out of office \"until\" 2099"),
        "{data}"
    );
    assert!(data.contains("Auto-Submitted: auto-replied"), "{data}");
    assert!(data.contains("I am away."), "{data}");
    assert!(data.contains(".A line with a leading dot."), "{data}");
    assert!(
        data.contains("In-Reply-To: <lunch-1@example.org>"),
        "{data}"
    );

    // Off: our script stays but is no longer active.
    let set = call(
        &g,
        "VacationResponse/set",
        json!({"update": {"singleton": {"isEnabled": false}}}),
    )
    .await;
    assert_eq!(set["updated"], json!({"singleton": null}), "{set}");
    assert_eq!(raw.scripts().await, ["\"jmap-vacation\""]);

    // The user's own active script is never replaced: turning vacation on is refused.
    raw.put_and_activate("my-filters", "keep;\r\n").await;
    let set = call(
        &g,
        "VacationResponse/set",
        json!({"update": {"singleton": {"isEnabled": true, "subject": "Away"}}}),
    )
    .await;
    let error = &set["notUpdated"]["singleton"];
    assert_eq!(error["type"], json!("forbidden"), "{set}");
    assert!(
        error["description"]
            .as_str()
            .unwrap()
            .contains("another Sieve script is active: my-filters"),
        "{set}"
    );
    assert_eq!(set["oldState"], set["newState"]);
    let mut scripts = raw.scripts().await;
    scripts.sort();
    assert_eq!(scripts, ["\"jmap-vacation\"", "\"my-filters\" ACTIVE"]);
    let got = call(&g, "VacationResponse/get", json!({})).await;
    assert_eq!(got["list"][0]["isEnabled"], json!(false));
    let _ = raw.command(b"LOGOUT\r\n").await;
}

/// The adapter's ManageSieve client against the real Pigeonhole over STARTTLS, verified with
/// the test CA (and refused without it): capabilities, PUTSCRIPT/GETSCRIPT round trip with a
/// literal, CHECKSCRIPT's verdict on a bad script, SETACTIVE and DELETESCRIPT.
#[tokio::test]
async fn jmap_vacation_client_over_starttls() {
    use imap::sieve::{SieveClient, SieveError, SieveServer};
    let dovecot = crate::imap_support::PrivateDovecot::start();
    let creds = crate::imap_support::creds();
    let mut server = SieveServer::new("127.0.0.1", dovecot.sieve_port, imap::Security::StartTls);
    match SieveClient::connect(&server, &creds).await {
        Err(SieveError::Tls(_)) => {}
        other => panic!("an unknown CA must fail TLS: {other:?}"),
    }
    server.extra_ca_pem = Some(std::fs::read(dovecot.dir.join("tls/ca.pem")).unwrap());
    let mut c = SieveClient::connect(&server, &creds).await.unwrap();
    assert!(c.capabilities().has_extension("vacation"));
    assert!(c.capabilities().has_extension("date"));
    let script = "# \"quoted\" {3}\r\nkeep;\r\n";
    c.put_script("a \"b\"", script).await.unwrap();
    assert_eq!(c.get_script("a \"b\"").await.unwrap(), script);
    match c.check_script("nonsense here;").await {
        Err(SieveError::No { message, .. }) => assert!(!message.is_empty()),
        other => panic!("a bad script must be refused: {other:?}"),
    }
    c.set_active("a \"b\"").await.unwrap();
    assert_eq!(c.active_script().await.unwrap().as_deref(), Some("a \"b\""));
    c.set_active("").await.unwrap();
    c.delete_script("a \"b\"").await.unwrap();
    assert!(c.list_scripts().await.unwrap().is_empty());
    c.logout().await;

    let wrong = imap::Credentials {
        username: creds.username.clone(),
        password: upstream::Secret::new("wrong".into()),
    };
    match SieveClient::connect(&server, &wrong).await {
        Err(SieveError::AuthFailed { .. }) => {}
        other => panic!("a wrong password must be refused: {other:?}"),
    }
}

/// A passthrough server with a `sieve` table: a user who logs in with their own IMAP
/// credentials gets VacationResponse too, and the script lands in their own Sieve account.
#[tokio::test]
async fn a_passthrough_user_gets_vacation_through_their_own_sieve_login() {
    let g = MailGateway::start_configured(
        |_| {},
        |d| {
            format!(
                "[[passthrough]]\nkind = \"imap\"\nname = \"Test\"\nhost = \"127.0.0.1\"\n\
                 port = {}\ntls = \"none\"\n[passthrough.sieve]\nport = {}\ntls = \"none\"\n",
                d.imap_port, d.sieve_port
            )
        },
    )
    .await;
    let as_user = |r: reqwest::RequestBuilder| r.basic_auth(USER, Some(PASSWORD));
    let session = || async {
        json_body(
            as_user(g.http.get(format!("{}/jmap/session", g.base)))
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let first = session().await;
    let account = first["primaryAccounts"]["urn:ietf:params:jmap:mail"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"))
        .to_owned();
    g.eventually(30, || async {
        let s = session().await;
        s["accounts"][&account]["accountCapabilities"]
            .get(VACATION)
            .map(|_| ())
    })
    .await;
    let body = json!({
        "using": ["urn:ietf:params:jmap:core", VACATION],
        "methodCalls": [["VacationResponse/set", {"accountId": account, "update": {
            "singleton": {"isEnabled": true, "subject": "Away (passthrough)"}}}, "0"]]
    });
    let r = json_body(
        as_user(g.http.post(format!("{}/jmap/api", g.base)))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        r["methodResponses"][0][1]["updated"],
        json!({"singleton": null}),
        "{r}"
    );
    let mut raw = RawSieve::login(g.dovecot.sieve_port).await;
    assert_eq!(raw.scripts().await, ["\"jmap-vacation\" ACTIVE"]);
    assert!(
        raw.script("jmap-vacation")
            .await
            .contains("Away (passthrough)")
    );
}

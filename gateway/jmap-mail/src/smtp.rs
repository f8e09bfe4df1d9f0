//! SMTP message submission (RFC 6409) as a [`Submitter`], on lettre's connection layer.
//!
//! The transaction is driven step by step (not through lettre's one-shot `send`) because what
//! the JMAP layer must report depends on *where* it failed:
//!
//! | failure | reported as | sent? |
//! | --- | --- | --- |
//! | connect, TLS, greeting, EHLO, STARTTLS, a timeout before DATA | `Unavailable` | no |
//! | AUTH, MAIL FROM or DATA refused | `Refused` (the server's reply) | no |
//! | one or more RCPT TO refused | `RecipientsRefused` (those addresses) | no |
//! | a negative reply to the end of the message data | `Refused` | no |
//! | the connection lost or timed out after the message data was written | `Unknown` | maybe |
//!
//! Nothing is retried here: an `Unknown` outcome is handed up as is.
//!
//! TLS is always verified: Mozilla's roots (webpki) plus an optional extra CA in PEM. STARTTLS
//! is required when configured (a server that does not offer it is `Unavailable`, never a
//! silent downgrade), and credentials are refused over a plain connection to anything but the
//! loopback interface.

use std::str::FromStr;
use std::time::Duration;

use lettre::Address;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt, Rset};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use lettre::transport::smtp::response::Response;
use upstream::{BoxFuture, Envelope, Secret};

use crate::methods::{SubmitError, SubmitReceipt, Submitter};

/// How the connection to the submission server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// TLS from the first byte (port 465, RFC 8314).
    ImplicitTls,
    /// Plain connection upgraded with STARTTLS (port 587); required, never skipped.
    StartTls,
    /// No TLS at all: only sensible for a relay on the same host.
    Plain,
}

/// Where and how to submit.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// User name and password for AUTH PLAIN/LOGIN; `None` submits without authenticating.
    pub credentials: Option<(String, Secret<String>)>,
    /// With credentials: log in with AUTH XOAUTH2 instead, with the access token this
    /// provider gives at each connection (the credentials' password is then unused).
    pub oauth_token: Option<upstream::SecretProvider>,
    /// Extra trusted CA certificates (PEM), added to the webpki roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Bound on each step (connect, every command, the message data).
    pub timeout: Duration,
    /// The EHLO name; `None` uses this host's name.
    pub hello_name: Option<String>,
}

impl SmtpConfig {
    /// A configuration with no credentials, no extra CA, a 60-second step timeout and this
    /// host's name in EHLO.
    pub fn new(host: impl Into<String>, port: u16, security: SmtpSecurity) -> SmtpConfig {
        SmtpConfig {
            host: host.into(),
            port,
            security,
            credentials: None,
            oauth_token: None,
            extra_ca_pem: None,
            timeout: Duration::from_secs(60),
            hello_name: None,
        }
    }
}

/// An SMTP submission client; one connection per submission.
pub struct SmtpSubmitter {
    config: SmtpConfig,
    tls: Option<TlsParameters>,
    client_id: ClientId,
}

impl std::fmt::Debug for SmtpSubmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSubmitter")
            .field("host", &self.config.host)
            .field("port", &self.config.port)
            .field("security", &self.config.security)
            .field("user", &self.config.credentials.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl SmtpSubmitter {
    /// Checks the configuration and prepares the TLS settings; an unusable CA file or
    /// credentials over plain text to a remote host are errors.
    pub fn new(config: SmtpConfig) -> Result<SmtpSubmitter, String> {
        if config.security == SmtpSecurity::Plain
            && config.credentials.is_some()
            && !is_loopback(&config.host)
        {
            return Err(format!(
                "refusing to send SMTP credentials without TLS to {}",
                config.host
            ));
        }
        let tls = match config.security {
            SmtpSecurity::Plain => None,
            SmtpSecurity::ImplicitTls | SmtpSecurity::StartTls => {
                let mut builder = TlsParameters::builder(config.host.clone())
                    .certificate_store(CertificateStore::WebpkiRoots);
                if let Some(pem) = &config.extra_ca_pem {
                    if !pem
                        .windows(b"-----BEGIN CERTIFICATE-----".len())
                        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
                    {
                        return Err("the CA file holds no PEM certificate".into());
                    }
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| format!("unusable CA certificate: {e}"))?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| format!("TLS settings: {e}"))?,
                )
            }
        };
        let client_id = match &config.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        Ok(SmtpSubmitter {
            config,
            tls,
            client_id,
        })
    }

    async fn step<T>(
        &self,
        what: &str,
        f: impl std::future::Future<Output = Result<T, lettre::transport::smtp::Error>>,
    ) -> Result<Result<T, lettre::transport::smtp::Error>, SubmitError> {
        tokio::time::timeout(self.config.timeout, f)
            .await
            .map_err(|_| SubmitError::Unavailable(format!("{what}: timed out")))
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SubmitError> {
        let implicit = match self.config.security {
            SmtpSecurity::ImplicitTls => self.tls.clone(),
            _ => None,
        };
        let mut conn = self
            .step(
                "connect",
                AsyncSmtpConnection::connect_tokio1(
                    (self.config.host.as_str(), self.config.port),
                    Some(self.config.timeout),
                    &self.client_id,
                    implicit,
                    None,
                ),
            )
            .await?
            .map_err(|e| unavailable("connect", &e))?;
        if self.config.security == SmtpSecurity::StartTls {
            let Some(tls) = self.tls.clone() else {
                return Err(SubmitError::Unavailable("no TLS settings".into()));
            };
            if !conn.server_info().supports_feature(Extension::StartTls) {
                conn.abort().await;
                return Err(SubmitError::Unavailable(format!(
                    "{} does not offer STARTTLS",
                    self.config.host
                )));
            }
            self.step("STARTTLS", conn.starttls(tls, &self.client_id))
                .await?
                .map_err(|e| unavailable("STARTTLS", &e))?;
        }
        if let Some((user, password)) = &self.config.credentials {
            let (secret, mechanisms): (Secret<String>, &[Mechanism]) =
                match &self.config.oauth_token {
                    Some(p) => (
                        p.get().map_err(|e| {
                            SubmitError::Refused(format!("no OAuth token for SMTP: {e}"))
                        })?,
                        &[Mechanism::Xoauth2],
                    ),
                    None => (password.clone(), &[Mechanism::Plain, Mechanism::Login]),
                };
            let credentials = Credentials::new(user.clone(), secret.expose().clone());
            let auth = self
                .step("AUTH", conn.auth(mechanisms, &credentials))
                .await?;
            if let Err(e) = auth {
                conn.abort().await;
                return Err(match reply_of(&e) {
                    Some(reply) => SubmitError::Refused(format!("authentication failed: {reply}")),
                    None => unavailable("AUTH", &e),
                });
            }
        }
        Ok(conn)
    }

    async fn transaction(
        &self,
        conn: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        raw: &[u8],
    ) -> Result<SubmitReceipt, SubmitError> {
        let from = if envelope.mail_from.is_empty() {
            None
        } else {
            Some(Address::from_str(&envelope.mail_from).map_err(|e| {
                SubmitError::Refused(format!("invalid MAIL FROM {:?}: {e}", envelope.mail_from))
            })?)
        };
        let mut rcpts = Vec::with_capacity(envelope.rcpt_to.len());
        let mut invalid = Vec::new();
        for r in &envelope.rcpt_to {
            match Address::from_str(r) {
                Ok(a) => rcpts.push(a),
                Err(_) => invalid.push(r.clone()),
            }
        }
        if !invalid.is_empty() {
            return Err(SubmitError::RecipientsRefused(invalid));
        }
        if rcpts.is_empty() {
            return Err(SubmitError::Refused("no recipients".into()));
        }

        let info = conn.server_info().clone();
        let mut params = Vec::new();
        let non_ascii =
            !envelope.mail_from.is_ascii() || envelope.rcpt_to.iter().any(|r| !r.is_ascii());
        if non_ascii {
            if !info.supports_feature(Extension::SmtpUtfEight) {
                return Err(SubmitError::Refused(
                    "the server does not accept internationalized addresses (no SMTPUTF8)".into(),
                ));
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() && info.supports_feature(Extension::EightBitMime) {
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }

        self.step("MAIL FROM", conn.command(Mail::new(from, params)))
            .await?
            .map_err(|e| refused_or_unavailable("MAIL FROM", &e))?;
        let mut refused = Vec::new();
        for (address, original) in rcpts.into_iter().zip(&envelope.rcpt_to) {
            match self
                .step("RCPT TO", conn.command(Rcpt::new(address, Vec::new())))
                .await?
            {
                Ok(_) => {}
                Err(e) if reply_of(&e).is_some() => {
                    tracing::info!(recipient = %original, error = %e, "SMTP recipient refused");
                    refused.push(original.clone());
                }
                Err(e) => return Err(unavailable("RCPT TO", &e)),
            }
        }
        if !refused.is_empty() {
            // Leave the transaction; whether RSET succeeds does not matter, QUIT follows.
            let _ = self.step("RSET", conn.command(Rset)).await;
            return Err(SubmitError::RecipientsRefused(refused));
        }
        self.step("DATA", conn.command(Data))
            .await?
            .map_err(|e| refused_or_unavailable("DATA", &e))?;

        // From here on the server may have the message: only a negative reply is certain.
        let sent = tokio::time::timeout(self.config.timeout, conn.message(raw)).await;
        match sent {
            Ok(Ok(response)) => Ok(SubmitReceipt {
                reply: format_reply(&response),
            }),
            Ok(Err(e)) => match reply_of(&e) {
                Some(reply) => Err(SubmitError::Refused(reply)),
                None => Err(SubmitError::Unknown(format!("after the message data: {e}"))),
            },
            Err(_) => Err(SubmitError::Unknown(
                "timed out waiting for the reply to the message data".into(),
            )),
        }
    }
}

/// The server's negative reply carried by an error, as `"550 5.1.1 text"`.
fn reply_of(e: &lettre::transport::smtp::Error) -> Option<String> {
    let code = e.status()?;
    let text = std::error::Error::source(e).map(|s| s.to_string());
    Some(match text {
        Some(t) if !t.is_empty() => format!("{code} {}", t.trim()),
        _ => code.to_string(),
    })
}

fn unavailable(what: &str, e: &lettre::transport::smtp::Error) -> SubmitError {
    SubmitError::Unavailable(format!("{what}: {e}"))
}

fn refused_or_unavailable(what: &str, e: &lettre::transport::smtp::Error) -> SubmitError {
    match reply_of(e) {
        Some(reply) => SubmitError::Refused(format!("{what}: {reply}")),
        None => unavailable(what, e),
    }
}

/// A reply on one line (RFC 8621 §7 smtpReply): the code, then every line's text joined by
/// spaces.
fn format_reply(r: &Response) -> String {
    let text: Vec<&str> = r
        .message()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if text.is_empty() {
        r.code().to_string()
    } else {
        format!("{} {}", r.code(), text.join(" "))
    }
}

impl Submitter for SmtpSubmitter {
    fn submit<'a>(
        &'a self,
        envelope: &'a Envelope,
        raw: &'a [u8],
    ) -> BoxFuture<'a, Result<SubmitReceipt, SubmitError>> {
        Box::pin(async move {
            let mut conn = self.connect().await?;
            let result = self.transaction(&mut conn, envelope, raw).await;
            match &result {
                Ok(_) => {
                    let _ = tokio::time::timeout(self.config.timeout, conn.quit()).await;
                }
                Err(_) => {
                    let _ = tokio::time::timeout(self.config.timeout, conn.abort()).await;
                }
            }
            result
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;

    use super::*;

    /// How the in-test server behaves.
    #[derive(Clone, Copy, PartialEq)]
    enum Script {
        Accept,
        RefuseRcpt,
        DropAfterData,
        RefuseData,
    }

    /// A one-connection SMTP server on 127.0.0.1 that records the commands and the message.
    async fn server(script: Script) -> (u16, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = log.clone();
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let (r, mut w) = socket.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"220 test ESMTP\r\n").await.unwrap();
            let mut line = String::new();
            loop {
                line.clear();
                if r.read_line(&mut line).await.unwrap() == 0 {
                    return;
                }
                let cmd = line.trim_end().to_owned();
                seen.lock().unwrap().push(cmd.clone());
                let upper = cmd.to_ascii_uppercase();
                let reply: &[u8] = if upper.starts_with("EHLO") {
                    b"250-test\r\n250-8BITMIME\r\n250 SIZE 1000000\r\n"
                } else if upper.starts_with("MAIL FROM") {
                    b"250 2.1.0 Ok\r\n"
                } else if upper.starts_with("RCPT TO") {
                    if script == Script::RefuseRcpt && upper.contains("NOBODY") {
                        b"550 5.1.1 <nobody@example.net>: Recipient address rejected\r\n"
                    } else {
                        b"250 2.1.5 Ok\r\n"
                    }
                } else if upper == "DATA" {
                    w.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await
                        .unwrap();
                    let mut body = String::new();
                    loop {
                        let mut l = String::new();
                        if r.read_line(&mut l).await.unwrap() == 0 {
                            return;
                        }
                        if l == ".\r\n" {
                            break;
                        }
                        body.push_str(&l);
                    }
                    seen.lock().unwrap().push(format!("BODY {body}"));
                    match script {
                        Script::DropAfterData => return,
                        Script::RefuseData => b"554 5.7.1 Message rejected as spam\r\n",
                        _ => b"250 2.0.0 Ok: queued as 4711\r\n",
                    }
                } else if upper == "QUIT" {
                    w.write_all(b"221 2.0.0 Bye\r\n").await.unwrap();
                    return;
                } else {
                    b"250 2.0.0 Ok\r\n"
                };
                w.write_all(reply).await.unwrap();
            }
        });
        (port, log)
    }

    fn submitter(port: u16) -> SmtpSubmitter {
        let mut config = SmtpConfig::new("127.0.0.1", port, SmtpSecurity::Plain);
        config.timeout = Duration::from_secs(5);
        config.hello_name = Some("gateway.test".into());
        SmtpSubmitter::new(config).unwrap()
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        Envelope {
            mail_from: "alice@example.com".into(),
            rcpt_to: rcpts.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    const RAW: &[u8] = b"From: alice@example.com\r\nTo: bob@example.net\r\nSubject: hi\r\n\r\n.leading dot\r\nbye\r\n";

    #[tokio::test]
    async fn submits_and_keeps_the_final_reply() {
        let (port, log) = server(Script::Accept).await;
        let receipt = submitter(port)
            .submit(&envelope(&["bob@example.net", "carol@example.org"]), RAW)
            .await
            .unwrap();
        assert_eq!(receipt.reply, "250 2.0.0 Ok: queued as 4711");
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0], "EHLO gateway.test");
        assert_eq!(log[1], "MAIL FROM:<alice@example.com>");
        assert_eq!(log[2], "RCPT TO:<bob@example.net>");
        assert_eq!(log[3], "RCPT TO:<carol@example.org>");
        assert_eq!(log[4], "DATA");
        // Dot-stuffed on the wire, so the server saw the line with two dots.
        assert!(log[5].contains("\r\n..leading dot\r\n"), "{log:?}");
        assert_eq!(log[6], "QUIT");
    }

    #[tokio::test]
    async fn a_refused_recipient_sends_nothing() {
        let (port, log) = server(Script::RefuseRcpt).await;
        let err = submitter(port)
            .submit(&envelope(&["bob@example.net", "nobody@example.net"]), RAW)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SubmitError::RecipientsRefused(vec!["nobody@example.net".into()])
        );
        let log = log.lock().unwrap().clone();
        assert!(!log.iter().any(|l| l == "DATA"), "{log:?}");
    }

    #[tokio::test]
    async fn a_connection_lost_after_the_data_is_unknown() {
        let (port, _) = server(Script::DropAfterData).await;
        let err = submitter(port)
            .submit(&envelope(&["bob@example.net"]), RAW)
            .await
            .unwrap_err();
        assert!(matches!(err, SubmitError::Unknown(_)), "{err:?}");
    }

    #[tokio::test]
    async fn a_rejected_message_is_refused_with_the_reply() {
        let (port, _) = server(Script::RefuseData).await;
        let err = submitter(port)
            .submit(&envelope(&["bob@example.net"]), RAW)
            .await
            .unwrap_err();
        assert_eq!(
            err,
            SubmitError::Refused("554 5.7.1 Message rejected as spam".into())
        );
    }

    #[tokio::test]
    async fn no_server_is_unavailable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = submitter(port)
            .submit(&envelope(&["bob@example.net"]), RAW)
            .await
            .unwrap_err();
        assert!(matches!(err, SubmitError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn credentials_need_tls_off_loopback() {
        let mut config = SmtpConfig::new("mail.example.com", 25, SmtpSecurity::Plain);
        config.credentials = Some(("alice".into(), Secret::new("pw".into())));
        assert!(SmtpSubmitter::new(config.clone()).is_err());
        config.host = "127.0.0.1".into();
        assert!(SmtpSubmitter::new(config.clone()).is_ok());
        config.host = "mail.example.com".into();
        config.security = SmtpSecurity::StartTls;
        assert!(SmtpSubmitter::new(config.clone()).is_ok());
        config.extra_ca_pem = Some(b"not a certificate".to_vec());
        assert!(SmtpSubmitter::new(config).is_err());
    }
}

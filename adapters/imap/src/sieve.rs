//! ManageSieve (RFC 5804): a small client, and the vacation script (RFC 5230) the gateway
//! keeps on the server for JMAP's VacationResponse.
//!
//! The client speaks just what the vacation setting needs: the capability greeting,
//! STARTTLS (verified exactly like the IMAP connection: [`crate::connection`]'s handshake),
//! `AUTHENTICATE "PLAIN"`, LISTSCRIPTS, GETSCRIPT, PUTSCRIPT, CHECKSCRIPT, SETACTIVE,
//! DELETESCRIPT and LOGOUT. The response parser ([`split_line`]) is sans-IO and bounded:
//! a malformed or oversized response is an error, never a panic; every read and write has
//! a timeout.
//!
//! The vacation policy ([`apply_vacation`]) never touches a script of the user's own: our
//! script is [`VACATION_SCRIPT`]. Turning vacation on while another script is active is
//! refused ([`SieveError::OtherScriptActive`]), since ManageSieve has one active script and
//! activating ours would silently switch the user's filters off. Turning it off deactivates
//! our script only when it is the active one.

use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use upstream::UpstreamError;

use crate::connection::{Credentials, ImapServer, ImapStream, Security, handshake};

/// The ManageSieve port (RFC 5804 §1.8).
pub const DEFAULT_SIEVE_PORT: u16 = 4190;

/// The name of the script the gateway writes; no other script is ever changed.
pub const VACATION_SCRIPT: &str = "jmap-vacation";

/// Longest response line, literals included, and longest literal.
const MAX_RESPONSE: usize = 4 << 20;
/// Most data lines before a command's OK/NO (LISTSCRIPTS of a huge account, a hostile server).
const MAX_DATA_LINES: usize = 10_000;

/// Where a ManageSieve server is and how to reach it.
#[derive(Debug, Clone)]
pub struct SieveServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM certificates trusted in addition to the built-in roots (a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Limit for connecting and logging in together, and for each later read or write.
    pub timeout: Duration,
}

impl SieveServer {
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        SieveServer {
            host: host.into(),
            port,
            security,
            extra_ca_pem: None,
            timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SieveError {
    #[error("cannot connect to ManageSieve at {host}:{port}: {message}")]
    Connect {
        host: String,
        port: u16,
        message: String,
    },
    #[error("the ManageSieve server did not answer in time")]
    Timeout,
    #[error("TLS with the ManageSieve server failed: {0}")]
    Tls(String),
    #[error("the ManageSieve server refused the login for {username}: {message}")]
    AuthFailed { username: String, message: String },
    #[error("the ManageSieve server refused {command}: {message}")]
    No {
        command: String,
        /// The response code (`NONEXISTENT`, `QUOTA/MAXSIZE`, …), if any.
        code: Option<String>,
        message: String,
    },
    #[error("the ManageSieve server closed the connection: {0}")]
    Bye(String),
    #[error("ManageSieve protocol error: {0}")]
    Protocol(String),
    #[error("the Sieve server lacks the \"{0}\" extension")]
    MissingExtension(String),
    #[error("another Sieve script is active: {0}")]
    OtherScriptActive(String),
}

impl From<SieveError> for UpstreamError {
    fn from(e: SieveError) -> Self {
        let text = e.to_string();
        match e {
            SieveError::Connect { .. }
            | SieveError::Timeout
            | SieveError::Tls(_)
            | SieveError::Bye(_) => UpstreamError::Unavailable(text),
            SieveError::AuthFailed { .. } => UpstreamError::AuthFailed(text),
            SieveError::No { .. } | SieveError::OtherScriptActive(_) => {
                UpstreamError::Refused(text)
            }
            SieveError::MissingExtension(_) => UpstreamError::Unsupported(text),
            SieveError::Protocol(_) => UpstreamError::Protocol(text),
        }
    }
}

// ---------------------------------------------------------------- the response parser

/// One lexical item of a response line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Token {
    Atom(String),
    /// A quoted string or a literal, unescaped.
    Str(Vec<u8>),
    Open,
    Close,
}

/// Splits one complete response line (its literals included) off the front of `buf`:
/// `Ok(None)` when more bytes are needed, else the tokens and the bytes consumed.
pub(crate) fn split_line(buf: &[u8]) -> Result<Option<(Vec<Token>, usize)>, SieveError> {
    let bad = |m: &str| SieveError::Protocol(m.to_owned());
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < buf.len() {
        match buf[i] {
            b' ' => i += 1,
            b'\r' => {
                return match buf.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((tokens, i + 2))),
                    Some(_) => Err(bad("CR without LF")),
                };
            }
            b'\n' => return Ok(Some((tokens, i + 1))),
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                let mut j = i + 1;
                loop {
                    match buf.get(j) {
                        None => return Ok(None),
                        Some(b'"') => break,
                        Some(b'\\') => match buf.get(j + 1) {
                            None => return Ok(None),
                            Some(c @ (b'"' | b'\\')) => {
                                s.push(*c);
                                j += 2;
                            }
                            Some(_) => return Err(bad("bad escape in a quoted string")),
                        },
                        Some(b'\r' | b'\n') => return Err(bad("line break in a quoted string")),
                        Some(c) => {
                            s.push(*c);
                            j += 1;
                        }
                    }
                }
                tokens.push(Token::Str(s));
                i = j + 1;
            }
            b'{' => {
                let Some(close) = buf[i..].iter().position(|b| *b == b'}') else {
                    if buf.len() - i > 24 {
                        return Err(bad("unterminated literal length"));
                    }
                    return Ok(None);
                };
                let spec = &buf[i + 1..i + close];
                let digits = spec.strip_suffix(b"+").unwrap_or(spec);
                if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit)
                {
                    return Err(bad("bad literal length"));
                }
                let n: usize = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .ok_or_else(|| bad("bad literal length"))?;
                if n > MAX_RESPONSE {
                    return Err(bad("literal too large"));
                }
                let mut start = i + close + 1;
                match (buf.get(start), buf.get(start + 1)) {
                    (None, _) | (Some(b'\r'), None) => return Ok(None),
                    (Some(b'\r'), Some(b'\n')) => start += 2,
                    (Some(b'\n'), _) => start += 1,
                    _ => return Err(bad("literal length not followed by a line break")),
                }
                let Some(end) = start.checked_add(n).filter(|e| *e <= buf.len()) else {
                    return Ok(None);
                };
                tokens.push(Token::Str(buf[start..end].to_vec()));
                i = end;
            }
            _ => {
                let end = buf[i..]
                    .iter()
                    .position(|b| matches!(b, b' ' | b'(' | b')' | b'"' | b'{' | b'\r' | b'\n'))
                    .map_or(buf.len(), |p| i + p);
                if end == buf.len() {
                    return Ok(None);
                }
                tokens.push(Token::Atom(
                    String::from_utf8_lossy(&buf[i..end]).into_owned(),
                ));
                i = end;
            }
        }
    }
    Ok(None)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    No,
    Bye,
}

/// A command's final response: `OK`/`NO`/`BYE` [`(code …)`] [text].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub status: Status,
    /// The response code's name, upper-cased (`NONEXISTENT`, `QUOTA/MAXSIZE`, `TAG`, …).
    pub code: Option<String>,
    pub text: String,
}

/// The line as a final response, or `None` for a data line.
pub(crate) fn response_of(tokens: &[Token]) -> Result<Option<Response>, SieveError> {
    let bad = |m: &str| SieveError::Protocol(m.to_owned());
    let status = match tokens.first() {
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("OK") => Status::Ok,
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("NO") => Status::No,
        Some(Token::Atom(a)) if a.eq_ignore_ascii_case("BYE") => Status::Bye,
        Some(Token::Atom(a)) => return Err(bad(&format!("unexpected response {a}"))),
        _ => return Ok(None),
    };
    let mut rest = &tokens[1..];
    let mut code = None;
    if let Some(Token::Open) = rest.first() {
        let Some(close) = rest.iter().position(|t| *t == Token::Close) else {
            return Err(bad("unterminated response code"));
        };
        match rest.get(1) {
            Some(Token::Atom(a)) if close >= 2 => code = Some(a.to_ascii_uppercase()),
            _ => return Err(bad("empty response code")),
        }
        if rest[2..close]
            .iter()
            .any(|t| matches!(t, Token::Open | Token::Close))
        {
            return Err(bad("nested response code"));
        }
        rest = &rest[close + 1..];
    }
    let text = match rest {
        [] => String::new(),
        [Token::Str(s)] => String::from_utf8_lossy(s).into_owned(),
        _ => return Err(bad("unexpected data after a response")),
    };
    Ok(Some(Response { status, code, text }))
}

/// What the server offers (RFC 5804 §1.7).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SieveCapabilities {
    pub implementation: Option<String>,
    /// The Sieve extensions, lower-cased (`vacation`, `date`, `relational`, …).
    pub extensions: Vec<String>,
    /// SASL mechanisms, upper-cased.
    pub sasl: Vec<String>,
    pub starttls: bool,
    pub version: Option<String>,
}

impl SieveCapabilities {
    fn from_lines(lines: &[Vec<Token>]) -> Result<SieveCapabilities, SieveError> {
        let mut caps = SieveCapabilities::default();
        for line in lines {
            let (name, value) = match line.as_slice() {
                [Token::Str(n)] => (n, None),
                [Token::Str(n), Token::Str(v)] => (n, Some(String::from_utf8_lossy(v))),
                _ => {
                    return Err(SieveError::Protocol(
                        "a capability line is not one or two strings".into(),
                    ));
                }
            };
            let value = value.unwrap_or_default();
            match String::from_utf8_lossy(name).to_ascii_uppercase().as_str() {
                "IMPLEMENTATION" => caps.implementation = Some(value.into_owned()),
                "SIEVE" => {
                    caps.extensions = value
                        .split_ascii_whitespace()
                        .map(str::to_ascii_lowercase)
                        .collect();
                }
                "SASL" => {
                    caps.sasl = value
                        .split_ascii_whitespace()
                        .map(str::to_ascii_uppercase)
                        .collect();
                }
                "STARTTLS" => caps.starttls = true,
                "VERSION" => caps.version = Some(value.into_owned()),
                _ => {}
            }
        }
        Ok(caps)
    }

    pub fn has_extension(&self, name: &str) -> bool {
        self.extensions.iter().any(|e| e.eq_ignore_ascii_case(name))
    }
}

// ---------------------------------------------------------------- the client

/// A string argument: quoted when it can be, else a non-synchronizing literal.
fn string_arg(s: &str) -> Vec<u8> {
    if s.len() <= 1000 && !s.contains(['\r', '\n', '\0']) {
        let mut out = Vec::with_capacity(s.len() + 2);
        out.push(b'"');
        for b in s.bytes() {
            if b == b'"' || b == b'\\' {
                out.push(b'\\');
            }
            out.push(b);
        }
        out.push(b'"');
        out
    } else {
        let mut out = format!("{{{}+}}\r\n", s.len()).into_bytes();
        out.extend_from_slice(s.as_bytes());
        out
    }
}

/// The TLS handshake, verified exactly as the IMAP connection's is.
async fn secure(server: &SieveServer, tcp: TcpStream) -> Result<ImapStream, SieveError> {
    let mut tls_server = ImapServer::new(server.host.clone(), server.port, server.security);
    tls_server.extra_ca_pem = server.extra_ca_pem.clone();
    handshake(&tls_server, tcp)
        .await
        .map(|s| ImapStream::Tls(Box::new(s)))
        .map_err(|e| SieveError::Tls(e.to_string()))
}

/// An authenticated ManageSieve session.
#[derive(Debug)]
pub struct SieveClient {
    stream: ImapStream,
    buf: Vec<u8>,
    timeout: Duration,
    capabilities: SieveCapabilities,
}

impl SieveClient {
    /// Connects, secures the connection as configured (never falling back to plain text),
    /// reads the capabilities and logs in with `AUTHENTICATE "PLAIN"`.
    pub async fn connect(
        server: &SieveServer,
        creds: &Credentials,
    ) -> Result<SieveClient, SieveError> {
        tokio::time::timeout(server.timeout, Self::open(server, creds))
            .await
            .map_err(|_| SieveError::Timeout)?
    }

    async fn open(server: &SieveServer, creds: &Credentials) -> Result<SieveClient, SieveError> {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| SieveError::Connect {
                host: server.host.clone(),
                port: server.port,
                message: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = match server.security {
            Security::Tls => secure(server, tcp).await?,
            Security::Plain | Security::StartTls => ImapStream::Plain(tcp),
        };
        let mut client = SieveClient {
            stream,
            buf: Vec::new(),
            timeout: server.timeout,
            capabilities: SieveCapabilities::default(),
        };
        client.read_capabilities("the greeting").await?;
        if server.security == Security::StartTls {
            if !client.capabilities.starttls {
                return Err(SieveError::Tls("the server does not offer STARTTLS".into()));
            }
            client.command(b"STARTTLS\r\n", "STARTTLS").await?;
            if !client.buf.is_empty() {
                return Err(SieveError::Protocol("data after the STARTTLS reply".into()));
            }
            let ImapStream::Plain(tcp) = client.stream else {
                return Err(SieveError::Protocol("STARTTLS on a TLS stream".into()));
            };
            client.stream = secure(server, tcp).await?;
            // RFC 5804 §2.2: the server sends its capabilities again after the handshake.
            client
                .read_capabilities("the capabilities after STARTTLS")
                .await?;
        }
        client.authenticate(creds).await?;
        Ok(client)
    }

    async fn read_capabilities(&mut self, what: &str) -> Result<(), SieveError> {
        let (lines, _) = self.response(what).await?;
        self.capabilities = SieveCapabilities::from_lines(&lines)?;
        Ok(())
    }

    async fn authenticate(&mut self, creds: &Credentials) -> Result<(), SieveError> {
        if !self.capabilities.sasl.iter().any(|m| m == "PLAIN") {
            return Err(SieveError::AuthFailed {
                username: creds.username.clone(),
                message: format!(
                    "the server offers no SASL PLAIN (it has {})",
                    self.capabilities.sasl.join(" ")
                ),
            });
        }
        let mut plain = vec![0u8];
        plain.extend_from_slice(creds.username.as_bytes());
        plain.push(0);
        plain.extend_from_slice(creds.password.expose().as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
        let line = format!("AUTHENTICATE \"PLAIN\" \"{b64}\"\r\n");
        match self.command(line.as_bytes(), "AUTHENTICATE").await {
            Ok(_) => Ok(()),
            Err(SieveError::No { message, .. }) => Err(SieveError::AuthFailed {
                username: creds.username.clone(),
                message,
            }),
            Err(e) => Err(e),
        }
    }

    /// What the server offered (after STARTTLS, the capabilities it sent then).
    pub fn capabilities(&self) -> &SieveCapabilities {
        &self.capabilities
    }

    async fn read_line(&mut self) -> Result<Vec<Token>, SieveError> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some((tokens, used)) = split_line(&self.buf)? {
                self.buf.drain(..used);
                return Ok(tokens);
            }
            if self.buf.len() > MAX_RESPONSE {
                return Err(SieveError::Protocol("response too large".into()));
            }
            let n = tokio::time::timeout(self.timeout, self.stream.read(&mut chunk))
                .await
                .map_err(|_| SieveError::Timeout)?
                .map_err(|e| SieveError::Bye(e.to_string()))?;
            if n == 0 {
                return Err(SieveError::Bye("connection closed".into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Data lines up to the final response; `NO` and `BYE` are errors naming `command`.
    async fn response(&mut self, command: &str) -> Result<(Vec<Vec<Token>>, String), SieveError> {
        let mut data = Vec::new();
        loop {
            let line = self.read_line().await?;
            match response_of(&line)? {
                None if data.len() < MAX_DATA_LINES => data.push(line),
                None => return Err(SieveError::Protocol("too many data lines".into())),
                Some(r) => {
                    return match r.status {
                        Status::Ok => Ok((data, r.text)),
                        Status::No => Err(SieveError::No {
                            command: command.to_owned(),
                            code: r.code,
                            message: r.text,
                        }),
                        Status::Bye => Err(SieveError::Bye(r.text)),
                    };
                }
            }
        }
    }

    async fn command(
        &mut self,
        bytes: &[u8],
        name: &str,
    ) -> Result<(Vec<Vec<Token>>, String), SieveError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(self.timeout, write)
            .await
            .map_err(|_| SieveError::Timeout)?
            .map_err(|e| SieveError::Bye(e.to_string()))?;
        self.response(name).await
    }

    /// Every script, and whether it is the active one.
    pub async fn list_scripts(&mut self) -> Result<Vec<(String, bool)>, SieveError> {
        let (lines, _) = self.command(b"LISTSCRIPTS\r\n", "LISTSCRIPTS").await?;
        lines
            .into_iter()
            .map(|l| match l.as_slice() {
                [Token::Str(n)] => Ok((String::from_utf8_lossy(n).into_owned(), false)),
                [Token::Str(n), Token::Atom(a)] if a.eq_ignore_ascii_case("ACTIVE") => {
                    Ok((String::from_utf8_lossy(n).into_owned(), true))
                }
                _ => Err(SieveError::Protocol("bad LISTSCRIPTS line".into())),
            })
            .collect()
    }

    /// The active script's name, if any.
    pub async fn active_script(&mut self) -> Result<Option<String>, SieveError> {
        Ok(self
            .list_scripts()
            .await?
            .into_iter()
            .find_map(|(name, active)| active.then_some(name)))
    }

    pub async fn get_script(&mut self, name: &str) -> Result<String, SieveError> {
        let mut line = b"GETSCRIPT ".to_vec();
        line.extend(string_arg(name));
        line.extend_from_slice(b"\r\n");
        let (lines, _) = self.command(&line, "GETSCRIPT").await?;
        match lines.as_slice() {
            [l] => match l.as_slice() {
                [Token::Str(s)] => String::from_utf8(s.clone())
                    .map_err(|_| SieveError::Protocol("a script that is not UTF-8".into())),
                _ => Err(SieveError::Protocol("bad GETSCRIPT reply".into())),
            },
            _ => Err(SieveError::Protocol("bad GETSCRIPT reply".into())),
        }
    }

    /// Stores (or replaces) a script; the server checks it first and refuses a bad one.
    pub async fn put_script(&mut self, name: &str, script: &str) -> Result<(), SieveError> {
        let mut line = b"PUTSCRIPT ".to_vec();
        line.extend(string_arg(name));
        line.extend(format!(" {{{}+}}\r\n", script.len()).into_bytes());
        line.extend_from_slice(script.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.command(&line, "PUTSCRIPT").await.map(drop)
    }

    /// Asks the server whether a script is valid, storing nothing.
    pub async fn check_script(&mut self, script: &str) -> Result<(), SieveError> {
        let mut line = format!("CHECKSCRIPT {{{}+}}\r\n", script.len()).into_bytes();
        line.extend_from_slice(script.as_bytes());
        line.extend_from_slice(b"\r\n");
        self.command(&line, "CHECKSCRIPT").await.map(drop)
    }

    /// Makes `name` the active script; `""` deactivates whichever is active.
    pub async fn set_active(&mut self, name: &str) -> Result<(), SieveError> {
        let mut line = b"SETACTIVE ".to_vec();
        line.extend(string_arg(name));
        line.extend_from_slice(b"\r\n");
        self.command(&line, "SETACTIVE").await.map(drop)
    }

    pub async fn delete_script(&mut self, name: &str) -> Result<(), SieveError> {
        let mut line = b"DELETESCRIPT ".to_vec();
        line.extend(string_arg(name));
        line.extend_from_slice(b"\r\n");
        self.command(&line, "DELETESCRIPT").await.map(drop)
    }

    /// Ends the session; errors are of no interest any more.
    pub async fn logout(mut self) {
        let _ = self.command(b"LOGOUT\r\n", "LOGOUT").await;
    }
}

// ---------------------------------------------------------------- the vacation script

/// A vacation response as the script implements it (JMAP VacationResponse's fields).
pub use upstream::VacationSettings as Vacation;

/// The reply text when the setting gives neither a text nor an HTML body.
const DEFAULT_REASON: &str = "I am away and will read your message when I am back.";

/// A Sieve quoted string: `"` and `\` escaped; line breaks (not wanted in a subject) and
/// NULs become spaces.
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\r' | '\n' | '\0' => out.push(' '),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A Sieve multi-line string (`text:` … `.`): CRLF line ends, a line starting with `.`
/// dot-stuffed, NULs dropped.
fn multiline(s: &str) -> String {
    let normalized = s
        .replace("\r\n", "\n")
        .replace(['\r'], "\n")
        .replace('\0', "");
    let body = normalized.strip_suffix('\n').unwrap_or(&normalized);
    let mut out = String::from("text:\r\n");
    for line in body.split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// `(yyyy-mm-dd, hh:mm:ss)` in UTC.
fn utc_parts(t: i64) -> (String, String) {
    let (y, m, d) = upstream::civil::civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60),
    )
}

/// A test that is true when now (UTC) is at or after `t` (`after`), or before `t`.
/// Date and time are compared separately, as fixed-width strings, so no time-zone form of
/// the server's ISO 8601 output can upset the comparison.
fn date_test(t: i64, after: bool) -> String {
    let (date, time) = utc_parts(t);
    let (day_rel, time_rel) = if after { ("gt", "ge") } else { ("lt", "lt") };
    format!(
        "anyof(currentdate :zone \"+0000\" :value \"{day_rel}\" \"date\" \"{date}\",\r\n          \
         allof(currentdate :zone \"+0000\" :is \"date\" \"{date}\",\r\n                \
         currentdate :zone \"+0000\" :value \"{time_rel}\" \"time\" \"{time}\"))"
    )
}

/// A body part in base64, lines of 76.
fn base64_part(content_type: &str, body: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let mut out = format!(
        "Content-Type: {content_type}; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    for chunk in b64.as_bytes().chunks(76) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push_str("\r\n");
    }
    out
}

/// The Sieve script (RFC 5228) that answers mail as `v` says: `vacation :days 1` (RFC 5230),
/// guarded by `currentdate` tests (RFC 5260 date, RFC 5231 relational) when `v` has dates;
/// with an HTML body, a `:mime` reply (multipart/alternative when there is text too).
/// A disabled `v` gives a script that does nothing.
pub fn vacation_script(v: &Vacation) -> String {
    let mut guards = Vec::new();
    if let Some(t) = v.from_date {
        guards.push(date_test(t, true));
    }
    if let Some(t) = v.to_date {
        guards.push(date_test(t, false));
    }
    let mut out = String::from(
        "# Written by jmap-gateway from the JMAP VacationResponse; changes made here are\r\n\
         # overwritten by the next VacationResponse/set.\r\n",
    );
    if !v.is_enabled {
        out.push_str("# Vacation response: off.\r\n");
        return out;
    }
    out.push_str(if guards.is_empty() {
        "require [\"vacation\"];\r\n\r\n"
    } else {
        "require [\"vacation\", \"date\", \"relational\"];\r\n\r\n"
    });
    let mut action = String::from("vacation :days 1");
    if let Some(subject) = &v.subject {
        action.push_str(" :subject ");
        action.push_str(&quoted(subject));
    }
    let reason = match (&v.text_body, &v.html_body) {
        (text, None) => multiline(text.as_deref().unwrap_or(DEFAULT_REASON)),
        (None, Some(html)) => {
            action.push_str(" :mime");
            multiline(&base64_part("text/html", html))
        }
        (Some(text), Some(html)) => {
            action.push_str(" :mime");
            let boundary = "=_jmap-vacation-alternative";
            multiline(&format!(
                "Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\n{}--{boundary}\r\n{}--{boundary}--\r\n",
                base64_part("text/plain", text),
                base64_part("text/html", html),
            ))
        }
    };
    action.push(' ');
    action.push_str(&reason);
    action.push_str(";\r\n");
    if guards.is_empty() {
        out.push_str(&action);
    } else {
        out.push_str("if allof(");
        out.push_str(&guards.join(",\r\n         "));
        out.push_str(") {\r\n");
        out.push_str(&action);
        out.push_str("}\r\n");
    }
    out
}

/// The extensions `v`'s script needs.
fn needed_extensions(v: &Vacation) -> Vec<&'static str> {
    let mut needed = vec!["vacation"];
    if v.from_date.is_some() || v.to_date.is_some() {
        needed.extend(["date", "relational"]);
    }
    needed
}

/// Whether the server can run the vacation script: it logs in and offers `vacation`.
pub async fn supports_vacation(
    server: &SieveServer,
    creds: &Credentials,
) -> Result<bool, SieveError> {
    let client = SieveClient::connect(server, creds).await?;
    let ok = client.capabilities().has_extension("vacation");
    client.logout().await;
    Ok(ok)
}

/// Makes `v` the account's vacation response on the ManageSieve server.
///
/// On: [`VACATION_SCRIPT`] is written (PUTSCRIPT, which the server checks) and activated;
/// refused with [`SieveError::OtherScriptActive`] when another script is active, which is
/// left as it is. Off: our script is deactivated if it is the active one (and kept, so the
/// last setting can still be read); another active script is left alone.
pub async fn apply_vacation(
    server: &SieveServer,
    creds: &Credentials,
    v: &Vacation,
) -> Result<(), SieveError> {
    let mut client = SieveClient::connect(server, creds).await?;
    let result = apply_on(&mut client, v).await;
    client.logout().await;
    result
}

async fn apply_on(client: &mut SieveClient, v: &Vacation) -> Result<(), SieveError> {
    let active = client.active_script().await?;
    let ours_active = active.as_deref() == Some(VACATION_SCRIPT);
    if !v.is_enabled {
        if ours_active {
            client.set_active("").await?;
        }
        return Ok(());
    }
    if let Some(other) = active.filter(|_| !ours_active) {
        return Err(SieveError::OtherScriptActive(other));
    }
    for ext in needed_extensions(v) {
        if !client.capabilities().has_extension(ext) {
            return Err(SieveError::MissingExtension(ext.to_owned()));
        }
    }
    client
        .put_script(VACATION_SCRIPT, &vacation_script(v))
        .await?;
    if !ours_active {
        client.set_active(VACATION_SCRIPT).await?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};
    use upstream::Secret;

    fn line(bytes: &[u8]) -> Vec<Token> {
        let (tokens, used) = split_line(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        tokens
    }

    fn s(x: &str) -> Token {
        Token::Str(x.as_bytes().to_vec())
    }

    #[test]
    fn lines_with_quoted_strings_literals_and_codes() {
        assert_eq!(
            line(b"\"SIEVE\" \"fileinto vacation\"\r\n"),
            [s("SIEVE"), s("fileinto vacation")]
        );
        assert_eq!(
            line(b"\"a \\\"q\\\" \\\\ b\" ACTIVE\r\n"),
            [s("a \"q\" \\ b"), Token::Atom("ACTIVE".into())]
        );
        assert_eq!(line(b"{5}\r\nab\r\nc\r\n"), [s("ab\r\nc")]);
        assert_eq!(line(b"{3+}\r\nabc\r\n"), [s("abc")]);
        let r = response_of(&line(b"NO (QUOTA/MAXSIZE) \"too big\"\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(r.status, Status::No);
        assert_eq!(r.code.as_deref(), Some("QUOTA/MAXSIZE"));
        assert_eq!(r.text, "too big");
        let r = response_of(&line(b"ok (tag \"x\")\r\n")).unwrap().unwrap();
        assert_eq!((r.status, r.code.as_deref()), (Status::Ok, Some("TAG")));
        let r = response_of(&line(b"NO {11}\r\nline 1: bad\r\n"))
            .unwrap()
            .unwrap();
        assert_eq!(r.text, "line 1: bad");
        let r = response_of(&line(b"BYE\r\n")).unwrap().unwrap();
        assert_eq!((r.status, r.text.as_str()), (Status::Bye, ""));
        assert_eq!(response_of(&line(b"\"x\"\r\n")).unwrap(), None);
    }

    #[test]
    fn incomplete_input_asks_for_more() {
        for partial in [
            &b"\"SIEVE\" \"vac"[..],
            b"OK",
            b"OK\r",
            b"{10}\r\nabc",
            b"{10",
            b"{3}\r",
            b"\"a\\",
        ] {
            assert_eq!(split_line(partial).unwrap(), None, "{partial:?}");
        }
        // Two lines at once: the first is split off, the rest left.
        let (t, used) = split_line(b"\"x\"\r\nOK\r\n").unwrap().unwrap();
        assert_eq!((t, used), (vec![s("x")], 5));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        for bad in [
            &b"\"a\rb\"\r\n"[..],
            b"{x}\r\n",
            b"{99999999999}\r\n",
            b"{3}abc\r\n",
            b"\"a\\x\"\r\n",
            b"OK\rX",
            b"{123456789012345678901234567890",
        ] {
            assert!(split_line(bad).is_err(), "{bad:?}");
        }
        for bad in [
            &b"OK (\r\n"[..],
            b"OK () \"x\"\r\n",
            b"OK \"a\" \"b\"\r\n",
            b"MAYBE\r\n",
            b"OK (A (B))\r\n",
        ] {
            assert!(response_of(&line(bad)).is_err(), "{bad:?}");
        }
        // Arbitrary bytes never panic.
        let mut seed = 7u32;
        for _ in 0..2000 {
            let bytes: Vec<u8> = (0..24)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    b"\"\\{}()+0123 \r\nOKNOab"[(seed >> 16) as usize % 20]
                })
                .collect();
            if let Ok(Some((t, _))) = split_line(&bytes) {
                let _ = response_of(&t);
            }
        }
    }

    #[test]
    fn capabilities_are_read() {
        let lines = vec![
            line(b"\"IMPLEMENTATION\" \"Dovecot Pigeonhole\"\r\n"),
            line(b"\"SIEVE\" \"fileinto Vacation date relational\"\r\n"),
            line(b"\"SASL\" \"plain login\"\r\n"),
            line(b"\"STARTTLS\"\r\n"),
            line(b"\"VERSION\" \"1.0\"\r\n"),
        ];
        let c = SieveCapabilities::from_lines(&lines).unwrap();
        assert!(c.has_extension("vacation") && c.has_extension("date"));
        assert_eq!(c.sasl, ["PLAIN", "LOGIN"]);
        assert!(c.starttls);
        assert_eq!(c.version.as_deref(), Some("1.0"));
        assert!(SieveCapabilities::from_lines(&[vec![Token::Atom("X".into())]]).is_err());
    }

    #[test]
    fn string_arguments_are_quoted_or_literal() {
        assert_eq!(string_arg("a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(string_arg("a\r\nb"), b"{4+}\r\na\r\nb");
    }

    #[test]
    fn a_plain_vacation_script() {
        let script = vacation_script(&Vacation {
            is_enabled: true,
            subject: Some("Away \"now\" \\ back\r\nBcc: x".into()),
            text_body: Some("Hello\n.\n.hidden\nbye\n".into()),
            ..Vacation::default()
        });
        assert!(script.contains("require [\"vacation\"];\r\n"), "{script}");
        assert!(!script.contains("currentdate"));
        assert!(
            script.contains(
                "vacation :days 1 :subject \"Away \\\"now\\\" \\\\ back  Bcc: x\" text:\r\n\
                 Hello\r\n..\r\n..hidden\r\nbye\r\n.\r\n;\r\n"
            ),
            "{script}"
        );
    }

    #[test]
    fn dates_guard_the_vacation() {
        let script = vacation_script(&Vacation {
            is_enabled: true,
            from_date: Some(1_893_456_000), // 2030-01-01T00:00:00Z
            to_date: Some(1_893_456_000 + 90_061), // 2030-01-02T01:01:01Z
            ..Vacation::default()
        });
        assert!(script.contains("require [\"vacation\", \"date\", \"relational\"];"));
        assert!(
            script.contains("currentdate :zone \"+0000\" :value \"gt\" \"date\" \"2030-01-01\"")
        );
        assert!(script.contains("currentdate :zone \"+0000\" :value \"ge\" \"time\" \"00:00:00\""));
        assert!(
            script.contains("currentdate :zone \"+0000\" :value \"lt\" \"date\" \"2030-01-02\"")
        );
        assert!(script.contains("currentdate :zone \"+0000\" :is \"date\" \"2030-01-02\""));
        assert!(script.contains("currentdate :zone \"+0000\" :value \"lt\" \"time\" \"01:01:01\""));
        assert!(script.contains(DEFAULT_REASON));
        assert_eq!(utc_parts(-1), ("1969-12-31".into(), "23:59:59".into()));
    }

    #[test]
    fn html_makes_a_mime_reply() {
        let both = vacation_script(&Vacation {
            is_enabled: true,
            text_body: Some("plain".into()),
            html_body: Some("<p>html</p>".into()),
            ..Vacation::default()
        });
        assert!(both.contains(":mime text:\r\nContent-Type: multipart/alternative"));
        assert!(both.contains(&base64::engine::general_purpose::STANDARD.encode("plain")));
        assert!(both.contains(&base64::engine::general_purpose::STANDARD.encode("<p>html</p>")));
        assert!(both.contains("--=_jmap-vacation-alternative--\r\n.\r\n;"));
        let html = vacation_script(&Vacation {
            is_enabled: true,
            html_body: Some("<p>x</p>".into()),
            ..Vacation::default()
        });
        assert!(html.contains(":mime text:\r\nContent-Type: text/html; charset=utf-8\r\n"));
        let off = vacation_script(&Vacation::default());
        assert!(!off.contains("vacation :days"));
    }

    /// A scripted ManageSieve server: greets, accepts PLAIN, answers LISTSCRIPTS with
    /// `scripts` and records every command line.
    async fn fake_server(
        scripts: &'static str,
    ) -> (SieveServer, tokio::task::JoinHandle<Vec<String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tcp.into_split();
            let mut r = BufReader::new(r);
            w.write_all(b"\"IMPLEMENTATION\" \"fake\"\r\n\"SIEVE\" \"vacation\"\r\n\"SASL\" \"PLAIN\"\r\nOK \"hi\"\r\n")
                .await
                .unwrap();
            let mut seen = Vec::new();
            loop {
                let mut l = String::new();
                if r.read_line(&mut l).await.unwrap() == 0 {
                    break;
                }
                let l = l.trim_end().to_owned();
                if let Some(n) = l
                    .strip_suffix("+}")
                    .and_then(|x| x.rsplit_once('{'))
                    .map(|(_, n)| n.parse::<usize>().unwrap())
                {
                    let mut lit = vec![0; n + 2];
                    tokio::io::AsyncReadExt::read_exact(&mut r, &mut lit)
                        .await
                        .unwrap();
                }
                let reply: &[u8] = if l.starts_with("LISTSCRIPTS") {
                    scripts.as_bytes()
                } else if l.starts_with("LOGOUT") {
                    b"OK \"bye\"\r\n"
                } else {
                    b"OK\r\n"
                };
                seen.push(l);
                w.write_all(reply).await.unwrap();
            }
            seen
        });
        (SieveServer::new("127.0.0.1", port, Security::Plain), task)
    }

    fn creds() -> Credentials {
        Credentials {
            username: "u".into(),
            password: Secret::new("p".into()),
        }
    }

    #[tokio::test]
    async fn another_active_script_is_never_replaced() {
        let on = Vacation {
            is_enabled: true,
            ..Vacation::default()
        };
        let (server, task) = fake_server("\"mine\" ACTIVE\r\n\"jmap-vacation\"\r\nOK\r\n").await;
        let e = apply_vacation(&server, &creds(), &on).await.unwrap_err();
        assert_eq!(e, SieveError::OtherScriptActive("mine".into()));
        let seen = task.await.unwrap();
        assert!(seen[0].starts_with("AUTHENTICATE \"PLAIN\" \""), "{seen:?}");
        assert_eq!(seen[1..], ["LISTSCRIPTS", "LOGOUT"]);

        // Off while another script is active: nothing is changed.
        let (server, task) = fake_server("\"mine\" ACTIVE\r\nOK\r\n").await;
        apply_vacation(&server, &creds(), &Vacation::default())
            .await
            .unwrap();
        assert_eq!(task.await.unwrap()[1..], ["LISTSCRIPTS", "LOGOUT"]);
    }

    #[tokio::test]
    async fn ours_is_written_activated_and_deactivated() {
        let on = Vacation {
            is_enabled: true,
            ..Vacation::default()
        };
        let (server, task) = fake_server("\"mine\"\r\nOK\r\n").await;
        apply_vacation(&server, &creds(), &on).await.unwrap();
        let seen = task.await.unwrap();
        assert!(
            seen[2].starts_with("PUTSCRIPT \"jmap-vacation\" {"),
            "{seen:?}"
        );
        assert_eq!(seen[3..], ["SETACTIVE \"jmap-vacation\"", "LOGOUT"]);

        let (server, task) = fake_server("\"jmap-vacation\" ACTIVE\r\nOK\r\n").await;
        apply_vacation(&server, &creds(), &Vacation::default())
            .await
            .unwrap();
        assert_eq!(
            task.await.unwrap()[1..],
            ["LISTSCRIPTS", "SETACTIVE \"\"", "LOGOUT"]
        );

        // Dates need extensions this server lacks.
        let (server, _task) = fake_server("OK\r\n").await;
        let dated = Vacation {
            from_date: Some(0),
            ..on
        };
        let e = apply_vacation(&server, &creds(), &dated).await.unwrap_err();
        assert_eq!(e, SieveError::MissingExtension("date".into()));
    }
}

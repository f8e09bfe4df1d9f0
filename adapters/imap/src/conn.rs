//! One IMAP connection driven by our own parser: framing, tags, literals, timeouts, the
//! login sequence (STARTTLS, AUTHENTICATE/LOGIN, ID, ENABLE) and SELECT.
//!
//! Every response is read here, so nothing is dropped: responses that arrive while a
//! command waits for a literal continuation are queued and handed to the next reader. Any
//! I/O error, timeout or malformed response marks the connection broken; the pool never
//! reuses a broken connection.

use std::borrow::Cow;
use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use upstream::UpstreamError;

use crate::connection::{Credentials, ImapError, ImapServer, ImapStream, Security, handshake};
use crate::proto::{self, Response, Status, StatusLine, Value};

/// How to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// AUTHENTICATE PLAIN when offered (SASL-IR), else LOGIN, with the password.
    #[default]
    Password,
    /// AUTHENTICATE XOAUTH2; the credentials' password is the OAuth 2 access token.
    XOAuth2,
    /// AUTHENTICATE OAUTHBEARER (RFC 7628); the password is the access token.
    OAuthBearer,
}

/// What went wrong on a connection.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnError {
    #[error("connection lost: {0}")]
    Io(String),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("server closed the connection: {0}")]
    Closed(String),
    #[error("malformed response: {0}")]
    Parse(String),
    #[error("server said NO: {text}")]
    No { text: String, code: Option<String> },
    #[error("server said BAD: {0}")]
    Bad(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("{0}")]
    Unsupported(String),
}

impl ConnError {
    /// Worth a new connection and another try.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ConnError::Io(_) | ConnError::Timeout | ConnError::Closed(_) | ConnError::Parse(_)
        )
    }
}

impl From<std::io::Error> for ConnError {
    fn from(e: std::io::Error) -> Self {
        ConnError::Io(e.to_string())
    }
}

impl From<ImapError> for ConnError {
    fn from(e: ImapError) -> Self {
        match e {
            ImapError::LoginRejected { message, .. } => ConnError::Auth(message),
            ImapError::Timeout { .. } => ConnError::Timeout,
            other => ConnError::Io(other.to_string()),
        }
    }
}

impl From<ConnError> for UpstreamError {
    fn from(e: ConnError) -> Self {
        match e {
            ConnError::Io(_) | ConnError::Timeout | ConnError::Closed(_) => {
                UpstreamError::Unavailable(e.to_string())
            }
            ConnError::Parse(m) | ConnError::Bad(m) => UpstreamError::Protocol(m),
            ConnError::No { text, code } => match code.as_deref() {
                Some("NONEXISTENT" | "TRYCREATE") => UpstreamError::NotFound(text),
                Some("UNAVAILABLE" | "INUSE" | "LIMIT") => UpstreamError::Unavailable(text),
                Some("NOPERM" | "CANNOT" | "OVERQUOTA" | "ALREADYEXISTS" | "CONTACTADMIN") => {
                    UpstreamError::Refused(text)
                }
                _ => UpstreamError::Refused(text),
            },
            ConnError::Auth(m) => UpstreamError::AuthFailed(m),
            ConnError::Unsupported(m) => UpstreamError::Unsupported(m),
        }
    }
}

pub type Result<T> = std::result::Result<T, ConnError>;

/// A piece of a command: raw text or a literal.
#[derive(Debug, Clone)]
pub enum Part<'a> {
    Text(Cow<'a, [u8]>),
    Literal(&'a [u8]),
}

impl<'a> From<&'a str> for Part<'a> {
    fn from(s: &'a str) -> Self {
        Part::Text(Cow::Borrowed(s.as_bytes()))
    }
}

impl From<String> for Part<'_> {
    fn from(s: String) -> Self {
        Part::Text(Cow::Owned(s.into_bytes()))
    }
}

/// Appends an astring (atom, quoted, or literal) to a command.
pub fn push_astring<'a>(parts: &mut Vec<Part<'a>>, s: &'a str) {
    match proto::astring(s.as_bytes()) {
        Some(q) => parts.push(Part::Text(Cow::Owned(q))),
        None => parts.push(Part::Literal(s.as_bytes())),
    }
}

/// The state of the selected mailbox, from SELECT's responses.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    pub name: String,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub exists: u32,
    pub highestmodseq: Option<u64>,
    pub read_only: bool,
    /// `\*` in PERMANENTFLAGS: custom keywords can be stored.
    pub custom_keywords: bool,
}

/// Connection settings that are not about the server's address.
#[derive(Debug, Clone)]
pub struct ConnOptions {
    pub auth: AuthMethod,
    /// Limit for one response to arrive (idle waits have their own).
    pub command_timeout: Duration,
    /// Largest single response accepted (a whole message fetched with BODY[] included).
    pub max_response_bytes: usize,
    /// Extensions to ENABLE when offered, in order of preference (`QRESYNC`, `CONDSTORE`).
    pub enable: Vec<&'static str>,
    /// Sent with ID when the server offers it.
    pub client_id: Option<(String, String)>,
    /// Turn on COMPRESS=DEFLATE (RFC 4978) when the server offers it.
    pub compress: bool,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            auth: AuthMethod::Password,
            command_timeout: Duration::from_secs(120),
            max_response_bytes: 256 << 20,
            enable: vec!["QRESYNC", "CONDSTORE"],
            client_id: Some(("jmap-gateway".into(), env!("CARGO_PKG_VERSION").into())),
            compress: false,
        }
    }
}

/// One authenticated IMAP connection.
#[derive(Debug)]
pub struct Conn {
    stream: ImapStream,
    buf: Vec<u8>,
    start: usize,
    next_tag: u32,
    /// CAPABILITY after login, uppercased.
    pub caps: BTreeSet<String>,
    /// What ENABLE switched on, uppercased.
    pub enabled: BTreeSet<String>,
    pub selected: Option<Selected>,
    /// Whether this session ever selected a mailbox. Dovecot 2.3 can leave such a session
    /// with a stale mailbox list (a change is missing from its LIST after a mailbox it had
    /// selected was renamed by another session and it selected another), which a session
    /// that never selected anything does not show.
    pub has_selected: bool,
    /// The server's name from its ID reply (`Dovecot`), for server-specific items.
    pub server_name: Option<String>,
    pending: VecDeque<Response>,
    pub broken: bool,
    timeout: Duration,
    max_response: usize,
    /// Set once COMPRESS DEFLATE succeeded: every byte both ways goes through it.
    deflate: Option<Box<Deflate>>,
}

/// RFC 4978 compression: raw deflate (no zlib header) each way, with a sync flush after
/// every write so the server sees each command whole.
struct Deflate {
    out: flate2::Compress,
    inp: flate2::Decompress,
    /// Compressed bytes as read, before inflating.
    raw: Vec<u8>,
}

impl std::fmt::Debug for Deflate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflate")
            .field("in", &self.inp.total_in())
            .field("out", &self.out.total_out())
            .finish()
    }
}

impl Deflate {
    fn new() -> Deflate {
        Deflate {
            out: flate2::Compress::new(flate2::Compression::fast(), false),
            inp: flate2::Decompress::new(false),
            raw: Vec::new(),
        }
    }

    /// Compresses one write, ending in a sync flush.
    fn compress(&mut self, mut input: &[u8]) -> std::result::Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.out.total_in();
            self.out
                .compress_vec(input, &mut out, flate2::FlushCompress::Sync)
                .map_err(|e| format!("deflate: {e}"))?;
            input = &input[(self.out.total_in() - before) as usize..];
            // Done when all input is taken and the flush fitted (room was left over).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Inflates everything in `raw` onto the end of `buf`, refusing to grow `buf` past
    /// `limit` bytes (a small compressed input can expand enormously).
    fn inflate_into(&mut self, buf: &mut Vec<u8>, limit: usize) -> std::result::Result<(), String> {
        let mut input = &self.raw[..];
        // Inflated in bounded steps, so the limit holds to within one step.
        let mut step = vec![0u8; 32 << 10];
        loop {
            if buf.len() > limit {
                return Err(format!("a response over {limit} bytes"));
            }
            let (in0, out0) = (self.inp.total_in(), self.inp.total_out());
            let status = self
                .inp
                .decompress(input, &mut step, flate2::FlushDecompress::Sync)
                .map_err(|e| format!("inflate: {e}"))?;
            let used = (self.inp.total_in() - in0) as usize;
            let made = (self.inp.total_out() - out0) as usize;
            input = &input[used..];
            buf.extend_from_slice(&step[..made]);
            if status == flate2::Status::StreamEnd {
                return Err("the server ended the compressed stream".into());
            }
            // All input taken and the step not filled: nothing more is pending inside.
            if input.is_empty() && made < step.len() {
                break;
            }
            if used == 0 && made == 0 {
                return Err("inflate made no progress".into());
            }
        }
        self.raw.clear();
        Ok(())
    }
}

impl Conn {
    /// COMPRESS DEFLATE; a refusal (`NO`, e.g. `[COMPRESSIONACTIVE]`) leaves the connection
    /// as it was.
    async fn start_compression(&mut self) -> Result<()> {
        let (_, line) = self.run(&[Part::from("COMPRESS DEFLATE")]).await?;
        if line.status != Status::Ok {
            tracing::info!(text = %line.text, "the server refused COMPRESS DEFLATE");
            return Ok(());
        }
        if self.start != self.buf.len() || !self.pending.is_empty() {
            // Nothing may follow the OK uncompressed.
            return self.fail(ConnError::Parse("data after COMPRESS OK".into()));
        }
        self.deflate = Some(Box::new(Deflate::new()));
        Ok(())
    }

    /// Whether COMPRESS=DEFLATE is on.
    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    pub(crate) fn new(stream: ImapStream, opts: &ConnOptions) -> Conn {
        Conn {
            stream,
            buf: Vec::with_capacity(64 << 10),
            start: 0,
            next_tag: 1,
            caps: BTreeSet::new(),
            enabled: BTreeSet::new(),
            selected: None,
            has_selected: false,
            server_name: None,
            pending: VecDeque::new(),
            broken: false,
            timeout: opts.command_timeout,
            max_response: opts.max_response_bytes,
            deflate: None,
        }
    }

    pub fn has(&self, cap: &str) -> bool {
        self.caps.contains(cap)
    }

    pub fn is_enabled(&self, ext: &str) -> bool {
        self.enabled.contains(ext)
    }

    fn fail<T>(&mut self, e: ConnError) -> Result<T> {
        if e.is_transient() {
            self.broken = true;
        }
        Err(e)
    }

    /// A complete response already buffered, if any.
    fn take_buffered(&mut self) -> Result<Option<Response>> {
        let avail = &self.buf[self.start..];
        match proto::frame_len(avail) {
            Ok(Some(n)) => {
                let parsed = proto::parse_response(&avail[..n]);
                self.start += n;
                if self.start == self.buf.len() {
                    self.buf.clear();
                    self.start = 0;
                }
                match parsed {
                    Ok(r) => {
                        self.track_selected(&r);
                        Ok(Some(r))
                    }
                    Err(e) => self.fail(ConnError::Parse(e.0)),
                }
            }
            Ok(None) => Ok(None),
            Err(e) => self.fail(ConnError::Parse(e.0)),
        }
    }

    /// Keeps the selected mailbox's message count current from unsolicited updates
    /// (`EXISTS`, `EXPUNGE`, `VANISHED` without `EARLIER`), so a connection that stays
    /// selected can be synced again without a new SELECT.
    fn track_selected(&mut self, r: &Response) {
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        let Response::Data(v) = r else { return };
        if v.len() == 2 && v[1].is("EXISTS") {
            if let Some(n) = v[0].number() {
                sel.exists = n as u32;
            }
        } else if v.len() == 2 && v[1].is("EXPUNGE") {
            sel.exists = sel.exists.saturating_sub(1);
        } else if v.len() == 2
            && v[0].is("VANISHED")
            && let Some(set) = v[1].atom().and_then(crate::uidset::UidSet::parse)
        {
            sel.exists = sel.exists.saturating_sub(set.len() as u32);
        }
    }

    /// Reads more bytes into the buffer (cancel-safe: bytes read are kept).
    async fn fill(&mut self) -> Result<()> {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() - self.start > self.max_response {
            return self.fail(ConnError::Parse(format!(
                "a response over {} bytes",
                self.max_response
            )));
        }
        if let Some(d) = self.deflate.as_mut() {
            // Cancel-safe as well: the read keeps what it got, and inflating does not wait.
            d.raw.reserve(16 << 10);
            let got = self.stream.read_buf(&mut d.raw).await;
            return match got {
                Ok(0) => self.fail(ConnError::Closed("end of stream".into())),
                Ok(_) => {
                    let limit = self.start + self.max_response;
                    match d.inflate_into(&mut self.buf, limit) {
                        Ok(()) => Ok(()),
                        Err(m) => self.fail(ConnError::Parse(m)),
                    }
                }
                Err(e) => self.fail(e.into()),
            };
        }
        self.buf.reserve(64 << 10);
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => self.fail(ConnError::Closed("end of stream".into())),
            Ok(_) => Ok(()),
            Err(e) => self.fail(e.into()),
        }
    }

    /// The next response, waiting at most the command timeout.
    pub async fn read(&mut self) -> Result<Response> {
        if let Some(r) = self.pending.pop_front() {
            return Ok(r);
        }
        loop {
            if let Some(r) = self.take_buffered()? {
                if let Response::Status(StatusLine {
                    status: Status::Bye,
                    text,
                    ..
                }) = &r
                {
                    let text = text.clone();
                    self.broken = true;
                    // A BYE is followed by the close; report it as such.
                    return Err(ConnError::Closed(text));
                }
                return Ok(r);
            }
            match tokio::time::timeout(self.timeout, self.fill()).await {
                Ok(r) => r?,
                Err(_) => return self.fail(ConnError::Timeout),
            }
        }
    }

    /// Waits up to `d` for a complete response to be readable. Cancel-safe.
    pub async fn wait_readable(&mut self, d: Duration) -> Result<bool> {
        if !self.pending.is_empty() {
            return Ok(true);
        }
        let deadline = tokio::time::Instant::now() + d;
        loop {
            match proto::frame_len(&self.buf[self.start..]) {
                Ok(Some(_)) => return Ok(true),
                Ok(None) => {}
                Err(e) => return self.fail(ConnError::Parse(e.0)),
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(r) => r?,
                Err(_) => return Ok(false),
            }
        }
    }

    /// Reads and drops what the server sent while the connection sat in the pool (updates
    /// about a mailbox selected earlier: the push connection reports those), noticing a BYE
    /// or a closed socket without blocking.
    pub async fn drain_unsolicited(&mut self) -> Result<()> {
        self.pending.clear();
        while self.wait_readable(Duration::ZERO).await? {
            self.read().await?;
        }
        Ok(())
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let compressed;
        let bytes = match self.deflate.as_mut().map(|d| d.compress(bytes)) {
            None => bytes,
            Some(Ok(c)) => {
                compressed = c;
                &compressed[..]
            }
            Some(Err(m)) => return self.fail(ConnError::Parse(m)),
        };
        let r = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.timeout, r).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => self.fail(e.into()),
            Err(_) => self.fail(ConnError::Timeout),
        }
    }

    /// Sends a command and returns its tag; does not wait for the reply.
    pub async fn send(&mut self, parts: &[Part<'_>]) -> Result<String> {
        let tag = format!("g{}", self.next_tag);
        self.next_tag += 1;
        let literal_plus = self.has("LITERAL+");
        let mut out: Vec<u8> = Vec::with_capacity(64);
        out.extend_from_slice(tag.as_bytes());
        out.push(b' ');
        for p in parts {
            match p {
                Part::Text(t) => out.extend_from_slice(t),
                Part::Literal(l) => {
                    if literal_plus {
                        out.extend_from_slice(format!("{{{}+}}\r\n", l.len()).as_bytes());
                        out.extend_from_slice(l);
                    } else {
                        out.extend_from_slice(format!("{{{}}}\r\n", l.len()).as_bytes());
                        self.write(&out).await?;
                        out.clear();
                        self.await_continuation().await?;
                        out.extend_from_slice(l);
                    }
                }
            }
        }
        out.extend_from_slice(b"\r\n");
        self.write(&out).await?;
        Ok(tag)
    }

    /// Reads until a `+` continuation, queueing other untagged responses.
    async fn await_continuation(&mut self) -> Result<String> {
        let mut queued = Vec::new();
        let r = loop {
            // Bypass the pending queue: what is read here is newer than what is queued.
            let r = loop {
                if let Some(r) = self.take_buffered()? {
                    break r;
                }
                match tokio::time::timeout(self.timeout, self.fill()).await {
                    Ok(r) => r?,
                    Err(_) => return self.fail(ConnError::Timeout),
                }
            };
            match r {
                Response::Continue(text) => break Ok(text),
                Response::Tagged { line, .. } => break Err(status_error(line)),
                other => queued.push(other),
            }
        };
        self.pending.extend(queued);
        r
    }

    /// Sends a command and collects its untagged responses until its tagged reply.
    pub async fn run(&mut self, parts: &[Part<'_>]) -> Result<(Vec<Response>, StatusLine)> {
        let tag = self.send(parts).await?;
        let mut untagged = Vec::new();
        loop {
            match self.read().await? {
                Response::Tagged { tag: t, line } if t == tag => return Ok((untagged, line)),
                Response::Tagged { tag: t, .. } => {
                    return self.fail(ConnError::Parse(format!("unexpected tag {t}")));
                }
                r => untagged.push(r),
            }
        }
    }

    /// Like [`Conn::run`], but NO and BAD are errors.
    pub async fn run_ok(&mut self, parts: &[Part<'_>]) -> Result<(Vec<Response>, StatusLine)> {
        let (u, line) = self.run(parts).await?;
        match line.status {
            Status::Ok => Ok((u, line)),
            _ => Err(status_error(line)),
        }
    }

    pub async fn simple(&mut self, cmd: &str) -> Result<(Vec<Response>, StatusLine)> {
        self.run_ok(&[Part::from(cmd)]).await
    }

    /// SELECT (or EXAMINE) a mailbox and read its state.
    pub async fn select(&mut self, mailbox: &str, read_only: bool) -> Result<Selected> {
        let mut parts = vec![Part::from(if read_only { "EXAMINE " } else { "SELECT " })];
        push_astring(&mut parts, mailbox);
        self.selected = None;
        let (untagged, line) = self.run_ok(&parts).await?;
        let mut s = Selected {
            name: mailbox.to_owned(),
            read_only: read_only || line.code_name().as_deref() == Some("READ-ONLY"),
            ..Selected::default()
        };
        let mut nomodseq = false;
        for r in &untagged {
            match r {
                Response::Data(v) if v.len() == 2 && v[1].is("EXISTS") => {
                    s.exists = v[0].number().unwrap_or(0) as u32;
                }
                Response::Status(l) => {
                    let n = l.code.get(1).and_then(Value::number);
                    match l.code_name().as_deref() {
                        Some("UIDVALIDITY") => s.uidvalidity = n.unwrap_or(0) as u32,
                        Some("UIDNEXT") => s.uidnext = n.unwrap_or(0) as u32,
                        Some("HIGHESTMODSEQ") => s.highestmodseq = n,
                        Some("NOMODSEQ") => nomodseq = true,
                        Some("PERMANENTFLAGS") => {
                            s.custom_keywords = l
                                .code
                                .get(1)
                                .and_then(Value::list)
                                .is_some_and(|f| f.iter().any(|f| f.is("\\*")));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if nomodseq {
            s.highestmodseq = None;
        }
        if s.uidnext == 0 {
            // Servers must send UIDNEXT; if one does not, ask.
            let mut parts = vec![Part::from("STATUS ")];
            push_astring(&mut parts, mailbox);
            parts.push(Part::from(" (UIDNEXT)"));
            let (untagged, _) = self.run_ok(&parts).await?;
            for r in &untagged {
                if let Response::Data(v) = r
                    && v.first().is_some_and(|x| x.is("STATUS"))
                    && let Some(l) = v.get(2).and_then(Value::list)
                {
                    for kv in l.chunks(2) {
                        if kv[0].is("UIDNEXT") {
                            s.uidnext = kv.get(1).and_then(Value::number).unwrap_or(0) as u32;
                        }
                    }
                }
            }
        }
        self.selected = Some(s.clone());
        self.has_selected = true;
        Ok(s)
    }

    /// Starts IDLE; returns its tag and any responses that came before the continuation.
    pub async fn idle_start(&mut self) -> Result<(String, Vec<Response>)> {
        let tag = self.send(&[Part::from("IDLE")]).await?;
        let mut before: Vec<Response> = self.pending.drain(..).collect();
        loop {
            let r = loop {
                if let Some(r) = self.take_buffered()? {
                    break r;
                }
                match tokio::time::timeout(self.timeout, self.fill()).await {
                    Ok(r) => r?,
                    Err(_) => return self.fail(ConnError::Timeout),
                }
            };
            match r {
                Response::Continue(_) => return Ok((tag, before)),
                Response::Tagged { line, .. } => return Err(status_error(line)),
                Response::Status(StatusLine {
                    status: Status::Bye,
                    text,
                    ..
                }) => return self.fail(ConnError::Closed(text)),
                other => before.push(other),
            }
        }
    }

    /// Ends IDLE and collects the responses up to its tagged reply.
    pub async fn idle_done(&mut self, tag: &str) -> Result<Vec<Response>> {
        self.write(b"DONE\r\n").await?;
        let mut out = Vec::new();
        loop {
            match self.read().await? {
                Response::Tagged { tag: t, line } if t == tag => {
                    return match line.status {
                        Status::Ok => Ok(out),
                        _ => Err(status_error(line)),
                    };
                }
                Response::Tagged { .. } => {}
                r => out.push(r),
            }
        }
    }

    /// Logs out politely (errors ignored: the connection is going away anyway).
    pub async fn logout(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.simple("LOGOUT")).await;
    }
}

/// A non-OK tagged reply as an error.
pub fn status_error(line: StatusLine) -> ConnError {
    match line.status {
        Status::Bad => ConnError::Bad(line.text),
        _ => ConnError::No {
            code: line.code_name(),
            text: line.text,
        },
    }
}

fn caps_from(values: &[Value]) -> BTreeSet<String> {
    values
        .iter()
        .filter_map(Value::atom)
        .map(str::to_ascii_uppercase)
        .collect()
}

/// Capabilities found in a status line's `[CAPABILITY ...]` code.
fn caps_in_code(line: &StatusLine) -> Option<BTreeSet<String>> {
    (line.code_name().as_deref() == Some("CAPABILITY")).then(|| caps_from(&line.code[1..]))
}

/// Opens a connection, secures it as configured, logs in, and runs ID and ENABLE.
pub async fn open(server: &ImapServer, creds: &Credentials, opts: &ConnOptions) -> Result<Conn> {
    let connect = async {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(|e| {
                ConnError::Io(format!(
                    "connecting to {}:{}: {e}",
                    server.host, server.port
                ))
            })?;
        let _ = tcp.set_nodelay(true);
        let stream = match server.security {
            Security::Tls => ImapStream::Tls(Box::new(handshake(server, tcp).await?)),
            Security::Plain | Security::StartTls => ImapStream::Plain(tcp),
        };
        let mut conn = Conn::new(stream, opts);
        let greeting = conn.read().await?;
        let line = match greeting {
            Response::Status(l) if matches!(l.status, Status::Ok | Status::PreAuth) => l,
            other => return Err(ConnError::Closed(format!("unexpected greeting {other:?}"))),
        };
        if let Some(c) = caps_in_code(&line) {
            conn.caps = c;
        }
        let preauth = line.status == Status::PreAuth;
        if server.security == Security::StartTls {
            if conn.caps.is_empty() {
                conn.refresh_caps().await?;
            }
            if !conn.has("STARTTLS") {
                return Err(ConnError::Unsupported(
                    "the server does not offer STARTTLS".into(),
                ));
            }
            conn.simple("STARTTLS").await?;
            if conn.start != conn.buf.len() || !conn.pending.is_empty() {
                // Bytes after the OK were sent in the clear: a STARTTLS injection.
                return Err(ConnError::Parse("data after STARTTLS OK".into()));
            }
            let ImapStream::Plain(tcp) = conn.stream else {
                return Err(ConnError::Parse("STARTTLS on a TLS stream".into()));
            };
            let tls = handshake(server, tcp).await?;
            conn = Conn::new(ImapStream::Tls(Box::new(tls)), opts);
            conn.refresh_caps().await?;
        }
        Ok((conn, preauth))
    };
    let (mut conn, preauth) = tokio::time::timeout(server.connect_timeout, connect)
        .await
        .map_err(|_| ConnError::Timeout)??;
    if !preauth {
        if conn.caps.is_empty() {
            conn.refresh_caps().await?;
        }
        conn.authenticate(creds, opts.auth).await?;
    }
    if conn.caps.is_empty()
        || !conn
            .caps
            .iter()
            .any(|c| c == "IMAP4REV1" || c == "IMAP4REV2")
    {
        conn.refresh_caps().await?;
    }
    if conn.has("ID")
        && let Some((name, version)) = &opts.client_id
    {
        let cmd = format!(
            "ID (\"name\" {} \"version\" {})",
            quoted(name),
            quoted(version)
        );
        // ID is informational: a refusal is not worth failing the connection for.
        let (untagged, _) = conn.run(&[Part::from(cmd)]).await?;
        for r in untagged {
            if let Response::Data(v) = r
                && v.first().is_some_and(|x| x.is("ID"))
                && let Some(l) = v.get(1).and_then(Value::list)
            {
                for kv in l.chunks(2) {
                    if kv[0].text().is_some_and(|k| k.eq_ignore_ascii_case("name")) {
                        conn.server_name = kv.get(1).and_then(Value::text);
                    }
                }
            }
        }
    }
    let mut to_enable: Vec<&str> = Vec::new();
    if opts.enable.contains(&"QRESYNC") && conn.has("QRESYNC") {
        to_enable.push("QRESYNC");
    } else if opts.enable.contains(&"CONDSTORE") && conn.has("CONDSTORE") {
        to_enable.push("CONDSTORE");
    }
    if conn.has("UTF8=ACCEPT") {
        to_enable.push("UTF8=ACCEPT");
    }
    if !to_enable.is_empty() && conn.has("ENABLE") {
        let (untagged, _) = conn
            .simple(&format!("ENABLE {}", to_enable.join(" ")))
            .await?;
        for r in untagged {
            if let Response::Data(v) = r
                && v.first().is_some_and(|x| x.is("ENABLED"))
            {
                conn.enabled.extend(caps_from(&v[1..]));
            }
        }
        if conn.enabled.contains("QRESYNC") {
            conn.enabled.insert("CONDSTORE".into());
        }
    } else if to_enable.contains(&"CONDSTORE") {
        // Without ENABLE, CONDSTORE turns on with the first CONDSTORE command.
        conn.enabled.insert("CONDSTORE".into());
    }
    if opts.compress && conn.has("COMPRESS=DEFLATE") {
        conn.start_compression().await?;
    }
    Ok(conn)
}

/// A GS2 `saslname` (RFC 5801 §4): `,` and `=` escaped as `=2C` and `=3D`.
fn gs2_saslname(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

fn quoted(s: &str) -> String {
    proto::astring(s.as_bytes())
        .map(|q| String::from_utf8_lossy(&q).into_owned())
        .filter(|q| q.starts_with('"'))
        .unwrap_or_else(|| format!("\"{}\"", s.replace(['"', '\\', '\r', '\n'], "")))
}

impl Conn {
    async fn refresh_caps(&mut self) -> Result<()> {
        let (untagged, _) = self.simple("CAPABILITY").await?;
        for r in untagged {
            if let Response::Data(v) = r
                && v.first().is_some_and(|x| x.is("CAPABILITY"))
            {
                self.caps = caps_from(&v[1..]);
            }
        }
        Ok(())
    }

    async fn authenticate(&mut self, creds: &Credentials, method: AuthMethod) -> Result<()> {
        let b64 = base64::engine::general_purpose::STANDARD;
        let secret = creds.password.expose();
        let (mech, initial) = match method {
            AuthMethod::Password if self.has("AUTH=PLAIN") => (
                "PLAIN",
                format!("\0{}\0{}", creds.username, secret).into_bytes(),
            ),
            AuthMethod::Password => {
                if self.has("LOGINDISABLED") {
                    return Err(ConnError::Unsupported(
                        "the server disables LOGIN on this connection".into(),
                    ));
                }
                let mut parts = vec![Part::from("LOGIN ")];
                push_astring(&mut parts, &creds.username);
                parts.push(Part::from(" "));
                push_astring(&mut parts, secret);
                let (_, line) = self.run(&parts).await?;
                return self.after_auth(line);
            }
            AuthMethod::XOAuth2 => (
                "XOAUTH2",
                format!("user={}\x01auth=Bearer {}\x01\x01", creds.username, secret).into_bytes(),
            ),
            AuthMethod::OAuthBearer => (
                "OAUTHBEARER",
                format!(
                    "n,a={},\x01auth=Bearer {}\x01\x01",
                    gs2_saslname(&creds.username),
                    secret
                )
                .into_bytes(),
            ),
        };
        if !self.has(&format!("AUTH={mech}")) {
            return Err(ConnError::Unsupported(format!(
                "the server does not offer AUTH={mech}"
            )));
        }
        let encoded = b64.encode(&initial);
        let tag = if self.has("SASL-IR") {
            self.send(&[Part::from(format!("AUTHENTICATE {mech} {encoded}"))])
                .await?
        } else {
            let tag = self
                .send(&[Part::from(format!("AUTHENTICATE {mech}"))])
                .await?;
            self.expect_continuation().await?;
            self.write(format!("{encoded}\r\n").as_bytes()).await?;
            tag
        };
        loop {
            match self.read().await? {
                Response::Continue(_) => {
                    // An OAuth error challenge (JSON with the reason). XOAUTH2 answers it with
                    // an empty response, OAUTHBEARER with a single %x01 (RFC 7628 §3.2.3);
                    // the server then sends its NO.
                    let reply: &[u8] = if mech == "OAUTHBEARER" {
                        b"AQ==\r\n"
                    } else {
                        b"\r\n"
                    };
                    self.write(reply).await?;
                }
                Response::Tagged { tag: t, line } if t == tag => return self.after_auth(line),
                _ => {}
            }
        }
    }

    async fn expect_continuation(&mut self) -> Result<()> {
        loop {
            match self.read().await? {
                Response::Continue(_) => return Ok(()),
                Response::Tagged { line, .. } => return Err(ConnError::Auth(line.text)),
                _ => {}
            }
        }
    }

    fn after_auth(&mut self, line: StatusLine) -> Result<()> {
        match line.status {
            Status::Ok => {
                if let Some(c) = caps_in_code(&line) {
                    self.caps = c;
                } else {
                    self.caps.clear();
                }
                Ok(())
            }
            _ => Err(ConnError::Auth(line.text)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn no_codes_map_to_contract_errors() {
        let e: UpstreamError = ConnError::No {
            text: "Mailbox doesn't exist".into(),
            code: Some("NONEXISTENT".into()),
        }
        .into();
        assert!(matches!(e, UpstreamError::NotFound(_)));
        let e: UpstreamError = ConnError::Timeout.into();
        assert!(matches!(e, UpstreamError::Unavailable(_)));
        let e: UpstreamError = ConnError::Auth("bad".into()).into();
        assert!(matches!(e, UpstreamError::AuthFailed(_)));
    }

    #[test]
    fn deflate_round_trips_in_any_chunking() {
        let mut client = Deflate::new();
        let mut server = Deflate::new();
        let mut wire = Vec::new();
        let commands: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("g{i} UID FETCH {i}:* (FLAGS BODY.PEEK[HEADER])\r\n").into_bytes())
            .collect();
        for c in &commands {
            wire.extend(client.compress(c).unwrap());
        }
        // Fed to the peer in odd-sized pieces, as TCP might deliver them.
        let mut got = Vec::new();
        for piece in wire.chunks(7) {
            server.raw.extend_from_slice(piece);
            server.inflate_into(&mut got, 1 << 20).unwrap();
        }
        assert_eq!(got, commands.concat());
        // Each write ends in a sync flush: one command alone inflates whole.
        let one = client.compress(b"g99 NOOP\r\n").unwrap();
        server.raw.extend_from_slice(&one);
        let mut alone = Vec::new();
        server.inflate_into(&mut alone, 1 << 20).unwrap();
        assert_eq!(alone, b"g99 NOOP\r\n");
    }

    #[test]
    fn inflate_refuses_bombs_and_garbage() {
        let mut server = Deflate::new();
        let bomb = server.compress(&vec![b'a'; 8 << 20]).unwrap();
        assert!(bomb.len() < 64 << 10);
        let mut client = Deflate::new();
        client.raw = bomb;
        let mut buf = Vec::new();
        let e = client.inflate_into(&mut buf, 1 << 20).unwrap_err();
        assert!(e.contains("over"), "{e}");
        assert!(buf.len() < 2 << 20);

        let mut client = Deflate::new();
        client.raw = vec![0xff; 64];
        assert!(client.inflate_into(&mut Vec::new(), 1 << 20).is_err());
    }

    #[test]
    fn gs2_names_escape_comma_and_equals() {
        assert_eq!(gs2_saslname("a,b=c@x"), "a=2Cb=3Dc@x");
        assert_eq!(gs2_saslname("alice@example.com"), "alice@example.com");
    }

    #[test]
    fn quoting_for_id() {
        assert_eq!(quoted("jmap-gateway"), "\"jmap-gateway\"");
        assert_eq!(quoted("a b"), "\"a b\"");
    }
}

//! A fake ActiveSync server for the unit tests: a loopback HTTP/1.1 listener that answers
//! `OPTIONS` as a 14.1 server and every POST with the next canned reply, and records what
//! each POST carried. One request per connection (`Connection: close`), so the client never
//! reuses a connection the fake already dropped.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wbxml::Element;

/// What the fake answers to one POST.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// HTTP 200 with this body as WBXML, or an empty body.
    Wbxml(Option<Element>),
    /// This HTTP status with an empty body.
    Http(u16),
    /// Reads the whole request, then closes the connection without a word.
    Drop,
}

/// One POST as the fake received it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The `Cmd` query parameter.
    pub cmd: String,
    /// The `Authorization` header, as sent.
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The body, decoded.
    pub fn element(&self) -> Element {
        wbxml::decode(&self.body).expect("the client sends valid WBXML")
    }
}

#[derive(Debug)]
pub(crate) struct FakeServer {
    /// The endpoint URL to give the client.
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    /// Listens on a free loopback port; POSTs get `replies` in order, then HTTP 500.
    pub async fn start(replies: Vec<Reply>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local address").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut replies = replies.into_iter();
            while let Ok((stream, _)) = listener.accept().await {
                serve(stream, &log, &mut replies).await;
            }
        });
        FakeServer {
            url: format!("http://127.0.0.1:{port}/Microsoft-Server-ActiveSync"),
            received,
            task,
        }
    }

    /// Every POST so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("not poisoned").clone()
    }

    /// The commands of every POST so far, in order.
    pub fn commands(&self) -> Vec<String> {
        self.received().into_iter().map(|r| r.cmd).collect()
    }
}

/// Reads one request (head and Content-Length body); `None` if the client went away.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while data.len() < head_end + length {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    Some((head, data[head_end..head_end + length].to_vec()))
}

async fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<Received>>,
    replies: &mut impl Iterator<Item = Reply>,
) {
    let Some((head, body)) = read_request(&mut stream).await else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default().to_owned();
    let answer: Vec<u8> = if request_line.starts_with("OPTIONS ") {
        b"HTTP/1.1 200 OK\r\nMS-ASProtocolVersions: 14.1\r\n\
          MS-ASProtocolCommands: Sync,SendMail,SmartForward,SmartReply,FolderSync\r\n\
          Content-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    } else {
        let cmd = request_line
            .split(['?', '&', ' '])
            .find_map(|p| p.strip_prefix("Cmd="))
            .unwrap_or_default()
            .to_owned();
        let authorization = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().to_owned());
        log.lock().expect("not poisoned").push(Received {
            cmd,
            authorization,
            body,
        });
        match replies.next().unwrap_or(Reply::Http(500)) {
            Reply::Drop => return,
            Reply::Http(status) => format!(
                "HTTP/1.1 {status} Canned\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
            .into_bytes(),
            Reply::Wbxml(None) => {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            }
            Reply::Wbxml(Some(element)) => {
                let bytes = wbxml::encode(&element).expect("a canned reply encodes");
                let mut out = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.ms-sync.wbxml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    bytes.len()
                )
                .into_bytes();
                out.extend_from_slice(&bytes);
                out
            }
        }
    };
    let _ = stream.write_all(&answer).await;
    let _ = stream.shutdown().await;
}

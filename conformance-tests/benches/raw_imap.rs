//! Shared by the benchmarks: a raw IMAP client (no library between the benchmark and the
//! server) and a fast loader of synthetic messages (pipelined MULTIAPPEND, LITERAL+).

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::imap_support::{PASSWORD, USER};

/// A raw IMAP client: just enough to log in, send commands and read framed responses.
pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    tag: u32,
}

impl Raw {
    pub async fn connect(port: u16) -> Raw {
        let s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut r = Raw {
            s,
            buf: Vec::new(),
            tag: 0,
        };
        r.next().await; // greeting
        r.run(&format!("LOGIN {USER} {PASSWORD}")).await;
        r
    }

    pub async fn next(&mut self) -> Vec<u8> {
        loop {
            if let Some(n) = imap::proto::frame_len(&self.buf).unwrap() {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.s.read(&mut chunk).await.unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    pub async fn send(&mut self, cmd: &[u8]) -> String {
        self.tag += 1;
        let tag = format!("b{}", self.tag);
        let mut line = format!("{tag} ").into_bytes();
        line.extend_from_slice(cmd);
        line.extend_from_slice(b"\r\n");
        self.s.write_all(&line).await.unwrap();
        tag
    }

    /// Runs a command; returns the number of untagged responses.
    pub async fn run(&mut self, cmd: &str) -> usize {
        let tag = self.send(cmd.as_bytes()).await;
        let mut n = 0;
        loop {
            let r = self.next().await;
            if r.starts_with(format!("{tag} ").as_bytes()) {
                assert!(
                    r.starts_with(format!("{tag} OK").as_bytes()),
                    "{}",
                    String::from_utf8_lossy(&r)
                );
                return n;
            }
            n += 1;
        }
    }
}

pub fn synthetic(i: usize) -> Vec<u8> {
    let thread = i / 5;
    let mut m = format!(
        "From: Sender {} <sender{}@example.test>\r\nTo: {USER} <{USER}@example.test>\r\n\
         Subject: {}Bench thread {thread}\r\nDate: Thu, 01 Jan 2026 10:00:00 +0000\r\n\
         Message-ID: <bench-{thread}-{}@example.test>\r\n",
        i % 17,
        i % 17,
        if i.is_multiple_of(5) { "" } else { "Re: " },
        i % 5
    );
    if !i.is_multiple_of(5) {
        m.push_str(&format!(
            "In-Reply-To: <bench-{thread}-0@example.test>\r\nReferences: <bench-{thread}-0@example.test>\r\n"
        ));
    }
    m.push_str(&format!(
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody of bench message {i}.\r\n{}",
        "Some more text to make the body a little longer.\r\n".repeat(10)
    ));
    m.into_bytes()
}

/// Loads `n` messages with pipelined MULTIAPPEND (LITERAL+) over 4 connections.
pub async fn seed(port: u16, n: usize) {
    let start = Instant::now();
    let per_conn = n.div_ceil(4);
    let mut tasks = Vec::new();
    for c in 0..4 {
        let from = c * per_conn;
        let to = ((c + 1) * per_conn).min(n);
        tasks.push(tokio::spawn(async move {
            let mut r = Raw::connect(port).await;
            let mut i = from;
            while i < to {
                let end = (i + 500).min(to);
                let mut cmd = b"APPEND INBOX".to_vec();
                for j in i..end {
                    let m = synthetic(j);
                    cmd.extend_from_slice(format!(" {{{}+}}\r\n", m.len()).as_bytes());
                    cmd.extend_from_slice(&m);
                }
                let tag = r.send(&cmd).await;
                loop {
                    let resp = r.next().await;
                    if resp.starts_with(format!("{tag} ").as_bytes()) {
                        assert!(resp.starts_with(format!("{tag} OK").as_bytes()));
                        break;
                    }
                }
                i = end;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "seeded {n} messages in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

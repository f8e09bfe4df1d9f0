//! Opening an authenticated IMAP session: TCP, TLS or STARTTLS, greeting, LOGIN.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use upstream::Secret;

/// How the connection to the server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (port 993).
    Tls,
    /// Plain TCP upgraded with STARTTLS before any credential is sent.
    StartTls,
    /// No encryption. Only when configured explicitly.
    Plain,
}

/// Where an IMAP server is and how to reach it.
#[derive(Debug, Clone)]
pub struct ImapServer {
    pub host: String,
    pub port: u16,
    pub security: Security,
    /// PEM certificates trusted in addition to the built-in roots (a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Limit for TCP connect, TLS handshake and greeting together.
    pub connect_timeout: Duration,
}

impl ImapServer {
    pub fn new(host: impl Into<String>, port: u16, security: Security) -> Self {
        ImapServer {
            host: host.into(),
            port,
            security,
            extra_ca_pem: None,
            connect_timeout: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {host}:{port}: {source}")]
    Connect {
        host: String,
        port: u16,
        source: io::Error,
    },
    #[error("timed out connecting to {host}:{port}")]
    Timeout { host: String, port: u16 },
    #[error("TLS with {host} failed: {message}")]
    Tls { host: String, message: String },
    #[error("the server refused the login for {username}: {message}")]
    LoginRejected { username: String, message: String },
    #[error("IMAP protocol error: {0}")]
    Protocol(String),
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> Self {
        ImapError::Protocol(e.to_string())
    }
}

/// The byte stream under an IMAP session: plain TCP or TLS over TCP.
#[derive(Debug)]
pub enum ImapStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

pub type ImapSession = async_imap::Session<ImapStream>;

impl AsyncRead for ImapStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ImapStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_flush(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ImapStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            ImapStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Connects, secures the connection as configured, reads the greeting and logs in.
pub async fn connect(server: &ImapServer, creds: &Credentials) -> Result<ImapSession, ImapError> {
    let client = tokio::time::timeout(server.connect_timeout, open(server))
        .await
        .map_err(|_| ImapError::Timeout {
            host: server.host.clone(),
            port: server.port,
        })??;
    client
        .login(&creds.username, creds.password.expose())
        .await
        .map_err(|(e, _)| match e {
            async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m) => {
                ImapError::LoginRejected {
                    username: creds.username.clone(),
                    message: m,
                }
            }
            other => ImapError::from(other),
        })
}

async fn open(server: &ImapServer) -> Result<async_imap::Client<ImapStream>, ImapError> {
    let tcp = TcpStream::connect((server.host.as_str(), server.port))
        .await
        .map_err(|source| ImapError::Connect {
            host: server.host.clone(),
            port: server.port,
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    match server.security {
        Security::Tls => {
            let tls = handshake(server, tcp).await?;
            greeted(async_imap::Client::new(ImapStream::Tls(Box::new(tls)))).await
        }
        Security::Plain => greeted(async_imap::Client::new(ImapStream::Plain(tcp))).await,
        Security::StartTls => {
            let mut client = greeted(async_imap::Client::new(ImapStream::Plain(tcp))).await?;
            client
                .run_command_and_check_ok("STARTTLS", None)
                .await
                .map_err(|e| ImapError::Tls {
                    host: server.host.clone(),
                    message: format!("STARTTLS refused: {e}"),
                })?;
            let ImapStream::Plain(tcp) = client.into_inner() else {
                return Err(ImapError::Protocol("STARTTLS on a TLS stream".into()));
            };
            let tls = handshake(server, tcp).await?;
            // RFC 3501 §6.2.1: no greeting follows the handshake.
            Ok(async_imap::Client::new(ImapStream::Tls(Box::new(tls))))
        }
    }
}

async fn greeted(
    mut client: async_imap::Client<ImapStream>,
) -> Result<async_imap::Client<ImapStream>, ImapError> {
    match client.read_response().await {
        Ok(Some(_greeting)) => Ok(client),
        Ok(None) => Err(ImapError::Protocol(
            "connection closed before the greeting".into(),
        )),
        Err(e) => Err(ImapError::Protocol(format!("reading the greeting: {e}"))),
    }
}

pub(crate) async fn handshake(
    server: &ImapServer,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ImapError> {
    let tls_err = |message: String| ImapError::Tls {
        host: server.host.clone(),
        message,
    };
    let config = upstream::tls::client_config(server.extra_ca_pem.as_deref()).map_err(tls_err)?;
    let name = ServerName::try_from(server.host.clone())
        .map_err(|e| tls_err(format!("invalid server name: {e}")))?;
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(e.to_string()))
}

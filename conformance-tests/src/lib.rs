//! Where the real test servers are, for the end-to-end tests in `tests/`.
//!
//! `scripts/test.sh` starts the servers with `scripts/test-servers/*.sh` and exports their
//! settings; the defaults here equal the scripts' defaults, so a developer who started the
//! servers by hand can run `cargo nextest run -p conformance-tests` directly. A server that
//! does not answer fails the test with a message naming it: a missing server is never a skip.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn port(name: &str, default: u16) -> u16 {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a port number")),
        Err(_) => default,
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// Fails the calling test unless something listens on 127.0.0.1:`port`.
fn require_listening(what: &str, port: u16, start_hint: &str) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "{what} is not reachable on 127.0.0.1:{port}. Start it with `{start_hint}` \
             (scripts/test.sh does this before running the tests)."
        );
    }
}

/// A test user of a real server.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub name: String,
    pub password: upstream::Secret<String>,
}

fn users(var: &str) -> Vec<TestUser> {
    env_or(var, "alice:alice-pw bob:bob-pw")
        .split_whitespace()
        .filter_map(|pair| pair.split_once(':'))
        .map(|(n, p)| TestUser {
            name: n.to_owned(),
            password: upstream::Secret::new(p.to_owned()),
        })
        .collect()
}

/// The project's test Dovecot (`scripts/test-servers/dovecot.sh`).
#[derive(Debug, Clone)]
pub struct Dovecot {
    pub imap_port: u16,
    pub imaps_port: u16,
    /// The private CA that issued the server's certificate.
    pub ca_pem: PathBuf,
    pub users: Vec<TestUser>,
}

/// The running test Dovecot; fails the test if it is not up.
pub fn dovecot() -> Dovecot {
    let dir = std::env::var("DOVECOT_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| repo_root().join(".test-servers/dovecot"));
    let d = Dovecot {
        imap_port: port("DOVECOT_IMAP_PORT", 14143),
        imaps_port: port("DOVECOT_IMAPS_PORT", 14993),
        ca_pem: dir.join("tls/ca.pem"),
        users: users("DOVECOT_USERS"),
    };
    require_listening(
        "Dovecot (IMAP)",
        d.imap_port,
        "scripts/test-servers/dovecot.sh start",
    );
    d
}

/// The project's test SOGo ActiveSync stack (`scripts/test-servers/eas-stack.sh`).
#[derive(Debug, Clone)]
pub struct Sogo {
    pub port: u16,
    /// The ActiveSync endpoint URL.
    pub url: String,
    pub users: Vec<TestUser>,
}

/// The running SOGo stack; fails the test if it is not up.
pub fn sogo() -> Sogo {
    let port = port("EAS_SOGO_PORT", 20000);
    require_listening(
        "SOGo (ActiveSync)",
        port,
        "scripts/test-servers/eas-stack.sh start",
    );
    Sogo {
        port,
        url: format!("http://127.0.0.1:{port}/SOGo/Microsoft-Server-ActiveSync"),
        users: users("EAS_USERS"),
    }
}

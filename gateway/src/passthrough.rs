//! Logins through `[[passthrough]]` servers: the user's own credentials, tried upstream.
//!
//! A successful login is remembered for a few minutes (keyed by a digest of the password,
//! never the password itself), so API calls with Basic auth do not open an upstream
//! connection each time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use upstream::Secret;

use crate::accounts::{LoginFuture, PassthroughAccount, PassthroughLogin};
use crate::config::{PassthroughConfig, PassthroughEas, PassthroughImap};

/// How long a successful upstream login is trusted before it is checked again.
const REMEMBER_FOR: Duration = Duration::from_secs(300);

/// One passthrough server.
pub struct UpstreamLogin {
    server: Server,
    remembered: Mutex<HashMap<String, ([u8; 32], Instant)>>,
}

impl std::fmt::Debug for UpstreamLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match &self.server {
            Server::Imap(c, _) => &c.name,
            Server::Eas(c, _) => &c.name,
        };
        f.debug_struct("UpstreamLogin")
            .field("server", name)
            .finish()
    }
}

enum Server {
    Imap(PassthroughImap, Option<Vec<u8>>),
    Eas(PassthroughEas, Option<Vec<u8>>),
}

impl UpstreamLogin {
    /// Reads the server's CA file, if any, once.
    pub fn new(config: &PassthroughConfig) -> anyhow::Result<UpstreamLogin> {
        let read_ca = |path: &Option<std::path::PathBuf>| -> anyhow::Result<Option<Vec<u8>>> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p)
                        .map_err(|e| anyhow::anyhow!("cannot read CA file {}: {e}", p.display()))
                })
                .transpose()
        };
        let server = match config {
            PassthroughConfig::Imap(c) => Server::Imap(c.clone(), read_ca(&c.ca_file)?),
            PassthroughConfig::Eas(c) => Server::Eas(c.clone(), read_ca(&c.ca_file)?),
        };
        Ok(UpstreamLogin {
            server,
            remembered: Mutex::new(HashMap::new()),
        })
    }

    fn digest(password: &Secret<String>) -> [u8; 32] {
        Sha256::digest(password.expose().as_bytes()).into()
    }

    fn is_remembered(&self, username: &str, digest: &[u8; 32]) -> bool {
        let map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.get(username)
            .is_some_and(|(d, at)| d == digest && at.elapsed() < REMEMBER_FOR)
    }

    fn remember(&self, username: &str, digest: [u8; 32]) {
        let mut map = self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| at.elapsed() < REMEMBER_FOR);
        map.insert(username.to_owned(), (digest, Instant::now()));
    }

    fn account(&self, username: &str, password: &Secret<String>) -> PassthroughAccount {
        match &self.server {
            Server::Imap(c, ca) => {
                let port = c.port.unwrap_or_else(|| c.tls.default_imap_port());
                let mut server =
                    imap::ImapServer::new(c.host.clone(), port, crate::mail::imap_security(c.tls));
                server.extra_ca_pem = ca.clone();
                let smtp = c.smtp.as_ref().map(|s| crate::mail::SmtpSpec {
                    config: s.clone(),
                    username: s.username.clone().unwrap_or_else(|| username.to_owned()),
                    // A passthrough user's SMTP password is their own login password.
                    password: password.clone(),
                    extra_ca_pem: ca.clone(),
                    oauth_token: None,
                });
                PassthroughAccount {
                    key: format!("imap:{}:{port}:{username}", c.host),
                    name: format!("{username} ({})", c.name),
                    upstream: Some(crate::mail::UpstreamSpec::Imap {
                        server,
                        creds: imap::Credentials {
                            username: username.to_owned(),
                            password: password.clone(),
                        },
                        smtp,
                        auth: imap::AuthMethod::Password,
                        secret: None,
                        sieve: c.sieve.as_ref().map(|s| {
                            Box::new(crate::mail::SieveSpec {
                                server: crate::mail::sieve_server(s, &c.host, ca),
                                // A passthrough user logs in to ManageSieve as to IMAP.
                                creds: imap::Credentials {
                                    username: username.to_owned(),
                                    password: password.clone(),
                                },
                            })
                        }),
                    }),
                }
            }
            Server::Eas(c, ca) => PassthroughAccount {
                key: format!("eas:{}:{username}", c.url),
                name: format!("{username} ({})", c.name),
                upstream: Some(crate::mail::UpstreamSpec::Eas {
                    endpoint: self.endpoint(c, ca, username, password),
                    auth: eas::EasAuth::Basic,
                    secret: None,
                }),
            },
        }
    }

    fn endpoint(
        &self,
        c: &PassthroughEas,
        ca: &Option<Vec<u8>>,
        username: &str,
        password: &Secret<String>,
    ) -> eas::EasEndpoint {
        eas::EasEndpoint {
            url: c.url.clone(),
            username: username.to_owned(),
            password: password.clone(),
            device_id: eas::EasEndpoint::derived_device_id(&c.url, username),
            device_type: "JmapGateway".into(),
            extra_ca_pem: ca.clone(),
        }
    }

    /// Tries the credentials upstream: Ok(true) accepted, Ok(false) refused, Err unreachable.
    async fn check(&self, username: &str, password: &Secret<String>) -> Result<bool, String> {
        match &self.server {
            Server::Imap(c, ca) => {
                let security = crate::mail::imap_security(c.tls);
                let port = c.port.unwrap_or_else(|| c.tls.default_imap_port());
                let mut server = imap::ImapServer::new(c.host.clone(), port, security);
                server.extra_ca_pem = ca.clone();
                let creds = imap::Credentials {
                    username: username.to_owned(),
                    password: password.clone(),
                };
                match imap::connect(&server, &creds).await {
                    Ok(mut session) => {
                        let _ = session.logout().await;
                        Ok(true)
                    }
                    Err(imap::ImapError::LoginRejected { .. }) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
            Server::Eas(c, ca) => {
                let endpoint = self.endpoint(c, ca, username, password);
                let client = eas::EasClient::new(endpoint).map_err(|e| e.to_string())?;
                match client.options().await {
                    Ok(_) => Ok(true),
                    Err(eas::EasError::Unauthorized { .. }) => Ok(false),
                    Err(e) => Err(e.to_string()),
                }
            }
        }
    }
}

impl PassthroughLogin for UpstreamLogin {
    fn login<'a>(&'a self, username: &'a str, password: &'a Secret<String>) -> LoginFuture<'a> {
        Box::pin(async move {
            if username.is_empty() {
                return Ok(None);
            }
            let digest = Self::digest(password);
            if self.is_remembered(username, &digest) {
                return Ok(Some(self.account(username, password)));
            }
            if self.check(username, password).await? {
                self.remember(username, digest);
                Ok(Some(self.account(username, password)))
            } else {
                Ok(None)
            }
        })
    }
}

//! MS-ASHTTP: the HTTP requests an EAS client makes, with preemptive Basic auth.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use upstream::Secret;

/// One EAS account's endpoint and credentials.
#[derive(Debug, Clone)]
pub struct EasEndpoint {
    /// The full endpoint URL, e.g. `https://mail.example.com/Microsoft-Server-ActiveSync`.
    pub url: String,
    pub username: String,
    pub password: Secret<String>,
    /// Stable per account: the server keys sync state and policies on it.
    pub device_id: String,
    pub device_type: String,
    /// PEM certificates trusted in addition to the built-in roots.
    pub extra_ca_pem: Option<Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum EasError {
    #[error("the EAS server refused the credentials for {username} (HTTP {status})")]
    Unauthorized { username: String, status: u16 },
    #[error("the EAS server answered HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("cannot reach the EAS server at {url}: {message}")]
    Transport { url: String, message: String },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// What an `OPTIONS` request tells about the server (MS-ASHTTP 2.2.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// `MS-ASProtocolVersions`, in the server's order.
    pub versions: Vec<String>,
    /// `MS-ASProtocolCommands`.
    pub commands: Vec<String>,
}

impl ServerOptions {
    /// The version this client speaks with the server: 16.1 if offered, else 14.1.
    pub fn preferred_version(&self) -> Option<&'static str> {
        ["16.1", "14.1"]
            .into_iter()
            .find(|v| self.versions.iter().any(|s| s == v))
    }
}

#[derive(Debug, Clone)]
pub struct EasClient {
    endpoint: EasEndpoint,
    http: reqwest::Client,
}

impl EasClient {
    pub fn new(endpoint: EasEndpoint) -> Result<Self, EasError> {
        let tls = upstream::tls::client_config(endpoint.extra_ca_pem.as_deref())
            .map_err(EasError::Tls)?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(20))
            .user_agent(concat!("jmap-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| EasError::Tls(e.to_string()))?;
        Ok(EasClient { endpoint, http })
    }

    /// Sends `OPTIONS` with credentials and reads the supported versions and commands.
    pub async fn options(&self) -> Result<ServerOptions, EasError> {
        let response = self
            .http
            .request(Method::OPTIONS, &self.endpoint.url)
            // Some servers (SOGo) answer 403 rather than challenge: always send credentials.
            .basic_auth(
                &self.endpoint.username,
                Some(self.endpoint.password.expose()),
            )
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| EasError::Transport {
                url: self.endpoint.url.clone(),
                message: e.to_string(),
            })?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(EasError::Unauthorized {
                username: self.endpoint.username.clone(),
                status: status.as_u16(),
            });
        }
        if !status.is_success() {
            return Err(EasError::Http {
                status: status.as_u16(),
                detail: status.canonical_reason().unwrap_or("").to_owned(),
            });
        }
        let list = |name: &str| -> Vec<String> {
            response
                .headers()
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let options = ServerOptions {
            versions: list("MS-ASProtocolVersions"),
            commands: list("MS-ASProtocolCommands"),
        };
        if options.versions.is_empty() {
            return Err(EasError::Http {
                status: status.as_u16(),
                detail: "OPTIONS answer has no MS-ASProtocolVersions header: not an ActiveSync \
                         endpoint?"
                    .into(),
            });
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::ServerOptions;

    #[test]
    fn prefers_16_1_then_14_1() {
        let o = |v: &[&str]| ServerOptions {
            versions: v.iter().map(|s| s.to_string()).collect(),
            commands: vec![],
        };
        assert_eq!(
            o(&["2.5", "12.0", "14.0", "14.1"]).preferred_version(),
            Some("14.1")
        );
        assert_eq!(
            o(&["14.1", "16.0", "16.1"]).preferred_version(),
            Some("16.1")
        );
        assert_eq!(o(&["2.5", "12.1"]).preferred_version(), None);
    }
}

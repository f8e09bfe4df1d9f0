//! Authentication: HTTP Basic against the registry, and the gateway's own bearer tokens (JWT,
//! HS256) issued in exchange for Basic credentials; failed logins are rate-limited per user and
//! client address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use upstream::Secret;

use crate::accounts::{LoginError, Registry, UserEntry};

/// Failed logins allowed per (user, address) within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 10;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(300);

/// What the client presented.
#[derive(Debug)]
pub enum Credentials {
    Basic {
        username: String,
        password: Secret<String>,
    },
    Bearer(String),
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required")]
    Missing,
    #[error("malformed Authorization header")]
    Malformed,
    #[error("unknown user or wrong password")]
    BadCredentials,
    #[error("invalid or expired token")]
    BadToken,
    #[error("too many failed logins; retry in {0} seconds")]
    RateLimited(u64),
    #[error("authentication is unavailable: {0}")]
    Unavailable(String),
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Credentials, AuthError> {
    let (scheme, rest) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthError::Malformed)?;
        let decoded = String::from_utf8(decoded).map_err(|_| AuthError::Malformed)?;
        let (username, password) = decoded.split_once(':').ok_or(AuthError::Malformed)?;
        Ok(Credentials::Basic {
            username: username.to_owned(),
            password: Secret::new(password.to_owned()),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") {
        Ok(Credentials::Bearer(rest.to_owned()))
    } else {
        Err(AuthError::Malformed)
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: u64,
    exp: u64,
    iss: String,
}

const ISSUER: &str = "jmap-gateway";

/// A token issued by [`Authenticator::issue`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    /// Seconds since the epoch.
    pub expires_at: u64,
}

/// Checks credentials and issues tokens.
pub struct Authenticator {
    registry: Arc<Registry>,
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
    failures: Mutex<HashMap<(String, IpAddr), (u32, Instant)>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("lifetime", &self.lifetime)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Authenticator {
    /// `secret` signs the tokens; `None` draws a random key (tokens die with the process).
    pub fn new(
        registry: Arc<Registry>,
        secret: Option<Secret<String>>,
        lifetime: Duration,
    ) -> anyhow::Result<Authenticator> {
        let key: Vec<u8> = match secret {
            Some(s) => s.expose().as_bytes().to_vec(),
            None => {
                let mut key = vec![0u8; 32];
                getrandom::fill(&mut key)
                    .map_err(|e| anyhow::anyhow!("no randomness for the token key: {e}"))?;
                key
            }
        };
        Ok(Authenticator {
            registry,
            encoding: EncodingKey::from_secret(&key),
            decoding: DecodingKey::from_secret(&key),
            lifetime,
            failures: Mutex::new(HashMap::new()),
        })
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Authenticates credentials from a client at `peer`.
    pub async fn authenticate(
        &self,
        credentials: Credentials,
        peer: IpAddr,
    ) -> Result<Arc<UserEntry>, AuthError> {
        match credentials {
            Credentials::Bearer(token) => self.verify(&token),
            Credentials::Basic { username, password } => {
                self.check_rate(&username, peer)?;
                match self.registry.login(&username, &password).await {
                    Ok(user) => {
                        self.lock_failures().remove(&(username, peer));
                        Ok(user)
                    }
                    Err(LoginError::BadCredentials) => {
                        self.record_failure(username, peer);
                        Err(AuthError::BadCredentials)
                    }
                    Err(LoginError::Unavailable(e)) => Err(AuthError::Unavailable(e)),
                }
            }
        }
    }

    /// A signed token for `user`.
    pub fn issue(&self, user: &UserEntry) -> Result<IssuedToken, AuthError> {
        let iat = now_secs();
        let exp = iat + self.lifetime.as_secs();
        let claims = Claims {
            sub: user.name.clone(),
            iat,
            exp,
            iss: ISSUER.to_owned(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        Ok(IssuedToken {
            access_token: token,
            token_type: "Bearer",
            expires_in: self.lifetime.as_secs(),
            expires_at: exp,
        })
    }

    /// Checks a token: HS256 only (so `alg: none` and every other algorithm fail), our
    /// signature, our issuer, not expired, and a user who still exists.
    pub fn verify(&self, token: &str) -> Result<Arc<UserEntry>, AuthError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| AuthError::BadToken)?;
        self.registry
            .user(&data.claims.sub)
            .ok_or(AuthError::BadToken)
    }

    fn lock_failures(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, IpAddr), (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_rate(&self, username: &str, peer: IpAddr) -> Result<(), AuthError> {
        let mut failures = self.lock_failures();
        let key = (username.to_owned(), peer);
        if let Some((count, since)) = failures.get(&key).copied() {
            let elapsed = since.elapsed();
            if elapsed >= FAILURE_WINDOW {
                failures.remove(&key);
            } else if count >= MAX_FAILURES {
                return Err(AuthError::RateLimited(
                    (FAILURE_WINDOW - elapsed).as_secs().max(1),
                ));
            }
        }
        Ok(())
    }

    fn record_failure(&self, username: String, peer: IpAddr) {
        let mut failures = self.lock_failures();
        if failures.len() > 100_000 {
            // Bound memory under a spray of user names: forget windows that are over.
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        }
        let entry = failures
            .entry((username, peer))
            .or_insert((0, Instant::now()));
        entry.0 += 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn authorization_headers() {
        let Credentials::Basic { username, password } =
            parse_authorization("Basic YWxpY2U6cHc6eA==").unwrap()
        else {
            panic!("expected Basic")
        };
        assert_eq!(
            (username.as_str(), password.expose().as_str()),
            ("alice", "pw:x")
        );
        assert!(matches!(
            parse_authorization("bearer abc").unwrap(),
            Credentials::Bearer(t) if t == "abc"
        ));
        assert_eq!(
            parse_authorization("Basic !!!").err(),
            Some(AuthError::Malformed)
        );
        assert_eq!(
            parse_authorization("Digest x").err(),
            Some(AuthError::Malformed)
        );
        assert_eq!(
            parse_authorization("Basic").err(),
            Some(AuthError::Malformed)
        );
    }
}

//! Which URLs a PushSubscription may make the gateway call (RFC 8620 §8.6: a subscription URL
//! must not turn the gateway into a probe of its own network).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::PushConfig;

/// The configured URL policy.
#[derive(Debug, Clone)]
pub struct UrlPolicy {
    allow_http: bool,
    allowed_hosts: Vec<String>,
}

impl UrlPolicy {
    pub fn new(config: &PushConfig) -> UrlPolicy {
        UrlPolicy {
            allow_http: config.allow_http,
            allowed_hosts: config
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Checks the URL's form: absolute https (or http when allowed), a host, no credentials.
    pub fn parse(&self, url: &str) -> Result<reqwest::Url, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not an absolute URL: {e}"))?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err("the URL must begin with https://".into()),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("the URL must not carry credentials".into());
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err("the URL has no host".into());
        }
        Ok(parsed)
    }

    /// Checks where the URL leads: every address its host resolves to must be public, unless
    /// the host is explicitly allowed.
    pub async fn check(&self, url: &reqwest::Url) -> Result<(), String> {
        let host = url
            .host_str()
            .ok_or_else(|| "the URL has no host".to_owned())?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if self.allowed_hosts.contains(&host) {
            return Ok(());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .map(|a| a.ip())
                .collect(),
        };
        if addresses.is_empty() {
            return Err(format!("{host} resolves to no address"));
        }
        match addresses.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(format!(
                "{host} resolves to {ip}, a non-public address this gateway does not call"
            )),
            None => Ok(()),
        }
    }
}

/// True for addresses on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || first == 0x2001 && ip.segments()[1] == 0x0db8)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn policy(allow_http: bool, hosts: &[&str]) -> UrlPolicy {
        UrlPolicy::new(&PushConfig {
            allow_http,
            allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
            ..PushConfig::default()
        })
    }

    #[test]
    fn forms() {
        let p = policy(false, &[]);
        assert!(p.parse("https://push.example.com/x?y=1").is_ok());
        assert!(p.parse("http://push.example.com/").is_err());
        assert!(p.parse("https://user:pw@push.example.com/").is_err());
        assert!(p.parse("/relative").is_err());
        assert!(policy(true, &[]).parse("http://push.example.com/").is_ok());
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let p = policy(true, &[]);
        for url in [
            "http://127.0.0.1/",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            let parsed = p.parse(url).unwrap();
            assert!(p.check(&parsed).await.is_err(), "{url}");
        }
        let parsed = p.parse("http://93.184.215.14/").unwrap();
        assert!(p.check(&parsed).await.is_ok());
        let allowed = policy(true, &["127.0.0.1"]);
        let parsed = allowed.parse("http://127.0.0.1:9/").unwrap();
        assert!(allowed.check(&parsed).await.is_ok());
    }
}

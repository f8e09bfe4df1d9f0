//! Reverse proxies: which peers may tell us the original scheme, host and client address.
//!
//! `Forwarded` (RFC 7239) and `X-Forwarded-Proto` / `X-Forwarded-Host` / `X-Forwarded-For`
//! are believed only when the TCP peer is in `[server] trusted_proxies`; from anyone else they
//! are ignored, so a client cannot make the session advertise another host.
//!
//! With `Forwarded`, the chain is walked from the right: the last element was written by the
//! peer; while its `for=` names another trusted proxy, the element before it is looked at. The
//! first element whose `for=` is not a trusted proxy is the one the outermost trusted proxy
//! wrote, and its `proto`, `host` and `for` describe the client's request. Without `Forwarded`,
//! the rightmost `X-Forwarded-Proto` and `X-Forwarded-Host` values are used (the proxy should
//! set, not append, them) and `X-Forwarded-For` is walked from the right the same way.

use std::net::IpAddr;

use actix_web::http::header::HeaderMap;

/// An address block: an IP address and how many leading bits must match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    addr: IpAddr,
    prefix: u8,
}

impl Block {
    fn parse(s: &str) -> Result<Block, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(Block { addr, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> u128 {
            match ip {
                IpAddr::V4(a) => u128::from(u32::from(a)),
                IpAddr::V6(a) => u128::from(a),
            }
        }
        let ip = ip.to_canonical();
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        let width: u32 = if ip.is_ipv4() { 32 } else { 128 };
        let shift = width - u32::from(self.prefix);
        let (a, b) = (bits(ip), bits(self.addr));
        shift >= width || (a >> shift) == (b >> shift)
    }
}

/// The peers whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<Block>);

impl TrustedProxies {
    /// Parses a list of IP addresses and CIDR blocks (`127.0.0.1`, `10.0.0.0/8`, `fd00::/8`).
    pub fn parse<S: AsRef<str>>(list: &[S]) -> Result<TrustedProxies, String> {
        list.iter()
            .map(|s| Block::parse(s.as_ref()))
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|b| b.contains(ip))
    }
}

/// What the trusted proxies say about the client's request. Each part is `None` when no
/// trusted header gave a usable value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// `http` or `https`.
    pub proto: Option<&'static str>,
    /// A host, with a port when the proxy gave one.
    pub host: Option<String>,
    /// The client's address.
    pub client: Option<IpAddr>,
}

/// Reads the forwarding headers of a request whose TCP peer is `peer`. Nothing is believed
/// unless `peer` is a trusted proxy.
pub fn forwarded(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> Forwarded {
    if !trusted.contains(peer) {
        return Forwarded::default();
    }
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| split_outside_quotes(v, ','))
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let elements = values("forwarded");
    if !elements.is_empty() {
        let parsed: Vec<Vec<(String, String)>> = elements.iter().map(|e| pairs(e)).collect();
        let mut chosen = parsed.last();
        for element in parsed.iter().rev() {
            chosen = Some(element);
            let hop = lookup(element, "for").and_then(parse_node);
            if !hop.is_some_and(|ip| trusted.contains(ip)) {
                break;
            }
        }
        let Some(element) = chosen else {
            return Forwarded::default();
        };
        return Forwarded {
            proto: lookup(element, "proto").and_then(proto),
            host: lookup(element, "host").filter(|h| plausible_host(h)),
            client: lookup(element, "for").and_then(parse_node),
        };
    }
    let client = values("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(parse_node)
        .find(|ip| !trusted.contains(*ip));
    Forwarded {
        proto: values("x-forwarded-proto")
            .last()
            .and_then(|p| proto(p.clone())),
        host: values("x-forwarded-host")
            .pop()
            .filter(|h| plausible_host(h)),
        client,
    }
}

/// The address a request comes from: the TCP peer, or what trusted proxies say it forwards.
pub fn client_ip(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    forwarded(headers, peer, trusted).client.unwrap_or(peer)
}

fn proto(p: String) -> Option<&'static str> {
    if p.eq_ignore_ascii_case("https") {
        Some("https")
    } else if p.eq_ignore_ascii_case("http") {
        Some("http")
    } else {
        None
    }
}

/// Whether `h` can be put in a URL as its authority: a host name, IPv4 or bracketed IPv6
/// address, with an optional port. Nothing that could start a path, query or userinfo.
pub fn plausible_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 255
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + c.len_utf8();
        }
    }
    out.push(&s[start..]);
    out
}

/// The `name=value` pairs of one Forwarded element, names lowercased, values unquoted.
fn pairs(element: &str) -> Vec<(String, String)> {
    split_outside_quotes(element, ';')
        .into_iter()
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
                Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => v.to_owned(),
            };
            Some((k.trim().to_ascii_lowercase(), v))
        })
        .collect()
}

fn lookup(element: &[(String, String)], name: &str) -> Option<String> {
    element
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

/// A node as `Forwarded: for=` or `X-Forwarded-For` writes it: `192.0.2.1`, `192.0.2.1:80`,
/// `[2001:db8::1]`, `[2001:db8::1]:80` or a bare IPv6 address. Obfuscated or `unknown` nodes
/// give `None`.
fn parse_node(s: impl AsRef<str>) -> Option<IpAddr> {
    let s = s.as_ref().trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (inner, _) = rest.split_once(']')?;
        return inner.parse::<IpAddr>().ok().map(|ip| ip.to_canonical());
    }
    let (host, port) = s.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_match_by_prefix_and_reject_nonsense() {
        let t = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8", "fd00::/8"]).unwrap();
        assert!(t.contains(ip("127.0.0.1")));
        assert!(t.contains(ip("::ffff:127.0.0.1")));
        assert!(!t.contains(ip("127.0.0.2")));
        assert!(t.contains(ip("10.200.3.4")));
        assert!(!t.contains(ip("11.0.0.1")));
        assert!(t.contains(ip("fd12::1")));
        assert!(!t.contains(ip("fe80::1")));
        assert!(
            TrustedProxies::parse(&["0.0.0.0/0"])
                .unwrap()
                .contains(ip("8.8.8.8"))
        );
        assert!(TrustedProxies::parse(&["10.0.0.0/33"]).is_err());
        assert!(TrustedProxies::parse(&["proxy.example"]).is_err());
    }

    #[test]
    fn untrusted_peers_are_not_believed() {
        let t = TrustedProxies::parse(&["127.0.0.1"]).unwrap();
        let h = headers(&[
            ("X-Forwarded-Host", "evil.example"),
            ("X-Forwarded-Proto", "https"),
            ("Forwarded", "host=evil.example"),
        ]);
        assert_eq!(forwarded(&h, ip("192.0.2.9"), &t), Forwarded::default());
        assert_eq!(client_ip(&h, ip("192.0.2.9"), &t), ip("192.0.2.9"));
    }

    #[test]
    fn x_forwarded_headers_from_a_trusted_peer() {
        let t = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        let h = headers(&[
            ("X-Forwarded-Host", "jmap.example.com"),
            ("X-Forwarded-Proto", "HTTPS"),
            ("X-Forwarded-For", "203.0.113.7, 198.51.100.2, 10.1.1.1"),
        ]);
        let f = forwarded(&h, ip("127.0.0.1"), &t);
        assert_eq!(f.proto, Some("https"));
        assert_eq!(f.host.as_deref(), Some("jmap.example.com"));
        // The rightmost untrusted hop is the client; what it claims before that is not.
        assert_eq!(f.client, Some(ip("198.51.100.2")));
        let bad = headers(&[
            ("X-Forwarded-Host", "a.example/evil"),
            ("X-Forwarded-Proto", "gopher"),
        ]);
        assert_eq!(forwarded(&bad, ip("127.0.0.1"), &t), Forwarded::default());
    }

    #[test]
    fn forwarded_chain_is_walked_from_the_right() {
        let t = TrustedProxies::parse(&["127.0.0.1", "10.0.0.0/8"]).unwrap();
        // The client forged the first element; the edge proxy (10.0.0.5's peer) wrote the
        // second; the inner proxy 10.0.0.5 wrote the third.
        let h = headers(&[
            ("Forwarded", "for=1.1.1.1;host=evil.example;proto=http"),
            (
                "Forwarded",
                "for=\"[2001:db8::7]:4711\";host=jmap.example.com;proto=https, for=10.0.0.5;proto=http;host=inner",
            ),
        ]);
        let f = forwarded(&h, ip("127.0.0.1"), &t);
        assert_eq!(f.proto, Some("https"));
        assert_eq!(f.host.as_deref(), Some("jmap.example.com"));
        assert_eq!(f.client, Some(ip("2001:db8::7")));
        // Forwarded wins over X-Forwarded-*.
        let both = headers(&[
            ("Forwarded", "for=192.0.2.1;host=a.example"),
            ("X-Forwarded-Host", "b.example"),
        ]);
        assert_eq!(
            forwarded(&both, ip("127.0.0.1"), &t).host.as_deref(),
            Some("a.example")
        );
    }

    #[test]
    fn nodes_parse_in_every_form() {
        assert_eq!(parse_node("192.0.2.1:80"), Some(ip("192.0.2.1")));
        assert_eq!(parse_node("[::1]:80"), Some(ip("::1")));
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("unknown"), None);
        assert_eq!(parse_node("_hidden"), None);
    }
}

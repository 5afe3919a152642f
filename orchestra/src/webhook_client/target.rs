//! Where a webhook may point. A user's URL is a request the orchestra makes from inside the
//! operator's network, so it must not reach what only that network reaches (SSRF): loopback,
//! link-local (cloud metadata at 169.254.169.254), private and other special ranges are
//! refused unless the operator allows their range (`OSCIED_WEBHOOK_ALLOWED_NETS`).
//!
//! Checked twice: when the URL is registered (a clear 422), and at every attempt on the
//! addresses the name resolves to then (a name re-pointed at 127.0.0.1 after registering,
//! DNS rebinding): the HTTP client resolves through [`Guarded`], which drops refused
//! addresses, and literal addresses are checked before sending. Redirects are not followed.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use url::Url;

/// The longest URL taken.
const MAX_URL: usize = 2048;

/// Why `ip` is no place for a webhook, if it is not.
pub fn refused(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refused_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => refused_v4(v4),
            None => refused_v6(ip),
        },
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if a >= 240 || (a == 198 && (b == 18 || b == 19)) || (a == 192 && b == 0) {
        Some("a reserved address")
    } else {
        None
    }
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if first & 0xfe00 == 0xfc00 {
        Some("a private (unique local) address")
    } else if first & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if ip.to_ipv4().is_some() || first == 0x2002 || first == 0x64 {
        // IPv4-compatible, 6to4 and NAT64 forms carry an IPv4 address that may be anything.
        Some("an IPv6 form of an IPv4 address")
    } else {
        None
    }
}

/// The operator's exceptions, shared by the checks and the HTTP client's resolver.
#[derive(Clone, Debug, Default)]
pub struct Targets {
    allowed: Arc<[IpNet]>,
}

impl Targets {
    pub fn new(allowed: &[IpNet]) -> Targets {
        Targets {
            allowed: allowed.into(),
        }
    }

    /// Why a webhook may not reach `ip`, if it may not.
    pub fn refuses(&self, ip: IpAddr) -> Option<&'static str> {
        let reason = refused(ip)?;
        let canonical = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        (!self.allowed.iter().any(|net| net.contains(&canonical))).then_some(reason)
    }

    /// A URL as registered: `http` or `https`, a host, no credentials, and (when the host is
    /// an address, or resolves now) not a refused address. The error says what is wrong.
    pub async fn check(&self, raw: &str) -> Result<Url, String> {
        if raw.len() > MAX_URL {
            return Err(format!("a URL of at most {MAX_URL} bytes"));
        }
        let mut url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
        // Never sent anyway.
        url.set_fragment(None);
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "the scheme must be http or https, not {}",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("no credentials in the URL: verify the signature instead".into());
        }
        let Some(host) = url.host_str() else {
            return Err("the URL has no host".into());
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let addresses: Vec<SocketAddr> = match literal(&url) {
            Some(ip) => vec![SocketAddr::new(ip, port)],
            None => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| format!("{host} does not resolve: {e}"))?
                .collect(),
        };
        for addr in addresses {
            if let Some(reason) = self.refuses(addr.ip()) {
                return Err(refusal(host, addr.ip(), reason));
            }
        }
        Ok(url)
    }

    /// At an attempt: the URL's literal address, if it has one, may be reached (names are
    /// checked by [`Guarded`] as they resolve).
    pub fn check_literal(&self, url: &Url) -> Result<(), String> {
        match literal(url) {
            Some(ip) => match self.refuses(ip) {
                Some(reason) => Err(refusal(url.host_str().unwrap_or(""), ip, reason)),
                None => Ok(()),
            },
            None => Ok(()),
        }
    }

    /// The resolver of the webhooks' HTTP client.
    pub fn resolver(&self) -> Guarded {
        Guarded {
            targets: self.clone(),
        }
    }
}

fn refusal(host: &str, ip: IpAddr, reason: &str) -> String {
    let named = if host.trim_matches(['[', ']']) == ip.to_string() {
        String::new()
    } else {
        format!(" ({ip})")
    };
    format!(
        "{host}{named} is {reason}: webhooks may not point into the orchestra's own network \
         (an operator may allow a range with OSCIED_WEBHOOK_ALLOWED_NETS)"
    )
}

/// The URL's host when it is an IP address.
/// (The URL parser has already written any form of an IPv4 address, `0x7f.1` say, out.)
fn literal(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()
}

/// Resolves like the system does, then keeps only addresses a webhook may reach (the
/// webhooks' HTTP connector resolves every name through it).
#[derive(Clone)]
pub struct Guarded {
    targets: Targets,
}

impl tower::Service<Name> for Guarded {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let targets = self.targets.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusals = Vec::new();
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match targets.refuses(addr.ip()) {
                    Some(reason) => {
                        refusals.push(refusal(&host, addr.ip(), reason));
                        false
                    }
                    None => true,
                })
                .collect();
            if kept.is_empty() {
                let why = refusals
                    .pop()
                    .unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    why,
                ));
            }
            Ok(kept.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused() {
        for refused_ip in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2002:7f00:1::",
            "64:ff9b::a00:1",
        ] {
            assert!(
                refused(ip(refused_ip)).is_some(),
                "{refused_ip} is not refused"
            );
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(refused(ip(public)), None, "{public} is refused");
        }
    }

    #[test]
    fn the_operator_allows_ranges() {
        let targets = Targets::new(&["127.0.0.1/32".parse().unwrap()]);
        assert_eq!(targets.refuses(ip("127.0.0.1")), None);
        assert_eq!(targets.refuses(ip("::ffff:127.0.0.1")), None);
        assert!(targets.refuses(ip("127.0.0.2")).is_some());
        assert!(targets.refuses(ip("10.0.0.1")).is_some());
    }

    #[tokio::test]
    async fn urls_are_checked() {
        let targets = Targets::default();
        for (url, why) in [
            ("ftp://example.com/", "scheme"),
            ("http://user:pw@93.184.216.34/", "credentials"),
            ("http://127.0.0.1:8080/hook", "loopback"),
            ("http://[::1]/hook", "loopback"),
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://10.0.0.7/", "private"),
            ("http://0x7f.1/", "loopback"),
            ("http://localhost/", "loopback"),
            ("not a url", "not a URL"),
        ] {
            let err = targets.check(url).await.unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
        assert!(targets.check("https://93.184.216.34/hook").await.is_ok());
        let allowed = Targets::new(&["127.0.0.0/8".parse().unwrap()]);
        assert!(allowed.check("http://127.0.0.1:9/hook").await.is_ok());
    }
}

//! Where deliveries may go: https only (http only to loopback, when allowed), and never to a
//! private, loopback, link-local or otherwise internal address unless the operator allowed its
//! network. The host is checked when an endpoint is registered and resolved again at every
//! delivery, where the client connects only to the addresses this guard let through (its DNS
//! resolver is [`GuardedResolver`]), so a name that later points inside the network is refused.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

/// What deliveries may reach.
#[derive(Debug, Clone, Default)]
pub struct NetworkPolicy {
    /// Loopback addresses (and http to them) are allowed: a developer's own receiver.
    pub allow_loopback: bool,
    /// Internal networks the operator allows (e.g. a receiver in the same VPC).
    pub allowed_networks: Vec<IpNet>,
}

/// Why a URL or address is refused; `code` is the API's stable error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    InvalidUrl(String),
    #[error(
        "webhook URLs must use https (http only to a loopback address, when the gateway allows it)"
    )]
    NotHttps,
    #[error(
        "{} an internal address deliveries may not reach",
        named(host, address)
    )]
    Address { host: String, address: IpAddr },
    #[error("{host} could not be resolved: {reason}")]
    Unresolved { host: String, reason: String },
}

/// "10.0.0.5 is", or "db.internal resolves to 10.0.0.5,".
fn named(host: &str, address: &IpAddr) -> String {
    match host.trim_matches(['[', ']']) == address.to_string() {
        true => format!("{address} is"),
        false => format!("{host} resolves to {address},"),
    }
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::InvalidUrl(_) => "invalid_webhook_url",
            Refusal::NotHttps => "webhook_url_not_https",
            Refusal::Address { .. } => "webhook_address_refused",
            Refusal::Unresolved { .. } => "webhook_host_unresolved",
        }
    }
}

/// A URL that passed the checks that need no DNS.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: url::Url,
    pub host: String,
    pub port: u16,
}

impl NetworkPolicy {
    /// The checks that need no DNS: an absolute http(s) URL without credentials, https unless
    /// it names a loopback host, and an address literal that is allowed.
    pub fn check_url(&self, raw: &str) -> Result<Target, Refusal> {
        let invalid =
            |why: &str| Refusal::InvalidUrl(format!("{raw:?} is not a webhook URL: {why}"));
        let url = url::Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "https" | "http") {
            return Err(invalid("its scheme is not https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("it carries credentials"));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(invalid("it has no host")),
        };
        let port = url
            .port_or_known_default()
            .ok_or_else(|| invalid("it has no port"))?;
        let literal: Option<IpAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(ip.into()),
            Some(url::Host::Ipv6(ip)) => Some(ip.into()),
            _ => None,
        };
        if url.scheme() == "http" {
            let loopback_name = host == "localhost" || host.ends_with(".localhost");
            let loopback = literal.map_or(loopback_name, |ip| ip.is_loopback());
            if !(self.allow_loopback && loopback) {
                return Err(Refusal::NotHttps);
            }
        }
        if let Some(ip) = literal {
            self.check_address(&host, ip)?;
        }
        Ok(Target { url, host, port })
    }

    /// Refuses an address deliveries may not reach.
    pub fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        let allowed = self.allowed_networks.iter().any(|n| n.contains(&ip))
            || (self.allow_loopback && ip.is_loopback())
            || !is_internal(ip);
        match allowed {
            true => Ok(()),
            false => Err(Refusal::Address {
                host: host.to_string(),
                address: ip,
            }),
        }
    }

    /// Resolves the target's host and checks every address; an http URL must stay on loopback.
    pub async fn resolve(
        &self,
        target: &Target,
        limit: Duration,
    ) -> Result<Vec<SocketAddr>, Refusal> {
        let unresolved = |reason: String| Refusal::Unresolved {
            host: target.host.clone(),
            reason,
        };
        let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
        let addrs: Vec<SocketAddr> = match tokio::time::timeout(limit, lookup).await {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => return Err(unresolved(e.to_string())),
            Err(_) => return Err(unresolved("the lookup timed out".into())),
        };
        if addrs.is_empty() {
            return Err(unresolved("no addresses".into()));
        }
        for addr in &addrs {
            self.check_address(&target.host, addr.ip())?;
            if target.url.scheme() == "http" && !canonical(addr.ip()).is_loopback() {
                return Err(Refusal::NotHttps);
            }
        }
        Ok(addrs)
    }
}

/// An IPv4 address written as IPv6 (`::ffff:10.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Not a public unicast address: private, loopback, link-local, shared (CGNAT), unspecified,
/// multicast, broadcast, documentation, benchmarking or reserved.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_internal_v4(ip),
        IpAddr::V6(ip) => is_internal_v6(ip),
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || first == 0x0064 && ip.segments()[1] == 0xff9b // NAT64, could reach internal IPv4
        || ip.to_ipv4().is_some_and(|v4| ip.segments()[..6] == [0; 6] && is_internal_v4(v4))
}

/// The delivery client's DNS: resolves, and fails the connection when any address is refused.
/// The client connects only to what this returns, so the check and the connection see the
/// same addresses (no rebinding between them).
pub struct GuardedResolver(pub Arc<NetworkPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy.check_address(&host, addr.ip())?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> NetworkPolicy {
        NetworkPolicy::default()
    }

    #[test]
    fn internal_addresses_are_refused() {
        let policy = production();
        for url in [
            "https://10.1.2.3/hook",
            "https://172.16.0.1/",
            "https://192.168.1.1/",
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data",
            "https://[::1]/",
            "https://[fe80::1]/",
            "https://[fd00::1]/",
            "https://[::ffff:10.0.0.1]/",
            "https://0.0.0.0/",
            "https://100.64.0.1/",
        ] {
            let refused = policy.check_url(url).map(|_| ()).unwrap_err();
            assert_eq!(refused.code(), "webhook_address_refused", "{url}");
        }
        assert!(policy.check_url("https://93.184.216.34/hook").is_ok());
    }

    #[test]
    fn http_only_to_loopback_when_allowed() {
        let dev = NetworkPolicy {
            allow_loopback: true,
            ..Default::default()
        };
        assert!(dev.check_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(dev.check_url("http://localhost:8080/hook").is_ok());
        assert_eq!(
            dev.check_url("http://93.184.216.34/").unwrap_err().code(),
            "webhook_url_not_https"
        );
        assert_eq!(
            production()
                .check_url("http://127.0.0.1/")
                .unwrap_err()
                .code(),
            "webhook_url_not_https"
        );
    }

    #[test]
    fn allowed_networks_open_only_themselves() {
        let policy = NetworkPolicy {
            allow_loopback: false,
            allowed_networks: vec!["10.8.0.0/16".parse().expect("net")],
        };
        assert!(policy.check_url("https://10.8.1.1/").is_ok());
        assert!(policy.check_url("https://10.9.1.1/").is_err());
    }

    #[test]
    fn malformed_urls_are_invalid() {
        for url in [
            "not a url",
            "ftp://example.com/",
            "https://user:pw@example.com/",
        ] {
            assert_eq!(
                production().check_url(url).unwrap_err().code(),
                "invalid_webhook_url"
            );
        }
    }
}

//! Webhook endpoints: parsed once, with the parser of the HTTP client that will call them
//! (reqwest's `Url`, the WHATWG URL standard), so the host the checks see is the host the
//! connection goes to; and the address policy that keeps a subscription from pointing the server
//! at itself or at the network behind it.

use std::net::IpAddr;

use reqwest::Url;

/// A webhook endpoint URL: http or https, with a host, without user info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    url: Url,
}

impl Endpoint {
    pub fn parse(text: &str) -> Option<Endpoint> {
        let url = Url::parse(text).ok()?;
        let usable = matches!(url.scheme(), "https" | "http")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.username().is_empty()
            && url.password().is_none();
        usable.then_some(Endpoint { url })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn https(&self) -> bool {
        self.url.scheme() == "https"
    }

    /// The address the URL names literally, if it does (no resolution happens for those).
    pub fn literal_ip(&self) -> Option<IpAddr> {
        match self.url.host()? {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        }
    }

    /// `localhost`, or a loopback address.
    pub fn is_loopback(&self) -> bool {
        match (self.literal_ip(), self.url.host_str()) {
            (Some(ip), _) => is_loopback(ip),
            (None, Some(host)) => host.eq_ignore_ascii_case("localhost"),
            (None, None) => false,
        }
    }

    /// The URL without its query (Azure shows only the base; a query may hold a secret).
    pub fn base(&self) -> String {
        let mut base = self.url.clone();
        base.set_query(None);
        base.set_fragment(None);
        base.to_string()
    }
}

/// Which addresses webhooks may reach. By default only public ones: a subscription must not
/// make the server call its own loopback services, its cloud's metadata endpoint (link-local) or
/// the private network it sits in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    /// `--event-allow-http-loopback`: loopback addresses, with plain http too (development).
    pub allow_loopback: bool,
    /// `--event-allow-private-networks`: loopback, private, link-local and unique-local addresses.
    pub allow_private: bool,
}

impl AddressPolicy {
    /// Whether a connection to `ip` is allowed.
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        if is_unusable(ip) {
            return false;
        }
        if is_loopback(ip) {
            return self.allow_loopback || self.allow_private;
        }
        !is_private(ip) || self.allow_private
    }

    /// What the URL itself shows: https (plain http only to loopback, with its flag), and a
    /// literal address this policy allows.
    pub fn check(&self, endpoint: &Endpoint) -> Result<(), &'static str> {
        let plain_http_allowed = self.allow_loopback && endpoint.is_loopback();
        if !endpoint.https() && !plain_http_allowed {
            return Err(
                "Webhook endpoints must be https (plain http only on loopback, and only with --event-allow-http-loopback).",
            );
        }
        match endpoint.literal_ip() {
            Some(ip) if !self.allows(ip) => Err(REFUSED_ADDRESS),
            _ => Ok(()),
        }
    }
}

/// Why an address is refused, in the words of the flags that allow it.
pub(crate) const REFUSED_ADDRESS: &str = "Webhook endpoints must be at public addresses: loopback ones only with \
     --event-allow-http-loopback, private, link-local and unique-local ones only with --event-allow-private-networks.";

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// Addresses no webhook is ever at: unspecified (`0.0.0.0` reaches the host itself), multicast,
/// broadcast.
fn is_unusable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast() || v4.octets()[0] == 0,
        IpAddr::V6(v6) => v6.is_unspecified() || v6.is_multicast(),
    }
}

/// Private, shared (CGNAT), link-local and unique-local ranges.
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || v4.is_link_local() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_one_the_client_connects_to() {
        // A backslash ends the authority for the WHATWG parser: the host is 127.0.0.1.
        let tricky = Endpoint::parse("http://127.0.0.1:9\\@hooks.example/x").unwrap();
        assert_eq!(tricky.literal_ip(), Some("127.0.0.1".parse().unwrap()));
        assert!(tricky.is_loopback());
        let decimal = Endpoint::parse("https://2130706433/x").unwrap();
        assert_eq!(decimal.literal_ip(), Some("127.0.0.1".parse().unwrap()), "numeric hosts are normalised");
        assert!(Endpoint::parse("https://user:pw@hooks.example/").is_none());
        assert!(Endpoint::parse("file:///etc/passwd").is_none());
        assert_eq!(Endpoint::parse("https://hooks.example/x?code=secret").unwrap().base(), "https://hooks.example/x");
    }

    #[test]
    fn only_public_addresses_by_default() {
        let policy = AddressPolicy::default();
        for refused in [
            "127.0.0.1",
            "::1",
            "::ffff:127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "fd00::1",
            "fe80::1",
            "224.0.0.1",
        ] {
            assert!(!policy.allows(refused.parse().unwrap()), "{refused}");
        }
        for allowed in ["203.0.113.7", "8.8.8.8", "2001:db8::1"] {
            assert!(policy.allows(allowed.parse().unwrap()), "{allowed}");
        }
        let loopback = AddressPolicy { allow_loopback: true, allow_private: false };
        assert!(loopback.allows("127.0.0.1".parse().unwrap()) && !loopback.allows("10.0.0.1".parse().unwrap()));
        let private = AddressPolicy { allow_loopback: false, allow_private: true };
        assert!(private.allows("10.0.0.1".parse().unwrap()) && !private.allows("0.0.0.0".parse().unwrap()));
    }
}

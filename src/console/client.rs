//! Who the client of a request is, behind trusted reverse proxies.
//!
//! [`ClientAddresses`]: the client's address. The connection's peer, unless the peer is a
//! trusted proxy (`[http] trusted_proxies`): then the right-most address of the configured
//! header (`X-Forwarded-For` or RFC 7239 `Forwarded`) that is not a trusted proxy. Each
//! proxy appends the address it saw, so that one is the first a trusted party vouches
//! for; anything to its left was written by the client and can be anything. Failed logins
//! are counted against it, and the audit log and the logs show it.
//!
//! The header parsing is written here: no maintained crate takes a trusted set of proxy
//! networks and gives the right-most untrusted address of both headers, and the grammar
//! needed (a comma list of addresses; RFC 7239's `for=` node) is small. Both are bounded
//! (at most [`MAX_HOPS`] addresses read) and never fail: an address that cannot be read
//! stops the walk at the last trusted hop.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The header in which trusted proxies name the client (`[http] client_address_header`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientAddressHeader {
    /// `X-Forwarded-For: client, proxy1, ...` (nginx, HAProxy, Caddy, Traefik).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

/// Most addresses of a forwarded-for chain looked at (the right-most ones).
pub const MAX_HOPS: usize = 32;

/// Finds the client's address behind trusted reverse proxies.
#[derive(Clone, Debug, Default)]
pub struct ClientAddresses {
    proxies: Vec<ipnet::IpNet>,
    header: ClientAddressHeader,
}

impl ClientAddresses {
    /// Believes `header` when the peer (and each hop after it) is in `proxies`.
    pub fn new(proxies: Vec<ipnet::IpNet>, header: ClientAddressHeader) -> ClientAddresses {
        ClientAddresses { proxies, header }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusted(client) {
            return client;
        }
        let name = match self.header {
            ClientAddressHeader::XForwardedFor => "x-forwarded-for",
            ClientAddressHeader::Forwarded => "forwarded",
        };
        // Every header line in order, each a comma list: together one list (RFC 9110 §5.3).
        let hops: Vec<&str> = headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.to_str().unwrap_or("").split(','))
            .collect();
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let addr = match self.header {
                ClientAddressHeader::XForwardedFor => parse_node(hop),
                ClientAddressHeader::Forwarded => forwarded_for(hop).and_then(parse_node),
            };
            // An unreadable hop ("unknown", an obfuscated node, garbage): nothing left of it
            // can be believed; the last trusted hop is the best there is.
            let Some(ip) = addr else { return client };
            client = ip.to_canonical();
            if !self.trusted(client) {
                return client;
            }
        }
        client
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.60;proto=https;by=...`).
fn forwarded_for(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim().eq_ignore_ascii_case("for").then_some(v.trim())
    })
}

/// An address as a proxy writes it: `192.0.2.60`, `192.0.2.60:4711`, `2001:db8::1`,
/// `[2001:db8::1]`, `[2001:db8::1]:4711`, perhaps in quotes.
fn parse_node(node: &str) -> Option<IpAddr> {
    let n = node.trim().trim_matches('"');
    if let Ok(ip) = n.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = n.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    n.strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .and_then(|v6| v6.parse::<IpAddr>().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(nets: &[&str], header: ClientAddressHeader) -> ClientAddresses {
        ClientAddresses::new(nets.iter().map(|n| n.parse().unwrap()).collect(), header)
    }

    #[test]
    fn without_trusted_proxies_the_header_is_ignored() {
        let c = ClientAddresses::default();
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(c.client(ip("127.0.0.1"), &h), ip("127.0.0.1"));
        // Nor from a peer that is not a trusted proxy.
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::XForwardedFor);
        assert_eq!(c.client(ip("192.0.2.1"), &h), ip("192.0.2.1"));
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let c = proxies(
            &["10.0.0.0/8", "127.0.0.1/32"],
            ClientAddressHeader::XForwardedFor,
        );
        let peer = ip("127.0.0.1");
        for (xff, want) in [
            ("203.0.113.9", "203.0.113.9"),
            // The client wrote the left part; the proxy appended what it saw.
            ("192.0.2.44, 203.0.113.9", "203.0.113.9"),
            // Two proxies of ours.
            ("203.0.113.9, 10.1.1.1", "203.0.113.9"),
            ("203.0.113.9,10.1.1.1 , 10.2.2.2", "203.0.113.9"),
            ("[2001:db8::7]:4711, 10.1.1.1", "2001:db8::7"),
            ("203.0.113.9:5000", "203.0.113.9"),
            ("::ffff:203.0.113.9", "203.0.113.9"),
            // Every hop is ours: the left-most.
            ("10.3.3.3, 10.1.1.1", "10.3.3.3"),
            // An unreadable hop stops the walk at the last trusted one.
            ("203.0.113.9, unknown, 10.1.1.1", "10.1.1.1"),
            ("garbage", "127.0.0.1"),
            ("", "127.0.0.1"),
        ] {
            let h = headers(&[("x-forwarded-for", xff)]);
            assert_eq!(c.client(peer, &h), ip(want), "{xff:?}");
        }
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.44"),
            ("x-forwarded-for", "203.0.113.9, 10.1.1.1"),
        ]);
        assert_eq!(c.client(peer, &h), ip("203.0.113.9"));
        // A peer written as IPv4 mapped into IPv6 is the same proxy.
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(c.client(ip("::ffff:127.0.0.1"), &h), ip("203.0.113.9"));
        // The other header is not read.
        let h = headers(&[("forwarded", "for=203.0.113.9")]);
        assert_eq!(c.client(peer, &h), peer);
    }

    #[test]
    fn forwarded_headers_of_rfc_7239() {
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::Forwarded);
        let peer = ip("10.0.0.1");
        for (fwd, want) in [
            ("for=203.0.113.9", "203.0.113.9"),
            (
                "for=192.0.2.44, for=203.0.113.9;proto=https;by=10.0.0.1",
                "203.0.113.9",
            ),
            ("For=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("proto=https;for=203.0.113.9", "203.0.113.9"),
            ("for=203.0.113.9, for=10.2.2.2", "203.0.113.9"),
            ("for=_hidden, for=10.2.2.2", "10.2.2.2"),
            ("for=unknown", "10.0.0.1"),
            ("by=10.0.0.1", "10.0.0.1"),
        ] {
            let h = headers(&[("forwarded", fwd)]);
            assert_eq!(c.client(peer, &h), ip(want), "{fwd:?}");
        }
    }

    #[test]
    fn a_long_chain_is_read_only_so_far() {
        let c = proxies(&["10.0.0.0/8"], ClientAddressHeader::XForwardedFor);
        let chain = std::iter::once("203.0.113.9".to_string())
            .chain((0..100).map(|i| format!("10.0.0.{}", i % 250)))
            .collect::<Vec<_>>()
            .join(", ");
        let h = headers(&[("x-forwarded-for", &chain)]);
        assert!(c.client(ip("10.0.0.1"), &h).to_string().starts_with("10."));
    }
}

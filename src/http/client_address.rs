//! Which client a request comes from, for the per-address rate limit: the peer itself, or, when
//! the peer is one of our own proxies (a balancer), the address it says it forwarded for.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use ipnet::IpNet;

use crate::rate_limit::AddressKey;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's bucket: the peer's address, unless the peer is a trusted proxy; then the
/// rightmost `X-Forwarded-For` hop that is not one (each proxy appends the address it saw, so
/// hops to its left are whatever the client claimed), in any form balancers write it (`ip`,
/// `ip:port`, `[v6]`, `[v6]:port`). A hop that is no address at all is that client's own bucket,
/// by its text, never one shared with everyone behind the balancer. Without trusted proxies
/// the header is ignored: anyone can write it.
pub fn client_address(request: &HttpRequest, trusted_proxies: &[IpNet]) -> Option<AddressKey> {
    let peer = request.peer_addr()?.ip();
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    if !trusted(&peer) {
        return Some(peer.into());
    }
    let hops: Vec<&str> = request
        .headers()
        .get_all(X_FORWARDED_FOR)
        .map(|value| std::str::from_utf8(value.as_bytes()).unwrap_or("(not text)"))
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop_address(hop) {
            Some(address) if trusted(&address) => client = address,
            Some(address) => return Some(address.into()),
            None => {
                let mut hasher = DefaultHasher::new();
                hop.hash(&mut hasher);
                return Some(AddressKey::Unreadable(hasher.finish()));
            }
        }
    }
    // Every hop was a trusted proxy: the leftmost of them is the client.
    Some(client.into())
}

/// The address of one `X-Forwarded-For` hop, with or without a port.
fn hop_address(hop: &str) -> Option<IpAddr> {
    if let Ok(address) = hop.parse::<IpAddr>() {
        return Some(address);
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    let bracketed = hop.strip_prefix('[')?.strip_suffix(']')?;
    bracketed.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from(peer: &str, forwarded_for: Option<&str>, trusted: &[&str]) -> AddressKey {
        let mut request = TestRequest::default().peer_addr(format!("{peer}:4000").parse().unwrap());
        if let Some(header) = forwarded_for {
            request = request.insert_header(("X-Forwarded-For", header));
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        client_address(&request.to_http_request(), &trusted).unwrap()
    }

    fn ip(text: &str) -> AddressKey {
        text.parse::<IpAddr>().unwrap().into()
    }

    fn behind(header: &str) -> AddressKey {
        from("10.0.0.2", Some(header), &["10.0.0.0/8"])
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy_and_from_its_right_end() {
        // No trusted proxy: the header is the client's own claim.
        assert_eq!(from("192.0.2.9", Some("203.0.113.5"), &[]), ip("192.0.2.9"));
        // Behind the balancer: the hop it appended, not what the client put before it.
        assert_eq!(behind("203.0.113.5"), ip("203.0.113.5"));
        assert_eq!(behind("1.2.3.4, 203.0.113.5"), ip("203.0.113.5"));
        assert_eq!(behind("1.2.3.4, 203.0.113.5, 10.0.0.7"), ip("203.0.113.5"));
        assert_eq!(behind("10.0.0.9, 10.0.0.7"), ip("10.0.0.9"));
        assert_eq!(from("10.0.0.2", None, &["10.0.0.0/8"]), ip("10.0.0.2"));
        // A peer that is not trusted is the client, whatever it claims.
        assert_eq!(
            from("192.0.2.9", Some("203.0.113.5"), &["10.0.0.0/8"]),
            ip("192.0.2.9")
        );
    }

    /// HAProxy writes a bare address, nginx's `$remote_addr:$remote_port` and cloud balancers
    /// add ports and brackets: each is the client's address (it used to be the balancer's).
    #[test]
    fn hops_with_ports_and_brackets_name_their_client() {
        assert_eq!(behind("203.0.113.5:51234"), ip("203.0.113.5"));
        assert_eq!(behind("2001:db8::7"), ip("2001:db8::7"));
        assert_eq!(behind("[2001:db8::7]"), ip("2001:db8::7"));
        assert_eq!(behind("[2001:db8::7]:443, 10.0.0.7:80"), ip("2001:db8::7"));
    }

    /// A hop that is no address is a bucket of its own, never the balancer's shared one.
    #[test]
    fn a_malformed_hop_is_its_own_client() {
        let balancer = ip("10.0.0.2");
        assert_ne!(behind("nonsense, 10.0.0.7"), balancer);
        assert_eq!(behind("nonsense"), behind("nonsense"));
        assert_ne!(behind("nonsense"), behind("other"));
    }
}

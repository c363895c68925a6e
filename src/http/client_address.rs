//! Which client a request comes from, for the per-address rate limit: the peer itself, or, when
//! the peer is one of our own proxies (a balancer), the address it says it forwarded for.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderName;
use ipnet::IpNet;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The client's address: the peer, unless the peer is a trusted proxy; then the rightmost
/// `X-Forwarded-For` hop that is not one (each proxy appends the address it saw, so hops to its
/// left are whatever the client claimed). Without trusted proxies the header is ignored: anyone
/// can write it.
pub fn client_address(request: &HttpRequest, trusted_proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip();
    let trusted = |address: &IpAddr| trusted_proxies.iter().any(|net| net.contains(address));
    if !trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = request
        .headers()
        .get_all(X_FORWARDED_FOR)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(address) if trusted(&address) => client = address,
            Ok(address) => return Some(address),
            // A hop that is no address: the last trusted one is all that is known.
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn from(peer: &str, forwarded_for: Option<&str>, trusted: &[&str]) -> IpAddr {
        let mut request = TestRequest::default().peer_addr(format!("{peer}:4000").parse().unwrap());
        if let Some(header) = forwarded_for {
            request = request.insert_header(("X-Forwarded-For", header));
        }
        let trusted: Vec<IpNet> = trusted.iter().map(|net| net.parse().unwrap()).collect();
        client_address(&request.to_http_request(), &trusted).unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy_and_from_its_right_end() {
        let ip = |text: &str| text.parse::<IpAddr>().unwrap();
        // No trusted proxy: the header is the client's own claim.
        assert_eq!(from("192.0.2.9", Some("203.0.113.5"), &[]), ip("192.0.2.9"));
        // Behind the balancer: the hop it appended, not what the client put before it.
        let behind = |header| from("10.0.0.2", Some(header), &["10.0.0.0/8"]);
        assert_eq!(behind("203.0.113.5"), ip("203.0.113.5"));
        assert_eq!(behind("1.2.3.4, 203.0.113.5"), ip("203.0.113.5"));
        assert_eq!(behind("1.2.3.4, 203.0.113.5, 10.0.0.7"), ip("203.0.113.5"));
        assert_eq!(behind("nonsense, 10.0.0.7"), ip("10.0.0.7"));
        assert_eq!(from("10.0.0.2", None, &["10.0.0.0/8"]), ip("10.0.0.2"));
        // A peer that is not trusted is the client, whatever it claims.
        assert_eq!(
            from("192.0.2.9", Some("203.0.113.5"), &["10.0.0.0/8"]),
            ip("192.0.2.9")
        );
    }
}

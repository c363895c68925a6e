//! Token buckets (GCRA, SPEC §2's 429): one per partner, and one per client address, charged by
//! requests whose token is refused.

mod local;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use uuid::Uuid;

use crate::config::RateLimitSettings;
use local::Buckets;

/// Over the limit; try again after this many seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// The bucket an address is charged to: an IPv4 address alone, an IPv6 address by its /64 (a
/// host is given a whole /64 and may rotate through it at will).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    V4(Ipv4Addr),
    V6Prefix(u64),
}

impl From<IpAddr> for AddressKey {
    fn from(address: IpAddr) -> Self {
        match address {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V4(v4) => write!(f, "{v4}"),
            Self::V6Prefix(prefix) => {
                let network = std::net::Ipv6Addr::from_bits(u128::from(*prefix) << 64);
                write!(f, "{network}/64")
            }
        }
    }
}

pub struct RateLimits {
    partners: Buckets<Uuid>,
    addresses: Buckets<AddressKey>,
}

impl RateLimits {
    /// `None` when rate limiting is turned off.
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        settings.enabled.then(|| Self {
            partners: Buckets::new(settings.per_second, settings.burst),
            addresses: Buckets::new(settings.anonymous_per_second, settings.anonymous_burst),
        })
    }

    pub fn check_partner(&self, partner: Uuid) -> Result<(), RetryAfter> {
        self.partners.check(&partner)
    }

    pub fn check_address(&self, address: AddressKey) -> Result<(), RetryAfter> {
        self.addresses.check(&address)
    }

    /// Forgets buckets that are full again, so memory tracks recent callers only.
    pub fn forget_idle(&self) {
        self.partners.forget_idle();
        self.addresses.forget_idle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(address: &str) -> AddressKey {
        address.parse::<IpAddr>().unwrap().into()
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_and_ipv4_alone() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_eq!(key("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }
}

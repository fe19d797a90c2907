//! Which peers may post YooKassa notifications: an IP allow-list with real CIDR matching.
//!
//! A notification is only a hint (the payment is always re-read from the API), but refusing
//! strangers keeps the endpoint from being used to make us call YooKassa at will.

use ipnet::{IpNet, Ipv4Net};
use std::fmt;
use std::net::IpAddr;

/// The networks YooKassa sends notifications from, as it publishes them.
pub const YOOKASSA_NETWORKS: &str = "185.71.76.0/27, 185.71.77.0/27, 77.75.153.0/25, \
    77.75.154.128/25, 77.75.156.11, 77.75.156.35, 2a02:5180::/32";

/// The word that stands for [`YOOKASSA_NETWORKS`] in a list.
pub const YOOKASSA_WORD: &str = "yookassa";

/// Why an allow-list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    /// The list names no network: it would refuse every peer.
    #[error("the IP allow-list is empty")]
    Empty,
    /// An entry is neither an address, a CIDR network nor the word `yookassa`.
    #[error("not an IP address or CIDR network: {0:?}")]
    Entry(String),
}

/// A set of IPv4 and IPv6 networks. An IPv4-mapped IPv6 peer (`::ffff:185.71.76.1`, as a
/// dual-stack socket reports IPv4 clients) is matched as the IPv4 address it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpAllowList {
    networks: Vec<IpNet>,
}

impl IpAllowList {
    /// Reads a list separated by commas or whitespace. Each entry is a CIDR network
    /// (`185.71.76.0/27`, `2a02:5180::/32`), a single address (`77.75.156.11`, as /32 or
    /// /128) or the word `yookassa` (YooKassa's published networks). Host bits set in a CIDR
    /// entry are ignored (`185.71.76.5/27` is `185.71.76.0/27`). An empty list is an error.
    pub fn parse(spec: &str) -> Result<Self, AllowListError> {
        let mut networks = Vec::new();
        for entry in spec.split(|c: char| c == ',' || c.is_whitespace()).filter(|e| !e.is_empty()) {
            if entry.eq_ignore_ascii_case(YOOKASSA_WORD) {
                networks.extend(Self::yookassa().networks);
                continue;
            }
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => {
                    let ip: IpAddr =
                        entry.parse().map_err(|_| AllowListError::Entry(entry.to_owned()))?;
                    IpNet::from(ip)
                }
            };
            networks.push(canonical_net(net));
        }
        if networks.is_empty() {
            return Err(AllowListError::Empty);
        }
        networks.dedup();
        Ok(Self { networks })
    }

    /// YooKassa's published networks ([`YOOKASSA_NETWORKS`]).
    pub fn yookassa() -> Self {
        let networks = YOOKASSA_NETWORKS
            .split(',')
            .map(str::trim)
            .filter_map(|e| {
                e.parse::<IpNet>().ok().or_else(|| e.parse::<IpAddr>().ok().map(IpNet::from))
            })
            .collect();
        Self { networks }
    }

    /// Whether `peer` is inside one of the networks.
    pub fn allows(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.networks.iter().any(|net| net.contains(&peer))
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }
}

impl fmt::Display for IpAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:185.71.76.0/123`) as the IPv4 network it maps, so
/// that it matches canonicalized peers.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(mapped) = Ipv4Net::new(v4, v6.prefix_len() - 96) {
                return IpNet::V4(mapped);
            }
        }
    }
    net
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn cidr_edges_are_respected() {
        let list = IpAllowList::parse("185.71.76.0/27").expect("parses");
        assert!(list.allows(ip("185.71.76.0")));
        assert!(list.allows(ip("185.71.76.31")));
        assert!(!list.allows(ip("185.71.76.32")), "just outside the /27");
        assert!(!list.allows(ip("185.71.75.255")));
    }

    #[test]
    fn the_yookassa_word_expands_to_the_published_networks() {
        let list = IpAllowList::parse("yookassa").expect("parses");
        assert_eq!(list, IpAllowList::yookassa());
        assert_eq!(list.networks().len(), 7);
        for inside in [
            "185.71.76.1",
            "185.71.77.31",
            "77.75.153.127",
            "77.75.154.128",
            "77.75.154.255",
            "77.75.156.11",
            "77.75.156.35",
            "2a02:5180::1",
            "2a02:5180:ffff::1",
        ] {
            assert!(list.allows(ip(inside)), "{inside}");
        }
        for outside in [
            "185.71.77.32",
            "77.75.153.128",
            "77.75.154.127",
            "77.75.156.12",
            "2a02:5181::1",
            "127.0.0.1",
            "::1",
        ] {
            assert!(!list.allows(ip(outside)), "{outside}");
        }
    }

    #[test]
    fn mixed_lists_single_addresses_and_mapped_peers() {
        let list = IpAllowList::parse("185.71.76.0/27, 77.75.156.11 2a02:5180::/32,127.0.0.1")
            .expect("ok");
        assert!(list.allows(ip("77.75.156.11")));
        assert!(!list.allows(ip("77.75.156.10")));
        assert!(list.allows(ip("::ffff:185.71.76.5")), "IPv4-mapped peer");
        assert!(!list.allows(ip("::ffff:185.71.76.32")));
        assert!(list.allows(ip("::ffff:127.0.0.1")));
        let mapped = IpAllowList::parse("::ffff:10.0.0.0/120").expect("mapped network");
        assert!(mapped.allows(ip("10.0.0.7")));
        assert!(mapped.allows(ip("::ffff:10.0.0.7")));
        assert_eq!(mapped.to_string(), "10.0.0.0/24");
        let host_bits = IpAllowList::parse("185.71.76.5/27").expect("parses");
        assert!(host_bits.allows(ip("185.71.76.0")));
        assert_eq!(
            IpAllowList::parse("yookassa, 1.2.3.4").expect("ok").to_string().split(", ").count(),
            8
        );
    }

    #[test]
    fn junk_and_empty_lists_are_refused() {
        assert_eq!(IpAllowList::parse(""), Err(AllowListError::Empty));
        assert_eq!(IpAllowList::parse(" , "), Err(AllowListError::Empty));
        for junk in ["185.71.76.0/33", "example.com", "1.2.3", "10.0.0.0/8/8", "*"] {
            assert!(matches!(IpAllowList::parse(junk), Err(AllowListError::Entry(_))), "{junk}");
        }
    }
}

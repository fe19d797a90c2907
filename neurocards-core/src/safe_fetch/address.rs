//! Which IP addresses an outbound fetch may connect to: public unicast only. Loopback, private,
//! link-local (which holds the cloud metadata services at 169.254.169.254), CGNAT (Alibaba's
//! metadata at 100.100.100.200), unique-local (AWS's fd00:ec2::254), multicast, unspecified,
//! documentation, benchmarking and reserved ranges are refused, in IPv4 and IPv6, including
//! IPv4 addresses embedded in IPv6 (mapped, compatible, NAT64, 6to4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How far a fetch may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Public addresses only (production).
    Public,
    /// Public addresses and loopback (tests against local fakes). Private, link-local,
    /// metadata and the other special ranges stay refused.
    PublicAndLoopback,
}

impl Reach {
    /// Whether a connection to `ip` is allowed.
    pub fn allows(self, ip: IpAddr) -> bool {
        match classify(ip) {
            Kind::Public => true,
            Kind::Loopback => self == Reach::PublicAndLoopback,
            Kind::Special => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Public,
    Loopback,
    Special,
}

fn classify(ip: IpAddr) -> Kind {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn classify_v4(ip: Ipv4Addr) -> Kind {
    if ip.is_loopback() {
        return Kind::Loopback;
    }
    const SPECIAL: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // CGNAT (and Alibaba's metadata service)
        ([169, 254, 0, 0], 16),  // link-local (cloud metadata services)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments (Oracle's metadata 192.0.0.192)
        ([192, 0, 2, 0], 24),    // documentation
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation
        ([203, 0, 113, 0], 24),  // documentation
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and the broadcast address
    ];
    if SPECIAL.iter().any(|(net, prefix)| in_v4(ip, *net, *prefix)) {
        Kind::Special
    } else {
        Kind::Public
    }
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    (u128::from(ip) & mask) == (u128::from(net) & mask)
}

fn classify_v6(ip: Ipv6Addr) -> Kind {
    if ip.is_loopback() {
        return Kind::Loopback;
    }
    if ip.is_unspecified() {
        return Kind::Special;
    }
    // IPv4 inside IPv6: the IPv4 address decides.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xFFFF_FFFF) as u32);
    // ::a.b.c.d (deprecated "compatible") and 64:ff9b::a.b.c.d (NAT64).
    if bits >> 32 == 0 || in_v6(ip, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        return match classify_v4(low32) {
            // A NAT64 gateway would reach loopback on the gateway, not here.
            Kind::Loopback => Kind::Special,
            kind => kind,
        };
    }
    // 6to4: 2002:AABB:CCDD::/48 carries a.b.c.d in bits 16..48.
    if in_v6(ip, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        let embedded = Ipv4Addr::from(((bits >> 80) & 0xFFFF_FFFF) as u32);
        return match classify_v4(embedded) {
            Kind::Public => Kind::Public,
            _ => Kind::Special,
        };
    }
    // Only global unicast (2000::/3) is public, less its special blocks.
    if !in_v6(ip, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3) {
        // fc00::/7 unique-local, fe80::/10 link-local, ff00::/8 multicast, 100::/64 discard …
        return Kind::Special;
    }
    const SPECIAL: &[(Ipv6Addr, u32)] = &[
        (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23), // IETF protocol assignments, Teredo
        (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
        (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    ];
    if SPECIAL.iter().any(|(net, prefix)| in_v6(ip, *net, *prefix)) {
        Kind::Special
    } else {
        Kind::Public
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP address")
    }

    #[test]
    fn special_addresses_are_refused_in_every_form() {
        for refused in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "192.0.0.192",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "198.18.0.1",
            "::",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:192.168.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(!Reach::Public.allows(ip(refused)), "{refused}");
            assert!(!Reach::PublicAndLoopback.allows(ip(refused)), "{refused} (test mode)");
        }
    }

    #[test]
    fn loopback_is_allowed_only_in_test_mode() {
        for lo in ["127.0.0.1", "127.1.2.3", "::1", "::ffff:127.0.0.1"] {
            assert!(!Reach::Public.allows(ip(lo)), "{lo}");
            assert!(Reach::PublicAndLoopback.allows(ip(lo)), "{lo}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2002:0808:0808::1",
            "64:ff9b::808:808",
        ] {
            assert!(Reach::Public.allows(ip(public)), "{public}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// An IPv4 address and its IPv4-mapped IPv6 form always get the same answer.
        #[test]
        fn mapped_v4_is_judged_as_v4(raw: u32) {
            let v4 = Ipv4Addr::from(raw);
            let mapped = IpAddr::V6(v4.to_ipv6_mapped());
            for reach in [Reach::Public, Reach::PublicAndLoopback] {
                prop_assert_eq!(reach.allows(IpAddr::V4(v4)), reach.allows(mapped));
            }
        }

        /// Private, link-local and loopback v4 ranges are never public, whatever the host bits.
        #[test]
        fn private_ranges_are_never_public(host: u32) {
            for (net, prefix) in [([10u8, 0, 0, 0], 8u32), ([172, 16, 0, 0], 12), ([192, 168, 0, 0], 16), ([169, 254, 0, 0], 16), ([127, 0, 0, 0], 8), ([100, 64, 0, 0], 10)] {
                let base = u32::from(Ipv4Addr::from(net));
                let addr = Ipv4Addr::from(base | (host >> prefix));
                prop_assert!(!Reach::Public.allows(IpAddr::V4(addr)), "{}", addr);
            }
        }
    }
}

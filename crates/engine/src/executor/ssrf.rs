//! Which addresses an `http_request` node may reach: only globally routable unicast. The blocks
//! below are the IANA IPv4 and IPv6 special-purpose address registries (RFC 6890 and its
//! updates) plus multicast and the reserved class E; anything not in global unicast is refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// IPv4 blocks that are not global unicast: `(network, prefix length, name)`.
const V4_SPECIAL: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "this network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared address space (CGNAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local (cloud metadata)"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 31, 196, 0], 24, "AS112"),
    ([192, 52, 193, 0], 24, "AMT"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([192, 175, 48, 0], 24, "AS112 direct delegation"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved (including broadcast)"),
];

/// IPv6 blocks inside global unicast (2000::/3) that are special-purpose.
const V6_SPECIAL: &[(u128, u8, &str)] = &[
    (
        0x2001_0000 << 96,
        23,
        "IETF protocol assignments (Teredo, benchmarking, ORCHID)",
    ),
    (0x2001_0db8 << 96, 32, "documentation"),
    (0x2002 << 112, 16, "6to4"),
    (0x3fff << 112, 20, "documentation"),
];

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// Why `ip` may not be reached (`None`: it is global unicast).
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => V4_SPECIAL
            .iter()
            .find(|(net, len, _)| in_v4(v4, *net, *len))
            .map(|(_, _, name)| *name),
        IpAddr::V6(v6) => {
            // IPv4-mapped (::ffff:a.b.c.d) reaches the IPv4 address itself.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return special_purpose(IpAddr::V4(v4));
            }
            if in_v6(v6, 0x0064_ff9b << 96, 96) || in_v6(v6, 0x0064_ff9b_0001 << 80, 48) {
                return Some("NAT64");
            }
            if !in_v6(v6, 0x2 << 124, 3) {
                // Everything outside 2000::/3: unspecified, loopback, IPv4-compatible, discard,
                // unique local, link-local, site-local, multicast, unassigned.
                return Some("not global unicast");
            }
            V6_SPECIAL
                .iter()
                .find(|(net, len, _)| in_v6(v6, *net, *len))
                .map(|(_, _, name)| *name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_purpose_range_is_refused_in_both_families() {
        for ip in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.170",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.254",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:198.18.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "3fff::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert!(special_purpose(addr).is_some(), "{ip} must be refused");
        }
    }

    #[test]
    fn global_unicast_is_allowed() {
        for ip in [
            "8.8.8.8",
            "93.184.216.34",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
        ] {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(special_purpose(addr), None, "{ip} is global");
        }
    }
}

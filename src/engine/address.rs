//! Addresses: what a log line names, what gets banned, and what must never be.
//!
//! A failure names one address. It is normalised (`::ffff:1.2.3.4` is 1.2.3.4, because the
//! same attacker reaches a dual-stack socket both ways) and grouped into the network that is
//! banned: the address itself, or for IPv6 its /64 (or any prefix) when the jail asks, since
//! one host usually owns a whole /64. The ignore list is checked against that network, not
//! just the address: banning a /64 that contains our own address would lock us out.

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `::ffff:a.b.c.d` becomes `a.b.c.d`; everything else is returned as is.
pub fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Parses an address as it may appear in a log line or on the command line: plain, in
/// brackets (`[2001:db8::1]`), with a zone (`fe80::1%eth0`, zone dropped), IPv4-mapped.
pub fn parse_address(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(t);
    let t = t.split_once('%').map_or(t, |(a, _zone)| a);
    t.parse::<IpAddr>().ok().map(normalize)
}

/// The network that banning `addr` blocks: a host route, or the IPv6 prefix of the jail.
pub fn ban_target(addr: IpAddr, ipv6_prefix: u8) -> IpNet {
    match normalize(addr) {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => {
            let prefix = ipv6_prefix.min(128);
            // `new` only fails for a prefix > 128, excluded just above.
            let net = Ipv6Net::new(v6, prefix).unwrap_or_else(|_| Ipv6Net::from(v6));
            IpNet::V6(net.trunc())
        }
    }
}

/// The network that banning the subnet `net` (a failure's `<SUBNET>`) blocks: the subnet,
/// widened to the jail's IPv6 prefix when that is shorter (a jail that bans whole /64s bans
/// the /64 around a /112 too). An IPv4-mapped IPv6 subnet is the IPv4 subnet.
pub fn ban_target_net(net: IpNet, ipv6_prefix: u8) -> IpNet {
    match net {
        IpNet::V4(v4) => IpNet::V4(v4.trunc()),
        IpNet::V6(v6) => {
            if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
                // A prefix of 96..=128 leaves 0..=32 bits of IPv4 address.
                let net = Ipv4Net::new(v4, v6.prefix_len() - 96).unwrap_or_else(|_| v4.into());
                return IpNet::V4(net.trunc());
            }
            let prefix = v6.prefix_len().min(ipv6_prefix.min(128));
            let net = Ipv6Net::new(v6.addr(), prefix).unwrap_or(v6);
            IpNet::V6(net.trunc())
        }
    }
}

/// Why an address is not banned although it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    Loopback,
    Unspecified,
    IgnoreIp,
    OwnAddress,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Loopback => "loopback address",
            IgnoreReason::Unspecified => "unspecified address",
            IgnoreReason::IgnoreIp => "listed in ignoreip",
            IgnoreReason::OwnAddress => "one of this host's own addresses (ignoreself)",
        }
    }
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ALWAYS_IGNORED: [(IpNet, IgnoreReason); 4] = [
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        IgnoreReason::Loopback,
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
        IgnoreReason::Loopback,
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 32)),
        IgnoreReason::Unspecified,
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::UNSPECIFIED, 128)),
        IgnoreReason::Unspecified,
    ),
];

/// Networks that are never banned. Loopback and the unspecified address always are;
/// the host's own addresses are given by the caller (the engine does no I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreList {
    networks: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl IgnoreList {
    pub fn new(networks: Vec<IpNet>, own_addresses: Vec<IpAddr>) -> Self {
        IgnoreList {
            networks: networks.into_iter().map(|n| n.trunc()).collect(),
            own: own_addresses.into_iter().map(normalize).collect(),
        }
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.networks
    }

    /// Whether banning `target` would block something that must never be blocked.
    pub fn check(&self, target: &IpNet) -> Option<IgnoreReason> {
        let overlaps = |net: &IpNet| net.contains(target) || target.contains(net);
        for (net, reason) in &ALWAYS_IGNORED {
            if overlaps(net) {
                return Some(*reason);
            }
        }
        if self.networks.iter().any(overlaps) {
            return Some(IgnoreReason::IgnoreIp);
        }
        if self.own.iter().any(|a| target.contains(a)) {
            return Some(IgnoreReason::OwnAddress);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn normalises_mapped_and_bracketed() {
        assert_eq!(
            parse_address("::ffff:198.51.100.4"),
            Some(ip("198.51.100.4"))
        );
        assert_eq!(parse_address("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(parse_address("fe80::1%eth0"), Some(ip("fe80::1")));
        assert_eq!(parse_address("999.1.1.1"), None);
        assert_eq!(parse_address("host.example"), None);
    }

    #[test]
    fn groups_ipv6_by_prefix() {
        let t = ban_target(ip("2001:db8:1:2:aaaa::5"), 64);
        assert_eq!(t.to_string(), "2001:db8:1:2::/64");
        assert_eq!(
            ban_target(ip("2001:db8::5"), 128).to_string(),
            "2001:db8::5/128"
        );
        assert_eq!(
            ban_target(ip("203.0.113.7"), 64).to_string(),
            "203.0.113.7/32"
        );
        assert_eq!(
            ban_target(ip("::ffff:203.0.113.7"), 64).to_string(),
            "203.0.113.7/32"
        );
    }

    #[test]
    fn never_bans_loopback_ignoreip_or_self() {
        let list = IgnoreList::new(
            vec!["192.0.2.0/24".parse().unwrap()],
            vec![ip("2001:db8:1:2::10"), ip("198.51.100.1")],
        );
        let t = |s: &str, p| list.check(&ban_target(ip(s), p));
        assert_eq!(t("127.0.0.1", 128), Some(IgnoreReason::Loopback));
        assert_eq!(t("::1", 128), Some(IgnoreReason::Loopback));
        assert_eq!(t("::ffff:127.0.0.1", 128), Some(IgnoreReason::Loopback));
        assert_eq!(t("192.0.2.77", 128), Some(IgnoreReason::IgnoreIp));
        assert_eq!(t("198.51.100.1", 128), Some(IgnoreReason::OwnAddress));
        // The attacker shares our /64: banning the /64 would ban us.
        assert_eq!(t("2001:db8:1:2::99", 64), Some(IgnoreReason::OwnAddress));
        assert_eq!(t("2001:db8:1:2::99", 128), None);
        assert_eq!(t("203.0.113.9", 128), None);
    }
}

//! Addresses: what a log line names, what gets banned, and what must never be.
//!
//! A failure names one address. It is normalised (`::ffff:1.2.3.4` is 1.2.3.4, because the
//! same attacker reaches a dual-stack socket both ways) and grouped into the network that is
//! banned: the address itself, or for IPv6 its /64 (or any prefix) when the jail asks, since
//! one host usually owns a whole /64. The ignore list is checked against that network, not
//! just the address: banning a /64 that contains our own address would lock us out.
//!
//! Some addresses are never banned, whoever asks (a log line or an admin over the bus), by
//! the one check [`IgnoreList::check`]: loopback and unspecified, broadcast and multicast (no
//! connection comes from them; a ban could only block traffic the host needs), and
//! link-local (the same address is a different host on each link, and a ban blocks it on
//! every interface: a neighbour could get the router of another link banned).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The peer a failure names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    Ip(IpAddr),
    /// A network named by `<SUBNET>` or `<ADDR>/<CIDR>` (host bits cleared); a prefix that
    /// covers the whole address is [`Host::Ip`] instead.
    Net(IpNet),
    /// A host name; banhound does not resolve names (an attacker controls their DNS), so
    /// these are reported but never banned.
    Name(&'a [u8]),
}

impl fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(ip) => ip.fmt(f),
            Host::Net(net) => net.fmt(f),
            Host::Name(n) => f.write_str(&String::from_utf8_lossy(n)),
        }
    }
}

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

/// A network as ban targets are compared with it: truncated to its prefix, and an
/// IPv4-mapped one (`::ffff:192.0.2.0/120`) as the IPv4 network it maps (`192.0.2.0/24`).
/// Targets are normalised addresses ([`normalize`]), so a network left in the mapped form
/// would never contain one: an ignore entry written that way would protect nothing.
pub fn normalize_net(net: IpNet) -> IpNet {
    match net.trunc() {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            // `new` only fails for a prefix > 32, and 128 - 96 is the most there can be.
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(IpNet::V6(v6), IpNet::V4),
            None => IpNet::V6(v6),
        },
        other => other,
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
    Broadcast,
    Multicast,
    LinkLocal,
    IgnoreIp,
    OwnAddress,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Loopback => "loopback address",
            IgnoreReason::Unspecified => "unspecified address",
            IgnoreReason::Broadcast => "broadcast address",
            IgnoreReason::Multicast => "multicast address",
            IgnoreReason::LinkLocal => {
                "link-local address (a ban would block it on every interface, each link's host)"
            }
            IgnoreReason::IgnoreIp => "listed in ignoreip",
            IgnoreReason::OwnAddress => "one of this host's own addresses (ignoreself)",
        }
    }
}

impl IgnoreReason {
    /// The reason as said of a network wider than one address that covers such an address.
    pub fn as_network_str(self) -> &'static str {
        match self {
            IgnoreReason::Loopback => "it contains loopback addresses",
            IgnoreReason::Unspecified => "it contains the unspecified address",
            IgnoreReason::Broadcast => "it contains the broadcast address",
            IgnoreReason::Multicast => "it contains multicast addresses",
            IgnoreReason::LinkLocal => "it contains link-local addresses",
            IgnoreReason::IgnoreIp => "it overlaps a network listed in ignoreip",
            IgnoreReason::OwnAddress => "it contains one of this host's own addresses (ignoreself)",
        }
    }
}

impl std::fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

const ALWAYS_IGNORED: [(IpNet, IgnoreReason); 9] = [
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
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::BROADCAST, 32)),
        IgnoreReason::Broadcast,
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 0, 0), 4)),
        IgnoreReason::Multicast,
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
            8,
        )),
        IgnoreReason::Multicast,
    ),
    (
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(169, 254, 0, 0), 16)),
        IgnoreReason::LinkLocal,
    ),
    (
        IpNet::V6(Ipv6Net::new_assert(
            Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
            10,
        )),
        IgnoreReason::LinkLocal,
    ),
];

/// Networks that are never banned. Loopback, unspecified, broadcast, multicast and
/// link-local addresses always are; the host's own addresses are given by the caller (the
/// engine does no I/O).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IgnoreList {
    networks: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl IgnoreList {
    pub fn new(networks: Vec<IpNet>, own_addresses: Vec<IpAddr>) -> Self {
        IgnoreList {
            networks: networks.into_iter().map(normalize_net).collect(),
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

/// Why a manual ban was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualBanRefusal {
    /// Banning would block `network` (the network asked for, or the ban target around the
    /// address asked for), which covers something never banned.
    Ignored {
        network: IpNet,
        reason: IgnoreReason,
    },
    /// `network` is wider than the widest the jail bans (a `/prefix`: one ban target, or
    /// its `widest_ban_v4`/`widest_ban_v6`). Banning only its first address is not what the
    /// caller asked for, so nothing is banned.
    TooWide { network: IpNet, prefix: u8 },
}

/// The widest networks a manual ban may cover, as prefix lengths per family: the jail's
/// `widest_ban_v4` and `widest_ban_v6`. [`WidestBan::HOSTS`], the default, bans no network
/// wider than one ban target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WidestBan {
    pub v4: u8,
    pub v6: u8,
}

impl WidestBan {
    pub const HOSTS: WidestBan = WidestBan { v4: 32, v6: 128 };

    /// The widest prefix for `network`'s family.
    pub fn for_family_of(&self, network: &IpNet) -> u8 {
        match network {
            IpNet::V4(_) => self.v4,
            IpNet::V6(_) => self.v6,
        }
    }

    /// Whether networks wider than one host may be banned.
    pub fn allows_networks(&self) -> bool {
        *self != WidestBan::HOSTS
    }
}

/// What a manual ban of `requested` (an address as a host network, or a network) blocks in
/// a jail that bans IPv6 addresses by `ipv6_prefix`: the ban target around it, or the
/// network itself when it is wider than a target and no wider than `widest`; never
/// anything that covers what `ignore` keeps (loopback, ignoreip, the host's addresses).
///
/// The request itself is checked before its width, so `0.0.0.0/0` or `::/0` are refused for
/// what they would block (loopback, the admin's own network), not just for being wide.
pub fn manual_ban_target(
    requested: IpNet,
    ipv6_prefix: u8,
    widest: WidestBan,
    ignore: &IgnoreList,
) -> Result<IpNet, ManualBanRefusal> {
    let requested = normalize_net(requested);
    let target = ban_target(requested.addr(), ipv6_prefix);
    if requested.prefix_len() < target.prefix_len() {
        if let Some(reason) = ignore.check(&requested) {
            return Err(ManualBanRefusal::Ignored {
                network: requested,
                reason,
            });
        }
        let widest = widest.for_family_of(&requested).min(target.prefix_len());
        if requested.prefix_len() < widest {
            return Err(ManualBanRefusal::TooWide {
                network: requested,
                prefix: widest,
            });
        }
        return Ok(requested);
    }
    match ignore.check(&target) {
        Some(reason) => Err(ManualBanRefusal::Ignored {
            network: target,
            reason,
        }),
        None => Ok(target),
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
        assert_eq!(t("255.255.255.255", 128), Some(IgnoreReason::Broadcast));
        assert_eq!(t("224.0.0.1", 128), Some(IgnoreReason::Multicast));
        assert_eq!(t("239.255.255.250", 128), Some(IgnoreReason::Multicast));
        assert_eq!(t("ff02::1", 64), Some(IgnoreReason::Multicast));
        assert_eq!(t("::ffff:224.0.0.251", 128), Some(IgnoreReason::Multicast));
        assert_eq!(t("169.254.10.1", 128), Some(IgnoreReason::LinkLocal));
        assert_eq!(t("fe80::1", 128), Some(IgnoreReason::LinkLocal));
        assert_eq!(t("febf::1", 64), Some(IgnoreReason::LinkLocal));
        assert_eq!(t("fec0::1", 128), None);
        assert_eq!(t("223.255.255.255", 128), None);
        assert_eq!(t("240.0.0.1", 128), None);
    }

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn mapped_networks_become_ipv4_networks() {
        assert_eq!(
            normalize_net(net("::ffff:192.0.2.7/120")),
            net("192.0.2.0/24")
        );
        assert_eq!(normalize_net(net("::ffff:0:0/96")), net("0.0.0.0/0"));
        assert_eq!(normalize_net(net("::ffff:0:0/95")), net("::fffe:0:0/95"));
        assert_eq!(normalize_net(net("2001:db8::7/64")), net("2001:db8::/64"));
        // Regression: an ignore entry written in the mapped form protected nothing, since
        // ban targets are plain IPv4.
        let list = IgnoreList::new(vec![net("::ffff:192.0.2.0/120")], vec![]);
        assert_eq!(
            list.check(&ban_target(ip("192.0.2.9"), 128)),
            Some(IgnoreReason::IgnoreIp)
        );
    }

    #[test]
    fn manual_bans_never_cover_what_is_ignored_nor_widen_silently() {
        let list = IgnoreList::new(
            vec![net("192.0.2.0/24"), net("2001:db8:aa::/48")],
            vec![ip("198.51.100.1"), ip("2001:db8:1:2::10")],
        );
        let ban = |s: &str, prefix| manual_ban_target(net(s), prefix, WidestBan::HOSTS, &list);
        let ignored = |network: &str, reason| {
            Err(ManualBanRefusal::Ignored {
                network: net(network),
                reason,
            })
        };
        // Regression: a network used to ban its first address alone, so these passed
        // whenever that address was not itself ignored (0.0.0.0/0 only by luck).
        assert_eq!(
            ban("0.0.0.0/0", 128),
            ignored("0.0.0.0/0", IgnoreReason::Loopback)
        );
        assert_eq!(ban("::/0", 64), ignored("::/0", IgnoreReason::Loopback));
        assert_eq!(
            ban("::ffff:0:0/96", 128),
            ignored("0.0.0.0/0", IgnoreReason::Loopback)
        );
        assert_eq!(
            ban("127.0.0.0/8", 128),
            ignored("127.0.0.0/8", IgnoreReason::Loopback)
        );
        assert_eq!(
            ban("192.0.0.0/16", 128),
            ignored("192.0.0.0/16", IgnoreReason::IgnoreIp)
        );
        assert_eq!(
            ban("198.51.100.0/24", 128),
            ignored("198.51.100.0/24", IgnoreReason::OwnAddress)
        );
        assert_eq!(
            ban("2001:db8::/32", 64),
            ignored("2001:db8::/32", IgnoreReason::IgnoreIp)
        );
        assert_eq!(
            ban("203.0.113.0/24", 128),
            Err(ManualBanRefusal::TooWide {
                network: net("203.0.113.0/24"),
                prefix: 32
            })
        );
        assert_eq!(
            ban("2001:db8:5::/48", 64),
            Err(ManualBanRefusal::TooWide {
                network: net("2001:db8:5::/48"),
                prefix: 64
            })
        );
        // Addresses, and networks inside one target, ban the target.
        assert_eq!(
            ban("::ffff:203.0.113.9/128", 128),
            Ok(net("203.0.113.9/32"))
        );
        assert_eq!(ban("2001:db8:5::9/80", 64), Ok(net("2001:db8:5::/64")));
        assert_eq!(
            ban("::ffff:192.0.2.1/128", 128),
            ignored("192.0.2.1/32", IgnoreReason::IgnoreIp)
        );
        assert_eq!(
            ban("2001:db8:aa:1::1/128", 128),
            ignored("2001:db8:aa:1::1/128", IgnoreReason::IgnoreIp)
        );
        assert_eq!(
            ban("2001:db8:1:2::99/128", 64),
            ignored("2001:db8:1:2::/64", IgnoreReason::OwnAddress)
        );
        assert_eq!(
            ban("::ffff:127.0.0.1/128", 128),
            ignored("127.0.0.1/32", IgnoreReason::Loopback)
        );
    }

    #[test]
    fn network_bans_up_to_the_widest_configured_with_the_same_protections() {
        let list = IgnoreList::new(vec![net("192.0.2.0/24")], vec![ip("198.51.100.1")]);
        let widest = WidestBan { v4: 24, v6: 48 };
        let ban = |s: &str| manual_ban_target(net(s), 64, widest, &list);
        assert_eq!(ban("203.0.113.0/24"), Ok(net("203.0.113.0/24")));
        assert_eq!(ban("203.0.113.64/26"), Ok(net("203.0.113.64/26")));
        assert_eq!(ban("::ffff:203.0.113.0/120"), Ok(net("203.0.113.0/24")));
        assert_eq!(ban("2001:db8:5::/48"), Ok(net("2001:db8:5::/48")));
        // Inside one target: the target, as before.
        assert_eq!(ban("2001:db8:5::/96"), Ok(net("2001:db8:5::/64")));
        assert_eq!(
            ban("203.0.0.0/16"),
            Err(ManualBanRefusal::TooWide {
                network: net("203.0.0.0/16"),
                prefix: 24
            })
        );
        assert_eq!(
            ban("2001:db8::/32"),
            Err(ManualBanRefusal::TooWide {
                network: net("2001:db8::/32"),
                prefix: 48
            })
        );
        // Protected addresses first, whatever the width.
        for (network, reason) in [
            ("198.51.100.0/24", IgnoreReason::OwnAddress),
            ("192.0.2.128/25", IgnoreReason::IgnoreIp),
            ("127.0.0.0/24", IgnoreReason::Loopback),
            ("0.0.0.0/0", IgnoreReason::Loopback),
        ] {
            assert_eq!(
                ban(network),
                Err(ManualBanRefusal::Ignored {
                    network: net(network),
                    reason
                }),
                "{network}"
            );
        }
    }
}

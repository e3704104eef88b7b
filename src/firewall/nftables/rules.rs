//! The rules of banhound's base chains (`input`, `forward`), per jail, as nftables expressions.
//!
//! For each jail and address family: `ip saddr @<jail>-v4 [meta l4proto P th dport R] V`.
//! In `forward` a port rule comes twice: once on the port in the packet, once on the port
//! the connection was opened to (`ct original proto-dst R`). Forwarded packets of a DNATed
//! connection (Docker's published ports, a gateway's port forwards) carry the translated
//! port by the time they reach the forward hook, while an admin lists the port clients
//! connect to; with both, a jail's `port` protects the service whichever of the two it
//! names. Routed traffic without DNAT has the same port in both.
//! Ports are matched with one rule per protocol and port range (a range is `>= first` and
//! `<= last` on the big-endian port, which `cmp` orders correctly) rather than with an
//! anonymous set: a jail has a handful of ports, and plain rules need no extra objects.
//! `reject` is a TCP reset for TCP and an ICMP(v6) port unreachable (`icmpx`, right for
//! either family in an `inet` table) for everything else.

use super::sets::Family;
use super::shim::OriginalDestinationPort;
use super::BaseChain;
use crate::firewall::{BlockType, PortRange, Ports, Protocol};
use nftnl::expr::{
    Cmp, CmpOp, IcmpCode, Ipv4HeaderField, Ipv6HeaderField, Lookup, Meta, NetworkHeaderField,
    Payload, RejectionType, TcpHeaderField, TransportHeaderField, UdpHeaderField, Verdict,
};
use nftnl::{Chain, Rule};

/// One rule, described independently of libnftnl so it can be checked without a kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleSpec {
    pub family: Family,
    /// `meta l4proto` match, if any.
    pub protocol: Option<Protocol>,
    /// Destination port range, if any (only with a protocol).
    pub ports: Option<PortRange>,
    /// Which destination port `ports` is compared with.
    pub port_field: PortField,
    pub verdict: RuleVerdict,
}

/// Which destination port a port rule compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortField {
    /// The transport header's, as the packet is now (after any DNAT).
    Packet,
    /// The one the connection was opened to, before any DNAT (`ct original proto-dst`).
    Original,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleVerdict {
    Drop,
    TcpReset,
    PortUnreachable,
}

/// The rules one jail needs in `chain`, for both families. Empty for `Ports::Only` without
/// protocols or ports; the caller refuses that configuration.
pub fn jail_rules(ports: &Ports, blocktype: BlockType, chain: BaseChain) -> Vec<RuleSpec> {
    let port_fields: &[PortField] = match chain {
        BaseChain::Input => &[PortField::Packet],
        BaseChain::Forward => &[PortField::Packet, PortField::Original],
    };
    let mut out = Vec::new();
    for family in [Family::V4, Family::V6] {
        let spec = |protocol: Option<Protocol>, ports: Option<PortRange>, port_field: PortField| {
            let verdict = match (blocktype, protocol) {
                (BlockType::Drop, _) => RuleVerdict::Drop,
                (BlockType::Reject, Some(Protocol::Tcp)) => RuleVerdict::TcpReset,
                (BlockType::Reject, _) => RuleVerdict::PortUnreachable,
            };
            RuleSpec {
                family,
                protocol,
                ports,
                port_field,
                verdict,
            }
        };
        match ports {
            Ports::All => {
                if blocktype == BlockType::Reject {
                    // A reset answers TCP better than ICMP does; everything else gets ICMP.
                    out.push(spec(Some(Protocol::Tcp), None, PortField::Packet));
                }
                out.push(spec(None, None, PortField::Packet));
            }
            Ports::Only { protocols, ports } => {
                for &protocol in protocols {
                    for &range in ports {
                        for &field in port_fields {
                            out.push(spec(Some(protocol), Some(range), field));
                        }
                    }
                }
            }
        }
    }
    out
}

fn l4proto(protocol: Protocol) -> u8 {
    match protocol {
        Protocol::Tcp => libc::IPPROTO_TCP as u8,
        Protocol::Udp => libc::IPPROTO_UDP as u8,
    }
}

/// Turns a [`RuleSpec`] into a rule of `chain` matching addresses in `set`.
pub fn build<'c, K>(
    chain: &'c Chain<'_>,
    set: &nftnl::set::Set<'_, K>,
    spec: &RuleSpec,
) -> Rule<'c> {
    let mut rule = Rule::new(chain);
    let nfproto = match spec.family {
        Family::V4 => libc::NFPROTO_IPV4 as u8,
        Family::V6 => libc::NFPROTO_IPV6 as u8,
    };
    rule.add_expr(&Meta::NfProto);
    rule.add_expr(&Cmp::new(CmpOp::Eq, nfproto));
    let saddr = match spec.family {
        Family::V4 => NetworkHeaderField::Ipv4(Ipv4HeaderField::Saddr),
        Family::V6 => NetworkHeaderField::Ipv6(Ipv6HeaderField::Saddr),
    };
    rule.add_expr(&Payload::Network(saddr));
    rule.add_expr(&Lookup::new(set));
    if let Some(protocol) = spec.protocol {
        rule.add_expr(&Meta::L4Proto);
        rule.add_expr(&Cmp::new(CmpOp::Eq, l4proto(protocol)));
        if let Some(range) = spec.ports {
            match spec.port_field {
                PortField::Packet => {
                    let dport = match protocol {
                        Protocol::Tcp => TransportHeaderField::Tcp(TcpHeaderField::Dport),
                        Protocol::Udp => TransportHeaderField::Udp(UdpHeaderField::Dport),
                    };
                    rule.add_expr(&Payload::Transport(dport));
                }
                PortField::Original => rule.add_expr(&OriginalDestinationPort),
            }
            let first = range.first.to_be_bytes();
            let last = range.last.to_be_bytes();
            if range.first == range.last {
                rule.add_expr(&Cmp::new(CmpOp::Eq, &first[..]));
            } else {
                rule.add_expr(&Cmp::new(CmpOp::Gte, &first[..]));
                rule.add_expr(&Cmp::new(CmpOp::Lte, &last[..]));
            }
        }
    }
    let verdict = match spec.verdict {
        RuleVerdict::Drop => Verdict::Drop,
        RuleVerdict::TcpReset => Verdict::Reject(RejectionType::TcpRst),
        RuleVerdict::PortUnreachable => Verdict::Reject(RejectionType::Icmp(IcmpCode::PortUnreach)),
    };
    rule.add_expr(&verdict);
    rule
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(first: u16, last: u16) -> PortRange {
        PortRange { first, last }
    }

    #[test]
    fn all_ports_drop_is_one_rule_per_family() {
        let rules = jail_rules(&Ports::All, BlockType::Drop, BaseChain::Input);
        assert_eq!(rules.len(), 2);
        // Without ports there is nothing DNAT could change: the same in forward.
        assert_eq!(
            jail_rules(&Ports::All, BlockType::Drop, BaseChain::Forward),
            rules
        );
        assert!(rules
            .iter()
            .all(|r| r.protocol.is_none() && r.verdict == RuleVerdict::Drop));
        assert_eq!(rules[0].family, Family::V4);
        assert_eq!(rules[1].family, Family::V6);
    }

    #[test]
    fn all_ports_reject_resets_tcp_first() {
        let rules = jail_rules(&Ports::All, BlockType::Reject, BaseChain::Input);
        let v4: Vec<_> = rules.iter().filter(|r| r.family == Family::V4).collect();
        assert_eq!(v4.len(), 2);
        assert_eq!(
            (v4[0].protocol, v4[0].verdict),
            (Some(Protocol::Tcp), RuleVerdict::TcpReset)
        );
        assert_eq!(
            (v4[1].protocol, v4[1].verdict),
            (None, RuleVerdict::PortUnreachable)
        );
    }

    #[test]
    fn ports_multiply_by_protocol_and_range() {
        let ports = Ports::Only {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            ports: vec![range(22, 22), range(8000, 8080)],
        };
        let rules = jail_rules(&ports, BlockType::Reject, BaseChain::Input);
        assert_eq!(rules.len(), 8);
        assert!(rules.iter().all(|r| r.port_field == PortField::Packet));
        let udp = rules
            .iter()
            .find(|r| r.protocol == Some(Protocol::Udp) && r.ports == Some(range(8000, 8080)))
            .unwrap();
        assert_eq!(udp.verdict, RuleVerdict::PortUnreachable);
        let empty = Ports::Only {
            protocols: vec![],
            ports: vec![range(22, 22)],
        };
        assert!(jail_rules(&empty, BlockType::Drop, BaseChain::Input).is_empty());
        assert!(jail_rules(&empty, BlockType::Drop, BaseChain::Forward).is_empty());
    }

    #[test]
    fn forward_port_rules_match_the_port_before_and_after_dnat() {
        let ports = Ports::Only {
            protocols: vec![Protocol::Tcp],
            ports: vec![range(8080, 8080)],
        };
        let rules = jail_rules(&ports, BlockType::Drop, BaseChain::Forward);
        let fields: Vec<_> = rules.iter().map(|r| (r.family, r.port_field)).collect();
        assert_eq!(
            fields,
            [
                (Family::V4, PortField::Packet),
                (Family::V4, PortField::Original),
                (Family::V6, PortField::Packet),
                (Family::V6, PortField::Original),
            ]
        );
        assert!(rules
            .iter()
            .all(|r| r.ports == Some(range(8080, 8080)) && r.verdict == RuleVerdict::Drop));
    }
}

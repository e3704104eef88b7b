//! The objects banhound owns inside firewalld, as firewalld spells them: ipset names and
//! settings, the rich rules that reference them, the policy that holds those rules, and
//! ipset entries.
//!
//! Everything here is pure so the exact strings can be unit-tested; firewalld compares rich
//! rules as strings when listing them, so ours must match its canonical form exactly or
//! `setup` would add a rule that is already there.

use super::proxies::{IpSetSettings, PolicySettings};
use crate::firewall::{BlockType, Chains, Family, JailRules, Ports};
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use zbus::zvariant::Value;

/// Prefix of every ipset banhound creates; anything else in firewalld is not ours.
pub(super) const IPSET_PREFIX: &str = "banhound-";
/// firewalld (like the kernel's ipset) limits set names to 32 characters.
const IPSET_MAX_NAME_LEN: usize = 32;

impl Family {
    /// The `family` option of firewalld.ipset(5).
    fn ipset_family(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }
}

/// Why a jail cannot be represented in firewalld.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JailNameError {
    #[error(
        "jail name {0:?} is too long for firewalld: ipset names are limited to \
         {IPSET_MAX_NAME_LEN} characters, so jail names to {max} with the firewalld backend",
        max = max_jail_name_len()
    )]
    TooLong(String),
    #[error(
        "jail name {0:?} cannot name a firewalld ipset: use letters, digits, '_', '-' and '.'"
    )]
    BadCharacters(String),
}

fn max_jail_name_len() -> usize {
    IPSET_MAX_NAME_LEN - IPSET_PREFIX.len() - Family::V4.suffix().len()
}

/// Checks that `jail` can be embedded in ipset names and, quoted, in rich rules. The
/// character set is what keeps a jail name from breaking out of the rich rule's quotes.
pub(super) fn check_jail_name(jail: &str) -> Result<(), JailNameError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if jail.is_empty() || !jail.chars().all(allowed) {
        return Err(JailNameError::BadCharacters(jail.to_owned()));
    }
    if jail.len() > max_jail_name_len() {
        return Err(JailNameError::TooLong(jail.to_owned()));
    }
    Ok(())
}

/// `banhound-<jail>-v4` / `-v6`.
pub(super) fn ipset_name(jail: &str, family: Family) -> String {
    format!("{IPSET_PREFIX}{jail}{}", family.suffix())
}

/// The jail and family of one of our ipsets, `None` for anyone else's.
pub(super) fn parse_ipset_name(name: &str) -> Option<(&str, Family)> {
    let rest = name.strip_prefix(IPSET_PREFIX)?;
    let (jail, family) = if let Some(jail) = rest.strip_suffix(Family::V4.suffix()) {
        (jail, Family::V4)
    } else {
        (rest.strip_suffix(Family::V6.suffix())?, Family::V6)
    };
    check_jail_name(jail).ok()?;
    Some((jail, family))
}

/// Our ipset definition. `hash:net` holds hosts and prefixes alike (with firewalld's
/// nftables backend every ipset is an interval set anyway). Deliberately no `timeout`
/// option: firewalld refuses to list or remove entries of such sets, and the daemon
/// schedules unbans itself.
pub(super) fn ipset_settings(jail: &str, family: Family) -> IpSetSettings {
    let options = HashMap::from([("family".to_owned(), family.ipset_family().to_owned())]);
    (
        String::new(),
        ipset_name(jail, family),
        format!("banhound: addresses banned by jail {jail}"),
        "hash:net".to_owned(),
        options,
        Vec::new(),
    )
}

/// Whether a permanent ipset still has the type and options we need (its entries and
/// description do not matter).
pub(super) fn ipset_settings_match(found: &IpSetSettings, wanted: &IpSetSettings) -> bool {
    found.3 == wanted.3 && found.4 == wanted.4
}

/// The firewalld policies (firewalld.policy(5), firewalld 0.9 and later) holding our rich
/// rules. A zone's rules apply only to the interfaces and sources bound to that zone, so
/// rules in one zone let a banned address in through an interface of any other; a policy
/// from every zone applies whatever zone an interface is in or is moved to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum OurPolicy {
    /// `banhound`: ingress `ANY`, egress `HOST`: traffic from any zone to this host's own
    /// services, as the nftables backend's `input` hook (firewalld puts it in its
    /// filter_INPUT).
    Input,
    /// `banhound-forward`: ingress `ANY`, egress `ANY`: traffic routed through this host
    /// between any zones, as the nftables backend's `forward` hook (firewalld puts it in its
    /// filter_FORWARD, which runs after DNAT: the hosts behind a gateway, a Docker host's
    /// published ports). Present only while a jail bans forwarded traffic.
    Forward,
}

impl OurPolicy {
    pub const ALL: [OurPolicy; 2] = [OurPolicy::Input, OurPolicy::Forward];

    /// Its name in firewalld (at most 18 characters, firewalld's limit).
    pub fn name(self) -> &'static str {
        match self {
            OurPolicy::Input => "banhound",
            OurPolicy::Forward => "banhound-forward",
        }
    }

    fn egress_zone(self) -> &'static str {
        match self {
            OurPolicy::Input => "HOST",
            OurPolicy::Forward => "ANY",
        }
    }

    /// Whether a jail banning on `chains` has rules in this policy.
    pub fn used_by(self, chains: Chains) -> bool {
        match self {
            OurPolicy::Input => chains.input,
            OurPolicy::Forward => chains.forward,
        }
    }
}

const POLICY_INGRESS: &str = "ANY";
/// Negative: before the rules of every zone (and an accepting zone target such as
/// `trusted`'s), and before other policies of a higher priority.
const POLICY_PRIORITY: i32 = -30000;
/// Traffic our rules do not drop goes on to the zones' rules.
const POLICY_TARGET: &str = "CONTINUE";

/// The parts of our policy banhound sets and checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct PolicyShape {
    pub target: String,
    pub priority: i32,
    pub ingress_zones: BTreeSet<String>,
    pub egress_zones: BTreeSet<String>,
    pub rich_rules: BTreeSet<String>,
}

impl PolicyShape {
    /// Our policy `policy` holding `rich_rules`.
    pub fn wanted(policy: OurPolicy, rich_rules: BTreeSet<String>) -> PolicyShape {
        PolicyShape {
            target: POLICY_TARGET.to_owned(),
            priority: POLICY_PRIORITY,
            ingress_zones: BTreeSet::from([POLICY_INGRESS.to_owned()]),
            egress_zones: BTreeSet::from([policy.egress_zone().to_owned()]),
            rich_rules,
        }
    }

    /// What firewalld holds; a missing or mistyped setting reads as empty (and so differs).
    pub fn from_settings(settings: &PolicySettings) -> PolicyShape {
        let strings = |key: &str| -> BTreeSet<String> {
            settings
                .get(key)
                .and_then(|v| v.try_clone().ok())
                .and_then(|v| Vec::<String>::try_from(v).ok())
                .unwrap_or_default()
                .into_iter()
                .collect()
        };
        PolicyShape {
            target: settings
                .get("target")
                .and_then(|v| <&str>::try_from(&**v).ok())
                .unwrap_or_default()
                .to_owned(),
            priority: settings
                .get("priority")
                .and_then(|v| i32::try_from(v).ok())
                .unwrap_or_default(),
            ingress_zones: strings("ingress_zones"),
            egress_zones: strings("egress_zones"),
            rich_rules: strings("rich_rules"),
        }
    }

    /// The full permanent definition of `policy` (`addPolicy`, `update`).
    pub fn permanent_settings(&self, policy: OurPolicy) -> HashMap<&'static str, Value<'static>> {
        let mut settings = self.runtime_settings();
        settings.insert("short", Value::from(policy.name().to_owned()));
        settings.insert(
            "description",
            Value::from("banhound: drops traffic from banned addresses".to_owned()),
        );
        settings.insert("target", Value::from(self.target.clone()));
        settings.insert("priority", Value::from(self.priority));
        settings
    }

    /// What can be changed at runtime (`setPolicySettings` refuses target and priority).
    pub fn runtime_settings(&self) -> HashMap<&'static str, Value<'static>> {
        let list = |set: &BTreeSet<String>| Value::from(set.iter().cloned().collect::<Vec<_>>());
        HashMap::from([
            ("ingress_zones", list(&self.ingress_zones)),
            ("egress_zones", list(&self.egress_zones)),
            ("rich_rules", list(&self.rich_rules)),
        ])
    }

    /// What differs from `found`, for the log: `ingress zones`, `rich rules`, ...
    pub fn differences(&self, found: &PolicyShape) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.target != found.target {
            out.push("target");
        }
        if self.priority != found.priority {
            out.push("priority");
        }
        if self.ingress_zones != found.ingress_zones {
            out.push("ingress zones");
        }
        if self.egress_zones != found.egress_zones {
            out.push("egress zones");
        }
        if self.rich_rules != found.rich_rules {
            out.push("rich rules");
        }
        out
    }

    /// Like [`PolicyShape::differences`], for what runtime settings can repair.
    pub fn runtime_differences(&self, found: &PolicyShape) -> Vec<&'static str> {
        self.differences(found)
            .into_iter()
            .filter(|d| !matches!(*d, "target" | "priority"))
            .collect()
    }
}

/// Whether a rich rule (in firewalld's canonical spelling) is one of ours.
pub(super) fn is_our_rich_rule(rule: &str) -> bool {
    rule.contains(&format!("source ipset=\"{IPSET_PREFIX}"))
}

/// The rich rules that make one jail's ipset block traffic, in firewalld's canonical form
/// (as `getRichRules` returns them). A rich rule holds one port element with one protocol,
/// so `Ports::Only` becomes one rule per protocol and range.
pub(super) fn rich_rules(jail: &JailRules, family: Family) -> Vec<String> {
    let source = format!("rule source ipset=\"{}\"", ipset_name(&jail.jail, family));
    let action = match jail.blocktype {
        BlockType::Drop => "drop",
        BlockType::Reject => "reject",
    };
    match &jail.ports {
        Ports::All => vec![format!("{source} {action}")],
        Ports::Only { protocols, ports } => protocols
            .iter()
            .flat_map(|protocol| {
                let source = &source;
                ports.iter().map(move |range| {
                    format!(
                        "{source} port port=\"{range}\" protocol=\"{}\" {action}",
                        protocol.as_str()
                    )
                })
            })
            .collect(),
    }
}

/// How an entry is written into a `hash:net` set: a bare address for a host (what
/// firewalld itself returns for those), `address/prefix` for a network.
pub(super) fn format_entry(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.trunc().to_string()
    }
}

/// Reads an entry back from firewalld (either spelling of [`format_entry`]).
pub(super) fn parse_entry(entry: &str) -> Option<IpNet> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Some(net.trunc());
    }
    entry.parse::<IpAddr>().ok().map(IpNet::from)
}

/// The entries to hand to firewalld for a set of bans. firewalld rejects entries that
/// overlap (a /64 and an address inside it), so a ban inside a banned network is left out:
/// the network already blocks it. `bans` must hold truncated networks, as the backend keeps
/// them; then every network sorts directly before the networks it contains.
pub(super) fn collapsed_entries(bans: &BTreeSet<IpNet>) -> Vec<String> {
    let mut kept: Vec<&IpNet> = Vec::with_capacity(bans.len());
    for net in bans {
        match kept.last() {
            Some(outer) if outer.contains(net) => {}
            _ => kept.push(net),
        }
    }
    kept.into_iter().map(format_entry).collect()
}

/// Whether `net` overlaps (contains or lies inside) any ban other than itself.
pub(super) fn overlaps_other(net: &IpNet, bans: &BTreeSet<IpNet>) -> bool {
    bans.iter()
        .any(|other| other != net && (other.contains(net) || net.contains(other)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{PortRange, Protocol};
    use zbus::zvariant::OwnedValue;

    fn net(s: &str) -> IpNet {
        s.parse::<IpNet>().unwrap().trunc()
    }

    fn jail(ports: Ports, blocktype: BlockType) -> JailRules {
        JailRules {
            jail: "sshd".into(),
            ports,
            blocktype,
            prefix_bans: false,
            chains: crate::firewall::Chains::INPUT,
        }
    }

    #[test]
    fn names_round_trip_and_reject_foreign_sets() {
        assert_eq!(ipset_name("sshd", Family::V4), "banhound-sshd-v4");
        assert_eq!(
            parse_ipset_name("banhound-sshd-v6"),
            Some(("sshd", Family::V6))
        );
        assert_eq!(
            parse_ipset_name("banhound-nginx-http-v4"),
            Some(("nginx-http", Family::V4))
        );
        assert_eq!(parse_ipset_name("blocklist-v4"), None);
        assert_eq!(parse_ipset_name("banhound-sshd"), None);
        assert_eq!(parse_ipset_name("banhound--v4"), None);
    }

    #[test]
    fn jail_names_must_fit_an_ipset_name_and_stay_inside_quotes() {
        assert_eq!(check_jail_name("nginx-limit.req_2"), Ok(()));
        let longest = "a".repeat(20);
        assert_eq!(check_jail_name(&longest), Ok(()));
        assert_eq!(ipset_name(&longest, Family::V6).len(), 32);
        assert!(matches!(
            check_jail_name(&"a".repeat(21)),
            Err(JailNameError::TooLong(_))
        ));
        assert!(matches!(
            check_jail_name("x\" accept"),
            Err(JailNameError::BadCharacters(_))
        ));
        assert!(matches!(
            check_jail_name(""),
            Err(JailNameError::BadCharacters(_))
        ));
    }

    #[test]
    fn rich_rules_in_canonical_form() {
        let all = jail(Ports::All, BlockType::Drop);
        assert_eq!(
            rich_rules(&all, Family::V6),
            vec![r#"rule source ipset="banhound-sshd-v6" drop"#]
        );
        let some = jail(
            Ports::Only {
                protocols: vec![Protocol::Tcp, Protocol::Udp],
                ports: vec![
                    PortRange {
                        first: 22,
                        last: 22,
                    },
                    PortRange {
                        first: 1000,
                        last: 2000,
                    },
                ],
            },
            BlockType::Reject,
        );
        assert_eq!(
            rich_rules(&some, Family::V4),
            vec![
                r#"rule source ipset="banhound-sshd-v4" port port="22" protocol="tcp" reject"#,
                r#"rule source ipset="banhound-sshd-v4" port port="1000-2000" protocol="tcp" reject"#,
                r#"rule source ipset="banhound-sshd-v4" port port="22" protocol="udp" reject"#,
                r#"rule source ipset="banhound-sshd-v4" port port="1000-2000" protocol="udp" reject"#,
            ]
        );
        assert!(rich_rules(&some, Family::V4)
            .iter()
            .all(|r| is_our_rich_rule(r)));
        assert!(!is_our_rich_rule(r#"rule source ipset="blocklist" drop"#));
    }

    #[test]
    fn policy_settings_round_trip_and_differences_are_named() {
        let rules = BTreeSet::from([r#"rule source ipset="banhound-sshd-v4" drop"#.to_owned()]);
        let wanted = PolicyShape::wanted(OurPolicy::Input, rules.clone());
        let settings: PolicySettings = wanted
            .permanent_settings(OurPolicy::Input)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), OwnedValue::try_from(v).unwrap()))
            .collect();
        let read = PolicyShape::from_settings(&settings);
        assert_eq!(read, wanted);
        assert!(wanted.differences(&read).is_empty());

        let mut moved = read.clone();
        moved.ingress_zones = BTreeSet::from(["public".to_owned()]);
        moved.priority = -1;
        moved.rich_rules.clear();
        assert_eq!(
            wanted.differences(&moved),
            ["priority", "ingress zones", "rich rules"]
        );
        assert_eq!(
            wanted.runtime_differences(&moved),
            ["ingress zones", "rich rules"]
        );
        // The forward policy differs from the input one only in its egress zone.
        let forward = PolicyShape::wanted(OurPolicy::Forward, rules);
        assert_eq!(forward.differences(&wanted), ["egress zones"]);
        assert_eq!(forward.egress_zones, BTreeSet::from(["ANY".to_owned()]));
        // Nothing readable: everything differs rather than anything passing for ours.
        let empty = PolicyShape::from_settings(&PolicySettings::new());
        assert_eq!(wanted.differences(&empty).len(), 5);
    }

    #[test]
    fn entries_round_trip() {
        for text in [
            "192.0.2.7",
            "2001:db8::5",
            "198.51.100.0/24",
            "2001:db8:1:2::/64",
        ] {
            assert_eq!(format_entry(&parse_entry(text).unwrap()), text);
        }
        assert_eq!(parse_entry("192.0.2.7/32"), Some(net("192.0.2.7/32")));
        assert_eq!(parse_entry("bogus"), None);
    }

    #[test]
    fn collapse_drops_bans_inside_banned_networks() {
        let bans: BTreeSet<IpNet> = [
            "2001:db8:1:2::99/128",
            "2001:db8:1:2::/64",
            "2001:db8:1:3::1/128",
            "192.0.2.0/24",
            "192.0.2.200/32",
            "192.0.3.1/32",
            "10.0.0.0/8",
            "10.255.0.1/32",
        ]
        .into_iter()
        .map(net)
        .collect();
        assert_eq!(
            collapsed_entries(&bans),
            vec![
                "10.0.0.0/8",
                "192.0.2.0/24",
                "192.0.3.1",
                "2001:db8:1:2::/64",
                "2001:db8:1:3::1"
            ]
        );
        assert!(overlaps_other(&net("192.0.2.5/32"), &bans));
        assert!(!overlaps_other(&net("192.0.3.1/32"), &bans));
    }
}

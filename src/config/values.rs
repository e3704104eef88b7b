//! Typed configuration values that validate while they are parsed.
//!
//! Validating inside `Deserialize` means the TOML parser attaches the value's position to
//! the error for free, so "bantime = \"10 minutes please\"" is reported at its line.

use crate::engine::time::{parse_duration, BanTime};
use crate::firewall::{Chains, PortRange, Ports, Protocol};
use ipnet::IpNet;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// A duration: "10m", "1h30m", or an integer number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationValue(pub Duration);

impl<'de> Deserialize<'de> for DurationValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DurationValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"10m\", \"1h\", \"1w\" or a number of seconds")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DurationValue, E> {
                u64::try_from(v)
                    .map(|s| DurationValue(Duration::from_secs(s)))
                    .map_err(|_| E::custom(format!("negative duration {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DurationValue, E> {
                parse_duration(v).map(DurationValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A period that can be switched off: a duration, or `"off"` / `"0"` / `0` for none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntervalValue(pub Option<Duration>);

impl<'de> Deserialize<'de> for IntervalValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntervalValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or \"5m\", or \"off\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntervalValue, E> {
                DurationValue::deserialize(de::value::I64Deserializer::<E>::new(v))
                    .map(|d| IntervalValue((!d.0.is_zero()).then_some(d.0)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntervalValue, E> {
                if v.trim() == "off" {
                    return Ok(IntervalValue(None));
                }
                parse_duration(v)
                    .map(|d| IntervalValue((!d.is_zero()).then_some(d)))
                    .map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// A ban time: a duration, or "permanent" / -1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BanTimeValue(pub BanTime);

impl<'de> Deserialize<'de> for BanTimeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BanTimeValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a ban time such as \"10m\", \"1d\", \"permanent\" or -1")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<BanTimeValue, E> {
                match v {
                    -1 => Ok(BanTimeValue(BanTime::Permanent)),
                    v if v >= 0 => Ok(BanTimeValue(BanTime::For(Duration::from_secs(v as u64)))),
                    v => Err(E::custom(format!(
                        "invalid ban time {v}: use a duration, or -1 for permanent"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BanTimeValue, E> {
                BanTime::parse(v).map(BanTimeValue).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses an ignoreip entry: an address or a network in CIDR notation.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let t = s.trim();
    if let Ok(net) = t.parse::<IpNet>() {
        return Ok(crate::engine::address::normalize_net(net));
    }
    if let Ok(ip) = t.parse::<IpAddr>() {
        return Ok(IpNet::from(crate::engine::address::normalize(ip)));
    }
    Err(format!(
        "invalid address or network {s:?}: expected e.g. \"192.0.2.7\", \"198.51.100.0/24\" or \"2001:db8::/32\""
    ))
}

/// `port`: "all", a service name, a number, a range ("8000-8080" or "8000:8080"), a
/// comma-separated list of those, or an array of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortsValue {
    All,
    List(Vec<PortRange>),
}

impl<'de> Deserialize<'de> for PortsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortsValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\", a port, a service name, a range or a list of those")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortsValue, E> {
                port_number(&v.to_string())
                    .map(|p| PortsValue::List(vec![PortRange { first: p, last: p }]))
                    .map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortsValue, E> {
                parse_ports(v.split(',')).map_err(E::custom)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<PortsValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<PortItem>()? {
                    items.push(item.0);
                }
                parse_ports(items.iter().map(String::as_str)).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// One element of a port array: a number or a string.
struct PortItem(String);

impl<'de> Deserialize<'de> for PortItem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortItem;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number or name")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortItem, E> {
                Ok(PortItem(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortItem, E> {
                Ok(PortItem(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn parse_ports<'a>(items: impl Iterator<Item = &'a str>) -> Result<PortsValue, String> {
    let mut ranges = Vec::new();
    for item in items.map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            return Ok(PortsValue::All);
        }
        let range = match item.split_once(['-', ':']) {
            Some((a, b)) if a.chars().all(|c| c.is_ascii_digit()) => {
                let (first, last) = (port_number(a)?, port_number(b)?);
                if first > last {
                    return Err(format!("port range {item:?} is backwards"));
                }
                PortRange { first, last }
            }
            _ => {
                let p = port_number(item)?;
                PortRange { first: p, last: p }
            }
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        return Err("no port given; use \"all\" to block every port".into());
    }
    Ok(PortsValue::List(ranges))
}

fn port_number(s: &str) -> Result<u16, String> {
    if let Ok(n) = s.parse::<u32>() {
        return match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(p),
            _ => Err(format!("port {n} is out of range 1-65535")),
        };
    }
    service_port(s).ok_or_else(|| {
        format!("unknown service name {s:?}: use a port number, or one of {KNOWN_SERVICES}")
    })
}

const KNOWN_SERVICES: &str = "ssh, ftp, ftp-data, ftps, smtp, submission, smtps, submissions, \
pop3, pop3s, imap, imaps, http, https, sieve, dns, mysql, postgresql";

/// Well-known service names (a fixed table, so a configuration means the same on every
/// host, whatever its /etc/services says).
fn service_port(name: &str) -> Option<u16> {
    Some(match name {
        "ftp-data" => 20,
        "ftp" => 21,
        "ssh" => 22,
        "smtp" => 25,
        "dns" | "domain" => 53,
        "http" | "www" => 80,
        "pop3" => 110,
        "imap" | "imap2" => 143,
        "https" => 443,
        "smtps" | "submissions" => 465,
        "submission" => 587,
        "ftps" => 990,
        "imaps" => 993,
        "pop3s" => 995,
        "mysql" => 3306,
        "sieve" => 4190,
        "postgresql" => 5432,
        _ => return None,
    })
}

/// `protocol`: "tcp", "udp", or both ("tcp,udp" / ["tcp", "udp"]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProtocolsValue(pub Vec<Protocol>);

impl<'de> Deserialize<'de> for ProtocolsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        names_or_list(d, "\"tcp\", \"udp\" or both", parse_protocols)
    }
}

/// Deserializes a value written either as one comma-separated string (`"tcp,udp"`) or as a
/// list of strings (`["tcp", "udp"]`), each name handed to `parse`.
fn names_or_list<'de, D: Deserializer<'de>, T>(
    d: D,
    expecting: &'static str,
    parse: fn(&mut dyn Iterator<Item = &str>) -> Result<T, String>,
) -> Result<T, D::Error> {
    struct V<T> {
        expecting: &'static str,
        parse: fn(&mut dyn Iterator<Item = &str>) -> Result<T, String>,
    }
    impl<'de, T> Visitor<'de> for V<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.expecting)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.parse)(&mut v.split(',')).map_err(E::custom)
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<T, A::Error> {
            let mut items = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                items.push(item);
            }
            (self.parse)(&mut items.iter().map(String::as_str)).map_err(de::Error::custom)
        }
    }
    d.deserialize_any(V { expecting, parse })
}

fn parse_protocols(items: &mut dyn Iterator<Item = &str>) -> Result<ProtocolsValue, String> {
    let mut out = Vec::new();
    for item in items.map(str::trim) {
        let p = match item {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            other => {
                return Err(format!(
                    "unknown protocol {other:?}: expected \"tcp\" or \"udp\""
                ))
            }
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(ProtocolsValue(out))
}

/// `chains`: where a jail's bans apply, "input", "forward" or both ("input,forward" /
/// ["input", "forward"]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainsValue(pub Chains);

impl<'de> Deserialize<'de> for ChainsValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        names_or_list(d, "\"input\", \"forward\" or both", parse_chains)
    }
}

fn parse_chains(items: &mut dyn Iterator<Item = &str>) -> Result<ChainsValue, String> {
    let mut chains = Chains {
        input: false,
        forward: false,
    };
    for item in items.map(str::trim) {
        match item {
            "input" => chains.input = true,
            "forward" => chains.forward = true,
            other => {
                return Err(format!(
                    "unknown chain {other:?}: expected \"input\" (traffic to this host) or \"forward\" (traffic routed through it)"
                ))
            }
        }
    }
    if !chains.input && !chains.forward {
        return Err(
            "no chain listed: a jail's bans must apply to \"input\", \"forward\" or both".into(),
        );
    }
    Ok(ChainsValue(chains))
}

/// Combines `port` and `protocol` into what the firewall blocks.
pub fn blocked_ports(ports: &PortsValue, protocols: &[Protocol]) -> Ports {
    match ports {
        PortsValue::All => Ports::All,
        PortsValue::List(list) => Ports::Only {
            protocols: protocols.to_vec(),
            ports: list.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Debug)]
    struct T {
        port: Option<PortsValue>,
        bantime: Option<BanTimeValue>,
        findtime: Option<DurationValue>,
        protocol: Option<ProtocolsValue>,
        chains: Option<ChainsValue>,
    }

    fn parse(s: &str) -> Result<T, String> {
        toml::from_str::<T>(s).map_err(|e| e.message().to_string())
    }

    #[test]
    fn ports() {
        let p = |s| parse(s).unwrap().port.unwrap();
        assert_eq!(
            p("port = 22"),
            PortsValue::List(vec![PortRange {
                first: 22,
                last: 22
            }])
        );
        assert_eq!(
            p("port = \"ssh,8000-8080\""),
            PortsValue::List(vec![
                PortRange {
                    first: 22,
                    last: 22
                },
                PortRange {
                    first: 8000,
                    last: 8080
                }
            ])
        );
        assert_eq!(
            p("port = [\"https\", 2222, \"10:20\"]"),
            PortsValue::List(vec![
                PortRange {
                    first: 443,
                    last: 443
                },
                PortRange {
                    first: 2222,
                    last: 2222
                },
                PortRange {
                    first: 10,
                    last: 20
                }
            ])
        );
        assert_eq!(p("port = \"all\""), PortsValue::All);
        assert!(parse("port = 70000").unwrap_err().contains("out of range"));
        assert!(parse("port = \"sssh\"")
            .unwrap_err()
            .contains("unknown service"));
        assert!(parse("port = \"20-10\"").unwrap_err().contains("backwards"));
    }

    #[test]
    fn times_and_nets() {
        let t = parse("bantime = -1\nfindtime = \"1h\"").unwrap();
        assert_eq!(t.bantime, Some(BanTimeValue(BanTime::Permanent)));
        assert_eq!(t.findtime, Some(DurationValue(Duration::from_secs(3600))));
        assert_eq!(
            parse_net("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(
            parse_net("::ffff:192.0.2.1").unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert!(parse_net("10.0.0.0/33")
            .unwrap_err()
            .contains("invalid address"));
        assert!(parse("bantime = -5")
            .unwrap_err()
            .contains("invalid ban time"));
        assert!(parse("findtime = \"10q\"")
            .unwrap_err()
            .contains("unknown unit"));
    }

    #[test]
    fn protocols() {
        let p = |s| parse(s).unwrap().protocol.unwrap().0;
        assert_eq!(p("protocol = \"tcp\""), vec![Protocol::Tcp]);
        assert_eq!(
            p("protocol = [\"udp\", \"tcp\"]"),
            vec![Protocol::Udp, Protocol::Tcp]
        );
        assert!(parse("protocol = \"icmp\"")
            .unwrap_err()
            .contains("unknown protocol"));
    }

    #[test]
    fn chains() {
        let c = |s| parse(s).unwrap().chains.unwrap().0;
        assert_eq!(c("chains = [\"input\"]"), Chains::INPUT);
        let both = Chains {
            input: true,
            forward: true,
        };
        assert_eq!(c("chains = [\"forward\", \"input\", \"forward\"]"), both);
        assert_eq!(c("chains = \"input, forward\""), both);
        let forward = c("chains = \"forward\"");
        assert!(forward.forward && !forward.input);
        assert_eq!(forward.names(), ["forward"]);
        // Netfilter's hook names only, lower case, as everywhere else in the configuration.
        for bad in ["chains = [\"FORWARD\"]", "chains = [\"prerouting\"]"] {
            assert!(parse(bad).unwrap_err().contains("unknown chain"), "{bad}");
        }
        assert!(parse("chains = []")
            .unwrap_err()
            .contains("no chain listed"));
    }
}

//! The control interface's arguments, from the strings a caller sends to the typed values a
//! [`Request`](super::Request) carries.
//!
//! Every caller of the bus can send any string here (the bus policy only decides who may call
//! which method, not what they pass), so these are pure functions that answer a
//! [`ControlError`] for anything they do not accept, kept apart from the service so they can
//! be tested and fuzzed without a bus (fuzz/fuzz_targets/dbus_args.rs).
//!
//! An address argument is the address and nothing else: whitespace or control characters
//! around or in it (`"1.2.3.4 "`, `"203.0.113.9\n"`) and a zone on an IPv4 address
//! (`1.2.3.4%veth-a`) are refused, not trimmed away; a log line may be lenient, a caller
//! saying exactly what to ban should be exact. Addresses that are never banned (loopback,
//! multicast, link-local, …) are refused by the owner, by the one check the logs go through
//! too ([`crate::engine::address::IgnoreList::check`]).

use super::ControlError;
use crate::engine::address::{normalize_net, parse_address};
use crate::engine::time::BanTime;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr};

const NOT_AN_ADDRESS: &str = "expected an IPv4 or IPv6 address";

/// The text of an address argument, if it holds nothing but an address or network (with
/// an optional IPv6 zone, dropped by the parser: a ban applies on every interface anyway).
fn exact(text: &str) -> Result<&str, ControlError> {
    let refuse = |why| Err(ControlError::InvalidAddress(text.to_string(), why));
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("whitespace or control characters are not part of an address");
    }
    if let Some((address, _zone)) = text.split_once('%') {
        let address = address.strip_prefix('[').unwrap_or(address);
        if address.parse::<Ipv6Addr>().is_err() {
            return refuse("an IPv4 address has no zone (%…); only IPv6 addresses have one");
        }
    }
    Ok(text)
}

/// An address for Unban and IsBanned. A network as `GetBans` lists it ("2001:db8::/64")
/// names its first address, which lies in the same ban target.
pub fn address(text: &str) -> Result<IpAddr, ControlError> {
    let text = exact(text)?;
    parse_address(text)
        .or_else(|| {
            text.trim()
                .parse::<IpNet>()
                .ok()
                .map(|n| normalize_net(n).network())
        })
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string(), NOT_AN_ADDRESS))
}

/// What Ban is asked to block: an address (as a host network), or a network kept whole, so
/// the owner can refuse one wider than a ban target instead of banning its first address.
pub fn ban_address(text: &str) -> Result<IpNet, ControlError> {
    let text = exact(text)?;
    parse_address(text)
        .map(IpNet::from)
        .or_else(|| text.parse::<IpNet>().ok().map(normalize_net))
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string(), NOT_AN_ADDRESS))
}

/// A network for the ignore lists (an address is its host network), normalised as ban
/// targets are, so an entry in the IPv4-mapped form protects its IPv4 addresses.
pub fn network(text: &str) -> Result<IpNet, ControlError> {
    let text = exact(text)?;
    text.parse::<IpNet>()
        .ok()
        .map(normalize_net)
        .or_else(|| parse_address(text).map(IpNet::from))
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string(), NOT_AN_ADDRESS))
}

/// A ban duration; "" is the jail's own ban time. A zero duration is refused: the ban would
/// end as it starts, and the caller most likely meant something else ("permanent"?).
pub fn duration(text: &str) -> Result<Option<BanTime>, ControlError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match BanTime::parse(text) {
        Ok(BanTime::For(d)) if d.is_zero() => Err(ControlError::InvalidDuration(format!(
            "{text:?} is no time: a ban that long ends at once (\"permanent\" never ends; \"\" is the jail's bantime)"
        ))),
        Ok(bantime) => Ok(Some(bantime)),
        Err(e) => Err(ControlError::InvalidDuration(e.to_string())),
    }
}

/// A jail argument where "" means every jail.
pub fn optional_jail(jail: &str) -> Option<String> {
    (!jail.is_empty()).then(|| jail.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_input_is_parsed_before_the_owner_sees_it() {
        assert_eq!(
            address("::ffff:192.0.2.1").unwrap(),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address("2001:db8::/64").unwrap(),
            "2001:db8::".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            address("::ffff:192.0.2.0/120").unwrap(),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert!(matches!(
            address("300.1.1.1"),
            Err(ControlError::InvalidAddress(..))
        ));
        assert_eq!(
            network("192.0.2.7/24").unwrap(),
            "192.0.2.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            network("::ffff:192.0.2.7/120").unwrap(),
            "192.0.2.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(duration("").unwrap(), None);
        assert_eq!(duration("permanent").unwrap(), Some(BanTime::Permanent));
        assert!(matches!(
            duration("99999w"),
            Err(ControlError::InvalidDuration(_))
        ));
        for zero in ["0", "0s", "0h0m", "-0"] {
            assert!(
                matches!(duration(zero), Err(ControlError::InvalidDuration(_))),
                "{zero}"
            );
        }
        assert_eq!(optional_jail(""), None);
        assert_eq!(optional_jail("sshd").as_deref(), Some("sshd"));
    }

    #[test]
    fn ban_keeps_networks_whole() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(ban_address("198.51.100.4").unwrap(), net("198.51.100.4/32"));
        assert_eq!(
            ban_address("[2001:db8::1]").unwrap(),
            net("2001:db8::1/128")
        );
        assert_eq!(ban_address("0.0.0.0/0").unwrap(), net("0.0.0.0/0"));
        assert_eq!(
            ban_address("::ffff:127.0.0.1").unwrap(),
            net("127.0.0.1/32")
        );
        assert_eq!(ban_address("::ffff:0:0/96").unwrap(), net("0.0.0.0/0"));
        assert_eq!(ban_address("10.1.2.3/8").unwrap(), net("10.0.0.0/8"));
        assert!(matches!(
            ban_address("10.0.0.0/33"),
            Err(ControlError::InvalidAddress(..))
        ));
    }

    #[test]
    fn an_address_argument_is_the_address_and_nothing_else() {
        let refused = |text: &str| match ban_address(text) {
            Err(ControlError::InvalidAddress(t, why)) => {
                assert_eq!(t, text);
                why
            }
            other => panic!("{text:?}: {other:?}"),
        };
        for text in [
            "1.2.3.4 ",
            " 1.2.3.4",
            "203.0.113.9\n",
            "1.2.3.4\0",
            "\u{a0}1.2.3.4",
            "10.0.0.0 /8",
        ] {
            assert!(refused(text).starts_with("whitespace"), "{text:?}");
            assert!(address(text).is_err() && network(text).is_err(), "{text:?}");
        }
        for text in ["1.2.3.4%veth-a", "[1.2.3.4%1]", "::ffff:1.2.3.4x%eth0", "%"] {
            assert!(
                refused(text).starts_with("an IPv4 address has no zone"),
                "{text:?}"
            );
        }
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(ban_address("fe80::1%veth-a").unwrap(), net("fe80::1/128"));
        assert_eq!(ban_address("[fe80::1%2]").unwrap(), net("fe80::1/128"));
        assert_eq!(
            ban_address("::ffff:1.2.3.4%eth0").unwrap(),
            net("1.2.3.4/32")
        );
    }
}

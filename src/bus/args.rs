//! The control interface's arguments, from the strings a caller sends to the typed values a
//! [`Request`](super::Request) carries.
//!
//! Every caller of the bus can send any string here (the bus policy only decides who may call
//! which method, not what they pass), so these are pure functions that answer a
//! [`ControlError`] for anything they do not accept, kept apart from the service so they can
//! be tested and fuzzed without a bus (fuzz/fuzz_targets/dbus_args.rs).

use super::ControlError;
use crate::engine::address::{normalize_net, parse_address};
use crate::engine::time::BanTime;
use ipnet::IpNet;
use std::net::IpAddr;

/// An address for Unban and IsBanned. A network as `GetBans` lists it ("2001:db8::/64")
/// names its first address, which lies in the same ban target.
pub fn address(text: &str) -> Result<IpAddr, ControlError> {
    parse_address(text)
        .or_else(|| {
            text.trim()
                .parse::<IpNet>()
                .ok()
                .map(|n| normalize_net(n).network())
        })
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string()))
}

/// What Ban is asked to block: an address (as a host network), or a network kept whole, so
/// the owner can refuse one wider than a ban target instead of banning its first address.
pub fn ban_address(text: &str) -> Result<IpNet, ControlError> {
    parse_address(text)
        .map(IpNet::from)
        .or_else(|| text.trim().parse::<IpNet>().ok().map(normalize_net))
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string()))
}

/// A network for the ignore lists (an address is its host network), normalised as ban
/// targets are, so an entry in the IPv4-mapped form protects its IPv4 addresses.
pub fn network(text: &str) -> Result<IpNet, ControlError> {
    text.trim()
        .parse::<IpNet>()
        .ok()
        .map(normalize_net)
        .or_else(|| parse_address(text).map(IpNet::from))
        .ok_or_else(|| ControlError::InvalidAddress(text.to_string()))
}

/// A ban duration; "" is the jail's own ban time.
pub fn duration(text: &str) -> Result<Option<BanTime>, ControlError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    BanTime::parse(text)
        .map(Some)
        .map_err(|e| ControlError::InvalidDuration(e.to_string()))
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
            Err(ControlError::InvalidAddress(_))
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
        assert_eq!(ban_address(" 0.0.0.0/0 ").unwrap(), net("0.0.0.0/0"));
        assert_eq!(
            ban_address("::ffff:127.0.0.1").unwrap(),
            net("127.0.0.1/32")
        );
        assert_eq!(ban_address("::ffff:0:0/96").unwrap(), net("0.0.0.0/0"));
        assert_eq!(ban_address("10.1.2.3/8").unwrap(), net("10.0.0.0/8"));
        assert!(matches!(
            ban_address("10.0.0.0/33"),
            Err(ControlError::InvalidAddress(_))
        ));
    }
}

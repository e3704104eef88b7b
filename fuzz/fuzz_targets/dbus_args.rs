//! The control interface's argument parsing (src/bus/args.rs) and the owner's manual-ban
//! decision (`manual_ban_target`) on arbitrary strings, as any caller of the bus may send
//! them: no panic, and the properties a hostile caller would attack.
//!
//! - A ban that is accepted never blocks loopback, the unspecified address, an ignoreip
//!   network or one of the host's own addresses, whatever the address, network or
//!   IPv4-mapped spelling, and it covers what was asked for.
//! - Parsed addresses and networks are normalised (no IPv4-mapped form left), as ban
//!   targets are, so comparisons with them hold.
//! - Jail object paths are valid D-Bus object paths and distinct for distinct names.
//! - Every error renders as a message.
//!
//! Input layout: up to four strings split at 0xFF bytes (which UTF-8 never contains): a jail
//! name, an address, a duration, and a network added to the ignore list; then the same
//! strings are tried in every role.
#![no_main]

use banhound::bus::{args, jail_path, ControlError};
use banhound::engine::address::{manual_ban_target, IgnoreList};
use ipnet::IpNet;
use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;

/// The host's own addresses in this harness (as with `ignoreself`).
const OWN: [&str; 3] = ["198.51.100.1", "2001:db8:1:2::10", "fe80::1"];
/// ignoreip as configured.
const IGNOREIP: [&str; 2] = ["203.0.113.0/24", "2001:db8:aa::/48"];

fn is_normalised(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => true,
    }
}

fn is_normalised_net(net: &IpNet) -> bool {
    net.trunc() == *net
        && match net {
            IpNet::V6(v6) => v6.prefix_len() < 96 || v6.addr().to_ipv4_mapped().is_none(),
            IpNet::V4(_) => true,
        }
}

fn check_error(e: ControlError) {
    let message = e.to_string();
    assert!(!message.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let parts: Vec<String> = data
        .split(|&b| b == 0xFF)
        .take(4)
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let part = |i: usize| parts.get(i).map_or("", String::as_str);

    // Jail names: any string reaches the bus; each names its own object.
    for name in &parts {
        let path = jail_path(name);
        zbus::zvariant::ObjectPath::try_from(path.as_str())
            .unwrap_or_else(|e| panic!("{name:?} gives the invalid path {path:?}: {e}"));
        for other in &parts {
            assert_eq!(
                path == jail_path(other),
                name == other,
                "{name:?} {other:?}"
            );
        }
        let _ = args::optional_jail(name);
    }

    let mut networks: Vec<IpNet> = IGNOREIP.iter().map(|n| n.parse().unwrap()).collect();
    match args::network(part(3)) {
        Ok(net) => {
            assert!(is_normalised_net(&net), "{:?} gave {net}", part(3));
            networks.push(net);
        }
        Err(e) => check_error(e),
    }
    let own: Vec<IpAddr> = OWN.iter().map(|a| a.parse().unwrap()).collect();
    let ignore = IgnoreList::new(networks.clone(), own.clone());
    let never: Vec<IpNet> = ["127.0.0.0/8", "::1/128", "0.0.0.0/32", "::/128"]
        .iter()
        .map(|n| n.parse().unwrap())
        .chain(networks.iter().copied())
        .chain(own.iter().map(|&a| IpNet::from(a)))
        .collect();

    for text in &parts {
        match args::address(text) {
            Ok(ip) => assert!(is_normalised(ip), "{text:?} gave {ip}"),
            Err(e) => check_error(e),
        }
        match args::duration(text) {
            Ok(_) => {}
            Err(e) => check_error(e),
        }
        let requested = match args::ban_address(text) {
            Ok(net) => net,
            Err(e) => {
                check_error(e);
                continue;
            }
        };
        assert!(is_normalised_net(&requested), "{text:?} gave {requested}");
        for ipv6_prefix in [128, 64, 48, 32] {
            match manual_ban_target(requested, ipv6_prefix, &ignore) {
                Ok(target) => {
                    assert!(
                        target.contains(&requested),
                        "{text:?}: {target} does not cover {requested}"
                    );
                    for kept in &never {
                        assert!(
                            !target.contains(kept) && !kept.contains(&target),
                            "{text:?} (ipv6_prefix {ipv6_prefix}) bans {target}, which covers {kept}"
                        );
                    }
                }
                Err(refusal) => {
                    let e = ControlError::from(refusal);
                    if let ControlError::Ignored { reason, .. } = &e {
                        assert!(!reason.is_empty());
                    }
                    check_error(e);
                }
            }
        }
    }
});

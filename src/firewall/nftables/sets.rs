//! banhound's sets: their names, and how a ban target becomes set elements and back.
//!
//! Names are derived from the jail name reversibly, so `list()` can tell which jail a set
//! belongs to without any state kept outside the kernel (after a restart, the table is the
//! truth). A host set holds one element per address. An interval set (jails with prefix
//! bans) holds a network as the kernel's interval encoding: a start element carrying the
//! timeout, and an `INTERVAL_END` element at the first address past the network (omitted
//! when the network reaches the end of the address space).

use super::shim::{NewElem, RawElem, ELEM_FLAG_INTERVAL_END};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

pub use crate::firewall::Family;

/// The kernel's limit for set names (`NFT_SET_MAXNAMELEN`, including the NUL).
const MAX_SET_NAME: usize = 255;

/// The set of `jail` for one address family: `<jail>-v4` / `<jail>-v6`. Characters other
/// than ASCII letters, digits, `_` and `-` are written as `.xx` (hex of each UTF-8 byte),
/// which keeps common names readable and the mapping reversible. `None` if the result is
/// too long for the kernel.
pub fn set_name(jail: &str, family: Family) -> Option<String> {
    let mut name = String::with_capacity(jail.len() + 3);
    for b in jail.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!(".{b:02x}"));
        }
    }
    name.push_str(family.suffix());
    (!jail.is_empty() && name.len() < MAX_SET_NAME).then_some(name)
}

/// The jail and family of a set named by [`set_name`]; `None` for any other name.
pub fn parse_set_name(name: &str) -> Option<(String, Family)> {
    let (base, family) = if let Some(base) = name.strip_suffix("-v4") {
        (base, Family::V4)
    } else {
        (name.strip_suffix("-v6")?, Family::V6)
    };
    let mut bytes = Vec::with_capacity(base.len());
    let mut rest = base.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'.' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let jail = String::from_utf8(bytes).ok()?;
    // Only names we would produce: this also rejects aliases such as ".61" for "a".
    (set_name(&jail, family).as_deref() == Some(name)).then_some((jail, family))
}

/// The first address after `net`, `None` if `net` reaches the top of its address space.
fn after(net: &IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(n) => u32::from(n.broadcast())
            .checked_add(1)
            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        IpNet::V6(n) => u128::from(n.broadcast())
            .checked_add(1)
            .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
    }
}

/// The elements that hold `target` in a host set (`interval == false`; the target must be a
/// single address) or an interval set.
pub fn encode(target: &IpNet, interval: bool, timeout: Option<Duration>) -> Vec<NewElem> {
    let target = target.trunc();
    let mut elems = vec![NewElem {
        key: target.network(),
        flags: 0,
        timeout,
    }];
    if interval {
        if let Some(end) = after(&target) {
            // The kernel refuses a timeout on an interval end; it goes with its start.
            elems.push(NewElem {
                key: end,
                flags: ELEM_FLAG_INTERVAL_END,
                timeout: None,
            });
        }
    }
    elems
}

fn addr_of(key: &[u8]) -> Option<IpAddr> {
    match key.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(key).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(key).ok()?)),
        _ => None,
    }
}

/// The network covering exactly `[start, end)`, if it is one.
fn network(start: IpAddr, end: Option<IpAddr>) -> Option<IpNet> {
    let (start, end_excl, bits): (u128, u128, u32) = match (start, end) {
        (IpAddr::V4(s), None) => (u32::from(s).into(), 1u128 << 32, 32),
        (IpAddr::V4(s), Some(IpAddr::V4(e))) => (u32::from(s).into(), u32::from(e).into(), 32),
        (IpAddr::V6(s), None) => {
            // [s, 2^128): the size is 2^128 - s, computed without overflow.
            let s = u128::from(s);
            let size = (!s).wrapping_add(1);
            if s == 0 {
                return Some(IpNet::V6(Ipv6Net::new(Ipv6Addr::UNSPECIFIED, 0).ok()?));
            }
            if !size.is_power_of_two() || s % size != 0 {
                return None;
            }
            let prefix = 128 - size.trailing_zeros() as u8;
            return Some(IpNet::V6(Ipv6Net::new(Ipv6Addr::from(s), prefix).ok()?));
        }
        (IpAddr::V6(s), Some(IpAddr::V6(e))) => (u128::from(s), u128::from(e), 128),
        _ => return None,
    };
    let size = end_excl.checked_sub(start)?;
    if size == 0 || !size.is_power_of_two() || start % size != 0 {
        return None;
    }
    let prefix = u8::try_from(bits - size.trailing_zeros()).ok()?;
    match start_addr(start, bits) {
        IpAddr::V4(a) => Ipv4Net::new(a, prefix).ok().map(IpNet::V4),
        IpAddr::V6(a) => Ipv6Net::new(a, prefix).ok().map(IpNet::V6),
    }
}

fn start_addr(value: u128, bits: u32) -> IpAddr {
    if bits == 32 {
        IpAddr::V4(Ipv4Addr::from(value as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(value))
    }
}

/// A ban as read back from a set: the target and its remaining time (`None`: permanent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub target: IpNet,
    pub remaining: Option<Duration>,
}

/// Reassembles bans from the elements of a set. Elements that do not form one of our
/// encodings are returned as errors (by key) rather than guessed at.
pub fn decode(mut elems: Vec<RawElem>, interval: bool) -> (Vec<Decoded>, Vec<Vec<u8>>) {
    let mut bans = Vec::new();
    let mut bad = Vec::new();
    // An element with a timeout always has an expiration in a dump; zero if it is due.
    let remaining = |e: &RawElem| e.timeout.map(|_| e.expiration.unwrap_or(Duration::ZERO));
    if !interval {
        for e in elems {
            match addr_of(&e.key) {
                Some(addr) => bans.push(Decoded {
                    target: IpNet::from(addr),
                    remaining: remaining(&e),
                }),
                None => bad.push(e.key),
            }
        }
        return (bans, bad);
    }
    // Keys are big-endian, so byte order is address order; at equal keys, an end (which
    // closes the interval below) sorts before a start (which opens the next one).
    elems.sort_by(|a, b| {
        a.key.cmp(&b.key).then_with(|| {
            (b.flags & ELEM_FLAG_INTERVAL_END).cmp(&(a.flags & ELEM_FLAG_INTERVAL_END))
        })
    });
    let mut i = 0;
    while i < elems.len() {
        let e = &elems[i];
        if e.flags & ELEM_FLAG_INTERVAL_END != 0 {
            bad.push(e.key.clone());
            i += 1;
            continue;
        }
        let end = elems
            .get(i + 1)
            .filter(|n| n.flags & ELEM_FLAG_INTERVAL_END != 0);
        let net = addr_of(&e.key).and_then(|start| {
            let end_addr = match end {
                Some(n) => Some(addr_of(&n.key)?),
                None => None,
            };
            network(start, end_addr)
        });
        match net {
            Some(target) => bans.push(Decoded {
                target,
                remaining: remaining(e),
            }),
            None => bad.push(e.key.clone()),
        }
        i += if end.is_some() { 2 } else { 1 };
    }
    (bans, bad)
}

#[cfg(test)]
mod tests {
    use super::super::shim::octets;
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn set_names_are_readable_and_reversible() {
        assert_eq!(set_name("sshd", Family::V4).unwrap(), "sshd-v4");
        assert_eq!(
            set_name("nginx-http_auth", Family::V6).unwrap(),
            "nginx-http_auth-v6"
        );
        assert_eq!(set_name("a b/ü", Family::V4).unwrap(), "a.20b.2f.c3.bc-v4");
        for jail in ["sshd", "nginx-http_auth", "a b/ü", "x.y", "-v4", ".."] {
            for family in [Family::V4, Family::V6] {
                let name = set_name(jail, family).unwrap();
                assert_eq!(
                    parse_set_name(&name),
                    Some((jail.to_string(), family)),
                    "{name}"
                );
            }
        }
        assert_eq!(set_name("", Family::V4), None);
        assert_eq!(set_name(&"é".repeat(60), Family::V4), None);
        assert_eq!(parse_set_name("admin-set"), None);
        assert_eq!(parse_set_name(".61-v4"), None);
        assert_eq!(parse_set_name(".zz-v4"), None);
    }

    #[test]
    fn hosts_are_one_element() {
        let t = Some(Duration::from_secs(5));
        let e = encode(&net("192.0.2.7/32"), false, t);
        assert_eq!(
            e,
            vec![NewElem {
                key: IpAddr::from([192, 0, 2, 7]),
                flags: 0,
                timeout: t
            }]
        );
    }

    #[test]
    fn networks_are_start_and_interval_end() {
        let t = Some(Duration::from_secs(5));
        let e = encode(&net("2001:db8:a::99/64"), true, t);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, "2001:db8:a::".parse::<IpAddr>().unwrap());
        assert_eq!(e[0].timeout, t);
        assert_eq!(e[1].key, "2001:db8:a:1::".parse::<IpAddr>().unwrap());
        assert_eq!((e[1].flags, e[1].timeout), (ELEM_FLAG_INTERVAL_END, None));
        // A host in an interval set is the interval [a, a+1).
        let e = encode(&net("198.51.100.255/32"), true, None);
        assert_eq!(e[1].key, IpAddr::from([198, 51, 101, 0]));
        // Up to the end of the address space: no end element.
        assert_eq!(encode(&net("ffff::/16"), true, None).len(), 1);
        assert_eq!(encode(&net("255.255.255.255/32"), true, None).len(), 1);
    }

    fn raw(e: &NewElem, expiration: Option<Duration>) -> RawElem {
        RawElem {
            key: octets(e.key),
            flags: e.flags,
            timeout: e.timeout,
            expiration: e.timeout.and(expiration),
        }
    }

    #[test]
    fn decoding_inverts_encoding() {
        let left = Some(Duration::from_millis(1234));
        let targets = [
            "2001:db8:a::/64",
            "2001:db8:a:1::/64",
            "2001:db8::5/128",
            "ffff::/16",
            "::/0",
        ];
        for interval in [true, false] {
            let mut elems = Vec::new();
            let mut want = Vec::new();
            for (i, t) in targets.iter().enumerate() {
                if !interval && net(t).prefix_len() != 128 {
                    continue;
                }
                let timeout = (i % 2 == 0).then_some(Duration::from_secs(10));
                for e in encode(&net(t), interval, timeout) {
                    elems.push(raw(&e, left));
                }
                want.push(Decoded {
                    target: net(t),
                    remaining: timeout.and(left),
                });
            }
            // The kernel dumps in its own order.
            elems.reverse();
            if interval {
                // ::/0 overlaps everything; decode it alone.
                let all = elems.iter().position(|e| e.key == vec![0; 16]).unwrap();
                let zero = elems.remove(all);
                let (got, bad) = decode(vec![zero], true);
                assert_eq!((got, bad.len()), (vec![want.pop().unwrap()], 0));
            }
            let (mut got, bad) = decode(elems, interval);
            got.sort_by_key(|d| d.target);
            want.sort_by_key(|d| d.target);
            assert_eq!(got, want);
            assert!(bad.is_empty());
        }
    }

    #[test]
    fn foreign_shapes_are_reported_not_guessed() {
        // [192.0.2.1, 192.0.2.4) is no network.
        let elems = vec![
            RawElem {
                key: vec![192, 0, 2, 1],
                flags: 0,
                timeout: None,
                expiration: None,
            },
            RawElem {
                key: vec![192, 0, 2, 4],
                flags: ELEM_FLAG_INTERVAL_END,
                timeout: None,
                expiration: None,
            },
            RawElem {
                key: vec![1, 2, 3],
                flags: 0,
                timeout: None,
                expiration: None,
            },
        ];
        let (got, bad) = decode(elems, true);
        assert!(got.is_empty());
        assert_eq!(bad.len(), 2);
    }
}

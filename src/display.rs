//! How banhound writes values for people: ban targets and counts, the same in the journal,
//! on the bus and in the CLI's output. One formatter each, so a log line, a `Banned` signal
//! and `test-filter`'s report name an address the same way.

use ipnet::IpNet;

/// A ban target as people write it: the bare address for a single host, CIDR for a network.
pub fn display_target(target: &IpNet) -> String {
    if target.prefix_len() == target.max_prefix_len() {
        target.addr().to_string()
    } else {
        target.to_string()
    }
}

/// `1204` as `1,204`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_like_people_write_them() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1204), "1,204");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }

    #[test]
    fn a_host_is_its_address_and_a_network_its_cidr() {
        let host: IpNet = "192.0.2.7/32".parse().unwrap();
        let v6_host: IpNet = "2001:db8::1/128".parse().unwrap();
        let net: IpNet = "2001:db8::/64".parse().unwrap();
        assert_eq!(display_target(&host), "192.0.2.7");
        assert_eq!(display_target(&v6_host), "2001:db8::1");
        assert_eq!(display_target(&net), "2001:db8::/64");
    }
}

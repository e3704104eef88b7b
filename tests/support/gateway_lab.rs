//! A gateway between an attacker, a friend and two hosts behind it, as network namespaces,
//! for the tests of bans on forwarded traffic (tests/nftables.rs, tests/firewalld.rs):
//!
//! ```text
//!   attacker 192.0.2.2, 2001:db8:a::2   ── lnka ──┐            ┌── lnk1 ── host1 10.1.0.2, fd00:1::2
//!                                                 gateway
//!   friend   198.51.100.2, 2001:db8:f::2 ── lnkf ─┘            └── lnk2 ── host2 10.2.0.2, fd00:2::2
//! ```
//!
//! The gateway routes (forwarding is switched on with sysctl inside its namespace only:
//! `ip netns exec` gives sysctl the namespace's /proc/sys/net), every other namespace has
//! its default routes through it, and each host runs a [`Listener`] on [`HOST_PORT`]. With
//! [`GatewayLab::publish`], the gateway also DNATs a port of its own to host1, as Docker
//! does for `-p PUBLISHED:HOST_PORT`, in a table of its own (like Docker's, not banhound's).
//!
//! Included with `#[path]` next to netlab.rs, which must be the crate-level module `netlab`.
// Shared between test binaries that each use only a part of it.
#![allow(dead_code)]

use crate::netlab::{connect, wait_for, Listener, Netns, Outcome};
use std::net::SocketAddr;
use std::time::Duration;

/// The port the hosts behind the gateway listen on.
pub const HOST_PORT: u16 = 8080;
pub const ATTACKER_V4: &str = "192.0.2.2";
pub const ATTACKER_V6: &str = "2001:db8:a::2";
pub const HOST1_V4: &str = "10.1.0.2";
pub const HOST1_V6: &str = "fd00:1::2";
pub const HOST2_V4: &str = "10.2.0.2";
pub const HOST2_V6: &str = "fd00:2::2";
/// The gateway's address on the attacker's link and on the friend's: where a published
/// port is reached.
pub const GATEWAY_VIA_ATTACKER: &str = "192.0.2.1";
pub const GATEWAY_VIA_FRIEND: &str = "198.51.100.1";
/// Long enough for a connect over two veths (sub-millisecond), short enough to keep drop
/// tests quick.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);

pub struct GatewayLab {
    // Field order is drop order: listeners first, then the namespaces.
    _listeners: [Listener; 2],
    pub gateway: Netns,
    pub attacker: Netns,
    pub friend: Netns,
    pub host1: Netns,
    pub host2: Netns,
}

impl GatewayLab {
    pub fn new() -> GatewayLab {
        let gateway = Netns::unique("gw");
        let attacker = Netns::unique("gatk");
        let friend = Netns::unique("gfrd");
        let host1 = Netns::unique("gh1");
        let host2 = Netns::unique("gh2");
        let links = [
            (
                &attacker,
                "lnka",
                ["192.0.2.1/24", "2001:db8:a::1/64"],
                ["192.0.2.2/24", "2001:db8:a::2/64"],
            ),
            (
                &friend,
                "lnkf",
                ["198.51.100.1/24", "2001:db8:f::1/64"],
                ["198.51.100.2/24", "2001:db8:f::2/64"],
            ),
            (
                &host1,
                "lnk1",
                ["10.1.0.1/24", "fd00:1::1/64"],
                ["10.1.0.2/24", "fd00:1::2/64"],
            ),
            (
                &host2,
                "lnk2",
                ["10.2.0.1/24", "fd00:2::1/64"],
                ["10.2.0.2/24", "fd00:2::2/64"],
            ),
        ];
        for (peer, ifname, here, there) in &links {
            gateway.veth((ifname, here), peer, (ifname, there));
            let via4 = here[0].split('/').next().unwrap();
            let via6 = here[1].split('/').next().unwrap();
            peer.ip(&["route", "add", "default", "via", via4]);
            peer.ip(&["-6", "route", "add", "default", "via", via6]);
        }
        gateway.exec(&[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        let listeners = [
            Listener::start(&host1, HOST_PORT),
            Listener::start(&host2, HOST_PORT),
        ];
        let lab = GatewayLab {
            _listeners: listeners,
            gateway,
            attacker,
            friend,
            host1,
            host2,
        };
        // Nothing banned yet: everyone reaches both hosts, which checks the lab (and fills
        // the neighbour caches). The first IPv6 packets may be lost while the links' router
        // and neighbour discovery settle, so the check is repeated for a moment.
        wait_for("the lab to route", Duration::from_secs(10), || {
            [lab.to_hosts(&lab.attacker), lab.to_hosts(&lab.friend)] == [[Outcome::Connected; 4]; 2]
        });
        lab
    }

    /// Makes port `published` of the gateway reach host1's [`HOST_PORT`] (IPv4), as Docker's
    /// `-p published:8080` does: a DNAT rule in a nat prerouting chain of another table.
    pub fn publish(&self, published: u16) {
        self.gateway.nft(&["add", "table", "ip", "dockerlike"]);
        self.gateway.nft(&[
            "add chain ip dockerlike prerouting { type nat hook prerouting priority dstnat; }",
        ]);
        self.gateway.nft(&[&format!(
            "add rule ip dockerlike prerouting tcp dport {published} dnat to {HOST1_V4}:{HOST_PORT}"
        )]);
    }

    pub fn connect(&self, from: &Netns, to: &str, port: u16) -> Outcome {
        connect(
            from.name(),
            SocketAddr::new(to.parse().unwrap(), port),
            CONNECT_TIMEOUT,
        )
    }

    /// What `from` gets from both hosts, both families: host1 v4, host1 v6, host2 v4, host2 v6.
    pub fn to_hosts(&self, from: &Netns) -> [Outcome; 4] {
        [HOST1_V4, HOST1_V6, HOST2_V4, HOST2_V6].map(|to| self.connect(from, to, HOST_PORT))
    }
}

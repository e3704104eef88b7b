//! The nftables backend against the real kernel, with real packets, in network namespaces.
//!
//! Each test builds its own namespaces (names carry the pid and a counter, so parallel tests
//! and parallel runs do not collide): `server` runs the backend and a TCP listener,
//! `attacker` and `friend` connect to it over their own veth links:
//!
//! ```text
//!   attacker 192.0.2.2, 2001:db8:a::2 and ::3 ── lnka ── server 192.0.2.1, 2001:db8:a::1
//!   friend   198.51.100.2, 2001:db8:f::2      ── lnkf ── server 198.51.100.1, 2001:db8:f::1
//! ```
//!
//! The namespaces, links and listener come from tests/support/netlab.rs. Namespaces are
//! entered per thread with `setns(CLONE_NEWNET)`, and sockets (the backend's netlink
//! socket, the listener, the clients) stay in the namespace they were created in. So the
//! backend runs in-process, in the server namespace, with no helper binary; `nft` (used only
//! to inspect) is spawned from such a thread and inherits its namespace. The one test that
//! needs banhound gone entirely (bans expiring in the kernel) runs its banning half in a
//! child process: this test binary again, under `ip netns exec`, selected with `--exact`
//! and an env variable. Guards delete every namespace (which also removes the veths and the
//! ruleset) and stop the listener thread, also when a test fails.
//!
//! Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN for setns) and `ip`/`nft`.

#[path = "support/gateway_lab.rs"]
mod gateway_lab;
#[path = "support/netlab.rs"]
mod netlab;

use banhound::firewall::nftables::{KernelFeatures, NftError, NftablesBackend};
use banhound::firewall::{
    BanEntry, BlockType, Chains, Firewall, JailRules, PortRange, Ports, Protocol,
};
use gateway_lab::GatewayLab;
use ipnet::IpNet;
use netlab::{connect, sh, Listener, Netns, Outcome};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

const PORT: u16 = 8080;
const ATTACKER_V4: &str = "192.0.2.2";
const ATTACKER_V6: &str = "2001:db8:a::2";
const ATTACKER_V6_OTHER: &str = "2001:db8:a::3";
const SERVER_VIA_ATTACKER_V4: &str = "192.0.2.1";
const SERVER_VIA_ATTACKER_V6: &str = "2001:db8:a::1";
const SERVER_VIA_FRIEND_V4: &str = "198.51.100.1";
const SERVER_VIA_FRIEND_V6: &str = "2001:db8:f::1";
/// Long enough for a connect on a veth (sub-millisecond), short enough to keep drop tests quick.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(700);

// ---------------------------------------------------------------------------------------
// Plumbing: running futures, the lab (namespaces and links from tests/support/netlab.rs).

/// The backend's futures never wait on anything (netlink calls block inside), so one poll
/// with a no-op waker completes them; a pending future is a bug worth failing on.
fn run<F: Future>(future: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("backend future did not complete"),
    }
}

struct Lab {
    // Field order is drop order: listener first, then the namespaces.
    _listener: Listener,
    server: Netns,
    attacker: Netns,
    friend: Netns,
}

impl Lab {
    fn new() -> Lab {
        let server = Netns::unique("srv");
        let attacker = Netns::unique("atk");
        let friend = Netns::unique("frd");
        server.veth(
            ("lnka", &["192.0.2.1/24", "2001:db8:a::1/64"]),
            &attacker,
            (
                "lnka",
                &["192.0.2.2/24", "2001:db8:a::2/64", "2001:db8:a::3/64"],
            ),
        );
        server.veth(
            ("lnkf", &["198.51.100.1/24", "2001:db8:f::1/64"]),
            &friend,
            ("lnkf", &["198.51.100.2/24", "2001:db8:f::2/64"]),
        );
        let listener = Listener::start(&server, PORT);
        let lab = Lab {
            _listener: listener,
            server,
            attacker,
            friend,
        };
        // With two addresses on the link, pin the source the tests ban.
        lab.attacker_v6_source(ATTACKER_V6);
        // Connect once while nothing is banned: this checks the lab, and it fills the
        // server's neighbour cache. A ban of all traffic from an on-link IPv6 address also
        // drops its neighbour advertisements, so without a cached entry the server could
        // not deliver a reject's reset and the reject would look like a drop.
        assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);
        lab
    }

    /// A backend whose netlink socket lives in the server namespace.
    fn backend(&self) -> NftablesBackend {
        self.server.run(|| NftablesBackend::new().unwrap())
    }

    fn connect(&self, from: &Netns, to: &str) -> Outcome {
        connect(
            from.name(),
            SocketAddr::new(to.parse().unwrap(), PORT),
            CONNECT_TIMEOUT,
        )
    }

    /// Makes the attacker's IPv6 connections to the server come from `source`.
    fn attacker_v6_source(&self, source: &str) {
        self.attacker.ip(&[
            "-6",
            "route",
            "replace",
            "2001:db8:a::1/128",
            "dev",
            "lnka",
            "src",
            source,
        ]);
    }

    /// Attacker (both families) and friend (both families) outcomes.
    fn outcomes(&self) -> [Outcome; 4] {
        [
            self.connect(&self.attacker, SERVER_VIA_ATTACKER_V4),
            self.connect(&self.attacker, SERVER_VIA_ATTACKER_V6),
            self.connect(&self.friend, SERVER_VIA_FRIEND_V4),
            self.connect(&self.friend, SERVER_VIA_FRIEND_V6),
        ]
    }
}

fn jail(name: &str, ports: Ports, blocktype: BlockType, prefix_bans: bool) -> JailRules {
    JailRules {
        jail: name.into(),
        ports,
        blocktype,
        prefix_bans,
        chains: Chains::INPUT,
    }
}

/// A jail that bans on the forward path only, as on a gateway.
fn gateway_jail(name: &str, ports: Ports) -> JailRules {
    JailRules {
        chains: Chains {
            input: false,
            forward: true,
        },
        ..jail(name, ports, BlockType::Drop, false)
    }
}

fn tcp_port(port: u16) -> Ports {
    Ports::Only {
        protocols: vec![Protocol::Tcp],
        ports: vec![PortRange {
            first: port,
            last: port,
        }],
    }
}

fn net(s: &str) -> IpNet {
    match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => IpNet::from(s.parse::<IpAddr>().unwrap()),
    }
}

fn ban(jail: &str, target: &str, timeout: Option<Duration>) -> BanEntry {
    BanEntry {
        jail: jail.into(),
        target: net(target),
        timeout,
    }
}

fn attacker_bans(jail: &str, timeout: Option<Duration>) -> Vec<BanEntry> {
    vec![
        ban(jail, ATTACKER_V4, timeout),
        ban(jail, ATTACKER_V6, timeout),
    ]
}

fn listed(backend: &mut NftablesBackend) -> Vec<BanEntry> {
    let mut bans = run(backend.list()).unwrap();
    bans.sort_by(|a, b| (&a.jail, a.target).cmp(&(&b.jail, b.target)));
    bans
}

use Outcome::{Connected, Refused, TimedOut};

// ---------------------------------------------------------------------------------------
// Tests.

#[test]
fn gateway_drops_a_banned_attackers_forwarded_packets_to_every_host_behind_it() {
    let lab = GatewayLab::new();
    let mut fw = lab.gateway.run(|| NftablesBackend::new().unwrap());
    let chains_of = || lab.gateway.nft(&["list", "table", "inet", "banhound"]);
    let bans = vec![
        ban("gw", gateway_lab::ATTACKER_V4, None),
        ban("gw", gateway_lab::ATTACKER_V6, None),
    ];
    // Input only (the default): forwarded packets pass, there is no forward chain.
    let input_only = jail("gw", Ports::All, BlockType::Drop, false);
    run(fw.setup(std::slice::from_ref(&input_only))).unwrap();
    run(fw.ban(&bans)).unwrap();
    assert!(!chains_of().contains("chain forward"));
    assert_eq!(lab.to_hosts(&lab.attacker), [Connected; 4]);

    // Switched on (as a reload does): both hosts, both families, dropped; the friend passes.
    let forward = gateway_jail("gw", Ports::All);
    run(fw.setup(std::slice::from_ref(&forward))).unwrap();
    assert!(chains_of().contains("hook forward priority filter - 10"));
    // The sets kept their elements across the change of chains.
    assert_eq!(listed(&mut fw).len(), 2);
    assert_eq!(lab.to_hosts(&lab.attacker), [TimedOut; 4]);
    assert_eq!(lab.to_hosts(&lab.friend), [Connected; 4]);

    // An admin deleting the chain: reconcile puts it back, with its rules.
    lab.gateway
        .nft(&["delete", "chain", "inet", "banhound", "forward"]);
    assert_eq!(lab.to_hosts(&lab.attacker)[0], Connected);
    let repairs = run(fw.reconcile(&bans)).unwrap();
    assert_eq!(
        repairs.message,
        "nftables table inet banhound was damaged (chain forward missing): repaired, 0 bans put back"
    );
    assert_eq!(lab.to_hosts(&lab.attacker), [TimedOut; 4]);
    assert!(run(fw.reconcile(&bans)).unwrap().is_empty());

    // Unbanned: through again.
    run(fw.unban("gw", &bans.iter().map(|b| b.target).collect::<Vec<_>>())).unwrap();
    assert_eq!(lab.to_hosts(&lab.attacker), [Connected; 4]);

    // Switched off again: the chain is gone, and a forward chain nobody wants is removed
    // by reconcile too.
    run(fw.ban(&bans)).unwrap();
    run(fw.setup(std::slice::from_ref(&input_only))).unwrap();
    assert!(!chains_of().contains("chain forward"));
    assert_eq!(lab.to_hosts(&lab.attacker), [Connected; 4]);
    lab.gateway
        .nft(&["add chain inet banhound forward { type filter hook forward priority -10; }"]);
    let repairs = run(fw.reconcile(&bans)).unwrap();
    assert_eq!(
        repairs.message,
        "nftables table inet banhound was damaged (chain forward banhound did not write): repaired, 0 bans put back"
    );
    assert!(!chains_of().contains("chain forward"));
}

#[test]
fn a_dnat_published_port_is_protected_on_forward() {
    const PUBLISHED: u16 = 9090;
    let lab = GatewayLab::new();
    lab.publish(PUBLISHED);
    let gw = gateway_lab::GATEWAY_VIA_ATTACKER;
    assert_eq!(lab.connect(&lab.attacker, gw, PUBLISHED), Connected);
    let mut fw = lab.gateway.run(|| NftablesBackend::new().unwrap());
    let bans = vec![ban("web", gateway_lab::ATTACKER_V4, None)];

    // On input only, as banhound always did: the DNATed connection never meets the ban.
    let input_only = jail("web", tcp_port(PUBLISHED), BlockType::Drop, false);
    run(fw.setup(std::slice::from_ref(&input_only))).unwrap();
    run(fw.ban(&bans)).unwrap();
    assert_eq!(lab.connect(&lab.attacker, gw, PUBLISHED), Connected);

    // On forward, with the published port (what clients connect to, before DNAT): dropped,
    // the friend passes, and other ports of the banned address stay open.
    run(fw.setup(&[gateway_jail("web", tcp_port(PUBLISHED))])).unwrap();
    assert_eq!(lab.connect(&lab.attacker, gw, PUBLISHED), TimedOut);
    let friend_gw = gateway_lab::GATEWAY_VIA_FRIEND;
    assert_eq!(lab.connect(&lab.friend, friend_gw, PUBLISHED), Connected);
    let to_host2 = lab.connect(&lab.attacker, gateway_lab::HOST2_V4, gateway_lab::HOST_PORT);
    assert_eq!(to_host2, Connected);

    // With the container's port (after DNAT) instead: dropped too.
    run(fw.setup(&[gateway_jail("web", tcp_port(gateway_lab::HOST_PORT))])).unwrap();
    assert_eq!(lab.connect(&lab.attacker, gw, PUBLISHED), TimedOut);
    assert_eq!(lab.connect(&lab.friend, friend_gw, PUBLISHED), Connected);
    // And a reconcile finds the ct rules as it wrote them.
    assert!(run(fw.reconcile(&bans)).unwrap().is_empty());
}

#[test]
fn drop_blocks_the_attacker_but_not_the_friend_until_unbanned() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[jail("sshd", tcp_port(PORT), BlockType::Drop, false)])).unwrap();
    assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);

    let timeout = Duration::from_secs(600);
    run(fw.ban(&attacker_bans("sshd", Some(timeout)))).unwrap();
    assert_eq!(lab.outcomes(), [TimedOut, TimedOut, Connected, Connected]);

    // The kernel holds them with their timeouts, and list() reads them back.
    let bans = listed(&mut fw);
    assert_eq!(
        bans.iter().map(|b| b.target).collect::<Vec<_>>(),
        vec![net(ATTACKER_V4), net(ATTACKER_V6)]
    );
    for b in &bans {
        let left = b.timeout.unwrap();
        assert!(
            left <= timeout && left > timeout - Duration::from_secs(30),
            "{b:?}"
        );
    }
    let ruleset = lab.server.nft(&["list", "table", "inet", "banhound"]);
    assert!(ruleset.contains("192.0.2.2 timeout 10m"), "{ruleset}");
    assert!(ruleset.contains("2001:db8:a::2 timeout 10m"), "{ruleset}");
    assert!(
        ruleset.contains("hook input priority filter - 10; policy accept;"),
        "{ruleset}"
    );
    assert!(ruleset.contains("ip saddr @sshd-v4"), "{ruleset}");
    assert!(ruleset.contains("tcp dport 8080 drop"), "{ruleset}");

    // Banning again (a refresh) and unbanning something never banned both succeed.
    run(fw.ban(&attacker_bans("sshd", Some(timeout)))).unwrap();
    run(fw.unban("sshd", &[net("203.0.113.9"), net("2001:db8:ffff::9")])).unwrap();
    run(fw.unban("no-such-jail", &[net(ATTACKER_V4)])).unwrap();
    assert_eq!(lab.outcomes(), [TimedOut, TimedOut, Connected, Connected]);

    run(fw.unban("sshd", &[net(ATTACKER_V4), net(ATTACKER_V6)])).unwrap();
    assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);
    assert!(listed(&mut fw).is_empty());
    // Unbanning twice is fine too.
    run(fw.unban("sshd", &[net(ATTACKER_V4), net(ATTACKER_V6)])).unwrap();

    // Other ports of a ports-only jail stay open to a banned address: here, a jail for
    // another port bans the attacker, and 8080 still answers.
    let range = |first, last| Ports::Only {
        protocols: vec![Protocol::Udp, Protocol::Tcp],
        ports: vec![PortRange { first, last }],
    };
    run(fw.setup(&[
        jail("web", tcp_port(443), BlockType::Drop, false),
        jail("high", range(9000, 9100), BlockType::Drop, false),
        jail("around", range(8000, 8100), BlockType::Reject, false),
    ]))
    .unwrap();
    run(fw.ban(&attacker_bans("web", None))).unwrap();
    run(fw.ban(&attacker_bans("high", None))).unwrap();
    assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);
    // A port range containing 8080 does block it.
    run(fw.ban(&attacker_bans("around", None))).unwrap();
    assert_eq!(lab.outcomes(), [Refused, Refused, Connected, Connected]);
    let ruleset = lab
        .server
        .nft(&["list", "chain", "inet", "banhound", "input"]);
    assert!(
        ruleset.contains("ip saddr @around-v4 tcp dport 8000-8100 reject with tcp reset"),
        "{ruleset}"
    );
    assert!(
        ruleset.contains("ip6 saddr @around-v6 udp dport 8000-8100 reject"),
        "{ruleset}"
    );
    run(fw.teardown()).unwrap();
}

#[test]
fn reject_refuses_at_once_for_all_traffic() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[jail("recidive", Ports::All, BlockType::Reject, false)])).unwrap();
    run(fw.ban(&attacker_bans("recidive", None))).unwrap();
    let started = Instant::now();
    assert_eq!(lab.outcomes(), [Refused, Refused, Connected, Connected]);
    // A reset comes back at once; a drop would have cost two connect timeouts.
    assert!(
        started.elapsed() < CONNECT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    // Permanent bans have no timeout.
    assert!(listed(&mut fw).iter().all(|b| b.timeout.is_none()));
    let ruleset = lab
        .server
        .nft(&["list", "chain", "inet", "banhound", "input"]);
    assert!(ruleset.contains("reject with tcp reset"), "{ruleset}");
    // nft prints `reject with icmpx port-unreachable`, the inet default, as plain `reject`.
    assert!(
        ruleset.contains("ip6 saddr @recidive-v6 reject\n"),
        "{ruleset}"
    );
    run(fw.teardown()).unwrap();
    assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);
    // Tearing down twice is fine.
    run(fw.teardown()).unwrap();
}

/// Set in the child process of the test below.
const BAN_AND_EXIT_ENV: &str = "BANHOUND_TEST_BAN_AND_EXIT";

#[test]
fn bans_expire_in_the_kernel_after_banhound_exited() {
    const NAME: &str = "bans_expire_in_the_kernel_after_banhound_exited";
    if std::env::var_os(BAN_AND_EXIT_ENV).is_some() {
        // The child: this test binary again, started by `ip netns exec` inside the server
        // namespace. It bans and exits; nothing of banhound runs after that.
        let mut fw = NftablesBackend::new().unwrap();
        run(fw.setup(&[jail("sshd", tcp_port(PORT), BlockType::Reject, false)])).unwrap();
        run(fw.ban(&attacker_bans("sshd", Some(Duration::from_secs(2))))).unwrap();
        return;
    }
    let lab = Lab::new();
    let status = Command::new("ip")
        .args(["netns", "exec", lab.server.name()])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", NAME, "--test-threads=1", "--nocapture"])
        .env(BAN_AND_EXIT_ENV, "1")
        .status()
        .unwrap();
    // `status` waited for the child: no process is left that could lift the bans.
    assert!(status.success(), "child: {status}");
    let exited_at = Instant::now();
    assert_eq!(lab.outcomes(), [Refused, Refused, Connected, Connected]);
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(exited_at.elapsed()));
    assert_eq!(lab.outcomes(), [Connected, Connected, Connected, Connected]);
    // Only the elements went; the table and its rules are still there.
    let ruleset = lab.server.nft(&["list", "table", "inet", "banhound"]);
    assert!(ruleset.contains("ip saddr @sshd-v4"), "{ruleset}");
}

#[test]
fn prefix_ban_blocks_every_address_of_the_64() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[jail("sshd", tcp_port(PORT), BlockType::Reject, true)])).unwrap();
    run(fw.ban(&[ban(
        "sshd",
        "2001:db8:a::/64",
        Some(Duration::from_secs(600)),
    )]))
    .unwrap();
    lab.attacker_v6_source(ATTACKER_V6);
    assert_eq!(lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6), Refused);
    lab.attacker_v6_source(ATTACKER_V6_OTHER);
    assert_eq!(lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6), Refused);
    // IPv4 and the friend are untouched.
    assert_eq!(
        lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V4),
        Connected
    );
    assert_eq!(lab.connect(&lab.friend, SERVER_VIA_FRIEND_V6), Connected);

    let bans = listed(&mut fw);
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!(bans[0].target, net("2001:db8:a::/64"));
    assert!(bans[0].timeout.unwrap() <= Duration::from_secs(600));
    // Refreshing an interval works like a host.
    run(fw.ban(&[ban(
        "sshd",
        "2001:db8:a::/64",
        Some(Duration::from_secs(900)),
    )]))
    .unwrap();
    assert!(listed(&mut fw)[0].timeout.unwrap() > Duration::from_secs(600));

    run(fw.unban("sshd", &[net("2001:db8:a::/64")])).unwrap();
    assert_eq!(
        lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6),
        Connected
    );
    assert!(listed(&mut fw).is_empty());

    // Networks are refused for a jail without prefix bans, before reaching the kernel.
    run(fw.setup(&[jail("hosts", tcp_port(PORT), BlockType::Drop, false)])).unwrap();
    let err = run(fw.ban(&[ban("hosts", "2001:db8:a::/64", None)])).unwrap_err();
    assert!(
        matches!(
            err.source.downcast_ref::<NftError>(),
            Some(NftError::NeedsPrefixBans { .. })
        ),
        "{err}"
    );
}

#[test]
fn prefix_bans_expire_with_their_interval_end() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[jail("sshd", tcp_port(PORT), BlockType::Reject, true)])).unwrap();
    run(fw.ban(&[
        ban("sshd", "2001:db8:a::/64", Some(Duration::from_secs(2))),
        ban("sshd", "192.0.2.0/24", Some(Duration::from_secs(2))),
    ]))
    .unwrap();
    let banned_at = Instant::now();
    assert_eq!(lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6), Refused);
    assert_eq!(lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V4), Refused);
    std::thread::sleep(Duration::from_millis(2500).saturating_sub(banned_at.elapsed()));
    assert_eq!(
        lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6),
        Connected
    );
    assert_eq!(
        lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V4),
        Connected
    );
    // The same networks can be banned again (no stale interval end left behind).
    run(fw.ban(&[ban(
        "sshd",
        "2001:db8:a::/64",
        Some(Duration::from_secs(60)),
    )]))
    .unwrap();
    assert_eq!(lab.connect(&lab.attacker, SERVER_VIA_ATTACKER_V6), Refused);
}

#[test]
fn refresh_and_unban_work_on_every_kernel_path() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[
        jail("hosts", tcp_port(PORT), BlockType::Drop, false),
        jail("nets", tcp_port(PORT), BlockType::Drop, true),
    ]))
    .unwrap();
    let probed = fw.kernel_features().unwrap();
    eprintln!(
        "kernel {} features: {probed:?}",
        sh(&["uname", "-r"]).trim()
    );
    let paths = [
        probed,
        // 6.3 .. before timeout updates: destroy, then add.
        KernelFeatures {
            timeout_update: false,
            destroy_element: true,
        },
        // RHEL 9 (5.14), Debian 12 (6.1): read the set, delete what exists, add.
        KernelFeatures {
            timeout_update: false,
            destroy_element: false,
        },
    ];
    for features in paths {
        fw.assume_kernel_features(features);
        let short = Some(Duration::from_secs(5));
        let long = Some(Duration::from_secs(3600));
        let bans = |timeout| {
            vec![
                ban("hosts", ATTACKER_V4, timeout),
                ban("hosts", ATTACKER_V6, timeout),
                ban("nets", "2001:db8:a::/64", timeout),
                ban("nets", "198.51.100.0/24", timeout),
            ]
        };
        // Bystanders: bans that no call below touches must survive all of them.
        let bystanders = [
            ban("hosts", "203.0.113.77", None),
            ban("nets", "2001:db8:77::/64", None),
            ban("nets", "203.0.113.0/28", None),
        ];
        run(fw.ban(&bystanders)).unwrap();
        run(fw.ban(&bans(short))).unwrap();
        let all = listed(&mut fw);
        assert_eq!(all.len(), 7, "{features:?}: {all:?}");
        for b in all.iter().filter(|b| !bystanders.contains(b)) {
            assert!(b.timeout.unwrap() <= Duration::from_secs(5), "{b:?}");
        }
        // Refresh: same elements, longer timeouts, in one batch with a new one.
        let mut refresh = bans(long);
        refresh.push(ban("hosts", "203.0.113.5", long));
        run(fw.ban(&refresh)).unwrap();
        let after = listed(&mut fw);
        assert_eq!(after.len(), 8, "{features:?}: {after:?}");
        for b in after.iter().filter(|b| !bystanders.contains(b)) {
            assert!(
                b.timeout.unwrap() > Duration::from_secs(3000),
                "{features:?}: {b:?}"
            );
        }
        // A permanent ban becoming timed and back again.
        let host = |timeout| [ban("hosts", "203.0.113.88", timeout)];
        let timeout_of = |fw: &mut NftablesBackend| {
            let all = listed(fw);
            all.iter()
                .find(|b| b.target == net("203.0.113.88"))
                .unwrap()
                .timeout
        };
        run(fw.ban(&host(None))).unwrap();
        run(fw.ban(&host(long))).unwrap();
        assert!(timeout_of(&mut fw).is_some(), "{features:?}");
        run(fw.ban(&host(None))).unwrap();
        assert_eq!(timeout_of(&mut fw), None, "{features:?}");
        run(fw.unban("hosts", &[net("203.0.113.88")])).unwrap();
        // Unban a mix of present and missing targets.
        let hosts = [ATTACKER_V4, ATTACKER_V6, "203.0.113.5", "203.0.113.6"].map(net);
        run(fw.unban("hosts", &hosts)).unwrap();
        let nets = ["2001:db8:a::/64", "198.51.100.0/24", "2001:db8:b::/64"].map(net);
        run(fw.unban("nets", &nets)).unwrap();
        let mut want = bystanders.to_vec();
        want.sort_by(|a, b| (&a.jail, a.target).cmp(&(&b.jail, b.target)));
        assert_eq!(listed(&mut fw), want, "{features:?}");
        run(fw.unban("hosts", &[net("203.0.113.77")])).unwrap();
        run(fw.unban("nets", &[net("2001:db8:77::/64"), net("203.0.113.0/28")])).unwrap();
        assert!(listed(&mut fw).is_empty(), "{features:?}");
    }
}

#[test]
fn setup_is_idempotent_and_never_touches_other_tables() {
    let lab = Lab::new();
    lab.server.nft(&["add", "table", "inet", "admin"]);
    lab.server.nft(&[
        "add",
        "chain",
        "inet",
        "admin",
        "input",
        "{ type filter hook input priority 0; policy accept; }",
    ]);
    lab.server.nft(&[
        "add", "rule", "inet", "admin", "input", "tcp", "dport", "22", "counter", "accept",
    ]);
    let admin_before = lab.server.nft(&["list", "table", "inet", "admin"]);

    let mut fw = lab.backend();
    let jails = [
        jail("sshd", tcp_port(PORT), BlockType::Drop, false),
        jail("web", Ports::All, BlockType::Reject, true),
    ];
    run(fw.setup(&jails)).unwrap();
    run(fw.ban(&attacker_bans("sshd", Some(Duration::from_secs(600))))).unwrap();
    run(fw.ban(&[ban("web", "2001:db8:f::/64", None)])).unwrap();
    let first = lab.server.nft(&["list", "table", "inet", "banhound"]);

    // Again: same ruleset, elements kept (also by a backend that knows nothing yet).
    run(fw.setup(&jails)).unwrap();
    let mut fresh = lab.backend();
    run(fresh.setup(&jails)).unwrap();
    let again = lab.server.nft(&["list", "table", "inet", "banhound"]);
    let without_timers = |s: &str| {
        s.lines()
            .map(|l| l.split(" expires ").next().unwrap_or(l).to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(without_timers(&first), without_timers(&again));
    assert_eq!(lab.outcomes(), [TimedOut, TimedOut, Connected, Refused]);

    // A jail removed: its sets and rules go, the other jail's bans stay.
    run(fw.setup(&jails[..1])).unwrap();
    let after = lab.server.nft(&["list", "table", "inet", "banhound"]);
    assert!(!after.contains("web-v"), "{after}");
    assert_eq!(listed(&mut fw).len(), 2);
    assert_eq!(lab.outcomes(), [TimedOut, TimedOut, Connected, Connected]);

    // A jail switching prefix bans on gets interval sets (its bans are re-applied by the
    // daemon's reconcile; the kernel cannot change set flags in place).
    run(fw.setup(&[jail("sshd", tcp_port(PORT), BlockType::Drop, true)])).unwrap();
    let after = lab
        .server
        .nft(&["list", "set", "inet", "banhound", "sshd-v6"]);
    assert!(after.contains("flags interval,timeout"), "{after}");

    assert_eq!(
        lab.server.nft(&["list", "table", "inet", "admin"]),
        admin_before
    );
    run(fw.teardown()).unwrap();
    let tables = lab.server.nft(&["list", "tables"]);
    assert_eq!(tables.trim(), "table inet admin");
    assert_eq!(
        lab.server.nft(&["list", "table", "inet", "admin"]),
        admin_before
    );
}

#[test]
fn kernel_rejections_name_the_message_and_element() {
    let lab = Lab::new();
    let mut fw = lab.backend();
    run(fw.setup(&[jail("nets", tcp_port(PORT), BlockType::Drop, true)])).unwrap();
    run(fw.ban(&[ban("nets", "2001:db8:a::/64", None)])).unwrap();
    // A /32 around the banned /64 overlaps it: the kernel refuses the interval.
    let started = Instant::now();
    let err = run(fw.ban(&[
        ban("nets", "192.0.2.0/24", None),
        ban("nets", "2001:db8::/32", None),
    ]))
    .unwrap_err();
    // The failure is reported as soon as the kernel answers, not after the receive timeout
    // (a failed batch's end marker is never acked; waiting for it would cost 5 s).
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    eprintln!("{text}");
    let Some(NftError::Rejected(rejections)) = err.source.downcast_ref::<NftError>() else {
        panic!("{err:?}");
    };
    assert!(
        text.contains("add 2 element(s) of set nets-v6: File exists"),
        "{text}"
    );
    // The extended ack points into the element list, at the start or the end element of
    // the colliding interval (2001:db8::/32 is [2001:db8::, 2001:db9::)).
    let element = rejections[0].element.map(|a| a.to_string());
    assert!(
        matches!(element.as_deref(), Some("2001:db8::" | "2001:db9::")),
        "{text}"
    );
    assert!(rejections.iter().all(|r| r.errno != 0));
    // The whole batch was refused: the valid IPv4 network is not there either.
    assert_eq!(listed(&mut fw).len(), 1);
    // Unknown jails are a typed error too.
    let err = run(fw.ban(&[ban("nope", ATTACKER_V4, None)])).unwrap_err();
    assert!(
        matches!(
            err.source.downcast_ref::<NftError>(),
            Some(NftError::UnknownJail(_))
        ),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Benchmark (ignored by default; see docs/bench-nftables.md).

fn bench_targets(n: usize) -> Vec<IpNet> {
    // Half IPv4 from the benchmarking range 198.18.0.0/15, half IPv6 from 2001:db8::/32.
    (0..n)
        .map(|i| {
            if i % 2 == 0 {
                let a = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + (i / 2) as u32;
                IpNet::from(IpAddr::from(std::net::Ipv4Addr::from(a)))
            } else {
                let a =
                    u128::from("2001:db8:b::".parse::<std::net::Ipv6Addr>().unwrap()) + i as u128;
                IpNet::from(IpAddr::from(std::net::Ipv6Addr::from(a)))
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

#[test]
#[ignore = "benchmark: run with bench/nftables.sh"]
fn bench_nftables_backend() {
    const N: usize = 100_000;
    const SINGLE: usize = 1_000;
    let ns = Netns::unique("bench");
    let mut fw = ns.run(|| NftablesBackend::new().unwrap());
    let jails = [jail("bench", tcp_port(22), BlockType::Drop, false)];
    run(fw.setup(&jails)).unwrap();
    let features = fw.kernel_features().unwrap();
    println!(
        "kernel {}, probed {features:?}",
        sh(&["uname", "-r"]).trim()
    );
    let mut targets = bench_targets(N + SINGLE);
    let extra_targets = targets.split_off(N);
    let to_bans = |targets: &[IpNet]| -> Vec<BanEntry> {
        targets
            .iter()
            .map(|t| BanEntry {
                jail: "bench".into(),
                target: *t,
                timeout: Some(Duration::from_secs(3600)),
            })
            .collect()
    };
    let bans = to_bans(&targets);
    let extra = to_bans(&extra_targets);

    let paths = [
        ("probed kernel path", features),
        (
            "fallback path (no timeout update, no destroy: Debian 12 / RHEL 9 logic)",
            KernelFeatures {
                timeout_update: false,
                destroy_element: false,
            },
        ),
    ];
    for (label, features) in paths {
        fw.assume_kernel_features(features);
        println!("== {label}");
        let ((), t) = timed(|| run(fw.ban(&bans)).unwrap());
        let stats = fw.last_batch();
        println!(
            "ban {N} new (one batch: {} messages, {} bytes): {:.3} s",
            stats.messages,
            stats.bytes,
            t.as_secs_f64()
        );
        let (listed, t) = timed(|| run(fw.list()).unwrap());
        assert_eq!(listed.len(), N);
        println!("list {N}: {:.3} s", t.as_secs_f64());
        let ((), t) = timed(|| run(fw.ban(&bans)).unwrap());
        let stats = fw.last_batch();
        println!(
            "ban {N} again = refresh (one batch: {} messages, {} bytes): {:.3} s",
            stats.messages,
            stats.bytes,
            t.as_secs_f64()
        );
        // Single bans while the 100,000 are in the set: the steady state of a busy host.
        let mut latencies = Vec::with_capacity(SINGLE);
        for b in &extra {
            let ((), t) = timed(|| run(fw.ban(std::slice::from_ref(b))).unwrap());
            latencies.push(t);
        }
        latencies.sort();
        assert_eq!(run(fw.list()).unwrap().len(), N + SINGLE);
        println!(
            "single ban x{SINGLE} into a set of {N}: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[SINGLE - 1]
        );
        let mut latencies = Vec::with_capacity(SINGLE);
        for b in &extra {
            let ((), t) =
                timed(|| run(fw.unban("bench", std::slice::from_ref(&b.target))).unwrap());
            latencies.push(t);
        }
        latencies.sort();
        println!(
            "single unban x{SINGLE} from a set of {N}: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies[SINGLE - 1]
        );

        let ((), t) = timed(|| run(fw.unban("bench", &targets)).unwrap());
        let stats = fw.last_batch();
        println!(
            "unban {N} (one batch: {} messages, {} bytes): {:.3} s",
            stats.messages,
            stats.bytes,
            t.as_secs_f64()
        );
        assert!(run(fw.list()).unwrap().is_empty());
    }

    // For scale: one `nft` process per address, as a shell-out backend would do it.
    let (_, t) = timed(|| {
        ns.run(|| {
            for t in targets
                .iter()
                .filter(|t| matches!(t, IpNet::V4(_)))
                .take(SINGLE)
            {
                let element = format!("{{ {} timeout 1h }}", t.addr());
                let status = Command::new("nft")
                    .args(["add", "element", "inet", "banhound", "bench-v4", &element])
                    .status()
                    .unwrap();
                assert!(status.success());
            }
        })
    });
    println!(
        "nft add element, one process per address x{SINGLE}: {:.3} s ({:.2} ms each; x100 = {:.0} s for {N}, extrapolated)",
        t.as_secs_f64(),
        t.as_secs_f64() * 1000.0 / SINGLE as f64,
        t.as_secs_f64() * (N / SINGLE) as f64
    );
    assert_eq!(run(fw.list()).unwrap().len(), SINGLE);
    run(fw.teardown()).unwrap();
}

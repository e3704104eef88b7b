//! The firewalld backend against a real firewalld and real packets.
//!
//! Each test builds a lab: a private dbus-daemon (its own config and socket in a temp dir), a
//! network namespace "server" where firewalld runs on that bus with a private permanent
//! configuration directory (`--system-config`, so /etc/firewalld is never written), and
//! namespaces "attacker" and "friend" joined to it by veth pairs with IPv4 and IPv6
//! addresses. A TCP listener on port 22 in the server namespace is the service under
//! protection; connection attempts from the other namespaces are the proof that a ban
//! blocks or does not. The backend under test runs in the test process and only speaks
//! D-Bus. Namespaces, links and the listener come from tests/support/netlab.rs, the bus
//! and firewalld from tests/support/firewalld_lab.rs. Everything
//! is removed by the lab's Drop, also when an assertion fails.
//!
//! Labs run one at a time (a shared lock): two firewalld instances starting at once on a
//! 2-core machine would skew the measured timings. `BANHOUND_FIREWALLD_BULK` sets the size
//! of the bulk test (default 10000).

#[path = "support/firewalld_lab.rs"]
mod firewalld_lab;
#[path = "support/gateway_lab.rs"]
mod gateway_lab;
#[path = "support/netlab.rs"]
mod netlab;

use banhound::bus::Bus;
use banhound::firewall::firewalld::{FirewalldBackend, ReapplyTrigger, ReloadWatcher};
use banhound::firewall::{
    BanEntry, BlockType, Chains, Firewall, JailRules, PortRange, Ports, Protocol,
};
use firewalld_lab::PrivateFirewalld;
use gateway_lab::GatewayLab;
use ipnet::IpNet;
use netlab::{connect, Listener, Netns, Outcome};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

static ONE_LAB_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const SERVER_V4_TO_ATTACKER: &str = "192.0.2.1";
const ATTACKER_V4: &str = "192.0.2.2";
const SERVER_V6_TO_ATTACKER: &str = "2001:db8:1::1";
const ATTACKER_V6: &str = "2001:db8:1::2";
const SERVER_V4_TO_FRIEND: &str = "198.51.100.1";
const FRIEND_V4: &str = "198.51.100.2";
const SERVER_V6_TO_FRIEND: &str = "2001:db8:2::1";
const FRIEND_V6: &str = "2001:db8:2::2";
const SERVICE_PORT: u16 = 22;
const BOTH_FAMILIES: &[&str] = &[SERVER_V4_TO_ATTACKER, SERVER_V6_TO_ATTACKER];

/// Links the attacker and the friend to the server, each with an IPv4 and an IPv6 address.
fn build_network(server: &Netns, attacker: &Netns, friend: &Netns) {
    // The kernel rate-limits the ICMP errors a reject sends (a burst, then one per
    // second per peer); probing in a loop would then see timeouts instead of refusals.
    server.exec(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.icmp_ratelimit=0",
        "net.ipv6.icmp.ratelimit=0",
    ]);
    for (peer, server_if, (server_v4, server_v6), (peer_v4, peer_v6)) in [
        (
            attacker,
            "srv-att",
            (SERVER_V4_TO_ATTACKER, SERVER_V6_TO_ATTACKER),
            (ATTACKER_V4, ATTACKER_V6),
        ),
        (
            friend,
            "srv-fri",
            (SERVER_V4_TO_FRIEND, SERVER_V6_TO_FRIEND),
            (FRIEND_V4, FRIEND_V6),
        ),
    ] {
        server.veth(
            (
                server_if,
                &[&format!("{server_v4}/24"), &format!("{server_v6}/64")],
            ),
            peer,
            (
                "eth0",
                &[&format!("{peer_v4}/24"), &format!("{peer_v6}/64")],
            ),
        );
    }
}

struct Lab {
    service: Option<Listener>,
    // Stopped before the namespaces are deleted.
    firewalld: PrivateFirewalld,
    server: Netns,
    attacker: Netns,
    friend: Netns,
}

impl Lab {
    async fn start(name: &str) -> Lab {
        let tag = format!("bhfw{}{name}", std::process::id());
        let server = Netns::new(format!("{tag}-srv"));
        let attacker = Netns::new(format!("{tag}-att"));
        let friend = Netns::new(format!("{tag}-fri"));
        build_network(&server, &attacker, &friend);
        let mut lab = Lab {
            service: Some(Listener::start(&server, SERVICE_PORT)),
            firewalld: PrivateFirewalld::new(&server),
            server,
            attacker,
            friend,
        };
        lab.firewalld.start().await;
        lab
    }

    /// firewall-cmd inside the server namespace on our bus (for inspection and reloads).
    fn firewall_cmd(&self, args: &[&str]) -> String {
        self.firewalld.firewall_cmd(args)
    }

    /// `--list-rich-rules` (plus `extra` options), sorted: firewalld lists in no fixed order.
    fn rich_rules(&self, extra: &[&str]) -> Vec<String> {
        let mut args = extra.to_vec();
        args.push("--list-rich-rules");
        let mut rules: Vec<String> = self
            .firewall_cmd(&args)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        rules.sort();
        rules
    }

    fn nft_ruleset(&self) -> String {
        self.server.nft(&["list", "ruleset"])
    }

    async fn backend(&self) -> FirewalldBackend {
        FirewalldBackend::connect(&Bus::Address(self.firewalld.bus_address().to_owned()))
            .await
            .unwrap()
    }

    /// Tries a TCP connection from namespace `from` to `server_address`.
    async fn probe(&self, from: &Netns, server_address: &str) -> Outcome {
        let from = from.name().to_owned();
        let target = SocketAddr::new(server_address.parse().unwrap(), SERVICE_PORT);
        tokio::task::spawn_blocking(move || connect(&from, target, Duration::from_millis(400)))
            .await
            .unwrap()
    }

    /// Whether a TCP connection from namespace `from` to `server_address` gets through.
    async fn connects(&self, from: &Netns, server_address: &str) -> bool {
        self.probe(from, server_address).await == Outcome::Connected
    }

    /// [attacker v4, attacker v6, friend v4, friend v6] connection results.
    async fn reachability(&self) -> [bool; 4] {
        [
            self.connects(&self.attacker, SERVER_V4_TO_ATTACKER).await,
            self.connects(&self.attacker, SERVER_V6_TO_ATTACKER).await,
            self.connects(&self.friend, SERVER_V4_TO_FRIEND).await,
            self.connects(&self.friend, SERVER_V6_TO_FRIEND).await,
        ]
    }

    /// Polls until no connection from the attacker to any of `server_addresses` gets
    /// through; returns when the first fully blocked round of probes started (a blocked
    /// IPv6 probe only ends with its timeout: Linux does not abort an IPv6 connect on the
    /// ICMPv6 error a reject sends, IPv4 ones fail at once).
    async fn wait_until_attacker_blocked(
        &self,
        server_addresses: &[&str],
        limit: Duration,
    ) -> Option<Duration> {
        let started = Instant::now();
        'poll: while started.elapsed() < limit {
            let round = started.elapsed();
            for address in server_addresses {
                if self.connects(&self.attacker, address).await {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue 'poll;
                }
            }
            return Some(round);
        }
        None
    }

    /// Files in the private permanent configuration that mention banhound.
    fn permanent_traces(&self) -> Vec<PathBuf> {
        files_mentioning_banhound(&self.firewalld.system_config())
    }
}

fn files_mentioning_banhound(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_mentioning_banhound(&path));
        } else if path.extension().is_some_and(|e| e == "xml")
            && std::fs::read_to_string(&path).is_ok_and(|text| text.contains("banhound"))
        {
            found.push(path);
        }
    }
    found
}

impl Drop for Lab {
    fn drop(&mut self) {
        // The listener's thread is in the server namespace; firewalld and its bus stop when
        // the field is dropped, before the namespaces are deleted.
        self.service.take();
    }
}

fn ssh_jail(name: &str, blocktype: BlockType) -> JailRules {
    JailRules {
        jail: name.into(),
        ports: Ports::Only {
            protocols: vec![Protocol::Tcp],
            ports: vec![PortRange {
                first: SERVICE_PORT,
                last: SERVICE_PORT,
            }],
        },
        blocktype,
        prefix_bans: true,
        chains: Chains::INPUT,
    }
}

fn ban(jail: &str, target: &str) -> BanEntry {
    BanEntry {
        jail: jail.into(),
        target: net(target),
        timeout: Some(Duration::from_secs(600)),
    }
}

fn net(text: &str) -> IpNet {
    match text.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(text.parse::<IpAddr>().unwrap()),
    }
}

async fn next_report(
    watcher: &mut ReloadWatcher,
    limit: Duration,
) -> (ReapplyTrigger, Duration, usize) {
    let report = tokio::time::timeout(limit, watcher.next_report())
        .await
        .expect("no re-apply report in time")
        .expect("watcher ended");
    let count = report
        .result
        .unwrap_or_else(|e| panic!("re-apply failed: {e:?}"));
    (report.trigger, report.elapsed, count)
}

fn sorted_targets(bans: &[BanEntry], jail: &str) -> Vec<String> {
    let mut targets: Vec<String> = bans
        .iter()
        .filter(|b| b.jail == jail)
        .map(|b| b.target.to_string())
        .collect();
    targets.sort();
    targets
}

/// The policies firewalld has at runtime, sorted.
fn policies(firewalld: &PrivateFirewalld) -> Vec<String> {
    let mut names: Vec<String> = firewalld
        .firewall_cmd(&["--get-policies"])
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_drops_forwarded_packets_of_banned_addresses_with_firewalld() {
    use tokio::task::block_in_place;
    const PUBLISHED: u16 = 9090;
    let _one_lab = ONE_LAB_AT_A_TIME.lock().await;
    let lab = block_in_place(GatewayLab::new);
    let mut firewalld = PrivateFirewalld::new(&lab.gateway);
    firewalld.start().await;
    // A port published like Docker's, to host1 (which listens on HOST_PORT).
    lab.publish(PUBLISHED);
    let gw = gateway_lab::GATEWAY_VIA_ATTACKER;
    let friend_gw = gateway_lab::GATEWAY_VIA_FRIEND;
    let attacker_to_hosts = || block_in_place(|| lab.to_hosts(&lab.attacker));
    let published = |from: &Netns, to: &str| block_in_place(|| lab.connect(from, to, PUBLISHED));
    // The gateway's links in the trusted zone, which forwards everything (the default zone
    // forwards nothing between interfaces it is not bound to), permanently (in the lab's
    // private configuration) since banhound's setup reloads firewalld: the lab routes
    // under firewalld, and whatever is dropped below is dropped by banhound's policy.
    for link in ["lnka", "lnkf", "lnk1", "lnk2"] {
        let interface = format!("--add-interface={link}");
        firewalld.firewall_cmd(&["--permanent", "--zone=trusted", &interface]);
    }
    firewalld.firewall_cmd(&["--reload"]);
    assert_eq!(attacker_to_hosts(), [Outcome::Connected; 4]);
    assert_eq!(published(&lab.attacker, gw), Outcome::Connected);

    let mut backend = FirewalldBackend::connect(&Bus::Address(firewalld.bus_address().to_owned()))
        .await
        .unwrap();
    let input_only = JailRules {
        ports: Ports::All,
        blocktype: BlockType::Drop,
        ..ssh_jail("gw", BlockType::Drop)
    };
    backend
        .setup(std::slice::from_ref(&input_only))
        .await
        .unwrap();
    let bans = [
        ban("gw", gateway_lab::ATTACKER_V4),
        ban("gw", gateway_lab::ATTACKER_V6),
    ];
    backend.ban(&bans).await.unwrap();
    // Input only: no forward policy, forwarded packets pass.
    assert!(!policies(&firewalld).contains(&"banhound-forward".to_owned()));
    assert_eq!(attacker_to_hosts(), [Outcome::Connected; 4]);

    // Forward switched on (a reload's setup): both hosts, both families and the published
    // port are dropped for the attacker; the friend passes.
    let forward = JailRules {
        chains: Chains {
            input: false,
            forward: true,
        },
        ..input_only.clone()
    };
    backend.setup(std::slice::from_ref(&forward)).await.unwrap();
    assert!(policies(&firewalld).contains(&"banhound-forward".to_owned()));
    let mut rules: Vec<String> = firewalld
        .firewall_cmd(&["--policy=banhound-forward", "--list-rich-rules"])
        .lines()
        .map(str::to_owned)
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            r#"rule source ipset="banhound-gw-v4" drop"#,
            r#"rule source ipset="banhound-gw-v6" drop"#,
        ]
    );
    // The input policy holds nothing of a forward-only jail: it is removed.
    assert!(!policies(&firewalld).contains(&"banhound".to_owned()));
    assert_eq!(attacker_to_hosts(), [Outcome::TimedOut; 4]);
    assert_eq!(
        block_in_place(|| lab.to_hosts(&lab.friend)),
        [Outcome::Connected; 4]
    );
    // firewalld's limit, asserted so that a firewalld that changes it is noticed: its
    // filter_FORWARD accepts `ct status dnat` before any policy, so a DNATed connection (a
    // published port) never reaches banhound's forward policy. The README and
    // docs/gateway.md say to use the nftables backend for such jails.
    assert_eq!(published(&lab.attacker, gw), Outcome::Connected);
    assert_eq!(published(&lab.friend, friend_gw), Outcome::Connected);

    // A port restriction on forward: the port as forwarded. Other ports of the banned
    // address stay open (nothing listens on 22 behind the gateway: host2 itself refuses).
    let port_only = JailRules {
        ports: Ports::Only {
            protocols: vec![Protocol::Tcp],
            ports: vec![PortRange {
                first: gateway_lab::HOST_PORT,
                last: gateway_lab::HOST_PORT,
            }],
        },
        chains: Chains {
            input: true,
            forward: true,
        },
        ..input_only.clone()
    };
    backend
        .setup(std::slice::from_ref(&port_only))
        .await
        .unwrap();
    assert!(policies(&firewalld).contains(&"banhound".to_owned()));
    assert_eq!(attacker_to_hosts(), [Outcome::TimedOut; 4]);
    let other_port = block_in_place(|| lab.connect(&lab.attacker, gateway_lab::HOST2_V4, 22));
    assert_eq!(other_port, Outcome::Refused);

    // Switched off: the forward policy goes, the attacker passes again.
    backend
        .setup(std::slice::from_ref(&input_only))
        .await
        .unwrap();
    assert!(!policies(&firewalld).contains(&"banhound-forward".to_owned()));
    assert_eq!(attacker_to_hosts(), [Outcome::Connected; 4]);
    backend.teardown().await.unwrap();
    assert!(files_mentioning_banhound(&firewalld.system_config()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_block_real_traffic_and_survive_reload_and_restart() {
    let _one_lab = ONE_LAB_AT_A_TIME.lock().await;
    let host_traces_before = files_mentioning_banhound(Path::new("/etc/firewalld"));
    let mut lab = Lab::start("main").await;
    assert_eq!(
        lab.reachability().await,
        [true; 4],
        "lab broken before any ban"
    );

    let mut backend = lab.backend().await;
    let jails = [ssh_jail("sshd", BlockType::Reject)];
    backend.setup(&jails).await.unwrap();
    let rules_once = lab.rich_rules(&["--policy=banhound"]);
    backend.setup(&jails).await.unwrap();
    assert_eq!(
        lab.rich_rules(&["--policy=banhound"]),
        rules_once,
        "setup not idempotent"
    );
    assert_eq!(
        rules_once,
        [
            r#"rule source ipset="banhound-sshd-v4" port port="22" protocol="tcp" reject"#,
            r#"rule source ipset="banhound-sshd-v6" port port="22" protocol="tcp" reject"#,
        ]
    );
    assert_eq!(
        lab.rich_rules(&["--permanent", "--policy=banhound"]),
        rules_once,
        "rules must be permanent too, to survive reloads"
    );
    assert!(
        lab.rich_rules(&[]).is_empty(),
        "nothing in the default zone"
    );
    let mut watcher = backend.watch_reloads().await.unwrap();

    // Ban: the attacker is refused on both families, the friend is not.
    let bans = [ban("sshd", ATTACKER_V4), ban("sshd", ATTACKER_V6)];
    backend.ban(&bans).await.unwrap();
    backend.ban(&bans).await.unwrap(); // refreshing an existing ban is fine
    assert_eq!(lab.reachability().await, [false, false, true, true]);
    // A reject jail: IPv4 connects fail at once instead of timing out.
    assert_eq!(
        lab.probe(&lab.attacker, SERVER_V4_TO_ATTACKER).await,
        Outcome::Refused
    );
    let listed = backend.list().await.unwrap();
    assert_eq!(
        sorted_targets(&listed, "sshd"),
        ["192.0.2.2/32", "2001:db8:1::2/128"]
    );
    assert!(listed.iter().all(|b| b.timeout.is_none()));
    assert_eq!(
        lab.firewall_cmd(&["--ipset=banhound-sshd-v4", "--get-entries"])
            .trim(),
        ATTACKER_V4
    );

    // Unban: through again; unbanning twice is fine.
    let attacker = [net(ATTACKER_V4), net(ATTACKER_V6)];
    backend.unban("sshd", &attacker).await.unwrap();
    backend.unban("sshd", &attacker).await.unwrap();
    assert_eq!(lab.reachability().await, [true; 4]);
    assert!(backend.list().await.unwrap().is_empty());

    // Ban again, then reload firewalld behind our back: the ban is back within 1 s.
    backend.ban(&bans).await.unwrap();
    assert_eq!(lab.reachability().await, [false, false, true, true]);
    let reload_started = Instant::now();
    lab.firewall_cmd(&["--reload"]);
    let reload_returned = reload_started.elapsed();
    let blocked_after = lab
        .wait_until_attacker_blocked(BOTH_FAMILIES, Duration::from_secs(1))
        .await;
    let (trigger, reapply, count) = next_report(&mut watcher, Duration::from_secs(5)).await;
    eprintln!(
        "reload: firewall-cmd --reload took {reload_returned:?}; attacker blocked again \
         {blocked_after:?} after it returned; re-apply of {count} bans took {reapply:?}"
    );
    assert_eq!(trigger, ReapplyTrigger::Reloaded);
    assert_eq!(count, 2);
    assert!(
        blocked_after.is_some(),
        "ban not back within 1 s of the reload"
    );
    assert_eq!(lab.reachability().await, [false, false, true, true]);

    // Restart firewalld: the ban is back once it is.
    lab.firewalld.stop();
    let restart_started = Instant::now();
    lab.firewalld.start().await;
    let firewalld_ready = restart_started.elapsed();
    let blocked_after = lab
        .wait_until_attacker_blocked(BOTH_FAMILIES, Duration::from_secs(1))
        .await;
    let (trigger, reapply, count) = next_report(&mut watcher, Duration::from_secs(5)).await;
    eprintln!(
        "restart: firewalld answered {firewalld_ready:?} after start; attacker blocked again \
         {blocked_after:?} after that; re-apply of {count} bans took {reapply:?}"
    );
    assert_eq!(trigger, ReapplyTrigger::Restarted);
    assert!(
        blocked_after.is_some(),
        "ban not back within 1 s of firewalld answering"
    );
    assert_eq!(lab.reachability().await, [false, false, true, true]);

    // The Reloaded subscription follows firewalld's new instance.
    lab.firewall_cmd(&["--reload"]);
    assert!(lab
        .wait_until_attacker_blocked(BOTH_FAMILIES, Duration::from_secs(1))
        .await
        .is_some());
    let (trigger, _, _) = next_report(&mut watcher, Duration::from_secs(5)).await;
    assert_eq!(trigger, ReapplyTrigger::Reloaded);

    // Teardown removes everything of ours, runtime and permanent; traffic flows.
    drop(watcher);
    backend.teardown().await.unwrap();
    assert_eq!(lab.reachability().await, [true; 4]);
    assert!(!lab.firewall_cmd(&["--get-ipsets"]).contains("banhound"));
    assert!(!lab
        .firewall_cmd(&["--permanent", "--get-ipsets"])
        .contains("banhound"));
    assert!(!lab.firewall_cmd(&["--get-policies"]).contains("banhound"));
    assert!(!lab.nft_ruleset().contains("banhound"));
    assert_eq!(lab.permanent_traces(), Vec::<PathBuf>::new());
    assert_eq!(
        files_mentioning_banhound(Path::new("/etc/firewalld")),
        host_traces_before,
        "the host's firewalld configuration was touched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_follows_configuration_changes_and_overlapping_bans() {
    let _one_lab = ONE_LAB_AT_A_TIME.lock().await;
    let lab = Lab::start("cfg").await;
    let mut backend = lab.backend().await;

    // Two jails; the "web" one blocks everything, with drop.
    let web = JailRules {
        jail: "web".into(),
        ports: Ports::All,
        blocktype: BlockType::Drop,
        prefix_bans: true,
        chains: Chains::INPUT,
    };
    backend
        .setup(&[ssh_jail("sshd", BlockType::Reject), web.clone()])
        .await
        .unwrap();
    backend.ban(&[ban("web", ATTACKER_V4)]).await.unwrap();
    assert_eq!(lab.reachability().await, [false, true, true, true]);
    assert_eq!(
        lab.probe(&lab.attacker, SERVER_V4_TO_ATTACKER).await,
        Outcome::TimedOut,
        "a drop jail must not answer"
    );

    // A /64 and an address inside it: firewalld refuses overlapping entries, the backend
    // sends only the /64, and unbanning the /64 uncovers the address.
    let prefix = "2001:db8:1::/64";
    backend
        .ban(&[ban("sshd", ATTACKER_V6), ban("sshd", prefix)])
        .await
        .unwrap();
    assert_eq!(
        lab.firewall_cmd(&["--ipset=banhound-sshd-v6", "--get-entries"])
            .trim(),
        prefix
    );
    assert_eq!(lab.reachability().await, [false, false, true, true]);
    backend.unban("sshd", &[net(prefix)]).await.unwrap();
    assert_eq!(
        lab.firewall_cmd(&["--ipset=banhound-sshd-v6", "--get-entries"])
            .trim(),
        ATTACKER_V6
    );
    backend.unban("sshd", &[net(ATTACKER_V6)]).await.unwrap();
    assert_eq!(lab.reachability().await, [false, true, true, true]);

    // Dropping the "web" jail removes its sets and rules and with them its ban; sshd stays.
    backend.ban(&[ban("sshd", ATTACKER_V6)]).await.unwrap();
    backend
        .setup(&[ssh_jail("sshd", BlockType::Drop)])
        .await
        .unwrap();
    let ipsets = lab.firewall_cmd(&["--get-ipsets"]);
    assert_eq!(ipsets.trim(), "banhound-sshd-v4 banhound-sshd-v6");
    assert_eq!(lab.firewall_cmd(&["--permanent", "--get-ipsets"]), ipsets);
    let rules = lab.firewall_cmd(&["--policy=banhound", "--list-rich-rules"]);
    assert!(
        !rules.contains("web") && !rules.contains("reject"),
        "{rules}"
    );
    assert_eq!(rules.lines().count(), 2, "{rules}");
    // The setup's reload (a set was removed) did not lose the sshd ban.
    assert_eq!(lab.reachability().await, [true, false, true, true]);
    assert!(backend.ban(&[ban("web", ATTACKER_V4)]).await.is_err());

    // A new backend (a daemon restart) adopts what firewalld holds instead of unbanning.
    let mut restarted = lab.backend().await;
    restarted
        .setup(&[ssh_jail("sshd", BlockType::Drop)])
        .await
        .unwrap();
    assert_eq!(lab.reachability().await, [true, false, true, true]);
    assert_eq!(
        sorted_targets(&restarted.list().await.unwrap(), "sshd"),
        ["2001:db8:1::2/128"]
    );

    // Dropping every jail removes the sets and the policy (whose rules would otherwise name
    // deleted ipsets and break reloads).
    restarted.setup(&[]).await.unwrap();
    assert!(!lab
        .firewall_cmd(&["--permanent", "--get-ipsets"])
        .contains("banhound"));
    assert!(!lab
        .firewall_cmd(&["--permanent", "--get-policies"])
        .contains("banhound"));
    assert_eq!(lab.reachability().await, [true; 4]);
    lab.firewall_cmd(&["--reload"]);
    assert_eq!(lab.firewall_cmd(&["--state"]).trim(), "running");

    restarted.teardown().await.unwrap();
    assert_eq!(lab.reachability().await, [true; 4]);
    assert_eq!(lab.permanent_traces(), Vec::<PathBuf>::new());
}

/// `count` distinct IPv4 hosts from 198.18.0.0/15 (benchmarking range), from 198.18.0.1.
fn bulk_addresses(count: usize) -> Vec<IpNet> {
    let base = u32::from(Ipv4Addr::new(198, 18, 0, 1));
    (0..count as u32)
        .map(|i| IpNet::from(IpAddr::V4(Ipv4Addr::from(base + i))))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_ban_and_unban() {
    let count: usize = std::env::var("BANHOUND_FIREWALLD_BULK")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let _one_lab = ONE_LAB_AT_A_TIME.lock().await;
    let lab = Lab::start("bulk").await;
    let mut backend = lab.backend().await;
    backend
        .setup(&[ssh_jail("bulk", BlockType::Reject)])
        .await
        .unwrap();
    let mut watcher = backend.watch_reloads().await.unwrap();

    // The attacker's address is one of the many.
    let mut targets = bulk_addresses(count - 1);
    targets.push(net(ATTACKER_V4));
    let bans: Vec<BanEntry> = targets
        .iter()
        .map(|t| BanEntry {
            jail: "bulk".into(),
            target: *t,
            timeout: None,
        })
        .collect();
    let started = Instant::now();
    backend.ban(&bans).await.unwrap();
    let ban_time = started.elapsed();
    assert_eq!(lab.reachability().await, [false, true, true, true]);
    let started = Instant::now();
    let listed = backend.list().await.unwrap();
    let list_time = started.elapsed();
    assert_eq!(listed.len(), count);
    let ruleset = lab.nft_ruleset();
    let nft_elements = ruleset.matches("198.18.").count() + ruleset.matches("198.19.").count();
    assert_eq!(
        nft_elements,
        count - 1,
        "kernel set does not hold every ban"
    );

    // One more ban on top of a full set takes the single-entry path.
    let started = Instant::now();
    backend.ban(&[ban("bulk", "203.0.113.9")]).await.unwrap();
    let single_time = started.elapsed();
    let started = Instant::now();
    backend.unban("bulk", &[net("203.0.113.9")]).await.unwrap();
    let single_unban_time = started.elapsed();
    backend.ban(&[ban("bulk", "203.0.113.9")]).await.unwrap();

    let reload_started = Instant::now();
    lab.firewall_cmd(&["--reload"]);
    let reload_returned = reload_started.elapsed();
    let (trigger, reapply, reapplied) = next_report(&mut watcher, Duration::from_secs(60)).await;
    let blocked_after = lab
        .wait_until_attacker_blocked(&[SERVER_V4_TO_ATTACKER], Duration::from_secs(5))
        .await;
    assert_eq!(trigger, ReapplyTrigger::Reloaded);
    assert_eq!(reapplied, count + 1);
    assert!(
        blocked_after.is_some(),
        "not blocked after re-apply; firewalld holds {} entries; nft ruleset:\n{}",
        lab.firewall_cmd(&["--ipset=banhound-bulk-v4", "--get-entries"])
            .lines()
            .count(),
        lab.nft_ruleset()
            .lines()
            .filter(|l| !l.contains("198.18.") && !l.contains("198.19."))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let started = Instant::now();
    backend.unban("bulk", &targets).await.unwrap();
    let unban_time = started.elapsed();
    assert_eq!(lab.reachability().await, [true; 4]);
    assert_eq!(
        sorted_targets(&backend.list().await.unwrap(), "bulk"),
        ["203.0.113.9/32"]
    );
    eprintln!(
        "bulk of {count}: ban in one call {ban_time:?}; list {list_time:?}; one more ban on \
         top {single_time:?}, its unban {single_unban_time:?}; firewall-cmd --reload took {reload_returned:?}, re-apply of \
         {reapplied} bans {reapply:?} (attacker blocked {blocked_after:?} after the report); \
         unban of {count} in one call {unban_time:?}"
    );
    drop(watcher);
    backend.teardown().await.unwrap();
    assert_eq!(lab.permanent_traces(), Vec::<PathBuf>::new());
}

/// Defect 2 of issue 12: a ban must hold on every interface whatever its zone, also a zone
/// the interface was moved to after the ban (and one whose target accepts everything), and
/// rules an older banhound left in a zone are moved out of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_hold_in_every_zone() {
    let _one_lab = ONE_LAB_AT_A_TIME.lock().await;
    let lab = Lab::start("zones").await;
    // An older banhound's leftovers: its ipset and a rule of it in the default zone.
    let old_rule = r#"rule source ipset="banhound-sshd-v4" port port="22" protocol="tcp" drop"#;
    lab.firewall_cmd(&[
        "--permanent",
        "--new-ipset=banhound-sshd-v4",
        "--type=hash:net",
        "--option=family=inet",
    ]);
    lab.firewall_cmd(&[
        "--permanent",
        "--zone=public",
        &format!("--add-rich-rule={old_rule}"),
    ]);
    lab.firewall_cmd(&["--reload"]);
    assert_eq!(lab.rich_rules(&["--zone=public"]), [old_rule]);
    // The attacker's side in a zone that is not the default (internal also lets ssh in),
    // permanently as an admin would (a runtime-only binding would not survive our reload).
    lab.firewall_cmd(&[
        "--permanent",
        "--zone=internal",
        "--change-interface=srv-att",
    ]);
    lab.firewall_cmd(&["--zone=internal", "--change-interface=srv-att"]);
    assert_eq!(
        lab.reachability().await,
        [true; 4],
        "lab broken before any ban"
    );

    let mut backend = lab.backend().await;
    backend
        .setup(&[ssh_jail("sshd", BlockType::Reject)])
        .await
        .unwrap();
    let _watcher = backend.watch_reloads().await.unwrap();
    let bans = [ban("sshd", ATTACKER_V4), ban("sshd", ATTACKER_V6)];
    backend.ban(&bans).await.unwrap();
    assert_eq!(
        lab.firewall_cmd(&["--get-zone-of-interface=srv-att"])
            .trim(),
        "internal"
    );
    assert_eq!(
        lab.reachability().await,
        [false, false, true, true],
        "banned attacker in zone internal"
    );
    // Nothing of ours is left in any zone, runtime or permanent.
    for zone in ["public", "internal", "trusted"] {
        let zone = format!("--zone={zone}");
        assert!(lab.rich_rules(&[&zone]).is_empty(), "{zone}");
        assert!(lab.rich_rules(&["--permanent", &zone]).is_empty(), "{zone}");
    }

    // The zone changes after the ban: to trusted, whose target accepts everything.
    lab.firewall_cmd(&["--zone=trusted", "--change-interface=srv-att"]);
    assert_eq!(
        lab.reachability().await,
        [false, false, true, true],
        "banned attacker in zone trusted"
    );
    assert_eq!(
        lab.probe(&lab.attacker, SERVER_V4_TO_ATTACKER).await,
        Outcome::Refused,
        "the jail's blocktype applies"
    );
    // Nothing is wrong: a reconcile repairs nothing.
    let mut reconciled = backend.reconcile(&bans).await.unwrap();
    assert!(reconciled.is_empty(), "{reconciled:?}");

    // Someone removes a rule from the policy and changes its zones: the reconcile repairs both.
    let rule_v4 = r#"rule source ipset="banhound-sshd-v4" port port="22" protocol="tcp" reject"#;
    lab.firewall_cmd(&[
        "--policy=banhound",
        &format!("--remove-rich-rule={rule_v4}"),
    ]);
    lab.firewall_cmd(&["--policy=banhound", "--remove-ingress-zone=ANY"]);
    lab.firewall_cmd(&["--policy=banhound", "--add-ingress-zone=public"]);
    assert_eq!(lab.reachability().await, [true, true, true, true]);
    reconciled = backend.reconcile(&bans).await.unwrap();
    eprintln!(
        "reconcile after the policy was damaged: {}",
        reconciled.message
    );
    assert!(!reconciled.objects.is_empty(), "{reconciled:?}");
    assert_eq!(lab.reachability().await, [false, false, true, true]);

    // A reload drops runtime zone changes and our entries; both come back as they were.
    lab.firewall_cmd(&["--reload"]);
    lab.firewall_cmd(&["--zone=internal", "--change-interface=srv-att"]);
    assert!(lab
        .wait_until_attacker_blocked(BOTH_FAMILIES, Duration::from_secs(2))
        .await
        .is_some());
    assert_eq!(lab.reachability().await, [false, false, true, true]);

    backend.teardown().await.unwrap();
    assert_eq!(lab.reachability().await, [true; 4]);
    assert!(!lab.firewall_cmd(&["--get-policies"]).contains("banhound"));
    assert_eq!(lab.permanent_traces(), Vec::<PathBuf>::new());
}

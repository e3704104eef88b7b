//! Hostile callers of the control interface, against the REAL daemon (real owner task, real
//! nftables in a namespace; see real_daemon.rs): what reaches the kernel is checked with
//! `nft`, not taken from the daemon's answers.
//!
//! - Bans that would lock the admin out (loopback, ignoreip, the host's own addresses, in
//!   any spelling, and wide networks around them) are refused with
//!   `org.banhound.Banhound1.Error.Ignored` and nothing reaches the kernel.
//! - Arguments that are not exactly an address (whitespace, a zone on IPv4), addresses no
//!   connection comes from or that name a host per link (broadcast, multicast, link-local),
//!   and a zero duration are refused by name, over the bus and by `banhound ban` (exit 2);
//!   Set of a read-only property answers PropertyReadOnly.
//! - A seeded random storm of calls with hostile arguments and wrong signatures leaves the
//!   daemon alive and quick, and the kernel holding exactly what the accepted calls banned.
//!   The seed is printed; `BANHOUND_BUS_STORM_SEED` and `BANHOUND_BUS_STORM_CALLS` replay
//!   or lengthen a run.

use crate::private_bus::{BusPolicy, DbusDaemon};
use crate::real_daemon::{RealDaemon, OWN_V4, OWN_V6};
use crate::seeded::Rng;
use banhound::bus::{
    args, jail_path, JAIL_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH, SERVICE_NAME,
};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use zbus::zvariant::{DynamicType, Value};
use zbus::Connection;

const CONFIG: &str = r#"
[defaults]
backend = "nftables"
ignoreself = true
ignoreip = ["203.0.113.0/24", "2001:db8:aa::/48"]
bantime = "1h"

[jail.sshd]
enabled = true

[jail.wide]
enabled = true
filter = "sshd"
ipv6_prefix = 64
"#;

const JAILS: [&str; 2] = ["sshd", "wide"];
const ERROR_PREFIX: &str = "org.banhound.Banhound1.Error.";

/// What must never be in the kernel: loopback, unspecified, broadcast, multicast,
/// link-local, ignoreip, own addresses.
fn never_banned() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "0.0.0.0/32",
        "::/128",
        "255.255.255.255/32",
        "224.0.0.0/4",
        "ff00::/8",
        "169.254.0.0/16",
        "fe80::/10",
        "203.0.113.0/24",
        "2001:db8:aa::/48",
    ]
    .iter()
    .map(|n| n.parse().unwrap())
    .chain(
        [OWN_V4, OWN_V6]
            .iter()
            .map(|a| IpNet::from(a.parse::<IpAddr>().unwrap())),
    )
    .collect()
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn connect(bus: &DbusDaemon) -> Connection {
    zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// A method call with any body, so arguments of the wrong type reach the service too.
async fn call<B>(
    conn: &Connection,
    path: &str,
    interface: &str,
    method: &str,
    body: &B,
) -> zbus::Result<zbus::Message>
where
    B: serde::Serialize + DynamicType,
{
    match tokio::time::timeout(
        Duration::from_secs(10),
        conn.call_method(Some(SERVICE_NAME), path, Some(interface), method, body),
    )
    .await
    {
        Ok(result) => result,
        Err(_) => panic!("{interface}.{method} on {path}: no answer within 10 s"),
    }
}

/// `Manager.Ban` (or `Jail.Ban` on the jail's object): the error name and message, or the
/// target it banned.
async fn ban(
    conn: &Connection,
    via_jail_object: bool,
    jail: &str,
    address: &str,
    duration: &str,
) -> Result<(String, u64), (String, String)> {
    let reply = if via_jail_object {
        call(
            conn,
            &jail_path(jail),
            JAIL_INTERFACE,
            "Ban",
            &(address, duration),
        )
        .await
    } else {
        call(
            conn,
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "Ban",
            &(jail, address, duration),
        )
        .await
    };
    match reply {
        Ok(message) => {
            let (target, _since, until, _offence): (String, u64, u64, u32) =
                message.body().deserialize().unwrap();
            Ok((target, until))
        }
        Err(zbus::Error::MethodError(name, text, _)) => {
            Err((name.to_string(), text.unwrap_or_default()))
        }
        Err(other) => panic!("Ban {jail} {address:?}: {other}"),
    }
}

#[test]
fn bans_that_would_lock_out_the_admin_never_reach_the_kernel() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut daemon = RealDaemon::start("lock", &bus.address, CONFIG);
    let both: &[&str] = &JAILS;
    // (jails it is refused in, what is asked for); every spelling and width.
    let cases: Vec<(&[&str], String)> = vec![
        (both, "127.0.0.1".into()),
        (both, "127.0.0.53".into()),
        (both, "::1".into()),
        (both, "[::1]".into()),
        (both, "::ffff:127.0.0.1".into()),
        (both, "::FFFF:7f00:1".into()),
        (both, "0.0.0.0".into()),
        (both, "::".into()),
        (both, "203.0.113.9".into()),
        (both, "::ffff:203.0.113.9".into()),
        (both, "203.0.113.9/32".into()),
        (both, "2001:db8:aa::5".into()),
        (both, "2001:db8:aa:ffff::1".into()),
        (both, "2001:DB8:AA::5".into()),
        (both, OWN_V4.into()),
        (both, format!("::ffff:{OWN_V4}")),
        (both, OWN_V6.into()),
        (both, format!("[{OWN_V6}%own0]")),
        // The /64 this address is banned as holds the host's own address.
        (&["wide"], "2001:db8:1:2::99".into()),
        (both, "0.0.0.0/0".into()),
        (both, "::/0".into()),
        (both, "127.0.0.0/8".into()),
        (both, "::ffff:0:0/96".into()),
        (both, "::ffff:127.0.0.0/104".into()),
        (both, "128.0.0.0/1".into()),
        (both, "0.0.0.0/1".into()),
        (both, "::/1".into()),
        (both, "203.0.0.0/16".into()),
        (both, "2001:db8::/32".into()),
        (both, "2001:db8:aa::/64".into()),
        (both, "192.0.2.0/24".into()),
        (both, "2001:db8:1::/48".into()),
    ];
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&bus).await;
        for (jails, address) in &cases {
            for jail in *jails {
                for via_jail_object in [false, true] {
                    match ban(&conn, via_jail_object, jail, address, "").await {
                        Ok((target, _)) => {
                            panic!("Ban {address:?} in {jail} went through: {target} is banned")
                        }
                        Err((name, message)) => {
                            assert_eq!(
                                name,
                                format!("{ERROR_PREFIX}Ignored"),
                                "Ban {address:?} in {jail}: {message}"
                            );
                            assert!(
                                message.contains(" is never banned: "),
                                "Ban {address:?} in {jail}: {message}"
                            );
                        }
                    }
                }
            }
        }
        // Wide networks covering nothing protected are refused too (a ban of their first
        // address alone is not what was asked), as invalid addresses.
        for address in [
            "198.51.100.0/24",
            "2001:db8:5::/48",
            "::ffff:198.51.100.0/120",
        ] {
            let (name, message) = ban(&conn, false, "wide", address, "").await.unwrap_err();
            assert_eq!(name, format!("{ERROR_PREFIX}InvalidAddress"), "{message}");
            assert!(message.contains("is wider than what one ban"), "{message}");
        }
    });
    for jail in JAILS {
        assert_eq!(daemon.kernel_bans(jail), vec![], "jail {jail}");
    }
    assert!(daemon.is_running());

    // The same path does ban what it should: the empty sets above are not for want of a
    // working firewall. In the wide jail the address outside our /64 is banned as its /64.
    rt.block_on(async {
        let conn = connect(&bus).await;
        let (target, _) = ban(&conn, false, "sshd", "198.51.100.20", "")
            .await
            .unwrap();
        assert_eq!(target, "198.51.100.20");
        let (target, _) = ban(&conn, true, "wide", "2001:db8:1:3::99", "")
            .await
            .unwrap();
        assert_eq!(target, "2001:db8:1:3::/64");
        // A network inside one ban target is that target.
        let (target, _) = ban(&conn, true, "wide", "2001:db8:1:4::/80", "")
            .await
            .unwrap();
        assert_eq!(target, "2001:db8:1:4::/64");
    });
    assert_eq!(
        daemon.kernel_bans("sshd"),
        vec!["198.51.100.20/32".parse::<IpNet>().unwrap()]
    );
    assert_eq!(
        daemon.kernel_bans("wide"),
        vec![
            "2001:db8:1:3::/64".parse::<IpNet>().unwrap(),
            "2001:db8:1:4::/64".parse().unwrap()
        ]
    );
}

/// Arguments `Ban` once took: whitespace or a newline around the address, a zone on an IPv4
/// address, addresses no connection comes from (broadcast, multicast), link-local ones (the
/// same address is another host on each link, and a ban blocks it on every interface), and a
/// duration of 0. Each is refused with an error that says why, by the bus and by
/// `banhound ban` (exit 2), and nothing reaches the kernel. `Properties.Set` of a read-only
/// property says so (it answered "Unknown property").
#[test]
fn malformed_and_unbannable_ban_arguments_are_refused_by_name() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut daemon = RealDaemon::start("args", &bus.address, CONFIG);
    let invalid = format!("{ERROR_PREFIX}InvalidAddress");
    let ignored = format!("{ERROR_PREFIX}Ignored");
    let bad_duration = format!("{ERROR_PREFIX}InvalidDuration");
    // (address, duration, error name, in its message)
    let cases: Vec<(&str, &str, &str, &str)> = vec![
        (
            "198.51.100.4 ",
            "",
            &invalid,
            "whitespace or control characters",
        ),
        // Refused as Ignored before, now already as not an address.
        (
            " 127.0.0.1 ",
            "",
            &invalid,
            "whitespace or control characters",
        ),
        (
            " 198.51.100.4",
            "",
            &invalid,
            "whitespace or control characters",
        ),
        (
            "198.51.100.5\n",
            "",
            &invalid,
            "whitespace or control characters",
        ),
        (
            "198.51.100.5\u{1b}[0m",
            "",
            &invalid,
            "whitespace or control characters",
        ),
        (
            "198.51.100.6%veth-a",
            "",
            &invalid,
            "an IPv4 address has no zone",
        ),
        (
            "[198.51.100.6%veth-a]",
            "",
            &invalid,
            "an IPv4 address has no zone",
        ),
        ("255.255.255.255", "", &ignored, "broadcast"),
        ("224.0.0.1", "", &ignored, "multicast"),
        ("239.255.255.250", "", &ignored, "multicast"),
        ("ff02::1", "", &ignored, "multicast"),
        ("::ffff:224.0.0.251", "", &ignored, "multicast"),
        ("224.0.0.0/4", "", &ignored, "multicast"),
        ("240.0.0.0/4", "", &ignored, "broadcast"),
        ("ff00::/8", "", &ignored, "multicast"),
        ("fe80::1", "", &ignored, "link-local"),
        ("fe80::1%veth-a", "", &ignored, "link-local"),
        ("[fe80::1%1]", "", &ignored, "link-local"),
        ("169.254.1.1", "", &ignored, "link-local"),
        ("198.51.100.7", "0", &bad_duration, "ends at once"),
        ("198.51.100.7", "0s", &bad_duration, "ends at once"),
        ("198.51.100.7", "0h0m", &bad_duration, "ends at once"),
    ];
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&bus).await;
        for (address, duration, name, phrase) in &cases {
            for jail in JAILS {
                for via_jail_object in [false, true] {
                    let refused = ban(&conn, via_jail_object, jail, address, duration).await;
                    let (got, message) = match refused {
                        Ok((target, _)) => {
                            panic!("Ban {address:?} for {duration:?} in {jail} banned {target}")
                        }
                        Err(refusal) => refusal,
                    };
                    assert_eq!(&got, name, "Ban {address:?} for {duration:?}: {message}");
                    assert!(
                        message.contains(phrase),
                        "Ban {address:?} for {duration:?}: {message}"
                    );
                }
            }
        }
        // Set of a read-only property, of one that does not exist, and of one that exists
        // only on the other interface.
        let read_only = "org.freedesktop.DBus.Error.PropertyReadOnly";
        let unknown = "org.freedesktop.DBus.Error.UnknownProperty";
        let sshd = jail_path("sshd");
        for (path, interface, property, name) in [
            (sshd.as_str(), JAIL_INTERFACE, "MaxRetry", read_only),
            (sshd.as_str(), JAIL_INTERFACE, "IgnoreIP", read_only),
            (MANAGER_PATH, MANAGER_INTERFACE, "Degraded", read_only),
            (sshd.as_str(), JAIL_INTERFACE, "NoSuchProperty", unknown),
            (MANAGER_PATH, MANAGER_INTERFACE, "MaxRetry", unknown),
        ] {
            let set = call(
                &conn,
                path,
                "org.freedesktop.DBus.Properties",
                "Set",
                &(interface, property, Value::from(1u32)),
            )
            .await;
            match set {
                Err(zbus::Error::MethodError(got, message, _)) => {
                    assert_eq!(
                        got.as_str(),
                        name,
                        "Set {interface}.{property}: {message:?}"
                    )
                }
                other => panic!("Set {interface}.{property}: {other:?}"),
            }
        }
    });
    // The CLI gives the same refusals, as invalid arguments.
    for (address, duration, _, phrase) in &cases {
        let mut cli = std::process::Command::new(env!("CARGO_BIN_EXE_banhound"));
        cli.args(["--bus-address", &bus.address, "ban", "sshd", address]);
        if !duration.is_empty() {
            cli.args(["--for", duration]);
        }
        let out = cli.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "ban {address:?} --for {duration:?}: {err}"
        );
        assert!(
            err.contains(phrase),
            "ban {address:?} --for {duration:?}: {err}"
        );
    }
    for jail in JAILS {
        assert_eq!(daemon.kernel_bans(jail), vec![], "jail {jail}");
    }
    assert!(daemon.is_running());
}

/// Addresses a root caller may legitimately ban.
fn valid_address(rng: &mut Rng) -> String {
    if rng.chance(50) {
        format!("198.51.100.{}", 10 + rng.below(40))
    } else {
        format!("2001:db8:5:{:x}::{:x}", rng.below(8), 1 + rng.below(8))
    }
}

/// Strings no address parser should choke on, and some it should take.
fn hostile_string(rng: &mut Rng) -> String {
    let fixed = [
        "",
        " ",
        "::ffff:127.0.0.1",
        "0.0.0.0/0",
        "::/0",
        "127.0.0.0/8",
        "127.1",
        "0177.0.0.1",
        "2130706433",
        "0x7f000001",
        "1.2.3",
        "256.1.1.1",
        "198.51.100.7/33",
        "198.51.100.7/-1",
        "198.51.100.7\n127.0.0.1",
        "\t198.51.100.8 ",
        "198.51.100.9\r\n",
        "\u{1b}[31m198.51.100.10",
        "\u{202e}1.001.15.891",
        "\u{feff}198.51.100.11",
        "\u{7f}\u{1}\u{2}",
        "[::1]",
        "[2001:db8::1",
        "fe80::1%",
        "fe80::1%own0",
        "fe80::1%../../etc",
        "::ffff:0:0/96",
        "::ffff:198.51.100.12",
        "2001:db8:aa::1",
        "203.0.113.1",
        "2001:db8:1:2::99",
        "1:2:3:4:5:6:7:8:9",
        ":::",
        "%",
        "/",
        "/0",
        "sshd",
        "-1",
        "permanent",
        "forever",
    ];
    match rng.below(6) {
        // Now and then a megabyte; the bus carries messages up to 128 MiB.
        0 if rng.chance(5) => "9".repeat(1 << 20),
        0 => "9".repeat(1 + rng.below(4096)),
        1 => ":".repeat(1 + rng.below(70_000)),
        2 => (0..rng.below(64))
            .map(|_| char::from_u32(1 + (rng.next() % 0xD7FF) as u32).unwrap_or('?'))
            .collect(),
        3 => format!("{}{}", rng.pick(&fixed), valid_address(rng)),
        _ => rng.pick(&fixed).to_string(),
    }
}

fn duration(rng: &mut Rng) -> String {
    let valid = ["", "1h", "2d", "90m", "permanent", "-1", "forever", " 3h "];
    let hostile = [
        "-5m",
        "-0",
        "99999w",
        "1e308",
        "NaN",
        "inf",
        "18446744073709551616",
        "1h1h1h1h1h1h1h1h",
        "10 5",
        "0",
        "1s",
        "0.0000001",
        "1.5.5h",
        "\u{1}",
        "h",
        "m1",
    ];
    if rng.chance(65) {
        rng.pick(&valid).to_string()
    } else if rng.chance(80) {
        rng.pick(&hostile).to_string()
    } else {
        hostile_string(rng)
    }
}

fn jail_arg(rng: &mut Rng) -> String {
    let names = [
        "sshd",
        "wide",
        "sshd",
        "wide",
        "",
        "nope",
        "SSHD",
        "sshd ",
        "../sshd",
        "sshd\n",
        "wi\u{1}de",
    ];
    if rng.chance(60) {
        rng.pick(&JAILS).to_string()
    } else if rng.chance(3) {
        "j".repeat(1 + rng.below(100_000))
    } else {
        rng.pick(&names).to_string()
    }
}

/// The accepted bans, as the daemon answered them: jail -> target -> until (0: permanent).
#[derive(Default)]
struct Model {
    active: BTreeMap<String, BTreeMap<IpNet, u64>>,
    /// Every target any accepted call banned, per jail: what the kernel may hold.
    ever: BTreeMap<String, BTreeSet<IpNet>>,
}

impl Model {
    fn banned(&mut self, jail: &str, target: &str, until: u64) {
        let net = target
            .parse::<IpNet>()
            .or_else(|_| target.parse::<IpAddr>().map(IpNet::from))
            .unwrap_or_else(|_| panic!("the daemon answered the target {target:?}"));
        for kept in never_banned() {
            assert!(
                !overlaps(&net, &kept),
                "{target} banned in {jail} covers {kept}"
            );
        }
        self.active
            .entry(jail.into())
            .or_default()
            .insert(net, until);
        self.ever.entry(jail.into()).or_default().insert(net);
    }

    fn unbanned(&mut self, jail: &str, address: &str) {
        let addr = args::address(address).unwrap();
        if let Some(bans) = self.active.get_mut(jail) {
            bans.retain(|t, _| !t.contains(&addr));
        }
    }

    /// Bans that cannot have run out by now (with a margin for the kernel's clock).
    fn lasting(&self, jail: &str) -> BTreeSet<IpNet> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.active
            .get(jail)
            .into_iter()
            .flatten()
            .filter(|(_, &until)| until == 0 || until > now + 60)
            .map(|(t, _)| *t)
            .collect()
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Error names a hostile call may get: the interface's own, and the bus's for calls that
/// do not fit the interface at all. `Failed` is not among them: it would mean the daemon or
/// the firewall broke on an argument.
fn expected_error(name: &str) -> bool {
    [
        "org.banhound.Banhound1.Error.NoSuchJail",
        "org.banhound.Banhound1.Error.InvalidAddress",
        "org.banhound.Banhound1.Error.Ignored",
        "org.banhound.Banhound1.Error.InvalidDuration",
        "org.banhound.Banhound1.Error.NotBanned",
        "org.freedesktop.DBus.Error.InvalidArgs",
        "org.freedesktop.DBus.Error.UnknownMethod",
        "org.freedesktop.DBus.Error.UnknownObject",
        "org.freedesktop.DBus.Error.UnknownInterface",
        "org.freedesktop.DBus.Error.UnknownProperty",
        "org.freedesktop.DBus.Error.PropertyReadOnly",
        // What zbus answers for a body that does not deserialize into the method's
        // arguments ("Signature mismatch: got `u`, expected `(ssv)`").
        "org.freedesktop.zbus.Error",
    ]
    .contains(&name)
}

/// One call with arguments of the wrong number or type, or to a method, interface or
/// object that does not exist.
async fn misshapen_call(conn: &Connection, rng: &mut Rng) -> zbus::Result<zbus::Message> {
    let paths = [
        MANAGER_PATH.to_string(),
        jail_path("sshd"),
        jail_path("wide"),
        jail_path("nope"),
        "/".to_string(),
        "/org/banhound/Banhound1/jail".to_string(),
    ];
    let interfaces = [
        MANAGER_INTERFACE,
        JAIL_INTERFACE,
        "org.freedesktop.DBus.Properties",
        "org.banhound.Banhound1.Nope",
    ];
    let methods = [
        "Ban",
        "Unban",
        "UnbanAll",
        "Reload",
        "IsBanned",
        "GetBans",
        "GetStatus",
        "ListJails",
        "AddIgnoreIP",
        "RemoveIgnoreIP",
        "Set",
        "Get",
        "Bogus",
    ];
    let path = rng.pick(&paths).clone();
    let interface = *rng.pick(&interfaces);
    let method = *rng.pick(&methods);
    let text = hostile_string(rng);
    match rng.below(9) {
        0 => call(conn, &path, interface, method, &()).await,
        1 => call(conn, &path, interface, method, &(rng.next() as u32,)).await,
        2 => call(conn, &path, interface, method, &(text.as_str(),)).await,
        3 => {
            call(
                conn,
                &path,
                interface,
                method,
                &("sshd", text.as_str(), "1h", "extra"),
            )
            .await
        }
        4 => call(conn, &path, interface, method, &(text.as_bytes().to_vec(),)).await,
        5 => call(conn, &path, interface, method, &(-1i64, true)).await,
        6 => {
            call(
                conn,
                &path,
                interface,
                method,
                &(Value::from(text.as_str()),),
            )
            .await
        }
        7 => {
            // Properties.Set of a read-only property, with a value of the wrong type too.
            let value = Value::from(rng.next() as u32);
            call(
                conn,
                &path,
                "org.freedesktop.DBus.Properties",
                "Set",
                &(JAIL_INTERFACE, "MaxRetry", value),
            )
            .await
        }
        _ => {
            call(
                conn,
                &path,
                interface,
                method,
                &(vec![text.as_str()], BTreeMap::from([(1u8, 2u64)])),
            )
            .await
        }
    }
}

#[test]
fn a_storm_of_hostile_calls_leaves_the_daemon_alive_and_the_kernel_exact() {
    let seed = env_number("BANHOUND_BUS_STORM_SEED", 0x5EED_B4D5);
    let calls = env_number("BANHOUND_BUS_STORM_CALLS", 3000);
    eprintln!("storm: seed {seed:#x}, {calls} calls (BANHOUND_BUS_STORM_SEED replays it)");
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut daemon = RealDaemon::start("storm", &bus.address, CONFIG);
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let rt = runtime();
    rt.block_on(async {
        let conn = connect(&bus).await;
        for i in 0..calls {
            let roll = rng.below(100);
            let (what, result): (&str, zbus::Result<zbus::Message>) = match roll {
                0..=29 => {
                    let jail = jail_arg(&mut rng);
                    let address = if rng.chance(50) {
                        valid_address(&mut rng)
                    } else {
                        hostile_string(&mut rng)
                    };
                    let duration = duration(&mut rng);
                    let via_jail_object = JAILS.contains(&jail.as_str()) && rng.chance(30);
                    match ban(&conn, via_jail_object, &jail, &address, &duration).await {
                        Ok((target, until)) => {
                            model.banned(&jail, &target, until);
                            *outcomes.entry("Ban: banned".into()).or_default() += 1;
                        }
                        Err((name, message)) => {
                            assert!(
                                expected_error(&name),
                                "call {i}: Ban {jail:?} {address:?} {duration:?}: {name}: {message}"
                            );
                            *outcomes.entry(format!("Ban: {name}")).or_default() += 1;
                        }
                    }
                    continue;
                }
                30..=44 => {
                    let address = if rng.chance(60) {
                        valid_address(&mut rng)
                    } else {
                        hostile_string(&mut rng)
                    };
                    let jail = jail_arg(&mut rng);
                    if JAILS.contains(&jail.as_str()) && rng.chance(40) {
                        let result = call(
                            &conn,
                            &jail_path(&jail),
                            JAIL_INTERFACE,
                            "Unban",
                            &(&address,),
                        )
                        .await;
                        if result.is_ok() {
                            model.unbanned(&jail, &address);
                        }
                        ("Jail.Unban", result)
                    } else {
                        let result = call(
                            &conn,
                            MANAGER_PATH,
                            MANAGER_INTERFACE,
                            "Unban",
                            &(&address, &jail),
                        )
                        .await;
                        if let Ok(message) = &result {
                            let lifted: Vec<String> = message.body().deserialize().unwrap();
                            for jail in &lifted {
                                model.unbanned(jail, &address);
                            }
                        }
                        ("Manager.Unban", result)
                    }
                }
                // Only in the first half, so the kernel check at the end has bans to see.
                45 if i < calls / 2 => {
                    let jail = jail_arg(&mut rng);
                    let result = call(
                        &conn,
                        MANAGER_PATH,
                        MANAGER_INTERFACE,
                        "UnbanAll",
                        &(&jail,),
                    )
                    .await;
                    if result.is_ok() {
                        match jail.as_str() {
                            "" => model.active.clear(),
                            name => {
                                model.active.remove(name);
                            }
                        }
                    }
                    ("UnbanAll", result)
                }
                46..=57 => {
                    let network = if rng.chance(50) {
                        format!("198.51.100.{}/30", 4 * rng.below(64))
                    } else {
                        hostile_string(&mut rng)
                    };
                    let method = if rng.chance(50) {
                        "AddIgnoreIP"
                    } else {
                        "RemoveIgnoreIP"
                    };
                    let jail = *rng.pick(&JAILS);
                    let result = call(
                        &conn,
                        &jail_path(jail),
                        JAIL_INTERFACE,
                        method,
                        &(&network,),
                    )
                    .await;
                    (method, result)
                }
                58 => (
                    "Reload",
                    call(&conn, MANAGER_PATH, MANAGER_INTERFACE, "Reload", &()).await,
                ),
                59..=73 => {
                    let address = hostile_string(&mut rng);
                    match rng.below(4) {
                        0 => (
                            "IsBanned",
                            call(
                                &conn,
                                MANAGER_PATH,
                                MANAGER_INTERFACE,
                                "IsBanned",
                                &(&address,),
                            )
                            .await,
                        ),
                        1 => (
                            "GetBans",
                            call(
                                &conn,
                                &jail_path(rng.pick::<&str>(&JAILS)),
                                JAIL_INTERFACE,
                                "GetBans",
                                &(),
                            )
                            .await,
                        ),
                        2 => (
                            "GetStatus",
                            call(&conn, MANAGER_PATH, MANAGER_INTERFACE, "GetStatus", &()).await,
                        ),
                        _ => (
                            "GetAll",
                            call(
                                &conn,
                                &jail_path(rng.pick::<&str>(&JAILS)),
                                "org.freedesktop.DBus.Properties",
                                "GetAll",
                                &(JAIL_INTERFACE,),
                            )
                            .await,
                        ),
                    }
                }
                _ => ("misshapen", misshapen_call(&conn, &mut rng).await),
            };
            let outcome = match result {
                Ok(_) => "ok".to_string(),
                Err(zbus::Error::MethodError(name, message, _)) => {
                    assert!(
                        expected_error(name.as_str()),
                        "call {i} ({what}): {name}: {message:?}"
                    );
                    name.to_string()
                }
                Err(other) => panic!("call {i} ({what}): {other}"),
            };
            *outcomes.entry(format!("{what}: {outcome}")).or_default() += 1;
        }
    });
    eprintln!("storm outcomes: {outcomes:#?}");
    assert!(daemon.is_running(), "the daemon died: {}", daemon.log());
    assert!(
        !daemon.log().contains("panicked"),
        "the daemon panicked: {}",
        daemon.log()
    );
    assert!(
        outcomes.get("Ban: banned").copied().unwrap_or(0) > calls / 20,
        "too few calls banned anything for the kernel check to mean much: {outcomes:?}"
    );

    // Still quick: the first Status after the storm.
    rt.block_on(async {
        let conn = connect(&bus).await;
        let started = Instant::now();
        call(&conn, MANAGER_PATH, MANAGER_INTERFACE, "GetStatus", &())
            .await
            .unwrap();
        let took = started.elapsed();
        eprintln!("GetStatus after the storm: {took:?}");
        assert!(took < Duration::from_millis(100), "GetStatus took {took:?}");

        // The daemon's own view agrees with the model.
        for jail in JAILS {
            let reply = call(&conn, &jail_path(jail), JAIL_INTERFACE, "GetBans", &())
                .await
                .unwrap();
            let bans: Vec<(String, u64, u64, u32)> = reply.body().deserialize().unwrap();
            let listed: BTreeSet<IpNet> = bans
                .iter()
                .map(|(t, ..)| {
                    t.parse::<IpNet>()
                        .or_else(|_| t.parse::<IpAddr>().map(IpNet::from))
                        .unwrap()
                })
                .collect();
            let lasting = model.lasting(jail);
            assert!(
                lasting.is_subset(&listed),
                "{jail}: {lasting:?} vs {listed:?}"
            );
            assert!(listed.is_subset(&model.ever.get(jail).cloned().unwrap_or_default()));
        }
    });

    // The kernel holds what accepted calls banned, and nothing else.
    for jail in JAILS {
        let kernel: BTreeSet<IpNet> = daemon.kernel_bans(jail).into_iter().collect();
        let lasting = model.lasting(jail);
        let ever = model.ever.get(jail).cloned().unwrap_or_default();
        eprintln!(
            "jail {jail}: {} element(s) in the kernel, {} lasting ban(s) expected",
            kernel.len(),
            lasting.len()
        );
        assert!(
            lasting.is_subset(&kernel),
            "{jail}: banned but not in the kernel: {:?}",
            lasting.difference(&kernel).collect::<Vec<_>>()
        );
        assert!(
            kernel.is_subset(&ever),
            "{jail}: in the kernel but never banned: {:?}",
            kernel.difference(&ever).collect::<Vec<_>>()
        );
        for element in &kernel {
            for kept in never_banned() {
                assert!(!overlaps(element, &kept), "{jail}: {element} covers {kept}");
            }
        }
    }
}

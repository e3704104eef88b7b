//! The D-Bus interface end to end: a private dbus-daemon started here with the REAL bus
//! policy from dbus/ included, the real service (`banhound::bus::service`), and clients that
//! are real programs: the `banhound` CLI and busctl, as root and as `nobody` (setpriv).
//!
//! Behind the service runs `owner::Owner`, a stand-in for the daemon's owner task that uses
//! the real engine and configuration loader (see owner.rs); the daemon itself is on another
//! branch. Every dbus-daemon is killed by pid when its guard drops, even on failure.

mod owner;

use banhound::bus::service::{Bus, Service, StartError};
use banhound::bus::{jail_path, Event, Request, JAIL_INTERFACE, MANAGER_INTERFACE, MANAGER_PATH};
use banhound::config::ConfigPaths;
use futures_util::StreamExt;
use owner::{Input, Owner};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Which policy the private bus enforces.
#[derive(Clone, Copy, PartialEq)]
enum BusPolicy {
    /// The system bus defaults (deny own, deny method calls) plus dbus/org.banhound.Banhound1.conf.
    Shipped,
    /// Anyone may own anything and call anything: only the service's own UID check is left.
    Permissive,
}

/// A private dbus-daemon, killed (by pid) when dropped.
struct DbusDaemon {
    child: Child,
    address: String,
    _dir: tempfile::TempDir,
}

impl DbusDaemon {
    fn start(policy: BusPolicy) -> DbusDaemon {
        let dir = tempfile::tempdir().unwrap();
        // `nobody` must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("bus");
        let policy_xml = match policy {
            BusPolicy::Shipped => format!(
                r#"  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
  </policy>
  <include>{}</include>"#,
                root().join("dbus/org.banhound.Banhound1.conf").display()
            ),
            BusPolicy::Permissive => r#"  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>"#
                .to_string(),
        };
        let config = format!(
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
{policy_xml}
</busconfig>
"#,
            socket.display()
        );
        let config_path = dir.path().join("bus.conf");
        std::fs::write(&config_path, config).unwrap();
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--nofork", "--print-address=1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dbus-daemon starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let mut daemon = DbusDaemon {
            child,
            address: line.trim().to_string(),
            _dir: dir,
        };
        if daemon.address.is_empty() {
            let mut err = String::new();
            daemon
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("dbus-daemon did not start: {err}");
        }
        daemon
    }
}

impl Drop for DbusDaemon {
    fn drop(&mut self) {
        // Child::kill signals exactly this pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CONFIG: &str = r#"
[defaults]
backend = "log-only"
ignoreself = false
ignoreip = ["203.0.113.0/24"]

[jail.sshd]
enabled = true
maxretry = 3
findtime = "10m"
bantime = "1h"

[jail.nginx-http-auth]
enabled = true
bantime = "permanent"
ipv6_prefix = 64
"#;

/// The bus, the service on it and the stand-in owner behind it.
struct Harness {
    service: Option<Service>,
    inputs: mpsc::Sender<Input>,
    runtime: tokio::runtime::Runtime,
    config: PathBuf,
    _config_dir: tempfile::TempDir,
    // Last: the bus outlives the service's connection.
    bus: DbusDaemon,
}

impl Harness {
    fn start(policy: BusPolicy) -> Harness {
        let bus = DbusDaemon::start(policy);
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("banhound.toml");
        std::fs::write(&config, CONFIG).unwrap();
        let paths = ConfigPaths {
            defaults_dir: root().join("conf"),
            config_dir: config_dir.path().to_path_buf(),
            main_file: Some(config.clone()),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (events, _) = broadcast::channel::<Event>(256);
        let (inputs, input_rx) = mpsc::channel::<Input>(64);
        let (requests, mut request_rx) = mpsc::channel::<Request>(64);
        let owner = Owner::new(paths, events.clone());
        let service = runtime.block_on(async {
            tokio::spawn(owner.run(input_rx));
            let forward = inputs.clone();
            tokio::spawn(async move {
                while let Some(r) = request_rx.recv().await {
                    if forward.send(Input::Bus(r)).await.is_err() {
                        return;
                    }
                }
            });
            Service::start(
                Bus::Address(bus.address.clone()),
                requests,
                events.subscribe(),
            )
            .await
            .expect("service starts")
        });
        Harness {
            service: Some(service),
            inputs,
            runtime,
            config,
            _config_dir: config_dir,
            bus,
        }
    }

    /// A failure of `addr` in `jail`, as a log source would report it.
    fn failure(&self, jail: &str, addr: &str) {
        let input = Input::Failure {
            jail: jail.into(),
            addr: addr.parse().unwrap(),
        };
        self.runtime.block_on(self.inputs.send(input)).unwrap();
    }

    fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(env!("CARGO_BIN_EXE_banhound"))
            .arg("--bus-address")
            .arg(&self.bus.address)
            .args(args))
    }

    fn cli_as_nobody(&self, args: &[&str]) -> Output {
        run(as_nobody()
            .arg(env!("CARGO_BIN_EXE_banhound"))
            .arg("--bus-address")
            .arg(&self.bus.address)
            .args(args))
    }

    fn busctl(&self, args: &[&str]) -> Output {
        run(Command::new("busctl")
            .arg(format!("--address={}", self.bus.address))
            .args(args))
    }

    fn busctl_as_nobody(&self, args: &[&str]) -> Output {
        run(as_nobody()
            .arg("busctl")
            .arg(format!("--address={}", self.bus.address))
            .args(args))
    }

    /// `busctl --json=short call` and its "data" array.
    fn call(&self, path: &str, iface: &str, method: &str, sig_and_args: &[&str]) -> Value {
        let mut args = vec![
            "--json=short",
            "call",
            "org.banhound.Banhound1",
            path,
            iface,
            method,
        ];
        args.extend_from_slice(sig_and_args);
        let out = self.busctl(&args);
        assert!(
            out.status.success(),
            "busctl {args:?}: {}",
            text(&out.stderr)
        );
        if out.stdout.is_empty() {
            // A method without out arguments.
            return Value::Null;
        }
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["data"].clone()
    }

    fn property(&self, jail: &str, name: &str) -> Value {
        let out = self.busctl(&[
            "--json=short",
            "get-property",
            "org.banhound.Banhound1",
            &jail_path(jail),
            JAIL_INTERFACE,
            name,
        ]);
        assert!(
            out.status.success(),
            "get-property {name}: {}",
            text(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["data"].clone()
    }

    fn bans(&self, jail: &str) -> Value {
        self.call(&jail_path(jail), JAIL_INTERFACE, "GetBans", &[])[0].clone()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(service) = self.service.take() {
            self.runtime.block_on(service.stop());
        }
    }
}

fn as_nobody() -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]);
    c
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("command runs")
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// The D-Bus error name of a failed call made with the shared proxy (busctl prints only the
/// message, so names are checked through zbus).
fn error_name<T: std::fmt::Debug>(result: zbus::Result<T>) -> String {
    match result {
        Err(zbus::Error::MethodError(name, _, _)) => name.to_string(),
        other => panic!("expected a D-Bus error, got {other:?}"),
    }
}

async fn manager(
    h: &Harness,
) -> (
    zbus::Connection,
    banhound::bus::proxy::ManagerProxy<'static>,
) {
    let conn = zbus::connection::Builder::address(h.bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let proxy = banhound::bus::proxy::ManagerProxy::builder(&conn)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .unwrap();
    (conn, proxy)
}

/// The `<interface name="...">` element of an introspection document, as its lines.
fn interface_block(xml: &str, name: &str) -> Vec<String> {
    let open = format!("<interface name=\"{name}\">");
    let lines: Vec<&str> = xml.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == open)
        .unwrap_or_else(|| panic!("no {open} in:\n{xml}"));
    let indent = &lines[start][..lines[start].len() - lines[start].trim_start().len()];
    let end = start
        + lines[start..]
            .iter()
            .position(|l| *l == format!("{indent}</interface>"))
            .expect("interface closes");
    lines[start..=end].iter().map(|l| l.to_string()).collect()
}

#[test]
fn served_introspection_is_what_dbus_xml_documents() {
    let h = Harness::start(BusPolicy::Shipped);
    for (path, iface) in [
        (MANAGER_PATH.to_string(), MANAGER_INTERFACE),
        (jail_path("nginx-http-auth"), JAIL_INTERFACE),
    ] {
        // busctl as nobody: introspection is open to everyone under the shipped policy.
        let out = h.busctl_as_nobody(&[
            "introspect",
            "--xml-interface",
            "org.banhound.Banhound1",
            &path,
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let served = interface_block(&text(&out.stdout), iface);
        let file = root().join(format!("dbus/{iface}.xml"));
        if std::env::var_os("BANHOUND_BLESS_DBUS_XML").is_some() {
            let doc = format!(
                "<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n<node>\n{}\n</node>\n",
                served.join("\n")
            );
            std::fs::write(&file, doc).unwrap();
        }
        let documented = interface_block(&std::fs::read_to_string(&file).unwrap(), iface);
        assert_eq!(
            served,
            documented,
            "{} differs from the served interface (BANHOUND_BLESS_DBUS_XML=1 rewrites it)",
            file.display()
        );
    }
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {}: {}",
        code(out),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)))
}

#[test]
fn cli_drives_every_method_as_root() {
    let h = Harness::start(BusPolicy::Shipped);

    let status = json(&h.cli(&["status", "--json"]));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    let jails: Vec<&str> = status["jails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j.as_str().unwrap())
        .collect();
    assert!(
        jails.contains(&"sshd") && jails.contains(&"nginx-http-auth"),
        "{jails:?}"
    );
    assert_eq!(status["currently_banned"], 0);

    // Ban with the jail's ban time, and with --for.
    let out = h.cli(&["ban", "sshd", "198.51.100.4"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("banned 198.51.100.4 in sshd until "),
        "{}",
        text(&out.stdout)
    );
    let out = h.cli(&["ban", "nginx-http-auth", "2001:db8::7", "--for", "2d"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // ipv6_prefix = 64: the /64 is what is blocked.
    assert!(
        text(&out.stdout).contains("banned 2001:db8::/64 in nginx-http-auth"),
        "{}",
        text(&out.stdout)
    );

    let sshd = json(&h.cli(&["status", "sshd", "--json"]));
    assert_eq!(sshd["currently_banned"], 1);
    assert_eq!(sshd["total_banned"], 1);
    assert_eq!(sshd["maxretry"], 3);
    assert_eq!(sshd["findtime"], 600);
    assert_eq!(sshd["bantime"], 3600);
    assert_eq!(sshd["backend"], "log-only");
    assert_eq!(sshd["filter"], "sshd");
    assert_eq!(sshd["ignoreip"], serde_json::json!(["203.0.113.0/24"]));
    assert_eq!(sshd["bans"][0]["target"], "198.51.100.4");
    assert_eq!(sshd["bans"][0]["offence"], 1);
    let nginx = json(&h.cli(&["status", "nginx-http-auth", "--json"]));
    assert_eq!(nginx["bantime"], -1);
    let since = nginx["bans"][0]["since"].as_str().unwrap().to_string();
    let until = nginx["bans"][0]["until"].as_str().unwrap().to_string();
    assert!(until > since, "{since} {until}");

    // The tree output names the same facts.
    let out = h.cli(&["status", "sshd"]);
    let tree = text(&out.stdout);
    assert!(tree.starts_with("Status for the jail: sshd\n"), "{tree}");
    assert!(tree.contains("`- Banned IP list:   198.51.100.4"), "{tree}");
    assert!(
        tree.contains("Ban after:        3 failures within 10m"),
        "{tree}"
    );
    let out = h.cli(&["status"]);
    assert!(
        text(&out.stdout).contains("Currently banned: 2"),
        "{}",
        text(&out.stdout)
    );

    // banned: all, and by address (an address inside the banned /64 counts).
    let all = json(&h.cli(&["banned", "--json"]));
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let one = json(&h.cli(&["banned", "2001:db8::1234", "--json"]));
    assert_eq!(one[0]["jail"], "nginx-http-auth");
    assert_eq!(one[0]["target"], "2001:db8::/64");
    let none = h.cli(&["banned", "192.0.2.99"]);
    assert_eq!(text(&none.stdout), "192.0.2.99 is not banned\n");

    // unban in one jail; unban of something not banned is exit 1 with the reason.
    let out = h.cli(&["unban", "198.51.100.4", "--jail", "sshd"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "unbanned 198.51.100.4 in sshd\n");
    let out = h.cli(&["unban", "198.51.100.4"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("198.51.100.4 is not banned"),
        "{}",
        text(&out.stderr)
    );

    // unban --all JAIL and unban --all.
    h.cli(&["ban", "sshd", "198.51.100.5"]);
    h.cli(&["ban", "sshd", "198.51.100.6"]);
    let out = h.cli(&["unban", "--all", "sshd"]);
    assert_eq!(
        text(&out.stdout),
        "lifted 2 bans in sshd\n",
        "{}",
        text(&out.stderr)
    );
    let out = h.cli(&["unban", "--all"]);
    assert_eq!(
        text(&out.stdout),
        "lifted 1 bans in every jail\n",
        "{}",
        text(&out.stderr)
    );
    assert_eq!(json(&h.cli(&["banned", "--json"])), serde_json::json!([]));

    // reload: a jail added to the configuration gets its object.
    let mut config = std::fs::read_to_string(&h.config).unwrap();
    config.push_str("\n[jail.vsftpd]\nenabled = true\nmaxretry = 7\n");
    std::fs::write(&h.config, config).unwrap();
    let out = h.cli(&["reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(h.property("vsftpd", "MaxRetry"), 7);
    assert_eq!(json(&h.cli(&["status", "vsftpd", "--json"]))["maxretry"], 7);
    // An invalid configuration is refused and the running one stays.
    std::fs::write(&h.config, "[jail.sshd]\nmaxretry = \"many\"\n").unwrap();
    let out = h.cli(&["reload"]);
    assert_eq!(code(&out), 1, "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("maxretry"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(h.property("sshd", "MaxRetry"), 3);
}

#[test]
fn busctl_reaches_every_method_and_property() {
    let h = Harness::start(BusPolicy::Shipped);
    let m = MANAGER_INTERFACE;
    let jails = h.call(MANAGER_PATH, m, "ListJails", &[]);
    let listed: Vec<(String, String)> = jails[0]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j[0].as_str().unwrap().to_string(),
                j[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        listed.contains(&(
            "nginx-http-auth".into(),
            "/org/banhound/Banhound1/jail/nginx_2dhttp_2dauth".into()
        )),
        "{listed:?}"
    );

    let ban = h.call(
        MANAGER_PATH,
        m,
        "Ban",
        &["sss", "sshd", "::ffff:198.51.100.9", "90m"],
    );
    assert_eq!(ban[0], "198.51.100.9");
    let (since, until) = (ban[1].as_u64().unwrap(), ban[2].as_u64().unwrap());
    assert_eq!(until - since, 5400);
    assert_eq!(ban[3], 1);
    let ban = h.call(
        &jail_path("nginx-http-auth"),
        JAIL_INTERFACE,
        "Ban",
        &["ss", "192.0.2.1", ""],
    );
    assert_eq!(ban[2], 0, "the jail's ban time is permanent: until 0");

    let status = h.call(MANAGER_PATH, m, "GetStatus", &[]);
    assert_eq!(status[0], env!("CARGO_PKG_VERSION"));
    assert_eq!(status[5], 2, "currently banned: {status}");
    assert_eq!(status[6], 2, "total banned: {status}");

    let is = h.call(MANAGER_PATH, m, "IsBanned", &["s", "198.51.100.9"]);
    assert_eq!(is[0][0][0], "sshd");
    assert_eq!(is[0][0][1], "198.51.100.9");
    let bans = h.bans("sshd");
    assert_eq!(bans[0][0], "198.51.100.9");
    assert_eq!(bans[0][1].as_u64().unwrap(), since);

    for (name, expected) in [
        ("Name", Value::from("sshd")),
        ("Enabled", Value::from(true)),
        ("CurrentlyFailed", Value::from(0)),
        ("TotalFailed", Value::from(0)),
        ("CurrentlyBanned", Value::from(1)),
        ("TotalBanned", Value::from(1)),
        ("FindTime", Value::from(600)),
        ("MaxRetry", Value::from(3)),
        ("BanTime", Value::from(3600)),
        ("Filter", Value::from("sshd")),
        ("Backend", Value::from("log-only")),
        ("IgnoreIP", serde_json::json!(["203.0.113.0/24"])),
    ] {
        assert_eq!(h.property("sshd", name), expected, "{name}");
    }

    // Runtime ignore list.
    let jail = jail_path("sshd");
    assert_eq!(
        h.call(&jail, JAIL_INTERFACE, "AddIgnoreIP", &["s", "192.0.2.0/28"])[0],
        true
    );
    assert_eq!(
        h.call(&jail, JAIL_INTERFACE, "AddIgnoreIP", &["s", "192.0.2.7/28"])[0],
        false
    );
    assert_eq!(
        h.property("sshd", "IgnoreIP"),
        serde_json::json!(["203.0.113.0/24", "192.0.2.0/28"])
    );
    let out = h.busctl(&[
        "call",
        "org.banhound.Banhound1",
        &jail,
        JAIL_INTERFACE,
        "Ban",
        "ss",
        "192.0.2.3",
        "",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("192.0.2.3 is never banned: listed in ignoreip"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        h.call(
            &jail,
            JAIL_INTERFACE,
            "RemoveIgnoreIP",
            &["s", "192.0.2.0/28"]
        )[0],
        true
    );
    assert_eq!(
        h.call(
            &jail,
            JAIL_INTERFACE,
            "RemoveIgnoreIP",
            &["s", "192.0.2.0/28"]
        )[0],
        false
    );
    assert_eq!(
        h.call(&jail, JAIL_INTERFACE, "Ban", &["ss", "192.0.2.3", "1m"])[0],
        "192.0.2.3"
    );

    // Unban in the jail, Unban everywhere, UnbanAll, Reload.
    h.call(&jail, JAIL_INTERFACE, "Unban", &["s", "192.0.2.3"]);
    let lifted = h.call(MANAGER_PATH, m, "Unban", &["ss", "198.51.100.9", ""]);
    assert_eq!(lifted[0], serde_json::json!(["sshd"]));
    assert_eq!(h.call(MANAGER_PATH, m, "UnbanAll", &["s", ""])[0], 1);
    assert_eq!(h.property("nginx-http-auth", "CurrentlyBanned"), 0);
    h.call(MANAGER_PATH, m, "Reload", &[]);
    assert_eq!(
        h.property("sshd", "TotalBanned"),
        2,
        "counters survive a reload"
    );
}

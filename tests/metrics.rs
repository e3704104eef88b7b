//! The daemon's metrics, end to end: the real `banhound daemon` (tests/support/daemon_lab.rs:
//! its own network namespace and nftables, a journald namespace fed by a process named sshd)
//! bans an attacker, then its figures are read the two ways an admin reads them — the
//! `[metrics] listen` endpoint over HTTP inside the daemon's namespace, and `banhound metrics`
//! over a private dbus-daemon with the shipped policy, as root and as nobody — and checked
//! for their values, the text format with Prometheus' own `promtool check metrics` and the
//! OpenMetrics form with the OpenMetrics parser of Prometheus' Python client.
//!
//! Everything started is removed by pid or name in `Drop`, also when a test fails. Needs
//! root, nft, ip, python3, dbus-daemon, setpriv, promtool (Debian's prometheus package),
//! Debian's python3-prometheus-client and /lib/systemd/systemd-journald.

#[path = "support/daemon_lab.rs"]
mod daemon_lab;
#[path = "support/netlab.rs"]
mod netlab;
#[path = "support/private_bus.rs"]
mod private_bus;

use daemon_lab::{sshd_config, Lab, ATTACKER};
use netlab::in_netns;
use private_bus::{as_nobody, BusPolicy, DbusDaemon};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The port the daemon's log says the endpoint listens on (it is asked for port 0).
fn endpoint_port(log: &str) -> u16 {
    let at = log
        .find("metrics: http://127.0.0.1:")
        .unwrap_or_else(|| panic!("no metrics endpoint in the log:\n{log}"));
    let rest = &log[at + "metrics: http://127.0.0.1:".len()..];
    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
    port.parse().unwrap()
}

/// One HTTP/1.1 request to 127.0.0.1:`port` inside namespace `ns`: (status line, body).
fn http(ns: &str, port: u16, request: &[u8]) -> (String, String) {
    in_netns(ns, || {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(request).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let response = String::from_utf8(response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        (head.lines().next().unwrap().to_string(), body.to_string())
    })
}

/// Runs `command` with `text` on its standard input: (success, what it printed).
fn check_with(command: &mut Command, text: &str) -> (bool, String) {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{command:?} (bash test.sh installs it): {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// `promtool check metrics` (Debian's prometheus package) on the text format.
fn promtool(text: &str) -> (bool, String) {
    check_with(Command::new("promtool").args(["check", "metrics"]), text)
}

/// prometheus_client's OpenMetrics parser (strict: `# EOF`, family names, types), printing
/// each family as "name type samples".
fn openmetrics_parser(text: &str) -> (bool, String) {
    // Debian's python3, where python3-prometheus-client is installed (not a pyenv one).
    check_with(
        Command::new("/usr/bin/python3").args([
            "-c",
            "import sys\n\
             from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
             for f in text_string_to_metric_families(sys.stdin.read()):\n    \
             print(f.name, f.type, len(f.samples))",
        ]),
        text,
    )
}

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

#[test]
fn the_endpoint_and_the_cli_serve_the_same_valid_figures_of_a_real_ban() {
    let bus = DbusDaemon::start(BusPolicy::Shipped);
    let mut lab = Lab::new(
        "metrics",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
            sshd_config(3, "10m")
        ),
    );
    let daemon = lab.start_with(false, &["--bus-address", &bus.address]);
    let port = endpoint_port(&daemon.log());
    let server = lab.server().name().to_string();

    let (status, before) = http(&server, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        has_line(&before, "banhound_bans_total{jail=\"sshd\"} 0"),
        "{before}"
    );

    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log("Banned 203.0.113.66 in jail sshd", 1);

    let (_, scraped) = http(&server, port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
    for line in [
        "banhound_bans_in_force{jail=\"sshd\"} 1",
        "banhound_bans_total{jail=\"sshd\"} 1",
        "banhound_failures_total{jail=\"sshd\"} 3",
        "banhound_state_error 0",
        "banhound_firewall_error 0",
    ] {
        assert!(has_line(&scraped, line), "{line} missing in:\n{scraped}");
    }
    // What the filter read: at least the three failures, each decided in measured time.
    let value = |name: &str| -> f64 {
        scraped
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {name} in:\n{scraped}"))
    };
    assert!(
        value("banhound_records_total{jail=\"sshd\"}") >= 3.0,
        "{scraped}"
    );
    assert!(
        value("banhound_matcher_seconds_total{jail=\"sshd\"}") > 0.0,
        "{scraped}"
    );
    for reason in [
        "no_match",
        "other_program",
        "not_syslog",
        "too_old",
        "ignoreregex",
    ] {
        value(&format!(
            "banhound_missed_total{{jail=\"sshd\",reason=\"{reason}\"}}"
        ));
    }
    assert!(!scraped.contains("# EOF"));
    let (valid, said) = promtool(&scraped);
    assert!(
        valid,
        "promtool rejects the endpoint's text: {said}\n{scraped}"
    );

    // Prometheus asks for OpenMetrics first.
    let (_, open) = http(
        &server,
        port,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,\
          text/plain;version=0.0.4;q=0.5\r\n\r\n",
    );
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(
        has_line(&open, "banhound_bans_total{jail=\"sshd\"} 1"),
        "{open}"
    );
    let (valid, said) = openmetrics_parser(&open);
    assert!(
        valid,
        "the OpenMetrics parser rejects the endpoint's text: {said}\n{open}"
    );
    assert!(
        said.lines().any(|l| l == "banhound_bans counter 1"),
        "{said}"
    );
    assert!(said.lines().any(|l| l == "banhound_jail info 1"), "{said}");

    // The CLI over the bus: the same figures, for root and for any user (read-only method).
    let cli = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "metrics"])
        .output()
        .unwrap();
    assert!(cli.status.success(), "{cli:?}");
    let printed = String::from_utf8(cli.stdout).unwrap();
    assert_eq!(printed, scraped);
    let (valid, said) = promtool(&printed);
    assert!(valid, "promtool rejects banhound metrics: {said}");
    let open_cli = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args([
            "--bus-address",
            &bus.address,
            "metrics",
            "--format",
            "openmetrics",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(open_cli.stdout).unwrap(), open);
    let nobody = as_nobody()
        .arg(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "metrics"])
        .output()
        .unwrap();
    assert!(nobody.status.success(), "{nobody:?}");
    assert_eq!(String::from_utf8(nobody.stdout).unwrap(), printed);

    // For the textfile collector: written whole under the name given, nothing left beside it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("banhound.prom");
    let written = Command::new(env!("CARGO_BIN_EXE_banhound"))
        .args(["--bus-address", &bus.address, "metrics", "--output"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(written.status.success(), "{written:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), printed);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn the_endpoint_refuses_what_is_not_a_scrape_and_keeps_serving() {
    let mut lab = Lab::new(
        "metricsbad",
        &format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\n{}",
            sshd_config(3, "10m")
        ),
    );
    let daemon = lab.start();
    let port = endpoint_port(&daemon.log());
    let server = lab.server().name().to_string();
    for (request, expected) in [
        (&b"GET / HTTP/1.1\r\n\r\n"[..], "HTTP/1.1 404 Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\n\r\n",
            "HTTP/1.1 405 Method Not Allowed",
        ),
        (b"\x00\xff\r\n\r\n", "HTTP/1.1 400 Bad Request"),
    ] {
        assert_eq!(http(&server, port, request).0, expected);
    }
    // A head that never ends is cut off at its size limit, not buffered without end.
    let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    assert_eq!(
        http(&server, port, &huge).0,
        "HTTP/1.1 413 Content Too Large"
    );
    // Clients that connect and send nothing take every connection slot (8), but only until
    // their deadline (10 s): a scrape behind them waits in the accept queue and is answered.
    let idle: Vec<TcpStream> = in_netns(&server, || {
        (0..8)
            .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect()
    });
    let asked = std::time::Instant::now();
    let (status, text) = http(&server, port, b"GET /metrics HTTP/1.0\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(promtool(&text).0);
    assert!(
        asked.elapsed() < Duration::from_secs(25),
        "{:?}",
        asked.elapsed()
    );
    drop(idle);
    assert!(daemon.stop(), "the daemon did not stop cleanly");
}

#[test]
fn an_endpoint_that_cannot_bind_is_logged_and_the_daemon_protects_anyway() {
    let mut lab = Lab::new(
        "metricsbusy",
        &format!(
            // Not an address of the namespace: bind fails with EADDRNOTAVAIL.
            "[metrics]\nlisten = \"192.0.2.250:9542\"\n{}",
            sshd_config(3, "10m")
        ),
    );
    let daemon = lab.start();
    assert!(daemon
        .log()
        .contains("cannot listen for metrics on 192.0.2.250:9542"));
    lab.fail_logins(ATTACKER, 3);
    daemon.wait_log("Banned 203.0.113.66 in jail sshd", 1);
    assert!(lab.is_banned(ATTACKER));
}

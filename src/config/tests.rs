//! Configuration loading against real files in a temporary tree.

use super::*;
use std::fs;

struct Tree {
    dir: tempfile::TempDir,
}

impl Tree {
    fn new() -> Self {
        let t = Tree {
            dir: tempfile::tempdir().unwrap(),
        };
        t.write(
            "usr/filters/sshd.toml",
            "journalmatch = ['_COMM=sshd']\nidentifiers = ['sshd']\nfailregex = ['^Failed password for \\S+ from <HOST> port \\d+$']\n[mode.aggressive]\nfailregex = ['^Unable to negotiate with <HOST> port \\d+']\n",
        );
        t.write(
            "usr/banhound.toml",
            "[defaults]\nbantime = \"10m\"\nmaxretry = 5\nignoreip = [\"192.0.2.0/24\"]\n\n[jail.sshd]\nenabled = true\nmaxretry = 4\n",
        );
        t
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.dir.path().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn paths(&self) -> ConfigPaths {
        ConfigPaths {
            defaults_dir: self.dir.path().join("usr"),
            config_dir: self.dir.path().join("etc"),
            main_file: None,
        }
    }

    fn load(&self) -> Result<Settings, String> {
        load(&self.paths()).map_err(|e| {
            e.to_string()
                .replace(&format!("{}/", self.dir.path().display()), "")
        })
    }
}

#[test]
fn shipped_defaults_alone() {
    let t = Tree::new();
    let s = t.load().unwrap();
    let j = s.jail("sshd").unwrap();
    assert!(j.enabled);
    assert_eq!(j.policy.maxretry, 4);
    assert_eq!(j.policy.bantime, BanTime::For(Duration::from_secs(600)));
    assert_eq!(
        j.source,
        JailSource::Journal {
            matches: vec!["_COMM=sshd".into()]
        }
    );
    // "auto": nftables until the daemon sees firewalld running.
    assert_eq!(j.backend, BackendKind::Nftables);
    assert!(j.backend_auto);
    assert_eq!(j.filter.filter.failregex_count(), 1);
}

#[test]
fn admin_layers_override_key_by_key() {
    let t = Tree::new();
    // An admin [defaults] does not beat the shipped [jail.sshd] maxretry...
    t.write(
        "etc/banhound.toml",
        "[defaults]\nmaxretry = 9\nbantime = \"1h\"\nignoreip = [\"2001:db8::/32\"]\n",
    );
    // ...but a drop-in for the jail does, and later drop-ins beat earlier ones.
    t.write(
        "etc/jail.d/10-a.toml",
        "[jail.sshd]\nmode = \"aggressive\"\nfindtime = \"1h\"\n",
    );
    t.write("etc/jail.d/20-b.toml", "[jail.sshd]\nfindtime = \"2h\"\n");
    let s = t.load().unwrap();
    let j = s.jail("sshd").unwrap();
    assert_eq!(j.policy.maxretry, 4);
    assert_eq!(j.policy.bantime, BanTime::For(Duration::from_secs(3600)));
    assert_eq!(j.policy.findtime, Duration::from_secs(7200));
    assert_eq!(j.filter.filter.failregex_count(), 2);
    let ignored: Vec<String> = j.policy.ignoreip.iter().map(|n| n.to_string()).collect();
    assert_eq!(ignored, vec!["192.0.2.0/24", "2001:db8::/32"]);
    assert_eq!(s.files.len(), 4);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let t = Tree::new();
    t.write(
        "etc/jail.d/x.toml",
        "[jail.sshd]\nenabled = true\nmaxretires = 3\n",
    );
    assert_eq!(
        t.load().unwrap_err(),
        "etc/jail.d/x.toml:3: jail.sshd.maxretires: unknown field `maxretires`, expected one of `enabled`, `filter`, `mode`, `journalmatch`, `logpath`, `maxretry`, `findtime`, `bantime`, `ignoreip`, `ignoreself`, `port`, `protocol`, `backend`, `blocktype`, `chains`, `escalation`, `ipv6_prefix`, `widest_ban_v4`, `widest_ban_v6`, `max_tracked`, `actions`"
    );
}

#[test]
fn daemon_section_sets_the_reconcile_interval() {
    let t = Tree::new();
    assert_eq!(
        t.load().unwrap().daemon.reconcile_interval,
        Some(Duration::from_secs(30))
    );
    for (text, expected) in [
        ("\"10s\"", Some(Duration::from_secs(10))),
        ("\"2m\"", Some(Duration::from_secs(120))),
        ("45", Some(Duration::from_secs(45))),
        ("\"off\"", None),
        ("\"0\"", None),
        ("0", None),
    ] {
        t.write(
            "etc/banhound.toml",
            &format!("[daemon]\nreconcile_interval = {text}\n"),
        );
        assert_eq!(
            t.load().unwrap().daemon.reconcile_interval,
            expected,
            "{text}"
        );
    }
    // The last file that sets it wins: the admin's over the shipped one.
    t.write(
        "usr/jail.d/a.toml",
        "[daemon]\nreconcile_interval = \"5m\"\n",
    );
    t.write(
        "etc/banhound.toml",
        "[daemon]\nreconcile_interval = \"1m\"\n",
    );
    assert_eq!(
        t.load().unwrap().daemon.reconcile_interval,
        Some(Duration::from_secs(60))
    );
}

#[test]
fn daemon_section_names_the_journal_directory() {
    let t = Tree::new();
    assert_eq!(t.load().unwrap().daemon.journal_directory, None);
    t.write(
        "etc/banhound.toml",
        "[daemon]\njournal_directory = \"/var/log/journal/remote\"\n",
    );
    assert_eq!(
        t.load().unwrap().daemon.journal_directory,
        Some(PathBuf::from("/var/log/journal/remote"))
    );
    t.write(
        "etc/banhound.toml",
        "[daemon]\n\njournal_directory = \"remote\"\n",
    );
    assert_eq!(
        t.load().unwrap_err(),
        "etc/banhound.toml:3: daemon.journal_directory: journal_directory must be an absolute path, such as \"/var/log/journal/remote\""
    );
}

#[test]
fn bad_values_name_their_line() {
    let cases: [(&str, String); 16] = [
        ("[daemon]\nreconcile_interval = \"soon\"\n", "etc/banhound.toml:2: daemon.reconcile_interval: ".into()),
        ("[daemon]\nreconcile_interval = \"0.5s\"\n", "etc/banhound.toml:2: daemon.reconcile_interval: reconcile_interval must be at least 1s, or \"off\"".into()),
        ("[daemon]\nreconcile_interval = -5\n", "etc/banhound.toml:2: daemon.reconcile_interval: negative duration -5".into()),
        ("[daemon]\nreconcile = \"30s\"\n", "etc/banhound.toml:2: daemon.reconcile: unknown field `reconcile`, expected `reconcile_interval` or `journal_directory`".into()),
        ("[jail.sshd]\nbantime = \"10 minuts\"\n", "etc/banhound.toml:2: jail.sshd.bantime: unknown unit \"minuts\"".into()),
        ("[defaults]\nignoreip = [\n  \"192.0.2.1\",\n  \"10.0.0.0/33\",\n]\n", "etc/banhound.toml:4: defaults.ignoreip: invalid address or network \"10.0.0.0/33\"".into()),
        ("[jail.sshd]\nmaxretry = 0\n", "etc/banhound.toml:2: jail.sshd.maxretry: maxretry must be at least 1".into()),
        ("[jail.sshd]\nbackend = \"iptables\"\n", "etc/banhound.toml:2: jail.sshd.backend: unknown backend \"iptables\"".into()),
        ("[jail.sshd]\nport = \"sshh\"\n", "etc/banhound.toml:2: jail.sshd.port: unknown service name \"sshh\"".into()),
        ("[jail.sshd]\nipv6_prefix = 8\n", "etc/banhound.toml:2: jail.sshd.ipv6_prefix: ipv6_prefix 8 is out of range".into()),
        ("[jail.sshd]\nenabled = \n", "etc/banhound.toml:2: jail.sshd.enabled: ".into()),
        ("[jail.sshd]\nfilter = \"nope\"\n", "etc/banhound.toml:2: jail.sshd.filter: no filter named \"nope\"".into()),
        ("[jail.sshd]\nmode = \"ddos\"\n", "mode: filter sshd has no mode \"ddos\"; its modes are: normal, aggressive".into()),
        ("[jail.web]\nlogpath = [\"/var/log/x\"]\njournalmatch = [\"_COMM=x\"]\nfilter = \"sshd\"\n", "etc/banhound.toml:3: jail.web.journalmatch: jail web sets both journalmatch and logpath".into()),
        ("[jail.\"bad name\"]\nfilter = \"sshd\"\n", "etc/banhound.toml:1: jail.\"bad name\": invalid jail name".into()),
        ("[jail.sshd.escalation]\nfactor = 2\nmultipliers = [1, 2]\n", "etc/banhound.toml:1: jail.sshd.escalation: escalation sets both factor and multipliers".into()),
    ];
    for (text, expected) in cases {
        let t = Tree::new();
        t.write("etc/banhound.toml", text);
        let err = match t.load() {
            Ok(_) => panic!("config accepted:\n{text}"),
            Err(e) => e,
        };
        let prefix = expected.trim_end();
        assert!(
            err.contains(prefix),
            "config:\n{text}\nexpected to contain: {prefix}\ngot: {err}"
        );
    }
}

#[test]
fn filter_without_address_tag_is_refused_at_its_line() {
    let t = Tree::new();
    t.write(
        "etc/filters/custom.toml",
        "description = 'x'\nfailregex = [\n  '^Login failed for root$',\n]\n",
    );
    t.write(
        "etc/jail.d/c.toml",
        "[jail.custom]\nenabled = true\nlogpath = [\"/var/log/app.log\"]\n",
    );
    assert_eq!(
        t.load().unwrap_err(),
        "etc/filters/custom.toml:3: failregex: filter custom: failregex #0: no address tag (<HOST>, <ADDR>, <IP4>, <IP6> or <DNS>): banhound could not tell whom to ban"
    );
}

#[test]
fn inline_filter_and_ports() {
    let t = Tree::new();
    t.write(
        "etc/jail.d/app.toml",
        "[jail.app]\nenabled = true\nlogpath = [\"/var/log/app.log\"]\nport = [\"http\", \"https\"]\nprotocol = \"tcp,udp\"\nblocktype = \"reject\"\nipv6_prefix = 64\n[jail.app.filter]\nformat = \"plain\"\nfailregex = ['^<ADDR> login failed$']\n[jail.app.escalation]\nmultipliers = [1, 4, 16]\nmaxtime = \"1w\"\nrandom_extra = \"10m\"\noverall_jails = true\n",
    );
    let s = t.load().unwrap();
    let j = s.jail("app").unwrap();
    assert_eq!(j.filter.format, crate::engine::prepare::LineFormat::Plain);
    assert!(j.rules.prefix_bans);
    assert_eq!(j.rules.blocktype, BlockType::Reject);
    assert_eq!(
        j.rules.ports,
        crate::firewall::Ports::Only {
            protocols: vec![Protocol::Tcp, Protocol::Udp],
            ports: vec![
                crate::firewall::PortRange {
                    first: 80,
                    last: 80
                },
                crate::firewall::PortRange {
                    first: 443,
                    last: 443
                }
            ]
        }
    );
    let esc = j.policy.escalation.as_ref().unwrap();
    assert_eq!(esc.maxtime, Some(Duration::from_secs(604_800)));
    assert_eq!(esc.random_extra, Some(Duration::from_secs(600)));
    assert!(esc.overall_jails);
    // Both off unless set.
    let sshd = s.jail("sshd").unwrap();
    assert!(sshd.policy.escalation.is_none());
}

#[test]
fn chains_default_to_input_and_errors_name_file_line_and_key() {
    let t = Tree::new();
    assert_eq!(
        t.load().unwrap().jail("sshd").unwrap().rules.chains,
        Chains::INPUT
    );
    // Like any jail key: [defaults] sets it for every jail, a jail's own table beats it.
    t.write(
        "etc/banhound.toml",
        "[defaults]\nchains = [\"input\", \"forward\"]\n",
    );
    let both = Chains {
        input: true,
        forward: true,
    };
    assert_eq!(t.load().unwrap().jail("sshd").unwrap().rules.chains, both);
    t.write(
        "etc/jail.d/gw.toml",
        "[jail.sshd]\nenabled = true\nchains = \"forward\"\n",
    );
    let chains = t.load().unwrap().jail("sshd").unwrap().rules.chains;
    assert!(chains.forward && !chains.input);
    t.write(
        "etc/jail.d/gw.toml",
        "[jail.sshd]\nenabled = true\n\nchains = [\"input\", \"FORWARD\"]\n",
    );
    assert_eq!(
        t.load().unwrap_err(),
        "etc/jail.d/gw.toml:4: jail.sshd.chains: unknown chain \"FORWARD\": expected \"input\" (traffic to this host) or \"forward\" (traffic routed through it)"
    );
}

#[test]
fn main_file_override_replaces_admin_dir() {
    let t = Tree::new();
    t.write("etc/banhound.toml", "[jail.sshd]\nmaxretry = 2\n");
    t.write("test.toml", "[jail.sshd]\nmaxretry = 7\n");
    let mut paths = t.paths();
    paths.main_file = Some(t.dir.path().join("test.toml"));
    let s = load(&paths).unwrap();
    assert_eq!(s.jail("sshd").unwrap().policy.maxretry, 7);
}

#[test]
fn malformed_toml_is_located() {
    let t = Tree::new();
    t.write(
        "etc/banhound.toml",
        "[jail.sshd]\nmaxretry = 3\nbantime = \"1h\n",
    );
    let err = t.load().unwrap_err();
    assert!(err.starts_with("etc/banhound.toml:3:"), "{err}");
}

/// Journal matches are checked when the configuration loads, so `check-config` refuses what
/// the daemon would refuse at start, at the word's line.
#[test]
fn journal_matches_are_checked_at_their_line() {
    let cases: [(&str, &str); 4] = [
        ("[jail.sshd]\njournalmatch = [\"NOEQUALS\"]\n", "etc/banhound.toml:2: jail.sshd.journalmatch: jail sshd: invalid journalmatch: match \"NOEQUALS\" is not of the form FIELD=VALUE"),
        ("[jail.sshd]\njournalmatch = [\n  \"_COMM=sshd\",\n  \"+\",\n  \"_comm=sshd\",\n]\n", "etc/banhound.toml:5: jail.sshd.journalmatch: jail sshd: invalid journalmatch: match \"_comm=sshd\": field name \"_comm\" is invalid"),
        ("[jail.sshd]\njournalmatch = [\n  \"_COMM=sshd\",\n  \"+\",\n]\n", "etc/banhound.toml:4: jail.sshd.journalmatch: jail sshd: invalid journalmatch: \"+\" at position 1 separates nothing"),
        ("[jail.sshd]\njournalmatch = [\"=sshd\"]\n", "etc/banhound.toml:2: jail.sshd.journalmatch: jail sshd: invalid journalmatch: match \"=sshd\" has an empty field name"),
    ];
    for (text, expected) in cases {
        let t = Tree::new();
        t.write("etc/banhound.toml", text);
        let err = t
            .load()
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(
            err.starts_with(expected),
            "config:\n{text}\nexpected: {expected}\ngot: {err}"
        );
    }
    // A filter's own journalmatch, used by a jail without one: refused in the filter file.
    let t = Tree::new();
    t.write(
        "etc/filters/custom.toml",
        "journalmatch = [\n  'SYSLOG_IDENTIFIER app',\n]\nfailregex = ['^fail from <HOST>$']\n",
    );
    t.write("etc/jail.d/c.toml", "[jail.custom]\nenabled = true\n");
    assert_eq!(
        t.load().unwrap_err(),
        "etc/filters/custom.toml:2: journalmatch: filter custom: invalid journalmatch: match \"SYSLOG_IDENTIFIER app\" is not of the form FIELD=VALUE"
    );
}

/// `read_to_string` says "stream did not contain valid UTF-8", nothing about where.
#[test]
fn bytes_that_are_not_utf8_are_refused_at_their_line_and_column() {
    let t = Tree::new();
    let p = t.dir.path().join("etc/banhound.toml");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, b"[jail.sshd]\nmaxretry = 3\nbantime = \"1\xffh\"\n").unwrap();
    assert_eq!(
        t.load().unwrap_err(),
        "etc/banhound.toml:3:13: jail.sshd.bantime: byte 0xff is not UTF-8 (configuration files are UTF-8 text)"
    );
    // The same in a filter file.
    let t = Tree::new();
    let p = t.dir.path().join("etc/filters/custom.toml");
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, b"failregex = [\n  '^\xc3(fail) from <HOST>$',\n]\n").unwrap();
    t.write(
        "etc/jail.d/c.toml",
        "[jail.custom]\nenabled = true\nlogpath = [\"/var/log/app.log\"]\n",
    );
    assert_eq!(
        t.load().unwrap_err(),
        "etc/filters/custom.toml:2:5: failregex: byte 0xc3 is not UTF-8 (configuration files are UTF-8 text)"
    );
}

/// A fail2ban filter's journalmatch (INI, no spans) is checked where a jail takes it.
#[test]
fn a_fail2ban_filters_journalmatch_is_checked_at_the_jail() {
    let t = Tree::new();
    t.write(
        "f2b/filter.d/food.conf",
        "[Definition]\nfailregex = ^fail from <HOST>$\njournalmatch = _SYSTEMD_UNIT=food.service +\n",
    );
    t.write(
        "etc/banhound.toml",
        &format!(
            "[fail2ban]\ndir = \"{}\"\n\n[jail.food]\nenabled = true\nfilter = \"fail2ban:food\"\n",
            t.dir.path().join("f2b").display()
        ),
    );
    let err = t.load().unwrap_err();
    assert!(
        err.starts_with("etc/banhound.toml:4: jail.food: jail food: the journalmatch of its filter fail2ban:food is invalid: \"+\" at position 1 separates nothing"),
        "{err}"
    );
}

#[test]
fn metrics_section_sets_the_listen_address() {
    let t = Tree::new();
    assert_eq!(t.load().unwrap().metrics.listen, None);
    for (text, expected) in [
        ("\"127.0.0.1:9542\"", Some("127.0.0.1:9542")),
        ("\"[::1]:9542\"", Some("[::1]:9542")),
        ("\"off\"", None),
    ] {
        t.write(
            "etc/banhound.toml",
            &format!("[metrics]\nlisten = {text}\n"),
        );
        assert_eq!(
            t.load().unwrap().metrics.listen,
            expected.map(|a| a.parse().unwrap()),
            "{text}"
        );
    }
    t.write("etc/banhound.toml", "[metrics]\nlisten = \"localhost\"\n");
    let error = t.load().unwrap_err();
    assert!(
        error.starts_with("etc/banhound.toml:2:")
            && error.contains("listen must be an address and port"),
        "{error}"
    );
    t.write("etc/banhound.toml", "[metrics]\nport = 9542\n");
    assert!(t.load().unwrap_err().contains("unknown field `port`"));
}

#[test]
fn actions_are_named_in_defaults_and_jails() {
    let t = Tree::new();
    t.write(
        "etc/banhound.toml",
        "[action.mail]\nkind = \"mail\"\nto = [\"root@localhost\"]\nwhois = true\n\n\
         [action.note]\nkind = \"command\"\nban = [\"/bin/true\", \"{ip}\"]\nunban = [\"/bin/true\"]\n\n\
         [defaults]\nactions = [\"mail\"]\n\n[jail.other]\nenabled = true\nfilter = \"sshd\"\nactions = [\"note\", \"mail\"]\n",
    );
    let s = t.load().unwrap();
    let names = |jail: &str| -> Vec<String> {
        s.jail(jail)
            .unwrap()
            .actions
            .iter()
            .map(|&i| s.actions[i].name.clone())
            .collect()
    };
    assert_eq!(names("sshd"), ["mail"]);
    assert_eq!(names("other"), ["note", "mail"]);
    let note = &s.actions[s.jail("other").unwrap().actions[0]];
    assert!(note.on_ban && note.on_unban);
    assert_eq!(note.rate_limit, None);
}

#[test]
fn action_errors_name_file_line_and_key() {
    for (text, expected) in [
        (
            "[defaults]\nactions = [\"nope\"]\n",
            "etc/banhound.toml:2: defaults.actions: jail sshd: no action named \"nope\"",
        ),
        (
            "[action.m]\nkind = \"mail\"\nto = [\"root@x\\r\\nBcc: y\"]\n",
            "etc/banhound.toml:3: action.m.to: \"root@x\\r\\nBcc: y\" is not a plain mail address",
        ),
        (
            "[action.c]\nkind = \"command\"\nban = [\"/bin/echo\", \"{ipp}\"]\n",
            "etc/banhound.toml:3: action.c.ban: unknown placeholder {ipp}",
        ),
        (
            "[action.c]\nkind = \"command\"\nban = [\"x\"]\nto = [\"root\"]\n",
            "etc/banhound.toml:4: action.c.to: action c: to is not a key of a command action",
        ),
        (
            "[action.w]\nkind = \"webhook\"\nurl = \"file:///etc/shadow\"\n",
            "etc/banhound.toml:3: action.w.url: action w: url \"file:///etc/shadow\" must be an http",
        ),
        (
            "[defaults]\nactions = [\"fail2ban:hostsdeny\"]\n",
            "etc/banhound.toml:2: defaults.actions: jail sshd: action \"fail2ban:hostsdeny\" names a fail2ban action: set its directory",
        ),
    ] {
        let t = Tree::new();
        t.write("etc/banhound.toml", text);
        let err = t.load().unwrap_err();
        assert!(err.starts_with(expected), "{text}\n{err}");
    }
}

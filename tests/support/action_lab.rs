//! Real components for the action tests (tests/actions.rs): an exim MTA with a private
//! configuration delivering into one mbox file in a temp directory, and small servers of our
//! own (HTTP for webhooks, whois) on loopback in the daemon's network namespace.
//!
//! Nothing here touches the host's mail system: exim runs with `-C` (a configuration,
//! spool and log of its own) and is only ever started by the daemon's `sendmail` argv. The
//! servers are stopped by pid in `Drop`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const EXIM: &str = "/usr/sbin/exim4";

/// exim with a private configuration: every mail for `@banhound.test` lands in one mbox.
pub struct Exim {
    dir: tempfile::TempDir,
}

impl Exim {
    pub fn new() -> Exim {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["spool", "log", "mail"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        // Delivery runs as nobody (exim refuses root), into a directory nobody may write.
        let status = Command::new("chown")
            .arg("nobody")
            .arg(root.join("mail"))
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(
            root.join("exim.conf"),
            format!(
                "primary_hostname = banhound.test\n\
                 spool_directory = {root}/spool\n\
                 log_file_path = {root}/log/%slog\n\
                 exim_user = root\nexim_group = root\nnever_users =\n\
                 trusted_users = root\nkeep_environment =\n\
                 domainlist local_domains = banhound.test : localhost\n\
                 qualify_domain = banhound.test\n\
                 begin routers\n\
                 local:\n  driver = accept\n  domains = +local_domains\n  transport = mbox\n\
                 begin transports\n\
                 mbox:\n  driver = appendfile\n  file = {root}/mail/mbox\n  envelope_to_add = true\n  create_file = anywhere\n  user = nobody\n  group = nogroup\n  mode = 0600\n",
                root = root.display()
            ),
        )
        .unwrap();
        Exim { dir }
    }

    /// The `sendmail -t -i` command line of this MTA, delivering at once.
    pub fn sendmail(&self) -> Vec<String> {
        vec![
            EXIM.into(),
            "-C".into(),
            self.config().display().to_string(),
            "-odi".into(),
            "-t".into(),
            "-i".into(),
        ]
    }

    /// The same without `-t`: recipients as arguments, as fail2ban's mailcmd gives them.
    pub fn sendmail_to(&self, recipient: &str) -> String {
        format!("{EXIM} -C {} -odi -i {recipient}", self.config().display())
    }

    fn config(&self) -> PathBuf {
        self.dir.path().join("exim.conf")
    }

    /// The delivered messages, in order (the mbox split at its `From ` lines).
    pub fn messages(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.path().join("mail/mbox")).unwrap_or_default();
        let mut messages: Vec<String> = Vec::new();
        for line in text.lines() {
            if line.starts_with("From ") {
                messages.push(String::new());
            } else if let Some(m) = messages.last_mut() {
                m.push_str(line);
                m.push('\n');
            }
        }
        messages
    }

    /// exim's main log, for failures.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log/mainlog")).unwrap_or_default()
    }
}

/// The header and the body of a message.
pub fn split_message(message: &str) -> (&str, &str) {
    message.split_once("\n\n").unwrap_or((message, ""))
}

/// One of the python servers in tests/support, in a network namespace, stopped by pid.
pub struct Server {
    child: Child,
    pub log: PathBuf,
}

impl Server {
    /// Starts `tests/support/SCRIPT PORT LOG` in `netns` and waits for its "ready".
    pub fn start(netns: &str, script: &str, port: u16, dir: &Path) -> Server {
        let log = dir.join(format!("{script}.log"));
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "python3"])
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/support")
                    .join(script),
            )
            .arg(port.to_string())
            .arg(&log)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "{script} did not start");
        Server { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A syslog line of sshd, dated now, as a file jail reads it.
pub fn sshd_line(message: &[u8]) -> Vec<u8> {
    let date = Command::new("date")
        .arg("+%b %e %H:%M:%S")
        .output()
        .unwrap()
        .stdout;
    let mut line = String::from_utf8(date)
        .unwrap()
        .trim_end()
        .as_bytes()
        .to_vec();
    line.extend_from_slice(b" server sshd[4242]: ");
    line.extend_from_slice(message);
    line.push(b'\n');
    line
}

/// Appends lines to a log file.
pub fn append(path: &Path, lines: &[Vec<u8>]) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for line in lines {
        file.write_all(line).unwrap();
    }
}

//! The whois report of a mail: the system's `whois` command, with a time limit, its output
//! treated as hostile.
//!
//! Whois servers answer with whatever text their registrant (or anyone on the path) chose:
//! fail2ban's mail-whois once had a command injection through it. Here the output is never
//! interpreted: each line is neutralised ([`neutralise`]: no control byte, no CR/LF), cut at
//! [`LINE_BYTES`], and the report at [`MAX_LINES`]. The address is the only argument given,
//! after the configured command, and is banhound's own rendering of an address.

use super::process::{self, Run};
use super::template::neutralise;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

/// The command run by default (`whois ADDRESS`).
pub const DEFAULT_COMMAND: &str = "whois";
/// A whois line longer than this is cut.
pub const LINE_BYTES: usize = 200;
/// A report longer than this many lines is cut.
pub const MAX_LINES: usize = 200;

/// Looks `address` up; the text for the mail, or why there is none (a failed lookup does
/// not stop the mail).
pub async fn report(command: &[String], address: IpAddr, timeout: Duration) -> String {
    let mut argv = command.to_vec();
    argv.push(address.to_string());
    match process::run(Run {
        argv: &argv,
        env: BTreeMap::new(),
        stdin: None,
        timeout,
    })
    .await
    {
        Ok(output) => render(&output),
        Err(e) => format!("(no whois report: {e})"),
    }
}

/// The neutralised, bounded text of a whois answer.
pub fn render(output: &[u8]) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut all = output.split(|&b| b == b'\n');
    for line in all.by_ref().take(MAX_LINES) {
        lines.push(neutralise(line.trim_ascii_end(), LINE_BYTES));
    }
    let rest = all.filter(|l| !l.trim_ascii().is_empty()).count();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if rest > 0 {
        lines.push(format!("({rest} more line(s) not shown)"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_output_is_neutralised_and_bounded() {
        let text =
            render(b"netname: X\rY\r\nBcc: evil@example.org\n\x1b]0;pwned\x07`id` $(reboot)\n");
        assert_eq!(
            text,
            "netname: X\\x0dY\nBcc: evil@example.org\n\\x1b]0;pwned\\x07`id` $(reboot)"
        );
        let many = "x\n".repeat(MAX_LINES + 50);
        let text = render(many.as_bytes());
        assert_eq!(text.lines().count(), MAX_LINES + 1);
        assert!(text.ends_with("(50 more line(s) not shown)"));
    }
}

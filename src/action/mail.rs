//! `kind = "mail"`: an alert mail through the system's `sendmail -t -i` (what every MTA
//! provides), optionally with a whois report, and a digest when bans come faster than
//! `rate_limit`.
//!
//! banhound writes the header itself: `To`, `From` and `Subject` from the configuration and
//! templates, with every value stripped of CR, LF and other control characters (a matched
//! line can add neither a header nor a recipient), a non-ASCII subject RFC 2047-encoded, and
//! the body declared as UTF-8. `-i` keeps a lone `.` line of a log from ending the message.
//! Recipients are checked with the configuration: plain addresses only, no display names
//! or lists that an MTA would parse further.

use super::process::{self, Run};
use super::template::{Placeholder, Template};
use super::{whois, ActionEvent, BanRecord};
use crate::display::display_target;
use std::collections::BTreeMap;
use std::time::Duration;

/// `sendmail -t -i`: recipients from the header, a dot line is not the end.
pub const DEFAULT_SENDMAIL: [&str; 3] = ["/usr/sbin/sendmail", "-t", "-i"];
const DEFAULT_SUBJECT: &str = "[banhound] {jail}: banned {ip} on {hostname}";
const DEFAULT_BODY: &str = "banhound on {hostname} banned {ip} in jail {jail}\n\
after {failures} failure(s) (offence {offence}), for {bantime}, until {until}.\n\
\n\
Matched log lines:\n\
{lines}\n";
/// SMTP's line limit is 998 bytes; longer body lines are wrapped.
const BODY_LINE_BYTES: usize = 900;
/// Subjects are cut here (MUAs show less anyway).
const SUBJECT_CHARS: usize = 200;

/// A mail address as the configuration may give it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient(String);

impl Recipient {
    /// `user@example.org` or a local `user`: nothing an MTA would split, quote or rewrite.
    pub fn parse(text: &str) -> Result<Recipient, String> {
        let (local, domain) = match text.split_once('@') {
            Some((l, d)) => (l, Some(d)),
            None => (text, None),
        };
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._%+-=".contains(c));
        let domain_ok = domain.is_none_or(|d| {
            !d.is_empty()
                && d.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
        });
        if local_ok && domain_ok && !local.starts_with('-') {
            Ok(Recipient(text.to_string()))
        } else {
            Err(format!(
                "{text:?} is not a plain mail address (user@example.org or a local user)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated mail action.
#[derive(Clone, Debug)]
pub struct MailAction {
    to: Vec<Recipient>,
    from: Option<Recipient>,
    from_name: Option<String>,
    subject: Template,
    body: Template,
    whois: Option<Vec<String>>,
    sendmail: Vec<String>,
}

impl MailAction {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        to: Vec<Recipient>,
        from: Option<Recipient>,
        from_name: Option<String>,
        subject: Option<Template>,
        body: Option<Template>,
        whois: bool,
        whois_command: Option<Vec<String>>,
        sendmail: Option<Vec<String>>,
    ) -> Result<MailAction, String> {
        let sendmail =
            sendmail.unwrap_or_else(|| DEFAULT_SENDMAIL.iter().map(|s| s.to_string()).collect());
        if sendmail.is_empty() {
            return Err("sendmail is an empty command".into());
        }
        let whois_command = whois_command.unwrap_or_else(|| vec![whois::DEFAULT_COMMAND.into()]);
        if whois && whois_command.is_empty() {
            return Err("whois_command is an empty command".into());
        }
        let default = |text| Template::parse(text).map_err(|e| e.to_string());
        Ok(MailAction {
            to,
            from,
            from_name: from_name.map(|n| header_text(&n)),
            subject: subject.map_or_else(|| default(DEFAULT_SUBJECT), Ok)?,
            body: body.map_or_else(|| default(DEFAULT_BODY), Ok)?,
            whois: whois.then_some(whois_command),
            sendmail,
        })
    }

    /// The mail of one ban (unbans send none).
    pub async fn send(
        &self,
        event: &ActionEvent,
        hostname: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let ActionEvent::Ban(ban) = event else {
            return Ok(());
        };
        let value = |p| event.value(p, hostname);
        let mut body = self.body.render(&value);
        if let Some(command) = &self.whois {
            let report = whois::report(command, ban.target.addr(), timeout / 2).await;
            body.push_str(&format!("\nwhois {}:\n{report}\n", ban.target.addr()));
        }
        let subject = self.subject.render(&value);
        self.deliver(&subject, &body, &ban.jail, timeout).await
    }

    /// One mail for the bans over the rate limit of one window.
    pub async fn send_digest(
        &self,
        bans: &[BanRecord],
        more: u64,
        hostname: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let total = bans.len() as u64 + more;
        let subject =
            format!("[banhound] {total} more ban(s) on {hostname} (over this alert's rate_limit)");
        let mut body = format!(
            "banhound on {hostname} banned {total} more address(es) within its rate_window than this alert sends mails for.\n\n"
        );
        for ban in bans {
            body.push_str(&format!(
                "{} {} {} failure(s), {} | {}\n",
                ban.jail,
                display_target(&ban.target),
                ban.failures,
                ban.bantime,
                ban.lines.first().map_or("", String::as_str)
            ));
        }
        if more > 0 {
            body.push_str(&format!("... and {more} more not listed.\n"));
        }
        let jail = bans.first().map_or("", |b| b.jail.as_str());
        self.deliver(&subject, &body, jail, timeout).await
    }

    async fn deliver(
        &self,
        subject: &str,
        body: &str,
        jail: &str,
        timeout: Duration,
    ) -> Result<(), String> {
        let message = self.message(subject, body, jail);
        let mut argv = self.sendmail.clone();
        if let Some(from) = &self.from {
            argv.push("-f".into());
            argv.push(from.as_str().to_string());
        }
        process::run(Run {
            argv: &argv,
            env: BTreeMap::new(),
            stdin: Some(message.into_bytes()),
            timeout,
        })
        .await
        .map(drop)
        .map_err(|e| e.to_string())
    }

    /// The whole message: header, blank line, body.
    pub fn message(&self, subject: &str, body: &str, jail: &str) -> String {
        let mut out = String::new();
        let to: Vec<&str> = self.to.iter().map(Recipient::as_str).collect();
        out.push_str(&format!("To: {}\r\n", to.join(", ")));
        if let Some(from) = &self.from {
            match &self.from_name {
                Some(name) if name.is_ascii() => out.push_str(&format!(
                    "From: \"{}\" <{}>\r\n",
                    name.replace(['"', '\\'], ""),
                    from.as_str()
                )),
                Some(name) => out.push_str(&format!(
                    "From: {} <{}>\r\n",
                    encode_word(name),
                    from.as_str()
                )),
                None => out.push_str(&format!("From: {}\r\n", from.as_str())),
            }
        }
        out.push_str(&format!(
            "Subject: {}\r\n",
            encode_word(&header_text(subject))
        ));
        out.push_str("MIME-Version: 1.0\r\n");
        out.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        out.push_str("Content-Transfer-Encoding: 8bit\r\n");
        out.push_str("Auto-Submitted: auto-generated\r\n");
        if !jail.is_empty() {
            out.push_str(&format!("X-Banhound-Jail: {}\r\n", header_text(jail)));
        }
        out.push_str("\r\n");
        for line in body.lines() {
            for piece in wrap(line, BODY_LINE_BYTES) {
                out.push_str(piece);
                out.push_str("\r\n");
            }
        }
        out
    }

    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.body.uses(placeholder) || self.subject.uses(placeholder)
    }
}

/// A header value: control characters (CR, LF above all) become spaces, cut at
/// [`SUBJECT_CHARS`].
fn header_text(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(SUBJECT_CHARS)
        .collect()
}

/// RFC 2047 `=?UTF-8?B?...?=` for non-ASCII text, in encoded words of at most 75 bytes.
fn encode_word(text: &str) -> String {
    if text.is_ascii() {
        return text.to_string();
    }
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 bytes of text make 60 of base64, inside the 75 an encoded word may have.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join("\r\n ")
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Splits a line into pieces of at most `max` bytes, at character boundaries.
fn wrap(line: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut rest = line;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        pieces.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    pieces.push(rest);
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action() -> MailAction {
        MailAction::new(
            vec![Recipient::parse("root@example.org").unwrap()],
            Some(Recipient::parse("banhound@example.org").unwrap()),
            Some("Bän\r\nBcc: x".into()),
            None,
            None,
            false,
            None,
            None,
        )
        .unwrap()
    }

    #[test]
    fn recipients_are_plain_addresses_only() {
        for ok in ["root", "root@localhost", "a.b+c@mail.example.org"] {
            assert!(Recipient::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a@b\r\nBcc: x",
            "Root <root@x>",
            "a@b, c@d",
            "-oQ/tmp",
            "",
            "a@",
            "a@b..c",
        ] {
            assert!(Recipient::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nothing_from_a_value_reaches_the_header_as_a_line() {
        let message = action().message(
            "banned 1.2.3.4\r\nBcc: evil@example.org",
            "body\n.\nend",
            "sshd",
        );
        let (header, body) = message.split_once("\r\n\r\n").unwrap();
        for line in header.split("\r\n") {
            assert!(
                line.starts_with(' ') || line.split_once(':').is_some(),
                "{line:?}"
            );
            assert!(!line.starts_with("Bcc"), "{line:?}");
        }
        assert!(header.contains("Subject: banned 1.2.3.4  Bcc: evil@example.org"));
        assert!(header.contains("From: =?UTF-8?B?"));
        assert_eq!(body, "body\r\n.\r\nend\r\n");
    }

    #[test]
    fn base64_and_wrapping() {
        assert_eq!(base64(b"Man"), "TWFu");
        assert_eq!(base64(b"Ma"), "TWE=");
        assert_eq!(base64(b"M"), "TQ==");
        assert_eq!(encode_word("Bän"), "=?UTF-8?B?QsOkbg==?=");
        let long = "é".repeat(1000);
        assert!(wrap(&long, BODY_LINE_BYTES)
            .iter()
            .all(|p| p.len() <= BODY_LINE_BYTES));
        assert_eq!(wrap(&long, BODY_LINE_BYTES).concat(), long);
    }
}

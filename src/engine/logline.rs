//! Splitting a syslog-style line into host, program, pid and message.
//!
//! Filters match against the message and sometimes the program name, and the same filter
//! should work whether its input came from a file or from the journal. Files give us
//! `DATE HOST IDENT[PID]: MESSAGE` (RFC 3164 as written by rsyslog, with a classic or an
//! ISO 8601 date) or `<PRI>VERSION DATE HOST APP PROCID MSGID SD MESSAGE` (RFC 5424); the
//! journal gives the fields separately, and [`SyslogLine::render_into`] joins them into the
//! classic form so a failregex written for files also matches journal entries.
//!
//! The parser borrows from the line and never allocates: it runs on every line of every file.
//! It is strict on purpose: a line that is not in syslog form (an nginx access line, a line
//! whose date sits in the middle) gives `None`, never a made-up host or ident that a filter
//! could then match on.
//!
//! A line without a host (`Nov 22 02:26:07 sshd[42]: msg`, written by some configurations)
//! is accepted when the first word after the date is itself a complete tag (`IDENT[PID]:` or
//! `IDENT:`). That is unambiguous because a host name never ends in `:`; a first word that
//! does is always read as the tag, and the host is then empty.

use std::ops::Range;

/// The header fields and message of a syslog line, borrowed from it (empty fields are
/// empty slices of the line too).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyslogLine<'a> {
    /// Empty when the line has no host (or RFC 5424's `-`).
    pub host: &'a [u8],
    /// The program: `sshd`, `postfix/smtpd`; empty for RFC 5424's `-`.
    pub ident: &'a [u8],
    pub pid: Option<&'a [u8]>,
    /// The rest of the line, without a trailing `\n` or `\r\n`.
    pub message: &'a [u8],
}

/// RFC 5424 field length limits (section 6).
const MAX_HOSTNAME: usize = 255;
const MAX_APP_NAME: usize = 48;
const MAX_PROCID: usize = 128;
const MAX_MSGID: usize = 32;

impl<'a> SyslogLine<'a> {
    /// Splits `line`, whose date the date detector found at `date`; the header starts right
    /// after it. Before the date only blanks (RFC 3164) or `<PRI>VERSION ` (RFC 5424) may
    /// appear.
    pub fn parse(line: &'a [u8], date: Range<usize>) -> Option<SyslogLine<'a>> {
        if date.start > date.end || date.end > line.len() {
            return None;
        }
        let prefix = trim_leading_blanks(&line[..date.start]);
        let header = &line[date.end..];
        if prefix.is_empty() {
            parse_rfc3164_header(header)
        } else if is_rfc5424_prefix(prefix) {
            parse_rfc5424_header(header)
        } else {
            None
        }
    }

    /// Writes `HOST IDENT[PID]: MESSAGE` into `buf`, replacing what it held; the host and
    /// its space are left out when the host is empty, `[PID]` when there is no pid, and
    /// `IDENT[PID]: ` when there is no ident.
    pub fn render_into(&self, buf: &mut Vec<u8>) {
        buf.clear();
        if !self.host.is_empty() {
            buf.extend_from_slice(self.host);
            buf.push(b' ');
        }
        if !self.ident.is_empty() {
            buf.extend_from_slice(self.ident);
            if let Some(pid) = self.pid {
                buf.push(b'[');
                buf.extend_from_slice(pid);
                buf.push(b']');
            }
            buf.extend_from_slice(b": ");
        }
        buf.extend_from_slice(self.message);
    }
}

/// ` HOST IDENT` as it followed the date of a classic syslog line, for reading the next
/// lines of the same program on the same host without taking the header apart again: a
/// file holds runs of them. [`SyslogLine::parse_repeated`] reads a line with it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepeatedHeader {
    /// ` HOST IDENT`, both fields as the general parser accepted them.
    text: Vec<u8>,
    host_len: usize,
}

impl RepeatedHeader {
    /// Holds the header of `parsed`, read by [`SyslogLine::parse`] from `line` with its
    /// date at `date`, if the line is classic (its date first) and names a host; otherwise
    /// gives `false` and holds what it held. Reuses its buffer.
    pub fn hold(&mut self, line: &[u8], date: Range<usize>, parsed: &SyslogLine<'_>) -> bool {
        if date.start != 0 || parsed.host.is_empty() {
            return false;
        }
        let host_len = parsed.host.len();
        let Some(text) = line.get(date.end..date.end + host_len + 2 + parsed.ident.len()) else {
            return false;
        };
        // What the general parser took as host and ident, in this layout.
        let layout = text[0] == b' '
            && &text[1..=host_len] == parsed.host
            && text[host_len + 1] == b' '
            && &text[host_len + 2..] == parsed.ident;
        if layout {
            self.text.clear();
            self.text.extend_from_slice(text);
            self.host_len = host_len;
        }
        layout
    }
}

impl<'a> SyslogLine<'a> {
    /// [`SyslogLine::parse`] for a classic line whose header begins as `header`'s did, the
    /// date starting the line: the host and ident are compared instead of checked byte by
    /// byte. It reads exactly what `parse` would, or gives `None` (then `parse` decides):
    /// only `[PID]: ` or `: ` may follow the ident, each ending the word as the general
    /// parser splits it, so the host and ident it would find are these same bytes.
    pub fn parse_repeated(
        line: &'a [u8],
        date: Range<usize>,
        header: &RepeatedHeader,
    ) -> Option<SyslogLine<'a>> {
        if date.start != 0 || date.end > line.len() {
            return None;
        }
        let after_date = &line[date.end..];
        let rest = after_date.strip_prefix(header.text.as_slice())?;
        let (pid, message) = match rest {
            [b':', b' ', message @ ..] => (None, message),
            [b'[', after_open @ ..] => {
                let digits = after_open.iter().take_while(|c| c.is_ascii_digit()).count();
                match &after_open[digits..] {
                    [b']', b':', b' ', message @ ..] if digits > 0 => {
                        (Some(&after_open[..digits]), message)
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(SyslogLine {
            host: &after_date[1..=header.host_len],
            ident: &after_date[header.host_len + 2..header.text.len()],
            pid,
            message: strip_line_end(message),
        })
    }
}

fn trim_leading_blanks(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(b.len());
    &b[start..]
}

fn strip_line_end(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Splits off the word at the start of `b` (up to a space or the end) and the rest after
/// that space.
fn split_word(b: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b' ', b) {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b[b.len()..]),
    }
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'/' | b'@' | b'-')
}

/// Host names, IPv4 and IPv6 addresses as syslog daemons write them.
fn is_host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-' | b':')
}

/// `IDENT[PID]:` or `IDENT:` as one word: (ident, pid).
fn parse_tag(word: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let body = word.strip_suffix(b":")?;
    let (ident, pid) = match body.strip_suffix(b"]") {
        Some(inner) => {
            let open = memchr::memrchr(b'[', inner)?;
            let pid = &inner[open + 1..];
            if pid.is_empty() || !pid.iter().all(u8::is_ascii_digit) {
                return None;
            }
            (&inner[..open], Some(pid))
        }
        None => (body, None),
    };
    if ident.is_empty() || !ident.iter().all(|&c| is_ident_byte(c)) {
        return None;
    }
    Some((ident, pid))
}

/// ` HOST IDENT[PID]: MESSAGE` or ` IDENT[PID]: MESSAGE` after the date.
fn parse_rfc3164_header(header: &[u8]) -> Option<SyslogLine<'_>> {
    let rest = header.strip_prefix(b" ")?;
    let (first, after_first) = split_word(rest);
    if let Some((ident, pid)) = parse_tag(first) {
        return Some(SyslogLine {
            host: &first[..0],
            ident,
            pid,
            message: strip_line_end(after_first),
        });
    }
    if first.is_empty() || first.ends_with(b":") || !first.iter().all(|&c| is_host_byte(c)) {
        return None;
    }
    let (tag, message) = split_word(after_first);
    let (ident, pid) = parse_tag(tag)?;
    Some(SyslogLine {
        host: first,
        ident,
        pid,
        message: strip_line_end(message),
    })
}

/// `<PRI>VERSION ` with PRI 0..=191 and a version of one to three digits.
fn is_rfc5424_prefix(prefix: &[u8]) -> bool {
    let Some(rest) = prefix.strip_prefix(b"<") else {
        return false;
    };
    let Some(close) = memchr::memchr(b'>', rest) else {
        return false;
    };
    let (pri, after) = (&rest[..close], &rest[close + 1..]);
    let Some(version) = after.strip_suffix(b" ") else {
        return false;
    };
    let pri_ok = (1..=3).contains(&pri.len())
        && pri.iter().all(u8::is_ascii_digit)
        && pri.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 191;
    let version_ok = (1..=3).contains(&version.len())
        && version[0] != b'0'
        && version.iter().all(u8::is_ascii_digit);
    pri_ok && version_ok
}

/// One RFC 5424 header field (printable US-ASCII, bounded length) and the rest after its
/// space.
fn header_field(b: &[u8], max: usize) -> Option<(&[u8], &[u8])> {
    let (field, rest) = split_word(b);
    if field.is_empty() || field.len() > max || !field.iter().all(|&c| (33..=126).contains(&c)) {
        return None;
    }
    Some((field, rest))
}

fn nil_to_empty(field: &[u8]) -> &[u8] {
    if field == b"-" {
        &field[..0]
    } else {
        field
    }
}

/// ` HOST APP PROCID MSGID SD[ MSG]` after the timestamp.
fn parse_rfc5424_header(header: &[u8]) -> Option<SyslogLine<'_>> {
    let rest = header.strip_prefix(b" ")?;
    let (host, rest) = header_field(rest, MAX_HOSTNAME)?;
    let (app, rest) = header_field(rest, MAX_APP_NAME)?;
    let (procid, rest) = header_field(rest, MAX_PROCID)?;
    let (_msgid, rest) = header_field(rest, MAX_MSGID)?;
    let after_sd = skip_structured_data(rest)?;
    let message = match after_sd {
        [] => after_sd,
        [b' ', msg @ ..] => msg.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(msg),
        _ => return None,
    };
    Some(SyslogLine {
        host: nil_to_empty(host),
        ident: nil_to_empty(app),
        pid: (procid != b"-").then_some(procid),
        message: strip_line_end(message),
    })
}

/// Skips `-` or one or more `[ID PARAM="VALUE" ...]` elements; inside a quoted value `\`
/// escapes the next byte, so `]` and `"` there do not end anything.
fn skip_structured_data(b: &[u8]) -> Option<&[u8]> {
    if let Some(rest) = b.strip_prefix(b"-") {
        return Some(rest);
    }
    let mut i = 0;
    while b.get(i) == Some(&b'[') {
        i += 1;
        let mut quoted = false;
        loop {
            match *b.get(i)? {
                b'\\' if quoted => i += 1,
                b'"' => quoted = !quoted,
                b']' if !quoted => break,
                _ => {}
            }
            i += 1;
        }
        i += 1;
    }
    (i > 0).then(|| &b[i..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::datetime::{DateDetector, Template, Zone};
    use crate::engine::time::Timestamp;

    /// Parses a line the way the file source will: date detector first, then the header.
    fn split(line: &str) -> Option<SyslogLine<'_>> {
        let now = Timestamp::from_secs(1_795_000_000);
        let date = DateDetector::new(Zone::Utc).detect(line.as_bytes(), now)?;
        SyslogLine::parse(line.as_bytes(), date.span)
    }

    fn fields(line: &str) -> (&str, &str, Option<&str>, &str) {
        let parsed = split(line).unwrap_or_else(|| panic!("not split: {line:?}"));
        let text = |b| std::str::from_utf8(b).unwrap();
        (
            text(parsed.host),
            text(parsed.ident),
            parsed.pid.map(text),
            text(parsed.message),
        )
    }

    /// Whether every field of `parsed` lies inside `line`.
    fn borrows_from(parsed: &SyslogLine<'_>, line: &[u8]) -> bool {
        let range = line.as_ptr_range();
        let inside = |b: &[u8]| {
            let r = b.as_ptr_range();
            range.start <= r.start && r.end <= range.end
        };
        [parsed.ident, parsed.message]
            .into_iter()
            .chain(parsed.pid)
            .chain([parsed.host])
            .all(inside)
    }

    #[test]
    fn sshd() {
        assert_eq!(
            fields("Nov 22 02:26:07 bastion sshd[1234]: Failed password for root from 203.0.113.5 port 51234 ssh2"),
            ("bastion", "sshd", Some("1234"), "Failed password for root from 203.0.113.5 port 51234 ssh2")
        );
        // OpenSSH 9.8+ logs the per-connection process as sshd-session; Debian 12 rsyslog
        // writes ISO 8601 dates.
        assert_eq!(
            fields("2026-11-22T02:26:07.123456+01:00 bastion sshd-session[42]: Invalid user admin from 198.51.100.7 port 4242\n"),
            ("bastion", "sshd-session", Some("42"), "Invalid user admin from 198.51.100.7 port 4242")
        );
    }

    #[test]
    fn postfix_dovecot_vsftpd_kernel_cron() {
        assert_eq!(
            fields("Nov  2 10:00:01 mx postfix/smtpd[3091]: warning: unknown[192.0.2.4]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"),
            ("mx", "postfix/smtpd", Some("3091"), "warning: unknown[192.0.2.4]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
        );
        assert_eq!(
            fields("Nov 22 02:26:07 mail dovecot: imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, rip=192.0.2.9"),
            ("mail", "dovecot", None, "imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<bob>, rip=192.0.2.9")
        );
        assert_eq!(
            fields("Nov 22 02:26:07 ftp vsftpd[811]: pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=192.0.2.3"),
            ("ftp", "vsftpd", Some("811"), "pam_unix(vsftpd:auth): authentication failure; logname= uid=0 euid=0 tty=ftp ruser=bob rhost=192.0.2.3")
        );
        assert_eq!(
            fields("Nov 22 02:26:07 fw kernel: [12345.678901] IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2"),
            ("fw", "kernel", None, "[12345.678901] IN=eth0 OUT= SRC=192.0.2.1 DST=192.0.2.2")
        );
        assert_eq!(
            fields("Nov 22 02:17:01 web CRON[5]: pam_unix(cron:session): session opened for user root(uid=0)"),
            ("web", "CRON", Some("5"), "pam_unix(cron:session): session opened for user root(uid=0)")
        );
        // IPv6 host, empty message.
        assert_eq!(
            fields("Nov 22 02:26:07 2001:db8::1 app:"),
            ("2001:db8::1", "app", None, "")
        );
    }

    #[test]
    fn lines_without_host() {
        assert_eq!(
            fields("Nov 22 02:26:07 sshd[42]: Connection closed by 192.0.2.1"),
            ("", "sshd", Some("42"), "Connection closed by 192.0.2.1")
        );
        assert_eq!(
            fields("Nov 22 02:26:07 kernel: x: y"),
            ("", "kernel", None, "x: y")
        );
    }

    #[test]
    fn rfc5424() {
        assert_eq!(
            fields("<34>1 2026-11-22T02:26:07.003Z bastion sshd 1234 - - Failed password for bob"),
            ("bastion", "sshd", Some("1234"), "Failed password for bob")
        );
        assert_eq!(
            fields(
                r#"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][x@1 a="q\]\"]"] BOMAn application event"#
            ),
            (
                "mymachine.example.com",
                "evntslog",
                None,
                "BOMAn application event"
            )
        );
        // BOM stripped, all-nil header, no message.
        assert_eq!(
            fields("<34>1 2026-11-22T02:26:07Z - - - - - \u{feff}hello"),
            ("", "", None, "hello")
        );
        assert_eq!(
            fields("<34>1 2026-11-22T02:26:07Z h a - m -"),
            ("h", "a", None, "")
        );
        for bad in [
            "<34>1 2026-11-22T02:26:07Z h a - m",
            "<34>1 2026-11-22T02:26:07Z h a - m [unterminated x=\"]\"",
            "<34>1 2026-11-22T02:26:07Z h a - m -x",
            "<34>1 2026-11-22T02:26:07Z h a - m [a][b]x",
            "<34>1 2026-11-22T02:26:07Z h  a - m - x",
            "<34>1 2026-11-22T02:26:07Z h \u{e9}\u{e9} - m - x",
        ] {
            assert_eq!(split(bad), None, "{bad:?}");
        }
        let long_app = format!("<34>1 2026-11-22T02:26:07Z h {} - m - x", "a".repeat(49));
        assert_eq!(split(&long_app), None);
    }

    #[test]
    fn not_syslog_lines() {
        for line in [
            // The date is in the middle: nothing before it may be a header.
            r#"203.0.113.9 - - [01/Oct/2015:12:46:34 -0400] "GET /wp-login.php HTTP/1.1" 404 1"#,
            "type=USER_AUTH msg=audit(1443703594.123:45): pid=1 res=failed",
            // Header forms that are not a tag.
            "2015/10/01 12:46:34 [error] 1234#0: *5 open() failed",
            "Nov 22 02:26:07 host just some text",
            "Nov 22 02:26:07 host sshd[12a]: x",
            "Nov 22 02:26:07 host sshd[]: x",
            "Nov 22 02:26:07 host [1]: x",
            "Nov 22 02:26:07 host ss(hd): x",
            "Nov 22 02:26:07 host sshd[1]:x",
            "Nov 22 02:26:07 ho$t sshd[1]: x",
            "Nov 22 02:26:07  host sshd[1]: x",
            "Nov 22 02:26:07host sshd[1]: x",
            "Nov 22 02:26:07 ",
            "Nov 22 02:26:07",
            "1443703594 login failed",
        ] {
            assert_eq!(split(line), None, "{line:?}");
        }
        // Nonsense spans are refused, not sliced.
        assert_eq!(SyslogLine::parse(b"abc", Range { start: 2, end: 1 }), None);
        assert_eq!(SyslogLine::parse(b"abc", 1..9), None);
        // A prefix that looks almost like RFC 5424.
        assert_eq!(
            SyslogLine::parse(b"<34> 2026-11-22T02:26:07Z h a - m - x", 5..25),
            None
        );
        assert_eq!(
            SyslogLine::parse(b"<934>1 2026-11-22T02:26:07Z h a - m - x", 7..27),
            None
        );
    }

    #[test]
    fn non_utf8_message_is_kept() {
        let line = b"Nov 22 02:26:07 h sshd[1]: user \xff\xfe from 192.0.2.1";
        let parsed = SyslogLine::parse(line, 0..15).unwrap();
        assert_eq!(parsed.message, b"user \xff\xfe from 192.0.2.1");
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut state: u64 = 0xD1B5_4A32_D192_ED03;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let alphabet = b"ab1 :[]<>-\"\\\n\xff";
        let mut parsed = 0;
        for _ in 0..100_000 {
            let len = (next() % 48) as usize;
            let mut line = b"<34>1 2026-11-22T02:26:07Z ".to_vec();
            line.extend((0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]));
            if let Some(p) = SyslogLine::parse(&line, 6..26) {
                assert!(borrows_from(&p, &line));
                parsed += 1;
            }
            let mut classic = b"Nov 22 02:26:07".to_vec();
            classic.extend_from_slice(&line[26..]);
            if let Some(p) = SyslogLine::parse(&classic, 0..15) {
                assert!(borrows_from(&p, &classic));
                parsed += 1;
            }
        }
        assert!(parsed > 100, "only {parsed} lines parsed");
    }

    #[test]
    fn renders_journal_form() {
        let mut buf = b"stale contents".to_vec();
        let entry = SyslogLine {
            host: b"bastion",
            ident: b"sshd-session",
            pid: Some(b"42"),
            message: b"Invalid user admin from 198.51.100.7",
        };
        entry.render_into(&mut buf);
        assert_eq!(
            buf,
            b"bastion sshd-session[42]: Invalid user admin from 198.51.100.7"
        );
        let capacity = buf.capacity();
        SyslogLine {
            host: b"",
            ident: b"kernel",
            pid: None,
            message: b"x",
        }
        .render_into(&mut buf);
        assert_eq!(buf, b"kernel: x");
        assert_eq!(buf.capacity(), capacity, "the buffer is reused");

        // Parsing a rendered line gives the fields back.
        let line = "Nov 22 02:26:07 mx postfix/smtpd[3091]: warning: unknown[192.0.2.4]: x";
        let parsed = split(line).unwrap();
        parsed.render_into(&mut buf);
        assert_eq!(buf, &line.as_bytes()[16..]);
        let date = DateDetector::new(Zone::Utc)
            .detect(line.as_bytes(), Timestamp::from_secs(1_795_000_000))
            .unwrap();
        assert_eq!(date.template, Template::Syslog);
    }
}

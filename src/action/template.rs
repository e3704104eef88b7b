//! Templates of actions (`"Banned {ip} in {jail}"`) and what makes attacker-controlled text
//! safe to put in them.
//!
//! A template is parsed once, with the configuration, so an unknown placeholder is an error
//! naming the file and key instead of a literal `{ipp}` in every alert. Rendering never
//! re-parses what it inserts: a matched line containing `{ip}` stays that text.
//!
//! Every value derived from logs or whois passes through [`neutralise`] first: control bytes
//! (CR, LF, NUL, ESC, …) become visible `\xNN` text and each value is cut at a size limit, so
//! what reaches a mail, a JSON body or a command line can carry neither a line break nor a
//! terminal escape of the attacker's choosing.

use std::fmt;

/// The values a template may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// The jail's name.
    Jail,
    /// The banned address or network (`192.0.2.1`, `2001:db8::/64`).
    Ip,
    /// `ban` or `unban`.
    Event,
    /// Failures in the window that led to the ban.
    Failures,
    /// 1 for a first ban, 2 for the second within `forget_after`, …
    Offence,
    /// The ban's length (`10m`, `permanent`).
    Bantime,
    /// When the ban started (RFC 3339).
    Time,
    /// When it ends (RFC 3339, or `never`).
    Until,
    /// The matched log lines, one per line.
    Lines,
    /// The user the filter named (`<F-USER>`) in the failures; empty when none did.
    User,
    /// Why an unban happened (`expired`, `manual`, …); empty for a ban.
    Reason,
    /// This host's name.
    Hostname,
}

impl Placeholder {
    pub const ALL: [Placeholder; 12] = [
        Placeholder::Jail,
        Placeholder::Ip,
        Placeholder::Event,
        Placeholder::Failures,
        Placeholder::Offence,
        Placeholder::Bantime,
        Placeholder::Time,
        Placeholder::Until,
        Placeholder::Lines,
        Placeholder::User,
        Placeholder::Reason,
        Placeholder::Hostname,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Placeholder::Jail => "jail",
            Placeholder::Ip => "ip",
            Placeholder::Event => "event",
            Placeholder::Failures => "failures",
            Placeholder::Offence => "offence",
            Placeholder::Bantime => "bantime",
            Placeholder::Time => "time",
            Placeholder::Until => "until",
            Placeholder::Lines => "lines",
            Placeholder::User => "user",
            Placeholder::Reason => "reason",
            Placeholder::Hostname => "hostname",
        }
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        Placeholder::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Why a template does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown placeholder {{{0}}} (known: {known}; write {{{{ for a literal brace)", known = known_names())]
    Unknown(String),
    #[error("unterminated placeholder after {0:?} (write {{{{ for a literal brace)")]
    Unterminated(String),
}

fn known_names() -> String {
    Placeholder::ALL
        .iter()
        .map(|p| format!("{{{}}}", p.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parses `{name}` placeholders; `{{` and `}}` are literal braces.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(pos) = rest.find(['{', '}']) {
            literal.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("{{") {
                literal.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                literal.push('}');
                rest = after;
            } else if let Some(after) = tail.strip_prefix('{') {
                let end = after
                    .find('}')
                    .ok_or_else(|| TemplateError::Unterminated(literal.clone()))?;
                let name = &after[..end];
                let placeholder = Placeholder::from_name(name)
                    .ok_or_else(|| TemplateError::Unknown(name.to_string()))?;
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Value(placeholder));
                rest = &after[end + 1..];
            } else {
                // A lone `}` is literal, as in most template languages.
                literal.push('}');
                rest = &tail[1..];
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template { pieces })
    }

    /// Fills the template; `value` gives each placeholder's (already neutralised) text.
    pub fn render(&self, value: &dyn Fn(Placeholder) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Value(p) => out.push_str(&value(*p)),
            }
        }
        out
    }

    /// Whether the template names `placeholder` (a mail without `{lines}` needs no lines).
    pub fn uses(&self, placeholder: Placeholder) -> bool {
        self.pieces.contains(&Piece::Value(placeholder))
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => f.write_str(&t.replace('{', "{{").replace('}', "}}"))?,
                Piece::Value(p) => write!(f, "{{{}}}", p.name())?,
            }
        }
        Ok(())
    }
}

/// Makes untrusted bytes (a log line, whois output) safe to insert anywhere: invalid UTF-8
/// replaced, every control character (including CR, LF, NUL, ESC and the C1 range) written
/// as `\xNN`/`\u{NNNN}` text, cut to at most `max_bytes` (at a character boundary, marked
/// with `…`). Tabs become spaces.
pub fn neutralise(raw: &[u8], max_bytes: usize) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len().min(max_bytes));
    for c in text.chars() {
        let piece = match c {
            '\t' => " ".to_string(),
            c if (c as u32) < 0x80 && c.is_ascii_control() => format!("\\x{:02x}", c as u32),
            // C1 controls, and the line/paragraph separators some renderers break lines at.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' => {
                format!("\\u{{{:04x}}}", c as u32)
            }
            c => c.to_string(),
        };
        if out.len() + piece.len() > max_bytes {
            out.push('…');
            break;
        }
        out.push_str(&piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: Placeholder) -> String {
        match p {
            Placeholder::Ip => "192.0.2.1".into(),
            Placeholder::Jail => "sshd".into(),
            Placeholder::Lines => "user {ip} $(reboot)".into(),
            _ => String::new(),
        }
    }

    #[test]
    fn placeholders_are_filled_and_inserted_text_is_not_parsed_again() {
        let t = Template::parse("Banned {ip} in {jail}: {lines} {{literal}}").unwrap();
        assert_eq!(
            t.render(&values),
            "Banned 192.0.2.1 in sshd: user {ip} $(reboot) {literal}"
        );
        assert!(t.uses(Placeholder::Lines));
        assert!(!t.uses(Placeholder::Failures));
    }

    #[test]
    fn unknown_and_unterminated_placeholders_are_errors() {
        assert_eq!(
            Template::parse("{ipp}"),
            Err(TemplateError::Unknown("ipp".into()))
        );
        assert!(matches!(
            Template::parse("x {ip"),
            Err(TemplateError::Unterminated(_))
        ));
    }

    #[test]
    fn control_bytes_become_visible_text_and_size_is_limited() {
        assert_eq!(
            neutralise(b"a\r\nBcc: x\0\x1b[31m\xff", 100),
            "a\\x0d\\x0aBcc: x\\x00\\x1b[31m\u{fffd}"
        );
        assert_eq!(
            neutralise("\u{85}\u{2028}".as_bytes(), 100),
            "\\u{0085}\\u{2028}"
        );
        let long = neutralise(&[b'a'; 5000], 100);
        assert!(long.len() <= 100 + '…'.len_utf8());
        assert!(long.ends_with('…'));
    }
}

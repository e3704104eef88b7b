//! Tag compilation: fail2ban's `<HOST>`, `<F-NAME>…</F-NAME>`, `<SKIPLINES>` and friends
//! rewritten into named groups, Python's regex dialect into the `regex` crate's, and the
//! result compiled on the engine it needs, with the group of every tag recorded so that a
//! match can be read back as an address, a user, a session id.

use super::backtracking::{relax_for_literals, Engine, EngineKind, BACKTRACK_LIMIT};
use super::spans::Slots;
use super::split::Split;
use super::{Dialect, FilterErrorKind};
use regex::bytes::RegexBuilder;
use std::borrow::Cow;

// Tag patterns. Address text is validated by parsing after the match, so the patterns only
// need to find the right span. They avoid counted repetitions (`{0,63}`), which multiply the
// NFA's states and with them the cost of every capture.
pub(super) const IP4: &str = r"(?-u:\b)\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?-u:\b)";
// IP6 takes at most four hex digits per group, as an address has: after an address written
// with its port (`2001:db8::1234:58430`), the group that cannot be one is given back, and the
// search backs off to the longest address the rest of the regex accepts, as fail2ban's does.
pub(super) const IP6: &str =
    r"\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4})+(?:\.[0-9]{1,3}){0,3}(?:%[0-9A-Za-z_.\-]+)?\]?";
pub(super) const DNS: &str = r"[A-Za-z0-9][A-Za-z0-9_.\-]*";

pub(super) const ADDRESS_GROUP_PREFIX: &str = "__addr";
pub(super) const FIELD_GROUP_PREFIX: &str = "F_";
pub(super) const CONTENT_FIELD: &str = "CONTENT";
pub(super) const USER_FIELD: &str = "USER";
// fail2ban's multi-line fields: a session id, "not a failure", "end of session", "success".
pub(super) const MLFID_FIELD: &str = "MLFID";
pub(super) const NOFAIL_FIELD: &str = "NOFAIL";
pub(super) const FORGET_FIELD: &str = "MLFFORGET";
pub(super) const GAINED_FIELD: &str = "MLFGAINED";
/// fail2ban's fallback for `<F-USER>`: `<F-ALT_USER>`, `<F-ALT_USER1>`, ….
pub(super) const ALT_USER_FIELD: &str = "ALT_USER";
pub(super) const CIDR_GROUP_PREFIX: &str = "__cidr";
pub(super) const SKIP_GROUP_PREFIX: &str = "__skip";

// A CIDR prefix length and a whole subnet, for fail2ban's <CIDR> and <SUBNET>.
pub(super) const CIDR: &str = r"\d{1,3}";

/// Translates tags into regex syntax and compiles. `multi_line`: the regex searches a
/// window of lines joined with `\n`, so `^` and `$` match at each line's start and end.
pub(super) fn compile_tagged(
    pattern: &str,
    dialect: Dialect,
    multi_line: bool,
) -> Result<CompiledRegex, FilterErrorKind> {
    let mut translated = translate_tags(pattern, EngineKind::Linear, dialect)?;
    if translated.needs_backtracking {
        translated = translate_tags(pattern, EngineKind::Backtracking, dialect)?;
    }
    let regex = if translated.needs_backtracking {
        let flagged = if multi_line {
            format!("(?m){}", translated.pattern)
        } else {
            translated.pattern.clone()
        };
        let regex = fancy_regex::RegexBuilder::new(&flagged)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(32 << 20)
            .build()
            .map_err(|e| compile_error(pattern, &e.to_string()))?;
        let gate = RegexBuilder::new(&relax_for_literals(&translated.pattern))
            .unicode(false)
            .multi_line(multi_line)
            .size_limit(32 << 20)
            .build()
            .ok();
        Engine::Backtracking { regex, gate }
    } else {
        let regex = RegexBuilder::new(&translated.pattern)
            // Log lines are bytes; `.` must not match a newline inside a journal MESSAGE, so a
            // message with an embedded "\n" cannot smuggle a second line past an anchor.
            .unicode(false)
            .multi_line(multi_line)
            .size_limit(32 << 20)
            .build()
            .map_err(|e| compile_error(pattern, &e.to_string()))?;
        // A window's `^`/`$` are the lines', which the split does not model.
        let split = (!multi_line)
            .then(|| Split::new(&translated.pattern, &regex))
            .flatten()
            .map(Box::new);
        Engine::Linear { regex, split }
    };
    let mut address_groups = Vec::new();
    let mut cidr_groups = Vec::new();
    let mut skip_groups = Vec::new();
    let mut user_group = None;
    let mut alt_user_groups = Vec::new();
    let mut fields = Vec::new();
    let mut mlfid_group = None;
    let (mut nofail_groups, mut forget_groups, mut gained_groups) =
        (Vec::new(), Vec::new(), Vec::new());
    for (i, name) in regex.capture_names().into_iter().enumerate() {
        let Some(name) = name else { continue };
        if name.starts_with(ADDRESS_GROUP_PREFIX) {
            address_groups.push(i);
        } else if name.starts_with(CIDR_GROUP_PREFIX) {
            cidr_groups.push(i);
        } else if name.starts_with(SKIP_GROUP_PREFIX) {
            skip_groups.push(i);
        } else if let Some(field) = name.strip_prefix(FIELD_GROUP_PREFIX) {
            match field {
                USER_FIELD => user_group = Some(i),
                MLFID_FIELD => mlfid_group = Some(i),
                NOFAIL_FIELD => nofail_groups.push(i),
                FORGET_FIELD => forget_groups.push(i),
                GAINED_FIELD => gained_groups.push(i),
                CONTENT_FIELD => {}
                alt if alt
                    .strip_prefix(ALT_USER_FIELD)
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) =>
                {
                    alt_user_groups.push(i)
                }
                _ => fields.push((field.to_string(), i)),
            }
        }
    }
    let user_groups: Vec<usize> = user_group.into_iter().chain(alt_user_groups).collect();
    let literal_pattern = if translated.needs_backtracking {
        relax_for_literals(&translated.pattern)
    } else {
        translated.pattern.clone()
    };
    Ok(CompiledRegex {
        regex,
        translated: literal_pattern,
        address_groups,
        cidr_groups,
        user_groups,
        fields,
        mlfid_group,
        nofail_groups,
        forget_groups,
        gained_groups,
        skip_groups,
        source: pattern.to_string(),
    })
}

/// A regex that does not compile, told as the user wrote it: the engines' messages quote
/// the translated pattern (tags expanded into internal groups such as `(?P<__addr0>…)`) and
/// point into it, which says nothing to whoever wrote `<HOST>`. Only their reason is kept.
fn compile_error(written: &str, engine_message: &str) -> FilterErrorKind {
    let reason = engine_message
        .lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map(str::to_string)
        .unwrap_or_else(|| {
            let message = one_line(engine_message);
            // fancy-regex's own parser: "Parsing error at position N: reason".
            match message.split_once(": ") {
                Some((position, reason)) if position.starts_with("Parsing error at position") => {
                    reason.to_string()
                }
                _ => message,
            }
        });
    FilterErrorKind::Regex(format!("{reason} in `{written}`"))
}

pub(super) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(super) struct Translated {
    pub(super) pattern: String,
    /// Uses lookarounds, backreferences or conditionals.
    pub(super) needs_backtracking: bool,
}

/// Rewrites `<HOST>`-style tags and `<F-NAME>…</F-NAME>` into named groups.
pub(super) fn translate_tags(
    pattern: &str,
    engine: EngineKind,
    dialect: Dialect,
) -> Result<Translated, FilterErrorKind> {
    let mut out = String::with_capacity(pattern.len() + 128);
    let mut open_fields: Vec<String> = Vec::new();
    let mut seen_fields: Vec<String> = Vec::new();
    let mut address_tags = 0usize;
    let mut cidr_tags = 0usize;
    let mut skip_tags = 0usize;
    let mut needs_backtracking = false;
    let mut in_class = false;
    let mut rest = pattern;
    // A group named in a backreference or a condition: fail2ban names the group of
    // `<F-USER>` "user", banhound "F_USER".
    let group_alias = |name: &str, seen: &[String]| -> String {
        match seen.iter().find(|f| f.eq_ignore_ascii_case(name)) {
            Some(f) => format!("{FIELD_GROUP_PREFIX}{f}"),
            None => name.to_string(),
        }
    };
    loop {
        let specials: &[char] = if in_class {
            &['\\', '[', ']', '&', '~']
        } else {
            &['\\', '<', '(', '[', '{']
        };
        let Some(pos) = rest.find(specials) else {
            break;
        };
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if in_class && !tail.starts_with('\\') {
            // Python takes '[', '&&', '~~' in a class literally; the regex crate would read
            // a nested class or a set operation.
            match tail.as_bytes()[0] {
                b']' => {
                    in_class = false;
                    out.push(']');
                }
                c => {
                    out.push('\\');
                    out.push(char::from(c));
                }
            }
            rest = &tail[1..];
            continue;
        }
        if let Some(class) = tail.strip_prefix('[') {
            in_class = true;
            out.push('[');
            let mut class = class;
            if let Some(c) = class.strip_prefix('^') {
                out.push('^');
                class = c;
            }
            // A ']' first in a class is a literal.
            if let Some(c) = class.strip_prefix(']') {
                out.push_str("\\]");
                class = c;
            }
            rest = class;
            continue;
        }
        if let Some(after) = tail.strip_prefix('{') {
            // Python reads `{,n}` as `{0,n}` and a brace that is no quantifier literally.
            match after.find('}').map(|e| &after[..e]) {
                Some(q) if is_quantifier(q) => {
                    out.push('{');
                    if q.starts_with(',') {
                        out.push('0');
                    }
                    out.push_str(q);
                    out.push('}');
                    rest = &after[q.len() + 1..];
                }
                _ => {
                    out.push_str("\\{");
                    rest = after;
                }
            }
            continue;
        }
        if let Some(after) = tail.strip_prefix('\\') {
            let next = after.chars().next().map_or(0, char::len_utf8);
            match after.as_bytes().first() {
                // Python's end of string.
                Some(b'Z') => out.push_str("\\z"),
                // Python's `\<` and `\>` are the characters; the regex crate's are word
                // boundaries.
                Some(&c @ (b'<' | b'>')) => out.push(char::from(c)),
                Some(b'1'..=b'9') | Some(b'k') => {
                    needs_backtracking = true;
                    out.push_str(&tail[..1 + next]);
                }
                // Otherwise an escape: copy it and the escaped character untouched.
                _ => out.push_str(&tail[..1 + next]),
            }
            rest = &after[next..];
            continue;
        }
        if let Some(after_paren) = tail.strip_prefix('(') {
            if let Some(name) = tail.strip_prefix("(?P=") {
                // Python's named backreference.
                let end = name.find(')').unwrap_or(name.len());
                out.push_str(&format!("\\k<{}>", group_alias(&name[..end], &seen_fields)));
                needs_backtracking = true;
                rest = name.get(end + 1..).unwrap_or("");
                continue;
            }
            if let Some(cond) = tail.strip_prefix("(?(") {
                needs_backtracking = true;
                let end = cond.find(')').unwrap_or(cond.len());
                let name = &cond[..end];
                // fancy-regex reads a bare name as a regex to try, not a group to test.
                if name.bytes().all(|b| b.is_ascii_digit()) || name.starts_with('<') {
                    out.push_str(&tail[..3 + end + 1]);
                } else {
                    out.push_str(&format!("(?(<{}>)", group_alias(name, &seen_fields)));
                }
                rest = cond.get(end + 1..).unwrap_or("");
                continue;
            }
            for look in ["(?=", "(?!", "(?<=", "(?<!", "(?>"] {
                if tail.starts_with(look) {
                    needs_backtracking = true;
                }
            }
            out.push('(');
            rest = after_paren;
            continue;
        }
        let Some(end) = tail.find('>') else {
            out.push_str(tail);
            rest = "";
            break;
        };
        let tag = &tail[1..end];
        let consumed = end + 1;
        if out.ends_with("?P") || out.ends_with("(?") || tag.contains('<') {
            // A group name, a lookbehind, or a '<' that opens nothing: not a tag.
            out.push('<');
            rest = &tail[1..];
            continue;
        }
        if let Some(field) = tag.strip_prefix("F-").and_then(|t| t.strip_suffix('/')) {
            // fail2ban's self-closing field: one word.
            let name = field_name(field);
            if !is_tag_name(field) || seen_fields.contains(&name) {
                return Err(FilterErrorKind::UnknownTag(tag.to_string()));
            }
            out.push_str(&format!("(?P<{FIELD_GROUP_PREFIX}{name}>\\S+)"));
            seen_fields.push(name);
        } else if let Some(field) = tag.strip_prefix("/F-") {
            let name = field_name(field);
            match open_fields.pop() {
                Some(open) if open == name => out.push(')'),
                _ => return Err(FilterErrorKind::Unopened(format!("F-{field}"))),
            }
        } else if let Some(field) = tag.strip_prefix("F-") {
            let name = field_name(field);
            if !is_tag_name(field) {
                return Err(FilterErrorKind::UnknownTag(tag.to_string()));
            }
            if seen_fields.contains(&name) {
                return Err(FilterErrorKind::DuplicateField(format!("F-{field}")));
            }
            out.push_str(&format!("(?P<{FIELD_GROUP_PREFIX}{name}>"));
            seen_fields.push(name.clone());
            open_fields.push(name);
        } else if tag == "SKIPLINES" {
            // A line break, then any number of whole lines (as few as will do); captured so
            // that the lines it passed over stay in the window for other matches.
            out.push_str(&format!(
                "(?P<{SKIP_GROUP_PREFIX}{skip_tags}>\\n(?:[^\\n]*\\n)*?)"
            ));
            skip_tags += 1;
        } else if tag == "CIDR" {
            out.push_str(&format!("(?P<{CIDR_GROUP_PREFIX}{cidr_tags}>{CIDR})"));
            cidr_tags += 1;
        } else if let Some(sub) = address_tag(tag, engine) {
            out.push_str(&format!("(?P<{ADDRESS_GROUP_PREFIX}{address_tags}>{sub})"));
            if tag == "SUBNET" {
                // An optional prefix length: with one, the network is what is banned.
                out.push_str(&format!("(?:/(?P<{CIDR_GROUP_PREFIX}{cidr_tags}>{CIDR}))?"));
                cidr_tags += 1;
            }
            address_tags += 1;
        } else if dialect == Dialect::Banhound
            && is_tag_name(tag)
            && tag.chars().any(|c| c.is_ascii_uppercase())
        {
            // fail2ban keeps unknown tags as text (haproxy logs a literal "<NOSRV>");
            // banhound's own filters are checked for typos instead.
            return Err(FilterErrorKind::UnknownTag(tag.to_string()));
        } else {
            // Not a tag: a literal '<' in the regex (e.g. "<html>" or a lookbehind-free
            // comparison); keep it verbatim.
            out.push_str(&tail[..consumed]);
        }
        rest = &tail[consumed..];
    }
    out.push_str(rest);
    if let Some(open) = open_fields.pop() {
        return Err(FilterErrorKind::Unclosed(format!(
            "F-{}",
            open.replace('_', "-")
        )));
    }
    Ok(Translated {
        pattern: out,
        needs_backtracking,
    })
}

/// `n`, `n,`, `n,m` or `,m`: the inside of a counted repetition.
pub(super) fn is_quantifier(q: &str) -> bool {
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match q.split_once(',') {
        None => !q.is_empty() && digits(q),
        Some((a, b)) => digits(a) && digits(b) && !(a.is_empty() && b.is_empty()),
    }
}

pub(super) fn is_tag_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

pub(super) fn field_name(s: &str) -> String {
    s.replace('-', "_")
}

pub(super) fn address_tag(tag: &str, engine: EngineKind) -> Option<String> {
    // fancy-regex works on text and does not take `(?-u:…)`; its `\b` around ASCII digits
    // is the same boundary.
    let ip4 = match engine {
        EngineKind::Linear => Cow::Borrowed(IP4),
        EngineKind::Backtracking => Cow::Owned(IP4.replace("(?-u:\\b)", "\\b")),
    };
    // As fail2ban's, an address tag takes an IPv4 address in brackets too (`client
    // [192.0.2.1]`, `(TCP:[192.0.2.1]:5060)`); `address_of` reads what is inside. The bare
    // `<IP4>` does not, nor does a host name.
    let bracketed_ip4 = format!(r"\[?{ip4}\]?");
    Some(match tag {
        "HOST" => format!("{IP6}|{bracketed_ip4}|{DNS}"),
        "ADDR" => format!("{IP6}|{bracketed_ip4}"),
        "SUBNET" => format!("{IP6}|{bracketed_ip4}"),
        "IP4" => ip4.into_owned(),
        "IP6" => IP6.to_string(),
        "DNS" => DNS.to_string(),
        _ => return None,
    })
}

/// A failregex (or prefregex) after tag translation.
#[derive(Debug)]
pub(super) struct CompiledRegex {
    pub(super) regex: Engine,
    /// The translated pattern in the `regex` crate's syntax (for a backtracking regex, its
    /// linear-time superset), for the multi-pattern pass and the literal analysis.
    pub(super) translated: String,
    /// Capture group indexes of the address tags, in pattern order.
    pub(super) address_groups: Vec<usize>,
    /// `<CIDR>` and the prefix length of `<SUBNET>`.
    pub(super) cidr_groups: Vec<usize>,
    /// `<F-USER>` first, then its `<F-ALT_USER…>` fallbacks.
    pub(super) user_groups: Vec<usize>,
    /// Custom `<F-NAME>` fields: (NAME, group index).
    pub(super) fields: Vec<(String, usize)>,
    pub(super) mlfid_group: Option<usize>,
    pub(super) nofail_groups: Vec<usize>,
    pub(super) forget_groups: Vec<usize>,
    pub(super) gained_groups: Vec<usize>,
    /// The lines each `<SKIPLINES>` passed over.
    pub(super) skip_groups: Vec<usize>,
    pub(super) source: String,
}

impl CompiledRegex {
    /// A linear-time pattern matching whatever this regex matches (exactly that, when it runs
    /// on the linear engine); `None` when there is none (a superset that did not compile).
    pub(super) fn linear_superset(&self) -> Option<&str> {
        match &self.regex {
            Engine::Linear { .. } | Engine::Backtracking { gate: Some(_), .. } => {
                Some(&self.translated)
            }
            Engine::Backtracking { gate: None, .. } => None,
        }
    }

    pub(super) fn any_set(groups: &[usize], locs: &Slots) -> bool {
        groups.iter().any(|&g| locs.get(g).is_some())
    }
}

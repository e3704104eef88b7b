//! Filter definitions in TOML: shipped in `filters/NAME.toml`, given by path, or inline in a
//! jail.
//!
//! A filter says which log records it is for (journal matches, syslog identifiers, the
//! line format of files) and holds the regexes. Optional modes add regexes to the base set,
//! so `mode = "aggressive"` extends the normal sshd filter instead of duplicating it.
//!
//! One authentication try may log several lines, and `maxretry` should count tries, not
//! lines: `session = "process"` makes the records of one process (host and pid) a session,
//! and a failregex written as `{ regex = '...', count = "unless-followed" }` or
//! `count = "if-first"` says how its lines count in it (see [`Counting`]).

use crate::config::error::{ConfigError, SourceText};
use crate::engine::datepattern::DatePattern;
use crate::engine::filter::{Counting, Dialect, Filter, FilterSpec, RegexRole};
use crate::engine::prepare::LineFormat;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use toml::Spanned;

/// A filter as written in TOML.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFilter {
    pub description: Option<String>,
    pub journalmatch: Option<Vec<Spanned<String>>>,
    pub identifiers: Option<Vec<String>>,
    pub format: Option<Spanned<String>>,
    /// `"process"`: the records of one process are a session.
    pub session: Option<Spanned<String>>,
    pub prefregex: Option<Spanned<String>>,
    #[serde(default)]
    pub failregex: Vec<Spanned<RawFailregex>>,
    #[serde(default)]
    pub ignoreregex: Vec<Spanned<String>>,
    #[serde(default)]
    pub mode: BTreeMap<String, RawMode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMode {
    #[serde(default)]
    pub failregex: Vec<Spanned<RawFailregex>>,
    #[serde(default)]
    pub ignoreregex: Vec<Spanned<String>>,
}

/// A failregex: a string, or `{ regex = '...', count = "..." }`.
#[derive(Debug)]
pub struct RawFailregex {
    pub regex: String,
    pub count: Option<String>,
}

impl<'de> Deserialize<'de> for RawFailregex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            regex: String,
            count: Option<String>,
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFailregex;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a regex, or a table with regex and count")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawFailregex, E> {
                Ok(RawFailregex {
                    regex: v.to_string(),
                    count: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawFailregex, A::Error> {
                let t = Table::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawFailregex {
                    regex: t.regex,
                    count: t.count,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A validated, compiled filter in one mode.
#[derive(Debug)]
pub struct FilterDefinition {
    /// How it was named: "sshd", a path, or "inline".
    pub name: String,
    pub description: Option<String>,
    pub journalmatch: Vec<String>,
    pub identifiers: Vec<String>,
    pub format: LineFormat,
    /// Where file lines keep their date, when the standard templates are not right (a
    /// fail2ban filter's `datepattern`).
    pub datepattern: Option<DatePattern>,
    pub mode: Option<String>,
    pub modes: Vec<String>,
    pub filter: Filter,
}

/// Parses a filter file's text.
pub fn parse_filter_file(src: &SourceText) -> Result<RawFilter, ConfigError> {
    toml::from_str(&src.text).map_err(|e| src.error_at(e.span(), e.message()))
}

/// Validates and compiles `raw` (whose spans point into `src`) in `mode`.
pub fn build_filter(
    src: &SourceText,
    raw: &RawFilter,
    name: &str,
    mode: Option<&Spanned<String>>,
) -> Result<FilterDefinition, ConfigError> {
    let format = match &raw.format {
        None => LineFormat::Syslog,
        Some(f) => match f.get_ref().as_str() {
            "syslog" => LineFormat::Syslog,
            "plain" => LineFormat::Plain,
            "after-date" => LineFormat::AfterDate,
            other => {
                return Err(src.error_at(
                    Some(f.span()),
                    format!(
                    "unknown format {other:?}: expected \"syslog\", \"plain\" or \"after-date\""
                ),
                ))
            }
        },
    };
    let mut failregex: Vec<&Spanned<RawFailregex>> = raw.failregex.iter().collect();
    let mut ignoreregex: Vec<&Spanned<String>> = raw.ignoreregex.iter().collect();
    let mode_name = match mode {
        None => None,
        Some(m) if m.get_ref() == "normal" => None,
        Some(m) => match raw.mode.get(m.get_ref()) {
            Some(extra) => {
                failregex.extend(&extra.failregex);
                ignoreregex.extend(&extra.ignoreregex);
                Some(m.get_ref().clone())
            }
            None => {
                let known: Vec<&str> = std::iter::once("normal")
                    .chain(raw.mode.keys().map(String::as_str))
                    .collect();
                return Err(ConfigError::At {
                    file: src.path.clone(),
                    line: None,
                    key: Some("mode".into()),
                    message: format!(
                        "filter {name} has no mode {:?}; its modes are: {}",
                        m.get_ref(),
                        known.join(", ")
                    ),
                });
            }
        },
    };
    let by_process = match &raw.session {
        None => false,
        Some(s) if s.get_ref() == "process" => true,
        Some(s) => {
            return Err(src.error_at(
                Some(s.span()),
                format!(
                    "unknown session {:?}: expected \"process\" (the records of one process are one session)",
                    s.get_ref()
                ),
            ))
        }
    };
    let mut counting = Vec::with_capacity(failregex.len());
    for entry in &failregex {
        let count = match &entry.get_ref().count {
            None => Counting::Always,
            Some(c) => Counting::from_name(c).ok_or_else(|| {
                src.error_at(
                    Some(entry.span()),
                    format!(
                        "filter {name}: unknown count {c:?}: expected \"always\", \"unless-followed\" or \"if-first\""
                    ),
                )
            })?,
        };
        counting.push(count);
    }
    let spec = FilterSpec {
        prefregex: raw.prefregex.as_ref().map(|p| p.get_ref().clone()),
        failregex: failregex
            .iter()
            .map(|s| s.get_ref().regex.clone())
            .collect(),
        ignoreregex: ignoreregex.iter().map(|s| s.get_ref().clone()).collect(),
        dialect: Dialect::Banhound,
    };
    let filter = Filter::compile(&spec).map_err(|e| {
        let span = match e.role {
            RegexRole::Pref => raw.prefregex.as_ref().map(Spanned::span),
            RegexRole::Fail(i) => failregex.get(i).map(|s| s.span()),
            RegexRole::Ignore(i) => ignoreregex.get(i).map(|s| s.span()),
        };
        src.error_at(span, format!("filter {name}: {e}"))
    })?;
    let filter = if by_process {
        filter.with_process_sessions()
    } else {
        filter
    };
    if let Some(i) = counting.iter().position(|&c| c != Counting::Always) {
        if !filter.has_sessions() {
            return Err(src.error_at(
                Some(failregex[i].span()),
                format!(
                    "filter {name}: count = {:?} needs sessions: set session = \"process\" (or capture <F-MLFID> in the prefregex)",
                    counting[i].name()
                ),
            ));
        }
    }
    let filter = filter.with_counting(counting);
    Ok(FilterDefinition {
        name: name.to_string(),
        description: raw.description.clone(),
        journalmatch: match &raw.journalmatch {
            Some(words) => super::check_journalmatch(src, words, &format!("filter {name}"))?,
            None => Vec::new(),
        },
        identifiers: raw.identifiers.clone().unwrap_or_default(),
        format,
        datepattern: None,
        mode: mode_name,
        modes: raw.mode.keys().cloned().collect(),
        filter,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> SourceText {
        SourceText {
            path: "f.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn builds_with_mode_additions() {
        let s = src(
            "failregex = ['^a from <HOST>$']\n[mode.aggressive]\nfailregex = ['^b from <HOST>$']\n",
        );
        let raw = parse_filter_file(&s).unwrap();
        let normal = build_filter(&s, &raw, "t", None).unwrap();
        assert_eq!(normal.filter.failregex_count(), 1);
        let mode = Spanned::new(0..0, "aggressive".to_string());
        let aggressive = build_filter(&s, &raw, "t", Some(&mode)).unwrap();
        assert_eq!(aggressive.filter.failregex_count(), 2);
        let bad = Spanned::new(0..0, "nope".to_string());
        let err = build_filter(&s, &raw, "t", Some(&bad))
            .unwrap_err()
            .to_string();
        assert!(err.contains("modes are: normal, aggressive"), "{err}");
    }

    #[test]
    fn regex_errors_point_at_the_regex_line() {
        let s = src(
            "description = 'x'\nfailregex = [\n  '^ok from <HOST>$',\n  '^no host here$',\n]\n",
        );
        let raw = parse_filter_file(&s).unwrap();
        let err = build_filter(&s, &raw, "t", None).unwrap_err().to_string();
        assert!(
            err.starts_with("f.toml:4: failregex: filter t: failregex #1: no address tag"),
            "{err}"
        );
    }

    #[test]
    fn failregex_tables_say_how_a_line_counts() {
        let s = src(concat!(
            "session = 'process'\n",
            "failregex = [\n",
            "  '^a from <HOST>$',\n",
            "  { count = 'unless-followed', regex = '^b from <HOST>$' },\n",
            "]\n",
            "[mode.aggressive]\n",
            "failregex = [{ regex = '^c from <HOST>$', count = 'if-first' }]\n",
        ));
        let raw = parse_filter_file(&s).unwrap();
        let mode = Spanned::new(0..0, "aggressive".to_string());
        let def = build_filter(&s, &raw, "t", Some(&mode)).unwrap();
        assert!(def.filter.has_sessions());
        let counts: Vec<Counting> = (0..3).map(|i| def.filter.counting(i)).collect();
        assert_eq!(
            counts,
            [
                Counting::Always,
                Counting::UnlessFollowed,
                Counting::IfFirst
            ]
        );
        // Errors name the line of the entry.
        let bad = |text: &str| {
            let s = src(text);
            let raw = parse_filter_file(&s).unwrap();
            build_filter(&s, &raw, "t", None).unwrap_err().to_string()
        };
        let err = bad(
            "session = 'process'\nfailregex = [\n  { regex = '^a <HOST>$', count = 'once' },\n]\n",
        );
        assert!(
            err.starts_with("f.toml:3: failregex: filter t: unknown count \"once\""),
            "{err}"
        );
        let err = bad("failregex = [\n  { regex = '^a <HOST>$', count = 'if-first' },\n]\n");
        assert!(
            err.starts_with("f.toml:2: failregex: filter t: count = \"if-first\" needs sessions"),
            "{err}"
        );
        let err = bad("session = 'thread'\nfailregex = ['^a <HOST>$']\n");
        assert!(
            err.starts_with("f.toml:1: session: unknown session \"thread\""),
            "{err}"
        );
        let s = src("failregex = [{ regex = '^a <HOST>$', weight = 2 }]\n");
        let err = parse_filter_file(&s).unwrap_err().to_string();
        assert!(err.contains("unknown field `weight`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_errors() {
        let s = src("failregexes = ['x']\n");
        let err = parse_filter_file(&s).unwrap_err().to_string();
        assert!(
            err.starts_with("f.toml:1: failregexes: unknown field `failregexes`"),
            "{err}"
        );
    }
}

//! The INI dialect of fail2ban's configuration files, read without Python.
//!
//! fail2ban reads its files with Python's `configparser` plus its own include mechanism, and
//! a filter or jail only means something after both have run. This module does the same
//! reading: sections of `key = value` (or `key: value`) lines, values continued on indented
//! lines, whole-line comments (`#`, `;`), and the layering fail2ban applies to `NAME.conf`:
//! `[INCLUDES] before` files, the file itself, `NAME.local`, then `[INCLUDES] after` files,
//! later ones overriding earlier ones key by key. A key overridden this way stays reachable
//! as `known/KEY`, as fail2ban allows (`failregex = %(known/failregex)s ...`).
//!
//! Interpolation (`%(name)s`, `%(section/name)s`) is done on request by [`Ini::interpolate`],
//! because fail2ban lets parameters given at use (`sshd[mode=aggressive]`) take precedence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum IniError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{0}: includes nest too deeply (a loop?)")]
    IncludeLoop(PathBuf),
    #[error("interpolating {key}: {message}")]
    Interpolation { key: String, message: String },
}

/// Sections of key/value pairs, merged from a file and its includes.
#[derive(Clone, Debug, Default)]
pub struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
    /// Every file read, in order, for reports.
    pub files: Vec<PathBuf>,
}

/// How deep `[INCLUDES]` may nest and interpolation may recurse.
const MAX_DEPTH: usize = 16;

impl Ini {
    /// Reads `path` with its includes and its `.local` companion.
    pub fn load(path: &Path) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        ini.load_layered(path, 0)?;
        Ok(ini)
    }

    /// Reads several files in order, each with its includes but without `.local`
    /// companions: jail files, whose `.local`s fail2ban reads at their own place in the order.
    pub fn load_files(paths: &[PathBuf]) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        for p in paths {
            ini.load_one(p, 0, false)?;
        }
        Ok(ini)
    }

    fn load_layered(&mut self, path: &Path, depth: usize) -> Result<(), IniError> {
        self.load_one(path, depth, true)
    }

    fn load_one(&mut self, path: &Path, depth: usize, companion: bool) -> Result<(), IniError> {
        if depth > MAX_DEPTH {
            return Err(IniError::IncludeLoop(path.to_path_buf()));
        }
        let own = parse_file(path)?;
        let local_path = path.with_extension("local");
        let local =
            if companion && path.extension().is_some_and(|e| e == "conf") && local_path.is_file() {
                Some(parse_file(&local_path)?)
            } else {
                None
            };
        let includes = |key: &str| -> Vec<PathBuf> {
            let dir = path.parent().unwrap_or(Path::new("."));
            [Some(&own), local.as_ref()]
                .into_iter()
                .flatten()
                .filter_map(|f| {
                    let (_, keys) = f.iter().find(|(s, _)| s == "INCLUDES")?;
                    keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
                })
                .flat_map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .map(|name| dir.join(name))
                .collect()
        };
        let (before, after) = (includes("before"), includes("after"));
        for inc in before {
            // fail2ban skips includes that do not exist (`common.local` usually does not).
            if inc.is_file() {
                self.load_layered(&inc, depth + 1)?;
            }
        }
        self.merge(path, own);
        if let Some(local) = local {
            self.merge(&local_path, local);
        }
        for inc in after {
            if inc.is_file() {
                self.load_layered(&inc, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Parses text as one file without includes (tests, and values given on a command line).
    pub fn from_text(path: &Path, text: &str) -> Result<Ini, IniError> {
        let mut ini = Ini::default();
        let parsed = parse_text(path, text)?;
        ini.merge(path, parsed);
        Ok(ini)
    }

    fn merge(&mut self, path: &Path, parsed: RawSections) {
        self.files.push(path.to_path_buf());
        for (section, keys) in parsed {
            if section == "INCLUDES" {
                continue;
            }
            let target = self.sections.entry(section).or_default();
            for (key, value) in keys {
                if let Some(old) = target.insert(key.clone(), value) {
                    target.insert(format!("known/{key}"), old);
                }
            }
        }
    }

    pub fn has_section(&self, section: &str) -> bool {
        self.sections.contains_key(section)
    }

    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    /// The keys of a section, without `[DEFAULT]`'s.
    pub fn keys(&self, section: &str) -> Vec<&str> {
        self.sections
            .get(section)
            .map(|s| s.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// The raw value of `key` in `section`, falling back to `[DEFAULT]` like configparser.
    /// `known/KEY` not overridden in the section is the `[DEFAULT]` value it shadows.
    pub fn raw(&self, section: &str, key: &str) -> Option<&str> {
        let defaults = self.sections.get("DEFAULT");
        self.sections
            .get(section)
            .and_then(|s| s.get(key))
            .or_else(|| defaults.and_then(|s| s.get(key)))
            .or_else(|| {
                let shadowed = key.strip_prefix("known/")?;
                defaults.and_then(|s| s.get(shadowed))
            })
            .map(String::as_str)
    }

    /// Sets a value (parameters given at use, e.g. `sshd[mode=aggressive]`).
    pub fn set(&mut self, section: &str, key: &str, value: &str) {
        self.sections
            .entry(section.to_string())
            .or_default()
            .insert(key.to_string(), value.to_string());
    }

    /// Expands `%(name)s` in `value` as configparser would for `section`: `vars` first (the
    /// parameters given at use), then the section, then `[DEFAULT]`; `%(other/name)s` reads
    /// another section; `%%` is a percent sign.
    pub fn interpolate(
        &self,
        section: &str,
        value: &str,
        vars: &BTreeMap<String, String>,
    ) -> Result<String, IniError> {
        self.interpolate_depth(section, value, vars, 0)
    }

    fn interpolate_depth(
        &self,
        section: &str,
        value: &str,
        vars: &BTreeMap<String, String>,
        depth: usize,
    ) -> Result<String, IniError> {
        if !value.contains('%') {
            return Ok(value.to_string());
        }
        if depth > MAX_DEPTH {
            return Err(IniError::Interpolation {
                key: value.chars().take(60).collect(),
                message: "recursion too deep (a loop?)".into(),
            });
        }
        let mut out = String::with_capacity(value.len());
        let mut rest = value;
        while let Some(pos) = rest.find('%') {
            out.push_str(&rest[..pos]);
            let tail = &rest[pos..];
            if let Some(after) = tail.strip_prefix("%%") {
                out.push('%');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("%(") {
                let Some(end) = after.find(")s") else {
                    return Err(IniError::Interpolation {
                        key: tail.chars().take(60).collect(),
                        message: "unterminated %(...)s".into(),
                    });
                };
                let name = &after[..end];
                let (sec, key) = match name.split_once('/') {
                    // fail2ban spells the defaults section "default/KEY".
                    Some(("default", k)) => ("DEFAULT", k),
                    Some((s, k)) if self.has_section(s) => (s, k),
                    _ => (section, name),
                };
                let found = if sec == section {
                    vars.get(key)
                        .map(String::as_str)
                        .or_else(|| self.raw(sec, key))
                } else {
                    self.raw(sec, key)
                };
                let Some(found) = found else {
                    return Err(IniError::Interpolation {
                        key: name.to_string(),
                        message: format!("no option {name:?} in section [{section}]"),
                    });
                };
                out.push_str(&self.interpolate_depth(sec, found, vars, depth + 1)?);
                rest = &after[end + 2..];
            } else {
                // configparser refuses a lone '%'; fail2ban files escape it, but be lenient:
                // it is regex text, and a literal '%' there is what the author meant.
                out.push('%');
                rest = &tail[1..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

type RawSections = Vec<(String, Vec<(String, String)>)>;

fn parse_file(path: &Path) -> Result<RawSections, IniError> {
    let bytes = std::fs::read(path).map_err(|source| IniError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let (line, column) = crate::config::error::utf8_position(e.as_bytes(), at);
        IniError::Syntax {
            path: path.to_path_buf(),
            line,
            message: format!(
                "column {column}: byte 0x{:02x} is not UTF-8 (configuration files are UTF-8 text)",
                e.as_bytes()[at]
            ),
        }
    })?;
    parse_text(path, &text)
}

fn parse_text(path: &Path, text: &str) -> Result<RawSections, IniError> {
    let mut sections: RawSections = Vec::new();
    // The key whose value an indented line continues: (section index, key index).
    let mut open: Option<(usize, usize)> = None;
    for (n, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            // configparser keeps empty lines inside a value when a continuation follows; for
            // regex lists they carry nothing, so the value simply stays open.
            continue;
        }
        if trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if indented {
            if let Some((s, k)) = open {
                let value = &mut sections[s].1[k].1;
                value.push('\n');
                value.push_str(trimmed);
                continue;
            }
        }
        if let Some(name) = trimmed.strip_prefix('[') {
            let Some(name) = name.strip_suffix(']') else {
                return Err(IniError::Syntax {
                    path: path.to_path_buf(),
                    line: n + 1,
                    message: format!("section header without ']': {trimmed}"),
                });
            };
            let name = name.trim().to_string();
            if !sections.iter().any(|(s, _)| *s == name) {
                sections.push((name.clone(), Vec::new()));
            }
            // A section may appear twice in one file: later keys join the first occurrence.
            let idx = sections.iter().position(|(s, _)| *s == name).unwrap_or(0);
            let last = sections.len() - 1;
            sections.swap(idx, last);
            open = None;
            continue;
        }
        let Some(delim) = trimmed.find(['=', ':']) else {
            return Err(IniError::Syntax {
                path: path.to_path_buf(),
                line: n + 1,
                message: format!("expected `key = value`: {trimmed}"),
            });
        };
        let Some(current) = sections.last_mut() else {
            return Err(IniError::Syntax {
                path: path.to_path_buf(),
                line: n + 1,
                message: "a key before any [section]".into(),
            });
        };
        let key = trimmed[..delim].trim().to_string();
        let value = trimmed[delim + 1..].trim().to_string();
        let entries = &mut current.1;
        let k = match entries.iter().position(|(k2, _)| *k2 == key) {
            Some(i) => {
                entries[i].1 = value;
                i
            }
            None => {
                entries.push((key, value));
                entries.len() - 1
            }
        };
        open = Some((sections.len() - 1, k));
    }
    Ok(sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ini(text: &str) -> Ini {
        Ini::from_text(Path::new("t.conf"), text).unwrap()
    }

    #[test]
    fn sections_continuations_and_comments() {
        let i =
            ini("[DEFAULT]\nd = 1\n[Definition]\n# c\nfailregex = a\n   b\n; c\n  c\nx: y = z\n");
        assert_eq!(i.raw("Definition", "failregex"), Some("a\nb\nc"));
        assert_eq!(i.raw("Definition", "x"), Some("y = z"));
        assert_eq!(i.raw("Definition", "d"), Some("1"));
        assert_eq!(i.raw("Definition", "nope"), None);
    }

    #[test]
    fn interpolation_with_vars_sections_and_percent() {
        let i = ini("[DEFAULT]\np = P%(q)s\nq = Q\n[s]\nv = %(p)s-%(mode)s 100%%\n[o]\nw = W\n[t]\nu = %(o/w)s\n");
        let mut vars = BTreeMap::new();
        vars.insert("mode".to_string(), "agg".to_string());
        assert_eq!(
            i.interpolate("s", i.raw("s", "v").unwrap(), &vars).unwrap(),
            "PQ-agg 100%"
        );
        assert_eq!(
            i.interpolate("t", i.raw("t", "u").unwrap(), &vars).unwrap(),
            "W"
        );
        assert!(i.interpolate("s", "%(missing)s", &vars).is_err());
        let looped = ini("[s]\na = %(b)s\nb = %(a)s\n");
        assert!(looped.interpolate("s", "%(a)s", &vars).is_err());
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_at_their_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.conf");
        std::fs::write(
            &path,
            b"[Definition]
failregex = \xe9chec from <HOST>\n",
        )
        .unwrap();
        let err = Ini::load(&path).unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "{}:2: column 13: byte 0xe9 is not UTF-8 (configuration files are UTF-8 text)",
                path.display()
            )
        );
    }

    #[test]
    fn includes_local_and_known() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        std::fs::write(p.join("common.conf"), "[DEFAULT]\nc = common\nz = 1\n").unwrap();
        std::fs::write(
            p.join("f.conf"),
            "[INCLUDES]\nbefore = common.conf\nafter = missing.local\n[DEFAULT]\nz = 2\n[Definition]\nfailregex = a\n",
        )
        .unwrap();
        std::fs::write(
            p.join("f.local"),
            "[Definition]\nfailregex = %(known/failregex)s\n  b\n",
        )
        .unwrap();
        let i = Ini::load(&p.join("f.conf")).unwrap();
        assert_eq!(i.raw("Definition", "c"), Some("common"));
        assert_eq!(i.raw("Definition", "z"), Some("2"));
        let v = i
            .interpolate(
                "Definition",
                i.raw("Definition", "failregex").unwrap(),
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(v, "a\nb");
        assert_eq!(i.files.len(), 3);
    }
}
